/* X.509 certificates, ECDSA P-256 keys, PKCS#10 CSRs, PEM and SPIFFE X.509-SVIDs for the mesh CA.
 */
#ifndef AMBIENT_X509_H
#define AMBIENT_X509_H

#include "pkg/base/base.h"
#include "pkg/buf/buf.h"
#include "pkg/der/der.h"

#include <bearssl_ec.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Scope. The mesh uses ECDSA P-256 with SHA-256 only (DESIGN.md §4): private keys and signing
 * keys are P-256, certificates are signed with ecdsa-with-SHA256. The decoders still read
 * certificates and keys of other algorithms far enough to say what they are ("RSA 2048-bit",
 * "ECDSA secp384r1"), so an operator gets a precise refusal instead of a parse error.
 *
 * Strictness. Certificates and CSRs are decoded as DER (pkg/der) plus the RFC 5280 profile:
 * v3 only, positive serial of at most 20 octets, matching inner/outer signature algorithms,
 * ecdsa-with-SHA256 without parameters, UTCTime through 2049 and GeneralizedTime from 2050,
 * extensions unique and non-empty, DEFAULT values (critical FALSE, cA FALSE) absent, named bit
 * lists minimal, unknown critical extensions rejected, an empty subject only with a critical
 * subjectAltName. Names are compared as DER bytes (like BearSSL), not with RFC 5280 §7.1
 * normalization; chains this module builds always copy the issuer name byte for byte.
 *
 * Time is always an argument (Unix seconds), randomness comes from rand_bytes() (kernel
 * getrandom) unless a test passes its own serial. Nothing here prints or logs; errors are
 * returned as -E_* with the reason in a struct errbuf. Private keys never leave struct x509_key
 * except through the explicit encode/format calls, and are wiped on free.
 */

#define X509_KEY_ID_LEN 20 /* SHA-1 key identifiers (RFC 5280 §4.2.1.2 method 1) */
#define X509_SIG_MAX 72	   /* DER ECDSA-Sig-Value for P-256 */
#define X509_SERIAL_LEN 16 /* random serial: 128 bits */
#define X509_MAX_SERIAL 20 /* RFC 5280 §4.1.2.2 */
#define X509_SPIFFE_MAX 2048
#define X509_TRUST_DOMAIN_MAX 255
#define X509_MAX_CHAIN 8 /* certificates in a path, leaf and anchor included */
#define X509_MAX_NAMES 64

#define X509_BACKDATE_SECS 120				    /* notBefore = now - 2 min */
#define X509_LEAF_DEFAULT_TTL (24 * 3600)		    /* DESIGN.md §4 */
#define X509_LEAF_MAX_TTL (90 * 86400)			    /* DESIGN.md §4 */
#define X509_ROOT_DEFAULT_VALIDITY (3650LL * 86400)	    /* 10 years */
#define X509_INTERMEDIATE_DEFAULT_VALIDITY (1825LL * 86400) /* 5 years */
#define X509_MAX_VALIDITY (36500LL * 86400)		    /* 100 years: refused beyond */

/* ---- public keys ------------------------------------------------------------------------------
 */

enum x509_keytype {
	X509_KEY_UNKNOWN = 0,
	X509_KEY_P256, /* ECDSA P-256: the only usable type */
	X509_KEY_EC,   /* another EC curve */
	X509_KEY_RSA,
	X509_KEY_ED25519,
};

struct x509_pubkey {
	enum x509_keytype type;
	uint8_t q[65]; /* X509_KEY_P256: uncompressed point 04||X||Y, checked to be on the curve */
	unsigned bits; /* RSA modulus bits, EC field bits; 0 if unknown */
	char desc[48]; /* "ECDSA P-256", "ECDSA secp384r1", "RSA 2048-bit", or the OID */
};

/* 0, or -E_UNSUPP with "<what> is <desc>; only ECDSA P-256 keys are supported". */
int x509_pubkey_require_p256(const struct x509_pubkey *k, const char *what, struct errbuf *eb);
bool x509_pubkey_equal(const struct x509_pubkey *a, const struct x509_pubkey *b);
/* SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 §4.2.1.2, method 1). */
void x509_pubkey_key_id(const struct x509_pubkey *k, uint8_t id[X509_KEY_ID_LEN]);
/* Verifies an ASN.1 (DER) ECDSA signature over SHA-256(msg): 0 or -E_CRYPTO (also for a
 * non-P-256 key). */
