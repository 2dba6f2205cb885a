/* test_eval_relay.c - unit tests for rules/eval_relay.c: Received fields
 * parsed as SpamAssassin parses them (the expected X-Spam-Relays-* strings
 * were produced by SpamAssassin 4.0 itself from the same fields), the trust
 * path with and without trusted/internal/msa_networks, the SMTP client hop,
 * ALL-* pseudo-headers, and every eval function hit and not hit, bad
 * arguments and bad directives refused, hostile input bounded. */
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

/* scan headers (+ optional body lines, full text, client) */
static void scan_in(struct ruleset *rs, struct hits *h, struct rules_input *in)
{
	memset(h, 0, sizeof *h);
	struct rules_scratch *s = rules_scratch_new(rs);
	assert_non_null(s);
	assert_int_equal(rules_scan(rs, s, in, collect, h), 0);
	rules_scratch_free(s);
}

static void scan_hdrs(struct ruleset *rs, struct hits *h, const struct rules_header *hd, size_t n)
{
	struct rules_input in = { .headers = hd, .nheaders = n };
	scan_in(rs, h, &in);
}

#define N(a) (sizeof (a) / sizeof *(a))

/* Received fields of several MTAs; SpamAssassin's strings for them below */
static const struct rules_header chain[] = {
	{ "Received", "from mail.example.org (mail.example.org [192.168.1.5])\n\tby mx.example.org (Postfix) with ESMTP id 4ABCD12345\n\tfor <bob@example.org>; Thu, 13 Mar 2003 15:23:15 -0500 (EST)", NULL },
	{ "Received", "from sender.example.com (host-1-2-3-4.example.net [1.2.3.4])\n\tby mail.example.org (8.12.11/8.12.11) with ESMTP id h2F0c2x31856\n\tfor <bob@example.org>; Thu, 13 Mar 2003 15:20:03 -0500", NULL },
	{ "Received", "from [10.0.0.7] (helo=laptop) by sender.example.com with esmtpa (Exim 4.50) id 1GzVLs-0002Oz-7b; Thu, 13 Mar 2003 12:19:00 -0800", NULL },
	{ "Received", "from unknown (HELO feux01a-isp) (213.199.4.210) by totor.bouissou.net with SMTP; 1 Nov 2003 07:05:19 -0000", NULL },
	{ "Received", "from localhost (localhost [127.0.0.1]) by cabbage.jmason.org (Postfix) with ESMTP id A96E18BD97 for <jm@localhost>; Thu, 13 Mar 2003 15:23:15 -0500 (EST)", NULL },
	{ "Received", "this is not a handover", NULL },
	{ "From", "a@example.com", NULL },
	{ "Date", "Thu, 13 Mar 2003 15:19:00 -0500", NULL },
};

#define R_MX "\\[ ip=192\\.168\\.1\\.5 rdns=mail\\.example\\.org helo=mail\\.example\\.org by=mx\\.example\\.org ident= envfrom= intl=1 id=4ABCD12345 auth= msa=0 \\]"
#define R_SM "\\[ ip=1\\.2\\.3\\.4 rdns=host-1-2-3-4\\.example\\.net helo=sender\\.example\\.com by=mail\\.example\\.org ident= envfrom= intl=0 id=h2F0c2x31856 auth= msa=0 \\]"
#define R_EX "\\[ ip=10\\.0\\.0\\.7 rdns= helo=laptop by=sender\\.example\\.com ident= envfrom= intl=0 id=1GzVLs-0002Oz-7b auth=esmtpa msa=0 \\]"
#define R_QM "\\[ ip=213\\.199\\.4\\.210 rdns= helo=feux01a-isp by=totor\\.bouissou\\.net ident= envfrom= intl=0 id= auth= msa=0 \\]"
#define R_LH "\\[ ip=127\\.0\\.0\\.1 rdns=localhost helo=localhost by=cabbage\\.jmason\\.org ident= envfrom= intl=0 id=A96E18BD97 auth= msa=0 \\]"

