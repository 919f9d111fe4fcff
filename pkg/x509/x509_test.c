/* Unit tests for keys, PEM, SubjectPublicKeyInfo, SPIFFE IDs, issuance and CSRs. */
#include "pkg/x509/x509_test.h"

#include "test/unit.h"

#include <stdlib.h>

struct x509_key *key_of(uint8_t fill)
{
	uint8_t d[32];
	struct x509_key *k;

	memset(d, fill, sizeof(d));
	if (x509_key_from_scalar(d, sizeof(d), &k, NULL) < 0)
		die("test key");
	return k;
}

void pki_init(struct pki *p)
{
	static const uint8_t serial[X509_SERIAL_LEN] = {0x80, 1, 2,  3,	 4,  5,	 6,  7,
							8,    9, 10, 11, 12, 13, 14, 15};
	struct errbuf eb;
	struct x509_leaf_req req = {.spiffe_id = ID, .now = NOW, .serial = serial};
	struct x509_ca_req cr = {.org = TD, .cn = "Intermediate CA", .path_len = 0, .now = NOW};

	memset(p, 0, sizeof(*p));
	p->rk = key_of(0x11);
	p->ik = key_of(0x22);
	p->lk = key_of(0x33);
	req.pub = x509_key_public(p->lk);
	cr.pub = x509_key_public(p->ik);
	if (x509_self_signed_root(p->rk, TD, NOW, 0, &p->root, &eb) < 0 ||
	    x509_issue_leaf(p->root, p->rk, &req, &p->leaf, NULL, &eb) < 0 ||
	    x509_issue_intermediate(p->root, p->rk, &cr, &p->inter, NULL, &eb) < 0 ||
	    x509_issue_leaf(p->inter, p->ik, &req, &p->leaf2, NULL, &eb) < 0)
		die("test pki: %s", eb.msg);
}

void pki_fini(struct pki *p)
{
	x509_cert_free(p->root);
	x509_cert_free(p->inter);
	x509_cert_free(p->leaf);
	x509_cert_free(p->leaf2);
	x509_key_free(p->rk);
	x509_key_free(p->ik);
	x509_key_free(p->lk);
}

bool slice_is(struct slice s, const char *str)
{
	return s.n == strlen(str) && memcmp(s.p, str, s.n) == 0;
}

/* ---- keys --------------------------------------------------------------------------------- */

TEST(key_generate_sign_verify)
{
	struct x509_key *a, *b;
	uint8_t sig[X509_SIG_MAX];
	size_t n;
	struct x509_pubkey pa;

	REQUIRE(x509_key_generate(&a) == 0);
	REQUIRE(x509_key_generate(&b) == 0);
	CHECK(!x509_pubkey_equal(x509_key_public(a), x509_key_public(b)));
	pa = *x509_key_public(a);
	CHECK_INT(pa.type, X509_KEY_P256);
	CHECK_STR(pa.desc, "ECDSA P-256");
	CHECK_INT(pa.q[0], 0x04);
	CHECK_INT(x509_key_sign(a, "hello", 5, sig, &n), 0);
	CHECK(n >= 8 && n <= X509_SIG_MAX);
	CHECK_INT(x509_pubkey_verify(&pa, "hello", 5, sig, n), 0);
	CHECK_INT(x509_pubkey_verify(&pa, "hellO", 5, sig, n), -E_CRYPTO);
	CHECK_INT(x509_pubkey_verify(x509_key_public(b), "hello", 5, sig, n), -E_CRYPTO);
	CHECK(x509_key_br(a)->xlen == 32 && x509_key_br(a)->curve == BR_EC_secp256r1);
	x509_key_free(a);
	x509_key_free(b);
	x509_key_free(NULL);
}

