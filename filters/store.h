/* store.h - the state greylisting, rate limits and Bayes keep between
 * messages, behind one small interface with two backends:
 *   lmdb   embedded (store_path), one machine; several processes (the
 *          scanner and "mailwarden learn") may use the file at once;
 *   redis  a Redis server (store_redis), for several mailwarden machines
 *          sharing one state.  Every call has a deadline (store_timeout).
 *
 * One store per process and settings: store_open() hands out the same
 * handle to every filter that asks (LMDB forbids opening one environment
 * twice in a process), counted; the last store_close() closes it.
 * Thread-safe: scanner worker threads call it concurrently.
 *
 * Failures (Redis down, timeout, disk full) return -1 and are logged here
 * once per burst; the caller decides (store_failure = open | closed).  An
 * LMDB map found full (MDB_MAP_FULL) is not a failure at once: the write
 * removes the expired keys, the Bayes lists' windows and boilerplates (a
 * cache, bayes_list.h) and, unless bayes_token_max is 0, a quarter of
 * the Bayes tokens (with a reserve of pages kept for that), logs one line,
 * and is tried again; writers that find it full meanwhile, in this process
 * or another, wait for that (up to store_timeout).  A big map's removals
 * go on over the next writes, a quarter of a second each at most
 * (store_lmdb.c make_room; once a minute at most while there is nothing
 * to remove).
 */
#ifndef MW_STORE_H
#define MW_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "proxy/config.h"

/* A key is 1 to STORE_KEY_MAX bytes (store_prefix not counted), none of
 * them a control byte, a space or DEL.  511 is the longest key LMDB
 * stores (mdb_env_get_maxkeysize of its default build; store_lmdb_open
 * refuses a build that stores less), and Redis keys are held to the same
 * figure, so that a key works on both backends or on neither.  A longer
 * key is refused whole by every call (-1, logged), never cut short or
 * hashed here: two keys that differ only past the limit must not become
 * one.  Callers that build keys from envelope data (greylist triplets,
 * rate limit subjects, Bayes message ids) hash that data into keys of a
 * fixed length themselves (store_key_hash, store_key_hash_bytes). */
#define STORE_KEY_MAX   511
#define STORE_VALUE_MAX 1024    /* bytes of a string value */
#define STORE_BLOB_MAX (8u << 20)   /* bytes of a binary value */
#define STORE_HASH_HEX  32      /* hex digits of a store_key_hash digest */

struct store;

/* One Bayes token: its 64-bit hash, and how many spam and ham messages
 * carried it. */
struct store_token {
	uint64_t hash;
	uint32_t spam;
	uint32_t ham;
};

/* One message learned, relearned or forgotten (store_learn): its mark
 * key says which class it is counted in ('s', 'h', or '\0': none; 'S'
 * and 'H' count as 's' and 'h': Bayes' mark of a message of which
 * autolearn counted a sample only).
 * A value kept beside the mark (Bayes: the message's example for the
 * character model, bayes_chars.h) is written or removed in the same
 * step, so that whatever other learners of the message do meanwhile the
 * two never disagree: written on its own before the learn, a learner's
 * example could land after another's learn and stay there. */
struct store_learning {
	const char *mark;           /* the message's key ("bayes:seen:<id>") */
	char        was;            /* the mark expected: 's', 'h', 'S', 'H' or '\0' (absent) */
	char        now;            /* the mark wanted: a class, or '\0' (forget) */
	unsigned    mark_ttl_s;     /* the new mark's lifetime (0 = never) */
	const char *count[2];       /* the spam and ham message counters */
	const uint64_t *hashes;     /* the message's distinct tokens, sorted: now's class +1 */
	size_t      n;
	/* the tokens was's class is taken off (sorted, unique), or NULL:
	 * hashes.  Bayes: an autolearned message ('S'/'H') counted only its
	 * sample, and only that is taken off when it is forgotten or taught */
	const uint64_t *off;
	size_t      off_n;
	const char *kept;           /* the value's key, or NULL: none touched */
	const void *kept_val;       /* its bytes (any), or NULL: the key removed */
	size_t      kept_len;       /* at most STORE_BLOB_MAX */
	unsigned    kept_ttl_s;     /* its lifetime (0 = never) */
	const char *kept_count;     /* a counter +1 when kept is written or removed, or NULL */
	/* Redis with bayes_token_ttl = 0 (taught tokens never expire): the
	 * lifetime autolearn gives the tokens it learns that are new or
	 * expiring already, renewed by each autolearn of them; a token the
	 * site taught stays without one.  0: a learn the site asked for,
	 * which takes every token it learns off expiry.  LMDB: not read
	 * (bayes_token_max bounds its tokens). */
	unsigned    volatile_ttl_s;
};

