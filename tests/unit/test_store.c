/* test_store.c - the LMDB store backend through store.h (get/set with
 * TTL, atomic increments from several threads, token batches that never
 * go below zero), the shared handle, client networks and CIDR lists
 * (ipnet), and the Bayes chi-square combination on a learned store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/bayes.h"
#include "filters/ipnet.h"
#include "filters/store.h"

static char dir[64];

static struct config *cfg_new(void)
{
	char err[512], path[128], ov[160];
	const char *o[1] = { ov };

	snprintf(path, sizeof(path), "%s/s.lmdb", dir);
	snprintf(ov, sizeof(ov), "store_path=%s", path);
	struct config *c = config_load(NULL, o, 1, err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	return c;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mw-store-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_get_set_ttl_del(void **state)
{
	(void)state;
	struct config *c = cfg_new();
	char err[256], v[64];
	struct store *s = store_open(c, err, sizeof(err));

	assert_non_null(s);
	assert_string_equal(store_backend(s), "lmdb");
	assert_int_equal(store_get(s, "k1", v, sizeof(v)), 0);
	assert_int_equal(store_set(s, "k1", "hello", 0), 0);
	assert_int_equal(store_set(s, "k2", "short", 1), 0);
	assert_int_equal(store_get(s, "k1", v, sizeof(v)), 1);
	assert_string_equal(v, "hello");
	assert_int_equal(store_get(s, "k1", v, 3), 1);          /* cut to fit */
	assert_string_equal(v, "he");
	assert_int_equal(store_get(s, "k2", v, sizeof(v)), 1);
	sleep(2);
	assert_int_equal(store_get(s, "k2", v, sizeof(v)), 0);  /* expired */
	assert_int_equal(store_del(s, "k1"), 0);
	assert_int_equal(store_get(s, "k1", v, sizeof(v)), 0);
	/* keys with spaces or control bytes never reach a backend */
	assert_int_equal(store_set(s, "a b", "x", 0), -1);
	assert_int_equal(store_set(s, "a\r\nb", "x", 0), -1);
	assert_int_equal(store_get(s, "", v, sizeof(v)), -1);
	store_close(s);
	config_unref(c);
}

struct incr_arg { struct store *s; int n; };

static void *incr_thread(void *p)
{
	struct incr_arg *a = p;

	for (int i = 0; i < a->n; i++)
		if (store_incr(a->s, "counter", 1, 0, NULL) < 0)
			return (void *)1;
	return NULL;
}

static void test_incr_shared_and_threads(void **state)
{
	(void)state;
	struct config *c = cfg_new();
	char err[256], v[32];
	struct store *s = store_open(c, err, sizeof(err));
	struct store *s2 = store_open(c, err, sizeof(err));   /* same handle */
	pthread_t th[4];
	struct incr_arg a = { s, 250 };
	int64_t out;

	assert_non_null(s);
	assert_ptr_equal(s, s2);
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, incr_thread, &a);
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(th[i], &r);
		assert_null(r);
	}
	assert_int_equal(store_incr(s, "counter", 0, 0, &out), 0);
	assert_int_equal(out, 1000);
	/* a new key gets the TTL; an existing one keeps its expiry */
	assert_int_equal(store_incr(s, "win", 5, 1, &out), 0);
	assert_int_equal(out, 5);
	assert_int_equal(store_incr(s, "win", -2, 100, &out), 0);
	assert_int_equal(out, 3);
	sleep(2);
	assert_int_equal(store_get(s, "win", v, sizeof(v)), 0);
	assert_int_equal(store_incr(s, "win", 1, 0, &out), 0);
	assert_int_equal(out, 1);
	store_close(s2);
	store_close(s);
	config_unref(c);
}

static void test_tokens(void **state)
{
	(void)state;
	struct config *c = cfg_new();
	char err[256];
	struct store *s = store_open(c, err, sizeof(err));
	struct store_token t[3] = { { 1, 2, 0 }, { 2, 0, 3 }, { 3, 1, 1 } }, q[4];

	assert_non_null(s);
	assert_int_equal(store_tokens_add(s, t, 3, 1), 0);
	assert_int_equal(store_tokens_add(s, t, 1, 1), 0);
	memset(q, 0, sizeof(q));
	q[0].hash = 1; q[1].hash = 2; q[2].hash = 3; q[3].hash = 99;
	assert_int_equal(store_tokens_get(s, q, 4), 0);
	assert_int_equal(q[0].spam, 4);
	assert_int_equal(q[1].ham, 3);
	assert_int_equal(q[2].spam, 1);
	assert_int_equal(q[3].spam + q[3].ham, 0);
	/* subtracting more than there is stops at 0 */
	struct store_token sub[2] = { { 2, 0, 10 }, { 3, 5, 0 } };
	assert_int_equal(store_tokens_add(s, sub, 2, -1), 0);
	assert_int_equal(store_tokens_get(s, q, 4), 0);
	assert_int_equal(q[1].ham, 0);
	assert_int_equal(q[2].spam, 0);
	assert_int_equal(q[2].ham, 1);
	store_close(s);
	config_unref(c);
}

