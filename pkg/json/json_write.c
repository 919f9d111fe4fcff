/* A streaming JSON writer into struct buf: commas, indentation, escaping, always-valid UTF-8. */
#include "pkg/json/json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void w_fail(struct json_writer *w, int e)
{
	if (!w->err)
		w->err = e;
}

static void w_put(struct json_writer *w, const void *p, size_t n)
{
	if (w->err)
		return;
	if (buf_append(w->out, p, n) < 0)
		w_fail(w, -E_LIMIT);
}

static void w_puts(struct json_writer *w, const char *s)
{
	w_put(w, s, strlen(s));
}

static void w_newline_indent(struct json_writer *w, unsigned depth)
{
	static const char spaces[] = "                                ";
	size_t n;

	if (!w->indent)
		return;
	w_put(w, "\n", 1);
	n = (size_t)depth * w->indent;
	while (n > 0 && !w->err) {
		size_t k = MIN(n, sizeof(spaces) - 1);
		w_put(w, spaces, k);
		n -= k;
	}
}

/* Separator and indentation before a value or key at the current level. */
static void w_before_item(struct json_writer *w)
{
	if (w->depth == 0)
		return;
	if (w->has_items[w->depth - 1])
		w_put(w, ",", 1);
	w->has_items[w->depth - 1] = true;
	w_newline_indent(w, w->depth);
}

static void w_before_value(struct json_writer *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	w_before_item(w);
}

void json_writer_init(struct json_writer *w, struct buf *out, unsigned indent)
{
	memset(w, 0, sizeof(*w));
	w->out = out;
	w->indent = indent;
}

int json_writer_finish(struct json_writer *w)
{
	if (!w->err && (w->depth != 0 || w->after_key))
		w_fail(w, -E_STATE);
	return w->err;
}

static void w_open(struct json_writer *w, char c)
{
	w_before_value(w);
	if (w->depth >= JSON_WRITER_MAX_DEPTH) {
		w_fail(w, -E_LIMIT);
		return;
	}
	w_put(w, &c, 1);
	w->has_items[w->depth++] = false;
}

static void w_close(struct json_writer *w, char c)
{
	if (w->depth == 0 || w->after_key) {
		w_fail(w, -E_STATE);
		return;
	}
	w->depth--;
	if (w->has_items[w->depth])
		w_newline_indent(w, w->depth);
	w_put(w, &c, 1);
}

void json_write_object_begin(struct json_writer *w)
{
	w_open(w, '{');
}

void json_write_object_end(struct json_writer *w)
{
	w_close(w, '}');
}

void json_write_array_begin(struct json_writer *w)
{
	w_open(w, '[');
}

void json_write_array_end(struct json_writer *w)
{
	w_close(w, ']');
}

void json_write_key(struct json_writer *w, const char *key)
{
	if (w->depth == 0 || w->after_key) {
		w_fail(w, -E_STATE);
		return;
	}
	w_before_item(w);
	if (!w->err && json_escape_append(w->out, key ? key : "", key ? strlen(key) : 0) < 0)
		w_fail(w, -E_LIMIT);
	w_puts(w, w->indent ? ": " : ":");
	w->after_key = true;
}

void json_write_stringn(struct json_writer *w, const char *s, size_t n)
{
	w_before_value(w);
	if (!w->err && json_escape_append(w->out, s, n) < 0)
		w_fail(w, -E_LIMIT);
}

void json_write_string(struct json_writer *w, const char *s)
{
	if (!s) {
		json_write_null(w);
		return;
	}
	json_write_stringn(w, s, strlen(s));
}

void json_write_int(struct json_writer *w, int64_t v)
{
	char tmp[32];

	w_before_value(w);
	snprintf(tmp, sizeof(tmp), "%" PRId64, v);
	w_puts(w, tmp);
}

void json_write_uint(struct json_writer *w, uint64_t v)
{
	char tmp[32];

	w_before_value(w);
	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	w_puts(w, tmp);
}

