/* scanclient.c - asynchronous client of the scanner; see scanclient.h.
 *
 * Each request waits in a hash table keyed by id, with its own deadline
 * timer.  A connection that fails (scanner crashed or restarted) fails the
 * requests sent on it with a tempfail result; the next submit connects
 * again.  A connection found gone at a submit with nothing in flight on it
 * (the scanner went away while it was idle, its EOF not read yet) is
 * replaced and the request sent once more (scanconn.h).
 * A request that cannot be sent for a reason of its own (too big, no
 * memory or descriptor for its memfd) fails alone: the connection carries
 * other sessions' scans, which it must not take down with it. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "monotime.h"
#include "sbuf.h"
#include "scanclient.h"
#include "scanconn.h"
#include "spool.h"

#define SC_BUCKETS 1024

struct sc_conn {
	int            fd;
	struct event  *rd;          /* read readiness */
	struct event  *wr;          /* write readiness while outq is not empty */
	unsigned       pending;     /* requests waiting for an answer on it */
	int            retired;     /* no new requests; closed when pending == 0 */
	struct sc_out *outq, *outq_tail;
	struct scanclient *sc;
	struct sc_conn *next;       /* retired list */
};

struct sc_out {                     /* a request on its way out */
	uint64_t       id;
	char          *pkt;         /* the encoded request (scan_request_encode); NULL once in envfd */
	size_t         pkt_len;     /* its length, in pkt or in envfd */
	int            envfd;       /* sealed memfd holding the encoding when it passes a packet, or -1 */
	int            fd;          /* the message's descriptor, or -1 */
	int            fd_owned;
	const unsigned char *msg;   /* an inline message, or NULL */
	size_t         msg_len;
	int            msg_owned;
	struct sc_out *next;
};

static void out_free(struct sc_out *o)
{
	free(o->pkt);
	if (o->envfd >= 0) close(o->envfd);
	if (o->fd_owned && o->fd >= 0) close(o->fd);
	if (o->msg_owned) free((void *)(uintptr_t)o->msg);
	free(o);
}

/* out_own - before o waits in the queue: its own copy of what it borrowed
 * (the session may go away before it leaves).  0 / -1 errno */
static int out_own(struct sc_out *o)
{
	if (o->fd >= 0 && !o->fd_owned) {
		if ((o->fd = fcntl(o->fd, F_DUPFD_CLOEXEC, 0)) < 0) return -1;
		o->fd_owned = 1;
	}
	if (o->msg != NULL && !o->msg_owned) {
		unsigned char *m = xmalloc(o->msg_len ? o->msg_len : 1);
		memcpy(m, o->msg, o->msg_len);
		o->msg = m;
		o->msg_owned = 1;
	}
	return 0;
}

/* out_send - one request: one packet with the message inline or as a
 * descriptor.  A message too big with its envelope for one packet goes as
 * a memfd, an envelope too big alone in a memfd of its own
 * (scanproto_send_big); o keeps what it became, for a retry after
 * EAGAIN.  0, or -1 with errno */
static int out_send(int sock, struct sc_out *o)
{
	if (o->envfd < 0 && o->msg != NULL) {
		if (scanproto_send_raw(sock, o->pkt, o->pkt_len, -1, o->msg, o->msg_len, 1) == 0) return 0;
		if (errno != EMSGSIZE) return -1;
		int fd = spool_sealed_copy((const char *)o->msg, o->msg_len);
		if (fd < 0) return -1;
		if (o->msg_owned) free((void *)(uintptr_t)o->msg);
		o->msg = NULL;
		o->msg_owned = 0;
		o->fd = fd;
		o->fd_owned = 1;
	}
	if (o->envfd < 0) {
		if (scanproto_send_raw(sock, o->pkt, o->pkt_len, o->fd, NULL, 0, 0) == 0) return 0;
		if (errno != EMSGSIZE) return -1;
		if ((o->envfd = scanproto_envelope_fd(o->pkt, o->pkt_len)) < 0) return -1;
		free(o->pkt);
		o->pkt = NULL;
	}
	return scanproto_send_big(sock, o->envfd, o->pkt_len, o->fd);
}

/* send_retry - errno of a send that may pass later (the socket is full) */
static int send_retry(int e)
{
	return e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS;
}

