/* test_eval_html.c - the HTML and image eval: functions (rules/eval_html.c,
 * rules/html_stats.c): each one hit by a crafted message and not hit by a
 * close one, and bad arguments refused at load. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rules/rules.h"
#include "rules/html_stats.h"

#include "eval_testlib.h"

/* is the rule loaded? (absent counts as not) */
static int loaded(const struct ruleset *rs, const char *name)
{
	return rule_loaded(rs, name) == 1;
}

/* scan one message: an HTML part (or none), extra parts, a subject, uris */
static void scan_msg(const struct ruleset *rs, struct hits *h, const char *html, const char *subject,
                     const struct rules_part *extra, size_t nextra, const char *const *uris, size_t nuris,
                     const char *body_text)
{
	struct rules_header hdrs[2] = { { "Subject", subject ? subject : "", NULL }, { "From", "a@example.com", NULL } };
	struct rules_part parts[8];
	size_t np = 0;
	if (html) {
		parts[np++] = (struct rules_part){ .content_type = "text/html", .is_text = 1, .is_html = 1,
		                                   .data = html, .len = strlen(html), .raw = html, .raw_len = strlen(html) };
	}
	for (size_t i = 0; i < nextra && np < 8; i++) parts[np++] = extra[i];
	const char *body[2] = { subject ? subject : "", body_text ? body_text : "" };
	size_t blen[2] = { strlen(body[0]), strlen(body[1]) };
	struct rules_input in = {
		.headers = hdrs, .nheaders = 2,
		.body = body, .body_len = blen, .nbody = 2,
		.rawbody = body + 1, .rawbody_len = blen + 1, .nrawbody = 1,
		.uris = uris, .nuris = nuris,
		.parts = parts, .nparts = np,
	};
	struct rules_scratch *scr = rules_scratch_new(rs);
	memset(h, 0, sizeof *h);
	rules_scan(rs, scr, &in, collect, h);
	rules_scratch_free(scr);
}

static void html_hits(const struct ruleset *rs, struct hits *h, const char *html, const char *subject)
{
	scan_msg(rs, h, html, subject, NULL, 0, NULL, 0, NULL);
}

static const char rules_text[] =
	"body T_HTML eval:html_test('html')\n"
	"body T_BAL_BODY eval:html_tag_balance('body', '!= 0')\n"
	"body T_CENTER eval:html_tag_exists('center')\n"
	"body T_EXTRA_CLOSE eval:html_range('closed_extra_ratio', '0.09', 'inf')\n"
	"body T_BADTAG eval:html_range('bad_tag_ratio','0.60','0.70')\n"
	"body T_NONELEM eval:html_range('non_element_ratio','0.60','0.70')\n"
	"body T_OBFU eval:html_range('obfuscation_ratio','.4','.6')\n"
	"body T_HUGE eval:html_range('max_size', '6', 'inf')\n"
	"body T_SHORT eval:html_eval('length', '< 384')\n"
	"body T_LOWCON eval:html_test('font_low_contrast')\n"
	"body T_INVCOL eval:html_test('font_invalid_color')\n"
	"body T_FACE eval:html_test('font_face_bad')\n"
	"body T_MAILTO eval:html_test('form_action_mailto')\n"
	"body T_EMBEDS eval:html_test('embeds')\n"
	"body T_SAVED eval:html_text_match('comment', '<!-- saved from url=\\(\\d{4}\\)')\n"
	"body T_LINKIMG eval:html_text_match('anchor', '<img>')\n"
	"body T_TITLE40 eval:html_text_match('title', '.{40}')\n"
	"body T_TITLE_NOT_HELLO eval:html_text_not_match('title', '^hello')\n"
	"body T_TITLE_SUBJ eval:html_title_subject_ratio('3.5')\n"
	"body T_IMGONLY eval:html_image_only('0000','0400')\n"
	"body T_IMGRATIO eval:html_image_ratio('0.000','0.002')\n"
	"body T_IFRAME eval:check_iframe_src()\n"
	"body T_IPMIS eval:check_https_ip_mismatch()\n"
	"body T_HTTPMIS eval:check_https_http_mismatch('1','10')\n"
	"body T_TRUNC eval:check_uri_truncated()\n"
	"body T_FARAWAY eval:html_charset_faraway()\n"
	"score T_HTML 1\n";

