/* Path normalization, HTTPRoute selection with Gateway API precedence, weighted backends and path
 * rewrites: the routing half of pkg/l7 (authorization is in l7_authz.c). */
#include "pkg/l7/l7.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- path normalization ---------------------------------------------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

struct seg {
	size_t off, len;
};

/* RFC 3986 §5.2.4 on an absolute path in p[0..n) (p[0] == '/'), written to out. */
static int remove_dots(const char *p, size_t n, bool merge, char *out, size_t cap)
{
	struct seg stack[512];
	size_t depth = 0, o = 0, i = 1;
	bool trailing = false;

	while (i <= n) {
		size_t j = i;
		while (j < n && p[j] != '/')
			j++;
		size_t len = j - i;
		bool last = j >= n;
		if (len == 1 && p[i] == '.') {
			trailing = last;
		} else if (len == 2 && p[i] == '.' && p[i + 1] == '.') {
			if (depth)
				depth--;
			trailing = last;
		} else if (len == 0 && merge && !last) {
			/* "//": an empty segment, merged away */
		} else {
			if (depth == ARRAY_LEN(stack))
				return -E_LIMIT;
			stack[depth++] = (struct seg){i, len};
			trailing = false;
		}
		i = j + 1;
	}
	if (cap < 2)
		return -E_LIMIT;
	out[o++] = '/';
	for (size_t k = 0; k < depth; k++) {
		if (o + stack[k].len + 2 > cap)
			return -E_LIMIT;
		if (k)
			out[o++] = '/';
		memcpy(out + o, p + stack[k].off, stack[k].len);
		o += stack[k].len;
	}
	if (trailing && depth) {
		if (o + 2 > cap)
			return -E_LIMIT;
		out[o++] = '/';
	}
	out[o] = '\0';
	return (int)o;
}

int l7_path_normalize(const char *target, size_t n, const struct l7_norm_opts *o, char *out,
		      size_t cap, const char **why)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *q = memchr(target, '?', n);
	size_t plen = q ? (size_t)(q - target) : n, qlen = n - plen, d = 0;
	char *tmp;
	int rc;

	*why = "";
	if (plen == 0 || target[0] != '/') {
		*why = "request target is not an absolute path";
		return -E_INVAL;
	}
	if (n >= L7_PATH_MAX || cap < 2) {
		*why = "path too long";
		return -E_LIMIT;
	}
	if (o->mode == L7_NORM_NONE) {
		if (n + 1 > cap)
			return -E_LIMIT;
		memcpy(out, target, n);
		out[n] = '\0';
		return (int)n;
	}
	tmp = xmalloc(plen * 3 + 1);
	for (size_t i = 0; i < plen; i++) {
		unsigned char c = (unsigned char)target[i];
		int hi, lo;
		if (c != '%') {
			tmp[d++] = (char)c;
			continue;
		}
		if (i + 2 >= plen) {
			*why = "truncated percent-encoding in path";
			free(tmp);
			return -E_INVAL;
		}
		hi = hexval(target[i + 1]);
		lo = hexval(target[i + 2]);
		if (hi < 0 || lo < 0) {
			*why = "invalid percent-encoding in path";
			free(tmp);
			return -E_INVAL;
		}
		c = (unsigned char)(hi * 16 + lo);
		i += 2;
		if (c == '/' || c == '\\') {
			if (o->reject_escaped_slashes) {
				*why = "escaped slash (%2F or %5C) in path";
				free(tmp);
				return -E_INVAL;
			}
			if (o->mode == L7_NORM_DECODE_AND_MERGE_SLASHES) {
				tmp[d++] = '/';
				continue;
			}
		}
		if (unreserved(c)) {
			tmp[d++] = (char)c;
		} else {
			tmp[d++] = '%';
			tmp[d++] = hex[c >> 4];
			tmp[d++] = hex[c & 15];
		}
	}
	rc = remove_dots(tmp, d, o->mode >= L7_NORM_MERGE_SLASHES, out, cap);
	free(tmp);
	if (rc < 0) {
		*why = "path too long";
		return rc;
	}
	if ((size_t)rc + qlen + 1 > cap) {
		*why = "path too long";
		return -E_LIMIT;
	}
	memcpy(out + rc, q ? q : "", qlen);
	out[(size_t)rc + qlen] = '\0';
	return rc + (int)qlen;
}

void l7_principal_namespace(const char *principal, char *out, size_t cap)
{
	const char *ns = principal ? strstr(principal, "/ns/") : NULL;
	const char *end;

	if (cap)
		out[0] = '\0';
	if (!ns)
		return;
	ns += 4;
	end = strchr(ns, '/');
	if (!end || strncmp(end, "/sa/", 4) != 0)
		return;
	snprintf(out, cap, "%.*s", (int)(end - ns), ns);
}

