/* HBONE tunnels (TLS 1.2 + HTTP/2 connections): the per-worker client pool that multiplexes
 * outbound streams (DESIGN.md §2: key, stream cap, idle close) and the 15008 server side. */
#include "pkg/proxy/proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- tunnels ------------------------------------------------------------------------------------
 */

void tun_free(struct tun *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		t->w->tuns = t->next;
	if (t->next)
		t->next->prev = t->prev;
	ev_timer_del(t->w->loop, &t->kick);
	ev_timer_del(t->w->loop, &t->timer);
	ev_timer_del(t->w->loop, &t->idle);
	hbone_session_free(t->h);
	if (t->tls_on)
		tls_conn_fini(&t->tls);
	if (t->server)
		atomic_fetch_sub(&t->w->p->n_server_tuns, 1);
	proxy_snap_put(t->snap);
	proxy_pod_put(t->pod);
	free(t);
}

static void on_kick(struct ev_loop *loop, struct ev_timer *tm);

void tun_close(struct tun *t, const char *why)
{
	struct end *e;

	if (t->dead)
		return;
	t->dead = true;
	snprintf(t->why, sizeof(t->why), "%s", why);
	if (t->tls_on && !(tls_conn_state(&t->tls) & TLS_ST_DONE)) {
		/* A refused or failed handshake has no stream to log it: say who and why here. */
		char peer[NET_ADDR_STRLEN], local[NET_ADDR_STRLEN];
		net_addr_format(&t->peer, peer, sizeof(peer));
		net_addr_format(&t->local, local, sizeof(local));
		log_warn(t->server ? "hbone handshake refused" : "hbone handshake failed",
			 LF_STR("src.addr", t->server ? peer : local),
			 LF_STR("dst.addr", t->server ? local : peer), LF_ERR(why));
	}
	if (t->waiter.fn)
		identity_waiter_cancel(t->w->p->o.idm, &t->waiter);
	ev_timer_del(t->w->loop, &t->timer);
	ev_timer_del(t->w->loop, &t->idle);
	if (t->io.fd >= 0) {
		ev_io_stop(t->w->loop, &t->io);
		close(t->io.fd);
		t->io.fd = -1;
	}
	/* Detach every stream first, then fail their flows (which no longer touch us). */
	while ((e = t->ends)) {
		struct flow *f = e->f;
		/* No response yet, so no byte of the app's went through it: the CONNECT goes once
		 * more on another connection (e.g. a draining ztunnel closed this one, or it was
		 * reset while moving to an upgraded ztunnel's listener). At worst the app saw a
		 * connection open and close with no data, as after a lost SYN-ACK. */
		bool unsent = !t->server && f->kind == FLOW_OUTBOUND && !f->established &&
			      !f->retried && e == &f->e[1] && !f->dead;

		t->ends = e->tnext;
		e->t = NULL;
		e->sid = 0;
		e->tnext = e->tprev = NULL;
		if (unsent) {
			f->retried = true;
			log_debug(
				"proxy: HBONE connection lost before the stream was sent; retrying",
				LF_STR("dst.hbone_addr", f->hbone_addr), LF_ERR(why));
			pool_outbound(f);
			continue;
		}
		flow_fail(f, t->server ? "-" : "CONNECT", "HBONE connection %s: %s",
			  t->server ? "from peer" : "upstream", why);
	}
	ev_timer_add(t->w->loop, &t->kick, 0);
}

void tun_kick(struct tun *t)
{
	if (!ev_timer_active(&t->kick))
		ev_timer_add(t->w->loop, &t->kick, 0);
}

static void pool_open_waiting(struct tun *t);

static void tun_arm_tick(struct tun *t)
{
	if (t->h && !t->dead)
		ev_timer_add_at(t->w->loop, &t->timer, hbone_session_next_tick(t->h));
}

