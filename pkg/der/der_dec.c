/* Strict DER decoder: bounded cursors over TLVs, with a precise reason and offset for each error.
 */
#include "pkg/der/der.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void der_dec_init(struct der_dec *d, const void *p, size_t n, struct errbuf *eb)
{
	memset(d, 0, sizeof(*d));
	d->p = p;
	d->n = p ? n : 0;
	d->eb = eb;
}

bool der_dec_more(const struct der_dec *d)
{
	return d->pos < d->n;
}

size_t der_dec_offset(const struct der_dec *d)
{
	return d->base + d->pos;
}

int der_peek(const struct der_dec *d)
{
	return d->pos < d->n ? d->p[d->pos] : -1;
}

static int vfail(const struct der_dec *d, int code, size_t off, const char *what, const char *fmt,
		 va_list ap)
{
	char reason[ERRBUF_SIZE];

	vsnprintf(reason, sizeof(reason), fmt, ap);
	return errbuf_set(d->eb, code, "%s: %s at offset %zu", what ? what : "value", reason, off);
}

__attribute__((format(printf, 5, 6))) static int
fail_at(const struct der_dec *d, int code, size_t off, const char *what, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vfail(d, code, off, what, fmt, ap);
	va_end(ap);
	return r;
}

int der_dec_fail(const struct der_dec *d, const struct der_tlv *t, const char *what,
		 const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vfail(d, E_PARSE, t ? t->off : der_dec_offset(d), what, fmt, ap);
	va_end(ap);
	return r;
}

int der_dec_done(const struct der_dec *d, const char *what)
{
	if (d->pos < d->n)
		return fail_at(d, E_PARSE, der_dec_offset(d), what, "%zu trailing bytes",
			       d->n - d->pos);
	return 0;
}

int der_read_any(struct der_dec *d, const char *what, struct der_tlv *t)
{
	size_t pos = d->pos, off = der_dec_offset(d), len, avail;
	uint8_t tag, l0;

	if (pos >= d->n)
		return fail_at(d, E_PARSE, off, what, "missing (end of data)");
	tag = d->p[pos++];
	if ((tag & 0x1f) == 0x1f)
		return fail_at(d, E_PARSE, off, what, "high-tag-number form not supported");
	if (pos >= d->n)
		return fail_at(d, E_PARSE, off, what, "truncated length");
	l0 = d->p[pos++];
	if (l0 < 0x80) {
		len = l0;
	} else if (l0 == 0x80) {
		return fail_at(d, E_PARSE, off, what, "indefinite length (BER, not DER)");
	} else {
		size_t k = l0 & 0x7fu;
		if (k > 4)
			return fail_at(d, E_PARSE, off, what, "length of %zu octets too large", k);
		if (d->n - pos < k)
			return fail_at(d, E_PARSE, off, what, "truncated length");
		if (d->p[pos] == 0)
			return fail_at(d, E_PARSE, off, what, "length has a leading zero octet");
		len = 0;
		for (size_t i = 0; i < k; i++)
			len = (len << 8) | d->p[pos + i];
		pos += k;
		if (len < 0x80)
			return fail_at(d, E_PARSE, off, what,
				       "long-form length %zu must use the short form", len);
		if (len > DER_MAX_LEN)
			return fail_at(d, E_PARSE, off, what, "length %zu too large", len);
	}
	avail = d->n - pos;
	if (len > avail)
		return fail_at(d, E_PARSE, off, what, "length %zu exceeds the %zu bytes available",
			       len, avail);
	t->tag = tag;
	t->off = off;
	t->raw.p = d->p + d->pos;
	t->raw.n = pos + len - d->pos;
	t->val.p = d->p + pos;
	t->val.n = len;
	d->pos = pos + len;
	return 0;
}

