/* test_ipnet.c - client addresses as filters and limits see them
 * (filters/ipnet.c): one spelling, the per-client key, mapped networks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "filters/ipnet.h"
#include "proxy/netaddr.h"

static const char *canon(const char *ip)
{
	static char buf[64];

	return ipnet_canon(ip, buf, sizeof buf) == 0 ? buf : "-";
}

static const char *key(const char *ip)
{
	static char buf[64];

	return ipnet_limit_key(ip, buf, sizeof buf) == 0 ? buf : "-";
}

static int contains(const char *net, const char *ip)
{
	struct ipnet n, a;

	assert_int_equal(ipnet_parse(net, &n), 0);
	assert_int_equal(ipnet_parse(ip, &a), 0);
	return ipnet_contains(&n, &a);
}

static void test_canon(void **state)
{
	(void)state;
	assert_string_equal(canon("192.0.2.1"), "192.0.2.1");
	assert_string_equal(canon("::ffff:192.0.2.1"), "192.0.2.1");
	assert_string_equal(canon("::FFFF:c000:201"), "192.0.2.1");
	assert_string_equal(canon("2001:DB8:0:0::1"), "2001:db8::1");
	assert_string_equal(canon("IPv6:2001:db8::1"), "2001:db8::1");
	assert_string_equal(canon("ipv6:::1"), "::1");
	assert_string_equal(canon("2001:db8::/64"), "-");
	assert_string_equal(canon("mx.example"), "-");
	assert_string_equal(canon(""), "-");
}

/* Translated IPv4 clients: the well-known prefix by default, then a
 * site's own prefixes; the IPv4 address is the client. */
static void test_translated(void **state)
{
	char err[200];

	(void)state;
	/* before any config: 64:ff9b::/96 */
	assert_string_equal(canon("64:ff9b::c000:201"), "192.0.2.1");
	assert_string_equal(canon("64:FF9B::192.0.2.1"), "192.0.2.1");
	assert_string_equal(canon("IPv6:64:ff9b::c633:6407"), "198.51.100.7");
	assert_string_equal(key("64:ff9b::c000:201"), "64:ff9b::/64");   /* callers key the canonical form */
	/* RFC 6052 3.1: the well-known prefix never carries the site's own
	 * networks, which its lists trust: kept as IPv6 */
	assert_string_equal(canon("64:ff9b::7f00:1"), "64:ff9b::7f00:1");
	assert_string_equal(canon("64:ff9b::a01:203"), "64:ff9b::a01:203");
	assert_string_equal(canon("64:ff9b::c0a8:101"), "64:ff9b::c0a8:101");
	assert_string_equal(canon("64:ff9b::ac10:1"), "64:ff9b::ac10:1");
	assert_string_equal(canon("64:ff9b::6440:1"), "64:ff9b::6440:1");
	assert_string_equal(canon("64:ff9b::a9fe:1"), "64:ff9b::a9fe:1");
	assert_string_equal(canon("64:ff9b::e000:1"), "64:ff9b::e000:1");
	assert_string_equal(canon("64:ff9b::1:c000:201"), "64:ff9b::1:c000:201");  /* not in the /96 */
	/* 6to4 is never translated: its address is the relay's */
	assert_string_equal(canon("2002:c000:201::1"), "2002:c000:201::1");

	/* a site's network-specific prefixes, /96 and shorter (u-octet) */
	assert_int_equal(ipnet_xlat_set("2001:db8:64::/96, 2001:db8:100::/40 2001:db8:1:2::/64 2001:db8::/32",
	                                 err, sizeof err), 0);
	assert_string_equal(canon("2001:db8:64::c000:201"), "192.0.2.1");
	assert_string_equal(canon("2001:db8:64::a01:203"), "10.1.2.3");          /* the site's own: its call */
	assert_string_equal(canon("2001:db8:64::7f00:1"), "2001:db8:64::7f00:1"); /* never loopback */
	assert_string_equal(canon("64:ff9b::c000:201"), "64:ff9b::c000:201");    /* no longer listed */
	/* RFC 6052 2.4's examples for 192.0.2.33 */
	assert_string_equal(canon("2001:db8:c000:221::"), "192.0.2.33");          /* /32 */
	assert_string_equal(canon("2001:db8:1c0:2:21::"), "192.0.2.33");          /* /40 */
	assert_string_equal(canon("2001:db8:1:2:c0:2:2100:0"), "192.0.2.33");     /* /64 */
	/* u-octet or suffix not zero: a host of the /64, not a translation */
	assert_string_equal(canon("2001:db8:1:2:1c0:2:2100:0"), "2001:db8:1:2:1c0:2:2100:0");
	assert_string_equal(canon("2001:db8:1:2:c0:2:2100:1"), "2001:db8:1:2:c0:2:2100:1");
	/* none */
	assert_int_equal(ipnet_xlat_set("", err, sizeof err), 0);
	assert_string_equal(canon("2001:db8:64::c000:201"), "2001:db8:64::c000:201");
	/* refused, and the table in use kept */
	assert_int_equal(ipnet_xlat_set("64:ff9b::/96", err, sizeof err), 0);
	assert_int_equal(ipnet_xlat_set("2002::/16", err, sizeof err), -1);
	assert_non_null(strstr(err, "6to4"));
	assert_int_equal(ipnet_xlat_set("2002:c000:200::/48", err, sizeof err), -1);
	assert_int_equal(ipnet_xlat_set("2001:db8::/72", err, sizeof err), -1);
	assert_non_null(strstr(err, "/96"));
	assert_int_equal(ipnet_xlat_set("2001:db8::/33", err, sizeof err), -1);
	assert_int_equal(ipnet_xlat_set("2001:db8::1/96", err, sizeof err), -1);
	assert_int_equal(ipnet_xlat_set("2001:db8::", err, sizeof err), -1);
	assert_int_equal(ipnet_xlat_set("::ffff:0:0/96", err, sizeof err), -1);
	assert_int_equal(ipnet_xlat_set("::/96", err, sizeof err), -1);
	assert_int_equal(ipnet_xlat_set("192.0.2.0/24", err, sizeof err), -1);
	assert_int_equal(ipnet_xlat_set("1::/96 2::/96 3::/96 4::/96 5::/96 6::/96 7::/96 8::/96 9::/96",
	                                 err, sizeof err), -1);
	assert_string_equal(canon("64:ff9b::c000:201"), "192.0.2.1");
}

