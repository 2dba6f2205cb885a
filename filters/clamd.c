/* clamd.c - the built-in "clamd" filter: the message sent to a running
 * clamd over its socket (clamd_socket: "/path" for a unix socket, or
 * "HOST:PORT" for TCP, resolved once in setup) with the INSTREAM command,
 * for sites that run one clamd (one signature set in memory) for many
 * services.
 *
 * One connection per scan (the message, then each content clamd cannot
 * open itself and each decoded leaf: av_scan_message in av.c; all within
 * the one clamd_timeout), non-blocking, with a deadline on
 * the connect (clamd_connect_timeout) and one on all of the message's
 * exchanges (clamd_timeout), each cut to what is left of the scan's
 * deadline (deadline.h).
 * Anything but a clean or infected answer (clamd down, refused, timed out,
 * a reply we cannot read, clamd's own ERROR) is a failure and gets
 * av_fail_action (tempfail by default): a message clamd did not look at
 * never passes silently.  clamd's "INSTREAM size limit exceeded"
 * (StreamMaxLength) is a scan limit (av_limit_action).
 *
 * Protocol (clamd(8)): "zINSTREAM\0", then chunks <4-byte length, network
 * order><data>, then a zero length; clamd answers one NUL-terminated line:
 * "stream: OK", "stream: NAME FOUND", or "... ERROR".
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "filters/av.h"
#include "filters/builtin.h"
#include "filters/deadline.h"
#include "proxy/monotime.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"
#include "proxy/netaddr.h"

#define CHUNK (64 * 1024)
#define REPLY_MAX 1024

struct clamd {
	const struct config *cfg;      /* borrowed */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char label[64];
};


/* wait_fd - poll fd for ev until the deadline.  1 ready, 0 timed out, -1 error */
static int wait_fd(int fd, short ev, long long deadline)
{
	struct pollfd p;
	long long left;
	int r;

	for (;;) {
		left = deadline - monotime_ms();
		if (left <= 0)
			return 0;
		p.fd = fd;
		p.events = ev;
		p.revents = 0;
		r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r > 0)
			return 1;
	}
}

