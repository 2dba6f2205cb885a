/* eval_facts.c - eval: functions answered by lists in the rule files and by
 * other filters' verdicts, as SpamAssassin's WLBLEval, WelcomeListSubject,
 * FreeMail, SPF and DKIM plugins answer them:
 *
 *  - address lists (welcomelist_from, blocklist_to, enlist_addrlist ...,
 *    with the older whitelist_/blacklist_ spellings) matched against the
 *    message's "from" and "to" addresses as SpamAssassin collects them
 *    (all_from_addrs, all_to_addrs); *_rcvd lists against the relays
 *    (rules/eval_relay.h); URI host lists (enlist_uri_host);
 *  - FreeMail: freemail_domains against From/Reply-To/any header and the
 *    addresses written in the body;
 *  - SPF, DKIM, ARC and DMARC results: from the spf/dkim/dmarc filters that
 *    ran before the rules filter (facts "spf:mailfrom", "spf:helo", "dkim",
 *    "arc", "dmarc", answered by filters/rules_facts.c); without a verdict
 *    a test does not hit, as in SpamAssassin with network tests off.
 *    Two things need no verdict: DKIM_SIGNED/ARC_SIGNED (a signature field
 *    that parses), and SPF results an internal relay recorded in a
 *    Received-SPF or Authentication-Results field (ALL-INTERNAL).
 *
 * Work per message is bounded: addresses per header, body emails (40),
 * URI hosts (EVAL_URI_HOSTS_MAX, uri_hosts.h), signatures (MAX_SIGS). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "rules/eval.h"
#include "rules/eval_relay.h"
#include "rules/uri_hosts.h"

#define MAX_ADDRS       64       /* addresses kept per collection */
#define MAX_ADDR_LEN    320
#define MAX_HDR_PARSE   8192     /* bytes of one header value parsed for addresses */
#define MAX_SIGS        16
#define MAX_BODY_EMAILS 40       /* FreeMail's sanity limit */
#define MAX_BODY_SCAN   (1u << 20)  /* bytes of body text searched for addresses */

/* --- a small string -> int map (open addressing) ---------------------------- */

struct strmap {
	char **k;
	int *v;
	size_t cap, n;
};

static size_t hash_str(const char *s)
{
	size_t h = 1469598103934665603ull;
	for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ull; }
	return h;
}

static int *map_slot(struct strmap *m, const char *key, int create)
{
	if (create && (m->n + 1) * 2 > m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 64;
		char **nk = calloc(nc, sizeof *nk);
		int *nv = calloc(nc, sizeof *nv);
		if (!nk || !nv) abort();
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->k[i]) continue;
			size_t j = hash_str(m->k[i]) & (nc - 1);
			while (nk[j]) j = (j + 1) & (nc - 1);
			nk[j] = m->k[i];
			nv[j] = m->v[i];
		}
		free(m->k); free(m->v);
		m->k = nk; m->v = nv; m->cap = nc;
	}
	if (!m->cap) return NULL;
	size_t j = hash_str(key) & (m->cap - 1);
	while (m->k[j]) {
		if (strcmp(m->k[j], key) == 0) return &m->v[j];
		j = (j + 1) & (m->cap - 1);
	}
	if (!create) return NULL;
	m->k[j] = strdup(key);
	if (!m->k[j]) abort();
	m->v[j] = 0;
	m->n++;
	return &m->v[j];
}

static const int *map_get(const struct strmap *m, const char *key)
{
	return map_slot((struct strmap *)m, key, 0);
}

static void map_free(struct strmap *m)
{
	for (size_t i = 0; i < m->cap; i++) free(m->k[i]);
	free(m->k); free(m->v);
	memset(m, 0, sizeof *m);
}

/* --- glob patterns (SpamAssassin's address lists: '*' any string, '?' one character) */

static int glob_match(const char *p, const char *s)
{
	const char *star = NULL, *ss = NULL;
	while (*s) {
		if (*p == '*') { while (*p == '*') p++; star = p; ss = s; continue; }
		if (*p && (*p == '?' || *p == *s)) { p++; s++; continue; }
		if (!star) return 0;
		p = star;
		s = ++ss;
	}
	while (*p == '*') p++;
	return *p == '\0';
}

static void lower(char *s)
{
	for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

/* --- configuration ---------------------------------------------------------- */

struct wl_entry {
	char *pat;              /* lower case */
	int   wild;             /* has '*' or '?' */
	int   dead;             /* removed by an un... directive */
	char **doms;            /* *_rcvd: relay names/[ip]; *_dkim: signing domains ("" = author's) */
	size_t ndoms;
};

struct wl_list {
	char *name;
	struct wl_entry *e;
	size_t n, cap;
	struct strmap idx;      /* pattern -> index */
};

/* an entry against an address (lower case): its fixed tail (after the
 * last '*') is compared first, so most entries cost a few bytes */
static int entry_match(const struct wl_entry *e, const char *addr)
{
	if (e->dead) return 0;
	if (!e->wild) return strcmp(e->pat, addr) == 0;
	const char *tail = strrchr(e->pat, '*');
	tail = tail ? tail + 1 : e->pat;
	if (!strchr(tail, '?')) {
		size_t tl = strlen(tail), al = strlen(addr);
		if (tl > al || strcmp(addr + al - tl, tail) != 0) return 0;
	}
	return glob_match(e->pat, addr);
}

struct uri_list {
	char *name;
	struct strmap hosts;    /* host -> 1 listed, 0 excepted ("!host") */
};

struct facts_conf {
	struct wl_list *lists;
	size_t nlists;
	struct uri_list *ulists;
	size_t nulists;
	struct strmap fm_domains;       /* freemail_domains without wildcards */
	char **fm_wild;                 /* ... with wildcards ('*' no dot, '?' any) */
	size_t nfm_wild;
	struct strmap fm_welcome;       /* freemail_welcomelist */
	int fm_max_body_emails, fm_max_body_freemails, fm_skip_when_over_max, fm_skip_bulk_envfrom;
	int fm_import_wl_auth, fm_import_def_wl_auth;
	struct strmap tlds;             /* util_rb_tld etc.: valid top-level domains */
	struct strmap adsp_override;    /* author domain ("*.x" too) -> ADSP letter */
	int adsp_rules;                 /* check_dkim_adsp rules loaded: ask the DNS */
	/* PCRE2 patterns of SpamAssassin's address parser and FreeMail */
	pcre2_code *re_addr, *re_mail_full, *re_comment, *re_fm_welcome, *re_bulk_envfrom, *re_rcvd_for;
};

/* SpamAssassin's relaxed header address parser (Mail::SpamAssassin::Util) */
#define QS "\"(?:|(?:[^\"\\\\]++|\\\\.)*+)\""
#define MAILRE "(?:" QS "|[^@\\s<>()\\[\\],:;]+)@(?:[^\"\\s<>()\\[\\],:;]+|\\[[\\d:.]+\\])"
static const char ADDR_RE[] =
	"\\s*(?:(?:((?:" QS "|[^\",;<]++)+)\\s*)?<\\s*([^>@]*\\S+|\\s*)\\s*>"
	"(?:\\s*<\\s*(?:(?:" QS ")?\\S+|\\s*)\\s*>)*"
	"|(?:(" MAILRE ")|((?:" QS "|[^\",;<]++)+)))"
	"(?:\\s*\\(((?:|(?:[^()\\\\]++|\\\\.)*+))\\))?\\s*(?:[,;]|\\z)";
static const char MAIL_FULL_RE[] = "^" MAILRE "$";
static const char COMMENT_RE[] = "\\((?:|(?:[^()\\\\]++|\\\\.)*+)\\)";
/* FreeMail.pm: addresses never counted as freemail, bulk envelope senders */
static const char FM_WELCOME_RE[] =
	"^(?:abuse|support|sales|info|helpdesk|contact|kontakt|(?:post|host|domain)master|undisclosed.*"
	"|request-[a-f0-9]{16}|bounced?-"
	"|[a-f0-9]{8}(?:\\.[a-f0-9]{8}|-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})|.+=.+=.+)@";
static const char BULK_ENVFROM_RE[] =
	"(?:^(?:post|host|domain)master|^double-bounce|^(?:sentto|owner|return|(?:gr)?bounced?)-.+"
	"|-(?:request|bounces?|admin|owner)|\\b(?:do[._-t]?)?no[._-t]?repl(?:y|ies)|.+=.+)@";
static const char RCVD_FOR_RE[] = " for <?(\\S+@(\\S+?))>?;";

static pcre2_code *re_compile(const char *pat, uint32_t opt)
{
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opt, &ec, &eo, NULL);
	if (!c) abort();       /* our own patterns: a failure is a bug */
	return c;
}

static struct facts_conf *conf_of(struct ruleset *rs)
{
	struct facts_conf *c = rs->evconf[EVF_FACTS];
	if (c) return c;
	c = calloc(1, sizeof *c);
	if (!c) abort();
	c->fm_max_body_emails = 5;
	c->fm_max_body_freemails = 3;
	c->fm_skip_when_over_max = 1;
	c->fm_skip_bulk_envfrom = 1;
	c->re_addr = re_compile(ADDR_RE, PCRE2_CASELESS | PCRE2_DOTALL);
	c->re_mail_full = re_compile(MAIL_FULL_RE, PCRE2_CASELESS | PCRE2_DOTALL);
	c->re_comment = re_compile(COMMENT_RE, PCRE2_DOTALL);
	c->re_fm_welcome = re_compile(FM_WELCOME_RE, PCRE2_CASELESS);
	c->re_bulk_envfrom = re_compile(BULK_ENVFROM_RE, PCRE2_CASELESS);
	c->re_rcvd_for = re_compile(RCVD_FOR_RE, 0);
	rs->evconf[EVF_FACTS] = c;
	return c;
}

static const struct facts_conf *conf_get(const struct eval_msg *m)
{
	return m->rs->evconf[EVF_FACTS];
}

static struct wl_list *list_find(const struct facts_conf *c, const char *name)
{
	for (size_t i = 0; i < c->nlists; i++)
		if (strcmp(c->lists[i].name, name) == 0) return &c->lists[i];
	return NULL;
}

static struct wl_list *list_get(struct facts_conf *c, const char *name)
{
	struct wl_list *l = list_find(c, name);
	if (l) return l;
	struct wl_list *nl = realloc(c->lists, (c->nlists + 1) * sizeof *nl);
	if (!nl) abort();
	c->lists = nl;
	l = &c->lists[c->nlists++];
	memset(l, 0, sizeof *l);
	l->name = strdup(name);
	if (!l->name) abort();
	return l;
}

/* add pattern (and optionally one domain) to a list */
static void list_add(struct wl_list *l, const char *pat, size_t plen, const char *dom)
{
	char p[MAX_ADDR_LEN];
	if (plen >= sizeof p) plen = sizeof p - 1;
	memcpy(p, pat, plen);
	p[plen] = '\0';
	lower(p);
	int *slot = map_slot(&l->idx, p, 1);
	struct wl_entry *e;
	if (*slot > 0) {
		e = &l->e[*slot - 1];
		if (e->dead) {       /* enlisted again: starts afresh */
			e->dead = 0;
			for (size_t i = 0; i < e->ndoms; i++) free(e->doms[i]);
			e->ndoms = 0;
		}
	} else {
		if (l->n == l->cap) {
			l->cap = l->cap ? l->cap * 2 : 16;
			l->e = realloc(l->e, l->cap * sizeof *l->e);
			if (!l->e) abort();
		}
		e = &l->e[l->n++];
		memset(e, 0, sizeof *e);
		e->pat = strdup(p);
		if (!e->pat) abort();
		e->wild = strpbrk(p, "*?") != NULL;
		*slot = (int)l->n;
	}
	if (dom) {
		char **nd = realloc(e->doms, (e->ndoms + 1) * sizeof *nd);
		if (!nd) abort();
		e->doms = nd;
		e->doms[e->ndoms] = strdup(dom);
		if (!e->doms[e->ndoms]) abort();
		lower(e->doms[e->ndoms]);
		e->ndoms++;
	}
}

