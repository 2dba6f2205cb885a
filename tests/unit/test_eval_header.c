/* test_eval_header.c - unit tests of the three evals of rules/eval_header.c
 * whose SpamAssassin regex is built from the message's own addresses:
 * check_for_to_in_subject('address'|'user'), check_ratware_name_id and
 * check_ratware_envelope_from.
 *
 * Two kinds of test: hand-picked cases with the answer SpamAssassin's
 * HeaderEval.pm gives (regex metacharacters in the address, case, word
 * boundaries, "$" before the final newline, several Subject fields, long
 * and empty values), and a differential test that runs many generated
 * messages through the rule engine and through PCRE2 with SpamAssassin's
 * own patterns (the address quoted byte by byte as \x{hh}), and requires
 * the same answer for every one. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "rules/rules.h"

#include "eval_testlib.h"

static const char RULES[] =
	"header T_USER eval:check_for_to_in_subject('user')\n"
	"header T_ADDR eval:check_for_to_in_subject('address')\n"
	"header T_RNAME eval:check_ratware_name_id()\n"
	"header T_RENV eval:check_ratware_envelope_from()\n";

static struct ruleset *rs;

static int setup(void **st)
{
	(void)st;
	rs = load(RULES);
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	rules_free(rs);
	return 0;
}

/* One message: To, up to four Subject fields, From, Message-Id, and the
 * envelope sender (NULL = not known; then Return-Path is used). */
struct msg {
	const char *to;
	const char *subj[4];
	const char *from, *mid, *envfrom, *return_path;
};

static void scan(const struct msg *m, struct hits *h)
{
	struct rules_header hd[10];
	size_t n = 0;
#define HDR(N, V) do { if (V) { hd[n].name = N; hd[n].raw = V; hd[n].decoded = V; n++; } } while (0)
	HDR("To", m->to);
	for (size_t i = 0; i < 4; i++) HDR("Subject", m->subj[i]);
	HDR("From", m->from);
	HDR("Message-Id", m->mid);
	HDR("Return-Path", m->return_path);
#undef HDR
	const char *body[1] = { "" };
	size_t blen[1] = { 0 };
	struct rules_input in = {
		.headers = hd, .nheaders = n,
		.body = body, .body_len = blen, .nbody = 0,
		.rawbody = body, .rawbody_len = blen, .nrawbody = 0,
		.mail_from = m->envfrom,
	};
	memset(h, 0, sizeof *h);
	struct rules_scratch *s = rules_scratch_new(rs);
	assert_non_null(s);
	assert_int_equal(rules_scan(rs, s, &in, collect, h), 0);
	rules_scratch_free(s);
}

static int hit(const struct msg *m, const char *rule)
{
	struct hits h;
	scan(m, &h);
	return has(&h, rule);
}

/* hand-picked cases: a is the address (or Message-Id), b the Subject (or
 * From, or envelope sender), want the answer SpamAssassin gives */
struct kase { const char *a, *b; int want; };

static void run_cases(const char *what, int (*f)(const char *, const char *), const struct kase *k, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int got = f(k[i].a, k[i].b);
		if (got != k[i].want)
			fprintf(stderr, "%s(\"%s\", \"%s\") = %d, want %d\n", what, k[i].a, k[i].b ? k[i].b : "(none)", got, k[i].want);
		assert_int_equal(got, k[i].want);
	}
}
#define RUN(f, cases) run_cases(#f, f, cases, sizeof cases / sizeof *cases)

/* Subject with To: <to> */
static int user_in(const char *to, const char *subject)
{
	char t[1024];
	snprintf(t, sizeof t, "<%s>", to);
	struct msg m = { .to = t, .subj = { subject } };
	return hit(&m, "T_USER");
}

static int addr_in(const char *to, const char *subject)
{
	char t[1024];
	snprintf(t, sizeof t, "<%s>", to);
	struct msg m = { .to = t, .subj = { subject } };
	return hit(&m, "T_ADDR");
}

/* a string of n bytes c, to free */
static char *filled(size_t n, char c)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* no To: none of the checks; no Subject: neither to_in_subject */
static void test_missing_fields(void **st)
{
	(void)st;
	struct hits h;
	struct msg noto = { .subj = { "Joe", "joe@example.com" }, .envfrom = "example.com.joe@x.example" };
	scan(&noto, &h);
	assert_false(has(&h, "T_USER") || has(&h, "T_ADDR") || has(&h, "T_RENV"));
	struct msg nosubj = { .to = "<Joe@example.com>" };
	scan(&nosubj, &h);
	assert_false(has(&h, "T_USER") || has(&h, "T_ADDR"));
}

/* --- check_for_to_in_subject('address'): /\b\Q$to\E\b/i -------------------- */

