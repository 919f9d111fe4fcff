/* The proxy object: config snapshots with the served workloads, readiness, metrics families. */
#include "pkg/proxy/proxy_int.h"

#include <ifaddrs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const traffic_labels[] = {
	"reporter",
	"source_workload",
	"source_canonical_service",
	"source_workload_namespace",
	"source_principal",
	"destination_service",
	"destination_service_namespace",
	"destination_workload",
	"destination_canonical_service",
	"destination_workload_namespace",
	"destination_principal",
	"request_protocol",
	"response_flags",
	"connection_security_policy",
};

static int reg(struct proxy *p, const char *name, const char *help, struct metrics_family **out,
	       struct errbuf *eb)
{
	struct metrics_def d = {
		.name = name,
		.help = help,
		.type = METRICS_COUNTER,
		.labels = traffic_labels,
		.nlabels = ARRAY_LEN(traffic_labels),
	};
	return metrics_register(p->o.metrics, &d, out, eb);
}

/* A counter family with no label (reason NULL) or one "reason" label; *out is its series. */
static int reg_plain(struct proxy *p, const char *name, const char *help, const char *reason,
		     struct metrics_series **out, struct errbuf *eb)
{
	static const char *const reason_label[] = {"reason"};
	const char *v[1] = {reason};
	struct metrics_family *fam;
	struct metrics_def d = {
		.name = name,
		.help = help,
		.type = METRICS_COUNTER,
		.labels = reason ? reason_label : NULL,
		.nlabels = reason ? 1 : 0,
	};
	int rc = metrics_register(p->o.metrics, &d, &fam, eb);

	if (rc < 0)
		return rc;
	*out = metrics_counter_with(fam, v);
	return 0;
}

struct proxy *proxy_new(const struct proxy_opts *o, struct errbuf *eb)
{
	struct proxy *p;

	if (!o->idm) {
		errbuf_set(eb, E_INVAL, "proxy: an identity manager is required");
		return NULL;
	}
	p = xcalloc(1, sizeof(*p));
	p->o = *o;
	if (!p->o.metrics)
		p->o.metrics = metrics_default();
	if (!p->o.inbound_port)
		p->o.inbound_port = 15006;
	if (!p->o.outbound_port)
		p->o.outbound_port = 15001;
	if (!p->o.hbone_port)
		p->o.hbone_port = 15008;
	if (!p->o.pool_idle_ms)
		p->o.pool_idle_ms = 5 * 60 * 1000;
	if (!p->o.max_connections)
		p->o.max_connections = 100000;
	if (!p->o.pod_drain_ms)
		p->o.pod_drain_ms = 5000;
	if (p->o.shared && (p->o.workers == 0 || p->o.workers > EV_MAX_THREADS)) {
		errbuf_set(eb, E_INVAL, "proxy: shared mode needs the worker count");
		free(p);
		return NULL;
	}
	p->o.node = xstrdup(o->node ? o->node : "");
	p->ports[3] = p->o.socks5_port;
	p->ports[0] = p->o.inbound_port;
	p->ports[1] = p->o.outbound_port;
	p->ports[2] = p->o.hbone_port;
	p->uids = xcalloc(o->n_workload_uids + 1, sizeof(char *));
	for (size_t i = 0; i < o->n_workload_uids; i++)
		p->uids[i] = xstrdup(o->workload_uids[i]);
	p->o.workload_uids = (const char *const *)p->uids;
	pthread_mutex_init(&p->mu, NULL);
	pthread_mutex_init(&p->live_mu, NULL);
	if (reg_plain(p, "ambient_pool_connections_opened_total",
		      "HBONE connections the client pool opened (TLS handshakes started)", NULL,
		      &p->m_pool_opened, eb) < 0 ||
	    reg_plain(p, "ambient_hbone_connections_accepted_total",
		      "HBONE connections accepted on the inbound HBONE port", NULL,
		      &p->m_hbone_accepted, eb) < 0 ||
	    reg_plain(p, "ambient_connections_refused_total",
		      "Connections refused by the proxy before any relaying", "limit",
		      &p->m_refused_limit, eb) < 0 ||
	    reg(p, "istio_tcp_connections_opened_total", "TCP connections opened", &p->m_opened,
		eb) < 0 ||
	    reg(p, "istio_tcp_connections_closed_total", "TCP connections closed", &p->m_closed,
		eb) < 0 ||
	    reg(p, "istio_tcp_sent_bytes_total",
		"Bytes sent from the destination to the source during a connection", &p->m_sent,
		eb) < 0 ||
	    reg(p, "istio_tcp_received_bytes_total",
		"Bytes received from the source by the destination during a connection", &p->m_recv,
		eb) < 0) {
		proxy_free(p);
		return NULL;
	}
	return p;
}

