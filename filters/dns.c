/* dns.c - the scanner's one DNS layer (dns.h): libunbound behind a cache
 * shared by every scanner thread.
 *
 * How a lookup runs: the caller's thread looks in the cache (one mutex);
 * on a miss it starts the query with ub_resolve_async() and waits on a
 * condition variable until the answer arrives or its deadline passes.  A
 * dispatcher thread of ours polls ub_fd() and runs ub_process(), whose
 * callbacks store answers into the cache and wake the waiters.  Lookups of
 * the same (name, type) while one is in flight wait for that one query.
 *
 * Why no ub_cancel() at the deadline: libunbound has no per-query timeout
 * (a dead forwarder gives SERVFAIL after ~17 s), so a late query is left
 * to finish in the background: its answer still warms the cache, and while
 * it is outstanding after a deadline has passed, new lookups of the same
 * name fail at once (DNS_TIMEOUT) instead of each waiting out its own
 * deadline.  In-flight queries are capped (DNS_MAX_INFLIGHT).
 *
 * The cache: a hash table + LRU list of at most dns_cache_size answers
 * taking at most dns_cache_memory bytes (an answer is up to 64 KiB, its
 * content chosen by the zone's owner: the count alone would let a sender
 * who makes us look up many names fill gigabytes), each kept for its TTL, bounded by dns_cache_max_ttl (answers),
 * dns_negative_ttl (NXDOMAIN/NODATA, whose TTL libunbound takes from the
 * SOA, RFC 2308) and dns_failure_ttl (SERVFAIL).
 *
 * libunbound's built-in local zones for test., invalid., home.arpa. and
 * the private / documentation reverse zones would answer NXDOMAIN without
 * asking anyone; with dns_forwarder set they are removed, so the
 * resolvers we forward to decide (localhost., ::1 and onion. stay
 * local).  With /etc/resolv.conf they stay: such names must
 * not leak to the public DNS.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <unbound.h>

#include "filters/deadline.h"
#include "filters/dns.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"
#include "proxy/thread.h"

#define DNS_MAX_INFLIGHT 2000      /* queries outstanding at libunbound */
#define DNS_MAX_FORWARDERS 8
#define DNS_NAME_MAX 253           /* presentation form, without the final dot */

struct dns_entry {
	struct dns_entry *hnext;         /* hash chain */
	struct dns_entry *lprev, *lnext; /* LRU list (answered entries only) */
	uint32_t hash;
	int      rrtype;
	char    *name;                   /* owned; lower case, no final dot */
	struct dns_reply *reply;         /* owned; NULL while in flight */
	double   expires;                /* monotonic seconds */
	size_t   bytes;                  /* memory of name + reply (reply_bytes) */
	unsigned refs;                   /* cache + query in flight + waiters */
	int      in_cache;               /* linked in the hash table */
	int      given_up;               /* a waiter's deadline passed while in flight */
	double   started;                /* monotonic seconds the query went out */
	double   prefetched_until;       /* the answer serves lookups till then (usable_until) */
	struct dns *d;                   /* for the callback */
};

struct dns {
	struct ub_ctx   *ctx;
	pthread_t        dispatcher;
	int              dispatcher_running;
	int              wake[2];        /* pipe: tells the dispatcher to stop */

	pthread_mutex_t  lock;           /* everything below */
	pthread_cond_t   answered;       /* broadcast on every answer */
	struct dns_entry **table;
	size_t           nbuckets;       /* power of two */
	struct dns_entry *lru_head, *lru_tail;
	size_t           ncached;        /* entries on the LRU list */
	size_t           cached_bytes;   /* their bytes */
	size_t           inflight;
	int              inflight_logged;
	struct dns_stats stats;

	size_t           max_entries;
	size_t           max_bytes;
	double           max_ttl, neg_ttl, fail_ttl;   /* seconds */
	unsigned         timeout_ms;
};

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- replies ---------------------------------------------------------- */

static struct dns_reply *reply_new(enum dns_status st, int rrtype)
{
	struct dns_reply *r = xcalloc(1, sizeof(*r));

	r->status = st;
	r->rrtype = rrtype;
	return r;
}

