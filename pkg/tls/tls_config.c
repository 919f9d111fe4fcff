/* TLS configs: copies of our chain, key, anchors and ALPN names, checked once and shared. */
#include "pkg/tls/tls_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- anchors --------------------------------------------------------------------------------- */

static void *dup_bytes(const void *p, size_t n)
{
	void *q = xmalloc(n ? n : 1);

	if (n)
		memcpy(q, p, n);
	return q;
}

/* Deep copy of a BearSSL public key; -E_UNSUPP for key types we do not know. */
static int pkey_copy(br_x509_pkey *dst, const br_x509_pkey *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->key_type = src->key_type;
	switch (src->key_type) {
	case BR_KEYTYPE_RSA:
		dst->key.rsa.n = dup_bytes(src->key.rsa.n, src->key.rsa.nlen);
		dst->key.rsa.nlen = src->key.rsa.nlen;
		dst->key.rsa.e = dup_bytes(src->key.rsa.e, src->key.rsa.elen);
		dst->key.rsa.elen = src->key.rsa.elen;
		return 0;
	case BR_KEYTYPE_EC:
		dst->key.ec.curve = src->key.ec.curve;
		dst->key.ec.q = dup_bytes(src->key.ec.q, src->key.ec.qlen);
		dst->key.ec.qlen = src->key.ec.qlen;
		return 0;
	default: return -E_UNSUPP;
	}
}

static void anchor_fini(br_x509_trust_anchor *ta)
{
	free(ta->dn.data);
	if (ta->pkey.key_type == BR_KEYTYPE_RSA) {
		free(ta->pkey.key.rsa.n);
		free(ta->pkey.key.rsa.e);
	} else if (ta->pkey.key_type == BR_KEYTYPE_EC) {
		free(ta->pkey.key.ec.q);
	}
	memset(ta, 0, sizeof(*ta));
}

struct dn_acc {
	uint8_t *p;
	size_t n;
	size_t cap;
};

static void dn_append(void *ctx, const void *buf, size_t len)
{
	struct dn_acc *d = ctx;

	if (d->n + len > d->cap) {
		d->cap = MAX(d->cap * 2, d->n + len + 64);
		d->p = xrealloc(d->p, d->cap);
	}
	memcpy(d->p + d->n, buf, len);
	d->n += len;
}

/* An anchor from a DER certificate: its subject DN and key, CA flag from basicConstraints (a
 * non-CA certificate becomes a directly trusted end-entity key, as BearSSL defines). */
static int anchor_from_cert(br_x509_trust_anchor *ta, const br_x509_certificate *cert, size_t i,
			    struct errbuf *eb)
{
	br_x509_decoder_context dc;
	struct dn_acc dn = {0};
	const br_x509_pkey *pk;

	memset(ta, 0, sizeof(*ta));
	br_x509_decoder_init(&dc, dn_append, &dn);
	br_x509_decoder_push(&dc, cert->data, cert->data_len);
	pk = br_x509_decoder_get_pkey(&dc);
	if (!pk) {
		free(dn.p);
		return errbuf_set(eb, E_PARSE,
				  "trust anchor certificate %zu: not a valid certificate "
				  "(BearSSL error %d)",
				  i, br_x509_decoder_last_error(&dc));
	}
	if (pkey_copy(&ta->pkey, pk) < 0) {
		free(dn.p);
		return errbuf_set(eb, E_UNSUPP,
				  "trust anchor certificate %zu: unsupported key type", i);
	}
	ta->dn.data = dn.p ? dn.p : xmalloc(1);
	ta->dn.len = dn.n;
	ta->flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
	return 0;
}

static int anchors_copy(struct tls_config *cfg, const br_x509_trust_anchor *tas, size_t ntas,
			const br_x509_certificate *certs, size_t ncerts, struct errbuf *eb)
{
	size_t total = ntas + ncerts;

	if (total == 0)
		return 0;
	cfg->tas = xcalloc(total, sizeof(*cfg->tas));
	for (size_t i = 0; i < ntas; i++) {
		br_x509_trust_anchor *d = &cfg->tas[cfg->ntas];

		if (pkey_copy(&d->pkey, &tas[i].pkey) < 0)
			return errbuf_set(eb, E_UNSUPP, "trust anchor %zu: unsupported key type",
					  i);
		d->dn.data = dup_bytes(tas[i].dn.data, tas[i].dn.len);
		d->dn.len = tas[i].dn.len;
		d->flags = tas[i].flags;
		cfg->ntas++;
	}
	for (size_t i = 0; i < ncerts; i++) {
		int r = anchor_from_cert(&cfg->tas[cfg->ntas], &certs[i], i, eb);

		if (r < 0)
			return r;
		cfg->ntas++;
	}
	return 0;
}

/* ---- our chain and key ----------------------------------------------------------------------- */

static int chain_copy(struct tls_config *cfg, const br_x509_certificate *chain, size_t n,
		      struct errbuf *eb)
{
	size_t total = 0;
	uint8_t *p;

