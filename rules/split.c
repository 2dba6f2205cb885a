/* split.c - a regex too large for PCRE2 (SpamAssassin's replace_tag
 * expansions reach hundreds of KB, past PCRE2's 64K compiled-size limit)
 * becomes several smaller regexes whose union matches the same texts.
 *
 * P(?:A|B|C)S matches exactly where one of PAS, PBS, PCS matches, so an
 * unquantified alternation group on the pattern's top level (or the top
 * level itself) can be cut into runs of alternatives, each in the same
 * context.  Patterns with back-references are left alone (cutting would
 * renumber the groups they refer to). */
#include <stdlib.h>
#include <string.h>
#include "rules/rules_int.h"

#define SPLIT_MIN_CHUNK 1000      /* alternatives' characters per piece, at least */
#define SPLIT_MAX_PIECES 64

/* end of the bracket expression starting at p ('['), or NULL */
static const char *class_end(const char *p)
{
	const char *q = p + 1;
	if (*q == '^') q++;
	if (*q == ']') q++;               /* a literal ] first */
	for (; *q; q++) {
		if (*q == '\\' && q[1]) { q++; continue; }
		if (*q == '[' && q[1] == ':') {    /* [:alpha:] */
			const char *e = strstr(q + 2, ":]");
			if (e) { q = e + 1; continue; }
		}
		if (*q == ']') return q;
	}
	return NULL;
}

static int has_backref(const char *re)
{
	for (const char *p = re; *p; p++) {
		if (*p != '\\' || !p[1]) continue;
		char c = p[1];
		if ((c >= '1' && c <= '9') || c == 'g' || c == 'k') return 1;
		p++;
	}
	return strstr(re, "(?P=") != NULL || strstr(re, "(?&") != NULL || strstr(re, "(?R") != NULL;
}

/* "(", "(?:" or "(?flags:": a group whose alternatives may be cut apart
 * (not a lookaround, atomic group, conditional or comment) */
static int plain_group(const char *open)
{
	if (open[1] != '?') return 1;
	const char *q = open + 2;
	while (*q && strchr("imsxn-", *q)) q++;
	return *q == ':';
}

#define MAX_GROUPS 20000

struct group {
	const char *open, *close;     /* '(' and its ')' */
	int parent;                   /* index, -1 = none */
	int bars;                     /* '|' directly inside */
	int cuttable;                 /* plain, and unquantified or just optional */
};

/* The groups of [b,e) and the bars on its top level; -1 if malformed or
 * too many groups. */
static int find_groups(const char *b, const char *e, struct group *g, int *ng, int *topbars)
{
	int n = 0, cur = -1;
	*topbars = 0;
	for (const char *p = b; p < e; p++) {
		if (*p == '\\') { if (p + 1 < e) p++; continue; }
		if (*p == '[') { const char *ce = class_end(p); if (!ce || ce >= e) return -1; p = ce; continue; }
		if (*p == '(') {
			if (n == MAX_GROUPS) return -1;
			g[n] = (struct group){ .open = p, .parent = cur, .cuttable = plain_group(p) };
			cur = n++;
			continue;
		}
		if (*p == ')') {
			if (cur < 0) return -1;
			g[cur].close = p;
			char q = p + 1 < e ? p[1] : '\0';
			/* P(?:A|B)?S is the union of P(?:A)?S and P(?:B)?S too; not so
			 * for * + {n,m}, nor for a possessive ?+ */
			char q2 = p + 2 < e ? p[2] : '\0';
			if (q == '*' || q == '+' || q == '{' || (q == '?' && q2 == '+')) g[cur].cuttable = 0;
			cur = g[cur].parent;
			continue;
		}
		if (*p == '|') { if (cur < 0) (*topbars)++; else g[cur].bars++; }
	}
	*ng = n;
	return cur == -1 ? 0 : -1;
}

struct alts { const char **b, **e; int n; };

