/* mime.c - the one MIME parse of a message (mime.h), with GMime 3.
 *
 * The message is parsed once, on the first mime_get() of any filter, and
 * the result is kept in the struct msgscan of that message (ms->mime, freed
 * with it by msgscan_free), so every later filter reads the same parse.
 * What GMime builds is copied out into plain C strings and buffers and the
 * GMime objects are dropped at once: readers never touch GObjects, and the
 * parse is read-only afterwards.
 *
 * Everything is bounded (MIME_MAX_*): the leaves listed, the nesting walked,
 * the decoded bytes kept, the URIs collected.  GMime itself refuses MIME
 * nesting past its own limit (GMIME_CRIT_NESTING_OVERFLOW).  Any structural
 * complaint of the parser, or a limit reached, sets parse_error; a limit
 * that leaves parts unwalked, or a part's content cut, sets incomplete too.  What GMime builds is
 * bounded before it parses (struct_cut): it makes objects of every part and
 * header field, so a few MB of tiny parts or header lines would cost GBs.
 *
 * GMime: g_mime_init() once per process (pthread_once); every object here
 * (parser, its options, streams) belongs to this call on this thread.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <gmime/gmime.h>
#include <libpsl.h>

#include "filters/filter_api.h"
#include "filters/mime.h"
#include "filters/mime_bare.h"
#include "filters/mime_base64.h"
#include "filters/mime_qp.h"
#include "filters/mime_gmime.h"

/* private: the public struct plus what it owns */
struct mime_store {
	struct mime_msg pub;
	size_t      cap_parts;
	size_t      cap_msgs;
	size_t      cap_uris;
	size_t      decoded;          /* bytes of content as decoded (raw) kept so far */
	size_t      converted;        /* bytes of text converted to UTF-8 kept so far
	                               * (the copies that differ from raw) */
	GHashTable *uri_seen;         /* dedup while building; NULL afterwards */
	GHashTable *uri_doms;         /* registrable domain (owned) -> URIs of it kept;
	                               * while building, NULL afterwards */
	size_t      uri_budget[2];    /* URIs kept: [0] links (anchor, form), [1] the rest */
	size_t      bare_looks;       /* schemeless hosts and addresses looked at */
	GHashTable *uri_keys;         /* host -> its uri_domain_key (both owned), at most
	                               * URI_KEYS_MAX: libpsl costs 0.4 us a URI, and
	                               * decoys are many URIs of few hosts; building only */
	GMimeParserOptions *opts;     /* for fields parsed again; during the walk only */
	struct mime_files *files;     /* files encoded in text parts, on first use */
};

_Static_assert(offsetof(struct mime_store, pub) == 0, "a parse is its mime_store");

struct mime_files **mime_files_slot(const struct mime_msg *m)
{
	/* the memo is made after the parse, which readers see as const */
	struct mime_store *st = (struct mime_store *)(uintptr_t)m;

	return &st->files;
}

static pthread_once_t gmime_once = PTHREAD_ONCE_INIT;

static void gmime_setup(void)
{
	g_mime_init();
}

/* ------------------------------------------------------------------ */
/* growing arrays                                                       */

static struct mime_part *part_new(struct mime_store *st)
{
	struct mime_part *p;

	if (st->pub.nparts == st->cap_parts) {
		size_t n = st->cap_parts ? st->cap_parts * 2 : 8;

		st->pub.parts = g_realloc_n(st->pub.parts, n, sizeof(*st->pub.parts));
		st->cap_parts = n;
	}
	p = &st->pub.parts[st->pub.nparts++];
	memset(p, 0, sizeof(*p));
	return p;
}

/* msg_new - one more message in pub.msgs (its fields the caller's) */
static size_t msg_new(struct mime_store *st, long long offset, size_t parent, unsigned depth,
                      char *filename)
{
	struct mime_message *m;

	if (st->pub.nmsgs == st->cap_msgs) {
		st->cap_msgs = st->cap_msgs ? st->cap_msgs * 2 : 4;
		st->pub.msgs = g_renew(struct mime_message, st->pub.msgs, st->cap_msgs);
	}
	m = &st->pub.msgs[st->pub.nmsgs];
	m->offset = offset;
	m->parent = parent;
	m->depth = depth;
	m->filename = filename;
	return st->pub.nmsgs++;
}

/* incomplete - the parse stops short of some parts; the first reason is kept */
static void incomplete(struct mime_store *st, const char *why)
{
	if (st->pub.incomplete == NULL)
		st->pub.incomplete = why;
}

#define URI_KEYS_MAX 4096
static const psl_ctx_t *uri_psl;      /* libpsl's builtin list: static, read-only */
/* U+3002, U+FF0E, U+FF61, U+FE52, U+2024 in UTF-8 */
static const char uri_dots[][4] = { "\xe3\x80\x82", "\xef\xbc\x8e", "\xef\xbd\xa1", "\xef\xb9\x92",
                                    "\xe2\x80\xa4" };

static void uri_psl_setup(void)
{
	uri_psl = psl_builtin();
}

/* uri_domain_key - the registrable domain of u's host (libpsl; else its
 * last two labels), lower case, %XX decoded, into out: what decides
 * whether a URI opens a domain not seen yet.  Read roughly as a browser
 * reads it (any "scheme:" and slashes or backslashes, userinfo, port);
 * a key only, never looked up.  "" when there is no host. */
static void uri_domain_key(struct mime_store *st, const char *u, char *out, size_t outsz)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	char host[256];
	const char *p = u, *end, *at, *reg;
	size_t n = 0;

	out[0] = '\0';
	if (g_ascii_strncasecmp(p, "mailto:", 7) == 0) {
		p += 7;
		end = p + strcspn(p, "?#");
		at = NULL;
		for (const char *q = p; q < end; q++)
			if (*q == '@')
				at = q;
		if (at == NULL)
			return;
		p = at + 1;
	} else {
		const char *colon = strchr(p, ':');

		if (colon != NULL && colon - p < 16 && strspn(p, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-") == (size_t)(colon - p))
			p = colon + 1;
		p += strspn(p, "/\\");
		end = p + strcspn(p, "/\\?#");
		for (const char *q = p; q < end; q++)
			if (*q == '@')
				p = q + 1;
	}
	end = p + strcspn(p, "/\\?#:>");
	for (; p < end && n + 1 < sizeof(host); p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '%' && end - p >= 3 && g_ascii_isxdigit(p[1]) && g_ascii_isxdigit(p[2])) {
			c = (unsigned char)(g_ascii_xdigit_value(p[1]) * 16 + g_ascii_xdigit_value(p[2]));
			p += 2;
		} else if (c >= 0xe2 && end - p >= 3)
			/* the Unicode dots a browser reads as "." (rules/uri.c) */
			for (size_t d = 0; d < sizeof(uri_dots) / sizeof(uri_dots[0]); d++)
				if (memcmp(p, uri_dots[d], 3) == 0) {
					c = '.';
					p += 2;
					break;
				}
		if (c < ' ' || c == 0x7f)
			continue;        /* line breaks and controls: dropped, as browsers do */
		host[n++] = (char)g_ascii_tolower((gchar)c);
	}
	host[n] = '\0';
	/* what %XX decodes to counts as written: userinfo ends at the last
	 * '@', a delimiter ends the host (otherwise each "%40<n>" or "%2F<n>"
	 * would make one more domain) */
	if ((at = strrchr(host, '@')) != NULL)
		memmove(host, at + 1, strlen(at + 1) + 1);
	n = strcspn(host, "/\\?#: ");
	while (n > 0 && host[n - 1] == '.')
		n--;
	host[n] = '\0';
	if (n == 0)
		return;
	if ((reg = g_hash_table_lookup(st->uri_keys, host)) != NULL) {
		g_strlcpy(out, reg, outsz);
		return;
	}
	pthread_once(&once, uri_psl_setup);
	reg = uri_psl != NULL && g_utf8_validate(host, -1, NULL) ? psl_registrable_domain(uri_psl, host) : NULL;
	if (reg == NULL) {
		/* no public suffix known: the last two labels */
		reg = host + n;
		for (int dots = 0; reg > host; reg--)
			if (reg[-1] == '.' && ++dots == 2)
				break;
	}
	g_strlcpy(out, reg, outsz);
	if (g_hash_table_size(st->uri_keys) < URI_KEYS_MAX)
		g_hash_table_insert(st->uri_keys, g_strdup(host), g_strdup(out));
}

