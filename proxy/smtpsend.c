/* smtpsend.c - blocking SMTP client with deadlines; see smtpsend.h.
 *
 * The socket is non-blocking and every wait is a poll() bounded by the
 * time left to the step's deadline (CLOCK_MONOTONIC), so a silent or slow
 * server costs at most the configured timeout, never a hang.  Replies go
 * through the strict reply parser the proxy uses (smtp_reply_line); the
 * message through the same dot-stuffing encoder as the proxy's way out.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy/monotime.h"
#include "proxy/dataframe.h"
#include "proxy/smtpsend.h"

#define SS_LINE_MAX 2048       /* longest reply line accepted */
#define SS_OUT_CHUNK 65536     /* message bytes batched per write */


static int ss_fail(struct smtpsend *c, const char *what, int e)
{
	if (e != 0)
		snprintf(c->err, sizeof(c->err), "%s: %s", what, strerror(e));
	else
		snprintf(c->err, sizeof(c->err), "%s", what);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	return -1;
}

/* wait_fd - poll for ev until deadline; 1 ready, 0 timed out, -1 error */
static int wait_fd(int fd, short ev, long long deadline)
{
	struct pollfd p = { .fd = fd, .events = ev };
	long long left;
	int n;

	for (;;) {
		left = deadline - monotime_ms();
		if (left <= 0)
			return 0;
		n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/* write_all - len bytes, each write making progress within timeout_ms */
static int write_all(struct smtpsend *c, const char *p, size_t len, unsigned timeout_ms)
{
	ssize_t w;
	int r;

	while (len > 0) {
		w = send(c->fd, p, len, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			len -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return ss_fail(c, "write", errno);
		r = wait_fd(c->fd, POLLOUT, monotime_ms() + timeout_ms);
		if (r == 0)
			return ss_fail(c, "write: timed out", 0);
		if (r < 0)
			return ss_fail(c, "poll", errno);
	}
	return 0;
}

/* read_reply - one complete reply into *r, within timeout_ms */
static int read_reply(struct smtpsend *c, unsigned timeout_ms, struct smtp_reply *r)
{
	long long deadline = monotime_ms() + timeout_ms;
	char *lf;
	size_t n;
	ssize_t got;
	int done, w;

	memset(r, 0, sizeof(*r));
	for (;;) {
		while ((lf = memchr(c->in, '\n', c->inlen)) != NULL) {
			n = (size_t)(lf - c->in);
			if (n > 0 && c->in[n - 1] == '\r')
				n--;
			done = smtp_reply_line(r, c->in, n);
			c->inlen -= (size_t)(lf - c->in) + 1;
			memmove(c->in, lf + 1, c->inlen);
			if (done < 0)
				return ss_fail(c, "malformed reply from the server", 0);
			if (done == 1)
				return 0;
		}
		if (c->inlen >= SS_LINE_MAX || c->inlen >= sizeof(c->in))
			return ss_fail(c, "reply line too long", 0);
		got = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
		if (got > 0) {
			c->inlen += (size_t)got;
			continue;
		}
		if (got == 0)
			return ss_fail(c, "the server closed the connection", 0);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return ss_fail(c, "read", errno);
		w = wait_fd(c->fd, POLLIN, deadline);
		if (w == 0)
			return ss_fail(c, "no reply from the server in time", 0);
		if (w < 0)
			return ss_fail(c, "poll", errno);
	}
}

int smtpsend_connect(struct smtpsend *c, const struct netaddr *a, unsigned timeout_ms,
                     struct smtp_reply *greeting)
{
	long long deadline = monotime_ms() + timeout_ms;
	socklen_t sl;
	int one = 1, e = 0, w;

	memset(c, 0, sizeof(*c));
	c->fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return ss_fail(c, "socket", errno);
	/* one write per command and no Nagle wait (see DESIGN.md) */
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
		if (errno != EINPROGRESS)
			return ss_fail(c, "connect", errno);
		w = wait_fd(c->fd, POLLOUT, deadline);
		if (w == 0)
			return ss_fail(c, "connect: timed out", 0);
		if (w < 0)
			return ss_fail(c, "poll", errno);
		sl = sizeof(e);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &sl) < 0)
			e = errno;
		if (e != 0)
			return ss_fail(c, "connect", e);
	}
	return read_reply(c, timeout_ms, greeting);
}

