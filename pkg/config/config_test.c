/* Unit tests for pkg/config: fixtures with exact error texts, lookups, defaults, dump round trip,
 * schema table sanity, addresses, refcounting and the generated docs. */
#include "pkg/config/config_int.h"
#include "test/unit.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BAD_DIR "testdata/config/bad"
#define GOOD_DIR "testdata/config/good"

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = xmalloc((size_t)n + 1);
	if (fread(p, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(p);
		return NULL;
	}
	fclose(f);
	p[n] = '\0';
	if (len)
		*len = (size_t)n;
	return p;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir ending in ext; returns the count (caller frees names and array). */
static size_t list_dir(const char *dir, const char *ext, char ***out)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, el = strlen(ext);

	while (d && (e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l <= el || strcmp(e->d_name + l - el, ext) != 0)
			continue;
		names = xrealloc(names, (n + 1) * sizeof(*names));
		names[n++] = xstrdup(e->d_name);
	}
	if (d)
		closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	*out = names;
	return n;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Lines of el as one string, each followed by "\n" (the .err/.warn file format). */
static char *lines(const struct errlist *el)
{
	char *j = errlist_join(el);
	char *s = xasprintf("%s%s", j, el->n ? "\n" : "");

	free(j);
	return s;
}

static struct config *parse_str(const char *text, struct errlist *errs)
{
	return config_parse("mesh.json", text, strlen(text), 7, errs);
}

/* Parses a fixture, naming it by its file name (so .err files do not depend on paths). */
static struct config *parse_fixture(const char *dir, const char *name, struct errlist *errs,
				    struct errlist *warns)
{
	char path[512];
	char *text;
	size_t len;
	struct config_parse_opts o = {.warnings = warns};
	struct config *c;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	text = read_file(path, &len);
	if (!text)
		return NULL;
	c = config_parse_ex(name, text, len, 1, &o, errs);
	free(text);
	return c;
}

TEST(config_bad_fixtures_match_err_files)
{
	char **names;
	size_t n = list_dir(BAD_DIR, ".json", &names);

	CHECK(n >= 20);
	for (size_t i = 0; i < n; i++) {
		struct errlist errs = {0};
		char path[512];
		char *want, *got;
		struct config *c = parse_fixture(BAD_DIR, names[i], &errs, NULL);

		if (c)
			unit_fail(__FILE__, __LINE__, "%s: parsed but should fail", names[i]);
		config_unref(c);
		snprintf(path, sizeof(path), "%s/%.*s.err", BAD_DIR, (int)(strlen(names[i]) - 5),
			 names[i]);
		want = read_file(path, NULL);
		got = lines(&errs);
		if (!want)
			unit_fail(__FILE__, __LINE__, "%s: missing", path);
		else if (strcmp(want, got) != 0)
			unit_fail(__FILE__, __LINE__, "%s:\n--- want\n%s--- got\n%s", names[i],
				  want, got);
		CHECK(errs.n > 0);
		free(want);
		free(got);
		errlist_fini(&errs);
	}
	free_names(names, n);
}

TEST(config_every_err_file_has_a_fixture)
{
	char **names;
	size_t n = list_dir(BAD_DIR, ".err", &names);

	for (size_t i = 0; i < n; i++) {
		char path[512];
		FILE *f;
		snprintf(path, sizeof(path), "%s/%.*s.json", BAD_DIR, (int)(strlen(names[i]) - 4),
			 names[i]);
		f = fopen(path, "rb");
		if (!f)
			unit_fail(__FILE__, __LINE__, "%s has no .json", names[i]);
		else
			fclose(f);
	}
	free_names(names, n);
}

static char *dump_mesh(const struct config *c)
{
	struct buf b;
	struct json_writer w;
	char *s;

	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	config_dump_mesh_write(c, &w);
	if (json_writer_finish(&w) < 0) {
		buf_fini(&b);
		return NULL;
	}
	s = xmalloc(buf_len(&b) + 1);
	memcpy(s, buf_rptr(&b), buf_len(&b));
	s[buf_len(&b)] = '\0';
	buf_fini(&b);
	return s;
}

TEST(config_good_fixtures_parse_warn_and_round_trip)
{
	char **names;
	size_t n = list_dir(GOOD_DIR, ".json", &names);

	CHECK(n >= 4);
	for (size_t i = 0; i < n; i++) {
		struct errlist errs = {0}, warns = {0};
		struct config *c = parse_fixture(GOOD_DIR, names[i], &errs, &warns), *again;
		char path[512];
		char *want, *got, *d1, *d2;
		size_t nw;

		if (!c) {
			char *j = errlist_join(&errs);
			unit_fail(__FILE__, __LINE__, "%s: %s", names[i], j);
			free(j);
			errlist_fini(&errs);
			errlist_fini(&warns);
			continue;
		}
		snprintf(path, sizeof(path), "%s/%.*s.warn", GOOD_DIR, (int)(strlen(names[i]) - 5),
			 names[i]);
		want = read_file(path, NULL);
		got = lines(&warns);
		if (strcmp(want ? want : "", got) != 0)
			unit_fail(__FILE__, __LINE__, "%s warnings:\n--- want\n%s--- got\n%s",
				  names[i], want ? want : "", got);
		config_warnings(c, &nw);
		CHECK_INT(nw, warns.n);
		/* The normalized dump is itself a valid document with the same meaning. */
		d1 = dump_mesh(c);
		REQUIRE(d1);
		again = parse_str(d1, &errs);
		if (!again) {
			char *j = errlist_join(&errs);
			unit_fail(__FILE__, __LINE__, "%s: dump does not parse: %s", names[i], j);
			free(j);
		} else {
			d2 = dump_mesh(again);
			CHECK_STR(d1, d2);
			free(d2);
		}
		CHECK_INT(strlen(config_etag(c)), 16);
		CHECK(strspn(config_etag(c), "0123456789abcdef") == 16);
		config_unref(again);
		config_unref(c);
		free(d1);
		free(want);
		free(got);
		errlist_fini(&errs);
		errlist_fini(&warns);
	}
	free_names(names, n);
}

TEST(config_spec_error_lines)
{
	const char *doc =
		"{\"workloads\": [{\"uid\": \"a\", \"nmae\": \"x\", \"namespace\": \"d\","
		"\"workloadIps\": [\"10.0.0.1\"]}], \"services\": ["
		"{\"name\": \"a\", \"namespace\": \"d\", \"hostname\": \"a\", \"ports\": {}},"
		"{\"name\": \"b\", \"namespace\": \"d\", \"hostname\": \"b\", \"ports\": {}},"
		"{\"name\": \"c\", \"namespace\": \"d\", \"hostname\": \"c\","
		" \"ports\": {\"70000\": 8080}}]}";
	struct errlist errs = {0};

	CHECK(parse_str(doc, &errs) == NULL);
	REQUIRE(errs.n == 2);
	CHECK_STR(errs.items[0], "mesh.json: .workloads[0].nmae: unknown field (did you mean "
				 "\"name\"?)");
	CHECK_STR(errs.items[1], "mesh.json: .services[2].ports.\"70000\": port out of range "
				 "1..65535");
	errlist_fini(&errs);
}

static struct config *load_good(const char *name)
{
	struct errlist errs = {0};
	struct config *c = parse_fixture(GOOD_DIR, name, &errs, NULL);

	errlist_fini(&errs);
	return c;
}

static struct config_ip ip(const char *s)
{
	struct config_ip a;

	if (config_ip_parse(s, &a) < 0)
		unit_fail(__FILE__, __LINE__, "bad test IP %s", s);
	return a;
}

TEST(config_lookups)
{
	struct config *c = load_good("full.json");
	const struct config_workload *w;
	const struct config_workload *const *wl;
	const struct config_service *s;
	const struct config_service *const *sl;
	const struct config_policy *const *pl;
	const struct config_policy *po;
	struct config_ip a;
	size_t n;

	REQUIRE(c);
	/* by uid (given and derived) */
	w = config_workload_by_uid(c, "vm-db");
	REQUIRE(w);
	CHECK_STR(w->name, "db");
	CHECK_INT(w->index, 2);
	w = config_workload_by_uid(c, "Kubernetes//v1/Pod/shop/frontend-2");
	REQUIRE(w);
	CHECK(w->uid_derived);
	CHECK(config_workload_by_uid(c, "nope") == NULL);

	/* by IP: v4, v6, v4-mapped query, wrong network, HostNetwork not indexed */
	a = ip("10.1.0.10");
	w = config_workload_by_ip(c, "", &a);
	REQUIRE(w);
	CHECK_STR(w->uid, "Kubernetes//v1/Pod/shop/frontend-1");
	a = ip("fd00:0:0::a");
	CHECK(config_workload_by_ip(c, "", &a) == w);
	CHECK(config_workload_by_ip(c, NULL, &a) == w);
	CHECK(config_workload_by_ip(c, "net2", &a) == NULL);
	a.family = AF_INET6;
	memset(a.addr, 0, 16);
	a.addr[10] = a.addr[11] = 0xff;
	a.addr[12] = 10, a.addr[13] = 1, a.addr[14] = 0, a.addr[15] = 11;
	w = config_workload_by_ip(c, "", &a);
	REQUIRE(w);
	CHECK_STR(w->name, "frontend-2");
	a = ip("10.2.0.5");
	CHECK(config_workload_by_ip(c, "", &a) == NULL);

	/* by node */
	wl = config_workloads_by_node(c, "node-b", &n);
	REQUIRE(n == 2);
	CHECK_STR(wl[0]->name, "frontend-2");
	CHECK_STR(wl[1]->name, "db");
	wl = config_workloads_by_node(c, "node-a", &n);
	CHECK_INT(n, 2);
	wl = config_workloads_by_node(c, "", &n);
	CHECK_INT(n, 1);
	CHECK(config_workloads_by_node(c, "node-z", &n) == NULL && n == 0);

	/* services by key, by hostname (namespace preference, canonical), by VIP */
	s = config_service_by_key(c, "shop", "db.shop.svc.cluster.local");
	REQUIRE(s);
	CHECK_STR(s->key, "shop/db.shop.svc.cluster.local");
	CHECK(config_service_by_key(c, "other", "db.shop.svc.cluster.local") == NULL);
	sl = config_services_by_hostname(c, "frontend.shop.svc.cluster.local", &n);
	REQUIRE(n == 2);
	CHECK_STR(sl[0]->namespace, "shop");
	CHECK_STR(sl[1]->namespace, "other");
	s = config_service_by_hostname(c, "frontend.shop.svc.cluster.local", "other");
	REQUIRE(s);
	CHECK_STR(s->namespace, "other");
	s = config_service_by_hostname(c, "frontend.shop.svc.cluster.local", "elsewhere");
	REQUIRE(s);
	CHECK_STR(s->namespace, "shop"); /* canonical */
	CHECK(config_service_by_hostname(c, "nope.example", NULL) == NULL);
	a = ip("10.96.1.1");
	s = config_service_by_vip(c, "", &a);
	REQUIRE(s);
	CHECK_STR(s->name, "frontend");
	CHECK(config_service_by_vip(c, "net2", &a) == s);
	a = ip("fd00:96::1");
	CHECK(config_service_by_vip(c, "", &a) == s);
	CHECK(config_service_by_vip(c, "net3", &a) == NULL);

	/* endpoints derived from workloads, in workload order */
	s = config_service_by_key(c, "shop", "frontend.shop.svc.cluster.local");
	REQUIRE(s && s->n_endpoints == 2);
	CHECK_STR(s->endpoints[0].workload->name, "frontend-1");
	CHECK_STR(s->endpoints[1].workload->name, "frontend-2");
	CHECK_INT(s->endpoints[0].ws->ports[1].service_port, 443);
	CHECK_INT(s->endpoints[0].ws->ports[1].target_port, 8443);
	CHECK(s->endpoints[0].ws->service == s);

	/* policies */
	po = config_policy_by_key(c, "shop", "frontend-allow");
	REQUIRE(po);
	CHECK_INT(po->scope, CONFIG_SCOPE_WORKLOAD_SELECTOR);
	CHECK_INT(po->n_rules, 2);
	CHECK_INT(po->rules[0].n_clauses, 2);
	CHECK_INT(po->rules[0].clauses[0].n_matches, 2);
	CHECK_INT(po->rules[1].clauses[0].matches[0].not_namespaces[0].kind, CONFIG_MATCH_PRESENCE);
	CHECK_STR(po->rules[1].clauses[0].matches[0].not_namespaces[0].value, "");
	CHECK_INT(po->rules[1].clauses[0].matches[0].principals[0].kind, CONFIG_MATCH_PREFIX);
	CHECK_INT(po->rules[1].clauses[0].matches[0].source_ips[2].prefix, 32);
	w = config_workload_by_uid(c, "Kubernetes//v1/Pod/shop/frontend-1");
	REQUIRE(w && w->n_authorization_policies == 1);
	CHECK(w->policies[0] == po);
	pl = config_policies_by_namespace(c, "shop", &n);
	REQUIRE(n == 1);
	CHECK_STR(pl[0]->name, "deny-legacy");
	CHECK(pl[0]->dry_run);
	pl = config_policies_global(c, &n);
	REQUIRE(n == 1);
	CHECK_STR(pl[0]->key, "istio-system/istio_converted_static_strict");
	config_policies_by_namespace(c, "istio-system", &n);
	CHECK_INT(n, 0);

	/* raw waypoint objects are kept as given */
	CHECK_INT(cJSON_GetArraySize(config_routes(c)), 1);
	CHECK_INT(cJSON_GetArraySize(config_l7_policies(c)), 1);
	config_unref(c);
}

TEST(config_fields_and_defaults)
{
	const char *doc =
		"{\"workloads\": [{\"name\": \"p\", \"namespace\": \"ns\", \"workloadIps\": "
		"[\"10.0.0.1\"], \"waypoint\": {\"destination\": \"ns/wp.example\"}}], "
		"\"policies\": [{\"name\": \"x\", \"namespace\": \"ns\", \"scope\": \"Namespace\", "
		"\"action\": \"Deny\", \"rules\": [[[{\"sourceIps\": [\"10.9.8.7/8\"]}]]]}]}";
	struct errlist errs = {0};
	struct config *c = parse_str(doc, &errs);
	const struct config_workload *w;
	const struct config_policy *po;
	size_t n;

	REQUIRE(c);
	CHECK_INT(errs.n, 0);
	CHECK_INT(config_version(c), 7);
	CHECK_STR(config_source(c), "mesh.json");
	w = config_workloads(c, &n);
	REQUIRE(n == 1);
	CHECK_STR(w->uid, "Kubernetes//v1/Pod/ns/p");
	CHECK(w->uid_derived);
	CHECK_STR(w->trust_domain, "cluster.local");
	CHECK_STR(w->service_account, "default");
	CHECK_STR(w->identity, "spiffe://cluster.local/ns/ns/sa/default");
	CHECK_STR(w->cluster_id, "Kubernetes");
	CHECK_INT(w->protocol, CONFIG_PROTOCOL_TCP);
	CHECK_INT(w->network_mode, CONFIG_NETWORK_MODE_STANDARD);
	CHECK_INT(w->status, CONFIG_HEALTH_HEALTHY);
	CHECK_INT(w->capacity, 1);
	CHECK_STR(w->network, "");
	CHECK_STR(w->node, "");
	CHECK_STR(w->locality.zone, "");
	CHECK(!w->native_tunnel);
	CHECK(!w->application_tunnel.present);
	CHECK(!w->network_gateway.present);
	CHECK(w->waypoint.present);
	CHECK_INT(w->waypoint.destination.kind, CONFIG_GATEWAY_HOSTNAME);
	CHECK_STR(w->waypoint.destination.namespace, "ns");
	CHECK_STR(w->waypoint.destination.hostname, "wp.example");
	CHECK_INT(w->waypoint.hbone_mtls_port, 15008);
	CHECK_INT(w->n_services, 0);
	CHECK(config_services(c, &n) != NULL || n == 0);
	CHECK_INT(n, 0);
	po = config_policies(c, &n);
	REQUIRE(n == 1);
	CHECK(!po->dry_run);
	CHECK_INT(po->action, CONFIG_ACTION_DENY);
	CHECK_INT(po->rules[0].clauses[0].matches[0].source_ips[0].prefix, 8);
	CHECK_INT(po->rules[0].clauses[0].matches[0].source_ips[0].ip.addr[1], 0);
	CHECK_INT(cJSON_GetArraySize(config_routes(c)), 0);
	config_unref(c);
}

TEST(config_services_omitted_means_references_unchecked)
{
	const char *doc =
		"{\"workloads\": [{\"uid\": \"a\", \"namespace\": \"ns\", \"workloadIps\": "
		"[\"10.0.0.1\"], \"services\": {\"ns/unknown.example\": {\"80\": 80}}, "
		"\"waypoint\": {\"destination\": \"ns/wp\"}}]}";
	const char *with = "{\"services\": [], \"workloads\": [{\"uid\": \"a\", \"namespace\": "
			   "\"ns\", \"workloadIps\": [\"10.0.0.1\"], \"services\": "
			   "{\"ns/unknown.example\": {\"80\": 80}}}]}";
	struct errlist errs = {0};
	struct config *c = parse_str(doc, &errs);
	const struct config_workload *w;
	size_t n;

	REQUIRE(c);
	w = config_workloads(c, &n);
	CHECK(w->services[0].service == NULL);
	CHECK_STR(w->services[0].namespace, "ns");
	CHECK_STR(w->services[0].hostname, "unknown.example");
	config_unref(c);
	CHECK(parse_str(with, &errs) == NULL);
	REQUIRE(errs.n == 1);
	CHECK_STR(errs.items[0],
		  "mesh.json: .workloads[0].services.\"ns/unknown.example\": unknown "
		  "service \"ns/unknown.example\"");
	errlist_fini(&errs);
}

TEST(config_etag_and_refcount)
{
	struct errlist errs = {0};
	struct config *c = parse_str("{}", &errs);

	REQUIRE(c);
	/* sha256("{}") = 44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a */
	CHECK_STR(config_etag(c), "44136fa355b3678a");
	CHECK(config_ref(c) == c);
	config_unref(c);
	config_unref(c);
	config_unref(NULL);
	CHECK(config_ref(NULL) == NULL);
}

static void *ref_churn(void *arg)
{
	struct config *c = arg;

	for (int i = 0; i < 20000; i++) {
		struct config *r = config_ref(c);
		size_t n;
		config_workloads(r, &n);
		config_unref(r);
	}
	config_unref(c); /* the reference given to this thread */
	return NULL;
}

TEST(config_refcount_across_threads)
{
	struct errlist errs = {0};
	struct config *c = load_good("localhost.json");
	pthread_t t[4];

	REQUIRE(c);
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, ref_churn, config_ref(c));
	config_unref(c);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	errlist_fini(&errs);
}

