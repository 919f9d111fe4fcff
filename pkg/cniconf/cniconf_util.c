/* Typed, located member access for the cniconf decoders, RFC 3339 times and port lists. */
#include "pkg/cniconf/cniconf_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cc_init(struct cc *c, const char *src, struct errbuf *eb)
{
	c->src = src;
	c->eb = eb;
	json_path_init(&c->path);
}

int cc_fail(struct cc *c, int code, const char *fmt, ...)
{
	char msg[ERRBUF_SIZE];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return errbuf_set(c->eb, code, "%s: %s: %s", c->src, json_path_str(&c->path), msg);
}

int cc_type(struct cc *c, const cJSON *v, const char *want)
{
	if (!v)
		return cc_fail(c, E_INVAL, "missing");
	return cc_fail(c, E_INVAL, "expected %s, got %s", want, json_type_name(v));
}

int cc_str(struct cc *c, const cJSON *o, const char *key, bool required, const char **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	size_t m = json_path_push_key(&c->path, key);
	int rc = 0;

	*out = "";
	if (!v && !required)
		goto done;
	if (!cJSON_IsString(v)) {
		rc = cc_type(c, v, "a string");
		goto done;
	}
	if (required && !v->valuestring[0]) {
		rc = cc_fail(c, E_INVAL, "empty");
		goto done;
	}
	*out = v->valuestring;
done:
	json_path_pop(&c->path, m);
	return rc;
}

int cc_str_copy(struct cc *c, const cJSON *o, const char *key, bool required, char *out, size_t cap)
{
	const char *s;
	size_t n, m;
	int rc;

	out[0] = '\0';
	if ((rc = cc_str(c, o, key, required, &s)) < 0)
		return rc;
	n = strlen(s);
	if (n >= cap) {
		m = json_path_push_key(&c->path, key);
		rc = cc_fail(c, E_LIMIT, "longer than %zu bytes", cap - 1);
		json_path_pop(&c->path, m);
		return rc;
	}
	memcpy(out, s, n + 1);
	return 0;
}

int cc_bool(struct cc *c, const cJSON *o, const char *key, bool *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	size_t m;
	int rc;

	*out = false;
	if (!v)
		return 0;
	if (cJSON_IsBool(v)) {
		*out = cJSON_IsTrue(v);
		return 0;
	}
	m = json_path_push_key(&c->path, key);
	rc = cc_type(c, v, "a boolean");
	json_path_pop(&c->path, m);
	return rc;
}

int cc_ports(struct cc *c, const cJSON *o, const char *key, uint16_t *ports, size_t *n)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key), *it;
	size_t m = json_path_push_key(&c->path, key), i = 0;
	int rc = 0;

	*n = 0;
	if (!v || cJSON_IsNull(v))
		goto done;
	if (!cJSON_IsArray(v)) {
		rc = cc_type(c, v, "an array");
		goto done;
	}
	cJSON_ArrayForEach(it, v)
	{
		uint64_t p;
		size_t mi;

		if (*n == CNICONF_MAX_EXCLUDE) {
			rc = cc_fail(c, E_LIMIT, "more than %d ports", CNICONF_MAX_EXCLUDE);
			goto done;
		}
		mi = json_path_push_index(&c->path, i++);
		if (json_get_uint(it, 1, 65535, &p) < 0) {
			rc = cc_fail(c, E_INVAL, "expected a port 1..65535");
			goto done;
		}
		json_path_pop(&c->path, mi);
		ports[(*n)++] = (uint16_t)p;
	}
done:
	json_path_pop(&c->path, m);
	return rc;
}

int cc_time(struct cc *c, const cJSON *o, const char *key, int64_t *ms)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	size_t m;
	int rc;

	*ms = 0;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (cJSON_IsString(v) && cniconf_time_parse(v->valuestring, ms) == 0)
		return 0;
	m = json_path_push_key(&c->path, key);
	rc = cc_fail(c, E_INVAL, "expected a time like \"2026-11-26T14:00:00Z\"");
	json_path_pop(&c->path, m);
	return rc;
}

int cc_parse_object(struct cc *c, const char *text, size_t len, cJSON **root)
{
	struct json_error je;
	int rc;

	*root = NULL;
	if ((rc = json_parse(text, len, NULL, root, &je)) < 0) {
		char line[ERRBUF_SIZE];

		json_error_format(&je, c->src, line, sizeof(line));
		return errbuf_set(c->eb, -rc, "%s", line);
	}
	if (!cJSON_IsObject(*root)) {
		rc = cc_fail(c, E_PARSE, "expected an object, got %s", json_type_name(*root));
		json_free(*root);
		*root = NULL;
	}
	return rc;
}

/* ---- RFC 3339 times -------------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, size_t n, unsigned *out)
{
	*out = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		*out = *out * 10 + (unsigned)(s[i] - '0');
	}
	return true;
}

int cniconf_time_parse(const char *s, int64_t *ms)
{
	static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	unsigned y, mo, d, h, mi, se;
	bool leap;

	*ms = 0;
	if (strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':' || s[19] != 'Z')
		return -E_PARSE;
	if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
	    !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &se))
		return -E_PARSE;
	leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || se > 59)
		return -E_PARSE;
	*ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + se;
	*ms *= 1000;
	return 0;
}

/* ---- CLI port lists -------------------------------------------------------------------------- */

int cniconf_ports_parse(const char *s, uint16_t *ports, size_t cap, size_t *n, struct errbuf *eb)
{
	const char *p = s;
	size_t item = 0;

	*n = 0;
	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		unsigned v = 0;

		item++;
		if (len == 0 || len > 5 || !digits(p, len, &v) || v < 1 || v > 65535)
			return errbuf_set(eb, E_INVAL,
					  "'%s': item %zu '%.*s': expected ports 1..65535 like "
					  "22,2222",
					  s, item, (int)(len > 16 ? 16 : len), p);
		if (*n == cap)
			return errbuf_set(eb, E_LIMIT, "'%s': at most %zu ports", s, cap);
		ports[(*n)++] = (uint16_t)v;
		p = end ? end + 1 : p + len;
	}
	return 0;
}
