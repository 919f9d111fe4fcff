/* DER value rules shared by the encoder and decoder: INTEGER, OID, string and time contents. */
#include "pkg/der/der.h"

#include <stdio.h>
#include <string.h>

const char *der_tag_name(uint8_t tag, char *buf, size_t cap)
{
	static const struct {
		uint8_t tag;
		const char *name;
	} names[] = {
		{DER_BOOLEAN, "BOOLEAN"},
		{DER_INTEGER, "INTEGER"},
		{DER_BIT_STRING, "BIT STRING"},
		{DER_OCTET_STRING, "OCTET STRING"},
		{DER_NULL, "NULL"},
		{DER_OID, "OBJECT IDENTIFIER"},
		{DER_UTF8_STRING, "UTF8String"},
		{DER_PRINTABLE_STRING, "PrintableString"},
		{DER_T61_STRING, "T61String"},
		{DER_IA5_STRING, "IA5String"},
		{DER_UTC_TIME, "UTCTime"},
		{DER_GENERALIZED_TIME, "GeneralizedTime"},
		{DER_VISIBLE_STRING, "VisibleString"},
		{DER_UNIVERSAL_STRING, "UniversalString"},
		{DER_BMP_STRING, "BMPString"},
		{DER_SEQUENCE, "SEQUENCE"},
		{DER_SET, "SET"},
	};

	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (names[i].tag == tag)
			return names[i].name;
	if ((tag & 0xc0) == DER_CONTEXT && (tag & 0x1f) != 0x1f)
		snprintf(buf, cap, "[%u]%s", tag & 0x1fu,
			 (tag & DER_CONSTRUCTED) ? "" : " primitive");
	else
		snprintf(buf, cap, "tag 0x%02x", tag);
	return buf;
}

const char *der_int_check(const uint8_t *p, size_t n)
{
	if (n == 0)
		return "empty INTEGER";
	/* X.690 §8.3.2: the first nine bits must not be all zeros or all ones. */
	if (n > 1 && ((p[0] == 0x00 && !(p[1] & 0x80)) || (p[0] == 0xff && (p[1] & 0x80))))
		return "INTEGER not minimally encoded";
	return NULL;
}

const char *der_oid_check(const uint8_t *p, size_t n)
{
	bool start = true;

	if (n == 0)
		return "empty OBJECT IDENTIFIER";
	/* X.690 §8.19.2: each sub-identifier in as few octets as possible (no leading 0x80). */
	for (size_t i = 0; i < n; i++) {
		if (start && p[i] == 0x80)
			return "OBJECT IDENTIFIER sub-identifier not minimally encoded";
		start = !(p[i] & 0x80);
	}
	if (!start)
		return "OBJECT IDENTIFIER ends inside a sub-identifier";
	return NULL;
}

bool der_oid_eq(struct slice oid, const uint8_t *ref, size_t n)
{
	return oid.n == n && memcmp(oid.p, ref, n) == 0;
}

int der_oid_format(struct slice oid, char *out, size_t cap)
{
	size_t pos = 0, i = 0;
	bool first = true;

	if (cap == 0)
		return -E_LIMIT;
	out[0] = '\0';
	if (der_oid_check(oid.p, oid.n))
		return -E_INVAL;
	while (i < oid.n) {
		uint64_t v = 0;
		int k;
		do {
			if (v >> 57)
				return -E_LIMIT; /* arc above 2^64 (e.g. a UUID arc) */
			v = (v << 7) | (oid.p[i] & 0x7f);
		} while (oid.p[i++] & 0x80);
		if (first) {
			unsigned a = v < 40 ? 0 : v < 80 ? 1 : 2;
			k = snprintf(out + pos, cap - pos, "%u.%llu", a,
				     (unsigned long long)(v - 40u * a));
			first = false;
		} else {
			k = snprintf(out + pos, cap - pos, ".%llu", (unsigned long long)v);
		}
		if (k < 0 || (size_t)k >= cap - pos) {
			out[pos] = '\0';
			return -E_LIMIT;
		}
		pos += (size_t)k;
	}
	return 0;
}

static int put_arc(uint64_t v, uint8_t *out, size_t cap, size_t *pos)
{
	uint8_t tmp[10];
	size_t k = 0;

	do {
		tmp[k++] = (uint8_t)(v & 0x7f);
		v >>= 7;
	} while (v);
	if (k > cap - *pos)
		return -E_LIMIT;
	while (k > 0) {
		k--;
		out[(*pos)++] = (uint8_t)(tmp[k] | (k ? 0x80 : 0));
	}
	return 0;
}

