/* HTTP/2 with prior knowledge inside a waypoint tunnel stream (RFC 9113 §3.3), over nghttp2: each
 * h2 stream becomes a child of the downstream stream that sees its request as HTTP/1.1 (so the
 * same exchange code authorizes, routes and forwards it) and whose HTTP/1.1 response is turned
 * back into HEADERS + DATA.
 *
 *   HBONE stream bytes --nghttp2_session_mem_recv--> HEADERS/DATA of stream N
 *        child N: "GET /p HTTP/1.1\r\nhost: a\r\n...\r\n" (+ chunked body) --> wp_dstr_process
 *        child N: HTTP/1.1 response bytes --http1 parser--> nghttp2_submit_response + DATA
 *   nghttp2_session_mem_send --> HBONE stream
 */
#include "pkg/waypoint/waypoint_int.h"

#include <ctype.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H2_MAX_STREAMS 100
/* Flow control of request bodies: DATA is credited back (WINDOW_UPDATE) only as the child's
 * upstream takes it (wp_h2_child_credit, under WP_CREDIT_LOW queued), so a client sending
 * faster than the backend reads is held by its windows rather than by the waypoint's memory.
 * A stream may have this much unacknowledged in flight, all streams of a connection together
 * H2_CONN_WINDOW; 256 KiB per stream keeps a single upload near link speed inside a host. */
#define H2_STREAM_WINDOW (256 << 10)
#define H2_CONN_WINDOW (1 << 20)

struct wp_h2 {
	nghttp2_session *ngh;
	struct dstr *d;
	/* Sending runs from here, after the current callbacks: a stream that finishes while
	 * sending frees its child, which an exchange further up the stack may still use. */
	struct ev_timer kick;
	struct dstr *children;
	bool in_recv, dying, failed;
};

static void h2_kick(struct dstr *d);

/* ---- children -------------------------------------------------------------------------------- */

static struct dstr *child_new(struct dstr *p, int32_t sid)
{
	struct dstr *c = wp_obj_new(p->wk, WP_OBJ_DSTR);

	c->wk = p->wk;
	c->snap = p->snap;
	atomic_fetch_add(&c->snap->refs, 1);
	c->svc = p->svc;
	c->dwl = p->dwl;
	c->src_wl = p->src_wl;
	c->dst = p->dst;
	c->port = p->port;
	memcpy(c->src_ip, p->src_ip, sizeof(c->src_ip));
	c->src_cip = p->src_cip;
	c->have_src_ip = p->have_src_ip;
	memcpy(c->peer_id, p->peer_id, sizeof(c->peer_id));
	memcpy(c->principal, p->principal, sizeof(c->principal));
	wp_buf_init(c->wk, &c->in, WP_BUF_MAX);
	wp_buf_init(c->wk, &c->out, WP_BUF_MAX);
	wp_buf_init(c->wk, &c->h2body, WP_BUF_MAX);
	http1_parser_init(&c->p, HTTP1_REQUEST, &p->wk->w->lim);
	http1_parser_init(&c->rp, HTTP1_RESPONSE, NULL);
	c->parent = p;
	c->h2_sid = sid;
	c->active_ms = ev_now(p->wk->loop);
	c->h2next = p->h2->children;
	if (c->h2next)
		c->h2next->h2prev = c;
	p->h2->children = c;
	atomic_fetch_add(&c->wk->w->active, 1);
	return c;
}

static void child_unlink(struct dstr *c)
{
	struct wp_h2 *h = c->parent->h2;

	if (c->h2prev)
		c->h2prev->h2next = c->h2next;
	else
		h->children = c->h2next;
	if (c->h2next)
		c->h2next->h2prev = c->h2prev;
	c->h2next = c->h2prev = NULL;
}

/* Gives c's received DATA back to the client's windows once its upstream has room; with no
 * exchange or upstream yet, at once (the bytes wait in c->in, bounded by the window). */
static bool child_credit(struct dstr *c)
{
	struct wp_h2 *h = c->parent->h2;

	if (!c->unacked || !h || h->dying)
		return false;
	if (!c->h2_closed && wp_up_backlogged(c->x))
		return false;
	/* Also for a closed stream: the connection's window still needs the bytes back. */
	nghttp2_session_consume(h->ngh, c->h2_sid, c->unacked);
	c->unacked = 0;
	return true;
}

