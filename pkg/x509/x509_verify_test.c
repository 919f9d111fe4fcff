/* Unit tests for strict certificate decoding, certificate files and chain verification. */
#include "pkg/x509/x509_test.h"

#include "test/unit.h"

#include <stdlib.h>

/* ---- strict certificate decoding ---------------------------------------------------------- */

/* A hand-built certificate, for shapes the issuance API refuses to produce. */
struct custom {
	int version; /* 0: v3; -1: absent; else the encoded value */
	const uint8_t *serial;
	size_t serial_n;
	bool inner_null_params, outer_null_params;
	const char *inner_oid;
	bool empty_issuer, empty_subject, swap_times, generalized;
	struct slice spki;
	const uint8_t *exts; /* contents of the Extensions SEQUENCE */
	size_t exts_n;
	bool empty_exts;
	bool trailing;
};

static void put_alg(struct der_enc *e, bool null)
{
	der_begin(e, DER_SEQUENCE);
	der_put_oid_bytes(e, OID_ECDSA_SHA256);
	if (null)
		der_put_null(e);
	der_end(e);
}

static size_t custom_cert(const struct custom *cu, const struct x509_key *signer, uint8_t *out)
{
	static const uint8_t one = 1;
	struct der_enc tbs, cert;
	struct slice s;
	uint8_t sig[X509_SIG_MAX];
	size_t siglen;

	der_enc_init(&tbs, 0);
	der_begin(&tbs, DER_SEQUENCE);
	if (cu->version >= 0) {
		der_begin(&tbs, DER_CTX_CONS(0));
		der_put_int(&tbs, cu->version ? cu->version : 2);
		der_end(&tbs);
	}
	if (cu->serial)
		der_put_tlv(&tbs, DER_INTEGER, cu->serial, cu->serial_n);
	else
		der_put_tlv(&tbs, DER_INTEGER, &one, 1);
	if (cu->inner_oid) {
		der_begin(&tbs, DER_SEQUENCE);
		der_put_oid(&tbs, cu->inner_oid);
		der_end(&tbs);
	} else {
		put_alg(&tbs, cu->inner_null_params);
	}
	if (cu->empty_issuer)
		x509_name_encode(&tbs, NULL, NULL);
	else
		x509_name_encode(&tbs, "issuer", NULL);
	der_begin(&tbs, DER_SEQUENCE);
	if (cu->generalized) {
		der_put_generalized_time(&tbs, NOW);
		der_put_generalized_time(&tbs, NOW + 10);
	} else {
		der_put_time(&tbs, cu->swap_times ? NOW + 10 : NOW);
		der_put_time(&tbs, cu->swap_times ? NOW : NOW + 10);
	}
	der_end(&tbs);
	x509_name_encode(&tbs, cu->empty_subject ? NULL : "subject", NULL);
	if (cu->spki.n)
		der_put_raw(&tbs, cu->spki.p, cu->spki.n);
	else
		x509_spki_encode(x509_key_public(signer), &tbs);
	if (cu->exts_n || cu->empty_exts) {
		der_begin(&tbs, DER_CTX_CONS(3));
		der_begin(&tbs, DER_SEQUENCE);
		der_put_raw(&tbs, cu->exts, cu->exts_n);
		der_end(&tbs);
		der_end(&tbs);
	}
	der_end(&tbs);
	if (der_enc_result(&tbs, &s) < 0 || x509_key_sign(signer, s.p, s.n, sig, &siglen) < 0)
		die("custom_cert");
	der_enc_init(&cert, 0);
	der_begin(&cert, DER_SEQUENCE);
	der_put_raw(&cert, s.p, s.n);
	put_alg(&cert, cu->outer_null_params);
	der_put_bits(&cert, sig, siglen, 0);
	der_end(&cert);
	if (cu->trailing)
		der_put_null(&cert);
	if (der_enc_result(&cert, &s) < 0)
		die("custom_cert");
	memcpy(out, s.p, s.n);
	der_enc_fini(&tbs);
	der_enc_fini(&cert);
	return s.n;
}

