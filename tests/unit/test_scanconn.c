/* test_scanconn.c - a scanner connection kept idle by a front end, found
 * closed when the next request goes (the scanner it led to was killed and
 * respawned, or retired by a reload, and its EOF is not read yet): the
 * request goes once more on a new connection, in the proxy's client
 * (scanclient) and the milter's (scansync) alike (scanconn.h).  Until
 * session 20 the milter took the EPIPE for "scanner unavailable" and
 * applied milter_default_action (with accept: the message delivered
 * unscanned), and the proxy's client answered 451.  A connection with
 * requests in flight that breaks is still the scanner failing under them:
 * no second try.
 *
 * The fake scanner is unit_scan.h's socket in unit_dir; "the scanner went
 * away" is its end of the accepted connection closed. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "proxy/sbuf.h"
#include "proxy/scanclient.h"
#include "proxy/scanconn.h"
#include "proxy/scanproto.h"
#include "proxy/scansync.h"

#include "unit_scan.h"
#include "unit_tmpdir.h"

/* --- the rule ------------------------------------------------------------------ */

static void test_rule(void **state)
{
	struct scan_request rq = unit_scan_small_request();
	char why[200];
	int sv[2];
	(void)state;

	/* what a kept connection says once the scanner's end is closed */
	unit_scan_pair(sv);
	close(sv[1]);
	assert_int_equal(scanproto_send_request(sv[0], &rq, -1), -1);
	assert_int_equal(errno, EPIPE);
	close(sv[0]);
	unit_scan_free_small(&rq);

	assert_true(scanconn_send_again(EPIPE, 1));
	assert_true(scanconn_send_again(ECONNRESET, 1));
	assert_false(scanconn_send_again(EPIPE, 0));       /* a new connection: really gone */
	assert_false(scanconn_send_again(EMSGSIZE, 1));    /* the request's own */
	assert_false(scanconn_send_again(EAGAIN, 1));      /* full: waits, not gone */
	assert_false(scanconn_gone(EBADF));
	scanconn_unsent_why(EMSGSIZE, why, sizeof(why));
	assert_non_null(strstr(why, "scan request not sent: the request is too big for the scanner (past 64 MiB)"));
	scanconn_unsent_why(EMFILE, why, sizeof(why));
	assert_non_null(strstr(why, "scan request not sent: no memory or descriptor for its memfd"));
}

/* --- the proxy's asynchronous client ------------------------------------------- */

/* an idle connection found closed at the next submit: a new one, the
 * request scanned */
