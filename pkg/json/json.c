/* Strict JSON parsing over cJSON: a validating pre-pass for exact error locations and limits, then
 * duplicate keys, integer-literal marking, JSON paths and strict integer extraction. */
#include "pkg/json/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A private bit in cJSON's `type` word: this number was written with a fraction or exponent.
 * cJSON masks types with 0xFF and only tests bits 8 and 9 itself, so bit 14 is never seen by it. */
#define JSON_F_NONINT (1 << 14)

/* Doubles hold every integer below 2^53 exactly; from there on, a value may be a rounded one. */
#define JSON_EXACT_INT_MAX 9007199254740992.0

/* ---- validating pre-pass ---------------------------------------------------------------------
 * cJSON reports only roughly where it stopped (one past the byte, for a bad key). This pass walks
 * the text first, checks tokens and grammar and depth, and stops at the first problem with a
 * precise message. It also records, in document order, which numbers are not integer literals
 * and where each key starts; a pre-order walk of the cJSON tree meets numbers and keys in the
 * same order. */
struct lex {
	const unsigned char *p;
	size_t len;
	unsigned max_depth;
	unsigned depth;
	bool failed;
	size_t err_off;
	int err_code;
	char err_msg[sizeof(((struct json_error *)0)->msg)];
	uint8_t *numflags; /* 1 = not an integer literal */
	size_t nnum, capnum;
	size_t *keyoffs;
	size_t nkeys, capkeys;
};

__attribute__((format(printf, 4, 5))) static void lex_fail(struct lex *lx, size_t off, int code,
							   const char *fmt, ...)
{
	va_list ap;

	if (lx->failed)
		return;
	lx->failed = true;
	lx->err_off = off;
	lx->err_code = code;
	va_start(ap, fmt);
	vsnprintf(lx->err_msg, sizeof(lx->err_msg), fmt, ap);
	va_end(ap);
}

/* "'x'" for printable ASCII, "byte 0xNN" otherwise. */
static void describe_byte(unsigned char c, char *out, size_t cap)
{
	if (c >= 0x20 && c < 0x7f)
		snprintf(out, cap, "character '%c'", c);
	else
		snprintf(out, cap, "byte 0x%02x", c);
}

static bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* Four hex digits at p[0..3] (bounds checked by the caller) or -1. */
static long hex4(const unsigned char *p)
{
	long v = 0;

	for (int i = 0; i < 4; i++) {
		int h = hex_digit_value(p[i]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Scans the escape at p[j] == '\\'; returns the index after it or 0 after recording a failure. */
static size_t lex_escape(struct lex *lx, size_t j)
{
	const unsigned char *p = lx->p;
	long cp, lo;

	if (j + 1 >= lx->len) {
		lex_fail(lx, j, E_PARSE, "unterminated escape sequence");
		return 0;
	}
	if (strchr("\"\\/bfnrt", p[j + 1]) && p[j + 1] != '\0')
		return j + 2;
	if (p[j + 1] != 'u') {
		char d[32];
		describe_byte(p[j + 1], d, sizeof(d));
		lex_fail(lx, j, E_PARSE, "invalid escape (backslash followed by %s)", d);
		return 0;
	}
	if (j + 6 > lx->len || (cp = hex4(p + j + 2)) < 0) {
		lex_fail(lx, j, E_PARSE, "invalid \\u escape (expected 4 hex digits)");
		return 0;
	}
	if (cp == 0) {
		lex_fail(lx, j, E_PARSE, "\\u0000 is not allowed in strings");
		return 0;
	}
	if (cp >= 0xdc00 && cp <= 0xdfff) {
		lex_fail(lx, j, E_PARSE, "unpaired UTF-16 surrogate in \\u escape");
		return 0;
	}
	if (cp < 0xd800 || cp > 0xdbff)
		return j + 6;
	if (j + 12 > lx->len || p[j + 6] != '\\' || p[j + 7] != 'u' ||
	    (lo = hex4(p + j + 8)) < 0xdc00 || lo > 0xdfff) {
		lex_fail(lx, j, E_PARSE, "unpaired UTF-16 surrogate in \\u escape");
		return 0;
	}
	return j + 12;
}

/* Scans the string starting at p[i] == '"'; returns the index after the closing quote or 0. */
static size_t lex_string(struct lex *lx, size_t i)
{
	const unsigned char *p = lx->p;
	size_t j = i + 1;

	for (;;) {
		unsigned char c;
		size_t n;

		if (j >= lx->len) {
			lex_fail(lx, i, E_PARSE, "unterminated string");
			return 0;
		}
		c = p[j];
		if (c == '"')
			return j + 1;
		if (c == '\\') {
			j = lex_escape(lx, j);
			if (!j)
				return 0;
			continue;
		}
		if (c < 0x20) {
			lex_fail(lx, j, E_PARSE,
				 "control character 0x%02x in string (must be escaped)", c);
			return 0;
		}
		n = utf8_seq_len(p + j, lx->len - j);
		if (!n) {
			lex_fail(lx, j, E_PARSE, "invalid UTF-8 in string");
			return 0;
		}
		j += n;
	}
}

static void lex_push_num(struct lex *lx, uint8_t nonint)
{
	if (lx->nnum == lx->capnum) {
		lx->capnum = lx->capnum ? lx->capnum * 2 : 64;
		lx->numflags = xrealloc(lx->numflags, lx->capnum);
	}
	lx->numflags[lx->nnum++] = nonint;
}

static void lex_push_key(struct lex *lx, size_t off)
{
	if (lx->nkeys == lx->capkeys) {
		lx->capkeys = lx->capkeys ? lx->capkeys * 2 : 64;
		lx->keyoffs = xrealloc(lx->keyoffs, lx->capkeys * sizeof(*lx->keyoffs));
	}
	lx->keyoffs[lx->nkeys++] = off;
}

/* RFC 8259 §6: number = [ minus ] int [ frac ] [ exp ]; int = zero / ( digit1-9 *DIGIT ). */
static size_t lex_number(struct lex *lx, size_t i)
{
	const unsigned char *p = lx->p;
	size_t j = i;
	uint8_t nonint = 0;

	if (p[j] == '-')
		j++;
	if (j >= lx->len || !is_digit(p[j])) {
		lex_fail(lx, i, E_PARSE, "invalid number");
		return 0;
	}
	if (p[j] == '0') {
		j++;
		if (j < lx->len && is_digit(p[j])) {
			lex_fail(lx, i, E_PARSE, "invalid number (leading zero)");
			return 0;
		}
	} else {
		while (j < lx->len && is_digit(p[j]))
			j++;
	}
	if (j < lx->len && p[j] == '.') {
		j++;
		if (j >= lx->len || !is_digit(p[j])) {
			lex_fail(lx, i, E_PARSE, "invalid number (digit expected after '.')");
			return 0;
		}
		while (j < lx->len && is_digit(p[j]))
			j++;
		nonint = 1;
	}
	if (j < lx->len && (p[j] == 'e' || p[j] == 'E')) {
		j++;
		if (j < lx->len && (p[j] == '+' || p[j] == '-'))
			j++;
		if (j >= lx->len || !is_digit(p[j])) {
			lex_fail(lx, i, E_PARSE, "invalid number (digit expected in exponent)");
			return 0;
		}
		while (j < lx->len && is_digit(p[j]))
			j++;
		nonint = 1;
	}
	/* cJSON copies at most 63 characters of a number; longer ones it would misread. */
	if (j - i > 63) {
		lex_fail(lx, i, E_PARSE, "number longer than 63 characters");
		return 0;
	}
	lex_push_num(lx, nonint);
	return j;
}

static size_t lex_literal(struct lex *lx, size_t i)
{
	static const char *const words[] = {"true", "false", "null"};

	for (size_t k = 0; k < ARRAY_LEN(words); k++) {
		size_t n = strlen(words[k]);
		if (lx->len - i >= n && memcmp(lx->p + i, words[k], n) == 0)
			return i + n;
	}
	lex_fail(lx, i, E_PARSE, "invalid literal (expected true, false or null)");
	return 0;
}

/* What the grammar allows next (RFC 8259 §2-§5). */
enum lex_state {
	LS_VALUE,	      /* start of document, after ':' */
	LS_VALUE_OR_CLOSE,    /* after '[' */
	LS_VALUE_AFTER_COMMA, /* after ',' in an array */
	LS_KEY_OR_CLOSE,      /* after '{' */
	LS_KEY,		      /* after ',' in an object */
	LS_COLON,	      /* after a key */
	LS_COMMA_OR_CLOSE,    /* after a value inside a container */
	LS_END,		      /* after the top-level value */
};

/* A token for messages: "character '}'", "a string", "a number", "'true'". */
static void describe_token(const unsigned char *p, size_t n, char *out, size_t cap)
{
	if (p[0] == '"')
		snprintf(out, cap, "a string");
	else if (p[0] == '-' || is_digit(p[0]))
		snprintf(out, cap, "a number");
	else if (p[0] == 't' || p[0] == 'f' || p[0] == 'n')
		snprintf(out, cap, "'%.*s'", (int)(n > 5 ? 5 : n), (const char *)p);
	else if (p[0] > 0x20 && p[0] < 0x7f)
		snprintf(out, cap, "'%c'", p[0]);
	else
		snprintf(out, cap, "byte 0x%02x", p[0]);
}

/* Checks that the token at p[i] may appear in the current state; records a failure if not.
 * `in_object` says what the innermost container is. */
static bool lex_expect(struct lex *lx, enum lex_state st, bool in_object, size_t i, size_t n)
{
	unsigned char c = lx->p[i];
	bool value = c == '{' || c == '[' || c == '"' || c == '-' || is_digit(c) || c == 't' ||
		     c == 'f' || c == 'n';
	bool ok;
	char d[40];

	switch (st) {
	case LS_VALUE: ok = value; break;
	case LS_VALUE_OR_CLOSE: ok = value || c == ']'; break;
	case LS_VALUE_AFTER_COMMA: ok = value; break;
	case LS_KEY_OR_CLOSE: ok = c == '"' || c == '}'; break;
	case LS_KEY: ok = c == '"'; break;
	case LS_COLON: ok = c == ':'; break;
	case LS_COMMA_OR_CLOSE: ok = c == ',' || c == (in_object ? '}' : ']'); break;
	default: ok = false; break;
	}
	if (ok)
		return true;
	describe_token(lx->p + i, n, d, sizeof(d));
	switch (st) {
	case LS_VALUE: lex_fail(lx, i, E_PARSE, "expected a value, got %s", d); break;
	case LS_VALUE_OR_CLOSE:
		lex_fail(lx, i, E_PARSE, "expected a value or ']', got %s", d);
		break;
	case LS_VALUE_AFTER_COMMA:
		if (c == ']')
			lex_fail(lx, i, E_PARSE, "trailing comma before ']'");
		else
			lex_fail(lx, i, E_PARSE, "expected a value after ',', got %s", d);
		break;
	case LS_KEY_OR_CLOSE:
		lex_fail(lx, i, E_PARSE, "expected a string key or '}', got %s", d);
		break;
	case LS_KEY:
		if (c == '}')
			lex_fail(lx, i, E_PARSE, "trailing comma before '}'");
		else
			lex_fail(lx, i, E_PARSE, "expected a string key after ',', got %s", d);
		break;
	case LS_COLON: lex_fail(lx, i, E_PARSE, "expected ':' after the key, got %s", d); break;
	case LS_COMMA_OR_CLOSE:
		lex_fail(lx, i, E_PARSE, "expected ',' or '%c', got %s", in_object ? '}' : ']', d);
		break;
	case LS_END: lex_fail(lx, i, E_PARSE, "unexpected content after the JSON value"); break;
	}
	return false;
}

/* One pass over the text: tokens, grammar (a pushdown automaton with one bit per level), depth.
 * Stops at the first problem. */
static void lex_run(struct lex *lx, size_t start)
{
	const unsigned char *p = lx->p;
	enum lex_state st = LS_VALUE;
	uint8_t *is_obj = xcalloc(lx->max_depth + 1, 1);
	size_t i = start;

	while (i < lx->len && !lx->failed) {
		unsigned char c = p[i];
		bool in_object = lx->depth > 0 && is_obj[lx->depth - 1];
		size_t j;

		if (is_ws(c)) {
			i++;
			continue;
		}
		/* Length of the token, for describing literals in messages. */
		j = i;
		while (j < lx->len && j - i < 5 && p[j] >= 'a' && p[j] <= 'z')
			j++;
		if (!lex_expect(lx, st, in_object, i, j > i ? j - i : 1))
			break;
		switch (c) {
		case '{':
		case '[':
			if (lx->depth >= lx->max_depth) {
				lex_fail(lx, i, E_LIMIT, "nesting deeper than %u levels",
					 lx->max_depth);
				break;
			}
			is_obj[lx->depth++] = c == '{';
			st = c == '{' ? LS_KEY_OR_CLOSE : LS_VALUE_OR_CLOSE;
			i++;
			continue;
		case '}':
		case ']':
			lx->depth--;
			i++;
			break;
		case ',':
			st = in_object ? LS_KEY : LS_VALUE_AFTER_COMMA;
			i++;
			continue;
		case ':':
			st = LS_VALUE;
			i++;
			continue;
		case '"':
			j = lex_string(lx, i);
			if (!j)
				break;
			if (st == LS_KEY || st == LS_KEY_OR_CLOSE) {
				lex_push_key(lx, i);
				st = LS_COLON;
				i = j;
				continue;
			}
			i = j;
			break;
		case 't':
		case 'f':
		case 'n':
			j = lex_literal(lx, i);
			if (!j)
				break;
			i = j;
			break;
		default:
			j = lex_number(lx, i);
			if (!j)
				break;
			i = j;
			break;
		}
		/* A value just ended (or a container closed). */
		st = lx->depth ? LS_COMMA_OR_CLOSE : LS_END;
	}
	if (!lx->failed && st != LS_END)
		lex_fail(lx, lx->len, E_PARSE, "unexpected end of input");
	free(is_obj);
}

static void lex_fini(struct lex *lx)
{
	free(lx->numflags);
	free(lx->keyoffs);
}

/* ---- positions and error text ---------------------------------------------------------------- */

void json_offset_position(const char *text, size_t len, size_t off, unsigned *line,
			  unsigned *column)
{
	unsigned l = 1, c = 1;

	if (off > len)
		off = len;
	for (size_t i = 0; i < off; i++) {
		unsigned char b = (unsigned char)text[i];
		if (b == '\n') {
			l++;
			c = 1;
		} else if ((b & 0xc0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*column = c;
}

__attribute__((format(printf, 6, 7))) static int set_err(struct json_error *err, int code,
							 const char *text, size_t len, size_t off,
							 const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -code;
	memset(err, 0, sizeof(*err));
	err->code = code;
	err->offset = off;
	if (text)
		json_offset_position(text, len, off, &err->line, &err->column);
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -code;
}

int json_error_format(const struct json_error *e, const char *source, char *out, size_t cap)
{
	if (!source)
		source = "<input>";
	if (e->line)
		return snprintf(out, cap, "%s:%u:%u: invalid JSON: %s", source, e->line, e->column,
				e->msg);
	return snprintf(out, cap, "%s: invalid JSON: %s", source, e->msg);
}

/* ---- JSON paths ------------------------------------------------------------------------------ */

void json_path_init(struct json_path *p)
{
	p->len = 0;
	p->s[0] = '\0';
}

static bool is_ident(const char *k)
{
	if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z') || k[0] == '_'))
		return false;
	for (const char *c = k + 1; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_'))
			return false;
	return true;
}

size_t json_path_key_component(char *out, size_t cap, const char *key)
{
	size_t n = 0;

#define PUT(ch)                                                                                    \
	do {                                                                                       \
		if (n + 1 < cap)                                                                   \
			out[n] = (ch);                                                             \
		n++;                                                                               \
	} while (0)
	if (!cap)
		return 0;
	PUT('.');
	if (is_ident(key)) {
		for (const char *c = key; *c; c++)
			PUT(*c);
	} else {
		PUT('"');
		for (const unsigned char *c = (const unsigned char *)key; *c; c++) {
			if (*c == '"' || *c == '\\') {
				PUT('\\');
				PUT((char)*c);
			} else if (*c < 0x20) {
				char esc[8];
				snprintf(esc, sizeof(esc), "\\u%04x", *c);
				for (char *e = esc; *e; e++)
					PUT(*e);
			} else {
				PUT((char)*c);
			}
		}
		PUT('"');
	}
#undef PUT
	if (n >= cap)
		n = cap - 1;
	out[n] = '\0';
	return n;
}

/* Appends comp; if it does not fit, the path ends in "..." (pops still restore it exactly). */
static size_t path_append(struct json_path *p, const char *comp, size_t n)
{
	size_t mark = p->len;
	const size_t room = sizeof(p->s) - 4; /* keep space for "..." and NUL */

	if (p->len + n <= room) {
		memcpy(p->s + p->len, comp, n);
		p->len += n;
	} else if (p->len < room || memcmp(p->s + p->len - 3, "...", 3) != 0) {
		memcpy(p->s + p->len, "...", 3);
		p->len += 3;
	}
	p->s[p->len] = '\0';
	return mark;
}

size_t json_path_push_key(struct json_path *p, const char *key)
{
	char comp[sizeof(p->s)];
	size_t n = json_path_key_component(comp, sizeof(comp), key);

	return path_append(p, comp, n);
}

size_t json_path_push_index(struct json_path *p, size_t index)
{
	char comp[32];
	int n = snprintf(comp, sizeof(comp), "[%zu]", index);

	return path_append(p, comp, (size_t)n);
}

void json_path_pop(struct json_path *p, size_t mark)
{
	if (mark <= p->len) {
		p->len = mark;
		p->s[mark] = '\0';
	}
}

const char *json_path_str(const struct json_path *p)
{
	return p->len ? p->s : ".";
}

/* ---- tree walk: number flags, duplicate keys ------------------------------------------------- */

struct walk {
	struct json_path path;
	const uint8_t *numflags;
	size_t nnum, inum;
	const size_t *keyoffs;
	size_t nkeys, ikey;
	json_dup_fn fn;
	void *arg;
	size_t ndups;
	bool stop_at_first; /* json_parse: only the first duplicate matters */
	bool found;
	size_t first_key_off;
	char first_path[JSON_PATH_MAX];
	char first_key[64];
};

static const char *member_key(const cJSON *c)
{
	return c->string ? c->string : "";
}

/* Marks dup[i] when member i repeats an earlier key of the same object. Small objects compare
 * pairwise; large ones sort member positions by key with a stable merge sort, so within a run of
 * equal keys the first is the original and every later one a duplicate. */
static void find_dups(const cJSON *obj, size_t n, bool *dup)
{
	const cJSON **m;
	size_t *idx, *tmp;
	size_t i = 0;

	if (n < 2)
		return;
	m = xmalloc(n * sizeof(*m));
	for (const cJSON *c = obj->child; c; c = c->next)
		m[i++] = c;
	if (n <= 8) {
		for (i = 1; i < n; i++)
			for (size_t j = 0; j < i && !dup[i]; j++)
				dup[i] = strcmp(member_key(m[i]), member_key(m[j])) == 0;
		free(m);
		return;
	}
	idx = xmalloc(n * sizeof(*idx));
	tmp = xmalloc(n * sizeof(*tmp));
	for (i = 0; i < n; i++)
		idx[i] = i;
	for (size_t w = 1; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = MIN(lo + w, n), hi = MIN(lo + 2 * w, n);
			size_t a = lo, b = mid, k = lo;
			while (a < mid && b < hi)
				tmp[k++] = strcmp(member_key(m[idx[a]]), member_key(m[idx[b]])) <= 0
						   ? idx[a++]
						   : idx[b++];
			while (a < mid)
				tmp[k++] = idx[a++];
			while (b < hi)
				tmp[k++] = idx[b++];
		}
		memcpy(idx, tmp, n * sizeof(*idx));
	}
	for (i = 1; i < n; i++)
		if (strcmp(member_key(m[idx[i - 1]]), member_key(m[idx[i]])) == 0)
			dup[idx[i]] = true;
	free(idx);
	free(tmp);
	free(m);
}

static void walk_value(struct walk *w, const cJSON *v);

static void walk_object(struct walk *w, const cJSON *v)
{
	size_t n = 0, i = 0;
	bool *dup;
	const cJSON *c;

	for (c = v->child; c; c = c->next)
		n++;
	dup = xcalloc(n ? n : 1, sizeof(*dup));
	find_dups(v, n, dup);
	for (c = v->child; c && !(w->stop_at_first && w->found); c = c->next, i++) {
		const char *key = c->string ? c->string : "";
		size_t koff = w->ikey < w->nkeys ? w->keyoffs[w->ikey] : 0;
		size_t mark;

		w->ikey++;
		mark = json_path_push_key(&w->path, key);
		if (dup[i]) {
			w->ndups++;
			if (!w->found) {
				w->found = true;
				w->first_key_off = koff;
				snprintf(w->first_path, sizeof(w->first_path), "%s",
					 json_path_str(&w->path));
				snprintf(w->first_key, sizeof(w->first_key), "%s", key);
			}
			if (w->fn)
				w->fn(json_path_str(&w->path), key, w->arg);
		}
		walk_value(w, c);
		json_path_pop(&w->path, mark);
	}
	free(dup);
}

static void walk_value(struct walk *w, const cJSON *v)
{
	int t = v->type & 0xff;

	if (t == cJSON_Number) {
		if (w->inum < w->nnum && w->numflags[w->inum])
			((cJSON *)v)->type |= JSON_F_NONINT;
		w->inum++;
	} else if (t == cJSON_Object) {
		walk_object(w, v);
	} else if (t == cJSON_Array) {
		size_t i = 0;
		for (const cJSON *c = v->child; c && !(w->stop_at_first && w->found);
		     c = c->next, i++) {
			size_t mark = json_path_push_index(&w->path, i);
			walk_value(w, c);
			json_path_pop(&w->path, mark);
		}
	}
}

size_t json_duplicates_each(const cJSON *root, json_dup_fn fn, void *arg)
{
	struct walk *w;
	size_t n;

	if (!root)
		return 0;
	w = xcalloc(1, sizeof(*w));
	json_path_init(&w->path);
	w->fn = fn;
	w->arg = arg;
	/* No flags to apply: inum just counts past nnum == 0. */
	walk_value(w, root);
	n = w->ndups;
	free(w);
	return n;
}

/* ---- json_parse ------------------------------------------------------------------------------ */

static size_t skip_ws(const char *t, size_t len, size_t i)
{
	while (i < len && is_ws((unsigned char)t[i]))
		i++;
	return i;
}

int json_parse(const char *text, size_t len, const struct json_opts *opts, cJSON **out,
	       struct json_error *err)
{
	size_t max_bytes = opts && opts->max_bytes ? opts->max_bytes : JSON_DEFAULT_MAX_BYTES;
	unsigned max_depth = opts && opts->max_depth ? opts->max_depth : JSON_DEFAULT_MAX_DEPTH;
	bool allow_dups = opts && opts->allow_duplicate_keys;
	struct lex lx = {0};
	const char *end = NULL;
	cJSON *root = NULL;
	size_t start = 0;
	int rc = 0;

	*out = NULL;
	if (max_depth > JSON_MAX_DEPTH_CAP)
		max_depth = JSON_MAX_DEPTH_CAP;
	if (!text)
		len = 0;
	if (len > max_bytes)
		return set_err(err, E_LIMIT, NULL, 0, 0, "document is %zu bytes, limit is %zu", len,
			       max_bytes);
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		start = 3;
	if (skip_ws(text, len, start) == len)
		return set_err(err, E_PARSE, text, len, skip_ws(text, len, start),
			       "document is empty");

	lx.p = (const unsigned char *)text;
	lx.len = len;
	lx.max_depth = max_depth;
	lex_run(&lx, start);
	if (lx.failed) {
		rc = set_err(err, lx.err_code, text, len, lx.err_off, "%s", lx.err_msg);
		goto fail;
	}
	/* The text is grammatical; cJSON now only builds the tree. Should it still refuse (it
	 * has no other limits we know of), report where it stopped. */
	root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (!root) {
		size_t off = end ? (size_t)(end - text) : 0;
		rc = set_err(err, E_PARSE, text, len, off, "value not accepted by the JSON parser");
		goto fail;
	}
	if (skip_ws(text, len, end ? (size_t)(end - text) : len) < len) {
		rc = set_err(err, E_PARSE, text, len, skip_ws(text, len, (size_t)(end - text)),
			     "unexpected content after the JSON value");
		goto fail;
	}

	{
		struct walk *w = xcalloc(1, sizeof(*w));
		json_path_init(&w->path);
		w->numflags = lx.numflags;
		w->nnum = lx.nnum;
		w->keyoffs = lx.keyoffs;
		w->nkeys = lx.nkeys;
		w->stop_at_first = !allow_dups;
		walk_value(w, root);
		if (w->found && !allow_dups) {
			/* Flags past the first duplicate were not applied, but the tree is
			 * discarded. */
			rc = set_err(err, E_PARSE, text, len, w->first_key_off,
				     "duplicate key \"%s\" at %s", w->first_key, w->first_path);
			free(w);
			goto fail;
		}
		free(w);
	}
	lex_fini(&lx);
	*out = root;
	return 0;
fail:
	cJSON_Delete(root);
	lex_fini(&lx);
	return rc;
}

void json_free(cJSON *root)
{
	cJSON_Delete(root);
}

const char *json_type_name(const cJSON *v)
{
	if (!v)
		return "missing";
	switch (v->type & 0xff) {
	case cJSON_False:
	case cJSON_True: return "boolean";
	case cJSON_NULL: return "null";
	case cJSON_Number: return "number";
	case cJSON_String: return "string";
	case cJSON_Array: return "array";
	case cJSON_Object: return "object";
	case cJSON_Raw: return "raw";
	default: return "invalid";
	}
}

/* ---- strict integers ------------------------------------------------------------------------- */

bool json_is_integer(const cJSON *v)
{
	double d;

	if (!cJSON_IsNumber(v) || (v->type & JSON_F_NONINT))
		return false;
	d = v->valuedouble;
	return isfinite(d) && d == floor(d);
}

int json_get_int(const cJSON *v, int64_t min, int64_t max, int64_t *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return -E_INVAL;
	if (!json_is_integer(v))
		return -E_PARSE;
	d = v->valuedouble;
	if (d >= JSON_EXACT_INT_MAX || d <= -JSON_EXACT_INT_MAX)
		return -E_LIMIT;
	if ((int64_t)d < min || (int64_t)d > max)
		return -E_LIMIT;
	*out = (int64_t)d;
	return 0;
}

int json_get_uint(const cJSON *v, uint64_t min, uint64_t max, uint64_t *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return -E_INVAL;
	if (!json_is_integer(v))
		return -E_PARSE;
	d = v->valuedouble;
	if (d < 0 || d >= JSON_EXACT_INT_MAX)
		return -E_LIMIT;
	if ((uint64_t)d < min || (uint64_t)d > max)
		return -E_LIMIT;
	*out = (uint64_t)d;
	return 0;
}

int json_parse_uint_str(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	bool overflow = false;

	if (!s || !*s)
		return -E_PARSE;
	if (s[0] == '0' && s[1] != '\0')
		return -E_PARSE;
	for (const char *c = s; *c; c++) {
		if (!is_digit((unsigned char)*c))
			return -E_PARSE;
		if (v > (UINT64_MAX - 9) / 10)
			overflow = true;
		else
			v = v * 10 + (uint64_t)(*c - '0');
	}
	if (overflow || v < min || v > max)
		return -E_LIMIT;
	*out = v;
	return 0;
}
