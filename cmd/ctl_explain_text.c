/* `ambient ctl explain` and `describe`: flags, and the text rendering of the JSON explanation. */
#include "cmd/ctl.h"

#include <stdlib.h>
#include <string.h>

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

static void print_policies(const cJSON *p, const char *indent)
{
	const cJSON *pol;

	CTL_EACH(pol, cJSON_GetObjectItemCaseSensitive(p, "policies"))
	{
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(pol, "matched");
		char verdict[64];

		if (cJSON_IsTrue(m))
			snprintf(verdict, sizeof(verdict), "matched rule %d",
				 (int)ctl_jnum(pol, "rule"));
		else if (cJSON_IsFalse(m))
			snprintf(verdict, sizeof(verdict), "no match");
		else
			snprintf(verdict, sizeof(verdict), "not evaluated");
		printf("%s%-5s %-16s %s%s: %s\n", indent, ctl_jstr(pol, "action"),
		       ctl_jstr(pol, "scope"), ctl_jstr(pol, "policy"),
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pol, "dryRun")) ? " (dry-run)"
										     : "",
		       verdict);
	}
	if (!cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "policies")))
		printf("%s(no policy applies)\n", indent);
}

/* The waypoint's L7 point (ctl_l7_point). */
static void print_l7(const cJSON *it, int i)
{
	const cJSON *req = cJSON_GetObjectItemCaseSensitive(it, "request");
	const cJSON *az = cJSON_GetObjectItemCaseSensitive(it, "authz");
	const cJSON *rt = cJSON_GetObjectItemCaseSensitive(it, "route");
	const cJSON *rd = cJSON_GetObjectItemCaseSensitive(it, "redirect");
	const cJSON *l;

	printf("  %d. waypoint %s (L7), peer identity %s\n", i, ctl_jstr(it, "workload"),
	       or_dash(ctl_jstr(it, "peerIdentity")));
	if (strcmp(ctl_jstr(req, "protocol"), "TCP") == 0)
		printf("     request: a TCP connection to port %d (%s)", (int)ctl_jnum(req, "port"),
		       ctl_jstr(req, "tcpNote"));
	else
		printf("     request: %s %s, host %s, port %d", ctl_jstr(req, "method"),
		       ctl_jstr(req, "path"), or_dash(ctl_jstr(req, "host")),
		       (int)ctl_jnum(req, "port"));
	if (*ctl_jstr(req, "normalizedPath") &&
	    strcmp(ctl_jstr(req, "normalizedPath"), ctl_jstr(req, "path")))
		printf(" (normalized %s: %s)", ctl_jstr(req, "normalization"),
		       ctl_jstr(req, "normalizedPath"));
	printf("\n");
	CTL_EACH(l, cJSON_GetObjectItemCaseSensitive(req, "headers"))
	printf("              %s\n", l->valuestring);
	if (*ctl_jstr(req, "note") && strcmp(ctl_jstr(req, "protocol"), "TCP") != 0)
		printf("     note: %s\n", ctl_jstr(req, "note"));
	if (az) {
		printf("     L7 authorization (l7_authz_check):\n");
		print_policies(it, "       ");
		printf("       verdict: %s: %s\n", ctl_jstr(az, "verdict"), ctl_jstr(az, "reason"));
		if (*ctl_jstr(az, "auditPolicy"))
			printf("       audit: %s rule %d\n", ctl_jstr(az, "auditPolicy"),
			       (int)ctl_jnum(az, "auditRule"));
	}
	if (rt) {
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rt, "default")))
			printf("     route: default: %s\n", ctl_jstr(rt, "why"));
		else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rt, "matched")))
			printf("     route (l7_route_select): %s rule %d%s%s, match %s\n",
			       ctl_jstr(rt, "name"), (int)ctl_jnum(rt, "rule"),
			       *ctl_jstr(rt, "ruleName") ? " " : "", ctl_jstr(rt, "ruleName"),
			       ctl_jstr(rt, "matchPath"));
		else if (*ctl_jstr(rt, "error"))
			printf("     route: %s\n", ctl_jstr(rt, "error"));
		else
			printf("     route (l7_route_select): none matched\n");
	}
	if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(it, "filters"))) {
		printf("     filters:");
		CTL_EACH(l, cJSON_GetObjectItemCaseSensitive(it, "filters"))
		printf(" %s", l->valuestring);
		printf("\n");
	}
	if (rd)
		printf("     redirect: %d%s%s%s%s\n", (int)ctl_jnum(rd, "statusCode"),
		       *ctl_jstr(rd, "hostname") ? ", host " : "", ctl_jstr(rd, "hostname"),
		       *ctl_jstr(rd, "path") ? ", path " : "", ctl_jstr(rd, "path"));
	if (*ctl_jstr(it, "rewrittenPath") || *ctl_jstr(it, "rewrittenHost"))
		printf("     rewrite: path %s, host %s\n", or_dash(ctl_jstr(it, "rewrittenPath")),
		       or_dash(ctl_jstr(it, "rewrittenHost")));
	if (*ctl_jstr(it, "requestTimeout"))
		printf("     timeout: %s\n", ctl_jstr(it, "requestTimeout"));
	CTL_EACH(l, cJSON_GetObjectItemCaseSensitive(it, "backends"))
	printf("     backend %s:%d weight %d (share %s)%s%s\n", ctl_jstr(l, "service"),
	       (int)ctl_jnum(l, "port"), (int)ctl_jnum(l, "weight"), ctl_jstr(l, "share"),
	       *ctl_jstr(l, "note") ? ": " : "", ctl_jstr(l, "note"));
	if (ctl_jnum(it, "status") > 0)
		printf("     result: %d, %s: %s\n", (int)ctl_jnum(it, "status"),
		       ctl_jstr(it, "verdict"), ctl_jstr(it, "reason"));
	else
		printf("     result: %s: %s\n", ctl_jstr(it, "verdict"), ctl_jstr(it, "reason"));
}

