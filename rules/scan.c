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
#include "rules/rules_int.h"

#define MAX_HEADER_TEXT (256u * 1024)

struct rules_scratch {
	hs_scratch_t *hs;
	double *values;               /* per rule: hit count (metas: result) */
	uint32_t *seen;               /* per rule: == gen when Hyperscan reported it for this text */
	uint32_t gen;
	unsigned *hits;               /* rules Hyperscan reported for this text */
	size_t nhits;
	unsigned cur_target;
	const struct ruleset *rs;
	enum rule_kind kind;
	pcre2_match_data *md;
	char *buf;                    /* header text being built */
	size_t buflen, bufcap;
	struct timespec deadline;
	int has_deadline, out_of_time;
	unsigned checks;
};

void rules_prepare_targets(struct ruleset *rs)
{
	for (size_t i = 0; i < rs->nrules; i++) {
		struct rule *r = &rs->rules[i];
		if (!r->defined || r->kind != RK_HEADER || r->loaded != 1) continue;
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
	s->seen = calloc(rs->nrules + 1, sizeof *s->seen);
	s->hits = calloc(rs->nrules + 1, sizeof *s->hits);
	s->md = pcre2_match_data_create(1, NULL);
	if (!s->values || !s->seen || !s->hits || !s->md) { rules_scratch_free(s); return NULL; }
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
	if (s->md) pcre2_match_data_free(s->md);
	free(s->values);
	free(s->seen);
	free(s->hits);
	free(s->buf);
	free(s);
}

static int over_budget(struct rules_scratch *s)
{
	if (!s->has_deadline) return 0;
	if (s->out_of_time) return 1;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec > s->deadline.tv_sec ||
	    (now.tv_sec == s->deadline.tv_sec && now.tv_nsec >= s->deadline.tv_nsec))
		s->out_of_time = 1;
	return s->out_of_time;
}

static int on_hs_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
	(void)from; (void)to; (void)flags;
	struct rules_scratch *s = ctx;
	const struct kind_db *k = &s->rs->kdb[s->kind];
	if (id >= k->n) return 0;
	unsigned r = k->rule_of[id];
	if (s->seen[r] == s->gen) return 0;
	if (s->kind == RK_HEADER && s->rs->rules[r].target != s->cur_target) return 0;
	s->seen[r] = s->gen;
	s->hits[s->nhits++] = r;
	return 0;
}

/* matches of r in text: 0, 1, or more when multiple (bounded by maxhits) */
static unsigned pcre_count(struct rules_scratch *s, const struct rule *r, const char *t, size_t len, int multiple)
{
	unsigned n = 0;
	size_t off = 0;
	unsigned cap = r->maxhits ? r->maxhits : 1000;
	while (off <= len) {
		int rc = pcre2_match(r->pc, (PCRE2_SPTR)t, len, off, 0, s->md, s->rs->mctx);
		if (rc < 0) break;          /* no match, or the match limit: counts as not hit */
		n++;
		if (!multiple || n >= cap) break;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
		off = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
	}
	return n;
}

/* one text of a kind: adds to the rules' values */
static void scan_text(struct rules_scratch *s, enum rule_kind kind, const char *t, size_t len)
{
	const struct ruleset *rs = s->rs;
	const struct kind_db *k = &rs->kdb[kind];
	s->kind = kind;
	s->gen++;
	s->nhits = 0;
	if (k->db) hs_scan(k->db, t ? t : "", (unsigned)len, 0, s->hs, on_hs_match, s);
	for (size_t i = 0; i < s->nhits; i++) {
		const struct rule *r = &rs->rules[s->hits[i]];
		int multiple = (r->tflags & TF_MULTIPLE) != 0;
		if (s->values[s->hits[i]] > 0 && !multiple) continue;
		unsigned c = (r->mode == RM_HS && !multiple) ? 1 : pcre_count(s, r, t, len, multiple);
		s->values[s->hits[i]] += c;
		if (r->maxhits && s->values[s->hits[i]] > r->maxhits) s->values[s->hits[i]] = r->maxhits;
	}
	for (unsigned i = 0; i < k->npcre; i++) {
		unsigned ri = k->pcre_rules[i];
		const struct rule *r = &rs->rules[ri];
		int multiple = (r->tflags & TF_MULTIPLE) != 0;
		if (kind == RK_HEADER && r->target != s->cur_target) continue;
		if (s->values[ri] > 0 && !multiple) continue;
		s->values[ri] += pcre_count(s, r, t, len, multiple);
		if (r->maxhits && s->values[ri] > r->maxhits) s->values[ri] = r->maxhits;
		if ((++s->checks & 63) == 0 && over_budget(s)) return;
	}
}

/* --- header texts ------------------------------------------------------------ */

