/* `ambient ctl explain`, L7 part: one HTTP request evaluated at a waypoint with the waypoint's own
 * decision code (pkg/l7: l7_path_normalize, l7_authz_check, l7_route_select, l7_backend_pick,
 * l7_path_rewrite), in the order pkg/waypoint applies them (l7.h "Request flow"). */
#include "cmd/ctl.h"
#include "pkg/waypoint/waypoint.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const norm_names[] = {"NONE", "BASE", "MERGE_SLASHES",
					 "DECODE_AND_MERGE_SLASHES"};

int ctl_l7_norm_parse(const char *s, bool reject_escaped, struct l7_norm_opts *o)
{
	o->reject_escaped_slashes = reject_escaped;
	if (!s || strcasecmp(s, "DEFAULT") == 0) {
		o->mode = L7_NORM_BASE;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_LEN(norm_names); i++) {
		if (strcasecmp(s, norm_names[i]) == 0) {
			o->mode = (enum l7_norm_mode)i;
			return 0;
		}
	}
	return -1;
}

static const char *action_name(enum config_l7_action a)
{
	return a == CONFIG_L7_DENY ? "DENY" : a == CONFIG_L7_AUDIT ? "AUDIT" : "ALLOW";
}

static const char *match_type(const struct config_route_match *m)
{
	switch (m->path.type) {
	case CONFIG_PATH_EXACT: return "Exact";
	case CONFIG_PATH_REGEX: return "RegularExpression";
	default: return "PathPrefix";
	}
}

static const char *filter_name(enum config_filter_type t)
{
	switch (t) {
	case CONFIG_FILTER_REQUEST_HEADER: return "RequestHeaderModifier";
	case CONFIG_FILTER_RESPONSE_HEADER: return "ResponseHeaderModifier";
	case CONFIG_FILTER_REDIRECT: return "RequestRedirect";
	case CONFIG_FILTER_URL_REWRITE: return "URLRewrite";
	default: return "another filter (not shown by ctl yet)";
	}
}

/* "K=V" or "K: V" into name/value copies; false when malformed. */
static bool split_header(const char *kv, char *name, size_t ncap, char *value, size_t vcap)
{
	const char *eq = strchr(kv, '='), *colon = strchr(kv, ':');
	const char *sep = eq && (!colon || eq < colon) ? eq : colon;
	const char *v;

	if (!sep || sep == kv || (size_t)(sep - kv) >= ncap)
		return false;
	snprintf(name, ncap, "%.*s", (int)(sep - kv), kv);
	v = sep + 1;
	while (*v == ' ')
		v++;
	snprintf(value, vcap, "%s", v);
	return true;
}

static void set_result(cJSON *p, int status, const char *verdict, const char *reason)
{
	cJSON_AddNumberToObject(p, "status", status);
	cJSON_AddStringToObject(p, "verdict", verdict);
	cJSON_AddStringToObject(p, "reason", reason);
}

/* The backendRefs with their shares as l7_backend_pick gives them (every rnd in one period,
 * or the weights when the period is too long to walk). */
