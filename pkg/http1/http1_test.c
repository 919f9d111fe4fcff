/* Unit tests for the HTTP/1 parser, field helpers and writer. */
#include "pkg/http1/http1.h"

#include "test/unit.h"

#include <stdarg.h>
#include <stdlib.h>

/* ---- transcript driver --------------------------------------------------------------------------
 * Feeds input in pieces of `step` bytes (0 = all at once) through a struct buf exactly as a real
 * caller would, and renders every event as one line, so a test asserts all parsed values at once
 * and every split must give the same transcript. Consecutive BODY pieces are merged. */

struct tr {
	char s[8192];
	size_t n;
	char body[4096];
	size_t bn;
	int rc; /* last negative return, 0 if none */
};

__attribute__((format(printf, 2, 3))) static void tr_add(struct tr *t, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(t->s + t->n, sizeof(t->s) - t->n, fmt, ap);
	va_end(ap);
	if (k > 0)
		t->n = MIN(t->n + (size_t)k, sizeof(t->s) - 1);
}

/* Appends bytes with CR, LF, HTAB and other non-printables escaped, so transcripts stay one line
 * per event and comparable as C strings. */
static void tr_esc(struct tr *t, const void *v, size_t n)
{
	const uint8_t *p = v;

	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r')
			tr_add(t, "\\r");
		else if (p[i] == '\n')
			tr_add(t, "\\n");
		else if (p[i] == '\t')
			tr_add(t, "\\t");
		else if (p[i] < 0x20 || p[i] >= 0x7f)
			tr_add(t, "\\x%02x", p[i]);
		else
			tr_add(t, "%c", p[i]);
	}
}

static void tr_slice(struct tr *t, struct slice s)
{
	tr_esc(t, s.p, s.n);
}

static void tr_flush_body(struct tr *t)
{
	if (t->bn == 0)
		return;
	tr_add(t, "BODY ");
	tr_esc(t, t->body, t->bn);
	tr_add(t, "\n");
	t->bn = 0;
}

static const char *framing_name(enum http1_framing f)
{
	static const char *const n[] = {"none", "length", "chunked", "close", "tunnel"};
	return n[f];
}

static void tr_fields(struct tr *t, const struct http1_fields *f)
{
	struct http1_field fl;
	size_t pos = 0;
	uint32_t count = 0;

	while (http1_fields_next(f, &pos, &fl)) {
		tr_add(t, " [");
		tr_slice(t, fl.name);
		tr_add(t, "=");
		tr_slice(t, fl.value);
		tr_add(t, "]");
		count++;
	}
	if (count != f->count)
		tr_add(t, " COUNT-MISMATCH(%u!=%u)", count, f->count);
}

static void tr_event(struct tr *t, const struct http1_event *ev)
{
	const struct http1_msg *m = ev->msg;

	if (ev->type != HTTP1_EV_BODY)
		tr_flush_body(t);
	switch (ev->type) {
	case HTTP1_EV_HEAD:
		if (m->kind == HTTP1_REQUEST) {
			tr_add(t, "HEAD ");
			tr_slice(t, m->method_raw);
			tr_add(t, " ");
			tr_slice(t, m->target);
			tr_add(t, " 1.%d host=", m->version);
			tr_slice(t, m->host);
		} else {
			tr_add(t, "HEAD %d '", m->status);
			tr_slice(t, m->reason);
			tr_add(t, "' 1.%d", m->version);
		}
		tr_fields(t, &m->headers);
		tr_add(t, " fr=%s", framing_name(m->framing));
		if (m->has_content_length)
			tr_add(t, " cl=%llu", (unsigned long long)m->content_length);
		tr_add(t, " ka=%d%s%s\n", m->keep_alive, m->upgrade ? " up" : "",
		       m->expect_continue ? " expect" : "");
		break;
	case HTTP1_EV_BODY:
		if (t->bn + ev->data.n <= sizeof(t->body)) {
			memcpy(t->body + t->bn, ev->data.p, ev->data.n);
			t->bn += ev->data.n;
		}
		break;
	case HTTP1_EV_END:
		tr_add(t, "END");
		tr_fields(t, &ev->trailers);
		tr_add(t, "\n");
		break;
	case HTTP1_EV_UPGRADE: tr_add(t, "UPGRADE\n"); break;
	default: tr_add(t, "NONE?\n"); break;
	}
}

struct opts {
	const struct http1_limits *lim;
	const enum http1_method *methods; /* responses: one per final response, then GET */
	size_t nmethods;
	bool eof;
	bool resume; /* call http1_parser_resume after each UPGRADE */
};

/* Runs the push loop over whatever the buffer holds; returns false once failed. */
static bool drain(struct http1_parser *p, struct buf *in, struct tr *t, const struct opts *o,
		  size_t *mi)
{
	for (;;) {
		struct http1_event ev;
		int n = http1_parser_push(p, buf_rptr(in), buf_len(in), &ev);

		if (n < 0) {
			tr_flush_body(t);
			tr_add(t, "ERR %d %s\n", http1_parser_status(p), http1_parser_reason(p));
			t->rc = n;
			return false;
		}
		if (ev.type != HTTP1_EV_NONE)
			tr_event(t, &ev);
		buf_consume(in, (size_t)n);
		if (ev.type == HTTP1_EV_END && ev.msg->kind == HTTP1_RESPONSE &&
		    (ev.msg->status >= 200 || ev.msg->status == 101) && *mi < o->nmethods) {
			(*mi)++;
			http1_parser_set_method(p,
						*mi < o->nmethods ? o->methods[*mi] : HTTP1_M_GET);
		}
		if (ev.type == HTTP1_EV_UPGRADE && o->resume) {
			CHECK_INT(http1_parser_resume(p), 0);
			continue;
		}
		if (ev.type == HTTP1_EV_NONE || ev.type == HTTP1_EV_UPGRADE)
			return true;
	}
}

static void run(enum http1_kind kind, const char *in, size_t len, size_t step, const struct opts *o,
		struct tr *t)
{
	struct http1_parser p;
	struct buf b;
	size_t off = 0, mi = 0;
	bool ok = true;

	memset(t, 0, sizeof(*t));
	http1_parser_init(&p, kind, o->lim);
	if (o->nmethods)
		http1_parser_set_method(&p, o->methods[0]);
	buf_init(&b, 0);
	REQUIRE(buf_reserve(&b, 1) == 0); /* keep buf_rptr() off NULL + 0 */
	while (ok && off < len) {
		size_t k = step ? MIN(step, len - off) : len - off;
		REQUIRE(buf_append(&b, in + off, k) == 0);
		off += k;
		ok = drain(&p, &b, t, o, &mi);
	}
	if (ok && o->eof) {
		struct http1_event ev;
		int r = http1_parser_eof(&p, &ev);
		if (r < 0) {
			tr_flush_body(t);
			tr_add(t, "ERR %d %s\n", http1_parser_status(&p), http1_parser_reason(&p));
			t->rc = r;
		} else if (ev.type != HTTP1_EV_NONE) {
			tr_event(t, &ev);
		}
	}
	tr_flush_body(t);
	if (ok && t->rc == 0 && buf_len(&b)) {
		tr_add(t, "REST ");
		tr_esc(t, buf_rptr(&b), buf_len(&b));
		tr_add(t, "\n");
	}
	buf_fini(&b);
}

