/* test_jsonw.c - the JSON text writer of the audit log: any byte sequence in
 * a string or a key gives valid UTF-8, strictly valid JSON, and decodes to
 * the input with each ill-formed UTF-8 sequence replaced by U+FFFD (the same
 * text the json-c + utf8_sanitize path gave); structure, commas, numbers,
 * limits.  json-c's strict, UTF-8-validating parser is the judge. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "proxy/jsonw.h"
#include "proxy/sbuf.h"
#include "proxy/utf8.h"

/* parse_strict - the object in text, or NULL if text is not strict JSON
 * and valid UTF-8 */
static struct json_object *parse_strict(const char *text, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success || tok->char_offset != (int)len) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* check_string - {"k": s} written by jsonw parses strictly and gives back
 * s with ill-formed sequences replaced */
static void check_string(const char *s, size_t n)
{
	struct sbuf b, want;
	struct jsonw w;
	struct json_object *o, *v;

	sbuf_init(&b, 1 << 20);
	jsonw_init(&w, &b);
	jsonw_object_begin(&w);
	jsonw_key(&w, "k");
	jsonw_str(&w, s, n);
	jsonw_object_end(&w);
	assert_false(jsonw_failed(&w));
	assert_true(utf8_valid(b.data, b.len));
	assert_null(memchr(b.data, '\n', b.len));     /* one line, whatever the input */
	o = parse_strict(b.data, b.len);
	if (o == NULL)
		fail_msg("not strict JSON: %s", b.data);
	assert_true(json_object_object_get_ex(o, "k", &v));
	sbuf_init(&want, 1 << 20);
	assert_int_equal(utf8_sanitize_sbuf(&want, s, n), 0);
	assert_int_equal(json_object_get_string_len(v), (int)want.len);
	assert_memory_equal(json_object_get_string(v), want.len ? want.data : "", want.len);
	json_object_put(o);
	sbuf_free(&want);
	sbuf_free(&b);
}