void dns_reply_free(struct dns_reply *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->count; i++) {
		free(r->rr[i].name);
		free(r->rr[i].text);
	}
	free(r->rr);
	free(r);
}

static struct dns_reply *reply_copy(const struct dns_reply *src, unsigned ttl)
{
	struct dns_reply *r = xcalloc(1, sizeof(*r));
	size_t i;

	*r = *src;
	r->ttl = ttl;
	r->rr = NULL;
	if (src->count > 0) {
		r->rr = xcalloc(src->count, sizeof(*r->rr));
		for (i = 0; i < src->count; i++) {
			r->rr[i] = src->rr[i];
			if (src->rr[i].name != NULL)
				r->rr[i].name = xstrdup(src->rr[i].name);
			if (src->rr[i].text != NULL) {
				r->rr[i].text = xmalloc(src->rr[i].text_len + 1);
				memcpy(r->rr[i].text, src->rr[i].text, src->rr[i].text_len + 1);
			}
		}
	}
	return r;
}

/* put_byte - one byte of a label in our canonical form: letters lower
 * case, digits, '-' and '_' as they are, any other byte as \DDD (so a name
 * with a dot or a space inside a label survives the trip to libunbound,
 * and a name from a reply can be looked up again as it is) */
static size_t put_byte(char *out, unsigned char c)
{
	if (isalnum(c) || c == '-' || c == '_') {
		out[0] = (char)tolower(c);
		return 1;
	}
	return (size_t)snprintf(out, 5, "\\%03u", c);
}

/* wire_name - the uncompressed wire-format name at p (len bytes available)
 * in canonical presentation form (put_byte), no final dot.  NULL if
 * malformed. */
static char *wire_name(const unsigned char *p, size_t len)
{
	char out[DNS_NAME_MAX * 4 + 8];
	size_t o = 0, i = 0;

	for (;;) {
		size_t n, k;

		if (i >= len)
			return NULL;
		n = p[i++];
		if (n == 0)
			break;
		if (n > 63 || i + n > len)
			return NULL;
		if (o > 0)
			out[o++] = '.';
		for (k = 0; k < n; k++) {
			unsigned char c = p[i + k];

			if (o + 5 >= sizeof(out))
				return NULL;
			o += put_byte(out + o, c);
		}
		i += n;
	}
	out[o] = '\0';
	return xstrdup(out);
}

/* parse_rr - one rdata of the asked type into rr; 0, or -1 if malformed */
static int parse_rr(int rrtype, const unsigned char *p, size_t len, struct dns_rr *rr)
{
	size_t i;

	memset(rr, 0, sizeof(*rr));
	switch (rrtype) {
	case DNS_T_A:
		if (len != 4)
			return -1;
		memcpy(rr->addr, p, 4);
		return 0;
	case DNS_T_AAAA:
		if (len != 16)
			return -1;
		memcpy(rr->addr, p, 16);
		return 0;
	case DNS_T_MX:
		if (len < 3)
			return -1;
		rr->pref = (unsigned)p[0] << 8 | p[1];
		return (rr->name = wire_name(p + 2, len - 2)) != NULL ? 0 : -1;
	case DNS_T_PTR:
	case DNS_T_NS:
	case DNS_T_CNAME:
		return (rr->name = wire_name(p, len)) != NULL ? 0 : -1;
	case DNS_T_TXT:
		/* character-strings concatenated (RFC 7208 3.3) */
		rr->text = xmalloc(len + 1);
		for (i = 0; i < len; ) {
			size_t n = p[i++];

			if (i + n > len) {
				free(rr->text);
				rr->text = NULL;
				return -1;
			}
			memcpy(rr->text + rr->text_len, p + i, n);
			rr->text_len += n;
			i += n;
		}
		rr->text[rr->text_len] = '\0';
		return 0;
	default:
		return 0;	/* other types: the count says what there is */
	}
}

/* reply_from_ub - our reply for libunbound's result (err: its error code) */
static struct dns_reply *reply_from_ub(int rrtype, int err, const struct ub_result *res)
{
	struct dns_reply *r;
	int i, n;

