/* test_eval_facts.c - unit tests of rules/eval_facts.c: the WLBLEval
 * address and URI host lists (with their directives and the older
 * whitelist_/blacklist_ spellings), WelcomeListSubject, FreeMail, and the
 * SPF/DKIM/ARC/DMARC evals answered by facts (other filters' verdicts),
 * each hit and not hit by crafted messages; bad arguments refused at load. */
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

/* facts given by a test: "key=value" strings, value "\n"-separated lines */
static const char *const *test_facts;

static const char *fact(void *arg, const char *key)
{
	(void)arg;
	size_t kl = strlen(key);
	for (size_t i = 0; test_facts && test_facts[i]; i++)
		if (strncmp(test_facts[i], key, kl) == 0 && test_facts[i][kl] == '=') return test_facts[i] + kl + 1;
	return NULL;
}

struct msg {
	struct rules_header h[16];
	size_t nh;
	const char *body[8];
	size_t nbody;
	const char *uris[8];
	size_t nuris;
	struct rules_part parts[2];
	size_t nparts;
	const char *client_ip, *client_name;
};

static void hdr(struct msg *m, const char *name, const char *value)
{
	m->h[m->nh].name = name;
	m->h[m->nh].raw = value;
	m->h[m->nh].decoded = NULL;
	m->nh++;
}

static void scan(struct ruleset *rs, const struct msg *m, const char *const *facts, struct hits *h)
{
	size_t lens[8];
	for (size_t i = 0; i < m->nbody; i++) lens[i] = strlen(m->body[i]);
	struct rules_input in = {
		.headers = m->h, .nheaders = m->nh,
		.body = m->body, .body_len = lens, .nbody = m->nbody,
		.rawbody = m->body, .rawbody_len = lens, .nrawbody = m->nbody,
		.uris = m->uris, .nuris = m->nuris,
		.parts = m->parts, .nparts = m->nparts,
		.client_ip = m->client_ip, .client_name = m->client_name,
		.fact = fact,
	};
	test_facts = facts;
	memset(h, 0, sizeof *h);
	struct rules_scratch *s = rules_scratch_new(rs);
	assert_non_null(s);
	assert_int_equal(rules_scan(rs, s, &in, collect, h), 0);
	rules_scratch_free(s);
	test_facts = NULL;
}

static const char *why_not_loaded(const struct ruleset *rs, const char *name)
{
	const char *why, *n;
	for (size_t i = 0; (n = rules_not_loaded(rs, i, &why)); i++)
		if (strcmp(n, name) == 0) return why;
	return NULL;
}

static const char LISTS[] =
	"welcomelist_from *@friends.example joe@Work.Example\n"
	"blacklist_from spammer@evil.example\n"
	"whitelist_to boss@corp.example\n"
	"more_spam_to *@tolerant.example\n"
	"all_spam_to postmaster@corp.example\n"
	"blocklist_to nobody@corp.example\n"
	"enlist_addrlist (BANKS) *@bank.example service@pay?al.example\n"
	"unwelcomelist_from joe@work.example\n"
	"header WL_FROM eval:check_from_in_welcomelist()\n"
	"header WL_FROM_OLD eval:check_from_in_whitelist()\n"
	"header BL_FROM eval:check_from_in_blocklist()\n"
	"header WL_TO eval:check_to_in_welcomelist()\n"
	"header MORE_SPAM eval:check_to_in_more_spam()\n"
	"header ALL_SPAM eval:check_to_in_all_spam()\n"
	"header BL_TO eval:check_to_in_blacklist()\n"
	"header IN_BANKS eval:check_from_in_list('BANKS')\n"
	"header TO_BANKS eval:check_to_in_list('BANKS')\n"
	"header RT_BANKS eval:check_replyto_in_list('BANKS')\n"
	"header IN_NOLIST eval:check_from_in_list('NO_SUCH_LIST')\n";

