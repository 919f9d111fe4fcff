/* The generic, table-driven decoder (JSON -> public structs) and encoder (structs -> JSON), and
 * the error/warning collector with "did you mean" suggestions. */
#include "pkg/config/config_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- error collection ------------------------------------------------------------------------ */

static void add_line(struct cfg_ctx *ctx, bool warn, const char *path, const char *fmt, va_list ap)
{
	char msg[768];
	struct errlist *el = warn ? ctx->warns : ctx->errs;
	size_t *count = warn ? &ctx->nwarn : &ctx->nerr;

	(*count)++;
	if (!el || *count > CONFIG_MAX_ERRORS)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	errlist_add(el, "%s: %s: %s", ctx->source, path, msg);
}

void cfg_error(struct cfg_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_line(ctx, false, json_path_str(&ctx->path), fmt, ap);
	va_end(ap);
}

void cfg_error_at(struct cfg_ctx *ctx, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_line(ctx, false, path, fmt, ap);
	va_end(ap);
}

void cfg_warn(struct cfg_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_line(ctx, true, json_path_str(&ctx->path), fmt, ap);
	va_end(ap);
}

void cfg_warn_at(struct cfg_ctx *ctx, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_line(ctx, true, path, fmt, ap);
	va_end(ap);
}

/* ---- suggestions ----------------------------------------------------------------------------- */

/* Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
static size_t osa_distance(const char *a, const char *b)
{
	enum { N = 48 };
	size_t la = strlen(a), lb = strlen(b);
	size_t d[N + 1][N + 1];

	if (la > N || lb > N)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t v = MIN(d[i - 1][j] + 1, d[i][j - 1] + 1);
			v = MIN(v, d[i - 1][j - 1] + cost);
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
				v = MIN(v, d[i - 2][j - 2] + 1);
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

const char *cfg_suggest(const char *word, const char *const *candidates, size_t n)
{
	size_t best = SIZE_MAX, limit = strlen(word) / 3;
	const char *pick = NULL;

	for (size_t i = 0; i < n; i++)
		if (strcasecmp(word, candidates[i]) == 0)
			return candidates[i];
	if (limit < 1)
		limit = 1;
	if (limit > 3)
		limit = 3;
	for (size_t i = 0; i < n; i++) {
		size_t d = osa_distance(word, candidates[i]);
		if (d <= limit && d < best) {
			best = d;
			pick = candidates[i];
		}
	}
	return pick;
}

/* A value quoted for a message: '"' and '\\' escaped, control bytes as \u00XX, cut after
 * QUOTE_MAX input bytes (on a UTF-8 boundary) with "..." so a huge value cannot flood a line. */
#define QUOTE_MAX 60
#define QUOTE_BUF (QUOTE_MAX * 6 + 16)
static const char *quote(const char *s, char *out, size_t cap)
{
	size_t n = 0, i = 0;

#define QPUT(str)                                                                                  \
	do {                                                                                       \
		for (const char *q_ = (str); *q_ && n + 1 < cap; q_++)                             \
			out[n++] = *q_;                                                            \
	} while (0)
	QPUT("\"");
	for (; i < QUOTE_MAX && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[8] = {(char)c, 0};
		if (c == '"' || c == '\\')
			snprintf(tmp, sizeof(tmp), "\\%c", c);
		else if (c < 0x20)
			snprintf(tmp, sizeof(tmp), "\\u%04x", c);
		QPUT(tmp);
	}
	/* Finish a UTF-8 sequence cut by the limit. */
	while (s[i] && ((unsigned char)s[i] & 0xc0) == 0x80) {
		char tmp[2] = {s[i++], 0};
		QPUT(tmp);
	}
	if (s[i])
		QPUT("...");
	QPUT("\"");
#undef QPUT
	out[n] = '\0';
	return out;
}

/* ---- decoding -------------------------------------------------------------------------------- */

static void decode_value(struct cfg_ctx *ctx, const cJSON *v, const char *keystr,
			 const struct cfg_type *t, void *dst);

static void put_ptr(void *dst, const void *p)
{
	memcpy(dst, &p, sizeof(p));
}

static void expect(struct cfg_ctx *ctx, const char *what, const cJSON *v)
{
	cfg_error(ctx, "expected %s, got %s", what, json_type_name(v));
}

