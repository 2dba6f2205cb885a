/* eval_header.c - eval: functions over header fields (SpamAssassin's
 * HeaderEval and the header parts of its Check plugin).
 *
 * Header values are read as SpamAssassin's PerMsgStatus::get() gives them:
 * every field of the name, decoded, each followed by "\n", joined; ":addr"
 * is the first address of those.  Everything here is bounded by the
 * header sizes (the bridge caps the number of fields) and linear in them,
 * except the recipient comparison, capped at 256 addresses as in
 * SpamAssassin, and the search for an address (at most 255 bytes) in a
 * field, compared at each word boundary. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "rules/eval.h"
#include "rules/eval_relay.h"

#define MAX_JOINED 65536          /* one header name's fields joined */
#define MAX_RECIPS 256            /* SpamAssassin's limit for the recipient tests */

/* check_for_missing_to_header: no To and no Apparently-To field */
static double missing_to(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	return !eval_header_first(m, "To") && !eval_header_first(m, "Apparently-To");
}

/* check_header_count_range(NAME, MIN, MAX): that many fields of NAME */
static double header_count_range(struct eval_msg *m, const struct rule *r)
{
	size_t n = 0;
	const char *name = eval_arg(r, 0);
	for (size_t i = 0; i < m->in->nheaders; i++)
		if (strcasecmp(m->in->headers[i].name, name) == 0) n++;
	return n >= eval_arg_num(r, 1, 0) && n <= eval_arg_num(r, 2, 1e9);
}

/* --- helpers -------------------------------------------------------------------- */

/* PerMsgStatus::get(NAME): every decoded field of NAME + "\n", joined;
 * returns the number of fields */
static size_t get_joined(const struct eval_msg *m, const char *name, char *out, size_t outlen)
{
	size_t o = 0, found = 0;
	out[0] = '\0';
	for (size_t i = 0; i < m->in->nheaders; i++) {
		const struct rules_header *h = &m->in->headers[i];
		if (strcasecmp(h->name, name) != 0) continue;
		const char *v = h->decoded ? h->decoded : h->raw;
		int n = snprintf(out + o, outlen - o, "%s\n", v);
		if (n < 0 || (size_t)n >= outlen - o) { o = outlen - 1; out[o] = '\0'; found++; break; }
		o += (size_t)n;
		found++;
	}
	return found;
}

/* the address of one list element */
static void elem_addr(const char *b, size_t n, char *out, size_t outlen)
{
	char tmp[1024];
	if (n >= sizeof tmp) n = sizeof tmp - 1;
	memcpy(tmp, b, n);
	tmp[n] = '\0';
	rules_addr_of(tmp, out, outlen);
}

/* NAME:addr - the first address of the fields of NAME ("" if none) */
static void first_addr(const struct eval_msg *m, const char *name, char *out, size_t outlen)
{
	out[0] = '\0';
	for (size_t i = 0; i < m->in->nheaders; i++) {
		const struct rules_header *h = &m->in->headers[i];
		if (strcasecmp(h->name, name) != 0) continue;
		const char *v = h->decoded ? h->decoded : h->raw;
		for (const char *p = v; *p;) {
			size_t n = rules_addr_elem_len(p, 1);
			elem_addr(p, n, out, outlen);
			if (out[0]) return;
			p += n;
			if (*p) p++;
		}
	}
}

/* all addresses of the fields of NAME, appended to list (bounded) */
static void all_addrs(const struct eval_msg *m, const char *name, char (*list)[256], size_t *n, size_t max)
{
	for (size_t i = 0; i < m->in->nheaders && *n < max; i++) {
		const struct rules_header *h = &m->in->headers[i];
		if (strcasecmp(h->name, name) != 0) continue;
		const char *v = h->decoded ? h->decoded : h->raw;
		for (const char *p = v; *p && *n < max;) {
			size_t l = rules_addr_elem_len(p, 1);
			elem_addr(p, l, list[*n], sizeof list[*n]);
			if (list[*n][0]) (*n)++;
			p += l;
			if (*p) p++;
		}
	}
}

