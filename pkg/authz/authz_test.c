/* Unit tests for pkg/authz: a table of mesh documents and connections with the exact reason each
 * decision must print, plus identities, re-checks after a reload and the rendering edge cases. */
#include "pkg/authz/authz.h"
#include "test/unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A policy object; rules is the JSON of the [[[Match]]] list. */
#define POL(ns, name, scope, action, dry, rules)                                                   \
	"{\"name\":\"" name "\",\"namespace\":\"" ns "\",\"scope\":\"" scope                       \
	"\",\"action\":\"" action "\",\"dryRun\":" dry ",\"rules\":" rules "}"
#define NSDENY(name, rules) POL("default", name, "Namespace", "Deny", "false", rules)
#define NSALLOW(name, rules) POL("default", name, "Namespace", "Allow", "false", rules)
#define ANY "[[]]" /* one rule without clauses: matches every connection */

#define ID_WEB "spiffe://cluster.local/ns/frontend/sa/web"

/* Two workloads: "app" (default, the destination) and "other" (ns other). */
static const char *const doc_fmt =
	"{\"workloads\":["
	"{\"uid\":\"app\",\"name\":\"app\",\"namespace\":\"default\",\"serviceAccount\":\"app\","
	"\"workloadIps\":[\"10.0.0.2\",\"fd00::2\"],\"authorizationPolicies\":%s},"
	"{\"uid\":\"other\",\"name\":\"other\",\"namespace\":\"other\",\"workloadIps\":"
	"[\"10.0.9.9\"],\"authorizationPolicies\":%s}],"
	"\"policies\":[%s]}";

static struct config *mesh(const char *app_refs, const char *other_refs, const char *policies)
{
	struct errlist errs = {0};
	struct config *c;
	char *text = xasprintf(doc_fmt, app_refs ? app_refs : "[]", other_refs ? other_refs : "[]",
			       policies ? policies : "");

	c = config_parse("mesh.json", text, strlen(text), 1, &errs);
	if (!c) {
		char *j = errlist_join(&errs);
		unit_fail(__FILE__, __LINE__, "config_parse: %s", j);
		free(j);
	}
	errlist_fini(&errs);
	free(text);
	return c;
}

static struct authz_conn conn_of(const char *src, const char *dst, uint16_t port, const char *id)
{
	struct authz_conn k = {.src_port = 40000, .dst_port = port, .src_identity = id};

	if (config_ip_parse(src, &k.src_ip) < 0 || config_ip_parse(dst, &k.dst_ip) < 0)
		abort();
	return k;
}

struct tcase {
	const char *name;
	const char *policies;
	const char *app_refs;	/* the destination's authorizationPolicies, JSON */
	const char *other_refs; /* the other workload's */
	const char *src;	/* NULL: 10.1.0.5 */
	const char *dst;	/* NULL: 10.0.0.2 */
	uint16_t port;		/* 0: 8080 */
	const char *id;		/* NULL: ID_WEB; "": plaintext */
	const char *want;	/* authz_result_format */
	enum authz_verdict verdict;
};

#define DENIED(p, r) "denied by policy " p " rule " #r
#define ALLOWED(p, r) "allowed by policy " p " rule " #r
#define NO_ALLOW "allowed: no ALLOW policies"
#define NONE_ALLOWED "denied: allow policies exist, but none allowed"