static void list_remove(struct facts_conf *c, const char *name, const char *pat, size_t plen)
{
	struct wl_list *l = list_find(c, name);
	char p[MAX_ADDR_LEN];
	if (!l || plen >= sizeof p) return;
	memcpy(p, pat, plen);
	p[plen] = '\0';
	lower(p);
	const int *k = map_get(&l->idx, p);
	if (k && *k > 0) l->e[*k - 1].dead = 1;
}

/* whether addr (lower case) matches a pattern of the list */
static int list_match(const struct wl_list *l, const char *addr)
{
	if (!l) return 0;
	const int *k = map_get(&l->idx, addr);
	if (k && *k > 0 && !l->e[*k - 1].dead) return 1;
	for (size_t i = 0; i < l->n; i++)
		if (l->e[i].wild && entry_match(&l->e[i], addr)) return 1;
	return 0;
}

static struct uri_list *ulist_get(struct facts_conf *c, const char *name, size_t nlen, int create)
{
	for (size_t i = 0; i < c->nulists; i++)
		if (strlen(c->ulists[i].name) == nlen && memcmp(c->ulists[i].name, name, nlen) == 0) return &c->ulists[i];
	if (!create) return NULL;
	struct uri_list *n = realloc(c->ulists, (c->nulists + 1) * sizeof *n);
	if (!n) abort();
	c->ulists = n;
	struct uri_list *u = &c->ulists[c->nulists++];
	memset(u, 0, sizeof *u);
	u->name = strndup(name, nlen);
	if (!u->name) abort();
	return u;
}

static void free_conf(struct ruleset *rs)
{
	struct facts_conf *c = rs->evconf[EVF_FACTS];
	if (!c) return;
	for (size_t i = 0; i < c->nlists; i++) {
		struct wl_list *l = &c->lists[i];
		for (size_t j = 0; j < l->n; j++) {
			for (size_t d = 0; d < l->e[j].ndoms; d++) free(l->e[j].doms[d]);
			free(l->e[j].doms);
			free(l->e[j].pat);
		}
		free(l->e);
		map_free(&l->idx);
		free(l->name);
	}
	free(c->lists);
	for (size_t i = 0; i < c->nulists; i++) { map_free(&c->ulists[i].hosts); free(c->ulists[i].name); }
	free(c->ulists);
	map_free(&c->fm_domains);
	for (size_t i = 0; i < c->nfm_wild; i++) free(c->fm_wild[i]);
	free(c->fm_wild);
	map_free(&c->fm_welcome);
	map_free(&c->tlds);
	map_free(&c->adsp_override);
	pcre2_code_free(c->re_addr); pcre2_code_free(c->re_mail_full); pcre2_code_free(c->re_comment);
	pcre2_code_free(c->re_fm_welcome); pcre2_code_free(c->re_bulk_envfrom); pcre2_code_free(c->re_rcvd_for);
	free(c);
	rs->evconf[EVF_FACTS] = NULL;
}

/* --- directives --------------------------------------------------------------- */

/* next whitespace-separated word of *s: its start, length in *n; NULL at the end */
static const char *next_word(const char **s, size_t *n)
{
	const char *p = *s;
	while (*p == ' ' || *p == '\t') p++;
	if (!*p) { *s = p; return NULL; }
	const char *b = p;
	while (*p && *p != ' ' && *p != '\t') p++;
	*n = (size_t)(p - b);
	*s = p;
	return b;
}

static size_t count_words(const char *s)
{
	size_t n = 0, l;
	while (next_word(&s, &l)) n++;
	return n;
}

/* parse.c keeps 31 characters of a directive name: compare the same way */
static int dir_is(const char *dir, const char *name)
{
	size_t n = strlen(name);
	if (n > 31) n = 31;
	return strlen(dir) == n && strncmp(dir, name, n) == 0;
}

/* a directive name, or its SpamAssassin 3 spelling (whitelist/blacklist) */
static int dir_is2(const char *dir, const char *name)
{
	if (dir_is(dir, name)) return 1;
	char old[64];
	const char *w = strstr(name, "welcomelist"), *b = strstr(name, "blocklist");
	if (w) snprintf(old, sizeof old, "%.*swhitelist%s", (int)(w - name), name, w + 11);
	else if (b) snprintf(old, sizeof old, "%.*sblacklist%s", (int)(b - name), name, b + 9);
	else return 0;
	return dir_is(dir, old);
}

/* "(NAME) rest": the name and the rest; -1 if not so */
static int paren_name(const char *args, const char **name, size_t *nlen, const char **rest)
{
	while (*args == ' ' || *args == '\t') args++;
	if (*args != '(') return -1;
	const char *e = strchr(args, ')');
	if (!e || e == args + 1) return -1;
	*name = args + 1;
	*nlen = (size_t)(e - args - 1);
	*rest = e + 1;
	return 0;
}

static int set_num(int *v, const char *args, char *why, size_t whylen)
{
	char *end;
	long x = strtol(args, &end, 10);
	while (*end == ' ' || *end == '\t') end++;
	if (end == args || *end) { snprintf(why, whylen, "not a number: %.40s", args); return -1; }
	*v = (int)x;
	return 1;
}

static int add_addrs(struct facts_conf *c, const char *list, const char *args, char *why, size_t whylen)
{
	const char *w;
	size_t n;
	int any = 0;
	struct wl_list *l = list_get(c, list);
	while ((w = next_word(&args, &n))) { list_add(l, w, n, NULL); any = 1; }
	if (!any) { snprintf(why, whylen, "no address given"); return -1; }
	return 1;
}

static int directive(struct ruleset *rs, const char *dir, const char *args, char *why, size_t whylen)
{
	/* plain address lists, under their SpamAssassin 4 names */
	static const char *const addrlists[] = {
		"welcomelist_from", "blocklist_from", "welcomelist_to", "more_spam_to", "all_spam_to",
		"blocklist_to", "welcomelist_auth", "def_welcomelist_auth", "welcomelist_from_spf",
		"def_welcomelist_from_spf", "welcomelist_allows_relays", NULL
	};
	const char *w;
	size_t n;

	/* valid TLDs (FreeMail's address pattern); the relay and net modules
	 * read these lines too (eval_directive gives them to every module) */
	if (dir_is(dir, "util_rb_tld")) {
		struct facts_conf *c = conf_of(rs);
		while ((w = next_word(&args, &n))) {
			char t[64];
			if (n >= sizeof t) continue;
			memcpy(t, w, n);
			t[n] = '\0';
			lower(t);
			*map_slot(&c->tlds, t, 1) = 1;
		}
		return 1;
	}
	for (size_t i = 0; addrlists[i]; i++)
		if (dir_is2(dir, addrlists[i])) return add_addrs(conf_of(rs), addrlists[i], args, why, whylen);

	if (dir_is2(dir, "unwelcomelist_from") || dir_is2(dir, "unblocklist_from") ||
	    dir_is2(dir, "unwelcomelist_auth") || dir_is2(dir, "unwelcomelist_from_spf") ||
	    dir_is2(dir, "unwelcomelist_from_rcvd")) {
		struct facts_conf *c = conf_of(rs);
		const char *l1, *l2 = NULL;
		if (strstr(dir, "_rcvd")) { l1 = "welcomelist_from_rcvd"; l2 = "def_welcomelist_from_rcvd"; }
		else if (strstr(dir, "_spf")) { l1 = "welcomelist_from_spf"; l2 = "def_welcomelist_from_spf"; }
		else if (strstr(dir, "_auth")) { l1 = "welcomelist_auth"; l2 = "def_welcomelist_auth"; }
		else if (strstr(dir, "blocklist") || strstr(dir, "blacklist")) l1 = "blocklist_from";
		else l1 = "welcomelist_from";
		while ((w = next_word(&args, &n))) {
			list_remove(c, l1, w, n);
			if (l2) list_remove(c, l2, w, n);
		}
		return 1;
	}
	if (dir_is2(dir, "welcomelist_from_rcvd") || dir_is2(dir, "def_welcomelist_from_rcvd")) {
		const char *a = args, *d;
		size_t an, dn;
		w = next_word(&a, &an);
		d = next_word(&a, &dn);
		if (!w || !d || next_word(&a, &n)) { snprintf(why, whylen, "needs an address and a relay"); return -1; }
		char dom[256];
		snprintf(dom, sizeof dom, "%.*s", (int)dn, d);
		list_add(list_get(conf_of(rs), dir[0] == 'd' ? "def_welcomelist_from_rcvd" : "welcomelist_from_rcvd"),
		         w, an, dom);
		return 1;
	}
	if (dir_is2(dir, "welcomelist_from_dkim") || dir_is2(dir, "def_welcomelist_from_dkim") ||
	    dir_is2(dir, "unwelcomelist_from_dkim")) {
		const char *a = args, *d;
		size_t an, dn = 0;
		w = next_word(&a, &an);
		d = next_word(&a, &dn);
		if (!w || next_word(&a, &n)) { snprintf(why, whylen, "needs an address and an optional signing domain"); return -1; }
		char dom[256];
		snprintf(dom, sizeof dom, "%.*s", d ? (int)dn : 0, d ? d : "");
		struct facts_conf *c = conf_of(rs);
		if (dir[0] == 'u') {
			/* remove that domain from the address's entry in both lists */
			for (int k = 0; k < 2; k++) {
				struct wl_list *l = list_find(c, k ? "def_welcomelist_from_dkim" : "welcomelist_from_dkim");
				char p[MAX_ADDR_LEN];
				if (!l || an >= sizeof p) continue;
				snprintf(p, sizeof p, "%.*s", (int)an, w);
				lower(p);
				lower(dom);
				const int *ix = map_get(&l->idx, p);
				if (!ix || *ix <= 0) continue;
				struct wl_entry *e = &l->e[*ix - 1];
				for (size_t j = 0; j < e->ndoms; j++)
					if (strcmp(e->doms[j], dom) == 0) { free(e->doms[j]); e->doms[j] = e->doms[--e->ndoms]; j--; }
				if (!e->ndoms) e->dead = 1;
			}
			return 1;
		}
		list_add(list_get(c, dir[0] == 'd' ? "def_welcomelist_from_dkim" : "welcomelist_from_dkim"), w, an, dom);
		return 1;
	}
	if (dir_is(dir, "enlist_addrlist")) {
		const char *name, *rest;
		size_t nl;
		char lname[128];
		if (paren_name(args, &name, &nl, &rest) < 0 || nl >= sizeof lname || count_words(rest) == 0) {
			snprintf(why, whylen, "expected (LISTNAME) address...");
			return -1;
		}
		memcpy(lname, name, nl);
		lname[nl] = '\0';
		return add_addrs(conf_of(rs), lname, rest, why, whylen);
	}
	if (dir_is(dir, "enlist_uri_host") || dir_is2(dir, "blocklist_uri_host") || dir_is2(dir, "welcomelist_uri_host")) {
		const char *name, *rest = args;
		size_t nl;
		if (dir[0] == 'e') {
			if (paren_name(args, &name, &nl, &rest) < 0) { snprintf(why, whylen, "expected (LISTNAME) host..."); return -1; }
		} else if (dir[0] == 'b') { name = "BLOCK"; nl = 5; }
		else { name = "WELCOME"; nl = 7; }
		if (!count_words(rest)) { snprintf(why, whylen, "no host given"); return -1; }
		struct uri_list *u = ulist_get(conf_of(rs), name, nl, 1);
		while ((w = next_word(&rest, &n))) {
			char h[256];
			int v = 1;
			if (*w == '!') { v = 0; w++; n--; }
			if (!n || n >= sizeof h) continue;
			memcpy(h, w, n);
			h[n] = '\0';
			lower(h);
			*map_slot(&u->hosts, h, 1) = v;
		}
		return 1;
	}
	if (dir_is(dir, "delist_uri_host")) {
		struct facts_conf *c = conf_of(rs);
		const char *name = NULL, *rest = args;
		size_t nl = 0;
		if (paren_name(args, &name, &nl, &rest) < 0) { name = NULL; rest = args; }
		while ((w = next_word(&rest, &n))) {
			char h[256];
			if (*w == '!') { w++; n--; }
			if (!n || n >= sizeof h) continue;
			memcpy(h, w, n);
			h[n] = '\0';
			lower(h);
			for (size_t i = 0; i < c->nulists; i++) {
				struct uri_list *u = &c->ulists[i];
				if (name && (strlen(u->name) != nl || memcmp(u->name, name, nl) != 0)) continue;
				int *v = map_slot(&u->hosts, h, 0);
				if (v) *v = -1;        /* -1: delisted, as absent */
			}
		}
		return 1;
	}
	if (dir_is2(dir, "welcomelist_subject") || dir_is2(dir, "blocklist_subject")) {
		while (*args == ' ' || *args == '\t') args++;
		if (!*args) { snprintf(why, whylen, "no subject given"); return -1; }
		list_add(list_get(conf_of(rs), strstr(dir, "welcome") || strstr(dir, "white") ? "welcomelist_subject"
		                                                                               : "blocklist_subject"),
		         args, strlen(args), NULL);
		return 1;
	}
	if (dir_is(dir, "freemail_domains")) {
		struct facts_conf *c = conf_of(rs);
		while ((w = next_word(&args, &n))) {
			char d[256];
			if (n >= sizeof d) continue;
			memcpy(d, w, n);
			d[n] = '\0';
			int ok = 1;
			for (char *p = d; *p; p++)
				if (!isalnum((unsigned char)*p) && !strchr(".*?-", *p)) ok = 0;
			if (!ok) continue;       /* SpamAssassin warns and skips it */
			lower(d);
			if (strpbrk(d, "*?")) {
				char **nw = realloc(c->fm_wild, (c->nfm_wild + 1) * sizeof *nw);
				if (!nw) abort();
				c->fm_wild = nw;
				c->fm_wild[c->nfm_wild] = strdup(d);
				if (!c->fm_wild[c->nfm_wild]) abort();
				c->nfm_wild++;
			} else {
				*map_slot(&c->fm_domains, d, 1) = 1;
			}
		}
		return 1;
	}
	if (dir_is2(dir, "freemail_welcomelist")) {
		struct facts_conf *c = conf_of(rs);
		while ((w = next_word(&args, &n))) {
			char d[MAX_ADDR_LEN];
			if (n >= sizeof d) continue;
			memcpy(d, w, n);
			d[n] = '\0';
			lower(d);
			*map_slot(&c->fm_welcome, d, 1) = 1;
		}
		return 1;
	}
	if (dir_is(dir, "adsp_override")) {
		/* "[@]domain [nxdomain|unknown|all|discardable|custom_low|custom_med|custom_high]" */
		const char *a = args, *d, *pw;
		size_t dn, pn = 0;
		d = next_word(&a, &dn);
		pw = next_word(&a, &pn);
		if (d && *d == '@') { d++; dn--; }
		char dom[256];
		if (!d || !dn || dn >= sizeof dom || next_word(&a, &n)) { snprintf(why, whylen, "expected a domain and a policy"); return -1; }
		memcpy(dom, d, dn);
		dom[dn] = '\0';
		lower(dom);
		for (char *q = dom; *q; q++)
			if (!isalnum((unsigned char)*q) && !strchr("*._-", *q)) { snprintf(why, whylen, "bad domain %.60s", dom); return -1; }
		static const char *const pol[] = { "nxdomain", "unknown", "all", "discardable", "custom_low", "custom_med", "custom_high", NULL };
		static const char letter[] = "NUAD123";
		int code = 'D';
		if (pw) {
			code = 0;
			for (size_t i = 0; pol[i]; i++)
				if (strlen(pol[i]) == pn && strncasecmp(pw, pol[i], pn) == 0) code = letter[i];
			if (!code) { snprintf(why, whylen, "unknown policy %.*s", (int)pn, pw); return -1; }
		}
		*map_slot(&conf_of(rs)->adsp_override, dom, 1) = code;
		return 1;
	}
	if (dir_is(dir, "freemail_max_body_emails")) return set_num(&conf_of(rs)->fm_max_body_emails, args, why, whylen);
	if (dir_is(dir, "freemail_max_body_freemails")) return set_num(&conf_of(rs)->fm_max_body_freemails, args, why, whylen);
	if (dir_is(dir, "freemail_skip_when_over_max")) return set_num(&conf_of(rs)->fm_skip_when_over_max, args, why, whylen);
	if (dir_is(dir, "freemail_skip_bulk_envfrom")) return set_num(&conf_of(rs)->fm_skip_bulk_envfrom, args, why, whylen);
	if (dir_is2(dir, "freemail_import_welcomelist_auth"))
		return set_num(&conf_of(rs)->fm_import_wl_auth, args, why, whylen);
	if (dir_is2(dir, "freemail_import_def_welcomelist_auth"))
		return set_num(&conf_of(rs)->fm_import_def_wl_auth, args, why, whylen);
	return 0;
}

