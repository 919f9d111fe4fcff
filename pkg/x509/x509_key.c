/* ECDSA P-256 keys: generation, SEC1/PKCS#8 private keys, SubjectPublicKeyInfo, signing. */
#include "pkg/x509/x509_int.h"

#include <bearssl_hash.h>
#include <bearssl_rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct x509_key {
	br_ec_private_key sk; /* sk.x points at d */
	uint8_t d[32];
	struct x509_pubkey pub;
};

/* Order of the P-256 group (FIPS 186-4 D.1.2.3). */
static const uint8_t p256_n[32] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
	0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

/* ---- public keys ------------------------------------------------------------------------------
 */

int x509_pubkey_require_p256(const struct x509_pubkey *k, const char *what, struct errbuf *eb)
{
	if (k->type == X509_KEY_P256)
		return 0;
	return errbuf_set(eb, E_UNSUPP, "%s is %s; only ECDSA P-256 keys are supported", what,
			  k->desc[0] ? k->desc : "an unknown key type");
}

bool x509_pubkey_equal(const struct x509_pubkey *a, const struct x509_pubkey *b)
{
	return a->type == X509_KEY_P256 && b->type == X509_KEY_P256 &&
	       memcmp(a->q, b->q, sizeof(a->q)) == 0;
}

void x509_pubkey_key_id(const struct x509_pubkey *k, uint8_t id[X509_KEY_ID_LEN])
{
	br_sha1_context h;

	br_sha1_init(&h);
	br_sha1_update(&h, k->q, sizeof(k->q));
	br_sha1_out(&h, id);
}

br_ec_public_key x509_pubkey_br(const struct x509_pubkey *k)
{
	br_ec_public_key pk;

	pk.curve = BR_EC_secp256r1;
	pk.q = (unsigned char *)k->q; /* BearSSL only reads it */
	pk.qlen = sizeof(k->q);
	return pk;
}

static void sha256(const void *msg, size_t n, uint8_t out[32])
{
	br_sha256_context h;

	br_sha256_init(&h);
	br_sha256_update(&h, msg, n);
	br_sha256_out(&h, out);
}

int x509_pubkey_verify(const struct x509_pubkey *k, const void *msg, size_t n, const uint8_t *sig,
		       size_t siglen)
{
	uint8_t hash[32];
	br_ec_public_key pk;

	if (k->type != X509_KEY_P256 || siglen == 0 || siglen > X509_SIG_MAX)
		return -E_CRYPTO;
	sha256(msg, n, hash);
	pk = x509_pubkey_br(k);
	if (br_ecdsa_i31_vrfy_asn1(&br_ec_p256_m31, hash, sizeof(hash), &pk, sig, siglen) != 1)
		return -E_CRYPTO;
	return 0;
}

void x509_spki_encode(const struct x509_pubkey *k, struct der_enc *e)
{
	der_begin(e, DER_SEQUENCE);
	der_begin(e, DER_SEQUENCE);
	der_put_oid_bytes(e, OID_EC_PUBLIC_KEY);
	der_put_oid_bytes(e, OID_P256);
	der_end(e);
	der_put_bits(e, k->q, sizeof(k->q), 0);
	der_end(e);
}

const char *x509_curve_name(struct slice oid, unsigned *bits)
{
	const struct {
		const uint8_t *oid;
		size_t n;
		const char *name;
		unsigned bits;
	} curves[] = {
		{OID_P256, "P-256", 256},
		{OID(0x2b, 0x81, 0x04, 0x00, 0x22), "secp384r1", 384},
		{OID(0x2b, 0x81, 0x04, 0x00, 0x23), "secp521r1", 521},
		{OID(0x2b, 0x81, 0x04, 0x00, 0x0a), "secp256k1", 256},
		{OID(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x01), "prime192v1", 192},
		{OID(0x2b, 0x81, 0x04, 0x00, 0x21), "secp224r1", 224},
		{OID(0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x07), "brainpoolP256r1", 256},
	};

	for (size_t i = 0; i < ARRAY_LEN(curves); i++) {
		if (oid_is(oid, curves[i].oid, curves[i].n)) {
			if (bits)
				*bits = curves[i].bits;
			return curves[i].name;
		}
	}
	return NULL;
}

