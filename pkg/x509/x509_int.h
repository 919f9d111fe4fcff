/* Private to pkg/x509: object identifiers, the certificate builder and shared decoding helpers. */
#ifndef AMBIENT_X509_INT_H
#define AMBIENT_X509_INT_H

#include "pkg/x509/x509.h"

/* OID contents (DER without tag and length). */
#define OID_BYTES(...) ((const uint8_t[]){__VA_ARGS__})
#define OID_LEN(...) sizeof((const uint8_t[]){__VA_ARGS__})
#define OID(...) OID_BYTES(__VA_ARGS__), OID_LEN(__VA_ARGS__)

/* id-ecPublicKey 1.2.840.10045.2.1 */
#define OID_EC_PUBLIC_KEY OID(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01)
/* prime256v1 1.2.840.10045.3.1.7 */
#define OID_P256 OID(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07)
/* rsaEncryption 1.2.840.113549.1.1.1 */
#define OID_RSA OID(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01)
/* id-Ed25519 1.3.101.112 */
#define OID_ED25519 OID(0x2b, 0x65, 0x70)
/* ecdsa-with-SHA256 1.2.840.10045.4.3.2 */
#define OID_ECDSA_SHA256 OID(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02)
/* extensions 2.5.29.x */
#define OID_EXT_SKI OID(0x55, 0x1d, 0x0e)
#define OID_EXT_KU OID(0x55, 0x1d, 0x0f)
#define OID_EXT_SAN OID(0x55, 0x1d, 0x11)
#define OID_EXT_BC OID(0x55, 0x1d, 0x13)
#define OID_EXT_AKI OID(0x55, 0x1d, 0x23)
#define OID_EXT_EKU OID(0x55, 0x1d, 0x25)
/* id-kp-serverAuth / clientAuth 1.3.6.1.5.5.7.3.{1,2}, anyExtendedKeyUsage 2.5.29.37.0 */
#define OID_KP_SERVER_AUTH OID(0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01)
#define OID_KP_CLIENT_AUTH OID(0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02)
#define OID_KP_ANY OID(0x55, 0x1d, 0x25, 0x00)
/* id-at-organizationName 2.5.4.10, id-at-commonName 2.5.4.3 */
#define OID_AT_O OID(0x55, 0x04, 0x0a)
#define OID_AT_CN OID(0x55, 0x04, 0x03)
/* pkcs-9-at-extensionRequest 1.2.840.113549.1.9.14 */
#define OID_EXT_REQUEST OID(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e)

static inline bool oid_is(struct slice oid, const uint8_t *ref, size_t n)
{
	return der_oid_eq(oid, ref, n);
}

/* ---- keys (x509_key.c) ---- */
/* Reads a SubjectPublicKeyInfo at d's cursor. */
int x509_spki_read(struct der_dec *d, const char *what, struct x509_pubkey *k, struct slice *raw);
/* Reads an AlgorithmIdentifier for a signature: sets *ecdsa_sha256 and a printable name. */
int x509_sigalg_read(struct der_dec *d, const char *what, struct slice *raw, bool *ecdsa_sha256,
		     char *name, size_t cap);
/* Checks that a signatureValue BIT STRING holds a DER ECDSA-Sig-Value with positive r and s. */
int x509_ecdsa_sig_check(const struct der_dec *d, const struct der_tlv *t, const char *what);
/* Name of a curve OID ("secp384r1") or NULL. */
const char *x509_curve_name(struct slice oid, unsigned *bits);

/* ---- names and general names (x509_name.c) ---- */
/* Reads a Name; *text (may be NULL) gets a newly allocated printable form. */
int x509_name_read(struct der_dec *d, const char *what, struct slice *raw, char **text);
/* Printable form of a Name TLV (allocated; "" for an empty name). */
char *x509_name_text(struct slice name);
/* Name with O and optional CN as UTF8String. */
void x509_name_encode(struct der_enc *e, const char *org, const char *cn);
/* Reads GeneralNames (SEQUENCE SIZE (1..MAX) OF GeneralName, or `tag` when implicitly tagged)
 * into an allocated array. */
int x509_general_names_read(struct der_dec *d, uint8_t tag, const char *what, struct x509_gn **out,
			    size_t *n, size_t *n_uri);
/* Escapes arbitrary bytes for messages (non-printables as \xNN, at most cap-1 chars, "..."). */
void x509_escape(const uint8_t *p, size_t n, char *out, size_t cap);

/* ---- extensions (x509_ext.c) ---- */
/* Reads the [3] Extensions of a TBSCertificate (cursor on the [3]) into c. */
int x509_extensions_read(struct der_dec *d, struct x509_cert *c);
/* Reads an Extensions SEQUENCE of a CSR extensionRequest into csr. */
int x509_csr_extensions_read(struct der_dec *d, struct x509_csr *csr);

/* ---- builder (x509_build.c) ---- */
struct x509_ext_spec {
	struct slice oid;
	bool critical;
	struct slice value; /* extnValue contents (DER) */
};

/* Everything a TBSCertificate can carry here. Extensions are written in this order: keyUsage,
 * extKeyUsage, basicConstraints, SKI, AKI, SAN, then extra. */
struct x509_tbs {
	const uint8_t *serial; /* magnitude */
	size_t serial_len;
	struct slice issuer, subject; /* Name TLVs */
	int64_t not_before, not_after;
	bool generalized_time; /* force GeneralizedTime (tests of the RFC 5280 rule) */
	const struct x509_pubkey *pub;
	bool bc, ca, bc_critical;
	int path_len; /* -1: none */
	uint32_t ku;  /* 0: no keyUsage */
	bool ku_critical;
	uint32_t eku; /* X509_EKU_SERVER_AUTH | X509_EKU_CLIENT_AUTH; 0: none */
	const char *const *uris;
	size_t n_uris;
	const char *const *dns;
	size_t n_dns;
	const struct x509_ip *ips;
	size_t n_ips;
	bool san_critical;
	bool ski;
	struct slice aki; /* keyIdentifier, or empty for none */
	const struct x509_ext_spec *extra;
	size_t n_extra;
};

/* Encodes, signs with signer and decodes the result into *out. */
int x509_cert_build(const struct x509_tbs *t, const struct x509_key *signer, struct x509_cert **out,
		    struct errbuf *eb);
/* Writes the Extension SEQUENCEs of t (no wrapper) for certificates and CSRs. */
void x509_tbs_extensions(struct der_enc *e, const struct x509_tbs *t);

#endif