/* The string a leaf decodes from: a map key or a JSON string (else an error, NULL). */
static const char *leaf_string(struct cfg_ctx *ctx, const cJSON *v, const char *keystr)
{
	if (keystr)
		return keystr;
	if (!cJSON_IsString(v) || !v->valuestring) {
		expect(ctx, "a string", v);
		return NULL;
	}
	return v->valuestring;
}

static void decode_uint(struct cfg_ctx *ctx, const cJSON *v, const char *keystr,
			const struct cfg_type *t, void *dst)
{
	uint64_t u = 0;
	int rc;

	rc = keystr ? json_parse_uint_str(keystr, t->min, t->max, &u)
		    : json_get_uint(v, t->min, t->max, &u);
	if (rc == -E_LIMIT) {
		cfg_error(ctx, "%s out of range %llu..%llu", t->name, (unsigned long long)t->min,
			  (unsigned long long)t->max);
		return;
	}
	if (rc < 0 && keystr) {
		char q[QUOTE_BUF];
		cfg_error(ctx, "expected an integer key, got %s", quote(keystr, q, sizeof(q)));
		return;
	}
	if (rc == -E_INVAL) {
		expect(ctx, "an integer", v);
		return;
	}
	if (rc == -E_PARSE) {
		if (v->valuedouble != floor(v->valuedouble))
			cfg_error(ctx, "expected an integer, got %g", v->valuedouble);
		else
			cfg_error(ctx, "expected an integer without fraction or exponent");
		return;
	}
	if (t->size == sizeof(uint16_t)) {
		uint16_t x = (uint16_t)u;
		memcpy(dst, &x, sizeof(x));
	} else {
		uint32_t x = (uint32_t)u;
		memcpy(dst, &x, sizeof(x));
	}
}

static void decode_enum(struct cfg_ctx *ctx, const cJSON *v, const struct cfg_type *t, void *dst)
{
	const char *s = leaf_string(ctx, v, NULL);
	char list[256] = "", q[QUOTE_BUF];
	size_t n = 0;
	const char *hint;

	if (!s)
		return;
	for (unsigned i = 0; i < t->nvalues; i++) {
		if (strcmp(s, t->values[i]) == 0) {
			int x = (int)(i + t->base);
			memcpy(dst, &x, sizeof(x));
			return;
		}
	}
	for (unsigned i = 0; i < t->nvalues && n < sizeof(list); i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "",
				      t->values[i]);
	hint = cfg_suggest(s, t->values, t->nvalues);
	if (hint)
		cfg_error(ctx, "invalid value %s, expected one of: %s (did you mean \"%s\"?)",
			  quote(s, q, sizeof(q)), list, hint);
	else
		cfg_error(ctx, "invalid value %s, expected one of: %s", quote(s, q, sizeof(q)),
			  list);
}

static void decode_string(struct cfg_ctx *ctx, const cJSON *v, const char *keystr,
			  const struct cfg_type *t, void *dst)
{
	const char *s = leaf_string(ctx, v, keystr);
	char tmp[160], q[QUOTE_BUF];
	const char *why;

	if (!s)
		return;
	if (t->check && (why = t->check(s, tmp, sizeof(tmp)))) {
		cfg_error(ctx, "invalid value %s: %s", quote(s, q, sizeof(q)), why);
		return;
	}
	put_ptr(dst, cfg_strdup(ctx->arena, s));
}

/* "namespace/hostname": one '/', both sides non-empty, printable, no spaces. */
static bool gw_hostname_ok(const char *s)
{
	const char *slash = strchr(s, '/');

	if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/'))
		return false;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= 0x20 || *c == 0x7f)
			return false;
	return true;
}

static void decode_gwdest(struct cfg_ctx *ctx, const cJSON *v, void *dst)
{
	const char *s = leaf_string(ctx, v, NULL);
	struct config_gateway_dest d = {0};
	const char *slash;
	char q[QUOTE_BUF];

	if (!s)
		return;
	/* ztunnel's order: network/IP first (a bare IP is the default network here), else
	 * namespace/hostname. */
	if (cfg_netaddr_parse(ctx->arena, s, &d.address) == 0) {
		d.kind = CONFIG_GATEWAY_ADDRESS;
	} else if (gw_hostname_ok(s)) {
		slash = strchr(s, '/');
		d.kind = CONFIG_GATEWAY_HOSTNAME;
		d.namespace = cfg_strndup(ctx->arena, s, (size_t)(slash - s));
		d.hostname = cfg_strdup(ctx->arena, slash + 1);
	} else {
		cfg_error(ctx,
			  "invalid destination %s, expected \"network/IP\" or "
			  "\"namespace/hostname\"",
			  quote(s, q, sizeof(q)));
		return;
	}
	memcpy(dst, &d, sizeof(d));
}