TEST(config_error_cap_and_null_lists)
{
	struct buf b;
	struct errlist errs = {0};

	buf_init(&b, 0);
	buf_append_str(&b, "{\"workloads\": [");
	for (int i = 0; i < 150; i++)
		buf_printf(&b,
			   "%s{\"uid\": \"w%d\", \"namespace\": \"ns\", \"workloadIps\": "
			   "[\"10.0.0.1\"], \"bogus\": 1}",
			   i ? "," : "", i);
	buf_append_str(&b, "]}");
	CHECK(config_parse("m", (const char *)buf_rptr(&b), buf_len(&b), 1, &errs) == NULL);
	/* 150 unknown fields + 149 duplicate IPs: the first 100 lines, then a count. */
	REQUIRE(errs.n == CONFIG_MAX_ERRORS + 1);
	CHECK_STR(errs.items[0], "m: .workloads[0].bogus: unknown field");
	CHECK_STR(errs.items[CONFIG_MAX_ERRORS], "m: 199 more not shown");
	/* A NULL error list is allowed (the caller only wants the verdict). */
	CHECK(config_parse("m", (const char *)buf_rptr(&b), buf_len(&b), 1, NULL) == NULL);
	CHECK(config_parse("m", "{", 1, 1, NULL) == NULL);
	CHECK(config_parse(NULL, NULL, 0, 1, &errs) == NULL);
	CHECK_STR(errs.items[errs.n - 1], "<config>: invalid JSON: document is empty");
	errlist_fini(&errs);
	buf_fini(&b);
}