static void test_relay_strings(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header T_OK X-Spam-Relays-Trusted =~ /^" R_MX "$/\n"
		"header U_OK X-Spam-Relays-Untrusted =~ /^" R_SM " " R_EX " " R_QM " " R_LH "$/\n"
		"header I_OK X-Spam-Relays-Internal =~ /^" R_MX "$/\n"
		"header E_OK X-Spam-Relays-External =~ /^" R_SM " " R_EX "/\n"
		"header ALL_TR ALL-TRUSTED =~ /Received: from mail\\.example\\.org.*\\nReceived: from sender/s\n"
		"header ALL_TR_TOO_FAR ALL-TRUSTED =~ /Received: from \\[10\\.0\\.0\\.7\\]/\n"
		"header ALL_EXT ALL-EXTERNAL =~ /(?:^|\\n)Received:\\s.+\\nReceived:\\s/s\n"
		"header ALL_UNTR_FROM ALL-UNTRUSTED =~ /^From: a\\@example\\.com/m\n"
		"header ALL_TRUSTED eval:check_all_trusted()\n"
		"header NO_RELAYS eval:check_no_relays()\n"
		"header UNPARSEABLE eval:check_relays_unparseable()\n");
	struct hits h;
	scan_hdrs(rs, &h, chain, N(chain));
	assert_true(has(&h, "T_OK"));
	assert_true(has(&h, "U_OK"));
	assert_true(has(&h, "I_OK"));
	assert_true(has(&h, "E_OK"));
	assert_true(has(&h, "ALL_TR"));
	assert_false(has(&h, "ALL_TR_TOO_FAR"));
	assert_true(has(&h, "ALL_EXT"));
	assert_true(has(&h, "ALL_UNTR_FROM"));
	assert_false(has(&h, "ALL_TRUSTED"));
	assert_false(has(&h, "NO_RELAYS"));
	assert_false(has(&h, "UNPARSEABLE"));          /* "this is not..." is skipped, not unparseable */

	/* a "from" field without address and receiver is unparseable */
	static const struct rules_header bad[] = {
		{ "Received", "from mail.example.org (mail.example.org [192.168.1.5]) by mx.example.org (Postfix) with ESMTP id 1; Thu, 13 Mar 2003 15:23:15 -0500", NULL },
		{ "Received", "from foo bar baz", NULL },
	};
	scan_hdrs(rs, &h, bad, N(bad));
	assert_true(has(&h, "UNPARSEABLE"));
	assert_false(has(&h, "ALL_TRUSTED"));          /* trusted relays, but one unparseable */
	scan_hdrs(rs, &h, bad, 1);
	assert_true(has(&h, "ALL_TRUSTED"));
	assert_false(has(&h, "UNPARSEABLE"));
	scan_hdrs(rs, &h, chain + 6, 2);               /* no Received at all */
	assert_true(has(&h, "NO_RELAYS"));
	assert_false(has(&h, "ALL_TRUSTED"));
	rules_free(rs);
}

