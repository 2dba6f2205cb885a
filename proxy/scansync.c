/* scansync.c - see scansync.h */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "proxy/log.h"
#include "proxy/monotime.h"
#include "sbuf.h"
#include "scanconn.h"
#include "scansync.h"

#define IDLE_MAX 64

struct scansync {
	pthread_mutex_t lock;
	struct sockaddr_un addr;
	socklen_t addrlen;            /* 0: no scanner known yet */
	unsigned gen;                 /* bumped by every new address */
	int idle[IDLE_MAX];
	unsigned idle_gen[IDLE_MAX];
	size_t nidle;
	uint64_t next_id;
};

struct scansync *scansync_new(void)
{
	struct scansync *ss = xcalloc(1, sizeof(*ss));

	pthread_mutex_init(&ss->lock, NULL);
	ss->next_id = 1;
	return ss;
}

void scansync_free(struct scansync *ss)
{
	size_t i;

	if (ss == NULL)
		return;
	for (i = 0; i < ss->nidle; i++)
		close(ss->idle[i]);
	pthread_mutex_destroy(&ss->lock);
	free(ss);
}

void scansync_set_address(struct scansync *ss, const struct sockaddr_un *addr, socklen_t len)
{
	size_t i;

	pthread_mutex_lock(&ss->lock);
	if (len > sizeof(ss->addr))
		len = sizeof(ss->addr);
	memcpy(&ss->addr, addr, len);
	ss->addrlen = len;
	ss->gen++;
	for (i = 0; i < ss->nidle; i++)
		close(ss->idle[i]);
	ss->nidle = 0;
	pthread_mutex_unlock(&ss->lock);
}

/* set_sndtimeo - sends (and a connect: a unix socket's connect waits for
 * room in the scanner's backlog as long as SO_SNDTIMEO says, for ever
 * without it) give up after ms */
static void set_sndtimeo(int sock, long long ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* take - an idle connection to the current scanner (*kept = 1), or a
 * new one (*kept = 0; always when fresh) whose connect waits at most ms;
 * -1 with errno */
static int take(struct scansync *ss, int fresh, long long ms, unsigned *gen, uint64_t *id,
                int *kept)
{
	struct sockaddr_un addr;
	socklen_t len;
	int fd;

	pthread_mutex_lock(&ss->lock);
	*id = ss->next_id++;
	*gen = ss->gen;
	len = ss->addrlen;
	addr = ss->addr;
	while (!fresh && ss->nidle > 0) {
		ss->nidle--;
		if (ss->idle_gen[ss->nidle] == ss->gen) {
			fd = ss->idle[ss->nidle];
			pthread_mutex_unlock(&ss->lock);
			*kept = 1;
			return fd;
		}
		close(ss->idle[ss->nidle]);
	}
	pthread_mutex_unlock(&ss->lock);
	*kept = 0;
	if (len == 0) {
		errno = ENOTCONN;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	set_sndtimeo(fd, ms);
	if (connect(fd, (struct sockaddr *)&addr, len) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static void give_back(struct scansync *ss, int fd, unsigned gen)
{
	pthread_mutex_lock(&ss->lock);
	if (gen == ss->gen && ss->nidle < IDLE_MAX) {
		ss->idle[ss->nidle] = fd;
		ss->idle_gen[ss->nidle] = gen;
		ss->nidle++;
		fd = -1;
	}
	pthread_mutex_unlock(&ss->lock);
	if (fd >= 0)
		close(fd);
}


int scansync_scan(struct scansync *ss, struct scan_request *req, int fd, unsigned timeout_ms,
                  struct scan_result *res, char *err, size_t errlen)
{
	return scansync_scan_progress(ss, req, fd, timeout_ms, NULL, res, err, errlen);
}

int scansync_scan_progress(struct scansync *ss, struct scan_request *req, int fd,
                           unsigned timeout_ms, const struct scansync_progress *pg,
                           struct scan_result *res, char *err, size_t errlen)
{
	long long deadline = monotime_ms() + timeout_ms;
	long long tick = pg != NULL && pg->every_ms > 0 ? monotime_ms() + pg->every_ms : 0;
	unsigned gen;
	int sock, r, kept, again = 0;

	memset(res, 0, sizeof(*res));
	req->timeout_ms = timeout_ms;	/* the scanner answers within it */
	req->sent_ms = deadline - timeout_ms;	/* ... and starts it only before then */
	for (;;) {
		long long left = deadline - monotime_ms();

		if (left <= 0) {
			snprintf(err, errlen, "no scanner connection within %u ms", timeout_ms);
			return -2;
		}
		if ((sock = take(ss, again, left, &gen, &req->id, &kept)) < 0) {
			int e = errno;

			/* its backlog stayed full until the deadline */
			if (e == EAGAIN || e == EWOULDBLOCK) {
				snprintf(err, errlen, "connecting to the scanner: %s", strerror(e));
				return -2;
			}
			snprintf(err, errlen, "cannot reach the scanner: %s", strerror(e));
			return -1;
		}
		/* a full scanner queue must not block us past the deadline */
		set_sndtimeo(sock, left);
		r = scanproto_send_request(sock, req, fd);
		if (r == 0)
			break;
		int e = errno;

		close(sock);
		/* a kept connection to a scanner gone since (restarted): not
		 * the scanner of now; once more on a new connection (scanconn.h) */
		if (!again && scanconn_send_again(e, kept)) {
			slog(req->session_id, LOG_INFO, "scanner connection kept from before found closed "
			    "(%s: the scanner restarted?); sending once more on a new one", strerror(e));
			again = 1;
			continue;
		}
		/* SO_SNDTIMEO ran out: the scanner's queue is full */
		if (e == EAGAIN || e == EWOULDBLOCK) {
			snprintf(err, errlen, "sending to the scanner: %s", strerror(e));
			return -2;
		}
		if (scanconn_gone(e)) {
			snprintf(err, errlen, "sending to the scanner: %s%s", strerror(e),
			    again ? " (on a new connection, after a kept one was found closed)" : "");
			return -1;
		}
		/* the request itself (EMSGSIZE, ENOMEM, EMFILE for its memfd):
		 * not the scanner's being away */
		scanconn_unsent_why(e, err, errlen);
		return -3;
	}
	for (;;) {
		struct pollfd p = { .fd = sock, .events = POLLIN };
		long long now = monotime_ms(), left = deadline - now;

		if (left <= 0) {
			snprintf(err, errlen, "no answer from the scanner within %u ms", timeout_ms);
			close(sock);      /* its late answer must never meet another request */
			return -2;
		}
		if (tick != 0 && now >= tick) {
			pg->fn(pg->arg);
			tick = now + pg->every_ms;
		}
		if (tick != 0 && tick - now < left)
			left = tick - now;
		r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "waiting for the scanner: %s", strerror(errno));
			close(sock);
			return -1;
		}
		r = scanproto_recv_result(sock, res, 0);
		if (r <= 0) {
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r == 0)
				snprintf(err, errlen, "the scanner closed the connection");
			else if (errno == EBADMSG)
				snprintf(err, errlen, "the scanner sent a malformed answer");
			else	/* ECONNRESET: the scanner went away with it */
				snprintf(err, errlen, "reading from the scanner: %s", strerror(errno));
			close(sock);
			return -1;
		}
		if (res->id != req->id) {
			scan_result_free(res);
			memset(res, 0, sizeof(*res));
			snprintf(err, errlen, "the scanner sent a malformed or unrelated answer");
			close(sock);
			return -1;
		}
		give_back(ss, sock, gen);
		return 0;
	}
}