static const struct tcase cases[] = {
	/* ---- scopes ---- */
	{"no policies", "", .want = NO_ALLOW},
	{"namespace deny applies", NSDENY("deny-all", ANY), .want = DENIED("default/deny-all", 0),
	 .verdict = AUTHZ_DENY},
	{"namespace deny of another namespace does not",
	 POL("other", "deny-all", "Namespace", "Deny", "false", ANY), .want = NO_ALLOW},
	{"global deny applies to every namespace",
	 POL("istio-system", "g", "Global", "Deny", "false", ANY),
	 .want = DENIED("istio-system/g", 0), .verdict = AUTHZ_DENY},
	{"listed selector policy applies",
	 POL("default", "sel", "WorkloadSelector", "Deny", "false", ANY),
	 .app_refs = "[\"default/sel\"]", .want = DENIED("default/sel", 0), .verdict = AUTHZ_DENY},
	{"selector policy listed only by another workload does not apply",
	 POL("default", "sel", "WorkloadSelector", "Deny", "false", ANY),
	 .other_refs = "[\"default/sel\"]", .want = NO_ALLOW},
	{"selector policy of another namespace applies when listed",
	 POL("other", "sel", "WorkloadSelector", "Allow", "false",
	     "[[[{\"destinationPorts\":[1]}]]]"),
	 .app_refs = "[\"other/sel\"]", .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},
	{"namespace policies decide before global ones",
	 POL("istio-system", "g", "Global", "Deny", "false", ANY) "," NSDENY("n", ANY),
	 .want = DENIED("default/n", 0), .verdict = AUTHZ_DENY},
	{"global policies decide before selector ones",
	 POL("default", "sel", "WorkloadSelector", "Deny", "false",
	     ANY) "," POL("istio-system", "g", "Global", "Deny", "false", ANY),
	 .app_refs = "[\"default/sel\"]", .want = DENIED("istio-system/g", 0),
	 .verdict = AUTHZ_DENY},

	/* ---- decision order ---- */
	{"DENY wins over a matching ALLOW listed first", NSALLOW("a", ANY) "," NSDENY("d", ANY),
	 .want = DENIED("default/d", 0), .verdict = AUTHZ_DENY},
	{"non-matching DENY, no ALLOW: allowed", NSDENY("d", "[[[{\"destinationPorts\":[9090]}]]]"),
	 .want = NO_ALLOW},
	{"ALLOW policies exist, none matches", NSALLOW("a", "[[[{\"destinationPorts\":[9090]}]]]"),
	 .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},
	{"second rule of an ALLOW matches",
	 NSALLOW("a", "[[[{\"destinationPorts\":[9090]}]],[[{\"destinationPorts\":[8080]}]]]"),
	 .want = ALLOWED("default/a", 1)},
	{"first matching ALLOW decides",
	 NSALLOW("a", "[[[{\"destinationPorts\":[9090]}]]]") "," NSALLOW("b", ANY) "," NSALLOW("c",
											       ANY),
	 .want = ALLOWED("default/b", 0)},

	/* ---- dry run ---- */
	{"dry-run DENY only reports", POL("default", "dd", "Namespace", "Deny", "true", ANY),
	 .want = NO_ALLOW "; dry-run would deny: DENY default/dd rule 0 matched"},
	{"dry-run DENY next to an enforced DENY",
	 POL("default", "dd", "Namespace", "Deny", "true", ANY) "," NSDENY("d", ANY),
	 .want = DENIED("default/d", 0) "; dry-run would deny: DENY default/dd rule 0 matched",
	 .verdict = AUTHZ_DENY},
	{"non-matching dry-run ALLOW does not count as an ALLOW policy",
	 POL("default", "da", "Namespace", "Allow", "true", "[[[{\"destinationPorts\":[1]}]]]"),
	 .want = NO_ALLOW "; dry-run would deny: allow policies exist, but none allowed"},
	{"matching dry-run ALLOW", POL("default", "da", "Namespace", "Allow", "true", ANY),
	 .want = NO_ALLOW "; dry-run would allow: ALLOW default/da rule 0 matched"},
	{"dry-run ALLOW would admit what the enforced ALLOW refuses",
	 NSALLOW("a", "[[[{\"destinationPorts\":[1]}]]]") "," POL("default", "da", "Namespace",
								  "Allow", "true", ANY),
	 .want = NONE_ALLOWED "; dry-run would allow: ALLOW default/da rule 0 matched",
	 .verdict = AUTHZ_DENY},
	{"non-matching dry-run policies say nothing",
	 POL("default", "dd", "Namespace", "Deny", "true", "[]") "," NSALLOW("a", ANY),
	 .want = ALLOWED("default/a", 0)},

	/* ---- rule structure ---- */
	{"empty rules never match", NSDENY("d", "[]"), .want = NO_ALLOW},
	{"ALLOW with empty rules refuses everything", NSALLOW("a", "[]"), .want = NONE_ALLOWED,
	 .verdict = AUTHZ_DENY},
	{"empty clause list is true", NSDENY("d", "[[[]]]"), .want = DENIED("default/d", 0),
	 .verdict = AUTHZ_DENY},
	{"all-empty Match is skipped", NSDENY("d", "[[[{}]]]"), .want = NO_ALLOW},
	{"empty Match skipped, next Match of the clause decides",
	 NSDENY("d", "[[[{},{\"destinationPorts\":[8080]}]]]"), .want = DENIED("default/d", 0),
	 .verdict = AUTHZ_DENY},
	{"rule is the AND of clauses",
	 NSDENY("d",
		"[[[{\"namespaces\":[{\"Exact\":\"frontend\"}]}],[{\"destinationPorts\":[9]}]]]"),
	 .want = NO_ALLOW},
	{"rule AND, all clauses pass",
	 NSDENY("d", "[[[{\"namespaces\":[{\"Exact\":\"frontend\"}]}],[{\"destinationPorts\":[8080]"
		     "}]]]"),
	 .want = DENIED("default/d", 0), .verdict = AUTHZ_DENY},
	{"clause is the OR of matches",
	 NSDENY("d", "[[[{\"destinationPorts\":[9]},{\"destinationPorts\":[8080]}]]]"),
	 .want = DENIED("default/d", 0), .verdict = AUTHZ_DENY},
	{"Match is the AND of its lists",
	 NSDENY("d", "[[[{\"namespaces\":[{\"Exact\":\"frontend\"}],\"destinationPorts\":[9]}]]]"),
	 .want = NO_ALLOW},

	/* ---- namespaces ---- */
	{"namespaces Exact", NSDENY("d", "[[[{\"namespaces\":[{\"Exact\":\"frontend\"}]}]]]"),
	 .want = DENIED("default/d", 0), .verdict = AUTHZ_DENY},
	{"namespaces Exact other", NSDENY("d", "[[[{\"namespaces\":[{\"Exact\":\"front\"}]}]]]"),
	 .want = NO_ALLOW},
	{"namespaces any of the list",
	 NSDENY("d", "[[[{\"namespaces\":[{\"Exact\":\"x\"},{\"Prefix\":\"fro\"}]}]]]"),
	 .want = DENIED("default/d", 0), .verdict = AUTHZ_DENY},
	{"namespaces Suffix", NSDENY("d", "[[[{\"namespaces\":[{\"Suffix\":\"tend\"}]}]]]"),
	 .want = DENIED("default/d", 0), .verdict = AUTHZ_DENY},
	{"namespaces Suffix longer than the value",
	 NSDENY("d", "[[[{\"namespaces\":[{\"Suffix\":\"xfrontend\"}]}]]]"), .want = NO_ALLOW},
	{"notNamespaces excludes",
	 NSDENY("d", "[[[{\"notNamespaces\":[{\"Exact\":\"frontend\"}]}]]]"), .want = NO_ALLOW},
	{"notNamespaces passes others",
	 NSDENY("d", "[[[{\"notNamespaces\":[{\"Exact\":\"x\"},{\"Prefix\":\"y\"}]}]]]"),
	 .want = DENIED("default/d", 0), .verdict = AUTHZ_DENY},
	{"namespaces Presence with identity",
	 NSDENY("d", "[[[{\"namespaces\":[{\"Presence\":[]}]}]]]"), .want = DENIED("default/d", 0),
	 .verdict = AUTHZ_DENY},
	{"namespaces Presence without identity",
	 NSDENY("d", "[[[{\"namespaces\":[{\"Presence\":[]}]}]]]"), .id = "", .want = NO_ALLOW},
	{"namespaces Exact \"\" matches plaintext (namespace defaults to \"\")",
	 NSDENY("d", "[[[{\"namespaces\":[{\"Exact\":\"\"}]}]]]"), .id = "",
	 .want = DENIED("default/d", 0), .verdict = AUTHZ_DENY},
	{"notNamespaces Presence denies plaintext",
	 NSDENY("d", "[[[{\"notNamespaces\":[{\"Presence\":[]}]}]]]"), .id = "",
	 .want = DENIED("default/d", 0), .verdict = AUTHZ_DENY},

	/* ---- principals ---- */
	{"principals Exact without spiffe://",
	 NSALLOW("a", "[[[{\"principals\":[{\"Exact\":\"cluster.local/ns/frontend/sa/web\"}]}]]]"),
	 .want = ALLOWED("default/a", 0)},
	{"principals Exact with spiffe:// never matches",
	 NSALLOW("a", "[[[{\"principals\":[{\"Exact\":\"" ID_WEB "\"}]}]]]"), .want = NONE_ALLOWED,
	 .verdict = AUTHZ_DENY},
	{"principals Prefix",
	 NSALLOW("a", "[[[{\"principals\":[{\"Prefix\":\"cluster.local/ns/frontend/\"}]}]]]"),
	 .want = ALLOWED("default/a", 0)},
	{"principals Suffix", NSALLOW("a", "[[[{\"principals\":[{\"Suffix\":\"/sa/web\"}]}]]]"),
	 .want = ALLOWED("default/a", 0)},
	{"principals Suffix no", NSALLOW("a", "[[[{\"principals\":[{\"Suffix\":\"/sa/we\"}]}]]]"),
	 .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},
	{"principals Presence with identity",
	 NSALLOW("a", "[[[{\"principals\":[{\"Presence\":[]}]}]]]"),
	 .want = ALLOWED("default/a", 0)},
	{"principals Presence without identity",
	 NSALLOW("a", "[[[{\"principals\":[{\"Presence\":[]}]}]]]"), .id = "", .want = NONE_ALLOWED,
	 .verdict = AUTHZ_DENY},
	{"principals Prefix \"\" needs an identity",
	 NSALLOW("a", "[[[{\"principals\":[{\"Prefix\":\"\"}]}]]]"), .id = "", .want = NONE_ALLOWED,
	 .verdict = AUTHZ_DENY},
	{"STRICT mTLS: notPrincipals Presence denies plaintext",
	 POL("istio-system", "istio_converted_static_strict", "Global", "Deny", "false",
	     "[[[{\"notPrincipals\":[{\"Presence\":[]}]}]]]"),
	 .id = "", .want = DENIED("istio-system/istio_converted_static_strict", 0),
	 .verdict = AUTHZ_DENY},
	{"STRICT mTLS: notPrincipals Presence admits mTLS",
	 POL("istio-system", "istio_converted_static_strict", "Global", "Deny", "false",
	     "[[[{\"notPrincipals\":[{\"Presence\":[]}]}]]]"),
	 .want = NO_ALLOW},
	{"notPrincipals excludes",
	 NSALLOW("a", "[[[{\"notPrincipals\":[{\"Prefix\":\"cluster.local/ns/frontend/\"}]}]]]"),
	 .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},
	{"principal of a non-Istio SPIFFE ID",
	 NSALLOW("a", "[[[{\"principals\":[{\"Exact\":\"example.org/workload/x\"}]}]]]"),
	 .id = "spiffe://example.org/workload/x", .want = ALLOWED("default/a", 0)},
	{"non-Istio SPIFFE ID has no namespace",
	 NSALLOW("a", "[[[{\"namespaces\":[{\"Presence\":[]}]}]]]"),
	 .id = "spiffe://example.org/workload/x", .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},

	/* ---- service accounts ---- */
	{"serviceAccounts match",
	 NSALLOW("a", "[[[{\"serviceAccounts\":[{\"namespace\":\"x\",\"serviceAccount\":\"web\"},"
		      "{\"namespace\":\"frontend\",\"serviceAccount\":\"web\"}]}]]]"),
	 .want = ALLOWED("default/a", 0)},
	{"serviceAccounts wrong account",
	 NSALLOW("a", "[[[{\"serviceAccounts\":[{\"namespace\":\"frontend\",\"serviceAccount\":"
		      "\"api\"}]}]]]"),
	 .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},
	{"serviceAccounts need an identity",
	 NSALLOW("a", "[[[{\"serviceAccounts\":[{\"namespace\":\"\",\"serviceAccount\":\"\"}]}]]]"),
	 .id = "", .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},
	{"notServiceAccounts excludes",
	 NSDENY("d", "[[[{\"notServiceAccounts\":[{\"namespace\":\"frontend\",\"serviceAccount\":"
		     "\"web\"}]}]]]"),
	 .want = NO_ALLOW},
	{"notServiceAccounts passes plaintext",
	 NSDENY("d", "[[[{\"notServiceAccounts\":[{\"namespace\":\"frontend\",\"serviceAccount\":"
		     "\"web\"}]}]]]"),
	 .id = "", .want = DENIED("default/d", 0), .verdict = AUTHZ_DENY},

	/* ---- addresses and ports ---- */
	{"sourceIps CIDR", NSALLOW("a", "[[[{\"sourceIps\":[\"10.1.0.0/16\"]}]]]"),
	 .want = ALLOWED("default/a", 0)},
	{"sourceIps outside", NSALLOW("a", "[[[{\"sourceIps\":[\"10.2.0.0/16\",\"10.1.0.4\"]}]]]"),
	 .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},
	{"sourceIps odd prefix", NSALLOW("a", "[[[{\"sourceIps\":[\"10.1.0.4/30\"]}]]]"),
	 .want = ALLOWED("default/a", 0)},
	{"sourceIps /0", NSALLOW("a", "[[[{\"sourceIps\":[\"0.0.0.0/0\"]}]]]"),
	 .want = ALLOWED("default/a", 0)},
	{"notSourceIps excludes", NSALLOW("a", "[[[{\"notSourceIps\":[\"10.0.0.0/8\"]}]]]"),
	 .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},
	{"v4-mapped source compares as IPv4",
	 NSALLOW("a", "[[[{\"sourceIps\":[\"10.1.0.0/16\"]}]]]"), .src = "::ffff:10.1.0.5",
	 .want = ALLOWED("default/a", 0)},
	{"IPv6 source CIDR", NSALLOW("a", "[[[{\"sourceIps\":[\"fd00:1::/33\"]}]]]"),
	 .src = "fd00:1:7fff::5", .dst = "fd00::2", .want = ALLOWED("default/a", 0)},
	{"IPv6 source outside CIDR", NSALLOW("a", "[[[{\"sourceIps\":[\"fd00:1::/33\"]}]]]"),
	 .src = "fd00:1:8000::5", .dst = "fd00::2", .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},
	{"IPv4 CIDR never contains IPv6", NSALLOW("a", "[[[{\"sourceIps\":[\"0.0.0.0/0\"]}]]]"),
	 .src = "fd00:1::5", .dst = "fd00::2", .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},
	{"destinationIps bare address", NSDENY("d", "[[[{\"destinationIps\":[\"10.0.0.2\"]}]]]"),
	 .want = DENIED("default/d", 0), .verdict = AUTHZ_DENY},
	{"destinationIps other address of the workload",
	 NSDENY("d", "[[[{\"destinationIps\":[\"10.0.0.2\"]}]]]"), .src = "fd00:1::5",
	 .dst = "fd00::2", .want = NO_ALLOW},
	{"destinationIps IPv6", NSDENY("d", "[[[{\"destinationIps\":[\"fd00::/64\"]}]]]"),
	 .src = "fd00:1::5", .dst = "fd00::2", .want = DENIED("default/d", 0),
	 .verdict = AUTHZ_DENY},
	{"notDestinationIps IPv6", NSDENY("d", "[[[{\"notDestinationIps\":[\"fd00::2/128\"]}]]]"),
	 .src = "fd00:1::5", .dst = "fd00::2", .want = NO_ALLOW},
	{"destinationPorts", NSALLOW("a", "[[[{\"destinationPorts\":[80,8080]}]]]"),
	 .want = ALLOWED("default/a", 0)},
	{"destinationPorts is the target port, not 15008",
	 NSALLOW("a", "[[[{\"destinationPorts\":[15008]}]]]"), .want = NONE_ALLOWED,
	 .verdict = AUTHZ_DENY},
	{"notDestinationPorts", NSALLOW("a", "[[[{\"notDestinationPorts\":[8080]}]]]"),
	 .want = NONE_ALLOWED, .verdict = AUTHZ_DENY},
	{"notDestinationPorts other port", NSALLOW("a", "[[[{\"notDestinationPorts\":[8080]}]]]"),
	 .port = 9090, .want = ALLOWED("default/a", 0)},
};