static void snap_free(struct proxy_snap *s)
{
	for (size_t i = 0; i < s->n_pods; i++)
		proxy_pod_put(s->pods[i].pod);
	free(s->pods);
	config_unref(s->c);
	free(s->served);
	free(s->local);
	free(s);
}

struct proxy_snap *proxy_snap_get(struct proxy *p)
{
	struct proxy_snap *s;

	pthread_mutex_lock(&p->mu);
	s = p->snap;
	if (s)
		atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&p->mu);
	return s;
}

void proxy_snap_put(struct proxy_snap *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1)
		snap_free(s);
}

bool proxy_snap_serves(const struct proxy_snap *s, const struct config_workload *w)
{
	for (size_t i = 0; w && i < s->n_served; i++)
		if (s->served[i] == w)
			return true;
	return false;
}

void proxy_free(struct proxy *p)
{
	if (!p)
		return;
	proxy_zds_stop(p);
	proxy_snap_put(p->snap);
	while (p->pods) {
		struct proxy_pod *pod = p->pods;

		p->pods = pod->next;
		proxy_pod_put(pod);
	}
	while (p->gone) { /* workers are gone: nothing drains any more */
		struct proxy_pod *pod = p->gone;

		p->gone = pod->next;
		proxy_pod_put(pod);
	}
	config_unref(p->cfg);
	free((char *)p->o.node);
	for (size_t i = 0; p->uids && p->uids[i]; i++)
		free(p->uids[i]);
	free(p->uids);
	pthread_mutex_destroy(&p->mu);
	pthread_mutex_destroy(&p->live_mu);
	free(p);
}

static void local_ips(struct proxy_snap *s)
{
	struct ifaddrs *ifa = NULL;
	size_t cap = 0;

	if (getifaddrs(&ifa) < 0)
		return;
	for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
		struct net_addr a;

		if (!i->ifa_addr ||
		    net_addr_from_sockaddr(&a, i->ifa_addr,
					   i->ifa_addr->sa_family == AF_INET
						   ? sizeof(struct sockaddr_in)
						   : sizeof(struct sockaddr_in6)) < 0)
			continue;
		if (s->n_local == cap) {
			cap = cap ? cap * 2 : 8;
			s->local = xrealloc(s->local, cap * sizeof(*s->local));
		}
		net_addr_ip(&a, &s->local[s->n_local++]);
	}
	freeifaddrs(ifa);
}

static bool served(const struct proxy *p, const struct proxy_snap *s,
		   const struct config_workload *w)
{
	for (size_t i = 0; i < p->o.n_workload_uids; i++)
		if (strcmp(p->o.workload_uids[i], w->uid) == 0)
			return true;
	for (size_t k = 0; k < w->n_workload_ips; k++) {
		struct net_ip ip;

		proxy_ip_to_net(&ip, &w->workload_ips[k]);
		for (size_t i = 0; i < s->n_local; i++)
			if (net_ip_equal(&ip, &s->local[i]))
				return true;
	}
	return false;
}

/* The config workload an enrolled pod is: by uid, else namespace + service account + name among
 * the workloads on our node (any node when none is set). */
static const struct config_workload *pod_match(const struct proxy *p, const struct config *c,
					       const struct proxy_pod *pod)
{
	const struct config_workload *w = config_workload_by_uid(c, pod->uid);
	const struct config_workload *const *on = NULL;
	size_t n;

	if (w)
		return w;
	if (!pod->ns[0] || !pod->name[0])
		return NULL;
	if (p->o.node[0])
		on = config_workloads_by_node(c, p->o.node, &n);
	else
		w = config_workloads(c, &n);
	for (size_t i = 0; i < n; i++) {
		const struct config_workload *x = on ? on[i] : &w[i];

		if (strcmp(x->namespace, pod->ns) == 0 && strcmp(x->name, pod->name) == 0 &&
		    (!pod->sa[0] || strcmp(x->service_account, pod->sa) == 0))
			return x;
	}
	return NULL;
}