static void test_hostile_strings(void **state)
{
	static const struct { const char *s; size_t n; } cases[] = {
		{ "", 0 },
		{ "plain ascii", 11 },
		{ "quote \" backslash \\ slash /", 27 },
		{ "nul \0 inside", 12 },
		{ "\x01\x02\x1f\x7f\b\f\n\r\t", 9 },
		{ "\xff\xfe", 2 },
		{ "\xc3\xa9t\xc3\xa9", 6 },                  /* valid: été */
		{ "\xe2\x82" "A", 3 },                        /* truncated 3-byte */
		{ "\xed\xa0\x80", 3 },                        /* surrogate */
		{ "\xf0\x9f\x98\x80", 4 },                    /* valid emoji */
		{ "\xf4\x90\x80\x80", 4 },                    /* above U+10FFFF */
		{ "\xc0\xaf", 2 },                            /* overlong '/' */
		{ "end in lead \xe2", 13 },
		{ "\\u0000 \"}]{[", 12 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_string(cases[i].s, cases[i].n);
}

/* every byte pair and triple-prefix: short sequences cover every lead and
 * continuation combination */
static void test_exhaustive_pairs(void **state)
{
	char s[3];
	(void)state;
	for (unsigned a = 0; a < 256; a++)
		for (unsigned b = 0; b < 256; b += (a < 0xc0 ? 17 : 1)) {
			s[0] = (char)a;
			s[1] = (char)b;
			s[2] = (char)0x80;
			check_string(s, 2);
			check_string(s, 3);
		}
}

static void test_random_bytes(void **state)
{
	char s[96];
	unsigned seed = 4242;
	(void)state;
	for (int i = 0; i < 20000; i++) {
		size_t n = (seed = seed * 1103515245u + 12345u) >> 16 & 95;
		for (size_t k = 0; k < n; k++)
			s[k] = (char)((seed = seed * 1103515245u + 12345u) >> 16);
		check_string(s, n);
	}
}

/* keys are escaped like values; nesting and commas */
static void test_structure(void **state)
{
	struct sbuf b;
	struct jsonw w;
	struct json_object *o, *v, *e;
	(void)state;

	sbuf_init(&b, 1 << 16);
	jsonw_init(&w, &b);
	jsonw_object_begin(&w);
	jsonw_key(&w, "a\"\xff");  jsonw_int(&w, -42);
	jsonw_key(&w, "t");        jsonw_bool(&w, 1);
	jsonw_key(&w, "f");        jsonw_bool(&w, 0);
	jsonw_key(&w, "null");     jsonw_cstr(&w, NULL);
	jsonw_key(&w, "list");
	jsonw_array_begin(&w);
	for (int i = 0; i < 3; i++) {
		jsonw_object_begin(&w);
		jsonw_key(&w, "i");  jsonw_int(&w, i);
		jsonw_key(&w, "e");  jsonw_array_begin(&w); jsonw_array_end(&w);
		jsonw_object_end(&w);
	}
	jsonw_array_end(&w);
	jsonw_key(&w, "empty");
	jsonw_object_begin(&w);
	jsonw_object_end(&w);
	jsonw_key(&w, "big");      jsonw_int(&w, INT64_MAX);
	jsonw_object_end(&w);
	assert_false(jsonw_failed(&w));
	assert_string_equal(b.data, "{\"a\\\"\xef\xbf\xbd\":-42,\"t\":true,\"f\":false,\"null\":\"\","
	                    "\"list\":[{\"i\":0,\"e\":[]},{\"i\":1,\"e\":[]},{\"i\":2,\"e\":[]}],"
	                    "\"empty\":{},\"big\":9223372036854775807}");
	o = parse_strict(b.data, b.len);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "list", &v));
	assert_int_equal(json_object_array_length(v), 3);
	e = json_object_array_get_idx(v, 2);
	assert_true(json_object_object_get_ex(e, "i", &v));
	assert_int_equal(json_object_get_int(v), 2);
	json_object_put(o);
	sbuf_free(&b);
}

/* keys take a one-piece path when short and plain, the escaping one
 * otherwise: the text must not depend on which (commas after nested
 * values, a key right after a key, keys at the size boundary) */
static void test_key_paths(void **state)
{
	char k60[61], k61[62];
	struct sbuf b, want;
	struct jsonw w;

	(void)state;
	memset(k60, 'a', 60);
	k60[60] = '\0';
	memset(k61, 'b', 61);
	k61[61] = '\0';
	sbuf_init(&b, 1 << 10);
	jsonw_init(&w, &b);
	jsonw_object_begin(&w);
	jsonw_key(&w, k60);
	jsonw_int(&w, 1);
	jsonw_key(&w, k61);
	jsonw_int(&w, 2);
	jsonw_key(&w, "arr");
	jsonw_array_begin(&w);
	jsonw_object_begin(&w);
	jsonw_key(&w, "x");
	jsonw_key(&w, "y");		/* no value between: no comma either, as before */
	jsonw_int(&w, 3);
	jsonw_key(&w, "q\"");
	jsonw_int(&w, 4);
	jsonw_object_end(&w);
	jsonw_array_end(&w);
	jsonw_key(&w, "");
	jsonw_bool(&w, 1);
	jsonw_object_end(&w);
	assert_false(jsonw_failed(&w));
	sbuf_init(&want, 1 << 10);
	sbuf_addf(&want, "{\"%s\":1,\"%s\":2,\"arr\":[{\"x\":\"y\":3,\"q\\\"\":4}],\"\":true}", k60, k61);
	assert_string_equal(b.data, want.data);
	sbuf_free(&want);
	sbuf_free(&b);
}