/* xentry - a list entry as ipnet_xlat_net makes it under the prefixes
 * pfx: "192.0.2.0/24", "+" appended when the IPv6 entry stays too, "="
 * when it stays as written, "!" when refused */
static const char *xentry(const char *pfx, const char *entry)
{
	static char buf[80];
	struct ipnet nets[IPNET_XLAT_MAX], net, v4;
	size_t n, which = 99;
	char err[200], txt[INET_ADDRSTRLEN];
	int keep6, rc;

	assert_int_equal(ipnet_xlat_parse(pfx, nets, &n, err, sizeof err), 0);
	assert_int_equal(ipnet_parse(entry, &net), 0);
	rc = ipnet_xlat_net(nets, n, &net, &v4, &keep6, &which);
	if (rc == 0)
		return "=";
	assert_true(which < n);
	if (rc < 0)
		return "!";
	inet_ntop(AF_INET, v4.addr, txt, sizeof txt);
	snprintf(buf, sizeof buf, "%s/%u%s", txt, v4.bits, keep6 ? "+" : "");
	return buf;
}

/* List entries written inside a translation prefix are the IPv4 networks
 * the clients they name are once translated. */
static void test_translated_entries(void **state)
{
	const char *wkp = "64:ff9b::/96";

	(void)state;
	assert_string_equal(xentry(wkp, "64:ff9b::c000:201"), "192.0.2.1/32");
	assert_string_equal(xentry(wkp, "64:FF9B::192.0.2.0/120"), "192.0.2.0/24");
	assert_string_equal(xentry(wkp, "64:ff9b::c000:201/120"), "192.0.2.0/24");  /* host bits go */
	assert_string_equal(xentry(wkp, "64:ff9b::c633:6400/104"), "198.0.0.0/8");
	/* the whole prefix would be every IPv4 client: refused */
	assert_string_equal(xentry(wkp, "64:ff9b::/96"), "!");
	/* wider than the prefix, outside it, IPv4: as written */
	assert_string_equal(xentry(wkp, "::/0"), "=");
	assert_string_equal(xentry(wkp, "64:ff9b::/64"), "=");
	assert_string_equal(xentry(wkp, "2001:db8::c000:201"), "=");
	assert_string_equal(xentry(wkp, "64:ff9b:0:0:1::/80"), "=");
	assert_string_equal(xentry(wkp, "192.0.2.0/24"), "=");
	/* what the well-known prefix never translates stays IPv6 ... */
	assert_string_equal(xentry(wkp, "64:ff9b::127.0.0.1"), "=");
	assert_string_equal(xentry(wkp, "64:ff9b::10.0.0.0/104"), "=");
	assert_string_equal(xentry(wkp, "64:ff9b::192.168.1.0/120"), "=");
	/* ... and an entry holding some of it is needed as written too */
	assert_string_equal(xentry(wkp, "64:ff9b::/97"), "0.0.0.0/1+");
	assert_string_equal(xentry(wkp, "64:ff9b::a000:0/99"), "160.0.0.0/3+");   /* 169.254/16 */
	assert_string_equal(xentry(wkp, "64:ff9b::c000:0/99"), "192.0.0.0/3+");   /* 192.168/16 */
	assert_string_equal(xentry(wkp, "64:ff9b::c000:0/100"), "192.0.0.0/4+");
	assert_string_equal(xentry(wkp, "64:ff9b::c000:0/112"), "192.0.0.0/16");
	/* a network-specific /96 may carry the site's own networks */
	assert_string_equal(xentry("2001:db8:64::/96", "2001:db8:64::10.0.0.0/104"), "10.0.0.0/8");
	assert_string_equal(xentry("2001:db8:64::/96", "2001:db8:64::127.0.0.1"), "=");
	/* RFC 6052 2.4's 192.0.2.33 under shorter prefixes: the u-octet
	 * (bits 64..71) does not count, the suffix must be zero; an entry
	 * that leaves either open also holds hosts that are not translated,
	 * and stays as written besides ("+") */
	assert_string_equal(xentry("2001:db8::/32", "2001:db8:c000:221::"), "192.0.2.33/32");
	assert_string_equal(xentry("2001:db8::/32", "2001:db8:c000:200::/56"), "192.0.2.0/24+");
	assert_string_equal(xentry("2001:db8:100::/40", "2001:db8:1c0:2:21::"), "192.0.2.33/32");
	assert_string_equal(xentry("2001:db8:100::/40", "2001:db8:1c0:2::/64"), "192.0.2.0/24+");
	assert_string_equal(xentry("2001:db8:100::/40", "2001:db8:1c0:2::/72"), "192.0.2.0/24+");
	assert_string_equal(xentry("2001:db8:100::/40", "2001:db8:1c0:2:21::/80"), "192.0.2.33/32+");
	assert_string_equal(xentry("2001:db8:1:2::/64", "2001:db8:1:2:c0:2:2100:0"), "192.0.2.33/32");
	assert_string_equal(xentry("2001:db8:1:2::/64", "2001:db8:1:2:c0:2::/96"), "192.0.2.0/24+");
	assert_string_equal(xentry("2001:db8:1:2::/64", "2001:db8:1:2::/72"), "!");      /* u-octet only */
	assert_string_equal(xentry("2001:db8:1:2::/64", "2001:db8:1:2:1c0:2::/104"), "="); /* u-octet set */
	assert_string_equal(xentry("2001:db8:1:2::/64", "2001:db8:1:2:c0:2:2100:1"), "="); /* suffix set */
	/* the prefix that translates it, as for a client: under the /32 the
	 * suffix is set, the /96 holds it */
	assert_string_equal(xentry("2001:db8::/32 2001:db8:64::/96", "2001:db8:64::c000:201"), "192.0.2.1/32");
	assert_string_equal(xentry("2001:db8::/32 2001:db8:64::/96", "2001:db8:64::/96"), "!");
	assert_string_equal(xentry("2001:db8:64::/96 2001:db8::/32", "2001:db8:64::c000:201"), "192.0.2.1/32");
	assert_string_equal(xentry("", "64:ff9b::c000:201"), "=");
}

