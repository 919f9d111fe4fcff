/* Fuzz target for pkg/authz: parse a mesh document, then check connections built from its own
 * addresses, ports and identities against every workload, comparing with a plain reference
 * evaluator written straight from ztunnel's rbac.rs and checking the result's invariants. */
#include "pkg/authz/authz.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define POOL_MAX 48
#define CONNS_PER_WORKLOAD 8

struct pools {
	struct config_ip ips[POOL_MAX];
	size_t n_ips;
	uint16_t ports[POOL_MAX];
	size_t n_ports;
	char *ids[POOL_MAX]; /* owned */
	size_t n_ids;
};

static void add_ip(struct pools *p, const struct config_ip *ip)
{
	if (p->n_ips < POOL_MAX)
		p->ips[p->n_ips++] = *ip;
}

static void add_port(struct pools *p, uint16_t port)
{
	if (p->n_ports < POOL_MAX)
		p->ports[p->n_ports++] = port;
}

static void add_id(struct pools *p, char *id)
{
	if (p->n_ids < POOL_MAX)
		p->ids[p->n_ids++] = id;
	else
		free(id);
}

/* An address inside the CIDR, and one just past its end. */
static void add_cidr(struct pools *p, const struct config_cidr *c)
{
	struct config_ip ip = c->ip;
	unsigned bits = c->ip.family == AF_INET ? 32u : 128u;

	add_ip(p, &ip);
	if (c->prefix > 0 && c->prefix <= bits) {
		unsigned b = c->prefix - 1u;
		ip.addr[b / 8] ^= (uint8_t)(0x80u >> (b % 8));
		add_ip(p, &ip);
	}
}

static void add_strings(struct pools *p, const struct config_string_match *m, size_t n, bool ns)
{
	for (size_t i = 0; i < n; i++) {
		const char *v = m[i].value ? m[i].value : "";
		add_id(p,
		       ns ? xasprintf("spiffe://td/ns/%s/sa/x", v) : xasprintf("spiffe://%s", v));
	}
}

static void collect_match(struct pools *p, const struct config_match *m)
{
	for (size_t i = 0; i < m->n_source_ips; i++)
		add_cidr(p, &m->source_ips[i]);
	for (size_t i = 0; i < m->n_not_source_ips; i++)
		add_cidr(p, &m->not_source_ips[i]);
	for (size_t i = 0; i < m->n_destination_ips; i++)
		add_cidr(p, &m->destination_ips[i]);
	for (size_t i = 0; i < m->n_destination_ports; i++)
		add_port(p, m->destination_ports[i]);
	for (size_t i = 0; i < m->n_not_destination_ports; i++)
		add_port(p, m->not_destination_ports[i]);
	add_strings(p, m->principals, m->n_principals, false);
	add_strings(p, m->not_principals, m->n_not_principals, false);
	add_strings(p, m->namespaces, m->n_namespaces, true);
	for (size_t i = 0; i < m->n_service_accounts; i++)
		add_id(p, xasprintf("spiffe://td/ns/%s/sa/%s", m->service_accounts[i].namespace,
				    m->service_accounts[i].service_account));
}

static void collect(struct pools *p, const struct config *c)
{
	static const char *const fixed_ips[] = {"10.0.0.1", "::1", "::ffff:10.0.0.2", "fd00::1"};
	size_t nw, np;
	const struct config_workload *w = config_workloads(c, &nw);
	const struct config_policy *po = config_policies(c, &np);

	for (size_t i = 0; i < ARRAY_LEN(fixed_ips); i++) {
		struct config_ip ip;
		if (config_ip_parse(fixed_ips[i], &ip) == 0)
			add_ip(p, &ip);
	}
	add_port(p, 8080);
	add_port(p, 15008);
	add_id(p, xstrdup(""));
	add_id(p, xstrdup("spiffe://"));
	add_id(p, xstrdup("cluster.local/ns/a/sa/b"));
	add_id(p, xstrdup("spiffe://td/ns/a/sa/b/c"));
	for (size_t i = 0; i < nw; i++) {
		for (size_t k = 0; k < w[i].n_workload_ips; k++)
			add_ip(p, &w[i].workload_ips[k]);
		add_id(p, xstrdup(w[i].identity));
	}
	for (size_t i = 0; i < np; i++)
		for (size_t r = 0; r < po[i].n_rules; r++)
			for (size_t k = 0; k < po[i].rules[r].n_clauses; k++)
				for (size_t m = 0; m < po[i].rules[r].clauses[k].n_matches; m++)
					collect_match(p, &po[i].rules[r].clauses[k].matches[m]);
}

