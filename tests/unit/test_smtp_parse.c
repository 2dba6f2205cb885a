/* test_smtp_parse.c - unit tests for proxy/smtp_parse.c: verbs, paths and
 * ESMTP parameters, server replies, EHLO keywords and queue ids, with the
 * hostile inputs a client or a broken upstream can send. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/smtp_parse.h"

/* Verbs -------------------------------------------------------------------- */

static void verb_is(const char *line, enum smtp_verb want, const char *want_arg)
{
	const char *arg = NULL;
	enum smtp_verb v = smtp_verb_parse(line, &arg);

	if (v != want)
		fail_msg("\"%s\": verb %s, want %s", line, smtp_verb_name(v), smtp_verb_name(want));
	assert_non_null(arg);
	if (want_arg != NULL)
		assert_string_equal(arg, want_arg);
}

static void test_verb_basic(void **st)
{
	(void)st;
	verb_is("HELO example.org", SMTP_HELO, "example.org");
	verb_is("EHLO example.org", SMTP_EHLO, "example.org");
	verb_is("ehlo example.org", SMTP_EHLO, "example.org");
	verb_is("eHlO x", SMTP_EHLO, "x");
	verb_is("DATA", SMTP_DATA, "");
	verb_is("data", SMTP_DATA, "");
	verb_is("RSET", SMTP_RSET, "");
	verb_is("NOOP", SMTP_NOOP, "");
	verb_is("NOOP hello there", SMTP_NOOP, "hello there");
	verb_is("QUIT", SMTP_QUIT, "");
	verb_is("VRFY user", SMTP_VRFY, "user");
	verb_is("EXPN list", SMTP_EXPN, "list");
	verb_is("HELP", SMTP_HELP, "");
	verb_is("HELP MAIL", SMTP_HELP, "MAIL");
	verb_is("STARTTLS", SMTP_STARTTLS, "");
	verb_is("AUTH PLAIN AGFiYw==", SMTP_AUTH, "PLAIN AGFiYw==");
	verb_is("BDAT 100 LAST", SMTP_BDAT, "100 LAST");
	verb_is("ETRN example.org", SMTP_ETRN, "example.org");
	verb_is("TURN", SMTP_TURN, "");
	verb_is("XCLIENT ADDR=1.2.3.4", SMTP_XCLIENT, "ADDR=1.2.3.4");
	verb_is("XFORWARD NAME=x", SMTP_XFORWARD, "NAME=x");
	/* one space only is eaten after the verb */
	verb_is("EHLO  two", SMTP_EHLO, " two");
	verb_is("NOOP ", SMTP_NOOP, "");
}

static void test_verb_mail_rcpt(void **st)
{
	(void)st;
	verb_is("MAIL FROM:<a@b.example>", SMTP_MAIL, "<a@b.example>");
	verb_is("MAIL FROM: <a@b.example>", SMTP_MAIL, "<a@b.example>");
	verb_is("MAIL FROM:   <a@b.example> SIZE=10", SMTP_MAIL, "<a@b.example> SIZE=10");
	verb_is("mail from:<>", SMTP_MAIL, "<>");
	verb_is("Mail From:<x@y>", SMTP_MAIL, "<x@y>");
	verb_is("RCPT TO:<a@b.example>", SMTP_RCPT, "<a@b.example>");
	verb_is("rcpt to: <a@b.example>", SMTP_RCPT, "<a@b.example>");
	verb_is("RCPT TO:", SMTP_RCPT, "");
	verb_is("MAIL FROM:", SMTP_MAIL, "");
	/* the FROM:/TO: keyword is part of the verb */
	verb_is("MAILFROM:<a@b>", SMTP_UNKNOWN, NULL);
	verb_is("MAIL FROM<a@b>", SMTP_UNKNOWN, NULL);
	verb_is("MAIL FROM :<a@b>", SMTP_UNKNOWN, NULL);
	verb_is("MAIL TO:<a@b>", SMTP_UNKNOWN, NULL);
	verb_is("MAIL <a@b>", SMTP_UNKNOWN, NULL);
	verb_is("MAIL", SMTP_UNKNOWN, NULL);
	verb_is("MAIL FRO", SMTP_UNKNOWN, NULL);
	verb_is("MAIL  FROM:<a@b>", SMTP_UNKNOWN, NULL);
	verb_is("RCPT FROM:<a@b>", SMTP_UNKNOWN, NULL);
	verb_is("RCPT TO<a@b>", SMTP_UNKNOWN, NULL);
	verb_is("RCPTTO:<a@b>", SMTP_UNKNOWN, NULL);
	verb_is("RCPT", SMTP_UNKNOWN, NULL);
}

static void test_verb_unknown(void **st)
{
	const char *arg = "x";

	(void)st;
	verb_is("", SMTP_UNKNOWN, NULL);
	verb_is(" ", SMTP_UNKNOWN, NULL);
	verb_is(" HELO x", SMTP_UNKNOWN, NULL);
	verb_is("NOOPX", SMTP_UNKNOWN, NULL);
	verb_is("NOOP\tx", SMTP_UNKNOWN, NULL);
	verb_is("NOOP\r", SMTP_UNKNOWN, NULL);
	verb_is("QUIT:", SMTP_UNKNOWN, NULL);
	verb_is("HEL", SMTP_UNKNOWN, NULL);
	verb_is("HELOO x", SMTP_UNKNOWN, NULL);
	verb_is("STARTTLSX", SMTP_UNKNOWN, NULL);
	verb_is("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", SMTP_UNKNOWN, NULL);
	verb_is("GET / HTTP/1.1", SMTP_UNKNOWN, NULL);
	verb_is("POST / HTTP/1.1", SMTP_UNKNOWN, NULL);
	verb_is("\xc3\xa9HLO x", SMTP_UNKNOWN, NULL);
	verb_is("UNKNOWN", SMTP_UNKNOWN, NULL);
	verb_is("1234", SMTP_UNKNOWN, NULL);
	/* arg may be NULL; NULL line is survivable */
	assert_int_equal(smtp_verb_parse("QUIT", NULL), SMTP_QUIT);
	assert_int_equal(smtp_verb_parse(NULL, &arg), SMTP_UNKNOWN);
	assert_non_null(arg);
}