/* One Extension TLV: critical 0 = omitted, 1 = TRUE, 2 = explicit FALSE. */
static size_t ext_tlv(uint8_t *out, const char *oid, int critical, const void *val, size_t n)
{
	struct der_enc e;
	struct slice s;

	der_enc_init(&e, 0);
	der_begin(&e, DER_SEQUENCE);
	der_put_oid(&e, oid);
	if (critical)
		der_put_bool(&e, critical == 1);
	der_put_octets(&e, val, n);
	der_end(&e);
	if (der_enc_result(&e, &s) < 0)
		die("ext_tlv");
	memcpy(out, s.p, s.n);
	der_enc_fini(&e);
	return s.n;
}

static const char *decode_err(const uint8_t *der, size_t n, struct errbuf *eb)
{
	struct x509_cert *c = NULL;

	errbuf_clear(eb);
	if (x509_cert_decode(der, n, &c, eb) == 0) {
		x509_cert_free(c);
		return "accepted";
	}
	CHECK(c == NULL);
	return eb->msg;
}

#define EXT(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

TEST(decode_rejects_tbs_shapes)
{
	struct x509_key *k = key_of(0x12);
	uint8_t der[2048];
	struct errbuf eb;
	size_t n;

	n = custom_cert(&(struct custom){0}, k, der);
	CHECK_STR(decode_err(der, n, &eb), "accepted");
	n = custom_cert(&(struct custom){.version = -1}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb),
		       "version: only X.509 v3 certificates are supported (found v1) at offset");
	n = custom_cert(&(struct custom){.version = 1}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb),
		       "only X.509 v3 certificates are supported (found v2)");
	n = custom_cert(&(struct custom){.serial = EXT(0x00)}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb),
		       "serial number must be positive (RFC 5280 §4.1.2.2)");
	n = custom_cert(&(struct custom){.serial = EXT(0xff)}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "serialNumber: negative INTEGER");
	n = custom_cert(&(struct custom){.serial = EXT(0x00, 0x01)}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "serialNumber: INTEGER not minimally encoded");
	{
		uint8_t big[21];
		memset(big, 0x7f, sizeof(big));
		n = custom_cert(&(struct custom){.serial = big, .serial_n = 21}, k, der);
		CHECK_CONTAINS(decode_err(der, n, &eb),
			       "serialNumber: INTEGER longer than 20 octets");
		big[0] = 0x00;
		big[1] = 0x80; /* 20 octets with the top bit set: allowed */
		n = custom_cert(&(struct custom){.serial = big, .serial_n = 21}, k, der);
		CHECK_STR(decode_err(der, n, &eb), "accepted");
	}
	n = custom_cert(&(struct custom){.inner_null_params = true}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb),
		       "signature: parameters present for ecdsa-with-SHA256 (RFC 5758 §3.2)");
	n = custom_cert(&(struct custom){.inner_oid = "1.2.840.10045.4.3.3"}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb),
		       "signature: differs from the outer signatureAlgorithm (RFC 5280 §4.1.2.3)");
	n = custom_cert(&(struct custom){.inner_null_params = true, .outer_null_params = true}, k,
			der);
	CHECK_CONTAINS(
		decode_err(der, n, &eb),
		"signatureAlgorithm: parameters present for ecdsa-with-SHA256 (RFC 5758 §3.2)");
	n = custom_cert(&(struct custom){.empty_issuer = true}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "issuer: empty issuer name (RFC 5280 §4.1.2.4)");
	n = custom_cert(&(struct custom){.swap_times = true}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "validity: notAfter is before notBefore");
	n = custom_cert(&(struct custom){.generalized = true}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb),
		       "validity.notBefore: GeneralizedTime before 2050 (RFC 5280 §4.1.2.5 "
		       "requires UTCTime)");
	n = custom_cert(&(struct custom){.empty_subject = true}, k, der);
	CHECK_STR(decode_err(der, n, &eb),
		  "subject is empty but subjectAltName is missing (RFC 5280 §4.2.1.6)");
	n = custom_cert(&(struct custom){.empty_exts = true}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "extensions: empty SEQUENCE (SIZE (1..MAX))");
	n = custom_cert(&(struct custom){.trailing = true}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "certificate: 2 trailing bytes at offset");
	CHECK_CONTAINS(decode_err(der, n - 3, &eb), "certificate: length");
	CHECK_STR(decode_err(der, 0, &eb), "certificate: missing (end of data) at offset 0");
	x509_key_free(k);
}

