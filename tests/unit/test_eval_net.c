/* test_eval_net.c - unit tests for rules/eval_net.c: which DNS names the
 * network tests ask (relay sets, URI domains, name servers, the
 * sender's domain), how the answers (given as facts, as the bridge gives
 * them) make check_rbl, check_rbl_sub, check_rbl_txt, check_uridnsbl,
 * check_dns_sender and check_uri_host_listed hit, what the blocklist codes
 * mean (eval_net_verdict), and bad arguments refused at load. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rules/eval.h"
#include "rules/eval_net.h"
#include "rules/eval_relay.h"
#include "rules/rules.h"

/* --- helpers ----------------------------------------------------------------- */

#include "eval_testlib.h"

/* facts: "key=value" pairs */
struct facts { const char *const *kv; };

static const char *fact(void *arg, const char *key)
{
	const struct facts *f = arg;
	size_t kl = strlen(key);
	for (const char *const *p = f->kv; p && *p; p++)
		if (strncmp(*p, key, kl) == 0 && (*p)[kl] == '=') return *p + kl + 1;
	return NULL;
}

static const struct rules_header hdrs[] = {
	{ "From", "a@sender.example", NULL },
	{ "Subject", "hello", NULL },
	{ "EnvelopeFrom", "bounce@nowhere.example", NULL },
};

static void scan(const struct ruleset *rs, struct hits *h, const char *client, const char *const *uris,
                 size_t nuris, const char *const *kv)
{
	struct facts f = { kv };
	struct rules_input in = {
		.headers = hdrs, .nheaders = 3, .uris = uris, .nuris = nuris,
		.client_ip = client, .fact = fact, .fact_arg = &f,
	};
	struct rules_scratch *s = rules_scratch_new(rs);
	memset(h, 0, sizeof *h);
	rules_scan(rs, s, &in, collect, h);
	rules_scratch_free(s);
}

/* the names asked: " name/type " */
struct asked { char s[8192]; };

static void want(void *arg, const char *qname, int rrtype)
{
	struct asked *a = arg;
	char one[400];
	snprintf(one, sizeof one, " %s/%d%s ", qname, EVAL_NET_RRTYPE(rrtype), (rrtype & EVAL_NET_LIST) ? "L" : "");
	if (!strstr(a->s, one) && strlen(a->s) + strlen(one) < sizeof a->s) strcat(a->s, one);
}

static void queries(const struct ruleset *rs, struct asked *a, const char *client, const char *const *uris,
                    size_t nuris, const char *const *kv)
{
	struct facts f = { kv };
	struct rules_input in = {
		.headers = hdrs, .nheaders = 3, .uris = uris, .nuris = nuris,
		.client_ip = client, .fact = fact, .fact_arg = &f,
	};
	struct rules_scratch *s = rules_scratch_new(rs);
	memset(a, 0, sizeof *a);
	rules_net_queries(rs, s, &in, want, a);
	rules_scratch_free(s);
}

static int asked(const struct asked *a, const char *what)
{
	char k[400];
	snprintf(k, sizeof k, " %s ", what);
	return strstr(a->s, k) != NULL;
}

/* --- client address lists ------------------------------------------------------ */

static const char *const RBL_RULES =
	"header T_ZEN eval:check_rbl('tzen', 'zen.test.')\n"
	"header T_SBL eval:check_rbl_sub('tzen', '127.0.0.2')\n"
	"header T_PBL eval:check_rbl_sub('tzen', '^127\\.0\\.0\\.1[01]$')\n"
	"header T_MASK eval:check_rbl_sub('tzen', '8')\n"
	"header T_XBL eval:check_rbl('tzen-lastexternal', 'zen.test.', '^127\\.0\\.0\\.[4567]$')\n"
	"header T_TXT eval:check_rbl_txt('tcop', 'cop.test', '(?i:spamcop)')\n"
	"score T_ZEN 1\nscore T_SBL 1\nscore T_PBL 1\nscore T_MASK 1\nscore T_XBL 1\nscore T_TXT 1\n";