#define META "a*b?c[d]e{2}f(g)h|i^j$k\\l/m&n#o=p'q`r~s%t!u@ex.com"

static const struct kase ADDRESS_CASES[] = {
	{ "joe.bloggs+x@example.com", "Hello joe.bloggs+x@example.com", 1 },
	{ "joe.bloggs+x@example.com", "HELLO JOE.BLOGGS+X@EXAMPLE.COM today", 1 }, /* case */
	{ "joe.bloggs+x@example.com", "joe.bloggs+x@example.com", 1 }, /* start and end */
	{ "joe.bloggs+x@example.com", "for joe.bloggs+x@example.com.", 1 },
	{ "joe.bloggs+x@example.com", "(joe.bloggs+x@example.com)", 1 },
	{ "joe.bloggs+x@example.com", "xjoe.bloggs+x@example.com", 0 }, /* no boundary before */
	{ "joe.bloggs+x@example.com", "joe.bloggs+x@example.comx", 0 }, /* nor after */
	{ "joe.bloggs+x@example.com", "joe.bloggs+x@example.com_", 0 }, /* _ is a word character */
	{ "joe.bloggs+x@example.com", "joeXbloggs+x@example.com", 0 }, /* "." is literal */
	{ "joe.bloggs+x@example.com", "joe.bloggsssx@example.com", 0 }, /* "+" is literal */
	{ "joe.bloggs+x@example.com", "joe.bloggs+x@example.co", 0 },
	{ "joe.bloggs+x@example.com", "", 0 },
	{ "joe.bloggs+x@example.com", "joe.bloggs+x@example", 0 },
	/* an address starting or ending in a non-word character: \b then
	 * wants a word character on the other side */
	{ "-list@example.com", "re -list@example.com", 0 },
	{ "-list@example.com", "re x-list@example.com", 1 },
	{ "user@example.com.", "mail user@example.com. now", 0 },
	{ "user@example.com.", "mail user@example.com.now", 1 },
	/* metacharacters of every kind, literally */
	{ META, "see " META " here", 1 },
	{ META, "see aaab?c[d]e{2}f(g)h|i^j$k\\l/m&n#o=p'q`r~s%t!u@ex.com here", 0 },
	/* \E inside the address does not end a quoting */
	{ "x\\Ey@ex.com", "to x\\Ey@ex.com", 1 },
	{ "x\\Ey@ex.com", "to xEy@ex.com", 0 },
	/* bytes above 0x7f: literal, not letters (no boundary next to them) */
	{ "caf\xe9@ex.com", "for CAF\xe9@EX.COM", 1 },
	{ "\xe9t\xe9@ex.com", "x\xe9t\xe9@ex.com", 1 }, /* \b between x and \xe9 */
	{ "\xe9t\xe9@ex.com", "to \xe9t\xe9@ex.com", 0 }, /* none between space and \xe9 */
	{ "\xe9t\xe9@ex.com", "\xe9t\xe9@ex.com", 0 }, /* nor at the start */
};

static void test_address(void **st)
{
	(void)st;
	RUN(addr_in, ADDRESS_CASES);
	/* several Subject fields are joined with "\n" */
	struct msg m = { .to = "Ann <ann@example.org>", .subj = { "first", "to ann@example.org" } };
	assert_true(hit(&m, "T_ADDR"));
	/* the first address of To only */
	struct msg second = { .to = "ann@example.org, bob@example.org", .subj = { "hi bob@example.org" } };
	assert_false(hit(&second, "T_ADDR"));
	second.subj[0] = "hi ann@example.org";
	assert_true(hit(&second, "T_ADDR"));
}

static void test_address_long(void **st)
{
	(void)st;
	/* a 60000-byte Subject, the address at its very end, then absent */
	size_t n = 60000;
	char *s = filled(n, 'a');
	const char *to = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com";
	size_t tl = strlen(to);
	memcpy(s + n - tl, to, tl);
	s[n - tl - 1] = ' ';
	assert_true(addr_in(to, s));
	s[n - tl - 1] = 'a';                        /* no boundary before */
	assert_false(addr_in(to, s));
	free(s);
	/* a long address (200 bytes) */
	char big[256];
	memset(big, 'b', 190);
	memcpy(big + 190, "@ex.com", 8);
	char subj[512];
	snprintf(subj, sizeof subj, "Re: %s", big);
	assert_true(addr_in(big, subj));
	subj[10] = 'c';
	assert_false(addr_in(big, subj));
}

/* --- check_for_to_in_subject('user') -----------------------------------------
 * /^(?:(?:re|fw):\s*(?:\w+\s+)?U$ | (?-i:U)\s*[,:;!?-](?:$|\s) | U$ | ,\s*U[,:;!?-]$)/ix
 * over the Subject fields joined, each ending in "\n" */