static void test_verb_names(void **st)
{
	int v;

	(void)st;
	assert_string_equal(smtp_verb_name(SMTP_MAIL), "MAIL");
	assert_string_equal(smtp_verb_name(SMTP_STARTTLS), "STARTTLS");
	assert_string_equal(smtp_verb_name(SMTP_UNKNOWN), "UNKNOWN");
	assert_string_equal(smtp_verb_name(SMTP_VERB_COUNT), "UNKNOWN");
	assert_string_equal(smtp_verb_name((enum smtp_verb)-1), "UNKNOWN");
	/* every name parses back to its verb */
	for (v = SMTP_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++) {
		char line[64];
		const char *arg;

		if (v == SMTP_MAIL)
			snprintf(line, sizeof line, "MAIL FROM:<>");
		else if (v == SMTP_RCPT)
			snprintf(line, sizeof line, "RCPT TO:<a@b>");
		else
			snprintf(line, sizeof line, "%s", smtp_verb_name((enum smtp_verb)v));
		assert_int_equal(smtp_verb_parse(line, &arg), v);
	}
}

/* Paths -------------------------------------------------------------------- */

static struct smtp_path_args pa;

static void path_ok(const char *arg, const char *want_path)
{
	const char *why = "unset";

	if (smtp_path_parse(arg, &pa, &why) != 0)
		fail_msg("\"%s\" refused: %s", arg, why ? why : "(null)");
	assert_string_equal(pa.path, want_path);
}

static void path_bad(const char *arg, const char *want_why)
{
	const char *why = NULL;

	if (smtp_path_parse(arg, &pa, &why) != -1)
		fail_msg("\"%s\" accepted as \"%s\"", arg, pa.path);
	assert_non_null(why);
	if (want_why != NULL && strcmp(why, want_why) != 0)
		fail_msg("\"%s\": why \"%s\", want \"%s\"", arg, why, want_why);
}

/* the envelope's domain, as every filter reads it: after the last '@'
 * (a quoted local part and a source route may hold '@', a domain not) */
static void test_path_domain(void **st)
{
	(void)st;
	assert_string_equal(smtp_path_domain("a@b.example"), "b.example");
	assert_string_equal(smtp_path_domain("\"x@listed.test\"@clean.test"), "clean.test");
	assert_string_equal(smtp_path_domain("x@listed.test@clean.test"), "clean.test");
	assert_string_equal(smtp_path_domain("@r1.example,@r2.example:u@d.example"), "d.example");
	assert_string_equal(smtp_path_domain("a@[192.0.2.1]"), "[192.0.2.1]");
	assert_string_equal(smtp_path_domain("a@"), "");
	assert_null(smtp_path_domain("postmaster"));
	assert_null(smtp_path_domain(""));
	assert_null(smtp_path_domain(NULL));
	/* what the proxy lets through: the quoted '@' kept, the route gone */
	path_ok("<\"x@listed.test\"@clean.test>", "\"x@listed.test\"@clean.test");
	assert_string_equal(smtp_path_domain(pa.path), "clean.test");
	path_ok("<@listed.test:x@clean.test>", "x@clean.test");
	assert_string_equal(smtp_path_domain(pa.path), "clean.test");
	path_bad("<x@listed.test@clean.test>", NULL);
}

static void test_path_ok(void **st)
{
	(void)st;
	path_ok("<a@b.example>", "a@b.example");
	assert_int_equal(pa.nparams, 0);
	path_ok("<>", "");
	path_ok("  <a@b>", "a@b");
	path_ok("<a@b> ", "a@b");
	path_ok("<first.last@sub.example.org>", "first.last@sub.example.org");
	path_ok("<a+tag@b.example>", "a+tag@b.example");
	path_ok("<!#$%&'*+-/=?^_`{|}~@x.example>", "!#$%&'*+-/=?^_`{|}~@x.example");
	path_ok("<user@xn--bcher-kva.example>", "user@xn--bcher-kva.example");
	path_ok("<a@b-c.d-e.example>", "a@b-c.d-e.example");
	path_ok("<a@1.2.3.example>", "a@1.2.3.example");
	path_ok("<a@localhost>", "a@localhost");
	path_ok("<postmaster>", "postmaster");
	path_ok("<PostMaster>", "PostMaster");
	path_ok("<Postmaster@x.example>", "Postmaster@x.example");
	/* quoted local parts */
	path_ok("<\"a b\"@c.example>", "\"a b\"@c.example");
	path_ok("<\"\"@c.example>", "\"\"@c.example");
	path_ok("<\"a\\\"b\"@c>", "\"a\\\"b\"@c");
	path_ok("<\"a\\\\b\"@c>", "\"a\\\\b\"@c");
	path_ok("<\"a>b\"@c>", "\"a>b\"@c");
	path_ok("<\"a@b\"@c>", "\"a@b\"@c");
	path_ok("<\"john..doe\"@c>", "\"john..doe\"@c");
	/* address literals */
	path_ok("<a@[1.2.3.4]>", "a@[1.2.3.4]");
	path_ok("<a@[127.0.0.1]>", "a@[127.0.0.1]");
	path_ok("<a@[255.255.255.255]>", "a@[255.255.255.255]");
	path_ok("<a@[IPv6:::1]>", "a@[IPv6:::1]");
	path_ok("<a@[ipv6:2001:db8::1]>", "a@[ipv6:2001:db8::1]");
	path_ok("<a@[IPv6:2001:db8:0:0:0:0:0:1]>", "a@[IPv6:2001:db8:0:0:0:0:0:1]");
	path_ok("<a@[IPv6:::ffff:192.0.2.1]>", "a@[IPv6:::ffff:192.0.2.1]");
	path_ok("<a@[x-tag:anything]>", "a@[x-tag:anything]");
	/* SMTPUTF8 */
	path_ok("<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", "j\xc3\xb6rg@b\xc3\xbc" "cher.example");
	path_ok("<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>",
	    "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a");
	path_ok("<\xf0\x9f\x98\x80@x.example>", "\xf0\x9f\x98\x80@x.example");
	path_ok("<\"\xc3\xa9 \xc3\xa9\"@x>", "\"\xc3\xa9 \xc3\xa9\"@x");
	/* source routes are dropped */
	path_ok("<@relay.example:u@d.example>", "u@d.example");
	path_ok("<@r1.example,@r2.example:u@d.example>", "u@d.example");
}

