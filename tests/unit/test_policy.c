/* test_policy.c - policy_decide: thresholds per direction, hard verdicts,
 * replies (code from config, text from the filter), and the X-Spam-*
 * header edits in SpamAssassin's form, the Subject tag, folding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/policy.h"

static void cfg_init(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->inbound.tag_score = 5.0;
	c->inbound.quarantine_score = 0;
	c->inbound.reject_score = 15.0;
	c->outbound.tag_score = 3.0;
	c->outbound.quarantine_score = 8.0;
	c->outbound.reject_score = 10.0;
	strcpy(c->reject_reply, "550 5.7.1 Message rejected as spam");
	strcpy(c->tempfail_reply, "451 4.7.1 Try again later");
	strcpy(c->quarantine_reply, "250 2.0.0 Message accepted");
	strcpy(c->discard_reply, "250 2.0.0 Message discarded");
}

static void add_sym(struct scan_result *r, const char *name, double score)
{
	r->symbols = realloc(r->symbols, (r->nsymbols + 1) * sizeof(*r->symbols));
	memset(&r->symbols[r->nsymbols], 0, sizeof(*r->symbols));
	strcpy(r->symbols[r->nsymbols].name, name);
	strcpy(r->symbols[r->nsymbols].filter, "t");
	r->symbols[r->nsymbols].score = score;
	r->nsymbols++;
	r->score += score;
}

static void add_edit(struct scan_result *r, enum header_edit_op op, const char *n, const char *v)
{
	r->edits = realloc(r->edits, (r->nedits + 1) * sizeof(*r->edits));
	r->edits[r->nedits].op = op;
	r->edits[r->nedits].name = strdup(n);
	r->edits[r->nedits].value = v ? strdup(v) : NULL;
	r->nedits++;
}

static struct policy_in in_of(enum mw_direction d)
{
	struct policy_in in;

	memset(&in, 0, sizeof(in));
	in.direction = d;
	in.hard = MW_ACCEPT;
	return in;
}

static void expect_removes(const struct scan_result *r)
{
	/* one removal of every X-Spam-* field the sender wrote */
	assert_true(r->nedits >= 1);
	assert_int_equal(r->edits[0].op, HE_REMOVE_PREFIX);
	assert_string_equal(r->edits[0].name, "X-Spam-");
	assert_null(r->edits[0].value);
}

static const struct header_edit *find_edit(const struct scan_result *r, enum header_edit_op op,
                                           const char *name)
{
	size_t i;

	for (i = 0; i < r->nedits; i++)
		if (r->edits[i].op == op && strcmp(r->edits[i].name, name) == 0)
			return &r->edits[i];
	return NULL;
}

static void test_accept(void **state)
{
	struct config c;
	struct scan_result r;
	struct policy_in in = in_of(MW_INBOUND);
	char why[128];

	(void)state;
	cfg_init(&c);
	memset(&r, 0, sizeof(r));
	add_sym(&r, "A", 4.9);
	policy_decide(&c, &in, &r, why, sizeof(why));
	assert_int_equal(r.action, MW_ACCEPT);
	assert_true(r.required == 5.0);
	assert_string_equal(r.reply, "");
	assert_int_equal(r.nedits, 1);	/* removals only, even for accept */
	expect_removes(&r);
	scan_result_free(&r);
}

static void test_tag(void **state)
{
	struct config c;
	struct scan_result r;
	struct policy_in in = in_of(MW_INBOUND);
	const struct header_edit *e;

	(void)state;
	cfg_init(&c);
	memset(&r, 0, sizeof(r));
	add_sym(&r, "SYM_B", 4.0);
	add_sym(&r, "SYM_A", 3.3);
	add_edit(&r, HE_ADD, "Authentication-Results", "mx; spf=pass");
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_TAG);
	assert_string_equal(r.reply, "");
	/* removals, then the filter's edit, then ours */
	assert_int_equal(r.nedits, 5);
	expect_removes(&r);
	assert_string_equal(r.edits[1].name, "Authentication-Results");
	assert_int_equal(r.edits[2].op, HE_ADD);
	assert_string_equal(r.edits[2].name, "X-Spam-Flag");
	assert_string_equal(r.edits[2].value, "YES");
	assert_string_equal(r.edits[3].name, "X-Spam-Score");
	assert_string_equal(r.edits[3].value, "7.3");
	assert_string_equal(r.edits[4].name, "X-Spam-Status");
	assert_string_equal(r.edits[4].value, "Yes, score=7.3 required=5.0 tests=SYM_A,SYM_B");
	/* no subject_tag configured: Subject untouched */
	e = find_edit(&r, HE_CHANGE, "Subject");
	assert_null(e);
	scan_result_free(&r);
}