static const struct kase USER_CASES[] = {
	/* U$ */
	{ "Joe@example.com", "Joe", 1 },
	{ "Joe@example.com", "jOE", 1 },
	{ "Joe@example.com", "Joe ", 0 }, /* $ only before the final newline */
	{ "Joe@example.com", " Joe", 0 },
	{ "Joe@example.com", "hello Joe", 0 },
	{ "Joe@example.com", "Joey", 0 },
	/* (?-i:U)\s*[,:;!?-](?:$|\s): case-sensitive */
	{ "Joe@example.com", "Joe, you won", 1 },
	{ "Joe@example.com", "Joe , you won", 1 },
	{ "Joe@example.com", "Joe\t!\tnow", 1 },
	{ "Joe@example.com", "Joe-", 1 },
	{ "Joe@example.com", "Joe?", 1 },
	{ "Joe@example.com", "joe, you won", 0 }, /* case */
	{ "Joe@example.com", "JOE, you won", 0 },
	{ "Joe@example.com", "Joe ,you won", 0 }, /* punctuation then a word */
	{ "Joe@example.com", "Joe. you won", 0 }, /* "." is not in the class */
	{ "Joe@example.com", "Joe you, won", 0 },
	/* (?:re|fw):\s*(?:\w+\s+)?U$ */
	{ "Joe@example.com", "Re: joe", 1 },
	{ "Joe@example.com", "re:joe", 1 },
	{ "Joe@example.com", "FW:   hello \t JOE", 1 },
	{ "Joe@example.com", "fw: a_1 joe", 1 },
	{ "Joe@example.com", "Fwd: joe", 0 },
	{ "Joe@example.com", "Re: hello there joe", 0 }, /* one word at most */
	{ "Joe@example.com", "Re: hello-x joe", 0 }, /* "-" is not \w */
	{ "Joe@example.com", "Re: hellojoe", 0 },
	{ "Joe@example.com", "Re: joe, hi", 0 },
	{ "Joe@example.com", " Re: joe", 0 },
	/* ,\s*U[,:;!?-]$ */
	{ "Joe@example.com", ", joe!", 1 },
	{ "Joe@example.com", ",JOE;", 1 },
	{ "Joe@example.com", ",  \t joe-", 1 },
	{ "Joe@example.com", ", joe! ", 0 },
	{ "Joe@example.com", ", joe", 0 }, /* would be U$ only at the start */
	{ "Joe@example.com", "x, joe!", 0 },
	{ "Joe@example.com", ", joe.", 0 },
	/* metacharacters and spaces in the local part are literal */
	{ "j.o*e@x.com", "j.o*e", 1 },
	{ "j.o*e@x.com", "Re: hi J.O*E", 1 },
	{ "j.o*e@x.com", "jxooe", 0 },
	{ "j.o*e@x.com", "j.e", 0 },
	{ "a+b@x.com", "a+b: news", 1 },
	{ "a+b@x.com", "aab: news", 0 },
	{ "john doe@x.com", "Re: john doe", 1 },
	{ "[$x]@x.com", ",[$X]?", 1 },
	{ "x\\E.*@x.com", "x\\E.*", 1 },
	{ "x\\E.*@x.com", "x\\Eanything", 0 },
	/* no "@": the whole address is the user */
	{ "postmaster", "Postmaster", 1 },
	/* the user only, not the domain */
	{ "Joe@example.com", "joe@example.com", 0 },
	/* an empty user: the pattern's empty alternatives */
	{ "@example.com", "-", 1 },
	{ "@example.com", "Re: x ", 1 },
	{ "@example.com", "Re: x", 1 }, /* \s+ takes the final "\n" */
	{ "@example.com", "Re: x y", 0 },
	{ "@example.com", "x", 0 },
};

static void test_user(void **st)
{
	(void)st;
	RUN(user_in, USER_CASES);

	/* several Subject fields: "$" is only at the very end */
	struct msg m = { .to = "<Joe@example.com>", .subj = { "Joe", "other" } };
	assert_false(hit(&m, "T_USER"));
	m.subj[0] = "x"; m.subj[1] = "Joe";
	assert_false(hit(&m, "T_USER"));
	m.subj[0] = "Joe"; m.subj[1] = "- x";             /* \s* crosses the newline */
	assert_true(hit(&m, "T_USER"));
	m.subj[1] = "-x";
	assert_false(hit(&m, "T_USER"));
	m.subj[0] = "Re:"; m.subj[1] = "joe";             /* Re:\s* crosses it too */
	assert_true(hit(&m, "T_USER"));
	m.subj[0] = "Joe,"; m.subj[1] = NULL;             /* "," then the final "\n" */
	assert_true(hit(&m, "T_USER"));
}