/* ---- the table ------------------------------------------------------------------------------- */

struct match_rx {
	regex_t *path;
	regex_t **headers;
	regex_t **query;
};
struct rule_rx {
	struct match_rx *m;
};
struct route_rx {
	struct rule_rx *r;
};
struct l7_table {
	const struct config *c;
	const struct config_route *routes;
	size_t n_routes;
	struct route_rx *rx;
};

static regex_t *compile_full(const char *re, struct errbuf *eb, bool *fail)
{
	regex_t *x = xcalloc(1, sizeof(*x));
	char *full = xasprintf("^(%s)$", re);
	int rc = regcomp(x, full, REG_EXTENDED | REG_NOSUB);

	free(full);
	if (rc != 0) {
		char msg[128];
		regerror(rc, x, msg, sizeof(msg));
		errbuf_set(eb, E_INVAL, "regular expression \"%s\": %s", re, msg);
		free(x);
		*fail = true;
		return NULL;
	}
	return x;
}

struct l7_table *l7_table_new(const struct config *c, struct errbuf *eb)
{
	struct l7_table *t = xcalloc(1, sizeof(*t));
	bool fail = false;

	t->c = c;
	t->routes = config_route_list(c, &t->n_routes);
	t->rx = xcalloc(t->n_routes ? t->n_routes : 1, sizeof(*t->rx));
	for (size_t i = 0; i < t->n_routes; i++) {
		const struct config_route_spec *s = &t->routes[i].spec;
		t->rx[i].r = xcalloc(s->n_rules ? s->n_rules : 1, sizeof(struct rule_rx));
		for (size_t k = 0; k < s->n_rules; k++) {
			const struct config_route_rule *ru = &s->rules[k];
			struct rule_rx *rr = &t->rx[i].r[k];
			rr->m = xcalloc(ru->n_matches ? ru->n_matches : 1, sizeof(struct match_rx));
			for (size_t m = 0; m < ru->n_matches; m++) {
				const struct config_route_match *mt = &ru->matches[m];
				struct match_rx *mx = &rr->m[m];
				if (mt->path.type == CONFIG_PATH_REGEX)
					mx->path = compile_full(mt->path.value, eb, &fail);
				mx->headers = xcalloc(mt->n_headers + 1, sizeof(regex_t *));
				for (size_t h = 0; h < mt->n_headers; h++)
					if (mt->headers[h].type == CONFIG_VALUE_REGEX)
						mx->headers[h] = compile_full(mt->headers[h].value,
									      eb, &fail);
				mx->query = xcalloc(mt->n_query_params + 1, sizeof(regex_t *));
				for (size_t h = 0; h < mt->n_query_params; h++)
					if (mt->query_params[h].type == CONFIG_VALUE_REGEX)
						mx->query[h] = compile_full(
							mt->query_params[h].value, eb, &fail);
			}
		}
	}
	if (fail) {
		l7_table_free(t);
		return NULL;
	}
	return t;
}

static void rx_free(regex_t *x)
{
	if (x) {
		regfree(x);
		free(x);
	}
}

void l7_table_free(struct l7_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_routes; i++) {
		const struct config_route_spec *s = &t->routes[i].spec;
		for (size_t k = 0; k < s->n_rules && t->rx[i].r; k++) {
			const struct config_route_rule *ru = &s->rules[k];
			struct rule_rx *rr = &t->rx[i].r[k];
			for (size_t m = 0; m < ru->n_matches && rr->m; m++) {
				struct match_rx *mx = &rr->m[m];
				rx_free(mx->path);
				for (size_t h = 0; mx->headers && h < ru->matches[m].n_headers; h++)
					rx_free(mx->headers[h]);
				for (size_t h = 0; mx->query && h < ru->matches[m].n_query_params;
				     h++)
					rx_free(mx->query[h]);
				free(mx->headers);
				free(mx->query);
			}
			free(rr->m);
		}
		free(t->rx[i].r);
	}
	free(t->rx);
	free(t);
}

/* ---- matching -------------------------------------------------------------------------------- */

static bool attached(const struct config_route *r, const struct config_service *svc, uint16_t port)
{
	for (size_t i = 0; i < r->spec.n_parent_refs; i++) {
		const struct config_parent_ref *p = &r->spec.parent_refs[i];
		if (p->kind == CONFIG_PARENT_SERVICE && p->service == svc &&
		    (p->port == 0 || p->port == port))
			return true;
	}
	return false;
}

bool l7_service_has_routes(const struct l7_table *t, const struct config_service *svc,
			   uint16_t port)
{
	for (size_t i = 0; i < t->n_routes; i++)
		if (attached(&t->routes[i], svc, port))
			return true;
	return false;
}

