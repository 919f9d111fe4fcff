/* The mesh config (DESIGN.md §3): parsed, validated and indexed into an immutable snapshot. */
#ifndef AMBIENT_CONFIG_H
#define AMBIENT_CONFIG_H

#include "pkg/base/base.h"
#include "pkg/buf/buf.h"
#include "pkg/json/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * CONTRACT (used by watch, admin and cmd/; keep these signatures):
 *
 *   struct config *c = config_parse("mesh.json", text, len, version, &errs);
 *   if (!c)  -> every problem is in errs, one line each: "mesh.json: .services[2].ports.\"70000\":
 * port out of range 1..65535" config_ref(c) / config_unref(c)   refcount is atomic; snapshots are
 * shared across threads.
 *
 * A snapshot is immutable after config_parse returns.
 */
struct config;

struct config *config_parse(const char *source_name, const char *text, size_t len, uint64_t version,
			    struct errlist *errs);
struct config *config_ref(struct config *c);
void config_unref(struct config *c);

/* Monotonic version assigned by the loader, and the content hash (hex sha256, first 16 chars). */
uint64_t config_version(const struct config *c);
const char *config_etag(const struct config *c);
const char *config_source(const struct config *c);

/*
 * ---- errors and warnings ---------------------------------------------------------------------
 * Parsing collects every problem; nothing stops at the first one (except a JSON syntax error,
 * after which there is no document to check). Lines look like
 *
 *   mesh.json:3:14: invalid JSON: trailing comma before '}'           (syntax: file:line:col)
 *   mesh.json: .workloads[0].nmae: unknown field (did you mean "name"?)
 *   mesh.json: .services[2].ports."70000": port out of range 1..65535
 *
 * Errors reject the document (config_parse returns NULL). Warnings do not: they describe a legal
 * but probably unintended config (a service no workload serves, a policy nobody references) and
 * are kept in the snapshot (config_warnings) so /config_dump and `ambient ctl` can show them.
 * docs/config.md lists every check and says which kind it is.
 */
struct config_parse_opts {
	size_t max_bytes;	  /* 0 = CONFIG_MAX_BYTES */
	struct errlist *warnings; /* if set, receives the warnings too, even when parsing fails */
};
#define CONFIG_MAX_BYTES ((size_t)64 << 20)
#define CONFIG_MAX_DEPTH 32u
/* At most this many error lines are listed; one more line says how many were left out. */
#define CONFIG_MAX_ERRORS 100

struct config *config_parse_ex(const char *source_name, const char *text, size_t len,
			       uint64_t version, const struct config_parse_opts *opts,
			       struct errlist *errs);
/* The snapshot's warnings, same line format as errors. */
const char *const *config_warnings(const struct config *c, size_t *n);

/*
 * ---- the model -------------------------------------------------------------------------------
 * Field names follow ztunnel's local config (camelCase there, snake_case here). Every pointer
 * below points into the snapshot and is valid while a reference to it is held; nothing may be
 * modified. Optional strings are "" when absent (never NULL); defaults are already applied.
 */

/* An IP address; v4 in addr[0..3]. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are stored as v4. */
struct config_ip {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
};
#define CONFIG_IP_STRLEN 46 /* INET6_ADDRSTRLEN */

struct config_cidr {
	struct config_ip ip; /* host bits cleared */
	uint8_t prefix;	     /* a bare address means /32 or /128 */
};

/* "network/IP" ("/10.96.0.10" is the default network). */
struct config_netaddr {
	const char *network;
	struct config_ip ip;
};

enum config_gateway_kind { CONFIG_GATEWAY_ADDRESS = 0, CONFIG_GATEWAY_HOSTNAME };

/* GatewayAddress destination: "network/IP" if the part after the last '/' is an IP, else
 * "namespace/hostname" (ztunnel tries the same order). */
struct config_gateway_dest {
	enum config_gateway_kind kind;
	struct config_netaddr address; /* CONFIG_GATEWAY_ADDRESS */
	const char *namespace;	       /* CONFIG_GATEWAY_HOSTNAME */
	const char *hostname;
};

struct config_gateway {
	bool present; /* false: no waypoint / gateway configured */
	struct config_gateway_dest destination;
	uint16_t hbone_mtls_port;
};