static void test_path_bad(void **st)
{
	(void)st;
	path_bad("", "missing <");
	path_bad("a@b", "missing <");
	path_bad("a@b>", "missing <");
	path_bad("<a@b", "missing >");
	path_bad("<", "missing >");
	path_bad("<a@b.example", "missing >");
	path_bad("<\"a b@c>", "unterminated quoted string");
	path_bad("<a b@c>", "space in path");
	path_bad("<a@b c>", "space in path");
	path_bad("< a@b>", "space in path");
	path_bad("<a@b >", "space in path");
	path_bad("< >", "space in path");
	path_bad("<a\x01@b>", "control character in path");
	path_bad("<a@b\x7f>", "control character in path");
	path_bad("<a\t@b>", "control character in path");
	path_bad("<a@b\r\n>", "control character in path");
	path_bad("<\"a\x01\"@b>", "control character in path");
	path_bad("<\"a\\\x01\"@b>", "control character in path");
	path_bad("\x01<a@b>", "control character in path");
	path_bad("<a@b>\r", "control character after path");
	path_bad("<a@b>x", "garbage after path");
	path_bad("<a@b><c@d>", "garbage after path");
	path_bad("<a@b>>", "garbage after path");
	path_bad("<<a@b>>", "bad local part");
	path_bad("<@>", NULL);
	path_bad("<a@>", NULL);
	path_bad("<@b>", NULL);
	path_bad("<a>", "bad local part");
	path_bad("<postmasterx>", "bad local part");
	path_bad("<\"postmaster\">", "bad local part");
	path_bad("<a@@b>", NULL);
	path_bad("<a@b@c>", NULL);
	path_bad("<.a@b>", "bad local part");
	path_bad("<a.@b>", "bad local part");
	path_bad("<a..b@c>", "bad local part");
	path_bad("<a(b)@c>", NULL);
	path_bad("<a,b@c>", NULL);
	path_bad("<a;b@c>", NULL);
	path_bad("<a[b]@c>", NULL);
	path_bad("<a\\b@c>", NULL);
	path_bad("<a@b..c>", "bad domain");
	path_bad("<a@.b>", "bad domain");
	path_bad("<a@b.>", "bad domain");
	path_bad("<a@-b.c>", "bad domain");
	path_bad("<a@b-.c>", "bad domain");
	path_bad("<a@b_c.example>", "bad domain");
	path_bad("<a@b!c>", "bad domain");
	path_bad("<a@b\"c>", "bad domain");
	/* literals */
	path_bad("<a@[]>", "bad address literal");
	path_bad("<a@[1.2.3]>", "bad address literal");
	path_bad("<a@[1.2.3.4.5]>", "bad address literal");
	path_bad("<a@[256.1.1.1]>", "bad address literal");
	path_bad("<a@[1.2.3.1234]>", "bad address literal");
	path_bad("<a@[1.2.3.4>", "bad address literal");
	path_bad("<a@[1.2.3.4", "missing >");
	path_bad("<a@[1.2.3.4]x>", "bad domain");
	path_bad("<a@[IPv6:]>", "bad address literal");
	path_bad("<a@[IPv6:zz::1]>", "bad address literal");
	path_bad("<a@[IPv6:1:2:3:4:5:6:7:8:9]>", "bad address literal");
	path_bad("<a@[IPv6:::1 ]>", "space in path");
	path_bad("<a@[tag]>", "bad address literal");
	path_bad("<a@[tag:]>", "bad address literal");
	path_bad("<a@[-tag:x]>", "bad address literal");
	path_bad("<a@[tag-:x]>", "bad address literal");
	path_bad("<a@[1.2.3.4\\]>", NULL);
	path_bad("<a@[1.2.[3.4]>", NULL);
	/* '>' and friends are RFC dcontent, but never inside our literals */
	path_bad("<a@[x:>]>", "bad address literal");
	path_bad("<a@[x:<]>", "bad address literal");
	path_bad("<a@[x:\"]>", "bad address literal");
	path_bad("<a@[x:a@b]>", "bad address literal");
	path_bad("<\"a b\"@[IPv3:<:1]> NOTIFY=NEVER", "bad address literal");
	/* UTF-8 must be well formed */
	path_bad("<\xc3@b>", "invalid UTF-8 in path");
	path_bad("<\xc0\xaf@b>", "invalid UTF-8 in path");
	path_bad("<\xe0\x80\xaf@b>", "invalid UTF-8 in path");
	path_bad("<\xed\xa0\x80@b>", "invalid UTF-8 in path");
	path_bad("<\xf4\x90\x80\x80@b>", "invalid UTF-8 in path");
	path_bad("<\xff@b>", "invalid UTF-8 in path");
	path_bad("<a@b\x80>", "invalid UTF-8 in path");
	path_bad("<\"\xc3\"@b>", "invalid UTF-8 in path");
	/* source routes */
	path_bad("<@a.example>", NULL);
	path_bad("<@a.example:>", NULL);
	path_bad("<@a.example,b.example:u@d>", "bad source route");
	path_bad("<@a.example;@b:u@d>", "bad source route");
	path_bad("<@:u@d>", NULL);
}

static void test_path_lengths(void **st)
{
	char arg[2048], want[1024];
	size_t i;

	(void)st;
	/* local part of 500 + "@b.example" is too long (> 512) */
	arg[0] = '<';
	for (i = 1; i <= 503; i++)
		arg[i] = 'a';
	memcpy(arg + i, "@b.example>", 12);
	path_bad(arg, "path too long");
	/* exactly SMTP_PATH_MAX is fine: 502 + "@b.example" = 512 */
	memcpy(arg + 503, "@b.example>", 12);
	memcpy(want, arg + 1, 512);
	want[512] = '\0';
	path_ok(arg, want);
	assert_int_equal(strlen(pa.path), SMTP_PATH_MAX);
	/* domain labels: 63 ok, 64 not */
	strcpy(arg, "<a@");
	for (i = 0; i < 63; i++)
		strcat(arg, "x");
	strcat(arg, ".example>");
	snprintf(want, sizeof want, "%.*s", (int)strlen(arg) - 2, arg + 1);
	path_ok(arg, want);
	strcpy(arg, "<a@");
	for (i = 0; i < 64; i++)
		strcat(arg, "x");
	strcat(arg, ".example>");
	path_bad(arg, "domain label too long");
	/* domain over 255 */
	strcpy(arg, "<a@");
	for (i = 0; i < 30; i++)
		strcat(arg, "abcdefghi.");
	strcat(arg, "example>");
	path_bad(arg, "domain too long");
	/* a huge line of garbage is refused, not overrun */
	memset(arg, 'a', sizeof arg - 1);
	arg[0] = '<';
	arg[sizeof arg - 1] = '\0';
	path_bad(arg, "missing >");
}

