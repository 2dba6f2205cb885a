/* eval.h - SpamAssassin's "eval:" tests, written in C.
 *
 * A rule "header|body|rawbody|full|uri NAME eval:fn(args)" is loaded when
 * some eval module knows fn; otherwise it is counted as not loaded, as
 * before.  A module is one file under rules/ (eval_<area>.c) with a table
 * of functions, and optionally: the rule-file directives it owns (its
 * configuration, e.g. trusted_networks), the pseudo-headers it provides
 * (X-Spam-Relays-*), and the DNS names it needs answered for a message.
 *
 * Evaluation order in rules_scan: header, body, rawbody, full and uri
 * regexes first, then every eval rule, then the metas.  Eval functions see
 * the message through struct eval_msg; what they derive from it once per
 * message (parsed relays, HTML statistics...) goes in a cache slot.
 *
 * No I/O here either: what needs the network or another filter's verdict
 * comes in as a "fact" the bridge (filters/rules.c) answers: see
 * eval_fact() and the key conventions below. */
#ifndef MW_RULES_EVAL_H
#define MW_RULES_EVAL_H

#include <stddef.h>
#include "rules/rules_int.h"

/* Per-message cache slots, one per module that wants one. */
enum eval_cache {
	EVC_HEADER = 0,    /* eval_header.c */
	EVC_MIME,          /* eval_mime.c */
	EVC_HTML,          /* eval_html.c */
	EVC_RELAYS,        /* eval_relay.c: parsed Received chain, trust */
	EVC_NET,           /* eval_net.c */
	EVC_FACTS,         /* eval_facts.c */
	EVC_URIS,          /* eval_uri_set: the URI forms, when the bridge gave none */
	EVC_URI_HOSTS,     /* uri_hosts.c: the URI hosts, links first */
	EVC_COUNT
};

/* Per-ruleset configuration slots (from rule-file directives). */
enum eval_conf {
	EVF_HEADER = 0, EVF_MIME, EVF_HTML, EVF_RELAYS, EVF_NET, EVF_FACTS,
	EVF_SPARE1, EVF_SPARE2,
	EVF_COUNT
};

/* One message being evaluated. */
struct eval_msg {
	const struct ruleset *rs;
	const struct rules_input *in;
	pcre2_match_data *md;             /* for the module's own regexes */
	void *cache[EVC_COUNT];
	void (*cache_free[EVC_COUNT])(void *);
	/* eval_headers(): the message's fields + pseudo-headers (eval.c) */
	struct rules_header *hdrs;
	size_t nhdrs, caphdrs;
	char **owned;
	size_t nowned;
	int hdrs_built;
};

/* The function of one eval rule: the rule's hit count (0 = no hit, 1 = hit,
 * more only for tflags multiple).  r->ev_argv/ev_argc are its arguments as
 * written (quotes removed), r->ev_data what check() prepared. */
typedef double (*eval_fn)(struct eval_msg *m, const struct rule *r);

struct eval_def {
	const char *name;                 /* "check_for_missing_to_header" */
	eval_fn fn;
	unsigned min_args, max_args;
	/* optional: at load, validate arguments / prepare r->ev_data (freed
	 * with free_data).  0, or -1 with a reason in why (the rule is then
	 * not loaded, with that reason) */
	int (*check)(struct ruleset *rs, struct rule *r, char *why, size_t whylen);
	void (*free_data)(void *data);
	unsigned tflags;                  /* TF_NET for network tests, TF_LEARN for Bayes */
};

