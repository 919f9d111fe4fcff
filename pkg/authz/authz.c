/* L4 authorization: ztunnel's policy matching and decision order over a config snapshot. */
#include "pkg/authz/authz.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define SPIFFE_SCHEME "spiffe://"
#define SPIFFE_SCHEME_LEN (sizeof(SPIFFE_SCHEME) - 1)

/* ---- identities ------------------------------------------------------------------------------ */

static bool slice_is(struct slice s, const char *lit)
{
	size_t n = strlen(lit);

	return s.n == n && memcmp(s.p, lit, n) == 0;
}

int authz_identity_parse(const char *id, struct authz_identity *out)
{
	struct slice part[5];
	const char *p, *end;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	if (!id || !*id)
		return -E_INVAL;
	out->present = true;
	/* matches_principal: an identity without the scheme matches no principal at all. */
	if (strncmp(id, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) != 0)
		return -E_INVAL;
	p = id + SPIFFE_SCHEME_LEN;
	end = p + strlen(p);
	out->principal = (struct slice){(const uint8_t *)p, (size_t)(end - p)};
	for (;;) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		const char *e = slash ? slash : end;

		if (n == ARRAY_LEN(part))
			return -E_INVAL; /* more than five parts */
		part[n++] = (struct slice){(const uint8_t *)p, (size_t)(e - p)};
		if (!slash)
			break;
		p = slash + 1;
	}
	if (n != 5 || !slice_is(part[1], "ns") || !slice_is(part[3], "sa"))
		return -E_INVAL;
	out->istio = true;
	out->trust_domain = part[0];
	out->namespace = part[2];
	out->service_account = part[4];
	return 0;
}

/* ---- matching -------------------------------------------------------------------------------- */

/* Everything a Match looks at, derived once per evaluation. */
struct eval {
	struct config_ip src, dst;
	uint16_t dst_port;
	struct authz_identity id;
	struct slice ns; /* the identity's namespace, or "" (ztunnel's unwrap_or_default) */
};

/* A v4-mapped address from a dual-stack socket compares as v4, like the addresses in policies. */
static struct config_ip canon_ip(const struct config_ip *ip)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	struct config_ip out = *ip;

	if (ip->family == AF_INET6 && memcmp(ip->addr, mapped, sizeof(mapped)) == 0) {
		memset(&out, 0, sizeof(out));
		out.family = AF_INET;
		memcpy(out.addr, ip->addr + 12, 4);
	}
	return out;
}

static bool str_match(const struct config_string_match *m, struct slice s)
{
	const char *v = m->value ? m->value : "";
	size_t vl;

	if (m->kind == CONFIG_MATCH_PRESENCE)
		return s.n > 0;
	vl = strlen(v);
	if (vl > s.n)
		return false;
	if (vl == 0)
		return m->kind != CONFIG_MATCH_EXACT || s.n == 0;
	switch (m->kind) {
	case CONFIG_MATCH_EXACT: return vl == s.n && memcmp(s.p, v, vl) == 0;
	case CONFIG_MATCH_PREFIX: return memcmp(s.p, v, vl) == 0;
	case CONFIG_MATCH_SUFFIX: return memcmp(s.p + s.n - vl, v, vl) == 0;
	default: return false;
	}
}

static bool any_str(const struct config_string_match *l, size_t n, struct slice s)
{
	for (size_t i = 0; i < n; i++)
		if (str_match(&l[i], s))
			return true;
	return false;
}

static bool any_principal(const struct config_string_match *l, size_t n,
			  const struct authz_identity *id)
{
	return id->principal.p && any_str(l, n, id->principal);
}

static bool any_sa(const struct config_sa_match *l, size_t n, const struct authz_identity *id)
{
	if (!id->istio)
		return false; /* ServiceAccountMatch::matches: no identity, no match */
	for (size_t i = 0; i < n; i++)
		if (l[i].namespace && l[i].service_account &&
		    slice_is(id->namespace, l[i].namespace) &&
		    slice_is(id->service_account, l[i].service_account))
			return true;
	return false;
}

/* config_cidr_contains, a byte at a time. */
static bool cidr_contains(const struct config_cidr *c, const struct config_ip *ip)
{
	unsigned full, rest, max = ip->family == AF_INET ? 32u : 128u;

	if (c->ip.family != ip->family || c->prefix > max)
		return false;
	full = c->prefix / 8u;
	rest = c->prefix % 8u;
	if (memcmp(c->ip.addr, ip->addr, full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xffu << (8u - rest));
		if ((c->ip.addr[full] & mask) != (ip->addr[full] & mask))
			return false;
	}
	return true;
}

