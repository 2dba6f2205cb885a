/* test_utf8.c - UTF-8 validation and repair, and the reason they exist:
 * json-c output built from network bytes must become valid JSON.
 *
 * The vectors were produced with CPython 3.11:
 *   out = inp.decode('utf-8', 'replace').encode('utf-8')
 * and valid = inp.decode('utf-8') does not raise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "proxy/sbuf.h"
#include "proxy/log.h"
#include "proxy/utf8.h"

struct vec {
	const char *in;
	size_t      inlen;
	const char *out;
	size_t      outlen;
	int         valid;
};

static const struct vec vecs[] = {
	{ "", 0,
	  "", 0, 1 },
	{ "\x70\x6c\x61\x69\x6e\x20\x61\x73\x63\x69\x69", 11,
	  "\x70\x6c\x61\x69\x6e\x20\x61\x73\x63\x69\x69", 11, 1 },
	{ "\xc3\xa9\x74\xc3\xa9", 5,
	  "\xc3\xa9\x74\xc3\xa9", 5, 1 },
	{ "\xe2\x82\xac", 3,
	  "\xe2\x82\xac", 3, 1 },
	{ "\xf0\x9f\x98\x80", 4,
	  "\xf0\x9f\x98\x80", 4, 1 },
	{ "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 19,
	  "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 19, 1 },
	{ "\x80", 1,
	  "\xef\xbf\xbd", 3, 0 },
	{ "\xbf\x80\x80", 3,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9, 0 },
	{ "\xc0\x80", 2,
	  "\xef\xbf\xbd\xef\xbf\xbd", 6, 0 },
	{ "\xc1\xbf", 2,
	  "\xef\xbf\xbd\xef\xbf\xbd", 6, 0 },
	{ "\xe0\x80\x80", 3,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9, 0 },
	{ "\xe0\x9f\xbf", 3,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9, 0 },
	{ "\xed\xa0\x80", 3,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9, 0 },
	{ "\xed\xbf\xbf", 3,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9, 0 },
	{ "\xed\x9f\xbf", 3,
	  "\xed\x9f\xbf", 3, 1 },
	{ "\xf0\x80\x80\x80", 4,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 12, 0 },
	{ "\xf0\x8f\xbf\xbf", 4,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 12, 0 },
	{ "\xf4\x90\x80\x80", 4,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 12, 0 },
	{ "\xf5\x80\x80\x80", 4,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 12, 0 },
	{ "\xff", 1,
	  "\xef\xbf\xbd", 3, 0 },
	{ "\xfe\xff", 2,
	  "\xef\xbf\xbd\xef\xbf\xbd", 6, 0 },
	{ "\xe2\x82", 2,
	  "\xef\xbf\xbd", 3, 0 },
	{ "\xe2\x82\x41", 3,
	  "\xef\xbf\xbd\x41", 4, 0 },
	{ "\xf0\x9f\x98", 3,
	  "\xef\xbf\xbd", 3, 0 },
	{ "\xf0\x9f\x98\x41", 4,
	  "\xef\xbf\xbd\x41", 4, 0 },
	{ "\xf0\x9f\x41", 3,
	  "\xef\xbf\xbd\x41", 4, 0 },
	{ "\xf0\x41", 2,
	  "\xef\xbf\xbd\x41", 4, 0 },
	{ "\x41\xc3", 2,
	  "\x41\xef\xbf\xbd", 4, 0 },
	{ "\xc3\xc3\xa9", 3,
	  "\xef\xbf\xbd\xc3\xa9", 5, 0 },
	{ "\xe2\x82\xe2\x82\xac", 5,
	  "\xef\xbf\xbd\xe2\x82\xac", 6, 0 },
	{ "\x61\x00\x62\xff\x00", 5,
	  "\x61\x00\x62\xef\xbf\xbd\x00", 7, 0 },
	{ "\xed\xa0\x80\xed\xb0\x80", 6,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 18, 0 },
	{ "\xf8\x88\x80\x80\x80", 5,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 15, 0 },
	{ "\xfc\x84\x80\x80\x80\x80", 6,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 18, 0 },
	{ "\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64", 13,
	  "\x61\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\x62\xef\xbf\xbd\x63\xef\xbf\xbd\xef\xbf\xbd\x64", 22, 0 },
};

static void test_python_vectors(void **state)
{
	struct sbuf b;
	char fixed[64];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
		assert_int_equal(utf8_valid(vecs[i].in, vecs[i].inlen), vecs[i].valid);
		sbuf_init(&b, 1024);
		assert_int_equal(utf8_sanitize_sbuf(&b, vecs[i].in, vecs[i].inlen), 0);
		assert_int_equal(b.len, vecs[i].outlen);
		if (b.len)
			assert_memory_equal(b.data, vecs[i].out, b.len);
		assert_true(utf8_valid(b.data ? b.data : "", b.len));
		sbuf_free(&b);

		n = utf8_sanitize(vecs[i].in, vecs[i].inlen, fixed, sizeof(fixed));
		assert_int_equal(n, vecs[i].outlen);
		assert_memory_equal(fixed, vecs[i].out, n);
		assert_int_equal(fixed[n], '\0');
	}
}

/* ref_valid - a differently written validator: decode the code point,
 * then reject overlongs, surrogates and values above U+10FFFF */
