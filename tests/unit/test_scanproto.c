/* test_scanproto.c - the scanner protocol: JSON round trips of requests and
 * results (any byte but NUL survives), hostile JSON refused field by field,
 * and the packet transport with fd passing over a SOCK_SEQPACKET
 * socketpair (truncation, extra fds, garbage, EOF); inline messages and
 * the proxy's spool that feeds them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/sbuf.h"
#include "proxy/scanproto.h"
#include "proxy/spool.h"

#include "unit_scan.h"

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static json_object *reparse(json_object *j)
{
	const char *t = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);
	json_object *k = json_tokener_parse(t);

	assert_non_null(k);
	json_object_put(j);
	return k;
}

static void test_request_roundtrip(void **state)
{
	struct scan_request a, b;
	json_object *j;
	size_t i;

	(void)state;
	unit_scan_fill_request(&a);
	j = reparse(scan_request_to_json(&a));
	assert_int_equal(scan_request_from_json(j, &b), 0);
	json_object_put(j);
	assert_true(a.id == b.id);
	assert_string_equal(a.session_id, b.session_id);
	assert_string_equal(a.listener, b.listener);
	assert_int_equal(b.direction, MW_OUTBOUND);
	assert_string_equal(a.client_ip, b.client_ip);
	assert_int_equal(b.client_port, 65535);
	assert_string_equal(a.client_name, b.client_name);
	assert_memory_equal(a.helo, b.helo, 256);
	assert_string_equal(a.mail_from, b.mail_from);
	assert_string_equal(a.mail_params, b.mail_params);
	assert_int_equal(b.nrcpts, 3);
	for (i = 0; i < 3; i++)
		assert_string_equal(a.rcpts[i], b.rcpts[i]);
	assert_true(b.size == 1ULL << 40);
	assert_string_equal(a.auth_user, b.auth_user);
	assert_string_equal(a.tls, b.tls);
	assert_int_equal(b.mta_quarantine, 0);
	assert_int_equal(b.timeout_ms, 86400000);
	scan_request_free(&b);

	a.mta_quarantine = 1;
	j = reparse(scan_request_to_json(&a));
	assert_int_equal(scan_request_from_json(j, &b), 0);
	json_object_put(j);
	assert_int_equal(b.mta_quarantine, 1);
	scan_request_free(&b);
	j = json_tokener_parse("{\"id\":1,\"mta_quarantine\":\"yes\"}");
	assert_int_equal(scan_request_from_json(j, &b), -1);   /* a boolean or nothing */
	json_object_put(j);
	j = json_tokener_parse("{\"id\":1,\"timeout_ms\":4294967296}");
	assert_int_equal(scan_request_from_json(j, &b), -1);   /* what a u32 holds */
	json_object_put(j);
	scan_request_free(&a);
}

/* rcpt_dsn (session 19): each recipient's NOTIFY/ORCPT, kept for a
 * quarantine release; both forms carry it, and both decoders take only
 * one string per recipient, each well-formed NOTIFY/ORCPT and nothing else */