/* more formats, each with SpamAssassin's string for it */
static void test_formats(void **st)
{
	(void)st;
	static const struct { const char *rcvd, *expect; } f[] = {
		{ "from mx1.example.net (mx1.example.net [203.0.113.9]) by mx.example.org (Postfix) with ESMTPS id 11AA for <bob@example.org>; Mon, 1 Jun 2020 10:00:00 +0000",
		  "[ ip=203.0.113.9 rdns=mx1.example.net helo=mx1.example.net by=mx.example.org ident= envfrom= intl=0 id=11AA auth= msa=0 ]" },
		{ "from client.example.com (unknown [198.51.100.77]) (Authenticated sender: joe) by mx1.example.net (Postfix) with ESMTPSA id 22BB; Mon, 1 Jun 2020 09:59:58 +0000",
		  "[ ip=198.51.100.77 rdns= helo=client.example.com by=mx1.example.net ident= envfrom= intl=1 id=22BB auth=ESMTPSA msa=0 ]" },
		{ "from [192.0.2.1] by web40310.mail.yahoo.com via HTTP; Wed, 12 Feb 2003 14:22:21 PST",
		  "[ ip=192.0.2.1 rdns= helo= by=web40310.mail.yahoo.com ident= envfrom= intl=0 id= auth= msa=0 ]" },
		{ "from inet-vrs-05.redmond.corp.microsoft.com ([157.54.6.157]) by INET-IMC-05.redmond.corp.microsoft.com with Microsoft SMTPSVC(5.0.2195.6624); Thu, 6 Mar 2003 12:02:35 -0800",
		  "[ ip=157.54.6.157 rdns= helo=inet-vrs-05.redmond.corp.microsoft.com by=INET-IMC-05.redmond.corp.microsoft.com ident= envfrom= intl=0 id= auth= msa=0 ]" },
		{ "from ran-out.mx.develooper.com (IDENT:qmailr@one.develooper.com [64.81.84.115]) by dogma.slashnull.org (8.11.6/8.11.6) with SMTP id h381Vvf19860 for <jm-cpan@jmason.org>; Tue, 8 Apr 2003 02:31:57 +0100",
		  "[ ip=64.81.84.115 rdns=one.develooper.com helo=ran-out.mx.develooper.com by=dogma.slashnull.org ident=qmailr envfrom= intl=0 id=h381Vvf19860 auth= msa=0 ]" },
		{ "from mail-wr1-f41.google.com (mail-wr1-f41.google.com [IPv6:2a00:1450:4864:20::341]) by mx.example.org (Postfix) with ESMTPS id 3C; Mon, 1 Jun 2020 10:00:00 +0000",
		  "[ ip=2a00:1450:4864:20::341 rdns=mail-wr1-f41.google.com helo=mail-wr1-f41.google.com by=mx.example.org ident= envfrom= intl=0 id= auth= msa=0 ]" },
		{ "from list.example.com ([66.92.72.213] helo=blazing.example.org) by sc8-sf-list1.sourceforge.net with esmtp (Exim 3.31-VA-mm2 #1 (Debian)) id 18lyuU-0007TI-00 for <x@lists.sourceforge.net>; Thu, 20 Feb 2003 14:11:18 -0800",
		  "[ ip=66.92.72.213 rdns=list.example.com helo=blazing.example.org by=sc8-sf-list1.sourceforge.net ident= envfrom= intl=0 id=18lyuU-0007TI-00 auth= msa=0 ]" },
		{ "from EXC-DAG-02.global.net (10.45.252.152) by EXC-DAG-03.global.net (10.45.252.153) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) id 15.1.1261.35; Mon, 29 Oct 2018 11:17:19 +0100",
		  "[ ip=10.45.252.152 rdns=EXC-DAG-02.global.net helo=EXC-DAG-02.global.net by=EXC-DAG-03.global.net ident= envfrom= intl=1 id=15.1.1261.35 auth= msa=0 ]" },
	};
	for (size_t i = 0; i < N(f); i++) {
		/* the expected string as a regex: escape the metacharacters */
		char re[1024], text[2400];
		size_t o = 0;
		for (const char *p = f[i].expect; *p && o + 3 < sizeof re; p++) {
			if (strchr("[].()\\|?*+{}^$/", *p)) re[o++] = '\\';
			re[o++] = *p;
		}
		re[o] = '\0';
		snprintf(text, sizeof text, "header SAME ALL =~ /x/\nheader RELAY X-Spam-Relays-Internal =~ /^%s$/\n"
		         "header RELAY_U X-Spam-Relays-Untrusted =~ /^%s$/\n", re, re);
		struct ruleset *rs = load(text);
		struct rules_header one[] = { { "Received", f[i].rcvd, NULL } };
		struct hits h;
		scan_hdrs(rs, &h, one, 1);
		if (!has(&h, "RELAY") && !has(&h, "RELAY_U")) fprintf(stderr, "format %zu not parsed as SpamAssassin does\n", i);
		assert_true(has(&h, "RELAY") || has(&h, "RELAY_U"));
		rules_free(rs);
	}
}