static void test_rbl_queries_and_hits(void **st)
{
	(void)st;
	struct ruleset *rs = load(RBL_RULES);
	assert_int_equal(rule_loaded(rs, "T_ZEN"), 1);
	assert_int_equal(rule_loaded(rs, "T_SBL"), 1);
	assert_int_equal(rule_loaded(rs, "T_TXT"), 1);
	struct asked a;
	queries(rs, &a, "192.0.2.99", NULL, 0, NULL);
	assert_true(asked(&a, "99.2.0.192.zen.test/1L"));
	assert_true(asked(&a, "99.2.0.192.cop.test/16L"));
	/* a private client is never asked about */
	queries(rs, &a, "10.1.2.3", NULL, 0, NULL);
	assert_string_equal(a.s, "");
	/* IPv6: 32 nibbles */
	queries(rs, &a, "2001:db8::1", NULL, 0, NULL);
	assert_true(asked(&a, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test/1L"));

	struct hits h;
	static const char *const sbl[] = { "dns:A:99.2.0.192.zen.test=127.0.0.2", NULL };
	scan(rs, &h, "192.0.2.99", NULL, 0, sbl);
	assert_true(has(&h, "T_ZEN"));
	assert_true(has(&h, "T_SBL"));
	assert_false(has(&h, "T_PBL"));
	assert_false(has(&h, "T_XBL"));
	assert_false(has(&h, "T_MASK"));
	static const char *const pbl[] = { "dns:A:98.2.0.192.zen.test=127.0.0.4 127.0.0.10", NULL };
	scan(rs, &h, "192.0.2.98", NULL, 0, pbl);
	assert_true(has(&h, "T_ZEN"));
	assert_true(has(&h, "T_PBL"));
	assert_true(has(&h, "T_XBL"));
	assert_true(has(&h, "T_MASK"));        /* 127.0.0.10 & 8 */
	assert_false(has(&h, "T_SBL"));
	/* not listed ("" = NXDOMAIN) and not answered (no fact) */
	static const char *const none[] = { "dns:A:97.2.0.192.zen.test=", NULL };
	scan(rs, &h, "192.0.2.97", NULL, 0, none);
	assert_string_equal(h.names, "");
	scan(rs, &h, "192.0.2.99", NULL, 0, NULL);
	assert_string_equal(h.names, "");
	/* TXT: the subtest is a regex over the text */
	static const char *const cop[] = { "dns:TXT:95.2.0.192.cop.test=Blocked, see SpamCop", NULL };
	scan(rs, &h, "192.0.2.95", NULL, 0, cop);
	assert_true(has(&h, "T_TXT"));
	static const char *const other[] = { "dns:TXT:95.2.0.192.cop.test=listed elsewhere", NULL };
	scan(rs, &h, "192.0.2.95", NULL, 0, other);
	assert_false(has(&h, "T_TXT"));
	rules_free(rs);
}

/* the addresses each kind of set looks at, with a relay list set by hand:
 * relay[0] trusted (not internal), relay[1..2] untrusted */
static void set_asked(const struct ruleset *rs, struct asked *a, const char *const *orig_hdrs)
{
	static struct eval_relay r[3];
	memset(r, 0, sizeof r);
	snprintf(r[0].ip, sizeof r[0].ip, "203.0.113.5");
	r[0].trusted = 1;
	snprintf(r[1].ip, sizeof r[1].ip, "198.51.100.7");
	snprintf(r[2].ip, sizeof r[2].ip, "192.0.2.1");
	static struct eval_relays rl;
	rl = (struct eval_relays){ .relay = r, .n = 3, .ntrusted = 1, .ninternal = 0 };
	struct rules_header h[6] = { { "From", "a@b.example", NULL } };
	size_t nh = 1;
	for (const char *const *p = orig_hdrs; p && *p && nh < 6; p += 2) h[nh++] = (struct rules_header){ p[0], p[1], NULL };
	struct rules_input in = { .headers = h, .nheaders = nh };
	struct eval_msg m = { .rs = rs, .in = &in };
	m.md = pcre2_match_data_create(16, NULL);
	eval_cache_set(&m, EVC_RELAYS, &rl, NULL);
	memset(a, 0, sizeof *a);
	eval_module_net.queries(&m, want, a);
	eval_msg_reset(&m);
	free(m.hdrs);
	pcre2_match_data_free(m.md);
}

static void test_rbl_sets(void **st)
{
	(void)st;
	struct asked a;
	struct ruleset *rs = load("header T eval:check_rbl('x', 'all.test')\n");
	set_asked(rs, &a, NULL);
	assert_true(asked(&a, "7.100.51.198.all.test/1L"));
	assert_true(asked(&a, "1.2.0.192.all.test/1L"));
	assert_false(asked(&a, "5.113.0.203.all.test/1L"));      /* trusted */
	rules_free(rs);

	/* the first external relay: a welcome list ("nice") asks about it, a
	 * blocklist skips it as trusted */
	rs = load("header T eval:check_rbl('x-lastexternal', 'last.test')\ntflags T net nice\n");
	set_asked(rs, &a, NULL);
	assert_string_equal(a.s, " 5.113.0.203.last.test/1L ");
	rules_free(rs);
	rs = load("header T eval:check_rbl('x-lastexternal', 'last.test')\ntflags T net\n");
	set_asked(rs, &a, NULL);
	assert_string_equal(a.s, "");
	rules_free(rs);

	rs = load("header T eval:check_rbl('x-firsttrusted', 'first.test')\n");
	set_asked(rs, &a, NULL);
	assert_string_equal(a.s, " 7.100.51.198.first.test/1L ");
	rules_free(rs);

	rs = load("header T eval:check_rbl('x-untrusted', 'unt.test')\n");
	set_asked(rs, &a, NULL);
	assert_string_equal(a.s, " 1.2.0.192.unt.test/1L ");
	rules_free(rs);

	rs = load("header T eval:check_rbl('x-notfirsthop', 'nfh.test')\n");
	set_asked(rs, &a, NULL);
	assert_false(asked(&a, "5.113.0.203.nfh.test/1L"));      /* trusted, not a "nice" list */
	assert_true(asked(&a, "7.100.51.198.nfh.test/1L"));
	assert_false(asked(&a, "1.2.0.192.nfh.test/1L"));        /* the originating hop */
	rules_free(rs);

	/* originating_ip_headers add the webmail user's address */
	rs = load("originating_ip_headers X-Originating-IP\n"
	          "header T eval:check_rbl('x', 'all.test')\n");
	static const char *const orig[] = { "X-Originating-IP", "[198.51.100.200]", "X-Originating-IP", "203.0.113.5", NULL };
	set_asked(rs, &a, orig);
	assert_true(asked(&a, "200.100.51.198.all.test/1L"));
	assert_false(asked(&a, "5.113.0.203.all.test/1L"));      /* a trusted relay's address */
	rules_free(rs);
}

/* --- URI lists ------------------------------------------------------------------ */

static const char *const URI_RULES =
	"util_rb_tld com example uk test\n"
	"util_rb_2tld co.uk\n"
	"urirhssub T_DBL dbl.test. A 127.0.1.2\n"
	"body T_DBL eval:check_uridnsbl('T_DBL')\n"
	"tflags T_DBL net domains_only\n"
	"urirhssub T_HOST dbl.test. A 127.0.1.2\n"
	"body T_HOST eval:check_uridnsbl('T_HOST')\n"
	"tflags T_HOST net domains_only notrim\n"
	"urirhssub T_BLACK multi.test. A 2\n"
	"tflags T_BLACK net\n"
	"urirhssub T_RANGE multi.test. A 127.0.0.8-127.0.0.15\n"
	"urirhssub T_VALMASK multi.test. A 127.0.0.64/0xff0000c0\n"
	"uridnssub T_NS zen.test. A 127.0.0.2\n"
	"body T_NS eval:check_uridnsbl('T_NS')\n"
	"uridnssub T_A zen.test. A 127.0.0.2\n"
	"body T_A eval:check_uridnsbl('T_A')\n"
	"tflags T_A net a\n"
	"uridnsbl_skip_domain skipped.com\n"
	"score T_DBL 1\nscore T_HOST 1\nscore T_BLACK 1\nscore T_RANGE 1\nscore T_VALMASK 1\n"
	"score T_NS 1\nscore T_A 1\n";

static void test_uri_queries(void **st)
{
	(void)st;
	struct ruleset *rs = load(URI_RULES);
	/* uridnssub/urirhssub lines alone define their rule */
	assert_int_equal(rule_loaded(rs, "T_BLACK"), 1);
	assert_int_equal(rule_loaded(rs, "T_RANGE"), 1);
	static const char *const uris[] = {
		"http://www.Shop.Example.co.uk/buy", "https://a.b.spam.com/x", "http://www.skipped.com/",
		"http://198.51.100.9/p", "http://10.0.0.1/", "http://unknown.tldzz/", "mailto:x@mailto.com",
	};
	struct asked a;
	queries(rs, &a, NULL, uris, 7, NULL);
	assert_true(asked(&a, "example.co.uk.dbl.test/1L"));        /* registrable domain (util_rb_2tld) */
	assert_false(asked(&a, "co.uk.dbl.test/1L"));
	assert_true(asked(&a, "www.shop.example.co.uk.dbl.test/1L")); /* notrim */
	assert_true(asked(&a, "spam.com.dbl.test/1L"));
	assert_true(asked(&a, "spam.com.multi.test/1L"));
	assert_false(strstr(a.s, "skipped.com"));                  /* uridnsbl_skip_domain */
	assert_false(strstr(a.s, "tldzz"));                        /* not a known TLD */
	assert_false(strstr(a.s, "mailto.com"));                   /* mailto: skipped */
	assert_true(asked(&a, "9.100.51.198.multi.test/1L"));      /* an address host: not domains_only */
	assert_false(asked(&a, "9.100.51.198.dbl.test/1L"));       /* ... but T_DBL is domains_only */
	assert_false(strstr(a.s, "1.0.0.10"));                     /* private address */
	/* the first round asks NS and A; the next ones follow the answers */
	assert_true(asked(&a, "spam.com/2"));
	assert_true(asked(&a, "a.b.spam.com/1"));
	assert_false(strstr(a.s, "zen.test"));
	static const char *const r1[] = {
		"dns:NS:spam.com=ns1.host.com ns2.host.com", "dns:A:a.b.spam.com=198.51.100.80", NULL };
	queries(rs, &a, NULL, uris, 7, r1);
	assert_true(asked(&a, "ns1.host.com/1"));
	assert_true(asked(&a, "ns2.host.com/1"));
	assert_true(asked(&a, "80.100.51.198.zen.test/1L"));       /* the host's address (tflags a) */
	static const char *const r2[] = {
		"dns:NS:spam.com=ns1.host.com", "dns:A:ns1.host.com=198.51.100.53", NULL };
	queries(rs, &a, NULL, uris, 7, r2);
	assert_true(asked(&a, "53.100.51.198.zen.test/1L"));       /* the name server's address */
	rules_free(rs);
}

static void test_uri_hits(void **st)
{
	(void)st;
	struct ruleset *rs = load(URI_RULES);
	static const char *const uris[] = { "https://a.b.spam.com/x" };
	struct hits h;
	static const char *const dbl[] = { "dns:A:spam.com.dbl.test=127.0.1.2", NULL };
	scan(rs, &h, NULL, uris, 1, dbl);
	assert_true(has(&h, "T_DBL"));
	assert_false(has(&h, "T_HOST"));
	static const char *const host[] = { "dns:A:a.b.spam.com.dbl.test=127.0.1.2", NULL };
	scan(rs, &h, NULL, uris, 1, host);
	assert_true(has(&h, "T_HOST"));
	assert_false(has(&h, "T_DBL"));
	/* bit mask, range, value/mask */
	static const char *const m6[] = { "dns:A:spam.com.multi.test=127.0.0.6", NULL };
	scan(rs, &h, NULL, uris, 1, m6);
	assert_true(has(&h, "T_BLACK"));
	assert_false(has(&h, "T_RANGE"));
	static const char *const m4[] = { "dns:A:spam.com.multi.test=127.0.0.4", NULL };
	scan(rs, &h, NULL, uris, 1, m4);
	assert_false(has(&h, "T_BLACK"));
	static const char *const m10[] = { "dns:A:spam.com.multi.test=127.0.0.10", NULL };
	scan(rs, &h, NULL, uris, 1, m10);
	assert_true(has(&h, "T_BLACK"));
	assert_true(has(&h, "T_RANGE"));
	assert_false(has(&h, "T_VALMASK"));
	static const char *const m64[] = { "dns:A:spam.com.multi.test=127.0.0.64", NULL };
	scan(rs, &h, NULL, uris, 1, m64);
	assert_true(has(&h, "T_VALMASK"));
	assert_false(has(&h, "T_BLACK"));
	/* name server and host addresses */
	static const char *const ns[] = {
		"dns:NS:spam.com=ns1.host.com", "dns:A:ns1.host.com=198.51.100.53",
		"dns:A:53.100.51.198.zen.test=127.0.0.2", NULL };
	scan(rs, &h, NULL, uris, 1, ns);
	assert_true(has(&h, "T_NS"));
	assert_false(has(&h, "T_A"));
	static const char *const aa[] = {
		"dns:A:a.b.spam.com=198.51.100.80", "dns:A:80.100.51.198.zen.test=127.0.0.2", NULL };
	scan(rs, &h, NULL, uris, 1, aa);
	assert_true(has(&h, "T_A"));
	assert_false(has(&h, "T_NS"));
	rules_free(rs);
}

/* --- the sender's domain, URI host lists ------------------------------------------ */

static void test_dns_sender(void **st)
{
	(void)st;
	struct ruleset *rs = load("header T_NODNS eval:check_dns_sender()\nscore T_NODNS 1\n");
	struct asked a;
	queries(rs, &a, NULL, NULL, 0, NULL);
	assert_true(asked(&a, "nowhere.example/1"));
	assert_true(asked(&a, "nowhere.example/15"));
	struct hits h;
	static const char *const nx[] = { "dns:status:A:nowhere.example=NXDOMAIN",
	                                  "dns:status:MX:nowhere.example=SERVFAIL", NULL };
	scan(rs, &h, NULL, NULL, 0, nx);
	assert_true(has(&h, "T_NODNS"));
	static const char *const mx[] = { "dns:status:A:nowhere.example=NXDOMAIN",
	                                  "dns:status:MX:nowhere.example=OK", NULL };
	scan(rs, &h, NULL, NULL, 0, mx);
	assert_false(has(&h, "T_NODNS"));
	scan(rs, &h, NULL, NULL, 0, NULL);                      /* no DNS: no hit */
	assert_false(has(&h, "T_NODNS"));
	rules_free(rs);
}

/* the sender's domain is read after the envelope's last '@', as SPF,
 * DMARC and the dnsbl filter read it (smtp_path_domain): the first '@' of
 * a quoted local part gave no domain, and no list was asked */
static void test_sender_domain_last_at(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header T_NODNS eval:check_dns_sender()\nscore T_NODNS 1\n"
		"askdns T_SDBL _SENDERDOMAIN_.dbl.test A /^127\\.0\\.1\\.2$/\nscore T_SDBL 1\n");
	static const char *const froms[] = {
		"\"x@listed.test\"@clean.test",                   /* what the proxy lets through */
		"<\"x@listed.test\"@clean.test>",                 /* a Return-Path of a saved message */
		"x@listed.test@clean.test",                       /* a milter's MAIL, Postfix not strict */
	};
	for (size_t i = 0; i < sizeof froms / sizeof froms[0]; i++) {
		struct rules_header h3[] = {
			{ "From", "a@sender.example", NULL },
			{ "Subject", "hello", NULL },
			{ "EnvelopeFrom", froms[i], NULL },
		};
		struct rules_input in = { .headers = h3, .nheaders = 3, .fact = fact };
		struct facts f = { NULL };
		struct asked a;
		in.fact_arg = &f;
		struct rules_scratch *s = rules_scratch_new(rs);
		memset(&a, 0, sizeof a);
		rules_net_queries(rs, s, &in, want, &a);
		rules_scratch_free(s);
		if (!asked(&a, "clean.test/1") || !asked(&a, "clean.test/15") || !asked(&a, "clean.test.dbl.test/1L"))
			fail_msg("EnvelopeFrom %s: asked \"%s\", want clean.test (A, MX, dbl.test)", froms[i], a.s);
		assert_null(strstr(a.s, "listed.test"));
	}
	rules_free(rs);
}

static void test_uri_host_listed(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"enlist_uri_host (BADTLD) top xyz !good.xyz\n"
		"enlist_uri_host (OTHER) gone.example\n"
		"delist_uri_host (OTHER) gone.example\n"
		"header T_BAD eval:check_uri_host_listed('BADTLD')\n"
		"header T_OTHER eval:check_uri_host_listed('OTHER')\n"
		"score T_BAD 1\nscore T_OTHER 1\n");
	struct hits h;
	static const char *const bad[] = { "http://www.shop.xyz/", "http://gone.example/" };
	scan(rs, &h, NULL, bad, 2, NULL);
	assert_true(has(&h, "T_BAD"));
	assert_false(has(&h, "T_OTHER"));
	static const char *const good[] = { "http://www.good.xyz/a", "http://fine.example/", "mailto:a@b.top" };
	scan(rs, &h, NULL, good, 3, NULL);
	assert_false(has(&h, "T_BAD"));                         /* !good.xyz is more specific; mailto skipped */
	rules_free(rs);
}