static bool any_cidr(const struct config_cidr *l, size_t n, const struct config_ip *ip)
{
	for (size_t i = 0; i < n; i++)
		if (cidr_contains(&l[i], ip))
			return true;
	return false;
}

static bool any_port(const uint16_t *l, size_t n, uint16_t port)
{
	for (size_t i = 0; i < n; i++)
		if (l[i] == port)
			return true;
	return false;
}

/* RbacMatch::is_empty: such a Match is skipped, so it can never satisfy its clause. */
static bool match_empty(const struct config_match *m)
{
	return !(m->n_namespaces | m->n_not_namespaces | m->n_service_accounts |
		 m->n_not_service_accounts | m->n_principals | m->n_not_principals |
		 m->n_source_ips | m->n_not_source_ips | m->n_destination_ips |
		 m->n_not_destination_ips | m->n_destination_ports | m->n_not_destination_ports);
}

/* Every populated list passes: a positive one when any element matches, a negative one when none
 * does. (An empty negative list matches nothing, so it always passes.) */
static bool match_eval(const struct config_match *m, const struct eval *e)
{
	if (m->n_destination_ips && !any_cidr(m->destination_ips, m->n_destination_ips, &e->dst))
		return false;
	if (any_cidr(m->not_destination_ips, m->n_not_destination_ips, &e->dst))
		return false;
	if (m->n_source_ips && !any_cidr(m->source_ips, m->n_source_ips, &e->src))
		return false;
	if (any_cidr(m->not_source_ips, m->n_not_source_ips, &e->src))
		return false;
	if (m->n_destination_ports &&
	    !any_port(m->destination_ports, m->n_destination_ports, e->dst_port))
		return false;
	if (any_port(m->not_destination_ports, m->n_not_destination_ports, e->dst_port))
		return false;
	if (m->n_service_accounts && !any_sa(m->service_accounts, m->n_service_accounts, &e->id))
		return false;
	if (any_sa(m->not_service_accounts, m->n_not_service_accounts, &e->id))
		return false;
	if (m->n_principals && !any_principal(m->principals, m->n_principals, &e->id))
		return false;
	if (any_principal(m->not_principals, m->n_not_principals, &e->id))
		return false;
	if (m->n_namespaces && !any_str(m->namespaces, m->n_namespaces, e->ns))
		return false;
	if (any_str(m->not_namespaces, m->n_not_namespaces, e->ns))
		return false;
	return true;
}

/* A clause is the OR of its Matches; an empty clause is true. */
static bool clause_eval(const struct config_clause *cl, const struct eval *e)
{
	if (cl->n_matches == 0)
		return true;
	for (size_t i = 0; i < cl->n_matches; i++)
		if (!match_empty(&cl->matches[i]) && match_eval(&cl->matches[i], e))
			return true;
	return false;
}

/* A rule is the AND of its clauses (none: true); a policy the OR of its rules (none: false). */
static bool policy_eval(const struct config_policy *p, const struct eval *e, size_t *rule)
{
	for (size_t r = 0; r < p->n_rules; r++) {
		const struct config_rule *ru = &p->rules[r];
		size_t c = 0;

		while (c < ru->n_clauses && clause_eval(&ru->clauses[c], e))
			c++;
		if (c == ru->n_clauses) {
			*rule = r;
			return true;
		}
	}
	return false;
}

/* ---- the applicable set ---------------------------------------------------------------------- */

/* Namespace policies, then Global ones, then the selector list, without repeats. */
struct pset {
	const struct config *c;
	const char *ns; /* the destination's namespace */
	const struct config_policy *const *nsl;
	size_t n_ns;
	const struct config_policy *const *gl;
	size_t n_gl;
	const struct config_policy *const *sel;
	size_t n_sel;
	bool sel_foreign; /* sel points into another snapshot: resolve by name in c */
};

