/* Tests for errors, errbuf/errlist, allocation helpers, randomness and log formatting. */
#include "pkg/base/base.h"
#include "test/unit.h"

#include <stdlib.h>

TEST(errbuf_set_returns_negative_code)
{
	struct errbuf eb;
	CHECK_INT(errbuf_set(&eb, E_PARSE, "bad %s at %d", "thing", 7), -E_PARSE);
	CHECK_INT(eb.code, E_PARSE);
	CHECK_STR(eb.msg, "bad thing at 7");
	errbuf_prefix(&eb, "file %s", "x.json");
	CHECK_STR(eb.msg, "file x.json: bad thing at 7");
	CHECK_INT(errbuf_set(NULL, -E_IO, "ignored"), -E_IO);
	CHECK_STR(err_str(-E_TIMEOUT), "timeout");
	CHECK_STR(err_str(9999), "unknown error");
}

TEST(errlist_collects_and_joins)
{
	struct errlist el = {0};
	char *j = errlist_join(&el);
	CHECK_STR(j, "");
	free(j);
	errlist_add(&el, "a: %d", 1);
	errlist_add(&el, "b");
	CHECK_INT(el.n, 2);
	j = errlist_join(&el);
	CHECK_STR(j, "a: 1\nb");
	free(j);
	errlist_fini(&el);
	CHECK_INT(el.n, 0);
}

TEST(rand_below_stays_in_range)
{
	int seen[5] = {0};
	for (int i = 0; i < 500; i++) {
		uint64_t r = rand_below(5);
		REQUIRE(r < 5);
		seen[r]++;
	}
	for (int i = 0; i < 5; i++)
		CHECK(seen[i] > 0);
	CHECK_INT(rand_below(1), 0);
}

TEST(utf8_and_hex_helpers)
{
	CHECK(utf8_valid((const uint8_t *)"plain", 5));
	CHECK(utf8_valid((const uint8_t *)"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
	CHECK(!utf8_valid((const uint8_t *)"\xc0\xaf", 2));	    /* overlong '/' */
	CHECK(!utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));	    /* surrogate U+D800 */
	CHECK(!utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
	CHECK(!utf8_valid((const uint8_t *)"\xe2\x82", 2));	    /* truncated */
	CHECK_INT(utf8_seq_len((const uint8_t *)"\xe2\x82\xac", 3), 3);
	CHECK_INT(hex_digit_value('7'), 7);
	CHECK_INT(hex_digit_value('F'), 15);
	CHECK_INT(hex_digit_value('g'), -1);
	CHECK_INT(hex_digit_value(-3), -1);
}

TEST(str_copy_bounds_and_hex)
{
	char b[5];

	CHECK_INT(str_copyn(b, sizeof(b), "abcdefgh", 8), 4);
	CHECK_STR(b, "abcd");
	CHECK_INT(str_copyn(b, sizeof(b), "ab\0cd", 5), 2); /* stops at a NUL, like "%.*s" */
	CHECK_STR(b, "ab");
	CHECK_INT(str_copyn(b, sizeof(b), NULL, 0), 0);
	CHECK_STR(b, "");
	CHECK_INT(str_copy(b, sizeof(b), "xyz"), 3);
	CHECK_STR(b, "xyz");
	CHECK_INT(str_copy(b, sizeof(b), NULL), 0);
	CHECK_STR(b, "");
	char h[17] = {0};
	str_hex(h, 0x1234abcdull, 8);
	CHECK_STR(h, "1234abcd");
	str_hex(h, 0xfedcba9876543210ull, 16);
	CHECK_STR(h, "fedcba9876543210");
	str_hex(h, 0xabcdefull, 3); /* the low digits only */
	CHECK(memcmp(h, "def", 3) == 0);
}

TEST(secure_wipe_zeroes)
{
	uint8_t key[32];
	memset(key, 0xab, sizeof(key));
	secure_wipe(key, sizeof(key));
	for (size_t i = 0; i < sizeof(key); i++)
		CHECK_INT(key[i], 0);
}

TEST(log_text_quotes_values_that_need_it)
{
	char line[512];
	struct log_field f[] = {LF_STR("source", "/etc/mesh.json"),
				LF_STR("error", "bad \"x\" = y"),
				LF_U64("version", 3),
				LF_I64("delta", -2),
				LF_BOOL("ok", true),
				LF_STR("empty", "")};
	log_format_line(line, sizeof(line), LOG_FMT_TEXT, 1700000000123, LOG_WARN, "config reload",
			f, ARRAY_LEN(f));
	CHECK_STR(line,
		  "2023-11-14T22:13:20.123Z level=warn msg=\"config reload\" "
		  "source=/etc/mesh.json error=\"bad \\\"x\\\" = y\" version=3 delta=-2 ok=true "
		  "empty=\"\"");
}

TEST(log_json_escapes_control_bytes)
{
	char line[512];
	struct log_field f[] = {LF_STR("path", "a\nb\x01"), LF_U64("n", 42)};
	log_format_line(line, sizeof(line), LOG_FMT_JSON, 0, LOG_INFO, "hi \"there\"", f, 2);
	CHECK_STR(line, "{\"time\":\"1970-01-01T00:00:00.000Z\",\"level\":\"info\","
			"\"msg\":\"hi \\\"there\\\"\",\"path\":\"a\\nb\\u0001\",\"n\":42}");
}

TEST(log_format_truncates_safely)
{
	char line[16];
	size_t n = log_format_line(line, sizeof(line), LOG_FMT_TEXT, 0, LOG_INFO, "long message",
				   NULL, 0);
	CHECK_INT(n, 15);
	CHECK_INT(strlen(line), 15);
}

TEST(log_level_parse_and_runtime_change)
{
	CHECK_INT(log_level_parse("debug"), LOG_DEBUG);
	CHECK_INT(log_level_parse("WARNING"), LOG_WARN);
	CHECK_INT(log_level_parse("loud"), -E_INVAL);
	log_set_level(LOG_ERROR);
	CHECK(!log_enabled(LOG_INFO));
	CHECK(log_enabled(LOG_ERROR));
	log_set_level(LOG_TRACE);
	CHECK(log_enabled(LOG_TRACE));
	log_set_level(LOG_INFO);
}
