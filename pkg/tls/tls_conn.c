/* The sans-I/O TLS connection: BearSSL engine setup per role, the byte pump, state and errors. */
#include "pkg/tls/tls_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- setup ----------------------------------------------------------------------------------- */

/* Everything both roles share: versions, suites, hashes, curves and record implementations. */
static void engine_setup(struct tls_conn *c)
{
	br_ssl_engine_context *eng = &c->u.eng;
	const struct tls_config *cfg = c->cfg;
	uint32_t flags = BR_OPT_ENFORCE_SERVER_PREFERENCES | BR_OPT_NO_RENEGOTIATION;

	if (cfg->alpn_required)
		flags |= BR_OPT_FAIL_ON_ALPN_MISMATCH;
	if (cfg->client_auth == TLS_CLIENT_AUTH_OPTIONAL)
		flags |= BR_OPT_TOLERATE_NO_CLIENT_AUTH;
	br_ssl_engine_set_all_flags(eng, flags);
	br_ssl_engine_set_versions(eng, BR_TLS12, BR_TLS12);
	br_ssl_engine_set_suites(eng, cfg->suites, cfg->nsuites);
	/* Handshake hashes double as the signature hashes we announce and accept (no SHA-1). */
	br_ssl_engine_set_hash(eng, br_sha256_ID, &br_sha256_vtable);
	br_ssl_engine_set_hash(eng, br_sha384_ID, &br_sha384_vtable);
	br_ssl_engine_set_hash(eng, br_sha512_ID, &br_sha512_vtable);
	br_ssl_engine_set_prf_sha256(eng, br_tls12_sha256_prf);
	br_ssl_engine_set_prf_sha384(eng, br_tls12_sha384_prf);
	/* P-256 only, with the fastest 0.6 implementation (m31; there is no m62/m64 in 0.6). */
	br_ssl_engine_set_ec(eng, &br_ec_p256_m31);
	br_ssl_engine_set_ecdsa(eng, br_ecdsa_i31_vrfy_asn1);
	br_ssl_engine_set_gcm(eng, cfg->gcm_in, cfg->gcm_out); /* ours (tls_gcm.c) or BearSSL's */
	br_ssl_engine_set_aes_ctr(eng, cfg->aes_ctr);
	br_ssl_engine_set_ghash(eng, cfg->ghash);
	br_ssl_engine_set_chapol(eng, &br_sslrec_in_chapol_vtable, &br_sslrec_out_chapol_vtable);
	br_ssl_engine_set_chacha20(eng, cfg->chacha);
	br_ssl_engine_set_poly1305(eng, cfg->poly);
	if (cfg->alpn_len)
		br_ssl_engine_set_protocol_names(eng, (const char **)cfg->alpn, cfg->alpn_len);
}

/* The record buffer, and the PRNG seeded from getrandom. BearSSL would otherwise also run its
 * system seeder (RDRAND or /dev/urandom, absent from a scratch image) on every reset;
 * rng_os_rand_done is the 0.6 engine's "already tried" flag, set here to skip it. */
static void engine_buffers_seed(struct tls_conn *c)
{
	br_ssl_engine_context *eng = &c->u.eng;
	size_t len = c->cfg->half_duplex ? BR_SSL_BUFSIZE_MONO : BR_SSL_BUFSIZE_BIDI;
	uint8_t seed[32];

	c->iobuf = xmalloc(len);
	br_ssl_engine_set_buffer(eng, c->iobuf, len, !c->cfg->half_duplex);
	rand_bytes(seed, sizeof(seed));
	br_ssl_engine_inject_entropy(eng, seed, sizeof(seed));
	secure_wipe(seed, sizeof(seed));
	eng->rng_os_rand_done = 1;
}

static void conn_start(struct tls_conn *c, struct tls_config *cfg, bool server)
{
	memset(c, 0, offsetof(struct tls_conn, stash));
	c->cfg = tls_config_ref(cfg);
	c->server = server;
	c->now = INT64_MIN;
	c->verify = cfg->verify;
	c->verify_arg = cfg->verify_arg;
}

static int conn_started(struct tls_conn *c, int ok)
{
	tls_conn_update(c);
	if (!ok) {
		snprintf(c->reason, sizeof(c->reason), "TLS setup failed: %s",
			 tls_error_str(br_ssl_engine_last_error(&c->u.eng)));
		return -E_CRYPTO;
	}
	return 0;
}

static int role_mismatch(struct tls_conn *c)
{
	memset(c, 0, offsetof(struct tls_conn, stash));
	c->st = TLS_ST_ERROR | TLS_ST_CLOSED;
	return -E_INVAL;
}

