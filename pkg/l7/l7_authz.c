/* Istio L7 authorization for the waypoint (reference/waypoint-ca-ctl.md §1): targetRefs policies,
 * ALLOW/DENY/AUDIT in Istio's order, string matching and {*} / {**} path templates. */
#include "pkg/l7/l7.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool eq(const char *a, size_t an, const char *b, size_t bn, bool nocase)
{
	return an == bn && (nocase ? strncasecmp(a, b, an) == 0 : memcmp(a, b, an) == 0);
}

bool l7_string_match(const char *pattern, const char *value, bool nocase)
{
	size_t pn = strlen(pattern), vn = strlen(value);

	if (pn == 1 && pattern[0] == '*')
		return vn > 0; /* presence: any non-empty value */
	if (pn > 0 && pattern[pn - 1] == '*')
		return vn >= pn - 1 && eq(pattern, pn - 1, value, pn - 1, nocase);
	if (pn > 0 && pattern[0] == '*')
		return vn >= pn - 1 &&
		       eq(pattern + 1, pn - 1, value + vn - (pn - 1), pn - 1, nocase);
	return eq(pattern, pn, value, vn, nocase);
}

/* Segment-wise template match: "{*}" one non-empty segment, "{**}" (last) the rest, possibly
 * empty segments ("/foo/{**}/" matches "/foo//"). */
static bool template_match(const char *pat, const char *path)
{
	while (*pat && *path) {
		const char *pe, *se;
		size_t pl, sl;

		if (*pat != '/' || *path != '/')
			return false;
		pat++;
		path++;
		pe = strchr(pat, '/');
		pl = pe ? (size_t)(pe - pat) : strlen(pat);
		if (pl == 4 && memcmp(pat, "{**}", 4) == 0) {
			/* Zero or more segments, then what follows it in the pattern. Istio's own
			 * examples have "/foo/{**}/" match "/foo/bar/", "/foo//" and
			 * "/foo/bar/baz.txt", so the tail is found anywhere in the rest. */
			const char *tail = pat + 4;
			return !*tail || strstr(path, tail) != NULL;
		}
		se = strchr(path, '/');
		sl = se ? (size_t)(se - path) : strlen(path);
		if (pl == 3 && memcmp(pat, "{*}", 3) == 0) {
			if (sl == 0)
				return false;
		} else if (pl != sl || memcmp(pat, path, pl) != 0) {
			return false;
		}
		pat += pl;
		path += sl;
	}
	return *pat == '\0' && *path == '\0';
}

bool l7_path_match(const char *pattern, const char *path)
{
	if (strstr(pattern, "{*"))
		return template_match(pattern, path);
	return l7_string_match(pattern, path, false);
}

typedef bool (*match_fn)(const char *pattern, const char *value);

static bool m_exact(const char *p, const char *v)
{
	return l7_string_match(p, v, false);
}

static bool m_host(const char *p, const char *v)
{
	/* Istio matches the Host with and without its port. */
	const char *colon = strrchr(v, ':');
	char bare[256];

	if (l7_string_match(p, v, true))
		return true;
	if (!colon || v[0] == '[' || (size_t)(colon - v) >= sizeof(bare))
		return false;
	snprintf(bare, sizeof(bare), "%.*s", (int)(colon - v), v);
	return l7_string_match(p, bare, true);
}

static bool m_path(const char *p, const char *v)
{
	return l7_path_match(p, v);
}

/* A positive list passes when empty or any element matches; a negative one when none does. */
static bool list_ok(const char *const *pos, size_t np, const char *const *neg, size_t nn,
		    const char *value, match_fn fn)
{
	bool ok = np == 0;

	for (size_t i = 0; i < np && !ok; i++)
		ok = fn(pos[i], value);
	for (size_t i = 0; i < nn && ok; i++)
		ok = !fn(neg[i], value);
	return ok;
}

static bool cidr_list_any(const struct config_cidr *c, size_t n, const struct config_ip *ip)
{
	for (size_t i = 0; ip && i < n; i++)
		if (config_cidr_contains(&c[i], ip))
			return true;
	return false;
}

