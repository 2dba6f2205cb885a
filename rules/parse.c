/* parse.c - reads SpamAssassin-style rule files into a ruleset.
 *
 * Lines are "directive NAME args".  Unsupported rule types and eval: tests
 * are recorded as not loaded (with a reason) so that reports can count
 * them; a malformed line is an error naming FILE:LINE.  ifplugin/if blocks
 * are honoured: a plugin counts as present when SpamAssassin's default
 * Debian configuration loads it and mailwarden can do its part (Check,
 * ReplaceTags...), so the same blocks are active as in SpamAssassin. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "rules/eval.h"
#include "rules/rules_int.h"

#define MAX_INCLUDE_DEPTH 8
#define MAX_IF_DEPTH      64
#define MAX_RULE_FILE     (16u << 20)
#define MAX_RULES         200000

/* Plugins SpamAssassin's Debian configuration loads (the .pre files of /etc/spamassassin). */
static const char *const plugins_present[] = {
	"URIDNSBL", "SPF", "Pyzor", "Razor2", "SpamCop", "AutoLearnThreshold",
	"WelcomeListSubject", "MIMEHeader", "ReplaceTags", "DKIM", "Check",
	"HTTPSMismatch", "URIDetail", "Bayes", "BodyEval", "DNSEval", "HTMLEval",
	"HeaderEval", "MIMEEval", "RelayEval", "URIEval", "WLBLEval", "VBounce",
	"ImageInfo", "FreeMail", "AskDNS", "HashBL", "DMARC", NULL
};

int rules_plugin_present(const char *name, size_t len);
int rules_plugin_present(const char *name, size_t len)
{
	static const char pfx[] = "Mail::SpamAssassin::Plugin::";
	if (len > sizeof pfx - 1 && strncmp(name, pfx, sizeof pfx - 1) == 0) {
		name += sizeof pfx - 1;
		len -= sizeof pfx - 1;
	}
	for (size_t i = 0; plugins_present[i]; i++)
		if (strlen(plugins_present[i]) == len && memcmp(plugins_present[i], name, len) == 0)
			return 1;
	return 0;
}

static uint64_t hash_name(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
	return h;
}

int rs_find(const struct ruleset *rs, const char *name, size_t len)
{
	if (!rs->hashcap) return -1;
	size_t m = rs->hashcap - 1, i = hash_name(name, len) & m;
	while (rs->hash[i]) {
		const struct rule *r = &rs->rules[rs->hash[i] - 1];
		if (strlen(r->name) == len && memcmp(r->name, name, len) == 0)
			return (int)(rs->hash[i] - 1);
		i = (i + 1) & m;
	}
	return -1;
}

static void rehash(struct ruleset *rs, size_t cap)
{
	free(rs->hash);
	rs->hash = calloc(cap, sizeof *rs->hash);
	if (!rs->hash) abort();
	rs->hashcap = cap;
	for (size_t k = 0; k < rs->nrules; k++) {
		size_t i = hash_name(rs->rules[k].name, strlen(rs->rules[k].name)) & (cap - 1);
		while (rs->hash[i]) i = (i + 1) & (cap - 1);
		rs->hash[i] = (unsigned)k + 1;
	}
}

struct rule *rs_rule(struct ruleset *rs, const char *name, size_t len, int create)
{
	int k = rs_find(rs, name, len);
	if (k >= 0) return &rs->rules[k];
	if (!create || rs->nrules >= MAX_RULES) return NULL;
	if (rs->nrules == rs->caprules) {
		size_t cap = rs->caprules ? rs->caprules * 2 : 256;
		struct rule *n = realloc(rs->rules, cap * sizeof *n);
		if (!n) abort();
		rs->rules = n;
		rs->caprules = cap;
	}
	struct rule *r = &rs->rules[rs->nrules];
	memset(r, 0, sizeof *r);
	r->name = strndup(name, len);
	if (!r->name) abort();
	r->kind = RK_COUNT;
	rs->nrules++;
	if (rs->nrules * 2 > rs->hashcap) rehash(rs, rs->hashcap ? rs->hashcap * 2 : 1024);
	else {
		size_t i = hash_name(name, len) & (rs->hashcap - 1);
		while (rs->hash[i]) i = (i + 1) & (rs->hashcap - 1);
		rs->hash[i] = (unsigned)rs->nrules;
	}
	return r;
}