int der_oid_parse(const char *s, uint8_t *out, size_t cap)
{
	uint64_t arcs[2] = {0, 0};
	size_t pos = 0;
	int narc = 0;
	int r;

	if (!s || !*s)
		return -E_INVAL;
	for (;;) {
		uint64_t v = 0;
		const char *start = s;
		while (*s >= '0' && *s <= '9') {
			uint64_t dig = (uint64_t)(*s - '0');
			if (v > (UINT64_MAX - dig) / 10)
				return -E_INVAL;
			v = v * 10 + dig;
			s++;
		}
		if (s == start || (s - start > 1 && *start == '0'))
			return -E_INVAL; /* empty arc or leading zero */
		if (narc < 2) {
			arcs[narc] = v;
		} else {
			if (narc == 2 && (r = put_arc(arcs[0] * 40 + arcs[1], out, cap, &pos)) < 0)
				return r;
			if ((r = put_arc(v, out, cap, &pos)) < 0)
				return r;
		}
		narc++;
		if (narc == 2 &&
		    (arcs[0] > 2 || (arcs[0] < 2 && arcs[1] >= 40) || arcs[1] > UINT64_MAX - 80))
			return -E_INVAL;
		if (*s == '\0')
			break;
		if (*s != '.')
			return -E_INVAL;
		s++;
	}
	if (narc < 2)
		return -E_INVAL;
	if (narc == 2 && (r = put_arc(arcs[0] * 40 + arcs[1], out, cap, &pos)) < 0)
		return r;
	return (int)pos;
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_ok(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = p[i];
		uint32_t cp;
		size_t k;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

static bool printable_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       strchr(" '()+,-./:=?", c) != NULL;
}

const char *der_string_check(uint8_t type, const uint8_t *p, size_t n)
{
	switch (type) {
	case DER_UTF8_STRING: return utf8_ok(p, n) ? NULL : "invalid UTF-8 in UTF8String";
	case DER_PRINTABLE_STRING:
		for (size_t i = 0; i < n; i++)
			if (p[i] == 0 || !printable_char(p[i]))
				return "character not allowed in PrintableString";
		return NULL;
	case DER_IA5_STRING:
		for (size_t i = 0; i < n; i++)
			if (p[i] > 0x7f)
				return "non-ASCII character in IA5String";
		return NULL;
	case DER_VISIBLE_STRING:
		for (size_t i = 0; i < n; i++)
			if (p[i] < 0x20 || p[i] > 0x7e)
				return "character not allowed in VisibleString";
		return NULL;
	case DER_T61_STRING: return NULL;
	case DER_BMP_STRING: return n % 2 ? "BMPString length not a multiple of 2" : NULL;
	case DER_UNIVERSAL_STRING:
		return n % 4 ? "UniversalString length not a multiple of 4" : NULL;
	default: return "not a string type";
	}
}

int64_t der_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	/* H. Hinnant's days_from_civil: March-based years make leap days the last of the year. */
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void der_civil_from_unix(int64_t t, int64_t *y, unsigned *mo, unsigned *d, unsigned *h,
			 unsigned *mi, unsigned *s)
{
	int64_t days = t / 86400, rem = t % 86400;
	int64_t z, era, doe, yoe, doy, mp;

	if (rem < 0) {
		rem += 86400;
		days--;
	}
	*h = (unsigned)(rem / 3600);
	*mi = (unsigned)(rem / 60 % 60);
	*s = (unsigned)(rem % 60);
	z = days + 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*mo = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*mo <= 2);
}

void der_time_format(int64_t t, char *out, size_t cap)
{
	int64_t y;
	unsigned mo, d, h, mi, s;

	der_civil_from_unix(t, &y, &mo, &d, &h, &mi, &s);
	if (y < 0 || y > 9999) {
		snprintf(out, cap, "%s", y < 0 ? "0000-01-01T00:00:00Z" : "9999-12-31T23:59:59Z");
		return;
	}
	snprintf(out, cap, "%04u-%02u-%02uT%02u:%02u:%02uZ", (unsigned)y, mo, d, h, mi, s);
}

static bool digits(const uint8_t *p, size_t n, unsigned *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		*v = *v * 10 + (unsigned)(p[i] - '0');
	}
	return true;
}

static unsigned month_days(int64_t y, unsigned m)
{
	static const unsigned md[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : md[m - 1];
}

const char *der_time_check(uint8_t type, const uint8_t *p, size_t n, int64_t *unix_secs)
{
	unsigned yy, mo, d, h, mi, s;
	size_t yl;
	int64_t y;

	/* RFC 5280 §4.1.2.5.1/§4.1.2.5.2: Zulu, seconds present, no fractional seconds. */
	if (type == DER_UTC_TIME) {
		if (n != 13)
			return "UTCTime must be YYMMDDHHMMSSZ";
		yl = 2;
	} else if (type == DER_GENERALIZED_TIME) {
		if (n != 15)
			return "GeneralizedTime must be YYYYMMDDHHMMSSZ";
		yl = 4;
	} else {
		return "not a time type";
	}
	if (p[n - 1] != 'Z')
		return "time must end in Z (UTC)";
	if (!digits(p, yl, &yy) || !digits(p + yl, 2, &mo) || !digits(p + yl + 2, 2, &d) ||
	    !digits(p + yl + 4, 2, &h) || !digits(p + yl + 6, 2, &mi) || !digits(p + yl + 8, 2, &s))
		return "non-digit in time";
	y = yy;
	if (type == DER_UTC_TIME)
		y = yy >= 50 ? 1900 + yy : 2000 + yy; /* RFC 5280 §4.1.2.5.1 */
	if (mo < 1 || mo > 12)
		return "month out of range";
	if (d < 1 || d > month_days(y, mo))
		return "day out of range";
	if (h > 23 || mi > 59 || s > 59)
		return "time of day out of range";
	if (unix_secs)
		*unix_secs = der_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
	return NULL;
}
