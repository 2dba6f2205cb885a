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
 * Who reads the requests: an idle worker waits in epoll_wait on one epoll
 * set shared by the workers, which holds every connection (edge-triggered)
 * and an eventfd that says "jobs queued".  The kernel wakes one waiter of a
 * shared epoll set per event, so a request that finds a worker idle wakes
 * that worker alone: it reads the request and scans it itself.  Handing
 * each request from the loop thread to a worker cost two wake-ups per
 * message instead of one, about half of the scanner's CPU per message.
 * The loop polls the connections itself only while no worker is idle, so
 * requests are still read at once when every worker is busy and queued, or
 * refused as busy, under the same rule whoever reads them.
 *
 * Connections are refcounted: the loop's list holds one reference until
 * the connection ends (only the loop adds and drops them; a worker that
 * reads one sees the end and leaves it to the loop), a worker reading it
 * one for that while, each job one more.  The fd is closed with the last
 * reference, so a front end that goes away while its scans run costs a
 * failed send (EPIPE, no signal) and never a send on a reused fd.  Results
 * are sent by the workers without a lock (one packet each: a
 * SOCK_SEQPACKET send is atomic, so concurrent sends never interleave)
 * with a send timeout, so a front end that stops reading cannot hold a
 * worker forever.
 *
 * A big request (its encoding in a memfd of up to 64 MiB) is read only
 * within a memory budget, per connection and in all (scanmem.h): past it,
 * it is answered "scanner busy" unread and the connection read on.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "filters/deadline.h"
#include "proxy/monotime.h"
#include "filters/pipeline.h"
#include "filters/scanmem.h"
#include "filters/scanner.h"
#include "filters/scanstale.h"
#include "proxy/episode.h"
#include "proxy/log.h"
#include "proxy/policy.h"
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"
#include "proxy/stats.h"
#include "proxy/thread.h"

#define SEND_TIMEOUT_S 10      /* a front end not reading results for this long is dropped */
#define SHUTDOWN_TICK_MS 50    /* poll period while draining at shutdown */
#define DRAIN_MARGIN_MS  5000  /* a retired scanner's, past the front ends' waits */
/* A scan still running this long after its front end gave up is logged
 * with the filter that runs (once per scan) and counted: a plugin that
 * loops or blocks holds its thread for ever, and once every thread is
 * held all mail gets "scanner busy" with nothing in the log to say why.
 * The loop looks every WATCH_TICK_MS (also while idle: one wake-up a
 * second, where waking it as each scan starts would cost a write per
 * message). */
#define OVERRUN_GRACE_MS 1000
#define WATCH_TICK_MS    1000

struct conn {
	int         fd;
	atomic_int  refs;
	atomic_int  dead;           /* a send failed: no more sends */
	atomic_int  rd_end;         /* a worker read EOF (-1) or garbage (-2): the loop drops it */
	unsigned long long no;      /* connection number, for logs and epoll */
	size_t      big_held;       /* bytes its big requests hold (guarded by scanner.mem's lock) */
};

struct job {
	struct job *next;
	struct conn *conn;          /* one reference */
	struct scan_request req;    /* owned */
	int         msgfd;          /* owned */
	unsigned char *msg;         /* owned; an inline message (req.msg points here) */
	struct scanmem_hold *hold;  /* owned; a big request's share of scanner.mem, else NULL */
	long long   peer_seen_us;   /* its connection last seen open (scanstale.h) */
};

struct scanner {
	struct config   *cfg;
	struct pipeline *pipe;
	pthread_mutex_t  lock;      /* guards the queue, counters and conns below */
	struct job      *head, *tail;
	unsigned         queued, running, nthreads;
	unsigned         parked;    /* workers waiting in epoll_wait */
	int              stopping;  /* workers leave once the queue is empty */
	int              epfd;      /* the workers' epoll set: connections and wake_fd */
	int              wake_fd;   /* eventfd: jobs queued, or stopping (the worker it wakes resets it) */
	int              loop_fd;   /* the loop's self-pipe: a worker saw a connection end, or none is parked */
	struct conn    **conns;     /* the loop adds and removes, workers look up */
	size_t           nconns, cap;
	struct deadline_watch *watches; /* one per worker: its scan, for the loop to see overruns */
	unsigned         nwatched;  /* watches taken by the workers so far */
	struct scanmem   mem;       /* what big requests hold (scanmem.h) */
};