static void test_request_rcpt_dsn(void **state)
{
	static const char *const bad[] = {
		"NOTIFY=NEVER XCLIENT=1", "NOTIFY=NEVER\r\nRSET", "ORCPT=rfc822;a b", "NOTIFY=SOMETIMES",
		"ORCPT=rfc822;a+zz", "NOTIFY=NEVER,SUCCESS", " NOTIFY=NEVER",
	};
	struct scan_request a, b;
	struct sbuf buf;
	json_object *j;
	size_t used, i;

	(void)state;
	unit_scan_fill_request(&a);
	a.rcpt_dsn = calloc(3, sizeof(char *));
	a.rcpt_dsn[0] = strdup("NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x+2By@example.org");
	a.rcpt_dsn[1] = strdup("");
	a.rcpt_dsn[2] = strdup("NOTIFY=NEVER");
	j = reparse(scan_request_to_json(&a));
	assert_int_equal(scan_request_from_json(j, &b), 0);
	json_object_put(j);
	assert_non_null(b.rcpt_dsn);
	for (i = 0; i < 3; i++)
		assert_string_equal(a.rcpt_dsn[i], b.rcpt_dsn[i]);
	scan_request_free(&b);
	sbuf_init(&buf, SIZE_MAX);
	scan_request_encode(&buf, &a);
	assert_int_equal(scan_request_decode(buf.data, buf.len, &b, &used), 0);
	assert_int_equal(used, buf.len);
	assert_non_null(b.rcpt_dsn);
	for (i = 0; i < 3; i++)
		assert_string_equal(a.rcpt_dsn[i], b.rcpt_dsn[i]);
	scan_request_free(&b);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		free(a.rcpt_dsn[1]);
		a.rcpt_dsn[1] = strdup(bad[i]);
		j = reparse(scan_request_to_json(&a));
		assert_int_equal(scan_request_from_json(j, &b), -1);
		json_object_put(j);
		sbuf_reset(&buf);
		scan_request_encode(&buf, &a);
		assert_int_equal(scan_request_decode(buf.data, buf.len, &b, &used), -1);
	}
	/* none: no field, and NULL on the other side */
	for (i = 0; i < 3; i++)
		free(a.rcpt_dsn[i]);
	free(a.rcpt_dsn);
	a.rcpt_dsn = NULL;
	j = reparse(scan_request_to_json(&a));
	assert_false(json_object_object_get_ex(j, "rcpt_dsn", NULL));
	assert_int_equal(scan_request_from_json(j, &b), 0);
	assert_null(b.rcpt_dsn);
	scan_request_free(&b);
	/* one per recipient */
	json_object_object_add(j, "rcpt_dsn", json_tokener_parse("[\"NOTIFY=NEVER\"]"));
	assert_int_equal(scan_request_from_json(j, &b), -1);
	json_object_put(j);
	sbuf_free(&buf);
	scan_request_free(&a);
}

static void test_result_roundtrip(void **state)
{
	struct scan_result a, b;
	json_object *j;
	const char *text;

	(void)state;
	unit_scan_fill_result(&a);
	j = scan_result_to_json(&a);
	text = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);
	/* numbers print as people write them */
	assert_non_null(strstr(text, "\"score\":7.3,"));
	assert_non_null(strstr(text, "\"required\":5.0,"));
	j = reparse(j);
	assert_int_equal(scan_result_from_json(j, &b), 0);
	json_object_put(j);
	unit_scan_assert_filled(&b, &a);
	scan_result_free(&a);
	scan_result_free(&b);
}

static void test_action_names(void **state)
{
	static const char *names[] = { "accept", "tag", "quarantine", "discard", "tempfail", "reject" };
	enum mw_action a;
	int i;

	(void)state;
	for (i = 0; i < MW_ACTION_COUNT; i++) {
		assert_string_equal(mw_action_name((enum mw_action)i), names[i]);
		assert_int_equal(mw_action_parse(names[i], &a), 0);
		assert_int_equal(a, i);
	}
	assert_int_equal(mw_action_parse("REJECT", &a), -1);
	assert_int_equal(mw_action_parse("", &a), -1);
	assert_string_equal(mw_action_name(MW_ACTION_COUNT), "unknown");
}

/* req_with - a valid request object with key replaced by v (NULL: removed) */
static int req_with(const char *key, json_object *v)
{
	struct scan_request r;
	json_object *j;
	int rc;

	unit_scan_fill_request(&r);
	j = scan_request_to_json(&r);
	scan_request_free(&r);
	if (v == NULL)
		json_object_object_del(j, key);
	else
		json_object_object_add(j, key, v);
	rc = scan_request_from_json(j, &r);
	json_object_put(j);
	if (rc == 0)
		scan_request_free(&r);
	else	/* a refused request is left empty */
		assert_null(r.listener);
	return rc;
}