int der_read(struct der_dec *d, uint8_t tag, const char *what, struct der_tlv *t)
{
	int r;
	size_t save = d->pos;
	char b1[24], b2[24];

	if (d->pos < d->n && d->p[d->pos] != tag)
		return fail_at(d, E_PARSE, der_dec_offset(d), what, "expected %s, found %s",
			       der_tag_name(tag, b1, sizeof(b1)),
			       der_tag_name(d->p[d->pos], b2, sizeof(b2)));
	r = der_read_any(d, what, t);
	if (r < 0)
		d->pos = save;
	return r;
}

int der_read_opt(struct der_dec *d, uint8_t tag, const char *what, struct der_tlv *t)
{
	struct der_tlv tmp;
	int r;

	if (!t)
		t = &tmp;
	if (der_peek(d) != tag)
		return 0;
	r = der_read(d, tag, what, t);
	return r < 0 ? r : 1;
}

int der_open(const struct der_dec *d, const struct der_tlv *t, const char *what,
	     struct der_dec *sub)
{
	if (d->depth + 1 >= DER_MAX_DEPTH)
		return fail_at(d, E_LIMIT, t->off, what, "nested deeper than %d levels",
			       DER_MAX_DEPTH);
	memset(sub, 0, sizeof(*sub));
	sub->p = t->val.p;
	sub->n = t->val.n;
	sub->base = d->base + (size_t)(t->val.p - d->p);
	sub->depth = d->depth + 1;
	sub->eb = d->eb;
	return 0;
}

int der_enter(struct der_dec *d, uint8_t tag, const char *what, struct der_dec *sub,
	      struct der_tlv *t)
{
	struct der_tlv tmp;
	int r;

	if (!t)
		t = &tmp;
	if (!(tag & DER_CONSTRUCTED))
		return fail_at(d, E_INVAL, der_dec_offset(d), what, "tag 0x%02x is not constructed",
			       tag);
	r = der_read(d, tag, what, t);
	if (r < 0)
		return r;
	return der_open(d, t, what, sub);
}

int der_read_bool(struct der_dec *d, const char *what, bool *v)
{
	struct der_tlv t;
	int r = der_read(d, DER_BOOLEAN, what, &t);

	if (r < 0)
		return r;
	/* X.690 §11.1: DER encodes TRUE as 0xff only. */
	if (t.val.n != 1 || (t.val.p[0] != 0x00 && t.val.p[0] != 0xff))
		return fail_at(d, E_PARSE, t.off, what, "BOOLEAN must be one octet 0x00 or 0xff");
	*v = t.val.p[0] != 0;
	return 0;
}

int der_read_null(struct der_dec *d, const char *what)
{
	struct der_tlv t;
	int r = der_read(d, DER_NULL, what, &t);

	if (r < 0)
		return r;
	if (t.val.n != 0)
		return fail_at(d, E_PARSE, t.off, what, "NULL with contents");
	return 0;
}

int der_read_int(struct der_dec *d, const char *what, int64_t min, int64_t max, int64_t *v)
{
	struct der_tlv t;
	const char *why;
	uint64_t u;
	int r = der_read(d, DER_INTEGER, what, &t);

	if (r < 0)
		return r;
	if ((why = der_int_check(t.val.p, t.val.n)))
		return fail_at(d, E_PARSE, t.off, what, "%s", why);
	if (t.val.n > 8)
		return fail_at(d, E_PARSE, t.off, what, "INTEGER out of range %lld..%lld",
			       (long long)min, (long long)max);
	u = (t.val.p[0] & 0x80) ? UINT64_MAX : 0;
	for (size_t i = 0; i < t.val.n; i++)
		u = (u << 8) | t.val.p[i];
	*v = (int64_t)u;
	if (*v < min || *v > max)
		return fail_at(d, E_PARSE, t.off, what, "INTEGER %lld out of range %lld..%lld",
			       (long long)*v, (long long)min, (long long)max);
	return 0;
}

int der_read_uint(struct der_dec *d, uint8_t tag, const char *what, size_t max_len,
		  struct slice *mag)
{
	struct der_tlv t;
	const char *why;
	int r = der_read(d, tag, what, &t);