static void run_case(const struct tcase *t)
{
	struct config *c = mesh(t->app_refs, t->other_refs, t->policies);
	const struct config_workload *app;
	struct authz_conn k;
	struct authz_result r;
	char line[AUTHZ_REASON_MAX];

	if (!c) {
		unit_fail(__FILE__, __LINE__, "case \"%s\": document rejected", t->name);
		return;
	}
	app = config_workload_by_uid(c, "app");
	k = conn_of(t->src ? t->src : "10.1.0.5", t->dst ? t->dst : "10.0.0.2",
		    t->port ? t->port : 8080, t->id ? t->id : ID_WEB);
	if (authz_check(c, app, &k, &r) != 0)
		unit_fail(__FILE__, __LINE__, "case \"%s\": authz_check failed", t->name);
	authz_result_format(&r, line, sizeof(line));
	if (strcmp(line, t->want) != 0)
		unit_fail(__FILE__, __LINE__, "case \"%s\":\n  got  \"%s\"\n  want \"%s\"", t->name,
			  line, t->want);
	if (r.verdict != t->verdict)
		unit_fail(__FILE__, __LINE__, "case \"%s\": verdict %s", t->name,
			  authz_verdict_name(r.verdict));
	/* The deciding policy is set exactly for the two "matched" reasons. */
	if ((r.decided.policy != NULL) !=
	    (r.reason == AUTHZ_REASON_DENY_MATCHED || r.reason == AUTHZ_REASON_ALLOW_MATCHED))
		unit_fail(__FILE__, __LINE__, "case \"%s\": decided policy vs reason", t->name);
	if (r.dry_run_verdict != r.verdict && r.n_dry_run_policies == 0)
		unit_fail(__FILE__, __LINE__,
			  "case \"%s\": dry-run verdict without dry-run policies", t->name);
	config_unref(c);
}

