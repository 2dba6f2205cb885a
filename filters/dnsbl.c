/* dnsbl.c - the built-in "dnsbl" filter: DNS blocklists.
 *
 * Each "dnsbl_list" line names a zone, what is looked up in it, and what
 * its answers mean:
 *   dnsbl_list = zen.spamhaus.org ip 127.0.0.2=RCVD_IN_SBL:3.0 127.0.0.4/30=RCVD_IN_XBL:3.0
 *   dnsbl_list = dbl.spamhaus.org domain 127.0.1.2=DBL_SPAM:2.5 127.0.1.4/30=DBL_MALWARE:4
 *   dnsbl_list = multi.uribl.com uri &2=URIBL_BLACK:3 &4=URIBL_GREY:1 error=127.0.0.1
 * Kinds: ip (the client's address, reversed: 2.0.0.127.zone), uri (the
 * registrable domains of the URIs in the text parts), sender (of the
 * envelope sender and the From field), domain (uri and sender).  A code is
 * an address, a CIDR range, "&N" (bit mask on the last octet, URIBL
 * style) or "*" (any other listing); one answer may give several symbols.
 *
 * Answers that are not listings are recognised, logged and never scored:
 * 127.255.255.0/24 (Spamhaus: query refused, public/open resolver,
 * excessive use), 127.0.1.255 for domain lists (Spamhaus DBL: IP queries
 * refused), "error=CODE" codes of the list (URIBL's 127.0.0.1 "query
 * blocked"), and anything outside 127.0.0.0/8 (a resolver that rewrites
 * NXDOMAIN).  They, and timeouts and server failures, give a DNSBL_BLOCKED
 * / DNSBL_TIMEOUT symbol of score 0 for the audit log and one log line per
 * list and message, with a count (a message with 200 URI domains and a
 * list that refuses us would otherwise write 200 identical lines).
 *
 * A name that fails (SERVFAIL, timeout) does not end its list's lookups
 * for the message: the other names are still read, as SpamAssassin and
 * rspamd do (one failing name before the listed one must not hide it).
 * A dead list still costs one dnsbl_timeout for the message, not one per
 * name: every name goes out at once before the first answer is read, and
 * a lookup of a name in flight waits only what is left of the timeout
 * since it went out (dns.h, dns_prefetch).
 *
 * Private and loopback client addresses are not looked up.
 */
#include <arpa/inet.h>
#include <glib.h>
#include <idn2.h>
#include <stdint.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "filters/addrlist.h"
#include "filters/builtin.h"
#include "filters/dns.h"
#include "filters/filter_api.h"
#include "filters/ipnet.h"
#include "filters/mime.h"
#include "proxy/episode.h"
#include "proxy/sbuf.h"
#include "proxy/smtp_parse.h"
#include "proxy/utf8.h"
#include "rules/dnsbl_code.h"
#include "rules/rules.h"

#define MAX_CODES 32
#define MAX_DOMAINS_CAP 1000

enum code_kind { CODE_NET, CODE_MASK, CODE_ANY };

struct code {
	enum code_kind kind;
	struct ipnet net;              /* CODE_NET */
	unsigned mask;                 /* CODE_MASK */
	char   symbol[64];
	double score;
	int    error;                  /* an "error=" code: never a listing */
};

enum { LOOK_IP = 1, LOOK_URI = 2, LOOK_SENDER = 4 };

/* How often a list's trouble that lasts is told again: a blocked
 * resolver (Spamhaus 127.255.255.254) refuses every message's lookups,
 * and one warning per message and list was 86,400 identical lines a day
 * at one message a second. */
#define DNSBL_TROUBLE_LOG_MS (3600 * 1000LL)

/* what one list's lookups came to lately, told in the log when it
 * starts, every DNSBL_TROUBLE_LOG_MS while it lasts and when it ends
 * (episode.h); the messages' DNSBL_BLOCKED / DNSBL_TIMEOUT symbols are
 * each message's.  Shared by the scanner threads: under lock. */
struct list_trouble {
	pthread_mutex_t lock;
	struct episode refused;        /* its count: messages refused */
	struct episode unanswered;     /* its count: messages with names unanswered */
};

struct dnslist {
	char   zone[256];
	unsigned what;                 /* LOOK_* */
	struct code codes[MAX_CODES];
	size_t ncodes;
	int    uri_ips;                /* "uri_ips=yes": IPv4-literal URI hosts asked, reversed */
	struct list_trouble *trouble;  /* owned */
};

