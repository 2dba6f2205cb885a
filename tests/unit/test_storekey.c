/* test_storekey.c - keys built from what a client sends (store_key_hash,
 * filters/store.c): the digest pinned to its definition, fields framed so
 * no two lists give one key, case folded, and a pair of senders that
 * collide under the 64-bit FNV-1a used before given two keys. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "filters/store.h"

static const char *key(const char *prefix, const char *const *f, size_t n)
{
	static char buf[2][128];
	static int i;

	i ^= 1;
	assert_int_equal(store_key_hash(prefix, f, n, buf[i], sizeof(buf[i])), 0);
	return buf[i];
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

/* The values below are SHA-256 over (8-byte big-endian length, bytes) of
 * the prefix and each field, lower-cased, cut to 16 bytes (computed apart
 * with Python's hashlib): a change here orphans every greylist entry. */
static void test_pinned(void **state)
{
	const char *gl[3] = { "127.0.0.0/24", "Sender@Example.org", "rcpt@example.net" };
	char longf[400];
	const char *lf[1] = { longf }, *empty[1] = { "" };

	(void)state;
	assert_string_equal(key("gl:", gl, 3), "gl:a15aad91697cd016fe889ca49bd1b1bf");
	/* longer than the 256-byte buffer the fields go through */
	memset(longf, 'x', 300);
	strcpy(longf + 300, "@EXAMPLE.org");
	assert_string_equal(key("rl:sender:", lf, 1), "rl:sender:df9e354c03516f23ac3097a84bcd2d67");
	assert_string_equal(key("rl:ip:", empty, 1), "rl:ip:3097dd29a6cc9dfb0ac29d003123ff13");
	assert_int_equal(strlen(key("gl:", gl, 3)), 3 + STORE_HASH_HEX);
}

static void test_framing(void **state)
{
	const char *a[2] = { "a", "bc" }, *b[2] = { "ab", "c" };
	/* 0xff separated the greylist fields before: an address holding it
	 * (the proxy refuses one, the milter takes the MTA's envelope as it
	 * comes) moved bytes from one field to the next unseen */
	const char *c[2] = { "x\xffy", "z" }, *d[2] = { "x", "y\xffz" };
	const char *e[1] = { "abc" }, *f[3] = { "a", "bc", "" };
	char ka[128];

	(void)state;
	snprintf(ka, sizeof(ka), "%s", key("p:", a, 2));
	assert_string_not_equal(ka, key("p:", b, 2));
	snprintf(ka, sizeof(ka), "%s", key("p:", c, 2));
	assert_string_not_equal(ka, key("p:", d, 2));
	snprintf(ka, sizeof(ka), "%s", key("p:", a, 2));
	assert_string_not_equal(ka, key("p:", e, 1));
	assert_string_not_equal(ka, key("p:", f, 3));
	/* the prefix is hashed too: "p:" + "q" + ... is not "p:q" + ... */
	snprintf(ka, sizeof(ka), "%s", key("p:", e, 1) + 2);
	assert_string_not_equal(ka, key("p:q", e, 1) + 3);
}

static void test_case_folded(void **state)
{
	const char *a[2] = { "User@Example.ORG", "X" }, *b[2] = { "user@example.org", "x" };
	const char *c[1] = { "\xc3\x89" }, *d[1] = { "\xc3\xa9" };   /* É, é: bytes kept */
	char ka[128];

	(void)state;
	snprintf(ka, sizeof(ka), "%s", key("p:", a, 2));
	assert_string_equal(ka, key("p:", b, 2));
	snprintf(ka, sizeof(ka), "%s", key("p:", c, 1));
	assert_string_not_equal(ka, key("p:", d, 1));
}

/* Two senders found with a distinguished-point search (about 2^31 FNV-1a
 * runs, 2 minutes of C): one FNV-1a-64 state after their local parts, so
 * any common suffix keeps them equal.  The rate limit keys of before
 * hashed the sender (or recipient domain) alone from the FNV offset
 * basis: one of them used up the other's limit. */
#define RL_A "syglazw57kvyg"
#define RL_B "i2s475yfm2vee"

static void test_fnv_collision_split(void **state)
{
	const char *a[1] = { RL_A "@example.org" }, *b[1] = { RL_B "@example.org" };
	const char *da[1] = { RL_A ".example" }, *db[1] = { RL_B ".example" };
	char ka[128];

	(void)state;
	assert_true(fnv1a(a[0]) == fnv1a(b[0]));         /* the old keys were one */
	assert_true(fnv1a(da[0]) == fnv1a(db[0]));
	snprintf(ka, sizeof(ka), "%s", key("rl:sender:", a, 1));
	assert_string_not_equal(ka, key("rl:sender:", b, 1));
	snprintf(ka, sizeof(ka), "%s", key("rl:rcpt_domain:", da, 1));
	assert_string_not_equal(ka, key("rl:rcpt_domain:", db, 1));
}

/* store_key_hash_bytes: the same framing over bytes as they are (pinned
 * the same way), NUL bytes and case counting */
static void test_bytes(void **state)
{
	static const char msg[] = "Subject: x\r\n\r\na\0B";
	const void *f[2] = { "mid", "<Abc@Example.org>" }, *g[2] = { "msg", msg };
	size_t fl[2] = { 3, 17 }, gl[2] = { 3, sizeof(msg) - 1 };
	const char *folded[2] = { "mid", "<Abc@Example.org>" };
	char out[64], ka[64];

	(void)state;
	assert_int_equal(store_key_hash_bytes("bayes:seen:", f, fl, 2, out, sizeof(out)), 0);
	assert_string_equal(out, "bayes:seen:1cfed9eb73dfe4cbc1d16cd3585b8f99");
	assert_string_not_equal(out, key("bayes:seen:", folded, 2));
	assert_int_equal(store_key_hash_bytes("bayes:seen:", g, gl, 2, out, sizeof(out)), 0);
	assert_string_equal(out, "bayes:seen:f6f04a8dbc00532bc27bd77b1d8adfe0");
	/* past the NUL */
	gl[1]--;
	assert_int_equal(store_key_hash_bytes("bayes:seen:", g, gl, 2, ka, sizeof(ka)), 0);
	assert_string_not_equal(out, ka);
	assert_int_equal(store_key_hash_bytes("bayes:seen:", g, gl, 2, ka, 11 + STORE_HASH_HEX), -1);
}

static void test_small_buffer(void **state)
{
	const char *a[1] = { "x" };
	char out[3 + STORE_HASH_HEX + 1];

	(void)state;
	assert_int_equal(store_key_hash("gl:", a, 1, out, sizeof(out) - 1), -1);
	assert_int_equal(store_key_hash("gl:", a, 1, out, sizeof(out)), 0);
	assert_int_equal(strlen(out), sizeof(out) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pinned),
		cmocka_unit_test(test_framing),
		cmocka_unit_test(test_case_folded),
		cmocka_unit_test(test_fnv_collision_split),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_small_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
