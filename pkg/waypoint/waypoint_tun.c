/* HBONE tunnels of the waypoint (TLS 1.2 + HTTP/2, DESIGN.md §2): the 15008 server side with the
 * waypoint's own certificate, and the per-worker pool of client connections to endpoints'
 * ztunnels. The pump follows pkg/proxy's tunnels. */
#include "pkg/waypoint/waypoint_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void wtun_free(struct wtun *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		t->wk->tuns = t->next;
	if (t->next)
		t->next->prev = t->prev;
	ev_timer_del(t->wk->loop, &t->kick);
	ev_timer_del(t->wk->loop, &t->timer);
	ev_timer_del(t->wk->loop, &t->idle);
	hbone_session_free(t->h);
	if (t->tls_on)
		tls_conn_fini(&t->tls);
	wp_snap_put(t->snap);
	free(t);
}

void wtun_close(struct wtun *t, const char *why)
{
	struct wstream *s;

	if (t->dead)
		return;
	t->dead = true;
	snprintf(t->why, sizeof(t->why), "%s", why);
	if (t->tls_on && !(tls_conn_state(&t->tls) & TLS_ST_DONE)) {
		char peer[NET_ADDR_STRLEN];
		log_warn(t->server ? "hbone handshake refused" : "hbone handshake failed",
			 LF_STR("peer.addr", net_addr_format(&t->peer, peer, sizeof(peer))),
			 LF_ERR(why));
	}
	if (t->waiter.fn)
		identity_waiter_cancel(t->wk->w->o.idm, &t->waiter);
	ev_timer_del(t->wk->loop, &t->timer);
	ev_timer_del(t->wk->loop, &t->idle);
	if (t->io.fd >= 0) {
		ev_io_stop(t->wk->loop, &t->io);
		close(t->io.fd);
		t->io.fd = -1;
	}
	while ((s = t->streams)) {
		t->streams = s->next;
		s->t = NULL;
		s->sid = 0;
		s->next = s->prev = NULL;
		wp_stream_gone(s, why);
	}
	ev_timer_add(t->wk->loop, &t->kick, 0);
}

void wtun_kick(struct wtun *t)
{
	if (t && !t->dead && !ev_timer_active(&t->kick))
		ev_timer_add(t->wk->loop, &t->kick, 0);
}

void wtun_add(struct wtun *t, struct wstream *s)
{
	s->t = t;
	s->prev = NULL;
	s->next = t->streams;
	if (t->streams)
		t->streams->prev = s;
	t->streams = s;
	ev_timer_del(t->wk->loop, &t->idle);
}

void wtun_del(struct wstream *s)
{
	struct wtun *t = s->t;

	if (!t)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		t->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->t = NULL;
	s->next = s->prev = NULL;
	if (!t->server && !t->dead && !t->streams && t->h) {
		if (!hbone_session_can_open(t->h))
			wtun_close(t, "no stream left on a closing connection");
		else
			ev_timer_add(t->wk->loop, &t->idle,
				     t->wk->w->o.pool_idle_ms ? t->wk->w->o.pool_idle_ms
							      : 5 * 60 * 1000);
	}
}

static void on_event(void *ctx, struct hbone_session *h, const struct hbone_event *ev)
{
	struct wtun *t = ctx;

	(void)h;
	if (ev->type == HBONE_EV_GOAWAY) {
		/* The destination's ztunnel drains: its idle streams take no new exchange. */
		if (!t->server) {
			t->goaway = true;
			wp_pool_drop_tunnel(t);
		}
		return;
	}
	if (t->server)
		wp_down_event(t, ev);
	else if (ev->stream_user)
		wp_up_event(t, ev->stream_user, ev);
}

static size_t send_data(void *ctx, const uint8_t *hd, size_t hdlen, const uint8_t *p, size_t n)
{
	struct wtun *t = ctx;
	ssize_t w = tls_io_write_more(&t->tls, &t->io, hd, hdlen);

	if (w <= 0)
		return 0;
	if ((size_t)w < hdlen)
		return (size_t)w;
	w = tls_io_write_more(&t->tls, &t->io, p, n);
	return hdlen + (w > 0 ? (size_t)w : 0);
}