/* hbone's zero-copy DATA output: header and payload go straight into the TLS engine. */
static size_t tun_send_data(void *ctx, const uint8_t *hd, size_t hdlen, const uint8_t *p, size_t n)
{
	struct tun *t = ctx;
	ssize_t w = tls_io_write_more(&t->tls, &t->io, hd, hdlen);

	if (w <= 0)
		return 0;
	if ((size_t)w < hdlen)
		return (size_t)w;
	w = tls_io_write_more(&t->tls, &t->io, p, n);
	return hdlen + (w > 0 ? (size_t)w : 0);
}

static void tun_run(struct tun *t)
{
	bool progress = true;

	if (t->running || t->dead || t->connecting)
		return;
	t->running = true;
	for (int rounds = 0; progress && rounds < 64 && !t->dead; rounds++) {
		int st = tls_io_pump(&t->tls, &t->io);
		const uint8_t *in;
		ssize_t n;

		progress = false;
		if (st < 0 || (st & TLS_ST_ERROR)) {
			tun_close(t, tls_conn_reason(&t->tls)[0] ? tls_conn_reason(&t->tls)
								 : "TLS failure");
			break;
		}
		if (!(st & TLS_ST_DONE))
			break;
		if (!t->h) {
			struct hbone_config hc = {
				.role = t->server ? HBONE_SERVER : HBONE_CLIENT,
				.on_event = proxy_tun_event,
				.ctx = t,
				.send_data = tun_send_data,
			};
			t->h = hbone_session_new(&hc, ev_now(t->w->loop));
			if (!t->h) {
				tun_close(t, "cannot create the HTTP/2 session");
				break;
			}
			ev_timer_del(t->w->loop, &t->timer);
			if (!t->server)
				pool_open_waiting(t);
			else if (atomic_load(&t->w->p->draining))
				hbone_session_shutdown(
					t->h); /* accepted before the drain: GOAWAY */
			progress = true;
		}
		/* Decrypted records go to nghttp2 straight from the TLS engine's buffer. */
		while ((n = tls_io_read_peek(&t->tls, &t->io, &in)) > 0) {
			int rc = hbone_session_push(t->h, in, (size_t)n);

			tls_conn_plain_done(&t->tls, (size_t)n);
			progress = true;
			if (rc < 0) {
				tun_close(t, hbone_session_reason(t->h));
				break;
			}
			if (t->dead)
				break;
		}
		if (t->dead)
			break;
		if (n == 0) {
			tun_close(t, "peer closed the TLS connection");
			break;
		}
		if (n != -E_AGAIN) {
			tun_close(t, tls_conn_reason(&t->tls)[0] ? tls_conn_reason(&t->tls)
								 : err_str((int)-n));
			break;
		}
		for (;;) {
			const uint8_t *out;
			size_t len;
			ssize_t w;

			if (hbone_session_pull(t->h, &out, &len) < 0 || len == 0)
				break;
			/* Frames are packed into full TLS records; the last one is sealed below. */
			w = tls_io_write_more(&t->tls, &t->io, out, len);
			if (w <= 0) {
				hbone_session_pull_done(t->h, 0);
				break;
			}
			hbone_session_pull_done(t->h, (size_t)w);
			progress = true;
		}
		if (tls_io_flush(&t->tls, &t->io) < 0) {
			tun_close(t, tls_conn_reason(&t->tls)[0] ? tls_conn_reason(&t->tls)
								 : "TLS write failed");
			break;
		}
		if (hbone_session_error(t->h) && !hbone_session_want_write(t->h)) {
			tun_close(t, hbone_session_reason(t->h));
			break;
		}
		if (!hbone_session_want_read(t->h) && !hbone_session_want_write(t->h)) {
			tun_close(t, "HTTP/2 session finished");
			break;
		}
	}
	t->running = false;
	if (!t->dead) {
		if (progress) /* stopped by the round limit: go on next iteration */
			tun_kick(t);
		ev_io_set(t->w->loop, &t->io, tls_io_interest(&t->tls));
		tun_arm_tick(t);
	}
}