/* --- addresses of a message ---------------------------------------------------- */

struct addrs {
	char *a[MAX_ADDRS];
	size_t n;
};

static void addrs_add(struct addrs *as, const char *p, size_t n, int squash_dots)
{
	if (as->n >= MAX_ADDRS || n == 0) return;
	char buf[MAX_ADDR_LEN];
	size_t j = 0;
	for (size_t i = 0; i < n && j + 1 < sizeof buf; i++) {
		char ch = (char)tolower((unsigned char)p[i]);
		if (squash_dots && ch == '.' && j && buf[j - 1] == '.') continue;
		buf[j++] = ch;
	}
	buf[j] = '\0';
	for (size_t i = 0; i < as->n; i++) if (strcmp(as->a[i], buf) == 0) return;
	as->a[as->n] = strdup(buf);
	if (!as->a[as->n]) abort();
	as->n++;
}

static void addrs_clear(struct addrs *as)
{
	for (size_t i = 0; i < as->n; i++) free(as->a[i]);
	as->n = 0;
}

static int fqdn_ok(const char *h, size_t n)
{
	/* SpamAssassin's is_fqdn_valid, loosely: dotted labels of letters,
	 * digits and hyphens, a final label that is not all digits */
	if (n == 0 || n > 253 || !memchr(h, '.', n)) return 0;
	size_t lab = 0;
	int alpha_last = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)h[i];
		if (ch == '.') { if (!lab) return 0; lab = 0; alpha_last = 0; continue; }
		if (!isalnum(ch) && ch != '-' && ch < 0x80) return 0;
		if (isalpha(ch) || ch >= 0x80) alpha_last = 1;
		lab++;
	}
	return lab > 0 && alpha_last;
}

static int re_match(const struct eval_msg *m, const pcre2_code *re, const char *s, size_t n, size_t start)
{
	return pcre2_match(re, (PCRE2_SPTR)s, n, start, 0, m->md, m->rs->mctx) >= 0;
}

/* the addresses of one header value (raw), as SpamAssassin's
 * parse_header_addresses finds them; addr@host of each, cut at a second @ */
static void parse_addresses(const struct eval_msg *m, const char *value, struct addrs *out, int squash_dots)
{
	const struct facts_conf *c = conf_get(m);
	char buf[MAX_HDR_PARSE];
	size_t n = 0;
	/* unfold, drop escaped backslashes */
	for (const char *p = value; *p && n + 1 < sizeof buf; p++) {
		if (p[0] == '\\' && p[1] == '\\') { p++; continue; }
		buf[n++] = (*p == '\r' || *p == '\n') ? ' ' : *p;
	}
	while (n && isspace((unsigned char)buf[n - 1])) n--;
	buf[n] = '\0';
	char *s = buf;
	/* a group "name: a, b;" is reduced to its members */
	size_t gl = strcspn(s, "\"()<>:");
	if (gl > 0 && s[gl] == ':') {
		s += gl + 1;
		while (isspace((unsigned char)*s)) s++;
		if (*s == ';') *s = '\0';
	}
	size_t len = strlen(s), pos = 0;
	for (int guard = 0; pos < len && guard < MAX_ADDRS * 4; guard++) {
		/* anchored at pos, as SpamAssassin's s/^...// loop */
		if (pcre2_match(c->re_addr, (PCRE2_SPTR)s, len, pos, PCRE2_ANCHORED, m->md, m->rs->mctx) < 0) break;
		/* the groups: 1 phrase, 2 <address>, 3 bare address, 4 bare phrase */
		PCRE2_SIZE *ovp = pcre2_get_ovector_pointer(m->md), ov[10];
		uint32_t nov = pcre2_get_ovector_count(m->md);
		for (uint32_t i = 0; i < 10; i++) ov[i] = i < 2 * nov ? ovp[i] : PCRE2_UNSET;
		if (ov[1] <= pos) break;
		pos = ov[1];
		char addr[MAX_ADDR_LEN] = "";
		int have = 0;
		if (ov[4] != PCRE2_UNSET) {
			/* <address>: comments removed, must look like an address */
			size_t al = ov[5] - ov[4], j = 0;
			if (al >= sizeof addr) al = sizeof addr - 1;
			int depth = 0;
			for (size_t i = 0; i < al; i++) {
				char ch = s[ov[4] + i];
				if (ch == '(') { depth++; continue; }
				if (ch == ')' && depth) { depth--; continue; }
				if (!depth) addr[j++] = ch;
			}
			addr[j] = '\0';
			have = re_match(m, c->re_mail_full, addr, j, 0);
		} else if (ov[6] != PCRE2_UNSET) {
			size_t al = ov[7] - ov[6];
			if (al >= sizeof addr) al = sizeof addr - 1;
			memcpy(addr, s + ov[6], al);
			addr[al] = '\0';
			have = 1;
		} else if (ov[8] != PCRE2_UNSET) {
			/* only a phrase: taken as the address when it looks like one */
			size_t al = ov[9] - ov[8], j = 0;
			if (al >= sizeof addr) al = sizeof addr - 1;
			int inq = 0, depth = 0;
			for (size_t i = 0; i < al; i++) {
				char ch = s[ov[8] + i];
				if (ch == '"') { inq = !inq; continue; }
				if (!inq && ch == '(') { depth++; continue; }
				if (!inq && ch == ')' && depth) { depth--; continue; }
				if (!depth) addr[j++] = ch;
			}
			addr[j] = '\0';
			char *at = strchr(addr, '@');
			if (at && re_match(m, c->re_mail_full, addr, j, 0)) {
				char *host = at + 1, *at2 = strchr(host, '@');
				have = fqdn_ok(host, at2 ? (size_t)(at2 - host) : strlen(host));
			}
		}
		if (have) {
			/* SpamAssassin's checks of odd results */
			size_t q = 0;
			for (const char *p = addr; *p; p++) q += *p == '"';
			if (strncmp(addr, "\"\"@", 3) == 0 || q == 1) have = 0;
		}
		if (have) {
			char *at = strchr(addr, '@');
			if (at) {
				char *at2 = strchr(at + 1, '@');
				if (at2) *at2 = '\0';
			}
			addrs_add(out, addr, strlen(addr), squash_dots);
		}
	}
	/* something left with an @: <address> forms in it */
	if (pos < len && memchr(s + pos, '@', len - pos)) {
		for (const char *p = s + pos; (p = strchr(p, '<')); p++) {
			const char *e = strchr(p, '>');
			if (!e) break;
			size_t al = (size_t)(e - p - 1);
			char addr[MAX_ADDR_LEN];
			if (al == 0 || al >= sizeof addr) continue;
			memcpy(addr, p + 1, al);
			addr[al] = '\0';
			if (!re_match(m, c->re_mail_full, addr, al, 0)) continue;
			char *at = strchr(addr, '@'), *at2 = at ? strchr(at + 1, '@') : NULL;
			if (at2) *at2 = '\0';
			addrs_add(out, addr, strlen(addr), squash_dots);
		}
	}
}

/* every field named name (case-insensitive; "EnvelopeFrom" included):
 * its addresses; first = only the topmost field */
static size_t header_addrs(const struct eval_msg *m, const char *name, struct addrs *out, int first, int squash_dots)
{
	size_t found = 0;
	for (size_t i = 0; i < m->in->nheaders; i++) {
		const struct rules_header *h = &m->in->headers[i];
		if (strcasecmp(h->name, name) != 0) continue;
		size_t before = out->n;
		parse_addresses(m, h->raw ? h->raw : "", out, squash_dots);
		found += out->n - before;
		if (first) break;
	}
	return found;
}

/* --- per-message state -------------------------------------------------------- */

struct sig {
	char result[16];        /* pass, fail, neutral, policy, temperror, permerror, "" (not verified) */
	char d[256];
	char sdid[256];         /* domain of i= if given, else d= (lower case) */
	char b[16];             /* first characters of b= */
};