/* Parses `in` whole, byte by byte and in 7-byte pieces; all must equal `want`. Returns the rc. */
static int expect_o(enum http1_kind kind, const char *in, size_t len, const struct opts *o,
		    const char *want, const char *file, int line)
{
	static const size_t steps[] = {0, 1, 7};
	struct tr t;

	for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
		run(kind, in, len, steps[i], o, &t);
		if (strcmp(t.s, want) != 0)
			unit_fail(file, line, "step %zu:\n got: %s\nwant: %s", steps[i], t.s, want);
	}
	return t.rc;
}

static const struct opts no_opts;
#define EXPECT_REQ(in, want)                                                                       \
	expect_o(HTTP1_REQUEST, in, sizeof(in) - 1, &no_opts, want, __FILE__, __LINE__)
#define EXPECT_REQ_O(in, o, want)                                                                  \
	expect_o(HTTP1_REQUEST, in, sizeof(in) - 1, o, want, __FILE__, __LINE__)
#define EXPECT_RESP(in, o, want)                                                                   \
	expect_o(HTTP1_RESPONSE, in, sizeof(in) - 1, o, want, __FILE__, __LINE__)

/* ---- requests ----------------------------------------------------------------------------------
 */

TEST(simple_get)
{
	int rc = EXPECT_REQ("GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n"
			    "Accept: */*\r\nUser-Agent:  curl/8.0 \t\r\n\r\n",
			    "HEAD GET /index.html?q=1 1.1 host=example.com [Host=example.com] "
			    "[Accept=*/*] [User-Agent=curl/8.0] fr=none ka=1\nEND\n");
	CHECK_INT(rc, 0);
}

TEST(get_event_details)
{
	static const char in[] = "GET /a HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n";
	struct http1_parser p;
	struct http1_event ev;
	struct slice v;
	int n;

	http1_parser_init(&p, HTTP1_REQUEST, NULL);
	CHECK_INT(http1_parser_state(&p), HTTP1_STATE_IDLE);
	n = http1_parser_push(&p, (const uint8_t *)in, 10, &ev);
	CHECK_INT(n, 0);
	CHECK_INT(ev.type, HTTP1_EV_NONE);
	CHECK_INT(http1_parser_state(&p), HTTP1_STATE_HEAD);
	n = http1_parser_push(&p, (const uint8_t *)in, sizeof(in) - 1, &ev);
	CHECK_INT(n, (int)sizeof(in) - 1);
	REQUIRE(ev.type == HTTP1_EV_HEAD);
	CHECK_INT(ev.msg->method, HTTP1_M_GET);
	CHECK(ev.msg->target.p == (const uint8_t *)in + 4); /* zero-copy */
	CHECK_INT(ev.msg->headers.count, 2);
	CHECK(http1_fields_get(&ev.msg->headers, "x-empty", &v));
	CHECK_INT(v.n, 0);
	CHECK(!http1_fields_get(&ev.msg->headers, "x-missing", &v));
	CHECK_INT(http1_parser_state(&p), HTTP1_STATE_BODY);
	n = http1_parser_push(&p, NULL, 0, &ev);
	CHECK_INT(n, 0);
	CHECK_INT(ev.type, HTTP1_EV_END);
	CHECK(ev.msg->target.p == NULL); /* slices cleared after the HEAD push */
	CHECK_INT(http1_parser_state(&p), HTTP1_STATE_IDLE);
	n = http1_parser_push(&p, NULL, 0, &ev);
	CHECK_INT(n, 0);
	CHECK_INT(ev.type, HTTP1_EV_NONE);
	CHECK(ev.msg == NULL);
}

TEST(post_content_length)
{
	EXPECT_REQ("POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
		   "HEAD POST /submit 1.1 host=a [Host=a] [Content-Length=11] fr=length cl=11 "
		   "ka=1\nBODY hello world\nEND\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		   "HEAD POST / 1.1 host=a [Host=a] [Content-Length=0] fr=length cl=0 ka=1\nEND\n");
	/* Short body: no END yet; eof reports the truncation. */
	struct opts o = {.eof = true};
	int rc =
		EXPECT_REQ_O("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab", &o,
			     "HEAD PUT /x 1.1 host=a [Host=a] [Content-Length=5] fr=length cl=5 "
			     "ka=1\nBODY ab\nERR 400 connection closed in body, 3 bytes missing\n");
	CHECK_INT(rc, -E_CLOSED);
}

TEST(pipelined_in_one_push)
{
	static const char in[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
				 "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
				 "GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
				 "GET /4 HTTP/1.1\r\nHost: a\r\n\r\n";
	EXPECT_REQ(in, "HEAD GET /1 1.1 host=a [Host=a] fr=none ka=1\nEND\n"
		       "HEAD POST /2 1.1 host=a [Host=a] [Content-Length=3] fr=length cl=3 ka=1\n"
		       "BODY abc\nEND\n"
		       "HEAD GET /3 1.1 host=a [Host=a] [Connection=close] fr=none ka=0\nEND\n"
		       "REST GET /4 HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n\n");

	/* Exact consumed counts per event. */
	struct http1_parser p;
	struct http1_event ev;
	const uint8_t *d = (const uint8_t *)in;
	size_t off = 0, len = sizeof(in) - 1;
	static const int want_n[] = {28, 0, 48, 3, 0, 47, 0};
	static const enum http1_ev_type want_t[] = {HTTP1_EV_HEAD, HTTP1_EV_END, HTTP1_EV_HEAD,
						    HTTP1_EV_BODY, HTTP1_EV_END, HTTP1_EV_HEAD,
						    HTTP1_EV_END};

	http1_parser_init(&p, HTTP1_REQUEST, NULL);
	for (size_t i = 0; i < ARRAY_LEN(want_n); i++) {
		int n = http1_parser_push(&p, d + off, len - off, &ev);
		CHECK_INT(n, want_n[i]);
		CHECK_INT(ev.type, want_t[i]);
		if (n < 0)
			return;
		off += (size_t)n;
	}
	CHECK_INT(http1_parser_state(&p), HTTP1_STATE_CLOSED);
	CHECK_INT(http1_parser_push(&p, d + off, len - off, &ev), 0); /* ignored after close */
	CHECK_INT(ev.type, HTTP1_EV_NONE);
}

TEST(byte_by_byte_chunked_same_result)
{
	/* expect_o already splits every case; this one checks a long mixed stream explicitly. */
	static const char in[] =
		"\r\n\r\nPOST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
		"\r\n3\r\nabc\r\n0\r\n\r\nGET /n HTTP/1.1\r\nHost: a\r\n\r\n";
	struct tr whole, bytes;

	run(HTTP1_REQUEST, in, sizeof(in) - 1, 0, &no_opts, &whole);
	run(HTTP1_REQUEST, in, sizeof(in) - 1, 1, &no_opts, &bytes);
	CHECK_STR(bytes.s, whole.s);
	CHECK_STR(whole.s, "HEAD POST /u 1.1 host=a [Host=a] [Transfer-Encoding=chunked] "
			   "fr=chunked ka=1\nBODY abc\nEND\n"
			   "HEAD GET /n 1.1 host=a [Host=a] fr=none ka=1\nEND\n");
}

TEST(chunked_extensions_and_trailers)
{
	EXPECT_REQ("POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
		   "5;name=val;q=\"a \\\"b\\\" ;c\"\r\nhello\r\n"
		   "0006 ; ext ; x = y\r\n world\r\n"
		   "000\r\nX-Checksum: abc\r\nX-Other:  1 \r\n\r\n",
		   "HEAD POST /up 1.1 host=h [Host=h] [Transfer-Encoding=chunked] fr=chunked ka=1\n"
		   "BODY hello world\nEND [X-Checksum=abc] [X-Other=1]\n");
	/* Upper-case hex and case-insensitive coding name. */
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ChUnKeD\r\n\r\n"
		   "A\r\n0123456789\r\n0\r\n\r\n",
		   "HEAD POST / 1.1 host=h [Host=h] [Transfer-Encoding=ChUnKeD] fr=chunked ka=1\n"
		   "BODY 0123456789\nEND\n");
	/* Empty list elements are ignored (RFC 9110 §5.6.1). */
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked,\r\n\r\n0\r\n\r\n",
		   "HEAD POST / 1.1 host=h [Host=h] [Transfer-Encoding=, chunked,] fr=chunked "
		   "ka=1\nEND\n");
}