/* uri_add - keep one URI (trimmed copy), unless seen or over the caps;
 * one seen again keeps the most link-like kind it appeared as.
 *
 * The caps must not let decoys crowd a link out: 1000 URIs of one clean
 * domain in a text part (or 1000 one-pixel images) before the <a href>
 * used to fill MIME_MAX_URIS in message order, and the link was in no URI
 * list (dnsbl, the rules' uridnsbl, uri rules).  So links (anchors, form
 * actions) have a budget of their own that images, other markup and text
 * never use, and the last MIME_URI_NEW_DOMAIN of each budget takes only
 * URIs of a registrable domain not seen before in the message: to crowd a
 * link out takes that many distinct domains of links, more than the lists
 * are asked about anyway (dnsbl_max_domains, chosen by the message). */
static void uri_add(struct mime_store *st, const char *u, size_t n, enum mime_uri_kind kind)
{
	char *s, key[256];
	gpointer at;
	size_t *budget;
	int new_domain;

	while (n > 0 && (unsigned char)u[0] <= ' ') {
		u++;
		n--;
	}
	while (n > 0 && (unsigned char)u[n - 1] <= ' ')
		n--;
	if (n == 0 || n > MIME_MAX_URI_LEN)
		return;
	s = g_strndup(u, n);
	if ((at = g_hash_table_lookup(st->uri_seen, s)) != NULL) {
		size_t i = GPOINTER_TO_SIZE(at) - 1;

		if (kind < st->pub.uri_kinds[i])
			st->pub.uri_kinds[i] = (unsigned char)kind;
		g_free(s);
		return;
	}
	if (memchr(s, '\0', n) != NULL || !g_utf8_validate(s, -1, NULL)) {
		g_free(s);
		return;
	}
	budget = &st->uri_budget[kind == MIME_URI_ANCHOR || kind == MIME_URI_FORM ? 0 : 1];
	uri_domain_key(st, s, key, sizeof(key));
	new_domain = g_hash_table_lookup(st->uri_doms, key) == NULL;
	if (*budget >= MIME_MAX_URIS || (!new_domain && *budget >= MIME_MAX_URIS - MIME_URI_NEW_DOMAIN)) {
		st->pub.uris_truncated = 1;
		st->pub.uris_dropped++;
		g_free(s);
		return;
	}
	if (new_domain)
		g_hash_table_insert(st->uri_doms, g_strdup(key), GSIZE_TO_POINTER(1));
	(*budget)++;
	if (st->pub.nuris == st->cap_uris) {
		size_t c = st->cap_uris ? st->cap_uris * 2 : 16;

		st->pub.uris = g_realloc_n(st->pub.uris, c, sizeof(*st->pub.uris));
		st->pub.uri_kinds = g_realloc_n(st->pub.uri_kinds, c, sizeof(*st->pub.uri_kinds));
		st->cap_uris = c;
	}
	g_hash_table_insert(st->uri_seen, s, GSIZE_TO_POINTER(st->pub.nuris + 1));
	st->pub.uri_kinds[st->pub.nuris] = (unsigned char)kind;
	st->pub.uris[st->pub.nuris++] = s;   /* owned by uris[]; the table's keys borrow it */
}

/* ------------------------------------------------------------------ */
/* bare URIs in text                                                    */

static int uri_char(unsigned char c)
{
	/* what may continue a URI in running text: not space, controls,
	 * quotes or angle brackets */
	return c > ' ' && c != '"' && c != '<' && c != '>' && c != '\'' && c != '`' &&
	       c != '{' && c != '}' && c != '|' && c != '\\' && c != '^' && c != 0x7f;
}

/* text_bare - a mail address around an '@' at t[*i], or a schemeless
 * host starting there (mime_bare.h), kept as mailto:addr or
 * http://host/path when its top-level domain is a real one, as
 * SpamAssassin's _process_text_uri_list keeps them, a path cut where the
 * URI reaches MIME_MAX_URI_LEN; *i moved past it.  At most
 * MIME_MAX_BARE_LOOKS of them in a message (bare_stopped). */
static void text_bare(struct mime_store *st, const char *t, size_t len, size_t *i)
{
	size_t a, b, n, hl, max;
	const char *scheme;
	char *u;

	if (t[*i] == '@') {
		if ((b = mime_bare_addr(t, len, *i, &a)) == 0) {
			(*i)++;
			return;
		}
		if (st->bare_looks >= MIME_MAX_BARE_LOOKS) {
			st->pub.bare_stopped = 1;
			*i = b;
			return;
		}
		st->bare_looks++;
		if (mime_bare_tld_ok(t + *i + 1, b - *i - 1)) {
			u = g_strdup_printf("mailto:%.*s", (int)(b - a), t + a);
			uri_add(st, u, strlen(u), MIME_URI_TEXT);
			g_free(u);
		}
		*i = b;
		return;
	}
	if ((n = mime_bare_host(t, len, *i, &hl)) == 0) {
		(*i)++;
		return;
	}
	/* the URI, with its scheme, fits MIME_MAX_URI_LEN (uri_add drops
	 * longer ones): a long path cannot hide its host */
	scheme = g_ascii_strncasecmp(t + *i, "ftp.", 4) == 0 ? "ftp://" : "http://";
	max = MIME_MAX_URI_LEN - strlen(scheme);
	if (st->bare_looks >= MIME_MAX_BARE_LOOKS) {
		st->pub.bare_stopped = 1;
		*i += mime_bare_uri_len(t, len, *i, n, max);
		return;
	}
	st->bare_looks++;
	/* the top-level domain before the path is read: "a.zz/a.zz/..."
	 * had each candidate's path read to the end of the word */
	if (!mime_bare_tld_ok(t + *i, hl)) {
		/* "file.txt/x.com": the path may hold a host of its own */
		(*i)++;
		return;
	}
	n = mime_bare_uri_len(t, len, *i, n, max);
	u = g_strdup_printf("%s%.*s", scheme, (int)n, t + *i);
	uri_add(st, u, strlen(u), MIME_URI_TEXT);
	g_free(u);
	*i += n;
}

/* text_uris - http://, https:// and www. in text; www.x becomes
 * http://www.x; schemeless hosts and mail addresses (text_bare) */
static void text_uris(struct mime_store *st, const char *t, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t start = i, end, skip;
		int www = 0;

		if ((t[i] == 'h' || t[i] == 'H') && len - i >= 8 &&
		    (g_ascii_strncasecmp(t + i, "http://", 7) == 0 ||
		     g_ascii_strncasecmp(t + i, "https://", 8) == 0))
			skip = t[i + 4] == ':' ? 7 : 8;
		else if ((t[i] == 'w' || t[i] == 'W') && len - i >= 5 &&
		    g_ascii_strncasecmp(t + i, "www.", 4) == 0 &&
		    (i == 0 || !(g_ascii_isalnum(t[i - 1]) || t[i - 1] == '.' ||
		                 t[i - 1] == '/' || t[i - 1] == '-' || t[i - 1] == '@'))) {
			skip = 4;
			www = 1;
		} else {
			text_bare(st, t, len, &i);
			continue;
		}
		end = start + skip;
		while (end < len && uri_char((unsigned char)t[end]))
			end++;
		/* sentence punctuation after a URI is not part of it */
		while (end > start + skip && strchr(".,;:!?)]*", t[end - 1]) != NULL)
			end--;
		if (end > start + skip && (!www || g_ascii_isalnum(t[start + skip]))) {
			if (www) {
				char *w = g_strdup_printf("http://%.*s", (int)(end - start), t + start);

				uri_add(st, w, strlen(w), MIME_URI_TEXT);
				g_free(w);
			} else
				uri_add(st, t + start, end - start, MIME_URI_TEXT);
		}
		i = end > i ? end : i + 1;
	}
}

/* ------------------------------------------------------------------ */
/* HTML rendering                                                       */

struct entity {
	const char *name;
	unsigned    cp;
};

/* The HTML 4 entities mail actually uses (Latin-1, typographic, symbols);
 * numeric references cover the rest. */