	for (size_t i = 0; i < n; i++) {
		if (!chain[i].data || chain[i].data_len == 0)
			return errbuf_set(eb, E_INVAL, "certificate %zu is empty", i);
		total += chain[i].data_len;
	}
	/* One allocation: the array, then the DER blobs. */
	cfg->chain = xmalloc(n * sizeof(*cfg->chain) + total);
	p = (uint8_t *)(cfg->chain + n);
	for (size_t i = 0; i < n; i++) {
		memcpy(p, chain[i].data, chain[i].data_len);
		cfg->chain[i].data = p;
		cfg->chain[i].data_len = chain[i].data_len;
		p += chain[i].data_len;
	}
	cfg->chain_len = n;
	return 0;
}

/* Copies the key and checks that it is a valid P-256 scalar whose public point is the one in
 * the leaf certificate: a mismatch would otherwise only show as peers failing handshakes. */
static int key_copy_check(struct tls_config *cfg, const br_ec_private_key *key, struct errbuf *eb)
{
	uint8_t pub[BR_EC_KBUF_PUB_MAX_SIZE];
	br_ec_public_key pk;
	br_x509_decoder_context dc;
	const br_x509_pkey *leaf;

	if (key->curve != BR_EC_secp256r1)
		return errbuf_set(eb, E_UNSUPP, "private key is not EC P-256 (curve %d)",
				  key->curve);
	if (key->xlen == 0 || key->xlen > sizeof(cfg->keybuf))
		return errbuf_set(eb, E_INVAL, "private key has a bad length (%zu)", key->xlen);
	memcpy(cfg->keybuf, key->x, key->xlen);
	cfg->key.curve = key->curve;
	cfg->key.x = cfg->keybuf;
	cfg->key.xlen = key->xlen;
	cfg->has_key = true;
	if (br_ec_compute_pub(&br_ec_p256_m31, &pk, pub, &cfg->key) == 0)
		return errbuf_set(eb, E_CRYPTO, "private key is not a valid P-256 scalar");

	br_x509_decoder_init(&dc, NULL, NULL);
	br_x509_decoder_push(&dc, cfg->chain[0].data, cfg->chain[0].data_len);
	leaf = br_x509_decoder_get_pkey(&dc);
	if (!leaf)
		return errbuf_set(eb, E_PARSE,
				  "certificate 0: not a valid certificate (BearSSL "
				  "error %d)",
				  br_x509_decoder_last_error(&dc));
	if (leaf->key_type != BR_KEYTYPE_EC || leaf->key.ec.curve != BR_EC_secp256r1)
		return errbuf_set(eb, E_UNSUPP, "certificate 0: key is not EC P-256");
	if (leaf->key.ec.qlen != pk.qlen || memcmp(leaf->key.ec.q, pk.q, pk.qlen) != 0)
		return errbuf_set(eb, E_INVAL, "certificate 0 does not match the private key");
	return 0;
}

/* ---- ALPN and algorithms --------------------------------------------------------------------- */

static int alpn_copy(struct tls_config *cfg, const char *const *names, size_t n, bool required,
		     struct errbuf *eb)
{
	size_t total = 0;
	char *p;

	if (required && n == 0)
		return errbuf_set(eb, E_INVAL, "alpn_required needs at least one ALPN name");
	if (n > TLS_MAX_ALPN)
		return errbuf_set(eb, E_LIMIT, "too many ALPN names (%zu, at most %d)", n,
				  TLS_MAX_ALPN);
	for (size_t i = 0; i < n; i++) {
		size_t len = names[i] ? strlen(names[i]) : 0;

		/* RFC 7301 §3.1: a ProtocolName is 1..255 bytes. */
		if (len == 0 || len > 255)
			return errbuf_set(eb, E_INVAL, "ALPN name %zu must be 1..255 bytes", i);
		total += len + 1;
	}
	if (n == 0)
		return 0;
	cfg->alpn_store = p = xmalloc(total);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(names[i]) + 1;

		memcpy(p, names[i], len);
		cfg->alpn[i] = p;
		p += len;
	}
	cfg->alpn_len = n;
	cfg->alpn_required = required;
	return 0;
}

/* AES-NI/PCLMUL when the CPU has them (CPUID at run time), else the constant-time 64-bit code;
 * the order of suites follows: with hardware AES, AES-GCM is the fastest; without it ChaCha20
 * is ~3x faster than ct64 AES-GCM and just as safe. */
