/* Unit tests for pkg/json: error locations, strictness, limits, duplicates, paths, integers,
 * writer. */
#include "pkg/json/json.h"
#include "test/unit.h"

#include <stdlib.h>

/* Parses s; on failure returns the formatted error line in a static buffer, else "ok". */
static const char *perr(const char *s, const struct json_opts *o)
{
	static char line[512];
	struct json_error je;
	cJSON *root = NULL;

	if (json_parse(s, strlen(s), o, &root, &je) == 0) {
		json_free(root);
		return "ok";
	}
	json_error_format(&je, "t.json", line, sizeof(line));
	return line;
}

TEST(json_parse_ok_and_values)
{
	const char *s =
		"\xef\xbb\xbf {\"a\": [1, -2, 3.5e1, true, null, \"x\\u00e9\\ud83d\\ude00\"]}\n";
	struct json_error je;
	cJSON *root = NULL;
	cJSON *a;

	REQUIRE(json_parse(s, strlen(s), NULL, &root, &je) == 0);
	a = cJSON_GetObjectItemCaseSensitive(root, "a");
	REQUIRE(cJSON_IsArray(a));
	CHECK_INT(cJSON_GetArraySize(a), 6);
	CHECK_STR(cJSON_GetArrayItem(a, 5)->valuestring, "x\xc3\xa9\xf0\x9f\x98\x80");
	CHECK(json_is_integer(cJSON_GetArrayItem(a, 0)));
	CHECK(json_is_integer(cJSON_GetArrayItem(a, 1)));
	CHECK(!json_is_integer(cJSON_GetArrayItem(a, 2)));
	json_free(root);
}

TEST(json_parse_not_nul_terminated)
{
	const char buf[] = {'[', '1', ']', 'x'};
	struct json_error je;
	cJSON *root = NULL;

	CHECK_INT(json_parse(buf, 3, NULL, &root, &je), 0);
	json_free(root);
	CHECK_INT(json_parse(buf, 4, NULL, &root, &je), -E_PARSE);
	CHECK_STR(je.msg, "unexpected content after the JSON value");
	CHECK_INT(je.column, 4);
}

TEST(json_syntax_error_locations)
{
	CHECK_STR(perr("{\n  \"a\": 1,\n  \"b\": }\n", NULL),
		  "t.json:3:8: invalid JSON: expected a value, got '}'");
	CHECK_STR(perr("{\"a\": 1,}", NULL), "t.json:1:9: invalid JSON: trailing comma before '}'");
	CHECK_STR(perr("[1,]", NULL), "t.json:1:4: invalid JSON: trailing comma before ']'");
	CHECK_STR(perr("[1 2]", NULL),
		  "t.json:1:4: invalid JSON: expected ',' or ']', got a number");
	CHECK_STR(perr("{\"a\" 1}", NULL),
		  "t.json:1:6: invalid JSON: expected ':' after the key, got a number");
	CHECK_STR(perr("{\"a\": 1 \"b\": 2}", NULL),
		  "t.json:1:9: invalid JSON: expected ',' or '}', got a string");
	CHECK_STR(perr("{1: 2}", NULL),
		  "t.json:1:2: invalid JSON: expected a string key or '}', got a number");
	CHECK_STR(perr("{\"a\": 1, 2}", NULL),
		  "t.json:1:10: invalid JSON: expected a string key after ',', got a number");
	CHECK_STR(perr("{'a': 1}", NULL),
		  "t.json:1:2: invalid JSON: expected a string key or '}', got '''");
	CHECK_STR(perr("[}", NULL), "t.json:1:2: invalid JSON: expected a value or ']', got '}'");
	CHECK_STR(perr("{]", NULL),
		  "t.json:1:2: invalid JSON: expected a string key or '}', got ']'");
	CHECK_STR(perr("[1]]", NULL),
		  "t.json:1:4: invalid JSON: unexpected content after the JSON value");
	CHECK_STR(perr("{} {}", NULL),
		  "t.json:1:4: invalid JSON: unexpected content after the JSON value");
	CHECK_STR(perr("\"x\" 1", NULL),
		  "t.json:1:5: invalid JSON: unexpected content after the JSON value");
	CHECK_STR(perr("[tru]", NULL),
		  "t.json:1:2: invalid JSON: invalid literal (expected true, false or null)");
	CHECK_STR(perr("[True]", NULL),
		  "t.json:1:2: invalid JSON: expected a value or ']', got 'T'");
	CHECK_STR(perr("{\"a\": 1", NULL), "t.json:1:8: invalid JSON: unexpected end of input");
	CHECK_STR(perr("{\"a\":", NULL), "t.json:1:6: invalid JSON: unexpected end of input");
	CHECK_STR(perr("[1,\n", NULL), "t.json:2:1: invalid JSON: unexpected end of input");
	CHECK_STR(perr("[\"x\", \"y", NULL), "t.json:1:7: invalid JSON: unterminated string");
	CHECK_STR(perr("", NULL), "t.json:1:1: invalid JSON: document is empty");
	CHECK_STR(perr("  \n ", NULL), "t.json:2:2: invalid JSON: document is empty");
	CHECK_STR(perr("\x01", NULL), "t.json:1:1: invalid JSON: expected a value, got byte 0x01");
	CHECK_STR(perr("42", NULL), "ok");
	CHECK_STR(perr(" \"s\" ", NULL), "ok");
	/* Columns count characters, not bytes. */
	CHECK_STR(perr("[\"\xc3\xa9\xc3\xa9\", x]", NULL),
		  "t.json:1:8: invalid JSON: expected a value after ',', got 'x'");
}