static void buf_add(struct rules_scratch *s, const char *p, size_t n)
{
	if (s->buflen + n + 1 > MAX_HEADER_TEXT) n = MAX_HEADER_TEXT - 1 - s->buflen;
	if (s->buflen + n + 1 > s->bufcap) {
		s->bufcap = (s->buflen + n + 1) * 2;
		s->buf = realloc(s->buf, s->bufcap);
		if (!s->buf) abort();
	}
	memcpy(s->buf + s->buflen, p, n);
	s->buflen += n;
	s->buf[s->buflen] = '\0';
}

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

/* builds the text of target t in s->buf; 0 if no such header */
static int header_text(struct rules_scratch *s, const struct htarget *t, const struct rules_input *in)
{
	s->buflen = 0;
	buf_add(s, "", 0);
	int raw = t->hmod == HM_RAW, found = 0;
	/* SpamAssassin's pseudo-header names are case-sensitive */
	if (strcmp(t->hdr, "ALL") == 0) {
		for (size_t i = 0; i < in->nheaders; i++) {
			if (name_is(in->headers[i].name, "EnvelopeFrom")) continue;   /* pseudo */
			buf_add(s, in->headers[i].name, strlen(in->headers[i].name));
			buf_add(s, ": ", 2);
			add_value(s, &in->headers[i], raw);
			buf_add(s, "\n", 1);
			found = 1;
		}
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
		for (size_t i = 0; i < in->nheaders; i++) {
			if (!name_is(in->headers[i].name, names[n])) continue;
			add_value(s, &in->headers[i], raw);
			buf_add(s, "\n", 1);
			found = 1;
		}
	if (found && (t->hmod == HM_ADDR || t->hmod == HM_NAME)) {
		char out[1024];
		int ok = t->hmod == HM_ADDR ? rules_addr_of(s->buf, out, sizeof out) : rules_name_of(s->buf, out, sizeof out);
		s->buflen = 0;
		buf_add(s, "", 0);
		if (ok == 0) buf_add(s, out, strlen(out));
	}
	return found;
}

static void scan_headers(struct rules_scratch *s, const struct rules_input *in)
{
	const struct ruleset *rs = s->rs;
	for (unsigned t = 0; t < rs->ntargets && !over_budget(s); t++) {
		const struct htarget *ht = &rs->targets[t];
		int present = header_text(s, ht, in);
		s->cur_target = t;
		int need_regex = 0;
		for (unsigned i = 0; i < ht->n; i++) {
			const struct rule *r = &rs->rules[ht->rules[i]];
			if (r->exists) s->values[ht->rules[i]] = present;
			else need_regex = 1;
		}
		if (!need_regex) continue;
		if (present) scan_text(s, RK_HEADER, s->buf, s->buflen);
		for (unsigned i = 0; i < ht->n; i++) {
			unsigned ri = ht->rules[i];
			const struct rule *r = &rs->rules[ri];
			if (r->exists) continue;
			if (!present) {
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
}

int rules_scan(const struct ruleset *rs, struct rules_scratch *s, const struct rules_input *in,
               void (*on_hit)(void *arg, const struct rules_hit *h), void *arg)
{
	memset(s->values, 0, rs->nrules * sizeof *s->values);
	s->out_of_time = 0;
	s->has_deadline = in->time_budget_ms > 0;
	if (s->has_deadline) {
		clock_gettime(CLOCK_MONOTONIC, &s->deadline);
		s->deadline.tv_sec += in->time_budget_ms / 1000;
		s->deadline.tv_nsec += (long)(in->time_budget_ms % 1000) * 1000000L;
		if (s->deadline.tv_nsec >= 1000000000L) { s->deadline.tv_sec++; s->deadline.tv_nsec -= 1000000000L; }
	}
	scan_headers(s, in);
	for (size_t i = 0; i < in->nbody && !over_budget(s); i++)
		scan_text(s, RK_BODY, in->body[i], in->body_len[i]);
	for (size_t i = 0; i < in->nrawbody && !over_budget(s); i++)
		scan_text(s, RK_RAWBODY, in->rawbody[i], in->rawbody_len[i]);
	if (in->full && !over_budget(s)) scan_text(s, RK_FULL, in->full, in->full_len);
	for (size_t i = 0; i < in->nuris && !over_budget(s); i++)
		scan_text(s, RK_URI, in->uris[i], strlen(in->uris[i]));
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
	return s->out_of_time;
}

/* --- addresses ------------------------------------------------------------- */

/* first comma-separated address outside quotes, comments and <> */
static size_t first_addr_len(const char *v)
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
		else if ((c == ',' || c == '\n') && !par && !ang) break;
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
	size_t n = first_addr_len(value);
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
	size_t n = first_addr_len(value);
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
