/* `ambient ctl check`: every problem in a mesh config with its JSON path and severity. */
#include "cmd/ctl.h"
#include "pkg/proxy/proxy.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum level { LV_ERROR = 0, LV_WARNING, LV_INFO };
static const char *const level_names[] = {"Error", "Warning", "Info"};

struct finding {
	enum level level;
	const char *code;
	char *path;
	char *msg;
};

struct findings {
	struct finding *v;
	size_t n, cap;
};

static void add(struct findings *f, enum level lv, const char *code, const char *path,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add(struct findings *f, enum level lv, const char *code, const char *path,
		const char *fmt, ...)
{
	va_list ap;
	char msg[1024];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 32;
		f->v = xrealloc(f->v, f->cap * sizeof(*f->v));
	}
	f->v[f->n++] = (struct finding){lv, code, xstrdup(path), xstrdup(msg)};
}

static void findings_fini(struct findings *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->v[i].path);
		free(f->v[i].msg);
	}
	free(f->v);
}

/* ---- the loader's own lines ------------------------------------------------------------------
 */

static const char *http_fields[] = {"methods",
				    "notMethods",
				    "paths",
				    "notPaths",
				    "hosts",
				    "notHosts",
				    "requestPrincipals",
				    "notRequestPrincipals",
				    "remoteIpBlocks",
				    "notRemoteIpBlocks"};

/* "mesh.json: .a.b: message" or "mesh.json:3:14: invalid JSON: ..." -> path and message. */
static void loader_line(struct findings *f, const char *line, const char *name, bool error)
{
	size_t nl = strlen(name);
	const char *rest = line, *sep;
	char path[JSON_PATH_MAX + 32];
	const char *code = error ? "Schema" : "ConfigWarning";
	enum level lv = error ? LV_ERROR : LV_WARNING;

	if (strncmp(line, name, nl) == 0 && (line[nl] == ':'))
		rest = line + nl + 1;
	if (*rest == ' ')
		rest++;
	sep = strstr(rest, ": ");
	if (!sep) {
		add(f, lv, code, ".", "%s", rest);
		return;
	}
	snprintf(path, sizeof(path), "%.*s", (int)(sep - rest), rest);
	sep += 2;
	if (strstr(sep, "invalid JSON"))
		code = "Syntax";
	else if (strstr(sep, "duplicate IP"))
		code = "DuplicateIP";
	else if (strstr(sep, "no endpoints"))
		code = "NoEndpoints";
	else if (strstr(sep, "matches no workload IP or VIP") ||
		 strstr(sep, "unknown waypoint service"))
		code = "MissingWaypoint";
	else if (strstr(sep, "never matches"))
		code = "NeverMatches";
	else if (strstr(sep, "applies nowhere"))
		code = "UnusedPolicy";
	if (error && strncmp(path, ".policies[", 10) == 0 && strstr(sep, "unknown field")) {
		const char *key = strrchr(path, '.');
		for (size_t i = 0; key && i < ARRAY_LEN(http_fields); i++)
			if (strcmp(key + 1, http_fields[i]) == 0) {
				add(f, lv, "L7InZtunnelPolicy", path,
				    "%s (\"%s\" is an HTTP attribute: ztunnel policies are L4 "
				    "only; put it in an l7Policies entry with targetRefs, "
				    "enforced by a waypoint)",
				    sep, key + 1);
				return;
			}
	}
	add(f, lv, code, path, "%s", sep);
}

/* ---- analyzers on a loaded snapshot ----------------------------------------------------------
 */

static void ip_port(const struct config_ip *ip, uint16_t port, struct net_addr *out)
{
	struct net_ip nip;

	proxy_ip_to_net(&nip, ip);
	net_addr_from_ip(out, &nip, port);
}

