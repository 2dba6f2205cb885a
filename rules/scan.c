/* scan.c - evaluates a compiled ruleset on one message.
 *
 * Per text (a header, a body line, the full message, a URI) one Hyperscan
 * pass over the kind's database says which rules may match; PCRE2 confirms
 * prefilter matches, counts hits of "multiple" rules and runs the rules
 * Hyperscan refused.  Metas are evaluated last, dependencies first.
 * Header texts are presented as SpamAssassin does: every field of the name,
 * decoded, each followed by "\n"; ALL is "Name: value\n" for every field. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "rules/eval.h"
#include "rules/rules_int.h"

#define MAX_JOINED_TEXT (32u << 20)
#define MAX_HEADER_LENGTH 65536   /* SpamAssassin's: the header ALL shows */
/* pcre_exec: texts longer than RUN_FROM are matched in runs of start
 * offsets; the first run RUN_FIRST offsets (one offset costs the
 * interpreter 2 ms at most at its match limit), then between RUN_MIN and
 * RUN_MAX as they cost */
#define RUN_FROM    4096u
#define RUN_FIRST   16u
#define RUN_MIN     16u
#define RUN_MAX     (1u << 20)
#define RUN_FAST_NS 1000000LL
#define RUN_SLOW_NS 4000000LL
/* the clock is read after every 8th match, and after 8 KB of text:
 * a match on a body line (2048 bytes at most) costs up to tens of ms */
#define LOOK_BYTES  8192u
#define RC_OUT_OF_TIME (-1000)     /* pcre_exec: not one of PCRE2's codes */

/* One text of a kind inside the joined buffer scanned by Hyperscan. */
struct segment {
	size_t off, len;
	unsigned target;              /* header kind: the target; else unused */
};

/* A rule Hyperscan reported, from the first segment any of its ids
 * matched in: PCRE2 decides, on that segment and the ones after it. */
struct candidate { unsigned rule, seg; };

struct rules_scratch {
	hs_scratch_t *hs;
	double *values;               /* per rule: hit count (metas: result) */
	uint32_t *cand_of;            /* per rule: 1 + its candidate (this kind), 0 = none */
	struct candidate *cand;
	size_t ncand, capcand;
	struct segment *seg;
	size_t nseg, capseg;
	unsigned *seg_of_target;      /* header target -> 1 + its segment, 0 = absent */
	const struct ruleset *rs;
	enum rule_kind kind;
	pcre2_match_data *md;
	char *buf;                    /* the joined texts of one kind */
	size_t buflen, bufcap;
	pcre2_match_context *mctx;    /* the ruleset's, with an offset limit per run (pcre_exec) */
	struct timespec deadline;
	int has_deadline, out_of_time;
	unsigned checks;
	size_t look_bytes;            /* text matched since the clock was last read */
	unsigned long matches;        /* PCRE2 matches this scan (rules_scratch_matches) */
	unsigned long limit_hits;     /* of which PCRE2 gave up on at a limit */
	unsigned long cut;            /* of which were stopped at the deadline */
	struct eval_msg em;           /* eval: rules' view of the message */
};

void rules_prepare_targets(struct ruleset *rs)
{
	for (size_t i = 0; i < rs->nrules; i++) {
		struct rule *r = &rs->rules[i];
		if (!r->defined || r->kind != RK_HEADER || r->loaded != 1 || r->ev) continue;
		unsigned t;
		for (t = 0; t < rs->ntargets; t++)
			if (rs->targets[t].hmod == r->hmod && strcmp(rs->targets[t].hdr, r->hdr) == 0) break;
		if (t == rs->ntargets) {
			struct htarget *n = realloc(rs->targets, (rs->ntargets + 1) * sizeof *n);
			if (!n) abort();
			rs->targets = n;
			memset(&n[t], 0, sizeof n[t]);
			n[t].hdr = r->hdr;
			n[t].hmod = r->hmod;
			rs->ntargets++;
		}
		struct htarget *ht = &rs->targets[t];
		unsigned *v = realloc(ht->rules, (ht->n + 1) * sizeof *v);
		if (!v) abort();
		ht->rules = v;
		v[ht->n++] = (unsigned)i;
		r->target = t;
	}
}