int x509_pubkey_verify(const struct x509_pubkey *k, const void *msg, size_t n, const uint8_t *sig,
		       size_t siglen);
/* A BearSSL view of a P-256 key (points into k). */
br_ec_public_key x509_pubkey_br(const struct x509_pubkey *k);
/* SubjectPublicKeyInfo (RFC 5480) of a P-256 key. */
void x509_spki_encode(const struct x509_pubkey *k, struct der_enc *e);
/* Decodes a SubjectPublicKeyInfo of any algorithm into k (see type/desc); -E_PARSE if malformed
 * (including an EC point that is not on its curve). */
int x509_spki_decode(const uint8_t *der, size_t n, struct x509_pubkey *k, struct errbuf *eb);

/* ---- private keys -----------------------------------------------------------------------------
 */

/* An ECDSA P-256 private key with its public key. Opaque; wiped on free. */
struct x509_key;

enum x509_key_format {
	X509_KEY_PKCS8, /* "PRIVATE KEY" (RFC 5958 OneAsymmetricKey v1) */
	X509_KEY_SEC1,	/* "EC PRIVATE KEY" (RFC 5915, with curve and public key) */
};

/* Generates a key with an HMAC-DRBG (SHA-256) seeded from the kernel CSPRNG. */
int x509_key_generate(struct x509_key **out);
/* A key from its 32-byte big-endian scalar (1 <= d < n); for tests and imports. */
int x509_key_from_scalar(const uint8_t *d, size_t n, struct x509_key **out, struct errbuf *eb);
void x509_key_free(struct x509_key *k);
const struct x509_pubkey *x509_key_public(const struct x509_key *k);
/* BearSSL view of the private key (valid while k lives), for TLS server/client contexts. */
const br_ec_private_key *x509_key_br(const struct x509_key *k);
/* ECDSA-SHA256 signature of msg in ASN.1 (DER) form, deterministic (RFC 6979). */
int x509_key_sign(const struct x509_key *k, const void *msg, size_t n, uint8_t sig[X509_SIG_MAX],
		  size_t *siglen);
/* Decodes SEC1 or PKCS#8 DER (detected). Refuses RSA, other curves, encrypted keys, scalars out
 * of range, and an embedded public key that does not match the scalar. */
int x509_key_decode(const uint8_t *der, size_t n, struct x509_key **out, struct errbuf *eb);
/* Encodes into out (cap >= 160); returns the length or -E_LIMIT. The caller wipes out. */
int x509_key_encode(const struct x509_key *k, enum x509_key_format f, uint8_t *out, size_t cap);
/* Reads the one private key in a PEM file ("EC PRIVATE KEY" or "PRIVATE KEY"; "EC PARAMETERS"
 * and certificate blocks are skipped). */
int x509_key_parse_pem(const char *text, size_t n, struct x509_key **out, struct errbuf *eb);
/* Appends the key as PEM to out, reserving first so that no stale copy is left behind by a
 * reallocation. out then holds a secret: release it with x509_buf_wipe(). */
int x509_key_format_pem(const struct x509_key *k, enum x509_key_format f, struct buf *out);
/* Wipes a buffer's whole allocation and frees it. */
void x509_buf_wipe(struct buf *b);

/* ---- PEM (RFC 7468) ----------------------------------------------------------------------------
 * Text outside blocks is ignored (openssl writes explanations there). Inside a block: only
 * base64 lines (trailing spaces/CR allowed), strict alphabet and padding, canonical final bits;
 * headers (e.g. "Proc-Type: 4,ENCRYPTED") are refused. BEGIN and END labels must match. */
#define X509_PEM_LABEL_MAX 64
#define X509_PEM_MAX_BLOCKS 256

struct x509_pem {
	char label[X509_PEM_LABEL_MAX + 1];
	uint8_t *der;
	size_t len;
	unsigned line; /* line of the BEGIN */
};

struct x509_pem_list {
	struct x509_pem *v;
	size_t n;
};