TEST(config_warnings_reported_even_when_errors)
{
	const char *doc = "{\"services\": [{\"name\": \"s\", \"namespace\": \"ns\", \"hostname\": "
			  "\"s.example\", \"ports\": {\"80\": 80}, \"bogus\": true}]}";
	struct errlist errs = {0}, warns = {0};
	struct config_parse_opts o = {.warnings = &warns};

	CHECK(config_parse_ex("m", doc, strlen(doc), 1, &o, &errs) == NULL);
	CHECK_INT(errs.n, 1);
	REQUIRE(warns.n == 1);
	CHECK_STR(warns.items[0],
		  "m: .services[0]: no endpoints: no workload lists \"ns/s.example\" in its "
		  "\"services\"");
	errlist_fini(&errs);
	errlist_fini(&warns);
}

TEST(config_size_limit)
{
	struct errlist errs = {0};
	struct config_parse_opts o = {.max_bytes = 4};

	CHECK(config_parse_ex("m", "{ }  ", 5, 1, &o, &errs) == NULL);
	REQUIRE(errs.n == 1);
	CHECK_STR(errs.items[0], "m: invalid JSON: document is 5 bytes, limit is 4");
	errlist_fini(&errs);
}

TEST(config_dump_json_shape)
{
	struct config *c = load_good("warnings.json");
	struct buf b;
	cJSON *root = NULL, *mesh;
	struct json_error je;

	REQUIRE(c);
	buf_init(&b, 0);
	CHECK_INT(config_dump_json(c, &b), 0);
	REQUIRE(json_parse((const char *)buf_rptr(&b), buf_len(&b), NULL, &root, &je) == 0);
	CHECK_STR(cJSON_GetObjectItemCaseSensitive(root, "source")->valuestring, "warnings.json");
	CHECK_STR(cJSON_GetObjectItemCaseSensitive(root, "etag")->valuestring, config_etag(c));
	CHECK_INT(cJSON_GetObjectItemCaseSensitive(root, "version")->valuedouble, 1);
	CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "warnings")), 7);
	mesh = cJSON_GetObjectItemCaseSensitive(root, "mesh");
	REQUIRE(mesh);
	CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(mesh, "workloads")), 1);
	/* Defaults are written out. */
	CHECK_STR(
		cJSON_GetObjectItemCaseSensitive(
			cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(mesh, "workloads"), 0),
			"trustDomain")
			->valuestring,
		"cluster.local");
	json_free(root);
	/* A bounded buffer reports the overflow instead of truncating silently. */
	buf_fini(&b);
	buf_init(&b, 64);
	CHECK_INT(config_dump_json(c, &b), -E_LIMIT);
	buf_fini(&b);
	config_unref(c);
}

