/* `ambient ctl explain`: one connection walked through the data plane's own decision code
 * (proxy_decide_outbound, proxy_pick_endpoint, authz_check), offline from a mesh config. */
#include "cmd/ctl.h"

#include <stdlib.h>
#include <string.h>

#define HBONE_PORT 15008

static void ip_str(const struct config_ip *ip, char *out, size_t cap)
{
	config_ip_format(ip, out, cap);
}

static void addr_str(const struct net_addr *a, char *out, size_t cap)
{
	struct net_ip nip;
	struct config_ip ip;
	char s[CONFIG_IP_STRLEN];

	net_addr_ip(a, &nip);
	proxy_ip_from_net(&ip, &nip);
	ip_str(&ip, s, sizeof(s));
	snprintf(out, cap, ip.family == AF_INET6 ? "[%s]:%u" : "%s:%u", s, net_addr_port(a));
}

const char *ctl_wl_name(const struct config_workload *w, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", w->namespace, w->name[0] ? w->name : w->uid);
	return out;
}

const struct config_workload *ctl_find_workload(const struct config *c, const char *q,
						struct errbuf *eb)
{
	struct config_ip ip;
	size_t n, hits = 0;
	const struct config_workload *w = NULL, *all = config_workloads(c, &n);
	const char *slash = strchr(q, '/');

	if (config_ip_parse(q, &ip) == 0) {
		w = config_workload_by_ip(c, "", &ip);
		if (!w)
			errbuf_set(eb, E_NOTFOUND, "no workload has IP %s", q);
		return w;
	}
	w = config_workload_by_uid(c, q);
	if (w)
		return w;
	for (size_t i = 0; i < n; i++) {
		bool m = slash ? strncmp(all[i].namespace, q, (size_t)(slash - q)) == 0 &&
					 all[i].namespace[slash - q] == '\0' &&
					 strcmp(all[i].name, slash + 1) == 0
			       : strcmp(all[i].name, q) == 0;
		if (m) {
			hits++;
			if (!w)
				w = &all[i];
		}
	}
	if (hits > 1) {
		errbuf_set(
			eb, E_INVAL,
			"workload name \"%s\" is ambiguous (%zu workloads); use namespace/name or "
			"the uid",
			q, hits);
		return NULL;
	}
	if (!w)
		errbuf_set(eb, E_NOTFOUND,
			   "no workload \"%s\" (give a uid, namespace/name, name or IP)", q);
	return w;
}

/* ---- per-policy trace via authz_check --------------------------------------------------------
 * authz_check reports the deciding policy only. To show every applicable policy's own verdict,
 * each one is evaluated alone: a one-workload snapshot where it is the only (selector) policy,
 * so the answer is still the data plane's evaluator, never a second implementation. */

cJSON *ctl_mesh_json(const struct config *c)
{
	struct buf b;
	struct json_writer w;
	cJSON *mesh = NULL;

	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	config_dump_mesh_write(c, &w);
	if (json_writer_finish(&w) == 0)
		json_parse((const char *)buf_rptr(&b), buf_len(&b), NULL, &mesh, NULL);
	buf_fini(&b);
	return mesh;
}

