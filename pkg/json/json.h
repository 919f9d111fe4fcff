/* A strict, thin layer over cJSON: located syntax errors, duplicate-key and limit checks, JSON
 * paths for error messages, strict integer extraction, and a small writer into struct buf. */
#ifndef AMBIENT_JSON_H
#define AMBIENT_JSON_H

#include "pkg/base/base.h"
#include "pkg/buf/buf.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- parsing ---------------------------------------------------------------------------------
 *
 *   cJSON *root;
 *   struct json_error je;
 *   if (json_parse(text, len, NULL, &root, &je) < 0)
 *           json_error_format(&je, "mesh.json", line, sizeof(line));
 *           // "mesh.json:3:14: invalid JSON: trailing comma before '}'"
 *   ...
 *   json_free(root);
 *
 * Stricter than cJSON alone (RFC 8259 grammar): numbers must follow the JSON number grammar (no
 * leading zeros, no "1.", no "+1"); strings must be valid UTF-8 without raw control characters or
 * "\u0000"; nothing but whitespace may follow the value; objects may not repeat a key (unless
 * allow_duplicate_keys); nesting and size are bounded. A leading UTF-8 BOM is skipped.
 *
 * Errors are located by our own single pass over the text (tokens, grammar, depth), so the
 * position is exact; cJSON then only builds the tree of text already known to be valid
 * (cJSON_GetErrorPtr is never needed). cJSON resets a process-global error record at the start of
 * every parse, so concurrent parses race on it; nothing reads it, so the race is benign.
 */
#define JSON_DEFAULT_MAX_BYTES ((size_t)16 << 20)
#define JSON_DEFAULT_MAX_DEPTH 64u
/* cJSON's own recursion limit; larger max_depth values are clamped to it. */
#define JSON_MAX_DEPTH_CAP 1000u

struct json_opts {
	size_t max_bytes;	   /* 0 = JSON_DEFAULT_MAX_BYTES */
	unsigned max_depth;	   /* 0 = JSON_DEFAULT_MAX_DEPTH; nesting of objects/arrays */
	bool allow_duplicate_keys; /* keep duplicates (cJSON keeps both; lookups see the first) */
};

struct json_error {
	int code;	 /* E_PARSE (syntax, duplicate key) or E_LIMIT (size, depth) */
	unsigned line;	 /* 1-based; 0 when no position applies (document too large) */
	unsigned column; /* 1-based, counted in characters (UTF-8 code points), tabs count 1 */
	size_t offset;	 /* byte offset of the problem */
	char msg[256];	 /* reason without location: "expected ',' or '}', got a number" */
};

/* Parses text[0..len) (need not be NUL-terminated; opts may be NULL). On success stores the tree in
 * *out (free with json_free) and returns 0; otherwise returns -E_PARSE or -E_LIMIT and fills err
 * (err may be NULL). Never prints. */
int json_parse(const char *text, size_t len, const struct json_opts *opts, cJSON **out,
	       struct json_error *err);
void json_free(cJSON *root);

/* "source:LINE:COL: invalid JSON: MSG" (or "source: invalid JSON: MSG" without a position).
 * Returns the length that snprintf would have written. */
int json_error_format(const struct json_error *e, const char *source, char *out, size_t cap);

/* Line and column (both 1-based) of byte offset `off` in text; see struct json_error. */
void json_offset_position(const char *text, size_t len, size_t off, unsigned *line,
			  unsigned *column);

/* Calls fn for every object member whose key already appeared earlier in the same object, in
 * document order. `path` is the member's JSON path (".a.b", see json_path). Returns the count. */
typedef void (*json_dup_fn)(const char *path, const char *key, void *arg);
size_t json_duplicates_each(const cJSON *root, json_dup_fn fn, void *arg);

/* "object", "array", "string", "number", "boolean", "null" (or "invalid"). */
const char *json_type_name(const cJSON *v);

/* ---- strict integers -------------------------------------------------------------------------
 * For trees from json_parse, a number written with a fraction or exponent ("8.0", "1e3") is not an
 * integer even when its value is integral (as serde does it). Returns 0 and stores the value, or:
 *   -E_INVAL  v is not a number at all
 *   -E_PARSE  v is a number but not an integer literal (1.5, 1e3, 2.0)
 *   -E_LIMIT  v is an integer outside [min, max] (or beyond 2^53, where doubles lose exactness)
 */