/* ---- schema table sanity --------------------------------------------------------------------- */

static void check_type(const struct cfg_type *t, int depth)
{
	if (depth > 12)
		return;
	if (t->kind == CFG_ARRAY || t->kind == CFG_MAP) {
		CHECK(t->elem != NULL);
		if (t->elem)
			check_type(t->elem, depth + 1);
		if (t->kind == CFG_MAP)
			CHECK(t->key && (t->key->kind == CFG_UINT || t->key->kind == CFG_STRING));
		return;
	}
	if (t->kind != CFG_OBJECT && t->kind != CFG_ONEOF)
		return;
	CHECK(t->nfields <= 64);
	for (size_t i = 0; i < t->nfields; i++) {
		const struct cfg_field *f = &t->fields[i];
		for (size_t j = 0; j < i; j++)
			if (strcmp(f->name, t->fields[j].name) == 0)
				unit_fail(__FILE__, __LINE__, "%s.%s twice", t->name, f->name);
		if (f->flags & CF_UNSUPPORTED)
			continue;
		/* Optional strings always have a default, so readers never see NULL. */
		if (f->type->kind == CFG_STRING && t->kind == CFG_OBJECT &&
		    !(f->flags & CF_REQUIRED) && !f->def && strcmp(f->name, "uid") != 0)
			unit_fail(__FILE__, __LINE__, "%s.%s: optional string without default",
				  t->name, f->name);
		if (f->def && f->type->kind == CFG_ENUM) {
			bool ok = false;
			for (unsigned k = 0; k < f->type->nvalues; k++)
				ok |= strcmp(f->def, f->type->values[k]) == 0;
			if (!ok)
				unit_fail(__FILE__, __LINE__, "%s.%s: default %s not a value",
					  t->name, f->name, f->def);
		}
		if (f->def && f->type->kind == CFG_UINT) {
			unsigned long long u = strtoull(f->def, NULL, 10);
			CHECK(u >= f->type->min && u <= f->type->max);
		}
		if ((f->flags & CF_REQUIRED) && f->def)
			unit_fail(__FILE__, __LINE__, "%s.%s: required with a default", t->name,
				  f->name);
		check_type(f->type, depth + 1);
	}
}

TEST(config_schema_table_is_consistent)
{
	for (size_t i = 0; i < cfg_doc_ntypes; i++)
		check_type(cfg_doc_types[i], 0);
}

TEST(config_docs_match_schema)
{
	struct buf b;
	char *file;
	size_t len;

	buf_init(&b, 0);
	REQUIRE(config_schema_markdown(&b) == 0);
	if (getenv("AMBIENT_UPDATE_DOCS")) {
		FILE *f = fopen("docs/config.md", "wb");
		REQUIRE(f);
		fwrite(buf_rptr(&b), 1, buf_len(&b), f);
		fclose(f);
	}
	file = read_file("docs/config.md", &len);
	if (!file || len != buf_len(&b) || memcmp(file, buf_rptr(&b), len) != 0)
		unit_fail(__FILE__, __LINE__,
			  "docs/config.md is stale; regenerate with AMBIENT_UPDATE_DOCS=1 "
			  "<out>/test/config_test docs");
	/* Spot checks that the table content made it in. */
	CHECK(strstr((const char *)buf_rptr(&b), "| `trustDomain` | trust domain |  | "
						 "`\"cluster.local\"` |") != NULL);
	CHECK(strstr((const char *)buf_rptr(&b), "`TCP`, `HBONE`") != NULL);
	free(file);
	buf_fini(&b);
}

TEST(config_suggestions)
{
	static const char *const c[] = {"name", "namespace", "workloadIps", "serviceAccount"};

	CHECK_STR(cfg_suggest("nmae", c, 4), "name");
	CHECK_STR(cfg_suggest("NAMESPACE", c, 4), "namespace");
	CHECK_STR(cfg_suggest("workloadIP", c, 4), "workloadIps");
	CHECK_STR(cfg_suggest("serviceAcount", c, 4), "serviceAccount");
	CHECK(cfg_suggest("colour", c, 4) == NULL);
	CHECK(cfg_suggest("x", c, 4) == NULL);
}

