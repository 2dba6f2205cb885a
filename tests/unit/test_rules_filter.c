/* test_rules_filter.c - the rules filter's bridge (filters/rules.c: how a
 * message is presented to the rules) through the pipeline, over inputs
 * the fuzzers found: text parts holding NUL bytes. */
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

static int has_symbol(const struct scan_result *r, const char *name)
{
	for (size_t i = 0; i < r->nsymbols; i++)
		if (strcmp(r->symbols[i].name, name) == 0)
			return 1;
	return 0;
}

/* scan_with_rules - msg through a pipeline running only the rules filter
 * with the rules in text (written to unit_dir/test.cf) */
static void scan_with_rules(const char *text, const char *msg, size_t len, struct scan_result *res)
{
	const char *dir = unit_dir;
	char path[UNIT_TMPDIR_MAX + 16], files[UNIT_TMPDIR_MAX + 32], err[512];
	const char *ov[] = { "filters = rules", files, "rules_cache_dir =", "rules_net_tests = no" };
	struct scan_request req = { 0 };
	struct config *cfg;
	struct pipeline *p;
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "%s/test.cf", dir);
	snprintf(files, sizeof(files), "rules_files = %s", path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	cfg = config_load(NULL, ov, sizeof(ov) / sizeof(ov[0]), err, sizeof(err));
	if (cfg == NULL)
		fail_msg("config: %s", err);
	p = pipeline_new(cfg, err, sizeof(err));
	if (p == NULL)
		fail_msg("pipeline_new: %s", err);
	strcpy(req.session_id, "00000000000000aa");
	req.listener = strdup("test");
	req.client_ip = strdup("192.0.2.1");
	req.client_name = strdup("");
	req.helo = strdup("client.example.org");
	req.mail_from = strdup("a@example.org");
	req.mail_params = strdup("");
	req.auth_user = strdup("");
	req.tls = strdup("");
	req.size = len;
	fd = memfd_create("msg", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, msg, len), (ssize_t)len);
	memset(res, 0, sizeof(*res));
	pipeline_scan_ex(p, &req, fd, PIPELINE_DRY_RUN, res);
	close(fd);
	assert_string_equal(res->error, "");
	scan_request_free(&req);
	pipeline_free(p);
	config_unref(cfg);
}

/* fuzz_scan found this: the body and rawbody lines were copied with
 * strndup, which stops at a NUL byte, while their length was kept: the
 * rules then read past the copy (a heap over-read of the scanner for any
 * text part with a NUL byte, e.g. base64-encoded).  The whole line must
 * reach the rules, the bytes after the NUL included. */
static void test_nul_in_text_part(void **state)
{
	static const char rules[] =
		"body AFTER_NUL_BODY /AFTERNUL two/\n"
		"score AFTER_NUL_BODY 1\n"
		"rawbody AFTER_NUL_RAW /AFTERNUL two/\n"
		"score AFTER_NUL_RAW 1\n";
	/* the part is "one\0 AFTERNUL two\n" */
	static const char msg[] =
		"From: a@example.org\r\n"
		"Subject: nul\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"\r\n"
		"b25lACBBRlRFUk5VTCB0d28K\r\n";
	struct scan_result res;

	(void)state;
	scan_with_rules(rules, msg, sizeof(msg) - 1, &res);
	assert_true(has_symbol(&res, "AFTER_NUL_BODY"));
	assert_true(has_symbol(&res, "AFTER_NUL_RAW"));
	scan_result_free(&res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nul_in_text_part, unit_tmpdir_setup, unit_tmpdir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