struct rules_scratch *rules_scratch_new(const struct ruleset *rs)
{
	struct rules_scratch *s = calloc(1, sizeof *s);
	if (!s) return NULL;
	s->rs = rs;
	s->values = calloc(rs->nrules + 1, sizeof *s->values);
	s->cand_of = calloc(rs->nrules + 1, sizeof *s->cand_of);
	s->md = pcre2_match_data_create(1, NULL);
	s->mctx = pcre2_match_context_copy(rs->mctx);
	s->em.md = pcre2_match_data_create(16, NULL);
	s->em.rs = rs;
	s->seg_of_target = calloc(rs->ntargets + 1, sizeof *s->seg_of_target);
	if (!s->values || !s->cand_of || !s->md || !s->mctx || !s->em.md || !s->seg_of_target) { rules_scratch_free(s); return NULL; }
	for (int k = 0; k < RK_META; k++)
		if (rs->kdb[k].db && hs_alloc_scratch(rs->kdb[k].db, &s->hs) != HS_SUCCESS) {
			rules_scratch_free(s);
			return NULL;
		}
	return s;
}

void rules_scratch_free(struct rules_scratch *s)
{
	if (!s) return;
	if (s->hs) hs_free_scratch(s->hs);
	eval_msg_reset(&s->em);
	free(s->em.hdrs);
	if (s->em.md) pcre2_match_data_free(s->em.md);
	if (s->md) pcre2_match_data_free(s->md);
	if (s->mctx) pcre2_match_context_free(s->mctx);
	free(s->values);
	free(s->cand_of);
	free(s->seg_of_target);
	free(s->cand);
	free(s->seg);
	free(s->buf);
	free(s);
}

static int past_deadline(struct rules_scratch *s, const struct timespec *now)
{
	if (now->tv_sec > s->deadline.tv_sec ||
	    (now->tv_sec == s->deadline.tv_sec && now->tv_nsec >= s->deadline.tv_nsec))
		s->out_of_time = 1;
	return s->out_of_time;
}

static int over_budget(struct rules_scratch *s)
{
	if (!s->has_deadline) return 0;
	if (s->out_of_time) return 1;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	s->look_bytes = 0;
	return past_deadline(s, &now);
}

/* time_to_look - whether to read the clock after this PCRE2 match: every
 * 8th, or once LOOK_BYTES of text were matched since the last look.  One
 * match that runs into the match limit takes milliseconds, and a
 * candidate of a rule is checked on every segment after it, so a look
 * per 64 candidates let the rules run seconds past their deadline (the
 * scan's, which the front end does not wait past); the clock costs far
 * less than 8 matches.  A long text is looked at within the match
 * (pcre_exec). */
static int time_to_look(struct rules_scratch *s)
{
	return (++s->checks & 7) == 0 || s->look_bytes >= LOOK_BYTES;
}

/* pcre_exec - pcre2_match of a rule's code, bounded by the deadline.
 *
 * A regex can cost the square of its text's length or worse in one call
 * (stock TO_MALFORMED on a 64 KB To: line: 4.7 s with a 500 ms budget,
 * 256 KB: 39 s), and the clock is read between calls.  PCRE2's match
 * limit does not bound that: it counts per start offset, and the JIT
 * (unlike the interpreter) does not count a character repeat giving back
 * one character at a time, so one start offset of that regex alone scans
 * the text's length squared.  Body lines are cut at 2048 bytes as
 * SpamAssassin cuts them; header texts and "full" are not (nor does
 * SpamAssassin cut them), so a text longer than RUN_FROM is matched by
 * the interpreter, whose limit bounds each start offset, and its start
 * offsets are tried in runs, each call limited to starting at most a run
 * further (the offset limit; the whole text is still the subject, so
 * look-behinds, anchors and matches running past the run's end are as in
 * one call, and the first match found is the leftmost), with the clock
 * read between runs.  A run's length adapts to what one costs: doubled
 * while one takes under RUN_FAST_NS, halved over RUN_SLOW_NS.  Out of
 * time: RC_OUT_OF_TIME, the rule not hit. */