/* ---- addresses ------------------------------------------------------------------------------- */

TEST(config_ip_parse_and_format)
{
	static const struct {
		const char *in, *out;
	} ok[] = {
		{"0.0.0.0", "0.0.0.0"},
		{"255.255.255.255", "255.255.255.255"},
		{"::", "::"},
		{"::1", "::1"},
		{"1::", "1::"},
		{"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
		{"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
		{"2001:0:0:1:0:0:0:1", "2001:0:0:1::1"},
		{"1:0:2:0:3:0:4:0", "1:0:2:0:3:0:4:0"},
		{"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"},
		{"::ffff:10.1.2.3", "10.1.2.3"},
		{"::FFFF:a01:203", "10.1.2.3"},
		{"::10.1.2.3", "::a01:203"},
		{"64:ff9b::192.0.2.33", "64:ff9b::c000:221"},
		{"fe80::1:2", "fe80::1:2"},
	};
	static const char *const bad[] = {
		"",
		"1",
		"1.2.3",
		"1.2.3.4.",
		".1.2.3.4",
		"01.2.3.4",
		"256.0.0.0",
		"1.2.3.-4",
		"1.2.3.4 ",
		":",
		":::",
		"1:2",
		":1::2",
		"1::2:",
		"1::2::3",
		"12345::",
		"1:2:3:4:5:6:7:8:9",
		"1:2:3:4:5:6:7::8",
		"::1.2.3",
		"::1.2.3.4:5",
		"g::",
		"::%1",
		"1:2:3:4:5:6:7:1.2.3.4",
	};
	struct config_ip a;
	char s[CONFIG_IP_STRLEN];

	for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
		if (config_ip_parse(ok[i].in, &a) < 0) {
			unit_fail(__FILE__, __LINE__, "rejected %s", ok[i].in);
			continue;
		}
		config_ip_format(&a, s, sizeof(s));
		CHECK_STR(s, ok[i].out);
	}
	CHECK_INT(config_ip_parse("1:2:3:4:5:6:1.2.3.4", &a), 0);
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		if (config_ip_parse(bad[i], &a) == 0)
			unit_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
	CHECK(config_ip_parse(NULL, &a) < 0);
	a = ip("10.0.0.1");
	CHECK_INT(a.family, AF_INET);
	CHECK_INT(config_ip_format(&a, s, 4), 8);
	CHECK_STR(s, "10.");
}

TEST(config_cidrs)
{
	struct config_cidr c;
	struct config_ip a;

	CHECK_INT(config_cidr_parse("10.1.2.3/8", &c), 0);
	CHECK_INT(c.prefix, 8);
	CHECK_INT(c.ip.addr[1], 0);
	a = ip("10.200.0.1");
	CHECK(config_cidr_contains(&c, &a));
	a = ip("11.0.0.1");
	CHECK(!config_cidr_contains(&c, &a));
	a = ip("::ffff:10.0.0.1");
	CHECK(config_cidr_contains(&c, &a));
	CHECK_INT(config_cidr_parse("0.0.0.0/0", &c), 0);
	a = ip("fd00::1");
	CHECK(!config_cidr_contains(&c, &a)); /* families differ */
	CHECK_INT(config_cidr_parse("fd00::/7", &c), 0);
	CHECK(config_cidr_contains(&c, &a));
	a = ip("fe00::1");
	CHECK(!config_cidr_contains(&c, &a));
	CHECK_INT(config_cidr_parse("::ffff:10.9.0.0/112", &c), 0);
	CHECK_INT(c.ip.family, AF_INET);
	CHECK_INT(c.prefix, 16);
	CHECK_INT(config_cidr_parse("::ffff:0:0/64", &c), 0);
	CHECK_INT(c.ip.family, AF_INET6);
	CHECK_INT(config_cidr_parse("192.168.1.7", &c), 0);
	CHECK_INT(c.prefix, 32);
	CHECK_INT(config_cidr_parse("fd00::1", &c), 0);
	CHECK_INT(c.prefix, 128);
	CHECK(config_cidr_parse("10.0.0.0/33", &c) < 0);
	CHECK(config_cidr_parse("10.0.0.0/+8", &c) < 0);
	CHECK(config_cidr_parse("/8", &c) < 0);
	CHECK(config_cidr_parse(NULL, &c) < 0);
}

TEST(config_long_values_are_cut_in_messages)
{
	char doc[512];
	struct errlist errs = {0};
	char want[256];

	snprintf(doc, sizeof(doc),
		 "{\"workloads\": [{\"uid\": \"a\", \"namespace\": \"ns\", \"workloadIps\": "
		 "[\"10.0.0.1\"], \"protocol\": \"%0100d\", \"workloadType\": 1}], "
		 "\"policies\": [{\"name\": \"p\", \"namespace\": \"a b\\n\\\"\", \"scope\": "
		 "\"Global\", \"action\": \"Allow\", \"rules\": []}]}",
		 7);
	CHECK(parse_str(doc, &errs) == NULL);
	REQUIRE(errs.n == 3);
	snprintf(want, sizeof(want),
		 "mesh.json: .workloads[0].protocol: invalid value \"%060d...\", expected one "
		 "of: TCP, HBONE",
		 0);
	CHECK_STR(errs.items[0], want);
	CHECK_STR(errs.items[1], "mesh.json: .workloads[0].workloadType: expected a string, got "
				 "number");
	CHECK_STR(errs.items[2],
		  "mesh.json: .policies[0].namespace: invalid value \"a b\\u000a\\\"\": "
		  "character 0x20 not allowed (use letters, digits, '.', '-', '_')");
	errlist_fini(&errs);
}

TEST(config_waypoint_retry_and_mirror_decoded)
{
	static const char doc[] =
		"{\"workloads\": [{\"uid\": \"wp\", \"namespace\": \"ns\", "
		"\"workloadIps\": [\"10.0.0.9\"]}],"
		"\"services\": [{\"name\": \"echo\", \"namespace\": \"ns\", \"hostname\": "
		"\"e.ns\", \"vips\": [\"10.96.0.1\"], \"ports\": {\"80\": 8080}},"
		"{\"name\": \"shadow\", \"namespace\": \"ns\", \"hostname\": \"s.ns\", "
		"\"vips\": [\"10.96.0.2\"], \"ports\": {\"81\": 8080}}],"
		"\"routes\": [{\"metadata\": {\"name\": \"r\", \"namespace\": \"ns\"}, "
		"\"spec\": {\"parentRefs\": [{\"kind\": \"Service\", \"name\": \"echo\"}], "
		"\"rules\": [{\"retry\": {\"codes\": [502, 503]}, \"filters\": ["
		"{\"type\": \"RequestMirror\", \"requestMirror\": {\"backendRef\": "
		"{\"name\": \"shadow\", \"port\": 81}}},"
		"{\"type\": \"RequestMirror\", \"requestMirror\": {\"backendRef\": "
		"{\"name\": \"shadow\", \"port\": 81}, \"fraction\": {\"numerator\": 1}}}],"
		"\"backendRefs\": [{\"name\": \"echo\", \"port\": 80}]},"
		"{\"retry\": {\"attempts\": 0, \"backoff\": \"1s\"}}]}}]}";
	struct errlist errs = {0};
	struct config *c = config_parse("w.json", doc, sizeof(doc) - 1, 1, &errs);
	const struct config_route *r;
	const struct config_route_rule *ru;
	size_t n;

	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "    %s\n", errs.items[i]);
	REQUIRE(c);
	r = config_route_list(c, &n);
	REQUIRE(n == 1 && r->spec.n_rules == 2);
	ru = &r->spec.rules[0];
	CHECK(ru->retry.present);
	CHECK_INT((int)ru->retry.attempts, 2); /* Istio's default */
	CHECK_INT((int)ru->retry.backoff_ms, 25);
	REQUIRE(ru->retry.n_codes == 2);
	CHECK_INT(ru->retry.codes[1], 503);
	REQUIRE(ru->n_filters == 2); /* RequestMirror may repeat */
	CHECK_INT(ru->filters[0].type, CONFIG_FILTER_REQUEST_MIRROR);
	CHECK(ru->filters[0].request_mirror.backend_ref.service ==
	      config_service_by_name(c, "ns", "shadow"));
	CHECK_INT((int)ru->filters[0].request_mirror.numerator, 100);
	CHECK_INT((int)ru->filters[0].request_mirror.denominator, 100);
	CHECK_INT((int)ru->filters[1].request_mirror.numerator, 1);
	CHECK_INT((int)ru->filters[1].request_mirror.denominator, 100);
	CHECK_INT((int)r->spec.rules[1].retry.attempts, 0);
	CHECK_INT((int)r->spec.rules[1].retry.backoff_ms, 1000);
	CHECK(!r->spec.rules[1].retry.n_codes);
	config_unref(c);
}