static void test_user_long(void **st)
{
	(void)st;
	size_t n = 60000;
	char *s = filled(n, ' ');
	memcpy(s, "Re:", 3);
	memcpy(s + n - 3, "joe", 3);
	assert_true(user_in("joe@x.com", s));       /* Re: + 59994 spaces + joe */
	memset(s + 3000, 'w', 20000);
	assert_true(user_in("joe@x.com", s));       /* one word between the spaces */
	s[10000] = ' ';
	assert_false(user_in("joe@x.com", s));      /* two words */
	free(s);
	/* a 250-byte user */
	char to[300];
	memset(to, 'u', 250);
	memcpy(to + 250, "@x.com", 7);
	char subj[300];
	memcpy(subj, to, 250);
	memcpy(subj + 250, ": hi", 5);
	assert_true(user_in(to, subj));
	subj[249] = 'v';
	assert_false(user_in(to, subj));
}

/* --- check_ratware_name_id --------------------------------------------------
 * MESSAGEID =~ /<[A-Z]{28}\.([^>]+?)>/ and From =~ /"[^"]+"\s*<\Q$1\E>/ */

#define CAPS28 "ABCDEFGHIJKLMNOPQRSTUVWXYZAB"

static int name_id(const char *mid, const char *from)
{
	struct msg m = { .from = from, .mid = mid };
	return hit(&m, "T_RNAME");
}

#define MM "<" CAPS28 ".a.b+c*(d)[e]$^\\E|?@x.com>"

static const struct kase NAME_ID_CASES[] = {
	{ "<" CAPS28 ".abc@example.net>", "\"Bob\" <abc@example.net>", 1 },
	{ "<" CAPS28 ".abc@example.net>", "\"Bob\"<abc@example.net>", 1 },
	{ "<" CAPS28 ".abc@example.net>", "\"Bob Smith\" \t <abc@example.net>", 1 },
	{ "<" CAPS28 ".abc@example.net>", "x \"Bob\" <abc@example.net> y", 1 },
	{ "<" CAPS28 ".abc@example.net>", "\"a\"b\" <abc@example.net>", 1 }, /* "b" is the quoted name */
	{ "<" CAPS28 ".abc@example.net>", "\"\" <abc@example.net>", 0 }, /* empty name */
	{ "<" CAPS28 ".abc@example.net>", "\"\"\" <abc@example.net>", 0 },
	{ "<" CAPS28 ".abc@example.net>", "Bob <abc@example.net>", 0 },
	{ "<" CAPS28 ".abc@example.net>", "\"Bob\" x <abc@example.net>", 0 },
	{ "<" CAPS28 ".abc@example.net>", "\"Bob\" <ABC@example.net>", 0 }, /* case-sensitive */
	{ "<" CAPS28 ".abc@example.net>", "\"Bob\" <abc@example.net", 0 },
	{ "<" CAPS28 ".abc@example.net>", "\"Bob\" <abc@example.netx>", 0 },
	{ "<" CAPS28 ".abc@example.net>", "\"Bob\" <xabc@example.net>", 0 },
	{ "<" CAPS28 ".abc@example.net>", "Bob\" <abc@example.net>", 0 },
	{ "<" CAPS28 ".abc@example.net>", NULL, 0 },
	/* the Message-Id shape */
	{ "<ABCDEFGHIJKLMNOPQRSTUVWXYZA.abc@example.net>", "\"Bob\" <abc@example.net>", 0 },
	{ "<" CAPS28 "C.abc@example.net>", "\"Bob\" <abc@example.net>", 0 },
	{ "<ABCDEFGHIJKLMNOPQRSTUVWXYZAb.abc@example.net>", "\"Bob\" <abc@example.net>", 0 },
	{ "<" CAPS28 ".>", "\"Bob\" <>", 0 },
	{ "<" CAPS28 ".abc@example.net", "\"Bob\" <abc@example.net>", 0 },
	{ "junk <x> <" CAPS28 ".abc@example.net>", "\"Bob\" <abc@example.net>", 1 },
	/* only the first such id counts */
	{ "<" CAPS28 ".one> <" CAPS28 ".two>", "\"Bob\" <two>", 0 },
	{ "<" CAPS28 ".one> <" CAPS28 ".two>", "\"Bob\" <one>", 1 },
	/* metacharacters in the id are literal */
	{ MM, "\"B\" <a.b+c*(d)[e]$^\\E|?@x.com>", 1 },
	{ MM, "\"B\" <aXb+c*(d)[e]$^\\E|?@x.com>", 0 },
	{ MM, "\"B\" <a.bbc*(d)[e]$^\\E|?@x.com>", 0 },
	/* an id with spaces, quotes and "<" (anything but ">") */
	{ "<" CAPS28 ".a \"b<c>", "\"B\" <a \"b<c>", 1 },
};