static void print_text(const cJSON *x)
{
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(x, "source");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(x, "destination");
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(x, "route");
	const cJSON *wp = cJSON_GetObjectItemCaseSensitive(r, "waypoint");
	const cJSON *sw = cJSON_GetObjectItemCaseSensitive(s, "workload");
	const cJSON *dw = cJSON_GetObjectItemCaseSensitive(d, "workload");
	const cJSON *ep = cJSON_GetObjectItemCaseSensitive(x, "endpoints");
	const cJSON *it;
	int i = 1;

	if (cJSON_IsObject(sw))
		printf("Source:       workload %s (%s), identity %s, node %s\n",
		       ctl_jstr(sw, "name"), ctl_jstr(s, "ip"), ctl_jstr(sw, "identity"),
		       or_dash(ctl_jstr(sw, "node")));
	else
		printf("Source:       %s (%s)\n", ctl_jstr(s, "ip"), ctl_jstr(s, "note"));
	printf("Destination:  %s", ctl_jstr(d, "address"));
	if (*ctl_jstr(d, "service"))
		printf(" = service %s (VIP)", ctl_jstr(d, "service"));
	else if (cJSON_IsObject(dw))
		printf(" = workload %s (%s)", ctl_jstr(dw, "name"), ctl_jstr(dw, "protocol"));
	else
		printf(" (not in the mesh config)");
	printf("\n\nRoute (source ztunnel; decided by the data plane's %s):\n",
	       ctl_jstr(r, "decidedBy"));
	printf("  kind:      %s", ctl_jstr(r, "kind"));
	if (*ctl_jstr(r, "reason"))
		printf(" (%s)", ctl_jstr(r, "reason"));
	printf("\n");
	if (*ctl_jstr(r, "connectTo"))
		printf("  connect:   %s%s%s\n", ctl_jstr(r, "connectTo"),
		       *ctl_jstr(r, "authority") ? ", :authority " : "", ctl_jstr(r, "authority"));
	printf("  waypoint:  %s: %s\n",
	       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(wp, "used")) ? "yes" : "no",
	       ctl_jstr(wp, "why"));
	CTL_EACH(it, cJSON_GetObjectItemCaseSensitive(wp, "candidates"))
	printf("             candidate %s (%s)\n", ctl_jstr(it, "workload"),
	       ctl_jstr(it, "identity"));
	if (ep) {
		printf("\nEndpoints (%s):\n", ctl_jstr(ep, "selection"));
		CTL_EACH(it, cJSON_GetObjectItemCaseSensitive(ep, "candidates"))
		{
			if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "eligible")))
				printf("  %-28s %-16s weight %-4d target port %d%s%s%s%s\n",
				       ctl_jstr(it, "workload"), or_dash(ctl_jstr(it, "ip")),
				       (int)ctl_jnum(it, "weight"), (int)ctl_jnum(it, "targetPort"),
				       *ctl_jstr(it, "route") ? ", " : "",
				       *ctl_jstr(it, "route") ? ctl_jstr(it, "route") : "",
				       *ctl_jstr(it, "service") ? ", backend " : "",
				       ctl_jstr(it, "service"));
			else
				printf("  %-28s %-16s not eligible: %s\n", ctl_jstr(it, "workload"),
				       or_dash(ctl_jstr(it, "ip")), ctl_jstr(it, "why"));
		}
		if (!cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ep, "candidates")))
			printf("  (none)\n");
	}
	printf("\nExpected server identity: ");
	if (!cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(x, "expectedServerIdentities")))
		printf("none (no mTLS on this path)\n");
	else {
		bool first = true;
		CTL_EACH(it, cJSON_GetObjectItemCaseSensitive(x, "expectedServerIdentities"))
		{
			printf("%s%s", first ? "" : ", ", it->valuestring);
			first = false;
		}
		printf("\n");
	}
	printf("\nEnforcement:\n");
	CTL_EACH(it, cJSON_GetObjectItemCaseSensitive(x, "enforcement"))
	{
		if (strcmp(ctl_jstr(it, "layer"), "L7") == 0) {
			print_l7(it, i++);
			continue;
		}
		printf("  %d. destination ztunnel for %s (node %s, L4), peer %s identity %s, port "
		       "%d\n",
		       i++, ctl_jstr(it, "workload"), or_dash(ctl_jstr(it, "node")),
		       ctl_jstr(it, "peerIp"), or_dash(ctl_jstr(it, "peerIdentity")),
		       (int)ctl_jnum(it, "port"));
		if (*ctl_jstr(it, "note"))
			printf("     note: %s\n", ctl_jstr(it, "note"));
		print_policies(it, "     ");
		printf("     verdict: %s\n", ctl_jstr(it, "reason"));
	}
	if (!cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(x, "enforcement")))
		printf("  (none)\n");
	printf("\nVerdict: %s: %s", ctl_jstr(x, "verdict"), ctl_jstr(x, "verdictReason"));
	if (cJSON_GetObjectItemCaseSensitive(x, "httpStatus"))
		printf(" (HTTP %d)", (int)ctl_jnum(x, "httpStatus"));
	printf("\n");
}

