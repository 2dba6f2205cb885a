/* store_lmdb.c - the embedded store backend (store.h): one LMDB file.
 *
 * Two databases in the file:
 *   kv   key -> 8-byte expiry (unix seconds, little endian, 0 = never)
 *               then the value bytes (counters as decimal text, binary
 *               values as they are: store_blob_set, same expiry and sweep)
 *   tok  8-byte token hash -> spam count, ham count, day last learned
 *        (three uint32, host order; the day in days since 1970; values
 *        of 8 bytes, written before there was a day, read as day 0)
 * LMDB serialises writers (across processes too: "mailwarden learn" may
 * run beside the scanner) and readers never block, so counters are atomic
 * by running read-modify-write in one write transaction.  MDB_NOTLS: a
 * read transaction is not tied to a thread (scanner workers share the
 * environment).  Commits flush the data but not the meta page
 * (MDB_NOMETASYNC: a crash may lose the last transaction, never the
 * file's integrity); a bulk writer flushes once at the end.  Expired keys read as absent and are swept every
 * SWEEP_EVERY writes and at open, so greylist triplets do not pile up.
 * Bayes tokens have no expiry of their own: every learned message adds a
 * hundred or so new ones, and the map they fill is the one greylisting
 * and rate limits write to, so past bayes_token_max the least useful are
 * removed (lmdb_tokens_expire).  A write that finds the map full anyway
 * (store_map_size too small for bayes_token_max, or filled by other keys)
 * makes room and is tried once more (write_txn, make_room): without it a
 * full map failed every learn, and soon greylisting, for good.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <syslog.h>
#include <time.h>

#include "filters/store.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"

#define SWEEP_EVERY 4096
#define SWEEP_MAX   100000       /* entries looked at per sweep */
#define TOKEN_VAL   12           /* spam, ham, day */
#define AGE_DAYS    4096         /* token ages told apart; older ones are alike */
#define EXPIRE_CHUNK 20000       /* deletions per write transaction, at most */
#define ROOM_RETRY_S 60          /* make_room again after one whose retry failed */
#define ROOM_CHUNK  1000         /* make_room's removals per write transaction */
#define SCAN_BATCH  1000         /* entries copied out per read transaction */
#define SCAN_BYTES  (16u << 20)  /* value bytes copied out per read transaction */

struct lmdb_store {
	MDB_env *env;
	MDB_dbi  kv, tok;
	char     path[512];
	atomic_uint writes;
	atomic_flag expiring;    /* one expiry at a time in this process */
	atomic_flag sweeping;    /* one sweep at a time: sweep_from is its own */
	atomic_flag rooming;     /* one make_room at a time */
	_Atomic int64_t room_at; /* when make_room last ran (unix seconds; 0 never) */
	atomic_int room_helped;  /* whether the write retried after it went through */
	_Atomic uint64_t token_max;   /* bayes_token_max (store.c); 0: make_room keeps every token */
	unsigned char room_from[8];   /* where make_room's next window of tokens */
	size_t room_from_len;         /* starts (0: the first); under expiring */
	/* Where the next sweep starts (empty: the first key).  Each sweep
	 * looks at SWEEP_MAX entries from where the last one stopped and
	 * wraps around at the end; starting from the first key each time
	 * never reached keys sorting after SWEEP_MAX live ones, so past
	 * 100,000 learned messages' "bayes:seen" keys the greylist triplets
	 * behind them were never removed. */
	unsigned char sweep_from[STORE_KEY_MAX];
	size_t sweep_from_len;   /* under sweeping */
};

static uint64_t now_s(void)
{
	return (uint64_t)time(NULL);
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* disk_full - the file system holding path has no block left for us */
static int disk_full(const char *path)
{
	char dir[sizeof(((struct lmdb_store *)0)->path)];
	struct statvfs sv;

	snprintf(dir, sizeof(dir), "%s", path);
	return statvfs(dirname(dir), &sv) == 0 && sv.f_bavail == 0;
}

static void lerr(const struct lmdb_store *b, const char *what, int rc)
{
	/* LMDB reports a short write (a full disk that took part of the
	 * pages) as EIO, which reads as a failing disk: say what it is */
	int full = (rc == EIO || rc == ENOSPC || rc == EDQUOT) && disk_full(b->path);

	slog(NULL, LOG_ERR, "store lmdb %s: %s: %s%s", b->path, what, mdb_strerror(rc),
	     rc == MDB_MAP_FULL ? " (raise store_map_size, or lower bayes_token_max)"
	     : full ? " (its file system is full)" : "");
}

/* doomed_fn - whether a walk_delete removes the entry whose value is v;
 * *quota is the walk's to spend (a count some walks take down), put
 * back as it was when a chunk is undone */
typedef int (*doomed_fn)(const MDB_val *v, void *arg, uint64_t *quota);

/* One walk_delete: what it walks and removes, where it starts, and where
 * and with what it ended. */
struct walk {
	MDB_dbi   dbi;
	doomed_fn doomed;
	void     *arg;
	uint64_t  quota;              /* in and out: doomed's */
	size_t    look;               /* entries looked at, at most (0 = all) */
	unsigned  chunk;              /* removals per transaction, at most (0 = EXPIRE_CHUNK) */
	unsigned char at[STORE_KEY_MAX];  /* in: the key to start at; out: the */
	size_t    at_len;             /* first not looked at (0 = the first / the end) */
	uint64_t  removed;            /* out: entries removed and committed */
};

/* walk_delete - the entries of w->dbi from w->at on (w->look of them at
 * most), those doomed removed, in write transactions of up to
 * EXPIRE_CHUNK removals each, so that other writers are not held up for
 * the whole walk.  A removal copies its page (and the pages above it)
 * before changing it, so a walk that thins a tree out spread over many
 * pages needs a free page for each page it touches in a transaction, and
 * a full map (MDB_MAP_FULL) has few: there the chunk is undone and tried
 * again at half the size, down to a single removal, and doubled again
 * after each commit.  The pages a commit frees are reusable two
 * transactions later, so small commits are what let a full map make
 * progress at all.  0, or the LMDB error that stopped it (what was
 * committed before stays; w says how far it got). */
static int walk_delete(struct lmdb_store *b, struct walk *w)
{
	unsigned most = w->chunk > 0 ? w->chunk : EXPIRE_CHUNK, chunk = most;
	size_t seen = 0;
	int rc = 0, more = 1;

	while (more) {
		MDB_txn *txn;
		MDB_cursor *cur;
		MDB_val k, v;
		unsigned gone = 0;
		size_t looked = 0, next_len = 0;
		uint64_t quota = w->quota;
		unsigned char next[sizeof(w->at)];

		if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0)
			break;
		if ((rc = mdb_cursor_open(txn, w->dbi, &cur)) != 0) {
			mdb_txn_abort(txn);
			break;
		}
		if (w->at_len > 0) {
			k.mv_data = w->at;
			k.mv_size = w->at_len;
			rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		} else
			rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		more = 0;
		for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			if (gone == chunk || (w->look > 0 && seen + looked == w->look)) {
				/* stopped at the chunk or the budget: on from this key */
				if (k.mv_size <= sizeof(next)) {
					memcpy(next, k.mv_data, k.mv_size);
					next_len = k.mv_size;
				}
				more = gone == chunk;
				break;
			}
			looked++;
			if (w->doomed(&v, w->arg, &quota)) {
				if ((rc = mdb_cursor_del(cur, 0)) != 0)
					break;
				gone++;
			}
			/* after a delete, MDB_NEXT gives the entry that followed it */
		}
		mdb_cursor_close(cur);
		if (rc == 0 || rc == MDB_NOTFOUND)
			rc = mdb_txn_commit(txn);        /* frees txn, failed or not */
		else
			mdb_txn_abort(txn);
		if (rc == MDB_MAP_FULL && chunk > 1) {
			/* undone: the same entries again, fewer removals a commit */
			chunk = (gone > 0 && gone < chunk ? gone : chunk) / 2;
			if (chunk == 0)
				chunk = 1;
			more = 1;
			continue;
		}
		if (rc != 0)
			break;
		w->quota = quota;
		w->removed += gone;
		seen += looked;
		memcpy(w->at, next, next_len);
		w->at_len = next_len;
		if (chunk < most)
			chunk = 2 * chunk < most ? 2 * chunk : most;
	}
	return rc;
}

