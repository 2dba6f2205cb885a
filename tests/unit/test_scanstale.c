/* test_scanstale.c - whether the scanner still starts a request
 * (filters/scanstale.h): the front end's send time goes over the wire,
 * a request past its front end's wait is stale, one whose front end
 * closed the connection is stale, and the scanner's own shutdown of a
 * connection's reading (at stop, scans in flight still answered) is not
 * a front end's close; what the scanner looks at instead of a poll()
 * (epoll's hangup report, a check still fresh) holds.  The scanner's use
 * of it is covered end to end by tests/functional/test_scanner_stale.py. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/scanstale.h"
#include "proxy/monotime.h"
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"

#include "unit_scan.h"

/* req_init - unit_scan_fill_request's, waited for 1000 ms */
static void req_init(struct scan_request *r)
{
	unit_scan_fill_request(r);
	r->timeout_ms = 1000;
}

/* sent_ms goes over the binary wire; a time no clock shows is unknown */
static void test_sent_ms_on_the_wire(void **state)
{
	struct scan_request r, back;
	struct sbuf b;
	size_t used;

	(void)state;
	req_init(&r);
	r.sent_ms = 123456789;
	sbuf_init(&b, (size_t)-1);
	scan_request_encode(&b, &r);
	assert_int_equal(scan_request_decode(b.data, b.len, &back, &used), 0);
	assert_int_equal(used, b.len);
	assert_true(back.sent_ms == 123456789);
	assert_int_equal(back.timeout_ms, 1000);
	scan_request_free(&back);
	/* all ones: no time of ours */
	memset(b.data + b.len - 8, 0xff, 8);
	assert_int_equal(scan_request_decode(b.data, b.len, &back, &used), 0);
	assert_true(back.sent_ms == 0);
	scan_request_free(&back);
	/* an encoding without it (before session 20's fix) is refused whole,
	 * not read with the field taken from what follows */
	assert_int_equal(scan_request_decode(b.data, b.len - 8, &back, &used), -1);
	sbuf_free(&b);
	scan_request_free(&r);
}

static void test_stale_by_time(void **state)
{
	struct scan_request r;
	char why[200];
	long long now = 1000000;

	(void)state;
	req_init(&r);
	/* unknown send time (a tool, JSON): never stale by time */
	assert_int_equal(scanstale_check(&r, 30000, now, 0, why, sizeof(why)), 0);
	assert_true(scanstale_start_ms(&r, now) == now);
	r.received_ms = now - 5;
	assert_true(scanstale_start_ms(&r, now) == now - 5);
	/* within the front end's wait */
	r.sent_ms = now - 999;
	assert_int_equal(scanstale_check(&r, 30000, now, 0, why, sizeof(why)), 0);
	assert_true(scanstale_start_ms(&r, now) == now - 999);
	/* at its end and past it */
	r.sent_ms = now - 1000;
	assert_int_equal(scanstale_check(&r, 30000, now, 0, why, sizeof(why)), 1);
	r.sent_ms = now - 3500;
	assert_int_equal(scanstale_check(&r, 30000, now, 0, why, sizeof(why)), 1);
	assert_non_null(strstr(why, "wait of 1000 ms ended 2500 ms before"));
	/* timeout_ms 0: the scanner's scan_timeout */
	r.timeout_ms = 0;
	assert_int_equal(scanstale_check(&r, 30000, now, 0, why, sizeof(why)), 0);
	assert_int_equal(scanstale_check(&r, 3000, now, 0, why, sizeof(why)), 1);
	/* a send time after now is no time of our clock: not believed */
	r.timeout_ms = 1000;
	r.sent_ms = now + 60000;
	assert_int_equal(scanstale_check(&r, 30000, now + 120000, 0, why, sizeof(why)), 1);
	assert_int_equal(scanstale_check(&r, 30000, now, 0, why, sizeof(why)), 0);
	assert_true(scanstale_start_ms(&r, now) == now - 5);
	/* a front end that closed: stale whatever the time */
	r.sent_ms = 0;
	assert_int_equal(scanstale_check(&r, 30000, now, 1, why, sizeof(why)), 1);
	assert_non_null(strstr(why, "closed the connection"));
	scan_request_free(&r);
}

