/* conn.c - see conn.h. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "sbuf.h"

#define READ_MIN     4096         /* room made before each read */
#define READ_ROOM_MAX (32 * 1024)  /* largest room a busy connection reads into */
#define IN_INITIAL   4096
#define OUT_INITIAL  2048
#define KEEP_MAX     (64 * 1024)  /* a buffer larger than this is freed once empty */
#define TLS_READ_TURN (256 * 1024) /* decrypted bytes taken in one read callback */

enum tls_state { TLS_OFF = 0, TLS_WAIT_FLUSH, TLS_HANDSHAKE, TLS_UP };

/* A flat byte buffer: data in p[off..len). */
struct flatbuf {
	char  *p;
	size_t off, len, cap;
};

struct conn {
	struct event_base *base;
	int                fd;
	struct flatbuf     in, out;
	struct event      *rev;        /* EV_READ|EV_PERSIST, added once */
	struct event      *rtimer;     /* read inactivity deadline (a pure timer: no syscall) */
	struct event      *wev;        /* EV_WRITE, only while the kernel is full */
	struct event      *flush;      /* activated to write at the end of the turn */
	conn_cb            on_read, on_drain;
	conn_event_cb      on_event;
	void              *arg;
	unsigned           read_ms, write_ms;
	size_t             read_limit; /* 0 = none */
	size_t             lowat;
	size_t             read_room;  /* room made before a plain read: grows while
	                                  reads fill it (a message body arrives), so
	                                  a 10 KB DATA is one read, not three; an idle
	                                  session keeps READ_MIN */
	int                reading;    /* rev is added */
	int                stopped;    /* conn_stop_reading */
	int                wstopped;   /* conn_stop_writing: nothing more leaves */
	int                connecting;
	int                flush_pending;
	int                depth;      /* inside a callback */
	int                dead;       /* conn_free called inside a callback */
	SSL               *ssl;        /* owned; NULL without TLS */
	enum tls_state     tls;
	int                read_wants_write;  /* SSL_read said WANT_WRITE */
	int                write_wants_read;  /* SSL_write said WANT_READ */
	char               tls_err[160];
};

static size_t fb_used(const struct flatbuf *b)
{
	return b->len - b->off;
}

/* Make room for n more bytes at the end. */
static void fb_reserve(struct flatbuf *b, size_t n, size_t initial)
{
	if (b->off > 0 && (b->off == b->len || b->cap - b->len < n)) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->cap - b->len >= n) return;
	size_t cap = b->cap ? b->cap : initial;
	while (cap - b->len < n) cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

static void fb_consume(struct flatbuf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len) {
		b->off = b->len = 0;
		if (b->cap > KEEP_MAX) {       /* a big message went through */
			free(b->p);
			b->p = NULL;
			b->cap = 0;
		}
	}
}