int tls_conn_init_server(struct tls_conn *c, struct tls_config *cfg)
{
	br_ssl_server_context *sc = &c->u.sc;

	if (!cfg->server)
		return role_mismatch(c);
	conn_start(c, cfg, true);
	br_ssl_server_zero(sc);
	engine_setup(c);
	br_ssl_server_set_single_ec(sc, cfg->chain, cfg->chain_len, &cfg->key, BR_KEYTYPE_SIGN,
				    BR_KEYTYPE_EC, &br_ec_p256_m31, br_ecdsa_i31_sign_asn1);
	tls_policy_setup(c);
	/* Anchor names make BearSSL send a CertificateRequest; no session cache: no resumption. */
	if (cfg->client_auth != TLS_CLIENT_AUTH_NONE) {
		br_ssl_server_set_trust_anchor_names_alt(sc, cfg->tas, cfg->ntas);
		tls_x509_setup(c);
	}
	engine_buffers_seed(c);
	return conn_started(c, br_ssl_server_reset(sc));
}

int tls_conn_init_client(struct tls_conn *c, struct tls_config *cfg, const char *server_name)
{
	br_ssl_client_context *cc = &c->u.cc;

	if (cfg->server)
		return role_mismatch(c);
	conn_start(c, cfg, false);
	br_ssl_client_zero(cc);
	engine_setup(c);
	if (cfg->has_key)
		br_ssl_client_set_single_ec(cc, cfg->chain, cfg->chain_len, &cfg->key,
					    BR_KEYTYPE_SIGN, BR_KEYTYPE_EC, &br_ec_p256_m31,
					    br_ecdsa_i31_sign_asn1);
	tls_x509_setup(c);
	engine_buffers_seed(c);
	/* resume_session = 0: never offer a session ID. */
	return conn_started(c, br_ssl_client_reset(cc, server_name, 0));
}

void tls_conn_fini(struct tls_conn *c)
{
	/* The engine holds the session keys. */
	secure_wipe(&c->u, sizeof(c->u));
	free(c->iobuf);
	free(c->chain);
	tls_config_unref(c->cfg);
	memset(c, 0, offsetof(struct tls_conn, stash));
}

void tls_conn_set_verify(struct tls_conn *c, tls_verify_fn fn, void *arg)
{
	c->verify = fn;
	c->verify_arg = arg;
}

void tls_conn_set_time(struct tls_conn *c, int64_t unix_s)
{
	c->now = unix_s;
}

/* ---- state ----------------------------------------------------------------------------------- */

void tls_conn_fail(struct tls_conn *c, int err, const char *fmt, ...)
{
	va_list ap;

	if (c->err || (c->st & TLS_ST_ERROR))
		return;
	c->err = err;
	c->reason[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
		va_end(ap);
	}
	c->err_checked = false;
	tls_conn_update(c);
}

/* First look at a failure: keep a readable reason, and when we found a certificate or ALPN
 * problem ourselves, queue a plaintext fatal alert so the peer learns why. That is sound only
 * before our ChangeCipherSpec (always true: no resumption, no renegotiation, and verification
 * ends before our Finished) and if no record went out half-sent. */
static void failure_seen(struct tls_conn *c)
{
	int code = tls_conn_error(c);
	/* The engine's own code: alerts BearSSL sent or received are not answered again. */
	unsigned alert = tls_error_alert(br_ssl_engine_last_error(&c->u.eng));

	c->err_checked = true;
	/* A rejection keeps the verify callback's words (see run_verify in tls_verify.c). */
	if (code != TLS_ERR_REJECTED || !c->reason[0])
		snprintf(c->reason, sizeof(c->reason), "%s", tls_error_str(code));
	if (alert && !c->done && !c->out_partial) {
		/* Record type alert (21), version TLS 1.2, length 2, level fatal (2). */
		static const uint8_t hdr[] = {21, 3, 3, 0, 2, 2};

		memcpy(c->alert, hdr, sizeof(hdr));
		c->alert[6] = (uint8_t)alert;
		c->alert_len = sizeof(c->alert);
		c->alert_off = 0;
	}
}