static void on_kick(struct ev_loop *loop, struct ev_timer *tm)
{
	struct tun *t = ev_container_of(tm, struct tun, kick);

	(void)loop;
	if (t->dead) {
		if (!atomic_load(&t->post_pending))
			tun_free(t);
		return;
	}
	tun_run(t);
}

static void on_tun_timer(struct ev_loop *loop, struct ev_timer *tm)
{
	struct tun *t = ev_container_of(tm, struct tun, timer);

	if (!t->h) {
		tun_close(t, t->connecting ? "connect timed out" : "TLS handshake timed out");
		return;
	}
	if (hbone_session_tick(t->h, ev_now(loop)) < 0) {
		tun_close(t, hbone_session_reason(t->h));
		return;
	}
	tun_run(t);
}

static void on_tun_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct tun *t = ev_container_of(io, struct tun, io);

	(void)loop;
	(void)events;
	if (t->connecting) {
		struct errbuf eb = {0};
		int rc = net_connect_finish(io->fd, &t->peer, &eb);

		if (rc == -E_AGAIN)
			return;
		t->connecting = false;
		if (rc < 0) {
			tun_close(t, eb.msg);
			return;
		}
	}
	tun_run(t);
}

static void on_idle(struct ev_loop *loop, struct ev_timer *tm)
{
	struct tun *t = ev_container_of(tm, struct tun, idle);

	(void)loop;
	if (!t->ends)
		tun_close(t, "idle");
}

static struct tun *tun_new(struct proxy_worker *w, int fd, bool server)
{
	struct tun *t = xcalloc(1, sizeof(*t));

	t->w = w;
	t->server = server;
	ev_io_init(&t->io, fd, on_tun_io);
	ev_timer_init(&t->timer, on_tun_timer);
	ev_timer_init(&t->kick, on_kick);
	ev_timer_init(&t->idle, on_idle);
	atomic_init(&t->post_pending, false);
	if (server)
		atomic_fetch_add(&w->p->n_server_tuns, 1);
	t->next = w->tuns;
	if (w->tuns)
		w->tuns->prev = t;
	w->tuns = t;
	return t;
}

void tun_add_end(struct tun *t, struct end *e)
{
	e->kind = END_H2;
	e->t = t;
	e->tprev = NULL;
	e->tnext = t->ends;
	if (t->ends)
		t->ends->tprev = e;
	t->ends = e;
	ev_timer_del(t->w->loop, &t->idle);
}

void tun_end_gone(struct tun *t)
{
	if (t->server || t->dead || t->ends || !t->h)
		return;
	if (!hbone_session_can_open(t->h)) /* GOAWAY or failed: of no more use */
		tun_close(t, "no stream left on a closing connection");
	else
		ev_timer_add(t->w->loop, &t->idle, t->w->p->o.pool_idle_ms);
}

/* After the handshake: opens the streams of the flows that queued while it ran. */
static void pool_open_waiting(struct tun *t)
{
	struct end *e = t->ends, *next;

	for (; e && !t->dead; e = next) {
		struct errbuf eb = {0};
		int32_t id;

		next = e->tnext;
		if (e->sid > 0)
			continue;
		id = hbone_stream_open(t->h, e->f->hbone_addr, NULL, e, &eb);
		if (id < 0) {
			struct flow *f = e->f;

			if (e->tprev)
				e->tprev->tnext = e->tnext;
			else
				t->ends = e->tnext;
			if (e->tnext)
				e->tnext->tprev = e->tprev;
			e->t = NULL;
			e->tnext = e->tprev = NULL;
			flow_fail(f, "CONNECT", "cannot open the HBONE stream: %s",
				  eb.msg[0] ? eb.msg : "stream limit");
			continue;
		}
		e->sid = id;
	}
	tun_end_gone(t);
}