static void ms_tv(unsigned ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

static void really_free(struct conn *c)
{
	if (c->rev) event_free(c->rev);
	if (c->wev) event_free(c->wev);
	event_free(c->rtimer);
	if (c->flush) event_free(c->flush);
	free(c->in.p);
	free(c->out.p);
	if (c->ssl) {
		if (c->tls == TLS_UP) SSL_shutdown(c->ssl);    /* one try, non-blocking */
		SSL_free(c->ssl);
	}
	if (c->fd >= 0) close(c->fd);
	free(c);
}

/* Call into the owner; returns 0 if the conn is gone afterwards. */
static int emit_event(struct conn *c, enum conn_event what)
{
	c->depth++;
	c->on_event(c, c->arg, what);
	c->depth--;
	if (c->dead && c->depth == 0) {
		really_free(c);
		return 0;
	}
	return !c->dead;
}

/* The read deadline runs while we read and have one; reset by each read. */
static void rtimer_arm(struct conn *c)
{
	if (c->reading && c->read_ms) {
		struct timeval tv;
		ms_tv(c->read_ms, &tv);
		evtimer_add(c->rtimer, &tv);
	} else {
		evtimer_del(c->rtimer);
	}
}

static void read_arm(struct conn *c)
{
	int want = !c->stopped && !c->connecting && !c->dead && c->fd >= 0 &&
	           c->tls != TLS_WAIT_FLUSH &&
	           (c->read_limit == 0 || fb_used(&c->in) < c->read_limit);
	if (want && !c->reading) {
		event_add(c->rev, NULL);
		c->reading = 1;
		/* decrypted bytes OpenSSL holds are invisible to epoll */
		if (c->tls == TLS_UP && SSL_has_pending(c->ssl)) event_active(c->rev, EV_READ, 1);
	} else if (!want && c->reading) {
		event_del(c->rev);
		c->reading = 0;
	}
	rtimer_arm(c);
}

static void write_arm(struct conn *c)
{
	struct timeval tv;
	if (c->wstopped) return;
	ms_tv(c->write_ms, &tv);
	event_add(c->wev, c->write_ms ? &tv : NULL);
}

static void tls_note_error(struct conn *c, const char *what)
{
	unsigned long e, last = 0;
	while ((e = ERR_get_error()) != 0) last = e;
	if (last) {
		char buf[120];
		ERR_error_string_n(last, buf, sizeof buf);
		snprintf(c->tls_err, sizeof c->tls_err, "%s: %s", what, buf);
	} else {
		snprintf(c->tls_err, sizeof c->tls_err, "%s: %s", what, errno ? strerror(errno) : "connection closed");
	}
}

static void tls_step(struct conn *c);

/* One SSL_write; n > 0 written, 0 would block (events armed), -1 error. */
static ssize_t tls_write(struct conn *c, const void *p, size_t len)
{
	ERR_clear_error();
	errno = 0;
	int n = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
	if (n > 0) return n;
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_WRITE: write_arm(c); return 0;
	case SSL_ERROR_WANT_READ: c->write_wants_read = 1; return 0;
	default: tls_note_error(c, "TLS write"); return -1;
	}
}

/* Write what we can now; the write event only when the kernel is full. */
static void do_flush(struct conn *c)
{
	c->flush_pending = 0;
	if (c->connecting || c->fd < 0 || c->dead || c->wstopped || c->tls == TLS_HANDSHAKE) return;
	while (fb_used(&c->out) > 0) {
		if (c->tls == TLS_UP) {
			c->write_wants_read = 0;
			ssize_t n = tls_write(c, c->out.p + c->out.off, fb_used(&c->out));
			if (n == 0) return;
			if (n < 0) {
				event_del(c->wev);
				emit_event(c, CONN_ERROR);
				return;
			}
			fb_consume(&c->out, (size_t)n);
			continue;
		}
		ssize_t n = write(c->fd, c->out.p + c->out.off, fb_used(&c->out));
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				write_arm(c);
				return;
			}
			if (errno == EINTR) continue;
			event_del(c->wev);
			emit_event(c, CONN_ERROR);
			return;
		}
		fb_consume(&c->out, (size_t)n);
	}
	if (!c->read_wants_write) event_del(c->wev);
	if (c->tls == TLS_WAIT_FLUSH) {      /* the plaintext reply has left */
		c->tls = TLS_HANDSHAKE;
		read_arm(c);
		tls_step(c);
		return;
	}
	if (c->on_drain && fb_used(&c->out) <= c->lowat) {
		c->depth++;
		c->on_drain(c, c->arg);
		c->depth--;
		if (c->dead && c->depth == 0) really_free(c);
	}
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	do_flush(arg);
}

static void schedule_flush(struct conn *c)
{
	if (c->flush_pending) return;
	c->flush_pending = 1;
	event_active(c->flush, EV_TIMEOUT, 1);
}

static void rtimer_cb(evutil_socket_t fd, short what, void *arg)
{
	emit_event(arg, CONN_TIMEOUT_READ);
}

/* Handshake progress: on each read or write readiness until done. */
static void tls_step(struct conn *c)
{
	ERR_clear_error();
	errno = 0;
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->tls = TLS_UP;
		event_del(c->wev);
		if (!emit_event(c, CONN_TLS_READY)) return;
		read_arm(c);
		if (SSL_has_pending(c->ssl)) event_active(c->rev, EV_READ, 1);
		if (fb_used(&c->out)) schedule_flush(c);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		event_del(c->wev);
		return;                        /* rev stays in epoll */
	case SSL_ERROR_WANT_WRITE:
		write_arm(c);
		return;
	default:
		tls_note_error(c, "TLS handshake");
		event_del(c->wev);
		emit_event(c, CONN_TLS_FAILED);
	}
}