/* send_all - 0, or -1 with why */
static int send_all(int fd, const void *buf, size_t len, long long deadline,
                    char *why, size_t whysz)
{
	const unsigned char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int r = wait_fd(fd, POLLOUT, deadline);

			if (r == 1)
				continue;
			snprintf(why, whysz, "clamd: %s while sending",
			    r == 0 ? "timed out" : strerror(errno));
			if (r == 0)
				deadline_timed_out("clamd_timeout");
			return -1;
		}
		snprintf(why, whysz, "clamd: send: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* clamd_connect - a connected non-blocking socket, or -1 with why */
static int clamd_connect(const struct clamd *d, char *why, size_t whysz)
{
	int fd = socket(d->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	long long deadline = monotime_ms() + deadline_cap(d->cfg->clamd_connect_timeout, NULL);
	int soerr = 0, r;
	socklen_t sl = sizeof(soerr);

	if (fd < 0) {
		snprintf(why, whysz, "clamd: socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)&d->addr, d->addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS && errno != EAGAIN) {
		snprintf(why, whysz, "clamd %.200s: connect: %s", d->cfg->clamd_socket, strerror(errno));
		close(fd);
		return -1;
	}
	r = wait_fd(fd, POLLOUT, deadline);
	if (r == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
		return fd;
	snprintf(why, whysz, "clamd %.200s: connect: %s", d->cfg->clamd_socket,
	    r == 0 ? "timed out" : strerror(soerr ? soerr : errno));
	if (r == 0)
		deadline_timed_out("clamd_connect_timeout");
	close(fd);
	return -1;
}

/* read_reply - clamd's one line, up to its NUL, into out.  0, or -1 with
 * why.  A line without its NUL (clamd closed or reset the connection in
 * the middle, or the line does not fit) is no answer: "stream: OK" may be
 * the start of "stream: OK.Exploit-1 FOUND", and a cut line must not
 * become a verdict. */
static int read_reply(int fd, char *out, size_t outsz, long long deadline,
                      char *why, size_t whysz)
{
	size_t n = 0;
	ssize_t r;

	for (;;) {
		r = recv(fd, out + n, outsz - 1 - n, 0);
		if (r > 0) {
			n += (size_t)r;
			if (memchr(out, '\0', n) != NULL)
				break;
			if (n == outsz - 1) {
				snprintf(why, whysz, "clamd: answer longer than %zu bytes", outsz - 1);
				return -1;
			}
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int w = wait_fd(fd, POLLIN, deadline);

			if (w == 1)
				continue;
			snprintf(why, whysz, "clamd: %s waiting for the verdict",
			    w == 0 ? "timed out" : strerror(errno));
			if (w == 0)
				deadline_timed_out("clamd_timeout");
			return -1;
		}
		if (n > 0) {
			out[n] = '\0';
			snprintf(why, whysz, "clamd: incomplete answer (%s before its end): %.60s",
			    r == 0 ? "closed" : strerror(errno), out);
			return -1;
		}
		if (r == 0)
			snprintf(why, whysz, "clamd closed the connection without a verdict");
		else
			snprintf(why, whysz, "clamd: recv: %s", strerror(errno));
		return -1;
	}
	out[n] = '\0';
	if (strlen(out) + 1 < n) {
		/* clamd answers one verdict per INSTREAM: "stream: OK\0" and
		 * then more is a peer we do not understand, not a clean scan */
		snprintf(why, whysz, "clamd: more after the answer: %.60s", out);
		return -1;
	}
	n = strlen(out);
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		out[--n] = '\0';
	if (n == 0) {
		snprintf(why, whysz, "clamd: empty answer");
		return -1;
	}
	return 0;
}

struct one_scan {
	struct clamd *d;
	long long deadline;          /* clamd_timeout, for all the scans of a message */
};

/* clamd_scan - one buffer through clamd, on a connection of its own
 * (av_scanner.scan) */
static enum av_result clamd_scan(void *arg, const unsigned char *msg, size_t len, const char *name,
                                 char *out, size_t outsz, uint64_t *counted)
{
	struct one_scan *o = arg;
	struct clamd *d = o->d;
	size_t off, n, rl;
	char why[300], rwhy[300], reply[REPLY_MAX];
	int fd, sent = -1;

	(void)name;
	*counted = len;
	if (deadline_left_ms() == 0) {
		/* nothing left of the scan's deadline: a failure like a timeout
		 * (av_fail_action), without a connection clamd would work for */
		deadline_timed_out("clamd_timeout");
		snprintf(out, outsz, "clamd: no time left of the scan's deadline");
		return AV_FAILED;
	}
	if ((fd = clamd_connect(d, why, sizeof(why))) < 0) {
		snprintf(out, outsz, "%s", why);
		return AV_FAILED;
	}
	why[0] = '\0';
	if (send_all(fd, "zINSTREAM", 10, o->deadline, why, sizeof(why)) == 0) {
		for (off = 0, sent = 0; off <= len && sent == 0; off += n) {
			uint32_t be;

			n = len - off < CHUNK ? len - off : CHUNK;
			be = htonl((uint32_t)n);
			/* n == 0 is the terminating zero-length chunk */
			sent = send_all(fd, &be, 4, o->deadline, why, sizeof(why));
			if (sent == 0 && n > 0)
				sent = send_all(fd, msg + off, n, o->deadline, why, sizeof(why));
			if (n == 0)
				break;
		}
	}
	/* clamd may stop reading and answer (size limit) before we are done
	 * sending: its answer counts whenever there is one */
	if (read_reply(fd, reply, sizeof(reply), o->deadline, rwhy, sizeof(rwhy)) < 0) {
		close(fd);
		/* no answer after a failed send: the send's reason is the one */
		snprintf(out, outsz, "%s", sent == 0 || why[0] == '\0' ? rwhy : why);
		return AV_FAILED;
	}
	close(fd);
	rl = strlen(reply);
	if (strcmp(reply, "stream: OK") == 0 && sent != 0) {
		/* clamd stopped reading before the end: OK would be a verdict on
		 * part of the message (a virus found early, or the size limit,
		 * still counts) */
		snprintf(out, outsz, "clamd: OK for part of the message (%.200s)", why);
		return AV_FAILED;
	}
	if (strcmp(reply, "stream: OK") == 0)
		return AV_CLEAN;
	if (strncmp(reply, "stream: ", 8) == 0 && rl > 14 && strcmp(reply + rl - 6, " FOUND") == 0) {
		reply[rl - 6] = '\0';
		snprintf(out, outsz, "%s", reply + 8);
		return av_limit_name(reply + 8) ? AV_LIMIT : AV_VIRUS;
	}
	snprintf(out, outsz, "clamd: %.200s", reply);
	return strstr(reply, "size limit exceeded") != NULL ? AV_LIMIT : AV_FAILED;
}

static void clamd_eom(struct mw_ctx *ctx)
{
	struct clamd *d = mw_instance(ctx);
	struct one_scan o = { .d = d, .deadline = monotime_ms() + deadline_cap(d->cfg->clamd_timeout, NULL) };
	struct av_scanner s = { .label = d->label, .arg = &o, .scan = clamd_scan };

	av_scan_message(ctx, d->cfg, &s);
}

static int clamd_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	const struct config *cfg = env->cfg;
	struct clamd *d = xcalloc(1, sizeof(*d));

	d->cfg = cfg;
	if (cfg->clamd_socket[0] == '/') {
		struct sockaddr_un *un = (struct sockaddr_un *)&d->addr;

		if (strlen(cfg->clamd_socket) >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "clamd_socket %s: path too long", cfg->clamd_socket);
			free(d);
			return -1;
		}
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, cfg->clamd_socket, strlen(cfg->clamd_socket) + 1);
		d->addrlen = sizeof(*un);
	} else {
		struct netaddr a;
		char e[256];

		if (netaddr_parse(cfg->clamd_socket, 0, &a, e, sizeof(e)) < 0) {
			snprintf(err, errlen, "clamd_socket %s: %s", cfg->clamd_socket, e);
			free(d);
			return -1;
		}
		memcpy(&d->addr, &a.ss, sizeof(a.ss));
		d->addrlen = a.len;
	}
	snprintf(d->label, sizeof(d->label), "ClamAV (clamd)");
	*instance = d;
	return 0;
}

static void clamd_fini(void *instance)
{
	free(instance);
}

static const struct mw_filter_ops clamd_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "clamd",
	.fini = clamd_fini,
	.on_eom = clamd_eom,
};

const struct builtin_filter builtin_clamd = {
	.name = "clamd",
	.ops = &clamd_ops,
	.setup = clamd_setup,
};
