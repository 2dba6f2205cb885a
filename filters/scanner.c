/* scanner.c - the scanner process: accept front-end connections on the
 * scanner socket, read scan requests, run them on a bounded pool of worker
 * threads, send each result back where its request came from.
 *
 * Shape: one thread runs a poll() loop (listening socket, connections, a
 * self-pipe for signals); N workers take jobs from a bounded FIFO and call
 * pipeline_scan.  The queue is bounded so an overloaded scanner answers
 * "tempfail, scanner busy" at once instead of letting requests age past
 * the front end's deadline.
 *
 * Connections are refcounted: the loop holds one reference while it reads
 * the connection, each job one more.  The fd is closed with the last
 * reference, so a front end that goes away while its scans run costs a
 * failed send (EPIPE, no signal) and never a send on a reused fd.  Results
 * are sent by the workers without a lock (one packet each: a
 * SOCK_SEQPACKET send is atomic, so concurrent sends never interleave)
 * with a send timeout, so a front end that stops reading cannot hold a
 * worker forever.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "filters/pipeline.h"
#include "filters/scanner.h"
#include "proxy/log.h"
#include "proxy/policy.h"
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"

#define SEND_TIMEOUT_S 10      /* a front end not reading results for this long is dropped */
#define SHUTDOWN_TICK_MS 50    /* poll period while draining at shutdown */

struct conn {
	int         fd;
	atomic_int  refs;
	atomic_int  dead;           /* a send failed: no more sends */
	unsigned long long no;      /* connection number, for logs */
};

struct job {
	struct job *next;
	struct conn *conn;          /* one reference */
	struct scan_request req;    /* owned */
	int         msgfd;          /* owned */
	unsigned char *msg;         /* owned; an inline message (req.msg points here) */
};

struct scanner {
	struct config   *cfg;
	struct pipeline *pipe;
	pthread_mutex_t  lock;      /* guards the queue and counters below */
	pthread_cond_t   cond;      /* a job was queued, or stopping */
	struct job      *head, *tail;
	unsigned         queued, running, nthreads;
	int              stopping;  /* workers leave once the queue is empty */
};

int scanner_ready_fd = -1;

static volatile sig_atomic_t got_term;
static int sig_wfd = -1;

static void on_term(int sig)
{
	int saved = errno;
	ssize_t r;

	(void)sig;
	got_term = 1;
	r = write(sig_wfd, "t", 1);
	(void)r;
	errno = saved;
}

/* --- connections ----------------------------------------------------------- */

static struct conn *conn_new(int fd, unsigned long long no)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	c->fd = fd;
	atomic_init(&c->refs, 1);
	atomic_init(&c->dead, 0);
	c->no = no;
	return c;
}

static struct conn *conn_ref(struct conn *c)
{
	atomic_fetch_add(&c->refs, 1);
	return c;
}

static void conn_unref(struct conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	close(c->fd);
	free(c);
}

/* send_result - one result packet on c.  A result too big for a packet
 * loses its descriptions, then becomes a tempfail. */
static void send_result(struct scanner *s, struct conn *c, struct scan_result *res,
                        const char *sid)
{
	size_t i;
	int r;

	if (atomic_load(&c->dead))
		return;
	r = scanproto_send_result(c->fd, res);
	if (r < 0 && errno == EMSGSIZE) {
		for (i = 0; i < res->nsymbols; i++) {
			free(res->symbols[i].desc);
			res->symbols[i].desc = NULL;
		}
		r = scanproto_send_result(c->fd, res);
	}
	if (r < 0 && errno == EMSGSIZE) {
		struct scan_result small;

		slog(sid, LOG_ERR, "scan id=%llu: result too large for one packet",
		    (unsigned long long)res->id);
		memset(&small, 0, sizeof(small));
		small.id = res->id;
		small.action = MW_TEMPFAIL;
		snprintf(small.error, sizeof(small.error), "result too large");
		policy_reply(s->cfg, MW_TEMPFAIL, NULL, small.reply, sizeof(small.reply));
		r = scanproto_send_result(c->fd, &small);
	}
	if (r < 0 && !atomic_exchange(&c->dead, 1)) {	/* the first failure says it */
		if (errno != EPIPE && errno != ECONNRESET)
			slog_errno(sid, LOG_WARNING, "conn=%llu: cannot send result id=%llu, "
			    "dropping the connection", c->no, (unsigned long long)res->id);
		shutdown(c->fd, SHUT_RDWR);	/* the loop sees the hangup */
	}
}