/* a field of that name appears after a Received field */
static int after_received(const struct eval_msg *m, const char *name)
{
	int rcvd = 0;
	for (size_t i = 0; i < m->in->nheaders; i++) {
		if (!strcasecmp(m->in->headers[i].name, "Received")) rcvd = 1;
		else if (rcvd && !strcasecmp(m->in->headers[i].name, name)) return 1;
	}
	return 0;
}

/* EnvelopeFrom:addr as SpamAssassin's get_envelope_from() finds it: the
 * envelope sender when the bridge knows it, else the one the last
 * untrusted (or first trusted) relay noted, else X-Envelope-From,
 * Envelope-Sender, Return-Path, each only when not below a Received
 * field (and none when X-Sender and fetchmail suggest a fetched mailbox) */
static void envelope_from(struct eval_msg *m, char *out, size_t outlen)
{
	out[0] = '\0';
	if (m->in->mail_from && *m->in->mail_from) {
		snprintf(out, outlen, "%s", m->in->mail_from);
		return;
	}
	const struct eval_relays *rl = eval_relays(m);
	if (rl->n) {
		const struct eval_relay *last = rl->ntrusted < rl->n ? &rl->relay[rl->ntrusted] :
		                                rl->ntrusted ? &rl->relay[rl->ntrusted - 1] : NULL;
		if (last && strchr(last->envfrom, '@') && last->envfrom[0] != '@') {
			snprintf(out, outlen, "%.255s", last->envfrom);
			return;
		}
	}
	char xs[256];
	first_addr(m, "X-Sender", xs, sizeof xs);
	if (strchr(xs, '@'))
		for (size_t i = 0; i < m->in->nheaders; i++)
			if (!strcasecmp(m->in->headers[i].name, "Received") && strstr(m->in->headers[i].raw, "(fetchmail"))
				return;
	static const char *const names[] = { "X-Envelope-From", "Envelope-Sender", "Return-Path", NULL };
	for (size_t k = 0; names[k]; k++) {
		if (!eval_header_first(m, names[k])) continue;
		if (after_received(m, names[k])) return;     /* cannot be trusted */
		first_addr(m, names[k], out, outlen);
		return;
	}
}

static void lower(char *s) { for (; *s; s++) *s = (char)tolower((unsigned char)*s); }

/* --- the patterns SpamAssassin builds from the message's addresses -------------
 * HeaderEval.pm quotes an address into a regex (\Q...\E) per message; the
 * searches below give the same answers without compiling anything.  They
 * follow PCRE2's rules for these bytes without UTF/UCP: \w and \s are ASCII
 * only, /i folds ASCII letters only, "." is anything but "\n", and "$"
 * matches at the end or before a final "\n". */

static int re_word(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int re_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static int re_punct(unsigned char c) { return c && strchr(",:;!?-", c) != NULL; }   /* [,:;!?-] */

static unsigned char ascii_lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c; }

/* s[0..n) equals lit[0..n), ASCII letters in either case */
static int eq_nocase(const char *s, const char *lit, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ascii_lower((unsigned char)s[i]) != ascii_lower((unsigned char)lit[i])) return 0;
	return 1;
}

/* \b at offset i of s[0..len) */
static int word_boundary(const char *s, size_t len, size_t i)
{
	int before = i > 0 && re_word((unsigned char)s[i - 1]);
	int after = i < len && re_word((unsigned char)s[i]);
	return before != after;
}

/* the offsets where "$" matches in s[0..len): len, and len - 1 before a final "\n" */
static size_t dollar_offsets(const char *s, size_t len, size_t off[2])
{
	size_t n = 0;
	off[n++] = len;
	if (len && s[len - 1] == '\n') off[n++] = len - 1;
	return n;
}