/* skip_rbl_checks / skip_uribl_checks switch the lists off in the rule files */
static void test_skip_checks(void **st)
{
	(void)st;
	static const char *const uris[] = { "http://spam.com/" };
	static const char *const kv[] = { "dns:A:99.2.0.192.zen.test=127.0.0.2", "dns:A:spam.com.dbl.test=127.0.1.2", NULL };
	const char *rules =
		"header T_ZEN eval:check_rbl('z', 'zen.test')\n"
		"urirhssub T_DBL dbl.test. A 127.0.1.2\n"
		"score T_ZEN 1\nscore T_DBL 1\n";
	char text[1024];
	struct hits h;
	struct asked a;
	for (int i = 0; i < 3; i++) {
		snprintf(text, sizeof text, "%s%s", i == 1 ? "skip_rbl_checks 1\n" : i == 2 ? "skip_uribl_checks 1\n" : "", rules);
		struct ruleset *rs = load(text);
		scan(rs, &h, "192.0.2.99", uris, 1, kv);
		queries(rs, &a, "192.0.2.99", uris, 1, NULL);
		assert_int_equal(has(&h, "T_ZEN"), i != 1);
		assert_int_equal(asked(&a, "99.2.0.192.zen.test/1L"), i != 1);
		assert_int_equal(has(&h, "T_DBL"), i != 2);
		assert_int_equal(asked(&a, "spam.com.dbl.test/1L"), i != 2);
		rules_free(rs);
	}
}