static void test_thresholds_inbound(void **state)
{
	struct config c;
	struct scan_result r;
	struct policy_in in = in_of(MW_INBOUND);

	(void)state;
	cfg_init(&c);
	memset(&r, 0, sizeof(r));
	add_sym(&r, "BIG", 15.0);
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_REJECT);
	assert_string_equal(r.reply, "550 5.7.1 Message rejected as spam");
	assert_int_equal(r.nedits, 1);	/* nothing added to a rejected message */
	scan_result_free(&r);

	/* the same score outbound hits the outbound thresholds */
	memset(&r, 0, sizeof(r));
	add_sym(&r, "MID", 8.0);
	in.direction = MW_OUTBOUND;
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_QUARANTINE);
	assert_string_equal(r.reply, "250 2.0.0 Message accepted");
	assert_true(r.required == 3.0);
	scan_result_free(&r);

	memset(&r, 0, sizeof(r));
	add_sym(&r, "MID", 8.0);
	in.direction = MW_INBOUND;
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_TAG);	/* inbound quarantine is disabled */
	scan_result_free(&r);

	memset(&r, 0, sizeof(r));
	add_sym(&r, "LOW", 3.0);
	in.direction = MW_OUTBOUND;
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_TAG);
	scan_result_free(&r);

	memset(&r, 0, sizeof(r));
	add_sym(&r, "HIGH", 10.0);
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_REJECT);
	scan_result_free(&r);

	/* negative scores never tag */
	memset(&r, 0, sizeof(r));
	add_sym(&r, "HAM", -20.0);
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_ACCEPT);
	scan_result_free(&r);
}

static void test_disabled_thresholds(void **state)
{
	struct config c;
	struct scan_result r;
	struct policy_in in = in_of(MW_INBOUND);

	(void)state;
	cfg_init(&c);
	c.inbound.tag_score = 0;
	c.inbound.reject_score = 0;
	c.inbound.quarantine_score = 20;
	memset(&r, 0, sizeof(r));
	add_sym(&r, "X", 19.9);
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_ACCEPT);
	assert_true(r.required == 20.0);	/* the lowest enabled threshold */
	scan_result_free(&r);

	c.inbound.quarantine_score = 0;
	memset(&r, 0, sizeof(r));
	add_sym(&r, "X", 1000);
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_ACCEPT);
	assert_true(r.required == 0);
	scan_result_free(&r);
}