static const struct rules_header m3[] = {
	{ "Received", "from mx.example.org (mx.example.org [10.1.1.1]) by store.example.org (Postfix) with ESMTP id AAA1; Mon, 1 Jun 2020 10:00:05 +0000", NULL },
	{ "Received", "from hotmail.com (unknown [203.0.113.50]) by mx.example.org (Postfix) with SMTP id BBB2; Mon, 1 Jun 2020 10:00:00 +0000", NULL },
	{ "Received", "from 198.51.100.3 (HELO 192.0.2.44) by relay.other.net (Postfix) with SMTP id CCC3; Mon, 1 Jun 2020 09:59:00 +0000", NULL },
	{ "From", "someone@hotmail.com", NULL },
	{ "Date", "Mon, 1 Jun 2020 05:00:00 +0000", NULL },
};

static void test_networks(void **st)
{
	(void)st;
	const char *rules =
		"header ALL_TRUSTED eval:check_all_trusted()\n"
		"header MSA_SEEN X-Spam-Relays-External =~ /ip=203\\.0\\.113\\.50 [^\\]]* msa=1 \\]/\n"
		"header FIRST_INTERNAL X-Spam-Relays-Internal =~ /^\\[ ip=10\\.1\\.1\\.1 [^\\]]*\\]$/\n"
		"header NONE_TRUSTED X-Spam-Relays-Trusted =~ /^$/\n";
	char text[2048];
	/* no configuration: inference trusts the private first hop only */
	struct ruleset *rs = load(rules);
	struct hits h;
	scan_hdrs(rs, &h, m3, N(m3));
	assert_false(has(&h, "ALL_TRUSTED"));
	assert_true(has(&h, "FIRST_INTERNAL"));
	assert_false(has(&h, "NONE_TRUSTED"));
	rules_free(rs);
	/* trusted networks without the first hop: nothing trusted */
	snprintf(text, sizeof text, "%strusted_networks 203.0.113.0/24\n", rules);
	rs = load(text);
	scan_hdrs(rs, &h, m3, N(m3));
	assert_true(has(&h, "NONE_TRUSTED"));
	rules_free(rs);
	/* 10/8 and the MSA trusted: the MSA's sender is trusted too */
	snprintf(text, sizeof text, "%strusted_networks 10.0.0.0/8 203.0.113.0/24\ninternal_networks 10.\nmsa_networks 203.0.113.50\n", rules);
	rs = load(text);
	scan_hdrs(rs, &h, m3, N(m3));
	assert_true(has(&h, "ALL_TRUSTED"));
	assert_true(has(&h, "MSA_SEEN"));
	assert_true(has(&h, "FIRST_INTERNAL"));
	rules_free(rs);
	/* an exclusion comes first and wins */
	snprintf(text, sizeof text, "%strusted_networks !10.1.1.1 10.0.0.0/8 203.0.113.0/24\n", rules);
	rs = load(text);
	scan_hdrs(rs, &h, m3, N(m3));
	assert_true(has(&h, "NONE_TRUSTED"));
	rules_free(rs);
	/* bad networks are errors with FILE:LINE */
	static const char *const bad[] = { "trusted_networks 10.0.0.300\n", "internal_networks 1.2.3.4/33\n",
		"msa_networks not-an-address\n", "trusted_networks [::1\n" };
	for (size_t i = 0; i < N(bad); i++) {
		struct ruleset *b = rules_new();
		char err[256] = "";
		assert_int_not_equal(rules_load_text(b, "bad.cf", bad[i], strlen(bad[i]), err, sizeof err), 0);
		assert_non_null(strstr(err, "bad.cf:1:"));
		rules_free(b);
	}
}

