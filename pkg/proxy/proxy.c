/* The data plane's I/O: per-worker listeners, flows relaying bytes between sockets and HBONE
 * streams with flow control and half-close, and the TLS + HTTP/2 tunnels they ride on. */
#include "pkg/proxy/proxy_int.h"

#include "pkg/authz/authz.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FD_OUT_MAX (256u << 10) /* stop reading a socket when its peer's queue holds this */
#define READ_CHUNK (64u << 10)
#define MAX_WORKERS EV_MAX_THREADS

struct proxy_worker {
	struct proxy *p;
	struct ev_loop *loop;
	unsigned idx;
	struct net_listener l[3]; /* inbound, outbound, hbone */
	struct flow *flows;
	struct tun *tuns;
};

static struct proxy_worker *workers[MAX_WORKERS];

enum flow_kind { FLOW_OUTBOUND = 0, FLOW_INBOUND_HBONE, FLOW_INBOUND_PLAIN };

struct flow {
	struct proxy_worker *w;
	struct flow *next, *prev;
	struct proxy_snap *snap;
	enum flow_kind kind;
	struct end e[2]; /* 0: the client side (downstream), 1: the server side (upstream) */
	struct net_addr src, dst; /* client address; L4 destination we dialled / were dialled at */
	char hbone_addr[HBONE_AUTHORITY_MAX + 1];
	const struct config_workload *src_wl, *dst_wl;
	const struct config_service *svc;
	char src_id[TLS_URI_SIZE];
	const char *dst_id;
	bool mtls;
	uint64_t start_ms;
	struct ev_timer timer;	/* connect timeout */
	struct ev_timer reaper; /* frees a dead flow after the current callbacks */
	bool done[2];		/* direction d (e[d] -> e[1-d]) finished with a half-close */
	bool established, dead, opened_counted;
	const char *flags; /* response_flags */
	char err[384];
	/* Outbound HBONE: waiting for the source certificate. */
	struct identity_waiter waiter;
	atomic_bool post_pending;
	const char *src_identity;
	struct proxy_route route;
};

struct tun {
	struct proxy_worker *w;
	struct tun *next, *prev;
	struct ev_io io;
	struct ev_timer timer; /* connect/handshake timeout, then HTTP/2 keepalive ticks */
	struct ev_timer kick;  /* runs the pump after the current callbacks; frees when dead */
	struct tls_conn tls;
	bool tls_on, server, connecting, running, dead;
	struct hbone_session *h;
	struct end *ends;
	struct net_addr peer, local;
	/* server */
	struct proxy_snap *snap;
	const struct config_workload *local_wl;
	struct identity_waiter waiter;
	atomic_bool post_pending;
	/* client */
	struct flow *owner;
	char expect_id[TLS_URI_SIZE];
	char why[256];
};

