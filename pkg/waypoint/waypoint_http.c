/* HTTP/1.1 inside the waypoint's tunnels: one downstream stream per client connection, one
 * exchange per request (authorize, route, filter, forward over an upstream HBONE stream, stream
 * the response back), local replies (400/403/404/500/503/504, redirects). HTTP/2
 * prior-knowledge streams are handed to waypoint_h2.c.
 *
 *   downstream stream (client's ztunnel -> us)          upstream stream (us -> endpoint ztunnel)
 *
 *   CONNECT vip:port --> authority bound here? --400-->
 *        | 200
 *        v
 *   idle --HEAD--> exchange: normalize (400) -> authz (403) -> route (404) -> redirect (3xx)
 *    ^                 -> backend (500) -> endpoint (503) -> open upstream ---> request head+body
 *    |                                                                       <--- response head
 *    |            <------------------- response head / body (re-framed) ----  body / END
 *    +-- keep-alive: next request (pipelined bytes wait in `in`) <-- exchange done: log, metrics
 *
 * Retries (the rule's `retry`): the upstream request (head and framed body) is also kept in
 * x->replay while it fits in WP_REPLAY_MAX. A try that fails before any response byte went to
 * the client is retried on a new upstream stream after a backoff, preferring another endpoint:
 *
 *   try --connect failure / CONNECT refused (nothing reached the backend)--> retry (any method)
 *       --response status in codes, reset before the response------------> retry (idempotent)
 *       --backendRequest (per try) expired before the response----------> retry (idempotent)
 *       --response head not retried--> stream it to the client (no retry from here on)
 *   no retry left, no replay, or the backoff would pass timeouts.request -> the failure as is
 *
 * Every try's outcome feeds outlier ejection (waypoint.c). RequestMirror copies are sent once
 * the request is complete (from the same replay bytes) on their own upstream streams, whose
 * responses are discarded.
 */
#include "pkg/waypoint/waypoint_int.h"
#include "pkg/proxy/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void xchg_finish(struct xchg *x);
static const char *bind_check(struct dstr *d, const struct net_addr *dst);
static void upstream_failed(struct xchg *x, const char *flags, const char *why);
static bool retry_schedule(struct xchg *x, const char *why);
static void attempt_open(struct xchg *x, bool new_try);
static void attempt_report(struct xchg *x, bool failure);
static void attempt_done(struct xchg *x);
static void on_retry_timer(struct ev_loop *loop, struct ev_timer *tm);

/* ---- downstream output ----------------------------------------------------------------------- */

static void dstr_flush(struct dstr *d)
{
	if (d->parent) {
		wp_h2_child_flush(d);
		return;
	}
	if (!d->s.t || d->s.sid <= 0)
		return;
	if (wp_stream_flush(&d->s, &d->out) < 0)
		return;
	if (!d->shut && buf_len(&d->out) == 0 &&
	    ((d->closing && !d->x) || (d->x && d->x->relay && d->x->up_eof))) {
		d->shut = true;
		hbone_stream_shutdown_write(d->s.t->h, d->s.sid);
		wtun_kick(d->s.t);
	}
}

static void dstr_reset(struct dstr *d)
{
	if (d->parent) {
		wp_h2_child_reset(d);
		return;
	}
	if (d->s.t && d->s.sid > 0 && d->s.t->h) {
		hbone_stream_reset(d->s.t->h, d->s.sid, HBONE_CANCEL);
		wtun_kick(d->s.t);
	}
}

/* ---- backpressure ---------------------------------------------------------------------------- */

/* Response bytes waiting on the client side of d. */
static size_t down_backlog(const struct dstr *d)
{
	if (d->parent)
		return buf_len(&d->h2body) + buf_len(&d->out) + buf_len(&d->parent->out);
	return buf_len(&d->out);
}

bool wp_ustr_backlogged(const struct ustr *u)
{
	return u->x && down_backlog(u->x->d) >= WP_CREDIT_LOW;
}

void wp_ustr_credit(struct ustr *u)
{
	if (u->s.tcp) {
		wp_tcp_credit(u);
		return;
	}
	if (!u->unacked || !u->s.t || u->s.sid <= 0 || !u->s.t->h)
		return;
	if (wp_ustr_backlogged(u))
		return;
	hbone_stream_consumed(u->s.t->h, u->s.sid, u->unacked);
	u->unacked = 0;
	wtun_kick(u->s.t);
}

/* The client's bytes are credited unless the exchange waits for its response (pipelined bytes
 * stay unread) or its upstream has a backlog. An HTTP/2 connection's HBONE stream is credited
 * at once; its streams' windows hold the request bodies back (wp_h2_child_credit). */
static void dstr_credit(struct dstr *d)
{
	if (d->parent) {
		wp_h2_child_credit(d);
		return;
	}
	if (!d->unacked || !d->s.t || d->s.sid <= 0 || !d->s.t->h)
		return;
	if ((d->x && d->x->req_end && !d->x->relay) || wp_up_backlogged(d->x))
		return;
	hbone_stream_consumed(d->s.t->h, d->s.sid, d->unacked);
	d->unacked = 0;
	wtun_kick(d->s.t);
}

/* A response generated here: status, a short text body, optional extra header. */
static void local_reply(struct xchg *x, int status, const char *flags, const char *reason,
			const char *hname, const char *hvalue)
{
	struct dstr *d = x->d;
	char body[256];
	struct http1_field f[3];
	size_t nf = 0;
	int n = snprintf(body, sizeof(body), "%s\n", reason);

	if (x->relay) {
		/* An appProtocol TCP connection has no HTTP to answer with: it is reset. */
		x->local = true;
		x->status = status;
		x->flags = flags;
		x->reason = reason;
		x->close_after = true;
		dstr_reset(d);
		return;
	}
	x->local = true;
	x->status = status;
	x->flags = flags;
	x->reason = reason;
	x->resp_started = true;
	f[nf++] = (struct http1_field){http1_s("content-type"), http1_s("text/plain")};
	if (hname)
		f[nf++] = (struct http1_field){http1_s(hname), http1_s(hvalue ? hvalue : "")};
	if (x->close_after)
		f[nf++] = (struct http1_field){http1_s("connection"), http1_s("close")};
	size_t before = buf_len(&d->out);
	http1_format_response_head(&d->out, status, NULL, f, nf, n);
	if (!x->head_req)
		buf_append(&d->out, body, (size_t)n);
	x->resp_bytes += buf_len(&d->out) - before;
	x->resp_end = true;
	dstr_flush(d);
}

/* ---- exchanges ------------------------------------------------------------------------------- */

static void on_xchg_timer(struct ev_loop *loop, struct ev_timer *tm)
{
	struct xchg *x = ev_container_of(tm, struct xchg, timer);

	(void)loop;
	if (!x->resp_started) {
		local_reply(x, 504, "UT", "upstream request timeout", NULL, NULL);
		x->close_after = true;
		xchg_finish(x);
		return;
	}
	x->flags = "UT";
	x->reason = "request timeout while streaming the response";
	x->d->closing = true;
	dstr_reset(x->d);
	xchg_finish(x);
}

static void ustr_free(struct ustr *u)
{
	wp_pool_remove(u);
	wp_tcp_close(u);
	wtun_del(&u->s);
	buf_fini(&u->in);
	buf_fini(&u->out);
	free(u);
}

/* Drops the upstream stream of x, freed on its CLOSED event: after a complete exchange it is
 * half-closed (the backend sees EOF after its response, as after a client that is done), else
 * reset. */
void wp_ustr_release(struct ustr *u, bool graceful)
{
	if (!u)
		return;
	u->x = NULL;
	if (u->closed || !u->s.t) {
		if (!u->in_gone)
			ustr_free(u);
		return;
	}
	if (u->s.sid > 0 && u->s.t->h) {
		if (graceful && !buf_len(&u->out))
			hbone_stream_shutdown_write(u->s.t->h, u->s.sid);
		else
			hbone_stream_reset(u->s.t->h, u->s.sid, HBONE_CANCEL);
		wtun_kick(u->s.t);
	} else {
		ustr_free(u); /* never opened: nothing will report on it */
	}
}

static void xchg_finish(struct xchg *x)
{
	struct dstr *d = x->d;
	struct wp_record r = {
		.src_wl = d->src_wl,
		.dst_wl = x->dst_wl,
		.dst_svc = x->dst_svc ? x->dst_svc : d->svc,
		.src_id = d->peer_id,
		.dst_id = x->dst_wl ? x->dst_wl->identity : NULL,
		.method = x->method,
		.authority = x->host,
		.path = x->path,
		.flags = x->flags,
		.upstream = x->upstream,
		.request_id = x->req_id,
		.reason = x->reason,
		.status = x->status,
		.duration_ms = time_mono_ms() - x->start_ms,
		.req_bytes = x->req_bytes,
		.resp_bytes = x->resp_bytes,
		.attempts = x->attempt,
		.tcp = x->tcp,
		.tcp_opened = x->tcp_opened,
		.req_counted = x->req_counted,
		.resp_counted = x->resp_counted,
	};

	if (x->route) {
		r.has_route = true;
		r.route = x->route->key;
		r.route_rule = x->rule_index;
	}
	if (x->policy) {
		r.has_policy = true;
		r.policy = x->policy->key;
		r.policy_rule = x->policy_rule;
	}
	wp_record(d->wk->w, d->wk, &r);
	attempt_done(x);
	ev_timer_del(d->wk->loop, &x->timer);
	ev_timer_del(d->wk->loop, &x->rtimer);
	{
		/* Keep-alive: a clean exchange whose response lets the connection persist parks
		 * its upstream stream for the next request to the same endpoint. */
		bool clean = x->resp_end && x->req_end && !x->local;
		struct ustr *u = x->u;
		x->u = NULL;
		if (!(u && clean && x->up_keep && !x->relay && u->x == x &&
		      wp_pool_put(d->wk, u, x->last_uid, x->up_port)))
			wp_ustr_release(u, clean);
	}
	wp_buf_fini(d->wk, &x->replay);
	wp_buf_fini(d->wk, &x->mirror_head);
	if (x->close_after || !x->resp_end || d->parent)
		d->closing = true;
	d->x = NULL;
	wp_obj_free(d->wk, WP_OBJ_XCHG, x);
	if (http1_parser_state(&d->p) == HTTP1_STATE_UPGRADED)
		http1_parser_resume(&d->p);
	dstr_flush(d);
	if (!d->closing)
		wp_dstr_process(d);
	dstr_credit(d);
}

