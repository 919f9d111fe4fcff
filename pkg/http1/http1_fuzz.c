/* libFuzzer target for the HTTP/1 parser: whole vs. split feeding must agree, heads round-trip.
 *
 * Input: byte 0 selects the mode (bit 0 response parser, bits 1-2 request method for responses,
 * bit 6 resume after upgrades, bit 7 small limits), byte 1 seeds the split sizes, the rest is the
 * stream. The parser runs twice, once with the whole stream in one push and once fed in pieces of
 * 1..16 bytes through a struct buf; both must produce the same digest of events, bodies, errors
 * and leftover bytes. Every parsed head must also survive the writer and parse back the same.
 */
#include "pkg/http1/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct digest {
	uint64_t h;
	int rc;
	int state;
	size_t rest;
};

struct mode {
	enum http1_kind kind;
	enum http1_method method;
	bool resume;
	struct http1_limits lim;
};

static void mix(struct digest *d, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		d->h = (d->h ^ b[i]) * 0x100000001b3ULL;
}

static void mix_u64(struct digest *d, uint64_t v)
{
	mix(d, &v, sizeof(v));
}

static void mix_slice(struct digest *d, struct slice s)
{
	mix_u64(d, s.n);
	mix(d, s.p, s.n);
}

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "http1_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c);        \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static bool inside(struct slice s, const uint8_t *data, size_t len)
{
	return s.n == 0 || (s.p >= data && s.p + s.n <= data + len);
}

/* Every parsed field must be acceptable to the writer and the count must match. */
static void check_fields(const struct http1_fields *f, const uint8_t *data, size_t len)
{
	struct http1_field fl;
	struct buf b;
	size_t pos = 0;
	uint32_t n = 0;

	ASSERT(inside(f->raw, data, len));
	buf_init(&b, 0);
	while (http1_fields_next(f, &pos, &fl)) {
		ASSERT(http1_format_field(&b, fl.name, fl.value) == 0);
		n++;
	}
	ASSERT(n == f->count);
	buf_fini(&b);
}

static char *cstr(struct slice s)
{
	char *c = malloc(s.n + 1);
	ASSERT(c);
	if (s.n)
		memcpy(c, s.p, s.n);
	c[s.n] = '\0';
	return c;
}

/* Re-serializes an HTTP/1.1 head with the writer and checks it parses back to the same head. */
static void round_trip(const struct mode *md, const struct http1_msg *m)
{
	struct http1_field fs[64];
	struct http1_field fl;
	struct http1_parser p;
	struct http1_event ev;
	struct buf b;
	size_t pos = 0, n = 0;
	int r;

	if (m->version != 1 || m->headers.count > 64)
		return;
	while (http1_fields_next(&m->headers, &pos, &fl))
		fs[n++] = fl;
	buf_init(&b, 0);
	if (m->kind == HTTP1_REQUEST) {
		char *meth = cstr(m->method_raw), *target = cstr(m->target);
		r = http1_format_request_head(&b, meth, target, fs, n, HTTP1_LEN_NONE);
		free(meth);
		free(target);
	} else {
		char *reason = cstr(m->reason);
		r = http1_format_response_head(&b, m->status, reason, fs, n, HTTP1_LEN_NONE);
		free(reason);
	}
	ASSERT(r == 0);
	http1_parser_init(&p, m->kind, NULL);
	if (m->kind == HTTP1_RESPONSE)
		http1_parser_set_method(&p, m->method);
	r = http1_parser_push(&p, buf_rptr(&b), buf_len(&b), &ev);
	/* The writer normalizes "name:value" to "name: value", which may grow a head that was just
	 * under the default max_head; everything else must parse back identically. */
	(void)md;
	ASSERT(r >= 0 || buf_len(&b) > 65536);
	if (r >= 0) {
		ASSERT(ev.type == HTTP1_EV_HEAD);
		ASSERT((size_t)r == buf_len(&b));
		ASSERT(ev.msg->status == m->status && ev.msg->method == m->method);
		ASSERT(ev.msg->headers.count == m->headers.count);
		ASSERT(ev.msg->framing == m->framing);
		ASSERT(ev.msg->has_content_length == m->has_content_length);
		ASSERT(ev.msg->keep_alive == m->keep_alive && ev.msg->upgrade == m->upgrade);
		ASSERT(ev.msg->content_length == m->content_length);
		ASSERT(ev.msg->target.n == m->target.n &&
		       (m->target.n == 0 ||
			memcmp(ev.msg->target.p, m->target.p, m->target.n) == 0));
	}
	buf_fini(&b);
}

