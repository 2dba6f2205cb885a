/* test_mime.c - the shared MIME parse (filters/mime.c): the parts tree
 * flattened depth-first, decoded content, charsets to UTF-8, RFC 2231 and
 * RFC 2047 filenames, nested message/rfc822, HTML rendered to visible text,
 * URIs from text and HTML (deduplicated), one parse shared by every filter
 * of a message, and hostile structures (no boundary, garbage, deep nesting,
 * too many parts) giving parse_error without a crash. */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <glib.h>

#include "filters/filter_api.h"
#include "filters/mime.h"
#include "filters/mime_base64.h"
#include "filters/mime_qp.h"

static struct mime_msg *parse(const char *s)
{
	return mime_parse((const unsigned char *)s, strlen(s));
}

static const struct mime_part *find_type(const struct mime_msg *m, const char *type, size_t nth)
{
	size_t i;

	for (i = 0; i < m->nparts; i++)
		if (strcmp(m->parts[i].content_type, type) == 0 && nth-- == 0)
			return &m->parts[i];
	return NULL;
}

static int has_uri(const struct mime_msg *m, const char *u)
{
	size_t i, n = 0;

	for (i = 0; i < m->nuris; i++)
		if (strcmp(m->uris[i], u) == 0)
			n++;
	return (int)n;
}

/* kind_of - the kind mime_parse gave u, or -1 */
static int kind_of(const struct mime_msg *m, const char *u)
{
	for (size_t i = 0; i < m->nuris; i++)
		if (strcmp(m->uris[i], u) == 0)
			return m->uri_kinds[i];
	return -1;
}

static const char big_msg[] =
	"From: a@example.org\r\n"
	"To: b@example.org\r\n"
	"Subject: test\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"OUTER\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--OUTER\r\n"
	"Content-Type: multipart/alternative; boundary=\"ALT\"\r\n"
	"\r\n"
	"--ALT\r\n"
	"Content-Type: text/plain; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"Caf=E9 cr=E8me, see http://example.com/a. and www.example.net/x,\r\n"
	"again http://example.com/a\r\n"
	"--ALT\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"%s\r\n"
	"--ALT--\r\n"
	"--OUTER\r\n"
	"Content-Type: application/pdf; name=\"=?UTF-8?B?UmVjaG51bmcgw6Qu?= =?UTF-8?B?cGRm?=\"\r\n"
	"Content-Disposition: attachment\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"JVBERi0xLjQK\r\n"
	"--OUTER\r\n"
	"Content-Type: application/octet-stream\r\n"
	"Content-Disposition: attachment; filename*=UTF-8''%%E2%%82%%AC%%20invoice.pdf.exe\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"TVqQAAMAAAAEAAAA\r\n"
	"--OUTER\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"From: c@example.org\r\n"
	"Subject: inner\r\n"
	"Content-Type: multipart/mixed; boundary=\"IN\"\r\n"
	"\r\n"
	"--IN\r\n"
	"Content-Type: text/plain; charset=koi8-r\r\n"
	"Content-Transfer-Encoding: 8bit\r\n"
	"\r\n"
	"\xf0\xd2\xc9\xd7\xc5\xd4\r\n"
	"--IN\r\n"
	"Content-Type: application/x-msdownload; name=\"setup.exe\"\r\n"
	"Content-Disposition: attachment; filename=\"setup.exe\"\r\n"
	"\r\n"
	"MZ\r\n"
	"--IN--\r\n"
	"\r\n"
	"--OUTER--\r\n";

static const char html_src[] =
	"<html><head><title>Hidden title</title><style>p{color:red}</style>"
	"<script>var x = '<b>no</b>';</script></head>"
	"<body><p>Hello&nbsp;&amp; <b>w</b>orld&#33; &eacute;t&#xE9;</p>"
	"<!-- a comment <p>not shown</p> -->"
	"<div>Line   two</div><a href=\"http://phish.example/login?a=1&amp;b=2\">click</a>"
	"<img src='https://img.example/p.gif'><a href=\"#top\">top</a>"
	"<a href=\"mailto:x@example.org\">mail</a> 5 &lt; 6 &bogus; a<b"
	"</body></html>";

static struct mime_msg *parse_big(void)
{
	gchar *b64 = g_base64_encode((const guchar *)html_src, strlen(html_src));
	gchar *s = g_strdup_printf(big_msg, b64);
	struct mime_msg *m = parse(s);

	g_free(b64);
	g_free(s);
	return m;
}

static void test_tree(void **state)
{
	struct mime_msg *m = parse_big();
	const struct mime_part *p;

	(void)state;
	assert_int_equal(m->parse_error, 0);
	assert_int_equal(m->nparts, 6);
	/* depth-first order, multiparts not listed */
	assert_string_equal(m->parts[0].content_type, "text/plain");
	assert_string_equal(m->parts[1].content_type, "text/html");
	assert_string_equal(m->parts[2].content_type, "application/pdf");
	assert_string_equal(m->parts[3].content_type, "application/octet-stream");
	assert_string_equal(m->parts[4].content_type, "text/plain");
	assert_string_equal(m->parts[5].content_type, "application/x-msdownload");
	assert_int_equal(m->parts[0].depth, 0);
	assert_int_equal(m->parts[3].depth, 0);
	/* nested message/rfc822: its parts follow with depth + 1 */
	assert_int_equal(m->parts[4].depth, 1);
	assert_int_equal(m->parts[5].depth, 1);
	assert_string_equal(m->parts[5].filename, "setup.exe");
	assert_string_equal(m->parts[5].disposition, "attachment");
	assert_true(m->parts[0].is_text);
	assert_false(m->parts[0].is_html);
	assert_true(m->parts[1].is_text && m->parts[1].is_html);
	assert_false(m->parts[2].is_text);

	for (size_t i = 0; i < m->nparts; i++) {
		assert_int_equal(m->parts[i].data[m->parts[i].len], 0);
		assert_int_equal(m->parts[i].raw[m->parts[i].raw_len], 0);
	}
	/* decoded content: base64 removed */
	p = &m->parts[3];
	assert_int_equal(p->len, 12);
	assert_memory_equal(p->data, "MZ\x90\0\x03\0\0\0\x04\0\0\0", 12);
	p = &m->parts[2];
	assert_int_equal(p->len, 9);
	assert_memory_equal(p->data, "%PDF-1.4\n", 9);
	mime_free(m);
}

/* the messages of a parse: the message itself, then each message/rfc822
 * descended into, with where its header starts in the bytes parsed (the
 * antivirus reads those bytes as its engine meets them) and which message
 * each leaf is in; an encoded message/rfc822 is a leaf, no message */