static void check_endpoints_and_waypoints(const struct config *c, struct findings *f)
{
	size_t ns, nw;
	const struct config_service *svcs = config_services(c, &ns);
	const struct config_workload *wls = config_workloads(c, &nw);
	char path[64];

	for (size_t i = 0; i < ns; i++) {
		const struct config_service *s = &svcs[i];
		bool usable = false;
		uint16_t tp;

		snprintf(path, sizeof(path), ".services[%zu]", i);
		for (size_t p = 0; p < s->n_ports && !usable; p++)
			usable = proxy_pick_endpoint(s, s->ports[p].service_port, 0, &tp) != NULL;
		if (s->n_endpoints > 0 && s->n_ports > 0 && !usable)
			add(f, LV_WARNING, "NoHealthyEndpoints", path,
			    "service \"%s\" has %zu endpoint%s but none is healthy: connections "
			    "to it fail",
			    s->key, s->n_endpoints, s->n_endpoints == 1 ? "" : "s");
		if (s->waypoint.present && s->n_vips > 0 && s->n_ports > 0) {
			struct net_addr a;
			struct proxy_route r;

			ip_port(&s->vips[0].ip, s->ports[0].service_port, &a);
			proxy_decide_outbound(c, NULL, &a, 0, 15008, &r);
			if (r.kind == PROXY_ROUTE_FAIL && r.reason &&
			    strstr(r.reason, "waypoint")) {
				snprintf(path, sizeof(path), ".services[%zu].waypoint", i);
				add(f, LV_WARNING, "MissingWaypoint", path,
				    "service \"%s\": %s; ztunnel refuses its connections (fails "
				    "closed; Istio would bypass the waypoint and its L7 policy)",
				    s->key, r.reason);
			}
		}
	}
	for (size_t i = 0; i < nw; i++) {
		const struct config_workload *w = &wls[i];
		struct net_addr a;
		struct proxy_route r;

		if (!w->waypoint.present || w->n_workload_ips == 0)
			continue;
		ip_port(&w->workload_ips[0], 80, &a);
		proxy_decide_outbound(c, NULL, &a, 0, 15008, &r);
		if (r.kind == PROXY_ROUTE_FAIL && r.reason && strstr(r.reason, "waypoint")) {
			snprintf(path, sizeof(path), ".workloads[%zu].waypoint", i);
			add(f, LV_WARNING, "MissingWaypoint", path,
			    "workload \"%s/%s\": %s; ztunnel refuses connections to it (fails "
			    "closed; Istio would bypass the waypoint and its L7 policy)",
			    w->namespace, w->name[0] ? w->name : w->uid, r.reason);
		}
	}
}

static void check_plaintext(const struct config *c, struct findings *f)
{
	size_t nw;
	const struct config_workload *wls = config_workloads(c, &nw);
	char path[64];

	for (size_t i = 0; i < nw; i++) {
		const struct config_workload *w = &wls[i];
		size_t hbone = 0;

		if (w->protocol != CONFIG_PROTOCOL_TCP || w->n_workload_ips == 0)
			continue;
		for (size_t j = 0; j < nw; j++)
			hbone += wls[j].protocol == CONFIG_PROTOCOL_HBONE &&
				 strcmp(wls[j].namespace, w->namespace) == 0;
		if (!hbone)
			continue;
		snprintf(path, sizeof(path), ".workloads[%zu].protocol", i);
		add(f, LV_WARNING, "PlaintextInMesh", path,
		    "workload \"%s/%s\" uses protocol TCP in namespace \"%s\", where %zu "
		    "workload%s use%s HBONE: connections to it are plaintext, without mTLS or a "
		    "peer identity for policies (set \"protocol\": \"HBONE\" if it is captured)",
		    w->namespace, w->name[0] ? w->name : w->uid, w->namespace, hbone,
		    hbone == 1 ? "" : "s", hbone == 1 ? "s" : "");
	}
}

/* ---- policies that can never match -----------------------------------------------------------
 */

static bool sm_equal(const struct config_string_match *a, const struct config_string_match *b)
{
	return a->kind == b->kind && strcmp(a->value, b->value) == 0;
}