/* ---- the reference: ztunnel's rbac.rs, transcribed with no shortcuts ------------------------- */

struct ref_id {
	bool some;	 /* Identity::from_str succeeded */
	const char *ns;	 /* its namespace, "" when none */
	const char *sa;	 /* its service account */
	const char *pid; /* principal: the string after spiffe://, NULL without the prefix */
	char *buf;	 /* owned copy split at '/' */
};

static void ref_id_init(struct ref_id *r, const char *id)
{
	char *parts[6];
	size_t n = 0;

	memset(r, 0, sizeof(*r));
	r->ns = "";
	if (!id || strncmp(id, "spiffe://", 9) != 0)
		return;
	r->pid = id + 9;
	r->buf = xstrdup(r->pid);
	parts[n++] = r->buf;
	for (char *s = r->buf; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (n < ARRAY_LEN(parts))
			parts[n++] = s + 1;
	}
	if (n == 5 && strcmp(parts[1], "ns") == 0 && strcmp(parts[3], "sa") == 0) {
		r->some = true;
		r->ns = parts[2];
		r->sa = parts[4];
	}
}

static bool ref_str(const struct config_string_match *m, const char *s)
{
	size_t vl = strlen(m->value), sl = strlen(s);
	switch (m->kind) {
	case CONFIG_MATCH_EXACT: return strcmp(m->value, s) == 0;
	case CONFIG_MATCH_PREFIX: return strncmp(s, m->value, vl) == 0;
	case CONFIG_MATCH_SUFFIX: return sl >= vl && strcmp(s + sl - vl, m->value) == 0;
	case CONFIG_MATCH_PRESENCE: return sl > 0;
	}
	abort();
}

static bool ref_sa(const struct config_sa_match *m, const struct ref_id *id)
{
	return strcmp(m->namespace, id->ns) == 0 && strcmp(m->service_account, id->sa) == 0;
}

/* matches_internal for one field; pred(i) evaluates element i of positive (neg=0) or negative. */
#define REF_FIELD(npos, nneg, pred)                                                                \
	do {                                                                                       \
		bool pm_ = true, nm_ = true;                                                       \
		if (npos) {                                                                        \
			pm_ = false;                                                               \
			for (size_t i = 0; i < (npos); i++) {                                      \
				const bool neg = false;                                            \
				(void)neg;                                                         \
				pm_ = pm_ || (pred);                                               \
			}                                                                          \
		}                                                                                  \
		if (nneg) {                                                                        \
			for (size_t i = 0; i < (nneg); i++) {                                      \
				const bool neg = true;                                             \
				(void)neg;                                                         \
				nm_ = nm_ && !(pred);                                              \
			}                                                                          \
		}                                                                                  \
		m = m && pm_ && nm_;                                                               \
	} while (0)

static bool ref_match(const struct config_match *g, const struct authz_conn *k,
		      const struct ref_id *id, const struct config_ip *src,
		      const struct config_ip *dst)
{
	bool m = true;

	REF_FIELD(g->n_destination_ips, g->n_not_destination_ips,
		  config_cidr_contains(neg ? &g->not_destination_ips[i] : &g->destination_ips[i],
				       dst));
	REF_FIELD(g->n_source_ips, g->n_not_source_ips,
		  config_cidr_contains(neg ? &g->not_source_ips[i] : &g->source_ips[i], src));
	REF_FIELD(g->n_destination_ports, g->n_not_destination_ports,
		  (neg ? g->not_destination_ports[i] : g->destination_ports[i]) == k->dst_port);
	REF_FIELD(g->n_service_accounts, g->n_not_service_accounts,
		  id->some &&
			  ref_sa(neg ? &g->not_service_accounts[i] : &g->service_accounts[i], id));
	REF_FIELD(g->n_principals, g->n_not_principals,
		  id->pid && ref_str(neg ? &g->not_principals[i] : &g->principals[i], id->pid));
	REF_FIELD(g->n_namespaces, g->n_not_namespaces,
		  ref_str(neg ? &g->not_namespaces[i] : &g->namespaces[i], id->ns));
	return m;
}

static bool ref_empty(const struct config_match *g)
{
	return !g->n_namespaces && !g->n_not_namespaces && !g->n_service_accounts &&
	       !g->n_not_service_accounts && !g->n_principals && !g->n_not_principals &&
	       !g->n_source_ips && !g->n_not_source_ips && !g->n_destination_ips &&
	       !g->n_not_destination_ips && !g->n_destination_ports && !g->n_not_destination_ports;
}

