/* Upstream keep-alive: idle upstream streams, per worker and endpoint, reused by later requests.
 *
 * After an exchange whose request and response both ended cleanly, and whose response lets the
 * connection persist (RFC 9112 §9.3), the upstream stream (an HBONE stream through the
 * destination's ztunnel to the backend's TCP connection, or a plain-TCP socket) is parked here
 * instead of being closed. The next request to the same endpoint (workload uid and target port)
 * on this worker takes the most recently parked one (LIFO: the warmest connection).
 *
 *   exchange done --keep-alive, nothing buffered--> idle --taken--> in use (a new exchange)
 *                                                    |
 *      backend EOF / unexpected bytes / reset ------+--> dropped (half-closed or reset, freed
 *      idle > WP_UP_IDLE_MS, pool full, GOAWAY,      |    when its stream closes)
 *      drain, worker stop ---------------------------+
 *
 * An idle stream has no exchange (u->x is NULL) and u->idle set; its events arrive in
 * wp_pool_event. A backend may close an idle connection at any moment (its own keep-alive
 * timeout): WP_UP_IDLE_MS stays below the common 5 s defaults, and a request whose reused
 * stream ends before any response byte is re-sent once on a fresh stream when it is idempotent
 * (waypoint_http.c, upstream_failed). */
#include "pkg/waypoint/waypoint_int.h"

#include <stdlib.h>
#include <string.h>

static struct wp_idle *pool_find(struct wp_worker *wk, const char *uid, uint16_t port, bool tcp)
{
	for (size_t i = 0; i < wk->n_idle; i++) {
		struct wp_idle *p = &wk->idle[i];
		if (p->port == port && p->tcp == tcp && strcmp(p->uid, uid) == 0)
			return p;
	}
	return NULL;
}

static void pool_unlink(struct ustr *u)
{
	struct wp_idle *p = &u->wk->idle[u->pool_slot];

	if (u->iprev)
		u->iprev->inext = u->inext;
	else
		p->head = u->inext;
	if (u->inext)
		u->inext->iprev = u->iprev;
	u->inext = u->iprev = NULL;
	p->n--;
	u->wk->n_idle_streams--;
	u->idle = false;
}

void wp_pool_remove(struct ustr *u)
{
	if (u->idle)
		pool_unlink(u);
}

/* Ends an idle stream for good: half-closed when clean (the backend sees the EOF a client that
 * is done would send), reset otherwise. */
static void pool_drop(struct ustr *u, bool clean)
{
	pool_unlink(u);
	wp_ustr_release(u, clean);
}

/* Whether u's connection can still carry a request. */
static bool usable(const struct ustr *u)
{
	if (u->closed || u->peer_eof || buf_len(&u->in) || buf_len(&u->out))
		return false;
	if (u->s.tcp)
		return u->tcp_fd >= 0;
	/* A connection that got a GOAWAY (its ztunnel drains) or failed takes no new exchange. */
	return u->s.t && !u->s.t->dead && !u->s.t->goaway && u->s.t->h && u->s.sid > 0 &&
	       hbone_session_error(u->s.t->h) == 0;
}

static void on_sweep(struct ev_loop *loop, struct ev_timer *tm)
{
	struct wp_worker *wk = ev_container_of(tm, struct wp_worker, pool_sweep);
	uint64_t now = time_mono_ms();

	(void)loop;
	for (size_t i = 0; i < wk->n_idle; i++) {
		/* Oldest last: walk from the tail of each list. */
		struct ustr *u = wk->idle[i].head, *last = NULL;
		while (u) {
			last = u;
			u = u->inext;
		}
		while (last && now - last->idle_since_ms >= WP_UP_IDLE_MS) {
			struct ustr *prev = last->iprev;
			pool_drop(last, true);
			last = prev;
		}
	}
	if (wk->n_idle_streams)
		ev_timer_add(wk->loop, &wk->pool_sweep, WP_UP_IDLE_MS / 4);
}