static bool policy_alone(const cJSON *mesh, const struct config_workload *dst,
			 const struct config_policy *p, const struct authz_conn *conn,
			 struct authz_result *res)
{
	cJSON *doc = cJSON_CreateObject(), *wls = cJSON_AddArrayToObject(doc, "workloads");
	cJSON *w = cJSON_CreateObject(), *ips = cJSON_AddArrayToObject(w, "workloadIps");
	cJSON *refs = cJSON_AddArrayToObject(w, "authorizationPolicies");
	cJSON *pols = cJSON_AddArrayToObject(doc, "policies");
	const cJSON *pj = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(mesh, "policies"),
					     (int)p->index);
	cJSON *pc;
	char ip[CONFIG_IP_STRLEN];
	char *text;
	struct config *one;
	struct errlist errs = {0};
	bool ok = false;

	cJSON_AddStringToObject(w, "uid", dst->uid);
	cJSON_AddStringToObject(w, "namespace", dst->namespace);
	for (size_t i = 0; i < dst->n_workload_ips; i++) {
		ip_str(&dst->workload_ips[i], ip, sizeof(ip));
		cJSON_AddItemToArray(ips, cJSON_CreateString(ip));
	}
	cJSON_AddItemToArray(refs, cJSON_CreateString(p->key));
	cJSON_AddItemToArray(wls, w);
	pc = cJSON_Duplicate(pj, true);
	cJSON_ReplaceItemInObjectCaseSensitive(pc, "scope", cJSON_CreateString("WorkloadSelector"));
	cJSON_ReplaceItemInObjectCaseSensitive(pc, "dryRun", cJSON_CreateFalse());
	cJSON_AddItemToArray(pols, pc);
	text = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	one = text ? config_parse("trace", text, strlen(text), 1, &errs) : NULL;
	cJSON_free(text);
	errlist_fini(&errs);
	if (one) {
		const struct config_workload *d = config_workload_by_uid(one, dst->uid);
		ok = d && authz_check(one, d, conn, res) == 0;
		config_unref(one);
	}
	return ok;
}

static const char *scope_name(enum config_policy_scope s)
{
	return s == CONFIG_SCOPE_GLOBAL	     ? "Global"
	       : s == CONFIG_SCOPE_NAMESPACE ? "Namespace"
					     : "WorkloadSelector";
}

struct plist {
	const struct config_policy *v[512];
	size_t n;
};

static void plist_add(struct plist *l, const struct config_policy *p)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] == p)
			return;
	if (l->n < ARRAY_LEN(l->v))
		l->v[l->n++] = p;
}

/* The policies authz_check considers for dst, in its order (authz.h). */
void ctl_applicable_policies(const struct config *c, const struct config_workload *dst,
			     const struct config_policy **out, size_t cap, size_t *n)
{
	struct plist l = {.n = 0};
	size_t k;
	const struct config_policy *const *v = config_policies_by_namespace(c, dst->namespace, &k);

	for (size_t i = 0; i < k; i++)
		plist_add(&l, v[i]);
	v = config_policies_global(c, &k);
	for (size_t i = 0; i < k; i++)
		plist_add(&l, v[i]);
	for (size_t i = 0; i < dst->n_authorization_policies; i++)
		plist_add(&l, dst->policies[i]);
	*n = MIN(l.n, cap);
	memcpy(out, l.v, *n * sizeof(*out));
}

/* {"policy","action","scope","dryRun","matched","rule"} per applicable policy, then the
 * verdict of authz_check itself. */
cJSON *ctl_authz_point(const struct config *c, const cJSON *mesh, const struct config_workload *dst,
		       const struct authz_conn *conn)
{
	cJSON *o = cJSON_CreateObject(), *arr;
	const struct config_policy *ps[512];
	size_t n;
	struct authz_result res;
	char line[AUTHZ_REASON_MAX];

	ctl_applicable_policies(c, dst, ps, ARRAY_LEN(ps), &n);
	arr = cJSON_AddArrayToObject(o, "policies");
	for (size_t i = 0; i < n; i++) {
		cJSON *pj = cJSON_CreateObject();
		struct authz_result one;
		bool matched = false;

		cJSON_AddStringToObject(pj, "policy", ps[i]->key);
		cJSON_AddStringToObject(pj, "action",
					ps[i]->action == CONFIG_ACTION_DENY ? "DENY" : "ALLOW");
		cJSON_AddStringToObject(pj, "scope", scope_name(ps[i]->scope));
		cJSON_AddBoolToObject(pj, "dryRun", ps[i]->dry_run);
		if (policy_alone(mesh, dst, ps[i], conn, &one)) {
			matched = one.reason == AUTHZ_REASON_DENY_MATCHED ||
				  one.reason == AUTHZ_REASON_ALLOW_MATCHED;
			cJSON_AddBoolToObject(pj, "matched", matched);
			if (matched)
				cJSON_AddNumberToObject(pj, "rule", (double)one.decided.rule);
			else
				cJSON_AddNullToObject(pj, "rule");
		} else {
			cJSON_AddNullToObject(pj, "matched");
			cJSON_AddNullToObject(pj, "rule");
		}
		cJSON_AddItemToArray(arr, pj);
	}
	authz_check(c, dst, conn, &res);
	authz_result_format(&res, line, sizeof(line));
	cJSON_AddStringToObject(o, "verdict", authz_verdict_name(res.verdict));
	cJSON_AddStringToObject(o, "reason", line);
	if (res.decided.policy) {
		cJSON_AddStringToObject(o, "decidingPolicy", res.decided.policy->key);
		cJSON_AddNumberToObject(o, "decidingRule", (double)res.decided.rule);
	} else {
		cJSON_AddNullToObject(o, "decidingPolicy");
		cJSON_AddNullToObject(o, "decidingRule");
	}
	return o;
}

