/* test_rules.c - unit tests for rules/: every construct of the rule
 * language parsed and evaluated (header with :name/:addr/:raw/exists:/ALL/
 * if-unset/!~, body, rawbody, full, uri, meta arithmetic and boolean,
 * score, describe, tflags nice/multiple/maxhits, ifplugin/if/else, include,
 * replace_tag), eval: rules reported as not loaded, syntax errors with
 * FILE:LINE, Hyperscan refusals falling back to PCRE2, the on-disk cache,
 * the time budget, and the PCRE2 work per line (each line once per rule). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <cmocka.h>

#include "rules/rules.h"
#include "tests/unit/unit_tmpdir.h"

struct hits { char names[4096]; double score; unsigned counts[64]; char cnames[64][64]; size_t n; };

static void collect(void *arg, const struct rules_hit *h)
{
	struct hits *hs = arg;
	strcat(hs->names, h->name);
	strcat(hs->names, " ");
	hs->score += h->score * h->count;
	if (hs->n < 64) {
		snprintf(hs->cnames[hs->n], 64, "%s", h->name);
		hs->counts[hs->n++] = h->count;
	}
}

static unsigned count_of(const struct hits *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++) if (strcmp(h->cnames[i], name) == 0) return h->counts[i];
	return 0;
}

static int has(const struct hits *h, const char *name)
{
	return count_of(h, name) > 0;
}

static struct ruleset *load(const char *text, const char *cache)
{
	struct ruleset *rs = rules_new();
	char err[512] = "";
	int rc = rules_load_text(rs, "test.cf", text, strlen(text), err, sizeof err);
	if (rc) fprintf(stderr, "load: %s\n", err);
	assert_int_equal(rc, 0);
	rc = rules_compile(rs, cache, err, sizeof err);
	if (rc) fprintf(stderr, "compile: %s\n", err);
	assert_int_equal(rc, 0);
	return rs;
}

static const struct rules_header std_headers[] = {
	{ "From", "\"Alice Example\" <alice@example.com>", NULL },
	{ "To", "bob@example.org (Bob)", NULL },
	{ "Subject", "=?utf-8?q?caf=C3=A9?= offer\n\tfolded", "caf\xc3\xa9 offer folded" },
	{ "X-Mailer", "Spammer 1.0", NULL },
	{ "Received", "from a by b", NULL },
	{ "Received", "from c by d", NULL },
	{ "Resent-Message-Id", "<a@b.example>", NULL },
	{ "Sender", "=?utf-8?q?J=C3=BCrgen?= <j@example.net>", "J\xc3\xbcrgen <j@example.net>" },
};

static void scan(struct ruleset *rs, struct hits *h, const char *const *body, size_t nbody,
                 const char *full, const char *const *uris, size_t nuris)
{
	size_t lens[64];
	for (size_t i = 0; i < nbody; i++) lens[i] = strlen(body[i]);
	struct rules_input in = {
		.headers = std_headers, .nheaders = sizeof std_headers / sizeof *std_headers,
		.body = body, .body_len = lens, .nbody = nbody,
		.rawbody = body, .rawbody_len = lens, .nrawbody = nbody,
		.full = full, .full_len = full ? strlen(full) : 0,
		.uris = uris, .nuris = nuris,
	};
	memset(h, 0, sizeof *h);
	struct rules_scratch *s = rules_scratch_new(rs);
	assert_non_null(s);
	assert_int_equal(rules_scan(rs, s, &in, collect, h), 0);
	rules_scratch_free(s);
}

static void test_headers(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header H_SUBJ Subject =~ /caf\xc3\xa9 offer folded$/\n"
		"header H_SUBJ_RAW Subject:raw =~ /=\\?utf-8\\?q\\?caf=C3=A9\\?=/i\n"
		"header H_FROM_NAME From:name =~ /^Alice Example$/\n"
		"header H_FROM_ADDR From:addr =~ /^alice\\@example\\.com$/\n"
		"header H_TO_ADDR To:addr =~ /^bob\\@example\\.org$/\n"
		"header H_TO_NAME To:name =~ /^Bob$/\n"
		"header H_EXISTS exists:X-Mailer\n"
		"header H_NOT_EXISTS exists:X-Nope\n"
		"header H_ALL ALL =~ /^X-Mailer: Spammer/m\n"
		"header H_NEG X-Mailer !~ /Outlook/\n"
		"header H_NEG_MISS X-Nope !~ /foo/\n"
		"header H_UNSET X-Nope =~ /^dflt$/ [if-unset: dflt]\n"
		"header H_RCVD Received =~ /by b\\nfrom c/\n"
		"header H_CASE subject =~ /OFFER/i\n"
		"header H_NOMATCH Subject =~ /viagra/\n"
		"header H_MSGID MESSAGEID =~ /<a\\@b\\.example>/\n"
		"header H_MSGID_CASE exists:MessageID\n"
		"header H_NAME_RAW Sender:name:raw =~ /^=\\?utf-8\\?q\\?J=C3=BCrgen\\?=$/\n"
		"header H_NAME_DEC Sender:name =~ /^J\xc3\xbcrgen$/\n"
		"header H_ADDR_RAW Sender:raw:addr =~ /^j\\@example\\.net$/\n", NULL);
	struct hits h;
	scan(rs, &h, NULL, 0, NULL, NULL, 0);
	const char *want[] = { "H_SUBJ", "H_SUBJ_RAW", "H_FROM_NAME", "H_FROM_ADDR", "H_TO_ADDR", "H_TO_NAME",
		"H_EXISTS", "H_ALL", "H_NEG", "H_UNSET", "H_RCVD", "H_CASE", "H_MSGID", "H_NAME_RAW", "H_NAME_DEC",
		"H_ADDR_RAW" };
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		if (!has(&h, want[i])) fprintf(stderr, "missing %s in: %s\n", want[i], h.names);
		assert_true(has(&h, want[i]));
	}
	assert_false(has(&h, "H_NOT_EXISTS"));
	assert_false(has(&h, "H_NOMATCH"));
	assert_false(has(&h, "H_NEG_MISS"));   /* a missing header without if-unset is not tested */
	assert_false(has(&h, "H_MSGID_CASE"));  /* pseudo-header names are case-sensitive */
	assert_int_equal(rules_get_stats(rs)->loaded[RK_HEADER], 20);
	rules_free(rs);
}