/* answer_now - a tempfail result sent from the loop, not scanned. */
static void answer_now(struct scanner *s, struct conn *c, uint64_t id, const char *sid,
                       const char *error)
{
	struct scan_result res;

	memset(&res, 0, sizeof(res));
	res.id = id;
	res.action = MW_TEMPFAIL;
	snprintf(res.error, sizeof(res.error), "%s", error);
	policy_reply(s->cfg, MW_TEMPFAIL, NULL, res.reply, sizeof(res.reply));
	send_result(s, c, &res, sid);
}

static void job_free(struct job *jb)
{
	if (jb->msgfd >= 0)
		close(jb->msgfd);
	free(jb->msg);
	scan_request_free(&jb->req);
	conn_unref(jb->conn);
	free(jb);
}

/* --- workers ----------------------------------------------------------------- */

static void *worker(void *arg)
{
	struct scanner *s = arg;
	struct scan_result res;
	struct job *jb;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		/* under s->lock here: the end of one job and the start of the
		 * next share one critical section */
		while (s->head == NULL && !s->stopping)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->head == NULL) {
			pthread_mutex_unlock(&s->lock);
			return NULL;
		}
		jb = s->head;
		s->head = jb->next;
		if (s->head == NULL)
			s->tail = NULL;
		s->queued--;
		s->running++;
		pthread_mutex_unlock(&s->lock);

		pipeline_scan(s->pipe, &jb->req, jb->msgfd, &res);
		if (jb->msgfd >= 0)
			close(jb->msgfd);
		jb->msgfd = -1;
		slog(jb->req.session_id, LOG_DEBUG, "scan id=%llu action=%s score=%.2f "
		    "symbols=%zu ms=%.1f", (unsigned long long)res.id,
		    mw_action_name(res.action), res.score, res.nsymbols, res.scan_ms);
		send_result(s, jb->conn, &res, jb->req.session_id);
		scan_result_free(&res);
		job_free(jb);

		pthread_mutex_lock(&s->lock);
		s->running--;
	}
}

/* --- the loop ---------------------------------------------------------------- */

/* requests read in one go, not queued yet */
struct batch {
	struct job *head, **tail;
};

/* read_request - one packet from c, appended to b as a job.  Returns 1
 * when a request was taken, 0 when nothing was there, -1 to drop the
 * connection (EOF, receive error), -2 to drop it and hang up (malformed). */
static int read_request(struct scanner *s, struct conn *c, int flags, struct batch *b)
{
	struct scan_request req;
	struct job *jb;
	unsigned char *msg;
	int fd, r;

	r = scanproto_recv_request(c->fd, &req, &fd, &msg, flags);
	if (r == 0)
		return -1;
	if (r < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == EBADMSG) {
			slog(NULL, LOG_WARNING, "conn=%llu: malformed request (bad fields, "
			    "truncated, or a message that does not match its stage); closing "
			    "the connection", c->no);
			return -2;
		}
		if (errno != ECONNRESET)
			slog_errno(NULL, LOG_WARNING, "conn=%llu: receive", c->no);
		return -1;
	}
	/* scanproto checked that the message (descriptor or inline, never
	 * both) matches the stage */
	jb = xcalloc(1, sizeof(*jb));
	jb->conn = conn_ref(c);
	jb->req = req;
	jb->msgfd = fd;
	jb->msg = msg;
	*b->tail = jb;
	b->tail = &jb->next;
	return 1;
}

/* enqueue - the requests read in one batch join the queue under one lock
 * (not one lock and wake-up each, which the workers then contend for);
 * those that do not fit are answered "scanner busy" at once. */