void proxy_resnap(struct proxy *p)
{
	struct proxy_snap *s, *old;
	const struct config_workload *w;
	size_t n, npods = 0;

	pthread_mutex_lock(&p->mu);
	if (!p->cfg) {
		pthread_mutex_unlock(&p->mu);
		return;
	}
	s = xcalloc(1, sizeof(*s));
	atomic_init(&s->refs, 1);
	s->c = config_ref(p->cfg);
	w = config_workloads(s->c, &n);
	s->served = xcalloc(n + 1, sizeof(*s->served));
	for (struct proxy_pod *pod = p->pods; pod; pod = pod->next)
		npods++;
	s->pods = xcalloc(npods + 1, sizeof(*s->pods));
	if (!p->o.shared)
		local_ips(s);
	for (size_t i = 0; i < n; i++)
		if (!p->o.shared && served(p, s, &w[i]))
			s->served[s->n_served++] = &w[i];
	for (struct proxy_pod *pod = p->pods; pod; pod = pod->next) {
		const struct config_workload *m = NULL;

		if (pod->state != POD_DRAINING) {
			m = pod_match(p, s->c, pod);
			if (m && !proxy_snap_serves(s, m))
				s->served[s->n_served++] = m;
			if (m && pod->state == POD_PENDING)
				log_info("ztunnel: enrolled workload matched",
					 LF_STR("uid", pod->uid), LF_STR("workload", m->uid),
					 LF_STR("identity", m->identity));
			pod->state = m ? POD_READY : POD_PENDING;
			snprintf(pod->wl_uid, sizeof(pod->wl_uid), "%s", m ? m->uid : "");
		}
		s->pods[s->n_pods].pod = proxy_pod_ref(pod);
		s->pods[s->n_pods++].wl = m;
	}
	old = p->snap;
	p->snap = s;
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < s->n_served; i++)
		identity_prefetch(p->o.idm, s->served[i]->identity, NULL);
	proxy_snap_put(old);
	proxy_recheck(p);
}

const struct config_workload *proxy_snap_pod_workload(const struct proxy_snap *s,
						      const struct proxy_pod *pod)
{
	for (size_t i = 0; s && i < s->n_pods; i++)
		if (s->pods[i].pod == pod)
			return s->pods[i].wl;
	return NULL;
}

void proxy_set_config(struct proxy *p, struct config *c)
{
	struct proxy_snap *s;

	pthread_mutex_lock(&p->mu);
	config_unref(p->cfg);
	p->cfg = config_ref(c);
	pthread_mutex_unlock(&p->mu);
	proxy_resnap(p);
	s = proxy_snap_get(p);
	log_info("proxy: config applied", LF_U64("version", config_version(c)),
		 LF_U64("served_workloads", s ? s->n_served : 0));
	proxy_snap_put(s);
}

const char *proxy_not_ready(struct proxy *p)
{
	struct proxy_snap *s = proxy_snap_get(p);

	proxy_snap_put(s);
	if (!s)
		return "no mesh config applied to the data plane yet";
	if (atomic_load(&p->workers_up) < p->workers_want || p->workers_want == 0)
		return "data plane listeners are not up yet";
	if (p->o.shared) {
		static _Thread_local char why[1200];
		const char *r = NULL;

		pthread_mutex_lock(&p->mu);
		if (!p->zds_synced)
			r = "waiting for the workload snapshot from the node agent (ZDS)";
		for (struct proxy_pod *pod = p->pods; !r && pod; pod = pod->next)
			if (pod->state == POD_PENDING) {
				snprintf(why, sizeof(why),
					 "enrolled workload %s (%s/%s) is pending: no workload in "
					 "the mesh config with that uid, or that namespace and "
					 "name%s%s",
					 pod->uid, pod->ns, pod->name,
					 p->o.node[0] ? " on node " : "", p->o.node);
				r = why;
			}
		pthread_mutex_unlock(&p->mu);
		return r;
	}
	return NULL;
}

void proxy_dump(struct proxy *p, struct json_writer *w)
{
	struct proxy_snap *s = proxy_snap_get(p);

	json_write_object_begin(w);
	json_write_key(w, "ports");
	json_write_object_begin(w);
	json_write_key(w, "inbound");
	json_write_int(w, p->o.inbound_port);
	json_write_key(w, "outbound");
	json_write_int(w, p->o.outbound_port);
	json_write_key(w, "hbone");
	json_write_int(w, p->o.hbone_port);
	json_write_object_end(w);
	json_write_key(w, "mode");
	json_write_string(w, p->o.shared ? "shared" : "dedicated");
	json_write_key(w, "servedWorkloads");
	json_write_array_begin(w);
	for (size_t i = 0; s && i < s->n_served; i++)
		json_write_string(w, s->served[i]->uid);
	json_write_array_end(w);
	if (p->o.shared) {
		json_write_key(w, "enrolledWorkloads");
		proxy_pods_dump(p, w);
	}
	json_write_object_end(w);
	proxy_snap_put(s);
}