static int pcre_exec(struct rules_scratch *s, const pcre2_code *pc, const char *t, size_t len, size_t off)
{
	s->matches++;
	if (!s->has_deadline || len - off <= RUN_FROM) {
		s->look_bytes += len - off;
		return pcre2_match(pc, (PCRE2_SPTR)t, len, off, 0, s->md, s->rs->mctx);
	}
	if (s->out_of_time) return RC_OUT_OF_TIME;
	size_t run = RUN_FIRST;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int last = len - off <= run;
		pcre2_set_offset_limit(s->mctx, last ? PCRE2_UNSET : off + run);
		int rc = pcre2_match(pc, (PCRE2_SPTR)t, len, off, PCRE2_NO_JIT, s->md, s->mctx);
		if (last || rc != PCRE2_ERROR_NOMATCH) {
			s->look_bytes += len;
			return rc;
		}
		off += run + 1;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (past_deadline(s, &t1)) {
			s->cut++;
			return RC_OUT_OF_TIME;
		}
		long long ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
		if (ns < RUN_FAST_NS && run < RUN_MAX) run *= 2;
		else if (ns > RUN_SLOW_NS && run > RUN_MIN) run /= 2;
		t0 = t1;
	}
}

/* --- the joined buffer ------------------------------------------------------ */

static void buf_add(struct rules_scratch *s, const char *p, size_t n)
{
	if (s->buflen + n + 1 > MAX_JOINED_TEXT) n = MAX_JOINED_TEXT - 1 - s->buflen;
	if (s->buflen + n + 1 > s->bufcap) {
		s->bufcap = (s->buflen + n + 1) * 2;
		s->buf = realloc(s->buf, s->bufcap);
		if (!s->buf) abort();
	}
	memcpy(s->buf + s->buflen, p, n);
	s->buflen += n;
	s->buf[s->buflen] = '\0';
}

static void joined_reset(struct rules_scratch *s)
{
	s->buflen = 0;
	s->nseg = 0;
	buf_add(s, "", 0);
}

/* segments are separated by one "\n" so that Hyperscan's ^ and $ (all
 * patterns are compiled multi-line there) see the boundaries; PCRE2 then
 * checks each candidate on its own segment with the rule's real flags */
static void seg_begin(struct rules_scratch *s, unsigned target)
{
	if (s->nseg) buf_add(s, "\n", 1);
	if (s->nseg == s->capseg) {
		s->capseg = s->capseg ? s->capseg * 2 : 256;
		s->seg = realloc(s->seg, s->capseg * sizeof *s->seg);
		if (!s->seg) abort();
	}
	s->seg[s->nseg].off = s->buflen;
	s->seg[s->nseg].len = 0;
	s->seg[s->nseg].target = target;
	s->nseg++;
}

static void seg_end(struct rules_scratch *s)
{
	struct segment *g = &s->seg[s->nseg - 1];
	g->len = s->buflen - g->off;
}

static unsigned seg_of(const struct rules_scratch *s, unsigned long long end)
{
	size_t lo = 0, hi = s->nseg;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (s->seg[mid].off <= end) lo = mid; else hi = mid;
	}
	/* a match ending on the separator belongs to the segment before it */
	if (lo > 0 && end == s->seg[lo].off) lo--;
	return (unsigned)lo;
}

static int on_hs_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
	(void)from; (void)flags;
	struct rules_scratch *s = ctx;
	const struct kind_db *k = &s->rs->kdb[s->kind];
	if (id >= k->n || !s->nseg) return 0;
	unsigned r = k->rule_of[id];
	unsigned g = seg_of(s, to);
	/* one candidate per rule, from its earliest segment: each id (a cut
	 * regex has one per piece) is reported once, where it first matched,
	 * and a candidate per id had PCRE2 run the rule again on every
	 * segment after each, counting a "multiple" rule's hits again */
	if (s->cand_of[r]) {
		struct candidate *c = &s->cand[s->cand_of[r] - 1];
		if (g < c->seg) c->seg = g;
		return 0;
	}
	if (s->ncand == s->capcand) {
		s->capcand = s->capcand ? s->capcand * 2 : 256;
		s->cand = realloc(s->cand, s->capcand * sizeof *s->cand);
		if (!s->cand) abort();
	}
	s->cand[s->ncand].rule = r;
	s->cand[s->ncand].seg = g;
	s->ncand++;
	s->cand_of[r] = (uint32_t)s->ncand;
	return 0;
}