void wp_h2_child_credit(struct dstr *c)
{
	if (child_credit(c))
		h2_kick(c->parent);
}

/* The h2 stream of c is gone: end its exchange and free it. */
static void child_end(struct dstr *c)
{
	child_unlink(c);
	c->h2_closed = true;
	child_credit(c); /* the parent's pump sends the WINDOW_UPDATE */
	wp_dstr_end(c);
}

/* ---- session I/O ----------------------------------------------------------------------------- */

static void h2_kick(struct dstr *d)
{
	if (d->h2 && !d->h2->dying && !ev_timer_active(&d->h2->kick))
		ev_timer_add(d->wk->loop, &d->h2->kick, 0);
}

static void on_kick(struct ev_loop *loop, struct ev_timer *tm)
{
	struct wp_h2 *h = ev_container_of(tm, struct wp_h2, kick);

	(void)loop;
	wp_h2_pump(h->d);
}

void wp_h2_pump(struct dstr *d)
{
	struct wp_h2 *h = d->h2;

	if (!h || h->in_recv || h->dying)
		return;
	for (struct dstr *c = h->children; c; c = c->h2next)
		child_credit(c);
	for (;;) {
		const uint8_t *p;
		ssize_t n;

		if (buf_len(&d->out) >= (256u << 10))
			break; /* the HBONE send buffer is full: WRITABLE comes back here */
		n = nghttp2_session_mem_send(h->ngh, &p);
		if (n < 0) {
			h->failed = true;
			break;
		}
		if (n == 0)
			break;
		if (buf_append(&d->out, p, (size_t)n) < 0) {
			h->failed = true;
			break;
		}
	}
	if (d->s.t && d->s.sid > 0)
		wp_stream_flush(&d->s, &d->out);
	for (struct dstr *c = h->children; c; c = c->h2next)
		if (c->x && c->x->u)
			wp_ustr_credit(c->x->u);
	if (!d->s.t || d->s.sid <= 0 || d->shut)
		return;
	if (h->failed ||
	    (!nghttp2_session_want_read(h->ngh) && !nghttp2_session_want_write(h->ngh) &&
	     buf_len(&d->out) == 0) ||
	    (d->peer_eof && !h->children && buf_len(&d->out) == 0)) {
		log_debug("waypoint: HTTP/2 connection done", LF_BOOL("failed", h->failed),
			  LF_BOOL("want_read", nghttp2_session_want_read(h->ngh)),
			  LF_BOOL("peer_eof", d->peer_eof));
		d->shut = true;
		hbone_stream_shutdown_write(d->s.t->h, d->s.sid);
		wtun_kick(d->s.t);
	}
}

void wp_h2_input(struct dstr *d)
{
	struct wp_h2 *h = d->h2;
	ssize_t n;

	if (!h || h->failed)
		return;
	h->in_recv = true;
	n = nghttp2_session_mem_recv(h->ngh, buf_rptr(&d->in), buf_len(&d->in));
	h->in_recv = false;
	if (n < 0) {
		log_warn("waypoint: bad HTTP/2 from the client", LF_ERR(nghttp2_strerror((int)n)));
		h->failed = true;
	} else {
		buf_consume(&d->in, (size_t)n);
	}
	wp_h2_pump(d);
}