static const struct entity entities[] = {
	{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "apos", '\'' },
	{ "nbsp", 0xa0 }, { "iexcl", 0xa1 }, { "cent", 0xa2 }, { "pound", 0xa3 },
	{ "curren", 0xa4 }, { "yen", 0xa5 }, { "brvbar", 0xa6 }, { "sect", 0xa7 },
	{ "uml", 0xa8 }, { "copy", 0xa9 }, { "ordf", 0xaa }, { "laquo", 0xab },
	{ "not", 0xac }, { "shy", 0xad }, { "reg", 0xae }, { "macr", 0xaf },
	{ "deg", 0xb0 }, { "plusmn", 0xb1 }, { "sup2", 0xb2 }, { "sup3", 0xb3 },
	{ "acute", 0xb4 }, { "micro", 0xb5 }, { "para", 0xb6 }, { "middot", 0xb7 },
	{ "cedil", 0xb8 }, { "sup1", 0xb9 }, { "ordm", 0xba }, { "raquo", 0xbb },
	{ "frac14", 0xbc }, { "frac12", 0xbd }, { "frac34", 0xbe }, { "iquest", 0xbf },
	{ "Agrave", 0xc0 }, { "Aacute", 0xc1 }, { "Acirc", 0xc2 }, { "Atilde", 0xc3 },
	{ "Auml", 0xc4 }, { "Aring", 0xc5 }, { "AElig", 0xc6 }, { "Ccedil", 0xc7 },
	{ "Egrave", 0xc8 }, { "Eacute", 0xc9 }, { "Ecirc", 0xca }, { "Euml", 0xcb },
	{ "Igrave", 0xcc }, { "Iacute", 0xcd }, { "Icirc", 0xce }, { "Iuml", 0xcf },
	{ "ETH", 0xd0 }, { "Ntilde", 0xd1 }, { "Ograve", 0xd2 }, { "Oacute", 0xd3 },
	{ "Ocirc", 0xd4 }, { "Otilde", 0xd5 }, { "Ouml", 0xd6 }, { "times", 0xd7 },
	{ "Oslash", 0xd8 }, { "Ugrave", 0xd9 }, { "Uacute", 0xda }, { "Ucirc", 0xdb },
	{ "Uuml", 0xdc }, { "Yacute", 0xdd }, { "THORN", 0xde }, { "szlig", 0xdf },
	{ "agrave", 0xe0 }, { "aacute", 0xe1 }, { "acirc", 0xe2 }, { "atilde", 0xe3 },
	{ "auml", 0xe4 }, { "aring", 0xe5 }, { "aelig", 0xe6 }, { "ccedil", 0xe7 },
	{ "egrave", 0xe8 }, { "eacute", 0xe9 }, { "ecirc", 0xea }, { "euml", 0xeb },
	{ "igrave", 0xec }, { "iacute", 0xed }, { "icirc", 0xee }, { "iuml", 0xef },
	{ "eth", 0xf0 }, { "ntilde", 0xf1 }, { "ograve", 0xf2 }, { "oacute", 0xf3 },
	{ "ocirc", 0xf4 }, { "otilde", 0xf5 }, { "ouml", 0xf6 }, { "divide", 0xf7 },
	{ "oslash", 0xf8 }, { "ugrave", 0xf9 }, { "uacute", 0xfa }, { "ucirc", 0xfb },
	{ "uuml", 0xfc }, { "yacute", 0xfd }, { "thorn", 0xfe }, { "yuml", 0xff },
	{ "OElig", 0x152 }, { "oelig", 0x153 }, { "Scaron", 0x160 }, { "scaron", 0x161 },
	{ "Yuml", 0x178 }, { "fnof", 0x192 }, { "circ", 0x2c6 }, { "tilde", 0x2dc },
	{ "ensp", 0x2002 }, { "emsp", 0x2003 }, { "thinsp", 0x2009 }, { "zwnj", 0x200c },
	{ "zwj", 0x200d }, { "lrm", 0x200e }, { "rlm", 0x200f }, { "ndash", 0x2013 },
	{ "mdash", 0x2014 }, { "lsquo", 0x2018 }, { "rsquo", 0x2019 }, { "sbquo", 0x201a },
	{ "ldquo", 0x201c }, { "rdquo", 0x201d }, { "bdquo", 0x201e }, { "dagger", 0x2020 },
	{ "Dagger", 0x2021 }, { "bull", 0x2022 }, { "hellip", 0x2026 }, { "permil", 0x2030 },
	{ "prime", 0x2032 }, { "Prime", 0x2033 }, { "lsaquo", 0x2039 }, { "rsaquo", 0x203a },
	{ "euro", 0x20ac }, { "trade", 0x2122 }, { "larr", 0x2190 }, { "uarr", 0x2191 },
	{ "rarr", 0x2192 }, { "darr", 0x2193 }, { "harr", 0x2194 }, { "minus", 0x2212 },
	{ "le", 0x2264 }, { "ge", 0x2265 }, { "ne", 0x2260 }, { "infin", 0x221e },
	{ "hearts", 0x2665 }, { "spades", 0x2660 }, { "clubs", 0x2663 }, { "diams", 0x2666 },
	{ "check", 0x2713 }, { "star", 0x2606 },
	{ NULL, 0 }
};

/* entity_decode - the reference at s[0] == '&'; the code point and the
 * bytes used, or 0 if it is not a reference (the '&' is then literal). */
static size_t entity_decode(const char *s, size_t len, unsigned *cp)
{
	size_t i = 1;

	if (len >= 3 && s[1] == '#') {
		unsigned long v = 0;
		int hex = (s[2] == 'x' || s[2] == 'X'), digits = 0;

		i = hex ? 3 : 2;
		for (; i < len && digits < 8; i++, digits++) {
			int d;

			if (g_ascii_isdigit(s[i]))
				d = s[i] - '0';
			else if (hex && g_ascii_isxdigit(s[i]))
				d = g_ascii_xdigit_value(s[i]);
			else
				break;
			v = v * (hex ? 16 : 10) + (unsigned long)d;
		}
		if (digits == 0)
			return 0;
		if (i < len && s[i] == ';')
			i++;
		/* invalid code points render as U+FFFD, as browsers do */
		if (v == 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
			v = 0xfffd;
		*cp = (unsigned)v;
		return i;
	}
	while (i < len && i <= 8 && g_ascii_isalnum(s[i]))
		i++;
	if (i > 1) {
		size_t k, n = i - 1;

		for (k = 0; entities[k].name != NULL; k++)
			if (strlen(entities[k].name) == n && memcmp(entities[k].name, s + 1, n) == 0) {
				*cp = entities[k].cp;
				return i < len && s[i] == ';' ? i + 1 : i;
			}
	}
	return 0;
}

/* the renderer's output: visible text with whitespace collapsed */
struct render {
	GString *out;
	int      space;              /* a space is pending */
	int      newline;            /* a line break is pending */
};

static void put_break(struct render *r, int nl)
{
	if (nl)
		r->newline = 1;
	else
		r->space = 1;
}

static void put_text(struct render *r, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f') {
			r->space = 1;
			continue;
		}
		if (r->out->len > 0) {
			if (r->newline)
				g_string_append_c(r->out, '\n');
			else if (r->space)
				g_string_append_c(r->out, ' ');
		}
		r->space = r->newline = 0;
		g_string_append_c(r->out, (char)c);
	}
}

static void put_cp(struct render *r, unsigned cp)
{
	char u[8];
	int n;

	if (cp == 0xa0) {             /* a no-break space reads as a space */
		r->space = 1;
		return;
	}
	n = g_unichar_to_utf8(cp, u);
	put_text(r, u, (size_t)n);
}

/* tags whose start or end breaks the line, as a browser (and SpamAssassin's
 * renderer) puts them on a line of their own */
static int tag_breaks(const char *name)
{
	static const char *const blocks[] = {
		"br", "p", "div", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4",
		"h5", "h6", "hr", "blockquote", "pre", "dt", "dd", "dl", "center", "form",
		"title", "address", "section", "article", "header", "footer", "body", NULL
	};
	size_t i;

	for (i = 0; blocks[i] != NULL; i++)
		if (strcmp(name, blocks[i]) == 0)
			return 1;
	return 0;
}

/* attr_value - decode an attribute value (entities) into a new string */
static char *attr_value(const char *v, size_t n)
{
	GString *s = g_string_sized_new(n);
	size_t i = 0;

	while (i < n) {
		unsigned cp;
		size_t used;

		if (v[i] == '&' && (used = entity_decode(v + i, n - i, &cp)) > 0) {
			char u[8];

			g_string_append_len(s, u, g_unichar_to_utf8(cp, u));
			i += used;
		} else
			g_string_append_c(s, v[i++]);
	}
	return g_string_free(s, FALSE);
}

/* uri_kind - what an href/src/action/background attribute (an, anl
 * bytes) of the tag name is to a reader: a link, a form, an image */
static enum mime_uri_kind uri_kind(const char *name, const char *an, size_t anl)
{
	if (anl == 10)                                       /* background */
		return MIME_URI_IMAGE;
	if (anl == 4 && (strcmp(name, "a") == 0 || strcmp(name, "area") == 0))
		return MIME_URI_ANCHOR;
	if (anl == 6 && strcmp(name, "form") == 0)
		return MIME_URI_FORM;
	if (anl == 3 && (strcmp(name, "img") == 0 || strcmp(name, "input") == 0))
		return MIME_URI_IMAGE;
	return MIME_URI_OTHER;
}