struct dnsbl {
	const struct config *cfg;
	struct dns *dns;
	const psl_ctx_t *psl;
	struct dnslist *lists;
	size_t nlists;
};

static int parse_code(const char *w, struct code *c, char *err, size_t errlen)
{
	const char *eq, *colon;
	char codetxt[64];
	char *end;

	memset(c, 0, sizeof(*c));
	if (strncmp(w, "error=", 6) == 0) {
		c->error = 1;
		snprintf(codetxt, sizeof(codetxt), "%s", w + 6);
	} else {
		eq = strchr(w, '=');
		colon = eq ? strchr(eq, ':') : NULL;
		if (eq == NULL || (size_t)(eq - w) >= sizeof(codetxt)) {
			snprintf(err, errlen, "\"%s\" is not CODE=SYMBOL:SCORE or error=CODE", w);
			return -1;
		}
		snprintf(codetxt, sizeof(codetxt), "%.*s", (int)(eq - w), w);
		if (colon == NULL || colon == eq + 1 || (size_t)(colon - eq - 1) >= sizeof(c->symbol)) {
			snprintf(err, errlen, "\"%s\": symbol and score expected after '='", w);
			return -1;
		}
		snprintf(c->symbol, sizeof(c->symbol), "%.*s", (int)(colon - eq - 1), eq + 1);
		for (const char *p = c->symbol; *p; p++)
			if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')) {
				snprintf(err, errlen, "symbol \"%s\": only A-Z 0-9 _", c->symbol);
				return -1;
			}
		c->score = strtod(colon + 1, &end);
		if (*end != '\0' || colon[1] == '\0') {
			snprintf(err, errlen, "\"%s\": bad score", w);
			return -1;
		}
	}
	if (strcmp(codetxt, "*") == 0 && !c->error)
		c->kind = CODE_ANY;
	else if (codetxt[0] == '&') {
		c->kind = CODE_MASK;
		c->mask = (unsigned)strtoul(codetxt + 1, &end, 0);
		if (*end != '\0' || codetxt[1] == '\0' || c->mask == 0 || c->mask > 255) {
			snprintf(err, errlen, "\"%s\": bad bit mask", codetxt);
			return -1;
		}
	} else if (ipnet_parse(codetxt, &c->net) == 0 && c->net.family == 4)
		c->kind = CODE_NET;
	else {
		snprintf(err, errlen, "\"%s\" is not an IPv4 address, range, &MASK or *", codetxt);
		return -1;
	}
	return 0;
}