static void test_html_structure(void **st)
{
	(void)st;
	struct ruleset *rs = load(rules_text);
	struct hits h;
	/* no HTML part at all: nothing */
	scan_msg(rs, &h, NULL, "hi", NULL, 0, NULL, 0, "text");
	assert_false(has(&h, "T_HTML"));
	assert_false(has(&h, "T_SHORT"));

	html_hits(rs, &h, "<html><body><center>x</center></body></html>", "s");
	assert_true(has(&h, "T_HTML"));
	assert_true(has(&h, "T_CENTER"));
	assert_false(has(&h, "T_BAL_BODY"));
	assert_false(has(&h, "T_EXTRA_CLOSE"));
	assert_true(has(&h, "T_SHORT"));
	html_hits(rs, &h, "<html><body>x", "s");              /* body never closed */
	assert_true(has(&h, "T_BAL_BODY"));
	assert_false(has(&h, "T_CENTER"));

	/* end tags without a start: 4 of 6 tags */
	html_hits(rs, &h, "<p>x</p></p></p></div></div>", "s");
	assert_true(has(&h, "T_EXTRA_CLOSE"));
	/* unknown tags: 4 of 6 tags, 2 of 3 names */
	html_hits(rs, &h, "<foo>a</foo><bar>b</bar><p>c</p>", "s");
	assert_true(has(&h, "T_BADTAG"));
	assert_true(has(&h, "T_NONELEM"));
	html_hits(rs, &h, "<b>a</b><i>b</i><p>c</p>", "s");
	assert_false(has(&h, "T_BADTAG"));
	assert_false(has(&h, "T_NONELEM"));
	/* words split by markup: 2 of 4 tags */
	html_hits(rs, &h, "<p>Vi<b>ag</b>ra</p>", "s");
	assert_true(has(&h, "T_OBFU"));
	html_hits(rs, &h, "<p>Vi <b>ag</b> ra</p>", "s");
	assert_false(has(&h, "T_OBFU"));

	/* a long document is not short */
	char big[1200];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	memcpy(big, "<p>", 3);
	html_hits(rs, &h, big, "s");
	assert_false(has(&h, "T_SHORT"));
	rules_free(rs);
}

static void test_html_fonts(void **st)
{
	(void)st;
	struct ruleset *rs = load(rules_text);
	struct hits h;
	html_hits(rs, &h, "<font size=\"7\">big</font>", "s");
	assert_true(has(&h, "T_HUGE"));
	html_hits(rs, &h, "<basefont size=4><font size=\"+3\">big</font>", "s");
	assert_true(has(&h, "T_HUGE"));
	html_hits(rs, &h, "<font size=\"5\">big</font>", "s");
	assert_false(has(&h, "T_HUGE"));

	/* white-ish text on the default white background */
	html_hits(rs, &h, "<p>seen <font color=\"#fffffe\">hidden</font></p>", "s");
	assert_true(has(&h, "T_LOWCON"));
	html_hits(rs, &h, "<div style=\"color: rgb(250,250,250)\">hidden</div>", "s");
	assert_true(has(&h, "T_LOWCON"));
	html_hits(rs, &h, "<p>seen <font color=\"navy\">blue</font></p>", "s");
	assert_false(has(&h, "T_LOWCON"));
	assert_false(has(&h, "T_INVCOL"));
	html_hits(rs, &h, "<font color=\"blorp\">odd</font>", "s");
	assert_true(has(&h, "T_INVCOL"));

	html_hits(rs, &h, "<font face=\"@@@\">x</font>", "s");
	assert_true(has(&h, "T_FACE"));
	html_hits(rs, &h, "<font face=\"Arial, Helvetica, sans-serif\">x</font>", "s");
	assert_false(has(&h, "T_FACE"));

	char buf[64];
	html_color("#abc", 4, buf);
	assert_string_equal(buf, "#aabbcc");
	html_color("White", 5, buf);
	assert_string_equal(buf, "#ffffff");
	html_color("rgb(255,0,16)", 13, buf);
	assert_string_equal(buf, "#ff0010");
	html_color("zzz", 3, buf);
	assert_string_equal(buf, "invalid");
	rules_free(rs);
}

