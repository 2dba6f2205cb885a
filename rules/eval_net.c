/* eval_net.c - eval: functions over DNS blocklists: SpamAssassin's DNSEval
 * (check_rbl, check_rbl_sub, check_rbl_txt, check_dns_sender), URIDNSBL
 * (the uridnsbl / uridnssub / urirhsbl / urirhssub rule types,
 * check_uridnsbl) and WLBLEval's check_uri_host_listed (enlist_uri_host
 * lists; no DNS, but it shares the URI host list).
 *
 * No I/O here: the queries hook names what the message needs looked up
 * (relay addresses reversed into each list's zone, URI domains, their name
 * servers and addresses, the envelope sender's domain); the bridge
 * (filters/rules_net.c) resolves them before the scan, in rounds, so a
 * later round can ask about what an earlier one answered (a domain's NS
 * names, then their addresses, then those in a list), and answers through
 * facts (eval_net.h).  With network tests off nothing is asked, no fact is
 * known and none of these rules hits (tflags net).
 *
 * Which relay addresses a list sees follows DNSEval: the untrusted relays'
 * addresses (private ones dropped, each once), plus the addresses in the
 * originating_ip_headers fields; a set name ending in -lastexternal /
 * -notfirsthop uses the external relays instead, -firsttrusted only the
 * first untrusted one, -untrusted all but it.  Relays come from
 * eval_relays() (eval_relay.h).
 *
 * Approximations (see README): trusted_networks is read as "the addresses
 * of the relays the trust path marked trusted" (for the originating
 * addresses, and the trusted hosts a non-"nice" list skips); URI
 * domains are chosen by how their URIs appeared, links first, without
 * SpamAssassin's split of links with and without anchor text; uridnssub lists without tflags "a" are asked about the addresses
 * of the domain's name servers, with "a" about the host's own addresses
 * (SpamAssassin 4.0.1 mixes these up); check_dns_sender hits when both the
 * A and MX lookups of the sender's domain fail with NXDOMAIN or SERVFAIL
 * (what the rule describes; 4.0.1's code can never hit). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "rules/eval.h"
#include "rules/eval_net.h"
#include "rules/eval_relay.h"
#include "rules/uri_hosts.h"
#include "proxy/smtp_parse.h"

#define MAX_IPS        32     /* relay/originating addresses considered */
#define MAX_NS         8      /* name servers of one domain */
#define MAX_ADDRS      4      /* addresses of one name */
#define MAX_NAME       256
#define LABELS_KEPT    10     /* check_uri_host_listed: host, parent, ... */

/* --- a small string -> int map (open addressing) --------------------------- */

struct strmap {
	char **key;
	int   *val;
	size_t cap, n;
};

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static int *map_slot(struct strmap *m, const char *k, int create)
{
	if (create && (m->n + 1) * 2 > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 64;
		char **nk = calloc(ncap, sizeof *nk);
		int *nv = calloc(ncap, sizeof *nv);
		if (!nk || !nv) abort();
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->key[i]) continue;
			size_t j = hash_str(m->key[i]) & (ncap - 1);
			while (nk[j]) j = (j + 1) & (ncap - 1);
			nk[j] = m->key[i];
			nv[j] = m->val[i];
		}
		free(m->key); free(m->val);
		m->key = nk; m->val = nv; m->cap = ncap;
	}
	if (!m->cap) return NULL;
	size_t j = hash_str(k) & (m->cap - 1);
	while (m->key[j]) {
		if (strcmp(m->key[j], k) == 0) return &m->val[j];
		j = (j + 1) & (m->cap - 1);
	}
	if (!create) return NULL;
	m->key[j] = strdup(k);
	if (!m->key[j]) abort();
	m->val[j] = 0;
	m->n++;
	return &m->val[j];
}

static void map_put(struct strmap *m, const char *k, int v) { *map_slot(m, k, 1) = v; }
static const int *map_get(const struct strmap *m, const char *k) { return map_slot((struct strmap *)m, k, 0); }

static void map_free(struct strmap *m)
{
	for (size_t i = 0; i < m->cap; i++) free(m->key[i]);
	free(m->key); free(m->val);
	memset(m, 0, sizeof *m);
}

/* --- subtests: which answers a rule accepts -------------------------------- */

enum st_kind { ST_ANY = 0, ST_EXACT, ST_MASK, ST_RANGE, ST_VALMASK, ST_REGEX };

struct subtest {
	enum st_kind kind;
	char exact[256];
	uint32_t n1, n2;
	pcre2_code *re;
};

