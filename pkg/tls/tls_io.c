/* The fd adapter: moves ciphertext between a non-blocking socket and the engine's own buffers. */
#include "pkg/tls/tls_int.h"

#include "pkg/net/net.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Engine rounds (stash, write, read) per pump: enough for a handshake flight, while one
 * connection flooding us with tiny records cannot hold the loop for long. */
#define TLS_IO_ROUNDS 16

static int io_fail(struct tls_conn *c, int e, const char *op)
{
	tls_conn_fail(c, TLS_ERR_IO, "%s: %s", op, strerror(e));
	return net_err_from_errno(e);
}

/* Bytes read past the previous record go in before the socket is read again. */
static bool stash_feed(struct tls_conn *c)
{
	bool fed = false;

	while (c->stash_len) {
		size_t cap;
		uint8_t *buf = tls_conn_cipher_wbuf(c, &cap);
		size_t k;

		if (!buf)
			break;
		k = MIN(cap, (size_t)c->stash_len);
		memcpy(buf, c->stash + c->stash_off, k);
		c->stash_off = (uint16_t)(c->stash_off + k);
		c->stash_len = (uint16_t)(c->stash_len - k);
		tls_conn_cipher_commit(c, k);
		fed = true;
	}
	if (!c->stash_len)
		c->stash_off = 0;
	return fed;
}

static ssize_t sock_send(int fd, const void *p, size_t n)
{
	ssize_t r;

	do
		r = send(fd, p, n, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno == ENOTSOCK) {
		do
			r = write(fd, p, n);
		while (r < 0 && errno == EINTR);
	}
	return r;
}

/* Sends what the engine has: 1 when all of it went, 0 when the socket is full, -E_* on error. */
static int flush_out(struct tls_conn *c, struct ev_io *io)
{
	for (;;) {
		size_t len;
		const uint8_t *p = tls_conn_pull_cipher(c, &len);
		ssize_t n;

		if (!p)
			return 1;
		n = sock_send(io->fd, p, len);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ev_io_clear_ready(io, EV_WRITE);
				return 0;
			}
			return io_fail(c, errno, "send");
		}
		tls_conn_cipher_done(c, (size_t)n);
		if ((size_t)n < len) {
			ev_io_clear_ready(io, EV_WRITE);
			return 0;
		}
	}
}

/* One readv(), when the socket may have data (ev_io_may_read): the rest of the record the engine is
 * assembling (it asks for exactly that), and up to TLS_IO_STASH_SIZE bytes after it, which normally
 * hold the next record header. Bulk data costs one syscall per 16 KiB record and no copy; small
 * records arrive several at a time through the stash. Returns 1 on progress (data or EOF), 0 if
 * nothing, -E_* on error. */
static int fill_in(struct tls_conn *c, struct ev_io *io)
{
	struct iovec iov[2];
	size_t cap, k;
	uint8_t *buf;
	ssize_t n;

	if (c->stash_len || c->rd_eof || !ev_io_may_read(io))
		return 0;
	buf = tls_conn_cipher_wbuf(c, &cap);
	if (!buf)
		return 0;
	iov[0] = (struct iovec){buf, cap};
	iov[1] = (struct iovec){c->stash, sizeof(c->stash)};
	do
		n = readv(io->fd, iov, 2);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			ev_io_clear_ready(io, EV_READ);
			return 0;
		}
		return io_fail(c, errno, "read");
	}
	if (n == 0) {
		c->rd_eof = true;
		return 1;
	}
	k = MIN((size_t)n, cap);
	c->stash_off = 0;
	c->stash_len = (uint16_t)((size_t)n - k);
	tls_conn_cipher_commit(c, k);
	if ((size_t)n < cap + sizeof(c->stash))
		ev_io_short_read(io);
	return 1;
}

/* The socket's EOF counts once everything read before it went into the engine and the engine
 * asks for more (so plaintext already decrypted is still delivered first). */
static void eof_apply(struct tls_conn *c)
{
	size_t cap;

	if (c->rd_eof && !c->stash_len && tls_conn_cipher_wbuf(c, &cap))
		tls_conn_push_eof(c);
}

int tls_io_pump(struct tls_conn *c, struct ev_io *io)
{
	int r;

	for (int round = 0; round < TLS_IO_ROUNDS; round++) {
		bool progress = stash_feed(c);

		r = flush_out(c, io);
		if (r < 0)
			return r;
		r = fill_in(c, io);
		if (r < 0)
			return r;
		progress = progress || r > 0;
		eof_apply(c);
		if (!progress)
			break;
	}
	r = flush_out(c, io);
	if (r < 0)
		return r;
	return (int)c->st;
}