static void test_body_kinds_and_tflags(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"body B_PHRASE /\\bfree money\\b/i\n"
		"describe B_PHRASE Talks about free money\n"
		"score B_PHRASE 2.5\n"
		"body B_MULTI /click/\n"
		"tflags B_MULTI multiple\n"
		"body B_MAX /click/\n"
		"tflags B_MAX multiple maxhits=2\n"
		"body B_ONCE /click/\n"
		"body B_NICE /newsletter/\n"
		"tflags B_NICE nice\n"
		"score B_NICE -1\n"
		"rawbody R_TAG /<font/i\n"
		"full F_HDR /^X-Mailer: Spammer/m\n"
		"uri U_IP m{^https?://\\d+\\.\\d+\\.\\d+\\.\\d+}\n"
		"uri U_NONE /example\\.net/\n"
		"uri U_REDIR m{^http://198\\.51\\.100\\.9/}\n"
		"uri U_PATTERN m{^https?://target\\.example/}\n"
		"uri U_PATTERN_NOSCHEME m{^http://target2\\.example/}\n"
		"redirector_pattern m'^https?:/*(?:\\w+\\.)?goo\\.example/url\\?.*?(?<=[?&])q=(.*?)(?:$|[&\\#])'i\n"
		"uri U_SCHEMELESS m{^http://www\\.bare\\.example$}\n"
		"uri U_NOUSER m{^http://host\\.example/}\n"
		"body __SUB /click/\n"
		"body ZERO /click/\n"
		"score ZERO 0\n", NULL);
	const char *body[] = { "Subject line\n", "get FREE money now click click\n", "click <font> newsletter\n" };
	const char *uris[] = { "http://192.0.2.1/x", "https://example.org/",
		"http://rd.yahoo.com/*http://198.51.100.9/farm/?aid=1",
		"http://www.goo.example/url?sa=t&q=https://target.example/x&b=1",
		"www.bare.example", "http://user@host.example/",
		"http://www.goo.example/url?q=target2.example/x" };
	struct hits h;
	scan(rs, &h, body, 3, "From: a\nX-Mailer: Spammer 1\n\nbody\n", uris, 7);
	assert_true(has(&h, "B_PHRASE"));
	assert_int_equal(count_of(&h, "B_MULTI"), 3);
	assert_int_equal(count_of(&h, "B_MAX"), 2);
	assert_int_equal(count_of(&h, "B_ONCE"), 1);
	assert_true(has(&h, "B_NICE"));
	assert_true(has(&h, "R_TAG"));
	assert_true(has(&h, "F_HDR"));
	assert_true(has(&h, "U_IP"));
	assert_false(has(&h, "U_NONE"));
	assert_true(has(&h, "U_REDIR"));        /* the target behind a redirector */
	assert_true(has(&h, "U_PATTERN"));      /* redirector_pattern's capture */
	/* a capture without a scheme only a redirector_pattern finds: the uri
	 * rules matched its patterns with room for no capture, so they never
	 * saw it (the blocklists did) */
	assert_true(has(&h, "U_PATTERN_NOSCHEME"));
	assert_true(has(&h, "U_SCHEMELESS"));
	assert_true(has(&h, "U_NOUSER"));
	assert_false(has(&h, "__SUB"));    /* sub-rules are not reported */
	assert_false(has(&h, "ZERO"));     /* score 0 disables */
	/* score: 2.5 + 3 + 2 + 1 (default) - 1 + 1 + 1 + 1 + 5 uri rules */
	assert_true(h.score > 15.49 && h.score < 15.51);
	rules_free(rs);
}

static void test_meta(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"body __A /alpha/\n"
		"body __B /beta/\n"
		"body __C /gamma/\n"
		"body __M /click/\n"
		"tflags __M multiple\n"
		"meta M_AND __A && __B\n"
		"meta M_OR (__A || __C)\n"
		"meta M_NOT __A && !__C\n"
		"meta M_SUM (__A + __B + __C) >= 2\n"
		"meta M_SUM3 (__A + __B + __C) > 2\n"
		"meta M_COUNT __M > 2\n"
		"meta M_ARITH __M * 2 - 1 == 5\n"
		"meta M_META M_AND && M_SUM\n"
		"meta M_UNDEF __A && NEVER_DEFINED\n"
		"meta M_UNDEF_OR __A || NEVER_DEFINED\n"
		"meta M_EVAL __A && E_EVAL\n"
		"body E_EVAL eval:check_something()\n"
		"header E_NET eval:check_rbl('x', 'zen.example.')\n"
		"tflags E_NET net\n"
		"meta M_NET __A && !E_NET\n", NULL);
	const char *body[] = { "alpha beta click click\n", "click\n" };
	struct hits h;
	scan(rs, &h, body, 2, NULL, NULL, 0);
	assert_true(has(&h, "M_AND"));
	assert_true(has(&h, "M_OR"));
	assert_true(has(&h, "M_NOT"));
	assert_true(has(&h, "M_SUM"));
	assert_false(has(&h, "M_SUM3"));
	assert_true(has(&h, "M_COUNT"));
	assert_true(has(&h, "M_ARITH"));
	assert_true(has(&h, "M_META"));
	assert_false(has(&h, "M_UNDEF"));
	assert_true(has(&h, "M_UNDEF_OR"));
	assert_false(has(&h, "M_EVAL"));
	assert_true(has(&h, "M_NET"));     /* a network test (loaded, no DNS here) is not hit */
	/* the eval rule and the meta over it: not loaded, with reasons */
	const struct rules_stats *s = rules_get_stats(rs);
	assert_int_equal(s->not_loaded, 2);          /* E_EVAL, M_EVAL: check_rbl (E_NET) loads */
	assert_int_equal(s->not_loaded_eval, 1);
	const char *why, *n0 = rules_not_loaded(rs, 0, &why);
	assert_non_null(n0);
	int saw_meta = 0;
	for (size_t i = 0; (n0 = rules_not_loaded(rs, i, &why)); i++)
		if (strcmp(n0, "M_EVAL") == 0) { saw_meta = 1; assert_non_null(strstr(why, "E_EVAL")); }
	assert_true(saw_meta);
	rules_free(rs);
}