/* Authorization::matches; returns the first matching rule or -1. */
static long ref_policy(const struct config_policy *p, const struct authz_conn *k,
		       const struct ref_id *id, const struct config_ip *src,
		       const struct config_ip *dst)
{
	for (size_t r = 0; r < p->n_rules; r++) {
		bool rule_match = true;
		for (size_t c = 0; c < p->rules[r].n_clauses && rule_match; c++) {
			const struct config_clause *cl = &p->rules[r].clauses[c];
			bool clause_match = false;
			for (size_t g = 0; g < cl->n_matches && !clause_match; g++)
				if (!ref_empty(&cl->matches[g]) &&
				    ref_match(&cl->matches[g], k, id, src, dst))
					clause_match = true;
			if (cl->n_matches == 0)
				clause_match = true;
			rule_match = clause_match;
		}
		if (rule_match)
			return (long)r;
	}
	return -1;
}

/* assert_rbac over the applicable list, dry-run policies left out. */
static enum authz_verdict ref_assert(const struct config_policy *const *list, size_t n,
				     const struct authz_conn *k, const struct ref_id *id,
				     const struct config_ip *src, const struct config_ip *dst,
				     const struct config_policy **by, long *rule)
{
	size_t n_allow = 0;

	*by = NULL;
	*rule = -1;
	for (size_t i = 0; i < n; i++)
		if (!list[i]->dry_run && list[i]->action == CONFIG_ACTION_DENY &&
		    (*rule = ref_policy(list[i], k, id, src, dst)) >= 0) {
			*by = list[i];
			return AUTHZ_DENY;
		}
	for (size_t i = 0; i < n; i++)
		n_allow += !list[i]->dry_run && list[i]->action == CONFIG_ACTION_ALLOW;
	if (n_allow == 0)
		return AUTHZ_ALLOW;
	for (size_t i = 0; i < n; i++)
		if (!list[i]->dry_run && list[i]->action == CONFIG_ACTION_ALLOW &&
		    (*rule = ref_policy(list[i], k, id, src, dst)) >= 0) {
			*by = list[i];
			return AUTHZ_ALLOW;
		}
	*rule = -1;
	return AUTHZ_DENY;
}

/* The applicable list (namespace, global, selector; repeats removed), then ref_assert. Returns an
 * enum authz_verdict, or -1 when the list is too long to compare. */
static int ref_decide(const struct config *c, const struct config_workload *w,
		      const struct authz_conn *k, const struct config_policy **by, long *rule)
{
	const struct config_policy *list[512] = {0};
	size_t n = 0, nn, ng;
	enum authz_verdict v;
	const struct config_policy *const *nsl = config_policies_by_namespace(c, w->namespace, &nn);
	const struct config_policy *const *gl = config_policies_global(c, &ng);
	struct ref_id id;
	struct config_ip src = k->src_ip, dst = k->dst_ip;
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	for (struct config_ip *ip = &src; ip; ip = ip == &src ? &dst : NULL)
		if (ip->family == AF_INET6 && memcmp(ip->addr, mapped, 12) == 0) {
			memmove(ip->addr, ip->addr + 12, 4);
			memset(ip->addr + 4, 0, 12);
			ip->family = AF_INET;
		}
	if (nn + ng + w->n_authorization_policies > ARRAY_LEN(list))
		return -1; /* too many to compare */
	ref_id_init(&id, k->src_identity);
	for (size_t i = 0; i < nn + ng + w->n_authorization_policies; i++) {
		const struct config_policy *p = i < nn	      ? nsl[i]
						: i < nn + ng ? gl[i - nn]
							      : w->policies[i - nn - ng];
		bool dup = false;
		for (size_t j = 0; j < n; j++)
			dup = dup || list[j] == p;
		if (!dup)
			list[n++] = p;
	}
	v = ref_assert(list, n, k, &id, &src, &dst, by, rule);
	free(id.buf);
	return (int)v;
}

/* ---- checks ---------------------------------------------------------------------------------- */

static void check_hit(const struct authz_hit *h)
{
	if (!h->policy || h->rule >= h->policy->n_rules)
		abort();
}

