/* Project-wide error codes, error buffers, logging, checked allocation, time and randomness. */
#ifndef AMBIENT_BASE_H
#define AMBIENT_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ----------------------------------------------------------------------------------
 * Functions return >= 0 on success and -E_* on failure. Human-readable reasons travel separately
 * in a struct errbuf at user-facing boundaries. */
enum err {
	E_OK = 0,
	E_NOMEM,    /* allocation failed (only where a limit, not malloc, refused) */
	E_INVAL,    /* invalid argument or input */
	E_PARSE,    /* malformed syntax */
	E_PROTO,    /* protocol violation by the peer */
	E_LIMIT,    /* a configured size or count limit was exceeded */
	E_IO,	    /* an I/O syscall failed (see errno in the errbuf text) */
	E_AGAIN,    /* would block; try again when ready */
	E_TIMEOUT,  /* a deadline passed */
	E_CLOSED,   /* the peer closed */
	E_NOTFOUND, /* no such item */
	E_EXIST,    /* item already exists */
	E_PERM,	    /* not permitted */
	E_DENIED,   /* refused by policy */
	E_STATE,    /* call not valid in the current state */
	E_UNSUPP,   /* not supported */
	E_CRYPTO,   /* cryptographic failure (bad signature, bad key) */
	E__COUNT
};

/* Short lower-case name of an error code ("timeout"); accepts negative values too. */
const char *err_str(int e);

/* A precise, human-readable failure reason: "mesh.json: .services[2].ports: ..." */
#define ERRBUF_SIZE 512
struct errbuf {
	int code;
	char msg[ERRBUF_SIZE];
};

