/* test_scanwire.c - the binary wire format of the scanner socket: requests
 * and results survive a round trip (any byte but NUL in any string); every
 * truncation, every flipped byte and every out-of-range field is refused
 * without a crash or a leak; the packet transport carries the message as a
 * descriptor, inline, or not at all (envelope), and refuses the mixtures
 * and JSON text. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/sbuf.h"
#include "proxy/scanproto.h"
#include "proxy/spool.h"

#include "unit_scan.h"

static void test_request_roundtrip(void **state)
{
	struct scan_request a, b;
	struct sbuf enc;
	size_t used;
	(void)state;

	unit_scan_fill_request(&a);
	sbuf_init(&enc, 1 << 20);
	scan_request_encode(&enc, &a);
	sbuf_add(&enc, "MMESSAGE", 8);             /* an inline message follows */
	assert_int_equal(scan_request_decode(enc.data, enc.len, &b, &used), 0);
	assert_int_equal(used, enc.len - 8);
	assert_true(b.id == a.id);
	assert_string_equal(b.session_id, a.session_id);
	assert_string_equal(b.listener, "in");
	assert_int_equal(b.direction, MW_OUTBOUND);
	assert_string_equal(b.client_ip, a.client_ip);
	assert_int_equal(b.client_port, 65535);
	assert_string_equal(b.client_name, "");
	assert_memory_equal(b.helo, a.helo, 256);
	assert_string_equal(b.mail_from, a.mail_from);
	assert_string_equal(b.mail_params, a.mail_params);
	assert_int_equal(b.nrcpts, 3);
	for (int i = 0; i < 3; i++)
		assert_string_equal(b.rcpts[i], a.rcpts[i]);
	assert_true(b.size == 1ULL << 40);
	assert_string_equal(b.auth_user, "bob");
	assert_string_equal(b.tls, a.tls);
	assert_int_equal(b.stage, SCAN_MESSAGE);
	assert_int_equal(b.mta_quarantine, 0);
	assert_int_equal(b.timeout_ms, 86400000);
	scan_request_free(&b);

	a.stage = SCAN_ENVELOPE;
	a.direction = MW_INBOUND;
	a.mta_quarantine = 1;
	sbuf_reset(&enc);
	scan_request_encode(&enc, &a);
	assert_int_equal(scan_request_decode(enc.data, enc.len, &b, &used), 0);
	assert_int_equal(b.stage, SCAN_ENVELOPE);
	assert_int_equal(b.direction, MW_INBOUND);
	assert_int_equal(b.mta_quarantine, 1);
	scan_request_free(&b);
	scan_request_free(&a);
	sbuf_free(&enc);
}

static void test_result_roundtrip(void **state)
{
	struct scan_result a, b;
	struct sbuf enc;
	(void)state;

	unit_scan_fill_result(&a);
	sbuf_init(&enc, 1 << 20);
	scan_result_encode(&enc, &a);
	assert_int_equal(scan_result_decode(enc.data, enc.len, &b), 0);
	unit_scan_assert_filled(&b, &a);
	scan_result_free(&b);

	/* a non-finite score goes out as 0, as in the JSON form */
	a.score = NAN;
	sbuf_reset(&enc);
	scan_result_encode(&enc, &a);
	assert_int_equal(scan_result_decode(enc.data, enc.len, &b), 0);
	assert_true(b.score == 0.0);
	scan_result_free(&b);
	scan_result_free(&a);
	sbuf_free(&enc);
}

/* every prefix of a valid encoding is refused (a result must be whole; a
 * request cut inside its fields too), and so is every single-byte change
 * that the decoder can see; nothing crashes or leaks (ASan/LSan builds) */