/* kv_expired - a walk_delete's doomed: a kv entry past its expiry (arg:
 * now, unix seconds), or too short to hold one */
static int kv_expired(const MDB_val *v, void *arg, uint64_t *quota)
{
	uint64_t exp = v->mv_size >= 8 ? get_u64(v->mv_data) : 1;

	(void)quota;
	return exp != 0 && exp <= *(const uint64_t *)arg;
}

/* sweep - delete expired kv entries (at most SWEEP_MAX looked at, from
 * where the last sweep stopped); a sweep already running in another
 * thread is left to it */
static void sweep(struct lmdb_store *b)
{
	uint64_t now = now_s();
	struct walk w = { .dbi = b->kv, .doomed = kv_expired, .arg = &now, .look = SWEEP_MAX };
	int rc;

	if (atomic_flag_test_and_set(&b->sweeping))
		return;
	memcpy(w.at, b->sweep_from, b->sweep_from_len);
	w.at_len = b->sweep_from_len;
	rc = walk_delete(b, &w);
	/* stopped at the budget: the next sweep starts at the first key not
	 * looked at; at the end of the keys: from the first again; on an
	 * error: where the last commit left it */
	memcpy(b->sweep_from, w.at, w.at_len);
	b->sweep_from_len = w.at_len;
	atomic_flag_clear(&b->sweeping);
	if (rc != 0)
		lerr(b, "sweep", rc);
	else if (w.removed > 0)
		slog(NULL, LOG_DEBUG, "store lmdb %s: %" PRIu64 " expired keys removed", b->path,
		     w.removed);
}

static void wrote(struct lmdb_store *b)
{
	if (atomic_fetch_add(&b->writes, 1) % SWEEP_EVERY == SWEEP_EVERY - 1)
		sweep(b);
}

/* store_lmdb_dir_owner - whose store path is, for root: 1 with the
 * directory owner's uid and gid when root runs in a directory another
 * user owns (the daemon's), else 0 (not root, root's directory, or a
 * store or lock file that is already someone else's than the directory's
 * owner: root's, left by an older version or a daemon run as root, which
 * the owner could not open; not a link of any kind, though: those are
 * what this is about). */
int store_lmdb_dir_owner(const char *path, uid_t *uid, gid_t *gid)
{
	char dir[PATH_MAX];
	struct stat ds;

	if (geteuid() != 0)
		return 0;
	snprintf(dir, sizeof(dir), "%s", path);
	if (stat(dirname(dir), &ds) < 0 || ds.st_uid == 0)
		return 0;
	for (int i = 0; i < 2; i++) {
		char f[PATH_MAX + 8];
		struct stat st;

		snprintf(f, sizeof(f), "%s%s", path, i ? "-lock" : "");
		if (lstat(f, &st) == 0 && st.st_uid != ds.st_uid && S_ISREG(st.st_mode)
		    && st.st_nlink == 1)
			return 0;
	}
	*uid = ds.st_uid;
	*gid = ds.st_gid;
	return 1;
}

/* as_dir_owner - root opening a store in a directory another user owns
 * (the daemon's) opens it with that user's file-system identity: what
 * LMDB creates (the store, its lock file) is then the daemon's, which
 * must go on opening them, and a link planted there in place of the lock
 * file (which LMDB truncates) reaches nothing the user could not write
 * anyway.  That is all it protects: the map is still root's memory, and
 * LMDB trusts every page of the file, so `mailwarden learn` does its
 * store work in a child dropped to the user instead (learn_cmd.c); this
 * is left for a root `scan` with no "user".  Returns whether it
 * switched; as_self() switches back. */
static int as_dir_owner(const char *path)
{
	uid_t uid;
	gid_t gid;

	if (!store_lmdb_dir_owner(path, &uid, &gid))
		return 0;
	setfsgid(gid);
	setfsuid(uid);
	return 1;
}

static void as_self(int switched)
{
	if (switched) {
		setfsuid(geteuid());
		setfsgid(getegid());
	}
}

