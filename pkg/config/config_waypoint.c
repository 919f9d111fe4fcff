/* Waypoint cross-checks at load: `waypointFor` against the services and workloads that name a
 * waypoint, and `l7Policies` whose target cannot enforce them (no waypoint behind the target, a
 * Gateway target that is no waypoint, HTTP fields on ports the waypoint relays as TCP bytes).
 *
 * A waypoint reference (GatewayAddress) resolves the way ztunnel routes to it (pkg/proxy): the
 * endpoints of the service it names ("ns/hostname", or an address that is a service VIP), else
 * the one workload at its address. */
#include "pkg/config/config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- waypoint members ------------------------------------------------------------------------ */

struct wp_members {
	const struct config_service *svc; /* members = its endpoints */
	const struct config_workload *one;
};

static void wp_resolve(const struct config *c, const struct config_gateway *g, struct wp_members *m)
{
	const struct config_gateway_dest *d = &g->destination;

	memset(m, 0, sizeof(*m));
	if (!g->present)
		return;
	if (d->kind == CONFIG_GATEWAY_HOSTNAME) {
		if (d->namespace && d->hostname)
			m->svc = config_service_by_key(c, d->namespace, d->hostname);
		return;
	}
	if (!d->address.ip.family)
		return; /* invalid address: reported already */
	m->svc = config_service_by_vip(c, d->address.network ? d->address.network : "",
				       &d->address.ip);
	if (!m->svc)
		m->one = config_workload_by_ip(c, d->address.network ? d->address.network : "",
					       &d->address.ip);
}

static size_t wp_count(const struct wp_members *m)
{
	return m->svc ? m->svc->n_endpoints : m->one ? 1 : 0;
}

static const struct config_workload *wp_member(const struct wp_members *m, size_t i)
{
	return m->svc ? m->svc->endpoints[i].workload : m->one;
}

static bool takes_service_traffic(enum config_waypoint_for f)
{
	return f == CONFIG_WAYPOINT_FOR_UNSET || f == CONFIG_WAYPOINT_FOR_SERVICE ||
	       f == CONFIG_WAYPOINT_FOR_ALL;
}

static bool takes_workload_traffic(enum config_waypoint_for f)
{
	return f == CONFIG_WAYPOINT_FOR_WORKLOAD || f == CONFIG_WAYPOINT_FOR_ALL;
}

static const char *waypoint_for_name(enum config_waypoint_for f)
{
	switch (f) {
	case CONFIG_WAYPOINT_FOR_SERVICE: return "service";
	case CONFIG_WAYPOINT_FOR_WORKLOAD: return "workload";
	case CONFIG_WAYPOINT_FOR_ALL: return "all";
	case CONFIG_WAYPOINT_FOR_NONE: return "none";
	default: return "service (the default)";
	}
}

static void dest_format(const struct config_gateway_dest *d, char *out, size_t cap)
{
	if (d->kind == CONFIG_GATEWAY_HOSTNAME)
		snprintf(out, cap, "%s/%s", d->namespace ? d->namespace : "",
			 d->hostname ? d->hostname : "");
	else
		cfg_netaddr_format(&d->address, out, cap);
}

static const char *wl_name(const struct config_workload *w)
{
	return w->name && *w->name ? w->name : w->uid ? w->uid : "";
}

/* ---- waypointFor against the services and workloads naming a waypoint ----------------------- */

/* The first member of g that refuses this kind of traffic (service: a VIP; else a workload
 * address), or NULL. */
static const struct config_workload *refusing_member(const struct config *c,
						     const struct config_gateway *g, bool service)
{
	struct wp_members m;

	wp_resolve(c, g, &m);
	for (size_t i = 0; i < wp_count(&m); i++) {
		const struct config_workload *w = wp_member(&m, i);
		if (!(service ? takes_service_traffic(w->waypoint_for)
			      : takes_workload_traffic(w->waypoint_for)))
			return w;
	}
	return NULL;
}

static void check_waypoint_for(struct cfg_ctx *ctx, const struct config *c,
			       const struct config_gateway *g, bool service, const char *kind,
			       size_t index)
{
	const struct config_workload *w = refusing_member(c, g, service);
	char dest[CONFIG_IP_STRLEN + 320];
	struct json_path p;

	if (!w)
		return;
	dest_format(&g->destination, dest, sizeof(dest));
	json_path_init(&p);
	json_path_push_key(&p, kind);
	json_path_push_index(&p, index);
	json_path_push_key(&p, "waypoint");
	json_path_push_key(&p, "destination");
	cfg_error_at(ctx, json_path_str(&p),
		     "waypoint \"%s\" is workload \"%s/%s\" (.workloads[%zu]), whose waypointFor "
		     "is %s: it refuses %s traffic, so every connection to this %s would fail; set "
		     "the waypoint's \"waypointFor\" to \"%s\" or \"all\"",
		     dest, w->namespace ? w->namespace : "", wl_name(w), w->index,
		     waypoint_for_name(w->waypoint_for), service ? "service" : "workload",
		     service ? "service" : "workload", service ? "service" : "workload");
}