static bool source_matches(const struct config_l7_source *s, const struct l7_request *req)
{
	char ns[256];

	l7_principal_namespace(req->source_principal, ns, sizeof(ns));
	if (!list_ok(s->principals, s->n_principals, s->not_principals, s->n_not_principals,
		     req->source_principal, m_exact))
		return false;
	if (!list_ok(s->namespaces, s->n_namespaces, s->not_namespaces, s->n_not_namespaces, ns,
		     m_exact))
		return false;
	if (s->n_ip_blocks && !cidr_list_any(s->ip_blocks, s->n_ip_blocks, req->source_ip))
		return false;
	if (s->n_not_ip_blocks &&
	    cidr_list_any(s->not_ip_blocks, s->n_not_ip_blocks, req->source_ip))
		return false;
	return true;
}

static bool operation_matches(const struct config_l7_operation *o, const struct l7_request *req)
{
	char port[8], path[L7_PATH_MAX];
	const char *q;

	snprintf(port, sizeof(port), "%u", req->dest_port);
	if (req->tcp) /* HTTP-only fields are ignored here (DENY/AUDIT; ALLOW skips the rule) */
		return list_ok(o->ports, o->n_ports, o->not_ports, o->n_not_ports, port, m_exact);
	q = strchr(req->path, '?');
	snprintf(path, sizeof(path), "%.*s", (int)(q ? (size_t)(q - req->path) : strlen(req->path)),
		 req->path);
	return list_ok(o->hosts, o->n_hosts, o->not_hosts, o->n_not_hosts, req->host, m_host) &&
	       list_ok(o->ports, o->n_ports, o->not_ports, o->n_not_ports, port, m_exact) &&
	       list_ok(o->methods, o->n_methods, o->not_methods, o->n_not_methods, req->method,
		       m_exact) &&
	       list_ok(o->paths, o->n_paths, o->not_paths, o->n_not_paths, path, m_path);
}

static bool ip_value_match(const char *p, const char *v)
{
	struct config_cidr c;
	struct config_ip ip;

	if (config_cidr_parse(p, &c) < 0 || config_ip_parse(v, &ip) < 0)
		return false;
	return config_cidr_contains(&c, &ip);
}

static bool condition_matches(const struct config_l7_condition *w, const struct l7_request *req)
{
	char value[1024] = "";
	match_fn fn = m_exact;

	if (strncmp(w->key, "request.headers[", 16) == 0) {
		if (req->tcp)
			return true; /* HTTP-only: ignored (DENY/AUDIT; ALLOW skips the rule) */
		size_t n = strlen(w->key) - 17;
		char name[256];
		snprintf(name, sizeof(name), "%.*s", (int)n, w->key + 16);
		for (size_t i = 0; i < req->n_headers; i++) {
			if (req->headers[i].name.n == strlen(name) &&
			    strncasecmp((const char *)req->headers[i].name.p, name,
					req->headers[i].name.n) == 0) {
				snprintf(value, sizeof(value), "%.*s", (int)req->headers[i].value.n,
					 (const char *)req->headers[i].value.p);
				break;
			}
		}
	} else if (strcmp(w->key, "source.ip") == 0) {
		if (req->source_ip)
			config_ip_format(req->source_ip, value, sizeof(value));
		fn = ip_value_match;
	} else if (strcmp(w->key, "source.namespace") == 0) {
		l7_principal_namespace(req->source_principal, value, sizeof(value));
	} else if (strcmp(w->key, "source.principal") == 0) {
		snprintf(value, sizeof(value), "%s", req->source_principal);
	} else if (strcmp(w->key, "destination.port") == 0) {
		snprintf(value, sizeof(value), "%u", req->dest_port);
	} else {
		return false; /* rejected by the config; never matches */
	}
	return list_ok(w->values, w->n_values, w->not_values, w->n_not_values, value, fn);
}

bool l7_rule_has_http(const struct config_l7_rule *r)
{
	for (size_t i = 0; i < r->n_to; i++) {
		const struct config_l7_operation *o = &r->to[i].operation;
		if (o->n_hosts || o->n_not_hosts || o->n_methods || o->n_not_methods ||
		    o->n_paths || o->n_not_paths)
			return true;
	}
	for (size_t i = 0; i < r->n_when; i++)
		if (strncmp(r->when[i].key, "request.headers[", 16) == 0)
			return true;
	return false;
}

