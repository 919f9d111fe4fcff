/* Cross-field checks over a decoded document: duplicate keys and addresses, references between
 * workloads, services and policies, derived endpoints, and the indexes they are built on. */
#include "pkg/config/config_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Builds a path from a spec of 'k' (key, const char *) and 'i' (index, size_t) components. */
static const char *mkpath(struct json_path *p, const char *spec, ...)
{
	va_list ap;

	json_path_init(p);
	va_start(ap, spec);
	for (const char *s = spec; *s; s++) {
		if (*s == 'k')
			json_path_push_key(p, va_arg(ap, const char *));
		else
			json_path_push_index(p, va_arg(ap, size_t));
	}
	va_end(ap);
	return json_path_str(p);
}

/* The (network, ip) key in arena memory, for index insertion. */
static char *ip_key(struct cfg_arena *a, const char *network, const struct config_ip *ip,
		    size_t *len)
{
	size_t n = cfg_ip_key(NULL, 0, network ? network : "", ip);
	char *k = cfg_alloc(a, n);

	cfg_ip_key(k, n, network ? network : "", ip);
	*len = n;
	return k;
}

static bool indexed_by_ip(const struct config_workload *w)
{
	return w->network_mode == CONFIG_NETWORK_MODE_STANDARD;
}

/* ---- indexes with duplicate detection -------------------------------------------------------- */

static void index_workloads(struct cfg_ctx *ctx, struct config *c)
{
	struct json_path p, q;
	size_t nips = 0;

	cfg_map_init(&c->by_uid, ctx->arena, c->n_workloads);
	cfg_map_init(&c->by_node, ctx->arena, c->n_workloads);
	for (size_t i = 0; i < c->n_workloads; i++) {
		struct config_workload *w = &c->workloads[i];
		const struct config_workload *prev;
		w->index = i;
		nips += w->n_workload_ips;
		if (!w->uid)
			continue;
		prev = cfg_map_put(&c->by_uid, w->uid, strlen(w->uid), w);
		if (!prev)
			continue;
		cfg_error_at(ctx,
			     w->uid_derived ? mkpath(&p, "ki", "workloads", i)
					    : mkpath(&p, "kik", "workloads", i, "uid"),
			     "duplicate uid \"%s\"%s (first at %s)", w->uid,
			     w->uid_derived ? ", derived from namespace and name" : "",
			     mkpath(&q, "ki", "workloads", prev->index));
	}

	for (size_t i = 0; i < c->n_workloads; i++) {
		const struct config_workload *w = &c->workloads[i];
		if (w->node)
			cfg_list_count(&c->by_node, ctx->arena, w->node, strlen(w->node));
	}
	cfg_list_alloc(&c->by_node, ctx->arena);
	for (size_t i = 0; i < c->n_workloads; i++) {
		const struct config_workload *w = &c->workloads[i];
		if (w->node)
			cfg_list_add(&c->by_node, w->node, strlen(w->node), w);
	}

	cfg_map_init(&c->by_ip, ctx->arena, nips);
	for (size_t i = 0; i < c->n_workloads; i++) {
		const struct config_workload *w = &c->workloads[i];
		if (!indexed_by_ip(w))
			continue;
		for (size_t k = 0; k < w->n_workload_ips; k++) {
			size_t klen, m = 0;
			char *key;
			const struct config_workload *prev;
			char ip[CONFIG_IP_STRLEN];

			if (!w->workload_ips[k].family)
				continue; /* invalid: already reported */
			key = ip_key(ctx->arena, w->network, &w->workload_ips[k], &klen);
			prev = cfg_map_put(&c->by_ip, key, klen, (void *)w);
			if (!prev)
				continue;
			while (m < prev->n_workload_ips &&
			       !config_ip_equal(&prev->workload_ips[m], &w->workload_ips[k]))
				m++;
			config_ip_format(&w->workload_ips[k], ip, sizeof(ip));
			if (w->network && *w->network)
				cfg_error_at(ctx,
					     mkpath(&p, "kiki", "workloads", i, "workloadIps", k),
					     "duplicate IP %s on network \"%s\" (first at %s)", ip,
					     w->network,
					     mkpath(&q, "kiki", "workloads", prev->index,
						    "workloadIps", m));
			else
				cfg_error_at(ctx,
					     mkpath(&p, "kiki", "workloads", i, "workloadIps", k),
					     "duplicate IP %s (first at %s)", ip,
					     mkpath(&q, "kiki", "workloads", prev->index,
						    "workloadIps", m));
		}
	}
}