static bool is_hop(const struct http1_msg *m, struct slice name)
{
	return http1_is_hop_by_hop(m, name) || http1_slice_eq(name, "content-length") ||
	       http1_slice_eq(name, "host");
}

bool wp_in_names(struct slice name, const char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (http1_slice_eq(name, names[i]))
			return true;
	return false;
}

bool wp_in_headers(struct slice name, const struct config_http_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (http1_slice_eq(name, h[i].name))
			return true;
	return false;
}

static void gen_request_id(struct wp_worker *wk, char *out, size_t cap)
{
	uint64_t a = wp_rand(wk), b = wp_rand(wk);

	/* A version-4 UUID layout: 8-4-4-4-12 hex digits, "4" and the variant bits fixed. */
	if (cap < 37) {
		out[0] = '\0';
		return;
	}
	str_hex(out, a >> 32, 8);
	out[8] = '-';
	str_hex(out + 9, a >> 16, 4);
	out[13] = '-';
	out[14] = '4';
	str_hex(out + 15, a, 3);
	out[18] = '-';
	str_hex(out + 19, 0x8000 | ((b >> 48) & 0x3fff), 4);
	out[23] = '-';
	str_hex(out + 24, b, 12);
	out[36] = '\0';
}

/* RFC 7239: the client's `forwarded` elements (every field line, in order) and ours,
 * `for=<ip>;proto=http` (an IPv6 address quoted in brackets, §6). */
static int format_forwarded(struct wp_worker *wk, struct buf *b, const struct http1_fields *h,
			    struct slice first, const char *ip)
{
	struct buf v;
	struct http1_field f;
	size_t pos = 0;
	int rc = 0;

	wp_buf_init(wk, &v, 16384);
	while (first.p && http1_fields_next(h, &pos, &f))
		if (http1_slice_eq(f.name, "forwarded") && f.value.n)
			rc |= buf_append(&v, f.value.p, f.value.n) | buf_append(&v, ", ", 2);
	if (strchr(ip, ':'))
		rc |= buf_append_str(&v, "for=\"[") | buf_append_str(&v, ip) |
		      buf_append_str(&v, "]\";proto=http");
	else
		rc |= buf_append_str(&v, "for=") | buf_append_str(&v, ip) |
		      buf_append_str(&v, ";proto=http");
	if (rc >= 0)
		rc = http1_format_field(b, http1_s("forwarded"),
					(struct slice){buf_rptr(&v), buf_len(&v)});
	wp_buf_fini(wk, &v);
	return rc < 0 ? rc : 0;
}

/* The upstream request head: the client's headers minus hop-by-hop ones, edited by the rule's
 * RequestHeaderModifier, with Host, x-forwarded-for, x-forwarded-proto and x-request-id. */
static int build_request(struct xchg *x, const struct http1_msg *m,
			 const struct config_header_filter *mod, const char *host, struct buf *b)
{
	struct dstr *d = x->d;
	struct http1_field f;
	size_t pos = 0;
	struct slice xff = {NULL, 0}, fwd = {NULL, 0};
	char *xffv;
	int rc = http1_format_request_line(b, m->method_raw, http1_s(x->path));

	while (rc >= 0 && http1_fields_next(&m->headers, &pos, &f)) {
		if (is_hop(m, f.name))
			continue;
		if (http1_slice_eq(f.name, "x-forwarded-for")) {
			if (!xff.p)
				xff = f.value;
			continue;
		}
		if (http1_slice_eq(f.name, "forwarded")) {
			if (!fwd.p) /* one list: a second field line is folded into it below */
				fwd = f.value;
			continue;
		}
		if (http1_slice_eq(f.name, "x-request-id"))
			continue;
		if (mod && (wp_in_names(f.name, mod->remove, mod->n_remove) ||
			    wp_in_headers(f.name, mod->set, mod->n_set)))
			continue;
		rc = http1_format_field(b, f.name, f.value);
	}
	for (size_t i = 0; mod && rc >= 0 && i < mod->n_set; i++)
		rc = http1_format_field_str(b, mod->set[i].name, mod->set[i].value);
	for (size_t i = 0; mod && rc >= 0 && i < mod->n_add; i++)
		rc = http1_format_field_str(b, mod->add[i].name, mod->add[i].value);
	if (rc >= 0)
		rc = http1_format_field_str(b, "host", host);
	xffv = xff.p ? xasprintf("%.*s, %s", (int)xff.n, (const char *)xff.p, d->src_ip)
		     : xstrdup(d->src_ip);
	if (rc >= 0 && d->src_ip[0])
		rc = http1_format_field_str(b, "x-forwarded-for", xffv);
	free(xffv);
	if (rc >= 0 && d->src_ip[0])
		rc = format_forwarded(d->wk, b, &m->headers, fwd, d->src_ip);
	if (rc >= 0)
		rc = http1_format_field_str(b, "x-forwarded-proto", "http");
	if (rc >= 0)
		rc = http1_format_field_str(b, "x-request-id", x->req_id);
	if (rc >= 0 && x->traceparent[0])
		rc = http1_format_field_str(b, "traceparent", x->traceparent);
	/* The upstream connection persists (keep-alive, waypoint_pool.c) unless the backend
	 * says otherwise. An Upgrade request keeps its Upgrade (the stream becomes the new
	 * protocol's after a 101); CONNECT needs neither. */
	if (rc >= 0 && x->upgrade && m->method != HTTP1_M_CONNECT) {
		struct slice up;
		if (http1_fields_get(&m->headers, "upgrade", &up))
			rc = http1_format_field(b, http1_s("upgrade"), up);
		if (rc >= 0)
			rc = http1_format_field_str(b, "connection", "upgrade");
	}
	if (rc >= 0)
		rc = http1_format_length(
			b, m->framing == HTTP1_FRAMING_LENGTH	 ? (int64_t)m->content_length
			   : m->framing == HTTP1_FRAMING_CHUNKED ? HTTP1_LEN_CHUNKED
								 : HTTP1_LEN_NONE);
	if (rc >= 0)
		rc = http1_format_end(b);
	return rc;
}

static void redirect(struct xchg *x, const struct config_redirect *rd,
		     const struct config_route_match *match)
{
	char path[L7_PATH_MAX], loc[L7_PATH_MAX + 400], host[256];
	const char *scheme = rd->scheme == CONFIG_SCHEME_HTTPS ? "https" : "http";
	const char *colon;
	char port[16] = "";

	snprintf(host, sizeof(host), "%s", rd->hostname && *rd->hostname ? rd->hostname : x->host);
	colon = strrchr(host, ':');
	if (colon && !strchr(colon, ']') && (!rd->hostname || !*rd->hostname))
		host[colon - host] = '\0';
	if (rd->port && !((rd->port == 80 && !strcmp(scheme, "http")) ||
			  (rd->port == 443 && !strcmp(scheme, "https"))))
		snprintf(port, sizeof(port), ":%u", rd->port);
	if (rd->path.present) {
		if (l7_path_rewrite(&rd->path, match, x->path, path, sizeof(path)) < 0) {
			local_reply(x, 500, "-", "redirect path too long", NULL, NULL);
			return;
		}
	} else {
		snprintf(path, sizeof(path), "%s", x->path);
	}
	snprintf(loc, sizeof(loc), "%s://%s%s%s", scheme, host, port, path);
	local_reply(x, rd->status_code, "-", "redirected by route", "location", loc);
}

/* A candidate endpoint: not ejected (outlier detection) and not the previous try's. */
static bool endpoint_fits(struct wp_worker *wk, const struct config_endpoint *e, const char *avoid,
			  uint64_t now)
{
	return !(avoid && *avoid && strcmp(e->workload->uid, avoid) == 0) &&
	       !wp_outlier_ejected(wk->w, e->workload->uid, now);
}

/* One weighted random draw that fits, else (every draw was ejected or avoided) the first one:
 * like Envoy's panic mode, traffic goes to ejected endpoints rather than nowhere. */
static const struct config_endpoint *draw_endpoint(struct wp_worker *wk,
						   const struct config_service *svc, uint16_t port,
						   const char *avoid, uint16_t *target_port)
{
	uint64_t now = time_mono_ms();
	uint16_t p0 = port, p;
	const struct config_endpoint *first = proxy_pick_endpoint(svc, port, wp_rand(wk), &p0);

	if (!first || endpoint_fits(wk, first, avoid, now)) {
		*target_port = p0;
		return first;
	}
	/* 32 more draws: with half of the endpoints unfit, 2^-32 to miss a fit one. */
	for (int i = 0; i < 32; i++) {
		const struct config_endpoint *e = proxy_pick_endpoint(svc, port, wp_rand(wk), &p);
		if (e && endpoint_fits(wk, e, avoid, now)) {
			*target_port = p;
			return e;
		}
	}
	*target_port = p0;
	return first;
}

