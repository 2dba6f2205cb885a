/* store.c - the process's one store (store.h): picks the backend the
 * settings name, shares it among the filters that ask, and checks keys. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <openssl/evp.h>

#include "filters/store.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"

struct store {
	const struct store_ops *ops;
	void     *backend;       /* owned */
	char      ident[1100];    /* backend + where: a second open must match */
	unsigned  refs;
	_Atomic uint64_t token_max;   /* bayes_token_max of the latest open */
};

static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store *shared;     /* the open store, or NULL */

static void ident_of(const struct config *cfg, char *out, size_t outsz)
{
	if (cfg->store_backend == 1)
		snprintf(out, outsz, "redis %s %s %s %s", cfg->store_redis, cfg->store_prefix,
		    cfg->store_redis_user, cfg->store_redis_password_file);
	else
		snprintf(out, outsz, "lmdb %s", cfg->store_path);
}

static struct store *open_store(const struct config *cfg, int bulk, char *err, size_t errlen)
{
	char ident[sizeof(shared->ident)];
	struct store *s = NULL;
	int rc;

	ident_of(cfg, ident, sizeof(ident));
	pthread_mutex_lock(&store_lock);
	if (shared != NULL) {
		if (strcmp(shared->ident, ident) != 0)
			snprintf(err, errlen, "store: already open as %s", shared->ident);
		else {
			shared->refs++;
			s = shared;
			atomic_store(&s->token_max, cfg->bayes_token_max);    /* a reload's */
			if (s->ops->token_max != NULL)
				s->ops->token_max(s->backend, cfg->bayes_token_max);
		}
		pthread_mutex_unlock(&store_lock);
		return s;
	}
	s = xcalloc(1, sizeof(*s));
	snprintf(s->ident, sizeof(s->ident), "%s", ident);
	if (cfg->store_backend == 1) {
		s->ops = &store_redis_ops;
		rc = store_redis_open(cfg, &s->backend, err, errlen);
	} else {
		s->ops = &store_lmdb_ops;
		rc = store_lmdb_open(cfg, bulk, &s->backend, err, errlen);
	}
	if (rc < 0) {
		free(s);
		s = NULL;
	} else {
		s->refs = 1;
		atomic_store(&s->token_max, cfg->bayes_token_max);
		if (s->ops->token_max != NULL)
			s->ops->token_max(s->backend, cfg->bayes_token_max);
		shared = s;
	}
	pthread_mutex_unlock(&store_lock);
	return s;
}

struct store *store_open(const struct config *cfg, char *err, size_t errlen)
{
	return open_store(cfg, 0, err, errlen);
}

struct store *store_open_bulk(const struct config *cfg, char *err, size_t errlen)
{
	return open_store(cfg, 1, err, errlen);
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&store_lock);
	if (--s->refs == 0) {
		s->ops->close(s->backend);
		if (shared == s)
			shared = NULL;
		free(s);
	}
	pthread_mutex_unlock(&store_lock);
}

const char *store_backend(const struct store *s)
{
	return s->ops->name;
}

static int bad_byte(unsigned char c)
{
	return c <= 0x20 || c == 0x7f;
}

/* key_ok - not empty, at most STORE_KEY_MAX bytes, no control bytes or
 * spaces (a CR/LF must never reach a protocol).  A refusal is logged:
 * keys are built by our own code, so one is a bug to find, and the
 * caller only sees -1, as for a store failure. */
static int key_ok(const char *key, const char *call)
{
	size_t n = strlen(key), bad = 0;
	char head[41];

	while (bad < n && !bad_byte((unsigned char)key[bad]))
		bad++;
	if (n > 0 && n <= STORE_KEY_MAX && bad == n)
		return 1;
	/* enough of the key to find its caller, never its bytes raw */
	for (size_t i = 0; i < sizeof(head) - 1; i++)
		head[i] = i < n ? (bad_byte((unsigned char)key[i]) || (unsigned char)key[i] >= 0x80
		                   ? '?' : key[i]) : '\0';
	head[sizeof(head) - 1] = '\0';
	if (n == 0)
		slog(NULL, LOG_ERR, "store: %s: empty key refused", call);
	else if (n > STORE_KEY_MAX)
		slog(NULL, LOG_ERR, "store: %s: key of %zu bytes refused (at most %d): \"%s%s\"",
		     call, n, STORE_KEY_MAX, head, n > sizeof(head) - 1 ? "..." : "");
	else
		slog(NULL, LOG_ERR, "store: %s: key with a control byte or space (at byte %zu) "
		     "refused: \"%s%s\"", call, bad, head, n > sizeof(head) - 1 ? "..." : "");
	return 0;
}

int store_get(struct store *s, const char *key, char *val, size_t valsz)
{
	if (!key_ok(key, "get") || valsz == 0)
		return -1;
	return s->ops->get(s->backend, key, val, valsz);
}

