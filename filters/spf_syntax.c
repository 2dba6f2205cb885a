/* spf_syntax.c - RFC 7208 record syntax (section 12 ABNF), checked for the
 * records libspf2 evaluates: libspf2 1.2.10 accepts records RFC 7208 says
 * are a permerror (a numeric top label, unknown macro letters, two
 * redirect= modifiers, control characters...), so spf.c checks every SPF
 * record its DNS layer hands to libspf2 with this, and turns the result
 * into permerror when one is broken.  Pure function, no I/O.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <arpa/inet.h>

#include "filters/spf_syntax.h"

/* one_of - c is one of the characters of set.  Not strchr alone: it finds
 * set's terminating NUL too, so a NUL byte in a record (TXT data may hold
 * any byte) would pass as a qualifier, a macro letter or a delimiter. */
static int one_of(int c, const char *set)
{
	return c != '\0' && strchr(set, c) != NULL;
}

static int fail(char *why, size_t whylen, const char *what, const char *term, size_t tlen)
{
	snprintf(why, whylen, "%s in \"%.*s\"", what, (int)(tlen > 80 ? 80 : tlen), term);
	return 0;
}

/* macro_string - s[0..n) is a macro-string; exp_letters: c, r, t allowed */
static int macro_string(const char *s, size_t n, int exp_letters)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = (unsigned char)s[i];

		if (c == '%') {
			if (i + 1 >= n)
				return 0;
			if (s[i + 1] == '%' || s[i + 1] == '_' || s[i + 1] == '-') {
				i += 2;
				continue;
			}
			if (s[i + 1] != '{' || i + 2 >= n)
				return 0;
			i += 2;
			c = (unsigned char)tolower((unsigned char)s[i]);
			if (!one_of(c, "slodiphv") && !(exp_letters && one_of(c, "crt")))
				return 0;
			i++;
			while (i < n && isdigit((unsigned char)s[i]))
				i++;
			if (i < n && (s[i] == 'r' || s[i] == 'R'))
				i++;
			while (i < n && one_of(s[i], ".-+,/_="))
				i++;
			if (i >= n || s[i] != '}')
				return 0;
			i++;
		} else if (c >= 0x21 && c <= 0x7e) {
			i++;
		} else {
			return 0;
		}
	}
	return 1;
}

/* toplabel - ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static int toplabel(const char *s, size_t n)
{
	size_t i;
	int alpha = 0;

	if (n == 0 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return 0;
	for (i = 0; i < n; i++) {
		if (isalpha((unsigned char)s[i]))
			alpha = 1;
		else if (!isdigit((unsigned char)s[i]) && s[i] != '-')
			return 0;
	}
	return alpha || memchr(s, '-', n) != NULL;
}

/* domain_spec - macro-string domain-end, domain-end = ( "." toplabel [ "." ] ) / macro-expand */
static int domain_spec(const char *s, size_t n)
{
	size_t end = n, dot;

	if (n == 0 || !macro_string(s, n, 0))
		return 0;
	if (s[n - 1] == '}') {
		/* ends in a macro-expand: find its "%{" (no '}' inside one) */
		const char *open = NULL;
		size_t i;

		for (i = 0; i + 1 < n; i++)
			if (s[i] == '%' && s[i + 1] == '{')
				open = s + i;
			else if (s[i] == '%')
				i++;	/* %%, %_, %- */
		if (open != NULL && memchr(open, '}', (size_t)(s + n - open)) == s + n - 1)
			return 1;
	}
	if (s[end - 1] == '.')
		end--;
	if (end == 0)
		return 0;
	for (dot = end; dot > 0 && s[dot - 1] != '.'; dot--)
		;
	if (dot == 0)
		return 0;	/* needs "." toplabel */
	return toplabel(s + dot, end - dot);
}

/* cidr - "/" number in 0..max, no leading zero; *len gets the bytes used */
static int cidr(const char *s, size_t n, unsigned max, size_t *len)
{
	size_t i = 1;
	unsigned v = 0;

	if (n < 2 || s[0] != '/' || !isdigit((unsigned char)s[1]))
		return 0;
	if (s[1] == '0' && n > 2 && isdigit((unsigned char)s[2]))
		return 0;
	while (i < n && isdigit((unsigned char)s[i]) && i < 5)
		v = v * 10 + (unsigned)(s[i++] - '0');
	if (v > max)
		return 0;
	*len = i;
	return 1;
}