static int ref_valid(const unsigned char *p, size_t len)
{
	size_t i = 0, n, k;
	uint32_t cp, min;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			n = 2; cp = p[i] & 0x1f; min = 0x80;
		} else if ((p[i] & 0xf0) == 0xe0) {
			n = 3; cp = p[i] & 0x0f; min = 0x800;
		} else if ((p[i] & 0xf8) == 0xf0) {
			n = 4; cp = p[i] & 0x07; min = 0x10000;
		} else
			return 0;
		if (i + n > len)
			return 0;
		for (k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n;
	}
	return 1;
}

/* every 1-, 2- and 3-byte string, and 4-byte strings with interesting
 * trailing bytes: utf8_valid agrees with ref_valid, sanitize output is
 * valid and leaves valid input alone */
static void test_exhaustive(void **state)
{
	static const unsigned char tails[] = { 0x00, 0x41, 0x7f, 0x80, 0x8f,
		0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xf0, 0xff };
	unsigned char s[4];
	char out[64];
	uint32_t v;
	size_t n, len, a, b;

	(void)state;
	for (len = 1; len <= 3; len++) {
		for (v = 0; v < (1u << (8 * len)); v++) {
			for (n = 0; n < len; n++)
				s[n] = (unsigned char)(v >> (8 * n));
			if (utf8_valid((char *)s, len) != ref_valid(s, len))
				fail_msg("len %zu value %06x", len, (unsigned)v);
			n = utf8_sanitize((char *)s, len, out, sizeof(out));
			if (!utf8_valid(out, n))
				fail_msg("sanitize output invalid for %06x", (unsigned)v);
			if (ref_valid(s, len) && (n != len || memcmp(out, s, len) != 0))
				fail_msg("valid input %06x changed", (unsigned)v);
		}
	}
	for (v = 0; v < 0x10000; v++) {
		s[0] = (unsigned char)(v >> 8);
		s[1] = (unsigned char)v;
		if (s[0] < 0xe0)
			continue;
		for (a = 0; a < sizeof(tails); a++)
			for (b = 0; b < sizeof(tails); b++) {
				s[2] = tails[a];
				s[3] = tails[b];
				assert_int_equal(utf8_valid((char *)s, 4), ref_valid(s, 4));
				n = utf8_sanitize((char *)s, 4, out, sizeof(out));
				assert_true(utf8_valid(out, n));
			}
	}
}

static void test_limits(void **state)
{
	struct sbuf b;
	char out[8];
	size_t n;

	(void)state;
	/* sbuf ceiling: -1, and what is there ends on a character boundary */
	sbuf_init(&b, 4);
	assert_int_equal(utf8_sanitize_sbuf(&b, "ab\xff", 3), -1);
	assert_true(b.len <= 4);
	assert_true(utf8_valid(b.data ? b.data : "", b.len));
	sbuf_free(&b);
	sbuf_init(&b, 5);
	assert_int_equal(utf8_sanitize_sbuf(&b, "ab\xff", 3), 0);
	assert_int_equal(b.len, 5);
	sbuf_free(&b);
	/* appends */
	sbuf_init(&b, 100);
	assert_int_equal(sbuf_adds(&b, "x="), 0);
	assert_int_equal(utf8_sanitize_sbuf(&b, "\xc3\xa9\xc3", 3), 0);
	assert_int_equal(b.len, 2 + 2 + 3);
	assert_memory_equal(b.data, "x=\xc3\xa9\xef\xbf\xbd", 7);
	sbuf_free(&b);

	/* fixed buffer: cut between characters, always NUL-terminated */
	n = utf8_sanitize("abc\xe2\x82\xac", 6, out, 6);
	assert_int_equal(n, 3);
	assert_string_equal(out, "abc");
	n = utf8_sanitize("abc\xff", 4, out, 6);
	assert_int_equal(n, 3);
	n = utf8_sanitize("abc\xff", 4, out, 7);
	assert_int_equal(n, 6);
	assert_int_equal(utf8_sanitize("abc", 3, out, 0), 0);
	n = utf8_sanitize("abc", 3, out, 1);
	assert_int_equal(n, 0);
	assert_int_equal(out[0], '\0');
}