/* Envoy's LEAST_REQUEST (Istio's default for waypoints), as power of two choices: two endpoints
 * drawn at random (healthy ones, weighted by capacity, not ejected, preferring another one than
 * the previous try's), the one with fewer requests in flight from this worker wins. */
static const struct config_endpoint *pick_endpoint(struct wp_worker *wk,
						   const struct config_service *svc, uint16_t port,
						   const char *avoid, uint16_t *target_port)
{
	uint16_t pa = port, pb = port;
	const struct config_endpoint *a = draw_endpoint(wk, svc, port, avoid, &pa);
	const struct config_endpoint *b;

	if (!a)
		return NULL;
	b = draw_endpoint(wk, svc, port, avoid, &pb);
	if (b && b->workload != a->workload &&
	    wp_inflight_get(wk, b->workload->uid) < wp_inflight_get(wk, a->workload->uid)) {
		*target_port = pb;
		return b;
	}
	*target_port = pa;
	return a;
}

static bool method_idempotent(int m)
{
	/* RFC 9110 §9.2.2 (POST, PATCH and CONNECT are not). */
	return m == HTTP1_M_GET || m == HTTP1_M_HEAD || m == HTTP1_M_OPTIONS ||
	       m == HTTP1_M_TRACE || m == HTTP1_M_PUT || m == HTTP1_M_DELETE;
}

/* Starts forwarding x to service svc port `port` (or workload wl at port): builds the upstream
 * request head (kept in x->replay when the rule retries or mirrors) and opens the first try. */
static void forward(struct xchg *x, const struct http1_msg *m, const struct config_service *svc,
		    const struct config_workload *wl, uint16_t port,
		    const struct config_header_filter *mod, const char *host)
{
	x->bsvc = svc;
	x->bwl = wl;
	x->bport = port;
	x->http_method = m->method;
	x->idempotent = method_idempotent(m->method);
	x->chunked_up = m->framing == HTTP1_FRAMING_CHUNKED;
	/* Kept for retries, mirrors, and the one re-send after a reused upstream stream turned out
	 * closed (upstream_failed); a request over WP_REPLAY_MAX streams through without it. */
	if (!x->upgrade || (x->retry && x->retry->attempts) || x->n_mirrors) {
		wp_buf_init(x->d->wk, &x->replay, WP_REPLAY_MAX);
		x->replay_ok = build_request(x, m, mod, host, &x->replay) >= 0;
		x->replay_head = buf_len(&x->replay);
		if (!x->replay_ok)
			buf_reset(&x->replay);
	}
	if (x->n_mirrors && x->replay_ok) {
		char shadow[300];
		/* Envoy's mirror policy suffixes the host, so the copy is told apart. */
		snprintf(shadow, sizeof(shadow), "%s-shadow", host);
		buf_init(&x->mirror_head, WP_REPLAY_MAX);
		if (build_request(x, m, mod, shadow, &x->mirror_head) < 0)
			x->n_mirrors = 0;
	}
	if (!x->replay_ok) {
		/* Only the head, copied into the first try's stream. */
		struct buf *head = &x->replay;
		buf_fini(head);
		buf_init(head, WP_BUF_MAX);
		if (build_request(x, m, mod, host, head) < 0) {
			local_reply(x, 400, "-", "cannot forward these request headers", NULL,
				    NULL);
			return;
		}
		x->replay_head = buf_len(head);
	}
	attempt_open(x, true);
	if (!x->replay_ok)
		buf_fini(&x->replay);
}

/* One try: an endpoint, a new upstream stream, the request so far. new_try: counted as a try
 * (false for the one re-send after a reused stream failed, which is not the endpoint's fault). */
static void attempt_open(struct xchg *x, bool new_try)
{
	struct dstr *d = x->d;
	struct waypoint *w = d->wk->w;
	const struct config_workload *ep = x->bwl;
	uint16_t target_port = x->bport;
	struct net_ip nip;
	struct net_addr target, auth;
	char authority[HBONE_AUTHORITY_MAX + 1];
	struct errbuf eb = {0};
	struct ustr *u;

	if (new_try)
		x->attempt++;
	x->up_sent = false;
	x->reported = false;
	if (x->bsvc) {
		const struct config_endpoint *e =
			pick_endpoint(d->wk, x->bsvc, x->bport, x->last_uid, &target_port);
		if (!e) {
			local_reply(x, 503, "UH", "no healthy upstream", NULL, NULL);
			return;
		}
		ep = e->workload;
	}
	x->dst_svc = x->bsvc;
	x->dst_wl = ep;
	if (!ep || ep->n_workload_ips == 0) {
		local_reply(x, 503, "UH", "no healthy upstream", NULL, NULL);
		return;
	}
	proxy_ip_to_net(&nip, &ep->workload_ips[0]);
	net_addr_from_ip(&auth, &nip, target_port);
	net_addr_from_ip(&target, &nip, w->o.hbone_port);
	proxy_authority(&auth, authority, sizeof(authority));
	str_copy(x->upstream, sizeof(x->upstream), authority);
	str_copy(x->last_uid, sizeof(x->last_uid), ep->uid);
	x->up_port = target_port;
	x->inflight_uid = xstrdup(ep->uid);
	wp_inflight_add(d->wk, ep->uid, 1);
	u = x->reuse_retried || x->upgrade
		    ? NULL
		    : wp_pool_take(d->wk, ep->uid, target_port,
				   ep->protocol != CONFIG_PROTOCOL_HBONE, ep->identity);
	/* Keep-alive: an idle stream to the same endpoint carries the request, which the backend
	 * may see at once; else a new stream (or socket) is opened below. */
	x->reused = u != NULL;
	x->up_sent = x->reused;
	if (!u) {
		u = xcalloc(1, sizeof(*u));
		buf_init(&u->in, WP_BUF_MAX);
		buf_init(&u->out, WP_BUF_MAX);
	}
	u->x = x;
	http1_parser_init(&u->p, HTTP1_RESPONSE, NULL);
	http1_parser_set_method(&u->p, (enum http1_method)x->http_method);
	buf_append(&u->out, buf_rptr(&x->replay), buf_len(&x->replay));
	x->u = u;
	if (x->try_ms)
		ev_timer_add(d->wk->loop, &x->rtimer, x->try_ms);
	if (x->reused) {
		wp_stream_flush(&u->s, &u->out);
		return;
	}
	/* A plain-TCP endpoint (outside the mesh) is connected to directly, without HBONE. */
	if (ep->protocol != CONFIG_PROTOCOL_HBONE
		    ? wp_tcp_open(d->wk, u, &auth, &eb) < 0
		    : wp_upstream_open(d->wk, d->snap, &u->s, &target, authority, ep->identity,
				       &eb) < 0) {
		x->u = NULL;
		ustr_free(u);
		attempt_report(x, true);
		if (retry_schedule(x, "cannot open the upstream tunnel"))
			return;
		local_reply(x, 503, "UF", "cannot open the upstream tunnel", NULL, NULL);
		return;
	}
	wp_stream_flush(&u->s, &u->out);
}

/* The try's outcome for outlier ejection, once per try. */
static void attempt_report(struct xchg *x, bool failure)
{
	if (x->reported || !x->inflight_uid)
		return;
	x->reported = true;
	wp_outlier_report(x->d->wk->w, x->inflight_uid, failure, time_mono_ms());
}

/* The try is over (the exchange ended, or it is retried): no longer in flight. */
static void attempt_done(struct xchg *x)
{
	if (!x->inflight_uid)
		return;
	wp_inflight_add(x->d->wk, x->inflight_uid, -1);
	free(x->inflight_uid);
	x->inflight_uid = NULL;
}

static bool retry_code(const struct xchg *x, int status)
{
	for (size_t i = 0; x->retry && i < x->retry->n_codes; i++)
		if (x->retry->codes[i] == status)
			return true;
	return false;
}

/* GEP-1731: at least `backoff` between tries; doubled per retry up to 10x, plus up to 50 %
 * jitter. */
static uint64_t retry_backoff(struct xchg *x)
{
	uint64_t base = x->retry->backoff_ms, wait = base;

	for (unsigned i = 1; i < x->attempt && wait < 10 * base; i++)
		wait *= 2;
	if (wait > 10 * base)
		wait = 10 * base;
	if (wait)
		wait += wp_rand(x->d->wk) % (wait / 2 + 1);
	return wait;
}

/* The current try failed before any response byte went to the client: schedules another one
 * when the rule allows it (see the diagram above); the current upstream stream is dropped. */
static bool retry_schedule(struct xchg *x, const char *why)
{
	uint64_t wait;

	if (!x->retry || x->local || x->resp_started || !x->replay_ok ||
	    x->attempt > x->retry->attempts || (x->up_sent && !x->idempotent))
		return false;
	wait = retry_backoff(x);
	if (x->deadline_ms && time_mono_ms() + wait >= x->deadline_ms)
		return false;
	wp_ustr_release(x->u, false);
	x->u = NULL;
	attempt_done(x);
	x->retry_wait = true;
	ev_timer_del(x->d->wk->loop, &x->rtimer);
	ev_timer_add(x->d->wk->loop, &x->rtimer, wait);
	log_debug("waypoint: retrying", LF_STR("request_id", x->req_id),
		  LF_U64("attempt", x->attempt), LF_STR("upstream", x->upstream),
		  LF_STR("reason", why), LF_U64("backoff_ms", wait));
	return true;
}

