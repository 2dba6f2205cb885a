/* scanstale.h - whether the scanner still starts a request: one whose
 * front end has given up on it is not scanned.
 *
 * A front end waits for a result only so long (scan_timeout,
 * milter_timeout ...) and then answers without it: 451, or the milter's
 * milter_default_action; the milter also closes its connection.  A
 * request may outlive that wait unread: in the backlog of the scanner
 * socket while no scanner runs (a restarted scanner takes over the dead
 * one's socket, and the requests sent meanwhile, and it may load its
 * filters for seconds first), in a kept connection's receive queue while
 * the scanner is stalled, or in its queue behind long scans.  Scanned
 * then, its side effects were taken for a message the client was told to
 * send again: a rate limit counted it (and the retry was refused as over
 * the limit), greylisting and autolearn acted on it.
 *
 * Two signs, both cheap: the front end's deadline (the request's sent_ms
 * + timeout_ms, on the CLOCK_MONOTONIC that all of mailwarden's processes
 * share, scanproto.h) has passed - this covers the proxy, which keeps its
 * connection past a request it gave up - and the front end has closed the
 * connection (poll, POLLHUP: queued packets stay readable after the
 * peer's close) - which covers a front end that went away before its
 * deadline.  The scanner looks when it reads a request and again when a
 * worker takes it from the queue, just before its filters run.
 *
 * The hangup is looked at without a syscall of its own where one is not
 * needed: when a request is read, the wait that found it readable (the
 * workers' epoll_wait, the loop's poll) has just reported the
 * connection's POLLHUP with its readiness; when a worker takes it, a
 * poll() is made only if that report is SCANSTALE_PEER_FRESH_US old or
 * more.  A front end that closes in that window is one that closes just
 * as its scan starts, which no check can tell from one that closes a
 * moment after: the scan runs and its result finds nobody, as before.
 * Two poll()s per message were more than a quarter of the scanner's
 * syscalls (session 21). */
#ifndef MW_SCANSTALE_H
#define MW_SCANSTALE_H

#include <stddef.h>

struct scan_request;

/* scanstale_start_ms - when the front end began to wait for r (CLOCK_
 * MONOTONIC ms): its sent_ms, when known and not after now (a later one
 * is no time of our clock: not believed); else when the scanner read it
 * (received_ms), else now */
long long scanstale_start_ms(const struct scan_request *r, long long now);

/* scanstale_check - 0 when r may still be scanned at now; 1 when its
 * front end gave up on it: its wait (timeout_ms, or default_ms when 0)
 * counted from its sent_ms is over, or peer_closed.  Why, for the log and
 * the result's error, into why[0..len).  Only a known sent_ms makes a
 * request stale by time: one without (a tool, JSON) is scanned. */
int scanstale_check(const struct scan_request *r, unsigned default_ms, long long now,
                    int peer_closed, char *why, size_t len);

/* scanstale_peer_closed - 1 when the peer of the connected socket fd has
 * closed its end (or fd was shut down both ways: nothing can answer on
 * it), 0 if not or unknown; never waits */
int scanstale_peer_closed(int fd);

/* how long a hangup check (POLLHUP not reported) still stands for the
 * worker that takes the request: microseconds */
#define SCANSTALE_PEER_FRESH_US 1000

/* scanstale_now_us - CLOCK_MONOTONIC in microseconds, for the below */
long long scanstale_now_us(void);

/* scanstale_peer_fresh - 1 when a connection seen open (no POLLHUP) at
 * seen_us may be taken as still open at now_us without a poll(): less
 * than SCANSTALE_PEER_FRESH_US later (a seen_us of 0, unknown, or one
 * after now_us is never fresh) */
int scanstale_peer_fresh(long long seen_us, long long now_us);

#endif
