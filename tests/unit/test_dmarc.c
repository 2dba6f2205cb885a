/* test_dmarc.c - the DMARC decision (filters/dmarc.c) on a table of cases:
 * aligned and unaligned identifiers, strict and relaxed alignment for DKIM
 * and SPF, subdomain policy (sp=), pct sampling, bad records, and the
 * public-suffix edge cases where libopendmarc 1.4.2's own alignment is
 * wrong (co.uk, one-letter labels); organizational domains; the From
 * address-list parser (several addresses, groups, comments). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "filters/addrlist.h"
#include "filters/dmarc.h"

#define PSL_FILE "/usr/share/publicsuffix/public_suffix_list.dat"

static psl_ctx_t *psl;

static int setup(void **state)
{
	(void)state;
	psl = psl_load_file(PSL_FILE);
	return psl == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	psl_free(psl);
	return 0;
}

static void test_org_domain(void **state)
{
	static const char *const cases[][2] = {
		{ "example.com", "example.com" },
		{ "a.b.example.com", "example.com" },
		{ "a.b.example.co.uk", "example.co.uk" },
		{ "example.co.uk", "example.co.uk" },
		{ "co.uk", "co.uk" },                  /* a public suffix: itself */
		{ "mail.sign.test", "sign.test" },     /* not in the list: the "*" rule */
		{ "a.example.co.uk", "example.co.uk" }, /* one-letter label kept */
		/* libpsl is case-sensitive: these were "CO.UK" and "Example.COM" */
		{ "Bounce.Example.CO.UK", "example.co.uk" },
		{ "MAIL.Example.COM", "example.com" },
		{ "CO.UK", "co.uk" },
	};
	char out[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(dmarc_org_domain(psl, cases[i][0], out, sizeof(out)), cases[i][1]);
}

