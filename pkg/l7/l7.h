/* Sans-I/O L7 decisions of the waypoint (DESIGN.md §6): path normalization, Gateway API HTTPRoute
 * selection, Istio L7 authorization and weighted backend choice over a config snapshot. */
#ifndef AMBIENT_L7_H
#define AMBIENT_L7_H

#include "pkg/base/base.h"
#include "pkg/config/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Nothing here does I/O or keeps per-request state: the waypoint builds one struct l7_table per
 * config snapshot (it compiles the routes' regular expressions once) and asks it, for each
 * request, which route rule applies and whether authorization allows it. Regular expressions are
 * POSIX extended (libc regcomp/regexec), always matched against the whole value (as Envoy's RE2
 * full match), not RE2.
 *
 * Request flow in the waypoint:
 *
 *   request head --> l7_path_normalize --(400 if rejected)--> l7_authz_check --(403)-->
 *       l7_route_select --(404 no match)--> filters (redirect / rewrite / headers) -->
 *       l7_backend_pick --(500 no backend with weight)--> endpoint --> upstream
 */

/* ---- path normalization (Istio MeshConfig pathNormalization) --------------------------------- */
enum l7_norm_mode {
	L7_NORM_NONE = 0,		 /* as received */
	L7_NORM_BASE,			 /* RFC 3986 §6.2.2: decode unreserved %XX, dot segments */
	L7_NORM_MERGE_SLASHES,		 /* BASE, and "//" -> "/" */
	L7_NORM_DECODE_AND_MERGE_SLASHES /* also %2F %2f %5C %5c -> '/' before the rest */
};
/* Istio's DEFAULT is BASE. Istio then forwards %2F unchanged (Envoy KEEP_UNCHANGED); with
 * reject_escaped_slashes a path containing %2F or %5C is refused (400) instead, so a backend
 * that decodes it cannot see a path that authorization did not. */
struct l7_norm_opts {
	enum l7_norm_mode mode;
	bool reject_escaped_slashes;
};
#define L7_PATH_MAX 8192

/* Normalizes the path part of an origin-form request target (the query, from '?', is kept as
 * is and appended). out gets a NUL-terminated string of at most cap - 1 bytes. Returns its
 * length, or -E_INVAL (not origin-form, a bad %XX escape, a rejected escaped slash, or ".."
 * above the root is simply dropped per RFC 3986) with a static reason in *why, or -E_LIMIT. */
int l7_path_normalize(const char *target, size_t n, const struct l7_norm_opts *o, char *out,
		      size_t cap, const char **why);

/* ---- requests ---------------------------------------------------------------------------------
 */
struct l7_header {
	struct slice name;
	struct slice value;
};

/* What the decisions look at. Strings are borrowed, NUL-terminated. */
struct l7_request {
	const char *method;		 /* "GET" */
	const char *path;		 /* normalized, with its query ("/a/b?x=1") */
	const char *host;		 /* Host / :authority ("" when absent) */
	const struct l7_header *headers; /* as received (names any case) */
	size_t n_headers;
	const char *source_principal;	   /* "td/ns/x/sa/y" (no "spiffe://"), "" when none */
	const struct config_ip *source_ip; /* NULL when unknown */
	uint16_t dest_port;		   /* the service port the client addressed */
	/* A TCP connection (appProtocol TCP): no method, path, host or headers. As Istio does for
	 * TCP traffic, a rule with an HTTP-only field (hosts, methods, paths and their not*, a
	 * `request.headers[...]` condition) never matches in an ALLOW policy, and in DENY and
	 * AUDIT policies those fields are ignored (the rule matches on its other fields). */
	bool tcp;
};

/* "ns" of a principal "td/ns/<ns>/sa/<sa>" into out; "" when it has another shape. */
void l7_principal_namespace(const char *principal, char *out, size_t cap);

/* ---- the per-snapshot table ------------------------------------------------------------------ */
struct l7_table;

/* Compiles every route's regular expressions (validated by the config already). c is borrowed
 * and must outlive the table. NULL only on out-of-memory in regcomp (reported in eb). */
struct l7_table *l7_table_new(const struct config *c, struct errbuf *eb);
void l7_table_free(struct l7_table *t);

/* ---- routing ----------------------------------------------------------------------------------
 * Routes attached to the destination service (a parentRef of kind Service naming it, with no
 * port or this port) compete; among their (rule, match) pairs that match the request the
 * Gateway API order picks one (reference/waypoint-ca-ctl.md §3.4): an Exact path, then the
 * longest PathPrefix, then a RegularExpression path (implementation-specific; we put it last);
 * then a method match; then more header matches; then more query-param matches; then the oldest
 * route (metadata.creationTimestamp), then "namespace/name" alphabetically; then the first rule
 * and match in document order. */
struct l7_route_result {
	const struct config_route *route;     /* NULL: no route matched (404) */
	const struct config_route_rule *rule; /* route->spec.rules[rule_index] */
	size_t rule_index;
	const struct config_route_match *match; /* NULL: the rule's default PathPrefix "/" */
	size_t match_index;
};

/* Whether any route is attached to (svc, port): without one, the waypoint forwards to the
 * service itself (Istio's default route). */
bool l7_service_has_routes(const struct l7_table *t, const struct config_service *svc,
			   uint16_t port);
/* Selects the rule for req; false when nothing matches. */
bool l7_route_select(const struct l7_table *t, const struct config_service *svc, uint16_t port,
		     const struct l7_request *req, struct l7_route_result *out);
/* Whether one match applies to req (exposed for tests and the fuzzer). */
bool l7_match_request(const struct l7_table *t, const struct config_route *r, size_t rule,
		      size_t match, const struct l7_request *req);

/* Weighted choice among the rule's backendRefs: rnd % sum(weights). -1 when every weight is 0
 * or there are none (Gateway API: 500). */
int l7_backend_pick(const struct config_route_rule *rule, uint64_t rnd);

/* The path after a URLRewrite / RequestRedirect path modifier (Gateway API HTTPPathModifier;
 * ReplacePrefixMatch uses the matched PathPrefix). The query is kept. Returns the length or
 * -E_LIMIT. */
int l7_path_rewrite(const struct config_path_modifier *m, const struct config_route_match *match,
		    const char *path, char *out, size_t cap);

/* ---- authorization ----------------------------------------------------------------------------
 * Policies apply when a targetRef names the destination service (kind Service, same namespace
 * unless given) or this waypoint (kind Gateway: the waypoint workload's name). Istio's order:
 * a matching DENY -> deny; no ALLOW policy -> allow; a matching ALLOW -> allow; else deny. AUDIT
 * policies never change the decision; the first matching one is reported. */
struct l7_authz_result {
	bool allow;
	const struct config_l7_policy *policy; /* the deciding policy (NULL: default allow, or
						  "no ALLOW policy matched") */
	size_t rule;			       /* its matching rule index */
	const struct config_l7_policy *audit;  /* a matching AUDIT policy, or NULL */
	size_t audit_rule;
	const char *reason; /* static text: "denied by DENY policy", ... */
};

bool l7_policy_applies(const struct config_l7_policy *p, const struct config_service *svc,
		       const struct config_workload *waypoint);
void l7_authz_check(const struct config *c, const struct config_service *svc,
		    const struct config_workload *waypoint, const struct l7_request *req,
		    struct l7_authz_result *out);
/* One rule of one policy against req (tests, fuzzer); with req->tcp, as in an ALLOW policy. */
bool l7_rule_matches(const struct config_l7_rule *r, const struct l7_request *req);
/* Whether a rule has a field that only HTTP requests have (see l7_request.tcp). */
bool l7_rule_has_http(const struct config_l7_rule *r);
/* Istio string match: "*" any non-empty, "x*" prefix, "*x" suffix, else exact. */
bool l7_string_match(const char *pattern, const char *value, bool nocase);
/* Istio path match with {*} / {**} templates (else l7_string_match); path without query. */
bool l7_path_match(const char *pattern, const char *path);

#endif