static const struct config_policy *resolve(const struct config *c, const struct config_policy *old)
{
	const struct config_policy *all;
	size_t n;

	if (!old->namespace || !old->name)
		return NULL;
	/* config_policy_by_key builds "ns/name" on the stack up to 256 bytes, else allocates. */
	if (strlen(old->namespace) + strlen(old->name) + 2 <= 256)
		return config_policy_by_key(c, old->namespace, old->name);
	all = config_policies(c, &n);
	for (size_t i = 0; i < n; i++)
		if (strcmp(all[i].namespace, old->namespace) == 0 &&
		    strcmp(all[i].name, old->name) == 0)
			return &all[i];
	return NULL;
}

static const struct config_policy *sel_get(const struct pset *s, size_t k)
{
	const struct config_policy *p = s->sel[k];

	return p && s->sel_foreign ? resolve(s->c, p) : p;
}

static size_t pset_len(const struct pset *s)
{
	return s->n_ns + s->n_gl + s->n_sel;
}

/* Slot i of the set, or NULL when it is missing or repeats a policy of an earlier slot. */
static const struct config_policy *pset_get(const struct pset *s, size_t i)
{
	const struct config_policy *p;

	if (i < s->n_ns)
		return s->nsl[i];
	i -= s->n_ns;
	if (i < s->n_gl)
		return s->gl[i];
	i -= s->n_gl;
	p = sel_get(s, i);
	if (!p || p->scope == CONFIG_SCOPE_GLOBAL ||
	    (p->scope == CONFIG_SCOPE_NAMESPACE && strcmp(p->namespace, s->ns) == 0))
		return NULL; /* missing, or already in the namespace or global list */
	for (size_t k = 0; k < i; k++)
		if (sel_get(s, k) == p)
			return NULL;
	return p;
}

/* ---- the decision ---------------------------------------------------------------------------- */

static void result_reset(struct authz_result *r)
{
	memset(r, 0, sizeof(*r));
	r->verdict = AUTHZ_DENY;
	r->reason = AUTHZ_REASON_NONE_ALLOWED;
	r->dry_run_verdict = AUTHZ_DENY;
	r->dry_run_reason = AUTHZ_REASON_NONE_ALLOWED;
}

static void set_decision(struct authz_result *r, enum authz_verdict v, enum authz_reason why,
			 struct authz_hit hit)
{
	r->verdict = v;
	r->reason = why;
	r->decided = hit;
}

static void set_dry_decision(struct authz_result *r, enum authz_verdict v, enum authz_reason why,
			     struct authz_hit hit)
{
	r->dry_run_verdict = v;
	r->dry_run_reason = why;
	r->dry_run_decided = hit;
}

static void add_dry_hit(struct authz_result *r, const struct config_policy *p, size_t rule)
{
	if (r->n_dry_run < AUTHZ_MAX_DRY_RUN_HITS)
		r->dry_run[r->n_dry_run++] = (struct authz_hit){p, rule};
	r->n_dry_run_total++;
}

/* Position in the set and rule of the first match of a kind; pos == SIZE_MAX: none. */
struct first {
	size_t pos;
	struct authz_hit hit;
};
#define FIRST_NONE ((struct first){.pos = SIZE_MAX})

/* Counts the applicable policies by kind (for the result; evaluates nothing). */
static void count_pass(const struct pset *s, struct authz_result *r, size_t *n_dry_allow)
{
	for (size_t i = 0, n = pset_len(s); i < n; i++) {
		const struct config_policy *p = pset_get(s, i);

		if (!p)
			continue;
		if (p->dry_run) {
			r->n_dry_run_policies++;
			*n_dry_allow += p->action == CONFIG_ACTION_ALLOW;
		} else if (p->action == CONFIG_ACTION_DENY) {
			r->n_deny_policies++;
		} else {
			r->n_allow_policies++;
		}
	}
}

/* Evaluates every dry-run policy of one action, recording the hits. */
static struct first dry_pass(const struct pset *s, const struct eval *e, struct authz_result *r,
			     enum config_policy_action action)
{
	struct first f = FIRST_NONE;

	if (r->n_dry_run_policies == 0)
		return f;
	for (size_t i = 0, n = pset_len(s); i < n; i++) {
		const struct config_policy *p = pset_get(s, i);
		size_t rule;

		if (!p || !p->dry_run || p->action != action || !policy_eval(p, e, &rule))
			continue;
		add_dry_hit(r, p, rule);
		if (f.pos == SIZE_MAX)
			f = (struct first){i, {p, rule}};
	}
	return f;
}