static void test_address_lists(void **st)
{
	(void)st;
	struct ruleset *rs = load(LISTS);
	struct hits h;
	struct msg m = { .nh = 0 };
	hdr(&m, "From", "\"Ann\" <Ann@Friends.Example>, spammer@evil.example");
	hdr(&m, "To", "Boss <boss@corp.example>");
	hdr(&m, "Cc", "x@tolerant.example");
	hdr(&m, "Reply-To", "service@paypal.example");
	scan(rs, &m, NULL, &h);
	assert_true(has(&h, "WL_FROM"));
	assert_true(has(&h, "WL_FROM_OLD"));
	assert_true(has(&h, "BL_FROM"));
	assert_true(has(&h, "WL_TO"));
	assert_true(has(&h, "MORE_SPAM"));
	assert_false(has(&h, "ALL_SPAM"));
	assert_false(has(&h, "BL_TO"));
	assert_false(has(&h, "IN_BANKS"));
	assert_true(has(&h, "RT_BANKS"));
	assert_false(has(&h, "IN_NOLIST"));

	/* Resent-From replaces From; the recipient from "for <...>;" of a Received field */
	struct msg m2 = { .nh = 0 };
	hdr(&m2, "Received", "from a (a [192.0.2.1]) by mx.corp.example for <nobody@corp.example>; Mon, 1 Jan 2024");
	hdr(&m2, "Resent-From", "alerts@bank.example");
	hdr(&m2, "From", "ann@friends.example");
	hdr(&m2, "To", "postmaster@corp.example");
	hdr(&m2, "Reply-To", "a@bank.example, b@bank.example");
	scan(rs, &m2, NULL, &h);
	assert_false(has(&h, "WL_FROM"));
	assert_true(has(&h, "IN_BANKS"));
	assert_true(has(&h, "BL_TO"));
	assert_true(has(&h, "ALL_SPAM"));
	assert_false(has(&h, "WL_TO"));
	assert_false(has(&h, "RT_BANKS"));     /* two addresses: SpamAssassin asks them as one string */

	/* unwelcomelist_from took joe out; a group and a bare address */
	struct msg m3 = { .nh = 0 };
	hdr(&m3, "From", "joe@work.example");
	hdr(&m3, "To", "friends: a@x.example, b@bank.example;");
	scan(rs, &m3, NULL, &h);
	assert_false(has(&h, "WL_FROM"));
	assert_true(has(&h, "TO_BANKS"));
	rules_free(rs);
}

static void test_welcomelist_rcvd(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"welcomelist_from_rcvd *@news.example mail.news.example\n"
		"def_whitelist_from_rcvd *@bigco.example [192.0.2]\n"
		"def_welcomelist_from_rcvd *@v6.example [2001:db8::1]\n"
		"header WL_FROM eval:check_from_in_welcomelist()\n"
		"header DEF_WL eval:check_from_in_default_welcomelist()\n"
		"header FORGED_WL eval:check_forged_in_welcomelist()\n");
	struct hits h;
	struct msg m = { .nh = 0, .client_ip = "198.51.100.7", .client_name = "out1.mail.news.example" };
	hdr(&m, "From", "letters@news.example");
	scan(rs, &m, NULL, &h);
	assert_true(has(&h, "WL_FROM"));
	assert_false(has(&h, "FORGED_WL"));
	/* the same sender from elsewhere: a forgery */
	m.client_name = "dsl.isp.example";
	scan(rs, &m, NULL, &h);
	assert_false(has(&h, "WL_FROM"));
	assert_true(has(&h, "FORGED_WL"));
	/* an address entry in brackets: a classful prefix */
	struct msg m2 = { .nh = 0, .client_ip = "192.0.2.44" };
	hdr(&m2, "From", "billing@bigco.example");
	scan(rs, &m2, NULL, &h);
	assert_true(has(&h, "DEF_WL"));
	m2.client_ip = "192.0.20.44";
	scan(rs, &m2, NULL, &h);
	assert_false(has(&h, "DEF_WL"));
	/* no relay known: nothing to match */
	m2.client_ip = NULL;
	scan(rs, &m2, NULL, &h);
	assert_false(has(&h, "DEF_WL"));
	rules_free(rs);
}

