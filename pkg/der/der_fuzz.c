/* libFuzzer target for the DER decoder: strict checks, and every accepted value re-encodes exactly.
 *
 * der_check() must never crash and must fill the errbuf on failure. Every input it accepts is
 * rebuilt TLV by TLV with the encoder (constructed values with der_begin/der_end, primitives
 * through their typed writers: INTEGER via der_put_int/der_put_uint, OID via its dotted text,
 * times via their Unix time, named bits, strings) and must come out byte-identical: DER has one
 * encoding per value, so any difference is a decoder or encoder bug.
 */
#include "pkg/der/der.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "der_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c);          \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static void same(struct der_enc *e, const struct der_tlv *t)
{
	struct slice out;

	ASSERT(der_enc_result(e, &out) == 0);
	ASSERT(out.n == t->raw.n && memcmp(out.p, t->raw.p, out.n) == 0);
}

/* Re-encodes one universal primitive through its typed writer. */
static void typed_round_trip(const struct der_tlv *t)
{
	struct der_enc e;
	struct der_dec d;
	char text[DER_OID_TEXT_MAX];
	int64_t v;

	der_enc_init(&e, 0);
	der_dec_init(&d, t->raw.p, t->raw.n, NULL);
	switch (t->tag) {
	case DER_BOOLEAN: der_put_bool(&e, t->val.p[0] != 0); break;
	case DER_NULL: der_put_null(&e); break;
	case DER_INTEGER:
		if (t->val.n <= 8) {
			ASSERT(der_read_int(&d, "i", INT64_MIN, INT64_MAX, &v) == 0);
			der_put_int(&e, v);
		} else if (!(t->val.p[0] & 0x80)) {
			der_put_uint(&e, DER_INTEGER, t->val.p, t->val.n);
		} else {
			der_put_raw(&e, t->raw.p, t->raw.n);
		}
		break;
	case DER_OID:
		if (der_oid_format(t->val, text, sizeof(text)) == 0)
			der_put_oid(&e, text);
		else
			der_put_oid_bytes(&e, t->val.p, t->val.n);
		break;
	case DER_BIT_STRING: {
		uint32_t bits;
		if (t->val.n <= 5 && der_read_named_bits(&d, "b", &bits) == 0)
			der_put_named_bits(&e, bits);
		else
			der_put_bits(&e, t->val.p + 1, t->val.n - 1, t->val.p[0]);
		break;
	}
	case DER_UTC_TIME:
	case DER_GENERALIZED_TIME:
		ASSERT(der_time_check(t->tag, t->val.p, t->val.n, &v) == NULL);
		if (t->tag == DER_UTC_TIME)
			der_put_utc_time(&e, v);
		else
			der_put_generalized_time(&e, v);
		break;
	case DER_UTF8_STRING:
	case DER_PRINTABLE_STRING:
	case DER_IA5_STRING:
	case DER_VISIBLE_STRING:
	case DER_BMP_STRING:
	case DER_UNIVERSAL_STRING:
		der_put_string(&e, t->tag, (const char *)t->val.p, t->val.n);
		break;
	default: der_put_tlv(&e, t->tag, t->val.p, t->val.n); break;
	}
	same(&e, t);
	der_enc_fini(&e);
}

static void rebuild(struct der_dec *d, struct der_enc *e)
{
	while (der_dec_more(d)) {
		struct der_tlv t;
		struct der_dec sub;
		ASSERT(der_read_any(d, "v", &t) == 0);
		if ((t.tag & DER_CONSTRUCTED) &&
		    (t.tag == DER_SEQUENCE || t.tag == DER_SET || (t.tag & 0xc0) != 0)) {
			ASSERT(der_open(d, &t, "v", &sub) == 0);
			der_begin(e, t.tag);
			rebuild(&sub, e);
			der_end(e);
			continue;
		}
		typed_round_trip(&t);
		der_put_tlv(e, t.tag, t.val.p, t.val.n);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errbuf eb;
	struct der_dec d;
	struct der_enc e;
	struct slice out;
	int r;

	errbuf_clear(&eb);
	r = der_check(data, size, &eb);
	if (r < 0) {
		ASSERT(eb.msg[0] != '\0' && strstr(eb.msg, "offset") != NULL);
		return 0;
	}
	der_dec_init(&d, data, size, NULL);
	der_enc_init(&e, 16);
	rebuild(&d, &e);
	ASSERT(der_enc_result(&e, &out) == 0);
	ASSERT(out.n == size && memcmp(out.p, data, size) == 0);
	der_enc_fini(&e);
	return 0;
}