int store_lmdb_open(const struct config *cfg, int bulk, void **backend, char *err, size_t errlen)
{
	struct lmdb_store *b = xcalloc(1, sizeof(*b));
	MDB_txn *txn = NULL;
	int rc, dead = 0;

	atomic_flag_clear(&b->expiring);
	atomic_flag_clear(&b->sweeping);
	atomic_flag_clear(&b->rooming);
	snprintf(b->path, sizeof(b->path), "%s", cfg->store_path);
	if ((rc = mdb_env_create(&b->env)) != 0)
		goto fail;
	/* STORE_KEY_MAX is this figure of the default build; an LMDB built
	 * with a smaller MDB_MAXKEYSIZE would refuse keys store.c lets by,
	 * as a write that fails (MDB_BAD_VALSIZE) and reads that find
	 * nothing: refused here once instead */
	if (mdb_env_get_maxkeysize(b->env) < STORE_KEY_MAX) {
		snprintf(err, errlen, "store_path %s: this LMDB stores keys of at most %d bytes, "
		         "mailwarden's take up to %d", b->path, mdb_env_get_maxkeysize(b->env),
		         STORE_KEY_MAX);
		mdb_env_close(b->env);
		free(b);
		return -1;
	}
	if ((rc = mdb_env_set_maxdbs(b->env, 4)) != 0
	    || (rc = mdb_env_set_maxreaders(b->env, 512)) != 0
	    || (rc = mdb_env_set_mapsize(b->env, (size_t)cfg->store_map_size)) != 0)
		goto fail;
	int switched = as_dir_owner(b->path);
	rc = mdb_env_open(b->env, b->path,
	    MDB_NOSUBDIR | MDB_NOTLS | (bulk ? MDB_NOSYNC : MDB_NOMETASYNC), 0640);
	as_self(switched);
	if (rc != 0)
		goto fail;
	mdb_reader_check(b->env, &dead);     /* readers of crashed processes */
	if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0)
		goto fail;
	if ((rc = mdb_dbi_open(txn, "kv", MDB_CREATE, &b->kv)) != 0
	    || (rc = mdb_dbi_open(txn, "tok", MDB_CREATE, &b->tok)) != 0)
		goto fail;
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc != 0)
		goto fail;
	sweep(b);
	*backend = b;
	return 0;
fail:
	snprintf(err, errlen, "store_path %s: %s", b->path, mdb_strerror(rc));
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (b->env != NULL)
		mdb_env_close(b->env);
	free(b);
	return -1;
}

static void lmdb_close(void *vb)
{
	struct lmdb_store *b = vb;

	mdb_env_sync(b->env, 1);
	mdb_env_close(b->env);
	free(b);
}

static MDB_val key_val(const char *key)
{
	MDB_val k = { strlen(key), (void *)(uintptr_t)key };
	return k;
}

/* kv_live - key's value unless expired, pointing into the map: 1 with
 * *txn left open for the caller to copy it out and abort, 0 absent or
 * expired, -1 on an error (logged); with 0 or -1 no transaction is open */
static int kv_live(struct lmdb_store *b, const char *key, MDB_txn **txn, MDB_val *val)
{
	MDB_val k = key_val(key);
	int rc;

	if ((rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, txn)) != 0) {
		lerr(b, "read", rc);
		return -1;
	}
	rc = mdb_get(*txn, b->kv, &k, val);
	if (rc == 0 && val->mv_size >= 8) {
		uint64_t exp = get_u64(val->mv_data);

		if (exp == 0 || exp > now_s()) {
			val->mv_data = (char *)val->mv_data + 8;
			val->mv_size -= 8;
			return 1;
		}
	} else if (rc != 0 && rc != MDB_NOTFOUND) {
		lerr(b, "get", rc);
		mdb_txn_abort(*txn);
		return -1;
	}
	mdb_txn_abort(*txn);
	return 0;
}

static int lmdb_get(void *vb, const char *key, char *val, size_t valsz)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	MDB_val v;
	int found = kv_live(b, key, &txn, &v);

	if (found == 1) {
		size_t n = v.mv_size < valsz - 1 ? v.mv_size : valsz - 1;

		memcpy(val, v.mv_data, n);
		val[n] = '\0';
		mdb_txn_abort(txn);
	}
	return found;
}

/* put_kv - key = val with expiry, inside txn */
static int put_kv(struct lmdb_store *b, MDB_txn *txn, const char *key, const char *val,
                  size_t vlen, uint64_t exp)
{
	MDB_val k = key_val(key), v;
	unsigned char buf[8 + STORE_VALUE_MAX + 32];

	if (vlen > sizeof(buf) - 8)
		return EINVAL;
	put_u64(buf, exp);
	memcpy(buf + 8, val, vlen);
	v.mv_size = 8 + vlen;
	v.mv_data = buf;
	return mdb_put(txn, b->kv, &k, &v, 0);
}

/* a write_fn found nothing to write: no error.  Not -1, which write_txn
 * returns for a failure: with both -1, a failed move, swap or learn was
 * reported as "nothing there" (0) instead of a store failure.  No LMDB
 * code is -2 (theirs are errno values and -30799..-30780). */
#define TXN_NOTHING (-2)

/* write_fn - a write's work inside txn: 0 (commit it), TXN_NOTHING (abort
 * it, nothing wrong), or an LMDB error with *what naming the step that
 * failed.  It may run twice (write_txn): it must not keep anything of a
 * first run that was undone. */
typedef int (*write_fn)(struct lmdb_store *b, MDB_txn *txn, void *arg, const char **what);

static int make_room(struct lmdb_store *b);

/* write_txn - fn in a write transaction of its own, committed.  When the
 * map is full (MDB_MAP_FULL, from a write or the commit), make_room frees
 * what it can and fn runs once more in a new transaction (which may use
 * the pages freed by all but make_room's last commit): a store that
 * filled up recovers by itself instead of failing every write from then
 * on.  0 written, TXN_NOTHING, or -1 (logged: only the outcome, not a
 * first attempt that a retry made good). */
static int write_txn(struct lmdb_store *b, write_fn fn, void *arg)
{
	int rc, retried = 0;

	for (;;) {
		MDB_txn *txn;
		const char *what = "write";

		if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) == 0) {
			if ((rc = fn(b, txn, arg, &what)) == 0) {
				what = "commit";
				rc = mdb_txn_commit(txn);
			} else
				mdb_txn_abort(txn);
		}
		if (rc == MDB_MAP_FULL && !retried && make_room(b)) {
			retried = 1;
			continue;
		}
		if (retried)
			atomic_store(&b->room_helped, rc != MDB_MAP_FULL);
		if (rc == 0 || rc == TXN_NOTHING)
			return rc;
		lerr(b, what, rc);
		return -1;
	}
}

struct set_arg {
	const char *key, *val;
	unsigned ttl_s;
};

static int set_in(struct lmdb_store *b, MDB_txn *txn, void *arg, const char **what)
{
	const struct set_arg *a = arg;

	*what = "put";
	return put_kv(b, txn, a->key, a->val, strlen(a->val), a->ttl_s ? now_s() + a->ttl_s : 0);
}

static int lmdb_set(void *vb, const char *key, const char *val, unsigned ttl_s)
{
	struct lmdb_store *b = vb;
	struct set_arg a = { key, val, ttl_s };

	if (write_txn(b, set_in, &a) < 0)
		return -1;
	wrote(b);
	return 0;
}

static int del_in(struct lmdb_store *b, MDB_txn *txn, void *arg, const char **what)
{
	MDB_val k = key_val(arg);
	int rc;

	*what = "del";
	return (rc = mdb_del(txn, b->kv, &k, NULL)) == MDB_NOTFOUND ? 0 : rc;
}