static void test_subject_and_uri_hosts(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"welcomelist_subject [Ticket #*]\n"
		"blacklist_subject Make Money*Fast\n"
		"enlist_uri_host (SUSP) top xyz !ok.xyz\n"
		"blocklist_uri_host evil.example\n"
		"whitelist_uri_host good.example\n"
		"delist_uri_host (SUSP) top\n"
		"header SUBJ_WL eval:check_subject_in_welcomelist()\n"
		"header SUBJ_BL eval:check_subject_in_blacklist()\n"
		"header URI_SUSP eval:check_uri_host_listed('SUSP')\n"
		"body URI_BL eval:check_uri_host_in_blocklist()\n"
		"body URI_WL eval:check_uri_host_in_whitelist()\n");
	struct hits h;
	struct msg m = { .nh = 0, .nuris = 2, .uris = { "http://www.shop.xyz/buy", "https://user@a.b.evil.example:8080/x" } };
	hdr(&m, "Subject", "Re: [ticket #42] printer");
	scan(rs, &m, NULL, &h);
	assert_true(has(&h, "SUBJ_WL"));
	assert_false(has(&h, "SUBJ_BL"));
	assert_true(has(&h, "URI_SUSP"));
	assert_true(has(&h, "URI_BL"));
	assert_false(has(&h, "URI_WL"));
	struct msg m2 = { .nh = 0, .nuris = 3, .uris = { "http://ok.xyz/", "http://site.top/", "mailto:x@evil.example" } };
	hdr(&m2, "Subject", "MAKE MONEY very FAST");
	scan(rs, &m2, NULL, &h);
	assert_false(has(&h, "SUBJ_WL"));
	assert_true(has(&h, "SUBJ_BL"));
	assert_false(has(&h, "URI_SUSP"));     /* !ok.xyz excepts it; top was delisted */
	assert_false(has(&h, "URI_BL"));       /* mailto: is not asked */
	rules_free(rs);
}

/* the listed link after many decoy hosts (review rv-today4): 200 hosts of
 * a text part before it turned check_uri_host_in_blocklist off; links
 * are looked at first, and every host the MIME layer keeps is looked at */
static void test_uri_hosts_after_decoys(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"blocklist_uri_host evil.example\n"
		"body URI_BL eval:check_uri_host_in_blocklist()\n"
		/* the same lists through eval_net.c: one host list (review rv-today5) */
		"enlist_uri_host (BAD) evil.example\n"
		"body URI_LISTED eval:check_uri_host_listed('BAD')\n");
	enum { N = 2500 };
	static char buf[N][64];
	static const char *uris[N + 1];
	static unsigned char kinds[N + 1];
	struct hits h;
	for (int with_kinds = 0; with_kinds < 2; with_kinds++) {
		/* decoys: text URIs of distinct hosts (1999 without kinds: all
		 * of what the MIME layer keeps before a link; 2500 with them) */
		size_t n = with_kinds ? N : 1999;
		for (size_t i = 0; i < n; i++) {
			snprintf(buf[i], sizeof buf[i], "http://h%zu.decoy.example/x", i);
			uris[i] = buf[i];
			kinds[i] = RULES_URI_TEXT;
		}
		uris[n] = "http://www.evil.example/pay";
		kinds[n] = RULES_URI_ANCHOR;
		struct rules_input in = { .uris = uris, .nuris = n + 1, .uri_kinds = with_kinds ? kinds : NULL };
		memset(&h, 0, sizeof h);
		struct rules_scratch *s = rules_scratch_new(rs);
		assert_non_null(s);
		assert_int_equal(rules_scan(rs, s, &in, collect, &h), 0);
		rules_scratch_free(s);
		assert_true(has(&h, "URI_BL"));
		assert_true(has(&h, "URI_LISTED"));
	}
	rules_free(rs);
}

static const char FREEMAIL[] =
	"util_rb_tld com org example\n"
	"freemail_domains gmail.com yahoo.* mail.example\n"
	"freemail_whitelist vip@gmail.com\n"
	"header FM_FROM eval:check_freemail_from()\n"
	"header FM_FROM_DIGIT eval:check_freemail_from('\\d@')\n"
	"header FM_RT eval:check_freemail_header('Reply-To')\n"
	"header FM_RT_ADDR eval:check_freemail_header('Reply-To:addr', '^bob')\n"
	"header FM_REPLYTO eval:check_freemail_replyto('replyto')\n"
	"header FM_REPLY eval:check_freemail_replyto('reply')\n"
	"header FM_BODY eval:check_freemail_body()\n";