bool wp_pool_put(struct wp_worker *wk, struct ustr *u, const char *uid, uint16_t port)
{
	struct wp_idle *p;

	if (!uid || u->mirror || u->idle || atomic_load(&wk->w->draining) || wk->stopping)
		return false;
	if (!usable(u))
		return false;
	p = pool_find(wk, uid, port, u->s.tcp);
	if (!p) {
		if (wk->n_idle == wk->cap_idle) {
			wk->cap_idle = wk->cap_idle ? 2 * wk->cap_idle : 8;
			wk->idle = xrealloc(wk->idle, wk->cap_idle * sizeof(*wk->idle));
		}
		p = &wk->idle[wk->n_idle++];
		*p = (struct wp_idle){.uid = xstrdup(uid), .port = port, .tcp = u->s.tcp};
	}
	if (p->n >= WP_UP_IDLE_PER_ENDPOINT)
		return false;
	/* The response's bytes were all consumed: give the stream its whole window back. */
	if (!u->s.tcp && u->unacked) {
		hbone_stream_consumed(u->s.t->h, u->s.sid, u->unacked);
		u->unacked = 0;
		wtun_kick(u->s.t);
	}
	u->x = NULL;
	u->wk = wk;
	u->pool_slot = (size_t)(p - wk->idle);
	u->idle = true;
	u->idle_since_ms = time_mono_ms();
	u->iprev = NULL;
	u->inext = p->head;
	if (p->head)
		p->head->iprev = u;
	p->head = u;
	p->n++;
	if (wk->n_idle_streams++ == 0 && !ev_timer_active(&wk->pool_sweep))
		ev_timer_add(wk->loop, &wk->pool_sweep, WP_UP_IDLE_MS / 4);
	return true;
}

struct ustr *wp_pool_take(struct wp_worker *wk, const char *uid, uint16_t port, bool tcp,
			  const char *identity)
{
	struct wp_idle *p = wk->n_idle_streams ? pool_find(wk, uid, port, tcp) : NULL;
	uint64_t now = time_mono_ms();

	while (p && p->head) {
		struct ustr *u = p->head;
		/* The tunnel must still expect the endpoint's identity (the config may have
		 * changed it since). */
		if (!usable(u) || now - u->idle_since_ms >= WP_UP_IDLE_MS ||
		    (!u->s.tcp && strcmp(u->s.t->expect_id, identity ? identity : "") != 0)) {
			pool_drop(u, !u->closed && !buf_len(&u->in));
			continue;
		}
		pool_unlink(u);
		return u;
	}
	return NULL;
}

void wp_pool_event(struct ustr *u, bool data)
{
	/* Bytes or an EOF from the backend while nothing was asked: the connection is not
	 * reusable. Unexpected bytes are logged (a backend that answers twice, say). */
	if (data)
		log_debug("waypoint: unexpected bytes on an idle upstream connection",
			  LF_STR("upstream", u->s.authority));
	pool_drop(u, !data);
}

void wp_pool_drop_tunnel(struct wtun *t)
{
	struct wp_worker *wk = t->wk;

	for (size_t i = 0; i < wk->n_idle; i++) {
		struct ustr *u = wk->idle[i].head;
		while (u) {
			struct ustr *next = u->inext;
			if (u->s.t == t)
				pool_drop(u, true);
			u = next;
		}
	}
}

void wp_pool_close_all(struct wp_worker *wk)
{
	for (size_t i = 0; i < wk->n_idle; i++)
		while (wk->idle[i].head)
			pool_drop(wk->idle[i].head, true);
	ev_timer_del(wk->loop, &wk->pool_sweep);
}

void wp_pool_init(struct wp_worker *wk)
{
	ev_timer_init(&wk->pool_sweep, on_sweep);
}

void wp_pool_fini(struct wp_worker *wk)
{
	wp_pool_close_all(wk);
	for (size_t i = 0; i < wk->n_idle; i++)
		free(wk->idle[i].uid);
	free(wk->idle);
	wk->idle = NULL;
	wk->n_idle = wk->cap_idle = 0;
}
