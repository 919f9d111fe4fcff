/* State across the workers' connections: the live list behind /connections and its byte
 * counters, the connection limit, the re-check of open inbound connections at each config
 * change, and drain. */
#include "pkg/proxy/proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void live_add(struct flow *f)
{
	struct proxy *p = f->w->p;

	if (f->live)
		return;
	pthread_mutex_lock(&p->live_mu);
	f->lprev = NULL;
	f->lnext = p->live;
	if (p->live)
		p->live->lprev = f;
	p->live = f;
	f->live = true;
	pthread_mutex_unlock(&p->live_mu);
}

void live_del(struct flow *f)
{
	struct proxy *p = f->w->p;

	if (!f->live)
		return;
	pthread_mutex_lock(&p->live_mu);
	if (f->lprev)
		f->lprev->lnext = f->lnext;
	else
		p->live = f->lnext;
	if (f->lnext)
		f->lnext->lprev = f->lprev;
	f->lnext = f->lprev = NULL;
	f->live = false;
	pthread_mutex_unlock(&p->live_mu);
}

void live_bytes(struct flow *f, int dir, uint64_t n)
{
	struct metrics_series *s = dir == 0 ? f->live_recv : f->live_sent;

	__atomic_fetch_add(&f->e[dir].rx, n, __ATOMIC_RELAXED);
	if (s) {
		metrics_counter_add(s, n);
		f->counted[dir] += n;
	}
}

bool proxy_over_limit(struct proxy *p, int fd)
{
	if (atomic_load(&p->n_flows) < p->o.max_connections)
		return false;
	metrics_counter_inc(p->m_refused_limit);
	if (fd >= 0)
		close(fd);
	return true;
}

size_t proxy_open_connections(struct proxy *p)
{
	size_t n = atomic_load(&p->n_flows);

	/* Draining: HBONE connections we serve got GOAWAY; give their clients a moment to see it
	 * (streams they opened meanwhile are refused and retried elsewhere) before closing. */
	if (atomic_load(&p->draining) && atomic_load(&p->n_server_tuns) > 0 &&
	    time_mono_ms() < atomic_load(&p->drain_started_ms) + PROXY_DRAIN_GOAWAY_MS)
		n++;
	return n;
}

static const char *wl_name(const struct config_workload *w, char *out, size_t cap)
{
	if (!w)
		return "";
	snprintf(out, cap, "%s/%s", w->namespace, w->workload_name[0] ? w->workload_name : w->name);
	return out;
}

void proxy_connections(struct proxy *p, struct json_writer *w)
{
	uint64_t now = time_mono_ms();

	json_write_array_begin(w);
	pthread_mutex_lock(&p->live_mu);
	for (struct flow *f = p->live; f; f = f->lnext) {
		char a[NET_ADDR_STRLEN], n[512];

		json_write_object_begin(w);
		json_write_key(w, "direction");
		json_write_string(w, f->kind == FLOW_OUTBOUND ? "outbound" : "inbound");
		json_write_key(w, "src");
		json_write_string(w, net_addr_format(&f->src, a, sizeof(a)));
		json_write_key(w, "dst");
		json_write_string(w, net_addr_format(&f->dst, a, sizeof(a)));
		json_write_key(w, "hboneAddress");
		json_write_string(w, f->hbone_addr);
		json_write_key(w, "service");
		json_write_string(w, f->svc ? f->svc->hostname : "");
		json_write_key(w, "srcWorkload");
		json_write_string(w, wl_name(f->src_wl, n, sizeof(n)));
		json_write_key(w, "dstWorkload");
		json_write_string(w, wl_name(f->dst_wl, n, sizeof(n)));
		json_write_key(w, "srcIdentity");
		json_write_string(w, f->src_id);
		json_write_key(w, "dstIdentity");
		json_write_string(w, f->dst_id ? f->dst_id : "");
		json_write_key(w, "bytesSent"); /* from the source to the destination */
		json_write_uint(w, __atomic_load_n(&f->e[0].rx, __ATOMIC_RELAXED));
		json_write_key(w, "bytesReceived");
		json_write_uint(w, __atomic_load_n(&f->e[1].rx, __ATOMIC_RELAXED));
		json_write_key(w, "ageMs");
		json_write_uint(w, now - f->start_ms);
		json_write_key(w, "mtls");
		json_write_bool(w, f->mtls);
		json_write_object_end(w);
	}
	pthread_mutex_unlock(&p->live_mu);
	json_write_array_end(w);
}

/* ---- posts to every worker ------------------------------------------------------------------ */

struct post {
	struct proxy *p;
	unsigned idx;
	struct proxy_snap *snap;
};

static void for_each_worker(struct proxy *p, ev_post_fn fn, bool with_snap)
{
	for (unsigned i = 0; i < EV_MAX_THREADS; i++) {
		struct ev_loop *loop = atomic_load(&p->loops[i]);
		struct post *x;

		if (!loop)
			continue;
		x = xcalloc(1, sizeof(*x));
		x->p = p;
		x->idx = i;
		x->snap = with_snap ? proxy_snap_get(p) : NULL;
		ev_loop_post(loop, fn, x);
	}
}

static void recheck_post(struct ev_loop *loop, void *arg)
{
	struct post *x = arg;
	struct proxy_worker *w = proxy_worker_get(x->idx);
	struct flow *f, *next;

	(void)loop;
	for (f = w && w->p == x->p && x->snap ? w->flows : NULL; f; f = next) {
		struct authz_result ar;
		char reason[AUTHZ_REASON_MAX], a[NET_ADDR_STRLEN], b[NET_ADDR_STRLEN];

		next = f->next;
		if (f->dead || !f->authz_done || !f->dst_wl)
			continue;
		if (authz_recheck(x->snap->c, f->dst_wl, &f->ac, &ar) < 0 || authz_allowed(&ar))
			continue;
		authz_result_format(&ar, reason, sizeof(reason));
		log_info("connection closed due to policy change",
			 LF_STR("src.addr", net_addr_format(&f->src, a, sizeof(a))),
			 LF_STR("dst.addr", net_addr_format(&f->dst, b, sizeof(b))),
			 LF_STR("src.identity", f->src_id), LF_STR("dst.workload", f->dst_wl->name),
			 LF_STR("reason", reason));
		flow_fail(f, "DENY", "connection closed due to policy change: %s", reason);
	}
	proxy_snap_put(x->snap);
	free(x);
}

void proxy_recheck(struct proxy *p)
{
	for_each_worker(p, recheck_post, true);
}

static void drain_post(struct ev_loop *loop, void *arg)
{
	struct post *x = arg;
	struct proxy_worker *w = proxy_worker_get(x->idx);

	(void)loop;
	if (w && w->p == x->p) {
		proxy_worker_stop_listening(w);
		/* GOAWAY on the HBONE connections we serve: peers open new streams elsewhere (an
		 * upgraded ztunnel's listener), the open ones go on. */
		for (struct tun *t = w->tuns; t; t = t->next)
			if (t->server && t->h && !t->dead) {
				hbone_session_shutdown(t->h);
				tun_kick(t);
			}
	}
	free(x);
}

void proxy_drain(struct proxy *p)
{
	uint64_t now = time_mono_ms();
	uint64_t zero = 0;

	/* First call wins (before draining is seen, so the grace period is never skipped). */
	atomic_compare_exchange_strong(&p->drain_started_ms, &zero, now);
	if (atomic_exchange(&p->draining, true))
		return;
	log_info("proxy: draining: listeners closed, open connections go on",
		 LF_U64("open_connections", proxy_open_connections(p)));
	for_each_worker(p, drain_post, false);
}
