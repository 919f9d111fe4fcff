/* HBONE sessions: nghttp2 setup with the HBONE settings, the byte pump, keepalive, failure
 * tracking and the nghttp2 callbacks that turn frames into events. */
#include "pkg/hbone/hbone_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- bounded allocator ------------------------------------------------------------------------
 * Every nghttp2 allocation carries a 16-byte header with its size so free() can account for it;
 * refusing past the limit makes nghttp2 fail the session with NGHTTP2_ERR_NOMEM. */
#define MEM_HDR 16

static void *mem_malloc(size_t n, void *ud)
{
	struct hbone_mem *m = ud;
	uint8_t *p;

	if (n > m->limit || m->used > m->limit - n)
		return NULL;
	p = malloc(n + MEM_HDR);
	if (!p)
		return NULL;
	memcpy(p, &n, sizeof(n));
	m->used += n;
	if (m->used > m->peak)
		m->peak = m->used;
	return p + MEM_HDR;
}

static void mem_free(void *ptr, void *ud)
{
	struct hbone_mem *m = ud;
	uint8_t *p;
	size_t n;

	if (!ptr)
		return;
	p = (uint8_t *)ptr - MEM_HDR;
	memcpy(&n, p, sizeof(n));
	m->used -= n;
	free(p);
}

static void *mem_calloc(size_t nmemb, size_t size, void *ud)
{
	void *p;

	if (size && nmemb > SIZE_MAX / size)
		return NULL;
	p = mem_malloc(nmemb * size, ud);
	if (p)
		memset(p, 0, nmemb * size);
	return p;
}

static void *mem_realloc(void *ptr, size_t n, void *ud)
{
	struct hbone_mem *m = ud;
	uint8_t *p, *np;
	size_t old;

	if (!ptr)
		return mem_malloc(n, ud);
	p = (uint8_t *)ptr - MEM_HDR;
	memcpy(&old, p, sizeof(old));
	if (n > old && (n - old > m->limit || m->used > m->limit - (n - old)))
		return NULL;
	np = realloc(p, n + MEM_HDR);
	if (!np)
		return NULL;
	memcpy(np, &n, sizeof(n));
	m->used = m->used - old + n;
	if (m->used > m->peak)
		m->peak = m->used;
	return np + MEM_HDR;
}

/* ---- failure and events ---------------------------------------------------------------------- */

void hbone_fail(struct hbone_session *s, int err, bool dead, const char *fmt, ...)
{
	va_list ap;

	if (dead)
		s->dead = true;
	if (s->err)
		return;
	s->err = err;
	va_start(ap, fmt);
	vsnprintf(s->reason, sizeof(s->reason), fmt, ap);
	va_end(ap);
}

void hbone_emit(struct hbone_session *s, struct hbone_event *ev)
{
	s->in_cb++;
	s->cfg.on_event(s->cfg.ctx, s, ev);
	s->in_cb--;
}

/* Maps an nghttp2 library error from mem_recv/mem_send to a failed session. */
static int fail_lib(struct hbone_session *s, int rv, const char *where)
{
	if (rv == NGHTTP2_ERR_NOMEM)
		hbone_fail(s, -E_LIMIT, true, "HTTP/2 memory limit (%zu bytes) reached in %s",
			   s->mem.limit, where);
	else if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC)
		hbone_fail(s, -E_PROTO, true, "bad HTTP/2 client preface");
	else if (rv == NGHTTP2_ERR_FLOODED)
		hbone_fail(s, -E_PROTO, true, "peer flooded us with frames that need an answer");
	else
		hbone_fail(s, -E_PROTO, true, "HTTP/2 %s: %s%s%s", where, nghttp2_strerror(rv),
			   s->last_ngh_err[0] ? ": " : "", s->last_ngh_err);
	return s->err;
}

/* ---- streams bookkeeping --------------------------------------------------------------------- */

struct hbone_stream *hbone_stream_find(const struct hbone_session *s, int32_t id)
{
	struct hbone_stream *st;