static int parse_list(const char *line, struct dnslist *l, char *err, size_t errlen)
{
	char buf[1024], *save = NULL, *w, e[256];
	int n = 0;

	memset(l, 0, sizeof(*l));
	snprintf(buf, sizeof(buf), "%s", line);
	for (w = strtok_r(buf, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save), n++) {
		if (n == 0) {
			size_t len = strlen(w);

			if (len == 0 || len > 200 || w[0] == '.' || strspn(w, "abcdefghijklmnopqrstuvwxyz"
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") != len) {
				snprintf(err, errlen, "dnsbl_list: \"%s\" is not a zone name", w);
				return -1;
			}
			snprintf(l->zone, sizeof(l->zone), "%s", w);
			if (l->zone[len - 1] == '.')
				l->zone[len - 1] = '\0';
		} else if (n == 1) {
			if (strcmp(w, "ip") == 0) l->what = LOOK_IP;
			else if (strcmp(w, "uri") == 0) l->what = LOOK_URI;
			else if (strcmp(w, "sender") == 0) l->what = LOOK_SENDER;
			else if (strcmp(w, "domain") == 0) l->what = LOOK_URI | LOOK_SENDER;
			else {
				snprintf(err, errlen, "dnsbl_list %s: kind \"%s\" is not ip, uri, sender or domain",
				    l->zone, w);
				return -1;
			}
		} else if (strncmp(w, "uri_ips=", 8) == 0) {
			if (strcmp(w + 8, "yes") != 0 && strcmp(w + 8, "no") != 0) {
				snprintf(err, errlen, "dnsbl_list %s: \"%s\": uri_ips=yes or uri_ips=no", l->zone, w);
				return -1;
			}
			l->uri_ips = strcmp(w + 8, "yes") == 0;
			n--;             /* not a code: the codes are still required */
		} else {
			if (l->ncodes == MAX_CODES) {
				snprintf(err, errlen, "dnsbl_list %s: more than %d codes", l->zone, MAX_CODES);
				return -1;
			}
			if (parse_code(w, &l->codes[l->ncodes], e, sizeof(e)) < 0) {
				snprintf(err, errlen, "dnsbl_list %s: %s", l->zone, e);
				return -1;
			}
			l->ncodes++;
		}
	}
	if (l->uri_ips && !(l->what & LOOK_URI)) {
		snprintf(err, errlen, "dnsbl_list %s: uri_ips=yes needs a uri or domain list", l->zone);
		return -1;
	}
	if (n < 3) {
		snprintf(err, errlen, "dnsbl_list \"%s\": ZONE ip|uri|sender|domain CODE=SYMBOL:SCORE... expected",
		    line);
		return -1;
	}
	return 0;
}

static void dnsbl_fini(void *instance)
{
	struct dnsbl *b = instance;

	if (b == NULL)
		return;
	for (size_t i = 0; i < b->nlists; i++)
		if (b->lists[i].trouble != NULL) {
			pthread_mutex_destroy(&b->lists[i].trouble->lock);
			free(b->lists[i].trouble);
		}
	free(b->lists);
	free(b);
}

static int dnsbl_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	struct dnsbl *b = xcalloc(1, sizeof(*b));
	const struct config *cfg = env->cfg;

	b->cfg = cfg;
	b->dns = env->dns;
	if (b->dns == NULL) {
		snprintf(err, errlen, "the DNS layer is not available");
		free(b);
		return -1;
	}
	b->psl = psl_builtin();
	if (b->psl == NULL)
		b->psl = psl_latest(NULL);
	b->lists = xcalloc(cfg->ndnsbl_lists ? cfg->ndnsbl_lists : 1, sizeof(*b->lists));
	for (unsigned i = 0; i < cfg->ndnsbl_lists; i++) {
		struct dnslist *l = &b->lists[b->nlists++];

		if (parse_list(cfg->dnsbl_lists[i], l, err, errlen) < 0) {
			dnsbl_fini(b);
			return -1;
		}
		l->trouble = xcalloc(1, sizeof(*l->trouble));
		pthread_mutex_init(&l->trouble->lock, NULL);
		l->trouble->refused.every_ms = l->trouble->unanswered.every_ms = DNSBL_TROUBLE_LOG_MS;
	}
	*instance = b;
	return 0;
}

/* reversed - the client address as a DNSBL owner prefix, or -1 when it
 * is not to be looked up (invalid, private, loopback, shared: no list
 * holds them, and the query would tell the list's operator about hosts
 * that are no business of theirs) */
static int reversed(const char *ip, char *out, size_t outsz)
{
	static const char *const skip[] = {
		"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
		"0.0.0.0/8", "100.64.0.0/10" /* carrier-grade NAT, RFC 6598 */,
		"::1/128", "fc00::/7", "fe80::/10", "::/128", NULL
	};
	struct ipnet a, n;
	char name[128], *suffix;

	if (ipnet_parse(ip, &a) < 0)
		return -1;
	for (size_t i = 0; skip[i]; i++)
		if (ipnet_parse(skip[i], &n) == 0 && ipnet_contains(&n, &a))
			return -1;
	if (dns_reverse_name(ip, name, sizeof(name)) < 0)
		return -1;
	suffix = strstr(name, a.family == 4 ? ".in-addr.arpa" : ".ip6.arpa");
	if (suffix != NULL)
		*suffix = '\0';
	snprintf(out, outsz, "%s", name);
	return 0;
}

/* what one list's lookups for this message came to, for its one summary */
struct tally {
	unsigned asked;
	unsigned refused;              /* answers that mean "query refused" */
	unsigned timeouts, failures;   /* names unanswered: DNS_TIMEOUT, DNS_SERVFAIL */
	char refused_first[300];       /* the first refusal: code, what, item */
	char failed_first[300];        /* the first name unanswered */
};

/* answer - act on one answer address of list l for what; returns 1 if it
 * was a listing.  A refusal sets *refusal (t->refused counts lookups, as
 * t->asked does: two refusal records answer one lookup) and the tally's
 * first refusal. */