/* Every positive entry is also excluded by an identical not* entry. */
static bool sm_cancelled(const struct config_string_match *pos, size_t np,
			 const struct config_string_match *neg, size_t nn)
{
	if (np == 0 || nn == 0)
		return false;
	for (size_t i = 0; i < np; i++) {
		bool hit = false;
		for (size_t j = 0; j < nn && !hit; j++)
			hit = sm_equal(&pos[i], &neg[j]) || neg[j].kind == CONFIG_MATCH_PRESENCE;
		if (!hit)
			return false;
	}
	return true;
}

static bool cidrs_cancelled(const struct config_cidr *pos, size_t np, const struct config_cidr *neg,
			    size_t nn)
{
	if (np == 0 || nn == 0)
		return false;
	for (size_t i = 0; i < np; i++) {
		bool hit = false;
		for (size_t j = 0; j < nn && !hit; j++)
			hit = neg[j].prefix <= pos[i].prefix &&
			      config_cidr_contains(&neg[j], &pos[i].ip);
		if (!hit)
			return false;
	}
	return true;
}

/* Why a Match can never match, or NULL. */
static const char *match_never(const struct config_match *m, char *why, size_t cap)
{
	bool spiffe = m->n_principals > 0;

	for (size_t i = 0; i < m->n_principals; i++)
		spiffe &= m->principals[i].kind != CONFIG_MATCH_PRESENCE &&
			  strncmp(m->principals[i].value, "spiffe://", 9) == 0;
	if (spiffe) {
		snprintf(why, cap,
			 "principals start with \"spiffe://\", but a principal is compared "
			 "without it (write \"%s\")",
			 m->principals[0].value + 9);
		return why;
	}
	if (sm_cancelled(m->principals, m->n_principals, m->not_principals, m->n_not_principals))
		return "every entry of principals is excluded again by notPrincipals";
	if (sm_cancelled(m->namespaces, m->n_namespaces, m->not_namespaces, m->n_not_namespaces))
		return "every entry of namespaces is excluded again by notNamespaces";
	if (m->n_destination_ports && m->n_not_destination_ports) {
		bool all = true;
		for (size_t i = 0; i < m->n_destination_ports && all; i++) {
			bool hit = false;
			for (size_t j = 0; j < m->n_not_destination_ports; j++)
				hit |= m->destination_ports[i] == m->not_destination_ports[j];
			all = hit;
		}
		if (all)
			return "every port of destinationPorts is excluded again by "
			       "notDestinationPorts";
	}
	if (cidrs_cancelled(m->source_ips, m->n_source_ips, m->not_source_ips, m->n_not_source_ips))
		return "every range of sourceIps is excluded again by notSourceIps";
	if (cidrs_cancelled(m->destination_ips, m->n_destination_ips, m->not_destination_ips,
			    m->n_not_destination_ips))
		return "every range of destinationIps is excluded again by notDestinationIps";
	return NULL;
}

static bool match_empty(const struct config_match *m)
{
	return !(m->n_namespaces || m->n_not_namespaces || m->n_service_accounts ||
		 m->n_not_service_accounts || m->n_principals || m->n_not_principals ||
		 m->n_source_ips || m->n_not_source_ips || m->n_destination_ips ||
		 m->n_not_destination_ips || m->n_destination_ports || m->n_not_destination_ports);
}

/* Why a rule can never match (a clause none of whose matches can), or NULL. */
static const char *rule_never(const struct config_rule *r, char *why, size_t cap)
{
	for (size_t k = 0; k < r->n_clauses; k++) {
		const struct config_clause *cl = &r->clauses[k];
		const char *last = "it has no matches";
		char tmp[512];
		bool any = false;

		for (size_t m = 0; m < cl->n_matches && !any; m++) {
			const char *w;
			if (match_empty(&cl->matches[m])) {
				last = "its only matches are empty";
				continue;
			}
			w = match_never(&cl->matches[m], tmp, sizeof(tmp));
			if (w)
				last = w;
			else
				any = true;
		}
		if (!any) {
			snprintf(why, cap, "clause %zu can never match: %s", k, last);
			return why;
		}
	}
	return NULL;
}