static void flow_fail(struct flow *f, const char *flags, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void flow_close(struct flow *f);
static void end_fd_update(struct end *e);
static void tun_kick(struct tun *t);
static void tun_close(struct tun *t, const char *why);

static struct end *other(struct end *e)
{
	return e == &e->f->e[0] ? &e->f->e[1] : &e->f->e[0];
}

static int dir_of(struct end *from)
{
	return from == &from->f->e[0] ? 0 : 1;
}

/* ---- ends: plain sockets ----------------------------------------------------------------------
 */

static bool source_eof(struct end *src)
{
	return src->kind == END_FD ? src->rd_eof : src->h2_eof;
}

static void end_fd_flush(struct end *e)
{
	struct end *src = other(e);
	struct flow *f = e->f;
	ssize_t n;

	while (buf_len(&e->out) > 0) {
		n = ev_io_write(&e->io, &e->out);
		if (n == -E_AGAIN || n == 0)
			break;
		if (n < 0) {
			flow_fail(f, "-", "write to %s: %s", e == &f->e[0] ? "client" : "server",
				  err_str((int)-n));
			return;
		}
		if (src->kind == END_H2 && src->t && src->sid > 0) {
			hbone_stream_consumed(src->t->h, src->sid, (size_t)n);
			tun_kick(src->t);
		}
	}
	if (buf_len(&e->out) == 0 && source_eof(src) && !e->wr_shut) {
		shutdown(e->io.fd, SHUT_WR);
		e->wr_shut = true;
		f->done[dir_of(src)] = true;
	}
}

static void end_fd_read(struct end *e)
{
	struct end *dst = other(e);
	struct flow *f = e->f;
	static _Thread_local uint8_t tmp[READ_CHUNK];

	for (int round = 0; round < 4 && !e->rd_eof && !f->dead; round++) {
		ssize_t n;

		if (dst->kind == END_FD) {
			if (buf_len(&dst->out) >= FD_OUT_MAX)
				break;
			n = ev_io_read(&e->io, &dst->out, READ_CHUNK);
		} else {
			size_t space;

			if (!dst->t || dst->sid <= 0)
				break;
			space = hbone_stream_write_space(dst->t->h, dst->sid);
			if (space == 0) {
				/* A refused write arms HBONE_EV_WRITABLE, which resumes reading. */
				hbone_stream_write(dst->t->h, dst->sid, tmp, 1);
				break;
			}
			n = read(e->io.fd, tmp, space < sizeof(tmp) ? space : sizeof(tmp));
			if (n < 0) {
				n = (errno == EAGAIN || errno == EWOULDBLOCK)
					    ? -E_AGAIN
					    : net_err_from_errno(errno);
				if (n == -E_AGAIN)
					ev_io_clear_ready(&e->io, EV_READ);
			}
			if (n > 0) {
				hbone_stream_write(dst->t->h, dst->sid, tmp, (size_t)n);
				tun_kick(dst->t);
			}
		}
		if (n == -E_AGAIN)
			break;
		if (n < 0) {
			flow_fail(f, "-", "read from %s: %s", e == &f->e[0] ? "client" : "server",
				  err_str((int)-n));
			return;
		}
		if (n == 0) {
			e->rd_eof = true;
			if (dst->kind == END_H2) {
				if (dst->t && dst->sid > 0) {
					hbone_stream_shutdown_write(dst->t->h, dst->sid);
					tun_kick(dst->t);
				}
				f->done[dir_of(e)] = true;
			}
			break;
		}
		e->rx += (uint64_t)n;
	}
	if (dst->kind == END_FD)
		end_fd_flush(dst);
}

static void flow_check_done(struct flow *f)
{
	if (!f->dead && f->done[0] && f->done[1])
		flow_close(f);
}

static void flow_established(struct flow *f);

static void on_fd(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct end *e = ev_container_of(io, struct end, io);
	struct flow *f = e->f;
	struct errbuf eb = {0};

	(void)loop;
	if (e->connecting) {
		int rc = net_connect_finish(io->fd, &f->dst, &eb);

		if (rc == -E_AGAIN)
			return;
		e->connecting = false;
		ev_timer_del(f->w->loop, &f->timer);
		if (rc < 0) {
			flow_fail(f, "CONNECT", "%s", eb.msg);
			return;
		}
		flow_established(f);
		return;
	}
	(void)events;
	if (buf_len(&e->out) > 0)
		end_fd_flush(e);
	if (!f->dead)
		end_fd_read(e);
	if (!f->dead) {
		end_fd_update(&f->e[0]);
		end_fd_update(&f->e[1]);
		flow_check_done(f);
	}
}

static void end_fd_update(struct end *e)
{
	unsigned want = 0;
	struct end *dst;

	if (e->kind != END_FD || e->closed || e->f->dead)
		return;
	dst = other(e);
	if (e->connecting)
		want = EV_WRITE;
	else {
		if (buf_len(&e->out) > 0)
			want |= EV_WRITE;
		if (e->f->established && !e->rd_eof) {
			if (dst->kind == END_FD && buf_len(&dst->out) < FD_OUT_MAX)
				want |= EV_READ;
			if (dst->kind == END_H2 && dst->t && dst->sid > 0) {
				static const uint8_t probe = 0;

				if (hbone_stream_write_space(dst->t->h, dst->sid) > 0)
					want |= EV_READ;
				else /* arms HBONE_EV_WRITABLE */
					hbone_stream_write(dst->t->h, dst->sid, &probe, 1);
			}
		}
	}
	ev_io_set(e->f->w->loop, &e->io, want);
}

static int end_fd_start(struct end *e, int fd, bool connecting)
{
	e->kind = END_FD;
	e->connecting = connecting;
	buf_init(&e->out, 0);
	ev_io_init(&e->io, fd, on_fd);
	if (ev_io_start(e->f->w->loop, &e->io, connecting ? EV_WRITE : 0) < 0) {
		close(fd);
		e->closed = true;
		return -E_IO;
	}
	return 0;
}

static void end_close(struct end *e, bool abort)
{
	struct flow *f = e->f;

	if (e->kind == END_FD && !e->closed) {
		ev_io_stop(f->w->loop, &e->io);
		if (abort)
			net_sock_abort(e->io.fd);
		else
			close(e->io.fd);
		e->closed = true;
		buf_fini(&e->out);
	} else if (e->kind == END_H2 && e->t) {
		struct tun *t = e->t;

		if (e->sid > 0 && t->h) {
			if (abort)
				hbone_stream_reset(t->h, e->sid, HBONE_CANCEL);
			hbone_stream_set_user(t->h, e->sid, NULL);
		}
		if (e->tprev)
			e->tprev->tnext = e->tnext;
		else
			t->ends = e->tnext;
		if (e->tnext)
			e->tnext->tprev = e->tprev;
		e->t = NULL;
		e->sid = 0;
		if (t->owner == f) { /* our own client tunnel: drain it and close */
			t->owner = NULL;
			if (t->h && !abort)
				hbone_session_shutdown(t->h);
			else
				tun_close(t, abort ? "flow failed" : "flow done");
		}
		tun_kick(t);
	}
}

/* ---- flows --------------------------------------------------------------------------------------
 */

static const char *or_unknown(const char *s)
{
	return s && *s ? s : "unknown";
}

static struct metrics_series *series(struct flow *f, struct metrics_family *fam, const char *flags)
{
	const struct config_workload *s = f->src_wl, *d = f->dst_wl;
	const char *v[14] = {
		f->kind == FLOW_OUTBOUND ? "source" : "destination",
		or_unknown(s ? s->workload_name[0] ? s->workload_name : s->name : NULL),
		or_unknown(s ? s->canonical_name : NULL),
		or_unknown(s ? s->namespace : NULL),
		or_unknown(f->src_id),
		or_unknown(f->svc ? f->svc->hostname : NULL),
		or_unknown(f->svc ? f->svc->namespace : NULL),
		or_unknown(d ? d->workload_name[0] ? d->workload_name : d->name : NULL),
		or_unknown(d ? d->canonical_name : NULL),
		or_unknown(d ? d->namespace : NULL),
		or_unknown(f->dst_id),
		"tcp",
		flags,
		f->mtls ? "mutual_tls" : "unknown",
	};
	return metrics_counter_with(fam, v);
}

static void flow_count_open(struct flow *f)
{
	if (f->opened_counted)
		return;
	f->opened_counted = true;
	metrics_counter_inc(series(f, f->w->p->m_opened, "-"));
}

static void access_log(struct flow *f)
{
	char src[NET_ADDR_STRLEN], dst[NET_ADDR_STRLEN], dur[32];
	const struct config_workload *s = f->src_wl, *d = f->dst_wl;
	uint64_t ms = time_mono_ms() - f->start_ms;
	const struct log_field fl[] = {
		LF_STR("src.addr", net_addr_format(&f->src, src, sizeof(src))),
		LF_STR("src.workload", s ? s->name : ""),
		LF_STR("src.namespace", s ? s->namespace : ""),
		LF_STR("src.identity", f->src_id),
		LF_STR("dst.addr", net_addr_format(&f->dst, dst, sizeof(dst))),
		LF_STR("dst.hbone_addr", f->hbone_addr),
		LF_STR("dst.service", f->svc ? f->svc->hostname : ""),
		LF_STR("dst.workload", d ? d->name : ""),
		LF_STR("dst.namespace", d ? d->namespace : ""),
		LF_STR("dst.identity", f->dst_id ? f->dst_id : ""),
		LF_STR("direction", f->kind == FLOW_OUTBOUND ? "outbound" : "inbound"),
		LF_U64("bytes_sent", f->e[0].rx),
		LF_U64("bytes_recv", f->e[1].rx),
		LF_STR("duration",
		       (snprintf(dur, sizeof(dur), "%llums", (unsigned long long)ms), dur)),
		LF_STR("error", f->err),
	};
	log_write(f->err[0] ? LOG_ERROR : LOG_INFO, "connection complete", fl, ARRAY_LEN(fl));
}

static void on_reap(struct ev_loop *loop, struct ev_timer *t)
{
	struct flow *f = ev_container_of(t, struct flow, reaper);

	(void)loop;
	if (atomic_load(&f->post_pending))
		return; /* the identity post frees it */
	proxy_snap_put(f->snap);
	free(f);
}

static void flow_finish(struct flow *f, bool abort)
{
	struct proxy *p = f->w->p;
	const char *flags = f->err[0] ? f->flags ? f->flags : "-" : "-";

	if (f->dead)
		return;
	f->dead = true;
	ev_timer_del(f->w->loop, &f->timer);
	if (f->waiter.fn)
		identity_waiter_cancel(p->o.idm, &f->waiter);
	end_close(&f->e[0], abort);
	end_close(&f->e[1], abort);
	flow_count_open(f);
	metrics_counter_inc(series(f, p->m_closed, flags));
	metrics_counter_add(series(f, p->m_recv, flags), f->e[0].rx);
	metrics_counter_add(series(f, p->m_sent, flags), f->e[1].rx);
	access_log(f);
	if (f->prev)
		f->prev->next = f->next;
	else
		f->w->flows = f->next;
	if (f->next)
		f->next->prev = f->prev;
	ev_timer_add(f->w->loop, &f->reaper, 0);
}

static void flow_close(struct flow *f)
{
	flow_finish(f, false);
}

static void flow_fail(struct flow *f, const char *flags, const char *fmt, ...)
{
	va_list ap;

	if (f->dead)
		return;
	if (!f->err[0]) {
		va_start(ap, fmt);
		vsnprintf(f->err, sizeof(f->err), fmt, ap);
		va_end(ap);
		f->flags = flags;
	}
	/* Inbound HBONE before the tunnel opened: answer with a status instead of a reset. */
	if (f->kind == FLOW_INBOUND_HBONE && !f->established && f->e[0].t && f->e[0].sid > 0) {
		int status = strcmp(flags, "DENY") == 0	 ? 401
			     : strcmp(flags, "BAD") == 0 ? 400
							 : 503;

		hbone_stream_respond(f->e[0].t->h, f->e[0].sid, status);
		if (strcmp(flags, "BAD") == 0)
			f->flags = "-";
		end_close(&f->e[0], false);
	}
	flow_finish(f, true);
}

static void on_connect_timeout(struct ev_loop *loop, struct ev_timer *t)
{
	struct flow *f = ev_container_of(t, struct flow, timer);

	(void)loop;
	flow_fail(f, "CONNECT", "connect %s: timed out after %u ms",
		  f->kind == FLOW_INBOUND_HBONE ? "to the application" : "upstream",
		  PROXY_CONNECT_TIMEOUT_MS);
}

static struct flow *flow_new(struct proxy_worker *w, enum flow_kind kind, struct proxy_snap *snap)
{
	struct flow *f = xcalloc(1, sizeof(*f));

	f->w = w;
	f->kind = kind;
	f->snap = snap;
	f->e[0].f = f;
	f->e[1].f = f;
	f->start_ms = time_mono_ms();
	ev_timer_init(&f->timer, on_connect_timeout);
	ev_timer_init(&f->reaper, on_reap);
	atomic_init(&f->post_pending, false);
	f->next = w->flows;
	if (w->flows)
		w->flows->prev = f;
	w->flows = f;
	return f;
}

/* Connects e[1] to addr (SO_MARK, optional transparent source), with the connect timeout. */
static void flow_connect(struct flow *f, const struct net_addr *addr, const struct net_addr *src)
{
	struct net_connect_opts co = {.mark = PROXY_MARK, .nodelay = true};
	struct errbuf eb = {0};
	int fd = -1, rc = -1;

	f->dst = *addr;
	if (src) {
		struct net_addr local = *src;

		net_addr_set_port(&local, 0);
		co.local = &local;
		co.transparent = true;
		rc = net_connect_start(addr, &co, &fd, &eb);
		if (rc < 0) {
			log_warn("proxy: original source bind failed, using a normal connect",
				 LF_STR("reason", eb.msg));
			co.local = NULL;
			co.transparent = false;
			errbuf_clear(&eb);
		}
	}
	if (rc < 0)
		rc = net_connect_start(addr, &co, &fd, &eb);
	if (rc < 0) {
		flow_fail(f, "CONNECT", "%s", eb.msg);
		return;
	}
	if (end_fd_start(&f->e[1], fd, rc == NET_INPROGRESS) < 0) {
		flow_fail(f, "CONNECT", "cannot watch the upstream socket");
		return;
	}
	if (rc == NET_INPROGRESS)
		ev_timer_add(f->w->loop, &f->timer, PROXY_CONNECT_TIMEOUT_MS);
	else
		flow_established(f);
}

static void flow_established(struct flow *f)
{
	f->established = true;
	flow_count_open(f);
	if (f->kind == FLOW_INBOUND_HBONE && f->e[0].t && f->e[0].sid > 0) {
		hbone_stream_respond(f->e[0].t->h, f->e[0].sid, 200);
		tun_kick(f->e[0].t);
	}
	end_fd_update(&f->e[0]);
	end_fd_update(&f->e[1]);
}

/* ---- tunnels ------------------------------------------------------------------------------------
 */

static void tun_free(struct tun *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		t->w->tuns = t->next;
	if (t->next)
		t->next->prev = t->prev;
	hbone_session_free(t->h);
	if (t->tls_on)
		tls_conn_fini(&t->tls);
	proxy_snap_put(t->snap);
	free(t);
}

static void on_kick(struct ev_loop *loop, struct ev_timer *tm);

static void tun_close(struct tun *t, const char *why)
{
	struct end *e;

	if (t->dead)
		return;
	t->dead = true;
	snprintf(t->why, sizeof(t->why), "%s", why);
	if (t->waiter.fn)
		identity_waiter_cancel(t->w->p->o.idm, &t->waiter);
	ev_timer_del(t->w->loop, &t->timer);
	if (t->io.fd >= 0) {
		ev_io_stop(t->w->loop, &t->io);
		close(t->io.fd);
		t->io.fd = -1;
	}
	/* Detach every stream first, then fail their flows (which no longer touch us). */
	while ((e = t->ends)) {
		t->ends = e->tnext;
		e->t = NULL;
		e->sid = 0;
		e->tnext = e->tprev = NULL;
		flow_fail(e->f, t->server ? "-" : "CONNECT", "HBONE connection %s: %s",
			  t->server ? "from peer" : "upstream", why);
	}
	if (t->owner) {
		struct flow *f = t->owner;

		t->owner = NULL;
		flow_fail(f, "CONNECT", "HBONE upstream: %s", why);
	}
	ev_timer_add(t->w->loop, &t->kick, 0);
}

static void tun_kick(struct tun *t)
{
	if (!ev_timer_active(&t->kick))
		ev_timer_add(t->w->loop, &t->kick, 0);
}

static void tun_event(void *ctx, struct hbone_session *s, const struct hbone_event *ev);

static void tun_arm_tick(struct tun *t)
{
	if (t->h && !t->dead)
		ev_timer_add_at(t->w->loop, &t->timer, hbone_session_next_tick(t->h));
}

static void tun_run(struct tun *t)
{
	static _Thread_local uint8_t tmp[16384];
	bool progress = true;

	if (t->running || t->dead || t->connecting)
		return;
	t->running = true;
	for (int rounds = 0; progress && rounds < 64 && !t->dead; rounds++) {
		int st = tls_io_pump(&t->tls, &t->io);
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
				.on_event = tun_event,
				.ctx = t,
			};
			t->h = hbone_session_new(&hc, ev_now(t->w->loop));
			if (!t->h) {
				tun_close(t, "cannot create the HTTP/2 session");
				break;
			}
			ev_timer_del(t->w->loop, &t->timer);
			if (!t->server && t->owner) {
				struct flow *f = t->owner;
				struct errbuf eb = {0};
				int32_t id =
					hbone_stream_open(t->h, f->hbone_addr, NULL, &f->e[1], &eb);

				if (id < 0) {
					tun_close(t, eb.msg[0] ? eb.msg : "cannot open the stream");
					break;
				}
				f->e[1].sid = id;
			}
			progress = true;
		}
		while ((n = tls_io_read(&t->tls, &t->io, tmp, sizeof(tmp))) > 0) {
			progress = true;
			if (hbone_session_push(t->h, tmp, (size_t)n) < 0) {
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
			w = tls_io_write(&t->tls, &t->io, out, len);
			if (w <= 0) {
				hbone_session_pull_done(t->h, 0);
				break;
			}
			hbone_session_pull_done(t->h, (size_t)w);
			progress = true;
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

static struct tun *tun_new(struct proxy_worker *w, int fd, bool server)
{
	struct tun *t = xcalloc(1, sizeof(*t));

	t->w = w;
	t->server = server;
	ev_io_init(&t->io, fd, on_tun_io);
	ev_timer_init(&t->timer, on_tun_timer);
	ev_timer_init(&t->kick, on_kick);
	atomic_init(&t->post_pending, false);
	t->next = w->tuns;
	if (w->tuns)
		w->tuns->prev = t;
	w->tuns = t;
	return t;
}

static void tun_add_end(struct tun *t, struct end *e)
{
	e->kind = END_H2;
	e->t = t;
	e->tprev = NULL;
	e->tnext = t->ends;
	if (t->ends)
		t->ends->tprev = e;
	t->ends = e;
}

/* ---- inbound HBONE requests ---------------------------------------------------------------------
 */

static void inbound_request(struct tun *t, const struct hbone_event *ev)
{
	struct proxy *p = t->w->p;
	struct flow *f = flow_new(t->w, FLOW_INBOUND_HBONE, t->snap);
	const struct hbone_request *rq = &ev->request;
	struct authz_result ar;
	struct authz_conn ac = {0};
	struct net_ip nip;
	struct config_ip ip;
	char reason[AUTHZ_REASON_MAX];

	atomic_fetch_add(&t->snap->refs, 1);
	tun_add_end(t, &f->e[0]);
	f->e[0].sid = ev->stream_id;
	hbone_stream_set_user(t->h, ev->stream_id, &f->e[0]);
	f->src = t->peer;
	f->dst = t->local;
	f->mtls = true;
	snprintf(f->src_id, sizeof(f->src_id), "%s", tls_conn_peer_uri(&t->tls));
	net_addr_ip(&t->peer, &nip);
	proxy_ip_from_net(&ip, &nip);
	f->src_wl = config_workload_by_ip(t->snap->c, "", &ip);
	snprintf(f->hbone_addr, sizeof(f->hbone_addr), "%.*s", (int)rq->authority.n,
		 (const char *)rq->authority.p);
	if (!rq->ok) {
		flow_fail(f, "BAD", "bad CONNECT request: %s", rq->reason ? rq->reason : "?");
		return;
	}
	f->dst = rq->addr;
	net_addr_ip(&rq->addr, &nip);
	proxy_ip_from_net(&ip, &nip);
	f->dst_wl = config_workload_by_ip(t->snap->c, "", &ip);
	if (!f->dst_wl || !proxy_snap_serves(t->snap, f->dst_wl)) {
		flow_fail(f, "BAD", "authority %s is not a workload served here", f->hbone_addr);
		return;
	}
	f->dst_id = f->dst_wl->identity;
	proxy_ip_from_net(&ac.src_ip, (net_addr_ip(&t->peer, &nip), &nip));
	ac.src_port = net_addr_port(&t->peer);
	ac.dst_ip = ip;
	ac.dst_port = net_addr_port(&rq->addr);
	ac.src_identity = f->src_id;
	authz_check(t->snap->c, f->dst_wl, &ac, &ar);
	if (!authz_allowed(&ar)) {
		authz_result_format(&ar, reason, sizeof(reason));
		flow_fail(f, "DENY", "authorization: %s", reason);
		return;
	}
	flow_connect(f, &rq->addr, p->o.preserve_source ? &t->peer : NULL);
}

static void tun_event(void *ctx, struct hbone_session *s, const struct hbone_event *ev)
{
	struct tun *t = ctx;
	struct end *e = ev->stream_user;

	(void)s;
	if (ev->type == HBONE_EV_REQUEST) {
		if (t->server)
			inbound_request(t, ev);
		return;
	}
	if (!e || e->f->dead)
		return;
	switch (ev->type) {
	case HBONE_EV_RESPONSE:
		if (ev->status == 200)
			flow_established(e->f);
		else
			flow_fail(e->f, ev->status == 401 ? "DENY" : "CONNECT",
				  "upstream answered HBONE CONNECT with %d", ev->status);
		break;
	case HBONE_EV_DATA: {
		struct end *dst = other(e);

		e->rx += ev->data.n;
		if (dst->kind == END_FD && !dst->closed) {
			buf_append(&dst->out, ev->data.p, ev->data.n);
			end_fd_flush(dst);
			if (!e->f->dead)
				end_fd_update(dst);
		}
		break;
	}
	case HBONE_EV_PEER_EOF: {
		struct end *dst = other(e);

		e->h2_eof = true;
		if (dst->kind == END_FD && !dst->closed && !dst->connecting) {
			end_fd_flush(dst);
			if (!e->f->dead) {
				end_fd_update(dst);
				flow_check_done(e->f);
			}
		}
		break;
	}
	case HBONE_EV_WRITABLE: end_fd_update(other(e)); break;
	case HBONE_EV_RESET:
		flow_fail(e->f, "-", "HBONE stream reset by peer: %s",
			  hbone_error_code_str(ev->error_code));
		break;
	case HBONE_EV_CLOSED:
		if (ev->error_code) {
			flow_fail(e->f, "-", "HBONE stream closed: %s",
				  hbone_error_code_str(ev->error_code));
			break;
		}
		if (e->f->kind == FLOW_OUTBOUND && !e->f->established) {
			flow_fail(e->f, "CONNECT", "HBONE stream closed before the response");
			break;
		}
		/* Both END_STREAMs were exchanged: what is left is flushing the socket. */
		e->h2_eof = true;
		{
			struct end *dst = other(e);
			struct flow *f = e->f;

			if (e->tprev)
				e->tprev->tnext = e->tnext;
			else
				t->ends = e->tnext;
			if (e->tnext)
				e->tnext->tprev = e->tprev;
			e->sid = 0;
			e->t = NULL;
			if (t->owner == f) {
				t->owner = NULL;
				hbone_session_shutdown(t->h);
			}
			if (dst->kind == END_FD && !dst->closed) {
				end_fd_flush(dst);
				if (!f->dead)
					end_fd_update(dst);
			}
			if (!f->dead)
				flow_check_done(f);
		}
		break;
	default: break;
	}
}

/* ---- TLS configs --------------------------------------------------------------------------------
 */

static int verify_server_side(void *arg, const struct tls_peer *peer, char *reason, size_t cap)
{
	struct tun *t = arg;
	struct slice a = proxy_trust_domain(peer->uri);
	const char *td = t->local_wl ? t->local_wl->trust_domain : "";

	if (!a.p) {
		snprintf(reason, cap, "client certificate has no SPIFFE ID");
		return 1;
	}
	if (a.n != strlen(td) || memcmp(a.p, td, a.n) != 0) {
		snprintf(reason, cap, "wrong trust domain (want %s)", td);
		return 1;
	}
	return 0;
}

static int verify_client_side(void *arg, const struct tls_peer *peer, char *reason, size_t cap)
{
	struct tun *t = arg;

	if (strcmp(peer->uri, t->expect_id) != 0) {
		snprintf(reason, cap, "server identity %s is not the expected %s",
			 peer->uri[0] ? peer->uri : "(none)", t->expect_id);
		return 1;
	}
	return 0;
}

static const char *const alpn_h2[] = {"h2"};

static int tun_start_tls(struct tun *t, struct identity_cert *cert, struct errbuf *eb)
{
	struct tls_config *cfg;
	int rc;

	if (t->server) {
		struct tls_server_opts o = {
			.chain = cert->chain,
			.chain_len = cert->chain_len,
			.key = cert->key,
			.alpn = alpn_h2,
			.alpn_len = 1,
			.alpn_required = true,
			.client_auth = TLS_CLIENT_AUTH_REQUIRE,
			.anchor_certs = cert->roots,
			.anchor_certs_len = cert->roots_len,
			.verify = verify_server_side,
			.verify_arg = t,
		};
		cfg = tls_config_new_server(&o, eb);
	} else {
		struct tls_client_opts o = {
			.anchor_certs = cert->roots,
			.anchor_certs_len = cert->roots_len,
			.chain = cert->chain,
			.chain_len = cert->chain_len,
			.key = cert->key,
			.alpn = alpn_h2,
			.alpn_len = 1,
			.alpn_required = true,
			.verify = verify_client_side,
			.verify_arg = t,
		};
		cfg = tls_config_new_client(&o, eb);
	}
	identity_cert_unref(cert);
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

static void server_cert_post(struct ev_loop *loop, void *arg)
{
	struct tun *t = arg;

	(void)loop;
	atomic_store(&t->post_pending, false);
	if (t->dead) {
		tun_free(t);
		return;
	}
	server_cert_ready(t);
}

static void server_cert_waiter(struct identity_waiter *wt, int status)
{
	struct tun *t = wt->arg;

	(void)status;
	atomic_store(&t->post_pending, true);
	ev_loop_post(t->w->loop, server_cert_post, t);
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

static void on_accept_hbone(struct net_listener *l, int fd, const struct net_addr *peer)
{
	struct proxy_worker *w = l->arg;
	struct tun *t = tun_new(w, fd, true);
	struct net_ip nip;
	struct config_ip ip;
	char a[NET_ADDR_STRLEN];

	t->peer = *peer;
	t->snap = proxy_snap_get(w->p);
	if (net_sock_local(fd, &t->local) < 0 || !t->snap) {
		tun_close(t, "no config or no local address");
		return;
	}
	net_addr_ip(&t->local, &nip);
	proxy_ip_from_net(&ip, &nip);
	t->local_wl = config_workload_by_ip(t->snap->c, "", &ip);
	if (!t->local_wl || !proxy_snap_serves(t->snap, t->local_wl)) {
		log_warn("connection failed",
			 LF_STR("src.addr", net_addr_format(peer, a, sizeof(a))),
			 LF_STR("direction", "inbound"),
			 LF_STR("error", "the dialled address is not a workload served here"));
		tun_close(t, "not a served workload");
		return;
	}
	t->waiter.fn = server_cert_waiter;
	t->waiter.arg = t;
	server_cert_ready(t);
}

/* ---- 15001: outbound ----------------------------------------------------------------------------
 */

static void outbound_hbone(struct flow *f);

static void outbound_cert_post(struct ev_loop *loop, void *arg)
{
	struct flow *f = arg;

	(void)loop;
	atomic_store(&f->post_pending, false);
	if (f->dead) {
		if (!ev_timer_active(&f->reaper))
			ev_timer_add(f->w->loop, &f->reaper, 0);
		return;
	}
	outbound_hbone(f);
}

static void outbound_cert_waiter(struct identity_waiter *wt, int status)
{
	struct flow *f = wt->arg;

	(void)status;
	atomic_store(&f->post_pending, true);
	ev_loop_post(f->w->loop, outbound_cert_post, f);
}

static void outbound_hbone(struct flow *f)
{
	struct identity_cert *cert = NULL;
	struct errbuf eb = {0};
	struct net_connect_opts co = {.mark = PROXY_MARK, .nodelay = true};
	struct tun *t;
	int fd = -1, rc;

	rc = identity_get(f->w->p->o.idm, f->src_identity, &cert, &f->waiter, &eb);
	if (rc == -E_AGAIN)
		return;
	if (rc < 0) {
		flow_fail(f, "IDENTITY_ERROR", "no certificate for %s: %s", f->src_identity,
			  eb.msg);
		return;
	}
	rc = net_connect_start(&f->route.target, &co, &fd, &eb);
	if (rc < 0) {
		identity_cert_unref(cert);
		flow_fail(f, "CONNECT", "%s", eb.msg);
		return;
	}
	t = tun_new(f->w, fd, false);
	t->peer = f->route.target;
	t->owner = f;
	t->connecting = rc == NET_INPROGRESS;
	snprintf(t->expect_id, sizeof(t->expect_id), "%s", f->dst_id);
	tun_add_end(t, &f->e[1]);
	if (tun_start_tls(t, cert, &eb) < 0) {
		tun_close(t, eb.msg);
		return;
	}
	if (ev_io_start(f->w->loop, &t->io, EV_READ | EV_WRITE) < 0) {
		tun_close(t, "cannot watch the socket");
		return;
	}
	if (!t->connecting)
		tun_run(t);
}

static void on_accept_outbound(struct net_listener *l, int fd, const struct net_addr *peer)
{
	struct proxy_worker *w = l->arg;
	struct proxy *p = w->p;
	struct proxy_snap *snap = proxy_snap_get(p);
	struct flow *f = flow_new(w, FLOW_OUTBOUND, snap);
	struct errbuf eb = {0};
	struct net_ip nip;
	struct config_ip ip;

	f->src = *peer;
	if (end_fd_start(&f->e[0], fd, false) < 0) {
		flow_fail(f, "-", "cannot watch the client socket");
		return;
	}
	if (!snap) {
		flow_fail(f, "-", "no mesh config loaded yet");
		return;
	}
	if (net_sock_original_dst(fd, &f->dst, &eb) < 0) {
		flow_fail(f, "-", "original destination: %s", eb.msg);
		return;
	}
	if (proxy_is_loop(&f->dst, snap->local, snap->n_local, p->ports, ARRAY_LEN(p->ports))) {
		flow_fail(f, "-", "refusing a connection to our own listener (loop)");
		return;
	}
	net_addr_ip(peer, &nip);
	proxy_ip_from_net(&ip, &nip);
	f->src_wl = config_workload_by_ip(snap->c, "", &ip);
	if (f->src_wl && !proxy_snap_serves(snap, f->src_wl))
		f->src_wl = NULL;
	proxy_decide_outbound(snap->c, &f->dst, rand_below(UINT32_MAX), p->o.hbone_port, &f->route);
	f->dst_wl = f->route.dst;
	f->svc = f->route.svc;
	switch (f->route.kind) {
	case PROXY_ROUTE_FAIL: flow_fail(f, "-", "%s", f->route.reason); return;
	case PROXY_ROUTE_TCP:
	case PROXY_ROUTE_PASSTHROUGH: flow_connect(f, &f->route.target, NULL); return;
	case PROXY_ROUTE_HBONE: break;
	}
	if (!f->src_wl) {
		flow_fail(f, "IDENTITY_ERROR", "source %s is not a workload served here",
			  net_addr_format(peer, f->hbone_addr, sizeof(f->hbone_addr)));
		return;
	}
	f->mtls = true;
	f->src_identity = f->src_wl->identity;
	snprintf(f->src_id, sizeof(f->src_id), "%s", f->src_identity);
	f->dst_id = f->dst_wl->identity;
	snprintf(f->hbone_addr, sizeof(f->hbone_addr), "%s", f->route.authority);
	f->dst = f->route.target;
	f->waiter.fn = outbound_cert_waiter;
	f->waiter.arg = f;
	outbound_hbone(f);
}

/* ---- 15006: inbound plaintext -------------------------------------------------------------------
 */

static void on_accept_inbound(struct net_listener *l, int fd, const struct net_addr *peer)
{
	struct proxy_worker *w = l->arg;
	struct proxy *p = w->p;
	struct proxy_snap *snap = proxy_snap_get(p);
	struct flow *f = flow_new(w, FLOW_INBOUND_PLAIN, snap);
	struct errbuf eb = {0};
	struct authz_conn ac = {0};
	struct authz_result ar;
	struct net_ip nip;
	char reason[AUTHZ_REASON_MAX];

	f->src = *peer;
	if (end_fd_start(&f->e[0], fd, false) < 0) {
		flow_fail(f, "-", "cannot watch the client socket");
		return;
	}
	if (!snap) {
		flow_fail(f, "-", "no mesh config loaded yet");
		return;
	}
	if (net_sock_original_dst(fd, &f->dst, &eb) < 0 && net_sock_local(fd, &f->dst) < 0) {
		flow_fail(f, "-", "no original or local destination");
		return;
	}
	if (proxy_is_loop(&f->dst, snap->local, snap->n_local, p->ports, ARRAY_LEN(p->ports))) {
		flow_fail(f, "-", "refusing a connection to our own listener (loop)");
		return;
	}
	net_addr_ip(peer, &nip);
	proxy_ip_from_net(&ac.src_ip, &nip);
	f->src_wl = config_workload_by_ip(snap->c, "", &ac.src_ip);
	net_addr_ip(&f->dst, &nip);
	proxy_ip_from_net(&ac.dst_ip, &nip);
	f->dst_wl = config_workload_by_ip(snap->c, "", &ac.dst_ip);
	if (!f->dst_wl || !proxy_snap_serves(snap, f->dst_wl)) {
		flow_fail(f, "-", "destination is not a workload served here");
		return;
	}
	f->dst_id = f->dst_wl->identity;
	ac.src_port = net_addr_port(peer);
	ac.dst_port = net_addr_port(&f->dst);
	authz_check(snap->c, f->dst_wl, &ac, &ar);
	if (!authz_allowed(&ar)) {
		authz_result_format(&ar, reason, sizeof(reason));
		flow_fail(f, "DENY", "authorization: %s", reason);
		return;
	}
	flow_connect(f, &f->dst, p->o.preserve_source ? peer : NULL);
}

/* ---- workers ------------------------------------------------------------------------------------
 */

int proxy_worker_start(struct proxy *p, struct ev_loop *loop, unsigned worker, struct errbuf *eb)
{
	struct proxy_worker *w;
	const uint16_t ports[3] = {p->o.inbound_port, p->o.outbound_port, p->o.hbone_port};
	const net_accept_fn cbs[3] = {on_accept_inbound, on_accept_outbound, on_accept_hbone};
	struct net_listen_opts lo = {.reuseport = true};

	if (worker >= MAX_WORKERS)
		return errbuf_set(eb, E_LIMIT, "too many workers");
	w = xcalloc(1, sizeof(*w));
	w->p = p;
	w->loop = loop;
	w->idx = worker;
	for (int i = 0; i < 3; i++) {
		struct net_addr a;
		char s[16];

		snprintf(s, sizeof(s), ":%u", ports[i]);
		if (net_addr_parse(&a, s, eb) < 0 ||
		    net_listener_start(&w->l[i], loop, &a, &lo, cbs[i], w, eb) < 0) {
			for (int k = 0; k < i; k++)
				net_listener_stop(&w->l[k]);
			free(w);
			return -E_IO;
		}
	}
	workers[worker] = w;
	if (worker + 1 > p->workers_want)
		p->workers_want = worker + 1;
	atomic_fetch_add(&p->workers_up, 1);
	return 0;
}

void proxy_worker_stop(struct proxy *p, struct ev_loop *loop, unsigned worker)
{
	struct proxy_worker *w = worker < MAX_WORKERS ? workers[worker] : NULL;

	(void)loop;
	if (!w || w->p != p)
		return;
	atomic_fetch_sub(&p->workers_up, 1);
	for (int i = 0; i < 3; i++)
		net_listener_stop(&w->l[i]);
	while (w->flows) {
		struct flow *f = w->flows;

		flow_fail(f, "-", "shutting down");
		ev_timer_del(loop, &f->reaper);
		if (!atomic_load(&f->post_pending)) {
			proxy_snap_put(f->snap);
			free(f);
		}
	}
	while (w->tuns) {
		struct tun *t = w->tuns;

		tun_close(t, "shutting down");
		ev_timer_del(loop, &t->kick);
		ev_timer_del(loop, &t->timer);
		if (atomic_load(&t->post_pending)) {
			/* its post frees it; unlink now */
			w->tuns = t->next;
			if (t->next)
				t->next->prev = NULL;
			t->next = t->prev = NULL;
			continue;
		}
		tun_free(t);
	}
	workers[worker] = NULL;
	free(w);
}