/* The first enforced policy of this action that matches. */
static struct first enforced_pass(const struct pset *s, const struct eval *e,
				  enum config_policy_action action)
{
	for (size_t i = 0, n = pset_len(s); i < n; i++) {
		const struct config_policy *p = pset_get(s, i);
		size_t rule;

		if (p && p->action == action && !p->dry_run && policy_eval(p, e, &rule))
			return (struct first){i, {p, rule}};
	}
	return FIRST_NONE;
}

static struct first earlier(struct first a, struct first b)
{
	return b.pos < a.pos ? b : a;
}

static void decide(const struct pset *s, const struct eval *e, struct authz_result *r)
{
	static const struct authz_hit none = {0};
	size_t n_dry_allow = 0;
	struct first dry_deny, deny, dry_allow, allow;

	count_pass(s, r, &n_dry_allow);
	/* 1. dry-run DENY: logged only. */
	dry_deny = dry_pass(s, e, r, CONFIG_ACTION_DENY);
	/* 2. any matching DENY rejects. */
	deny = r->n_deny_policies ? enforced_pass(s, e, CONFIG_ACTION_DENY) : FIRST_NONE;
	if (deny.pos != SIZE_MAX) {
		set_decision(r, AUTHZ_DENY, AUTHZ_REASON_DENY_MATCHED, deny.hit);
		set_dry_decision(r, AUTHZ_DENY, AUTHZ_REASON_DENY_MATCHED,
				 earlier(deny, dry_deny).hit);
		return;
	}
	/* 3. dry-run ALLOW: logged only. */
	dry_allow = dry_pass(s, e, r, CONFIG_ACTION_ALLOW);
	/* 4.-6. no ALLOW policies: allow; a matching ALLOW: allow; else deny. */
	allow = r->n_allow_policies ? enforced_pass(s, e, CONFIG_ACTION_ALLOW) : FIRST_NONE;
	if (r->n_allow_policies == 0)
		set_decision(r, AUTHZ_ALLOW, AUTHZ_REASON_NO_ALLOW_POLICIES, none);
	else if (allow.pos != SIZE_MAX)
		set_decision(r, AUTHZ_ALLOW, AUTHZ_REASON_ALLOW_MATCHED, allow.hit);
	else
		set_decision(r, AUTHZ_DENY, AUTHZ_REASON_NONE_ALLOWED, none);

	/* The same steps with the dry-run policies enforced as well. */
	if (dry_deny.pos != SIZE_MAX)
		set_dry_decision(r, AUTHZ_DENY, AUTHZ_REASON_DENY_MATCHED, dry_deny.hit);
	else if (r->n_allow_policies + n_dry_allow == 0)
		set_dry_decision(r, AUTHZ_ALLOW, AUTHZ_REASON_NO_ALLOW_POLICIES, none);
	else if (earlier(allow, dry_allow).pos != SIZE_MAX)
		set_dry_decision(r, AUTHZ_ALLOW, AUTHZ_REASON_ALLOW_MATCHED,
				 earlier(allow, dry_allow).hit);
	else
		set_dry_decision(r, AUTHZ_DENY, AUTHZ_REASON_NONE_ALLOWED, none);
}

static void eval_init(struct eval *e, const struct authz_conn *conn)
{
	static const uint8_t empty[1] = {0};

	e->src = canon_ip(&conn->src_ip);
	e->dst = canon_ip(&conn->dst_ip);
	e->dst_port = conn->dst_port;
	authz_identity_parse(conn->src_identity, &e->id);
	e->ns = e->id.istio ? e->id.namespace : (struct slice){empty, 0};
}

static int check(struct pset *s, const struct authz_conn *conn, struct authz_result *res)
{
	struct eval e;

	eval_init(&e, conn);
	s->nsl = config_policies_by_namespace(s->c, s->ns, &s->n_ns);
	s->gl = config_policies_global(s->c, &s->n_gl);
	decide(s, &e, res);
	return 0;
}

int authz_check(const struct config *c, const struct config_workload *dst,
		const struct authz_conn *conn, struct authz_result *res)
{
	struct pset s = {0};

	if (!res)
		return -E_INVAL;
	result_reset(res);
	if (!c || !dst || !conn || !dst->namespace)
		return -E_INVAL;
	s.c = c;
	s.ns = dst->namespace;
	s.sel = dst->policies;
	s.n_sel = dst->policies ? dst->n_authorization_policies : 0;
	return check(&s, conn, res);
}

