/* scanstale.c - see scanstale.h */
#include <poll.h>
#include <stdio.h>
#include <time.h>

#include "filters/scanstale.h"
#include "proxy/scanproto.h"

long long scanstale_start_ms(const struct scan_request *r, long long now)
{
	if (r->sent_ms > 0 && r->sent_ms <= now)
		return r->sent_ms;
	return r->received_ms > 0 ? r->received_ms : now;
}

int scanstale_check(const struct scan_request *r, unsigned default_ms, long long now,
                    int peer_closed, char *why, size_t len)
{
	unsigned budget = r->timeout_ms ? r->timeout_ms : default_ms;
	long long past;

	if (peer_closed) {
		snprintf(why, len, "not scanned: its front end closed the connection (it has "
		    "answered without the scan)");
		return 1;
	}
	if (r->sent_ms <= 0 || r->sent_ms > now)
		return 0;
	past = now - (r->sent_ms + (long long)budget);
	if (past < 0)
		return 0;
	snprintf(why, len, "not scanned: its front end's wait of %u ms ended %lld ms before it "
	    "could start (it has answered without the scan)", budget, past);
	return 1;
}

int scanstale_peer_closed(int fd)
{
	struct pollfd p = { fd, 0, 0 };

	/* POLLHUP (reported whatever events asks): the peer's close shuts
	 * both ways of our end.  Not POLLRDHUP: it is also our own
	 * shutdown(SHUT_RD), which the scanner does to every connection when
	 * it stops, with scans in flight still answered. */
	if (poll(&p, 1, 0) != 1)
		return 0;
	return (p.revents & POLLHUP) != 0;
}

long long scanstale_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int scanstale_peer_fresh(long long seen_us, long long now_us)
{
	return seen_us > 0 && seen_us <= now_us && now_us - seen_us < SCANSTALE_PEER_FRESH_US;
}