static void test_request_hostile(void **state)
{
	json_object *a;
	char *big;
	int i;

	(void)state;
	assert_int_equal(req_with("tls", NULL), 0);                     /* optional */
	assert_int_equal(req_with("id", NULL), -1);                     /* required */
	assert_int_equal(req_with("id", json_object_new_int64(-1)), -1);
	assert_int_equal(req_with("id", json_object_new_string("1")), -1);
	assert_int_equal(req_with("id", json_object_new_double(1.0)), -1);
	assert_int_equal(req_with("client_port", json_object_new_int64(65536)), -1);
	assert_int_equal(req_with("client_port", json_object_new_int64(-5)), -1);
	assert_int_equal(req_with("session_id", json_object_new_string("0123456789abcdef0")), -1);
	assert_int_equal(req_with("helo", json_object_new_string_len("a\0b", 3)), -1);
	assert_int_equal(req_with("helo", json_object_new_int(3)), -1);
	{	/* a JSON null is not a string */
		struct scan_request r;
		json_object *j = json_tokener_parse("{\"id\":1,\"helo\":null}");

		assert_int_equal(scan_request_from_json(j, &r), -1);
		json_object_put(j);
	}
	assert_int_equal(req_with("direction", json_object_new_string("sideways")), -1);
	assert_int_equal(req_with("rcpts", json_object_new_string("x@y")), -1);
	a = json_object_new_array();
	json_object_array_add(a, json_object_new_int(1));
	assert_int_equal(req_with("rcpts", a), -1);
	a = json_object_new_array();
	json_object_array_add(a, json_object_new_string("ok@x"));
	json_object_array_add(a, json_object_new_string_len("n\0ul@x", 6));
	assert_int_equal(req_with("rcpts", a), -1);
	a = json_object_new_array();
	for (i = 0; i < 100001; i++)
		json_object_array_add(a, json_object_new_string(""));
	assert_int_equal(req_with("rcpts", a), -1);
	a = json_object_new_array();
	for (i = 0; i < 100000; i++)
		json_object_array_add(a, json_object_new_string(""));
	assert_int_equal(req_with("rcpts", a), 0);
	big = malloc(64 * 1024 + 2);
	memset(big, 'a', 64 * 1024 + 1);
	big[64 * 1024 + 1] = '\0';
	assert_int_equal(req_with("mail_from", json_object_new_string(big)), -1);
	big[64 * 1024] = '\0';
	assert_int_equal(req_with("mail_from", json_object_new_string(big)), 0);
	free(big);
	{
		struct scan_request r;
		json_object *arr = json_object_new_array();

		assert_int_equal(scan_request_from_json(arr, &r), -1);
		json_object_put(arr);
		assert_int_equal(scan_request_from_json(NULL, &r), -1);
	}
}

/* res_with - a valid result with key (in the object at path) replaced */
static int res_edit(void (*edit)(json_object *))
{
	struct scan_result r;
	json_object *j;
	int rc;

	unit_scan_fill_result(&r);
	j = scan_result_to_json(&r);
	scan_result_free(&r);
	edit(j);
	rc = scan_result_from_json(j, &r);
	json_object_put(j);
	if (rc == 0)
		scan_result_free(&r);
	else
		assert_null(r.symbols);
	return rc;
}

static json_object *sym0(json_object *j)
{
	json_object *a;

	json_object_object_get_ex(j, "symbols", &a);
	return json_object_array_get_idx(a, 0);
}

static json_object *edit_n(json_object *j, size_t n)
{
	json_object *a;

	json_object_object_get_ex(j, "edits", &a);
	return json_object_array_get_idx(a, n);
}