static void test_params(void **st)
{
	const struct smtp_param *p;

	(void)st;
	path_ok("<a@b> SIZE=1000 BODY=8BITMIME", "a@b");
	assert_int_equal(pa.nparams, 2);
	assert_string_equal(pa.params[0].key, "SIZE");
	assert_string_equal(pa.params[0].value, "1000");
	assert_int_equal(pa.params[0].has_value, 1);
	assert_string_equal(pa.params[1].key, "BODY");
	assert_string_equal(pa.params[1].value, "8BITMIME");

	path_ok("<> size=5  smtputf8   ", "");
	assert_int_equal(pa.nparams, 2);
	assert_string_equal(pa.params[0].key, "SIZE");
	assert_string_equal(pa.params[1].key, "SMTPUTF8");
	assert_int_equal(pa.params[1].has_value, 0);
	assert_string_equal(pa.params[1].value, "");
	p = smtp_param_get(&pa, "smtputf8");
	assert_non_null(p);
	assert_int_equal(p->has_value, 0);
	p = smtp_param_get(&pa, "Size");
	assert_non_null(p);
	assert_string_equal(p->value, "5");
	assert_null(smtp_param_get(&pa, "BODY"));
	assert_null(smtp_param_get(&pa, ""));
	assert_null(smtp_param_get(&pa, NULL));
	assert_null(smtp_param_get(NULL, "SIZE"));

	path_ok("<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c.example", "a@b");
	assert_string_equal(smtp_param_get(&pa, "ORCPT")->value, "rfc822;a+2Bb@c.example");
	assert_string_equal(smtp_param_get(&pa, "NOTIFY")->value, "SUCCESS,FAILURE");
	path_ok("<a@b> ORCPT=utf-8;\xc3\xa9@c.example", "a@b");
	assert_string_equal(smtp_param_get(&pa, "orcpt")->value, "utf-8;\xc3\xa9@c.example");
	path_ok("<a@b> X-VENDOR-1=a ENVID=QQ314159 RET=HDRS AUTH=<>", "a@b");
	assert_int_equal(pa.nparams, 4);
	assert_string_equal(pa.params[0].key, "X-VENDOR-1");
	assert_string_equal(smtp_param_get(&pa, "AUTH")->value, "<>");
	path_ok("<a@b> 8BITMIME", "a@b");
	assert_string_equal(pa.params[0].key, "8BITMIME");

	/* a failed parse leaves no half-result behind */
	path_bad("<a@b> SIZE=1 =x", "bad parameter name");
	assert_int_equal(pa.path[0], '\0');
}

static void test_params_bad(void **st)
{
	char arg[4096], *p;
	int i;

	(void)st;
	path_bad("<a@b> =1", "bad parameter name");
	path_bad("<a@b> -X=1", "bad parameter name");
	path_bad("<a@b> SIZE=", "empty parameter value");
	path_bad("<a@b> SIZE= BODY=7BIT", "empty parameter value");
	path_bad("<a@b> SIZE==1", "bad parameter value");
	path_bad("<a@b> SIZE=1=2", "bad parameter");
	path_bad("<a@b> SI_ZE=1", "bad parameter");
	path_bad("<a@b> SIZE=1\tBODY=7BIT", "control character in parameter");
	path_bad("<a@b> SIZE=1\x01", "control character in parameter");
	path_bad("<a@b> SIZE=1\x7f", "control character in parameter");
	path_bad("<a@b> SIZE=1\r", "control character in parameter");
	path_bad("<a@b> X=\xc3", "invalid UTF-8 in parameter");
	path_bad("<a@b> X=\xff", "invalid UTF-8 in parameter");
	path_bad("<a@b> X\xc3\xa9=1", "bad parameter");
	path_bad("<a@b>\tSIZE=1", "control character after path");
	path_bad("<a@b> SIZE=1 size=2", "duplicate parameter");
	path_bad("<a@b> SMTPUTF8 SMTPUTF8", "duplicate parameter");
	/* key of 31 chars fits, 32 does not */
	snprintf(arg, sizeof arg, "<a@b> %s=1", "ABCDEFGHIJKLMNOPQRSTUVWXYZ01234");
	path_ok(arg, "a@b");
	snprintf(arg, sizeof arg, "<a@b> %s=1", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345");
	path_bad(arg, "parameter name too long");
	/* value of 511 fits, 512 does not */
	p = arg + snprintf(arg, sizeof arg, "<a@b> X=");
	memset(p, 'v', 511);
	p[511] = '\0';
	path_ok(arg, "a@b");
	assert_int_equal(strlen(pa.params[0].value), 511);
	p[511] = 'v';
	p[512] = '\0';
	path_bad(arg, "parameter value too long");
	/* a UTF-8 character straddling the value limit is refused whole */
	memset(p, 'v', 510);
	memcpy(p + 510, "\xc3\xa9", 3);
	path_bad(arg, "parameter value too long");
	/* 16 parameters fit, 17 do not */
	p = arg + snprintf(arg, sizeof arg, "<a@b>");
	for (i = 0; i < SMTP_MAX_PARAMS; i++)
		p += sprintf(p, " P%d=%d", i, i);
	path_ok(arg, "a@b");
	assert_int_equal(pa.nparams, SMTP_MAX_PARAMS);
	assert_string_equal(pa.params[15].key, "P15");
	sprintf(p, " P16=16");
	path_bad(arg, "too many parameters");
	/* 17 with empty values too */
	path_bad("<a@b> A B C D E F G H I J K L M N O P Q", "too many parameters");
	/* NULL and why == NULL are survivable */
	assert_int_equal(smtp_path_parse(NULL, &pa, NULL), -1);
	assert_int_equal(smtp_path_parse("<a@b> X=\x01", &pa, NULL), -1);
	assert_int_equal(smtp_path_parse("<a@b>", &pa, NULL), 0);
}

/* Replies ------------------------------------------------------------------ */

static int feed(struct smtp_reply *r, const char *line)
{
	return smtp_reply_line(r, line, strlen(line));
}

static void test_reply_single(void **st)
{
	struct smtp_reply r;

	(void)st;
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "250 2.1.0 Ok"), 1);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.nlines, 1);
	assert_int_equal(r.len, strlen("250 2.1.0 Ok\r\n"));
	assert_memory_equal(r.text, "250 2.1.0 Ok\r\n", r.len);
	assert_int_equal(r.text[r.len], '\0');

	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "354"), 1);
	assert_int_equal(r.code, 354);
	assert_memory_equal(r.text, "354\r\n", 5);

	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "221 "), 1);
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "550 5.1.1 <x@y>: Recipient address rejected\t(tab)"), 1);
	assert_int_equal(r.code, 550);
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "421 4.3.2 Service shutting down"), 1);
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "559 x"), 1);
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "200 x"), 1);
	/* 8-bit text (localized servers) is relayed */
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "250 Gr\xc3\xbc\xc3\x9f" "e"), 1);
}

