/* unit_scan.c - the scanner tests' requests, results and fake scanner
 * (unit_scan.h) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "tests/unit/unit_scan.h"
#include "tests/unit/unit_tmpdir.h"

/* all_bytes - 1..255, NUL-terminated */
static char *all_bytes(void)
{
	char *s = malloc(256);

	assert_non_null(s);
	for (int i = 1; i < 256; i++)
		s[i - 1] = (char)i;
	s[255] = '\0';
	return s;
}

void unit_scan_fill_request(struct scan_request *r)
{
	memset(r, 0, sizeof(*r));
	r->id = UINT64_MAX - 1;
	strcpy(r->session_id, "0123456789abcdef");
	r->listener = strdup("in");
	r->direction = MW_OUTBOUND;
	r->client_ip = strdup("2001:db8::1");
	r->client_port = 65535;
	r->client_name = strdup("");
	r->helo = all_bytes();
	r->mail_from = strdup("a\"b\\c@example.org");
	r->mail_params = strdup("SIZE=100 BODY=8BITMIME");
	r->nrcpts = 3;
	r->rcpts = calloc(3, sizeof(char *));
	r->rcpts[0] = strdup("x@example.org");
	r->rcpts[1] = strdup("\xff\xfe\xc3\x28@bad.utf8");
	r->rcpts[2] = strdup("");
	r->size = 1ULL << 40;
	r->auth_user = strdup("bob");
	r->tls = strdup("TLSv1.3 TLS_AES_256_GCM_SHA384");
	r->timeout_ms = 86400000;
}

/* desc_text - valid UTF-8 (a euro sign), a quote, then every byte 1..255 */
static char *desc_text(void)
{
	static const char head[] = "Subject contains \"x\" \xe2\x82\xac ";
	char *all = all_bytes(), *s = malloc(sizeof head + 255);

	assert_non_null(s);
	memcpy(s, head, sizeof head - 1);
	memcpy(s + sizeof head - 1, all, 256);
	free(all);
	return s;
}

void unit_scan_fill_result(struct scan_result *r)
{
	memset(r, 0, sizeof(*r));
	r->id = 42;
	r->action = MW_TAG;
	r->score = 7.3;
	r->required = 5.0;
	r->nsymbols = 2;
	r->symbols = calloc(2, sizeof(*r->symbols));
	strcpy(r->symbols[0].name, "SYM_A");
	r->symbols[0].score = 6.1;
	r->symbols[0].desc = desc_text();
	strcpy(r->symbols[0].filter, "example");
	strcpy(r->symbols[1].name, "SYM_B");
	r->symbols[1].score = -1.25;
	strcpy(r->symbols[1].filter, "other_1");
	r->nedits = 4;
	r->edits = calloc(4, sizeof(*r->edits));
	r->edits[0].op = HE_REMOVE;
	r->edits[0].name = strdup("X-Spam-*");
	r->edits[1].op = HE_ADD;
	r->edits[1].name = strdup("X-Spam-Status");
	r->edits[1].value = strdup("Yes, score=7.3 required=5.0 tests=SYM_A,\r\n\tSYM_B");
	r->edits[2].op = HE_CHANGE;
	r->edits[2].name = strdup("Subject");
	r->edits[2].value = strdup("[SPAM] hi \xff");
	r->edits[3].op = HE_REMOVE_AT;
	r->edits[3].name = strdup("Authentication-Results");
	r->edits[3].index = 2;
	strcpy(r->quarantine_id, "20261127T013000-3f9a0c1d");
	strcpy(r->client_name, "mail.example.org");
	r->scan_ms = 1.5;
	strcpy(r->timed_out, "spamd=spamd_timeout clamd=scan_deadline");
}

void unit_scan_assert_filled(const struct scan_result *b, const struct scan_result *a)
{
	assert_true(b->id == 42);
	assert_int_equal(b->action, MW_TAG);
	assert_true(b->score == 7.3 && b->required == 5.0 && b->scan_ms == 1.5);
	assert_int_equal(b->nsymbols, 2);
	assert_string_equal(b->symbols[0].name, "SYM_A");
	assert_true(b->symbols[0].score == 6.1);
	assert_string_equal(b->symbols[0].desc, a->symbols[0].desc);
	assert_string_equal(b->symbols[0].filter, "example");
	assert_string_equal(b->symbols[1].name, "SYM_B");
	assert_null(b->symbols[1].desc);
	assert_true(b->symbols[1].score == -1.25);
	assert_string_equal(b->symbols[1].filter, "other_1");
	assert_int_equal(b->nedits, 4);
	assert_int_equal(b->edits[0].op, HE_REMOVE);
	assert_string_equal(b->edits[0].name, "X-Spam-*");
	assert_null(b->edits[0].value);
	assert_int_equal(b->edits[1].op, HE_ADD);
	assert_string_equal(b->edits[1].name, "X-Spam-Status");
	assert_string_equal(b->edits[1].value, a->edits[1].value);
	assert_int_equal(b->edits[2].op, HE_CHANGE);
	assert_string_equal(b->edits[2].name, "Subject");
	assert_string_equal(b->edits[2].value, a->edits[2].value);
	assert_int_equal(b->edits[3].op, HE_REMOVE_AT);
	assert_string_equal(b->edits[3].name, "Authentication-Results");
	assert_int_equal(b->edits[3].index, 2);
	assert_null(b->edits[3].value);
	assert_string_equal(b->quarantine_id, a->quarantine_id);
	assert_string_equal(b->client_name, "mail.example.org");
	assert_string_equal(b->timed_out, "spamd=spamd_timeout clamd=scan_deadline");
	assert_string_equal(b->reply, "");
	assert_string_equal(b->error, "");
}

struct scan_request unit_scan_small_request(void)
{
	struct scan_request r;

	unit_scan_fill_request(&r);
	r.msg = (const unsigned char *)"Subject: x\r\n\r\nbody\r\n";
	r.msg_len = strlen((const char *)r.msg);
	r.msg_inline = 1;
	return r;
}

void unit_scan_free_small(struct scan_request *r)
{
	r->msg = NULL;         /* a string literal */
	scan_request_free(r);
}

void unit_scan_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

int unit_scan_listen(struct sockaddr_un *addr, socklen_t *len)
{
	int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	assert_true(l >= 0);
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	snprintf(addr->sun_path, sizeof(addr->sun_path), "%s/scan.sock", unit_dir);
	*len = (socklen_t)sizeof(*addr);
	assert_int_equal(bind(l, (struct sockaddr *)addr, *len), 0);
	assert_int_equal(listen(l, 8), 0);
	return l;
}

int unit_scan_answer(int c, int flags)
{
	struct scan_request rq;
	struct scan_result rs;
	unsigned char *msg;
	int fd, sent;

	if (scanproto_recv_request(c, &rq, &fd, &msg, flags) != 1)
		return 0;
	unit_scan_fill_result(&rs);
	rs.id = rq.id;
	sent = scanproto_send_result(c, &rs);
	scan_result_free(&rs);
	if (fd >= 0)
		close(fd);
	free(msg);
	scan_request_free(&rq);
	return sent == 0 ? 1 : -1;
}

void unit_scan_on_done(void *arg, struct scan_result *res)
{
	struct unit_scan_got *got = arg;

	got->done++;
	got->action = res->action;
	snprintf(got->error, sizeof(got->error), "%s", res->error);
}

void unit_scan_loop_until(struct event_base *base, const struct unit_scan_got *got)
{
	for (int i = 0; i < 400 && !got->done; i++) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(5000);
	}
}