static bool rule_matches(const struct config_l7_rule *r, const struct l7_request *req)
{
	bool from = r->n_from == 0, to = r->n_to == 0;

	for (size_t i = 0; i < r->n_from && !from; i++)
		from = source_matches(&r->from[i].source, req);
	for (size_t i = 0; i < r->n_to && !to; i++)
		to = operation_matches(&r->to[i].operation, req);
	if (!from || !to)
		return false;
	for (size_t i = 0; i < r->n_when; i++)
		if (!condition_matches(&r->when[i], req))
			return false;
	return true;
}

bool l7_rule_matches(const struct config_l7_rule *r, const struct l7_request *req)
{
	if (req->tcp && l7_rule_has_http(r))
		return false;
	return rule_matches(r, req);
}

bool l7_policy_applies(const struct config_l7_policy *p, const struct config_service *svc,
		       const struct config_workload *waypoint)
{
	const char *pns = p->metadata.namespace;

	for (size_t i = 0; i < p->spec.n_target_refs; i++) {
		const struct config_target_ref *t = &p->spec.target_refs[i];
		const char *ns = t->namespace && *t->namespace ? t->namespace : pns;
		if (t->kind == CONFIG_TARGET_SERVICE && svc && strcmp(svc->name, t->name) == 0 &&
		    strcmp(svc->namespace, ns) == 0)
			return true;
		if (t->kind == CONFIG_TARGET_GATEWAY && waypoint &&
		    strcmp(waypoint->namespace, ns) == 0 &&
		    (strcmp(waypoint->name, t->name) == 0 ||
		     strcmp(waypoint->workload_name, t->name) == 0))
			return true;
	}
	return false;
}

/* The first matching rule of p, or -1. */
static long first_rule(const struct config_l7_policy *p, const struct l7_request *req)
{
	for (size_t i = 0; i < p->spec.n_rules; i++) {
		const struct config_l7_rule *r = &p->spec.rules[i];
		/* TCP: an ALLOW rule with HTTP-only fields cannot match; DENY/AUDIT ignore them. */
		if (req->tcp && p->spec.action == CONFIG_L7_ALLOW && l7_rule_has_http(r))
			continue;
		if (rule_matches(r, req))
			return (long)i;
	}
	return -1;
}

void l7_authz_check(const struct config *c, const struct config_service *svc,
		    const struct config_workload *waypoint, const struct l7_request *req,
		    struct l7_authz_result *out)
{
	size_t n;
	const struct config_l7_policy *pols = config_l7_policy_list(c, &n);
	const struct config_l7_policy *allow_hit = NULL;
	size_t allow_rule = 0;
	bool have_allow = false;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		const struct config_l7_policy *p = &pols[i];
		long r;
		if (!l7_policy_applies(p, svc, waypoint))
			continue;
		if (p->spec.action == CONFIG_L7_ALLOW)
			have_allow = true;
		r = first_rule(p, req);
		if (r < 0)
			continue;
		if (p->spec.action == CONFIG_L7_DENY) {
			out->allow = false;
			out->policy = p;
			out->rule = (size_t)r;
			out->reason = "denied by DENY policy";
			return; /* a DENY decides at once */
		}
		if (p->spec.action == CONFIG_L7_AUDIT && !out->audit) {
			out->audit = p;
			out->audit_rule = (size_t)r;
		}
		if (p->spec.action == CONFIG_L7_ALLOW && !allow_hit) {
			allow_hit = p;
			allow_rule = (size_t)r;
		}
	}
	if (!have_allow) {
		out->allow = true;
		out->reason = "no ALLOW policy applies";
		return;
	}
	if (allow_hit) {
		out->allow = true;
		out->policy = allow_hit;
		out->rule = allow_rule;
		out->reason = "allowed by ALLOW policy";
		return;
	}
	out->allow = false;
	out->reason = "allow policies exist, but none allowed";
}