	if (id <= 0)
		return NULL;
	st = nghttp2_session_get_stream_user_data(s->ngh, id);
	if (st)
		return st;
	/* Client streams whose HEADERS nghttp2 has not sent yet exist only in our list. */
	for (st = s->streams; st; st = st->next)
		if (st->id == id)
			return st;
	return NULL;
}

struct hbone_stream *hbone_stream_add(struct hbone_session *s, int32_t id, bool local)
{
	struct hbone_stream *st = xcalloc(1, sizeof(*st));

	st->s = s;
	st->id = id;
	st->local = local;
	buf_init(&st->sendbuf, s->cfg.stream_send_buf);
	st->next = s->streams;
	if (s->streams)
		s->streams->prev = st;
	s->streams = st;
	s->nstreams++;
	s->streams_opened++;
	if (local)
		s->nlocal++;
	return st;
}

static void req_free(struct hbone_req_acc *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < ARRAY_LEN(r->hdr); i++)
		free(r->hdr[i]);
	free(r);
}

void hbone_stream_del(struct hbone_session *s, struct hbone_stream *st)
{
	if (st->prev)
		st->prev->next = st->next;
	else
		s->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	s->nstreams--;
	if (st->local)
		s->nlocal--;
	if (st->notify_pending)
		s->notify_count--;
	req_free(st->req);
	buf_fini(&st->sendbuf);
	free(st);
}

/* Emits HBONE_EV_CLOSED and forgets the stream, crediting what the app never acknowledged. */
static void stream_closed(struct hbone_session *s, struct hbone_stream *st, uint32_t code)
{
	struct hbone_event ev = {.type = HBONE_EV_CLOSED,
				 .stream_id = st->id,
				 .stream_user = st->user,
				 .error_code = code};

	if (st->unacked > 0 && !s->dead)
		(void)nghttp2_session_consume_connection(s->ngh, st->unacked);
	st->unacked = 0;
	if (nghttp2_session_get_stream_user_data(s->ngh, st->id) == st)
		(void)nghttp2_session_set_stream_user_data(s->ngh, st->id, NULL);
	hbone_emit(s, &ev);
	hbone_stream_del(s, st);
}