int store_get_now(struct store *s, const char *key, char *val, size_t valsz, int64_t *now_ms)
{
	if (!key_ok(key, "get") || valsz == 0)
		return -1;
	return s->ops->get_now(s->backend, key, val, valsz, now_ms);
}

int store_set(struct store *s, const char *key, const char *val, unsigned ttl_s)
{
	if (!key_ok(key, "set") || strlen(val) > STORE_VALUE_MAX)
		return -1;
	return s->ops->set(s->backend, key, val, ttl_s);
}

int store_del(struct store *s, const char *key)
{
	if (!key_ok(key, "del"))
		return -1;
	return s->ops->del(s->backend, key);
}

int store_move(struct store *s, const char *from, const char *to)
{
	if (!key_ok(from, "move") || !key_ok(to, "move"))
		return -1;
	return s->ops->move(s->backend, from, to);
}

int store_blob_get(struct store *s, const char *key, unsigned char **data, size_t *len)
{
	*data = NULL;
	*len = 0;
	if (!key_ok(key, "blob_get"))
		return -1;
	return s->ops->blob_get(s->backend, key, data, len);
}

int store_blob_set(struct store *s, const char *key, const void *data, size_t len, unsigned ttl_s)
{
	if (!key_ok(key, "blob_set") || len > STORE_BLOB_MAX || (data == NULL && len > 0))
		return -1;
	return s->ops->blob_set(s->backend, key, data != NULL ? data : "", len, ttl_s);
}

int store_scan(struct store *s, const char *prefix,
               int (*fn)(const char *key, const unsigned char *data, size_t len, void *arg), void *arg)
{
	/* a prefix is a key's start: checked the same way, but may be empty */
	if (prefix == NULL || (prefix[0] != '\0' && !key_ok(prefix, "scan")))
		return -1;
	return s->ops->scan(s->backend, prefix, fn, arg);
}

int store_incr(struct store *s, const char *key, int64_t by, unsigned ttl_s, int64_t *out)
{
	if (!key_ok(key, "incr"))
		return -1;
	return s->ops->incr(s->backend, key, by, ttl_s, out);
}

int store_take(struct store *s, const char *key, unsigned window_ms, int64_t by, int64_t limit,
               int64_t *at_ms, int64_t *cur, int64_t *prev)
{
	int64_t c = 0, p = 0, at = 0;
	int rc;

	/* room for LMDB's ":<window>" */
	if (!key_ok(key, "take") || strlen(key) > STORE_KEY_MAX - 21 || window_ms == 0
	    || (by < 0 && at_ms == NULL))
		return -1;
	if (by < 0)
		at = *at_ms;
	if ((rc = s->ops->take(s->backend, key, window_ms, by, limit, &at, &c, &p)) < 0)
		return -1;
	if (by >= 0 && at_ms != NULL)
		*at_ms = at;
	if (cur != NULL)
		*cur = c;
	if (prev != NULL)
		*prev = p;
	return rc;
}

int store_swap(struct store *s, const char *key, const char *expect, const char *val,
               unsigned ttl_s)
{
	if (!key_ok(key, "swap") || (expect != NULL && strlen(expect) > STORE_VALUE_MAX)
	    || (val != NULL && strlen(val) > STORE_VALUE_MAX))
		return -1;
	return s->ops->swap(s->backend, key, expect, val, ttl_s);
}

static int class_ok(char c)
{
	return c == 's' || c == 'h' || c == 'S' || c == 'H' || c == '\0';
}

/* over_token_max - past bayes_token_max: down to three quarters, so
 * that the walk over every token is not paid again at the next message
 * learned */
static void over_token_max(struct store *s, uint64_t ntokens, uint32_t day)
{
	uint64_t max = atomic_load(&s->token_max), removed;

	if (max > 0 && ntokens > max
	    && store_tokens_expire(s, max - max / 4, day, &removed) == 0 && removed > 0)
		slog(NULL, LOG_NOTICE, "store %s: %llu Bayes tokens, over bayes_token_max %llu: "
		     "%llu removed (those seen in one message first, learned longest ago first)",
		     s->ident, (unsigned long long)ntokens, (unsigned long long)max,
		     (unsigned long long)removed);
}

int store_learn(struct store *s, const struct store_learning *l)
{
	uint32_t day = (uint32_t)(time(NULL) / 86400);
	uint64_t ntokens = 0;
	int r;

	if (!key_ok(l->mark, "learn") || !key_ok(l->count[0], "learn") || !key_ok(l->count[1], "learn")
	    || !class_ok(l->was) || !class_ok(l->now))
		return -1;
	if (l->kept != NULL && (!key_ok(l->kept, "learn") || l->kept_len > STORE_BLOB_MAX
	                        || (l->kept_val == NULL && l->kept_len > 0)
	                        || (l->kept_count != NULL && !key_ok(l->kept_count, "learn"))))
		return -1;
	/* a mark left as it is: only the kept value to write */
	if (l->was == l->now && (l->kept == NULL || l->n != 0 || (l->off != NULL && l->off_n != 0)))
		return -1;
	if ((r = s->ops->learn(s->backend, l, day, &ntokens)) == 1 && l->was != l->now)
		over_token_max(s, ntokens, day);
	return r;
}

