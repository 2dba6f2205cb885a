/* eval.c - the registry of eval modules and what they share: parsing an
 * "eval:fn('a', 2)" call, dispatching rule-file directives and
 * pseudo-headers to the module that owns them, the per-message cache and
 * the facts the bridge answers. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "rules/eval.h"

#define MAX_EVAL_ARGS 16
#define MAX_EVAL_ARG  4096

static const struct eval_module *const modules[] = {
	&eval_module_header, &eval_module_mime, &eval_module_html,
	&eval_module_relay, &eval_module_net, &eval_module_facts, NULL
};

const struct eval_def *eval_lookup(const char *name, size_t len)
{
	for (size_t m = 0; modules[m]; m++)
		for (const struct eval_def *d = modules[m]->defs; d && d->name; d++)
			if (strlen(d->name) == len && memcmp(d->name, name, len) == 0) return d;
	return NULL;
}

static void free_args(struct rule *r)
{
	for (unsigned i = 0; i < r->ev_argc; i++) free(r->ev_argv[i]);
	free(r->ev_argv);
	r->ev_argv = NULL;
	r->ev_argc = 0;
}

void eval_free_rule(struct rule *r)
{
	if (r->ev && r->ev->free_data && r->ev_data) r->ev->free_data(r->ev_data);
	r->ev_data = NULL;
	r->ev = NULL;
	free_args(r);
}

/* one argument: 'quoted', "quoted" (Perl: \\ and \' unescaped in single
 * quotes; in double quotes a backslash keeps the next character) or a
 * bare word/number; *s is left after it */
static char *parse_arg(const char **s)
{
	const char *p = *s;
	char buf[MAX_EVAL_ARG];
	size_t n = 0;
	if (*p == '\'' || *p == '"') {
		char q = *p++;
		while (*p && *p != q) {
			if (*p == '\\' && p[1]) {
				if (q == '"' || p[1] == '\\' || p[1] == '\'') p++;
			}
			if (n + 1 >= sizeof buf) return NULL;
			buf[n++] = *p++;
		}
		if (*p != q) return NULL;
		p++;
	} else {
		while (*p && *p != ',' && *p != ')' && *p != ' ' && *p != '\t') {
			if (n + 1 >= sizeof buf) return NULL;
			buf[n++] = *p++;
		}
		if (!n) return NULL;
	}
	buf[n] = '\0';
	*s = p;
	char *a = strdup(buf);
	if (!a) abort();
	return a;
}

int eval_parse_call(struct ruleset *rs, struct rule *r, const char *text)
{
	const char *p = text;
	while (isalnum((unsigned char)*p) || *p == '_') p++;
	size_t fl = (size_t)(p - text);
	if (!fl) return -1;
	const char *q = p;
	while (*q == ' ' || *q == '\t') q++;
	char *argv[MAX_EVAL_ARGS];
	unsigned argc = 0;
	if (*q == '(') {
		q++;
		for (;;) {
			while (*q == ' ' || *q == '\t') q++;
			if (*q == ')') break;
			if (argc == MAX_EVAL_ARGS) goto bad;
			char *a = parse_arg(&q);
			if (!a) goto bad;
			argv[argc++] = a;
			while (*q == ' ' || *q == '\t') q++;
			if (*q == ',') { q++; continue; }
			if (*q == ')') break;
			goto bad;
		}
		q++;
		while (*q == ' ' || *q == '\t') q++;
		if (*q) goto bad;
	} else if (*q) {
		return -1;
	}
	const struct eval_def *d = eval_lookup(text, fl);
	eval_free_rule(r);
	if (!d) {
		for (unsigned i = 0; i < argc; i++) free(argv[i]);
		rule_not_loaded(r, "eval: needs SpamAssassin's Perl code (%.60s)", text);
		r->loaded = -1;      /* marks eval */
		return 0;
	}
	r->ev_argv = calloc(argc + 1, sizeof *r->ev_argv);
	if (!r->ev_argv) abort();
	memcpy(r->ev_argv, argv, argc * sizeof *argv);
	r->ev_argc = argc;
	r->tflags |= d->tflags;
	if (argc < d->min_args || argc > d->max_args) {
		rule_not_loaded(r, "eval function %s takes %u to %u arguments, not %u", d->name, d->min_args, d->max_args, argc);
		free_args(r);
		return 0;
	}
	r->ev = d;
	if (d->check) {
		char why[200] = "";
		if (d->check(rs, r, why, sizeof why) < 0) {
			rule_not_loaded(r, "eval function %s: %s", d->name, why[0] ? why : "arguments not usable");
			eval_free_rule(r);
			return 0;
		}
	}
	return 0;
bad:
	for (unsigned i = 0; i < argc; i++) free(argv[i]);
	return -1;
}