	if (r < 0)
		return r;
	if ((why = der_int_check(t.val.p, t.val.n)))
		return fail_at(d, E_PARSE, t.off, what, "%s", why);
	if (t.val.p[0] & 0x80)
		return fail_at(d, E_PARSE, t.off, what, "negative INTEGER");
	mag->p = t.val.p;
	mag->n = t.val.n;
	if (mag->p[0] == 0) {
		mag->p++;
		mag->n--;
	}
	if (max_len && mag->n > max_len)
		return fail_at(d, E_PARSE, t.off, what, "INTEGER longer than %zu octets", max_len);
	return 0;
}

int der_read_oid(struct der_dec *d, const char *what, struct slice *oid)
{
	struct der_tlv t;
	const char *why;
	int r = der_read(d, DER_OID, what, &t);

	if (r < 0)
		return r;
	if ((why = der_oid_check(t.val.p, t.val.n)))
		return fail_at(d, E_PARSE, t.off, what, "%s", why);
	*oid = t.val;
	return 0;
}

static int bits_check(const struct der_dec *d, const struct der_tlv *t, const char *what,
		      struct slice *bytes, unsigned *unused)
{
	unsigned u;

	if (t->val.n == 0)
		return fail_at(d, E_PARSE, t->off, what, "BIT STRING without unused-bits octet");
	u = t->val.p[0];
	if (u > 7)
		return fail_at(d, E_PARSE, t->off, what, "BIT STRING unused-bits count %u > 7", u);
	if (t->val.n == 1 && u != 0)
		return fail_at(d, E_PARSE, t->off, what, "empty BIT STRING with unused bits");
	/* X.690 §11.2.1: the unused bits are zero in DER. */
	if (t->val.n > 1 && (t->val.p[t->val.n - 1] & ((1u << u) - 1)))
		return fail_at(d, E_PARSE, t->off, what, "BIT STRING padding bits not zero");
	bytes->p = t->val.p + 1;
	bytes->n = t->val.n - 1;
	*unused = u;
	return 0;
}

int der_read_bits(struct der_dec *d, uint8_t tag, const char *what, struct slice *bytes,
		  unsigned *unused)
{
	struct der_tlv t;
	int r = der_read(d, tag, what, &t);

	if (r < 0)
		return r;
	return bits_check(d, &t, what, bytes, unused);
}

int der_read_named_bits(struct der_dec *d, const char *what, uint32_t *bits)
{
	struct der_tlv t;
	struct slice b;
	unsigned unused;
	int r = der_read(d, DER_BIT_STRING, what, &t);

	if (r < 0 || (r = bits_check(d, &t, what, &b, &unused)) < 0)
		return r;
	if (b.n > 4)
		return fail_at(d, E_PARSE, t.off, what, "more than 32 named bits");
	/* X.690 §11.2.2: a NamedBitList has its trailing zero bits removed. */
	if (b.n > 0 && !(b.p[b.n - 1] & (1u << unused)))
		return fail_at(d, E_PARSE, t.off, what, "named bit list has trailing zero bits");
	*bits = 0;
	for (size_t i = 0; i < b.n * 8; i++)
		if (b.p[i / 8] & (0x80u >> (i % 8)))
			*bits |= 1u << i;
	return 0;
}

int der_read_octets(struct der_dec *d, uint8_t tag, const char *what, struct slice *s)
{
	struct der_tlv t;
	int r = der_read(d, tag, what, &t);

	if (r < 0)
		return r;
	*s = t.val;
	return 0;
}

int der_read_string(struct der_dec *d, uint8_t tag, uint8_t type, const char *what, struct slice *s)
{
	struct der_tlv t;
	const char *why;
	int r = der_read(d, tag, what, &t);

	if (r < 0)
		return r;
	if ((why = der_string_check(type, t.val.p, t.val.n)))
		return fail_at(d, E_PARSE, t.off, what, "%s", why);
	*s = t.val;
	return 0;
}