/* parse_strict - json-c's strict, UTF-8-validating parser accepts text */
static struct json_object *parse_strict(const char *text, size_t len)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	assert_non_null(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

static void test_json_c(void **state)
{
	static const char hostile[] =
		"nul\0ctl\x01\x1f\x7f quote\" bs\\ slash/ "
		"bad\xff\xc3(\xed\xa0\x80\xe2\x82 good\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	static const char hostile_key[] = "k\xfe\"\n";
	struct json_object *o, *p, *v;
	struct sbuf b, want;
	const char *text;
	size_t len;

	(void)state;
	o = json_object_new_object();
	json_object_object_add(o, "field",
	    json_object_new_string_len(hostile, (int)sizeof(hostile) - 1));
	json_object_object_add(o, hostile_key, json_object_new_string("v"));
	text = json_object_to_json_string_length(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);	/* NUL came out as \u0000 */
	assert_non_null(strstr(text, "\\u0000"));
	assert_non_null(strstr(text, "\\u0001"));
	assert_non_null(strstr(text, "\\\""));
	assert_non_null(strstr(text, "\\\\"));
	assert_non_null(strstr(text, "slash/"));	/* NOSLASHESCAPE */
	/* json-c passes the invalid bytes through: not valid UTF-8 */
	assert_false(utf8_valid(text, len));
	assert_null(parse_strict(text, len));

	sbuf_init(&b, 1 << 20);
	assert_int_equal(utf8_sanitize_sbuf(&b, text, len), 0);
	assert_true(utf8_valid(b.data, b.len));
	p = parse_strict(b.data, b.len);
	assert_non_null(p);
	/* the string read back is the sanitized original */
	assert_true(json_object_object_get_ex(p, "field", &v));
	sbuf_init(&want, 1 << 20);
	assert_int_equal(utf8_sanitize_sbuf(&want, hostile, sizeof(hostile) - 1), 0);
	assert_int_equal(json_object_get_string_len(v), want.len);
	assert_memory_equal(json_object_get_string(v), want.data, want.len);
	sbuf_reset(&want);
	assert_int_equal(utf8_sanitize_sbuf(&want, hostile_key, sizeof(hostile_key) - 1), 0);
	assert_true(json_object_object_get_ex(p, want.data, &v));
	assert_string_equal(json_object_get_string(v), "v");
	json_object_put(p);
	sbuf_free(&want);
	sbuf_free(&b);
	json_object_put(o);
}

/* random bytes through json-c and the sanitizer always parse strictly */
static void test_json_random(void **state)
{
	struct json_object *o, *p;
	struct sbuf b;
	const char *text;
	char s[64];
	size_t len, i, n;
	unsigned seed = 12345;

	(void)state;
	for (i = 0; i < 20000; i++) {
		n = (seed = seed * 1103515245u + 12345u) >> 16 & 63;
		for (len = 0; len < n; len++)
			s[len] = (char)((seed = seed * 1103515245u + 12345u) >> 16);
		o = json_object_new_object();
		json_object_object_add(o, "s", json_object_new_string_len(s, (int)n));
		text = json_object_to_json_string_length(o,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
		sbuf_init(&b, 1 << 16);
		assert_int_equal(utf8_sanitize_sbuf(&b, text, len), 0);
		p = parse_strict(b.data, b.len);
		if (p == NULL)
			fail_msg("strict parse failed: %s", b.data);
		json_object_put(p);
		sbuf_free(&b);
		json_object_put(o);
	}
}

/* utf8_decode over every code point (encoded here), and utf8_cp_acts: the
 * characters a terminal or a bidi renderer acts on, and only those */
static void test_decode_acts(void **state)
{
	unsigned char b[4];
	size_t n, bad;
	unsigned acts = 0;

	(void)state;
	for (unsigned cp = 0; cp <= 0x10ffff; cp++) {
		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		if (cp < 0x80) {
			b[0] = (unsigned char)cp;
			n = 1;
		} else if (cp < 0x800) {
			b[0] = (unsigned char)(0xc0 | cp >> 6);
			b[1] = (unsigned char)(0x80 | (cp & 0x3f));
			n = 2;
		} else if (cp < 0x10000) {
			b[0] = (unsigned char)(0xe0 | cp >> 12);
			b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
			b[2] = (unsigned char)(0x80 | (cp & 0x3f));
			n = 3;
		} else {
			b[0] = (unsigned char)(0xf0 | cp >> 18);
			b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
			b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
			b[3] = (unsigned char)(0x80 | (cp & 0x3f));
			n = 4;
		}
		assert_int_equal(utf8_seq(b, n, &bad), n);
		assert_int_equal(utf8_decode(b, n), cp);
		acts += (unsigned)utf8_cp_acts(cp);
	}
	/* C0 32 + DEL + C1 32 + U+061C, U+200E/F, U+202A..E, U+2066..9 */
	assert_int_equal(acts, 32 + 1 + 32 + 1 + 2 + 5 + 4);
	assert_true(utf8_cp_acts(0x9b) && utf8_cp_acts(0x202e) && utf8_cp_acts(0x2066));
	assert_false(utf8_cp_acts(' ') || utf8_cp_acts(0xa0) || utf8_cp_acts(0x200b)
	    || utf8_cp_acts(0x2028) || utf8_cp_acts(0xfffd));
}

/* utf8_term_sbuf: text for a terminal (quarantine, scan) */
static void term_is(const char *in, int json, const char *want)
{
	size_t n = strlen(in);
	struct sbuf b;

	sbuf_init(&b, (size_t)-1);
	assert_int_equal(utf8_term_sbuf(&b, in, n, json), 0);
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(b.data ? b.data : "", want, b.len);
	sbuf_free(&b);
}

static void test_term(void **state)
{
	struct sbuf b;

	(void)state;
	/* text: C0 (not tab) and DEL as \xHH, C1 and bidi as \uXXXX, UTF-8 kept,
	 * ill-formed as U+FFFD */
	term_is("a\x1b[2J\tb\x7f", 0, "a\\x1b[2J\tb\\x7f");
	term_is("\xc2\x9b" "1m \xe2\x80\xae" "exe \xc3\xa9", 0, "\\u009b1m \\u202eexe \xc3\xa9");
	term_is("x\xff\n", 0, "x\xef\xbf\xbd\\x0a");
	/* json: C0 stays (json-c's own layout), DEL, C1, bidi as \uXXXX */
	term_is("{\n \"d\":\"\xe2\x81\xa6\x7f\"}", 1, "{\n \"d\":\"\\u2066\\u007f\"}");
	/* the limit: -1, what fits kept */
	sbuf_init(&b, 4);
	assert_int_equal(utf8_term_sbuf(&b, "\x1b\x1b", 2, 0), -1);
	sbuf_free(&b);
}

/* utf8_term_sbuf's field modes: a value in quotes or bare on root's
 * terminal (quarantine list) escaped as log_esc_quoted / log_esc_word
 * escape it in a log line, printable UTF-8 kept */
static void test_term_fields(void **state)
{
	(void)state;
	term_is("viagra\"  reason=\"ok\" \\x", UTF8_TERM_QUOTED,
	    "viagra\\x22  reason=\\x22ok\\x22 \\\\x");
	/* '=' kept (session 21): RFC 2047 Subjects and BATV/SRS/VERP senders
	 * stay readable and greppable; it ends neither a quoted value nor a
	 * word */
	term_is("=?UTF-8?B?dmlhZ3JhIGNow6hyZQ==?=", UTF8_TERM_QUOTED, "=?UTF-8?B?dmlhZ3JhIGNow6hyZQ==?=");
	term_is("prvs=1234abcd=news@example.org", UTF8_TERM_WORD, "prvs=1234abcd=news@example.org");
	term_is("\"x> -> <ceo\"@e caf\xc3\xa9\t\xe2\x80\xae", UTF8_TERM_WORD,
	    "\\x22x\\x3e\\x20-\\x3e\\x20\\x3cceo\\x22@e\\x20caf\xc3\xa9\\x09\\u202e");
	/* every other ASCII character as the log's escapers write it */
	for (int c = 1; c < 0x80; c++) {
		char in[2] = { (char)c, 0 }, want[16];

		if (c == '=')
			continue;
		log_esc_quoted(want, sizeof(want), in, 1);
		term_is(in, UTF8_TERM_QUOTED, want);
		log_esc_word(want, sizeof(want), in, 1);
		term_is(in, UTF8_TERM_WORD, want);
	}
	/* a NUL inside is shown, and what follows it */
	{
		struct sbuf b;

		sbuf_init(&b, (size_t)-1);
		assert_int_equal(utf8_term_sbuf(&b, "a\0b", 3, UTF8_TERM_QUOTED), 0);
		assert_int_equal(b.len, 6);
		assert_memory_equal(b.data, "a\\x00b", 6);
		sbuf_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_python_vectors),
		cmocka_unit_test(test_exhaustive),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_json_c),
		cmocka_unit_test(test_json_random),
		cmocka_unit_test(test_decode_acts),
		cmocka_unit_test(test_term),
		cmocka_unit_test(test_term_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
