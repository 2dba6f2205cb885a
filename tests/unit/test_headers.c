/* test_headers.c - the RFC 5322 header walker: plain fields, folding, the
 * obsolete "Name : value" form, messages without body or without headers,
 * the mbox "From " line, text without a colon, LF-only files; and
 * header_edits_apply with many edits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/header_edit.h"
#include "proxy/headers.h"

#define S(x) x, sizeof(x) - 1

static void expect_field(const char *buf, size_t len, size_t *pos,
                         const char *name, const char *rawvalue,
                         const char *unfolded)
{
	struct header_field f;
	char out[256];
	size_t start = *pos;

	assert_int_equal(header_next(buf, len, pos, &f), 1);
	assert_ptr_equal(f.start, buf + start);
	assert_int_equal(f.len, *pos - start);
	assert_int_equal(f.name_len, strlen(name));
	assert_memory_equal(f.name, name, f.name_len);
	assert_true(header_name_is(&f, name));
	assert_int_equal(f.value_len, strlen(rawvalue));
	assert_memory_equal(f.value, rawvalue, f.value_len);
	assert_int_equal(header_unfold(&f, out, sizeof(out)), strlen(unfolded));
	assert_string_equal(out, unfolded);
}

static void test_basic(void **state)
{
	static const char m[] =
		"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi there\r\n"
		"\r\nbody: not a header\r\n";
	struct header_field f;
	size_t pos = 0;

	(void)state;
	expect_field(S(m), &pos, "From", " a@example.org", "a@example.org");
	expect_field(S(m), &pos, "To", " b@example.org", "b@example.org");
	expect_field(S(m), &pos, "Subject", " hi there", "hi there");
	assert_int_equal(header_next(S(m), &pos, &f), 0);
	assert_memory_equal(m + pos, "body:", 5);
	/* at the end it stays at the end */
	assert_int_equal(header_body_offset(S(m)), pos);
	assert_true(header_name_is(&(struct header_field){ .name = "SUBJECT",
	    .name_len = 7 }, "subject"));
	assert_false(header_name_is(&(struct header_field){ .name = "Subject",
	    .name_len = 7 }, "Subjec"));
	assert_false(header_name_is(&(struct header_field){ .name = "Subject",
	    .name_len = 7 }, "Subjects"));
}

static void test_folding(void **state)
{
	static const char m[] =
		"Subject: a\r\n b\r\n\tc  \r\nX-Empty:\r\nX-Folded-Empty:\r\n  \r\n"
		"Received: from x\r\n\tby y;\r\n Mon, 1 Jan 2024\r\n\r\nbody";
	struct header_field f;
	size_t pos = 0;

	(void)state;
	expect_field(S(m), &pos, "Subject", " a\r\n b\r\n\tc  ", "a b\tc");
	expect_field(S(m), &pos, "X-Empty", "", "");
	/* a continuation line of only WSP is still a continuation */
	expect_field(S(m), &pos, "X-Folded-Empty", "\r\n  ", "");
	expect_field(S(m), &pos, "Received", " from x\r\n\tby y;\r\n Mon, 1 Jan 2024",
	             "from x\tby y; Mon, 1 Jan 2024");
	assert_int_equal(header_next(S(m), &pos, &f), 0);
	assert_string_equal(m + pos, "body");
}

static void test_obsolete(void **state)
{
	static const char m[] =
		"Subject  : spaced\r\nTo\t:\ttabbed\r\nX-A:nospace\r\n\r\n";
	struct header_field f;
	size_t pos = 0;

	(void)state;
	expect_field(S(m), &pos, "Subject", " spaced", "spaced");
	expect_field(S(m), &pos, "To", "\ttabbed", "tabbed");
	expect_field(S(m), &pos, "X-A", "nospace", "nospace");
	assert_int_equal(header_next(S(m), &pos, &f), 0);
	assert_int_equal(pos, sizeof(m) - 1);
}

