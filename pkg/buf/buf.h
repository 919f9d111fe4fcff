/* The one buffer type for socket I/O: a bounded, growable byte queue with read and write cursors.
 */
#ifndef AMBIENT_BUF_H
#define AMBIENT_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 *   data                rd               wr                cap
 *   |  consumed (free)  |  readable       |  writable       |
 * Growth never exceeds `max`: a protocol that would need more reports E_LIMIT instead.
 */
struct buf {
	uint8_t *data;
	size_t cap;
	size_t rd;
	size_t wr;
	size_t max; /* hard bound on cap; 0 = SIZE_MAX */
};

void buf_init(struct buf *b, size_t max);
void buf_fini(struct buf *b);
/* Drops all content, keeps the allocation. */
void buf_reset(struct buf *b);

/* Pointer arithmetic on a never-allocated (NULL) buffer is undefined, hence the checks. */
static inline const uint8_t *buf_rptr(const struct buf *b)
{
	return b->data ? b->data + b->rd : b->data;
}
static inline size_t buf_len(const struct buf *b)
{
	return b->wr - b->rd;
}
static inline uint8_t *buf_wptr(struct buf *b)
{
	return b->data ? b->data + b->wr : b->data;
}
static inline size_t buf_wspace(const struct buf *b)
{
	return b->cap - b->wr;
}

/* Ensures at least n writable bytes (compacting, then growing); -E_LIMIT past max. */
int buf_reserve(struct buf *b, size_t n);
/* Marks n bytes written at buf_wptr() as readable. */
void buf_produce(struct buf *b, size_t n);
/* Drops n readable bytes from the front. */
void buf_consume(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Moves readable bytes to the front. */
void buf_compact(struct buf *b);

/* Reads up to `want` bytes (0 = whatever fits, growing by up to 16 KiB) from fd.
 * Returns bytes read, 0 at EOF, -E_AGAIN when the fd would block, -E_LIMIT when full, -E_IO. */
ssize_t buf_read_fd(struct buf *b, int fd, size_t want);
/* Writes readable bytes to fd and consumes what was written. Returns bytes written (possibly 0),
 * -E_AGAIN if nothing could be written because the fd would block, -E_CLOSED on EPIPE, -E_IO. */
ssize_t buf_write_fd(struct buf *b, int fd);

#endif