/* ---- the walk --------------------------------------------------------------------------------
 */

struct req {
	const char *method, *path;
	const struct flag_list *headers;
};

int ctl_parse_to(const struct config *c, const char *to, const struct config_workload *src,
		 struct net_addr *orig, cJSON *dj, struct errbuf *eb)
{
	const char *colon = strrchr(to, ':');
	char host[256];
	unsigned long port;
	char *end;
	struct config_ip ip;
	struct net_ip nip;

	if (!colon || colon == to)
		return errbuf_set(eb, E_INVAL, "--to %s: expected HOST:PORT or IP:PORT", to);
	port = strtoul(colon + 1, &end, 10);
	if (*end || port == 0 || port > 65535)
		return errbuf_set(eb, E_INVAL, "--to %s: port must be 1..65535", to);
	snprintf(host, sizeof(host), "%.*s", (int)(colon - to), to);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	cJSON_AddStringToObject(dj, "requested", to);
	if (config_ip_parse(host, &ip) < 0) {
		const struct config_service *s =
			config_service_by_hostname(c, host, src ? src->namespace : NULL);
		const struct config_workload *w = NULL;
		struct errbuf e2;

		if (s) {
			size_t k = 0;
			for (k = 0; k < s->n_vips && s->vips[k].network[0]; k++)
				;
			if (k == s->n_vips)
				return errbuf_set(eb, E_INVAL,
						  "service %s has no VIP on the default network: "
						  "clients cannot address it by IP",
						  s->key);
			ip = s->vips[k].ip;
			cJSON_AddStringToObject(dj, "resolvedFrom", "service hostname -> VIP");
		} else if ((w = ctl_find_workload(c, host, &e2)) && w->n_workload_ips) {
			ip = w->workload_ips[0];
			cJSON_AddStringToObject(dj, "resolvedFrom", "workload -> its first IP");
		} else {
			return errbuf_set(eb, E_NOTFOUND,
					  "--to %s: no service hostname or workload \"%s\" in the "
					  "mesh config (an IP:PORT is taken as is)",
					  to, host);
		}
	}
	proxy_ip_to_net(&nip, &ip);
	net_addr_from_ip(orig, &nip, (uint16_t)port);
	return 0;
}

static void add_workload(cJSON *o, const char *key, const struct config_workload *w)
{
	cJSON *j;
	char n[256], ip[CONFIG_IP_STRLEN];

	if (!w) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	j = cJSON_AddObjectToObject(o, key);
	cJSON_AddStringToObject(j, "name", ctl_wl_name(w, n, sizeof(n)));
	cJSON_AddStringToObject(j, "uid", w->uid);
	cJSON_AddStringToObject(j, "identity", w->identity);
	cJSON_AddStringToObject(j, "node", w->node);
	cJSON_AddStringToObject(j, "protocol",
				w->protocol == CONFIG_PROTOCOL_HBONE ? "HBONE" : "TCP");
	if (w->n_workload_ips) {
		ip_str(&w->workload_ips[0], ip, sizeof(ip));
		cJSON_AddStringToObject(j, "ip", ip);
	}
}