static void decode_seq(struct cfg_ctx *ctx, const cJSON *v, const struct cfg_type *t,
		       void *items_dst, void *count_dst)
{
	size_t n = 0, i = 0;
	uint8_t *items;

	if (!cJSON_IsArray(v)) {
		expect(ctx, "an array", v);
		return;
	}
	for (const cJSON *c = v->child; c; c = c->next)
		n++;
	items = cfg_alloc_array(ctx->arena, n, t->elem->size);
	for (const cJSON *c = v->child; c; c = c->next, i++) {
		size_t mark = json_path_push_index(&ctx->path, i);
		decode_value(ctx, c, NULL, t->elem, items + i * t->elem->size);
		json_path_pop(&ctx->path, mark);
	}
	put_ptr(items_dst, items);
	memcpy(count_dst, &n, sizeof(n));
}

static void decode_map(struct cfg_ctx *ctx, const cJSON *v, const struct cfg_type *t,
		       void *items_dst, void *count_dst)
{
	size_t n = 0, i = 0;
	uint8_t *entries;

	if (!cJSON_IsObject(v)) {
		expect(ctx, "an object", v);
		return;
	}
	for (const cJSON *c = v->child; c; c = c->next)
		n++;
	entries = cfg_alloc_array(ctx->arena, n, t->entry_size);
	for (const cJSON *c = v->child; c; c = c->next, i++) {
		uint8_t *e = entries + i * t->entry_size;
		size_t mark = json_path_push_key(&ctx->path, c->string ? c->string : "");
		decode_value(ctx, NULL, c->string ? c->string : "", t->key, e + t->key_off);
		decode_value(ctx, c, NULL, t->elem, e + t->val_off);
		json_path_pop(&ctx->path, mark);
	}
	put_ptr(items_dst, entries);
	memcpy(count_dst, &n, sizeof(n));
}

static const struct cfg_field *find_field(const struct cfg_type *t, const char *name)
{
	for (size_t i = 0; i < t->nfields; i++)
		if (strcmp(t->fields[i].name, name) == 0)
			return &t->fields[i];
	return NULL;
}

static void unknown_field(struct cfg_ctx *ctx, const struct cfg_type *t, const char *key)
{
	const char *names[64];
	size_t n = 0;
	const char *hint;

	for (size_t i = 0; i < t->nfields && n < ARRAY_LEN(names); i++)
		if (!(t->fields[i].flags & CF_UNSUPPORTED))
			names[n++] = t->fields[i].name;
	hint = cfg_suggest(key, names, n);
	if (hint)
		cfg_error(ctx, "unknown field (did you mean \"%s\"?)", hint);
	else
		cfg_error(ctx, "unknown field");
}

static void decode_oneof(struct cfg_ctx *ctx, const cJSON *v, const struct cfg_type *t, void *dst)
{
	const struct cfg_field *f;
	char list[160] = "";
	size_t n = 0, mark;
	int tag;

	if (!cJSON_IsObject(v)) {
		expect(ctx, "an object", v);
		return;
	}
	if (!v->child || v->child->next) {
		for (size_t i = 0; i < t->nfields && n < sizeof(list); i++)
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s\"%s\"", i ? ", " : "",
					      t->fields[i].name);
		cfg_error(ctx, "expected exactly one of %s", list);
		return;
	}
	mark = json_path_push_key(&ctx->path, v->child->string ? v->child->string : "");
	f = find_field(t, v->child->string ? v->child->string : "");
	if (!f) {
		unknown_field(ctx, t, v->child->string ? v->child->string : "");
	} else {
		tag = (int)(f - t->fields);
		memcpy((uint8_t *)dst + t->tag_off, &tag, sizeof(tag));
		decode_value(ctx, v->child, NULL, f->type, (uint8_t *)dst + f->off);
	}
	json_path_pop(&ctx->path, mark);
}

