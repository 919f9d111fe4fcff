/* `ambient ctl workloads|services|policies|certs|connections|config|log`: live state read from a
 * running process's admin API, in istioctl's table columns or as JSON. */
#include "cmd/ctl.h"

#include <stdlib.h>
#include <string.h>

struct live_opts {
	const char *admin, *out, *ns, *node, *name;
};

#define LIVE_FLAGS(o)                                                                              \
	{"admin", FLAG_STR, &(o).admin,                                                            \
	 "admin URL of a ztunnel, waypoint or CA "                                                 \
	 "(http://127.0.0.1:15000)",                                                               \
	 "URL"},                                                                                   \
		{"o", FLAG_STR, &(o).out, "output: table (default) or json", "FORMAT"},            \
		{"namespace", FLAG_STR, &(o).ns, "only this namespace", "NS"},                     \
		{"n", FLAG_STR, &(o).ns, "same as --namespace", "NS"},                             \
		{"node", FLAG_STR, &(o).node, "only workloads on this node", "NODE"},              \
	{                                                                                          \
		"name", FLAG_STR, &(o).name, "only this name", "NAME"                              \
	}

static int live_parse(const char *verb, const char *example, struct live_opts *o, int argc,
		      char **argv)
{
	const struct flag fl[] = {LIVE_FLAGS(*o)};
	const char *pos[1];
	int npos, rc;
	char usage[160];

	o->out = "table";
	snprintf(usage, sizeof(usage),
		 "ambient ctl %s [--admin URL] [--namespace NS] [--node NODE] [--name NAME] "
		 "[-o json]",
		 verb);
	rc = ctl_parse(verb, usage, example, fl, ARRAY_LEN(fl), argc, argv, pos, 0, &npos);
	if (rc)
		return rc > 0 ? 1 : -1;
	if (strcmp(o->out, "table") && strcmp(o->out, "json") && strcmp(o->out, "short")) {
		fprintf(stderr, "ctl %s: -o wants table or json, got '%s'\n", verb, o->out);
		return -1;
	}
	return 0;
}

/* The snapshot's "mesh" object inside a /config_dump, or NULL. */
static const cJSON *dump_mesh(const cJSON *dump)
{
	const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(dump, "config");
	const cJSON *snap = cJSON_GetObjectItemCaseSensitive(cfg, "snapshot");

	return cJSON_GetObjectItemCaseSensitive(snap, "mesh");
}

static bool keep(const char *filter, const char *v)
{
	return !filter || !*filter || strcmp(filter, v) == 0;
}

/* Loads the dump; prints the error and returns NULL on failure. */
static cJSON *fetch_dump(const char *verb, const char *admin)
{
	cJSON *d;
	struct errbuf eb = {0};

	if (ctl_admin_json(admin, "/config_dump", &d, &eb) < 0) {
		fprintf(stderr, "ctl %s: %s\n", verb, eb.msg);
		return NULL;
	}
	return d;
}

static const char *vip_text(const char *netaddr)
{
	return netaddr[0] == '/' ? netaddr + 1 : netaddr;
}

static void join(const cJSON *arr, char *out, size_t cap, bool vips)
{
	const cJSON *it;
	size_t n = 0;

	out[0] = '\0';
	CTL_EACH(it, arr)
	{
		if (!cJSON_IsString(it))
			continue;
		n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", n ? "," : "",
				      vips ? vip_text(it->valuestring) : it->valuestring);
	}
}

static void finish(struct ctl_table *t, const size_t *cols, size_t ncols, cJSON *json,
		   const struct live_opts *o)
{
	if (strcmp(o->out, "json") == 0) {
		ctl_print_json(json, stdout);
	} else {
		ctl_table_sort(t, cols, ncols);
		ctl_table_print(t, stdout);
	}
}