static void test_html_tags_and_text(void **st)
{
	(void)st;
	struct ruleset *rs = load(rules_text);
	struct hits h;
	html_hits(rs, &h, "<form action=\"MAILTO:x@example.com\"><input></form><object></object>", "s");
	assert_true(has(&h, "T_MAILTO"));
	assert_true(has(&h, "T_EMBEDS"));
	html_hits(rs, &h, "<form action=\"http://example.com/\"><input></form>", "s");
	assert_false(has(&h, "T_MAILTO"));
	assert_false(has(&h, "T_EMBEDS"));

	html_hits(rs, &h, "<!-- saved from url=(0022)http://example.com/ --><p>x</p>", "s");
	assert_true(has(&h, "T_SAVED"));
	html_hits(rs, &h, "<!-- an ordinary comment --><p>x</p>", "s");
	assert_false(has(&h, "T_SAVED"));

	html_hits(rs, &h, "<a href=\"http://example.com/\"><img src=\"http://example.com/i.gif\"></a>", "s");
	assert_true(has(&h, "T_LINKIMG"));
	html_hits(rs, &h, "<a href=\"http://example.com/\">text</a><img src=\"http://example.com/i.gif\">", "s");
	assert_false(has(&h, "T_LINKIMG"));

	/* titles: length, not matching, against the Subject; entities stay
	 * as written inside <title> (literal content) */
	html_hits(rs, &h, "<title>A title far longer than forty characters &amp; more</title>", "Hi");
	assert_true(has(&h, "T_TITLE40"));
	assert_true(has(&h, "T_TITLE_NOT_HELLO"));
	assert_true(has(&h, "T_TITLE_SUBJ"));
	html_hits(rs, &h, "<title>hello there</title>", "A subject about as long as the title");
	assert_false(has(&h, "T_TITLE40"));
	assert_false(has(&h, "T_TITLE_NOT_HELLO"));
	assert_false(has(&h, "T_TITLE_SUBJ"));

	/* script content is literal: its tags are not tags */
	html_hits(rs, &h, "<script>document.write('<center>')</script><p>x</p>", "s");
	assert_false(has(&h, "T_CENTER"));
	rules_free(rs);
}

static void test_html_images_and_links(void **st)
{
	(void)st;
	struct ruleset *rs = load(rules_text);
	struct hits h;
	html_hits(rs, &h, "<a href=\"http://x.example/\"><img src=\"http://x.example/a.gif\" width=\"500\" height=\"400\"></a>hello", "s");
	assert_true(has(&h, "T_IMGONLY"));
	assert_true(has(&h, "T_IMGRATIO"));
	html_hits(rs, &h, "<p>only words here, no picture</p>", "s");
	assert_false(has(&h, "T_IMGONLY"));
	assert_false(has(&h, "T_IMGRATIO"));
	html_hits(rs, &h, "<img src=\"a.gif\" width=\"1\" height=\"1\"><p>plenty of words here</p>", "s");
	assert_false(has(&h, "T_IMGRATIO"));

	html_hits(rs, &h, "<iframe src=\"http://frame.example/\"></iframe>", "s");
	assert_true(has(&h, "T_IFRAME"));
	html_hits(rs, &h, "<iframe></iframe>", "s");
	assert_false(has(&h, "T_IFRAME"));

	html_hits(rs, &h, "<a href=\"http://192.0.2.1/login\">https://bank.example/</a>", "s");
	assert_true(has(&h, "T_IPMIS"));
	html_hits(rs, &h, "<a href=\"https://192.0.2.1/login\">https://192.0.2.1/login</a>", "s");
	assert_false(has(&h, "T_IPMIS"));

	html_hits(rs, &h, "<a href=\"http://evil.example/x\">https://www.bank.example/</a>", "s");
	assert_true(has(&h, "T_HTTPMIS"));
	html_hits(rs, &h, "<a href=\"http://login.bank.example/x\">https://www.bank.example/</a>", "s");
	assert_false(has(&h, "T_HTTPMIS"));

	size_t n = 9000;
	char *longlink = malloc(n + 100);
	assert_non_null(longlink);
	strcpy(longlink, "<a href=\"http://example.com/");
	size_t l = strlen(longlink);
	memset(longlink + l, 'a', n);
	strcpy(longlink + l + n, "\">x</a>");
	html_hits(rs, &h, longlink, "s");
	assert_true(has(&h, "T_TRUNC"));
	free(longlink);
	html_hits(rs, &h, "<a href=\"http://example.com/short\">x</a>", "s");
	assert_false(has(&h, "T_TRUNC"));
	rules_free(rs);
}

