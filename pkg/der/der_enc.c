/* DER encoder: TLVs appended to a wiped-on-growth buffer, constructed lengths patched on close. */
#include "pkg/der/der.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DER_ENC_MAX (16u << 20)

void der_enc_init(struct der_enc *e, size_t cap_hint)
{
	memset(e, 0, sizeof(*e));
	e->max = DER_ENC_MAX;
	e->cap = cap_hint ? MIN(cap_hint, (size_t)DER_ENC_MAX) : 512;
	e->p = xmalloc(e->cap);
}

void der_enc_fini(struct der_enc *e)
{
	if (e->p) {
		secure_wipe(e->p, e->cap);
		free(e->p);
	}
	memset(e, 0, sizeof(*e));
}

static void enc_fail(struct der_enc *e, int code)
{
	if (e->err == 0)
		e->err = -code;
}

int der_enc_result(const struct der_enc *e, struct slice *out)
{
	if (e->err)
		return e->err;
	if (e->depth != 0 || !e->p)
		return -E_STATE;
	out->p = e->p;
	out->n = e->len;
	return 0;
}

int der_enc_take(struct der_enc *e, uint8_t **p, size_t *n)
{
	struct slice s;
	int r = der_enc_result(e, &s);

	if (r < 0)
		return r;
	*p = e->p;
	*n = e->len;
	e->p = NULL;
	der_enc_fini(e);
	return 0;
}

/* Grows by allocating, copying and wiping the old block, so no stale copy of a secret remains in
 * freed memory (realloc would leave one). */
static bool enc_reserve(struct der_enc *e, size_t n)
{
	size_t ncap;
	uint8_t *np;

	if (e->err)
		return false;
	if (!e->p) {
		enc_fail(e, E_STATE);
		return false;
	}
	if (n <= e->cap - e->len)
		return true;
	if (n > e->max - e->len) {
		enc_fail(e, E_LIMIT);
		return false;
	}
	ncap = e->cap;
	while (ncap - e->len < n)
		ncap = MIN(ncap * 2, e->max);
	np = xmalloc(ncap);
	memcpy(np, e->p, e->len);
	secure_wipe(e->p, e->cap);
	free(e->p);
	e->p = np;
	e->cap = ncap;
	return true;
}

static void put_bytes(struct der_enc *e, const void *p, size_t n)
{
	if (!enc_reserve(e, n))
		return;
	if (n)
		memcpy(e->p + e->len, p, n);
	e->len += n;
}

static size_t len_octets(size_t n, uint8_t out[5])
{
	size_t k = 0;

	if (n < 0x80) {
		out[0] = (uint8_t)n;
		return 1;
	}
	for (size_t v = n; v; v >>= 8)
		k++;
	out[0] = (uint8_t)(0x80 | k);
	for (size_t i = 0; i < k; i++)
		out[k - i] = (uint8_t)(n >> (8 * i));
	return k + 1;
}

static void put_header(struct der_enc *e, uint8_t tag, size_t n)
{
	uint8_t h[6];
	size_t k;

	if ((tag & 0x1f) == 0x1f) {
		enc_fail(e, E_INVAL);
		return;
	}
	if (n > DER_MAX_LEN) {
		enc_fail(e, E_LIMIT);
		return;
	}
	h[0] = tag;
	k = len_octets(n, h + 1);
	put_bytes(e, h, k + 1);
}

void der_put_tlv(struct der_enc *e, uint8_t tag, const void *p, size_t n)
{
	put_header(e, tag, n);
	put_bytes(e, p, n);
}

void der_put_raw(struct der_enc *e, const void *p, size_t n)
{
	put_bytes(e, p, n);
}

void der_begin(struct der_enc *e, uint8_t tag)
{
	if (e->err)
		return;
	if ((tag & 0x1f) == 0x1f) {
		enc_fail(e, E_INVAL);
		return;
	}
	if (e->depth == DER_MAX_DEPTH) {
		enc_fail(e, E_LIMIT);
		return;
	}
	if (!enc_reserve(e, 2))
		return;
	e->open[e->depth++] = e->len;
	e->p[e->len++] = tag;
	e->p[e->len++] = 0; /* patched by der_end */
}

void der_end(struct der_enc *e)
{
	uint8_t lo[5];
	size_t start, clen, k;

	if (e->err)
		return;
	if (e->depth == 0) {
		enc_fail(e, E_STATE);
		return;
	}
	start = e->open[e->depth - 1];
	clen = e->len - start - 2;
	if (clen > DER_MAX_LEN) {
		enc_fail(e, E_LIMIT);
		return;
	}
	k = len_octets(clen, lo);
	if (k > 1) {
		if (!enc_reserve(e, k - 1))
			return;
		memmove(e->p + start + 1 + k, e->p + start + 2, clen);
		e->len += k - 1;
	}
	memcpy(e->p + start + 1, lo, k);
	e->depth--;
}

void der_put_bool(struct der_enc *e, bool v)
{
	uint8_t b = v ? 0xff : 0x00;

	der_put_tlv(e, DER_BOOLEAN, &b, 1);
}