static void test_name_id(void **st)
{
	(void)st;
	RUN(name_id, NAME_ID_CASES);
	/* \s* crosses a newline in the field */
	struct msg m = { .from = "x@y", .mid = "<" CAPS28 ".id@z>" };
	assert_false(hit(&m, "T_RNAME"));
	m.from = "\"Name\"\n<id@z>";
	assert_true(hit(&m, "T_RNAME"));
}

/* a long id: SpamAssassin compares all of it (the per-message pattern this
 * replaced quoted only its first 599 bytes, fewer when punctuation) */
/* name_id for an id of n bytes c, the From naming its first k bytes */
static int long_id(char c, size_t n, size_t k)
{
	char *id = filled(n, c), mid[1100], from[1100];
	snprintf(mid, sizeof mid, "<" CAPS28 ".%s>", id);
	snprintf(from, sizeof from, "\"Bob\" <%.*s>", (int)k, id);
	free(id);
	return name_id(mid, from);
}

static void test_name_id_long(void **st)
{
	(void)st;
	assert_true(long_id('.', 1000, 1000));
	assert_false(long_id('.', 1000, 999));
	assert_false(long_id('.', 1000, 600));
	assert_true(long_id('a', 700, 700));
	assert_false(long_id('a', 700, 599));          /* not a prefix of it */
}

/* --- check_ratware_envelope_from ---------------------------------------------
 * To:addr =~ /^([^@]+)@(.+)$/, then EnvelopeFrom =~ /\b\Q$dom\E.\Q$user\E@/i
 * with $dom the registered domain of the To domain */

static int env(const char *to, const char *envfrom)
{
	char t[1024];
	snprintf(t, sizeof t, "<%s>", to);
	struct msg m = { .to = t, .envfrom = envfrom };
	return hit(&m, "T_RENV");
}

static const struct kase ENVELOPE_FROM_CASES[] = {
	{ "joe@example.com", "example.com.joe@spam.example", 1 },
	{ "joe@example.com", "EXAMPLE.COM-JOE@spam.example", 1 }, /* any byte between, case */
	{ "joe@example.com", "x.example.com+joe@spam.example", 1 },
	{ "joe@example.com", "bounce-example.com=joe@spam.example", 1 },
	{ "joe@example.com", "example.comjoe@spam.example", 0 }, /* one byte between */
	{ "joe@example.com", "example.com..joe@spam.example", 0 },
	{ "joe@example.com", "xexample.com.joe@spam.example", 0 }, /* no \b before */
	{ "joe@example.com", "_example.com.joe@spam.example", 0 },
	{ "joe@example.com", "example.com.joe.x@spam.example", 0 },
	{ "joe@example.com", "example.com.jo@spam.example", 0 },
	{ "joe@example.com", "example.com\njoe@spam.example", 0 }, /* "." is not a newline */
	{ "joe@example.com", "exampleXcom.joe@spam.example", 0 }, /* the domain's "." is literal */
	{ "joe@example.com", "SRS0=abc=example.com.joe@spam.example", 0 },
	{ "joe@example.com", "srs1+abc=example.com.joe@spam.example", 0 },
	{ "joe@example.com", "", 0 },
	{ "joe@example.com", NULL, 0 },
	/* metacharacters */
	{ "j+e@ex-ample.com", "ex-ample.com.j+e@x.example", 1 },
	{ "j+e@ex-ample.com", "ex-ample.com.jjje@x.example", 0 },
	{ "j*e(1)@a$b.com", "a$b.com_j*e(1)@x.example", 1 },
	{ "j*e(1)@a$b.com", "ab.com_je1@x.example", 0 },
	/* a domain starting with a non-word byte: \b wants a word byte before */
	{ "joe@-ex.com", "a--ex.com.joe@x.example", 0 },
	{ "joe@-ex.com", "a-ex.com.joe@x.example", 1 },
	/* not a valid domain: no test */
	{ "joe@example", "example.joe@x.example", 0 },
	{ "joe@example.123", "example.123.joe@x.example", 0 },
};

static void test_envelope_from(void **st)
{
	(void)st;
	RUN(env, ENVELOPE_FROM_CASES);
	/* the envelope sender from Return-Path when the bridge has none */
	struct msg m = { .to = "<joe@example.com>", .return_path = "<example.com.joe@spam.example>" };
	assert_true(hit(&m, "T_RENV"));
	m.return_path = "<joe@spam.example>";
	assert_false(hit(&m, "T_RENV"));
}

/* the registered domain of a To domain of three or more labels: the last
 * two, or three under a two-letter country code with a short second level */
