/* utf8.c - UTF-8 validation and repair (RFC 3629, Unicode 15 table 3-7).
 *
 * Why: the audit log is one JSON line per transaction and its fields hold
 * client bytes (HELO, MAIL FROM, Subject, upstream replies).  json-c
 * escapes quotes, backslashes and control characters but copies bytes >=
 * 0x80 as they are, so invalid UTF-8 would make the line invalid JSON.
 * We repair the serialized text: valid sequences stay, every ill-formed
 * one becomes U+FFFD, using "maximal subparts" (the practice Unicode
 * recommends, and what Python's bytes.decode(errors='replace') does), so
 * a log reader in any language sees the same text.
 */
#include <stdio.h>
#include <string.h>

#include "proxy/sbuf.h"
#include "proxy/utf8.h"

static const char REPL[3] = { '\xef', '\xbf', '\xbd' };	/* U+FFFD */

size_t utf8_seq(const unsigned char *p, size_t len, size_t *bad)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t need, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		need = 1;
	else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		if (c == 0xe0)
			lo = 0xa0;		/* no overlongs */
		else if (c == 0xed)
			hi = 0x9f;		/* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		if (c == 0xf0)
			lo = 0x90;		/* no overlongs */
		else if (c == 0xf4)
			hi = 0x8f;		/* nothing above U+10FFFF */
	} else {			/* 80..C1 (stray, overlong), F5..FF */
		*bad = 1;
		return 0;
	}
	for (i = 1; i <= need; i++) {
		if (i >= len || p[i] < lo || p[i] > hi) {
			*bad = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return need + 1;
}

unsigned utf8_decode(const unsigned char *p, size_t n)
{
	static const unsigned char lead_mask[] = { 0, 0x7f, 0x1f, 0x0f, 0x07 };
	unsigned cp;

	if (n == 0 || n > 4)
		return 0;
	cp = p[0] & lead_mask[n];
	for (size_t i = 1; i < n; i++)
		cp = (cp << 6) | (p[i] & 0x3f);
	return cp;
}

int utf8_cp_acts(unsigned cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x61c || cp == 0x200e || cp == 0x200f
	    || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

int utf8_has_8bit(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] >= 0x80)
			return 1;
	return 0;
}

int utf8_valid(const char *p, size_t len)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0, n, bad;

	while (i < len) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		if ((n = utf8_seq(u + i, len - i, &bad)) == 0)
			return 0;
		i += n;
	}
	return 1;
}

int utf8_sanitize_sbuf(struct sbuf *out, const char *in, size_t len)
{
	const unsigned char *u = (const unsigned char *)in;
	size_t i = 0, start = 0, n, bad;

	while (i < len) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		if ((n = utf8_seq(u + i, len - i, &bad)) != 0) {
			i += n;
			continue;
		}
		/* copy the good run, then one replacement */
		if (sbuf_add(out, in + start, i - start) < 0
		    || sbuf_add(out, REPL, sizeof(REPL)) < 0)
			return -1;
		i += bad;
		start = i;
	}
	return sbuf_add(out, in + start, i - start);
}

/* term_ascii_esc - in a QUOTED or WORD mode, the escape of the ASCII
 * character c that log_esc_quoted / log_esc_word would escape (they and
 * these must agree: a line's fields read the same in the log and on the
 * terminal), or NULL */
static const char *term_ascii_esc(unsigned c, int mode, char buf[8])
{
	if (mode < UTF8_TERM_QUOTED)
		return NULL;
	if (c == '\\')
		return "\\\\";
	/* not '=' (log_esc_quoted/_word escape it): inside quotes whose '"'
	 * is escaped, and in a word that a space, '<' or '>' cannot end, it
	 * forges nothing, and it is in every RFC 2047 Subject (=?UTF-8?B?...?=)
	 * and BATV/SRS/VERP sender (prvs=, SRS0=, +user=domain@), which must
	 * stay readable and greppable */
	if (c == '\t' || c == '"'
	    || (mode == UTF8_TERM_WORD && (c == ' ' || c == '<' || c == '>'))) {
		snprintf(buf, 8, "\\x%02x", c);
		return buf;
	}
	return NULL;
}

int utf8_term_sbuf(struct sbuf *out, const char *in, size_t len, int mode)
{
	const unsigned char *u = (const unsigned char *)in;
	int json = mode == UTF8_TERM_JSON;
	size_t i = 0, k, bad;
	unsigned cp;
	const char *e;
	char ebuf[8];
	int r;

	while (i < len) {
		k = utf8_seq(u + i, len - i, &bad);
		if (k == 0) {
			r = sbuf_add(out, REPL, sizeof(REPL));
			i += bad;
		} else {
			cp = utf8_decode(u + i, k);
			if ((e = term_ascii_esc(cp, mode, ebuf)) != NULL)
				r = sbuf_add(out, e, strlen(e));
			else if (!utf8_cp_acts(cp) || cp == '\t' || (json && cp < 0x20))
				r = sbuf_add(out, in + i, k);
			else if (json || cp > 0x7f)
				r = sbuf_addf(out, "\\u%04x", cp);
			else
				r = sbuf_addf(out, "\\x%02x", cp);
			i += k;
		}
		if (r < 0)
			return -1;
	}
	return 0;
}

size_t utf8_sanitize(const char *in, size_t len, char *out, size_t outsz)
{
	const unsigned char *u = (const unsigned char *)in;
	size_t i = 0, o = 0, n, bad;

	if (outsz == 0)
		return 0;
	while (i < len) {
		if ((n = utf8_seq(u + i, len - i, &bad)) != 0) {
			if (o + n > outsz - 1)
				break;
			memcpy(out + o, in + i, n);
			o += n;
			i += n;
		} else {
			if (o + sizeof(REPL) > outsz - 1)
				break;
			memcpy(out + o, REPL, sizeof(REPL));
			o += sizeof(REPL);
			i += bad;
		}
	}
	out[o] = '\0';
	return o;
}
