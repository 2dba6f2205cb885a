/* rules_net.c - DNS lookups for eval: rules (see rules_net.h). */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "filters/builtin.h"
#include "filters/dns.h"
#include "filters/rules_net.h"
#include "proxy/sbuf.h"
#include "proxy/thread.h"
#include "rules/eval_net.h"
#include "rules/rules.h"

struct net_q {
	char    *name;             /* lower case, no final dot */
	int      type;             /* DNS_T_* */
	int      list;             /* a blocklist query (EVAL_NET_LIST) */
	uint32_t hash;
	struct dns_reply *reply;   /* NULL until looked up (or no time left) */
	char    *answer;           /* formatted for the facts; NULL = unknown */
	char     status[12];
};

struct rules_net {
	struct net_q *q;
	size_t n, cap;
	size_t first_new;          /* the current round's queries start here */
	int    overflow;           /* more wanted than RULES_NET_MAX_QUERIES */
	/* a round's workers */
	pthread_mutex_t lock;
	size_t next;
	struct dns *dns;
	struct timespec deadline;
};

static uint32_t key_hash(const char *s, int type)
{
	uint32_t h = 2166136261u ^ (uint32_t)type;
	for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static struct net_q *find(struct rules_net *n, const char *name, int type)
{
	uint32_t h = key_hash(name, type);
	for (size_t i = 0; i < n->n; i++)
		if (n->q[i].hash == h && n->q[i].type == type && strcmp(n->q[i].name, name) == 0) return &n->q[i];
	return NULL;
}

static void want(void *arg, const char *qname, int rrtype)
{
	struct rules_net *n = arg;
	char name[300];
	size_t len = strlen(qname);
	int type = EVAL_NET_RRTYPE(rrtype);
	if (len == 0 || len >= sizeof name) return;
	for (size_t i = 0; i <= len; i++) name[i] = (char)((qname[i] >= 'A' && qname[i] <= 'Z') ? qname[i] + 32 : qname[i]);
	while (len && name[len - 1] == '.') name[--len] = '\0';
	struct net_q *had;
	if (!len) return;
	if ((had = find(n, name, type)) != NULL) {
		/* asked before, maybe not as a list's: its answers are list codes now */
		had->list |= (rrtype & EVAL_NET_LIST) != 0;
		return;
	}
	if (n->n >= RULES_NET_MAX_QUERIES) { n->overflow = 1; return; }
	if (n->n == n->cap) {
		n->cap = n->cap ? n->cap * 2 : 32;
		n->q = realloc(n->q, n->cap * sizeof *n->q);
		if (!n->q) abort();
	}
	struct net_q *q = &n->q[n->n++];
	memset(q, 0, sizeof *q);
	q->name = strdup(name);
	if (!q->name) abort();
	q->type = type;
	q->list = (rrtype & EVAL_NET_LIST) != 0;
	q->hash = key_hash(name, type);
	/* a list's TXT comes with its A answer, which says whether the query
	 * was refused (Spamhaus answers 127.255.255.254 and a TXT "Error: open
	 * resolver..."): asked in the same round, so format_round can tell */
	if (q->list && type == DNS_T_TXT)
		want(arg, name, DNS_T_A | EVAL_NET_LIST);
}

/* list_refused - the A answer of this list name says "query refused or
 * resolver blocked" (not a listing)?  That A answer is counted (and
 * logged) where it is read (format_round) */
static int list_refused(struct rules_net *n, const struct ruleset *rs, const char *name)
{
	const struct net_q *q = find(n, name, DNS_T_A);

	if (q == NULL || q->reply == NULL || q->reply->status != DNS_OK)
		return 0;
	for (size_t k = 0; k < q->reply->count; k++)
		if (eval_net_verdict(rs, q->name, q->reply->rr[k].addr) == DNSBL_REFUSED)
			return 1;
	return 0;
}

static long ms_left(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (deadline->tv_sec - now.tv_sec) * 1000L + (deadline->tv_nsec - now.tv_nsec) / 1000000L;
}

static void *worker(void *arg)
{
	struct rules_net *n = arg;
	for (;;) {
		pthread_mutex_lock(&n->lock);
		size_t i = n->next < n->n ? n->next++ : n->n;
		pthread_mutex_unlock(&n->lock);
		if (i >= n->n) break;
		long left = ms_left(&n->deadline);
		if (left <= 0) continue;            /* no time left: unanswered */
		n->q[i].reply = dns_lookup(n->dns, n->q[i].name, n->q[i].type, (unsigned)left);
	}
	return NULL;
}

/* look up this round's new queries in parallel */
static void run_round(struct rules_net *n)
{
	size_t todo = n->n - n->first_new;
	if (!todo) return;
	n->next = n->first_new;
	size_t nthreads = todo < RULES_NET_THREADS ? todo : RULES_NET_THREADS;
	pthread_t th[RULES_NET_THREADS];
	size_t started = 0;
	for (size_t i = 1; i < nthreads; i++)
		if (thread_start_blocked(&th[started], worker, n) == 0) started++;
	worker(n);                               /* this thread works too */
	for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
}

static const char *status_name(enum dns_status st)
{
	switch (st) {
	case DNS_OK: return "OK";
	case DNS_NXDOMAIN: return "NXDOMAIN";
	case DNS_NODATA: return "NODATA";
	case DNS_SERVFAIL: return "SERVFAIL";
	case DNS_TIMEOUT: return "TIMEOUT";
	case DNS_BADNAME: return "NXDOMAIN";
	}
	return "SERVFAIL";
}

/* what the message's lookups came to, for one log line each at the end
 * (with a list that refuses us, a line per answer was one per URI domain) */
struct net_tally {
	unsigned timeouts;
	unsigned blocked;              /* "query refused" codes */
	unsigned bogus;                /* answers outside 127/8 */
	char first_blocked[400], first_bogus[400];
};

/* turn this round's replies into fact text; blocklist codes that are not
 * listings are counted in t and left out */
static void format_round(struct rules_net *n, const struct ruleset *rs, struct net_tally *t)
{
	for (size_t i = n->first_new; i < n->n; i++) {
		struct net_q *q = &n->q[i];
		const struct dns_reply *r = q->reply;
		if (!r) { snprintf(q->status, sizeof q->status, "TIMEOUT"); t->timeouts++; continue; }
		snprintf(q->status, sizeof q->status, "%s", status_name(r->status));
		if (r->status == DNS_TIMEOUT || r->status == DNS_SERVFAIL) {
			if (r->status == DNS_TIMEOUT) t->timeouts++;
			continue;                        /* answer unknown */
		}
		if (q->type == DNS_T_TXT && q->list && r->status == DNS_OK && list_refused(n, rs, q->name)) {
			/* its text is the refusal's, not a listing's (the A answer
			 * that says so is the one logged and counted) */
			q->answer = strdup("");
			if (!q->answer) abort();
			continue;
		}
		struct sbuf b;
		sbuf_init(&b, 3 * 64 * 1024);          /* a 64 KiB answer, escaped (eval_net_txt_escape) */
		for (size_t k = 0; r->status == DNS_OK && k < r->count; k++) {
			const struct dns_rr *rr = &r->rr[k];
			char txt[INET6_ADDRSTRLEN];
			const char *item = NULL;
			char *txt_line = NULL;
			size_t ilen = 0;
			if (q->type == DNS_T_A) {
				if (q->list) {
					enum dnsbl_verdict v = eval_net_verdict(rs, q->name, rr->addr);
					inet_ntop(AF_INET, rr->addr, txt, sizeof txt);
					if (v == DNSBL_REFUSED) {
						if (t->blocked++ == 0)
							snprintf(t->first_blocked, sizeof t->first_blocked, "%s answered %s", q->name, txt);
						continue;
					}
					if (v == DNSBL_BOGUS) {
						if (t->bogus++ == 0)
							snprintf(t->first_bogus, sizeof t->first_bogus, "%s answered %s", q->name, txt);
						continue;
					}
				} else {
					inet_ntop(AF_INET, rr->addr, txt, sizeof txt);
				}
				item = txt;
				ilen = strlen(txt);
			} else if (q->type == DNS_T_TXT) {
				/* the whole text, line breaks and NULs in it too, as
				 * one escaped line: not cut into several answers */
				txt_line = xmalloc(2 * rr->text_len + 1);
				ilen = eval_net_txt_escape(rr->text ? rr->text : "", rr->text ? rr->text_len : 0, txt_line);
				item = txt_line;
			} else if (rr->name) {
				item = rr->name;
				ilen = strlen(item);
			}
			if (!item) continue;
			if (b.len) sbuf_add(&b, q->type == DNS_T_TXT ? "\n" : " ", 1);
			sbuf_add(&b, item, ilen);
			free(txt_line);
		}
		q->answer = strndup(b.data ? b.data : "", b.len);
		if (!q->answer) abort();
		sbuf_free(&b);
	}
}

struct partial { struct rules_net *n; const struct rules_input *orig; };

static const char *partial_fact(void *arg, const char *key)
{
	struct partial *p = arg;
	if (strncmp(key, "dns:", 4) == 0) return rules_net_answer(p->n, key);
	return p->orig->fact ? p->orig->fact(p->orig->fact_arg, key) : NULL;
}

struct rules_net *rules_net_resolve(struct mw_ctx *ctx, struct dns *dns, const struct ruleset *rs,
                                    struct rules_scratch *scr, const struct rules_input *in, unsigned timeout_ms)
{
	if (!dns) return NULL;
	struct rules_net *n = calloc(1, sizeof *n);
	if (!n) abort();
	pthread_mutex_init(&n->lock, NULL);
	n->dns = dns;
	clock_gettime(CLOCK_MONOTONIC, &n->deadline);
	n->deadline.tv_sec += timeout_ms / 1000;
	n->deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (n->deadline.tv_nsec >= 1000000000L) { n->deadline.tv_sec++; n->deadline.tv_nsec -= 1000000000L; }
	/* the rules ask again with what is known so far, until nothing new */
	struct partial p = { n, in };
	struct rules_input in2 = *in;
	in2.fact = partial_fact;
	in2.fact_arg = &p;
	struct net_tally t = { 0 };
	int rounds = 0;
	for (int round = 0; round < RULES_NET_MAX_ROUNDS; round++) {
		n->first_new = n->n;
		rules_net_queries(rs, scr, &in2, want, n);
		if (n->n == n->first_new) break;
		run_round(n);
		rounds++;
		format_round(n, rs, &t);
		if (ms_left(&n->deadline) <= 0) break;
	}
	if (n->n)
		mw_log(ctx, LOG_DEBUG, "rules: %zu DNS lookups in %d rounds, %ld ms", n->n, rounds,
		       (long)timeout_ms - ms_left(&n->deadline));
	if (n->overflow)
		mw_log(ctx, LOG_INFO, "rules: more than %d DNS lookups wanted; the rest not asked", RULES_NET_MAX_QUERIES);
	if (t.timeouts) {
		mw_log(ctx, LOG_WARNING, "rules: %u of %zu DNS lookups unanswered within %u ms", t.timeouts, n->n, timeout_ms);
		mw_symbol(ctx, "RULES_DNS_TIMEOUT", 0, "%u DNS lookups of network rules unanswered", t.timeouts);
	}
	if (t.blocked) {
		mw_log(ctx, LOG_WARNING, "rules: %u blocklist answers meant query refused or resolver blocked, "
		       "not a listing (first %s)", t.blocked, t.first_blocked);
		mw_symbol(ctx, "RULES_DNS_BLOCKED", 0, "%u blocklist answers meant query refused", t.blocked);
	}
	if (t.bogus)
		mw_log(ctx, LOG_INFO, "rules: %u blocklist answers outside 127.0.0.0/8 ignored (first %s)", t.bogus,
		       t.first_bogus);
	if (!n->n) { rules_net_free(n); return NULL; }
	return n;
}

const char *rules_net_answer(struct rules_net *n, const char *key)
{
	if (!n || strncmp(key, "dns:", 4) != 0) return NULL;
	const char *p = key + 4;
	int status = 0;
	if (strncmp(p, "status:", 7) == 0) { status = 1; p += 7; }
	static const struct { const char *name; int type; } types[] = {
		{ "A:", DNS_T_A }, { "TXT:", DNS_T_TXT }, { "NS:", DNS_T_NS }, { "MX:", DNS_T_MX }, { "AAAA:", DNS_T_AAAA },
	};
	for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
		size_t l = strlen(types[t].name);
		if (strncmp(p, types[t].name, l) != 0) continue;
		char name[300];
		size_t len = strlen(p + l);
		if (!len || len >= sizeof name) return NULL;
		for (size_t i = 0; i <= len; i++) name[i] = (char)((p[l + i] >= 'A' && p[l + i] <= 'Z') ? p[l + i] + 32 : p[l + i]);
		while (len && name[len - 1] == '.') name[--len] = '\0';
		const struct net_q *q = find(n, name, types[t].type);
		if (!q || !q->status[0]) return NULL;
		return status ? q->status : q->answer;
	}
	return NULL;
}

void rules_net_free(struct rules_net *n)
{
	if (!n) return;
	for (size_t i = 0; i < n->n; i++) {
		free(n->q[i].name);
		free(n->q[i].answer);
		if (n->q[i].reply) dns_reply_free(n->q[i].reply);
	}
	free(n->q);
	pthread_mutex_destroy(&n->lock);
	free(n);
}