/* tag - parse the tag at h[0] == '<' (name, attributes); returns the
 * bytes it spans.  Lower-case name into name[]; closing in *closing.
 * Links (href, src, action, background) go to the URI list. */
static size_t tag(struct mime_store *st, const char *h, size_t len, char *name,
                  size_t namesz, int *closing)
{
	size_t i = 1, n = 0;
	char quote = 0;

	*closing = 0;
	if (i < len && h[i] == '/') {
		*closing = 1;
		i++;
	}
	while (i < len && (g_ascii_isalnum(h[i]) || h[i] == '-' || h[i] == ':')) {
		if (n + 1 < namesz)
			name[n++] = g_ascii_tolower(h[i]);
		i++;
	}
	name[n] = '\0';
	/* attributes: name[=value], value quoted or not */
	while (i < len && h[i] != '>') {
		size_t an = i, anl, vs, vl;

		if (g_ascii_isspace(h[i]) || h[i] == '/') {
			i++;
			continue;
		}
		while (i < len && !g_ascii_isspace(h[i]) && h[i] != '=' && h[i] != '>')
			i++;
		anl = i - an;
		while (i < len && g_ascii_isspace(h[i]))
			i++;
		if (i >= len || h[i] != '=')
			continue;
		i++;
		while (i < len && g_ascii_isspace(h[i]))
			i++;
		if (i < len && (h[i] == '"' || h[i] == '\'')) {
			quote = h[i++];
			vs = i;
			while (i < len && h[i] != quote)
				i++;
			vl = i - vs;
			if (i < len)
				i++;
		} else {
			vs = i;
			while (i < len && !g_ascii_isspace(h[i]) && h[i] != '>')
				i++;
			vl = i - vs;
		}
		if (st != NULL && !*closing &&
		    ((anl == 4 && g_ascii_strncasecmp(h + an, "href", 4) == 0) ||
		     (anl == 3 && g_ascii_strncasecmp(h + an, "src", 3) == 0) ||
		     (anl == 6 && g_ascii_strncasecmp(h + an, "action", 6) == 0) ||
		     (anl == 10 && g_ascii_strncasecmp(h + an, "background", 10) == 0))) {
			char *v = attr_value(h + vs, vl);

			/* in-page anchors and inline images are not links out */
			if (v[0] != '#' && g_ascii_strncasecmp(v, "cid:", 4) != 0 &&
			    g_ascii_strncasecmp(v, "data:", 5) != 0)
				uri_add(st, v, strlen(v), uri_kind(name, h + an, anl));
			g_free(v);
		}
	}
	return i < len ? i + 1 : len;
}

/* skip_to_close - offset after "</name ...>" from i, or len */
static size_t skip_to_close(const char *h, size_t len, size_t i, const char *name)
{
	size_t n = strlen(name);

	for (; i + 2 + n <= len; i++)
		if (h[i] == '<' && h[i + 1] == '/' && g_ascii_strncasecmp(h + i + 2, name, n) == 0 &&
		    (i + 2 + n == len || !g_ascii_isalnum(h[i + 2 + n]))) {
			const char *gt = memchr(h + i, '>', len - i);

			return gt != NULL ? (size_t)(gt - h) + 1 : len;
		}
	return len;
}

/* html_render - visible text of an HTML document (UTF-8 in, UTF-8 out):
 * markup, comments, script/style/head-title removed, entities decoded,
 * whitespace collapsed, block tags as line breaks.  Links to st (may be NULL). */
static char *html_render(struct mime_store *st, const char *h, size_t len, size_t *outlen)
{
	struct render r;
	size_t i = 0;

	r.out = g_string_sized_new(len / 2 + 16);
	r.space = r.newline = 0;
	while (i < len) {
		char c = h[i];

		if (c == '<' && i + 1 < len &&
		    (g_ascii_isalpha(h[i + 1]) || h[i + 1] == '/' || h[i + 1] == '!' || h[i + 1] == '?')) {
			char name[16];
			int closing;

			if (h[i + 1] == '!' && i + 3 < len && h[i + 2] == '-' && h[i + 3] == '-') {
				const char *e = g_strstr_len(h + i + 4, (gssize)(len - i - 4), "-->");

				i = e != NULL ? (size_t)(e - h) + 3 : len;
				continue;
			}
			if (h[i + 1] == '!' || h[i + 1] == '?') {      /* doctype, CDATA, PI */
				const char *e = memchr(h + i, '>', len - i);

				i = e != NULL ? (size_t)(e - h) + 1 : len;
				continue;
			}
			i += tag(st, h + i, len - i, name, sizeof(name), &closing);
			if (!closing && (strcmp(name, "script") == 0 || strcmp(name, "style") == 0 ||
			    strcmp(name, "title") == 0)) {
				i = skip_to_close(h, len, i, name);
				continue;
			}
			if (tag_breaks(name))
				put_break(&r, 1);
			else if (strcmp(name, "td") == 0 || strcmp(name, "th") == 0 ||
			    strcmp(name, "img") == 0)
				put_break(&r, 0);
			continue;
		}
		if (c == '&') {
			unsigned cp;
			size_t used = entity_decode(h + i, len - i, &cp);

			if (used > 0) {
				put_cp(&r, cp);
				i += used;
				continue;
			}
		}
		put_text(&r, h + i, 1);
		i++;
	}
	*outlen = r.out->len;
	return g_string_free(r.out, FALSE);
}

char *mime_html_render(const char *html, size_t len, size_t *outlen)
{
	return html_render(NULL, html, len, outlen);
}

/* ------------------------------------------------------------------ */
/* decoding                                                             */

/* read_base64 - a base64 content decoded as a mail program would
 * (mime_base64.h: on past a padded quartet, where GMime's decoder stops),
 * at most max bytes; *truncated if there was more.  What Thunderbird saves
 * differently at the end (a last quartet cut short) goes into p's
 * alt_keep/alt_tail (left 0 when truncated: that end is not checked) */
static GByteArray *read_base64(GMimeStream *src, size_t max, int *truncated, struct mime_part *p)
{
	GByteArray *out = g_byte_array_new();
	struct mime_base64 d;
	char buf[16384];
	unsigned char dec[sizeof(buf) / 4 * 3 + 3], tb[4];
	ssize_t n;
	size_t k, tb_len;

	mime_base64_init(&d);
	if (src != NULL) {
		g_mime_stream_reset(src);
		while ((n = g_mime_stream_read(src, buf, sizeof(buf))) > 0 && out->len <= max) {
			k = mime_base64_step(&d, buf, (size_t)n, dec);
			g_byte_array_append(out, dec, (guint)k);
		}
	}
	k = mime_base64_finish(&d, dec, tb, &tb_len);
	if (tb_len > 0 && out->len + tb_len <= max) {
		p->alt_keep = out->len;
		memcpy(p->alt_tail, tb, tb_len);
		p->alt_tail_len = tb_len;
	}
	g_byte_array_append(out, dec, (guint)k);
	if (out->len > max) {
		*truncated = 1;
		p->alt_tail_len = 0;
		g_byte_array_set_size(out, (guint)max);
	}
	return out;
}

/* read_decoded - the part's content with the transfer encoding removed,
 * at most max bytes; *truncated if there was more; base64: p's alt_* too. */
static GByteArray *read_decoded(GMimeDataWrapper *w, size_t max, int *truncated, struct mime_part *p)
{
	GMimeStream *src = g_mime_data_wrapper_get_stream(w);
	GMimeStream *mem = g_mime_stream_mem_new();
	GMimeStream *filt = g_mime_stream_filter_new(mem);
	GMimeContentEncoding enc = g_mime_data_wrapper_get_encoding(w);
	GByteArray *out, *arr;
	char buf[16384];
	ssize_t n;

	*truncated = 0;
	if (enc == GMIME_CONTENT_ENCODING_BASE64) {
		g_object_unref(filt);
		g_object_unref(mem);
		return read_base64(src, max, truncated, p);
	}
	if (enc != GMIME_CONTENT_ENCODING_DEFAULT && enc != GMIME_CONTENT_ENCODING_7BIT &&
	    enc != GMIME_CONTENT_ENCODING_8BIT && enc != GMIME_CONTENT_ENCODING_BINARY) {
		GMimeFilter *f = g_mime_filter_basic_new(enc, FALSE);

		g_mime_stream_filter_add(GMIME_STREAM_FILTER(filt), f);
		g_object_unref(f);
	}
	arr = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	if (src != NULL) {
		g_mime_stream_reset(src);
		while ((n = g_mime_stream_read(src, buf, sizeof(buf))) > 0) {
			if (g_mime_stream_write(filt, buf, (size_t)n) < 0)
				break;
			if (arr->len > max) {
				*truncated = 1;
				break;
			}
		}
		g_mime_stream_flush(filt);
	}
	if (arr->len > max) {
		*truncated = 1;
		g_byte_array_set_size(arr, (guint)max);
	}
	/* take the bytes out of the stream */
	out = g_byte_array_sized_new(arr->len + 1);
	g_byte_array_append(out, arr->data, arr->len);
	g_object_unref(filt);
	g_object_unref(mem);
	return out;
}