int scanner_ready_fd = -1;

static volatile sig_atomic_t got_term, got_drain;
static int sig_wfd = -1;

static void on_term(int sig)
{
	int saved = errno;
	ssize_t r;

	if (sig == SIGUSR2)
		got_drain = 1;
	else
		got_term = 1;
	r = write(sig_wfd, "t", 1);
	(void)r;
	errno = saved;
}

/* drain_ms - how long a retired scanner finishes its scans: as long as a
 * front end that runs may still wait for one (scan_timeout for the proxy,
 * milter_timeout for the milter; it stopped sending here before the
 * master retired it), and a margin for the answer's way back.  Past that
 * nobody waits for the result; before, a scan longer than
 * shutdown_timeout was dropped by every reload (451, or under the milter
 * milter_default_action, perhaps accepted unscanned). */
static long long drain_ms(const struct config *cfg)
{
	unsigned wait = cfg->scan_timeout;	/* the proxy's (its listeners) */

	if (cfg->milter_listen[0] != '\0' && (cfg->nlisteners == 0 || cfg->milter_timeout > wait))
		wait = cfg->milter_timeout;
	return (long long)wait + DRAIN_MARGIN_MS;
}

/* --- connections ----------------------------------------------------------- */

static struct conn *conn_new(int fd, unsigned long long no)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	c->fd = fd;
	atomic_init(&c->refs, 1);
	atomic_init(&c->dead, 0);
	atomic_init(&c->rd_end, 0);
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

/* given_up - is req, read from c, one its front end has given up on
 * (scanstale.h)?  peer_closed: c's hangup as last seen.  If so it is
 * logged, once (the request is dropped here), and answered tempfail
 * (nobody waits for the answer: the proxy logs it as no longer awaited,
 * a closed connection takes nothing) */
static int given_up(struct scanner *s, struct conn *c, const struct scan_request *req,
                    int peer_closed)
{
	char why[200];

	if (!scanstale_check(req, s->cfg->scan_timeout, deadline_now_ms(),
	    peer_closed, why, sizeof(why)))
		return 0;
	slog(req->session_id, LOG_WARNING, "scan id=%llu: %s", (unsigned long long)req->id, why);
	answer_now(s, c, req->id, req->session_id, why);
	return 1;
}

static void job_free(struct scanner *s, struct job *jb)
{
	if (jb->msgfd >= 0)
		close(jb->msgfd);
	free(jb->msg);
	scan_request_free(&jb->req);
	scanmem_give(&s->mem, jb->hold);	/* after the free: what it held is free */
	conn_unref(jb->conn);
	free(jb);
}

/* --- wake-ups ---------------------------------------------------------------- */

/* wake_worker - one parked worker, through the eventfd in the workers'
 * epoll set.  One at a time: a worker that takes a job and sees more
 * queued wakes the next (see worker), so a burst does not wake them all at
 * once onto the same lock. */
static void wake_worker(struct scanner *s)
{
	uint64_t one = 1;
	ssize_t r = write(s->wake_fd, &one, sizeof(one));

	(void)r;	/* EAGAIN: the counter is full, so a wake-up is pending anyway */
}

/* poke_loop - the loop should look again: a connection ended under a
 * worker, or no worker is parked any more (the loop reads the connections
 * then) */
static void poke_loop(struct scanner *s)
{
	ssize_t r = write(s->loop_fd, "w", 1);

	(void)r;	/* EAGAIN: the pipe is full, the loop wakes anyway */
}

/* --- reading requests -------------------------------------------------------- */

