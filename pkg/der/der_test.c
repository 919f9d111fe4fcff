/* Unit tests for the DER encoder and the strict decoder. */
#include "pkg/der/der.h"

#include "test/unit.h"

#include <stdlib.h>

static const uint8_t *enc_bytes(struct der_enc *e, size_t *n)
{
	struct slice s;

	if (der_enc_result(e, &s) < 0) {
		*n = 0;
		return NULL;
	}
	*n = s.n;
	return s.p;
}

#define CHECK_ENC(e, ...)                                                                          \
	do {                                                                                       \
		static const uint8_t want_[] = {__VA_ARGS__};                                      \
		size_t n_;                                                                         \
		const uint8_t *got_ = enc_bytes(e, &n_);                                           \
		CHECK(got_ != NULL);                                                               \
		CHECK_INT(n_, sizeof(want_));                                                      \
		if (got_ && n_ == sizeof(want_))                                                   \
			CHECK_MEM(got_, want_, n_);                                                \
	} while (0)

TEST(enc_integers)
{
	static const struct {
		int64_t v;
		uint8_t b[9];
		size_t n;
	} cases[] = {
		{0, {0x00}, 1},
		{127, {0x7f}, 1},
		{128, {0x00, 0x80}, 2},
		{256, {0x01, 0x00}, 2},
		{-1, {0xff}, 1},
		{-128, {0x80}, 1},
		{-129, {0xff, 0x7f}, 2},
		{INT64_MAX, {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8},
		{INT64_MIN, {0x80, 0, 0, 0, 0, 0, 0, 0}, 8},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct der_enc e;
		struct der_dec d;
		struct slice s;
		int64_t v = 42;
		der_enc_init(&e, 0);
		der_put_int(&e, cases[i].v);
		REQUIRE(der_enc_result(&e, &s) == 0);
		CHECK_INT(s.n, cases[i].n + 2);
		CHECK_INT(s.p[0], DER_INTEGER);
		CHECK_INT(s.p[1], cases[i].n);
		CHECK_MEM(s.p + 2, cases[i].b, cases[i].n);
		der_dec_init(&d, s.p, s.n, NULL);
		CHECK_INT(der_read_int(&d, "i", INT64_MIN, INT64_MAX, &v), 0);
		CHECK(v == cases[i].v);
		der_enc_fini(&e);
	}
}

TEST(enc_uint_magnitude)
{
	struct der_enc e;
	static const uint8_t hi[] = {0x00, 0x00, 0x80, 0x01};
	static const uint8_t zero[] = {0x00, 0x00};

	der_enc_init(&e, 0);
	der_put_uint(&e, DER_INTEGER, hi, sizeof(hi));
	der_put_uint(&e, DER_INTEGER, zero, sizeof(zero));
	der_put_uint(&e, DER_CTX(2), hi + 3, 1);
	CHECK_ENC(&e, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x01, 0x00, 0x82, 0x01, 0x01);
	der_enc_fini(&e);
}

TEST(enc_nested_lengths_patched)
{
	struct der_enc e;
	uint8_t big[300];
	struct slice s;
	struct der_dec d, sub, sub2;
	struct der_tlv t;

	memset(big, 0xab, sizeof(big));
	der_enc_init(&e, 8); /* forces growth while patching */
	der_begin(&e, DER_SEQUENCE);
	der_begin(&e, DER_CTX_CONS(3));
	der_put_octets(&e, big, 200);
	der_end(&e);
	der_put_octets(&e, big, 300);
	der_end(&e);
	REQUIRE(der_enc_result(&e, &s) == 0);
	/* 30 82 01 fe | a3 81 cb | 04 81 c8 <200> | 04 82 01 2c <300> */
	CHECK_INT(s.n, 4 + 3 + 3 + 200 + 4 + 300);
	CHECK_INT(s.p[0], 0x30);
	CHECK_INT(s.p[1], 0x82);
	CHECK_INT(s.p[2], 0x01);
	CHECK_INT(s.p[3], 0xfe);
	CHECK_INT(s.p[4], 0xa3);
	CHECK_INT(s.p[5], 0x81);
	CHECK_INT(s.p[6], 0xcb);
	CHECK_INT(s.p[7], 0x04);
	CHECK_INT(s.p[8], 0x81);
	CHECK_INT(s.p[9], 0xc8);
	CHECK_INT(s.p[210], 0x04);
	CHECK_INT(s.p[211], 0x82);
	der_dec_init(&d, s.p, s.n, NULL);
	REQUIRE(der_enter(&d, DER_SEQUENCE, "outer", &sub, NULL) == 0);
	REQUIRE(der_enter(&sub, DER_CTX_CONS(3), "explicit", &sub2, NULL) == 0);
	REQUIRE(der_read(&sub2, DER_OCTET_STRING, "a", &t) == 0);
	CHECK_INT(t.val.n, 200);
	CHECK_INT(t.off, 7);
	CHECK_INT(der_dec_done(&sub2, "explicit"), 0);
	REQUIRE(der_read(&sub, DER_OCTET_STRING, "b", &t) == 0);
	CHECK_INT(t.val.n, 300);
	CHECK_INT(der_dec_done(&sub, "outer"), 0);
	CHECK_INT(der_dec_done(&d, "all"), 0);
	CHECK_INT(der_check(s.p, s.n, NULL), 0);
	der_enc_fini(&e);
}

TEST(enc_large_value_three_length_octets)
{
	struct der_enc e;
	uint8_t *big = calloc(1, 70000);
	struct slice s;
	struct der_dec d;
	struct slice o;

	der_enc_init(&e, 0);
	der_begin(&e, DER_SEQUENCE);
	der_put_octets(&e, big, 70000);
	der_end(&e);
	REQUIRE(der_enc_result(&e, &s) == 0);
	CHECK_INT(s.p[1], 0x83);
	der_dec_init(&d, s.p + 5, s.n - 5, NULL); /* skip 30 83 01 11 75 */
	CHECK_INT(s.p[2] << 16 | s.p[3] << 8 | s.p[4], 70000 + 5);
	REQUIRE(der_read_octets(&d, DER_OCTET_STRING, "o", &o) == 0);
	CHECK_INT(o.n, 70000);
	der_enc_fini(&e);
	free(big);
}

TEST(enc_oids)
{
	struct der_enc e;
	uint8_t b[DER_OID_MAX];
	char text[DER_OID_TEXT_MAX];
	int n;

	der_enc_init(&e, 0);
	der_put_oid(&e, "1.2.840.10045.2.1");
	der_put_oid(&e, "2.5.29.17");
	der_put_oid(&e, "2.999.3");
	CHECK_ENC(&e, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x03, 0x55, 0x1d,
		  0x11, 0x06, 0x03, 0x88, 0x37, 0x03);
	der_enc_fini(&e);

	static const char *const bad[] = {
		"",	"1",	"3.1",	"1.40", "1..2",
		"01.2", "1.2.", ".1.2", "1.2a", "1.2.99999999999999999999"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		CHECK(der_oid_parse(bad[i], b, sizeof(b)) == -E_INVAL);
	CHECK_INT(der_oid_parse("1.2.3", b, 1), -E_LIMIT);

	static const char *const good[] = {"0.0", "1.39", "2.5.29.37.0", "1.3.6.1.5.5.7.3.2",
					   "2.25.18446744073709551615"};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		n = der_oid_parse(good[i], b, sizeof(b));
		REQUIRE(n > 0);
		CHECK_INT(der_oid_format((struct slice){b, (size_t)n}, text, sizeof(text)), 0);
		CHECK_STR(text, good[i]);
	}
	n = der_oid_parse("1.2.840.10045", b, sizeof(b));
	CHECK_INT(der_oid_format((struct slice){b, (size_t)n}, text, 4), -E_LIMIT);
	CHECK_STR(text, "1.2");

	der_enc_init(&e, 0);
	der_put_oid(&e, "1.40");
	CHECK_INT(der_enc_result(&e, &(struct slice){0}), -E_INVAL);
	der_put_null(&e); /* sticky: still the first error */
	CHECK_INT(der_enc_result(&e, &(struct slice){0}), -E_INVAL);
	der_enc_fini(&e);
}

TEST(enc_bool_null_bits_strings)
{
	struct der_enc e;
	static const uint8_t k[2] = {0x12, 0x30};

	der_enc_init(&e, 0);
	der_put_bool(&e, true);
	der_put_bool(&e, false);
	der_put_null(&e);
	der_put_named_bits(&e, 1u << 0 | 1u << 2); /* digitalSignature, keyEncipherment */
	der_put_named_bits(&e, 1u << 5 | 1u << 6); /* keyCertSign, cRLSign */
	der_put_named_bits(&e, 1u << 8);	   /* decipherOnly */
	der_put_bits(&e, k, 2, 4);
	der_put_string(&e, DER_PRINTABLE_STRING, "ab", 2);
	der_put_tlv(&e, DER_CTX(6), "u", 1);
	CHECK_ENC(&e, 0x01, 0x01, 0xff, 0x01, 0x01, 0x00, 0x05, 0x00, 0x03, 0x02, 0x05, 0xa0, 0x03,
		  0x02, 0x01, 0x06, 0x03, 0x03, 0x07, 0x00, 0x80, 0x03, 0x03, 0x04, 0x12, 0x30,
		  0x13, 0x02, 'a', 'b', 0x86, 0x01, 'u');
	der_enc_fini(&e);

	der_enc_init(&e, 0);
	der_put_string(&e, DER_PRINTABLE_STRING, "a@b", 3);
	CHECK_INT(der_enc_result(&e, &(struct slice){0}), -E_INVAL);
	der_enc_fini(&e);
	der_enc_init(&e, 0);
	der_put_bits(&e, k, 2, 5); /* 0x30 has a padding bit set under 5 unused bits */
	CHECK_INT(der_enc_result(&e, &(struct slice){0}), -E_INVAL);
	der_enc_fini(&e);
}

TEST(enc_unbalanced_and_depth)
{
	struct der_enc e;

	der_enc_init(&e, 0);
	der_begin(&e, DER_SEQUENCE);
	CHECK_INT(der_enc_result(&e, &(struct slice){0}), -E_STATE);
	der_end(&e);
	der_end(&e);
	CHECK_INT(der_enc_result(&e, &(struct slice){0}), -E_STATE);
	der_enc_fini(&e);

	der_enc_init(&e, 0);
	for (int i = 0; i < DER_MAX_DEPTH + 1; i++)
		der_begin(&e, DER_SEQUENCE);
	CHECK_INT(der_enc_result(&e, &(struct slice){0}), -E_LIMIT);
	der_enc_fini(&e);

	der_enc_init(&e, 0);
	der_begin(&e, 0x1f); /* high tag numbers are not supported */
	CHECK_INT(der_enc_result(&e, &(struct slice){0}), -E_INVAL);
	der_enc_fini(&e);
}

TEST(enc_times_rfc5280_choice)
{
	struct der_enc e;
	int64_t t2049 = der_days_from_civil(2049, 12, 31) * 86400 + 23 * 3600 + 59 * 60 + 59;
	int64_t t1949 = der_days_from_civil(1949, 12, 31) * 86400;

	der_enc_init(&e, 0);
	der_put_time(&e, t2049);
	der_put_time(&e, t2049 + 1);
	der_put_time(&e, t1949 + 86400);
	der_put_time(&e, t1949);
	CHECK_ENC(&e, 0x17, 0x0d, '4', '9', '1', '2', '3', '1', '2', '3', '5', '9', '5', '9', 'Z',
		  0x18, 0x0f, '2', '0', '5', '0', '0', '1', '0', '1', '0', '0', '0', '0', '0', '0',
		  'Z', 0x17, 0x0d, '5', '0', '0', '1', '0', '1', '0', '0', '0', '0', '0', '0', 'Z',
		  0x18, 0x0f, '1', '9', '4', '9', '1', '2', '3', '1', '0', '0', '0', '0', '0', '0',
		  'Z');
	der_enc_fini(&e);

	der_enc_init(&e, 0);
	der_put_utc_time(&e, t2049 + 1); /* 2050 cannot be a UTCTime */
	CHECK_INT(der_enc_result(&e, &(struct slice){0}), -E_INVAL);
	der_enc_fini(&e);
	der_enc_init(&e, 0);
	der_put_time(&e, der_days_from_civil(10000, 1, 1) * 86400);
	CHECK_INT(der_enc_result(&e, &(struct slice){0}), -E_INVAL);
	der_enc_fini(&e);
}

TEST(civil_time_round_trip)
{
	static const int64_t ts[] = {0,		 -1,	       951782400 /* 2000-02-29 */,
				     4107542399, 253402300799, -62167219200};
	char buf[32];

	for (size_t i = 0; i < ARRAY_LEN(ts); i++) {
		int64_t y;
		unsigned mo, d, h, mi, s;
		der_civil_from_unix(ts[i], &y, &mo, &d, &h, &mi, &s);
		CHECK(der_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s == ts[i]);
	}
	der_time_format(951782400, buf, sizeof(buf));
	CHECK_STR(buf, "2000-02-29T00:00:00Z");
	der_time_format(-1, buf, sizeof(buf));
	CHECK_STR(buf, "1969-12-31T23:59:59Z");
}

/* Decodes `in` as one value with der_check and returns the message ("" if accepted). */
static const char *check_msg(const uint8_t *in, size_t n, struct errbuf *eb)
{
	errbuf_clear(eb);
	if (der_check(in, n, eb) == 0)
		return "";
	return eb->msg;
}

#define CHECK_REJECT(substr, ...)                                                                  \
	do {                                                                                       \
		static const uint8_t in_[] = {__VA_ARGS__};                                        \
		struct errbuf eb_;                                                                 \
		CHECK_CONTAINS(check_msg(in_, sizeof(in_), &eb_), substr);                         \
	} while (0)

TEST(dec_rejects_bad_lengths)
{
	CHECK_REJECT("indefinite length", 0x30, 0x80, 0x00, 0x00);
	CHECK_REJECT("must use the short form at offset 0", 0x04, 0x81, 0x01, 0x00);
	CHECK_REJECT("leading zero octet", 0x04, 0x82, 0x00, 0x80, 0x00);
	CHECK_REJECT("exceeds the 1 bytes available", 0x04, 0x02, 0x00);
	CHECK_REJECT("truncated length", 0x04);
	CHECK_REJECT("truncated length", 0x04, 0x82, 0x01);
	CHECK_REJECT("length of 5 octets too large", 0x04, 0x85, 1, 0, 0, 0, 0);
	CHECK_REJECT("high-tag-number form", 0x1f, 0x01, 0x00);
	CHECK_REJECT("1 trailing bytes at offset 2", 0x05, 0x00, 0x00);
	{
		struct errbuf eb;
		CHECK_INT(der_check(NULL, 0, &eb), -E_PARSE);
		CHECK_STR(eb.msg, "value: missing (end of data) at offset 0");
	}
	/* the inner value claims more than its parent holds */
	CHECK_REJECT("value: length 3 exceeds the 2 bytes available at offset 2", 0x30, 0x04, 0x04,
		     0x03, 0x00, 0x00);
}

TEST(dec_rejects_bad_primitives)
{
	CHECK_REJECT("INTEGER not minimally encoded", 0x02, 0x02, 0x00, 0x01);
	CHECK_REJECT("INTEGER not minimally encoded", 0x02, 0x02, 0xff, 0x80);
	CHECK_REJECT("empty INTEGER", 0x02, 0x00);
	CHECK_REJECT("BOOLEAN must be one octet 0x00 or 0xff", 0x01, 0x01, 0x01);
	CHECK_REJECT("BOOLEAN must be one octet", 0x01, 0x02, 0xff, 0xff);
	CHECK_REJECT("NULL with contents", 0x05, 0x01, 0x00);
	CHECK_REJECT("not minimally encoded", 0x06, 0x03, 0x2a, 0x80, 0x01);
	CHECK_REJECT("ends inside a sub-identifier", 0x06, 0x02, 0x2a, 0x86);
	CHECK_REJECT("empty OBJECT IDENTIFIER", 0x06, 0x00);
	CHECK_REJECT("unused-bits count 8 > 7", 0x03, 0x02, 0x08, 0x00);
	CHECK_REJECT("padding bits not zero", 0x03, 0x02, 0x01, 0x01);
	CHECK_REJECT("empty BIT STRING with unused bits", 0x03, 0x01, 0x01);
	CHECK_REJECT("without unused-bits octet", 0x03, 0x00);
	CHECK_REJECT("constructed form of a primitive type", 0x24, 0x03, 0x04, 0x01, 0x00);
	CHECK_REJECT("PrintableString: character not allowed", 0x13, 0x01, '*');
	CHECK_REJECT("invalid UTF-8", 0x0c, 0x02, 0xc0, 0x80);	     /* overlong */
	CHECK_REJECT("invalid UTF-8", 0x0c, 0x03, 0xed, 0xa0, 0x80); /* surrogate */
	CHECK_REJECT("non-ASCII character in IA5String", 0x16, 0x01, 0x80);
	CHECK_REJECT("BMPString length", 0x1e, 0x01, 0x00);
}

#define T(s) (const uint8_t *)(s), sizeof(s) - 1

TEST(dec_time_formats_exact)
{
	int64_t t;

	CHECK(der_time_check(DER_UTC_TIME, T("250102030405Z"), &t) == NULL);
	CHECK(t == der_days_from_civil(2025, 1, 2) * 86400 + 3 * 3600 + 4 * 60 + 5);
	CHECK(der_time_check(DER_UTC_TIME, T("491231235959Z"), &t) == NULL);
	CHECK(t == der_days_from_civil(2049, 12, 31) * 86400 + 86399);
	CHECK(der_time_check(DER_UTC_TIME, T("500101000000Z"), &t) == NULL);
	CHECK(t == der_days_from_civil(1950, 1, 1) * 86400);
	CHECK(der_time_check(DER_GENERALIZED_TIME, T("20000229000000Z"), &t) == NULL);
	CHECK(der_time_check(DER_GENERALIZED_TIME, T("99991231235959Z"), &t) == NULL);
	CHECK(t == 253402300799);

	CHECK_STR(der_time_check(DER_UTC_TIME, T("2501020304Z"), &t),
		  "UTCTime must be YYMMDDHHMMSSZ");
	CHECK_STR(der_time_check(DER_UTC_TIME, T("2501020304050"), &t), "time must end in Z (UTC)");
	CHECK_STR(der_time_check(DER_UTC_TIME, T("250102030405+0100"), &t),
		  "UTCTime must be YYMMDDHHMMSSZ");
	CHECK_STR(der_time_check(DER_GENERALIZED_TIME, T("20250102030405.5Z"), &t),
		  "GeneralizedTime must be YYYYMMDDHHMMSSZ");
	CHECK_STR(der_time_check(DER_UTC_TIME, T("251302030405Z"), &t), "month out of range");
	CHECK_STR(der_time_check(DER_GENERALIZED_TIME, T("19000229000000Z"), &t),
		  "day out of range");
	CHECK_STR(der_time_check(DER_UTC_TIME, T("250102240000Z"), &t), "time of day out of range");
	CHECK_STR(der_time_check(DER_UTC_TIME, T("250102235960Z"), &t), "time of day out of range");
	CHECK_STR(der_time_check(DER_UTC_TIME, T("25010203 405Z"), &t), "non-digit in time");
	CHECK_REJECT("UTCTime: UTCTime must be YYMMDDHHMMSSZ at offset 0", 0x17, 0x03, '2', '5',
		     'Z');
}

TEST(dec_typed_readers)
{
	static const uint8_t in[] = {
		0x30, 0x1a,		      /* SEQUENCE */
		0x01, 0x01, 0xff,	      /* TRUE */
		0x02, 0x02, 0x00, 0x80,	      /* 128 */
		0x02, 0x01, 0x80,	      /* -128 */
		0x03, 0x02, 0x05, 0xa0,	      /* named bits 0 and 2 */
		0x03, 0x03, 0x07, 0x00, 0x80, /* named bit 8 */
		0x86, 0x01, 'x',	      /* [6] IMPLICIT IA5String */
		0x03, 0x02, 0x00, 0x02,	      /* trailing zero bit */
	};
	struct der_dec d, s;
	struct errbuf eb;
	struct slice mag, str;
	bool b = false;
	int64_t v;
	uint32_t bits;

	der_dec_init(&d, in, sizeof(in), &eb);
	REQUIRE(der_enter(&d, DER_SEQUENCE, "seq", &s, NULL) == 0);
	CHECK_INT(der_read_null(&s, "null"), -E_PARSE);
	CHECK_STR(eb.msg, "null: expected NULL, found BOOLEAN at offset 2");
	CHECK_INT(der_read_bool(&s, "b", &b), 0);
	CHECK(b);
	CHECK_INT(der_read_uint(&s, DER_INTEGER, "u", 1, &mag), 0);
	CHECK_INT(mag.n, 1);
	CHECK_INT(mag.p[0], 0x80);
	CHECK_INT(der_read_uint(&s, DER_INTEGER, "neg", 0, &mag), -E_PARSE);
	CHECK_STR(eb.msg, "neg: negative INTEGER at offset 9");
	CHECK_INT(der_read_named_bits(&s, "ku", &bits), 0);
	CHECK_INT(bits, 0x5);
	CHECK_INT(der_read_named_bits(&s, "ku", &bits), 0);
	CHECK_INT(bits, 0x100);
	CHECK_INT(der_read_opt(&s, DER_CTX(1), "dns", NULL), 0);
	CHECK_INT(der_read_string(&s, DER_CTX(6), DER_IA5_STRING, "uri", &str), 0);
	CHECK_INT(str.n, 1);
	CHECK_INT(der_read_named_bits(&s, "ku2", &bits), -E_PARSE);
	CHECK_STR(eb.msg, "ku2: named bit list has trailing zero bits at offset 24");
	CHECK_INT(der_dec_done(&s, "seq"), 0); /* a failed read still consumed the TLV */

	static const uint8_t i9[] = {0x02, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0};
	der_dec_init(&d, i9, sizeof(i9), &eb);
	CHECK_INT(der_read_int(&d, "version", 0, 2, &v), -E_PARSE);
	CHECK_CONTAINS(eb.msg, "version: INTEGER out of range 0..2");
	static const uint8_t i5[] = {0x02, 0x01, 0x05};
	der_dec_init(&d, i5, sizeof(i5), &eb);
	CHECK_INT(der_read_int(&d, "version", 0, 2, &v), -E_PARSE);
	CHECK_STR(eb.msg, "version: INTEGER 5 out of range 0..2 at offset 0");
}

TEST(dec_depth_limited)
{
	uint8_t in[2 * 40];
	struct errbuf eb;

	for (int i = 0; i < 40; i++) {
		in[2 * i] = 0x30;
		in[2 * i + 1] = (uint8_t)(2 * (39 - i));
	}
	CHECK_INT(der_check(in, sizeof(in), &eb), -E_LIMIT);
	CHECK_CONTAINS(eb.msg, "nested deeper than 32 levels");
	/* 20 levels are fine */
	CHECK_INT(der_check(in + 40, 40, &eb), 0);
}

TEST(dec_tag_names_in_errors)
{
	static const uint8_t in[] = {0xa3, 0x00};
	struct der_dec d;
	struct der_tlv t;
	struct errbuf eb;

	der_dec_init(&d, in, sizeof(in), &eb);
	CHECK_INT(der_read(&d, DER_SEQUENCE, "extensions", &t), -E_PARSE);
	CHECK_STR(eb.msg, "extensions: expected SEQUENCE, found [3] at offset 0");
	CHECK_INT(der_read(&d, DER_CTX(3), "x", &t), -E_PARSE);
	CHECK_STR(eb.msg, "x: expected [3] primitive, found [3] at offset 0");
	CHECK_INT(der_read_opt(&d, DER_CTX_CONS(3), "x", &t), 1);
	CHECK(!der_dec_more(&d));
	CHECK_INT(der_peek(&d), -1);
}
