/* Structured logging to stderr in key=value or JSON form, with a run-time adjustable level. */
#include "pkg/base/base.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = LOG_INFO;
static _Atomic int g_format = LOG_FMT_TEXT;
static _Atomic int g_fd = STDERR_FILENO;

static const char *const level_names[LOG__COUNT] = {"error", "warn", "info", "debug", "trace"};

void log_set_level(enum log_level l)
{
	atomic_store(&g_level, (int)l);
}

enum log_level log_get_level(void)
{
	return (enum log_level)atomic_load(&g_level);
}

void log_set_format(enum log_format f)
{
	atomic_store(&g_format, (int)f);
}

enum log_format log_get_format(void)
{
	return (enum log_format)atomic_load(&g_format);
}

void log_set_fd(int fd)
{
	atomic_store(&g_fd, fd < 0 ? STDERR_FILENO : fd);
}

bool log_enabled(enum log_level l)
{
	return (int)l <= atomic_load_explicit(&g_level, memory_order_relaxed);
}

int log_level_parse(const char *s)
{
	if (!s)
		return -E_INVAL;
	for (int i = 0; i < LOG__COUNT; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	if (strcasecmp(s, "warning") == 0)
		return LOG_WARN;
	if (strcasecmp(s, "off") == 0 || strcasecmp(s, "critical") == 0)
		return LOG_ERROR;
	return -E_INVAL;
}

const char *log_level_name(enum log_level l)
{
	return (unsigned)l < LOG__COUNT ? level_names[l] : "unknown";
}

struct out {
	char *p;
	size_t cap;
	size_t n;
};

static void put(struct out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n && o->n + 1 < o->cap; i++)
		o->p[o->n++] = s[i];
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(o, tmp, MIN((size_t)n, sizeof(tmp) - 1));
}

/* JSON string body, escaping quotes, backslashes and control bytes (also used for text quoting). */
static void put_escaped(struct out *o, const char *s)
{
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		switch (*c) {
		case '"': puts_(o, "\\\""); break;
		case '\\': puts_(o, "\\\\"); break;
		case '\n': puts_(o, "\\n"); break;
		case '\r': puts_(o, "\\r"); break;
		case '\t': puts_(o, "\\t"); break;
		default:
			if (*c < 0x20 || *c == 0x7f)
				putf(o, "\\u%04x", *c);
			else
				put(o, (const char *)c, 1);
		}
	}
}

static bool needs_quotes(const char *s)
{
	if (!*s)
		return true;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= ' ' || *c == '"' || *c == '=' || *c == '\\' || *c == 0x7f)
			return true;
	return false;
}

static void put_text_value(struct out *o, const char *s)
{
	if (!needs_quotes(s)) {
		puts_(o, s);
		return;
	}
	put(o, "\"", 1);
	put_escaped(o, s);
	put(o, "\"", 1);
}

static void put_time(struct out *o, int64_t now_ms)
{
	time_t secs = (time_t)(now_ms / 1000);
	struct tm tm;
	char tmp[40];

	gmtime_r(&secs, &tm);
	strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
	puts_(o, tmp);
	putf(o, ".%03dZ", (int)(now_ms % 1000));
}

static void put_field_value(struct out *o, enum log_format fmt, const struct log_field *f)
{
	switch (f->t) {
	case LOG_F_STR:
		if (!f->v.s) {
			puts_(o, fmt == LOG_FMT_JSON ? "null" : "\"\"");
		} else if (fmt == LOG_FMT_JSON) {
			put(o, "\"", 1);
			put_escaped(o, f->v.s);
			put(o, "\"", 1);
		} else {
			put_text_value(o, f->v.s);
		}
		break;
	case LOG_F_I64: putf(o, "%lld", (long long)f->v.i); break;
	case LOG_F_U64: putf(o, "%llu", (unsigned long long)f->v.u); break;
	case LOG_F_BOOL: puts_(o, f->v.b ? "true" : "false"); break;
	case LOG_F_NONE: puts_(o, fmt == LOG_FMT_JSON ? "null" : "\"\""); break;
	}
}

size_t log_format_line(char *buf, size_t cap, enum log_format fmt, int64_t now_ms, enum log_level l,
		       const char *msg, const struct log_field *f, size_t nf)
{
	struct out o = {.p = buf, .cap = cap, .n = 0};

	if (cap == 0)
		return 0;
	if (fmt == LOG_FMT_JSON) {
		puts_(&o, "{\"time\":\"");
		put_time(&o, now_ms);
		puts_(&o, "\",\"level\":\"");
		puts_(&o, log_level_name(l));
		puts_(&o, "\",\"msg\":\"");
		put_escaped(&o, msg);
		put(&o, "\"", 1);
		for (size_t i = 0; i < nf; i++) {
			puts_(&o, ",\"");
			put_escaped(&o, f[i].key ? f[i].key : "");
			puts_(&o, "\":");
			put_field_value(&o, fmt, &f[i]);
		}
		put(&o, "}", 1);
	} else {
		put_time(&o, now_ms);
		puts_(&o, " level=");
		puts_(&o, log_level_name(l));
		puts_(&o, " msg=");
		put_text_value(&o, msg);
		for (size_t i = 0; i < nf; i++) {
			put(&o, " ", 1);
			puts_(&o, f[i].key ? f[i].key : "?");
			put(&o, "=", 1);
			put_field_value(&o, fmt, &f[i]);
		}
	}
	buf[o.n] = '\0';
	return o.n;
}

void log_write(enum log_level l, const char *msg, const struct log_field *f, size_t nf)
{
	char line[4096];
	size_t n;

	if (!log_enabled(l)) /* access logs call this directly: --log-level applies to them too */
		return;
	n = log_format_line(line, sizeof(line) - 1, log_get_format(), time_real_ms(), l, msg, f,
			    nf);
	line[n++] = '\n';
	/* One write per line keeps lines from different threads whole. */
	if (write(atomic_load(&g_fd), line, n) < 0) {
		/* Nowhere left to report a logging failure. */
	}
}