struct facts_msg {
	int from_done, to_done;
	struct addrs from, to;
	int wl_from, def_wl_from;          /* 1 listed, -1 forged, 0 not; 2 = not computed */
	int uri_done;
	struct strmap uri_hits;            /* URI host list name -> 1 */
	int fm_done, fm_ok;
	struct addrs fm_body;
	int dkim_done;
	int dkim_verified;                 /* the dkim filter gave its verdicts */
	struct sig sigs[MAX_SIGS];
	size_t nsigs;
	size_t nsig_fields;                /* DKIM-Signature fields that parse */
	struct addrs authors;
	int dkwl_done, dkwl, def_dkwl;
	int spf_done;
	char spf[16], spf_helo[16];        /* results, "" unknown */
	int adsp_done;
	struct strmap adsp;                /* author domain -> ADSP letter */
};

static void facts_msg_free(void *p)
{
	struct facts_msg *f = p;
	addrs_clear(&f->from);
	addrs_clear(&f->to);
	addrs_clear(&f->fm_body);
	addrs_clear(&f->authors);
	map_free(&f->uri_hits);
	map_free(&f->adsp);
	free(f);
}

static struct facts_msg *msg_state(struct eval_msg *m)
{
	struct facts_msg *f = eval_cache_get(m, EVC_FACTS);
	if (f) return f;
	f = calloc(1, sizeof *f);
	if (!f) abort();
	f->wl_from = f->def_wl_from = 2;
	eval_cache_set(m, EVC_FACTS, f, facts_msg_free);
	return f;
}

/* SpamAssassin's all_from_addrs: Resent-From (first field) if any, else
 * From, Envelope-Sender, Resent-Sender, X-Envelope-From, EnvelopeFrom */
static const struct addrs *all_from(struct eval_msg *m)
{
	struct facts_msg *f = msg_state(m);
	if (f->from_done) return &f->from;
	f->from_done = 1;
	if (!header_addrs(m, "Resent-From", &f->from, 1, 1)) {
		static const char *const h[] = { "From", "Envelope-Sender", "Resent-Sender", "X-Envelope-From",
		                                 "EnvelopeFrom", NULL };
		for (size_t i = 0; h[i]; i++) header_addrs(m, h[i], &f->from, 0, 1);
	}
	return &f->from;
}

/* SpamAssassin's all_to_addrs */
static const struct addrs *all_to(struct eval_msg *m)
{
	struct facts_msg *f = msg_state(m);
	if (f->to_done) return &f->to;
	f->to_done = 1;
	size_t rs = header_addrs(m, "Resent-To", &f->to, 1, 0);
	rs += header_addrs(m, "Resent-Cc", &f->to, 1, 0);
	if (rs) return &f->to;
	/* "for <addr>;" in the newest three Received fields */
	const struct facts_conf *c = conf_get(m);
	size_t seen = 0;
	for (size_t i = 0; i < m->in->nheaders && seen < 3; i++) {
		const struct rules_header *h = &m->in->headers[i];
		if (strcasecmp(h->name, "Received") != 0) continue;
		seen++;
		const char *v = h->decoded ? h->decoded : h->raw;
		if (!re_match(m, c->re_rcvd_for, v, strlen(v), 0)) continue;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
		if (fqdn_ok(v + ov[4], ov[5] - ov[4])) addrs_add(&f->to, v + ov[2], ov[3] - ov[2], 0);
	}
	static const char *const h[] = { "To", "Apparently-To", "Delivered-To", "Envelope-Recipients",
		"Apparently-Resent-To", "X-Envelope-To", "Envelope-To", "X-Delivered-To", "X-Original-To",
		"X-Rcpt-To", "X-Real-To", "Cc", NULL };
	for (size_t i = 0; h[i]; i++) header_addrs(m, h[i], &f->to, 0, 0);
	return &f->to;
}

static int any_in_list(const struct addrs *as, const struct wl_list *l)
{
	for (size_t i = 0; l && i < as->n; i++)
		if (list_match(l, as->a[i])) return 1;
	return 0;
}

/* --- WLBLEval --------------------------------------------------------------------- */

/* check(): the list name argument must be given */
static int check_list_arg(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	conf_of(rs);
	if (!eval_arg(r, 0)[0]) { snprintf(why, whylen, "a list name is needed"); return -1; }
	return 0;
}

static int check_conf(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)r; (void)why; (void)whylen;
	conf_of(rs);
	return 0;
}

static double from_in_named(struct eval_msg *m, const char *list)
{
	return any_in_list(all_from(m), list_find(conf_get(m), list));
}

static double to_in_named(struct eval_msg *m, const char *list)
{
	return any_in_list(all_to(m), list_find(conf_get(m), list));
}

static double from_in_blocklist(struct eval_msg *m, const struct rule *r) { (void)r; return from_in_named(m, "blocklist_from"); }
static double to_in_blocklist(struct eval_msg *m, const struct rule *r) { (void)r; return to_in_named(m, "blocklist_to"); }
static double to_in_welcomelist(struct eval_msg *m, const struct rule *r) { (void)r; return to_in_named(m, "welcomelist_to"); }
static double to_in_more_spam(struct eval_msg *m, const struct rule *r) { (void)r; return to_in_named(m, "more_spam_to"); }
static double to_in_all_spam(struct eval_msg *m, const struct rule *r) { (void)r; return to_in_named(m, "all_spam_to"); }
static double from_in_list(struct eval_msg *m, const struct rule *r) { return from_in_named(m, eval_arg(r, 0)); }
static double to_in_list(struct eval_msg *m, const struct rule *r) { return to_in_named(m, eval_arg(r, 0)); }

static double replyto_in_list(struct eval_msg *m, const struct rule *r)
{
	const struct wl_list *l = list_find(conf_get(m), eval_arg(r, 0));
	if (!l) return 0;
	struct addrs as = { .n = 0 };
	header_addrs(m, "Reply-To", &as, 0, 0);
	/* SpamAssassin asks the Reply-To addresses as one string: a list of
	 * more than one matches only a pattern spanning them; the first is
	 * the common case */
	int hit = as.n == 1 && list_match(l, as.a[0]);
	addrs_clear(&as);
	return hit;
}

/* an IPv4 or IPv6 address inside a CIDR "net/len" (or equal to net) */
static int ip_in_net(const char *ip, const char *net)
{
	unsigned char a[16], b[16];
	char nb[80];
	snprintf(nb, sizeof nb, "%s", net);
	char *sl = strchr(nb, '/');
	int bits = -1;
	if (sl) { *sl = '\0'; bits = atoi(sl + 1); }
	int fam = strchr(nb, ':') ? 6 : 4, len = fam == 6 ? 16 : 4;
	/* parse without inet_pton (rules/ has no socket headers needs): IPv4 only
	 * by hand; IPv6 compared textually when no prefix is given */
	if (fam == 6 || strchr(ip, ':')) return bits < 0 && strcasecmp(ip, nb) == 0;
	unsigned x[4], y[4];
	if (sscanf(ip, "%u.%u.%u.%u", &x[0], &x[1], &x[2], &x[3]) != 4) return 0;
	if (sscanf(nb, "%u.%u.%u.%u", &y[0], &y[1], &y[2], &y[3]) != 4) return 0;
	for (int i = 0; i < 4; i++) { a[i] = (unsigned char)x[i]; b[i] = (unsigned char)y[i]; }
	if (bits < 0 || bits > len * 8) bits = len * 8;
	for (int i = 0; i < bits; i++) {
		int byte = i / 8, bit = 7 - i % 8;
		if (((a[byte] >> bit) & 1) != ((b[byte] >> bit) & 1)) return 0;
	}
	return 1;
}

/* does relay r match a welcomelist_from_rcvd second argument? */
static int relay_matches(const struct eval_relay *r, const char *dom)
{
	size_t dl = strlen(dom);
	if (dom[0] == '[') {
		const char *e = strchr(dom, ']');
		if (!e || !r->ip[0]) return 0;
		char net[80];
		snprintf(net, sizeof net, "%.*s%s", (int)(e - dom - 1), dom + 1, e[1] == '/' ? e + 1 : "");
		if (!strchr(net, '/') && !strchr(net, ':')) {
			unsigned o[4];
			char rest;
			if (sscanf(net, "%u.%u.%u.%u%c", &o[0], &o[1], &o[2], &o[3], &rest) == 4)
				return strcmp(net, r->ip) == 0;
			/* a classful prefix "10.1" : the relay's address starts with "10.1." */
			char pfx[84];
			size_t pl = strlen(net);
			while (pl && net[pl - 1] == '.') net[--pl] = '\0';
			snprintf(pfx, sizeof pfx, "%s.", net);
			return strncmp(r->ip, pfx, strlen(pfx)) == 0;
		}
		return ip_in_net(r->ip, net);
	}
	/* the relay's rDNS name is that name or under it */
	size_t rl = strlen(r->rdns);
	if (!rl || rl < dl) return 0;
	if (strcasecmp(r->rdns + rl - dl, dom) != 0) return 0;
	return rl == dl || r->rdns[rl - dl - 1] == '.';
}

/* SpamAssassin's _check_welcomelist_rcvd: 1 listed and relayed as
 * promised, -1 listed but not (a forgery, unless welcomelist_allows_relays), 0 */
static int welcomelist_rcvd(struct eval_msg *m, const struct wl_list *l, const char *addr)
{
	if (!l) return 0;
	const struct eval_relays *rl = eval_relays(m);
	if (!rl || rl->n == 0) return 0;
	/* the last untrusted relay; all trusted ones only when none is untrusted */
	const struct eval_relay *cand[64];
	size_t nc = 0;
	if (rl->ntrusted < rl->n) cand[nc++] = &rl->relay[rl->ntrusted];
	else for (size_t i = 0; i < rl->ntrusted && nc < 64; i++) cand[nc++] = &rl->relay[i];
	int forged = 0;
	for (size_t i = 0; i < l->n; i++) {
		const struct wl_entry *e = &l->e[i];
		if (!entry_match(e, addr)) continue;
		for (size_t d = 0; d < e->ndoms; d++) {
			for (size_t k = 0; k < nc; k++)
				if (relay_matches(cand[k], e->doms[d])) return 1;
			forged = -1;
		}
	}
	if (forged && list_match(list_find(conf_get(m), "welcomelist_allows_relays"), addr)) forged = 0;
	return forged;
}

static int from_rcvd(struct eval_msg *m, const char *list)
{
	const struct addrs *as = all_from(m);
	const struct wl_list *l = list_find(conf_get(m), list);
	int found = 0;
	for (size_t i = 0; i < as->n; i++) {
		int w = welcomelist_rcvd(m, l, as->a[i]);
		if (w == 1) return 1;
		if (w == -1) found = -1;
	}
	return found;
}

static void wl_from_compute(struct eval_msg *m)
{
	struct facts_msg *f = msg_state(m);
	if (f->wl_from != 2) return;
	f->wl_from = from_in_named(m, "welcomelist_from") ? 1 : from_rcvd(m, "welcomelist_from_rcvd");
	f->def_wl_from = from_rcvd(m, "def_welcomelist_from_rcvd");
}

static double from_in_welcomelist(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	wl_from_compute(m);
	return msg_state(m)->wl_from > 0;
}

static double from_in_default_welcomelist(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	wl_from_compute(m);
	return msg_state(m)->def_wl_from > 0;
}

static double forged_in_welcomelist(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	wl_from_compute(m);
	return msg_state(m)->wl_from < 0 && msg_state(m)->def_wl_from == 0;
}

static double forged_in_default_welcomelist(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	wl_from_compute(m);
	return msg_state(m)->def_wl_from < 0 && msg_state(m)->wl_from == 0;
}

/* the subject (all Subject fields), lower case, against a list of
 * substrings with wildcards */
static double subject_in(struct eval_msg *m, const char *list)
{
	const struct wl_list *l = list_find(conf_get(m), list);
	if (!l) return 0;
	char subj[4096];
	if (!eval_header_all(m, "Subject", subj, sizeof subj) || !subj[0]) return 0;
	lower(subj);
	const int *k = map_get(&l->idx, subj);
	if (k && *k > 0 && !l->e[*k - 1].dead) return 1;
	char pat[MAX_ADDR_LEN + 4];
	for (size_t i = 0; i < l->n; i++) {
		if (l->e[i].dead) continue;
		snprintf(pat, sizeof pat, "*%s*", l->e[i].pat);    /* the pattern may match anywhere */
		if (glob_match(pat, subj)) return 1;
	}
	return 0;
}

