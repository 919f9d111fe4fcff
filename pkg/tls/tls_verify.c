/* Peer verification: br_x509_minimal wrapped to keep the chain, enforce our key and ALPN
 * policy and call the verify hook; and the server policy wrapper that enforces ALPN. */
#include "pkg/tls/tls_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* br_name_element OID form for a subjectAltName of tag 6 (uniformResourceIdentifier). */
static const unsigned char oid_san_uri[] = {0, 6};

static struct tls_x509 *x509_of(const br_x509_class *const *ctx)
{
	return (struct tls_x509 *)(uintptr_t)ctx;
}

static const br_x509_class **inner(struct tls_x509 *x)
{
	return &x->min.vtable;
}

static void x_start_chain(const br_x509_class **ctx, const char *server_name)
{
	struct tls_x509 *x = x509_of(ctx);
	struct tls_conn *c = x->conn;
	int64_t now = c->now != INT64_MIN ? c->now : time_real_ms() / 1000;

	if (now < 0)
		now = 0;
	c->ncerts = 0;
	c->chain_len = 0;
	c->chain_over = false;
	c->peer_ok = false;
	c->off[0] = 0;
	/* BearSSL would fall back to its own clock when both are 0; we always set the time. */
	br_x509_minimal_set_time(&x->min, (uint32_t)(now / 86400 + TLS_UNIX_EPOCH_DAYS),
				 (uint32_t)(now % 86400));
	(*inner(x))->start_chain(inner(x), server_name);
}

static void x_start_cert(const br_x509_class **ctx, uint32_t length)
{
	struct tls_x509 *x = x509_of(ctx);
	struct tls_conn *c = x->conn;

	if (c->ncerts >= TLS_MAX_CHAIN_CERTS || length > TLS_MAX_CHAIN_BYTES - c->chain_len)
		c->chain_over = true;
	if (!c->chain_over && c->chain_len + length > c->chain_cap) {
		uint32_t cap = MAX(c->chain_cap * 2, c->chain_len + length);

		c->chain = xrealloc(c->chain, MIN(cap, (uint32_t)TLS_MAX_CHAIN_BYTES));
		c->chain_cap = MIN(cap, (uint32_t)TLS_MAX_CHAIN_BYTES);
	}
	(*inner(x))->start_cert(inner(x), length);
}

static void x_append(const br_x509_class **ctx, const unsigned char *buf, size_t len)
{
	struct tls_x509 *x = x509_of(ctx);
	struct tls_conn *c = x->conn;

	/* BearSSL promises the chunks add up to the length start_cert() made room for; a
	 * broken promise must not become a heap overflow. */
	if (!c->chain_over && len > c->chain_cap - c->chain_len)
		c->chain_over = true;
	if (!c->chain_over) {
		memcpy(c->chain + c->chain_len, buf, len);
		c->chain_len += (uint32_t)len;
	}
	(*inner(x))->append(inner(x), buf, len);
}

static void x_end_cert(const br_x509_class **ctx)
{
	struct tls_x509 *x = x509_of(ctx);
	struct tls_conn *c = x->conn;

	if (!c->chain_over)
		c->off[++c->ncerts] = c->chain_len;
	(*inner(x))->end_cert(inner(x));
}

/* The verify hook, with the chain as slices. */
static unsigned run_verify(struct tls_conn *c, int64_t now)
{
	struct slice certs[TLS_MAX_CHAIN_CERTS] = {{NULL, 0}};
	struct tls_peer peer;
	char why[TLS_REASON_SIZE - 40] = "";

	for (size_t i = 0; i < c->ncerts; i++)
		certs[i] = tls_chain_at(c, i);
	peer = (struct tls_peer){
		.leaf = certs[0],
		.chain = certs,
		.chain_len = c->ncerts,
		.uri = c->uri,
		.alpn = br_ssl_engine_get_selected_protocol(&c->u.eng),
		.now = now,
		.peer_is_server = !c->server,
	};
	if (c->verify(c->verify_arg, &peer, why, sizeof(why)) == 0)
		return 0;
	why[sizeof(why) - 1] = '\0';
	snprintf(c->reason, sizeof(c->reason), "peer certificate rejected: %s",
		 why[0] ? why : "refused by the verify callback");
	return TLS_ERR_REJECTED;
}

