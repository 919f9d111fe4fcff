/* `ambient ctl describe workload|service NAME`: waypoint binding, policies at each enforcement
 * point, effective mTLS, endpoints, and a warning when traffic can likely bypass the waypoint. */
#include "cmd/ctl.h"

#include <stdlib.h>
#include <string.h>

/* Could a mesh client that is not the waypoint connect straight to w? Asked of authz_check with a
 * probe identity from an address that is no workload's. */
static bool bypass_allowed(const struct config *c, const struct config_workload *w,
			   const struct config_workload *waypoint)
{
	struct authz_conn conn = {0};
	struct authz_result res;
	char id[256];

	if (w->n_workload_ips == 0)
		return false;
	snprintf(id, sizeof(id), "spiffe://%s/ns/ctl-probe/sa/not-the-waypoint", w->trust_domain);
	if (waypoint && strcmp(waypoint->identity, id) == 0)
		return false;
	config_ip_parse("192.0.2.1", &conn.src_ip);
	conn.dst_ip = w->workload_ips[0];
	conn.dst_port = 80;
	conn.src_identity = id;
	authz_check(c, w, &conn, &res);
	return authz_allowed(&res);
}

static void add_policies(cJSON *o, const struct config *c, const struct config_workload *w)
{
	const struct config_policy *ps[512];
	size_t n;
	cJSON *arr = cJSON_AddArrayToObject(o, "policiesAtDestinationZtunnel");

	ctl_applicable_policies(c, w, ps, ARRAY_LEN(ps), &n);
	for (size_t i = 0; i < n; i++) {
		char line[600];
		snprintf(line, sizeof(line), "%s %s (%s%s)", ps[i]->key,
			 ps[i]->action == CONFIG_ACTION_DENY ? "DENY" : "ALLOW",
			 ps[i]->scope == CONFIG_SCOPE_GLOBAL	  ? "Global"
			 : ps[i]->scope == CONFIG_SCOPE_NAMESPACE ? "Namespace"
								  : "WorkloadSelector",
			 ps[i]->dry_run ? ", dry-run" : "");
		cJSON_AddItemToArray(arr, cJSON_CreateString(line));
	}
}

static const struct config_workload *waypoint_of(const struct config *c, const struct config_ip *ip,
						 uint16_t port, const char **why)
{
	struct net_addr a;
	struct net_ip nip;
	struct proxy_route r;

	proxy_ip_to_net(&nip, ip);
	net_addr_from_ip(&a, &nip, port);
	proxy_decide_outbound(c, NULL, &a, 0, 15008, &r);
	*why = r.kind == PROXY_ROUTE_FAIL ? r.reason : NULL;
	return r.waypoint;
}

static void l7_for(cJSON *o, const struct config *c, const struct config_service *s)
{
	cJSON *arr = cJSON_AddArrayToObject(o, "l7PoliciesAtWaypoint");
	const cJSON *p;

	CTL_EACH(p, config_l7_policies(c))
	{
		const cJSON *meta = cJSON_GetObjectItemCaseSensitive(p, "metadata");
		const cJSON *spec = cJSON_GetObjectItemCaseSensitive(p, "spec");
		const char *ns =
			*ctl_jstr(meta, "namespace") ? ctl_jstr(meta, "namespace") : "default";
		const cJSON *ref;
		CTL_EACH(ref, cJSON_GetObjectItemCaseSensitive(spec, "targetRefs"))
		{
			const char *rns =
				*ctl_jstr(ref, "namespace") ? ctl_jstr(ref, "namespace") : ns;
			char line[512];
			if (strcmp(ctl_jstr(ref, "kind"), "Service") ||
			    strcmp(ctl_jstr(ref, "name"), s->name) || strcmp(rns, s->namespace))
				continue;
			snprintf(line, sizeof(line), "%s/%s %s", ns, ctl_jstr(meta, "name"),
				 ctl_jstr(spec, "action"));
			cJSON_AddItemToArray(arr, cJSON_CreateString(line));
		}
	}
}