/* the listener's and the milter's side: a client socket address */
static void test_client_sockaddr(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
	char buf[64];
	unsigned port;

	(void)state;
	memset(&ss, 0, sizeof ss);
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(41234);
	assert_int_equal(inet_pton(AF_INET6, "64:ff9b::c000:201", &in6->sin6_addr), 1);
	assert_string_equal(netaddr_client_ip((struct sockaddr *)&ss, buf, sizeof buf, &port), "192.0.2.1");
	assert_int_equal(port, 41234);
	assert_int_equal(netaddr_client(&ss), 1);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(in->sin_port), 41234);
	assert_string_equal(netaddr_ip((struct sockaddr *)&ss, buf, sizeof buf, NULL), "192.0.2.1");
	/* an IPv6 client, and the unchanged netaddr_ip of a translated address
	 * (listeners, upstreams, original destinations are never translated) */
	memset(&ss, 0, sizeof ss);
	in6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &in6->sin6_addr), 1);
	assert_int_equal(netaddr_client(&ss), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(inet_pton(AF_INET6, "64:ff9b::c000:201", &in6->sin6_addr), 1);
	assert_string_equal(netaddr_ip((struct sockaddr *)&ss, buf, sizeof buf, NULL), "64:ff9b::c000:201");
}

static void test_private(void **state)
{
	static const char *const priv[] = { "127.0.0.1", "10.9.8.7", "172.16.0.1", "172.31.255.255",
		"192.168.1.1", "169.254.1.1", "::1", "fd00::25", "fc00::1", "fe80::1", "::ffff:10.0.0.1", NULL };
	static const char *const pub[] = { "0.0.0.0", "::", "192.0.2.1", "172.32.0.1", "11.0.0.1",
		"2001:db8::1", "fec0::1", "::ffff:192.0.2.1", NULL };
	struct ipnet a;

	(void)state;
	for (int i = 0; priv[i] != NULL; i++) {
		assert_int_equal(ipnet_parse(priv[i], &a), 0);
		assert_true(ipnet_private(&a));
	}
	for (int i = 0; pub[i] != NULL; i++) {
		assert_int_equal(ipnet_parse(pub[i], &a), 0);
		assert_false(ipnet_private(&a));
	}
}

