/* jsonw.c - streaming JSON text writer; see jsonw.h. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "proxy/jsonw.h"
#include "proxy/sbuf.h"
#include "proxy/utf8.h"

static const char REPL[3] = { '\xef', '\xbf', '\xbd' };	/* U+FFFD */

/* plain - the byte is copied as it is: printable ASCII other than '"' and
 * '\\' (bytes >= 0x80 go to the UTF-8 check) */
static inline int plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

int jsonw_escape(struct sbuf *out, const char *p, size_t len)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0, run = 0, n, bad;
	char esc[8];

	if (sbuf_addc(out, '"') < 0)
		return -1;
	while (i < len) {
		unsigned char c = u[i];
		if (plain(c)) {
			i++;
			continue;
		}
		if (c >= 0x80) {
			if ((n = utf8_seq(u + i, len - i, &bad)) != 0) {
				i += n;          /* well-formed: stays in the run */
				continue;
			}
		}
		/* flush the plain run before this byte */
		if (sbuf_add(out, p + run, i - run) < 0)
			return -1;
		if (c >= 0x80) {
			if (sbuf_add(out, REPL, sizeof(REPL)) < 0)
				return -1;
			i += bad;
		} else {
			const char *e;
			switch (c) {
			case '"':  e = "\\\""; break;
			case '\\': e = "\\\\"; break;
			case '\b': e = "\\b"; break;
			case '\f': e = "\\f"; break;
			case '\n': e = "\\n"; break;
			case '\r': e = "\\r"; break;
			case '\t': e = "\\t"; break;
			default:
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				e = esc;
			}
			if (sbuf_adds(out, e) < 0)
				return -1;
			i++;
		}
		run = i;
	}
	if (sbuf_add(out, p + run, i - run) < 0 || sbuf_addc(out, '"') < 0)
		return -1;
	return 0;
}

static void before_value(struct jsonw *w);
static void put(struct jsonw *w, const char *s, size_t n);

/* item - how p[i..len) starts in a literal: returns the input bytes of
 * one item (a byte, a whole UTF-8 character, or an ill-formed subpart),
 * its output bytes in *w (as jsonw_escape writes them) */
static size_t item(const unsigned char *u, size_t i, size_t len, size_t *w)
{
	unsigned char c = u[i];
	size_t n, bad;

	if (plain(c)) {
		*w = 1;
		return 1;
	}
	if (c >= 0x80) {
		if ((n = utf8_seq(u + i, len - i, &bad)) != 0) {
			*w = n;
			return n;
		}
		*w = sizeof(REPL);
		return bad;
	}
	switch (c) {
	case '"': case '\\': case '\b': case '\f': case '\n': case '\r': case '\t':
		*w = 2;
		break;
	default:
		*w = 6;
	}
	return 1;
}

size_t jsonw_escaped_len(const char *p, size_t len)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0, total = 2, w;

	while (i < len) {
		i += item(u, i, len, &w);
		total += w;
	}
	return total;
}

void jsonw_str_max(struct jsonw *w, const char *p, size_t len, size_t max)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0, total = 2, n, iw;

	if (max < 8)
		max = 8;
	if (jsonw_escaped_len(p, len) <= max) {
		jsonw_str(w, p, len);
		return;
	}
	/* the longest prefix of whole items that leaves room for "..." */
	while (i < len) {
		n = item(u, i, len, &iw);
		if (total + iw + 3 > max)
			break;
		total += iw;
		i += n;
	}
	before_value(w);
	if (!w->failed && jsonw_escape(w->out, p, i) < 0)
		w->failed = 1;
	if (!w->failed) {
		w->out->len--;                  /* its closing quote, after the marker */
		put(w, "...\"", 4);
	}
}

void jsonw_init_inside(struct jsonw *w, struct sbuf *out)
{
	jsonw_init(w, out);
	w->depth = 1;
	w->first[0] = 0;
	w->first[1] = 0;
}

void jsonw_init(struct jsonw *w, struct sbuf *out)
{
	memset(w, 0, sizeof(*w));
	w->out = out;
	w->first[0] = 1;
}