/* /\b\Q$lit\E\b/i */
static int find_word_nocase(const char *s, size_t len, const char *lit, size_t n)
{
	for (size_t i = 0; i + n <= len; i++)
		if (word_boundary(s, len, i) && eq_nocase(s + i, lit, n) && word_boundary(s, len, i + n)) return 1;
	return 0;
}

/* g[0..n) is all of \s*(?:\w+\s+)? */
static int space_word_space(const char *g, size_t n)
{
	size_t i = 0;
	while (i < n && re_space((unsigned char)g[i])) i++;
	if (i == n) return 1;
	size_t word = i;
	while (i < n && re_word((unsigned char)g[i])) i++;
	if (i == word) return 0;
	size_t space = i;
	while (i < n && re_space((unsigned char)g[i])) i++;
	return i == n && i > space;
}

static int all_space(const char *g, size_t n)
{
	for (size_t i = 0; i < n; i++) if (!re_space((unsigned char)g[i])) return 0;
	return 1;
}

/* check_for_to_in_subject('user') with u the local part:
 * /^(?:(?:re|fw):\s*(?:\w+\s+)?\Qu\E$ | (?-i:\Qu\E)\s*[,:;!?-](?:$|\s) |
 *      \Qu\E$ | ,\s*\Qu\E[,:;!?-]$)/ix
 * Each alternative is anchored at both ends or at the start, so the place
 * of u is fixed: no search. */
static int user_in_subject(const char *s, size_t len, const char *u, size_t n)
{
	size_t ends[2], nends = dollar_offsets(s, len, ends);
	for (size_t k = 0; k < nends; k++) {
		size_t e = ends[k];
		if (e == n && eq_nocase(s, u, n)) return 1;                          /* u$ */
		if (e >= n + 3 && (eq_nocase(s, "re:", 3) || eq_nocase(s, "fw:", 3)) &&
		    eq_nocase(s + e - n, u, n) && space_word_space(s + 3, e - n - 3))
			return 1;                                                    /* re: word u$ */
		if (e >= n + 2 && s[0] == ',' && re_punct((unsigned char)s[e - 1]) &&
		    eq_nocase(s + e - 1 - n, u, n) && all_space(s + 1, e - 1 - n - 1))
			return 1;                                                    /* , u!$ */
	}
	if (n <= len && memcmp(s, u, n) == 0) {                                  /* u, ... (case kept) */
		size_t i = n;
		while (i < len && re_space((unsigned char)s[i])) i++;
		if (i < len && re_punct((unsigned char)s[i]) && (i + 1 == len || re_space((unsigned char)s[i + 1])))
			return 1;
	}
	return 0;
}

/* check_ratware_name_id's /"[^"]+"\s*<\Q$id\E>/ in s[0..len) */
static int quoted_name_then_id(const char *s, size_t len, const char *id, size_t n)
{
	for (size_t j = 0; j + n + 2 <= len; j++) {
		if (s[j] != '<' || s[j + 1 + n] != '>' || memcmp(s + j + 1, id, n) != 0) continue;
		size_t c = j;                     /* the closing quote ends where the \s* run before "<" starts */
		while (c > 0 && re_space((unsigned char)s[c - 1])) c--;
		if (c == 0 || s[c - 1] != '"') continue;
		size_t q = c - 1, o = q;          /* the opening quote: the nearest one before, not adjacent */
		while (o > 0 && s[o - 1] != '"') o--;
		if (o > 0 && o < q) return 1;
	}
	return 0;
}

/* check_ratware_envelope_from's /\b\Q$dom\E.\Q$user\E@/i in s[0..len) */
static int dom_any_user_at(const char *s, size_t len, const char *dom, size_t dn, const char *user, size_t un)
{
	for (size_t i = 0; i + dn + 1 + un + 1 <= len; i++)
		if (word_boundary(s, len, i) && eq_nocase(s + i, dom, dn) && s[i + dn] != '\n' &&
		    eq_nocase(s + i + dn + 1, user, un) && s[i + dn + 1 + un] == '@')
			return 1;
	return 0;
}

/* --- HeaderEval --------------------------------------------------------------------- */