static cJSON *describe_workload(const struct config *c, const struct config_workload *w)
{
	cJSON *o = cJSON_CreateObject(), *ips, *svcs, *warn;
	char n[256], ip[CONFIG_IP_STRLEN];
	const struct config_workload *wp = NULL;
	const char *why = NULL;

	cJSON_AddStringToObject(o, "workload", ctl_wl_name(w, n, sizeof(n)));
	cJSON_AddStringToObject(o, "uid", w->uid);
	cJSON_AddStringToObject(o, "identity", w->identity);
	cJSON_AddStringToObject(o, "node", w->node);
	ips = cJSON_AddArrayToObject(o, "addresses");
	for (size_t i = 0; i < w->n_workload_ips; i++) {
		config_ip_format(&w->workload_ips[i], ip, sizeof(ip));
		cJSON_AddItemToArray(ips, cJSON_CreateString(ip));
	}
	cJSON_AddStringToObject(o, "status",
				w->status == CONFIG_HEALTH_HEALTHY ? "Healthy" : "Unhealthy");
	cJSON_AddStringToObject(o, "protocol",
				w->protocol == CONFIG_PROTOCOL_HBONE ? "HBONE" : "TCP");
	cJSON_AddStringToObject(
		o, "mtls",
		w->protocol == CONFIG_PROTOCOL_HBONE
			? "mesh clients reach it over HBONE (mTLS, peer identity checked by "
			  "policies); plaintext from outside the mesh arrives on 15006 with no "
			  "identity"
			: "none: clients connect in plaintext TCP; policies see no identity");
	if (w->waypoint.present && w->n_workload_ips)
		wp = waypoint_of(c, &w->workload_ips[0], 80, &why);
	if (wp)
		cJSON_AddStringToObject(o, "waypoint", ctl_wl_name(wp, n, sizeof(n)));
	else if (w->waypoint.present)
		cJSON_AddStringToObject(o, "waypoint", why ? why : "configured, not resolved");
	else
		cJSON_AddStringToObject(o, "waypoint", "None");
	svcs = cJSON_AddArrayToObject(o, "services");
	for (size_t i = 0; i < w->n_services; i++) {
		const struct config_service *s = w->services[i].service;
		char line[600];
		const struct config_workload *swp = NULL;
		const char *swhy = NULL;
		if (s && s->n_vips && s->n_ports)
			swp = waypoint_of(c, &s->vips[0].ip, s->ports[0].service_port, &swhy);
		snprintf(line, sizeof(line), "%s (waypoint: %s)", w->services[i].key,
			 swp			    ? ctl_wl_name(swp, n, sizeof(n))
			 : s && s->waypoint.present ? (swhy ? swhy : "configured")
						    : "None");
		cJSON_AddItemToArray(svcs, cJSON_CreateString(line));
		if (swp && !wp)
			wp = swp;
	}
	add_policies(o, c, w);
	warn = cJSON_AddArrayToObject(o, "warnings");
	if (wp && bypass_allowed(c, w, wp))
		cJSON_AddItemToArray(
			warn,
			cJSON_CreateString(
				"likely waypoint bypass: its L4 policies accept a client that is "
				"not "
				"the waypoint (a connection to the pod IP skips the waypoint and "
				"its "
				"L7 policies); add an ALLOW policy that admits only the waypoint's "
				"identity"));
	if (wp && w->protocol == CONFIG_PROTOCOL_TCP)
		cJSON_AddItemToArray(
			warn, cJSON_CreateString("it has a waypoint but protocol TCP: the last hop "
						 "from the waypoint is plaintext"));
	return o;
}

static cJSON *describe_service(const struct config *c, const struct config_service *s)
{
	cJSON *o = cJSON_CreateObject(), *arr, *eps, *warn;
	char n[256], ip[CONFIG_IP_STRLEN], line[600];
	const struct config_workload *wp = NULL;
	const char *why = NULL;

	cJSON_AddStringToObject(o, "service", s->key);
	cJSON_AddStringToObject(o, "name", s->name);
	arr = cJSON_AddArrayToObject(o, "vips");
	for (size_t i = 0; i < s->n_vips; i++) {
		config_ip_format(&s->vips[i].ip, ip, sizeof(ip));
		snprintf(line, sizeof(line), "%s/%s", s->vips[i].network, ip);
		cJSON_AddItemToArray(arr, cJSON_CreateString(line));
	}
	arr = cJSON_AddArrayToObject(o, "ports");
	for (size_t i = 0; i < s->n_ports; i++) {
		if (s->ports[i].target_port)
			snprintf(line, sizeof(line), "%u -> %u", s->ports[i].service_port,
				 s->ports[i].target_port);
		else
			snprintf(line, sizeof(line), "%u -> (each endpoint's mapping)",
				 s->ports[i].service_port);
		cJSON_AddItemToArray(arr, cJSON_CreateString(line));
	}
	if (s->n_vips && s->n_ports)
		wp = waypoint_of(c, &s->vips[0].ip, s->ports[0].service_port, &why);
	cJSON_AddStringToObject(o, "waypoint",
				wp		      ? ctl_wl_name(wp, n, sizeof(n))
				: s->waypoint.present ? (why ? why : "configured, not resolved")
						      : "None");
	l7_for(o, c, s);
	eps = cJSON_AddArrayToObject(o, "endpoints");
	warn = cJSON_CreateArray();
	for (size_t i = 0; i < s->n_endpoints; i++) {
		const struct config_workload *w = s->endpoints[i].workload;
		cJSON *e = cJSON_CreateObject();
		cJSON_AddStringToObject(e, "workload", ctl_wl_name(w, n, sizeof(n)));
		cJSON_AddStringToObject(
			e, "status", w->status == CONFIG_HEALTH_HEALTHY ? "Healthy" : "Unhealthy");
		cJSON_AddStringToObject(e, "protocol",
					w->protocol == CONFIG_PROTOCOL_HBONE ? "HBONE" : "TCP");
		cJSON_AddNumberToObject(e, "weight", w->capacity ? w->capacity : 1);
		add_policies(e, c, w);
		cJSON_AddItemToArray(eps, e);
		if (wp && bypass_allowed(c, w, wp)) {
			snprintf(line, sizeof(line),
				 "likely waypoint bypass: endpoint %s accepts clients that are not "
				 "the waypoint (direct connections to its IP skip the L7 policies)",
				 n);
			cJSON_AddItemToArray(warn, cJSON_CreateString(line));
		}
	}
	if (s->n_endpoints == 0)
		cJSON_AddItemToArray(warn,
				     cJSON_CreateString("no endpoints: connections to it fail"));
	cJSON_AddItemToObject(o, "warnings", warn);
	return o;
}