static double subject_in_welcomelist(struct eval_msg *m, const struct rule *r) { (void)r; return subject_in(m, "welcomelist_subject"); }
static double subject_in_blocklist(struct eval_msg *m, const struct rule *r) { (void)r; return subject_in(m, "blocklist_subject"); }

/* uri_host_lists - one URI host against every uri host list: a list
 * whose most specific entry for the host or a parent domain of it (at
 * most 11 names; an address alone) lists it is noted in f->uri_hits */
static void uri_host_lists(struct facts_msg *f, const struct facts_conf *c, const struct eval_uri_host *uh)
{
	/* the keys asked: the host and its parent domains (at most 11), or the address */
	const char *keys[12];
	size_t nk = 0;
	if (uh->is_ip) {
		keys[nk++] = uh->host;
	} else {
		for (const char *h = uh->host; h; ) {
			if (nk == 11) { memmove(keys, keys + 1, 10 * sizeof *keys); nk = 10; }
			keys[nk++] = h;
			const char *dot = strchr(h, '.');
			h = dot ? dot + 1 : NULL;
		}
	}
	for (size_t u = 0; u < c->nulists; u++) {
		for (size_t k = 0; k < nk; k++) {
			const int *v = map_get(&c->ulists[u].hosts, keys[k]);
			if (!v || *v < 0) continue;
			if (*v) *map_slot(&f->uri_hits, c->ulists[u].name, 1) = 1;
			break;
		}
	}
}

static void uri_lists_compute(struct eval_msg *m)
{
	struct facts_msg *f = msg_state(m);
	if (f->uri_done) return;
	f->uri_done = 1;
	const struct facts_conf *c = conf_get(m);
	if (!c || !c->nulists) return;
	/* the message's URI hosts, links first (uri_hosts.h: the list
	 * eval_net.c's check_uri_host_listed reads too); not the domains
	 * of mail addresses, as SpamAssassin's WLBLEval */
	const struct eval_uri_hosts *hs = eval_uri_hosts(m);
	for (size_t i = 0; i < hs->n; i++)
		if (!hs->v[i].mailto) uri_host_lists(f, c, &hs->v[i]);
}

static double uri_host_in_blocklist(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	uri_lists_compute(m);
	return map_get(&msg_state(m)->uri_hits, "BLOCK") != NULL;
}

static double uri_host_in_welcomelist(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	uri_lists_compute(m);
	return map_get(&msg_state(m)->uri_hits, "WELCOME") != NULL;
}

/* --- FreeMail ----------------------------------------------------------------------- */

static int fm_wild_match(const char *pat, const char *dom)
{
	/* '*' any run without a dot, '?' any one character */
	for (;;) {
		if (*pat == '*') {
			pat++;
			for (const char *s = dom;; s++) {
				if (fm_wild_match(pat, s)) return 1;
				if (!*s || *s == '.') return 0;
			}
		}
		if (!*pat) return !*dom;
		if (!*dom) return 0;
		if (*pat != '?' && *pat != *dom) return 0;
		pat++;
		dom++;
	}
}

static int is_freemail(const struct eval_msg *m, const char *email)
{
	const struct facts_conf *c = conf_get(m);
	if (!email[0]) return 0;
	if (map_get(&c->fm_welcome, email)) return 0;
	const char *at = strrchr(email, '@');
	const char *dom = at ? at + 1 : email;
	if (map_get(&c->fm_welcome, dom)) return 0;
	if (re_match(m, c->re_fm_welcome, email, strlen(email), 0)) return 0;
	if ((c->fm_import_wl_auth && list_match(list_find(c, "welcomelist_auth"), email)) ||
	    (c->fm_import_def_wl_auth && list_match(list_find(c, "def_welcomelist_auth"), email)))
		return 0;
	if (map_get(&c->fm_domains, dom)) return 1;
	/* wildcard domains: "\@(?:pattern)$" over the address */
	for (size_t i = 0; i < c->nfm_wild; i++)
		for (const char *a = strchr(email, '@'); a; a = strchr(a + 1, '@'))
			if (fm_wild_match(c->fm_wild[i], a + 1)) return 1;
	return 0;
}

static int fm_available(const struct eval_msg *m)
{
	const struct facts_conf *c = conf_get(m);
	return c && (c->fm_domains.n || c->nfm_wild);
}

#define ATEXT(ch) (isalnum((unsigned char)(ch)) || ((ch) && strchr("!#$%&'*+/=?^_`{|}~-", (ch))))

static int tld_ok(const struct facts_conf *c, const char *t, size_t n)
{
	char buf[64];
	if (n == 0 || n >= sizeof buf) return 0;
	for (size_t i = 0; i < n; i++) buf[i] = (char)tolower((unsigned char)t[i]);
	buf[n] = '\0';
	if (c->tlds.n) return map_get(&c->tlds, buf) != NULL;
	/* no TLD list loaded: any alphabetic label of two letters or more */
	for (size_t i = 0; i < n; i++) if (!isalpha((unsigned char)buf[i])) return 0;
	return n >= 2;
}

/* FreeMail's email pattern at the '@' at s[at]: the address's start and
 * end, or 0.  from: the first position a match may start at. */
static int email_at(const struct facts_conf *c, const char *s, size_t len, size_t at, size_t from,
                    size_t *start, size_t *end)
{
	if (at == 0 || at + 1 >= len || !ATEXT(s[at - 1])) return 0;
	/* local part: atext runs joined by single dots, no dot first or
	 * last, at most 64 characters, not preceded by atext; the leftmost
	 * start wins (as a regex scanning from the left) */
	size_t st = at, p0 = at;
	for (;;) {
		size_t e = p0;
		while (p0 > from && ATEXT(s[p0 - 1]) && at - (p0 - 1) <= 64) p0--;
		if (p0 == e) break;
		if (p0 > from && ATEXT(s[p0 - 1])) break;      /* cut by the 64 limit: not a start */
		st = p0;
		if (p0 > from + 1 && s[p0 - 1] == '.' && ATEXT(s[p0 - 2])) { p0--; continue; }
		break;
	}
	if (st == at) return 0;
	/* domain: up to five dot-separated tokens; 1 to 4 labels, then a TLD */
	size_t tb[6], te[6], nt = 0, p = at + 1;
	while (nt < 6 && p < len) {
		size_t q = p;
		while (q < len && (isalnum((unsigned char)s[q]) || s[q] == '-') && q - p < 64) q++;
		if (q == p) break;
		tb[nt] = p; te[nt] = q; nt++;
		if (q + 1 < len && s[q] == '.' && (isalnum((unsigned char)s[q + 1]) || s[q + 1] == '-')) p = q + 1;
		else break;
	}
	for (size_t k = nt > 4 ? 4 : (nt ? nt - 1 : 0); k >= 1; k--) {
		int labels_ok = 1;
		for (size_t i = 0; i < k && labels_ok; i++) {
			size_t l = te[i] - tb[i];
			if (l > 61 || !isalnum((unsigned char)s[tb[i]]) || !isalnum((unsigned char)s[te[i] - 1])) labels_ok = 0;
		}
		if (!labels_ok) continue;
		if (!tld_ok(c, s + tb[k], te[k] - tb[k])) continue;
		size_t e = te[k];
		if (e + 1 < len && s[e] == '.' && isalnum((unsigned char)s[e + 1])) continue;
		*start = st;
		*end = e;
		return 1;
	}
	return 0;
}

/* FreeMail's _parse_body: the addresses of mailto: links in HTML and of
 * the body text (not those in URLs, not "<addr>" or "addr word:" quotes) */
static void fm_body_compute(struct eval_msg *m)
{
	struct facts_msg *f = msg_state(m);
	if (f->fm_done) return;
	f->fm_done = 1;
	const struct facts_conf *c = conf_get(m);
	struct addrs all = { .n = 0 };
	/* mailto: links of the HTML parts */
	for (size_t i = 0; i < m->in->nparts && all.n < 20; i++) {
		const struct rules_part *pt = &m->in->parts[i];
		if (!pt->is_html || !pt->data) continue;
		size_t len = pt->len > MAX_BODY_SCAN ? MAX_BODY_SCAN : pt->len;
		for (size_t k = 0; k + 7 < len && all.n < 20; k++) {
			if (strncasecmp(pt->data + k, "mailto:", 7) != 0) continue;
			size_t a = k + 7, e = a;
			while (e < len && e - a < 320 && pt->data[e] != '@' && (ATEXT(pt->data[e]) || pt->data[e] == '.')) e++;
			size_t st, en;
			if (e < len && pt->data[e] == '@' && email_at(c, pt->data, len, e, a, &st, &en) && st == a)
				addrs_add(&all, pt->data + st, en - st, 0);
		}
	}
	/* the body text */
	size_t scanned = 0;
	for (size_t li = 0; li < m->in->nbody && all.n < MAX_BODY_EMAILS && scanned < MAX_BODY_SCAN; li++) {
		const char *s = m->in->body[li];
		size_t len = m->in->body_len[li];
		scanned += len;
		if (!memchr(s, '@', len)) continue;
		char *t = malloc(len + 1);
		if (!t) abort();
		memcpy(t, s, len);
		t[len] = '\0';
		/* URLs with an @ or %40 in them go */
		for (size_t k = 0; k < len; k++) {
			size_t sch = 0;
			if (strncasecmp(t + k, "http://", 7) == 0) sch = 7;
			else if (strncasecmp(t + k, "https://", 8) == 0) sch = 8;
			if (!sch) continue;
			size_t e = k + sch, lim = e + 255;
			while (e < len && !isspace((unsigned char)t[e])) e++;
			int has = 0;
			for (size_t q = k + sch; q < e && q <= lim; q++)
				if (t[q] == '@' || (q + 2 < e && t[q] == '%' && t[q + 1] == '4' && t[q + 2] == '0')) has = 1;
			if (!has) continue;
			size_t b = k && t[k - 1] == '<' ? k - 1 : k;
			memset(t + b, ' ', e - b);
			k = e;
		}
		/* quoted addresses ("<addr>", "addr wrote:") go */
		for (size_t k = 0; k < len; k++) {
			if (t[k] != '@') continue;
			size_t st, en;
			if (!email_at(c, t, len, k, 0, &st, &en)) continue;
			if (st >= 7 && strncasecmp(t + st - 7, "mailto:", 7) == 0) { k = en; continue; }
			int quoted = en < len && t[en] == '>';
			if (!quoted) {
				/* "addr word:" with 1 to 10 spaces, a word of 2 to 11 letters
				 * that is not fax/facsimile/tel/phone/mail/e-mail */
				size_t q = en, ws = 0;
				while (q < len && isspace((unsigned char)t[q])) { q++; ws++; }
				size_t wl = 0;
				while (q + wl < len && isalpha((unsigned char)t[q + wl])) wl++;
				if (ws >= 1 && ws <= 10 && wl >= 2 && wl <= 11 && q + wl < len && t[q + wl] == ':') {
					static const char *const keep[] = { "fax", "facsi", "tel", "phone", "mail", "email",
					                                    "-mail", "e-mail", NULL };
					int kept = 0;
					for (size_t z = 0; keep[z]; z++)
						if (strncasecmp(t + q, keep[z], strlen(keep[z])) == 0) kept = 1;
					quoted = !kept;
					if (quoted) en = q + wl;       /* the word and colon go too */
				}
			}
			if (quoted) {
				size_t b = st && t[st - 1] == '<' ? st - 1 : st;
				if (en < len && t[en] == '>') en++;
				memset(t + b, ' ', en - b);
			}
			k = en;
		}
		for (size_t k = 0; k < len && all.n < MAX_BODY_EMAILS; k++) {
			if (t[k] != '@') continue;
			size_t st, en;
			if (!email_at(c, t, len, k, 0, &st, &en)) continue;
			addrs_add(&all, t + st, en - st, 0);
			k = en;
		}
		free(t);
	}
	/* too many addresses or freemail addresses: the body says nothing */
	int count_all = 0, count_fm = 0;
	f->fm_ok = 1;
	for (size_t i = 0; i < all.n; i++) {
		if (++count_all == c->fm_max_body_emails && c->fm_skip_when_over_max) { f->fm_ok = 0; break; }
		if (!is_freemail(m, all.a[i])) continue;
		if (++count_fm == c->fm_max_body_freemails && c->fm_skip_when_over_max) { f->fm_ok = 0; break; }
		addrs_add(&f->fm_body, all.a[i], strlen(all.a[i]), 0);
	}
	if (!f->fm_ok) addrs_clear(&f->fm_body);
	addrs_clear(&all);
}