/* EC parameters: only namedCurve (RFC 5480 §2.1.1: implicitCurve and specifiedCurve MUST NOT
 * be used). */
static int read_named_curve(struct der_dec *d, const char *what, struct slice *curve)
{
	int pk = der_peek(d);

	if (pk == DER_SEQUENCE)
		return der_dec_fail(d, NULL, what,
				    "explicit EC curve parameters are not supported");
	if (pk == DER_NULL)
		return der_dec_fail(d, NULL, what,
				    "implicit EC curve parameters are not supported");
	return der_read_oid(d, what, curve);
}

static void describe_ec(struct x509_pubkey *k, struct slice curve)
{
	char oid[DER_OID_TEXT_MAX];
	const char *name = x509_curve_name(curve, &k->bits);

	if (oid_is(curve, OID_P256)) {
		k->type = X509_KEY_P256;
		snprintf(k->desc, sizeof(k->desc), "ECDSA P-256");
		return;
	}
	k->type = X509_KEY_EC;
	if (!name) {
		der_oid_format(curve, oid, sizeof(oid));
		snprintf(k->desc, sizeof(k->desc), "ECDSA curve %.30s", oid);
	} else {
		snprintf(k->desc, sizeof(k->desc), "ECDSA %s", name);
	}
}

static int read_p256_point(const struct der_dec *d, const struct der_tlv *t, const char *what,
			   struct slice pt, uint8_t q[65])
{
	static const uint8_t one = 1;
	uint8_t tmp[65];

	if (pt.n == 33 && (pt.p[0] == 0x02 || pt.p[0] == 0x03))
		return der_dec_fail(d, t, what, "compressed EC points are not supported");
	if (pt.n != 65 || pt.p[0] != 0x04)
		return der_dec_fail(d, t, what,
				    "P-256 public key must be a 65-octet uncompressed point");
	/* Multiplying by 1 decodes the point, which checks that it lies on the curve. */
	memcpy(tmp, pt.p, 65);
	if (br_ec_p256_m31.mul(tmp, 65, &one, 1, BR_EC_secp256r1) != 1)
		return der_dec_fail(d, t, what, "EC point is not on the P-256 curve");
	memcpy(q, pt.p, 65);
	return 0;
}

static unsigned bit_length(struct slice mag)
{
	unsigned bits;
	uint8_t top;

	if (mag.n == 0)
		return 0;
	top = mag.p[0];
	bits = (unsigned)(mag.n - 1) * 8;
	while (top) {
		bits++;
		top >>= 1;
	}
	return bits;
}

static int read_rsa_key(const struct der_dec *parent, const struct der_tlv *t, const char *what,
			struct slice bits, struct x509_pubkey *k)
{
	struct der_dec d, seq;
	struct slice n, e;
	int r;

	der_dec_init(&d, bits.p, bits.n, parent->eb);
	d.base = t->off; /* offsets inside the key are relative to its BIT STRING */
	if ((r = der_enter(&d, DER_SEQUENCE, what, &seq, NULL)) < 0 ||
	    (r = der_read_uint(&seq, DER_INTEGER, "RSA modulus", 0, &n)) < 0 ||
	    (r = der_read_uint(&seq, DER_INTEGER, "RSA exponent", 0, &e)) < 0 ||
	    (r = der_dec_done(&seq, what)) < 0 || (r = der_dec_done(&d, what)) < 0)
		return r;
	k->type = X509_KEY_RSA;
	k->bits = bit_length(n);
	snprintf(k->desc, sizeof(k->desc), "RSA %u-bit", k->bits);
	return 0;
}