static const char explain_usage[] =
	"ambient ctl explain --config FILE|URL --from WORKLOAD|IP --to HOST:PORT|IP:PORT "
	"[--method M] [--path P] [--header K=V]... [--path-normalization MODE] "
	"[--reject-escaped-slashes] [-o json]";
static const char explain_example[] =
	"  ambient ctl explain --config mesh.json --from default/frontend --to "
	"app.default.svc.cluster.local:80\n"
	"  ambient ctl explain --config mesh.json --from 10.0.0.1 --to 10.0.0.2:8080 -o json\n"
	"  ambient ctl explain --config mesh.json --from client --to "
	"echo.server.svc.cluster.local:80 --method GET --path /admin --header x-user=bob\n"
	"exit: 0 allowed (or redirected by the waypoint), 5 denied, not found or failing, 1 cannot "
	"load, 2 usage";

int ctl_explain_main(int argc, char **argv)
{
	const char *cfg = NULL, *from = NULL, *to = NULL, *method = NULL, *path = NULL;
	const char *out = "text", *ca_root = NULL, *token_file = NULL, *norm = NULL;
	bool reject_escaped = false;
	struct flag_list headers = {.n = 0};
	struct ctl_l7_opts l7 = {0};
	char host[300];
	const struct flag fl[] = {
		{"config", FLAG_STR, &cfg, "mesh config file or http(s) URL", "SOURCE"},
		{"mesh-config", FLAG_STR, &cfg, "same as --config", "SOURCE"},
		{"ca-root", FLAG_STR, &ca_root, "root certificate for an https URL", "FILE"},
		{"token-file", FLAG_STR, &token_file, "bearer token for the CA's /v1/config",
		 "FILE"},
		{"from", FLAG_STR, &from, "source: workload uid, namespace/name, name or IP",
		 "WHO"},
		{"to", FLAG_STR, &to, "destination: service hostname:port or IP:port", "DEST"},
		{"method", FLAG_STR, &method, "HTTP method (evaluated by a waypoint)", "M"},
		{"path", FLAG_STR, &path, "HTTP path (evaluated by a waypoint)", "P"},
		{"header", FLAG_STR_LIST, &headers, "HTTP header K=V (repeatable)", "K=V"},
		{"path-normalization", FLAG_STR, &norm,
		 "as the waypoint's flag: DEFAULT (BASE), NONE, BASE, MERGE_SLASHES, "
		 "DECODE_AND_MERGE_SLASHES",
		 "MODE"},
		{"reject-escaped-slashes", FLAG_BOOL, &reject_escaped,
		 "as the waypoint's flag: a path with %2F or %5C gets 400", NULL},
		{"o", FLAG_STR, &out, "output: text (default) or json", "FORMAT"},
	};
	const char *pos[1];
	int npos, rc;
	struct errlist errs = {0};
	struct errbuf eb = {0};
	struct config *c;
	const struct config_workload *src = NULL;
	struct config_ip sip;
	struct net_addr orig;
	cJSON *x, *dj;
	const char *v;

	rc = ctl_parse("explain", explain_usage, explain_example, fl, ARRAY_LEN(fl), argc, argv,
		       pos, 0, &npos);
	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (!cfg || !from || !to || (strcmp(out, "text") && strcmp(out, "json")) ||
	    ctl_l7_norm_parse(norm, reject_escaped, &l7.norm) < 0) {
		fprintf(stderr, "usage: %s\n", explain_usage);
		return CTL_EXIT_USAGE;
	}
	c = ctl_load_config(cfg, ca_root, token_file, &errs, NULL, &eb);
	if (!c) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.items[i]);
		fprintf(stderr, "ctl explain: %s%s\n", eb.msg,
			errs.n ? " (run `ambient ctl check` for details)" : "");
		errlist_fini(&errs);
		return CTL_EXIT_FAIL;
	}
	if (config_ip_parse(from, &sip) == 0) {
		src = config_workload_by_ip(c, "", &sip);
	} else if (!(src = ctl_find_workload(c, from, &eb))) {
		fprintf(stderr, "ctl explain: --from %s: %s\n", from, eb.msg);
		config_unref(c);
		return CTL_EXIT_USAGE;
	}
	dj = cJSON_CreateObject();
	if (ctl_parse_to(c, to, src, &orig, dj, &eb) < 0) {
		fprintf(stderr, "ctl explain: %s\n", eb.msg);
		cJSON_Delete(dj);
		config_unref(c);
		return CTL_EXIT_USAGE;
	}
	/* The Host a client like curl sends for --to (":80" left out). */
	snprintf(host, sizeof(host), "%s", to);
	if (strlen(host) > 3 && strcmp(host + strlen(host) - 3, ":80") == 0)
		host[strlen(host) - 3] = '\0';
	l7.method = method;
	l7.path = path;
	l7.host = host;
	l7.headers = &headers;
	x = ctl_explain_build(c, src, from, &orig, &l7);
	{
		/* How --to was resolved goes into the destination object. */
		cJSON *d = cJSON_GetObjectItemCaseSensitive(x, "destination");
		cJSON *it = dj->child;
		while (it) {
			cJSON *next = it->next;
			cJSON_AddItemToObject(d, it->string, cJSON_DetachItemViaPointer(dj, it));
			it = next;
		}
		cJSON_Delete(dj);
	}
	if (strcmp(out, "json") == 0)
		ctl_print_json(x, stdout);
	else
		print_text(x);
	v = ctl_jstr(x, "verdict");
	rc = strcmp(v, "allow") == 0 || strcmp(v, "redirect") == 0 ? CTL_EXIT_OK : CTL_EXIT_DENIED;
	cJSON_Delete(x);
	config_unref(c);
	return rc;
}