/* ---- l7Policies targets ---------------------------------------------------------------------- */

/* Whether workload w is a member of some waypoint a service or workload names. */
static bool named_as_waypoint(const struct config *c, const struct config_workload *w)
{
	struct wp_members m;

	for (size_t i = 0; i < c->n_services; i++) {
		wp_resolve(c, &c->services[i].waypoint, &m);
		for (size_t k = 0; k < wp_count(&m); k++)
			if (wp_member(&m, k) == w)
				return true;
	}
	for (size_t i = 0; i < c->n_workloads; i++) {
		wp_resolve(c, &c->workloads[i].waypoint, &m);
		for (size_t k = 0; k < wp_count(&m); k++)
			if (wp_member(&m, k) == w)
				return true;
	}
	return false;
}

/* The workloads a Gateway targetRef names (matched as pkg/l7 does: name or workloadName). */
static bool gateway_match(const struct config_workload *w, const char *ns, const char *name)
{
	return w->namespace && strcmp(w->namespace, ns) == 0 &&
	       ((w->name && strcmp(w->name, name) == 0) ||
		(w->workload_name && strcmp(w->workload_name, name) == 0));
}

/* The ports a policy applies to, for the TCP check: (service, port) pairs, and whether traffic
 * the waypoint parses as HTTP whatever the config says (workload-addressed) is included. */
struct target_ports {
	const struct config_service **svc;
	uint16_t *port;
	size_t n, cap;
	bool http_any;
	bool unknown; /* a target could not be resolved: no TCP check */
};

static void tp_add_service(struct target_ports *tp, const struct config_service *s)
{
	for (size_t i = 0; i < s->n_ports; i++) {
		for (size_t k = 0; k < tp->n; k++)
			if (tp->svc[k] == s && tp->port[k] == s->ports[i].service_port)
				goto next;
		if (tp->n == tp->cap) {
			tp->cap = tp->cap ? 2 * tp->cap : 8;
			tp->svc = xrealloc(tp->svc, tp->cap * sizeof(*tp->svc));
			tp->port = xrealloc(tp->port, tp->cap * sizeof(*tp->port));
		}
		tp->svc[tp->n] = s;
		tp->port[tp->n++] = s->ports[i].service_port;
	next:;
	}
}

/* Adds the ports of every service whose waypoint has a member matching the Gateway target. */
static void tp_add_gateway(struct target_ports *tp, const struct config *c, const char *ns,
			   const char *name)
{
	struct wp_members m;

	for (size_t i = 0; i < c->n_workloads; i++)
		if (gateway_match(&c->workloads[i], ns, name) &&
		    takes_workload_traffic(c->workloads[i].waypoint_for))
			tp->http_any = true;
	for (size_t i = 0; i < c->n_services; i++) {
		wp_resolve(c, &c->services[i].waypoint, &m);
		for (size_t k = 0; k < wp_count(&m); k++) {
			if (gateway_match(wp_member(&m, k), ns, name)) {
				tp_add_service(tp, &c->services[i]);
				break;
			}
		}
	}
}

static const char *ns_or(const char *ns, const char *dflt)
{
	return ns && *ns ? ns : dflt;
}

static void target_path(struct json_path *p, const struct config_l7_policy *po, size_t k)
{
	json_path_init(p);
	json_path_push_key(p, "l7Policies");
	json_path_push_index(p, po->index);
	json_path_push_key(p, "spec");
	json_path_push_key(p, "targetRefs");
	json_path_push_index(p, k);
}

