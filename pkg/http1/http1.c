/* Sans-I/O HTTP/1.1 message parser (RFC 9112): heads, bodies, pipelining, upgrades.
 *
 * One parser per direction of a connection; per message:
 *
 *                CRLF: skipped (RFC 9112 §2.2)
 *                  +----+
 *                  v    |   other byte                        any violation
 *   +----------> IDLE --+---------------> HEAD ------------------------------> ERROR (sticky)
 *   |                                      |
 *   |                                      | empty line: emit HEAD, pick framing (§6.3)
 *   |     +-----------+-------------+------+-----------+-----------------+
 *   |     | NONE      | LENGTH      | CHUNKED          | CLOSE           | TUNNEL
 *   |     |           v             v                  v                 v
 *   |     |       BODY_LEN      CHUNK_LINE <------+  BODY_CLOSE       UPG_PENDING
 *   |     |           |         size>0 |  | size 0 |     | eof()         |
 *   |     |           | n left == 0    v  |        |     v               |
 *   |     |           |       CHUNK_DATA  |        |  emit END           |
 *   |     |           |            v      |        |  -> CLOSED          |
 *   |     |           |       CHUNK_CRLF -|--------+                     |
 *   |     |           |                   v                              |
 *   |     |           |               TRAILERS                           |
 *   |     v           v                   | empty line                   |
 *   |   END_PENDING <---------------------+                              v
 *   |     | emit END, or UPGRADE if the request asked for one ---> emit UPGRADE
 *   |     |                                                       -> UPGRADED
 *   |     +--> keep-alive or interim 1xx --+                          | resume()
 *   +--------------------------------------+--------------------------+
 *         +--> not keep-alive --> CLOSED (further input ignored)
 *
 * Heads, chunk-size lines and trailer sections are consumed only once complete, so the bytes they
 * occupy stay contiguous in the caller's buffer and every slice handed out points into it. While
 * such a unit is incomplete the parser remembers how far it validated (scan) and searched (seek),
 * so feeding one byte at a time stays linear.
 */
#include "pkg/http1/http1.h"
#include "pkg/http1/http1_int.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum {
	ST_IDLE,
	ST_HEAD,
	ST_END_PENDING,
	ST_BODY_LEN,
	ST_CHUNK_LINE,
	ST_CHUNK_DATA,
	ST_CHUNK_CRLF,
	ST_TRAILERS,
	ST_BODY_CLOSE,
	ST_UPG_PENDING,
	ST_UPGRADED,
	ST_CLOSED,
	ST_ERROR,
};

/* Per-head flags in p->hflags. */
enum {
	HF_START_DONE = 1 << 0,
	HF_CONN_CLOSE = 1 << 1,
	HF_CONN_KEEPALIVE = 1 << 2,
	HF_CONN_UPGRADE = 1 << 3,
	HF_UPGRADE = 1 << 4,
	HF_EXPECT = 1 << 5,
	HF_TE = 1 << 6,
	HF_TE_OTHER = 1 << 7,
};

/* Largest Content-Length / body we represent: keeps every sum below 2^63. */
#define H1_LEN_MAX ((UINT64_C(1) << 62) - 1)
/* 15 hex digits = 60 bits, below H1_LEN_MAX. */
#define H1_CHUNK_DIGITS_MAX 15

void http1_limits_default(struct http1_limits *l)
{
	l->max_line = 8192;
	l->max_head = 65536;
	l->max_fields = 100;
	l->max_chunk_line = 1024;
	l->max_body = 0;
}

void http1_parser_init(struct http1_parser *p, enum http1_kind kind, const struct http1_limits *lim)
{
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	if (lim)
		p->lim = *lim;
	else
		http1_limits_default(&p->lim);
	p->st = ST_IDLE;
	p->req_method = HTTP1_M_GET;
}

__attribute__((format(printf, 4, 5))) static int fail(struct http1_parser *p, int code, int status,
						      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
	va_end(ap);
	p->err = -code;
	p->err_status = status;
	p->st = ST_ERROR;
	return -code;
}

/* Copies at most 40 bytes of peer data into a printable, NUL-terminated string for a reason. */
static const char *printable(char *dst, size_t cap, const uint8_t *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 4 < cap && i < 40; i++)
		dst[o++] = (s[i] > 0x20 && s[i] < 0x7f && s[i] != '\'') ? (char)s[i] : '?';
	if (i < n && o + 4 <= cap) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
	return dst;
}