static int charset_is_utf8(const char *cs)
{
	return cs == NULL || g_ascii_strcasecmp(cs, "utf-8") == 0 ||
	       g_ascii_strcasecmp(cs, "utf8") == 0 || g_ascii_strcasecmp(cs, "us-ascii") == 0 ||
	       g_ascii_strcasecmp(cs, "ascii") == 0;
}

/* The UTF-8 copy of a text part, built piece by piece so that it stops at
 * the budget of converted text: converting the whole part first and
 * cutting afterwards cost up to three times the part (and the time) for
 * text past the budget, even when the budget was used up before it began.
 * A copy the same as the bytes it is made from replaces them and has no
 * budget of its own; once it differs, room is what it may keep. */
struct utf8_copy {
	GString       *s;
	const guint8  *orig;        /* the bytes as decoded */
	size_t         orig_len;
	size_t         room;        /* converted-text budget left */
	int            differs;     /* no longer the same as orig */
	int            cut;         /* stopped at room */
};

/* copy_put - append n bytes of UTF-8 (NULs read as spaces: they would cut
 * C strings short); 0, or -1 once the copy is cut at its room */
static int copy_put(struct utf8_copy *c, const char *u, size_t n)
{
	size_t at = c->s->len, k;

	g_string_append_len(c->s, u, (gssize)n);
	for (k = at; k < c->s->len; k++)
		if (c->s->str[k] == '\0')
			c->s->str[k] = ' ';
	if (!c->differs && (c->s->len > c->orig_len || memcmp(c->s->str + at, c->orig + at, n) != 0))
		c->differs = 1;
	if (!c->differs || c->s->len <= c->room)
		return 0;
	k = c->room;
	while (k > 0 && ((unsigned char)c->s->str[k] & 0xc0) == 0x80)
		k--;                   /* cut on a character boundary */
	g_string_truncate(c->s, k);
	c->cut = 1;
	return -1;
}

static void copy_reset(struct utf8_copy *c)
{
	g_string_truncate(c->s, 0);
	c->differs = c->cut = 0;
}

/* copy_convert - b in charset from, as g_convert() to UTF-8 converts it
 * (an invalid or unfinished sequence fails it all) but stopping at the
 * copy's room; 0, or -1 (nothing kept) */
static int copy_convert(struct utf8_copy *c, const guint8 *b, size_t len, const char *from)
{
	GIConv cd = g_iconv_open("UTF-8", from);
	gchar *in = (gchar *)b, buf[16384], *out;
	gsize inleft = len, outleft, r;
	int ok = 1;

	if (cd == (GIConv)-1)
		return -1;
	for (;;) {
		/* all read: a stateful charset writes out what it holds */
		int flushing = inleft == 0;

		out = buf;
		outleft = sizeof(buf);
		r = flushing ? g_iconv(cd, NULL, NULL, &out, &outleft)
		             : g_iconv(cd, &in, &inleft, &out, &outleft);
		if (r == (gsize)-1 && errno != E2BIG) {
			ok = 0;        /* EILSEQ, or EINVAL: a sequence cut at the end */
			break;
		}
		if (out > buf && copy_put(c, buf, (size_t)(out - buf)) < 0)
			break;
		if (flushing && r != (gsize)-1)
			break;
	}
	g_iconv_close(cd);
	if (!ok)
		copy_reset(c);
	return ok ? 0 : -1;
}

/* copy_valid - b as it is, each byte that is not valid UTF-8 as U+FFFD
 * (as g_utf8_make_valid), stopping at the copy's room */
static void copy_valid(struct utf8_copy *c, const guint8 *b, size_t len)
{
	size_t i = 0;

	while (i < len) {
		const gchar *end;

		if (g_utf8_validate((const gchar *)b + i, (gssize)(len - i), &end)) {
			copy_put(c, (const char *)b + i, len - i);
			return;
		}
		if (copy_put(c, (const char *)b + i, (size_t)((const guint8 *)end - b) - i) < 0)
			return;
		i = (size_t)((const guint8 *)end - b);
		/* a NUL stops g_utf8_validate too: it reads as a space */
		if (copy_put(c, b[i] == '\0' ? " " : "\xef\xbf\xbd", b[i] == '\0' ? 1 : 3) < 0)
			return;
		i++;
	}
}

/* to_utf8 - text bytes in charset cs (NULL = not declared) as valid UTF-8,
 * in c (whose orig and room the caller set).  Undeclared or unknown
 * charsets: UTF-8 if it is valid, else windows-1252 (what undeclared 8-bit
 * mail nearly always is).  Invalid sequences that remain become U+FFFD. */
static void to_utf8(struct utf8_copy *c, const char *cs)
{
	const guint8 *b = c->orig;
	size_t len = c->orig_len;

	if (cs != NULL && !charset_is_utf8(cs)) {
		const char *iname = g_mime_charset_iconv_name(cs);

		/* an invalid sequence stops the conversion: decode byte-wise instead */
		if (copy_convert(c, b, len, iname != NULL ? iname : cs) == 0 ||
		    copy_convert(c, b, len, "WINDOWS-1252") == 0)
			return;
	} else if (cs == NULL && !g_utf8_validate((const gchar *)b, (gssize)len, NULL)) {
		if (copy_convert(c, b, len, "WINDOWS-1252") == 0)
			return;
	}
	copy_valid(c, b, len);
}

static char *lower_dup(const char *s)
{
	return s != NULL ? g_ascii_strdown(s, -1) : NULL;
}

