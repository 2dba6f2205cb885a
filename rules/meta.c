/* meta.c - expressions: meta rules (boolean and arithmetic over other
 * rules' hit counts) and the conditions of "if" lines.
 *
 * One recursive-descent parser with Perl's precedence (! and unary minus,
 * then * /, + -, comparisons, == !=, &&, ||) emits reverse Polish notation;
 * evaluation is a small stack machine over doubles. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "rules/rules_int.h"

#define MAX_META_TOKENS 4096
#define MAX_NEST 200

enum { OP_NUM = 0, OP_RULE = 1, OP_AND = 'A', OP_OR = 'O', OP_NOT = '!', OP_NEG = 'u',
       OP_EQ = 'E', OP_NE = 'N', OP_LE = 'L', OP_GE = 'G', OP_LT = '<', OP_GT = '>',
       OP_ADD = '+', OP_SUB = '-', OP_MUL = '*', OP_DIV = '/' };

struct eparser {
	const char *s;
	struct meta_tok *out;
	size_t n, cap;
	int nest;
	int failed;
	/* resolve identifier [name,len) at *pos (may advance it past "(...)"):
	 * fills tok; 0 or -1 */
	int (*ident)(void *arg, const char **pos, const char *name, size_t len, struct meta_tok *tok);
	void *arg;
};

static void emit(struct eparser *p, struct meta_tok t)
{
	if (p->n >= MAX_META_TOKENS) { p->failed = 1; return; }
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 32;
		struct meta_tok *o = realloc(p->out, p->cap * sizeof *o);
		if (!o) abort();
		p->out = o;
	}
	p->out[p->n++] = t;
}

static void emit_op(struct eparser *p, int op) { struct meta_tok t = { .op = op }; emit(p, t); }

static void ws(struct eparser *p) { while (isspace((unsigned char)*p->s)) p->s++; }

static void parse_or(struct eparser *p);

static void parse_unary(struct eparser *p)
{
	ws(p);
	if (p->failed) return;
	if (++p->nest > MAX_NEST) { p->failed = 1; return; }
	const char *s = p->s;
	if (*s == '!' && s[1] != '=') { p->s++; parse_unary(p); emit_op(p, OP_NOT); }
	else if (*s == '-') { p->s++; parse_unary(p); emit_op(p, OP_NEG); }
	else if (*s == '+') { p->s++; parse_unary(p); }
	else if (*s == '(') {
		p->s++;
		parse_or(p);
		ws(p);
		if (*p->s != ')') p->failed = 1; else p->s++;
	} else if (isdigit((unsigned char)*s) || (*s == '.' && isdigit((unsigned char)s[1]))) {
		char *end;
		struct meta_tok t = { .op = OP_NUM, .num = strtod(s, &end) };
		p->s = end;
		emit(p, t);
	} else if (isalpha((unsigned char)*s) || *s == '_') {
		size_t n = 0;
		while (isalnum((unsigned char)s[n]) || s[n] == '_' || (s[n] == ':' && s[n + 1] == ':')) {
			if (s[n] == ':') n++;
			n++;
		}
		struct meta_tok t = { 0 };
		p->s = s + n;
		if (p->ident(p->arg, &p->s, s, n, &t) < 0) p->failed = 1;
		else emit(p, t);
	} else {
		p->failed = 1;
	}
	p->nest--;
}

static void parse_mul(struct eparser *p)
{
	parse_unary(p);
	for (;;) {
		ws(p);
		char c = *p->s;
		if ((c == '*' || c == '/') && p->s[1] != c) { p->s++; parse_unary(p); emit_op(p, c); }
		else return;
	}
}

static void parse_add(struct eparser *p)
{
	parse_mul(p);
	for (;;) {
		ws(p);
		char c = *p->s;
		if (c == '+' || c == '-') { p->s++; parse_mul(p); emit_op(p, c); }
		else return;
	}
}

static void parse_cmp(struct eparser *p)
{
	parse_add(p);
	for (;;) {
		ws(p);
		const char *s = p->s;
		int op;
		if (s[0] == '<' && s[1] == '=') { op = OP_LE; p->s += 2; }
		else if (s[0] == '>' && s[1] == '=') { op = OP_GE; p->s += 2; }
		else if (s[0] == '<') { op = OP_LT; p->s++; }
		else if (s[0] == '>') { op = OP_GT; p->s++; }
		else return;
		parse_add(p);
		emit_op(p, op);
	}
}

static void parse_eq(struct eparser *p)
{
	parse_cmp(p);
	for (;;) {
		ws(p);
		const char *s = p->s;
		int op;
		if (s[0] == '=' && s[1] == '=') op = OP_EQ;
		else if (s[0] == '!' && s[1] == '=') op = OP_NE;
		else return;
		p->s += 2;
		parse_cmp(p);
		emit_op(p, op);
	}
}

static void parse_and(struct eparser *p)
{
	parse_eq(p);
	for (;;) {
		ws(p);
		if (p->s[0] == '&' && p->s[1] == '&') { p->s += 2; parse_eq(p); emit_op(p, OP_AND); }
		else return;
	}
}

static void parse_or(struct eparser *p)
{
	parse_and(p);
	for (;;) {
		ws(p);
		if (p->s[0] == '|' && p->s[1] == '|') { p->s += 2; parse_and(p); emit_op(p, OP_OR); }
		else return;
	}
}

