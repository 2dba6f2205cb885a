/* test_dns.c - the DNS layer (filters/dns.c) against real peers.
 *
 * Without a DNS server (what `make unit` runs): reverse names, bad names,
 * forwarder settings refused, and a forwarder that never answers: every
 * lookup ends at its deadline (DNS_TIMEOUT, counted), not after libunbound's
 * ~17 s, and a second lookup of the same name while the first query is
 * still out fails at once.  The dead forwarder is a UDP+TCP socket of this
 * test on 127.0.0.1 that reads nothing.
 *
 * With MW_DNS_FORWARDER=127.0.0.1@PORT (tests/functional/test_dns.py starts
 * unbound with the zones listed there and runs this binary): answers of
 * every type, NXDOMAIN/NODATA, cache hits, TTL expiry (MW_DNS_RESTART_FILE:
 * the script swaps the data when this test writes that file), negative
 * caching, the cache bound, and 8 threads at once. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/deadline.h"
#include "filters/dns.h"
#include "proxy/config.h"
#include "proxy/log.h"

static const char *forwarder;   /* MW_DNS_FORWARDER */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* make - a DNS layer with these overrides; asserts it starts */
static struct dns *make(const char *fwd, const char *extra1, const char *extra2)
{
	char o1[300], err[400] = "";
	const char *ov[4] = { o1, extra1, extra2, NULL };
	struct config *cfg;
	struct dns *d;

	snprintf(o1, sizeof(o1), "dns_forwarder=%s", fwd);
	if (extra1 == NULL)
		ov[1] = NULL;
	else if (extra2 == NULL)
		ov[2] = NULL;
	cfg = config_load(NULL, ov, extra1 == NULL ? 1 : extra2 == NULL ? 2 : 3, err, sizeof(err));
	if (cfg == NULL)
		fail_msg("config: %s", err);
	d = dns_new(cfg, err, sizeof(err));
	if (d == NULL)
		fail_msg("dns_new: %s", err);
	config_unref(cfg);
	return d;
}

/* --- without a server ------------------------------------------------ */