TEST(json_strict_numbers)
{
	CHECK_STR(perr("[01]", NULL), "t.json:1:2: invalid JSON: invalid number (leading zero)");
	CHECK_STR(perr("[1.]", NULL),
		  "t.json:1:2: invalid JSON: invalid number (digit expected after '.')");
	CHECK_STR(perr("[1e]", NULL),
		  "t.json:1:2: invalid JSON: invalid number (digit expected in exponent)");
	CHECK_STR(perr("[+1]", NULL), "t.json:1:2: invalid JSON: expected a value or ']', got '+'");
	CHECK_STR(perr("[-]", NULL), "t.json:1:2: invalid JSON: invalid number");
	CHECK_STR(perr("[.5]", NULL), "t.json:1:2: invalid JSON: expected a value or ']', got '.'");
	CHECK_STR(perr("[1.5.3]", NULL), "t.json:1:5: invalid JSON: expected ',' or ']', got '.'");
	CHECK_STR(perr("[0, -0, 1e5, 1E+2, 2.5e-3]", NULL), "ok");
	CHECK_STR(perr("[1234567890123456789012345678901234567890123456789012345678901.5]", NULL),
		  "ok");
	CHECK_STR(perr("[1234567890123456789012345678901234567890123456789012345678901.55]", NULL),
		  "t.json:1:2: invalid JSON: number longer than 63 characters");
}