static void test_client_hop(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header ALL_TRUSTED eval:check_all_trusted()\n"
		"header HOP_U X-Spam-Relays-Untrusted =~ /^\\[ ip=198\\.51\\.100\\.9 rdns=out\\.example\\.net helo=out\\.example\\.net by=mx\\.example\\.org ident= envfrom=a\\@example\\.net intl=0 id= auth= msa=0 \\]/\n"
		"header HOP_AUTH X-Spam-Relays-Trusted =~ /^\\[ ip=198\\.51\\.100\\.9 [^\\]]* auth=ESMTPA msa=0 \\]/\n"
		"header ALL_TR_EMPTY ALL-TRUSTED =~ /Received/\n");
	struct rules_header one[] = { { "Received", "from [10.0.0.7] (helo=laptop) by out.example.net with esmtpa (Exim 4.50) id 1GzVLs-0002Oz-7b; Thu, 13 Mar 2003 12:19:00 -0800", NULL } };
	struct rules_input in = { .headers = one, .nheaders = 1, .client_ip = "198.51.100.9",
		.client_name = "out.example.net", .helo = "out.example.net", .mail_from = "a@example.net",
		.receiver = "mx.example.org" };
	struct hits h;
	scan_in(rs, &h, &in);
	assert_true(has(&h, "HOP_U"));                /* our own hop comes first, untrusted */
	assert_false(has(&h, "ALL_TRUSTED"));
	assert_false(has(&h, "ALL_TR_EMPTY"));
	in.authenticated = 1;                         /* authenticated submission is trusted */
	scan_in(rs, &h, &in);
	assert_true(has(&h, "HOP_AUTH"));
	assert_true(has(&h, "ALL_TRUSTED"));
	assert_true(has(&h, "ALL_TR_EMPTY"));
	in.authenticated = 0;
	in.client_ip = "192.168.3.3";                 /* from inside */
	scan_in(rs, &h, &in);
	assert_true(has(&h, "ALL_TRUSTED"));
	rules_free(rs);
}

static void test_relay_evals(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header HELO_MISMATCH eval:helo_ip_mismatch()\n"
		"header NUMERIC_HELO eval:check_for_numeric_helo()\n"
		"header DOTCOM_HELO eval:check_for_no_rdns_dotcom_helo()\n"
		"header FORGED_TRAIL eval:check_for_forged_received_trail()\n"
		"header FORGED_IP_HELO eval:check_for_forged_received_ip_helo()\n"
		"header NO_REVERSE eval:check_for_sender_no_reverse()\n"
		"header TOO_MANY eval:check_all_trusted('x')\n");
	assert_int_equal(rule_loaded(rs, "TOO_MANY"), 0);
	struct hits h;
	scan_hdrs(rs, &h, m3, N(m3));
	assert_true(has(&h, "HELO_MISMATCH"));        /* HELO 192.0.2.44 from 198.51.100.3 */
	assert_true(has(&h, "NUMERIC_HELO"));
	assert_false(has(&h, "DOTCOM_HELO"));         /* as SpamAssassin: the oldest public relay decides */
	assert_true(has(&h, "FORGED_IP_HELO"));
	assert_false(has(&h, "FORGED_TRAIL"));        /* no rDNS to compare */
	assert_false(has(&h, "NO_REVERSE"));
	scan_hdrs(rs, &h, m3, 2);
	assert_true(has(&h, "DOTCOM_HELO"));          /* HELO hotmail.com, Postfix found no rDNS */
	assert_false(has(&h, "HELO_MISMATCH"));
	scan_hdrs(rs, &h, chain, N(chain));
	assert_false(has(&h, "HELO_MISMATCH"));
	assert_false(has(&h, "NUMERIC_HELO"));
	assert_false(has(&h, "DOTCOM_HELO"));
	assert_false(has(&h, "FORGED_IP_HELO"));

	/* as SpamAssassin 4.0: a private numeric HELO hits too (its "local $1") */
	static const struct rules_header priv_helo[] = {
		{ "Received", "from 198.51.100.3 (HELO 10.9.9.9) by relay.other.net (Postfix) with SMTP id CCC3; Mon, 1 Jun 2020 09:59:00 +0000", NULL },
	};
	scan_hdrs(rs, &h, priv_helo, 1);
	assert_true(has(&h, "NUMERIC_HELO"));
	assert_false(has(&h, "HELO_MISMATCH"));       /* private HELOs are not compared */

	/* a trail where each receiver is not the host the previous one named */
	static const struct rules_header trail[] = {
		{ "Received", "from a.one.com (a.one.com [198.51.100.1]) by mx.dest.org (8.12.11/8.12.11) with ESMTP id A1; Mon, 1 Jun 2020 10:00:00 +0000", NULL },
		{ "Received", "from b.two.com (b.two.com [198.51.100.2]) by relay.other.org (8.12.11/8.12.11) with ESMTP id A2; Mon, 1 Jun 2020 09:00:00 +0000", NULL },
		{ "Received", "from c.three.com (c.three.com [198.51.100.3]) by gw.another.org (8.12.11/8.12.11) with ESMTP id A3; Mon, 1 Jun 2020 08:00:00 +0000", NULL },
	};
	scan_hdrs(rs, &h, trail, N(trail));
	assert_true(has(&h, "FORGED_TRAIL"));
	assert_true(has(&h, "NO_REVERSE"));           /* as SpamAssassin: the oldest has a dotted public rDNS */
	scan_hdrs(rs, &h, trail, 2);                  /* one mismatch only */
	assert_false(has(&h, "FORGED_TRAIL"));
	rules_free(rs);
}