/* ---- TLS configs --------------------------------------------------------------------------------
 */

static int tun_start_tls(struct tun *t, struct identity_cert *cert, struct errbuf *eb)
{
	struct tls_config *cfg;
	int rc;

	t->peer_check = (struct identity_hbone_peer){
		.trust_domain = t->local_wl ? t->local_wl->trust_domain : "",
		.expect_id = t->expect_id,
	};
	cfg = identity_hbone_tls_config(t->server, cert, &t->peer_check, eb);
	if (!cfg)
		return -E_CRYPTO;
	rc = t->server ? tls_conn_init_server(&t->tls, cfg)
		       : tls_conn_init_client(&t->tls, cfg, NULL);
	tls_config_unref(cfg);
	t->tls_on = true;
	if (rc < 0)
		return errbuf_set(eb, E_CRYPTO, "TLS setup failed");
	ev_timer_add(t->w->loop, &t->timer, PROXY_CONNECT_TIMEOUT_MS);
	return 0;
}

/* ---- 15008: inbound HBONE -----------------------------------------------------------------------
 */

static void server_cert_ready(struct tun *t);
static void client_cert_ready(struct tun *t);

static void cert_post(struct ev_loop *loop, void *arg)
{
	struct tun *t = arg;

	(void)loop;
	atomic_store(&t->post_pending, false);
	if (t->dead) {
		tun_free(t);
		return;
	}
	if (t->server)
		server_cert_ready(t);
	else
		client_cert_ready(t);
}

static void cert_waiter(struct identity_waiter *wt, int status)
{
	struct tun *t = wt->arg;

	(void)status;
	atomic_store(&t->post_pending, true);
	ev_loop_post(t->w->loop, cert_post, t);
}

static void server_cert_ready(struct tun *t)
{
	struct identity_cert *cert = NULL;
	struct errbuf eb = {0};
	int rc = identity_get(t->w->p->o.idm, t->local_wl->identity, &cert, &t->waiter, &eb);

	if (rc == -E_AGAIN)
		return;
	if (rc < 0) {
		tun_close(t, eb.msg);
		return;
	}
	if (tun_start_tls(t, cert, &eb) < 0) {
		tun_close(t, eb.msg);
		return;
	}
	if (ev_io_start(t->w->loop, &t->io, EV_READ | EV_WRITE) < 0) {
		tun_close(t, "cannot watch the socket");
		return;
	}
	tun_run(t);
}

void on_accept_hbone(struct net_listener *l, int fd, const struct net_addr *peer)
{
	struct proxy_lsn *ls = proxy_lsn_of(l);
	struct proxy_worker *w = ls->w;
	struct tun *t = tun_new(w, fd, true);
	struct net_ip nip;
	struct config_ip ip;
	char a[NET_ADDR_STRLEN];

	metrics_counter_inc(w->p->m_hbone_accepted);
	t->peer = *peer;
	t->pod = proxy_pod_ref(ls->pod);
	t->snap = proxy_snap_get(w->p);
	if (net_sock_local(fd, &t->local) < 0 || !t->snap) {
		tun_close(t, "no config or no local address");
		return;
	}
	net_addr_ip(&t->local, &nip);
	proxy_ip_from_net(&ip, &nip);
	t->local_wl = config_workload_by_ip(t->snap->c, "", &ip);
	if (!t->local_wl || !proxy_snap_serves(t->snap, t->local_wl) ||
	    (t->pod && proxy_snap_pod_workload(t->snap, t->pod) != t->local_wl)) {
		log_warn("connection failed",
			 LF_STR("src.addr", net_addr_format(peer, a, sizeof(a))),
			 LF_STR("direction", "inbound"),
			 LF_STR("error", "the dialled address is not a workload served here"));
		tun_close(t, "not a served workload");
		return;
	}
	t->waiter.fn = cert_waiter;
	t->waiter.arg = t;
	server_cert_ready(t);
}