/* check(): an optional regex argument (second for check_freemail_header) */
static int check_fm_regex(struct ruleset *rs, struct rule *r, unsigned idx, char *why, size_t whylen)
{
	conf_of(rs);
	if (r->ev_argc <= idx) return 0;
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)eval_arg(r, idx), PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
	if (!re) { snprintf(why, whylen, "bad regular expression %.60s", eval_arg(r, idx)); return -1; }
	r->ev_data = re;
	return 0;
}

static int check_fm_from(struct ruleset *rs, struct rule *r, char *why, size_t whylen) { return check_fm_regex(rs, r, 0, why, whylen); }

static int check_fm_header(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	if (!eval_arg(r, 0)[0]) { snprintf(why, whylen, "a header name is needed"); return -1; }
	return check_fm_regex(rs, r, 1, why, whylen);
}

static int check_fm_replyto(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	conf_of(rs);
	const char *w = eval_arg(r, 0);
	if (r->ev_argc && strcmp(w, "replyto") != 0 && strcmp(w, "reply") != 0) {
		snprintf(why, whylen, "option must be replyto or reply, not %.40s", w);
		return -1;
	}
	return 0;
}

static void free_re(void *p) { pcre2_code_free(p); }

static int fm_regex_ok(const struct eval_msg *m, const struct rule *r, const char *email)
{
	return !r->ev_data || re_match(m, r->ev_data, email, strlen(email), 0);
}

static double freemail_from(struct eval_msg *m, const struct rule *r)
{
	if (!fm_available(m)) return 0;
	const struct addrs *as = all_from(m);
	for (size_t i = 0; i < as->n; i++)
		if (is_freemail(m, as->a[i]) && fm_regex_ok(m, r, as->a[i])) return 1;
	return 0;
}

static double freemail_header(struct eval_msg *m, const struct rule *r)
{
	if (!fm_available(m)) return 0;
	char name[128];
	snprintf(name, sizeof name, "%s", eval_arg(r, 0));
	char *colon = strchr(name, ':');       /* "Reply-To:addr" is the same as "Reply-To" */
	if (colon) *colon = '\0';
	struct addrs as = { .n = 0 };
	header_addrs(m, name, &as, 0, 0);
	int hit = 0;
	for (size_t i = 0; i < as.n && !hit; i++)
		hit = is_freemail(m, as.a[i]) && fm_regex_ok(m, r, as.a[i]);
	addrs_clear(&as);
	return hit;
}

static double freemail_replyto(struct eval_msg *m, const struct rule *r)
{
	if (!fm_available(m)) return 0;
	const struct facts_conf *c = conf_get(m);
	int reply = r->ev_argc && strcmp(eval_arg(r, 0), "reply") == 0;
	if (c->fm_skip_bulk_envfrom) {
		const char *env = eval_header_first(m, "EnvelopeFrom");
		if (env && re_match(m, c->re_bulk_envfrom, env, strlen(env), 0)) return 0;
	}
	struct addrs from = { .n = 0 }, rt = { .n = 0 };
	header_addrs(m, "From", &from, 0, 0);
	header_addrs(m, "Reply-To", &rt, 0, 0);
	int from_fm = 0, rt_fm = 0, from_not_in_rt = 1, hit = 0;
	for (size_t i = 0; i < from.n; i++) from_fm |= is_freemail(m, from.a[i]);
	for (size_t i = 0; i < rt.n; i++) rt_fm |= is_freemail(m, rt.a[i]);
	for (size_t i = 0; i < from.n; i++)
		for (size_t j = 0; j < rt.n; j++)
			if (strcmp(from.a[i], rt.a[j]) == 0) from_not_in_rt = 0;
	if (from_fm && rt_fm && from_not_in_rt) { hit = 1; goto out; }
	if (!reply && !rt_fm) goto out;
	if (reply && ((rt.n && !rt_fm) || (!rt.n && !from_fm))) goto out;
	fm_body_compute(m);
	struct facts_msg *f = msg_state(m);
	if (!f->fm_ok) goto out;
	const struct addrs *cmp = !reply || rt_fm ? &rt : &from;
	for (size_t i = 0; i < f->fm_body.n && !hit; i++)
		for (size_t j = 0; j < cmp->n && !hit; j++)
			if (strcmp(f->fm_body.a[i], cmp->a[j]) != 0) hit = 1;
out:
	addrs_clear(&from);
	addrs_clear(&rt);
	return hit;
}

static double freemail_body(struct eval_msg *m, const struct rule *r)
{
	if (!fm_available(m)) return 0;
	fm_body_compute(m);
	struct facts_msg *f = msg_state(m);
	for (size_t i = 0; f->fm_ok && i < f->fm_body.n; i++)
		if (fm_regex_ok(m, r, f->fm_body.a[i])) return 1;
	return 0;
}

/* --- SPF ---------------------------------------------------------------------------- */

static void spf_word(char *out, size_t outlen, const char *v)
{
	size_t n = 0;
	while (v[n] && isalpha((unsigned char)v[n]) && n + 1 < outlen) { out[n] = (char)tolower((unsigned char)v[n]); n++; }
	out[n] = '\0';
}

static int spf_result_ok(const char *r)
{
	static const char *const ok[] = { "pass", "neutral", "none", "fail", "softfail", "temperror", "permerror", NULL };
	for (size_t i = 0; ok[i]; i++) if (strcmp(r, ok[i]) == 0) return 1;
	return 0;
}

/* SPF results an internal relay already wrote (SpamAssassin re-uses them
 * before asking the DNS): Received-SPF and Authentication-Results fields
 * in ALL-INTERNAL, oldest first */
static void spf_from_internal(struct eval_msg *m, struct facts_msg *f)
{
	size_t nh;
	const struct rules_header *hs = eval_headers(m, &nh);
	const char *all = NULL;
	for (size_t i = m->in->nheaders; i < nh && !all; i++)
		if (strcmp(hs[i].name, "ALL-INTERNAL") == 0) all = hs[i].raw;
	if (!all || !*all) return;
	/* one field per line (continuation lines start with white space):
	 * take them in reverse (oldest first) */
	const char *fields[256];
	size_t nl = 0;
	for (const char *p = all; *p && nl < 256; ) {
		fields[nl++] = p;
		const char *e = p;
		while ((e = strchr(e, '\n')) && (e[1] == ' ' || e[1] == '\t')) e++;
		if (!e) break;
		p = e + 1;
	}
	for (size_t i = nl; i-- > 0; ) {
		/* the field unfolded, bounded */
		char l[2048];
		size_t ll = 0;
		for (const char *p = fields[i]; *p && ll + 1 < sizeof l; p++) {
			if (*p == '\n') {
				if (p[1] != ' ' && p[1] != '\t') break;
				continue;
			}
			l[ll++] = *p;
		}
		l[ll] = '\0';
		char res[16] = "", ident[16] = "";
		if (strncasecmp(l, "Received-SPF:", 13) == 0) {
			const char *v = l + 13;
			while (*v == ' ' || *v == '\t') v++;
			spf_word(res, sizeof res, v);
			const char *idp = strcasestr(v, "identity=");
			if (idp) spf_word(ident, sizeof ident, idp + 9);
		} else if (strncasecmp(l, "Authentication-Results:", 23) == 0 || strncasecmp(l, "Arc-Authentication-Results:", 27) == 0) {
			const char *sp = NULL;
			for (const char *q = l; *q && !sp; q++)
				if (*q == ';') {
					const char *w = q + 1;
					while (*w == ' ' || *w == '\t') w++;
					if (strncasecmp(w, "spf", 3) == 0) {
						const char *e = w + 3;
						while (*e == ' ' || *e == '\t') e++;
						if (*e == '=') sp = e + 1;
					}
				}
			if (!sp) continue;
			while (*sp == ' ' || *sp == '\t') sp++;
			spf_word(res, sizeof res, sp);
			if (strcmp(res, "hardfail") == 0) strcpy(res, "fail");
			const char *semi = strchr(sp, ';');
			const char *smtp = strcasestr(sp, "smtp.");
			if (smtp && (!semi || smtp < semi)) spf_word(ident, sizeof ident, smtp + 5);
		} else {
			continue;
		}
		if (!spf_result_ok(res)) continue;
		int helo = strcmp(ident, "helo") == 0;
		if (ident[0] && !helo && strcmp(ident, "mfrom") != 0 && strcmp(ident, "mailfrom") != 0) continue;
		char *slot = helo ? f->spf_helo : f->spf;
		if (slot[0]) continue;
		snprintf(slot, 16, "%s", res);
	}
}

static void spf_compute(struct eval_msg *m)
{
	struct facts_msg *f = msg_state(m);
	if (f->spf_done) return;
	f->spf_done = 1;
	spf_from_internal(m, f);
	/* then the spf filter's own checks */
	const char *v;
	if (!f->spf[0] && (v = eval_fact(m, "spf:mailfrom")) && spf_result_ok(v)) snprintf(f->spf, sizeof f->spf, "%s", v);
	if (!f->spf_helo[0] && (v = eval_fact(m, "spf:helo")) && spf_result_ok(v)) snprintf(f->spf_helo, sizeof f->spf_helo, "%s", v);
}

static double spf_is(struct eval_msg *m, const struct rule *r, int helo, const char *want)
{
	(void)r;
	spf_compute(m);
	struct facts_msg *f = msg_state(m);
	return strcmp(helo ? f->spf_helo : f->spf, want) == 0;
}

#define SPF_FN(res) \
	static double spf_##res(struct eval_msg *m, const struct rule *r) { return spf_is(m, r, 0, #res); } \
	static double spf_helo_##res(struct eval_msg *m, const struct rule *r) { return spf_is(m, r, 1, #res); }
SPF_FN(pass) SPF_FN(neutral) SPF_FN(none) SPF_FN(fail) SPF_FN(softfail) SPF_FN(permerror) SPF_FN(temperror)

/* the envelope sender as the SPF plugin takes it (lower case), "" if none */
static void spf_sender(struct eval_msg *m, char *out, size_t outlen)
{
	out[0] = '\0';
	const struct eval_relays *rl = eval_relays(m);
	/* the first external relay's envelope-from, as its Received field says */
	if (rl && rl->ninternal < rl->n && rl->relay[rl->ninternal].envfrom[0]) {
		snprintf(out, outlen, "%s", rl->relay[rl->ninternal].envfrom);
		lower(out);
		return;
	}
	struct addrs as = { .n = 0 };
	header_addrs(m, "EnvelopeFrom", &as, 1, 0);
	if (as.n) snprintf(out, outlen, "%s", as.a[0]);
	addrs_clear(&as);
}

static double spf_wl(struct eval_msg *m, const char *l1, const char *l2)
{
	spf_compute(m);
	struct facts_msg *f = msg_state(m);
	if (strcmp(f->spf, "pass") != 0) return 0;
	char sender[MAX_ADDR_LEN];
	spf_sender(m, sender, sizeof sender);
	if (!sender[0]) return 0;
	const struct facts_conf *c = conf_get(m);
	return list_match(list_find(c, l1), sender) || list_match(list_find(c, l2), sender);
}

static double spf_welcomelist_from(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	return spf_wl(m, "welcomelist_from_spf", "welcomelist_auth");
}

static double def_spf_welcomelist_from(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	return spf_wl(m, "def_welcomelist_from_spf", "def_welcomelist_auth");
}

/* --- DKIM, ARC ---------------------------------------------------------------------- */

