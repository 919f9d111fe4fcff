/* HBONE streams: CONNECT requests and responses, the bounded send buffer behind nghttp2's data
 * source, flow-control acknowledgements, half-close and reset. */
#include "pkg/hbone/hbone_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const extra_names[4] = {"baggage", "forwarded", "traceparent",
					   "x-forwarded-network"};

#define NV(n, v, vl)                                                                               \
	((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE})

/* ---- receiving header blocks ----------------------------------------------------------------- */

static void set_bad(struct hbone_req_acc *r, const char *fmt, const char *arg)
{
	if (!r->bad[0])
		snprintf(r->bad, sizeof(r->bad), fmt, arg);
}

static void keep_extra(struct hbone_req_acc *r, int i, const uint8_t *v, size_t n)
{
	size_t old;
	size_t sep;

	if (i < 0 || (size_t)i >= ARRAY_LEN(extra_names))
		return;
	old = r->hdr_len[i];
	sep = r->hdr[i] ? 1 : 0;
	if (r->hdr[i] && i >= 2) {
		/* i < 4 is checked above; cppcheck misreads the i >= 2 test as a bound. */
		/* cppcheck-suppress arrayIndexOutOfBoundsCond */
		set_bad(r, "duplicate %s header", extra_names[i]);
		return;
	}
	if (old + sep + n > HBONE_MAX_HEADER_VALUE) {
		char why[64];
		snprintf(why, sizeof(why), "%s header longer than %d bytes", extra_names[i],
			 HBONE_MAX_HEADER_VALUE);
		set_bad(r, "%s", why);
		return;
	}
	/* Repeated baggage/forwarded fields are one comma-separated list (RFC 9110 §5.3). */
	r->hdr[i] = xrealloc(r->hdr[i], old + sep + n + 1);
	if (sep)
		r->hdr[i][old] = ',';
	memcpy(r->hdr[i] + old + sep, v, n);
	r->hdr_len[i] = old + sep + n;
	r->hdr[i][r->hdr_len[i]] = 0;
}

static void request_header(struct hbone_req_acc *r, const uint8_t *name, size_t nl,
			   const uint8_t *v, size_t vl)
{
	if (nl == 7 && memcmp(name, ":method", 7) == 0) {
		r->method_len = MIN(vl, sizeof(r->method));
		memcpy(r->method, v, r->method_len);
		return;
	}
	if (nl == 10 && memcmp(name, ":authority", 10) == 0) {
		r->authority_len = MIN(vl, sizeof(r->authority));
		r->authority_long = vl > sizeof(r->authority);
		memcpy(r->authority, v, r->authority_len);
		return;
	}
	for (int i = 0; i < 4; i++)
		if (nl == strlen(extra_names[i]) && memcmp(name, extra_names[i], nl) == 0)
			keep_extra(r, i, v, vl);
}

