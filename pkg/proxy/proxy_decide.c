/* Sans-I/O routing decisions of the data plane: outbound route, endpoint choice, loop refusal. */
#include "pkg/proxy/proxy.h"

#include <string.h>

void proxy_ip_from_net(struct config_ip *out, const struct net_ip *in)
{
	memset(out, 0, sizeof(*out));
	out->family = in->family;
	memcpy(out->addr, in->b, in->family == AF_INET ? 4 : 16);
}

void proxy_ip_to_net(struct net_ip *out, const struct config_ip *in)
{
	memset(out, 0, sizeof(*out));
	out->family = (sa_family_t)in->family;
	memcpy(out->b, in->addr, in->family == AF_INET ? 4 : 16);
}

char *proxy_authority(const struct net_addr *a, char *out, size_t cap)
{
	return hbone_authority_format(a, out, cap);
}

struct slice proxy_trust_domain(const char *id)
{
	static const char pfx[] = "spiffe://";
	struct slice s = {NULL, 0};
	const char *p, *e;

	if (!id || strncmp(id, pfx, sizeof(pfx) - 1) != 0)
		return s;
	p = id + sizeof(pfx) - 1;
	e = strchr(p, '/');
	if (!e || e == p)
		return s;
	s.p = (const uint8_t *)p;
	s.n = (size_t)(e - p);
	return s;
}

static bool ip_is_unspec_or_loopback(const struct net_ip *ip)
{
	static const uint8_t zero[16], v6lo[16] = {[15] = 1};

	if (ip->family == AF_INET)
		return ip->b[0] == 127 || memcmp(ip->b, zero, 4) == 0;
	return memcmp(ip->b, zero, 16) == 0 || memcmp(ip->b, v6lo, 16) == 0;
}

bool proxy_is_loop(const struct net_addr *dst, const struct net_ip *local, size_t n_local,
		   const uint16_t *ports, size_t n_ports)
{
	struct net_ip ip;
	uint16_t port = net_addr_port(dst);
	bool port_hit = false, ip_hit;

	for (size_t i = 0; i < n_ports; i++)
		port_hit |= ports[i] != 0 && ports[i] == port;
	if (!port_hit)
		return false;
	net_addr_ip(dst, &ip);
	ip_hit = ip_is_unspec_or_loopback(&ip);
	for (size_t i = 0; i < n_local && !ip_hit; i++)
		ip_hit = net_ip_equal(&ip, &local[i]);
	return ip_hit;
}

static uint16_t endpoint_target_port(const struct config_port *sp, const struct config_endpoint *e)
{
	if (sp->target_port)
		return sp->target_port;
	for (size_t i = 0; e->ws && i < e->ws->n_ports; i++)
		if (e->ws->ports[i].service_port == sp->service_port && e->ws->ports[i].target_port)
			return e->ws->ports[i].target_port;
	return sp->service_port;
}

static bool endpoint_usable(const struct config_service *svc, const struct config_endpoint *e)
{
	const struct config_workload *w = e->workload;

	if (!w || w->n_workload_ips == 0)
		return false;
	if (w->status != CONFIG_HEALTH_HEALTHY &&
	    !(svc->load_balancer.present &&
	      svc->load_balancer.health_policy == CONFIG_LB_ALLOW_ALL))
		return false;
	return true;
}

static uint64_t endpoint_weight(const struct config_endpoint *e)
{
	return e->workload->capacity ? e->workload->capacity : 1;
}

const struct config_endpoint *proxy_pick_endpoint(const struct config_service *svc, uint16_t port,
						  uint64_t rnd, uint16_t *target_port)
{
	const struct config_port *sp = NULL;
	uint64_t total = 0, pick;

	for (size_t i = 0; i < svc->n_ports && !sp; i++)
		if (svc->ports[i].service_port == port)
			sp = &svc->ports[i];
	if (!sp)
		return NULL;
	for (size_t i = 0; i < svc->n_endpoints; i++)
		if (endpoint_usable(svc, &svc->endpoints[i]))
			total += endpoint_weight(&svc->endpoints[i]);
	if (total == 0)
		return NULL;
	pick = rnd % total;
	for (size_t i = 0; i < svc->n_endpoints; i++) {
		const struct config_endpoint *e = &svc->endpoints[i];
		uint64_t wgt;

		if (!endpoint_usable(svc, e))
			continue;
		wgt = endpoint_weight(e);
		if (pick < wgt) {
			*target_port = endpoint_target_port(sp, e);
			return e;
		}
		pick -= wgt;
	}
	return NULL;
}

/* The workload's address in the family of the original destination, else its first one. */
static const struct config_ip *workload_ip(const struct config_workload *w, int family)
{
	for (size_t i = 0; i < w->n_workload_ips; i++)
		if (w->workload_ips[i].family == family)
			return &w->workload_ips[i];
	return &w->workload_ips[0];
}

/* The members of a waypoint: the endpoints of its service (hostname form, or an address that is a
 * service VIP), else the one workload at its address. */
static const struct config_service *gateway_service(const struct config *c,
						    const struct config_gateway *gw)
{
	const struct config_gateway_dest *d = &gw->destination;

	if (d->kind == CONFIG_GATEWAY_HOSTNAME)
		return config_service_by_key(c, d->namespace ? d->namespace : "",
					     d->hostname ? d->hostname : "");
	return config_service_by_vip(c, d->address.network ? d->address.network : "",
				     &d->address.ip);
}