static void test_blocks_and_include(void **st)
{
	(void)st;
	const char *dir = unit_dir;
	char inc[300], main_cf[300];
	snprintf(inc, sizeof inc, "%s/inc.cf", dir);
	snprintf(main_cf, sizeof main_cf, "%s/main.cf", dir);
	FILE *f = fopen(inc, "w");
	fputs("body INCLUDED /included/\n", f);
	fclose(f);
	f = fopen(main_cf, "w");
	fputs("# comment\n"
	      "include inc.cf\n"
	      "ifplugin Mail::SpamAssassin::Plugin::ReplaceTags\n"
	      "body IN_PLUGIN /plugin/ # trailing comment\n"
	      "endif\n"
	      "ifplugin Mail::SpamAssassin::Plugin::NoSuchPlugin\n"
	      "body IN_MISSING /plugin/\n"
	      "if (version >= 3.004000)\n"
	      "body NESTED /plugin/\n"
	      "endif\n"
	      "endif\n"
	      "if (version >= 3.004000)\n"
	      "body NEW_SA /plugin/\n"
	      "else\n"
	      "body OLD_SA /plugin/\n"
	      "endif\n"
	      "if !plugin(Mail::SpamAssassin::Plugin::NoSuchPlugin)\n"
	      "body NOT_PLUGIN /plugin/\n"
	      "endif\n"
	      "if can(Mail::SpamAssassin::Conf::feature_bug6558_free)\n"
	      "body CAN_FEATURE /plugin/\n"
	      "endif\n"
	      "replace_tag V (?:v|\\\\/)\n"
	      "replace_tag I (?:i|1|l)\n"
	      "replace_inter W1 [\\s_]?\n"
	      "replace_tag AGRA agr<A>\n"
	      "replace_tag A (?:a|4)\n"
	      "body NESTED_TAG /<V><I><AGRA>/i\n"
	      "replace_rules NESTED_TAG\n"
	      "body TAGGED /<inter W1><V><I>agra/i\n"
	      "replace_rules TAGGED\n", f);
	fclose(f);
	struct ruleset *rs = rules_new();
	char err[512];
	assert_int_equal(rules_load_file(rs, main_cf, err, sizeof err), 0);
	assert_int_equal(rules_compile(rs, NULL, err, sizeof err), 0);
	const char *body[] = { "plugin included v 1agra v1agr4\n" };
	struct hits h;
	scan(rs, &h, body, 1, NULL, NULL, 0);
	assert_true(has(&h, "INCLUDED"));
	assert_true(has(&h, "IN_PLUGIN"));
	assert_false(has(&h, "IN_MISSING"));
	assert_false(has(&h, "NESTED"));
	assert_true(has(&h, "NEW_SA"));
	assert_false(has(&h, "OLD_SA"));
	assert_true(has(&h, "NOT_PLUGIN"));
	assert_true(has(&h, "CAN_FEATURE"));
	assert_true(has(&h, "TAGGED"));
	assert_true(has(&h, "NESTED_TAG"));       /* a tag inside a tag's value */
	rules_free(rs);
	/* a directory: every *.cf, in name order */
	rs = rules_new();
	assert_int_equal(rules_load_file(rs, dir, err, sizeof err), 0);
	assert_int_equal(rules_get_stats(rs)->files, 3);   /* inc.cf, main.cf, inc.cf again via include */
	rules_free(rs);
}

static void expect_error(const char *text, const char *want)
{
	struct ruleset *rs = rules_new();
	char err[512] = "";
	int rc = rules_load_text(rs, "bad.cf", text, strlen(text), err, sizeof err);
	if (rc == 0 || !strstr(err, want)) fprintf(stderr, "text %s: err \"%s\" want \"%s\"\n", text, err, want);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(err, want));
	rules_free(rs);
}

/* eval: rules that an eval module knows are loaded and evaluated before
 * the metas; arguments are checked; unknown functions stay not loaded */
static void test_eval_framework(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header NO_TO eval:check_for_missing_to_header()\n"
		"header TWO_RCVD eval:check_header_count_range('Received', \"2\", 3)\n"
		"header ONE_RCVD eval:check_header_count_range('Received','1','1')\n"
		"header BAD_ARGS eval:check_header_count_range('Received')\n"
		"body UNKNOWN_FN eval:check_something_perl()\n"
		"meta M_OVER_EVAL TWO_RCVD && !NO_TO\n"
		"meta M_OVER_UNKNOWN TWO_RCVD && UNKNOWN_FN\n", NULL);
	struct hits h;
	scan(rs, &h, NULL, 0, NULL, NULL, 0);
	assert_false(has(&h, "NO_TO"));
	assert_true(has(&h, "TWO_RCVD"));
	assert_false(has(&h, "ONE_RCVD"));
	assert_true(has(&h, "M_OVER_EVAL"));
	const struct rules_stats *s = rules_get_stats(rs);
	assert_int_equal(s->loaded[RK_HEADER], 3);
	assert_int_equal(s->not_loaded, 3);          /* BAD_ARGS, UNKNOWN_FN, M_OVER_UNKNOWN */
	assert_int_equal(s->not_loaded_eval, 1);     /* the unknown function */
	const char *why, *n;
	int saw = 0;
	for (size_t i = 0; (n = rules_not_loaded(rs, i, &why)); i++)
		if (strcmp(n, "BAD_ARGS") == 0) { saw = 1; assert_non_null(strstr(why, "arguments")); }
	assert_true(saw);
	rules_free(rs);

	/* without a To field */
	rs = load("header NO_TO eval:check_for_missing_to_header()\n", NULL);
	static const struct rules_header no_to[] = { { "From", "a@example.com", NULL } };
	struct rules_input in = { .headers = no_to, .nheaders = 1 };
	struct rules_scratch *scr = rules_scratch_new(rs);
	memset(&h, 0, sizeof h);
	rules_scan(rs, scr, &in, collect, &h);
	assert_true(has(&h, "NO_TO"));
	rules_scratch_free(scr);
	rules_free(rs);
	/* a call that cannot be parsed is a syntax error with FILE:LINE */
	expect_error("header X eval:check_header_count_range('a',\n", "bad.cf:1:");
	expect_error("body X eval:fn('unterminated)\n", "bad.cf:1:");
}

/* A regex past PCRE2's compiled-size limit is cut into pieces whose union
 * matches the same (an alternation in context, optional groups included) */
