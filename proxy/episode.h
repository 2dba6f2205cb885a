/* episode.h - a condition that starts, lasts a while and ends (out of
 * descriptors at accept(), a connection bound reached), told in the log
 * in three kinds of line: one when it starts, one every EPISODE_LOG_MS
 * while it lasts, one when it ends, each later one with what the caller
 * counted since the line before.  A condition met at every turn of a
 * loop is then a few lines, not one per turn (the proxy's listener
 * wrote 300,000 a second).  The caller keeps its words and its clock
 * (milliseconds, any origin but 0); one thread per episode. */
#ifndef MW_EPISODE_H
#define MW_EPISODE_H

#include <errno.h>

#define EPISODE_LOG_MS 10000

struct episode {
	long long line_ms;     /* its last line (0: none going) */
	unsigned long count;   /* counted by the caller since that line */
	long long every_ms;    /* between "goes on" lines; 0: EPISODE_LOG_MS */
};

enum episode_line {
	EPISODE_QUIET,         /* nothing to log now */
	EPISODE_STARTS,        /* log its first line */
	EPISODE_LASTS,         /* log that it goes on: *count, *secs */
};

/* episode_step - the condition met (again) at now_ms: which line is due;
 * for EPISODE_LASTS, *count and *secs since the line before (then the
 * count starts again) */
enum episode_line episode_step(struct episode *ep, long long now_ms, unsigned long *count,
                               long long *secs);

/* episode_end - it is over at now_ms: 1 when one was going (log its end
 * with *count and *secs since its last line), 0 if none was */
int episode_end(struct episode *ep, long long now_ms, unsigned long *count, long long *secs);

/* episode_now_ms - a monotonic clock for the above (never 0) */
long long episode_now_ms(void);

static inline int episode_going(const struct episode *ep)
{
	return ep->line_ms != 0;
}

/* episode_accept_starved - accept() failed for want of descriptors or
 * memory: the connection stays in the backlog and the socket readable,
 * so the caller must pause, not try again at once (the episode all three
 * users log) */
static inline int episode_accept_starved(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

#endif
