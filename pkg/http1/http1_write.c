/* HTTP/1.1 writer: start lines, validated fields, Content-Length and chunk framing. */
#include "pkg/http1/http1.h"
#include "pkg/http1/http1_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static bool is_token(struct slice s)
{
	if (s.n == 0)
		return false;
	for (size_t i = 0; i < s.n; i++) {
		if (!h1_is(s.p[i], H1C_TOKEN))
			return false;
	}
	return true;
}

/* RFC 9110 §5.5: never emit CR, LF, NUL or other CTLs in a value (header injection). */
static bool is_field_value(struct slice s)
{
	for (size_t i = 0; i < s.n; i++) {
		if (!h1_is(s.p[i], H1C_FIELD))
			return false;
	}
	return true;
}

/* snprintf into a small stack buffer, then buf_append (buf_printf on a never-allocated buf does
 * pointer arithmetic on NULL). */
__attribute__((format(printf, 2, 3))) static int append_fmt(struct buf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -E_INVAL;
	return buf_append(b, tmp, (size_t)n);
}

/* Undoes a partial write: content before `len0` survives any compaction by buf_reserve. */
static int rollback(struct buf *b, size_t len0, int r)
{
	b->wr = b->rd + len0;
	return r;
}

int http1_format_request_line(struct buf *b, struct slice method, struct slice target)
{
	size_t len0 = buf_len(b);
	int r;

	if (!is_token(method) || target.n == 0)
		return -E_INVAL;
	for (size_t i = 0; i < target.n; i++) {
		if (!h1_is(target.p[i], H1C_TARGET))
			return -E_INVAL;
	}
	if ((r = buf_append(b, method.p, method.n)) < 0 || (r = buf_append(b, " ", 1)) < 0 ||
	    (r = buf_append(b, target.p, target.n)) < 0 ||
	    (r = buf_append(b, " HTTP/1.1\r\n", 11)) < 0)
		return rollback(b, len0, r);
	return 0;
}

int http1_format_status_line(struct buf *b, int status, const char *reason)
{
	size_t len0 = buf_len(b);
	int r;

	if (status < 100 || status > 599)
		return -E_INVAL;
	if (!reason)
		reason = http1_reason(status);
	if (!is_field_value(http1_s(reason)))
		return -E_INVAL;
	if ((r = append_fmt(b, "HTTP/1.1 %03d ", status)) < 0 ||
	    (r = buf_append_str(b, reason)) < 0 || (r = buf_append(b, "\r\n", 2)) < 0)
		return rollback(b, len0, r);
	return 0;
}

int http1_format_field(struct buf *b, struct slice name, struct slice value)
{
	size_t len0 = buf_len(b);
	int r;

	if (!is_token(name) || !is_field_value(value))
		return -E_INVAL;
	if ((r = buf_append(b, name.p, name.n)) < 0 || (r = buf_append(b, ": ", 2)) < 0 ||
	    (r = buf_append(b, value.p, value.n)) < 0 || (r = buf_append(b, "\r\n", 2)) < 0)
		return rollback(b, len0, r);
	return 0;
}

int http1_format_field_str(struct buf *b, const char *name, const char *value)
{
	return http1_format_field(b, http1_s(name), http1_s(value));
}

int http1_format_length(struct buf *b, int64_t length)
{
	size_t len0 = buf_len(b);
	int r;

	if (length == HTTP1_LEN_NONE)
		return 0;
	if (length == HTTP1_LEN_CHUNKED)
		r = buf_append_str(b, "Transfer-Encoding: chunked\r\n");
	else if (length >= 0)
		r = append_fmt(b, "Content-Length: %" PRId64 "\r\n", length);
	else
		return -E_INVAL;
	if (r < 0)
		return rollback(b, len0, r);
	return 0;
}

int http1_format_end(struct buf *b)
{
	return buf_append(b, "\r\n", 2) < 0 ? -E_LIMIT : 0;
}

static int format_rest(struct buf *b, size_t len0, const struct http1_field *fields, size_t n,
		       int64_t length)
{
	int r = 0;

	for (size_t i = 0; i < n && r >= 0; i++)
		r = http1_format_field(b, fields[i].name, fields[i].value);
	if (r >= 0)
		r = http1_format_length(b, length);
	if (r >= 0)
		r = http1_format_end(b);
	if (r < 0)
		return rollback(b, len0, r);
	return 0;
}

int http1_format_request_head(struct buf *b, const char *method, const char *target,
			      const struct http1_field *fields, size_t nfields, int64_t length)
{
	size_t len0 = buf_len(b);
	int r = http1_format_request_line(b, http1_s(method), http1_s(target));

	if (r < 0)
		return r;
	return format_rest(b, len0, fields, nfields, length);
}

int http1_format_response_head(struct buf *b, int status, const char *reason,
			       const struct http1_field *fields, size_t nfields, int64_t length)
{
	size_t len0 = buf_len(b);
	int r = http1_format_status_line(b, status, reason);

	if (r < 0)
		return r;
	return format_rest(b, len0, fields, nfields, length);
}

int http1_format_chunk_head(struct buf *b, size_t n)
{
	size_t len0 = buf_len(b);

	if (n == 0)
		return -E_INVAL;
	int r = append_fmt(b, "%zx\r\n", n);

	if (r < 0)
		return rollback(b, len0, r);
	return 0;
}

int http1_format_chunk_end(struct buf *b)
{
	return http1_format_end(b);
}

int http1_format_chunk(struct buf *b, const void *data, size_t n)
{
	size_t len0 = buf_len(b);
	int r;

	if (n == 0)
		return 0;
	if ((r = http1_format_chunk_head(b, n)) < 0 || (r = buf_append(b, data, n)) < 0 ||
	    (r = http1_format_chunk_end(b)) < 0)
		return rollback(b, len0, r);
	return 0;
}

int http1_format_last_chunk(struct buf *b, const struct http1_field *trailers, size_t n)
{
	size_t len0 = buf_len(b);
	int r = buf_append(b, "0\r\n", 3);

	if (r < 0)
		return rollback(b, len0, r);
	return format_rest(b, len0, trailers, n, HTTP1_LEN_NONE);
}
