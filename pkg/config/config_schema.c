/* The mesh-config schema as data: field tables, value formats, per-object hooks, and the
 * generator of docs/config.md from those tables. */
#include "pkg/config/config_int.h"

#include <stdio.h>
#include <string.h>

/* ---- string validators ----------------------------------------------------------------------- */

static void describe_char(unsigned char c, char *tmp, size_t cap, const char *allowed)
{
	if (c > 0x20 && c < 0x7f)
		snprintf(tmp, cap, "character '%c' not allowed (%s)", c, allowed);
	else
		snprintf(tmp, cap, "character 0x%02x not allowed (%s)", c, allowed);
}

static const char *chk_nonempty(const char *s, char *tmp, size_t cap)
{
	(void)tmp;
	(void)cap;
	return *s ? NULL : "must not be empty";
}

static bool seg_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

/* Namespaces and service accounts become SPIFFE path segments (spiffe://td/ns/<ns>/sa/<sa>). */
static const char *chk_segment(const char *s, char *tmp, size_t cap)
{
	if (!*s)
		return "must not be empty";
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return "must not be \".\" or \"..\"";
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (!seg_char(*c)) {
			describe_char(*c, tmp, cap, "use letters, digits, '.', '-', '_'");
			return tmp;
		}
	}
	return NULL;
}

/* SPIFFE trust domain names: lowercase letters, digits, '.', '-', '_'. */
static const char *chk_trust_domain(const char *s, char *tmp, size_t cap)
{
	if (!*s)
		return "must not be empty";
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '.' ||
		      *c == '-' || *c == '_')) {
			describe_char(*c, tmp, cap, "use lowercase letters, digits, '.', '-', '_'");
			return tmp;
		}
	}
	return NULL;
}

static const char *check_printable(const char *s, char *tmp, size_t cap, bool slash_ok)
{
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c <= 0x20 || *c == 0x7f || (*c == '/' && !slash_ok)) {
			describe_char(*c, tmp, cap, "no spaces, control characters or '/'");
			return tmp;
		}
	}
	return NULL;
}

static const char *chk_hostname(const char *s, char *tmp, size_t cap)
{
	if (!*s)
		return "must not be empty";
	return check_printable(s, tmp, cap, false);
}

/* "namespace/name": exactly one '/', both sides non-empty. */
static const char *chk_nsname(const char *s, char *tmp, size_t cap)
{
	const char *slash = strchr(s, '/');

	if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/'))
		return "expected \"namespace/name\"";
	return check_printable(s, tmp, cap, true);
}

/* ---- leaf types ------------------------------------------------------------------------------ */

#define STRING_TYPE(nm, fn, d)                                                                     \
	{                                                                                          \
		.kind = CFG_STRING, .name = nm, .size = sizeof(const char *), .check = fn,         \
		.doc = d                                                                           \
	}

static const struct cfg_type t_string = STRING_TYPE("string", NULL, "Any string.");
static const struct cfg_type t_nonempty =
	STRING_TYPE("non-empty string", chk_nonempty, "Any string except \"\".");
static const struct cfg_type t_segment = STRING_TYPE(
	"name", chk_segment,
	"Letters, digits, `.`, `-`, `_` (it becomes part of a SPIFFE ID); not `.` or `..`.");
static const struct cfg_type t_trust_domain = STRING_TYPE(
	"trust domain", chk_trust_domain, "Lowercase letters, digits, `.`, `-`, `_` (SPIFFE).");
static const struct cfg_type t_hostname =
	STRING_TYPE("hostname", chk_hostname, "Non-empty; no spaces, control characters or `/`.");
static const struct cfg_type t_nsname =
	STRING_TYPE("namespace/name", chk_nsname,
		    "`\"<namespace>/<name>\"`: exactly one `/`, both sides non-empty.");

static const struct cfg_type t_bool = {.kind = CFG_BOOL, .name = "boolean", .size = sizeof(bool)};
static const struct cfg_type t_port = {
	.kind = CFG_UINT,
	.name = "port",
	.size = sizeof(uint16_t),
	.min = 1,
	.max = 65535,
	.doc = "Integer 1..65535 (as an object key: a decimal string)."};
static const struct cfg_type t_target_port = {
	.kind = CFG_UINT,
	.name = "target port",
	.size = sizeof(uint16_t),
	.min = 0,
	.max = 65535,
	.doc = "Integer 0..65535; 0 means \"the endpoint's own port mapping\"."};
static const struct cfg_type t_u32 = {.kind = CFG_UINT,
				      .name = "integer",
				      .size = sizeof(uint32_t),
				      .min = 0,
				      .max = UINT32_MAX,
				      .doc = "Integer 0..4294967295."};
static const struct cfg_type t_ip = {
	.kind = CFG_IP,
	.name = "IP address",
	.size = sizeof(struct config_ip),
	.doc = "IPv4 dotted quad (no leading zeros) or IPv6 (RFC 4291, no zone); "
	       "`::ffff:a.b.c.d` is read as IPv4."};
static const struct cfg_type t_cidr = {.kind = CFG_CIDR,
				       .name = "CIDR",
				       .size = sizeof(struct config_cidr),
				       .doc = "`10.0.0.0/8`, `fd00::/8`; a bare address means /32 "
					      "or /128; host bits are cleared."};
static const struct cfg_type t_netaddr = {
	.kind = CFG_NETADDR,
	.name = "network/IP",
	.size = sizeof(struct config_netaddr),
	.doc = "`\"<network>/<IP>\"`, e.g. `\"/10.96.0.10\"` on the default (empty) network; a "
	       "bare IP means the default network."};