/* every module sees the line: some directives are needed by several
 * (util_rb_tld/2tld/3tld by the relay, net and facts modules) */
int eval_directive(struct ruleset *rs, const char *dir, const char *args, char *why, size_t whylen)
{
	int taken = 0;
	for (size_t m = 0; modules[m]; m++) {
		if (!modules[m]->directive) continue;
		int rc = modules[m]->directive(rs, dir, args, why, whylen);
		if (rc < 0) return rc;
		if (rc > 0) taken = 1;
	}
	return taken;
}

int eval_pseudo_known(const char *name)
{
	for (size_t m = 0; modules[m]; m++)
		for (const char *const *p = modules[m]->pseudo_names; p && *p; p++)
			if (strcmp(*p, name) == 0) return 1;
	return 0;
}

void eval_free_conf(struct ruleset *rs)
{
	for (size_t m = 0; modules[m]; m++)
		if (modules[m]->free_conf) modules[m]->free_conf(rs);
}

void eval_cache_set(struct eval_msg *m, enum eval_cache slot, void *data, void (*free_fn)(void *))
{
	if (m->cache[slot] && m->cache_free[slot]) m->cache_free[slot](m->cache[slot]);
	m->cache[slot] = data;
	m->cache_free[slot] = free_fn;
}

static void uri_set_free(void *p)
{
	rules_uri_set_free(p);
}

const struct rules_uri_set *eval_uri_set(struct eval_msg *m)
{
	if (m->in->uri_forms) return m->in->uri_forms;
	struct rules_uri_set *set = eval_cache_get(m, EVC_URIS);
	if (!set) {
		set = rules_uri_set_new(m->rs, m->in->uris, m->in->nuris);
		eval_cache_set(m, EVC_URIS, set, uri_set_free);
	}
	return set;
}

void eval_msg_reset(struct eval_msg *m)
{
	for (int i = 0; i < EVC_COUNT; i++) eval_cache_set(m, (enum eval_cache)i, NULL, NULL);
	for (size_t i = 0; i < m->nowned; i++) free(m->owned[i]);
	free(m->owned);
	m->owned = NULL;
	m->nowned = 0;
	m->nhdrs = 0;
	m->hdrs_built = 0;
}

static void add_pseudo(void *arg, const char *name, const char *value)
{
	struct eval_msg *m = arg;
	if (m->nhdrs == m->caphdrs) {
		m->caphdrs = m->caphdrs ? m->caphdrs * 2 : 64;
		m->hdrs = realloc(m->hdrs, m->caphdrs * sizeof *m->hdrs);
		if (!m->hdrs) abort();
	}
	char **o = realloc(m->owned, (m->nowned + 2) * sizeof *o);
	if (!o) abort();
	m->owned = o;
	char *n = strdup(name), *v = strdup(value);
	if (!n || !v) abort();
	o[m->nowned++] = n;
	o[m->nowned++] = v;
	m->hdrs[m->nhdrs].name = n;
	m->hdrs[m->nhdrs].raw = v;
	m->hdrs[m->nhdrs].decoded = v;
	m->nhdrs++;
}