static void test_reverse_name(void **state)
{
	char out[100];

	(void)state;
	assert_int_equal(dns_reverse_name("192.0.2.10", out, sizeof(out)), 0);
	assert_string_equal(out, "10.2.0.192.in-addr.arpa");
	assert_int_equal(dns_reverse_name("2001:db8::1", out, sizeof(out)), 0);
	assert_string_equal(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
	assert_int_equal(dns_reverse_name("not-an-ip", out, sizeof(out)), -1);
	assert_int_equal(dns_reverse_name("192.0.2.10", out, 10), -1);
	assert_int_equal(dns_reverse_name("2001:db8::1", out, 20), -1);
}

static void test_bad_forwarder(void **state)
{
	static const char *const bad[] = {
		"dns_forwarder=mx.example.org", "dns_forwarder=127.0.0.1@", "dns_forwarder=127.0.0.1@70000",
		"dns_forwarder=1.2.3.4 1.2.3.5 1.2.3.6 1.2.3.7 1.2.3.8 1.2.3.9 1.2.3.10 1.2.3.11 1.2.3.12",
		NULL };
	size_t i;

	(void)state;
	for (i = 0; bad[i] != NULL; i++) {
		char err[400] = "";
		const char *ov[1] = { bad[i] };
		struct config *cfg = config_load(NULL, ov, 1, err, sizeof(err));
		struct dns *d;

		assert_non_null(cfg);
		d = dns_new(cfg, err, sizeof(err));
		if (d != NULL)
			fail_msg("%s accepted", bad[i]);
		assert_non_null(strstr(err, "dns_forwarder"));
		config_unref(cfg);
	}
}

static void test_bad_names(void **state)
{
	struct dns *d = make("127.0.0.1@1", NULL, NULL);
	static const char *const bad[] = { "", ".", "a..b", ".a.example", "\\256.example",
		"a123456789012345678901234567890123456789012345678901234567890123.example", NULL };
	char longname[300];
	struct dns_stats st;
	size_t i;

	(void)state;
	for (i = 0; bad[i] != NULL; i++) {
		struct dns_reply *r = dns_lookup(d, bad[i], DNS_T_A, 0);

		assert_non_null(r);
		if (r->status != DNS_BADNAME)
			fail_msg("\"%s\": status %d", bad[i], r->status);
		dns_reply_free(r);
	}
	memset(longname, 0, sizeof(longname));
	for (i = 0; i < 127; i++)
		memcpy(longname + 2 * i, "a.", 2);
	memcpy(longname + 254, "b", 1);          /* 255 chars */
	{
		struct dns_reply *r = dns_lookup(d, longname, DNS_T_A, 0);

		assert_int_equal(r->status, DNS_BADNAME);
		dns_reply_free(r);
	}
	dns_stats(d, &st);
	assert_int_equal(st.lookups, 7);
	assert_int_equal(st.timeouts, 0);
	dns_free(d);
}

/* a forwarder that never answers */
struct black_hole { int udp, tcp; unsigned port; };

/* the UDP port the kernel picks may be taken for TCP by another process
 * (the tests of other suites run beside): then another pair is tried */
static void black_hole_open(struct black_hole *b)
{
	for (int tries = 0; tries < 50; tries++) {
		struct sockaddr_in sa;
		socklen_t len = sizeof(sa);
		int one = 1;

		b->udp = socket(AF_INET, SOCK_DGRAM, 0);
		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(bind(b->udp, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(getsockname(b->udp, (struct sockaddr *)&sa, &len), 0);
		b->port = ntohs(sa.sin_port);
		b->tcp = socket(AF_INET, SOCK_STREAM, 0);
		setsockopt(b->tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(b->tcp, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			assert_int_equal(listen(b->tcp, 16), 0);
			return;
		}
		close(b->tcp);
		close(b->udp);
	}
	fail_msg("no port free for both UDP and TCP");
}

/* timed_lookup - look name up, check its status, return the seconds it took */
static double timed_lookup(struct dns *d, const char *name, int type, unsigned timeout_ms, int want)
{
	double t0 = now_s();
	struct dns_reply *r = dns_lookup(d, name, type, timeout_ms);
	double el = now_s() - t0;

	assert_int_equal(r->status, want);
	dns_reply_free(r);
	return el;
}

static void test_dead_forwarder_deadline(void **state)
{
	struct black_hole b;
	char fwd[64];
	struct dns *d;
	struct dns_stats st;
	double t0, el;

	(void)state;
	black_hole_open(&b);
	snprintf(fwd, sizeof(fwd), "127.0.0.1@%u", b.port);
	d = make(fwd, "dns_timeout=400ms", NULL);

	el = timed_lookup(d, "spf.example.test", DNS_T_TXT, 0, DNS_TIMEOUT);
	if (el < 0.35 || el > 1.5)
		fail_msg("configured deadline 400 ms, lookup took %.3f s", el);

	/* explicit deadline */
	el = timed_lookup(d, "other.example.test", DNS_T_A, 150, DNS_TIMEOUT);
	if (el < 0.12 || el > 1.0)
		fail_msg("deadline 150 ms, lookup took %.3f s", el);

	/* the first query is still out: no second wait */
	el = timed_lookup(d, "SPF.example.test.", DNS_T_TXT, 0, DNS_TIMEOUT);
	if (el > 0.1)
		fail_msg("repeat lookup of a timed-out name waited %.3f s", el);

	dns_stats(d, &st);
	assert_int_equal(st.lookups, 3);
	assert_int_equal(st.timeouts, 3);
	assert_int_equal(st.cache_hits, 0);
	t0 = now_s();
	dns_free(d);                /* queries in flight must not hold it up */
	el = now_s() - t0;
	if (el > 2.0)
		fail_msg("dns_free took %.3f s with queries in flight", el);
	close(b.udp);
	close(b.tcp);
}

/* A prefetched name's query is shared by later lookups, which wait at
 * most their timeout counted from the prefetch; a second prefetch of a
 * name out already starts nothing. */
static void test_prefetch_dead_forwarder(void **state)
{
	struct black_hole b;
	char fwd[64];
	struct dns *d;
	struct dns_stats st;
	double el;

	(void)state;
	black_hole_open(&b);
	snprintf(fwd, sizeof(fwd), "127.0.0.1@%u", b.port);
	d = make(fwd, "dns_timeout=600ms", NULL);
	dns_prefetch(d, "p.example.test", DNS_T_TXT);
	dns_prefetch(d, "P.example.test.", DNS_T_TXT);
	dns_prefetch(d, "p.example.test", DNS_T_A);         /* another type: another query */
	dns_prefetch(d, "bad..name", DNS_T_A);               /* not a name: nothing */
	dns_stats(d, &st);
	assert_int_equal(st.prefetches, 2);
	assert_int_equal(st.lookups, 0);
	usleep(400 * 1000);
	el = timed_lookup(d, "p.example.test", DNS_T_TXT, 0, DNS_TIMEOUT);    /* 200 ms of 600 left */
	if (el < 0.1 || el > 0.45)
		fail_msg("prefetched 400 ms ago with a 600 ms timeout, lookup took %.3f s", el);
	usleep(300 * 1000);
	el = timed_lookup(d, "p.example.test", DNS_T_A, 0, DNS_TIMEOUT);      /* its time is up: at once */
	if (el > 0.1)
		fail_msg("prefetched 700 ms ago with a 600 ms timeout, lookup waited %.3f s", el);
	dns_stats(d, &st);
	assert_int_equal(st.prefetches, 2);
	assert_int_equal(st.timeouts, 2);
	dns_free(d);
	close(b.udp);
	close(b.tcp);
}

/* A lookup cut short by its scan's deadline (filters/deadline.h) gives
 * up waiting, not the query: another message asking for the same name
 * still waits its own timeout for it, instead of getting a timeout at
 * once as after a query that ran out its own time. */
static void test_deadline_cut_leaves_query(void **state)
{
	struct black_hole b;
	char fwd[64];
	struct dns *d;
	double el;

	(void)state;
	black_hole_open(&b);
	snprintf(fwd, sizeof(fwd), "127.0.0.1@%u", b.port);
	d = make(fwd, "dns_timeout=800ms", NULL);
	deadline_begin(deadline_now_ms() + 100);
	el = timed_lookup(d, "cut.example.test", DNS_T_TXT, 0, DNS_TIMEOUT);
	deadline_end();
	if (el < 0.05 || el > 0.4)
		fail_msg("scan deadline 100 ms, lookup took %.3f s", el);
	/* the query is still out, 700 ms of its 800 left */
	el = timed_lookup(d, "cut.example.test", DNS_T_TXT, 0, DNS_TIMEOUT);
	if (el < 0.4 || el > 1.2)
		fail_msg("second lookup of a name whose first wait was cut by the deadline took %.3f s", el);
	dns_free(d);
	close(b.udp);
	close(b.tcp);
}

/* --- with the server of test_dns.py ---------------------------------- */

static void need_server(void)
{
	if (forwarder == NULL)
		skip();
}

static struct dns_reply *lk(struct dns *d, const char *name, int type)
{
	struct dns_reply *r = dns_lookup(d, name, type, 0);

	assert_non_null(r);
	return r;
}

static void test_types(void **state)
{
	struct dns *d;
	struct dns_reply *r;
	char ip[64];
	size_t i;
	int seen10 = 0, seen20 = 0;

	(void)state;
	need_server();
	d = make(forwarder, NULL, NULL);

	r = lk(d, "www.example.test", DNS_T_A);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->count, 1);
	inet_ntop(AF_INET, r->rr[0].addr, ip, sizeof(ip));
	assert_string_equal(ip, "192.0.2.80");
	assert_int_equal(r->rrtype, DNS_T_A);
	assert_true(r->ttl > 0 && r->ttl <= 300);
	dns_reply_free(r);

	r = lk(d, "WWW.Example.TEST.", DNS_T_AAAA);
	assert_int_equal(r->status, DNS_OK);
	inet_ntop(AF_INET6, r->rr[0].addr, ip, sizeof(ip));
	assert_string_equal(ip, "2001:db8::80");
	dns_reply_free(r);

	r = lk(d, "example.test", DNS_T_MX);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->count, 2);
	for (i = 0; i < r->count; i++) {
		if (r->rr[i].pref == 10 && strcmp(r->rr[i].name, "mx1.example.test") == 0)
			seen10 = 1;
		if (r->rr[i].pref == 20 && strcmp(r->rr[i].name, "mx2.example.test") == 0)
			seen20 = 1;
	}
	assert_true(seen10 && seen20);
	dns_reply_free(r);

	/* TXT: strings concatenated without separator; > 255 bytes in 2 strings */
	r = lk(d, "example.test", DNS_T_TXT);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->count, 1);
	assert_string_equal(r->rr[0].text, "v=spf1 ip4:192.0.2.0/24 -all");
	assert_int_equal(r->rr[0].text_len, strlen("v=spf1 ip4:192.0.2.0/24 -all"));
	dns_reply_free(r);
	r = lk(d, "split.example.test", DNS_T_TXT);
	assert_int_equal(r->status, DNS_OK);
	assert_string_equal(r->rr[0].text, "v=spf1 -all");
	dns_reply_free(r);
	r = lk(d, "long.example.test", DNS_T_TXT);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->rr[0].text_len, 400);
	dns_reply_free(r);

	r = lk(d, "10.2.0.192.in-addr.arpa", DNS_T_PTR);
	assert_int_equal(r->status, DNS_OK);
	assert_string_equal(r->rr[0].name, "mail.example.test");
	dns_reply_free(r);

	/* a label with a space and a dot in it (escaped on the way to libunbound) */
	r = lk(d, "odd name.example.test", DNS_T_A);
	assert_int_equal(r->status, DNS_OK);
	dns_reply_free(r);
	r = lk(d, "dot\\.in.example.test", DNS_T_PTR);
	assert_int_equal(r->status, DNS_OK);
	assert_string_equal(r->rr[0].name, "odd\\032name.example.test");
	dns_reply_free(r);
	r = lk(d, "odd\\032name.example.test", DNS_T_A);   /* a reply name, as it is */
	assert_int_equal(r->status, DNS_OK);
	dns_reply_free(r);

	/* CNAME followed by the resolver */
	r = lk(d, "alias.example.test", DNS_T_A);
	assert_int_equal(r->status, DNS_OK);
	inet_ntop(AF_INET, r->rr[0].addr, ip, sizeof(ip));
	assert_string_equal(ip, "192.0.2.80");
	dns_reply_free(r);

	r = lk(d, "nowhere.example.test", DNS_T_A);
	assert_int_equal(r->status, DNS_NXDOMAIN);
	assert_int_equal(r->count, 0);
	dns_reply_free(r);
	r = lk(d, "www.example.test", DNS_T_MX);
	assert_int_equal(r->status, DNS_NODATA);
	dns_reply_free(r);
	/* a zone the test server drops queries for */
	r = dns_lookup(d, "x.drop.test", DNS_T_A, 300);
	assert_int_equal(r->status, DNS_TIMEOUT);
	dns_reply_free(r);
	dns_free(d);
}