static void open_waiting(struct wtun *t)
{
	struct wstream *s = t->streams, *next;

	for (; s && !t->dead; s = next) {
		struct errbuf eb = {0};
		int32_t id;

		next = s->next;
		if (s->sid > 0)
			continue;
		id = hbone_stream_open(t->h, s->authority, NULL, s, &eb);
		if (id < 0) {
			wtun_del(s);
			wp_stream_gone(s, eb.msg[0] ? eb.msg : "cannot open the HBONE stream");
			continue;
		}
		s->sid = id;
		wp_up_event(t, s,
			    &(struct hbone_event){.type = HBONE_EV_WRITABLE, .stream_id = id});
	}
}

static const char *tls_why(struct wtun *t, const char *dflt)
{
	return tls_conn_reason(&t->tls)[0] ? tls_conn_reason(&t->tls) : dflt;
}

static void wtun_run(struct wtun *t)
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
			wtun_close(t, tls_why(t, "TLS failure"));
			break;
		}
		if (!(st & TLS_ST_DONE))
			break;
		if (!t->h) {
			struct hbone_config hc = {
				.role = t->server ? HBONE_SERVER : HBONE_CLIENT,
				.on_event = on_event,
				.ctx = t,
				.send_data = send_data,
			};
			t->h = hbone_session_new(&hc, ev_now(t->wk->loop));
			if (!t->h) {
				wtun_close(t, "cannot create the HTTP/2 session");
				break;
			}
			if (t->server)
				snprintf(t->peer_id, sizeof(t->peer_id), "%s",
					 tls_conn_peer_uri(&t->tls));
			ev_timer_del(t->wk->loop, &t->timer);
			if (!t->server)
				open_waiting(t);
			progress = true;
		}
		while ((n = tls_io_read_peek(&t->tls, &t->io, &in)) > 0) {
			int rc = hbone_session_push(t->h, in, (size_t)n);

			tls_conn_plain_done(&t->tls, (size_t)n);
			progress = true;
			if (rc < 0) {
				wtun_close(t, hbone_session_reason(t->h));
				break;
			}
			if (t->dead)
				break;
		}
		if (t->dead)
			break;
		if (n == 0) {
			wtun_close(t, "peer closed the TLS connection");
			break;
		}
		if (n != -E_AGAIN) {
			wtun_close(t, tls_why(t, err_str((int)-n)));
			break;
		}
		for (;;) {
			const uint8_t *out;
			size_t len;
			ssize_t w;

			if (hbone_session_pull(t->h, &out, &len) < 0 || len == 0)
				break;
			w = tls_io_write_more(&t->tls, &t->io, out, len);
			if (w <= 0) {
				hbone_session_pull_done(t->h, 0);
				break;
			}
			hbone_session_pull_done(t->h, (size_t)w);
			progress = true;
		}
		if (tls_io_flush(&t->tls, &t->io) < 0) {
			wtun_close(t, tls_why(t, "TLS write failed"));
			break;
		}
		if (hbone_session_error(t->h) && !hbone_session_want_write(t->h)) {
			wtun_close(t, hbone_session_reason(t->h));
			break;
		}
		if (!hbone_session_want_read(t->h) && !hbone_session_want_write(t->h)) {
			wtun_close(t, "HTTP/2 session finished");
			break;
		}
	}
	t->running = false;
	if (!t->dead) {
		if (progress)
			wtun_kick(t);
		ev_io_set(t->wk->loop, &t->io, tls_io_interest(&t->tls));
		if (t->h)
			ev_timer_add_at(t->wk->loop, &t->timer, hbone_session_next_tick(t->h));
	}
}