static void test_regex_too_large_is_split(void **st)
{
	(void)st;
	/* as SpamAssassin's rules reach it: replace_tag expansions (a rule
	 * file line is at most 64 KB) */
	size_t cap = 400000, n = 0;
	char *cf = malloc(cap);
	assert_non_null(cf);
	for (int t = 0; t < 4; t++) {
		n += (size_t)snprintf(cf + n, cap - n, "replace_tag T%d ", t);
		for (int i = 0; i < 2000; i++) n += (size_t)snprintf(cf + n, cap - n, "%sw%05dx", i ? "|" : "", t * 2000 + i);
		n += (size_t)snprintf(cf + n, cap - n, "\n");
	}
	n += (size_t)snprintf(cf + n, cap - n, "replace_tag O opt");
	for (int i = 0; i < 500; i++) n += (size_t)snprintf(cf + n, cap - n, "|o%04d", i);
	n += (size_t)snprintf(cf + n, cap - n, "\nbody BIG /\\bpre\\s(?:<T0>|<T1>|<T2>|<T3>)"
	                      "(?:\\s(?:<O>))?\\spost\\b/i\n"
	                      "body REPEATED /(?:<T0>|<T1>|<T2>|<T3>){2}/\n"
	                      "replace_rules BIG REPEATED\n");
	struct ruleset *rs = load(cf, NULL);
	free(cf);
	assert_int_equal(rules_get_stats(rs)->loaded[RK_BODY], 1);
	const char *hit1[] = { "x PRE w07999x post y\n" };
	const char *hit2[] = { "pre w00000x o0499 post\n" };
	const char *miss1[] = { "pre w08000x post\n" };
	const char *miss2[] = { "pre w00001x o0500 post\n" };
	const char *miss3[] = { "pre w00001xpost\n" };
	struct hits h;
	scan(rs, &h, hit1, 1, NULL, NULL, 0);
	assert_true(has(&h, "BIG"));
	scan(rs, &h, hit2, 1, NULL, NULL, 0);
	assert_true(has(&h, "BIG"));
	scan(rs, &h, miss1, 1, NULL, NULL, 0);
	assert_false(has(&h, "BIG"));
	scan(rs, &h, miss2, 1, NULL, NULL, 0);
	assert_false(has(&h, "BIG"));
	scan(rs, &h, miss3, 1, NULL, NULL, 0);
	assert_false(has(&h, "BIG"));
	/* a repeated group cannot be cut: still reported as not loaded */
	const char *why = NULL;
	assert_string_equal(rules_not_loaded(rs, 0, &why), "REPEATED");
	assert_non_null(strstr(why, "too large"));
	rules_free(rs);
}

static void test_syntax_errors(void **st)
{
	(void)st;
	expect_error("body OK /x/\nbody BAD /unterminated\n", "bad.cf:2:");
	expect_error("\n\nheader H Subject ~~ /x/\n", "bad.cf:3:");
	expect_error("header H Subject =~ /x/ junk\n", "bad.cf:1:");
	expect_error("body X /x/q\n", "bad.cf:1:");
	expect_error("score X notanumber\n", "bad.cf:1:");
	expect_error("ifplugin Foo\nbody X /x/\n", "bad.cf:3: 1 if/ifplugin");
	expect_error("endif\n", "bad.cf:1: endif without if");
	expect_error("body bad-name /x/\n", "bad.cf:1:");
	expect_error("if (version >>> 3)\nendif\n", "bad.cf:1:");
	expect_error("meta\n", "bad.cf:1:");
	/* a regex PCRE2 refuses is not an error: reported as not loaded */
	struct ruleset *rs = rules_new();
	char err[512];
	const char *t = "body BADRE /(unclosed/\nmeta BADMETA BADRE &&\n";
	assert_int_equal(rules_load_text(rs, "x.cf", t, strlen(t), err, sizeof err), 0);
	assert_int_equal(rules_compile(rs, NULL, err, sizeof err), 0);
	assert_int_equal(rules_get_stats(rs)->not_loaded, 2);
	rules_free(rs);
}

static void test_fallback_and_cache(void **st)
{
	(void)st;
	const char *dir = unit_dir;
	const char *text =
		"body BACKREF /(\\w)\\1\\1\\1/\n"              /* back-reference: not Hyperscan */
		"body LOOKBEHIND /(?<!no )spam/\n"
		"body PLAIN /spam/\n"
		"body ATOMIC /(?>a+)b/\n";
	for (int round = 0; round < 2; round++) {
		struct ruleset *rs = load(text, dir);
		const struct rules_stats *s = rules_get_stats(rs);
		assert_int_equal(s->cache_hit, round == 1);
		assert_true(s->hs_patterns >= 1);
		assert_true(s->hs_prefilter + s->pcre_only >= 1);
		const char *body[] = { "zzzz no spam aab\n" };
		struct hits h;
		scan(rs, &h, body, 1, NULL, NULL, 0);
		assert_true(has(&h, "BACKREF"));
		assert_false(has(&h, "LOOKBEHIND"));
		assert_true(has(&h, "PLAIN"));
		assert_true(has(&h, "ATOMIC"));
		const char *body2[] = { "abcd spam\n" };
		scan(rs, &h, body2, 1, NULL, NULL, 0);
		assert_false(has(&h, "BACKREF"));
		assert_true(has(&h, "LOOKBEHIND"));
		rules_free(rs);
	}
}

static unsigned cache_files(const char *dir, const char *suffix)
{
	char cmd[300], out[32] = "";
	snprintf(cmd, sizeof cmd, "ls %s | grep -c '%s$'", dir, suffix);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	if (!fgets(out, sizeof out, p)) out[0] = '\0';
	pclose(p);
	return (unsigned)atoi(out);
}

/* every change of the rules leaves a database: the directory keeps the
 * CACHE_KEEP (4) most recently used of a kind, a hit counting as a use */