TEST(config_waypoint_objects_decoded)
{
	static const char doc[] =
		"{\"workloads\": [{\"uid\": \"wp\", \"name\": \"wp\", \"namespace\": \"ns\", "
		"\"workloadIps\": [\"10.0.0.9\"], \"waypointFor\": \"all\"}],"
		"\"services\": [{\"name\": \"echo\", \"namespace\": \"ns\", \"hostname\": "
		"\"e.ns\", "
		"\"vips\": [\"10.96.0.1\"], \"ports\": {\"80\": 8080}}],"
		"\"routes\": [{\"metadata\": {\"name\": \"r\", \"namespace\": \"ns\", \"labels\": "
		"{\"a\": \"b\"}, \"managedFields\": [{}]}, \"spec\": {\"parentRefs\": [{\"kind\": "
		"\"Service\", \"name\": \"echo\"}], \"rules\": [{\"backendRefs\": [{\"name\": "
		"\"echo\", \"port\": 80}], \"timeouts\": {\"request\": \"1m30s\", "
		"\"backendRequest\": \"500ms\"}}, {\"matches\": [{\"method\": \"POST\"}]}]}, "
		"\"status\": {\"parents\": []}}],"
		"\"l7Policies\": [{\"metadata\": {\"name\": \"p\"}, \"spec\": {\"targetRefs\": "
		"[{\"kind\": \"Gateway\", \"name\": \"wp\", \"namespace\": \"ns\"}]}}]}";
	struct errlist errs = {0};
	struct config *c = config_parse("w.json", doc, sizeof(doc) - 1, 1, &errs);
	const struct config_route *r;
	const struct config_l7_policy *p;
	size_t n;

	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "    %s\n", errs.items[i]);
	REQUIRE(c);
	CHECK_INT(config_workload_by_uid(c, "wp")->waypoint_for, CONFIG_WAYPOINT_FOR_ALL);
	r = config_route_list(c, &n);
	REQUIRE(n == 1);
	CHECK_STR(r->key, "ns/r");
	CHECK(r->spec.parent_refs[0].service == config_service_by_name(c, "ns", "echo"));
	CHECK_INT(r->spec.parent_refs[0].port, 0);
	REQUIRE(r->spec.n_rules == 2);
	CHECK_INT(r->spec.rules[0].backend_refs[0].weight, 1);
	CHECK_INT((int)r->spec.rules[0].timeouts.request_ms, 90000);
	CHECK_INT((int)r->spec.rules[0].timeouts.backend_request_ms, 500);
	CHECK_INT((int)r->spec.rules[0].n_matches, 0);
	CHECK_INT(r->spec.rules[1].matches[0].path.type, CONFIG_PATH_PREFIX);
	CHECK_STR(r->spec.rules[1].matches[0].path.value, "/");
	CHECK_STR(config_http_method_name(r->spec.rules[1].matches[0].method), "POST");
	p = config_l7_policy_list(c, &n);
	REQUIRE(n == 1);
	CHECK_STR(p->key, "default/p"); /* metadata.namespace defaults to "default" */
	CHECK_INT(p->spec.action, CONFIG_L7_ALLOW);
	CHECK_INT((int)p->spec.n_rules, 0);
	config_unref(c);

	uint64_t ms = 0;
	CHECK_INT(config_duration_parse("1h30m", &ms), 0);
	CHECK(ms == 5400000);
	CHECK(config_duration_parse("123456s", &ms) < 0); /* more than 5 digits */
	CHECK(config_duration_parse("1s2s3s4s5s", &ms) < 0);
	CHECK(config_duration_parse("1.5s", &ms) < 0);
	CHECK(config_duration_parse("", &ms) < 0);
}

/* ---- waypoint enforcement (config_waypoint.c) -------------------------------------------------
 * One mesh: waypoint wp (10.0.0.9, endpoint of ns/wp.ns.svc, waypointFor all), workload app
 * naming it, services web (waypoint by address), plain (no waypoint), db (appProtocols TCP only)
 * and mixed (80 HTTP, 9000 TCP) behind wp. Each case swaps some pieces (unset: the default);
 * no `want` means the document loads, else these errors in order. */

#define WP_ALL ", \"waypointFor\": \"all\""
#define APP_WP ", \"waypoint\": {\"destination\": \"ns/wp.ns.svc\"}"
#define WEB_WP ", \"waypoint\": {\"destination\": \"/10.0.0.9\"}"

struct wp_case {
	const char *what;
	const char *wp_for, *app_wp, *web_wp, *tcp_wp, *extra_wl, *policies;
	const char *want, *want2;
};