static void test_truncated_and_flipped(void **state)
{
	struct scan_request rq, rq2;
	struct scan_result rs, rs2;
	struct sbuf a, b;
	size_t used, i;
	(void)state;

	unit_scan_fill_request(&rq);
	unit_scan_fill_result(&rs);
	sbuf_init(&a, 1 << 20);
	sbuf_init(&b, 1 << 20);
	scan_request_encode(&a, &rq);
	scan_result_encode(&b, &rs);
	for (i = 0; i < a.len; i++)
		assert_int_equal(scan_request_decode(a.data, i, &rq2, &used), -1);
	for (i = 0; i < b.len; i++)
		assert_int_equal(scan_result_decode(b.data, i, &rs2), -1);
	/* trailing bytes after a result */
	sbuf_addc(&b, 'x');
	assert_int_equal(scan_result_decode(b.data, b.len, &rs2), -1);
	b.len--;
	for (i = 0; i < b.len; i++) {
		for (unsigned v = 0; v < 256; v += 51) {
			char saved = b.data[i];
			b.data[i] = (char)v;
			if (scan_result_decode(b.data, b.len, &rs2) == 0)
				scan_result_free(&rs2);
			b.data[i] = saved;
		}
	}
	for (i = 0; i < a.len; i++) {
		for (unsigned v = 0; v < 256; v += 51) {
			char saved = a.data[i];
			a.data[i] = (char)v;
			if (scan_request_decode(a.data, a.len, &rq2, &used) == 0)
				scan_request_free(&rq2);
			a.data[i] = saved;
		}
	}
	scan_request_free(&rq);
	scan_result_free(&rs);
	sbuf_free(&a);
	sbuf_free(&b);
}

/* encode_result_then - unit_scan_fill_result, apply change, encode; decode must
 * give want */
static void result_case(void (*change)(struct scan_result *), int want)
{
	struct scan_result a, b;
	struct sbuf enc;

	unit_scan_fill_result(&a);
	change(&a);
	sbuf_init(&enc, 1 << 20);
	scan_result_encode(&enc, &a);
	assert_int_equal(scan_result_decode(enc.data, enc.len, &b), want);
	if (want == 0)
		scan_result_free(&b);
	scan_result_free(&a);
	sbuf_free(&enc);
}

static void bad_action(struct scan_result *r)      { r->action = (enum mw_action)MW_ACTION_COUNT; }
static void bad_reply(struct scan_result *r)       { strcpy(r->reply, "550 x\r\nRCPT TO:<y>"); }
static void bad_symbol(struct scan_result *r)      { strcpy(r->symbols[1].name, "lower"); }
static void empty_symbol(struct scan_result *r)    { r->symbols[1].name[0] = '\0'; }
static void bad_filter(struct scan_result *r)      { strcpy(r->symbols[1].filter, "Up"); }
static void set_name(struct scan_result *r, const char *name)
{
	free(r->edits[2].name);
	r->edits[2].name = strdup(name);
}
static void bad_field(struct scan_result *r)       { set_name(r, "Sub ject"); }
static void colon_field(struct scan_result *r)     { set_name(r, "Subject:"); }
static void injected(struct scan_result *r)
{
	free(r->edits[1].value);
	r->edits[1].value = strdup("x\r\nBcc: victim@example.org");
}
static void bare_lf(struct scan_result *r)
{
	free(r->edits[1].value);
	r->edits[1].value = strdup("x\ny");
}
static void bad_index(struct scan_result *r)       { r->edits[3].index = 100001; }
static void bad_op(struct scan_result *r)          { r->edits[0].op = (enum header_edit_op)7; }
static void bad_qid(struct scan_result *r)         { strcpy(r->quarantine_id, "../etc"); }
static void dot_qid(struct scan_result *r)         { strcpy(r->quarantine_id, ".x"); }
static void bad_client_name(struct scan_result *r) { strcpy(r->client_name, "UPPER.example"); }
/* the front ends turn timed_out into audit keys and a log line */
static void bad_timed_out(struct scan_result *r)   { strcpy(r->timed_out, "spamd=\"x\"\n"); }
/* ... and dkim_sign into the audit record's dkim_sign */
static void bad_dkim_sign(struct scan_result *r)   { strcpy(r->dkim_sign, "signed=a.test/s\"x"); }
static void good_dkim_sign(struct scan_result *r)
{
	strcpy(r->dkim_sign, "signed=Sign.test/Sel_1 kept=a-b.test/s.2 nokey=x.test badfrom more=3");
}
static void long_reply(struct scan_result *r)      { memset(r->reply, 'a', sizeof(r->reply) - 1); }
static void fine(struct scan_result *r)            { (void)r; }