static void num_is(double d, int decimals, const char *want)
{
	struct sbuf b;
	struct jsonw w;

	sbuf_init(&b, 1 << 10);
	jsonw_init(&w, &b);
	jsonw_array_begin(&w);
	jsonw_num(&w, d, decimals);
	jsonw_array_end(&w);
	assert_false(jsonw_failed(&w));
	assert_string_equal(b.data, want);
	struct json_object *o = parse_strict(b.data, b.len);
	if (o == NULL)
		fail_msg("not strict JSON: %s", b.data);
	json_object_put(o);
	sbuf_free(&b);
}

/* the figures the audit line had with json-c (json_number in audit.c) */
static void test_numbers(void **state)
{
	(void)state;
	num_is(6.0, 3, "[6.0]");
	num_is(0.059372, 3, "[0.059]");
	num_is(-1.5, 3, "[-1.5]");
	num_is(0.0, 3, "[0.0]");
	num_is(12.3456, 3, "[12.346]");
	num_is(100.0, 3, "[100.0]");
	num_is(NAN, 3, "[null]");
	num_is(INFINITY, 3, "[null]");
	num_is(-INFINITY, 3, "[null]");
	num_is(1e300, 3, "[1.0000000000000001e+300]");
}

/* a buffer limit or too deep a nesting fails the writer, never the process */
static void test_limits(void **state)
{
	struct sbuf b;
	struct jsonw w;
	(void)state;

	sbuf_init(&b, 16);
	jsonw_init(&w, &b);
	jsonw_object_begin(&w);
	jsonw_key(&w, "key");
	jsonw_cstr(&w, "a value longer than sixteen bytes");
	jsonw_object_end(&w);
	assert_true(jsonw_failed(&w));
	assert_true(b.len <= 16);
	sbuf_free(&b);

	sbuf_init(&b, 1 << 10);
	jsonw_init(&w, &b);
	for (int i = 0; i < JSONW_MAX_DEPTH + 2; i++)
		jsonw_array_begin(&w);
	assert_true(jsonw_failed(&w));
	sbuf_free(&b);

	sbuf_init(&b, 1 << 10);
	jsonw_init(&w, &b);
	jsonw_object_end(&w);         /* unbalanced */
	assert_true(jsonw_failed(&w));
	sbuf_free(&b);
}

/* jsonw_str_max: the literal within max bytes, cut between characters
 * (never in an escape or a UTF-8 sequence), "..." marking the cut */
static void str_max_is(const char *in, size_t max, const char *want)
{
	struct sbuf b;
	struct jsonw w;

	sbuf_init(&b, (size_t)-1);
	jsonw_init(&w, &b);
	jsonw_str_max(&w, in, strlen(in), max);
	assert_false(jsonw_failed(&w));
	assert_string_equal(b.data, want);
	assert_true(b.len <= max);
	assert_int_equal(jsonw_escaped_len(in, strlen(in)) <= max ? b.len : 0,
	                 jsonw_escaped_len(in, strlen(in)) <= max ? jsonw_escaped_len(in, strlen(in)) : 0);
	sbuf_free(&b);
}

static void test_str_max(void **state)
{
	(void)state;
	str_max_is("abcdef", 8, "\"abcdef\"");
	str_max_is("abcdefg", 8, "\"abc...\"");
	str_max_is("ab\x01z", 12, "\"ab\\u0001z\"");
	str_max_is("ab\x01zzzz", 12, "\"ab...\"");
	str_max_is("a\"\"\"\"\"", 10, "\"a\\\"\\\"...\"");
	str_max_is("\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc", 9, "\"\xc3\xbc\xc3\xbc...\"");
	str_max_is("ab\xff\xffzzzzzzzz", 10, "\"ab\xef\xbf\xbd...\"");
	assert_int_equal(jsonw_escaped_len("a\x01\xff\xc3\xbc\"", 6), 2 + 1 + 6 + 3 + 2 + 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_strings),
		cmocka_unit_test(test_exhaustive_pairs),
		cmocka_unit_test(test_random_bytes),
		cmocka_unit_test(test_structure),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_key_paths),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_str_max),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