static void test_messages(void **state)
{
	static const char s[] =
		"From: a@example.org\r\n"
		"Content-Type: multipart/mixed; boundary=\"O\"\r\n"
		"\r\n"
		"--O\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"top\r\n"
		"--O\r\n"
		"Content-Type: message/rfc822\r\n"
		"Content-Disposition: attachment; filename=\"fwd.eml\"\r\n"
		"\r\n"
		"SUBJECT: one\r\n"
		"CONTENT-TYPE: multipart/mixed; boundary=\"I\"\r\n"
		"\r\n"
		"--I\r\n"
		"Content-Type: message/rfc822\r\n"
		"\r\n"
		"x-first: two\r\n"
		"\r\n"
		"deepest\r\n"
		"--I\r\n"
		"Content-Type: application/octet-stream\r\n"
		"\r\n"
		"in one\r\n"
		"--I--\r\n"
		"--O\r\n"
		"Content-Type: message/rfc822\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"\r\n"
		"U3ViamVjdDogZW5jb2RlZA0KDQpib2R5DQo=\r\n"
		"--O--\r\n";
	struct mime_msg *m = parse(s);

	(void)state;
	assert_int_equal(m->parse_error, 0);
	assert_int_equal(m->nmsgs, 3);
	assert_int_equal(m->msgs[0].offset, 0);
	assert_int_equal(m->msgs[0].depth, 0);
	assert_null(m->msgs[0].filename);
	assert_int_equal(m->msgs[1].parent, 0);
	assert_int_equal(m->msgs[1].depth, 1);
	assert_string_equal(m->msgs[1].filename, "fwd.eml");
	assert_true(strncmp(s + m->msgs[1].offset, "SUBJECT: one\r\n", 14) == 0);
	assert_int_equal(m->msgs[2].parent, 1);
	assert_int_equal(m->msgs[2].depth, 2);
	assert_null(m->msgs[2].filename);
	assert_true(strncmp(s + m->msgs[2].offset, "x-first: two\r\n", 14) == 0);
	assert_int_equal(m->nparts, 4);
	assert_int_equal(m->parts[0].msg, 0);
	assert_string_equal((const char *)m->parts[1].data, "deepest");
	assert_int_equal(m->parts[1].msg, 2);
	assert_string_equal((const char *)m->parts[2].data, "in one");
	assert_int_equal(m->parts[2].msg, 1);
	assert_string_equal(m->parts[3].content_type, "message/rfc822");
	assert_int_equal(m->parts[3].msg, 0);
	mime_free(m);
	/* one that does not parse still has the message itself */
	m = mime_parse((const unsigned char *)"", 0);
	assert_int_equal(m->nmsgs, 1);
	assert_int_equal(m->msgs[0].offset, 0);
	mime_free(m);
}

static void test_filenames(void **state)
{
	struct mime_msg *m = parse_big();

	(void)state;
	/* RFC 2047 encoded-words in the name parameter */
	assert_string_equal(m->parts[2].filename, "Rechnung \xc3\xa4.pdf");
	/* RFC 2231 charset'lang'percent-encoding */
	assert_string_equal(m->parts[3].filename, "\xe2\x82\xac invoice.pdf.exe");
	assert_null(m->parts[0].filename);
	mime_free(m);
}

/* names: every filename= and name= value, filename first, duplicates once */
static void test_all_names(void **state)
{
	struct mime_msg *m = parse(
	    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
	    "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
	    "--b\r\nContent-Type: application/octet-stream; name=\"evil.exe\"\r\n"
	    "Content-Disposition: attachment; filename=\"doc.pdf\"; filename*=UTF-8''b%C3%A4d.scr;"
	    " filename=\"doc.pdf\"\r\n\r\nx\r\n"
	    "--b--\r\n");

	(void)state;
	assert_int_equal(m->nparts, 2);
	assert_null(m->parts[0].names);
	assert_non_null(m->parts[1].names);
	assert_string_equal(m->parts[1].names[0], m->parts[1].filename);
	assert_string_equal(m->parts[1].names[0], "doc.pdf");
	/* then the fields' names as the fields come */
	assert_string_equal(m->parts[1].names[1], "evil.exe");
	assert_string_equal(m->parts[1].names[2], "b\xc3\xa4" "d.scr");
	assert_null(m->parts[1].names[3]);
	assert_int_equal(m->parts[1].names_truncated, 0);
	mime_free(m);
}

/* a Content-Disposition or Content-Type field given twice: GMime keeps
 * the last one, mail programs may use the first; every field's names are
 * read, every field's type listed, and declared_type is of the field
 * content_type comes from */
static void test_repeated_fields(void **state)
{
	struct mime_msg *m = parse(
	    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
	    "--b\r\nContent-Type: application/x-msdownload; name=\"a.exe\"\r\n"
	    "Content-Disposition: attachment; filename=\"b.scr\"\r\n"
	    "Content-Type: text/plain; name=\"c.txt\"\r\n"
	    "Content-Disposition: attachment;\r\n filename=\"d.txt\"\r\n\r\nx\r\n"
	    "--b--\r\n");
	const struct mime_part *p;

	(void)state;
	assert_int_equal(m->nparts, 1);
	p = &m->parts[0];
	assert_string_equal(p->content_type, "text/plain");
	assert_string_equal(p->declared_type, "text/plain");
	assert_non_null(p->types);
	assert_string_equal(p->types[0], "application/x-msdownload");
	assert_string_equal(p->types[1], "text/plain");
	assert_null(p->types[2]);
	assert_string_equal(p->names[0], "d.txt");
	assert_string_equal(p->names[1], "a.exe");
	assert_string_equal(p->names[2], "b.scr");
	assert_string_equal(p->names[3], "c.txt");
	assert_null(p->names[4]);
	mime_free(m);
}

/* names past the bounds (64 distinct, 16 fields) are said, not dropped */
static void test_many_names(void **state)
{
	GString *s = g_string_new("Content-Type: application/octet-stream; name=\"x.exe\"\r\n"
	    "Content-Disposition: attachment");
	struct mime_msg *m;
	int i;

	(void)state;
	for (i = 0; i < 63; i++)
		g_string_append_printf(s, "; filename=\"f%02d.txt\"", i);
	g_string_append(s, "\r\n\r\nx\r\n");
	m = parse(s->str);
	assert_int_equal(m->parts[0].names_truncated, 0);
	for (i = 0; m->parts[0].names[i] != NULL; i++)
		;
	assert_int_equal(i, 64);
	assert_string_equal(m->parts[0].names[1], "x.exe");
	mime_free(m);
	g_string_free(s, TRUE);

	s = g_string_new("Content-Type: application/octet-stream\r\nContent-Disposition: attachment");
	for (i = 0; i < 65; i++)
		g_string_append_printf(s, "; filename=\"f%02d.txt\"", i);
	g_string_append(s, "\r\n\r\nx\r\n");
	m = parse(s->str);
	assert_int_equal(m->parts[0].names_truncated, 1);
	mime_free(m);
	g_string_free(s, TRUE);

	s = g_string_new("");
	for (i = 0; i < 17; i++)
		g_string_append(s, "Content-Disposition: attachment; filename=\"a.txt\"\r\n");
	g_string_append(s, "\r\nx\r\n");
	m = parse(s->str);
	assert_int_equal(m->parts[0].names_truncated, 1);
	mime_free(m);
	g_string_free(s, TRUE);
}