static void test_result_hostile(void **state)
{
	(void)state;
	result_case(fine, 0);
	result_case(long_reply, 0);       /* 511 bytes fit */
	result_case(bad_action, -1);
	result_case(bad_reply, -1);
	result_case(bad_symbol, -1);
	result_case(empty_symbol, -1);
	result_case(bad_filter, -1);
	result_case(bad_field, -1);
	result_case(colon_field, -1);
	result_case(injected, -1);
	result_case(bare_lf, -1);
	result_case(bad_index, -1);
	result_case(bad_op, -1);
	result_case(bad_qid, -1);
	result_case(dot_qid, -1);
	result_case(bad_client_name, -1);
	result_case(bad_timed_out, -1);
	result_case(bad_dkim_sign, -1);
	result_case(good_dkim_sign, 0);
}

/* hand-made request packets: fields out of range, NUL inside a string,
 * counts larger than the packet */
static void test_request_hostile(void **state)
{
	struct scan_request a, b;
	struct sbuf enc;
	size_t used, off;
	uint32_t v;
	(void)state;

	unit_scan_fill_request(&a);
	sbuf_init(&enc, 1 << 20);
	scan_request_encode(&enc, &a);
	/* client_port past 65535 */
	a.client_port = 65536;
	sbuf_reset(&enc);
	scan_request_encode(&enc, &a);
	assert_int_equal(scan_request_decode(enc.data, enc.len, &b, &used), -1);
	a.client_port = 25;
	/* a NUL inside the listener: its length says 2, the bytes "i\0" */
	sbuf_reset(&enc);
	scan_request_encode(&enc, &a);
	off = 4 + 8 + 4 + 16 + 4;                   /* magic, id, session_id */
	assert_memory_equal(enc.data + off, "in", 2);
	enc.data[off + 1] = '\0';
	assert_int_equal(scan_request_decode(enc.data, enc.len, &b, &used), -1);
	/* a string longer than its bound: session_id of 17 bytes */
	sbuf_reset(&enc);
	scan_request_encode(&enc, &a);
	v = 17;
	memcpy(enc.data + 12, &v, 4);
	assert_int_equal(scan_request_decode(enc.data, enc.len, &b, &used), -1);
	/* a string length past the packet */
	v = 0xffffffffu;
	memcpy(enc.data + 12, &v, 4);
	assert_int_equal(scan_request_decode(enc.data, enc.len, &b, &used), -1);
	/* the direction byte must be 0 or 1 */
	sbuf_reset(&enc);
	scan_request_encode(&enc, &a);
	off = 4 + 8 + 4 + 16 + 4 + 2;
	assert_true(enc.data[off] == 1);
	enc.data[off] = 2;
	assert_int_equal(scan_request_decode(enc.data, enc.len, &b, &used), -1);
	/* a recipient count the packet cannot hold: refused before any
	 * allocation for it */
	scan_request_free(&a);
	memset(&a, 0, sizeof(a));
	sbuf_reset(&enc);
	scan_request_encode(&enc, &a);
	/* magic, id, 7 empty strings and the direction/port in between */
	off = 4 + 8 + 4 + 4 + 1 + 4 + 4 + 4 + 4 + 4 + 4;
	v = 0;
	assert_memory_equal(enc.data + off, &v, 4);
	v = 100000;
	memcpy(enc.data + off, &v, 4);
	assert_int_equal(scan_request_decode(enc.data, enc.len, &b, &used), -1);
	/* the wrong magic (a result where a request is expected), and JSON */
	assert_int_equal(scan_request_decode("MWr1", 4, &b, &used), -1);
	assert_int_equal(scan_request_decode("{\"id\":1}", 8, &b, &used), -1);
	sbuf_free(&enc);
}