static void index_services(struct cfg_ctx *ctx, struct config *c)
{
	struct json_path p, q;
	size_t nvips = 0;

	cfg_map_init(&c->by_svc_key, ctx->arena, c->n_services);
	cfg_map_init(&c->by_hostname, ctx->arena, c->n_services);
	for (size_t i = 0; i < c->n_services; i++) {
		struct config_service *s = &c->services[i];
		const struct config_service *prev;
		s->index = i;
		nvips += s->n_vips;
		if (!s->key)
			continue;
		prev = cfg_map_put(&c->by_svc_key, s->key, strlen(s->key), s);
		if (prev)
			cfg_error_at(ctx, mkpath(&p, "ki", "services", i),
				     "duplicate service \"%s\" (first at %s)", s->key,
				     mkpath(&q, "ki", "services", prev->index));
		cfg_list_count(&c->by_hostname, ctx->arena, s->hostname, strlen(s->hostname));
	}
	cfg_list_alloc(&c->by_hostname, ctx->arena);
	for (size_t i = 0; i < c->n_services; i++) {
		const struct config_service *s = &c->services[i];
		if (s->key)
			cfg_list_add(&c->by_hostname, s->hostname, strlen(s->hostname), s);
	}

	cfg_map_init(&c->by_vip, ctx->arena, nvips);
	for (size_t i = 0; i < c->n_services; i++) {
		const struct config_service *s = &c->services[i];
		for (size_t k = 0; k < s->n_vips; k++) {
			const struct config_netaddr *va = &s->vips[k];
			size_t klen, m = 0;
			char *key;
			const struct config_service *prev;
			const struct config_workload *w;
			char vip[CONFIG_IP_STRLEN + 320];

			if (!va->ip.family)
				continue; /* invalid: already reported */
			key = ip_key(ctx->arena, va->network, &va->ip, &klen);
			prev = cfg_map_put(&c->by_vip, key, klen, (void *)s);
			w = cfg_map_get(&c->by_ip, key, klen);
			cfg_netaddr_format(va, vip, sizeof(vip));
			if (prev) {
				while (m < prev->n_vips &&
				       !(config_ip_equal(&prev->vips[m].ip, &va->ip) &&
					 strcmp(prev->vips[m].network, va->network) == 0))
					m++;
				cfg_error_at(
					ctx, mkpath(&p, "kiki", "services", i, "vips", k),
					"duplicate VIP \"%s\" (first at %s)", vip,
					mkpath(&q, "kiki", "services", prev->index, "vips", m));
			}
			if (w) {
				m = 0;
				while (m < w->n_workload_ips &&
				       !config_ip_equal(&w->workload_ips[m], &va->ip))
					m++;
				cfg_error_at(ctx, mkpath(&p, "kiki", "services", i, "vips", k),
					     "VIP \"%s\" is also a workload IP (%s)", vip,
					     mkpath(&q, "kiki", "workloads", w->index,
						    "workloadIps", m));
			}
		}
	}
}

static void index_policies(struct cfg_ctx *ctx, struct config *c)
{
	struct json_path p, q;
	size_t nglobal = 0;

	cfg_map_init(&c->by_policy_key, ctx->arena, c->n_policies);
	cfg_map_init(&c->policies_by_ns, ctx->arena, c->n_policies);
	for (size_t i = 0; i < c->n_policies; i++) {
		struct config_policy *po = &c->policies[i];
		const struct config_policy *prev;
		po->index = i;
		if (!po->key)
			continue;
		prev = cfg_map_put(&c->by_policy_key, po->key, strlen(po->key), po);
		if (prev)
			cfg_error_at(ctx, mkpath(&p, "ki", "policies", i),
				     "duplicate policy \"%s\" (first at %s)", po->key,
				     mkpath(&q, "ki", "policies", prev->index));
		if (po->scope == CONFIG_SCOPE_NAMESPACE)
			cfg_list_count(&c->policies_by_ns, ctx->arena, po->namespace,
				       strlen(po->namespace));
		else if (po->scope == CONFIG_SCOPE_GLOBAL)
			nglobal++;
	}
	cfg_list_alloc(&c->policies_by_ns, ctx->arena);
	c->global_policies.items = cfg_alloc_array(ctx->arena, nglobal, sizeof(void *));
	for (size_t i = 0; i < c->n_policies; i++) {
		const struct config_policy *po = &c->policies[i];
		if (!po->key)
			continue;
		if (po->scope == CONFIG_SCOPE_NAMESPACE)
			cfg_list_add(&c->policies_by_ns, po->namespace, strlen(po->namespace), po);
		else if (po->scope == CONFIG_SCOPE_GLOBAL)
			c->global_policies.items[c->global_policies.n++] = po;
	}
}