TEST(leading_empty_lines_skipped)
{
	EXPECT_REQ("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		   "HEAD GET / 1.1 host=a [Host=a] fr=none ka=1\nEND\n");
	EXPECT_REQ("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", "ERR 400 bare LF before message\n");
	EXPECT_REQ("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", "ERR 400 bare CR before message\n");
}

TEST(request_target_forms)
{
	EXPECT_REQ("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		   "HEAD OPTIONS * 1.1 host=a [Host=a] fr=none ka=1\nEND\n");
	EXPECT_REQ("GET http://a.example/p?x HTTP/1.1\r\nHost: a.example\r\n\r\n",
		   "HEAD GET http://a.example/p?x 1.1 host=a.example [Host=a.example] fr=none "
		   "ka=1\nEND\n");
	EXPECT_REQ("GET * HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 asterisk-form target with a method other than OPTIONS\n");
	EXPECT_REQ("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 request-target is neither origin- nor absolute-form\n");
	EXPECT_REQ("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 invalid character 0x23 in request-target\n");
	EXPECT_REQ("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 invalid character 0xc3 in request-target\n");
	EXPECT_REQ("CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 CONNECT target is not authority-form\n");
	EXPECT_REQ("CONNECT a.example:https HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 CONNECT target has an invalid port\n");
	EXPECT_REQ("CONNECT :443 HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 CONNECT target lacks host or port\n");
	EXPECT_REQ("CONNECT a.example: HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 CONNECT target lacks host or port\n");
	EXPECT_REQ("GET 1http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 request-target is neither origin- nor absolute-form\n");
	EXPECT_REQ("GET ht~tp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 request-target is neither origin- nor absolute-form\n");
	EXPECT_REQ("GET http: HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 request-target is neither origin- nor absolute-form\n");
	EXPECT_REQ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 empty request-target or extra whitespace\n");
	EXPECT_REQ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "ERR 400 malformed HTTP version\n");
	EXPECT_REQ("GET /\r\nHost: a\r\n\r\n", "ERR 400 request-line has no HTTP version\n");
	EXPECT_REQ("GET\r\n\r\n", "ERR 400 request-line has no request-target\n");
	EXPECT_REQ(" GET / HTTP/1.1\r\n\r\n",
		   "ERR 400 invalid character 0x20 at start of request-line\n");
	/* Methods are case-sensitive tokens; unknown ones pass through as OTHER. */
	struct http1_parser p;
	struct http1_event ev;
	static const char in[] = "get / HTTP/1.1\r\nHost: a\r\n\r\n";
	http1_parser_init(&p, HTTP1_REQUEST, NULL);
	CHECK_INT(http1_parser_push(&p, (const uint8_t *)in, sizeof(in) - 1, &ev),
		  (int)sizeof(in) - 1);
	REQUIRE(ev.type == HTTP1_EV_HEAD);
	CHECK_INT(ev.msg->method, HTTP1_M_OTHER);
}

TEST(http_versions)
{
	EXPECT_REQ("GET / HTTP/1.0\r\n\r\n", "HEAD GET / 1.0 host= fr=none ka=0\nEND\n");
	int rc = EXPECT_REQ("GET / HTTP/2.0\r\nHost: a\r\n\r\n",
			    "ERR 505 unsupported HTTP version 'HTTP/2.0'\n");
	CHECK_INT(rc, -E_UNSUPP);
	EXPECT_REQ("GET / HTTP/1.2\r\nHost: a\r\n\r\n",
		   "ERR 505 unsupported HTTP version 'HTTP/1.2'\n");
	EXPECT_REQ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		   "ERR 505 unsupported HTTP version 'HTTP/2.0'\n");
	EXPECT_REQ("GET / HTTP/1.10\r\nHost: a\r\n\r\n", "ERR 400 malformed HTTP version\n");
	EXPECT_REQ("GET / http/1.1\r\nHost: a\r\n\r\n", "ERR 400 malformed HTTP version\n");
	EXPECT_REQ("GET / HTTP/0.9\r\nHost: a\r\n\r\n",
		   "ERR 505 unsupported HTTP version 'HTTP/0.9'\n");
}

TEST(host_rules)
{
	EXPECT_REQ("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", "ERR 400 missing Host header\n");
	int rc = EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
			    "ERR 400 multiple Host headers\n");
	CHECK_INT(rc, -E_PROTO);
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
		   "ERR 400 invalid character 0x2f in Host\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
		   "HEAD GET / 1.1 host=[::1]:8080 [Host=[::1]:8080] fr=none ka=1\nEND\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost:\r\n\r\n",
		   "HEAD GET / 1.1 host= [Host=] fr=none ka=1\nEND\n");
}

/* ---- smuggling shapes -------------------------------------------------------------------------
 */

TEST(smuggling_content_length)
{
	int rc = EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
			    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			    "ERR 400 both Content-Length and Transfer-Encoding\n");
	CHECK_INT(rc, -E_PROTO);
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
		   "Content-Length: 5\r\n\r\n0\r\n\r\n",
		   "ERR 400 both Content-Length and Transfer-Encoding\n");
	rc = EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
			"\r\nhello!",
			"ERR 400 duplicate Content-Length with different values\n");
	CHECK_INT(rc, -E_PROTO);
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
		   "ERR 400 duplicate Content-Length with different values\n");
	/* Identical duplicates are one value (RFC 9110 §8.6). */
	EXPECT_REQ(
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc",
		"HEAD POST / 1.1 host=a [Host=a] [Content-Length=3] [content-length=3] "
		"fr=length cl=3 ka=1\nBODY abc\nEND\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3,3 , 3\r\n\r\nabc",
		   "HEAD POST / 1.1 host=a [Host=a] [Content-Length=3,3 , 3] fr=length cl=3 "
		   "ka=1\nBODY abc\nEND\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
		   "ERR 400 non-digit in Content-Length\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5a\r\n\r\n",
		   "ERR 400 non-digit in Content-Length\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
		   "ERR 400 non-digit in Content-Length\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
		   "ERR 400 non-digit in Content-Length\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
		   "ERR 400 empty Content-Length\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n",
		   "ERR 400 empty Content-Length\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
		   "ERR 400 Content-Length overflows\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387904\r\n\r\n",
		   "ERR 400 Content-Length overflows\n");
}