static void test_reply_multi(void **st)
{
	static const char want[] = "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
	    "250-8BITMIME\r\n250 SMTPUTF8\r\n";
	struct smtp_reply r;

	(void)st;
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "250-mx.example"), 0);
	assert_int_equal(feed(&r, "250-PIPELINING"), 0);
	assert_int_equal(feed(&r, "250-SIZE 10240000"), 0);
	assert_int_equal(feed(&r, "250-8BITMIME"), 0);
	assert_int_equal(feed(&r, "250 SMTPUTF8"), 1);
	assert_int_equal(r.nlines, 5);
	assert_int_equal(r.len, strlen(want));
	assert_memory_equal(r.text, want, r.len);
	/* nothing may follow a complete reply */
	assert_int_equal(feed(&r, "250 more"), -1);
	assert_int_equal(r.nlines, 5);

	/* 4xx and 5xx multi-line */
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "451-4.7.1 Please try again later"), 0);
	assert_int_equal(feed(&r, "451-4.7.1 greylisted"), 0);
	assert_int_equal(feed(&r, "451 4.7.1 see https://x.example/"), 1);
	assert_int_equal(r.code, 451);
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "554-5.7.1 rejected"), 0);
	assert_int_equal(feed(&r, "554-"), 0);
	assert_int_equal(feed(&r, "554"), 1);
	assert_int_equal(r.code, 554);
	assert_memory_equal(r.text, "554-5.7.1 rejected\r\n554-\r\n554\r\n", r.len);
	assert_int_equal(feed(&r, "554 again"), -1);
}

static void test_reply_bad(void **st)
{
	struct smtp_reply r, before;
	static const char *const bad[] = {
		"", "2", "25", "25 ", "2500", "250x", "250_", "250\t", "abc", "25a ok",
		"150 x", "650 x", "050 x", "260 x", "299 x", "599 x", "570 x", "2A0 x", " 250 x",
		"250 a\x01", "250 a\x7f", "250 a\r", "250 a\nb", "250 a\x1b[2J", "250-\x08",
		"+OK", "HTTP/1.1 200 OK", "-250 x", "2 50 x",
	};
	size_t i;

	(void)st;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memset(&r, 0, sizeof r);
		if (feed(&r, bad[i]) != -1)
			fail_msg("bad reply line %zu \"%s\" accepted", i, bad[i]);
		assert_int_equal(r.nlines, 0);
		assert_int_equal(r.len, 0);
	}
	/* NUL inside the line, seen through the explicit length */
	memset(&r, 0, sizeof r);
	assert_int_equal(smtp_reply_line(&r, "250 a\0b", 7), -1);
	assert_int_equal(smtp_reply_line(&r, "250\0", 4), -1);
	assert_int_equal(smtp_reply_line(&r, "25\0 x", 5), -1);
	/* the length is honoured: the trailing garbage is not looked at */
	assert_int_equal(smtp_reply_line(&r, "250 ok\x01", 6), 1);
	assert_memory_equal(r.text, "250 ok\r\n", 8);
	/* NULL / short */
	memset(&r, 0, sizeof r);
	assert_int_equal(smtp_reply_line(&r, NULL, 0), -1);
	assert_int_equal(smtp_reply_line(&r, NULL, 5), -1);
	assert_int_equal(smtp_reply_line(NULL, "250 x", 5), -1);
	assert_int_equal(smtp_reply_line(&r, "250 x", 0), -1);

	/* mismatched codes in a multi-line reply */
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "250-first"), 0);
	before = r;
	assert_int_equal(feed(&r, "251 second"), -1);
	assert_memory_equal(&r, &before, sizeof r);	/* unchanged */
	assert_int_equal(feed(&r, "550 second"), -1);
	assert_int_equal(feed(&r, "250x second"), -1);
	assert_int_equal(feed(&r, "250 second"), 1);

	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "220-mx ESMTP"), 0);
	assert_int_equal(feed(&r, "250 mx"), -1);
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "451-a"), 0);
	assert_int_equal(feed(&r, "452 b"), -1);
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "250-a"), 0);
	assert_int_equal(feed(&r, "250-b\x01"), -1);
	assert_int_equal(r.nlines, 1);
}

static void test_reply_limits(void **st)
{
	struct smtp_reply r;
	char line[9000];
	int i;

	(void)st;
	/* SMTP_REPLY_MAX_LINES lines are fine, one more is not */
	memset(&r, 0, sizeof r);
	for (i = 0; i < SMTP_REPLY_MAX_LINES - 1; i++)
		assert_int_equal(feed(&r, "250-x"), 0);
	assert_int_equal(feed(&r, "250 x"), 1);
	assert_int_equal(r.nlines, SMTP_REPLY_MAX_LINES);
	memset(&r, 0, sizeof r);
	for (i = 0; i < SMTP_REPLY_MAX_LINES; i++)
		assert_int_equal(feed(&r, "250-x"), 0);
	assert_int_equal(feed(&r, "250-x"), -1);
	assert_int_equal(feed(&r, "250 x"), -1);

	/* one line longer than the buffer */
	memset(line, 'a', sizeof line);
	memcpy(line, "250 ", 4);
	memset(&r, 0, sizeof r);
	assert_int_equal(smtp_reply_line(&r, line, sizeof line), -1);
	assert_int_equal(r.len, 0);
	/* the largest line that fits: text + CRLF + NUL == 8192 */
	assert_int_equal(smtp_reply_line(&r, line, sizeof r.text - 3), 1);
	assert_int_equal(r.len, sizeof r.text - 1);
	assert_int_equal(r.text[r.len], '\0');
	memset(&r, 0, sizeof r);
	assert_int_equal(smtp_reply_line(&r, line, sizeof r.text - 2), -1);

	/* many long lines overflow the text before the line count */
	memset(&r, 0, sizeof r);
	memcpy(line, "250-", 4);
	for (i = 0; i < 8; i++)
		assert_int_equal(smtp_reply_line(&r, line, 1000), 0);
	assert_int_equal(smtp_reply_line(&r, line, 1000), -1);
	assert_int_equal(r.nlines, 8);
	assert_int_equal(r.len, 8 * 1002);
}