static void test_cache_pruned(void **st)
{
	(void)st;
	const char *dir = unit_dir;
	char text[128], first[128], cmd[400];
	snprintf(first, sizeof first, "body R0 /first version %d/\n", 0);
	rules_free(load(first, dir));
	/* the first version's file, made to look long unused */
	snprintf(cmd, sizeof cmd, "touch -d '2020-01-01' %s/rules-*.hsdb && touch -d '2020-01-01' %s/rules-1-x.hsdb.1.tmp"
	         " && touch %s/rules-1-y.hsdb.2.tmp", dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	for (int v = 1; v <= 3; v++) {
		snprintf(text, sizeof text, "body R%d /version %d of the rules/\n", v, v);
		rules_free(load(text, dir));
	}
	assert_int_equal(cache_files(dir, "hsdb"), 4);
	/* a hit renews the first version: the next write removes another */
	struct ruleset *rs = load(first, dir);
	assert_int_equal(rules_get_stats(rs)->cache_hit, 1);
	rules_free(rs);
	snprintf(cmd, sizeof cmd, "touch -d '2021-01-01' $(ls -tr %s/rules-1-*.hsdb | head -3)", dir);
	assert_int_equal(system(cmd), 0);      /* versions 1-3 older than the renewed one */
	rules_free(load("body R4 /version 4 of the rules/\n", dir));
	assert_int_equal(cache_files(dir, "hsdb"), 4);
	rs = load(first, dir);
	assert_int_equal(rules_get_stats(rs)->cache_hit, 1);   /* kept: it was used */
	rules_free(rs);
	/* a writer's stale temporary file went, a fresh one stays */
	assert_int_equal(cache_files(dir, "1.tmp"), 0);
	assert_int_equal(cache_files(dir, "2.tmp"), 1);
}

static void test_time_budget(void **st)
{
	(void)st;
	/* many PCRE2-only rules over many lines: 1 ms cannot be enough */
	char *text = malloc(200 * 64);
	text[0] = '\0';
	for (int i = 0; i < 200; i++) {
		char line[64];
		snprintf(line, sizeof line, "body BR%d /(\\w)\\1%d(x+x+)+y/\n", i, i);
		strcat(text, line);
	}
	struct ruleset *rs = load(text, NULL);
	free(text);
	enum { N = 200000 };
	const char **lines = calloc(N, sizeof *lines);
	size_t *lens = calloc(N, sizeof *lens);
	for (int i = 0; i < N; i++) { lines[i] = "aa xxxxxxxxxxxxxxxxxxxxxxxx some text of a line\n"; lens[i] = strlen(lines[i]); }
	struct rules_input in = { .body = lines, .body_len = lens, .nbody = N, .time_budget_ms = 1 };
	struct rules_scratch *s = rules_scratch_new(rs);
	struct hits h = { 0 };
	assert_int_equal(rules_scan(rs, s, &in, collect, &h), 1);
	in.time_budget_ms = 0;
	in.nbody = 2;
	assert_int_equal(rules_scan(rs, s, &in, collect, &h), 0);
	rules_scratch_free(s);
	free(lines);
	free(lens);
	rules_free(rs);
}

/* A regex that costs the square of its text's length in one PCRE2 call
 * (JIT's match limit counts per start offset, and not a repeat giving
 * back characters one at a time) used to run on past the budget inside
 * that call: the clock is read between calls.  Header texts and "full"
 * are not cut (SpamAssassin does not cut them either), so a text longer
 * than 4 KB is matched by the interpreter (its match limit bounds each
 * start offset) in runs of start offsets with the clock read between
 * runs. */
static double mono_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_long_text_bounded(void **st)
{
	(void)st;
	/* SpamAssassin 4.0.1's TO_MALFORMED (20_head_tests.cf): 128 KB of '@'
	 * cost 19 s in one call; a look-ahead over ".*" on a one-line 190 KB
	 * message, 50 s */
	struct ruleset *rs = load(
		"header TO_MALFORMED To =~ /(?:^|[^\\S\"])(?:(?:\\\"[^\\\"]+\\\"|\\S+)\\@\\S+\\.\\S+|^\\s*.+:\\s*;|"
		"^\\s*\\\"[^\\\"]+\\\":\\s*;|^\\s*\\([^\\)]*\\)\\s*$|<\\S+(?:\\!\\S+){1,}>|^\\s*$)/\n"
		"full LOOK_AHEAD /(?=.*\\d)/\n", NULL);
	enum { HN = 128 * 1024, FN = 190 * 1024 };
	char *to = malloc(HN + 1), *full = malloc(FN + 1);
	assert_non_null(to);
	assert_non_null(full);
	memset(to, '@', HN);
	to[HN] = '\0';
	memset(full, 'a', FN);
	full[FN] = '\0';
	struct rules_header hdr[] = { { "To", to, NULL } };
	struct rules_input in = { .headers = hdr, .nheaders = 1, .time_budget_ms = 200 };
	struct rules_scratch *s = rules_scratch_new(rs);
	assert_non_null(s);
	struct hits h = { 0 };
	unsigned long cut;

	/* the To: text: the interpreter gives up at its match limit at once
	 * (the rule not hit, and said so), not a timeout */
	double t0 = mono_now();
	int rc = rules_scan(rs, s, &in, collect, &h);
	double took = mono_now() - t0;
	print_message("To: %d KB: %.3f s\n", HN / 1024, took);
	assert_true(took < 5.0);
	assert_int_equal(rc, 0);
	assert_false(has(&h, "TO_MALFORMED"));
	assert_true(rules_scratch_limit_hits(s, &cut) >= 1);
	assert_int_equal(cut, 0);

	/* the full text: every start offset scans to the end of the line
	 * within the limit, so the time decides: stopped at the budget,
	 * inside the one call (runs of start offsets) */
	in.nheaders = 0;
	in.full = full;
	in.full_len = FN;
	memset(&h, 0, sizeof h);
	t0 = mono_now();
	rc = rules_scan(rs, s, &in, collect, &h);
	took = mono_now() - t0;
	print_message("full: %d KB: %.3f s, budget 0.2 s\n", FN / 1024, took);
	assert_true(took < 5.0);
	assert_int_equal(rc, 1);
	assert_false(has(&h, "LOOK_AHEAD"));
	rules_scratch_limit_hits(s, &cut);
	assert_int_equal(cut, 1);
	rules_scratch_free(s);
	free(to);
	free(full);
	rules_free(rs);
}

/* With a budget a long text is matched in runs of start offsets by the
 * interpreter, without by one JIT call: the same matches either way,
 * anchors, look-behinds and matches across a run's end included. */
static void test_long_text_runs_same_matches(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"full XY /xy\\d/\ntflags XY multiple\n"
		"full BEHIND /(?<=x)y\\d/\ntflags BEHIND multiple\n"
		"full LINE_START /^b/m\ntflags LINE_START multiple\n"
		"full AT_END /z\\z/\n"
		"full NOT_AT_START /^a/\n"
		"full LONG_SPAN /c{6000}d/\n"
		"full EMPTY /(?=q)/\ntflags EMPTY multiple\n", NULL);
	enum { N = 40000 };
	char *full = malloc(N + 1);
	assert_non_null(full);
	memset(full, '.', N);
	/* "xy1" on both sides of where runs end (the first is 64 offsets) */
	static const size_t at[] = { 0, 61, 64, 4093, 4096, 4099, 8189, 8192, 16383, 20000, 39990 };
	for (size_t i = 0; i < sizeof at / sizeof *at; i++) memcpy(full + at[i], "xy1", 3);
	for (size_t i = 150; i < 29000; i += 997) full[i] = '\n', full[i + 1] = 'b', full[i + 2] = 'q';
	memset(full + 30000, 'c', 6000);
	full[36000] = 'd';
	full[N - 1] = 'z';
	full[N] = '\0';
	struct rules_input in = { .full = full, .full_len = N };
	struct rules_scratch *s = rules_scratch_new(rs);
	assert_non_null(s);
	struct hits plain, runs;
	memset(&plain, 0, sizeof plain);
	assert_int_equal(rules_scan(rs, s, &in, collect, &plain), 0);
	in.time_budget_ms = 60000;
	memset(&runs, 0, sizeof runs);
	assert_int_equal(rules_scan(rs, s, &in, collect, &runs), 0);
	assert_string_equal(plain.names, runs.names);
	static const char *const names[] = { "XY", "BEHIND", "LINE_START", "AT_END", "NOT_AT_START", "LONG_SPAN", "EMPTY" };
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		assert_int_equal(count_of(&plain, names[i]), count_of(&runs, names[i]));
	unsigned lines = (29000 - 150 + 996) / 997;
	assert_int_equal(count_of(&runs, "XY"), sizeof at / sizeof *at);
	assert_int_equal(count_of(&runs, "BEHIND"), sizeof at / sizeof *at);
	assert_int_equal(count_of(&runs, "LINE_START"), lines);
	assert_int_equal(count_of(&runs, "EMPTY"), lines);
	assert_true(has(&runs, "AT_END"));
	assert_false(has(&runs, "NOT_AT_START"));
	assert_true(has(&runs, "LONG_SPAN"));
	unsigned long cut;
	assert_int_equal(rules_scratch_limit_hits(s, &cut), 0);
	assert_int_equal(cut, 0);
	rules_scratch_free(s);
	free(full);
	rules_free(rs);
}