/* hostile URIs: odd hosts are skipped, never crash; thousands of URIs
 * give at most uridnsbl_max_domains hosts to the lists */
static void test_hostile_uris(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"uridnsbl_max_domains 5\n"
		"urirhssub T_DBL dbl.test. A 127.0.1.2\n"
		"enlist_uri_host (L) com\n"
		"header T_L eval:check_uri_host_listed('L')\n"
		"score T_DBL 1\nscore T_L 1\n");
	static char longhost[400];
	memset(longhost, 0, sizeof longhost);
	strcpy(longhost, "http://");
	memset(longhost + 7, 'a', 300);
	strcat(longhost, ".com/");
	enum { N = 3000 };
	char **uris = calloc(N + 8, sizeof *uris);
	assert_non_null(uris);
	size_t n = 0;
	const char *odd[] = { "http://[::1]/", "http://a..b.example/", "http://user@@host.example/", "http://",
	                      "http://:80/", "https://%41%42.example/", longhost, "mailto:@" };
	for (size_t i = 0; i < 8; i++) uris[n++] = strdup(odd[i]);
	for (size_t i = 0; i < N; i++) {
		char u[64];
		snprintf(u, sizeof u, "http://www.host%zu.example/p", i);
		uris[n++] = strdup(u);
	}
	struct asked a;
	queries(rs, &a, NULL, (const char *const *)uris, n, NULL);
	size_t lists = 0;
	for (const char *p = a.s; (p = strstr(p, ".dbl.test/1L")); p++) lists++;
	assert_int_equal(lists, 5);
	assert_false(strstr(a.s, "aaaaaaaaaa"));
	struct hits h;
	scan(rs, &h, NULL, (const char *const *)uris, n, NULL);
	assert_false(has(&h, "T_L"));            /* the .com host was too long to take */
	for (size_t i = 0; i < n; i++) free(uris[i]);
	free(uris);
	rules_free(rs);
}