TEST(smuggling_transfer_encoding)
{
	int rc = EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
			    "ERR 501 unsupported transfer coding 'gzip'\n");
	CHECK_INT(rc, -E_UNSUPP);
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		   "ERR 501 unsupported transfer coding 'gzip'\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
		   "ERR 501 unsupported transfer coding 'identity'\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
		   "ERR 501 unsupported transfer coding 'xchunked'\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
		   "ERR 501 unsupported transfer coding 'chunked;q=1'\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n",
		   "ERR 501 unsupported transfer coding '\"chunked\"'\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
		   "ERR 400 chunked applied more than once\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
		   "Transfer-Encoding: chunked\r\n\r\n",
		   "ERR 400 chunked applied more than once\n");
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
		   "ERR 400 empty Transfer-Encoding\n");
	EXPECT_REQ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		   "ERR 400 Transfer-Encoding in an HTTP/1.0 message\n");
	/* CL+TE outranks the unsupported coding: the stronger reason is reported. */
	EXPECT_REQ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n"
		   "\r\n",
		   "ERR 400 both Content-Length and Transfer-Encoding\n");
}

TEST(smuggling_chunk_sizes)
{
#define CH "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
#define CH_HEAD "HEAD POST / 1.1 host=a [Host=a] [Transfer-Encoding=chunked] fr=chunked ka=1\n"
	EXPECT_REQ(CH "zz\r\n", CH_HEAD "ERR 400 non-hex chunk size\n");
	EXPECT_REQ(CH "-1\r\n", CH_HEAD "ERR 400 non-hex chunk size\n");
	EXPECT_REQ(CH "\r\n", CH_HEAD "ERR 400 non-hex chunk size\n");
	EXPECT_REQ(CH "0x5\r\nhello\r\n",
		   CH_HEAD "ERR 400 invalid character 0x78 after chunk size\n");
	EXPECT_REQ(CH "1000000000000000\r\n", CH_HEAD "ERR 400 chunk size overflows\n");
	EXPECT_REQ(CH "ffffffffffffffff1\r\n", CH_HEAD "ERR 400 chunk size overflows\n");
	EXPECT_REQ(CH "5\r\nhelloX\r\n0\r\n\r\n",
		   CH_HEAD "BODY hello\nERR 400 missing CRLF after chunk data\n");
	EXPECT_REQ(CH "5\r\nhello\rX0\r\n\r\n",
		   CH_HEAD "BODY hello\nERR 400 missing CRLF after chunk data\n");
	EXPECT_REQ(CH "5\r\nhello\n0\r\n\r\n",
		   CH_HEAD "BODY hello\nERR 400 missing CRLF after chunk data\n");
	EXPECT_REQ(CH "5\nhello\r\n", CH_HEAD "ERR 400 bare LF in chunk-size line\n");
	EXPECT_REQ(CH "5\r\r\nhello\r\n", CH_HEAD "ERR 400 bare CR in chunk-size line\n");
	EXPECT_REQ(CH "5 \r\nhello\r\n", CH_HEAD "ERR 400 invalid chunk extension\n");
	EXPECT_REQ(CH "5;\r\nhello\r\n", CH_HEAD "ERR 400 invalid chunk extension\n");
	EXPECT_REQ(CH "5;a=\r\nhello\r\n", CH_HEAD "ERR 400 invalid chunk extension\n");
	EXPECT_REQ(CH "5;a=\"x\r\nhello\r\n", CH_HEAD "ERR 400 invalid chunk extension\n");
	EXPECT_REQ(CH "5;a \r\nhello\r\n", CH_HEAD "ERR 400 invalid chunk extension\n");
	EXPECT_REQ(CH "5;a=b\x01\r\nhello\r\n", CH_HEAD "ERR 400 invalid chunk extension\n");
	/* Leading zeros do not count towards the digit limit. */
	EXPECT_REQ(CH "000000000000000000000002\r\nhi\r\n0\r\n\r\n", CH_HEAD "BODY hi\nEND\n");
	/* Truncated chunked bodies at eof. */
	struct opts o = {.eof = true};
	int rc = EXPECT_REQ_O(CH "5\r\nhel", &o,
			      CH_HEAD "BODY hel\nERR 400 connection closed in chunked body\n");
	CHECK_INT(rc, -E_CLOSED);
#undef CH
#undef CH_HEAD
}

TEST(smuggling_line_shapes)
{
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\nX-Foo: a\r\n b\r\n\r\n",
		   "ERR 400 obs-fold in header 'X-Foo'\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\nX-Foo: a\r\n\tb\r\n\r\n",
		   "ERR 400 obs-fold in header 'X-Foo'\n");
	/* Names in reasons are truncated to 40 bytes. */
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\n"
		   "X-A-Very-Long-Header-Name-That-Keeps-Going-On: a\r\n b\r\n\r\n",
		   "ERR 400 obs-fold in header 'X-A-Very-Long-Header-Name-That-Keeps-Goi...'\n");
	EXPECT_REQ("GET / HTTP/1.1\r\n Host: a\r\n\r\n",
		   "ERR 400 whitespace before the first header field\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",
		   "ERR 400 bare CR in header section\n");
	EXPECT_REQ("GET / HTTP/1.1\rHost: a\r\n\r\n", "ERR 400 bare CR in request-line\n");
	EXPECT_REQ("GET / HTTP/1.1\nHost: a\n\n", "ERR 400 bare LF in request-line\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
		   "ERR 400 bare LF in header section\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\n\n", "ERR 400 bare LF in header section\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost : a\r\n\r\n",
		   "ERR 400 whitespace between header name and colon in 'Host'\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
		   "ERR 400 whitespace between header name and colon in 'Host'\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\nX@Y: 1\r\n\r\n",
		   "ERR 400 invalid character 0x40 in header name 'X'\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", "ERR 400 empty header name\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
		   "ERR 400 missing colon in header field 'NoColon'\n");
	EXPECT_REQ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
		   "ERR 400 invalid character 0x28 in method\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n",
		   "ERR 400 NUL in header 'X-A'\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x01"
		   "b\r\n\r\n",
		   "ERR 400 control character 0x01 in header 'X-A'\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7f\r\n\r\n",
		   "ERR 400 control character 0x7f in header 'X-A'\n");
	/* obs-text and HTAB inside values are fine. */
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\tb\r\n\r\n",
		   "HEAD GET / 1.1 host=a [Host=a] [X-A=caf\\xc3\\xa9\\tb] fr=none ka=1\nEND\n");
	/* CONNECT carrying content. */
	EXPECT_REQ("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 5\r\n\r\n",
		   "ERR 400 CONNECT request with content\n");
}