static void e_ok(json_object *j) { (void)j; }
static void e_action(json_object *j) { json_object_object_add(j, "action", json_object_new_string("deliver")); }
static void e_noaction(json_object *j) { json_object_object_del(j, "action"); }
static void e_nan(json_object *j) { json_object_object_add(j, "score", json_object_new_double(NAN)); }
static void e_inf(json_object *j) { json_object_object_add(sym0(j), "score", json_object_new_double(INFINITY)); }
static void e_int_score(json_object *j) { json_object_object_add(j, "score", json_object_new_int(7)); }
static void e_str_score(json_object *j) { json_object_object_add(j, "score", json_object_new_string("7")); }
static void e_symlower(json_object *j) { json_object_object_add(sym0(j), "name", json_object_new_string("sym_a")); }
static void e_symlong(json_object *j) { json_object_object_add(sym0(j), "name", json_object_new_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")); }
static void e_symempty(json_object *j) { json_object_object_add(sym0(j), "name", json_object_new_string("")); }
static void e_filter(json_object *j) { json_object_object_add(sym0(j), "filter", json_object_new_string("Bad Name")); }
static void e_reply_crlf(json_object *j) { json_object_object_add(j, "reply", json_object_new_string("550 5.7.1 no\r\n250 ok")); }
static void e_reply_long(json_object *j)
{
	char b[600];

	memset(b, 'x', sizeof(b) - 1);
	b[sizeof(b) - 1] = '\0';
	json_object_object_add(j, "reply", json_object_new_string(b));
}
static void e_qid(json_object *j) { json_object_object_add(j, "quarantine_id", json_object_new_string("../../etc/passwd")); }
static void e_bare_lf(json_object *j) { json_object_object_add(edit_n(j, 1), "value", json_object_new_string("a\nX-Evil: 1")); }
static void e_crlf_nows(json_object *j) { json_object_object_add(edit_n(j, 1), "value", json_object_new_string("a\r\nX-Evil: 1")); }
static void e_crlf_end(json_object *j) { json_object_object_add(edit_n(j, 1), "value", json_object_new_string("a\r\n")); }
static void e_bare_cr(json_object *j) { json_object_object_add(edit_n(j, 1), "value", json_object_new_string("a\rb")); }
static void e_remove_val(json_object *j) { json_object_object_add(edit_n(j, 0), "value", json_object_new_string("x")); }
static void e_add_noval(json_object *j) { json_object_object_del(edit_n(j, 1), "value"); }
static void e_badop(json_object *j) { json_object_object_add(edit_n(j, 1), "op", json_object_new_string("insert")); }
static void e_badname(json_object *j) { json_object_object_add(edit_n(j, 1), "name", json_object_new_string("X Spam:")); }
static void e_symnotobj(json_object *j)
{
	json_object *a;

	json_object_object_get_ex(j, "symbols", &a);
	json_object_array_add(a, json_object_new_string("SYM"));
}
static void e_symbols_obj(json_object *j) { json_object_object_add(j, "symbols", json_object_new_object()); }
static void e_toomany(json_object *j)
{
	json_object *a = json_object_new_array();
	int i;

	for (i = 0; i < 5000; i++) {
		json_object *s = json_object_new_object();

		json_object_object_add(s, "name", json_object_new_string("S"));
		json_object_array_add(a, s);
	}
	json_object_object_add(j, "symbols", a);
}

static void test_result_hostile(void **state)
{
	(void)state;
	assert_int_equal(res_edit(e_ok), 0);
	assert_int_equal(res_edit(e_int_score), 0);
	assert_int_equal(res_edit(e_action), -1);
	assert_int_equal(res_edit(e_noaction), -1);
	assert_int_equal(res_edit(e_nan), -1);
	assert_int_equal(res_edit(e_inf), -1);
	assert_int_equal(res_edit(e_str_score), -1);
	assert_int_equal(res_edit(e_symlower), -1);
	assert_int_equal(res_edit(e_symlong), -1);
	assert_int_equal(res_edit(e_symempty), -1);
	assert_int_equal(res_edit(e_filter), -1);
	assert_int_equal(res_edit(e_reply_crlf), -1);
	assert_int_equal(res_edit(e_reply_long), -1);
	assert_int_equal(res_edit(e_qid), -1);
	assert_int_equal(res_edit(e_bare_lf), -1);
	assert_int_equal(res_edit(e_crlf_nows), -1);
	assert_int_equal(res_edit(e_crlf_end), -1);
	assert_int_equal(res_edit(e_bare_cr), -1);
	assert_int_equal(res_edit(e_remove_val), -1);
	assert_int_equal(res_edit(e_add_noval), -1);
	assert_int_equal(res_edit(e_badop), -1);
	assert_int_equal(res_edit(e_badname), -1);
	assert_int_equal(res_edit(e_symnotobj), -1);
	assert_int_equal(res_edit(e_symbols_obj), -1);
	assert_int_equal(res_edit(e_toomany), -1);
}

/* --- transport ----------------------------------------------------------- */

static int memfd_with(const char *text)
{
	int fd = memfd_create("t", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	return fd;
}

/* raw_send - a packet of len bytes with nfds copies of fd */
static void raw_send(int sock, const void *p, size_t len, int fd, int nfds)
{
	char cbuf[CMSG_SPACE(64 * sizeof(int))];
	struct msghdr m;
	struct iovec iov;
	struct cmsghdr *c;
	int i;

	memset(&m, 0, sizeof(m));
	memset(cbuf, 0, sizeof(cbuf));
	iov.iov_base = (void *)(uintptr_t)p;
	iov.iov_len = len;
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	if (nfds > 0) {
		m.msg_control = cbuf;
		m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		for (i = 0; i < nfds; i++)
			memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(int));
	}
	assert_int_equal(sendmsg(sock, &m, MSG_NOSIGNAL), (ssize_t)len);
}

static void test_send_recv_fd(void **state)
{
	struct scan_request a, b;
	json_object *j;
	char buf[64];
	int sv[2], mfd, fd;

	(void)state;
	unit_scan_pair(sv);
	unit_scan_fill_request(&a);
	mfd = memfd_with("Subject: hi\r\n\r\nbody\r\n");
	j = scan_request_to_json(&a);
	assert_int_equal(scanproto_send(sv[0], j, mfd), 0);
	json_object_put(j);
	close(mfd);

	assert_int_equal(scanproto_recv(sv[1], &j, &fd), 1);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 21);
	assert_memory_equal(buf, "Subject: hi\r\n\r\nbody\r\n", 21);
	close(fd);
	assert_int_equal(scan_request_from_json(j, &b), 0);
	json_object_put(j);
	assert_memory_equal(a.helo, b.helo, 256);
	assert_string_equal(a.rcpts[1], b.rcpts[1]);
	scan_request_free(&a);
	scan_request_free(&b);

	/* without an fd */
	j = json_object_new_object();
	json_object_object_add(j, "id", json_object_new_int(7));
	assert_int_equal(scanproto_send(sv[0], j, -1), 0);
	json_object_put(j);
	assert_int_equal(scanproto_recv(sv[1], &j, &fd), 1);
	assert_int_equal(fd, -1);
	json_object_put(j);

	/* EOF */
	close(sv[0]);
	assert_int_equal(scanproto_recv(sv[1], &j, &fd), 0);
	assert_null(j);
	assert_int_equal(fd, -1);
	close(sv[1]);
}

static void test_extra_fds_closed(void **state)
{
	json_object *j;
	int sv[2], mfd, fd, before;

	(void)state;
	unit_scan_pair(sv);
	mfd = memfd_with("x");
	before = count_fds();
	raw_send(sv[0], "{\"id\":1}", 8, mfd, 3);
	assert_int_equal(scanproto_recv(sv[1], &j, &fd), 1);
	assert_true(fd >= 0);
	assert_int_equal(count_fds(), before + 1);	/* only the first is kept */
	close(fd);
	json_object_put(j);

	/* more fds than we make room for: truncated control data, none kept */
	raw_send(sv[0], "{\"id\":1}", 8, mfd, 20);
	errno = 0;
	assert_int_equal(scanproto_recv(sv[1], &j, &fd), -1);
	assert_int_equal(errno, EBADMSG);
	assert_int_equal(fd, -1);
	assert_null(j);
	assert_int_equal(count_fds(), before);

	/* a bad packet with an fd: the fd is closed too */
	raw_send(sv[0], "nope", 4, mfd, 1);
	assert_int_equal(scanproto_recv(sv[1], &j, &fd), -1);
	assert_int_equal(errno, EBADMSG);
	assert_int_equal(count_fds(), before);
	close(mfd);
	close(sv[0]);
	close(sv[1]);
}

static void expect_bad(int sv[2], const void *p, size_t len)
{
	json_object *j = (json_object *)1;
	int fd = 99;

	raw_send(sv[0], p, len, -1, 0);
	errno = 0;
	assert_int_equal(scanproto_recv(sv[1], &j, &fd), -1);
	assert_int_equal(errno, EBADMSG);
	assert_null(j);
	assert_int_equal(fd, -1);
}

static void test_garbage(void **state)
{
	json_object *j, *k;
	char *big, deep[200];
	int sv[2], fd, i;

	(void)state;
	unit_scan_pair(sv);
	expect_bad(sv, "not json", 8);
	expect_bad(sv, "[1,2]", 5);
	expect_bad(sv, "\"str\"", 5);
	expect_bad(sv, "123", 3);
	expect_bad(sv, "{\"id\":1} x", 10);
	expect_bad(sv, "{\"id\":1}{}", 10);
	expect_bad(sv, "{\"id\":1", 7);
	expect_bad(sv, "{\"id\":1}\0", 9);
	{	/* json-c's parser takes NaN; the decoder does not */
		struct scan_result r;

		raw_send(sv[0], "{\"id\":1,\"action\":\"tag\",\"score\":NaN}", 35, -1, 0);
		assert_int_equal(scanproto_recv(sv[1], &j, &fd), 1);
		assert_int_equal(scan_result_from_json(j, &r), -1);
		json_object_put(j);
	}
	for (i = 0; i < 100; i++) {
		deep[i] = '[';
		deep[199 - i] = ']';
	}
	deep[0] = '{';
	deep[199] = '}';
	expect_bad(sv, deep, sizeof(deep));
	/* an oversized packet is truncated by the kernel into our buffer */
	assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &(int){ 1 << 20 }, sizeof(int)), 0);
	big = malloc(SCANPROTO_MAX_PACKET + 100);
	memset(big, ' ', SCANPROTO_MAX_PACKET + 100);
	memcpy(big, "{\"id\":1}", 8);
	expect_bad(sv, big, SCANPROTO_MAX_PACKET + 100);
	/* exactly the maximum is fine */
	raw_send(sv[0], big, SCANPROTO_MAX_PACKET, -1, 0);
	assert_int_equal(scanproto_recv(sv[1], &j, &fd), 1);
	json_object_put(j);
	free(big);
	/* trailing whitespace is fine, and the socket still works after errors */
	raw_send(sv[0], "{\"id\":2}\r\n ", 11, -1, 0);
	assert_int_equal(scanproto_recv(sv[1], &j, &fd), 1);
	assert_true(json_object_object_get_ex(j, "id", &k));
	assert_int_equal(json_object_get_int(k), 2);
	json_object_put(j);

	/* nothing there on a non-blocking socket */
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	assert_int_equal(scanproto_recv(sv[1], &j, &fd), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	close(sv[0]);
	close(sv[1]);
}