int jsonw_failed(const struct jsonw *w)
{
	return w->failed;
}

static void put(struct jsonw *w, const char *s, size_t n)
{
	if (!w->failed && sbuf_add(w->out, s, n) < 0)
		w->failed = 1;
}

/* before_value - the comma that separates this value (or key) from the
 * previous one at the same depth */
static void before_value(struct jsonw *w)
{
	if (w->after_key) {
		w->after_key = 0;
		return;
	}
	if (!w->first[w->depth])
		put(w, ",", 1);
	w->first[w->depth] = 0;
}

static void open_nested(struct jsonw *w, char c)
{
	before_value(w);
	if (w->depth >= JSONW_MAX_DEPTH) {
		w->failed = 1;
		return;
	}
	put(w, &c, 1);
	w->first[++w->depth] = 1;
}

static void close_nested(struct jsonw *w, char c)
{
	if (w->depth == 0) {
		w->failed = 1;
		return;
	}
	w->depth--;
	w->after_key = 0;
	put(w, &c, 1);
}

void jsonw_object_begin(struct jsonw *w) { open_nested(w, '{'); }
void jsonw_object_end(struct jsonw *w)   { close_nested(w, '}'); }
void jsonw_array_begin(struct jsonw *w)  { open_nested(w, '['); }
void jsonw_array_end(struct jsonw *w)    { close_nested(w, ']'); }

void jsonw_key(struct jsonw *w, const char *key)
{
	char buf[64];
	size_t n = strlen(key), i, k = 0;

	/* the usual key (short, plain ASCII) goes in as one piece, with its
	 * comma, quotes and colon: an audit record has some thirty keys,
	 * and five appends each were most of the cost of writing it */
	if (n + 4 <= sizeof(buf)) {
		for (i = 0; i < n && plain((unsigned char)key[i]); i++)
			;
		if (i == n) {
			if (w->after_key) {	/* as before_value does */
				w->after_key = 0;
			} else {
				if (!w->first[w->depth])
					buf[k++] = ',';
				w->first[w->depth] = 0;
			}
			buf[k++] = '"';
			memcpy(buf + k, key, n);
			k += n;
			buf[k++] = '"';
			buf[k++] = ':';
			put(w, buf, k);
			w->after_key = 1;
			return;
		}
	}
	before_value(w);
	if (!w->failed && jsonw_escape(w->out, key, n) < 0)
		w->failed = 1;
	put(w, ":", 1);
	w->after_key = 1;
}

void jsonw_str(struct jsonw *w, const char *p, size_t len)
{
	before_value(w);
	if (!w->failed && jsonw_escape(w->out, p, len) < 0)
		w->failed = 1;
}

void jsonw_cstr(struct jsonw *w, const char *s)
{
	jsonw_str(w, s ? s : "", s ? strlen(s) : 0);
}

void jsonw_int(struct jsonw *w, int64_t v)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRId64, v);

	before_value(w);
	put(w, buf, (size_t)n);
}

void jsonw_bool(struct jsonw *w, int v)
{
	before_value(w);
	if (v)
		put(w, "true", 4);
	else
		put(w, "false", 5);
}

void jsonw_num(struct jsonw *w, double d, int decimals)
{
	char buf[64];
	int n;

	before_value(w);
	if (!isfinite(d)) {
		put(w, "null", 4);
		return;
	}
	if (decimals < 1)
		decimals = 1;
	if (decimals > 17)
		decimals = 17;
	n = snprintf(buf, sizeof(buf), "%.*f", decimals, d);
	if (n < 0 || (size_t)n >= sizeof(buf)) {   /* |d| >= 1e45 or so: no decimals needed */
		n = snprintf(buf, sizeof(buf), "%.17g", d);
		put(w, buf, (size_t)n);
		return;
	}
	/* trim trailing zeros, keep one decimal: 6.000 -> 6.0 */
	char *dot = strchr(buf, '.');
	if (dot != NULL) {
		char *end = buf + n - 1;
		while (end > dot + 1 && *end == '0')
			end--;
		n = (int)(end - buf + 1);
	}
	put(w, buf, (size_t)n);
}