static const struct kase REGISTERED_DOMAIN_CASES[] = {
	{ "joe@mail.example.com", "example.com.joe@spam.example", 1 },
	{ "joe@mail.example.com", "mail.example.com.joe@spam.example", 1 },
	{ "joe@a.b.mail.example.com", "example.com.joe@spam.example", 1 },
	{ "joe@mail.example.com", "com.joe@spam.example", 0 },
	{ "joe@example.co.uk", "example.co.uk.joe@spam.example", 1 },
	{ "joe@www.example.co.uk", "example.co.uk.joe@spam.example", 1 },
	{ "joe@www.example.co.uk", "co.uk.joe@spam.example", 0 },
	{ "joe@www.example.com.au", "example.com.au.joe@spam.example", 1 },
	{ "joe@www.example.info.uk", "info.uk.joe@spam.example", 1 }, /* "info" is not short */
	{ "joe@co.uk", "co.uk.joe@spam.example", 1 },
};

static void test_envelope_from_registered_domain(void **st)
{
	(void)st;
	RUN(env, REGISTERED_DOMAIN_CASES);
}

/* --- differential: the engine against SpamAssassin's patterns in PCRE2 --- */

/* a PCRE2 pattern for the bytes of s, each as \x{hh} */
static void hexquote(char *out, size_t outlen, const char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		assert_true(o + 7 < outlen);
		o += (size_t)snprintf(out + o, outlen - o, "\\x{%02x}", (unsigned char)s[i]);
	}
	out[o] = '\0';
}

static int pcre_hit(const char *pattern, uint32_t opt, const char *subject, size_t len, char *group1, size_t g1len)
{
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opt, &ec, &eo, NULL);
	if (!c) fprintf(stderr, "bad pattern %s\n", pattern);
	assert_non_null(c);
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(c, NULL);
	int rc = pcre2_match(c, (PCRE2_SPTR)subject, len, 0, 0, md, NULL);
	assert_true(rc > 0 || rc == PCRE2_ERROR_NOMATCH);
	if (rc > 1 && group1) {
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		snprintf(group1, g1len, "%.*s", (int)(ov[3] - ov[2]), subject + ov[2]);
	}
	pcre2_match_data_free(md);
	pcre2_code_free(c);
	return rc > 0;
}

static uint32_t rnd_state = 12345;
static unsigned rnd(unsigned n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 8) % n;
}

static const char *pick(const char *const *list, size_t n) { return list[rnd((unsigned)n)]; }
#define PICK(list) pick(list, sizeof list / sizeof *list)

/* append s to buf (bounded) */
static void add(char *buf, size_t buflen, const char *s)
{
	size_t l = strlen(buf), n = strlen(s);
	if (l + n < buflen) memcpy(buf + l, s, n + 1);
}

/* a random case for every ASCII letter of s */
static void recase(char *s)
{
	for (; *s; s++)
		if (rnd(2)) {
			if (*s >= 'a' && *s <= 'z') *s = (char)(*s - 32);
			else if (*s >= 'A' && *s <= 'Z') *s = (char)(*s + 32);
		}
}

/* one time in three: one byte replaced by a byte of alpha, or removed */
static void mutate(char *s, const char *alpha)
{
	size_t n = strlen(s);
	if (!n || rnd(3)) return;
	size_t i = rnd((unsigned)n);
	if (rnd(2)) s[i] = alpha[rnd((unsigned)strlen(alpha))];
	else memmove(s + i, s + i + 1, n - i);
}

/* bytes an address local part or id is made of here: metacharacters, a
 * space, a non-ASCII byte (none of "<>,;()\"\\@\n", which would change
 * which address the header gives) */
static const char ADDR_BYTES[] = "aAbBcCzZ09_aAbBcCzZ09_.+*?[]{}^$|-/&#=!'`~% \xe9";

static void rnd_word(char *out, size_t maxlen, const char *alpha)
{
	size_t n = rnd((unsigned)maxlen) + 1;
	for (size_t i = 0; i < n; i++) out[i] = alpha[rnd((unsigned)strlen(alpha))];
	out[n] = '\0';
	if (out[0] == ' ') out[0] = 'x';            /* the header value is trimmed */
	if (out[n - 1] == ' ') out[n - 1] = 'y';
}