static void on_kick(struct ev_loop *loop, struct ev_timer *tm)
{
	struct wtun *t = ev_container_of(tm, struct wtun, kick);

	(void)loop;
	if (t->dead) {
		if (!atomic_load(&t->post_pending))
			wtun_free(t);
		return;
	}
	wtun_run(t);
}

static void on_timer(struct ev_loop *loop, struct ev_timer *tm)
{
	struct wtun *t = ev_container_of(tm, struct wtun, timer);

	if (!t->h) {
		wtun_close(t, t->connecting ? "connect timed out" : "TLS handshake timed out");
		return;
	}
	if (hbone_session_tick(t->h, ev_now(loop)) < 0) {
		wtun_close(t, hbone_session_reason(t->h));
		return;
	}
	wtun_run(t);
}

static void on_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct wtun *t = ev_container_of(io, struct wtun, io);

	(void)loop;
	(void)events;
	if (t->connecting) {
		struct errbuf eb = {0};
		int rc = net_connect_finish(io->fd, &t->peer, &eb);

		if (rc == -E_AGAIN)
			return;
		t->connecting = false;
		if (rc < 0) {
			wtun_close(t, eb.msg);
			return;
		}
	}
	wtun_run(t);
}

static void on_idle(struct ev_loop *loop, struct ev_timer *tm)
{
	struct wtun *t = ev_container_of(tm, struct wtun, idle);

	(void)loop;
	if (!t->streams)
		wtun_close(t, "idle");
}

static struct wtun *wtun_new(struct wp_worker *wk, int fd, bool server)
{
	struct wtun *t = xcalloc(1, sizeof(*t));

	t->wk = wk;
	t->server = server;
	ev_io_init(&t->io, fd, on_io);
	ev_timer_init(&t->timer, on_timer);
	ev_timer_init(&t->kick, on_kick);
	ev_timer_init(&t->idle, on_idle);
	atomic_init(&t->post_pending, false);
	t->next = wk->tuns;
	if (wk->tuns)
		wk->tuns->prev = t;
	wk->tuns = t;
	return t;
}

/* ---- TLS ------------------------------------------------------------------------------------- */