/* smtp_reply_reset empties a used reply as zeroing does (the proxy reuses
 * one per upstream connection without zeroing its 8 KB); smtp_reply_copy
 * copies what a reply holds, a full one too */
static void test_reply_reset_copy(void **st)
{
	static struct smtp_reply r, c;
	static char line[sizeof r.text];

	(void)st;
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "250-first line, a long one"), 0);
	assert_int_equal(feed(&r, "250 end"), 1);
	memset(&c, 'x', sizeof c);
	smtp_reply_copy(&c, &r);
	assert_int_equal(c.code, 250);
	assert_int_equal(c.nlines, 2);
	assert_int_equal(c.len, r.len);
	assert_string_equal(c.text, "250-first line, a long one\r\n250 end\r\n");
	assert_int_equal(smtp_ehlo_has(&c, "END", NULL, 0), 1);

	/* reused after a reset: nothing of the last reply shows, and a reply
	 * of another code is no continuation of it */
	smtp_reply_reset(&r);
	assert_int_equal(r.len, 0);
	assert_int_equal(r.nlines, 0);
	assert_string_equal(r.text, "");
	assert_int_equal(feed(&r, "354 go"), 1);
	assert_int_equal(r.code, 354);
	assert_int_equal(r.nlines, 1);
	assert_string_equal(r.text, "354 go\r\n");
	smtp_reply_copy(&c, &r);
	assert_string_equal(c.text, "354 go\r\n");
	assert_int_equal(c.len, 8);

	/* the largest reply there is */
	smtp_reply_reset(&r);
	memset(line, 'a', sizeof line);
	memcpy(line, "250 ", 4);
	assert_int_equal(smtp_reply_line(&r, line, sizeof r.text - 3), 1);
	smtp_reply_copy(&c, &r);
	assert_int_equal(c.len, sizeof c.text - 1);
	assert_int_equal(c.text[c.len], '\0');
	assert_memory_equal(c.text, r.text, r.len);
}

static struct smtp_reply ehlo;

static void ehlo_load(const char *const *lines)
{
	memset(&ehlo, 0, sizeof ehlo);
	for (; *lines != NULL; lines++)
		assert_true(feed(&ehlo, *lines) >= 0);
}

static void test_ehlo_has(void **st)
{
	static const char *const lines[] = {
		"250-mx.example Hello PIPELINING", "250-PIPELINING", "250-SIZE 10240000",
		"250-AUTH PLAIN LOGIN", "250-AUTH=PLAIN LOGIN", "250-8bitmime",
		"250-ENHANCEDSTATUSCODES", "250-X", "250 SMTPUTF8", NULL,
	};
	static const char *const one[] = { "250 mx.example", NULL };
	char args[64];

	(void)st;
	ehlo_load(lines);
	assert_int_equal(smtp_ehlo_has(&ehlo, "PIPELINING", NULL, 0), 1);
	assert_int_equal(smtp_ehlo_has(&ehlo, "pipelining", NULL, 0), 1);
	assert_int_equal(smtp_ehlo_has(&ehlo, "8BITMIME", NULL, 0), 1);
	assert_int_equal(smtp_ehlo_has(&ehlo, "SMTPUTF8", NULL, 0), 1);
	assert_int_equal(smtp_ehlo_has(&ehlo, "X", NULL, 0), 1);
	/* not a prefix match, and the greeting line is not a keyword */
	assert_int_equal(smtp_ehlo_has(&ehlo, "PIPE", NULL, 0), 0);
	assert_int_equal(smtp_ehlo_has(&ehlo, "ENHANCEDSTATUSCODE", NULL, 0), 0);
	assert_int_equal(smtp_ehlo_has(&ehlo, "mx.example", NULL, 0), 0);
	assert_int_equal(smtp_ehlo_has(&ehlo, "Hello", NULL, 0), 0);
	assert_int_equal(smtp_ehlo_has(&ehlo, "STARTTLS", NULL, 0), 0);
	assert_int_equal(smtp_ehlo_has(&ehlo, "", NULL, 0), 0);
	assert_int_equal(smtp_ehlo_has(&ehlo, NULL, NULL, 0), 0);
	assert_int_equal(smtp_ehlo_has(NULL, "X", NULL, 0), 0);

	strcpy(args, "junk");
	assert_int_equal(smtp_ehlo_has(&ehlo, "SIZE", args, sizeof args), 1);
	assert_string_equal(args, "10240000");
	assert_int_equal(smtp_ehlo_has(&ehlo, "auth", args, sizeof args), 1);
	assert_string_equal(args, "PLAIN LOGIN");
	assert_int_equal(smtp_ehlo_has(&ehlo, "AUTH=PLAIN", args, sizeof args), 1);
	assert_string_equal(args, "LOGIN");
	assert_int_equal(smtp_ehlo_has(&ehlo, "SMTPUTF8", args, sizeof args), 1);
	assert_string_equal(args, "");
	/* bounded copy */
	assert_int_equal(smtp_ehlo_has(&ehlo, "SIZE", args, 4), 1);
	assert_string_equal(args, "102");
	assert_int_equal(smtp_ehlo_has(&ehlo, "SIZE", args, 1), 1);
	assert_string_equal(args, "");

	ehlo_load(one);
	assert_int_equal(smtp_ehlo_has(&ehlo, "mx.example", NULL, 0), 0);
	memset(&ehlo, 0, sizeof ehlo);
	assert_int_equal(smtp_ehlo_has(&ehlo, "SIZE", NULL, 0), 0);
}

/* Queue ids ---------------------------------------------------------------- */