/* ---- the client pool ------------------------------------------------------------------------
 */

#define POOL_MAX_STREAMS 100 /* per connection (hbone_session_can_open enforces it once up) */

static void pool_key(const struct flow *f, char *out, size_t cap)
{
	char src[NET_ADDR_STRLEN], dst[NET_ADDR_STRLEN];
	struct net_ip ip;
	struct net_addr a;

	net_addr_ip(&f->src, &ip);
	net_addr_from_ip(&a, &ip, 0);
	net_addr_format(&a, src, sizeof(src));
	net_addr_format(&f->route.target, dst, sizeof(dst));
	/* A pod's connections live in its netns: never shared with another pod's. */
	snprintf(out, cap, "%s|%s|%s|%s|%llu", f->src_identity, f->dst_id, src, dst,
		 f->pod ? (unsigned long long)f->pod->netns_ino : 0ull);
}

static size_t tun_nends(const struct tun *t)
{
	size_t n = 0;

	for (const struct end *e = t->ends; e; e = e->tnext)
		n++;
	return n;
}

static void client_cert_ready(struct tun *t)
{
	struct identity_cert *cert = NULL;
	struct errbuf eb = {0};
	struct net_connect_opts co = {.mark = PROXY_MARK, .nodelay = true};
	int fd = -1, rc;

	if (t->pod) {
		co.in_netns = true;
		co.netns_fd = t->pod->netns_fd;
	}
	rc = identity_get(t->w->p->o.idm, t->src_identity, &cert, &t->waiter, &eb);
	if (rc == -E_AGAIN)
		return;
	if (rc < 0) {
		tun_close(t, eb.msg);
		return;
	}
	rc = net_connect_start(&t->peer, &co, &fd, &eb);
	if (rc < 0) {
		identity_cert_unref(cert);
		tun_close(t, eb.msg);
		return;
	}
	ev_io_init(&t->io, fd, on_tun_io);
	t->connecting = rc == NET_INPROGRESS;
	metrics_counter_inc(t->w->p->m_pool_opened);
	if (tun_start_tls(t, cert, &eb) < 0) {
		tun_close(t, eb.msg);
		return;
	}
	if (ev_io_start(t->w->loop, &t->io, EV_READ | EV_WRITE) < 0) {
		tun_close(t, "cannot watch the socket");
		return;
	}
	if (!t->connecting)
		tun_run(t);
}

void pool_outbound(struct flow *f)
{
	char key[sizeof(((struct tun *)0)->key)];
	struct tun *t;

	pool_key(f, key, sizeof(key));
	for (t = f->w->tuns; t; t = t->next) {
		if (t->server || t->dead || strcmp(t->key, key) != 0)
			continue;
		if (!t->h) { /* handshaking: queue behind it */
			if (tun_nends(t) >= POOL_MAX_STREAMS)
				continue;
			tun_add_end(t, &f->e[1]);
			return;
		}
		if (hbone_session_can_open(t->h)) {
			struct errbuf eb = {0};
			int32_t id = hbone_stream_open(t->h, f->hbone_addr, NULL, &f->e[1], &eb);

			if (id < 0)
				continue;
			tun_add_end(t, &f->e[1]);
			f->e[1].sid = id;
			tun_kick(t);
			return;
		}
	}
	t = tun_new(f->w, -1, false);
	snprintf(t->key, sizeof(t->key), "%s", key);
	t->peer = f->route.target;
	t->pod = proxy_pod_ref(f->pod);
	t->snap = f->snap;
	atomic_fetch_add(&t->snap->refs, 1);
	t->src_identity = f->src_identity;
	snprintf(t->expect_id, sizeof(t->expect_id), "%s", f->dst_id);
	tun_add_end(t, &f->e[1]);
	t->waiter.fn = cert_waiter;
	t->waiter.arg = t;
	client_cert_ready(t);
}
