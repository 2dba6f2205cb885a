/* unit_scan.h - what the scanner's unit tests share (test_scanproto.c,
 * test_scanwire.c: the JSON form and the binary wire; test_scanconn.c,
 * test_scanbig.c: the front ends' clients; test_scanstale.c): a request
 * and a result with every field set to something awkward, the
 * SOCK_SEQPACKET socketpair the transport runs over, and a fake scanner
 * (a socket in unit_dir, answers of that result).  Each of these tests
 * carried its own copy of the fake scanner's set-up until session 21.
 * Linked into every unit test as unit_tmpdir.o is (see the Makefile). */
#ifndef MW_UNIT_SCAN_H
#define MW_UNIT_SCAN_H

#include <sys/socket.h>
#include <sys/un.h>

#include "proxy/scanproto.h"

struct event_base;

/* unit_scan_fill_request - every field set: the helo every byte 1..255, a
 * quote and a backslash in the sender, a recipient of invalid UTF-8 and
 * an empty one, the largest id, size and timeout.  No message (msg NULL):
 * scan_request_free frees it all. */
void unit_scan_fill_request(struct scan_request *r);

/* unit_scan_small_request - unit_scan_fill_request's, with a short
 * message inline (a string literal: unit_scan_free_small frees it) */
struct scan_request unit_scan_small_request(void);
void unit_scan_free_small(struct scan_request *r);

/* unit_scan_fill_result - a result (tag, id 42) with every kind of symbol
 * and header edit; scan_result_free frees it */
void unit_scan_fill_result(struct scan_result *r);

/* unit_scan_assert_filled - b, decoded from the encoding of a (from
 * unit_scan_fill_result), has every field of a (cmocka asserts) */
void unit_scan_assert_filled(const struct scan_result *b, const struct scan_result *a);

/* unit_scan_pair - a connected SOCK_SEQPACKET socketpair, as between a
 * front end and the scanner */
void unit_scan_pair(int sv[2]);

/* unit_scan_listen - the fake scanner's listening socket, unit_dir's
 * scan.sock (a test with unit_tmpdir_setup); its address into addr/len */
int unit_scan_listen(struct sockaddr_un *addr, socklen_t *len);

/* unit_scan_answer - the fake scanner answers the next request on c
 * (flags: 0 waits for it, MSG_DONTWAIT does not) with
 * unit_scan_fill_result's, the request's id.  1 answered; 0 nothing to
 * answer (EOF, or none waiting); -1 the answer not sent.  No cmocka
 * assert: callable from a fake scanner's thread or child. */
int unit_scan_answer(int c, int flags);

/* what a scanclient_submit callback got: unit_scan_on_done counts the
 * answers and keeps the last one's action and error */
struct unit_scan_got {
	int done;
	enum mw_action action;
	char error[256];
};
void unit_scan_on_done(void *arg, struct scan_result *res);

/* unit_scan_loop_until - run base's loop until got has an answer, 2 s at
 * most (the caller asserts got->done) */
void unit_scan_loop_until(struct event_base *base, const struct unit_scan_got *got);

#endif