static void begin_message(struct http1_parser *p)
{
	enum http1_method rm = p->req_method;

	p->scan = p->seek = 0;
	p->nfields = 0;
	p->fields_off = 0;
	p->last_name_off = p->last_name_len = 0;
	p->m_off = p->m_len = p->t_off = p->t_len = p->r_off = p->r_len = p->h_off = p->h_len = 0;
	p->remaining = p->body_total = 0;
	p->hflags = 0;
	p->te_chunked = 0;
	p->host_count = 0;
	p->msg_upgrade = false;
	memset(&p->msg, 0, sizeof(p->msg));
	p->msg.kind = p->kind;
	if (p->kind == HTTP1_RESPONSE)
		p->msg.method = rm;
	p->st = ST_HEAD;
}

/* Finds the end of the line starting at p->scan, which must end (LF included) at or before offset
 * `max`. Returns 1 with *cr at the CR of its CRLF, 0 if the line is incomplete, LINE_TOO_LONG if
 * it cannot end in time, < 0 on a bare LF or CR (RFC 9112 §2.2: we never accept LF alone). The
 * limit is judged before the content, so every split of the input fails the same way. */
#define LINE_TOO_LONG 2
static int next_line(struct http1_parser *p, const uint8_t *b, size_t len, size_t max, size_t *cr,
		     const char *what)
{
	size_t from = p->seek > p->scan ? p->seek : p->scan;
	size_t end = len < max ? len : max;
	const uint8_t *lf;
	size_t i;

	lf = from < end ? memchr(b + from, '\n', end - from) : NULL;
	if (!lf) {
		p->seek = end;
		return len >= max ? LINE_TOO_LONG : 0;
	}
	i = (size_t)(lf - b);
	if (i == p->scan || b[i - 1] != '\r')
		return fail(p, E_PARSE, 400, "bare LF in %s", what);
	*cr = i - 1;
	p->seek = i + 1;
	/* RFC 9112 §2.2: a bare CR outside a CRLF MUST be rejected (or replaced; we reject). */
	if (memchr(b + p->scan, '\r', *cr - p->scan))
		return fail(p, E_PARSE, 400, "bare CR in %s", what);
	return 1;
}

/* "HTTP/1.0" or "HTTP/1.1" -> minor version; RFC 9112 §2.3. */
static int parse_version(struct http1_parser *p, const uint8_t *s, size_t n)
{
	if (n != 8 || memcmp(s, "HTTP/", 5) != 0 || s[5] < '0' || s[5] > '9' || s[6] != '.' ||
	    s[7] < '0' || s[7] > '9')
		return fail(p, E_PARSE, 400, "malformed HTTP version");
	if (s[5] != '1' || (s[7] != '0' && s[7] != '1'))
		return fail(p, E_UNSUPP, 505, "unsupported HTTP version '%.8s'", (const char *)s);
	p->msg.version = s[7] - '0';
	return 0;
}