TEST(errors_are_sticky)
{
	static const char bad[] = "GET / HTTP/1.1\r\nHost : a\r\n\r\n";
	static const char good[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	struct http1_parser p;
	struct http1_event ev;

	http1_parser_init(&p, HTTP1_REQUEST, NULL);
	CHECK_INT(http1_parser_push(&p, (const uint8_t *)bad, sizeof(bad) - 1, &ev), -E_PARSE);
	CHECK_INT(http1_parser_push(&p, (const uint8_t *)good, sizeof(good) - 1, &ev), -E_PARSE);
	CHECK_INT(http1_parser_eof(&p, &ev), -E_PARSE);
	CHECK_INT(http1_parser_state(&p), HTTP1_STATE_ERROR);
	CHECK_INT(http1_parser_status(&p), 400);
	CHECK_STR(http1_parser_reason(&p), "whitespace between header name and colon in 'Host'");
}

/* ---- limits
 * -------------------------------------------------------------------------------------- */

TEST(limits_uri_and_headers)
{
	struct http1_limits lim;
	struct opts o = {.lim = &lim};
	int rc;

	http1_limits_default(&lim);
	CHECK_INT(lim.max_line, 8192);
	CHECK_INT(lim.max_head, 65536);
	CHECK_INT(lim.max_fields, 100);
	CHECK_INT(lim.max_chunk_line, 1024);
	CHECK_INT(lim.max_body, 0);
	lim.max_line = 32;
	lim.max_head = 96;
	lim.max_fields = 3;
	/* 32 bytes incl. CRLF is the most allowed. */
	EXPECT_REQ_O("GET /0123456789abcdef HTTP/1.1\r\nHost: a\r\n\r\n", &o,
		     "HEAD GET /0123456789abcdef 1.1 host=a [Host=a] fr=none ka=1\nEND\n");
	rc = EXPECT_REQ_O("GET /0123456789abcdefg HTTP/1.1\r\nHost: a\r\n\r\n", &o,
			  "ERR 414 request-line longer than 32 bytes\n");
	CHECK_INT(rc, -E_LIMIT);
	/* Detected before the line ends. */
	EXPECT_REQ_O("GET /0123456789abcdefghijklmnopqrstuvwxyz", &o,
		     "ERR 414 request-line longer than 32 bytes\n");
	EXPECT_REQ_O("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &o,
		     "ERR 431 more than 3 header fields\n");
	EXPECT_REQ_O("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", &o,
		     "HEAD GET / 1.1 host=a [Host=a] [A=1] [B=2] fr=none ka=1\nEND\n");
	rc = EXPECT_REQ_O("GET / HTTP/1.1\r\nHost: a\r\nX-Long: "
			  "012345678901234567890123456789012345678901234567890123456789\r\n\r\n",
			  &o, "ERR 431 header section larger than 96 bytes\n");
	CHECK_INT(rc, -E_LIMIT);
	EXPECT_REQ_O("GET / HTTP/1.1\r\nHost: a\r\nX-Long: "
		     "0123456789012345678901234567890123456789012345678901234567890123456789",
		     &o, "ERR 431 header section larger than 96 bytes\n");
	/* Exactly 96 bytes of head passes. */
	EXPECT_REQ_O("GET / HTTP/1.1\r\nHost: a\r\nX-Long: "
		     "01234567890123456789012345678901234567890123456789012345678\r\n\r\n",
		     &o,
		     "HEAD GET / 1.1 host=a [Host=a] "
		     "[X-Long=01234567890123456789012345678901234567890123456789012345678] fr=none "
		     "ka=1\nEND\n");
}

TEST(limits_body_and_chunks)
{
	struct http1_limits lim;
	struct opts o = {.lim = &lim};
	int rc;

	http1_limits_default(&lim);
	lim.max_body = 10;
	lim.max_chunk_line = 16;
	lim.max_fields = 2;
	rc = EXPECT_REQ_O("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", &o,
			  "ERR 413 Content-Length 11 exceeds the body limit of 10\n");
	CHECK_INT(rc, -E_LIMIT);
#define CH "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
#define CH_HEAD "HEAD POST / 1.1 host=a [Host=a] [Transfer-Encoding=chunked] fr=chunked ka=1\n"
	EXPECT_REQ_O(CH "6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n", &o,
		     CH_HEAD "BODY abcdefghij\nEND\n");
	EXPECT_REQ_O(CH "6\r\nabcdef\r\n5\r\nghijk\r\n0\r\n\r\n", &o,
		     CH_HEAD "BODY abcdef\nERR 413 chunked body exceeds the body limit of 10\n");
	EXPECT_REQ_O(CH "1;aaaaaaaaaaaaaa\r\na\r\n", &o,
		     CH_HEAD "ERR 400 chunk-size line longer than 16 bytes\n");
	EXPECT_REQ_O(CH "1;aaaaaaaaaaaa\r\na\r\n0\r\n\r\n", &o, CH_HEAD "BODY a\nEND\n");
	EXPECT_REQ_O(CH "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &o,
		     CH_HEAD "ERR 431 more than 2 trailer fields\n");
	EXPECT_REQ_O(CH "0\r\nA: 1\r\n b\r\n\r\n", &o, CH_HEAD "ERR 400 obs-fold in trailer 'A'\n");
	EXPECT_REQ_O(CH "0\r\n A: 1\r\n\r\n", &o,
		     CH_HEAD "ERR 400 whitespace before the first trailer field\n");
	lim.max_head = 64;
	EXPECT_REQ_O(CH
		     "0\r\nX: 012345678901234567890123456789012345678901234567890123456789\r\n\r\n",
		     &o, CH_HEAD "ERR 431 trailer section larger than 64 bytes\n");
#undef CH
#undef CH_HEAD
}

/* ---- responses ---------------------------------------------------------------------------------
 */

TEST(response_etag_content_length)
{
	static const char in[] =
		"HTTP/1.1 200 OK\r\nETag: \"v42\"\r\nContent-Type: application/json"
		"\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
	struct opts o = {0};
	struct http1_parser p;
	struct http1_event ev;
	struct slice etag;

	EXPECT_RESP(in, &o,
		    "HEAD 200 'OK' 1.1 [ETag=\"v42\"] [Content-Type=application/json] "
		    "[Content-Length=7] fr=length cl=7 ka=1\nBODY {\"a\":1}\nEND\n");
	http1_parser_init(&p, HTTP1_RESPONSE, NULL);
	CHECK_INT(http1_parser_push(&p, (const uint8_t *)in, sizeof(in) - 1, &ev), 83);
	REQUIRE(ev.type == HTTP1_EV_HEAD);
	CHECK(http1_fields_get(&ev.msg->headers, "etag", &etag));
	CHECK_INT(etag.n, 5);
	CHECK_MEM(etag.p, "\"v42\"", 5);
	CHECK_INT(ev.msg->method, HTTP1_M_GET);
}

TEST(response_304_and_204_no_body)
{
	struct opts o = {0};

	EXPECT_RESP("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 100\r\n\r\n"
		    "HTTP/1.1 204 No Content\r\n\r\n"
		    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		    &o,
		    "HEAD 304 'Not Modified' 1.1 [ETag=\"v1\"] [Content-Length=100] fr=none cl=100 "
		    "ka=1\nEND\n"
		    "HEAD 204 'No Content' 1.1 fr=none ka=1\nEND\n"
		    "HEAD 200 'OK' 1.1 [Content-Length=2] fr=length cl=2 ka=1\nBODY ok\nEND\n");
}

TEST(response_to_head)
{
	static const enum http1_method ms[] = {HTTP1_M_HEAD, HTTP1_M_GET};
	struct opts o = {.methods = ms, .nmethods = 2};

	EXPECT_RESP(
		"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		&o,
		"HEAD 200 'OK' 1.1 [Content-Length=1234] fr=none cl=1234 ka=1\nEND\n"
		"HEAD 200 'OK' 1.1 [Transfer-Encoding=chunked] fr=chunked ka=1\nBODY ok\nEND\n");
}

TEST(response_interim_keeps_method)
{
	static const enum http1_method ms[] = {HTTP1_M_HEAD};
	struct opts o = {.methods = ms, .nmethods = 1};

	EXPECT_RESP("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
		    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
		    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		    &o,
		    "HEAD 100 'Continue' 1.1 fr=none ka=1\nEND\n"
		    "HEAD 103 'Early Hints' 1.1 [Link=</s>] fr=none ka=1\nEND\n"
		    "HEAD 200 'OK' 1.1 [Content-Length=5] fr=none cl=5 ka=1\nEND\n"
		    "HEAD 200 'OK' 1.1 [Content-Length=2] fr=length cl=2 ka=1\nBODY ok\nEND\n");
}

TEST(response_close_delimited)
{
	struct opts o = {.eof = true};
	struct opts noeof = {0};

	EXPECT_RESP("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc\r\ndef", &o,
		    "HEAD 200 'OK' 1.1 [Content-Type=text/plain] fr=close ka=0\nBODY abc\\r\\ndef\n"
		    "END\n");
	EXPECT_RESP("HTTP/1.0 200 OK\r\n\r\nabc", &noeof,
		    "HEAD 200 'OK' 1.0 fr=close ka=0\nBODY abc\n");
	/* Looks like a second response, but it is body. */
	EXPECT_RESP("HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", &o,
		    "HEAD 200 'OK' 1.1 fr=close ka=0\nBODY HTTP/1.1 200 OK\\r\\n\\r\\n\nEND\n");
	struct http1_limits lim;
	http1_limits_default(&lim);
	lim.max_body = 4;
	struct opts lo = {.eof = true, .lim = &lim};
	EXPECT_RESP("HTTP/1.1 200 OK\r\n\r\nabcd", &lo,
		    "HEAD 200 'OK' 1.1 fr=close ka=0\nBODY abcd\nEND\n");
	EXPECT_RESP("HTTP/1.1 200 OK\r\n\r\nabcde", &lo,
		    "HEAD 200 'OK' 1.1 fr=close ka=0\nBODY abcd\nERR 413 body exceeds the limit of "
		    "4 bytes\n");
}

TEST(response_status_lines)
{
	struct opts o = {0};
	struct opts e = {.eof = true};

	EXPECT_RESP("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", &o,
		    "HEAD 200 '' 1.1 [Content-Length=0] fr=length cl=0 ka=1\nEND\n");
	EXPECT_RESP("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", &o,
		    "HEAD 404 '' 1.1 [Content-Length=0] fr=length cl=0 ka=1\nEND\n");
	EXPECT_RESP("HTTP/1.1 503 Service  Unavailable\t!\r\nContent-Length: 0\r\n\r\n", &o,
		    "HEAD 503 'Service  Unavailable\\t!' 1.1 [Content-Length=0] fr=length cl=0 "
		    "ka=1\nEND\n");
	EXPECT_RESP("HTTP/1.1 99 Low\r\n\r\n", &o, "ERR 400 non-digit in status code\n");
	EXPECT_RESP("HTTP/1.1 600 High\r\n\r\n", &o,
		    "ERR 400 status code 600 out of range 100..599\n");
	EXPECT_RESP("HTTP/1.1 2000 OK\r\n\r\n", &o, "ERR 400 malformed status-line\n");
	EXPECT_RESP("HTTP/1.1  200 OK\r\n\r\n", &o, "ERR 400 non-digit in status code\n");
	EXPECT_RESP("HTTP/1.1 200 O\x01K\r\n\r\n", &o,
		    "ERR 400 invalid character 0x01 in reason phrase\n");
	EXPECT_RESP("HTTP/2 200 OK\r\n\r\n", &o, "ERR 400 malformed status-line\n");
	EXPECT_RESP("HTTP/2.0 200 OK\r\n\r\n", &o, "ERR 505 unsupported HTTP version 'HTTP/2.0'\n");
	EXPECT_RESP("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		    &o, "ERR 400 both Content-Length and Transfer-Encoding\n");
	EXPECT_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &o,
		    "ERR 501 unsupported transfer coding 'gzip'\n");
	int rc = EXPECT_RESP("HTTP/1.1 200 OK\r\nContent-", &e,
			     "ERR 400 connection closed in message head\n");
	CHECK_INT(rc, -E_CLOSED);
	/* Responses need no Host; Host in a response is just a field. */
	EXPECT_RESP("HTTP/1.1 200 OK\r\nHost: a/b\r\nHost: c\r\nContent-Length: 0\r\n\r\n", &o,
		    "HEAD 200 'OK' 1.1 [Host=a/b] [Host=c] [Content-Length=0] fr=length cl=0 "
		    "ka=1\nEND\n");
}

/* ---- keep-alive
 * ---------------------------------------------------------------------------------- */

TEST(keep_alive_rules)
{
	struct opts o = {0};

	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
		   "HEAD GET / 1.1 host=a [Host=a] fr=none ka=1\nEND\n"
		   "HEAD GET /2 1.1 host=a [Host=a] fr=none ka=1\nEND\n");
	EXPECT_REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\nGET /2",
		   "HEAD GET / 1.1 host=a [Host=a] [Connection=foo, Close] fr=none ka=0\nEND\n"
		   "REST GET /2\n");
	EXPECT_REQ("GET / HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
		   "HEAD GET / 1.0 host= fr=none ka=0\nEND\nREST GET /2 HTTP/1.0\\r\\n\\r\\n\n");
	EXPECT_REQ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
		   "HEAD GET / 1.0 host= [Connection=Keep-Alive] fr=none ka=1\nEND\n"
		   "HEAD GET /2 1.0 host= fr=none ka=0\nEND\n");
	/* close wins over keep-alive. */
	EXPECT_REQ("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
		   "HEAD GET / 1.0 host= [Connection=keep-alive] [Connection=close] fr=none "
		   "ka=0\nEND\n");
	EXPECT_RESP("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx"
		    "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\ny",
		    &o,
		    "HEAD 200 'OK' 1.0 [Connection=keep-alive] [Content-Length=1] fr=length cl=1 "
		    "ka=1\nBODY x\nEND\n"
		    "HEAD 200 'OK' 1.0 [Content-Length=1] fr=length cl=1 ka=0\nBODY y\nEND\n");
	EXPECT_RESP("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nxtrailing",
		    &o,
		    "HEAD 200 'OK' 1.1 [Connection=close] [Content-Length=1] fr=length cl=1 "
		    "ka=0\nBODY x\nEND\nREST trailing\n");
}