static void test_no_body(void **state)
{
	static const char m1[] = "A: b\r\nC: d\r\n";
	static const char m2[] = "A: b\r\nC: d\r\n e";	/* no final CRLF */
	struct header_field f;
	size_t pos = 0;

	(void)state;
	expect_field(S(m1), &pos, "A", " b", "b");
	expect_field(S(m1), &pos, "C", " d", "d");
	assert_int_equal(header_next(S(m1), &pos, &f), 0);
	assert_int_equal(pos, sizeof(m1) - 1);
	assert_int_equal(header_body_offset(S(m1)), sizeof(m1) - 1);

	pos = 0;
	expect_field(S(m2), &pos, "A", " b", "b");
	expect_field(S(m2), &pos, "C", " d\r\n e", "d e");
	assert_int_equal(pos, sizeof(m2) - 1);
	assert_int_equal(header_next(S(m2), &pos, &f), 0);
	/* empty buffer */
	pos = 0;
	assert_int_equal(header_next("", 0, &pos, &f), 0);
	assert_int_equal(header_body_offset("", 0), 0);
}

static void test_no_headers(void **state)
{
	struct header_field f;
	size_t pos = 0;

	(void)state;
	assert_int_equal(header_next(S("\r\nbody\r\n"), &pos, &f), 0);
	assert_int_equal(pos, 2);
	assert_int_equal(header_body_offset(S("\r\nbody\r\n")), 2);
	pos = 0;
	assert_int_equal(header_next(S("\nbody\n"), &pos, &f), 0);
	assert_int_equal(pos, 1);
}

static void test_mbox_from(void **state)
{
	static const char m[] =
		"From alice@example.org Mon Jan  1 00:00:00 2024\r\n"
		"Subject: x\r\n\r\nbody\r\n";
	struct header_field f;
	size_t pos = 0;

	(void)state;
	assert_int_equal(header_next(S(m), &pos, &f), -1);
	assert_int_equal(pos, 0);
	assert_int_equal(header_body_offset(S(m)), 0);
	/* "From:" is of course a field */
	pos = 0;
	expect_field(S("From: x\r\n\r\n"), &pos, "From", " x", "x");
}

static void test_not_a_field(void **state)
{
	static const char m[] = "A: b\r\nthis is body\r\nC: d\r\n";
	static const char *const bad[] = {
		" x: leading space\r\n",	/* continuation with no field */
		"\tx: leading tab\r\n",
		": no name\r\n",
		"Bad Name: x\r\n",
		"No colon at all\r\n",
		"NoColon\r\n",
		"\xc3\x9cml\xc3\xa4ut: x\r\n",	/* 8-bit name */
		"Ctl\x01: x\r\n",
		"Name",				/* ends before the colon */
		"Name   ",
		"\r",
	};
	struct header_field f;
	size_t pos = 0, i;

	(void)state;
	expect_field(S(m), &pos, "A", " b", "b");
	assert_int_equal(header_next(S(m), &pos, &f), -1);
	assert_int_equal(pos, 6);
	assert_int_equal(header_body_offset(S(m)), 6);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pos = 0;
		if (header_next(bad[i], strlen(bad[i]), &pos, &f) != -1)
			fail_msg("accepted as a field: %s", bad[i]);
		assert_int_equal(pos, 0);
	}
}

static void test_lf_only(void **state)
{
	static const char m[] = "A: b\nC: d\n  e\n\nbody\n";
	struct header_field f;
	size_t pos = 0;

	(void)state;
	expect_field(S(m), &pos, "A", " b", "b");
	expect_field(S(m), &pos, "C", " d\n  e", "d  e");
	assert_int_equal(header_next(S(m), &pos, &f), 0);
	assert_string_equal(m + pos, "body\n");
	assert_int_equal(header_body_offset(S(m)), 15);
}

static void test_unfold_small(void **state)
{
	static const char m[] = "Subject: abcdef\r\n\r\n";
	struct header_field f;
	char out[4];
	size_t pos = 0;

	(void)state;
	assert_int_equal(header_next(S(m), &pos, &f), 1);
	assert_int_equal(header_unfold(&f, out, sizeof(out)), 3);
	assert_string_equal(out, "abc");
	assert_int_equal(header_unfold(&f, out, 1), 0);
	assert_string_equal(out, "");
	out[0] = 'x';
	assert_int_equal(header_unfold(&f, out, 0), 0);
	assert_int_equal(out[0], 'x');
}