static void test_transport(void **state)
{
	struct scan_request a, b;
	struct scan_result rs, rs2;
	unsigned char *msg;
	int sv[2], fd, mfd;
	(void)state;

	unit_scan_pair(sv);
	unit_scan_fill_request(&a);
	/* inline */
	a.msg = (const unsigned char *)"Subject: x\r\n\r\nbody\r\n";
	a.msg_len = strlen((const char *)a.msg);
	a.msg_inline = 1;
	assert_int_equal(scanproto_send_request(sv[0], &a, -1), 0);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), 1);
	assert_int_equal(fd, -1);
	assert_non_null(msg);
	assert_int_equal(b.msg_inline, 1);
	assert_int_equal(b.msg_len, a.msg_len);
	assert_memory_equal(b.msg, a.msg, a.msg_len);
	assert_ptr_equal(b.msg, msg);
	scan_request_free(&b);
	free(msg);
	/* an empty inline message */
	a.msg_len = 0;
	assert_int_equal(scanproto_send_request(sv[0], &a, -1), 0);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), 1);
	assert_int_equal(b.msg_inline, 1);
	assert_int_equal(b.msg_len, 0);
	scan_request_free(&b);
	free(msg);
	/* as a descriptor: the inline bytes are not sent */
	mfd = spool_sealed_copy("abc", 3);
	assert_true(mfd >= 0);
	a.msg_len = 5;
	assert_int_equal(scanproto_send_request(sv[0], &a, mfd), 0);
	close(mfd);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), 1);
	assert_true(fd >= 0);
	assert_null(msg);
	assert_int_equal(b.msg_inline, 0);
	char got[4] = "";
	assert_int_equal(pread(fd, got, 3, 0), 3);
	assert_memory_equal(got, "abc", 3);
	close(fd);
	scan_request_free(&b);
	/* an envelope request: no message at all */
	a.stage = SCAN_ENVELOPE;
	assert_int_equal(scanproto_send_request(sv[0], &a, -1), 0);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), 1);
	assert_int_equal(b.stage, SCAN_ENVELOPE);
	assert_int_equal(fd, -1);
	assert_null(msg);
	assert_null(b.msg);
	scan_request_free(&b);

	/* refused: an envelope request with bytes after it, a message with
	 * both a descriptor and inline bytes, a message with neither, bytes
	 * after the request without the inline mark, JSON text; the socket
	 * stays usable (one packet each) */
	struct sbuf enc;
	sbuf_init(&enc, 1 << 20);
	scan_request_encode(&enc, &a);
	assert_int_equal(scanproto_send_raw(sv[0], enc.data, enc.len, -1, "x", 1, 1), 0);
	errno = 0;
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), -1);
	assert_int_equal(errno, EBADMSG);
	assert_int_equal(fd, -1);
	a.stage = SCAN_MESSAGE;
	sbuf_reset(&enc);
	scan_request_encode(&enc, &a);
	mfd = spool_sealed_copy("abc", 3);
	assert_int_equal(scanproto_send_raw(sv[0], enc.data, enc.len, mfd, "x", 1, 1), 0);
	close(mfd);
	errno = 0;
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), -1);
	assert_int_equal(errno, EBADMSG);
	assert_int_equal(fd, -1);            /* the passed descriptor was closed */
	assert_int_equal(scanproto_send_raw(sv[0], enc.data, enc.len, -1, NULL, 0, 0), 0);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), -1);
	assert_int_equal(errno, EBADMSG);
	sbuf_addc(&enc, 'x');
	assert_int_equal(scanproto_send_raw(sv[0], enc.data, enc.len, -1, NULL, 0, 0), 0);
	enc.len--;
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), -1);
	assert_int_equal(errno, EBADMSG);
	assert_int_equal(scanproto_send_raw(sv[0], "{\"id\":1}", 8, -1, NULL, 0, 0), 0);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), -1);
	assert_int_equal(errno, EBADMSG);
	sbuf_free(&enc);

	/* results */
	unit_scan_fill_result(&rs);
	assert_int_equal(scanproto_send_result(sv[1], &rs), 0);
	assert_int_equal(scanproto_recv_result(sv[0], &rs2, 0), 1);
	assert_true(rs2.id == 42);
	assert_int_equal(rs2.nedits, 4);
	scan_result_free(&rs2);
	assert_int_equal(scanproto_send_raw(sv[1], "MWr1", 4, -1, NULL, 0, 0), 0);
	assert_int_equal(scanproto_recv_result(sv[0], &rs2, 0), -1);
	assert_int_equal(errno, EBADMSG);
	/* nothing there: EAGAIN; the peer gone: EOF */
	assert_int_equal(scanproto_recv_result(sv[0], &rs2, MSG_DONTWAIT), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	close(sv[1]);
	assert_int_equal(scanproto_recv_result(sv[0], &rs2, 0), 0);
	close(sv[0]);
	scan_result_free(&rs);
	a.msg = NULL;
	scan_request_free(&a);
}