static void test_charsets(void **state)
{
	struct mime_msg *m = parse_big();
	const struct mime_part *p;

	(void)state;
	/* quoted-printable iso-8859-1 -> UTF-8 */
	p = &m->parts[0];
	assert_non_null(strstr((const char *)p->data, "Caf\xc3\xa9 cr\xc3\xa8me"));
	assert_int_equal(strlen((const char *)p->data), p->len);
	/* the bytes as sent stay available (file type detection) */
	assert_ptr_not_equal(p->raw, p->data);
	assert_memory_equal(p->raw, "Caf\xe9 cr\xe8me", 10);
	/* unchanged by conversion: the same buffer */
	assert_ptr_equal(m->parts[3].raw, m->parts[3].data);
	/* 8bit koi8-r in the nested message -> UTF-8 (Cyrillic "Привет") */
	p = &m->parts[4];
	assert_non_null(strstr((const char *)p->data,
	    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"));
	/* the declared charset and transfer encoding of each part (rules' evals) */
	assert_string_equal(m->parts[0].charset, "iso-8859-1");
	assert_string_equal(m->parts[0].encoding, "quoted-printable");
	assert_string_equal(m->parts[1].charset, "utf-8");
	assert_string_equal(m->parts[1].encoding, "base64");
	assert_null(m->parts[2].charset);
	assert_string_equal(p->charset, "koi8-r");
	assert_string_equal(p->encoding, "8bit");
	assert_null(m->parts[5].encoding);
	mime_free(m);
}

static void test_html_rendered(void **state)
{
	struct mime_msg *m = parse_big();
	const struct mime_part *p = find_type(m, "text/html", 0);

	(void)state;
	assert_non_null(p);
	assert_non_null(p->rendered);
	assert_int_equal(strlen(p->rendered), p->rendered_len);
	/* the raw HTML stays in data */
	assert_non_null(strstr((const char *)p->data, "<script>"));
	assert_string_equal(p->rendered,
	    "Hello & world! \xc3\xa9t\xc3\xa9\nLine two\nclick topmail 5 < 6 &bogus; a");
	assert_null(m->parts[0].rendered);
	mime_free(m);
}

static void test_uris(void **state)
{
	struct mime_msg *m = parse_big();

	(void)state;
	/* bare URIs in text, trailing punctuation cut, www. given a scheme */
	assert_int_equal(has_uri(m, "http://example.com/a"), 1);   /* twice in text: once */
	assert_int_equal(has_uri(m, "http://www.example.net/x"), 1);
	/* href/src of HTML, entities decoded; anchors left out */
	assert_int_equal(has_uri(m, "http://phish.example/login?a=1&b=2"), 1);
	assert_int_equal(has_uri(m, "https://img.example/p.gif"), 1);
	assert_int_equal(has_uri(m, "mailto:x@example.org"), 1);
	assert_int_equal(has_uri(m, "#top"), 0);
	assert_int_equal(m->nuris, 5);
	mime_free(m);
}

/* text_msg - a one-part message of type ctype with body b */
static struct mime_msg *text_msg(const char *ctype, const char *b)
{
	gchar *s = g_strdup_printf("From: a@example.org\r\nTo: b@example.org\r\nSubject: t\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: %s\r\n\r\n%s\r\n", ctype, b);
	struct mime_msg *m = parse(s);

	g_free(s);
	return m;
}

/* schemeless hosts and bare mail addresses in text are URIs, as
 * SpamAssassin takes them (http://host/path, mailto:addr), when their
 * top-level domain is a real one */
static void test_bare_uris(void **state)
{
	static const char *const taken[] = {
		"http://spammer.com/offer", "mailto:sales@spammer.net", "http://shop.example.co.uk",
		"http://spammer.org:8080/x", "ftp://ftp.files.com", "http://WWW2.Promo.Info",
		"http://end.com", "http://paren.com", "http://comma.com",
		"mailto:john.info@spammer.net", "http://after-at.com",
		/* .md (Moldova), .py (Paraguay), .zip are real: SpamAssassin takes them too */
		"http://readme.md", "http://setup.py", "http://archive.zip",
	};
	static const char *const not_taken[] = {
		"http://file.txt", "http://e.g", "http://e.g.", "http://i.e", "http://1.2.3",
		"http://index.html", "http://foo.exe", "http://192.168.0.1", "http://node.js",
		"http://v2.0", "http://john.info", "mailto:x@y.zz", "http://y.zz", "http://a.b",
		"http://under_score.com", "http://-dash.com", "http://x.com.", "http://sub.file.txt",
		"http://glued.com", "http://mid%2e.com", "http://www.x.com", "http://foo.local",
	};
	struct mime_msg *m = text_msg("text/plain",
	    "visit spammer.com/offer today, mail sales@spammer.net or (see shop.example.co.uk)\r\n"
	    "port spammer.org:8080/x. ftp.files.com WWW2.Promo.Info and end.com.\r\n"
	    "(paren.com) comma.com, john.info@spammer.net @after-at.com readme.md setup.py archive.zip\r\n"
	    "file.txt e.g. i.e. version 1.2.3 index.html foo.exe 192.168.0.1 node.js v2.0 x@y.zz a.b\r\n"
	    "under_score.com -dash.com sub.file.txt/ xglued.com%glued.com mid%2e.com foo.local\r\n"
	    "http://www.x.com/real");
	struct mime_msg *h;

	(void)state;
	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
		if (has_uri(m, taken[i]) != 1)
			fail_msg("%s not taken", taken[i]);
	for (size_t i = 0; i < sizeof(not_taken) / sizeof(not_taken[0]); i++)
		if (has_uri(m, not_taken[i]) != 0)
			fail_msg("%s taken", not_taken[i]);
	assert_int_equal(kind_of(m, "http://spammer.com/offer"), MIME_URI_TEXT);
	assert_int_equal(has_uri(m, "http://www.x.com/real"), 1);
	assert_false(m->bare_stopped);
	mime_free(m);
	/* in an HTML part's rendered text too, never in its markup */
	h = text_msg("text/html", "<p title=\"attr.com\">call deals.biz or <b>x@shop.net</b></p>"
	    "<a href=\"http://link.example/\">link.org</a>");
	assert_int_equal(has_uri(h, "http://deals.biz"), 1);
	assert_int_equal(has_uri(h, "mailto:x@shop.net"), 1);
	assert_int_equal(has_uri(h, "http://link.org"), 1);
	assert_int_equal(has_uri(h, "http://attr.com"), 0);
	assert_int_equal(kind_of(h, "http://link.example/"), MIME_URI_ANCHOR);
	mime_free(h);
}

/* the search is bounded: words that cannot be a host ("1.2.3", "a.b")
 * cost no lookup and leave it whole; past MIME_MAX_BARE_LOOKS plausible
 * ones it stops and says so, however big the text part */
static void test_bare_uris_bounded(void **state)
{
	GString *g = g_string_new(NULL);
	struct mime_msg *m;
	gint64 t0;

	(void)state;
	for (int i = 0; i < 300000; i++)
		g_string_append_printf(g, "%d.%d.%d a.b ", i, i % 7, i % 3);
	g_string_append(g, "then spammer.com/offer\r\n");
	t0 = g_get_monotonic_time();
	m = text_msg("text/plain", g->str);
	assert_int_equal(has_uri(m, "http://spammer.com/offer"), 1);
	assert_false(m->bare_stopped);
	mime_free(m);
	g_string_truncate(g, 0);
	for (int i = 0; i < 2 * MIME_MAX_BARE_LOOKS; i++)
		g_string_append_printf(g, "w%d.txt u%d@clean%d.com ", i, i, i % 50);
	g_string_append(g, "then spammer.com/offer\r\n");
	m = text_msg("text/plain", g->str);
	assert_true(m->bare_stopped);
	assert_int_equal(has_uri(m, "http://spammer.com/offer"), 0);   /* past the bound */
	assert_true(m->nuris <= 2 * MIME_MAX_URIS);
	mime_free(m);
	/* about 6 MB of text: well under a second even instrumented */
	assert_true(g_get_monotonic_time() - t0 < 5 * G_USEC_PER_SEC);
	g_string_free(g, TRUE);
}

/* bare_cpu - CPU seconds a child took to parse a text/plain part of one
 * word: unit repeated to about bytes (then " end"), or -1 when it did not
 * finish within limit seconds of CPU (RLIMIT_CPU: a quadratic search
 * fails the test in seconds, not in the minutes it would take) */
static double bare_cpu(const char *unit, size_t bytes, int limit)
{
	struct rusage ru;
	pid_t pid;
	int st;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit lim = { (rlim_t)limit, (rlim_t)limit + 1 };
		GString *g = g_string_sized_new(bytes + 16);
		struct mime_msg *m;

		if (setrlimit(RLIMIT_CPU, &lim) < 0)
			_exit(90);
		while (g->len < bytes)
			g_string_append(g, unit);
		g_string_append(g, " end");
		m = text_msg("text/plain", g->str);
		_exit(m != NULL ? 0 : 91);
	}
	assert_int_equal(wait4(pid, &st, 0, &ru), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* the search is linear in the length of a word, whatever the word: a
 * host whose top-level domain is no real one ("a.zz/a.zz/...") had its
 * path read to the end of the word, and '/' starts a word, so a 512 KB
 * word took 106 s of CPU (1 MB: minutes); linear, 1 MB is some 0.05 s
 * (under the sanitizers some 0.5 s).  Each shape within 3 s of CPU. */
static void test_bare_uris_linear(void **state)
{
	static const char *const shapes[] = {
		"a.zz/", "a.zz:1/", "file.txt/", "a.com/", "a.com/x.zz/", "a.co.uk:80/",
		".", "x.", "@", "a@", "a.com@", "a@b.zz/", "(a.zz)", "a.com,",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		double cpu = bare_cpu(shapes[i], 1u << 20, 10);

		if (cpu < 0 || cpu > 3.0)
			fail_msg("1 MB word of \"%s\": %s %.2f s of CPU", shapes[i],
			    cpu < 0 ? "killed after" : "took", cpu < 0 ? 10.0 : cpu);
	}
}

/* a path is read at most until the URI is MIME_MAX_URI_LEN long with its
 * scheme: the URI is cut there (at a character's start: it stays UTF-8)
 * so its host is still asked about, and the rest of the word is text of
 * its own, as SpamAssassin's 2048-byte body pieces read it; '/' starts
 * a word as it does to SpamAssassin ("/etc/postfix/main.cf": main.cf) */
static void test_bare_uris_long_path(void **state)
{
	GString *g = g_string_new("see long.com/");
	struct mime_msg *m;
	char *want;
	size_t x;

	(void)state;
	g_string_append_printf(g, "%0*d/b.com/yyy and utf8.com/", 5000, 0);
	/* "é" (2 bytes) across the cut: 7 + 9 + 2031 bytes then it */
	x = g->len;
	for (int i = 0; i < 2031; i++)
		g_string_append_c(g, 'x');
	g_string_append(g, "\xc3\xa9tail edit /etc/postfix/main.cf now");
	m = text_msg("text/plain; charset=utf-8", g->str);
	want = g_strdup_printf("http://long.com/%0*d", MIME_MAX_URI_LEN - 16, 0);
	assert_int_equal(has_uri(m, want), 1);
	assert_int_equal(has_uri(m, "http://b.com/yyy"), 1);
	g_free(want);
	want = g_strdup_printf("http://utf8.com/%.*s", 2031, g->str + x);
	assert_int_equal(has_uri(m, want), 1);
	assert_int_equal(has_uri(m, "http://main.cf"), 1);
	for (size_t i = 0; i < m->nuris; i++)
		assert_true(strlen(m->uris[i]) <= MIME_MAX_URI_LEN);
	g_free(want);
	mime_free(m);
	g_string_free(g, TRUE);
}

/* each URI's kind (what blocklist lookups are ordered by): an image or
 * text URI that is also a link is a link; a form's action, a background */
static void test_uri_kinds(void **state)
{
	static const char msg[] =
		"From: a@example.org\r\nTo: b@example.org\r\nSubject: k\r\n"
		"MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n"
		"<html><body background=\"http://bg.example/b.gif\">"
		"<img src=\"http://img.example/p.gif\"><img src=\"http://both.example/\">"
		"<link href=\"http://css.example/s.css\"><iframe src=\"http://frame.example/\"></iframe>"
		"<form action=\"http://form.example/post\"><input type=image src=\"http://btn.example/b.png\"></form>"
		"see http://text.example/ and "
		"<A HREF=\"http://both.example/\">x</A><area href=\"http://area.example/\">"
		"</body></html>\r\n";
	struct mime_msg *m = mime_parse((const unsigned char *)msg, sizeof msg - 1);

	(void)state;
	assert_int_equal(kind_of(m, "http://bg.example/b.gif"), MIME_URI_IMAGE);
	assert_int_equal(kind_of(m, "http://img.example/p.gif"), MIME_URI_IMAGE);
	assert_int_equal(kind_of(m, "http://btn.example/b.png"), MIME_URI_IMAGE);
	assert_int_equal(kind_of(m, "http://both.example/"), MIME_URI_ANCHOR);
	assert_int_equal(kind_of(m, "http://area.example/"), MIME_URI_ANCHOR);
	assert_int_equal(kind_of(m, "http://css.example/s.css"), MIME_URI_OTHER);
	assert_int_equal(kind_of(m, "http://frame.example/"), MIME_URI_OTHER);
	assert_int_equal(kind_of(m, "http://form.example/post"), MIME_URI_FORM);
	assert_int_equal(kind_of(m, "http://text.example/"), MIME_URI_TEXT);
	mime_free(m);
}

/* uri_decoys - an HTML message: n decoys (fmt: one %d) then what */
static struct mime_msg *uri_decoys(const char *fmt, int n, const char *what)
{
	GString *g = g_string_new("From: a@example.org\r\nTo: b@example.org\r\nSubject: d\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<html><body>");
	struct mime_msg *m;

	for (int i = 0; i < n; i++) {
		char num[16];
		const char *at = strstr(fmt, "%d");

		/* fmt is one of ours; %d spelled out so the format stays literal */
		snprintf(num, sizeof(num), "%d", i);
		g_string_append_len(g, fmt, at - fmt);
		g_string_append(g, num);
		g_string_append(g, at + 2);
	}
	g_string_append_printf(g, "%s</body></html>\r\n", what);
	m = mime_parse((const unsigned char *)g->str, g->len);
	g_string_free(g, TRUE);
	return m;
}

/* the URI caps let no decoys crowd a link out: 1000 text URIs or images
 * of one clean domain before it took all MIME_MAX_URIS (the link was in
 * no URI list); links of one domain leave room for links of new domains */
static void test_uri_decoys_keep_links(void **state)
{
	static const char *const decoys[] = {
		"http://news.clean.example/a/%d ",                          /* text */
		"<img src=\"http://cdn.clean.example/%d.gif\" width=1>",     /* images */
		"<img src=\"http://img%d.clean.example/p.gif\">",            /* one domain, many hosts */
		"<a href=\"http://www.clean.example/%d\">x</a>",              /* links of one domain */
		"<a href=\"http://WWW.CLEAN.EXAMPLE%2F%d\">x</a>",           /* ... written otherwise */
		"<a href=\"http://u%d%40www.clean.example/\">x</a>",
		"<a href=\"http://x%d\xe3\x80\x82" "clean.example/\">x</a>",   /* U+3002 for the dot */
		"<a href=\"http://www.clean.exa\nmple/%d\">x</a>",
		"clean%d.com ",                                              /* bare hosts in text */
		"u%d@clean.com ",                                            /* bare addresses */
	};
	struct mime_msg *m;

	(void)state;
	for (size_t i = 0; i < sizeof(decoys) / sizeof(decoys[0]); i++) {
		m = uri_decoys(decoys[i], 3000, "<a href=\"http://spammer.example/buy\">buy</a>");
		if (kind_of(m, "http://spammer.example/buy") != MIME_URI_ANCHOR)
			fail_msg("decoys %s: the link after them was dropped", decoys[i]);
		assert_true(m->uris_truncated);
		assert_true(m->uris_dropped > 0);
		assert_false(m->parse_error);
		assert_true(m->nuris <= 2 * MIME_MAX_URIS);
		mime_free(m);
	}
	/* under the caps nothing is dropped nor said */
	m = uri_decoys("<img src=\"http://cdn.clean.example/%d.gif\">", 800,
	    "<a href=\"http://spammer.example/buy\">buy</a>");
	assert_int_equal(m->nuris, 801);
	assert_false(m->uris_truncated);
	mime_free(m);
	/* an image of a new domain still finds room past one domain's 900 */
	m = uri_decoys("<img src=\"http://cdn.clean.example/%d.gif\">", 3000,
	    "<img src=\"http://tracker.example/t.gif\">");
	assert_int_equal(kind_of(m, "http://tracker.example/t.gif"), MIME_URI_IMAGE);
	mime_free(m);
}

static void test_render_cases(void **state)
{
	static const struct {
		const char *html, *text;
	} cases[] = {
		{ "a<br>b", "a\nb" },
		{ "<p>one</p><p>two</p>", "one\ntwo" },
		{ "x &#8364; &#x20AC; &euro; &copy", "x \xe2\x82\xac \xe2\x82\xac \xe2\x82\xac \xc2\xa9" },
		{ "<table><tr><td>a</td><td>b</td></tr></table>", "a b" },
		{ "no <tags> here < 3", "no here < 3" },
		{ "<SCRIPT type=x>alert(1)</SCRIPT >visible", "visible" },
		{ "unterminated <!-- comment", "unterminated" },
		{ "&#0; &#xD800; &#99999999;", "\xef\xbf\xbd \xef\xbf\xbd \xef\xbf\xbd" },
		{ "<a title='x>y'>z</a>", "z" },
		{ "", "" },
	};
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *r = mime_html_render(cases[i].html, strlen(cases[i].html), &n);

		assert_string_equal(r, cases[i].text);
		assert_int_equal(n, strlen(cases[i].text));
		g_free(r);
	}
}

/* one parse per message, shared by every filter's ctx, freed with it */
static void test_shared(void **state)
{
	static const char msg[] = "Subject: x\r\n\r\nsee https://a.example/\r\n";
	struct msgscan ms;
	struct mw_ctx c1, c2;
	const struct mime_msg *a, *b;

	(void)state;
	memset(&ms, 0, sizeof(ms));
	ms.msg = (const unsigned char *)msg;
	ms.len = sizeof(msg) - 1;
	memset(&c1, 0, sizeof(c1));
	memset(&c2, 0, sizeof(c2));
	c1.ms = c2.ms = &ms;
	a = mime_get(&c1);
	b = mime_get(&c2);
	assert_ptr_equal(a, b);
	assert_ptr_equal(ms.mime, a);
	assert_int_equal(a->nparts, 1);
	/* no Content-Type: text/plain, declared as nothing */
	assert_string_equal(a->parts[0].content_type, "text/plain");
	assert_string_equal(a->parts[0].declared_type, "");
	assert_int_equal(has_uri(a, "https://a.example/"), 1);
	msgscan_free(&ms);    /* frees the parse (LeakSanitizer checks) */
}

static void test_broken(void **state)
{
	static const char *const msgs[] = {
		/* multipart without boundary */
		"Content-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n",
		/* boundary never seen */
		"Content-Type: multipart/mixed; boundary=b\r\n\r\nno parts at all\r\n",
		/* truncated inside a part */
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhal",
		/* not a message at all */
		"\x01\x02\x03\xff\xfe garbage\r\n\r\n\r\n",
		"",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct mime_msg *m = parse(msgs[i]);

		if (i < 3)
			assert_int_equal(m->parse_error, 1);
		mime_free(m);
	}
}

static void test_bad_base64_and_charset(void **state)
{
	static const char msg[] =
		"Content-Type: text/plain; charset=x-no-such-charset\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\n"
		"!!!!aGVsbG8g/w==%%%\r\n";
	struct mime_msg *m = parse(msg);

	(void)state;
	assert_int_equal(m->nparts, 1);
	/* valid UTF-8 whatever came in */
	assert_true(g_utf8_validate((const char *)m->parts[0].data, (gssize)m->parts[0].len, NULL));
	assert_non_null(strstr((const char *)m->parts[0].data, "hello"));
	mime_free(m);
}

/* base64 decoded on past a padded quartet, as Thunderbird decodes it: a
 * file sent as two padded pieces is read whole (GMime's own decoder
 * stopped at the first '=': the filters saw half of it) */
static void test_base64_past_padding(void **state)
{
	static const char msg[] =
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
		"--b\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\n"
		"SGVsbG8=\r\nIHdvcmxk\r\n"
		"--b\r\nContent-Type: application/octet-stream; name=\"b.bin\"\r\n"
		"Content-Transfer-Encoding: BASE64 \r\n\r\n"
		"YQ==YWI=\r\nYWJj\r\n"
		"--b--\r\n";
	struct mime_msg *m = parse(msg);

	(void)state;
	assert_int_equal(m->nparts, 2);
	assert_int_equal(m->parts[0].raw_len, 11);
	assert_memory_equal(m->parts[0].raw, "Hello world", 11);
	assert_int_equal(m->parts[1].raw_len, 6);
	assert_memory_equal(m->parts[1].raw, "aababc", 6);
	mime_free(m);
}

/* the decoder itself, as Thunderbird's (mimeenc.cpp): any split into
 * steps decodes the same; characters outside the alphabet skipped; '='
 * counted per quartet, three or four of them giving one byte ("W===" the
 * 'X' of EICAR, "====" a NUL); but the characters of a last quartet cut
 * short give the bytes they hold, as GMime and Python decode them, and
 * what Thunderbird writes instead (as they are, made four with '=',
 * unless the first is '=') is given apart (tb: NULL when the same) */
static void test_base64_decoder(void **state)
{
	static const struct { const char *in; const char *out; size_t len; const char *tb; } v[] = {
		{ "", "", 0, NULL }, { "Zg==", "f", 1, NULL }, { "Zm8=", "fo", 2, NULL }, { "Zm9v", "foo", 3, NULL },
		{ "Zm9vYmFy", "foobar", 6, NULL }, { "Zm9v\r\nYmFy\r\n", "foobar", 6, NULL },
		{ "Zg==Zm8=Zm9v", "ffofoo", 6, NULL }, { "--Zm9v--YmFy", "foobar", 6, NULL },
		{ "Z!m*9v\tY m\"Fy", "foobar", 6, NULL },
		/* cut short: the bytes held, Thunderbird's save apart */
		{ "Zm9vYg", "foob", 4, "Yg==" }, { "Zm9vY", "foo", 3, "Y===" },
		{ "Zm9vYmE", "fooba", 5, "YmE=" }, { "Zg=", "f", 1, "Zg==" }, { "Z=g", "", 0, "Z=g=" },
		{ "Zm9vYg\r\n", "foob", 4, "Yg==" }, { "Zm9vY\tm\r\nE", "fooba", 5, "YmE=" },
		{ "====Zm9v", "\0foo", 4, NULL },
		{ "W===", "X", 1, NULL }, { "W===NU8h", "X5O!", 4, NULL }, { "Zm9v=", "foo", 3, NULL },
		{ "Zm9v==", "foo", 3, NULL }, { "Zm9v=Zg", "foo", 3, NULL },
		{ "Z=g=", "d", 1, NULL }, { "Zm=9", "f`", 2, NULL },
		/* past the fast path's runs and back into them */
		{ "Zm9vYmFyYmF6\r\nYmF6\r\n", "foobarbazbaz", 12, NULL }, { "Zm9vY\nmFy", "foobar", 6, NULL },
	};
	unsigned char out[64], tb[4];
	struct mime_base64 d;

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t n = strlen(v[i].in);

		for (size_t cut = 0; cut <= n; cut++) {
			size_t got, tb_len = 99;

			mime_base64_init(&d);
			got = mime_base64_step(&d, v[i].in, cut, out);
			got += mime_base64_step(&d, v[i].in + cut, n - cut, out + got);
			got += mime_base64_finish(&d, out + got, tb, &tb_len);
			assert_int_equal(got, v[i].len);
			assert_memory_equal(out, v[i].out, v[i].len);
			if (v[i].tb == NULL)
				assert_int_equal(tb_len, 0);
			else {
				assert_int_equal(tb_len, 4);
				assert_memory_equal(tb, v[i].tb, 4);
			}
		}
	}
}

/* a part sent base64 without its last '=': the bytes held are its
 * content (what the rules and the attachments filter read: no "Yg=="
 * in text), Thunderbird's save given apart for the antivirus */
static void test_base64_unpadded_part(void **state)
{
	struct mime_msg *m = parse(
	    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
	    "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	    "aGVsbG8gd29ybGQ\r\n"
	    "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	    "Zm9vYmFy\r\n"
	    "--b--\r\n");

	(void)state;
	assert_int_equal(m->nparts, 2);
	assert_int_equal(m->parts[0].raw_len, 11);
	assert_string_equal((const char *)m->parts[0].data, "hello world");
	assert_int_equal(m->parts[0].alt_tail_len, 4);
	assert_int_equal(m->parts[0].alt_keep, 9);
	assert_memory_equal(m->parts[0].alt_tail, "bGQ=", 4);
	assert_int_equal(m->parts[1].raw_len, 6);
	assert_int_equal(m->parts[1].alt_tail_len, 0);
	mime_free(m);
}

/* a multipart labelled quoted-printable: unchecked only when decoding
 * would change a delimiter line or a part's header line */
static void test_qp_changes_split(void **state)
{
	static const char *const bd[] = { "----=_NextPart_0", "IN", NULL };
	static const struct { const char *body; int changes; } v[] = {
		/* a newsletter: escapes in the bodies only, "=_" no escape */
		{ "--", 0 }, { "", 0 },
		{ "preface\r\n\r\n------=_NextPart_0\r\nContent-Type: text/plain\r\n\r\n"
		  "caf=E9 =3D soft=\r\nbreak\r\n-- =20\r\n------=_NextPart_0--\r\n", 0 },
		/* a delimiter made by decoding, a nested one too */
		{ "x\r\n=2D=2D----=_NextPart_0\r\n", 1 }, { "x\r\n--=49N\r\n", 1 },
		/* a delimiter joined to the line above by a soft line break */
		{ "QUJD=\r\n------=_NextPart_0\r\n", 1 },
		/* a delimiter cut by a soft line break, whole once decoded */
		{ "------=\r\n=_NextPart_0\r\n", 1 },
		/* a part header changed */
		{ "------=_NextPart_0\r\nContent-Type: text/plain; name=3Da.exe\r\n\r\nx\r\n", 1 },
		{ "------=_NextPart_0\r\nContent-Type: text/plain;=\r\n name=a.exe\r\n\r\nx\r\n", 1 },
		/* the same after the header's end: body text */
		{ "------=_NextPart_0\r\nContent-Type: text/plain\r\n\r\nname=3Da.exe\r\n", 0 },
		/* a delimiter after a line break decoded inside a content line
		 * (review rv-today4): CR LF, a bare LF or CR, the last line */
		{ "------=_NextPart_0\r\nContent-Type: text/plain\r\n\r\n"
		  "=E0 la carte.=0D=0A------=_NextPart_0=0D=0AContent-Type: application/x=0D=0A=0D=0AX\r\n", 1 },
		{ "------=_NextPart_0\r\n\r\nhi=0A--IN=0Ax\r\n", 1 },
		{ "------=_NextPart_0\r\n\r\nhi=0D--IN\r\n", 1 },
		{ "------=_NextPart_0\r\n\r\nhi=0D=0A------=_NextPart_0--\r\n", 1 },
		/* ... and after a soft line break that joins it */
		{ "------=_NextPart_0\r\n\r\nhi=0D=\r\n=0A--IN\r\n", 1 },
		{ "------=_NextPart_0\r\n\r\nline=0D=0Aline=0D=0A-- =0D=0A--INX\r\n", 1 },
		/* decoded line breaks with no delimiter after them: text */
		{ "------=_NextPart_0\r\n\r\nline=0D=0Aline=0D=0A-- =0D=0A- IN\r\n", 0 },
		{ "------=_NextPart_0\r\n\r\nDear=0D=0A=0D=0Asee --IN=0D=0A\r\n", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		assert_int_equal(mime_qp_changes_split((const unsigned char *)v[i].body, strlen(v[i].body), bd),
		    v[i].changes);
}

/* a boundary longer than the 80 bytes once looked at: matched whole */
static void test_qp_changes_split_long_boundary(void **state)
{
	char b[200], body[600];
	const char *bd[] = { b, NULL };

	(void)state;
	memset(b, 'k', 150);
	b[150] = '\0';
	snprintf(body, sizeof(body), "--%s\r\n\r\nx\r\n=2D=2D%s\r\n", b, b);
	assert_int_equal(mime_qp_changes_split((const unsigned char *)body, strlen(body), bd), 1);
	snprintf(body, sizeof(body), "--%s\r\n\r\nx=0D=0A--%s\r\n", b, b);
	assert_int_equal(mime_qp_changes_split((const unsigned char *)body, strlen(body), bd), 1);
	/* the same first 100 bytes, then another boundary: no delimiter */
	snprintf(body, sizeof(body), "--%s\r\n\r\nx=0D=0A--%.100sZ\r\n", b, b);
	assert_int_equal(mime_qp_changes_split((const unsigned char *)body, strlen(body), bd), 0);
}

/* Content-Name and X-Sun-Data-Name: the name Thunderbird shows and saves
 * a file under when no filename= nor name= gives one, so among names
 * (RFC 2047 decoded, trimmed, and without quotes as well) */
static void test_name_fields(void **state)
{
	struct mime_msg *m = parse(
	    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
	    "--b\r\nContent-Type: application/octet-stream\r\nContent-Name: invoice.js\r\n\r\nx\r\n"
	    "--b\r\nContent-Type: application/octet-stream\r\nx-sun-data-name:  \"run.vbs\" \r\n\r\nx\r\n"
	    "--b\r\nContent-Type: application/octet-stream; name=\"a.pdf\"\r\n"
	    "Content-Name: =?utf-8?q?b=C3=A4d.exe?=\r\n\r\nx\r\n"
	    "--b--\r\n");

	(void)state;
	assert_int_equal(m->nparts, 3);
	assert_null(m->parts[0].filename);
	assert_non_null(m->parts[0].names);
	assert_string_equal(m->parts[0].names[0], "invoice.js");
	assert_null(m->parts[0].names[1]);
	assert_non_null(m->parts[1].names);
	assert_string_equal(m->parts[1].names[0], "\"run.vbs\"");
	assert_string_equal(m->parts[1].names[1], "run.vbs");
	assert_null(m->parts[1].names[2]);
	assert_string_equal(m->parts[2].names[0], "a.pdf");
	assert_string_equal(m->parts[2].names[1], "b\xc3\xa4" "d.exe");
	assert_null(m->parts[2].names[2]);
	mime_free(m);
}

/* binary declared text/plain: data is made valid UTF-8, raw keeps the bytes */
static void test_binary_as_text(void **state)
{
	static const char msg[] =
		"Content-Type: text/plain; name=notes.txt\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\n"
		"TVqQAAMAAAAEAAAA//8AAA==\r\n";
	struct mime_msg *m = parse(msg);

	(void)state;
	assert_int_equal(m->nparts, 1);
	assert_int_equal(m->parts[0].raw_len, 16);
	assert_memory_equal(m->parts[0].raw, "MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0", 16);
	assert_true(g_utf8_validate((const char *)m->parts[0].data, (gssize)m->parts[0].len, NULL));
	assert_int_equal(strlen((const char *)m->parts[0].data), m->parts[0].len);
	mime_free(m);
}

/* deep nesting: bounded, flagged, no stack blow-up */
static void test_deep_nesting(void **state)
{
	GString *s = g_string_new("");
	struct mime_msg *m;
	int i;

	(void)state;
	for (i = 0; i < 5000; i++)
		g_string_append_printf(s, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
	g_string_append(s, "Content-Type: text/plain\r\n\r\ndeep\r\n");
	m = parse(s->str);
	assert_int_equal(m->parse_error, 1);
	assert_true(m->nparts <= 1);
	mime_free(m);
	g_string_free(s, TRUE);

	/* nested message/rfc822, many levels */
	s = g_string_new("");
	for (i = 0; i < 200; i++)
		g_string_append(s, "Content-Type: message/rfc822\r\n\r\n");
	g_string_append(s, "Content-Type: text/plain\r\n\r\ndeep\r\n");
	m = parse(s->str);
	assert_int_equal(m->parse_error, 1);
	mime_free(m);
	g_string_free(s, TRUE);
}

static void test_too_many_parts(void **state)
{
	GString *s = g_string_new("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	struct mime_msg *m;
	int i;

	(void)state;
	for (i = 0; i < MIME_MAX_PARTS + 50; i++)
		g_string_append(s, "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n");
	g_string_append(s, "--b--\r\n");
	m = parse(s->str);
	assert_int_equal(m->nparts, MIME_MAX_PARTS);
	assert_int_equal(m->parts_truncated, 1);
	assert_int_equal(m->parse_error, 1);
	mime_free(m);
	g_string_free(s, TRUE);
}

/* append_text_part - a part of n bytes of byte c in charset cs, in lines */
static void append_text_part(GString *s, size_t n, char c, const char *cs)
{
	g_string_append_printf(s, "--b\r\nContent-Type: text/plain; charset=%s\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n", cs);
	for (size_t i = 0; i < n; i += 1000) {
		size_t k = n - i < 998 ? n - i : 998;

		for (size_t j = 0; j < k; j++)
			g_string_append_c(s, c);
		g_string_append(s, "\r\n");
	}
}

/* budget_msg - a text part of n bytes of byte c (charset cs), then a
 * small zip-like part: the message of the decoded-budget tests */
static GString *budget_msg(size_t n, char c, const char *cs)
{
	GString *s = g_string_new("Content-Type: multipart/mixed; boundary=b\r\n\r\n");

	append_text_part(s, n, c, cs);
	g_string_append(s, "--b\r\nContent-Type: application/zip; name=a.zip\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\nUEsDBAoAAAAAAA==\r\n--b--\r\n");
	return s;
}

/* The 64 MiB of decoded content: text converted to UTF-8 counts apart
 * from the bytes as decoded, so that a big windows-1252 part (three bytes
 * of UTF-8 each) no longer empties the parts after it; a part the budget
 * does cut or empty makes the parse incomplete (a filter did not see it). */
static void test_decoded_budget(void **state)
{
	GString *s;
	struct mime_msg *m;

	(void)state;
	/* 23 MB of 0x80 in windows-1252: 69 MB of euro signs, cut; the zip whole */
	s = budget_msg(23u * 1000 * 1000, (char)0x80, "windows-1252");
	m = mime_parse((const unsigned char *)s->str, s->len);
	assert_int_equal(m->nparts, 2);
	assert_int_equal(m->parts[0].text_truncated, 1);
	assert_int_equal(m->parts[0].truncated, 0);
	assert_true(m->parts[0].raw_len >= 23u * 1000 * 1000 - 2);
	assert_true(m->parts[0].len <= MIME_MAX_DECODED);
	assert_int_equal(m->parts[1].truncated, 0);
	assert_int_equal(m->parts[1].raw_len, 10);
	assert_memory_equal(m->parts[1].raw, "PK\x03\x04", 4);
	assert_null(m->incomplete);
	assert_int_equal(m->parse_error, 1);
	mime_free(m);
	g_string_free(s, TRUE);

	/* more than 64 MiB as decoded: the zip after it kept empty, and said */
	s = budget_msg(MIME_MAX_DECODED + 1000, 'a', "us-ascii");
	m = mime_parse((const unsigned char *)s->str, s->len);
	assert_int_equal(m->nparts, 2);
	assert_int_equal(m->parts[0].truncated, 1);
	assert_int_equal(m->parts[0].text_truncated, 1);
	assert_int_equal(m->parts[0].len, MIME_MAX_DECODED);
	assert_int_equal(m->parts[1].truncated, 1);
	assert_int_equal(m->parts[1].raw_len, 0);
	assert_non_null(m->incomplete);
	assert_string_equal(m->incomplete, "decoded content over 64 MiB");
	mime_free(m);
	g_string_free(s, TRUE);
}

/* append_spam_part - a short HTML part in iso-8859-1 (its UTF-8 copy
 * differs from its bytes: it has a converted-text cost) */
static void append_spam_part(GString *s)
{
	g_string_append(s, "--b\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n"
	    "<p>Caf\xe9 pharmacy: cheap pills at <a href=\"http://pills.example/buy\">our shop</a></p>\r\n");
}

/* Text parts after the 64 MiB of converted text was spent kept none of
 * their text (data "", rendered "", no URIs): a 23 MB part of 0x80 in
 * windows-1252 (69 MB of UTF-8; 23 MB sent, within the default message_size_limit of 50M)
 * hid a spam text and its link after it from Bayes, the HTML body rules
 * and the URI blocklists, and nothing said so.  Now a part may use the
 * budget only down to MIME_TEXT_RESERVE, and each text part after keeps
 * its first MIME_TEXT_PREFIX bytes from it (SpamAssassin's body rules read
 * 50,000 bytes of each part); one that keeps nothing once the reserve too
 * is spent makes the parse incomplete (ATTACH_UNCHECKED). */
static void test_text_after_converted_budget(void **state)
{
	GString *s = g_string_new("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	struct mime_msg *m;
	size_t last;

	(void)state;
	append_text_part(s, 23u * 1000 * 1000, (char)0x80, "windows-1252");
	append_spam_part(s);
	g_string_append(s, "--b--\r\n");
	m = mime_parse((const unsigned char *)s->str, s->len);
	assert_int_equal(m->nparts, 2);
	assert_int_equal(m->parts[0].text_truncated, 1);
	assert_true(m->parts[0].len + m->parts[1].len <= MIME_MAX_DECODED);
	assert_int_equal(m->parts[1].text_truncated, 0);
	assert_non_null(strstr((const char *)m->parts[1].data, "Caf\xc3\xa9 pharmacy"));
	assert_non_null(m->parts[1].rendered);
	assert_non_null(strstr(m->parts[1].rendered, "cheap pills"));
	assert_true(has_uri(m, "http://pills.example/buy"));
	assert_null(m->incomplete);
	mime_free(m);

	/* the reserve spent too (parts of 64 KiB of UTF-8 each after it):
	 * a part kept empty is said */
	g_string_truncate(s, s->len - strlen("--b--\r\n"));
	for (int i = 0; i < (int)(MIME_TEXT_RESERVE / MIME_TEXT_PREFIX) + 2; i++)
		append_text_part(s, 22000, (char)0x80, "windows-1252");
	append_spam_part(s);
	g_string_append(s, "--b--\r\n");
	m = mime_parse((const unsigned char *)s->str, s->len);
	last = m->nparts - 1;
	assert_int_equal(m->nparts, 2 + MIME_TEXT_RESERVE / MIME_TEXT_PREFIX + 2 + 1);
	assert_true(m->parts[2].len > 0);
	assert_int_equal(m->parts[last].len, 0);
	assert_int_equal(m->parts[last].text_truncated, 1);
	assert_non_null(m->incomplete);
	assert_string_equal(m->incomplete, "text converted to UTF-8 over 64 MiB");
	mime_free(m);
	g_string_free(s, TRUE);
}

/* converted_len - the UTF-8 copies of m's text parts that differ from
 * their bytes: what counts toward the converted text's budget */
static size_t converted_len(const struct mime_msg *m)
{
	size_t t = 0;

	for (size_t i = 0; i < m->nparts; i++)
		if (m->parts[i].is_text && m->parts[i].data != m->parts[i].raw)
			t += m->parts[i].len;
	return t;
}

/* A text part given only what is left of the reserve (less than its
 * MIME_TEXT_PREFIX) kept those few bytes, cut, and the parse was not made
 * incomplete (only a part that kept none was said): 128 parts of 64 KiB
 * after the big one left ~130 bytes, the spam part after them kept "<p>Caf"
 * of its text, and its text and link reached no rule, unsaid
 * (rv-today1).  Now a part cut to less than its prefix is said. */
static void test_text_cut_by_the_reserve_is_said(void **state)
{
	GString *s = g_string_new("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	struct mime_msg *m;
	size_t left, filler, fillers = 0, last;

	(void)state;
	append_text_part(s, 23u * 1000 * 1000, (char)0x80, "windows-1252");
	append_text_part(s, 22000, (char)0x80, "windows-1252");
	g_string_append(s, "--b--\r\n");
	m = mime_parse((const unsigned char *)s->str, s->len);
	/* what one filler takes of the reserve (its prefix, cut on a
	 * character), and what the big part left */
	filler = m->parts[1].len;
	left = MIME_MAX_DECODED - (converted_len(m) - filler);
	assert_true(filler > MIME_TEXT_PREFIX - 8 && filler <= MIME_TEXT_PREFIX);
	mime_free(m);
	g_string_truncate(s, s->len - strlen("--b--\r\n"));
	for (fillers = 1, left -= filler; left >= MIME_TEXT_PREFIX; fillers++, left -= filler)
		append_text_part(s, 22000, (char)0x80, "windows-1252");
	/* the spam part: more than any remnant of the reserve before its pitch */
	g_string_append(s, "--b\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n<p>Caf\xe9 ");
	for (size_t i = 0; i < MIME_TEXT_PREFIX; i++)
		g_string_append_c(s, (i % 900) == 899 ? '\n' : 'a');
	g_string_append(s, " cheap pills at <a href=\"http://pills.example/buy\">our shop</a></p>\r\n--b--\r\n");
	m = mime_parse((const unsigned char *)s->str, s->len);
	last = m->nparts - 1;
	print_message("%zu fillers, %zu bytes of the reserve left, %zu kept of the spam part\n",
	    fillers, left, m->parts[last].len);
	assert_int_equal(m->nparts, 1 + fillers + 1);
	assert_true(m->parts[last].len > 0 && m->parts[last].len < MIME_TEXT_PREFIX);
	assert_int_equal(m->parts[last].text_truncated, 1);
	assert_null(strstr((const char *)m->parts[last].data, "pills"));
	assert_non_null(m->incomplete);
	assert_string_equal(m->incomplete, "text converted to UTF-8 over 64 MiB");
	mime_free(m);
	g_string_free(s, TRUE);
}

/* status_mb - a field of /proc/self/status (kB) in MB, or -1 */
static long status_mb(const char *field)
{
	char line[256];
	long kb = -1;
	size_t n = strlen(field);
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':')
			kb = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return kb < 0 ? -1 : kb / 1024;
}

/* The converted text's budget stops the conversion, not only what is kept:
 * after 23 MB of 0x80 in windows-1252 (69 MB of UTF-8, cut at 64 MiB) a
 * second such part of 40 MB was converted whole (120 MB more, and the
 * time) to keep none of it (now its first MIME_TEXT_PREFIX bytes, from
 * the reserve).  The peak of resident memory the parse adds
 * (VmHWM, reset first): GMime's copy of the message and the bytes as
 * decoded (63 MB each), a part's decoding buffer and the 64 MiB of UTF-8,
 * 223 MB; it was 299 MB. */
static void test_conversion_stops_at_budget(void **state)
{
	GString *s = g_string_new("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	struct mime_msg *m;
	FILE *f;
	long before, peak;

	(void)state;
	append_text_part(s, 23u * 1000 * 1000, (char)0x80, "windows-1252");
	append_text_part(s, 40u * 1000 * 1000, (char)0x80, "windows-1252");
	g_string_append(s, "--b--\r\n");
	f = fopen("/proc/self/clear_refs", "w");
	if (f == NULL || fputs("5", f) < 0 || fclose(f) != 0)
		skip();        /* no way to reset the peak here */
	before = status_mb("VmRSS");
	m = mime_parse((const unsigned char *)s->str, s->len);
	peak = status_mb("VmHWM");
	assert_true(before > 0 && peak > 0);
	assert_int_equal(m->nparts, 2);
	assert_int_equal(m->parts[0].text_truncated, 1);
	/* cut on a character boundary, short of the reserve the part after
	 * keeps its first MIME_TEXT_PREFIX from */
	assert_true(m->parts[0].len > MIME_MAX_DECODED - MIME_TEXT_RESERVE - 3);
	assert_int_equal(m->parts[1].text_truncated, 1);
	assert_true(m->parts[1].len > MIME_TEXT_PREFIX - 3 && m->parts[1].len <= MIME_TEXT_PREFIX);
	assert_true(m->parts[0].len + m->parts[1].len <= MIME_MAX_DECODED);
	assert_true(m->parts[1].raw_len >= 40u * 1000 * 1000 - 2);  /* the bytes as sent whole */
	assert_int_equal(m->parse_error, 1);
	assert_null(m->incomplete);
	print_message("parse peak: %ld MB over %ld MB\n", peak - before, before);
#ifndef __SANITIZE_ADDRESS__
	/* AddressSanitizer keeps freed memory in quarantine (256 MB by
	 * default) and adds redzones: the peak says nothing there */
	assert_true(peak - before < 260);
#endif
	mime_free(m);
	g_string_free(s, TRUE);
}

/* LF-only files (mailwarden scan of a file from disk) parse the same */
static void test_lf_only(void **state)
{
	static const char msg[] =
		"Content-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/plain\n\nhi\n"
		"--q\nContent-Type: application/zip; name=a.zip\n\nPK\n--q--\n";
	struct mime_msg *m = parse(msg);

	(void)state;
	assert_int_equal(m->nparts, 2);
	assert_string_equal(m->parts[1].filename, "a.zip");
	assert_int_equal(m->parse_error, 0);
	mime_free(m);
}

/* scanner threads parse different messages at once: GMime objects are per
 * call, g_mime_init runs once; every thread gets the same answer */
#define THREADS 4
#define ROUNDS  40

static void *parse_many(void *arg)
{
	long bad = 0;
	int i;

	(void)arg;
	for (i = 0; i < ROUNDS; i++) {
		struct mime_msg *m = parse_big();

		if (m->nparts != 6 || m->nuris != 5 || m->parse_error ||
		    strcmp(m->parts[3].filename, "\xe2\x82\xac invoice.pdf.exe") != 0 ||
		    strstr((const char *)m->parts[4].data, "\xd0\x9f\xd1\x80") == NULL)
			bad++;
		mime_free(m);
	}
	return (void *)bad;
}

static void test_threads(void **state)
{
	pthread_t t[THREADS];
	int i;

	(void)state;
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, parse_many, NULL), 0);
	for (i = 0; i < THREADS; i++) {
		void *bad;

		assert_int_equal(pthread_join(t[i], &bad), 0);
		assert_int_equal((long)bad, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tree),
		cmocka_unit_test(test_messages),
		cmocka_unit_test(test_filenames),
		cmocka_unit_test(test_all_names),
		cmocka_unit_test(test_repeated_fields),
		cmocka_unit_test(test_many_names),
		cmocka_unit_test(test_charsets),
		cmocka_unit_test(test_html_rendered),
		cmocka_unit_test(test_uris),
		cmocka_unit_test(test_uri_kinds),
		cmocka_unit_test(test_uri_decoys_keep_links),
		cmocka_unit_test(test_bare_uris),
		cmocka_unit_test(test_bare_uris_bounded),
		cmocka_unit_test(test_bare_uris_linear),
		cmocka_unit_test(test_bare_uris_long_path),
		cmocka_unit_test(test_render_cases),
		cmocka_unit_test(test_shared),
		cmocka_unit_test(test_broken),
		cmocka_unit_test(test_bad_base64_and_charset),
		cmocka_unit_test(test_base64_past_padding),
		cmocka_unit_test(test_base64_decoder),
		cmocka_unit_test(test_base64_unpadded_part),
		cmocka_unit_test(test_qp_changes_split),
		cmocka_unit_test(test_qp_changes_split_long_boundary),
		cmocka_unit_test(test_name_fields),
		cmocka_unit_test(test_binary_as_text),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_too_many_parts),
		cmocka_unit_test(test_decoded_budget),
		cmocka_unit_test(test_text_after_converted_budget),
		cmocka_unit_test(test_text_cut_by_the_reserve_is_said),
		cmocka_unit_test(test_conversion_stops_at_budget),
		cmocka_unit_test(test_lf_only),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