static unsigned pcre_count_code(struct rules_scratch *s, const struct rule *r, const pcre2_code *pc,
                                const char *t, size_t len, int multiple);

/* matches of r in text: 0, 1, or more when multiple (bounded by maxhits) */
static unsigned pcre_count(struct rules_scratch *s, const struct rule *r, const char *t, size_t len, int multiple)
{
	if (r->pc) return pcre_count_code(s, r, r->pc, t, len, multiple);
	unsigned n = 0;                 /* a regex cut into pieces: the sum of theirs */
	for (unsigned i = 0; i < r->npcx && (multiple || !n); i++)
		n += pcre_count_code(s, r, r->pcx[i], t, len, multiple);
	return n;
}

static unsigned pcre_count_code(struct rules_scratch *s, const struct rule *r, const pcre2_code *pc,
                                const char *t, size_t len, int multiple)
{
	unsigned n = 0;
	size_t off = 0;
	unsigned cap = r->maxhits ? r->maxhits : 1000;
	while (off <= len) {
		int rc = pcre_exec(s, pc, t, len, off);
		if (rc < 0) {               /* no match, or a limit: counts as not hit */
			if (rc != PCRE2_ERROR_NOMATCH && rc != RC_OUT_OF_TIME) s->limit_hits++;
			break;
		}
		n++;
		if (!multiple || n >= cap) break;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
		off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
	}
	return n;
}

static void add_count(struct rules_scratch *s, unsigned ri, unsigned c)
{
	const struct rule *r = &s->rs->rules[ri];
	s->values[ri] += c;
	if (r->maxhits && s->values[ri] > r->maxhits) s->values[ri] = r->maxhits;
}

/* Scan the joined segments of a kind: one Hyperscan pass, PCRE2 for the
 * candidates and for the rules Hyperscan refused. */
static void scan_joined(struct rules_scratch *s, enum rule_kind kind)
{
	const struct ruleset *rs = s->rs;
	const struct kind_db *k = &rs->kdb[kind];
	if (!s->nseg) return;
	s->kind = kind;
	s->ncand = 0;
	for (unsigned i = 0; i < k->n; i++) s->cand_of[k->rule_of[i]] = 0;
	if (k->db) hs_scan(k->db, s->buf, (unsigned)s->buflen, 0, s->hs, on_hs_match, s);
	for (size_t i = 0; i < s->ncand; i++) {
		unsigned ri = s->cand[i].rule;
		const struct rule *r = &rs->rules[ri];
		int multiple = (r->tflags & TF_MULTIPLE) != 0;
		if (s->values[ri] > 0 && !multiple) continue;
		if (kind == RK_HEADER) {       /* the rule's own header text */
			unsigned g = s->seg_of_target[r->target];
			if (g) add_count(s, ri, pcre_count(s, r, s->buf + s->seg[g - 1].off, s->seg[g - 1].len, multiple));
		} else {
			/* reported once, where it first matched: that segment and the
			 * ones after it (an earlier one cannot match alone) */
			for (size_t g = s->cand[i].seg; g < s->nseg; g++) {
				if (s->values[ri] > 0 && !multiple) break;
				add_count(s, ri, pcre_count(s, r, s->buf + s->seg[g].off, s->seg[g].len, multiple));
				if (time_to_look(s) && over_budget(s)) return;
			}
		}
		if (time_to_look(s) && over_budget(s)) return;
	}
	for (unsigned i = 0; i < k->npcre; i++) {
		unsigned ri = k->pcre_rules[i];
		const struct rule *r = &rs->rules[ri];
		int multiple = (r->tflags & TF_MULTIPLE) != 0;
		for (size_t g = 0; g < s->nseg; g++) {
			if (s->values[ri] > 0 && !multiple) break;
			if (kind == RK_HEADER && r->target != s->seg[g].target) continue;
			add_count(s, ri, pcre_count(s, r, s->buf + s->seg[g].off, s->seg[g].len, multiple));
			if (time_to_look(s) && over_budget(s)) return;
		}
	}
}