int smtpsend_command(struct smtpsend *c, const char *line, unsigned timeout_ms,
                     struct smtp_reply *r)
{
	char buf[SS_LINE_MAX + 3];
	size_t n = strlen(line);

	if (c->fd < 0)
		return ss_fail(c, "not connected", 0);
	if (n > SS_LINE_MAX || strpbrk(line, "\r\n") != NULL)
		return ss_fail(c, "refusing to send a command line with CR/LF or too long", 0);
	memcpy(buf, line, n);
	memcpy(buf + n, "\r\n", 2);
	if (write_all(c, buf, n + 2, timeout_ms) < 0)
		return -1;
	return read_reply(c, timeout_ms, r);
}

struct data_out {
	struct smtpsend *c;
	unsigned timeout_ms;
	char buf[SS_OUT_CHUNK];
	size_t len;
};

static int data_flush(struct data_out *o)
{
	if (o->len > 0 && write_all(o->c, o->buf, o->len, o->timeout_ms) < 0)
		return -1;
	o->len = 0;
	return 0;
}

static int data_put(void *arg, const char *p, size_t len)
{
	struct data_out *o = arg;

	while (len > 0) {
		size_t room = sizeof(o->buf) - o->len, k = len < room ? len : room;

		memcpy(o->buf + o->len, p, k);
		o->len += k;
		p += k;
		len -= k;
		if (o->len == sizeof(o->buf) && data_flush(o) < 0)
			return -1;
	}
	return 0;
}

int smtpsend_data(struct smtpsend *c, const char *msg, size_t len, unsigned write_ms,
                  unsigned reply_ms, struct smtp_reply *r)
{
	static struct data_out o;	/* 64 KiB: not on the stack; one caller */
	struct data_encoder enc;

	if (c->fd < 0)
		return ss_fail(c, "not connected", 0);
	memset(&o, 0, offsetof(struct data_out, buf));
	o.c = c;
	o.timeout_ms = write_ms;
	o.len = 0;
	data_encoder_init(&enc);
	if (data_encoder_feed(&enc, msg, len, data_put, &o) < 0
	    || data_encoder_finish(&enc, data_put, &o) < 0 || data_flush(&o) < 0)
		return c->fd < 0 ? -1 : ss_fail(c, "sending the message failed", 0);
	c->msg_sent = 1;
	return read_reply(c, reply_ms, r);
}

int smtpsend_bdat(struct smtpsend *c, const char *msg, size_t len, unsigned write_ms,
                  unsigned reply_ms, struct smtp_reply *r)
{
	char cmd[64];
	int n;

	if (c->fd < 0)
		return ss_fail(c, "not connected", 0);
	n = snprintf(cmd, sizeof(cmd), "BDAT %zu LAST\r\n", len);
	/* the command and the octets in two writes: the server reads exactly
	 * len octets after the line, whatever they hold */
	if (write_all(c, cmd, (size_t)n, write_ms) < 0 || write_all(c, msg, len, write_ms) < 0)
		return -1;
	c->msg_sent = 1;
	return read_reply(c, reply_ms, r);
}

void smtpsend_close(struct smtpsend *c, unsigned timeout_ms)
{
	struct smtp_reply r;

	if (c->fd >= 0)
		(void)smtpsend_command(c, "QUIT", timeout_ms, &r);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

char *smtpsend_reply_text(const struct smtp_reply *r, char *out, size_t outsz)
{
	size_t o = 0;

	if (outsz == 0)
		return out;
	for (size_t i = 0; i < r->len && r->text[i] != '\0' && o + 1 < outsz; i++) {
		char ch = r->text[i];

		if (ch == '\r')
			continue;
		if (ch == '\n') {
			if (i + 1 < r->len && r->text[i + 1] != '\0')
				out[o++] = ' ';
			continue;
		}
		out[o++] = ch;
	}
	out[o] = '\0';
	return out;
}