/* a request whose envelope and inline message do not fit one packet says
 * EMSGSIZE (the proxy then sends a memfd) */
/* a result with a new body brings its sealed memfd along; the receiver
 * refuses a body it could be changed under (not sealed), the flag without
 * a descriptor, and closes a descriptor that comes without the flag */
static void test_result_new_body(void **state)
{
	static const char rest[] = "\r\nnew body\r\n";
	struct scan_result a, b;
	struct sbuf enc;
	char buf[64];
	int sv[2], fd;
	(void)state;

	unit_scan_pair(sv);
	unit_scan_fill_result(&a);
	a.new_body = 1;
	a.new_body_fd = spool_sealed_copy(rest, strlen(rest));
	assert_true(a.new_body_fd >= 0);
	assert_int_equal(scanproto_send_result(sv[0], &a), 0);
	assert_int_equal(scanproto_recv_result(sv[1], &b, 0), 1);
	assert_int_equal(b.new_body, 1);
	assert_true(b.new_body_fd >= 0 && b.new_body_fd != a.new_body_fd);
	assert_int_equal(pread(b.new_body_fd, buf, sizeof(buf), 0), (ssize_t)strlen(rest));
	assert_memory_equal(buf, rest, strlen(rest));
	unit_scan_assert_filled(&b, &a);
	scan_result_free(&b);

	/* not sealed: refused */
	fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, rest, strlen(rest)), (ssize_t)strlen(rest));
	close(a.new_body_fd);
	a.new_body_fd = fd;
	assert_int_equal(scanproto_send_result(sv[0], &a), 0);
	assert_int_equal(scanproto_recv_result(sv[1], &b, 0), -1);
	assert_int_equal(errno, EBADMSG);

	/* the flag without a descriptor: refused */
	sbuf_init(&enc, 1 << 20);
	scan_result_encode(&enc, &a);
	assert_int_equal(scanproto_send_raw(sv[0], enc.data, enc.len, -1, NULL, 0, 0), 0);
	assert_int_equal(scanproto_recv_result(sv[1], &b, 0), -1);
	assert_int_equal(errno, EBADMSG);

	/* a descriptor without the flag: the result is fine, the fd is not kept */
	a.new_body = 0;
	sbuf_reset(&enc);
	scan_result_encode(&enc, &a);
	assert_int_equal(scanproto_send_raw(sv[0], enc.data, enc.len, fd, NULL, 0, 0), 0);
	assert_int_equal(scanproto_recv_result(sv[1], &b, 0), 1);
	assert_int_equal(b.new_body, 0);
	scan_result_free(&b);
	/* the flag is 0 or 1 */
	enc.data[enc.len - 1] = 2;
	assert_int_equal(scan_result_decode(enc.data, enc.len, &b), -1);

	sbuf_free(&enc);
	close(fd);
	a.new_body = 0;
	scan_result_free(&a);
	close(sv[0]);
	close(sv[1]);
}

/* fuzz_scanwire found this: the decoder bounded the symbol count by 22
 * bytes a symbol, but a short one takes 18 (name "A", empty filter, no
 * description), so a valid result with many short symbols was refused
 * (and the message tempfailed) */