/* ---- requests in --------------------------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct dstr *d = ud;
	struct dstr *c;
	struct h2_req *r;

	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	c = child_new(d, f->hd.stream_id);
	r = wp_obj_new(c->wk, WP_OBJ_H2REQ);
	wp_buf_init(c->wk, &r->head, 65536);
	c->h2_req = r;
	nghttp2_session_set_stream_user_data(s, f->hd.stream_id, c);
	return 0;
}

static bool hop_header(const uint8_t *n, size_t len)
{
	static const char *const hop[] = {
		"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
		"te",	      "host"};
	for (size_t i = 0; i < ARRAY_LEN(hop); i++)
		if (strlen(hop[i]) == len && memcmp(hop[i], n, len) == 0)
			return true;
	return false;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct dstr *c = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	struct h2_req *r;

	(void)flags;
	(void)ud;
	if (!c || f->hd.type != NGHTTP2_HEADERS || !c->h2_req || c->x)
		return 0;
	r = c->h2_req;
#define PSEUDO(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)
	if (PSEUDO(":method"))
		str_copyn(r->method, sizeof(r->method), (const char *)value, valuelen);
	else if (PSEUDO(":path"))
		str_copyn(r->path, sizeof(r->path), (const char *)value, valuelen);
	else if (PSEUDO(":authority"))
		str_copyn(r->authority, sizeof(r->authority), (const char *)value, valuelen);
	else if (PSEUDO(":scheme"))
		;
	else if (namelen && name[0] == ':')
		r->bad = true;
	else if (hop_header(name, namelen)) {
		if (namelen == 4 && memcmp(name, "host", 4) == 0 && !r->authority[0])
			str_copyn(r->authority, sizeof(r->authority), (const char *)value,
				  valuelen);
	} else {
		if (namelen == 14 && memcmp(name, "content-length", 14) == 0)
			r->has_cl = true;
		if (http1_format_field(&r->head, (struct slice){name, namelen},
				       (struct slice){value, valuelen}) < 0)
			r->bad = true;
	}
#undef PSEUDO
	return 0;
}

/* HEADERS complete: the child gets its request as HTTP/1.1. */
static void request_ready(struct dstr *c, bool end_stream)
{
	struct h2_req *r = c->h2_req;
	int rc;

	c->h2_req = NULL;
	if (!r)
		return;
	rc = http1_format_request_line(&c->in, http1_s(r->method[0] ? r->method : "GET"),
				       http1_s(r->path[0] ? r->path : "/"));
	if (rc >= 0)
		rc = http1_format_field_str(&c->in, "host", r->authority);
	if (rc >= 0)
		rc = buf_append(&c->in, buf_rptr(&r->head), buf_len(&r->head));
	if (rc >= 0 && !end_stream && !r->has_cl) {
		c->h2_chunked_in = true;
		rc = http1_format_length(&c->in, HTTP1_LEN_CHUNKED);
	}
	if (rc >= 0)
		rc = http1_format_end(&c->in);
	if (rc < 0 || r->bad)
		buf_reset(&c->in), buf_append_str(&c->in, "BAD\r\n\r\n"); /* answered 400 */
	if (strcmp(r->method, "HEAD") == 0)
		http1_parser_set_method(&c->rp, HTTP1_M_HEAD);
	wp_buf_fini(c->wk, &r->head);
	wp_obj_free(c->wk, WP_OBJ_H2REQ, r);
	wp_dstr_process(c);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct dstr *c = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

	(void)ud;
	if (!c)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && c->h2_req) {
		request_ready(c, end);
		return 0;
	}
	if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && end) {
		if (c->h2_chunked_in)
			http1_format_last_chunk(&c->in, NULL, 0);
		c->peer_eof = true;
		wp_dstr_process(c);
	}
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
		   void *ud)
{
	struct dstr *c = nghttp2_session_get_stream_user_data(s, sid);

	(void)flags;
	(void)ud;
	if (!c || c->h2_req) { /* dropped: consumed */
		nghttp2_session_consume(s, sid, len);
		return 0;
	}
	c->unacked += len; /* credited by the pump (child_credit) once the upstream has room */
	c->active_ms = ev_now(c->wk->loop);
	if (c->h2_chunked_in ? http1_format_chunk(&c->in, data, len) < 0
			     : buf_append(&c->in, data, len) < 0) {
		log_warn("waypoint: HTTP/2 request body over the buffer limit: stream reset",
			 LF_I64("stream", sid), LF_U64("buffered", buf_len(&c->in)));
		wp_h2_child_reset(c);
		return 0;
	}
	wp_dstr_process(c);
	return 0;
}

/* A response complete before its request (an early 4xx, a 408 for a stalled body): the rest of
 * the request is not wanted, so RST_STREAM(NO_ERROR) closes the stream (RFC 9113 section 8.1)
 * rather than keeping it open until the client sends it all. */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	(void)ud;
	if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    nghttp2_session_get_stream_remote_close(s, f->hd.stream_id) == 0)
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
	struct dstr *d = ud;
	struct dstr *c = nghttp2_session_get_stream_user_data(s, sid);

	(void)code;
	if (!c || d->h2->dying)
		return 0;
	nghttp2_session_set_stream_user_data(s, sid, NULL);
	if (c->h2_req) { /* closed mid-HEADERS */
		struct h2_req *r = c->h2_req;
		wp_buf_fini(c->wk, &r->head);
		wp_obj_free(c->wk, WP_OBJ_H2REQ, r);
		c->h2_req = NULL;
	}
	child_end(c);
	return 0;
}