/* a CR alone is an ordinary byte; NUL and 8-bit bytes in values are kept */
static void test_odd_bytes(void **state)
{
	static const char m[] = "X: a\rb\r\nY: \xff\0z\r\n\r\n";
	struct header_field f;
	size_t pos = 0;

	(void)state;
	expect_field(S(m), &pos, "X", " a\rb", "a\rb");
	assert_int_equal(header_next(S(m), &pos, &f), 1);
	assert_int_equal(f.value_len, 4);
	assert_memory_equal(f.value, " \xff\0z", 4);
	assert_int_equal(header_next(S(m), &pos, &f), 0);
	assert_int_equal(pos, sizeof(m) - 1);
}

static void test_name_starts(void **state)
{
	const char msg[] = "X-Spam-Level: ***\r\nx-spam-flag: YES\r\nX-Spamming: no\r\nX-Spa: 1\r\n\r\n";
	size_t pos = 0;
	struct header_field f;
	(void)state;
	assert_int_equal(header_next(msg, sizeof msg - 1, &pos, &f), 1);
	assert_true(header_name_starts(&f, "X-Spam-"));
	assert_false(header_name_starts(&f, "X-Spam-Flag"));
	assert_int_equal(header_next(msg, sizeof msg - 1, &pos, &f), 1);
	assert_true(header_name_starts(&f, "X-Spam-"));
	assert_true(header_name_starts(&f, "X-SPAM-FLAG"));
	assert_int_equal(header_next(msg, sizeof msg - 1, &pos, &f), 1);
	assert_false(header_name_starts(&f, "X-Spam-"));    /* the dash counts */
	assert_true(header_name_starts(&f, "X-Spam"));
	assert_int_equal(header_next(msg, sizeof msg - 1, &pos, &f), 1);
	assert_false(header_name_starts(&f, "X-Spam-"));    /* shorter than the prefix */
}

/* a removal names one field name exactly: a '*' in it is a character of
 * the name (a filter copies names from the message), the policy's
 * X-Spam-* removal is HE_REMOVE_PREFIX */
static void test_remove_takes_the_name_literally(void **state)
{
	const char msg[] = "From: a@example.org\r\nX-Spam-Flag: YES\r\n*: star\r\n"
	    "X-Strip*: x\r\nX-Stripped: y\r\nSubject: hi\r\n\r\nbody\r\n";
	struct header_edit e[] = {
		{ HE_REMOVE, "*", NULL, 0 },
		{ HE_REMOVE, "X-Strip*", NULL, 0 },
		{ HE_REMOVE_PREFIX, "X-Spam-", NULL, 0 },
	};
	struct sbuf out;
	(void)state;
	sbuf_init(&out, (size_t)-1);
	header_edits_apply(msg, sizeof msg - 1, e, 3, &out);
	sbuf_add(&out, "", 1);
	assert_string_equal(out.data, "From: a@example.org\r\nX-Stripped: y\r\nSubject: hi\r\n");
	sbuf_free(&out);
}

/* session 20: a line that is no field ends the header section for the
 * filters; the section goes out ended there by an empty line, as
 * Postfix's cleanup ends it, so that a reader that reads on (GMime) sees
 * neither the From nor the Authentication-Results after it as a field */
static void test_line_without_colon_ends_the_section(void **state)
{
	const char msg[] = "From: x@evil.test\r\nJunk line\r\nFrom: ceo@victim.test\r\n"
	    "Authentication-Results: mw.test; dmarc=pass\r\n\r\nbody\r\n";
	const char ok[] = "From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
	struct header_edit e[] = { { HE_ADD, "Authentication-Results", "mw.test; dmarc=none", 0 } };
	struct sbuf out;
	size_t rest;

	(void)state;
	sbuf_init(&out, (size_t)-1);
	rest = header_edits_apply(msg, sizeof msg - 1, e, 1, &out);
	assert_int_equal(rest, strlen("From: x@evil.test\r\n"));
	sbuf_add(&out, msg + rest, sizeof msg - 1 - rest);
	sbuf_add(&out, "", 1);
	assert_string_equal(out.data, "Authentication-Results: mw.test; dmarc=none\r\n"
	    "From: x@evil.test\r\n\r\nJunk line\r\nFrom: ceo@victim.test\r\n"
	    "Authentication-Results: mw.test; dmarc=pass\r\n\r\nbody\r\n");
	/* the offset alone (out NULL) is the same */
	assert_int_equal(header_edits_apply(msg, sizeof msg - 1, NULL, 0, NULL), rest);
	/* a well-formed message: nothing added; header only: nothing added */
	sbuf_reset(&out);
	rest = header_edits_apply(ok, sizeof ok - 1, NULL, 0, &out);
	sbuf_add(&out, ok + rest, sizeof ok - 1 - rest);
	sbuf_add(&out, "", 1);
	assert_string_equal(out.data, ok);
	sbuf_reset(&out);
	rest = header_edits_apply("Subject: x\r\n", 12, NULL, 0, &out);
	assert_int_equal(rest, 12);
	assert_int_equal(out.len, 12);
	sbuf_free(&out);
}