TEST(decode_rejects_extension_shapes)
{
	struct x509_key *k = key_of(0x13);
	uint8_t der[2048], ex[512];
	struct errbuf eb;
	size_t n, e;
	struct x509_cert *c;

	/* explicit critical FALSE */
	e = ext_tlv(ex, "2.5.29.15", 2, EXT(0x03, 0x02, 0x07, 0x80));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb),
		       "keyUsage: critical FALSE must be omitted (DER DEFAULT)");
	/* duplicate keyUsage */
	e = ext_tlv(ex, "2.5.29.15", 1, EXT(0x03, 0x02, 0x07, 0x80));
	e += ext_tlv(ex + e, "2.5.29.15", 0, EXT(0x03, 0x02, 0x07, 0x80));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "keyUsage: duplicate extension (RFC 5280 §4.2)");
	/* duplicate unknown extension */
	e = ext_tlv(ex, "1.2.3.4", 0, EXT(0x05, 0x00));
	e += ext_tlv(ex + e, "1.2.3.4", 0, EXT(0x05, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "1.2.3.4: duplicate extension");
	/* unknown critical / non-critical */
	e = ext_tlv(ex, "1.2.3.4", 1, EXT(0x05, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb),
		       "1.2.3.4: unsupported critical extension at offset");
	CHECK_CONTAINS(eb.msg, "(RFC 5280 §4.2)");
	CHECK_INT(eb.code, E_UNSUPP);
	e = ext_tlv(ex, "1.2.3.4", 0, EXT(0x05, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_STR(decode_err(der, n, &eb), "accepted");
	/* nameConstraints (not implemented) marked critical is refused */
	e = ext_tlv(ex, "2.5.29.30", 1, EXT(0x30, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "2.5.29.30: unsupported critical extension");
	/* basicConstraints: cA FALSE encoded, pathLen without cA, trailing data */
	e = ext_tlv(ex, "2.5.29.19", 1, EXT(0x30, 0x03, 0x01, 0x01, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "basicConstraints: cA FALSE must be omitted");
	e = ext_tlv(ex, "2.5.29.19", 1, EXT(0x30, 0x03, 0x02, 0x01, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "pathLenConstraint without cA TRUE");
	e = ext_tlv(ex, "2.5.29.19", 1, EXT(0x30, 0x00, 0x05, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "basicConstraints: 2 trailing bytes");
	e = ext_tlv(ex, "2.5.29.19", 1, EXT(0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x03));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	REQUIRE(x509_cert_decode(der, n, &c, &eb) == 0);
	CHECK(c->ca && c->path_len == 3);
	x509_cert_free(c);
	/* keyUsage with no bits, or trailing zero bits */
	e = ext_tlv(ex, "2.5.29.15", 1, EXT(0x03, 0x01, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "keyUsage: no bits set (RFC 5280 §4.2.1.3)");
	e = ext_tlv(ex, "2.5.29.15", 1, EXT(0x03, 0x02, 0x00, 0x80));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "keyUsage: named bit list has trailing zero bits");
	/* SKI / AKI must be non-critical */
	e = ext_tlv(ex, "2.5.29.14", 1, EXT(0x04, 0x01, 0x01));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "subjectKeyIdentifier: must be non-critical");
	/* AKI with issuer but no serial */
	e = ext_tlv(ex, "2.5.29.35", 0, EXT(0x30, 0x06, 0xa1, 0x04, 0x82, 0x02, 'a', 'b'));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(
		decode_err(der, n, &eb),
		"authorityCertIssuer and authorityCertSerialNumber must be present together");
	/* SAN: empty, empty URI, bad IP length, unknown choice */
	e = ext_tlv(ex, "2.5.29.17", 0, EXT(0x30, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "empty GeneralNames (SIZE (1..MAX))");
	e = ext_tlv(ex, "2.5.29.17", 0, EXT(0x30, 0x02, 0x86, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "GeneralName: empty uniformResourceIdentifier");
	e = ext_tlv(ex, "2.5.29.17", 0, EXT(0x30, 0x05, 0x87, 0x03, 1, 2, 3));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "iPAddress must be 4 or 16 octets, got 3");
	e = ext_tlv(ex, "2.5.29.17", 0, EXT(0x30, 0x03, 0x89, 0x01, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "unknown GeneralName choice [9] primitive");
	e = ext_tlv(ex, "2.5.29.17", 0, EXT(0x30, 0x03, 0x86, 0x01, 0x80));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "non-ASCII character in IA5String");
	/* empty subject with a non-critical SAN */
	e = ext_tlv(ex, "2.5.29.17", 0, EXT(0x30, 0x03, 0x86, 0x01, 'u'));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e, .empty_subject = true}, k, der);
	CHECK_STR(decode_err(der, n, &eb),
		  "subject is empty but subjectAltName is not critical (RFC 5280 §4.2.1.6)");
	/* extKeyUsage empty */
	e = ext_tlv(ex, "2.5.29.37", 0, EXT(0x30, 0x00));
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	CHECK_CONTAINS(decode_err(der, n, &eb), "extKeyUsage: empty SEQUENCE");
	x509_key_free(k);
}

TEST(decode_rejects_bad_signature_encoding)
{
	struct pki p;
	uint8_t der[2048];
	struct errbuf eb;
	size_t n;

	pki_init(&p);
	n = p.leaf->len;
	memcpy(der, p.leaf->der, n);
	/* The signature is the last TLV: 03 xx 00 | 30 yy 02 zz <r> ... */
	size_t sig = n - (size_t)p.leaf->sig.n;
	REQUIRE(der[sig] == 0x30);
	size_t r_last = sig + 3 + der[sig + 3];
	der[r_last] ^= 0xff; /* corrupt r's last octet: still DER, wrong value */
	CHECK_STR(decode_err(der, n, &eb), "accepted");
	struct x509_cert *c;
	REQUIRE(x509_cert_decode(der, n, &c, &eb) == 0);
	CHECK_INT(x509_cert_check_signature(c, &p.root->pub, &eb), -E_CRYPTO);
	x509_cert_free(c);
	der[r_last] ^= 0xff;
	der[sig] = 0x31; /* not an ECDSA-Sig-Value SEQUENCE */
	CHECK_CONTAINS(decode_err(der, n, &eb), "signatureValue: expected SEQUENCE, found SET");
	pki_fini(&p);
}

TEST(cert_pem_and_chain_files)
{
	struct pki p;
	struct buf b;
	struct x509_chain ch;
	struct x509_cert *c;
	struct errbuf eb;

	pki_init(&p);
	buf_init(&b, 0);
	REQUIRE(x509_cert_format_pem(p.leaf2, &b) == 0);
	REQUIRE(x509_cert_format_pem(p.inter, &b) == 0);
	REQUIRE(x509_chain_parse_pem((const char *)buf_rptr(&b), buf_len(&b), &ch, &eb) == 0);
	REQUIRE(ch.n == 2);
	CHECK(ch.v[0]->len == p.leaf2->len && !memcmp(ch.v[0]->der, p.leaf2->der, ch.v[0]->len));
	CHECK_STR(ch.v[1]->subject_text, "O=cluster.local, CN=Intermediate CA");
	x509_chain_fini(&ch);
	CHECK_INT(x509_cert_parse_pem((const char *)buf_rptr(&b), buf_len(&b), &c, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "expected one CERTIFICATE PEM block, found 2 blocks");
	REQUIRE(x509_key_format_pem(p.lk, X509_KEY_PKCS8, &b) == 0);
	CHECK_INT(x509_chain_parse_pem((const char *)buf_rptr(&b), buf_len(&b), &ch, &eb),
		  -E_INVAL);
	CHECK_CONTAINS(eb.msg, "is 'PRIVATE KEY', not CERTIFICATE");
	CHECK(ch.n == 0 && ch.v == NULL);
	x509_buf_wipe(&b);
	buf_init(&b, 0);
	REQUIRE(x509_cert_format_pem(p.root, &b) == 0);
	REQUIRE(x509_cert_parse_pem((const char *)buf_rptr(&b), buf_len(&b), &c, &eb) == 0);
	CHECK_STR(c->subject_text, "O=cluster.local");
	x509_cert_free(c);
	buf_fini(&b);
	pki_fini(&p);
}

TEST(name_text_escapes)
{
	struct der_enc e;
	struct slice s;
	char *t;

	der_enc_init(&e, 0);
	x509_name_encode(&e, "a,b+c", " lead\x01");
	REQUIRE(der_enc_result(&e, &s) == 0);
	t = x509_name_text(s);
	CHECK_STR(t, "O=a\\,b\\+c, CN=\\ lead\\01");
	free(t);
	der_enc_fini(&e);
}

/* ---- verification ------------------------------------------------------------------------- */

static const char *verify_err(const struct x509_cert *leaf, struct x509_cert *const *inter,
			      size_t ni, struct x509_cert *const *roots, size_t nr, int64_t now,
			      const char *td, struct errbuf *eb)
{
	errbuf_clear(eb);
	return x509_verify_chain(leaf, inter, ni, roots, nr, now, td, eb) == 0 ? "accepted"
									       : eb->msg;
}

TEST(verify_good_chains)
{
	struct pki p;
	struct errbuf eb;
	struct x509_cert *other_root;
	struct x509_cert *roots[2], *inters[2];

	pki_init(&p);
	CHECK_STR(verify_err(p.leaf, NULL, 0, &p.root, 1, NOW, TD, &eb), "accepted");
	CHECK_STR(verify_err(p.leaf, NULL, 0, &p.root, 1, NOW, NULL, &eb), "accepted");
	CHECK_STR(verify_err(p.leaf2, &p.inter, 1, &p.root, 1, NOW, TD, &eb), "accepted");
	/* extra unrelated certificates and several roots (rotation) */
	REQUIRE(x509_self_signed_root(p.ik, "other.td", NOW, 0, &other_root, &eb) == 0);
	roots[0] = other_root;
	roots[1] = p.root;
	inters[0] = p.leaf;
	inters[1] = p.inter;
	CHECK_STR(verify_err(p.leaf2, inters, 2, roots, 2, NOW, TD, &eb), "accepted");
	/* the intermediate itself as a trust anchor */
	CHECK_STR(verify_err(p.leaf2, NULL, 0, &p.inter, 1, NOW, TD, &eb), "accepted");
	/* time edges are inclusive */
	CHECK_STR(verify_err(p.leaf, NULL, 0, &p.root, 1, NOW - 120, TD, &eb), "accepted");
	CHECK_STR(verify_err(p.leaf, NULL, 0, &p.root, 1, NOW + 86400, TD, &eb), "accepted");
	x509_cert_free(other_root);
	pki_fini(&p);
}

TEST(verify_distinct_failures)
{
	struct pki p;
	struct errbuf eb;
	struct x509_cert *other, *same_name, *c;
	struct x509_key *ok = key_of(0x44);

	pki_init(&p);
	CHECK_STR(verify_err(p.leaf, NULL, 0, &p.root, 1, NOW + 86401, TD, &eb),
		  "certificate expired: leaf (" ID ") expired at 2025-06-02T00:00:00Z (now "
		  "2025-06-02T00:00:01Z)");
	CHECK_INT(eb.code, E_TIMEOUT);
	CHECK_STR(verify_err(p.leaf, NULL, 0, &p.root, 1, NOW - 121, TD, &eb),
		  "certificate not yet valid: leaf (" ID ") is valid from 2025-05-31T23:58:00Z "
		  "(now 2025-05-31T23:57:59Z)");
	CHECK_STR(verify_err(p.leaf, NULL, 0, &p.root, 1, NOW, "other.local", &eb),
		  "wrong trust domain: leaf SPIFFE ID '" ID "' is in trust domain "
		  "'cluster.local', expected 'other.local'");
	CHECK_INT(eb.code, E_DENIED);
	/* a root of another name: unknown; the same name with another key: bad signature */
	REQUIRE(x509_self_signed_root(ok, "other.local", NOW, 0, &other, &eb) == 0);
	REQUIRE(x509_self_signed_root(ok, TD, NOW, 0, &same_name, &eb) == 0);
	CHECK_STR(verify_err(p.leaf, NULL, 0, &other, 1, NOW, TD, &eb),
		  "unknown root: no trusted root or intermediate 'O=cluster.local' issued leaf "
		  "(" ID ")");
	CHECK_INT(eb.code, E_CRYPTO);
	/* the AKI names the real root's key, so the impostor does not even match */
	CHECK_CONTAINS(verify_err(p.leaf, NULL, 0, &same_name, 1, NOW, TD, &eb), "unknown root");
	CHECK_STR(verify_err(p.leaf2, NULL, 0, &p.root, 1, NOW, TD, &eb),
		  "unknown root: no trusted root or intermediate 'O=cluster.local, "
		  "CN=Intermediate CA' issued leaf (" ID ")");
	/* tampered signature with the right root */
	{
		uint8_t der[2048];
		size_t n = p.leaf->len;
		memcpy(der, p.leaf->der, n);
		der[n - 5] ^= 1;
		REQUIRE(x509_cert_decode(der, n, &c, &eb) == 0);
		CHECK_STR(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb),
			  "bad signature: leaf (" ID ") is not signed by the key of "
			  "'O=cluster.local'");
		CHECK_INT(eb.code, E_CRYPTO);
		x509_cert_free(c);
	}
	x509_cert_free(other);
	x509_cert_free(same_name);
	x509_key_free(ok);
	pki_fini(&p);
}

/* Leaves with one defect each, built directly (the issuance API refuses to make them). */
static struct x509_cert *bad_leaf(struct pki *p, const char *const *uris, size_t n_uris, bool ca,
				  uint32_t ku, uint32_t eku)
{
	uint8_t kid[X509_KEY_ID_LEN];
	static const uint8_t serial[] = {5};
	static const uint8_t empty[] = {0x30, 0x00};
	struct x509_tbs t = {.serial = serial,
			     .serial_len = 1,
			     .issuer = p->root->subject,
			     .subject = {empty, 2},
			     .not_before = NOW - 60,
			     .not_after = NOW + 3600,
			     .pub = x509_key_public(p->lk),
			     .bc = true,
			     .ca = ca,
			     .bc_critical = true,
			     .path_len = -1,
			     .ku = ku,
			     .ku_critical = true,
			     .eku = eku,
			     .uris = uris,
			     .n_uris = n_uris,
			     .san_critical = true,
			     .ski = true};
	struct x509_cert *c;
	struct errbuf eb;

	x509_pubkey_key_id(&p->root->pub, kid);
	t.aki = (struct slice){kid, sizeof(kid)};
	if (x509_cert_build(&t, p->rk, &c, &eb) < 0)
		die("bad_leaf: %s", eb.msg);
	return c;
}

TEST(verify_svid_rules)
{
	struct pki p;
	struct errbuf eb;
	struct x509_cert *c;
	const char *two[] = {ID, "spiffe://cluster.local/ns/default/sa/bar"};
	const char *notspiffe[] = {"https://example.com/x"};
	const char *rootid[] = {"spiffe://cluster.local"};
	const uint32_t ku = X509_KU_DIGITAL_SIGNATURE;
	const uint32_t both = X509_EKU_SERVER_AUTH | X509_EKU_CLIENT_AUTH;

	pki_init(&p);
	c = bad_leaf(&p, two, 2, false, ku, both);
	CHECK_STR(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb),
		  "leaf certificate has 2 URI SANs; an X.509-SVID must have exactly one "
		  "(X.509-SVID §2)");
	x509_cert_free(c);
	c = bad_leaf(&p, two, 1, true, ku, both);
	CHECK_STR(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb),
		  "leaf certificate is a CA (basicConstraints CA:TRUE); an X.509-SVID leaf must "
		  "have CA:FALSE (X.509-SVID §4.1)");
	x509_cert_free(c);
	c = bad_leaf(&p, two, 1, false, 0, both);
	CHECK_STR(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb),
		  "leaf certificate has no keyUsage extension (X.509-SVID §4.3)");
	x509_cert_free(c);
	c = bad_leaf(&p, two, 1, false, X509_KU_KEY_ENCIPHERMENT, both);
	CHECK_CONTAINS(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb),
		       "keyUsage lacks digitalSignature");
	x509_cert_free(c);
	c = bad_leaf(&p, two, 1, false, ku | X509_KU_KEY_CERT_SIGN, both);
	CHECK_CONTAINS(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb),
		       "keyUsage has keyCertSign or cRLSign");
	x509_cert_free(c);
	c = bad_leaf(&p, two, 1, false, ku, X509_EKU_SERVER_AUTH);
	CHECK_CONTAINS(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb),
		       "extKeyUsage lacks serverAuth or clientAuth");
	x509_cert_free(c);
	c = bad_leaf(&p, two, 1, false, ku, 0); /* EKU is optional */
	CHECK_STR(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb), "accepted");
	x509_cert_free(c);
	c = bad_leaf(&p, notspiffe, 1, false, ku, both);
	CHECK_STR(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb),
		  "leaf certificate URI SAN: invalid SPIFFE ID 'https://example.com/x': must start "
		  "with spiffe://");
	x509_cert_free(c);
	c = bad_leaf(&p, rootid, 1, false, ku, both);
	CHECK_STR(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb),
		  "leaf SPIFFE ID 'spiffe://cluster.local' has no path (X.509-SVID §3.1)");
	x509_cert_free(c);
	pki_fini(&p);
}

