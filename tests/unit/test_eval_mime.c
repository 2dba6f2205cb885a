/* test_eval_mime.c - unit tests for the eval: functions of rules/eval_mime.c
 * and rules/eval_header.c (SpamAssassin's MIMEEval, BodyEval, HeaderEval)
 * and the mimeheader rule type: each function hit and not hit by crafted
 * messages, bad arguments refused at load. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rules/rules.h"

#include "eval_testlib.h"

static const char *why_not_loaded(const struct ruleset *rs, const char *rule)
{
	const char *why, *n;
	for (size_t i = 0; (n = rules_not_loaded(rs, i, &why)); i++)
		if (!strcmp(n, rule)) return why;
	return NULL;
}

/* A message as the bridge would present it: header fields split from the
 * text (decoded = unfolded), the body lines given, MIME leaves given. */
struct msg {
	struct rules_header h[64];
	char *owned[128];
	size_t nh, no;
	const char *body[64];
	size_t body_len[64];
	size_t nbody;
	struct rules_part parts[16];
	size_t nparts;
	const char *mail_from;
};

static void msg_init(struct msg *m, const char *full)
{
	memset(m, 0, sizeof *m);
	const char *p = full;
	while (*p && *p != '\n' && m->nh < 64) {
		const char *e = p;
		for (;;) {
			e = strchr(e, '\n');
			if (!e) { e = p + strlen(p); break; }
			if (e[1] == ' ' || e[1] == '\t') { e++; continue; }
			break;
		}
		const char *colon = memchr(p, ':', (size_t)(e - p));
		if (colon) {
			char *name = strndup(p, (size_t)(colon - p));
			const char *v = colon + 1;
			if (*v == ' ') v++;
			char *raw = strndup(v, (size_t)(e - v));
			char *dec = strdup(raw);
			char *d = dec;
			for (const char *s = raw; *s; s++) {
				if (*s == '\n') continue;
				*d++ = *s;
			}
			*d = '\0';
			m->h[m->nh].name = name;
			m->h[m->nh].raw = raw;
			m->h[m->nh].decoded = dec;
			m->nh++;
			m->owned[m->no++] = name; m->owned[m->no++] = raw; m->owned[m->no++] = dec;
		}
		p = *e ? e + 1 : e;
	}
}

static void msg_body(struct msg *m, const char *line)
{
	m->body[m->nbody] = line;
	m->body_len[m->nbody++] = strlen(line);
}

static void msg_part(struct msg *m, const char *type, const char *data)
{
	struct rules_part *p = &m->parts[m->nparts++];
	memset(p, 0, sizeof *p);
	p->content_type = type;
	p->is_html = !strcmp(type, "text/html");
	p->is_text = p->is_html || !strcmp(type, "text/plain");
	p->data = data;
	p->len = strlen(data);
	p->raw = data;
	p->raw_len = p->len;
	if (p->is_html) { p->rendered = data; p->rendered_len = p->len; }
}

static void msg_free(struct msg *m)
{
	for (size_t i = 0; i < m->no; i++) free(m->owned[i]);
}

static void run(struct ruleset *rs, struct msg *m, const char *full, struct hits *h)
{
	struct rules_input in = {
		.headers = m->h, .nheaders = m->nh,
		.body = m->body, .body_len = m->body_len, .nbody = m->nbody,
		.full = full, .full_len = strlen(full),
		.parts = m->parts, .nparts = m->nparts,
		.mail_from = m->mail_from,
	};
	struct rules_scratch *scr = rules_scratch_new(rs);
	memset(h, 0, sizeof *h);
	rules_scan(rs, scr, &in, collect, h);
	rules_scratch_free(scr);
}

/* --- MIME structure ------------------------------------------------------------- */