TEST(json_strict_strings)
{
	CHECK_STR(perr("[\"a\tb\"]", NULL),
		  "t.json:1:4: invalid JSON: control character 0x09 in string (must be escaped)");
	CHECK_STR(perr("[\"a\\qb\"]", NULL),
		  "t.json:1:4: invalid JSON: invalid escape (backslash followed by character 'q')");
	CHECK_STR(perr("[\"\\u00zz\"]", NULL),
		  "t.json:1:3: invalid JSON: invalid \\u escape (expected 4 hex digits)");
	CHECK_STR(perr("[\"a\\u0000\"]", NULL),
		  "t.json:1:4: invalid JSON: \\u0000 is not allowed in strings");
	CHECK_STR(perr("[\"\\ud800x\"]", NULL),
		  "t.json:1:3: invalid JSON: unpaired UTF-16 surrogate in \\u escape");
	CHECK_STR(perr("[\"\\udc00\"]", NULL),
		  "t.json:1:3: invalid JSON: unpaired UTF-16 surrogate in \\u escape");
	CHECK_STR(perr("[\"\xff\"]", NULL), "t.json:1:3: invalid JSON: invalid UTF-8 in string");
	CHECK_STR(perr("[\"\xc0\xaf\"]", NULL),
		  "t.json:1:3: invalid JSON: invalid UTF-8 in string");
	CHECK_STR(perr("[\"\xed\xa0\x80\"]", NULL),
		  "t.json:1:3: invalid JSON: invalid UTF-8 in string");
	CHECK_STR(perr("[\"\xf4\x90\x80\x80\"]", NULL),
		  "t.json:1:3: invalid JSON: invalid UTF-8 in string");
	CHECK_STR(perr("[\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"]", NULL), "ok");
}

TEST(json_embedded_nul)
{
	const char doc[] = "[1]\0";
	const char doc2[] = "[\"a\0b\"]";
	struct json_error je;
	cJSON *root = NULL;

	CHECK_INT(json_parse(doc, sizeof(doc) - 1, NULL, &root, &je), -E_PARSE);
	CHECK_STR(je.msg, "unexpected content after the JSON value");
	CHECK_INT(json_parse(doc2, sizeof(doc2) - 1, NULL, &root, &je), -E_PARSE);
	CHECK_STR(je.msg, "control character 0x00 in string (must be escaped)");
	CHECK(root == NULL);
}

TEST(json_limits)
{
	struct json_opts o = {.max_depth = 3};
	struct json_opts small = {.max_bytes = 4};
	char deep[3000];
	struct json_error je;
	cJSON *root = NULL;

	CHECK_STR(perr("[[[1]]]", &o), "ok");
	CHECK_STR(perr("[[[[1]]]]", &o), "t.json:1:4: invalid JSON: nesting deeper than 3 levels");
	CHECK_STR(perr("[1,2]", &small), "t.json: invalid JSON: document is 5 bytes, limit is 4");
	/* Deeper than cJSON's own limit: still a located depth error, not a cJSON failure. */
	memset(deep, '[', 1500);
	memset(deep + 1500, ']', 1500);
	CHECK_INT(json_parse(deep, sizeof(deep), NULL, &root, &je), -E_LIMIT);
	CHECK_INT(je.column, 65);
	CHECK_STR(je.msg, "nesting deeper than 64 levels");
}

TEST(json_duplicate_keys)
{
	struct json_opts allow = {.allow_duplicate_keys = true};
	const char *doc = "{\"a\": {\"x\": 1, \"y\": 2, \"x\": 3}, \"a\": 4}";
	struct json_error je;
	cJSON *root = NULL;

	CHECK_STR(perr(doc, NULL), "t.json:1:24: invalid JSON: duplicate key \"x\" at .a.x");
	CHECK_STR(perr("{\"a b\": 1, \"a b\": 2}", NULL),
		  "t.json:1:12: invalid JSON: duplicate key \"a b\" at .\"a b\"");
	REQUIRE(json_parse(doc, strlen(doc), &allow, &root, &je) == 0);
	CHECK_INT(json_duplicates_each(root, NULL, NULL), 2);
	json_free(root);
}

static void collect_dup(const char *path, const char *key, void *arg)
{
	char *acc = arg;
	size_t n = strlen(acc);

	snprintf(acc + n, 256 - n, "%s=%s;", path, key);
}

TEST(json_duplicates_many_keys)
{
	/* More than 8 members takes the sorting path; report order is document order. */
	const char *doc =
		"{\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,"
		"\"k2\":9,\"k9\":10,\"k1\":11,\"k2\":12}";
	struct json_opts allow = {.allow_duplicate_keys = true};
	struct json_error je;
	cJSON *root = NULL;
	char acc[256] = "";

	REQUIRE(json_parse(doc, strlen(doc), &allow, &root, &je) == 0);
	CHECK_INT(json_duplicates_each(root, collect_dup, acc), 3);
	CHECK_STR(acc, ".k2=k2;.k1=k1;.k2=k2;");
	json_free(root);
	CHECK_STR(perr(doc, NULL), "t.json:1:58: invalid JSON: duplicate key \"k2\" at .k2");
}

TEST(json_strict_integers)
{
	const char *doc = "[80, 1.5, 1e3, 8.0, -1, 70000, 9007199254740993, \"80\"]";
	struct json_error je;
	cJSON *root = NULL;
	uint64_t u = 0;
	int64_t i = 0;

	REQUIRE(json_parse(doc, strlen(doc), NULL, &root, &je) == 0);
	CHECK_INT(json_get_uint(cJSON_GetArrayItem(root, 0), 1, 65535, &u), 0);
	CHECK_INT(u, 80);
	CHECK_INT(json_get_uint(cJSON_GetArrayItem(root, 1), 0, 65535, &u), -E_PARSE);
	CHECK_INT(json_get_uint(cJSON_GetArrayItem(root, 2), 0, 65535, &u), -E_PARSE);
	CHECK_INT(json_get_uint(cJSON_GetArrayItem(root, 3), 0, 65535, &u), -E_PARSE);
	CHECK_INT(json_get_uint(cJSON_GetArrayItem(root, 4), 0, 65535, &u), -E_LIMIT);
	CHECK_INT(json_get_int(cJSON_GetArrayItem(root, 4), -5, 5, &i), 0);
	CHECK_INT(i, -1);
	CHECK_INT(json_get_uint(cJSON_GetArrayItem(root, 5), 1, 65535, &u), -E_LIMIT);
	CHECK_INT(json_get_int(cJSON_GetArrayItem(root, 6), INT64_MIN, INT64_MAX, &i), -E_LIMIT);
	CHECK_INT(json_get_uint(cJSON_GetArrayItem(root, 7), 0, 65535, &u), -E_INVAL);
	json_free(root);

	CHECK_INT(json_parse_uint_str("80", 1, 65535, &u), 0);
	CHECK_INT(u, 80);
	CHECK_INT(json_parse_uint_str("0", 0, 65535, &u), 0);
	CHECK_INT(json_parse_uint_str("0", 1, 65535, &u), -E_LIMIT);
	CHECK_INT(json_parse_uint_str("70000", 1, 65535, &u), -E_LIMIT);
	CHECK_INT(json_parse_uint_str("99999999999999999999999", 1, 65535, &u), -E_LIMIT);
	CHECK_INT(json_parse_uint_str("080", 1, 65535, &u), -E_PARSE);
	CHECK_INT(json_parse_uint_str("+80", 1, 65535, &u), -E_PARSE);
	CHECK_INT(json_parse_uint_str(" 80", 1, 65535, &u), -E_PARSE);
	CHECK_INT(json_parse_uint_str("", 1, 65535, &u), -E_PARSE);
	CHECK_INT(json_parse_uint_str("http", 1, 65535, &u), -E_PARSE);
}

TEST(json_paths)
{
	struct json_path p;
	size_t m1, m2, m3;
	char comp[64];

	json_path_init(&p);
	CHECK_STR(json_path_str(&p), ".");
	m1 = json_path_push_key(&p, "services");
	m2 = json_path_push_index(&p, 2);
	json_path_push_key(&p, "ports");
	m3 = json_path_push_key(&p, "70000");
	CHECK_STR(json_path_str(&p), ".services[2].ports.\"70000\"");
	json_path_pop(&p, m3);
	json_path_push_key(&p, "default/app.svc");
	CHECK_STR(json_path_str(&p), ".services[2].ports.\"default/app.svc\"");
	json_path_pop(&p, m2);
	json_path_push_key(&p, "a\"b\\c\n");
	CHECK_STR(json_path_str(&p), ".services.\"a\\\"b\\\\c\\u000a\"");
	json_path_pop(&p, m1);
	CHECK_STR(json_path_str(&p), ".");
	json_path_push_key(&p, "_ok9");
	json_path_push_key(&p, "");
	json_path_push_key(&p, "9lives");
	CHECK_STR(json_path_str(&p), "._ok9.\"\".\"9lives\"");
	CHECK_INT(json_path_key_component(comp, 5, "abcdef"), 4);
	CHECK_STR(comp, ".abc");
}

TEST(json_path_overflow)
{
	struct json_path p;
	size_t marks[200];
	size_t m0;

	json_path_init(&p);
	m0 = json_path_push_key(&p, "root");
	for (int i = 0; i < 200; i++)
		marks[i] = json_path_push_key(&p, "component");
	CHECK(strlen(json_path_str(&p)) < JSON_PATH_MAX);
	CHECK(strstr(json_path_str(&p), "...") != NULL);
	CHECK(strcmp(json_path_str(&p) + strlen(json_path_str(&p)) - 3, "...") == 0);
	for (int i = 199; i >= 0; i--)
		json_path_pop(&p, marks[i]);
	CHECK_STR(json_path_str(&p), ".root");
	json_path_pop(&p, m0);
	CHECK_STR(json_path_str(&p), ".");
}

static char *buf_cstr(struct buf *b)
{
	char *s = xmalloc(buf_len(b) + 1);
	memcpy(s, buf_rptr(b), buf_len(b));
	s[buf_len(b)] = '\0';
	return s;
}

TEST(json_writer_compact_and_pretty)
{
	struct buf b;
	struct json_writer w;
	char *s;

	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	json_write_object_begin(&w);
	json_write_key(&w, "s");
	json_write_string(&w, "q\"\\\n\x01\xc3\xa9\xff");
	json_write_key(&w, "a");
	json_write_array_begin(&w);
	json_write_int(&w, -3);
	json_write_uint(&w, 18446744073709551615u);
	json_write_double(&w, 2.5);
	json_write_double(&w, 1.0 / 0.0);
	json_write_bool(&w, true);
	json_write_null(&w);
	json_write_array_end(&w);
	json_write_key(&w, "e");
	json_write_object_begin(&w);
	json_write_object_end(&w);
	json_write_object_end(&w);
	CHECK_INT(json_writer_finish(&w), 0);
	s = buf_cstr(&b);
	CHECK_STR(
		s,
		"{\"s\":\"q\\\"\\\\\\n\\u0001\xc3\xa9\\ufffd\",\"a\":[-3,18446744073709551615,2.5,"
		"null,true,null],\"e\":{}}");
	free(s);

	buf_reset(&b);
	json_writer_init(&w, &b, 2);
	json_write_object_begin(&w);
	json_write_key(&w, "a");
	json_write_array_begin(&w);
	json_write_int(&w, 1);
	json_write_array_begin(&w);
	json_write_array_end(&w);
	json_write_array_end(&w);
	json_write_object_end(&w);
	CHECK_INT(json_writer_finish(&w), 0);
	s = buf_cstr(&b);
	CHECK_STR(s, "{\n  \"a\": [\n    1,\n    []\n  ]\n}");
	free(s);
	buf_fini(&b);
}

TEST(json_writer_errors)
{
	struct buf b;
	struct json_writer w;

	buf_init(&b, 8);
	json_writer_init(&w, &b, 0);
	json_write_string(&w, "this does not fit");
	CHECK_INT(json_writer_finish(&w), -E_LIMIT);
	buf_fini(&b);

	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	json_write_object_begin(&w);
	CHECK_INT(json_writer_finish(&w), -E_STATE);
	json_writer_init(&w, &b, 0);
	json_write_key(&w, "k");
	CHECK_INT(json_writer_finish(&w), -E_STATE);
	json_writer_init(&w, &b, 0);
	for (int i = 0; i < JSON_WRITER_MAX_DEPTH + 1; i++)
		json_write_array_begin(&w);
	CHECK_INT(json_writer_finish(&w), -E_LIMIT);
	buf_fini(&b);
}

TEST(json_writer_roundtrip_cjson)
{
	const char *doc = "{\"a\":[1,2.5,\"x\\u0001\",{\"b\":null,\"c\":false}],\"d\":-1e300}";
	struct json_error je;
	cJSON *root = NULL, *again = NULL;
	struct buf b;
	struct json_writer w;
	char *s;

	REQUIRE(json_parse(doc, strlen(doc), NULL, &root, &je) == 0);
	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	json_write_cjson(&w, root);
	CHECK_INT(json_writer_finish(&w), 0);
	s = buf_cstr(&b);
	CHECK_STR(s,
		  "{\"a\":[1,2.5,\"x\\u0001\",{\"b\":null,\"c\":false}],\"d\":-1.0000000000000001e+"
		  "300}");
	CHECK_INT(json_parse(s, strlen(s), NULL, &again, &je), 0);
	CHECK(cJSON_Compare(root, again, 1));
	free(s);
	json_free(again);
	json_free(root);
	buf_fini(&b);
}

TEST(json_type_names)
{
	cJSON *n = cJSON_CreateNull();
	CHECK_STR(json_type_name(n), "null");
	CHECK_STR(json_type_name(NULL), "missing");
	cJSON_Delete(n);
}

TEST(json_kv_helpers_and_time)
{
	struct buf b;
	struct json_writer w;

	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "s", "x");
	json_kv_str(&w, "n", NULL);
	json_kv_int(&w, "i", -3);
	json_kv_uint(&w, "u", 7);
	json_kv_bool(&w, "b", true);
	json_kv_time_ms(&w, "t", 1700000000123);
	json_kv_time_ms(&w, "never", 0);
	json_write_object_end(&w);
	REQUIRE(json_writer_finish(&w) == 0);
	buf_append(&b, "", 1);
	CHECK_STR((const char *)buf_rptr(&b), "{\"s\":\"x\",\"n\":null,\"i\":-3,\"u\":7,\"b\":true,"
					      "\"t\":\"2023-11-14T22:13:20Z\",\"never\":null}");
	buf_fini(&b);
}