static int lmdb_del(void *vb, const char *key)
{
	return write_txn(vb, del_in, (void *)(uintptr_t)key) < 0 ? -1 : 0;
}

struct move_arg {
	const char *from, *to;
};

static int move_in(struct lmdb_store *b, MDB_txn *txn, void *arg, const char **what)
{
	const struct move_arg *a = arg;
	MDB_val k = key_val(a->from), nk = key_val(a->to), v;
	unsigned char *copy;
	uint64_t exp;
	int rc;

	*what = "move";
	rc = mdb_get(txn, b->kv, &k, &v);
	if (rc == MDB_NOTFOUND || (rc == 0 && (v.mv_size < 8 || ((exp = get_u64(v.mv_data)) != 0
	                                                          && exp <= now_s()))))
		return TXN_NOTHING;
	if (rc != 0)
		return rc;
	/* the value points into the map, which the put may change: copied
	 * first, its expiry with it */
	copy = xmalloc(v.mv_size);
	memcpy(copy, v.mv_data, v.mv_size);
	v.mv_data = copy;
	if ((rc = mdb_put(txn, b->kv, &nk, &v, 0)) == 0)
		rc = mdb_del(txn, b->kv, &k, NULL);
	free(copy);
	return rc;
}

static int lmdb_move(void *vb, const char *from, const char *to)
{
	struct lmdb_store *b = vb;
	struct move_arg a = { from, to };
	int rc = write_txn(b, move_in, &a);

	if (rc < 0)
		return rc == TXN_NOTHING ? 0 : -1;
	wrote(b);
	return 1;
}

/* incr_in - store_incr's work inside txn: 0, or an LMDB error (what
 * failed in *what) */
static int incr_in(struct lmdb_store *b, MDB_txn *txn, const char *key, int64_t by,
                   unsigned ttl_s, int64_t *out, const char **what)
{
	MDB_val k = key_val(key), v;
	uint64_t now = now_s(), exp = ttl_s ? now + ttl_s : 0;
	int64_t cur = 0;
	char num[32];
	int rc;

	*what = "get";
	rc = mdb_get(txn, b->kv, &k, &v);
	if (rc == 0 && v.mv_size >= 8) {
		uint64_t old = get_u64(v.mv_data);

		if (old == 0 || old > now) {       /* alive: keep its expiry */
			size_t n = v.mv_size - 8 < sizeof(num) - 1 ? v.mv_size - 8 : sizeof(num) - 1;

			memcpy(num, (char *)v.mv_data + 8, n);
			num[n] = '\0';
			cur = strtoll(num, NULL, 10);
			exp = old;
		}
	} else if (rc != 0 && rc != MDB_NOTFOUND) {
		return rc;
	}
	cur += by;
	snprintf(num, sizeof(num), "%" PRId64, cur);
	*what = "put";
	if ((rc = put_kv(b, txn, key, num, strlen(num), exp)) != 0)
		return rc;
	if (out != NULL)
		*out = cur;
	return 0;
}

/* live_in - key's live value inside txn, copied into val (at most
 * valsz - 1 bytes, NUL-terminated): 1, 0 absent or expired, or -1 with
 * the LMDB error in *err */
static int live_in(struct lmdb_store *b, MDB_txn *txn, const char *key, char *val, size_t valsz,
                   int *err)
{
	MDB_val k = key_val(key), v;
	uint64_t exp;
	size_t n;
	int rc = mdb_get(txn, b->kv, &k, &v);

	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0) {
		*err = rc;
		return -1;
	}
	if (v.mv_size < 8 || ((exp = get_u64(v.mv_data)) != 0 && exp <= now_s()))
		return 0;
	n = v.mv_size - 8 < valsz - 1 ? v.mv_size - 8 : valsz - 1;
	memcpy(val, (char *)v.mv_data + 8, n);
	val[n] = '\0';
	return 1;
}

struct incr_arg {
	const char *key;
	int64_t by;
	unsigned ttl_s;
	int64_t *out;
};

static int incr_txn(struct lmdb_store *b, MDB_txn *txn, void *arg, const char **what)
{
	struct incr_arg *a = arg;

	return incr_in(b, txn, a->key, a->by, a->ttl_s, a->out, what);
}

static int lmdb_incr(void *vb, const char *key, int64_t by, unsigned ttl_s, int64_t *out)
{
	struct lmdb_store *b = vb;
	struct incr_arg a = { key, by, ttl_s, out };

	if (write_txn(b, incr_txn, &a) < 0)
		return -1;
	wrote(b);
	return 0;
}

struct take_arg {
	const char *key, *prev_key;
	double prev_weight;
	int64_t by, limit;
	unsigned ttl_s;
	int64_t cur, prev;
};

/* take_look - the two counters of a take inside txn: 0, or an LMDB error */
static int take_look(struct lmdb_store *b, MDB_txn *txn, struct take_arg *a, int *cur_found)
{
	char v[32];
	int rc = 0, found;

	a->cur = a->prev = 0;
	if ((found = live_in(b, txn, a->key, v, sizeof(v), &rc)) < 0)
		return rc;
	if (found)
		a->cur = strtoll(v, NULL, 10);
	*cur_found = found;
	if ((found = live_in(b, txn, a->prev_key, v, sizeof(v), &rc)) < 0)
		return rc;
	if (found)
		a->prev = strtoll(v, NULL, 10);
	return 0;
}

static int take_in(struct lmdb_store *b, MDB_txn *txn, void *arg, const char **what)
{
	struct take_arg *a = arg;
	int64_t want;
	int rc, found;

	*what = "get";
	if ((rc = take_look(b, txn, a, &found)) != 0)
		return rc;
	if (a->by > 0) {
		/* refused: nothing written, so an attempt over the limit costs
		 * no commit either */
		if ((double)(a->cur + a->by) + (double)a->prev * a->prev_weight > (double)a->limit)
			return TXN_NOTHING;
		want = a->by;
	} else {
		if (!found || a->cur <= 0)
			return TXN_NOTHING;
		want = a->cur + a->by < 0 ? -a->cur : a->by;
	}
	return incr_in(b, txn, a->key, want, a->ttl_s, &a->cur, what);
}