/* Each line is confirmed at most once per rule.  A regex cut in pieces
 * has one Hyperscan id per piece, each reported where it first matches:
 * every reported piece used to be a candidate that PCRE2 ran, with all
 * the pieces, on every line after it, so a message firing k pieces cost
 * k times the lines, and a "multiple" rule counted the later lines again
 * for each. */
static unsigned long scan_work(struct ruleset *rs, struct rules_scratch *s, const char **lines, size_t n,
                               const char *rule, unsigned *count)
{
	size_t *lens = calloc(n, sizeof *lens);
	assert_non_null(lens);
	for (size_t i = 0; i < n; i++) lens[i] = strlen(lines[i]);
	struct rules_input in = { .body = lines, .body_len = lens, .nbody = n };
	struct hits h;
	memset(&h, 0, sizeof h);
	assert_int_equal(rules_scan(rs, s, &in, collect, &h), 0);
	free(lens);
	*count = count_of(&h, rule);
	return rules_scratch_matches(s);
}

static void test_lines_confirmed_once(void **st)
{
	(void)st;
	size_t cap = 400000, n = 0;
	char *cf = malloc(cap);
	assert_non_null(cf);
	for (int t = 0; t < 4; t++) {
		n += (size_t)snprintf(cf + n, cap - n, "replace_tag T%d ", t);
		for (int i = 0; i < 2000; i++) n += (size_t)snprintf(cf + n, cap - n, "%sw%05dx", i ? "|" : "", t * 2000 + i);
		n += (size_t)snprintf(cf + n, cap - n, "\n");
	}
	n += (size_t)snprintf(cf + n, cap - n, "body CUT /\\bpre\\s(?:<T0>|<T1>|<T2>|<T3>)\\spost\\b/\n"
	                      "tflags CUT multiple\nreplace_rules CUT\n"
	                      "header CUTH X-Cut =~ /\\bpre\\s(?:<T0>|<T1>|<T2>|<T3>)\\spost\\b/\n"
	                      "tflags CUTH multiple\nreplace_rules CUTH\n"
	                      "body BACKREF /(\\w)x\\1/\n");
	struct ruleset *rs = load(cf, NULL);
	free(cf);
	assert_int_equal(rules_get_stats(rs)->loaded[RK_BODY], 2);
	assert_int_equal(rules_get_stats(rs)->loaded[RK_HEADER], 1);
	enum { N = 2000 };
	const char **lines = calloc(2 * N, sizeof *lines);
	assert_non_null(lines);
	struct rules_scratch *s = rules_scratch_new(rs);
	assert_non_null(s);
	unsigned c;

	/* the cut rule: one piece reported on the first line, then two from
	 * the two ends of the tags (other pieces) */
	lines[0] = "pre w00000x post";
	for (size_t i = 1; i < N; i++) lines[i] = "a line of nothing";
	unsigned long one = scan_work(rs, s, lines, N, "CUT", &c);
	assert_int_equal(c, 1);
	lines[1] = "pre w07999x post";
	lines[2] = "pre w04000x post";
	unsigned long three = scan_work(rs, s, lines, N, "CUT", &c);
	assert_int_equal(c, 3);                    /* was 6: lines 1-2 counted again per piece */
	/* two more matches: two more PCRE2 calls (the search after each on
	 * its line), not the message again for each piece reported */
	assert_true(three < one + one / 10);

	/* a prefiltered rule (a back-reference) whose candidates never
	 * confirm, on every line: one match per line */
	for (size_t i = 0; i < 2 * N; i++) lines[i] = "axb";
	unsigned long w1 = scan_work(rs, s, lines, N, "BACKREF", &c);
	assert_int_equal(c, 0);
	unsigned long w2 = scan_work(rs, s, lines, 2 * N, "BACKREF", &c);
	assert_int_equal(c, 0);
	assert_true(w1 <= N + 8);
	assert_true(w2 <= 2 * w1 + 8);

	/* a header rule is checked on its own text once, however many of its
	 * pieces Hyperscan reports there */
	static const struct rules_header cut_hdr[] = {
		{ "X-Cut", "pre w00000x post, pre w07999x post, pre w04000x post", NULL },
	};
	struct rules_input hin = { .headers = cut_hdr, .nheaders = 1 };
	struct hits h;
	memset(&h, 0, sizeof h);
	assert_int_equal(rules_scan(rs, s, &hin, collect, &h), 0);
	assert_int_equal(count_of(&h, "CUTH"), 3);
	rules_scratch_free(s);
	free(lines);
	rules_free(rs);
}

/* one compiled set, four threads, each with its own scratch: the same
 * answers as one thread gives */
struct thr { struct ruleset *rs; int bad; };

static void *scan_many(void *arg)
{
	struct thr *t = arg;
	struct rules_scratch *s = rules_scratch_new(t->rs);
	for (int i = 0; i < 300; i++) {
		char line[128];
		snprintf(line, sizeof line, "line %d: %s\n", i, i % 2 ? "free money aaaa" : "nothing here");
		const char *body[] = { line };
		size_t len = strlen(line);
		struct rules_input in = { .headers = std_headers, .nheaders = sizeof std_headers / sizeof *std_headers,
			.body = body, .body_len = &len, .nbody = 1 };
		struct hits h;
		memset(&h, 0, sizeof h);
		rules_scan(t->rs, s, &in, collect, &h);
		int want = i % 2;
		if (has(&h, "T_MONEY") != want || has(&h, "T_BACKREF") != want || !has(&h, "T_HDR")) t->bad++;
	}
	rules_scratch_free(s);
	return NULL;
}