static void test_html_charset_faraway(void **st)
{
	(void)st;
	static const char korean[] = "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=euc-kr\"><p>x</p>";
	struct hits h;
	/* SpamAssassin's default ok_locales is "all": never */
	struct ruleset *rs = load(rules_text);
	html_hits(rs, &h, korean, "s");
	assert_false(has(&h, "T_FARAWAY"));
	rules_free(rs);
	char text[sizeof rules_text + 64];
	snprintf(text, sizeof text, "ok_locales en\n%s", rules_text);
	rs = load(text);
	html_hits(rs, &h, korean, "s");
	assert_true(has(&h, "T_FARAWAY"));
	html_hits(rs, &h, "<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"><p>x</p>", "s");
	assert_false(has(&h, "T_FARAWAY"));
	rules_free(rs);
}

/* images as ImageInfo reads them */
static size_t gif(unsigned char *b, unsigned w, unsigned h)
{
	memcpy(b, "GIF89a", 6);
	b[6] = w & 0xff; b[7] = w >> 8; b[8] = h & 0xff; b[9] = h >> 8;
	b[10] = b[11] = b[12] = 0;
	return 13;
}

static size_t png(unsigned char *b, unsigned w, unsigned h)
{
	memcpy(b, "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
	b[16] = w >> 24; b[17] = w >> 16; b[18] = w >> 8; b[19] = w;
	b[20] = h >> 24; b[21] = h >> 16; b[22] = h >> 8; b[23] = h;
	memset(b + 24, 0, 9);
	return 33;
}

static size_t jpeg(unsigned char *b, unsigned w, unsigned h)
{
	static const unsigned char app0[] = { 0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 'J', 'F' };
	memcpy(b, app0, sizeof app0);
	size_t o = sizeof app0;
	unsigned char sof[] = { 0xff, 0xc0, 0x00, 0x11, 8, (unsigned char)(h >> 8), (unsigned char)h,
	                        (unsigned char)(w >> 8), (unsigned char)w, 3 };
	memcpy(b + o, sof, sizeof sof);
	return o + sizeof sof;
}

static const char image_rules[] =
	"body I_GIF1 eval:image_count('gif','1','1')\n"
	"body I_GIF2P eval:image_count('gif','2')\n"
	"body I_PNG1 eval:image_count('png',1,1)\n"
	"body I_JPEG1 eval:image_count('jpeg',1,1)\n"
	"body I_AREA eval:pixel_coverage('all',62500,300000)\n"
	"body I_GIFAREA eval:pixel_coverage('gif','180000','475000')\n"
	"body I_RATIO eval:image_to_text_ratio('all', '0.000', '0.008')\n"
	"rawbody I_RAWRATIO eval:image_to_text_ratio('all', '0.000', '0.015')\n"
	"body I_EXACT eval:image_size_exact('gif', 300, 400)\n"
	"body I_RANGE eval:image_size_range('png', 10, 10, 20, 20)\n"
	"body I_NAMED eval:image_named('pic.gif')\n"
	"body I_NAME_RE eval:image_name_regex('/^PIC\\.gif$/i')\n";

static void test_images(void **st)
{
	(void)st;
	struct ruleset *rs = load(image_rules);
	unsigned char g[16], p[40], j[32];
	size_t gl = gif(g, 400, 300), pl = png(p, 15, 12), jl = jpeg(j, 20, 10);
	struct rules_part parts[3] = {
		{ .content_type = "image/gif", .encoding = "base64", .data = (const char *)g, .len = gl, .filename = "pic.gif" },
		{ .content_type = "image/png", .encoding = "base64", .data = (const char *)p, .len = pl },
		{ .content_type = "image/jpg", .encoding = "base64", .data = (const char *)j, .len = jl },
	};
	struct hits h;
	scan_msg(rs, &h, NULL, "s", parts, 3, NULL, 0, "a few words");
	assert_true(has(&h, "I_GIF1"));
	assert_false(has(&h, "I_GIF2P"));
	assert_true(has(&h, "I_PNG1"));
	assert_true(has(&h, "I_JPEG1"));
	assert_true(has(&h, "I_AREA"));          /* 120000 + 180 + 200 pixels */
	assert_false(has(&h, "I_GIFAREA"));      /* 120000 < 180000 */
	assert_true(has(&h, "I_RATIO"));
	assert_true(has(&h, "I_RAWRATIO"));
	assert_true(has(&h, "I_EXACT"));         /* height 300, width 400 */
	assert_true(has(&h, "I_RANGE"));
	assert_true(has(&h, "I_NAMED"));
	assert_true(has(&h, "I_NAME_RE"));
	parts[0].filename = "other.gif";
	scan_msg(rs, &h, NULL, "s", parts, 3, NULL, 0, "a few words");
	assert_false(has(&h, "I_NAMED"));
	assert_false(has(&h, "I_NAME_RE"));
	parts[0].filename = "pic.gif";

	/* the same images not base64-encoded are not looked at; two GIFs */
	struct rules_part qp[3] = { parts[0], parts[0], parts[1] };
	qp[2].encoding = "quoted-printable";
	char words[3000];
	memset(words, 'w', sizeof words - 1);
	words[sizeof words - 1] = '\0';
	scan_msg(rs, &h, NULL, "s", qp, 3, NULL, 0, words);
	assert_false(has(&h, "I_GIF1"));
	assert_true(has(&h, "I_GIF2P"));
	assert_false(has(&h, "I_PNG1"));
	assert_false(has(&h, "I_RANGE"));
	assert_true(has(&h, "I_GIFAREA"));       /* 240000 */
	assert_false(has(&h, "I_RATIO"));        /* 3000 chars / 240000 px > 0.008 */
	/* no images at all */
	scan_msg(rs, &h, NULL, "s", NULL, 0, NULL, 0, "text");
	assert_false(has(&h, "I_AREA"));
	assert_false(has(&h, "I_RATIO"));
	rules_free(rs);
}

static void test_short_urls(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"url_shortener bit.ly tinyurl.com\n"
		"url_shortener_get .page.link\n"
		"body S_SHORT eval:short_url()\n"
		"body S_CHAINED eval:short_url_chained()\n");
	struct hits h;
	const char *u1[] = { "https://example.com/a", "https://bit.ly/abc" };
	scan_msg(rs, &h, NULL, "s", NULL, 0, u1, 2, NULL);
	assert_true(has(&h, "S_SHORT"));
	assert_false(has(&h, "S_CHAINED"));
	const char *u2[] = { "https://bit.ly", "https://example.com/bit.ly/x" };   /* no path; not the host */
	scan_msg(rs, &h, NULL, "s", NULL, 0, u2, 2, NULL);
	assert_false(has(&h, "S_SHORT"));
	const char *u3[] = { "https://foo.page.link/x" };
	scan_msg(rs, &h, NULL, "s", NULL, 0, u3, 1, NULL);
	assert_true(has(&h, "S_SHORT"));
	const char *u4[] = { "https://bit.ly/abc?u=https%3A%2F%2Ftinyurl.com%2Fxyz" };
	scan_msg(rs, &h, NULL, "s", NULL, 0, u4, 1, NULL);
	assert_true(has(&h, "S_CHAINED"));
	rules_free(rs);
	/* cleared: nothing is a shortener */
	rs = load("url_shortener bit.ly\nclear_url_shortener\nbody S_SHORT eval:short_url()\n");
	scan_msg(rs, &h, NULL, "s", NULL, 0, u1, 2, NULL);
	assert_false(has(&h, "S_SHORT"));
	rules_free(rs);
}

/* "if can(Plugin::X::method)" follows whether plugin X is loaded, as in
 * SpamAssassin: DecodeShortURLs is not (the stock rules then define
 * __URL_SHORTENER as a uri regex), HTMLEval is */
static void test_if_can_plugin(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"if can(Mail::SpamAssassin::Plugin::DecodeShortURLs::has_short_url_redir)\n"
		"body SHORT_EVAL eval:short_url()\n"
		"endif\n"
		"if !can(Mail::SpamAssassin::Plugin::DecodeShortURLs::has_short_url_redir)\n"
		"uri SHORT_RE m,^https?://bit\\.ly/,\n"
		"endif\n"
		"if can(Mail::SpamAssassin::Plugin::HTMLEval::html_test)\n"
		"body HTML_EVAL eval:html_test('html')\n"
		"endif\n"
		"if can(Mail::SpamAssassin::Conf::feature_bug6558_free)\n"
		"body FEATURE /x/\n"
		"endif\n");
	assert_false(loaded(rs, "SHORT_EVAL"));
	assert_true(loaded(rs, "SHORT_RE"));
	assert_true(loaded(rs, "HTML_EVAL"));
	assert_true(loaded(rs, "FEATURE"));
	rules_free(rs);
}