int x509_spki_read(struct der_dec *d, const char *what, struct x509_pubkey *k, struct slice *raw)
{
	struct der_dec spki, alg;
	struct der_tlv t, bt;
	struct slice oid, curve = {0}, bits;
	unsigned unused;
	char text[DER_OID_TEXT_MAX];
	int r;

	memset(k, 0, sizeof(*k));
	if ((r = der_enter(d, DER_SEQUENCE, what, &spki, &t)) < 0 ||
	    (r = der_enter(&spki, DER_SEQUENCE, "subjectPublicKeyInfo.algorithm", &alg, NULL)) <
		    0 ||
	    (r = der_read_oid(&alg, "subjectPublicKeyInfo.algorithm", &oid)) < 0)
		return r;
	if (raw)
		*raw = t.raw;
	if (oid_is(oid, OID_EC_PUBLIC_KEY)) {
		if (!der_dec_more(&alg))
			return der_dec_fail(&alg, NULL, "subjectPublicKeyInfo.algorithm",
					    "EC key without curve parameters");
		if ((r = read_named_curve(&alg, "subjectPublicKeyInfo.algorithm.namedCurve",
					  &curve)) < 0)
			return r;
		describe_ec(k, curve);
	} else if (oid_is(oid, OID_RSA)) {
		/* RFC 3279 §2.3.1: the parameters field MUST be NULL. */
		if ((r = der_read_null(&alg, "subjectPublicKeyInfo.algorithm.parameters")) < 0)
			return r;
		k->type = X509_KEY_RSA;
		snprintf(k->desc, sizeof(k->desc), "RSA");
	} else if (oid_is(oid, OID_ED25519)) {
		k->type = X509_KEY_ED25519;
		snprintf(k->desc, sizeof(k->desc), "Ed25519");
	} else {
		k->type = X509_KEY_UNKNOWN;
		der_oid_format(oid, text, sizeof(text));
		snprintf(k->desc, sizeof(k->desc), "a key of algorithm %.28s", text);
		while (der_dec_more(&alg)) /* unknown parameters: structure only */
			if ((r = der_read_any(&alg, "subjectPublicKeyInfo.algorithm.parameters",
					      &bt)) < 0)
				return r;
	}
	if ((r = der_dec_done(&alg, "subjectPublicKeyInfo.algorithm")) < 0)
		return r;
	bt.off = der_dec_offset(&spki);
	if ((r = der_read_bits(&spki, DER_BIT_STRING, "subjectPublicKey", &bits, &unused)) < 0 ||
	    (r = der_dec_done(&spki, what)) < 0)
		return r;
	if (k->type != X509_KEY_UNKNOWN && unused != 0)
		return der_dec_fail(&spki, &bt, "subjectPublicKey", "unused bits in a key");
	if (k->type == X509_KEY_P256)
		return read_p256_point(&spki, &bt, "subjectPublicKey", bits, k->q);
	if (k->type == X509_KEY_RSA)
		return read_rsa_key(&spki, &bt, "subjectPublicKey", bits, k);
	return 0;
}

int x509_spki_decode(const uint8_t *der, size_t n, struct x509_pubkey *k, struct errbuf *eb)
{
	struct der_dec d;
	int r;

	der_dec_init(&d, der, n, eb);
	if ((r = x509_spki_read(&d, "subjectPublicKeyInfo", k, NULL)) < 0)
		return r;
	return der_dec_done(&d, "subjectPublicKeyInfo");
}

int x509_sigalg_read(struct der_dec *d, const char *what, struct slice *raw, bool *ecdsa_sha256,
		     char *name, size_t cap)
{
	const struct {
		const uint8_t *oid;
		size_t n;
		const char *name;
		bool ecdsa;
	} algs[] = {
		{OID_ECDSA_SHA256, "ecdsa-with-SHA256", true},
		{OID(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03), "ecdsa-with-SHA384", true},
		{OID(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04), "ecdsa-with-SHA512", true},
		{OID(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01), "ecdsa-with-SHA1", true},
		{OID(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05), "sha1WithRSAEncryption",
		 false},
		{OID(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b),
		 "sha256WithRSAEncryption", false},
		{OID(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c),
		 "sha384WithRSAEncryption", false},
		{OID(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d),
		 "sha512WithRSAEncryption", false},
		{OID(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a), "RSASSA-PSS", false},
		{OID_ED25519, "Ed25519", false},
	};
	struct der_dec alg;
	struct der_tlv t, p;
	struct slice oid;
	int r;

	if ((r = der_enter(d, DER_SEQUENCE, what, &alg, &t)) < 0 ||
	    (r = der_read_oid(&alg, what, &oid)) < 0)
		return r;
	*raw = t.raw;
	*ecdsa_sha256 = oid_is(oid, OID_ECDSA_SHA256);
	der_oid_format(oid, name, cap);
	for (size_t i = 0; i < ARRAY_LEN(algs); i++) {
		if (!oid_is(oid, algs[i].oid, algs[i].n))
			continue;
		snprintf(name, cap, "%s", algs[i].name);
		/* RFC 5758 §3.2: ECDSA AlgorithmIdentifiers MUST omit the parameters. */
		if (algs[i].ecdsa && der_dec_more(&alg))
			return der_dec_fail(&alg, NULL, what,
					    "parameters present for %s (RFC 5758 §3.2)", name);
		break;
	}
	while (der_dec_more(&alg))
		if ((r = der_read_any(&alg, what, &p)) < 0)
			return r;
	return 0;
}