static void test_header_evals(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header FAKE_AOL eval:check_for_fake_aol_relay_in_rcvd()\n"
		"header GATED eval:gated_through_received_hdr_remover()\n"
		"header FORGED_HOTMAIL eval:check_for_forged_hotmail_received_headers()\n"
		"header NO_HOTMAIL eval:check_for_no_hotmail_received_headers()\n"
		"header FORGED_YAHOO eval:check_for_forged_yahoo_received_headers()\n"
		"header FORGED_JUNO eval:check_for_forged_juno_received_headers()\n"
		"header FORGED_GMAIL eval:check_for_forged_gmail_received_headers()\n"
		"header FORGED_EUDORA eval:check_for_forged_eudoramail_received_headers()\n");
	struct hits h;
	/* m3: HELO'd as hotmail.com from a non-hotmail host */
	scan_hdrs(rs, &h, m3, N(m3));
	assert_true(has(&h, "FORGED_HOTMAIL"));
	assert_false(has(&h, "NO_HOTMAIL"));
	assert_false(has(&h, "GATED"));
	assert_false(has(&h, "FAKE_AOL"));

	struct rules_header msg[] = {
		{ "Received", "from unknown (HELO mta05bw.bigpond.com) (80.71.176.130) by rly-xw01.mx.aol.com with QMQP; Sat, 15 Jun 2002 23:37:16 -0000", NULL },
		{ "From", "x@hotmail.com", NULL },
	};
	scan_hdrs(rs, &h, msg, N(msg));
	assert_true(has(&h, "FAKE_AOL"));
	assert_true(has(&h, "NO_HOTMAIL"));           /* From hotmail, no hotmail Received */
	assert_false(has(&h, "FORGED_HOTMAIL"));
	msg[0].raw = "from logs-tr.proxy.aol.com (logs-tr.proxy.aol.com [152.163.201.132]) by rly-ip01.mx.aol.com (8.8.8/8.8.8/AOL-5.0.0) with ESMTP id NAA08955; Thu, 4 Apr 2002 13:11:20 -0500 (EST)";
	scan_hdrs(rs, &h, msg, N(msg));
	assert_false(has(&h, "FAKE_AOL"));            /* a real AOL relay */

	/* no Received at all: gated (and then the forgery tests stand down) */
	msg[1].raw = "x@yahoo.com";
	scan_hdrs(rs, &h, msg + 1, 1);
	assert_true(has(&h, "GATED"));
	assert_false(has(&h, "FORGED_YAHOO"));
	scan_hdrs(rs, &h, msg, N(msg));
	assert_true(has(&h, "FORGED_YAHOO"));
	msg[0].raw = "from [192.0.2.1] by web40310.mail.yahoo.com via HTTP; Wed, 12 Feb 2003 14:22:21 PST";
	scan_hdrs(rs, &h, msg, N(msg));
	assert_false(has(&h, "FORGED_YAHOO"));

	msg[1].raw = "x@juno.com";
	scan_hdrs(rs, &h, msg, N(msg));
	assert_true(has(&h, "FORGED_JUNO"));
	msg[1].raw = "x@eudoramail.com";
	scan_hdrs(rs, &h, msg, N(msg));
	assert_true(has(&h, "FORGED_EUDORA"));
	msg[1].raw = "x@gmail.com";
	scan_hdrs(rs, &h, msg, N(msg));
	assert_true(has(&h, "FORGED_GMAIL"));
	struct rules_header gm[] = { msg[0], msg[1], { "X-Received", "by 10.28.1.2 with SMTP id a1mr2; Mon, 1 Jun 2020 10:00:00 -0700", NULL } };
	scan_hdrs(rs, &h, gm, N(gm));
	assert_false(has(&h, "FORGED_GMAIL"));
	assert_false(has(&h, "FORGED_JUNO"));         /* not from juno */
	rules_free(rs);
}