static void test_bad_arguments(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"body B1 eval:html_tag_balance('bo dy', '!= 0')\n"
		"body B2 eval:html_eval('length', '&& 1')\n"
		"body B3 eval:html_range('no_such_result', '1', '2')\n"
		"body B4 eval:html_text_match('comment', '(unclosed')\n"
		"body B5 eval:image_count('bmp', 1)\n"
		"body B6 eval:html_test('no_such_flag')\n"
		"body B7 eval:html_text_match('nowhere', 'x')\n"
		"body B8 eval:pixel_coverage('gif', 'lots')\n"
		"body B9 eval:html_range('length', 'x', '2')\n"
		"body B10 eval:html_image_only('0', 'x')\n"
		"body B11 eval:image_name_regex('(unclosed')\n"
		"body B12 eval:image_named('')\n"
		"body OK1 eval:html_range('length', '0', '1024')\n"
		"body OK2 eval:html_tag_balance('center', '!= 0')\n");
	static const char *const bad[] = { "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", NULL };
	for (size_t i = 0; bad[i]; i++) {
		if (loaded(rs, bad[i])) fprintf(stderr, "%s loaded\n", bad[i]);
		assert_false(loaded(rs, bad[i]));
	}
	assert_true(loaded(rs, "OK1"));
	assert_true(loaded(rs, "OK2"));
	rules_free(rs);
	/* a url_shortener that is not a domain is a load error */
	rs = rules_new();
	char err[256] = "";
	const char *t = "url_shortener bit.ly/x\n";
	assert_int_equal(rules_load_text(rs, "bad.cf", t, strlen(t), err, sizeof err), -1);
	assert_non_null(strstr(err, "bad.cf:1:"));
	rules_free(rs);
}

