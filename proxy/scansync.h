/* scansync.h - a blocking client of the scanner protocol, for front ends
 * that run on threads of their own (the milter: libmilter calls it on its
 * worker threads).  Each call holds one scanner connection for itself, so
 * answers never need to be matched across threads; idle connections are
 * kept for the next call.  Thread-safe. */
#ifndef MW_SCANSYNC_H
#define MW_SCANSYNC_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "scanproto.h"

struct scansync;

struct scansync *scansync_new(void);
void scansync_free(struct scansync *ss);

/* scansync_set_address - a new scanner generation listens there; idle
 * connections to the old one are closed, calls in flight finish on theirs. */
void scansync_set_address(struct scansync *ss, const struct sockaddr_un *addr, socklen_t len);

/* scansync_scan - send req (req->id is set here) with the message fd (-1
 * for an envelope request) and wait for the answer at most timeout_ms.
 * 0 and *res filled; -1 with a one-line reason in err (no scanner, the
 * connection failed, bad answer), or -2 with one when timeout_ms ran out
 * (sending or waiting): the caller applies its fail action, and may say
 * which.  -3 with a reason: this request could not be sent for a reason of
 * its own (past SCANPROTO_MAX_REQUEST, no memory or descriptor for its
 * memfd), the scanner is fine: never the fail action (which may be to
 * accept unscanned), a tempfail.  A kept connection found closed (the
 * scanner it led to was restarted) is replaced and req sent once more
 * (scanconn.h); a new connection's connect waits for room in the
 * scanner's backlog at most timeout_ms (-2). */
int scansync_scan(struct scansync *ss, struct scan_request *req, int fd, unsigned timeout_ms,
                  struct scan_result *res, char *err, size_t errlen);

/* scansync_progress - while scansync_scan_progress waits, fn(arg) is called
 * every every_ms on the waiting thread (the milter tells the MTA it is
 * still working: Sendmail waits only T=R:, 10 s by default, for each
 * read, even at the end of the message) */
struct scansync_progress {
	unsigned every_ms;
	void   (*fn)(void *arg);
	void    *arg;
};

/* scansync_scan_progress - scansync_scan, calling pg (may be NULL) */
int scansync_scan_progress(struct scansync *ss, struct scan_request *req, int fd,
                           unsigned timeout_ms, const struct scansync_progress *pg,
                           struct scan_result *res, char *err, size_t errlen);

#endif