/* ---- responses out --------------------------------------------------------------------------- */

static ssize_t body_read(nghttp2_session *s, int32_t sid, uint8_t *out, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *ud)
{
	struct dstr *c = src->ptr;
	size_t n = buf_len(&c->h2body) < len ? buf_len(&c->h2body) : len;

	(void)s;
	(void)sid;
	(void)ud;
	if (n) {
		memcpy(out, buf_rptr(&c->h2body), n);
		buf_consume(&c->h2body, n);
		c->active_ms = ev_now(c->wk->loop); /* the client takes this stream's bytes */
	}
	if (n == 0 && !c->h2_eof)
		return NGHTTP2_ERR_DEFERRED;
	if (c->h2_eof && buf_len(&c->h2body) == 0)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* Response fields as nghttp2 name/value pairs (names lower-cased, as HTTP/2 requires). */
struct h2_fields {
	nghttp2_nv nv[101];
	char names[100][64];
	size_t n, bytes; /* bytes: their size in HTTP/1.1 form, for istio_response_bytes */
};

static void h2_field(void *ctx, struct slice name, struct slice value)
{
	struct h2_fields *hf = ctx;
	char *nm;

	if (hf->n >= ARRAY_LEN(hf->nv) || name.n >= sizeof(hf->names[0]))
		return;
	nm = hf->names[hf->n - 1];
	for (size_t i = 0; i < name.n; i++)
		nm[i] = (char)tolower(name.p[i]);
	hf->nv[hf->n++] = (nghttp2_nv){(uint8_t *)nm, (uint8_t *)(uintptr_t)value.p, name.n,
				       value.n, NGHTTP2_NV_FLAG_NONE};
	hf->bytes += name.n + value.n + 4;
}

/* A response the child wrote as HTTP/1.1 (a local answer: 403, 404, 503, ...). */
static void submit_head(struct dstr *c, const struct http1_msg *m)
{
	struct wp_h2 *h = c->parent->h2;
	struct h2_fields hf;
	char status[8];
	size_t pos = 0;
	struct http1_field f;
	nghttp2_data_provider prd = {.source.ptr = c, .read_callback = body_read};

	status[str_u64(status, (uint64_t)(m->status > 0 && m->status < 1000 ? m->status : 500))] =
		'\0';
	hf.nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, strlen(status),
				NGHTTP2_NV_FLAG_NONE};
	hf.n = 1;
	while (http1_fields_next(&m->headers, &pos, &f))
		if (!http1_is_hop_by_hop(m, f.name))
			h2_field(&hf, f.name, f.value);
	if (nghttp2_submit_response(h->ngh, c->h2_sid, hf.nv, hf.n, &prd) != 0)
		h->failed = true;
	c->h2_submitted = true;
}

size_t wp_h2_child_head(struct dstr *c, const struct http1_msg *m,
			const struct config_header_filter *mod, bool no_body)
{
	struct wp_h2 *h = c->parent->h2;
	struct h2_fields hf;
	char status[8], cl[24];
	nghttp2_data_provider prd = {.source.ptr = c, .read_callback = body_read};
	const char *reason = http1_reason(m->status);

	c->h2_direct = true;
	c->h2_submitted = true;
	if (c->h2_closed || !h)
		return 0;
	status[str_u64(status, (uint64_t)m->status)] = '\0';
	hf.nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, strlen(status),
				NGHTTP2_NV_FLAG_NONE};
	hf.n = 1;
	hf.bytes = 13 + strlen(reason) + 2 + 2; /* status line and the blank line */
	wp_resp_fields(m, mod, h2_field, &hf);
	if (m->has_content_length && (no_body || m->framing == HTTP1_FRAMING_LENGTH))
		h2_field(&hf, http1_s("content-length"),
			 (struct slice){(const uint8_t *)cl, str_u64(cl, m->content_length)});
	if (no_body)
		c->h2_eof = true;
	if (nghttp2_submit_response(h->ngh, c->h2_sid, hf.nv, hf.n, no_body ? NULL : &prd) != 0)
		h->failed = true;
	return hf.bytes;
}