static void check_never_match(const struct config *c, struct findings *f)
{
	size_t np;
	const struct config_policy *ps = config_policies(c, &np);
	char path[96], why[768];

	for (size_t i = 0; i < np; i++) {
		const struct config_policy *p = &ps[i];
		bool deny = p->action == CONFIG_ACTION_DENY;
		size_t never = 0;

		snprintf(path, sizeof(path), ".policies[%zu]", i);
		if (p->n_rules == 0) {
			if (deny)
				add(f, LV_WARNING, "NeverMatches", path,
				    "DENY policy \"%s\" has no rules: it never matches and denies "
				    "nothing",
				    p->key);
			else
				add(f, LV_INFO, "AllowNothing", path,
				    "ALLOW policy \"%s\" has no rules: it never matches, so it "
				    "denies every connection to the workloads it applies to "
				    "(allow-nothing)",
				    p->key);
			continue;
		}
		for (size_t r = 0; r < p->n_rules; r++) {
			if (!rule_never(&p->rules[r], why, sizeof(why)))
				continue;
			never++;
			snprintf(path, sizeof(path), ".policies[%zu].rules[%zu]", i, r);
			add(f, LV_WARNING, "NeverMatches", path, "%s policy \"%s\" rule %zu: %s",
			    deny ? "DENY" : "ALLOW", p->key, r, why);
		}
		if (never == p->n_rules && deny) {
			snprintf(path, sizeof(path), ".policies[%zu]", i);
			add(f, LV_WARNING, "NeverMatches", path,
			    "DENY policy \"%s\" can never match: it denies nothing", p->key);
		}
	}
}

/* ---- ALLOW policies shadowing each other -----------------------------------------------------
 */

struct applied {
	const struct config_policy *v[256];
	size_t n;
};

static void applied_add(struct applied *a, const struct config_policy *p)
{
	if (p->action != CONFIG_ACTION_ALLOW || p->dry_run || a->n == ARRAY_LEN(a->v))
		return;
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i] == p)
			return;
	a->v[a->n++] = p;
}

/* The same order as authz_check: namespace policies, global ones, then the selected ones. */
static void applicable_allow(const struct config *c, const struct config_workload *w,
			     struct applied *a)
{
	size_t n;
	const struct config_policy *const *v = config_policies_by_namespace(c, w->namespace, &n);

	a->n = 0;
	for (size_t i = 0; i < n; i++)
		applied_add(a, v[i]);
	v = config_policies_global(c, &n);
	for (size_t i = 0; i < n; i++)
		applied_add(a, v[i]);
	for (size_t i = 0; i < w->n_authorization_policies; i++)
		applied_add(a, w->policies[i]);
}

static bool reported(const bool *seen, size_t np, size_t a, size_t b)
{
	return seen[a * np + b];
}

static const cJSON *dumped_rule(const cJSON *mesh, const struct config_policy *p, size_t r)
{
	const cJSON *pols = cJSON_GetObjectItemCaseSensitive(mesh, "policies");
	const cJSON *pj = cJSON_GetArrayItem(pols, (int)p->index);

	return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pj, "rules"), (int)r);
}