/* One targetRef: reports a target nothing enforces, and collects the ports it applies to. */
static void check_target(struct cfg_ctx *ctx, const struct config *c,
			 const struct config_l7_policy *po, size_t k, struct target_ports *tp)
{
	const struct config_target_ref *t = &po->spec.target_refs[k];
	const char *ns =
		ns_or(t->namespace, po->metadata.namespace ? po->metadata.namespace : "default");
	const struct config_service *s;
	const struct config_workload *w = NULL;
	struct json_path p;
	bool waypoint = false;

	if (!t->name) {
		tp->unknown = true;
		return;
	}
	if (t->kind == CONFIG_TARGET_SERVICE) {
		s = config_service_by_name(c, ns, t->name);
		if (!s) {
			tp->unknown = true; /* "unknown target service", reported already */
			return;
		}
		if (s->waypoint.present) {
			tp_add_service(tp, s);
			return;
		}
		tp->unknown = true;
		target_path(&p, po, k);
		cfg_error_at(
			ctx, json_path_str(&p),
			"service \"%s/%s\" has no waypoint, so nothing enforces this policy "
			"(l7Policies apply only at a waypoint; traffic to the service goes "
			"straight to its endpoints); give the service a \"waypoint\" or remove "
			"this targetRef",
			ns, t->name);
		return;
	}
	for (size_t i = 0; i < c->n_workloads && !waypoint; i++) {
		const struct config_workload *x = &c->workloads[i];
		if (!gateway_match(x, ns, t->name))
			continue;
		w = w ? w : x;
		waypoint = x->waypoint_for == CONFIG_WAYPOINT_FOR_SERVICE ||
			   takes_workload_traffic(x->waypoint_for) || named_as_waypoint(c, x);
	}
	if (!w) {
		tp->unknown = true; /* "unknown target waypoint", reported already */
		return;
	}
	if (waypoint) {
		tp_add_gateway(tp, c, ns, t->name);
		return;
	}
	tp->unknown = true;
	target_path(&p, po, k);
	cfg_error_at(ctx, json_path_str(&p),
		     "workload \"%s/%s\" is not a waypoint (no service or workload names it as "
		     "its \"waypoint\", and its waypointFor is %s), so nothing enforces this "
		     "policy; name it in the \"waypoint\" of the services or workloads it serves, "
		     "or target their waypoint",
		     ns, t->name,
		     w->waypoint_for == CONFIG_WAYPOINT_FOR_NONE ? "none" : "not given");
}

/* ---- HTTP fields on TCP ports ---------------------------------------------------------------- */

static bool port_in(const char **list, size_t n, uint16_t port)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] && strtoul(list[i], NULL, 10) == port)
			return true;
	return false;
}

static bool op_selects(const struct config_l7_operation *o, uint16_t port)
{
	return (!o->n_ports || port_in(o->ports, o->n_ports, port)) &&
	       !port_in(o->not_ports, o->n_not_ports, port);
}

/* HTTP-only fields of o (those pkg/l7 cannot evaluate on a TCP port), as "methods, paths". */
static size_t op_http_fields(const struct config_l7_operation *o, char *out, size_t cap)
{
	static const char *const names[] = {"hosts",	  "notHosts", "methods",
					    "notMethods", "paths",    "notPaths"};
	size_t counts[] = {o->n_hosts,	     o->n_not_hosts, o->n_methods,
			   o->n_not_methods, o->n_paths,     o->n_not_paths};
	size_t n = 0, len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		if (!counts[i])
			continue;
		len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s%s", n ? ", " : "",
					names[i]);
		if (len >= cap)
			len = cap - 1;
		n++;
	}
	return n;
}

/* Marks in sel[] the target ports rule r's operation o (NULL: no `to`) can apply to; returns
 * whether there is one and every one is TCP. */
static bool only_tcp(const struct target_ports *tp, const struct config_l7_operation *o, bool *sel)
{
	size_t n = 0;
	bool tcp = true;

	for (size_t i = 0; i < tp->n; i++) {
		if (o && !op_selects(o, tp->port[i]))
			continue;
		sel[i] = true;
		n++;
		tcp &= config_service_app_protocol(tp->svc[i], tp->port[i]) ==
		       CONFIG_APP_PROTOCOL_TCP;
	}
	return n > 0 && tcp;
}

/* "ns/name:9000, ns/name:9001" for the selected ports (at most three, then "..."). */
static void ports_format(const struct target_ports *tp, const bool *sel, char *out, size_t cap)
{
	size_t len = 0, n = 0;

	out[0] = '\0';
	for (size_t i = 0; i < tp->n && len < cap; i++) {
		if (!sel[i])
			continue;
		if (n++ == 3) {
			snprintf(out + len, cap - len, ", ...");
			break;
		}
		len += (size_t)snprintf(out + len, cap - len, "%s%s/%s:%u", n > 1 ? ", " : "",
					tp->svc[i]->namespace, tp->svc[i]->name, tp->port[i]);
	}
}