static void tls_read_cb(struct conn *c)
{
	size_t got = 0;
	int eof = 0, error = 0;
	c->read_wants_write = 0;
	while (got < TLS_READ_TURN && (c->read_limit == 0 || fb_used(&c->in) < c->read_limit)) {
		fb_reserve(&c->in, READ_MIN, IN_INITIAL);
		size_t room = c->in.cap - c->in.len;
		ERR_clear_error();
		errno = 0;
		int n = SSL_read(c->ssl, c->in.p + c->in.len, room > INT32_MAX ? INT32_MAX : (int)room);
		if (n > 0) {
			c->in.len += (size_t)n;
			got += (size_t)n;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ) break;
		if (e == SSL_ERROR_WANT_WRITE) {
			c->read_wants_write = 1;
			write_arm(c);
			break;
		}
		if (e == SSL_ERROR_ZERO_RETURN) eof = 1;
		else {
			tls_note_error(c, "TLS read");
			error = 1;
		}
		break;
	}
	if (c->write_wants_read && fb_used(&c->out)) schedule_flush(c);
	if (got > 0) {
		rtimer_arm(c);
		if (c->read_limit && fb_used(&c->in) >= c->read_limit) read_arm(c);
		else if (got >= TLS_READ_TURN && SSL_has_pending(c->ssl)) event_active(c->rev, EV_READ, 1);
		c->depth++;
		c->on_read(c, c->arg);
		c->depth--;
		if (c->dead) {
			if (c->depth == 0) really_free(c);
			return;
		}
	}
	if (eof || error) {
		event_del(c->rev);
		c->reading = 0;
		evtimer_del(c->rtimer);
		emit_event(c, eof ? CONN_EOF : CONN_ERROR);
	}
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (c->tls == TLS_HANDSHAKE) {
		/* no rtimer_arm here: the deadline armed when the handshake began
		 * covers all of it, or a client sending its ClientHello a byte at
		 * a time would push it back with every byte and hold the session
		 * (and OpenSSL's handshake buffers) for hours */
		tls_step(c);
		return;
	}
	if (c->tls == TLS_UP) {
		tls_read_cb(c);
		return;
	}
	if (c->read_room < READ_MIN) c->read_room = READ_MIN;
	fb_reserve(&c->in, c->read_room, IN_INITIAL);
	size_t room = c->in.cap - c->in.len;
	ssize_t n = read(c->fd, c->in.p + c->in.len, room);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
		emit_event(c, CONN_ERROR);
		return;
	}
	if (n == 0) {
		event_del(c->rev);
		c->reading = 0;
		evtimer_del(c->rtimer);
		emit_event(c, CONN_EOF);
		return;
	}
	c->in.len += (size_t)n;
	if ((size_t)n == room && c->read_room < READ_ROOM_MAX) c->read_room *= 2;
	rtimer_arm(c);
	if (c->read_limit && fb_used(&c->in) >= c->read_limit) read_arm(c);
	c->depth++;
	c->on_read(c, c->arg);
	c->depth--;
	if (c->dead && c->depth == 0) really_free(c);
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (c->connecting) {
		int err = 0;
		socklen_t len = sizeof err;
		c->connecting = 0;
		if (what & EV_TIMEOUT) {
			errno = ETIMEDOUT;
			emit_event(c, CONN_ERROR);
			return;
		}
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
		if (err != 0) {
			errno = err;
			emit_event(c, CONN_ERROR);
			return;
		}
		event_del(c->wev);
		if (!emit_event(c, CONN_CONNECTED)) return;
		read_arm(c);
		do_flush(c);
		return;
	}
	if (what & EV_TIMEOUT) {
		emit_event(c, CONN_TIMEOUT_WRITE);
		return;
	}
	if (c->tls == TLS_HANDSHAKE) {
		tls_step(c);
		return;
	}
	if (c->read_wants_write) {
		c->read_wants_write = 0;
		event_del(c->wev);
		tls_read_cb(c);
		return;
	}
	do_flush(c);
}

