/* test_scanbig.c - a scan request whose envelope does not fit one scanner
 * packet (SCANPROTO_MAX_PACKET, 256 KiB): 1000 recipients of ~300 octets,
 * within the default max_recipients.  It reaches the scanner whole (the
 * encoding in a sealed memfd of its own), with the message as a
 * descriptor or inline; and a request that cannot be sent for a reason of
 * its own fails alone: the other scans pending on the proxy's scanner
 * connection go on (scanclient), and the milter's blocking client says so
 * apart from "scanner unavailable" (scansync -3), so that
 * milter_default_action = accept never passes it unscanned.
 *
 * A request's own failure is made here by leaving no descriptor free for
 * its envelope's memfd (RLIMIT_NOFILE at the lowest free one). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "proxy/sbuf.h"
#include "proxy/scanclient.h"
#include "proxy/scanproto.h"
#include "proxy/scansync.h"
#include "proxy/spool.h"

#include "unit_scan.h"
#include "unit_tmpdir.h"

#define NBIG 1000

/* big_rcpt - the i-th of NBIG recipients of 300 octets: 230 r's, the
 * number, 53 d's of domain (a legal path, of the kind upstreams accept) */
static char *big_rcpt(int i)
{
	char *s = malloc(301), num[16];

	assert_non_null(s);
	memset(s, 'r', 230);
	snprintf(num, sizeof(num), "%04d@", i % 10000);
	memcpy(s + 230, num, 5);
	memset(s + 235, 'd', 53);
	memcpy(s + 288, ".example.net", 13);
	assert_int_equal(strlen(s), 300);
	return s;
}

/* big_request - fill_request's, with NBIG long recipients */
static void big_request(struct scan_request *r)
{
	unit_scan_fill_request(r);
	for (size_t i = 0; i < r->nrcpts; i++)
		free(r->rcpts[i]);
	free(r->rcpts);
	r->rcpts = calloc(NBIG, sizeof(char *));
	assert_non_null(r->rcpts);
	for (int i = 0; i < NBIG; i++)
		r->rcpts[i] = big_rcpt(i);
	r->nrcpts = NBIG;
}

static void assert_same_envelope(const struct scan_request *a, const struct scan_request *b)
{
	assert_true(a->id == b->id);
	assert_string_equal(a->mail_from, b->mail_from);
	assert_int_equal(a->nrcpts, b->nrcpts);
	for (size_t i = 0; i < a->nrcpts; i++)
		assert_string_equal(a->rcpts[i], b->rcpts[i]);
	assert_int_equal(a->stage, b->stage);
}

/* the whole envelope arrives, the message with it */
static void test_big_envelope_roundtrip(void **state)
{
	struct scan_request a, b;
	struct sbuf enc;
	unsigned char *msg;
	char got[8] = "";
	int sv[2], fd, mfd;
	(void)state;

	big_request(&a);
	sbuf_init(&enc, SIZE_MAX);
	scan_request_encode(&enc, &a);
	assert_true(enc.len > SCANPROTO_MAX_PACKET);   /* the case at hand */
	sbuf_free(&enc);
	unit_scan_pair(sv);

	/* the message as a descriptor */
	mfd = spool_sealed_copy("abc", 3);
	assert_true(mfd >= 0);
	assert_int_equal(scanproto_send_request(sv[0], &a, mfd), 0);
	close(mfd);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), 1);
	assert_same_envelope(&a, &b);
	assert_null(msg);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, got, 3, 0), 3);
	assert_memory_equal(got, "abc", 3);
	close(fd);
	scan_request_free(&b);

	/* a small message meant to go inline: as a descriptor then */
	a.msg = (const unsigned char *)"Subject: x\r\n\r\nbody\r\n";
	a.msg_len = strlen((const char *)a.msg);
	a.msg_inline = 1;
	assert_int_equal(scanproto_send_request(sv[0], &a, -1), 0);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), 1);
	assert_same_envelope(&a, &b);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, got, 7, 0), 7);
	assert_memory_equal(got, "Subject", 7);
	close(fd);
	free(msg);
	scan_request_free(&b);
	a.msg = NULL;
	a.msg_inline = 0;

	/* an envelope request: no message */
	a.stage = SCAN_ENVELOPE;
	assert_int_equal(scanproto_send_request(sv[0], &a, -1), 0);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), 1);
	assert_same_envelope(&a, &b);
	assert_int_equal(fd, -1);
	assert_null(msg);
	scan_request_free(&b);

	scan_request_free(&a);
	close(sv[0]);
	close(sv[1]);
}