int x509_ecdsa_sig_check(const struct der_dec *d, const struct der_tlv *t, const char *what)
{
	struct der_dec s, seq;
	struct slice bits, rr, ss;
	unsigned unused;
	int r;

	/* Re-read the BIT STRING TLV in its own cursor to apply the BIT STRING rules. */
	der_dec_init(&s, t->raw.p, t->raw.n, d->eb);
	s.base = t->off;
	if ((r = der_read_bits(&s, DER_BIT_STRING, what, &bits, &unused)) < 0)
		return r;
	if (unused)
		return der_dec_fail(d, t, what, "signature BIT STRING has unused bits");
	der_dec_init(&s, bits.p, bits.n, d->eb);
	s.base = t->off;
	if ((r = der_enter(&s, DER_SEQUENCE, what, &seq, NULL)) < 0 ||
	    (r = der_read_uint(&seq, DER_INTEGER, "signature r", 66, &rr)) < 0 ||
	    (r = der_read_uint(&seq, DER_INTEGER, "signature s", 66, &ss)) < 0 ||
	    (r = der_dec_done(&seq, what)) < 0 || (r = der_dec_done(&s, what)) < 0)
		return r;
	if (rr.n == 0 || ss.n == 0)
		return der_dec_fail(d, t, what, "ECDSA signature with a zero component");
	return 0;
}

/* ---- private keys -----------------------------------------------------------------------------
 */

static bool scalar_ok(const uint8_t d[32])
{
	uint8_t any = 0;
	int lt = 0;

	for (int i = 0; i < 32; i++)
		any |= d[i];
	for (int i = 0; i < 32 && lt == 0; i++)
		lt = d[i] < p256_n[i] ? 1 : d[i] > p256_n[i] ? -1 : 0;
	return any != 0 && lt == 1;
}

static struct x509_key *key_new(const uint8_t d[32])
{
	struct x509_key *k = xcalloc(1, sizeof(*k));

	memcpy(k->d, d, 32);
	k->sk.curve = BR_EC_secp256r1;
	k->sk.x = k->d;
	k->sk.xlen = 32;
	k->pub.type = X509_KEY_P256;
	k->pub.bits = 256;
	snprintf(k->pub.desc, sizeof(k->pub.desc), "ECDSA P-256");
	if (br_ec_compute_pub(&br_ec_p256_m31, NULL, k->pub.q, &k->sk) != 65)
		die("x509: P-256 public key computation failed");
	return k;
}

int x509_key_generate(struct x509_key **out)
{
	br_hmac_drbg_context rng;
	uint8_t seed[48], d[32];
	br_ec_private_key sk;

	rand_bytes(seed, sizeof(seed));
	br_hmac_drbg_init(&rng, &br_sha256_vtable, seed, sizeof(seed));
	secure_wipe(seed, sizeof(seed));
	if (br_ec_keygen(&rng.vtable, &br_ec_p256_m31, &sk, d, BR_EC_secp256r1) != 32) {
		secure_wipe(&rng, sizeof(rng));
		return -E_CRYPTO;
	}
	secure_wipe(&rng, sizeof(rng));
	*out = key_new(d);
	secure_wipe(d, sizeof(d));
	secure_wipe(&sk, sizeof(sk));
	return 0;
}

int x509_key_from_scalar(const uint8_t *d, size_t n, struct x509_key **out, struct errbuf *eb)
{
	if (n != 32 || !scalar_ok(d))
		return errbuf_set(eb, E_INVAL, "P-256 private key scalar out of range");
	*out = key_new(d);
	return 0;
}

