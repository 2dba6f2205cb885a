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
 * The server is a peer like any other: a call's deadline covers the whole
 * exchange (hiredis' own timeout is per read(), which a reply dripping one
 * byte at a time never hits), a reply is at most REPLY_MAX bytes and an
 * array ELEMENTS_MAX elements, and a connection is pooled only when
 * nothing but the replies asked for came on it, so that a late or unasked
 * reply can never answer the next caller's command (RESP has no request
 * ids: pairing is by order only).
 *
 * Layout (every key starts with store_prefix):
 *   <key>             plain strings, binary values and counters, with
 *                     EX/EXPIRE
 *   t:<16 hex>        a Bayes token: hash with fields s (spam) and h (ham)
 * Atomic pieces run as Lua scripts (increment with expiry on creation;
 * token batch updates that never go below 0 and delete 0/0 tokens).
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "filters/deadline.h"
#include "proxy/monotime.h"
#include "filters/store.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"

#define POOL_MAX   32
#define RETRY_MS   1000
#define BATCH      500         /* tokens per Lua call */
#define REPLY_MAX  (64 * 1024) /* bytes of one reply: ours are a few dozen */
#define ELEMENTS_MAX 1024      /* of one array reply: ours have 2 */
/* store_blob_get and store_scan only: a binary value's reply ("$N\r\n",
 * the value, "\r\n"), and SCAN's key array (COUNT is a hint: a batch may
 * run a little past it) */
#define BLOB_REPLY_MAX (STORE_BLOB_MAX + 64)
#define SCAN_COUNT   "1000"
#define SCAN_ELEMENTS 16384
#define SCAN_BYTES   (16u << 20) /* value bytes fetched per GET pipeline */
#define PREFIX_MAX   63          /* bytes of store_prefix */
/* config.c refuses a longer store_prefix than its field holds: copied
 * here whole, never cut (two sites' keys would share a namespace) */
_Static_assert(sizeof(((struct config *)0)->store_prefix) <= PREFIX_MAX + 1,
               "store_prefix fits struct redis_store's prefix");
/* a key as Redis sees it: store_prefix, then the key of store.h */
#define FULL_KEY_SZ  (PREFIX_MAX + STORE_KEY_MAX + 1)

struct redis_store {
	char     host[256];        /* as configured (logs), or a unix socket path */
	char     addr[NI_MAXHOST]; /* host resolved at open: what we connect to */
	int      port;             /* 0: unix socket */
	char     prefix[PREFIX_MAX + 1];
	unsigned token_ttl_s;      /* bayes_token_ttl: 0 = tokens never expire */
	unsigned timeout_ms;       /* store_timeout: connect, and each call whole */
	struct timeval tv;
	pthread_mutex_t lock;
	redisContext *idle[POOL_MAX];
	unsigned nidle;
	int64_t  down_until_ms;    /* no connect attempts before this */
	int      down_logged;
	char     user[128];        /* store_redis_user: "" = the default user */
	char    *password;         /* store_redis_password_file's first line; NULL = no AUTH */
	size_t   password_len;
	/* an error reply (NOAUTH, READONLY, OOM, MISCONF...) is the server's
	 * state, met by every call until it changes: logged once, until a
	 * call is answered again (reply_error) */
	int      error_logged;
	unsigned long errors;      /* error replies since the one logged */
};


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

#define PASSWORD_MAX 1024          /* bytes of a password file's first line */

/* read_password - store_redis_password_file's first line (its CR/LF
 * not counted) into b, read by the user the scanner runs as (store_open
 * runs as that user, in `mailwarden -t` too).  A secret kept in a file,
 * as TLS and DKIM keys are, not in the configuration, which is often
 * readable by all and shown by `mailwarden -t`.  A file every local user
 * may read or write is refused, as dkim_sign_key's: a password anyone
 * may read guards nothing.  0, or -1 with err. */
static int read_password(struct redis_store *b, const char *path, char *err, size_t errlen)
{
	char buf[PASSWORD_MAX + 2];
	struct stat st;
	unsigned mode;
	size_t n;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "store_redis_password_file: cannot open %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) < 0) {
		snprintf(err, errlen, "store_redis_password_file: cannot stat %s", path);
		fclose(f);
		return -1;
	}
	mode = (unsigned)(st.st_mode & 07777);
	if (mode & 0006) {
		snprintf(err, errlen, "store_redis_password_file: %s is mode %04o: every local user "
		    "may %s the password (chmod o-rwx %s)", path, mode, mode & 0002 ? "change" : "read",
		    path);
		fclose(f);
		return -1;
	}
	if ((mode & 0020) || ((mode & 0040) && st.st_gid != getegid()))
		slog(NULL, LOG_WARNING, "store_redis_password_file: %s is mode %04o, group %u: the "
		    "users of that group may %s the password", path, mode, (unsigned)st.st_gid,
		    mode & 0020 ? "change" : "read");
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	n = strcspn(buf, "\r\n");
	if (n > PASSWORD_MAX || (n == strlen(buf) && n == sizeof(buf) - 1)) {
		snprintf(err, errlen, "store_redis_password_file: %s: first line longer than %d bytes",
		    path, PASSWORD_MAX);
		explicit_bzero(buf, sizeof(buf));
		return -1;
	}
	if (n == 0) {
		snprintf(err, errlen, "store_redis_password_file: %s: first line empty", path);
		return -1;
	}
	b->password = xmalloc(n + 1);
	memcpy(b->password, buf, n);
	b->password[n] = '\0';
	b->password_len = n;
	explicit_bzero(buf, sizeof(buf));
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
	/* Resolved once here, as spamd_address and clamd_socket are: hiredis
	 * would ask the system resolver at every new connection (after each
	 * outage or idle close), a wait store_timeout does not bound. */
	if (b->port != 0) {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res;
		char port[8];
		int rc;

		snprintf(port, sizeof(port), "%d", b->port);
		if ((rc = getaddrinfo(b->host, port, &hints, &res)) != 0) {
			snprintf(err, errlen, "store_redis: %s: %s", b->host, gai_strerror(rc));
			free(b);
			return -1;
		}
		rc = getnameinfo(res->ai_addr, res->ai_addrlen, b->addr, sizeof(b->addr), NULL, 0,
		    NI_NUMERICHOST);
		freeaddrinfo(res);
		if (rc != 0) {
			snprintf(err, errlen, "store_redis: %s: %s", b->host, gai_strerror(rc));
			free(b);
			return -1;
		}
	}
	snprintf(b->prefix, sizeof(b->prefix), "%s", cfg->store_prefix);
	snprintf(b->user, sizeof(b->user), "%s", cfg->store_redis_user);
	if (cfg->store_redis_password_file[0] != '\0'
	    && read_password(b, cfg->store_redis_password_file, err, errlen) < 0) {
		free(b);
		return -1;
	}
	if (b->user[0] != '\0' && b->password == NULL) {
		snprintf(err, errlen, "store_redis_user %s: needs store_redis_password_file", b->user);
		free(b);
		return -1;
	}
	b->token_ttl_s = cfg->bayes_token_ttl;
	b->timeout_ms = cfg->store_timeout;
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
	if (b->password != NULL) {
		explicit_bzero(b->password, b->password_len);
		free(b->password);
	}
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* hiredis 0.14 allocates an array's element pointers as soon as it reads
 * "*N" (its own range check stops at INT_MAX): "*2000000000\r\n" alone was
 * a 16 GB calloc, walked pointer by pointer when the unfinished reply was
 * freed, 4 to 10 s of the scanner thread past store_timeout.  Our readers build arrays through this cap instead; a refusal
 * is "Out of memory" to hiredis, so the thread remembers the real reason. */