/* backend operations; each returns as documented for the store_* call */
struct store_ops {
	const char *name;
	int  (*get)(void *b, const char *key, char *val, size_t valsz);
	int  (*get_now)(void *b, const char *key, char *val, size_t valsz, int64_t *now_ms);
	int  (*set)(void *b, const char *key, const char *val, unsigned ttl_s);
	int  (*del)(void *b, const char *key);
	int  (*move)(void *b, const char *from, const char *to);
	int  (*incr)(void *b, const char *key, int64_t by, unsigned ttl_s, int64_t *out);
	int  (*swap)(void *b, const char *key, const char *expect, const char *val, unsigned ttl_s);
	int  (*take)(void *b, const char *key, unsigned window_ms, int64_t by, int64_t limit,
	             int64_t *at_ms, int64_t *cur, int64_t *prev);
	int  (*learn)(void *b, const struct store_learning *l, uint32_t day, uint64_t *ntokens);
	int  (*tokens_get)(void *b, struct store_token *t, size_t n);
	int  (*tokens_add)(void *b, const struct store_token *t, size_t n, int sign,
	                   uint32_t day, uint64_t *ntokens);
	/* NULL where the backend bounds its tokens otherwise (Redis: TTL) */
	int  (*tokens_expire)(void *b, uint64_t keep, uint32_t today, uint64_t *removed);
	int  (*tokens_count)(void *b, uint64_t *n);       /* NULL: not known */
	/* bayes_token_max of the latest open (a reload's too); NULL where the
	 * backend does not use it (Redis) */
	void (*token_max)(void *b, uint64_t max);
	int  (*blob_get)(void *b, const char *key, unsigned char **data, size_t *len);
	int  (*blob_set)(void *b, const char *key, const void *data, size_t len, unsigned ttl_s);
	int  (*scan)(void *b, const char *prefix,
	             int (*fn)(const char *key, const unsigned char *data, size_t len, void *arg),
	             void *arg);
	void (*close)(void *b);
};

/* store_key_hash - "<prefix><32 hex digits>" into out: SHA-256, cut to
 * 128 bits, of prefix and then the n fields, each as its length (8 bytes,
 * big-endian) and its bytes with ASCII A-Z lower-cased (envelope
 * addresses and domains compare so), so that no two lists of fields give
 * one input ("a" + "bc" is not "ab" + "c", whatever bytes they hold).
 * For keys built from what a client sends: 64-bit FNV-1a, used before,
 * let a sender craft a collision with someone else's key.  0, or -1 if
 * out is too small or the digest fails (logged). */
int store_key_hash(const char *prefix, const char *const *fields, size_t n,
                   char *out, size_t outsz);
/* store_key_hash_bytes - the same over fields of lens[i] bytes each, any
 * bytes, none lower-cased (the prefix neither): for what is compared
 * byte for byte, a Message-ID or a whole message (Bayes' message ids) */
int store_key_hash_bytes(const char *prefix, const void *const *fields, const size_t *lens,
                         size_t n, char *out, size_t outsz);

/* store_open - the process's store for cfg (store, store_path,
 * store_redis, ...): opened on the first call, shared afterwards.  NULL
 * with a one-line reason in err (path unusable, bad address).  A Redis
 * server that is down is not an error here: calls fail until it is back. */
struct store *store_open(const struct config *cfg, char *err, size_t errlen);
/* store_open_bulk - the same for a bulk writer ("mailwarden learn"): LMDB
 * commits are not flushed one by one but once at store_close (a crash
 * loses the batch, never the file's integrity: LMDB's meta pages stay
 * ordered).  Not for the daemon. */
struct store *store_open_bulk(const struct config *cfg, char *err, size_t errlen);
void store_close(struct store *s);

/* store_backend - "lmdb" or "redis" */
const char *store_backend(const struct store *s);

/* store_get - value of key into val (NUL-terminated, cut to valsz-1).
 * 1 found, 0 absent or expired, -1 store failure or a key refused (see
 * STORE_KEY_MAX; so for every call taking a key). */