/* filename_clean - a decoded filename as valid UTF-8 without control chars */
static char *filename_clean(const char *fn)
{
	char *v, *p;

	if (fn == NULL || *fn == '\0')
		return NULL;
	v = g_utf8_make_valid(fn, -1);
	for (p = v; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return v;
}

/* A part may give its name in many places: each filename= and name=,
 * and a Content-Disposition or Content-Type field given twice (mail
 * programs differ on which one they use: the first, the last, the one
 * of a parameter's first occurrence).  Every one is read into names, to
 * these bounds; past them the part's names_truncated is set (a disguise:
 * no mailer writes that many), and the attachments filter calls the part
 * unchecked rather than pass on the names it did read. */
#define PART_MAX_NAMES   64   /* distinct names of one part */
#define PART_MAX_FIELDS  16   /* Content-Type and Content-Disposition fields of one part */

/* add_name - c (taken, or NULL: nothing) into the distinct names of the
 * NULL-terminated array *v (of *n); 0, or -1 when one more would pass
 * PART_MAX_NAMES */
static int add_name(char *c, char ***v, size_t *n)
{
	size_t k;

	if (c == NULL)
		return 0;
	for (k = 0; k < *n && strcmp((*v)[k], c) != 0; k++)
		;
	if (k < *n) {
		g_free(c);
		return 0;
	}
	if (*n >= PART_MAX_NAMES) {
		g_free(c);
		return -1;
	}
	*v = g_renew(char *, *v, *n + 2);
	(*v)[(*n)++] = c;
	(*v)[*n] = NULL;
	return 0;
}

/* add_names - the distinct cleaned values of params called name into
 * the NULL-terminated array *v (of *n); 0, or -1 when one more would pass
 * PART_MAX_NAMES */
static int add_names(GMimeParamList *l, const char *name, char ***v, size_t *n)
{
	int i, len = l != NULL ? g_mime_param_list_length(l) : 0;

	for (i = 0; i < len; i++) {
		GMimeParam *prm = g_mime_param_list_get_parameter_at(l, i);
		const char *pn = g_mime_param_get_name(prm);

		if (pn == NULL || g_ascii_strcasecmp(pn, name) != 0)
			continue;
		if (add_name(filename_clean(g_mime_param_get_value(prm)), v, n) < 0)
			return -1;
	}
	return 0;
}

/* is_name_field - a field whose whole value is the part's name to
 * Thunderbird (libmime's MimeHeaders_get_name falls back on Content-Name,
 * then X-Sun-Data-Name, when there is no filename= nor name=): it shows
 * and saves the file under that name, so it is one of the names checked */
static int is_name_field(const char *hn)
{
	return g_ascii_strcasecmp(hn, "Content-Name") == 0 ||
	    g_ascii_strcasecmp(hn, "X-Sun-Data-Name") == 0;
}

/* add_field_name - the value of a name field (is_name_field; RFC 2047
 * decoded by GMime) into the names, trimmed, and without the quotes
 * around it too when it has them; 0, or -1 as add_name */
static int add_field_name(const char *value, char ***v, size_t *n)
{
	char *t = g_strstrip(g_strdup(value));
	size_t len = strlen(t);
	int rc = add_name(filename_clean(t), v, n);

	if (rc == 0 && len >= 2 && t[0] == '"' && t[len - 1] == '"') {
		t[len - 1] = '\0';
		rc = add_name(filename_clean(t + 1), v, n);
	}
	g_free(t);
	return rc;
}

/* declared_of - a Content-Type value as declared: without parameters,
 * trimmed, lower case (a new string) */
static char *declared_of(const char *v)
{
	size_t n = strcspn(v, ";");
	char *d, *low;

	while (n > 0 && g_ascii_isspace(v[n - 1]))
		n--;
	while (n > 0 && g_ascii_isspace(*v)) {
		v++;
		n--;
	}
	d = g_strndup(v, n);
	low = g_ascii_strdown(d, -1);
	g_free(d);
	return low;
}

/* add_type - t (taken) into the distinct NULL-terminated *v of *n */
static void add_type(char *t, char ***v, size_t *n)
{
	for (size_t k = 0; k < *n; k++)
		if (strcmp((*v)[k], t) == 0) {
			g_free(t);
			return;
		}
	*v = g_renew(char *, *v, *n + 2);
	(*v)[(*n)++] = t;
	(*v)[*n] = NULL;
}

/* part_fields - what p's Content-Type and Content-Disposition fields
 * declare, every one of them: declared_type (of the last Content-Type
 * field, the one GMime's content_type comes from), types (each distinct
 * one), and for a GMime part its names (filename first, then every
 * filename= and name= of every field, and the value of each Content-Name
 * and X-Sun-Data-Name field), with names_truncated past
 * PART_MAX_NAMES or PART_MAX_FIELDS.  opts: as the message was parsed. */
static void part_fields(GMimeParserOptions *opts, GMimeObject *obj, struct mime_part *p)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
	int i, count = hl != NULL ? g_mime_header_list_get_count(hl) : 0, fields = 0;
	int want_names = GMIME_IS_PART(obj);
	const char *last_ct = NULL;
	char **names = NULL, **types = NULL;
	size_t nnames = 0, ntypes = 0;

	if (want_names && p->filename != NULL) {
		names = g_new(char *, 2);
		names[nnames++] = g_strdup(p->filename);
		names[nnames] = NULL;
	}
	for (i = 0; i < count; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		const char *hn = g_mime_header_get_name(h);
		const char *raw = g_mime_header_get_raw_value(h);
		int is_ct, rc = 0;

		if (hn == NULL)
			continue;
		if (is_name_field(hn)) {
			const char *v = g_mime_header_get_value(h);

			if (want_names && !p->names_truncated && v != NULL &&
			    add_field_name(v, &names, &nnames) < 0)
				p->names_truncated = 1;
			continue;
		}
		is_ct = g_ascii_strcasecmp(hn, "Content-Type") == 0;
		if (!is_ct && g_ascii_strcasecmp(hn, "Content-Disposition") != 0)
			continue;
		if (raw == NULL)
			raw = g_mime_header_get_value(h);
		if (raw == NULL)
			continue;
		if (++fields > PART_MAX_FIELDS) {
			p->names_truncated = 1;
			break;
		}
		if (is_ct) {
			const char *v = g_mime_header_get_value(h);

			last_ct = v != NULL ? v : raw;
			add_type(declared_of(last_ct), &types, &ntypes);
			if (want_names && !p->names_truncated) {
				GMimeContentType *t = g_mime_content_type_parse(opts, raw);

				if (t != NULL) {
					rc = add_names(g_mime_content_type_get_parameters(t), "name", &names, &nnames);
					g_object_unref(t);
				}
			}
		} else if (want_names && !p->names_truncated) {
			GMimeContentDisposition *d = g_mime_content_disposition_parse(opts, raw);

			if (d != NULL) {
				rc = add_names(g_mime_content_disposition_get_parameters(d), "filename", &names, &nnames);
				g_object_unref(d);
			}
		}
		if (rc < 0)
			p->names_truncated = 1;
	}
	p->declared_type = last_ct != NULL ? declared_of(last_ct) : g_strdup("");
	p->types = (const char *const *)types;
	p->names = (const char *const *)names;
}

/* ------------------------------------------------------------------ */
/* the walk                                                             */

static void leaf(struct mime_store *st, GMimeObject *obj, unsigned depth, size_t msg)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	struct mime_part *p;
	GMimeDataWrapper *w;
	char *type;
	int truncated = 0;

	if (st->pub.nparts >= MIME_MAX_PARTS) {
		st->pub.parse_error = 1;
		st->pub.parts_truncated = 1;
		incomplete(st, "more than " G_STRINGIFY(MIME_MAX_PARTS) " parts");
		return;
	}
	p = part_new(st);
	p->depth = depth;
	p->msg = msg;
	type = ct != NULL ? g_mime_content_type_get_mime_type(ct) : g_strdup("text/plain");
	p->content_type = lower_dup(type);
	g_free(type);
	if (GMIME_IS_PART(obj))
		p->filename = filename_clean(g_mime_part_get_filename(GMIME_PART(obj)));
	part_fields(st->opts, obj, p);
	p->disposition = lower_dup(g_mime_object_get_disposition(obj));
	{
		const char *cs = g_mime_object_get_content_type_parameter(obj, "charset");
		const char *cte = g_mime_object_get_header(obj, "Content-Transfer-Encoding");

		p->charset = cs != NULL && *cs ? lower_dup(cs) : NULL;
		if (cte != NULL) {
			char *t = g_strstrip(g_ascii_strdown(cte, -1));

			if (*t)
				p->encoding = t;
			else
				g_free(t);
		}
	}
	p->is_html = strcmp(p->content_type, "text/html") == 0;
	p->is_text = p->is_html || strcmp(p->content_type, "text/plain") == 0;

	if (GMIME_IS_PART(obj))
		w = g_mime_part_get_content(GMIME_PART(obj));
	else
		w = NULL;
	if (w != NULL) {
		/* Two budgets, each MIME_MAX_DECODED: the content as decoded
		 * (raw, what a file type, an archive, a signed content is read
		 * from) and the UTF-8 copies of text parts that the charset
		 * conversion changed (data, what the rules read; windows-1252
		 * grows up to three times).  Counted together, 23 MB of 0x80
		 * text used the room of every part after it, which was kept
		 * empty and never checked, and nothing said so. */
		size_t room = st->decoded < MIME_MAX_DECODED ? MIME_MAX_DECODED - st->decoded : 0;
		GByteArray *raw = read_decoded(w, room, &truncated, p);

		st->decoded += raw->len;
		if (p->is_text) {
			size_t left = st->converted < MIME_MAX_DECODED ? MIME_MAX_DECODED - st->converted : 0;
			/* A part takes the budget down to its reserve, and
			 * each one after keeps its first MIME_TEXT_PREFIX
			 * bytes from that: a budget one part could spend
			 * left every text part after it empty, so 23 MB of
			 * 0x80 in windows-1252 hid a spam text (and its
			 * links) from Bayes, the HTML body rules and the URI
			 * blocklists. */
			size_t own = left > MIME_TEXT_RESERVE ? left - MIME_TEXT_RESERVE : 0;
			struct utf8_copy c = {
				.s = g_string_sized_new(raw->len + 1), .orig = raw->data,
				.orig_len = raw->len,
				.room = own > MIME_TEXT_PREFIX ? own : left < MIME_TEXT_PREFIX ? left : MIME_TEXT_PREFIX,
			};

			to_utf8(&c, g_mime_object_get_content_type_parameter(obj, "charset"));
			p->len = c.s->len;
			/* what the string grew to and did not use given back */
			p->data = g_realloc(g_string_free(c.s, FALSE), p->len + 1);
			if (!c.differs)
				/* nothing converted: the one copy, counted as raw */
				g_byte_array_free(raw, TRUE);
			else {
				p->text_truncated = c.cut;
				st->converted += p->len;
				if (c.cut && c.room < MIME_TEXT_PREFIX)
					/* the reserve spent too: less than its
					 * prefix of it is checked (none, or what
					 * was left: 130 bytes kept unsaid hid a
					 * spam text), and a filter must say so */
					incomplete(st, "text converted to UTF-8 over 64 MiB");
				/* keep the bytes as sent too (an executable declared
				 * text/plain must still look like one) */
				p->raw_len = raw->len;
				g_byte_array_append(raw, (const guint8 *)"", 1);
				p->raw = g_byte_array_free(raw, FALSE);
			}
		} else {
			p->len = raw->len;
			g_byte_array_append(raw, (const guint8 *)"", 1);   /* NUL after, for safety */
			p->data = g_byte_array_free(raw, FALSE);
		}
	}
	if (p->data == NULL) {
		p->data = (const unsigned char *)g_strdup("");
		p->len = 0;
	}
	if (p->raw == NULL) {
		p->raw = p->data;
		p->raw_len = p->len;
	}
	if (truncated) {
		/* cut or kept empty: its type, archive, signed content were
		 * not all there to check, so the parse is not whole */
		p->truncated = 1;
		p->text_truncated |= p->is_text;
		st->pub.parse_error = 1;
		incomplete(st, "decoded content over 64 MiB");
	}
	if (p->text_truncated)
		st->pub.parse_error = 1;
	if (p->is_html) {
		p->rendered = html_render(st, (const char *)p->data, p->len, &p->rendered_len);
		text_uris(st, p->rendered, p->rendered_len);
	} else if (p->is_text)
		text_uris(st, (const char *)p->data, p->len);
}