static void test_freemail(void **st)
{
	(void)st;
	struct ruleset *rs = load(FREEMAIL);
	struct hits h;
	/* From and Reply-To different freemail addresses */
	struct msg m = { .nh = 0 };
	hdr(&m, "From", "Alice <alice7@gmail.com>");
	hdr(&m, "Reply-To", "bob@yahoo.fr");
	scan(rs, &m, NULL, &h);
	assert_true(has(&h, "FM_FROM"));
	assert_true(has(&h, "FM_FROM_DIGIT"));
	assert_true(has(&h, "FM_RT"));
	assert_true(has(&h, "FM_RT_ADDR"));
	assert_true(has(&h, "FM_REPLYTO"));
	assert_true(has(&h, "FM_REPLY"));
	assert_false(has(&h, "FM_BODY"));
	/* not freemail: other domains, a welcomelisted address, a role address,
	 * a wildcard that does not span a dot */
	struct msg m2 = { .nh = 0 };
	hdr(&m2, "From", "vip@gmail.com");
	hdr(&m2, "Reply-To", "support@yahoo.com, x@yahoo.co.uk");
	scan(rs, &m2, NULL, &h);
	assert_false(has(&h, "FM_FROM"));
	assert_false(has(&h, "FM_RT"));
	assert_false(has(&h, "FM_REPLYTO"));
	/* 'reply': no Reply-To, From freemail, another freemail in the body
	 * (but not one in a URL or quoted as "<addr>") */
	struct msg m3 = { .nh = 0, .nbody = 3, .body = {
		"Subject line\n",
		"see http://x.example/u?e=q@gmail.com and <quoted@gmail.com> or quoted2@gmail.com wrote: hi\n",
		"write to carl@mail.example today\n" } };
	hdr(&m3, "From", "dan@gmail.com");
	scan(rs, &m3, NULL, &h);
	assert_true(has(&h, "FM_REPLY"));
	assert_false(has(&h, "FM_REPLYTO"));
	assert_true(has(&h, "FM_BODY"));
	/* the body has too many addresses: it says nothing */
	struct msg m4 = { .nh = 0, .nbody = 1, .body = {
		"a@gmail.com b@gmail.com c@x.org d@y.org e@z.org f@gmail.com\n" } };
	hdr(&m4, "From", "dan@gmail.com");
	scan(rs, &m4, NULL, &h);
	assert_false(has(&h, "FM_REPLY"));
	assert_false(has(&h, "FM_BODY"));
	/* a bulk envelope sender is skipped */
	struct msg m5 = { .nh = 0 };
	hdr(&m5, "From", "Alice <alice7@gmail.com>");
	hdr(&m5, "Reply-To", "bob@yahoo.fr");
	hdr(&m5, "EnvelopeFrom", "list-bounces@lists.example");
	scan(rs, &m5, NULL, &h);
	assert_false(has(&h, "FM_REPLYTO"));
	assert_true(has(&h, "FM_FROM"));
	rules_free(rs);

	/* without freemail_domains nothing is freemail */
	rs = load("header FM_FROM eval:check_freemail_from()\n");
	scan(rs, &m, NULL, &h);
	assert_false(has(&h, "FM_FROM"));
	rules_free(rs);
}

static const char SPF[] =
	"welcomelist_from_spf *@spf.example\n"
	"def_whitelist_auth boss@auth.example\n"
	"header SPF_PASS eval:check_for_spf_pass()\n"
	"header SPF_FAIL eval:check_for_spf_fail()\n"
	"header SPF_SOFTFAIL eval:check_for_spf_softfail()\n"
	"header SPF_NEUTRAL eval:check_for_spf_neutral()\n"
	"header SPF_NONE eval:check_for_spf_none()\n"
	"header SPF_PERMERROR eval:check_for_spf_permerror()\n"
	"header SPF_TEMPERROR eval:check_for_spf_temperror()\n"
	"header SPF_HELO_PASS eval:check_for_spf_helo_pass()\n"
	"header SPF_HELO_FAIL eval:check_for_spf_helo_fail()\n"
	"header SPF_HELO_SOFTFAIL eval:check_for_spf_helo_softfail()\n"
	"header SPF_HELO_NEUTRAL eval:check_for_spf_helo_neutral()\n"
	"header SPF_HELO_NONE eval:check_for_spf_helo_none()\n"
	"header SPF_HELO_PERMERROR eval:check_for_spf_helo_permerror()\n"
	"header SPF_HELO_TEMPERROR eval:check_for_spf_helo_temperror()\n"
	"header SPF_WL eval:check_for_spf_welcomelist_from()\n"
	"header DEF_SPF_WL eval:check_for_def_spf_whitelist_from()\n";

