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
 * removed (lmdb_tokens_expire).
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
#define EXPIRE_CHUNK 20000       /* deletions per write transaction */
#define SCAN_BATCH  1000         /* entries copied out per read transaction */
#define SCAN_BYTES  (16u << 20)  /* value bytes copied out per read transaction */

struct lmdb_store {
	MDB_env *env;
	MDB_dbi  kv, tok;
	char     path[512];
	atomic_uint writes;
	atomic_flag expiring;    /* one expiry at a time in this process */
	/* Where the next sweep starts (empty: the first key).  Each sweep
	 * looks at SWEEP_MAX entries from where the last one stopped and
	 * wraps around at the end; starting from the first key each time
	 * never reached keys sorting after SWEEP_MAX live ones, so past
	 * 100,000 learned messages' "bayes:seen" keys the greylist triplets
	 * behind them were never removed.  Used inside the write
	 * transaction only, which LMDB serialises. */
	unsigned char sweep_from[STORE_KEY_MAX];
	size_t sweep_from_len;
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

/* sweep - delete expired kv entries (at most SWEEP_MAX looked at, from
 * where the last sweep stopped) */
static void sweep(struct lmdb_store *b)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t now = now_s();
	unsigned seen = 0, gone = 0;
	int rc;

	if (mdb_txn_begin(b->env, NULL, 0, &txn) != 0)
		return;
	if (mdb_cursor_open(txn, b->kv, &cur) != 0) {
		mdb_txn_abort(txn);
		return;
	}
	if (b->sweep_from_len > 0) {
		k.mv_data = b->sweep_from;
		k.mv_size = b->sweep_from_len;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	} else
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (; rc == 0 && seen < SWEEP_MAX; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), seen++) {
		uint64_t exp = v.mv_size >= 8 ? get_u64(v.mv_data) : 1;

		if (exp != 0 && exp <= now) {
			mdb_cursor_del(cur, 0);
			gone++;
		}
	}
	/* stopped at the budget: the next sweep starts at the first key not
	 * looked at; at the end of the keys: from the first again */
	if (rc == 0 && k.mv_size <= sizeof(b->sweep_from)) {
		memcpy(b->sweep_from, k.mv_data, k.mv_size);
		b->sweep_from_len = k.mv_size;
	} else
		b->sweep_from_len = 0;
	mdb_cursor_close(cur);
	if ((rc = mdb_txn_commit(txn)) != 0)
		lerr(b, "sweep", rc);
	else if (gone > 0)
		slog(NULL, LOG_DEBUG, "store lmdb %s: %u expired keys removed", b->path, gone);
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

/* end_write - the end of a write transaction: aborted, with what failed
 * logged, when rc says a write in it failed; else committed (logged when
 * that fails).  0, or -1 */
static int end_write(struct lmdb_store *b, MDB_txn *txn, int rc, const char *what)
{
	if (rc != 0) {
		mdb_txn_abort(txn);
		lerr(b, what, rc);
		return -1;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		lerr(b, "commit", rc);
		return -1;
	}
	return 0;
}

static int lmdb_set(void *vb, const char *key, const char *val, unsigned ttl_s)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0) {
		lerr(b, "write", rc);
		return -1;
	}
	rc = put_kv(b, txn, key, val, strlen(val), ttl_s ? now_s() + ttl_s : 0);
	if (end_write(b, txn, rc, "put") < 0)
		return -1;
	wrote(b);
	return 0;
}

static int lmdb_del(void *vb, const char *key)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	MDB_val k = key_val(key);
	int rc;

	if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0) {
		lerr(b, "write", rc);
		return -1;
	}
	if ((rc = mdb_del(txn, b->kv, &k, NULL)) == MDB_NOTFOUND)
		rc = 0;
	return end_write(b, txn, rc, "del");
}

static int lmdb_move(void *vb, const char *from, const char *to)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	MDB_val k = key_val(from), nk = key_val(to), v;
	unsigned char *copy = NULL;
	uint64_t exp;
	int rc;

	if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0) {
		lerr(b, "write", rc);
		return -1;
	}
	rc = mdb_get(txn, b->kv, &k, &v);
	if (rc == MDB_NOTFOUND || (rc == 0 && (v.mv_size < 8 || ((exp = get_u64(v.mv_data)) != 0
	                                                          && exp <= now_s())))) {
		mdb_txn_abort(txn);
		return 0;
	}
	if (rc == 0) {
		/* the value points into the map, which the put may change:
		 * copied first, its expiry with it */
		copy = xmalloc(v.mv_size);
		memcpy(copy, v.mv_data, v.mv_size);
		v.mv_data = copy;
		if ((rc = mdb_put(txn, b->kv, &nk, &v, 0)) == 0)
			rc = mdb_del(txn, b->kv, &k, NULL);
	}
	free(copy);
	if (end_write(b, txn, rc, "move") < 0)
		return -1;
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