void json_write_double(struct json_writer *w, double v)
{
	char tmp[40];

	if (!isfinite(v)) {
		json_write_null(w);
		return;
	}
	if (v == floor(v) && fabs(v) <= 9007199254740992.0) {
		json_write_int(w, (int64_t)v);
		return;
	}
	w_before_value(w);
	snprintf(tmp, sizeof(tmp), "%.17g", v);
	w_puts(w, tmp);
}

void json_write_bool(struct json_writer *w, bool v)
{
	w_before_value(w);
	w_puts(w, v ? "true" : "false");
}

void json_write_null(struct json_writer *w)
{
	w_before_value(w);
	w_puts(w, "null");
}

void json_write_time_ms(struct json_writer *w, int64_t ms)
{
	char tmp[40];
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || !gmtime_r(&t, &tm)) {
		json_write_null(w);
		return;
	}
	strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_write_string(w, tmp);
}

void json_kv_str(struct json_writer *w, const char *key, const char *v)
{
	json_write_key(w, key);
	json_write_string(w, v);
}

void json_kv_int(struct json_writer *w, const char *key, int64_t v)
{
	json_write_key(w, key);
	json_write_int(w, v);
}

void json_kv_uint(struct json_writer *w, const char *key, uint64_t v)
{
	json_write_key(w, key);
	json_write_uint(w, v);
}

void json_kv_bool(struct json_writer *w, const char *key, bool v)
{
	json_write_key(w, key);
	json_write_bool(w, v);
}

void json_kv_time_ms(struct json_writer *w, const char *key, int64_t ms)
{
	json_write_key(w, key);
	json_write_time_ms(w, ms);
}

void json_write_cjson(struct json_writer *w, const cJSON *v)
{
	if (!v) {
		json_write_null(w);
		return;
	}
	switch (v->type & 0xff) {
	case cJSON_False: json_write_bool(w, false); break;
	case cJSON_True: json_write_bool(w, true); break;
	case cJSON_Number: json_write_double(w, v->valuedouble); break;
	case cJSON_String: json_write_string(w, v->valuestring ? v->valuestring : ""); break;
	case cJSON_Array:
		json_write_array_begin(w);
		for (const cJSON *c = v->child; c && !w->err; c = c->next)
			json_write_cjson(w, c);
		json_write_array_end(w);
		break;
	case cJSON_Object:
		json_write_object_begin(w);
		for (const cJSON *c = v->child; c && !w->err; c = c->next) {
			json_write_key(w, c->string ? c->string : "");
			json_write_cjson(w, c);
		}
		json_write_object_end(w);
		break;
	default: json_write_null(w); break;
	}
}

int json_escape_append(struct buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0;
	int rc;

	if ((rc = buf_append(b, "\"", 1)) < 0)
		return rc;
	while (i < n) {
		unsigned char c = p[i];
		const char *esc = NULL;
		char tmp[8];
		size_t k;

		if (c == '"')
			esc = "\\\"";
		else if (c == '\\')
			esc = "\\\\";
		else if (c == '\n')
			esc = "\\n";
		else if (c == '\r')
			esc = "\\r";
		else if (c == '\t')
			esc = "\\t";
		else if (c == '\b')
			esc = "\\b";
		else if (c == '\f')
			esc = "\\f";
		else if (c < 0x20) {
			snprintf(tmp, sizeof(tmp), "\\u%04x", c);
			esc = tmp;
		}
		k = esc ? 0 : utf8_seq_len(p + i, n - i);
		if (!esc && k) {
			run += k;
			i += k;
			continue;
		}
		if (run && (rc = buf_append(b, p + i - run, run)) < 0)
			return rc;
		run = 0;
		if ((rc = buf_append_str(b, esc ? esc : "\\ufffd")) < 0)
			return rc;
		i++;
	}
	if (run && (rc = buf_append(b, p + i - run, run)) < 0)
		return rc;
	return buf_append(b, "\"", 1);
}