/* Sets code and message; returns -code so callers can `return errbuf_set(...)`. NULL eb is ok. */
int errbuf_set(struct errbuf *eb, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prepends "prefix: " to the existing message (for adding context on the way up). */
void errbuf_prefix(struct errbuf *eb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void errbuf_clear(struct errbuf *eb);

/* A growable list of error lines, for validators that report every problem at once. */
struct errlist {
	char **items;
	size_t n;
	size_t cap;
};
void errlist_add(struct errlist *el, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void errlist_vadd(struct errlist *el, const char *fmt, va_list ap);
void errlist_fini(struct errlist *el);
/* All items joined with "\n" (caller frees); "" when empty. */
char *errlist_join(const struct errlist *el);

/* ---- checked allocation ----------------------------------------------------------------------
 * Small allocations abort the process with a message on failure: per-connection memory is bounded
 * by design, so running out of heap is not a condition we can serve through. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Bounded string copies for hot paths (a cheaper snprintf(dst, cap, "%.*s", n, p)): copies at most
 * cap - 1 bytes of p[0..n), stopping at a NUL, and terminates dst (cap > 0). Returns the length. */
size_t str_copyn(char *dst, size_t cap, const char *p, size_t n);
size_t str_copy(char *dst, size_t cap, const char *s);
/* Decimal digits of v, no terminator (at most 20); returns how many. */
size_t str_u64(char *out, uint64_t v);
/* Copies n bytes like memcpy. musl's memcpy (rep movsq, then movsb per byte) costs tens of cycles
 * even for a few bytes; hot paths that copy many short strings (HTTP field lines, metric keys)
 * use this instead, which moves 8 bytes at a time. The attribute keeps GCC from turning the loops
 * back into a memcpy call. */
#if defined(__GNUC__) && !defined(__clang__)
#define COPY_SHORT_ATTR __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define COPY_SHORT_ATTR
#endif
COPY_SHORT_ATTR static inline void copy_short(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (n > 128) {
		__builtin_memcpy(d, s, n);
		return;
	}
	while (n >= 8) {
		uint64_t w;
		__builtin_memcpy(&w, s, 8);
		__builtin_memcpy(d, &w, 8);
		d += 8;
		s += 8;
		n -= 8;
	}
	while (n--)
		*d++ = *s++;
}
/* Lower-case hex of v in exactly `digits` characters (the low ones), no terminator. */
void str_hex(char *out, uint64_t v, unsigned digits);
/* Zeroes memory in a way the compiler may not elide (for keys and tokens). */
void secure_wipe(void *p, size_t n);

/* A borrowed byte range; never owns memory. */
struct slice {
	const uint8_t *p;
	size_t n;
};

/* ---- time and randomness --------------------------------------------------------------------- */
uint64_t time_mono_ms(void);
uint64_t time_mono_ns(void);
int64_t time_real_ms(void); /* Unix epoch milliseconds */
/* Fills p with n bytes from the kernel CSPRNG (getrandom); aborts if the kernel refuses. */
void rand_bytes(void *p, size_t n);
/* Uniform random integer in [0, bound) (bound > 0). */
uint64_t rand_below(uint64_t bound);

/* ---- logging ----------------------------------------------------------------------------------
 * One line per event to stderr: `time level=info msg="..." key=value ...` or, with
 * LOG_FMT_JSON, one JSON object per line. The level can be changed at run time from any thread.
 *
 *   log_info("config reloaded", LF_STR("source", path), LF_U64("version", v));
 */
enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE, LOG__COUNT };
enum log_format { LOG_FMT_TEXT = 0, LOG_FMT_JSON };
enum log_ftype { LOG_F_NONE = 0, LOG_F_STR, LOG_F_I64, LOG_F_U64, LOG_F_BOOL };

struct log_field {
	const char *key;
	enum log_ftype t;
	union {
		const char *s;
		int64_t i;
		uint64_t u;
		bool b;
	} v;
};
#define LF_STR(k, x) ((struct log_field){.key = (k), .t = LOG_F_STR, .v.s = (x)})
#define LF_I64(k, x) ((struct log_field){.key = (k), .t = LOG_F_I64, .v.i = (int64_t)(x)})
#define LF_U64(k, x) ((struct log_field){.key = (k), .t = LOG_F_U64, .v.u = (uint64_t)(x)})
#define LF_BOOL(k, x) ((struct log_field){.key = (k), .t = LOG_F_BOOL, .v.b = (x)})
#define LF_ERR(x) LF_STR("error", (x))

void log_set_level(enum log_level l);
enum log_level log_get_level(void);
void log_set_format(enum log_format f);
enum log_format log_get_format(void);
/* "error" "warn" "info" "debug" "trace" (also "warning", "off"->error); -E_INVAL if unknown. */
int log_level_parse(const char *s);
const char *log_level_name(enum log_level l);
/* Redirects output (tests); fd -1 restores stderr. */
void log_set_fd(int fd);
bool log_enabled(enum log_level l);
void log_write(enum log_level l, const char *msg, const struct log_field *f, size_t nf);
/* Renders one line (no trailing newline) into out; returns its length (truncated to cap-1). */
size_t log_format_line(char *out, size_t cap, enum log_format fmt, int64_t now_ms, enum log_level l,
		       const char *msg, const struct log_field *f, size_t nf);

/* The leading empty field keeps the array non-empty when no fields are given. */
#define LOG_AT(lvl, msg, ...)                                                                      \
	do {                                                                                       \
		if (log_enabled(lvl)) {                                                            \
			const struct log_field log_f_[] = {{.key = NULL}, __VA_ARGS__};            \
			log_write(lvl, msg, log_f_ + 1, sizeof(log_f_) / sizeof(log_f_[0]) - 1);   \
		}                                                                                  \
	} while (0)
#define log_error(msg, ...) LOG_AT(LOG_ERROR, msg, __VA_ARGS__)
#define log_warn(msg, ...) LOG_AT(LOG_WARN, msg, __VA_ARGS__)
#define log_info(msg, ...) LOG_AT(LOG_INFO, msg, __VA_ARGS__)
#define log_debug(msg, ...) LOG_AT(LOG_DEBUG, msg, __VA_ARGS__)
#define log_trace(msg, ...) LOG_AT(LOG_TRACE, msg, __VA_ARGS__)

/* Prints "ambient: fatal: <msg>" and aborts. */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- text helpers ---------------------------------------------------------------------------- */
/* Value of a hex digit (0-9, a-f, A-F), or -1. */
int hex_digit_value(int c);
/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF), or 0 if it is not one. n > 0. */
size_t utf8_seq_len(const uint8_t *p, size_t n);
bool utf8_valid(const uint8_t *p, size_t n);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