static int lmdb_incr(void *vb, const char *key, int64_t by, unsigned ttl_s, int64_t *out)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	const char *what = "incr";
	int rc;

	if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0) {
		lerr(b, "write", rc);
		return -1;
	}
	rc = incr_in(b, txn, key, by, ttl_s, out, &what);
	if (end_write(b, txn, rc, what) < 0)
		return -1;
	wrote(b);
	return 0;
}

static int lmdb_swap(void *vb, const char *key, const char *expect, const char *val,
                     unsigned ttl_s)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	MDB_val k = key_val(key);
	char cur[STORE_VALUE_MAX + 2];
	int rc, found;

	if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0) {
		lerr(b, "write", rc);
		return -1;
	}
	if ((found = live_in(b, txn, key, cur, sizeof(cur), &rc)) < 0) {
		mdb_txn_abort(txn);
		lerr(b, "get", rc);
		return -1;
	}
	if (found != (expect != NULL) || (found && strcmp(cur, expect) != 0)) {
		mdb_txn_abort(txn);
		return 0;
	}
	if (val != NULL)
		rc = put_kv(b, txn, key, val, strlen(val), ttl_s ? now_s() + ttl_s : 0);
	else if ((rc = mdb_del(txn, b->kv, &k, NULL)) == MDB_NOTFOUND)
		rc = 0;                   /* an expired value not swept yet */
	if (end_write(b, txn, rc, "swap") < 0)
		return -1;
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

static int lmdb_blob_set(void *vb, const char *key, const void *data, size_t len, unsigned ttl_s)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	MDB_val k = key_val(key), v = { 8 + len, NULL };
	int rc;

	if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0) {
		lerr(b, "write", rc);
		return -1;
	}
	/* written in place: no 8 MiB copy of the value on the side */
	if ((rc = mdb_put(txn, b->kv, &k, &v, MDB_RESERVE)) != 0) {
		mdb_txn_abort(txn);
		lerr(b, "put", rc);
		return -1;
	}
	put_u64(v.mv_data, ttl_s ? now_s() + ttl_s : 0);
	if (len > 0)
		memcpy((unsigned char *)v.mv_data + 8, data, len);
	if ((rc = mdb_txn_commit(txn)) != 0) {
		lerr(b, "commit", rc);
		return -1;
	}
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