static int to_in_subject_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	if (!strcmp(eval_arg(r, 0), "user") || !strcmp(eval_arg(r, 0), "address")) return 0;
	snprintf(why, whylen, "argument must be 'user' or 'address'");
	return -1;
}

/* check_for_to_in_subject('user'|'address'): the recipient named in the Subject */
static double to_in_subject(struct eval_msg *m, const struct rule *r)
{
	char to[256];
	first_addr(m, "To", to, sizeof to);
	if (!to[0]) return 0;
	char *subj = malloc(MAX_JOINED);
	if (!subj) abort();
	get_joined(m, "Subject", subj, MAX_JOINED);
	size_t len = strlen(subj);
	int hit;
	if (!strcmp(eval_arg(r, 0), "address")) {
		hit = find_word_nocase(subj, len, to, strlen(to));        /* /\b\Q$to\E\b/i */
	} else {
		char *at = strchr(to, '@');
		if (at) *at = '\0';
		hit = user_in_subject(subj, len, to, strlen(to));
	}
	free(subj);
	return hit;
}

static int caps_charset_word(const char *s, size_t n)
{
	static const char *const frag[] = { "koi", "jp", "jis", "euc", "gb", "big5", "isoir", "cp1251",
		"windows-1251", "georgianps", "pt154", "tis", NULL };
	char l[80];
	if (n >= sizeof l) return 0;
	for (size_t i = 0; i < n; i++) l[i] = (char)tolower((unsigned char)s[i]);
	l[n] = '\0';
	for (size_t i = 0; frag[i]; i++) if (strstr(l, frag[i])) return 1;
	return 0;
}

/* subject_is_all_caps: a subject of several words in capitals only */
static double subject_all_caps(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	char *s = malloc(MAX_JOINED);
	if (!s) abort();
	get_joined(m, "Subject", s, MAX_JOINED);
	char *b = s, *e = s + strlen(s);
	while (b < e && isspace((unsigned char)*b)) b++;
	while (e > b && isspace((unsigned char)e[-1])) e--;
	*e = '\0';
	/* reply and forward prefixes: ^(?:(?:Re|Fwd|Fw|Aw|Antwort|WG|SV|VB|VS|VL):\s*)+ */
	static const char *const pre[] = { "antwort", "fwd", "re", "fw", "aw", "wg", "sv", "vb", "vs", "vl", NULL };
	for (int again = 1; again;) {
		again = 0;
		for (size_t i = 0; pre[i]; i++) {
			size_t l = strlen(pre[i]);
			if (strncasecmp(b, pre[i], l) == 0 && b[l] == ':') {
				b += l + 1;
				while (isspace((unsigned char)*b)) b++;
				again = 1;
				break;
			}
		}
	}
	int hit = 0, space = 0;
	for (const char *p = b; *p; p++) if (isspace((unsigned char)*p)) space = 1;
	if (space && strlen(b) >= 10) {
		int letters = 0, lowercase = 0;
		for (const char *p = b; *p; p++) {
			if (*p >= 'a' && *p <= 'z') { letters++; lowercase = 1; }
			else if (*p >= 'A' && *p <= 'Z') letters++;
		}
		hit = letters && !lowercase;
		/* an encoded word in a charset that looks like capitals */
		const char *raw = eval_header_raw(m, "Subject");
		for (const char *p = raw; hit && p && (p = strstr(p, "=?")); p += 2) {
			const char *q = p + 2;
			size_t n = 0;
			while (isalnum((unsigned char)q[n]) || q[n] == '-' || q[n] == '_') n++;
			if (n && q[n] == '?' && caps_charset_word(q, n)) hit = 0;
		}
	}
	free(s);
	return hit;
}

/* MESSAGEID: X-Message-Id, Resent-Message-Id, X-Original-Message-ID, Message-Id */
static void message_ids(const struct eval_msg *m, char *out, size_t outlen)
{
	static const char *const names[] = { "X-Message-Id", "Resent-Message-Id", "X-Original-Message-ID", "Message-Id", NULL };
	size_t o = 0;
	out[0] = '\0';
	for (size_t k = 0; names[k]; k++) {
		size_t l = get_joined(m, names[k], out + o, outlen - o);
		if (l) o += strlen(out + o);
	}
}

