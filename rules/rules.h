/* rules.h - the rule language: a SpamAssassin-compatible subset (header,
 * body, rawbody, full, uri, meta, score, describe, tflags, ifplugin/if,
 * include, replace_tag/replace_rules), compiled into one Hyperscan database
 * per rule kind with PCRE2 (JIT, match limit) for what Hyperscan refuses.
 *
 * No I/O but reading the rule files named to rules_load() and the compiled
 * database cache directory given to rules_compile().  A compiled set is
 * read-only and shared by threads; each thread scans with its own
 * struct rules_scratch.
 */
#ifndef MW_RULES_H
#define MW_RULES_H

#include <stddef.h>
#include <stdint.h>

/* SpamAssassin's cut of a header field (Mail::SpamAssassin::Message
 * MAX_HEADER_KEY_LENGTH, MAX_HEADER_VALUE_LENGTH): bytes of its name and
 * of its value (folding and newline counted) that the rules see */
#define RULES_MAX_HEADER_KEY   256
#define RULES_MAX_HEADER_VALUE 8192

enum rule_kind { RK_HEADER = 0, RK_BODY, RK_RAWBODY, RK_FULL, RK_URI, RK_META, RK_COUNT };

struct ruleset;          /* parsed, then compiled */
struct rules_scratch;    /* one per scanning thread */

/* Load statistics, filled by rules_load()/rules_compile(). */
struct rules_stats {
	unsigned files;
	unsigned loaded[RK_COUNT];      /* rules usable, by kind */
	unsigned not_loaded;            /* eval:, unsupported types, bad regexes, metas over those */
	unsigned not_loaded_eval;       /* of which eval: */
	unsigned hs_patterns;           /* in Hyperscan exactly */
	unsigned hs_prefilter;          /* in Hyperscan as prefilter, confirmed by PCRE2 */
	unsigned pcre_only;             /* run by PCRE2 alone */
	int      cache_hit;             /* databases came from the cache */
	int      cache_write_err;       /* errno of the first cache file that could not be
	                                 * written (full disk, read-only dir), or 0: the rules
	                                 * load anyway, the next start compiles them again */
};

/* rules_new - an empty set */
struct ruleset *rules_new(void);
void rules_free(struct ruleset *rs);

/* rules_set_score_set - before loading: which value of a 4-value
 * "score NAME s0 s1 s2 s3" line applies, as SpamAssassin's score sets:
 * 0 no Bayes, no network tests; 1 network; 2 Bayes; 3 Bayes and network.
 * A line with one value applies to every set.  Default 0. */
void rules_set_score_set(struct ruleset *rs, int set);

/* rules_load_file - parse one file (or every *.cf of a directory, in
 * name order), following include.  0, or -1 with "FILE:LINE: reason" in
 * err.  Unsupported rules are recorded, not errors. */
int rules_load_file(struct ruleset *rs, const char *path, char *err, size_t errlen);
/* rules_load_text - parse text as if read from a file called name (tests, fuzzing) */
int rules_load_text(struct ruleset *rs, const char *name, const char *text, size_t len,
                    char *err, size_t errlen);

/* rules_compile - after loading: compile the regexes, resolve metas.
 * cache_dir "" or NULL = no cache.  0, or -1 with reason. */
int rules_compile(struct ruleset *rs, const char *cache_dir, char *err, size_t errlen);

const struct rules_stats *rules_get_stats(const struct ruleset *rs);

/* The not-loaded rules, for reports: i-th name and reason, NULL past the end. */
const char *rules_not_loaded(const struct ruleset *rs, size_t i, const char **reason);

/* --- scanning one message ----------------------------------------------- */

struct rules_scratch *rules_scratch_new(const struct ruleset *rs);
void rules_scratch_free(struct rules_scratch *s);

/* One header field as the message has it. */
struct rules_header {
	const char *name;       /* without colon */
	const char *raw;        /* value as in the message, folding kept (LF or CRLF), no final newline */
	const char *decoded;    /* unfolded, RFC 2047 decoded, trimmed (UTF-8); NULL = same as raw unfolded */
};