static redisReplyObjectFunctions capped_fn;
static void *(*default_create_array)(const redisReadTask *, int);
static pthread_once_t capped_once = PTHREAD_ONCE_INIT;
static _Thread_local int refused_elements;
static _Thread_local int elements_max = ELEMENTS_MAX;   /* read_reply's */
/* the time the call under way was given: store_timeout, or what was left
 * of the scan's deadline (call_start); for its messages */
static _Thread_local unsigned call_ms;

static void *capped_array(const redisReadTask *task, int elements)
{
	if (elements < 0 || elements > elements_max) {
		refused_elements = elements;
		return NULL;
	}
	return default_create_array(task, elements);
}

static void capped_init(void)
{
	redisReader *r = redisReaderCreate();

	if (r == NULL)
		abort();
	capped_fn = *r->fn;
	default_create_array = capped_fn.createArray;
	capped_fn.createArray = capped_array;
	redisReaderFree(r);
}

static struct timeval ms_tv(int64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

/* idle_broken - an idle pooled connection the server wrote to or closed
 * (Redis' own `timeout`, a restart) while it sat in the pool; used as it
 * is, the next command would fail on the EOF, or worse, take those bytes
 * as its reply.  The reason is logged. */
static int idle_broken(const struct redis_store *b, redisContext *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	char byte;
	ssize_t n;

	if (c->reader->len > c->reader->pos)
		n = 1;
	else if (poll(&p, 1, 0) <= 0)
		return 0;
	else
		n = recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		slog(NULL, LOG_WARNING, "store redis %s:%d: unasked reply on an idle connection; "
		    "connection dropped", b->host, b->port);
	else
		slog(NULL, LOG_INFO, "store redis %s:%d: idle connection closed by the server; "
		    "reconnecting", b->host, b->port);
	return 1;
}

static int flush_out(const struct redis_store *b, redisContext *c, int64_t deadline,
                     char *why, size_t whysz);
static int read_reply(const struct redis_store *b, redisContext *c, int64_t deadline,
                      redisReply **out, char *why, size_t whysz);

/* conn_auth - AUTH on a new connection c, before deadline, when a
 * password is set (store_redis_password_file): every connect, a
 * reconnect after an outage or an idle close too, Redis forgetting a
 * connection's AUTH with it.  0, or -1 with why (the server's answer,
 * never the password) */
static int conn_auth(const struct redis_store *b, redisContext *c, int64_t deadline,
                     char *why, size_t whysz)
{
	const char *argv[3] = { "AUTH" };
	size_t lens[3] = { 4 };
	int argc = 1, rc = 0;
	redisReply *r = NULL;
	unsigned saved = call_ms;

	if (b->password == NULL)
		return 0;
	if (b->user[0] != '\0') {
		argv[argc] = b->user;
		lens[argc++] = strlen(b->user);
	}
	argv[argc] = b->password;
	lens[argc++] = b->password_len;
	/* the messages of flush_out and read_reply say how long it had */
	call_ms = (unsigned)(deadline - monotime_ms() > 0 ? deadline - monotime_ms() : 0);
	if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK) {
		snprintf(why, whysz, "AUTH: out of memory");
		rc = -1;
	} else if (flush_out(b, c, deadline, why, whysz) < 0
	           || read_reply(b, c, deadline, &r, why, whysz) < 0) {
		rc = -1;
	} else if (r->type == REDIS_REPLY_ERROR) {
		snprintf(why, whysz, "AUTH%s%s refused: %.150s", b->user[0] ? " as " : "", b->user,
		    r->str);
		rc = -1;
	} else if (r->type != REDIS_REPLY_STATUS) {
		snprintf(why, whysz, "AUTH: unexpected reply of type %d", r->type);
		rc = -1;
	}
	if (r != NULL)
		freeReplyObject(r);
	/* hiredis keeps what it sent in its output buffer until written:
	 * sent, it is gone; a connection that failed is freed at once */
	call_ms = saved;
	return rc;
}

/* conn_get - an idle connection or a new one, connected within budget_ms
 * (store_timeout, or less left of the scan's deadline); NULL when the
 * server is unreachable (logged once per outage), or the connect ran out
 * of the scan's deadline (logged, noted; not taken for an outage: the
 * next message has its own time) */