/* The backoff ended (retry_wait), or the per-try timeout (backendRequest) expired. */
static void on_retry_timer(struct ev_loop *loop, struct ev_timer *tm)
{
	struct xchg *x = ev_container_of(tm, struct xchg, rtimer);

	(void)loop;
	if (x->retry_wait) {
		x->retry_wait = false;
		attempt_open(x, true);
		/* A local answer (no endpoint left, ...) ends the exchange once the request has. */
		if (x->local && x->resp_end && x->req_end)
			xchg_finish(x);
		return;
	}
	if (x->resp_started)
		return;
	attempt_report(x, true);
	if (retry_schedule(x, "per-try timeout"))
		return;
	wp_ustr_release(x->u, false);
	x->u = NULL;
	local_reply(x, 504, "UT", "upstream request timeout", NULL, NULL);
	x->close_after = true;
	xchg_finish(x);
}

static void xchg_timeout(struct xchg *x, const struct config_route_rule *rule)
{
	uint64_t ms = 0;

	if (rule && rule->retry.present && rule->retry.attempts) {
		/* Istio: request is the whole exchange (all tries), backendRequest one try. */
		x->retry = &rule->retry;
		x->try_ms = rule->timeouts.backend_request_ms;
		ms = rule->timeouts.request_ms;
		if (ms)
			x->deadline_ms = x->start_ms + ms;
	} else if (rule) {
		ms = rule->timeouts.request_ms;
		if (rule->timeouts.backend_request_ms &&
		    (!ms || rule->timeouts.backend_request_ms < ms))
			ms = rule->timeouts.backend_request_ms;
	}
	if (ms)
		ev_timer_add(x->d->wk->loop, &x->timer, ms);
}

/* Each request is decided with the newest snapshot: a kept-alive stream sees config changes
 * (the destination is bound again; NULL when it no longer is). */
static const char *refresh_snap(struct dstr *d)
{
	struct wp_snap *cur = wp_snap_get(d->wk->w), *old = d->snap;
	const char *why;

	if (!cur || cur == old) {
		wp_snap_put(cur);
		return NULL;
	}
	d->snap = cur;
	wp_snap_put(old);
	d->svc = NULL;
	d->dwl = NULL;
	why = cur->self ? bind_check(d, &d->dst) : "this waypoint is not in the config";
	d->src_wl = config_workload_by_ip(cur->c, "", &d->src_cip);
	return why;
}

/* An exchange for a local answer to a request whose head never completed (bad, too large,
 * stopped arriving). */
static struct xchg *xchg_local_new(struct dstr *d)
{
	struct xchg *x = wp_obj_new(d->wk, WP_OBJ_XCHG);

	x->d = d;
	d->x = x;
	x->start_ms = time_mono_ms();
	ev_timer_init(&x->timer, on_xchg_timer);
	ev_timer_init(&x->rtimer, on_retry_timer);
	gen_request_id(d->wk, x->req_id, sizeof(x->req_id));
	return x;
}

/* A request head arrived: decide and start forwarding, or answer locally. */
static void xchg_start(struct dstr *d, const struct http1_msg *m)
{
	struct xchg *x = wp_obj_new(d->wk, WP_OBJ_XCHG);
	struct wp_snap *sn;
	struct l7_header hdrs[128];
	size_t nh = 0, pos = 0;
	struct http1_field f;
	struct l7_request req = {0};
	struct l7_authz_result az;
	struct l7_route_result rr;
	const struct config_header_filter *mod = NULL;
	const struct config_service *bsvc = d->svc;
	uint16_t bport = d->port;
	const char *why;
	char host[256];
	struct slice rid;

	d->x = x;
	x->d = d;
	x->start_ms = time_mono_ms();
	x->status = 0;
	x->flags = "-";
	x->client_version = m->version;
	x->head_req = m->method == HTTP1_M_HEAD;
	x->close_after = !m->keep_alive;
	/* HTTP/1.1 Upgrade and CONNECT become a byte relay after a 101 / 2xx (not inside h2). */
	x->upgrade = !d->parent && (m->upgrade || m->method == HTTP1_M_CONNECT);
	/* Refused (no 101 / 2xx): the connection closes after the answer, since what the client
	 * sends next may already be the new protocol. */
	if (x->upgrade)
		x->close_after = true;
	ev_timer_init(&x->timer, on_xchg_timer);
	ev_timer_init(&x->rtimer, on_retry_timer);
	str_copyn(x->method, sizeof(x->method), (const char *)m->method_raw.p, m->method_raw.n);
	why = refresh_snap(d);
	sn = d->snap;
	str_copyn(x->host, sizeof(x->host), (const char *)m->host.p, m->host.n);
	x->req_bytes = m->headers.raw.n + m->method_raw.n + m->target.n + 16;
	if (http1_fields_get(&m->headers, "x-request-id", &rid) && rid.n > 0 && rid.n < 48)
		str_copyn(x->req_id, sizeof(x->req_id), (const char *)rid.p, rid.n);
	else
		gen_request_id(d->wk, x->req_id, sizeof(x->req_id));
	if (!http1_fields_get(&m->headers, "traceparent", &rid)) {
		/* W3C Trace Context: start a trace (version 00, sampled) when none came in; a
		 * received one is forwarded as is. */
		char *tp = x->traceparent; /* 00-<32 hex trace id>-<16 hex span id>-01 */
		memcpy(tp, "00-", 3);
		str_hex(tp + 3, wp_rand(d->wk), 16);
		str_hex(tp + 19, wp_rand(d->wk), 16);
		tp[35] = '-';
		str_hex(tp + 36, wp_rand(d->wk), 16);
		memcpy(tp + 52, "-01", 4);
	}
	if (why) {
		snprintf(x->path, sizeof(x->path), "%.*s",
			 (int)(m->target.n < 512 ? m->target.n : 512), (const char *)m->target.p);
		x->close_after = true;
		local_reply(x, 503, "NR", why, NULL, NULL);
		return;
	}
	if (m->method == HTTP1_M_CONNECT) {
		/* authority-form ("host:port"): matched as is, no path to normalize */
		snprintf(x->path, sizeof(x->path), "%.*s",
			 (int)(m->target.n < 512 ? m->target.n : 512), (const char *)m->target.p);
	} else if (l7_path_normalize((const char *)m->target.p, m->target.n, &d->wk->w->o.norm,
				     x->path, sizeof(x->path), &why) < 0) {
		snprintf(x->path, sizeof(x->path), "%.*s",
			 (int)(m->target.n < 512 ? m->target.n : 512), (const char *)m->target.p);
		x->close_after = true;
		local_reply(x, 400, "-", why, NULL, NULL);
		return;
	}
	while (nh < ARRAY_LEN(hdrs) && http1_fields_next(&m->headers, &pos, &f))
		hdrs[nh++] = (struct l7_header){f.name, f.value};
	req.method = x->method;
	req.path = x->path;
	req.host = x->host;
	req.headers = hdrs;
	req.n_headers = nh;
	req.source_principal = d->principal;
	req.source_ip = d->have_src_ip ? &d->src_cip : NULL;
	req.dest_port = d->port;

	l7_authz_check(sn->c, d->svc, sn->self, &req, &az);
	if (az.audit)
		log_info("waypoint: AUDIT policy matched", LF_STR("policy", az.audit->key),
			 LF_U64("rule", az.audit_rule), LF_STR("path", x->path));
	if (!az.allow) {
		x->policy = az.policy;
		x->policy_rule = az.rule;
		local_reply(x, 403, "DENY", az.reason, NULL, NULL);
		return;
	}
	str_copy(host, sizeof(host), x->host);
	if (d->svc && l7_service_has_routes(sn->t, d->svc, d->port)) {
		const struct config_route_rule *rule;
		if (!l7_route_select(sn->t, d->svc, d->port, &req, &rr)) {
			local_reply(x, 404, "NR", "no route matched", NULL, NULL);
			return;
		}
		rule = rr.rule;
		x->route = rr.route;
		x->rule_index = rr.rule_index;
		xchg_timeout(x, rule);
		for (size_t i = 0; i < rule->n_filters; i++) {
			const struct config_route_filter *fl = &rule->filters[i];
			char np[L7_PATH_MAX];
			switch (fl->type) {
			case CONFIG_FILTER_REQUEST_HEADER:
				mod = &fl->request_header_modifier;
				break;
			case CONFIG_FILTER_RESPONSE_HEADER:
				x->resp_mod = &fl->response_header_modifier;
				break;
			case CONFIG_FILTER_REDIRECT:
				redirect(x, &fl->request_redirect, rr.match);
				return;
			case CONFIG_FILTER_REQUEST_MIRROR:
				if (x->n_mirrors < WP_MAX_MIRRORS)
					x->mirrors[x->n_mirrors++] = &fl->request_mirror;
				break;
			case CONFIG_FILTER_URL_REWRITE:
				if (fl->url_rewrite.hostname && *fl->url_rewrite.hostname)
					snprintf(host, sizeof(host), "%s",
						 fl->url_rewrite.hostname);
				if (fl->url_rewrite.path.present &&
				    l7_path_rewrite(&fl->url_rewrite.path, rr.match, x->path, np,
						    sizeof(np)) >= 0)
					snprintf(x->path, sizeof(x->path), "%s", np);
				break;
			}
		}
		int k = l7_backend_pick(rule, wp_rand(d->wk));
		if (k < 0) {
			local_reply(x, 500, "-", "route has no backend with a weight", NULL, NULL);
			return;
		}
		bsvc = rule->backend_refs[k].service;
		bport = rule->backend_refs[k].port;
	}
	if (x->upgrade) { /* a tunnel is neither retried nor mirrored */
		x->retry = NULL;
		x->n_mirrors = 0;
	}
	if (bsvc)
		forward(x, m, bsvc, NULL, bport, mod, host);
	else
		forward(x, m, NULL, d->dwl, d->port, mod, host);
}