static char *wp_doc(const struct wp_case *k)
{
	const char *tcp_wp = k->tcp_wp ? k->tcp_wp : APP_WP;

	return xasprintf(
		"{\"workloads\": ["
		"{\"uid\": \"wp\", \"name\": \"wp\", \"namespace\": \"ns\", \"workloadIps\": "
		"[\"10.0.0.9\"], \"services\": {\"ns/wp.ns.svc\": {\"15008\": 15008}}%s},"
		"{\"uid\": \"app\", \"name\": \"app\", \"namespace\": \"ns\", \"workloadIps\": "
		"[\"10.0.0.1\"], \"services\": {\"ns/web.ns.svc\": {\"80\": 8080}, "
		"\"ns/plain.ns.svc\": {\"80\": 8080}, \"ns/db.ns.svc\": {\"5432\": 5432}, "
		"\"ns/mixed.ns.svc\": {\"80\": 8080, \"9000\": 9000}}%s}%s],"
		"\"services\": ["
		"{\"name\": \"wp\", \"namespace\": \"ns\", \"hostname\": \"wp.ns.svc\", \"vips\": "
		"[\"10.96.0.9\"], \"ports\": {\"15008\": 15008}},"
		"{\"name\": \"web\", \"namespace\": \"ns\", \"hostname\": \"web.ns.svc\", "
		"\"vips\": "
		"[\"10.96.0.1\"], \"ports\": {\"80\": 8080}%s},"
		"{\"name\": \"plain\", \"namespace\": \"ns\", \"hostname\": \"plain.ns.svc\", "
		"\"vips\": [\"10.96.0.2\"], \"ports\": {\"80\": 8080}},"
		"{\"name\": \"db\", \"namespace\": \"ns\", \"hostname\": \"db.ns.svc\", \"vips\": "
		"[\"10.96.0.3\"], \"ports\": {\"5432\": 5432}, \"appProtocols\": {\"5432\": "
		"\"TCP\"}%s},"
		"{\"name\": \"mixed\", \"namespace\": \"ns\", \"hostname\": \"mixed.ns.svc\", "
		"\"vips\": [\"10.96.0.4\"], \"ports\": {\"80\": 8080, \"9000\": 9000}, "
		"\"appProtocols\": {\"9000\": \"TCP\"}%s}],"
		"\"l7Policies\": [%s]}",
		k->wp_for ? k->wp_for : WP_ALL, k->app_wp ? k->app_wp : APP_WP,
		k->extra_wl ? k->extra_wl : "", k->web_wp ? k->web_wp : WEB_WP, tcp_wp, tcp_wp,
		k->policies ? k->policies : "");
}

