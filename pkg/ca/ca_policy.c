/* Node authorization against the mesh config, and per-node token-bucket rate limiting. */
#include "pkg/ca/ca.h"

#include <stdlib.h>
#include <string.h>

int ca_authorize(const struct config *c, const char *trust_domain, const char *node,
		 const char *identity, struct errbuf *eb)
{
	struct x509_spiffe id;
	struct slice ns, sa;
	const struct config_workload *const *ws;
	size_t n;
	int rc;

	rc = x509_spiffe_parse(identity, strlen(identity), &id, eb);
	if (rc < 0) {
		errbuf_prefix(eb, "identity");
		return -E_INVAL;
	}
	if (id.td.n != strlen(trust_domain) || memcmp(id.td.p, trust_domain, id.td.n) != 0)
		return errbuf_set(eb, E_DENIED, "identity %s is outside the trust domain %s",
				  identity, trust_domain);
	rc = x509_spiffe_istio(&id, &ns, &sa, eb);
	if (rc < 0) {
		errbuf_prefix(eb, "identity");
		return -E_INVAL;
	}
	if (!c)
		return errbuf_set(eb, E_DENIED, "no mesh config loaded yet");
	ws = config_workloads_by_node(c, node, &n);
	for (size_t i = 0; i < n; i++) {
		const struct config_workload *w = ws[i];
		if (strlen(w->namespace) == ns.n && memcmp(w->namespace, ns.p, ns.n) == 0 &&
		    strlen(w->service_account) == sa.n &&
		    memcmp(w->service_account, sa.p, sa.n) == 0 &&
		    strcmp(w->trust_domain, trust_domain) == 0)
			return 0;
	}
	return errbuf_set(eb, E_DENIED,
			  "node %s runs no workload with identity %s (mesh config version %llu)",
			  node, identity, (unsigned long long)config_version(c));
}

/* ---- rate limiting ------------------------------------------------------------------------------
 * One bucket per node name in an open-addressing table (nodes are few and long-lived; the
 * table only grows, bounded by the number of nodes that hold valid tokens). */

struct bucket {
	char *node;
	double tokens;
	uint64_t last_ms;
};

struct ca_ratelimit {
	double rate;
	double burst;
	struct bucket *b;
	size_t cap;
	size_t n;
};

struct ca_ratelimit *ca_ratelimit_new(double rate, double burst)
{
	struct ca_ratelimit *r = xcalloc(1, sizeof(*r));

	r->rate = rate > 0 ? rate : 1;
	r->burst = burst >= 1 ? burst : 1;
	r->cap = 64;
	r->b = xcalloc(r->cap, sizeof(*r->b));
	return r;
}

void ca_ratelimit_free(struct ca_ratelimit *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->cap; i++)
		free(r->b[i].node);
	free(r->b);
	free(r);
}

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

static struct bucket *slot(struct bucket *b, size_t cap, const char *node)
{
	size_t i = hash(node) & (cap - 1);

	while (b[i].node && strcmp(b[i].node, node) != 0)
		i = (i + 1) & (cap - 1);
	return &b[i];
}

static void grow(struct ca_ratelimit *r)
{
	size_t ncap = r->cap * 2;
	struct bucket *nb = xcalloc(ncap, sizeof(*nb));

	for (size_t i = 0; i < r->cap; i++)
		if (r->b[i].node)
			*slot(nb, ncap, r->b[i].node) = r->b[i];
	free(r->b);
	r->b = nb;
	r->cap = ncap;
}

bool ca_ratelimit_take(struct ca_ratelimit *r, const char *node, uint64_t now_ms,
		       uint64_t *retry_ms)
{
	struct bucket *b;

	if (r->n * 2 >= r->cap)
		grow(r);
	b = slot(r->b, r->cap, node);
	if (!b->node) {
		b->node = xstrdup(node);
		b->tokens = r->burst;
		b->last_ms = now_ms;
		r->n++;
	}
	if (now_ms > b->last_ms) {
		b->tokens += (double)(now_ms - b->last_ms) * r->rate / 1000.0;
		if (b->tokens > r->burst)
			b->tokens = r->burst;
		b->last_ms = now_ms;
	}
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return true;
	}
	if (retry_ms)
		*retry_ms = (uint64_t)((1.0 - b->tokens) * 1000.0 / r->rate) + 1;
	return false;
}