/* Gateway API PathPrefix: element-wise on '/', a trailing '/' of the value ignored. */
static bool prefix_match(const char *value, const char *path, size_t plen)
{
	size_t n = strlen(value);

	while (n > 1 && value[n - 1] == '/')
		n--;
	if (n == 1 && value[0] == '/')
		return true;
	if (plen < n || memcmp(path, value, n) != 0)
		return false;
	return plen == n || path[n] == '/';
}

static bool rx_full(const regex_t *x, const char *s, size_t n)
{
	char *z = xmalloc(n + 1);
	bool ok;

	memcpy(z, s, n);
	z[n] = '\0';
	ok = regexec(x, z, 0, NULL, 0) == 0;
	free(z);
	return ok;
}

static bool slice_ieq(struct slice s, const char *z)
{
	size_t n = strlen(z);
	return s.n == n && strncasecmp((const char *)s.p, z, n) == 0;
}

static const struct l7_header *find_header(const struct l7_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (slice_ieq(req->headers[i].name, name))
			return &req->headers[i];
	return NULL;
}

/* The first value of query parameter name (exact, case-sensitive) in "?a=1&b=2". */
static bool find_query(const char *q, const char *name, const char **v, size_t *vn)
{
	size_t nl = strlen(name);

	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', len);
		size_t kl = eq ? (size_t)(eq - q) : len;
		if (kl == nl && memcmp(q, name, nl) == 0) {
			*v = eq ? eq + 1 : q + len;
			*vn = eq ? len - kl - 1 : 0;
			return true;
		}
		q = amp ? amp + 1 : NULL;
	}
	return false;
}

bool l7_match_request(const struct l7_table *t, const struct config_route *r, size_t rule,
		      size_t match, const struct l7_request *req)
{
	const struct config_route_rule *ru = &r->spec.rules[rule];
	const struct config_route_match *m = &ru->matches[match];
	const struct match_rx *mx = &t->rx[r - t->routes].r[rule].m[match];
	const char *q = strchr(req->path, '?');
	size_t plen = q ? (size_t)(q - req->path) : strlen(req->path);

	switch (m->path.type) {
	case CONFIG_PATH_EXACT:
		if (strlen(m->path.value) != plen || memcmp(m->path.value, req->path, plen) != 0)
			return false;
		break;
	case CONFIG_PATH_PREFIX:
		if (!prefix_match(m->path.value, req->path, plen))
			return false;
		break;
	case CONFIG_PATH_REGEX:
		if (!mx->path || !rx_full(mx->path, req->path, plen))
			return false;
		break;
	}
	if (m->method != CONFIG_METHOD_ANY &&
	    strcmp(config_http_method_name(m->method), req->method) != 0)
		return false;
	for (size_t i = 0; i < m->n_headers; i++) {
		const struct l7_header *h = find_header(req, m->headers[i].name);
		if (!h)
			return false;
		if (mx->headers[i] ? !rx_full(mx->headers[i], (const char *)h->value.p, h->value.n)
				   : (h->value.n != strlen(m->headers[i].value) ||
				      memcmp(h->value.p, m->headers[i].value, h->value.n) != 0))
			return false;
	}
	for (size_t i = 0; i < m->n_query_params; i++) {
		const char *v;
		size_t vn;
		if (!find_query(q ? q + 1 : NULL, m->query_params[i].name, &v, &vn))
			return false;
		if (mx->query[i] ? !rx_full(mx->query[i], v, vn)
				 : (vn != strlen(m->query_params[i].value) ||
				    memcmp(v, m->query_params[i].value, vn) != 0))
			return false;
	}
	return true;
}

/* Precedence key of a match: larger wins. */
struct prec {
	int path_kind; /* 3 exact, 2 prefix, 1 regex */
	size_t prefix_len;
	int method;
	size_t headers, query;
};

static struct prec prec_of(const struct config_route_match *m)
{
	struct prec p = {0};

	if (!m) { /* the default PathPrefix "/" */
		p.path_kind = 2;
		p.prefix_len = 1;
		return p;
	}
	p.path_kind = m->path.type == CONFIG_PATH_EXACT	   ? 3
		      : m->path.type == CONFIG_PATH_PREFIX ? 2
							   : 1;
	if (m->path.type == CONFIG_PATH_PREFIX) {
		size_t n = strlen(m->path.value);
		while (n > 1 && m->path.value[n - 1] == '/')
			n--;
		p.prefix_len = n;
	}
	p.method = m->method != CONFIG_METHOD_ANY;
	p.headers = m->n_headers;
	p.query = m->n_query_params;
	return p;
}