/* first_offset - where the first header field of a message GMime parsed
 * starts in the parsed bytes, or -1 */
static long long first_offset(GMimeMessage *m)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(m));

	if (hl == NULL || g_mime_header_list_get_count(hl) <= 0)
		return -1;
	return (long long)g_mime_header_get_offset(g_mime_header_list_get_header_at(hl, 0));
}

/* add_boundaries - the boundaries of mp and of the multiparts in it (not
 * in the messages in it) into the NULL-terminated *v (of *n), at most
 * MIME_MAX_PARTS, nest levels deep at most MIME_MAX_DEPTH */
static void add_boundaries(GMimeMultipart *mp, const char ***v, size_t *n, unsigned nest)
{
	const char *bd = g_mime_multipart_get_boundary(mp);
	int count = g_mime_multipart_get_count(mp);

	if (nest > MIME_MAX_DEPTH || *n >= MIME_MAX_PARTS)
		return;
	if (bd != NULL && bd[0] != '\0') {
		*v = g_renew(const char *, *v, *n + 2);
		(*v)[(*n)++] = bd;
		(*v)[*n] = NULL;
	}
	for (int i = 0; i < count; i++) {
		GMimeObject *c = g_mime_multipart_get_part(mp, i);

		if (GMIME_IS_MULTIPART(c))
			add_boundaries(GMIME_MULTIPART(c), v, n, nest + 1);
	}
}

/* qp_changes_split - a multipart labelled quoted-printable (RFC 2045
 * forbids it) whose body, QP-decoded, splits otherwise than as it is
 * (mime_qp.h): its body as GMime writes it back (the parts' headers and
 * contents as they came) looked at */
static int qp_changes_split(GMimeObject *obj)
{
	GMimeStream *mem = g_mime_stream_mem_new();
	GByteArray *body;
	const char **bds = NULL;
	size_t nb = 0;
	int rc = 0;

	add_boundaries(GMIME_MULTIPART(obj), &bds, &nb, 0);
	if (nb > 0 && g_mime_object_write_content_to_stream(obj, NULL, mem) >= 0) {
		body = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
		rc = mime_qp_changes_split(body->data, body->len, bds);
	}
	g_free(bds);
	g_object_unref(mem);
	return rc;
}

/* walk - depth-first; depth counts nested messages, nest every level; msg
 * is the innermost message obj is in (an index into pub.msgs) */
static void walk(struct mime_store *st, GMimeObject *obj, unsigned depth, unsigned nest, size_t msg)
{
	if (obj == NULL)
		return;
	if (nest > MIME_MAX_DEPTH) {
		st->pub.parse_error = 1;
		incomplete(st, "nested deeper than " G_STRINGIFY(MIME_MAX_DEPTH) " levels");
		return;
	}
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int i, n = g_mime_multipart_get_count(mp);
		const char *cte = g_mime_object_get_header(obj, "Content-Transfer-Encoding");
		GMimeContentEncoding enc = cte != NULL ? g_mime_content_encoding_from_string(cte)
		                                       : GMIME_CONTENT_ENCODING_DEFAULT;

		/* RFC 2045 allows a multipart no encoding but 7bit, 8bit
		 * and binary, and GMime (as libclamav) reads its body as it
		 * is: one sent base64 lists no part.  Some senders do encode
		 * the whole body (SAP's), and a program that decodes it first
		 * shows parts no filter saw: not all walked.  One labelled
		 * quoted-printable is common in bulk mail (the parts' encoding
		 * left on a multipart/alternative) and splits the same decoded
		 * or not: only when decoding would change a delimiter line or
		 * a part's header (mime_qp.h), and then without parse_error,
		 * so that Bayes sees such mail as it did before. */
		if (enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_UUENCODE) {
			st->pub.parse_error = 1;
			st->pub.encoded_multipart = 1;
			incomplete(st, "a multipart sent base64 or uuencoded (RFC 2045 forbids it)");
		} else if (enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE && qp_changes_split(obj)) {
			st->pub.encoded_multipart = 1;
			incomplete(st, "a multipart sent quoted-printable that splits otherwise decoded");
		}
		for (i = 0; i < n && st->pub.nparts < MIME_MAX_PARTS; i++)
			walk(st, g_mime_multipart_get_part(mp, i), depth, nest + 1, msg);
		if (i < n) {
			st->pub.parse_error = 1;
			st->pub.parts_truncated = 1;
			incomplete(st, "more than " G_STRINGIFY(MIME_MAX_PARTS) " parts");
		}
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
		const char *fn;

		if (m == NULL) {
			st->pub.parse_error = 1;
			return;
		}
		fn = g_mime_object_get_content_disposition_parameter(obj, "filename");
		if (fn == NULL)
			fn = g_mime_object_get_content_type_parameter(obj, "name");
		msg = msg_new(st, first_offset(m), msg, depth + 1, filename_clean(fn));
		walk(st, g_mime_message_get_mime_part(m), depth + 1, nest + 1, msg);
	} else
		leaf(st, obj, depth, msg);
}

/* parser complaints that mean the structure is broken */
static void on_warning(gint64 offset, GMimeParserWarning code, const gchar *item, gpointer ud)
{
	struct mime_store *st = ud;

	(void)offset;
	(void)item;
	switch (code) {
	case GMIME_WARN_MALFORMED_MULTIPART:
	case GMIME_WARN_TRUNCATED_MESSAGE:
	case GMIME_WARN_MALFORMED_MESSAGE:
	case GMIME_CRIT_INVALID_HEADER_NAME:
	case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
	case GMIME_CRIT_NESTING_OVERFLOW:   /* also said of a multipart cut short: walk() checks depth */
	case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
		st->pub.parse_error = 1;
		break;
	default:
		break;
	}
}

void mime_free(void *p)
{
	struct mime_store *st = p;
	size_t i;

	if (st == NULL)
		return;
	for (i = 0; i < st->pub.nparts; i++) {
		struct mime_part *pt = &st->pub.parts[i];

		g_free((char *)pt->content_type);
		g_free((char *)pt->declared_type);
		g_free((char *)pt->filename);
		g_strfreev((char **)pt->names);
		g_strfreev((char **)pt->types);
		g_free((char *)pt->disposition);
		g_free((char *)pt->charset);
		g_free((char *)pt->encoding);
		if (pt->raw != pt->data)
			g_free((void *)pt->raw);
		g_free((void *)pt->data);
		g_free((char *)pt->rendered);
	}
	g_free(st->pub.parts);
	for (i = 0; i < st->pub.nmsgs; i++)
		g_free((char *)st->pub.msgs[i].filename);
	g_free(st->pub.msgs);
	for (i = 0; i < st->pub.nuris; i++)
		g_free(st->pub.uris[i]);
	g_free(st->pub.uris);
	g_free(st->pub.uri_kinds);
	mime_files_free(st->files);
	g_free(st);
}

/* parser_options - GMime's options for a message, and for the fields
 * part_fields parses again: loose RFC 2047 and parameters, undeclared
 * 8-bit text UTF-8 else windows-1252 (free with g_mime_parser_options_free) */
