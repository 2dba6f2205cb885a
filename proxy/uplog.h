/* uplog.h - a condition of a next hop that every connection to it meets
 * (it offers neither XCLIENT nor XFORWARD), told in the log once per hop
 * per UPLOG_EVERY_MS and whenever it changes, not once per connection:
 * one line a minute says as much as 300 a second, and stays readable.
 *
 * Shared by all of the proxy's event loops (each has its own copy of a
 * listener's target, and a transparent listener one per destination), so
 * the table is the process's, keyed by the hop's spec, under a mutex.  It
 * holds UPLOG_SLOTS hops; past that the one logged longest ago makes room
 * (it may then be logged again sooner: more lines, never none).  The
 * caller keeps its words and its clock (milliseconds, any origin). */
#ifndef MW_UPLOG_H
#define MW_UPLOG_H

#define UPLOG_EVERY_MS 60000
#define UPLOG_SLOTS    64

/* uplog_due - condition kind (non-zero, the caller's numbering) met at
 * hop at now_ms.  1 when a line is due: the first for hop, another kind
 * than its last line's, or UPLOG_EVERY_MS after that line; *since then
 * holds how many times it was met without a line since the last one (0
 * for a first or changed line).  0 when no line is due (counted).
 * hop: borrowed, compared by its text. */
int uplog_due(const char *hop, int kind, long long now_ms, unsigned long *since);

/* uplog_clear - the condition is over at hop (XCLIENT offered again):
 * 1 when a line had told of it (log that it is over), else 0; the next
 * one is a change, logged at once.  Cheap when nothing was ever due. */
int uplog_clear(const char *hop);

/* uplog_reset - forget every hop (tests) */
void uplog_reset(void);

#endif