TEST(verify_issuer_rules)
{
	struct pki p;
	struct errbuf eb;
	struct x509_cert *inter2, *leaf3, *longleaf;
	struct x509_key *k2 = key_of(0x55);
	uint8_t kid[X509_KEY_ID_LEN], kid2[X509_KEY_ID_LEN];
	static const uint8_t serial[] = {9};
	static const uint8_t empty[] = {0x30, 0x00};
	struct der_enc name;
	struct slice nm;
	const char *uris[] = {ID};

	pki_init(&p);
	/* inter (pathLen 0) -> inter2 -> leaf3: inter2 violates inter's pathLenConstraint */
	der_enc_init(&name, 0);
	x509_name_encode(&name, TD, "Second");
	REQUIRE(der_enc_result(&name, &nm) == 0);
	x509_pubkey_key_id(&p.inter->pub, kid);
	struct x509_tbs t = {.serial = serial,
			     .serial_len = 1,
			     .issuer = p.inter->subject,
			     .subject = nm,
			     .not_before = NOW - 60,
			     .not_after = NOW + 3600,
			     .pub = x509_key_public(k2),
			     .bc = true,
			     .ca = true,
			     .bc_critical = true,
			     .path_len = -1,
			     .ku = X509_KU_KEY_CERT_SIGN,
			     .ku_critical = true,
			     .ski = true,
			     .aki = {kid, sizeof(kid)}};
	REQUIRE(x509_cert_build(&t, p.ik, &inter2, &eb) == 0);
	x509_pubkey_key_id(x509_key_public(k2), kid2);
	struct x509_tbs lt = {.serial = serial,
			      .serial_len = 1,
			      .issuer = nm,
			      .subject = {empty, 2},
			      .not_before = NOW - 60,
			      .not_after = NOW + 3600,
			      .pub = x509_key_public(p.lk),
			      .bc = true,
			      .bc_critical = true,
			      .path_len = -1,
			      .ku = X509_KU_DIGITAL_SIGNATURE,
			      .ku_critical = true,
			      .uris = uris,
			      .n_uris = 1,
			      .san_critical = true,
			      .aki = {kid2, sizeof(kid2)}};
	REQUIRE(x509_cert_build(&lt, k2, &leaf3, &eb) == 0);
	struct x509_cert *chain[2] = {inter2, p.inter};
	CHECK_STR(verify_err(leaf3, chain, 2, &p.root, 1, NOW, TD, &eb),
		  "intermediate 2 'O=cluster.local, CN=Intermediate CA' has pathLenConstraint 0 "
		  "but 1 intermediate CAs below it");
	/* the same chain anchored at inter2 is fine; anchored at inter it is not */
	CHECK_STR(verify_err(leaf3, NULL, 0, &inter2, 1, NOW, TD, &eb), "accepted");
	CHECK_CONTAINS(verify_err(leaf3, &inter2, 1, &p.inter, 1, NOW, TD, &eb),
		       "root 'O=cluster.local, CN=Intermediate CA' has pathLenConstraint 0");
	/* an intermediate that is not a CA: use the leaf's key and name as an "issuer" */
	x509_cert_free(leaf3);
	t.ca = false;
	t.path_len = -1;
	t.ku = X509_KU_DIGITAL_SIGNATURE;
	t.issuer = p.root->subject;
	x509_pubkey_key_id(&p.root->pub, kid);
	x509_cert_free(inter2);
	REQUIRE(x509_cert_build(&t, p.rk, &inter2, &eb) == 0);
	REQUIRE(x509_cert_build(&lt, k2, &leaf3, &eb) == 0);
	CHECK_STR(verify_err(leaf3, &inter2, 1, &p.root, 1, NOW, TD, &eb),
		  "intermediate 1 'O=cluster.local, CN=Second' is not a CA (basicConstraints "
		  "CA:TRUE missing)");
	CHECK_INT(eb.code, E_INVAL);
	x509_cert_free(inter2);
	t.ca = true;
	t.ku = X509_KU_CRL_SIGN;
	REQUIRE(x509_cert_build(&t, p.rk, &inter2, &eb) == 0);
	CHECK_STR(verify_err(leaf3, &inter2, 1, &p.root, 1, NOW, TD, &eb),
		  "intermediate 1 'O=cluster.local, CN=Second' may not sign certificates (keyUsage "
		  "keyCertSign missing)");
	x509_cert_free(inter2);
	/* an expired intermediate (the leaf itself still valid) */
	t.ku = X509_KU_KEY_CERT_SIGN;
	t.not_after = NOW - 1;
	t.not_before = NOW - 7200;
	REQUIRE(x509_cert_build(&t, p.rk, &inter2, &eb) == 0);
	CHECK_STR(verify_err(leaf3, &inter2, 1, &p.root, 1, NOW, TD, &eb),
		  "certificate expired: intermediate 1 'O=cluster.local, CN=Second' expired at "
		  "2025-05-31T23:59:59Z (now 2025-06-01T00:00:00Z)");
	x509_cert_free(inter2);
	x509_cert_free(leaf3);
	/* an expired root with a leaf that outlives it */
	lt.issuer = p.root->subject;
	lt.not_after = NOW + 4000 * 86400LL;
	x509_pubkey_key_id(&p.root->pub, kid2);
	REQUIRE(x509_cert_build(&lt, p.rk, &longleaf, &eb) == 0);
	CHECK_CONTAINS(verify_err(longleaf, NULL, 0, &p.root, 1, NOW + 3700 * 86400LL, TD, &eb),
		       "certificate expired: root 'O=cluster.local' expired at 2035-05-30");
	x509_cert_free(longleaf);
	der_enc_fini(&name);
	x509_key_free(k2);
	pki_fini(&p);
}