static int lmdb_take(void *vb, const char *key, const char *prev_key, double prev_weight,
                     int64_t by, int64_t limit, unsigned ttl_s, int64_t *cur, int64_t *prev)
{
	struct lmdb_store *b = vb;
	struct take_arg a = { key, prev_key, prev_weight, by, limit, ttl_s, 0, 0 };
	int rc, found;

	if (by == 0) {
		/* a look: a read transaction, which never waits for a writer */
		MDB_txn *txn;

		if ((rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn)) != 0) {
			lerr(b, "read", rc);
			return -1;
		}
		rc = take_look(b, txn, &a, &found);
		mdb_txn_abort(txn);
		if (rc != 0) {
			lerr(b, "get", rc);
			return -1;
		}
		*cur = a.cur;
		*prev = a.prev;
		return 1;
	}
	if ((rc = write_txn(b, take_in, &a)) == -1)
		return -1;
	*cur = a.cur;
	*prev = a.prev;
	if (rc == TXN_NOTHING)
		return 0;
	wrote(b);
	return 1;
}

struct swap_arg {
	const char *key, *expect, *val;
	unsigned ttl_s;
};

static int swap_in(struct lmdb_store *b, MDB_txn *txn, void *arg, const char **what)
{
	const struct swap_arg *a = arg;
	MDB_val k = key_val(a->key);
	char cur[STORE_VALUE_MAX + 2];
	int rc = 0, found;

	*what = "get";
	if ((found = live_in(b, txn, a->key, cur, sizeof(cur), &rc)) < 0)
		return rc;
	if (found != (a->expect != NULL) || (found && strcmp(cur, a->expect) != 0))
		return TXN_NOTHING;
	*what = "swap";
	if (a->val != NULL)
		return put_kv(b, txn, a->key, a->val, strlen(a->val),
		              a->ttl_s ? now_s() + a->ttl_s : 0);
	if ((rc = mdb_del(txn, b->kv, &k, NULL)) == MDB_NOTFOUND)
		rc = 0;                   /* an expired value not swept yet */
	return rc;
}

static int lmdb_swap(void *vb, const char *key, const char *expect, const char *val,
                     unsigned ttl_s)
{
	struct lmdb_store *b = vb;
	struct swap_arg a = { key, expect, val, ttl_s };
	int rc = write_txn(b, swap_in, &a);

	if (rc < 0)
		return rc == TXN_NOTHING ? 0 : -1;
	wrote(b);
	return 1;
}

static int lmdb_blob_get(void *vb, const char *key, unsigned char **data, size_t *len)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	MDB_val v;
	int found = kv_live(b, key, &txn, &v);

	if (found != 1)
		return found;
	if (v.mv_size > STORE_BLOB_MAX) {
		slog(NULL, LOG_ERR, "store lmdb %s: %s: value of %zu bytes (at most %u)",
		     b->path, key, v.mv_size, STORE_BLOB_MAX);
		found = -1;
	} else {
		*len = v.mv_size;
		*data = xmalloc(*len > 0 ? *len : 1);
		memcpy(*data, v.mv_data, *len);
	}
	mdb_txn_abort(txn);
	return found;
}

struct blob_arg {
	const char *key;
	const void *data;
	size_t len;
	unsigned ttl_s;
};

static int blob_in(struct lmdb_store *b, MDB_txn *txn, void *arg, const char **what)
{
	const struct blob_arg *a = arg;
	MDB_val k = key_val(a->key), v = { 8 + a->len, NULL };
	int rc;

	*what = "put";
	/* written in place: no 8 MiB copy of the value on the side */
	if ((rc = mdb_put(txn, b->kv, &k, &v, MDB_RESERVE)) != 0)
		return rc;
	put_u64(v.mv_data, a->ttl_s ? now_s() + a->ttl_s : 0);
	if (a->len > 0)
		memcpy((unsigned char *)v.mv_data + 8, a->data, a->len);
	return 0;
}

static int lmdb_blob_set(void *vb, const char *key, const void *data, size_t len, unsigned ttl_s)
{
	struct lmdb_store *b = vb;
	struct blob_arg a = { key, data, len, ttl_s };

	if (write_txn(b, blob_in, &a) < 0)
		return -1;
	wrote(b);
	return 0;
}

struct scan_entry {
	char *key;
	unsigned char *data;
	size_t len;
};

/* lmdb_scan - a read transaction per batch, copied out and ended before fn
 * sees it: fn may take long (a learn run), and a reader held open pins the
 * pages it sees, so every write meanwhile would grow the file instead of
 * reusing them. */
static int lmdb_scan(void *vb, const char *prefix,
                     int (*fn)(const char *key, const unsigned char *data, size_t len, void *arg),
                     void *arg)
{
	struct lmdb_store *b = vb;
	struct scan_entry *batch = xcalloc(SCAN_BATCH, sizeof(*batch));
	size_t plen = strlen(prefix), n = 0, i;
	char *resume = NULL;          /* the last key handed out; NULL: start */
	int rc = 0, done = 0, stop = 0;

	while (!done && !stop) {
		MDB_txn *txn;
		MDB_cursor *cur;
		MDB_val k, v;
		size_t bytes = 0;
		uint64_t now = now_s();

		if ((rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn)) != 0)
			break;
		if ((rc = mdb_cursor_open(txn, b->kv, &cur)) != 0) {
			mdb_txn_abort(txn);
			break;
		}
		if (resume != NULL) {
			k = key_val(resume);
			rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
			if (rc == 0 && k.mv_size == strlen(resume)
			    && memcmp(k.mv_data, resume, k.mv_size) == 0)
				rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		} else if (plen > 0) {
			k = key_val(prefix);
			rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		} else
			rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		n = 0;
		for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			uint64_t exp;

			if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0) {
				done = 1;            /* past the prefix: keys are sorted */
				break;
			}
			if (n == SCAN_BATCH || (n > 0 && bytes + v.mv_size > SCAN_BYTES))
				break;               /* resume from batch[n-1] */
			if (v.mv_size < 8 || memchr(k.mv_data, '\0', k.mv_size) != NULL)
				continue;            /* not ours to give as a C string */
			exp = get_u64(v.mv_data);
			if (exp != 0 && exp <= now)
				continue;
			if (v.mv_size - 8 > STORE_BLOB_MAX) {
				slog(NULL, LOG_WARNING, "store lmdb %s: scan: %.*s: value of %zu bytes "
				     "(at most %u) skipped", b->path, (int)k.mv_size, (char *)k.mv_data,
				     v.mv_size - 8, STORE_BLOB_MAX);
				continue;
			}
			batch[n].key = xstrndup(k.mv_data, k.mv_size);
			batch[n].len = v.mv_size - 8;
			batch[n].data = xmalloc(batch[n].len > 0 ? batch[n].len : 1);
			memcpy(batch[n].data, (unsigned char *)v.mv_data + 8, batch[n].len);
			bytes += v.mv_size;
			n++;
		}
		if (rc == MDB_NOTFOUND) {
			done = 1;
			rc = 0;
		}
		mdb_cursor_close(cur);
		mdb_txn_abort(txn);
		if (rc != 0)
			break;
		for (i = 0; i < n; i++) {
			if (!stop && fn(batch[i].key, batch[i].data, batch[i].len, arg) != 0)
				stop = 1;
			free(batch[i].data);
			if (i + 1 < n)
				free(batch[i].key);
		}
		if (n > 0) {
			free(resume);
			resume = batch[n - 1].key;
		}
		/* a batch of nothing but skipped entries that was not done: it
		 * stopped on SCAN_BATCH/SCAN_BYTES only after an entry, so n > 0 */
	}
	free(resume);
	free(batch);
	if (rc != 0) {
		lerr(b, "scan", rc);
		return -1;
	}
	return 0;
}

