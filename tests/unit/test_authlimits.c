/* test_authlimits.c - greylisting and rate limits for authenticated
 * senders, through the pipeline with hand-made scan requests (the proxy
 * only sets auth_user once AUTH is in front of it): authenticated mail
 * is never greylisted, and ratelimit_user counts per user. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/pipeline.h"
#include "proxy/config.h"
#include "proxy/scanproto.h"
#include "tests/unit/unit_tmpdir.h"

/* the running test's scratch directory (unit_tmpdir_setup) */
static const char *const dir = unit_dir;
static const char msg[] = "From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n";

static struct config *cfg_with(const char *filters, const char *extra)
{
	char err[512], o0[160], o1[160], o2[160];
	const char *o[5] = { o0, o1, "dns_forwarder=127.0.0.1@9", "dns_client_name=no", o2 };

	snprintf(o0, sizeof(o0), "store_path=%s/s.lmdb", dir);
	snprintf(o1, sizeof(o1), "filters=%s", filters);
	snprintf(o2, sizeof(o2), "%s", extra);
	struct config *c = config_load(NULL, o, 5, err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	return c;
}

static enum mw_action scan_as(struct pipeline *p, const char *user, const char *symbol, int *has)
{
	struct scan_request r;
	struct scan_result res;
	int fd = memfd_create("m", MFD_CLOEXEC);
	enum mw_action a;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, msg, strlen(msg)), (ssize_t)strlen(msg));
	memset(&r, 0, sizeof(r));
	r.id = 1;
	strcpy(r.session_id, "00000000000000bb");
	r.listener = strdup("t");
	r.client_ip = strdup("192.0.2.7");
	r.client_name = strdup("");
	r.helo = strdup("h.example");
	r.mail_from = strdup("a@example.org");
	r.mail_params = strdup("");
	r.rcpts = calloc(1, sizeof(char *));
	r.rcpts[0] = strdup("b@example.net");
	r.nrcpts = 1;
	r.auth_user = strdup(user);
	r.tls = strdup("");
	pipeline_scan(p, &r, fd, &res);
	close(fd);
	a = res.action;
	*has = 0;
	for (size_t i = 0; i < res.nsymbols; i++)
		if (strcmp(res.symbols[i].name, symbol) == 0)
			*has = 1;
	scan_result_free(&res);
	scan_request_free(&r);
	return a;
}

static void test_greylist_skips_authenticated(void **state)
{
	(void)state;
	struct config *c = cfg_with("greylist", "greylist_delay=1h");
	char err[512];
	struct pipeline *p = pipeline_new(c, err, sizeof(err));
	int has;

	if (p == NULL)
		fail_msg("%s", err);
	assert_int_equal(scan_as(p, "alice", "GREYLIST_SKIP", &has), MW_ACCEPT);
	assert_true(has);
	assert_int_equal(scan_as(p, "", "GREYLIST", &has), MW_TEMPFAIL);
	assert_true(has);
	pipeline_free(p);
	config_unref(c);
}

static void test_ratelimit_per_user(void **state)
{
	(void)state;
	struct config *c = cfg_with("ratelimit", "ratelimit_user=2/1h");
	char err[512];
	struct pipeline *p = pipeline_new(c, err, sizeof(err));
	int has;

	if (p == NULL)
		fail_msg("%s", err);
	assert_int_equal(scan_as(p, "alice", "RATELIMIT_USER", &has), MW_ACCEPT);
	assert_int_equal(scan_as(p, "alice", "RATELIMIT_USER", &has), MW_ACCEPT);
	assert_false(has);
	assert_int_equal(scan_as(p, "alice", "RATELIMIT_USER", &has), MW_TEMPFAIL);
	assert_true(has);
	assert_int_equal(scan_as(p, "bob", "RATELIMIT_USER", &has), MW_ACCEPT);
	/* unauthenticated mail is not counted against any user */
	for (int i = 0; i < 3; i++)
		assert_int_equal(scan_as(p, "", "RATELIMIT_USER", &has), MW_ACCEPT);
	pipeline_free(p);
	config_unref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_greylist_skips_authenticated, unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_ratelimit_per_user, unit_tmpdir_setup, unit_tmpdir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