TEST(expect_continue)
{
	EXPECT_REQ(
		"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nz",
		"HEAD PUT /f 1.1 host=a [Host=a] [Expect=100-Continue] [Content-Length=1] "
		"fr=length cl=1 ka=1 expect\nBODY z\nEND\n");
	EXPECT_REQ("PUT /f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
		   "HEAD PUT /f 1.0 host= [Expect=100-continue] [Content-Length=1] fr=length cl=1 "
		   "ka=0\nBODY z\nEND\n");
}

/* ---- upgrades and tunnels
 * ------------------------------------------------------------------------ */

TEST(upgrade_request_and_101)
{
	struct opts o = {0};

	EXPECT_REQ("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
		   "Upgrade: websocket\r\n\r\n\x81\x05hello",
		   "HEAD GET /ws 1.1 host=a [Host=a] [Connection=keep-alive, Upgrade] "
		   "[Upgrade=websocket] fr=none ka=1 up\nUPGRADE\nREST \\x81\\x05hello\n");
	/* Upgrade without the Connection option is only a field. */
	EXPECT_REQ("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
		   "HEAD GET /ws 1.1 host=a [Host=a] [Upgrade=websocket] fr=none ka=1\nEND\n");
	/* RFC 9110 §7.8: Upgrade in HTTP/1.0 is ignored. */
	EXPECT_REQ("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
		   "HEAD GET /ws 1.0 host= [Connection=upgrade] [Upgrade=websocket] fr=none "
		   "ka=0\nEND\n");
	/* An upgrade request with a body ends with UPGRADE after the body. */
	EXPECT_REQ("POST /up HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n"
		   "Content-Length: 2\r\n\r\nhiRAW",
		   "HEAD POST /up 1.1 host=a [Host=a] [Connection=upgrade] [Upgrade=x] "
		   "[Content-Length=2] fr=length cl=2 ka=1 up\nBODY hi\nUPGRADE\nREST RAW\n");
	EXPECT_RESP("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		    "Connection: Upgrade\r\n\r\n\x82\x00",
		    &o,
		    "HEAD 101 'Switching Protocols' 1.1 [Upgrade=websocket] [Connection=Upgrade] "
		    "fr=tunnel ka=0 up\nUPGRADE\nREST \\x82\\x00\n");
}