/* Fills l (no need to initialize it); on error l is left empty (nothing to free). */
int x509_pem_parse(const char *text, size_t n, struct x509_pem_list *l, struct errbuf *eb);
/* Wipes every block (they may be keys) and frees them. */
void x509_pem_list_fini(struct x509_pem_list *l);
/* Appends "-----BEGIN label-----", 64-column base64, "-----END label-----\n". */
int x509_pem_format(struct buf *out, const char *label, const uint8_t *der, size_t n);

/* ---- certificates -----------------------------------------------------------------------------
 */

/* keyUsage bits (RFC 5280 §4.2.1.3), bit i = 1u << i. */
#define X509_KU_DIGITAL_SIGNATURE (1u << 0)
#define X509_KU_NON_REPUDIATION (1u << 1)
#define X509_KU_KEY_ENCIPHERMENT (1u << 2)
#define X509_KU_DATA_ENCIPHERMENT (1u << 3)
#define X509_KU_KEY_AGREEMENT (1u << 4)
#define X509_KU_KEY_CERT_SIGN (1u << 5)
#define X509_KU_CRL_SIGN (1u << 6)
#define X509_KU_ENCIPHER_ONLY (1u << 7)
#define X509_KU_DECIPHER_ONLY (1u << 8)

/* extKeyUsage purposes found. */
#define X509_EKU_SERVER_AUTH (1u << 0)
#define X509_EKU_CLIENT_AUTH (1u << 1)
#define X509_EKU_ANY (1u << 2)
#define X509_EKU_OTHER (1u << 3)

/* Extensions this module understands (bits of ext_present / ext_critical). */
#define X509_EXT_BASIC_CONSTRAINTS (1u << 0)
#define X509_EXT_KEY_USAGE (1u << 1)
#define X509_EXT_EXT_KEY_USAGE (1u << 2)
#define X509_EXT_SAN (1u << 3)
#define X509_EXT_SKI (1u << 4)
#define X509_EXT_AKI (1u << 5)

/* GeneralName choices (RFC 5280 §4.2.1.6); the enum value is the context tag number. */
enum x509_gn_type {
	X509_GN_OTHER = 0,
	X509_GN_EMAIL = 1,
	X509_GN_DNS = 2,
	X509_GN_X400 = 3,
	X509_GN_DIR = 4,
	X509_GN_EDI = 5,
	X509_GN_URI = 6,
	X509_GN_IP = 7,
	X509_GN_RID = 8,
};

struct x509_gn {
	enum x509_gn_type type;
	struct slice v; /* IA5 text (email, DNS, URI), 4/16 address octets (IP), else contents */
};

struct x509_ip {
	uint8_t len; /* 4 or 16 */
	uint8_t a[16];
};

struct x509_cert {
	uint8_t *der; /* owned copy of the encoding; every slice below points into it */
	size_t len;
	struct slice tbs;     /* TBSCertificate TLV (the signed bytes) */
	struct slice serial;  /* magnitude, no sign octet */
	struct slice sig_alg; /* AlgorithmIdentifier TLV */
	bool sig_ecdsa_sha256;
	char sig_alg_name[48]; /* "ecdsa-with-SHA256", "sha256WithRSAEncryption", or OID */
	struct slice sig;      /* signatureValue contents (ECDSA-Sig-Value for ECDSA) */
	struct slice issuer;   /* Name TLV */
	struct slice subject;  /* Name TLV (30 00 when empty) */
	char *issuer_text;     /* "O=cluster.local"; "" for an empty name */
	char *subject_text;
	int64_t not_before, not_after; /* Unix seconds, inclusive */
	struct slice spki;	       /* SubjectPublicKeyInfo TLV */
	struct x509_pubkey pub;
	uint32_t ext_present, ext_critical; /* X509_EXT_* */
	bool ca;
	int path_len; /* -1: no pathLenConstraint */
	uint32_t key_usage;
	uint32_t ext_key_usage; /* X509_EKU_* */
	struct x509_gn *san;
	size_t n_san;
	size_t n_uri;
	struct slice ski; /* empty if absent */
	struct slice aki; /* keyIdentifier of authorityKeyIdentifier, empty if absent */
};

