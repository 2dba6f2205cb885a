/* test_uplog.c - a next hop's condition (no XCLIENT/XFORWARD offered) is
 * logged once a minute per hop and when it changes, not once per
 * connection: one line for the first connection, none for the next ones
 * within UPLOG_EVERY_MS, then one with their count; at once for another
 * kind, another hop, or after the condition was over. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/uplog.h"

static int reset(void **state)
{
	(void)state;
	uplog_reset();
	return 0;
}

static void test_once_a_minute(void **state)
{
	unsigned long since = 99;
	const long long t0 = 1000000;

	assert_int_equal(uplog_due("127.0.0.1:25", 1, t0, &since), 1);
	assert_int_equal(since, 0);
	for (int i = 1; i <= 500; i++)                /* 500 connections in the minute */
		assert_int_equal(uplog_due("127.0.0.1:25", 1, t0 + i * 100, &since), 0);
	assert_int_equal(uplog_due("127.0.0.1:25", 1, t0 + UPLOG_EVERY_MS - 1, &since), 0);
	assert_int_equal(uplog_due("127.0.0.1:25", 1, t0 + UPLOG_EVERY_MS, &since), 1);
	assert_int_equal(since, 501);
	/* the next minute counts from that line */
	assert_int_equal(uplog_due("127.0.0.1:25", 1, t0 + UPLOG_EVERY_MS + 10, &since), 0);
	assert_int_equal(uplog_due("127.0.0.1:25", 1, t0 + 2 * UPLOG_EVERY_MS, &since), 1);
	assert_int_equal(since, 1);
}

static void test_change_and_hops(void **state)
{
	unsigned long since;
	const long long t0 = 5000;

	assert_int_equal(uplog_due("a:25", 1, t0, &since), 1);
	assert_int_equal(uplog_due("a:25", 1, t0 + 1, &since), 0);
	/* another hop is its own */
	assert_int_equal(uplog_due("b:25", 1, t0 + 2, &since), 1);
	/* another kind (EHLO refused, HELO) is a change: at once */
	assert_int_equal(uplog_due("a:25", 2, t0 + 3, &since), 1);
	assert_int_equal(since, 0);
	assert_int_equal(uplog_due("a:25", 2, t0 + 4, &since), 0);
	/* offered again: the end is told once, and the next miss at once */
	assert_int_equal(uplog_clear("a:25"), 1);
	assert_int_equal(uplog_clear("a:25"), 0);
	assert_int_equal(uplog_clear("never:25"), 0);
	assert_int_equal(uplog_due("a:25", 2, t0 + 5, &since), 1);
	assert_int_equal(uplog_due("b:25", 1, t0 + 6, &since), 0);
}

/* more hops than slots (a transparent listener's destinations): the one
 * logged longest ago makes room, and is logged again, never lost */
static void test_full_table(void **state)
{
	unsigned long since;
	char hop[32];

	for (int i = 0; i < UPLOG_SLOTS; i++) {
		snprintf(hop, sizeof hop, "10.0.0.%d:25", i);
		assert_int_equal(uplog_due(hop, 1, 100 + i, &since), 1);
	}
	assert_int_equal(uplog_due("10.0.0.5:25", 1, 200, &since), 0);
	assert_int_equal(uplog_due("10.1.0.0:25", 1, 300, &since), 1);     /* takes 10.0.0.0's */
	assert_int_equal(uplog_due("10.0.0.5:25", 1, 301, &since), 0);
	assert_int_equal(uplog_due("10.0.0.0:25", 1, 302, &since), 1);     /* again, at once */
	/* which took the slot of the next oldest, 10.0.0.1: clear finds what
	 * is going, and not what made room */
	assert_int_equal(uplog_clear("10.1.0.0:25"), 1);
	assert_int_equal(uplog_clear("10.0.0.1:25"), 0);
	assert_int_equal(uplog_clear("10.0.0.63:25"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_once_a_minute, reset),
		cmocka_unit_test_setup(test_change_and_hops, reset),
		cmocka_unit_test_setup(test_full_table, reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
