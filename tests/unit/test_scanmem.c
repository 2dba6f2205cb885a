/* test_scanmem.c - the scanner's memory budget for big requests
 * (filters/scanmem.h) and the receiver's side of it (scanproto.h
 * scanproto_recv_request_admit): a big request is asked about before
 * anything of its size is allocated, and one refused is left unread, its
 * id and session id enough to answer it; what a request decoded holds
 * stays within what the budget counts for it.
 *
 * Until session 19 every packet naming a memfd was read into a copy and a
 * decoded request, held until scanned: one 16 MiB memfd named by 64
 * packets cost the scanner 1 GiB (tests/functional/test_big_envelope_memory.py). */
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/scanmem.h"
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"
#include "proxy/spool.h"

#include "unit_scan.h"

static const dev_t dev = 7;

/* fill_request - an envelope of three recipients */
static void fill_request(struct scan_request *r)
{
	memset(r, 0, sizeof(*r));
	r->id = UINT64_MAX - 1;
	strcpy(r->session_id, "0123456789abcdef");
	r->listener = strdup("in");
	r->client_ip = strdup("192.0.2.1");
	r->client_name = strdup("");
	r->helo = strdup("helo.example");
	r->mail_from = strdup("a@example.org");
	r->mail_params = strdup("");
	r->nrcpts = 3;
	r->rcpts = calloc(3, sizeof(char *));
	assert_non_null(r->rcpts);
	r->rcpts[0] = strdup("x@example.org");
	r->rcpts[1] = strdup("y@example.org");
	r->rcpts[2] = strdup("");
	r->auth_user = strdup("");
	r->tls = strdup("");
}

/* a connection's share, the scanner's total, and both given back */
static void test_budget_limits(void **state)
{
	struct scanmem m;
	struct scanmem_hold *a1, *a2, *b1, *c1;
	enum scanmem_refusal why;
	size_t ca = 0, cb = 0, cc = 0;
	(void)state;

	scanmem_init(&m, 100, 40);
	assert_non_null(a1 = scanmem_take(&m, &ca, 30, dev, 1, &why));
	assert_int_equal(why, SCANMEM_OK);
	assert_null(scanmem_take(&m, &ca, 20, dev, 2, &why));
	assert_int_equal(why, SCANMEM_CONN);
	assert_non_null(a2 = scanmem_take(&m, &ca, 10, dev, 3, &why));
	assert_int_equal(ca, 40);
	assert_non_null(b1 = scanmem_take(&m, &cb, 40, dev, 4, &why));
	assert_non_null(c1 = scanmem_take(&m, &cc, 20, dev, 5, &why));
	assert_int_equal(scanmem_held(&m), 100);
	/* connection c is within its share, the scanner is not */
	assert_null(scanmem_take(&m, &cc, 1, dev, 6, &why));
	assert_int_equal(why, SCANMEM_TOTAL);
	/* sizes that would overflow a sum are refused, not wrapped */
	assert_null(scanmem_take(&m, &cc, SIZE_MAX, dev, 6, &why));
	assert_int_equal(why, SCANMEM_CONN);
	scanmem_give(&m, a1);
	assert_int_equal(ca, 10);
	assert_int_equal(scanmem_held(&m), 70);
	assert_non_null(a1 = scanmem_take(&m, &cc, 20, dev, 6, &why));
	assert_int_equal(cc, 40);
	scanmem_give(&m, a1);
	scanmem_give(&m, a2);
	scanmem_give(&m, b1);
	scanmem_give(&m, c1);
	scanmem_give(&m, NULL);
	assert_int_equal(scanmem_held(&m), 0);
	assert_int_equal(ca + cb + cc, 0);
	scanmem_destroy(&m);
}

/* a memfd held is not taken again, on any connection, until given back */
static void test_same_memfd(void **state)
{
	struct scanmem m;
	struct scanmem_hold *h, *o;
	enum scanmem_refusal why;
	size_t ca = 0, cb = 0;
	(void)state;

	scanmem_init(&m, 1000, 1000);
	assert_non_null(h = scanmem_take(&m, &ca, 10, dev, 42, &why));
	assert_null(scanmem_take(&m, &ca, 10, dev, 42, &why));
	assert_int_equal(why, SCANMEM_SAME);
	assert_null(scanmem_take(&m, &cb, 10, dev, 42, &why));
	assert_int_equal(why, SCANMEM_SAME);
	assert_non_null(o = scanmem_take(&m, &cb, 10, dev + 1, 42, &why));	/* another device */
	scanmem_give(&m, h);
	assert_non_null(h = scanmem_take(&m, &cb, 10, dev, 42, &why));
	scanmem_give(&m, h);
	scanmem_give(&m, o);
	scanmem_destroy(&m);
}

/* once decoded a request holds less: what it gives back is free */
static void test_shrink(void **state)
{
	struct scanmem m;
	struct scanmem_hold *h;
	enum scanmem_refusal why;
	size_t c = 0;
	(void)state;

	scanmem_init(&m, 100, 100);
	assert_non_null(h = scanmem_take(&m, &c, 80, dev, 1, &why));
	scanmem_shrink(&m, h, 30);
	assert_int_equal(c, 30);
	assert_int_equal(scanmem_held(&m), 30);
	scanmem_shrink(&m, h, 50);		/* never grows */
	assert_int_equal(scanmem_held(&m), 30);
	scanmem_give(&m, h);
	assert_int_equal(c, 0);
	scanmem_destroy(&m);
}

static int nfds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

struct asked {
	int answer;
	int calls;
	uint64_t n;
	struct stat st;
};