static int qid(const char *line, char *out, size_t outsz)
{
	struct smtp_reply r;

	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, line), 1);
	return smtp_reply_queue_id(&r, out, outsz);
}

static void qid_is(const char *line, const char *want)
{
	char out[64];

	strcpy(out, "untouched");
	if (want == NULL) {
		if (qid(line, out, sizeof out) != 0)
			fail_msg("\"%s\": found id \"%s\"", line, out);
		assert_string_equal(out, "untouched");
		return;
	}
	if (qid(line, out, sizeof out) != 1)
		fail_msg("\"%s\": no id, want \"%s\"", line, want);
	assert_string_equal(out, want);
}

/* smtp_dsn_rcpt_params (session 19): the DSN parameters of a RCPT kept
 * for a quarantine release, well-formed only */
static void test_dsn_rcpt_params(void **state)
{
	char out[SMTP_DSN_RCPT_MAX + 1], big[700];
	(void)state;
	assert_int_equal(smtp_dsn_rcpt_params("", out, sizeof out), 0);
	assert_string_equal(out, "");
	smtp_dsn_rcpt_params("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@example.org", out, sizeof out);
	assert_string_equal(out, "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@example.org");
	smtp_dsn_rcpt_params("SMTPUTF8 notify=never FOO=1 XCLIENT", out, sizeof out);
	assert_string_equal(out, "notify=never");
	smtp_dsn_rcpt_params("NOTIFY=DELAY,DELAY ORCPT=rfc822;x@y", out, sizeof out);
	assert_string_equal(out, "ORCPT=rfc822;x@y");               /* twice DELAY */
	smtp_dsn_rcpt_params("NOTIFY=NEVER,FAILURE NOTIFY=SUCCESS,", out, sizeof out);
	assert_string_equal(out, "");
	smtp_dsn_rcpt_params("ORCPT=rfc822;a=b ORCPT=;x ORCPT=rfc822;a+2 ORCPT=rfc822;a+2b", out, sizeof out);
	assert_string_equal(out, "");                               /* '=', no type, short or lower hex */
	smtp_dsn_rcpt_params("ORCPT=utf-8;\xc3\xbc@x NOTIFY=FAILURE\r\nRSET", out, sizeof out);
	assert_string_equal(out, "");
	memset(big, 'a', sizeof big);
	memcpy(big, "ORCPT=rfc822;", 13);
	big[6 + 501] = '\0';                                        /* a value of 501 octets */
	smtp_dsn_rcpt_params(big, out, sizeof out);
	assert_string_equal(out, "");
	big[6 + 500] = '\0';
	assert_int_equal(smtp_dsn_rcpt_params(big, out, sizeof out), 506);
	assert_int_equal(smtp_dsn_rcpt_params(big, out, 100), 0);  /* does not fit: nothing */
	assert_string_equal(out, "");
	/* the longest well-formed pair: 28 + 1 + 506 octets (session 20: 530
	 * was 5 short, and it was dropped whole) */
	char pair[sizeof big + 32];
	snprintf(pair, sizeof pair, "NOTIFY=SUCCESS,FAILURE,DELAY %s", big);
	assert_int_equal(strlen(pair), 535);
	assert_int_equal(smtp_dsn_rcpt_params(pair, out, sizeof out), 535);
	assert_string_equal(out, pair);
	assert_true(smtp_dsn_rcpt_params_ok(pair));
}

static void test_queue_id(void **st)
{
	struct smtp_reply r;
	char out[8];

	(void)st;
	qid_is("250 2.0.0 Ok: queued as 4XyZ12", "4XyZ12");
	qid_is("250 2.0.0 Ok: queued as 4Q1b2c3d4Fz1", "4Q1b2c3d4Fz1");
	qid_is("250 Ok: queued as 4XyZ12 ", "4XyZ12");
	qid_is("250 OK id=1rABCd-000123-AB", "1rABCd-000123-AB");
	qid_is("250 OK ID=1rABCd-000123-AB", "1rABCd-000123-AB");
	qid_is("250 2.0.0 4BRxxx Message accepted for delivery", "4BRxxx");
	qid_is("250 2.0.0 x9ABCd12345678 Message accepted for delivery", "x9ABCd12345678");
	qid_is("250 2.6.0 queued as <abc.def@host.example>", "<abc.def@host.example>");
	qid_is("250 Queued as ABC123 (mail queue)", "ABC123");
	/* no id */
	qid_is("250 OK", NULL);
	qid_is("250 2.0.0 Ok", NULL);
	qid_is("250 2.0.0 Message accepted for delivery", NULL);
	qid_is("250 Message accepted", NULL);
	qid_is("250 queued as ", NULL);
	qid_is("250 queued as !!!", NULL);
	qid_is("250 uid=5", NULL);
	qid_is("250 id=", NULL);
	qid_is("250", NULL);
	qid_is("550 5.0.0 queued as XYZ", NULL);
	qid_is("251 queued as XYZ", NULL);
	/* only [A-Za-z0-9._-@<>] is copied */
	qid_is("250 queued as AB;rm -rf", "AB");
	qid_is("250 queued as AB\tCD", "AB");
	/* truncated to the buffer */
	assert_int_equal(qid("250 queued as 0123456789ABCDEF", out, sizeof out), 1);
	assert_string_equal(out, "0123456");
	assert_int_equal(qid("250 queued as 0123456789ABCDEF", NULL, 0), 1);
	/* multi-line: the line that names it */
	memset(&r, 0, sizeof r);
	assert_int_equal(feed(&r, "250-Thanks"), 0);
	assert_int_equal(feed(&r, "250 OK id=1abc-00-XY"), 1);
	assert_int_equal(smtp_reply_queue_id(&r, out, sizeof out), 1);
	assert_string_equal(out, "1abc-00");
	assert_int_equal(smtp_reply_queue_id(NULL, out, sizeof out), 0);
}

/* XFORWARD ------------------------------------------------------------------ */

static int xf(const char *arg, struct smtp_xforward *x)
{
	const char *why = NULL;
	int rc = smtp_xforward_parse(arg, x, &why);

	if (rc < 0) {
		assert_non_null(why);
		assert_true(strncmp(why, "501 5.5.4 ", 10) == 0);
	}
	return rc;
}