static const char *const MIME_RULES =
	"rawbody B64 eval:check_for_mime('mime_base64_count')\n"
	"rawbody QP eval:check_for_mime('mime_qp_count')\n"
	"rawbody B64TEXT eval:check_for_mime('mime_base64_encoded_text')\n"
	"rawbody QPLONG eval:check_for_mime('mime_qp_long_line')\n"
	"body BADISO eval:check_for_mime('mime_bad_iso_charset')\n"
	"body ATTACH eval:check_for_mime('mime_attachment')\n"
	"body HTML eval:check_for_mime_html()\n"
	"body HTMLONLY eval:check_for_mime_html_only()\n"
	"body HTMLMOSTLY eval:check_mime_multipart_ratio('0.00','0.50')\n"
	"body MANONTEXT eval:check_ma_non_text()\n"
	"body B64LEN eval:check_base64_length('80','85')\n"
	"body B64LEN86 eval:check_base64_length('86')\n"
	"body EPI eval:check_msg_parse_flags('mime_epilogue_exists')\n"
	"body NOMIMEHDR eval:check_msg_parse_flags('missing_mime_headers')\n"
	"body NOMIMESEP eval:check_msg_parse_flags('missing_mime_head_body_separator')\n"
	"header NOSEP eval:check_msg_parse_flags('missing_head_body_separator')\n"
	"header LONGHDR eval:check_msg_parse_flags('truncated_header')\n"
	"body FAKEASCII eval:check_for_ascii_text_illegal()\n"
	"body UNICODE eval:check_abundant_unicode_ratio('0.02')\n"
	"body FARAWAY eval:check_for_faraway_charset()\n"
	"header FARAWAYH eval:check_for_faraway_charset_in_headers()\n"
	"body BADKEY eval:check_for_mime('no_such_key')\n"
	"body BADFLAG eval:check_msg_parse_flags('no_such_flag')\n"
	"body BADRATIO eval:check_abundant_unicode_ratio('many')\n"
	"body BADARGC eval:check_base64_length()\n"
	"body BADNUM1 eval:check_mime_multipart_ratio('low','high')\n"
	"body BADNUM2 eval:check_for_uppercase('50', 'x')\n"
	"body BADNUM3 eval:check_body_length('short')\n"
	"body BADNUM4 eval:check_stock_info('some')\n"
	"header BADNUM5 eval:check_illegal_chars('Subject','a','2')\n"
	"header BADNUM6 eval:similar_recipients('0.5','never')\n"
	"body MADIFF_UNDEF eval:multipart_alternative_difference('50', 'undef')\n";

static const char *const MULTI =
	"From: a@example.com\n"
	"To: b@example.org\n"
	"Subject: test\n"
	"Content-Type: multipart/alternative; boundary=\"XX\"\n"
	"\n"
	"preamble\n"
	"--XX\n"
	"Content-Type: text/plain; charset=iso-2022-cn-ext\n"
	"Content-Transfer-Encoding: quoted-printable\n"
	"\n"
	"hello =41 world this line is rather long and goes past the seventy-nine byte limit of RFC\n"
	"--XX\n"
	"Content-Type: text/html; charset=us-ascii\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"PGh0bWw+PGJvZHk+aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29ybGQ8L2JvZHk+PC9odG1sPg==\n"
	"PGh0bWw+\n"
	"--XX\n"
	"Content-Type: image/gif; name=\"x.gif\"\n"
	"Content-Disposition: attachment; filename=\"x.gif\"\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"R0lGODlh\n"
	"--XX--\n"
	"an epilogue\n";