int store_get(struct store *s, const char *key, char *val, size_t valsz);
/* store_get_now - store_get, and *now_ms the store's clock (ms since
 * 1970) read in the same step: Redis' TIME inside the script, LMDB this
 * machine's clock.  For stamps that machines sharing a Redis write and
 * compare (greylisting's first attempts and passes): each machine's own
 * clock made a first attempt stamped by one whose clock runs behind look
 * old to the others, and its retry passed before greylist_delay
 * (session 21).  What is written is stamped with this clock too. */
int store_get_now(struct store *s, const char *key, char *val, size_t valsz, int64_t *now_ms);
/* store_set - key = val, expiring after ttl_s seconds (0 = never).
 * 0, or -1. */
int store_set(struct store *s, const char *key, const char *val, unsigned ttl_s);
/* store_del - remove key (absent is fine).  0, or -1. */
int store_del(struct store *s, const char *key);
/* store_move - the value of from (string or binary) and what is left of
 * its lifetime go to to, replacing what to held, and from goes, in one
 * step (an LMDB transaction, a Redis script): for keys whose form
 * changes (Bayes' message ids), where a copy would need the TTL, which
 * the store does not give.  1 moved, 0 from absent or expired (to left
 * as it was), -1 store failure. */
int store_move(struct store *s, const char *from, const char *to);
/* store_incr - atomically add by to the integer at key (absent or expired
 * = 0); a key created by this call expires after ttl_s seconds (0 =
 * never), an existing key keeps its expiry.  *out gets the new value.
 * 0, or -1. */
int store_incr(struct store *s, const char *key, int64_t by, unsigned ttl_s, int64_t *out);
/* store_take - a rate limit's sliding-window counter for key, in
 * windows of window_ms numbered by the STORE's clock (Redis: the
 * server's TIME, read inside the script; LMDB: this machine's), never the
 * caller's: machines sharing a Redis whose clocks differ count into the
 * same windows (with each machine's own clock, one a window ahead of
 * another counted where the other never looked, and a limit let twice
 * its count through; session 21).  The count of this window (cur) and
 * of the one before (prev, weighted by 1 - into, how much of it still
 * lies inside the sliding window; into = at % window_ms / window_ms),
 * the look and any write one step (an LMDB transaction, a Redis script),
 * so that two scanner threads or machines cannot both take the last
 * unit:
 *   by > 0  take: if cur + by + prev * (1 - into) <= limit, cur += by
 *           and 1; else nothing is written and 0;
 *   by = 0  look: nothing written, 1;
 *   by < 0  give back what the take made at *at_ms took: from the window
 *           it was counted in, never below 0, and only while that window
 *           still counts (this one or the one before: a window gone is
 *           not brought back as a credit): 1, or 0 when it is gone or
 *           at 0 already.
 * Counters live two windows.  *at_ms: for a take or a look, gets the
 * store's clock at the call (ms since 1970; NULL: not wanted), which the
 * caller keeps to give back and to work out how long to wait; for a
 * give-back, the take's, given (required).  *cur and *prev (each may be
 * NULL) get the counts after the call.  key is at most
 * STORE_KEY_MAX - 21 bytes (LMDB adds ":<window>").  -1 store failure. */
int store_take(struct store *s, const char *key, unsigned window_ms, int64_t by, int64_t limit,
               int64_t *at_ms, int64_t *cur, int64_t *prev);
/* store_swap - key = val (a string, ttl_s seconds, 0 = never; NULL:
 * key removed) only if key holds expect now (NULL: key absent or
 * expired), the look and the write one step (an LMDB transaction, a Redis
 * script): a lock taken, renewed and released by its holder's own token
 * only.  1 done, 0 key held something else (left as it was), -1 store
 * failure. */
int store_swap(struct store *s, const char *key, const char *expect, const char *val,
               unsigned ttl_s);
/* store_learn - l's message moved from class l->was to class l->now in
 * one step (one LMDB write transaction, one Redis script), only if its
 * mark holds l->was: the class's counter -1 for was and +1 for now (none
 * when both are one class, 'H' to 'h'), each token of l->off -1 for was,
 * each of l->hashes +1 for now (tokens never below 0, a token left at 0/0 removed, a token
 * learned stamped with today), and the mark set to now (or removed);
 * with Redis each counter is kept at 0 or more (a server whose eviction
 * took it would count -1 from a forget), and a token learned gets
 * bayes_token_ttl (renewed), or with that at 0, none, or
 * l->volatile_ttl_s (above).
 * Two learners of one message (the learn command beside autolearn, two
 * machines on one Redis) cannot both count it: the second finds the
 * mark changed.  l->kept (if not NULL) is written or removed, and
 * l->kept_count bumped, in that step too.  With l->was == l->now (and
 * no tokens, n = 0) only l->kept is written, while the mark holds was:
 * the mark and its lifetime, the counters and the tokens stay as they
 * are.  Past bayes_token_max tokens (LMDB) the least useful go, as
 * after store_tokens_add.  1 done, 0 the mark held something else
 * (nothing changed: look again), -1 store failure (nothing changed; with
 * Redis a failure inside the script, which Redis does not undo, is not
 * ruled out, as for any script, nor a script that ran on after the
 * client gave up on it past store_timeout). */