static void test_prefetch_answer(void **state)
{
	struct dns *d;
	struct dns_reply *r;
	struct dns_stats st;

	(void)state;
	need_server();
	d = make(forwarder, NULL, NULL);
	dns_prefetch(d, "www.example.test", DNS_T_A);
	r = lk(d, "www.example.test", DNS_T_A);             /* waits for the prefetch's query */
	assert_int_equal(r->status, DNS_OK);
	dns_reply_free(r);
	dns_prefetch(d, "www.example.test", DNS_T_A);       /* cached: nothing to start */
	dns_prefetch(d, "nowhere.example.test", DNS_T_TXT);
	r = lk(d, "nowhere.example.test", DNS_T_TXT);
	assert_int_equal(r->status, DNS_NXDOMAIN);
	dns_reply_free(r);
	dns_stats(d, &st);
	assert_int_equal(st.prefetches, 2);
	assert_int_equal(st.lookups, 2);
	assert_int_equal(st.timeouts, 0);
	dns_free(d);
}

/* A prefetched answer serves the lookups that come within its query's
 * timeout, whatever its TTL: zero.example.test has TTL 0, and with
 * dns_cache_max_ttl = 0 no answer is cached at all.  Before, such an
 * answer was gone by the time the filter looked the name up, and the
 * lookup asked the server again (a server that dropped that second query
 * cost the message a temporary error).  Past the query's timeout the name
 * is asked again, as its TTL says. */