TEST(authz_table)
{
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		run_case(&cases[i]);
	CHECK(ARRAY_LEN(cases) >= 70);
}

TEST(authz_result_fields)
{
	struct config *c =
		mesh("[\"default/sel\",\"default/ns\"]", NULL,
		     POL("default", "sel", "WorkloadSelector", "Deny", "false",
			 "[[[{\"destinationPorts\":[1]}]],[[{\"destinationPorts\":[8080]"
			 "}]]]") "," NSALLOW("ns", ANY) "," POL("default", "dd", "Namespace",
								"Deny", "true", "[[],[]]"));
	struct authz_conn k = conn_of("10.1.0.5", "10.0.0.2", 8080, ID_WEB);
	struct authz_result r;

	REQUIRE(c);
	CHECK_INT(authz_check(c, config_workload_by_uid(c, "app"), &k, &r), 0);
	CHECK_INT(r.verdict, AUTHZ_DENY);
	CHECK_INT(r.reason, AUTHZ_REASON_DENY_MATCHED);
	REQUIRE(r.decided.policy);
	CHECK_STR(r.decided.policy->key, "default/sel");
	CHECK_INT(r.decided.rule, 1);
	/* default/ns is both namespace-scoped and listed: counted once. */
	CHECK_INT(r.n_deny_policies, 1);
	CHECK_INT(r.n_allow_policies, 1);
	CHECK_INT(r.n_dry_run_policies, 1);
	CHECK_INT(r.n_dry_run, 1);
	CHECK_INT(r.n_dry_run_total, 1);
	CHECK_STR(r.dry_run[0].policy->key, "default/dd");
	CHECK_INT(r.dry_run[0].rule, 0);
	CHECK_INT(r.dry_run_verdict, AUTHZ_DENY);
	/* The dry-run DENY comes first in evaluation order, so it decides the what-if verdict. */
	CHECK_STR(r.dry_run_decided.policy->key, "default/dd");

	k.dst_port = 9090;
	CHECK_INT(authz_check(c, config_workload_by_uid(c, "app"), &k, &r), 0);
	CHECK_INT(r.verdict, AUTHZ_ALLOW);
	CHECK_INT(r.reason, AUTHZ_REASON_ALLOW_MATCHED);
	CHECK_STR(r.decided.policy->key, "default/ns");
	CHECK_INT(r.dry_run_verdict, AUTHZ_DENY);
	CHECK_INT(r.dry_run_reason, AUTHZ_REASON_DENY_MATCHED);
	config_unref(c);
}