/* dual_cidr_tail - how many bytes at the end of s[0..n) are a
 * dual-cidr-length ("/N", "//N", "/N//M"); -1 if a '/' suffix is malformed
 * digits (a '/' followed by non-digits is part of the domain) */
static size_t dual_cidr_tail(const char *s, size_t n, int *bad)
{
	size_t i = n, len;

	*bad = 0;
	while (i > 0 && isdigit((unsigned char)s[i - 1]))
		i--;
	if (i == n || i == 0 || s[i - 1] != '/')
		return 0;
	i--;
	if (i > 0 && s[i - 1] == '/') {
		/* "//M": an ip6 length, maybe after an ip4 one */
		if (!cidr(s + i, n - i, 128, &len) || len != n - i) {
			*bad = 1;
			return 0;
		}
		i--;
		{
			size_t j = i;

			while (j > 0 && isdigit((unsigned char)s[j - 1]))
				j--;
			if (j < i && j > 0 && s[j - 1] == '/') {
				if (!cidr(s + j - 1, i - j + 1, 32, &len) || len != i - j + 1) {
					*bad = 1;
					return 0;
				}
				return n - (j - 1);
			}
		}
		return n - i;
	}
	if (!cidr(s + i, n - i, 32, &len) || len != n - i) {
		*bad = 1;
		return 0;
	}
	return n - i;
}

static int ip4_network(const char *s, size_t n)
{
	char buf[20];
	unsigned char a[4];
	size_t i, digits = 0;

	if (n == 0 || n >= sizeof(buf))
		return 0;
	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			digits = 0;
			continue;
		}
		if (!isdigit((unsigned char)s[i]))
			return 0;
		if (digits > 0 && s[i - digits] == '0')
			return 0;	/* no leading zeros */
		digits++;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET, buf, a) == 1;
}

static int ip6_network(const char *s, size_t n)
{
	char buf[64];
	unsigned char a[16];

	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET6, buf, a) == 1;
}