/* the alternatives directly inside [b,e) (bars at its own level) */
static void alternatives(const char *b, const char *e, int nbars, struct alts *a)
{
	a->b = malloc((size_t)(nbars + 1) * sizeof *a->b);
	a->e = malloc((size_t)(nbars + 1) * sizeof *a->e);
	if (!a->b || !a->e) abort();
	int depth = 0, k = 0;
	a->b[0] = b;
	for (const char *p = b; p < e; p++) {
		if (*p == '\\') { if (p + 1 < e) p++; continue; }
		if (*p == '[') { p = class_end(p); continue; }
		if (*p == '(') depth++;
		else if (*p == ')') depth--;
		else if (*p == '|' && depth == 0 && k < nbars) { a->e[k] = p; a->b[++k] = p + 1; }
	}
	a->e[k] = e;
	a->n = k + 1;
}

static char *join3(const char *p, size_t pn, const char *m, size_t mn, const char *s, size_t sn)
{
	char *o = malloc(pn + mn + sn + 1);
	if (!o) abort();
	memcpy(o, p, pn);
	memcpy(o + pn, m, mn);
	memcpy(o + pn + mn, s, sn);
	o[pn + mn + sn] = '\0';
	return o;
}

/* rules_split_regex - pieces whose union is re (malloc'd strings in *out),
 * each about target characters if the cut allows, their number, or 0
 * when the pattern cannot be cut so.  The alternation
 * cut is the widest one that sits in no repeated group nor lookaround. */
size_t rules_split_regex(const char *re, size_t target, char ***out)
{
	*out = NULL;
	if (has_backref(re)) return 0;
	size_t len = strlen(re);
	const char *b = re, *e = re + len;
	struct group *g = malloc(MAX_GROUPS * sizeof *g);
	if (!g) abort();
	int ng, topbars;
	if (find_groups(b, e, g, &ng, &topbars) < 0) { free(g); return 0; }
	const char *ab = b, *ae = e;          /* the span whose alternatives are cut */
	int nbars = topbars;
	if (!topbars) {
		int best = -1;
		for (int i = 0; i < ng; i++) {
			if (!g[i].bars) continue;
			int ok = 1;
			for (int k = i; k >= 0 && ok; k = g[k].parent) ok = g[k].cuttable;
			if (ok && (best < 0 || g[i].close - g[i].open > g[best].close - g[best].open)) best = i;
		}
		if (best < 0) { free(g); return 0; }
		const char *inner = g[best].open + 1;
		if (*inner == '?') { while (*inner != ':') inner++; inner++; }   /* plain_group() saw the ':' */
		ab = inner;
		ae = g[best].close;
		nbars = g[best].bars;
	}
	free(g);
	struct alts a;
	alternatives(ab, ae, nbars, &a);
	/* each piece about target long: the context is in every one */
	size_t context = len - (size_t)(ae - ab);
	size_t budget = target > context + SPLIT_MIN_CHUNK ? target - context : SPLIT_MIN_CHUNK;
	char **pieces = calloc(SPLIT_MAX_PIECES, sizeof *pieces);
	if (!pieces) abort();
	size_t np = 0;
	int i = 0, ok = 1;
	while (i < a.n) {
		if (np == SPLIT_MAX_PIECES) { ok = 0; break; }
		int j = i;
		size_t sz = 0;
		while (j < a.n && (j == i || sz + (size_t)(a.e[j] - a.b[j]) < budget)) { sz += (size_t)(a.e[j] - a.b[j]) + 1; j++; }
		/* the alternatives a[i..j-1] as written, in the cut group's context */
		pieces[np++] = join3(re, (size_t)(ab - re), a.b[i], (size_t)(a.e[j - 1] - a.b[i]), ae, (size_t)(e - ae));
		i = j;
	}
	free(a.b);
	free(a.e);
	if (!ok || np < 2) {
		for (size_t k = 0; k < np; k++) free(pieces[k]);
		free(pieces);
		return 0;
	}
	*out = pieces;
	return np;
}
