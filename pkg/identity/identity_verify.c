/* Checks a CA's certChain against our key, the requested identity and the trusted roots, and
 * turns it into a refcounted, BearSSL-ready certificate. */
#include "pkg/identity/identity_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Trust decisions (docs/identity.md):
 *  - certChain runs leaf, intermediates..., root bundle (DESIGN.md §4); the last element may
 *    hold several concatenated roots (Istio's trust bundle shape), every other element exactly
 *    one certificate.
 *  - Every certificate of the root bundle must be byte-equal to a root we were configured with
 *    (ca_root for a remote CA, root-cert.pem for --ca-dir). A CA cannot introduce a new root
 *    through its own answer: a rotation reaches us through the configured file.
 *  - The leaf must carry exactly the requested SPIFFE ID (X.509-SVID §2: one URI SAN) and our
 *    public key; the path must verify (signatures, validity now, CA flags, path length, the
 *    SVID profile, the identity's trust domain) with x509_verify_chain against that bundle.
 */

static void cert_free(struct identity_cert *c)
{
	if (!c)
		return;
	x509_key_free(c->k);
	x509_chain_fini(&c->certs);
	x509_chain_fini(&c->tail);
	free(c->br_chain);
	free(c->br_roots);
	free(c->id_owned);
	free(c);
}

struct identity_cert *identity_cert_ref(struct identity_cert *c)
{
	if (c)
		atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
	return c;
}

void identity_cert_unref(struct identity_cert *c)
{
	if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		cert_free(c);
}

/* Exactly one certificate in one certChain element. */
static int parse_one(const char *pem, size_t i, struct x509_cert **out, struct errbuf *eb)
{
	int r = x509_cert_parse_pem(pem, strlen(pem), out, eb);

	if (r < 0)
		errbuf_prefix(eb, "certChain[%zu]", i);
	return r;
}

static bool is_trusted(const struct x509_cert *c, const struct x509_chain *trusted)
{
	for (size_t i = 0; i < trusted->n; i++)
		if (trusted->v[i]->len == c->len && memcmp(trusted->v[i]->der, c->der, c->len) == 0)
			return true;
	return false;
}

static int parse_answer(struct identity_cert *c, char *const *pem, size_t n,
			const struct x509_chain *trusted, const char *trusted_what,
			struct errbuf *eb)
{
	struct x509_chain tail = {0};
	int r;

	if (n < 2)
		return errbuf_set(eb, E_PROTO,
				  "certChain has %zu element%s; want the leaf, any intermediates "
				  "and the root",
				  n, n == 1 ? "" : "s");
	if (n > X509_MAX_CHAIN)
		return errbuf_set(eb, E_LIMIT, "certChain has %zu elements; at most %d", n,
				  X509_MAX_CHAIN);
	for (size_t i = 0; i + 1 < n; i++) {
		struct x509_cert *x;

		r = parse_one(pem[i], i, &x, eb);
		if (r < 0)
			return r;
		x509_chain_add(&c->certs, x);
	}
	r = x509_chain_parse_pem(pem[n - 1], strlen(pem[n - 1]), &tail, eb);
	if (r < 0) {
		errbuf_prefix(eb, "certChain[%zu] (root bundle)", n - 1);
		return r;
	}
	c->tail = tail;
	for (size_t i = 0; i < tail.n; i++) {
		if (!is_trusted(tail.v[i], trusted))
			return errbuf_set(eb, E_CRYPTO,
					  "certChain[%zu]: root \"%s\" is not one of the trusted "
					  "roots in %s",
					  n - 1, tail.v[i]->subject_text, trusted_what);
	}
	return 0;
}

/* The leaf must name exactly what we asked for, for our key. */
static int check_leaf(const struct x509_cert *leaf, const char *id, const struct x509_key *key,
		      struct errbuf *eb)
{
	struct slice uri = x509_cert_uri(leaf);
	size_t idlen = strlen(id);

	if (leaf->n_uri != 1 || uri.n != idlen || memcmp(uri.p, id, idlen) != 0)
		return errbuf_set(eb, E_DENIED,
				  "CA returned a certificate for \"%.*s\"%s, not the requested %s",
				  (int)MIN(uri.n, 300), uri.p ? (const char *)uri.p : "",
				  leaf->n_uri > 1 ? " (and more URI SANs)" : "", id);
	if (!x509_pubkey_equal(&leaf->pub, x509_key_public(key)))
		return errbuf_set(
			eb, E_DENIED,
			"CA returned a certificate for another public key than our CSR's");
	return 0;
}

static void fill_views(struct identity_cert *c, const char *id)
{
	c->id_owned = xstrdup(id);
	c->spiffe_id = c->id_owned;
	c->key = x509_key_br(c->k);
	c->br_chain = xcalloc(c->certs.n, sizeof(*c->br_chain));
	for (size_t i = 0; i < c->certs.n; i++)
		c->br_chain[i] = (br_x509_certificate){c->certs.v[i]->der, c->certs.v[i]->len};
	c->br_roots = xcalloc(c->tail.n, sizeof(*c->br_roots));
	for (size_t i = 0; i < c->tail.n; i++)
		c->br_roots[i] = (br_x509_certificate){c->tail.v[i]->der, c->tail.v[i]->len};
	c->chain = c->br_chain;
	c->chain_len = c->certs.n;
	c->roots = c->br_roots;
	c->roots_len = c->tail.n;
	c->leaf = c->certs.v[0];
	c->not_before = c->leaf->not_before;
	c->not_after = c->leaf->not_after;
	/* Refresh at half-life (ztunnel: notBefore + (notAfter - notBefore) / 2). */
	c->refresh_at_ms = c->not_before * 1000 + (c->not_after - c->not_before) * 500;
	x509_cert_serial_hex(c->leaf, c->serial, sizeof(c->serial));
	atomic_init(&c->refs, 1);
}

int identity_cert_build(const char *id, struct x509_key *key, char *const *pem, size_t n,
			const struct x509_chain *trusted, const char *trusted_what, int64_t now_s,
			struct identity_cert **out, struct errbuf *eb)
{
	struct identity_cert *c = xcalloc(1, sizeof(*c));
	struct x509_spiffe sid;
	char td[X509_TRUST_DOMAIN_MAX + 1];
	int r;

	c->k = key;
	*out = NULL;
	r = x509_spiffe_parse(id, strlen(id), &sid, eb);
	if (r < 0)
		goto fail;
	snprintf(td, sizeof(td), "%.*s", (int)sid.td.n, (const char *)sid.td.p);
	r = parse_answer(c, pem, n, trusted, trusted_what, eb);
	if (r < 0)
		goto fail;
	r = check_leaf(c->certs.v[0], id, key, eb);
	if (r < 0)
		goto fail;
	r = x509_verify_chain(c->certs.v[0], c->certs.v + 1, c->certs.n - 1, c->tail.v, c->tail.n,
			      now_s, td, eb);
	if (r < 0) {
		errbuf_prefix(eb, "certChain does not verify");
		goto fail;
	}
	fill_views(c, id);
	*out = c;
	return 0;
fail:
	cert_free(c);
	return r;
}