/* token_counts - a token's value: spam, ham and the day it was last
 * learned (0 for a value written before days were kept, or one not
 * understood) */
static void token_counts(const MDB_val *v, uint32_t *spam, uint32_t *ham, uint32_t *day)
{
	uint32_t s = 0, h = 0, d = 0;

	if (v->mv_size == 8 || v->mv_size == TOKEN_VAL) {
		memcpy(&s, v->mv_data, 4);
		memcpy(&h, (char *)v->mv_data + 4, 4);
		if (v->mv_size == TOKEN_VAL)
			memcpy(&d, (char *)v->mv_data + 8, 4);
	}
	*spam = s;
	*ham = h;
	if (day != NULL)
		*day = d;
}

static int lmdb_tokens_get(void *vb, struct store_token *t, size_t n)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn)) != 0) {
		lerr(b, "read", rc);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char kb[8];
		MDB_val k = { 8, kb }, v;

		put_u64(kb, t[i].hash);
		t[i].spam = t[i].ham = 0;
		rc = mdb_get(txn, b->tok, &k, &v);
		if (rc == 0)
			token_counts(&v, &t[i].spam, &t[i].ham, NULL);
		else if (rc != MDB_NOTFOUND) {
			mdb_txn_abort(txn);
			lerr(b, "token get", rc);
			return -1;
		}
	}
	mdb_txn_abort(txn);
	return 0;
}

static uint32_t add_clamped(uint32_t cur, uint32_t d, int sign)
{
	if (sign < 0)
		return cur > d ? cur - d : 0;
	return cur > UINT32_MAX - d ? UINT32_MAX : cur + d;
}

/* token_change - one token's spam count moved by ds (up for ssign > 0,
 * down otherwise, never below 0), its ham count by dh likewise, stamped
 * with day if later than its own (0: not learned now; unlearning does not
 * make a token newer), removed at 0/0, inside txn: 0 or an LMDB error */
static int token_change(struct lmdb_store *b, MDB_txn *txn, uint64_t hash, uint32_t ds,
                        int ssign, uint32_t dh, int hsign, uint32_t day)
{
	unsigned char kb[8], vbuf[TOKEN_VAL];
	MDB_val k = { 8, kb }, v;
	uint32_t s = 0, h = 0, d = 0;
	int rc;

	put_u64(kb, hash);
	rc = mdb_get(txn, b->tok, &k, &v);
	if (rc == 0)
		token_counts(&v, &s, &h, &d);
	else if (rc != MDB_NOTFOUND)
		return rc;
	s = add_clamped(s, ds, ssign);
	h = add_clamped(h, dh, hsign);
	if (day > d)
		d = day;
	if (s == 0 && h == 0)
		return (rc = mdb_del(txn, b->tok, &k, NULL)) == MDB_NOTFOUND ? 0 : rc;
	memcpy(vbuf, &s, 4);
	memcpy(vbuf + 4, &h, 4);
	memcpy(vbuf + 8, &d, 4);
	v.mv_size = TOKEN_VAL;
	v.mv_data = vbuf;
	return mdb_put(txn, b->tok, &k, &v, 0);
}

struct tokens_arg {
	const struct store_token *t;
	size_t n;
	int sign;
	uint32_t day;
	uint64_t *ntokens;
};

static int tokens_in(struct lmdb_store *b, MDB_txn *txn, void *arg, const char **what)
{
	const struct tokens_arg *a = arg;
	MDB_stat st;
	int rc;

	*what = "token update";
	for (size_t i = 0; i < a->n; i++)
		if ((rc = token_change(b, txn, a->t[i].hash, a->t[i].spam, a->sign, a->t[i].ham,
		                       a->sign, a->sign > 0 ? a->day : 0)) != 0)
			return rc;
	if (a->ntokens != NULL)
		*a->ntokens = mdb_stat(txn, b->tok, &st) == 0 ? st.ms_entries : 0;
	return 0;
}

/* kept_in - store_learn's value kept beside the mark, inside txn: written
 * (in place, as lmdb_blob_set) or removed, and its counter bumped.  0, or
 * an LMDB error (what failed in *what) */
static int kept_in(struct lmdb_store *b, MDB_txn *txn, const struct store_learning *l,
                   const char **what)
{
	MDB_val k = key_val(l->kept), v = { 8 + l->kept_len, NULL };
	int rc;

	*what = "example";
	if (l->kept_val == NULL) {
		if ((rc = mdb_del(txn, b->kv, &k, NULL)) == MDB_NOTFOUND)
			rc = 0;
	} else if ((rc = mdb_put(txn, b->kv, &k, &v, MDB_RESERVE)) == 0) {
		put_u64(v.mv_data, l->kept_ttl_s ? now_s() + l->kept_ttl_s : 0);
		if (l->kept_len > 0)
			memcpy((unsigned char *)v.mv_data + 8, l->kept_val, l->kept_len);
	}
	if (rc == 0 && l->kept_count != NULL)
		rc = incr_in(b, txn, l->kept_count, 1, 0, NULL, what);
	return rc;
}

static int lmdb_tokens_add(void *vb, const struct store_token *t, size_t n, int sign,
                           uint32_t day, uint64_t *ntokens)
{
	struct tokens_arg a = { t, n, sign, day, ntokens };

	return write_txn(vb, tokens_in, &a) < 0 ? -1 : 0;
}

struct learn_arg {
	const struct store_learning *l;
	uint32_t day;
	uint64_t *ntokens;
};

/* learn_in - lmdb_learn's work in one write transaction: the mark looked
 * at, the tokens, the counters, the mark and the value kept beside it
 * written, all committed or none (a full map part-way leaves nothing behind) */
