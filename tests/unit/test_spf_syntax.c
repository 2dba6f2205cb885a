/* test_spf_syntax.c - RFC 7208 record syntax (filters/spf_syntax.c): what
 * the spf filter turns into permerror although libspf2 accepts it, what it
 * must accept, and unknown modifiers left out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "filters/spf_syntax.h"

static int ok(const char *rec)
{
	char why[128];

	return spf_record_syntax_ok(rec, strlen(rec), why, sizeof(why));
}

static void test_valid_records(void **state)
{
	static const char *const good[] = {
		"v=spf1", "v=spf1 -all", "v=spf1 a -all ", "v=spf1  ip4:192.0.2.0/24  ~all",
		"v=spf1 ip4:1.2.3.4/32 ip6:2001:db8::/32 ?all", "v=spf1 a/24 mx//64 a:mail.example.com/24//64",
		"v=spf1 mx:foo:bar/baz.example.com", "v=spf1 include:_spf.example.com -all",
		"v=spf1 exists:%{i}.%{l1r+-}._spf.%{d} -all", "v=spf1 redirect=_spf.example.com",
		"v=spf1 exp=explain._spf.%{d} -all", "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 -all",
		"v=spf1 a:example.com. -all", "v=spf1 ptr ptr:example.com", "v=spf1 a:%{d}",
		"v=spf1 a:macro%%percent%_%_space%-url-space.example.com -all",
		"v=spf1 ip4:1.2.3.4/0", "V=SPF1 A MX -ALL", NULL };
	size_t i;

	(void)state;
	for (i = 0; good[i] != NULL; i++)
		if (!ok(good[i]))
			fail_msg("refused: %s", good[i]);
}

static void test_invalid_records(void **state)
{
	static const char *const bad[] = {
		"v=spf1 a:foo-bar -all",            /* single label: no toplabel */
		"v=spf1 a:111.222.33.44",           /* numeric top label */
		"v=spf1 a:example.-com",            /* bad top label */
		"v=spf1 a: -all", "v=spf1 mx: -all", "v=spf1 exists:", "v=spf1 include:",
		"v=spf1 exists:mail.example.com/24",
		"v=spf1 ip4:1.2.3.4/33", "v=spf1 ip4:1.2.3.4/032", "v=spf1 ip4:01.2.3.4",
		"v=spf1 ip6:::1/129", "v=spf1 a/33", "v=spf1 a//129",
		"v=spf1 redirect=a.example.com redirect=b.example.com",
		"v=spf1 exp=a.example.com exp=b.example.com -all",
		"v=spf1 exp= -all", "v=spf1 redirect=",
		"v=spf1 a:%{x}.example.com",        /* no such macro letter */
		"v=spf1 a:%{c}.example.com",        /* c only in explanations */
		"v=spf1 a:foo%.example.com", "v=spf1 a:foo.example.com%",
		"v=spf1 redirect:t1.example.com",  /* not a mechanism */
		"v=spf1 ip4:192.0.2.3\tip4:192.0.2.4 -all",
		"v=spf1 a:\xef\xbb\xbfgarbage.example.net -all",
		"v=spf1 foo:bar -all", "v=spf1 -all.", "v=spf1 1x=y", "v=spf1-all", NULL };
	size_t i;

	(void)state;
	for (i = 0; bad[i] != NULL; i++)
		if (ok(bad[i]))
			fail_msg("accepted: %s", bad[i]);
}

/* fuzz_spf found these: TXT data may hold NUL bytes, and strchr() finds a
 * set's own terminator, so a NUL passed as a qualifier, a macro letter and
 * a macro delimiter (spf.c refuses NULs itself, but the check must not
 * depend on that) */
static void test_nul_bytes_refused(void **state)
{
	static const char qualifier[] = "v=spf1 \0all";
	static const char letter[] = "v=spf1 a:%{\0}.example.com";
	static const char delimiter[] = "v=spf1 a:%{d\0}.example.com";
	static const char exp_letter[] = "%{\0}";
	static const char exp_delimiter[] = "%{c\0}";
	static const char ip6[] = "v=spf1 ip6:0:db8::\0junk";	/* inet_pton stops at the NUL */
	char why[128];

	(void)state;
	assert_false(spf_record_syntax_ok(qualifier, sizeof(qualifier) - 1, why, sizeof(why)));
	assert_false(spf_record_syntax_ok(letter, sizeof(letter) - 1, why, sizeof(why)));
	assert_false(spf_record_syntax_ok(delimiter, sizeof(delimiter) - 1, why, sizeof(why)));
	assert_false(spf_record_syntax_ok(ip6, sizeof(ip6) - 1, why, sizeof(why)));
	assert_false(spf_explain_string_ok(exp_letter, sizeof(exp_letter) - 1));
	assert_false(spf_explain_string_ok(exp_delimiter, sizeof(exp_delimiter) - 1));
	/* the same bytes without the NUL are fine */
	assert_true(spf_record_syntax_ok("v=spf1 a:%{d}.example.com", 25, why, sizeof(why)));
}

