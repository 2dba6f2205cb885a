/* deadline.h - one message's time budget in the scanner.
 *
 * The front end waits for a scan only so long (scan_timeout for the proxy,
 * milter_timeout / milter_early_timeout for the milter) and then answers
 * 451 4.3.0 or its default action: every finding of the scan is lost,
 * although most filters may have answered.  So the pipeline gives each
 * message a deadline a little before the front end gives up
 * (deadline_begin), and every filter's wait on a service (spamd, clamd,
 * DNS, Redis) and the rules' CPU time are capped by what is left of it
 * (deadline_cap, deadline_left_ms): a filter that runs out of it fails as
 * it does on its own timeout (SPAMD_FAIL, AV_UNSCANNED and
 * av_fail_action, a DNS temperror, store_failure, RULES_TIMEOUT), and
 * the verdict is built from what did answer, in time.  The milter's
 * envelope check at RCPT gets its deadline from milter_early_timeout the
 * same way.
 *
 * Who ran out of time is noted (deadline_timed_out) and goes with the
 * result (scan_result.timed_out), so the audit record names the slow
 * filter instead of an opaque 451.
 *
 * Per thread: a scan runs on one scanner worker thread from start to end,
 * and its filters wait on that thread.  Outside a scan (learn commands,
 * tools) no deadline is set and deadline_cap gives what it is asked. */
#ifndef MW_DEADLINE_H
#define MW_DEADLINE_H

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

struct config;

/* deadline_margin_ms - how much of a front end's budget_ms the scanner
 * keeps back: for its own work after the last wait (policy, a quarantine
 * copy, the result's trip back) and for the clocks of the two processes
 * starting apart.  A tenth, at least 200 ms and at most 5 s, never more
 * than half of it. */
unsigned deadline_margin_ms(unsigned budget_ms);

/* deadline_begin - the calling thread's scan must be done by at_ms
 * (CLOCK_MONOTONIC milliseconds, deadline_now_ms); 0 = no deadline.
 * Forgets what an earlier scan noted. */
void deadline_begin(long long at_ms);
/* deadline_end - no deadline on this thread any more */
void deadline_end(void);
/* deadline_suspend - this thread's deadline set aside (deadline_left_ms
 * says -1, waits get their own timeouts) until deadline_resume with what
 * it returned: for the work that follows a scan's verdict whatever the
 * time (a rate limit giving back what a refused message took) */
long long deadline_suspend(void);
void deadline_resume(long long at_ms);

long long deadline_now_ms(void);

/* deadline_filter - the filter that runs now on this thread (its name is
 * borrowed until the next call), for deadline_timed_out; NULL = the
 * pipeline's own work */
void deadline_filter(const char *name);

/* deadline_left_ms - ms left of this thread's deadline, 0 once passed;
 * -1 when there is none */
long long deadline_left_ms(void);

/* deadline_cap - how long a wait that may take want_ms may take now:
 * want_ms, or what is left of the deadline if that is less (0 once it has
 * passed).  *capped (may be NULL) says whether the deadline is the
 * shorter one. */
unsigned deadline_cap(unsigned want_ms, int *capped);

/* deadline_timed_out - the running filter gave up waiting.  setting: the
 * timeout that ran out ("spamd_timeout"); when the message's deadline had
 * passed by then, "scan_deadline" is noted instead.  One note per filter
 * (the first; a later "scan_deadline" replaces it). */
void deadline_timed_out(const char *setting);

/* deadline_report - what was noted, as "name=why name=why" (why without
 * spaces: "spamd_timeout", "scan_deadline"), cut at an entry's end to fit
 * out; "" if nothing.  Returns the number of filters noted. */
size_t deadline_report(char *out, size_t outsz);

/* deadline_check_config - for -t: a warning on out (lines "who: warning:
 * ...") for each front end (proxy listeners: scan_timeout; the milter:
 * milter_timeout, and milter_early_timeout for its envelope check at RCPT
 * with milter_early) whose wait, less the margin, is shorter than what the
 * filters that run there may take at worst one after the other (their
 * waits on services and the rules' time), naming the settings.  Waits
 * repeated per recipient are counted for one, and said so.  Returns the
 * number of warnings. */
int deadline_check_config(const struct config *cfg, FILE *out, const char *who);

/* --- the watch: a scan seen from another thread ----------------------------
 *
 * A filter that loops or blocks without asking the deadline (a plugin, a
 * regex engine, libclamav) holds its scanner thread until it returns; the
 * front end has long answered 451, and nothing named the filter until the
 * scan ended, if it did.  A scanner worker shows its scans on a watch of
 * its own (deadline_watch_use); the scanner's loop looks at the watches
 * (deadline_watch_overdue) and logs the filter that still runs past the
 * front end's wait.  Threads are never killed: a plugin's locks and
 * memory would be left in any state. */
struct deadline_watch {
	pthread_mutex_t lock;
	long long   give_up;       /* when the front end stops waiting; 0 = no scan */
	long long   began;         /* the scan's start (the front end's wait began) */
	const char *filter;        /* borrowed from the pipeline, which outlives the watch's use */
	long long   filter_since;
	unsigned long long id;
	char        session[64];
	int         reported;      /* this scan was logged as overdue */
};

/* what deadline_watch_overdue found */
struct deadline_overdue {
	unsigned long long id;
	char        session[64];
	char        filter[32];    /* "pipeline" between filters */
	long long   filter_ms;     /* how long that filter has run */
	long long   past_ms;       /* how long ago the front end gave up */
};

void deadline_watch_init(struct deadline_watch *w);
void deadline_watch_destroy(struct deadline_watch *w);
/* deadline_watch_use - the calling thread's scans are shown on w (NULL:
 * not any more) */
void deadline_watch_use(struct deadline_watch *w);
/* deadline_watch_scan - after deadline_begin: the scan's session, id,
 * start and the moment its front end stops waiting, for the watch */
void deadline_watch_scan(const char *session, unsigned long long id, long long began,
                         long long give_up);
/* deadline_watch_overdue - is w's scan still running grace_ms or more
 * past its front end's wait?  1 with *out filled the first time it is
 * seen so (once per scan), else 0.  *held (may be NULL) is set to
 * whether the scan is past that point at all, reported before or not. */
int deadline_watch_overdue(struct deadline_watch *w, long long now, long long grace_ms,
                           struct deadline_overdue *out, int *held);

#endif