static void scan_lines(struct rules_scratch *s, enum rule_kind kind, const char *const *t, const size_t *len, size_t n)
{
	joined_reset(s);
	for (size_t i = 0; i < n; i++) {
		seg_begin(s, 0);
		buf_add(s, t[i], len ? len[i] : strlen(t[i]));
		seg_end(s);
	}
	scan_joined(s, kind);
}

/* --- header texts ------------------------------------------------------------ */

/* value of a field as SpamAssassin's decoded text: unfolded and trimmed */
static void add_value(struct rules_scratch *s, const struct rules_header *h, int raw)
{
	if (raw || !h->decoded) {
		const char *v = h->raw;
		if (raw) { buf_add(s, v, strlen(v)); return; }
		while (*v == ' ' || *v == '\t') v++;
		size_t start = s->buflen;
		for (; *v; v++) {
			if (*v == '\r' && v[1] == '\n') continue;
			if (*v == '\n') {
				while (v[1] == ' ' || v[1] == '\t') v++;
				buf_add(s, " ", 1);
				continue;
			}
			buf_add(s, v, 1);
		}
		while (s->buflen > start && isspace((unsigned char)s->buf[s->buflen - 1])) s->buf[--s->buflen] = '\0';
		return;
	}
	buf_add(s, h->decoded, strlen(h->decoded));
}