unsigned tls_io_interest(const struct tls_conn *c)
{
	unsigned ev = 0;

	if (c->st & TLS_ST_CIPHER_OUT)
		ev |= EV_WRITE;
	if ((c->st & TLS_ST_CIPHER_IN) && !c->rd_eof && !c->stash_len)
		ev |= EV_READ;
	return ev;
}

/* A failed conn may still owe the peer an alert: one best-effort write before reporting. */
static ssize_t failed(struct tls_conn *c, struct ev_io *io)
{
	int e = tls_error_class(tls_conn_error(c));

	flush_out(c, io);
	return e ? -e : -E_STATE; /* E_STATE: a conn that never started */
}

ssize_t tls_io_read_peek(struct tls_conn *c, struct ev_io *io, const uint8_t **p)
{
	*p = NULL;
	for (int pass = 0;; pass++) {
		size_t len;
		const uint8_t *src = tls_conn_pull_plain(c, &len);
		int r;

		if (src) {
			*p = src;
			return (ssize_t)len;
		}
		if (c->st & TLS_ST_ERROR)
			return failed(c, io);
		if (c->st & (TLS_ST_EOF | TLS_ST_CLOSED)) {
			flush_out(c, io); /* our answering close_notify */
			return 0;
		}
		if (pass)
			return -E_AGAIN;
		r = tls_io_pump(c, io);
		if (r < 0)
			return r;
	}
}

ssize_t tls_io_read(struct tls_conn *c, struct ev_io *io, void *p, size_t n)
{
	const uint8_t *src;
	ssize_t r = tls_io_read_peek(c, io, &src);
	size_t k;

	if (r <= 0)
		return r;
	k = MIN((size_t)r, n);
	memcpy(p, src, k);
	tls_conn_plain_done(c, k);
	return (ssize_t)k;
}

static ssize_t io_write(struct tls_conn *c, struct ev_io *io, const void *p, size_t n, bool flush)
{
	const uint8_t *src = p;
	size_t done = 0;
	int r;

	if (c->st & TLS_ST_ERROR)
		return failed(c, io);
	if ((c->st & TLS_ST_CLOSED) || c->close_sent)
		return -E_CLOSED;
	if (!(c->st & TLS_ST_DONE)) {
		/* Still in the handshake: move it on, it may finish right here. */
		r = tls_io_pump(c, io);
		if (r < 0)
			return r;
		if (c->st & TLS_ST_ERROR)
			return failed(c, io);
	}
	for (;;) {
		done += tls_conn_push_plain(c, src + done, n - done);
		if (done == n || !(c->st & TLS_ST_DONE))
			break;
		/* The engine holds a full record: put it on the wire to make room. */
		r = flush_out(c, io);
		if (r < 0)
			return done ? (ssize_t)done : r;
		if (r == 0 || !(c->st & TLS_ST_PLAIN_OUT))
			break;
	}
	if (flush)
		tls_conn_flush(c);
	r = flush_out(c, io);
	if (r < 0 && !done)
		return r;
	return done ? (ssize_t)done : -E_AGAIN;
}

ssize_t tls_io_write(struct tls_conn *c, struct ev_io *io, const void *p, size_t n)
{
	return io_write(c, io, p, n, true);
}

ssize_t tls_io_write_more(struct tls_conn *c, struct ev_io *io, const void *p, size_t n)
{
	return io_write(c, io, p, n, false);
}

int tls_io_flush(struct tls_conn *c, struct ev_io *io)
{
	int r;

	if (c->st & TLS_ST_ERROR)
		return (int)failed(c, io);
	if (!(c->st & TLS_ST_DONE) || (c->st & TLS_ST_CLOSED) || c->close_sent)
		return 0;
	tls_conn_flush(c);
	r = flush_out(c, io);
	return r < 0 ? r : 0;
}

int tls_io_shutdown(struct tls_conn *c, struct ev_io *io)
{
	int r;

	if (c->st & TLS_ST_ERROR)
		return (int)failed(c, io);
	tls_conn_close_notify(c);
	r = flush_out(c, io);
	if (r < 0)
		return r;
	return (c->st & TLS_ST_CIPHER_OUT) ? -E_AGAIN : 0;
}