static void test_hard_verdicts(void **state)
{
	struct config c;
	struct scan_result r;
	struct policy_in in = in_of(MW_INBOUND);
	char why[128];

	(void)state;
	cfg_init(&c);
	/* a verdict wins over a low score, with the filter's text */
	memset(&r, 0, sizeof(r));
	in.hard = MW_REJECT;
	in.hard_text = "Message refused by example plugin";
	in.hard_by = "example";
	policy_decide(&c, &in, &r, why, sizeof(why));
	assert_int_equal(r.action, MW_REJECT);
	assert_string_equal(r.reply, "550 5.7.1 Message refused by example plugin");
	assert_non_null(strstr(why, "example"));
	scan_result_free(&r);

	/* a score harder than the verdict wins, with the configured text */
	memset(&r, 0, sizeof(r));
	add_sym(&r, "BIG", 16);
	in.hard = MW_TEMPFAIL;
	in.hard_text = "later please";
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_REJECT);
	assert_string_equal(r.reply, "550 5.7.1 Message rejected as spam");
	scan_result_free(&r);

	/* tempfail over a tag score */
	memset(&r, 0, sizeof(r));
	add_sym(&r, "MID", 6);
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_TEMPFAIL);
	assert_string_equal(r.reply, "451 4.7.1 later please");
	assert_int_equal(r.nedits, 1);
	scan_result_free(&r);

	/* discard, configured text */
	memset(&r, 0, sizeof(r));
	in.hard = MW_DISCARD;
	in.hard_text = NULL;
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_DISCARD);
	assert_string_equal(r.reply, "250 2.0.0 Message discarded");
	scan_result_free(&r);

	/* a text with CR/LF never reaches the reply */
	memset(&r, 0, sizeof(r));
	in.hard = MW_REJECT;
	in.hard_text = "no\r\n250 ok";
	policy_decide(&c, &in, &r, NULL, 0);
	assert_string_equal(r.reply, "550 5.7.1 Message rejected as spam");
	scan_result_free(&r);

	/* a configured reply without an enhanced code */
	strcpy(c.reject_reply, "554 Go away");
	memset(&r, 0, sizeof(r));
	in.hard_text = "Not here";
	policy_decide(&c, &in, &r, NULL, 0);
	assert_string_equal(r.reply, "554 Not here");
	scan_result_free(&r);

	/* an unusable configured reply falls back to a sane default */
	strcpy(c.reject_reply, "250 oops");
	memset(&r, 0, sizeof(r));
	in.hard_text = NULL;
	policy_decide(&c, &in, &r, NULL, 0);
	assert_string_equal(r.reply, "550 5.7.1 Message rejected");
	scan_result_free(&r);
}

static void test_spam_headers_always(void **state)
{
	struct config c;
	struct scan_result r;
	struct policy_in in = in_of(MW_INBOUND);

	(void)state;
	cfg_init(&c);
	c.spam_headers = SPAM_HEADERS_ALWAYS;
	memset(&r, 0, sizeof(r));
	add_sym(&r, "LOW", 0.5);
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_ACCEPT);
	assert_int_equal(r.nedits, 3);
	assert_null(find_edit(&r, HE_ADD, "X-Spam-Flag"));
	assert_string_equal(find_edit(&r, HE_ADD, "X-Spam-Score")->value, "0.5");
	assert_string_equal(find_edit(&r, HE_ADD, "X-Spam-Status")->value,
	    "No, score=0.5 required=5.0 tests=LOW");
	scan_result_free(&r);

	memset(&r, 0, sizeof(r));
	policy_decide(&c, &in, &r, NULL, 0);
	assert_string_equal(find_edit(&r, HE_ADD, "X-Spam-Status")->value,
	    "No, score=0.0 required=5.0 tests=none");
	scan_result_free(&r);

	/* not on mail that is not delivered */
	memset(&r, 0, sizeof(r));
	add_sym(&r, "BIG", 99);
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_REJECT);
	assert_int_equal(r.nedits, 1);
	scan_result_free(&r);
}

static void test_subject_tag(void **state)
{
	struct config c;
	struct scan_result r;
	struct policy_in in = in_of(MW_INBOUND);
	const char *subj = " Cheap pills\r\n now";
	const struct header_edit *e;

	(void)state;
	cfg_init(&c);
	strcpy(c.subject_tag, "***SPAM***");
	memset(&r, 0, sizeof(r));
	add_sym(&r, "X", 6);
	in.subject = subj;
	in.subject_len = strlen(subj);
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_TAG);
	e = find_edit(&r, HE_CHANGE, "Subject");
	assert_non_null(e);
	assert_string_equal(e->value, "***SPAM*** Cheap pills\r\n now");	/* folding kept */
	scan_result_free(&r);

	/* no Subject: one is added */
	memset(&r, 0, sizeof(r));
	add_sym(&r, "X", 6);
	in.subject = NULL;
	in.subject_len = 0;
	policy_decide(&c, &in, &r, NULL, 0);
	e = find_edit(&r, HE_ADD, "Subject");
	assert_non_null(e);
	assert_string_equal(e->value, "***SPAM***");
	scan_result_free(&r);

	/* not tagged: Subject untouched */
	memset(&r, 0, sizeof(r));
	add_sym(&r, "X", 1);
	in.subject = subj;
	in.subject_len = strlen(subj);
	policy_decide(&c, &in, &r, NULL, 0);
	assert_null(find_edit(&r, HE_CHANGE, "Subject"));
	assert_null(find_edit(&r, HE_ADD, "Subject"));
	scan_result_free(&r);
}