static void test_mime_structure(void **st)
{
	(void)st;
	struct ruleset *rs = load(MIME_RULES);
	assert_non_null(strstr(why_not_loaded(rs, "BADKEY"), "unknown key"));
	assert_non_null(strstr(why_not_loaded(rs, "BADFLAG"), "unknown parse flag"));
	assert_non_null(why_not_loaded(rs, "BADRATIO"));
	assert_non_null(strstr(why_not_loaded(rs, "BADARGC"), "arguments"));
	assert_null(why_not_loaded(rs, "B64"));
	assert_null(why_not_loaded(rs, "MADIFF_UNDEF"));
	static const char *const bad[] = { "BADNUM1", "BADNUM2", "BADNUM3", "BADNUM4", "BADNUM5", "BADNUM6", NULL };
	for (size_t i = 0; bad[i]; i++) {
		const char *w = why_not_loaded(rs, bad[i]);
		assert_non_null(w);
		assert_non_null(strstr(w, "number"));
	}
	struct msg m;
	struct hits h;
	msg_init(&m, MULTI);
	msg_part(&m, "text/plain", "hello A world");
	msg_part(&m, "text/html", "<html><body>hello world</body></html>");
	msg_part(&m, "image/gif", "GIF89a");
	run(rs, &m, MULTI, &h);
	assert_true(has(&h, "B64"));
	assert_true(has(&h, "QP"));           /* "=41" is needlessly encoded */
	assert_true(has(&h, "B64TEXT"));      /* text/html in base64, us-ascii, not an attachment */
	assert_true(has(&h, "QPLONG"));
	assert_true(has(&h, "BADISO"));
	assert_true(has(&h, "ATTACH"));
	assert_true(has(&h, "HTML"));
	assert_false(has(&h, "HTMLONLY"));    /* there is a text/plain part */
	assert_false(has(&h, "HTMLMOSTLY"));  /* text is longer than half the html */
	assert_true(has(&h, "MANONTEXT"));    /* an image inside multipart/alternative */
	assert_true(has(&h, "B64LEN"));       /* longest base64 line: 84 + newline */
	assert_false(has(&h, "B64LEN86"));
	assert_true(has(&h, "EPI"));
	assert_false(has(&h, "NOMIMEHDR"));
	assert_false(has(&h, "NOMIMESEP"));
	assert_false(has(&h, "NOSEP"));
	assert_false(has(&h, "LONGHDR"));
	assert_false(has(&h, "FAKEASCII"));
	assert_false(has(&h, "UNICODE"));
	assert_false(has(&h, "FARAWAY"));     /* ok_locales all */
	assert_false(has(&h, "FARAWAYH"));
	msg_free(&m);

	/* mostly HTML: a tiny text alternative */
	static const char *const MOSTLY =
		"From: a@example.com\n"
		"Content-Type: multipart/alternative; boundary=\"Y\"\n"
		"\n"
		"--Y\n"
		"Content-Type: text/plain\n"
		"\n"
		"hi\n"
		"--Y\n"
		"Content-Type: text/html\n"
		"\n"
		"<html><body><p>a much longer html alternative than the text one</p></body></html>\n"
		"--Y--\n";
	msg_init(&m, MOSTLY);
	msg_part(&m, "text/plain", "hi\n");
	msg_part(&m, "text/html", "a much longer html alternative than the text one");
	run(rs, &m, MOSTLY, &h);
	assert_true(has(&h, "HTMLMOSTLY"));
	assert_false(has(&h, "MANONTEXT"));   /* text alternatives only */
	assert_false(has(&h, "B64"));
	msg_free(&m);

	/* a plain ASCII message with 8-bit bytes, unicode escapes, no separator */
	static const char *const PLAIN =
		"From: a@example.com\n"
		"Subject: x\n"
		"Content-Type: text/html\n"
		"X-Long: aaaaaaaaa\n";
	msg_init(&m, PLAIN);
	run(rs, &m, PLAIN, &h);
	assert_true(has(&h, "NOSEP"));
	assert_true(has(&h, "HTML"));          /* the message itself is text/html */
	assert_true(has(&h, "HTMLONLY"));
	assert_false(has(&h, "B64"));
	assert_false(has(&h, "EPI"));
	msg_free(&m);

	static const char *const ILLEGAL =
		"From: a@example.com\n"
		"Subject: x\n"
		"\n"
		"caf\xe9 &#x00E9;&#x00E9;&#x00E9; abc\n";
	msg_init(&m, ILLEGAL);
	msg_part(&m, "text/plain", "caf\xc3\xa9");
	run(rs, &m, ILLEGAL, &h);
	assert_true(has(&h, "FAKEASCII"));
	assert_true(has(&h, "UNICODE"));
	assert_false(has(&h, "NOSEP"));
	assert_false(has(&h, "HTML"));
	assert_false(has(&h, "MANONTEXT"));
	msg_free(&m);

	/* a boundary not followed by header fields; a part without separator */
	static const char *const BROKEN =
		"From: a@example.com\n"
		"Content-Type: multipart/mixed; boundary=B\n"
		"\n"
		"--B\n"
		"no header here\n"
		"--B\n"
		"Content-Type: text/plain\n"
		"body right after the header\n"
		"--B--\n";
	msg_init(&m, BROKEN);
	run(rs, &m, BROKEN, &h);
	assert_true(has(&h, "NOMIMEHDR"));
	assert_true(has(&h, "NOMIMESEP"));
	assert_false(has(&h, "EPI"));
	msg_free(&m);

	/* a header field longer than SpamAssassin keeps */
	char *longhdr = malloc(10000);
	strcpy(longhdr, "From: a@example.com\nX-Long: ");
	size_t l = strlen(longhdr);
	memset(longhdr + l, 'a', 9000);
	strcpy(longhdr + l + 9000, "\n\nbody\n");
	msg_init(&m, longhdr);
	run(rs, &m, longhdr, &h);
	assert_true(has(&h, "LONGHDR"));
	msg_free(&m);
	free(longhdr);
	rules_free(rs);

	/* ok_locales other than all: the charset tests are not loaded */
	rs = load("ok_locales en\nbody FARAWAY eval:check_for_faraway_charset()\n"
	          "header FARAWAYH eval:check_for_faraway_charset_in_headers()\n");
	assert_non_null(why_not_loaded(rs, "FARAWAY"));
	assert_non_null(why_not_loaded(rs, "FARAWAYH"));
	rules_free(rs);
}

