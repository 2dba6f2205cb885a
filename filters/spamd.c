/* spamd.c - the built-in "spamd" filter: ask an existing SpamAssassin
 * spamd (spamc protocol, SPAMC/1.5 SYMBOLS) about the message, for sites
 * that want SpamAssassin's full Perl rule set beside mailwarden's own.
 *
 * spamd's score becomes the symbol SPAMD (scaled by spamd_weight), and
 * each rule it matched a symbol SA_<RULE> of score 0 (the names show in
 * the audit log and X-Spam-Status; the score is counted once, in SPAMD).
 *
 * One connection per message, the whole exchange within spamd_timeout
 * (connect, send, answer), or what is left of the scan's deadline if less
 * (deadline.h); a message larger than spamd_max_size is not
 * sent (SPAMD_SKIPPED).  spamd unreachable, slow or answering nonsense:
 * logged, SPAMD_FAIL of score 0, and the message goes on - a missing
 * second opinion must not stop mail.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "filters/builtin.h"
#include "filters/deadline.h"
#include "filters/filter_api.h"
#include "proxy/netaddr.h"
#include "proxy/sbuf.h"

#define REPLY_MAX   (64 * 1024)
#define MAX_RULES   64          /* SA_* symbols per message */
#define SCORE_MAX   10000.0     /* SpamAssassin's own extremes are +-100 per rule */

struct spamd {
	const struct config *cfg;
	struct netaddr addr;
	char   where[256];
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int spamd_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	struct spamd *s = xcalloc(1, sizeof(*s));
	char e[256];

	s->cfg = env->cfg;
	snprintf(s->where, sizeof(s->where), "%s", env->cfg->spamd_address);
	if (netaddr_parse(env->cfg->spamd_address, 0, &s->addr, e, sizeof(e)) < 0) {
		snprintf(err, errlen, "spamd_address: %s", e);
		free(s);
		return -1;
	}
	*instance = s;
	return 0;
}

static void spamd_fini(void *instance)
{
	free(instance);
}

/* wait_fd - poll for ev until the deadline; 0 ready, -1 timeout/error */
static int wait_fd(int fd, short ev, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int64_t left;
	int r;

	for (;;) {
		left = deadline - mono_ms();
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&p, 1, (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

static int send_all(int fd, const void *buf, size_t len, int64_t deadline)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(fd, POLLOUT, deadline) < 0)
				return -1;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* exchange - one SYMBOLS request; the whole reply in out.  0, or -1 with
 * a reason in why */
static int exchange(struct spamd *s, const unsigned char *msg, size_t len, struct sbuf *out,
                    char *why, size_t whylen)
{
	int capped;
	unsigned budget = deadline_cap(s->cfg->spamd_timeout, &capped);
	int64_t deadline = mono_ms() + budget;
	char head[128], buf[8192];
	int fd, rc = -1, soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (budget == 0) {
		/* nothing left of the scan's deadline: not even a connect */
		snprintf(why, whylen, "no time left of the scan's deadline");
		deadline_timed_out("spamd_timeout");
		return -1;
	}
	fd = socket(s->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(why, whylen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)&s->addr.ss, s->addr.len) < 0) {
		if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, deadline) < 0
		    || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
			int e = soerr ? soerr : errno;

			snprintf(why, whylen, "connect: %s", strerror(e));
			if (e == ETIMEDOUT)
				deadline_timed_out("spamd_timeout");
			goto out;
		}
	}
	snprintf(head, sizeof(head), "SYMBOLS SPAMC/1.5\r\nContent-length: %zu\r\nUser: mailwarden\r\n\r\n", len);
	if (send_all(fd, head, strlen(head), deadline) < 0 || send_all(fd, msg, len, deadline) < 0) {
		int e = errno;

		snprintf(why, whylen, "send: %s", strerror(e));
		if (e == ETIMEDOUT)
			deadline_timed_out("spamd_timeout");
		goto out;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(fd, POLLIN, deadline) < 0) {
				int e = errno;

				snprintf(why, whylen, "no answer within %u ms%s", budget,
				    capped ? ", the rest of the scan's deadline" : "");
				if (e == ETIMEDOUT)
					deadline_timed_out("spamd_timeout");
				goto out;
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(why, whylen, "recv: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (sbuf_add(out, buf, (size_t)n) < 0) {
			snprintf(why, whylen, "answer longer than %d bytes", REPLY_MAX);
			goto out;
		}
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

/* parse - "SPAMD/1.x 0 EX_OK", headers with "Spam: True ; 8.8 / 5.0" and
 * "Content-length: N", empty line, N bytes of "RULE,RULE".  0, or -1 with
 * why.  The reply ends when spamd closes, and a close in the middle looks
 * like any other: only the empty line and a body of the announced length
 * tell a whole reply from a cut one ("Spam: True ; 1" of "... ; 15.5"
 * would otherwise be a score of 1).  spamd answers a SYMBOLS of protocol
 * 1.3 or later with a Content-length every time (spamd.raw, check()), so
 * an answer without one (or with two) is not spamd's and fails: a body cut
 * short would otherwise be taken for the whole list of rules. */
static int parse(const char *r, size_t len, double *score, const char **rules, char *why, size_t whylen)
{
	const char *end = r + len, *line = r, *body = NULL;
	int have_score = 0, first = 1;
	long long clen = -1;

	if (len == 0) {
		snprintf(why, whylen, "closed without an answer");
		return -1;
	}
	while (line < end) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t n = nl ? (size_t)(nl - line) : (size_t)(end - line);
		char l[512];

		if (n > 0 && line[n - 1] == '\r')
			n--;
		snprintf(l, sizeof(l), "%.*s", (int)(n < sizeof(l) - 1 ? n : sizeof(l) - 1), line);
		line = nl ? nl + 1 : end;
		if (first) {
			int code;

			first = 0;
			if (sscanf(l, "SPAMD/%*d.%*d %d", &code) != 1) {
				snprintf(why, whylen, "not a spamd answer");
				return -1;
			}
			if (code != 0) {
				snprintf(why, whylen, "spamd error: %.200s", l);
				return -1;
			}
			continue;
		}
		if (nl == NULL)
			break;          /* a last line without its end: cut */
		if (l[0] == '\0') {
			body = line;
			break;
		}
		if (strncasecmp(l, "Spam:", 5) == 0) {
			const char *semi = strchr(l, ';');
			char *e;

			if (semi != NULL) {
				*score = strtod(semi + 1, &e);
				have_score = e != semi + 1;
			}
		} else if (strncasecmp(l, "Content-length:", 15) == 0) {
			char *e;

			if (clen >= 0) {
				snprintf(why, whylen, "two Content-length fields");
				return -1;
			}
			errno = 0;
			clen = strtoll(l + 15, &e, 10);
			if (e == l + 15 || *e != '\0' || clen < 0 || errno != 0) {
				snprintf(why, whylen, "bad Content-length: %.100s", l + 15);
				return -1;
			}
		}
	}
	if (body == NULL) {
		snprintf(why, whylen, "incomplete answer (%zu bytes, no end of headers)", len);
		return -1;
	}
	if (clen < 0) {
		snprintf(why, whylen, "no Content-length in the answer (%zu bytes of body)", (size_t)(end - body));
		return -1;
	}
	if ((size_t)(end - body) != (size_t)clen) {
		snprintf(why, whylen, "Content-length %lld but %zu bytes of body", clen, (size_t)(end - body));
		return -1;
	}
	if (!have_score) {
		snprintf(why, whylen, "no score in the answer");
		return -1;
	}
	/* nan or inf would make every comparison with the thresholds false */
	if (!isfinite(*score) || fabs(*score) > SCORE_MAX) {
		snprintf(why, whylen, "score out of range: %g", *score);
		return -1;
	}
	*rules = body;
	return 0;
}