void x509_key_free(struct x509_key *k)
{
	if (!k)
		return;
	secure_wipe(k, sizeof(*k));
	free(k);
}

const struct x509_pubkey *x509_key_public(const struct x509_key *k)
{
	return &k->pub;
}

const br_ec_private_key *x509_key_br(const struct x509_key *k)
{
	return &k->sk;
}

int x509_key_sign(const struct x509_key *k, const void *msg, size_t n, uint8_t sig[X509_SIG_MAX],
		  size_t *siglen)
{
	uint8_t hash[32];

	sha256(msg, n, hash);
	*siglen = br_ecdsa_i31_sign_asn1(&br_ec_p256_m31, &br_sha256_vtable, hash, &k->sk, sig);
	return *siglen ? 0 : -E_CRYPTO;
}

/* ECPrivateKey (RFC 5915 §3). `outer_curve` is the curve from a PKCS#8 wrapper, if any. */
static int sec1_read(struct der_dec *d, struct slice outer_curve, struct x509_key **out)
{
	const char *what = "ECPrivateKey";
	struct der_dec seq, sub;
	struct der_tlv t;
	struct slice priv, curve = {0}, pubbits = {0};
	struct x509_pubkey desc = {0};
	unsigned unused = 0;
	int64_t ver;
	int r;

	if ((r = der_enter(d, DER_SEQUENCE, what, &seq, NULL)) < 0 ||
	    (r = der_read_int(&seq, "ECPrivateKey.version", 1, 1, &ver)) < 0 ||
	    (r = der_read_octets(&seq, DER_OCTET_STRING, "ECPrivateKey.privateKey", &priv)) < 0)
		return r;
	if ((r = der_read_opt(&seq, DER_CTX_CONS(0), "ECPrivateKey.parameters", &t)) < 0)
		return r;
	if (r == 1) {
		if ((r = der_open(&seq, &t, "ECPrivateKey.parameters", &sub)) < 0 ||
		    (r = read_named_curve(&sub, "ECPrivateKey.parameters", &curve)) < 0 ||
		    (r = der_dec_done(&sub, "ECPrivateKey.parameters")) < 0)
			return r;
	}
	if ((r = der_read_opt(&seq, DER_CTX_CONS(1), "ECPrivateKey.publicKey", &t)) < 0)
		return r;
	if (r == 1) {
		if ((r = der_open(&seq, &t, "ECPrivateKey.publicKey", &sub)) < 0 ||
		    (r = der_read_bits(&sub, DER_BIT_STRING, "ECPrivateKey.publicKey", &pubbits,
				       &unused)) < 0 ||
		    (r = der_dec_done(&sub, "ECPrivateKey.publicKey")) < 0)
			return r;
	}
	if ((r = der_dec_done(&seq, what)) < 0)
		return r;
	if (curve.n && outer_curve.n &&
	    (curve.n != outer_curve.n || memcmp(curve.p, outer_curve.p, curve.n) != 0))
		return errbuf_set(d->eb, E_PARSE,
				  "EC private key: curve in ECPrivateKey differs from the PKCS#8 "
				  "algorithm");
	if (!curve.n)
		curve = outer_curve;
	if (!curve.n)
		return errbuf_set(d->eb, E_PARSE, "EC private key without curve parameters");
	describe_ec(&desc, curve);
	if ((r = x509_pubkey_require_p256(&desc, "private key", d->eb)) < 0)
		return r;
	if (priv.n != 32)
		return errbuf_set(d->eb, E_PARSE,
				  "EC private key must be 32 octets for P-256 (RFC 5915), got %zu",
				  priv.n);
	if (!scalar_ok(priv.p))
		return errbuf_set(d->eb, E_PARSE, "EC private key scalar out of range");
	*out = key_new(priv.p);
	if (pubbits.n && (unused || pubbits.n != 65 || memcmp(pubbits.p, (*out)->pub.q, 65) != 0)) {
		x509_key_free(*out);
		*out = NULL;
		return errbuf_set(d->eb, E_PARSE,
				  "public key in the private key file does not match the private "
				  "key");
	}
	return 0;
}