/* ---- nghttp2 callbacks ----------------------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *ngh, const nghttp2_frame *f, void *ud)
{
	struct hbone_session *s = ud;
	struct hbone_stream *st = hbone_stream_find(s, f->hd.stream_id);

	if (st)
		st->hdr_list = 0; /* a new header block (response, trailers) */
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST ||
	    s->cfg.role != HBONE_SERVER)
		return 0;
	st = hbone_stream_add(s, f->hd.stream_id, false);
	st->req = xcalloc(1, sizeof(*st->req));
	if (nghttp2_session_set_stream_user_data(ngh, f->hd.stream_id, st) != 0) {
		hbone_stream_del(s, st);
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static void on_recv_headers(struct hbone_session *s, struct hbone_stream *st,
			    const nghttp2_frame *f)
{
	bool eof = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

	if (f->headers.cat == NGHTTP2_HCAT_REQUEST && st->req) {
		hbone_request_emit(s, st, eof);
		return; /* hbone_request_emit reports the END_STREAM itself */
	}
	if (f->headers.cat == NGHTTP2_HCAT_RESPONSE && st->local) {
		if (st->status >= 100 && st->status < 200)
			return; /* interim; the final response follows */
		hbone_response_emit(s, st);
		/* The stream may have been reset from the callback; look it up again. */
		st = hbone_stream_find(s, f->hd.stream_id);
	}
	if (st && eof) {
		struct hbone_event ev = {
			.type = HBONE_EV_PEER_EOF, .stream_id = st->id, .stream_user = st->user};
		hbone_emit(s, &ev);
	}
}

static int on_frame_recv(nghttp2_session *ngh, const nghttp2_frame *f, void *ud)
{
	struct hbone_session *s = ud;
	struct hbone_stream *st;

	(void)ngh;
	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
		st = hbone_stream_find(s, f->hd.stream_id);
		if (st)
			on_recv_headers(s, st, f);
		break;
	case NGHTTP2_DATA:
		st = hbone_stream_find(s, f->hd.stream_id);
		if (st && !st->rst_sent && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
			struct hbone_event ev = {.type = HBONE_EV_PEER_EOF,
						 .stream_id = st->id,
						 .stream_user = st->user};
			hbone_emit(s, &ev);
		}
		break;
	case NGHTTP2_RST_STREAM:
		st = hbone_stream_find(s, f->hd.stream_id);
		if (st) {
			struct hbone_event ev = {.type = HBONE_EV_RESET,
						 .stream_id = st->id,
						 .stream_user = st->user,
						 .error_code = f->rst_stream.error_code};
			hbone_emit(s, &ev);
		}
		break;
	case NGHTTP2_GOAWAY: {
		struct hbone_event ev = {.type = HBONE_EV_GOAWAY};

		s->goaway_recv = true;
		ev.goaway.last_stream_id = f->goaway.last_stream_id;
		ev.goaway.error_code = f->goaway.error_code;
		hbone_emit(s, &ev);
		break;
	}
	case NGHTTP2_PING:
		if ((f->hd.flags & NGHTTP2_FLAG_ACK) && s->ping_out) {
			uint64_t seq;
			memcpy(&seq, f->ping.opaque_data, sizeof(seq));
			if (seq == s->ping_seq)
				s->ping_out = false;
		}
		break;
	default: break;
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *ngh, uint8_t flags, int32_t id, const uint8_t *data,
			 size_t len, void *ud)
{
	struct hbone_session *s = ud;
	struct hbone_stream *st = hbone_stream_find(s, id);
	struct hbone_event ev = {.type = HBONE_EV_DATA, .stream_id = id};

	(void)flags;
	if (!st || st->rst_sent || st->rejected) {
		/* Nobody will forward these bytes: give the window back now. */
		if (nghttp2_session_consume(ngh, id, len) != 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		return 0;
	}
	st->bytes_in += len;
	st->unacked += len;
	ev.stream_user = st->user;
	ev.data.p = data;
	ev.data.n = len;
	hbone_emit(s, &ev);
	return 0;
}

static int on_stream_close(nghttp2_session *ngh, int32_t id, uint32_t code, void *ud)
{
	struct hbone_session *s = ud;
	struct hbone_stream *st = nghttp2_session_get_stream_user_data(ngh, id);

	if (st)
		stream_closed(s, st, code);
	return 0;
}

static int on_frame_send(nghttp2_session *ngh, const nghttp2_frame *f, void *ud)
{
	struct hbone_session *s = ud;

	struct hbone_stream *st;

	/* RFC 9113 §8.1: after a complete non-200 response the server resets the request side
	 * with NO_ERROR rather than wait for the client to finish it. */
	if (f->hd.type == NGHTTP2_HEADERS && (st = hbone_stream_find(s, f->hd.stream_id)) &&
	    !st->local && st->rejected && !st->rst_sent &&
	    nghttp2_session_get_stream_remote_close(ngh, f->hd.stream_id) == 0) {
		st->rst_sent = true;
		if (nghttp2_submit_rst_stream(ngh, NGHTTP2_FLAG_NONE, f->hd.stream_id,
					      NGHTTP2_NO_ERROR) != 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR)
		hbone_fail(s,
			   f->goaway.error_code == NGHTTP2_ENHANCE_YOUR_CALM ? -E_LIMIT : -E_PROTO,
			   false, "connection error %s%s%s",
			   hbone_error_code_str(f->goaway.error_code),
			   s->last_ngh_err[0] ? ": " : "", s->last_ngh_err);
	return 0;
}

static int on_frame_not_send(nghttp2_session *ngh, const nghttp2_frame *f, int lib_error, void *ud)
{
	struct hbone_session *s = ud;
	struct hbone_stream *st;

	(void)lib_error;
	/* A request whose HEADERS never left (reset before sending, GOAWAY): nghttp2 never opened
	 * the stream, so on_stream_close will not come. */
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (nghttp2_session_find_stream(ngh, f->hd.stream_id))
		return 0;
	st = hbone_stream_find(s, f->hd.stream_id);
	if (st)
		stream_closed(s, st, st->rst_sent ? st->rst_code : HBONE_REFUSED_STREAM);
	return 0;
}

static int on_error(nghttp2_session *ngh, int lib_error, const char *msg, size_t len, void *ud)
{
	struct hbone_session *s = ud;

	(void)ngh;
	(void)lib_error;
	snprintf(s->last_ngh_err, sizeof(s->last_ngh_err), "%.*s", (int)MIN(len, 120), msg);
	return 0;
}

/* ---- session lifecycle ----------------------------------------------------------------------- */

static ssize_t data_length(nghttp2_session *ngh, uint8_t type, int32_t id, int32_t conn_window,
			   int32_t stream_window, uint32_t max_frame, void *ud)
{
	const struct hbone_session *s = ud;
	const struct hbone_stream *st = s->cfg.send_data ? hbone_stream_find(s, id) : NULL;
	size_t queued = st ? buf_len(&st->sendbuf) : 0;

	(void)ngh;
	(void)type;
	(void)conn_window;
	(void)stream_window; /* nghttp2 clamps to the windows itself */
	/* Past 16 KiB nghttp2 grows its frame buffer: only for a stream with that much queued. */
	if (queued <= 16384)
		return (ssize_t)MIN(max_frame, 16384u);
	return (ssize_t)MIN(max_frame, MIN(queued, HBONE_SEND_FRAME));
}

static void make_callbacks(nghttp2_session_callbacks **cbs)
{
	if (nghttp2_session_callbacks_new(cbs) != 0)
		die("out of memory (nghttp2 callbacks)");
	nghttp2_session_callbacks_set_on_begin_headers_callback(*cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(*cbs, hbone_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(*cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(*cbs, on_data_chunk);
	nghttp2_session_callbacks_set_send_data_callback(*cbs, hbone_send_data_cb);
	nghttp2_session_callbacks_set_data_source_read_length_callback(*cbs, data_length);
	nghttp2_session_callbacks_set_on_stream_close_callback(*cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(*cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(*cbs, on_frame_not_send);
	nghttp2_session_callbacks_set_error_callback2(*cbs, on_error);
}

static void make_option(const struct hbone_session *s, nghttp2_option **opt)
{
	if (nghttp2_option_new(opt) != 0)
		die("out of memory (nghttp2 option)");
	/* Windows open only when the application has forwarded the bytes (hbone_stream_consumed).
	 */
	nghttp2_option_set_no_auto_window_update(*opt, 1);
	/* Closed streams are only kept for the RFC 7540 priority tree; we do not need them. */
	nghttp2_option_set_no_closed_streams(*opt, 1);
	nghttp2_option_set_max_send_header_block_length(*opt, HBONE_SERVER_MAX_HEADER_LIST);
	if (s->cfg.role == HBONE_CLIENT)
		/* Until the server's SETTINGS arrive, assume no more than our own cap. */
		nghttp2_option_set_peer_max_concurrent_streams(*opt, s->cfg.max_streams);
}

static int submit_settings(struct hbone_session *s)
{
	nghttp2_settings_entry iv[5];
	size_t n = 0;
	int rv;

	iv[n++] =
		(nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, HBONE_STREAM_WINDOW};
	iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_FRAME_SIZE, HBONE_MAX_FRAME};
	if (s->cfg.role == HBONE_SERVER) {
		iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
						   s->cfg.max_streams};
		iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
						   HBONE_SERVER_MAX_HEADER_LIST};
	} else {
		iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
		iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
						   HBONE_CLIENT_MAX_HEADER_LIST};
	}
	rv = nghttp2_submit_settings(s->ngh, NGHTTP2_FLAG_NONE, iv, n);
	if (rv != 0)
		return rv;
	return nghttp2_session_set_local_window_size(s->ngh, NGHTTP2_FLAG_NONE, 0,
						     (int32_t)HBONE_CONN_WINDOW);
}

struct hbone_session *hbone_session_new(const struct hbone_config *cfg, uint64_t now_ms)
{
	struct hbone_session *s = xcalloc(1, sizeof(*s));
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	int rv;

	s->cfg = *cfg;
	if (!s->cfg.stream_send_buf)
		s->cfg.stream_send_buf = HBONE_DEFAULT_SEND_BUF;
	if (!s->cfg.mem_limit)
		s->cfg.mem_limit = HBONE_DEFAULT_MEM_LIMIT;
	if (!s->cfg.max_streams)
		s->cfg.max_streams = cfg->role == HBONE_SERVER ? HBONE_SERVER_MAX_STREAMS
							       : HBONE_CLIENT_MAX_STREAMS;
	if (!s->cfg.ping_interval_ms)
		s->cfg.ping_interval_ms = HBONE_PING_INTERVAL_MS;
	if (!s->cfg.ping_timeout_ms)
		s->cfg.ping_timeout_ms = HBONE_PING_TIMEOUT_MS;
	s->mem.limit = s->cfg.mem_limit;
	s->mem_fns = (nghttp2_mem){.mem_user_data = &s->mem,
				   .malloc = mem_malloc,
				   .free = mem_free,
				   .calloc = mem_calloc,
				   .realloc = mem_realloc};
	s->now = s->last_rx = now_ms;
	buf_init(&s->pend, 0);

	make_callbacks(&cbs);
	make_option(s, &opt);
	if (cfg->role == HBONE_SERVER)
		rv = nghttp2_session_server_new3(&s->ngh, cbs, s, opt, &s->mem_fns);
	else
		rv = nghttp2_session_client_new3(&s->ngh, cbs, s, opt, &s->mem_fns);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	if (rv == NGHTTP2_ERR_NOMEM) {
		free(s); /* mem_limit is below what an idle session needs */
		return NULL;
	}
	if (rv != 0)
		die("nghttp2 session: %s", nghttp2_strerror(rv));
	rv = submit_settings(s);
	if (rv != 0)
		fail_lib(s, rv, "settings");
	return s;
}

void hbone_session_free(struct hbone_session *s)
{
	if (!s)
		return;
	if (s->in_cb)
		die("hbone_session_free called from an hbone event callback");
	while (s->streams)
		hbone_stream_del(s, s->streams);
	nghttp2_session_del(s->ngh);
	buf_fini(&s->pend);
	free(s);
}

/* ---- the pump -------------------------------------------------------------------------------- */

int hbone_session_push(struct hbone_session *s, const uint8_t *in, size_t n)
{
	ssize_t rv;

	if (s->in_cb)
		return -E_STATE;
	if (s->dead)
		return s->err;
	if (s->err)
		return s->err; /* a GOAWAY may still be draining; input is not wanted */
	if (n == 0)
		return 0;
	s->bytes_in += n;
	s->rx_since_tick = true;
	rv = nghttp2_session_mem_recv(s->ngh, in, n);
	if (rv < 0)
		return fail_lib(s, (int)rv, "receive");
	/* nghttp2 stops reading after a connection error it found (its GOAWAY is queued). */
	if (!s->err && !nghttp2_session_want_read(s->ngh) && !s->goaway_recv && !s->goaway_sent)
		hbone_fail(s, -E_PROTO, false, "connection error%s%s",
			   s->last_ngh_err[0] ? ": " : "", s->last_ngh_err);
	return s->err;
}

int hbone_session_pull(struct hbone_session *s, const uint8_t **out, size_t *len)
{
	const uint8_t *p;
	ssize_t rv;

	*out = NULL;
	*len = 0;
	if (s->in_cb)
		return -E_STATE;
	if (s->dead)
		return s->err;
	s->pull_pend = false;
	if (buf_len(&s->pend) == 0 && s->out_off >= s->out_len) {
		rv = nghttp2_session_mem_send(s->ngh, &p);
		if (rv < 0)
			return fail_lib(s, (int)rv, "send");
		s->out = p;
		s->out_len = (size_t)rv;
		s->out_off = 0;
		s->bytes_out += (size_t)rv;
		if (s->notify_count)
			hbone_flush_writable(s);
	}
	/* What send_data left over was produced before anything mem_send returned with it. */
	if (buf_len(&s->pend) > 0) {
		s->pull_pend = true;
		*out = buf_rptr(&s->pend);
		*len = buf_len(&s->pend);
		return 0;
	}
	*out = s->out + s->out_off;
	*len = s->out_len - s->out_off;
	return 0;
}

void hbone_session_pull_done(struct hbone_session *s, size_t n)
{
	if (s->pull_pend) {
		buf_consume(&s->pend, MIN(n, buf_len(&s->pend)));
		s->pull_pend = false;
		return;
	}
	s->out_off += MIN(n, s->out_len - s->out_off);
}

bool hbone_session_want_read(const struct hbone_session *s)
{
	return !s->err && nghttp2_session_want_read(s->ngh);
}

bool hbone_session_want_write(const struct hbone_session *s)
{
	if (s->dead)
		return false;
	return s->out_off < s->out_len || buf_len(&s->pend) > 0 ||
	       nghttp2_session_want_write(s->ngh);
}

/* ---- keepalive ------------------------------------------------------------------------------- */

int hbone_session_tick(struct hbone_session *s, uint64_t now_ms)
{
	uint8_t opaque[8];
	int rv;

	if (s->in_cb)
		return -E_STATE;
	if (s->err)
		return s->err;
	s->now = now_ms;
	if (s->rx_since_tick) {
		s->rx_since_tick = false;
		s->last_rx = now_ms;
	}
	if (s->ping_out) {
		if (now_ms - s->ping_sent >= s->cfg.ping_timeout_ms) {
			hbone_fail(s, -E_TIMEOUT, true, "PING timeout: no ACK within %u ms",
				   s->cfg.ping_timeout_ms);
			return s->err;
		}
		return 0;
	}
	if (now_ms - s->last_rx < s->cfg.ping_interval_ms)
		return 0;
	s->ping_seq++;
	memcpy(opaque, &s->ping_seq, sizeof(opaque));
	rv = nghttp2_submit_ping(s->ngh, NGHTTP2_FLAG_NONE, opaque);
	if (rv != 0)
		return fail_lib(s, rv, "ping");
	s->ping_out = true;
	s->ping_sent = now_ms;
	return 0;
}

uint64_t hbone_session_next_tick(const struct hbone_session *s)
{
	if (s->ping_out)
		return s->ping_sent + s->cfg.ping_timeout_ms;
	return s->last_rx + s->cfg.ping_interval_ms;
}

/* ---- state ----------------------------------------------------------------------------------- */

int hbone_session_shutdown(struct hbone_session *s)
{
	int32_t last;
	int rv;

	if (s->err)
		return -E_STATE;
	if (s->goaway_sent)
		return 0;
	last = s->cfg.role == HBONE_SERVER ? nghttp2_session_get_last_proc_stream_id(s->ngh) : 0;
	rv = nghttp2_submit_goaway(s->ngh, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, NULL, 0);
	if (rv != 0)
		return fail_lib(s, rv, "goaway");
	s->goaway_sent = true;
	return 0;
}

bool hbone_session_can_open(const struct hbone_session *s)
{
	uint32_t peer_max;

	if (s->cfg.role != HBONE_CLIENT || s->err || s->goaway_recv || s->goaway_sent)
		return false;
	if (nghttp2_session_get_next_stream_id(s->ngh) > INT32_MAX - 2)
		return false;
	peer_max = nghttp2_session_get_remote_settings(s->ngh,
						       NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	return s->nlocal < MIN(s->cfg.max_streams, peer_max);
}

size_t hbone_session_active_streams(const struct hbone_session *s)
{
	return s->nstreams;
}

int hbone_session_error(const struct hbone_session *s)
{
	return s->err;
}

const char *hbone_session_reason(const struct hbone_session *s)
{
	return s->reason;
}

void hbone_session_stats(const struct hbone_session *s, struct hbone_session_stats *st)
{
	st->bytes_in = s->bytes_in;
	st->bytes_out = s->bytes_out;
	st->streams_opened = s->streams_opened;
	st->active_streams = s->nstreams;
	st->mem_used = s->mem.used;
	st->mem_peak = s->mem.peak;
}