/* hostile input: unterminated markup, deep nesting, huge attribute counts */
static void test_hostile_html(void **st)
{
	(void)st;
	static const char *const docs[] = {
		"<", "<a", "<a href='", "<!--", "<!", "</", "<script>", "<title>x", "&#99999999999;", "&#x;",
		"<font color=\"rgb(999999999999,1,1)\">x", "<p style=\"color: rgb(,,,)\">x</p>",
		"<font size=\"+99999999999\">x</font>", "<plaintext><b>x", NULL
	};
	for (size_t i = 0; docs[i]; i++) {
		struct html_stats *s = html_stats_parse(docs[i], strlen(docs[i]), 1);
		assert_non_null(s);
		html_stats_free(s);
	}
	size_t n = 400000;
	char *deep = malloc(n + 1);
	assert_non_null(deep);
	for (size_t i = 0; i + 6 <= n; i += 6) memcpy(deep + i, "<font>", 6);
	deep[n - n % 6] = '\0';
	struct html_stats *s = html_stats_parse(deep, strlen(deep), 0);
	assert_int_equal(html_stats_inside(s, "font"), (int)(n / 6));
	html_stats_free(s);
	for (size_t i = 0; i + 4 <= n; i += 4) memcpy(deep + i, "<a\n ", 4);
	s = html_stats_parse(deep, strlen(deep), 0);
	html_stats_free(s);
	free(deep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_html_structure),
		cmocka_unit_test(test_html_fonts),
		cmocka_unit_test(test_html_tags_and_text),
		cmocka_unit_test(test_html_images_and_links),
		cmocka_unit_test(test_html_charset_faraway),
		cmocka_unit_test(test_images),
		cmocka_unit_test(test_short_urls),
		cmocka_unit_test(test_if_can_plugin),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_hostile_html),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
