/* Bounded byte queue used for all socket I/O. */
#include "pkg/buf/buf.h"

#include "pkg/base/base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max ? max : SIZE_MAX;
}

void buf_fini(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->cap = b->rd = b->wr = 0;
}

void buf_reset(struct buf *b)
{
	b->rd = b->wr = 0;
}

void buf_compact(struct buf *b)
{
	if (b->rd == 0)
		return;
	if (b->wr > b->rd)
		memmove(b->data, b->data + b->rd, b->wr - b->rd);
	b->wr -= b->rd;
	b->rd = 0;
}

int buf_reserve(struct buf *b, size_t n)
{
	size_t need;
	size_t ncap;

	if (buf_wspace(b) >= n)
		return 0;
	if (b->rd == b->wr)
		b->rd = b->wr = 0;
	if (b->cap - buf_len(b) >= n) {
		buf_compact(b);
		return 0;
	}
	need = buf_len(b) + n;
	if (need < n || need > b->max)
		return -E_LIMIT;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? SIZE_MAX : ncap * 2;
	if (ncap > b->max)
		ncap = b->max;
	buf_compact(b);
	b->data = xrealloc(b->data, ncap);
	b->cap = ncap;
	return 0;
}

void buf_produce(struct buf *b, size_t n)
{
	if (n > buf_wspace(b))
		die("buf_produce past capacity (%zu > %zu)", n, buf_wspace(b));
	b->wr += n;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n > buf_len(b))
		die("buf_consume past end (%zu > %zu)", n, buf_len(b));
	b->rd += n;
	if (b->rd == b->wr)
		b->rd = b->wr = 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int r = buf_reserve(b, n);

	if (r < 0)
		return r;
	if (n)
		copy_short(buf_wptr(b), p, n);
	b->wr += n;
	return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	int r;

	va_copy(ap2, ap);
	n = vsnprintf((char *)buf_wptr(b), buf_wspace(b), fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -E_INVAL;
	if ((size_t)n < buf_wspace(b)) {
		b->wr += (size_t)n;
		return 0;
	}
	r = buf_reserve(b, (size_t)n + 1);
	if (r < 0)
		return r;
	vsnprintf((char *)buf_wptr(b), buf_wspace(b), fmt, ap);
	b->wr += (size_t)n;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

ssize_t buf_read_fd(struct buf *b, int fd, size_t want)
{
	ssize_t n;
	int r;

	if (want == 0) {
		want = buf_wspace(b);
		if (want < 1024) {
			size_t grow = MIN((size_t)16384, b->max - MIN(b->max, buf_len(b)));
			if (grow == 0)
				return -E_LIMIT;
			r = buf_reserve(b, grow);
			if (r < 0)
				return r;
			want = buf_wspace(b);
		}
	} else {
		r = buf_reserve(b, want);
		if (r < 0)
			return r;
	}
	do
		n = read(fd, buf_wptr(b), want);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? -E_AGAIN : -E_IO;
	b->wr += (size_t)n;
	return n;
}

ssize_t buf_write_fd(struct buf *b, int fd)
{
	ssize_t n;

	if (buf_len(b) == 0)
		return 0;
	do
		n = send(fd, buf_rptr(b), buf_len(b), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == ENOTSOCK) {
		do
			n = write(fd, buf_rptr(b), buf_len(b));
		while (n < 0 && errno == EINTR);
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -E_AGAIN;
		return (errno == EPIPE || errno == ECONNRESET) ? -E_CLOSED : -E_IO;
	}
	buf_consume(b, (size_t)n);
	return n;
}