/* the peer's close is seen with a request still queued; our own
 * shutdown(SHUT_RD) (the scanner's at stop) and the peer's half-close
 * are not a close */
static void test_peer_closed(void **state)
{
	int sv[2];
	char buf[8];

	(void)state;
	unit_scan_pair(sv);
	assert_int_equal(scanstale_peer_closed(sv[0]), 0);
	assert_int_equal(write(sv[1], "req", 3), 3);
	assert_int_equal(shutdown(sv[0], SHUT_RD), 0);
	assert_int_equal(scanstale_peer_closed(sv[0]), 0);
	assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
	assert_int_equal(scanstale_peer_closed(sv[0]), 0);
	close(sv[0]);
	close(sv[1]);

	unit_scan_pair(sv);
	assert_int_equal(write(sv[1], "req", 3), 3);
	close(sv[1]);
	assert_int_equal(scanstale_peer_closed(sv[0]), 1);
	/* what was sent before the close is still there to read */
	assert_int_equal(read(sv[0], buf, sizeof(buf)), 3);
	close(sv[0]);
}

/* a connection seen open stands for SCANSTALE_PEER_FRESH_US, no more;
 * an unknown or future time of seeing never stands */
static void test_peer_fresh(void **state)
{
	long long now = scanstale_now_us();

	(void)state;
	assert_true(now > 0);
	assert_true(scanstale_now_us() >= now);
	assert_int_equal(scanstale_peer_fresh(now, now), 1);
	assert_int_equal(scanstale_peer_fresh(now - SCANSTALE_PEER_FRESH_US + 1, now), 1);
	assert_int_equal(scanstale_peer_fresh(now - SCANSTALE_PEER_FRESH_US, now), 0);
	assert_int_equal(scanstale_peer_fresh(now - 5000000, now), 0);
	assert_int_equal(scanstale_peer_fresh(0, now), 0);
	assert_int_equal(scanstale_peer_fresh(now + 1, now), 0);
}

/* what the scanner takes instead of a poll() when it reads a request:
 * the hangup that its edge-triggered epoll set reports with the
 * readiness, also for a connection closed before it joined the set (a
 * front end that sent and closed while no scanner ran); a connection
 * only shut down for reading by us reports none */
static void test_epoll_reports_hangup(void **state)
{
	struct epoll_event ev, out[2];
	int sv[2], ep;

	(void)state;
	ep = epoll_create1(0);
	assert_true(ep >= 0);
	unit_scan_pair(sv);
	assert_int_equal(write(sv[1], "req", 3), 3);
	close(sv[1]);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLET;
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev), 0);
	assert_int_equal(epoll_wait(ep, out, 2, 1000), 1);
	assert_true(out[0].events & EPOLLIN);
	assert_true(out[0].events & EPOLLHUP);
	close(sv[0]);

	unit_scan_pair(sv);
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev), 0);
	assert_int_equal(write(sv[1], "req", 3), 3);
	assert_int_equal(epoll_wait(ep, out, 2, 1000), 1);
	assert_true(out[0].events & EPOLLIN);
	assert_false(out[0].events & EPOLLHUP);
	/* the close after: a new edge, with the hangup */
	close(sv[1]);
	assert_int_equal(epoll_wait(ep, out, 2, 1000), 1);
	assert_true(out[0].events & EPOLLHUP);
	close(sv[0]);
	close(ep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sent_ms_on_the_wire),
		cmocka_unit_test(test_stale_by_time),
		cmocka_unit_test(test_peer_closed),
		cmocka_unit_test(test_peer_fresh),
		cmocka_unit_test(test_epoll_reports_hangup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