static void test_prefetch_answer_outlives_ttl(void **state)
{
	struct dns *d;
	struct dns_reply *r;
	struct dns_stats st;

	(void)state;
	need_server();
	d = make(forwarder, "dns_timeout=1s", NULL);
	dns_prefetch(d, "zero.example.test", DNS_T_A);
	usleep(300 * 1000);                                 /* answered meanwhile */
	r = lk(d, "zero.example.test", DNS_T_A);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->ttl, 0);                        /* its TTL, not stretched */
	dns_reply_free(r);
	dns_stats(d, &st);
	assert_int_equal(st.cache_hits, 1);                 /* no second query */
	usleep(900 * 1000);                                 /* past the query's timeout */
	r = lk(d, "zero.example.test", DNS_T_A);
	assert_int_equal(r->status, DNS_OK);
	dns_reply_free(r);
	dns_stats(d, &st);
	assert_int_equal(st.cache_hits, 1);                 /* asked again */
	dns_free(d);

	d = make(forwarder, "dns_timeout=1s", "dns_cache_max_ttl=0");
	dns_prefetch(d, "www.example.test", DNS_T_A);
	dns_prefetch(d, "nowhere.example.test", DNS_T_A);
	usleep(300 * 1000);
	r = lk(d, "www.example.test", DNS_T_A);
	assert_int_equal(r->status, DNS_OK);
	assert_int_equal(r->ttl, 0);
	dns_reply_free(r);
	r = lk(d, "nowhere.example.test", DNS_T_A);
	assert_int_equal(r->status, DNS_NXDOMAIN);
	dns_reply_free(r);
	dns_stats(d, &st);
	assert_int_equal(st.cache_hits, 2);
	dns_free(d);
}