TEST(key_from_scalar_range)
{
	static const uint8_t n_minus_1[32] = {
		0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
		0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x50,
	};
	uint8_t d[32];
	struct x509_key *k = NULL;
	struct errbuf eb;

	CHECK_INT(x509_key_from_scalar(n_minus_1, 32, &k, &eb), 0);
	x509_key_free(k);
	memcpy(d, n_minus_1, 32);
	d[31] = 0x51; /* = n */
	CHECK_INT(x509_key_from_scalar(d, 32, &k, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "P-256 private key scalar out of range");
	memset(d, 0, 32);
	CHECK_INT(x509_key_from_scalar(d, 32, &k, &eb), -E_INVAL);
	/* d = 1: the public key is the generator */
	d[31] = 1;
	REQUIRE(x509_key_from_scalar(d, 32, &k, &eb) == 0);
	CHECK_INT(x509_key_public(k)->q[1], 0x6b);
	CHECK_INT(x509_key_public(k)->q[64], 0xf5);
	x509_key_free(k);
}

TEST(key_der_and_pem_round_trip)
{
	static const uint8_t pkcs8_head[] = {0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06,
					     0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
					     0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
					     0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20};
	static const uint8_t sec1_head[] = {0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20};
	struct x509_key *k = key_of(0x42), *back;
	uint8_t der[256];
	struct buf pem;
	struct errbuf eb;
	int n;

	n = x509_key_encode(k, X509_KEY_PKCS8, der, sizeof(der));
	REQUIRE(n == 138);
	CHECK_MEM(der, pkcs8_head, sizeof(pkcs8_head));
	CHECK_INT(der[sizeof(pkcs8_head)], 0x42);
	REQUIRE(x509_key_decode(der, (size_t)n, &back, &eb) == 0);
	CHECK(x509_pubkey_equal(x509_key_public(k), x509_key_public(back)));
	x509_key_free(back);
	n = x509_key_encode(k, X509_KEY_SEC1, der, sizeof(der));
	REQUIRE(n == 121);
	CHECK_MEM(der, sec1_head, sizeof(sec1_head));
	REQUIRE(x509_key_decode(der, (size_t)n, &back, &eb) == 0);
	CHECK(x509_pubkey_equal(x509_key_public(k), x509_key_public(back)));
	x509_key_free(back);
	CHECK_INT(x509_key_encode(k, X509_KEY_SEC1, der, 100), -E_LIMIT);

	for (int f = 0; f < 2; f++) {
		buf_init(&pem, 0);
		REQUIRE(x509_key_format_pem(k, f ? X509_KEY_SEC1 : X509_KEY_PKCS8, &pem) == 0);
		CHECK(!memcmp(buf_rptr(&pem),
			      f ? "-----BEGIN EC PRIVATE KEY-----\n"
				: "-----BEGIN PRIVATE KEY-----\n",
			      f ? 31 : 28));
		REQUIRE(x509_key_parse_pem((const char *)buf_rptr(&pem), buf_len(&pem), &back,
					   &eb) == 0);
		CHECK(x509_pubkey_equal(x509_key_public(k), x509_key_public(back)));
		x509_key_free(back);
		x509_buf_wipe(&pem);
		CHECK(pem.data == NULL);
	}
	x509_key_free(k);
}

/* A SEC1 key with a chosen curve OID / key length / public key, for the refusals. */
static size_t sec1_custom(uint8_t *out, const char *curve, size_t dlen, const uint8_t *pub)
{
	struct der_enc e;
	struct slice s;
	uint8_t d[48];

	memset(d, 0x55, sizeof(d));
	der_enc_init(&e, 0);
	der_begin(&e, DER_SEQUENCE);
	der_put_int(&e, 1);
	der_put_octets(&e, d, dlen);
	if (curve) {
		der_begin(&e, DER_CTX_CONS(0));
		der_put_oid(&e, curve);
		der_end(&e);
	}
	if (pub) {
		der_begin(&e, DER_CTX_CONS(1));
		der_put_bits(&e, pub, 65, 0);
		der_end(&e);
	}
	der_end(&e);
	if (der_enc_result(&e, &s) < 0)
		die("sec1_custom");
	memcpy(out, s.p, s.n);
	der_enc_fini(&e);
	return s.n;
}

static const char *key_err(const uint8_t *der, size_t n, struct errbuf *eb)
{
	struct x509_key *k = NULL;

	errbuf_clear(eb);
	if (x509_key_decode(der, n, &k, eb) == 0) {
		x509_key_free(k);
		return "accepted";
	}
	CHECK(k == NULL);
	return eb->msg;
}

TEST(key_decode_refusals)
{
	uint8_t der[256], pub[65];
	struct errbuf eb;
	struct x509_key *k = key_of(0x55);
	size_t n;

	memcpy(pub, x509_key_public(k)->q, 65);
	n = sec1_custom(der, "1.2.840.10045.3.1.7", 32, pub);
	CHECK_STR(key_err(der, n, &eb), "accepted");
	n = sec1_custom(der, "1.3.132.0.34", 48, NULL);
	CHECK_STR(key_err(der, n, &eb),
		  "private key is ECDSA secp384r1; only ECDSA P-256 keys are supported");
	CHECK_INT(eb.code, E_UNSUPP);
	n = sec1_custom(der, "1.2.840.10045.3.1.7", 31, NULL);
	CHECK_STR(key_err(der, n, &eb),
		  "EC private key must be 32 octets for P-256 (RFC 5915), got 31");
	n = sec1_custom(der, NULL, 32, NULL);
	CHECK_STR(key_err(der, n, &eb), "EC private key without curve parameters");
	pub[10] ^= 1;
	n = sec1_custom(der, "1.2.840.10045.3.1.7", 32, pub);
	CHECK_STR(key_err(der, n, &eb),
		  "public key in the private key file does not match the private key");
	/* PKCS#1 RSAPrivateKey: SEQUENCE { 0, n, e, ... } */
	static const uint8_t rsa1[] = {0x30, 0x08, 0x02, 0x01, 0x00, 0x02, 0x01, 0x05, 0x02, 0x00};
	CHECK_CONTAINS(key_err(rsa1, sizeof(rsa1), &eb), "private key is RSA (PKCS#1)");
	/* PKCS#8 with rsaEncryption */
	static const uint8_t rsa8[] = {0x30, 0x14, 0x02, 0x01, 0x00, 0x30, 0x0d, 0x06,
				       0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
				       0x01, 0x01, 0x05, 0x00, 0x04, 0x00};
	CHECK_STR(key_err(rsa8, sizeof(rsa8), &eb),
		  "private key is RSA; only ECDSA P-256 keys are supported");
	CHECK_CONTAINS(key_err(rsa8, sizeof(rsa8) - 1, &eb), "offset");
	x509_key_free(k);
}

static const char *pem_key_err(const char *text, struct errbuf *eb)
{
	struct x509_key *k = NULL;

	errbuf_clear(eb);
	if (x509_key_parse_pem(text, strlen(text), &k, eb) == 0) {
		x509_key_free(k);
		return "accepted";
	}
	return eb->msg;
}

TEST(key_pem_labels)
{
	struct errbuf eb;

	CHECK_STR(pem_key_err(
			  "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
			  &eb),
		  "private key is RSA (PEM block at line 1); only ECDSA P-256 keys are supported");
	CHECK_STR(pem_key_err("x\n-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED "
			      "PRIVATE KEY-----\n",
			      &eb),
		  "encrypted private keys are not supported (PEM block at line 2)");
	CHECK_STR(
		pem_key_err("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", &eb),
		"no private key in PEM");
	CHECK_STR(
		pem_key_err("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
			    "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
			    &eb),
		"more than one private key in PEM (blocks at lines 1 and 4)");
	CHECK_CONTAINS(
		pem_key_err("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", &eb),
		"PRIVATE KEY (PEM block at line 1): PrivateKeyInfo: expected SEQUENCE");
}

/* ---- PEM ---------------------------------------------------------------------------------- */

static const char *pem_err(const char *text, struct errbuf *eb)
{
	struct x509_pem_list l;

	errbuf_clear(eb);
	if (x509_pem_parse(text, strlen(text), &l, eb) == 0) {
		x509_pem_list_fini(&l);
		return "accepted";
	}
	CHECK(l.n == 0 && l.v == NULL);
	return eb->msg;
}

TEST(pem_parse_blocks)
{
	const char *text = "Explanatory text\r\n"
			   "-----BEGIN A-----\r\n"
			   "AAEC  \r\n"
			   "/w==\r\n"
			   "-----END A-----\r\n"
			   "between\n"
			   "-----BEGIN LABEL WITH-SPACE-----\n"
			   "QUJD\n"
			   "-----END LABEL WITH-SPACE-----";
	struct x509_pem_list l;
	struct errbuf eb;

	REQUIRE(x509_pem_parse(text, strlen(text), &l, &eb) == 0);
	REQUIRE(l.n == 2);
	CHECK_STR(l.v[0].label, "A");
	CHECK_INT(l.v[0].line, 2);
	CHECK_INT(l.v[0].len, 4);
	CHECK_MEM(l.v[0].der, "\x00\x01\x02\xff", 4);
	CHECK_STR(l.v[1].label, "LABEL WITH-SPACE");
	CHECK_INT(l.v[1].line, 7);
	CHECK_MEM(l.v[1].der, "ABC", 3);
	x509_pem_list_fini(&l);
}

TEST(pem_strictness)
{
	struct errbuf eb;

	CHECK_STR(pem_err("-----BEGIN A-----\nAAAA\n-----END B-----\n", &eb),
		  "PEM line 3: END label does not match BEGIN 'A' at line 1");
	CHECK_STR(pem_err("-----BEGIN A-----\nAAAA\n", &eb),
		  "PEM: no END line for 'A' block at line 1");
	CHECK_STR(pem_err("-----BEGIN A-----\nAA!A\n-----END A-----\n", &eb),
		  "PEM line 2: invalid base64 character 0x21 in 'A' block");
	CHECK_STR(pem_err("-----BEGIN A-----\nAA A\n-----END A-----\n", &eb),
		  "PEM line 2: invalid base64 character 0x20 in 'A' block");
	CHECK_STR(pem_err("-----BEGIN A-----\nAA=A\n-----END A-----\n", &eb),
		  "PEM line 2: base64 data after padding in 'A' block");
	CHECK_STR(pem_err("-----BEGIN A-----\nA===\n-----END A-----\n", &eb),
		  "PEM line 2: too much base64 padding in 'A' block");
	CHECK_STR(pem_err("-----BEGIN A-----\nQR==\n-----END A-----\n", &eb),
		  "PEM line 2: non-canonical base64 in 'A' block");
	CHECK_STR(pem_err("-----BEGIN A-----\nQUJ=\n-----END A-----\n", &eb),
		  "PEM line 2: non-canonical base64 in 'A' block");
	CHECK_STR(pem_err("-----BEGIN A-----\nAAA\n-----END A-----\n", &eb),
		  "PEM line 2: base64 length 3 in 'A' block is not a multiple of 4");
	CHECK_STR(pem_err("-----BEGIN A-----\n-----END A-----\n", &eb),
		  "PEM line 1: empty 'A' block");
	CHECK_STR(
		pem_err("-----BEGIN A-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END A-----\n", &eb),
		"PEM line 2: headers in 'A' block are not supported (encrypted PEM?)");
	CHECK_STR(pem_err("-----BEGIN A-----\nAAAA\n\nAAAA\n-----END A-----\n", &eb),
		  "PEM line 3: blank line inside 'A' block");
	CHECK_STR(pem_err("-----BEGIN A-----\nAAAA\n-----BEGIN B-----\n", &eb),
		  "PEM line 3: unexpected boundary inside 'A' block (missing END?)");
	CHECK_STR(pem_err("-----END A-----\n", &eb), "PEM line 1: END without BEGIN");
	CHECK_STR(pem_err("-----BEGIN a--b-----\nAAAA\n-----END a--b-----\n", &eb),
		  "PEM line 1: invalid label");
	CHECK_STR(pem_err("no pem here\n", &eb), "PEM: no BEGIN line found");
	CHECK_STR(pem_err("", &eb), "PEM: no BEGIN line found");
	{
		const char nul[] = "-----BEGIN A-----\nAA\0A\n-----END A-----\n";
		struct x509_pem_list l;
		CHECK_INT(x509_pem_parse(nul, sizeof(nul) - 1, &l, &eb), -E_PARSE);
		CHECK_STR(eb.msg, "PEM: NUL byte in text");
	}
}

TEST(pem_format_wraps_at_64)
{
	uint8_t data[100];
	struct buf b;
	struct x509_pem_list l;
	struct errbuf eb;
	const char *s;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	buf_init(&b, 0);
	REQUIRE(x509_pem_format(&b, "CERTIFICATE", data, sizeof(data)) == 0);
	s = (const char *)buf_rptr(&b);
	/* 100 octets = 136 base64 chars = 64 + 64 + 8 */
	CHECK_INT(buf_len(&b), 28 + 65 + 65 + 9 + 26);
	CHECK(s[28 + 64] == '\n' && s[28 + 65 + 64] == '\n');
	CHECK(!memcmp(s + buf_len(&b) - 26, "-----END CERTIFICATE-----\n", 26));
	REQUIRE(x509_pem_parse(s, buf_len(&b), &l, &eb) == 0);
	CHECK_INT(l.v[0].len, sizeof(data));
	CHECK_MEM(l.v[0].der, data, sizeof(data));
	x509_pem_list_fini(&l);
	CHECK_INT(x509_pem_format(&b, "bad--label", data, 1), -E_INVAL);
	buf_fini(&b);
}

/* ---- SPKI --------------------------------------------------------------------------------- */

size_t spki_custom(uint8_t *out, const char *alg, const char *curve, bool null_param,
		   const uint8_t *key, size_t n)
{
	struct der_enc e;
	struct slice s;

	der_enc_init(&e, 0);
	der_begin(&e, DER_SEQUENCE);
	der_begin(&e, DER_SEQUENCE);
	der_put_oid(&e, alg);
	if (curve)
		der_put_oid(&e, curve);
	if (null_param)
		der_put_null(&e);
	der_end(&e);
	der_put_bits(&e, key, n, 0);
	der_end(&e);
	if (der_enc_result(&e, &s) < 0)
		die("spki_custom");
	memcpy(out, s.p, s.n);
	der_enc_fini(&e);
	return s.n;
}

/* RSAPublicKey with a 2048-bit modulus. */
size_t rsa_key_bits(uint8_t *out)
{
	struct der_enc e;
	struct slice s;
	uint8_t mod[256];

	memset(mod, 0xc5, sizeof(mod));
	der_enc_init(&e, 0);
	der_begin(&e, DER_SEQUENCE);
	der_put_uint(&e, DER_INTEGER, mod, sizeof(mod));
	der_put_int(&e, 65537);
	der_end(&e);
	if (der_enc_result(&e, &s) < 0)
		die("rsa");
	memcpy(out, s.p, s.n);
	der_enc_fini(&e);
	return s.n;
}

TEST(spki_round_trip_and_types)
{
	struct x509_key *k = key_of(0x66);
	struct x509_pubkey pk;
	struct der_enc e;
	struct slice s;
	struct errbuf eb;
	uint8_t der[600], pt[97], rsa[300];
	size_t n;

	der_enc_init(&e, 0);
	x509_spki_encode(x509_key_public(k), &e);
	REQUIRE(der_enc_result(&e, &s) == 0);
	CHECK_INT(s.n, 91);
	REQUIRE(x509_spki_decode(s.p, s.n, &pk, &eb) == 0);
	CHECK(x509_pubkey_equal(&pk, x509_key_public(k)));
	CHECK_INT(pk.bits, 256);
	der_enc_fini(&e);

	memcpy(pt, x509_key_public(k)->q, 65);
	pt[64] ^= 1; /* off the curve */
	n = spki_custom(der, "1.2.840.10045.2.1", "1.2.840.10045.3.1.7", false, pt, 65);
	CHECK_INT(x509_spki_decode(der, n, &pk, &eb), -E_PARSE);
	CHECK_STR(eb.msg, "subjectPublicKey: EC point is not on the P-256 curve at offset 23");
	pt[0] = 0x02;
	n = spki_custom(der, "1.2.840.10045.2.1", "1.2.840.10045.3.1.7", false, pt, 33);
	CHECK_INT(x509_spki_decode(der, n, &pk, &eb), -E_PARSE);
	CHECK_CONTAINS(eb.msg, "compressed EC points are not supported");
	n = spki_custom(der, "1.2.840.10045.2.1", NULL, true, pt, 65);
	CHECK_INT(x509_spki_decode(der, n, &pk, &eb), -E_PARSE);
	CHECK_CONTAINS(eb.msg, "implicit EC curve parameters are not supported");

	memset(pt, 0x04, sizeof(pt));
	n = spki_custom(der, "1.2.840.10045.2.1", "1.3.132.0.34", false, pt, 97);
	REQUIRE(x509_spki_decode(der, n, &pk, &eb) == 0);
	CHECK_INT(pk.type, X509_KEY_EC);
	CHECK_STR(pk.desc, "ECDSA secp384r1");
	CHECK_INT(x509_pubkey_require_p256(&pk, "leaf certificate key", &eb), -E_UNSUPP);
	CHECK_STR(eb.msg, "leaf certificate key is ECDSA secp384r1; only ECDSA P-256 keys are "
			  "supported");

	n = spki_custom(der, "1.2.840.113549.1.1.1", NULL, true, rsa, rsa_key_bits(rsa));
	REQUIRE(x509_spki_decode(der, n, &pk, &eb) == 0);
	CHECK_INT(pk.type, X509_KEY_RSA);
	CHECK_STR(pk.desc, "RSA 2048-bit");
	n = spki_custom(der, "1.2.840.113549.1.1.1", NULL, false, rsa, rsa_key_bits(rsa));
	CHECK_INT(x509_spki_decode(der, n, &pk, &eb), -E_PARSE);
	CHECK_CONTAINS(eb.msg, "subjectPublicKeyInfo.algorithm.parameters: missing");

	n = spki_custom(der, "1.3.101.112", NULL, false, pt, 32);
	REQUIRE(x509_spki_decode(der, n, &pk, &eb) == 0);
	CHECK_STR(pk.desc, "Ed25519");
	x509_key_free(k);
}

/* ---- SPIFFE ------------------------------------------------------------------------------- */

static const char *spiffe_err(const char *s, struct errbuf *eb)
{
	struct x509_spiffe id;

	errbuf_clear(eb);
	return x509_spiffe_parse(s, strlen(s), &id, eb) == 0 ? "accepted" : eb->msg;
}

TEST(spiffe_ids)
{
	static const char *const good[] = {
		"spiffe://cluster.local/ns/default/sa/foo",
		"spiffe://td",
		"spiffe://a-b_c.d9/X.y-Z_0/seg",
		"spiffe://example.org/...a/a..",
	};
	static const struct {
		const char *id;
		const char *why;
	} bad[] = {
		{"http://td/x", "must start with spiffe://"},
		{"SPIFFE://td/x", "scheme must be lower-case \"spiffe\""},
		{"spiffe:///x", "trust domain is empty"},
		{"spiffe://TD/x", "trust domain must be lower case"},
		{"spiffe://td:8080/x", "trust domain must not contain a port"},
		{"spiffe://user@td/x", "trust domain must not contain userinfo"},
		{"spiffe://t%41/x", "percent-encoding is not allowed"},
		{"spiffe://td/", "trailing '/' is not allowed"},
		{"spiffe://td/a//b", "empty path segment"},
		{"spiffe://td/a/./b", "path segments '.' and '..' are not allowed"},
		{"spiffe://td/a/..", "path segments '.' and '..' are not allowed"},
		{"spiffe://td/a?b", "query is not allowed"},
		{"spiffe://td?b", "query is not allowed"},
		{"spiffe://td/a#f", "fragment is not allowed"},
		{"spiffe://td/a%20", "percent-encoding is not allowed"},
		{"spiffe://td/a b", "path may only contain [A-Za-z0-9.-_] and '/'"},
		{"spiffe://td/\xc3\xa9", "path may only contain [A-Za-z0-9.-_] and '/'"},
	};
	struct x509_spiffe id;
	struct slice ns, sa;
	struct errbuf eb;
	char big[2100];

	for (size_t i = 0; i < ARRAY_LEN(good); i++)
		CHECK_STR(spiffe_err(good[i], &eb), "accepted");
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		char want[200];
		snprintf(want, sizeof(want), "%s", bad[i].why);
		CHECK_CONTAINS(spiffe_err(bad[i].id, &eb), want);
	}
	CHECK_STR(spiffe_err("spiffe://td/a\nb", &eb),
		  "invalid SPIFFE ID 'spiffe://td/a\\x0ab': path may only contain [A-Za-z0-9.-_] "
		  "and '/'");
	memset(big, 'a', sizeof(big));
	memcpy(big, "spiffe://td/", 12);
	big[2049] = '\0';
	CHECK_CONTAINS(spiffe_err(big, &eb), "longer than 2048 bytes");
	big[2048] = '\0';
	CHECK_STR(spiffe_err(big, &eb), "accepted");
	memset(big, 'a', 300);
	memcpy(big, "spiffe://", 9);
	big[300] = '\0';
	CHECK_CONTAINS(spiffe_err(big, &eb), "trust domain is longer than 255 characters");

	REQUIRE(x509_spiffe_parse(ID, strlen(ID), &id, &eb) == 0);
	CHECK(slice_is(id.td, TD));
	CHECK(slice_is(id.path, "/ns/default/sa/foo"));
	REQUIRE(x509_spiffe_istio(&id, &ns, &sa, &eb) == 0);
	CHECK(slice_is(ns, "default"));
	CHECK(slice_is(sa, "foo"));
	static const char *const not_istio[] = {"spiffe://td", "spiffe://td/ns/a/sa",
						"spiffe://td/ns/a/sa/b/c", "spiffe://td/ns/a/xx/b",
						"spiffe://td/xx/a/sa/b"};
	for (size_t i = 0; i < ARRAY_LEN(not_istio); i++) {
		REQUIRE(x509_spiffe_parse(not_istio[i], strlen(not_istio[i]), &id, &eb) == 0);
		CHECK_INT(x509_spiffe_istio(&id, &ns, &sa, &eb), -E_INVAL);
		CHECK_CONTAINS(eb.msg, "is not of the form /ns/<namespace>/sa/<account>");
	}
	char out[100];
	CHECK_INT(x509_spiffe_istio_format(out, sizeof(out), TD, "ns1", "sa1", &eb), 0);
	CHECK_STR(out, "spiffe://cluster.local/ns/ns1/sa/sa1");
	CHECK_INT(x509_spiffe_istio_format(out, sizeof(out), TD, "a/b", "sa1", &eb), -E_INVAL);
	CHECK_INT(x509_spiffe_istio_format(out, sizeof(out), TD, "", "sa1", &eb), -E_INVAL);
	CHECK_INT(x509_spiffe_istio_format(out, sizeof(out), TD, "a b", "sa1", &eb), -E_INVAL);
	CHECK_INT(x509_spiffe_istio_format(out, 10, TD, "a", "b", &eb), -E_LIMIT);
	CHECK_INT(x509_trust_domain_check("Cluster.local", 13, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "invalid trust domain 'Cluster.local': trust domain must be lower case");
}

/* ---- issuance ----------------------------------------------------------------------------- */

TEST(issue_leaf_profile)
{
	struct pki p;
	uint8_t kid[X509_KEY_ID_LEN];
	char hex[64];
	const struct x509_cert *c;
	struct errbuf eb;

	pki_init(&p);
	c = p.leaf;
	CHECK_STR(c->subject_text, "");
	CHECK_INT(c->subject.n, 2);
	CHECK_STR(c->issuer_text, "O=cluster.local");
	CHECK(c->issuer.n == p.root->subject.n &&
	      !memcmp(c->issuer.p, p.root->subject.p, c->issuer.n));
	CHECK(c->not_before == NOW - 120);
	CHECK(c->not_after == NOW + 86400);
	CHECK(c->sig_ecdsa_sha256);
	CHECK_STR(c->sig_alg_name, "ecdsa-with-SHA256");
	CHECK_INT(c->ext_present, X509_EXT_BASIC_CONSTRAINTS | X509_EXT_KEY_USAGE |
					  X509_EXT_EXT_KEY_USAGE | X509_EXT_SAN | X509_EXT_SKI |
					  X509_EXT_AKI);
	CHECK_INT(c->ext_critical, X509_EXT_BASIC_CONSTRAINTS | X509_EXT_KEY_USAGE | X509_EXT_SAN);
	CHECK(!c->ca);
	CHECK_INT(c->path_len, -1);
	CHECK_INT(c->key_usage, X509_KU_DIGITAL_SIGNATURE | X509_KU_KEY_ENCIPHERMENT);
	CHECK_INT(c->ext_key_usage, X509_EKU_SERVER_AUTH | X509_EKU_CLIENT_AUTH);
	CHECK_INT(c->n_san, 1);
	CHECK_INT(c->n_uri, 1);
	CHECK(slice_is(x509_cert_uri(c), ID));
	x509_pubkey_key_id(x509_key_public(p.lk), kid);
	CHECK(c->ski.n == 20 && !memcmp(c->ski.p, kid, 20));
	CHECK(c->aki.n == 20 && !memcmp(c->aki.p, p.root->ski.p, 20));
	CHECK(x509_pubkey_equal(&c->pub, x509_key_public(p.lk)));
	/* 16 random octets with the top bit set: a 0x00 keeps the INTEGER positive */
	x509_cert_serial_hex(c, hex, sizeof(hex));
	CHECK_STR(hex, "800102030405060708090a0b0c0d0e0f");
	CHECK_INT(c->serial.p[-2], 17); /* INTEGER length */
	CHECK_INT(c->serial.p[-1], 0x00);
	CHECK_INT(x509_cert_check_signature(c, &p.root->pub, &eb), 0);
	CHECK_INT(x509_cert_check_signature(c, &p.inter->pub, &eb), -E_CRYPTO);
	CHECK_INT(x509_svid_check(c, TD, NULL, &eb), 0);
	CHECK(x509_cert_valid_at(c, NOW - 120) && x509_cert_valid_at(c, NOW + 86400));
	CHECK(!x509_cert_valid_at(c, NOW - 121) && !x509_cert_valid_at(c, NOW + 86401));
	pki_fini(&p);
}

TEST(issue_leaf_is_deterministic_and_random_serials_differ)
{
	struct pki p;
	struct x509_cert *a, *b;
	struct errbuf eb;
	static const uint8_t serial[X509_SERIAL_LEN] = {1};
	struct x509_leaf_req req = {.spiffe_id = ID, .now = NOW, .serial = serial};

	pki_init(&p);
	req.pub = x509_key_public(p.lk);
	REQUIRE(x509_issue_leaf(p.root, p.rk, &req, &a, NULL, &eb) == 0);
	REQUIRE(x509_issue_leaf(p.root, p.rk, &req, &b, NULL, &eb) == 0);
	CHECK(a->len == b->len && !memcmp(a->der, b->der, a->len));
	CHECK_INT(a->serial.n, 16); /* leading 0x01: no sign octet, 16 octets */
	x509_cert_free(a);
	x509_cert_free(b);
	req.serial = NULL;
	REQUIRE(x509_issue_leaf(p.root, p.rk, &req, &a, NULL, &eb) == 0);
	REQUIRE(x509_issue_leaf(p.root, p.rk, &req, &b, NULL, &eb) == 0);
	CHECK(a->serial.n >= 14 && a->serial.n <= 16);
	CHECK(a->serial.n != b->serial.n || memcmp(a->serial.p, b->serial.p, a->serial.n));
	x509_cert_free(a);
	x509_cert_free(b);
	pki_fini(&p);
}

TEST(issue_leaf_clamps)
{
	struct pki p;
	struct x509_cert *c, *shortroot;
	struct errbuf eb;
	unsigned cl = 99;
	struct x509_leaf_req req = {.spiffe_id = ID, .now = NOW, .ttl = 100 * 86400LL};

	pki_init(&p);
	req.pub = x509_key_public(p.lk);
	REQUIRE(x509_issue_leaf(p.root, p.rk, &req, &c, &cl, &eb) == 0);
	CHECK_INT(cl, X509_CLAMP_MAX_TTL);
	CHECK(c->not_after == NOW + 90 * 86400LL);
	x509_cert_free(c);
	req.ttl = 3600;
	REQUIRE(x509_issue_leaf(p.root, p.rk, &req, &c, &cl, &eb) == 0);
	CHECK_INT(cl, 0);
	CHECK(c->not_after == NOW + 3600);
	x509_cert_free(c);
	/* A root that ends in 10 hours caps a 24 h leaf. */
	REQUIRE(x509_self_signed_root(p.rk, TD, NOW, 36000, &shortroot, &eb) == 0);
	req.ttl = 0;
	REQUIRE(x509_issue_leaf(shortroot, p.rk, &req, &c, &cl, &eb) == 0);
	CHECK_INT(cl, X509_CLAMP_ISSUER);
	CHECK(c->not_after == shortroot->not_after);
	CHECK(c->not_after == NOW + 36000);
	x509_cert_free(c);
	req.ttl = 1000 * 86400LL;
	REQUIRE(x509_issue_leaf(shortroot, p.rk, &req, &c, &cl, &eb) == 0);
	CHECK_INT(cl, X509_CLAMP_ISSUER | X509_CLAMP_MAX_TTL);
	x509_cert_free(c);
	x509_cert_free(shortroot);
	pki_fini(&p);
}

static const char *issue_err(struct pki *p, const struct x509_cert *iss, const struct x509_key *ik,
			     struct x509_leaf_req *req, struct errbuf *eb)
{
	struct x509_cert *c = NULL;

	errbuf_clear(eb);
	if (!req->pub)
		req->pub = x509_key_public(p->lk);
	if (x509_issue_leaf(iss, ik, req, &c, NULL, eb) == 0) {
		x509_cert_free(c);
		return "accepted";
	}
	CHECK(c == NULL);
	return eb->msg;
}

TEST(issue_leaf_refusals)
{
	struct pki p;
	struct errbuf eb;
	struct x509_pubkey p384 = {.type = X509_KEY_EC, .desc = "ECDSA secp384r1"};
	static const uint8_t zero[X509_SERIAL_LEN] = {0};
	const char *const bad_dns[] = {"-a.example"};

	pki_init(&p);
	{
		struct x509_leaf_req r = {.spiffe_id = ID, .now = NOW + 3651 * 86400LL};
		CHECK_CONTAINS(issue_err(&p, p.root, p.rk, &r, &eb),
			       "issuer certificate expired at 2035-");
	}
	{
		struct x509_leaf_req r = {.spiffe_id = ID, .now = NOW - 3600};
		CHECK_STR(issue_err(&p, p.root, p.rk, &r, &eb),
			  "issuer certificate is not valid before 2025-05-31T23:58:00Z");
	}
	{
		struct x509_leaf_req r = {.spiffe_id = ID, .now = NOW};
		CHECK_STR(issue_err(&p, p.root, p.ik, &r, &eb),
			  "issuer key does not match the issuer certificate");
		CHECK_STR(issue_err(&p, p.leaf, p.lk, &r, &eb),
			  "issuer certificate '' is not a CA (needs basicConstraints CA:TRUE and "
			  "keyUsage keyCertSign)");
	}
	{
		struct x509_leaf_req r = {.spiffe_id = "spiffe://cluster.local", .now = NOW};
		CHECK_STR(issue_err(&p, p.root, p.rk, &r, &eb),
			  "SPIFFE ID of a leaf must have a path");
		r.spiffe_id = "spiffe://cluster.local/a/../b";
		CHECK_CONTAINS(issue_err(&p, p.root, p.rk, &r, &eb),
			       "'.' and '..' are not allowed");
	}
	{
		struct x509_leaf_req r = {.spiffe_id = ID, .now = NOW, .pub = &p384};
		CHECK_STR(issue_err(&p, p.root, p.rk, &r, &eb),
			  "subject key is ECDSA secp384r1; only ECDSA P-256 keys are supported");
	}
	{
		struct x509_leaf_req r = {.spiffe_id = ID, .now = INT64_MIN};
		CHECK_CONTAINS(issue_err(&p, p.root, p.rk, &r, &eb), "is out of range");
	}
	{
		struct x509_leaf_req r = {.spiffe_id = ID, .now = NOW, .serial = zero};
		CHECK_STR(issue_err(&p, p.root, p.rk, &r, &eb), "serial number must not be zero");
	}
	{
		struct x509_leaf_req r = {.spiffe_id = ID, .now = NOW, .dns = bad_dns, .n_dns = 1};
		CHECK_STR(issue_err(&p, p.root, p.rk, &r, &eb), "invalid DNS name '-a.example'");
	}
	pki_fini(&p);
}

TEST(issue_ca_server_cert_with_dns_and_ip)
{
	struct pki p;
	struct x509_cert *c;
	struct errbuf eb;
	const char *const dns[] = {"ca.mesh.local", "*.ca.svc"};
	const struct x509_ip ips[] = {{4, {127, 0, 0, 1}}, {16, {[15] = 1}}};
	struct x509_leaf_req req = {.spiffe_id = "spiffe://cluster.local/ns/system/sa/ca",
				    .dns = dns,
				    .n_dns = 2,
				    .ips = ips,
				    .n_ips = 2,
				    .now = NOW};

	pki_init(&p);
	req.pub = x509_key_public(p.lk);
	REQUIRE(x509_issue_leaf(p.root, p.rk, &req, &c, NULL, &eb) == 0);
	CHECK_INT(c->n_san, 5);
	CHECK_INT(c->n_uri, 1);
	CHECK(c->ext_critical & X509_EXT_SAN);
	CHECK(c->san[0].type == X509_GN_URI);
	CHECK(c->san[1].type == X509_GN_DNS && slice_is(c->san[1].v, "ca.mesh.local"));
	CHECK(c->san[2].type == X509_GN_DNS && slice_is(c->san[2].v, "*.ca.svc"));
	CHECK(c->san[3].type == X509_GN_IP && c->san[3].v.n == 4 && c->san[3].v.p[0] == 127);
	CHECK(c->san[4].type == X509_GN_IP && c->san[4].v.n == 16 && c->san[4].v.p[15] == 1);
	CHECK_INT(x509_verify_chain(c, NULL, 0, &p.root, 1, NOW, TD, &eb), 0);
	x509_cert_free(c);
	pki_fini(&p);
}

TEST(root_and_intermediate_profiles)
{
	struct pki p;
	struct x509_cert *c;
	struct errbuf eb;
	struct x509_ca_req cr = {.org = TD, .path_len = -1, .now = NOW};

	pki_init(&p);
	c = p.root;
	CHECK_STR(c->subject_text, "O=cluster.local");
	CHECK_STR(c->issuer_text, "O=cluster.local");
	CHECK(c->ca);
	CHECK_INT(c->path_len, -1);
	CHECK_INT(c->key_usage, X509_KU_KEY_CERT_SIGN | X509_KU_CRL_SIGN);
	CHECK_INT(c->ext_present, X509_EXT_BASIC_CONSTRAINTS | X509_EXT_KEY_USAGE | X509_EXT_SKI);
	CHECK_INT(c->ext_critical, X509_EXT_BASIC_CONSTRAINTS | X509_EXT_KEY_USAGE);
	CHECK(c->not_after == NOW + 3650 * 86400LL);
	CHECK_INT(c->n_san, 0);
	CHECK_INT(x509_cert_check_signature(c, &c->pub, &eb), 0);
	CHECK_INT(x509_self_signed_root(p.rk, "Bad", NOW, 0, &c, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "invalid trust domain 'Bad': trust domain must be lower case");
	CHECK_INT(x509_self_signed_root(p.rk, TD, NOW, 200 * 365 * 86400LL, &c, &eb), -E_INVAL);
	CHECK_CONTAINS(eb.msg, "above the 100-year limit");
	CHECK_INT(x509_self_signed_root(p.rk, TD, INT64_MAX, 0, &c, &eb), -E_INVAL);
	CHECK_CONTAINS(eb.msg, "is out of range");
	CHECK_INT(x509_self_signed_root(p.rk, TD, INT64_MIN, 0, &c, &eb), -E_INVAL);

	c = p.inter;
	CHECK_STR(c->subject_text, "O=cluster.local, CN=Intermediate CA");
	CHECK(c->ca);
	CHECK_INT(c->path_len, 0);
	CHECK(c->aki.n == 20 && !memcmp(c->aki.p, p.root->ski.p, 20));
	CHECK(c->not_after == NOW + 1825 * 86400LL);
	/* pathLen 0 forbids another CA below */
	cr.pub = x509_key_public(p.lk);
	CHECK_INT(x509_issue_intermediate(p.inter, p.ik, &cr, &c, NULL, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "issuer's pathLenConstraint 0 forbids intermediate CAs");
	/* clamped to the root */
	unsigned cl = 0;
	cr.validity = 20 * 365 * 86400LL;
	REQUIRE(x509_issue_intermediate(p.root, p.rk, &cr, &c, &cl, &eb) == 0);
	CHECK_INT(cl, X509_CLAMP_ISSUER);
	CHECK(c->not_after == p.root->not_after);
	x509_cert_free(c);
	pki_fini(&p);
}

/* ---- CSRs --------------------------------------------------------------------------------- */

TEST(csr_round_trip_and_tamper)
{
	struct x509_key *k = key_of(0x77);
	struct x509_csr *c;
	struct buf b, pem;
	struct errbuf eb;
	uint8_t *der;
	size_t n;

	buf_init(&b, 0);
	REQUIRE(x509_csr_encode(k, ID, &b, &eb) == 0);
	der = (uint8_t *)buf_rptr(&b);
	n = buf_len(&b);
	REQUIRE(x509_csr_decode(der, n, &c, &eb) == 0);
	CHECK_INT(c->subject.n, 2);
	CHECK_STR(c->subject_text, "");
	CHECK(x509_pubkey_equal(&c->pub, x509_key_public(k)));
	CHECK(c->has_ext_request);
	CHECK_INT(c->n_san, 1);
	CHECK_INT(c->n_uri, 1);
	CHECK(c->san[0].type == X509_GN_URI && slice_is(c->san[0].v, ID));
	x509_csr_free(c);

	buf_init(&pem, 0);
	REQUIRE(x509_pem_format(&pem, "CERTIFICATE REQUEST", der, n) == 0);
	REQUIRE(x509_csr_parse_pem((const char *)buf_rptr(&pem), buf_len(&pem), &c, &eb) == 0);
	x509_csr_free(c);
	buf_fini(&pem);

	/* flip a character of the URI: the self-signature no longer verifies */
	uint8_t *u = memmem(der, n, "default", 7);
	REQUIRE(u != NULL);
	u[0] = 'D';
	CHECK_INT(x509_csr_decode(der, n, &c, &eb), -E_CRYPTO);
	CHECK_STR(eb.msg, "CSR signature does not verify with its own key");
	u[0] = 'd';
	CHECK_INT(x509_csr_decode(der, n - 1, &c, &eb), -E_PARSE);
	CHECK_CONTAINS(eb.msg, "CertificationRequest: length");
	CHECK_INT(x509_csr_encode(k, "spiffe://td/a/", &b, &eb), -E_INVAL);
	buf_fini(&b);
	x509_key_free(k);
}