static void test_mimeheader(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"mimeheader GIF_NAME Content-Type =~ /^image\\/gif; name=\"[a-z]\\.gif\"$/\n"
		"mimeheader GIF_RAW Content-Type:raw =~ /^image\\/gif;\\n\\tname=/s\n"
		"mimeheader ROOT_CT Content-Type =~ /multipart\\/mixed/\n"
		"mimeheader CTE_RAWWORD Content-Transfer-Encoding =~ /^raw$/\n"
		"mimeheader UNSET Content-Id =~ /^none$/ [if-unset: none]\n"
		"mimeheader ANY_IMG Content-Type =~ /\\bimage\\//i\n"
		"tflags ANY_IMG multiple\n"
		"mimeheader BADRE Content-Type =~ /(unclosed/\n"
		"meta META_OVER_MH GIF_NAME && ROOT_CT\n");
	const char *why = why_not_loaded(rs, "BADRE");
	assert_non_null(why);
	assert_non_null(strstr(why, "regular expression"));
	enum rule_kind k;
	int loaded = 0;
	for (size_t i = 0; i < rules_count(rs); i++) {
		const char *n = rules_info(rs, i, &k, &loaded, NULL);
		if (!strcmp(n, "GIF_NAME")) { assert_int_equal(k, RK_COUNT); assert_true(loaded); }  /* "other" type */
	}
	static const char *const MSG =
		"From: a@example.com\n"
		"Content-Type: multipart/mixed; boundary=B\n"
		"\n"
		"--B\n"
		"Content-Type: image/gif;\n"
		"\tname=\"x.gif\"\n"
		"Content-Transfer-Encoding: raw\n"
		"\n"
		"GIF89a\n"
		"--B\n"
		"Content-Type: image/png\n"
		"\n"
		"PNG\n"
		"--B--\n";
	struct msg m;
	struct hits h;
	msg_init(&m, MSG);
	run(rs, &m, MSG, &h);
	assert_true(has(&h, "GIF_NAME"));
	assert_true(has(&h, "GIF_RAW"));
	assert_true(has(&h, "ROOT_CT"));
	assert_true(has(&h, "CTE_RAWWORD"));
	assert_true(has(&h, "UNSET"));
	assert_true(has(&h, "ANY_IMG"));
	assert_true(has(&h, "META_OVER_MH"));
	msg_free(&m);

	static const char *const PLAIN = "From: a@example.com\nContent-Id: <x@y>\n\nhello\n";
	msg_init(&m, PLAIN);
	run(rs, &m, PLAIN, &h);
	assert_false(has(&h, "GIF_NAME"));
	assert_false(has(&h, "GIF_RAW"));
	assert_false(has(&h, "ROOT_CT"));
	assert_false(has(&h, "CTE_RAWWORD"));
	assert_false(has(&h, "UNSET"));
	assert_false(has(&h, "ANY_IMG"));
	msg_free(&m);
	rules_free(rs);
}

