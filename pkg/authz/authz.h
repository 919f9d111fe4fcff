/* L4 authorization for inbound connections (DESIGN.md §2): ztunnel's policy evaluation, sans-I/O.
 */
#ifndef AMBIENT_AUTHZ_H
#define AMBIENT_AUTHZ_H

#include "pkg/base/base.h"
#include "pkg/config/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Semantics copied from istio/ztunnel (src/rbac.rs, src/state.rs::assert_rbac):
 *
 *   applicable = Namespace policies of the destination's namespace, then Global policies, then
 *                the destination's selector policies (authorizationPolicies), each once
 *   1. dry-run DENY policies     evaluated, reported as hits, never enforced
 *   2. a matching DENY           => DENY  (AUTHZ_REASON_DENY_MATCHED: policy + rule)
 *   3. dry-run ALLOW policies    evaluated, reported as hits, never enforced (not reached
 *                                after step 2 denied)
 *   4. no (enforced) ALLOW       => ALLOW (AUTHZ_REASON_NO_ALLOW_POLICIES)
 *   5. a matching ALLOW          => ALLOW (AUTHZ_REASON_ALLOW_MATCHED: policy + rule)
 *   6. otherwise                 => DENY  (AUTHZ_REASON_NONE_ALLOWED)
 *
 * Within each step policies are tried in the order above and, inside a policy, rules in document
 * order; the first match decides. A policy matches when any rule does; a rule when all its clauses
 * do (no clauses: true); a clause when any of its Matches does; a Match with no lists never does
 * (it is skipped); inside a Match every populated list must pass: a positive list when any element
 * matches, a not* list when none does. No rules: the policy never matches.
 *
 * Source identity fields (ztunnel's Identity::from_str): "spiffe://<td>/ns/<ns>/sa/<sa>", exactly
 * five '/'-separated parts after the scheme.
 *   principals      the identity with "spiffe://" stripped; an identity without that prefix (or
 *                   none at all: plaintext) matches no principal entry, not even Presence.
 *   namespaces      <ns>, or "" without an (Istio-shaped) identity: Exact "" and Prefix "" match
 *                   it, Presence does not.
 *   serviceAccounts <ns> and <sa> both equal; never matches without an Istio-shaped identity.
 *   sourceIps, destinationIps   CIDR contains the address (an IPv4-mapped IPv6 address is v4).
 *   destinationPorts            equal to the real target port (not 15008).
 *
 * Nothing here allocates: authz_check reads the snapshot and fills a caller-owned result.
 */

/* The connection as seen by the inbound side. */
struct authz_conn {
	struct config_ip src_ip;
	uint16_t src_port;
	struct config_ip dst_ip;
	uint16_t dst_port;	  /* the real target port, not 15008 */
	const char *src_identity; /* peer certificate's SPIFFE ID; NULL or "" for plaintext */
	const char *dst_network;  /* NULL = ""; carried for logs, not used to match */
};

enum authz_verdict { AUTHZ_ALLOW = 0, AUTHZ_DENY };

enum authz_reason {
	AUTHZ_REASON_DENY_MATCHED = 0,	/* a DENY policy matched: policy and rule are set */
	AUTHZ_REASON_NO_ALLOW_POLICIES, /* no enforced ALLOW policy applies */
	AUTHZ_REASON_ALLOW_MATCHED,	/* an ALLOW policy matched: policy and rule are set */
	AUTHZ_REASON_NONE_ALLOWED,	/* ALLOW policies apply, none matched */
};

/* A policy and the index of its first matching rule. */
struct authz_hit {
	const struct config_policy *policy;
	size_t rule;
};

#define AUTHZ_MAX_DRY_RUN_HITS 8

/*
 * The decision. Policy pointers point into the snapshot passed to authz_check and are valid while
 * a reference to it is held.
 */
struct authz_result {
	enum authz_verdict verdict;
	enum authz_reason reason;
	struct authz_hit decided; /* .policy NULL for NO_ALLOW_POLICIES and NONE_ALLOWED */
	/* Enforced policies that applied, by action (each counted once). */
	size_t n_deny_policies;
	size_t n_allow_policies;
	/* Dry-run policies that applied, and those that matched: DENY hits first, then ALLOW hits,
	 * each in evaluation order; the first AUTHZ_MAX_DRY_RUN_HITS are kept. */
	size_t n_dry_run_policies;
	struct authz_hit dry_run[AUTHZ_MAX_DRY_RUN_HITS];
	size_t n_dry_run;	/* kept in dry_run[] */
	size_t n_dry_run_total; /* matched, kept or not */
	/* The verdict if the dry-run policies were enforced too (== verdict when there are none),
	 * and why: its deciding hit (.policy NULL for the two "no policy" reasons). */
	enum authz_verdict dry_run_verdict;
	enum authz_reason dry_run_reason;
	struct authz_hit dry_run_decided;
};

/*
 * Evaluates conn against the policies that apply to dst, a workload of snapshot c. Fills res
 * completely; returns 0, or -E_INVAL when an argument is NULL (res then says DENY:
 * NONE_ALLOWED, so a caller that ignores the return value still fails closed).
 */
int authz_check(const struct config *c, const struct config_workload *dst,
		const struct authz_conn *conn, struct authz_result *res);

/*
 * "Policies changed: re-check this open connection." The destination is looked up again in next
 * by uid (one hash lookup), so a changed authorizationPolicies list takes effect; if it is gone,
 * old_dst's namespace and its selector policies' names are resolved in next, as ztunnel does with
 * the workload it captured at connection setup. old_dst must still be valid (the caller holds its
 * snapshot). Then the same evaluation as authz_check. Returns 0 or -E_INVAL.
 */
int authz_recheck(const struct config *next, const struct config_workload *old_dst,
		  const struct authz_conn *conn, struct authz_result *res);

/* True when the connection may proceed. */
static inline bool authz_allowed(const struct authz_result *r)
{
	return r->verdict == AUTHZ_ALLOW;
}

/*
 * One line for the access log and `ambient ctl explain`, snprintf-style (returns the length the
 * whole line needs; out is always terminated when cap > 0):
 *
 *   denied by policy default/deny-all rule 0
 *   allowed by policy default/only-frontend rule 1
 *   allowed: no ALLOW policies
 *   denied: allow policies exist, but none allowed
 *
 * followed, when a dry-run policy matched or would change the verdict, by
 *
 *   ; dry-run would deny: DENY default/audit rule 0 matched, ALLOW a/b rule 2 matched (+3 more)
 *   ; dry-run would deny: allow policies exist, but none allowed
 */
size_t authz_result_format(const struct authz_result *r, char *out, size_t cap);
#define AUTHZ_REASON_MAX 1024 /* enough for any line unless names are extremely long */

/* "allow" / "deny". */
const char *authz_verdict_name(enum authz_verdict v);

/*
 * ztunnel's short rejection text for the deciding step: "explicitly denied by: ns/name" or
 * "allow policies exist, but none allowed"; "" when allowed. Written into out like
 * authz_result_format.
 */
size_t authz_rejection_format(const struct authz_result *r, char *out, size_t cap);

/* ---- identities ------------------------------------------------------------------------------ */

/* A source identity split into slices of the original string. */
struct authz_identity {
	bool present;		/* a non-empty identity string was given */
	bool istio;		/* it has the shape spiffe://<td>/ns/<ns>/sa/<sa> */
	struct slice principal; /* after "spiffe://"; {NULL,0} when that prefix is missing */
	struct slice trust_domain, namespace, service_account; /* set when istio */
};

/*
 * Splits id (NULL or "" = no identity) like ztunnel's Identity::from_str: after "spiffe://"
 * exactly five '/'-separated parts, the second "ns" and the fourth "sa". Always fills out (a
 * string of another shape just leaves istio false); returns 0 when istio, else -E_INVAL.
 */
int authz_identity_parse(const char *id, struct authz_identity *out);

#endif