static void check_shadowing(const struct config *c, const cJSON *mesh, struct findings *f)
{
	size_t nw, np;
	const struct config_workload *wls = config_workloads(c, &nw);
	char path[96];
	bool *seen;

	config_policies(c, &np);
	seen = xcalloc(np * np + 1, 1);
	for (size_t i = 0; i < nw; i++) {
		struct applied a;
		const char *wname = wls[i].name[0] ? wls[i].name : wls[i].uid;

		applicable_allow(c, &wls[i], &a);
		for (size_t x = 0; x < a.n; x++) {
			const struct config_policy *A = a.v[x];
			for (size_t r = 0; r < A->n_rules; r++) {
				if (A->rules[r].n_clauses != 0)
					continue;
				for (size_t y = 0; y < a.n; y++) {
					const struct config_policy *B = a.v[y];
					if (B == A || reported(seen, np, B->index, A->index))
						continue;
					seen[B->index * np + A->index] = true;
					snprintf(path, sizeof(path), ".policies[%zu]", B->index);
					add(f, LV_WARNING, "ShadowedAllow", path,
					    "ALLOW policy \"%s\" is shadowed by \"%s\" rule %zu, "
					    "which allows every connection (it has no conditions) "
					    "to workload \"%s/%s\": \"%s\" never changes a verdict "
					    "there",
					    B->key, A->key, r, wls[i].namespace, wname, B->key);
				}
			}
		}
		for (size_t x = 0; x < a.n; x++)
			for (size_t y = x + 1; y < a.n; y++) {
				const struct config_policy *A = a.v[x], *B = a.v[y];
				if (reported(seen, np, B->index, A->index))
					continue;
				for (size_t r = 0; r < A->n_rules; r++)
					for (size_t s = 0; s < B->n_rules; s++) {
						if (!cJSON_Compare(dumped_rule(mesh, A, r),
								   dumped_rule(mesh, B, s), true))
							continue;
						seen[B->index * np + A->index] = true;
						snprintf(path, sizeof(path),
							 ".policies[%zu].rules[%zu]", B->index, s);
						add(f, LV_WARNING, "ShadowedAllow", path,
						    "ALLOW policy \"%s\" rule %zu is identical to "
						    "\"%s\" rule %zu (both apply to workload "
						    "\"%s/%s\"): it is redundant",
						    B->key, s, A->key, r, wls[i].namespace, wname);
					}
			}
	}
	free(seen);
}

/* ---- waypoint-level policies -----------------------------------------------------------------
 */

static const char *const l7_when_ok[] = {"source.ip", "source.namespace", "source.principal",
					 "destination.ip", "destination.port"};