TEST(connect_tunnel)
{
	static const enum http1_method ms[] = {HTTP1_M_CONNECT, HTTP1_M_CONNECT};
	struct opts o = {.methods = ms, .nmethods = 2};

	EXPECT_REQ("CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n\r\nTLSDATA",
		   "HEAD CONNECT db.example:5432 1.1 host=db.example:5432 [Host=db.example:5432] "
		   "fr=tunnel ka=0\nUPGRADE\nREST TLSDATA\n");
	EXPECT_RESP("HTTP/1.1 200 Connection Established\r\nContent-Length: 10\r\n\r\nRAW", &o,
		    "HEAD 200 'Connection Established' 1.1 [Content-Length=10] fr=tunnel cl=10 "
		    "ka=0\nUPGRADE\nREST RAW\n");
	/* A refused CONNECT has a normal body. */
	EXPECT_RESP("HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno", &o,
		    "HEAD 403 'Forbidden' 1.1 [Content-Length=2] fr=length cl=2 ka=1\nBODY no\n"
		    "END\n");
}

TEST(upgrade_declined_resume)
{
	struct opts o = {.resume = true};
	struct http1_parser p;

	EXPECT_REQ_O("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
		     "GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
		     &o,
		     "HEAD GET /ws 1.1 host=a [Host=a] [Connection=upgrade] [Upgrade=h2c] fr=none "
		     "ka=1 up\nUPGRADE\nHEAD GET /next 1.1 host=a [Host=a] fr=none ka=1\nEND\n");
	http1_parser_init(&p, HTTP1_REQUEST, NULL);
	CHECK_INT(http1_parser_resume(&p), -E_STATE);
}

TEST(eof_states)
{
	struct http1_parser p;
	struct http1_event ev;

	http1_parser_init(&p, HTTP1_REQUEST, NULL);
	CHECK_INT(http1_parser_eof(&p, &ev), 0);
	CHECK_INT(ev.type, HTTP1_EV_NONE);
	CHECK_INT(http1_parser_state(&p), HTTP1_STATE_CLOSED);
	/* eof right after a HEAD without body delivers the pending END. */
	static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	http1_parser_init(&p, HTTP1_REQUEST, NULL);
	CHECK_INT(http1_parser_push(&p, (const uint8_t *)in, sizeof(in) - 1, &ev),
		  (int)sizeof(in) - 1);
	CHECK_INT(http1_parser_eof(&p, &ev), 0);
	CHECK_INT(ev.type, HTTP1_EV_END);
	CHECK_INT(http1_parser_state(&p), HTTP1_STATE_CLOSED);
	CHECK_STR(http1_parser_reason(&p), "");
	CHECK_INT(http1_parser_status(&p), 0);
}

/* ---- helpers
 * ------------------------------------------------------------------------------------- */

TEST(token_lists_and_lookup)
{
	static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\n"
				 "connection: TE\r\nX-Hop: 1\r\nAccept: a\r\nACCEPT: b\r\n\r\n";
	struct http1_parser p;
	struct http1_event ev;
	struct slice v;

	CHECK(http1_list_contains(http1_s("a, b ,c"), "b"));
	CHECK(http1_list_contains(http1_s(",,Close,"), "close"));
	CHECK(!http1_list_contains(http1_s("closed"), "close"));
	CHECK(!http1_list_contains(http1_s(""), "close"));
	CHECK(!http1_list_contains(http1_s("a;close"), "close"));
	CHECK(http1_slice_eq(http1_s("Content-Length"), "content-length"));
	CHECK(!http1_slice_eq(http1_s("Content-Lengt"), "content-length"));
	http1_parser_init(&p, HTTP1_REQUEST, NULL);
	REQUIRE(http1_parser_push(&p, (const uint8_t *)in, sizeof(in) - 1, &ev) > 0);
	REQUIRE(ev.type == HTTP1_EV_HEAD);
	CHECK(http1_fields_get(&ev.msg->headers, "accept", &v));
	CHECK_INT(v.n, 1);
	CHECK_INT(v.p[0], 'a');
	CHECK(http1_fields_has_token(&ev.msg->headers, "Connection", "te"));
	CHECK(http1_fields_has_token(&ev.msg->headers, "connection", "KEEP-ALIVE"));
	CHECK(!http1_fields_has_token(&ev.msg->headers, "accept", "c"));
	CHECK(http1_is_hop_by_hop(ev.msg, http1_s("x-hop")));
	CHECK(http1_is_hop_by_hop(ev.msg, http1_s("Transfer-Encoding")));
	CHECK(http1_is_hop_by_hop(NULL, http1_s("Keep-Alive")));
	CHECK(!http1_is_hop_by_hop(ev.msg, http1_s("accept")));
	CHECK(!http1_is_hop_by_hop(NULL, http1_s("x-hop")));
}