static const struct cfg_type t_gwdest = {
	.kind = CFG_GWDEST,
	.name = "gateway destination",
	.size = sizeof(struct config_gateway_dest),
	.doc = "`\"<network>/<IP>\"` (or a bare IP) if the part after the first `/` is an IP, "
	       "else `\"<namespace>/<hostname>\"` (a service)."};
static const struct cfg_type t_empty = {
	.kind = CFG_EMPTY, .name = "[]", .size = sizeof(const char *), .doc = "Exactly `[]`."};

/* The leaf types docs/config.md explains under "Value formats", in that order. */
static const struct cfg_type *const leaf_types[] = {
	&t_string,	&t_nonempty, &t_segment, &t_trust_domain, &t_hostname, &t_nsname, &t_port,
	&t_target_port, &t_u32,	     &t_ip,	 &t_cidr,	  &t_netaddr,  &t_gwdest, &t_empty,
};

#define ENUM_TYPE(nm, vals, b)                                                                     \
	{                                                                                          \
		.kind = CFG_ENUM, .name = nm, .size = sizeof(int), .values = vals,                 \
		.nvalues = ARRAY_LEN(vals), .base = b                                              \
	}

static const char *const v_protocol[] = {"TCP", "HBONE"};
static const char *const v_network_mode[] = {"Standard", "HostNetwork"};
static const char *const v_health[] = {"Healthy", "Unhealthy"};
static const char *const v_tunnel[] = {"NONE", "PROXY"};
static const char *const v_lb_scope[] = {"Region", "Zone", "Subzone", "Node", "Cluster", "Network"};
static const char *const v_lb_mode[] = {"Standard", "Strict", "Failover", "Passthrough"};
static const char *const v_lb_health[] = {"OnlyHealthy", "AllowAll"};
static const char *const v_ip_families[] = {"Dual", "IPv4", "IPv6"};
static const char *const v_scope[] = {"Global", "Namespace", "WorkloadSelector"};
static const char *const v_action[] = {"Allow", "Deny"};

_Static_assert(sizeof(enum config_protocol) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum config_lb_scope) == sizeof(int), "enums are stored as int");

static const struct cfg_type t_protocol = ENUM_TYPE("protocol", v_protocol, 0);
static const struct cfg_type t_network_mode = ENUM_TYPE("network mode", v_network_mode, 0);
static const struct cfg_type t_health = ENUM_TYPE("status", v_health, 0);
static const struct cfg_type t_tunnel = ENUM_TYPE("tunnel protocol", v_tunnel, 0);
static const struct cfg_type t_lb_scope = ENUM_TYPE("scope", v_lb_scope, 0);
static const struct cfg_type t_lb_mode = ENUM_TYPE("mode", v_lb_mode, 0);
static const struct cfg_type t_lb_health = ENUM_TYPE("health policy", v_lb_health, 0);
/* Stored +1: 0 is "absent" (AUTOMATIC), which has no spelling in the document. */
static const struct cfg_type t_ip_families = ENUM_TYPE("IP families", v_ip_families, 1);
static const struct cfg_type t_scope = ENUM_TYPE("scope", v_scope, 0);
static const struct cfg_type t_action = ENUM_TYPE("action", v_action, 0);
static const char *const v_app_protocol[] = {"TCP", "HTTP", "HTTP2"};
/* Stored +1: 0 is "absent" (HTTP detected). */
static const struct cfg_type t_app_protocol = ENUM_TYPE("app protocol", v_app_protocol, 1);
static const char *const v_waypoint_for[] = {"service", "workload", "all", "none"};
/* Stored +1: 0 is "absent" (service). */
static const struct cfg_type t_waypoint_for = ENUM_TYPE("waypoint-for", v_waypoint_for, 1);

#define ARRAY_OF(elem_)                                                                            \
	{                                                                                          \
		.kind = CFG_ARRAY, .name = "array", .elem = &(elem_)                               \
	}

static const struct cfg_type t_string_list = ARRAY_OF(t_string);
static const struct cfg_type t_nsname_list = ARRAY_OF(t_nsname);
static const struct cfg_type t_ip_list = ARRAY_OF(t_ip);
static const struct cfg_type t_cidr_list = ARRAY_OF(t_cidr);
static const struct cfg_type t_port_list = ARRAY_OF(t_port);
static const struct cfg_type t_netaddr_list = ARRAY_OF(t_netaddr);
static const struct cfg_type t_lb_scope_list = ARRAY_OF(t_lb_scope);

/* ---- objects --------------------------------------------------------------------------------- */

#define FIELD(nm, ty, fl, df, st, mem, d)                                                          \
	{                                                                                          \
		.name = nm, .type = &(ty), .flags = fl, .def = df, .off = offsetof(st, mem),       \
		.doc = d                                                                           \
	}