/* --- no descriptor left ------------------------------------------------------ */

static struct rlimit saved_nofile;

/* fds_exhaust - no new descriptor from here on (the ones open stay) */
static void fds_exhaust(void)
{
	struct rlimit rl;
	int lowest = dup(0);

	assert_true(lowest >= 0);
	close(lowest);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved_nofile), 0);
	rl = saved_nofile;
	rl.rlim_cur = (rlim_t)lowest;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void fds_restore(void)
{
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved_nofile), 0);
}

/* --- the proxy's asynchronous client ------------------------------------------ */

/* answer_all - the fake scanner answers every request waiting on c; how
 * many */
static int answer_all(int c)
{
	int n = 0;

	while (unit_scan_answer(c, MSG_DONTWAIT) == 1)
		n++;
	return n;
}

/* a request sent at once that cannot go fails alone */
static void test_client_failure_is_the_requests_own(void **state)
{
	struct event_base *base = event_base_new();
	struct sockaddr_un addr;
	socklen_t alen;
	struct scan_request a = unit_scan_small_request(), big;
	struct unit_scan_got got_a = { 0 }, got_b = { 0 };
	int l = unit_scan_listen(&addr, &alen), c, mfd;
	(void)state;

	struct scanclient *sc = scanclient_new(base, &addr, alen);
	assert_true(scanclient_submit(sc, &a, -1, 10000, unit_scan_on_done, &got_a, NULL) != 0);
	assert_true((c = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0);

	big_request(&big);
	mfd = spool_sealed_copy("abc", 3);
	assert_true(mfd >= 0);
	fds_exhaust();
	struct scan_unsent un;
	uint64_t id = scanclient_submit(sc, &big, mfd, 10000, unit_scan_on_done, &got_b, &un);
	fds_restore();
	assert_true(id == 0);              /* its session answers 451 itself */
	/* and says what happened, not "scanner unavailable" */
	assert_int_equal(un.request_fault, 1);
	assert_non_null(strstr(un.why, "scan request not sent: no memory or descriptor for its memfd"));
	assert_int_equal(got_b.done, 0);
	/* the other scan on the connection is still waiting for its answer */
	assert_int_equal(got_a.done, 0);
	assert_int_equal(scanclient_pending(sc), 1);
	assert_int_equal(answer_all(c), 1);
	unit_scan_loop_until(base, &got_a);
	assert_int_equal(got_a.done, 1);
	assert_int_equal(got_a.action, MW_TAG);

	/* and the next one goes on the same connection, big as it is */
	got_b.done = 0;
	assert_true(scanclient_submit(sc, &big, mfd, 10000, unit_scan_on_done, &got_b, NULL) != 0);
	for (int i = 0; i < 200 && !got_b.done; i++) {
		answer_all(c);
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(5000);
	}
	assert_int_equal(got_b.done, 1);
	assert_int_equal(got_b.action, MW_TAG);

	close(mfd);
	scan_request_free(&big);
	unit_scan_free_small(&a);
	scanclient_free(sc);
	event_base_free(base);
	close(c);
	close(l);
}

/* a request that waited in the queue (the socket full) and then cannot
 * go fails alone, later, from the loop; those queued around it are sent */
static void test_client_queued_failure_is_the_requests_own(void **state)
{
	enum { N = 64 };
	struct event_base *base = event_base_new();
	struct sockaddr_un addr;
	socklen_t alen;
	struct scan_request a[N], big;
	struct unit_scan_got got[N], got_b = { 0 };
	int l = unit_scan_listen(&addr, &alen), c = -1, mfd, answered = 0;
	(void)state;

	/* inline messages of 60,000 bytes: the fake scanner reads nothing
	 * yet, so the socket's buffer fills (some hundred KiB) and the rest
	 * waits in the client's queue, the big request among them */
	static char body[60000];
	memset(body, 'x', sizeof(body));
	memset(got, 0, sizeof(got));
	struct scanclient *sc = scanclient_new(base, &addr, alen);
	for (int i = 0; i < N / 2; i++) {
		a[i] = unit_scan_small_request();
		a[i].msg = (const unsigned char *)body;
		a[i].msg_len = sizeof(body);
		assert_true(scanclient_submit(sc, &a[i], -1, 10000, unit_scan_on_done, &got[i], NULL) != 0);
	}
	big_request(&big);
	mfd = spool_sealed_copy("abc", 3);
	assert_true(mfd >= 0);
	assert_true(scanclient_submit(sc, &big, mfd, 10000, unit_scan_on_done, &got_b, NULL) != 0);
	for (int i = N / 2; i < N; i++) {
		a[i] = unit_scan_small_request();
		assert_true(scanclient_submit(sc, &a[i], -1, 10000, unit_scan_on_done, &got[i], NULL) != 0);
	}
	assert_true((c = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0);
	assert_int_equal(got_b.done, 0);

	fds_exhaust();
	for (int i = 0; i < 400; i++) {
		int all = got_b.done;

		for (int k = 0; k < N; k++)
			all &= got[k].done;
		if (all)
			break;
		answered += answer_all(c);
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(2000);
	}
	fds_restore();
	assert_int_equal(answered, N);
	for (int k = 0; k < N; k++) {
		assert_int_equal(got[k].done, 1);
		assert_int_equal(got[k].action, MW_TAG);
	}
	assert_int_equal(got_b.done, 1);
	assert_int_equal(got_b.action, MW_TEMPFAIL);
	assert_non_null(strstr(got_b.error, "not sent"));
	assert_int_equal(scanclient_pending(sc), 0);

	close(mfd);
	scan_request_free(&big);
	for (int k = 0; k < N; k++) {
		a[k].msg = NULL;
		scan_request_free(&a[k]);
	}
	scanclient_free(sc);
	event_base_free(base);
	close(c);
	close(l);
}

/* --- the milter's blocking client --------------------------------------------- */

/* the fake scanner's process: ended by the teardown, whatever failed */
static pid_t child = -1;

static int teardown_child(void **state)
{
	if (child > 0) {
		kill(child, SIGKILL);
		(void)waitpid(child, NULL, 0);
		child = -1;
	}
	return unit_tmpdir_teardown(state);
}

/* a request that cannot go is -3, not -1 ("scanner unavailable") */
static void test_sync_failure_is_not_scanner_down(void **state)
{
	struct sockaddr_un addr;
	socklen_t alen;
	struct scan_request a = unit_scan_small_request(), big;
	struct scan_result res;
	char err[256];
	int l = unit_scan_listen(&addr, &alen), mfd;
	(void)state;

	struct scansync *ss = scansync_new();
	scansync_set_address(ss, &addr, alen);
	big_request(&big);
	mfd = spool_sealed_copy("abc", 3);
	assert_true(mfd >= 0);
	/* a fake scanner in a child: it answers every request (unit_scan_answer),
	 * one connection after the other */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid > 0)
		child = pid;
	if (pid == 0) {
		int c = -1;

		for (;;) {
			int r;

			if (c < 0 && (c = accept(l, NULL, NULL)) < 0)
				_exit(1);
			if ((r = unit_scan_answer(c, 0)) < 0)
				_exit(1);
			if (r == 0) {
				close(c);
				c = -1;
			}
		}
	}
	/* a first scan leaves the connection idle in scansync: the request's
	 * own memfd is then the only descriptor the big one needs */
	struct scan_result filled;
	assert_int_equal(scansync_scan(ss, &a, -1, 5000, &res, err, sizeof(err)), 0);
	unit_scan_fill_result(&filled);
	res.id = filled.id;
	unit_scan_assert_filled(&res, &filled);
	scan_result_free(&filled);
	scan_result_free(&res);
	fds_exhaust();
	int r = scansync_scan(ss, &big, mfd, 5000, &res, err, sizeof(err));
	fds_restore();
	assert_int_equal(r, -3);
	assert_non_null(strstr(err, "not sent"));
	/* and with a descriptor to spare, it is scanned */
	assert_int_equal(scansync_scan(ss, &big, mfd, 5000, &res, err, sizeof(err)), 0);
	assert_int_equal(res.action, MW_TAG);
	scan_result_free(&res);

	scansync_free(ss);
	close(mfd);
	scan_request_free(&big);
	unit_scan_free_small(&a);
	close(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_big_envelope_roundtrip),
		cmocka_unit_test_setup_teardown(test_client_failure_is_the_requests_own,
		    unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_client_queued_failure_is_the_requests_own,
		    unit_tmpdir_setup, unit_tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_sync_failure_is_not_scanner_down,
		    unit_tmpdir_setup, teardown_child),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