static void test_xforward_ok(void **st)
{
	struct smtp_xforward x;

	(void)st;
	memset(&x, 0, sizeof x);
	/* what Postfix 3.7's smtpd_proxy sends */
	assert_int_equal(xf("NAME=[UNAVAILABLE] ADDR=203.0.113.5 PORT=52736 HELO=stranger.example.net "
	                    "IDENT=[UNAVAILABLE] PROTO=ESMTP SOURCE=LOCAL", &x), 0);
	assert_int_equal(x.state[SMTP_XF_NAME], SMTP_XF_UNAVAILABLE);
	assert_int_equal(x.state[SMTP_XF_IDENT], SMTP_XF_UNAVAILABLE);
	assert_int_equal(x.state[SMTP_XF_LOGIN], SMTP_XF_UNSET);
	assert_int_equal(x.state[SMTP_XF_ADDR], SMTP_XF_VALUE);
	assert_string_equal(x.value[SMTP_XF_ADDR], "203.0.113.5");
	assert_string_equal(x.value[SMTP_XF_PORT], "52736");
	assert_string_equal(x.value[SMTP_XF_HELO], "stranger.example.net");
	assert_string_equal(x.value[SMTP_XF_PROTO], "ESMTP");
	assert_string_equal(x.value[SMTP_XF_SOURCE], "LOCAL");
	/* incremental, case-insensitive names, the last value counts, xtext */
	assert_int_equal(xf("name=mx.example.net  login=alice+40example.org HELO=a+2Bb ADDR=IPV6:2001:db8::1", &x), 0);
	assert_string_equal(x.value[SMTP_XF_NAME], "mx.example.net");
	assert_string_equal(x.value[SMTP_XF_LOGIN], "alice@example.org");
	assert_string_equal(x.value[SMTP_XF_HELO], "a+b");
	assert_string_equal(x.value[SMTP_XF_ADDR], "IPV6:2001:db8::1");
	assert_string_equal(x.value[SMTP_XF_PORT], "52736");          /* kept */
	assert_int_equal(xf("NAME=[TEMPUNAVAIL] ADDR=::ffff:192.0.2.1 PORT=0 PROTO=SMTP SOURCE=remote", &x), 0);
	assert_int_equal(x.state[SMTP_XF_NAME], SMTP_XF_UNAVAILABLE);
	assert_string_equal(x.value[SMTP_XF_NAME], "");
	/* UTF-8 in a HELO name and a login; spaces in a login */
	assert_int_equal(xf("HELO=b+C3+BCcher.example LOGIN=J+20Doe", &x), 0);
	assert_string_equal(x.value[SMTP_XF_HELO], "b\xc3\xbc" "cher.example");
	assert_string_equal(x.value[SMTP_XF_LOGIN], "J Doe");
	assert_string_equal(smtp_xf_attr_name(SMTP_XF_SOURCE), "SOURCE");
}

static void test_xforward_bad(void **st)
{
	static const char *const bad[] = {
		"", "   ", "ADDR", "ADDR=", "=x", "FOO=1", "ADDRESS=1.2.3.4", "ADDR=1.2.3.4=5",
		"ADDR=1.2.3", "ADDR=1.2.3.4.5", "ADDR=IPV6:1.2.3.4", "ADDR=2001:db8::1/64", "ADDR=[1.2.3.4]",
		"PORT=65536", "PORT=-1", "PORT=123456", "PORT=1a", "PORT=",
		"PROTO=E+20SMTP", "PROTO=ESMTP/1",
		"SOURCE=ELSEWHERE", "NAME=bad/name", "NAME=a+20b", "NAME=+C3+A9.example",
		"HELO=a+zz", "HELO=a+2b", "HELO=a+2", "HELO=a+", "HELO=a+0Ab", "HELO=a+20b", "HELO=a+00b",
		"HELO=a+7Fb", "HELO=+C3+28", "LOGIN=a+0Db", "LOGIN=+ED+A0+80",
		"ADDR=1.2.3.4 PORT=x",     /* one bad attribute: nothing is taken */
	};
	struct smtp_xforward x, before;
	char longv[1024];   /* up to 5 + 86 * 9 octets of xtext below */

	(void)st;
	memset(&x, 0, sizeof x);
	assert_int_equal(xf("ADDR=192.0.2.7 HELO=ok.example", &x), 0);
	before = x;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (xf(bad[i], &x) != -1)
			fail_msg("XFORWARD %s: accepted", bad[i]);
		assert_memory_equal(&x, &before, sizeof x);
	}
	/* 255 octets decoded: the limit; 256 is too long, however encoded */
	memset(longv, 'h', 255);
	memcpy(longv, "HELO=", 5);
	memset(longv + 5, 'h', 255);
	longv[260] = '\0';
	assert_int_equal(xf(longv, &x), 0);
	assert_int_equal(strlen(x.value[SMTP_XF_HELO]), 255);
	longv[260] = 'h';
	longv[261] = '\0';
	assert_int_equal(xf(longv, &x), -1);
	snprintf(longv, sizeof longv, "HELO=");
	for (int i = 0; i < 86; i++)
		strcat(longv, "+41+42+43");
	assert_int_equal(xf(longv, &x), -1);
	/* PROTO: at most 64 */
	memset(longv, 'P', sizeof longv);
	memcpy(longv, "PROTO=", 6);
	longv[6 + 64] = '\0';
	assert_int_equal(xf(longv, &x), 0);
	longv[6 + 64] = 'P';
	longv[6 + 65] = '\0';
	assert_int_equal(xf(longv, &x), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verb_basic),
		cmocka_unit_test(test_verb_mail_rcpt),
		cmocka_unit_test(test_verb_unknown),
		cmocka_unit_test(test_verb_names),
		cmocka_unit_test(test_path_ok),
		cmocka_unit_test(test_path_domain),
		cmocka_unit_test(test_path_bad),
		cmocka_unit_test(test_path_lengths),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_params_bad),
		cmocka_unit_test(test_reply_single),
		cmocka_unit_test(test_reply_multi),
		cmocka_unit_test(test_reply_bad),
		cmocka_unit_test(test_reply_limits),
		cmocka_unit_test(test_reply_reset_copy),
		cmocka_unit_test(test_ehlo_has),
		cmocka_unit_test(test_queue_id),
		cmocka_unit_test(test_dsn_rcpt_params),
		cmocka_unit_test(test_xforward_ok),
		cmocka_unit_test(test_xforward_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