/* header_edits_apply: every HE_REMOVE_AT counts however many there are
 * (80 forged Authentication-Results, one edit each, in any order and
 * name case: 17 stayed when only 64 edits were tracked); a change takes
 * the first field no removal takes; added fields on top */
static void test_edits_many_remove_at(void **state)
{
	enum { NF = 80 };
	struct header_edit e[NF + 4];
	char msg[NF * 64 + 1024], *p = msg;
	unsigned forged[NF], nth = 0;
	struct sbuf out;
	size_t n = 0, i, rest;

	(void)state;
	p += sprintf(p, "Subject: old\r\n");
	for (i = 0; i < NF; i++) {
		forged[i] = nth++;
		p += sprintf(p, "Authentication-Results: mx.mw.test; dmarc=pass (%zu)\r\n", i);
		if (i % 10 == 3) {
			p += sprintf(p, "authentication-results: other.test; spf=pass (k%zu)\r\n", i);
			nth++;
		}
	}
	p += sprintf(p, "Subject: second\r\nX-Spam-Flag: YES\r\n\r\nbody\r\n");
	memset(e, 0, sizeof(e));
	/* one edit per forged field, last first, the name in either case */
	for (i = NF; i-- > 0;) {
		e[n].op = HE_REMOVE_AT;
		e[n].name = i % 2 ? "AUTHENTICATION-RESULTS" : "Authentication-Results";
		e[n].index = forged[i];
		n++;
	}
	e[n++] = (struct header_edit){ HE_CHANGE, "Subject", "new", 0 };
	e[n++] = (struct header_edit){ HE_REMOVE_PREFIX, "X-Spam-", NULL, 0 };
	e[n++] = (struct header_edit){ HE_ADD, "Authentication-Results", "mx.mw.test; dmarc=fail", 0 };
	e[n++] = (struct header_edit){ HE_REMOVE_AT, "Subject", NULL, 0 };
	sbuf_init(&out, (size_t)-1);
	rest = header_edits_apply(msg, strlen(msg), e, n, &out);
	assert_memory_equal(msg + rest, "\r\nbody\r\n", 8);
	sbuf_add(&out, "", 1);
	assert_string_equal(out.data,
	    "Authentication-Results: mx.mw.test; dmarc=fail\r\n"
	    "authentication-results: other.test; spf=pass (k3)\r\n"
	    "authentication-results: other.test; spf=pass (k13)\r\n"
	    "authentication-results: other.test; spf=pass (k23)\r\n"
	    "authentication-results: other.test; spf=pass (k33)\r\n"
	    "authentication-results: other.test; spf=pass (k43)\r\n"
	    "authentication-results: other.test; spf=pass (k53)\r\n"
	    "authentication-results: other.test; spf=pass (k63)\r\n"
	    "authentication-results: other.test; spf=pass (k73)\r\n"
	    "Subject: new\r\n");
	sbuf_free(&out);
	/* the offset alone, and no edits at all */
	assert_int_equal(header_edits_apply(msg, strlen(msg), e, n, NULL), rest);
	assert_int_equal(header_edits_apply(msg, strlen(msg), NULL, 0, NULL), rest);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_folding),
		cmocka_unit_test(test_obsolete),
		cmocka_unit_test(test_no_body),
		cmocka_unit_test(test_no_headers),
		cmocka_unit_test(test_mbox_from),
		cmocka_unit_test(test_not_a_field),
		cmocka_unit_test(test_lf_only),
		cmocka_unit_test(test_unfold_small),
		cmocka_unit_test(test_odd_bytes),
		cmocka_unit_test(test_name_starts),
		cmocka_unit_test(test_remove_takes_the_name_literally),
		cmocka_unit_test(test_line_without_colon_ends_the_section),
		cmocka_unit_test(test_edits_many_remove_at),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