/* PrivateKeyInfo / OneAsymmetricKey (RFC 5958 §2). */
static int pkcs8_read(struct der_dec *d, struct x509_key **out)
{
	struct der_dec seq, alg, inner;
	struct der_tlv t;
	struct slice oid, curve;
	char text[DER_OID_TEXT_MAX];
	int64_t ver;
	int r;

	if ((r = der_enter(d, DER_SEQUENCE, "PrivateKeyInfo", &seq, NULL)) < 0 ||
	    (r = der_read_int(&seq, "PrivateKeyInfo.version", 0, 1, &ver)) < 0 ||
	    (r = der_enter(&seq, DER_SEQUENCE, "PrivateKeyInfo.privateKeyAlgorithm", &alg, NULL)) <
		    0 ||
	    (r = der_read_oid(&alg, "PrivateKeyInfo.privateKeyAlgorithm", &oid)) < 0)
		return r;
	if (oid_is(oid, OID_RSA))
		return errbuf_set(d->eb, E_UNSUPP,
				  "private key is RSA; only ECDSA P-256 keys are supported");
	if (oid_is(oid, OID_ED25519))
		return errbuf_set(d->eb, E_UNSUPP,
				  "private key is Ed25519; only ECDSA P-256 keys are supported");
	if (!oid_is(oid, OID_EC_PUBLIC_KEY)) {
		der_oid_format(oid, text, sizeof(text));
		return errbuf_set(d->eb, E_UNSUPP,
				  "private key algorithm %s is not supported; only ECDSA P-256",
				  text);
	}
	if ((r = read_named_curve(&alg, "PrivateKeyInfo.privateKeyAlgorithm.parameters", &curve)) <
		    0 ||
	    (r = der_dec_done(&alg, "PrivateKeyInfo.privateKeyAlgorithm")) < 0 ||
	    (r = der_read(&seq, DER_OCTET_STRING, "PrivateKeyInfo.privateKey", &t)) < 0)
		return r;
	/* attributes [0] and (v2) publicKey [1]: not used. */
	if ((r = der_read_opt(&seq, DER_CTX_CONS(0), "PrivateKeyInfo.attributes", NULL)) < 0)
		return r;
	if (ver == 1 && (r = der_read_opt(&seq, DER_CTX(1), "PrivateKeyInfo.publicKey", NULL)) < 0)
		return r;
	if ((r = der_dec_done(&seq, "PrivateKeyInfo")) < 0 ||
	    (r = der_open(&seq, &t, "PrivateKeyInfo.privateKey", &inner)) < 0 ||
	    (r = sec1_read(&inner, curve, out)) < 0)
		return r;
	if ((r = der_dec_done(&inner, "PrivateKeyInfo.privateKey")) < 0) {
		x509_key_free(*out);
		*out = NULL;
	}
	return r;
}

int x509_key_decode(const uint8_t *der, size_t n, struct x509_key **out, struct errbuf *eb)
{
	struct der_dec d, probe, seq;
	struct der_tlv t;
	int r;

	*out = NULL;
	der_dec_init(&d, der, n, eb);
	/* Both forms start SEQUENCE { INTEGER version, ... }: SEC1 continues with an OCTET STRING,
	 * PKCS#8 with an AlgorithmIdentifier SEQUENCE, PKCS#1 RSA with INTEGERs. */
	probe = d;
	if ((r = der_enter(&probe, DER_SEQUENCE, "private key", &seq, NULL)) < 0 ||
	    (r = der_read(&seq, DER_INTEGER, "private key version", &t)) < 0)
		return r;
	switch (der_peek(&seq)) {
	case DER_OCTET_STRING: r = sec1_read(&d, (struct slice){0}, out); break;
	case DER_SEQUENCE: r = pkcs8_read(&d, out); break;
	case DER_INTEGER:
		return errbuf_set(eb, E_UNSUPP,
				  "private key is RSA (PKCS#1); only ECDSA P-256 keys are "
				  "supported");
	default: return errbuf_set(eb, E_PARSE, "private key: neither SEC1 nor PKCS#8");
	}
	if (r < 0)
		return r;
	if ((r = der_dec_done(&d, "private key")) < 0 || (r = der_check(der, n, eb)) < 0) {
		x509_key_free(*out);
		*out = NULL;
	}
	return r;
}