/* --- body ---------------------------------------------------------------------------- */

static void test_body_evals(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"body SHORT eval:check_body_length('20')\n"
		"body UPPER eval:check_for_uppercase('50', '100')\n"
		"body BLANKS eval:check_blank_line_ratio('50','100','4')\n"
		"body VERTICAL eval:tvd_vertical_words('50','100')\n"
		"body STOCK eval:check_stock_info('2')\n"
		"body MADIFF eval:multipart_alternative_difference('50', '100')\n"
		"body MADIFFC eval:multipart_alternative_difference_count('1.5', '1')\n");
	static const char *const SHORTMSG = "From: a@example.com\n\nhi\n";
	struct msg m;
	struct hits h;
	msg_init(&m, SHORTMSG);
	msg_body(&m, "\n");
	msg_body(&m, "hi\n");
	msg_part(&m, "text/plain", "hi\n");
	run(rs, &m, SHORTMSG, &h);
	assert_true(has(&h, "SHORT"));
	assert_false(has(&h, "UPPER"));
	assert_false(has(&h, "BLANKS"));       /* fewer than 4 lines */
	assert_false(has(&h, "VERTICAL"));
	assert_false(has(&h, "STOCK"));
	assert_false(has(&h, "MADIFF"));
	msg_free(&m);

	static const char *const LOUD = "From: a@example.com\n\nbody of more than twenty bytes\n";
	msg_init(&m, LOUD);
	msg_body(&m, "THIS IS A LOUD MESSAGE WRITTEN IN CAPITALS ALL THE WAY THROUGH, LOUD AND CLEAR, "
	             "SO THAT NOBODY CAN MISS IT; IT GOES ON AND ON FOR MORE THAN TWO HUNDRED CHARACTERS "
	             "WITH ONLY CAPITAL LETTERS AND SPACES IN IT.\n");
	msg_body(&m, "s p a c e d o u t\n");
	msg_part(&m, "text/plain",
	         "Company: ACME\nSymbol: ACMX\nCurrent Price: 0.10\n\n\n\n\n\n\n\n\nend\n");
	run(rs, &m, LOUD, &h);
	assert_false(has(&h, "SHORT"));
	assert_true(has(&h, "UPPER"));
	assert_true(has(&h, "BLANKS"));
	assert_true(has(&h, "VERTICAL"));
	assert_true(has(&h, "STOCK"));
	msg_free(&m);

	/* multipart/alternative whose HTML says something else than the text */
	static const char *const ALT =
		"From: a@example.com\n"
		"Content-Type: multipart/alternative; boundary=A\n"
		"\n"
		"--A\n"
		"Content-Type: text/plain\n"
		"\n"
		"hello\n"
		"--A\n"
		"Content-Type: text/html\n"
		"\n"
		"<p>buy cheap pills now</p>\n"
		"--A--\n";
	msg_init(&m, ALT);
	msg_part(&m, "text/plain", "hello\n");
	msg_part(&m, "text/html", "buy cheap pills now");
	run(rs, &m, ALT, &h);
	assert_true(has(&h, "MADIFF"));
	assert_false(has(&h, "MADIFFC"));      /* 1 text word for 4 html words */
	msg_free(&m);
	msg_init(&m, ALT);
	msg_part(&m, "text/plain", "buy cheap pills now and more words here\n");
	msg_part(&m, "text/html", "buy cheap pills now");
	run(rs, &m, ALT, &h);
	assert_false(has(&h, "MADIFF"));
	assert_true(has(&h, "MADIFFC"));
	msg_free(&m);
	rules_free(rs);
}