static void test_cache(void **state)
{
	struct dns *d;
	struct dns_reply *r;
	struct dns_stats st;
	int i;

	(void)state;
	need_server();
	d = make(forwarder, NULL, NULL);
	for (i = 0; i < 5; i++) {
		r = lk(d, "www.example.test", DNS_T_A);
		assert_int_equal(r->status, DNS_OK);
		dns_reply_free(r);
		r = lk(d, "nowhere.example.test", DNS_T_TXT);     /* negative: cached too */
		assert_int_equal(r->status, DNS_NXDOMAIN);
		assert_true(r->ttl <= 60);                         /* the SOA minimum */
		dns_reply_free(r);
	}
	dns_stats(d, &st);
	assert_int_equal(st.lookups, 10);
	assert_int_equal(st.cache_hits, 8);
	assert_int_equal(st.timeouts, 0);
	dns_free(d);

	/* dns_negative_ttl=0: negative answers are not kept */
	d = make(forwarder, "dns_negative_ttl=0", NULL);
	for (i = 0; i < 3; i++) {
		r = lk(d, "nowhere.example.test", DNS_T_A);
		assert_int_equal(r->status, DNS_NXDOMAIN);
		dns_reply_free(r);
	}
	dns_stats(d, &st);
	assert_int_equal(st.cache_hits, 0);
	dns_free(d);

	/* the bound: 16 entries, 40 names, the first ones are gone */
	d = make(forwarder, "dns_cache_size=16", NULL);
	for (i = 0; i < 40; i++) {
		char n[64];

		snprintf(n, sizeof(n), "h%d.example.test", i);
		r = lk(d, n, DNS_T_A);
		assert_int_equal(r->status, DNS_OK);
		dns_reply_free(r);
	}
	r = lk(d, "h39.example.test", DNS_T_A);            /* recent: a hit */
	dns_reply_free(r);
	r = lk(d, "h0.example.test", DNS_T_A);             /* evicted: a miss */
	dns_reply_free(r);
	dns_stats(d, &st);
	assert_int_equal(st.cache_hits, 1);
	dns_free(d);
}

/* TTL: short.example.test has TTL 1 and changes when the script restarts
 * the server (we ask for that by creating MW_DNS_RESTART_FILE and wait for
 * MW_DNS_RESTART_FILE.done).  A name prefetched by message after message
 * (one every 0.4 s, dns_timeout 1 s) is asked again too once its TTL ran
 * out: each prefetch used to push the answer's use on by dns_timeout, so
 * that it was never asked again while the messages kept coming, its TTL
 * never honoured (a DNSBL listing or delisting never seen; rv-today1). */