#define LIST(nm, ty, fl, df, st, mem, d)                                                           \
	{                                                                                          \
		.name = nm, .type = &(ty), .flags = fl, .def = df, .off = offsetof(st, mem),       \
		.count_off = offsetof(st, n_##mem), .doc = d                                       \
	}
#define UNSUPPORTED(nm, why)                                                                       \
	{                                                                                          \
		.name = nm, .type = &t_string, .flags = CF_UNSUPPORTED, .doc = why                 \
	}
#define OBJECT_TYPE(nm, st, flds, d)                                                               \
	.kind = CFG_OBJECT, .name = nm, .size = sizeof(st), .fields = flds,                        \
	.nfields = ARRAY_LEN(flds), .doc = d

/* GatewayAddress */
static const struct cfg_field f_gateway[] = {
	FIELD("destination", t_gwdest, CF_REQUIRED, NULL, struct config_gateway, destination,
	      "Where the waypoint or gateway is."),
	FIELD("hboneMtlsPort", t_port, 0, "15008", struct config_gateway, hbone_mtls_port,
	      "Its HBONE port."),
};
static const struct cfg_type t_gateway = {
	OBJECT_TYPE("GatewayAddress", struct config_gateway, f_gateway,
		    "A waypoint or network gateway. ztunnel requires `hboneMtlsPort`; here it "
		    "defaults to 15008."),
	.has_present = true,
	.present_off = offsetof(struct config_gateway, present),
};

/* ApplicationTunnel */
static const struct cfg_field f_app_tunnel[] = {
	FIELD("protocol", t_tunnel, CF_REQUIRED, NULL, struct config_app_tunnel, protocol,
	      "`PROXY`: deliver with a PROXY v2 header."),
	FIELD("port", t_port, CF_OMIT_UNSET, NULL, struct config_app_tunnel, port,
	      "Deliver to this port instead of the target port."),
};
static const struct cfg_type t_app_tunnel = {
	OBJECT_TYPE("ApplicationTunnel", struct config_app_tunnel, f_app_tunnel,
		    "How inbound traffic is handed to the workload (waypoint sandwich)."),
	.has_present = true,
	.present_off = offsetof(struct config_app_tunnel, present),
};

/* Locality */
static const struct cfg_field f_locality[] = {
	FIELD("region", t_string, 0, "", struct config_locality, region, ""),
	FIELD("zone", t_string, 0, "", struct config_locality, zone, ""),
	FIELD("subzone", t_string, 0, "", struct config_locality, subzone, ""),
};
static const struct cfg_type t_locality = {
	OBJECT_TYPE("Locality", struct config_locality, f_locality,
		    "Topology of a workload, used by locality-aware load balancing."),
};

/* Port maps: "80": 8080. As a workload's per-service value, the map lives inside the entry. */
#define PORT_MAP_BODY                                                                              \
	.kind = CFG_MAP, .name = "map", .key = &t_port, .elem = &t_target_port,                    \
	.entry_size = sizeof(struct config_port),                                                  \
	.key_off = offsetof(struct config_port, service_port),                                     \
	.val_off = offsetof(struct config_port, target_port)
static const struct cfg_type t_port_map = {PORT_MAP_BODY};
static const struct cfg_type t_app_protocol_map = {
	.kind = CFG_MAP,
	.name = "map",
	.key = &t_port,
	.elem = &t_app_protocol,
	.entry_size = sizeof(struct config_port_protocol),
	.key_off = offsetof(struct config_port_protocol, port),
	.val_off = offsetof(struct config_port_protocol, protocol),
};
static const struct cfg_type t_ws_ports = {
	PORT_MAP_BODY,
	.items_off = offsetof(struct config_workload_service, ports),
	.count_off = offsetof(struct config_workload_service, n_ports),
};
static const struct cfg_type t_ws_map = {
	.kind = CFG_MAP,
	.name = "map",
	.key = &t_nsname,
	.elem = &t_ws_ports,
	.entry_size = sizeof(struct config_workload_service),
	.key_off = offsetof(struct config_workload_service, key),
	.val_off = 0,
};

static void workload_post(struct cfg_ctx *ctx, void *obj);
static void service_post(struct cfg_ctx *ctx, void *obj);
static void policy_post(struct cfg_ctx *ctx, void *obj);
static void match_post(struct cfg_ctx *ctx, void *obj);

/* Workload */
#define WL struct config_workload
static const struct cfg_field f_workload[] = {
	FIELD("uid", t_nonempty, 0, NULL, WL, uid,
	      "Unique key. When absent it is derived as `<clusterId>//v1/Pod/<namespace>/<name>` "
	      "(then `name` is required)."),
	FIELD("name", t_string, 0, "", WL, name, "Pod (or VM) name."),
	FIELD("namespace", t_segment, CF_REQUIRED, NULL, WL, namespace, "Namespace."),
	FIELD("serviceAccount", t_segment, 0, "default", WL, service_account,
	      "Service account of its identity `spiffe://<trustDomain>/ns/<namespace>/sa/"
	      "<serviceAccount>`."),
	FIELD("trustDomain", t_trust_domain, 0, "cluster.local", WL, trust_domain,
	      "SPIFFE trust domain of its identity."),
	LIST("workloadIps", t_ip_list, 0, "[]", WL, workload_ips,
	     "Addresses of the workload (ztunnel requires the key; here `[]` is the default, but a "
	     "workload needs `workloadIps` or `hostname`)."),
	FIELD("network", t_string, 0, "", WL, network,
	      "Network name; \"\" is the default network."),
	FIELD("node", t_string, 0, "", WL, node,
	      "Node name; must equal a ztunnel's `--node` for that ztunnel to serve it."),
	FIELD("protocol", t_protocol, 0, "TCP", WL, protocol,
	      "How peers connect to it: `HBONE` (mTLS tunnel to port 15008) or plain `TCP`."),
	FIELD("networkMode", t_network_mode, 0, "Standard", WL, network_mode,
	      "`HostNetwork` workloads share the node IP and are not indexed by IP."),
	FIELD("hostname", t_string, 0, "", WL, hostname, "DNS name, for workloads without IPs."),
	FIELD("waypoint", t_gateway, CF_OMIT_UNSET, NULL, WL, waypoint,
	      "Waypoint for traffic addressed to this workload directly."),
	FIELD("networkGateway", t_gateway, CF_OMIT_UNSET, NULL, WL, network_gateway,
	      "Gateway that reaches this workload from other networks."),
	FIELD("nativeTunnel", t_bool, 0, "false", WL, native_tunnel,
	      "The workload terminates HBONE itself (a waypoint or sidecar)."),
	FIELD("applicationTunnel", t_app_tunnel, CF_OMIT_UNSET, NULL, WL, application_tunnel,
	      "Inbound delivery via PROXY protocol."),
	LIST("services", t_ws_map, 0, "{}", WL, services,
	     "`\"<namespace>/<hostname>\"` to `{\"<servicePort>\": <targetPort>}`: the services "
	     "this workload is an endpoint of."),
	LIST("authorizationPolicies", t_nsname_list, 0, "[]", WL, authorization_policies,
	     "`WorkloadSelector` policies that apply to it (`namespace/name`); Namespace and "
	     "Global policies apply implicitly."),
	FIELD("status", t_health, 0, "Healthy", WL, status,
	      "Unhealthy workloads get no traffic (unless the service's `healthPolicy` is "
	      "`AllowAll`)."),
	FIELD("capacity", t_u32, 0, "1", WL, capacity, "Load-balancing weight."),
	FIELD("waypointFor", t_waypoint_for, CF_OMIT_UNSET, NULL, WL, waypoint_for,
	      "For a waypoint workload (`ambient waypoint --workload`): which traffic it takes, "
	      "as Istio's `istio.io/waypoint-for` label; absent means `service`. The services "
	      "naming it as `waypoint` need `service` or `all`, the workloads `workload` or "
	      "`all`."),
	FIELD("locality", t_locality, 0, "{}", WL, locality, "Topology."),
	FIELD("clusterId", t_string, 0, "Kubernetes", WL, cluster_id, "Cluster name."),
	FIELD("workloadName", t_string, 0, "", WL, workload_name, "Telemetry: owning workload."),
	FIELD("workloadType", t_string, 0, "", WL, workload_type,
	      "Telemetry: lowercase kind, e.g. `deployment`."),
	FIELD("canonicalName", t_string, 0, "", WL, canonical_name,
	      "Telemetry: canonical service."),
	FIELD("canonicalRevision", t_string, 0, "", WL, canonical_revision,
	      "Telemetry: canonical revision."),
};
#undef WL
static const struct cfg_type t_workload = {
	OBJECT_TYPE("Workload", struct config_workload, f_workload,
		    "A pod, VM or process that has an identity and addresses."),
	.post = workload_post,
};

/* LoadBalancer */
static const struct cfg_field f_lb[] = {
	LIST("routingPreferences", t_lb_scope_list, 0, "[]", struct config_load_balancer,
	     routing_preferences, "Locality scopes to prefer, most important first."),
	FIELD("mode", t_lb_mode, 0, "Standard", struct config_load_balancer, mode,
	      "`Strict`: only endpoints matching every scope; `Failover`: best match first; "
	      "`Passthrough`: no endpoint selection."),
	FIELD("healthPolicy", t_lb_health, 0, "OnlyHealthy", struct config_load_balancer,
	      health_policy, "`AllowAll` also sends to unhealthy endpoints."),
};
static const struct cfg_type t_lb = {
	OBJECT_TYPE("LoadBalancer", struct config_load_balancer, f_lb,
		    "Endpoint selection for a service. ztunnel requires all three keys; here they "
		    "have defaults."),
	.has_present = true,
	.present_off = offsetof(struct config_load_balancer, present),
};

/* Service */
#define SV struct config_service
static const struct cfg_field f_service[] = {
	FIELD("name", t_nonempty, CF_REQUIRED, NULL, SV, name, "Service name."),
	FIELD("namespace", t_segment, CF_REQUIRED, NULL, SV, namespace, "Namespace."),
	FIELD("hostname", t_hostname, CF_REQUIRED, NULL, SV, hostname,
	      "FQDN; `namespace/hostname` is the service's key."),
	LIST("vips", t_netaddr_list, 0, "[]", SV, vips,
	     "Virtual IPs (ztunnel requires the key; `[]` is a headless service)."),
	LIST("ports", t_port_map, CF_REQUIRED, NULL, SV, ports,
	     "`{\"<servicePort>\": <targetPort>}`."),
	LIST("subjectAltNames", t_string_list, 0, "[]", SV, subject_alt_names,
	     "Extra identities accepted for any endpoint, e.g. "
	     "`spiffe://cluster.local/ns/x/sa/y`."),
	FIELD("waypoint", t_gateway, CF_OMIT_UNSET, NULL, SV, waypoint,
	      "Waypoint that traffic to the service's VIPs goes through."),
	FIELD("loadBalancer", t_lb, CF_OMIT_UNSET, NULL, SV, load_balancer, "Endpoint selection."),
	FIELD("ipFamilies", t_ip_families, CF_OMIT_UNSET, NULL, SV, ip_families,
	      "Absent means automatic."),
	FIELD("canonical", t_bool, 0, "false", SV, canonical,
	      "Wins hostname lookups when no service of the caller's namespace has the hostname."),
	LIST("appProtocols", t_app_protocol_map, CF_OMIT_UNSET, NULL, SV, app_protocols,
	     "`{\"<servicePort>\": \"TCP\"|\"HTTP\"|\"HTTP2\"}`: the port's appProtocol "
	     "(Kubernetes/Istio). A waypoint relays a `TCP` port's bytes without parsing HTTP "
	     "(L4 authorization only); absent, `HTTP` and `HTTP2`: HTTP/1.1 or HTTP/2 prior "
	     "knowledge. Every key must be one of `ports`."),
	UNSUPPORTED("endpoints", "not supported: endpoints come from the workloads' \"services\" "
				 "maps"),
	UNSUPPORTED("cidrVips", "not supported yet"),
	UNSUPPORTED("weightedWaypoints", "not supported yet"),
	UNSUPPORTED("visibility", "not supported yet"),
};
#undef SV
static const struct cfg_type t_service = {
	OBJECT_TYPE("Service", struct config_service, f_service,
		    "A named set of endpoints reachable by hostname and VIPs."),
	.post = service_post,
};

/* StringMatch: {"Exact": "x"} | {"Prefix": "x"} | {"Suffix": "x"} | {"Presence": []} */
static const struct cfg_field f_string_match[] = {
	FIELD("Exact", t_string, 0, NULL, struct config_string_match, value, "Equal to."),
	FIELD("Prefix", t_string, 0, NULL, struct config_string_match, value, "Starts with."),
	FIELD("Suffix", t_string, 0, NULL, struct config_string_match, value, "Ends with."),
	FIELD("Presence", t_empty, 0, NULL, struct config_string_match, value, "Non-empty."),
};
static const struct cfg_type t_string_match = {
	.kind = CFG_ONEOF,
	.name = "StringMatch",
	.size = sizeof(struct config_string_match),
	.fields = f_string_match,
	.nfields = ARRAY_LEN(f_string_match),
	.tag_off = offsetof(struct config_string_match, kind),
	.doc = "Exactly one of these keys (serde's externally tagged enum).",
};
static const struct cfg_type t_string_match_list = ARRAY_OF(t_string_match);

static const struct cfg_field f_sa_match[] = {
	FIELD("namespace", t_string, CF_REQUIRED, NULL, struct config_sa_match, namespace, ""),
	FIELD("serviceAccount", t_string, CF_REQUIRED, NULL, struct config_sa_match,
	      service_account, ""),
};
static const struct cfg_type t_sa_match = {
	OBJECT_TYPE("ServiceAccountMatch", struct config_sa_match, f_sa_match,
		    "Matches the namespace and service account of the source identity."),
};
static const struct cfg_type t_sa_match_list = ARRAY_OF(t_sa_match);

#define MT struct config_match
#define MATCH_LIST(nm, ty, mem, d) LIST(nm, ty, CF_OMIT_UNSET, "[]", MT, mem, d)
static const struct cfg_field f_match[] = {
	MATCH_LIST("namespaces", t_string_match_list, namespaces, "Source identity namespace."),
	MATCH_LIST("notNamespaces", t_string_match_list, not_namespaces,
		   "Negative: no element may match."),
	MATCH_LIST("serviceAccounts", t_sa_match_list, service_accounts,
		   "Source identity namespace and service account."),
	MATCH_LIST("notServiceAccounts", t_sa_match_list, not_service_accounts,
		   "Negative: no element may match."),
	MATCH_LIST("principals", t_string_match_list, principals,
		   "Source identity without `spiffe://`, e.g. `cluster.local/ns/a/sa/b`."),
	MATCH_LIST("notPrincipals", t_string_match_list, not_principals,
		   "Negative: no element may match."),
	MATCH_LIST("sourceIps", t_cidr_list, source_ips, "Source address."),
	MATCH_LIST("notSourceIps", t_cidr_list, not_source_ips, "Negative: no element may match."),
	MATCH_LIST("destinationIps", t_cidr_list, destination_ips, "Destination address."),
	MATCH_LIST("notDestinationIps", t_cidr_list, not_destination_ips,
		   "Negative: no element may match."),
	MATCH_LIST("destinationPorts", t_port_list, destination_ports, "Destination port."),
	MATCH_LIST("notDestinationPorts", t_port_list, not_destination_ports,
		   "Negative: no element may match."),
};
#undef MT
static const struct cfg_type t_match = {
	OBJECT_TYPE("Match", struct config_match, f_match,
		    "Every populated list must pass: a positive list when any element matches, a "
		    "`not*` list when none does. A Match with no lists never matches."),
	.post = match_post,
};
static const struct cfg_type t_clause = {
	.kind = CFG_ARRAY,
	.name = "array",
	.elem = &t_match,
	.size = sizeof(struct config_clause),
	.items_off = offsetof(struct config_clause, matches),
	.count_off = offsetof(struct config_clause, n_matches),
};
static const struct cfg_type t_rule = {
	.kind = CFG_ARRAY,
	.name = "array",
	.elem = &t_clause,
	.size = sizeof(struct config_rule),
	.items_off = offsetof(struct config_rule, clauses),
	.count_off = offsetof(struct config_rule, n_clauses),
};
static const struct cfg_type t_rules = ARRAY_OF(t_rule);

/* Policy (ztunnel's Authorization) */
#define PO struct config_policy
static const struct cfg_field f_policy[] = {
	FIELD("name", t_nonempty, CF_REQUIRED, NULL, PO, name, "Policy name."),
	FIELD("namespace", t_segment, CF_REQUIRED, NULL, PO, namespace,
	      "Namespace; `namespace/name` is the key workloads refer to."),
	FIELD("scope", t_scope, CF_REQUIRED, NULL, PO, scope,
	      "`Global`: every workload; `Namespace`: workloads of its namespace; "
	      "`WorkloadSelector`: workloads that list it in `authorizationPolicies`."),
	FIELD("action", t_action, CF_REQUIRED, NULL, PO, action,
	      "Any matching `Deny` rejects; if `Allow` policies apply, one must match."),
	FIELD("dryRun", t_bool, 0, "false", PO, dry_run,
	      "Evaluate and log only (ztunnel requires the key)."),
	LIST("rules", t_rules, CF_REQUIRED, NULL, PO, rules,
	     "`[[[Match]]]`: rules (any) of clauses (all) of matches (any). No rules: never "
	     "matches."),
};
#undef PO
static const struct cfg_type t_policy = {
	OBJECT_TYPE("Policy", struct config_policy, f_policy,
		    "An L4 authorization policy, ztunnel's `Authorization`."),
	.post = policy_post,
};

/* Top level */
static const struct cfg_type t_workload_list = ARRAY_OF(t_workload);
static const struct cfg_type t_service_list = ARRAY_OF(t_service);
static const struct cfg_type t_policy_list = ARRAY_OF(t_policy);
static const struct cfg_type t_raw_routes = {
	.kind = CFG_RAW, .name = "array of [HTTPRoute](#httproute)", .size = sizeof(cJSON *)};
static const struct cfg_type t_raw_l7 = {
	.kind = CFG_RAW,
	.name = "array of [AuthorizationPolicy](#authorizationpolicy)",
	.size = sizeof(cJSON *)};

#define MC struct config
static const struct cfg_field f_mesh[] = {
	LIST("workloads", t_workload_list, 0, "[]", MC, workloads, "Workloads."),
	/* Omitted from dumps when empty: "services": [] would switch the reference checks on. */
	LIST("services", t_service_list, CF_OMIT_UNSET, "[]", MC, services,
	     "Services (may be omitted; then workloads' service references are not checked)."),
	LIST("policies", t_policy_list, 0, "[]", MC, policies, "L4 authorization policies."),
	FIELD("routes", t_raw_routes, 0, "[]", MC, routes,
	      "Gateway API HTTPRoute objects for waypoints (dumped as given)."),
	FIELD("l7Policies", t_raw_l7, 0, "[]", MC, l7_policies,
	      "Istio AuthorizationPolicy objects with L7 fields for waypoints (dumped as "
	      "given)."),
};
#undef MC
const struct cfg_type cfg_mesh_type = {
	OBJECT_TYPE("MeshConfig", struct config, f_mesh, "The document: one JSON object."),
};

const struct cfg_type *const cfg_doc_types[] = {
	&cfg_mesh_type, &t_workload, &t_gateway, &t_app_tunnel,	  &t_locality, &t_service,
	&t_lb,		&t_policy,   &t_match,	 &t_string_match, &t_sa_match,
};
const size_t cfg_doc_ntypes = ARRAY_LEN(cfg_doc_types);

/* ---- per-object hooks: derived fields and object-level checks -------------------------------- */

static void workload_post(struct cfg_ctx *ctx, void *obj)
{
	struct config_workload *w = obj;

	if (!w->uid && w->namespace) {
		if (w->name && *w->name) {
			w->uid = cfg_sprintf(ctx->arena, "%s//v1/Pod/%s/%s", w->cluster_id,
					     w->namespace, w->name);
			w->uid_derived = true;
		} else {
			cfg_error(ctx, "missing required field \"uid\" (or \"name\" to derive it)");
		}
	}
	if (w->trust_domain && w->namespace && w->service_account)
		w->identity = cfg_sprintf(ctx->arena, "spiffe://%s/ns/%s/sa/%s", w->trust_domain,
					  w->namespace, w->service_account);
	for (size_t i = 0; i < w->n_services; i++) {
		struct config_workload_service *ws = &w->services[i];
		const char *slash = ws->key ? strchr(ws->key, '/') : NULL;
		if (!slash)
			continue;
		ws->namespace = cfg_strndup(ctx->arena, ws->key, (size_t)(slash - ws->key));
		ws->hostname = slash + 1;
	}
	if (w->namespace && w->n_workload_ips == 0 && w->hostname && !*w->hostname)
		cfg_error(ctx, "a workload needs \"workloadIps\" or \"hostname\"");
}

static void service_post(struct cfg_ctx *ctx, void *obj)
{
	struct config_service *s = obj;

	if (s->namespace && s->hostname)
		s->key = cfg_sprintf(ctx->arena, "%s/%s", s->namespace, s->hostname);
}

static void policy_post(struct cfg_ctx *ctx, void *obj)
{
	struct config_policy *p = obj;

	if (p->namespace && p->name)
		p->key = cfg_sprintf(ctx->arena, "%s/%s", p->namespace, p->name);
}

static void match_post(struct cfg_ctx *ctx, void *obj)
{
	const struct config_match *m = obj;

	if (!m->n_namespaces && !m->n_not_namespaces && !m->n_service_accounts &&
	    !m->n_not_service_accounts && !m->n_principals && !m->n_not_principals &&
	    !m->n_source_ips && !m->n_not_source_ips && !m->n_destination_ips &&
	    !m->n_not_destination_ips && !m->n_destination_ports && !m->n_not_destination_ports)
		cfg_warn(ctx, "empty match never matches (ztunnel skips it)");
}

/* ---- docs/config.md -------------------------------------------------------------------------- */

static const char doc_intro[] =
	"# Mesh config reference\n"
	"\n"
	"<!-- Generated from pkg/config/config_schema.c by config_schema_markdown(); "
	"`AMBIENT_UPDATE_DOCS=1 build/<out>/test/config_test docs` rewrites it, and the config "
	"unit test fails when it is stale. -->\n"
	"\n"
	"One JSON document describes the mesh for every process (DESIGN.md §3). Field names and "
	"enum spellings are those of ztunnel's local config, so configs translate 1:1. "
	"Differences from ztunnel: `trustDomain` defaults to `cluster.local`, `serviceAccount` to "
	"`default` and `clusterId` to `Kubernetes` (ztunnel's xDS defaults); `uid` may be derived; "
	"top-level `services` may be omitted; maps with integer keys use decimal strings "
	"(`{\"80\": 8080}`); a few keys ztunnel requires have defaults here (marked below); "
	"unknown keys are errors everywhere.\n"
	"\n"
	"## Syntax\n"
	"\n"
	"Strict JSON (RFC 8259): no comments, no trailing commas, no duplicate keys, valid UTF-8, "
	"no `\\u0000`; nesting at most 32 levels, size at most 64 MiB. Integers must be written "
	"as integers (`8080`, not `8080.0` or `8.08e3`). A syntax error is reported with line and "
	"column:\n"
	"\n"
	"    mesh.json:3:14: invalid JSON: trailing comma before '}'\n"
	"\n"
	"Everything else, including a key repeated within one object (`duplicate key`), is "
	"reported with the JSON path of the offending value, and all problems are reported at "
	"once:\n"
	"\n"
	"    mesh.json: .services[2].ports.\"70000\": port out of range 1..65535\n"
	"    mesh.json: .workloads[0].nmae: unknown field (did you mean \"name\"?)\n"
	"\n"
	"**Errors** reject the whole document (the previous snapshot stays in use). **Warnings** "
	"do not; they are kept with the snapshot and shown by `/config_dump` and `ambient ctl`.\n";

static const char doc_checks[] =
	"## Checks across fields\n"
	"\n"
	"| check | kind |\n"
	"|---|---|\n"
	"| two workloads with the same `uid` (given or derived) | error |\n"
	"| a workload without `uid` and without `name` | error |\n"
	"| a workload with neither `workloadIps` nor `hostname` | error |\n"
	"| the same IP twice on one network (workloads with `networkMode` `Standard`) | error |\n"
	"| two services with the same `namespace/hostname` | error |\n"
	"| the same VIP (`network/IP`) on two services, or twice on one | error |\n"
	"| a VIP that is also a workload IP on the same network | error |\n"
	"| two policies with the same `namespace/name` | error |\n"
	"| `authorizationPolicies` naming a policy that does not exist | error |\n"
	"| a workload `services` key naming a service that does not exist (only checked when "
	"`services` is given) | error |\n"
	"| a hostname-form `waypoint` naming a service that does not exist (only checked when "
	"`services` is given) | error |\n"
	"| `authorizationPolicies` naming a policy whose scope is not `WorkloadSelector` (it "
	"applies anyway) | warning |\n"
	"| a `WorkloadSelector` policy no workload lists (it applies nowhere) | warning |\n"
	"| a service no workload lists in `services` (no endpoints: connections to it fail) | "
	"warning |\n"
	"| a service port with `targetPort` 0 that none of its endpoints maps | warning |\n"
	"| a workload mapping a service port the service does not have | warning |\n"
	"| an address-form `waypoint` matching no workload IP or VIP | warning |\n"
	"| a route `parentRefs` / `backendRefs` entry naming a service that does not exist, or "
	"a port it does not have | error |\n"
	"| an `l7Policies` `targetRefs` entry naming a service (or, for `Gateway`, a waypoint "
	"workload) that does not exist | error |\n"
	"| a `waypoint` whose workload refuses that traffic by its `waypointFor`: named by a "
	"service, `workload` or `none`; named by a workload, `service` (also when absent) or "
	"`none` | error |\n"
	"| an `l7Policies` `targetRefs` `Service` that has no `waypoint` (nothing enforces the "
	"policy) | error |\n"
	"| an `l7Policies` `targetRefs` `Gateway` naming a workload that is no waypoint (no "
	"service or workload names it as `waypoint`, and its `waypointFor` is absent or "
	"`none`) | error |\n"
	"| an `l7Policies` operation with HTTP fields (`hosts`, `methods`, `paths` or their "
	"`not*`), or a `request.headers[...]` condition, where every port it applies to has "
	"`appProtocols` `TCP` | error |\n"
	"| two routes with the same `namespace/name` | error |\n"
	"| a bad regular expression, duration, weight (0..1000000), redirect status or path "
	"template | error |\n"
	"| a Match with no lists (never matches) | warning |\n"
	"\n"
	"Istio allows services without endpoints (a deployment scaled to zero), so that is a "
	"warning, not an error.\n";

static const char doc_l7[] =
	"\n## Waypoint objects\n"
	"\n"
	"`routes` and `l7Policies` hold Kubernetes objects in the JSON shape `kubectl get -o json` "
	"prints (`apiVersion`, `kind`, `status` and bookkeeping metadata are accepted and "
	"ignored). Path and header regular expressions are **POSIX extended** (libc `regcomp`), "
	"not RE2 as in Envoy: most simple expressions behave the same, but RE2-only syntax such "
	"as `\\d` or `(?i)` is rejected or means something else. A path `RegularExpression` "
	"must match the whole path. Reference checks: every `parentRefs` and `backendRefs` "
	"service, and every `targetRefs` service (or waypoint workload for `Gateway`), must "
	"exist (errors).\n"
	"\n"
	"Enforcement checks (errors), so that no policy is silently not applied. A waypoint "
	"reference (`waypoint.destination`) stands for the workloads ztunnel sends the traffic "
	"to: the endpoints of the service it names (`namespace/hostname`, or an address that is "
	"a VIP), else the workload at that address; every one of them must take the traffic by "
	"its `waypointFor` (services need `service`, the default, or `all`; workloads need "
	"`workload` or `all`). An `l7Policies` target must be enforced by a waypoint: a "
	"`Service` needs a `waypoint`; a `Gateway` must name a waypoint workload (one that a "
	"service or workload names as `waypoint`, or whose `waypointFor` is `service`, "
	"`workload` or `all`). HTTP fields cannot be matched on a port with `appProtocols` "
	"`TCP` (the waypoint relays its bytes): an operation with `hosts`, `methods`, `paths` "
	"or their `not*` is rejected when every port it applies to is such a port, and so is a "
	"`request.headers[...]` condition when every port its rule's operations apply to is. "
	"The ports a policy applies to are those of its `Service` targets, or for a `Gateway` "
	"target those of every service naming that waypoint, narrowed by the operation's "
	"`ports` / `notPorts` (not by `when` `destination.port`); a `Gateway` target whose "
	"`waypointFor` is `workload` or `all` also sees workload-addressed traffic, which is "
	"always HTTP, so it is never rejected this way. Where only some ports are TCP, the "
	"runtime rule applies there (docs/waypoint.md, TCP ports).\n";

static int md_type(struct buf *out, const struct cfg_type *t);

static bool is_doc_object(const struct cfg_type *t)
{
	return t->kind == CFG_OBJECT || t->kind == CFG_ONEOF;
}

static int md_anchor_link(struct buf *out, const char *name)
{
	char anchor[64];
	size_t i;

	for (i = 0; name[i] && i + 1 < sizeof(anchor); i++)
		anchor[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
	anchor[i] = '\0';
	return buf_printf(out, "[%s](#%s)", name, anchor);
}

static int md_type(struct buf *out, const struct cfg_type *t)
{
	int rc = 0;

	switch (t->kind) {
	case CFG_OBJECT:
	case CFG_ONEOF: return md_anchor_link(out, t->name);
	case CFG_ARRAY:
		rc = buf_append_str(out, "array of ");
		return rc < 0 ? rc : md_type(out, t->elem);
	case CFG_MAP:
		if ((rc = buf_append_str(out, "map of ")) < 0 || (rc = md_type(out, t->key)) < 0 ||
		    (rc = buf_append_str(out, " to ")) < 0)
			return rc;
		return md_type(out, t->elem);
	case CFG_ENUM:
		for (unsigned i = 0; i < t->nvalues && rc >= 0; i++)
			rc = buf_printf(out, "%s`%s`", i ? ", " : "", t->values[i]);
		return rc;
	case CFG_UINT: return buf_printf(out, "%s", t->name);
	default: return buf_printf(out, "%s", t->name);
	}
}

static int md_default(struct buf *out, const struct cfg_field *f)
{
	if (!f->def)
		return 0;
	if (f->type->kind == CFG_STRING)
		return buf_printf(out, "`\"%s\"`", f->def);
	return buf_printf(out, "`%s`", f->def);
}

static int md_object(struct buf *out, const struct cfg_type *t)
{
	int rc = buf_printf(out,
			    "\n### %s\n\n%s\n\n| field | type | required | default | "
			    "description |\n|---|---|---|---|---|\n",
			    t->name, t->doc);

	for (size_t i = 0; i < t->nfields && rc >= 0; i++) {
		const struct cfg_field *f = &t->fields[i];
		if (f->flags & CF_UNSUPPORTED) {
			rc = buf_printf(out, "| `%s` | — | | | %s |\n", f->name, f->doc);
			continue;
		}
		if (f->flags & CF_IGNORED) {
			rc = buf_printf(out, "| `%s` | any | | | %s |\n", f->name, f->doc);
			continue;
		}
		if ((rc = buf_printf(out, "| `%s` | ", f->name)) < 0 ||
		    (rc = md_type(out, f->type)) < 0 ||
		    (rc = buf_printf(out, " | %s | ", (f->flags & CF_REQUIRED) ? "yes" : "")) < 0 ||
		    (rc = md_default(out, f)) < 0)
			return rc;
		rc = buf_printf(out, " | %s |\n", f->doc ? f->doc : "");
	}
	return rc;
}

int config_schema_markdown(struct buf *out)
{
	int rc = buf_append_str(out, doc_intro);

	if (rc >= 0)
		rc = buf_append_str(out, "\n## Objects\n");
	for (size_t i = 0; i < cfg_doc_ntypes && rc >= 0; i++)
		if (is_doc_object(cfg_doc_types[i]))
			rc = md_object(out, cfg_doc_types[i]);
	if (rc >= 0)
		rc = buf_append_str(out, doc_l7);
	for (size_t i = 0; i < cfg_l7_doc_ntypes && rc >= 0; i++)
		rc = md_object(out, cfg_l7_doc_types[i]);
	if (rc >= 0)
		rc = buf_append_str(
			out, "\n## Value formats\n\n| format | accepted text |\n|---|---|\n");
	for (size_t i = 0; i < ARRAY_LEN(leaf_types) && rc >= 0; i++)
		rc = buf_printf(out, "| %s | %s |\n", leaf_types[i]->name, leaf_types[i]->doc);
	if (rc >= 0)
		rc = buf_printf(out, "\n%s", doc_checks);
	return rc < 0 ? rc : 0;
}
