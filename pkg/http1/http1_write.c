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
	char line[16] = "HTTP/1.1 ";
	line[9] = (char)('0' + status / 100);
	line[10] = (char)('0' + status / 10 % 10);
	line[11] = (char)('0' + status % 10);
	line[12] = ' ';
	if ((r = buf_append(b, line, 13)) < 0 || (r = buf_append_str(b, reason)) < 0 ||
	    (r = buf_append(b, "\r\n", 2)) < 0)
		return rollback(b, len0, r);
	return 0;
}

int http1_format_field(struct buf *b, struct slice name, struct slice value)
{
	uint8_t *w;
	int r;

	if (!is_token(name) || !is_field_value(value))
		return -E_INVAL;
	/* One reservation, then the four pieces (a hot path of the waypoint). */
	if ((r = buf_reserve(b, name.n + value.n + 4)) < 0)
		return r;
	w = buf_wptr(b);
	copy_short(w, name.p, name.n);
	w += name.n;
	*w++ = ':';
	*w++ = ' ';
	copy_short(w, value.p, value.n);
	w += value.n;
	*w++ = '\r';
	*w++ = '\n';
	buf_produce(b, name.n + value.n + 4);
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
	else if (length >= 0) {
		char tmp[48] = "Content-Length: ";
		size_t n = 16 + str_u64(tmp + 16, (uint64_t)length);
		tmp[n++] = '\r';
		tmp[n++] = '\n';
		r = buf_append(b, tmp, n);
	} else
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
	char tmp[24];
	unsigned digits = 1;

	while (digits < 16 && (n >> (4 * digits)))
		digits++;
	str_hex(tmp, n, digits);
	tmp[digits] = '\r';
	tmp[digits + 1] = '\n';
	int r = buf_append(b, tmp, digits + 2);

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