static int word_is(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* term - one directive or modifier */
static int term(const char *t, size_t n, int *redirects, int *exps, char *why, size_t whylen)
{
	const char *s = t;
	size_t k, name_len, rest;
	const char *arg;

	/* modifier: name "=" macro-string */
	for (k = 0; k < n && (isalnum((unsigned char)t[k]) || t[k] == '-' || t[k] == '_'
	    || t[k] == '.'); k++)
		;
	if (k < n && t[k] == '=' && k > 0) {
		if (!isalpha((unsigned char)t[0]))
			return fail(why, whylen, "bad modifier name", t, n);
		arg = t + k + 1;
		rest = n - k - 1;
		if (word_is(t, k, "redirect")) {
			if (++*redirects > 1)
				return fail(why, whylen, "redirect given twice", t, n);
			if (!domain_spec(arg, rest))
				return fail(why, whylen, "bad domain-spec", t, n);
		} else if (word_is(t, k, "exp")) {
			if (++*exps > 1)
				return fail(why, whylen, "exp given twice", t, n);
			if (!domain_spec(arg, rest))
				return fail(why, whylen, "bad domain-spec", t, n);
		} else if (!macro_string(arg, rest, 0)) {
			return fail(why, whylen, "bad macro-string", t, n);
		}
		return 1;
	}
	/* directive: [qualifier] mechanism */
	if (n > 0 && one_of(s[0], "+-?~")) {
		s++;
		n--;
	}
	for (name_len = 0; name_len < n && isalnum((unsigned char)s[name_len]); name_len++)
		;
	arg = s + name_len;
	rest = n - name_len;
	if (word_is(s, name_len, "all"))
		return rest == 0 ? 1 : fail(why, whylen, "\"all\" takes nothing", t, n);
	if (word_is(s, name_len, "include") || word_is(s, name_len, "exists")) {
		if (rest < 2 || arg[0] != ':' || !domain_spec(arg + 1, rest - 1))
			return fail(why, whylen, "bad domain-spec", t, n);
		return 1;
	}
	if (word_is(s, name_len, "a") || word_is(s, name_len, "mx")) {
		int bad;
		size_t tail = dual_cidr_tail(arg, rest, &bad);

		if (bad)
			return fail(why, whylen, "bad CIDR length", t, n);
		rest -= tail;
		if (rest == 0)
			return 1;
		if (arg[0] != ':' || !domain_spec(arg + 1, rest - 1))
			return fail(why, whylen, "bad domain-spec", t, n);
		return 1;
	}
	if (word_is(s, name_len, "ptr")) {
		if (rest == 0)
			return 1;
		if (arg[0] != ':' || !domain_spec(arg + 1, rest - 1))
			return fail(why, whylen, "bad domain-spec", t, n);
		return 1;
	}
	if (word_is(s, name_len, "ip4") || word_is(s, name_len, "ip6")) {
		int v6 = word_is(s, name_len, "ip6");
		const char *slash;
		size_t net_len, len;

		if (rest < 2 || arg[0] != ':')
			return fail(why, whylen, "bad address", t, n);
		arg++;
		rest--;
		slash = memchr(arg, '/', rest);
		net_len = slash != NULL ? (size_t)(slash - arg) : rest;
		if (!(v6 ? ip6_network(arg, net_len) : ip4_network(arg, net_len)))
			return fail(why, whylen, "bad address", t, n);
		if (slash != NULL && (!cidr(slash, rest - net_len, v6 ? 128 : 32, &len)
		    || len != rest - net_len))
			return fail(why, whylen, "bad CIDR length", t, n);
		return 1;
	}
	return fail(why, whylen, "unknown mechanism", t, n);
}

int spf_record_syntax_ok(const char *rec, size_t len, char *why, size_t whylen)
{
	size_t i = 6;
	int redirects = 0, exps = 0;

	if (len < 6 || strncasecmp(rec, "v=spf1", 6) != 0)
		return fail(why, whylen, "not an SPF record", rec, len);
	/* the ABNF has only SP and VCHAR; checked here once because a term's
	 * own check may not see every byte (inet_pton stops at a NUL, so
	 * "ip6:::1\0junk" passed; found by fuzz_spf) */
	for (i = 0; i < len; i++)
		if ((unsigned char)rec[i] < 0x20 || (unsigned char)rec[i] > 0x7e)
			return fail(why, whylen, "not printable US-ASCII", rec, len);
	i = 6;
	for (;;) {
		size_t start, sp = 0;

		while (i < len && rec[i] == ' ') {
			i++;
			sp++;
		}
		if (i >= len)
			return 1;
		if (sp == 0)
			return fail(why, whylen, "terms must be separated by spaces", rec, len);
		for (start = i; i < len && rec[i] != ' '; i++)
			;
		if (!term(rec + start, i - start, &redirects, &exps, why, whylen))
			return 0;
	}
}

/* has_all - does the record hold an "all" mechanism (any qualifier)? */
static int has_all(const char *rec, size_t len)
{
	size_t i = 0, start;

	while (i < len) {
		if (rec[i] == ' ') {
			i++;
			continue;
		}
		for (start = i; i < len && rec[i] != ' '; i++)
			;
		if (one_of(rec[start], "+-?~"))
			start++;
		if (word_is(rec + start, i - start, "all"))
			return 1;
	}
	return 0;
}

size_t spf_strip_unknown_modifiers(const char *rec, size_t len, char *out)
{
	size_t i = 0, o = 0;
	int all = has_all(rec, len);

	while (i < len) {
		size_t start, k;

		if (rec[i] == ' ') {
			out[o++] = rec[i++];
			continue;
		}
		for (start = i; i < len && rec[i] != ' '; i++)
			;
		for (k = start; k < i && (isalnum((unsigned char)rec[k]) || rec[k] == '-'
		    || rec[k] == '_' || rec[k] == '.'); k++)
			;
		if (start > 0 && k < i && rec[k] == '=' && k > start
		    && !word_is(rec + start, k - start, "exp")
		    && (all || !word_is(rec + start, k - start, "redirect")))
			continue;	/* an unknown modifier, or a redirect with "all" (6.1): left out */
		memcpy(out + o, rec + start, i - start);
		o += i - start;
	}
	out[o] = '\0';
	return o;
}

/* cidr_value - the number at the start of s[0..n) (a length that
 * dual_cidr_tail checked: at most 3 digits) */
static int cidr_value(const char *s, size_t n)
{
	int v = 0;

	for (size_t i = 0; i < n && i < 3 && isdigit((unsigned char)s[i]); i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/* put - append n bytes to out (room for a final NUL kept); -1 if full */
static int put(char *out, size_t outsz, size_t *o, const char *s, size_t n)
{
	if (*o + n + 1 > outsz)
		return -1;
	memcpy(out + *o, s, n);
	*o += n;
	return 0;
}

size_t spf_rewrite_cidr0(const char *rec, size_t len, int client_v6, char *out, size_t outsz)
{
	size_t i = 0, o = 0;
	int changed = 0;

	while (i < len) {
		size_t start, name_len, rest, q = 0;
		const char *t, *arg;

		if (rec[i] == ' ') {
			if (put(out, outsz, &o, " ", 1) < 0)
				return 0;
			i++;
			continue;
		}
		for (start = i; i < len && rec[i] != ' '; i++)
			;
		t = rec + start;
		if (one_of(t[0], "+-?~"))
			q = 1;
		for (name_len = 0; q + name_len < i - start && isalnum((unsigned char)t[q + name_len]);
		    name_len++)
			;
		arg = t + q + name_len;
		rest = i - start - q - name_len;
		if ((word_is(t + q, name_len, "ip4") || word_is(t + q, name_len, "ip6"))
		    && rest >= 3 && arg[rest - 2] == '/' && arg[rest - 1] == '0') {
			int v6 = word_is(t + q, name_len, "ip6");

			changed = 1;
			if (v6 != client_v6)
				continue;	/* never matches this client: left out */
			if (put(out, outsz, &o, t, q) < 0 || put(out, outsz, &o, "all", 3) < 0)
				return 0;
			continue;
		}
		if (word_is(t + q, name_len, "a") || word_is(t + q, name_len, "mx")) {
			int bad, c4 = -1, c6 = -1;
			size_t tail = dual_cidr_tail(arg, rest, &bad), dom_len = rest - tail, k;
			const char *c = arg + dom_len, *slash2;
			char num[16];

			/* the lengths: "/N", "//M" or "/N//M", read within the term:
			 * rec[0..len) need not be NUL-terminated, so no strstr or
			 * atoi, which ran past its end (found by fuzz_spf) */
			slash2 = tail >= 2 ? memmem(c, tail, "//", 2) : NULL;
			if (tail > 0 && c[1] != '/')
				c4 = cidr_value(c + 1, tail - 1);
			if (slash2 != NULL)
				c6 = cidr_value(slash2 + 2, (size_t)(c + tail - (slash2 + 2)));
			if (bad || (c4 != 0 && c6 != 0)) {
				if (put(out, outsz, &o, t, i - start) < 0)
					return 0;
				continue;
			}
			changed = 1;
			if (put(out, outsz, &o, t, q + name_len) < 0)
				return 0;
			if ((client_v6 ? c6 : c4) == 0) {
				/* ":DOMAIN" (without a final dot) or ":%{d}", then the suffix */
				if (dom_len > 0) {
					k = dom_len;
					if (arg[k - 1] == '.')
						k--;
					if (put(out, outsz, &o, arg, k) < 0)
						return 0;
				} else if (put(out, outsz, &o, ":%{d}", 5) < 0) {
					return 0;
				}
				if (put(out, outsz, &o, SPF_CIDR0_SUFFIX, strlen(SPF_CIDR0_SUFFIX)) < 0)
					return 0;
				continue;
			}
			/* the 0 is the other family's: keep the domain and this family's length */
			if (put(out, outsz, &o, arg, dom_len) < 0)
				return 0;
			if (!client_v6 && c4 > 0) {
				snprintf(num, sizeof(num), "/%d", c4);
				if (put(out, outsz, &o, num, strlen(num)) < 0)
					return 0;
			}
			if (client_v6 && c6 > 0) {
				snprintf(num, sizeof(num), "//%d", c6);
				if (put(out, outsz, &o, num, strlen(num)) < 0)
					return 0;
			}
			continue;
		}
		if (put(out, outsz, &o, t, i - start) < 0)
			return 0;
	}
	if (!changed)
		return 0;
	out[o] = '\0';
	return o;
}

int spf_explain_string_ok(const char *s, size_t len)
{
	size_t i = 0, start;

	while (i < len) {
		if (s[i] == ' ') {
			i++;
			continue;
		}
		for (start = i; i < len && s[i] != ' '; i++)
			;
		if (!macro_string(s + start, i - start, 1))
			return 0;
	}
	return 1;
}