static int learn_in(struct lmdb_store *b, MDB_txn *txn, void *arg, const char **what)
{
	const struct learn_arg *a = arg;
	const struct store_learning *l = a->l;
	MDB_val mk = key_val(l->mark);
	MDB_stat st;
	char cur[8];
	int ds = (l->now == 's') - (l->was == 's'), dh = (l->now == 'h') - (l->was == 'h');
	int rc = 0, found;

	*what = "learn";
	if ((found = live_in(b, txn, l->mark, cur, sizeof(cur), &rc)) < 0)
		return rc;
	if ((found ? cur[0] : '\0') != l->was || (found && cur[1] != '\0'))
		return TXN_NOTHING;
	for (size_t i = 0; i < l->n; i++)
		if ((rc = token_change(b, txn, l->hashes[i], ds != 0, ds, dh != 0, dh,
		                       l->now != '\0' ? a->day : 0)) != 0)
			return rc;
	if ((ds != 0 && (rc = incr_in(b, txn, l->count[0], ds, 0, NULL, what)) != 0)
	    || (dh != 0 && (rc = incr_in(b, txn, l->count[1], dh, 0, NULL, what)) != 0))
		return rc;
	*what = "mark";
	if (l->was == l->now)
		rc = 0;                   /* the mark and its lifetime left as they are */
	else if (l->now != '\0') {
		char mark[2] = { l->now, '\0' };

		rc = put_kv(b, txn, l->mark, mark, 1, l->mark_ttl_s ? now_s() + l->mark_ttl_s : 0);
	} else if ((rc = mdb_del(txn, b->kv, &mk, NULL)) == MDB_NOTFOUND) {
		rc = 0;
	}
	if (rc != 0 || (l->kept != NULL && (rc = kept_in(b, txn, l, what)) != 0))
		return rc;
	*a->ntokens = mdb_stat(txn, b->tok, &st) == 0 ? st.ms_entries : 0;
	return 0;
}

static int lmdb_learn(void *vb, const struct store_learning *l, uint32_t day, uint64_t *ntokens)
{
	struct lmdb_store *b = vb;
	struct learn_arg a = { l, day, ntokens };
	int rc = write_txn(b, learn_in, &a);

	if (rc < 0)
		return rc == TXN_NOTHING ? 0 : -1;
	wrote(b);
	return 1;
}

/* expendability - where a token stands in the order of removal: lower
 * goes first.  Tokens seen in one message only (most of them, and the
 * ones that say least) before the rest; within each, the one learned
 * longest ago first. */
static size_t expendability(const MDB_val *v, uint32_t today)
{
	uint32_t s, h, d, age;

	token_counts(v, &s, &h, &d);
	if (d == 0)
		age = AGE_DAYS - 1;            /* undated: as old as any */
	else if (d > today)
		age = 0;                       /* the clock went back */
	else
		age = today - d < AGE_DAYS - 1 ? today - d : AGE_DAYS - 1;
	return (s + h > 1 ? AGE_DAYS : 0) + (AGE_DAYS - 1 - age);
}

struct expire_arg {
	uint32_t today;
	size_t   cut;
};

/* token_doomed - a walk_delete's doomed for the tokens: those of order
 * below cut, and the first *quota of order cut */
static int token_doomed(const MDB_val *v, void *arg, uint64_t *quota)
{
	const struct expire_arg *a = arg;
	size_t o = expendability(v, a->today);

	if (o < a->cut)
		return 1;
	if (o == a->cut && *quota > 0) {
		(*quota)--;
		return 1;
	}
	return 0;
}

/* tokens_expire - keep at most keep tokens, *total getting how many
 * there were: a walk counting the tokens of each order, then one removing
 * the most expendable (spread over the whole key space: it frees room in
 * the pages, few pages; see tokens_room).  0 (also when another thread is
 * at it), or an LMDB error (not logged). */
static int tokens_expire(struct lmdb_store *b, uint64_t keep, uint32_t today,
                         uint64_t *removed, uint64_t *total)
{
	uint64_t *hist, excess, cum = 0;
	struct expire_arg ea = { today, 0 };
	struct walk w = { .dbi = b->tok, .doomed = token_doomed, .arg = &ea };
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	*removed = *total = 0;
	if (atomic_flag_test_and_set(&b->expiring))
		return 0;                 /* another thread is at it */
	hist = xcalloc(2 * AGE_DAYS, sizeof(*hist));
	if ((rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn)) != 0)
		goto out;
	if ((rc = mdb_cursor_open(txn, b->tok, &cur)) != 0) {
		mdb_txn_abort(txn);
		goto out;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		hist[expendability(&v, today)]++;
		(*total)++;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (rc != MDB_NOTFOUND)
		goto out;
	rc = 0;
	if (*total <= keep)
		goto out;
	excess = *total - keep;
	for (ea.cut = 0; ea.cut < 2 * AGE_DAYS && cum + hist[ea.cut] < excess; ea.cut++)
		cum += hist[ea.cut];
	w.quota = excess - cum;
	rc = walk_delete(b, &w);
	*removed = w.removed;
out:
	free(hist);
	atomic_flag_clear(&b->expiring);
	return rc;
}

static int lmdb_tokens_expire(void *vb, uint64_t keep, uint32_t today, uint64_t *removed)
{
	struct lmdb_store *b = vb;
	uint64_t total;
	int rc = tokens_expire(b, keep, today, removed, &total);

	if (rc != 0) {
		lerr(b, "token expiry", rc);
		return -1;
	}
	return 0;
}

/* tokens_room - a quarter of the tokens removed so that pages come
 * free, not just room in them: the most expendable of a window of a third
 * of the tokens in key order (three in four of those in it go, the
 * tokens seen in one message first, learned longest ago first), the
 * window starting where the last one ended and wrapping round at the
 * end.  A quarter taken evenly over the key space, as tokens_expire does,
 * leaves every page three quarters as full as it was and frees almost
 * none (LMDB merges a page only under a quarter full), and a full map
 * needs free pages: a learn copies each page its tokens land in, about a
 * hundred for one message.  *total gets how many there were.  0, or an
 * LMDB error. */
