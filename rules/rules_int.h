/* rules_int.h - the ruleset's insides, shared by parse.c, meta.c,
 * regex.c, compile.c and scan.c.  Not for the bridge. */
#ifndef MW_RULES_INT_H
#define MW_RULES_INT_H

#include <stddef.h>
#include <stdint.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <hs.h>
#include "rules/rules.h"

#define TF_NICE      0x01u
#define TF_MULTIPLE  0x02u
#define TF_NOAUTOLEARN 0x04u
#define TF_NET       0x08u     /* a network test: not hit with network tests off */
#define TF_LEARN     0x10u     /* needs Bayes training data (BAYES_*) */

#define RE_I 0x01u
#define RE_M 0x02u
#define RE_S 0x04u
#define RE_X 0x08u

/* :raw, :addr, :name, and :addr:raw / :name:raw (address or name taken
 * from the undecoded value) */
enum hdr_mod { HM_NONE = 0, HM_RAW, HM_ADDR, HM_NAME, HM_ADDR_RAW, HM_NAME_RAW };

/* how a regex rule is matched */
enum re_mode { RM_NONE = 0, RM_HS, RM_HS_PREFILTER, RM_PCRE };

struct eval_def;

struct meta_tok {                 /* RPN */
	int    op;                    /* 0 = number, 1 = rule, else operator char code */
	double num;
	unsigned rule;
};

struct rule {
	char    *name;                /* owned */
	enum rule_kind kind;
	int      defined;             /* a test line was seen */
	int      loaded;              /* usable after compile */
	char    *why;                 /* owned: reason it is not loaded */
	char    *describe;            /* owned or NULL */
	double   score;
	int      has_score;
	unsigned tflags;
	unsigned maxhits;             /* 0 = none */
	char    *file;                /* owned: where defined */
	unsigned line;
	/* header */
	char    *hdr;                 /* header name, or "ALL" */
	enum hdr_mod hmod;
	int      exists;              /* exists:NAME */
	int      negate;              /* !~ */
	char    *unset;               /* [if-unset: ...] or NULL */
	/* regex (header/body/rawbody/full/uri) */
	char    *re;                  /* pattern (owned), Perl syntax */
	unsigned reflags;
	pcre2_code *pc;
	pcre2_code **pcx;             /* instead of pc: pieces of a regex too large for
	                               * PCRE2 (split.c); the rule matches where one does */
	char   **pcx_src;             /* their patterns */
	unsigned npcx;
	enum re_mode mode;
	unsigned hs_id;               /* index in its kind's database */
	/* meta */
	char    *meta_src;
	struct meta_tok *meta;
	size_t   nmeta;
	unsigned order;               /* meta evaluation order */
	unsigned target;              /* header rules: index in ruleset.targets */
	/* eval: (rules/eval.h) */
	const struct eval_def *ev;    /* the function; NULL = not an eval rule */
	char   **ev_argv;             /* its arguments, quotes removed (owned) */
	unsigned ev_argc;
	void    *ev_data;             /* what the function's check() prepared */
	int      other_type;          /* defined by a rule type other than the six
	                               * (mimeheader, uridnsbl...): reported as "other" */
};

/* one distinct header text header rules look at (name + modifier) */
struct htarget {
	const char *hdr;              /* borrowed from the first rule */
	enum hdr_mod hmod;
	unsigned *rules;
	unsigned n;
};

struct kind_db {
	hs_database_t *db;            /* NULL if no pattern of this kind is in Hyperscan */
	unsigned *rule_of;            /* hs id -> rule index */
	unsigned  n;
	unsigned *pcre_rules;         /* rules run by PCRE2 alone */
	unsigned  npcre;
};

struct nl_entry { char *name; char *why; };

struct replace_tag { char *name; char *value; int kind; /* 0 tag, 1 pre, 2 inter, 3 post */ };

struct ruleset {
	struct rule *rules;
	size_t nrules, caprules;
	unsigned *hash;               /* open addressing: index+1, 0 = empty */
	size_t hashcap;
	struct kind_db kdb[RK_COUNT];
	unsigned *meta_order;         /* loaded metas, dependencies first */
	size_t nmeta_order;
	struct htarget *targets;
	unsigned ntargets;
	struct rules_stats stats;
	struct replace_tag *tags;
	size_t ntags;
	int score_set;                /* which of a score line's 4 values applies (0..3) */
	char **replace_names;         /* rules named by replace_rules */
	size_t nreplace;
	int compiled;
	char **texts;                 /* file contents kept for parsing */
	size_t ntexts;
	unsigned depth;               /* include depth */
	pcre2_match_context *mctx;
	char **redirector_src;        /* redirector_pattern regexes as written */
	size_t nredirector_src;
	pcre2_code **redirectors;     /* compiled; capture 1 = the target */
	size_t nredirectors;
	unsigned *eval_rules;         /* loaded eval rules, evaluated before the metas */
	size_t neval;
	void *evconf[8];              /* per eval module configuration (enum eval_conf) */
};

/* parse.c */
struct rule *rs_rule(struct ruleset *rs, const char *name, size_t len, int create);
int rs_find(const struct ruleset *rs, const char *name, size_t len);
void rule_not_loaded(struct rule *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* meta.c: compile r->meta_src into RPN; 0 or -1 with r->why set */
int meta_compile(struct ruleset *rs, struct rule *r);
double meta_eval(const struct rule *r, const double *values);
/* if-expression of "if" lines: 1 true, 0 false, -1 cannot tell */
int if_eval(const char *expr);

/* scan.c: group header rules by target, after compile */
void rules_prepare_targets(struct ruleset *rs);

/* split.c: pieces whose union matches what re matches; 0 if it cannot be cut */
size_t rules_split_regex(const char *re, size_t target, char ***out);

/* regex.c */
/* split "/re/flags" (or m{re}flags): pattern into out (malloc), flags; 0/-1 */
int perl_re_split(const char *s, char **pattern, unsigned *flags, const char **rest);

#endif