static const char *tcp_effect(enum config_l7_action a)
{
	switch (a) {
	case CONFIG_L7_ALLOW: return "this ALLOW rule cannot match a TCP connection";
	case CONFIG_L7_DENY:
		return "this DENY rule ignores them and denies every connection it otherwise "
		       "matches";
	default:
		return "this AUDIT rule ignores them and logs every connection it otherwise "
		       "matches";
	}
}

static void tcp_error(struct cfg_ctx *ctx, const struct config_l7_policy *po, size_t r,
		      const char *key, size_t i, const char *sub, const char *fields,
		      const char *remedy, const struct target_ports *tp, const bool *sel)
{
	struct json_path p;
	char ports[256];

	ports_format(tp, sel, ports, sizeof(ports));
	json_path_init(&p);
	json_path_push_key(&p, "l7Policies");
	json_path_push_index(&p, po->index);
	json_path_push_key(&p, "spec");
	json_path_push_key(&p, "rules");
	json_path_push_index(&p, r);
	json_path_push_key(&p, key);
	json_path_push_index(&p, i);
	if (sub)
		json_path_push_key(&p, sub);
	cfg_error_at(ctx, json_path_str(&p),
		     "%s cannot be enforced: every port this applies to has appProtocols TCP (%s), "
		     "which the waypoint relays as bytes without seeing HTTP, and %s; %s",
		     fields, ports, tcp_effect(po->spec.action), remedy);
}

static void check_tcp_rule(struct cfg_ctx *ctx, const struct config_l7_policy *po, size_t r,
			   const struct target_ports *tp, bool *sel, bool *any)
{
	const struct config_l7_rule *ru = &po->spec.rules[r];
	char fields[96];

	/* Each `to` with HTTP fields, on the ports it selects. */
	memset(any, 0, tp->n * sizeof(*any));
	for (size_t i = 0; i < ru->n_to; i++) {
		const struct config_l7_operation *o = &ru->to[i].operation;
		memset(sel, 0, tp->n * sizeof(*sel));
		if (only_tcp(tp, o, sel) && op_http_fields(o, fields, sizeof(fields)))
			tcp_error(ctx, po, r, "to", i, "operation", fields,
				  "remove them, or limit \"ports\" to HTTP ports", tp, sel);
		for (size_t k = 0; k < tp->n; k++)
			any[k] |= sel[k];
	}
	/* Header conditions, on the ports any `to` selects (every port without `to`). */
	for (size_t i = 0; i < ru->n_when; i++) {
		const char *key = ru->when[i].key;
		bool tcp = true;
		size_t n = 0;
		if (!key || strncmp(key, "request.headers[", 16) != 0)
			continue;
		if (!ru->n_to) {
			memset(any, 0, tp->n * sizeof(*any));
			(void)only_tcp(tp, NULL, any);
		}
		for (size_t k = 0; k < tp->n; k++) {
			if (!any[k])
				continue;
			n++;
			tcp &= config_service_app_protocol(tp->svc[k], tp->port[k]) ==
			       CONFIG_APP_PROTOCOL_TCP;
		}
		if (n && tcp)
			tcp_error(ctx, po, r, "when", i, NULL, "a request.headers condition",
				  "remove it, or limit the rule's \"ports\" to HTTP ports", tp,
				  any);
	}
}

static void check_policy(struct cfg_ctx *ctx, const struct config *c,
			 const struct config_l7_policy *po)
{
	struct target_ports tp = {0};

	for (size_t k = 0; k < po->spec.n_target_refs; k++)
		check_target(ctx, c, po, k, &tp);
	/* Decidable only when every target is known and none takes HTTP-only traffic. */
	if (!tp.unknown && !tp.http_any && tp.n) {
		bool *sel = xcalloc(tp.n, sizeof(bool)), *any = xcalloc(tp.n, sizeof(bool));
		for (size_t r = 0; r < po->spec.n_rules; r++)
			check_tcp_rule(ctx, po, r, &tp, sel, any);
		free(sel);
		free(any);
	}
	free(tp.svc);
	free(tp.port);
}

void cfg_check_waypoints(struct cfg_ctx *ctx, struct config *c)
{
	for (size_t i = 0; i < c->n_services; i++)
		check_waypoint_for(ctx, c, &c->services[i].waypoint, true, "services", i);
	for (size_t i = 0; i < c->n_workloads; i++)
		check_waypoint_for(ctx, c, &c->workloads[i].waypoint, false, "workloads", i);
	for (size_t i = 0; i < c->n_l7_list; i++)
		check_policy(ctx, c, &c->l7_list[i]);
}