struct sc_req {
	uint64_t       id;
	scan_done_fn   cb;
	void          *arg;
	struct event  *timer;
	struct sc_conn *conn;
	struct scanclient *sc;
	int            send_err;    /* its packet could not be sent (errno): the timer fires at once */
	struct sc_req *next;        /* bucket chain */
};

struct scanclient {
	struct event_base *base;
	struct sockaddr_un addr;
	socklen_t          addrlen;
	struct sc_conn    *cur;
	struct sc_conn    *retired;
	struct sc_req     *bucket[SC_BUCKETS];
	uint64_t           next_id;
	unsigned           npending;
};

static void conn_fail(struct sc_conn *c, const char *why);

static struct sc_req **req_slot(struct scanclient *sc, uint64_t id)
{
	struct sc_req **pp = &sc->bucket[id % SC_BUCKETS];
	while (*pp && (*pp)->id != id) pp = &(*pp)->next;
	return pp;
}

static struct sc_req *req_take(struct scanclient *sc, uint64_t id)
{
	struct sc_req **pp = req_slot(sc, id), *r = *pp;
	if (r == NULL) return NULL;
	*pp = r->next;
	sc->npending--;
	if (r->conn) r->conn->pending--;
	event_free(r->timer);
	return r;
}

static void conn_close(struct sc_conn *c)
{
	struct scanclient *sc = c->sc;
	if (sc->cur == c) sc->cur = NULL;
	for (struct sc_conn **pp = &sc->retired; *pp; pp = &(*pp)->next)
		if (*pp == c) { *pp = c->next; break; }
	while (c->outq) {
		struct sc_out *o = c->outq;
		c->outq = o->next;
		out_free(o);
	}
	event_free(c->rd);
	event_free(c->wr);
	close(c->fd);
	free(c);
}

static void tempfail_result(struct scan_result *res, uint64_t id, const char *why)
{
	memset(res, 0, sizeof *res);
	res->id = id;
	res->action = MW_TEMPFAIL;
	snprintf(res->error, sizeof res->error, "%s", why);
	snprintf(res->reply, sizeof res->reply, "451 4.3.0 Temporary failure in content scan, try again later");
}

static void req_finish(struct sc_req *r, struct scan_result *res)
{
	scan_done_fn cb = r->cb;
	void *arg = r->arg;
	free(r);
	if (cb) cb(arg, res);
}

static void conn_maybe_close(struct sc_conn *c)
{
	if (c->retired && c->pending == 0 && c->outq == NULL) conn_close(c);
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sc_conn *c = arg;
	struct scanclient *sc = c->sc;
	for (;;) {
		struct scan_result res;
		int rc = scanproto_recv_result(c->fd, &res, 0);
		if (rc == 0) {
			conn_fail(c, "scanner closed the connection");
			return;
		}
		if (rc < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
			conn_fail(c, errno == EBADMSG ? "malformed result from scanner" : strerror(errno));
			return;
		}
		struct sc_req *r = req_take(sc, res.id);
		if (r == NULL) {
			slog(NULL, LOG_INFO, "scanner answered id=%llu, no longer awaited (deadline passed or session ended)",
			     (unsigned long long)res.id);
		} else {
			req_finish(r, &res);
		}
		scan_result_free(&res);
		/* the callback may have retired/closed nothing of ours: c is only
		 * closed here */
		if (c->retired && c->pending == 0 && c->outq == NULL) {
			conn_close(c);
			return;
		}
		/* nothing more is owed on c: skip the recvmsg that would only say
		 * EAGAIN (a late answer still wakes the level-triggered event) */
		if (c->pending == 0) break;
	}
}

/* req_fail_later - the request id could not be sent (errno e): its
 * callback runs from the loop, through its timer, with a tempfail (not
 * from here: conn_flush runs inside other calls) */
static void req_fail_later(struct scanclient *sc, uint64_t id, int e)
{
	struct sc_req *r = *req_slot(sc, id);
	if (r == NULL) return;        /* cancelled meanwhile */
	struct timeval now = { 0, 0 };
	r->send_err = e;
	evtimer_add(r->timer, &now);
}

/* conn_flush - send what waits in c's queue.  0 (all sent, or the rest
 * waits for the socket), or -1 with errno when the connection is gone.  A
 * request that cannot go for a reason of its own is dropped from the
 * queue and fails alone. */