int store_tokens_get(struct store *s, struct store_token *t, size_t n)
{
	if (n == 0)
		return 0;
	return s->ops->tokens_get(s->backend, t, n);
}

int store_tokens_add(struct store *s, const struct store_token *t, size_t n, int sign)
{
	return store_tokens_add_on(s, t, n, sign, (uint32_t)(time(NULL) / 86400));
}

int store_tokens_add_on(struct store *s, const struct store_token *t, size_t n, int sign,
                        uint32_t day)
{
	uint64_t ntokens = 0;

	if (n == 0)
		return 0;
	if (s->ops->tokens_add(s->backend, t, n, sign, day, &ntokens) < 0)
		return -1;
	over_token_max(s, ntokens, day);
	return 0;
}

int store_tokens_expire(struct store *s, uint64_t keep, uint32_t today, uint64_t *removed)
{
	*removed = 0;
	if (s->ops->tokens_expire == NULL)
		return 0;
	return s->ops->tokens_expire(s->backend, keep, today, removed);
}

int store_tokens_count(struct store *s, uint64_t *n)
{
	*n = 0;
	if (s->ops->tokens_count == NULL)
		return -1;
	return s->ops->tokens_count(s->backend, n);
}

/* fetched once: EVP_sha256() alone makes every EVP_DigestInit_ex look the
 * implementation up again, a lock and a table search per key */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* hash_field - the length, then the bytes (lower-cased with fold),
 * through a small buffer: fields are short and a copy per key would cost
 * more */
static int hash_field(EVP_MD_CTX *md, const unsigned char *f, size_t len, int fold)
{
	size_t i, k;
	unsigned char buf[256];

	for (k = 0; k < 8; k++)
		buf[k] = (unsigned char)((uint64_t)len >> (56 - 8 * k));
	if (!fold) {
		return EVP_DigestUpdate(md, buf, k) != 1
		    || (len > 0 && EVP_DigestUpdate(md, f, len) != 1) ? -1 : 0;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = f[i];

		buf[k++] = (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
		if (k == sizeof(buf)) {
			if (EVP_DigestUpdate(md, buf, k) != 1)
				return -1;
			k = 0;
		}
	}
	return k > 0 && EVP_DigestUpdate(md, buf, k) != 1 ? -1 : 0;
}

/* key_hash - store_key_hash and store_key_hash_bytes: lens NULL for
 * NUL-terminated fields */
static int key_hash(const char *prefix, const void *const *fields, const size_t *lens, size_t n,
                    int fold, char *out, size_t outsz)
{
	static const char hex[] = "0123456789abcdef";
	size_t plen = strlen(prefix), i;
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	EVP_MD_CTX *md;
	int ok;

	if (outsz < plen + STORE_HASH_HEX + 1)
		return -1;
	pthread_once(&sha256_once, sha256_fetch);
	if (sha256_md == NULL || (md = EVP_MD_CTX_new()) == NULL) {
		slog(NULL, LOG_ERR, "store: SHA-256 unavailable for a key");
		return -1;
	}
	ok = EVP_DigestInit_ex(md, sha256_md, NULL) == 1
	    && hash_field(md, (const unsigned char *)prefix, plen, fold) == 0;
	for (i = 0; ok && i < n; i++)
		ok = hash_field(md, fields[i], lens != NULL ? lens[i] : strlen(fields[i]), fold) == 0;
	ok = ok && EVP_DigestFinal_ex(md, d, &dlen) == 1 && dlen * 2 >= STORE_HASH_HEX;
	EVP_MD_CTX_free(md);
	if (!ok) {
		slog(NULL, LOG_ERR, "store: SHA-256 failed for a key");
		return -1;
	}
	memcpy(out, prefix, plen);
	for (i = 0; i < STORE_HASH_HEX / 2; i++) {
		out[plen + 2 * i] = hex[d[i] >> 4];
		out[plen + 2 * i + 1] = hex[d[i] & 15];
	}
	out[plen + STORE_HASH_HEX] = '\0';
	return 0;
}

int store_key_hash(const char *prefix, const char *const *fields, size_t n,
                   char *out, size_t outsz)
{
	return key_hash(prefix, (const void *const *)fields, NULL, n, 1, out, outsz);
}

int store_key_hash_bytes(const char *prefix, const void *const *fields, const size_t *lens,
                         size_t n, char *out, size_t outsz)
{
	return key_hash(prefix, fields, lens, n, 0, out, outsz);
}