/* requests read in one go, not queued yet */
struct batch {
	struct job *head, **tail;
	int         hup;            /* the connection's POLLHUP, as the wait that */
	long long   seen_us;        /* woke the reader reported it at seen_us */
};

/* what admit_big decided about a big request, for read_request */
struct admit {
	struct scanner *s;
	struct conn *c;
	uint64_t n;                 /* the encoding's length */
	struct scanmem_hold *hold;  /* its share, when taken */
	enum scanmem_refusal why;   /* else why not */
};

/* admit_big - a big request of n bytes is read only if reading it fits
 * the budget (scanmem.h); asked before anything of its size is allocated */
static int admit_big(void *arg, uint64_t n, const struct stat *st)
{
	struct admit *a = arg;

	a->n = n;
	a->hold = scanmem_take(&a->s->mem, &a->c->big_held, scanproto_big_read_cost(n),
	    st->st_dev, st->st_ino, &a->why);
	return a->hold != NULL ? 0 : -1;
}

/* read_request - one packet from c, appended to b as a job (a big request
 * past the memory budget is answered "scanner busy" at once instead).
 * Returns 1 when a request was taken, 0 when nothing was there, -1 to drop
 * the connection (EOF, receive error), -2 to drop it and hang up
 * (malformed).  Never blocks: a worker and the loop may both read a
 * connection, and either may find the packet gone. */
static int read_request(struct scanner *s, struct conn *c, struct batch *b)
{
	struct admit a = { s, c, 0, NULL, SCANMEM_OK };
	struct scan_request req;
	struct job *jb;
	unsigned char *msg;
	int fd, r;

	r = scanproto_recv_request_admit(c->fd, &req, &fd, &msg, MSG_DONTWAIT, admit_big, &a);
	if (r == 2) {
		slog(req.session_id, LOG_WARNING, "scan id=%llu: big request of %llu bytes past "
		    "the memory for big requests (%s), answering tempfail",
		    (unsigned long long)req.id, (unsigned long long)a.n, scanmem_refusal_name(a.why));
		/* the front end logs the answer's error: it names the budget,
		 * not just "busy", which sends the admin looking at the queue */
		char why[160];
		snprintf(why, sizeof(why), "scanner busy: big request of %llu bytes past the scanner's "
		    "memory for big requests (%s)", (unsigned long long)a.n, scanmem_refusal_name(a.why));
		answer_now(s, c, req.id, req.session_id, why);
		return 1;
	}
	if (r != 1 && a.hold != NULL) {
		scanmem_give(&s->mem, a.hold);	/* taken, then malformed */
		a.hold = NULL;
	}
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
	/* the front end's wait has begun: time in the queue counts against
	 * the scan's deadline (pipeline.c) */
	jb->req.received_ms = deadline_now_ms();
	jb->msgfd = fd;
	jb->msg = msg;
	if (a.hold != NULL) {
		/* decoded, its copy freed: it holds no more than this */
		scanmem_shrink(&s->mem, a.hold, scan_request_mem(&jb->req, (size_t)a.n));
		jb->hold = a.hold;
	}
	/* one its front end gave up on while it waited unread takes no
	 * place in the queue */
	jb->peer_seen_us = b->seen_us;
	if (given_up(s, c, &jb->req, b->hup)) {
		job_free(s, jb);
		return 1;
	}
	*b->tail = jb;
	b->tail = &jb->next;
	return 1;
}

/* enqueue - the requests read in one batch join the queue under one lock
 * (not one lock and wake-up each, which the workers then contend for);
 * those that do not fit are answered "scanner busy" at once.  self: the
 * caller is an idle worker that takes a job from the queue next, so the
 * first job needs nobody woken. */