static cJSON *backends_json(const struct config_route_rule *rule, struct ctl_l7_backend *out,
			    size_t cap, size_t *nb)
{
	cJSON *arr = cJSON_CreateArray();
	uint64_t sum = 0, *hits = xcalloc(rule->n_backend_refs + 1, sizeof(uint64_t));
	char key[512];

	for (size_t i = 0; i < rule->n_backend_refs; i++)
		sum += rule->backend_refs[i].weight;
	if (sum && sum <= (1u << 20)) {
		for (uint64_t r = 0; r < sum; r++) {
			int k = l7_backend_pick(rule, r);
			if (k >= 0 && (size_t)k < rule->n_backend_refs)
				hits[k]++;
		}
	} else {
		for (size_t i = 0; i < rule->n_backend_refs; i++)
			hits[i] = rule->backend_refs[i].weight;
	}
	for (size_t i = 0; i < rule->n_backend_refs; i++) {
		const struct config_backend_ref *b = &rule->backend_refs[i];
		cJSON *o = cJSON_CreateObject();
		char share[64];

		snprintf(key, sizeof(key), "%s/%s", b->service ? b->service->namespace : "",
			 b->service ? b->service->hostname : b->name);
		cJSON_AddStringToObject(o, "service", b->service ? key : b->name);
		cJSON_AddNumberToObject(o, "port", b->port);
		cJSON_AddNumberToObject(o, "weight", b->weight);
		if (sum) {
			snprintf(share, sizeof(share), "%llu/%llu", (unsigned long long)hits[i],
				 (unsigned long long)sum);
			cJSON_AddStringToObject(o, "share", share);
		} else {
			cJSON_AddStringToObject(o, "share", "0");
		}
		if (!b->service)
			cJSON_AddStringToObject(o, "note", "no such service: 503 when picked");
		cJSON_AddItemToArray(arr, o);
		if (hits[i] && b->service && *nb < cap)
			out[(*nb)++] = (struct ctl_l7_backend){b->service, b->port};
	}
	free(hits);
	return arr;
}