/* One "servicePort": targetPort pair. target_port 0 means "use the endpoint's own mapping". */
struct config_port {
	uint16_t service_port;
	uint16_t target_port;
};

enum config_protocol { CONFIG_PROTOCOL_TCP = 0, CONFIG_PROTOCOL_HBONE };
enum config_network_mode { CONFIG_NETWORK_MODE_STANDARD = 0, CONFIG_NETWORK_MODE_HOST_NETWORK };
enum config_health { CONFIG_HEALTH_HEALTHY = 0, CONFIG_HEALTH_UNHEALTHY };
enum config_app_tunnel_protocol { CONFIG_APP_TUNNEL_NONE = 0, CONFIG_APP_TUNNEL_PROXY };

struct config_app_tunnel {
	bool present;
	enum config_app_tunnel_protocol protocol;
	uint16_t port; /* 0 = not given */
};

struct config_locality {
	const char *region;
	const char *zone;
	const char *subzone;
};

struct config_service;
struct config_policy;

/* One entry of a workload's "services" map: this workload is an endpoint of that service. */
struct config_workload_service {
	const char *key;       /* "namespace/hostname" as written */
	const char *namespace; /* split from key */
	const char *hostname;
	struct config_port *ports; /* svcPort -> targetPort for this endpoint */
	size_t n_ports;
	const struct config_service *service; /* NULL when the top level has no "services" */
};

/* Which traffic a waypoint workload accepts (Istio's istio.io/waypoint-for label). UNSET reads as
 * SERVICE, Istio's default. */
enum config_waypoint_for {
	CONFIG_WAYPOINT_FOR_UNSET = 0,
	CONFIG_WAYPOINT_FOR_SERVICE,
	CONFIG_WAYPOINT_FOR_WORKLOAD,
	CONFIG_WAYPOINT_FOR_ALL,
	CONFIG_WAYPOINT_FOR_NONE,
};

struct config_workload {
	const char *uid; /* given, or derived (uid_derived) as "<clusterId>//v1/Pod/<ns>/<name>" */
	bool uid_derived;
	const char *name;
	const char *namespace;
	const char *service_account; /* default "default" */
	const char *trust_domain;    /* default "cluster.local" */
	const char *identity; /* "spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>" */
	struct config_ip *workload_ips;
	size_t n_workload_ips;
	struct config_gateway waypoint;
	struct config_gateway network_gateway;
	enum config_protocol protocol; /* default TCP */
	enum config_network_mode
		network_mode; /* default Standard; HostNetwork IPs are not indexed */
	const char *network;
	const char *workload_name;
	const char *workload_type;
	const char *canonical_name;
	const char *canonical_revision;
	const char *hostname;
	const char *node;
	bool native_tunnel;
	struct config_app_tunnel application_tunnel;
	const char **authorization_policies; /* "namespace/name" as written */
	size_t n_authorization_policies;
	/* The same policies resolved, n_authorization_policies entries (all resolve, or the
	 * document is rejected). */
	const struct config_policy **policies;
	enum config_health status; /* default Healthy */
	const char *cluster_id;	   /* default "Kubernetes" */
	struct config_locality locality;
	struct config_workload_service *services;
	size_t n_services;
	uint32_t capacity;		       /* load-balancing weight, default 1 */
	enum config_waypoint_for waypoint_for; /* a waypoint workload: what it serves */
	size_t index;			       /* position in "workloads" */
};

enum config_lb_scope {
	CONFIG_LB_SCOPE_REGION = 0,
	CONFIG_LB_SCOPE_ZONE,
	CONFIG_LB_SCOPE_SUBZONE,
	CONFIG_LB_SCOPE_NODE,
	CONFIG_LB_SCOPE_CLUSTER,
	CONFIG_LB_SCOPE_NETWORK,
};
enum config_lb_mode {
	CONFIG_LB_MODE_STANDARD = 0,
	CONFIG_LB_MODE_STRICT,
	CONFIG_LB_MODE_FAILOVER,
	CONFIG_LB_MODE_PASSTHROUGH,
};
enum config_lb_health_policy { CONFIG_LB_ONLY_HEALTHY = 0, CONFIG_LB_ALLOW_ALL };
/* AUTOMATIC is the absence of the field. */
enum config_ip_families {
	CONFIG_IP_FAMILIES_AUTOMATIC = 0,
	CONFIG_IP_FAMILIES_DUAL,
	CONFIG_IP_FAMILIES_IPV4,
	CONFIG_IP_FAMILIES_IPV6,
};