static void sec1_encode(struct der_enc *e, const struct x509_key *k, bool with_curve)
{
	der_begin(e, DER_SEQUENCE);
	der_put_int(e, 1);
	der_put_octets(e, k->d, 32);
	if (with_curve) {
		der_begin(e, DER_CTX_CONS(0));
		der_put_oid_bytes(e, OID_P256);
		der_end(e);
	}
	der_begin(e, DER_CTX_CONS(1));
	der_put_bits(e, k->pub.q, 65, 0);
	der_end(e);
	der_end(e);
}

int x509_key_encode(const struct x509_key *k, enum x509_key_format f, uint8_t *out, size_t cap)
{
	struct der_enc e;
	struct slice s;
	int r;

	der_enc_init(&e, 512); /* never grows: no copies of the key are left behind */
	if (f == X509_KEY_SEC1) {
		sec1_encode(&e, k, true);
	} else {
		der_begin(&e, DER_SEQUENCE);
		der_put_int(&e, 0);
		der_begin(&e, DER_SEQUENCE);
		der_put_oid_bytes(&e, OID_EC_PUBLIC_KEY);
		der_put_oid_bytes(&e, OID_P256);
		der_end(&e);
		der_begin(&e, DER_OCTET_STRING);
		sec1_encode(&e, k, false);
		der_end(&e);
		der_end(&e);
	}
	r = der_enc_result(&e, &s);
	if (r == 0 && s.n > cap)
		r = -E_LIMIT;
	if (r == 0) {
		memcpy(out, s.p, s.n);
		r = (int)s.n;
	}
	der_enc_fini(&e);
	return r;
}

int x509_key_parse_pem(const char *text, size_t n, struct x509_key **out, struct errbuf *eb)
{
	struct x509_pem_list l = {0};
	const struct x509_pem *key = NULL;
	int r;

	*out = NULL;
	if ((r = x509_pem_parse(text, n, &l, eb)) < 0)
		return r;
	for (size_t i = 0; i < l.n && r == 0; i++) {
		const struct x509_pem *b = &l.v[i];
		if (!strcmp(b->label, "RSA PRIVATE KEY"))
			r = errbuf_set(
				eb, E_UNSUPP,
				"private key is RSA (PEM block at line %u); only ECDSA P-256 "
				"keys are supported",
				b->line);
		else if (!strcmp(b->label, "ENCRYPTED PRIVATE KEY"))
			r = errbuf_set(
				eb, E_UNSUPP,
				"encrypted private keys are not supported (PEM block at line "
				"%u)",
				b->line);
		else if (strcmp(b->label, "EC PRIVATE KEY") && strcmp(b->label, "PRIVATE KEY"))
			continue;
		else if (key)
			r = errbuf_set(
				eb, E_INVAL,
				"more than one private key in PEM (blocks at lines %u and %u)",
				key->line, b->line);
		else
			key = b;
	}
	if (r == 0 && !key)
		r = errbuf_set(eb, E_NOTFOUND, "no private key in PEM");
	if (r == 0) {
		struct der_dec d;
		der_dec_init(&d, key->der, key->len, eb);
		if (!strcmp(key->label, "EC PRIVATE KEY"))
			r = sec1_read(&d, (struct slice){0}, out);
		else
			r = pkcs8_read(&d, out);
		if (r == 0 && ((r = der_dec_done(&d, key->label)) < 0 ||
			       (r = der_check(key->der, key->len, eb)) < 0)) {
			x509_key_free(*out);
			*out = NULL;
		}
		if (r < 0)
			errbuf_prefix(eb, "%s (PEM block at line %u)", key->label, key->line);
	}
	x509_pem_list_fini(&l);
	return r;
}

int x509_key_format_pem(const struct x509_key *k, enum x509_key_format f, struct buf *out)
{
	uint8_t der[256];
	int n = x509_key_encode(k, f, der, sizeof(der));
	int r;

	if (n < 0)
		return n;
	r = x509_pem_format(out, f == X509_KEY_SEC1 ? "EC PRIVATE KEY" : "PRIVATE KEY", der,
			    (size_t)n);
	secure_wipe(der, sizeof(der));
	return r;
}

void x509_buf_wipe(struct buf *b)
{
	if (b->data)
		secure_wipe(b->data, b->cap);
	buf_fini(b);
}