static void test_shifted_date(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header DATE_PAST_03_06 eval:check_for_shifted_date('-6', '-3')\n"
		"header DATE_PAST_06_12 eval:check_for_shifted_date('-12', '-6')\n"
		"header DATE_FUTURE_03_06 eval:check_for_shifted_date('3', '6')\n"
		"header DATE_FUTURE_FAR eval:check_for_shifted_date('2920', 'undef')\n"
		"header BAD_ARG eval:check_for_shifted_date('soon', '6')\n"
		"header ONE_ARG eval:check_for_shifted_date('3')\n");
	assert_int_equal(rule_loaded(rs, "BAD_ARG"), 0);
	assert_int_equal(rule_loaded(rs, "ONE_ARG"), 0);
	struct hits h;
	scan_hdrs(rs, &h, m3, N(m3));                 /* Date 5 h before the Received dates */
	assert_true(has(&h, "DATE_PAST_03_06"));
	assert_false(has(&h, "DATE_PAST_06_12"));
	assert_false(has(&h, "DATE_FUTURE_03_06"));
	struct rules_header fut[] = { m3[0], m3[1], { "Date", "Tue, 2 Jun 2020 01:30:00 +1000 (AEST)", NULL } };
	scan_hdrs(rs, &h, fut, N(fut));               /* 10:30 UTC... no: 15:30 UTC: 5.5 h ahead */
	assert_true(has(&h, "DATE_FUTURE_03_06"));
	assert_false(has(&h, "DATE_PAST_03_06"));
	fut[2].raw = "Mon, 1 Jun 2021 10:00:00 GMT";       /* a year ahead */
	scan_hdrs(rs, &h, fut, N(fut));
	assert_true(has(&h, "DATE_FUTURE_FAR"));
	fut[2].raw = "not a date";
	scan_hdrs(rs, &h, fut, N(fut));
	assert_false(has(&h, "DATE_FUTURE_FAR"));
	assert_false(has(&h, "DATE_PAST_03_06"));
	rules_free(rs);
}

static void test_mailfrom_matches_rcvd(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"util_rb_2tld co.uk\n"
		"header MATCHES eval:check_mailfrom_matches_rcvd()\n");
	struct rules_header hd[] = {
		{ "Received", "from mail.shop.co.uk (out7.shop.co.uk [198.51.100.7]) by mx.example.org (Postfix) with ESMTP id Q1; Mon, 1 Jun 2020 10:00:00 +0000", NULL },
	};
	struct rules_input in = { .headers = hd, .nheaders = 1, .mail_from = "bounce@news.shop.co.uk" };
	struct hits h;
	scan_in(rs, &h, &in);
	assert_true(has(&h, "MATCHES"));
	in.mail_from = "bounce@other.co.uk";
	scan_in(rs, &h, &in);
	assert_false(has(&h, "MATCHES"));
	in.mail_from = "";                           /* the null sender never matches */
	scan_in(rs, &h, &in);
	assert_false(has(&h, "MATCHES"));
	rules_free(rs);
}