static const char *kind_name(enum proxy_route_kind k)
{
	switch (k) {
	case PROXY_ROUTE_HBONE: return "HBONE";
	case PROXY_ROUTE_TCP: return "TCP";
	case PROXY_ROUTE_PASSTHROUGH: return "passthrough";
	default: return "fail";
	}
}

static void gateway_dest(const struct config_gateway *g, char *out, size_t cap)
{
	const struct config_gateway_dest *d = &g->destination;

	if (d->kind == CONFIG_GATEWAY_HOSTNAME) {
		snprintf(out, cap, "%s/%s", d->namespace, d->hostname);
	} else {
		char ip[CONFIG_IP_STRLEN];
		ip_str(&d->address.ip, ip, sizeof(ip));
		snprintf(out, cap, "%s/%s", d->address.network, ip);
	}
}

/* Every endpoint of svc for port, in order, with the weight ranges proxy_pick_endpoint gives
 * them: rnd is stepped by each pick's weight until the choice wraps around. */
static cJSON *endpoints_json(const struct config *c, const struct config_service *svc,
			     uint16_t port, const struct config_workload *src, bool waypoint_picks,
			     const struct net_addr *orig)
{
	cJSON *arr = cJSON_CreateArray();
	bool *eligible = xcalloc(svc->n_endpoints + 1, sizeof(bool));
	uint64_t *start = xcalloc(svc->n_endpoints + 1, sizeof(uint64_t));
	uint16_t *tport = xcalloc(svc->n_endpoints + 1, sizeof(uint16_t));
	uint64_t rnd = 0;
	char n[256], a[80], ip[CONFIG_IP_STRLEN];

	for (size_t guard = 0; guard <= svc->n_endpoints; guard++) {
		uint16_t tp = 0;
		const struct config_endpoint *e = proxy_pick_endpoint(svc, port, rnd, &tp);
		size_t i;

		if (!e)
			break;
		i = (size_t)(e - svc->endpoints);
		if (eligible[i])
			break; /* wrapped around */
		eligible[i] = true;
		start[i] = rnd;
		tport[i] = tp;
		rnd += e->workload->capacity ? e->workload->capacity : 1;
	}
	for (size_t i = 0; i < svc->n_endpoints; i++) {
		const struct config_workload *w = svc->endpoints[i].workload;
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "workload", ctl_wl_name(w, n, sizeof(n)));
		if (w->n_workload_ips) {
			ip_str(&w->workload_ips[0], ip, sizeof(ip));
			cJSON_AddStringToObject(o, "ip", ip);
		}
		cJSON_AddNumberToObject(o, "weight", w->capacity ? w->capacity : 1);
		cJSON_AddStringToObject(
			o, "status", w->status == CONFIG_HEALTH_HEALTHY ? "Healthy" : "Unhealthy");
		cJSON_AddBoolToObject(o, "eligible", eligible[i]);
		if (eligible[i]) {
			cJSON_AddNumberToObject(o, "targetPort", tport[i]);
			if (!waypoint_picks) {
				struct proxy_route r;
				proxy_decide_outbound(c, src, orig, start[i], HBONE_PORT, &r);
				cJSON_AddStringToObject(o, "route", kind_name(r.kind));
				addr_str(&r.target, a, sizeof(a));
				cJSON_AddStringToObject(o, "connectTo", a);
			}
		} else {
			cJSON_AddStringToObject(o, "why",
						w->n_workload_ips == 0
							? "no workload IP"
							: "not healthy (healthPolicy "
							  "OnlyHealthy)");
		}
		cJSON_AddItemToArray(arr, o);
	}
	free(eligible);
	free(start);
	free(tport);
	return arr;
}