static void test_spf(void **st)
{
	(void)st;
	struct ruleset *rs = load(SPF);
	struct hits h;
	struct msg m = { .nh = 0 };
	hdr(&m, "From", "x@spf.example");
	hdr(&m, "EnvelopeFrom", "bounce@spf.example");
	/* no verdict: nothing hits */
	scan(rs, &m, NULL, &h);
	assert_string_equal(h.names, "");
	static const char *const results[] = { "pass", "fail", "softfail", "neutral", "none", "permerror", "temperror" };
	static const char *const rules[] = { "SPF_PASS", "SPF_FAIL", "SPF_SOFTFAIL", "SPF_NEUTRAL", "SPF_NONE",
	                                     "SPF_PERMERROR", "SPF_TEMPERROR" };
	for (size_t i = 0; i < 7; i++) {
		char mf[64], he[64], hrule[64];
		snprintf(mf, sizeof mf, "spf:mailfrom=%s", results[i]);
		snprintf(he, sizeof he, "spf:helo=%s", results[(i + 1) % 7]);
		const char *facts[] = { mf, he, NULL };
		scan(rs, &m, facts, &h);
		for (size_t k = 0; k < 7; k++) {
			assert_int_equal(has(&h, rules[k]), k == i);
			snprintf(hrule, sizeof hrule, "SPF_HELO_%s", rules[k] + 4);
			assert_int_equal(has(&h, hrule), k == (i + 1) % 7);
		}
		assert_int_equal(has(&h, "SPF_WL"), i == 0);      /* listed and SPF passed */
		assert_false(has(&h, "DEF_SPF_WL"));
	}
	/* def_welcomelist_auth counts for the default SPF welcomelist */
	struct msg m2 = { .nh = 0 };
	hdr(&m2, "EnvelopeFrom", "boss@auth.example");
	const char *pass[] = { "spf:mailfrom=pass", NULL };
	scan(rs, &m2, pass, &h);
	assert_true(has(&h, "DEF_SPF_WL"));
	assert_false(has(&h, "SPF_WL"));
	/* a result the filter does not give is ignored */
	const char *odd[] = { "spf:mailfrom=bogus", NULL };
	scan(rs, &m2, odd, &h);
	assert_false(has(&h, "SPF_PASS"));
	rules_free(rs);
}

static const char DKIM[] =
	"def_whitelist_from_dkim *@shop.example mailer.example\n"
	"welcomelist_from_dkim ceo@corp.example\n"
	"full DKIM_SIGNED eval:check_dkim_signed()\n"
	"full DKIM_SIGNED_BY eval:check_dkim_signed('other.example', '.corp.example')\n"
	"full DKIM_VALID eval:check_dkim_valid()\n"
	"full DKIM_VALID_CORP eval:check_dkim_valid('corp.example')\n"
	"full DKIM_VALID_AU eval:check_dkim_valid_author_sig()\n"
	"full DKIM_VALID_EF eval:check_dkim_valid_envelopefrom()\n"
	"full DKIM_DEPENDABLE eval:check_dkim_dependable()\n"
	"header DKIM_SIGNSOME eval:check_dkim_signsome()\n"
	"header DKIM_WL eval:check_for_dkim_welcomelist_from()\n"
	"header DEF_DKIM_WL eval:check_for_def_dkim_whitelist_from()\n"
	"full ARC_SIGNED eval:check_arc_signed()\n"
	"full ARC_VALID eval:check_arc_valid()\n";