/* RFC 9112 §3.2: the request-target form depends on the method. */
static int check_target(struct http1_parser *p, const uint8_t *t, size_t n)
{
	enum http1_method m = p->msg.method;
	size_t i, colon = n;

	if (m == HTTP1_M_CONNECT) {
		/* authority-form: host ":" port (§3.2.3). */
		for (i = 0; i < n; i++) {
			if (!h1_is(t[i], H1C_HOST) || t[i] == '/')
				return fail(p, E_PARSE, 400,
					    "CONNECT target is not authority-form");
			if (t[i] == ':')
				colon = i;
		}
		if (colon == 0 || colon + 1 >= n)
			return fail(p, E_PARSE, 400, "CONNECT target lacks host or port");
		for (i = colon + 1; i < n; i++) {
			if (t[i] < '0' || t[i] > '9')
				return fail(p, E_PARSE, 400, "CONNECT target has an invalid port");
		}
		return 0;
	}
	if (n == 1 && t[0] == '*') {
		if (m != HTTP1_M_OPTIONS)
			return fail(p, E_PARSE, 400,
				    "asterisk-form target with a method other than OPTIONS");
		return 0;
	}
	if (t[0] == '/')
		return 0;
	/* absolute-form: scheme ":" ... (RFC 3986 §3.1). */
	if (!((t[0] | 0x20) >= 'a' && (t[0] | 0x20) <= 'z'))
		return fail(p, E_PARSE, 400, "request-target is neither origin- nor absolute-form");
	for (i = 1; i < n && t[i] != ':'; i++) {
		uint8_t c = t[i];
		if (!(((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '-' || c == '.'))
			return fail(p, E_PARSE, 400,
				    "request-target is neither origin- nor absolute-form");
	}
	if (i + 1 >= n)
		return fail(p, E_PARSE, 400, "request-target is neither origin- nor absolute-form");
	return 0;
}

/* request-line = method SP request-target SP HTTP-version (RFC 9112 §3), exactly one SP each. */
static int parse_request_line(struct http1_parser *p, const uint8_t *l, size_t n)
{
	size_t i = 0, t;
	int r;

	while (i < n && h1_is(l[i], H1C_TOKEN))
		i++;
	if (i == 0)
		return fail(p, E_PARSE, 400, "invalid character 0x%02x at start of request-line",
			    l[0]);
	if (i == n)
		return fail(p, E_PARSE, 400, "request-line has no request-target");
	if (l[i] != ' ')
		return fail(p, E_PARSE, 400, "invalid character 0x%02x in method", l[i]);
	p->m_off = 0;
	p->m_len = i;
	p->msg.method = http1_method_parse((struct slice){l, i});
	t = ++i;
	while (i < n && h1_is(l[i], H1C_TARGET))
		i++;
	if (i == t)
		return fail(p, E_PARSE, 400, "empty request-target or extra whitespace");
	if (i == n)
		return fail(p, E_PARSE, 400, "request-line has no HTTP version");
	if (l[i] != ' ')
		return fail(p, E_PARSE, 400, "invalid character 0x%02x in request-target", l[i]);
	p->t_off = t;
	p->t_len = i - t;
	/* The version first: "PRI * HTTP/2.0" is a 505, not a bad asterisk-form. */
	r = parse_version(p, l + i + 1, n - i - 1);
	if (r < 0)
		return r;
	return check_target(p, l + t, i - t);
}

/* status-line = HTTP-version SP status-code SP [reason-phrase] (RFC 9112 §4). */
static int parse_status_line(struct http1_parser *p, const uint8_t *l, size_t n)
{
	int r;

	if (n < 12 || l[8] != ' ')
		return fail(p, E_PARSE, 400, "malformed status-line");
	r = parse_version(p, l, 8);
	if (r < 0)
		return r;
	for (int i = 9; i < 12; i++) {
		if (l[i] < '0' || l[i] > '9')
			return fail(p, E_PARSE, 400, "non-digit in status code");
	}
	p->msg.status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	if (p->msg.status < 100 || p->msg.status > 599)
		return fail(p, E_PARSE, 400, "status code %d out of range 100..599", p->msg.status);
	/* Leniency: "HTTP/1.1 200" without the SP before an empty reason is accepted. */
	if (n == 12)
		return 0;
	if (l[12] != ' ')
		return fail(p, E_PARSE, 400, "malformed status-line");
	for (size_t i = 13; i < n; i++) {
		if (!h1_is(l[i], H1C_FIELD))
			return fail(p, E_PARSE, 400, "invalid character 0x%02x in reason phrase",
				    l[i]);
	}
	p->r_off = 13;
	p->r_len = n - 13;
	return 0;
}

static int on_content_length(struct http1_parser *p, const uint8_t *v, size_t n)
{
	size_t pos = 0, en;
	const uint8_t *ep;
	bool any = false;

	/* RFC 9110 §8.6: a list of identical values may be treated as one value. */
	while (h1_list_next(v, n, &pos, &ep, &en)) {
		uint64_t x = 0;

		if (en == 0)
			return fail(p, E_PARSE, 400, "empty Content-Length");
		for (size_t i = 0; i < en; i++) {
			if (ep[i] < '0' || ep[i] > '9')
				return fail(p, E_PARSE, 400, "non-digit in Content-Length");
			x = x * 10 + (uint64_t)(ep[i] - '0');
			if (x > H1_LEN_MAX)
				return fail(p, E_PARSE, 400, "Content-Length overflows");
		}
		if (p->msg.has_content_length && p->msg.content_length != x)
			return fail(p, E_PROTO, 400,
				    "duplicate Content-Length with different values");
		p->msg.has_content_length = true;
		p->msg.content_length = x;
		any = true;
	}
	if (!any)
		return fail(p, E_PARSE, 400, "empty Content-Length");
	return 0;
}

static void on_transfer_encoding(struct http1_parser *p, const uint8_t *v, size_t n)
{
	size_t pos = 0, en;
	const uint8_t *ep;
	char tmp[64];

	p->hflags |= HF_TE;
	while (h1_list_next(v, n, &pos, &ep, &en)) {
		if (en == 0)
			continue; /* RFC 9110 §5.6.1: empty list elements are ignored */
		if (h1_eq(ep, en, "chunked")) {
			p->te_chunked++;
			continue;
		}
		if (!(p->hflags & HF_TE_OTHER)) {
			/* Kept as the pending reason; reported after stronger errors at head end.
			 */
			snprintf(p->reason, sizeof(p->reason), "unsupported transfer coding '%s'",
				 printable(tmp, sizeof(tmp), ep, en));
		}
		p->hflags |= HF_TE_OTHER;
	}
}

static void on_connection(struct http1_parser *p, const uint8_t *v, size_t n)
{
	size_t pos = 0, en;
	const uint8_t *ep;

	while (h1_list_next(v, n, &pos, &ep, &en)) {
		if (h1_eq(ep, en, "close"))
			p->hflags |= HF_CONN_CLOSE;
		else if (h1_eq(ep, en, "keep-alive"))
			p->hflags |= HF_CONN_KEEPALIVE;
		else if (h1_eq(ep, en, "upgrade"))
			p->hflags |= HF_CONN_UPGRADE;
		else if (en)
			p->msg.connection_options = true; /* http1_is_hop_by_hop looks further */
	}
}

/* Records what framing and connection management need from one header field. */
static int on_field(struct http1_parser *p, const uint8_t *b, size_t name_off, size_t name_len,
		    size_t v_off, size_t v_len)
{
	const uint8_t *name = b + name_off, *v = b + v_off;

	switch (h1_lower(name[0])) {
	case 'c':
		if (h1_eq(name, name_len, "content-length"))
			return on_content_length(p, v, v_len);
		if (h1_eq(name, name_len, "connection"))
			on_connection(p, v, v_len);
		break;
	case 't':
		if (h1_eq(name, name_len, "transfer-encoding"))
			on_transfer_encoding(p, v, v_len);
		break;
	case 'h':
		if (p->kind != HTTP1_REQUEST || !h1_eq(name, name_len, "host"))
			break;
		if (++p->host_count > 1)
			return fail(p, E_PROTO, 400, "multiple Host headers");
		for (size_t i = 0; i < v_len; i++) {
			if (!h1_is(v[i], H1C_HOST))
				return fail(p, E_PARSE, 400, "invalid character 0x%02x in Host",
					    v[i]);
		}
		p->h_off = v_off;
		p->h_len = v_len;
		break;
	case 'u':
		if (h1_eq(name, name_len, "upgrade"))
			p->hflags |= HF_UPGRADE;
		break;
	case 'e':
		if (h1_eq(name, name_len, "expect") && h1_eq(v, v_len, "100-continue"))
			p->hflags |= HF_EXPECT;
		break;
	default: break;
	}
	return 0;
}

/* field-line = field-name ":" OWS field-value OWS (RFC 9112 §5, RFC 9110 §5.5). */
static int parse_field_line(struct http1_parser *p, const uint8_t *b, size_t off, size_t n,
			    bool trailer)
{
	const uint8_t *l = b + off;
	const char *sect = trailer ? "trailer" : "header";
	char nm[64];
	size_t i = 0, v, e;
#define NM printable(nm, sizeof(nm), l, i)

	if (h1_ows(l[0])) {
		/* RFC 9112 §5.2 obs-fold and §2.2 whitespace after the start-line: reject. */
		if (p->nfields == 0)
			return fail(p, E_PARSE, 400, "whitespace before the first %s field", sect);
		return fail(p, E_PARSE, 400, "obs-fold in %s '%s'", sect,
			    printable(nm, sizeof(nm), b + p->last_name_off, p->last_name_len));
	}
	while (i < n && h1_is(l[i], H1C_TOKEN))
		i++;
	if (i == n)
		return fail(p, E_PARSE, 400, "missing colon in %s field '%s'", sect, NM);
	if (h1_ows(l[i])) /* RFC 9112 §5.1: MUST reject with 400 */
		return fail(p, E_PARSE, 400, "whitespace between %s name and colon in '%s'", sect,
			    NM);
	if (l[i] != ':')
		return fail(p, E_PARSE, 400, "invalid character 0x%02x in %s name '%s'", l[i], sect,
			    NM);
	if (i == 0)
		return fail(p, E_PARSE, 400, "empty %s name", sect);
	v = i + 1;
	e = n;
	while (v < e && h1_ows(l[v]))
		v++;
	while (e > v && h1_ows(l[e - 1]))
		e--;
	/* RFC 9110 §5.5: CR, LF and NUL MUST be rejected (or replaced); we reject all CTLs. */
	for (size_t k = v; k < e; k++) {
		if (l[k] == 0)
			return fail(p, E_PARSE, 400, "NUL in %s '%s'", sect, NM);
		if (!h1_is(l[k], H1C_FIELD))
			return fail(p, E_PARSE, 400, "control character 0x%02x in %s '%s'", l[k],
				    sect, NM);
	}
#undef NM
	if (++p->nfields > p->lim.max_fields)
		return fail(p, E_LIMIT, 431, "more than %u %s fields", p->lim.max_fields, sect);
	p->last_name_off = off;
	p->last_name_len = i;
	if (trailer)
		return 0;
	return on_field(p, b, off, i, off + v, e - v);
}

/* Chooses the body framing once the whole head is known (RFC 9112 §6.1, §6.3). */
static int decide_framing(struct http1_parser *p)
{
	struct http1_msg *m = &p->msg;
	bool te = (p->hflags & HF_TE) != 0;
	int st = m->status;

	if (te && m->has_content_length)
		return fail(p, E_PROTO, 400, "both Content-Length and Transfer-Encoding");
	if (te && m->version == 0)
		return fail(p, E_PROTO, 400, "Transfer-Encoding in an HTTP/1.0 message");
	if (p->hflags & HF_TE_OTHER) { /* reason prepared by on_transfer_encoding() */
		char why[sizeof(p->reason)];
		memcpy(why, p->reason, sizeof(why));
		return fail(p, E_UNSUPP, 501, "%s", why);
	}
	if (te && p->te_chunked == 0)
		return fail(p, E_PARSE, 400, "empty Transfer-Encoding");
	if (p->te_chunked > 1) /* RFC 9112 §7: chunked MUST NOT be applied more than once */
		return fail(p, E_PARSE, 400, "chunked applied more than once");

	if (p->kind == HTTP1_REQUEST) {
		if (m->version == 1 && p->host_count == 0) /* RFC 9112 §3.2 */
			return fail(p, E_PARSE, 400, "missing Host header");
		if (m->method == HTTP1_M_CONNECT) {
			if (te || (m->has_content_length && m->content_length > 0))
				return fail(p, E_PROTO, 400, "CONNECT request with content");
			m->framing = HTTP1_FRAMING_TUNNEL;
		} else if (te) {
			m->framing = HTTP1_FRAMING_CHUNKED;
		} else if (m->has_content_length) {
			m->framing = HTTP1_FRAMING_LENGTH;
		}
		m->upgrade = m->version == 1 && (p->hflags & HF_UPGRADE) &&
			     (p->hflags & HF_CONN_UPGRADE);
		/* RFC 9110 §10.1.1: ignore 100-continue from HTTP/1.0 clients. */
		m->expect_continue = m->version == 1 && (p->hflags & HF_EXPECT);
	} else if (st == 101) {
		m->framing = HTTP1_FRAMING_TUNNEL;
		m->upgrade = true;
	} else if (m->method == HTTP1_M_HEAD || st < 200 || st == 204 || st == 304) {
		m->framing = HTTP1_FRAMING_NONE;
	} else if (m->method == HTTP1_M_CONNECT && st < 300) {
		m->framing = HTTP1_FRAMING_TUNNEL;
	} else if (te) {
		m->framing = HTTP1_FRAMING_CHUNKED;
	} else if (m->has_content_length) {
		m->framing = HTTP1_FRAMING_LENGTH;
	} else {
		m->framing = HTTP1_FRAMING_CLOSE;
	}
	if (m->framing == HTTP1_FRAMING_LENGTH && p->lim.max_body &&
	    m->content_length > p->lim.max_body)
		return fail(p, E_LIMIT, 413, "Content-Length %llu exceeds the body limit of %llu",
			    (unsigned long long)m->content_length,
			    (unsigned long long)p->lim.max_body);
	/* RFC 9112 §9.3 persistence. */
	if (p->hflags & HF_CONN_CLOSE)
		m->keep_alive = false;
	else if (m->version == 1)
		m->keep_alive = true;
	else
		m->keep_alive = (p->hflags & HF_CONN_KEEPALIVE) != 0;
	if (m->framing == HTTP1_FRAMING_CLOSE || m->framing == HTTP1_FRAMING_TUNNEL)
		m->keep_alive = false;
	p->msg_upgrade = m->framing == HTTP1_FRAMING_TUNNEL || m->upgrade;
	return 0;
}

static void emit_head(struct http1_parser *p, const uint8_t *b, size_t raw_end,
		      struct http1_event *ev)
{
	struct http1_msg *m = &p->msg;

	if (p->kind == HTTP1_REQUEST) {
		m->method_raw = (struct slice){b + p->m_off, p->m_len};
		m->target = (struct slice){b + p->t_off, p->t_len};
		m->host = (struct slice){b + p->h_off, p->h_len};
	} else {
		m->reason = (struct slice){b + p->r_off, p->r_len};
	}
	m->headers.raw = (struct slice){b + p->fields_off, raw_end - p->fields_off};
	m->headers.count = p->nfields;
	switch (m->framing) {
	case HTTP1_FRAMING_LENGTH:
		p->remaining = m->content_length;
		p->st = m->content_length ? ST_BODY_LEN : ST_END_PENDING;
		break;
	case HTTP1_FRAMING_CHUNKED: p->st = ST_CHUNK_LINE; break;
	case HTTP1_FRAMING_CLOSE: p->st = ST_BODY_CLOSE; break;
	case HTTP1_FRAMING_TUNNEL: p->st = ST_UPG_PENDING; break;
	default: p->st = ST_END_PENDING; break;
	}
	p->scan = p->seek = 0;
	ev->type = HTTP1_EV_HEAD;
}

/* Validates complete lines of the head as they arrive; emits HEAD at the empty line. */
static int do_head(struct http1_parser *p, const uint8_t *b, size_t len, struct http1_event *ev,
		   size_t *used)
{
	bool req = p->kind == HTTP1_REQUEST;

	for (;;) {
		bool start = !(p->hflags & HF_START_DONE);
		size_t cr;
		int r = next_line(p, b, len, start ? p->lim.max_line : p->lim.max_head, &cr,
				  start ? (req ? "request-line" : "status-line")
					: "header section");

		if (r < 0)
			return r;
		if (r == 0)
			return 0;
		if (r == LINE_TOO_LONG && start)
			return fail(p, E_LIMIT, req ? 414 : 400, "%s longer than %u bytes",
				    req ? "request-line" : "status-line", p->lim.max_line);
		if (r == LINE_TOO_LONG)
			return fail(p, E_LIMIT, 431, "header section larger than %u bytes",
				    p->lim.max_head);
		if (start) {
			r = req ? parse_request_line(p, b, cr) : parse_status_line(p, b, cr);
			p->hflags |= HF_START_DONE;
			p->fields_off = cr + 2;
		} else {
			if (cr == p->scan) {
				r = decide_framing(p);
				if (r < 0)
					return r;
				emit_head(p, b, cr, ev);
				*used = cr + 2;
				return 0;
			}
			r = parse_field_line(p, b, p->scan, cr - p->scan, false);
		}
		if (r < 0)
			return r;
		p->scan = cr + 2;
	}
}

/* chunk = chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1); extensions are checked, then ignored:
 * chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] ). */
static int parse_chunk_ext(struct http1_parser *p, const uint8_t *l, size_t i, size_t n)
{
	for (;;) {
		size_t ws = i;

		while (i < n && h1_ows(l[i]))
			i++;
		if (i == n && i == ws)
			return 0;
		/* BWS is only allowed before ';' (trailing whitespace is refused). */
		if (i == n || l[i++] != ';')
			goto bad;
		while (i < n && h1_ows(l[i]))
			i++;
		if (i == n || !h1_is(l[i], H1C_TOKEN))
			goto bad;
		while (i < n && h1_is(l[i], H1C_TOKEN))
			i++;
		ws = i;
		while (i < n && h1_ows(l[i]))
			i++;
		if (i == n || l[i] != '=') {
			i = ws; /* re-checked at the top: only ';' may follow BWS */
			continue;
		}
		i++;
		while (i < n && h1_ows(l[i]))
			i++;
		if (i < n && l[i] == '"') {
			for (i++; i < n && l[i] != '"'; i++) {
				if (l[i] == '\\' && i + 1 < n && h1_is(l[i + 1], H1C_FIELD))
					i++;
				else if (!h1_is(l[i], H1C_QDTEXT))
					goto bad;
			}
			if (i == n)
				goto bad;
			i++;
		} else {
			if (i == n || !h1_is(l[i], H1C_TOKEN))
				goto bad;
			while (i < n && h1_is(l[i], H1C_TOKEN))
				i++;
		}
	}
bad:
	return fail(p, E_PARSE, 400, "invalid chunk extension");
}

static int do_chunk_line(struct http1_parser *p, const uint8_t *b, size_t len, size_t *used)
{
	uint64_t size = 0;
	size_t cr, i = 0, digits = 0;
	int r = next_line(p, b, len, p->lim.max_chunk_line, &cr, "chunk-size line");

	if (r < 0)
		return r;
	if (r == LINE_TOO_LONG)
		return fail(p, E_LIMIT, 400, "chunk-size line longer than %u bytes",
			    p->lim.max_chunk_line);
	if (r == 0)
		return 0;
	while (i < cr && h1_is(b[i], H1C_HEX)) {
		uint8_t c = h1_lower(b[i++]);
		if (size == 0 && c == '0')
			continue; /* leading zeros do not count towards the digit limit */
		if (++digits > H1_CHUNK_DIGITS_MAX)
			return fail(p, E_PARSE, 400, "chunk size overflows");
		size = size * 16 + (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
	}
	if (i == 0)
		return fail(p, E_PARSE, 400, "non-hex chunk size");
	if (i < cr && !h1_ows(b[i]) && b[i] != ';')
		return fail(p, E_PARSE, 400, "invalid character 0x%02x after chunk size", b[i]);
	r = parse_chunk_ext(p, b, i, cr);
	if (r < 0)
		return r;
	if (p->lim.max_body && size > p->lim.max_body - p->body_total)
		return fail(p, E_LIMIT, 413, "chunked body exceeds the body limit of %llu",
			    (unsigned long long)p->lim.max_body);
	*used = cr + 2;
	p->scan = p->seek = 0;
	p->remaining = size;
	if (size == 0) {
		p->nfields = 0;
		p->st = ST_TRAILERS;
	} else {
		p->st = ST_CHUNK_DATA;
	}
	return 0;
}

/* trailer-section = *( field-line CRLF ) CRLF (RFC 9112 §7.1.2); held to header rules. */
static int do_trailers(struct http1_parser *p, const uint8_t *b, size_t len, struct http1_event *ev,
		       size_t *used)
{
	for (;;) {
		size_t cr;
		int r = next_line(p, b, len, p->lim.max_head, &cr, "trailer section");

		if (r < 0)
			return r;
		if (r == 0)
			return 0;
		if (r == LINE_TOO_LONG)
			return fail(p, E_LIMIT, 431, "trailer section larger than %u bytes",
				    p->lim.max_head);
		if (cr == p->scan) {
			ev->trailers.raw = (struct slice){b, cr};
			ev->trailers.count = p->nfields;
			*used = cr + 2;
			p->st = ST_END_PENDING;
			return 1;
		}
		r = parse_field_line(p, b, p->scan, cr - p->scan, true);
		if (r < 0)
			return r;
		p->scan = cr + 2;
	}
}

/* Emits the END (or UPGRADE) of the current message and prepares for the next one. */
static void end_message(struct http1_parser *p, struct http1_event *ev)
{
	struct http1_msg *m = &p->msg;
	bool interim = p->kind == HTTP1_RESPONSE && m->status >= 100 && m->status < 200 &&
		       m->status != 101;

	ev->type = HTTP1_EV_END;
	if (p->msg_upgrade) {
		ev->type = HTTP1_EV_UPGRADE;
		p->st = ST_UPGRADED;
	} else if (interim) {
		p->st = ST_IDLE; /* the final response answers the same request */
		return;
	} else {
		p->st = m->keep_alive ? ST_IDLE : ST_CLOSED;
	}
	p->req_method = HTTP1_M_GET;
}

/* Emits up to `avail` body bytes at b (limited by p->remaining when `bounded`). */
static int body_piece(struct http1_parser *p, const uint8_t *b, size_t avail, bool bounded,
		      struct http1_event *ev, size_t *used)
{
	size_t k = avail;

	if (bounded && (uint64_t)k > p->remaining)
		k = (size_t)p->remaining;
	if (k == 0)
		return 0;
	if (!bounded && p->lim.max_body && k > p->lim.max_body - p->body_total) {
		/* Deliver up to the limit first so every split of the input fails the same way. */
		k = (size_t)(p->lim.max_body - p->body_total);
		if (k == 0)
			return fail(p, E_LIMIT, 413, "body exceeds the limit of %llu bytes",
				    (unsigned long long)p->lim.max_body);
	}
	p->body_total += k;
	if (bounded)
		p->remaining -= k;
	ev->type = HTTP1_EV_BODY;
	ev->data = (struct slice){b, k};
	*used += k;
	return 0;
}

static void clear_slices(struct http1_msg *m)
{
	m->method_raw = m->target = m->host = m->reason = (struct slice){NULL, 0};
	m->headers.raw = (struct slice){NULL, 0};
}

int http1_parser_push(struct http1_parser *p, const uint8_t *data, size_t len,
		      struct http1_event *ev)
{
	size_t used = 0;
	int r = 0;

	static const uint8_t none[1];

	memset(ev, 0, sizeof(*ev));
	if (p->st == ST_ERROR)
		return p->err;
	clear_slices(&p->msg);
	if (!data) /* (NULL, 0) is allowed; avoid arithmetic on a null pointer */
		data = none;
	if (len > INT_MAX) /* the return value counts consumed bytes */
		len = INT_MAX;
	while (r >= 0 && ev->type == HTTP1_EV_NONE) {
		const uint8_t *b = data + used;
		size_t n = len - used, k = 0;

		switch (p->st) {
		case ST_IDLE:
			if (n == 0 || (n == 1 && b[0] == '\r'))
				return (int)used;
			if (b[0] == '\n')
				return fail(p, E_PARSE, 400, "bare LF before message");
			if (b[0] == '\r' && b[1] != '\n')
				return fail(p, E_PARSE, 400, "bare CR before message");
			if (b[0] == '\r') {
				used += 2;
				continue;
			}
			begin_message(p);
			continue;
		case ST_HEAD:
			r = do_head(p, b, n, ev, &k);
			used += k;
			if (r >= 0 && ev->type == HTTP1_EV_NONE)
				return (int)used;
			break;
		case ST_END_PENDING: end_message(p, ev); break;
		case ST_UPG_PENDING: end_message(p, ev); break;
		case ST_BODY_LEN:
			r = body_piece(p, b, n, true, ev, &used);
			if (p->remaining == 0)
				p->st = ST_END_PENDING;
			if (ev->type == HTTP1_EV_NONE)
				return r < 0 ? r : (int)used;
			break;
		case ST_BODY_CLOSE:
			r = body_piece(p, b, n, false, ev, &used);
			if (r >= 0 && ev->type == HTTP1_EV_NONE)
				return (int)used;
			break;
		case ST_CHUNK_LINE:
			r = do_chunk_line(p, b, n, &k);
			if (r >= 0 && k == 0)
				return (int)used;
			used += k;
			break;
		case ST_CHUNK_DATA:
			r = body_piece(p, b, n, true, ev, &used);
			if (p->remaining == 0)
				p->st = ST_CHUNK_CRLF;
			if (r >= 0 && ev->type == HTTP1_EV_NONE)
				return (int)used;
			break;
		case ST_CHUNK_CRLF:
			if (n >= 1 && b[0] != '\r')
				return fail(p, E_PARSE, 400, "missing CRLF after chunk data");
			if (n >= 2 && b[1] != '\n')
				return fail(p, E_PARSE, 400, "missing CRLF after chunk data");
			if (n < 2)
				return (int)used;
			used += 2;
			p->st = ST_CHUNK_LINE;
			break;
		case ST_TRAILERS:
			r = do_trailers(p, b, n, ev, &k);
			if (r == 0)
				return (int)used;
			if (r > 0) {
				/* Deliver END together with the trailers it consumed. */
				used += k;
				end_message(p, ev);
				r = 0;
			}
			break;
		default: /* UPGRADED, CLOSED: the bytes are not ours */ return (int)used;
		}
	}
	if (r < 0)
		return r;
	ev->msg = &p->msg;
	return (int)used;
}

int http1_parser_eof(struct http1_parser *p, struct http1_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	clear_slices(&p->msg);
	switch (p->st) {
	case ST_ERROR: return p->err;
	case ST_IDLE:
	case ST_UPGRADED:
	case ST_CLOSED: p->st = ST_CLOSED; return 0;
	case ST_BODY_CLOSE:
	case ST_END_PENDING:
	case ST_UPG_PENDING:
		end_message(p, ev);
		ev->msg = &p->msg;
		p->st = ST_CLOSED;
		return 0;
	case ST_HEAD: return fail(p, E_CLOSED, 400, "connection closed in message head");
	case ST_BODY_LEN:
		return fail(p, E_CLOSED, 400, "connection closed in body, %llu bytes missing",
			    (unsigned long long)p->remaining);
	default: return fail(p, E_CLOSED, 400, "connection closed in chunked body");
	}
}

void http1_parser_set_method(struct http1_parser *p, enum http1_method m)
{
	p->req_method = m;
}

int http1_parser_resume(struct http1_parser *p)
{
	if (p->st != ST_UPGRADED)
		return -E_STATE;
	p->st = ST_IDLE;
	p->req_method = HTTP1_M_GET;
	return 0;
}

enum http1_state http1_parser_state(const struct http1_parser *p)
{
	switch (p->st) {
	case ST_IDLE: return HTTP1_STATE_IDLE;
	case ST_HEAD: return HTTP1_STATE_HEAD;
	case ST_UPGRADED: return HTTP1_STATE_UPGRADED;
	case ST_CLOSED: return HTTP1_STATE_CLOSED;
	case ST_ERROR: return HTTP1_STATE_ERROR;
	default: return HTTP1_STATE_BODY;
	}
}

const char *http1_parser_reason(const struct http1_parser *p)
{
	return p->st == ST_ERROR ? p->reason : "";
}

int http1_parser_status(const struct http1_parser *p)
{
	return p->st == ST_ERROR ? p->err_status : 0;
}