static void test_strip_unknown_modifiers(void **state)
{
	const char *rec = "v=spf1 moo.cow-far_out=man:dog/cat ip4:1.2.3.4 foo=bar redirect=x.example.com "
	                  "exp=e.example.com ?ip4:192.0.2.9";
	char out[200];
	size_t n;

	(void)state;
	n = spf_strip_unknown_modifiers(rec, strlen(rec), out);
	assert_int_equal(n, strlen(out));
	/* the spaces stay, the terms go */
	assert_non_null(strstr(out, "ip4:1.2.3.4"));
	assert_non_null(strstr(out, "redirect=x.example.com"));
	assert_non_null(strstr(out, "exp=e.example.com ?ip4:192.0.2.9"));
	assert_null(strstr(out, "moo"));
	assert_null(strstr(out, "foo=bar"));
	assert_true(ok(out));
}

static void test_redirect_with_all(void **state)
{
	const char *rec = "v=spf1 redirect=t5.example.com ~all";
	char out[100];

	(void)state;
	spf_strip_unknown_modifiers(rec, strlen(rec), out);
	assert_null(strstr(out, "redirect"));
	assert_non_null(strstr(out, "~all"));
	rec = "v=spf1 ip4:192.0.2.1 redirect=t5.example.com";
	spf_strip_unknown_modifiers(rec, strlen(rec), out);
	assert_string_equal(out, rec);
}

static void rw(const char *rec, int v6, const char *want)
{
	char out[300];
	size_t n = spf_rewrite_cidr0(rec, strlen(rec), v6, out, sizeof(out));

	if (want == NULL) {
		if (n != 0)
			fail_msg("%s (v6=%d) rewritten to %s", rec, v6, out);
		return;
	}
	if (n == 0)
		fail_msg("%s (v6=%d) not rewritten", rec, v6);
	if (strcmp(out, want) != 0)
		fail_msg("%s (v6=%d) -> \"%s\", want \"%s\"", rec, v6, out, want);
	if (!ok(out))
		fail_msg("rewritten record refused: %s", out);
}

static void test_rewrite_cidr0(void **state)
{
	(void)state;
	rw("v=spf1 ip4:1.2.3.4/24 a mx:x.example.com/24//64 -all", 0, NULL);
	rw("v=spf1 ip4:1.2.3.4/0 -all", 0, "v=spf1 all -all");
	rw("v=spf1 -ip4:1.2.3.4/0 ~all", 1, "v=spf1  ~all");
	rw("v=spf1 ?ip6:::1/0 -all", 1, "v=spf1 ?all -all");
	rw("v=spf1 a/0 -all", 0, "v=spf1 a:%{d}" SPF_CIDR0_SUFFIX " -all");
	rw("v=spf1 a/0 -all", 1, "v=spf1 a -all");
	rw("v=spf1 +a:mail.example.com./0//64 -all", 1, "v=spf1 +a:mail.example.com.//64 -all");
	rw("v=spf1 mx:example.com//0 -all", 1, "v=spf1 mx:example.com" SPF_CIDR0_SUFFIX " -all");
	rw("v=spf1 mx/24//0 -all", 0, "v=spf1 mx/24 -all");
}

/* fuzz_spf found this: spf_rewrite_cidr0 read the lengths with atoi and
 * strstr, past the end of rec[0..len); here the byte after the record is
 * a digit that must not become part of the last length */
static void test_rewrite_cidr0_within_len(void **state)
{
	static const char rec[] = "v=spf1 a/0//64";
	char out[64];
	size_t n;

	(void)state;
	n = spf_rewrite_cidr0(rec, sizeof(rec) - 2, 1, out, sizeof(out));
	assert_int_equal(n, strlen("v=spf1 a//6"));
	assert_string_equal(out, "v=spf1 a//6");
}

static void test_explain_string(void **state)
{
	(void)state;
	assert_true(spf_explain_string_ok("See me.", 7));
	assert_true(spf_explain_string_ok("%{c} is queried as %{ir}.%{v}.arpa", 34));
	assert_false(spf_explain_string_ok("The %{x}-files.", 15));
	assert_false(spf_explain_string_ok("caf\xc3\xa9", 5));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_records),
		cmocka_unit_test(test_invalid_records),
		cmocka_unit_test(test_nul_bytes_refused),
		cmocka_unit_test(test_strip_unknown_modifiers),
		cmocka_unit_test(test_redirect_with_all),
		cmocka_unit_test(test_rewrite_cidr0),
		cmocka_unit_test(test_rewrite_cidr0_within_len),
		cmocka_unit_test(test_explain_string),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