static int lmdb_tokens_add(void *vb, const struct store_token *t, size_t n, int sign,
                           uint32_t day, uint64_t *ntokens)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	MDB_stat st;
	int rc;

	if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0) {
		lerr(b, "write", rc);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if ((rc = token_change(b, txn, t[i].hash, t[i].spam, sign, t[i].ham, sign,
		                       sign > 0 ? day : 0)) != 0)
			goto fail;
	if (ntokens != NULL)
		*ntokens = mdb_stat(txn, b->tok, &st) == 0 ? st.ms_entries : 0;
	if ((rc = mdb_txn_commit(txn)) != 0) {
		lerr(b, "commit", rc);
		return -1;
	}
	return 0;
fail:
	mdb_txn_abort(txn);
	lerr(b, "token update", rc);
	return -1;
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

/* lmdb_learn - one write transaction: the mark looked at, the tokens,
 * the counters, the mark and the value kept beside it written, all
 * committed or none (a full map part-way leaves nothing behind) */
static int lmdb_learn(void *vb, const struct store_learning *l, uint32_t day, uint64_t *ntokens)
{
	struct lmdb_store *b = vb;
	MDB_txn *txn;
	MDB_val mk = key_val(l->mark);
	MDB_stat st;
	char cur[8];
	const char *what = "learn";
	int ds = (l->now == 's') - (l->was == 's'), dh = (l->now == 'h') - (l->was == 'h');
	int rc, found;

	if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0) {
		lerr(b, "write", rc);
		return -1;
	}
	if ((found = live_in(b, txn, l->mark, cur, sizeof(cur), &rc)) < 0)
		goto fail;
	if ((found ? cur[0] : '\0') != l->was || (found && cur[1] != '\0')) {
		mdb_txn_abort(txn);
		return 0;
	}
	for (size_t i = 0; i < l->n; i++)
		if ((rc = token_change(b, txn, l->hashes[i], ds != 0, ds, dh != 0, dh,
		                       l->now != '\0' ? day : 0)) != 0)
			goto fail;
	if ((ds != 0 && (rc = incr_in(b, txn, l->count[0], ds, 0, NULL, &what)) != 0)
	    || (dh != 0 && (rc = incr_in(b, txn, l->count[1], dh, 0, NULL, &what)) != 0))
		goto fail;
	what = "mark";
	if (l->was == l->now)
		rc = 0;                   /* the mark and its lifetime left as they are */
	else if (l->now != '\0') {
		char mark[2] = { l->now, '\0' };

		rc = put_kv(b, txn, l->mark, mark, 1, l->mark_ttl_s ? now_s() + l->mark_ttl_s : 0);
	} else if ((rc = mdb_del(txn, b->kv, &mk, NULL)) == MDB_NOTFOUND) {
		rc = 0;
	}
	if (rc != 0 || (l->kept != NULL && (rc = kept_in(b, txn, l, &what)) != 0))
		goto fail;
	*ntokens = mdb_stat(txn, b->tok, &st) == 0 ? st.ms_entries : 0;
	if ((rc = mdb_txn_commit(txn)) != 0) {
		lerr(b, "commit", rc);
		return -1;
	}
	wrote(b);
	return 1;
fail:
	mdb_txn_abort(txn);
	lerr(b, what, rc);
	return -1;
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

/* expire_pass - remove the tokens of order below cut, and the first
 * *quota of order cut; a write transaction per EXPIRE_CHUNK removals, so
 * that greylisting and learning are not held up for the whole walk */
static int expire_pass(struct lmdb_store *b, uint32_t today, size_t cut, uint64_t quota,
                       uint64_t *removed)
{
	unsigned char resume[8];
	int more = 1, first = 1, rc = 0;

	while (more && rc == 0) {
		MDB_txn *txn;
		MDB_cursor *cur;
		MDB_val k, v;
		unsigned gone = 0;

		if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0)
			break;
		if ((rc = mdb_cursor_open(txn, b->tok, &cur)) != 0) {
			mdb_txn_abort(txn);
			break;
		}
		if (first)
			rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		else {
			k.mv_size = sizeof(resume);
			k.mv_data = resume;
			rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		}
		first = 0;
		more = 0;
		while (rc == 0) {
			size_t o = expendability(&v, today);

			if (gone == EXPIRE_CHUNK) {
				memcpy(resume, k.mv_data, k.mv_size < 8 ? k.mv_size : 8);
				more = 1;
				break;
			}
			if (o < cut || (o == cut && quota > 0)) {
				if (o == cut)
					quota--;
				if ((rc = mdb_cursor_del(cur, 0)) != 0)
					break;
				gone++;
			}
			/* after a delete, MDB_NEXT gives the entry that followed it */
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
		mdb_cursor_close(cur);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			mdb_txn_abort(txn);
			break;
		}
		if ((rc = mdb_txn_commit(txn)) != 0)
			break;
		*removed += gone;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		lerr(b, "token expiry", rc);
		return -1;
	}
	return 0;
}

static int lmdb_tokens_expire(void *vb, uint64_t keep, uint32_t today, uint64_t *removed)
{
	struct lmdb_store *b = vb;
	uint64_t *hist, total = 0, excess, cum = 0;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	size_t cut;
	int rc;

	*removed = 0;
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
		total++;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (rc != MDB_NOTFOUND)
		goto out;
	rc = 0;
	if (total <= keep)
		goto out;
	excess = total - keep;
	for (cut = 0; cut < 2 * AGE_DAYS && cum + hist[cut] < excess; cut++)
		cum += hist[cut];
	rc = expire_pass(b, today, cut, excess - cum, removed) < 0 ? -1 : 0;
out:
	if (rc > 0)
		lerr(b, "token expiry", rc);
	free(hist);
	atomic_flag_clear(&b->expiring);
	return rc == 0 ? 0 : -1;
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
	.learn = lmdb_learn,
	.tokens_get = lmdb_tokens_get,
	.tokens_add = lmdb_tokens_add,
	.tokens_expire = lmdb_tokens_expire,
	.tokens_count = lmdb_tokens_count,
	.blob_get = lmdb_blob_get,
	.blob_set = lmdb_blob_set,
	.scan = lmdb_scan,
	.close = lmdb_close,
};