static void enqueue(struct scanner *s, struct batch *b, int self)
{
	struct job *jb, *next, *refused = NULL, **rtail = &refused;
	unsigned added = 0;
	int wake;

	if (b->head == NULL)
		return;
	pthread_mutex_lock(&s->lock);
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
	/* sent after the unlock, so that a woken worker does not run straight
	 * into the lock we still hold (and sleep again on it) */
	wake = added > (unsigned)self && s->parked > 0;
	pthread_mutex_unlock(&s->lock);
	if (wake)
		wake_worker(s);
	b->head = NULL;
	b->tail = &b->head;
	for (jb = refused; jb != NULL; jb = next) {
		next = jb->next;
		slog(jb->req.session_id, LOG_WARNING, "scan id=%llu: queue full, answering "
		    "tempfail", (unsigned long long)jb->req.id);
		answer_now(s, jb->conn, jb->req.id, jb->req.session_id, "scanner busy");
		job_free(s, jb);
	}
}

/* read_batches - what is waiting on c, in batches of up to 64 (each
 * queued under one lock).  hup, seen_us: c's hangup as the wait that
 * found it readable reported it, and when (no poll() of its own here,
 * scanstale.h).  Returns 0 once c is empty, or read_request's -1/-2 when
 * c is to be dropped. */
static int read_batches(struct scanner *s, struct conn *c, int self, int hup, long long seen_us)
{
	struct batch b = { NULL, &b.head, hup, seen_us };
	int r, n;

	do {
		for (n = 0, r = 1; r == 1 && n < 64; n++)
			r = read_request(s, c, &b);
		if (b.head != NULL) {
			enqueue(s, &b, self);
			self = 0;
		}
	} while (r == 1);
	return r;
}

/* worker_read - a worker was woken for connection number no: read what
 * is there (the connection is edge-triggered in the epoll set, so all of
 * it).  hup, seen_us: its EPOLLHUP in that wake-up, and when.  An end of
 * the connection is the loop's to handle. */
static void worker_read(struct scanner *s, unsigned long long no, int hup, long long seen_us)
{
	struct conn *c = NULL;
	size_t i;
	int r;

	pthread_mutex_lock(&s->lock);
	for (i = 0; i < s->nconns; i++)
		if (s->conns[i]->no == no) {
			c = conn_ref(s->conns[i]);
			break;
		}
	pthread_mutex_unlock(&s->lock);
	if (c == NULL)
		return;		/* dropped meanwhile */
	if (atomic_load(&c->rd_end) == 0) {
		r = read_batches(s, c, 1, hup, seen_us);
		if (r < 0) {
			int zero = 0;

			if (atomic_compare_exchange_strong(&c->rd_end, &zero, r))
				poke_loop(s);
		}
	}
	conn_unref(c);
}

/* --- workers ----------------------------------------------------------------- */