static int parse_quad(const char *s, uint32_t *out)
{
	unsigned a, b, c, d;
	char tail;
	if (sscanf(s, "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 || c > 255 || d > 255)
		return -1;
	*out = (a << 24) | (b << 16) | (c << 8) | d;
	return 0;
}

static int all_digits(const char *s, size_t n)
{
	if (!n) return 0;
	for (size_t i = 0; i < n; i++) if (!isdigit((unsigned char)s[i])) return 0;
	return 1;
}

/* check_rbl's subtest (Dns.pm): a number is a bit mask over a 127/8
 * answer, a dotted quad must equal the answer, anything else is a regex */
static int subtest_rbl(const char *s, struct subtest *st, char *why, size_t whylen)
{
	memset(st, 0, sizeof *st);
	size_t n = strlen(s);
	uint32_t q;
	if (!n) { st->kind = ST_ANY; return 0; }
	if (all_digits(s, n) && n <= 10) {
		st->kind = ST_MASK;
		st->n1 = (uint32_t)strtoul(s, NULL, 10);
		return 0;
	}
	if (parse_quad(s, &q) == 0 && strspn(s, "0123456789.") == n && n < sizeof st->exact) {
		st->kind = ST_EXACT;
		snprintf(st->exact, sizeof st->exact, "%s", s);
		return 0;
	}
	int err;
	PCRE2_SIZE off;
	st->re = pcre2_compile((PCRE2_SPTR)s, n, 0, &err, &off, NULL);
	if (!st->re) {
		PCRE2_UCHAR msg[120];
		pcre2_get_error_message(err, msg, sizeof msg);
		snprintf(why, whylen, "subtest /%.60s/: %s", s, (const char *)msg);
		return -1;
	}
	st->kind = ST_REGEX;
	return 0;
}

/* one number of a URIDNSBL subtest: decimal, 0xhex or a dotted quad */
static int uri_num(const char *s, size_t n, uint32_t *out, int *quad)
{
	char buf[32];
	if (!n || n >= sizeof buf) return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	*quad = 0;
	if (all_digits(buf, n) && n <= 10) { unsigned long v = strtoul(buf, NULL, 10); if (v > 0xffffffffUL) return -1; *out = (uint32_t)v; return 0; }
	if (n > 2 && buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X') && n <= 10 && strspn(buf + 2, "0123456789abcdefABCDEF") == n - 2) {
		*out = (uint32_t)strtoul(buf + 2, NULL, 16);
		return 0;
	}
	if (parse_quad(buf, out) == 0 && strspn(buf, "0123456789.") == n) { *quad = 1; return 0; }
	return -1;
}

/* uridnssub/urirhssub subtest (URIDNSBL.pm): N (bit mask over a 127/8
 * answer), A.B.C.D (that address), N1-N2 (a range), N1/N2 (value/mask) */
static int subtest_uri(const char *s, struct subtest *st)
{
	memset(st, 0, sizeof *st);
	size_t n = strlen(s), k = strcspn(s, "/-");
	int q1 = 0, q2 = 0;
	if (uri_num(s, k, &st->n1, &q1) < 0) return -1;
	if (k == n) {
		if (q1) { st->kind = ST_RANGE; st->n2 = st->n1; }
		else st->kind = ST_MASK;
		return 0;
	}
	if (uri_num(s + k + 1, n - k - 1, &st->n2, &q2) < 0) return -1;
	st->kind = s[k] == '-' ? ST_RANGE : ST_VALMASK;
	return 0;
}

/* does answer text a of alen bytes (an address for A, the text for TXT,
 * which may hold any byte, NUL too) pass st; mctx: the ruleset's match
 * limits (the text is the zone owner's, the pattern the admin's) */
static int subtest_match(const struct subtest *st, const char *a, size_t alen, pcre2_match_data *md,
                         pcre2_match_context *mctx)
{
	uint32_t num;
	int is_quad = strlen(a) == alen && parse_quad(a, &num) == 0;
	switch (st->kind) {
	case ST_ANY: return 1;
	case ST_EXACT: return strlen(st->exact) == alen && memcmp(st->exact, a, alen) == 0;
	case ST_MASK: return is_quad && (num >> 24) == 127 && (num & st->n1) != 0;
	case ST_RANGE: return is_quad && num >= st->n1 && num <= st->n2;
	case ST_VALMASK: return is_quad && (num & st->n2) == (st->n1 & st->n2);
	case ST_REGEX: {
		pcre2_match_data *own = md ? NULL : pcre2_match_data_create_from_pattern(st->re, NULL);
		int rc = pcre2_match(st->re, (PCRE2_SPTR)a, alen, 0, 0, md ? md : own, mctx);
		if (own) pcre2_match_data_free(own);
		return rc >= 0;
	}
	}
	return 0;
}

/* --- TXT answers as facts ----------------------------------------------------- *
 * A TXT record's text is bytes of the zone owner's choice: a line break
 * or a NUL inside it must not cut it into several answers (a record
 * "junk\nv=spf1 +all" is not "v=spf1 +all", nor a list's text a second,
 * made-up one).  So a fact holds one record a line, escaped. */

size_t eval_net_txt_escape(const char *text, size_t len, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		if (c == '\\' || c == '\n' || c == '\0') {
			out[o++] = '\\';
			out[o++] = c == '\n' ? 'n' : c == '\0' ? '0' : '\\';
		} else {
			out[o++] = c;
		}
	}
	out[o] = '\0';
	return o;
}

/* the next record of a TXT fact at p, unescaped into out (room for
 * strlen(p) + 1; NUL-terminated, *outlen bytes, NULs inside counted);
 * returns where the record after it starts, NULL at the end */
static const char *txt_next(const char *p, char *out, size_t *outlen)
{
	size_t o = 0;
	if (!p || !*p) return NULL;
	for (; *p && *p != '\n'; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			out[o++] = *p == 'n' ? '\n' : *p == '0' ? '\0' : *p;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
	*outlen = o;
	return *p ? p + 1 : p;
}

/* --- configuration (rule-file directives) ----------------------------------- */

enum { UF_A = 1, UF_NS = 2, UF_NOTRIM = 4, UF_DOMAINS_ONLY = 8, UF_IPS_ONLY = 16 };

struct uribl {                  /* one uridnsbl/uridnssub/urirhsbl/urirhssub line */
	char *rule;
	char *zone;                 /* lower case, no final dot */
	int   txt;                  /* type TXT (else A) */
	int   rhs;                  /* urirhs*: the domain is looked up, not an address */
	int   has_sub;
	struct subtest sub;
};

struct uri_list {               /* enlist_uri_host (NAME) ... */
	char *name;
	struct strmap hosts;        /* host -> 1 listed, 0 "!host" excluded */
};

struct block_rule { char *rule; char *zone; };

struct askdns {                 /* askdns NAME TEMPLATE [TYPE [SUBTEST]] */
	char *rule;
	char *tmpl;                 /* the query with one _TAG_ in it */
	char  tag[32];              /* AUTHORDOMAIN, SENDERDOMAIN or LASTEXTERNALHELO */
	int   type;                 /* 1 A, 2 NS, 15 MX, 16 TXT */
	int   list;                 /* TAG.zone: a blocklist (codes read as such) */
	int   has_sub;
	struct subtest sub;
	char  why[160];             /* set: the rule cannot run here, and why */
};

struct net_conf {
	struct uribl *uri;
	size_t nuri;
	struct strmap skip;         /* uridnsbl_skip_domain */
	unsigned max_domains;       /* uridnsbl_max_domains */
	int skip_mailto;            /* uridnsbl_skip_mailto */
	struct strmap tlds, tld2, tld3;   /* util_rb_tld, util_rb_2tld, util_rb_3tld */
	struct strmap tflags;       /* rule name -> UF_* from its tflags line */
	struct block_rule *blk;
	size_t nblk;
	struct uri_list *lists;
	size_t nlists;
	char **orig;                /* originating_ip_headers */
	size_t norig;
	unsigned num_check_received;
	struct askdns *ask;
	size_t nask;
	int skip_rbl;               /* skip_rbl_checks: no check_rbl*, check_dns_sender, askdns */
	int skip_uribl;             /* skip_uribl_checks: no URI lists */
};

static struct net_conf *conf_of(const struct ruleset *rs) { return rs->evconf[EVF_NET]; }

static struct net_conf *conf_get(struct ruleset *rs)
{
	struct net_conf *c = rs->evconf[EVF_NET];
	if (c) return c;
	c = calloc(1, sizeof *c);
	if (!c) abort();
	c->max_domains = 20;
	c->skip_mailto = 1;
	c->num_check_received = 9;
	rs->evconf[EVF_NET] = c;
	return c;
}

static void conf_free(struct ruleset *rs)
{
	struct net_conf *c = rs->evconf[EVF_NET];
	if (!c) return;
	for (size_t i = 0; i < c->nuri; i++) {
		free(c->uri[i].rule); free(c->uri[i].zone);
		if (c->uri[i].sub.re) pcre2_code_free(c->uri[i].sub.re);
	}
	free(c->uri);
	map_free(&c->skip); map_free(&c->tlds); map_free(&c->tld2); map_free(&c->tld3); map_free(&c->tflags);
	for (size_t i = 0; i < c->nblk; i++) { free(c->blk[i].rule); free(c->blk[i].zone); }
	free(c->blk);
	for (size_t i = 0; i < c->nlists; i++) { free(c->lists[i].name); map_free(&c->lists[i].hosts); }
	free(c->lists);
	for (size_t i = 0; i < c->norig; i++) free(c->orig[i]);
	free(c->orig);
	for (size_t i = 0; i < c->nask; i++) {
		free(c->ask[i].rule); free(c->ask[i].tmpl);
		if (c->ask[i].sub.re) pcre2_code_free(c->ask[i].sub.re);
	}
	free(c->ask);
	free(c);
	rs->evconf[EVF_NET] = NULL;
}

static void lower(char *s) { for (; *s; s++) *s = (char)tolower((unsigned char)*s); }

/* next whitespace-separated word of *p into out (bounded); 0 at the end */
static size_t next_word(const char **p, char *out, size_t outlen)
{
	const char *s = *p;
	while (*s == ' ' || *s == '\t') s++;
	size_t n = 0;
	while (s[n] && s[n] != ' ' && s[n] != '\t') n++;
	if (outlen) snprintf(out, outlen, "%.*s", (int)(n < outlen ? n : outlen - 1), s);
	*p = s + n;
	return n;
}

static int zone_name(const char *w, char *out, size_t outlen)
{
	size_t n = strlen(w);
	while (n && w[n - 1] == '.') n--;
	if (!n || n >= outlen || n > 200 || strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") < n)
		return -1;
	memcpy(out, w, n);
	out[n] = '\0';
	lower(out);
	return 0;
}

static int rule_name_ok(const char *w)
{
	if (!*w) return 0;
	for (; *w; w++) if (!isalnum((unsigned char)*w) && *w != '_') return 0;
	return 1;
}

/* uridnsbl NAME ZONE TYPE | uridnssub NAME ZONE TYPE SUB (and the rhs forms) */
static int dir_uribl(struct ruleset *rs, struct net_conf *c, int rhs, int sub, const char *args, char *why, size_t whylen)
{
	char name[128], zw[300], zone[256], type[16];
	const char *p = args;
	if (!next_word(&p, name, sizeof name) || !rule_name_ok(name)) { snprintf(why, whylen, "rule name expected"); return -1; }
	if (!next_word(&p, zw, sizeof zw) || zone_name(zw, zone, sizeof zone) < 0) { snprintf(why, whylen, "bad zone"); return -1; }
	if (!next_word(&p, type, sizeof type)) { snprintf(why, whylen, "type (A or TXT) expected"); return -1; }
	int txt = strcasecmp(type, "TXT") == 0;
	if (!txt && strcasecmp(type, "A") != 0) { snprintf(why, whylen, "type %s: only A and TXT", type); return -1; }
	struct uribl u = { 0 };
	while (*p == ' ' || *p == '\t') p++;
	char subtxt[128];
	snprintf(subtxt, sizeof subtxt, "%s", p);
	size_t sl = strlen(subtxt);
	while (sl && isspace((unsigned char)subtxt[sl - 1])) subtxt[--sl] = '\0';
	if (sub) {
		if (!sl || subtest_uri(subtxt, &u.sub) < 0) { snprintf(why, whylen, "bad subtest \"%.60s\"", subtxt); return -1; }
		u.has_sub = 1;
	} else if (sl) {
		snprintf(why, whylen, "unexpected \"%.60s\"", subtxt);
		return -1;
	}
	u.rule = strdup(name);
	u.zone = strdup(zone);
	if (!u.rule || !u.zone) abort();
	u.txt = txt;
	u.rhs = rhs;
	/* a later line for the same rule replaces the earlier one */
	for (size_t i = 0; i < c->nuri; i++)
		if (strcmp(c->uri[i].rule, name) == 0) {
			free(c->uri[i].rule); free(c->uri[i].zone);
			if (c->uri[i].sub.re) pcre2_code_free(c->uri[i].sub.re);
			c->uri[i] = u;
			return 1;
		}
	struct uribl *nu = realloc(c->uri, (c->nuri + 1) * sizeof *nu);
	if (!nu) abort();
	c->uri = nu;
	c->uri[c->nuri++] = u;
	/* the rule exists with this line alone (as in SpamAssassin, where the
	 * plugin scores it); the usual "body NAME eval:check_uridnsbl('NAME')"
	 * line defines it the same way */
	int ri = rs_find(rs, name, strlen(name));
	if (ri < 0 || !rs->rules[ri].defined) {
		char call[200];
		snprintf(call, sizeof call, "check_uridnsbl('%s')", name);
		if (eval_define_rule(rs, name, strlen(name), RK_BODY, 0, call, why, whylen) < 0) return -1;
	}
	return 1;
}

static void add_words(struct strmap *m, const char *args, int val)
{
	char w[MAX_NAME];
	const char *p = args;
	while (next_word(&p, w, sizeof w)) { lower(w); map_put(m, w, val); }
}

static unsigned tflag_bits(const char *args)
{
	unsigned f = 0;
	char w[64];
	const char *p = args;
	while (next_word(&p, w, sizeof w)) {
		if (strcmp(w, "a") == 0) f |= UF_A;
		else if (strcmp(w, "ns") == 0) f |= UF_NS;
		else if (strcmp(w, "notrim") == 0) f |= UF_NOTRIM;
		else if (strcmp(w, "domains_only") == 0) f |= UF_DOMAINS_ONLY;
		else if (strcmp(w, "ips_only") == 0) f |= UF_IPS_ONLY;
	}
	return f;
}

static struct uri_list *uri_list(struct net_conf *c, const char *name, int create)
{
	for (size_t i = 0; i < c->nlists; i++) if (strcmp(c->lists[i].name, name) == 0) return &c->lists[i];
	if (!create) return NULL;
	struct uri_list *nl = realloc(c->lists, (c->nlists + 1) * sizeof *nl);
	if (!nl) abort();
	c->lists = nl;
	memset(&nl[c->nlists], 0, sizeof *nl);
	nl[c->nlists].name = strdup(name);
	if (!nl[c->nlists].name) abort();
	return &nl[c->nlists++];
}

/* "(NAME) rest": NAME into out, *rest after it; -1 if no list name */
static int list_name(const char *args, char *out, size_t outlen, const char **rest)
{
	while (*args == ' ' || *args == '\t') args++;
	if (*args != '(') return -1;
	const char *e = strchr(args, ')');
	if (!e || e == args + 1 || (size_t)(e - args - 1) >= outlen) return -1;
	snprintf(out, outlen, "%.*s", (int)(e - args - 1), args + 1);
	*rest = e + 1;
	return 0;
}

/* askdns's subtest: /regex/flags, 'exact' or "exact", a number or a
 * range as in uridnssub; a list of rcodes [NXDOMAIN,...] is not supported
 * (a->why set); -1 if it is none of these */
static int subtest_askdns(const char *s, struct askdns *a)
{
	size_t n = strlen(s);
	if (s[0] == '/' || (s[0] == 'm' && n > 1 && ispunct((unsigned char)s[1]))) {
		char *pat;
		unsigned fl;
		const char *rest;
		if (perl_re_split(s, &pat, &fl, &rest) < 0) return -1;
		int err;
		PCRE2_SIZE off;
		a->sub.re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
		                          ((fl & RE_I) ? PCRE2_CASELESS : 0) | ((fl & RE_M) ? PCRE2_MULTILINE : 0) |
		                          ((fl & RE_S) ? PCRE2_DOTALL : 0) | ((fl & RE_X) ? PCRE2_EXTENDED : 0), &err, &off, NULL);
		free(pat);
		if (!a->sub.re) return -1;
		a->sub.kind = ST_REGEX;
		return 0;
	}
	if ((s[0] == '\'' || s[0] == '"') && n >= 2 && s[n - 1] == s[0]) {
		if (n - 2 >= sizeof a->sub.exact) return -1;
		a->sub.kind = ST_EXACT;
		snprintf(a->sub.exact, sizeof a->sub.exact, "%.*s", (int)(n - 2), s + 1);
		return 0;
	}
	if (s[0] == '[') {
		snprintf(a->why, sizeof a->why, "askdns rcode subtests are not supported");
		return 0;
	}
	return subtest_uri(s, &a->sub);
}

static int dir_askdns(struct ruleset *rs, struct net_conf *c, const char *args, char *why, size_t whylen)
{
	char name[128], tmpl[300], type[32];
	const char *p = args;
	if (!next_word(&p, name, sizeof name) || !rule_name_ok(name)) { snprintf(why, whylen, "rule name expected"); return -1; }
	if (!next_word(&p, tmpl, sizeof tmpl)) { snprintf(why, whylen, "query template expected"); return -1; }
	struct askdns a = { .type = 1 };
	if (next_word(&p, type, sizeof type)) {
		static const struct { const char *n; int t; } types[] = { { "A", 1 }, { "NS", 2 }, { "MX", 15 }, { "TXT", 16 } };
		a.type = 0;
		for (size_t i = 0; i < sizeof types / sizeof *types; i++) if (strcasecmp(type, types[i].n) == 0) a.type = types[i].t;
		if (!a.type) {
			if (strspn(type, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789,") != strlen(type)) {
				snprintf(why, whylen, "bad type %.20s", type);
				return -1;
			}
			snprintf(a.why, sizeof a.why, "askdns type %.20s is not supported (A, NS, MX, TXT)", type);
		}
	}
	while (*p == ' ' || *p == '\t') p++;
	char sub[300];
	snprintf(sub, sizeof sub, "%s", p);
	size_t sl = strlen(sub);
	while (sl && isspace((unsigned char)sub[sl - 1])) sub[--sl] = '\0';
	if (sl) {
		if (subtest_askdns(sub, &a) < 0) { snprintf(why, whylen, "bad subtest \"%.60s\"", sub); return -1; }
		a.has_sub = 1;
	}
	/* exactly one tag, one of those known here */
	const char *t1 = strchr(tmpl, '_'), *t2 = t1 ? strchr(t1 + 1, '_') : NULL;
	if (!a.why[0]) {
		if (!t1 || !t2 || (size_t)(t2 - t1 - 1) >= sizeof a.tag) snprintf(a.why, sizeof a.why, "askdns template without a tag");
		else {
			snprintf(a.tag, sizeof a.tag, "%.*s", (int)(t2 - t1 - 1), t1 + 1);
			if (strcmp(a.tag, "AUTHORDOMAIN") != 0 && strcmp(a.tag, "SENDERDOMAIN") != 0 &&
			    strcmp(a.tag, "LASTEXTERNALHELO") != 0)
				snprintf(a.why, sizeof a.why, "askdns tag _%s_ is not available here", a.tag);
			else if (strchr(t2 + 1, '_') && strchr(strchr(t2 + 1, '_') + 1, '_'))
				snprintf(a.why, sizeof a.why, "askdns templates with several tags are not supported");
		}
	}
	a.list = t2 && t2[1] == '.' && t2[2];     /* TAG.zone: a list */
	a.rule = strdup(name);
	a.tmpl = strdup(tmpl);
	if (!a.rule || !a.tmpl) abort();
	struct askdns *na = realloc(c->ask, (c->nask + 1) * sizeof *na);
	if (!na) abort();
	c->ask = na;
	c->ask[c->nask++] = a;
	char call[200];
	snprintf(call, sizeof call, "askdns_rule('%s')", name);
	if (eval_define_rule(rs, name, strlen(name), RK_HEADER, 1, call, why, whylen) < 0) return -1;
	return 1;
}

static int net_directive(struct ruleset *rs, const char *dir, const char *args, char *why, size_t whylen)
{
	if (strcmp(dir, "tflags") == 0) {          /* observed, never taken */
		char name[128];
		const char *p = args;
		if (next_word(&p, name, sizeof name)) {
			unsigned f = tflag_bits(p);
			struct net_conf *c = conf_of(rs);
			if (f || (c && map_get(&c->tflags, name))) map_put(&conf_get(rs)->tflags, name, (int)f);
		}
		return 0;
	}
	if (strcmp(dir, "uridnsbl") == 0) return dir_uribl(rs, conf_get(rs), 0, 0, args, why, whylen);
	if (strcmp(dir, "uridnssub") == 0) return dir_uribl(rs, conf_get(rs), 0, 1, args, why, whylen);
	if (strcmp(dir, "urirhsbl") == 0) return dir_uribl(rs, conf_get(rs), 1, 0, args, why, whylen);
	if (strcmp(dir, "urirhssub") == 0) return dir_uribl(rs, conf_get(rs), 1, 1, args, why, whylen);
	if (strcmp(dir, "uridnsbl_skip_domain") == 0) { add_words(&conf_get(rs)->skip, args, 1); return 1; }
	if (strcmp(dir, "clear_uridnsbl_skip_domain") == 0) {
		struct net_conf *c = conf_get(rs);
		if (!*args) map_free(&c->skip);
		else add_words(&c->skip, args, 0);
		return 1;
	}
	if (strcmp(dir, "uridnsbl_max_domains") == 0) {
		char *end;
		unsigned long v = strtoul(args, &end, 10);
		if (end == args || v > 1000) { snprintf(why, whylen, "a number up to 1000 expected"); return -1; }
		conf_get(rs)->max_domains = (unsigned)v;
		return 1;
	}
	if (strcmp(dir, "uridnsbl_skip_mailto") == 0) { conf_get(rs)->skip_mailto = atoi(args) != 0; return 1; }
	if (strcmp(dir, "util_rb_tld") == 0) { add_words(&conf_get(rs)->tlds, args, 1); return 1; }
	if (strcmp(dir, "util_rb_2tld") == 0) { add_words(&conf_get(rs)->tld2, args, 1); return 1; }
	if (strcmp(dir, "util_rb_3tld") == 0) { add_words(&conf_get(rs)->tld3, args, 1); return 1; }
	if (strcmp(dir, "dns_block_rule") == 0) {
		char name[128], zw[300], zone[256];
		const char *p = args;
		if (!next_word(&p, name, sizeof name) || !rule_name_ok(name) || !next_word(&p, zw, sizeof zw)
		    || zone_name(zw, zone, sizeof zone) < 0) {
			snprintf(why, whylen, "RULE ZONE expected");
			return -1;
		}
		struct net_conf *c = conf_get(rs);
		struct block_rule *nb = realloc(c->blk, (c->nblk + 1) * sizeof *nb);
		if (!nb) abort();
		c->blk = nb;
		nb[c->nblk].rule = strdup(name);
		nb[c->nblk].zone = strdup(zone);
		if (!nb[c->nblk].rule || !nb[c->nblk].zone) abort();
		c->nblk++;
		return 1;
	}
	if (strcmp(dir, "enlist_uri_host") == 0 || strcmp(dir, "delist_uri_host") == 0) {
		char name[128], w[MAX_NAME];
		const char *rest;
		struct net_conf *c = conf_get(rs);
		int enlist = dir[0] == 'e';
		if (list_name(args, name, sizeof name, &rest) < 0) {
			if (enlist) { snprintf(why, whylen, "(LISTNAME) host... expected"); return -1; }
			name[0] = '\0';
			rest = args;
		}
		while (next_word(&rest, w, sizeof w)) {
			lower(w);
			const char *h = w[0] == '!' ? w + 1 : w;
			if (!*h) continue;
			if (enlist) map_put(&uri_list(c, name, 1)->hosts, h, w[0] != '!');
			else
				for (size_t i = 0; i < c->nlists; i++) {
					if (name[0] && strcmp(c->lists[i].name, name) != 0) continue;
					int *v = map_slot(&c->lists[i].hosts, h, 0);
					if (v) *v = -1;          /* removed */
				}
		}
		return 1;
	}
	if (strcmp(dir, "originating_ip_headers") == 0) {
		struct net_conf *c = conf_get(rs);
		char w[128];
		const char *p = args;
		while (next_word(&p, w, sizeof w) && c->norig < 32) {
			char **no = realloc(c->orig, (c->norig + 1) * sizeof *no);
			if (!no) abort();
			c->orig = no;
			no[c->norig] = strdup(w);
			if (!no[c->norig]) abort();
			c->norig++;
		}
		return 1;
	}
	if (strcmp(dir, "clear_originating_ip_headers") == 0) {
		struct net_conf *c = conf_get(rs);
		for (size_t i = 0; i < c->norig; i++) free(c->orig[i]);
		c->norig = 0;
		return 1;
	}
	if (strcmp(dir, "askdns") == 0) return dir_askdns(rs, conf_get(rs), args, why, whylen);
	if (strcmp(dir, "skip_rbl_checks") == 0) { conf_get(rs)->skip_rbl = atoi(args) != 0; return 1; }
	if (strcmp(dir, "skip_uribl_checks") == 0) { conf_get(rs)->skip_uribl = atoi(args) != 0; return 1; }
	if (strcmp(dir, "num_check_received") == 0) {
		char *end;
		unsigned long v = strtoul(args, &end, 10);
		if (end == args || v < 1 || v > MAX_IPS) { snprintf(why, whylen, "a number from 1 to %d expected", MAX_IPS); return -1; }
		conf_get(rs)->num_check_received = (unsigned)v;
		return 1;
	}
	return 0;
}

/* --- addresses and names ---------------------------------------------------- */

/* SpamAssassin's IS_IP_PRIVATE: 10/8, 127/8, 169.254/16, 172.16/12,
 * 192.168/16, 100.64/10 (also IPv4-mapped), fe80::/10, ::1 */
static int ip_private(const char *ip)
{
	unsigned char a[16];
	const unsigned char *v4 = NULL;
	if (inet_pton(AF_INET, ip, a) == 1) v4 = a;
	else if (inet_pton(AF_INET6, ip, a) == 1) {
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		static const unsigned char loop[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
		if (memcmp(a, mapped, 12) == 0) v4 = a + 12;
		else return (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || memcmp(a, loop, 16) == 0;
	} else return 1;             /* not an address: never looked up */
	return v4[0] == 10 || v4[0] == 127 || (v4[0] == 169 && v4[1] == 254) || (v4[0] == 172 && (v4[1] & 0xf0) == 16)
	       || (v4[0] == 192 && v4[1] == 168) || (v4[0] == 100 && (v4[1] & 0xc0) == 64);
}

/* the owner name prefix of ip in a blocklist: "4.3.2.1" or the 32 nibbles */
static int reverse_ip(const char *ip, char *out, size_t outlen)
{
	unsigned char a[16];
	if (inet_pton(AF_INET, ip, a) == 1) {
		snprintf(out, outlen, "%u.%u.%u.%u", a[3], a[2], a[1], a[0]);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, a) != 1 || outlen < 64) return -1;
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (int i = 15; i >= 0; i--) {
		out[o++] = hex[a[i] & 15]; out[o++] = '.';
		out[o++] = hex[a[i] >> 4]; out[o++] = '.';
	}
	out[o - 1] = '\0';
	return 0;
}

static int is_ipv4(const char *s)
{
	unsigned char a[4];
	return inet_pton(AF_INET, s, a) == 1;
}

/* whether qname begins with a reversed address (4 numeric labels or 32
 * nibbles): an IP list; anything else asks a domain list */
static int qname_is_ip(const char *q)
{
	int labels = 0;
	const char *p = q;
	for (; labels < 4; labels++) {
		size_t n = strspn(p, "0123456789");
		if (!n || n > 3 || p[n] != '.') break;
		p += n + 1;
	}
	if (labels == 4) return 1;
	for (labels = 0, p = q; labels < 32; labels++, p += 2)
		if (!isxdigit((unsigned char)p[0]) || p[1] != '.') return 0;
	return 1;
}

static const char us_states[][3] = {
	"ak", "al", "ar", "az", "ca", "co", "ct", "dc", "de", "fl", "ga", "gu", "hi", "ia", "id", "il", "in", "ks",
	"ky", "la", "ma", "md", "me", "mi", "mn", "mo", "ms", "mt", "nc", "nd", "ne", "nh", "nj", "nm", "nv", "ny",
	"oh", "ok", "or", "pa", "pr", "ri", "sc", "sd", "tn", "tx", "ut", "va", "vi", "vt", "wa", "wi", "wv", "wy",
};

static int us_state(const char *s, size_t n)
{
	if (n != 2) return 0;
	for (size_t i = 0; i < sizeof us_states / sizeof *us_states; i++)
		if (s[0] == us_states[i][0] && s[1] == us_states[i][1]) return 1;
	return 0;
}

/* the registrable domain of host (lower case, no empty labels), as
 * SpamAssassin's RegistryBoundaries::trim_domain with the util_rb_2tld /
 * util_rb_3tld lists: out = the last two labels, or three / four under a
 * listed two- / three-level suffix */
static void trim_domain(const struct net_conf *c, const char *host, char *out, size_t outlen)
{
	const char *lab[128];
	size_t len[128], n = 0;
	for (const char *p = host; *p && n < 128;) {
		size_t l = strcspn(p, ".");
		if (l) { lab[n] = p; len[n++] = l; }
		p += l;
		while (*p == '.') p++;
	}
	size_t start = 0;
	while (n - start > 1) {
		size_t left = n - start;
		char tmp[MAX_NAME];
		if (left == 2 || left == 3) {
			snprintf(tmp, sizeof tmp, "%.*s", (int)(lab[n - 1] + len[n - 1] - lab[start]), lab[start]);
			if (left == 2 && c && map_get(&c->tld2, tmp)) break;
			if (left == 3) {
				if (len[n - 1] == 2 && memcmp(lab[n - 1], "us", 2) == 0) { if (us_state(lab[n - 2], len[n - 2])) break; }
				else if (c && map_get(&c->tld3, tmp)) break;
			}
		} else if (left == 4 && len[n - 1] == 2 && memcmp(lab[n - 1], "us", 2) == 0 &&
		           ((len[start] == 3 && memcmp(lab[start], "pvt", 3) == 0 && len[start + 1] == 3 && memcmp(lab[start + 1], "k12", 3) == 0) ||
		            (len[start] == 2 && (memcmp(lab[start], "ci", 2) == 0 || memcmp(lab[start], "co", 2) == 0)))
		           && us_state(lab[start + 2], len[start + 2])) {
			break;
		}
		start++;
	}
	/* one label more than the public suffix found */
	if (start > 0) start--;
	if (!n) { if (outlen) out[0] = '\0'; return; }
	snprintf(out, outlen, "%.*s", (int)(lab[n - 1] + len[n - 1] - lab[start]), lab[start]);
}

/* a host name SpamAssassin would take from a URI: at least one dot and a
 * known top-level domain (util_rb_tld; any alphabetic one without those
 * lists) */
static int domain_valid(const struct net_conf *c, const char *host)
{
	const char *dot = strrchr(host, '.');
	if (!dot || !dot[1] || dot == host) return 0;
	if (c && c->tlds.n) return map_get(&c->tlds, dot + 1) != NULL;
	for (const char *p = dot + 1; *p; p++) if (!isalpha((unsigned char)*p)) return 0;
	return 1;
}

int eval_net_domain_valid(const struct ruleset *rs, const char *host)
{
	return domain_valid(rs ? conf_of(rs) : NULL, host);
}


/* --- per message ------------------------------------------------------------ */

struct uhost {
	const char *host;           /* in eval_uri_hosts(), which lives as long */
	char domain[MAX_NAME];      /* registrable domain, or the address */
	int  is_ip;
	int  is_mailto;
	unsigned cls;               /* RULES_URI_*: the most link-like way it appeared */
	int  picked;                /* its domain is among the uridnsbl_max_domains asked */
};

struct net_msg {
	/* relay addresses (DNSEval's parsed_metadata) */
	int ips_done, have_ips;
	char untrusted[MAX_IPS][64];
	size_t nuntrusted;
	char external[MAX_IPS][64];
	size_t nexternal;
	char orig[MAX_IPS][64];
	size_t norig;
	char trusted[MAX_IPS][64];  /* addresses of the relays the trust path trusts */
	size_t ntrusted;
	/* URI hosts, links first, each once (eval_uri_hosts) */
	int hosts_done;
	struct uhost *hosts;
	size_t nhosts;
};

static void net_msg_free(void *p)
{
	struct net_msg *nm = p;
	if (!nm) return;
	free(nm->hosts);
	free(nm);
}

static struct net_msg *msg_state(struct eval_msg *m)
{
	struct net_msg *nm = eval_cache_get(m, EVC_NET);
	if (nm) return nm;
	nm = calloc(1, sizeof *nm);
	if (!nm) abort();
	eval_cache_set(m, EVC_NET, nm, net_msg_free);
	return nm;
}

static void add_ip(char (*list)[64], size_t *n, const char *ip)
{
	if (!ip || !*ip || *n >= MAX_IPS || ip_private(ip)) return;
	for (size_t i = 0; i < *n; i++) if (strcmp(list[i], ip) == 0) return;
	snprintf(list[(*n)++], 64, "%s", ip);
}

/* an address of a trusted relay (our stand-in for trusted_networks,
 * which the relay module owns) */
static int is_trusted(const struct net_msg *nm, const char *ip)
{
	for (size_t i = 0; i < nm->ntrusted; i++) if (strcmp(nm->trusted[i], ip) == 0) return 1;
	return 0;
}

static void collect_ips(struct eval_msg *m, struct net_msg *nm)
{
	if (nm->ips_done) return;
	nm->ips_done = 1;
	const struct eval_relays *rl = eval_relays(m);
	for (size_t i = 0; i < rl->n && i < rl->ntrusted; i++) {
		if (!rl->relay[i].internal) add_ip(nm->external, &nm->nexternal, rl->relay[i].ip);
		add_ip(nm->trusted, &nm->ntrusted, rl->relay[i].ip);
	}
	for (size_t i = rl->ntrusted; i < rl->n; i++) {
		add_ip(nm->untrusted, &nm->nuntrusted, rl->relay[i].ip);
		add_ip(nm->external, &nm->nexternal, rl->relay[i].ip);
	}
	const struct net_conf *c = conf_of(m->rs);
	for (size_t h = 0; c && h < c->norig; h++) {
		for (size_t i = 0; i < m->in->nheaders; i++) {
			if (strcasecmp(m->in->headers[i].name, c->orig[h]) != 0) continue;
			const char *v = m->in->headers[i].decoded ? m->in->headers[i].decoded : m->in->headers[i].raw;
			/* every IPv4 address in the field */
			for (const char *p = v; *p && nm->norig < MAX_IPS; p++) {
				if (!isdigit((unsigned char)*p) || (p > v && (isdigit((unsigned char)p[-1]) || p[-1] == '.'))) continue;
				size_t n = strspn(p, "0123456789.");
				char buf[20];
				if (n < 7 || n > 15) { p += n ? n - 1 : 0; continue; }
				snprintf(buf, sizeof buf, "%.*s", (int)n, p);
				if (is_ipv4(buf) && !is_trusted(nm, buf)) add_ip(nm->orig, &nm->norig, buf);
				p += n - 1;
			}
		}
	}
	nm->have_ips = nm->nuntrusted + nm->norig > 0;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* the addresses a check_rbl set looks up, in order (DNSEval's
 * _check_rbl_backend); a list that is not "nice" (not a welcome list)
 * never sees the trusted relays at the front; returns how many */
static size_t set_ips(struct eval_msg *m, const char *set, int nice, char (*out)[64])
{
	struct net_msg *nm = msg_state(m);
	const struct net_conf *c = conf_of(m->rs);
	collect_ips(m, nm);
	if (!nm->have_ips) return 0;
	size_t n = 0;
	int last = ends_with(set, "-lastexternal"), notfirst = ends_with(set, "-notfirsthop");
	if (last || notfirst) {
		for (size_t i = 0; i < nm->nexternal; i++) snprintf(out[n++], 64, "%s", nm->external[i]);
		if (last && n > 1) n = 1;
		if (notfirst && n > 1) n--;
	} else {
		for (size_t i = 0; i < nm->nuntrusted; i++) add_ip(out, &n, nm->untrusted[i]);
		for (size_t i = 0; i < nm->norig; i++) add_ip(out, &n, nm->orig[i]);
		if (ends_with(set, "-firsttrusted")) {
			if (n > 1) n = 1;
		} else if (ends_with(set, "-untrusted")) {
			if (n) { memmove(out, out + 1, (n - 1) * sizeof *out); n--; }
		} else {
			for (size_t i = 0; i < n / 2; i++) {
				char t[64];
				memcpy(t, out[i], 64); memcpy(out[i], out[n - 1 - i], 64); memcpy(out[n - 1 - i], t, 64);
			}
		}
	}
	unsigned cap = c ? c->num_check_received : 9;
	if (n > cap) n = cap;
	size_t skip = 0;
	while (!nice && skip < n && is_trusted(nm, out[skip])) skip++;
	if (skip) { memmove(out, out + skip, (n - skip) * sizeof *out); n -= skip; }
	return n;
}

/* add_host - a host of the shared list the URI blocklists ask about:
 * an IPv4 address, or a name SpamAssassin takes (domain_valid) */
static void add_host(struct net_msg *nm, const struct net_conf *c, const struct eval_uri_host *src)
{
	struct uhost *h = &nm->hosts[nm->nhosts];
	memset(h, 0, sizeof *h);
	h->host = src->host;
	h->is_mailto = src->mailto;
	h->cls = src->cls;
	if (is_ipv4(src->host)) {
		h->is_ip = 1;
		snprintf(h->domain, sizeof h->domain, "%s", src->host);
	} else if (strchr(src->host, ':')) {
		return;                 /* IPv6 literal: SpamAssassin skips those too */
	} else {
		if (!domain_valid(c, src->host)) return;
		trim_domain(c, src->host, h->domain, sizeof h->domain);
	}
	nm->nhosts++;
}

/* pick_domains - which hosts' domains are asked: at most
 * uridnsbl_max_domains registrable domains (a host's address counts as
 * one), by the choice the dnsbl filter's uri lists make too
 * (rules_uri_pick: links first, whole classes while they fit, the class
 * that does not fit pseudo-randomly, seeded by the message).  Hosts the
 * lists never ask about (skipped domains, private addresses, mail
 * addresses with uridnsbl_skip_mailto) do not count. */
static void pick_domains(struct net_msg *nm, const struct net_conf *c, uint64_t seed)
{
	if (!c || !nm->nhosts) return;
	size_t n = nm->nhosts;
	const char **dom = malloc(n * sizeof *dom);
	unsigned *cls = malloc(n * sizeof *cls);
	unsigned char *picked = malloc(n);
	if (!dom || !cls || !picked) abort();
	for (size_t h = 0; h < n; h++) {
		const struct uhost *uh = &nm->hosts[h];
		dom[h] = uh->domain;
		cls[h] = RULES_URI_CLASSES;
		if (uh->is_mailto && c->skip_mailto) continue;
		if (map_get(&c->skip, uh->domain) && *map_get(&c->skip, uh->domain)) continue;
		if (map_get(&c->skip, uh->host) && *map_get(&c->skip, uh->host)) continue;
		if (uh->is_ip && ip_private(uh->host)) continue;
		cls[h] = uh->cls;
	}
	rules_uri_pick(dom, cls, n, c->max_domains, seed, picked);
	for (size_t h = 0; h < n; h++) nm->hosts[h].picked = picked[h] && cls[h] != RULES_URI_CLASSES;
	free(dom);
	free(cls);
	free(picked);
}

/* the hosts of the message's URIs, in every form uri rules see (redirect
 * targets too), as SpamAssassin's get_uri_detail_list gives them: the
 * shared list, links first (uri_hosts.h), so the lookups of a link come
 * before those of any number of decoy hosts in the text (until review
 * rv-today5 the first 500 hosts in message order, and 200 decoys filled
 * the per-message DNS lookups before the link was asked) */
static struct net_msg *uri_hosts(struct eval_msg *m)
{
	struct net_msg *nm = msg_state(m);
	if (nm->hosts_done) return nm;
	nm->hosts_done = 1;
	const struct net_conf *c = conf_of(m->rs);
	const struct eval_uri_hosts *hs = eval_uri_hosts(m);
	if (!hs->n) return nm;
	nm->hosts = calloc(hs->n, sizeof *nm->hosts);
	if (!nm->hosts) abort();
	for (size_t i = 0; i < hs->n; i++) add_host(nm, c, &hs->v[i]);
	pick_domains(nm, c, rules_uri_seed(m->in->uris, m->in->nuris));
	return nm;
}

/* --- the walk over what a message asks -------------------------------------- *
 * One function lists the lookups (queries hook: want each name) and reads
 * their answers (eval functions: visit each blocklist answer), so the two
 * cannot disagree. */

struct walk {
	struct eval_msg *m;
	void (*want)(void *arg, const char *qname, int rrtype);   /* NULL when evaluating */
	void *arg;
	/* evaluating: called with each usable answer of a blocklist query */
	int (*visit)(struct walk *w, const char *answer, size_t len);
	const struct subtest *sub;
	int hit;
	/* the blocklist queries and the domains whose name servers this walk
	 * asked: a name is asked once however many hosts lead to it (500
	 * subdomains of one domain, one query of a domains_only list) */
	struct strmap asked;
};

static const char *ask(struct walk *w, const char *type, const char *qname, int rrtype)
{
	if (w->want) w->want(w->arg, qname, rrtype);
	char key[MAX_NAME + 32];
	snprintf(key, sizeof key, "dns:%s:%s", type, qname);
	return eval_fact(w->m, key);
}

/* a blocklist query: ask it, and visit each answer (A: addresses; TXT:
 * records, each whole); stops at the first hit */
static void ask_list(struct walk *w, const char *qname, int txt)
{
	char key[MAX_NAME * 2 + 16];
	if (w->hit || strlen(qname) > 253) return;
	snprintf(key, sizeof key, "%s:%s", txt ? "TXT" : "A", qname);
	if (map_get(&w->asked, key)) return;
	map_put(&w->asked, key, 1);
	const char *ans = ask(w, txt ? "TXT" : "A", qname, (txt ? 16 : 1) | EVAL_NET_LIST);
	if (!ans || !w->visit) return;
	if (txt) {
		char *item = malloc(strlen(ans) + 1);
		size_t n;
		if (!item) abort();
		for (const char *p = txt_next(ans, item, &n); p && !w->hit; p = txt_next(p, item, &n))
			if (n && w->visit(w, item, n)) w->hit = 1;
		free(item);
		return;
	}
	char item[1024];
	for (const char *p = ans; *p && !w->hit;) {
		size_t n = strcspn(p, " ");
		if (n && n < sizeof item) {
			memcpy(item, p, n);
			item[n] = '\0';
			if (w->visit(w, item, n)) w->hit = 1;
		}
		p += n;
		if (*p) p++;
	}
}

static int visit_subtest(struct walk *w, const char *answer, size_t len)
{
	if (w->sub) return subtest_match(w->sub, answer, len, w->m->md, w->m->rs->mctx);
	/* no subtest: any 127/8 answer (the bridge dropped the others) */
	return 1;
}

/* the rule arguments check() prepared */
struct rbl_rule {
	char set[128];
	char zone[256];
	int  txt;
	struct subtest sub;
};

static void rbl_rule_free(void *p)
{
	struct rbl_rule *rr = p;
	if (!rr) return;
	if (rr->sub.re) pcre2_code_free(rr->sub.re);
	free(rr);
}

static double fn_check_rbl(struct eval_msg *m, const struct rule *r);
static double fn_check_rbl_txt(struct eval_msg *m, const struct rule *r);
static double fn_check_rbl_sub(struct eval_msg *m, const struct rule *r);
static double fn_check_uridnsbl(struct eval_msg *m, const struct rule *r);
static double fn_check_dns_sender(struct eval_msg *m, const struct rule *r);

static int is_launcher(const struct rule *r)
{
	return r->ev && (r->ev->fn == fn_check_rbl || r->ev->fn == fn_check_rbl_txt) && r->ev_data;
}

/* the lookups of one check_rbl / check_rbl_txt rule */
static void walk_rbl(struct walk *w, const struct rbl_rule *rr, int nice)
{
	char ips[MAX_IPS][64], q[MAX_NAME + 80], rev[80];
	const struct net_conf *c = conf_of(w->m->rs);
	if (c && c->skip_rbl) return;
	size_t n = set_ips(w->m, rr->set, nice, ips);
	for (size_t i = 0; i < n && !w->hit; i++) {
		if (reverse_ip(ips[i], rev, sizeof rev) < 0) continue;
		snprintf(q, sizeof q, "%s.%s", rev, rr->zone);
		ask_list(w, q, rr->txt);
	}
}

/* the lookups of uribl entry e (NULL: of every entry) for the message's
 * URI hosts (URIDNSBL's check_dnsbl and query_hosts_or_domains) */
static void walk_uribl(struct walk *w, const struct uribl *only)
{
	const struct net_conf *c = conf_of(w->m->rs);
	if (!c || !c->nuri || c->skip_uribl) return;
	struct net_msg *nm = uri_hosts(w->m);
	const struct strmap *tfl = &c->tflags;
	char q[MAX_NAME * 2 + 8], rev[80];
	for (size_t h = 0; h < nm->nhosts && !w->hit; h++) {
		const struct uhost *uh = &nm->hosts[h];
		if (!uh->picked) continue;             /* pick_domains */
		int want_ns = 0, want_a = 0;
		for (size_t i = 0; i < c->nuri && !w->hit; i++) {
			const struct uribl *e = &c->uri[i];
			if (only && e != only) continue;
			const int *fp = map_get(tfl, e->rule);
			unsigned f = fp ? (unsigned)*fp : 0;
			if (e->rhs) {
				if (uh->is_ip ? (f & UF_DOMAINS_ONLY) : (f & UF_IPS_ONLY)) continue;
				if (uh->is_ip) {
					if (reverse_ip(uh->host, rev, sizeof rev) < 0) continue;
					snprintf(q, sizeof q, "%s.%s", rev, e->zone);
				} else {
					snprintf(q, sizeof q, "%s.%s", (f & UF_NOTRIM) ? uh->host : uh->domain, e->zone);
				}
				ask_list(w, q, e->txt);
			} else if (!uh->is_ip) {
				if (f & UF_A) want_a = 1;
				if ((f & UF_NS) || !(f & UF_A)) want_ns = 1;
			}
		}
		/* address lists: the addresses of the domain's name servers
		 * (default, or tflags ns) or of the host itself (tflags a) */
		for (int pass = 0; pass < 2 && !w->hit; pass++) {
			if (pass == 0 && !want_ns) continue;
			if (pass == 1 && !want_a) continue;
			char names[MAX_NS][MAX_NAME];
			size_t nn = 0;
			if (pass == 0) {
				char key[MAX_NAME + 8];
				snprintf(key, sizeof key, "NS:%s", uh->domain);
				if (map_get(&w->asked, key)) continue;    /* its lists asked already */
				map_put(&w->asked, key, 1);
				const char *ns = ask(w, "NS", uh->domain, 2);
				for (const char *p = ns; p && *p && nn < MAX_NS;) {
					size_t l = strcspn(p, " ");
					if (l && l < MAX_NAME) snprintf(names[nn++], MAX_NAME, "%.*s", (int)l, p);
					p += l;
					if (*p) p++;
				}
			} else {
				snprintf(names[nn++], MAX_NAME, "%s", uh->host);
			}
			for (size_t k = 0; k < nn && !w->hit; k++) {
				const char *addrs = is_ipv4(names[k]) ? names[k] : ask(w, "A", names[k], 1);
				size_t na = 0;
				for (const char *p = addrs; p && *p && na < MAX_ADDRS && !w->hit; na++) {
					size_t l = strcspn(p, " ");
					char ip[64];
					snprintf(ip, sizeof ip, "%.*s", (int)(l < 63 ? l : 63), p);
					p += l;
					if (*p) p++;
					if (ip_private(ip) || reverse_ip(ip, rev, sizeof rev) < 0) continue;
					for (size_t i = 0; i < c->nuri && !w->hit; i++) {
						const struct uribl *e = &c->uri[i];
						if (e->rhs || (only && e != only)) continue;
						const int *fp = map_get(tfl, e->rule);
						unsigned f = fp ? (unsigned)*fp : 0;
						int is_a = (f & UF_A) != 0, is_ns = (f & UF_NS) || !(f & UF_A);
						if (pass == 0 ? !is_ns : !is_a) continue;
						snprintf(q, sizeof q, "%s.%s", rev, e->zone);
						ask_list(w, q, e->txt);
					}
				}
			}
		}
	}
}

/* the envelope sender's domain (DNSEval's check_dns_sender), or -1: after
 * the last '@' (smtp_path_domain), the domain SPF, DMARC and the dnsbl
 * filter read.  The first '@', refused when a second followed, gave no
 * domain for "x@listed.test"@clean.test: check_dns_sender and
 * _SENDERDOMAIN_ lists asked nothing (SpamAssassin asks 'listed.test"') */
static int sender_host(struct eval_msg *m, char *out, size_t outlen)
{
	const char *v = eval_header_first(m, "EnvelopeFrom");
	char addr[512], sq[512];
	if (!v || rules_addr_of(v, addr, sizeof addr) < 0) return -1;
	size_t o = 0;
	for (const char *p = addr; *p && o + 1 < sizeof sq; p++)   /* squeeze runs of dots */
		if (!(*p == '.' && o && sq[o - 1] == '.')) sq[o++] = *p;
	sq[o] = '\0';
	const char *h = smtp_path_domain(sq);
	if (!h) return -1;
	size_t n = strcspn(h, " \t");
	if (!n || n >= outlen || !memchr(h, '.', n)) return -1;
	snprintf(out, outlen, "%.*s", (int)n, h);
	lower(out);
	return 0;
}

/* --- eval functions ---------------------------------------------------------- */

static int check_rbl_args(struct ruleset *rs, struct rule *r, int has_zone, char *why, size_t whylen)
{
	(void)rs;
	struct rbl_rule *rr = calloc(1, sizeof *rr);
	if (!rr) abort();
	const char *set = eval_arg(r, 0);
	if (!*set || strlen(set) >= sizeof rr->set) { free(rr); snprintf(why, whylen, "set name expected"); return -1; }
	snprintf(rr->set, sizeof rr->set, "%s", set);
	unsigned si = 1;
	if (has_zone) {
		if (zone_name(eval_arg(r, 1), rr->zone, sizeof rr->zone) < 0) {
			free(rr);
			snprintf(why, whylen, "bad zone \"%.60s\"", eval_arg(r, 1));
			return -1;
		}
		si = 2;
	}
	if (r->ev_argc > si) {
		const char *st = eval_arg(r, si);
		if (strncmp(st, "sb:", 3) == 0) { free(rr); snprintf(why, whylen, "SenderBase subtests are not supported"); return -1; }
		if (subtest_rbl(st, &rr->sub, why, whylen) < 0) { free(rr); return -1; }
	} else if (!has_zone) {
		free(rr);
		snprintf(why, whylen, "subtest expected");
		return -1;
	}
	r->ev_data = rr;
	return 0;
}

static int chk_rbl(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	if (check_rbl_args(rs, r, 1, why, whylen) < 0) return -1;
	((struct rbl_rule *)r->ev_data)->txt = 0;
	return 0;
}

static int chk_rbl_txt(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	if (check_rbl_args(rs, r, 1, why, whylen) < 0) return -1;
	((struct rbl_rule *)r->ev_data)->txt = 1;
	return 0;
}

static int chk_rbl_sub(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	return check_rbl_args(rs, r, 0, why, whylen);
}

static int chk_name_arg(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	if (!*eval_arg(r, 0)) { snprintf(why, whylen, "a name expected"); return -1; }
	return 0;
}

/* check_rbl(SET, ZONE[, SUBTEST]) / check_rbl_txt(SET, ZONE[, SUBTEST]):
 * the set's relay addresses listed in ZONE (with an answer SUBTEST accepts) */
static double fn_check_rbl(struct eval_msg *m, const struct rule *r)
{
	const struct rbl_rule *rr = r->ev_data;
	struct walk w = { .m = m, .visit = visit_subtest, .sub = rr->sub.kind != ST_ANY ? &rr->sub : NULL };
	walk_rbl(&w, rr, (r->tflags & TF_NICE) != 0);
	map_free(&w.asked);
	return w.hit;
}

static double fn_check_rbl_txt(struct eval_msg *m, const struct rule *r) { return fn_check_rbl(m, r); }

/* check_rbl_sub(SET, SUBTEST): an answer of a lookup the set's check_rbl
 * rules made passes SUBTEST */
static double fn_check_rbl_sub(struct eval_msg *m, const struct rule *r)
{
	const struct rbl_rule *sub = r->ev_data;
	const struct ruleset *rs = m->rs;
	struct walk w = { .m = m, .visit = visit_subtest, .sub = &sub->sub };
	for (size_t i = 0; i < rs->neval && !w.hit; i++) {
		const struct rule *lr = &rs->rules[rs->eval_rules[i]];
		if (!is_launcher(lr)) continue;
		const struct rbl_rule *rr = lr->ev_data;
		if (strcmp(rr->set, sub->set) == 0) walk_rbl(&w, rr, (lr->tflags & TF_NICE) != 0);
	}
	map_free(&w.asked);
	return w.hit;
}

/* check_uridnsbl(NAME): a URI host (or its domain, name servers or
 * addresses) listed as the uridnsbl/uridnssub/urirhsbl/urirhssub line
 * NAME says */
static double fn_check_uridnsbl(struct eval_msg *m, const struct rule *r)
{
	const struct net_conf *c = conf_of(m->rs);
	const char *name = eval_arg(r, 0);
	for (size_t i = 0; c && i < c->nuri; i++) {
		if (strcmp(c->uri[i].rule, name) != 0) continue;
		struct walk w = { .m = m, .visit = visit_subtest, .sub = c->uri[i].has_sub ? &c->uri[i].sub : NULL };
		walk_uribl(&w, &c->uri[i]);
		map_free(&w.asked);
		return w.hit;
	}
	return 0;
}

/* check_dns_sender: the envelope sender's domain has neither an A nor an
 * MX record: both lookups failed (NXDOMAIN or SERVFAIL) */
static double fn_check_dns_sender(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	char host[MAX_NAME], key[MAX_NAME + 32];
	const struct net_conf *c = conf_of(m->rs);
	if ((c && c->skip_rbl) || sender_host(m, host, sizeof host) < 0) return 0;
	int failed = 0;
	static const char *const types[] = { "A", "MX" };
	for (int i = 0; i < 2; i++) {
		snprintf(key, sizeof key, "dns:status:%s:%s", types[i], host);
		const char *st = eval_fact(m, key);
		if (st && (strcmp(st, "NXDOMAIN") == 0 || strcmp(st, "SERVFAIL") == 0)) failed++;
	}
	return failed == 2;
}

/* check_uri_host_listed(LIST): a URI host, or a parent domain of it,
 * enlisted in LIST (the most specific entry decides; "!host" excludes) */
static double fn_check_uri_host_listed(struct eval_msg *m, const struct rule *r)
{
	const struct net_conf *c = conf_of(m->rs);
	const struct uri_list *l = NULL;
	for (size_t i = 0; c && i < c->nlists; i++)
		if (strcmp(c->lists[i].name, eval_arg(r, 0)) == 0) l = &c->lists[i];
	if (!l || !l->hosts.n) return 0;
	/* every host of the shared list, links first, as the uri host
	 * lists of eval_facts.c see them (uri_hosts.h); until review
	 * rv-today5 a list of its own, the first 500 in message order */
	const struct eval_uri_hosts *hs = eval_uri_hosts(m);
	for (size_t h = 0; h < hs->n; h++) {
		const struct eval_uri_host *uh = &hs->v[h];
		if (uh->mailto) continue;
		/* the host, then its parents; only the last LABELS_KEPT tried */
		const char *keys[64];
		size_t nk = 0;
		keys[nk++] = uh->host;
		if (!uh->is_ip)
			for (const char *p = strchr(uh->host, '.'); p && nk < 64; p = strchr(p + 1, '.')) keys[nk++] = p + 1;
		size_t from = nk > LABELS_KEPT + 1 ? nk - LABELS_KEPT - 1 : 0;
		for (size_t k = from; k < nk; k++) {
			const int *v = map_get(&l->hosts, keys[k]);
			if (!v || *v < 0) continue;
			if (*v) return 1;
			break;                 /* "!host": this host is not listed */
		}
	}
	return 0;
}

/* --- askdns ----------------------------------------------------------------------- */

static const struct askdns *askdns_of(const struct ruleset *rs, const char *name)
{
	const struct net_conf *c = conf_of(rs);
	for (size_t i = c ? c->nask : 0; i-- > 0;)
		if (strcmp(c->ask[i].rule, name) == 0) return &c->ask[i];
	return NULL;
}

/* the DNS name an askdns rule asks for this message: its template with
 * the tag's value (SpamAssassin's AUTHORDOMAIN: the From address's domain;
 * SENDERDOMAIN: the envelope sender's; LASTEXTERNALHELO: the HELO of the
 * last external relay); -1 when the tag has no value */
static int askdns_query(struct eval_msg *m, const struct askdns *a, char *out, size_t outlen)
{
	char val[MAX_NAME] = "";
	if (strcmp(a->tag, "AUTHORDOMAIN") == 0) {
		const char *from = eval_header_first(m, "From");
		char addr[512];
		const char *at;
		if (!from || rules_addr_of(from, addr, sizeof addr) < 0 || !(at = strrchr(addr, '@')) || !at[1]) return -1;
		snprintf(val, sizeof val, "%s", at + 1);
	} else if (strcmp(a->tag, "SENDERDOMAIN") == 0) {
		if (sender_host(m, val, sizeof val) < 0) return -1;
	} else if (strcmp(a->tag, "LASTEXTERNALHELO") == 0) {
		const struct eval_relays *rl = eval_relays(m);
		if (rl->ninternal >= rl->n || !rl->relay[rl->ninternal].helo[0]) return -1;
		snprintf(val, sizeof val, "%s", rl->relay[rl->ninternal].helo);
	} else {
		return -1;
	}
	lower(val);
	if (strspn(val, "abcdefghijklmnopqrstuvwxyz0123456789-._[]:") != strlen(val)) return -1;
	const char *t = strstr(a->tmpl, a->tag);
	if (!t || t == a->tmpl) return -1;
	int n = snprintf(out, outlen, "%.*s%s%s", (int)(t - 1 - a->tmpl), a->tmpl, val, t + strlen(a->tag) + 1);
	if (n < 0 || (size_t)n >= outlen) return -1;
	lower(out);
	size_t l = strlen(out);
	while (l && out[l - 1] == '.') out[--l] = '\0';
	return l && l <= 253 ? 0 : -1;
}

static const char *type_key(int type)
{
	return type == 16 ? "TXT" : type == 2 ? "NS" : type == 15 ? "MX" : "A";
}

static int chk_askdns(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	const struct askdns *a = askdns_of(rs, eval_arg(r, 0));
	if (!a) { snprintf(why, whylen, "no askdns line for %.60s", eval_arg(r, 0)); return -1; }
	if (a->why[0]) { snprintf(why, whylen, "%s", a->why); return -1; }
	return 0;
}

/* an askdns rule: its query answered, with a record the subtest accepts */
static double fn_askdns(struct eval_msg *m, const struct rule *r)
{
	const struct askdns *a = askdns_of(m->rs, eval_arg(r, 0));
	char q[MAX_NAME + 64], key[MAX_NAME + 80];
	if (!a || a->why[0] || conf_of(m->rs)->skip_rbl || askdns_query(m, a, q, sizeof q) < 0) return 0;
	snprintf(key, sizeof key, "dns:%s:%s", type_key(a->type), q);
	const char *ans = eval_fact(m, key);
	if (!ans) return 0;
	if (a->type == 16) {
		char *item = malloc(strlen(ans) + 1);
		size_t n;
		int hit = 0;
		if (!item) abort();
		for (const char *p = txt_next(ans, item, &n); p && !hit; p = txt_next(p, item, &n))
			hit = !a->has_sub || subtest_match(&a->sub, item, n, m->md, m->rs->mctx);
		free(item);
		return hit;
	}
	char item[1024];
	for (const char *p = ans; *p;) {
		size_t n = strcspn(p, " ");
		if (n && n < sizeof item) {
			memcpy(item, p, n);
			item[n] = '\0';
			if (!a->has_sub || subtest_match(&a->sub, item, n, m->md, m->rs->mctx)) return 1;
		}
		p += n;
		if (*p) p++;
	}
	return 0;
}

/* --- the queries hook and the bridge's verdict -------------------------------- */

static void net_queries(struct eval_msg *m, void (*want)(void *arg, const char *qname, int rrtype), void *arg)
{
	const struct ruleset *rs = m->rs;
	struct walk w = { .m = m, .want = want, .arg = arg };
	int sender = 0;
	for (size_t i = 0; i < rs->neval; i++) {
		const struct rule *r = &rs->rules[rs->eval_rules[i]];
		if (is_launcher(r)) walk_rbl(&w, r->ev_data, (r->tflags & TF_NICE) != 0);
		else if (r->ev && r->ev->fn == fn_check_dns_sender) sender = 1;
	}
	walk_uribl(&w, NULL);
	map_free(&w.asked);
	const struct net_conf *c = conf_of(rs);
	for (size_t i = 0; c && !c->skip_rbl && i < c->nask; i++) {
		const struct askdns *a = &c->ask[i];
		char q[MAX_NAME + 64];
		int ri = rs_find(rs, a->rule, strlen(a->rule));
		if (a->why[0] || ri < 0 || rs->rules[ri].loaded != 1 || askdns_of(rs, a->rule) != a) continue;
		if (askdns_query(m, a, q, sizeof q) == 0) want(arg, q, a->type | (a->list && a->type == 1 ? EVAL_NET_LIST : 0));
	}
	char host[MAX_NAME];
	if (sender && !(c && c->skip_rbl) && sender_host(m, host, sizeof host) == 0) {
		want(arg, host, 1);
		want(arg, host, 15);
	}
}

enum dnsbl_verdict eval_net_verdict(const struct ruleset *rs, const char *qname, const unsigned char a[4])
{
	enum dnsbl_verdict v = dnsbl_code_verdict(a, !qname_is_ip(qname));
	if (v != DNSBL_LISTING) return v;
	const struct net_conf *c = conf_of(rs);
	if (!c || !c->nblk) return v;
	char txt[20];
	snprintf(txt, sizeof txt, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
	for (size_t b = 0; b < c->nblk; b++) {
		size_t zl = strlen(c->blk[b].zone), ql = strlen(qname);
		if (ql <= zl || qname[ql - zl - 1] != '.' || strcasecmp(qname + ql - zl, c->blk[b].zone) != 0) continue;
		const struct subtest *st = NULL;
		for (size_t i = 0; i < c->nuri && !st; i++)
			if (strcmp(c->uri[i].rule, c->blk[b].rule) == 0 && c->uri[i].has_sub) st = &c->uri[i].sub;
		int ri = rs_find(rs, c->blk[b].rule, strlen(c->blk[b].rule));
		if (!st && ri >= 0 && is_launcher(&rs->rules[ri])) st = &((const struct rbl_rule *)rs->rules[ri].ev_data)->sub;
		if (st && st->kind != ST_ANY && subtest_match(st, txt, strlen(txt), NULL, rs->mctx)) return DNSBL_REFUSED;
	}
	return v;
}

static const struct eval_def defs[] = {
	{ "check_rbl", fn_check_rbl, 2, 3, chk_rbl, rbl_rule_free, TF_NET },
	{ "check_rbl_txt", fn_check_rbl_txt, 2, 3, chk_rbl_txt, rbl_rule_free, TF_NET },
	{ "check_rbl_sub", fn_check_rbl_sub, 2, 2, chk_rbl_sub, rbl_rule_free, TF_NET },
	{ "check_uridnsbl", fn_check_uridnsbl, 1, 1, chk_name_arg, NULL, TF_NET },
	{ "check_dns_sender", fn_check_dns_sender, 0, 0, NULL, NULL, TF_NET },
	{ "check_uri_host_listed", fn_check_uri_host_listed, 1, 1, chk_name_arg, NULL, 0 },
	{ "askdns_rule", fn_askdns, 1, 1, chk_askdns, NULL, TF_NET },     /* rules of askdns lines */
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_net = {
	.name = "net",
	.defs = defs,
	.directive = net_directive,
	.free_conf = conf_free,
	.queries = net_queries,
};