static void setup_events(struct conn *c)
{
	c->rev = event_new(c->base, c->fd, EV_READ | EV_PERSIST, read_cb, c);
	c->wev = event_new(c->base, c->fd, EV_WRITE | EV_PERSIST, write_cb, c);
}

struct conn *conn_new(struct event_base *base, int fd, conn_cb on_read, conn_cb on_drain,
                      conn_event_cb on_event, void *arg)
{
	struct conn *c = xcalloc(1, sizeof *c);
	c->base = base;
	c->fd = fd;
	c->on_read = on_read;
	c->on_drain = on_drain;
	c->on_event = on_event;
	c->arg = arg;
	c->flush = event_new(base, -1, 0, flush_cb, c);
	c->rtimer = evtimer_new(base, rtimer_cb, c);
	if (fd >= 0) {
		evutil_make_socket_nonblocking(fd);
		setup_events(c);
		read_arm(c);
	}
	return c;
}

int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len, unsigned timeout_ms)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	setup_events(c);
	c->connecting = 1;
	if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) return -1;
	struct timeval tv;
	ms_tv(timeout_ms, &tv);
	event_add(c->wev, timeout_ms ? &tv : NULL);
	return 0;
}

void conn_free(struct conn *c)
{
	if (c == NULL) return;
	if (c->depth > 0) {
		c->dead = 1;
		if (c->rev) event_del(c->rev);
		if (c->wev) event_del(c->wev);
		event_del(c->flush);
		evtimer_del(c->rtimer);
		return;
	}
	really_free(c);
}

const char *conn_in_peek(struct conn *c, size_t *len)
{
	*len = fb_used(&c->in);
	return c->in.p ? c->in.p + c->in.off : "";
}

void conn_in_drain(struct conn *c, size_t n)
{
	size_t used = fb_used(&c->in);
	fb_consume(&c->in, n < used ? n : used);
	if (!c->reading && !c->dead) read_arm(c);   /* back pressure released */
}

int conn_write(struct conn *c, const void *p, size_t len)
{
	if (c->dead || c->wstopped) return -1;
	fb_reserve(&c->out, len, OUT_INITIAL);
	memcpy(c->out.p + c->out.len, p, len);
	c->out.len += len;
	schedule_flush(c);
	return 0;
}

size_t conn_output_len(const struct conn *c)
{
	return fb_used(&c->out);
}

void conn_set_timeouts(struct conn *c, unsigned read_ms, unsigned write_ms)
{
	int changed = c->read_ms != read_ms;
	c->read_ms = read_ms;
	c->write_ms = write_ms;
	if (changed) rtimer_arm(c);
}

void conn_set_read_limit(struct conn *c, size_t bytes)
{
	c->read_limit = bytes;
}

void conn_set_lowat(struct conn *c, size_t bytes)
{
	c->lowat = bytes;
}

void conn_stop_reading(struct conn *c)
{
	c->stopped = 1;
	if (c->reading && c->rev) {
		event_del(c->rev);
		c->reading = 0;
	}
	evtimer_del(c->rtimer);
}

void conn_stop_writing(struct conn *c)
{
	c->wstopped = 1;
	if (c->wev && !c->connecting) event_del(c->wev);
	fb_consume(&c->out, fb_used(&c->out));
}

int conn_fd(const struct conn *c)
{
	return c->fd;
}

size_t conn_start_tls(struct conn *c, SSL *ssl)
{
	size_t dropped = fb_used(&c->in);
	fb_consume(&c->in, dropped);
	c->ssl = ssl;
	SSL_set_fd(ssl, c->fd);
	c->tls = TLS_WAIT_FLUSH;
	read_arm(c);                  /* stop reading until the reply has left */
	schedule_flush(c);            /* the handshake starts once it has */
	return dropped;
}

SSL *conn_ssl(const struct conn *c)
{
	return c->tls == TLS_UP ? c->ssl : NULL;
}

const char *conn_tls_error(const struct conn *c)
{
	return c->tls_err;
}