/* --- askdns ------------------------------------------------------------------------ */

static void test_askdns(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"askdns T_NEWDOM _AUTHORDOMAIN_.fresh.test. A /^127\\.2\\.0\\.2$/\n"
		"askdns T_SPFALL _SENDERDOMAIN_ TXT /^v=spf1 \\+all$/\n"
		"askdns T_ANY _AUTHORDOMAIN_.any.test\n"
		"askdns T_DKIM _DKIMDOMAIN_.dkimwl.test A\n"
		"askdns T_RCODE _AUTHORDOMAIN_.x.test A [NXDOMAIN]\n"
		"score T_NEWDOM 1\nscore T_SPFALL 1\nscore T_ANY 1\n");
	assert_int_equal(rule_loaded(rs, "T_NEWDOM"), 1);
	assert_int_equal(rule_loaded(rs, "T_SPFALL"), 1);
	assert_int_equal(rule_loaded(rs, "T_DKIM"), 0);             /* no DKIM signing domains here */
	assert_int_equal(rule_loaded(rs, "T_RCODE"), 0);
	struct asked a;
	queries(rs, &a, NULL, NULL, 0, NULL);
	assert_true(asked(&a, "sender.example.fresh.test/1L"));
	assert_true(asked(&a, "nowhere.example/16"));
	assert_false(strstr(a.s, "dkimwl"));
	struct hits h;
	static const char *const yes[] = { "dns:A:sender.example.fresh.test=127.2.0.2",
	                                   "dns:TXT:nowhere.example=v=spf1 +all", NULL };
	scan(rs, &h, NULL, NULL, 0, yes);
	assert_true(has(&h, "T_NEWDOM"));
	assert_true(has(&h, "T_SPFALL"));
	assert_false(has(&h, "T_ANY"));
	static const char *const no[] = { "dns:A:sender.example.fresh.test=127.2.0.14",
	                                  "dns:TXT:nowhere.example=v=spf1 -all\nother",
	                                  "dns:A:sender.example.any.test=127.0.0.3", NULL };
	scan(rs, &h, NULL, NULL, 0, no);
	assert_false(has(&h, "T_NEWDOM"));
	assert_false(has(&h, "T_SPFALL"));
	assert_true(has(&h, "T_ANY"));                          /* no subtest: any answer */
	rules_free(rs);
}