static void spamd_eom(struct mw_ctx *ctx)
{
	struct spamd *s = mw_instance(ctx);
	size_t len, nrules = 0;
	const unsigned char *msg = mw_message(ctx, &len);
	struct sbuf reply;
	char why[300];
	const char *rules = NULL, *p;
	double score = 0;

	if (len > s->cfg->spamd_max_size) {
		mw_symbol(ctx, "SPAMD_SKIPPED", 0, "message of %zu bytes not sent to spamd", len);
		return;
	}
	sbuf_init(&reply, REPLY_MAX);
	if (exchange(s, msg, len, &reply, why, sizeof(why)) < 0
	    || parse(reply.data ? reply.data : "", reply.len, &score, &rules, why, sizeof(why)) < 0) {
		mw_log(ctx, LOG_WARNING, "spamd %s: %s; going on without it", s->where, why);
		mw_symbol(ctx, "SPAMD_FAIL", 0, "spamd %s: %s", s->where, why);
		sbuf_free(&reply);
		return;
	}
	mw_symbol(ctx, "SPAMD", score * s->cfg->spamd_weight, "SpamAssassin spamd score %.2f", score);
	for (p = rules; *p != '\0' && nrules < MAX_RULES;) {
		size_t n = strcspn(p, ",\r\n"), k, o = 3;
		char sym[64] = "SA_";

		for (k = 0; k < n && o < sizeof(sym) - 1; k++) {
			char c = p[k];

			if (c >= 'a' && c <= 'z')
				c = (char)(c - 32);
			if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
				sym[o++] = c;
		}
		sym[o] = '\0';
		if (o > 3) {
			mw_symbol(ctx, sym, 0, "SpamAssassin rule %.*s", (int)(n < 100 ? n : 100), p);
			nrules++;
		}
		p += n;
		p += strspn(p, ",\r\n ");
	}
	sbuf_free(&reply);
}

static const struct mw_filter_ops spamd_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "spamd",
	.fini = spamd_fini,
	.on_eom = spamd_eom,
};

const struct builtin_filter builtin_spamd = {
	.name = "spamd",
	.ops = &spamd_ops,
	.setup = spamd_setup,
};
