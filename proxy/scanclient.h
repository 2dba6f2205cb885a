/* scanclient.h - the proxy's side of the scanner protocol (scanproto.h):
 * submit a finished message, get the result back asynchronously, or a
 * tempfail result when the scanner is gone or misses its deadline.  The
 * proxy never blocks on the scanner. */
#ifndef MW_SCANCLIENT_H
#define MW_SCANCLIENT_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <event2/event.h>

#include "scanproto.h"

struct scanclient;

/* res is valid during the call only; the callee may move its members out
 * (leaving NULL/0 behind): whatever is left is freed after the call. */
typedef void (*scan_done_fn)(void *arg, struct scan_result *res);

struct scanclient *scanclient_new(struct event_base *base, const struct sockaddr_un *addr,
                                  socklen_t addrlen);
void scanclient_free(struct scanclient *sc);   /* pending callbacks are dropped */

/* why a submit returned 0 */
struct scan_unsent {
	int  request_fault;   /* 1: the request's own failure (too big, no memory or
	                       * descriptor for its memfd), the scanner is fine;
	                       * 0: no scanner to send it to */
	char why[200];        /* one line: what happened */
};

/* scanclient_submit - send req (req->id is set here) with the spool fd
 * (borrowed: duplicated into the packet).  cb runs exactly once, later,
 * unless cancelled.  Returns the id, or 0 if the request could not be sent
 * (cb will not run: the caller answers 451 itself) and *un (if not NULL)
 * says why: no scanner, or the request's own failure, which fails no
 * other request on the connection.  A connection kept from before that
 * is found gone with nothing in flight on it is replaced and the request
 * sent once more (scanconn.h).  A request that waited in the queue and
 * then cannot go gets its tempfail through cb. */
uint64_t scanclient_submit(struct scanclient *sc, struct scan_request *req, int fd,
                           unsigned timeout_ms, scan_done_fn cb, void *arg, struct scan_unsent *un);
void scanclient_cancel(struct scanclient *sc, uint64_t id);
/* scanclient_reconnect - after a scanner restart (SIGHUP): new requests go
 * on a new connection; the old one stays until its answers are in. */
void scanclient_reconnect(struct scanclient *sc);
/* scanclient_set_address - a new scanner generation listens there: retire
 * the current connection, use the new address from now on. */
void scanclient_set_address(struct scanclient *sc, const struct sockaddr_un *addr, socklen_t len);
unsigned scanclient_pending(const struct scanclient *sc);

#endif