/* a Subject field near one of the shapes the two patterns look for */
static void rnd_subject(char *out, size_t outlen, const char *user, const char *to)
{
	static const char *const upre[] = { "", "", "re:", "Fw: ", "RE: \t", "re: word ", "fw:a_1\n", "fwd: ", ",", ", ",
		",\t ", " ", "x " };
	static const char *const upost[] = { "", "", "!", " ,", ", you", "-x", " ", "\n", "?\t", ";", " - " };
	static const char *const apre[] = { "", " ", "x", "-", "for ", "_", "\xe9", "(" };
	static const char *const apost[] = { "", ".", "x", " y", "_", "\n", ")", "\xe9" };
	char v[64];
	out[0] = '\0';
	switch (rnd(5)) {
	case 0: case 1:
		snprintf(v, sizeof v, "%s", user);
		if (rnd(2)) recase(v);
		add(out, outlen, PICK(upre)); add(out, outlen, v); add(out, outlen, PICK(upost));
		break;
	case 2: case 3:
		snprintf(v, sizeof v, "%s", to);
		if (rnd(2)) recase(v);
		add(out, outlen, PICK(apre)); add(out, outlen, v); add(out, outlen, PICK(apost));
		break;
	default: {
		static const char *const any[] = { "re:", " ", "\t", ",", ":", "-", "!", ".", "word", "_", "x", "\xe9", "\n" };
		for (unsigned n = rnd(5); n; n--) add(out, outlen, PICK(any));
		add(out, outlen, rnd(2) ? user : to);
	}
	}
	mutate(out, ",:;!?- x\t\nA_");
}

static void test_differential_to_in_subject(void **st)
{
	(void)st;
	unsigned seen[2][2] = { { 0, 0 }, { 0, 0 } };
	for (int iter = 0; iter < 6000; iter++) {
		char user[16], dom[16], to[40];
		rnd_word(user, iter % 7 == 0 ? 1 : 6, ADDR_BYTES);
		rnd_word(dom, 5, "ab.-");
		snprintf(to, sizeof to, "%s@%s", user, dom);
		struct msg m = { 0 };
		char tohdr[48], subj[2][96], joined[256] = "";
		snprintf(tohdr, sizeof tohdr, "<%s>", to);
		m.to = tohdr;
		unsigned nsubj = rnd(8) == 0 ? 2 : 1;
		for (unsigned s = 0; s < nsubj; s++) {
			rnd_subject(subj[s], sizeof subj[s], user, to);
			m.subj[s] = subj[s];
			add(joined, sizeof joined, subj[s]);
			add(joined, sizeof joined, "\n");
		}
		struct hits h;
		scan(&m, &h);

		char qt[512], qu[256], pat[2048];
		hexquote(qt, sizeof qt, to, strlen(to));
		hexquote(qu, sizeof qu, user, strlen(user));
		snprintf(pat, sizeof pat, "\\b%s\\b", qt);
		int want_addr = pcre_hit(pat, PCRE2_CASELESS, joined, strlen(joined), NULL, 0);
		snprintf(pat, sizeof pat,
		         "^(?:(?:re|fw):\\s*(?:\\w+\\s+)?%s$|(?-i:%s)\\s*[,:;!?-](?:$|\\s)|%s$|,\\s*%s[,:;!?-]$)",
		         qu, qu, qu, qu);
		int want_user = pcre_hit(pat, PCRE2_CASELESS, joined, strlen(joined), NULL, 0);
		if (want_addr != has(&h, "T_ADDR") || want_user != has(&h, "T_USER"))
			fprintf(stderr, "to=[%s] subject=[%s]: address %d/%d user %d/%d\n", to, joined,
			        has(&h, "T_ADDR"), want_addr, has(&h, "T_USER"), want_user);
		assert_int_equal(has(&h, "T_ADDR"), want_addr);
		assert_int_equal(has(&h, "T_USER"), want_user);
		seen[0][want_addr]++;
		seen[1][want_user]++;
	}
	/* both answers were given often enough to mean something */
	fprintf(stderr, "to_in_subject: address %u/%u user %u/%u\n", seen[0][0], seen[0][1], seen[1][0], seen[1][1]);
	assert_true(seen[0][0] > 300 && seen[0][1] > 300);
	assert_true(seen[1][0] > 300 && seen[1][1] > 300);
}