static cJSON *waypoint_candidates(const struct config *c, const struct config_workload *src,
				  const struct net_addr *orig)
{
	cJSON *arr = cJSON_CreateArray();
	const struct config_workload *seen[64] = {0};
	size_t n = 0;
	char name[256];

	for (uint64_t rnd = 0; rnd < 256 && n < ARRAY_LEN(seen); rnd++) {
		struct proxy_route r;
		bool dup = false;

		proxy_decide_outbound(c, src, orig, rnd, HBONE_PORT, &r);
		if (!r.waypoint)
			break;
		for (size_t i = 0; i < n; i++)
			dup |= seen[i] == r.waypoint;
		if (dup)
			continue;
		seen[n++] = r.waypoint;
	}
	for (size_t i = 0; i < n; i++) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "workload", ctl_wl_name(seen[i], name, sizeof(name)));
		cJSON_AddStringToObject(o, "identity", seen[i]->identity);
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

static void set_verdict(cJSON *root, const char *v, const char *why)
{
	cJSON_AddStringToObject(root, "verdict", v);
	cJSON_AddStringToObject(root, "verdictReason", why);
}

/* Every backend's endpoints, each tagged with its service (the waypoint picks among them). */
static cJSON *backend_endpoints(const struct config *c, const struct ctl_l7_backend *b, size_t nb,
				const struct config_workload *src, const struct net_addr *orig)
{
	cJSON *all = cJSON_CreateArray();

	for (size_t i = 0; i < nb; i++) {
		cJSON *one = endpoints_json(c, b[i].svc, b[i].port, src, true, orig), *e;
		while ((e = cJSON_DetachItemFromArray(one, 0))) {
			cJSON_AddStringToObject(e, "service", b[i].svc->key);
			cJSON_AddItemToArray(all, e);
		}
		cJSON_Delete(one);
	}
	return all;
}