static void test_client_idle_connection_closed(void **state)
{
	struct event_base *base = event_base_new();
	struct sockaddr_un addr;
	socklen_t alen;
	struct scan_request a = unit_scan_small_request(), b = unit_scan_small_request();
	struct unit_scan_got got_a = { 0 }, got_b = { 0 };
	struct scan_unsent un;
	int l = unit_scan_listen(&addr, &alen), c;
	(void)state;

	struct scanclient *sc = scanclient_new(base, &addr, alen);
	assert_true(scanclient_submit(sc, &a, -1, 10000, unit_scan_on_done, &got_a, &un) != 0);
	assert_true((c = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0);
	assert_int_equal(unit_scan_answer(c, 0), 1);
	unit_scan_loop_until(base, &got_a);
	assert_int_equal(got_a.action, MW_TAG);

	/* the scanner goes away; the loop has not read the EOF */
	close(c);
	uint64_t id = scanclient_submit(sc, &b, -1, 10000, unit_scan_on_done, &got_b, &un);
	assert_true(id != 0);
	assert_true((c = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0);
	assert_int_equal(unit_scan_answer(c, 0), 1);
	unit_scan_loop_until(base, &got_b);
	assert_int_equal(got_b.done, 1);
	assert_int_equal(got_b.action, MW_TAG);
	assert_int_equal(scanclient_pending(sc), 0);

	unit_scan_free_small(&a);
	unit_scan_free_small(&b);
	scanclient_free(sc);
	event_base_free(base);
	close(c);
	close(l);
}

/* a connection with a request in flight found closed: that request gets
 * its tempfail, the new one is not sent again (the scanner died under
 * what it had): "scanner unavailable", not the request's fault */
static void test_client_busy_connection_closed(void **state)
{
	struct event_base *base = event_base_new();
	struct sockaddr_un addr;
	socklen_t alen;
	struct scan_request a = unit_scan_small_request(), b = unit_scan_small_request();
	struct unit_scan_got got_a = { 0 }, got_b = { 0 };
	struct scan_unsent un;
	int l = unit_scan_listen(&addr, &alen), c;
	(void)state;

	struct scanclient *sc = scanclient_new(base, &addr, alen);
	assert_true(scanclient_submit(sc, &a, -1, 10000, unit_scan_on_done, &got_a, &un) != 0);
	assert_true((c = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0);
	close(c);                       /* a's request unanswered */
	memset(&un, 0, sizeof(un));
	assert_true(scanclient_submit(sc, &b, -1, 10000, unit_scan_on_done, &got_b, &un) == 0);
	assert_int_equal(un.request_fault, 0);
	assert_non_null(strstr(un.why, "sending to the scanner"));
	assert_int_equal(got_a.done, 1);
	assert_int_equal(got_a.action, MW_TEMPFAIL);
	assert_int_equal(got_b.done, 0);
	assert_int_equal(scanclient_pending(sc), 0);

	unit_scan_free_small(&a);
	unit_scan_free_small(&b);
	scanclient_free(sc);
	event_base_free(base);
	close(l);
}

/* --- the milter's blocking client ---------------------------------------------- */

/* the fake scanner, on a thread: answers one request, closes that
 * connection when told (go), says so (done), then serves the next
 * connection's requests until it ends */
struct fake {
	int l;
	int go[2], done[2];
	int conns;            /* connections accepted */
};

static void *fake_scanner(void *arg)
{
	struct fake *f = arg;
	char x;
	int c = accept4(f->l, NULL, NULL, SOCK_CLOEXEC);

	if (c < 0)
		return NULL;
	f->conns++;
	unit_scan_answer(c, 0);
	if (read(f->go[0], &x, 1) != 1)
		return NULL;
	close(c);
	if (write(f->done[1], "y", 1) != 1)
		return NULL;
	if ((c = accept4(f->l, NULL, NULL, SOCK_CLOEXEC)) < 0)
		return NULL;
	f->conns++;
	while (unit_scan_answer(c, 0) == 1)
		;
	close(c);
	return NULL;
}

static void test_sync_idle_connection_closed(void **state)
{
	struct sockaddr_un addr;
	socklen_t alen;
	struct scan_request a = unit_scan_small_request(), b = unit_scan_small_request();
	struct scan_result res;
	struct fake f = { 0 };
	pthread_t t;
	char err[256], x;
	(void)state;

	f.l = unit_scan_listen(&addr, &alen);
	assert_int_equal(pipe(f.go), 0);
	assert_int_equal(pipe(f.done), 0);
	assert_int_equal(pthread_create(&t, NULL, fake_scanner, &f), 0);

	struct scansync *ss = scansync_new();
	scansync_set_address(ss, &addr, alen);
	assert_int_equal(scansync_scan(ss, &a, -1, 5000, &res, err, sizeof(err)), 0);
	assert_int_equal(res.action, MW_TAG);
	scan_result_free(&res);

	/* the scanner goes away while the connection waits in the pool */
	assert_int_equal(write(f.go[1], "y", 1), 1);
	assert_int_equal(read(f.done[0], &x, 1), 1);
	int r = scansync_scan(ss, &b, -1, 5000, &res, err, sizeof(err));
	if (r != 0)
		print_error("scansync_scan: %d %s\n", r, err);
	assert_int_equal(r, 0);                /* not -1: no fail action */
	assert_int_equal(res.action, MW_TAG);
	scan_result_free(&res);
	assert_int_equal(f.conns, 2);

	scansync_free(ss);                     /* the pooled one closes: the thread ends */
	assert_int_equal(pthread_join(t, NULL), 0);
	unit_scan_free_small(&a);
	unit_scan_free_small(&b);
	close(f.l);
	close(f.go[0]);
	close(f.go[1]);
	close(f.done[0]);
	close(f.done[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule),
		cmocka_unit_test_setup_teardown(test_client_idle_connection_closed,
		    unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_client_busy_connection_closed,
		    unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_sync_idle_connection_closed,
		    unit_tmpdir_setup, unit_tmpdir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