void rule_not_loaded(struct rule *r, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	free(r->why);
	r->why = strdup(buf);
	r->loaded = 0;
}

struct ruleset *rules_new(void)
{
	struct ruleset *rs = calloc(1, sizeof *rs);
	return rs;
}

void rules_set_score_set(struct ruleset *rs, int set)
{
	rs->score_set = set < 0 ? 0 : set > 3 ? 3 : set;
}

static void reset_test(struct rule *r)
{
	free(r->hdr); r->hdr = NULL;
	free(r->unset); r->unset = NULL;
	free(r->re); r->re = NULL;
	free(r->meta_src); r->meta_src = NULL;
	free(r->why); r->why = NULL;
	free(r->file); r->file = NULL;
	eval_free_rule(r);
	r->exists = r->negate = 0;
	r->hmod = HM_NONE;
	r->reflags = 0;
}

static int is_name_char(int c) { return isalnum(c) || c == '_'; }

/* --- one file ------------------------------------------------------------- */

struct pstate {
	struct ruleset *rs;
	const char *file;
	unsigned line;
	char *err;
	size_t errlen;
	int active[MAX_IF_DEPTH];     /* is this block's branch active */
	int parent[MAX_IF_DEPTH];     /* was the enclosing block active */
	int depth;
};

static int perr(struct pstate *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(struct pstate *p, const char *fmt, ...)
{
	char buf[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%s:%u: %s", p->file, p->line, buf);
	return -1;
}

static int active(const struct pstate *p)
{
	return p->depth == 0 || (p->active[p->depth - 1] && p->parent[p->depth - 1]);
}

static const char *skip_ws(const char *s) { while (*s == ' ' || *s == '\t') s++; return s; }

/* word at s: returns its length, *next after trailing blanks */
static size_t word(const char *s, const char **next)
{
	size_t n = 0;
	while (s[n] && s[n] != ' ' && s[n] != '\t') n++;
	*next = skip_ws(s + n);
	return n;
}

static int load_path(struct ruleset *rs, const char *path, char *err, size_t errlen);

/* take a rule's test definition; kind and the rest of the line after the name */
static int def_regex_rule(struct pstate *p, struct rule *r, enum rule_kind kind, const char *rest)
{
	reset_test(r);
	r->kind = kind;
	r->defined = 1;
	r->loaded = 1;
	r->file = strdup(p->file);
	r->line = p->line;
	if (strncmp(rest, "eval:", 5) == 0) {
		if (eval_parse_call(p->rs, r, rest + 5) < 0)
			return perr(p, "rule %s: cannot parse eval call: %.80s", r->name, rest + 5);
		return 0;
	}
	const char *after;
	if (perl_re_split(rest, &r->re, &r->reflags, &after) < 0)
		return perr(p, "rule %s: cannot parse regular expression: %.80s", r->name, rest);
	if (*skip_ws(after))
		return perr(p, "rule %s: text after the regular expression: %.80s", r->name, after);
	return 0;
}

static int def_header_rule(struct pstate *p, struct rule *r, const char *rest)
{
	reset_test(r);
	r->kind = RK_HEADER;
	r->defined = 1;
	r->loaded = 1;
	r->file = strdup(p->file);
	r->line = p->line;
	if (strncmp(rest, "eval:", 5) == 0) {
		if (eval_parse_call(p->rs, r, rest + 5) < 0)
			return perr(p, "rule %s: cannot parse eval call: %.80s", r->name, rest + 5);
		return 0;
	}
	if (strncmp(rest, "exists:", 7) == 0) {
		const char *nx;
		size_t n = word(rest + 7, &nx);
		if (!n) return perr(p, "rule %s: exists: without a header name", r->name);
		r->hdr = strndup(rest + 7, n);
		r->exists = 1;
		if (*nx) return perr(p, "rule %s: text after exists:%s", r->name, r->hdr);
		return 0;
	}
	const char *nx;
	size_t n = word(rest, &nx);
	if (!n) return perr(p, "rule %s: header name missing", r->name);
	char *h = strndup(rest, n);
	char *colon = strchr(h, ':');
	if (colon) {
		*colon = '\0';
		const char *m = colon + 1;
		if (strcmp(m, "raw") == 0) r->hmod = HM_RAW;
		else if (strcmp(m, "addr") == 0) r->hmod = HM_ADDR;
		else if (strcmp(m, "name") == 0) r->hmod = HM_NAME;
		else if (strcmp(m, "addr:raw") == 0 || strcmp(m, "raw:addr") == 0) r->hmod = HM_ADDR_RAW;
		else if (strcmp(m, "name:raw") == 0 || strcmp(m, "raw:name") == 0) r->hmod = HM_NAME_RAW;
		else {
			rule_not_loaded(r, "header modifier :%s not supported", m);
			r->hdr = h;
			return 0;
		}
	}
	r->hdr = h;
	if (strncmp(nx, "=~", 2) == 0) r->negate = 0;
	else if (strncmp(nx, "!~", 2) == 0) r->negate = 1;
	else return perr(p, "rule %s: expected =~ or !~ after %s", r->name, h);
	const char *after;
	if (perl_re_split(skip_ws(nx + 2), &r->re, &r->reflags, &after) < 0)
		return perr(p, "rule %s: cannot parse regular expression: %.80s", r->name, nx + 2);
	after = skip_ws(after);
	if (strncmp(after, "[if-unset:", 10) == 0) {
		const char *v = skip_ws(after + 10), *e = strrchr(v, ']');
		if (!e) return perr(p, "rule %s: [if-unset: without ]", r->name);
		while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
		r->unset = strndup(v, (size_t)(e - v));
	} else if (*after) {
		return perr(p, "rule %s: text after the regular expression: %.80s", r->name, after);
	}
	/* pseudo-headers of SpamAssassin's relay parsing and trust path */
	static const char *const relay_pseudo[] = { "X-Spam-Relays-", "ALL-TRUSTED", "ALL-UNTRUSTED",
		"ALL-INTERNAL", "ALL-EXTERNAL", "X-Spam-", NULL };
	for (size_t i = 0; relay_pseudo[i] && !eval_pseudo_known(h); i++)
		if (strncasecmp(h, relay_pseudo[i], strlen(relay_pseudo[i])) == 0) {
			rule_not_loaded(r, "pseudo-header %s needs SpamAssassin's relay/trust parsing", h);
			break;
		}
	return 0;
}

static int parse_line(struct pstate *p, char *line)
{
	/* comments: an unescaped '#' to the end of line */
	for (char *c = line; *c; c++) {
		if (*c == '\\' && c[1]) { c++; continue; }
		if (*c == '#') { *c = '\0'; break; }
	}
	size_t L = strlen(line);
	while (L && isspace((unsigned char)line[L - 1])) line[--L] = '\0';
	const char *s = skip_ws(line);
	if (!*s) return 0;
	const char *rest;
	size_t dn = word(s, &rest);
	char dir[32];
	if (dn >= sizeof dir) dn = sizeof dir - 1;
	memcpy(dir, s, dn);
	dir[dn] = '\0';
	for (char *c = dir; *c; c++) *c = (char)tolower((unsigned char)*c);

	/* block structure first: it is followed even inside inactive blocks */
	if (strcmp(dir, "ifplugin") == 0 || strcmp(dir, "if") == 0) {
		if (p->depth >= MAX_IF_DEPTH) return perr(p, "if/ifplugin nested too deep");
		int val;
		if (dir[2] == 'p') {
			const char *nx;
			size_t n = word(rest, &nx);
			if (!n) return perr(p, "ifplugin without a plugin name");
			val = rules_plugin_present(rest, n);
		} else {
			val = if_eval(rest);
			if (val < 0) return perr(p, "cannot evaluate if expression: %.80s", rest);
		}
		p->parent[p->depth] = active(p);
		p->active[p->depth] = val;
		p->depth++;
		return 0;
	}
	if (strcmp(dir, "else") == 0) {
		if (!p->depth) return perr(p, "else without if");
		p->active[p->depth - 1] = !p->active[p->depth - 1];
		return 0;
	}
	if (strcmp(dir, "endif") == 0) {
		if (!p->depth) return perr(p, "endif without if");
		p->depth--;
		return 0;
	}
	if (!active(p)) return 0;

	if (strcmp(dir, "include") == 0) {
		if (!*rest) return perr(p, "include without a file");
		char path[4096];
		if (rest[0] == '/') snprintf(path, sizeof path, "%s", rest);
		else {
			const char *sl = strrchr(p->file, '/');
			if (sl) snprintf(path, sizeof path, "%.*s/%s", (int)(sl - p->file), p->file, rest);
			else snprintf(path, sizeof path, "%s", rest);
		}
		char e2[512];
		if (load_path(p->rs, path, e2, sizeof e2) < 0) {
			if (strncmp(e2, path, strlen(path)) == 0 || strchr(e2, ':'))
				snprintf(p->err, p->errlen, "%s (included from %s:%u)", e2, p->file, p->line);
			return -1;
		}
		return 0;
	}

	static const char *const kinds[] = { "header", "body", "rawbody", "full", "uri", "meta" };
	int kind = -1;
	for (int k = 0; k < RK_COUNT; k++) if (strcmp(dir, kinds[k]) == 0) kind = k;
	int is_score = strcmp(dir, "score") == 0, is_desc = strcmp(dir, "describe") == 0,
	    is_tflags = strcmp(dir, "tflags") == 0;
	static const char *const other_tests[] = { "mimeheader", "uri_detail", "askdns", "urirhsbl",
		"urirhssub", "uridnsbl", "uridnssub", "check_hashbl_emails", NULL };
	int other = 0;
	for (size_t i = 0; other_tests[i]; i++) if (strcmp(dir, other_tests[i]) == 0) other = 1;

	if (other) {
		/* a rule type an eval module implements (mimeheader, uridnsbl...) */
		char why[200] = "";
		int rc = eval_directive(p->rs, dir, rest, why, sizeof why);
		if (rc < 0) return perr(p, "%s: %s", dir, why[0] ? why : "bad arguments");
		if (rc > 0) return 0;
	}
	if (kind >= 0 || is_score || is_desc || is_tflags || other) {
		const char *args;
		size_t nn = word(rest, &args);
		if (!nn) return perr(p, "%s without a rule name", dir);
		for (size_t i = 0; i < nn; i++)
			if (!is_name_char((unsigned char)rest[i]))
				return perr(p, "%s: bad rule name \"%.*s\"", dir, (int)nn, rest);
		struct rule *r = rs_rule(p->rs, rest, nn, 1);
		if (!r) return perr(p, "too many rules");
		if (other) {
			reset_test(r);
			r->kind = RK_COUNT;      /* a type mailwarden does not run */
			r->defined = 1;
			r->file = strdup(p->file);
			r->line = p->line;
			rule_not_loaded(r, "rule type %s not supported", dir);
			return 0;
		}
		if (kind == RK_HEADER) return def_header_rule(p, r, args);
		if (kind == RK_META) {
			reset_test(r);
			r->kind = RK_META;
			r->defined = 1;
			r->loaded = 1;
			r->file = strdup(p->file);
			r->line = p->line;
			if (!*args) return perr(p, "meta %s without an expression", r->name);
			r->meta_src = strdup(args);
			return 0;
		}
		if (kind >= 0) {
			if (!*args) return perr(p, "%s %s without a test", dir, r->name);
			return def_regex_rule(p, r, (enum rule_kind)kind, args);
		}
		if (is_score) {
			char *end;
			errno = 0;
			double v = strtod(args, &end);
			if (end == args || errno) return perr(p, "score %s: not a number: %.40s", r->name, args);
			/* one value: every score set; four: the one chosen (SpamAssassin's
			 * sets: 0 plain, 1 network, 2 Bayes, 3 both) */
			for (int k = 1; k <= p->rs->score_set; k++) {
				char *e2;
				errno = 0;
				double w = strtod(end, &e2);
				if (e2 == end || errno) break;      /* fewer values: the first stays */
				end = e2;
				if (k == p->rs->score_set) v = w;
			}
			r->score = v;
			r->has_score = 1;
			return 0;
		}
		if (is_desc) {
			free(r->describe);
			r->describe = strdup(args);
			return 0;
		}
		/* tflags */
		r->tflags = 0;
		r->maxhits = 0;
		const char *t = args;
		while (*t) {
			const char *nx;
			size_t n = word(t, &nx);
			if (n == 4 && memcmp(t, "nice", 4) == 0) r->tflags |= TF_NICE;
			else if (n == 8 && memcmp(t, "multiple", 8) == 0) r->tflags |= TF_MULTIPLE;
			else if (n > 8 && memcmp(t, "maxhits=", 8) == 0) {
				r->maxhits = (unsigned)strtoul(t + 8, NULL, 10);
				r->tflags |= TF_MULTIPLE;
			} else if (n == 11 && memcmp(t, "noautolearn", 11) == 0) r->tflags |= TF_NOAUTOLEARN;
			else if (n == 3 && memcmp(t, "net", 3) == 0) r->tflags |= TF_NET;
			else if (n == 5 && memcmp(t, "learn", 5) == 0) r->tflags |= TF_LEARN;
			/* others (net, learn, userconf, publish, nopublish, a, ...) change nothing here */
			t = nx;
		}
		/* eval modules may read words of their own (URIDNSBL's a, notrim,
		 * domains_only...): they see the line too, and must return 0 */
		char why[200] = "";
		if (eval_directive(p->rs, "tflags", rest, why, sizeof why) < 0)
			return perr(p, "tflags: %s", why[0] ? why : "bad arguments");
		return 0;
	}
	if (strcmp(dir, "replace_tag") == 0 || strcmp(dir, "replace_pre") == 0 ||
	    strcmp(dir, "replace_inter") == 0 || strcmp(dir, "replace_post") == 0) {
		const char *val;
		size_t nn = word(rest, &val);
		if (!nn) return perr(p, "%s without a name", dir);
		struct ruleset *rs = p->rs;
		struct replace_tag *t = realloc(rs->tags, (rs->ntags + 1) * sizeof *t);
		if (!t) abort();
		rs->tags = t;
		t[rs->ntags].name = strndup(rest, nn);
		t[rs->ntags].value = strdup(val);
		t[rs->ntags].kind = dir[8] == 't' ? 0 : dir[8] == 'p' && dir[9] == 'r' ? 1 : dir[8] == 'i' ? 2 : 3;
		rs->ntags++;
		return 0;
	}
	if (strcmp(dir, "redirector_pattern") == 0) {
		char **v = realloc(p->rs->redirector_src, (p->rs->nredirector_src + 1) * sizeof *v);
		if (!v) abort();
		p->rs->redirector_src = v;
		v[p->rs->nredirector_src++] = strdup(rest);
		return 0;
	}
	if (strcmp(dir, "replace_rules") == 0) {
		const char *t = rest;
		while (*t) {
			const char *nx;
			size_t n = word(t, &nx);
			char **v = realloc(p->rs->replace_names, (p->rs->nreplace + 1) * sizeof *v);
			if (!v) abort();
			p->rs->replace_names = v;
			v[p->rs->nreplace++] = strndup(t, n);
			t = nx;
		}
		return 0;
	}
	/* the configuration of eval modules (trusted_networks, freemail
	 * domains...); everything else (lang, priority, reuse, plugin
	 * settings...) does not define a test: ignored */
	char why[200] = "";
	if (eval_directive(p->rs, dir, rest, why, sizeof why) < 0)
		return perr(p, "%s: %s", dir, why[0] ? why : "bad arguments");
	return 0;
}

static int parse_text(struct ruleset *rs, const char *name, char *text, char *err, size_t errlen)
{
	struct pstate p = { .rs = rs, .file = name, .err = err, .errlen = errlen };
	char *s = text;
	while (*s) {
		char *e = strchr(s, '\n');
		if (e) *e = '\0';
		p.line++;
		if (strlen(s) > 65536) return perr(&p, "line too long");
		if (parse_line(&p, s) < 0) return -1;
		if (!e) break;
		s = e + 1;
	}
	if (p.depth) { p.line++; return perr(&p, "%d if/ifplugin block(s) not closed by endif", p.depth); }
	rs->stats.files++;
	return 0;
}

int rules_load_text(struct ruleset *rs, const char *name, const char *text, size_t len,
                    char *err, size_t errlen)
{
	if (rs->compiled) { snprintf(err, errlen, "ruleset already compiled"); return -1; }
	char *copy = malloc(len + 1);
	if (!copy) abort();
	for (size_t i = 0; i < len; i++) copy[i] = text[i] ? text[i] : ' ';
	copy[len] = '\0';
	int rc = parse_text(rs, name, copy, err, errlen);
	free(copy);
	return rc;
}

static int load_file(struct ruleset *rs, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
	struct stat st;
	if (fstat(fileno(f), &st) < 0 || (uint64_t)st.st_size > MAX_RULE_FILE) {
		fclose(f);
		snprintf(err, errlen, "%s: not readable or larger than %u bytes", path, MAX_RULE_FILE);
		return -1;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	if (!buf) abort();
	size_t n = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	int rc = rules_load_text(rs, path, buf, n, err, errlen);
	free(buf);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_path(struct ruleset *rs, const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st) < 0) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
	if (rs->depth >= MAX_INCLUDE_DEPTH) {
		snprintf(err, errlen, "%s: include nested deeper than %d", path, MAX_INCLUDE_DEPTH);
		return -1;
	}
	rs->depth++;
	int rc = 0;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		if (!d) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); rs->depth--; return -1; }
		char **names = NULL;
		size_t n = 0;
		struct dirent *de;
		while ((de = readdir(d))) {
			size_t l = strlen(de->d_name);
			if (l > 3 && strcmp(de->d_name + l - 3, ".cf") == 0) {
				names = realloc(names, (n + 1) * sizeof *names);
				if (!names) abort();
				names[n++] = strdup(de->d_name);
			}
		}
		closedir(d);
		qsort(names, n, sizeof *names, cmp_str);
		for (size_t i = 0; i < n; i++) {
			char fp[4096];
			snprintf(fp, sizeof fp, "%s/%s", path, names[i]);
			if (rc == 0 && load_file(rs, fp, err, errlen) < 0) rc = -1;
			free(names[i]);
		}
		free(names);
	} else {
		rc = load_file(rs, path, err, errlen);
	}
	rs->depth--;
	return rc;
}