struct config_load_balancer {
	bool present;
	enum config_lb_scope *routing_preferences;
	size_t n_routing_preferences;
	enum config_lb_mode mode;		    /* default Standard */
	enum config_lb_health_policy health_policy; /* default OnlyHealthy */
};

/* A workload serving a service, derived from the workloads' "services" maps. */
struct config_endpoint {
	const struct config_workload *workload;
	const struct config_workload_service *ws; /* its port map for this service */
};

/* A service port's application protocol (Kubernetes' appProtocol, Istio's names). UNSET: the
 * waypoint detects HTTP/1.1 or HTTP/2 prior knowledge, as for HTTP and HTTP2. TCP: the waypoint
 * relays the bytes without parsing HTTP. */
enum config_app_protocol {
	CONFIG_APP_PROTOCOL_UNSET = 0,
	CONFIG_APP_PROTOCOL_TCP,
	CONFIG_APP_PROTOCOL_HTTP,
	CONFIG_APP_PROTOCOL_HTTP2,
};

struct config_port_protocol {
	uint16_t port;
	enum config_app_protocol protocol;
};

struct config_service {
	const char *name;
	const char *namespace;
	const char *hostname;
	const char *key; /* "namespace/hostname" */
	struct config_netaddr *vips;
	size_t n_vips;
	struct config_port *ports; /* in document order */
	size_t n_ports;
	const char **subject_alt_names;
	size_t n_subject_alt_names;
	struct config_gateway waypoint;
	struct config_load_balancer load_balancer;
	enum config_ip_families ip_families;
	bool canonical;
	struct config_endpoint *endpoints; /* in workload order */
	size_t n_endpoints;
	size_t index;				    /* position in "services" */
	struct config_port_protocol *app_protocols; /* "appProtocols", in document order */
	size_t n_app_protocols;
};

/* The appProtocol of service port `port` (UNSET when not given). */
enum config_app_protocol config_service_app_protocol(const struct config_service *s, uint16_t port);

enum config_policy_scope {
	CONFIG_SCOPE_GLOBAL = 0,
	CONFIG_SCOPE_NAMESPACE,
	CONFIG_SCOPE_WORKLOAD_SELECTOR,
};
enum config_policy_action { CONFIG_ACTION_ALLOW = 0, CONFIG_ACTION_DENY };
enum config_string_match_kind {
	CONFIG_MATCH_EXACT = 0,
	CONFIG_MATCH_PREFIX,
	CONFIG_MATCH_SUFFIX,
	CONFIG_MATCH_PRESENCE,
};

struct config_string_match {
	enum config_string_match_kind kind;
	const char *value; /* "" for PRESENCE */
};

struct config_sa_match {
	const char *namespace;
	const char *service_account;
};

/* One Match: every populated list must pass (positive: any element matches; not*: none does). */
struct config_match {
	struct config_string_match *namespaces;
	size_t n_namespaces;
	struct config_string_match *not_namespaces;
	size_t n_not_namespaces;
	struct config_sa_match *service_accounts;
	size_t n_service_accounts;
	struct config_sa_match *not_service_accounts;
	size_t n_not_service_accounts;
	struct config_string_match *principals;
	size_t n_principals;
	struct config_string_match *not_principals;
	size_t n_not_principals;
	struct config_cidr *source_ips;
	size_t n_source_ips;
	struct config_cidr *not_source_ips;
	size_t n_not_source_ips;
	struct config_cidr *destination_ips;
	size_t n_destination_ips;
	struct config_cidr *not_destination_ips;
	size_t n_not_destination_ips;
	uint16_t *destination_ports;
	size_t n_destination_ports;
	uint16_t *not_destination_ports;
	size_t n_not_destination_ports;
};

/* rules = OR of rules; a rule = AND of clauses; a clause = OR of matches. */
struct config_clause {
	struct config_match *matches;
	size_t n_matches;
};
struct config_rule {
	struct config_clause *clauses;
	size_t n_clauses;
};

struct config_policy {
	const char *name;
	const char *namespace;
	const char *key; /* "namespace/name" */
	enum config_policy_scope scope;
	enum config_policy_action action;
	bool dry_run;
	struct config_rule *rules;
	size_t n_rules;
	size_t index; /* position in "policies" */
};