TEST(authz_many_dry_run_hits)
{
	char *pols = xstrdup("");
	struct config *c;
	struct authz_conn k = conn_of("10.1.0.5", "10.0.0.2", 8080, ID_WEB);
	struct authz_result r;
	char line[AUTHZ_REASON_MAX];

	for (int i = 0; i < 11; i++) {
		char *n =
			xasprintf("%s%s{\"name\":\"d%02d\",\"namespace\":\"default\",\"scope\":"
				  "\"Namespace\",\"action\":\"%s\",\"dryRun\":true,\"rules\":[[]]}",
				  pols, i ? "," : "", i, i % 2 ? "Allow" : "Deny");
		free(pols);
		pols = n;
	}
	c = mesh(NULL, NULL, pols);
	free(pols);
	REQUIRE(c);
	CHECK_INT(authz_check(c, config_workload_by_uid(c, "app"), &k, &r), 0);
	CHECK_INT(r.n_dry_run_total, 11);
	CHECK_INT(r.n_dry_run, AUTHZ_MAX_DRY_RUN_HITS);
	authz_result_format(&r, line, sizeof(line));
	/* DENY hits first (d00..d10 even), then ALLOW hits. */
	CHECK_STR(line,
		  NO_ALLOW "; dry-run would deny: DENY default/d00 rule 0 matched, DENY "
			   "default/d02 rule 0 matched, DENY default/d04 rule 0 matched, DENY "
			   "default/d06 rule 0 matched, DENY default/d08 rule 0 matched, DENY "
			   "default/d10 rule 0 matched, ALLOW default/d01 rule 0 matched, "
			   "ALLOW default/d03 rule 0 matched (+3 more)");
	config_unref(c);
}

