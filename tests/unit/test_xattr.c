/* test_xattr.c - XCLIENT/XFORWARD values as mailwarden sends them: xtext
 * (RFC 3461), and never more than the 255 octets of xtext Postfix takes
 * (it refuses a longer value with 501 before decoding it, and a refused
 * XCLIENT tempfailed the client's every transaction).  A value over the
 * limit becomes [UNAVAILABLE], never a cut value. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/smtp_parse.h"
#include "proxy/xattr.h"

static void test_encoding(void **state)
{
	char out[XATTR_VALUE_MAX + 1];

	assert_int_equal(xattr_encode("mail.example.org", out, sizeof out), 16);
	assert_string_equal(out, "mail.example.org");
	/* "+", "=", space, control, DEL and 8-bit octets: upper-case hex */
	assert_int_equal(xattr_encode("a+b=c d\x01\x7f\xc3\xa9", out, sizeof out), 25);
	assert_string_equal(out, "a+2Bb+3Dc+20d+01+7F+C3+A9");
	assert_int_equal(xattr_xtext_len("a+b=c d\x01\x7f\xc3\xa9"), 25);
	assert_int_equal(xattr_encode("", out, sizeof out), 0);
	assert_string_equal(out, "");
}

/* the limit counts xtext octets, as Postfix does: 85 "+" (255 octets of
 * xtext) go, 86 (258) do not, nor 255 octets and one "+" (257) */
static void test_limit_is_xtext_octets(void **state)
{
	char v[600], out[XATTR_VALUE_MAX + 1];

	memset(v, 'a', 255);
	v[255] = '\0';
	assert_int_equal(xattr_encode(v, out, sizeof out), 255);
	assert_string_equal(out, v);
	v[255] = 'a';
	v[256] = '\0';
	assert_int_equal(xattr_encode(v, out, sizeof out), -1);
	assert_string_equal(out, XATTR_UNAVAILABLE);

	memset(v, '+', 85);
	v[85] = '\0';
	assert_int_equal(xattr_encode(v, out, sizeof out), 255);
	assert_int_equal(strlen(out), 255);
	v[85] = '+';
	v[86] = '\0';
	assert_int_equal(xattr_xtext_len(v), 258);
	assert_int_equal(xattr_encode(v, out, sizeof out), -1);
	assert_string_equal(out, XATTR_UNAVAILABLE);

	memset(v, 'h', 254);
	v[254] = '=';
	v[255] = '\0';
	assert_int_equal(xattr_encode(v, out, sizeof out), -1);
	assert_string_equal(out, XATTR_UNAVAILABLE);
}

/* a buffer too small for the xtext: -1, and never half a value */
static void test_small_buffer(void **state)
{
	char small[8], tiny[2];

	assert_int_equal(xattr_encode("abcdefgh", small, sizeof small), -1);
	assert_string_equal(small, "");              /* "[UNAVAILABLE]" does not fit either */
	assert_int_equal(xattr_encode("abcdefg", small, sizeof small), 7);
	assert_string_equal(small, "abcdefg");
	assert_int_equal(xattr_encode("+", tiny, sizeof tiny), -1);
	assert_string_equal(tiny, "");
	assert_int_equal(xattr_encode("x", small, 0), -1);
}

/* what we encode, our own XFORWARD parser (the decoder) reads back
 * whole, for every printable octet and every length up to the limit */
static void test_round_trip(void **state)
{
	char v[256], out[XATTR_VALUE_MAX + 1], arg[300];
	const char *why = NULL;

	for (size_t len = 1; len <= 255; len++) {
		for (size_t i = 0; i < len; i++)
			v[i] = (char)(33 + (i * 7 + len) % 94);       /* "!".."~" */
		v[len] = '\0';
		int n = xattr_encode(v, out, sizeof out);
		if (n < 0) {
			assert_true(xattr_xtext_len(v) > XATTR_VALUE_MAX);
			continue;
		}
		struct smtp_xforward xf;
		memset(&xf, 0, sizeof xf);
		snprintf(arg, sizeof arg, "HELO=%s", out);
		assert_int_equal(smtp_xforward_parse(arg, &xf, &why), 0);
		assert_int_equal(xf.state[SMTP_XF_HELO], SMTP_XF_VALUE);
		assert_string_equal(xf.value[SMTP_XF_HELO], v);
	}
}

/* xattr_name_ok agrees with Postfix's valid_hostname() (and, for
 * XCLIENT, !valid_hostaddr()) on what a NAME may be */
static void test_name_ok(void **state)
{
	static const char *const good[] = {
		"mx.example.org", "a", "a-b.example", "a_b.example", "xn--bcher-kva.example",
		"1a.example", "mail1.example.123a", "A.B.C", "a--b.example",
	};
	static const char *const bad[] = {
		"", "-bad.example", "bad-.example", "a.-b.example", "a..b.example", ".a.example",
		"a.example.", "a b.example", "a@b.example", "[203.0.113.5]", "203.0.113.5",
		"example.123", "12345", "2001:db8::1", "caf\xc3\xa9.example", "a.b-",
	};
	char label[80], name[300];

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		assert_true(xattr_name_ok(good[i]));
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (xattr_name_ok(bad[i])) fail_msg("taken: \"%s\"", bad[i]);

	/* a label of 63 octets, not 64 */
	memset(label, 'x', 64);
	snprintf(name, sizeof name, "%.63s.example", label);
	assert_true(xattr_name_ok(name));
	snprintf(name, sizeof name, "%.64s.example", label);
	assert_false(xattr_name_ok(name));

	/* 255 octets in all, not 256 */
	snprintf(name, sizeof name, "%.63s.%.63s.%.63s.%.63s", label, label, label, label);   /* 255 */
	assert_int_equal(strlen(name), 255);
	assert_true(xattr_name_ok(name));
	name[0] = '\0';
	snprintf(name, sizeof name, "%.63s.%.63s.%.63s.%.62s.a", label, label, label, label);  /* 256 */
	assert_int_equal(strlen(name), 256);
	assert_false(xattr_name_ok(name));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encoding),
		cmocka_unit_test(test_limit_is_xtext_octets),
		cmocka_unit_test(test_small_buffer),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_name_ok),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