static void test_status_folding(void **state)
{
	struct config c;
	struct scan_result r;
	struct policy_in in = in_of(MW_INBOUND);
	const struct header_edit *e;
	char name[64], unfolded[4096];
	const char *p, *line;
	size_t o = 0;
	int i;

	(void)state;
	cfg_init(&c);
	memset(&r, 0, sizeof(r));
	for (i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "SOME_RATHER_LONG_RULE_NAME_%02d", 19 - i);
		add_sym(&r, name, 0.5);
	}
	policy_decide(&c, &in, &r, NULL, 0);
	assert_int_equal(r.action, MW_TAG);
	e = find_edit(&r, HE_ADD, "X-Spam-Status");
	assert_non_null(e);
	assert_non_null(strstr(e->value, ",\r\n\t"));
	/* every line within 78 columns (a tab counted as 8), but the first:
	 * like SpamAssassin, the first test stays after "tests=" */
	line = e->value;
	for (p = e->value;; p++) {
		if (*p == '\r' || *p == '\0') {
			size_t w = (size_t)(p - line) + (line == e->value ? 15 : 8);

			assert_true(w <= (line == e->value ? 15 + 35 + 64 : 78));
			if (*p == '\0')
				break;
			assert_true(p[1] == '\n' && p[2] == '\t');
			p += 2;
			line = p + 1;
		}
	}
	/* unfolded, the tests are sorted and complete */
	for (p = e->value; *p; p++)
		if (*p != '\r' && *p != '\n' && *p != '\t')
			unfolded[o++] = *p;
	unfolded[o] = '\0';
	assert_non_null(strstr(unfolded, "Yes, score=10.0 required=5.0 tests="
	    "SOME_RATHER_LONG_RULE_NAME_00,SOME_RATHER_LONG_RULE_NAME_01,"));
	assert_non_null(strstr(unfolded, "SOME_RATHER_LONG_RULE_NAME_18,SOME_RATHER_LONG_RULE_NAME_19"));
	scan_result_free(&r);
}

static void test_reply_direct(void **state)
{
	struct config c;
	char out[512];

	(void)state;
	cfg_init(&c);
	policy_reply(&c, MW_ACCEPT, "x", out, sizeof(out));
	assert_string_equal(out, "");
	policy_reply(&c, MW_TAG, NULL, out, sizeof(out));
	assert_string_equal(out, "");
	policy_reply(&c, MW_TEMPFAIL, NULL, out, sizeof(out));
	assert_string_equal(out, "451 4.7.1 Try again later");
	policy_reply(&c, MW_QUARANTINE, "Held for review", out, sizeof(out));
	assert_string_equal(out, "250 2.0.0 Held for review");
	/* a verdict text with its own code of the action's class is the reply
	 * (the antivirus's 554); one of another class is just text */
	policy_reply(&c, MW_REJECT, "554 5.7.1 Virus found: X.Y", out, sizeof(out));
	assert_string_equal(out, "554 5.7.1 Virus found: X.Y");
	policy_reply(&c, MW_TEMPFAIL, "554 5.7.1 Virus found: X.Y", out, sizeof(out));
	assert_string_equal(out, "451 4.7.1 554 5.7.1 Virus found: X.Y");
	policy_reply(&c, MW_REJECT, "554 no enhanced code", out, sizeof(out));
	assert_string_equal(out, "550 5.7.1 554 no enhanced code");
	assert_int_equal(policy_text_ok("fine text"), 1);
	assert_int_equal(policy_text_ok(""), 0);
	assert_int_equal(policy_text_ok("tab\there"), 0);
	assert_int_equal(policy_text_ok("caf\xc3\xa9"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accept),
		cmocka_unit_test(test_tag),
		cmocka_unit_test(test_thresholds_inbound),
		cmocka_unit_test(test_disabled_thresholds),
		cmocka_unit_test(test_hard_verdicts),
		cmocka_unit_test(test_spam_headers_always),
		cmocka_unit_test(test_subject_tag),
		cmocka_unit_test(test_status_folding),
		cmocka_unit_test(test_reply_direct),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