static int admit(void *arg, uint64_t n, const struct stat *st)
{
	struct asked *a = arg;

	a->calls++;
	a->n = n;
	a->st = *st;
	return a->answer;
}

/* big_packet - enc[0..len) sent as a big request of an envelope stage */
static void big_packet(int sock, const void *enc, size_t len)
{
	int efd = scanproto_envelope_fd(enc, len);

	assert_true(efd >= 0);
	assert_int_equal(scanproto_send_big(sock, efd, len, -1), 0);
	close(efd);
}

/* a request refused is not read: its id and session id come back, its
 * descriptors are closed; one admitted is read whole; a small request is
 * never asked about */
static void test_admit(void **state)
{
	struct scan_request a, b;
	struct asked asked = { 0, 0, 0, { 0 } };
	struct sbuf enc;
	unsigned char *msg;
	int sv[2], fd, before;
	(void)state;

	fill_request(&a);
	a.stage = SCAN_ENVELOPE;
	sbuf_init(&enc, SIZE_MAX);
	scan_request_encode(&enc, &a);
	unit_scan_pair(sv);
	before = nfds();

	asked.answer = -1;
	big_packet(sv[0], enc.data, enc.len);
	assert_int_equal(scanproto_recv_request_admit(sv[1], &b, &fd, &msg, 0, admit, &asked), 2);
	assert_int_equal(asked.calls, 1);
	assert_true(asked.n == enc.len);
	assert_true((uint64_t)asked.st.st_size == enc.len);
	assert_true(b.id == a.id);
	assert_string_equal(b.session_id, a.session_id);
	assert_null(b.listener);
	assert_null(b.rcpts);
	assert_int_equal(fd, -1);
	assert_null(msg);
	assert_int_equal(nfds(), before);

	asked.answer = 0;
	big_packet(sv[0], enc.data, enc.len);
	assert_int_equal(scanproto_recv_request_admit(sv[1], &b, &fd, &msg, 0, admit, &asked), 1);
	assert_int_equal(asked.calls, 2);
	assert_int_equal(b.nrcpts, a.nrcpts);
	assert_string_equal(b.rcpts[0], a.rcpts[0]);
	scan_request_free(&b);
	assert_int_equal(nfds(), before);

	/* one packet: not asked */
	assert_int_equal(scanproto_send_request(sv[0], &a, -1), 0);
	assert_int_equal(scanproto_recv_request_admit(sv[1], &b, &fd, &msg, 0, admit, &asked), 1);
	assert_int_equal(asked.calls, 2);
	scan_request_free(&b);

	/* refused, and not even the start of a request: malformed */
	asked.answer = -1;
	big_packet(sv[0], "MWqXgarbage", 11);
	errno = 0;
	assert_int_equal(scanproto_recv_request_admit(sv[1], &b, &fd, &msg, 0, admit, &asked), -1);
	assert_int_equal(errno, EBADMSG);
	assert_int_equal(nfds(), before);

	sbuf_free(&enc);
	scan_request_free(&a);
	close(sv[0]);
	close(sv[1]);
}

static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* decoded_within - decoding r's encoding takes no more than
 * scan_request_mem says it holds, nor reading it more than
 * scanproto_big_read_cost says */
static void decoded_within(const struct scan_request *r)
{
	struct scan_request b;
	struct sbuf enc;
	size_t used, before, took;

	sbuf_init(&enc, SIZE_MAX);
	scan_request_encode(&enc, r);
	before = heap_used();
	assert_int_equal(scan_request_decode(enc.data, enc.len, &b, &used), 0);
	took = heap_used() - before;
	print_message("%zu recipients: %zu bytes encoded, %zu decoded; counted %zu held, %zu to read\n",
	    r->nrcpts, enc.len, took, scan_request_mem(&b, enc.len),
	    scanproto_big_read_cost(enc.len));
	assert_true(took + sizeof(b) <= scan_request_mem(&b, enc.len));
	assert_true(enc.len + scan_request_mem(&b, enc.len) <= scanproto_big_read_cost(enc.len));
	scan_request_free(&b);
	sbuf_free(&enc);
}

/* the most recipients the decoder takes, empty, each with DSN parameters:
 * the most decoded memory per byte of encoding; and 1000 of 300 octets */
static void test_decoded_size_is_counted(void **state)
{
	struct scan_request r;
	size_t i, n = 100000;
	(void)state;

	fill_request(&r);
	for (i = 0; i < r.nrcpts; i++)
		free(r.rcpts[i]);
	free(r.rcpts);
	r.rcpts = calloc(n, sizeof(char *));
	r.rcpt_dsn = calloc(n, sizeof(char *));
	assert_non_null(r.rcpts);
	assert_non_null(r.rcpt_dsn);
	for (i = 0; i < n; i++) {
		r.rcpts[i] = strdup("");
		r.rcpt_dsn[i] = strdup("");
	}
	r.nrcpts = n;
	decoded_within(&r);
	for (i = 0; i < n; i++) {
		free(r.rcpts[i]);
		free(r.rcpt_dsn[i]);
	}
	free(r.rcpt_dsn);
	r.rcpt_dsn = NULL;
	n = 1000;
	for (i = 0; i < n; i++) {
		r.rcpts[i] = malloc(301);
		assert_non_null(r.rcpts[i]);
		memset(r.rcpts[i], 'r', 300);
		r.rcpts[i][300] = '\0';
	}
	r.nrcpts = n;
	decoded_within(&r);
	scan_request_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budget_limits),
		cmocka_unit_test(test_same_memfd),
		cmocka_unit_test(test_shrink),
		cmocka_unit_test(test_admit),
		cmocka_unit_test(test_decoded_size_is_counted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