static void algos_pick(struct tls_config *cfg, bool aes_only)
{
	const br_block_ctr_class *ctr = br_aes_x86ni_ctr_get_vtable();
	br_ghash gh = br_ghash_pclmul_get();
	br_chacha20_run cha = br_chacha20_sse2_get();
	br_poly1305_run poly = br_poly1305_ctmulq_get();
	size_t n = 0;

	cfg->hw_aes = ctr && gh;
	cfg->aes_ctr = ctr ? ctr : &br_aes_ct64_ctr_vtable;
	cfg->ghash = gh ? gh : br_ghash_ctmul64;
	/* AES-GCM records: tls_gcm.c's one-pass AES-NI/PCLMUL classes when the CPU has them (they
	 * do their own AES and GHASH; aes_ctr and ghash then serve nothing), else BearSSL's. */
	cfg->gcm_in = tls_gcm_in_get() ? tls_gcm_in_get() : &br_sslrec_in_gcm_vtable;
	cfg->gcm_out = tls_gcm_out_get() ? tls_gcm_out_get() : &br_sslrec_out_gcm_vtable;
	cfg->chacha = cha ? cha : br_chacha20_ct_run;
	cfg->poly = poly ? poly : br_poly1305_ctmul_run;
	if (!cfg->hw_aes && !aes_only)
		cfg->suites[n++] = BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256;
	cfg->suites[n++] = BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
	cfg->suites[n++] = BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384;
	if (cfg->hw_aes && !aes_only)
		cfg->suites[n++] = BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256;
	cfg->nsuites = n;
}

/* ---- constructors ---------------------------------------------------------------------------- */

static struct tls_config *config_alloc(bool server)
{
	struct tls_config *cfg = xcalloc(1, sizeof(*cfg));

	atomic_init(&cfg->refs, 1);
	cfg->server = server;
	return cfg;
}

static void config_free(struct tls_config *cfg)
{
	for (size_t i = 0; i < cfg->ntas; i++)
		anchor_fini(&cfg->tas[i]);
	free(cfg->tas);
	free(cfg->chain);
	free(cfg->alpn_store);
	secure_wipe(cfg->keybuf, sizeof(cfg->keybuf));
	secure_wipe(&cfg->key, sizeof(cfg->key));
	free(cfg);
}

/* Chain and key, both or neither. */
static int identity_set(struct tls_config *cfg, const br_x509_certificate *chain, size_t n,
			const br_ec_private_key *key, struct errbuf *eb)
{
	int r;

	if (n == 0 || !chain)
		return errbuf_set(eb, E_INVAL, "a certificate chain is required");
	if (!key)
		return errbuf_set(eb, E_INVAL, "a private key is required");
	r = chain_copy(cfg, chain, n, eb);
	if (r < 0)
		return r;
	return key_copy_check(cfg, key, eb);
}

struct tls_config *tls_config_new_server(const struct tls_server_opts *o, struct errbuf *eb)
{
	struct tls_config *cfg = config_alloc(true);
	int r;

	r = identity_set(cfg, o->chain, o->chain_len, o->key, eb);
	if (r < 0)
		goto fail;
	r = alpn_copy(cfg, o->alpn, o->alpn_len, o->alpn_required, eb);
	if (r < 0)
		goto fail;
	r = anchors_copy(cfg, o->anchors, o->anchors_len, o->anchor_certs, o->anchor_certs_len, eb);
	if (r < 0)
		goto fail;
	if (o->client_auth > TLS_CLIENT_AUTH_REQUIRE) {
		r = errbuf_set(eb, E_INVAL, "bad client_auth value %d", (int)o->client_auth);
		goto fail;
	}
	if (o->client_auth != TLS_CLIENT_AUTH_NONE && cfg->ntas == 0) {
		r = errbuf_set(eb, E_INVAL, "client certificates need trust anchors");
		goto fail;
	}
	cfg->client_auth = o->client_auth;
	cfg->verify = o->verify;
	cfg->verify_arg = o->verify_arg;
	cfg->half_duplex = o->half_duplex;
	algos_pick(cfg, o->aes_only);
	return cfg;
fail:
	errbuf_prefix(eb, "TLS server config");
	config_free(cfg);
	return NULL;
}

struct tls_config *tls_config_new_client(const struct tls_client_opts *o, struct errbuf *eb)
{
	struct tls_config *cfg = config_alloc(false);
	int r;

	if (o->chain_len || o->key) {
		r = identity_set(cfg, o->chain, o->chain_len, o->key, eb);
		if (r < 0)
			goto fail;
	}
	r = alpn_copy(cfg, o->alpn, o->alpn_len, o->alpn_required, eb);
	if (r < 0)
		goto fail;
	r = anchors_copy(cfg, o->anchors, o->anchors_len, o->anchor_certs, o->anchor_certs_len, eb);
	if (r < 0)
		goto fail;
	if (cfg->ntas == 0) {
		r = errbuf_set(eb, E_INVAL, "trust anchors are required");
		goto fail;
	}
	cfg->verify = o->verify;
	cfg->verify_arg = o->verify_arg;
	cfg->half_duplex = o->half_duplex;
	algos_pick(cfg, o->aes_only);
	return cfg;
fail:
	errbuf_prefix(eb, "TLS client config");
	config_free(cfg);
	return NULL;
}

struct tls_config *tls_config_ref(struct tls_config *cfg)
{
	if (cfg)
		atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
	return cfg;
}

void tls_config_unref(struct tls_config *cfg)
{
	if (cfg && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
		config_free(cfg);
}

bool tls_config_is_server(const struct tls_config *cfg)
{
	return cfg->server;
}

bool tls_config_hw_aes(const struct tls_config *cfg)
{
	return cfg->hw_aes;
}