static void test_ttl_expiry(void **state)
{
	const char *flag = getenv("MW_DNS_RESTART_FILE");
	char done[600], ip[64];
	struct dns *d, *busy;
	struct dns_reply *r;
	struct dns_stats st;
	FILE *f;
	int i;

	(void)state;
	need_server();
	if (flag == NULL)
		skip();
	d = make(forwarder, NULL, NULL);
	busy = make(forwarder, "dns_timeout=1s", NULL);
	r = lk(d, "short.example.test", DNS_T_A);
	inet_ntop(AF_INET, r->rr[0].addr, ip, sizeof(ip));
	assert_string_equal(ip, "192.0.2.1");
	assert_true(r->ttl <= 1);
	dns_reply_free(r);
	r = lk(d, "long-ttl.example.test", DNS_T_A);
	inet_ntop(AF_INET, r->rr[0].addr, ip, sizeof(ip));
	assert_string_equal(ip, "192.0.2.1");
	dns_reply_free(r);
	dns_prefetch(busy, "short.example.test", DNS_T_A);
	r = lk(busy, "short.example.test", DNS_T_A);
	inet_ntop(AF_INET, r->rr[0].addr, ip, sizeof(ip));
	assert_string_equal(ip, "192.0.2.1");
	dns_reply_free(r);

	f = fopen(flag, "w");
	assert_non_null(f);
	fclose(f);
	snprintf(done, sizeof(done), "%s.done", flag);
	for (i = 0; i < 200 && access(done, F_OK) != 0; i++) {
		usleep(50000);
		if (i % 8 == 0)
			dns_prefetch(busy, "short.example.test", DNS_T_A);   /* messages meanwhile */
	}
	assert_int_equal(access(done, F_OK), 0);
	for (i = 0; i < 7; i++) {   /* 2.8 s, past the TTL of 1 s and dns_timeout */
		dns_prefetch(busy, "short.example.test", DNS_T_A);
		usleep(100000);
		r = lk(busy, "short.example.test", DNS_T_A);
		inet_ntop(AF_INET, r->rr[0].addr, ip, sizeof(ip));
		dns_reply_free(r);
		usleep(300000);
	}
	assert_string_equal(ip, "192.0.2.2");              /* the busy name asked again */
	dns_free(busy);

	r = lk(d, "short.example.test", DNS_T_A);
	inet_ntop(AF_INET, r->rr[0].addr, ip, sizeof(ip));
	assert_string_equal(ip, "192.0.2.2");              /* asked again */
	dns_reply_free(r);
	r = lk(d, "long-ttl.example.test", DNS_T_A);
	inet_ntop(AF_INET, r->rr[0].addr, ip, sizeof(ip));
	assert_string_equal(ip, "192.0.2.1");              /* still the cached one */
	dns_reply_free(r);
	dns_stats(d, &st);
	assert_int_equal(st.cache_hits, 1);
	dns_free(d);
}

struct thr { struct dns *d; int id; int bad; };

static void *worker(void *arg)
{
	struct thr *t = arg;
	int i;

	for (i = 0; i < 400; i++) {
		char n[64], want[32], ip[64];
		int k = (i * 7 + t->id) % 40;
		struct dns_reply *r;

		snprintf(n, sizeof(n), "h%d.example.test", k);
		r = dns_lookup(t->d, n, DNS_T_A, 0);
		snprintf(want, sizeof(want), "198.51.100.%d", k);
		if (r->status != DNS_OK || r->count != 1)
			t->bad++;
		else if (strcmp(inet_ntop(AF_INET, r->rr[0].addr, ip, sizeof(ip)), want) != 0)
			t->bad++;
		dns_reply_free(r);
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct thr t[8];
	pthread_t tid[8];
	struct dns_stats st;
	struct dns *d;
	int i, bad = 0;

	(void)state;
	need_server();
	d = make(forwarder, "dns_cache_size=20", NULL);   /* smaller than the names: evictions */
	for (i = 0; i < 8; i++) {
		t[i].d = d;
		t[i].id = i;
		t[i].bad = 0;
		pthread_create(&tid[i], NULL, worker, &t[i]);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(tid[i], NULL);
		bad += t[i].bad;
	}
	assert_int_equal(bad, 0);
	dns_stats(d, &st);
	assert_int_equal(st.lookups, 3200);
	assert_true(st.cache_hits > 0 && st.cache_hits < 3200);
	assert_int_equal(st.timeouts, 0);
	dns_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reverse_name),
		cmocka_unit_test(test_bad_forwarder),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_dead_forwarder_deadline),
		cmocka_unit_test(test_prefetch_dead_forwarder),
		cmocka_unit_test(test_deadline_cut_leaves_query),
		cmocka_unit_test(test_prefetch_answer),
		cmocka_unit_test(test_prefetch_answer_outlives_ttl),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_ttl_expiry),
		cmocka_unit_test(test_threads),
	};

	log_init("test_dns", 0, "mail", LOG_ERR);
	forwarder = getenv("MW_DNS_FORWARDER");
	if (forwarder != NULL && *forwarder == '\0')
		forwarder = NULL;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