int json_get_int(const cJSON *v, int64_t min, int64_t max, int64_t *out);
int json_get_uint(const cJSON *v, uint64_t min, uint64_t max, uint64_t *out);
/* True if v is a number written as an integer literal with an integral value. */
bool json_is_integer(const cJSON *v);
/* Integer-valued object keys ("80"): ASCII digits only, no sign, no spaces, no leading zeros
 * ("0" itself is fine). -E_PARSE if not of that form, -E_LIMIT if outside [min, max]. */
int json_parse_uint_str(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* ---- JSON paths for error messages -----------------------------------------------------------
 * jq-style: ".services[2].ports.\"70000\"". Keys that are identifiers ([A-Za-z_][A-Za-z0-9_]*)
 * are written bare, others as JSON strings. The root is ".". A path longer than the buffer ends in
 * "..." instead of failing.
 *
 *   size_t m = json_path_push_key(&p, "ports");
 *   ...
 *   json_path_pop(&p, m);
 */
#define JSON_PATH_MAX 480
struct json_path {
	size_t len;
	char s[JSON_PATH_MAX];
};

void json_path_init(struct json_path *p);
/* Both return a mark to pass to json_path_pop. */
size_t json_path_push_key(struct json_path *p, const char *key);
size_t json_path_push_index(struct json_path *p, size_t index);
void json_path_pop(struct json_path *p, size_t mark);
const char *json_path_str(const struct json_path *p);
/* Appends one key component (".name" or ".\"a/b\"") to out; returns bytes written (truncates). */
size_t json_path_key_component(char *out, size_t cap, const char *key);

/* ---- writer ----------------------------------------------------------------------------------
 * Streams JSON into a struct buf; handles commas, escaping and optional indentation. Errors (the
 * buf hit its max, nesting too deep, unbalanced calls) are sticky and reported by finish.
 *
 *   struct json_writer w;
 *   json_writer_init(&w, &out, 2);
 *   json_write_object_begin(&w);
 *   json_write_key(&w, "name"); json_write_string(&w, "app");
 *   json_write_object_end(&w);
 *   if (json_writer_finish(&w) < 0) ...
 */
#define JSON_WRITER_MAX_DEPTH 64
struct json_writer {
	struct buf *out;
	int err;
	unsigned indent; /* spaces per level; 0 = compact, one line */
	unsigned depth;
	bool after_key;
	bool has_items[JSON_WRITER_MAX_DEPTH];
};

void json_writer_init(struct json_writer *w, struct buf *out, unsigned indent);
/* 0, or the first error: -E_LIMIT (buf full or too deep), -E_STATE (unbalanced or misplaced). */
int json_writer_finish(struct json_writer *w);
void json_write_object_begin(struct json_writer *w);
void json_write_object_end(struct json_writer *w);
void json_write_array_begin(struct json_writer *w);
void json_write_array_end(struct json_writer *w);
void json_write_key(struct json_writer *w, const char *key);
void json_write_string(struct json_writer *w, const char *s); /* NULL writes null */
void json_write_stringn(struct json_writer *w, const char *s, size_t n);
void json_write_int(struct json_writer *w, int64_t v);
void json_write_uint(struct json_writer *w, uint64_t v);
void json_write_double(struct json_writer *w, double v); /* non-finite writes null */
void json_write_bool(struct json_writer *w, bool v);
void json_write_null(struct json_writer *w);
/* RFC 3339 UTC ("2026-11-26T14:00:00Z") from Unix milliseconds; null for ms <= 0. */
void json_write_time_ms(struct json_writer *w, int64_t ms);
/* Key and value in one call, for objects written field by field. */
void json_kv_str(struct json_writer *w, const char *key, const char *v); /* NULL writes null */
void json_kv_int(struct json_writer *w, const char *key, int64_t v);
void json_kv_uint(struct json_writer *w, const char *key, uint64_t v);
void json_kv_bool(struct json_writer *w, const char *key, bool v);
void json_kv_time_ms(struct json_writer *w, const char *key, int64_t ms);
/* Writes a cJSON tree (integral numbers below 2^53 as integers, others with 17 digits). */
void json_write_cjson(struct json_writer *w, const cJSON *v);

/* Appends s[0..n) as a quoted JSON string: escapes '"', '\\' and control characters, and replaces
 * invalid UTF-8 with U+FFFD so the output is always valid JSON. */
int json_escape_append(struct buf *b, const char *s, size_t n);

#endif