int x509_cert_decode(const uint8_t *der, size_t n, struct x509_cert **out, struct errbuf *eb);
void x509_cert_free(struct x509_cert *c);
/* Exactly one CERTIFICATE block (other blocks are an error). */
int x509_cert_parse_pem(const char *text, size_t n, struct x509_cert **out, struct errbuf *eb);
int x509_cert_format_pem(const struct x509_cert *c, struct buf *out);
/* Signature check with the issuer's public key: 0, -E_UNSUPP (algorithm/key), -E_CRYPTO. */
int x509_cert_check_signature(const struct x509_cert *c, const struct x509_pubkey *issuer,
			      struct errbuf *eb);
bool x509_cert_valid_at(const struct x509_cert *c, int64_t now);
/* Lower-case hex serial ("0a1b..."), cap >= 2 * X509_MAX_SERIAL + 1. */
void x509_cert_serial_hex(const struct x509_cert *c, char *out, size_t cap);
/* The first URI SAN (NULL slice if none). */
struct slice x509_cert_uri(const struct x509_cert *c);

/* An ordered list of certificates (cert-chain.pem, root-cert.pem, a CA response). */
struct x509_chain {
	struct x509_cert **v;
	size_t n;
};
/* Every block must be a CERTIFICATE; at least one. */
int x509_chain_parse_pem(const char *text, size_t n, struct x509_chain *ch, struct errbuf *eb);
/* Takes ownership of c. */
void x509_chain_add(struct x509_chain *ch, struct x509_cert *c);
void x509_chain_fini(struct x509_chain *ch);

/* ---- issuance ----------------------------------------------------------------------------------
 * All issued certificates: v3, random positive 128-bit serial (a 0x00 is prepended when the top
 * bit is set, keeping all 16 random octets), ecdsa-with-SHA256, notBefore = now - 2 minutes,
 * subjectKeyIdentifier, and (except roots) authorityKeyIdentifier = the issuer's SKI (or its key
 * id). The result is decoded back before it is returned, as a self-check. */

/* Set in *clamped when notAfter was cut. */
#define X509_CLAMP_MAX_TTL (1u << 0) /* requested TTL above X509_LEAF_MAX_TTL */
#define X509_CLAMP_ISSUER (1u << 1)  /* would have outlived the issuer's notAfter */

struct x509_leaf_req {
	const struct x509_pubkey *pub; /* the subject's key (from the CSR) */
	const char *spiffe_id;	       /* the one URI SAN, from the authorized identity */
	/* Extra SANs: only for the CA's own server certificate. */
	const char *const *dns;
	size_t n_dns;
	const struct x509_ip *ips;
	size_t n_ips;
	int64_t now;
	int64_t ttl;	       /* seconds; <= 0: X509_LEAF_DEFAULT_TTL */
	const uint8_t *serial; /* X509_SERIAL_LEN octets (tests); NULL: random */
};

/* An X.509-SVID leaf (X.509-SVID §4, DESIGN.md §4): empty subject, critical SAN with the SPIFFE
 * ID (and the extra DNS/IP names), critical keyUsage digitalSignature+keyEncipherment, EKU
 * serverAuth+clientAuth, critical basicConstraints CA:FALSE. Refuses an issuer that is not a
 * valid CA at now or whose key does not match issuer_key. */
int x509_issue_leaf(const struct x509_cert *issuer, const struct x509_key *issuer_key,
		    const struct x509_leaf_req *req, struct x509_cert **out, unsigned *clamped,
		    struct errbuf *eb);

/* Self-signed root: subject = issuer = O=<trust domain>, critical basicConstraints CA:TRUE,
 * critical keyUsage keyCertSign+cRLSign, SKI. validity <= 0: 10 years. */
int x509_self_signed_root(const struct x509_key *key, const char *trust_domain, int64_t now,
			  int64_t validity, struct x509_cert **out, struct errbuf *eb);

struct x509_ca_req {
	const struct x509_pubkey *pub;
	const char *org; /* subject O (required) */
	const char *cn;	 /* subject CN (optional) */
	int path_len;	 /* -1: none */
	int64_t now;
	int64_t validity; /* <= 0: 5 years; clamped to the issuer's notAfter */
	const uint8_t *serial;
};
/* An intermediate (signing) CA under issuer; same extensions as a root plus AKI. */
int x509_issue_intermediate(const struct x509_cert *issuer, const struct x509_key *issuer_key,
			    const struct x509_ca_req *req, struct x509_cert **out,
			    unsigned *clamped, struct errbuf *eb);