/* Appends the names of HTTP-only attributes used by one AuthorizationPolicy rule. */
static void l7_attrs(const cJSON *rule, char *out, size_t cap)
{
	static const char *const to_keys[] = {"hosts",	    "notHosts", "methods",
					      "notMethods", "paths",	"notPaths"};
	static const char *const from_keys[] = {"requestPrincipals", "notRequestPrincipals",
						"remoteIpBlocks", "notRemoteIpBlocks"};
	const cJSON *it;
	size_t n = 0;

	out[0] = '\0';
#define ADD_ATTR(name)                                                                             \
	do {                                                                                       \
		if (!strstr(out, name))                                                            \
			n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s",              \
					      n ? ", " : "", name);                                \
	} while (0)
	CTL_EACH(it, cJSON_GetObjectItemCaseSensitive(rule, "to"))
	{
		const cJSON *op = cJSON_GetObjectItemCaseSensitive(it, "operation");
		for (size_t k = 0; k < ARRAY_LEN(to_keys); k++)
			if (cJSON_GetObjectItemCaseSensitive(op, to_keys[k]))
				ADD_ATTR(to_keys[k]);
	}
	CTL_EACH(it, cJSON_GetObjectItemCaseSensitive(rule, "from"))
	{
		const cJSON *src = cJSON_GetObjectItemCaseSensitive(it, "source");
		for (size_t k = 0; k < ARRAY_LEN(from_keys); k++)
			if (cJSON_GetObjectItemCaseSensitive(src, from_keys[k]))
				ADD_ATTR(from_keys[k]);
	}
	CTL_EACH(it, cJSON_GetObjectItemCaseSensitive(rule, "when"))
	{
		const char *key = ctl_jstr(it, "key");
		bool ok = false;
		for (size_t k = 0; k < ARRAY_LEN(l7_when_ok); k++)
			ok |= strcmp(key, l7_when_ok[k]) == 0;
		if (!ok && *key)
			ADD_ATTR(key);
	}
#undef ADD_ATTR
	if (n >= cap && cap > 4)
		strcpy(out + cap - 4, "...");
}

static void check_l7_policies(const struct config *c, struct findings *f)
{
	const cJSON *pols = config_l7_policies(c);
	const cJSON *p;
	size_t i = 0;
	char path[96], attrs[256];

	CTL_EACH(p, pols)
	{
		const cJSON *meta = cJSON_GetObjectItemCaseSensitive(p, "metadata");
		const cJSON *spec = cJSON_GetObjectItemCaseSensitive(p, "spec");
		const cJSON *refs = cJSON_GetObjectItemCaseSensitive(spec, "targetRefs");
		const char *ns = ctl_jstr(meta, "namespace"), *name = ctl_jstr(meta, "name");
		const char *action = ctl_jstr(spec, "action");
		bool deny = strcmp(action, "DENY") == 0;
		const cJSON *ref, *rule;
		size_t r = 0;

		if (!*ns)
			ns = "default";
		if (cJSON_GetArraySize(refs) > 0) {
			size_t k = 0;
			CTL_EACH(ref, refs)
			{
				const char *kind = ctl_jstr(ref, "kind");
				const char *rn = ctl_jstr(ref, "name");
				const char *rns = *ctl_jstr(ref, "namespace")
							  ? ctl_jstr(ref, "namespace")
							  : ns;
				size_t nsv;
				const struct config_service *svcs = config_services(c, &nsv);
				const struct config_service *s = NULL;

				for (size_t j = 0; j < nsv && !s && strcmp(kind, "Service") == 0;
				     j++)
					if (strcmp(svcs[j].name, rn) == 0 &&
					    strcmp(svcs[j].namespace, rns) == 0)
						s = &svcs[j];
				snprintf(path, sizeof(path),
					 ".l7Policies[%zu].spec.targetRefs[%zu]", i, k);
				if (strcmp(kind, "Service") == 0 && !s)
					add(f, LV_WARNING, "L7PolicyNotEnforced", path,
					    "L7 policy \"%s/%s\" targets service \"%s/%s\", which "
					    "does not exist",
					    ns, name, rns, rn);
				else if (s && !s->waypoint.present)
					add(f, LV_WARNING, "L7PolicyNotEnforced", path,
					    "L7 policy \"%s/%s\" targets service \"%s\", which has "
					    "no waypoint: nothing enforces it (traffic bypasses "
					    "it)",
					    ns, name, s->key);
				k++;
			}
			i++;
			continue;
		}
		CTL_EACH(rule, cJSON_GetObjectItemCaseSensitive(spec, "rules"))
		{
			l7_attrs(rule, attrs, sizeof(attrs));
			if (attrs[0]) {
				snprintf(path, sizeof(path), ".l7Policies[%zu].spec.rules[%zu]", i,
					 r);
				if (deny)
					add(f, LV_WARNING, "L7InZtunnelPolicy", path,
					    "DENY policy \"%s/%s\" has no targetRefs, so a ztunnel "
					    "enforces it, and a ztunnel cannot see HTTP attributes "
					    "(%s): they are ignored and the rule's L4 conditions "
					    "alone deny (or, with none left, it denies nothing); "
					    "bind "
					    "it to a waypoint with targetRefs",
					    ns, name, attrs);
				else
					add(f, LV_WARNING, "L7InZtunnelPolicy", path,
					    "ALLOW policy \"%s/%s\" has no targetRefs, so a "
					    "ztunnel "
					    "enforces it, and a ztunnel cannot see HTTP attributes "
					    "(%s): this rule never matches (fails closed); bind it "
					    "to "
					    "a waypoint with targetRefs",
					    ns, name, attrs);
			}
			r++;
		}
		i++;
	}
}

/* ---- output ----------------------------------------------------------------------------------
 */

static void print_json(const char *src, const struct findings *f, const size_t cnt[3], bool loaded)
{
	cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "findings");

	cJSON_AddStringToObject(root, "source", src);
	cJSON_AddBoolToObject(root, "loaded", loaded);
	for (size_t i = 0; i < f->n; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "level", level_names[f->v[i].level]);
		cJSON_AddStringToObject(o, "code", f->v[i].code);
		cJSON_AddStringToObject(o, "path", f->v[i].path);
		cJSON_AddStringToObject(o, "message", f->v[i].msg);
		cJSON_AddItemToArray(arr, o);
	}
	cJSON_AddNumberToObject(root, "errors", (double)cnt[LV_ERROR]);
	cJSON_AddNumberToObject(root, "warnings", (double)cnt[LV_WARNING]);
	cJSON_AddNumberToObject(root, "info", (double)cnt[LV_INFO]);
	ctl_print_json(root, stdout);
	cJSON_Delete(root);
}

