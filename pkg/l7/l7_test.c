/* Table-driven tests of pkg/l7: path normalization (RFC 3986 §5.2.4, Istio's modes and the
 * classic bypasses), Gateway API route precedence (cases written from the spec's rules), Istio
 * authorization semantics, weighted backends and path rewrites. */
#include "pkg/l7/l7.h"
#include "test/unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The case tables leave trailing request fields out. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static struct slice sl(const char *z)
{
	return (struct slice){(const uint8_t *)z, strlen(z)};
}

/* ---- normalization ----------------------------------------------------------------------------
 */

struct norm_case {
	enum l7_norm_mode mode;
	bool reject;
	const char *in, *out; /* out NULL: rejected */
};

static const struct norm_case norm_cases[] = {
	{L7_NORM_NONE, false, "/a/../b", "/a/../b"},
	{L7_NORM_BASE, false, "/a/../admin", "/admin"},
	{L7_NORM_BASE, false, "/a/./b/../../admin/", "/admin/"},
	{L7_NORM_BASE, false, "/../../admin", "/admin"},
	{L7_NORM_BASE, false, "/a/b/..", "/a/"},
	{L7_NORM_BASE, false, "/a/b/.", "/a/b/"},
	{L7_NORM_BASE, false, "/a/..", "/"},
	{L7_NORM_BASE, false, "/", "/"},
	{L7_NORM_BASE, false, "/%61dmin", "/admin"},		   /* unreserved decoded */
	{L7_NORM_BASE, false, "/%2e%2e/admin", "/admin"},	   /* encoded dots are dots */
	{L7_NORM_BASE, false, "/a%2fb", "/a%2Fb"},		   /* Istio DEFAULT keeps %2F */
	{L7_NORM_BASE, false, "/a%3fb?x=/../y", "/a%3Fb?x=/../y"}, /* query untouched */
	{L7_NORM_BASE, false, "//admin", "//admin"},		   /* BASE keeps "//" */
	{L7_NORM_BASE, false, "/a//../b", "/a/b"},		   /* RFC 3986 §5.2.4 */
	{L7_NORM_BASE, true, "/admin%2Fx", NULL},
	{L7_NORM_BASE, true, "/admin%5cx", NULL},
	{L7_NORM_BASE, false, "/a%zz", NULL},
	{L7_NORM_BASE, false, "/a%4", NULL},
	{L7_NORM_BASE, false, "admin", NULL},
	{L7_NORM_BASE, false, "*", NULL},
	{L7_NORM_MERGE_SLASHES, false, "//admin", "/admin"},
	{L7_NORM_MERGE_SLASHES, false, "/a///b//", "/a/b/"},
	{L7_NORM_MERGE_SLASHES, false, "/a%2F/b", "/a%2F/b"},
	{L7_NORM_DECODE_AND_MERGE_SLASHES, false, "/admin%2Fx", "/admin/x"},
	{L7_NORM_DECODE_AND_MERGE_SLASHES, false, "/x%2F..%2Fadmin", "/admin"},
	{L7_NORM_DECODE_AND_MERGE_SLASHES, false, "/a%5C%5Cb", "/a/b"},
};

TEST(l7_path_normalize_table)
{
	for (size_t i = 0; i < ARRAY_LEN(norm_cases); i++) {
		const struct norm_case *c = &norm_cases[i];
		struct l7_norm_opts o = {c->mode, c->reject};
		char out[256];
		const char *why;
		int n = l7_path_normalize(c->in, strlen(c->in), &o, out, sizeof(out), &why);
		if (!c->out) {
			CHECK(n < 0);
			CHECK(why[0] != '\0');
			continue;
		}
		if (n < 0) {
			CHECK_STR(c->in, "(normalized)");
			continue;
		}
		CHECK_STR(out, c->out);
		CHECK_INT(n, (int)strlen(c->out));
	}
}

/* ---- a mesh with routes ------------------------------------------------------------------------
 */