int store_learn(struct store *s, const struct store_learning *l);
/* store_blob_get - the binary value of key: *data gets a malloc'd copy
 * (caller frees), *len its length.  1 found, 0 absent or expired, -1 store
 * failure (or a value over STORE_BLOB_MAX). */
int store_blob_get(struct store *s, const char *key, unsigned char **data, size_t *len);
/* store_blob_set - key = len bytes of data (any bytes, NUL included; len
 * <= STORE_BLOB_MAX), expiring after ttl_s seconds (0 = never).  0, or -1.
 * store_del removes it like any key. */
int store_blob_set(struct store *s, const char *key, const void *data, size_t len, unsigned ttl_s);
/* store_scan - fn(key, data, len, arg) for every key that starts with
 * prefix and has not expired, in no set order (keys given without the
 * store's own prefix, i.e. as passed to store_blob_set/store_set), the
 * value as store_blob_get would give it; fn returns 0 to go on, non-zero
 * to stop (store_scan then returns 0).  For command-line tools ("mailwarden
 * learn"), not for the scanner's hot path: it may see many keys.  0, or -1
 * on a store failure.
 * The walk is in batches (LMDB: a read transaction per 1,000 entries or
 * 16 MiB, none held while fn runs; Redis: SCAN, each round trip within
 * store_timeout), so keys written or removed meanwhile may or may not be
 * seen, and with Redis a key may be given twice (SCAN's guarantee is
 * "at least once" for keys there throughout): fn must tolerate both.
 * Redis keys that are not strings (Bayes token hashes) are not given. */
int store_scan(struct store *s, const char *prefix,
               int (*fn)(const char *key, const unsigned char *data, size_t len, void *arg), void *arg);
/* store_tokens_get - fill spam/ham of each of the n tokens by hash (0/0
 * for unknown ones), in one round trip / read transaction.  0, or -1. */
int store_tokens_get(struct store *s, struct store_token *t, size_t n);
/* store_tokens_add - add (sign > 0) or subtract (sign < 0) the spam/ham
 * counts of n tokens, atomically as one batch; counts never go below 0,
 * a token left at 0/0 is removed.  Learning stamps each token with
 * today's date.  Past bayes_token_max tokens (LMDB), the store then
 * removes the least useful down to three quarters of it
 * (store_tokens_expire).  0, or -1. */
int store_tokens_add(struct store *s, const struct store_token *t, size_t n, int sign);
/* store_tokens_add_on - the same, learned on day (days since 1970) */
int store_tokens_add_on(struct store *s, const struct store_token *t, size_t n, int sign,
                        uint32_t day);
/* store_tokens_expire - keep at most keep tokens: tokens seen in one
 * message go first, then the others, each the longest unlearned first;
 * today dates them.  *removed gets how many went.  0 (also when there is
 * nothing to do, another thread is at it, or the backend has no count),
 * or -1. */
int store_tokens_expire(struct store *s, uint64_t keep, uint32_t today, uint64_t *removed);
/* store_tokens_count - how many Bayes tokens the store holds: 0, or -1
 * when the backend cannot tell cheaply (Redis) or fails */
int store_tokens_count(struct store *s, uint64_t *n);

/* backends (store_lmdb.c, store_redis.c): 0 and *backend, or -1 with err */
int store_lmdb_open(const struct config *cfg, int bulk, void **backend, char *err, size_t errlen);
int store_redis_open(const struct config *cfg, void **backend, char *err, size_t errlen);
/* store_lmdb_dir_owner - run as root, for an LMDB store at path in a
 * directory another user owns: 1 with that owner's uid and gid (the
 * identity to open it as), else 0 */
int store_lmdb_dir_owner(const char *path, uid_t *uid, gid_t *gid);
extern const struct store_ops store_lmdb_ops;
extern const struct store_ops store_redis_ops;

#endif