static void test_send_too_big(void **state)
{
	json_object *j = json_object_new_object(), *k;
	char *big = malloc(SCANPROTO_MAX_PACKET);
	int sv[2], fd;

	(void)state;
	unit_scan_pair(sv);
	memset(big, 'a', SCANPROTO_MAX_PACKET - 1);
	big[SCANPROTO_MAX_PACKET - 1] = '\0';
	json_object_object_add(j, "x", json_object_new_string(big));
	errno = 0;
	assert_int_equal(scanproto_send(sv[0], j, -1), -1);
	assert_int_equal(errno, EMSGSIZE);
	json_object_put(j);
	/* just under the limit, more than the default send buffer: sent */
	j = json_object_new_object();
	big[SCANPROTO_MAX_PACKET - 100] = '\0';
	json_object_object_add(j, "x", json_object_new_string(big));
	assert_int_equal(scanproto_send(sv[0], j, -1), 0);
	json_object_put(j);
	assert_int_equal(scanproto_recv(sv[1], &j, &fd), 1);
	assert_true(json_object_object_get_ex(j, "x", &k));
	assert_int_equal(json_object_get_string_len(k), SCANPROTO_MAX_PACKET - 100);
	json_object_put(j);
	free(big);
	/* a closed peer: EPIPE, and no SIGPIPE kills us */
	close(sv[1]);
	j = json_object_new_object();
	assert_int_equal(scanproto_send(sv[0], j, -1), -1);
	assert_int_equal(errno, EPIPE);
	json_object_put(j);
	close(sv[0]);
}