static int parse_status(const uint8_t *v, size_t n)
{
	if (n != 3)
		return 0;
	for (size_t i = 0; i < 3; i++)
		if (v[i] < '0' || v[i] > '9')
			return 0;
	return (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
}

int hbone_on_header(nghttp2_session *ngh, const nghttp2_frame *f, const uint8_t *name,
		    size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct hbone_session *s = ud;
	struct hbone_stream *st;
	size_t limit = s->cfg.role == HBONE_SERVER ? HBONE_SERVER_MAX_HEADER_LIST
						   : HBONE_CLIENT_MAX_HEADER_LIST;

	(void)ngh;
	(void)flags;
	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	st = hbone_stream_find(s, f->hd.stream_id);
	if (!st)
		return 0;
	/* RFC 9113 §6.5.2: the advertised limit counts name + value + 32 per field. Past it the
	 * stream is reset (INTERNAL_ERROR from nghttp2); the connection lives on. */
	st->hdr_list += namelen + valuelen + 32;
	if (st->hdr_list > limit)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	if (st->req && f->headers.cat == NGHTTP2_HCAT_REQUEST)
		request_header(st->req, name, namelen, value, valuelen);
	else if (st->local && f->headers.cat == NGHTTP2_HCAT_RESPONSE && namelen == 7 &&
		 memcmp(name, ":status", 7) == 0)
		st->status = parse_status(value, valuelen);
	return 0;
}

static struct slice extra_slice(const struct hbone_req_acc *r, int i)
{
	return (struct slice){(const uint8_t *)r->hdr[i], r->hdr_len[i]};
}

/* Decides whether the request is a well-formed HBONE CONNECT; reason goes to why. */
static bool request_check(const struct hbone_req_acc *r, struct net_addr *addr, char *why,
			  size_t cap)
{
	struct errbuf eb = {0};

	if (r->bad[0]) {
		snprintf(why, cap, "%s", r->bad);
		return false;
	}
	if (r->method_len != 7 || memcmp(r->method, "CONNECT", 7) != 0) {
		snprintf(why, cap, "method %.*s is not CONNECT", (int)r->method_len, r->method);
		return false;
	}
	if (r->authority_long) {
		snprintf(why, cap, "authority longer than %d bytes", HBONE_AUTHORITY_MAX);
		return false;
	}
	if (hbone_authority_parse(r->authority, r->authority_len, addr, &eb) < 0) {
		snprintf(why, cap, "authority \"%.*s\": %.90s", (int)r->authority_len, r->authority,
			 eb.msg);
		return false;
	}
	return true;
}

void hbone_request_emit(struct hbone_session *s, struct hbone_stream *st, bool eof)
{
	struct hbone_req_acc *r = st->req;
	struct hbone_event ev = {
		.type = HBONE_EV_REQUEST, .stream_id = st->id, .stream_user = st->user};
	char why[160];
	int32_t id = st->id;

	ev.request.ok = request_check(r, &ev.request.addr, why, sizeof(why));
	ev.request.reason = ev.request.ok ? NULL : why;
	ev.request.method = (struct slice){(const uint8_t *)r->method, r->method_len};
	ev.request.authority = (struct slice){(const uint8_t *)r->authority, r->authority_len};
	ev.request.baggage = extra_slice(r, 0);
	ev.request.forwarded = extra_slice(r, 1);
	ev.request.traceparent = extra_slice(r, 2);
	ev.request.x_forwarded_network = extra_slice(r, 3);
	hbone_emit(s, &ev);
	st->req = NULL;
	for (size_t i = 0; i < ARRAY_LEN(r->hdr); i++)
		free(r->hdr[i]);
	free(r);
	/* respond/reset from the callback never free the stream synchronously, but look again. */
	st = hbone_stream_find(s, id);
	if (st && eof && !st->rst_sent) {
		struct hbone_event e2 = {
			.type = HBONE_EV_PEER_EOF, .stream_id = id, .stream_user = st->user};
		hbone_emit(s, &e2);
	}
}

static void resume(struct hbone_session *s, struct hbone_stream *st)
{
	if (!st->deferred || !st->ready)
		return;
	st->deferred = false;
	if (nghttp2_session_resume_data(s->ngh, st->id) != 0)
		st->deferred = true; /* no data item (yet): the read callback will run anyway */
}

void hbone_response_emit(struct hbone_session *s, struct hbone_stream *st)
{
	struct hbone_event ev = {.type = HBONE_EV_RESPONSE,
				 .stream_id = st->id,
				 .stream_user = st->user,
				 .status = st->status};
	int32_t id = st->id;

	st->responded = true;
	if (st->status == 200) {
		st->ready = true;
		resume(s, st);
	} else {
		st->rejected = true;
		buf_reset(&st->sendbuf);
	}
	hbone_emit(s, &ev);
	st = hbone_stream_find(s, id);
	/* Any non-200 ends the tunnel; do not leave our half open. */
	if (st && st->rejected && !st->rst_sent)
		(void)hbone_stream_reset(s, id, HBONE_CANCEL);
}

/* ---- the data source ------------------------------------------------------------------------- */

ssize_t hbone_data_read_cb(nghttp2_session *ngh, int32_t id, uint8_t *out, size_t len,
			   uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct hbone_stream *st = src->ptr;
	struct hbone_session *s = ud;
	size_t n, left;

	(void)ngh;
	(void)id;
	if (!st->ready) {
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	n = MIN(len, buf_len(&st->sendbuf));
	left = buf_len(&st->sendbuf) - n;
	if (n > 0 && s->cfg.send_data) {
		/* hbone_send_data_cb() sends the payload from the send buffer and consumes it. */
		*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	} else if (n > 0) {
		memcpy(out, buf_rptr(&st->sendbuf), n);
		buf_consume(&st->sendbuf, n);
		st->bytes_out += n;
	}
	if (left == 0 && st->wr_shut) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		st->eof_sent = true;
	} else if (n == 0) {
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (st->want_writable && left <= s->cfg.stream_send_buf / 2) {
		st->want_writable = false;
		st->notify_pending = true;
		s->notify_count++;
	}
	return (ssize_t)n;
}

/* The NO_COPY half of the data source: the frame header and `len` payload bytes from the front
 * of the send buffer go to cfg.send_data; what it does not take waits in s->pend. */
int hbone_send_data_cb(nghttp2_session *ngh, nghttp2_frame *f, const uint8_t *hd, size_t len,
		       nghttp2_data_source *src, void *ud)
{
	struct hbone_stream *st = src->ptr;
	struct hbone_session *s = ud;
	const uint8_t *p = buf_rptr(&st->sendbuf);
	size_t took = 0;

	(void)ngh;
	if (buf_len(&s->pend) > 0)
		return NGHTTP2_ERR_WOULDBLOCK; /* the previous frame first */
	if (f->data.padlen > 0 || len > buf_len(&st->sendbuf))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* cannot happen: no padding, no reset
							       */
	took = s->cfg.send_data(s->cfg.ctx, hd, HBONE_FRAME_HDLEN, p, len);
	took = MIN(took, HBONE_FRAME_HDLEN + len);
	if (took < HBONE_FRAME_HDLEN) {
		if (buf_append(&s->pend, hd + took, HBONE_FRAME_HDLEN - took) < 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		took = HBONE_FRAME_HDLEN;
	}
	took -= HBONE_FRAME_HDLEN;
	if (took < len && buf_append(&s->pend, p + took, len - took) < 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	buf_consume(&st->sendbuf, len);
	st->bytes_out += len;
	s->bytes_out += HBONE_FRAME_HDLEN + len;
	return 0;
}

void hbone_flush_writable(struct hbone_session *s)
{
	struct hbone_stream *st, *next;

	for (st = s->streams; st && s->notify_count; st = next) {
		next = st->next;
		if (!st->notify_pending)
			continue;
		st->notify_pending = false;
		s->notify_count--;
		struct hbone_event ev = {
			.type = HBONE_EV_WRITABLE, .stream_id = st->id, .stream_user = st->user};
		hbone_emit(s, &ev);
	}
}

/* ---- client side ----------------------------------------------------------------------------- */

static int check_headers(const struct hbone_headers *h, nghttp2_nv *nva, size_t *n,
			 struct errbuf *eb)
{
	const char *v[4];

	if (!h)
		return 0;
	v[0] = h->baggage;
	v[1] = h->forwarded;
	v[2] = h->traceparent;
	v[3] = h->x_forwarded_network;
	for (int i = 0; i < 4; i++) {
		size_t len;

		if (!v[i])
			continue;
		len = strlen(v[i]);
		if (!hbone_header_value_ok(v[i], len))
			return errbuf_set(eb, E_INVAL,
					  "%s header: control characters, non-ASCII, edge "
					  "whitespace or longer than %d bytes",
					  extra_names[i], HBONE_MAX_HEADER_VALUE);
		nva[(*n)++] = (nghttp2_nv){(uint8_t *)extra_names[i], (uint8_t *)v[i],
					   strlen(extra_names[i]), len, NGHTTP2_NV_FLAG_NONE};
	}
	return 0;
}

int32_t hbone_stream_open(struct hbone_session *s, const char *authority,
			  const struct hbone_headers *h, void *user, struct errbuf *eb)
{
	struct net_addr addr;
	nghttp2_nv nva[6];
	nghttp2_data_provider prd;
	struct hbone_stream *st;
	size_t n = 0, alen = authority ? strlen(authority) : 0;
	int32_t id;
	int rc;

	if (s->cfg.role != HBONE_CLIENT)
		return errbuf_set(eb, E_STATE, "streams are opened by the client side");
	if (s->err || s->goaway_recv || s->goaway_sent)
		return errbuf_set(eb, E_STATE, "session is closing: %s",
				  s->err ? s->reason : "GOAWAY");
	if (!hbone_session_can_open(s))
		return errbuf_set(eb, E_LIMIT, "session is at its stream limit");
	rc = hbone_authority_parse(authority, alen, &addr, eb);
	if (rc < 0) {
		errbuf_prefix(eb, "authority \"%.*s\"", (int)MIN(alen, 80),
			      authority ? authority : "");
		return -E_INVAL;
	}
	nva[n++] = NV(":method", "CONNECT", 7);
	nva[n++] = NV(":authority", authority, alen);
	if (check_headers(h, nva, &n, eb) < 0)
		return -E_INVAL;
	st = hbone_stream_add(s, 0, true);
	st->user = user;
	prd.source.ptr = st;
	prd.read_callback = hbone_data_read_cb;
	id = nghttp2_submit_request(s->ngh, NULL, nva, n, &prd, st);
	if (id < 0) {
		hbone_stream_del(s, st);
		if (id == NGHTTP2_ERR_NOMEM)
			return errbuf_set(eb, E_LIMIT, "HTTP/2 memory limit reached");
		return errbuf_set(eb, E_LIMIT, "nghttp2: %s", nghttp2_strerror(id));
	}
	st->id = id;
	return id;
}

/* ---- server side ----------------------------------------------------------------------------- */

int hbone_stream_respond(struct hbone_session *s, int32_t id, int status)
{
	struct hbone_stream *st = hbone_stream_find(s, id);
	nghttp2_data_provider prd = {.source.ptr = st, .read_callback = hbone_data_read_cb};
	char code[4];
	nghttp2_nv nv[1];
	int rv;

	if (!st)
		return -E_NOTFOUND;
	if (s->cfg.role != HBONE_SERVER || st->responded || st->rst_sent)
		return -E_STATE;
	if (status < 200 || status > 599)
		return -E_INVAL;
	snprintf(code, sizeof(code), "%03d", status);
	nv[0] = NV(":status", code, 3);
	st->responded = true;
	if (status == 200) {
		st->ready = true;
		rv = nghttp2_submit_response(s->ngh, id, nv, 1, &prd);
	} else {
		st->rejected = true;
		buf_reset(&st->sendbuf);
		/* The RST_STREAM NO_ERROR that may follow goes out from on_frame_send: queued now,
		 * it would mark the stream closing and nghttp2 would drop the response. */
		rv = nghttp2_submit_response(s->ngh, id, nv, 1, NULL);
	}
	if (rv == NGHTTP2_ERR_NOMEM) {
		hbone_fail(s, -E_LIMIT, true, "HTTP/2 memory limit (%zu bytes) reached in respond",
			   s->mem.limit);
		return s->err;
	}
	return rv == 0 ? 0 : -E_STATE;
}

/* ---- both sides ------------------------------------------------------------------------------ */

ssize_t hbone_stream_write(struct hbone_session *s, int32_t id, const void *p, size_t n)
{
	struct hbone_stream *st = hbone_stream_find(s, id);
	size_t take;

	if (!st)
		return -E_NOTFOUND;
	if (st->wr_shut || st->rejected || st->rst_sent || s->err)
		return -E_STATE;
	take = MIN(n, s->cfg.stream_send_buf - buf_len(&st->sendbuf));
	if (take < n)
		st->want_writable = true;
	if (take == 0)
		return 0;
	if (buf_append(&st->sendbuf, p, take) < 0)
		return -E_LIMIT; /* cannot happen: take fits under the bound */
	resume(s, st);
	return (ssize_t)take;
}

size_t hbone_stream_write_reserve(struct hbone_session *s, int32_t id, uint8_t **p, size_t *cap)
{
	struct hbone_stream *st = hbone_stream_find(s, id);
	size_t space;

	*p = NULL;
	*cap = 0;
	if (!st || st->wr_shut || st->rejected || st->rst_sent || s->err)
		return 0;
	space = s->cfg.stream_send_buf - buf_len(&st->sendbuf);
	if (space == 0) {
		st->want_writable = true;
		return 0;
	}
	/* Only the room already allocated: an idle stream keeps its small buffer. */
	if (buf_wspace(&st->sendbuf) > 0) {
		*p = buf_wptr(&st->sendbuf);
		*cap = MIN(buf_wspace(&st->sendbuf), space);
	}
	return space;
}

void hbone_stream_write_commit(struct hbone_session *s, int32_t id, size_t n)
{
	struct hbone_stream *st = hbone_stream_find(s, id);

	if (!st || n == 0)
		return;
	buf_produce(&st->sendbuf, n);
	resume(s, st);
}

size_t hbone_stream_write_space(const struct hbone_session *s, int32_t id)
{
	struct hbone_stream *st = hbone_stream_find(s, id);

	if (!st || st->wr_shut || st->rejected || st->rst_sent)
		return 0;
	return s->cfg.stream_send_buf - buf_len(&st->sendbuf);
}

int hbone_stream_consumed(struct hbone_session *s, int32_t id, size_t n)
{
	struct hbone_stream *st = hbone_stream_find(s, id);
	int rv;

	if (!st)
		return -E_NOTFOUND;
	if (n > st->unacked)
		return -E_INVAL;
	if (n == 0 || s->dead)
		return 0;
	st->unacked -= n;
	rv = nghttp2_session_consume(s->ngh, id, n);
	if (rv == NGHTTP2_ERR_NOMEM) {
		hbone_fail(s, -E_LIMIT, true, "HTTP/2 memory limit (%zu bytes) reached in consume",
			   s->mem.limit);
		return s->err;
	}
	return 0;
}

int hbone_stream_shutdown_write(struct hbone_session *s, int32_t id)
{
	struct hbone_stream *st = hbone_stream_find(s, id);

	if (!st)
		return -E_NOTFOUND;
	if (st->wr_shut)
		return 0;
	st->wr_shut = true;
	resume(s, st);
	return 0;
}

int hbone_stream_reset(struct hbone_session *s, int32_t id, uint32_t error_code)
{
	struct hbone_stream *st = hbone_stream_find(s, id);
	int rv;

	if (!st)
		return -E_NOTFOUND;
	if (st->rst_sent)
		return 0;
	st->rst_sent = true;
	st->rst_code = error_code;
	buf_reset(&st->sendbuf);
	if (s->dead)
		return 0;
	rv = nghttp2_submit_rst_stream(s->ngh, NGHTTP2_FLAG_NONE, id, error_code);
	if (rv == NGHTTP2_ERR_NOMEM) {
		hbone_fail(s, -E_LIMIT, true, "HTTP/2 memory limit (%zu bytes) reached in reset",
			   s->mem.limit);
		return s->err;
	}
	return 0;
}

int hbone_stream_set_user(struct hbone_session *s, int32_t id, void *user)
{
	struct hbone_stream *st = hbone_stream_find(s, id);

	if (!st)
		return -E_NOTFOUND;
	st->user = user;
	return 0;
}

void *hbone_stream_user(const struct hbone_session *s, int32_t id)
{
	struct hbone_stream *st = hbone_stream_find(s, id);

	return st ? st->user : NULL;
}

int hbone_stream_stats(const struct hbone_session *s, int32_t id, struct hbone_stream_stats *out)
{
	struct hbone_stream *st = hbone_stream_find(s, id);

	if (!st)
		return -E_NOTFOUND;
	out->bytes_in = st->bytes_in;
	out->bytes_out = st->bytes_out;
	out->unacked = st->unacked;
	out->send_queued = buf_len(&st->sendbuf);
	return 0;
}