int authz_recheck(const struct config *next, const struct config_workload *old_dst,
		  const struct authz_conn *conn, struct authz_result *res)
{
	const struct config_workload *now;

	if (!res)
		return -E_INVAL;
	result_reset(res);
	if (!next || !old_dst || !conn || !old_dst->namespace)
		return -E_INVAL;
	now = config_workload_by_uid(next, old_dst->uid);
	if (now)
		return authz_check(next, now, conn, res);
	return check(
		&(struct pset){.c = next,
			       .ns = old_dst->namespace,
			       .sel = old_dst->policies,
			       .n_sel = old_dst->policies ? old_dst->n_authorization_policies : 0,
			       .sel_foreign = true},
		conn, res);
}

/* ---- rendering ------------------------------------------------------------------------------- */

const char *authz_verdict_name(enum authz_verdict v)
{
	return v == AUTHZ_ALLOW ? "allow" : "deny";
}

/* snprintf into a fixed buffer that keeps counting past its end. */
struct out {
	char *p;
	size_t cap, len;
};

__attribute__((format(printf, 2, 3))) static void outf(struct out *o, const char *fmt, ...)
{
	size_t room = o->len < o->cap ? o->cap - o->len : 0;
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(room ? o->p + o->len : NULL, room, fmt, ap);
	va_end(ap);
	if (k > 0)
		o->len += (size_t)k;
}

static void out_start(struct out *o, char *p, size_t cap)
{
	*o = (struct out){p, p ? cap : 0, 0};
	if (o->cap)
		o->p[0] = '\0';
}

static void out_policy(struct out *o, const struct config_policy *p)
{
	outf(o, "%s/%s", p->namespace ? p->namespace : "", p->name ? p->name : "");
}

static void out_decision(struct out *o, enum authz_reason why, const struct authz_hit *hit)
{
	switch (why) {
	case AUTHZ_REASON_DENY_MATCHED:
	case AUTHZ_REASON_ALLOW_MATCHED:
		outf(o, "%s by policy ", why == AUTHZ_REASON_DENY_MATCHED ? "denied" : "allowed");
		if (hit->policy)
			out_policy(o, hit->policy);
		else
			outf(o, "?");
		outf(o, " rule %zu", hit->rule);
		break;
	case AUTHZ_REASON_NO_ALLOW_POLICIES: outf(o, "allowed: no ALLOW policies"); break;
	case AUTHZ_REASON_NONE_ALLOWED:
	default: outf(o, "denied: allow policies exist, but none allowed"); break;
	}
}

static void out_dry_run(struct out *o, const struct authz_result *r)
{
	if (r->n_dry_run_total == 0 && r->dry_run_verdict == r->verdict)
		return;
	outf(o, "; dry-run would %s: ", authz_verdict_name(r->dry_run_verdict));
	if (r->n_dry_run == 0) {
		/* Only a dry-run ALLOW that matched nothing can flip the verdict without a hit. */
		outf(o, "allow policies exist, but none allowed");
		return;
	}
	for (size_t i = 0; i < r->n_dry_run && i < AUTHZ_MAX_DRY_RUN_HITS; i++) {
		const struct config_policy *p = r->dry_run[i].policy;

		outf(o, "%s%s ", i ? ", " : "", p->action == CONFIG_ACTION_DENY ? "DENY" : "ALLOW");
		out_policy(o, p);
		outf(o, " rule %zu matched", r->dry_run[i].rule);
	}
	if (r->n_dry_run_total > r->n_dry_run)
		outf(o, " (+%zu more)", r->n_dry_run_total - r->n_dry_run);
}

size_t authz_result_format(const struct authz_result *r, char *out, size_t cap)
{
	struct out o;

	out_start(&o, out, cap);
	out_decision(&o, r->reason, &r->decided);
	out_dry_run(&o, r);
	return o.len;
}

size_t authz_rejection_format(const struct authz_result *r, char *out, size_t cap)
{
	struct out o;

	out_start(&o, out, cap);
	if (r->verdict == AUTHZ_ALLOW)
		return 0;
	if (r->reason == AUTHZ_REASON_DENY_MATCHED && r->decided.policy) {
		outf(&o, "explicitly denied by: ");
		out_policy(&o, r->decided.policy);
	} else {
		outf(&o, "allow policies exist, but none allowed");
	}
	return o.len;
}