static int tokens_room(struct lmdb_store *b, uint32_t today, uint64_t *removed, uint64_t *total)
{
	uint64_t *hist, excess, cum = 0, span, n = 0, before_end = 0;
	struct expire_arg ea = { today, 0 };
	struct walk w = { .dbi = b->tok, .doomed = token_doomed, .arg = &ea, .chunk = ROOM_CHUNK };
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_stat st;
	MDB_val k, v;
	int rc, wrapped = 0;

	*removed = *total = 0;
	if (atomic_flag_test_and_set(&b->expiring))
		return 0;                 /* another thread is at it */
	hist = xcalloc(2 * AGE_DAYS, sizeof(*hist));
	if ((rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn)) != 0)
		goto out;
	if ((rc = mdb_stat(txn, b->tok, &st)) != 0 || (rc = mdb_cursor_open(txn, b->tok, &cur)) != 0) {
		mdb_txn_abort(txn);
		goto out;
	}
	*total = st.ms_entries;
	excess = *total / 4;
	span = excess + excess / 3;
	k.mv_data = b->room_from;
	k.mv_size = b->room_from_len;
	rc = b->room_from_len > 0 ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : MDB_NOTFOUND;
	if (rc == MDB_NOTFOUND) {             /* from the first: past the end, or no start */
		b->room_from_len = 0;
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	}
	for (; rc == 0 && n < span; n++) {
		hist[expendability(&v, today)]++;
		if ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == MDB_NOTFOUND && !wrapped
		    && b->room_from_len > 0) {
			wrapped = 1;
			before_end = n + 1;
			rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		}
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto out;
	rc = 0;
	if (excess == 0)
		goto out;
	for (ea.cut = 0; ea.cut < 2 * AGE_DAYS && cum + hist[ea.cut] < excess; ea.cut++)
		cum += hist[ea.cut];
	w.quota = excess - cum;
	memcpy(w.at, b->room_from, b->room_from_len);
	w.at_len = b->room_from_len;
	w.look = wrapped ? before_end : n;
	rc = walk_delete(b, &w);
	if (rc == 0 && wrapped) {
		w.at_len = 0;
		w.look = n - before_end;
		rc = walk_delete(b, &w);
	}
	*removed = w.removed;
	/* the next window starts where this one stopped (0: the first) */
	memcpy(b->room_from, w.at, w.at_len < sizeof(b->room_from) ? w.at_len : sizeof(b->room_from));
	b->room_from_len = w.at_len < sizeof(b->room_from) ? w.at_len : sizeof(b->room_from);
out:
	free(hist);
	atomic_flag_clear(&b->expiring);
	return rc;
}


/* make_room - a write found the map full (store_map_size): what can go
 * goes, and 1 says the write may be tried again; 0 when another thread is
 * at it, or when the last one, less than ROOM_RETRY_S ago, was not
 * followed by a write that got through (what fills the map is then not
 * what this removes: no walks per message for nothing).  First every
 * expired key (greylist triplets, rate limit windows, marks and examples
 * past their TTL, which the sweep otherwise reaches 100,000 entries at a
 * time); then, when the Bayes tokens fill a quarter of the map or more
 * and bayes_token_max is not 0 (keep them all), a quarter of them
 * (tokens_room).  A map too small for bayes_token_max
 * fills before that bound is reached, and until session 19 learning, the
 * expiry behind it, greylisting and rate limits then failed for good.
 * Both walks remove ROOM_CHUNK entries a transaction (walk_delete): a
 * full map has no room for a big one, and the pages a commit frees serve
 * from the next commit but one.  One line logged. */
static int make_room(struct lmdb_store *b)
{
	int64_t now = (int64_t)time(NULL), last;
	uint64_t unow = (uint64_t)now, expired, removed = 0, total = 0;
	struct walk w = { .dbi = b->kv, .doomed = kv_expired, .arg = &unow, .chunk = ROOM_CHUNK };
	MDB_envinfo ei;
	MDB_stat es, ts;
	MDB_txn *txn;
	size_t map_pages = 0, tok_pages = 0, psize = 0;
	char toks[160];
	int rc, trc = 0, trim = 0;

	if (atomic_flag_test_and_set(&b->rooming))
		return 0;
	last = atomic_load(&b->room_at);
	if (last != 0 && !atomic_load(&b->room_helped) && now - last < ROOM_RETRY_S) {
		atomic_flag_clear(&b->rooming);
		return 0;
	}
	atomic_store(&b->room_at, now);
	rc = walk_delete(b, &w);
	expired = w.removed;
	if (mdb_env_info(b->env, &ei) == 0 && mdb_env_stat(b->env, &es) == 0 && es.ms_psize > 0
	    && mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn) == 0) {
		if (mdb_stat(txn, b->tok, &ts) == 0)
			tok_pages = ts.ms_branch_pages + ts.ms_leaf_pages + ts.ms_overflow_pages;
		mdb_txn_abort(txn);
		psize = es.ms_psize;
		map_pages = ei.me_mapsize / psize;
	}
	if (atomic_load(&b->token_max) > 0 && map_pages > 0 && tok_pages >= map_pages / 4) {
		trim = 1;
		trc = tokens_room(b, (uint32_t)(now / 86400), &removed, &total);
	}
	if (trim)
		snprintf(toks, sizeof(toks), "%" PRIu64 " of %" PRIu64 " Bayes tokens (those seen in "
		         "one message first, learned longest ago first)", removed, total);
	else if (atomic_load(&b->token_max) == 0)
		snprintf(toks, sizeof(toks), "no Bayes tokens (bayes_token_max = 0 keeps them all)");
	else
		snprintf(toks, sizeof(toks), "no Bayes tokens (they fill %zu of its %zu pages, under "
		         "a quarter)", tok_pages, map_pages);
	slog(NULL, LOG_WARNING, "store lmdb %s: map full (store_map_size %zu MiB), room made: "
	     "%" PRIu64 " expired keys and %s removed%s%s; raise store_map_size or lower "
	     "bayes_token_max", b->path, map_pages * psize >> 20, expired, toks,
	     rc != 0 || trc != 0 ? ", stopped by " : "",
	     rc != 0 ? mdb_strerror(rc) : trc != 0 ? mdb_strerror(trc) : "");
	atomic_flag_clear(&b->rooming);
	return 1;
}

static void lmdb_token_max(void *vb, uint64_t max)
{
	struct lmdb_store *b = vb;

	atomic_store(&b->token_max, max);
}

static int lmdb_tokens_count(void *vb, uint64_t *n)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	MDB_stat st;
	int rc;

	if ((rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn)) == 0) {
		rc = mdb_stat(txn, b->tok, &st);
		mdb_txn_abort(txn);
	}
	if (rc != 0) {
		lerr(b, "token count", rc);
		return -1;
	}
	*n = st.ms_entries;
	return 0;
}

const struct store_ops store_lmdb_ops = {
	.name = "lmdb",
	.get = lmdb_get,
	.set = lmdb_set,
	.del = lmdb_del,
	.move = lmdb_move,
	.incr = lmdb_incr,
	.swap = lmdb_swap,
	.take = lmdb_take,
	.learn = lmdb_learn,
	.tokens_get = lmdb_tokens_get,
	.tokens_add = lmdb_tokens_add,
	.tokens_expire = lmdb_tokens_expire,
	.tokens_count = lmdb_tokens_count,
	.token_max = lmdb_token_max,
	.blob_get = lmdb_blob_get,
	.blob_set = lmdb_blob_set,
	.scan = lmdb_scan,
	.close = lmdb_close,
};
