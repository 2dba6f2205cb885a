/* test_msgfile.c - unit tests for filters/msgfile.c's mbox reading and
 * its "looks like a message" test (learn, session 19): a file of one
 * message is one message, an mbox is split on From_ lines that open the
 * file or follow an empty line (never on a "From " inside a paragraph),
 * the separating empty line is no part of a message, >From lines lose
 * one '>', CRLF and LF files alike; and learn_walk_skips' names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "filters/learn_walk.h"
#include "filters/msgfile.h"

/* split - the messages of data, joined by '|' into out */
static unsigned split(const char *data, char *out, size_t outsz, int *mbox)
{
	struct msgfile_iter it;
	const char *m;
	size_t len, o = 0;
	unsigned n = 0;

	msgfile_iter_init(&it, data, strlen(data));
	*mbox = it.mbox;
	out[0] = '\0';
	while (msgfile_next(&it, &m, &len)) {
		assert_true(o + len + 2 < outsz);
		if (n++ > 0)
			out[o++] = '|';
		memcpy(out + o, m, len);
		o += len;
		out[o] = '\0';
	}
	return n;
}

static void test_one_message(void **st)
{
	char out[256];
	int mbox;

	(void)st;
	assert_int_equal(split("Subject: a\n\nbody\nFrom here\n\nFrom x\n", out, sizeof(out), &mbox), 1);
	assert_false(mbox);
	assert_string_equal(out, "Subject: a\n\nbody\nFrom here\n\nFrom x\n");
	assert_int_equal(split("", out, sizeof(out), &mbox), 1);         /* empty: one (refused later) */
	assert_string_equal(out, "");
}

static void test_mbox_split(void **st)
{
	char out[512];
	int mbox;

	(void)st;
	assert_int_equal(split("From a@b Mon Jan  2 10:00:00 2023\nSubject: 1\n\none\nFrom me, said he\n\n"
	                       "From c@d Mon Jan  2 10:00:01 2023\nSubject: 2\n\ntwo\n", out, sizeof(out), &mbox), 2);
	assert_true(mbox);
	/* "From me" follows a line of text: no separator; the empty line
	 * before the second From_ line is not the first message's */
	assert_string_equal(out, "Subject: 1\n\none\nFrom me, said he\n|Subject: 2\n\ntwo\n");
	/* CRLF */
	assert_int_equal(split("From a\r\nS: 1\r\n\r\nx\r\n\r\nFrom b 1:02\r\nS: 2\r\n\r\ny\r\n", out, sizeof(out),
	                       &mbox), 2);
	assert_string_equal(out, "S: 1\r\n\r\nx\r\n|S: 2\r\n\r\ny\r\n");
	/* after an empty line, but no From_ line: no sender, or no time */
	assert_int_equal(split("From a\nS: 1\n\nFrom the desk of Mr. X, 2 May\n\nFrom  10:00\n", out, sizeof(out),
	                       &mbox), 1);
	assert_string_equal(out, "S: 1\n\nFrom the desk of Mr. X, 2 May\n\nFrom  10:00\n");
	/* a From_ line alone, and one without its line end */
	assert_int_equal(split("From a\n", out, sizeof(out), &mbox), 1);
	assert_string_equal(out, "");
	assert_int_equal(split("From a", out, sizeof(out), &mbox), 1);
	assert_string_equal(out, "");
}

static void test_mbox_unquote(void **st)
{
	const char in[] = "S: 1\n\n>From a\n>>From b\n>Fromage\nx>From c\n>From";
	struct sbuf out;

	(void)st;
	sbuf_init(&out, 1024);
	msgfile_mbox_to_spool(in, strlen(in), &out);
	assert_string_equal(out.data, "S: 1\r\n\r\nFrom a\r\n>From b\r\n>Fromage\r\nx>From c\r\n>From");
	sbuf_reset(&out);
	msgfile_mbox_to_spool("a\r\n>From b\r\n", 12, &out);
	assert_string_equal(out.data, "a\r\nFrom b\r\n");
	sbuf_free(&out);
}

static void test_is_message(void **st)
{
	static const char jpeg[] = "\xff\xd8\xff\xe0\x00\x10JFIF";

	(void)st;
	assert_true(msgfile_is_message("Subject: x\n", 11));
	assert_true(msgfile_is_message("Return-Path: <a@b>\r\n", 20));
	assert_true(msgfile_is_message("X-Spam_Flag.v2 :yes", 19));
	assert_true(msgfile_is_message("Received:", 9));
	assert_false(msgfile_is_message("", 0));
	assert_false(msgfile_is_message(":x", 2));
	assert_false(msgfile_is_message("Subject", 7));
	assert_false(msgfile_is_message("not a header: x", 15));
	assert_false(msgfile_is_message("{\"id\":\"ID0\"}", 12));
	assert_false(msgfile_is_message(jpeg, sizeof(jpeg) - 1));
	assert_false(msgfile_is_message("\nSubject: x", 11));
	assert_false(msgfile_is_message("3 V1700000000 N4\n", 17));
}

static void test_walk_skips(void **st)
{
	(void)st;
	assert_true(learn_walk_skips(".Junk"));
	assert_true(learn_walk_skips("dovecot-uidlist"));
	assert_true(learn_walk_skips("dovecot.index.cache"));
	assert_true(learn_walk_skips("courierimapuiddb"));
	assert_true(learn_walk_skips("maildirfolder"));
	assert_true(learn_walk_skips("subscriptions"));
	assert_true(learn_walk_skips("1700000002.M3P1.host:2,ST"));
	assert_true(learn_walk_skips("1700000002.M3P1.host:2,T"));
	assert_false(learn_walk_skips("1700000002.M3P1.host:2,S"));
	assert_false(learn_walk_skips("1700000002.M3P1.host:2,FRS"));
	assert_false(learn_walk_skips("1700000002.M3P1.host"));
	assert_false(learn_walk_skips("Trash.eml"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_message),
		cmocka_unit_test(test_mbox_split),
		cmocka_unit_test(test_mbox_unquote),
		cmocka_unit_test(test_is_message),
		cmocka_unit_test(test_walk_skips),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