static int answer(struct mw_ctx *ctx, const struct dnslist *l, const unsigned char *addr,
                  const char *what, const char *item, struct tally *t, int *refusal)
{
	struct ipnet a;
	char txt[INET_ADDRSTRLEN];
	int listed = 0, any_specific = 0;
	size_t i;

	memset(&a, 0, sizeof(a));
	a.family = 4;
	a.bits = 32;
	memcpy(a.addr, addr, 4);
	inet_ntop(AF_INET, addr, txt, sizeof(txt));
	/* not listings: the list's error codes, the refused/blocked range,
	 * DBL's "IP queries refused", anything outside 127/8 */
	for (i = 0; i < l->ncodes; i++)
		if (l->codes[i].error && ((l->codes[i].kind == CODE_NET && ipnet_contains(&l->codes[i].net, &a))
		    || (l->codes[i].kind == CODE_MASK && (addr[3] & l->codes[i].mask))))
			goto blocked;
	if (dnsbl_code_verdict(addr, !(l->what & LOOK_IP)) != DNSBL_LISTING)
		goto blocked;
	for (i = 0; i < l->ncodes; i++) {
		const struct code *c = &l->codes[i];

		if (c->error || c->kind == CODE_ANY)
			continue;
		if ((c->kind == CODE_NET && ipnet_contains(&c->net, &a))
		    || (c->kind == CODE_MASK && (addr[3] & c->mask))) {
			mw_symbol(ctx, c->symbol, c->score, "%s %s listed in %s (%s)", what, item, l->zone, txt);
			listed = any_specific = 1;
		}
	}
	if (!any_specific)
		for (i = 0; i < l->ncodes; i++)
			if (l->codes[i].kind == CODE_ANY && !l->codes[i].error) {
				mw_symbol(ctx, l->codes[i].symbol, l->codes[i].score, "%s %s listed in %s (%s)",
				    what, item, l->zone, txt);
				listed = 1;
			}
	return listed;
blocked:
	if (t->refused == 0 && !*refusal)
		snprintf(t->refused_first, sizeof(t->refused_first), "%s for %s %s", txt, what, item);
	*refusal = 1;
	return 0;
}

/* trouble_step - this message's part in one kind of a list's trouble
 * (had: it had some): which line is due (-1: its end), with the
 * messages not told and the seconds since the line before */
static int trouble_step(struct list_trouble *lt, struct episode *ep, int had, unsigned long *msgs,
                        long long *secs)
{
	int line;

	pthread_mutex_lock(&lt->lock);
	if (had) {
		line = episode_step(ep, episode_now_ms(), msgs, secs);
		if (line == EPISODE_QUIET)
			ep->count++;     /* a message not told: the next line says how many */
	} else
		/* an end is told when messages went untold: a name that timed
		 * out once is one line, as before, not a start and an end */
		line = episode_end(ep, episode_now_ms(), msgs, secs) && *msgs > 0 ? -1 : EPISODE_QUIET;
	pthread_mutex_unlock(&lt->lock);
	return line;
}

/* tally_report - list l's failures for this message: a DNSBL_BLOCKED /
 * DNSBL_TIMEOUT symbol each message (the audit log's), a log line when
 * the list's trouble starts, every DNSBL_TROUBLE_LOG_MS while it lasts
 * (with the messages since) and when it ends; not one per message */
static void tally_report(struct mw_ctx *ctx, const struct dnslist *l, const struct tally *t)
{
	unsigned long msgs = 0;
	long long secs = 0;

	/* a message that asked the list nothing (a uri list and no links, a
	 * sender list and no usable From) says nothing about the list: it
	 * must not end a blocked episode, or every such message would log a
	 * false "answers without refusal again" and the next lookup a fresh
	 * warning (review rv-today4) */
	if (t->asked == 0)
		return;
	switch (trouble_step(l->trouble, &l->trouble->refused, t->refused > 0, &msgs, &secs)) {
	case EPISODE_STARTS:
		mw_log(ctx, LOG_WARNING, "%s answered %u of %u lookups with a refusal (first %s): "
		    "query refused or resolver blocked, not a listing (told again hourly while it lasts)",
		    l->zone, t->refused, t->asked, t->refused_first);
		break;
	case EPISODE_LASTS:
		mw_log(ctx, LOG_WARNING, "%s still refuses: %lu more messages with refusals in %llds, now %u of %u "
		    "lookups (first %s): query refused or resolver blocked, not a listing", l->zone, msgs,
		    secs, t->refused, t->asked, t->refused_first);
		break;
	case -1:
		mw_log(ctx, LOG_NOTICE, "%s answers without refusal again (%lu more messages refused in "
		    "the %llds before)", l->zone, msgs, secs);
		break;
	}
	if (t->refused > 0)
		mw_symbol(ctx, "DNSBL_BLOCKED", 0, "%s refused %u queries (first %s)", l->zone, t->refused,
		    t->refused_first);
	switch (trouble_step(l->trouble, &l->trouble->unanswered, t->timeouts + t->failures > 0, &msgs,
	    &secs)) {
	case EPISODE_STARTS:
		mw_log(ctx, LOG_WARNING, "%s: %u of %u lookups unanswered (timeout %u, server failure %u; "
		    "first %s) (told again hourly while it lasts)", l->zone, t->timeouts + t->failures,
		    t->asked, t->timeouts, t->failures, t->failed_first);
		break;
	case EPISODE_LASTS:
		mw_log(ctx, LOG_WARNING, "%s: still unanswered: %lu more messages with names unanswered in %llds, "
		    "now %u of %u lookups (timeout %u, server failure %u; first %s)", l->zone, msgs, secs,
		    t->timeouts + t->failures, t->asked, t->timeouts, t->failures, t->failed_first);
		break;
	case -1:
		mw_log(ctx, LOG_NOTICE, "%s: every lookup answered again (%lu more messages with names "
		    "unanswered in the %llds before)", l->zone, msgs, secs);
		break;
	}
	if (t->timeouts + t->failures > 0)
		mw_symbol(ctx, "DNSBL_TIMEOUT", 0, "%s did not answer %u of %u lookups", l->zone,
		    t->timeouts + t->failures, t->asked);
}