static void test_threads(void **st)
{
	(void)st;
	struct ruleset *rs = load("body T_MONEY /free money/\nbody T_BACKREF /(a)\\1\\1\\1/\n"
	                          "header T_HDR X-Mailer =~ /Spammer/\n", NULL);
	pthread_t th[4];
	struct thr t[4];
	for (int i = 0; i < 4; i++) { t[i].rs = rs; t[i].bad = 0; pthread_create(&th[i], NULL, scan_many, &t[i]); }
	for (int i = 0; i < 4; i++) { pthread_join(th[i], NULL); assert_int_equal(t[i].bad, 0); }
	rules_free(rs);
}

static void test_addresses(void **st)
{
	(void)st;
	char out[256];
	rules_addr_of("\"Doe, John\" <john@example.com>, other@x.org", out, sizeof out);
	assert_string_equal(out, "john@example.com");
	rules_name_of("\"Doe, John\" <john@example.com>, other@x.org", out, sizeof out);
	assert_string_equal(out, "Doe, John");
	rules_addr_of("jane@example.com (Jane Roe)", out, sizeof out);
	assert_string_equal(out, "jane@example.com");
	rules_name_of("jane@example.com (Jane Roe)", out, sizeof out);
	assert_string_equal(out, "Jane Roe");
	rules_name_of("plain@example.com", out, sizeof out);
	assert_string_equal(out, "");
}

/* default scores as SpamAssassin's: 1, 0.01 for T_, negated for nice;
 * a 4-value score line gives the value of the chosen score set */
static double score_of(const struct ruleset *rs, const char *name)
{
	for (size_t i = 0; i < rules_count(rs); i++) {
		enum rule_kind k;
		int loaded;
		double sc;
		if (strcmp(rules_info(rs, i, &k, &loaded, &sc), name) == 0) return sc;
	}
	return -999;
}

static void test_default_scores_and_score_sets(void **st)
{
	(void)st;
	static const char text[] =
		"header PLAIN Subject =~ /a/\n"
		"header T_PROBE Subject =~ /b/\n"
		"header GOOD Subject =~ /c/\n"
		"tflags GOOD nice\n"
		"header FOUR Subject =~ /d/\n"
		"score FOUR 0.5 1.5 2.5 3.5\n"
		"header ONE Subject =~ /e/\n"
		"score ONE 0.7\n";
	for (int set = 0; set <= 3; set++) {
		struct ruleset *rs = rules_new();
		char err[512] = "";
		rules_set_score_set(rs, set);
		assert_int_equal(rules_load_text(rs, "t.cf", text, strlen(text), err, sizeof err), 0);
		assert_int_equal(rules_compile(rs, NULL, err, sizeof err), 0);
		assert_true(score_of(rs, "PLAIN") == 1.0);
		assert_true(score_of(rs, "T_PROBE") == 0.01);
		assert_true(score_of(rs, "GOOD") == -1.0);
		assert_true(score_of(rs, "FOUR") == 0.5 + set);
		assert_true(score_of(rs, "ONE") == 0.7);
		rules_free(rs);
	}
}


/* the canonical forms: what a browser opens is among them (and its host
 * is what rules_uri_host gives), as SpamAssassin 4.0.1's
 * uri_list_canonicalize makes them, plus the IDNA A-label of a Unicode
 * host; never more than 32 forms */
static int canon_host_is(const char *uri, const char *want)
{
	char **forms, host[256];
	size_t n = rules_uri_canon(uri, &forms);
	int found = 0;
	assert_true(n <= 32);
	for (size_t i = 0; i < n; i++)
		if (rules_uri_host(forms[i], host, sizeof host) == 0 && strcmp(host, want) == 0) found = 1;
	rules_uri_forms_free(forms, n);
	return found;
}

static int canon_has(const char *uri, const char *want)
{
	char **forms;
	size_t n = rules_uri_canon(uri, &forms);
	int found = 0;
	for (size_t i = 0; i < n; i++) found |= strcmp(forms[i], want) == 0;
	rules_uri_forms_free(forms, n);
	return found;
}

