/* uri.c - the forms of one URI that uri rules are matched against, as
 * SpamAssassin's uri_list_canonicalize makes them: backslashes as slashes,
 * "http:x" as "http://x", a scheme for schemeless "www." links, "/" before
 * a bare "?" or "#", the host without "user@" or trailing punctuation, and
 * the target of a redirector (redirector_pattern directives first, then
 * any "http://" inside the path), itself canonicalized.  Mail addresses
 * are left as they are. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "rules/rules_int.h"

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
	for (size_t i = 0; i < rs->nredirectors; i++) {
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

static void canon(const struct ruleset *rs, pcre2_match_data *md, struct forms *f, const char *uri, int depth)
{
	size_t len = strlen(uri);
	if (len == 0 || len > MAX_URI_LEN) return;
	add_form(f, uri, len);
	if (strncasecmp(uri, "mailto:", 7) == 0 || (strchr(uri, '@') && !strchr(uri, ':'))) return;
	char *n = malloc(len + 16);
	if (!n) abort();
	size_t j = 0;
	const char *s = uri;
	/* scheme: http:x or http:/x -> http://x; none -> http:// (ftp. -> ftp://) */
	size_t sch = 0;
	while (isalnum((unsigned char)s[sch]) || s[sch] == '-' || s[sch] == '_') sch++;
	if (s[sch] == ':' && sch > 0) {
		int web = (sch == 4 && strncasecmp(s, "http", 4) == 0) || (sch == 5 && strncasecmp(s, "https", 5) == 0);
		memcpy(n, s, sch + 1);
		j = sch + 1;
		s += sch + 1;
		if (web) {
			while (*s == '/' || *s == '\\') s++;
			n[j++] = '/';
			n[j++] = '/';
		}
	} else {
		const char *pfx = strncasecmp(s, "ftp.", 4) == 0 ? "ftp://" : "http://";
		memcpy(n, pfx, strlen(pfx));
		j = strlen(pfx);
	}
	for (; *s; s++) n[j++] = *s == '\\' ? '/' : *s;
	n[j] = '\0';
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
	add_form(f, n, strlen(n));
	/* host parts */
	if (strncasecmp(n, "http://", 7) == 0 || strncasecmp(n, "https://", 8) == 0) {
		char *h = strstr(n, "://") + 3;
		size_t plen = (size_t)(h - n);
		size_t hl = strcspn(h, "/?#");
		char *at = memchr(h, '@', hl);
		const char *host = at ? at + 1 : h;
		size_t hostlen = hl - (size_t)(host - h);
		size_t portpos = strcspn(host, ":");
		if (portpos > hostlen) portpos = hostlen;
		const char *rest = host + portpos;
		char buf[MAX_URI_LEN + 64];
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

size_t rules_uri_forms(const struct ruleset *rs, pcre2_match_data *md, const char *uri, char ***out)
{
	struct forms f = { .n = 0 };
	canon(rs, md, &f, uri, 0);
	*out = malloc((f.n + 1) * sizeof **out);
	if (!*out) abort();
	memcpy(*out, f.v, f.n * sizeof *f.v);
	return f.n;
}