	if (err != 0 || res == NULL)
		return reply_new(DNS_SERVFAIL, rrtype);
	if (res->bogus)
		r = reply_new(DNS_SERVFAIL, rrtype);
	else if (res->rcode == 3 || res->nxdomain)
		r = reply_new(DNS_NXDOMAIN, rrtype);
	else if (res->rcode != 0)
		r = reply_new(DNS_SERVFAIL, rrtype);
	else if (!res->havedata)
		r = reply_new(DNS_NODATA, rrtype);
	else
		r = reply_new(DNS_OK, rrtype);
	r->ttl = res->ttl > 0 ? (unsigned)res->ttl : 0;
	r->secure = res->secure;
	if (r->status != DNS_OK)
		return r;
	for (n = 0; res->data[n] != NULL; n++)
		;
	r->rr = xcalloc((size_t)n, sizeof(*r->rr));
	for (i = 0; i < n; i++)
		if (parse_rr(rrtype, (const unsigned char *)res->data[i], (size_t)res->len[i],
		    &r->rr[r->count]) == 0)
			r->count++;
	if (r->count == 0)
		r->status = DNS_NODATA;	/* nothing usable */
	return r;
}

/* --- the cache ------------------------------------------------------- */

static uint32_t key_hash(const char *name, int rrtype)
{
	uint32_t h = 2166136261u;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 16777619u;
	return (h ^ (uint32_t)rrtype) * 16777619u;
}

static struct dns_entry *cache_find(struct dns *d, const char *name, int rrtype, uint32_t h)
{
	struct dns_entry *e;