static void test_differential_name_id(void **st)
{
	(void)st;
	unsigned seen[2] = { 0, 0 };
	for (int iter = 0; iter < 6000; iter++) {
		char id[16], mid[128], from[160] = "";
		rnd_word(id, 5, "aA.*\" <\t\xe9");
		static const char *const midpre[] = { "", "", "", "<x> ", "<" CAPS28 ".>" };
		static const char *const caps[] = { CAPS28, CAPS28, CAPS28, CAPS28 "C", "ABCDEFGHIJKLMNOPQRSTUVWXYZA",
			"ABCDEFGHIJKLMNOPQRSTUVWXYZa" };
		snprintf(mid, sizeof mid, "%s<%s.%s>", PICK(midpre), PICK(caps), id);
		mutate(mid, "A.<>");
		static const char *const pre[] = { "", "", "x ", "\"", "\"a\"" };
		static const char *const name[] = { "\"Bob\"", "\"Bob\"", "\"\"", "\"a\"b\"", "\" \"", "Bob", "\"B<\"" };
		static const char *const ws[] = { "", " ", "\t\n ", " x ", "\n" };
		static const char *const post[] = { "", "", " y", ">", "\"" };
		char addr[24];
		snprintf(addr, sizeof addr, "<%s>", id);
		mutate(addr, "aA\"<> ");
		add(from, sizeof from, PICK(pre));
		add(from, sizeof from, PICK(name));
		add(from, sizeof from, PICK(ws));
		add(from, sizeof from, addr);
		add(from, sizeof from, PICK(post));
		struct msg m = { .from = from, .mid = mid };
		int got = hit(&m, "T_RNAME");

		char midj[140], fromj[170], g1[64] = "";
		snprintf(midj, sizeof midj, "%s\n", mid);
		snprintf(fromj, sizeof fromj, "%s\n", from);
		int want = 0;
		if (pcre_hit("<[A-Z]{28}\\.([^>]+?)>", 0, midj, strlen(midj), g1, sizeof g1)) {
			char q[512], pat[600];
			hexquote(q, sizeof q, g1, strlen(g1));
			snprintf(pat, sizeof pat, "\"[^\"]+\"\\s*<%s>", q);
			want = pcre_hit(pat, 0, fromj, strlen(fromj), NULL, 0);
		}
		if (got != want) fprintf(stderr, "mid=[%s] from=[%s]: %d, want %d\n", mid, from, got, want);
		assert_int_equal(got, want);
		seen[want]++;
	}
	fprintf(stderr, "name_id: %u/%u\n", seen[0], seen[1]);
	assert_true(seen[0] > 300 && seen[1] > 300);
}

static void test_differential_envelope_from(void **st)
{
	(void)st;
	unsigned seen[2] = { 0, 0 };
	for (int iter = 0; iter < 6000; iter++) {
		/* a one-dot domain is its own registered domain */
		char user[16], label[16], dom[24], to[48];
		rnd_word(user, 4, "aB0_.+*-$\xe9");
		rnd_word(label, 4, "aB0_-+*$\xe9");
		snprintf(dom, sizeof dom, "%s.%s", label, rnd(2) ? "com" : "Org");
		snprintf(to, sizeof to, "%s@%s", user, dom);
		char ucase[16], dcase[24];
		snprintf(ucase, sizeof ucase, "%s", user); recase(ucase);
		snprintf(dcase, sizeof dcase, "%s", dom); recase(dcase);
		static const char *const pre[] = { "", "", "x", ".", "-", "_", "a-", "\xe9", "bounce-" };
		static const char *const sep[] = { ".", "-", "=", "+", "_", "a", "\n", "", ".." };
		static const char *const post[] = { "@spam.example", "@", "x@", "" };
		char envfrom[128] = "";
		add(envfrom, sizeof envfrom, PICK(pre));
		add(envfrom, sizeof envfrom, dcase);
		add(envfrom, sizeof envfrom, PICK(sep));
		add(envfrom, sizeof envfrom, ucase);
		add(envfrom, sizeof envfrom, PICK(post));
		mutate(envfrom, "a.-_@\xe9");
		char tohdr[56];
		snprintf(tohdr, sizeof tohdr, "<%s>", to);
		struct msg m = { .to = tohdr, .envfrom = envfrom };
		int got = hit(&m, "T_RENV");

		char qd[256], qu[256], pat[600];
		hexquote(qd, sizeof qd, dom, strlen(dom));
		hexquote(qu, sizeof qu, user, strlen(user));
		snprintf(pat, sizeof pat, "\\b%s.%s@", qd, qu);
		int want = envfrom[0] && pcre_hit(pat, PCRE2_CASELESS, envfrom, strlen(envfrom), NULL, 0);
		if (got != want) fprintf(stderr, "to=[%s] envfrom=[%s]: %d, want %d\n", to, envfrom, got, want);
		assert_int_equal(got, want);
		seen[want]++;
	}
	fprintf(stderr, "envelope_from: %u/%u\n", seen[0], seen[1]);
	assert_true(seen[0] > 300 && seen[1] > 300);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_fields),
		cmocka_unit_test(test_address),
		cmocka_unit_test(test_address_long),
		cmocka_unit_test(test_user),
		cmocka_unit_test(test_user_long),
		cmocka_unit_test(test_name_id),
		cmocka_unit_test(test_name_id_long),
		cmocka_unit_test(test_envelope_from),
		cmocka_unit_test(test_envelope_from_registered_domain),
		cmocka_unit_test(test_differential_to_in_subject),
		cmocka_unit_test(test_differential_name_id),
		cmocka_unit_test(test_differential_envelope_from),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