/* ---- references ------------------------------------------------------------------------------ */

static const char *const scope_names[] = {"Global", "Namespace", "WorkloadSelector"};

static void check_waypoint(struct cfg_ctx *ctx, const struct config *c,
			   const struct config_gateway *g, const char *path)
{
	char addr[CONFIG_IP_STRLEN + 320];

	if (!g->present ||
	    (g->destination.kind == CONFIG_GATEWAY_ADDRESS && !g->destination.address.ip.family) ||
	    (g->destination.kind == CONFIG_GATEWAY_HOSTNAME && !g->destination.namespace))
		return; /* the destination itself was invalid: already reported */
	if (g->destination.kind == CONFIG_GATEWAY_HOSTNAME) {
		if (ctx->services_given &&
		    !config_service_by_key(c, g->destination.namespace, g->destination.hostname))
			cfg_error_at(ctx, path, "unknown waypoint service \"%s/%s\"",
				     g->destination.namespace, g->destination.hostname);
		return;
	}
	if (config_workload_by_ip(c, g->destination.address.network, &g->destination.address.ip) ||
	    config_service_by_vip(c, g->destination.address.network, &g->destination.address.ip))
		return;
	cfg_netaddr_format(&g->destination.address, addr, sizeof(addr));
	cfg_warn_at(ctx, path, "waypoint address \"%s\" matches no workload IP or VIP", addr);
}

static const struct config_port *find_port(const struct config_service *s, uint16_t port)
{
	for (size_t i = 0; i < s->n_ports; i++)
		if (s->ports[i].service_port == port)
			return &s->ports[i];
	return NULL;
}

static void link_workload(struct cfg_ctx *ctx, struct config *c, struct config_workload *w,
			  bool *referenced)
{
	struct json_path p;
	size_t i = w->index;

	w->policies = cfg_alloc_array(ctx->arena, w->n_authorization_policies, sizeof(void *));
	for (size_t k = 0; k < w->n_authorization_policies; k++) {
		const char *ref = w->authorization_policies[k];
		const struct config_policy *po =
			ref ? cfg_map_get(&c->by_policy_key, ref, strlen(ref)) : NULL;
		if (!ref)
			continue;
		mkpath(&p, "kiki", "workloads", i, "authorizationPolicies", k);
		if (!po) {
			cfg_error_at(ctx, json_path_str(&p), "unknown policy \"%s\"", ref);
			continue;
		}
		w->policies[k] = po;
		referenced[po->index] = true;
		if (po->scope != CONFIG_SCOPE_WORKLOAD_SELECTOR)
			cfg_warn_at(
				ctx, json_path_str(&p),
				"policy \"%s\" has scope %s; only WorkloadSelector policies need "
				"to be listed",
				ref, scope_names[po->scope]);
	}
	for (size_t k = 0; k < w->n_services; k++) {
		struct config_workload_service *ws = &w->services[k];
		if (!ws->key || !ws->namespace)
			continue;
		ws->service = config_service_by_key(c, ws->namespace, ws->hostname);
		if (!ws->service) {
			if (ctx->services_given)
				cfg_error_at(
					ctx,
					mkpath(&p, "kikk", "workloads", i, "services", ws->key),
					"unknown service \"%s\"", ws->key);
			continue;
		}
		for (size_t m = 0; m < ws->n_ports; m++) {
			char port[8];
			if (find_port(ws->service, ws->ports[m].service_port))
				continue;
			snprintf(port, sizeof(port), "%u", ws->ports[m].service_port);
			cfg_warn_at(ctx,
				    mkpath(&p, "kikkk", "workloads", i, "services", ws->key, port),
				    "service \"%s\" has no port %s", ws->key, port);
		}
	}
	check_waypoint(ctx, c, &w->waypoint,
		       mkpath(&p, "kikk", "workloads", i, "waypoint", "destination"));
}