/* ---- waypoint objects (DESIGN.md §6) ----------------------------------------------------------
 * routes: Gateway API v1 HTTPRoute objects, l7Policies: Istio AuthorizationPolicy objects, both in
 * the JSON shape Kubernetes serves (metadata.*, spec.*). Status and bookkeeping metadata (uid,
 * resourceVersion, labels, ...) are accepted and ignored. */
struct config_k8s_meta {
	const char *name;
	const char *namespace;		/* default "default" */
	const char *creation_timestamp; /* RFC 3339 text, "" when absent (route tie-break) */
};

enum config_parent_kind { CONFIG_PARENT_SERVICE = 0, CONFIG_PARENT_GATEWAY };
struct config_parent_ref {
	enum config_parent_kind kind; /* default Gateway (the spec's default) */
	const char *group;
	const char *name;
	const char *namespace; /* "" = the route's */
	uint16_t port;	       /* 0 = every port */
	const char *section_name;
	const struct config_service *service; /* resolved (kind Service) */
};

enum config_path_type { CONFIG_PATH_EXACT = 0, CONFIG_PATH_PREFIX, CONFIG_PATH_REGEX };
enum config_value_type { CONFIG_VALUE_EXACT = 0, CONFIG_VALUE_REGEX };
enum config_http_method {
	CONFIG_METHOD_ANY = 0,
	CONFIG_METHOD_GET,
	CONFIG_METHOD_HEAD,
	CONFIG_METHOD_POST,
	CONFIG_METHOD_PUT,
	CONFIG_METHOD_DELETE,
	CONFIG_METHOD_CONNECT,
	CONFIG_METHOD_OPTIONS,
	CONFIG_METHOD_TRACE,
	CONFIG_METHOD_PATCH,
};
const char *config_http_method_name(enum config_http_method m);

struct config_path_match {
	enum config_path_type type; /* default PathPrefix */
	const char *value;	    /* default "/" */
};
struct config_value_match { /* HTTPHeaderMatch, HTTPQueryParamMatch */
	enum config_value_type type;
	const char *name;
	const char *value;
};
struct config_route_match {
	struct config_path_match path;
	struct config_value_match *headers;
	size_t n_headers;
	struct config_value_match *query_params;
	size_t n_query_params;
	enum config_http_method method;
};

struct config_http_header {
	const char *name;
	const char *value;
};
struct config_header_filter {
	bool present;
	struct config_http_header *set;
	size_t n_set;
	struct config_http_header *add;
	size_t n_add;
	const char **remove;
	size_t n_remove;
};
enum config_path_modifier_type { CONFIG_PATH_REPLACE_FULL = 0, CONFIG_PATH_REPLACE_PREFIX };
struct config_path_modifier {
	bool present;
	enum config_path_modifier_type type;
	const char *replace_full_path;
	const char *replace_prefix_match;
};
enum config_scheme { CONFIG_SCHEME_UNSET = 0, CONFIG_SCHEME_HTTP, CONFIG_SCHEME_HTTPS };
struct config_redirect {
	bool present;
	enum config_scheme scheme;
	const char *hostname;
	struct config_path_modifier path;
	uint16_t port;	      /* 0 = unset */
	uint16_t status_code; /* default 302 */
};
struct config_url_rewrite {
	bool present;
	const char *hostname;
	struct config_path_modifier path;
};
enum config_filter_type {
	CONFIG_FILTER_REQUEST_HEADER = 0,
	CONFIG_FILTER_RESPONSE_HEADER,
	CONFIG_FILTER_REDIRECT,
	CONFIG_FILTER_URL_REWRITE,
	CONFIG_FILTER_REQUEST_MIRROR,
};
struct config_backend_ref {
	const char *group;
	const char *kind; /* default "Service" */
	const char *name;
	const char *namespace; /* "" = the route's */
	uint16_t port;
	uint32_t weight;		      /* 0..1000000, default 1 */
	const struct config_service *service; /* resolved */
};
struct config_fraction {
	bool present;
	uint32_t numerator;
	uint32_t denominator; /* default 100 */
};
/* RequestMirror: a copy of each request (a share of them) to another backend, its response
 * discarded. The share is numerator / denominator (percent / 100; default 100 %). */
