/* test_deadline.c - unit tests for filters/deadline.c: the margin kept
 * from the front end's wait, the cap of a wait by what is left, who ran
 * out and why (one note per filter, the scan's deadline winning), the
 * report cut at whole entries, and the -t worst-case warning. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/deadline.h"
#include "proxy/config.h"

static void test_margin(void **state)
{
	(void)state;
	assert_int_equal(deadline_margin_ms(120000), 5000);     /* at most 5 s */
	assert_int_equal(deadline_margin_ms(6000), 600);        /* a tenth */
	assert_int_equal(deadline_margin_ms(1000), 200);        /* at least 200 ms */
	assert_int_equal(deadline_margin_ms(300), 150);         /* never more than half */
	assert_int_equal(deadline_margin_ms(10), 5);
}

static void test_cap(void **state)
{
	int capped = -1;
	(void)state;

	deadline_end();
	assert_int_equal(deadline_left_ms(), -1);           /* no scan: no deadline */
	assert_int_equal(deadline_cap(30000, &capped), 30000);
	assert_int_equal(capped, 0);

	deadline_begin(deadline_now_ms() + 10000);
	assert_int_equal(deadline_cap(500, &capped), 500);
	assert_int_equal(capped, 0);
	assert_in_range(deadline_cap(30000, &capped), 9000, 10000);
	assert_int_equal(capped, 1);

	deadline_begin(deadline_now_ms() - 1);              /* passed */
	assert_int_equal(deadline_left_ms(), 0);
	assert_int_equal(deadline_cap(30000, &capped), 0);
	assert_int_equal(capped, 1);
	deadline_end();
}

static void test_notes(void **state)
{
	char out[256];
	(void)state;

	deadline_begin(deadline_now_ms() + 60000);
	assert_int_equal(deadline_report(out, sizeof(out)), 0);
	assert_string_equal(out, "");
	deadline_filter("spamd");
	deadline_timed_out("spamd_timeout");
	deadline_timed_out("spamd_timeout");                /* once per filter */
	deadline_filter("dnsbl");
	deadline_timed_out("dns_timeout");
	deadline_filter(NULL);
	deadline_timed_out("dns_timeout");                  /* the pipeline's own */
	assert_int_equal(deadline_report(out, sizeof(out)), 3);
	assert_string_equal(out, "spamd=spamd_timeout dnsbl=dns_timeout pipeline=dns_timeout");

	/* once the deadline has passed, that is the reason, also over an
	 * earlier note of the same filter */
	deadline_begin(deadline_now_ms() - 1);
	deadline_filter("clamd");
	deadline_timed_out("clamd_timeout");
	deadline_filter("spamd");
	deadline_timed_out("spamd_timeout");
	assert_int_equal(deadline_report(out, sizeof(out)), 2);
	assert_string_equal(out, "clamd=scan_deadline spamd=scan_deadline");

	/* whole entries only */
	assert_int_equal(deadline_report(out, 25), 2);
	assert_string_equal(out, "clamd=scan_deadline");
	assert_int_equal(deadline_report(out, 10), 2);
	assert_string_equal(out, "");

	/* a new scan forgets the last one's notes */
	deadline_begin(deadline_now_ms() + 1000);
	assert_int_equal(deadline_report(out, sizeof(out)), 0);
	deadline_end();
}

static struct config *load(const char *const *ov, size_t n)
{
	char err[512];
	struct config *c = config_load(NULL, ov, n, err, sizeof(err));

	if (c == NULL)
		fail_msg("%s", err);
	return c;
}

static int check(const char *const *ov, size_t n, char *out, size_t outsz)
{
	struct config *c = load(ov, n);
	FILE *f = fmemopen(out, outsz, "w");
	int rc;

	assert_non_null(f);
	rc = deadline_check_config(c, f, "test");
	fclose(f);
	config_unref(c);
	return rc;
}

static void test_check_config(void **state)
{
	static const char *const over[] = {
		"filters=spf dkim dmarc dnsbl spamd clamd greylist", "store=redis",
		"milter_listen=inet:1@127.0.0.1", "milter_timeout=60s", "dns_client_name=yes",
	};
	static const char *const clamav[] = {
		"filters=clamav spamd", "listener.in.listen=127.0.0.1:2525",
		"listener.in.upstream=127.0.0.1:25", "scan_timeout=80s", "dns_client_name=no",
	};
	static const char *const fits[] = {
		"filters=spamd", "milter_listen=inet:1@127.0.0.1", "dns_client_name=no",
	};
	char out[4096];
	(void)state;

	memset(out, 0, sizeof(out));
	assert_int_equal(check(over, 5, out, sizeof(out)), 1);
	/* 5 + 15 + 10 + 2 x 5 + 5 + 30 + 60 + 2 x 1 */
	assert_non_null(strstr(out, "test: warning: the filters' waits add up to 137s at worst"));
	assert_non_null(strstr(out, "rdns: dns_timeout 5s, spf: spf_timeout 15s, dkim: dkim_timeout "
	    "10s, dmarc: 2 x dns_timeout 5s, dnsbl: dns_timeout 5s, spamd: spamd_timeout 30s, "
	    "clamd: clamd_timeout 60s, greylist: 2 x store_timeout 1s"));
	assert_non_null(strstr(out, "more than milter_timeout 60s leaves them (5s is kept back"));
	assert_null(strstr(out, "scan_timeout"));           /* no proxy listener */
	assert_null(strstr(out, "libclamav"));

	/* libclamav's own limit counts, and is said not to be cut */
	memset(out, 0, sizeof(out));
	assert_int_equal(check(clamav, 5, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "90s at worst, one after the other (clamav: av_max_scantime 60s, "
	    "spamd: spamd_timeout 30s), more than scan_timeout 80s"));
	assert_non_null(strstr(out, "libclamav's scan is not cut"));

	memset(out, 0, sizeof(out));
	assert_int_equal(check(fits, 3, out, sizeof(out)), 0);
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_margin),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_notes),
		cmocka_unit_test(test_check_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