static void decode_raw(struct cfg_ctx *ctx, const cJSON *v, void *dst)
{
	size_t i = 0;

	if (!cJSON_IsArray(v)) {
		expect(ctx, "an array", v);
		return;
	}
	for (const cJSON *c = v->child; c; c = c->next, i++) {
		if (!cJSON_IsObject(c)) {
			size_t mark = json_path_push_index(&ctx->path, i);
			expect(ctx, "an object", c);
			json_path_pop(&ctx->path, mark);
		}
	}
	put_ptr(dst, v);
}

static void decode_value(struct cfg_ctx *ctx, const cJSON *v, const char *keystr,
			 const struct cfg_type *t, void *dst)
{
	char q[QUOTE_BUF];
	const char *s;
	uint8_t *d = dst;

	switch (t->kind) {
	case CFG_STRING: decode_string(ctx, v, keystr, t, dst); return;
	case CFG_UINT: decode_uint(ctx, v, keystr, t, dst); return;
	case CFG_ENUM: decode_enum(ctx, v, t, dst); return;
	case CFG_BOOL:
		if (!cJSON_IsBool(v)) {
			expect(ctx, "a boolean", v);
			return;
		}
		*(bool *)dst = cJSON_IsTrue(v);
		return;
	case CFG_IP:
		if ((s = leaf_string(ctx, v, keystr)) &&
		    config_ip_parse(s, (struct config_ip *)dst) < 0)
			cfg_error(ctx, "invalid IP address %s", quote(s, q, sizeof(q)));
		return;
	case CFG_CIDR:
		if ((s = leaf_string(ctx, v, keystr)) &&
		    config_cidr_parse(s, (struct config_cidr *)dst) < 0)
			cfg_error(ctx, "invalid CIDR %s", quote(s, q, sizeof(q)));
		return;
	case CFG_NETADDR:
		if ((s = leaf_string(ctx, v, keystr)) &&
		    cfg_netaddr_parse(ctx->arena, s, (struct config_netaddr *)dst) < 0)
			cfg_error(ctx, "invalid address %s, expected \"network/IP\"",
				  quote(s, q, sizeof(q)));
		return;
	case CFG_GWDEST: decode_gwdest(ctx, v, dst); return;
	case CFG_EMPTY:
		if (!cJSON_IsArray(v) || v->child)
			cfg_error(ctx, "expected []");
		else
			put_ptr(dst, "");
		return;
	case CFG_OBJECT:
		if (!cJSON_IsObject(v)) {
			expect(ctx, "an object", v);
			return;
		}
		if (t->has_present)
			*(bool *)(d + t->present_off) = true;
		cfg_decode_object(ctx, v, t, dst);
		return;
	case CFG_ONEOF: decode_oneof(ctx, v, t, dst); return;
	case CFG_ARRAY: decode_seq(ctx, v, t, d + t->items_off, d + t->count_off); return;
	case CFG_MAP: decode_map(ctx, v, t, d + t->items_off, d + t->count_off); return;
	case CFG_RAW: decode_raw(ctx, v, dst); return;
	}
}

static void apply_default(struct cfg_ctx *ctx, const struct cfg_field *f, uint8_t *dst)
{
	const struct cfg_type *t = f->type;

	switch (t->kind) {
	case CFG_STRING: put_ptr(dst + f->off, f->def); return;
	case CFG_BOOL: *(bool *)(dst + f->off) = strcmp(f->def, "true") == 0; return;
	case CFG_UINT: {
		unsigned long long u = strtoull(f->def, NULL, 10);
		if (t->size == sizeof(uint16_t)) {
			uint16_t x = (uint16_t)u;
			memcpy(dst + f->off, &x, sizeof(x));
		} else {
			uint32_t x = (uint32_t)u;
			memcpy(dst + f->off, &x, sizeof(x));
		}
		return;
	}
	case CFG_ENUM:
		for (unsigned i = 0; i < t->nvalues; i++) {
			if (strcmp(f->def, t->values[i]) == 0) {
				int x = (int)(i + t->base);
				memcpy(dst + f->off, &x, sizeof(x));
			}
		}
		return;
	case CFG_OBJECT: {
		/* "{}": an empty object gets its own fields' defaults. */
		cJSON empty;
		size_t mark = json_path_push_key(&ctx->path, f->name);
		memset(&empty, 0, sizeof(empty));
		empty.type = cJSON_Object;
		cfg_decode_object(ctx, &empty, t, dst + f->off);
		json_path_pop(&ctx->path, mark);
		return;
	}
	default: return; /* arrays, maps, raw: "[]" / "{}" is the zeroed state */
	}
}