/* A small YAML-like rendering: stable, readable, and the same data as -o json. */
static void print_yamlish(const cJSON *v, int indent)
{
	const cJSON *it;

	CTL_EACH(it, v)
	{
		if (cJSON_IsString(it)) {
			if (it->string)
				printf("%*s%s: %s\n", indent, "", it->string,
				       *it->valuestring ? it->valuestring : "-");
			else
				printf("%*s- %s\n", indent, "", it->valuestring);
		} else if (cJSON_IsNumber(it)) {
			printf("%*s%s: %g\n", indent, "", it->string ? it->string : "-",
			       it->valuedouble);
		} else if (cJSON_IsArray(it) || cJSON_IsObject(it)) {
			if (it->string) {
				if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 0) {
					printf("%*s%s: (none)\n", indent, "", it->string);
					continue;
				}
				printf("%*s%s:\n", indent, "", it->string);
			} else {
				printf("%*s-\n", indent, "");
			}
			print_yamlish(it, indent + 2);
		}
	}
}

static const char describe_usage[] =
	"ambient ctl describe workload|service NAME --config FILE|URL [-o json]";

int ctl_describe_main(int argc, char **argv)
{
	const char *cfg = NULL, *out = "text", *ca_root = NULL, *token_file = NULL;
	const struct flag fl[] = {
		{"config", FLAG_STR, &cfg, "mesh config file or http(s) URL", "SOURCE"},
		{"mesh-config", FLAG_STR, &cfg, "same as --config", "SOURCE"},
		{"ca-root", FLAG_STR, &ca_root, "root certificate for an https URL", "FILE"},
		{"token-file", FLAG_STR, &token_file, "bearer token for the CA's /v1/config",
		 "FILE"},
		{"o", FLAG_STR, &out, "output: text (default) or json", "FORMAT"},
	};
	const char *pos[2];
	int npos, rc;
	struct errlist errs = {0};
	struct errbuf eb = {0};
	struct config *c;
	cJSON *x = NULL;

	rc = ctl_parse("describe", describe_usage,
		       "  ambient ctl describe workload default/app --config mesh.json\n"
		       "  ambient ctl describe service app.default.svc.cluster.local --config "
		       "mesh.json -o json",
		       fl, ARRAY_LEN(fl), argc, argv, pos, 2, &npos);
	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (npos != 2 || !cfg ||
	    (strcmp(pos[0], "workload") && strcmp(pos[0], "service") && strcmp(pos[0], "pod") &&
	     strcmp(pos[0], "svc"))) {
		fprintf(stderr, "usage: %s\n", describe_usage);
		return CTL_EXIT_USAGE;
	}
	c = ctl_load_config(cfg, ca_root, token_file, &errs, NULL, &eb);
	if (!c) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.items[i]);
		fprintf(stderr, "ctl describe: %s\n", eb.msg);
		errlist_fini(&errs);
		return CTL_EXIT_FAIL;
	}
	if (pos[0][0] == 'w' || pos[0][0] == 'p') {
		const struct config_workload *w = ctl_find_workload(c, pos[1], &eb);
		if (w)
			x = describe_workload(c, w);
	} else {
		const char *slash = strchr(pos[1], '/');
		const struct config_service *s = NULL;
		size_t n;
		const struct config_service *all = config_services(c, &n);
		if (slash) {
			char ns[256];
			snprintf(ns, sizeof(ns), "%.*s", (int)(slash - pos[1]), pos[1]);
			s = config_service_by_key(c, ns, slash + 1);
			for (size_t i = 0; i < n && !s; i++)
				if (strcmp(all[i].namespace, ns) == 0 &&
				    strcmp(all[i].name, slash + 1) == 0)
					s = &all[i];
		} else {
			s = config_service_by_hostname(c, pos[1], NULL);
			for (size_t i = 0; i < n && !s; i++)
				if (strcmp(all[i].name, pos[1]) == 0)
					s = &all[i];
		}
		if (s)
			x = describe_service(c, s);
		else
			errbuf_set(&eb, E_NOTFOUND,
				   "no service \"%s\" (give a hostname, namespace/hostname or "
				   "namespace/name)",
				   pos[1]);
	}
	if (!x) {
		fprintf(stderr, "ctl describe: %s\n", eb.msg);
		config_unref(c);
		return CTL_EXIT_FAIL;
	}
	if (strcmp(out, "json") == 0)
		ctl_print_json(x, stdout);
	else
		print_yamlish(x, 0);
	cJSON_Delete(x);
	config_unref(c);
	return CTL_EXIT_OK;
}