static const char mesh_head[] =
	"{\"workloads\": ["
	" {\"uid\": \"wp\", \"name\": \"waypoint\", \"namespace\": \"ns\", \"serviceAccount\": "
	"\"waypoint\", \"workloadIps\": [\"10.0.0.9\"], \"waypointFor\": \"service\"},"
	" {\"uid\": \"e1\", \"name\": \"e1\", \"namespace\": \"ns\", \"workloadIps\": "
	"[\"10.0.0.1\"], \"services\": {\"ns/echo.ns.svc\": {\"80\": 8080}}}"
	"],"
	"\"services\": ["
	" {\"name\": \"echo\", \"namespace\": \"ns\", \"hostname\": \"echo.ns.svc\", \"vips\": "
	"[\"10.96.0.1\"], \"ports\": {\"80\": 8080, \"81\": 8081}, \"waypoint\": {\"destination\": "
	"\"/10.0.0.9\"}},"
	" {\"name\": \"v1\", \"namespace\": \"ns\", \"hostname\": \"v1.ns.svc\", \"vips\": "
	"[\"10.96.0.2\"], \"ports\": {\"80\": 8080}, \"waypoint\": {\"destination\": "
	"\"/10.0.0.9\"}},"
	" {\"name\": \"v2\", \"namespace\": \"ns\", \"hostname\": \"v2.ns.svc\", \"vips\": "
	"[\"10.96.0.3\"], \"ports\": {\"80\": 8080}, \"waypoint\": {\"destination\": "
	"\"/10.0.0.9\"}},"
	" {\"name\": \"v3\", \"namespace\": \"ns\", \"hostname\": \"v3.ns.svc\", \"vips\": "
	"[\"10.96.0.4\"], \"ports\": {\"80\": 8080}, \"waypoint\": {\"destination\": "
	"\"/10.0.0.9\"}},"
	" {\"name\": \"other\", \"namespace\": \"ns\", \"hostname\": \"other.ns.svc\", \"vips\": "
	"[\"10.96.0.5\"], \"ports\": {\"80\": 8080}, \"waypoint\": {\"destination\": "
	"\"/10.0.0.9\"}}"
	"]";

static struct config *mesh(const char *routes, const char *policies)
{
	struct errlist errs = {0};
	char *doc = xasprintf("%s, \"routes\": [%s], \"l7Policies\": [%s]}", mesh_head,
			      routes ? routes : "", policies ? policies : "");
	struct config *c = config_parse("t.json", doc, strlen(doc), 1, &errs);

	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "    config: %s\n", errs.items[i]);
	errlist_fini(&errs);
	free(doc);
	return c;
}

/* A route "name" on echo with the given rules JSON and creation time. */
static char *route(const char *name, const char *ts, const char *rules)
{
	return xasprintf("{\"metadata\": {\"name\": \"%s\", \"namespace\": \"ns\"%s%s%s}, "
			 "\"spec\": {\"parentRefs\": [{\"kind\": \"Service\", \"name\": "
			 "\"echo\"}], \"rules\": %s}}",
			 name, ts ? ", \"creationTimestamp\": \"" : "", ts ? ts : "",
			 ts ? "\"" : "", rules);
}

struct req_spec {
	const char *method, *path;
	const char *h1, *v1, *h2, *v2;
};

static void mkreq(const struct req_spec *s, struct l7_request *r, struct l7_header *h)
{
	size_t n = 0;

	memset(r, 0, sizeof(*r));
	r->method = s->method ? s->method : "GET";
	r->path = s->path;
	r->host = "echo.ns.svc";
	r->source_principal = "";
	r->dest_port = 80;
	if (s->h1)
		h[n++] = (struct l7_header){sl(s->h1), sl(s->v1)};
	if (s->h2)
		h[n++] = (struct l7_header){sl(s->h2), sl(s->v2)};
	r->headers = h;
	r->n_headers = n;
}

/* Which backend (service name) the selected rule sends to, "404" when none matches. */
static const char *routed(struct config *c, const struct req_spec *s)
{
	struct l7_table *t = l7_table_new(c, NULL);
	const struct config_service *svc = config_service_by_name(c, "ns", "echo");
	struct l7_route_result rr;
	struct l7_request r;
	struct l7_header h[2];
	const char *out = "404";

	mkreq(s, &r, h);
	if (l7_route_select(t, svc, 80, &r, &rr))
		out = rr.rule->n_backend_refs ? rr.rule->backend_refs[0].name : "(no backend)";
	l7_table_free(t);
	return out;
}

#define B(svc) "\"backendRefs\": [{\"name\": \"" svc "\", \"port\": 80}]"

struct route_case {
	const char *what;
	const char *r1, *r2; /* rules JSON of route "a" (older) and optional route "b" */
	struct req_spec req;
	const char *want;
};