/* --- what blocklist answers mean ------------------------------------------------- */

static void test_verdicts(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"urirhssub U_BLOCKED multi.test. A 1\n"
		"dns_block_rule U_BLOCKED multi.test\n"
		"header Z_BLOCKED eval:check_rbl('z', 'zen.test', '^127\\.0\\.0\\.9$')\n"
		"dns_block_rule Z_BLOCKED zen.test\n");
	static const unsigned char refused[4] = { 127, 255, 255, 254 }, dbl_err[4] = { 127, 0, 1, 255 },
		bogus[4] = { 192, 0, 2, 1 }, one[4] = { 127, 0, 0, 1 }, two[4] = { 127, 0, 0, 2 }, nine[4] = { 127, 0, 0, 9 };
	assert_int_equal(eval_net_verdict(rs, "2.0.0.127.zen.test", refused), DNSBL_REFUSED);
	assert_int_equal(eval_net_verdict(rs, "spam.example.dbl.test", dbl_err), DNSBL_REFUSED);
	assert_int_equal(eval_net_verdict(rs, "2.0.0.127.iadb.test", dbl_err), DNSBL_LISTING);  /* an IP list */
	assert_int_equal(eval_net_verdict(rs, "spam.example.dbl.test", bogus), DNSBL_BOGUS);
	assert_int_equal(eval_net_verdict(rs, "spam.example.multi.test", one), DNSBL_REFUSED);   /* dns_block_rule */
	assert_int_equal(eval_net_verdict(rs, "spam.example.multi.test", two), DNSBL_LISTING);
	assert_int_equal(eval_net_verdict(rs, "spam.example.other.test", one), DNSBL_LISTING);
	assert_int_equal(eval_net_verdict(rs, "4.3.2.1.zen.test", nine), DNSBL_REFUSED);
	assert_int_equal(eval_net_verdict(rs, "4.3.2.1.zen.test", two), DNSBL_LISTING);
	rules_free(rs);
}