static void check_result(const struct authz_result *r)
{
	char big[AUTHZ_REASON_MAX * 4], small[7];
	size_t n;

	switch (r->reason) {
	case AUTHZ_REASON_DENY_MATCHED:
	case AUTHZ_REASON_ALLOW_MATCHED:
		check_hit(&r->decided);
		if (r->decided.policy->dry_run ||
		    (r->decided.policy->action == CONFIG_ACTION_DENY) !=
			    (r->reason == AUTHZ_REASON_DENY_MATCHED) ||
		    r->verdict !=
			    (r->reason == AUTHZ_REASON_DENY_MATCHED ? AUTHZ_DENY : AUTHZ_ALLOW))
			abort();
		break;
	case AUTHZ_REASON_NO_ALLOW_POLICIES:
		if (r->decided.policy || r->verdict != AUTHZ_ALLOW || r->n_allow_policies)
			abort();
		break;
	case AUTHZ_REASON_NONE_ALLOWED:
		if (r->decided.policy || r->verdict != AUTHZ_DENY || !r->n_allow_policies)
			abort();
		break;
	default: abort();
	}
	if (r->n_dry_run > AUTHZ_MAX_DRY_RUN_HITS || r->n_dry_run > r->n_dry_run_total ||
	    r->n_dry_run_total > r->n_dry_run_policies)
		abort();
	for (size_t i = 0; i < r->n_dry_run; i++) {
		check_hit(&r->dry_run[i]);
		if (!r->dry_run[i].policy->dry_run)
			abort();
	}
	if (r->n_dry_run_policies == 0 &&
	    (r->dry_run_verdict != r->verdict || r->dry_run_reason != r->reason ||
	     r->dry_run_decided.policy != r->decided.policy))
		abort();
	if (r->verdict == AUTHZ_DENY && r->reason == AUTHZ_REASON_DENY_MATCHED &&
	    r->dry_run_verdict != AUTHZ_DENY)
		abort();
	if (r->dry_run_decided.policy)
		check_hit(&r->dry_run_decided);
	n = authz_result_format(r, big, sizeof(big));
	if (n >= sizeof(big) || strlen(big) != n ||
	    authz_result_format(r, small, sizeof(small)) != n ||
	    strlen(small) != MIN(n, sizeof(small) - 1) || authz_result_format(r, NULL, 0) != n)
		abort();
	n = authz_rejection_format(r, big, sizeof(big));
	if ((n == 0) != (r->verdict == AUTHZ_ALLOW))
		abort();
}

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void check_conn(const struct config *c, const struct config_workload *w,
		       const struct authz_conn *k)
{
	struct authz_result r, again;
	const struct config_policy *by;
	long rule;
	int want;

	if (authz_check(c, w, k, &r) != 0)
		abort();
	check_result(&r);
	want = ref_decide(c, w, k, &by, &rule);
	if (want >= 0 && ((enum authz_verdict)want != r.verdict || by != r.decided.policy ||
			  (by && (size_t)rule != r.decided.rule)))
		abort();
	/* Re-checking against the same snapshot is the same evaluation. */
	if (authz_recheck(c, w, k, &again) != 0 || again.verdict != r.verdict ||
	    again.reason != r.reason || again.decided.policy != r.decided.policy ||
	    again.decided.rule != r.decided.rule || again.n_dry_run_total != r.n_dry_run_total)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errlist errs = {0};
	struct config *c = config_parse("fuzz.json", (const char *)data, size, 1, &errs);
	struct pools p = {0};
	uint64_t seed = 0xcbf29ce484222325ull;
	size_t nw;
	const struct config_workload *w;

	errlist_fini(&errs);
	if (!c)
		return 0;
	for (size_t i = 0; i < size; i++)
		seed = (seed ^ data[i]) * 0x100000001b3ull;
	seed |= 1;
	collect(&p, c);
	w = config_workloads(c, &nw);
	for (size_t i = 0; i < nw && i < 64; i++) {
		for (int j = 0; j < CONNS_PER_WORKLOAD; j++) {
			struct authz_conn k = {0};
			uint64_t r = next_rand(&seed);

			k.src_ip = p.ips[r % p.n_ips];
			k.dst_ip = w[i].n_workload_ips
					   ? w[i].workload_ips[(r >> 8) % w[i].n_workload_ips]
					   : p.ips[(r >> 8) % p.n_ips];
			k.src_port = (uint16_t)(r >> 16);
			k.dst_port = p.ports[(r >> 32) % p.n_ports];
			k.src_identity = (r >> 40) % 8 == 0 ? NULL : p.ids[(r >> 44) % p.n_ids];
			check_conn(c, &w[i], &k);
		}
	}
	for (size_t i = 0; i < p.n_ids; i++)
		free(p.ids[i]);
	config_unref(c);
	return 0;
}