static const struct route_case route_cases[] = {
	{"Exact beats PathPrefix of the same text",
	 "[{\"matches\": [{\"path\": {\"type\": \"PathPrefix\", \"value\": \"/foo\"}}], " B(
		 "v1") "}, {\"matches\": [{\"path\": {\"type\": \"Exact\", \"value\": "
		       "\"/foo\"}}], " B("v2") "}]",
	 NULL,
	 {NULL, "/foo"},
	 "v2"},
	{"Exact is case-sensitive and exact",
	 "[{\"matches\": [{\"path\": {\"type\": \"Exact\", "
	 "\"value\": \"/abc\"}}], " B("v1") "}]",
	 NULL,
	 {NULL, "/abc/"},
	 "404"},
	{"longest PathPrefix wins",
	 "[{\"matches\": [{\"path\": {\"value\": \"/foo\"}}], " B(
		 "v1") "}, {\"matches\": "
		       "[{\"path\": {\"value\": \"/foo/bar\"}}], " B("v2") "}]",
	 NULL,
	 {NULL, "/foo/bar/baz"},
	 "v2"},
	{"PathPrefix is element-wise: /abc does not match /abcd",
	 "[{\"matches\": [{\"path\": {\"value\": \"/abc\"}}], " B("v1") "}]",
	 NULL,
	 {NULL, "/abcd"},
	 "404"},
	{"PathPrefix /abc matches /abc/",
	 "[{\"matches\": [{\"path\": {\"value\": \"/abc\"}}], " B("v1") "}]",
	 NULL,
	 {NULL, "/abc/"},
	 "v1"},
	{"PathPrefix trailing slash ignored: /abc/ matches /abc",
	 "[{\"matches\": [{\"path\": {\"value\": \"/abc/\"}}], " B("v1") "}]",
	 NULL,
	 {NULL, "/abc?q=1"},
	 "v1"},
	{"a longer prefix beats a method match",
	 "[{\"matches\": [{\"path\": {\"value\": \"/\"}, \"method\": \"GET\"}], " B(
		 "v1") "}, "
		       "{\"matches\": [{\"path\": {\"value\": \"/x\"}}], " B("v2") "}]",
	 NULL,
	 {"GET", "/x/y"},
	 "v2"},
	{"a method match beats none",
	 "[{\"matches\": [{\"path\": {\"value\": \"/x\"}}], " B(
		 "v1") "}, {\"matches\": "
		       "[{\"path\": {\"value\": \"/x\"}, \"method\": \"POST\"}], " B("v2") "}]",
	 NULL,
	 {"POST", "/x"},
	 "v2"},
	{"method must match",
	 "[{\"matches\": [{\"method\": \"POST\"}], " B("v1") "}]",
	 NULL,
	 {"GET", "/"},
	 "404"},
	{"more header matches win",
	 "[{\"matches\": [{\"headers\": [{\"name\": \"a\", \"value\": \"1\"}]}], " B(
		 "v1") "}, "
		       "{\"matches\": [{\"headers\": [{\"name\": \"a\", \"value\": \"1\"}, "
		       "{\"name\": \"b\", "
		       "\"value\": \"2\"}]}], " B("v2") "}]",
	 NULL,
	 {NULL, "/", "A", "1", "B", "2"},
	 "v2"},
	{"header names are case-insensitive, values exact",
	 "[{\"matches\": [{\"headers\": [{\"name\": \"X-Env\", \"value\": \"canary\"}]}], " B(
		 "v1") "}]",
	 NULL,
	 {NULL, "/", "x-env", "Canary"},
	 "404"},
	{"header regex is a full match",
	 "[{\"matches\": [{\"headers\": [{\"type\": \"RegularExpression\", \"name\": \"x\", "
	 "\"value\": \"v[0-9]+\"}]}], " B("v1") "}]",
	 NULL,
	 {NULL, "/", "x", "v12x"},
	 "404"},
	{"more query-param matches win",
	 "[{\"matches\": [{\"queryParams\": [{\"name\": \"a\", \"value\": \"1\"}]}], " B(
		 "v1") "}, "
		       "{\"matches\": [{\"queryParams\": [{\"name\": \"a\", \"value\": \"1\"}, "
		       "{\"name\": \"b\", "
		       "\"value\": \"2\"}]}], " B("v2") "}]",
	 NULL,
	 {NULL, "/?b=2&a=1"},
	 "v2"},
	{"query params: the first value counts",
	 "[{\"matches\": [{\"queryParams\": [{\"name\": \"a\", \"value\": \"2\"}]}], " B("v1") "}]",
	 NULL,
	 {NULL, "/?a=1&a=2"},
	 "404"},
	{"headers beat query params",
	 "[{\"matches\": [{\"queryParams\": [{\"name\": \"a\", \"value\": \"1\"}, {\"name\": "
	 "\"b\", "
	 "\"value\": \"1\"}]}], " B("v1") "}, {\"matches\": [{\"headers\": [{\"name\": \"h\", "
					  "\"value\": \"1\"}]}], " B("v2") "}]",
	 NULL,
	 {NULL, "/?a=1&b=1", "h", "1"},
	 "v2"},
	{"a PathPrefix beats a RegularExpression (implementation-specific order)",
	 "[{\"matches\": [{\"path\": {\"type\": \"RegularExpression\", \"value\": \"/x/.*\"}}], " B(
		 "v1") "}, {\"matches\": [{\"path\": {\"value\": \"/\"}}], " B("v2") "}]",
	 NULL,
	 {NULL, "/x/1"},
	 "v2"},
	{"a RegularExpression is a full match on the path",
	 "[{\"matches\": [{\"path\": {\"type\": \"RegularExpression\", \"value\": "
	 "\"/v[0-9]\"}}], " B("v1") "}]",
	 NULL,
	 {NULL, "/v1/x"},
	 "404"},
	{"a RegularExpression matches",
	 "[{\"matches\": [{\"path\": {\"type\": "
	 "\"RegularExpression\", \"value\": \"/v[0-9]/.*\"}}], " B("v1") "}]",
	 NULL,
	 {NULL, "/v1/x?q"},
	 "v1"},
	{"within a route the first rule wins a tie",
	 "[{\"matches\": [{\"path\": {\"value\": \"/t\"}}], " B(
		 "v1") "}, {\"matches\": "
		       "[{\"path\": {\"value\": \"/t\"}}], " B("v2") "}]",
	 NULL,
	 {NULL, "/t"},
	 "v1"},
	{"a rule without matches is PathPrefix /",
	 "[{" B("v3") "}]",
	 NULL,
	 {NULL, "/any/thing"},
	 "v3"},
	{"across routes a tie goes to the oldest route",
	 "[{\"matches\": [{\"path\": {\"value\": \"/t\"}}], " B("v1") "}]",
	 "[{\"matches\": [{\"path\": {\"value\": \"/t\"}}], " B("v2") "}]",
	 {NULL, "/t"},
	 "v1"},
	{"precedence beats age: the newer route's longer prefix wins",
	 "[{\"matches\": [{\"path\": {\"value\": \"/t\"}}], " B("v1") "}]",
	 "[{\"matches\": [{\"path\": {\"value\": \"/t/u\"}}], " B("v2") "}]",
	 {NULL, "/t/u"},
	 "v2"},
	{"nothing matches: 404",
	 "[{\"matches\": [{\"path\": {\"type\": \"Exact\", \"value\": "
	 "\"/only\"}}], " B("v1") "}]",
	 NULL,
	 {NULL, "/other"},
	 "404"},
};