cJSON *ctl_explain_build(const struct config *c, const struct config_workload *src,
			 const char *src_ip_text, const struct net_addr *orig,
			 const struct ctl_l7_opts *l7)
{
	cJSON *root = cJSON_CreateObject(), *mesh = ctl_mesh_json(c);
	cJSON *sj = cJSON_AddObjectToObject(root, "source");
	cJSON *dj = cJSON_AddObjectToObject(root, "destination");
	cJSON *rj, *wj, *points, *ids, *l7req;
	struct proxy_route r;
	char a[80], g[256], name[256], line[1024];
	struct config_ip src_ip = {0}, dst_ip;
	struct net_ip nip;
	const struct config_service *svc;
	bool any_allow = false, any_deny = false, any_fail = false, forwarded = true;
	cJSON *l7p = NULL;
	struct ctl_l7_backend backends[64];
	size_t nb = 0;

	add_workload(sj, "workload", src);
	if (src && src->n_workload_ips)
		src_ip = src->workload_ips[0];
	else if (src_ip_text)
		config_ip_parse(src_ip_text, &src_ip);
	ip_str(&src_ip, g, sizeof(g));
	cJSON_AddStringToObject(sj, "ip", g);
	cJSON_AddStringToObject(sj, "identity", src ? src->identity : "");
	if (!src)
		cJSON_AddStringToObject(sj, "note",
					"not a workload of the mesh config: no ztunnel captures "
					"its traffic; shown as if one did, with no identity");
	addr_str(orig, a, sizeof(a));
	cJSON_AddStringToObject(dj, "address", a);
	net_addr_ip(orig, &nip);
	proxy_ip_from_net(&dst_ip, &nip);
	svc = config_service_by_vip(c, "", &dst_ip);
	cJSON_AddStringToObject(dj, "service", svc ? svc->key : "");
	add_workload(dj, "workload", config_workload_by_ip(c, "", &dst_ip));

	/* The outbound decision, exactly as the source ztunnel makes it. */
	proxy_decide_outbound(c, src, orig, 0, HBONE_PORT, &r);
	rj = cJSON_AddObjectToObject(root, "route");
	cJSON_AddStringToObject(rj, "decidedBy", "proxy_decide_outbound");
	cJSON_AddStringToObject(rj, "kind", kind_name(r.kind));
	if (r.kind == PROXY_ROUTE_FAIL)
		cJSON_AddStringToObject(rj, "reason", r.reason ? r.reason : "");
	/* For a service without a waypoint the target depends on the endpoint pick: each
	 * candidate below carries its own. */
	if (r.kind == PROXY_ROUTE_HBONE && !(svc && !r.waypoint))
		cJSON_AddStringToObject(rj, "authority", r.authority);

	wj = cJSON_AddObjectToObject(rj, "waypoint");
	{
		const struct config_gateway *gw = svc && svc->waypoint.present ? &svc->waypoint
						  : r.dst && r.dst->waypoint.present
							  ? &r.dst->waypoint
							  : NULL;
		const struct config_workload *dw = config_workload_by_ip(c, "", &dst_ip);

		if (!gw && dw && dw->waypoint.present)
			gw = &dw->waypoint;
		cJSON_AddBoolToObject(wj, "used", r.waypoint != NULL);
		if (gw)
			gateway_dest(gw, g, sizeof(g));
		if (r.waypoint) {
			snprintf(line, sizeof(line), "%s %s has waypoint \"%s\"",
				 svc && svc->waypoint.present ? "service" : "workload",
				 svc && svc->waypoint.present
					 ? svc->key
					 : ctl_wl_name(r.dst, name, sizeof(name)),
				 g);
			cJSON_AddStringToObject(wj, "why", line);
			cJSON_AddItemToObject(wj, "candidates", waypoint_candidates(c, src, orig));
			cJSON_AddStringToObject(wj, "selection",
						"weighted random by capacity among healthy "
						"waypoint endpoints, one pick per connection");
		} else if (gw && r.kind == PROXY_ROUTE_FAIL) {
			snprintf(
				line, sizeof(line),
				"a waypoint \"%s\" is configured but unusable (%s): the connection "
				"fails closed instead of bypassing it",
				g, r.reason ? r.reason : "");
			cJSON_AddStringToObject(wj, "why", line);
		} else if (gw) {
			snprintf(line, sizeof(line),
				 "waypoint \"%s\" is configured, but the source is that waypoint: "
				 "it does not loop back through itself",
				 g);
			cJSON_AddStringToObject(wj, "why", line);
		} else if (r.kind == PROXY_ROUTE_PASSTHROUGH) {
			cJSON_AddStringToObject(wj, "why", "the destination is not in the mesh");
		} else {
			cJSON_AddStringToObject(wj, "why",
						svc ? "neither the service nor the chosen endpoint "
						      "has a waypoint"
						    : "the destination workload has no waypoint");
		}
	}
	if (r.kind != PROXY_ROUTE_FAIL && !(svc && !r.waypoint)) {
		addr_str(&r.target, a, sizeof(a));
		cJSON_AddStringToObject(rj, "connectTo", a);
	} else if (r.kind != PROXY_ROUTE_FAIL) {
		cJSON_AddStringToObject(rj, "connectTo", "the picked endpoint (see endpoints)");
	}

	/* The waypoint's L7 decision comes first: its route picks the backends. */
	if (r.waypoint && r.kind == PROXY_ROUTE_HBONE) {
		l7p = ctl_l7_point(c, r.waypoint, orig, svc, net_addr_port(orig), src,
				   src_ip.family ? &src_ip : NULL, l7, backends,
				   ARRAY_LEN(backends), &nb);
		forwarded = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l7p, "forwarded"));
	}

	/* Endpoints: every candidate; the choice is weighted random, so all are listed. */
	if (r.waypoint && l7p && forwarded && nb) {
		cJSON *ej = cJSON_AddObjectToObject(root, "endpoints");
		cJSON_AddStringToObject(
			ej, "selection",
			"the waypoint picks per request among the healthy endpoints of the "
			"backend its route chose: two weighted random picks (proxy_pick_endpoint), "
			"the one with fewer requests in flight");
		cJSON_AddItemToObject(ej, "candidates",
				      backend_endpoints(c, backends, nb, src, orig));
	} else if (svc) {
		cJSON *ej = cJSON_AddObjectToObject(root, "endpoints");
		bool wp = r.waypoint != NULL;
		cJSON_AddStringToObject(
			ej, "selection",
			wp ? "not reached: the waypoint answers this request itself (the service's "
			     "endpoints are listed)"
			   : "weighted random by capacity among healthy endpoints, one pick per "
			     "connection (proxy_pick_endpoint)");
		cJSON_AddItemToObject(ej, "candidates",
				      endpoints_json(c, svc, net_addr_port(orig), src, wp, orig));
	}

	/* Expected server identity. */
	ids = cJSON_AddArrayToObject(root, "expectedServerIdentities");
	if (r.kind == PROXY_ROUTE_HBONE && r.waypoint) {
		cJSON_AddItemToArray(ids, cJSON_CreateString(r.waypoint->identity));
	} else if (r.kind == PROXY_ROUTE_HBONE && svc) {
		const cJSON *cands = cJSON_GetObjectItemCaseSensitive(
			cJSON_GetObjectItemCaseSensitive(root, "endpoints"), "candidates");
		const cJSON *e;
		CTL_EACH(e, cands)
		{
			const struct config_workload *w;
			struct errbuf eb;
			if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "eligible")) ||
			    strcmp(ctl_jstr(e, "route"), "HBONE"))
				continue;
			w = ctl_find_workload(c, ctl_jstr(e, "ip"), &eb);
			if (w) {
				bool dup = false;
				const cJSON *x;
				CTL_EACH(x, ids) dup |= strcmp(x->valuestring, w->identity) == 0;
				if (!dup)
					cJSON_AddItemToArray(ids, cJSON_CreateString(w->identity));
			}
		}
	} else if (r.kind == PROXY_ROUTE_HBONE && r.dst) {
		cJSON_AddItemToArray(ids, cJSON_CreateString(r.dst->identity));
	}

	l7req = cJSON_AddObjectToObject(root, "request");
	cJSON_AddStringToObject(l7req, "method", l7->method ? l7->method : "");
	cJSON_AddStringToObject(l7req, "path", l7->path ? l7->path : "");
	{
		cJSON *h = cJSON_AddArrayToObject(l7req, "headers");
		for (int i = 0; l7->headers && i < l7->headers->n; i++)
			cJSON_AddItemToArray(h, cJSON_CreateString(l7->headers->items[i]));
	}

	/* Enforcement points. */
	points = cJSON_AddArrayToObject(root, "enforcement");
	if (r.kind == PROXY_ROUTE_FAIL) {
		snprintf(line, sizeof(line), "the source ztunnel refuses the connection: %s",
			 r.reason ? r.reason : "");
		set_verdict(root, "fail", line);
		goto out;
	}
	if (r.kind == PROXY_ROUTE_PASSTHROUGH) {
		set_verdict(root, "allow",
			    "passthrough: the destination is not in the mesh, so no mesh policy "
			    "applies");
		goto out;
	}
	if (l7p) {
		cJSON_AddItemToArray(points, l7p);
		if (!forwarded) {
			if (ctl_jnum(l7p, "status") > 0)
				cJSON_AddNumberToObject(root, "httpStatus",
							ctl_jnum(l7p, "status"));
			set_verdict(root, ctl_jstr(l7p, "verdict"), ctl_jstr(l7p, "reason"));
			goto out;
		}
	}
	{
		/* Destination ztunnel(s): one per distinct destination workload. */
		const struct config_workload *dsts[64];
		uint16_t ports[64];
		size_t nd = 0;

		if (svc || nb) {
			const cJSON *cands = cJSON_GetObjectItemCaseSensitive(
				cJSON_GetObjectItemCaseSensitive(root, "endpoints"), "candidates");
			const cJSON *e;
			CTL_EACH(e, cands)
			{
				struct errbuf eb;
				const struct config_workload *w;
				if (!cJSON_IsTrue(
					    cJSON_GetObjectItemCaseSensitive(e, "eligible")) ||
				    nd == ARRAY_LEN(dsts))
					continue;
				w = ctl_find_workload(c, ctl_jstr(e, "ip"), &eb);
				if (w) {
					dsts[nd] = w;
					ports[nd++] = (uint16_t)ctl_jnum(e, "targetPort");
				}
			}
		} else if (r.dst) {
			dsts[nd] = r.dst;
			ports[nd++] = net_addr_port(orig);
		}
		for (size_t i = 0; i < nd; i++) {
			cJSON *p;
			struct authz_conn conn = {0};
			const struct config_workload *peer = r.waypoint ? r.waypoint : src;
			bool hbone = r.waypoint || dsts[i]->protocol == CONFIG_PROTOCOL_HBONE;
			const cJSON *v;

			conn.src_ip = peer && peer->n_workload_ips ? peer->workload_ips[0] : src_ip;
			conn.dst_ip = dsts[i]->workload_ips[0];
			conn.dst_port = ports[i];
			conn.src_identity = hbone && peer ? peer->identity : "";
			p = ctl_authz_point(c, mesh, dsts[i], &conn);
			if (r.waypoint && dsts[i]->protocol != CONFIG_PROTOCOL_HBONE) {
				/* pkg/waypoint answers 503 for a plain-TCP endpoint. */
				cJSON_ReplaceItemInObjectCaseSensitive(p, "verdict",
								       cJSON_CreateString("fail"));
				cJSON_ReplaceItemInObjectCaseSensitive(
					p, "reason",
					cJSON_CreateString("the waypoint does not forward to a "
							   "plain-TCP endpoint (503)"));
			}
			cJSON_AddStringToObject(p, "point", "destination ztunnel");
			cJSON_AddStringToObject(p, "workload",
						ctl_wl_name(dsts[i], name, sizeof(name)));
			cJSON_AddStringToObject(p, "node", dsts[i]->node);
			cJSON_AddStringToObject(p, "layer", "L4");
			cJSON_AddStringToObject(p, "peerIdentity", conn.src_identity);
			ip_str(&conn.src_ip, g, sizeof(g));
			cJSON_AddStringToObject(p, "peerIp", g);
			cJSON_AddNumberToObject(p, "port", conn.dst_port);
			if (!hbone)
				cJSON_AddStringToObject(
					p, "note",
					"plain TCP: enforced only if the destination's inbound "
					"traffic is captured (15006), with no peer identity");
			else if (r.waypoint)
				cJSON_AddStringToObject(
					p, "note",
					"the destination ztunnel sees the waypoint's identity, not "
					"the client's");
			v = cJSON_GetObjectItemCaseSensitive(p, "verdict");
			if (strcmp(v->valuestring, "allow") == 0)
				any_allow = true;
			else if (strcmp(v->valuestring, "fail") == 0)
				any_fail = true;
			else
				any_deny = true;
			cJSON_AddItemToArray(points, p);
		}
	}
	if ((any_deny || any_fail) && !any_allow) {
		const cJSON *p = cJSON_GetArrayItem(points, cJSON_GetArraySize(points) - 1);
		snprintf(line, sizeof(line), "destination ztunnel: %s%s", ctl_jstr(p, "reason"),
			 l7p ? "; the waypoint answers 503 (upstream refused)" : "");
		set_verdict(root, any_deny ? "deny" : "fail", line);
		if (l7p)
			cJSON_AddNumberToObject(root, "httpStatus", 503);
	} else if (any_deny || any_fail) {
		set_verdict(root, "depends",
			    "some endpoints allow and some deny: it depends on the endpoint the "
			    "weighted random choice picks");
	} else if (l7p) {
		const cJSON *p = cJSON_GetArrayItem(points, cJSON_GetArraySize(points) - 1);
		snprintf(line, sizeof(line), "%s; destination ztunnel: %s", ctl_jstr(l7p, "reason"),
			 p ? ctl_jstr(p, "reason") : "no enforcement point");
		if (ctl_jnum(l7p, "status") > 0) /* 0: a TCP port, no HTTP status */
			cJSON_AddNumberToObject(root, "httpStatus", 200);
		set_verdict(root, "allow", line);
	} else {
		const cJSON *p = cJSON_GetArrayItem(points, 0);
		snprintf(line, sizeof(line), "destination ztunnel: %s",
			 p ? ctl_jstr(p, "reason") : "no enforcement point");
		set_verdict(root, "allow", line);
	}
out:
	json_free(mesh);
	return root;
}