static const struct wp_case wp_cases[] = {
	{.what = "the base mesh: HTTP fields where HTTP is seen, L4 fields on TCP ports",
	 .policies = "{\"metadata\": {\"name\": \"web-get\", \"namespace\": \"ns\"}, \"spec\": "
		     "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"web\"}], \"rules\": "
		     "[{\"to\": [{\"operation\": {\"methods\": [\"GET\"]}}], \"when\": [{\"key\": "
		     "\"request.headers[x-a]\", \"values\": [\"1\"]}]}]}},{\"metadata\": "
		     "{\"name\": \"db-l4\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
		     "[{\"kind\": \"Service\", \"name\": \"db\"}], \"rules\": [{\"from\": "
		     "[{\"source\": {\"namespaces\": [\"ns\"]}}], \"to\": [{\"operation\": "
		     "{\"ports\": [\"5432\"]}}], \"when\": [{\"key\": \"source.ip\", \"values\": "
		     "[\"10.0.0.0/8\"]}]}]}},{\"metadata\": {\"name\": \"mixed-any\", "
		     "\"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": [{\"kind\": \"Service\", "
		     "\"name\": \"mixed\"}], \"action\": \"DENY\", \"rules\": [{\"to\": "
		     "[{\"operation\": {\"paths\": [\"/admin\"]}}]}, {\"to\": [{\"operation\": "
		     "{\"ports\": [\"80\"], \"methods\": [\"POST\"]}}]}, {\"to\": [{\"operation\": "
		     "{\"notPorts\": [\"9000\"], \"hosts\": [\"x\"]}}]}]}},{\"metadata\": "
		     "{\"name\": \"gw\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
		     "[{\"kind\": \"Gateway\", \"name\": \"wp\"}], \"action\": \"DENY\", "
		     "\"rules\": [{\"to\": [{\"operation\": {\"ports\": [\"5432\"], \"paths\": "
		     "[\"/admin\"]}}]}]}},{\"metadata\": {\"name\": \"empty\", \"namespace\": "
		     "\"ns\"}, \"spec\": {\"targetRefs\": [{\"kind\": \"Service\", \"name\": "
		     "\"db\"}]}}"},
	{.what = "waypointFor service (the default) is enough for services",
	 .wp_for = "",
	 .app_wp = "",
	 .policies = "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": "
		     "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"web\"}]}}"},
	{.what = "waypointFor workload is enough for workloads; a Gateway target with "
		 "waypointFor set",
	 .wp_for = ", \"waypointFor\": \"workload\"",
	 .web_wp = "",
	 .tcp_wp = "",
	 .extra_wl = ",{\"uid\": \"s\", \"name\": \"s\", \"namespace\": \"ns\", \"workloadIps\": "
		     "[\"10.0.0.3\"], \"waypointFor\": \"service\"}",
	 .policies = "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": "
		     "{\"targetRefs\": [{\"kind\": \"Gateway\", \"name\": "
		     "\"wp\"}]}},{\"metadata\": {\"name\": \"q\", \"namespace\": \"ns\"}, "
		     "\"spec\": {\"targetRefs\": [{\"kind\": \"Gateway\", \"name\": \"s\"}]}}"},
	{.what = "an address-form waypoint matching nothing is only a warning",
	 .web_wp = ", \"waypoint\": {\"destination\": \"/10.0.0.99\"}",
	 .policies = "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": "
		     "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"web\"}]}}"},
	{.what = "a service naming a waypoint that takes only workload traffic",
	 .wp_for = ", \"waypointFor\": \"workload\"",
	 .app_wp = "",
	 .tcp_wp = "",
	 .want = "mesh.json: .services[1].waypoint.destination: waypoint \"/10.0.0.9\" is "
		 "workload \"ns/wp\" (.workloads[0]), whose waypointFor is workload: it "
		 "refuses service traffic, so every connection to this service would fail; set "
		 "the waypoint's \"waypointFor\" to \"service\" or \"all\""},
	{.what = "a workload naming a waypoint that takes only service traffic (the default)",
	 .wp_for = "",
	 .want = "mesh.json: .workloads[1].waypoint.destination: waypoint \"ns/wp.ns.svc\" is "
		 "workload \"ns/wp\" (.workloads[0]), whose waypointFor is service (the "
		 "default): it refuses workload traffic, so every connection to this workload "
		 "would fail; set the waypoint's \"waypointFor\" to \"workload\" or \"all\""},
	{.what = "waypointFor none takes nothing",
	 .wp_for = ", \"waypointFor\": \"none\"",
	 .tcp_wp = "",
	 .want = "mesh.json: .services[1].waypoint.destination: waypoint \"/10.0.0.9\" is "
		 "workload \"ns/wp\" (.workloads[0]), whose waypointFor is none: it refuses "
		 "service traffic, so every connection to this service would fail; set the "
		 "waypoint's \"waypointFor\" to \"service\" or \"all\"",
	 .want2 = "mesh.json: .workloads[1].waypoint.destination: waypoint \"ns/wp.ns.svc\" is "
		  "workload \"ns/wp\" (.workloads[0]), whose waypointFor is none: it refuses "
		  "workload traffic, so every connection to this workload would fail; set the "
		  "waypoint's \"waypointFor\" to \"workload\" or \"all\""},
	{.what = "a policy on a service without a waypoint",
	 .policies = "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": "
		     "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"plain\"}]}}",
	 .want = "mesh.json: .l7Policies[0].spec.targetRefs[0]: service \"ns/plain\" has no "
		 "waypoint, so nothing enforces this policy (l7Policies apply only at a "
		 "waypoint; traffic to the service goes straight to its endpoints); give the "
		 "service a \"waypoint\" or remove this targetRef"},
	{.what = "a Gateway target that is no waypoint",
	 .policies = "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": "
		     "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"web\"},{\"kind\": "
		     "\"Gateway\", \"name\": \"app\"}]}}",
	 .want = "mesh.json: .l7Policies[0].spec.targetRefs[1]: workload \"ns/app\" is not a "
		 "waypoint (no service or workload names it as its \"waypoint\", and its "
		 "waypointFor is not given), so nothing enforces this policy; name it in the "
		 "\"waypoint\" of the services or workloads it serves, or target their waypoint"},
	{.what = "methods on a TCP-only service (ALLOW)",
	 .policies = "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": "
		     "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"db\"}], \"rules\": "
		     "[{\"to\": [{\"operation\": {\"ports\": [\"5432\"], \"methods\": "
		     "[\"GET\"]}}]}]}}",
	 .want = "mesh.json: .l7Policies[0].spec.rules[0].to[0].operation: methods cannot be "
		 "enforced: every port this applies to has appProtocols TCP (ns/db:5432), "
		 "which the waypoint relays as bytes without seeing HTTP, and this ALLOW rule "
		 "cannot match a TCP connection; remove them, or limit \"ports\" to HTTP ports"},
	{.what = "a header condition on a TCP-only service (DENY)",
	 .policies = "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": "
		     "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"db\"}], \"action\": "
		     "\"DENY\", \"rules\": [{\"when\": [{\"key\": \"request.headers[x-user]\", "
		     "\"values\": [\"eve\"]}]}]}}",
	 .want = "mesh.json: .l7Policies[0].spec.rules[0].when[0]: a request.headers condition "
		 "cannot be enforced: every port this applies to has appProtocols TCP "
		 "(ns/db:5432), which the waypoint relays as bytes without seeing HTTP, and "
		 "this DENY rule ignores them and denies every connection it otherwise "
		 "matches; remove it, or limit the rule's \"ports\" to HTTP ports"},
	{.what = "paths on the TCP port of a mixed service, selected by notPorts",
	 .policies = "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": "
		     "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"mixed\"}], \"action\": "
		     "\"AUDIT\", \"rules\": [{\"to\": [{\"operation\": {\"notPorts\": [\"80\"], "
		     "\"paths\": [\"/a\"], \"notHosts\": [\"b\"]}}]}]}}",
	 .want = "mesh.json: .l7Policies[0].spec.rules[0].to[0].operation: notHosts, paths "
		 "cannot be enforced: every port this applies to has appProtocols TCP "
		 "(ns/mixed:9000), which the waypoint relays as bytes without seeing HTTP, and "
		 "this AUDIT rule ignores them and logs every connection it otherwise matches; "
		 "remove them, or limit \"ports\" to HTTP ports"},
	{.what = "a header condition whose rule selects only TCP ports",
	 .policies = "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": "
		     "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"mixed\"}], \"rules\": "
		     "[{\"to\": [{\"operation\": {\"ports\": [\"9000\"]}}], \"when\": [{\"key\": "
		     "\"request.headers[x]\", \"notValues\": [\"1\"]}]}]}}",
	 .want = "mesh.json: .l7Policies[0].spec.rules[0].when[0]: a request.headers condition "
		 "cannot be enforced: every port this applies to has appProtocols TCP "
		 "(ns/mixed:9000), which the waypoint relays as bytes without seeing HTTP, and "
		 "this ALLOW rule cannot match a TCP connection; remove it, or limit the "
		 "rule's \"ports\" to HTTP ports"},
	{.what = "paths on a waypoint (Gateway) whose selected service ports are all TCP",
	 .wp_for = ", \"waypointFor\": \"service\"",
	 .app_wp = "",
	 .web_wp = "",
	 .policies = "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": "
		     "{\"targetRefs\": [{\"kind\": \"Gateway\", \"name\": \"wp\"}], \"action\": "
		     "\"DENY\", \"rules\": [{\"to\": [{\"operation\": {\"ports\": [\"5432\", "
		     "\"9000\"], \"paths\": [\"/admin\"]}}]}]}}",
	 .want = "mesh.json: .l7Policies[0].spec.rules[0].to[0].operation: paths cannot be "
		 "enforced: every port this applies to has appProtocols TCP (ns/db:5432, "
		 "ns/mixed:9000), which the waypoint relays as bytes without seeing HTTP, and "
		 "this DENY rule ignores them and denies every connection it otherwise "
		 "matches; remove them, or limit \"ports\" to HTTP ports"},
};

TEST(config_waypoint_enforcement)
{
	for (size_t i = 0; i < ARRAY_LEN(wp_cases); i++) {
		const struct wp_case *k = &wp_cases[i];
		struct errlist errs = {0};
		char *doc = wp_doc(k);
		struct config *c = parse_str(doc, &errs);
		size_t want_n = k->want ? (k->want2 ? 2 : 1) : 0;
		char *j = errlist_join(&errs);

		if (!k->want && !c)
			unit_fail(__FILE__, __LINE__, "%s: should load:\n%s", k->what, j);
		else if (k->want && (c || errs.n != want_n))
			unit_fail(__FILE__, __LINE__, "%s: want %zu error(s), got %zu:\n%s",
				  k->what, want_n, errs.n, j);
		else if (k->want && strcmp(errs.items[0], k->want) != 0)
			unit_fail(__FILE__, __LINE__, "%s:\n--- want\n%s\n--- got\n%s", k->what,
				  k->want, errs.items[0]);
		else if (k->want2 && strcmp(errs.items[1], k->want2) != 0)
			unit_fail(__FILE__, __LINE__, "%s:\n--- want\n%s\n--- got\n%s", k->what,
				  k->want2, errs.items[1]);
		free(j);
		config_unref(c);
		errlist_fini(&errs);
		free(doc);
	}
}