static int start_tls(struct wtun *t, struct identity_cert *cert, struct errbuf *eb)
{
	struct tls_config *cfg;
	int rc;

	t->peer_check = (struct identity_hbone_peer){
		.trust_domain = t->snap && t->snap->self ? t->snap->self->trust_domain : "",
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
	ev_timer_add(t->wk->loop, &t->timer, WP_CONNECT_TIMEOUT_MS);
	return 0;
}

static void cert_ready(struct wtun *t);

static void cert_post(struct ev_loop *loop, void *arg)
{
	struct wtun *t = arg;

	(void)loop;
	atomic_store(&t->post_pending, false);
	if (t->dead) {
		wtun_free(t);
		return;
	}
	cert_ready(t);
}

static void cert_waiter(struct identity_waiter *wt, int status)
{
	struct wtun *t = wt->arg;

	(void)status;
	atomic_store(&t->post_pending, true);
	ev_loop_post(t->wk->loop, cert_post, t);
}

/* Both sides present the waypoint's own certificate. */
static void cert_ready(struct wtun *t)
{
	struct identity_cert *cert = NULL;
	struct errbuf eb = {0};
	int rc = identity_get(t->wk->w->o.idm, t->snap->self->identity, &cert, &t->waiter, &eb);

	if (rc == -E_AGAIN)
		return;
	if (rc < 0) {
		wtun_close(t, eb.msg);
		return;
	}
	if (!t->server) {
		struct net_connect_opts co = {.nodelay = true};
		int fd = -1;
		rc = net_connect_start(&t->peer, &co, &fd, &eb);
		if (rc < 0) {
			identity_cert_unref(cert);
			wtun_close(t, eb.msg);
			return;
		}
		ev_io_init(&t->io, fd, on_io);
		t->connecting = rc == NET_INPROGRESS;
	}
	if (start_tls(t, cert, &eb) < 0) {
		wtun_close(t, eb.msg);
		return;
	}
	if (ev_io_start(t->wk->loop, &t->io, EV_READ | EV_WRITE) < 0) {
		wtun_close(t, "cannot watch the socket");
		return;
	}
	if (!t->connecting)
		wtun_run(t);
}

void wp_on_accept(struct net_listener *l, int fd, const struct net_addr *peer)
{
	struct wp_worker *wk = l->arg;
	struct wtun *t;

	/* HTTP/2 frames of one response (HEADERS, then DATA) leave in separate writes: without
	 * TCP_NODELAY, Nagle holds the second until the peer's delayed ACK (~40 ms). */
	(void)net_sock_set_nodelay(fd, true);
	t = wtun_new(wk, fd, true);
	metrics_counter_inc(wk->w->m_accepted);
	t->peer = *peer;
	t->snap = wp_snap_get(wk->w);
	if (net_sock_local(fd, &t->local) < 0 || !t->snap || !t->snap->self) {
		wtun_close(t, "no config, or this waypoint is not in it");
		return;
	}
	t->waiter.fn = cert_waiter;
	t->waiter.arg = t;
	cert_ready(t);
}

/* ---- the client pool ------------------------------------------------------------------------- */

int wp_upstream_open(struct wp_worker *wk, struct wp_snap *snap, struct wstream *s,
		     const struct net_addr *target, const char *authority, const char *dst_id,
		     struct errbuf *eb)
{
	char key[sizeof(((struct wtun *)0)->key)], dst[NET_ADDR_STRLEN];
	struct wtun *t;
	size_t n;

	if (!snap->self)
		return errbuf_set(eb, E_STATE, "this waypoint is not in the config");
	s->up = true;
	s->sid = 0;
	snprintf(s->authority, sizeof(s->authority), "%s", authority);
	snprintf(key, sizeof(key), "%s|%s", dst_id, net_addr_format(target, dst, sizeof(dst)));
	for (t = wk->tuns; t; t = t->next) {
		if (t->server || t->dead || strcmp(t->key, key) != 0)
			continue;
		if (!t->h) {
			n = 0;
			for (struct wstream *x = t->streams; x; x = x->next)
				n++;
			if (n >= HBONE_CLIENT_MAX_STREAMS)
				continue;
			wtun_add(t, s);
			return 0;
		}
		if (hbone_session_can_open(t->h)) {
			int32_t id = hbone_stream_open(t->h, authority, NULL, s, eb);
			if (id < 0)
				continue;
			wtun_add(t, s);
			s->sid = id;
			wtun_kick(t);
			return 0;
		}
	}
	t = wtun_new(wk, -1, false);
	snprintf(t->key, sizeof(t->key), "%s", key);
	snprintf(t->expect_id, sizeof(t->expect_id), "%s", dst_id);
	t->peer = *target;
	t->snap = snap;
	atomic_fetch_add(&snap->refs, 1);
	wtun_add(t, s);
	t->waiter.fn = cert_waiter;
	t->waiter.arg = t;
	cert_ready(t);
	return 0;
}

int wp_stream_flush(struct wstream *s, struct buf *out)
{
	bool wrote = false;

	if (s->tcp) {
		wp_tcp_flush((struct ustr *)s);
		return 0;
	}
	if (!s->t || s->sid <= 0 || !s->t->h)
		return 0;
	while (buf_len(out)) {
		ssize_t n = hbone_stream_write(s->t->h, s->sid, buf_rptr(out), buf_len(out));
		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		buf_consume(out, (size_t)n);
		wrote = true;
	}
	if (wrote)
		wtun_kick(s->t);
	return 0;
}

void wtun_close_all(struct wp_worker *wk)
{
	while (wk->tuns) {
		struct wtun *t = wk->tuns;
		wtun_close(t, "shutting down");
		if (atomic_load(&t->post_pending)) {
			/* An identity post is queued on the stopped loop: it will never run. */
			wk->tuns = t->next;
			if (t->next)
				t->next->prev = NULL;
			continue;
		}
		wtun_free(t);
	}
}