int ctl_workloads_main(int argc, char **argv)
{
	static const char *const head[] = {"NAMESPACE", "POD NAME", "ADDRESS",
					   "NODE",	"WAYPOINT", "PROTOCOL"};
	static const size_t sort[] = {0, 1, 3};
	struct live_opts o = {0};
	struct ctl_table t;
	cJSON *d, *out;
	const cJSON *w;
	int rc = live_parse("workloads",
			    "  ambient ctl workloads --admin http://127.0.0.1:15000 --node node-a",
			    &o, argc, argv);

	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (!(d = fetch_dump("workloads", o.admin)))
		return CTL_EXIT_FAIL;
	ctl_table_init(&t, head, ARRAY_LEN(head));
	out = cJSON_CreateArray();
	CTL_EACH(w, cJSON_GetObjectItemCaseSensitive(dump_mesh(d), "workloads"))
	{
		char addr[512];
		const cJSON *wp = cJSON_GetObjectItemCaseSensitive(w, "waypoint");
		const char *name = *ctl_jstr(w, "name") ? ctl_jstr(w, "name") : ctl_jstr(w, "uid");
		const char *row[6];

		if (!keep(o.ns, ctl_jstr(w, "namespace")) || !keep(o.node, ctl_jstr(w, "node")) ||
		    !keep(o.name, name))
			continue;
		join(cJSON_GetObjectItemCaseSensitive(w, "workloadIps"), addr, sizeof(addr), false);
		row[0] = ctl_jstr(w, "namespace");
		row[1] = name;
		row[2] = addr[0] ? addr : ctl_jstr(w, "hostname");
		row[3] = ctl_jstr(w, "node");
		row[4] = wp ? ctl_jstr(wp, "destination") : "None";
		row[5] = ctl_jstr(w, "protocol");
		ctl_table_add(&t, row);
		cJSON_AddItemToArray(out, cJSON_Duplicate(w, true));
	}
	finish(&t, sort, ARRAY_LEN(sort), out, &o);
	ctl_table_fini(&t);
	cJSON_Delete(out);
	cJSON_Delete(d);
	return CTL_EXIT_OK;
}

/* healthy/total endpoints of service key, from the workloads' "services" maps. */
static void endpoints_of(const cJSON *mesh, const char *key, int *healthy, int *total)
{
	const cJSON *w;

	*healthy = *total = 0;
	CTL_EACH(w, cJSON_GetObjectItemCaseSensitive(mesh, "workloads"))
	{
		if (!cJSON_GetObjectItemCaseSensitive(
			    cJSON_GetObjectItemCaseSensitive(w, "services"), key))
			continue;
		(*total)++;
		*healthy += strcmp(ctl_jstr(w, "status"), "Unhealthy") != 0;
	}
}

int ctl_services_main(int argc, char **argv)
{
	static const char *const head[] = {"NAMESPACE", "SERVICE NAME", "SERVICE VIP", "WAYPOINT",
					   "ENDPOINTS"};
	static const size_t sort[] = {0, 1};
	struct live_opts o = {0};
	struct ctl_table t;
	cJSON *d, *out;
	const cJSON *s, *mesh;
	int rc = live_parse("services", "  ambient ctl services -n default", &o, argc, argv);

	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (!(d = fetch_dump("services", o.admin)))
		return CTL_EXIT_FAIL;
	mesh = dump_mesh(d);
	ctl_table_init(&t, head, ARRAY_LEN(head));
	out = cJSON_CreateArray();
	CTL_EACH(s, cJSON_GetObjectItemCaseSensitive(mesh, "services"))
	{
		char vips[512], key[512], eps[32];
		const cJSON *wp = cJSON_GetObjectItemCaseSensitive(s, "waypoint");
		const char *row[5];
		int h, tot;
		cJSON *copy;

		if (!keep(o.ns, ctl_jstr(s, "namespace")) || !keep(o.name, ctl_jstr(s, "name")))
			continue;
		snprintf(key, sizeof(key), "%s/%s", ctl_jstr(s, "namespace"),
			 ctl_jstr(s, "hostname"));
		endpoints_of(mesh, key, &h, &tot);
		snprintf(eps, sizeof(eps), "%d/%d", h, tot);
		join(cJSON_GetObjectItemCaseSensitive(s, "vips"), vips, sizeof(vips), true);
		row[0] = ctl_jstr(s, "namespace");
		row[1] = ctl_jstr(s, "name");
		row[2] = vips;
		row[3] = wp ? ctl_jstr(wp, "destination") : "None";
		row[4] = eps;
		ctl_table_add(&t, row);
		copy = cJSON_Duplicate(s, true);
		cJSON_AddNumberToObject(copy, "healthyEndpoints", h);
		cJSON_AddNumberToObject(copy, "totalEndpoints", tot);
		cJSON_AddItemToArray(out, copy);
	}
	finish(&t, sort, ARRAY_LEN(sort), out, &o);
	ctl_table_fini(&t);
	cJSON_Delete(out);
	cJSON_Delete(d);
	return CTL_EXIT_OK;
}