/* list_name - "prefix.zone" into name; 0 if it is too long to look up */
static int list_name(const struct dnslist *l, const char *prefix, char *name, size_t namesz)
{
	int n = snprintf(name, namesz, "%s.%s", prefix, l->zone);

	return n > 0 && n < 254 && (size_t)n < namesz;
}

static void prefetch(const struct dnsbl *b, const struct dnslist *l, const char *prefix)
{
	char name[600];

	if (list_name(l, prefix, name, sizeof(name)))
		dns_prefetch(b->dns, name, DNS_T_A);
}

/* dnsbl_prefetch - the client address in every list that takes it (the
 * domains wait for the MIME parse and the eom) */
static void dnsbl_prefetch(struct mw_ctx *ctx)
{
	const struct dnsbl *b = mw_instance(ctx);
	char rev[128];

	if (b == NULL || reversed(mw_client_ip(ctx), rev, sizeof(rev)) != 0)
		return;
	for (size_t i = 0; i < b->nlists; i++)
		if (b->lists[i].what & LOOK_IP)
			prefetch(b, &b->lists[i], rev);
}

/* lookup - one name in one list, counted in t */
static void lookup(struct mw_ctx *ctx, struct dnsbl *b, const struct dnslist *l, const char *prefix,
                   const char *what, const char *item, struct tally *t)
{
	char name[600];
	struct dns_reply *r;
	int refusal = 0;

	if (!list_name(l, prefix, name, sizeof(name)))
		return;
	t->asked++;
	r = dns_lookup(b->dns, name, DNS_T_A, b->cfg->dnsbl_timeout);
	switch (r->status) {
	case DNS_OK:
		for (size_t i = 0; i < r->count; i++)
			answer(ctx, l, r->rr[i].addr, what, item, t, &refusal);
		t->refused += refusal;
		break;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
	case DNS_BADNAME:
		break;
	case DNS_TIMEOUT:
	case DNS_SERVFAIL:
		if (t->timeouts + t->failures == 0)
			snprintf(t->failed_first, sizeof(t->failed_first), "%.260s (%s)", name,
			    r->status == DNS_TIMEOUT ? "timed out" : "server failure");
		if (r->status == DNS_TIMEOUT)
			t->timeouts++;
		else
			t->failures++;
		break;
	}
	dns_reply_free(r);
}

/* reg_domain - the registrable domain of host (lower case) into out; 0,
 * or -1 for an address, a name without a dot or with a byte no host
 * name has */
static int reg_domain(const struct dnsbl *b, const char *host, char *out, size_t outsz)
{
	char h[256];
	const char *reg;
	size_t len = strlen(host), i;
	struct ipnet ip;

	if (len == 0 || len >= sizeof(h))
		return -1;
	for (i = 0; i < len; i++)
		h[i] = (char)((host[i] >= 'A' && host[i] <= 'Z') ? host[i] + 32 : host[i]);
	h[len] = '\0';
	while (len > 0 && h[len - 1] == '.')
		h[--len] = '\0';
	if (len == 0 || strspn(h, "abcdefghijklmnopqrstuvwxyz0123456789-._") != len
	    || ipnet_parse(h, &ip) == 0 || strchr(h, '.') == NULL)
		return -1;
	reg = b->psl ? psl_registrable_domain(b->psl, h) : NULL;
	if (reg == NULL)
		reg = h;
	if (strlen(reg) >= outsz)
		return -1;
	strcpy(out, reg);
	return 0;
}