void tls_conn_update(struct tls_conn *c)
{
	br_ssl_engine_context *eng = &c->u.eng;
	unsigned s, st = 0;

	if (!c->cfg || c->err) {
		st = TLS_ST_ERROR | TLS_ST_CLOSED;
	} else if (c->eof_clean) {
		st = TLS_ST_CLOSED | TLS_ST_EOF;
	} else {
		s = br_ssl_engine_current_state(eng);
		if (s & BR_SSL_CLOSED) {
			st = br_ssl_engine_last_error(eng) ? TLS_ST_ERROR | TLS_ST_CLOSED
							   : TLS_ST_CLOSED | TLS_ST_EOF;
		} else {
			if (s & (BR_SSL_SENDAPP | BR_SSL_RECVAPP))
				c->done = true;
			st |= (s & BR_SSL_SENDREC) ? TLS_ST_CIPHER_OUT : 0;
			st |= (s & BR_SSL_RECVREC) ? TLS_ST_CIPHER_IN : 0;
			st |= (s & BR_SSL_RECVAPP) ? TLS_ST_PLAIN_IN : 0;
			st |= (s & BR_SSL_SENDAPP) ? TLS_ST_PLAIN_OUT : 0;
			/* BearSSL has no accessor for "close_notify received". */
			st |= eng->shutdown_recv ? TLS_ST_EOF : 0;
		}
	}
	if ((st & TLS_ST_ERROR) && !c->err_checked && c->cfg) {
		if (c->err) { /* ours: tls_conn_fail() set the reason, no alert */
			c->err_checked = true;
			if (!c->reason[0])
				snprintf(c->reason, sizeof(c->reason), "%s", tls_error_str(c->err));
		} else {
			failure_seen(c);
		}
	}
	if (c->done)
		st |= TLS_ST_DONE;
	if (c->alert_off < c->alert_len)
		st |= TLS_ST_CIPHER_OUT;
	c->st = st;
}

/* ---- ciphertext ------------------------------------------------------------------------------ */

/* No more engine calls: never started, failed on our side, or closed by a transport EOF. */
static bool dead(const struct tls_conn *c)
{
	return !c->cfg || c->err || c->eof_clean;
}

size_t tls_conn_push_cipher(struct tls_conn *c, const void *p, size_t n)
{
	const uint8_t *src = p;
	size_t done = 0;

	while (done < n && !dead(c)) {
		size_t cap;
		uint8_t *buf = br_ssl_engine_recvrec_buf(&c->u.eng, &cap);
		size_t k;

		if (!buf)
			break;
		k = MIN(cap, n - done);
		memcpy(buf, src + done, k);
		br_ssl_engine_recvrec_ack(&c->u.eng, k);
		done += k;
	}
	tls_conn_update(c);
	return done;
}

uint8_t *tls_conn_cipher_wbuf(struct tls_conn *c, size_t *cap)
{
	*cap = 0;
	if (dead(c))
		return NULL;
	return br_ssl_engine_recvrec_buf(&c->u.eng, cap);
}

void tls_conn_cipher_commit(struct tls_conn *c, size_t n)
{
	if (n && !dead(c))
		br_ssl_engine_recvrec_ack(&c->u.eng, n);
	tls_conn_update(c);
}

void tls_conn_push_eof(struct tls_conn *c)
{
	if (dead(c) || (c->st & TLS_ST_CLOSED))
		return;
	if (c->u.eng.shutdown_recv) /* close_notify came first; ours may still be queued */
		return;
	if (c->close_sent) {
		/* We said goodbye; a peer that closes without answering is common and harmless. */
		c->eof_clean = true;
		tls_conn_update(c);
		return;
	}
	if (c->done)
		tls_conn_fail(c, TLS_ERR_TRUNCATED, NULL);
	else
		tls_conn_fail(c, TLS_ERR_EOF_HANDSHAKE, NULL);
}

const uint8_t *tls_conn_pull_cipher(struct tls_conn *c, size_t *len)
{
	const uint8_t *p = NULL;

	*len = 0;
	if (c->alert_off < c->alert_len) {
		*len = (size_t)(c->alert_len - c->alert_off);
		p = c->alert + c->alert_off;
	} else if (!dead(c)) {
		p = br_ssl_engine_sendrec_buf(&c->u.eng, len);
	}
	c->last_pull = p ? *len : 0;
	return p;
}

void tls_conn_cipher_done(struct tls_conn *c, size_t n)
{
	if (c->alert_off < c->alert_len) {
		c->alert_off = (uint8_t)MIN((size_t)c->alert_len, c->alert_off + n);
	} else if (!dead(c) && n) {
		c->out_partial = n < c->last_pull;
		br_ssl_engine_sendrec_ack(&c->u.eng, n);
	}
	c->last_pull = 0;
	tls_conn_update(c);
}