static void test_result_short_symbols(void **state)
{
	struct scan_result a, b;
	struct sbuf enc;
	size_t i, n = 40;
	(void)state;

	memset(&a, 0, sizeof(a));
	a.action = MW_TAG;
	a.nsymbols = n;
	a.symbols = calloc(n, sizeof(*a.symbols));
	assert_non_null(a.symbols);
	for (i = 0; i < n; i++) {
		a.symbols[i].name[0] = (char)('A' + i % 26);
		a.symbols[i].score = 1;
	}
	sbuf_init(&enc, 1 << 20);
	scan_result_encode(&enc, &a);
	assert_int_equal(enc.len, 4 + 8 + 1 + 8 + 8 + 4 + 4 + n * 18 + 4 + 3 * 4 + 8 + 4 + 4 + 1);   /* ... scan_ms, timed_out, dkim_sign, new_body */
	assert_int_equal(scan_result_decode(enc.data, enc.len, &b), 0);
	assert_int_equal(b.nsymbols, n);
	assert_string_equal(b.symbols[n - 1].name, "N");
	scan_result_free(&b);
	scan_result_free(&a);
	sbuf_free(&enc);
}

/* an inline message too big for the packet with its envelope goes as a
 * sealed memfd (until session 19: EMSGSIZE); an envelope past what any
 * receiver takes (SCANPROTO_MAX_REQUEST) is refused before a memfd */
static void test_too_big(void **state)
{
	struct scan_request a, b;
	unsigned char *msg;
	int sv[2], fd;
	size_t n = SCANPROTO_MAX_PACKET;
	unsigned char *big = calloc(1, n);
	(void)state;

	unit_scan_pair(sv);
	unit_scan_fill_request(&a);
	big[n - 1] = 'z';
	a.msg = big;
	a.msg_len = n;
	a.msg_inline = 1;
	assert_int_equal(scanproto_send_request(sv[0], &a, -1), 0);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), 1);
	assert_null(msg);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GET_SEALS) & F_SEAL_WRITE, F_SEAL_WRITE);
	char last = 0;
	assert_int_equal(pread(fd, &last, 1, (off_t)n - 1), 1);
	assert_int_equal(last, 'z');
	close(fd);
	scan_request_free(&b);
	a.msg = NULL;
	scan_request_free(&a);
	free(big);
	errno = 0;
	assert_int_equal(scanproto_envelope_fd("x", (size_t)SCANPROTO_MAX_REQUEST + 1), -1);
	assert_int_equal(errno, EMSGSIZE);
	close(sv[0]);
	close(sv[1]);
}

/* send_big_raw - a big-request packet of len bytes (magic, the length n)
 * with the descriptors given */
static void send_big_raw(int sock, uint64_t n, size_t len, const int *fds, size_t nfds)
{
	unsigned char pkt[32];
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(3 * sizeof(int))];
	} cm;
	struct iovec iov = { pkt, len };
	struct msghdr m;

	memset(pkt, 0, sizeof(pkt));
	memcpy(pkt, SCANPROTO_BIG_MAGIC, 4);
	memcpy(pkt + 4, &n, sizeof(n));
	memset(&m, 0, sizeof(m));
	memset(&cm, 0, sizeof(cm));
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	if (nfds > 0) {
		m.msg_control = cm.buf;
		m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	assert_int_equal(sendmsg(sock, &m, 0), (ssize_t)len);
}

/* expect_refused - the next request on sock is refused, its descriptors
 * closed, and the socket goes on */
static void expect_refused(int sock)
{
	struct scan_request b;
	unsigned char *msg;
	int fd;

	errno = 0;
	assert_int_equal(scanproto_recv_request(sock, &b, &fd, &msg, 0), -1);
	assert_int_equal(errno, EBADMSG);
	assert_int_equal(fd, -1);
	assert_null(msg);
}

/* a big request (its encoding in a memfd of its own) as a hostile front
 * end could send it: each is refused, descriptors closed */