static void test_dkim_arc(void **st)
{
	(void)st;
	struct ruleset *rs = load(DKIM);
	struct hits h;
	struct msg m = { .nh = 0 };
	hdr(&m, "DKIM-Signature", "v=1; a=rsa-sha256; d=corp.example; s=sel;\n\ti=@mail.corp.example; h=from; bh=xx; b=ABCDEFGHIJ");
	hdr(&m, "From", "ceo@mail.corp.example");
	hdr(&m, "EnvelopeFrom", "ceo@mail.corp.example");
	/* signed from the field alone, without a verdict: not valid */
	scan(rs, &m, NULL, &h);
	assert_true(has(&h, "DKIM_SIGNED"));
	assert_true(has(&h, "DKIM_SIGNED_BY"));
	assert_false(has(&h, "DKIM_VALID"));
	assert_false(has(&h, "DKIM_DEPENDABLE"));
	assert_false(has(&h, "ARC_SIGNED"));
	/* the dkim filter says pass: the identity's domain is the author's */
	const char *pass[] = { "dkim=pass corp.example sel ABCDEFGH", NULL };
	scan(rs, &m, pass, &h);
	assert_true(has(&h, "DKIM_SIGNED"));
	assert_true(has(&h, "DKIM_SIGNED_BY"));    /* i= says mail.corp.example: '.corp.example' ... */
	assert_true(has(&h, "DKIM_VALID"));
	assert_false(has(&h, "DKIM_VALID_CORP"));  /* ... not 'corp.example' itself */
	assert_true(has(&h, "DKIM_VALID_AU"));
	assert_true(has(&h, "DKIM_VALID_EF"));
	assert_true(has(&h, "DKIM_DEPENDABLE"));
	assert_false(has(&h, "DKIM_SIGNSOME"));
	assert_false(has(&h, "DKIM_WL"));          /* ceo@corp.example is listed, not ceo@mail.corp.example */
	/* a failed signature: signed, not valid */
	const char *fail[] = { "dkim=fail corp.example sel ABCDEFGH", NULL };
	scan(rs, &m, fail, &h);
	assert_true(has(&h, "DKIM_SIGNED"));
	assert_false(has(&h, "DKIM_VALID"));
	assert_false(has(&h, "DKIM_VALID_AU"));

	/* DKIM welcomelists: the author's own domain; a named signing domain */
	struct msg m2 = { .nh = 0 };
	hdr(&m2, "DKIM-Signature", "v=1; d=corp.example; s=s1; b=QQQQQQQQQQ");
	hdr(&m2, "DKIM-Signature", "v=1; d=mailer.example; s=s2; b=RRRRRRRRRR");
	hdr(&m2, "From", "CEO@corp.example");
	hdr(&m2, "ARC-Seal", "i=1; a=rsa-sha256; cv=none; d=relay.example; s=arc; b=zz");
	const char *two[] = { "dkim=pass corp.example s1 QQQQQQQQ\nfail mailer.example s2 RRRRRRRR", "arc=pass", NULL };
	scan(rs, &m2, two, &h);
	assert_true(has(&h, "DKIM_WL"));
	assert_false(has(&h, "DEF_DKIM_WL"));
	assert_true(has(&h, "ARC_SIGNED"));
	assert_true(has(&h, "ARC_VALID"));
	struct msg m3 = { .nh = 0 };
	hdr(&m3, "DKIM-Signature", "v=1; d=mailer.example; s=s2; b=RRRRRRRRRR");
	hdr(&m3, "From", "orders@shop.example");
	const char *third[] = { "dkim=pass mailer.example s2 RRRRRRRR", NULL };
	scan(rs, &m3, third, &h);
	assert_true(has(&h, "DEF_DKIM_WL"));
	assert_false(has(&h, "DKIM_VALID_AU"));
	/* no signature at all (dkim filter: none); a field that does not parse */
	struct msg m4 = { .nh = 0 };
	hdr(&m4, "DKIM-Signature", "this is not a tag list");
	hdr(&m4, "From", "x@corp.example");
	const char *none[] = { "dkim=none - - -", NULL };
	scan(rs, &m4, none, &h);
	assert_false(has(&h, "DKIM_SIGNED"));
	assert_false(has(&h, "DKIM_VALID"));
	assert_true(has(&h, "DKIM_DEPENDABLE"));
	/* the verifier could not take that field apart either: still not signed */
	const char *perm[] = { "dkim=permerror - - -", NULL };
	scan(rs, &m4, perm, &h);
	assert_false(has(&h, "DKIM_SIGNED"));
	rules_free(rs);
}

static void want_name(void *arg, const char *qname, int rrtype)
{
	char *buf = arg;
	char line[300];
	snprintf(line, sizeof line, "%s/%d ", qname, rrtype);
	strcat(buf, line);
}