/* add_domain - the registrable domain of host into the set */
static void add_domain(const struct dnsbl *b, const char *host, char **set, size_t *n, size_t max)
{
	char reg[256];
	size_t i;

	if (*n >= max || reg_domain(b, host, reg, sizeof(reg)) != 0)
		return;
	for (i = 0; i < *n; i++)
		if (strcmp(set[i], reg) == 0)
			return;
	set[(*n)++] = xstrdup(reg);
}

/* URI domains are chosen as SpamAssassin's URIDNSBL chooses them, by
 * the one choice the rules' uridnsbl lines make too (rules_uri_pick: by
 * how their URIs appeared, links first, whole classes while they fit in
 * dnsbl_max_domains, the class that does not fit pseudo-randomly, seeded
 * by the message).  They were taken in message order, images and mail
 * addresses counting as links, so 20 one-pixel images from throw-away
 * domains before the link hid it. */
#define URI_DOMAINS_MAX 4096            /* distinct domains considered */

_Static_assert((int)MIME_URI_ANCHOR == (int)RULES_URI_ANCHOR && (int)MIME_URI_FORM == (int)RULES_URI_FORM &&
               (int)MIME_URI_IMAGE == (int)RULES_URI_IMAGE && (int)MIME_URI_OTHER == (int)RULES_URI_OTHER &&
               (int)MIME_URI_TEXT == (int)RULES_URI_TEXT, "URI kinds: one order for the MIME layer and the rules");

struct uri_cand {
	char    *dom;
	unsigned cls;
};

struct uri_cands {
	struct uri_cand *v;
	size_t n, cap;
	GHashTable *idx;                    /* domain -> index + 1 */
	char  **ips;                        /* IPv4-literal hosts reversed, message order */
	size_t  nips, maxips;               /* ips[] holds maxips + 1 pointers */
};

static void cand_add(const struct dnsbl *b, struct uri_cands *c, const char *host, unsigned cls)
{
	char reg[256];
	gpointer at;

	if (reg_domain(b, host, reg, sizeof(reg)) != 0) {
		/* an IPv4 literal (the canonical forms give "3405803781" as
		 * 203.0.113.5): kept reversed for the lists that ask them,
		 * as SURBL's multi lists them; private ones are not asked */
		struct ipnet ip;

		if (c->nips < c->maxips && ipnet_parse(host, &ip) == 0 && ip.family == 4 &&
		    reversed(host, reg, sizeof(reg)) == 0) {
			for (size_t i = 0; i < c->nips; i++)
				if (strcmp(c->ips[i], reg) == 0)
					return;
			c->ips[c->nips++] = xstrdup(reg);
		}
		return;
	}
	if ((at = g_hash_table_lookup(c->idx, reg)) != NULL) {
		struct uri_cand *e = &c->v[GPOINTER_TO_SIZE(at) - 1];

		if (cls < e->cls)
			e->cls = cls;
		return;
	}
	if (c->n >= URI_DOMAINS_MAX)
		return;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->v = g_realloc_n(c->v, c->cap, sizeof(*c->v));
	}
	c->v[c->n] = (struct uri_cand){ .dom = xstrdup(reg), .cls = cls };
	g_hash_table_insert(c->idx, c->v[c->n].dom, GSIZE_TO_POINTER(c->n + 1));
	c->n++;
}

/* uri_domains - the registrable domains of one URI as candidates: of
 * every form the uri rules see (rules_uri_canon: backslashes, "http:x",
 * %XX, line breaks and controls, IDN and the other Unicode dots, user@,
 * redirect targets).  The URI as written was read alone, and a host with a
 * byte outside [a-z0-9._-] dropped, so a listed host written as a browser
 * still opens it ("http:\\\\host\\x", "%73pammer.example", "spammer" U+3002 "example")
 * was never looked up. */