/* Inline messages: the bytes after the JSON text's NUL come back exactly
 * (NULs, CRs, any byte), empty is not "none", and every malformed shape
 * (inline on the plain receiver, inline plus an fd, bad JSON before the
 * NUL, too big for a packet) is refused. */
static void test_inline_msg(void **state)
{
	struct scan_request a, b;
	unsigned char *msg, *body;
	size_t len, i;
	json_object *j;
	int sv[2], fd, mfd, before;

	(void)state;
	unit_scan_pair(sv);
	unit_scan_fill_request(&a);
	body = malloc(SCANPROTO_INLINE_MAX);
	for (i = 0; i < SCANPROTO_INLINE_MAX; i++)
		body[i] = (unsigned char)(i * 7);	/* NULs among them */
	j = scan_request_to_json(&a);
	assert_int_equal(scanproto_send_msg(sv[0], j, body, 1000), 0);
	/* the largest inline message, more than the default send buffer's share */
	assert_int_equal(scanproto_send_msg(sv[0], j, body, SCANPROTO_INLINE_MAX), 0);
	/* empty */
	assert_int_equal(scanproto_send_msg(sv[0], j, NULL, 0), 0);
	json_object_put(j);

	assert_int_equal(scanproto_recv_msg(sv[1], &j, &fd, 0, &msg, &len), 1);
	assert_int_equal(fd, -1);
	assert_non_null(msg);
	assert_int_equal(len, 1000);
	assert_memory_equal(msg, body, 1000);
	assert_int_equal(scan_request_from_json(j, &b), 0);
	assert_memory_equal(a.helo, b.helo, 256);
	assert_string_equal(a.rcpts[1], b.rcpts[1]);
	scan_request_free(&b);
	json_object_put(j);
	free(msg);

	assert_int_equal(scanproto_recv_msg(sv[1], &j, &fd, 0, &msg, &len), 1);
	assert_int_equal(len, SCANPROTO_INLINE_MAX);
	assert_memory_equal(msg, body, SCANPROTO_INLINE_MAX);
	json_object_put(j);
	free(msg);

	assert_int_equal(scanproto_recv_msg(sv[1], &j, &fd, 0, &msg, &len), 1);
	assert_non_null(msg);			/* an empty message, not "none" */
	assert_int_equal(len, 0);
	json_object_put(j);
	free(msg);

	/* no inline part: msg NULL; an fd still passes */
	mfd = memfd_with("x");
	j = scan_request_to_json(&a);
	assert_int_equal(scanproto_send(sv[0], j, mfd), 0);
	json_object_put(j);
	assert_int_equal(scanproto_recv_msg(sv[1], &j, &fd, 0, &msg, &len), 1);
	assert_null(msg);
	assert_int_equal(len, 0);
	assert_true(fd >= 0);
	close(fd);
	json_object_put(j);

	/* the plain receiver refuses an inline message */
	j = json_object_new_object();
	json_object_object_add(j, "id", json_object_new_int(3));
	assert_int_equal(scanproto_send_msg(sv[0], j, "abc", 3), 0);
	json_object_put(j);
	errno = 0;
	assert_int_equal(scanproto_recv(sv[1], &j, &fd), -1);
	assert_int_equal(errno, EBADMSG);
	assert_null(j);

	/* inline plus an fd: refused, the fd closed */
	before = count_fds();
	raw_send(sv[0], "{\"id\":1}\0body", 13, mfd, 1);
	errno = 0;
	assert_int_equal(scanproto_recv_msg(sv[1], &j, &fd, 0, &msg, &len), -1);
	assert_int_equal(errno, EBADMSG);
	assert_null(msg);
	assert_int_equal(fd, -1);
	assert_int_equal(count_fds(), before);
	close(mfd);

	/* bad JSON before the NUL; an empty JSON part */
	raw_send(sv[0], "nope\0body", 9, -1, 0);
	assert_int_equal(scanproto_recv_msg(sv[1], &j, &fd, 0, &msg, &len), -1);
	assert_int_equal(errno, EBADMSG);
	assert_null(msg);
	raw_send(sv[0], "\0body", 5, -1, 0);
	assert_int_equal(scanproto_recv_msg(sv[1], &j, &fd, 0, &msg, &len), -1);
	assert_int_equal(errno, EBADMSG);
	/* whitespace then the NUL is fine */
	raw_send(sv[0], "{\"id\":1} \0b", 11, -1, 0);
	assert_int_equal(scanproto_recv_msg(sv[1], &j, &fd, 0, &msg, &len), 1);
	assert_int_equal(len, 1);
	assert_int_equal(msg[0], 'b');
	json_object_put(j);
	free(msg);

	/* JSON + NUL + message over the packet limit: EMSGSIZE, nothing sent */
	free(body);
	body = calloc(1, SCANPROTO_MAX_PACKET);
	j = scan_request_to_json(&a);
	errno = 0;
	assert_int_equal(scanproto_send_msg(sv[0], j, body, SCANPROTO_MAX_PACKET - 10), -1);
	assert_int_equal(errno, EMSGSIZE);
	json_object_put(j);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	assert_int_equal(scanproto_recv_msg(sv[1], &j, &fd, 0, &msg, &len), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	free(body);
	scan_request_free(&a);
	close(sv[0]);
	close(sv[1]);
}

/* The proxy's side of inline messages: spool_finish_small keeps a small
 * message in memory (no memfd), a larger one goes to a sealed memfd as
 * before; spool_sealed_copy (the fallback when an inline packet would be
 * too big) gives a sealed memfd with the bytes. */
static void test_spool_small(void **state)
{
	struct spool sp;
	char *big, buf[16];
	int fd, seals;

	(void)state;
	spool_open(&sp);
	assert_int_equal(spool_write(&sp, "Subject: a\r\n\r\nb\r\n", 17), 0);
	assert_int_equal(spool_finish_small(&sp, SCANPROTO_INLINE_MAX), 0);
	assert_int_equal(sp.fd, -1);
	assert_int_equal(sp.size, 17);
	assert_memory_equal(sp.map, "Subject: a\r\n\r\nb\r\n", 17);
	spool_close(&sp);

	/* empty */
	spool_open(&sp);
	assert_int_equal(spool_finish_small(&sp, SCANPROTO_INLINE_MAX), 0);
	assert_int_equal(sp.fd, -1);
	assert_non_null(sp.map);
	assert_int_equal(sp.size, 0);
	spool_close(&sp);

	/* one byte over: a sealed memfd */
	big = malloc(SCANPROTO_INLINE_MAX + 1);
	memset(big, 'x', SCANPROTO_INLINE_MAX + 1);
	spool_open(&sp);
	assert_int_equal(spool_write(&sp, big, SCANPROTO_INLINE_MAX + 1), 0);
	assert_int_equal(spool_finish_small(&sp, SCANPROTO_INLINE_MAX), 0);
	assert_true(sp.fd >= 0);
	seals = fcntl(sp.fd, F_GET_SEALS);
	assert_true(seals >= 0 && (seals & F_SEAL_WRITE) && (seals & F_SEAL_SHRINK));
	assert_memory_equal(sp.map, big, SCANPROTO_INLINE_MAX + 1);
	spool_close(&sp);
	free(big);

	fd = spool_sealed_copy("hello", 5);
	assert_true(fd >= 0);
	seals = fcntl(fd, F_GET_SEALS);
	assert_true(seals >= 0 && (seals & F_SEAL_WRITE) && (seals & F_SEAL_GROW)
	    && (seals & F_SEAL_SHRINK) && (seals & F_SEAL_SEAL));
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(write(fd, "x", 1), -1);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_roundtrip),
		cmocka_unit_test(test_request_rcpt_dsn),
		cmocka_unit_test(test_result_roundtrip),
		cmocka_unit_test(test_action_names),
		cmocka_unit_test(test_request_hostile),
		cmocka_unit_test(test_result_hostile),
		cmocka_unit_test(test_send_recv_fd),
		cmocka_unit_test(test_extra_fds_closed),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_send_too_big),
		cmocka_unit_test(test_inline_msg),
		cmocka_unit_test(test_spool_small),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