int der_read_time(struct der_dec *d, const char *what, int64_t *unix_secs, uint8_t *type_out)
{
	struct der_tlv t;
	const char *why;
	char b[24];
	int pk = der_peek(d);
	int r;

	if (pk != DER_UTC_TIME && pk != DER_GENERALIZED_TIME) {
		if (pk < 0)
			return fail_at(d, E_PARSE, der_dec_offset(d), what,
				       "missing (end of data)");
		return fail_at(d, E_PARSE, der_dec_offset(d), what,
			       "expected UTCTime or GeneralizedTime, found %s",
			       der_tag_name((uint8_t)pk, b, sizeof(b)));
	}
	r = der_read_any(d, what, &t);
	if (r < 0)
		return r;
	if ((why = der_time_check(t.tag, t.val.p, t.val.n, unix_secs)))
		return fail_at(d, E_PARSE, t.off, what, "%s", why);
	if (type_out)
		*type_out = t.tag;
	return 0;
}

/* ---- whole-value walk ------------------------------------------------------------------------ */

static int check_primitive(const struct der_dec *d, const struct der_tlv *t)
{
	const char *why = NULL;
	char b[24];
	const char *name = der_tag_name(t->tag, b, sizeof(b));

	switch (t->tag) {
	case DER_BOOLEAN:
		if (t->val.n != 1 || (t->val.p[0] != 0 && t->val.p[0] != 0xff))
			why = "BOOLEAN must be one octet 0x00 or 0xff";
		break;
	case DER_INTEGER: why = der_int_check(t->val.p, t->val.n); break;
	case DER_NULL: why = t->val.n ? "NULL with contents" : NULL; break;
	case DER_OID: why = der_oid_check(t->val.p, t->val.n); break;
	case DER_BIT_STRING: {
		struct slice s;
		unsigned u;
		return bits_check(d, t, name, &s, &u);
	}
	case DER_UTC_TIME:
	case DER_GENERALIZED_TIME: why = der_time_check(t->tag, t->val.p, t->val.n, NULL); break;
	case DER_UTF8_STRING:
	case DER_PRINTABLE_STRING:
	case DER_IA5_STRING:
	case DER_VISIBLE_STRING:
	case DER_BMP_STRING:
	case DER_UNIVERSAL_STRING: why = der_string_check(t->tag, t->val.p, t->val.n); break;
	default:
		/* Universal constructed encodings of primitive types are BER only (X.690 §10.2). */
		if ((t->tag & 0xc0) == 0 && (t->tag & DER_CONSTRUCTED) && t->tag != DER_SEQUENCE &&
		    t->tag != DER_SET)
			why = "constructed form of a primitive type (BER, not DER)";
		break;
	}
	if (why)
		return fail_at(d, E_PARSE, t->off, name, "%s", why);
	return 0;
}

static int check_walk(struct der_dec *d)
{
	while (der_dec_more(d)) {
		struct der_tlv t;
		struct der_dec sub;
		int r = der_read_any(d, "value", &t);
		if (r < 0)
			return r;
		if ((t.tag & DER_CONSTRUCTED) &&
		    (t.tag == DER_SEQUENCE || t.tag == DER_SET || (t.tag & 0xc0) != 0)) {
			if ((r = der_open(d, &t, "value", &sub)) < 0 || (r = check_walk(&sub)) < 0)
				return r;
			continue;
		}
		if ((r = check_primitive(d, &t)) < 0)
			return r;
	}
	return 0;
}

int der_check(const void *p, size_t n, struct errbuf *eb)
{
	struct der_dec d, sub;
	struct der_tlv t;
	int r;

	der_dec_init(&d, p, n, eb);
	if ((r = der_read_any(&d, "value", &t)) < 0)
		return r;
	if ((r = der_dec_done(&d, "value")) < 0)
		return r;
	if ((t.tag & DER_CONSTRUCTED) &&
	    (t.tag == DER_SEQUENCE || t.tag == DER_SET || (t.tag & 0xc0) != 0)) {
		if ((r = der_open(&d, &t, "value", &sub)) < 0)
			return r;
		return check_walk(&sub);
	}
	return check_primitive(&d, &t);
}