static void test_uri_canon(void **state)
{
	(void)state;
	static const char *const spammer[] = {
		"http://spammer.example/x", "http:\\\\spammer.example\\x", "http:spammer.example/x",
		"http://spammer.example\\@clean.example/", "http://%73pammer.example/x",
		"http://spammer%2Eexample/x", "http://SPAMMER.example./x", "spammer.example/x",
		"http://spammer\xE3\x80\x82" "example/x", "http://spammer\xEF\xBC\x8E" "example/x",
		"http://spam\r\nmer.example/x", "http://spam\tmer.example/x", "http://spam\x01mer.example/x",
		"http://user@spammer.example:8080/x", "%68ttp://spammer.example/",
		"http://r.example/?u=http%3A%2F%2Fspammer.example%2Fx",
	};
	for (size_t i = 0; i < sizeof spammer / sizeof *spammer; i++) {
		if (!canon_host_is(spammer[i], "spammer.example")) fail_msg("%s: no spammer.example form", spammer[i]);
	}
	assert_true(canon_host_is("http://sp\xC3\xA4mmer.example/x", "xn--spmmer-cua.example"));
	assert_true(canon_host_is("http://SP\xC3\x84MMER\xE3\x80\x82" "example/", "xn--spmmer-cua.example"));
	static const char *const ip[] = {
		"http://3325256784/x", "http://0xc6336450/x", "http://0xc6.0x33.0x64.0x50/x",
		"http://0306.063.0144.0120/x", "http://0x00000000c6336450/x", "http://198.051.100.080/x",
	};
	/* 051 and 080: 051 is octal (41), 080 is not (80, leading zero dropped) */
	assert_true(canon_has("http://198.051.100.080/x", "http://198.41.100.80/x"));
	for (size_t i = 0; i < 5; i++)
		if (!canon_has(ip[i], "http://198.51.100.80/x")) fail_msg("%s: no dotted quad", ip[i]);
	/* not addresses: octets over 255, numbers over 32 bits, a name */
	assert_false(canon_has("http://256.1.1.1/", "http://0.1.1.1/"));
	assert_false(canon_host_is("http://4294967296/", "0.0.0.0"));
	assert_false(canon_host_is("http://4294967296/", "1.0.0.0"));
	assert_true(canon_host_is("http://4294967295/", "255.255.255.255"));
	/* %00 stays written; mail addresses are left alone */
	assert_true(canon_has("http://a.example/%00x", "http://a.example/%00x"));
	char **forms;
	size_t n = rules_uri_canon("mailto:a@b.example", &forms);
	assert_int_equal(n, 1);
	rules_uri_forms_free(forms, n);
	/* SpamAssassin 4.0.1's forms (sa_canon.pl in the session notes printed
	 * them): a bare host as Firefox completes it ... */
	assert_true(canon_has("http://foobar/x", "http://www.foobar.com/x"));
	assert_true(canon_has("http://foobar:80/x", "http://www.foobar.com:80/x"));
	assert_true(canon_has("http://foobar!/", "http://www.foobar!.com/"));
	assert_true(canon_has("http://spammer&#46;example/", "http://www.spammer&.com/#46;example/"));
	static const char *const not_bare[] = {
		"https://foobar/", "http://u@foobar/", "http://foobar:8080/", "http://localhost/",
		"http://1234/", "http://0x1f/", "HTTP://foobar/", "http://foo.bar/",
	};
	for (size_t i = 0; i < sizeof not_bare / sizeof *not_bare; i++) {
		char **fv;
		size_t fn = rules_uri_canon(not_bare[i], &fv);
		for (size_t k = 0; k < fn; k++)
			if (strstr(fv[k], ".com")) fail_msg("%s: bare-host form %s", not_bare[i], fv[k]);
		rules_uri_forms_free(fv, fn);
	}
	/* ... the default port dropped (and user@ with it, as SpamAssassin
	 * joins scheme, host and rest), its scheme compared as written ... */
	assert_true(canon_has("http://x.example:80/p", "http://x.example/p"));
	assert_true(canon_has("http://x.example:80", "http://x.example"));
	assert_true(canon_has("https://x.example:443/p", "https://x.example/p"));
	assert_true(canon_has("http://u@x.example:80/p", "http://x.example/p"));
	assert_true(canon_has("HTTP://x.example:443/", "HTTP://x.example/"));
	assert_false(canon_has("http://x.example:8080/", "http://x.example/"));
	assert_false(canon_has("http://x.example:80a/", "http://x.examplea/"));
	assert_false(canon_has("http://x.example:443/", "http://x.example/"));
	assert_false(canon_has("https://x.example:80/", "https://x.example/"));
	assert_false(canon_has("https://x.example:4430/", "https://x.example0/"));
	assert_true(canon_has("http://sp\xC3\xA4mmer.example:80/x", "http://xn--spmmer-cua.example/x"));
	/* ... and numeric character references, in its three passes with its
	 * ranges: decimal 33-126, hex 21-29 and 30-7e with a small x, then the
	 * dots (U+002E, U+3002, U+FF0E, U+FF61) in any case */
	assert_true(canon_has("http://x.example/a&#46;b&#x2e;c&#12290;d&#X2E;e&#x2E;f", "http://x.example/a.b.c.d.e.f"));
	assert_true(canon_has("http://x.example/&#65294;&#xff0e;&#65377;&#xFF61;&#x3002;", "http://x.example/....."));
	assert_true(canon_has("http://x.example/&#X41;&#x41;&#x2a;&#127;&#0065;&#x041;",
	                      "http://x.example/&#X41;A&#x2a;&#127;AA"));
	assert_true(canon_has("http://x.example/&#38;#x41;", "http://x.example/A"));
	/* the "/" before "#" comes first: a reference in the host is cut there */
	assert_false(canon_host_is("http://spammer&#46;example/", "spammer.example"));
	assert_true(canon_host_is("http://r.example/?u=http://evil&#46;example/x", "evil.example"));
	/* a hostile URI stays within the forms' bound */
	char big[4000];
	size_t j = 0;
	j += (size_t)snprintf(big, sizeof big, "http://a%%2e\xE3\x80\x82\t");
	while (j + 40 < sizeof big) j += (size_t)snprintf(big + j, sizeof big - j, "http:\\\\%%41\xE3\x80\x82x.example/");
	n = rules_uri_canon(big, &forms);
	assert_true(n >= 1 && n <= 32);
	rules_uri_forms_free(forms, n);
}

/* "http://www.X" becomes "http://www.X.com" unless X is a top-level
 * domain of the rules (util_rb_tld), as SpamAssassin's is_domain_valid;
 * and a scan reads the bridge's set of forms when it has one */
static void test_uri_forms_ruleset(void **state)
{
	(void)state;
	struct ruleset *rs = load(
		"util_rb_tld com shop\n"
		"uri U_BARE m{^http://www\\.foobar\\.com/}\n"
		"uri U_SHOP m{^http://www\\.shop\\.com/}\n"
		"uri U_NOPORT m{^https://secure\\.example/}\n", NULL);
	const char *uris[] = { "http://www.foobar/", "http://www.shop/", "https://secure.example:443/" };
	struct hits h;
	scan(rs, &h, NULL, 0, NULL, uris, 3);
	assert_true(has(&h, "U_BARE"));
	assert_false(has(&h, "U_SHOP"));
	assert_true(has(&h, "U_NOPORT"));
	/* the set given with the input is the one read: the forms of other
	 * URIs than uris[] here, to tell */
	const char *other[] = { "http://www.shop.com/", "http://x.example/", "http://y.example/" };
	struct rules_uri_set *set = rules_uri_set_new(rs, other, 3);
	size_t nf;
	assert_non_null(rules_uri_set_forms(set, 0, &nf));
	assert_true(nf >= 1);
	assert_null(rules_uri_set_forms(set, 3, &nf));
	assert_int_equal(nf, 0);
	struct rules_input in = { .uris = uris, .nuris = 3, .uri_forms = set };
	memset(&h, 0, sizeof h);
	struct rules_scratch *s = rules_scratch_new(rs);
	assert_int_equal(rules_scan(rs, s, &in, collect, &h), 0);
	assert_true(has(&h, "U_SHOP"));
	assert_false(has(&h, "U_BARE"));
	rules_scratch_free(s);
	rules_uri_set_free(set);
	rules_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_uri_forms_ruleset),
		cmocka_unit_test(test_body_kinds_and_tflags),
		cmocka_unit_test(test_meta),
		cmocka_unit_test_setup_teardown(test_blocks_and_include, unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_eval_framework),
		cmocka_unit_test(test_regex_too_large_is_split),
		cmocka_unit_test_setup_teardown(test_fallback_and_cache, unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_cache_pruned, unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test(test_time_budget),
		cmocka_unit_test(test_long_text_bounded),
		cmocka_unit_test(test_long_text_runs_same_matches),
		cmocka_unit_test(test_lines_confirmed_once),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_uri_canon),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_default_scores_and_score_sets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