/* ---- the downstream request side ---------------------------------------------------------------
 */

/* Keeps body bytes (framed) for retries and mirrors; past WP_REPLAY_MAX the request is no
 * longer retried nor mirrored. With u, the same bytes go to the try in flight. */
static bool replay_body(struct xchg *x, struct ustr *u, const uint8_t *p, size_t n, bool last)
{
	size_t before = buf_len(&x->replay);
	int rc = last		 ? http1_format_last_chunk(&x->replay, NULL, 0)
		 : x->chunked_up ? http1_format_chunk(&x->replay, p, n)
				 : buf_append(&x->replay, p, n);

	if (rc < 0) {
		x->replay_ok = false;
		buf_fini(&x->replay);
		return false;
	}
	if (u &&
	    buf_append(&u->out, buf_rptr(&x->replay) + before, buf_len(&x->replay) - before) < 0)
		return false;
	return true;
}

static void up_write_body(struct xchg *x, const uint8_t *p, size_t n)
{
	struct ustr *u = x->u;

	x->req_bytes += n;
	if (x->local)
		return;
	if (x->replay_ok && replay_body(x, u, p, n, false)) {
		if (u)
			wp_stream_flush(&u->s, &u->out);
		return;
	}
	if (!u) {
		if (x->retry_wait) { /* the rest of the body cannot be re-sent */
			ev_timer_del(x->d->wk->loop, &x->rtimer);
			x->retry_wait = false;
			x->close_after = true;
			local_reply(x, 503, "UF", "request body too large to retry", NULL, NULL);
		}
		return;
	}
	if ((x->chunked_up ? http1_format_chunk(&u->out, p, n) : buf_append(&u->out, p, n)) < 0) {
		/* Past WP_BUF_MAX despite the flow control: never forward a truncated body. */
		x->u = NULL;
		wp_ustr_release(u, false);
		upstream_failed(x, "UO", "request body backlog over the limit");
		return;
	}
	wp_stream_flush(&u->s, &u->out);
}

/* A fire-and-forget copy of the complete request (x->replay) to one endpoint of the mirror
 * backend; the stream lives on its own (wp_up_event: its response is discarded). */
static void mirror_send(struct xchg *x, const struct config_mirror *m)
{
	struct dstr *d = x->d;
	const struct config_service *svc = m->backend_ref.service;
	const struct config_endpoint *e;
	uint16_t tport = m->backend_ref.port;
	struct net_ip nip;
	struct net_addr target, auth;
	char authority[HBONE_AUTHORITY_MAX + 1];
	struct errbuf eb = {0};
	struct ustr *u;

	if (!svc ||
	    (m->numerator < m->denominator && wp_rand(d->wk) % m->denominator >= m->numerator))
		return;
	e = pick_endpoint(d->wk, svc, m->backend_ref.port, NULL, &tport);
	if (!e || !e->workload->n_workload_ips || e->workload->protocol != CONFIG_PROTOCOL_HBONE)
		return;
	proxy_ip_to_net(&nip, &e->workload->workload_ips[0]);
	net_addr_from_ip(&auth, &nip, tport);
	net_addr_from_ip(&target, &nip, d->wk->w->o.hbone_port);
	proxy_authority(&auth, authority, sizeof(authority));
	u = xcalloc(1, sizeof(*u));
	u->mirror = true;
	buf_init(&u->in, WP_BUF_MAX);
	buf_init(&u->out, WP_BUF_MAX);
	http1_parser_init(&u->p, HTTP1_RESPONSE, NULL);
	if (buf_append(&u->out, buf_rptr(&x->mirror_head), buf_len(&x->mirror_head)) < 0 ||
	    buf_append(&u->out, buf_rptr(&x->replay) + x->replay_head,
		       buf_len(&x->replay) - x->replay_head) < 0 ||
	    wp_upstream_open(d->wk, d->snap, &u->s, &target, authority, e->workload->identity,
			     &eb) < 0) {
		log_debug("waypoint: mirror not sent", LF_STR("upstream", authority));
		ustr_free(u);
		return;
	}
	log_debug("waypoint: request mirrored", LF_STR("request_id", x->req_id),
		  LF_STR("upstream", authority));
	wp_stream_flush(&u->s, &u->out);
}

static void up_write_end(struct xchg *x)
{
	struct ustr *u = x->u;

	if (x->local)
		return;
	if (x->chunked_up) {
		bool kept = x->replay_ok && replay_body(x, u, NULL, 0, true);
		if (!kept && !x->replay_ok && u)
			http1_format_last_chunk(&u->out, NULL, 0);
	}
	for (size_t i = 0; x->replay_ok && i < x->n_mirrors; i++)
		mirror_send(x, x->mirrors[i]);
	if (u)
		wp_stream_flush(&u->s, &u->out);
}

/* ---- byte relay (appProtocol TCP, Upgrade, CONNECT) -------------------------------------------
 *
 *   client --d->in--> u->out --> upstream      client EOF (d->peer_eof) -> upstream write shut
 *   client <--d->out-- u->in <-- upstream      upstream EOF (up_eof) -> client write shut
 *
 * Both halves closed: the exchange ends (logged; graceful). A reset or failure on either side
 * resets the other. Backpressure as for HTTP bodies (dstr_credit / wp_ustr_credit). */

static bool up_shutdown(struct ustr *u)
{
	if (u->s.tcp)
		return wp_tcp_shutdown_write(u);
	if (!u->s.t || u->s.sid <= 0 || !u->s.t->h || buf_len(&u->out))
		return false;
	hbone_stream_shutdown_write(u->s.t->h, u->s.sid);
	wtun_kick(u->s.t);
	return true;
}

static void relay_abort(struct xchg *x, const char *flags, const char *why)
{
	x->flags = flags;
	x->reason = why;
	x->close_after = true;
	x->d->closing = true;
	dstr_reset(x->d);
	xchg_finish(x);
}

/* Moves what both sides have; true when x ended (freed). */
static bool relay_pump(struct xchg *x)
{
	struct dstr *d = x->d;
	struct ustr *u = x->u;
	size_t n;

	if (u) {
		if ((n = buf_len(&d->in)) > 0) {
			if (buf_append(&u->out, buf_rptr(&d->in), n) < 0) {
				relay_abort(x, "UO", "upstream backlog over the limit");
				return true;
			}
			buf_consume(&d->in, n);
			x->req_bytes += n;
			if (x->m_tcp_received) {
				metrics_counter_add(x->m_tcp_received, n);
				x->req_counted += n;
			}
		}
		wp_stream_flush(&u->s, &u->out);
		if (d->peer_eof && !x->up_shut && up_shutdown(u))
			x->up_shut = true;
		if ((n = buf_len(&u->in)) > 0) {
			if (buf_append(&d->out, buf_rptr(&u->in), n) < 0) {
				relay_abort(x, "UO", "response backlog over the limit");
				return true;
			}
			buf_consume(&u->in, n);
			x->resp_bytes += n;
			if (x->m_tcp_sent) {
				metrics_counter_add(x->m_tcp_sent, n);
				x->resp_counted += n;
			}
		}
		if (u->peer_eof)
			x->up_eof = true;
	}
	dstr_flush(d);
	dstr_credit(d);
	if (u)
		wp_ustr_credit(u);
	if (x->up_shut && x->up_eof && d->shut) {
		x->req_end = x->resp_end = true;
		xchg_finish(x);
		return true;
	}
	return false;
}

/* A stream to a service port whose appProtocol is TCP: L4 authorization, an endpoint of the
 * service, then the relay (no HTTP, no routes). */
static void l4_start(struct dstr *d)
{
	struct xchg *x = wp_obj_new(d->wk, WP_OBJ_XCHG);
	struct wp_snap *sn = d->snap;
	struct l7_request req = {0};
	struct l7_authz_result az;

	d->l4 = true;
	d->first = false;
	d->x = x;
	x->d = d;
	x->start_ms = time_mono_ms();
	x->flags = "-";
	x->relay = x->tcp = true;
	ev_timer_init(&x->timer, on_xchg_timer);
	ev_timer_init(&x->rtimer, on_retry_timer);
	gen_request_id(d->wk, x->req_id, sizeof(x->req_id));
	hbone_authority_format(&d->dst, x->host, sizeof(x->host));
	req.method = "";
	req.path = "";
	req.host = "";
	req.source_principal = d->principal;
	req.source_ip = d->have_src_ip ? &d->src_cip : NULL;
	req.dest_port = d->port;
	req.tcp = true;
	l7_authz_check(sn->c, d->svc, sn->self, &req, &az);
	if (!az.allow) {
		x->policy = az.policy;
		x->policy_rule = az.rule;
		local_reply(x, 403, "DENY", az.reason, NULL, NULL);
		xchg_finish(x);
		return;
	}
	buf_init(&x->replay, WP_BUF_MAX); /* nothing to send up front */
	x->bsvc = d->svc;
	x->bport = d->port;
	x->http_method = HTTP1_M_GET;
	attempt_open(x, true);
	buf_fini(&x->replay);
	if (x->local) {
		xchg_finish(x);
		return;
	}
	struct wp_record r = {.src_wl = d->src_wl,
			      .dst_wl = x->dst_wl,
			      .dst_svc = x->dst_svc,
			      .src_id = d->peer_id,
			      .dst_id = x->dst_wl ? x->dst_wl->identity : NULL,
			      .flags = "-",
			      .tcp = true};
	wp_record_tcp_open(d->wk->w, &r, &x->m_tcp_received, &x->m_tcp_sent);
	x->tcp_opened = true;
}