int ctl_policies_main(int argc, char **argv)
{
	static const char *const head[] = {"NAMESPACE", "POLICY NAME", "ACTION", "SCOPE"};
	static const size_t sort[] = {0, 1};
	struct live_opts o = {0};
	struct ctl_table t;
	cJSON *d, *out;
	const cJSON *p;
	int rc = live_parse("policies", "  ambient ctl policies --namespace default -o json", &o,
			    argc, argv);

	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (!(d = fetch_dump("policies", o.admin)))
		return CTL_EXIT_FAIL;
	ctl_table_init(&t, head, ARRAY_LEN(head));
	out = cJSON_CreateArray();
	CTL_EACH(p, cJSON_GetObjectItemCaseSensitive(dump_mesh(d), "policies"))
	{
		char action[64];
		const char *row[4];

		if (!keep(o.ns, ctl_jstr(p, "namespace")) || !keep(o.name, ctl_jstr(p, "name")))
			continue;
		snprintf(action, sizeof(action), "%s%s", ctl_jstr(p, "action"),
			 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "dryRun")) ? " (dry-run)"
										     : "");
		row[0] = ctl_jstr(p, "namespace");
		row[1] = ctl_jstr(p, "name");
		row[2] = action;
		row[3] = ctl_jstr(p, "scope");
		ctl_table_add(&t, row);
		cJSON_AddItemToArray(out, cJSON_Duplicate(p, true));
	}
	finish(&t, sort, ARRAY_LEN(sort), out, &o);
	ctl_table_fini(&t);
	cJSON_Delete(out);
	cJSON_Delete(d);
	return CTL_EXIT_OK;
}

static void cert_row(struct ctl_table *t, cJSON *out, const char *name, const char *type,
		     const char *state, const char *serial, const char *nb, const char *na)
{
	int64_t now = ctl_now(), b = ctl_parse_time(nb), a = ctl_parse_time(na);
	bool valid = a >= 0 && now <= a && (b < 0 || now >= b);
	const char *row[7] = {name,
			      type,
			      strcmp(state, "ready") == 0 ? "Available" : "Unavailable",
			      valid ? "true" : "false",
			      serial,
			      na,
			      nb};
	cJSON *o = cJSON_CreateObject();

	ctl_table_add(t, row);
	cJSON_AddStringToObject(o, "name", name);
	cJSON_AddStringToObject(o, "type", type);
	cJSON_AddStringToObject(o, "state", state);
	cJSON_AddStringToObject(o, "status", row[2]);
	cJSON_AddBoolToObject(o, "valid", valid);
	cJSON_AddStringToObject(o, "serialNumber", serial);
	cJSON_AddStringToObject(o, "notAfter", na);
	cJSON_AddStringToObject(o, "notBefore", nb);
	cJSON_AddItemToArray(out, o);
}

int ctl_certs_main(int argc, char **argv)
{
	static const char *const head[] = {"CERTIFICATE NAME", "TYPE",		"STATUS",
					   "VALID CERT",       "SERIAL NUMBER", "NOT AFTER",
					   "NOT BEFORE"};
	static const size_t sort[] = {0, 1};
	struct live_opts o = {0};
	struct ctl_table t;
	cJSON *d, *out;
	const cJSON *it, *ca;
	int rc = live_parse("certs", "  ambient ctl certs --admin 127.0.0.1:15000", &o, argc, argv);

	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (!(d = fetch_dump("certs", o.admin)))
		return CTL_EXIT_FAIL;
	ctl_table_init(&t, head, ARRAY_LEN(head));
	out = cJSON_CreateArray();
	CTL_EACH(it, cJSON_GetObjectItemCaseSensitive(
			     cJSON_GetObjectItemCaseSensitive(d, "certificates"), "identities"))
	{
		if (!keep(o.name, ctl_jstr(it, "identity")))
			continue;
		cert_row(&t, out, ctl_jstr(it, "identity"), "Leaf", ctl_jstr(it, "state"),
			 ctl_jstr(it, "serialNumber"), ctl_jstr(it, "notBefore"),
			 ctl_jstr(it, "notAfter"));
	}
	ca = cJSON_GetObjectItemCaseSensitive(d, "ca");
	if (ca) {
		const cJSON *sc = cJSON_GetObjectItemCaseSensitive(ca, "signingCertificate");
		const cJSON *sv = cJSON_GetObjectItemCaseSensitive(ca, "servingCertificate");
		if (sc)
			cert_row(&t, out, ctl_jstr(sc, "subject"), "CA", "ready",
				 ctl_jstr(sc, "serialNumber"), "", ctl_jstr(sc, "notAfter"));
		if (sv)
			cert_row(&t, out, ctl_jstr(sv, "identity"), "Leaf", "ready",
				 ctl_jstr(sv, "serialNumber"), "", ctl_jstr(sv, "notAfter"));
	}
	finish(&t, sort, ARRAY_LEN(sort), out, &o);
	ctl_table_fini(&t);
	cJSON_Delete(out);
	cJSON_Delete(d);
	return CTL_EXIT_OK;
}