/* check_ratware_name_id: Message-ID <28 capitals.X> and From "name" <X> */
static double ratware_name_id(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	char mid[4096], from[4096];
	message_ids(m, mid, sizeof mid);
	/* the first /<[A-Z]{28}\.([^>]+?)>/ */
	for (const char *p = mid; (p = strchr(p, '<')); p++) {
		size_t k = 1;
		while (k <= 28 && p[k] >= 'A' && p[k] <= 'Z') k++;
		if (k != 29 || p[29] != '.') continue;
		const char *id = p + 30, *e = strchr(id, '>');
		if (!e || e == id) continue;
		get_joined(m, "From", from, sizeof from);
		return quoted_name_then_id(from, strlen(from), id, (size_t)(e - id));
	}
	return 0;
}

/* the registered domain, roughly: the last two labels, three under a
 * two-letter country code with a short second-level label (co.uk, com.au) */
static const char *trim_domain(const char *d)
{
	const char *dots[3] = { NULL, NULL, NULL };     /* the last three dots, right to left */
	size_t nd = 0;
	for (const char *p = d + strlen(d); p > d && nd < 3; p--)
		if (p[-1] == '.') dots[nd++] = p - 1;
	if (!dots[1]) return d;
	size_t tld = strlen(dots[0] + 1), sld = (size_t)(dots[0] - dots[1] - 1);
	if (tld == 2 && sld <= 3) return dots[2] ? dots[2] + 1 : d;
	return dots[1] + 1;
}

/* check_ratware_envelope_from: envelope sender like domain.user@... of To */
static double ratware_envelope_from(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	char to[256], from[256];
	first_addr(m, "To", to, sizeof to);
	envelope_from(m, from, sizeof from);
	if (!to[0] || !from[0]) return 0;
	if (strncasecmp(from, "SRS", 3) == 0 && isdigit((unsigned char)from[3]) && strchr("=+-", from[4])) return 0;
	char *at = strchr(to, '@');
	if (!at || at == to || !at[1]) return 0;
	*at = '\0';
	const char *dom = trim_domain(at + 1);
	const char *dot = strrchr(dom, '.');
	if (!dot || !isalpha((unsigned char)dot[1])) return 0;     /* not a valid domain */
	return dom_any_user_at(from, strlen(from), dom, strlen(dom), to, strlen(to));   /* /\b\Q$dom\E.\Q$user\E@/i */
}

/* parse_rfc822_date, as SpamAssassin's Util does (enough of it): seconds
 * since the epoch, or 0 when no date is found */