struct rules_input {
	const struct rules_header *headers;  /* in message order */
	size_t nheaders;
	/* body lines as SpamAssassin renders them (subject first, paragraphs),
	 * each usually ending in "\n" */
	const char *const *body;
	const size_t *body_len;
	size_t nbody;
	const char *const *rawbody;          /* decoded, not rendered, lines */
	const size_t *rawbody_len;
	size_t nrawbody;
	const char *full;                    /* whole message as received */
	size_t full_len;
	const char *const *uris;
	size_t nuris;
	/* uri_kinds[i]: how uris[i] appeared, lower is more link-like
	 * (RULES_URI_ANCHOR ...; the MIME layer's enum mime_uri_kind), or
	 * NULL: URI blocklists ask about links first, as SpamAssassin */
	const unsigned char *uri_kinds;
	/* the forms of uris[] (rules_uri_set_new with the ruleset scanned):
	 * the bridge makes them once per message; NULL: each rules_scan /
	 * rules_net_queries call makes its own */
	const struct rules_uri_set *uri_forms;
	unsigned time_budget_ms;             /* 0 = none */

	/* for eval: rules (rules/eval.h); all optional (NULL / 0 = unknown) */
	const struct rules_part *parts;      /* MIME leaves, tree order */
	size_t nparts;
	int mime_parse_error;
	const char *mail_from;               /* envelope sender ("" = null sender) */
	const char *const *rcpts;
	size_t nrcpts;
	const char *helo;
	const char *client_ip;
	const char *client_name;             /* forward-confirmed rDNS name */
	const char *receiver;                /* our host name: the client hop's by=, as in
	                                      * the Received field the MTA will add */
	int authenticated;                   /* SMTP AUTH user, or outbound */
	/* facts the bridge knows: other filters' verdicts and DNS answers
	 * (keys in rules/eval.h); returns NULL when unknown */
	const char *(*fact)(void *arg, const char *key);
	void *fact_arg;
	/* RFC 2047 decoding of a MIME part's field, which SpamAssassin's
	 * Node->header() does and mimeheader rules therefore see: a malloc'd
	 * UTF-8 string, or NULL to keep the value (nothing encoded, or no
	 * decoder: this layer has no charset tables; the bridge has GMime) */
	char *(*decode_words)(const char *value);
};

/* One MIME leaf, as the bridge's MIME parse gives it. */
struct rules_part {
	unsigned depth;                      /* 0 = top-level message */
	const char *content_type;            /* lower case, without parameters */
	const char *charset;                 /* declared, lower case, or NULL */
	const char *encoding;                /* Content-Transfer-Encoding, lower case, or NULL */
	const char *filename;                /* or NULL */
	const char *disposition;             /* "attachment", "inline" or NULL */
	int is_text, is_html;
	const char *data;                    /* decoded; text parts in UTF-8; NUL-terminated */
	size_t len;
	const char *raw;                     /* decoded bytes before charset conversion */
	size_t raw_len;
	const char *rendered;                /* text/html: visible text; else NULL */
	size_t rendered_len;
};

/* rules_net_queries - before rules_scan: the DNS names the eval rules
 * need answered for this message (blocklists for its relays, URI
 * domains...).  The bridge looks them up and answers through in->fact
 * ("dns:A:<qname>", "dns:TXT:<qname>").  rrtype: 1 A, 16 TXT. */
void rules_net_queries(const struct ruleset *rs, struct rules_scratch *s, const struct rules_input *in,
                       void (*want)(void *arg, const char *qname, int rrtype), void *arg);

/* One rule that hit. */
struct rules_hit {
	const char *name;        /* borrowed from the ruleset */
	const char *describe;    /* or NULL */
	double score;
	unsigned count;
};

/* rules_scan - evaluate every rule on one message.  Calls on_hit for each
 * reported rule that hit (names starting with "__" and score-0 rules are
 * evaluated but not reported).  Returns 0, or 1 when the time budget ran
 * out (the rules not reached count as not hit). */
int rules_scan(const struct ruleset *rs, struct rules_scratch *s, const struct rules_input *in,
               void (*on_hit)(void *arg, const struct rules_hit *h), void *arg);

/* rules_scratch_matches - PCRE2 matches run by the last rules_scan on s:
 * the work a message cost, for tests that must not depend on the clock */
unsigned long rules_scratch_matches(const struct rules_scratch *s);

/* rules_scratch_limit_hits - of those, the ones PCRE2 gave up on at its
 * match, depth or JIT stack limit (the rule counts as not hit); *cut (if
 * not NULL): the ones on a long text stopped at the time budget */