static int run(const struct meta_tok *t, size_t n, const double *values, double *out)
{
	double st[MAX_NEST + 8];
	size_t sp = 0;
	for (size_t i = 0; i < n; i++) {
		int op = t[i].op;
		if (op == OP_NUM || op == OP_RULE) {
			if (sp >= sizeof st / sizeof *st) return -1;
			st[sp++] = op == OP_NUM ? t[i].num : values[t[i].rule];
			continue;
		}
		if (op == OP_NOT || op == OP_NEG) {
			if (!sp) return -1;
			st[sp - 1] = op == OP_NOT ? (st[sp - 1] == 0) : -st[sp - 1];
			continue;
		}
		if (sp < 2) return -1;
		double b = st[--sp], a = st[sp - 1], r;
		switch (op) {
		case OP_AND: r = (a != 0) && (b != 0); break;
		case OP_OR:  r = (a != 0) || (b != 0); break;
		case OP_EQ:  r = a == b; break;
		case OP_NE:  r = a != b; break;
		case OP_LE:  r = a <= b; break;
		case OP_GE:  r = a >= b; break;
		case OP_LT:  r = a < b; break;
		case OP_GT:  r = a > b; break;
		case OP_ADD: r = a + b; break;
		case OP_SUB: r = a - b; break;
		case OP_MUL: r = a * b; break;
		case OP_DIV: r = b != 0 ? a / b : 0; break;
		default: return -1;
		}
		st[sp - 1] = r;
	}
	if (sp != 1) return -1;
	*out = st[0];
	return 0;
}

/* --- meta rules ----------------------------------------------------------- */

static int meta_ident(void *arg, const char **pos, const char *name, size_t len, struct meta_tok *tok)
{
	struct ruleset *rs = arg;
	(void)pos;
	int k = rs_find(rs, name, len);
	if (k < 0) {                 /* a rule defined nowhere counts as not hit, as in SpamAssassin */
		tok->op = OP_NUM;
		tok->num = 0;
		return 0;
	}
	tok->op = OP_RULE;
	tok->rule = (unsigned)k;
	return 0;
}

int meta_compile(struct ruleset *rs, struct rule *r)
{
	struct eparser p = { .s = r->meta_src, .ident = meta_ident, .arg = rs };
	parse_or(&p);
	ws(&p);
	if (p.failed || *p.s || !p.n) {
		free(p.out);
		rule_not_loaded(r, "meta expression not understood near \"%.40s\"", p.s);
		return -1;
	}
	/* check it evaluates (stack shape) with all zeros */
	double *zeros = calloc(rs->nrules + 1, sizeof *zeros), v;
	int ok = run(p.out, p.n, zeros, &v);
	free(zeros);
	if (ok < 0) {
		free(p.out);
		rule_not_loaded(r, "meta expression malformed");
		return -1;
	}
	r->meta = p.out;
	r->nmeta = p.n;
	return 0;
}

double meta_eval(const struct rule *r, const double *values)
{
	double v = 0;
	if (run(r->meta, r->nmeta, values, &v) < 0) return 0;
	return v;
}

/* --- "if" conditions ------------------------------------------------------- */

int rules_plugin_present(const char *name, size_t len);

/* SpamAssassin version mailwarden's rule handling follows (4.0.1) */
#define SA_VERSION 4.000001

static int if_ident(void *arg, const char **pos, const char *name, size_t len, struct meta_tok *tok)
{
	(void)arg;
	tok->op = OP_NUM;
	const char *s = *pos;
	while (isspace((unsigned char)*s)) s++;
	int call = *s == '(';
	const char *a = NULL;
	size_t alen = 0;
	if (call) {
		a = s + 1;
		const char *e = strchr(a, ')');
		if (!e) return -1;
		alen = (size_t)(e - a);
		while (alen && isspace((unsigned char)a[0])) { a++; alen--; }
		while (alen && isspace((unsigned char)a[alen - 1])) alen--;
		*pos = e + 1;
	}
	if (len == 7 && memcmp(name, "version", 7) == 0 && !call) { tok->num = SA_VERSION; return 0; }
	if (len == 12 && memcmp(name, "perl_version", 12) == 0 && !call) { tok->num = 5.036; return 0; }
	if (len == 6 && memcmp(name, "plugin", 6) == 0 && call) {
		tok->num = rules_plugin_present(a, alen);
		return 0;
	}
	if (len == 3 && memcmp(name, "can", 3) == 0 && call) {
		/* Mail::SpamAssassin::Conf::feature_* of SpamAssassin 4.0.1: all
		 * present; a plugin's method only when that plugin is loaded */
		static const char plug[] = "Mail::SpamAssassin::Plugin::";
		tok->num = 1;
		if (alen > sizeof plug - 1 && strncmp(a, plug, sizeof plug - 1) == 0) {
			const char *pn = a + sizeof plug - 1, *sep = strstr(pn, "::");
			size_t pl = sep && (size_t)(sep - a) < alen ? (size_t)(sep - pn) : alen - (sizeof plug - 1);
			tok->num = rules_plugin_present(pn, pl);
		}
		return 0;
	}
	if (len == 10 && memcmp(name, "has_plugin", 10) == 0 && call) {
		tok->num = rules_plugin_present(a, alen);
		return 0;
	}
	return -1;
}

int if_eval(const char *expr)
{
	struct eparser p = { .s = expr, .ident = if_ident };
	parse_or(&p);
	ws(&p);
	double v;
	int rc = -1;
	if (!p.failed && !*p.s && p.n && run(p.out, p.n, NULL, &v) == 0) rc = v != 0;
	free(p.out);
	return rc;
}