/* tag value of a DKIM tag list ("v=1; d=example.com; ..."): copied, "" if absent */
static void dkim_tag(const char *v, const char *tag, char *out, size_t outlen)
{
	size_t tl = strlen(tag);
	out[0] = '\0';
	for (const char *p = v; p && *p; ) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
		const char *semi = strchr(p, ';');
		size_t el = semi ? (size_t)(semi - p) : strlen(p);
		if (el > tl && strncmp(p, tag, tl) == 0) {
			const char *q = p + tl;
			while (q < p + el && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) q++;
			if (q < p + el && *q == '=') {
				q++;
				size_t j = 0;
				for (; q < p + el && j + 1 < outlen; q++)
					if (!isspace((unsigned char)*q)) out[j++] = *q;
				out[j] = '\0';
				return;
			}
		}
		p = semi ? semi + 1 : NULL;
	}
}

/* Mail::DKIM takes a signature field apart when every non-empty element
 * between semicolons has an '=' */
static int tag_list_parses(const char *v)
{
	for (const char *p = v; p; ) {
		const char *semi = strchr(p, ';');
		size_t el = semi ? (size_t)(semi - p) : strlen(p);
		int blank = 1, eq = 0;
		for (size_t i = 0; i < el; i++) {
			if (!isspace((unsigned char)p[i])) blank = 0;
			if (p[i] == '=') eq = 1;
		}
		if (!blank && !eq) return 0;
		p = semi ? semi + 1 : NULL;
	}
	return 1;
}

static void dkim_compute(struct eval_msg *m)
{
	struct facts_msg *f = msg_state(m);
	if (f->dkim_done) return;
	f->dkim_done = 1;
	/* the signature fields of the message */
	struct { char d[256], i[256], b[16]; } fields[MAX_SIGS];
	size_t nf = 0;
	for (size_t k = 0; k < m->in->nheaders; k++) {
		const struct rules_header *h = &m->in->headers[k];
		int dk = strcasecmp(h->name, "DKIM-Signature") == 0;
		if (!dk && strcasecmp(h->name, "DomainKey-Signature") != 0) continue;
		const char *v = h->raw ? h->raw : "";
		if (!tag_list_parses(v)) continue;
		f->nsig_fields++;
		if (nf == MAX_SIGS) continue;
		char b[512];
		dkim_tag(v, "d", fields[nf].d, sizeof fields[nf].d);
		dkim_tag(v, "i", fields[nf].i, sizeof fields[nf].i);
		dkim_tag(v, "b", b, sizeof b);
		snprintf(fields[nf].b, sizeof fields[nf].b, "%.8s", b);
		nf++;
	}
	/* the authors: From addresses */
	header_addrs(m, "From", &f->authors, 0, 0);
	/* the dkim filter's verdicts: "result d s b" lines; without them the
	 * fields themselves, not verified */
	const char *v = eval_fact(m, "dkim");
	if (!v) {
		for (size_t k = 0; k < nf; k++) {
			struct sig *sg = &f->sigs[f->nsigs++];
			snprintf(sg->d, sizeof sg->d, "%.255s", fields[k].d);
			lower(sg->d);
			const char *at = strrchr(fields[k].i, '@');
			snprintf(sg->sdid, sizeof sg->sdid, "%.255s", at && at[1] ? at + 1 : fields[k].d);
			lower(sg->sdid);
		}
		return;
	}
	f->dkim_verified = 1;
	for (const char *p = v; *p && f->nsigs < MAX_SIGS; ) {
		const char *e = strchr(p, '\n');
		size_t ll = e ? (size_t)(e - p) : strlen(p);
		char line[600], res[16] = "", d[256] = "", s[128] = "", b[16] = "";
		snprintf(line, sizeof line, "%.*s", (int)(ll < sizeof line ? ll : sizeof line - 1), p);
		/* "none": no signature; d "-": a field the verifier could not take
		 * apart (DKIM_SIGNED then rests on the fields that parse) */
		if (sscanf(line, "%15s %255s %127s %15s", res, d, s, b) >= 2 && strcmp(res, "none") != 0 &&
		    strcmp(d, "-") != 0) {
			struct sig *sg = &f->sigs[f->nsigs++];
			snprintf(sg->result, sizeof sg->result, "%s", res);
			snprintf(sg->d, sizeof sg->d, "%s", d);
			lower(sg->d);
			if (strcmp(b, "-") == 0) b[0] = '\0';
			snprintf(sg->b, sizeof sg->b, "%s", b);
			/* the identity's domain from the matching field, else d= */
			memcpy(sg->sdid, sg->d, sizeof sg->sdid);
			for (size_t k = 0; k < nf; k++) {
				if (strcasecmp(fields[k].d, sg->d) != 0) continue;
				if (b[0] && strncmp(fields[k].b, b, strlen(b)) != 0) continue;
				const char *at = strrchr(fields[k].i, '@');
				if (at && at[1]) { snprintf(sg->sdid, sizeof sg->sdid, "%s", at + 1); lower(sg->sdid); }
				break;
			}
		}
		p = e ? e + 1 : p + ll;
	}
}

static int sig_valid(const struct sig *s) { return strcmp(s->result, "pass") == 0; }

static int is_author_domain(const struct facts_msg *f, const char *dom)
{
	for (size_t i = 0; i < f->authors.n; i++) {
		const char *at = strrchr(f->authors.a[i], '@');
		if (at && strcmp(at + 1, dom) == 0) return 1;
	}
	return 0;
}

/* domain matches an acceptable-domain argument ("example.com", or
 * ".example.com" / "*.example.com" for it and its subdomains) */
static int domain_acceptable(const char *sdid, const char *ad)
{
	if (ad[0] == '.' || (ad[0] == '*' && ad[1] == '.')) {
		const char *d = ad[0] == '.' ? ad + 1 : ad + 2;
		size_t sl = strlen(sdid), dl = strlen(d);
		if (strcasecmp(sdid, d) == 0) return 1;
		return sl > dl && sdid[sl - dl - 1] == '.' && strcasecmp(sdid + sl - dl, d) == 0;
	}
	return strcasecmp(sdid, ad) == 0;
}

static int dkim_signed_by(struct eval_msg *m, const struct rule *r, int must_be_valid, int author, unsigned first_arg)
{
	struct facts_msg *f = msg_state(m);
	for (size_t i = 0; i < f->nsigs; i++) {
		const struct sig *s = &f->sigs[i];
		if (must_be_valid && !sig_valid(s)) continue;
		if (author && !is_author_domain(f, s->sdid)) continue;
		if (r->ev_argc <= first_arg) return 1;
		for (unsigned a = first_arg; a < r->ev_argc; a++)
			if (domain_acceptable(s->sdid, eval_arg(r, a))) return 1;
	}
	return 0;
}

static double dkim_signed(struct eval_msg *m, const struct rule *r)
{
	dkim_compute(m);
	struct facts_msg *f = msg_state(m);
	if (r->ev_argc == 0) return f->nsig_fields > 0 || f->nsigs > 0;
	return dkim_signed_by(m, r, 0, 0, 0);
}

static double dkim_valid(struct eval_msg *m, const struct rule *r)
{
	dkim_compute(m);
	return dkim_signed_by(m, r, 1, 0, 0);
}

static double dkim_valid_author_sig(struct eval_msg *m, const struct rule *r)
{
	dkim_compute(m);
	return dkim_signed_by(m, r, 1, 1, 0);
}

static double dkim_valid_envelopefrom(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	dkim_compute(m);
	struct addrs as = { .n = 0 };
	header_addrs(m, "EnvelopeFrom", &as, 1, 0);
	const char *at = as.n ? strrchr(as.a[0], '@') : NULL;
	int hit = 0;
	struct facts_msg *f = msg_state(m);
	for (size_t i = 0; at && i < f->nsigs && !hit; i++)
		hit = sig_valid(&f->sigs[i]) && strcmp(f->sigs[i].sdid, at + 1) == 0;
	addrs_clear(&as);
	return hit;
}

static double dkim_dependable(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	dkim_compute(m);
	/* the verdicts are there (SpamAssassin: and the message was not truncated) */
	return msg_state(m)->dkim_verified;
}

static double dkim_signsome(struct eval_msg *m, const struct rule *r)
{
	(void)m; (void)r;
	return 0;           /* SpamAssassin: always 0 (the old DK policy is gone) */
}

/* SpamAssassin's _check_dkim_welcomelist: the author is in a DKIM
 * welcomelist and a valid signature of the domain that list names (or of
 * the author's domain) is there */
static void dkim_wl_compute(struct eval_msg *m)
{
	struct facts_msg *f = msg_state(m);
	if (f->dkwl_done) return;
	f->dkwl_done = 1;
	dkim_compute(m);
	if (!f->authors.n || !f->nsigs) return;
	const struct facts_conf *c = conf_get(m);
	static const char *const lists[] = { "def_welcomelist_from_dkim", "def_welcomelist_auth",
	                                     "welcomelist_from_dkim", "welcomelist_auth" };
	for (int li = 0; li < 4; li++) {
		const struct wl_list *l = list_find(c, lists[li]);
		if (!l) continue;
		int dkim_list = li == 0 || li == 2;
		int *out = li < 2 ? &f->def_dkwl : &f->dkwl;
		for (size_t a = 0; a < f->authors.n && a < 8 && !*out; a++) {
			const char *author = f->authors.a[a];
			const char *at = strrchr(author, '@');
			const char *adom = at ? at + 1 : "";
			/* entries whose pattern matches this author */
			for (size_t e = 0; e < l->n && !*out; e++) {
				const struct wl_entry *en = &l->e[e];
				if (!entry_match(en, author)) continue;
				size_t nd = dkim_list ? en->ndoms : 1;
				for (size_t d = 0; d < nd && !*out; d++) {
					const char *acc = dkim_list ? en->doms[d] : "";
					const char *accd = strrchr(acc, '@');
					if (accd) acc = accd + 1;
					for (size_t s = 0; s < f->nsigs && !*out; s++) {
						const struct sig *sg = &f->sigs[s];
						if (!sig_valid(sg)) continue;
						int match;
						if (!acc[0]) match = strcmp(sg->sdid, adom) == 0;
						else if (acc[0] == '.' || (acc[0] == '*' && acc[1] == '.')) {
							const char *d2 = acc[0] == '.' ? acc + 1 : acc + 2;
							size_t sl = strlen(sg->sdid), dl = strlen(d2);
							match = sl > dl && sg->sdid[sl - dl - 1] == '.' && strcasecmp(sg->sdid + sl - dl, d2) == 0;
						} else match = strcasecmp(sg->sdid, acc) == 0;
						if (match) *out = 1;
					}
				}
			}
		}
	}
}

static double dkim_welcomelist_from(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	dkim_wl_compute(m);
	return msg_state(m)->dkwl;
}

static double def_dkim_welcomelist_from(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	dkim_wl_compute(m);
	return msg_state(m)->def_dkwl;
}

/* --- ADSP (RFC 5617, historic; SpamAssassin still has rules for it) ---------------- */

/* the author domains ADSP is asked about: a dot and a final label of
 * two letters or more; those with a valid author signature or a
 * signature that failed for now are left out */
static size_t adsp_domains(struct eval_msg *m, const char **out, size_t max)
{
	struct facts_msg *f = msg_state(m);
	size_t n = 0;
	for (size_t a = 0; a < f->authors.n && n < max; a++) {
		const char *at = strrchr(f->authors.a[a], '@');
		const char *d = at ? at + 1 : NULL;
		if (!d || !*d) continue;
		const char *dot = strrchr(d, '.');
		size_t tl = dot ? strlen(dot + 1) : 0;
		if (!dot || dot == d || tl < 2 || strspn(dot + 1, "abcdefghijklmnopqrstuvwxyz-") != tl) continue;
		int dup = 0, skip = 0;
		for (size_t k = 0; k < n; k++) dup |= strcmp(out[k], d) == 0;
		for (size_t s2 = 0; s2 < f->nsigs; s2++)
			if (strcmp(f->sigs[s2].sdid, d) == 0 &&
			    (sig_valid(&f->sigs[s2]) || strcmp(f->sigs[s2].result, "temperror") == 0)) skip = 1;
		if (!dup && !skip) out[n++] = d;
	}
	return n;
}

/* the override for a domain: itself, then "*.parent" ... "*" */
static int adsp_override_of(const struct facts_conf *c, const char *dom)
{
	const int *v = map_get(&c->adsp_override, dom);
	if (v) return *v;
	char key[300];
	for (const char *p = dom; p; ) {
		const char *dot = strchr(p, '.');
		snprintf(key, sizeof key, "*%s%s", dot ? "." : "", dot ? dot + 1 : "");
		if ((v = map_get(&c->adsp_override, key))) return *v;
		p = dot ? dot + 1 : NULL;
	}
	return 0;
}