/* --- headers ----------------------------------------------------------------------- */

static void test_header_evals(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header LOCALPART eval:check_for_to_in_subject('user')\n"
		"header ADDRINSUBJ eval:check_for_to_in_subject('address')\n"
		"header BADMODE eval:check_for_to_in_subject('other')\n"
		"header CAPS eval:subject_is_all_caps()\n"
		"header RATNAME eval:check_ratware_name_id()\n"
		"header RATEFROM eval:check_ratware_envelope_from()\n"
		"header OUTLOOK eval:check_outlook_message_id()\n"
		"header TEMPLATE eval:check_unresolved_template()\n"
		"header SORTED eval:sorted_recipients()\n"
		"header SIMILAR eval:similar_recipients('0.5','undef')\n"
		"header ENVMATCH eval:check_for_matching_env_and_hdr_from()\n"
		"header DIFFDOM eval:check_equal_from_domains()\n"
		"header SUBJ8BIT eval:check_illegal_chars('Subject','0.05','2')\n"
		"header ALL8BIT eval:check_illegal_chars('ALL','0.001','2')\n");
	assert_non_null(why_not_loaded(rs, "BADMODE"));
	static const char *const SPAMMY =
		"From: \"Bob\" <abcdef@example.net>\n"
		"To: aa0@w.example\n"
		"Cc: aa1@x.example, aa2@x.example, aa3@y.example, aa4@y.example, aa5@z.example, aa6@z.example\n"
		"Subject: aa0, BUY NOW \xff\xfe CHEAP\n"
		"Message-Id: <ABCDEFGHIJKLMNOPQRSTUVWXYZAB.abcdef@example.net>\n"
		"X-Mailer: %MAILER_NAME\n"
		"Return-Path: <w.example.aa0@spammer.example>\n"
		"\n"
		"hello\n";
	struct msg m;
	struct hits h;
	msg_init(&m, SPAMMY);
	run(rs, &m, SPAMMY, &h);
	assert_true(has(&h, "LOCALPART"));
	assert_false(has(&h, "ADDRINSUBJ"));
	assert_false(has(&h, "CAPS"));          /* "aa" is lower case */
	assert_true(has(&h, "RATNAME"));
	assert_true(has(&h, "RATEFROM"));
	assert_true(has(&h, "TEMPLATE"));
	assert_true(has(&h, "SORTED"));
	assert_true(has(&h, "SIMILAR"));
	assert_false(has(&h, "ENVMATCH"));
	assert_true(has(&h, "DIFFDOM"));
	assert_true(has(&h, "SUBJ8BIT"));
	assert_true(has(&h, "ALL8BIT"));
	assert_false(has(&h, "OUTLOOK"));
	msg_free(&m);

	static const char *const HAM =
		"From: Joe <joe@mail.example.com>\n"
		"To: Ann <ann@example.org>\n"
		"Subject: MEETING NOTES FOR TUESDAY re: joe@example.org\n"
		"Date: Tue, 08 Oct 2002 12:27:26 +0000\n"
		"Message-Id: <000001c11ec5$5f8a1a40$0100a8c0@example>\n"
		"Return-Path: <joe@example.com>\n"
		"Received: from x by y; Tue, 08 Oct 2002 12:27:26 +0000\n"
		"\n"
		"hello\n";
	msg_init(&m, HAM);
	run(rs, &m, HAM, &h);
	assert_false(has(&h, "LOCALPART"));
	assert_false(has(&h, "ADDRINSUBJ"));
	assert_false(has(&h, "CAPS"));          /* an address: lower case letters */
	assert_false(has(&h, "RATNAME"));
	assert_false(has(&h, "RATEFROM"));
	assert_false(has(&h, "TEMPLATE"));
	assert_false(has(&h, "SORTED"));
	assert_false(has(&h, "SIMILAR"));
	assert_false(has(&h, "ENVMATCH"));      /* joe@example.com vs joe@mail.example.com */
	assert_false(has(&h, "DIFFDOM"));       /* same last two labels */
	assert_false(has(&h, "SUBJ8BIT"));
	assert_false(has(&h, "ALL8BIT"));
	assert_true(has(&h, "OUTLOOK"));        /* its time stamp is far from 2002 */
	msg_free(&m);

	/* the stamp far from the Date but near the last Received line's date
	 * (8 Oct 2002 12:27:26 UTC gives 01c26ec6) is not forged */
	static const char *const OUTLOOK_RCVD =
		"From: Joe <joe@mail.example.com>\n"
		"To: Ann <ann@example.org>\n"
		"Date: Fri, 01 Jan 2010 00:00:00 +0000\n"
		"Message-Id: <000001c26ec6$5f8a1a40$0100a8c0@example>\n"
		"Received: from a by b; Fri, 01 Jan 2010 00:00:00 +0000\n"
		"Received: from x by y; Tue, 08 Oct 2002 12:27:26 +0000\n"
		"\n"
		"hello\n";
	msg_init(&m, OUTLOOK_RCVD);
	run(rs, &m, OUTLOOK_RCVD, &h);
	assert_false(has(&h, "OUTLOOK"));
	msg_free(&m);

	static const char *const CAPSMSG =
		"From: joe@example.com\n"
		"To: ann@example.org\n"
		"Subject: Re: FREE MONEY FOR YOU, ANN@EXAMPLE.ORG\n"
		"Message-Id: <2f5b4e31$1c2c8e80$0100a8c0@example>\n"
		"Return-Path: <joe@example.com>\n"
		"\n"
		"hello\n";
	msg_init(&m, CAPSMSG);
	run(rs, &m, CAPSMSG, &h);
	assert_true(has(&h, "CAPS"));
	assert_true(has(&h, "ADDRINSUBJ"));
	assert_false(has(&h, "LOCALPART"));
	assert_true(has(&h, "ENVMATCH"));
	assert_false(has(&h, "DIFFDOM"));
	assert_false(has(&h, "OUTLOOK"));       /* not Outlook's form */
	msg_free(&m);

	/* the envelope sender from the SMTP transaction wins over Return-Path */
	msg_init(&m, CAPSMSG);
	m.mail_from = "bounce@other.example";
	run(rs, &m, CAPSMSG, &h);
	assert_false(has(&h, "ENVMATCH"));
	assert_true(has(&h, "DIFFDOM"));
	msg_free(&m);

	static const char *const UTF8 =
		"From: joe@example.com\n"
		"Subject: caf\xc3\xa9 cr\xc3\xa8me\n"
		"To: ann@example.com\n"
		"Subject2: ann\n"
		"\n"
		"x\n";
	msg_init(&m, UTF8);
	run(rs, &m, UTF8, &h);
	assert_false(has(&h, "SUBJ8BIT"));      /* valid UTF-8 */
	msg_free(&m);
	rules_free(rs);
}