static GMimeParserOptions *parser_options(GMimeParserWarningFunc warn, void *warn_data)
{
	static const char *fallback[] = { "UTF-8", "windows-1252", NULL };
	GMimeParserOptions *opts;

	pthread_once(&gmime_once, gmime_setup);
	opts = g_mime_parser_options_new();
	g_mime_parser_options_set_rfc2047_compliance_mode(opts, GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_parameter_compliance_mode(opts, GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_fallback_charsets(opts, fallback);
	if (warn != NULL)
		g_mime_parser_options_set_warning_callback(opts, warn, warn_data);
	return opts;
}

GMimeMessage *mime_gmime_parse(const unsigned char *msg, size_t len,
                               GMimeParserWarningFunc warn, void *warn_data, gint64 *headers_end)
{
	GMimeParserOptions *opts;
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *m;

	opts = parser_options(warn, warn_data);

	stream = g_mime_stream_mem_new_with_buffer((const char *)msg, len);
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	m = g_mime_parser_construct_message(parser, opts);
	if (headers_end != NULL)
		*headers_end = g_mime_parser_get_headers_end(parser);
	g_object_unref(parser);
	g_object_unref(stream);
	g_mime_parser_options_free(opts);
	return m;
}

/* field_start - the line looks like the first line of a header field:
 * a name of printable characters but ':', then ':' */
static int field_start(const unsigned char *l, size_t n)
{
	size_t i = 0;

	while (i < n && l[i] > ' ' && l[i] < 0x7f && l[i] != ':')
		i++;
	return i > 0 && i < n && l[i] == ':';
}

#define CUT_BOUNDARIES 64     /* boundaries told apart; more: every "--" line counts */

/* what struct_cut knows of the structure so far */
struct cut {
	char     b[CUT_BOUNDARIES][72];   /* declared boundaries ("--" lines that delimit) */
	size_t   nb;
	int      any_dashes;              /* a boundary not told apart: count every "--" line */
	int      inner_header;            /* a message/ type declared: a header section follows */
};

/* mem_find_ci - first occurrence of the lower-case word w in l[0..n), or NULL */
static const unsigned char *mem_find_ci(const unsigned char *l, size_t n, const char *w)
{
	size_t k = strlen(w);

	for (size_t i = 0; i + k <= n; i++)
		if (g_ascii_strncasecmp((const char *)l + i, w, k) == 0)
			return l + i;
	return NULL;
}

/* cut_field - note what a header-section line declares: a boundary, a
 * nested message */
static void cut_field(struct cut *c, const unsigned char *l, size_t n)
{
	const unsigned char *p = mem_find_ci(l, n, "boundary"), *end = l + n;
	size_t k = 0;

	if (mem_find_ci(l, n, "message/") != NULL)
		c->inner_header = 1;
	if (p == NULL)
		return;
	p += 8;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p >= end || *p != '=' || c->nb >= CUT_BOUNDARIES) {
		c->any_dashes = 1;         /* boundary*=, boundary*0=, too many: not told apart */
		return;
	}
	p++;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p < end && *p == '"') {
		for (p++; p < end && *p != '"' && k + 1 < sizeof(c->b[0]); p++)
			c->b[c->nb][k++] = (char)*p;
	} else {
		for (; p < end && *p > ' ' && *p != ';' && k + 1 < sizeof(c->b[0]); p++)
			c->b[c->nb][k++] = (char)*p;
	}
	c->b[c->nb][k] = '\0';
	/* a value GMime may decode (RFC 2047, escapes) or strip (quotes) */
	if (k == 0 || k + 1 >= sizeof(c->b[0]) || strstr(c->b[c->nb], "=?") != NULL ||
	    strpbrk(c->b[c->nb], "\\'\"") != NULL) {
		c->any_dashes = 1;
		return;
	}
	c->nb++;
}

/* cut_delimiter - the line (starting with "--") may delimit a part */
static int cut_delimiter(const struct cut *c, const unsigned char *l, size_t n)
{
	if (c->any_dashes)
		return 1;
	for (size_t i = 0; i < c->nb; i++) {
		size_t k = strlen(c->b[i]);

		if (n >= k + 2 && memcmp(l + 2, c->b[i], k) == 0)
			return 1;
	}
	return 0;
}

/* struct_cut - the length of msg that GMime may parse: up to the line at
 * which the message's header sections (the top one, those after a line
 * with a declared boundary, and those of nested messages, as far as their
 * lines look like header fields) or its boundary lines exceed
 * MIME_MAX_HEADER_* or MIME_MAX_DELIMS; len if they never do.  *why: the
 * budget that was exceeded.  Lines in bodies are not counted, so a long
 * YAML or log text with "---" and "key: value" lines is no structure. */
static size_t struct_cut(const unsigned char *msg, size_t len, const char **why)
{
	struct cut *c = g_new0(struct cut, 1);
	size_t off = 0, delims = 0, hlines = 0, hbytes = 0;
	int header = 1;

	*why = NULL;
	while (off < len && *why == NULL) {
		const unsigned char *nl = memchr(msg + off, '\n', len - off);
		size_t n = nl != NULL ? (size_t)(nl - msg) + 1 - off : len - off;
		const unsigned char *l = msg + off;
		int empty = l[0] == '\n' || (l[0] == '\r' && (n == 1 || l[1] == '\n'));

		if (header && empty) {
			header = c->inner_header;  /* a nested message's own header follows */
			c->inner_header = 0;
		} else if (header && (field_start(l, n) || l[0] == ' ' || l[0] == '\t')) {
			hbytes += n;
			if (hbytes > MIME_MAX_HEADER_BYTES)
				*why = "header fields over 2 MiB";
			else if (++hlines > MIME_MAX_HEADER_LINES)
				*why = "more than " G_STRINGIFY(MIME_MAX_HEADER_LINES) " header lines";
			else
				cut_field(c, l, n);
		} else if (n >= 2 && l[0] == '-' && l[1] == '-' && cut_delimiter(c, l, n)) {
			if (++delims > MIME_MAX_DELIMS)
				*why = "more than " G_STRINGIFY(MIME_MAX_DELIMS) " boundary lines";
			header = 1;
			c->inner_header = 0;
		} else
			header = 0;
		if (*why == NULL)
			off += n;
	}
	g_free(c);
	return *why != NULL ? off : len;
}

struct mime_msg *mime_parse(const unsigned char *msg, size_t len)
{
	struct mime_store *st = g_new0(struct mime_store, 1);
	const char *why = NULL;
	size_t cut = struct_cut(msg, len, &why);
	GMimeMessage *m;

	st->uri_seen = g_hash_table_new(g_str_hash, g_str_equal);   /* keys owned by uris[] */
	st->uri_doms = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	st->uri_keys = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	if (cut < len) {
		st->pub.parse_error = 1;
		incomplete(st, why);
	}
	msg_new(st, 0, 0, 0, NULL);         /* the message itself */
	m = mime_gmime_parse(msg, cut, on_warning, st, NULL);
	if (m == NULL)
		st->pub.parse_error = 1;
	else {
		st->opts = parser_options(NULL, NULL);
		walk(st, g_mime_message_get_mime_part(m), 0, 0, 0);
		g_mime_parser_options_free(st->opts);
		st->opts = NULL;
		g_object_unref(m);
	}
	g_hash_table_destroy(st->uri_seen);
	st->uri_seen = NULL;
	g_hash_table_destroy(st->uri_doms);
	st->uri_doms = NULL;
	g_hash_table_destroy(st->uri_keys);
	st->uri_keys = NULL;
	return &st->pub;
}

const struct mime_msg *mime_get(struct mw_ctx *ctx)
{
	struct msgscan *ms = ctx->ms;

	if (ms->mime == NULL) {
		const struct mime_msg *m = mime_parse(ms->msg, ms->len);

		ms->mime = (void *)m;
		ms->mime_free = mime_free;
		if (m->incomplete != NULL)
			mw_log(ctx, LOG_NOTICE, "MIME structure not walked whole (%s): parts left unchecked",
			    m->incomplete);
		if (m->uris_truncated)
			mw_log(ctx, LOG_NOTICE, "URI limit reached: %zu URIs kept, %zu more not in the URI "
			    "lists (dnsbl, uri rules)", m->nuris, m->uris_dropped);
		if (m->bare_stopped)
			mw_log(ctx, LOG_NOTICE, "URI limit reached: the text's schemeless hosts and mail "
			    "addresses were looked for up to the %d-th only", MIME_MAX_BARE_LOOKS);
	}
	return ms->mime;
}