static const char check_usage[] = "ambient ctl check FILE|URL [-o json] [--ca-root FILE]";
static const char check_example[] =
	"  ambient ctl check mesh.json\n"
	"  ambient ctl check https://ca.mesh:15012/v1/config --ca-root root-cert.pem -o json\n"
	"exit: 0 clean (Info only), 3 warnings, 4 errors, 1 unreadable, 2 usage";

int ctl_check_main(int argc, char **argv)
{
	const char *out = "text", *ca_root = NULL, *token_file = NULL;
	const struct flag fl[] = {
		{"o", FLAG_STR, &out, "output: text (default) or json", "FORMAT"},
		{"ca-root", FLAG_STR, &ca_root, "root certificate for an https URL", "FILE"},
		{"token-file", FLAG_STR, &token_file, "bearer token for the CA's /v1/config",
		 "FILE"},
	};
	const char *pos[1];
	int npos, rc;
	struct errlist errs = {0}, warns = {0};
	struct errbuf eb = {0};
	struct findings f = {0};
	struct config *c;
	size_t cnt[3] = {0};
	const char *name;

	rc = ctl_parse("check", check_usage, check_example, fl, ARRAY_LEN(fl), argc, argv, pos, 1,
		       &npos);
	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (npos != 1 || (strcmp(out, "text") && strcmp(out, "json"))) {
		fprintf(stderr, "usage: %s\n", check_usage);
		return CTL_EXIT_USAGE;
	}
	c = ctl_load_config(pos[0], ca_root, token_file, &errs, &warns, &eb);
	if (!c && errs.n == 0) {
		fprintf(stderr, "ctl check: %s\n", eb.msg);
		return CTL_EXIT_FAIL;
	}
	name = strrchr(pos[0], '/');
	name = strncmp(pos[0], "http", 4) == 0 || !name ? pos[0] : name + 1;
	for (size_t i = 0; i < errs.n; i++)
		loader_line(&f, errs.items[i], name, true);
	for (size_t i = 0; i < warns.n; i++)
		loader_line(&f, warns.items[i], name, false);
	if (c) {
		struct buf b;
		struct json_writer w;
		cJSON *mesh = NULL;

		buf_init(&b, 0);
		json_writer_init(&w, &b, 0);
		config_dump_mesh_write(c, &w);
		if (json_writer_finish(&w) == 0)
			json_parse((const char *)buf_rptr(&b), buf_len(&b), NULL, &mesh, NULL);
		buf_fini(&b);
		check_endpoints_and_waypoints(c, &f);
		check_plaintext(c, &f);
		check_never_match(c, &f);
		if (mesh)
			check_shadowing(c, mesh, &f);
		check_l7_policies(c, &f);
		json_free(mesh);
	} else {
		add(&f, LV_INFO, "NotAnalyzed", ".",
		    "the document does not load, so the mesh-level checks did not run; fix the "
		    "errors above and check again");
	}
	for (size_t i = 0; i < f.n; i++)
		cnt[f.v[i].level]++;
	if (strcmp(out, "json") == 0) {
		print_json(pos[0], &f, cnt, c != NULL);
	} else {
		for (size_t i = 0; i < f.n; i++)
			printf("%-7s [%s] %s: %s\n", level_names[f.v[i].level], f.v[i].code,
			       f.v[i].path, f.v[i].msg);
		if (f.n == 0)
			printf("no problems found in %s\n", name);
		else
			printf("%zu error%s, %zu warning%s, %zu info in %s\n", cnt[0],
			       cnt[0] == 1 ? "" : "s", cnt[1], cnt[1] == 1 ? "" : "s", cnt[2],
			       name);
	}
	findings_fini(&f);
	errlist_fini(&errs);
	errlist_fini(&warns);
	config_unref(c);
	if (cnt[LV_ERROR])
		return CTL_EXIT_ERRORS;
	return cnt[LV_WARNING] ? CTL_EXIT_WARNINGS : CTL_EXIT_OK;
}