struct eval_module {
	const char *name;
	const struct eval_def *defs;      /* ended by { NULL } */
	/* optional: a rule-file directive this module owns (dir lower case,
	 * args the rest of the line).  1 taken, 0 not ours, -1 error (why) */
	int (*directive)(struct ruleset *rs, const char *dir, const char *args, char *why, size_t whylen);
	void (*free_conf)(struct ruleset *rs);
	/* optional: pseudo-header names the module provides ("X-Spam-Relays-Trusted"
	 * ...), NULL-terminated, and the function that adds their values for a
	 * message through add() (name, value; called at most once per name) */
	const char *const *pseudo_names;
	void (*pseudo)(struct eval_msg *m, void (*add)(void *arg, const char *name, const char *value), void *arg);
	/* optional: the DNS names this message needs answered (see
	 * rules_net_queries in rules.h) */
	void (*queries)(struct eval_msg *m, void (*want)(void *arg, const char *qname, int rrtype), void *arg);
};

/* Modules (one per eval_<area>.c). */
extern const struct eval_module eval_module_header, eval_module_mime, eval_module_html,
	eval_module_relay, eval_module_net, eval_module_facts;

/* eval.c: used by parse.c, compile.c and scan.c */
const struct eval_def *eval_lookup(const char *name, size_t len);
/* parse "fn(args)" after "eval:" into r (ev, ev_argv); 0, or -1 when the
 * text is not a call; an unknown function leaves r not loaded (reason "eval: ...") */
int eval_parse_call(struct ruleset *rs, struct rule *r, const char *text);
int eval_directive(struct ruleset *rs, const char *dir, const char *args, char *why, size_t whylen);
int eval_pseudo_known(const char *name);
void eval_free_rule(struct rule *r);
void eval_free_conf(struct ruleset *rs);
void eval_msg_reset(struct eval_msg *m);
/* the message's header list with the modules' pseudo-headers appended:
 * valid until the next eval_msg_reset */
const struct rules_header *eval_headers(struct eval_msg *m, size_t *n);
void eval_run_queries(struct eval_msg *m, void (*want)(void *arg, const char *qname, int rrtype), void *arg);

/* --- for modules ------------------------------------------------------------- */

/* eval_define_rule - from a module's directive handler: define rule NAME
 * as if written "KIND NAME eval:CALL" (call: "fn('a', 'b')", fn one of the
 * module's functions); other_type marks a rule type of its own (mimeheader,
 * uridnsbl...) so reports count it apart.  0, or -1 with why. */
int eval_define_rule(struct ruleset *rs, const char *name, size_t namelen, enum rule_kind kind,
                     int other_type, const char *call, char *why, size_t whylen);

/* cache slot of this message; NULL until set */
static inline void *eval_cache_get(struct eval_msg *m, enum eval_cache slot) { return m->cache[slot]; }
void eval_cache_set(struct eval_msg *m, enum eval_cache slot, void *data, void (*free_fn)(void *));
/* eval_uri_set - the forms of the message's URIs: the bridge's
 * (rules_input.uri_forms), or made once for this evaluation */
const struct rules_uri_set *eval_uri_set(struct eval_msg *m);

/* A fact the bridge knows about this message, NULL if unknown.  Keys:
 *   "dns:A:<qname>"   the A records of qname, space separated; "" = NXDOMAIN
 *                     or no record; NULL = not asked or no answer in time
 *   "dns:TXT:<qname>" the TXT strings, joined by "\n"
 *   others as documented by the module that asks and filters/rules_facts.c
 *   that answers them. */
const char *eval_fact(struct eval_msg *m, const char *key);

/* argument i as a number (def if absent or not a number) */
double eval_arg_num(const struct rule *r, unsigned i, double def);
/* argument i as text ("" if absent) */
const char *eval_arg(const struct rule *r, unsigned i);

/* all fields of a header name (case-insensitive), decoded values, joined
 * by "\n" into out (bounded); returns the number of fields found */
size_t eval_header_all(const struct eval_msg *m, const char *name, char *out, size_t outlen);
/* the first field of that name (decoded value), or NULL */
const char *eval_header_first(const struct eval_msg *m, const char *name);
/* the first field of that name (raw value, folding kept), or NULL */
const char *eval_header_raw(const struct eval_msg *m, const char *name);

#endif