static int conn_flush(struct sc_conn *c)
{
	while (c->outq) {
		struct sc_out *o = c->outq;
		int e = 0;
		if (out_send(c->fd, o) < 0) {
			e = errno;
			if (send_retry(e)) {
				event_add(c->wr, NULL);
				return 0;
			}
			if (scanconn_gone(e)) return -1;
			slog(NULL, LOG_WARNING, "scan id=%llu: the request could not be sent: %s",
			     (unsigned long long)o->id, strerror(e));
		}
		c->outq = o->next;
		if (c->outq == NULL) c->outq_tail = NULL;
		if (e != 0) req_fail_later(c->sc, o->id, e);
		out_free(o);
	}
	event_del(c->wr);
	return 0;
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sc_conn *c = arg;
	if (conn_flush(c) < 0) conn_fail(c, strerror(errno));
}

/* Fail every request sent on c; c is closed. */
static void conn_fail(struct sc_conn *c, const char *why)
{
	struct scanclient *sc = c->sc;
	slog(NULL, c->pending ? LOG_WARNING : LOG_INFO, "scanner connection lost: %s (%u scans pending)",
	     why, c->pending);
	if (sc->cur == c) sc->cur = NULL;
	c->retired = 1;
	for (size_t b = 0; b < SC_BUCKETS && c->pending > 0; b++) {
		struct sc_req **pp = &sc->bucket[b];
		while (*pp) {
			if ((*pp)->conn != c) { pp = &(*pp)->next; continue; }
			struct sc_req *r = req_take(sc, (*pp)->id);
			struct scan_result res;
			tempfail_result(&res, r->id, why);
			req_finish(r, &res);
			pp = &sc->bucket[b];      /* the chain may have changed */
		}
	}
	conn_close(c);
}

static struct sc_conn *conn_open(struct scanclient *sc)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) return NULL;
	int sz = SCANPROTO_MAX_PACKET * 2;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	if (connect(fd, (struct sockaddr *)&sc->addr, sc->addrlen) < 0 && errno != EINPROGRESS) {
		slog_errno(NULL, LOG_WARNING, "connect to scanner");
		close(fd);
		return NULL;
	}
	struct sc_conn *c = xcalloc(1, sizeof *c);
	c->fd = fd;
	c->sc = sc;
	c->rd = event_new(sc->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	c->wr = event_new(sc->base, fd, EV_WRITE, conn_write_cb, c);
	event_add(c->rd, NULL);
	return c;
}

static void req_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sc_req *r = arg;
	struct scanclient *sc = r->sc;
	struct sc_conn *c = r->conn;
	uint64_t id = r->id;
	int send_err = r->send_err;
	char why[160];
	r = req_take(sc, id);
	if (send_err != 0) {
		scanconn_unsent_why(send_err, why, sizeof why);
	} else {
		slog(NULL, LOG_WARNING, "scan id=%llu missed its deadline", (unsigned long long)id);
		snprintf(why, sizeof why, "scan timeout");
	}
	struct scan_result res;
	tempfail_result(&res, id, why);
	req_finish(r, &res);
	if (c) conn_maybe_close(c);
}

struct scanclient *scanclient_new(struct event_base *base, const struct sockaddr_un *addr,
                                  socklen_t addrlen)
{
	struct scanclient *sc = xcalloc(1, sizeof *sc);
	sc->base = base;
	memcpy(&sc->addr, addr, addrlen);
	sc->addrlen = addrlen;
	sc->next_id = 1;
	return sc;
}

/* unsent - submit's 0: why, into un (if not NULL) */
static uint64_t unsent(struct scan_unsent *un, int request_fault, const char *what, int e)
{
	if (un == NULL) return 0;
	un->request_fault = request_fault;
	if (request_fault) scanconn_unsent_why(e, un->why, sizeof un->why);
	else snprintf(un->why, sizeof un->why, "%s: %s", what, strerror(e));
	return 0;
}

