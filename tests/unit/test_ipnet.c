/* test_ipnet.c - client addresses as filters and limits see them
 * (filters/ipnet.c): one spelling, the per-client key, mapped networks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "filters/ipnet.h"

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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
