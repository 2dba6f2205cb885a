/* dmarc_record.c - a DMARC record as libopendmarc is to read it (dmarc.h).
 *
 * libopendmarc 1.4.2 refuses a whole record for one invalid value of an
 * optional tag (pct=200, pct=-1, adkim=x, fo=9, ri=soon, rf=xml: "bad
 * value"), which made a domain's p=reject a permerror: no policy, its
 * forgeries accepted.  RFC 7489 6.3: "Syntax errors in the remainder of
 * the record SHOULD be discarded in favor of default values (if any) or
 * ignored outright".  And it reads pct=abc as pct=0 (strtoul without an
 * end check): p=reject sampled down to quarantine for every failure,
 * where an invalid pct is the default, 100.
 *
 * So the library is handed a record rebuilt from the tags mailwarden
 * uses: v=DMARC1, p= and sp= as published (an invalid p= or sp= stays a
 * permerror, RFC 7489 6.6.3 step 6 names no default for them), adkim=,
 * aspf= and pct= only with a valid value.  The reporting tags (rua, ruf,
 * fo, rf, ri) are not handed on at all: mailwarden sends no reports, and
 * what the library does with them can only refuse the record; an invalid
 * fo, rf or ri is still named to the caller for the log.  Unknown tags
 * are ignored, as RFC 7489 6.3 asks.  Pure: no I/O, linear in the
 * record. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "filters/dmarc.h"
#include "proxy/sbuf.h"

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static int all_digits(const char *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i] < '0' || v[i] > '9')
			return 0;
	return n > 0;
}

/* prefix_of - v[0..n), non-empty, a prefix of word in any case: the
 * library takes "s" and "strict" alike, and a stricter reading than the
 * default must not be lost here */
static int prefix_of(const char *v, size_t n, const char *word)
{
	return n > 0 && n <= strlen(word) && strncasecmp(v, word, n) == 0;
}

/* pct_ok - 1*3DIGIT, at most 100 */
static int pct_ok(const char *v, size_t n)
{
	size_t i;
	unsigned x = 0;

	if (!all_digits(v, n) || n > 3)
		return 0;
	for (i = 0; i < n; i++)
		x = x * 10 + (unsigned)(v[i] - '0');
	return x <= 100;
}

/* ri_ok - 1*DIGIT that fits 32 bits */
static int ri_ok(const char *v, size_t n)
{
	unsigned long long x = 0;
	size_t i;

	if (!all_digits(v, n))
		return 0;
	for (i = 0; i < n; i++)
		if ((x = x * 10 + (unsigned)(v[i] - '0')) > 0xffffffffULL)
			return 0;
	return 1;
}

/* colon_list_ok - v[0..n) one or more items item_ok takes, colon
 * separated, blanks around each (fo and rf, RFC 7489 6.3) */
static int colon_list_ok(const char *v, size_t n, int (*item_ok)(const char *, size_t))
{
	size_t i = 0, s, e;

	for (;;) {
		while (i < n && is_wsp(v[i]))
			i++;
		for (s = i; i < n && v[i] != ':'; i++)
			;
		for (e = i; e > s && is_wsp(v[e - 1]); e--)
			;
		if (!item_ok(v + s, e - s))
			return 0;
		if (i == n)
			return 1;
		i++;            /* the colon */
	}
}

/* fo item: "0", "1", "d" or "s", in any case */
static int fo_item(const char *v, size_t n)
{
	return n == 1 && strchr("01dDsS", v[0]) != NULL;
}

/* rf item: "afrf", the one registered, or "iodef" of the drafts, which
 * the library knows too, in any case (the library splits at ',') */
static int rf_item(const char *v, size_t n)
{
	return (n == 4 && strncasecmp(v, "afrf", 4) == 0) || (n == 5 && strncasecmp(v, "iodef", 5) == 0);
}

/* the optional tags an invalid value of which is ignored, for the log */
static const char *const opt_names[] = { "adkim", "aspf", "pct", "fo", "rf", "ri" };
enum { OPT_ADKIM, OPT_ASPF, OPT_PCT, OPT_FO, OPT_RF, OPT_RI, OPT_N };

char *dmarc_record_clean(const char *txt, char *ignored, size_t isz)
{
	size_t len = strlen(txt), i = 0, k;
	unsigned bad = 0;
	struct sbuf out;

	/* each tag handed on costs at most 2 bytes more than it came with */
	sbuf_init(&out, 3 * len + 32);
	sbuf_adds(&out, "v=DMARC1");
	while (i < len) {
		const char *seg = txt + i, *semi = memchr(seg, ';', len - i), *eq;
		size_t sn = semi != NULL ? (size_t)(semi - seg) : len - i, tn, vn;
		const char *tag, *val;

		i += sn + 1;
		if ((eq = memchr(seg, '=', sn)) == NULL)
			continue;
		for (tag = seg; tag < eq && is_wsp(*tag); tag++)
			;
		for (tn = (size_t)(eq - tag); tn > 0 && is_wsp(tag[tn - 1]); tn--)
			;
		for (val = eq + 1; val < seg + sn && is_wsp(*val); val++)
			;
		for (vn = (size_t)(seg + sn - val); vn > 0 && is_wsp(val[vn - 1]); vn--)
			;
#define TAG(name) (tn == strlen(name) && strncasecmp(tag, name, tn) == 0)
		if (TAG("p") || TAG("sp")) {
			/* as published, the library judges them; one empty
			 * value the library would skip is no policy either */
			sbuf_addf(&out, "; %.*s=%.*s", (int)tn, tag, (int)vn, val);
		} else if (TAG("adkim") || TAG("aspf")) {
			if (prefix_of(val, vn, "strict") || prefix_of(val, vn, "relaxed"))
				sbuf_addf(&out, "; %.*s=%.*s", (int)tn, tag, (int)vn, val);
			else
				bad |= 1u << (TAG("adkim") ? OPT_ADKIM : OPT_ASPF);
		} else if (TAG("pct")) {
			if (pct_ok(val, vn))
				sbuf_addf(&out, "; pct=%.*s", (int)vn, val);
			else
				bad |= 1u << OPT_PCT;
		} else if (TAG("fo")) {
			if (!colon_list_ok(val, vn, fo_item))
				bad |= 1u << OPT_FO;
		} else if (TAG("rf")) {
			if (!colon_list_ok(val, vn, rf_item))
				bad |= 1u << OPT_RF;
		} else if (TAG("ri")) {
			if (!ri_ok(val, vn))
				bad |= 1u << OPT_RI;
		}
#undef TAG
	}
	if (isz > 0)
		ignored[0] = '\0';
	for (k = 0; isz > 0 && k < OPT_N; k++)
		if ((bad & (1u << k)) != 0 && strlen(ignored) + strlen(opt_names[k]) + 2 <= isz)
			snprintf(ignored + strlen(ignored), isz - strlen(ignored), "%s%s",
			    ignored[0] != '\0' ? " " : "", opt_names[k]);
	return sbuf_steal(&out);
}
