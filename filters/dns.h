/* dns.h - the scanner's one DNS layer: libunbound behind one cache shared
 * by every filter (SPF, DKIM keys, DMARC records, DNS blocklists, reverse
 * DNS).  Thread-safe: scanner threads call it concurrently.
 *
 * Every lookup has a deadline (a dead forwarder must not stall a message);
 * answers are cached for their TTL (negative answers too, RFC 2308), and
 * counters say how many lookups, cache hits and timeouts there were.
 * Settings: dns_forwarder ("127.0.0.1@5353", "" = the system resolver),
 * dns_timeout, and the cache bounds (see config.h).
 *
 * INTERFACE OWNED BY THE DNS LAYER (issue 4); filters code against it. */
#ifndef MW_DNS_H
#define MW_DNS_H

#include <stddef.h>
#include <stdint.h>
#include "proxy/config.h"

enum dns_status {
	DNS_OK = 0,        /* answer with >= 1 record of the type asked */
	DNS_NXDOMAIN,      /* the name does not exist */
	DNS_NODATA,        /* the name exists, no record of that type */
	DNS_SERVFAIL,      /* the server failed (or DNSSEC bogus): a temporary error */
	DNS_TIMEOUT,       /* no answer within the deadline: a temporary error */
	DNS_BADNAME,       /* the name is not a valid DNS name (too long, empty label) */
};

/* rrtypes as in the protocol */
#define DNS_T_A     1
#define DNS_T_NS    2
#define DNS_T_CNAME 5
#define DNS_T_PTR   12
#define DNS_T_MX    15
#define DNS_T_TXT   16
#define DNS_T_AAAA  28

struct dns_rr {
	/* A: addr[4], AAAA: addr[16]; MX: pref + name; PTR/NS/CNAME: name;
	 * TXT: text = the character-strings concatenated (RFC 7208 3.3), NUL-
	 * terminated, text_len its length (may hold NUL bytes: check it);
	 * names without the final dot, lower case, any byte other than a
	 * letter, digit, '-' or '_' as \DDD (so a name can be looked up again
	 * as it is) */
	unsigned char addr[16];
	unsigned      pref;
	char         *name;
	char         *text;
	size_t        text_len;
};

struct dns_reply {
	enum dns_status status;
	int      rrtype;
	unsigned ttl;               /* seconds the answer may be cached */
	int      secure;            /* DNSSEC validated */
	size_t   count;
	struct dns_rr *rr;          /* count records, in the order received */
};

struct dns;

/* dns_new - one resolver + cache for the settings of cfg.  NULL with a
 * one-line reason in err (bad forwarder, cannot create the context). */
struct dns *dns_new(const struct config *cfg, char *err, size_t errlen);
void dns_free(struct dns *d);

/* dns_lookup - the answer to (name, rrtype), from the cache or the
 * resolver, within timeout_ms (0 = the configured dns_timeout).  Never
 * NULL; free with dns_reply_free.  name: with or without the final dot,
 * any case, any byte ('.' separates labels; "\DDD" or "\X" stand for one
 * byte); DNS_BADNAME for an empty label, a label over 63 bytes or a name
 * over 253. */
struct dns_reply *dns_lookup(struct dns *d, const char *name, int rrtype, unsigned timeout_ms);
void dns_reply_free(struct dns_reply *r);

/* dns_prefetch - start the query for (name, rrtype) now, unless an
 * answer whose TTL still runs is cached or a query for it is out, and
 * return at once.  A
 * dns_lookup of the same name afterwards waits for that query, at most
 * its timeout counted from the prefetch: the pipeline sends the names a
 * message's filters will ask for together, before the first filter runs
 * (pipeline.c), so that they cost one round trip, and a server that
 * drops them one timeout, instead of one each.  The answer serves the
 * lookups of the name until dns_timeout after the prefetch even when its
 * TTL is shorter (0, or cut by dns_cache_max_ttl / dns_negative_ttl), so
 * the filters get what was fetched for them instead of asking again; a
 * prefetch once the TTL ran out asks again (an answer is given out at
 * most its TTL and one dns_timeout after it came). */
void dns_prefetch(struct dns *d, const char *name, int rrtype);

/* dns_reverse_name - "4.3.2.1.in-addr.arpa" / ip6.arpa name of an address
 * in text form; 0, or -1 if ip is not an address. */
int dns_reverse_name(const char *ip, char *out, size_t outsz);

/* dns_client_name - the forward-confirmed reverse DNS name (FCrDNS) of
 * the address ip: a PTR name (at most 10 are tried) whose A or AAAA
 * records hold ip again, lower case, letters/digits/'-'/'.' only.  All
 * lookups together within budget_ms.  Returns 1 with
 * the name in out, 0 if there is none (no PTR, or none confirms), -1 on a
 * temporary error (timeout, SERVFAIL) with out = "".  (rdns.c) */
int dns_client_name(struct dns *d, const char *ip, unsigned budget_ms, char *out, size_t outsz);

struct dns_stats {
	uint64_t lookups;      /* dns_lookup calls */
	uint64_t cache_hits;
	uint64_t timeouts;
	uint64_t failures;     /* SERVFAIL and other resolver errors */
	uint64_t prefetches;   /* queries started by dns_prefetch */
};
void dns_stats(struct dns *d, struct dns_stats *out);

#endif