TEST(methods_and_reasons)
{
	CHECK_INT(http1_method_parse(http1_s("GET")), HTTP1_M_GET);
	CHECK_INT(http1_method_parse(http1_s("PATCH")), HTTP1_M_PATCH);
	CHECK_INT(http1_method_parse(http1_s("CONNECT")), HTTP1_M_CONNECT);
	CHECK_INT(http1_method_parse(http1_s("GETX")), HTTP1_M_OTHER);
	CHECK_STR(http1_method_name(HTTP1_M_DELETE), "DELETE");
	CHECK(http1_method_name(HTTP1_M_OTHER) == NULL);
	CHECK_STR(http1_reason(200), "OK");
	CHECK_STR(http1_reason(413), "Content Too Large");
	CHECK_STR(http1_reason(431), "Request Header Fields Too Large");
	CHECK_STR(http1_reason(299), "Unknown");
}

/* ---- writer
 * -------------------------------------------------------------------------------------- */

static void check_buf(const struct buf *b, const char *want, const char *file, int line)
{
	size_t n = strlen(want);
	if (buf_len(b) != n || memcmp(buf_rptr(b), want, n) != 0)
		unit_fail(file, line, "buffer \"%.*s\" != \"%s\"", (int)buf_len(b),
			  (const char *)buf_rptr(b), want);
}
#define CHECK_BUF(b, want) check_buf(b, want, __FILE__, __LINE__)

TEST(write_response_head)
{
	struct buf b;
	const struct http1_field f[] = {{http1_s("Content-Type"), http1_s("text/plain")},
					{http1_s("ETag"), http1_s("\"v1\"")}};

	buf_init(&b, 0);
	CHECK_INT(http1_format_response_head(&b, 200, NULL, f, 2, 5), 0);
	CHECK_BUF(&b, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"v1\"\r\n"
		      "Content-Length: 5\r\n\r\n");
	buf_reset(&b);
	CHECK_INT(http1_format_response_head(&b, 404, "Nope", NULL, 0, HTTP1_LEN_NONE), 0);
	CHECK_BUF(&b, "HTTP/1.1 404 Nope\r\n\r\n");
	buf_reset(&b);
	CHECK_INT(http1_format_response_head(&b, 599, NULL, NULL, 0, HTTP1_LEN_CHUNKED), 0);
	CHECK_BUF(&b, "HTTP/1.1 599 Unknown\r\nTransfer-Encoding: chunked\r\n\r\n");
	buf_reset(&b);
	CHECK_INT(http1_format_status_line(&b, 99, NULL), -E_INVAL);
	CHECK_INT(http1_format_status_line(&b, 200, "bad\r\nreason"), -E_INVAL);
	CHECK_INT(http1_format_length(&b, -3), -E_INVAL);
	CHECK_INT(buf_len(&b), 0);
	buf_fini(&b);
}

TEST(write_rejects_injection_and_rolls_back)
{
	struct buf b;
	const struct http1_field bad_val[] = {{http1_s("X-A"), http1_s("1")},
					      {http1_s("X-B"), http1_s("x\r\nSet-Cookie: y")}};
	const struct http1_field bad_name[] = {{http1_s("X A"), http1_s("1")}};
	const struct http1_field empty_name[] = {{http1_s(""), http1_s("1")}};

	buf_init(&b, 0);
	REQUIRE(buf_append_str(&b, "keep") == 0);
	CHECK_INT(http1_format_response_head(&b, 200, NULL, bad_val, 2, 0), -E_INVAL);
	CHECK_INT(http1_format_request_head(&b, "GET", "/", bad_name, 1, HTTP1_LEN_NONE), -E_INVAL);
	CHECK_INT(http1_format_request_head(&b, "GET", "/", empty_name, 1, HTTP1_LEN_NONE),
		  -E_INVAL);
	CHECK_INT(http1_format_request_head(&b, "G T", "/", NULL, 0, HTTP1_LEN_NONE), -E_INVAL);
	CHECK_INT(http1_format_request_head(&b, "GET", "/a b", NULL, 0, HTTP1_LEN_NONE), -E_INVAL);
	CHECK_INT(http1_format_request_head(&b, "GET", "", NULL, 0, HTTP1_LEN_NONE), -E_INVAL);
	CHECK_INT(http1_format_field_str(&b, "X", "a\0b"), 0); /* C string stops at NUL */
	CHECK_INT(http1_format_field(&b, http1_s("X"), (struct slice){(const uint8_t *)"a\0b", 3}),
		  -E_INVAL);
	CHECK_BUF(&b, "keepX: a\r\n");
	/* A bounded buffer that runs out leaves no partial head. */
	struct buf small;
	buf_init(&small, 16);
	CHECK(http1_format_response_head(&small, 200, NULL, NULL, 0, 0) < 0);
	CHECK_INT(buf_len(&small), 0);
	buf_fini(&small);
	buf_fini(&b);
}

TEST(write_chunks)
{
	struct buf b;
	const struct http1_field tr[] = {{http1_s("X-Sum"), http1_s("7")}};

	buf_init(&b, 0);
	CHECK_INT(http1_format_chunk(&b, "hello", 5), 0);
	CHECK_INT(http1_format_chunk(&b, "", 0), 0);
	CHECK_INT(http1_format_chunk_head(&b, 26), 0);
	REQUIRE(buf_append_str(&b, "abcdefghijklmnopqrstuvwxyz") == 0);
	CHECK_INT(http1_format_chunk_end(&b), 0);
	CHECK_INT(http1_format_chunk_head(&b, 0), -E_INVAL);
	CHECK_INT(http1_format_last_chunk(&b, tr, 1), 0);
	CHECK_BUF(&b, "5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 7\r\n\r\n");
	buf_reset(&b);
	CHECK_INT(http1_format_last_chunk(&b, NULL, 0), 0);
	CHECK_BUF(&b, "0\r\n\r\n");
	buf_fini(&b);
}

TEST(write_then_parse_round_trip)
{
	struct buf b;
	struct tr t;
	const struct http1_field f[] = {{http1_s("Host"), http1_s("ca.mesh:15012")},
					{http1_s("If-None-Match"), http1_s("\"abc\"")}};
	const struct http1_field tr[] = {{http1_s("X-T"), http1_s("v")}};

	buf_init(&b, 0);
	CHECK_INT(http1_format_request_head(&b, "POST", "/v1/config?watch=abc", f, 2,
					    HTTP1_LEN_CHUNKED),
		  0);
	CHECK_INT(http1_format_chunk(&b, "{}", 2), 0);
	CHECK_INT(http1_format_last_chunk(&b, tr, 1), 0);
	run(HTTP1_REQUEST, (const char *)buf_rptr(&b), buf_len(&b), 1, &no_opts, &t);
	CHECK_STR(t.s, "HEAD POST /v1/config?watch=abc 1.1 host=ca.mesh:15012 [Host=ca.mesh:15012] "
		       "[If-None-Match=\"abc\"] [Transfer-Encoding=chunked] fr=chunked ka=1\n"
		       "BODY {}\nEND [X-T=v]\n");
	buf_fini(&b);
}
