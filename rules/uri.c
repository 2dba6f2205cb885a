/* uri.c - the forms of one URI that uri rules are matched against, as
 * SpamAssassin 4.0.1's uri_list_canonicalize makes them: line breaks and
 * tabs taken out (browsers drop them anywhere in a URL), backslashes as
 * slashes, "http:x" as "http://x", %XX decoded, a scheme for schemeless
 * "www." links, "/" before a bare "?" or "#", the host with its other
 * dots (U+3002, U+FF0E, U+FF61, U+FE52, U+2024) as "." and without
 * control characters, spaces, "user@" or trailing punctuation, an IPv4
 * address written as one number or with hex/octal octets as a dotted
 * quad, the target of a redirector (redirector_pattern directives
 * first, then any "http://" inside the path), itself canonicalized, the
 * default port dropped, numeric character references decoded, and a
 * bare host ("http://foobar") as Firefox completes it.  Past
 * SpamAssassin, a host in Unicode also gets its IDNA A-label form
 * (libidn2, as the DMARC code), which its URIDNSBL looks up.  Mail
 * addresses are left as they are.
 *
 * The one canonicalizer: the uri rules, the rules' URI blocklists
 * (eval_net.c) and the dnsbl filter's uri lists all read these forms
 * (rules_uri_set_new once per message for the rules, rules_uri_canon,
 * rules_uri_host), so a host a browser opens is the host that is looked
 * up. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <idn2.h>
#include "rules/rules.h"
#include "rules/rules_int.h"
#include "rules/eval_net.h"

#define MAX_URI_FORMS   32
#define MAX_URI_LEN     4096
#define MAX_REDIRECTS   3

struct forms {
	char *v[MAX_URI_FORMS];
	size_t n;
};

static void add_form(struct forms *f, const char *s, size_t n)
{
	if (f->n >= MAX_URI_FORMS || n == 0 || n > MAX_URI_LEN) return;
	for (size_t i = 0; i < f->n; i++)
		if (strlen(f->v[i]) == n && memcmp(f->v[i], s, n) == 0) return;
	f->v[f->n] = strndup(s, n);
	if (!f->v[f->n]) abort();
	f->n++;
}

static void canon(const struct ruleset *rs, pcre2_match_data *md, struct forms *f, const char *uri, int depth);

/* the target of a redirector in u (http(s)://host...), or nothing */
static void redirect(const struct ruleset *rs, pcre2_match_data *md, struct forms *f, const char *u,
                     const char *rest, int depth)
{
	if (depth >= MAX_REDIRECTS) return;
	for (size_t i = 0; rs && i < rs->nredirectors; i++) {
		int rc = pcre2_match(rs->redirectors[i], (PCRE2_SPTR)u, strlen(u), 0, 0, md, rs->mctx);
		if (rc < 2) continue;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		if (ov[2] == PCRE2_UNSET || ov[3] <= ov[2]) continue;
		if (!memchr(u + ov[2], '.', ov[3] - ov[2])) continue;
		char *t = strndup(u + ov[2], ov[3] - ov[2]);
		if (!t) abort();
		canon(rs, md, f, t, depth + 1);
		free(t);
		return;
	}
	/* generic: an http(s): link inside the rest ("yahoo only needs one /") */
	for (const char *p = rest; *p; p++) {
		if (strncasecmp(p, "http", 4) != 0) continue;
		const char *q = p + 4;
		if (*q == 's' || *q == 'S') q++;
		if (*q != ':') continue;
		size_t n = strcspn(p, "&#");
		if (!memchr(p, '.', n)) return;
		char *t = strndup(p, n);
		if (!t) abort();
		canon(rs, md, f, t, depth + 1);
		free(t);
		return;
	}
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* percent_decode - every %XX of s decoded in place (SpamAssassin's
 * url_encode, bug 4213: a host or scheme may be written encoded); %00
 * stays as written, so the form stays a C string.  1 if one was decoded */
static int percent_decode(char *s)
{
	size_t j = 0;
	int any = 0;
	for (size_t i = 0; s[i]; i++) {
		int a, b;
		if (s[i] == '%' && (a = hexval((unsigned char)s[i + 1])) >= 0 && (b = hexval((unsigned char)s[i + 2])) >= 0 &&
		    (a || b)) {
			s[j++] = (char)(a * 16 + b);
			i += 2;
			any = 1;
			continue;
		}
		s[j++] = s[i];
	}
	s[j] = '\0';
	return any;
}

/* char_refs - SpamAssassin's three passes over numeric character
 * references in a URI, in its order and with its exact ranges: decimal
 * &#33; to &#126; (leading zeros allowed), hex &#x21; to &#x7e; except
 * &#x2a; to &#x2f; (lower-case x only: its regex), then the dots
 * &#x2e; &#12290; &#x3002; &#65294; &#xff0e; &#65377; &#xff61; (any
 * case) as ".".  In place; the result is never longer. */
static void char_refs(char *s)
{
	size_t j = 0;
	for (size_t i = 0; s[i]; i++) {              /* decimal */
		size_t k = i + 2;
		if (s[i] == '&' && s[i + 1] == '#') {
			while (s[k] == '0') k++;
			size_t d = 0;
			int v = 0;
			while (isdigit((unsigned char)s[k + d]) && d < 4) v = v * 10 + (s[k + d++] - '0');
			if (d >= 2 && d <= 3 && s[k + d] == ';' && v >= 33 && v <= 126) {
				s[j++] = (char)v;
				i = k + d;
				continue;
			}
		}
		s[j++] = s[i];
	}
	s[j] = '\0';
	j = 0;
	for (size_t i = 0; s[i]; i++) {              /* hex: 2[1-9]|[3-6][0-9a-f]|7[0-9a-e] */
		size_t k = i + 3;
		if (s[i] == '&' && s[i + 1] == '#' && s[i + 2] == 'x') {
			while (s[k] == '0') k++;
			int hi = hexval((unsigned char)s[k]), lo = hi >= 0 ? hexval((unsigned char)s[k + 1]) : -1;
			if (lo >= 0 && s[k + 2] == ';' && isdigit((unsigned char)s[k]) &&
			    ((hi == 2 && lo >= 1 && lo <= 9 && isdigit((unsigned char)s[k + 1])) || (hi >= 3 && hi <= 6) ||
			     (hi == 7 && lo <= 14))) {
				s[j++] = (char)(hi * 16 + lo);
				i = k + 2;
				continue;
			}
		}
		s[j++] = s[i];
	}
	s[j] = '\0';
	static const char *const dots[] = { "x2e;", "12290;", "x3002;", "65294;", "xff0e;", "65377;", "xff61;" };
	j = 0;
	for (size_t i = 0; s[i]; i++) {              /* the dots */
		size_t d = sizeof dots / sizeof *dots;
		if (s[i] == '&' && s[i + 1] == '#')
			for (d = 0; d < sizeof dots / sizeof *dots; d++)
				if (strncasecmp(s + i + 2, dots[d], strlen(dots[d])) == 0) break;
		if (d < sizeof dots / sizeof *dots) {
			s[j++] = '.';
			i += 1 + strlen(dots[d]);
			continue;
		}
		s[j++] = s[i];
	}
	s[j] = '\0';
}

/* clean_host - host (hl bytes) as a browser reads it into out: the other
 * Unicode dots as ".", bytes up to space and DEL dropped, and a host with
 * non-ASCII letters in its IDNA A-label form; its length, or 0 when it is
 * the same as written or too long */
static size_t clean_host(const char *host, size_t hl, char *out, size_t outsz)
{
	static const char *const dots[] = { "\xE3\x80\x82", "\xEF\xBC\x8E", "\xEF\xBD\xA1", "\xEF\xB9\x92", "\xE2\x80\xA4" };
	size_t o = 0;
	int high = 0;
	if (hl >= outsz) return 0;
	for (size_t i = 0; i < hl; i++) {
		size_t d;
		for (d = 0; d < sizeof dots / sizeof *dots; d++)
			if (hl - i >= 3 && memcmp(host + i, dots[d], 3) == 0) break;
		if (d < sizeof dots / sizeof *dots) { out[o++] = '.'; i += 2; continue; }
		unsigned char c = (unsigned char)host[i];
		if (c <= ' ' || c == 0x7f) continue;
		if (c >= 0x80) high = 1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	if (high) {
		/* UTS #46 processing maps case and compatibility forms; a host
		 * libidn2 refuses keeps its Unicode form (no lookup then) */
		char *a = NULL;
		if ((idn2_to_ascii_8z(out, &a, IDN2_NONTRANSITIONAL) == IDN2_OK ||
		     idn2_to_ascii_8z(out, &a, IDN2_TRANSITIONAL) == IDN2_OK) && a && strlen(a) < outsz) {
			strcpy(out, a);
			o = strlen(a);
		}
		idn2_free(a);
	}
	return o == hl && memcmp(out, host, hl) == 0 ? 0 : o;
}

/* one octet as SpamAssassin reads it: 0x.. hex, 0 and octal digits
 * octal, else decimal (leading zeros dropped); -1 when it is none or over
 * 255 (no browser opens that) */
static long octet(const char *p, size_t n)
{
	long v = 0;
	int base = 10;
	size_t i = 0;
	if (n > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		i = 2;
	} else if (n > 1 && p[0] == '0') {
		base = 8;
		for (size_t k = 0; k < n; k++) if (p[k] < '0' || p[k] > '7') base = 10;
	}
	if (i >= n) return -1;
	for (; i < n; i++) {
		int d = hexval((unsigned char)p[i]);
		if (d < 0 || d >= base || (v = v * base + d) > 255) return -1;
	}
	return v;
}

/* ip_quad - host written as an IPv4 address in another notation (four
 * hex/octal/decimal octets, one hex number, one decimal number) as a
 * dotted quad into out; 0 when it is none */
static int ip_quad(const char *h, size_t n, char *out, size_t outsz)
{
	unsigned long v = 0;
	if (n == 0 || n > 64) return 0;
	if (memchr(h, '.', n)) {
		long o[4];
		size_t k = 0, s = 0;
		for (size_t i = 0; i <= n; i++) {
			if (i < n && h[i] != '.') continue;
			if (k == 4 || (o[k++] = octet(h + s, i - s)) < 0) return 0;
			s = i + 1;
		}
		if (k != 4) return 0;
		snprintf(out, outsz, "%ld.%ld.%ld.%ld", o[0], o[1], o[2], o[3]);
		return 1;
	}
	if (n > 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X')) {
		size_t i = 2;
		if (n - i > 8) i = n - 8;                      /* the last 4 octets, as SpamAssassin */
		for (size_t k = 2; k < n; k++) if (hexval((unsigned char)h[k]) < 0) return 0;
		for (; i < n; i++) v = v * 16 + (unsigned long)hexval((unsigned char)h[i]);
	} else {
		if (n > 10) return 0;
		for (size_t i = 0; i < n; i++) {
			if (!isdigit((unsigned char)h[i])) return 0;
			v = v * 10 + (unsigned long)(h[i] - '0');
		}
		if (v > 0xffffffffUL) return 0;
	}
	snprintf(out, outsz, "%lu.%lu.%lu.%lu", v >> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255);
	return 1;
}

/* looks_numeric - host (n bytes) is one SpamAssassin reads as an address:
 * four dotted decimal or 0x numbers, one 0x number, or digits only */
static int looks_numeric(const char *h, size_t n)
{
	size_t parts = 0, i = 0;
	while (i < n) {
		size_t d = 0;
		if (n - i > 2 && h[i] == '0' && (h[i + 1] == 'x' || h[i + 1] == 'X')) {
			i += 2;
			while (i < n && hexval((unsigned char)h[i]) >= 0) { i++; d++; }
		} else {
			while (i < n && isdigit((unsigned char)h[i])) { i++; d++; }
		}
		if (!d) return 0;
		parts++;
		if (i == n) break;
		if (h[i] != '.' || parts == 4) return 0;
		i++;
		if (i == n) return 0;
	}
	if (parts == 4) return 1;
	if (parts != 1) return 0;
	return 1;
}

/* bare_host - "http://foobar" also as "http://www.foobar.com", as
 * SpamAssassin (bug 6596, as Firefox did): scheme "http://" as written,
 * no user@, port 80 (none or ":80"), a host of one label or "www." and
 * one (not localhost, not an address) that is not a valid domain
 * already (a known top-level domain after its dot: "www.shop" stays).
 * n's host starts at host; hn: its length without trailing punctuation,
 * hp: up to the port.  The form's length in out, or 0 */
static size_t bare_host(const struct ruleset *rs, const char *n, int has_user, const char *host, size_t hn,
                        size_t hp, char *out, size_t outsz)
{
	char low[256];
	if (strncmp(n, "http://", 7) != 0 || has_user || hp == 0 || hp >= sizeof low) return 0;
	if (hn && looks_numeric(host, hn)) return 0;
	const char *rest = host + hp;
	if (*rest == ':') {
		size_t d = strspn(rest + 1, "0123456789");
		if (d && !(d == 2 && strncmp(rest + 1, "80", 2) == 0)) return 0;
	}
	for (size_t i = 0; i < hp; i++) low[i] = (char)tolower((unsigned char)host[i]);
	low[hp] = '\0';
	const char *label = strncmp(low, "www.", 4) == 0 ? low + 4 : low;
	if (!*label || strchr(label, '.') || strcmp(low, "localhost") == 0) return 0;
	if (label != low && eval_net_domain_valid(rs, low)) return 0;
	int w = snprintf(out, outsz, "http://www.%s.com%s", label, rest);
	return w > 0 && (size_t)w < outsz ? (size_t)w : 0;
}

/* noport - u (scheme://[user@]host:port...) without a default port, as
 * SpamAssassin strips it: ":80" after "http://" (its scheme compared as
 * written, lower case), ":443" after any other http(s) scheme, at a word
 * boundary; its form has no user@ either (SpamAssassin joins the scheme,
 * host and rest).  Its length in out, or 0 */
static size_t noport(const char *u, char *out, size_t outsz)
{
	const char *h = strstr(u, "://");
	if (!h) return 0;
	h += 3;
	size_t plen = (size_t)(h - u), hl = strcspn(h, "/?#");
	const char *at = memchr(h, '@', hl);
	const char *host = at ? at + 1 : h;
	size_t hp = strcspn(host, "/?#:");
	if (hp == 0 || host[hp] != ':') return 0;
	const char *port = strncmp(u, "http://", 7) == 0 ? "80" : "443";
	const char *p = host + hp + 1;
	size_t pl = strlen(port);
	if (strncmp(p, port, pl) != 0 || isalnum((unsigned char)p[pl]) || p[pl] == '_') return 0;
	if (plen + hp + strlen(p + pl) >= outsz) return 0;
	memcpy(out, u, plen);
	memcpy(out + plen, host, hp);
	strcpy(out + plen + hp, p + pl);
	return strlen(out);
}

static void canon(const struct ruleset *rs, pcre2_match_data *md, struct forms *f, const char *uri, int depth)
{
	size_t len = strlen(uri);
	if (len == 0 || len > MAX_URI_LEN) return;
	add_form(f, uri, len);
	if (strncasecmp(uri, "mailto:", 7) == 0 || (strchr(uri, '@') && !strchr(uri, ':'))) return;
	/* line breaks and tabs out (SpamAssassin drops CR and LF; browsers
	 * drop tabs too, anywhere in the URL) */
	char *n = malloc(len + 16);
	if (!n) abort();
	size_t j = 0;
	for (const char *c = uri; *c; c++)
		if (*c != '\r' && *c != '\n' && *c != '\t') n[j++] = *c;
	n[j] = '\0';
	char *u = strdup(n);
	if (!u) abort();
	if (j != len) add_form(f, u, j);
	const char *s = u;
	/* scheme: http:x or http:/x -> http://x; none -> http:// (ftp. -> ftp://),
	 * after %XX is decoded ("%68ttp://" is a scheme) */
	j = 0;
	size_t sch = 0;
	while (isalnum((unsigned char)s[sch]) || s[sch] == '-' || s[sch] == '_') sch++;
	int web = s[sch] == ':' && ((sch == 4 && strncasecmp(s, "http", 4) == 0) || (sch == 5 && strncasecmp(s, "https", 5) == 0));
	if (web) {
		memcpy(n, s, sch + 1);
		j = sch + 1;
		s += sch + 1;
		while (*s == '/' || *s == '\\') s++;
		n[j++] = '/';
		n[j++] = '/';
	}
	for (; *s; s++) n[j++] = *s == '\\' ? '/' : *s;
	n[j] = '\0';
	percent_decode(n);
	sch = 0;
	while (isalnum((unsigned char)n[sch]) || n[sch] == '-' || n[sch] == '_') sch++;
	if (!(n[sch] == ':' && sch > 0)) {
		const char *pfx = strncasecmp(n, "ftp.", 4) == 0 ? "ftp://" : "http://";
		size_t pl = strlen(pfx);
		memmove(n + pl, n, strlen(n) + 1);
		memcpy(n, pfx, pl);
	}
	free(u);
	/* http://host?x -> http://host/?x */
	if (strncasecmp(n, "http", 4) == 0) {
		char *h = strstr(n, "://");
		if (h) {
			h += 3;
			size_t hl = strcspn(h, "/?#");
			if (h[hl] == '?' || h[hl] == '#') {
				memmove(h + hl + 1, h + hl, strlen(h + hl) + 1);
				h[hl] = '/';
			}
		}
	}
	char_refs(n);
	add_form(f, n, strlen(n));
	/* host parts */
	if (strncasecmp(n, "http://", 7) == 0 || strncasecmp(n, "https://", 8) == 0) {
		char *h = strstr(n, "://") + 3;
		size_t plen = (size_t)(h - n);
		char buf[MAX_URI_LEN + 64], ch[1024];
		size_t bl;
		if ((bl = noport(n, buf, sizeof buf))) add_form(f, buf, bl);
		/* the host as a browser reads it: other dots, controls, IDN */
		size_t hl = strcspn(h, "/?#");
		char *at = memchr(h, '@', hl);
		const char *hs = at ? at + 1 : h;
		size_t hsl = hl - (size_t)(hs - h), hp = strcspn(hs, ":");
		if (hp > hsl) hp = hsl;
		size_t cl = clean_host(hs, hp, ch, sizeof ch);
		if (cl && strlen(n) + cl < sizeof buf) {
			size_t pre = (size_t)(hs - n);
			memcpy(buf, n, pre);
			memcpy(buf + pre, ch, cl);
			strcpy(buf + pre + cl, hs + hp);
			add_form(f, buf, strlen(buf));
			if ((bl = noport(buf, ch, sizeof ch))) add_form(f, ch, bl);
			char *c2 = strdup(buf);
			if (!c2) abort();
			free(n);
			n = c2;
			h = n + plen;
			hl = strcspn(h, "/?#");
		}
		at = memchr(h, '@', hl);
		const char *host = at ? at + 1 : h;
		size_t hostlen = hl - (size_t)(host - h);
		size_t portpos = strcspn(host, ":");
		if (portpos > hostlen) portpos = hostlen;
		const char *rest = host + portpos;
		if (at && plen + strlen(host) < sizeof buf) {              /* without user@ */
			memcpy(buf, n, plen);
			strcpy(buf + plen, host);
			add_form(f, buf, strlen(buf));
		}
		size_t hn = portpos;
		while (hn > 0 && !isalnum((unsigned char)host[hn - 1])) hn--;
		if (hn < portpos && plen + hn + strlen(rest) < sizeof buf) { /* trailing punctuation off */
			memcpy(buf, n, plen);
			memcpy(buf + plen, host, hn);
			strcpy(buf + plen + hn, rest);
			add_form(f, buf, strlen(buf));
		}
		char quad[64];                                             /* 3325256784, 0xc6.0x33.0x64.0x50 */
		if (ip_quad(host, hn, quad, sizeof quad) && plen + strlen(quad) + strlen(rest) < sizeof buf) {
			memcpy(buf, n, plen);
			strcpy(buf + plen, quad);
			strcat(buf, rest);
			add_form(f, buf, strlen(buf));
		}
		size_t bare = bare_host(rs, n, at != NULL, host, hn, portpos, buf, sizeof buf);
		if (bare) add_form(f, buf, bare);
		if (plen + portpos < sizeof buf) {
			memcpy(buf, n, plen);
			memcpy(buf + plen, host, portpos);
			buf[plen + portpos] = '\0';
			char *full = malloc(strlen(buf) + strlen(rest) + 1);
			if (!full) abort();
			strcpy(full, buf);
			strcat(full, rest);
			redirect(rs, md, f, full, rest, depth);
			free(full);
		}
	}
	free(n);
}

struct rules_uri_set {
	size_t nuris;
	size_t *first;              /* uris[i]'s forms: forms[first[i] .. first[i + 1]) */
	char **forms;
};

struct rules_uri_set *rules_uri_set_new(const struct ruleset *rs, const char *const *uris, size_t n)
{
	struct rules_uri_set *set = calloc(1, sizeof *set);
	/* redirector_pattern captures need an ovector past the whole match */
	pcre2_match_data *md = rs && rs->nredirectors ? pcre2_match_data_create(16, NULL) : NULL;
	size_t cap = n * 4 + 1, nforms = 0;
	if (!set || (rs && rs->nredirectors && !md)) abort();
	set->nuris = n;
	set->first = malloc((n + 1) * sizeof *set->first);
	set->forms = malloc(cap * sizeof *set->forms);
	if (!set->first || !set->forms) abort();
	for (size_t i = 0; i < n; i++) {
		struct forms f = { .n = 0 };
		canon(rs, md, &f, uris[i], 0);
		if (nforms + f.n > cap) {
			cap = (nforms + f.n) * 2;
			set->forms = realloc(set->forms, cap * sizeof *set->forms);
			if (!set->forms) abort();
		}
		set->first[i] = nforms;
		memcpy(set->forms + nforms, f.v, f.n * sizeof *f.v);
		nforms += f.n;
	}
	set->first[n] = nforms;
	if (md) pcre2_match_data_free(md);
	return set;
}

const char *const *rules_uri_set_forms(const struct rules_uri_set *set, size_t i, size_t *nforms)
{
	if (!set || i >= set->nuris) { *nforms = 0; return NULL; }
	*nforms = set->first[i + 1] - set->first[i];
	return (const char *const *)set->forms + set->first[i];
}

void rules_uri_set_free(struct rules_uri_set *set)
{
	if (!set) return;
	for (size_t i = 0; i < set->first[set->nuris]; i++) free(set->forms[i]);
	free(set->forms);
	free(set->first);
	free(set);
}

size_t rules_uri_canon(const char *uri, char ***out)
{
	struct forms f = { .n = 0 };
	canon(NULL, NULL, &f, uri, 0);
	*out = malloc((f.n + 1) * sizeof **out);
	if (!*out) abort();
	memcpy(*out, f.v, f.n * sizeof *f.v);
	return f.n;
}

void rules_uri_forms_free(char **forms, size_t n)
{
	for (size_t i = 0; i < n; i++) free(forms[i]);
	free(forms);
}

int rules_uri_host(const char *uri, char *out, size_t outlen)
{
	const char *p = strstr(uri, "://");
	if (!p) return -1;
	const char *h = p + 3;
	size_t n = strcspn(h, "/?#");
	const char *at = memchr(h, '@', n);
	while (at) { n -= (size_t)(at + 1 - h); h = at + 1; at = memchr(h, '@', n); }
	if (*h == '[') {
		const char *e = memchr(h, ']', n);
		if (!e) return -1;
		h++;
		n = (size_t)(e - h);
	} else {
		const char *colon = memchr(h, ':', n);
		if (colon) n = (size_t)(colon - h);
	}
	while (n && h[n - 1] == '.') n--;
	while (n && *h == '.') { h++; n--; }
	if (!n || n >= outlen) return -1;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = (char)tolower((unsigned char)h[i]);
		if (ch == '.' && o && out[o - 1] == '.') continue;     /* www..x.com */
		if (!isalnum((unsigned char)ch) && ch != '.' && ch != '-' && ch != '_' && ch != ':') return -1;
		out[o++] = ch;
	}
	out[o] = '\0';
	return 0;
}

static uint64_t fnv64(uint64_t h, const char *s)
{
	for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* a domain's order inside the class that does not fit: pseudo-random (as
 * SpamAssassin's rand), seeded by the message */
static uint64_t uri_rank(uint64_t seed, const char *dom)
{
	uint64_t x = fnv64(seed, dom);              /* then splitmix64's finalizer */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

int rules_uri_mailto_host(const char *uri, char *out, size_t outlen)
{
	const char *at;
	size_t n;
	if (strncasecmp(uri, "mailto:", 7) != 0 || !(at = strrchr(uri, '@'))) return -1;
	n = strcspn(at + 1, "?>&,; \t");
	while (n && at[n] == '.') n--;              /* "x@example.com." */
	if (!n || n >= outlen) return -1;
	for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)at[1 + i]);
	out[n] = '\0';
	return 0;
}

struct pick_ent { const char *dom; size_t idx; };
struct pick_grp { size_t first; unsigned cls; uint64_t rank; int chosen; };

static int ent_by_dom(const void *a, const void *b)
{
	const struct pick_ent *x = a, *y = b;
	int c = strcmp(x->dom, y->dom);
	return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

static int grp_by_first(const void *a, const void *b)
{
	const struct pick_grp *x = *(struct pick_grp *const *)a, *y = *(struct pick_grp *const *)b;
	return (x->first > y->first) - (x->first < y->first);
}

static int grp_by_rank(const void *a, const void *b)
{
	const struct pick_grp *x = *(struct pick_grp *const *)a, *y = *(struct pick_grp *const *)b;
	if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
	return (x->first > y->first) - (x->first < y->first);
}

uint64_t rules_uri_seed(const char *const *uris, size_t n)
{
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < n; i++)
		if (strncasecmp(uris[i], "mailto:", 7) != 0) h = fnv64(fnv64(h, uris[i]), "\n");
	return h;
}

size_t rules_uri_pick(const char *const *dom, const unsigned *cls, size_t n, size_t max, uint64_t seed,
                      unsigned char *picked)
{
	if (!n) return 0;
	struct pick_ent *e = malloc(n * sizeof *e);
	struct pick_grp *g = malloc(n * sizeof *g), **order = malloc(n * sizeof *order), **cand = malloc(n * sizeof *cand);
	size_t *gid = malloc(n * sizeof *gid), ng = 0, npicked = 0;
	if (!e || !g || !order || !cand || !gid) abort();
	/* each domain once: its first entry, the best class of its entries */
	for (size_t i = 0; i < n; i++) e[i] = (struct pick_ent){ dom[i], i };
	qsort(e, n, sizeof *e, ent_by_dom);
	for (size_t i = 0; i < n; i++) {
		if (!i || strcmp(e[i].dom, e[i - 1].dom) != 0)
			g[ng++] = (struct pick_grp){ .first = e[i].idx, .cls = RULES_URI_CLASSES };
		struct pick_grp *cur = &g[ng - 1];
		if (cls[e[i].idx] < cur->cls) cur->cls = cls[e[i].idx];
		gid[e[i].idx] = ng - 1;
	}
	for (size_t k = 0; k < ng; k++) order[k] = &g[k];
	qsort(order, ng, sizeof *order, grp_by_first);
	for (unsigned c = 0; c < RULES_URI_CLASSES && npicked < max; c++) {
		size_t nc = 0;
		for (size_t k = 0; k < ng; k++)
			if (order[k]->cls == c) cand[nc++] = order[k];
		if (npicked + nc > max) {               /* the class that does not fit */
			for (size_t k = 0; k < nc; k++) cand[k]->rank = uri_rank(seed, dom[cand[k]->first]);
			qsort(cand, nc, sizeof *cand, grp_by_rank);
		}
		for (size_t k = 0; k < nc && npicked < max; k++, npicked++) cand[k]->chosen = 1;
	}
	for (size_t i = 0; i < n; i++) picked[i] = (unsigned char)g[gid[i]].chosen;
	free(e); free(g); free(order); free(cand); free(gid);
	return npicked;
}
