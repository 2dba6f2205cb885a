/* conn.h - a non-blocking TCP connection on the event loop, for both legs
 * of the proxy: an input buffer filled by plain read(), an output buffer
 * written at the end of the loop turn in which it was filled, and
 * inactivity deadlines.  Both buffers are flat, allocated on first use and
 * reused, so a short command or reply costs no allocation.
 *
 * Why not bufferevents: they add and remove the write event around every
 * single write (two epoll_ctl per reply) and size every read with an ioctl.
 * A proxy that relays a dozen short lines per message paid more for that
 * than for the I/O itself.  Here the read event stays in epoll for the life
 * of the connection, and the write event is used only when the kernel's
 * send buffer is full. */
#ifndef MW_CONN_H
#define MW_CONN_H

#include <stddef.h>
#include <sys/socket.h>
#include <event2/event.h>

enum conn_event {
	CONN_CONNECTED = 1,   /* conn_connect finished */
	CONN_EOF,             /* the peer closed its side */
	CONN_ERROR,           /* I/O error (errno set) or connect failed */
	CONN_TIMEOUT_READ,    /* nothing came for the read timeout */
	CONN_TIMEOUT_WRITE,   /* the peer took nothing for the write timeout */
	CONN_TLS_READY,       /* the handshake of conn_start_tls finished */
	CONN_TLS_FAILED       /* the handshake failed (conn_tls_error says why) */
};

struct conn;
typedef void (*conn_cb)(struct conn *c, void *arg);
typedef void (*conn_event_cb)(struct conn *c, void *arg, enum conn_event what);

/* conn_new - take over fd (non-blocking from here on; closed by
 * conn_free).  fd < 0: no socket yet, for conn_connect.  on_read runs when
 * new input is in conn_input(); on_drain when the output fell to the
 * low-water mark after a write; on_event for the rest. */
struct conn *conn_new(struct event_base *base, int fd, conn_cb on_read, conn_cb on_drain,
                      conn_event_cb on_event, void *arg);
/* conn_connect - non-blocking connect; CONN_CONNECTED or CONN_ERROR/
 * CONN_TIMEOUT_WRITE follows.  0, or -1 with errno. */
int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len, unsigned timeout_ms);
/* conn_free - close and free; safe inside the conn's own callbacks (the
 * memory goes when the callback returns). */
void conn_free(struct conn *c);

/* conn_in_peek - the buffered input, contiguous; *len bytes (may be 0).
 * Valid until the next conn call. */
const char *conn_in_peek(struct conn *c, size_t *len);
/* conn_in_drain - the first n bytes of the input are consumed */
void conn_in_drain(struct conn *c, size_t n);
/* conn_write - queue bytes; they leave at the end of this loop turn. */
int conn_write(struct conn *c, const void *p, size_t len);
size_t conn_output_len(const struct conn *c);
/* inactivity deadlines in ms; 0 = none */
void conn_set_timeouts(struct conn *c, unsigned read_ms, unsigned write_ms);
/* stop reading while the input holds this much (back pressure) */
void conn_set_read_limit(struct conn *c, size_t bytes);
void conn_set_lowat(struct conn *c, size_t bytes);
void conn_stop_reading(struct conn *c);
/* conn_stop_writing - the peer is of no more use: the output queued is
 * dropped, and no write event (nor its deadline, which would fire again
 * and again) is armed from now on; conn_write fails. */
void conn_stop_writing(struct conn *c);
int conn_fd(const struct conn *c);

/* TLS on the connection (OpenSSL, SSL_read/SSL_write on the non-blocking
 * socket).  conn_start_tls - once the output queued so far has left (the
 * "220 Ready to start TLS" reply), run the handshake with ssl (owned from
 * now on; accept or connect state set by the caller).  Input already
 * buffered was sent in plaintext after the command that started TLS: it is
 * discarded here (command/response injection, CVE-2011-0411), and the
 * number of bytes dropped returned.  CONN_TLS_READY or CONN_TLS_FAILED
 * follows; from then on every byte in and out goes through TLS. */
struct ssl_st;
size_t conn_start_tls(struct conn *c, struct ssl_st *ssl);
/* conn_ssl - the SSL object once the handshake finished, else NULL */
struct ssl_st *conn_ssl(const struct conn *c);
/* conn_tls_error - why the last handshake or TLS I/O failed ("" if none) */
const char *conn_tls_error(const struct conn *c);

#endif