static redisContext *conn_get(struct redis_store *b, unsigned budget_ms)
{
	redisContext *c = NULL;
	int64_t now = monotime_ms();
	struct timeval tv = b->tv;
	int capped = budget_ms < b->timeout_ms;
	char why[512];

	pthread_once(&capped_once, capped_init);
	for (;;) {
		pthread_mutex_lock(&b->lock);
		if (b->nidle > 0)
			c = b->idle[--b->nidle];
		else if (now < b->down_until_ms) {
			pthread_mutex_unlock(&b->lock);
			return NULL;
		}
		pthread_mutex_unlock(&b->lock);
		if (c == NULL)
			break;
		if (!idle_broken(b, c))
			return c;
		redisFree(c);
		c = NULL;
	}
	if (capped)
		tv = ms_tv(budget_ms);
	c = b->port ? redisConnectWithTimeout(b->addr, b->port, tv)
	            : redisConnectUnixWithTimeout(b->host, tv);
	if (c != NULL && c->err == 0 && redisSetTimeout(c, b->tv) == REDIS_OK) {
		c->reader->fn = &capped_fn;
		if (conn_auth(b, c, now + budget_ms, why, sizeof(why)) == 0) {
			pthread_mutex_lock(&b->lock);
			if (b->down_logged)
				slog(NULL, LOG_NOTICE, "store redis %s:%d: reachable again", b->host, b->port);
			b->down_logged = 0;
			pthread_mutex_unlock(&b->lock);
			return c;
		}
	} else
		snprintf(why, sizeof(why), "%s", c != NULL && c->errstr[0] ? c->errstr : "out of memory");
	if (capped && monotime_ms() - now >= (int64_t)budget_ms) {
		slog(NULL, LOG_WARNING, "store redis %s:%d: cannot connect within %u ms, what was left "
		    "of the scan's deadline", b->host, b->port, budget_ms);
		deadline_timed_out("store_timeout");
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	pthread_mutex_lock(&b->lock);
	b->down_until_ms = monotime_ms() + RETRY_MS;
	if (!b->down_logged)
		slog(NULL, LOG_ERR, "store redis %s:%d: cannot connect: %s", b->host, b->port, why);
	b->down_logged = 1;
	pthread_mutex_unlock(&b->lock);
	if (c != NULL)
		redisFree(c);
	return NULL;
}

/* conn_put - back to the pool (why NULL), or dropped with why logged.
 * One with bytes left after the replies we read is desynchronised: its
 * next reply would answer a command it does not belong to. */
static void conn_put(struct redis_store *b, redisContext *c, const char *cmd, const char *why)
{
	if (why == NULL && c->reader->len > c->reader->pos)
		why = "more data than the replies asked for";
	if (why != NULL) {
		slog(NULL, LOG_ERR, "store redis %s:%d: %s: %s; connection dropped", b->host, b->port,
		    cmd, why);
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

/* cut_note - for a message: whether the call under way had less than
 * store_timeout */
static const char *cut_note(const struct redis_store *b)
{
	return call_ms < b->timeout_ms ? ", what was left of the scan's deadline" : "";
}

/* flush_out - the appended commands written before the deadline.  0, or
 * -1 with why.  The socket is blocking (hiredis' synchronous API); its
 * send timeout is what is left of the call. */
static int flush_out(const struct redis_store *b, redisContext *c, int64_t deadline,
                     char *why, size_t whysz)
{
	int done = 0;

	while (!done) {
		int64_t left = deadline - monotime_ms();

		if (left <= 0 || redisSetTimeout(c, ms_tv(left)) != REDIS_OK) {
			snprintf(why, whysz, "not sent within %u ms%s", call_ms, cut_note(b));
			return -1;
		}
		if (redisBufferWrite(c, &done) != REDIS_OK) {
			snprintf(why, whysz, "send: %s", c->errstr);
			return -1;
		}
	}
	return 0;
}

static int read_reply_loop(const struct redis_store *b, redisContext *c, int64_t deadline,
                           size_t max_bytes, int max_elements, void **rp,
                           char *why, size_t whysz)
{
	size_t got = 0;
	void *r = NULL;

	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int64_t left;
		size_t before;
		int n;

		if (redisGetReplyFromReader(c, &r) != REDIS_OK) {
			if (refused_elements != 0)
				snprintf(why, whysz, "array reply of %d elements (at most %d)",
				    refused_elements, max_elements);
			else
				snprintf(why, whysz, "%s", c->errstr);
			return -1;
		}
		if (r != NULL) {
			*rp = r;
			return 0;
		}
		if (got > max_bytes) {
			snprintf(why, whysz, "reply longer than %zu bytes", max_bytes);
			return -1;
		}
		left = deadline - monotime_ms();
		n = left > 0 ? poll(&p, 1, (int)left) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0) {
			snprintf(why, whysz, "no complete reply within %u ms%s", call_ms, cut_note(b));
			return -1;
		}
		if (n < 0) {
			snprintf(why, whysz, "poll: %s", strerror(errno));
			return -1;
		}
		before = c->reader->len;
		if (redisBufferRead(c) != REDIS_OK) {
			snprintf(why, whysz, "%s", c->errstr);
			return -1;
		}
		got += c->reader->len - before;
	}
}

/* read_reply_capped - the next reply, complete, before the deadline,
 * within max_bytes bytes and arrays of max_elements.  0, or -1 with why. */
static int read_reply_capped(const struct redis_store *b, redisContext *c, int64_t deadline,
                             size_t max_bytes, int max_elements,
                             redisReply **out, char *why, size_t whysz)
{
	void *r = NULL;
	int rc;

	/* capped_array reads the cap from here: it has no other way in */
	refused_elements = 0;
	elements_max = max_elements;
	rc = read_reply_loop(b, c, deadline, max_bytes, max_elements, &r, why, whysz);
	elements_max = ELEMENTS_MAX;
	if (rc == 0)
		*out = r;
	return rc;
}

/* read_reply - the next reply within REPLY_MAX bytes and ELEMENTS_MAX
 * elements */
static int read_reply(const struct redis_store *b, redisContext *c, int64_t deadline,
                      redisReply **out, char *why, size_t whysz)
{
	return read_reply_capped(b, c, deadline, REPLY_MAX, ELEMENTS_MAX, out, why, whysz);
}

/* full_key - store_prefix then key: never cut in out[FULL_KEY_SZ], the
 * prefix being bounded by config.c (asserted above) and the key by
 * store.c */
static void full_key(const struct redis_store *b, const char *key, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s%s", b->prefix, key);
}

/* call_start_ms - a connection for one call of cmd and the call's
 * deadline: want_ms for the connect and again for the call, each cut to
 * what is left of the scan's deadline (deadline.h).  0, or -1 (logged;
 * noted when out of time) */
static int call_start_ms(struct redis_store *b, const char *cmd, redisContext **cp,
                         int64_t *deadline, unsigned want_ms)
{
	unsigned budget = deadline_cap(want_ms, NULL);

	if (budget > 0) {
		if ((*cp = conn_get(b, budget)) == NULL)
			return -1;
		/* the connect took some of it */
		if ((budget = deadline_cap(want_ms, NULL)) > 0) {
			call_ms = budget;
			*deadline = monotime_ms() + budget;
			return 0;
		}
		conn_put(b, *cp, cmd, NULL);
	}
	/* nothing left of the scan's deadline: a failure like a timeout
	 * (store_failure), without a command Redis would answer late */
	slog(NULL, LOG_WARNING, "store redis %s:%d: %s: no time left of the scan's deadline",
	    b->host, b->port, cmd);
	deadline_timed_out("store_timeout");
	return -1;
}

/* call_start - the same within store_timeout */
static int call_start(struct redis_store *b, const char *cmd, redisContext **cp,
                      int64_t *deadline)
{
	return call_start_ms(b, cmd, cp, deadline, b->timeout_ms);
}

/* reply_error - the server answered cmd with an error: logged at
 * LOG_ERR the first time, then counted until a call is answered
 * (answered).  NOAUTH (no password or the wrong one), READONLY (a
 * replica), OOM (maxmemory), MISCONF, LOADING are the server's state,
 * met by every call until it changes: logged at each call they were a
 * line a call, 20 for 20 greylisted messages (store.h promises one per
 * burst, as an outage of the connection is). */
static void reply_error(struct redis_store *b, const char *cmd, const char *msg)
{
	int first;

	pthread_mutex_lock(&b->lock);
	first = !b->error_logged;
	b->error_logged = 1;
	b->errors += !first;
	pthread_mutex_unlock(&b->lock);
	if (first) {
		/* the server's text: bounded and escaped as any peer's */
		char esc[256];

		slog(NULL, LOG_ERR, "store redis %s:%d: %s: %s (logged once until a call is "
		    "answered again)", b->host, b->port, cmd, log_esc(esc, sizeof esc, msg, strnlen(msg, 200)));
	}
}

/* answered - a call answered without an error: the end of an error
 * episode, if one was going (logged with how many more there were) */
static void answered(struct redis_store *b)
{
	unsigned long n;

	pthread_mutex_lock(&b->lock);
	if (!b->error_logged) {
		pthread_mutex_unlock(&b->lock);
		return;
	}
	n = b->errors;
	b->error_logged = 0;
	b->errors = 0;
	pthread_mutex_unlock(&b->lock);
	slog(NULL, LOG_NOTICE, "store redis %s:%d: answering again (%lu more error repl%s since "
	    "the one logged)", b->host, b->port, n, n == 1 ? "y" : "ies");
}

/* run_capped - one command (argv form), sent and answered within
 * store_timeout or what is left of the scan's deadline if less
 * (deadline.h), its reply within max_bytes; the reply (caller frees) or
 * NULL */
static redisReply *run_capped_ms(struct redis_store *b, int argc, const char **argv,
                                 const size_t *lens, size_t max_bytes, int max_elements,
                                 unsigned want_ms)
{
	redisContext *c;
	int64_t deadline;
	redisReply *r = NULL;
	char why[200];

	if (call_start_ms(b, argv[0], &c, &deadline, want_ms) < 0)
		return NULL;
	if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK) {
		conn_put(b, c, argv[0], "out of memory");
		return NULL;
	}
	if (flush_out(b, c, deadline, why, sizeof(why)) < 0
	    || read_reply_capped(b, c, deadline, max_bytes, max_elements, &r, why,
	                         sizeof(why)) < 0) {
		if (monotime_ms() >= deadline)
			deadline_timed_out("store_timeout");
		conn_put(b, c, argv[0], why);
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		reply_error(b, argv[0], r->str);
		freeReplyObject(r);
		conn_put(b, c, argv[0], NULL);
		return NULL;
	}
	answered(b);
	conn_put(b, c, argv[0], NULL);
	return r;
}