struct config_mirror {
	bool present;
	struct config_backend_ref backend_ref; /* weight unused */
	uint16_t percent;		       /* 0..100, default 100 */
	struct config_fraction fraction;
	uint32_t numerator, denominator; /* derived */
};
struct config_route_filter {
	enum config_filter_type type;
	struct config_header_filter request_header_modifier;
	struct config_header_filter response_header_modifier;
	struct config_redirect request_redirect;
	struct config_url_rewrite url_rewrite;
	struct config_mirror request_mirror;
};
struct config_route_timeouts {
	const char *request; /* Gateway API durations as written, "" when absent */
	const char *backend_request;
	uint64_t request_ms; /* parsed; 0 = none */
	uint64_t backend_request_ms;
};
/* Gateway API v1.2 HTTPRouteRetry (GEP-1731). */
struct config_route_retry {
	bool present;
	uint32_t attempts;   /* retries after the first try; default 2 (Istio's), 0 = none */
	const char *backoff; /* duration as written, "" when absent */
	uint64_t backoff_ms; /* parsed; default 25 (Envoy's base interval) */
	uint16_t *codes;     /* statuses 400..599 that are retried */
	size_t n_codes;
};
struct config_route_rule {
	const char *name;
	struct config_route_match
		*matches; /* none: one PathPrefix "/" match (the spec's default) */
	size_t n_matches;
	struct config_route_filter *filters;
	size_t n_filters;
	struct config_backend_ref *backend_refs;
	size_t n_backend_refs;
	struct config_route_timeouts timeouts;
	struct config_route_retry retry;
};
struct config_route_spec {
	struct config_parent_ref *parent_refs;
	size_t n_parent_refs;
	const char **hostnames;
	size_t n_hostnames;
	struct config_route_rule *rules;
	size_t n_rules;
};
struct config_route {
	struct config_k8s_meta metadata;
	struct config_route_spec spec;
	const char *key; /* "namespace/name" */
	size_t index;	 /* position in "routes" */
};

enum config_l7_action { CONFIG_L7_ALLOW = 0, CONFIG_L7_DENY, CONFIG_L7_AUDIT };
enum config_target_kind { CONFIG_TARGET_SERVICE = 0, CONFIG_TARGET_GATEWAY };
struct config_target_ref {
	const char *group;
	enum config_target_kind kind;
	const char *name;
	const char *namespace; /* "" = the policy's */
};
/* Istio string lists: "abc" exact, "abc*" prefix, "*abc" suffix, "*" presence (pkg/l7). */
struct config_l7_source {
	const char **principals;
	size_t n_principals;
	const char **not_principals;
	size_t n_not_principals;
	const char **namespaces;
	size_t n_namespaces;
	const char **not_namespaces;
	size_t n_not_namespaces;
	struct config_cidr *ip_blocks;
	size_t n_ip_blocks;
	struct config_cidr *not_ip_blocks;
	size_t n_not_ip_blocks;
};
struct config_l7_operation {
	const char **hosts;
	size_t n_hosts;
	const char **not_hosts;
	size_t n_not_hosts;
	const char **ports;
	size_t n_ports;
	const char **not_ports;
	size_t n_not_ports;
	const char **methods;
	size_t n_methods;
	const char **not_methods;
	size_t n_not_methods;
	const char **paths;
	size_t n_paths;
	const char **not_paths;
	size_t n_not_paths;
};
struct config_l7_from {
	struct config_l7_source source;
};
struct config_l7_to {
	struct config_l7_operation operation;
};
struct config_l7_condition {
	const char *key;
	const char **values;
	size_t n_values;
	const char **not_values;
	size_t n_not_values;
};
struct config_l7_rule {
	struct config_l7_from *from;
	size_t n_from;
	struct config_l7_to *to;
	size_t n_to;
	struct config_l7_condition *when;
	size_t n_when;
};
struct config_l7_spec {
	struct config_target_ref *target_refs;
	size_t n_target_refs;
	enum config_l7_action action; /* default ALLOW */
	struct config_l7_rule *rules;
	size_t n_rules;
};
struct config_l7_policy {
	struct config_k8s_meta metadata;
	struct config_l7_spec spec;
	const char *key; /* "namespace/name" */
	size_t index;	 /* position in "l7Policies" */
};