static void test_bad_path(void **state)
{
	(void)state;
	char err[512], ov[200];
	const char *o[1] = { ov };

	snprintf(ov, sizeof(ov), "store_path=%s/no/such/dir/s.lmdb", dir);
	struct config *c = config_load(NULL, o, 1, err, sizeof(err));
	assert_non_null(c);
	assert_null(store_open(c, err, sizeof(err)));
	assert_non_null(strstr(err, "store_path"));
	config_unref(c);
}

static void test_ipnet(void **state)
{
	(void)state;
	struct ipnet n, a;
	char out[64];

	assert_int_equal(ipnet_client_net("192.0.2.77", out, sizeof(out)), 0);
	assert_string_equal(out, "192.0.2.0/24");
	assert_int_equal(ipnet_client_net("2001:db8:1:2:3:4:5:6", out, sizeof(out)), 0);
	assert_string_equal(out, "2001:db8:1:2::/64");
	assert_int_equal(ipnet_client_net("::ffff:198.51.100.9", out, sizeof(out)), 0);
	assert_string_equal(out, "198.51.100.0/24");
	assert_int_equal(ipnet_client_net("not-an-ip", out, sizeof(out)), -1);
	assert_int_equal(ipnet_client_net("", out, sizeof(out)), -1);
	assert_int_equal(ipnet_parse("10.0.0.0/8", &n), 0);
	assert_int_equal(ipnet_parse("10.200.1.1", &a), 0);
	assert_true(ipnet_contains(&n, &a));
	assert_int_equal(ipnet_parse("11.0.0.1", &a), 0);
	assert_false(ipnet_contains(&n, &a));
	assert_int_equal(ipnet_parse("172.16.0.0/12", &n), 0);
	assert_int_equal(ipnet_parse("172.31.255.255", &a), 0);
	assert_true(ipnet_contains(&n, &a));
	assert_int_equal(ipnet_parse("172.32.0.0", &a), 0);
	assert_false(ipnet_contains(&n, &a));
	assert_int_equal(ipnet_parse("2001:db8::/32", &n), 0);
	assert_int_equal(ipnet_parse("2001:db8:ffff::1", &a), 0);
	assert_true(ipnet_contains(&n, &a));
	assert_int_equal(ipnet_parse("1.2.3.4", &a), 0);
	assert_false(ipnet_contains(&n, &a));               /* other family */
	assert_int_equal(ipnet_parse("1.2.3.4/33", &n), -1);
	assert_int_equal(ipnet_parse("1.2.3.4/", &n), -1);
}

/* the combination: clearly spammy clues give ~1, hammy ~0, none 0.5 */
static void test_bayes_probability(void **state)
{
	(void)state;
	struct config *c = cfg_new();
	char err[256];
	struct store *s = store_open(c, err, sizeof(err));
	struct store_token t[40];
	uint64_t h[40];
	struct bayes_tokens bt = { h, 0, 40 };
	size_t used, i;
	double p;

	assert_non_null(s);
	c->bayes_min_spam = c->bayes_min_ham = 10;
	bt.n = 20;
	for (i = 0; i < 20; i++)
		h[i] = 1000 + i;
	assert_true(bayes_probability(s, c, &bt, &used) < 0);   /* nothing learned */
	assert_int_equal(store_incr(s, "bayes:nspam", 10, 0, NULL), 0);
	assert_int_equal(store_incr(s, "bayes:nham", 10, 0, NULL), 0);
	for (i = 0; i < 40; i++) {
		t[i].hash = 1000 + i;
		t[i].spam = i < 20 ? 9 : 0;
		t[i].ham = i < 20 ? 0 : 9;
	}
	assert_int_equal(store_tokens_add(s, t, 40, 1), 0);
	p = bayes_probability(s, c, &bt, &used);
	assert_true(p > 0.99);
	assert_int_equal(used, 20);
	for (i = 0; i < 20; i++)
		h[i] = 1020 + i;
	p = bayes_probability(s, c, &bt, &used);
	assert_true(p >= 0 && p < 0.01);
	for (i = 0; i < 20; i++)
		h[i] = 5000 + i;                       /* unknown tokens */
	p = bayes_probability(s, c, &bt, &used);
	assert_true(p > 0.49 && p < 0.51);
	assert_int_equal(used, 0);
	store_close(s);
	config_unref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get_set_ttl_del, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incr_shared_and_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_path, setup, teardown),
		cmocka_unit_test(test_ipnet),
		cmocka_unit_test_setup_teardown(test_bayes_probability, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