static void test_bounce_relays(void **st)
{
	(void)st;
	const char *rules =
		"header ANY_RELAYS eval:have_any_bounce_relays()\n"
		"body BOUNCE_OURS eval:check_welcomelist_bounce_relays()\n"
		"body BOUNCE_OURS_OLD eval:check_whitelist_bounce_relays()\n";
	struct ruleset *rs = load(rules);
	static const char *const body[] = { "Your message could not be delivered\n",
		"> Received: from pc (pc [10.0.0.9]) by smtp3.example.org (Postfix) with ESMTP id 9; Mon, 1 Jun 2020\n" };
	size_t lens[2] = { strlen(body[0]), strlen(body[1]) };
	struct rules_input in = { .headers = m3, .nheaders = N(m3), .body = body, .body_len = lens, .nbody = 2 };
	struct hits h;
	scan_in(rs, &h, &in);
	assert_false(has(&h, "ANY_RELAYS"));
	assert_false(has(&h, "BOUNCE_OURS"));
	rules_free(rs);
	char text[1024];
	snprintf(text, sizeof text, "%swelcomelist_bounce_relays smtp?.example.org mx.other.net\n", rules);
	rs = load(text);
	scan_in(rs, &h, &in);
	assert_true(has(&h, "ANY_RELAYS"));
	assert_true(has(&h, "BOUNCE_OURS"));
	assert_true(has(&h, "BOUNCE_OURS_OLD"));
	/* in an attached message (the raw body), a folded Received field */
	const char *full = "From: MAILER-DAEMON@x.org\nSubject: bounce\n\nsee attached\n\n"
		"Received: from pc (pc [10.0.0.9])\n\tby smtp7.example.org (Postfix) with ESMTP id 9;\n\tMon, 1 Jun 2020\n";
	struct rules_input in2 = { .headers = m3, .nheaders = N(m3), .body = body, .body_len = lens, .nbody = 1,
		.full = full, .full_len = strlen(full) };
	scan_in(rs, &h, &in2);
	assert_true(has(&h, "BOUNCE_OURS"));
	in2.full = "From: a\n\nReceived: from pc by smtp7.elsewhere.org with ESMTP\n";
	in2.full_len = strlen(in2.full);
	scan_in(rs, &h, &in2);
	assert_false(has(&h, "BOUNCE_OURS"));
	rules_free(rs);
}

/* hostile input: many and long Received fields are bounded, nothing crashes */
static void test_hostile(void **st)
{
	(void)st;
	struct ruleset *rs = load(
		"header ALL_TRUSTED eval:check_all_trusted()\n"
		"header LONG_U X-Spam-Relays-Untrusted =~ /ip=/\n"
		"header FORGED_TRAIL eval:check_for_forged_received_trail()\n"
		"header SHIFT eval:check_for_shifted_date('-6', '-3')\n"
		"header ALL_EXT ALL-EXTERNAL =~ /Received:.*Received:/s\n"
		"header HOTMAIL eval:check_for_forged_hotmail_received_headers()\n"
		"header YAHOO eval:check_for_forged_yahoo_received_headers()\n"
		"header JUNO eval:check_for_forged_juno_received_headers()\n"
		"header AOL eval:check_for_fake_aol_relay_in_rcvd()\n"
		"header MATCHES eval:check_mailfrom_matches_rcvd()\n");
	enum { NH = 5000 };
	struct rules_header *hd = calloc(NH, sizeof *hd);
	char *longv = malloc(200001);
	assert_non_null(hd);
	assert_non_null(longv);
	memset(longv, '(', 200000);
	memcpy(longv, "from ", 5);
	longv[200000] = '\0';
	for (size_t i = 0; i < NH; i++) {
		hd[i].name = "Received";
		hd[i].raw = (i % 3 == 0) ? longv : (i % 3 == 1)
			? "from a.b.example (c.d.example [198.51.100.1]) by e.f.example (8.1/8.1) with ESMTP id X; Mon, 1 Jun 2020 10:00:00 +0000"
			: "from [[[[[[[[[[[[[[[[[[[[ by ]]]]]]]]]]]]]]]] with (((((((( ;;;;;;;";
	}
	hd[NH - 1].name = "From";
	hd[NH - 1].raw = "x@yahoo.com";
	struct hits h;
	scan_hdrs(rs, &h, hd, NH);
	assert_true(has(&h, "LONG_U"));
	assert_true(has(&h, "ALL_EXT"));
	assert_false(has(&h, "ALL_TRUSTED"));
	free(hd);
	free(longv);
	rules_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relay_strings),
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_networks),
		cmocka_unit_test(test_client_hop),
		cmocka_unit_test(test_relay_evals),
		cmocka_unit_test(test_header_evals),
		cmocka_unit_test(test_shifted_date),
		cmocka_unit_test(test_mailfrom_matches_rcvd),
		cmocka_unit_test(test_bounce_relays),
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
