/* Private layout of struct tls_config and the helpers shared by the tls_*.c files. */
#ifndef AMBIENT_TLS_INT_H
#define AMBIENT_TLS_INT_H

#include "pkg/tls/tls.h"

#include <stdatomic.h>

/* Days from 0000-01-01 (proleptic Gregorian, BearSSL's epoch) to 1970-01-01. */
#define TLS_UNIX_EPOCH_DAYS 719528

struct tls_config {
	atomic_uint refs;
	bool server;
	/* Our certificate chain and key (server: required; client: optional). */
	br_x509_certificate *chain;
	size_t chain_len;
	br_ec_private_key key;
	bool has_key;
	uint8_t keybuf[BR_EC_KBUF_PRIV_MAX_SIZE];
	/* Anchors (deep copies). */
	br_x509_trust_anchor *tas;
	size_t ntas;
	/* ALPN names (copies) and the pointer array BearSSL wants. */
	char *alpn_store;
	const char *alpn[TLS_MAX_ALPN];
	size_t alpn_len;
	bool alpn_required;
	enum tls_client_auth client_auth;
	tls_verify_fn verify;
	void *verify_arg;
	bool half_duplex;
	/* Suites in preference order, and the implementations picked for this CPU. */
	uint16_t suites[3];
	size_t nsuites;
	bool hw_aes;
	const br_block_ctr_class *aes_ctr;
	br_ghash ghash;
	/* AES-GCM record classes (ours from tls_gcm.c with AES-NI + PCLMUL, else BearSSL's). */
	const br_sslrec_in_gcm_class *gcm_in;
	const br_sslrec_out_gcm_class *gcm_out;
	br_chacha20_run chacha;
	br_poly1305_run poly;
};

/* tls_verify.c: the X.509 wrapper (client always, server when it asks for client certs) and
 * the server policy wrapper. */
void tls_x509_setup(struct tls_conn *c);
void tls_policy_setup(struct tls_conn *c);

/* tls_conn.c: recomputes the cached state mask (and, on the first failure, the reason and
 * the alert to send). */
void tls_conn_update(struct tls_conn *c);
/* Fails the connection with one of our codes (no-op if it already failed). */
void tls_conn_fail(struct tls_conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Certificate i of the peer chain as captured, verified or not. */
static inline struct slice tls_chain_at(const struct tls_conn *c, size_t i)
{
	if (i >= c->ncerts)
		return (struct slice){NULL, 0};
	return (struct slice){c->chain + c->off[i], c->off[i + 1] - c->off[i]};
}

/* tls_error.c: the alert we send for a failure we detected ourselves (0: none). */
unsigned tls_error_alert(int code);

/* tls_gcm.c: AES-GCM on AES-NI + PCLMULQDQ, 8 blocks at a time: record classes that seal/open a
 * record in one stitched CTR + GHASH pass (for br_ssl_engine_set_gcm), and the same primitives
 * as a br_block_ctr_class and a br_ghash (not installed; the tests run them through br_gcm).
 * NULL when the CPU lacks AES-NI, PCLMULQDQ or SSE4.1. */
const br_sslrec_in_gcm_class *tls_gcm_in_get(void);
const br_sslrec_out_gcm_class *tls_gcm_out_get(void);
const br_block_ctr_class *tls_gcm_ctr_get(void);
br_ghash tls_gcm_ghash_get(void);
/* Whether record contexts set up from now on use the 256-bit VAES/VPCLMULQDQ loop (the CPU has
 * AVX2, VAES and VPCLMULQDQ, and it is allowed: on by default; tests turn it off to cover the
 * 128-bit loop too). */
bool tls_gcm_wide(void);
void tls_gcm_allow_wide(bool on);

#endif