static bool gateway_has_member(const struct config *c, const struct config_gateway *gw,
			       const struct config_workload *w)
{
	const struct config_service *svc;
	const struct config_gateway_dest *d = &gw->destination;

	if (!w)
		return false;
	svc = gateway_service(c, gw);
	if (svc) {
		for (size_t i = 0; i < svc->n_endpoints; i++)
			if (svc->endpoints[i].workload == w)
				return true;
		return false;
	}
	if (d->kind == CONFIG_GATEWAY_HOSTNAME)
		return false;
	return config_workload_by_ip(c, d->address.network ? d->address.network : "",
				     &d->address.ip) == w;
}

/* HBONE to a waypoint: a usable endpoint of its service (weighted by capacity) or the workload
 * at its address; :authority is the original destination, the server identity the waypoint's. */
static void route_to_waypoint(struct proxy_route *r, const struct config *c,
			      const struct config_gateway *gw, const struct net_addr *orig,
			      uint64_t rnd, uint16_t hbone_port)
{
	const struct config_gateway_dest *d = &gw->destination;
	const struct config_service *svc = gateway_service(c, gw);
	const struct config_workload *wp = NULL;
	struct net_ip nip;

	if (svc) {
		uint64_t total = 0, pick;

		for (size_t i = 0; i < svc->n_endpoints; i++)
			if (endpoint_usable(svc, &svc->endpoints[i]))
				total += endpoint_weight(&svc->endpoints[i]);
		pick = total ? rnd % total : 0;
		for (size_t i = 0; i < svc->n_endpoints && total && !wp; i++) {
			const struct config_endpoint *e = &svc->endpoints[i];

			if (!endpoint_usable(svc, e))
				continue;
			if (pick < endpoint_weight(e))
				wp = e->workload;
			else
				pick -= endpoint_weight(e);
		}
		if (!wp) {
			r->kind = PROXY_ROUTE_FAIL;
			r->reason = "waypoint has no healthy endpoint";
			return;
		}
	} else if (d->kind == CONFIG_GATEWAY_ADDRESS) {
		wp = config_workload_by_ip(c, d->address.network ? d->address.network : "",
					   &d->address.ip);
	}
	if (!wp || wp->n_workload_ips == 0) {
		r->kind = PROXY_ROUTE_FAIL;
		r->reason = "waypoint not found (unknown waypoint)";
		return;
	}
	net_addr_ip(orig, &nip);
	r->kind = PROXY_ROUTE_HBONE;
	r->waypoint = wp;
	proxy_authority(orig, r->authority, sizeof(r->authority));
	proxy_ip_to_net(&nip, workload_ip(wp, nip.family));
	net_addr_from_ip(&r->target, &nip, gw->hbone_mtls_port ? gw->hbone_mtls_port : hbone_port);
}

static void route_to_workload(struct proxy_route *r, const struct config_workload *w,
			      const struct config_ip *ip, uint16_t port, uint16_t hbone_port)
{
	struct net_ip nip;
	struct net_addr app;

	proxy_ip_to_net(&nip, ip);
	net_addr_from_ip(&app, &nip, port);
	r->dst = w;
	if (w->protocol == CONFIG_PROTOCOL_HBONE) {
		r->kind = PROXY_ROUTE_HBONE;
		proxy_authority(&app, r->authority, sizeof(r->authority));
		net_addr_from_ip(&r->target, &nip, hbone_port);
	} else {
		r->kind = PROXY_ROUTE_TCP;
		r->target = app;
	}
}

void proxy_decide_outbound(const struct config *c, const struct config_workload *src,
			   const struct net_addr *orig, uint64_t rnd, uint16_t hbone_port,
			   struct proxy_route *r)
{
	struct net_ip nip;
	struct config_ip ip;
	const struct config_service *svc;
	const struct config_workload *w;
	uint16_t port = net_addr_port(orig);

	memset(r, 0, sizeof(*r));
	net_addr_ip(orig, &nip);
	proxy_ip_from_net(&ip, &nip);
	svc = c ? config_service_by_vip(c, "", &ip) : NULL;
	if (svc) {
		const struct config_endpoint *e;
		uint16_t tport = 0;

		r->svc = svc;
		if (svc->waypoint.present && !gateway_has_member(c, &svc->waypoint, src)) {
			route_to_waypoint(r, c, &svc->waypoint, orig, rnd, hbone_port);
			return;
		}
		e = proxy_pick_endpoint(svc, port, rnd, &tport);
		if (!e) {
			r->kind = PROXY_ROUTE_FAIL;
			r->reason = "service has no healthy endpoint for this port";
			return;
		}
		route_to_workload(r, e->workload, workload_ip(e->workload, ip.family), tport,
				  hbone_port);
		return;
	}
	w = c ? config_workload_by_ip(c, "", &ip) : NULL;
	if (w) {
		if (w->waypoint.present && !gateway_has_member(c, &w->waypoint, src)) {
			r->dst = w;
			route_to_waypoint(r, c, &w->waypoint, orig, rnd, hbone_port);
			return;
		}
		route_to_workload(r, w, &ip, port, hbone_port);
		return;
	}
	r->kind = PROXY_ROUTE_PASSTHROUGH;
	r->target = *orig;
}