void cfg_decode_object(struct cfg_ctx *ctx, const cJSON *v, const struct cfg_type *t, void *dst)
{
	uint8_t *d = dst;
	uint64_t seen = 0;

	for (const cJSON *m = v->child; m; m = m->next) {
		const char *key = m->string ? m->string : "";
		const struct cfg_field *f = find_field(t, key);
		size_t mark = json_path_push_key(&ctx->path, key);
		size_t idx;

		if (!f) {
			unknown_field(ctx, t, key);
		} else if (seen & (1ull << (idx = (size_t)(f - t->fields)))) {
			/* A duplicate key: already reported, the first occurrence wins. */
		} else if (f->flags & CF_UNSUPPORTED) {
			seen |= 1ull << idx;
			cfg_error(ctx, "%s", f->doc);
		} else if (f->flags & CF_IGNORED) {
			seen |= 1ull << idx;
		} else {
			seen |= 1ull << idx;
			if (f->type->kind == CFG_ARRAY)
				decode_seq(ctx, m, f->type, d + f->off, d + f->count_off);
			else if (f->type->kind == CFG_MAP)
				decode_map(ctx, m, f->type, d + f->off, d + f->count_off);
			else
				decode_value(ctx, m, NULL, f->type, d + f->off);
		}
		json_path_pop(&ctx->path, mark);
	}
	for (size_t i = 0; i < t->nfields; i++) {
		const struct cfg_field *f = &t->fields[i];
		if ((seen & (1ull << i)) || (f->flags & (CF_UNSUPPORTED | CF_IGNORED)))
			continue;
		if (f->flags & CF_REQUIRED)
			cfg_error(ctx, "missing required field \"%s\"", f->name);
		else if (f->def)
			apply_default(ctx, f, d);
	}
	if (t->post)
		t->post(ctx, dst);
}

/* ---- encoding -------------------------------------------------------------------------------- */

static const void *get_ptr(const void *src)
{
	const void *p;

	memcpy(&p, src, sizeof(p));
	return p;
}

static size_t get_count(const void *src)
{
	size_t n;

	memcpy(&n, src, sizeof(n));
	return n;
}

static uint64_t get_uint(const struct cfg_type *t, const void *src)
{
	if (t->size == sizeof(uint16_t)) {
		uint16_t x;
		memcpy(&x, src, sizeof(x));
		return x;
	}
	uint32_t x;
	memcpy(&x, src, sizeof(x));
	return x;
}

static int get_int(const void *src)
{
	int x;

	memcpy(&x, src, sizeof(x));
	return x;
}

static void encode_value(struct json_writer *w, const struct cfg_type *t, const void *src);

static void encode_seq(struct json_writer *w, const struct cfg_type *t, const void *items_src,
		       const void *count_src)
{
	const uint8_t *items = get_ptr(items_src);
	size_t n = get_count(count_src);

	json_write_array_begin(w);
	for (size_t i = 0; i < n && items; i++)
		encode_value(w, t->elem, items + i * t->elem->size);
	json_write_array_end(w);
}

static void encode_map(struct json_writer *w, const struct cfg_type *t, const void *items_src,
		       const void *count_src)
{
	const uint8_t *e = get_ptr(items_src);
	size_t n = get_count(count_src);

	json_write_object_begin(w);
	for (size_t i = 0; i < n && e; i++, e += t->entry_size) {
		char key[24];
		if (t->key->kind == CFG_UINT) {
			snprintf(key, sizeof(key), "%llu",
				 (unsigned long long)get_uint(t->key, e + t->key_off));
			json_write_key(w, key);
		} else {
			const char *k = get_ptr(e + t->key_off);
			json_write_key(w, k ? k : "");
		}
		encode_value(w, t->elem, e + t->val_off);
	}
	json_write_object_end(w);
}