static void adsp_compute(struct eval_msg *m)
{
	struct facts_msg *f = msg_state(m);
	if (f->adsp_done) return;
	f->adsp_done = 1;
	dkim_compute(m);
	if (!f->dkim_verified) return;       /* SpamAssassin: signatures not ready */
	const struct facts_conf *c = conf_get(m);
	const char *doms[8];
	size_t n = adsp_domains(m, doms, 8);
	for (size_t i = 0; i < n; i++) {
		int code = adsp_override_of(c, doms[i]);
		if (!code) {
			char key[300];
			snprintf(key, sizeof key, "dns:TXT:_adsp._domainkey.%s", doms[i]);
			const char *v = eval_fact(m, key);
			if (!v) continue;                 /* not asked or no answer in time */
			const char *p = strstr(v, "dkim=");
			code = 'U';
			if (p && strncasecmp(p + 5, "all", 3) == 0) code = 'A';
			else if (p && strncasecmp(p + 5, "discardable", 11) == 0) code = 'D';
		}
		*map_slot(&f->adsp, doms[i], 1) = code;
	}
}

static int check_adsp(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	struct facts_conf *c = conf_of(rs);
	const char *a = eval_arg(r, 0);
	if (!a[0] || strspn(a, "NUAD123*") != strlen(a)) { snprintf(why, whylen, "policy letters N, U, A, D, 1, 2, 3 or * expected"); return -1; }
	c->adsp_rules = 1;
	return 0;
}

static double dkim_adsp_hit(struct eval_msg *m, const char *letters, const struct rule *r, unsigned first_dom)
{
	adsp_compute(m);
	struct facts_msg *f = msg_state(m);
	if (strcmp(letters, "*") == 0) letters = "NAD123";
	int any = 0;
	for (size_t i = 0; i < f->adsp.cap && !any; i++)
		if (f->adsp.k[i] && f->adsp.v[i] && strchr(letters, f->adsp.v[i])) any = 1;
	if (!any) return 0;
	if (!r || r->ev_argc <= first_dom) return 1;
	for (unsigned k = first_dom; k < r->ev_argc; k++)
		for (size_t a = 0; a < f->authors.n; a++) {
			const char *at = strrchr(f->authors.a[a], '@');
			if (at && domain_acceptable(at + 1, eval_arg(r, k))) return 1;
		}
	return 0;
}

static double dkim_adsp(struct eval_msg *m, const struct rule *r)
{
	return dkim_adsp_hit(m, eval_arg(r, 0), r, 1);
}

static double dkim_signall(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	return dkim_adsp_hit(m, "A", NULL, 0);
}

static double dkim_testing(struct eval_msg *m, const struct rule *r)
{
	(void)m; (void)r;
	return 0;           /* SpamAssassin 4.0 never sets its key-testing flag */
}

/* the ADSP records this message needs: only when check_dkim_adsp rules
 * are loaded and the dkim filter gave verdicts */
static void queries(struct eval_msg *m, void (*want)(void *arg, const char *qname, int rrtype), void *arg)
{
	const struct facts_conf *c = conf_get(m);
	if (!c || !c->adsp_rules) return;
	struct facts_msg *f = msg_state(m);
	dkim_compute(m);
	if (!f->dkim_verified) return;
	const char *doms[8];
	size_t n = adsp_domains(m, doms, 8);
	for (size_t i = 0; i < n; i++) {
		if (adsp_override_of(c, doms[i])) continue;
		char q[300];
		snprintf(q, sizeof q, "_adsp._domainkey.%s", doms[i]);
		want(arg, q, 16);
	}
}

/* ARC: signed when an ARC-Seal field parses; valid when a filter verified
 * the chain (fact "arc", an "arc" Authentication-Results entry) */
static double arc_signed(struct eval_msg *m, const struct rule *r)
{
	if (r->ev_argc) return 0;     /* SpamAssassin: with domains, never */
	for (size_t k = 0; k < m->in->nheaders; k++)
		if (strcasecmp(m->in->headers[k].name, "ARC-Seal") == 0 &&
		    tag_list_parses(m->in->headers[k].raw ? m->in->headers[k].raw : ""))
			return 1;
	const char *v = eval_fact(m, "arc");
	return v && *v && strcmp(v, "none") != 0;
}

static double arc_valid(struct eval_msg *m, const struct rule *r)
{
	if (r->ev_argc) return 0;
	const char *v = eval_fact(m, "arc");
	return v && strcmp(v, "pass") == 0;
}

/* --- DMARC (fact "dmarc": "RESULT POLICY") ------------------------------------------- */

static int dmarc_is(struct eval_msg *m, const char *result, const char *policy)
{
	const char *v = eval_fact(m, "dmarc");
	if (!v) return 0;
	char res[16] = "", pol[16] = "";
	if (sscanf(v, "%15s %15s", res, pol) < 1) return 0;
	if (strcmp(res, result) != 0) return 0;
	return !policy || strcmp(pol, policy) == 0;
}

static double dmarc_pass(struct eval_msg *m, const struct rule *r) { (void)r; return dmarc_is(m, "pass", NULL); }
static double dmarc_reject(struct eval_msg *m, const struct rule *r) { (void)r; return dmarc_is(m, "fail", "reject"); }
static double dmarc_quarantine(struct eval_msg *m, const struct rule *r) { (void)r; return dmarc_is(m, "fail", "quarantine"); }
static double dmarc_none(struct eval_msg *m, const struct rule *r) { (void)r; return dmarc_is(m, "fail", "none"); }
static double dmarc_missing(struct eval_msg *m, const struct rule *r) { (void)r; return dmarc_is(m, "none", NULL); }

static const struct eval_def defs[] = {
	/* WLBLEval (and the SpamAssassin 3 spellings) */
	{ "check_from_in_blocklist", from_in_blocklist, 0, 0, check_conf, NULL, 0 },
	{ "check_from_in_blacklist", from_in_blocklist, 0, 0, check_conf, NULL, 0 },
	{ "check_to_in_blocklist", to_in_blocklist, 0, 0, check_conf, NULL, 0 },
	{ "check_to_in_blacklist", to_in_blocklist, 0, 0, check_conf, NULL, 0 },
	{ "check_to_in_welcomelist", to_in_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_to_in_whitelist", to_in_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_to_in_more_spam", to_in_more_spam, 0, 0, check_conf, NULL, 0 },
	{ "check_to_in_all_spam", to_in_all_spam, 0, 0, check_conf, NULL, 0 },
	{ "check_from_in_list", from_in_list, 1, 1, check_list_arg, NULL, 0 },
	{ "check_to_in_list", to_in_list, 1, 1, check_list_arg, NULL, 0 },
	{ "check_replyto_in_list", replyto_in_list, 1, 1, check_list_arg, NULL, 0 },
	{ "check_from_in_welcomelist", from_in_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_from_in_whitelist", from_in_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_forged_in_welcomelist", forged_in_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_forged_in_whitelist", forged_in_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_from_in_default_welcomelist", from_in_default_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_from_in_default_whitelist", from_in_default_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_forged_in_default_welcomelist", forged_in_default_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_forged_in_default_whitelist", forged_in_default_welcomelist, 0, 0, check_conf, NULL, 0 },
	/* check_uri_host_listed itself is eval_net.c's (same lists, its own copy) */
	{ "check_uri_host_in_blocklist", uri_host_in_blocklist, 0, 0, check_conf, NULL, 0 },
	{ "check_uri_host_in_blacklist", uri_host_in_blocklist, 0, 0, check_conf, NULL, 0 },
	{ "check_uri_host_in_welcomelist", uri_host_in_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_uri_host_in_whitelist", uri_host_in_welcomelist, 0, 0, check_conf, NULL, 0 },
	/* WelcomeListSubject */
	{ "check_subject_in_welcomelist", subject_in_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_subject_in_whitelist", subject_in_welcomelist, 0, 0, check_conf, NULL, 0 },
	{ "check_subject_in_blocklist", subject_in_blocklist, 0, 0, check_conf, NULL, 0 },
	{ "check_subject_in_blacklist", subject_in_blocklist, 0, 0, check_conf, NULL, 0 },
	/* FreeMail */
	{ "check_freemail_from", freemail_from, 0, 1, check_fm_from, free_re, 0 },
	{ "check_freemail_header", freemail_header, 1, 2, check_fm_header, free_re, 0 },
	{ "check_freemail_replyto", freemail_replyto, 0, 1, check_fm_replyto, NULL, 0 },
	{ "check_freemail_body", freemail_body, 0, 1, check_fm_from, free_re, 0 },
	/* SPF */
	{ "check_for_spf_pass", spf_pass, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_neutral", spf_neutral, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_none", spf_none, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_fail", spf_fail, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_softfail", spf_softfail, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_permerror", spf_permerror, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_temperror", spf_temperror, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_helo_pass", spf_helo_pass, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_helo_neutral", spf_helo_neutral, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_helo_none", spf_helo_none, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_helo_fail", spf_helo_fail, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_helo_softfail", spf_helo_softfail, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_helo_permerror", spf_helo_permerror, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_helo_temperror", spf_helo_temperror, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_welcomelist_from", spf_welcomelist_from, 0, 0, check_conf, NULL, 0 },
	{ "check_for_spf_whitelist_from", spf_welcomelist_from, 0, 0, check_conf, NULL, 0 },
	{ "check_for_def_spf_welcomelist_from", def_spf_welcomelist_from, 0, 0, check_conf, NULL, 0 },
	{ "check_for_def_spf_whitelist_from", def_spf_welcomelist_from, 0, 0, check_conf, NULL, 0 },
	/* DKIM, ARC */
	{ "check_dkim_signed", dkim_signed, 0, 8, check_conf, NULL, 0 },
	{ "check_dkim_valid", dkim_valid, 0, 8, check_conf, NULL, 0 },
	{ "check_dkim_verified", dkim_valid, 0, 8, check_conf, NULL, 0 },
	{ "check_dkim_valid_author_sig", dkim_valid_author_sig, 0, 8, check_conf, NULL, 0 },
	{ "check_dkim_valid_envelopefrom", dkim_valid_envelopefrom, 0, 0, check_conf, NULL, 0 },
	{ "check_dkim_dependable", dkim_dependable, 0, 0, check_conf, NULL, 0 },
	{ "check_dkim_signsome", dkim_signsome, 0, 0, check_conf, NULL, 0 },
	{ "check_dkim_signall", dkim_signall, 0, 0, check_conf, NULL, 0 },
	{ "check_dkim_testing", dkim_testing, 0, 0, check_conf, NULL, 0 },
	{ "check_dkim_adsp", dkim_adsp, 1, 9, check_adsp, NULL, 0 },
	{ "check_for_dkim_welcomelist_from", dkim_welcomelist_from, 0, 0, check_conf, NULL, 0 },
	{ "check_for_dkim_whitelist_from", dkim_welcomelist_from, 0, 0, check_conf, NULL, 0 },
	{ "check_for_def_dkim_welcomelist_from", def_dkim_welcomelist_from, 0, 0, check_conf, NULL, 0 },
	{ "check_for_def_dkim_whitelist_from", def_dkim_welcomelist_from, 0, 0, check_conf, NULL, 0 },
	{ "check_arc_signed", arc_signed, 0, 8, check_conf, NULL, 0 },
	{ "check_arc_valid", arc_valid, 0, 8, check_conf, NULL, 0 },
	/* DMARC */
	{ "check_dmarc_pass", dmarc_pass, 0, 0, check_conf, NULL, 0 },
	{ "check_dmarc_reject", dmarc_reject, 0, 0, check_conf, NULL, 0 },
	{ "check_dmarc_quarantine", dmarc_quarantine, 0, 0, check_conf, NULL, 0 },
	{ "check_dmarc_none", dmarc_none, 0, 0, check_conf, NULL, 0 },
	{ "check_dmarc_missing", dmarc_missing, 0, 0, check_conf, NULL, 0 },
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_facts = {
	.name = "facts",
	.defs = defs,
	.directive = directive,
	.free_conf = free_conf,
	.queries = queries,
};