TEST(verify_leaf_key_types)
{
	struct pki p;
	struct x509_key *k = key_of(0x12);
	uint8_t der[2048], spki[600], rsa[300], pt[97], ex[256];
	size_t n, sn, e;
	struct x509_cert *c;
	struct errbuf eb;

	pki_init(&p);
	/* The key rule is checked before any path building, so the issuer does not matter. */
	e = ext_tlv(ex, "2.5.29.17", 1,
		    EXT(0x30, 0x2a, 0x86, 0x28, 's', 'p', 'i', 'f', 'f', 'e', ':', '/', '/', 'c',
			'l', 'u', 's', 't', 'e', 'r', '.', 'l', 'o', 'c', 'a', 'l', '/', 'n', 's',
			'/', 'd', 'e', 'f', 'a', 'u', 'l', 't', '/', 's', 'a', '/', 'f', 'o', 'o'));
	e += ext_tlv(ex + e, "2.5.29.15", 1, EXT(0x03, 0x02, 0x07, 0x80));
	sn = spki_custom(spki, "1.2.840.113549.1.1.1", NULL, true, rsa, rsa_key_bits(rsa));
	n = custom_cert(&(struct custom){.spki = {spki, sn}, .exts = ex, .exts_n = e}, k, der);
	REQUIRE(x509_cert_decode(der, n, &c, &eb) == 0);
	CHECK_INT(x509_svid_check(c, TD, NULL, &eb), -E_UNSUPP);
	CHECK_STR(eb.msg, "leaf certificate key is RSA 2048-bit; only ECDSA P-256 keys are "
			  "supported");
	CHECK_STR(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb),
		  "leaf certificate key is RSA 2048-bit; only ECDSA P-256 keys are supported");
	x509_cert_free(c);
	memset(pt, 4, sizeof(pt));
	sn = spki_custom(spki, "1.2.840.10045.2.1", "1.3.132.0.34", false, pt, 97);
	n = custom_cert(&(struct custom){.spki = {spki, sn}, .exts = ex, .exts_n = e}, k, der);
	REQUIRE(x509_cert_decode(der, n, &c, &eb) == 0);
	CHECK_STR(verify_err(c, NULL, 0, &p.root, 1, NOW, TD, &eb),
		  "leaf certificate key is ECDSA secp384r1; only ECDSA P-256 keys are supported");
	x509_cert_free(c);
	/* the same leaf with a P-256 key passes the SVID rules */
	n = custom_cert(&(struct custom){.exts = ex, .exts_n = e}, k, der);
	REQUIRE(x509_cert_decode(der, n, &c, &eb) == 0);
	CHECK_INT(x509_svid_check(c, TD, NULL, &eb), 0);
	x509_cert_free(c);
	x509_key_free(k);
	pki_fini(&p);
}