/* <0: a wins, >0: b wins, 0: tie on the match itself. */
static int prec_cmp(const struct prec *a, const struct prec *b)
{
	if (a->path_kind != b->path_kind)
		return a->path_kind > b->path_kind ? -1 : 1;
	if (a->prefix_len != b->prefix_len)
		return a->prefix_len > b->prefix_len ? -1 : 1;
	if (a->method != b->method)
		return a->method > b->method ? -1 : 1;
	if (a->headers != b->headers)
		return a->headers > b->headers ? -1 : 1;
	if (a->query != b->query)
		return a->query > b->query ? -1 : 1;
	return 0;
}

/* Across routes: oldest creationTimestamp (RFC 3339 in UTC compares as text; an absent one counts
 * as newest), then "namespace/name". */
static int route_cmp(const struct config_route *a, const struct config_route *b)
{
	const char *ta = a->metadata.creation_timestamp, *tb = b->metadata.creation_timestamp;
	int c;

	if (a == b)
		return 0;
	if (*ta && *tb && (c = strcmp(ta, tb)) != 0)
		return c;
	if (*ta != '\0' && *tb == '\0')
		return -1;
	if (*ta == '\0' && *tb != '\0')
		return 1;
	c = strcmp(a->metadata.namespace, b->metadata.namespace);
	if (c)
		return c;
	return strcmp(a->metadata.name, b->metadata.name);
}

bool l7_route_select(const struct l7_table *t, const struct config_service *svc, uint16_t port,
		     const struct l7_request *req, struct l7_route_result *out)
{
	struct prec best = {0};
	bool found = false;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < t->n_routes; i++) {
		const struct config_route *r = &t->routes[i];
		if (!attached(r, svc, port))
			continue;
		for (size_t k = 0; k < r->spec.n_rules; k++) {
			const struct config_route_rule *ru = &r->spec.rules[k];
			size_t nm = ru->n_matches ? ru->n_matches : 1;
			for (size_t m = 0; m < nm; m++) {
				const struct config_route_match *mt =
					ru->n_matches ? &ru->matches[m] : NULL;
				struct prec p;
				int c;
				if (mt ? !l7_match_request(t, r, k, m, req) : false)
					continue;
				p = prec_of(mt);
				if (found) {
					c = prec_cmp(&p, &best);
					if (c == 0)
						c = route_cmp(r, out->route);
					/* same route: the earlier rule/match (seen first) stays */
					if (c >= 0)
						continue;
				}
				found = true;
				best = p;
				out->route = r;
				out->rule = ru;
				out->rule_index = k;
				out->match = mt;
				out->match_index = m;
			}
		}
	}
	return found;
}

int l7_backend_pick(const struct config_route_rule *rule, uint64_t rnd)
{
	uint64_t total = 0, x;

	for (size_t i = 0; i < rule->n_backend_refs; i++)
		total += rule->backend_refs[i].weight;
	if (total == 0)
		return -1;
	x = rnd % total;
	for (size_t i = 0; i < rule->n_backend_refs; i++) {
		if (x < rule->backend_refs[i].weight)
			return (int)i;
		x -= rule->backend_refs[i].weight;
	}
	return -1;
}

int l7_path_rewrite(const struct config_path_modifier *m, const struct config_route_match *match,
		    const char *path, char *out, size_t cap)
{
	const char *q = strchr(path, '?');
	size_t plen = q ? (size_t)(q - path) : strlen(path);
	const char *query = q ? q : "";
	int n;

	if (m->type == CONFIG_PATH_REPLACE_FULL) {
		n = snprintf(out, cap, "%s%s", m->replace_full_path, query);
	} else {
		/* ReplacePrefixMatch (Gateway API table in reference §3.5): the matched prefix
		 * (trailing '/' ignored) is replaced; the rest keeps its leading '/'. */
		const char *pre = match ? match->path.value : "/";
		size_t pn = strlen(pre), rn;
		const char *rest;
		const char *rep = m->replace_prefix_match;
		while (pn > 0 && pre[pn - 1] == '/')
			pn--;
		rest = path + (pn <= plen ? pn : plen);
		rn = plen - (size_t)(rest - path);
		size_t repn = strlen(rep);
		while (repn > 0 && rep[repn - 1] == '/' && rn > 0 && rest[0] == '/')
			repn--;
		if (repn == 0 && rn == 0)
			n = snprintf(out, cap, "/%s", query);
		else if (repn == 0)
			n = snprintf(out, cap, "%.*s%s", (int)rn, rest, query);
		else if (repn == 1 && rep[0] == '/' && rn == 0)
			n = snprintf(out, cap, "/%s", query);
		else
			n = snprintf(out, cap, "%.*s%.*s%s", (int)repn, rep, (int)rn, rest, query);
	}
	if (n < 0 || (size_t)n >= cap)
		return -E_LIMIT;
	return n;
}