static void enqueue(struct scanner *s, struct batch *b)
{
	struct job *jb, *next, *refused = NULL, **rtail = &refused;
	unsigned added = 0, idle, wake;

	if (b->head == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	idle = s->nthreads - s->running;
	for (jb = b->head; jb != NULL; jb = next) {
		next = jb->next;
		jb->next = NULL;
		if (s->queued >= s->cfg->scanner_queue + (s->nthreads - s->running)) {
			*rtail = jb;
			rtail = &jb->next;
			continue;
		}
		if (s->tail != NULL)
			s->tail->next = jb;
		else
			s->head = jb;
		s->tail = jb;
		s->queued++;
		added++;
	}
	/* one wake-up per new job, no more than there are idle workers; sent
	 * after the unlock, so that a woken worker does not run straight into
	 * the lock we still hold (and sleep again on it) */
	wake = added < idle ? added : idle;
	pthread_mutex_unlock(&s->lock);
	while (wake-- > 0)
		pthread_cond_signal(&s->cond);
	b->head = NULL;
	b->tail = &b->head;
	for (jb = refused; jb != NULL; jb = next) {
		next = jb->next;
		slog(jb->req.session_id, LOG_WARNING, "scan id=%llu: queue full, answering "
		    "tempfail", (unsigned long long)jb->req.id);
		answer_now(s, jb->conn, jb->req.id, jb->req.session_id, "scanner busy");
		job_free(jb);
	}
}

static int peer_ok(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return 0;
	return cred.uid == 0 || cred.uid == geteuid();
}

static long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void setup_signals(void)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_term;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* a parent that had them blocked (sigwait-style) passes that on */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int scanner_main(struct config *cfg, int listen_fd)
{
	struct scanner s;
	struct conn **conns = NULL;
	struct pollfd *pfd = NULL;
	size_t nconns = 0, cap = 0, i, np, polled;
	pthread_t *threads;
	sigset_t block, old;
	unsigned long long conn_no = 0;
	long long deadline = 0;
	int sp[2], shutting = 0, timeout, fd, fl;
	char err[512], drain[64];
	struct timeval tv;
	struct job *jb;

	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	s.pipe = pipeline_new(cfg, err, sizeof(err));
	if (s.pipe == NULL) {
		slog(NULL, LOG_ERR, "scanner: %s", err);
		return 1;
	}
	if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0) {
		slog_errno(NULL, LOG_ERR, "scanner: pipe");
		pipeline_free(s.pipe);
		return 1;
	}
	sig_wfd = sp[1];
	setup_signals();
	fl = fcntl(listen_fd, F_GETFL);
	if (fl >= 0)
		fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK);

	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	s.nthreads = cfg->scanner_threads ? cfg->scanner_threads : 1;
	threads = xcalloc(s.nthreads, sizeof(*threads));
	/* the workers never take signals: the loop does */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (i = 0; i < s.nthreads; i++)
		if (pthread_create(&threads[i], NULL, worker, &s) != 0)
			die("scanner: cannot create worker thread");
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	slog(NULL, LOG_INFO, "scanner: ready, %u threads, queue %u", s.nthreads,
	    cfg->scanner_queue);
	if (scanner_ready_fd >= 0) {
		ssize_t w = write(scanner_ready_fd, "R", 1);

		(void)w;
		close(scanner_ready_fd);
		scanner_ready_fd = -1;
	}

	for (;;) {
		if (got_term && !shutting) {
			shutting = 1;
			deadline = now_ms() + cfg->shutdown_timeout;
			slog(NULL, LOG_INFO, "scanner: shutting down, finishing scans in flight");
			listen_fd = -1;		/* stop accepting; the master keeps the socket */
			for (i = 0; i < nconns; i++)
				shutdown(conns[i]->fd, SHUT_RD);
		}
		timeout = -1;
		if (shutting) {
			unsigned busy;

			pthread_mutex_lock(&s.lock);
			if (nconns == 0 && !s.stopping) {
				s.stopping = 1;	/* no more input: workers end when idle */
				pthread_cond_broadcast(&s.cond);
			}
			busy = s.queued + s.running;
			pthread_mutex_unlock(&s.lock);
			if (nconns == 0 && busy == 0)
				break;
			if (now_ms() >= deadline)
				break;
			timeout = SHUTDOWN_TICK_MS;
		}

		pfd = xrealloc(pfd, (nconns + 2) * sizeof(*pfd));
		np = 0;
		pfd[np].fd = sp[0];
		pfd[np++].events = POLLIN;
		if (listen_fd >= 0) {
			pfd[np].fd = listen_fd;
			pfd[np++].events = POLLIN;
		}
		for (i = 0; i < nconns; i++) {
			pfd[np].fd = conns[i]->fd;
			pfd[np++].events = POLLIN;
		}
		polled = nconns;	/* conns[0..polled) are pfd[np - polled..np) */
		if (poll(pfd, np, timeout) < 0) {
			if (errno == EINTR)
				continue;
			slog_errno(NULL, LOG_ERR, "scanner: poll");
			break;
		}
		if (pfd[0].revents & POLLIN)
			while (read(sp[0], drain, sizeof(drain)) > 0)
				;
		if (listen_fd >= 0 && (pfd[1].revents & POLLIN)) {
			fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
				    && errno != ECONNABORTED)
					slog_errno(NULL, LOG_WARNING, "scanner: accept");
			} else if (!peer_ok(fd)) {
				slog(NULL, LOG_WARNING, "scanner: connection from a foreign uid refused");
				close(fd);
			} else {
				tv.tv_sec = SEND_TIMEOUT_S;
				tv.tv_usec = 0;
				setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
				if (nconns == cap) {
					cap = cap ? cap * 2 : 8;
					conns = xrealloc(conns, cap * sizeof(*conns));
				}
				conns[nconns++] = conn_new(fd, ++conn_no);
				slog(NULL, LOG_DEBUG, "scanner: conn=%llu accepted", conn_no);
			}
		}
		/* the polled connections; those accepted just now stay as they are */
		{
			size_t base = np - polled, k = 0;

			for (i = 0; i < nconns; i++) {
				struct conn *c = conns[i];
				short re = i < polled ? pfd[base + i].revents : 0;

				if (re & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
					struct batch b = { NULL, &b.head };
					int r = (re & POLLNVAL) ? -1 : read_request(&s, c, 0, &b);
					/* take what else is waiting, without blocking: one
					 * poll per batch, not per request (bounded, for
					 * fairness) */
					for (int more = 0; r == 1 && more < 64; more++)
						r = read_request(&s, c, MSG_DONTWAIT, &b);
					enqueue(&s, &b);

					if (r < 0) {
						slog(NULL, LOG_DEBUG, "scanner: conn=%llu closed", c->no);
						/* malformed: hang up now; at EOF, results
						 * still due may go out (shutdown drain) */
						if (r == -2)
							shutdown(c->fd, SHUT_RDWR);
						conn_unref(c);
						continue;
					}
				}
				conns[k++] = c;
			}
			nconns = k;
		}
	}

	/* deadline passed, or a poll failure: whatever was not started is
	 * answered now; scans still running are abandoned with the process */
	pthread_mutex_lock(&s.lock);
	while ((jb = s.head) != NULL) {
		s.head = jb->next;
		s.queued--;
		pthread_mutex_unlock(&s.lock);
		answer_now(&s, jb->conn, jb->req.id, jb->req.session_id, "scanner shutting down");
		job_free(jb);
		pthread_mutex_lock(&s.lock);
	}
	s.tail = NULL;
	s.stopping = 1;
	pthread_cond_broadcast(&s.cond);
	i = s.running;
	pthread_mutex_unlock(&s.lock);
	for (np = 0; np < nconns; np++) {
		shutdown(conns[np]->fd, SHUT_RDWR);
		conn_unref(conns[np]);
	}
	free(conns);
	free(pfd);
	if (i == 0) {
		for (np = 0; np < s.nthreads; np++)
			pthread_join(threads[np], NULL);
		pipeline_free(s.pipe);
		pthread_cond_destroy(&s.cond);
		pthread_mutex_destroy(&s.lock);
		slog(NULL, LOG_INFO, "scanner: stopped");
	} else
		slog(NULL, LOG_WARNING, "scanner: shutdown deadline passed with %zu scans "
		    "running; exiting without them", i);
	free(threads);
	close(sp[0]);
	close(sp[1]);
	sig_wfd = -1;
	return 0;
}