static void test_alignment(void **state)
{
	/* identifier, From domain, strict, aligned */
	static const struct { const char *a, *b; int strict, want; } cases[] = {
		{ "example.com", "example.com", 1, 1 },
		{ "EXAMPLE.com", "example.COM", 1, 1 },
		{ "mail.example.com", "example.com", 0, 1 },
		{ "mail.example.com", "example.com", 1, 0 },
		{ "x.evil.com", "y.evil.com", 0, 1 },        /* same org domain */
		{ "x.evil.com", "y.evil.com", 1, 0 },        /* libopendmarc says aligned */
		{ "a.example.co.uk", "b.example.co.uk", 1, 0 }, /* libopendmarc says aligned */
		{ "a.example.co.uk", "b.example.co.uk", 0, 1 },
		{ "mail.example.co.uk", "example.co.uk", 1, 0 }, /* libopendmarc says aligned */
		{ "co.uk", "example.co.uk", 0, 0 },          /* libopendmarc says aligned */
		{ "Bounce.Example.CO.UK", "example.co.uk", 0, 1 }, /* any case (libpsl: none) */
		{ "mail.example.co.uk", "EXAMPLE.co.uk", 0, 1 },
		{ "CO.UK", "example.co.uk", 0, 0 },
		{ "example.co.uk", "other.co.uk", 0, 0 },
		{ "evil-example.com", "example.com", 0, 0 },
		{ "example.com.evil.com", "example.com", 0, 0 },
		{ "", "example.com", 0, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = dmarc_aligned(psl, cases[i].a, cases[i].b, cases[i].strict);

		if (got != cases[i].want)
			fail_msg("aligned(%s, %s, strict=%d) = %d, want %d", cases[i].a, cases[i].b,
			    cases[i].strict, got, cases[i].want);
	}
}

struct dcase {
	const char *name;
	const char *from, *record;
	int at_org;
	const char *spf, *dkim;
	unsigned draw;
	enum dmarc_result result;
	char applied;       /* 'n', 'q', 'r' */
};

static void test_decisions(void **state)
{
	static const struct dcase cases[] = {
		{ "dkim aligned (relaxed)", "example.com", "v=DMARC1; p=reject", 0,
		  NULL, "mail.example.com", 0, DMARC_RES_PASS, 'n' },
		{ "dkim exact", "example.com", "v=DMARC1; p=reject; adkim=s", 0,
		  NULL, "example.com", 0, DMARC_RES_PASS, 'n' },
		{ "dkim subdomain, adkim=s", "example.com", "v=DMARC1; p=reject; adkim=s", 0,
		  NULL, "mail.example.com", 0, DMARC_RES_FAIL, 'r' },
		{ "spf aligned (relaxed)", "example.com", "v=DMARC1; p=reject", 0,
		  "bounce.example.com", NULL, 0, DMARC_RES_PASS, 'n' },
		{ "spf subdomain, aspf=s", "example.com", "v=DMARC1; p=quarantine; aspf=s", 0,
		  "bounce.example.com", NULL, 0, DMARC_RES_FAIL, 'q' },
		{ "aspf=s but dkim relaxed passes", "example.com", "v=DMARC1; p=reject; aspf=s", 0,
		  "bounce.example.com", "x.example.com", 0, DMARC_RES_PASS, 'n' },
		{ "unaligned dkim", "example.com", "v=DMARC1; p=reject", 0,
		  NULL, "evil.com", 0, DMARC_RES_FAIL, 'r' },
		{ "unaligned spf", "example.com", "v=DMARC1; p=reject", 0,
		  "example.com.evil.com", NULL, 0, DMARC_RES_FAIL, 'r' },
		{ "nothing authenticated, p=none", "example.com", "v=DMARC1; p=none", 0,
		  NULL, NULL, 0, DMARC_RES_FAIL, 'n' },
		{ "subdomain: sp= applies", "a.example.com", "v=DMARC1; p=reject; sp=quarantine", 1,
		  NULL, NULL, 0, DMARC_RES_FAIL, 'q' },
		{ "subdomain: sp=none", "a.example.com", "v=DMARC1; p=reject; sp=none", 1,
		  NULL, NULL, 0, DMARC_RES_FAIL, 'n' },
		{ "subdomain without sp: p", "a.example.com", "v=DMARC1; p=reject", 1,
		  NULL, NULL, 0, DMARC_RES_FAIL, 'r' },
		{ "own record: p, not sp", "a.example.com", "v=DMARC1; p=reject; sp=none", 0,
		  NULL, NULL, 0, DMARC_RES_FAIL, 'r' },
		{ "pct=0: reject becomes quarantine", "example.com", "v=DMARC1; p=reject; pct=0", 0,
		  NULL, NULL, 0, DMARC_RES_FAIL, 'q' },
		{ "pct=0: quarantine becomes none", "example.com", "v=DMARC1; p=quarantine; pct=0", 0,
		  NULL, NULL, 0, DMARC_RES_FAIL, 'n' },
		{ "pct=50, draw 49: sampled", "example.com", "v=DMARC1; p=reject; pct=50", 0,
		  NULL, NULL, 49, DMARC_RES_FAIL, 'r' },
		{ "pct=50, draw 50: not sampled", "example.com", "v=DMARC1; p=reject; pct=50", 0,
		  NULL, NULL, 50, DMARC_RES_FAIL, 'q' },
		{ "pct=100, draw 99", "example.com", "v=DMARC1; p=reject; pct=100", 0,
		  NULL, NULL, 99, DMARC_RES_FAIL, 'r' },
		{ "co.uk: d=co.uk is not example.co.uk", "example.co.uk", "v=DMARC1; p=reject", 0,
		  NULL, "co.uk", 0, DMARC_RES_FAIL, 'r' },
		{ "co.uk: sibling registrable domain", "example.co.uk", "v=DMARC1; p=reject", 0,
		  NULL, "other.co.uk", 0, DMARC_RES_FAIL, 'r' },
		{ "co.uk: relaxed within example.co.uk", "a.example.co.uk", "v=DMARC1; p=reject", 1,
		  NULL, "b.example.co.uk", 0, DMARC_RES_PASS, 'n' },
		{ "co.uk: strict, one-letter label", "a.example.co.uk", "v=DMARC1; p=reject; adkim=s", 1,
		  NULL, "b.example.co.uk", 0, DMARC_RES_FAIL, 'r' },
		{ "same org, strict", "x.evil.com", "v=DMARC1; p=reject; adkim=s; aspf=s", 1,
		  "y.evil.com", "y.evil.com", 0, DMARC_RES_FAIL, 'r' },
		{ "no record", "example.com", NULL, 0, NULL, "example.com", 0, DMARC_RES_NONE, 'n' },
		{ "bad p=", "example.com", "v=DMARC1; p=bogus", 0, NULL, NULL, 0, DMARC_RES_PERMERROR, 'n' },
		{ "no p=", "example.com", "v=DMARC1; rua=mailto:x@example.com", 0, NULL, NULL, 0,
		  DMARC_RES_PERMERROR, 'n' },
		/* session 20: an invalid optional tag takes its default (RFC
		 * 7489 6.3); libopendmarc refused the record (permerror) */
		{ "pct=200 ignored", "example.com", "v=DMARC1; p=reject; pct=200", 0, NULL, NULL, 99,
		  DMARC_RES_FAIL, 'r' },
		{ "pct=-1 ignored", "example.com", "v=DMARC1; p=reject; pct=-1", 0, NULL, NULL, 99,
		  DMARC_RES_FAIL, 'r' },
		{ "pct=abc is 100, not 0", "example.com", "v=DMARC1; p=reject; pct=abc", 0, NULL, NULL, 99,
		  DMARC_RES_FAIL, 'r' },
		{ "pct=50% is 100", "example.com", "v=DMARC1; p=reject; pct=50%", 0, NULL, NULL, 99,
		  DMARC_RES_FAIL, 'r' },
		{ "adkim=x ignored", "example.com", "v=DMARC1; p=reject; adkim=x", 0, NULL, NULL, 0,
		  DMARC_RES_FAIL, 'r' },
		{ "adkim=x: relaxed", "example.com", "v=DMARC1; p=reject; adkim=x", 0, NULL,
		  "mail.example.com", 0, DMARC_RES_PASS, 'n' },
		{ "adkim=strict still strict", "example.com", "v=DMARC1; p=reject; adkim=strict", 0, NULL,
		  "mail.example.com", 0, DMARC_RES_FAIL, 'r' },
		{ "fo=9 ignored", "example.com", "v=DMARC1; p=reject; fo=9", 0, NULL, NULL, 0,
		  DMARC_RES_FAIL, 'r' },
		{ "ri=soon ignored", "example.com", "v=DMARC1; p=reject; ri=soon", 0, NULL, NULL, 0,
		  DMARC_RES_FAIL, 'r' },
		{ "rf=xml ignored", "example.com", "v=DMARC1; p=reject; rf=xml", 0, NULL, NULL, 0,
		  DMARC_RES_FAIL, 'r' },
		{ "p= first, bad tags before", "example.com", "v=DMARC1; aspf=; pct=x; p=quarantine", 0,
		  NULL, NULL, 99, DMARC_RES_FAIL, 'q' },
		{ "bad sp= stays a permerror", "a.example.com", "v=DMARC1; p=reject; sp=bogus", 1,
		  NULL, NULL, 0, DMARC_RES_PERMERROR, 'n' },
	};
	size_t i;
	int bad = 0;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct dcase *c = &cases[i];
		const char *dk[1] = { c->dkim };
		struct dmarc_in in = { c->from, c->record, c->at_org, c->spf, dk, c->dkim ? 1 : 0, c->draw,
		                       NULL, NULL, 0 };
		struct dmarc_out out;

		dmarc_decide(psl, &in, &out);
		if (out.result != c->result || out.applied != c->applied) {
			print_error("case \"%s\": result %d applied '%c', want %d '%c'\n", c->name,
			    out.result, out.applied ? out.applied : '0', c->result, c->applied);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
}

/* what libopendmarc is handed of a record (dmarc_record_clean) */
static void test_record_clean(void **state)
{
	static const struct { const char *txt, *clean, *ignored; } cases[] = {
		{ "v=DMARC1; p=reject", "v=DMARC1; p=reject", "" },
		{ "v=DMARC1;p=reject;sp=none;adkim=s;aspf=r;pct=50",
		  "v=DMARC1; p=reject; sp=none; adkim=s; aspf=r; pct=50", "" },
		{ " v = DMARC1 ; p = quarantine ; pct = 007 ", "v=DMARC1; p=quarantine; pct=007", "" },
		{ "v=DMARC1; p=reject; pct=200; adkim=x; aspf=; fo=9; ri=soon; rf=xml",
		  "v=DMARC1; p=reject", "adkim aspf pct fo rf ri" },
		{ "v=DMARC1; p=reject; pct=1000", "v=DMARC1; p=reject", "pct" },
		{ "v=DMARC1; p=reject; fo=0:1:d:s; rf=afrf; ri=86400; rua=mailto:a@b.test,mailto:c@d.test",
		  "v=DMARC1; p=reject", "" },
		{ "v=DMARC1; p=reject; fo=0:; ri=4294967296", "v=DMARC1; p=reject", "fo ri" },
		{ "v=DMARC1; p=bogus; sp=x", "v=DMARC1; p=bogus; sp=x", "" },
		{ "v=DMARC1; junk; x=y; p=none", "v=DMARC1; p=none", "" },
		{ "v=DMARC1", "v=DMARC1", "" },
	};
	char ign[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *c = dmarc_record_clean(cases[i].txt, ign, sizeof(ign));

		if (strcmp(c, cases[i].clean) != 0 || strcmp(ign, cases[i].ignored) != 0)
			fail_msg("%s: \"%s\" ignored \"%s\"", cases[i].txt, c, ign);
		free(c);
	}
	/* a small buffer for the names: cut at a name, never mid-name */
	free(dmarc_record_clean("v=DMARC1; p=reject; adkim=x; aspf=y", ign, 7));
	assert_string_equal(ign, "adkim");
}

/* a fail resting on an aligned identifier that could not be checked for
 * now is a temperror (no policy applied); an unaligned one changes nothing */
static void test_temperror_of_aligned_identifiers(void **state)
{
	const char *dk_al[1] = { "mail.example.com" }, *dk_un[1] = { "evil.test" };
	struct dmarc_in in = { "example.com", "v=DMARC1; p=reject", 0, NULL, NULL, 0, 0,
	                       NULL, NULL, 0 };
	struct dmarc_out out;

	(void)state;
	dmarc_decide(psl, &in, &out);
	assert_int_equal(out.result, DMARC_RES_FAIL);
	in.dkim_temp_domains = dk_un;
	in.ndkim_temp = 1;
	in.spf_temp_domain = "other.test";
	dmarc_decide(psl, &in, &out);
	assert_int_equal(out.result, DMARC_RES_FAIL);
	assert_int_equal(out.applied, 'r');
	in.dkim_temp_domains = dk_al;
	dmarc_decide(psl, &in, &out);
	assert_int_equal(out.result, DMARC_RES_TEMPERROR);
	assert_int_equal(out.applied, 'n');
	in.record = "v=DMARC1; p=reject; adkim=s";      /* strict: mail.example.com is not aligned */
	dmarc_decide(psl, &in, &out);
	assert_int_equal(out.result, DMARC_RES_FAIL);
	in.ndkim_temp = 0;
	in.spf_temp_domain = "example.com";
	dmarc_decide(psl, &in, &out);
	assert_int_equal(out.result, DMARC_RES_TEMPERROR);
	in.dkim_domains = dk_al;                         /* a pass wins over a temperror */
	in.ndkim = 1;
	in.record = "v=DMARC1; p=reject";
	dmarc_decide(psl, &in, &out);
	assert_int_equal(out.result, DMARC_RES_PASS);
}

static void test_addrlist(void **state)
{
	char d[4][ADDR_DOMAIN_MAX + 1];

	(void)state;
	assert_int_equal(addrlist_domains("alice@Example.COM", d, 4), 1);
	assert_string_equal(d[0], "example.com");
	assert_int_equal(addrlist_domains("\"Doe, John\" <john@example.org>", d, 4), 1);
	assert_string_equal(d[0], "example.org");
	assert_int_equal(addrlist_domains("(x@evil.com, y@evil.com) john@example.org (c)", d, 4), 1);
	assert_string_equal(d[0], "example.org");
	assert_int_equal(addrlist_domains("a@one.example, B <b@two.example>", d, 4), 2);
	assert_string_equal(d[0], "one.example");
	assert_string_equal(d[1], "two.example");
	assert_int_equal(addrlist_domains("friends: a@one.example, b@two.example;", d, 4), 2);
	assert_int_equal(addrlist_domains("undisclosed-recipients:;", d, 4), 0);
	assert_int_equal(addrlist_domains("", d, 4), 0);
	assert_int_equal(addrlist_domains("\"a@evil.com\" <a@good.example.>", d, 4), 1);
	assert_string_equal(d[0], "good.example");
	assert_int_equal(addrlist_domains("no-at-sign", d, 4), 1);
	assert_string_equal(d[0], "");
	assert_int_equal(addrlist_domains("a@b@c.example", d, 4), 1);
	assert_string_equal(d[0], "");           /* two '@': no addr-spec (session 20) */
	assert_true(domain_ok("example.com"));
	assert_false(domain_ok("com"));
	assert_false(domain_ok("legitimate.com(.attacker.com"));
	assert_false(domain_ok("a..b"));
}

/* session 20: a mailbox is one addr-spec, or a display name and one
 * <addr-spec>; anything else has no domain ("": DMARC_BAD_FROM), and
 * several are several.  Until then the last '@' won: each forgery below
 * was read as evil.test while GMime reads (or lists) ceo@victim.test. */
static void test_addrlist_grammar(void **state)
{
	static const struct { const char *v; size_t n; const char *d0, *d1; } cases[] = {
		/* forgeries of the review */
		{ "ceo@victim.test@evil.test", 1, "", NULL },
		{ "<ceo@victim.test@evil.test>", 1, "", NULL },
		{ "<x@evil.test> <ceo@victim.test>", 1, "", NULL },
		{ "<ceo@victim.test,x@evil.test>", 1, "", NULL },
		{ "<ceo@victim.test x@evil.test>", 1, "", NULL },
		{ "<x@evil.test> ceo@victim.test", 1, "", NULL },
		{ "ceo@victim.test <x@evil.test>", 1, "", NULL },
		{ "ceo@victim.test: x@evil.test;", 1, "", NULL },   /* GMime: ceo@victim.test */
		{ "G: H: x@evil.test;", 1, "", NULL },
		{ "ceo x@evil.test", 1, "", NULL },
		{ "x\\@evil.test <ceo@victim.test>", 1, "", NULL },
		{ "x@evil.test>ceo@victim.test", 1, "", NULL },
		{ "x@evil.test <ceo@victim.test", 1, "", NULL },
		{ "\"a\"b@evil.test", 1, "", NULL },
		{ "<@victim.test x@evil.test>", 1, "", NULL },
		{ "<@victim.test,x@evil.test>", 1, "", NULL },
		{ "a@evil.test..", 1, "", NULL },
		{ "a@", 1, "", NULL },
		{ "@evil.test", 1, "", NULL },
		{ "<>", 1, "", NULL },
		/* several */
		{ "x@evil.test; ceo@victim.test", 2, "evil.test", "victim.test" },
		{ "x@evil.test, ceo@victim.test", 2, "evil.test", "victim.test" },
		/* what works and keeps working */
		{ "ceo@victim.test", 1, "victim.test", NULL },
		{ "CEO <ceo@Victim.TEST>", 1, "victim.test", NULL },
		{ "John Q. Public <jqp@victim.test>", 1, "victim.test", NULL },
		{ "\"ceo@evil.test <x@evil.test>\" <ceo@victim.test>", 1, "victim.test", NULL },
		{ "(<x@evil.test>) ceo@victim.test", 1, "victim.test", NULL },
		{ "ceo(x@evil.test)@victim.test", 1, "victim.test", NULL },
		{ "ceo @ victim.test", 1, "victim.test", NULL },
		{ "<ceo@victim .test>", 1, "victim.test", NULL },      /* obs-domain, folded */
		{ "<ceo@victim.\t test>", 1, "victim.test", NULL },
		{ "\"x y\"@victim.test", 1, "victim.test", NULL },
		{ "\"a,b\".c@victim.test", 1, "victim.test", NULL },
		{ "first.last@victim.test", 1, "victim.test", NULL },
		{ "a..b@victim.test", 1, "victim.test", NULL },
		{ "a.@victim.test", 1, "victim.test", NULL },
		{ "ceo@victim.test.", 1, "victim.test", NULL },
		{ "<@evil.test:ceo@victim.test>", 1, "victim.test", NULL },
		{ "<@a.test,@b.test:ceo@victim.test>", 1, "victim.test", NULL },
		{ "<,@a.test, ,@b.test:ceo@victim.test>", 1, "victim.test", NULL },
		{ "G: ceo@victim.test;", 1, "victim.test", NULL },
		{ "G:;", 0, NULL, NULL },
		{ "=?utf-8?q?ceo=40victim=2Etest?= <x@evil.test>", 1, "evil.test", NULL },
		{ "=?utf-8?b?PGNlb0B2aWN0aW0udGVzdD4=?=", 1, "", NULL },
		{ "J\xc3\xbcrgen <j@b\xc3\xbc" "cher.test>", 1, "b\xc3\xbc" "cher.test", NULL },
		{ "ceo@[192.0.2.1]", 1, "", NULL },
		{ "ceo@victim.test ", 1, "victim.test", NULL },
		{ " <ceo@victim.test> (c)", 1, "victim.test", NULL },
		{ "ceo@victim.test (x", 1, "victim.test", NULL },      /* open comment: to the end */
		/* a display name that is the address, or names only its domain
		 * (session 20 fix: common, GMime and Python read one mailbox) */
		{ "a@sign.test <a@sign.test>", 1, "sign.test", NULL },
		{ "'a@sign.test' <a@sign.test>", 1, "sign.test", NULL },
		{ "a@sign.test<a@sign.test>", 1, "sign.test", NULL },
		{ "a@sign.test <A@SIGN.TEST>", 1, "sign.test", NULL },
		{ "A@Sign.Test. <a@sign.test>", 1, "sign.test", NULL },
		{ "b@sign.test <a@sign.test>", 1, "sign.test", NULL },
		{ "Sales - sales@sign.test <sales@sign.test>", 1, "sign.test", NULL },
		{ "j@b\xc3\xbc" "cher.test <j@xn--bcher-kva.test>", 1, "xn--bcher-kva.test", NULL },
		{ "j@xn--bcher-kva.test <j@B\xc3\x9c" "CHER.test>", 1, "b\xc3\x9c" "cher.test", NULL },
		{ "Joe @ Acme <joe@acme.com>", 1, "acme.com", NULL },
		{ "user <u@victim.test>>", 1, "victim.test", NULL },
		{ "<<u@victim.test>>", 1, "victim.test", NULL },
		{ "[Ticket #42] Support <s@victim.test>", 1, "victim.test", NULL },
		/* ... and one naming another domain stays none */
		{ "a@sign.test <a@sign.test.evil.test>", 1, "", NULL },
		{ "'ceo@victim.test' <x@evil.test>", 1, "", NULL },
		{ "ceo@victim.test<x@evil.test>", 1, "", NULL },
		{ "x@evil.test ceo@victim.test <ceo@victim.test>", 1, "", NULL },
		{ "ceo@victim\"x\".test <x@evil.test>", 1, "", NULL },
		{ "ceo@victim.test@evil.test <x@evil.test>", 1, "", NULL },
		{ "ceo@victim . test <x@evil.test>", 1, "", NULL },
		{ "ceo@victim(c).test <x@evil.test>", 1, "", NULL },
		{ "ceo@[192.0.2.1] <x@evil.test>", 1, "", NULL },
		{ "ceo@ <x@evil.test>", 1, "", NULL },
		{ "x@evil.test <<ceo@victim.test>>", 1, "", NULL },
		{ "<x@evil.test <ceo@victim.test>>", 1, "", NULL },
		{ "<ceo@victim.test> x@evil.test>", 1, "", NULL },
		{ "<ceo@victim.test>> <x@evil.test>", 1, "", NULL },
		{ "[<x@evil.test>] <ceo@victim.test>", 1, "", NULL },
		{ "a@[192.0.2.1] <b@[192.0.2.1]>", 1, "", NULL },
	};
	char d[4][ADDR_DOMAIN_MAX + 1];
	size_t i, k;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		k = addrlist_domains(cases[i].v, d, 4);
		if (k != cases[i].n || (k > 0 && strcmp(d[0], cases[i].d0) != 0) ||
		    (k > 1 && strcmp(d[1], cases[i].d1) != 0))
			fail_msg("%s: %zu \"%s\" \"%s\"", cases[i].v, k, k > 0 ? d[0] : "-",
			    k > 1 ? d[1] : "-");
	}
}

/* a field read whole: past 4,096 bytes (where the copy was cut) the angle
 * address is the mailbox, a second mailbox counts, and a megabyte of
 * blanks and comments is one linear walk */
static void test_addrlist_long_field(void **state)
{
	static const char *const tails[] = { " <ceo@sign.test>", ", ceo@sign.test",
		" (c) <ceo@sign.test>" };
	char d[4][ADDR_DOMAIN_MAX + 1];
	size_t pad[] = { 4090, 4200, 70000, 1 << 20 }, i, t;

	(void)state;
	for (i = 0; i < sizeof(pad) / sizeof(pad[0]); i++)
		for (t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
			size_t tl = strlen(tails[t]);
			char *v = malloc(14 + pad[i] + tl + 1);

			assert_non_null(v);
			memcpy(v, "x@nodmarc.test", 14);
			memset(v + 14, ' ', pad[i]);
			memcpy(v + 14 + pad[i], tails[t], tl + 1);
			if (t == 1) {
				assert_int_equal(addrlist_domains(v, d, 4), 2);
				assert_string_equal(d[0], "nodmarc.test");
				assert_string_equal(d[1], "sign.test");
			} else {
				/* an address as display name: no mailbox (session 20) */
				assert_int_equal(addrlist_domains(v, d, 4), 1);
				assert_string_equal(d[0], "");
				/* a display name that is one: the <...> past 4 KB */
				v[1] = '_';
				assert_int_equal(addrlist_domains(v, d, 4), 1);
				assert_string_equal(d[0], "sign.test");
			}
			free(v);
		}
	/* a comment and a quoted string that straddle 4,096 bytes */
	{
		char *v = malloc(9000);

		assert_non_null(v);
		strcpy(v, "(");
		memset(v + 1, 'a', 5000);
		strcpy(v + 5001, ", b@evil.test) \"");
		memset(v + strlen(v), '@', 2000);
		strcpy(v + 7017, "\" <ok@good.test>");
		assert_int_equal(addrlist_domains(v, d, 4), 1);
		assert_string_equal(d[0], "good.test");
		free(v);
	}
}

/* RFC 7489 6.4: dmarc-version = "v" *WSP "=" *WSP "DMARC1", then a
 * dmarc-sep (*WSP ";" *WSP) or the end */
static void test_record_version(void **state)
{
	static const struct { const char *txt; int ok; } cases[] = {
		{ "v=DMARC1; p=reject", 1 },
		{ "v=DMARC1", 1 },
		{ "v = DMARC1; p=reject", 1 },
		{ "v\t=\tDMARC1\t;p=reject", 1 },
		{ "V=DMARC1;p=reject", 1 },          /* "v": case-insensitive */
		{ "v=DMARC1 ; p=reject", 1 },
		{ "v=dmarc1; p=reject", 0 },         /* %x44.4d.41.52.43.31: exact */
		{ "v=DMARC10; p=reject", 0 },
		{ "v=DMARC1 p=reject", 0 },          /* no separator */
		{ "v=DMARC1x", 0 },
		{ " v=DMARC1; p=reject", 0 },
		{ "p=reject; v=DMARC1", 0 },
		{ "v:DMARC1; p=reject", 0 },
		{ "v=", 0 },
		{ "v", 0 },
		{ "", 0 },
		{ "v=spf1 -all", 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (dmarc_record_version_ok(cases[i].txt) != cases[i].ok)
			fail_msg("\"%s\": want %d", cases[i].txt, cases[i].ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_org_domain),
		cmocka_unit_test(test_alignment),
		cmocka_unit_test(test_decisions),
		cmocka_unit_test(test_temperror_of_aligned_identifiers),
		cmocka_unit_test(test_addrlist),
		cmocka_unit_test(test_record_clean),
		cmocka_unit_test(test_addrlist_grammar),
		cmocka_unit_test(test_addrlist_long_field),
		cmocka_unit_test(test_record_version),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