cJSON *ctl_l7_point(const struct config *c, const struct config_workload *wp,
		    const struct net_addr *orig, const struct config_service *svc, uint16_t port,
		    const struct config_workload *src, const struct config_ip *src_ip,
		    const struct ctl_l7_opts *o, struct ctl_l7_backend *out, size_t cap, size_t *nb)
{
	cJSON *p = cJSON_CreateObject(), *rq, *pols, *az, *rj, *hj;
	struct l7_header hdrs[64];
	char names[64][128], values[64][512];
	size_t nh = 0, npol;
	char path[L7_PATH_MAX], line[L7_PATH_MAX + 1024], name[256], host[512];
	const char *why = NULL;
	const char *method = o->method && *o->method ? o->method : "GET";
	const char *target = o->path && *o->path ? o->path : "/";
	const char *principal = src ? src->identity : "";
	struct l7_request req = {0};
	struct l7_authz_result res;
	struct l7_route_result rr;
	struct l7_table *t;
	struct errbuf eb = {0};
	const struct config_l7_policy *all = config_l7_policy_list(c, &npol);
	const struct config_route_rule *rule = NULL;

	*nb = 0;
	if (strncmp(principal, "spiffe://", 9) == 0)
		principal += 9; /* as the waypoint compares it (no "spiffe://") */
	cJSON_AddStringToObject(p, "point", "waypoint");
	cJSON_AddStringToObject(p, "workload", ctl_wl_name(wp, name, sizeof(name)));
	cJSON_AddStringToObject(p, "layer", "L7");
	cJSON_AddStringToObject(p, "peerIdentity", src ? src->identity : "");
	cJSON_AddStringToObject(p, "decidedBy",
				"pkg/l7: l7_path_normalize, l7_authz_check, l7_route_select, "
				"l7_backend_pick");

	/* The request as the waypoint sees it. */
	snprintf(host, sizeof(host), "%s", o->host ? o->host : "");
	for (int i = 0; o->headers && i < o->headers->n && nh < ARRAY_LEN(hdrs); i++) {
		if (!split_header(o->headers->items[i], names[nh], sizeof(names[nh]), values[nh],
				  sizeof(values[nh])))
			continue;
		if (strcasecmp(names[nh], "host") == 0)
			snprintf(host, sizeof(host), "%s", values[nh]);
		hdrs[nh] = (struct l7_header){{(const uint8_t *)names[nh], strlen(names[nh])},
					      {(const uint8_t *)values[nh], strlen(values[nh])}};
		nh++;
	}
	rq = cJSON_AddObjectToObject(p, "request");
	cJSON_AddStringToObject(rq, "method", method);
	cJSON_AddStringToObject(rq, "path", target);
	cJSON_AddStringToObject(rq, "host", host);
	cJSON_AddNumberToObject(rq, "port", port);
	cJSON_AddStringToObject(rq, "sourcePrincipal", principal);
	hj = cJSON_AddArrayToObject(rq, "headers");
	for (size_t i = 0; i < nh; i++) {
		snprintf(line, sizeof(line), "%.127s: %.511s", names[i], values[i]);
		cJSON_AddItemToArray(hj, cJSON_CreateString(line));
	}
	if (!o->method && !o->path && !(o->headers && o->headers->n))
		cJSON_AddStringToObject(rq, "note",
					"no --method/--path/--header given: a GET / is evaluated");

	/* 0. the tunnel: the waypoint answers the HBONE CONNECT with 400 and the client's
	 * ztunnel closes the client's connection (no HTTP response). */
	{
		const struct config_service *bsvc;
		const struct config_workload *bwl;

		/* The waypoint's own check (pkg/waypoint), not a copy. */
		why = waypoint_bind(c, wp, orig, &bsvc, &bwl);
	}
	if (why) {
		cJSON_AddNumberToObject(p, "connectStatus", 400);
		snprintf(
			line, sizeof(line),
			"the waypoint refuses the HBONE CONNECT (400): %s; the client's connection "
			"is closed",
			why);
		set_result(p, 0, "fail", line);
		return p;
	}

	/* A TCP port (services.appProtocols): the waypoint relays bytes, with L4-only authorization
	 * (pkg/l7 with l7_request.tcp: ALLOW rules with HTTP-only fields never match, DENY rules
	 * ignore those fields), no routes, to the service itself. */
	if (svc && config_service_app_protocol(svc, port) == CONFIG_APP_PROTOCOL_TCP) {
		cJSON_AddStringToObject(rq, "protocol", "TCP");
		cJSON_AddStringToObject(rq, "tcpNote",
					"appProtocols marks this port TCP: no HTTP is parsed, so "
					"--method/--path/--header play no part");
		req.method = "";
		req.path = "";
		req.host = "";
		req.source_principal = principal;
		req.source_ip = src_ip;
		req.dest_port = port;
		req.tcp = true;
		pols = cJSON_AddArrayToObject(p, "policies");
		for (size_t i = 0; i < npol; i++)
			if (l7_policy_applies(&all[i], svc, wp)) {
				cJSON *pj = cJSON_CreateObject();

				cJSON_AddStringToObject(pj, "policy", all[i].key);
				cJSON_AddStringToObject(pj, "action",
							action_name(all[i].spec.action));
				cJSON_AddStringToObject(pj, "scope", "targetRefs");
				cJSON_AddItemToArray(pols, pj);
			}
		l7_authz_check(c, svc, wp, &req, &res);
		az = cJSON_AddObjectToObject(p, "authz");
		cJSON_AddStringToObject(az, "verdict", res.allow ? "allow" : "deny");
		if (res.policy)
			snprintf(line, sizeof(line), "%s %s rule %zu", res.reason, res.policy->key,
				 res.rule);
		else
			snprintf(line, sizeof(line), "%s", res.reason ? res.reason : "");
		cJSON_AddStringToObject(az, "reason", line);
		if (!res.allow) {
			snprintf(line, sizeof(line), "waypoint (TCP port): connection reset: %s",
				 ctl_jstr(az, "reason"));
			set_result(p, 0, "deny", line);
			return p;
		}
		if (*nb < cap)
			out[(*nb)++] = (struct ctl_l7_backend){svc, port};
		set_result(p, 0, "allow", "waypoint (TCP port): bytes relayed to the service");
		cJSON_AddBoolToObject(p, "forwarded", true);
		return p;
	}

	/* 1. path normalization (400). */
	cJSON_AddStringToObject(rq, "normalization", norm_names[o->norm.mode]);
	if (l7_path_normalize(target, strlen(target), &o->norm, path, sizeof(path), &why) < 0) {
		snprintf(line, sizeof(line), "the path is rejected by normalization: %s",
			 why ? why : "too long");
		set_result(p, 400, "fail", line);
		return p;
	}
	cJSON_AddStringToObject(rq, "normalizedPath", path);

	req.method = method;
	req.path = path;
	req.host = host;
	req.headers = hdrs;
	req.n_headers = nh;
	req.source_principal = principal;
	req.source_ip = src_ip;
	req.dest_port = port;

	/* 2. L7 authorization (403): each applicable policy alone (its first matching rule, with
	 * l7_rule_matches), then l7_authz_check's own verdict. */
	pols = cJSON_AddArrayToObject(p, "policies");
	for (size_t i = 0; i < npol; i++) {
		const struct config_l7_policy *pol = &all[i];
		cJSON *pj;
		long hit = -1;

		if (!l7_policy_applies(pol, svc, wp))
			continue;
		for (size_t k = 0; k < pol->spec.n_rules && hit < 0; k++)
			if (l7_rule_matches(&pol->spec.rules[k], &req))
				hit = (long)k;
		pj = cJSON_CreateObject();
		cJSON_AddStringToObject(pj, "policy", pol->key);
		cJSON_AddStringToObject(pj, "action", action_name(pol->spec.action));
		cJSON_AddStringToObject(pj, "scope", "targetRefs");
		cJSON_AddBoolToObject(pj, "matched", hit >= 0);
		if (hit >= 0)
			cJSON_AddNumberToObject(pj, "rule", (double)hit);
		else
			cJSON_AddNullToObject(pj, "rule");
		cJSON_AddItemToArray(pols, pj);
	}
	l7_authz_check(c, svc, wp, &req, &res);
	az = cJSON_AddObjectToObject(p, "authz");
	cJSON_AddStringToObject(az, "verdict", res.allow ? "allow" : "deny");
	if (res.policy)
		snprintf(line, sizeof(line), "%s %s rule %zu", res.reason, res.policy->key,
			 res.rule);
	else
		snprintf(line, sizeof(line), "%s", res.reason ? res.reason : "");
	cJSON_AddStringToObject(az, "reason", line);
	if (res.policy) {
		cJSON_AddStringToObject(az, "decidingPolicy", res.policy->key);
		cJSON_AddNumberToObject(az, "decidingRule", (double)res.rule);
	} else {
		cJSON_AddNullToObject(az, "decidingPolicy");
		cJSON_AddNullToObject(az, "decidingRule");
	}
	if (res.audit) {
		cJSON_AddStringToObject(az, "auditPolicy", res.audit->key);
		cJSON_AddNumberToObject(az, "auditRule", (double)res.audit_rule);
	}
	if (!res.allow) {
		snprintf(line, sizeof(line), "waypoint: %s", ctl_jstr(az, "reason"));
		set_result(p, 403, "deny", line);
		return p;
	}

	/* 3. routing (404), filters, backends (500). */
	rj = cJSON_AddObjectToObject(p, "route");
	t = l7_table_new(c, &eb);
	if (!t) {
		cJSON_AddStringToObject(rj, "error", eb.msg);
		set_result(p, 500, "fail", "cannot compile the routes");
		return p;
	}
	if (!svc || !l7_service_has_routes(t, svc, port)) {
		cJSON_AddBoolToObject(rj, "default", true);
		cJSON_AddStringToObject(
			rj, "why",
			svc ? "no HTTPRoute is attached to the service port: the waypoint forwards "
			      "to the service itself"
			    : "workload-addressed traffic: the waypoint forwards to the workload");
		if (svc && *nb < cap)
			out[(*nb)++] = (struct ctl_l7_backend){svc, port};
		l7_table_free(t);
		set_result(p, 200, "allow", "waypoint: forwarded (default route)");
		cJSON_AddBoolToObject(p, "forwarded", true);
		return p;
	}
	if (!l7_route_select(t, svc, port, &req, &rr)) {
		cJSON_AddBoolToObject(rj, "matched", false);
		cJSON_AddNullToObject(rj, "name");
		l7_table_free(t);
		set_result(p, 404, "not-found",
			   "waypoint: no route matched (404, the HTTPRoutes attached to the "
			   "service do not match this request)");
		return p;
	}
	rule = rr.rule;
	cJSON_AddBoolToObject(rj, "matched", true);
	cJSON_AddStringToObject(rj, "name", rr.route->key);
	cJSON_AddNumberToObject(rj, "rule", (double)rr.rule_index);
	if (rule->name && *rule->name)
		cJSON_AddStringToObject(rj, "ruleName", rule->name);
	if (rr.match) {
		cJSON_AddNumberToObject(rj, "match", (double)rr.match_index);
		snprintf(line, sizeof(line), "%s %s", match_type(rr.match),
			 rr.match->path.value ? rr.match->path.value : "/");
		cJSON_AddStringToObject(rj, "matchPath", line);
	} else {
		cJSON_AddNullToObject(rj, "match");
		cJSON_AddStringToObject(rj, "matchPath", "PathPrefix / (the rule's default)");
	}
	{
		cJSON *fj = cJSON_AddArrayToObject(p, "filters");
		for (size_t i = 0; i < rule->n_filters; i++) {
			const struct config_route_filter *fl = &rule->filters[i];
			char np[L7_PATH_MAX];
			cJSON_AddItemToArray(fj, cJSON_CreateString(filter_name(fl->type)));
			if (fl->type == CONFIG_FILTER_REDIRECT) {
				const struct config_redirect *rd = &fl->request_redirect;
				int code = rd->status_code ? rd->status_code : 302;
				cJSON *x = cJSON_AddObjectToObject(p, "redirect");
				cJSON_AddNumberToObject(x, "statusCode", code);
				if (rd->hostname && *rd->hostname)
					cJSON_AddStringToObject(x, "hostname", rd->hostname);
				if (rd->path.present &&
				    l7_path_rewrite(&rd->path, rr.match, path, np, sizeof(np)) >= 0)
					cJSON_AddStringToObject(x, "path", np);
				snprintf(line, sizeof(line),
					 "waypoint: redirect %d by route %s rule %zu", code,
					 rr.route->key, rr.rule_index);
				l7_table_free(t);
				set_result(p, code, "redirect", line);
				return p;
			}
			if (fl->type == CONFIG_FILTER_URL_REWRITE) {
				if (fl->url_rewrite.hostname && *fl->url_rewrite.hostname)
					cJSON_AddStringToObject(p, "rewrittenHost",
								fl->url_rewrite.hostname);
				if (fl->url_rewrite.path.present &&
				    l7_path_rewrite(&fl->url_rewrite.path, rr.match, path, np,
						    sizeof(np)) >= 0)
					cJSON_AddStringToObject(p, "rewrittenPath", np);
			}
		}
	}
	if (rule->timeouts.request && *rule->timeouts.request)
		cJSON_AddStringToObject(p, "requestTimeout", rule->timeouts.request);
	cJSON_AddStringToObject(p, "backendSelection",
				"weighted random per request (l7_backend_pick); share = the "
				"picks over one period of the weights");
	cJSON_AddItemToObject(p, "backends", backends_json(rule, out, cap, nb));
	l7_table_free(t);
	if (*nb == 0) {
		set_result(p, 500, "fail",
			   "waypoint: the route has no backend with a weight (500)");
		return p;
	}
	snprintf(line, sizeof(line), "waypoint: forwarded by route %s rule %zu",
		 cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rj, "name")), rr.rule_index);
	set_result(p, 200, "allow", line);
	cJSON_AddBoolToObject(p, "forwarded", true);
	return p;
}