void der_put_null(struct der_enc *e)
{
	der_put_tlv(e, DER_NULL, NULL, 0);
}

void der_put_int(struct der_enc *e, int64_t v)
{
	uint8_t b[8];
	size_t i = 0;

	for (int k = 0; k < 8; k++)
		b[k] = (uint8_t)((uint64_t)v >> (56 - 8 * k));
	/* Minimal two's complement: drop an octet while the next one carries the same sign. */
	while (i < 7 &&
	       ((b[i] == 0x00 && !(b[i + 1] & 0x80)) || (b[i] == 0xff && (b[i + 1] & 0x80))))
		i++;
	der_put_tlv(e, DER_INTEGER, b + i, 8 - i);
}

void der_put_uint(struct der_enc *e, uint8_t tag, const void *mag, size_t n)
{
	const uint8_t *m = mag;
	uint8_t zero = 0;

	while (n > 0 && m[0] == 0) {
		m++;
		n--;
	}
	if (n == 0) {
		der_put_tlv(e, tag, &zero, 1);
		return;
	}
	if (m[0] & 0x80) {
		if (n + 1 < n) {
			enc_fail(e, E_LIMIT);
			return;
		}
		put_header(e, tag, n + 1);
		put_bytes(e, &zero, 1);
		put_bytes(e, m, n);
		return;
	}
	der_put_tlv(e, tag, m, n);
}

void der_put_oid(struct der_enc *e, const char *dotted)
{
	uint8_t b[DER_OID_MAX];
	int n = der_oid_parse(dotted, b, sizeof(b));

	if (n < 0) {
		enc_fail(e, -n);
		return;
	}
	der_put_tlv(e, DER_OID, b, (size_t)n);
}

void der_put_oid_bytes(struct der_enc *e, const void *p, size_t n)
{
	if (der_oid_check(p, n)) {
		enc_fail(e, E_INVAL);
		return;
	}
	der_put_tlv(e, DER_OID, p, n);
}

void der_put_bits(struct der_enc *e, const void *p, size_t n, unsigned unused)
{
	uint8_t u = (uint8_t)unused;

	if (unused > 7 || (n == 0 && unused != 0) ||
	    (n > 0 && (((const uint8_t *)p)[n - 1] & ((1u << unused) - 1)))) {
		enc_fail(e, E_INVAL);
		return;
	}
	put_header(e, DER_BIT_STRING, n + 1);
	put_bytes(e, &u, 1);
	put_bytes(e, p, n);
}

void der_put_named_bits(struct der_enc *e, uint32_t bits)
{
	uint8_t b[4] = {0};
	int top = -1;
	size_t n;

	for (int i = 0; i < 32; i++) {
		if (bits & (1u << i)) {
			b[i / 8] |= (uint8_t)(0x80u >> (i % 8));
			top = i;
		}
	}
	if (top < 0) {
		der_put_bits(e, NULL, 0, 0);
		return;
	}
	n = (size_t)top / 8 + 1;
	der_put_bits(e, b, n, 7u - (unsigned)top % 8u);
}

void der_put_octets(struct der_enc *e, const void *p, size_t n)
{
	der_put_tlv(e, DER_OCTET_STRING, p, n);
}

void der_put_string(struct der_enc *e, uint8_t tag, const char *s, size_t n)
{
	if (der_string_check(tag, (const uint8_t *)s, n)) {
		enc_fail(e, E_INVAL);
		return;
	}
	der_put_tlv(e, tag, s, n);
}

static void put_time(struct der_enc *e, int64_t t, bool utc)
{
	int64_t y;
	unsigned mo, d, h, mi, s;
	char b[16];
	size_t n;

	der_civil_from_unix(t, &y, &mo, &d, &h, &mi, &s);
	if (utc && (y < 1950 || y > 2049)) {
		enc_fail(e, E_INVAL);
		return;
	}
	if (y < 0 || y > 9999) {
		enc_fail(e, E_INVAL);
		return;
	}
	if (utc)
		n = (size_t)snprintf(b, sizeof(b), "%02u%02u%02u%02u%02u%02uZ", (unsigned)(y % 100),
				     mo, d, h, mi, s);
	else
		n = (size_t)snprintf(b, sizeof(b), "%04u%02u%02u%02u%02u%02uZ", (unsigned)y, mo, d,
				     h, mi, s);
	der_put_tlv(e, utc ? DER_UTC_TIME : DER_GENERALIZED_TIME, b, n);
}

void der_put_utc_time(struct der_enc *e, int64_t unix_secs)
{
	put_time(e, unix_secs, true);
}

void der_put_generalized_time(struct der_enc *e, int64_t unix_secs)
{
	put_time(e, unix_secs, false);
}

void der_put_time(struct der_enc *e, int64_t unix_secs)
{
	int64_t y;
	unsigned mo, d, h, mi, s;

	der_civil_from_unix(unix_secs, &y, &mo, &d, &h, &mi, &s);
	put_time(e, unix_secs, y >= 1950 && y <= 2049);
}