static void test_big_hostile(void **state)
{
	struct scan_request a, b;
	struct sbuf enc;
	unsigned char *msg;
	int sv[2], fd, env, mfd, plain;
	(void)state;

	unit_scan_pair(sv);
	unit_scan_fill_request(&a);
	sbuf_init(&enc, 1 << 20);
	scan_request_encode(&enc, &a);
	env = scanproto_envelope_fd(enc.data, enc.len);
	mfd = spool_sealed_copy("abc", 3);
	assert_true(env >= 0 && mfd >= 0);

	/* well formed: taken, even when it would have fit a packet */
	assert_int_equal(scanproto_send_big(sv[0], env, enc.len, mfd), 0);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), 1);
	assert_true(fd >= 0);
	assert_null(msg);
	assert_int_equal(b.nrcpts, 3);
	assert_string_equal(b.rcpts[1], a.rcpts[1]);
	close(fd);
	scan_request_free(&b);

	/* a message request without its message; a message descriptor on
	 * an envelope request */
	assert_int_equal(scanproto_send_big(sv[0], env, enc.len, -1), 0);
	expect_refused(sv[1]);
	a.stage = SCAN_ENVELOPE;
	sbuf_reset(&enc);
	scan_request_encode(&enc, &a);
	int env2 = scanproto_envelope_fd(enc.data, enc.len);
	assert_int_equal(scanproto_send_big(sv[0], env2, enc.len, mfd), 0);
	expect_refused(sv[1]);
	assert_int_equal(scanproto_send_big(sv[0], env2, enc.len, -1), 0);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), 1);
	assert_int_equal(fd, -1);
	assert_int_equal(b.stage, SCAN_ENVELOPE);
	scan_request_free(&b);
	close(env2);
	a.stage = SCAN_MESSAGE;
	sbuf_reset(&enc);
	scan_request_encode(&enc, &a);

	/* a length other than the memfd's; none; past SCANPROTO_MAX_REQUEST */
	assert_int_equal(scanproto_send_big(sv[0], env, enc.len - 1, mfd), 0);
	expect_refused(sv[1]);
	assert_int_equal(scanproto_send_big(sv[0], env, enc.len + 1, mfd), 0);
	expect_refused(sv[1]);
	assert_int_equal(scanproto_send_big(sv[0], env, 0, mfd), 0);
	expect_refused(sv[1]);
	int two[3] = { env, mfd, mfd };
	send_big_raw(sv[0], (uint64_t)SCANPROTO_MAX_REQUEST + 1, 12, two, 2);
	expect_refused(sv[1]);
	/* no descriptor; three; a packet of another length */
	send_big_raw(sv[0], enc.len, 12, two, 0);
	expect_refused(sv[1]);
	send_big_raw(sv[0], enc.len, 12, two, 3);
	expect_refused(sv[1]);
	send_big_raw(sv[0], enc.len, 13, two, 2);
	expect_refused(sv[1]);
	/* an unsealed file: it could change under the reader, or be a
	 * pipe that blocks it */
	plain = memfd_create("plain", MFD_CLOEXEC);
	assert_true(plain >= 0);
	assert_int_equal(write(plain, enc.data, enc.len), (ssize_t)enc.len);
	assert_int_equal(scanproto_send_big(sv[0], plain, enc.len, mfd), 0);
	expect_refused(sv[1]);
	close(plain);
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(scanproto_send_big(sv[0], p[0], enc.len, mfd), 0);
	expect_refused(sv[1]);
	close(p[0]);
	close(p[1]);
	/* an encoding with a byte after it (an inline message has no place
	 * there), and a truncated one */
	sbuf_addc(&enc, 'M');
	int env3 = scanproto_envelope_fd(enc.data, enc.len);
	assert_int_equal(scanproto_send_big(sv[0], env3, enc.len, mfd), 0);
	expect_refused(sv[1]);
	close(env3);
	env3 = scanproto_envelope_fd(enc.data, enc.len - 2);
	assert_int_equal(scanproto_send_big(sv[0], env3, enc.len - 2, mfd), 0);
	expect_refused(sv[1]);
	close(env3);

	/* the socket is still in step: a plain request goes through */
	assert_int_equal(scanproto_send_request(sv[0], &a, mfd), 0);
	assert_int_equal(scanproto_recv_request(sv[1], &b, &fd, &msg, 0), 1);
	assert_true(fd >= 0);
	close(fd);
	scan_request_free(&b);

	close(env);
	close(mfd);
	sbuf_free(&enc);
	scan_request_free(&a);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_roundtrip),
		cmocka_unit_test(test_result_roundtrip),
		cmocka_unit_test(test_truncated_and_flipped),
		cmocka_unit_test(test_result_hostile),
		cmocka_unit_test(test_request_hostile),
		cmocka_unit_test(test_transport),
		cmocka_unit_test(test_result_new_body),
		cmocka_unit_test(test_result_short_symbols),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_big_hostile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