static void *worker(void *arg)
{
	struct scanner *s = arg;
	struct epoll_event ev[8];
	struct scan_result res;
	struct job *jb;
	int chain, poke, n, i, peer;
	long long seen_us;

	pthread_mutex_lock(&s->lock);
	deadline_watch_use(&s->watches[s->nwatched++]);
	for (;;) {
		/* under s->lock here: the end of one job and the start of the
		 * next share one critical section */
		if (s->head == NULL && s->stopping) {
			pthread_mutex_unlock(&s->lock);
			wake_worker(s);		/* the next parked one leaves too */
			return NULL;
		}
		if (s->head == NULL) {
			s->parked++;
			pthread_mutex_unlock(&s->lock);
			n = epoll_wait(s->epfd, ev, (int)(sizeof(ev) / sizeof(ev[0])), -1);
			seen_us = scanstale_now_us();
			pthread_mutex_lock(&s->lock);
			s->parked--;
			poke = s->parked == 0;
			pthread_mutex_unlock(&s->lock);
			if (poke)
				poke_loop(s);	/* the loop reads the connections now */
			for (i = 0; i < n; i++) {
				if (ev[i].data.u64 == 0) {
					uint64_t v;
					ssize_t r = read(s->wake_fd, &v, sizeof(v));

					(void)r;
				} else {
					worker_read(s, ev[i].data.u64, (ev[i].events & EPOLLHUP) != 0,
					    seen_us);
				}
			}
			pthread_mutex_lock(&s->lock);
			continue;
		}
		jb = s->head;
		s->head = jb->next;
		if (s->head == NULL)
			s->tail = NULL;
		s->queued--;
		s->running++;
		chain = s->head != NULL && s->parked > 0;
		pthread_mutex_unlock(&s->lock);
		if (chain)
			wake_worker(s);

		/* given up on while it waited in the queue: its filters' side
		 * effects (rate limits, greylisting, autolearn) are not taken.
		 * A connection seen open just now (most often by this worker,
		 * which read the request and takes it at once) is not polled
		 * again: scanstale.h */
		peer = scanstale_peer_fresh(jb->peer_seen_us, scanstale_now_us()) ? 0
		    : scanstale_peer_closed(jb->conn->fd);
		if (given_up(s, jb->conn, &jb->req, peer)) {
			job_free(s, jb);
			pthread_mutex_lock(&s->lock);
			s->running--;
			continue;
		}
		pipeline_scan(s->pipe, &jb->req, jb->msgfd, &res);
		if (jb->msgfd >= 0)
			close(jb->msgfd);
		jb->msgfd = -1;
		slog(jb->req.session_id, LOG_DEBUG, "scan id=%llu action=%s score=%.2f "
		    "symbols=%zu ms=%.1f", (unsigned long long)res.id,
		    mw_action_name(res.action), res.score, res.nsymbols, res.scan_ms);
		send_result(s, jb->conn, &res, jb->req.session_id);
		scan_result_free(&res);
		job_free(s, jb);

		pthread_mutex_lock(&s->lock);
		s->running--;
	}
}

/* --- the loop ---------------------------------------------------------------- */

/* watch_overruns - log each scan whose filter still runs OVERRUN_GRACE_MS
 * past its front end's wait (once per scan), with how many threads are
 * held so; the thread stays held until the filter returns.  The loop's,
 * every WATCH_TICK_MS. */
static void watch_overruns(struct scanner *s, long long now)
{
	struct deadline_overdue od[8];
	size_t nod = 0, more = 0, k;
	unsigned i, nheld = 0;
	int held;

	/* a scan reported is marked so (deadline_watch_overdue): one past
	 * od's room is still counted and told, in one line for all such */
	for (i = 0; i < s->nthreads; i++) {
		struct deadline_overdue one;

		if (deadline_watch_overdue(&s->watches[i], now, OVERRUN_GRACE_MS, &one, &held)) {
			if (nod < sizeof(od) / sizeof(od[0]))
				od[nod++] = one;
			else
				more++;
		}
		nheld += (unsigned)held;
	}
	for (k = 0; k < more; k++)
		stats_scan_overrun();
	if (more > 0)
		slog(NULL, LOG_WARNING, "%zu more scans' filters still running past their front ends' "
		    "wait (%u of %u threads held)", more, nheld, s->nthreads);
	for (k = 0; k < nod; k++) {
		stats_scan_overrun();
		slog(od[k].session, LOG_WARNING, "scan id=%llu: filter %s still running (for %lld.%01lld s), "
		    "%lld.%01lld s past the front end's wait (it has answered without it); its scanner "
		    "thread is held until the filter returns (%u of %u threads held)", od[k].id,
		    od[k].filter, od[k].filter_ms / 1000, od[k].filter_ms % 1000 / 100,
		    od[k].past_ms / 1000, od[k].past_ms % 1000 / 100, nheld, s->nthreads);
	}
}

/* drop_ended - the connections whose reader (the loop or a worker) saw
 * their end leave the list and the epoll set; results still due may go
 * out (each job holds a reference) */
