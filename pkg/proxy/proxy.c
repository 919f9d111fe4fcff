/* The data plane's flows: per-worker listeners, and flows relaying bytes between sockets and
 * HBONE streams with flow control and half-close (the tunnels are in proxy_pool.c). */
#include "pkg/proxy/proxy_int.h"

#include "pkg/authz/authz.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define FD_OUT_MAX (256u << 10) /* stop reading a socket when its peer's queue holds this */
#define READ_CHUNK (64u << 10)
#define MAX_WORKERS EV_MAX_THREADS

static struct proxy_worker *workers[MAX_WORKERS];

static void flow_close(struct flow *f);
static void end_fd_update(struct end *e);

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

/* One send() of p to e's socket, credited to src's stream when it went out; returns the bytes
 * written (0 on EAGAIN, and on an error, which end_fd_flush() then reports from the queue). */
static size_t end_fd_write_now(struct end *e, struct end *src, const uint8_t *p, size_t n)
{
	ssize_t w;

	do
		w = send(e->io.fd, p, n, MSG_NOSIGNAL);
	while (w < 0 && errno == EINTR);
	if (w <= 0) {
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			ev_io_clear_ready(&e->io, EV_WRITE);
		return 0;
	}
	if ((size_t)w < n)
		ev_io_clear_ready(&e->io, EV_WRITE);
	if (src->kind == END_H2 && src->t && src->sid > 0) {
		hbone_stream_consumed(src->t->h, src->sid, (size_t)w);
		tun_kick(src->t);
	}
	return (size_t)w;
}