void wp_h2_child_flush(struct dstr *c)
{
	struct wp_h2 *h = c->parent->h2;

	if (c->h2_closed || !h)
		return;
	/* Until HTTP1_EV_NONE, not until the buffer is empty: END comes from a push after the
	 * last body bytes (pkg/http1's contract). */
	for (;;) {
		struct http1_event ev;
		int n = http1_parser_push(&c->rp, buf_rptr(&c->out), buf_len(&c->out), &ev);

		if (n < 0) {
			wp_h2_child_reset(c);
			return;
		}
		switch (ev.type) {
		case HTTP1_EV_HEAD:
			if (ev.msg->status >= 200 && !c->h2_submitted)
				submit_head(c, ev.msg);
			break;
		case HTTP1_EV_BODY: buf_append(&c->h2body, ev.data.p, ev.data.n); break;
		case HTTP1_EV_END:
		case HTTP1_EV_UPGRADE:
			if (c->h2_submitted)
				c->h2_eof = true;
			break;
		case HTTP1_EV_NONE: break;
		}
		buf_consume(&c->out, (size_t)n);
		if (ev.type == HTTP1_EV_NONE)
			break;
	}
	if (c->h2_submitted)
		nghttp2_session_resume_data(h->ngh, c->h2_sid);
	h2_kick(c->parent);
}

void wp_h2_child_reset(struct dstr *c)
{
	struct wp_h2 *h = c->parent->h2;

	if (c->h2_closed || !h)
		return;
	nghttp2_submit_rst_stream(h->ngh, NGHTTP2_FLAG_NONE, c->h2_sid, NGHTTP2_CANCEL);
	h2_kick(c->parent);
}

/* ---- idle timeouts ----------------------------------------------------------------------------
 */

uint64_t wp_h2_idle_check(struct dstr *d, uint64_t now, bool *streams)
{
	uint64_t lim = d->wk->w->o.stream_idle_ms, next = UINT64_MAX;
	struct dstr *c, *nx;

	*streams = false;
	if (!d->h2 || d->h2->dying)
		return UINT64_MAX;
	for (c = d->h2->children; c; c = nx) {
		nx = c->h2next; /* an expired stream ends later, from the pump: c stays valid */
		*streams = true;
		if (!lim || c->closing)
			continue;
		if (now >= c->active_ms + lim)
			wp_dstr_idle_expire(c);
		else if (c->active_ms + lim < next)
			next = c->active_ms + lim;
	}
	return next;
}

void wp_h2_idle_close(struct dstr *d)
{
	if (!d->h2 || d->h2->dying)
		return;
	log_debug("waypoint: idle timeout, GOAWAY to an HTTP/2 connection");
	nghttp2_session_terminate_session(d->h2->ngh, NGHTTP2_NO_ERROR);
	h2_kick(d);
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

void wp_h2_start(struct dstr *d)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
				       {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW}};
	struct wp_h2 *h = xcalloc(1, sizeof(*h));

	d->h2 = h;
	h->d = d;
	ev_timer_init(&h->kick, on_kick);
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		abort();
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
	if (nghttp2_option_new(&opt) != 0)
		abort();
	nghttp2_option_set_no_auto_window_update(opt, 1);
	if (nghttp2_session_server_new2(&h->ngh, cbs, d, opt) != 0)
		abort();
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	nghttp2_submit_settings(h->ngh, NGHTTP2_FLAG_NONE, iv, ARRAY_LEN(iv));
	nghttp2_session_set_local_window_size(h->ngh, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
	wp_h2_input(d);
}

void wp_h2_end(struct dstr *d)
{
	struct wp_h2 *h = d->h2;

	if (!h)
		return;
	h->dying = true;
	ev_timer_del(d->wk->loop, &h->kick);
	while (h->children) {
		struct dstr *c = h->children;
		nghttp2_session_set_stream_user_data(h->ngh, c->h2_sid, NULL);
		if (c->h2_req) {
			struct h2_req *r = c->h2_req;
			wp_buf_fini(c->wk, &r->head);
			wp_obj_free(c->wk, WP_OBJ_H2REQ, r);
			c->h2_req = NULL;
		}
		child_end(c);
	}
	nghttp2_session_del(h->ngh);
	free(h);
	d->h2 = NULL;
}