/* a hostile message: deep nesting and many parts stay bounded */
static void test_hostile(void **st)
{
	(void)st;
	struct ruleset *rs = load("body LIMIT eval:check_for_mime('mimepart_limit_exceeded')\n"
	                          "body EPI eval:check_msg_parse_flags('mime_epilogue_exists')\n");
	size_t cap = 4 << 20, o = 0;
	char *msg = malloc(cap);
	o += (size_t)snprintf(msg + o, cap - o, "From: a@example.com\nContent-Type: multipart/mixed; boundary=b0\n\n");
	for (int i = 0; i < 1200; i++)
		o += (size_t)snprintf(msg + o, cap - o, "--b0\nContent-Type: text/plain\n\nx\n");
	/* and nesting far deeper than is walked */
	for (int d = 0; d < 60; d++)
		o += (size_t)snprintf(msg + o, cap - o, "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n", d, d + 1);
	struct msg m;
	struct hits h;
	msg_init(&m, msg);
	run(rs, &m, msg, &h);
	assert_true(has(&h, "LIMIT"));
	msg_free(&m);
	free(msg);
	rules_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mime_structure),
		cmocka_unit_test(test_mimeheader),
		cmocka_unit_test(test_body_evals),
		cmocka_unit_test(test_header_evals),
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