/* --- bad arguments ---------------------------------------------------------------- */

static void test_bad_arguments(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header B1 eval:check_rbl('x')\n"
		"header B2 eval:check_rbl('x', 'bad zone!')\n"
		"header B3 eval:check_rbl('x', 'z.test', '(unclosed')\n"
		"header B4 eval:check_rbl_sub('x')\n"
		"header B5 eval:check_uridnsbl()\n"
		"header B6 eval:check_dns_sender('extra')\n"
		"header B7 eval:check_uri_host_listed('')\n"
		"header B8 eval:check_rbl_sub('x', 'sb:1')\n"
		"header OK eval:check_rbl('x', 'z.test', '127.0.0.2')\n");
	for (int i = 1; i <= 8; i++) {
		char n[16];
		snprintf(n, sizeof n, "B%d", i);
		assert_int_equal(rule_loaded(rs, n), 0);
	}
	assert_int_equal(rule_loaded(rs, "OK"), 1);
	rules_free(rs);
	static const char *const bad[] = {
		"uridnssub X zen.test. A notanumber\n",
		"urirhssub X dbl.test. MX 127.0.1.2\n",
		"uridnsbl X\n",
		"dns_block_rule X\n",
		"enlist_uri_host nolistname.example\n",
		"uridnsbl_max_domains many\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		rs = rules_new();
		char err[512] = "";
		assert_int_equal(rules_load_text(rs, "bad.cf", bad[i], strlen(bad[i]), err, sizeof err), -1);
		assert_non_null(strstr(err, "bad.cf:1:"));
		rules_free(rs);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rbl_queries_and_hits),
		cmocka_unit_test(test_rbl_sets),
		cmocka_unit_test(test_uri_queries),
		cmocka_unit_test(test_uri_hits),
		cmocka_unit_test(test_dns_sender),
		cmocka_unit_test(test_sender_domain_last_at),
		cmocka_unit_test(test_uri_host_listed),
		cmocka_unit_test(test_skip_checks),
		cmocka_unit_test(test_hostile_uris),
		cmocka_unit_test(test_askdns),
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_bad_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