/* ---- plaintext ------------------------------------------------------------------------------- */

size_t tls_conn_push_plain(struct tls_conn *c, const void *p, size_t n)
{
	const uint8_t *src = p;
	size_t done = 0;

	while (done < n && !dead(c)) {
		size_t cap;
		uint8_t *buf = br_ssl_engine_sendapp_buf(&c->u.eng, &cap);
		size_t k;

		if (!buf)
			break;
		k = MIN(cap, n - done);
		memcpy(buf, src + done, k);
		br_ssl_engine_sendapp_ack(&c->u.eng, k);
		done += k;
	}
	tls_conn_update(c);
	return done;
}

uint8_t *tls_conn_plain_wbuf(struct tls_conn *c, size_t *cap)
{
	*cap = 0;
	if (dead(c))
		return NULL;
	return br_ssl_engine_sendapp_buf(&c->u.eng, cap);
}

void tls_conn_plain_commit(struct tls_conn *c, size_t n)
{
	if (n && !dead(c))
		br_ssl_engine_sendapp_ack(&c->u.eng, n);
	tls_conn_update(c);
}

void tls_conn_flush(struct tls_conn *c)
{
	if (!dead(c))
		br_ssl_engine_flush(&c->u.eng, 0);
	tls_conn_update(c);
}

const uint8_t *tls_conn_pull_plain(struct tls_conn *c, size_t *len)
{
	*len = 0;
	if (dead(c))
		return NULL;
	return br_ssl_engine_recvapp_buf(&c->u.eng, len);
}

void tls_conn_plain_done(struct tls_conn *c, size_t n)
{
	if (n && !dead(c))
		br_ssl_engine_recvapp_ack(&c->u.eng, n);
	tls_conn_update(c);
}

void tls_conn_close_notify(struct tls_conn *c)
{
	if (c->close_sent || dead(c))
		return;
	c->close_sent = true;
	br_ssl_engine_close(&c->u.eng);
	tls_conn_update(c);
}

/* ---- results --------------------------------------------------------------------------------- */

int tls_conn_error(const struct tls_conn *c)
{
	int e;

	if (c->err)
		return c->err;
	if (!c->cfg || c->eof_clean)
		return 0;
	e = br_ssl_engine_last_error(&c->u.eng);
	/* BearSSL answers several server-side refusals with handshake_failure; tell them apart. */
	if (c->server && e == BR_ERR_SEND_FATAL_ALERT + 40) {
		if (c->alpn_failed)
			return TLS_ERR_ALPN;
		if (!c->policy_seen)
			return TLS_ERR_NO_SHARED_CIPHER;
	}
	if (e == BR_ERR_SEND_FATAL_ALERT + 120)
		return TLS_ERR_ALPN;
	return e;
}

const char *tls_conn_reason(const struct tls_conn *c)
{
	return tls_conn_error(c) ? c->reason : "";
}

const char *tls_conn_alpn(const struct tls_conn *c)
{
	if (!c->cfg || !c->done)
		return NULL;
	/* The getter takes a non-const context but only reads it. */
	return br_ssl_engine_get_selected_protocol((br_ssl_engine_context *)&c->u.eng);
}

uint16_t tls_conn_cipher_suite(const struct tls_conn *c)
{
	return c->done ? c->u.eng.session.cipher_suite : 0;
}

const char *tls_suite_name(uint16_t suite)
{
	switch (suite) {
	case BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: return "ECDHE-ECDSA-AES128-GCM-SHA256";
	case BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: return "ECDHE-ECDSA-AES256-GCM-SHA384";
	case BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256:
		return "ECDHE-ECDSA-CHACHA20-POLY1305";
	default: return "unknown";
	}
}

const char *tls_conn_server_name(const struct tls_conn *c)
{
	const char *s;

	if (!c->cfg || !c->server)
		return NULL;
	s = br_ssl_engine_get_server_name(&c->u.eng);
	return s && s[0] ? s : NULL;
}

struct slice tls_conn_peer_chain(const struct tls_conn *c, size_t i)
{
	return c->peer_ok ? tls_chain_at(c, i) : (struct slice){NULL, 0};
}

struct slice tls_conn_peer_cert(const struct tls_conn *c)
{
	return tls_conn_peer_chain(c, 0);
}

size_t tls_conn_peer_chain_len(const struct tls_conn *c)
{
	return c->peer_ok ? c->ncerts : 0;
}

const char *tls_conn_peer_uri(const struct tls_conn *c)
{
	return c->peer_ok ? c->uri : "";
}