static unsigned x_end_chain(const br_x509_class **ctx)
{
	struct tls_x509 *x = x509_of(ctx);
	struct tls_conn *c = x->conn;
	const br_x509_pkey *pk;
	unsigned err = (*inner(x))->end_chain(inner(x));

	if (c->chain_over)
		return TLS_ERR_CHAIN_LIMIT;
	if (err)
		return err;
	if (x->uri_elt.status != 1)
		c->uri[0] = '\0';
	/* The engine only does P-256 ECDSA; say so plainly instead of failing later on the
	 * ServerKeyExchange or CertificateVerify signature. */
	pk = (*inner(x))->get_pkey(inner(x), NULL);
	if (!pk || pk->key_type != BR_KEYTYPE_EC || pk->key.ec.curve != BR_EC_secp256r1)
		return TLS_ERR_PEER_KEY;
	/* The ServerHello (and its ALPN extension) came before the Certificate: a server that
	 * ignored our ALPN is refused here, before any key exchange. */
	if (!c->server && c->cfg->alpn_required && !br_ssl_engine_get_selected_protocol(&c->u.eng))
		return TLS_ERR_ALPN;
	if (c->verify) {
		int64_t now = c->now != INT64_MIN ? c->now : time_real_ms() / 1000;

		err = run_verify(c, now);
		if (err)
			return err;
	}
	c->peer_ok = true;
	return 0;
}

static const br_x509_pkey *x_get_pkey(const br_x509_class *const *ctx, unsigned *usages)
{
	struct tls_x509 *x = x509_of(ctx);

	return x->min.vtable->get_pkey(&x->min.vtable, usages);
}

static const br_x509_class tls_x509_vtable = {
	sizeof(struct tls_x509),
	x_start_chain,
	x_start_cert,
	x_append,
	x_end_cert,
	x_end_chain,
	x_get_pkey,
};

void tls_x509_setup(struct tls_conn *c)
{
	struct tls_x509 *x = &c->x509;
	const struct tls_config *cfg = c->cfg;

	x->vtable = &tls_x509_vtable;
	x->conn = c;
	br_x509_minimal_init(&x->min, &br_sha256_vtable, cfg->tas, cfg->ntas);
	/* No SHA-1: certificates signed with it are refused. */
	br_x509_minimal_set_hash(&x->min, br_sha224_ID, &br_sha224_vtable);
	br_x509_minimal_set_hash(&x->min, br_sha256_ID, &br_sha256_vtable);
	br_x509_minimal_set_hash(&x->min, br_sha384_ID, &br_sha384_vtable);
	br_x509_minimal_set_hash(&x->min, br_sha512_ID, &br_sha512_vtable);
	/* CA certificates may be RSA or other NIST curves; the leaf is checked in x_end_chain.
	 * br_ec_all_m31 uses the p256_m31 code for P-256. */
	br_x509_minimal_set_rsa(&x->min, br_rsa_i31_pkcs1_vrfy);
	br_x509_minimal_set_ecdsa(&x->min, &br_ec_all_m31, br_ecdsa_i31_vrfy_asn1);
	x->uri_elt = (br_name_element){
		.oid = oid_san_uri,
		.buf = c->uri,
		.len = sizeof(c->uri),
	};
	br_x509_minimal_set_name_elements(&x->min, &x->uri_elt, 1);
	br_ssl_engine_set_x509(&c->u.eng, &x->vtable);
}

/* ---- server policy --------------------------------------------------------------------------- */

static struct tls_conn *policy_conn(const br_ssl_server_policy_class **pctx)
{
	return ((struct tls_policy *)(uintptr_t)pctx)->conn;
}

static const br_ssl_server_policy_class **policy_inner(struct tls_conn *c)
{
	return &c->u.sc.chain_handler.single_ec.vtable;
}

/* Runs after BearSSL matched cipher suites and ALPN names. BR_OPT_FAIL_ON_ALPN_MISMATCH covers
 * a client whose names all differ from ours; a client that sends no ALPN at all is refused
 * here when ALPN is required (alert handshake_failure). */
static int pol_choose(const br_ssl_server_policy_class **pctx, const br_ssl_server_context *cc,
		      br_ssl_server_choices *choices)
{
	struct tls_conn *c = policy_conn(pctx);

	c->policy_seen = true;
	if (c->cfg->alpn_required && !br_ssl_engine_get_selected_protocol(&c->u.eng)) {
		c->alpn_failed = true;
		return 0;
	}
	return (*policy_inner(c))->choose(policy_inner(c), cc, choices);
}

static uint32_t pol_do_keyx(const br_ssl_server_policy_class **pctx, unsigned char *data,
			    size_t *len)
{
	struct tls_conn *c = policy_conn(pctx);

	return (*policy_inner(c))->do_keyx(policy_inner(c), data, len);
}

static size_t pol_do_sign(const br_ssl_server_policy_class **pctx, unsigned algo_id,
			  unsigned char *data, size_t hv_len, size_t len)
{
	struct tls_conn *c = policy_conn(pctx);

	return (*policy_inner(c))->do_sign(policy_inner(c), algo_id, data, hv_len, len);
}

static const br_ssl_server_policy_class tls_policy_vtable = {
	sizeof(struct tls_policy),
	pol_choose,
	pol_do_keyx,
	pol_do_sign,
};

void tls_policy_setup(struct tls_conn *c)
{
	c->policy.vtable = &tls_policy_vtable;
	c->policy.conn = c;
	c->u.sc.policy_vtable = &c->policy.vtable;
}
