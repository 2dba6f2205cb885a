/* test_sender_norm.c - the stable part of tagged envelope senders
 * (filters/sender_norm.c): BATV, SRS0/SRS1, +ext, VERP numbers and ids,
 * and the bounds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "filters/sender_norm.h"

static const char *norm(const char *in)
{
	static char buf[600];

	return sender_norm(in, buf, sizeof buf) >= 0 ? buf : "-";
}

static void test_batv(void **state)
{
	(void)state;
	assert_string_equal(norm("prvs=1123abcdef=news@example.org"), "news@example.org");
	assert_string_equal(norm("PRVS=1124FEDCBA=News@Example.ORG"), "news@example.org");
	assert_string_equal(norm("prvs=1123abcdef=news@example.org"),
	    norm("prvs=1124fedcba=news@example.org"));
	/* Exchange Online's form */
	assert_string_equal(norm("msprvs1=19ab2cd3ef=bounces-x@example.com"), "bounces-x@example.com");
	/* not a tag: left alone (but for the usual steps) */
	assert_string_equal(norm("prvs=a.b=x@example.org"), "prvs=a.b=x@example.org");
	assert_string_equal(norm("prvs=@example.org"), "prvs=@example.org");
	assert_string_equal(norm("prvs=abc=@example.org"), "prvs=abc=@example.org");
}

static void test_srs(void **state)
{
	(void)state;
	assert_string_equal(norm("SRS0=HHH1=T1=orig.example=alice@fwd.example"),
	    "srs0=orig.example=alice@fwd.example");
	assert_string_equal(norm("SRS0=HHH1=T1=orig.example=alice@fwd.example"),
	    norm("SRS0=HHH2=T2=orig.example=alice@fwd.example"));
	assert_string_equal(norm("SRS0+HHH1=T1=orig.example=alice@fwd.example"),
	    "srs0=orig.example=alice@fwd.example");
	assert_string_equal(norm("SRS1=HHH=fwd1.example==HHH=TT=orig.example=alice@fwd2.example"),
	    "srs1=fwd1.example==orig.example=alice@fwd2.example");
	assert_string_equal(norm("SRS1=XYZ=fwd1.example=+ABC=Q1=orig.example=alice@fwd2.example"),
	    "srs1=fwd1.example==orig.example=alice@fwd2.example");
	/* malformed: only the usual steps (digits) */
	assert_string_equal(norm("SRS0=HHH=TT=orig.example@fwd.example"), "srs#=hhh=tt=orig.example@fwd.example");
	assert_string_equal(norm("SRS0=HHH@fwd.example"), "srs#=hhh@fwd.example");
	assert_string_equal(norm("SRS0==TT=a=b@fwd.example"), "srs#==tt=a=b@fwd.example");
	/* the original's local part gets the usual steps, the domains not */
	assert_string_equal(norm("SRS0=h=t=o1.example=bounce-123+x@f2.example"),
	    "srs0=o1.example=bounce-#@f2.example");
	assert_string_equal(norm("srs2=a=b=c=d@x.example"), "srs#=a=b=c=d@x.example");
}

static void test_ext_and_numbers(void **state)
{
	(void)state;
	assert_string_equal(norm("user+list@example.org"), "user@example.org");
	assert_string_equal(norm("+only@example.org"), "+only@example.org");
	assert_string_equal(norm("bounces-1000123-rcpt=example.net@lists.example.org"),
	    "bounces-#-rcpt=example.net@lists.example.org");
	assert_string_equal(norm("bounces-1000123-rcpt=example.net@lists.example.org"),
	    norm("bounces-1000124-rcpt=example.net@lists.example.org"));
	assert_string_equal(norm("bounce-mc.us4_12345.678@mcsv.net"), "bounce-mc.us#_#.#@mcsv.net");
	/* SES-like hex ids: hex words of 8+ with a digit are one '#' */
	assert_string_equal(norm("0100018b2c3d4e5f-a1b2c3d4-000000@amazonses.com"),
	    "#-#-#@amazonses.com");
	assert_string_equal(norm("deadbeefcafe@example.org"), "deadbeefcafe@example.org");
	assert_string_equal(norm("abc1234@example.org"), "abc#@example.org");
	/* other letters: a mailbox of its own, only its digit runs go */
	assert_string_equal(norm("572ixl3bjrvul@example.org"), "#ixl#bjrvul@example.org");
	assert_string_equal(norm("j0hn2smith@example.org"), "j#hn#smith@example.org");
	/* the domain is never changed but for case; digits stay there */
	assert_string_equal(norm("a1@Mail2.Example.ORG"), "a#@mail2.example.org");
}

static const char *tags(const char *in)
{
	static char buf[512];

	return sender_norm_tags(in, buf, sizeof buf) >= 0 ? buf : "-";
}

/* the tags go, the digits and ids stay (ratelimit_sender's key) */
static void test_tags_only(void **state)
{
	(void)state;
	assert_string_equal(tags("prvs=1123abcdef=News@Lists.Example"), "news@lists.example");
	assert_string_equal(tags("SRS0=HHH=TT=orig.example=alice@fwd.example"),
	                    "srs0=orig.example=alice@fwd.example");
	assert_string_equal(tags("alice+tag1@lists.example"), "alice@lists.example");
	assert_string_equal(tags("user1@school.example"), "user1@school.example");
	assert_string_equal(tags("bounce-deadbeef42@x.example"), "bounce-deadbeef42@x.example");
	assert_string_equal(tags(""), "");
}

static void test_edges(void **state)
{
	char small[8];

	(void)state;
	assert_string_equal(norm(""), "");
	assert_string_equal(norm("postmaster"), "postmaster");
	assert_string_equal(norm("@example.org"), "@example.org");
	assert_string_equal(norm("a@b@example.org"), "a@b@example.org");
	/* bounds: the input must fit, the output never grows */
	assert_int_equal(sender_norm("abcdefgh@x", small, sizeof small), -1);
	assert_string_equal(small, "");
	assert_int_equal(sender_norm("abcdefg", small, sizeof small), 7);
	assert_int_equal(sender_norm("x", small, 0), -1);
	{
		char in[520], out[520];

		memset(in, '7', 500);
		strcpy(in + 500, "@example.org");
		assert_true(strlen(in) < sizeof out);
		assert_int_equal(sender_norm(in, out, sizeof out), (int)strlen("#@example.org"));
		assert_string_equal(out, "#@example.org");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batv),
		cmocka_unit_test(test_srs),
		cmocka_unit_test(test_ext_and_numbers),
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_tags_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