static long parse_date(const char *s)
{
	static const char *const mon[] = { "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec" };
	char buf[512];
	size_t o = 0;
	buf[o++] = ' ';
	for (const char *p = s; *p && o + 2 < sizeof buf; p++) {
		char c = *p == ',' ? ' ' : *p;
		if (isspace((unsigned char)c)) { if (buf[o - 1] != ' ') buf[o++] = ' '; }
		else buf[o++] = c;
	}
	if (buf[o - 1] != ' ') buf[o++] = ' ';
	buf[o] = '\0';
	int dd = -1, mm = -1, yy = -1, h = 0, mi = 0, sec = 0;
	for (char *p = buf; *p && dd < 0; p++) {
		if (*p != ' ') continue;
		int d, n = 0;
		char mn[4];
		int y;
		if (sscanf(p, " %d %3s %d%n", &d, mn, &y, &n) == 3 && p[n] == ' ') {
			for (int k = 0; k < 12; k++) if (!strcasecmp(mn, mon[k])) { dd = d; mm = k; yy = y; }
		}
	}
	if (dd < 0) return 0;
	if (yy < 50) yy += 2000;
	else if (yy < 1000) yy += 1900;
	for (char *p = buf; *p; p++) {
		int n = 0;
		if (*p == ' ' && sscanf(p, " %d:%d%n", &h, &mi, &n) == 2) {
			if (p[n] == ':') sscanf(p + n + 1, "%d", &sec);
			break;
		}
	}
	long tz = 0;
	for (char *p = buf; *p; p++)
		if (*p == ' ' && (p[1] == '+' || p[1] == '-') && isdigit((unsigned char)p[2]) && isdigit((unsigned char)p[3]) &&
		    isdigit((unsigned char)p[4]) && isdigit((unsigned char)p[5]) && p[6] == ' ') {
			tz = ((p[2] - '0') * 10 + (p[3] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
			if (p[1] == '+') tz = -tz;
			break;
		}
	if (sec > 59) sec = 59;
	if (mi > 59) mi = 59;
	if (h > 23) h = 23;
	if (yy > 2037) yy = 2037;
	if (yy < 1970) yy = 1970;
	struct tm tm = { .tm_year = yy - 1900, .tm_mon = mm, .tm_mday = dd, .tm_hour = h, .tm_min = mi, .tm_sec = sec };
	long t = (long)timegm(&tm) + tz;
	return t < 0 ? 0 : t;
}

/* the date of the last Received line, as SpamAssassin finds it; compiled
 * once for all threads (a fixed pattern of ours: failing is a bug) */
static pcre2_code *rcvd_date_re;
static pthread_once_t rcvd_date_once = PTHREAD_ONCE_INIT;

static void rcvd_date_compile(void)
{
	int ec;
	PCRE2_SIZE eo;

	rcvd_date_re = pcre2_compile((PCRE2_SPTR)"(\\s.?\\d+ \\S\\S\\S \\d+ \\d+:\\d+:\\d+ \\S+).*?$",
	                             PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
	if (rcvd_date_re == NULL) {
		fprintf(stderr, "eval_header: Received date pattern: error %d at %zu\n", ec, (size_t)eo);
		abort();
	}
	pcre2_jit_compile(rcvd_date_re, PCRE2_JIT_COMPLETE);
}

/* check_outlook_message_id: Outlook's Message-ID carries a time stamp:
 * far from the Date and from the last Received date, it was forged */
static double outlook_message_id(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	char mid[4096];
	message_ids(m, mid, sizeof mid);
	/* ^<[0-9a-f]{4}([0-9a-f]{8})\$[0-9a-f]{8}\$[0-9a-f]{8}\@ */
	const char *p = mid;
	if (*p != '<') return 0;
	for (int i = 1; i <= 12; i++) if (!isxdigit((unsigned char)p[i]) || isupper((unsigned char)p[i])) return 0;
	if (p[13] != '$') return 0;
	for (int i = 14; i < 22; i++) if (!isxdigit((unsigned char)p[i]) || isupper((unsigned char)p[i])) return 0;
	if (p[22] != '$') return 0;
	for (int i = 23; i < 31; i++) if (!isxdigit((unsigned char)p[i]) || isupper((unsigned char)p[i])) return 0;
	if (p[31] != '@') return 0;
	char tok[9];
	memcpy(tok, p + 5, 8);
	tok[8] = '\0';
	double token = (double)strtoul(tok, NULL, 16);
	const double x = 0.0023283064365387, y = 27111902.8329849, fudge = 250;
	char buf[4096];
	get_joined(m, "Date", buf, sizeof buf);
	double expected = (double)(long)((double)parse_date(buf) * x + y);
	if (token - expected < fudge && expected - token < fudge) return 0;
	/* the date of a Received field: /(\s.?\d+ \S\S\S \d+ \d+:\d+:\d+ \S+).*?$/ */
	char *rcvd = malloc(MAX_JOINED);
	if (!rcvd) abort();
	get_joined(m, "Received", rcvd, MAX_JOINED);
	long t = 0;
	pthread_once(&rcvd_date_once, rcvd_date_compile);
	if (pcre2_match(rcvd_date_re, (PCRE2_SPTR)rcvd, strlen(rcvd), 0, 0, m->md, m->rs->mctx) > 0) {
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->md);
		char d[200];
		snprintf(d, sizeof d, "%.*s", (int)(ov[3] - ov[2]), rcvd + ov[2]);
		t = parse_date(d);
	}
	free(rcvd);
	expected = (double)(long)((double)t * x + y);
	return !(token - expected < fudge && expected - token < fudge);
}

/* check_unresolved_template: a %MACRO left in a field */
static double unresolved_template(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	static const char *const exempt[] = { "X-VMS-To", "X-UIDL", "X-Face", "To", "Cc", "From", "Subject",
		"References", "In-Reply-To", "Message-Id", "X-Message-Id", "Resent-Message-Id",
		"X-Original-Message-Id", NULL };
	for (size_t i = 0; i < m->in->nheaders; i++) {
		const struct rules_header *h = &m->in->headers[i];
		if (!strcmp(h->name, "EnvelopeFrom")) continue;
		int skip = 0;
		for (size_t k = 0; exempt[k] && !skip; k++) skip = !strcasecmp(h->name, exempt[k]);
		if (skip) continue;
		const char *v = h->decoded ? h->decoded : h->raw;
		/* the name itself is part of the line SpamAssassin looks at */
		for (int part = 0; part < 2; part++) {
			const char *s = part ? v : h->name;
			for (const char *p = s; (p = strchr(p, '%')); p++)
				if (p[1] >= 'A' && p[1] <= 'Z' && ((p[2] >= 'A' && p[2] <= 'Z') || p[2] == '_' || p[2] == '-'))
					return 1;
		}
	}
	return 0;
}

/* the recipients for sorted/similar_recipients: To and Cc addresses, Bcc
 * if fewer than 5, neighbouring duplicates dropped */
struct recips { char (*a)[256]; size_t n; double similar; int sorted; };

static void recips_free(void *p)
{
	struct recips *rc = p;
	if (rc) free(rc->a);
	free(rc);
}

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

static struct recips *recips_get(struct eval_msg *m)
{
	struct recips *rc = eval_cache_get(m, EVC_HEADER);
	if (rc) return rc;
	rc = calloc(1, sizeof *rc);
	char (*in)[256] = calloc(MAX_RECIPS * 2, 256);
	if (!rc || !in) abort();
	size_t nin = 0;
	all_addrs(m, "To", in, &nin, MAX_RECIPS * 2);
	all_addrs(m, "Cc", in, &nin, MAX_RECIPS * 2);
	if (nin < 5) all_addrs(m, "Bcc", in, &nin, MAX_RECIPS * 2);
	rc->a = calloc(MAX_RECIPS, 256);
	if (!rc->a) abort();
	const char *prev = "";
	for (size_t i = 0; i < nin && rc->n < MAX_RECIPS; i++) {
		if (!strcasecmp(in[i], prev)) continue;
		strcpy(rc->a[rc->n++], in[i]);
		prev = in[i];
	}
	free(in);
	if (rc->n >= 7) {
		char (*s)[256] = malloc(rc->n * 256);
		if (!s) abort();
		memcpy(s, rc->a, rc->n * 256);
		qsort(s, rc->n, 256, cmp_str);
		rc->sorted = memcmp(s, rc->a, rc->n * 256) == 0;
		free(s);
	}
	if (rc->n >= 5) {
		size_t hits = 0, comb = 0;
		for (size_t i = 0; i < rc->n; i++)
			for (size_t j = i + 1; j < rc->n; j++) {
				const char *a = rc->a[i], *b = rc->a[j];
				if (!strncmp(a, b, 2) && (strlen(a) >= 2) == (strlen(b) >= 2)) hits++;
				const char *ha = strchr(a, '@'), *hb = strchr(b, '@');
				ha = ha ? ha + 1 : "";
				hb = hb ? hb + 1 : "";
				if (!strncmp(ha, hb, 2) && (strlen(ha) >= 2) == (strlen(hb) >= 2) && strcmp(ha, hb)) hits++;
				comb++;
			}
		rc->similar = (double)hits / (double)comb;
	}
	eval_cache_set(m, EVC_HEADER, rc, recips_free);
	return rc;
}

static double sorted_recipients(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	return recips_get(m)->sorted;
}

static double similar_recipients(struct eval_msg *m, const struct rule *r)
{
	struct recips *rc = recips_get(m);
	const char *lo = eval_arg(r, 0), *hi = eval_arg(r, 1);
	return (!strcmp(lo, "undef") || rc->similar >= eval_arg_num(r, 0, 0)) &&
	       (!strcmp(hi, "undef") || rc->similar < eval_arg_num(r, 1, 0));
}

/* check_for_matching_env_and_hdr_from: envelope sender = From address */
static double env_and_hdr_from(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	char env[256], from[256];
	envelope_from(m, env, sizeof env);
	first_addr(m, "From", from, sizeof from);
	return strcasecmp(env, from) == 0;
}

/* the last two labels of an address's domain (SpamAssassin's crude "2nd level") */
static void two_labels(const char *addr, char *out, size_t outlen)
{
	out[0] = '\0';
	const char *at = strrchr(addr, '@');
	if (!at) return;
	const char *d = at + 1;
	const char *last = strrchr(d, '.');
	if (last && last > d) {
		const char *p = last - 1;
		while (p > d && *p != '.') p--;
		if (*p == '.' && p > d) d = p + 1;
	}
	snprintf(out, outlen, "%s", d);
	lower(out);
}

/* check_equal_from_domains: From and envelope sender in different domains */
static double equal_from_domains(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	char a[256], b[256], da[256], db[256];
	first_addr(m, "From", a, sizeof a);
	envelope_from(m, b, sizeof b);
	two_labels(a, da, sizeof da);
	two_labels(b, db, sizeof db);
	if (!da[0] || !db[0]) return 0;
	return strcmp(da, db) != 0;
}

/* similar_recipients(MIN, MAX): numbers or 'undef' */
static int min_max_check(struct ruleset *rs, struct rule *r, char *why, size_t whylen)
{
	(void)rs;
	for (unsigned i = 0; i < r->ev_argc; i++) {
		const char *a = eval_arg(r, i);
		char *end;
		if (!strcmp(a, "undef")) continue;
		strtod(a, &end);
		if (!*a || *end) {
			snprintf(why, whylen, "argument %u \"%.40s\" is neither a number nor undef", i + 1, a);
			return -1;
		}
	}
	return 0;
}

static const struct eval_def defs[] = {
	{ "check_for_missing_to_header", missing_to, 0, 0, NULL, NULL, 0 },
	{ "check_header_count_range", header_count_range, 3, 3, NULL, NULL, 0 },
	{ "check_for_to_in_subject", to_in_subject, 1, 1, to_in_subject_check, NULL, 0 },
	{ "subject_is_all_caps", subject_all_caps, 0, 0, NULL, NULL, 0 },
	{ "check_ratware_name_id", ratware_name_id, 0, 0, NULL, NULL, 0 },
	{ "check_ratware_envelope_from", ratware_envelope_from, 0, 0, NULL, NULL, 0 },
	{ "check_outlook_message_id", outlook_message_id, 0, 0, NULL, NULL, 0 },
	{ "check_unresolved_template", unresolved_template, 0, 0, NULL, NULL, 0 },
	{ "sorted_recipients", sorted_recipients, 0, 0, NULL, NULL, 0 },
	{ "similar_recipients", similar_recipients, 2, 2, min_max_check, NULL, 0 },
	{ "check_for_matching_env_and_hdr_from", env_and_hdr_from, 0, 0, NULL, NULL, 0 },
	{ "check_equal_from_domains", equal_from_domains, 0, 0, NULL, NULL, 0 },
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_header = {
	.name = "header",
	.defs = defs,
};
