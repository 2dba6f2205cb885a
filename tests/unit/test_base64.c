/* test_base64.c - the base64 codec of quarantine records (proxy/base64.c):
 * RFC 4648's vectors, every byte value and length round trip, and the
 * strict decoder's refusals (a record is the daemon user's file, read by
 * root's release: one form per byte string, nothing made up). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "proxy/base64.h"
#include "proxy/sbuf.h"

static void test_rfc4648_vectors(void **state)
{
	static const char *const v[][2] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	struct sbuf b;

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		sbuf_init(&b, 1024);
		assert_int_equal(base64_encode(&b, v[i][0], strlen(v[i][0])), 0);
		assert_int_equal(b.len, strlen(v[i][1]));
		assert_int_equal(b.len, base64_len(strlen(v[i][0])));
		assert_memory_equal(b.len ? b.data : "", v[i][1], b.len);
		sbuf_reset(&b);
		assert_int_equal(base64_decode(&b, v[i][1], strlen(v[i][1])), 0);
		assert_int_equal(b.len, strlen(v[i][0]));
		assert_memory_equal(b.len ? b.data : "", v[i][0], b.len);
		sbuf_free(&b);
	}
}

/* every byte value, at every offset modulo 3, and every length to 300 */
static void test_round_trip(void **state)
{
	unsigned char in[300];
	struct sbuf enc, dec;

	(void)state;
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7 + 0xe9);
	for (size_t n = 0; n <= sizeof(in); n++) {
		sbuf_init(&enc, (size_t)-1);
		sbuf_init(&dec, (size_t)-1);
		assert_int_equal(base64_encode(&enc, in, n), 0);
		assert_int_equal(enc.len, base64_len(n));
		assert_int_equal(base64_decode(&dec, enc.data ? enc.data : "", enc.len), 0);
		assert_int_equal(dec.len, n);
		if (n > 0)
			assert_memory_equal(dec.data, in, n);
		sbuf_free(&enc);
		sbuf_free(&dec);
	}
}

/* only what the encoder writes: no whitespace, padding only at the end,
 * no third '=', no bits past the last byte */
static void test_strict(void **state)
{
	static const char *const bad[] = {
		"Zg=", "Zg", "Z", "Zm9vY", "Zm9v\n", " Zm9v", "Zm9v ", "Zm\n9v", "Zm9vYg=\n",
		"Z===", "====", "Zg=A", "Z=g=", "=Zm9", "Zm9vYg==Zm9v", "Zm9vYg==Zg==",
		"Zh==", "Zm9=", "Zm-v", "Zm_v", "Zm9v\0Zm9", "Zm9v====",
	};
	static const size_t len[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0 };
	struct sbuf b;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = len[i] ? len[i] : strlen(bad[i]);

		sbuf_init(&b, 1024);
		assert_int_equal(sbuf_add(&b, "kept", 4), 0);
		if (base64_decode(&b, bad[i], n) != -1)
			fail_msg("accepted '%s'", bad[i]);
		/* out unchanged */
		assert_int_equal(b.len, 4);
		assert_memory_equal(b.data, "kept\0", 5);
		sbuf_free(&b);
	}
}

/* the limit of out: refused before anything is written */
static void test_limit(void **state)
{
	struct sbuf b;

	(void)state;
	sbuf_init(&b, 5);
	assert_int_equal(base64_encode(&b, "abcd", 4), -1);	/* 8 > 5 */
	assert_int_equal(b.len, 0);
	assert_int_equal(base64_encode(&b, "a", 1), 0);
	assert_int_equal(base64_encode(&b, "", 0), 0);
	assert_int_equal(b.len, 4);
	sbuf_free(&b);
	sbuf_init(&b, 5);
	assert_int_equal(base64_decode(&b, "Zm9vYmE=", 8), 0);	/* exactly 5 */
	assert_int_equal(b.len, 5);
	assert_int_equal(base64_decode(&b, "Zg==", 4), -1);
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.data, "fooba", 5);
	sbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_strict),
		cmocka_unit_test(test_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