const struct rules_header *eval_headers(struct eval_msg *m, size_t *n)
{
	if (!m->hdrs_built) {
		m->hdrs_built = 1;
		m->nhdrs = 0;
		if (m->in->nheaders > m->caphdrs) {
			m->caphdrs = m->in->nheaders + 16;
			m->hdrs = realloc(m->hdrs, m->caphdrs * sizeof *m->hdrs);
			if (!m->hdrs) abort();
		}
		if (m->in->nheaders) memcpy(m->hdrs, m->in->headers, m->in->nheaders * sizeof *m->hdrs);
		m->nhdrs = m->in->nheaders;
		for (size_t k = 0; modules[k]; k++)
			if (modules[k]->pseudo) modules[k]->pseudo(m, add_pseudo, m);
	}
	*n = m->nhdrs;
	return m->hdrs;
}

void eval_run_queries(struct eval_msg *m, void (*want)(void *arg, const char *qname, int rrtype), void *arg)
{
	for (size_t k = 0; modules[k]; k++)
		if (modules[k]->queries) modules[k]->queries(m, want, arg);
}

const char *eval_fact(struct eval_msg *m, const char *key)
{
	return m->in->fact ? m->in->fact(m->in->fact_arg, key) : NULL;
}

const char *eval_arg(const struct rule *r, unsigned i)
{
	return i < r->ev_argc ? r->ev_argv[i] : "";
}

double eval_arg_num(const struct rule *r, unsigned i, double def)
{
	if (i >= r->ev_argc) return def;
	char *end;
	double v = strtod(r->ev_argv[i], &end);
	return end == r->ev_argv[i] ? def : v;
}

size_t eval_header_all(const struct eval_msg *m, const char *name, char *out, size_t outlen)
{
	size_t found = 0, o = 0;
	if (outlen) out[0] = '\0';
	for (size_t i = 0; i < m->in->nheaders; i++) {
		const struct rules_header *h = &m->in->headers[i];
		if (strcasecmp(h->name, name) != 0) continue;
		const char *v = h->decoded ? h->decoded : h->raw;
		if (found && o + 1 < outlen) out[o++] = '\n';
		size_t l = strlen(v);
		if (outlen && o + l >= outlen) l = outlen - 1 - o;
		if (outlen) { memcpy(out + o, v, l); o += l; out[o] = '\0'; }
		found++;
	}
	return found;
}

const char *eval_header_first(const struct eval_msg *m, const char *name)
{
	for (size_t i = 0; i < m->in->nheaders; i++)
		if (strcasecmp(m->in->headers[i].name, name) == 0)
			return m->in->headers[i].decoded ? m->in->headers[i].decoded : m->in->headers[i].raw;
	return NULL;
}

const char *eval_header_raw(const struct eval_msg *m, const char *name)
{
	for (size_t i = 0; i < m->in->nheaders; i++)
		if (strcasecmp(m->in->headers[i].name, name) == 0) return m->in->headers[i].raw;
	return NULL;
}

int eval_define_rule(struct ruleset *rs, const char *name, size_t namelen, enum rule_kind kind,
                     int other_type, const char *call, char *why, size_t whylen)
{
	for (size_t i = 0; i < namelen; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '_') {
			snprintf(why, whylen, "bad rule name \"%.*s\"", (int)namelen, name);
			return -1;
		}
	struct rule *r = rs_rule(rs, name, namelen, 1);
	if (!r) { snprintf(why, whylen, "too many rules"); return -1; }
	eval_free_rule(r);
	free(r->why); r->why = NULL;
	r->kind = kind;
	r->defined = 1;
	r->loaded = 1;
	r->other_type = other_type;
	if (eval_parse_call(rs, r, call) < 0) {
		snprintf(why, whylen, "cannot parse eval call %.80s", call);
		return -1;
	}
	return 0;
}