static void on_event(struct digest *d, const struct mode *md, const struct http1_event *ev,
		     const uint8_t *data, size_t len, bool check)
{
	const struct http1_msg *m = ev->msg;

	if (ev->type != HTTP1_EV_BODY)
		mix_u64(d, 1000 + (uint64_t)ev->type);
	switch (ev->type) {
	case HTTP1_EV_HEAD:
		ASSERT(inside(m->method_raw, data, len) && inside(m->target, data, len));
		ASSERT(inside(m->host, data, len) && inside(m->reason, data, len));
		check_fields(&m->headers, data, len);
		mix_slice(d, m->method_raw);
		mix_slice(d, m->target);
		mix_slice(d, m->host);
		mix_slice(d, m->reason);
		mix_slice(d, m->headers.raw);
		mix_u64(d, (uint64_t)m->status * 131 + (uint64_t)m->version * 7 + m->framing);
		mix_u64(d, m->content_length);
		mix_u64(d, (uint64_t)m->keep_alive | (uint64_t)m->upgrade << 1 |
				   (uint64_t)m->expect_continue << 2 |
				   (uint64_t)m->has_content_length << 3);
		if (check)
			round_trip(md, m);
		break;
	case HTTP1_EV_BODY:
		ASSERT(ev->data.n > 0 && inside(ev->data, data, len));
		mix(d, ev->data.p, ev->data.n); /* boundaries of pieces must not matter */
		break;
	case HTTP1_EV_END:
		check_fields(&ev->trailers, data, len);
		mix_slice(d, ev->trailers.raw);
		break;
	default: break;
	}
}

/* Runs the documented caller loop; step 0 = everything in one push. */
static void run(const struct mode *md, const uint8_t *in, size_t len, uint8_t seed,
		struct digest *d)
{
	struct http1_parser p;
	struct buf b;
	size_t off = 0;
	uint32_t rng = seed * 2654435761u + 1;

	memset(d, 0, sizeof(*d));
	d->h = 0xcbf29ce484222325ULL;
	http1_parser_init(&p, md->kind, &md->lim);
	http1_parser_set_method(&p, md->method);
	buf_init(&b, 0);
	/* buf_rptr() of a never-allocated buf is NULL + 0, which clang's UBSan reports. */
	ASSERT(buf_reserve(&b, 1) == 0);
	while (d->rc == 0 && off < len) {
		size_t k = len - off;
		if (seed) {
			rng = rng * 1103515245u + 12345u;
			k = MIN(k, (size_t)(rng >> 16) % 16 + 1);
		}
		ASSERT(buf_append(&b, in + off, k) == 0);
		off += k;
		for (;;) {
			struct http1_event ev;
			int n = http1_parser_push(&p, buf_rptr(&b), buf_len(&b), &ev);
			if (n < 0) {
				d->rc = n;
				ASSERT(http1_parser_state(&p) == HTTP1_STATE_ERROR);
				ASSERT(http1_parser_reason(&p)[0] != '\0');
				ASSERT(http1_parser_status(&p) >= 400);
				break;
			}
			ASSERT((size_t)n <= buf_len(&b));
			if (ev.type != HTTP1_EV_NONE)
				on_event(d, md, &ev, buf_rptr(&b), buf_len(&b), seed == 0);
			buf_consume(&b, (size_t)n);
			if (ev.type == HTTP1_EV_UPGRADE && md->resume) {
				ASSERT(http1_parser_resume(&p) == 0);
				continue;
			}
			if (ev.type == HTTP1_EV_NONE || ev.type == HTTP1_EV_UPGRADE)
				break;
		}
	}
	if (d->rc == 0) {
		struct http1_event ev;
		int r = http1_parser_eof(&p, &ev);
		if (r < 0)
			d->rc = r;
		else if (ev.type != HTTP1_EV_NONE)
			on_event(d, md, &ev, NULL, 0, false);
	}
	if (d->rc)
		mix(d, http1_parser_reason(&p), strlen(http1_parser_reason(&p)));
	d->state = http1_parser_state(&p);
	d->rest = d->rc ? 0 : buf_len(&b);
	buf_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum http1_method methods[] = {HTTP1_M_GET, HTTP1_M_HEAD, HTTP1_M_CONNECT,
						    HTTP1_M_POST};
	struct digest whole, split;
	struct mode md;

	if (size < 2)
		return 0;
	md.kind = (data[0] & 1) ? HTTP1_RESPONSE : HTTP1_REQUEST;
	md.method = methods[(data[0] >> 1) & 3];
	md.resume = (data[0] & 0x40) != 0;
	http1_limits_default(&md.lim);
	if (data[0] & 0x80) {
		md.lim.max_line = 64;
		md.lim.max_head = 256;
		md.lim.max_fields = 8;
		md.lim.max_chunk_line = 16;
		md.lim.max_body = 100;
	}
	run(&md, data + 2, size - 2, 0, &whole);
	run(&md, data + 2, size - 2, (uint8_t)(data[1] | 1), &split);
	ASSERT(whole.h == split.h);
	ASSERT(whole.rc == split.rc);
	ASSERT(whole.state == split.state);
	ASSERT(whole.rest == split.rest);
	return 0;
}