TEST(l7_route_precedence_table)
{
	for (size_t i = 0; i < ARRAY_LEN(route_cases); i++) {
		const struct route_case *rc = &route_cases[i];
		/* "a" is older than "b" */
		char *a = route("a", "2024-01-01T00:00:00Z", rc->r1);
		char *b = rc->r2 ? route("b", "2025-01-01T00:00:00Z", rc->r2) : NULL;
		char *both = xasprintf("%s%s%s", a, b ? ", " : "", b ? b : "");
		struct config *c = mesh(both, NULL);
		if (!c) {
			CHECK_STR(rc->what, "(config parses)");
		} else {
			const char *got = routed(c, &rc->req);
			if (strcmp(got, rc->want) != 0)
				fprintf(stderr, "    case: %s\n", rc->what);
			CHECK_STR(got, rc->want);
			config_unref(c);
		}
		free(a);
		free(b);
		free(both);
	}
}

TEST(l7_route_alphabetical_tie_break)
{
	/* Same (absent) creation time: "ns/a" before "ns/b", whatever the document order. */
	char *b = route("b", NULL, "[{" B("v2") "}]");
	char *a = route("a", NULL, "[{" B("v1") "}]");
	char *both = xasprintf("%s, %s", b, a);
	struct config *c = mesh(both, NULL);
	struct req_spec s = {NULL, "/"};

	REQUIRE(c);
	CHECK_STR(routed(c, &s), "v1");
	config_unref(c);
	free(a);
	free(b);
	free(both);
}

TEST(l7_route_attachment)
{
	/* A route on another service, and one on echo port 81 only, never apply to echo:80. */
	const char *routes = "{\"metadata\": {\"name\": \"o\", \"namespace\": \"ns\"}, \"spec\": "
			     "{\"parentRefs\": "
			     "[{\"kind\": \"Service\", \"name\": \"other\"}], \"rules\": [{" B(
				     "v1") "}]}},"
					   "{\"metadata\": {\"name\": \"p\", \"namespace\": "
					   "\"ns\"}, \"spec\": {\"parentRefs\": "
					   "[{\"kind\": \"Service\", \"name\": \"echo\", \"port\": "
					   "81}], \"rules\": [{" B("v2") "}]}}";
	struct config *c = mesh(routes, NULL);
	struct l7_table *t;
	const struct config_service *echo;

	REQUIRE(c);
	t = l7_table_new(c, NULL);
	echo = config_service_by_name(c, "ns", "echo");
	CHECK(!l7_service_has_routes(t, echo, 80));
	CHECK(l7_service_has_routes(t, echo, 81));
	CHECK(l7_service_has_routes(t, config_service_by_name(c, "ns", "other"), 80));
	l7_table_free(t);
	config_unref(c);
}