static void uri_domains(const struct dnsbl *b, struct uri_cands *c, const char *uri, unsigned cls)
{
	char host[512], **forms;
	size_t nf, k;

	if (strncasecmp(uri, "mailto:", 7) == 0) {
		if (rules_uri_mailto_host(uri, host, sizeof(host)) == 0)
			cand_add(b, c, host, RULES_URI_MAILTO);
		return;
	}
	nf = rules_uri_canon(uri, &forms);
	for (k = 0; k < nf; k++)
		if (rules_uri_host(forms[k], host, sizeof(host)) == 0)
			cand_add(b, c, host, cls);
	rules_uri_forms_free(forms, nf);
}

/* uri_pick - up to max of the message's URI domains into set (owned
 * strings, in message order); returns how many.  Up to max IPv4-literal
 * URI hosts, reversed, into ips (owned), *nips of them. */
static size_t uri_pick(const struct dnsbl *b, const struct mime_msg *m, char **set, size_t max,
                       char **ips, size_t *nips)
{
	struct uri_cands c = { .idx = g_hash_table_new(g_str_hash, g_str_equal), .ips = ips,
	                       .maxips = max };
	const char **dom;
	unsigned *cls;
	unsigned char *picked;
	size_t i, n = 0;

	for (i = 0; i < m->nuris; i++)
		uri_domains(b, &c, m->uris[i], m->uri_kinds ? m->uri_kinds[i] : MIME_URI_TEXT);
	dom = xcalloc(c.n + 1, sizeof(*dom));
	cls = xcalloc(c.n + 1, sizeof(*cls));
	picked = xcalloc(c.n + 1, 1);
	for (i = 0; i < c.n; i++) {
		dom[i] = c.v[i].dom;
		cls[i] = c.v[i].cls;
	}
	rules_uri_pick(dom, cls, c.n, max, rules_uri_seed((const char *const *)m->uris, m->nuris), picked);
	for (i = 0; i < c.n; i++) {
		if (picked[i] && n < max) {
			set[n++] = c.v[i].dom;
			c.v[i].dom = NULL;
		}
		free(c.v[i].dom);
	}
	free(dom);
	free(cls);
	free(picked);
	g_free(c.v);
	g_hash_table_destroy(c.idx);
	*nips = c.nips;
	return n;
}

/* The sender domains: of the envelope sender, and of every mailbox of
 * every From field, parsed as DMARC parses them (addrlist.c: comments,
 * quoted strings, groups, several mailboxes).  The text after the last
 * '@' of the raw field was read: "boss@listed.example (write to sales@)"
 * gave "" and the listed author was never asked, nor the first of two
 * authors.  The raw field's last '@' is still asked too (a mailbox
 * addrlist calls invalid, "a@listed.example@x", is still shown by some
 * reader), all of it bounded by dnsbl_max_domains. */
#define FROM_FIELDS_MAX   4             /* From fields read */
#define FROM_MAILBOXES_MAX 16           /* mailboxes of one From field */

/* sender_host - one sender domain (UTF-8 of SMTPUTF8 / RFC 6532, or
 * ASCII) into the set, in A-labels as the lists hold it and as the URI
 * path asks (rules/uri.c: libidn2, UTS 46 non-transitional, else
 * transitional): "m\xc3\xa4lware.example" is xn--mlware-cua.example; its
 * bytes outside [a-z0-9._-] made reg_domain drop it unasked. */
static void sender_host(const char *host, const struct dnsbl *b, char **set, size_t *n, size_t max)
{
	char *a = NULL;

	if (host[0] == '\0')
		return;
	if (!utf8_has_8bit(host, strlen(host))) {
		add_domain(b, host, set, n, max);
		return;
	}
	if ((idn2_to_ascii_8z(host, &a, IDN2_NONTRANSITIONAL) == IDN2_OK ||
	     idn2_to_ascii_8z(host, &a, IDN2_TRANSITIONAL) == IDN2_OK) && a != NULL)
		add_domain(b, a, set, n, max);
	idn2_free(a);
}

/* sender_last_at - the domain after the last '@' of addr (read as the
 * envelope is read, smtp_path_domain), up to a delimiter: an envelope
 * address (which holds none), or a From field's fallback (raw field text,
 * "<", ">", comments and more after the domain) */
static void sender_last_at(const char *addr, const struct dnsbl *b, char **set, size_t *n, size_t max)
{
	const char *dom = smtp_path_domain(addr);
	char host[256];
	size_t len;

	if (dom == NULL)
		return;
	len = strcspn(dom, "> \t;,()\"");
	if (len >= sizeof(host))
		return;
	snprintf(host, sizeof(host), "%.*s", (int)len, dom);
	sender_host(host, b, set, n, max);
}