static void drop_ended(struct scanner *s)
{
	size_t i, k = 0;

	pthread_mutex_lock(&s->lock);
	for (i = 0; i < s->nconns; i++) {
		struct conn *c = s->conns[i];
		int r = atomic_load(&c->rd_end);

		if (r == 0) {
			s->conns[k++] = c;
			continue;
		}
		slog(NULL, LOG_DEBUG, "scanner: conn=%llu closed", c->no);
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		/* malformed: hang up now; at EOF, results still due may go
		 * out (shutdown drain) */
		if (r == -2)
			shutdown(c->fd, SHUT_RDWR);
		conn_unref(c);
	}
	s->nconns = k;
	pthread_mutex_unlock(&s->lock);
}

static int peer_ok(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return 0;
	return cred.uid == 0 || cred.uid == geteuid();
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
	sigaction(SIGUSR2, &sa, NULL);
	/* a parent that had them blocked (sigwait-style) passes that on */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* Out of descriptors, accept() fails with EMFILE and leaves the front
 * end's connection in the backlog and the socket readable: polled again
 * at once, the loop spun on it and logged each turn (64 million lines,
 * 2 GB of log, in two minutes, measured with prlimit on the scanner).
 * The listening socket then rests ACCEPT_PAUSE_MS between tries (the
 * front ends time their scans out meanwhile), with one log line when it
 * starts, one every EPISODE_LOG_MS while it lasts, one when it ends. */
#define ACCEPT_PAUSE_MS 100

struct accept_pause {
	long long until;       /* no accept() before this (now_ms) */
	struct episode ep;     /* its count: failed accept()s */
};

static void accept_failed(struct accept_pause *ap, int err)
{
	unsigned long tries;
	long long secs;

	ap->until = monotime_ms() + ACCEPT_PAUSE_MS;
	ap->ep.count++;
	switch (episode_step(&ap->ep, episode_now_ms(), &tries, &secs)) {
	case EPISODE_STARTS:
		errno = err;
		slog_errno(NULL, LOG_WARNING, "scanner: accept: front end connections wait until descriptors "
		    "free (retried every %d ms)", ACCEPT_PAUSE_MS);
		break;
	case EPISODE_LASTS:
		slog(NULL, LOG_WARNING, "scanner: still out of descriptors: %lu accept(s) failed in %lld s",
		    tries, secs);
		break;
	case EPISODE_QUIET:
		break;
	}
}

static void accept_worked(struct accept_pause *ap)
{
	unsigned long tries;
	long long secs;

	if (episode_end(&ap->ep, episode_now_ms(), &tries, &secs))
		slog(NULL, LOG_NOTICE, "scanner: accepting again (%lu failed accept(s) in the last %lld s)",
		    tries, secs);
}

int scanner_main(struct config *cfg, int listen_fd)
{
	struct accept_pause pause = { 0, { 0, 0, 0 } };
	struct scanner s;
	struct pollfd *pfd = NULL;
	size_t i, np, polled;
	pthread_t *threads;
	unsigned long long conn_no = 0;
	long long deadline = 0, next_watch = 0, now, seen_us;
	int sp[2], shutting = 0, draining = 0, timeout, fd, fl, watch;
	char err[512], drain[64];
	struct timeval tv;
	struct epoll_event ev;
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
	s.epfd = epoll_create1(EPOLL_CLOEXEC);
	s.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s.epfd < 0 || s.wake_fd < 0) {
		slog_errno(NULL, LOG_ERR, "scanner: epoll/eventfd");
		die("scanner: cannot set up the workers' wake-ups");
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;		/* level: a parked worker takes each wake-up */
	ev.data.u64 = 0;		/* connection numbers start at 1 */
	if (epoll_ctl(s.epfd, EPOLL_CTL_ADD, s.wake_fd, &ev) < 0)
		die("scanner: cannot set up the workers' wake-ups");
	s.loop_fd = sp[1];
	sig_wfd = sp[1];
	setup_signals();
	fl = fcntl(listen_fd, F_GETFL);
	if (fl >= 0)
		fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK);

	pthread_mutex_init(&s.lock, NULL);
	scanmem_init(&s.mem, SCANMEM_TOTAL_MAX, SCANMEM_CONN_MAX);
	s.nthreads = cfg->scanner_threads ? cfg->scanner_threads : 1;
	threads = xcalloc(s.nthreads, sizeof(*threads));
	s.watches = xcalloc(s.nthreads, sizeof(*s.watches));
	for (i = 0; i < s.nthreads; i++)
		deadline_watch_init(&s.watches[i]);
	/* the workers never take signals: the loop does */
	for (i = 0; i < s.nthreads; i++)
		if (thread_start_blocked(&threads[i], worker, &s) != 0)
			die("scanner: cannot create worker thread");
	slog(NULL, LOG_INFO, "scanner: ready, %u threads, queue %u", s.nthreads,
	    cfg->scanner_queue);
	if (scanner_ready_fd >= 0) {
		ssize_t w = write(scanner_ready_fd, "R", 1);

		(void)w;
		close(scanner_ready_fd);
		scanner_ready_fd = -1;
	}

	for (;;) {
		if ((got_term || got_drain) && !shutting) {
			shutting = 1;
			draining = !got_term;
			long long budget = draining ? drain_ms(cfg) : cfg->shutdown_timeout;

			deadline = monotime_ms() + budget;
			if (draining)
				slog(NULL, LOG_INFO, "scanner: retired, finishing scans in flight (for %lld s at most)",
				    budget / 1000);
			else
				slog(NULL, LOG_INFO, "scanner: shutting down, finishing scans in flight");
			/* closed, not just left alone: a connection made to it from
			 * now on is refused at once, where one left in its backlog
			 * was reset when this process ended (the front end's scan
			 * on it a 451) */
			close(listen_fd);
			listen_fd = -1;
			for (i = 0; i < s.nconns; i++)
				shutdown(s.conns[i]->fd, SHUT_RD);
		}
		if (got_term && draining) {
			/* the daemon stops while this one drains: its stop's budget */
			long long cut = monotime_ms() + cfg->shutdown_timeout;

			draining = 0;
			if (cut < deadline)
				deadline = cut;
			slog(NULL, LOG_INFO, "scanner: shutting down, finishing scans in flight");
		}
		timeout = -1;
		pthread_mutex_lock(&s.lock);
		/* the loop reads the connections while no worker waits on them
		 * (a worker that stops waiting leaves the last pokes us), and
		 * always while shutting down, to see them end */
		watch = shutting || s.parked == 0;
		if (shutting) {
			unsigned busy;

			if (s.nconns == 0 && !s.stopping) {
				s.stopping = 1;	/* no more input: workers end when idle */
				pthread_mutex_unlock(&s.lock);
				wake_worker(&s);
				pthread_mutex_lock(&s.lock);
			}
			busy = s.queued + s.running;
			if (s.nconns == 0 && busy == 0) {
				pthread_mutex_unlock(&s.lock);
				break;
			}
			if (monotime_ms() >= deadline) {
				pthread_mutex_unlock(&s.lock);
				break;
			}
			timeout = SHUTDOWN_TICK_MS;
		}
		pthread_mutex_unlock(&s.lock);

		pfd = xrealloc(pfd, (s.nconns + 2) * sizeof(*pfd));
		np = 0;
		pfd[np].fd = sp[0];
		pfd[np++].events = POLLIN;
		if (listen_fd >= 0) {
			long long rest = pause.until - monotime_ms();

			/* a negative fd keeps its place in pfd, and poll skips it */
			pfd[np].fd = rest > 0 ? -1 : listen_fd;
			pfd[np++].events = POLLIN;
			if (rest > 0 && (timeout < 0 || rest < timeout))
				timeout = (int)rest;
		}
		now = monotime_ms();
		if (now >= next_watch) {
			watch_overruns(&s, now);
			next_watch = now + WATCH_TICK_MS;
		}
		if (timeout < 0 || next_watch - now < timeout)
			timeout = (int)(next_watch - now);
		polled = watch ? s.nconns : 0;	/* conns[0..polled) are pfd[np..np + polled) */
		for (i = 0; i < polled; i++) {
			pfd[np + i].fd = s.conns[i]->fd;
			pfd[np + i].events = POLLIN;
		}
		if (poll(pfd, np + polled, timeout) < 0) {
			if (errno == EINTR)
				continue;
			slog_errno(NULL, LOG_ERR, "scanner: poll");
			break;
		}
		seen_us = scanstale_now_us();	/* of the revents below */
		if (pfd[0].revents & POLLIN)
			while (read(sp[0], drain, sizeof(drain)) > 0)
				;
		/* the polled connections first (accepting may move the array) */
		for (i = 0; i < polled; i++) {
			struct conn *c = s.conns[i];
			short re = pfd[np + i].revents;
			int r, zero = 0;

			if (!(re & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) || atomic_load(&c->rd_end))
				continue;
			/* take what is waiting, without blocking: a worker may
			 * have taken it first */
			r = (re & POLLNVAL) ? -1
			    : read_batches(&s, c, 0, (re & POLLHUP) != 0, seen_us);
			if (r < 0)
				atomic_compare_exchange_strong(&c->rd_end, &zero, r);
		}
		drop_ended(&s);
		if (listen_fd >= 0 && (pfd[1].revents & POLLIN)) {
			fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				accept_worked(&pause);
			if (fd < 0) {
				if (episode_accept_starved(errno))
					accept_failed(&pause, errno);
				else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
				    && errno != ECONNABORTED)
					slog_errno(NULL, LOG_WARNING, "scanner: accept");
			} else if (!peer_ok(fd)) {
				slog(NULL, LOG_WARNING, "scanner: connection from a foreign uid refused");
				close(fd);
			} else {
				struct conn *c = conn_new(fd, ++conn_no);

				tv.tv_sec = SEND_TIMEOUT_S;
				tv.tv_usec = 0;
				setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
				pthread_mutex_lock(&s.lock);
				if (s.nconns == s.cap) {
					s.cap = s.cap ? s.cap * 2 : 8;
					s.conns = xrealloc(s.conns, s.cap * sizeof(*s.conns));
				}
				s.conns[s.nconns++] = c;
				pthread_mutex_unlock(&s.lock);
				/* edge-triggered: one wake-up per arrival, and the
				 * worker it wakes reads all there is */
				memset(&ev, 0, sizeof(ev));
				ev.events = EPOLLIN | EPOLLET;
				ev.data.u64 = c->no;
				slog(NULL, LOG_DEBUG, "scanner: conn=%llu accepted", conn_no);
				if (epoll_ctl(s.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
					/* idle workers would never read it: the
					 * front end reconnects instead */
					slog_errno(NULL, LOG_WARNING, "scanner: conn=%llu: epoll", c->no);
					atomic_store(&c->rd_end, -1);
					drop_ended(&s);
				}
			}
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
		job_free(&s, jb);
		pthread_mutex_lock(&s.lock);
	}
	s.tail = NULL;
	s.stopping = 1;
	i = s.running;
	pthread_mutex_unlock(&s.lock);
	wake_worker(&s);
	pthread_mutex_lock(&s.lock);
	for (np = 0; np < s.nconns; np++) {
		shutdown(s.conns[np]->fd, SHUT_RDWR);
		conn_unref(s.conns[np]);
	}
	s.nconns = 0;
	/* workers look connections up under the lock only, and none is left:
	 * the array goes now, also when running scans are abandoned below */
	free(s.conns);
	s.conns = NULL;
	s.cap = 0;
	pthread_mutex_unlock(&s.lock);
	free(pfd);
	if (i == 0) {
		for (np = 0; np < s.nthreads; np++)
			pthread_join(threads[np], NULL);
		pipeline_free(s.pipe);
		for (np = 0; np < s.nthreads; np++)
			deadline_watch_destroy(&s.watches[np]);
		free(s.watches);
		pthread_mutex_destroy(&s.lock);
		scanmem_destroy(&s.mem);
		close(s.epfd);
		close(s.wake_fd);
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