int rules_load_file(struct ruleset *rs, const char *path, char *err, size_t errlen)
{
	if (rs->compiled) { snprintf(err, errlen, "ruleset already compiled"); return -1; }
	return load_path(rs, path, err, errlen);
}

const struct rules_stats *rules_get_stats(const struct ruleset *rs) { return &rs->stats; }

size_t rules_count(const struct ruleset *rs) { return rs->nrules; }

const char *rules_info(const struct ruleset *rs, size_t i, enum rule_kind *kind, int *loaded, double *score)
{
	if (i >= rs->nrules) return NULL;
	const struct rule *r = &rs->rules[i];
	if (kind) *kind = r->other_type ? RK_COUNT : r->kind;
	if (loaded) *loaded = r->defined && r->loaded == 1;
	if (score) *score = r->score;
	return r->name;
}

const char *rules_not_loaded(const struct ruleset *rs, size_t i, const char **reason)
{
	size_t k = 0;
	for (size_t j = 0; j < rs->nrules; j++) {
		const struct rule *r = &rs->rules[j];
		if (!r->defined || r->loaded == 1) continue;
		if (k++ == i) {
			if (reason) *reason = r->why ? r->why : "not loaded";
			return r->name;
		}
	}
	return NULL;
}

void rules_free(struct ruleset *rs)
{
	if (!rs) return;
	for (size_t i = 0; i < rs->nrules; i++) {
		struct rule *r = &rs->rules[i];
		reset_test(r);
		free(r->name);
		free(r->describe);
		free(r->meta);
		if (r->pc) pcre2_code_free(r->pc);
		for (unsigned k = 0; k < r->npcx; k++) { pcre2_code_free(r->pcx[k]); free(r->pcx_src[k]); }
		free(r->pcx);
		free(r->pcx_src);
		eval_free_rule(r);
	}
	eval_free_conf(rs);
	free(rs->eval_rules);
	free(rs->rules);
	free(rs->hash);
	for (int k = 0; k < RK_COUNT; k++) {
		if (rs->kdb[k].db) hs_free_database(rs->kdb[k].db);
		free(rs->kdb[k].rule_of);
		free(rs->kdb[k].pcre_rules);
	}
	free(rs->meta_order);
	for (unsigned i = 0; i < rs->ntargets; i++) free(rs->targets[i].rules);
	free(rs->targets);
	for (size_t i = 0; i < rs->ntags; i++) { free(rs->tags[i].name); free(rs->tags[i].value); }
	free(rs->tags);
	for (size_t i = 0; i < rs->nreplace; i++) free(rs->replace_names[i]);
	free(rs->replace_names);
	if (rs->mctx) pcre2_match_context_free(rs->mctx);
	for (size_t i = 0; i < rs->nredirector_src; i++) free(rs->redirector_src[i]);
	free(rs->redirector_src);
	for (size_t i = 0; i < rs->nredirectors; i++) pcre2_code_free(rs->redirectors[i]);
	free(rs->redirectors);
	free(rs);
}