static bool preface_prefix(const struct buf *in)
{
	size_t n = buf_len(in) < sizeof(h2_preface) - 1 ? buf_len(in) : sizeof(h2_preface) - 1;

	return n > 0 && memcmp(buf_rptr(in), h2_preface, n) == 0;
}

void wp_dstr_process(struct dstr *d)
{
	if (d->x && d->x->relay) {
		relay_pump(d->x);
		return;
	}
	while (!d->closing && !d->h2) {
		struct http1_event ev;
		int n;

		if (d->x && d->x->req_end)
			return; /* the next request waits for this response */
		if (d->first && buf_len(&d->in)) {
			if (preface_prefix(&d->in)) {
				if (buf_len(&d->in) < sizeof(h2_preface) - 1 && !d->peer_eof)
					return;
				if (buf_len(&d->in) >= sizeof(h2_preface) - 1) {
					d->first = false;
					wp_h2_start(d);
					return;
				}
			}
			d->first = false;
		}
		if (buf_len(&d->in) == 0 && http1_parser_state(&d->p) == HTTP1_STATE_IDLE) {
			if (d->peer_eof && !d->x) {
				d->closing = true;
				dstr_flush(d);
			}
			return;
		}
		n = http1_parser_push(&d->p, buf_rptr(&d->in), buf_len(&d->in), &ev);
		if (n < 0) {
			struct xchg *x = d->x;
			int st = http1_parser_status(&d->p);
			if (x && x->resp_started) {
				x->flags = "DPE";
				x->reason = http1_parser_reason(&d->p);
				d->closing = true;
				dstr_reset(d);
				xchg_finish(x);
				return;
			}
			if (!x)
				x = xchg_local_new(d);
			wp_ustr_release(x->u, false);
			x->u = NULL;
			x->close_after = true;
			local_reply(x, st ? st : 400, "DPE", http1_parser_reason(&d->p), NULL,
				    NULL);
			xchg_finish(x);
			return;
		}
		switch (ev.type) {
		case HTTP1_EV_HEAD: xchg_start(d, ev.msg); break;
		case HTTP1_EV_BODY:
			if (d->x)
				up_write_body(d->x, ev.data.p, ev.data.n);
			break;
		case HTTP1_EV_END:
		case HTTP1_EV_UPGRADE:
			if (d->x) {
				d->x->req_end = true;
				up_write_end(d->x);
			}
			break;
		case HTTP1_EV_NONE: break;
		}
		buf_consume(&d->in, (size_t)n);
		if (d->x && d->x->req_end && d->x->resp_end) {
			xchg_finish(d->x);
			return;
		}
		if (ev.type == HTTP1_EV_NONE) {
			if (d->peer_eof) {
				struct http1_event e2;
				if (http1_parser_eof(&d->p, &e2) < 0 && d->x) {
					d->x->flags = "DC";
					d->x->reason = "client closed mid-request";
					d->closing = true;
					xchg_finish(d->x);
				}
			}
			return;
		}
	}
}

/* ---- the upstream response side -------------------------------------------------------------- */

void wp_resp_fields(const struct http1_msg *m, const struct config_header_filter *mod,
		    void (*emit)(void *ctx, struct slice name, struct slice value), void *ctx)
{
	struct http1_field f;
	size_t pos = 0;

	while (http1_fields_next(&m->headers, &pos, &f)) {
		if (http1_is_hop_by_hop(m, f.name) || http1_slice_eq(f.name, "content-length"))
			continue;
		if (mod && (wp_in_names(f.name, mod->remove, mod->n_remove) ||
			    wp_in_headers(f.name, mod->set, mod->n_set)))
			continue;
		emit(ctx, f.name, f.value);
	}
	for (size_t i = 0; mod && i < mod->n_set; i++)
		emit(ctx, http1_s(mod->set[i].name), http1_s(mod->set[i].value));
	for (size_t i = 0; mod && i < mod->n_add; i++)
		emit(ctx, http1_s(mod->add[i].name), http1_s(mod->add[i].value));
}

static void emit_field(void *ctx, struct slice name, struct slice value)
{
	http1_format_field(ctx, name, value);
}

static void resp_head(struct xchg *x, const struct http1_msg *m)
{
	struct dstr *d = x->d;
	const struct config_header_filter *mod = x->resp_mod;
	size_t before = buf_len(&d->out);
	int64_t len;
	bool no_body = x->head_req || m->status == 204 || m->status == 304;

	x->status = m->status;
	x->resp_started = true;
	if (d->parent) { /* HTTP/2: straight to nghttp2 */
		x->resp_bytes += wp_h2_child_head(d, m, mod, no_body);
		return;
	}
	http1_format_status_line(&d->out, m->status, NULL);
	wp_resp_fields(m, mod, emit_field, &d->out);
	if (no_body) {
		if (m->has_content_length) {
			char cl[24];
			snprintf(cl, sizeof(cl), "%llu", (unsigned long long)m->content_length);
			http1_format_field_str(&d->out, "content-length", cl);
		}
		len = HTTP1_LEN_NONE;
	} else if (m->framing == HTTP1_FRAMING_LENGTH) {
		len = (int64_t)m->content_length;
	} else if (m->framing == HTTP1_FRAMING_NONE) {
		len = 0;
	} else if (x->client_version >= 1) {
		len = HTTP1_LEN_CHUNKED;
		x->chunked_out = true;
	} else {
		len = HTTP1_LEN_NONE; /* HTTP/1.0 client: close-delimited */
		x->close_after = true;
	}
	if (x->close_after)
		http1_format_field_str(&d->out, "connection", "close");
	http1_format_length(&d->out, len);
	http1_format_end(&d->out);
	x->resp_bytes += buf_len(&d->out) - before;
}

/* The 101 to an Upgrade request (its Upgrade header kept), or the 2xx to a CONNECT: written
 * to the client, after which the exchange is a byte relay. */
static void upgrade_head(struct xchg *x, const struct http1_msg *m)
{
	struct dstr *d = x->d;
	const struct config_header_filter *mod = x->resp_mod;
	struct slice up;
	size_t before = buf_len(&d->out);

	x->status = m->status;
	x->resp_started = true;
	http1_format_status_line(&d->out, m->status, NULL);
	wp_resp_fields(m, mod, emit_field, &d->out);
	if (m->status == 101) {
		if (http1_fields_get(&m->headers, "upgrade", &up))
			http1_format_field(&d->out, http1_s("upgrade"), up);
		http1_format_field_str(&d->out, "connection", "upgrade");
	}
	http1_format_end(&d->out);
	x->resp_bytes += buf_len(&d->out) - before;
	ev_timer_del(d->wk->loop, &x->timer);
	ev_timer_del(d->wk->loop, &x->rtimer);
	x->relay = true;
	x->close_after = true;
}

static void upstream_failed(struct xchg *x, const char *flags, const char *why)
{
	if (x->relay) {
		relay_abort(x, flags, why);
		return;
	}
	if (x->reused && !x->resp_started && !x->reuse_retried && x->replay_ok && x->idempotent) {
		/* A reused upstream connection ended before any response byte: the backend most
		 * likely closed it while idle. An idempotent request is sent again, once, on a
		 * fresh stream (RFC 9112 §9.3.1); it is not a failed try of the endpoint. */
		log_debug("waypoint: reused upstream connection closed, sending again",
			  LF_STR("request_id", x->req_id), LF_STR("upstream", x->upstream),
			  LF_STR("reason", why));
		x->reuse_retried = true;
		wp_ustr_release(x->u, false);
		x->u = NULL;
		attempt_done(x);
		ev_timer_del(x->d->wk->loop, &x->rtimer);
		attempt_open(x, false);
		if (x->local && x->resp_end && x->req_end)
			xchg_finish(x);
		return;
	}
	attempt_report(x, true);
	if (retry_schedule(x, why))
		return;
	if (!x->resp_started) {
		wp_ustr_release(x->u, false);
		x->u = NULL;
		local_reply(x, 503, flags, why, NULL, NULL);
		if (x->req_end)
			xchg_finish(x);
		return;
	}
	x->flags = flags;
	x->reason = why;
	x->d->closing = true;
	dstr_reset(x->d);
	xchg_finish(x);
}

