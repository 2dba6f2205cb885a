/* uplog.h - a condition that every message or connection meets, told in
 * the log once per key per interval and whenever it changes, not each
 * time: one line a minute says as much as 300 a second, and stays
 * readable.
 *
 * A table (struct uplog_table) is shared by all threads of a process,
 * keyed by text, under its own mutex.  It holds UPLOG_SLOTS keys; past
 * that the one logged longest ago makes room (it may then be logged again
 * sooner: more lines, never none).  The caller keeps its words and its
 * clock (milliseconds, any origin).
 *
 * Its users: the proxy's next hops that offer neither XCLIENT nor XFORWARD
 * (uplog_due, once a minute: each event loop has its own copy of a
 * listener's target, a transparent listener one per destination), and
 * outbound From domains without a DKIM key (dkim_sign.c, once an hour). */
#ifndef MW_UPLOG_H
#define MW_UPLOG_H

#include <pthread.h>
#include <stdatomic.h>

#define UPLOG_EVERY_MS 60000
#define UPLOG_SLOTS    64

struct uplog_slot {
	char          key[256];   /* "" = free */
	int           kind;       /* of the last line; 0: none going */
	long long     line_ms;    /* when that line was due */
	unsigned long since;      /* met without a line since */
};

struct uplog_table {
	long long         every_ms;
	pthread_mutex_t   lock;
	struct uplog_slot slots[UPLOG_SLOTS];   /* under lock */
	/* slots with a line going: uplog_table_clear, which a caller may make
	 * at every connection, takes no lock while there are none */
	atomic_uint       going;
};

#define UPLOG_TABLE_INIT(ms) { .every_ms = (ms), .lock = PTHREAD_MUTEX_INITIALIZER }

/* uplog_table_due - condition kind (non-zero, the caller's numbering) met
 * for key at now_ms.  1 when a line is due: the first for key, another
 * kind than its last line's, or t->every_ms after that line; *since then
 * holds how many times it was met without a line since the last one (0
 * for a first or changed line).  0 when no line is due (counted).
 * key: borrowed, compared by its text (cut at 255 bytes alike for all). */
int uplog_table_due(struct uplog_table *t, const char *key, int kind, long long now_ms,
                    unsigned long *since);

/* uplog_table_clear - the condition is over for key: 1 when a line had
 * told of it (log that it is over), else 0; the next one is a change,
 * logged at once.  Cheap when nothing was ever due. */
int uplog_table_clear(struct uplog_table *t, const char *key);

/* uplog_table_reset - forget every key (tests) */
void uplog_table_reset(struct uplog_table *t);

/* The proxy's table of next hops (UPLOG_EVERY_MS): the functions above on
 * it, hop being the target's spec. */
int uplog_due(const char *hop, int kind, long long now_ms, unsigned long *since);
int uplog_clear(const char *hop);
void uplog_reset(void);

#endif