static void test_adsp(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"adsp_override ebay.example\n"
		"adsp_override *.shop.example all\n"
		"adsp_override @low.example custom_low\n"
		"header ADSP_D eval:check_dkim_adsp('D')\n"
		"header ADSP_A eval:check_dkim_adsp('A')\n"
		"header ADSP_1 eval:check_dkim_adsp('1')\n"
		"header ADSP_U eval:check_dkim_adsp('U')\n"
		"header ADSP_EBAY eval:check_dkim_adsp('*', 'ebay.example')\n"
		"header ADSP_OTHER eval:check_dkim_adsp('*', '.nowhere.example')\n"
		"header SIGNALL eval:check_dkim_signall()\n"
		"header TESTING eval:check_dkim_testing()\n"
		"header BAD_ADSP eval:check_dkim_adsp('X')\n");
	assert_non_null(why_not_loaded(rs, "BAD_ADSP"));
	struct hits h;
	struct msg m = { .nh = 0 };
	hdr(&m, "From", "alerts@ebay.example");
	/* without the dkim filter's verdicts: nothing (SpamAssassin: signatures not ready) */
	scan(rs, &m, NULL, &h);
	assert_string_equal(h.names, "");
	const char *none[] = { "dkim=none - - -", NULL };
	scan(rs, &m, none, &h);
	assert_true(has(&h, "ADSP_D"));
	assert_true(has(&h, "ADSP_EBAY"));
	assert_false(has(&h, "ADSP_OTHER"));
	assert_false(has(&h, "ADSP_A"));
	assert_false(has(&h, "TESTING"));
	/* a valid author signature: no policy applies */
	const char *valid[] = { "dkim=pass ebay.example s1 AAAAAAAA", NULL };
	scan(rs, &m, valid, &h);
	assert_false(has(&h, "ADSP_D"));
	struct msg m2 = { .nh = 0 };
	hdr(&m2, "From", "a@www.shop.example");
	scan(rs, &m2, none, &h);
	assert_true(has(&h, "ADSP_A"));
	assert_true(has(&h, "SIGNALL"));
	struct msg m3 = { .nh = 0 };
	hdr(&m3, "From", "b@low.example");
	scan(rs, &m3, none, &h);
	assert_true(has(&h, "ADSP_1"));
	/* no override: the _adsp record from the DNS (asked through the queries hook) */
	struct msg m4 = { .nh = 0 };
	hdr(&m4, "From", "c@other.example, d@ebay.example");
	char asked[1024] = "";
	struct rules_input in = { .headers = m4.h, .nheaders = m4.nh, .fact = fact };
	test_facts = none;
	struct rules_scratch *scr = rules_scratch_new(rs);
	rules_net_queries(rs, scr, &in, want_name, asked);
	rules_scratch_free(scr);
	test_facts = NULL;
	assert_string_equal(asked, "_adsp._domainkey.other.example/16 ");
	const char *disc[] = { "dkim=none - - -", "dns:TXT:_adsp._domainkey.other.example=dkim=discardable", NULL };
	struct msg m5 = { .nh = 0 };
	hdr(&m5, "From", "c@other.example");
	scan(rs, &m5, disc, &h);
	assert_true(has(&h, "ADSP_D"));
	const char *unk[] = { "dkim=none - - -", "dns:TXT:_adsp._domainkey.other.example=", NULL };
	scan(rs, &m5, unk, &h);
	assert_false(has(&h, "ADSP_D"));
	assert_true(has(&h, "ADSP_U"));
	scan(rs, &m5, none, &h);                /* no answer in time */
	assert_false(has(&h, "ADSP_U"));
	rules_free(rs);
}

static void test_dmarc(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header DMARC_PASS eval:check_dmarc_pass()\n"
		"header DMARC_REJECT eval:check_dmarc_reject()\n"
		"header DMARC_QUAR eval:check_dmarc_quarantine()\n"
		"header DMARC_NONE eval:check_dmarc_none()\n"
		"header DMARC_MISSING eval:check_dmarc_missing()\n");
	struct hits h;
	struct msg m = { .nh = 0 };
	hdr(&m, "From", "x@example.com");
	static const char *const facts[][2] = {
		{ "dmarc=pass -", "DMARC_PASS" }, { "dmarc=fail reject", "DMARC_REJECT" },
		{ "dmarc=fail quarantine", "DMARC_QUAR" }, { "dmarc=fail none", "DMARC_NONE" },
		{ "dmarc=none -", "DMARC_MISSING" },
	};
	static const char *const all[] = { "DMARC_PASS", "DMARC_REJECT", "DMARC_QUAR", "DMARC_NONE", "DMARC_MISSING" };
	for (size_t i = 0; i < 5; i++) {
		const char *f[] = { facts[i][0], NULL };
		scan(rs, &m, f, &h);
		for (size_t k = 0; k < 5; k++) assert_int_equal(has(&h, all[k]), strcmp(all[k], facts[i][1]) == 0);
	}
	scan(rs, &m, NULL, &h);
	assert_string_equal(h.names, "");
	rules_free(rs);
}

