/* Error codes, error buffers and lists, checked allocation, time and randomness. */
#include "pkg/base/base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static const char *const err_names[E__COUNT] = {
	[E_OK] = "ok",
	[E_NOMEM] = "out of memory",
	[E_INVAL] = "invalid argument",
	[E_PARSE] = "parse error",
	[E_PROTO] = "protocol error",
	[E_LIMIT] = "limit exceeded",
	[E_IO] = "i/o error",
	[E_AGAIN] = "try again",
	[E_TIMEOUT] = "timeout",
	[E_CLOSED] = "closed",
	[E_NOTFOUND] = "not found",
	[E_EXIST] = "already exists",
	[E_PERM] = "not permitted",
	[E_DENIED] = "denied",
	[E_STATE] = "invalid state",
	[E_UNSUPP] = "not supported",
	[E_CRYPTO] = "crypto error",
};

const char *err_str(int e)
{
	if (e < 0)
		e = -e;
	if (e >= E__COUNT)
		return "unknown error";
	return err_names[e];
}

int errbuf_set(struct errbuf *eb, int code, const char *fmt, ...)
{
	if (code < 0)
		code = -code;
	if (eb) {
		va_list ap;
		eb->code = code;
		va_start(ap, fmt);
		vsnprintf(eb->msg, sizeof(eb->msg), fmt, ap);
		va_end(ap);
	}
	return -code;
}

void errbuf_prefix(struct errbuf *eb, const char *fmt, ...)
{
	char pre[ERRBUF_SIZE];
	char old[ERRBUF_SIZE];
	va_list ap;

	if (!eb)
		return;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, eb->msg, sizeof(old));
	/* Truncation is acceptable: the message stays NUL-terminated and readable. */
	if (snprintf(eb->msg, sizeof(eb->msg), "%.*s: %.*s", 200, pre, ERRBUF_SIZE - 204, old) < 0)
		eb->msg[0] = '\0';
}

void errbuf_clear(struct errbuf *eb)
{
	if (!eb)
		return;
	eb->code = 0;
	eb->msg[0] = '\0';
}

void errlist_vadd(struct errlist *el, const char *fmt, va_list ap)
{
	char line[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	if (el->n == el->cap) {
		el->cap = el->cap ? el->cap * 2 : 8;
		el->items = xrealloc(el->items, el->cap * sizeof(*el->items));
	}
	el->items[el->n++] = xstrdup(line);
}

void errlist_add(struct errlist *el, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errlist_vadd(el, fmt, ap);
	va_end(ap);
}

void errlist_fini(struct errlist *el)
{
	for (size_t i = 0; i < el->n; i++)
		free(el->items[i]);
	free(el->items);
	el->items = NULL;
	el->n = el->cap = 0;
}

char *errlist_join(const struct errlist *el)
{
	size_t len = 1;
	char *out;
	char *p;

	for (size_t i = 0; i < el->n; i++)
		len += strlen(el->items[i]) + 1;
	out = xmalloc(len);
	p = out;
	for (size_t i = 0; i < el->n; i++) {
		size_t l = strlen(el->items[i]);
		if (i)
			*p++ = '\n';
		memcpy(p, el->items[i], l);
		p += l;
	}
	*p = '\0';
	return out;
}

_Noreturn void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = dprintf(STDERR_FILENO, "ambient: fatal: %s\n", msg);
	(void)n;
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		die("out of memory allocating %zu bytes", n);
	return p;
}

void *xcalloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);

	if (!p)
		die("out of memory allocating %zu x %zu bytes", count, size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		die("out of memory reallocating to %zu bytes", n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	if (n) /* s may be NULL for an empty range (an empty buffer's read pointer) */
		memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

size_t str_copyn(char *dst, size_t cap, const char *p, size_t n)
{
	size_t len = n < cap - 1 ? n : cap - 1;

	if (p && len) {
		const char *z = memchr(p, '\0', len);
		if (z)
			len = (size_t)(z - p);
		memcpy(dst, p, len);
	} else {
		len = 0;
	}
	dst[len] = '\0';
	return len;
}

size_t str_copy(char *dst, size_t cap, const char *s)
{
	return str_copyn(dst, cap, s, s ? strnlen(s, cap) : 0);
}

size_t str_u64(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	return n;
}

void str_hex(char *out, uint64_t v, unsigned digits)
{
	static const char hex[] = "0123456789abcdef";

	while (digits--) {
		out[digits] = hex[v & 15];
		v >>= 4;
	}
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_list ap2;
	int n;
	char *p;

	va_start(ap, fmt);
	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		die("xasprintf: bad format");
	p = xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap2);
	va_end(ap2);
	return p;
}

void secure_wipe(void *p, size_t n)
{
	/* memset at full speed; the barrier tells the compiler p's bytes are used afterwards, so
	 * the store cannot be dropped as dead. */
	if (n)
		memset(p, 0, n);
	__asm__ __volatile__("" : : "r"(p) : "memory");
}

uint64_t time_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t time_mono_ms(void)
{
	return time_mono_ns() / 1000000ull;
}

int64_t time_real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rand_bytes(void *p, size_t n)
{
	uint8_t *b = p;

	while (n > 0) {
		ssize_t r = getrandom(b, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("getrandom: %s", strerror(errno));
		}
		b += r;
		n -= (size_t)r;
	}
}

uint64_t rand_below(uint64_t bound)
{
	uint64_t x;
	uint64_t limit;

	if (bound <= 1)
		return 0;
	/* Rejection sampling avoids modulo bias. */
	limit = UINT64_MAX - (UINT64_MAX % bound);
	do
		rand_bytes(&x, sizeof(x));
	while (x >= limit);
	return x % bound;
}

int hex_digit_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t utf8_seq_len(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	uint8_t lo = 0x80;
	uint8_t hi = 0xbf;
	size_t need;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80; /* no overlong 3-byte forms */
		hi = c == 0xed ? 0x9f : 0xbf; /* no surrogates U+D800..U+DFFF */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		lo = c == 0xf0 ? 0x90 : 0x80; /* no overlong 4-byte forms */
		hi = c == 0xf4 ? 0x8f : 0xbf; /* nothing past U+10FFFF */
	} else {
		return 0;
	}
	if (n < need || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return need;
}

bool utf8_valid(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq_len(p + i, n - i);
		if (!k)
			return false;
		i += k;
	}
	return true;
}