static void end_fd_read(struct end *e)
{
	struct end *dst = other(e);
	struct flow *f = e->f;
	static _Thread_local uint8_t tmp[READ_CHUNK];

	for (int round = 0; round < 4 && !e->rd_eof && !f->dead && ev_io_may_read(&e->io);
	     round++) {
		ssize_t n;

		if (dst->kind == END_FD) {
			if (buf_len(&dst->out) >= FD_OUT_MAX)
				break;
			n = ev_io_read(&e->io, &dst->out, READ_CHUNK);
		} else {
			size_t space, cap;
			struct iovec iov[2];
			uint8_t *w;

			if (!dst->t || dst->sid <= 0)
				break;
			/* Into the room the stream's send buffer already has, the rest into tmp
			 * (and then copied, growing the buffer). No room (full) arms
			 * HBONE_EV_WRITABLE, which resumes reading. */
			space = hbone_stream_write_reserve(dst->t->h, dst->sid, &w, &cap);
			if (space == 0)
				break;
			iov[0] = (struct iovec){w, cap};
			iov[1] = (struct iovec){tmp, MIN(space - cap, sizeof(tmp))};
			do
				n = cap ? readv(e->io.fd, iov, iov[1].iov_len ? 2 : 1)
					: readv(e->io.fd, iov + 1, 1);
			while (n < 0 && errno == EINTR);
			if (n < 0) {
				n = (errno == EAGAIN || errno == EWOULDBLOCK)
					    ? -E_AGAIN
					    : net_err_from_errno(errno);
				if (n == -E_AGAIN)
					ev_io_clear_ready(&e->io, EV_READ);
			}
			if (n > 0) {
				size_t k = MIN((size_t)n, cap);

				if ((size_t)n < cap + iov[1].iov_len)
					ev_io_short_read(&e->io);

				hbone_stream_write_commit(dst->t->h, dst->sid, k);
				if ((size_t)n > k)
					hbone_stream_write(dst->t->h, dst->sid, tmp, (size_t)n - k);
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
		live_bytes(f, dir_of(e), (uint64_t)n);
	}
	if (dst->kind == END_FD)
		end_fd_flush(dst);
}

static void flow_check_done(struct flow *f)
{
	if (!f->dead && f->done[0] && f->done[1])
		flow_close(f);
}

static void on_fd(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct end *e = ev_container_of(io, struct end, io);
	struct flow *f = e->f;
	struct errbuf eb = {0};

	(void)loop;
	if (f->socks && e == &f->e[0]) {
		socks_on_fd(f);
		return;
	}
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

int end_fd_start(struct end *e, int fd, bool connecting)
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
		tun_end_gone(t);
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
	socks_dns_cancel(f);
	proxy_snap_put(f->snap);
	proxy_pod_put(f->pod);
	free(f->socks);
	buf_fini(&f->early);
	atomic_fetch_sub(&f->w->p->n_flows, 1);
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
	live_del(f);
	for (int d = 0; d < 2; d++) {
		uint64_t n = __atomic_load_n(&f->e[d].rx, __ATOMIC_RELAXED) - f->counted[d];

		if (n)
			metrics_counter_add(series(f, d == 0 ? p->m_recv : p->m_sent, flags), n);
	}
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

void flow_fail(struct flow *f, const char *flags, const char *fmt, ...)
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
	if (f->socks) { /* answer the SOCKS client, then close its socket gracefully */
		socks_reply(f, strcmp(flags, "DENY") == 0      ? SOCKS5_REP_NOT_ALLOWED
			       : strcmp(flags, "CONNECT") == 0 ? SOCKS5_REP_CONN_REFUSED
							       : SOCKS5_REP_GENERAL_FAILURE);
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

struct flow *flow_new(struct proxy_worker *w, enum flow_kind kind, struct proxy_snap *snap)
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
	atomic_fetch_add(&w->p->n_flows, 1);
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

	if (f->pod) {
		co.in_netns = true;
		co.netns_fd = f->pod->netns_fd;
	}
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

void flow_established(struct flow *f)
{
	f->established = true;
	flow_count_open(f);
	f->live_recv = series(f, f->w->p->m_recv, "-");
	f->live_sent = series(f, f->w->p->m_sent, "-");
	live_add(f);
	if (f->socks) {
		socks_reply(f, SOCKS5_REP_SUCCEEDED);
		if (f->dead)
			return;
	}
	if (buf_len(&f->early) > 0) { /* pipelined after the SOCKS request */
		struct end *up = &f->e[1];

		if (up->kind == END_FD)
			buf_append(&up->out, buf_rptr(&f->early), buf_len(&f->early));
		else if (up->t && up->sid > 0)
			hbone_stream_write(up->t->h, up->sid, buf_rptr(&f->early),
					   buf_len(&f->early));
		buf_fini(&f->early);
	}
	if (f->kind == FLOW_INBOUND_HBONE && f->e[0].t && f->e[0].sid > 0) {
		hbone_stream_respond(f->e[0].t->h, f->e[0].sid, 200);
		tun_kick(f->e[0].t);
	}
	end_fd_update(&f->e[0]);
	end_fd_update(&f->e[1]);
}

/* ---- inbound HBONE requests ---------------------------------------------------------------------
 */

static void inbound_request(struct tun *t, const struct hbone_event *ev)
{
	struct proxy *p = t->w->p;
	struct proxy_snap *snap;
	struct flow *f;
	const struct hbone_request *rq = &ev->request;
	struct authz_result ar;
	struct authz_conn ac = {0};
	struct net_ip nip;
	struct config_ip ip;
	char reason[AUTHZ_REASON_MAX];

	if (proxy_over_limit(p, -1)) {
		hbone_stream_respond(t->h, ev->stream_id, 503);
		tun_kick(t);
		return;
	}
	/* The current snapshot, not the connection's: a pooled connection outlives configs. */
	snap = proxy_snap_get(p);
	if (!snap) {
		snap = t->snap;
		atomic_fetch_add(&snap->refs, 1);
	}
	f = flow_new(t->w, FLOW_INBOUND_HBONE, snap);
	tun_add_end(t, &f->e[0]);
	f->e[0].sid = ev->stream_id;
	hbone_stream_set_user(t->h, ev->stream_id, &f->e[0]);
	f->src = t->peer;
	f->dst = t->local;
	f->mtls = true;
	snprintf(f->src_id, sizeof(f->src_id), "%s", tls_conn_peer_uri(&t->tls));
	net_addr_ip(&t->peer, &nip);
	proxy_ip_from_net(&ip, &nip);
	f->src_wl = config_workload_by_ip(snap->c, "", &ip);
	snprintf(f->hbone_addr, sizeof(f->hbone_addr), "%.*s", (int)rq->authority.n,
		 (const char *)rq->authority.p);
	if (!rq->ok) {
		flow_fail(f, "BAD", "bad CONNECT request: %s", rq->reason ? rq->reason : "?");
		return;
	}
	f->dst = rq->addr;
	net_addr_ip(&rq->addr, &nip);
	proxy_ip_from_net(&ip, &nip);
	f->dst_wl = config_workload_by_ip(snap->c, "", &ip);
	f->pod = proxy_pod_ref(t->pod);
	if (!f->dst_wl || !proxy_snap_serves(snap, f->dst_wl) ||
	    (f->pod && proxy_snap_pod_workload(snap, f->pod) != f->dst_wl)) {
		flow_fail(f, "BAD", "authority %s is not a workload served here", f->hbone_addr);
		return;
	}
	f->dst_id = f->dst_wl->identity;
	proxy_ip_from_net(&ac.src_ip, (net_addr_ip(&t->peer, &nip), &nip));
	ac.src_port = net_addr_port(&t->peer);
	ac.dst_ip = ip;
	ac.dst_port = net_addr_port(&rq->addr);
	ac.src_identity = f->src_id;
	f->ac = ac;
	f->ac.src_identity = f->src_id;
	f->authz_done = true;
	authz_check(snap->c, f->dst_wl, &ac, &ar);
	if (!authz_allowed(&ar)) {
		authz_result_format(&ar, reason, sizeof(reason));
		flow_fail(f, "DENY", "authorization: %s", reason);
		return;
	}
	flow_connect(f, &rq->addr, p->o.preserve_source || f->pod ? &t->peer : NULL);
}

/* e leaves its tunnel's stream list (the stream is over). */
static void end_detach(struct tun *t, struct end *e)
{
	if (e->tprev)
		e->tprev->tnext = e->tnext;
	else
		t->ends = e->tnext;
	if (e->tnext)
		e->tnext->tprev = e->tprev;
	e->tnext = e->tprev = NULL;
	if (t->h && e->sid > 0) /* later events of that stream are not for e any more */
		hbone_stream_set_user(t->h, e->sid, NULL);
	e->sid = 0;
	e->t = NULL;
	tun_end_gone(t);
}

/* An outbound stream the server refused without processing it (REFUSED_STREAM: it sent GOAWAY
 * below our stream, e.g. a ztunnel draining for an upgrade) is safe to retry once, on another
 * connection: the pool skips one that got GOAWAY. */
static bool retry_refused(struct tun *t, struct end *e, uint32_t code)
{
	struct flow *f = e->f;

	if (code != HBONE_REFUSED_STREAM || f->kind != FLOW_OUTBOUND || f->established ||
	    f->retried || e != &f->e[1])
		return false;
	f->retried = true;
	log_debug("proxy: HBONE stream refused (peer draining); retrying on a new connection",
		  LF_STR("dst.hbone_addr", f->hbone_addr));
	end_detach(t, e);
	pool_outbound(f);
	return true;
}

void proxy_tun_event(void *ctx, struct hbone_session *s, const struct hbone_event *ev)
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

		live_bytes(e->f, dir_of(e), ev->data.n);
		if (dst->kind == END_FD && !dst->closed) {
			size_t off = 0;

			/* Nothing queued: write straight from the HTTP/2 frame, queue only the
			 * rest. */
			if (buf_len(&dst->out) == 0 && !dst->connecting && !dst->wr_shut)
				off = end_fd_write_now(dst, e, ev->data.p, ev->data.n);
			if (e->f->dead)
				break;
			if (off < ev->data.n)
				buf_append(&dst->out, ev->data.p + off, ev->data.n - off);
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
		if (retry_refused(t, e, ev->error_code))
			break;
		flow_fail(e->f, "-", "HBONE stream reset by peer: %s",
			  hbone_error_code_str(ev->error_code));
		break;
	case HBONE_EV_CLOSED:
		if (retry_refused(t, e, ev->error_code))
			break;
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

			end_detach(t, e);
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

static void on_accept_outbound(struct net_listener *l, int fd, const struct net_addr *peer)
{
	struct proxy_lsn *ls = proxy_lsn_of(l);
	struct proxy_worker *w = ls->w;
	struct proxy *p = w->p;
	struct proxy_snap *snap;
	struct flow *f;
	struct errbuf eb = {0};
	struct net_ip nip;
	struct config_ip ip;
	const struct net_ip *locals;
	size_t n_locals;

	if (proxy_over_limit(p, fd))
		return;
	snap = proxy_snap_get(p);
	f = flow_new(w, FLOW_OUTBOUND, snap);
	f->pod = proxy_pod_ref(ls->pod);
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
	proxy_locals(snap, f->pod, &locals, &n_locals);
	if (proxy_is_loop(&f->dst, locals, n_locals, p->ports, ARRAY_LEN(p->ports))) {
		flow_fail(f, "-", "refusing a connection to our own listener (loop)");
		return;
	}
	if (f->pod) { /* the workload whose netns the listener is in */
		f->src_wl = proxy_snap_pod_workload(snap, f->pod);
	} else {
		net_addr_ip(peer, &nip);
		proxy_ip_from_net(&ip, &nip);
		f->src_wl = config_workload_by_ip(snap->c, "", &ip);
		if (f->src_wl && !proxy_snap_serves(snap, f->src_wl))
			f->src_wl = NULL;
	}
	proxy_outbound_dispatch(f);
}

void proxy_outbound_dispatch(struct flow *f)
{
	struct proxy *p = f->w->p;
	struct proxy_snap *snap = f->snap;

	proxy_decide_outbound(snap->c, f->src_wl, &f->dst, rand_below(UINT32_MAX), p->o.hbone_port,
			      &f->route);
	f->dst_wl = f->route.dst;
	f->svc = f->route.svc;
	switch (f->route.kind) {
	case PROXY_ROUTE_FAIL: flow_fail(f, "-", "%s", f->route.reason); return;
	case PROXY_ROUTE_TCP:
	case PROXY_ROUTE_PASSTHROUGH: flow_connect(f, &f->route.target, NULL); return;
	case PROXY_ROUTE_HBONE: break;
	}
	if (!f->src_wl) {
		if (f->pod)
			flow_fail(f, "IDENTITY_ERROR",
				  "enrolled workload %s has no match in the mesh config yet",
				  f->pod->uid);
		else
			flow_fail(f, "IDENTITY_ERROR", "source %s is not a workload served here",
				  net_addr_format(&f->src, f->hbone_addr, sizeof(f->hbone_addr)));
		return;
	}
	f->mtls = true;
	f->src_identity = f->src_wl->identity;
	snprintf(f->src_id, sizeof(f->src_id), "%s", f->src_identity);
	f->dst_id = f->route.waypoint ? f->route.waypoint->identity : f->dst_wl->identity;
	snprintf(f->hbone_addr, sizeof(f->hbone_addr), "%s", f->route.authority);
	f->dst = f->route.target;
	pool_outbound(f);
}

/* ---- 15006: inbound plaintext -------------------------------------------------------------------
 */

static void on_accept_inbound(struct net_listener *l, int fd, const struct net_addr *peer)
{
	struct proxy_lsn *ls = proxy_lsn_of(l);
	struct proxy_worker *w = ls->w;
	struct proxy *p = w->p;
	const struct net_ip *locals;
	size_t n_locals;
	struct proxy_snap *snap;
	struct flow *f;
	struct errbuf eb = {0};
	struct authz_conn ac = {0};
	struct authz_result ar;
	struct net_ip nip;
	char reason[AUTHZ_REASON_MAX];

	if (proxy_over_limit(p, fd))
		return;
	snap = proxy_snap_get(p);
	f = flow_new(w, FLOW_INBOUND_PLAIN, snap);
	f->pod = proxy_pod_ref(ls->pod);
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
	proxy_locals(snap, f->pod, &locals, &n_locals);
	if (proxy_is_loop(&f->dst, locals, n_locals, p->ports, ARRAY_LEN(p->ports))) {
		flow_fail(f, "-", "refusing a connection to our own listener (loop)");
		return;
	}
	net_addr_ip(peer, &nip);
	proxy_ip_from_net(&ac.src_ip, &nip);
	f->src_wl = config_workload_by_ip(snap->c, "", &ac.src_ip);
	net_addr_ip(&f->dst, &nip);
	proxy_ip_from_net(&ac.dst_ip, &nip);
	f->dst_wl = config_workload_by_ip(snap->c, "", &ac.dst_ip);
	if (!f->dst_wl || !proxy_snap_serves(snap, f->dst_wl) ||
	    (f->pod && proxy_snap_pod_workload(snap, f->pod) != f->dst_wl)) {
		flow_fail(f, "-", "destination is not a workload served here");
		return;
	}
	f->dst_id = f->dst_wl->identity;
	ac.src_port = net_addr_port(peer);
	ac.dst_port = net_addr_port(&f->dst);
	f->ac = ac;
	f->authz_done = true;
	authz_check(snap->c, f->dst_wl, &ac, &ar);
	if (!authz_allowed(&ar)) {
		authz_result_format(&ar, reason, sizeof(reason));
		flow_fail(f, "DENY", "authorization: %s", reason);
		return;
	}
	flow_connect(f, &f->dst, p->o.preserve_source || f->pod ? peer : NULL);
}

/* ---- workers ------------------------------------------------------------------------------------
 */

struct proxy_worker *proxy_worker_get(unsigned i)
{
	return i < MAX_WORKERS ? workers[i] : NULL;
}

void proxy_worker_stop_listening(struct proxy_worker *w)
{
	for (int i = 0; i < LSN_N; i++)
		if (w->lsn[i].on) {
			net_listener_stop(&w->lsn[i].l);
			w->lsn[i].on = false;
		}
	proxy_pods_worker_stop(w->p, w);
}

const net_accept_fn proxy_accept_cbs[LSN_N] = {on_accept_inbound, on_accept_outbound,
					       on_accept_hbone, on_accept_socks};

int proxy_worker_start(struct proxy *p, struct ev_loop *loop, unsigned worker, struct errbuf *eb)
{
	struct proxy_worker *w;
	const uint16_t ports[LSN_N] = {p->o.inbound_port, p->o.outbound_port, p->o.hbone_port,
				       p->o.socks5_port};
	struct net_listen_opts lo = {.reuseport = true};

	if (worker >= MAX_WORKERS || (p->o.shared && worker >= p->o.workers))
		return errbuf_set(eb, E_LIMIT, "too many workers");
	w = xcalloc(1, sizeof(*w));
	w->p = p;
	w->loop = loop;
	w->idx = worker;
	for (int i = 0; i < LSN_N && !p->o.shared; i++) {
		struct net_addr a;
		char s[32];

		if (!ports[i])
			continue; /* SOCKS5 off */
		/* SOCKS5 has no authentication: loopback only. */
		snprintf(s, sizeof(s), "%s:%u", i == LSN_SOCKS ? "127.0.0.1" : "", ports[i]);
		w->lsn[i].w = w;
		if (net_addr_parse(&a, s, eb) < 0 ||
		    net_listener_start(&w->lsn[i].l, loop, &a, &lo, proxy_accept_cbs[i], &w->lsn[i],
				       eb) < 0) {
			for (int k = 0; k < i; k++)
				if (w->lsn[k].on)
					net_listener_stop(&w->lsn[k].l);
			free(w);
			return -E_IO;
		}
		w->lsn[i].on = true;
	}
	workers[worker] = w;
	atomic_store(&p->loops[worker], loop);
	if (worker + 1 > p->workers_want)
		p->workers_want = worker + 1;
	atomic_fetch_add(&p->workers_up, 1);
	if (p->o.shared)
		proxy_pods_worker_start(p, w);
	return 0;
}

void proxy_worker_stop(struct proxy *p, struct ev_loop *loop, unsigned worker)
{
	struct proxy_worker *w = worker < MAX_WORKERS ? workers[worker] : NULL;

	(void)loop;
	if (!w || w->p != p)
		return;
	atomic_fetch_sub(&p->workers_up, 1);
	atomic_store(&p->loops[worker], NULL);
	proxy_worker_stop_listening(w);
	if (p->o.shared)
		proxy_pods_worker_fini(p, w);
	while (w->flows) {
		struct flow *f = w->flows;

		flow_fail(f, "-", "shutting down");
		ev_timer_del(loop, &f->reaper);
		if (!atomic_load(&f->post_pending)) {
			socks_dns_cancel(f);
			proxy_snap_put(f->snap);
			proxy_pod_put(f->pod);
			free(f->socks);
			buf_fini(&f->early);
			atomic_fetch_sub(&p->n_flows, 1);
			free(f);
		}
	}
	while (w->tuns) {
		struct tun *t = w->tuns;

		tun_close(t, "shutting down");
		ev_timer_del(loop, &t->kick);
		ev_timer_del(loop, &t->timer);
		ev_timer_del(loop, &t->idle);
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