int ctl_connections_main(int argc, char **argv)
{
	static const char *const head[] = {"WORKLOAD", "DIRECTION",	"LOCAL",
					   "REMOTE",   "REMOTE TARGET", "PROTOCOL"};
	static const size_t sort[] = {0, 1, 2, 3};
	struct live_opts o = {0};
	struct ctl_table t;
	cJSON *d, *out;
	const cJSON *c;
	struct errbuf eb = {0};
	int rc = live_parse("connections", "  ambient ctl connections --name default/app", &o, argc,
			    argv);

	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (o.node && *o.node) {
		fprintf(stderr, "ctl connections: --node does not apply (a ztunnel lists only its "
				"own node's connections: pass that node's --admin)\n");
		return CTL_EXIT_USAGE;
	}
	if (ctl_admin_json(o.admin, "/connections", &d, &eb) < 0) {
		fprintf(stderr, "ctl connections: %s\n", eb.msg);
		return CTL_EXIT_FAIL;
	}
	ctl_table_init(&t, head, ARRAY_LEN(head));
	out = cJSON_CreateArray();
	CTL_EACH(c, d)
	{
		bool in = strcmp(ctl_jstr(c, "direction"), "inbound") == 0;
		const char *wl = in ? ctl_jstr(c, "dstWorkload") : ctl_jstr(c, "srcWorkload");
		const char *target = *ctl_jstr(c, "hboneAddress") ? ctl_jstr(c, "hboneAddress")
								  : ctl_jstr(c, "dst");
		const char *row[6] = {wl,
				      ctl_jstr(c, "direction"),
				      in ? ctl_jstr(c, "dst") : ctl_jstr(c, "src"),
				      in ? ctl_jstr(c, "src") : ctl_jstr(c, "dst"),
				      target,
				      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "mtls"))
					      ? "HBONE"
					      : "TCP"};

		const char *slash = strchr(wl, '/');
		size_t nsl = slash ? (size_t)(slash - wl) : 0;

		/* wl is "namespace/name": --name matches it or the bare name. */
		if (o.name && *o.name && strcmp(o.name, wl) &&
		    !(slash && !strcmp(o.name, slash + 1)))
			continue;
		if (o.ns && *o.ns && !(slash && strlen(o.ns) == nsl && !strncmp(o.ns, wl, nsl)))
			continue;
		ctl_table_add(&t, row);
		cJSON_AddItemToArray(out, cJSON_Duplicate(c, true));
	}
	finish(&t, sort, ARRAY_LEN(sort), out, &o);
	ctl_table_fini(&t);
	cJSON_Delete(out);
	cJSON_Delete(d);
	return CTL_EXIT_OK;
}

int ctl_config_main(int argc, char **argv)
{
	struct live_opts o = {0};
	cJSON *d;
	int rc = live_parse("config", "  ambient ctl config --admin 127.0.0.1:15000 > dump.json",
			    &o, argc, argv);

	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (!(d = fetch_dump("config", o.admin)))
		return CTL_EXIT_FAIL;
	ctl_print_json(d, stdout);
	cJSON_Delete(d);
	return CTL_EXIT_OK;
}

static const char log_usage[] = "ambient ctl log [LEVEL] [--admin URL]";

int ctl_log_main(int argc, char **argv)
{
	const char *admin = NULL;
	const struct flag fl[] = {
		{"admin", FLAG_STR, &admin, "admin URL (http://127.0.0.1:15000)", "URL"},
	};
	const char *pos[1];
	int npos, st = 0, rc;
	struct errbuf eb = {0};
	struct buf b;
	char path[96];

	rc = ctl_parse("log", log_usage,
		       "  ambient ctl log                 # show the level\n"
		       "  ambient ctl log debug --admin 127.0.0.1:15000\n"
		       "levels: error, warn, info, debug, trace",
		       fl, ARRAY_LEN(fl), argc, argv, pos, 1, &npos);
	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (npos == 1 && log_level_parse(pos[0]) < 0) {
		fprintf(stderr, "ctl log: unknown level '%s' (error, warn, info, debug, trace)\n",
			pos[0]);
		return CTL_EXIT_USAGE;
	}
	snprintf(path, sizeof(path), "/logging%s%s", npos ? "?level=" : "", npos ? pos[0] : "");
	buf_init(&b, 0);
	rc = ctl_admin_fetch(admin, npos ? "POST" : "GET", path, &st, &b, &eb);
	if (rc < 0) {
		fprintf(stderr, "ctl log: %s\n", eb.msg);
		buf_fini(&b);
		return CTL_EXIT_FAIL;
	}
	fputs((const char *)buf_rptr(&b), st == 200 ? stdout : stderr);
	buf_fini(&b);
	return st == 200 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}