static int name_is(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

/* The fields of each name, for a header of any number of fields: an
 * open-addressing table from a name (any case) to its first field, and
 * each field linked to the next of its name.  Looking a name up by a
 * scan of every field cost fields x header targets, and ALL's grouping
 * by name fields squared (a few hundred thousand comparisons at the old
 * cut of 1,000 fields; billions at 100,000). */
struct name_index {
	const struct rules_header *hs;
	size_t  n;
	size_t  mask;      /* slots - 1 */
	size_t *slot;      /* first field of a name + 1; 0 = empty */
	size_t *next;      /* next field of the same name + 1; 0 = none */
};

static size_t name_hash(const char *p)
{
	size_t h = 2166136261u;                       /* FNV-1a over ASCII lower case */
	for (; *p; p++) h = (h ^ (unsigned char)tolower((unsigned char)*p)) * 16777619u;
	return h;
}

static void name_index_build(struct name_index *x, const struct rules_header *hs, size_t n)
{
	size_t slots = 16;
	while (slots < 2 * n) slots *= 2;
	x->hs = hs;
	x->n = n;
	x->mask = slots - 1;
	x->slot = calloc(slots, sizeof *x->slot);
	x->next = calloc(n + 1, sizeof *x->next);
	size_t *last = calloc(slots, sizeof *last);   /* last field of the name in a slot */
	if (!x->slot || !x->next || !last) abort();
	for (size_t i = 0; i < n; i++) {
		size_t k = name_hash(hs[i].name) & x->mask;
		while (x->slot[k] && !name_is(hs[x->slot[k] - 1].name, hs[i].name)) k = (k + 1) & x->mask;
		if (!x->slot[k]) x->slot[k] = i + 1;
		else x->next[last[k] - 1] = i + 1;
		last[k] = i + 1;
	}
	free(last);
}

static void name_index_free(struct name_index *x)
{
	free(x->slot);
	free(x->next);
}

/* name_first - the first field of that name + 1, or 0; name_next after it */
static size_t name_first(const struct name_index *x, const char *name)
{
	size_t k = name_hash(name) & x->mask;
	while (x->slot[k] && !name_is(x->hs[x->slot[k] - 1].name, name)) k = (k + 1) & x->mask;
	return x->slot[k];
}

static size_t name_next(const struct name_index *x, size_t f) { return x->next[f - 1]; }

/* SpamAssassin's get_all_headers (ALL, not :raw) stops at
 * MAX_HEADER_LENGTH bytes, counted by name in order of first appearance
 * (all of a name's fields, then the next name's): which fields it keeps
 * (calloc'd flags).  x indexes the message's fields (in->headers first). */
static unsigned char *all_headers_kept(struct rules_scratch *s, const struct rules_input *in,
                                       const struct name_index *x)
{
	unsigned char *keep = calloc(in->nheaders + 1, 1);
	if (!keep) abort();
	size_t size = 0;
	for (size_t i = 0; i < in->nheaders; i++) {
		const char *n = in->headers[i].name;
		if (name_is(n, "EnvelopeFrom")) continue;
		if (name_first(x, n) != i + 1) continue;     /* counted with its name */
		for (size_t f = i + 1; f && f - 1 < in->nheaders; f = name_next(x, f)) {
			size_t start = s->buflen;              /* a value's length: appended, then taken back */
			add_value(s, &in->headers[f - 1], 0);
			size_t len = s->buflen - start;
			s->buflen = start;
			s->buf[start] = '\0';
			size += strlen(in->headers[f - 1].name) + len + 1 + 2;
			if (size > MAX_HEADER_LENGTH) return keep;
			keep[f - 1] = 1;
		}
	}
	return keep;
}

/* appends the text of target t to the joined buffer; 0 if no such header.
 * x indexes the fields with the pseudo-headers (eval_headers). */
static int header_text(struct rules_scratch *s, const struct htarget *t, const struct rules_input *in,
                       const struct name_index *x)
{
	size_t start = s->buflen;
	int raw = t->hmod == HM_RAW || t->hmod == HM_ADDR_RAW || t->hmod == HM_NAME_RAW, found = 0;
	/* SpamAssassin's pseudo-header names are case-sensitive */
	if (strcmp(t->hdr, "ALL") == 0) {
		unsigned char *keep = raw ? NULL : all_headers_kept(s, in, x);
		for (size_t i = 0; i < in->nheaders; i++) {
			if (name_is(in->headers[i].name, "EnvelopeFrom")) continue;   /* pseudo */
			if (keep && !keep[i]) continue;
			buf_add(s, in->headers[i].name, strlen(in->headers[i].name));
			buf_add(s, ": ", 2);
			add_value(s, &in->headers[i], raw);
			buf_add(s, "\n", 1);
			found = 1;
		}
		free(keep);
		return found;
	}
	static const char *const msgid[] = { "Message-Id", "Resent-Message-Id", "X-Message-Id", NULL };
	static const char *const tocc[] = { "To", "Cc", NULL };
	const char *const *names = NULL;
	const char *single[2] = { t->hdr, NULL };
	if (strcmp(t->hdr, "MESSAGEID") == 0) names = msgid;
	else if (strcmp(t->hdr, "ToCc") == 0) names = tocc;
	else names = single;
	for (size_t n = 0; names[n]; n++)
		for (size_t f = name_first(x, names[n]); f; f = name_next(x, f)) {
			add_value(s, &x->hs[f - 1], raw);
			buf_add(s, "\n", 1);
			found = 1;
		}
	if (found && t->hmod >= HM_ADDR) {
		char out[1024];
		int ok = t->hmod == HM_ADDR || t->hmod == HM_ADDR_RAW ? rules_addr_of(s->buf + start, out, sizeof out)
		                            : rules_name_of(s->buf + start, out, sizeof out);
		s->buflen = start;
		s->buf[start] = '\0';
		if (ok == 0) buf_add(s, out, strlen(out));
	}
	return found;
}

static void scan_headers(struct rules_scratch *s, const struct rules_input *in)
{
	const struct ruleset *rs = s->rs;
	joined_reset(s);
	unsigned char *present = calloc(rs->ntargets + 1, 1);
	if (!present) abort();
	size_t nh;
	const struct rules_header *hs = eval_headers(&s->em, &nh);   /* with pseudo-headers */
	struct name_index x;
	name_index_build(&x, hs, nh);
	for (unsigned t = 0; t < rs->ntargets; t++) {
		const struct htarget *ht = &rs->targets[t];
		seg_begin(s, t);
		present[t] = (unsigned char)header_text(s, ht, in, &x);
		seg_end(s);
		if (!present[t]) s->nseg--;        /* absent: no segment (its text is empty) */
		s->seg_of_target[t] = present[t] ? (unsigned)s->nseg : 0;
	}
	name_index_free(&x);
	for (unsigned t = 0; t < rs->ntargets; t++)
		for (unsigned i = 0; i < rs->targets[t].n; i++) {
			unsigned ri = rs->targets[t].rules[i];
			if (rs->rules[ri].exists) s->values[ri] = present[t];
		}
	scan_joined(s, RK_HEADER);
	for (unsigned t = 0; t < rs->ntargets; t++) {
		const struct htarget *ht = &rs->targets[t];
		for (unsigned i = 0; i < ht->n; i++) {
			unsigned ri = ht->rules[i];
			const struct rule *r = &rs->rules[ri];
			if (r->exists) continue;
			if (!present[t]) {
				/* absent: only [if-unset: TEXT] gives something to match */
				if (!r->unset) { s->values[ri] = 0; continue; }
				unsigned c = pcre_count(s, r, r->unset, strlen(r->unset), 0);
				s->values[ri] = r->negate ? !c : (c > 0);
				continue;
			}
			if (r->negate) s->values[ri] = s->values[ri] > 0 ? 0 : 1;
			else if (s->values[ri] > 1 && !(r->tflags & TF_MULTIPLE)) s->values[ri] = 1;
		}
	}
	free(present);
}

int rules_scan(const struct ruleset *rs, struct rules_scratch *s, const struct rules_input *in,
               void (*on_hit)(void *arg, const struct rules_hit *h), void *arg)
{
	memset(s->values, 0, rs->nrules * sizeof *s->values);
	s->matches = 0;
	s->limit_hits = 0;
	s->cut = 0;
	s->look_bytes = 0;
	eval_msg_reset(&s->em);
	s->em.in = in;
	s->out_of_time = 0;
	s->has_deadline = in->time_budget_ms > 0;
	if (s->has_deadline) {
		clock_gettime(CLOCK_MONOTONIC, &s->deadline);
		s->deadline.tv_sec += in->time_budget_ms / 1000;
		s->deadline.tv_nsec += (long)(in->time_budget_ms % 1000) * 1000000L;
		if (s->deadline.tv_nsec >= 1000000000L) { s->deadline.tv_sec++; s->deadline.tv_nsec -= 1000000000L; }
	}
	scan_headers(s, in);
	if (!over_budget(s)) scan_lines(s, RK_BODY, in->body, in->body_len, in->nbody);
	if (!over_budget(s)) scan_lines(s, RK_RAWBODY, in->rawbody, in->rawbody_len, in->nrawbody);
	if (in->full && !over_budget(s)) scan_lines(s, RK_FULL, &in->full, &in->full_len, 1);
	if (!over_budget(s) && in->nuris) {
		/* every URI in the forms SpamAssassin's uri rules see */
		joined_reset(s);
		const struct rules_uri_set *set = eval_uri_set(&s->em);
		for (size_t i = 0; i < in->nuris; i++) {
			size_t nf;
			const char *const *forms = rules_uri_set_forms(set, i, &nf);
			for (size_t k = 0; k < nf; k++) {
				seg_begin(s, 0);
				buf_add(s, forms[k], strlen(forms[k]));
				seg_end(s);
			}
		}
		scan_joined(s, RK_URI);
	}
	for (size_t i = 0; i < rs->neval && !over_budget(s); i++) {
		unsigned ri = rs->eval_rules[i];
		const struct rule *r = &rs->rules[ri];
		double v = r->ev->fn(&s->em, r);
		if (v > 1 && !(r->tflags & TF_MULTIPLE)) v = 1;
		if (r->maxhits && v > r->maxhits) v = r->maxhits;
		s->values[ri] = v > 0 ? v : 0;
	}
	for (size_t i = 0; i < rs->nmeta_order; i++) {
		unsigned ri = rs->meta_order[i];
		s->values[ri] = meta_eval(&rs->rules[ri], s->values) != 0;
	}
	for (size_t i = 0; i < rs->nrules; i++) {
		const struct rule *r = &rs->rules[i];
		if (!r->defined || r->loaded != 1 || s->values[i] <= 0) continue;
		if (r->score == 0 || strncmp(r->name, "__", 2) == 0) continue;
		struct rules_hit h = { r->name, r->describe, r->score, (unsigned)s->values[i] };
		on_hit(arg, &h);
	}
	eval_msg_reset(&s->em);
	return s->out_of_time;
}

unsigned long rules_scratch_matches(const struct rules_scratch *s)
{
	return s->matches;
}

unsigned long rules_scratch_limit_hits(const struct rules_scratch *s, unsigned long *cut)
{
	if (cut) *cut = s->cut;
	return s->limit_hits;
}

void rules_net_queries(const struct ruleset *rs, struct rules_scratch *s, const struct rules_input *in,
                       void (*want)(void *arg, const char *qname, int rrtype), void *arg)
{
	(void)rs;
	eval_msg_reset(&s->em);
	s->em.in = in;
	eval_run_queries(&s->em, want, arg);
	eval_msg_reset(&s->em);
}

/* --- addresses ------------------------------------------------------------- */

size_t rules_addr_elem_len(const char *v, int semicolon)
{
	int q = 0, par = 0, ang = 0;
	size_t i;
	for (i = 0; v[i]; i++) {
		char c = v[i];
		if (c == '\\' && v[i + 1]) { i++; continue; }
		if (q) { if (c == '"') q = 0; continue; }
		if (c == '"') q = 1;
		else if (c == '(') par++;
		else if (c == ')' && par) par--;
		else if (c == '<') ang = 1;
		else if (c == '>') ang = 0;
		else if ((c == ',' || c == '\n' || (semicolon && c == ';')) && !par && !ang) break;
	}
	return i;
}

static void trim_copy(char *out, size_t outlen, const char *b, const char *e)
{
	while (b < e && isspace((unsigned char)*b)) b++;
	while (e > b && isspace((unsigned char)e[-1])) e--;
	if (e - b >= 2 && *b == '"' && e[-1] == '"') { b++; e--; }
	size_t n = (size_t)(e - b);
	if (n >= outlen) n = outlen - 1;
	memcpy(out, b, n);
	out[n] = '\0';
}

int rules_addr_of(const char *value, char *out, size_t outlen)
{
	size_t n = rules_addr_elem_len(value, 0);
	const char *lt = memchr(value, '<', n);
	if (lt) {
		const char *gt = memchr(lt, '>', n - (size_t)(lt - value));
		if (gt) { trim_copy(out, outlen, lt + 1, gt); return 0; }
	}
	/* no angle brackets: the address with comments removed */
	char tmp[1024];
	size_t j = 0;
	int par = 0;
	for (size_t i = 0; i < n && j + 1 < sizeof tmp; i++) {
		if (value[i] == '(') { par++; continue; }
		if (value[i] == ')' && par) { par--; continue; }
		if (!par) tmp[j++] = value[i];
	}
	tmp[j] = '\0';
	trim_copy(out, outlen, tmp, tmp + j);
	return 0;
}

int rules_name_of(const char *value, char *out, size_t outlen)
{
	size_t n = rules_addr_elem_len(value, 0);
	const char *lt = memchr(value, '<', n);
	if (lt) { trim_copy(out, outlen, value, lt); return 0; }
	const char *op = memchr(value, '(', n);
	if (op) {
		const char *cp = memchr(op, ')', n - (size_t)(op - value));
		if (cp) { trim_copy(out, outlen, op + 1, cp); return 0; }
	}
	out[0] = '\0';
	return 0;
}