/* The decoded, validated waypoint objects (document order). */
const struct config_route *config_route_list(const struct config *c, size_t *n);
const struct config_l7_policy *config_l7_policy_list(const struct config *c, size_t *n);
/* The service of that name (metadata name, not hostname) in namespace ns, or NULL. */
const struct config_service *config_service_by_name(const struct config *c, const char *ns,
						    const char *name);
/* Gateway API duration (GEP-2257: ^([0-9]{1,5}(h|m|s|ms)){1,4}$) to milliseconds; -E_INVAL. */
int config_duration_parse(const char *s, uint64_t *ms);

/* ---- whole lists (document order) ------------------------------------------------------------ */
const struct config_workload *config_workloads(const struct config *c, size_t *n);
const struct config_service *config_services(const struct config *c, size_t *n);
const struct config_policy *config_policies(const struct config *c, size_t *n);
/* Waypoint-level objects, validated only as "array of objects" for now and kept as given (the
 * waypoint module checks their contents). Never NULL: an empty array when absent. */
const cJSON *config_routes(const struct config *c);
const cJSON *config_l7_policies(const struct config *c);

/* ---- lookups: hash indexes, O(1); NULL / n = 0 when nothing matches ---------------------------
 */
const struct config_workload *config_workload_by_uid(const struct config *c, const char *uid);
/* Standard-network-mode workloads only (HostNetwork workloads share the node's IP). */
const struct config_workload *config_workload_by_ip(const struct config *c, const char *network,
						    const struct config_ip *ip);
/* Workloads whose "node" is node, in document order ("" lists those without a node). */
const struct config_workload *const *config_workloads_by_node(const struct config *c,
							      const char *node, size_t *n);
const struct config_service *config_service_by_key(const struct config *c, const char *ns,
						   const char *hostname);
/* All services with this hostname, in document order (several namespaces may share one). */
const struct config_service *const *config_services_by_hostname(const struct config *c,
								const char *hostname, size_t *n);
/* The best service for a hostname, ztunnel's order: one in prefer_ns (may be NULL), else one
 * marked canonical, else the first in document order. */
const struct config_service *
config_service_by_hostname(const struct config *c, const char *hostname, const char *prefer_ns);
const struct config_service *config_service_by_vip(const struct config *c, const char *network,
						   const struct config_ip *ip);
const struct config_policy *config_policy_by_key(const struct config *c, const char *ns,
						 const char *name);
/* Namespace-scoped policies of namespace ns, and Global-scoped policies, in document order. */
const struct config_policy *const *config_policies_by_namespace(const struct config *c,
								const char *ns, size_t *n);
const struct config_policy *const *config_policies_global(const struct config *c, size_t *n);

/* ---- addresses ------------------------------------------------------------------------------- */
/* Strict textual forms (same result with musl and glibc): dotted quad without leading zeros, or
 * RFC 4291 IPv6 without zone or brackets. 0 or -E_INVAL. */
int config_ip_parse(const char *s, struct config_ip *out);
/* RFC 5952 text; returns its length. cap >= CONFIG_IP_STRLEN always suffices. */
size_t config_ip_format(const struct config_ip *ip, char *out, size_t cap);
bool config_ip_equal(const struct config_ip *a, const struct config_ip *b);
/* "10.0.0.0/8", "fd00::/8" or a bare address; host bits are cleared. 0 or -E_INVAL. */
int config_cidr_parse(const char *s, struct config_cidr *out);
bool config_cidr_contains(const struct config_cidr *c, const struct config_ip *ip);

/* ---- output ---------------------------------------------------------------------------------- */
/* The snapshot for /config_dump, indented by 2:
 *   {"source": ..., "version": N, "etag": ..., "warnings": [...], "mesh": {"workloads": [...],
 *    "services": [...], "policies": [...], "routes": [...], "l7Policies": [...]}}
 * "mesh" is normalized: defaults applied, derived uids written out, addresses canonical. */
int config_dump_json(const struct config *c, struct buf *out);
/* The same snapshot as one value inside an existing writer (for composing larger dumps). */
void config_dump_write(const struct config *c, struct json_writer *w);
/* Only the "mesh" value: a complete mesh document that parses back to an equal snapshot. */
void config_dump_mesh_write(const struct config *c, struct json_writer *w);

/* docs/config.md, generated from the schema table (a test keeps the file in sync). */
int config_schema_markdown(struct buf *out);

#endif