/* from_domains - the domain of every mailbox of the message's From
 * fields into the set */
static void from_domains(struct mw_ctx *ctx, const struct dnsbl *b, char **set, size_t *n, size_t max)
{
	char (*doms)[ADDR_DOMAIN_MAX + 1] = xcalloc(FROM_MAILBOXES_MAX, sizeof(*doms));
	const char *v;

	for (size_t f = 0; f < FROM_FIELDS_MAX && (v = mw_header(ctx, "From", f)) != NULL; f++) {
		size_t k = addrlist_domains(v, doms, FROM_MAILBOXES_MAX);

		for (size_t i = 0; i < k && i < FROM_MAILBOXES_MAX; i++)
			sender_host(doms[i], b, set, n, max);
		sender_last_at(v, b, set, n, max);
	}
	free(doms);
}

static void dnsbl_eom(struct mw_ctx *ctx)
{
	struct dnsbl *b = mw_instance(ctx);
	size_t max = b->cfg->dnsbl_max_domains < MAX_DOMAINS_CAP ? b->cfg->dnsbl_max_domains : MAX_DOMAINS_CAP;
	char **uri_dom = xcalloc(max + 1, sizeof(char *)), **snd_dom = xcalloc(max + 1, sizeof(char *));
	char **uri_ip = xcalloc(max + 1, sizeof(char *));
	size_t nuri = 0, nsnd = 0, nip = 0, i, k;
	char rev[128];
	int want_uri = 0, want_snd = 0, have_rev;

	for (i = 0; i < b->nlists; i++) {
		want_uri |= !!(b->lists[i].what & LOOK_URI);
		want_snd |= !!(b->lists[i].what & LOOK_SENDER);
	}
	if (want_uri) {
		const struct mime_msg *m = mime_get(ctx);

		nuri = uri_pick(b, m, uri_dom, max, uri_ip, &nip);
	}
	if (want_snd) {
		sender_last_at(mw_mail_from(ctx), b, snd_dom, &nsnd, max);
		from_domains(ctx, b, snd_dom, &nsnd, max);
	}
	have_rev = reversed(mw_client_ip(ctx), rev, sizeof(rev)) == 0;
	/* every name out at once, then the answers read in order: the lists
	 * answer in parallel, and a list that does not answer costs one
	 * dnsbl_timeout for the message, not one per name */
	for (i = 0; i < b->nlists; i++) {
		const struct dnslist *l = &b->lists[i];

		if ((l->what & LOOK_IP) && have_rev)
			prefetch(b, l, rev);
		for (k = 0; (l->what & LOOK_URI) && k < nuri; k++)
			prefetch(b, l, uri_dom[k]);
		for (k = 0; l->uri_ips && k < nip; k++)
			prefetch(b, l, uri_ip[k]);
		for (k = 0; (l->what & LOOK_SENDER) && k < nsnd; k++)
			prefetch(b, l, snd_dom[k]);
	}
	for (i = 0; i < b->nlists; i++) {
		const struct dnslist *l = &b->lists[i];
		struct tally t = { 0 };

		if ((l->what & LOOK_IP) && have_rev)
			lookup(ctx, b, l, rev, "client", mw_client_ip(ctx), &t);
		if (l->what & LOOK_URI)
			for (k = 0; k < nuri; k++)
				lookup(ctx, b, l, uri_dom[k], "uri domain", uri_dom[k], &t);
		if (l->uri_ips)
			for (k = 0; k < nip; k++)
				lookup(ctx, b, l, uri_ip[k], "uri address (reversed)", uri_ip[k], &t);
		if (l->what & LOOK_SENDER)
			for (k = 0; k < nsnd; k++)
				lookup(ctx, b, l, snd_dom[k], "sender domain", snd_dom[k], &t);
		tally_report(ctx, l, &t);
	}
	for (i = 0; i < nuri; i++)
		free(uri_dom[i]);
	for (i = 0; i < nsnd; i++)
		free(snd_dom[i]);
	for (i = 0; i < nip; i++)
		free(uri_ip[i]);
	free(uri_ip);
	free(uri_dom);
	free(snd_dom);
}

static const struct mw_filter_ops dnsbl_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "dnsbl",
	.fini = dnsbl_fini,
	.on_eom = dnsbl_eom,
};

const struct builtin_filter builtin_dnsbl = {
	.name = "dnsbl",
	.ops = &dnsbl_ops,
	.setup = dnsbl_setup,
	.prefetch = dnsbl_prefetch,
};