static redisReply *run_capped(struct redis_store *b, int argc, const char **argv,
                              const size_t *lens, size_t max_bytes, int max_elements)
{
	return run_capped_ms(b, argc, argv, lens, max_bytes, max_elements, b->timeout_ms);
}

/* run - the same, its reply within REPLY_MAX and ELEMENTS_MAX */
static redisReply *run(struct redis_store *b, int argc, const char **argv, const size_t *lens)
{
	return run_capped(b, argc, argv, lens, REPLY_MAX, ELEMENTS_MAX);
}

/* wrong_type - a reply of a type the command never gives: logged (the
 * reply is whole, so the connection stays in step) */
static void wrong_type(struct redis_store *b, const char *cmd, const redisReply *r)
{
	if (r->type == REDIS_REPLY_ERROR) {
		reply_error(b, cmd, r->str);
		return;
	}
	slog(NULL, LOG_ERR, "store redis %s:%d: %s: unexpected reply of type %d", b->host, b->port,
	    cmd, r->type);
}

/* get_string - GET key, its reply within max_bytes (store_get's and
 * store_blob_get's caps differ): 1 with *rp the string reply (caller
 * frees), 0 absent, -1 a failure (logged) */
static int get_string(struct redis_store *b, const char *key, size_t max_bytes, redisReply **rp)
{
	char k[FULL_KEY_SZ];
	const char *argv[2] = { "GET", k };
	redisReply *r;
	int found;

	full_key(b, key, k, sizeof(k));
	if ((r = run_capped(b, 2, argv, NULL, max_bytes, ELEMENTS_MAX)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_STRING) {
		*rp = r;
		return 1;
	}
	found = r->type == REDIS_REPLY_NIL ? 0 : -1;
	if (found < 0)
		wrong_type(b, "GET", r);
	freeReplyObject(r);
	return found;
}

static int redis_get(void *vb, const char *key, char *val, size_t valsz)
{
	redisReply *r;
	int found = get_string(vb, key, REPLY_MAX, &r);

	if (found == 1) {
		size_t n = r->len < valsz - 1 ? r->len : valsz - 1;

		memcpy(val, r->str, n);
		val[n] = '\0';
		freeReplyObject(r);
	}
	return found;
}

/* GET and the server's clock in ms, one step: a script, TIME being no
 * command a pipeline could pair with the GET atomically */
static const char get_now_lua[] =
	"local t = redis.call('TIME') "
	"return {redis.call('GET', KEYS[1]), "
	"tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}";

static int redis_get_now(void *vb, const char *key, char *val, size_t valsz, int64_t *now)
{
	struct redis_store *b = vb;
	char k[FULL_KEY_SZ];
	const char *argv[4] = { "EVAL", get_now_lua, "1", k };
	redisReply *r;
	int found = -1;

	full_key(b, key, k, sizeof(k));
	if ((r = run(b, 4, argv, NULL)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2
	    && (r->element[0]->type == REDIS_REPLY_STRING || r->element[0]->type == REDIS_REPLY_NIL)
	    && r->element[1]->type == REDIS_REPLY_INTEGER && r->element[1]->integer > 0) {
		redisReply *v = r->element[0];

		found = v->type == REDIS_REPLY_STRING;
		if (found) {
			size_t n = v->len < valsz - 1 ? v->len : valsz - 1;

			memcpy(val, v->str, n);
			val[n] = '\0';
		}
		*now = r->element[1]->integer;
	} else {
		wrong_type(b, "EVAL (get_now)", r);
	}
	freeReplyObject(r);
	return found;
}

static int redis_set(void *vb, const char *key, const char *val, unsigned ttl_s)
{
	struct redis_store *b = vb;
	char k[FULL_KEY_SZ], ttl[24];
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
	char k[FULL_KEY_SZ];
	const char *argv[2] = { "DEL", k };
	redisReply *r;

	full_key(b, key, k, sizeof(k));
	if ((r = run(b, 2, argv, NULL)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* RENAME keeps the TTL; on a key that is not there it is an error,
 * hence the script (run as one step) */
static const char move_lua[] =
	"if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
	"redis.call('RENAME', KEYS[1], KEYS[2]) return 1";

static int redis_move(void *vb, const char *from, const char *to)
{
	struct redis_store *b = vb;
	char k[FULL_KEY_SZ], nk[FULL_KEY_SZ];
	const char *argv[5] = { "EVAL", move_lua, "2", k, nk };
	redisReply *r;
	int rc;

	full_key(b, from, k, sizeof(k));
	full_key(b, to, nk, sizeof(nk));
	if ((r = run(b, 5, argv, NULL)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_INTEGER && (r->integer == 0 || r->integer == 1)) {
		rc = (int)r->integer;
	} else {
		wrong_type(b, "EVAL (move)", r);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

static int redis_blob_get(void *vb, const char *key, unsigned char **data, size_t *len)
{
	struct redis_store *b = vb;
	redisReply *r;
	int found = get_string(b, key, BLOB_REPLY_MAX, &r);

	if (found != 1)
		return found;
	if (r->len > STORE_BLOB_MAX) {
		slog(NULL, LOG_ERR, "store redis %s:%d: GET %s: value of %zu bytes (at most %u)",
		    b->host, b->port, key, r->len, STORE_BLOB_MAX);
		found = -1;
	} else {
		*len = r->len;
		*data = xmalloc(r->len > 0 ? r->len : 1);
		memcpy(*data, r->str, r->len);
	}
	freeReplyObject(r);
	return found;
}

static int redis_blob_set(void *vb, const char *key, const void *data, size_t len, unsigned ttl_s)
{
	struct redis_store *b = vb;
	char k[FULL_KEY_SZ], ttl[24];
	const char *argv[5] = { "SET", k, data, "EX", ttl };
	size_t lens[5];
	redisReply *r;

	full_key(b, key, k, sizeof(k));
	snprintf(ttl, sizeof(ttl), "%u", ttl_s);
	lens[0] = 3;
	lens[1] = strlen(k);
	lens[2] = len;
	lens[3] = 2;
	lens[4] = strlen(ttl);
	if ((r = run(b, ttl_s ? 5 : 3, argv, lens)) == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

/* pipe_keys - "cmd key" for each of the n keys in one round trip within
 * store_timeout, the replies (each within max_bytes) into rep[].  0, or
 * -1 (logged, nothing left in rep). */
static int pipe_keys(struct redis_store *b, const char *cmd, char **keys, size_t n,
                     size_t max_bytes, redisReply **rep)
{
	redisContext *c;
	int64_t deadline;
	size_t i;
	char why[200];

	if (call_start(b, cmd, &c, &deadline) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		const char *argv[2] = { cmd, keys[i] };

		if (redisAppendCommandArgv(c, 2, argv, NULL) != REDIS_OK) {
			conn_put(b, c, cmd, "out of memory");
			return -1;
		}
	}
	if (flush_out(b, c, deadline, why, sizeof(why)) < 0)
		goto fail;
	for (i = 0; i < n; i++)
		if (read_reply_capped(b, c, deadline, max_bytes, ELEMENTS_MAX, &rep[i], why,
		                      sizeof(why)) < 0)
			goto fail;
	conn_put(b, c, cmd, NULL);
	return 0;
fail:
	while (i > 0)
		freeReplyObject(rep[--i]);
	if (monotime_ms() >= deadline)
		deadline_timed_out("store_timeout");
	conn_put(b, c, cmd, why);
	return -1;
}

/* glob_escape - s with SCAN MATCH's special characters taken literally */
static void glob_escape(const char *s, char *out, size_t outsz)
{
	size_t o = 0;

	for (; *s && o + 3 < outsz; s++) {
		if (strchr("*?[]\\", *s) != NULL)
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o] = '\0';
}

/* scan_values - the values of the n keys (full names) handed to fn,
 * fetched in GET pipelines of at most SCAN_BYTES (by STRLEN first: a
 * SCAN batch of 1,000 keys of 8 MiB each must not be one 8 GB read).
 * Keys gone meanwhile, or not strings, are left out.  0 (go on), 1 (fn
 * stopped), -1. */
static int scan_values(struct redis_store *b, char **keys, size_t n,
                       int (*fn)(const char *key, const unsigned char *data, size_t len, void *arg),
                       void *arg)
{
	redisReply **lens = xcalloc(n, sizeof(*lens)), **vals = xcalloc(n, sizeof(*vals));
	char **group = xcalloc(n, sizeof(*group));
	size_t *at = xcalloc(n, sizeof(*at));
	size_t plen = strlen(b->prefix), from = 0, i;
	int rc = 0;

	if (pipe_keys(b, "STRLEN", keys, n, REPLY_MAX, lens) < 0) {
		free(lens);
		free(vals);
		free(group);
		free(at);
		return -1;
	}
	while (from < n && rc == 0) {
		size_t m = 0;
		unsigned long long bytes = 0;

		for (i = from; i < n; i++) {
			long long l;

			/* not a string (a token hash: an error reply); 0 is an empty
			 * value or a key gone since SCAN, which GET tells apart */
			if (lens[i]->type != REDIS_REPLY_INTEGER || lens[i]->integer < 0)
				continue;
			l = lens[i]->integer;
			if (m > 0 && bytes + (unsigned long long)l > SCAN_BYTES)
				break;
			bytes += (unsigned long long)l;
			at[m] = i;
			group[m++] = keys[i];
		}
		from = i;
		if (m == 0)
			break;
		if (pipe_keys(b, "GET", group, m, BLOB_REPLY_MAX, vals) < 0) {
			rc = -1;
			break;
		}
		for (i = 0; i < m; i++) {
			redisReply *v = vals[i];

			if (rc == 0 && v->type == REDIS_REPLY_STRING && v->len <= STORE_BLOB_MAX
			    && fn(keys[at[i]] + plen, (const unsigned char *)v->str, v->len, arg) != 0)
				rc = 1;
			freeReplyObject(v);
		}
	}
	for (i = 0; i < n; i++)
		freeReplyObject(lens[i]);
	free(lens);
	free(vals);
	free(group);
	free(at);
	return rc;
}

static int redis_scan(void *vb, const char *prefix,
                      int (*fn)(const char *key, const unsigned char *data, size_t len, void *arg),
                      void *arg)
{
	struct redis_store *b = vb;
	char pat[2 * FULL_KEY_SZ + 2], full[FULL_KEY_SZ];
	char cursor[32] = "0";
	const char *argv[6] = { "SCAN", cursor, "MATCH", pat, "COUNT", SCAN_COUNT };
	size_t flen;
	int rc = 0;

	snprintf(full, sizeof(full), "%s%s", b->prefix, prefix);
	flen = strlen(full);
	glob_escape(full, pat, sizeof(pat) - 1);
	strcat(pat, "*");
	do {
		redisReply *r = run_capped(b, 6, argv, NULL, SCAN_ELEMENTS * (STORE_KEY_MAX + 80),
		                           SCAN_ELEMENTS);
		char **keys;
		size_t n = 0;

		if (r == NULL)
			return -1;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
		    || r->element[0]->type != REDIS_REPLY_STRING
		    || r->element[0]->len >= sizeof(cursor)
		    || r->element[1]->type != REDIS_REPLY_ARRAY) {
			wrong_type(b, "SCAN", r);
			freeReplyObject(r);
			return -1;
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len);
		cursor[r->element[0]->len] = '\0';
		keys = xcalloc(r->element[1]->elements + 1, sizeof(*keys));
		for (size_t i = 0; i < r->element[1]->elements; i++) {
			redisReply *e = r->element[1]->element[i];

			/* the server is a peer: only keys MATCH could have given,
			 * and that are C strings store.c would take */
			if (e->type == REDIS_REPLY_STRING && e->len >= flen
			    && e->len - strlen(b->prefix) <= STORE_KEY_MAX
			    && memcmp(e->str, full, flen) == 0 && memchr(e->str, '\0', e->len) == NULL)
				keys[n++] = e->str;
		}
		if (n > 0)
			rc = scan_values(b, keys, n, fn, arg);
		free(keys);
		freeReplyObject(r);
		if (rc != 0)
			return rc < 0 ? -1 : 0;
	} while (strcmp(cursor, "0") != 0);
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
	char k[FULL_KEY_SZ], n[32], ttl[24];
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
	} else {
		wrong_type(b, "EVAL (incr)", r);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

/* store_take in one script, the windows by the server's clock (TIME),
 * never the caller's (store.h).  One hash per subject, fields w (the
 * window number), c (its count) and p (the window before's count), so
 * that the script names the one key it touches (KEYS; a key per window,
 * as LMDB keeps, would be named from TIME inside the script, a key the
 * caller never declared): a hash found a window behind is rolled (c
 * becomes p), further behind it starts afresh; one whose window is ahead
 * of TIME (the server's clock stepped back) is taken as this window.
 * ARGV: by, limit, window_ms, the take's ms for a give-back.  Returns
 * {done 0/1, cur, prev, now ms} (Lua numbers come back as integers: only
 * whole counts and ms are returned).  replicate_commands: Redis before 5
 * refuses a write after TIME in a script replicated as a whole (a no-op
 * since; Debian 12 has 7.0). */
static const char take_lua[] =
	"if redis.replicate_commands then redis.replicate_commands() end "
	"local t = redis.call('TIME') "
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
	"local by, lim, win = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]) "
	"local idx = math.floor(now / win) "
	"local v = redis.call('HMGET', KEYS[1], 'w', 'c', 'p') "
	"local w, c, p = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0 "
	"local found = w ~= nil "
	"if not w or w < idx - 1 then w, c, p = idx, 0, 0 "
	"elseif w == idx - 1 then w, c, p = idx, 0, c end "
	"if by < 0 then "
	"if not found then return {0, 0, 0, now} end "
	"local at = math.floor(tonumber(ARGV[4]) / win) "
	"if at == w and c > 0 then c = math.max(0, c + by) "
	"elseif at == w - 1 and p > 0 then p = math.max(0, p + by) "
	"else return {0, c, p, now} end "
	"redis.call('HMSET', KEYS[1], 'w', w, 'c', c, 'p', p) "
	"return {1, c, p, now} end "
	"if by == 0 then return {1, c, p, now} end "
	"if c + by + p * (1 - (now % win) / win) > lim then return {0, c, p, now} end "
	"c = c + by "
	"redis.call('HMSET', KEYS[1], 'w', w, 'c', c, 'p', p) "
	"redis.call('PEXPIRE', KEYS[1], (w + 2) * win - now) "
	"return {1, c, p, now}";

static int redis_take(void *vb, const char *key, unsigned window_ms, int64_t by, int64_t limit,
                      int64_t *at_ms, int64_t *cur, int64_t *prev)
{
	struct redis_store *b = vb;
	char k[FULL_KEY_SZ], n[32], lim[32], win[16], at[32];
	const char *argv[8] = { "EVAL", take_lua, "1", k, n, lim, win, at };
	redisReply *r;
	int rc = -1;

	full_key(b, key, k, sizeof(k));
	snprintf(n, sizeof(n), "%" PRId64, by);
	snprintf(lim, sizeof(lim), "%" PRId64, limit);
	snprintf(win, sizeof(win), "%u", window_ms);
	snprintf(at, sizeof(at), "%" PRId64, by < 0 ? *at_ms : 0);
	if ((r = run(b, 8, argv, NULL)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 4
	    && r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER
	    && r->element[2]->type == REDIS_REPLY_INTEGER && r->element[3]->type == REDIS_REPLY_INTEGER
	    && (r->element[0]->integer == 0 || r->element[0]->integer == 1)) {
		rc = (int)r->element[0]->integer;
		*cur = r->element[1]->integer;
		*prev = r->element[2]->integer;
		if (by >= 0)
			*at_ms = r->element[3]->integer;
	} else {
		wrong_type(b, "EVAL (take)", r);
	}
	freeReplyObject(r);
	return rc;
}

static void token_key(const struct redis_store *b, uint64_t h, char *out, size_t outsz)
{
	snprintf(out, outsz, "%st:%016" PRIx64, b->prefix, h);
}

/* ARGV: expect ('' = absent), value ('' = remove), ttl */
static const char swap_lua[] =
	"if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end "
	"if ARGV[2] == '' then redis.call('DEL', KEYS[1]) "
	"elseif ARGV[3] ~= '0' then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) "
	"else redis.call('SET', KEYS[1], ARGV[2]) end return 1";

/* an int reply of 0 or 1 as the call's result, else -1 (logged) */
static int zero_or_one(struct redis_store *b, const char *cmd, redisReply *r)
{
	int rc = -1;

	if (r == NULL)
		return -1;
	if (r->type == REDIS_REPLY_INTEGER && (r->integer == 0 || r->integer == 1))
		rc = (int)r->integer;
	else
		wrong_type(b, cmd, r);
	freeReplyObject(r);
	return rc;
}

static int redis_swap(void *vb, const char *key, const char *expect, const char *val,
                      unsigned ttl_s)
{
	struct redis_store *b = vb;
	char k[FULL_KEY_SZ], ttl[24];
	const char *argv[7] = { "EVAL", swap_lua, "1", k, expect ? expect : "", val ? val : "", ttl };

	/* an empty string is a value Redis keeps, and would read as
	 * "absent" here: no caller stores one */
	if ((expect != NULL && expect[0] == '\0') || (val != NULL && val[0] == '\0'))
		return -1;
	full_key(b, key, k, sizeof(k));
	snprintf(ttl, sizeof(ttl), "%u", ttl_s);
	return zero_or_one(b, "EVAL (swap)", run(b, 7, argv, NULL));
}

/* KEYS: mark, spam counter, ham counter, the kept value, its counter,
 * the tokens; ARGV: mark expected ('' absent), mark wanted ('' forget),
 * its ttl, the tokens' ttl, what to do with the kept value ('' nothing,
 * 'd' remove, 's' set), the value, its ttl, '1' to bump its counter,
 * what a token learned gets (TOKENS_*): 'a' the tokens' ttl, 'p' no
 * ttl, 'v' the tokens' ttl if it is new or has one already, and one
 * letter a token (KEYS[6..]) saying which side it is on: 'b' both (the
 * was class -1, the now class +1), 'o' off only (-1), 'n' on only (+1).
 * A class is 's' or 'h', 'S' or 'H' (an autolearned sample) alike.
 * One script: the look and every write one step, so that two learners
 * of one message cannot both count it, nor leave an example that is not
 * the mark's class.  The mark expected equal to the mark wanted: only
 * the kept value is written.  A counter that would go below 0 stays at
 * 0: a server that evicts keys (maxmemory-policy allkeys-*, README "The
 * store") may have taken it, and a forget then counted it -1, a negative
 * count of learned messages that Bayes divided by. */
static const char learn_lua[] =
	"if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end "
	"if ARGV[1] ~= ARGV[2] then "
	"local ws, wh, ns, nh = 0, 0, 0, 0 "
	"if ARGV[1] == 's' or ARGV[1] == 'S' then ws = 1 elseif ARGV[1] == 'h' or ARGV[1] == 'H' then wh = 1 end "
	"if ARGV[2] == 's' or ARGV[2] == 'S' then ns = 1 elseif ARGV[2] == 'h' or ARGV[2] == 'H' then nh = 1 end "
	"local ds, dh = ns - ws, nh - wh "
	"for i = 6, #KEYS do local k = KEYS[i] "
	"local side = string.sub(ARGV[10], i - 5, i - 5) "
	"local on = side ~= 'o' and 1 or 0 "
	"local off = side ~= 'n' and 1 or 0 "
	"local new = ARGV[9] == 'v' and redis.call('EXISTS', k) == 0 "
	"local s = redis.call('HINCRBY', k, 's', on * ns - off * ws) "
	"local h = redis.call('HINCRBY', k, 'h', on * nh - off * wh) "
	"if s < 0 then redis.call('HSET', k, 's', 0) s = 0 end "
	"if h < 0 then redis.call('HSET', k, 'h', 0) h = 0 end "
	"if s == 0 and h == 0 then redis.call('DEL', k) "
	"elseif ARGV[2] ~= '' and on == 1 then "
	"if ARGV[9] == 'a' then redis.call('EXPIRE', k, ARGV[4]) "
	"elseif ARGV[9] == 'p' then redis.call('PERSIST', k) "
	"elseif new or redis.call('TTL', k) >= 0 then redis.call('EXPIRE', k, ARGV[4]) end "
	"end "
	"end "
	"if ds ~= 0 and redis.call('INCRBY', KEYS[2], ds) < 0 then redis.call('SET', KEYS[2], 0) end "
	"if dh ~= 0 and redis.call('INCRBY', KEYS[3], dh) < 0 then redis.call('SET', KEYS[3], 0) end "
	"if ARGV[2] == '' then redis.call('DEL', KEYS[1]) "
	"elseif ARGV[3] ~= '0' then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) "
	"else redis.call('SET', KEYS[1], ARGV[2]) end "
	"end "
	"if ARGV[5] == 'd' then redis.call('DEL', KEYS[4]) "
	"elseif ARGV[5] == 's' and ARGV[7] ~= '0' then redis.call('SET', KEYS[4], ARGV[6], 'EX', ARGV[7]) "
	"elseif ARGV[5] == 's' then redis.call('SET', KEYS[4], ARGV[6]) end "
	"if ARGV[5] ~= '' and ARGV[8] == '1' then redis.call('INCR', KEYS[5]) end "
	"return 1";

/* learn_lua's last ARGV: what a token learned gets.  bayes_token_ttl
 * set: that ttl, renewed, every token (as before session 21).  At 0
 * (taught tokens never expire): a learn the site asked for takes its
 * tokens off expiry (PERSIST), so a token autolearn made first and the
 * site then taught stays; autolearn gives the tokens it makes
 * (and those it made before, still expiring) bayes_autolearn_token_ttl,
 * and leaves a taught token's lifetime alone.  Until session 21 autolearn
 * wrote tokens that never expired, up to BAYES_MAX_TOKENS (20,000) a
 * message, nothing bounding them on Redis (review rv-redis: 10
 * messages of 4,000 random words, 80,012 keys and 12.4 MB). */
#define TOKENS_ALL      "a"
#define TOKENS_PERSIST  "p"
#define TOKENS_VOLATILE "v"

/* A message's tokens (at most BAYES_MAX_TOKENS) in one script: the only
 * step Redis runs whole, so the only way the mark, the counters and every
 * token change together or not at all (split into several scripts, a
 * learner stopped between two would leave tokens counted with no mark).
 * Its time grows with the tokens: 77-102 ms for 20000 (a few ms for a
 * usual message), during which every other client of the server waits.
 * So the learn waits store_timeout plus LEARN_MS_PER_1000_TOKENS per
 * thousand tokens: with store_timeout = 20ms a big message's script was
 * given up while Redis went on to count it, and the caller, told it had
 * failed, reverted the example of a message the store had learned
 * (since session 19 the example is written in this script, one step
 * with the mark). */
#define LEARN_MS_PER_1000_TOKENS 25

/* NKEYS_LEARN - the keys learn_lua takes before the tokens */
#define NKEYS_LEARN 5

static int redis_learn(void *vb, const struct store_learning *l, uint32_t day, uint64_t *ntokens)
{
	struct redis_store *b = vb;
	const uint64_t *off = l->off != NULL ? l->off : l->hashes;
	size_t noff = l->off != NULL ? l->off_n : l->n, ntok = 0, i, j, a, vi, argc;
	const char **argv;
	size_t *lens;
	char (*keys)[FULL_KEY_SZ] = xcalloc(NKEYS_LEARN, sizeof(*keys));
	char (*tokens)[96] = xcalloc(l->n + noff ? l->n + noff : 1, sizeof(*tokens));
	char *sides = xcalloc(l->n + noff + 1, 1);
	char nkeys[24], was[2] = { l->was, '\0' }, now[2] = { l->now, '\0' }, ttl[24], tttl[24];
	char kttl[24];
	const char *kop = l->kept == NULL ? "" : l->kept_val == NULL ? "d" : "s";
	int rc;

	(void)day;
	*ntokens = 0;
	/* the two sorted lists merged, each token once with its side */
	for (i = 0, j = 0; i < l->n || j < noff; ntok++) {
		if (j >= noff || (i < l->n && l->hashes[i] < off[j])) {
			token_key(b, l->hashes[i++], tokens[ntok], sizeof(tokens[ntok]));
			sides[ntok] = 'n';
		} else if (i >= l->n || off[j] < l->hashes[i]) {
			token_key(b, off[j++], tokens[ntok], sizeof(tokens[ntok]));
			sides[ntok] = 'o';
		} else {
			token_key(b, off[j++], tokens[ntok], sizeof(tokens[ntok]));
			sides[ntok] = 'b';
			i++;
		}
	}
	argc = 3 + NKEYS_LEARN + ntok + 10;
	argv = xcalloc(argc, sizeof(*argv));
	lens = xcalloc(argc, sizeof(*lens));
	full_key(b, l->mark, keys[0], sizeof(keys[0]));
	full_key(b, l->count[0], keys[1], sizeof(keys[1]));
	full_key(b, l->count[1], keys[2], sizeof(keys[2]));
	/* keys the script does not touch (kop '' or no counter) are named
	 * all the same, as the mark's: a script declares every key it may
	 * write, and an empty name is no key */
	full_key(b, l->kept != NULL ? l->kept : l->mark, keys[3], sizeof(keys[3]));
	full_key(b, l->kept_count != NULL ? l->kept_count : l->mark, keys[4], sizeof(keys[4]));
	snprintf(nkeys, sizeof(nkeys), "%zu", NKEYS_LEARN + ntok);
	snprintf(ttl, sizeof(ttl), "%u", l->mark_ttl_s);
	snprintf(tttl, sizeof(tttl), "%u", b->token_ttl_s != 0 ? b->token_ttl_s : l->volatile_ttl_s);
	snprintf(kttl, sizeof(kttl), "%u", l->kept_ttl_s);
	argv[0] = "EVAL";
	argv[1] = learn_lua;
	argv[2] = nkeys;
	for (i = 0; i < NKEYS_LEARN; i++)
		argv[3 + i] = keys[i];
	a = 3 + NKEYS_LEARN;
	for (i = 0; i < ntok; i++)
		argv[a++] = tokens[i];
	argv[a++] = was;
	argv[a++] = now;
	argv[a++] = ttl;
	argv[a++] = tttl;
	argv[a++] = kop;
	vi = a++;
	argv[a++] = kttl;
	argv[a++] = l->kept_count != NULL ? "1" : "0";
	argv[a++] = b->token_ttl_s != 0 ? TOKENS_ALL : l->volatile_ttl_s != 0 ? TOKENS_VOLATILE : TOKENS_PERSIST;
	argv[a++] = sides;
	for (i = 0; i < argc; i++)
		lens[i] = i == vi ? 0 : strlen(argv[i]);
	/* the value is binary (NULs too): its length as given */
	if (l->kept_val != NULL) {
		argv[vi] = (const char *)l->kept_val;
		lens[vi] = l->kept_len;
	} else
		argv[vi] = "";
	rc = zero_or_one(b, "EVAL (learn)", run_capped_ms(b, (int)argc, argv, lens, REPLY_MAX,
	    ELEMENTS_MAX, b->timeout_ms + (unsigned)(ntok * LEARN_MS_PER_1000_TOKENS / 1000)));
	free(sides);
	free(argv);
	free(lens);
	free(keys);
	free(tokens);
	return rc;
}

static int redis_tokens_get(void *vb, struct store_token *t, size_t n)
{
	struct redis_store *b = vb;
	redisContext *c;
	int64_t deadline;
	size_t i;
	int rc = 0;
	char why[200];

	if (call_start(b, "HMGET", &c, &deadline) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		char k[128];

		token_key(b, t[i].hash, k, sizeof(k));
		if (redisAppendCommand(c, "HMGET %s s h", k) != REDIS_OK) {
			conn_put(b, c, "HMGET", "out of memory");
			return -1;
		}
	}
	if (flush_out(b, c, deadline, why, sizeof(why)) < 0) {
		if (monotime_ms() >= deadline)
			deadline_timed_out("store_timeout");
		conn_put(b, c, "HMGET", why);
		return -1;
	}
	for (i = 0; i < n; i++) {
		redisReply *r = NULL;

		if (read_reply(b, c, deadline, &r, why, sizeof(why)) < 0) {
			if (monotime_ms() >= deadline)
				deadline_timed_out("store_timeout");
			conn_put(b, c, "HMGET", why);
			return -1;
		}
		t[i].spam = t[i].ham = 0;
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
			if (r->element[0]->type == REDIS_REPLY_STRING)
				t[i].spam = (uint32_t)strtoul(r->element[0]->str, NULL, 10);
			if (r->element[1]->type == REDIS_REPLY_STRING)
				t[i].ham = (uint32_t)strtoul(r->element[1]->str, NULL, 10);
		} else {
			if (rc == 0)
				wrong_type(b, "HMGET", r);
			rc = -1;
		}
		freeReplyObject(r);
	}
	conn_put(b, c, "HMGET", NULL);
	return rc;
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
	.get_now = redis_get_now,
	.set = redis_set,
	.del = redis_del,
	.move = redis_move,
	.incr = redis_incr,
	.swap = redis_swap,
	.take = redis_take,
	.learn = redis_learn,
	.tokens_get = redis_tokens_get,
	.tokens_add = redis_tokens_add,
	.blob_get = redis_blob_get,
	.blob_set = redis_blob_set,
	.scan = redis_scan,
	.close = redis_close,
};