TEST(authz_format_truncates_like_snprintf)
{
	struct config *c = mesh(NULL, NULL, NSDENY("deny-all", ANY));
	struct authz_conn k = conn_of("10.1.0.5", "10.0.0.2", 8080, ID_WEB);
	struct authz_result r;
	char small[10], full[AUTHZ_REASON_MAX];
	size_t n;

	REQUIRE(c);
	authz_check(c, config_workload_by_uid(c, "app"), &k, &r);
	n = authz_result_format(&r, full, sizeof(full));
	CHECK_STR(full, "denied by policy default/deny-all rule 0");
	CHECK_INT(n, strlen(full));
	memset(small, 'x', sizeof(small));
	CHECK_INT(authz_result_format(&r, small, sizeof(small)), n);
	CHECK_STR(small, "denied by");
	CHECK_INT(authz_result_format(&r, NULL, 0), n);
	CHECK_INT(authz_rejection_format(&r, full, sizeof(full)), strlen(full));
	CHECK_STR(full, "explicitly denied by: default/deny-all");
	config_unref(c);
}

TEST(authz_rejection_texts)
{
	struct config *c = mesh(NULL, NULL, NSALLOW("a", "[[[{\"destinationPorts\":[1]}]]]"));
	struct authz_conn k = conn_of("10.1.0.5", "10.0.0.2", 8080, ID_WEB);
	struct authz_result r;
	char buf[128];

	REQUIRE(c);
	authz_check(c, config_workload_by_uid(c, "app"), &k, &r);
	CHECK(!authz_allowed(&r));
	authz_rejection_format(&r, buf, sizeof(buf));
	CHECK_STR(buf, "allow policies exist, but none allowed");
	k.dst_port = 1;
	authz_check(c, config_workload_by_uid(c, "app"), &k, &r);
	CHECK(authz_allowed(&r));
	CHECK_INT(authz_rejection_format(&r, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "");
	CHECK_STR(authz_verdict_name(AUTHZ_ALLOW), "allow");
	CHECK_STR(authz_verdict_name(AUTHZ_DENY), "deny");
	config_unref(c);
}

TEST(authz_null_arguments_fail_closed)
{
	struct config *c = mesh(NULL, NULL, "");
	struct authz_conn k = conn_of("10.1.0.5", "10.0.0.2", 8080, ID_WEB);
	struct authz_result r;

	REQUIRE(c);
	CHECK_INT(authz_check(NULL, config_workload_by_uid(c, "app"), &k, &r), -E_INVAL);
	CHECK_INT(r.verdict, AUTHZ_DENY);
	CHECK_INT(authz_check(c, NULL, &k, &r), -E_INVAL);
	CHECK_INT(r.verdict, AUTHZ_DENY);
	CHECK_INT(authz_check(c, config_workload_by_uid(c, "app"), NULL, &r), -E_INVAL);
	CHECK_INT(authz_check(c, config_workload_by_uid(c, "app"), &k, NULL), -E_INVAL);
	CHECK_INT(authz_recheck(NULL, config_workload_by_uid(c, "app"), &k, &r), -E_INVAL);
	CHECK_INT(r.verdict, AUTHZ_DENY);
	CHECK_INT(authz_check(c, config_workload_by_uid(c, "app"), &k, &r), 0);
	CHECK_INT(r.verdict, AUTHZ_ALLOW);
	config_unref(c);
}

TEST(authz_recheck_after_reload)
{
	struct config *v1 = mesh("[\"default/sel\"]", NULL,
				 POL("default", "sel", "WorkloadSelector", "Allow", "false",
				     "[[[{\"destinationPorts\":[8080]}]]]"));
	/* v2: the selector policy now refuses 8080, and a namespace DENY exists for port 9. */
	struct config *v2 = mesh("[\"default/sel\"]", NULL,
				 POL("default", "sel", "WorkloadSelector", "Allow", "false",
				     "[[[{\"destinationPorts\":[80]}]]]"));
	/* v3: the workload no longer lists it. */
	struct config *v3 = mesh(NULL, NULL,
				 POL("default", "sel", "WorkloadSelector", "Allow", "false",
				     "[[[{\"destinationPorts\":[80]}]]]"));
	struct authz_conn k = conn_of("10.1.0.5", "10.0.0.2", 8080, ID_WEB);
	struct authz_result r;
	char line[AUTHZ_REASON_MAX];
	const struct config_workload *old;

	REQUIRE(v1 && v2 && v3);
	old = config_workload_by_uid(v1, "app");
	CHECK_INT(authz_check(v1, old, &k, &r), 0);
	CHECK(authz_allowed(&r));
	CHECK_INT(authz_recheck(v2, old, &k, &r), 0);
	authz_result_format(&r, line, sizeof(line));
	CHECK_STR(line, NONE_ALLOWED);
	/* The new snapshot's workload decides which selector policies apply. */
	CHECK_INT(authz_recheck(v3, old, &k, &r), 0);
	authz_result_format(&r, line, sizeof(line));
	CHECK_STR(line, NO_ALLOW);
	config_unref(v1);
	config_unref(v2);
	config_unref(v3);
}

TEST(authz_recheck_workload_gone)
{
	struct config *v1 = mesh("[\"default/sel\"]", NULL,
				 POL("default", "sel", "WorkloadSelector", "Allow", "false", ANY));
	struct errlist errs = {0};
	/* v2 has no "app" any more: its captured policy names are resolved in v2. */
	const char *t2 = "{\"workloads\":[],\"policies\":[" POL(
		"default", "sel", "WorkloadSelector", "Allow", "false",
		"[[[{\"destinationPorts\":[80]}]]]") "," NSDENY("d", "[[[{\"destinationPorts\":[9]}"
								     "]]]") "]}";
	const char *t3 = "{\"workloads\":[],\"policies\":[]}";
	struct config *v2 = config_parse("v2", t2, strlen(t2), 2, &errs);
	struct config *v3 = config_parse("v3", t3, strlen(t3), 3, &errs);
	struct authz_conn k = conn_of("10.1.0.5", "10.0.0.2", 8080, ID_WEB);
	struct authz_result r;
	char line[AUTHZ_REASON_MAX];
	const struct config_workload *old;

	REQUIRE(v1 && v2 && v3);
	old = config_workload_by_uid(v1, "app");
	CHECK_INT(authz_recheck(v2, old, &k, &r), 0);
	authz_result_format(&r, line, sizeof(line));
	CHECK_STR(line, NONE_ALLOWED);
	CHECK_INT(r.n_allow_policies, 1);
	CHECK_INT(r.n_deny_policies, 1);
	k.dst_port = 80;
	CHECK_INT(authz_recheck(v2, old, &k, &r), 0);
	authz_result_format(&r, line, sizeof(line));
	CHECK_STR(line, ALLOWED("default/sel", 0));
	CHECK(r.decided.policy == config_policy_by_key(v2, "default", "sel"));
	/* Its policy is gone too: skipped, as ztunnel skips an unknown policy. */
	CHECK_INT(authz_recheck(v3, old, &k, &r), 0);
	authz_result_format(&r, line, sizeof(line));
	CHECK_STR(line, NO_ALLOW);
	errlist_fini(&errs);
	config_unref(v1);
	config_unref(v2);
	config_unref(v3);
}

static void check_id(const char *s, int want_rc, const char *td, const char *ns, const char *sa,
		     const char *principal)
{
	struct authz_identity id;
	int rc = authz_identity_parse(s, &id);

	CHECK_INT(rc, want_rc);
	CHECK_INT(id.present, s && *s);
	CHECK_INT(id.istio, want_rc == 0);
	if (principal) {
		CHECK(id.principal.p != NULL);
		CHECK_INT(id.principal.n, strlen(principal));
		if (id.principal.p && id.principal.n == strlen(principal))
			CHECK_MEM(id.principal.p, principal, id.principal.n);
	} else {
		CHECK(id.principal.p == NULL);
	}
	if (want_rc == 0) {
		CHECK_INT(id.trust_domain.n, strlen(td));
		CHECK_MEM(id.trust_domain.p, td, strlen(td));
		CHECK_INT(id.namespace.n, strlen(ns));
		CHECK_MEM(id.namespace.p, ns, strlen(ns));
		CHECK_INT(id.service_account.n, strlen(sa));
		CHECK_MEM(id.service_account.p, sa, strlen(sa));
	}
}

TEST(authz_identity_parse_shapes)
{
	check_id(ID_WEB, 0, "cluster.local", "frontend", "web", "cluster.local/ns/frontend/sa/web");
	check_id("spiffe://td/ns//sa/", 0, "td", "", "", "td/ns//sa/");
	check_id(NULL, -E_INVAL, NULL, NULL, NULL, NULL);
	check_id("", -E_INVAL, NULL, NULL, NULL, NULL);
	check_id("cluster.local/ns/a/sa/b", -E_INVAL, NULL, NULL, NULL, NULL);
	check_id("SPIFFE://td/ns/a/sa/b", -E_INVAL, NULL, NULL, NULL, NULL);
	check_id("spiffe://", -E_INVAL, NULL, NULL, NULL, "");
	check_id("spiffe://td/ns/a/sa", -E_INVAL, NULL, NULL, NULL, "td/ns/a/sa");
	check_id("spiffe://td/ns/a/sa/b/c", -E_INVAL, NULL, NULL, NULL, "td/ns/a/sa/b/c");
	check_id("spiffe://td/ns/a/sa/b/", -E_INVAL, NULL, NULL, NULL, "td/ns/a/sa/b/");
	check_id("spiffe://td/NS/a/sa/b", -E_INVAL, NULL, NULL, NULL, "td/NS/a/sa/b");
	check_id("spiffe://td/ns/a/xx/b", -E_INVAL, NULL, NULL, NULL, "td/ns/a/xx/b");
}

/* A connection from an identity whose scheme is missing matches no principal at all. */
TEST(authz_identity_without_scheme)
{
	struct config *c =
		mesh(NULL, NULL, NSDENY("d", "[[[{\"notPrincipals\":[{\"Prefix\":\"\"}]}]]]"));
	struct authz_conn k = conn_of("10.1.0.5", "10.0.0.2", 8080, "cluster.local/ns/a/sa/b");
	struct authz_result r;
	char line[AUTHZ_REASON_MAX];

	REQUIRE(c);
	authz_check(c, config_workload_by_uid(c, "app"), &k, &r);
	authz_result_format(&r, line, sizeof(line));
	CHECK_STR(line, DENIED("default/d", 0));
	config_unref(c);
}