uint64_t scanclient_submit(struct scanclient *sc, struct scan_request *req, int fd,
                           unsigned timeout_ms, scan_done_fn cb, void *arg, struct scan_unsent *un)
{
	/* kept: the connection was there before this request (scanconn.h) */
	int kept = sc->cur != NULL;
	if (sc->cur == NULL && (sc->cur = conn_open(sc)) == NULL)
		return unsent(un, 0, "cannot connect to the scanner", errno);
	struct sc_conn *c = sc->cur;
	req->id = sc->next_id++;
	req->timeout_ms = timeout_ms;     /* the scanner answers within it */
	/* our wait starts now: a request still unread when it is over (the
	 * scanner down or stalled, our connection kept) is not scanned then,
	 * its side effects (rate limits, greylisting) never taken for a
	 * message we answered 451 */
	req->sent_ms = monotime_ms();
	struct sbuf pkt;
	sbuf_init(&pkt, (size_t)-1);
	scan_request_encode(&pkt, req);
	/* what goes out borrows the spool's fd or bytes; it takes copies
	 * only if it has to wait in the queue */
	struct sc_out *o = xcalloc(1, sizeof *o);
	o->id = req->id;
	o->pkt_len = pkt.len;
	o->pkt = sbuf_steal(&pkt);
	o->envfd = -1;
	o->fd = fd;
	if (fd < 0 && req->msg_inline) {
		o->msg = req->msg ? req->msg : (const unsigned char *)"";
		o->msg_len = req->msg_len;
	}
	int e = EAGAIN;
	if (c->outq == NULL) e = out_send(c->fd, o) == 0 ? 0 : errno;
	if (scanconn_send_again(e, kept && c->pending == 0)) {
		/* a connection idle since the scanner it led to went away (its
		 * EOF not read yet): that one is gone, not the scanner of now.
		 * Nothing in flight on it: dropping it fails no request */
		char why[128];
		snprintf(why, sizeof why, "kept from before, found closed (%s: the scanner restarted?); "
		         "sending once more on a new one", strerror(e));
		conn_fail(c, why);
		if ((sc->cur = conn_open(sc)) == NULL) {
			e = errno;
			out_free(o);
			return unsent(un, 0, "cannot connect to the scanner", e);
		}
		c = sc->cur;
		e = out_send(c->fd, o) == 0 ? 0 : errno;
	}
	if (e == 0) {
		out_free(o);
	} else if (send_retry(e)) {
		/* the socket is full: o waits its turn, with its own copies */
		if (out_own(o) < 0) {
			e = errno;
			out_free(o);
			return unsent(un, 1, NULL, e);
		}
		if (c->outq_tail) c->outq_tail->next = o;
		else c->outq = o;
		c->outq_tail = o;
		event_add(c->wr, NULL);
	} else if (scanconn_gone(e)) {
		out_free(o);
		conn_fail(c, strerror(e));
		return unsent(un, 0, "sending to the scanner", e);
	} else {
		/* this request's own failure (too big, no memory or descriptor
		 * for a memfd): this session answers 451 (and says so), the
		 * others' scans on the connection go on */
		out_free(o);
		return unsent(un, 1, NULL, e);
	}
	struct sc_req *r = xcalloc(1, sizeof *r);
	r->id = req->id;
	r->cb = cb;
	r->arg = arg;
	r->conn = c;
	r->sc = sc;
	r->timer = evtimer_new(sc->base, req_timeout_cb, r);
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	evtimer_add(r->timer, &tv);
	struct sc_req **slot = &sc->bucket[r->id % SC_BUCKETS];
	r->next = *slot;
	*slot = r;
	c->pending++;
	sc->npending++;
	return r->id;
}

void scanclient_cancel(struct scanclient *sc, uint64_t id)
{
	struct sc_req *r = req_take(sc, id);
	if (r == NULL) return;
	struct sc_conn *c = r->conn;
	free(r);
	if (c) conn_maybe_close(c);
}

void scanclient_reconnect(struct scanclient *sc)
{
	struct sc_conn *c = sc->cur;
	if (c == NULL) return;
	sc->cur = NULL;
	c->retired = 1;
	c->next = sc->retired;
	sc->retired = c;
	conn_maybe_close(c);
}

void scanclient_set_address(struct scanclient *sc, const struct sockaddr_un *addr, socklen_t len)
{
	if (len > sizeof sc->addr) return;
	memcpy(&sc->addr, addr, len);
	sc->addrlen = len;
	scanclient_reconnect(sc);
}

unsigned scanclient_pending(const struct scanclient *sc)
{
	return sc->npending;
}

void scanclient_free(struct scanclient *sc)
{
	for (size_t b = 0; b < SC_BUCKETS; b++)
		while (sc->bucket[b]) {
			struct sc_req *r = req_take(sc, sc->bucket[b]->id);
			free(r);
		}
	if (sc->cur) conn_close(sc->cur);
	while (sc->retired) conn_close(sc->retired);
	free(sc);
}