/* Endpoints: each workload listed under a service, in workload order. */
static void derive_endpoints(struct cfg_ctx *ctx, struct config *c)
{
	for (size_t i = 0; i < c->n_workloads; i++)
		for (size_t k = 0; k < c->workloads[i].n_services; k++)
			if (c->workloads[i].services[k].service)
				c->services[c->workloads[i].services[k].service->index]
					.n_endpoints++;
	for (size_t i = 0; i < c->n_services; i++) {
		struct config_service *s = &c->services[i];
		s->endpoints = cfg_alloc_array(ctx->arena, s->n_endpoints, sizeof(*s->endpoints));
		s->n_endpoints = 0;
	}
	for (size_t i = 0; i < c->n_workloads; i++) {
		const struct config_workload *w = &c->workloads[i];
		for (size_t k = 0; k < w->n_services; k++) {
			struct config_service *s;
			if (!w->services[k].service)
				continue;
			s = &c->services[w->services[k].service->index];
			s->endpoints[s->n_endpoints++] =
				(struct config_endpoint){.workload = w, .ws = &w->services[k]};
		}
	}
}

static bool endpoint_maps_port(const struct config_service *s, uint16_t port)
{
	for (size_t e = 0; e < s->n_endpoints; e++) {
		const struct config_workload_service *ws = s->endpoints[e].ws;
		for (size_t m = 0; m < ws->n_ports; m++)
			if (ws->ports[m].service_port == port)
				return true;
	}
	return false;
}

static void check_service(struct cfg_ctx *ctx, const struct config *c,
			  const struct config_service *s)
{
	struct json_path p;

	check_waypoint(ctx, c, &s->waypoint,
		       mkpath(&p, "kikk", "services", s->index, "waypoint", "destination"));
	for (size_t k = 0; k < s->n_app_protocols; k++) {
		char port[8];
		if (!s->app_protocols[k].port || find_port(s, s->app_protocols[k].port))
			continue; /* 0: out of range, reported already */
		snprintf(port, sizeof(port), "%u", s->app_protocols[k].port);
		cfg_error_at(ctx, mkpath(&p, "kikk", "services", s->index, "appProtocols", port),
			     "the service has no port %s", port);
	}
	if (!s->key)
		return;
	if (!s->n_endpoints) {
		cfg_warn_at(ctx, mkpath(&p, "ki", "services", s->index),
			    "no endpoints: no workload lists \"%s\" in its \"services\"", s->key);
		return;
	}
	for (size_t k = 0; k < s->n_ports; k++) {
		char port[8];
		if (s->ports[k].target_port || endpoint_maps_port(s, s->ports[k].service_port))
			continue;
		snprintf(port, sizeof(port), "%u", s->ports[k].service_port);
		cfg_warn_at(ctx, mkpath(&p, "kikk", "services", s->index, "ports", port),
			    "targetPort is 0 and no endpoint maps this port");
	}
}

void cfg_link(struct cfg_ctx *ctx, struct config *c)
{
	bool *referenced = xcalloc(c->n_policies ? c->n_policies : 1, sizeof(bool));
	struct json_path p;

	index_workloads(ctx, c);
	index_services(ctx, c);
	index_policies(ctx, c);
	for (size_t i = 0; i < c->n_workloads; i++)
		link_workload(ctx, c, &c->workloads[i], referenced);
	derive_endpoints(ctx, c);
	for (size_t i = 0; i < c->n_services; i++)
		check_service(ctx, c, &c->services[i]);
	for (size_t i = 0; i < c->n_policies; i++) {
		const struct config_policy *po = &c->policies[i];
		if (po->key && po->scope == CONFIG_SCOPE_WORKLOAD_SELECTOR && !referenced[i])
			cfg_warn_at(
				ctx, mkpath(&p, "ki", "policies", i),
				"WorkloadSelector policy \"%s\" is not listed in any workload's "
				"\"authorizationPolicies\"; it applies nowhere",
				po->key);
	}
	free(referenced);
	cfg_link_l7(ctx, c);
	cfg_check_waypoints(ctx, c);
}