TEST(l7_backend_weights)
{
	char *r = route("w", NULL,
			"[{\"backendRefs\": [{\"name\": \"v1\", \"port\": 80, \"weight\": 1}, "
			"{\"name\": \"v2\", \"port\": 80, \"weight\": 3}, {\"name\": \"v3\", "
			"\"port\": 80, \"weight\": 0}]}, {\"backendRefs\": [{\"name\": \"v1\", "
			"\"port\": 80, \"weight\": 0}]}]");
	struct config *c = mesh(r, NULL);
	size_t n, counts[3] = {0};
	const struct config_route *rt;

	REQUIRE(c);
	rt = config_route_list(c, &n);
	for (uint64_t i = 0; i < 4000; i++) {
		int k = l7_backend_pick(&rt[0].spec.rules[0], i * 2654435761u);
		REQUIRE(k >= 0 && k < 3);
		counts[k]++;
	}
	CHECK_INT((int)counts[2], 0); /* weight 0: no traffic */
	CHECK(counts[1] > 2 * counts[0] && counts[1] < 4 * counts[0]);
	CHECK_INT(l7_backend_pick(&rt[0].spec.rules[1], 7), -1); /* all weights 0: 500 */
	config_unref(c);
	free(r);
}

TEST(l7_path_rewrite_table)
{
	/* Gateway API HTTPPathModifier ReplacePrefixMatch table (reference §3.5). */
	static const struct {
		const char *prefix, *replace, *path, *want;
	} cases[] = {
		{"/foo", "/xyz", "/foo/bar", "/xyz/bar"},
		{"/foo", "/xyz/", "/foo/bar", "/xyz/bar"},
		{"/foo/", "/xyz", "/foo/bar", "/xyz/bar"},
		{"/foo", "/xyz", "/foo", "/xyz"},
		{"/foo", "/xyz", "/foo/", "/xyz/"},
		{"/foo", "", "/foo/bar", "/bar"},
		{"/foo", "", "/foo/", "/"},
		{"/foo", "", "/foo", "/"},
		{"/foo", "/", "/foo/", "/"},
		{"/foo", "/", "/foo", "/"},
		{"/foo", "/xyz", "/foo/bar?q=1", "/xyz/bar?q=1"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct config_route_match m = {.path = {CONFIG_PATH_PREFIX, cases[i].prefix}};
		struct config_path_modifier pm = {.present = true,
						  .type = CONFIG_PATH_REPLACE_PREFIX,
						  .replace_prefix_match = cases[i].replace};
		char out[128];
		CHECK(l7_path_rewrite(&pm, &m, cases[i].path, out, sizeof(out)) > 0);
		CHECK_STR(out, cases[i].want);
	}
	struct config_path_modifier full = {
		.present = true, .type = CONFIG_PATH_REPLACE_FULL, .replace_full_path = "/new"};
	char out[64];
	CHECK(l7_path_rewrite(&full, NULL, "/old/x?a=b", out, sizeof(out)) > 0);
	CHECK_STR(out, "/new?a=b");
}

/* ---- authorization ----------------------------------------------------------------------------
 */

static char *policy(const char *name, const char *action, const char *target, const char *rules)
{
	return xasprintf("{\"metadata\": {\"name\": \"%s\", \"namespace\": \"ns\"}, \"spec\": "
			 "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"%s\"}], "
			 "\"action\": \"%s\"%s%s}}",
			 name, target, action, rules ? ", \"rules\": " : "", rules ? rules : "");
}

struct authz_req {
	const char *method, *path, *principal, *ip;
	uint16_t port;
	const char *hname, *hvalue;
	enum l7_norm_mode norm;
	bool tcp; /* an appProtocol TCP connection: method/path unused */
};

struct authz_case {
	const char *what;
	const char *p1, *p2; /* policies (JSON) */
	struct authz_req req;
	bool allow;
	const char *policy; /* deciding policy name, "" for none */
	int rule;
};

#define ADMIN_DENY                                                                                 \
	"{\"metadata\": {\"name\": \"no-admin\", \"namespace\": \"ns\"}, \"spec\": "               \
	"{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"echo\"}], \"action\": "             \
	"\"DENY\", \"rules\": [{\"to\": [{\"operation\": {\"paths\": [\"/admin\", "                \
	"\"/admin/*\"]}}]}]}}"
#define ALLOW_GET                                                                                  \
	"{\"metadata\": {\"name\": \"get-only\", \"namespace\": \"ns\"}, \"spec\": "               \
	"{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"echo\"}], \"rules\": "              \
	"[{\"to\": [{\"operation\": {\"methods\": [\"POST\"]}}]}, {\"to\": "                       \
	"[{\"operation\": {\"methods\": [\"GET\"], \"paths\": [\"/api/{*}/items\", "               \
	"\"/files/{**}\"]}}]}]}}"
#define PRINCIPAL "cluster.local/ns/client/sa/curl"

static const struct authz_case authz_cases[] = {
	{"no policies: allow", NULL, NULL, {"GET", "/admin"}, true, "", 0},
	{"DENY on a path", ADMIN_DENY, NULL, {"GET", "/admin"}, false, "no-admin", 0},
	{"DENY prefix pattern", ADMIN_DENY, NULL, {"GET", "/admin/users"}, false, "no-admin", 0},
	{"other paths pass a DENY", ADMIN_DENY, NULL, {"GET", "/public"}, true, "", 0},
	{"/a/../admin is /admin after normalization",
	 ADMIN_DENY,
	 NULL,
	 {"GET", "/a/../admin", .norm = L7_NORM_BASE},
	 false,
	 "no-admin",
	 0},
	{"/%61dmin is /admin after normalization",
	 ADMIN_DENY,
	 NULL,
	 {"GET", "/%61dmin", .norm = L7_NORM_BASE},
	 false,
	 "no-admin",
	 0},
	{"//admin under MERGE_SLASHES is /admin",
	 ADMIN_DENY,
	 NULL,
	 {"GET", "//admin", .norm = L7_NORM_MERGE_SLASHES},
	 false,
	 "no-admin",
	 0},
	{"//admin under BASE stays //admin (Istio: use MERGE_SLASHES)",
	 ADMIN_DENY,
	 NULL,
	 {"GET", "//admin", .norm = L7_NORM_BASE},
	 true,
	 "",
	 0},
	{"/admin%2Fx under DECODE_AND_MERGE_SLASHES is /admin/x",
	 ADMIN_DENY,
	 NULL,
	 {"GET", "/admin%2Fx", .norm = L7_NORM_DECODE_AND_MERGE_SLASHES},
	 false,
	 "no-admin",
	 0},
	{"query strings are not part of the path",
	 ADMIN_DENY,
	 NULL,
	 {"GET", "/admin?x=1"},
	 false,
	 "no-admin",
	 0},
	{"ALLOW exists, nothing matches: deny",
	 ALLOW_GET,
	 NULL,
	 {"DELETE", "/api/1/items"},
	 false,
	 "",
	 0},
	{"ALLOW rule 1 with {*}", ALLOW_GET, NULL, {"GET", "/api/7/items"}, true, "get-only", 1},
	{"{*} is one segment", ALLOW_GET, NULL, {"GET", "/api/7/8/items"}, false, "", 0},
	{"{*} is not empty", ALLOW_GET, NULL, {"GET", "/api//items"}, false, "", 0},
	{"{**} is any depth", ALLOW_GET, NULL, {"GET", "/files/a/b/c.txt"}, true, "get-only", 1},
	{"ALLOW rule 0 by method", ALLOW_GET, NULL, {"POST", "/whatever"}, true, "get-only", 0},
	{"DENY beats ALLOW", ADMIN_DENY, ALLOW_GET, {"POST", "/admin"}, false, "no-admin", 0},
	{"ALLOW with no rules denies all",
	 "{\"metadata\": {\"name\": \"nothing\", \"namespace\": \"ns\"}, \"spec\": "
	 "{\"targetRefs\": "
	 "[{\"kind\": \"Service\", \"name\": \"echo\"}]}}",
	 NULL,
	 {"GET", "/"},
	 false,
	 "",
	 0},
	{"rules [{}] allow all",
	 "{\"metadata\": {\"name\": \"all\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
	 "[{\"kind\": \"Service\", \"name\": \"echo\"}], \"rules\": [{}]}}",
	 NULL,
	 {"GET", "/"},
	 true,
	 "all",
	 0},
	{"a policy on another service does not apply",
	 "{\"metadata\": {\"name\": \"nothing\", \"namespace\": \"ns\"}, \"spec\": "
	 "{\"targetRefs\": "
	 "[{\"kind\": \"Service\", \"name\": \"other\"}]}}",
	 NULL,
	 {"GET", "/"},
	 true,
	 "",
	 0},
	{"a Gateway target (the waypoint) applies",
	 "{\"metadata\": {\"name\": \"wp\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
	 "[{\"kind\": \"Gateway\", \"name\": \"waypoint\"}], \"action\": \"DENY\", \"rules\": "
	 "[{}]}}",
	 NULL,
	 {"GET", "/"},
	 false,
	 "wp",
	 0},
	{"principals",
	 "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
	 "[{\"kind\": \"Service\", \"name\": \"echo\"}], \"rules\": [{\"from\": [{\"source\": "
	 "{\"principals\": [\"cluster.local/ns/client/*\"]}}]}]}}",
	 NULL,
	 {"GET", "/", PRINCIPAL},
	 true,
	 "p",
	 0},
	{"principals: no identity",
	 "{\"metadata\": {\"name\": \"p\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
	 "[{\"kind\": \"Service\", \"name\": \"echo\"}], \"rules\": [{\"from\": [{\"source\": "
	 "{\"principals\": [\"*\"]}}]}]}}",
	 NULL,
	 {"GET", "/", ""},
	 false,
	 "",
	 0},
	{"notNamespaces",
	 "{\"metadata\": {\"name\": \"n\", \"namespace\": \"ns\"}, \"spec\": "
	 "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"echo\"}], "
	 "\"action\": \"DENY\", \"rules\": [{\"from\": [{\"source\": "
	 "{\"notNamespaces\": [\"ns\"]}}]}]}}",
	 NULL,
	 {"GET", "/", PRINCIPAL},
	 false,
	 "n",
	 0},
	{"ipBlocks",
	 "{\"metadata\": {\"name\": \"ip\", \"namespace\": \"ns\"}, \"spec\": "
	 "{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"echo\"}], \"rules\": "
	 "[{\"from\": [{\"source\": {\"ipBlocks\": [\"10.1.0.0/16\"]}}]}]}}",
	 NULL,
	 {"GET", "/", "", "10.1.2.3"},
	 true,
	 "ip",
	 0},
	{"notPaths and ports",
	 "{\"metadata\": {\"name\": \"np\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
	 "[{\"kind\": \"Service\", \"name\": \"echo\"}], \"rules\": [{\"to\": [{\"operation\": "
	 "{\"notPaths\": [\"/private*\"], \"ports\": [\"80\"]}}]}]}}",
	 NULL,
	 {"GET", "/private/x", .port = 80},
	 false,
	 "",
	 0},
	{"when request.headers",
	 "{\"metadata\": {\"name\": \"w\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
	 "[{\"kind\": \"Service\", \"name\": \"echo\"}], \"action\": \"DENY\", \"rules\": "
	 "[{\"when\": [{\"key\": \"request.headers[X-Debug]\", \"values\": [\"on\"]}]}]}}",
	 NULL,
	 {"GET", "/", .hname = "x-debug", .hvalue = "on"},
	 false,
	 "w",
	 0},
	{"AUDIT does not decide",
	 "{\"metadata\": {\"name\": \"a\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
	 "[{\"kind\": \"Service\", \"name\": \"echo\"}], \"action\": \"AUDIT\", \"rules\": [{}]}}",
	 NULL,
	 {"GET", "/"},
	 true,
	 "",
	 0},
	/* TCP connections (Istio's rules for HTTP-only fields on TCP traffic) */
	{"TCP: a DENY with only HTTP fields denies every connection",
	 ADMIN_DENY,
	 NULL,
	 {"", "/", .tcp = true},
	 false,
	 "no-admin",
	 0},
	{"TCP: an ALLOW whose rules all have HTTP fields allows nothing",
	 ALLOW_GET,
	 NULL,
	 {"", "/", .tcp = true},
	 false,
	 "",
	 0},
	{"TCP: an ALLOW rule with principals and ports matches",
	 "{\"metadata\": {\"name\": \"a\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
	 "[{\"kind\": \"Service\", \"name\": \"echo\"}], \"rules\": [{\"to\": [{\"operation\": "
	 "{\"methods\": [\"GET\"]}}]}, {\"from\": [{\"source\": {\"principals\": [\"" PRINCIPAL
	 "\"]}}], \"to\": [{\"operation\": {\"ports\": [\"80\"]}}]}]}}",
	 NULL,
	 {"", "/", PRINCIPAL, .tcp = true},
	 true,
	 "a",
	 1},
	{"TCP: a DENY's header condition is ignored, its port still counts",
	 "{\"metadata\": {\"name\": \"d\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
	 "[{\"kind\": \"Service\", \"name\": \"echo\"}], \"action\": \"DENY\", \"rules\": "
	 "[{\"to\": [{\"operation\": {\"ports\": [\"81\"]}}], \"when\": [{\"key\": "
	 "\"request.headers[x]\", \"values\": [\"y\"]}]}]}}",
	 NULL,
	 {"", "/", .tcp = true},
	 true,
	 "",
	 0},
	{"TCP: ... and denies on its port",
	 "{\"metadata\": {\"name\": \"d\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
	 "[{\"kind\": \"Service\", \"name\": \"echo\"}], \"action\": \"DENY\", \"rules\": "
	 "[{\"to\": [{\"operation\": {\"ports\": [\"81\"]}}], \"when\": [{\"key\": "
	 "\"request.headers[x]\", \"values\": [\"y\"]}]}]}}",
	 NULL,
	 {"", "/", .port = 81, .tcp = true},
	 false,
	 "d",
	 0},
};

TEST(l7_authz_table)
{
	for (size_t i = 0; i < ARRAY_LEN(authz_cases); i++) {
		const struct authz_case *ac = &authz_cases[i];
		char *pols = xasprintf("%s%s%s", ac->p1 ? ac->p1 : "", ac->p2 ? ", " : "",
				       ac->p2 ? ac->p2 : "");
		struct config *c = mesh(NULL, pols);
		struct l7_norm_opts no = {ac->req.norm, false};
		struct l7_authz_result res;
		struct l7_request r = {0};
		struct l7_header h[1];
		struct config_ip ip;
		char path[256];
		const char *why;

		free(pols);
		if (!c) {
			CHECK_STR(ac->what, "(config parses)");
			continue;
		}
		REQUIRE(l7_path_normalize(ac->req.path, strlen(ac->req.path), &no, path,
					  sizeof(path), &why) > 0);
		r.method = ac->req.method;
		r.path = path;
		r.host = "echo.ns.svc:80";
		r.source_principal = ac->req.principal ? ac->req.principal : "";
		if (ac->req.ip && config_ip_parse(ac->req.ip, &ip) == 0)
			r.source_ip = &ip;
		r.dest_port = ac->req.port ? ac->req.port : 80;
		r.tcp = ac->req.tcp;
		if (ac->req.hname) {
			h[0] = (struct l7_header){sl(ac->req.hname), sl(ac->req.hvalue)};
			r.headers = h;
			r.n_headers = 1;
		}
		l7_authz_check(c, config_service_by_name(c, "ns", "echo"),
			       config_workload_by_uid(c, "wp"), &r, &res);
		if (res.allow != ac->allow)
			fprintf(stderr, "    case: %s (%s)\n", ac->what, res.reason);
		CHECK_INT(res.allow, ac->allow);
		CHECK_STR(res.policy ? res.policy->metadata.name : "", ac->policy);
		if (res.policy)
			CHECK_INT((int)res.rule, ac->rule);
		CHECK(res.reason && res.reason[0]);
		config_unref(c);
	}
}

TEST(l7_audit_is_reported)
{
	char *p = policy("audit", "AUDIT", "echo", "[{}]");
	struct config *c = mesh(NULL, p);
	struct l7_authz_result res;
	struct l7_request r = {.method = "GET", .path = "/", .host = "", .source_principal = ""};

	REQUIRE(c);
	l7_authz_check(c, config_service_by_name(c, "ns", "echo"), NULL, &r, &res);
	CHECK(res.allow);
	REQUIRE(res.audit);
	CHECK_STR(res.audit->metadata.name, "audit");
	config_unref(c);
	free(p);
}

TEST(l7_string_match_forms)
{
	CHECK(l7_string_match("*", "x", false));
	CHECK(!l7_string_match("*", "", false));
	CHECK(l7_string_match("abc*", "abcd", false));
	CHECK(l7_string_match("abc*", "abc", false));
	CHECK(!l7_string_match("abc*", "ab", false));
	CHECK(l7_string_match("*abc", "xabc", false));
	CHECK(!l7_string_match("*abc", "abx", false));
	CHECK(l7_string_match("ABC", "abc", true));
	CHECK(!l7_string_match("ABC", "abc", false));
	CHECK(l7_path_match("/foo/{**}/", "/foo/bar/"));
	CHECK(l7_path_match("/foo/{**}/", "/foo//"));
	CHECK(l7_path_match("/foo/{**}/", "/foo/bar/baz.txt"));
	CHECK(l7_path_match("/foo/{*}", "/foo/bar"));
	CHECK(!l7_path_match("/foo/{*}", "/foo/bar/baz"));
	char ns[64];
	l7_principal_namespace(PRINCIPAL, ns, sizeof(ns));
	CHECK_STR(ns, "client");
	l7_principal_namespace("weird", ns, sizeof(ns));
	CHECK_STR(ns, "");
}