	for (e = d->table[h & (d->nbuckets - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && e->rrtype == rrtype && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static void lru_unlink(struct dns *d, struct dns_entry *e)
{
	if (e->lprev != NULL)
		e->lprev->lnext = e->lnext;
	else if (d->lru_head == e)
		d->lru_head = e->lnext;
	else
		return;		/* not on the list */
	if (e->lnext != NULL)
		e->lnext->lprev = e->lprev;
	else
		d->lru_tail = e->lprev;
	e->lprev = e->lnext = NULL;
	d->ncached--;
	d->cached_bytes -= e->bytes;
}

static void lru_push(struct dns *d, struct dns_entry *e)
{
	e->lprev = NULL;
	e->lnext = d->lru_head;
	if (d->lru_head != NULL)
		d->lru_head->lprev = e;
	d->lru_head = e;
	if (d->lru_tail == NULL)
		d->lru_tail = e;
	d->ncached++;
	d->cached_bytes += e->bytes;
}

static void entry_unref(struct dns_entry *e)
{
	if (--e->refs > 0)
		return;
	free(e->name);
	dns_reply_free(e->reply);
	free(e);
}

/* cache_remove - take e out of the table and the LRU list; drops the
 * cache's reference */
static void cache_remove(struct dns *d, struct dns_entry *e)
{
	struct dns_entry **pp;

	if (!e->in_cache)
		return;
	for (pp = &d->table[e->hash & (d->nbuckets - 1)]; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	e->hnext = NULL;
	e->in_cache = 0;
	lru_unlink(d, e);
	entry_unref(e);
}

static void cache_trim(struct dns *d)
{
	while ((d->ncached > d->max_entries || d->cached_bytes > d->max_bytes)
	    && d->lru_tail != NULL)
		cache_remove(d, d->lru_tail);
}

/* keep_for - seconds an answer may stay in the cache */
static double keep_for(const struct dns *d, const struct dns_reply *r)
{
	double t;

	switch (r->status) {
	case DNS_OK:
		t = r->ttl;
		return t < d->max_ttl ? t : d->max_ttl;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		t = r->ttl;
		return t < d->neg_ttl ? t : d->neg_ttl;
	default:
		return d->fail_ttl;
	}
}

/* usable_until - when e's answer stops being given out: when its TTL (as
 * keep_for cut it) runs out; but an answer (not a failure) to a name
 * prefetched not before that prefetch's dns_timeout ran out.  The
 * pipeline prefetches the names a message's filters will ask for: their
 * lookups must get the answer the prefetch fetched, even one of TTL 0 or
 * with dns_cache_max_ttl = 0 (negative: dns_negative_ttl = 0).  Before,
 * such an answer was gone by the time the filter looked the name up, the
 * lookup asked again, and a server that dropped that second query cost
 * the message a temporary error although it had had the answer.  Names
 * not prefetched keep to their TTL; a failure is kept for
 * dns_failure_ttl only (the next lookup is a second chance). */
static double usable_until(const struct dns_entry *e)
{
	switch (e->reply->status) {
	case DNS_OK:
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		return e->expires > e->prefetched_until ? e->expires : e->prefetched_until;
	default:
		return e->expires;
	}
}

/* ttl_left - seconds of e's TTL left at now (0 once run out) */
static unsigned ttl_left(const struct dns_entry *e, double now)
{
	return e->expires > now ? (unsigned)(e->expires - now) : 0;
}

/* reply_bytes - about the heap memory of an entry holding r (the
 * allocator's own overhead counted as 16 bytes a block) */
static size_t reply_bytes(const struct dns_entry *e, const struct dns_reply *r)
{
	size_t n = sizeof(*e) + strlen(e->name) + 1 + sizeof(*r) + r->count * sizeof(*r->rr) + 64;
	size_t i;

	for (i = 0; i < r->count; i++) {
		if (r->rr[i].name != NULL)
			n += strlen(r->rr[i].name) + 1 + 16;
		if (r->rr[i].text != NULL)
			n += r->rr[i].text_len + 1 + 16;
	}
	return n;
}

/* --- libunbound side ------------------------------------------------- */

static void on_answer(void *arg, int err, struct ub_result *res)
{
	struct dns_entry *e = arg;
	struct dns *d = e->d;
	struct dns_reply *r = reply_from_ub(e->rrtype, err, res);

	if (res != NULL)
		ub_resolve_free(res);
	pthread_mutex_lock(&d->lock);
	e->reply = r;
	e->bytes = reply_bytes(e, r);
	e->expires = now_mono() + keep_for(d, r);
	if (r->status == DNS_SERVFAIL)
		d->stats.failures++;
	d->inflight--;
	if (e->in_cache) {
		lru_push(d, e);
		cache_trim(d);
	}
	entry_unref(e);		/* the query's reference */
	pthread_cond_broadcast(&d->answered);
	pthread_mutex_unlock(&d->lock);
}

static void *dispatcher_main(void *arg)
{
	struct dns *d = arg;
	struct pollfd pf[2];

	pf[0].fd = ub_fd(d->ctx);
	pf[0].events = POLLIN;
	pf[1].fd = d->wake[0];
	pf[1].events = POLLIN;
	for (;;) {
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			slog_errno(NULL, LOG_ERR, "dns: poll");
			sleep(1);
			continue;
		}
		if (pf[1].revents)
			return NULL;
		if (pf[0].revents) {
			int rc = ub_process(d->ctx);

			if (rc != 0) {
				slog(NULL, LOG_ERR, "dns: ub_process: %s", ub_strerror(rc));
				sleep(1);
			}
		}
	}
}

/* --- setup ----------------------------------------------------------- */

/* default local zones of libunbound that would answer NXDOMAIN on their own */
static const char *const local_zones_removed[] = {
	"test", "invalid", "home.arpa",
	"0.in-addr.arpa", "10.in-addr.arpa", "127.in-addr.arpa", "254.169.in-addr.arpa",
	"2.0.192.in-addr.arpa", "168.192.in-addr.arpa", "100.51.198.in-addr.arpa",
	"113.0.203.in-addr.arpa", "255.255.255.255.in-addr.arpa",
	"0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
	"8.b.d.0.1.0.0.2.ip6.arpa", "d.f.ip6.arpa",
	"8.e.f.ip6.arpa", "9.e.f.ip6.arpa", "a.e.f.ip6.arpa", "b.e.f.ip6.arpa",
	NULL
};

/* forwarder_add - one "ADDR[@PORT]" of dns_forwarder; 0 or -1 with err */
static int forwarder_add(struct ub_ctx *ctx, const char *spec, char *err, size_t errlen)
{
	char host[128];
	const char *at = strchr(spec, '@');
	size_t hlen = at != NULL ? (size_t)(at - spec) : strlen(spec);
	unsigned char buf[16];
	int rc;

	if (hlen == 0 || hlen >= sizeof(host)) {
		snprintf(err, errlen, "dns_forwarder: \"%s\" is not ADDR[@PORT]", spec);
		return -1;
	}
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) {
		snprintf(err, errlen, "dns_forwarder: \"%s\" is not an IPv4 or IPv6 address", host);
		return -1;
	}
	if (at != NULL) {
		char *end;
		unsigned long port = strtoul(at + 1, &end, 10);

		if (at[1] == '\0' || *end != '\0' || port == 0 || port > 65535) {
			snprintf(err, errlen, "dns_forwarder: bad port in \"%s\"", spec);
			return -1;
		}
	}
	if ((rc = ub_ctx_set_fwd(ctx, spec)) != 0) {
		snprintf(err, errlen, "dns_forwarder: %s: %s", spec, ub_strerror(rc));
		return -1;
	}
	return 0;
}

static int configure(struct ub_ctx *ctx, const struct config *cfg, char *err, size_t errlen)
{
	const char *v = cfg->dns_forwarder;
	int rc, n = 0;
	size_t i;

	if ((rc = ub_ctx_async(ctx, 1)) != 0 ||
	    (rc = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no")) != 0) {
		snprintf(err, errlen, "dns: libunbound setup: %s", ub_strerror(rc));
		return -1;
	}
	for (;;) {
		char spec[160];
		size_t len;

		v += strspn(v, " \t,");
		if ((len = strcspn(v, " \t,")) == 0)
			break;
		if (len >= sizeof(spec) || ++n > DNS_MAX_FORWARDERS) {
			snprintf(err, errlen, "dns_forwarder: at most %d entries of ADDR[@PORT]",
			    DNS_MAX_FORWARDERS);
			return -1;
		}
		memcpy(spec, v, len);
		spec[len] = '\0';
		v += len;
		if (forwarder_add(ctx, spec, err, errlen) < 0)
			return -1;
	}
	if (n == 0 && (rc = ub_ctx_resolvconf(ctx, NULL)) != 0)
		slog(NULL, LOG_WARNING, "dns: cannot read /etc/resolv.conf (%s): resolving "
		    "from the root servers", ub_strerror(rc));
	/* zone_remove finalizes the options: after every setting.  Only with
	 * forwarders of the site's choosing: towards the public DNS, queries
	 * for these zones must not leak (why libunbound has them). */
	for (i = 0; n > 0 && local_zones_removed[i] != NULL; i++)
		if ((rc = ub_ctx_zone_remove(ctx, local_zones_removed[i])) != 0
		    && rc != UB_NOID) {
			snprintf(err, errlen, "dns: removing local zone %s: %s",
			    local_zones_removed[i], ub_strerror(rc));
			return -1;
		}
	return 0;
}

struct dns *dns_new(const struct config *cfg, char *err, size_t errlen)
{
	struct dns *d = xcalloc(1, sizeof(*d));

	d->wake[0] = d->wake[1] = -1;
	pthread_mutex_init(&d->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&d->answered, &ca);
		pthread_condattr_destroy(&ca);
	}
	d->max_entries = cfg->dns_cache_size;
	d->max_bytes = cfg->dns_cache_memory > SIZE_MAX ? SIZE_MAX : (size_t)cfg->dns_cache_memory;
	for (d->nbuckets = 64; d->nbuckets < d->max_entries && d->nbuckets < (1u << 22); )
		d->nbuckets <<= 1;
	d->table = xcalloc(d->nbuckets, sizeof(*d->table));
	d->max_ttl = cfg->dns_cache_max_ttl / 1000.0;
	d->neg_ttl = cfg->dns_negative_ttl / 1000.0;
	d->fail_ttl = cfg->dns_failure_ttl / 1000.0;
	d->timeout_ms = cfg->dns_timeout;

	if ((d->ctx = ub_ctx_create()) == NULL) {
		snprintf(err, errlen, "dns: cannot create a libunbound context");
		goto fail;
	}
	if (configure(d->ctx, cfg, err, errlen) < 0)
		goto fail;
	if (pipe2(d->wake, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "dns: pipe: %s", strerror(errno));
		goto fail;
	}
	if (thread_start_blocked(&d->dispatcher, dispatcher_main, d) != 0) {
		snprintf(err, errlen, "dns: cannot start the dispatcher thread");
		goto fail;
	}
	d->dispatcher_running = 1;
	return d;
fail:
	dns_free(d);
	return NULL;
}

void dns_free(struct dns *d)
{
	size_t i;

	if (d == NULL)
		return;
	if (d->stats.lookups > 0)
		slog(NULL, LOG_INFO, "dns: lookups=%llu cache_hits=%llu timeouts=%llu failures=%llu",
		    (unsigned long long)d->stats.lookups, (unsigned long long)d->stats.cache_hits,
		    (unsigned long long)d->stats.timeouts, (unsigned long long)d->stats.failures);
	if (d->dispatcher_running) {
		ssize_t n;

		do
			n = write(d->wake[1], "x", 1);
		while (n < 0 && errno == EINTR);
		pthread_join(d->dispatcher, NULL);
	}
	if (d->ctx != NULL)
		ub_ctx_delete(d->ctx);	/* queries in flight die without a callback */
	for (i = 0; d->table != NULL && i < d->nbuckets; i++) {
		struct dns_entry *e = d->table[i], *next;

		for (; e != NULL; e = next) {
			next = e->hnext;
			free(e->name);
			dns_reply_free(e->reply);
			free(e);
		}
	}
	free(d->table);
	if (d->wake[0] >= 0)
		close(d->wake[0]);
	if (d->wake[1] >= 0)
		close(d->wake[1]);
	pthread_cond_destroy(&d->answered);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* --- lookups --------------------------------------------------------- */

/* normalize - name in canonical form (put_byte), without the final dot:
 * the cache key and what libunbound is asked.  The input is raw bytes,
 * '.' between labels, "\DDD" or "\X" standing for one byte (as in names
 * from replies).  0, or -1 for an empty label, a label over 63 bytes, a
 * name over 253 bytes (the wire limit of 255 with its length bytes). */
static int normalize(const char *name, char *out, size_t outsz)
{
	size_t n = strlen(name), i, o = 0, label = 0, wire = 0;

	if (n > 0 && name[n - 1] == '.' && (n < 2 || name[n - 2] != '\\'))
		n--;
	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '.') {
			if (label == 0)
				return -1;	/* empty label */
			label = 0;
			wire++;
			if (o + 1 >= outsz)
				return -1;
			out[o++] = '.';
			continue;
		}
		if (c == '\\' && i + 3 < n && isdigit((unsigned char)name[i + 1])
		    && isdigit((unsigned char)name[i + 2]) && isdigit((unsigned char)name[i + 3])) {
			unsigned v = (unsigned)(name[i + 1] - '0') * 100
			    + (unsigned)(name[i + 2] - '0') * 10 + (unsigned)(name[i + 3] - '0');

			if (v > 255)
				return -1;
			c = (unsigned char)v;
			i += 3;
		} else if (c == '\\' && i + 1 < n) {
			c = (unsigned char)name[++i];
		}
		if (++label > 63 || ++wire > DNS_NAME_MAX || o + 5 >= outsz)
			return -1;
		o += put_byte(out + o, c);
	}
	if (label == 0)
		return -1;
	out[o] = '\0';
	return 0;
}

static void deadline_at(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* start_query - a new in-flight entry for (key, rrtype) in the cache and
 * its query; with the lock held (released around ub_resolve_async, which
 * may block on its pipe while the dispatcher needs the lock).  The entry
 * holds the cache's and the query's reference plus waiter_refs.  NULL
 * when DNS_MAX_INFLIGHT queries are out; if the query cannot start the
 * entry is answered SERVFAIL at once (not kept). */
static struct dns_entry *start_query(struct dns *d, const char *key, int rrtype, uint32_t h,
                                     double now, unsigned waiter_refs)
{
	struct dns_entry *e;
	int rc, async_id;

	if (d->inflight >= DNS_MAX_INFLIGHT) {
		d->stats.failures++;
		if (!d->inflight_logged) {
			d->inflight_logged = 1;
			slog(NULL, LOG_WARNING, "dns: %d queries in flight, failing new "
			    "ones (the resolver is not answering?)", DNS_MAX_INFLIGHT);
		}
		return NULL;
	}
	d->inflight_logged = 0;
	e = xcalloc(1, sizeof(*e));
	e->hash = h;
	e->rrtype = rrtype;
	e->name = xstrdup(key);
	e->d = d;
	e->refs = 2 + waiter_refs;	/* cache, query, waiters */
	e->in_cache = 1;
	e->started = now;
	e->hnext = d->table[h & (d->nbuckets - 1)];
	d->table[h & (d->nbuckets - 1)] = e;
	d->inflight++;
	pthread_mutex_unlock(&d->lock);
	rc = ub_resolve_async(d->ctx, key, rrtype, 1 /* IN */, e, on_answer, &async_id);
	pthread_mutex_lock(&d->lock);
	if (rc != 0) {
		slog(NULL, LOG_WARNING, "dns: query %s/%d: %s", key, rrtype, ub_strerror(rc));
		d->inflight--;
		d->stats.failures++;
		e->reply = reply_new(DNS_SERVFAIL, rrtype);
		e->expires = now;	/* not kept */
		e->refs--;		/* no callback will come */
		cache_remove(d, e);
		pthread_cond_broadcast(&d->answered);
		if (waiter_refs == 0)
			return NULL;	/* cache_remove may have freed it */
	}
	return e;
}

/* dns_prefetch - start the query for (name, rrtype) unless an answer
 * whose TTL still runs is cached or a query for it is out; never waits.  A later dns_lookup of
 * the name waits for that query (for the time left of its timeout,
 * counted from the prefetch), so the names a message will need go out
 * together instead of one after another. */
void dns_prefetch(struct dns *d, const char *name, int rrtype)
{
	char key[DNS_NAME_MAX * 4 + 8];
	struct dns_entry *e;
	uint32_t h;
	double now;

	if (d == NULL || name == NULL || normalize(name, key, sizeof(key)) < 0 || rrtype <= 0
	    || rrtype > 65535)
		return;
	h = key_hash(key, rrtype);
	now = now_mono();
	pthread_mutex_lock(&d->lock);
	e = cache_find(d, key, rrtype, h);
	if (e != NULL && e->reply != NULL && e->expires <= now) {
		/* its TTL ran out: asked again, even while an earlier
		 * prefetch's dns_timeout still runs.  Kept (and its use pushed
		 * on below), a name prefetched by message after message was
		 * never asked again, its TTL never honoured. */
		cache_remove(d, e);
		e = NULL;
	}
	if (e == NULL) {
		d->stats.prefetches++;
		start_query(d, key, rrtype, h, now, 0);
		/* found again: its answer may have come, and the entry gone with
		 * a cache trim, while start_query let go of the lock */
		e = cache_find(d, key, rrtype, h);
	}
	if (e != NULL && e->prefetched_until < now + d->timeout_ms / 1000.0)
		e->prefetched_until = now + d->timeout_ms / 1000.0;
	pthread_mutex_unlock(&d->lock);
}

struct dns_reply *dns_lookup(struct dns *d, const char *name, int rrtype, unsigned timeout_ms)
{
	char key[DNS_NAME_MAX * 4 + 8];
	struct dns_entry *e;
	struct dns_reply *r = NULL;
	struct timespec deadline;
	uint32_t h;
	double now;
	long long left;
	unsigned wait_ms;
	int rc, capped;

	if (d == NULL)
		return reply_new(DNS_SERVFAIL, rrtype);
	if (name == NULL || normalize(name, key, sizeof(key)) < 0 || rrtype <= 0 || rrtype > 65535) {
		pthread_mutex_lock(&d->lock);
		d->stats.lookups++;
		pthread_mutex_unlock(&d->lock);
		return reply_new(DNS_BADNAME, rrtype);
	}
	if (timeout_ms == 0)
		timeout_ms = d->timeout_ms;
	/* the scan's deadline may leave less: then the wait is cut short, but
	 * the query is not given up for the other messages that wait on it */
	left = deadline_left_ms();
	wait_ms = left >= 0 && left < (long long)timeout_ms ? (unsigned)left : timeout_ms;
	capped = wait_ms < timeout_ms;
	deadline_at(&deadline, wait_ms);
	h = key_hash(key, rrtype);
	now = now_mono();

	pthread_mutex_lock(&d->lock);
	d->stats.lookups++;
	e = cache_find(d, key, rrtype, h);
	if (e != NULL && e->reply != NULL) {
		if (usable_until(e) > now) {
			d->stats.cache_hits++;
			lru_unlink(d, e);
			lru_push(d, e);
			r = reply_copy(e->reply, ttl_left(e, now));
			pthread_mutex_unlock(&d->lock);
			return r;
		}
		cache_remove(d, e);	/* expired */
		e = NULL;
	}
	if (e != NULL && e->given_up) {
		/* in flight, and someone already waited it out: do not wait again */
		d->stats.timeouts++;
		pthread_mutex_unlock(&d->lock);
		deadline_timed_out("dns_timeout");
		return reply_new(DNS_TIMEOUT, rrtype);
	}
	if (wait_ms == 0) {
		/* no time left to wait for an answer: no query either */
		d->stats.timeouts++;
		pthread_mutex_unlock(&d->lock);
		deadline_timed_out("dns_timeout");
		return reply_new(DNS_TIMEOUT, rrtype);
	}
	if (e == NULL) {
		if ((e = start_query(d, key, rrtype, h, now, 1)) == NULL) {
			pthread_mutex_unlock(&d->lock);
			return reply_new(DNS_SERVFAIL, rrtype);
		}
	} else {
		/* a query already out (another lookup's, or a prefetch) gets the
		 * time it has left, counted from when it went out: a name
		 * prefetched at the start of a message and dropped by its
		 * server times out once for the message, not again for each
		 * filter that asks */
		double until = e->started + timeout_ms / 1000.0;
		unsigned own;

		if (until <= now) {
			e->given_up = 1;
			d->stats.timeouts++;
			pthread_mutex_unlock(&d->lock);
			deadline_timed_out("dns_timeout");
			return reply_new(DNS_TIMEOUT, rrtype);
		}
		own = (unsigned)((until - now) * 1000.0 + 0.5);
		capped = wait_ms < own;
		deadline_at(&deadline, capped ? wait_ms : own);
		e->refs++;
	}
	while (e->reply == NULL) {
		rc = pthread_cond_timedwait(&d->answered, &d->lock, &deadline);
		if (rc == ETIMEDOUT && e->reply == NULL) {
			if (!capped)
				e->given_up = 1;
			d->stats.timeouts++;
			entry_unref(e);
			pthread_mutex_unlock(&d->lock);
			deadline_timed_out("dns_timeout");
			return reply_new(DNS_TIMEOUT, rrtype);
		}
	}
	now = now_mono();
	r = reply_copy(e->reply, ttl_left(e, now));
	entry_unref(e);
	pthread_mutex_unlock(&d->lock);
	return r;
}

void dns_stats(struct dns *d, struct dns_stats *out)
{
	if (d == NULL) {
		memset(out, 0, sizeof(*out));
		return;
	}
	pthread_mutex_lock(&d->lock);
	*out = d->stats;
	pthread_mutex_unlock(&d->lock);
}

int dns_reverse_name(const char *ip, char *out, size_t outsz)
{
	unsigned char a[16];
	size_t o = 0;
	int i;

	if (ip == NULL)
		return -1;
	if (inet_pton(AF_INET, ip, a) == 1) {
		int n = snprintf(out, outsz, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);

		return n > 0 && (size_t)n < outsz ? 0 : -1;
	}
	if (inet_pton(AF_INET6, ip, a) != 1)
		return -1;
	if (outsz < 16 * 4 + sizeof("ip6.arpa"))
		return -1;
	for (i = 15; i >= 0; i--) {
		static const char hex[] = "0123456789abcdef";

		out[o++] = hex[a[i] & 0xf];
		out[o++] = '.';
		out[o++] = hex[a[i] >> 4];
		out[o++] = '.';
	}
	memcpy(out + o, "ip6.arpa", sizeof("ip6.arpa"));
	return 0;
}
