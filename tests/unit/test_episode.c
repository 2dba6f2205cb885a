/* test_episode.c - a condition logged as start, "goes on" and end
 * (proxy/episode.h): one line when it starts, one per EPISODE_LOG_MS while
 * it lasts with the count since the line before, the end with the count
 * since the last line; what was counted just before the start is the
 * episode's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/episode.h"

static void test_start_lasts_end(void **state)
{
	struct episode ep = { 0, 0, 0 };
	unsigned long n = 99;
	long long secs = 99;
	(void)state;

	assert_false(episode_going(&ep));
	assert_int_equal(episode_end(&ep, 5000, &n, &secs), 0);
	ep.count++;                                   /* the first refusal */
	assert_int_equal(episode_step(&ep, 1000, &n, &secs), EPISODE_STARTS);
	assert_true(episode_going(&ep));
	for (long long t = 1100; t < 1000 + EPISODE_LOG_MS; t += 100) {
		ep.count++;
		assert_int_equal(episode_step(&ep, t, &n, &secs), EPISODE_QUIET);
	}
	ep.count++;
	assert_int_equal(episode_step(&ep, 1000 + EPISODE_LOG_MS, &n, &secs), EPISODE_LASTS);
	assert_int_equal(n, EPISODE_LOG_MS / 100 + 1);  /* the start's one, 99 quiet, this one */
	assert_int_equal(secs, EPISODE_LOG_MS / 1000);
	ep.count += 3;
	assert_int_equal(episode_step(&ep, 1500 + EPISODE_LOG_MS, &n, &secs), EPISODE_QUIET);
	assert_int_equal(episode_end(&ep, 4000 + EPISODE_LOG_MS, &n, &secs), 1);
	assert_int_equal(n, 3);                         /* since the last line */
	assert_int_equal(secs, 3);
	assert_false(episode_going(&ep));
	assert_int_equal(episode_end(&ep, 9000 + EPISODE_LOG_MS, &n, &secs), 0);
	/* a new one starts afresh */
	assert_int_equal(episode_step(&ep, 20000 + EPISODE_LOG_MS, &n, &secs), EPISODE_STARTS);
	assert_int_equal(episode_end(&ep, 20000 + EPISODE_LOG_MS, &n, &secs), 1);
	assert_int_equal(n, 0);
}

/* every_ms: a condition told again less often than EPISODE_LOG_MS (the
 * dnsbl filter's blocked list: hourly) */
static void test_every_ms(void **state)
{
	struct episode ep = { 0, 0, 3600 * 1000LL };
	unsigned long n = 0;
	long long secs = 0;
	(void)state;

	assert_int_equal(episode_step(&ep, 1000, &n, &secs), EPISODE_STARTS);
	assert_int_equal(episode_step(&ep, 1000 + EPISODE_LOG_MS, &n, &secs), EPISODE_QUIET);
	assert_int_equal(episode_step(&ep, 1000 + 3600 * 1000LL - 1, &n, &secs), EPISODE_QUIET);
	assert_int_equal(episode_step(&ep, 1000 + 3600 * 1000LL, &n, &secs), EPISODE_LASTS);
	assert_int_equal(secs, 3600);
}

static void test_clock_never_zero(void **state)
{
	(void)state;
	long long a = episode_now_ms(), b = episode_now_ms();

	assert_true(a > 0 && b >= a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_lasts_end),
		cmocka_unit_test(test_every_ms),
		cmocka_unit_test(test_clock_never_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