unsigned long rules_scratch_limit_hits(const struct rules_scratch *s, unsigned long *cut);

/* rules_count - number of rules; rules_info - name, kind, loaded of the i-th */
size_t rules_count(const struct ruleset *rs);
const char *rules_info(const struct ruleset *rs, size_t i, enum rule_kind *kind, int *loaded, double *score);

/* Helpers the bridge uses to present headers as SpamAssassin does. */
/* rules_addr_elem_len - length of the address-list element at v: up to
 * a comma (or a semicolon, if asked) or newline outside quotes, comments
 * and angle brackets */
size_t rules_addr_elem_len(const char *v, int semicolon);
/* rules_addr_of - first address in a header value (":addr"): out, 0/-1 */
int rules_addr_of(const char *value, char *out, size_t outlen);
/* rules_name_of - display name of the first address (":name") */
int rules_name_of(const char *value, char *out, size_t outlen);

/* rules_uri_canon - the forms of one URI as uri rules see them
 * (SpamAssassin's canonicalization, rules/uri.c; redirect targets by the
 * generic test only: no ruleset, so no redirector_pattern), for filters
 * that look URIs up; at most 32.  *out: free with rules_uri_forms_free */
size_t rules_uri_canon(const char *uri, char ***out);
void rules_uri_forms_free(char **forms, size_t n);
/* rules_uri_set - the forms of each of a message's URIs (uris[i] as
 * rules_uri_canon gives it, plus the targets rs's redirector_pattern lines
 * find), made once per message: the uri rules, the URI blocklists' lookups
 * in every DNS round and their answers all read this one set
 * (rules_input.uri_forms).  rules_uri_set_forms: uris[i]'s forms, *nforms
 * of them (none past the end) */
struct rules_uri_set;
struct rules_uri_set *rules_uri_set_new(const struct ruleset *rs, const char *const *uris, size_t n);
const char *const *rules_uri_set_forms(const struct rules_uri_set *set, size_t i, size_t *nforms);
void rules_uri_set_free(struct rules_uri_set *set);
/* rules_uri_host - the host of one such form ("http://user@Host.Example:80/x"
 * -> "host.example", an IPv6 literal without brackets) into out, lower
 * case; 0, or -1 when there is none or it holds a byte no DNS name or
 * address has (a form not cleaned: another form of the URI has it) */
int rules_uri_host(const char *uri, char *out, size_t outlen);

/* How a URI appeared, most link-like first (the order in which URI
 * blocklists choose domains, SpamAssassin's URIDNSBL's): the same values
 * as the MIME layer's enum mime_uri_kind, then mail addresses. */
enum { RULES_URI_ANCHOR, RULES_URI_FORM, RULES_URI_IMAGE, RULES_URI_OTHER, RULES_URI_TEXT,
       RULES_URI_MAILTO, RULES_URI_CLASSES };
/* rules_uri_seed - the seed of rules_uri_pick for a message whose URIs
 * are uris: of those that are not "mailto:" (the rules add the mail
 * addresses they find in the text to the MIME layer's URIs; the dnsbl
 * filter has the MIME layer's alone), so both choose alike */
uint64_t rules_uri_seed(const char *const *uris, size_t n);
/* rules_uri_pick - which registrable domains of a message's URIs are
 * looked up: one choice for the dnsbl filter's uri lists and the rules'
 * uridnsbl lines (SpamAssassin's URIDNSBL).  dom[i], cls[i]: n entries in
 * message order, one per URI host (a domain may repeat; cls
 * RULES_URI_CLASSES = never asked).  A domain counts in the best class of
 * its entries; classes are taken whole, in order, while they fit in max
 * domains, and from the class that does not fit a pseudo-random choice
 * (as SpamAssassin's rand) by seed (rules_uri_seed), so the same message
 * always asks the same domains; equal ranks go in message order.
 * picked[i] = 1 for each entry whose domain is chosen; returns how many
 * domains are. */
size_t rules_uri_pick(const char *const *dom, const unsigned *cls, size_t n, size_t max, uint64_t seed,
                      unsigned char *picked);
/* rules_uri_mailto_host - the host of a "mailto:" URI (after its last
 * '@', up to '?', '>', '&', ',', ';' or a blank), lower case, without
 * final dots, into out; 0, or -1 if uri is no mailto: or has no host */
int rules_uri_mailto_host(const char *uri, char *out, size_t outlen);

#endif