static void test_bad_arguments(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header NO_LIST eval:check_from_in_list()\n"
		"header EMPTY_LIST eval:check_from_in_list('')\n"
		"header BAD_OPT eval:check_freemail_replyto('sometimes')\n"
		"header BAD_RE eval:check_freemail_header('From', '(unclosed')\n"
		"header NO_HDR eval:check_freemail_header()\n"
		"header TOO_MANY eval:check_for_spf_pass('x')\n"
		"header URI_NOLIST eval:check_uri_host_listed()\n");
	static const char *const bad[] = { "NO_LIST", "EMPTY_LIST", "BAD_OPT", "BAD_RE", "NO_HDR", "TOO_MANY", "URI_NOLIST" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		const char *why = why_not_loaded(rs, bad[i]);
		if (!why) fprintf(stderr, "%s loaded\n", bad[i]);
		assert_non_null(why);
		assert_non_null(strstr(why, "eval function"));
	}
	assert_int_equal(rules_get_stats(rs)->not_loaded_eval, 0);    /* known functions, bad calls */
	rules_free(rs);
	/* directives with bad arguments are errors naming the line */
	static const char *const bad_dirs[] = {
		"welcomelist_from_rcvd onlyone@example.com\n",
		"enlist_addrlist NOPARENS a@b.example\n",
		"enlist_uri_host (L)\n",
		"welcomelist_from\n",
		"freemail_max_body_emails lots\n",
		"whitelist_from_dkim a@b.example c.example extra\n",
	};
	for (size_t i = 0; i < sizeof bad_dirs / sizeof *bad_dirs; i++) {
		struct ruleset *r2 = rules_new();
		char err[512] = "";
		assert_int_equal(rules_load_text(r2, "bad.cf", bad_dirs[i], strlen(bad_dirs[i]), err, sizeof err), -1);
		assert_non_null(strstr(err, "bad.cf:1:"));
		rules_free(r2);
	}
}

/* hostile input: long and odd header values, many addresses, a long body line */
static void test_hostile(void **st)
{
	(void)st;
	struct ruleset *rs = load(FREEMAIL);
	size_t n = 200000;
	char *big = malloc(n + 1), *body = malloc(n + 2);
	assert_non_null(big);
	assert_non_null(body);
	for (size_t i = 0; i < n; i++) big[i] = "a@b.com, \"(<>\\"[i % 13];
	big[n] = '\0';
	for (size_t i = 0; i < n; i++) body[i] = "x@gmail.com .@@..-"[i % 18];
	body[n] = '\n';
	body[n + 1] = '\0';
	struct hits h;
	struct msg m = { .nh = 0, .nbody = 1, .body = { body } };
	hdr(&m, "From", big);
	hdr(&m, "Reply-To", big);
	hdr(&m, "To", big);
	scan(rs, &m, NULL, &h);
	free(big);
	free(body);
	rules_free(rs);

	/* a thousand wildcard welcomelist entries against many long authors
	 * with a valid signature: each entry's fixed tail is compared first */
	size_t cap = 1000 * 64 + 4096;
	char *cf = malloc(cap), *from = malloc(64 * 200 + 1);
	assert_non_null(cf);
	assert_non_null(from);
	size_t o = 0;
	for (int i = 0; i < 1000; i++)
		o += (size_t)snprintf(cf + o, cap - o, "def_whitelist_auth *@*.d%d.example\n", i);
	snprintf(cf + o, cap - o, "header DEF_DKIM_WL eval:check_for_def_dkim_welcomelist_from()\n"
	         "header DEF_SPF_WL eval:check_for_def_spf_welcomelist_from()\n");
	rs = load(cf);
	o = 0;
	for (int i = 0; i < 64; i++) {
		o += (size_t)snprintf(from + o, 64 * 200 + 1 - o, "%s", i ? ", " : "");
		for (int k = 0; k < 150; k++) from[o++] = 'a';
		o += (size_t)snprintf(from + o, 64 * 200 + 1 - o, "%d@x.d999.example", i);
	}
	struct msg m2 = { .nh = 0 };
	hdr(&m2, "From", from);
	hdr(&m2, "EnvelopeFrom", "aaa@x.d999.example");
	const char *facts[] = { "dkim=pass x.d999.example s AAAAAAAA", "spf:mailfrom=pass", NULL };
	scan(rs, &m2, facts, &h);
	assert_true(has(&h, "DEF_DKIM_WL"));         /* the authors' own domain signed */
	assert_true(has(&h, "DEF_SPF_WL"));
	free(cf);
	free(from);
	rules_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_address_lists),
		cmocka_unit_test(test_welcomelist_rcvd),
		cmocka_unit_test(test_subject_and_uri_hosts),
		cmocka_unit_test(test_uri_hosts_after_decoys),
		cmocka_unit_test(test_freemail),
		cmocka_unit_test(test_spf),
		cmocka_unit_test(test_dkim_arc),
		cmocka_unit_test(test_adsp),
		cmocka_unit_test(test_dmarc),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