static void ustr_process(struct ustr *u)
{
	struct xchg *x = u->x;

	if (x && x->relay) {
		relay_pump(x);
		return;
	}
	while (x && u->x == x) {
		struct http1_event ev;
		int n = http1_parser_push(&u->p, buf_rptr(&u->in), buf_len(&u->in), &ev);

		if (n < 0) {
			upstream_failed(x, "UPE", http1_parser_reason(&u->p));
			return;
		}
		switch (ev.type) {
		case HTTP1_EV_HEAD:
			if (x->upgrade && !x->resp_started &&
			    (x->http_method == HTTP1_M_CONNECT ? ev.msg->status / 100 == 2
							       : ev.msg->status == 101)) {
				attempt_report(x, false);
				upgrade_head(x, ev.msg);
				buf_consume(&u->in, (size_t)n);
				relay_pump(x); /* the bytes after the head are the tunnel's */
				return;
			}
			if (ev.msg->status >= 100 && ev.msg->status < 200) {
				/* 100 Continue goes to an HTTP/1.1 client (it may be waiting for
				 * it before sending the body); other interim responses do not. */
				if (ev.msg->status == 100 && x->client_version >= 1 &&
				    !x->resp_started) {
					http1_format_status_line(&x->d->out, 100, NULL);
					http1_format_end(&x->d->out);
				}
				break;
			}
			ev_timer_del(x->d->wk->loop, &x->rtimer);
			attempt_report(x, ev.msg->status >= 500);
			if (retry_code(x, ev.msg->status)) {
				if (retry_schedule(x, "retried status"))
					return;
				if (x->attempt > 1)
					x->flags = "URX"; /* Envoy: retries exhausted */
			}
			resp_head(x, ev.msg);
			break;
		case HTTP1_EV_BODY:
			x->resp_bytes += ev.data.n;
			if ((x->d->h2_direct  ? buf_append(&x->d->h2body, ev.data.p, ev.data.n)
			     : x->chunked_out ? http1_format_chunk(&x->d->out, ev.data.p, ev.data.n)
					      : buf_append(&x->d->out, ev.data.p, ev.data.n)) < 0) {
				upstream_failed(x, "UO", "response backlog over the limit");
				return;
			}
			break;
		case HTTP1_EV_END:
		case HTTP1_EV_UPGRADE:
			if (!x->resp_started)
				break; /* the END of a 1xx */
			if (x->d->h2_direct)
				x->d->h2_eof = true;
			else if (x->chunked_out)
				http1_format_last_chunk(&x->d->out, NULL, 0);
			x->resp_end = true;
			x->up_keep = ev.type == HTTP1_EV_END && ev.msg->keep_alive;
			break;
		case HTTP1_EV_NONE: break;
		}
		buf_consume(&u->in, (size_t)n);
		dstr_flush(x->d);
		if (x->resp_end) {
			if (x->req_end)
				xchg_finish(x);
			else
				x->close_after =
					true; /* answered before the body: Envoy closes too */
			return;
		}
		if (ev.type == HTTP1_EV_NONE)
			break;
	}
	if (x && u->x == x && u->peer_eof) {
		struct http1_event ev;
		if (http1_parser_eof(&u->p, &ev) < 0 || ev.type != HTTP1_EV_END) {
			upstream_failed(x, "UC", "upstream closed before the response ended");
			return;
		}
		if (x->d->h2_direct)
			x->d->h2_eof = true;
		else if (x->chunked_out)
			http1_format_last_chunk(&x->d->out, NULL, 0);
		x->resp_end = true;
		dstr_flush(x->d);
		if (x->req_end)
			xchg_finish(x);
		else
			x->close_after = true;
	}
}

/* ---- tunnel events --------------------------------------------------------------------------- */

/* Whether this waypoint serves dst: a VIP:port of a service bound to it, or (waypointFor
 * workload|all) a workload ip:port bound to it. */
const char *waypoint_bind(const struct config *c, const struct config_workload *self,
			  const struct net_addr *dst, const struct config_service **svcp,
			  const struct config_workload **dwlp)
{
	enum config_waypoint_for wf = self->waypoint_for;
	const struct config_service *svc;
	struct config_ip ip;
	struct net_ip nip;
	const struct config_gateway *gw = NULL;
	uint16_t port = net_addr_port(dst);

	*svcp = NULL;
	*dwlp = NULL;
	net_addr_ip(dst, &nip);
	proxy_ip_from_net(&ip, &nip);
	svc = *svcp = config_service_by_vip(c, "", &ip);
	if (svc) {
		bool has_port = false;
		if (wf == CONFIG_WAYPOINT_FOR_WORKLOAD || wf == CONFIG_WAYPOINT_FOR_NONE)
			return "this waypoint is not for service traffic (waypointFor)";
		for (size_t i = 0; i < svc->n_ports; i++)
			has_port |= svc->ports[i].service_port == port;
		if (!has_port)
			return "the service has no such port";
		gw = &svc->waypoint;
	} else {
		const struct config_workload *dwl = *dwlp = config_workload_by_ip(c, "", &ip);

		if (!dwl)
			return "not a service VIP or workload address";
		if (wf != CONFIG_WAYPOINT_FOR_WORKLOAD && wf != CONFIG_WAYPOINT_FOR_ALL)
			return "this waypoint is not for workload traffic (waypointFor)";
		gw = &dwl->waypoint;
	}
	if (!gw->present)
		return "the destination has no waypoint";
	if (gw->destination.kind == CONFIG_GATEWAY_ADDRESS) {
		for (size_t i = 0; i < self->n_workload_ips; i++)
			if (config_ip_equal(&self->workload_ips[i], &gw->destination.address.ip))
				return NULL;
		const struct config_service *ws =
			config_service_by_vip(c, "", &gw->destination.address.ip);
		for (size_t i = 0; ws && i < ws->n_endpoints; i++)
			if (ws->endpoints[i].workload == self)
				return NULL;
		return "the destination uses another waypoint";
	}
	const struct config_service *ws =
		config_service_by_key(c, gw->destination.namespace, gw->destination.hostname);
	for (size_t i = 0; ws && i < ws->n_endpoints; i++)
		if (ws->endpoints[i].workload == self)
			return NULL;
	return "the destination uses another waypoint";
}

static const char *bind_check(struct dstr *d, const struct net_addr *dst)
{
	d->port = net_addr_port(dst);
	return waypoint_bind(d->snap->c, d->snap->self, dst, &d->svc, &d->dwl);
}

/* ---- idle timeouts ------------------------------------------------------------------------- */

/* A request is on the way (a head being read, an exchange) rather than the next one awaited;
 * a relay is a connection, under the idle timeout like Envoy's TCP proxy. */
static bool dstr_busy(const struct dstr *d)
{
	if (d->x)
		return !d->x->relay;
	return buf_len(&d->in) > 0 || http1_parser_state(&d->p) != HTTP1_STATE_IDLE;
}

void wp_dstr_idle_expire(struct dstr *d)
{
	struct xchg *x = d->x;

	log_debug("waypoint: stream idle timeout", LF_BOOL("exchange", x != NULL),
		  LF_BOOL("response_started", x && x->resp_started));
	if (!x) {
		if (d->parent) { /* HTTP/2: its HEADERS never completed */
			wp_h2_child_reset(d);
			return;
		}
		x = xchg_local_new(d);
	}
	if (x->relay || x->resp_started) {
		x->flags = "SI";
		x->reason = x->relay ? "idle timeout"
				     : "stream idle timeout while sending the response";
		d->closing = true;
		dstr_reset(d);
		xchg_finish(x);
		return;
	}
	x->close_after = true;
	local_reply(x, 408, "SI", "stream idle timeout", NULL, NULL);
	xchg_finish(x);
}

static void on_idle_timer(struct ev_loop *loop, struct ev_timer *tm)
{
	struct dstr *d = ev_container_of(tm, struct dstr, idle_timer);
	const struct waypoint_opts *o = &d->wk->w->o;
	uint64_t now = ev_now(loop), next = UINT64_MAX, lim;

	if (d->idle_shut) { /* ended for being idle, and the client still holds it open */
		dstr_reset(d);
		return;
	}
	if (d->h2) {
		bool streams;

		next = wp_h2_idle_check(d, now, &streams);
		if (!streams && o->idle_ms) {
			if (now >= d->active_ms + o->idle_ms) {
				wp_h2_idle_close(d);
				d->idle_shut = true;
				next = now + 10000;
			} else {
				next = d->active_ms + o->idle_ms;
			}
		}
	} else {
		bool busy = dstr_busy(d);

		lim = busy ? o->stream_idle_ms : o->idle_ms;
		if (lim && now >= d->active_ms + lim) {
			if (busy || d->x) {
				wp_dstr_idle_expire(d);
				return; /* the stream is reset or closes after the answer */
			}
			/* An idle keep-alive stream: END_STREAM, as a server closes an idle HTTP
			 * connection; reset 10 s later if the client does not close its side. */
			log_debug("waypoint: idle timeout, closing the connection");
			d->closing = true;
			d->idle_shut = true;
			dstr_flush(d);
			next = now + 10000;
		} else if (lim) {
			next = d->active_ms + lim;
		}
	}
	/* A request can start between two checks: look again within the stream idle timeout. */
	if (o->stream_idle_ms && !d->idle_shut && next > now + o->stream_idle_ms)
		next = now + o->stream_idle_ms;
	if (next != UINT64_MAX)
		ev_timer_add(loop, tm, next > now ? next - now : 1);
}

static void dstr_idle_start(struct dstr *d)
{
	const struct waypoint_opts *o = &d->wk->w->o;
	uint64_t first = o->idle_ms;

	d->active_ms = ev_now(d->wk->loop);
	if (o->stream_idle_ms && (!first || o->stream_idle_ms < first))
		first = o->stream_idle_ms;
	ev_timer_init(&d->idle_timer, on_idle_timer);
	if (first)
		ev_timer_add(d->wk->loop, &d->idle_timer, first);
}

void wp_dstr_free(struct dstr *d)
{
	ev_timer_del(d->wk->loop, &d->idle_timer);
	atomic_fetch_sub(&d->wk->w->active, 1);
	wtun_del(&d->s);
	wp_snap_put(d->snap);
	wp_buf_fini(d->wk, &d->in);
	wp_buf_fini(d->wk, &d->out);
	wp_buf_fini(d->wk, &d->h2body);
	wp_obj_free(d->wk, WP_OBJ_DSTR, d);
}

/* The downstream stream is gone: end its exchange (and its HTTP/2 streams). */
void wp_dstr_end(struct dstr *d)
{
	if (d->h2)
		wp_h2_end(d);
	if (d->x) {
		if (!d->x->resp_end) {
			d->x->flags = "DC";
			d->x->reason = "downstream closed";
		}
		d->closing = true;
		xchg_finish(d->x);
	}
	wp_dstr_free(d);
}

