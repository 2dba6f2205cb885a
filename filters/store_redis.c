/* store_redis.c - the shared store backend (store.h): a Redis server,
 * through hiredis 0.14 (no TLS, no RESP3 there).
 *
 * Synchronous calls on a small pool of connections: the callers are
 * scanner worker threads that wait for the answer anyway, so the libevent
 * adapter would only add a hop.  Every connect and every call has the
 * store_timeout deadline; a connection that failed is dropped and made
 * again on the next call, but not more than once per RETRY_MS while the
 * server stays down (so a dead Redis costs one timeout per second, not one
 * per message).  Failures are logged once per outage.
 *
 * Layout (every key starts with store_prefix):
 *   <key>             plain strings and counters, with EX/EXPIRE
 *   t:<16 hex>        a Bayes token: hash with fields s (spam) and h (ham)
 * Atomic pieces run as Lua scripts (increment with expiry on creation;
 * token batch updates that never go below 0 and delete 0/0 tokens).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "filters/store.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"

#define POOL_MAX   32
#define RETRY_MS   1000
#define BATCH      500         /* tokens per Lua call */

struct redis_store {
	char     host[256];        /* or a unix socket path */
	int      port;             /* 0: unix socket */
	char     prefix[64];
	unsigned token_ttl_s;      /* bayes_token_ttl: 0 = tokens never expire */
	struct timeval tv;
	pthread_mutex_t lock;
	redisContext *idle[POOL_MAX];
	unsigned nidle;
	int64_t  down_until_ms;    /* no connect attempts before this */
	int      down_logged;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* parse_addr - "HOST:PORT", "[V6]:PORT" or "/unix/path" */
static int parse_addr(const char *a, struct redis_store *b)
{
	const char *colon;
	char *end;
	long port;

	if (a[0] == '/') {
		snprintf(b->host, sizeof(b->host), "%s", a);
		b->port = 0;
		return 0;
	}
	if (a[0] == '[') {
		const char *rb = strchr(a, ']');

		if (rb == NULL || rb[1] != ':')
			return -1;
		snprintf(b->host, sizeof(b->host), "%.*s", (int)(rb - a - 1), a + 1);
		colon = rb + 1;
	} else {
		colon = strrchr(a, ':');
		if (colon == NULL || colon == a)
			return -1;
		snprintf(b->host, sizeof(b->host), "%.*s", (int)(colon - a), a);
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 1 || port > 65535 || errno)
		return -1;
	b->port = (int)port;
	return 0;
}

int store_redis_open(const struct config *cfg, void **backend, char *err, size_t errlen)
{
	struct redis_store *b = xcalloc(1, sizeof(*b));

	if (parse_addr(cfg->store_redis, b) < 0) {
		snprintf(err, errlen, "store_redis: \"%s\" is not HOST:PORT, [IPv6]:PORT or /path",
		    cfg->store_redis);
		free(b);
		return -1;
	}
	snprintf(b->prefix, sizeof(b->prefix), "%s", cfg->store_prefix);
	b->token_ttl_s = cfg->bayes_token_ttl;
	b->tv.tv_sec = cfg->store_timeout / 1000;
	b->tv.tv_usec = (cfg->store_timeout % 1000) * 1000;
	pthread_mutex_init(&b->lock, NULL);
	*backend = b;
	return 0;
}

static void redis_close(void *vb)
{
	struct redis_store *b = vb;

	for (unsigned i = 0; i < b->nidle; i++)
		redisFree(b->idle[i]);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* conn_get - an idle connection or a new one; NULL when the server is
 * unreachable (logged once per outage) */
static redisContext *conn_get(struct redis_store *b)
{
	redisContext *c = NULL;
	int64_t now = mono_ms();

	pthread_mutex_lock(&b->lock);
	if (b->nidle > 0)
		c = b->idle[--b->nidle];
	else if (now < b->down_until_ms) {
		pthread_mutex_unlock(&b->lock);
		return NULL;
	}
	pthread_mutex_unlock(&b->lock);
	if (c != NULL)
		return c;
	c = b->port ? redisConnectWithTimeout(b->host, b->port, b->tv)
	            : redisConnectUnixWithTimeout(b->host, b->tv);
	if (c != NULL && c->err == 0 && redisSetTimeout(c, b->tv) == REDIS_OK) {
		pthread_mutex_lock(&b->lock);
		if (b->down_logged)
			slog(NULL, LOG_NOTICE, "store redis %s:%d: reachable again", b->host, b->port);
		b->down_logged = 0;
		pthread_mutex_unlock(&b->lock);
		return c;
	}
	pthread_mutex_lock(&b->lock);
	b->down_until_ms = mono_ms() + RETRY_MS;
	if (!b->down_logged)
		slog(NULL, LOG_ERR, "store redis %s:%d: cannot connect: %s", b->host, b->port,
		    c != NULL && c->errstr[0] ? c->errstr : "out of memory");
	b->down_logged = 1;
	pthread_mutex_unlock(&b->lock);
	if (c != NULL)
		redisFree(c);
	return NULL;
}

/* conn_put - back to the pool if it is healthy, else dropped */
static void conn_put(struct redis_store *b, redisContext *c, int broken)
{
	if (broken || c->err) {
		slog(NULL, LOG_ERR, "store redis %s:%d: %s", b->host, b->port,
		    c->err ? c->errstr : "protocol error");
		redisFree(c);
		return;
	}
	pthread_mutex_lock(&b->lock);
	if (b->nidle < POOL_MAX) {
		b->idle[b->nidle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&b->lock);
	if (c != NULL)
		redisFree(c);
}

static void full_key(const struct redis_store *b, const char *key, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s%s", b->prefix, key);
}

/* run - one command (argv form); the reply (caller frees) or NULL */
static redisReply *run(struct redis_store *b, int argc, const char **argv, const size_t *lens)
{
	redisContext *c = conn_get(b);
	redisReply *r;

	if (c == NULL)
		return NULL;
	r = redisCommandArgv(c, argc, argv, lens);
	if (r == NULL) {
		conn_put(b, c, 1);
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		slog(NULL, LOG_ERR, "store redis %s:%d: %s: %s", b->host, b->port, argv[0], r->str);
		freeReplyObject(r);
		conn_put(b, c, 0);
		return NULL;
	}
	conn_put(b, c, 0);
	return r;
}

static int redis_get(void *vb, const char *key, char *val, size_t valsz)
{
	struct redis_store *b = vb;
	char k[STORE_KEY_MAX + 80];
	const char *argv[2] = { "GET", k };
	redisReply *r;
	int found = 0;

	full_key(b, key, k, sizeof(k));
	if ((r = run(b, 2, argv, NULL)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_STRING) {
		size_t n = r->len < valsz - 1 ? r->len : valsz - 1;

		memcpy(val, r->str, n);
		val[n] = '\0';
		found = 1;
	} else if (r->type != REDIS_REPLY_NIL)
		found = -1;
	freeReplyObject(r);
	return found;
}

static int redis_set(void *vb, const char *key, const char *val, unsigned ttl_s)
{
	struct redis_store *b = vb;
	char k[STORE_KEY_MAX + 80], ttl[24];
	const char *argv[5] = { "SET", k, val, "EX", ttl };
	redisReply *r;

	full_key(b, key, k, sizeof(k));
	snprintf(ttl, sizeof(ttl), "%u", ttl_s);
	if ((r = run(b, ttl_s ? 5 : 3, argv, NULL)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

static int redis_del(void *vb, const char *key)
{
	struct redis_store *b = vb;
	char k[STORE_KEY_MAX + 80];
	const char *argv[2] = { "DEL", k };
	redisReply *r;

	full_key(b, key, k, sizeof(k));
	if ((r = run(b, 2, argv, NULL)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

static const char incr_lua[] =
	"local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
	"if tonumber(ARGV[2]) > 0 and redis.call('TTL', KEYS[1]) == -1 then "
	"redis.call('EXPIRE', KEYS[1], ARGV[2]) end "
	"return v";

static int redis_incr(void *vb, const char *key, int64_t by, unsigned ttl_s, int64_t *out)
{
	struct redis_store *b = vb;
	char k[STORE_KEY_MAX + 80], n[32], ttl[24];
	const char *argv[6] = { "EVAL", incr_lua, "1", k, n, ttl };
	redisReply *r;
	int rc = 0;

	full_key(b, key, k, sizeof(k));
	snprintf(n, sizeof(n), "%" PRId64, by);
	snprintf(ttl, sizeof(ttl), "%u", ttl_s);
	if ((r = run(b, 6, argv, NULL)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_INTEGER) {
		if (out != NULL)
			*out = r->integer;
	} else
		rc = -1;
	freeReplyObject(r);
	return rc;
}

static void token_key(const struct redis_store *b, uint64_t h, char *out, size_t outsz)
{
	snprintf(out, outsz, "%st:%016" PRIx64, b->prefix, h);
}

static int redis_tokens_get(void *vb, struct store_token *t, size_t n)
{
	struct redis_store *b = vb;
	redisContext *c = conn_get(b);
	size_t i, sent = 0;
	int rc = 0;

	if (c == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		char k[128];

		token_key(b, t[i].hash, k, sizeof(k));
		if (redisAppendCommand(c, "HMGET %s s h", k) != REDIS_OK)
			break;
		sent++;
	}
	for (i = 0; i < sent; i++) {
		redisReply *r = NULL;

		if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL) {
			conn_put(b, c, 1);
			return -1;
		}
		t[i].spam = t[i].ham = 0;
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
			if (r->element[0]->type == REDIS_REPLY_STRING)
				t[i].spam = (uint32_t)strtoul(r->element[0]->str, NULL, 10);
			if (r->element[1]->type == REDIS_REPLY_STRING)
				t[i].ham = (uint32_t)strtoul(r->element[1]->str, NULL, 10);
		} else
			rc = -1;
		freeReplyObject(r);
	}
	conn_put(b, c, sent != n);
	return sent == n ? rc : -1;
}

static const char tokens_lua[] =
	"for i, k in ipairs(KEYS) do "
	"local s = redis.call('HINCRBY', k, 's', ARGV[2*i-1]) "
	"local h = redis.call('HINCRBY', k, 'h', ARGV[2*i]) "
	"if s < 0 then redis.call('HSET', k, 's', 0) s = 0 end "
	"if h < 0 then redis.call('HSET', k, 'h', 0) h = 0 end "
	"if s == 0 and h == 0 then redis.call('DEL', k) "
	"elseif ARGV[#ARGV] ~= '0' then redis.call('EXPIRE', k, ARGV[#ARGV]) end "
	"end return #KEYS";

/* Tokens are bounded here by their TTL (bayes_token_ttl), renewed each
 * time one is learned, as SpamAssassin's Redis backend does: a count
 * bound would need a walk over every key of a shared server.  Unlearning
 * leaves the TTL alone.  There is no count to report (ntokens 0). */
static int redis_tokens_add(void *vb, const struct store_token *t, size_t n, int sign,
                            uint32_t day, uint64_t *ntokens)
{
	struct redis_store *b = vb;
	size_t off;
	char ttl[16];

	(void)day;
	*ntokens = 0;
	snprintf(ttl, sizeof(ttl), "%u", sign > 0 ? b->token_ttl_s : 0);
	for (off = 0; off < n; off += BATCH) {
		size_t m = n - off < BATCH ? n - off : BATCH, i, argc = 4 + 3 * m;
		const char **argv = xcalloc(argc, sizeof(*argv));
		char (*keys)[96] = xcalloc(m, sizeof(*keys));
		char (*nums)[2][16] = xcalloc(m, sizeof(*nums));
		char nk[16];
		redisReply *r;

		snprintf(nk, sizeof(nk), "%zu", m);
		argv[argc - 1] = ttl;
		argv[0] = "EVAL";
		argv[1] = tokens_lua;
		argv[2] = nk;
		for (i = 0; i < m; i++) {
			token_key(b, t[off + i].hash, keys[i], sizeof(keys[i]));
			/* Redis refuses "-0" as an integer */
			snprintf(nums[i][0], sizeof(nums[i][0]), "%s%" PRIu32,
			    sign < 0 && t[off + i].spam ? "-" : "", t[off + i].spam);
			snprintf(nums[i][1], sizeof(nums[i][1]), "%s%" PRIu32,
			    sign < 0 && t[off + i].ham ? "-" : "", t[off + i].ham);
			argv[3 + i] = keys[i];
			argv[3 + m + 2 * i] = nums[i][0];
			argv[3 + m + 2 * i + 1] = nums[i][1];
		}
		r = run(b, (int)argc, argv, NULL);
		free(argv);
		free(keys);
		free(nums);
		if (r == NULL)
			return -1;
		freeReplyObject(r);
	}
	return 0;
}

const struct store_ops store_redis_ops = {
	.name = "redis",
	.get = redis_get,
	.set = redis_set,
	.del = redis_del,
	.incr = redis_incr,
	.tokens_get = redis_tokens_get,
	.tokens_add = redis_tokens_add,
	.close = redis_close,
};