static void test_limit_key(void **state)
{
	(void)state;
	assert_string_equal(key("192.0.2.1"), "192.0.2.1");
	assert_string_equal(key("::ffff:192.0.2.1"), "192.0.2.1");
	assert_string_equal(key("2001:db8:1:2:a:b:c:d"), "2001:db8:1:2::/64");
	assert_string_equal(key("2001:DB8:1:2::9"), "2001:db8:1:2::/64");
	assert_string_equal(key("::1"), "::/64");
	assert_string_equal(key("2001:db8::/64"), "-");
	assert_string_equal(key("x"), "-");
}

static void test_networks(void **state)
{
	struct ipnet n;

	(void)state;
	assert_true(contains("::/0", "2001:db8::1"));
	assert_false(contains("::/0", "192.0.2.1"));
	assert_false(contains("0.0.0.0/0", "2001:db8::1"));
	assert_true(contains("2001:db8:1:2::/64", "2001:db8:1:2:ffff::1"));
	assert_false(contains("2001:db8:1:2::/64", "2001:db8:1:3::1"));
	assert_true(contains("2001:db8::1/128", "2001:db8::1"));
	assert_true(contains("::ffff:198.51.100.0/120", "198.51.100.7"));
	assert_false(contains("::ffff:198.51.100.0/120", "198.51.101.7"));
	assert_true(contains("198.51.100.0/24", "::ffff:198.51.100.7"));
	assert_int_equal(ipnet_parse("::ffff:198.51.100.0/120", &n), 0);
	assert_int_equal(n.family, 4);
	assert_int_equal(n.bits, 24);
	assert_int_equal(ipnet_parse("::ffff:0:0/95", &n), -1);
	assert_int_equal(ipnet_parse("::ffff:0:0/129", &n), -1);
	assert_int_equal(ipnet_parse("2001:db8::/129", &n), -1);
	assert_int_equal(ipnet_parse("2001:db8::/", &n), -1);
	assert_int_equal(ipnet_parse("2001:db8::/+8", &n), -1);
	assert_int_equal(ipnet_parse("2001:db8::/-1", &n), -1);
	assert_int_equal(ipnet_parse("10.0.0.0/33", &n), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_canon),
		cmocka_unit_test(test_limit_key),
		cmocka_unit_test(test_networks),
		cmocka_unit_test(test_translated),
		cmocka_unit_test(test_translated_entries),
		cmocka_unit_test(test_private),
		cmocka_unit_test(test_client_sockaddr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