static void on_request(struct wtun *t, const struct hbone_event *ev)
{
	struct wp_worker *wk = t->wk;
	struct dstr *d;
	const char *why;
	char a[NET_ADDR_STRLEN];
	struct net_ip pip;

	if (!ev->request.ok) {
		hbone_stream_respond(t->h, ev->stream_id, 400);
		log_warn("waypoint: bad HBONE request", LF_STR("reason", ev->request.reason));
		return;
	}
	d = wp_obj_new(wk, WP_OBJ_DSTR);
	d->wk = wk;
	d->snap = wp_snap_get(wk->w);
	d->dst = ev->request.addr;
	d->first = true;
	atomic_fetch_add(&wk->w->active, 1);
	wp_buf_init(wk, &d->in, WP_BUF_MAX);
	wp_buf_init(wk, &d->out, WP_BUF_MAX);
	http1_parser_init(&d->p, HTTP1_REQUEST, &wk->w->lim);
	str_copy(d->peer_id, sizeof(d->peer_id), t->peer_id);
	str_copy(d->principal, sizeof(d->principal),
		 strncmp(t->peer_id, "spiffe://", 9) == 0 ? t->peer_id + 9 : t->peer_id);
	net_addr_ip(&t->peer, &pip);
	net_ip_format(&pip, d->src_ip, sizeof(d->src_ip));
	proxy_ip_from_net(&d->src_cip, &pip);
	d->have_src_ip = true;
	why = d->snap && d->snap->self ? bind_check(d, &d->dst) : "no config";
	if (why) {
		hbone_stream_respond(t->h, ev->stream_id, 400);
		log_warn("waypoint: tunnel refused",
			 LF_STR("authority", hbone_authority_format(&d->dst, a, sizeof(a))),
			 LF_STR("src.identity", t->peer_id), LF_STR("reason", why));
		atomic_fetch_sub(&wk->w->active, 1);
		wp_snap_put(d->snap);
		buf_fini(&d->in);
		buf_fini(&d->out);
		wp_obj_free(wk, WP_OBJ_DSTR, d);
		return;
	}
	d->src_wl = config_workload_by_ip(d->snap->c, "", &d->src_cip);
	d->s.sid = ev->stream_id;
	wtun_add(t, &d->s);
	hbone_stream_set_user(t->h, ev->stream_id, d);
	hbone_stream_respond(t->h, ev->stream_id, 200);
	dstr_idle_start(d);
	if (d->svc && config_service_app_protocol(d->svc, d->port) == CONFIG_APP_PROTOCOL_TCP)
		l4_start(d);
}

void wp_down_event(struct wtun *t, const struct hbone_event *ev)
{
	struct dstr *d = ev->stream_user;

	if (ev->type == HBONE_EV_REQUEST) {
		on_request(t, ev);
		return;
	}
	if (!d)
		return;
	switch (ev->type) {
	case HBONE_EV_DATA:
		d->active_ms = ev_now(d->wk->loop);
		if (buf_append(&d->in, ev->data.p, ev->data.n) < 0) {
			dstr_reset(d);
			break;
		}
		d->unacked += ev->data.n;
		if (d->h2)
			wp_h2_input(d);
		else
			wp_dstr_process(d);
		dstr_credit(d);
		break;
	case HBONE_EV_PEER_EOF:
		d->peer_eof = true;
		if (d->h2)
			wp_h2_input(d);
		else
			wp_dstr_process(d);
		break;
	case HBONE_EV_WRITABLE:
		d->active_ms = ev_now(d->wk->loop);
		if (d->h2) {
			wp_h2_pump(d);
		} else if (d->x && d->x->relay) {
			relay_pump(d->x);
		} else {
			dstr_flush(d);
			if (d->x && d->x->u)
				wp_ustr_credit(d->x->u);
		}
		break;
	case HBONE_EV_CLOSED:
		hbone_stream_set_user(t->h, ev->stream_id, NULL);
		d->s.sid = 0;
		wp_dstr_end(d);
		break;
	default: break;
	}
}

/* Events of an upstream request to a plain-TCP endpoint (waypoint_tcp.c), as their HBONE
 * counterparts in wp_up_event. */
void wp_up_tcp(struct ustr *u, enum wp_tcp_ev ev, const char *why)
{
	if (u->idle && (ev == WP_TCP_DATA || ev == WP_TCP_EOF)) {
		wp_pool_event(u, ev == WP_TCP_DATA); /* frees u */
		return;
	}
	switch (ev) {
	case WP_TCP_CONNECTED:
		if (u->x)
			u->x->up_sent = true;
		if (u->x && u->x->relay)
			relay_pump(u->x);
		break;
	case WP_TCP_FAILED:
	case WP_TCP_CLOSED: wp_stream_gone(&u->s, why); break;
	case WP_TCP_DATA:
		if (u->x)
			u->x->d->active_ms = ev_now(u->x->d->wk->loop);
		ustr_process(u);
		break;
	case WP_TCP_EOF:
		/* u->peer_eof is set. Releasing a plain-TCP ustr frees it at once (no tunnel
		 * reports its end), so u is not touched after ustr_process. */
		ustr_process(u);
		break;
	case WP_TCP_WRITABLE:
		if (u->x && u->x->relay)
			relay_pump(u->x);
		else if (u->x)
			dstr_credit(u->x->d);
		break;
	}
}

/* A mirror's stream: the request goes out, the write side is shut, the response is
 * credited and dropped; CLOSED frees it (wp_stream_gone). */
static void mirror_event(struct wtun *t, struct ustr *u, const struct hbone_event *ev)
{
	switch (ev->type) {
	case HBONE_EV_DATA:
		hbone_stream_consumed(t->h, ev->stream_id, ev->data.n);
		wtun_kick(t);
		break;
	case HBONE_EV_WRITABLE:
		wp_stream_flush(&u->s, &u->out);
		if (!buf_len(&u->out) && !u->shut && u->s.sid > 0) {
			u->shut = true;
			hbone_stream_shutdown_write(t->h, u->s.sid);
			wtun_kick(t);
		}
		break;
	case HBONE_EV_CLOSED:
		hbone_stream_set_user(t->h, ev->stream_id, NULL);
		u->closed = true;
		u->s.sid = 0;
		wp_stream_gone(&u->s, "stream closed");
		break;
	default: break;
	}
}

void wp_up_event(struct wtun *t, struct wstream *s, const struct hbone_event *ev)
{
	struct ustr *u = (struct ustr *)s;

	if (u->mirror) {
		mirror_event(t, u, ev);
		return;
	}
	if (u->idle && (ev->type == HBONE_EV_DATA || ev->type == HBONE_EV_PEER_EOF)) {
		u->peer_eof = ev->type == HBONE_EV_PEER_EOF;
		wp_pool_event(u, ev->type == HBONE_EV_DATA);
		return;
	}
	switch (ev->type) {
	case HBONE_EV_RESPONSE:
		if (ev->status == 200 && u->x)
			u->x->up_sent = true; /* from here on the backend may see the request */
		if (ev->status != 200 && u->x)
			upstream_failed(u->x, "UF", "upstream ztunnel refused the HBONE CONNECT");
		else if (u->x && u->x->relay)
			relay_pump(u->x);
		break;
	case HBONE_EV_DATA:
		if (u->x)
			u->x->d->active_ms = ev_now(u->x->d->wk->loop);
		if (buf_append(&u->in, ev->data.p, ev->data.n) < 0) {
			hbone_stream_reset(t->h, ev->stream_id, HBONE_CANCEL);
			break;
		}
		u->unacked += ev->data.n;
		ustr_process(u);
		if (!u->closed) /* ustr_process may have finished the exchange; u lives on */
			wp_ustr_credit(u);
		break;
	case HBONE_EV_PEER_EOF:
		u->peer_eof = true;
		ustr_process(u);
		break;
	case HBONE_EV_WRITABLE:
		wp_stream_flush(&u->s, &u->out);
		if (u->x && u->x->relay)
			relay_pump(u->x);
		else if (u->x)
			dstr_credit(u->x->d);
		break;
	case HBONE_EV_CLOSED:
		hbone_stream_set_user(t->h, ev->stream_id, NULL);
		u->closed = true;
		u->s.sid = 0;
		wp_stream_gone(&u->s, ev->error_code ? hbone_error_code_str(ev->error_code)
						     : "stream closed");
		break;
	default: break;
	}
}

void wp_stream_gone(struct wstream *s, const char *why)
{
	if (!s->up) {
		struct dstr *d = (struct dstr *)s;
		wp_dstr_end(d);
		return;
	}
	struct ustr *u = (struct ustr *)s;
	u->closed = true;
	u->in_gone = true;
	if (u->x && u->x->relay) {
		struct xchg *x = u->x;
		relay_pump(x); /* may end x */
		if (u->x == x) {
			bool clean = u->peer_eof && x->up_shut;
			x->u = NULL;
			u->x = NULL;
			if (clean) /* both halves done upstream: the client's half may still drain
				    */
				x->up_eof = true;
			else
				relay_abort(x, x->up_sent ? "UC" : "UF", why);
		}
	} else if (u->x) {
		struct xchg *x = u->x;
		if (!x->resp_end && buf_len(&u->in)) {
			u->peer_eof = true;
			ustr_process(u); /* may finish x, which then lets go of u */
		}
		if (u->x == x) {
			x->u = NULL;
			u->x = NULL;
			if (!x->resp_end)
				upstream_failed(x, x->up_sent ? "UC" : "UF", why);
		}
	}
	ustr_free(u);
}