static void encode_value(struct json_writer *w, const struct cfg_type *t, const void *src)
{
	char tmp[CONFIG_IP_STRLEN + 320];
	const uint8_t *s = src;

	switch (t->kind) {
	case CFG_STRING: {
		const char *p = get_ptr(src);
		json_write_string(w, p ? p : "");
		return;
	}
	case CFG_BOOL: json_write_bool(w, *(const bool *)src); return;
	case CFG_UINT: json_write_uint(w, get_uint(t, src)); return;
	case CFG_ENUM: {
		int v = get_int(src) - (int)t->base;
		if (v >= 0 && (unsigned)v < t->nvalues)
			json_write_string(w, t->values[v]);
		else
			json_write_null(w);
		return;
	}
	case CFG_IP: config_ip_format(src, tmp, sizeof(tmp)); break;
	case CFG_CIDR: {
		const struct config_cidr *c = src;
		size_t n = config_ip_format(&c->ip, tmp, sizeof(tmp));
		snprintf(tmp + n, sizeof(tmp) - n, "/%u", c->prefix);
		break;
	}
	case CFG_NETADDR: cfg_netaddr_format(src, tmp, sizeof(tmp)); break;
	case CFG_GWDEST: {
		const struct config_gateway_dest *d = src;
		if (d->kind == CONFIG_GATEWAY_ADDRESS) {
			cfg_netaddr_format(&d->address, tmp, sizeof(tmp));
			break;
		}
		/* Hostnames can be long; write through the writer, not tmp. */
		char *hn = xasprintf("%s/%s", d->namespace ? d->namespace : "",
				     d->hostname ? d->hostname : "");
		json_write_string(w, hn);
		free(hn);
		return;
	}
	case CFG_EMPTY:
		json_write_array_begin(w);
		json_write_array_end(w);
		return;
	case CFG_OBJECT: cfg_encode_object(w, t, src); return;
	case CFG_ONEOF: {
		int tag = get_int(s + t->tag_off);
		if (tag < 0 || (size_t)tag >= t->nfields) {
			json_write_null(w);
			return;
		}
		json_write_object_begin(w);
		json_write_key(w, t->fields[tag].name);
		encode_value(w, t->fields[tag].type, s + t->fields[tag].off);
		json_write_object_end(w);
		return;
	}
	case CFG_ARRAY: encode_seq(w, t, s + t->items_off, s + t->count_off); return;
	case CFG_MAP: encode_map(w, t, s + t->items_off, s + t->count_off); return;
	case CFG_RAW: {
		const cJSON *raw = get_ptr(src);
		if (raw) {
			json_write_cjson(w, raw);
		} else {
			json_write_array_begin(w);
			json_write_array_end(w);
		}
		return;
	}
	}
	json_write_string(w, tmp);
}

static bool field_unset(const struct cfg_field *f, const uint8_t *src)
{
	const struct cfg_type *t = f->type;
	const uint8_t *p = src + f->off;

	switch (t->kind) {
	case CFG_ARRAY:
	case CFG_MAP: return get_count(src + f->count_off) == 0;
	case CFG_OBJECT: return t->has_present && !*(const bool *)(p + t->present_off);
	case CFG_ENUM: return t->base > 0 && get_int(p) == 0;
	case CFG_UINT: return get_uint(t, p) == 0;
	case CFG_BOOL: return !*(const bool *)p;
	case CFG_STRING: {
		const char *s = get_ptr(p);
		return !s || !*s;
	}
	case CFG_RAW: {
		const cJSON *r = get_ptr(p);
		return !r || !r->child;
	}
	default: return false;
	}
}

void cfg_encode_object(struct json_writer *w, const struct cfg_type *t, const void *src)
{
	const uint8_t *s = src;

	json_write_object_begin(w);
	for (size_t i = 0; i < t->nfields; i++) {
		const struct cfg_field *f = &t->fields[i];
		if (f->flags & (CF_UNSUPPORTED | CF_IGNORED))
			continue;
		if ((f->flags & CF_OMIT_UNSET) && field_unset(f, s))
			continue;
		json_write_key(w, f->name);
		if (f->type->kind == CFG_ARRAY)
			encode_seq(w, f->type, s + f->off, s + f->count_off);
		else if (f->type->kind == CFG_MAP)
			encode_map(w, f->type, s + f->off, s + f->count_off);
		else
			encode_value(w, f->type, s + f->off);
	}
	json_write_object_end(w);
}