/* ---- CSRs (PKCS#10, RFC 2986) ------------------------------------------------------------------
 */

/* Empty subject, the key's SPKI, an extensionRequest with one critical URI SAN, signed by key.
 * Appends the DER to out. */
int x509_csr_encode(const struct x509_key *key, const char *uri, struct buf *out,
		    struct errbuf *eb);

struct x509_csr {
	uint8_t *der;
	size_t len;
	struct slice info; /* CertificationRequestInfo TLV */
	struct slice subject;
	char *subject_text;
	struct slice spki;
	struct x509_pubkey pub;
	bool has_ext_request;
	struct x509_gn *san; /* from the extensionRequest, if any */
	size_t n_san;
	size_t n_uri;
};

/* Strict decode plus self-signature verification (ecdsa-with-SHA256, P-256 only). What the CSR
 * asks for is exposed, but the CA takes the identity from the authorized request, never from
 * the CSR. */
int x509_csr_decode(const uint8_t *der, size_t n, struct x509_csr **out, struct errbuf *eb);
/* Exactly one "CERTIFICATE REQUEST" (or "NEW CERTIFICATE REQUEST") block. */
int x509_csr_parse_pem(const char *text, size_t n, struct x509_csr **out, struct errbuf *eb);
void x509_csr_free(struct x509_csr *c);

/* ---- SPIFFE IDs (SPIFFE-ID spec §2) ------------------------------------------------------------
 */

struct x509_spiffe {
	struct slice td;   /* trust domain, points into the parsed text */
	struct slice path; /* "" or "/seg/seg..." */
};

/* spiffe://<trust-domain>[/<path>]: lower-case trust domain of [a-z0-9.-_] (no port, userinfo),
 * path segments non-empty, not "." or "..", of [A-Za-z0-9.-_]; no query, fragment or
 * percent-encoding; at most 2048 bytes. */
int x509_spiffe_parse(const char *s, size_t n, struct x509_spiffe *id, struct errbuf *eb);
int x509_trust_domain_check(const char *td, size_t n, struct errbuf *eb);
/* The Istio shape /ns/<ns>/sa/<sa>. */
int x509_spiffe_istio(const struct x509_spiffe *id, struct slice *ns, struct slice *sa,
		      struct errbuf *eb);
/* Writes "spiffe://td/ns/<ns>/sa/<sa>" after validating it; -E_INVAL or -E_LIMIT. */
int x509_spiffe_istio_format(char *out, size_t cap, const char *td, const char *ns, const char *sa,
			     struct errbuf *eb);

/* ---- verification ------------------------------------------------------------------------------
 */

/* X.509-SVID leaf rules (X.509-SVID §4-§5): ECDSA P-256 key, not a CA, keyUsage present with
 * digitalSignature and without keyCertSign/cRLSign, EKU (if present) with serverAuth and
 * clientAuth, exactly one URI SAN that is a SPIFFE ID with a path, and, when trust_domain is
 * not NULL, in that trust domain. id (may be NULL) points into leaf. Returns 0, -E_UNSUPP
 * (key), -E_INVAL (profile), -E_DENIED (trust domain). */
int x509_svid_check(const struct x509_cert *leaf, const char *trust_domain, struct x509_spiffe *id,
		    struct errbuf *eb);

/* Builds and checks a path leaf -> intermediates... -> one of roots (trust anchors, matched by
 * DER subject = issuer name, AKI/SKI when both present, and signature): every signature
 * (ecdsa-with-SHA256, P-256 issuer), validity at now for every certificate (anchors too),
 * CA:TRUE and keyCertSign on every issuer, pathLenConstraint, and x509_svid_check() on the
 * leaf. Returns 0, -E_UNSUPP (key or algorithm), -E_INVAL (SVID profile, not a CA, path
 * length, chain too long), -E_DENIED (trust domain), -E_TIMEOUT (expired / not yet valid),
 * -E_CRYPTO (unknown root, bad signature); the errbuf names the certificate and the rule. */
int x509_verify_chain(const struct x509_cert *leaf, struct x509_cert *const *inter, size_t n_inter,
		      struct x509_cert *const *roots, size_t n_roots, int64_t now,
		      const char *trust_domain, struct errbuf *eb);

#endif
