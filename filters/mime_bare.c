/* mime_bare.c - schemeless hosts and bare mail addresses in text
 * (mime_bare.h).  The host grammar follows SpamAssassin 4.0's
 * _tbirdurire "urischemeless" and is_fqdn_valid; where a word ends it is
 * a little wider: SpamAssassin takes "spammer.com" only when a space or
 * one of ><"`}]{[| follows (or ". "), so "spammer.com," or "(spammer.com)"
 * were no URI to it; here sentence punctuation before the end of the word
 * is cut off as its http:// URIs have it cut. */
#include <pthread.h>
#include <string.h>

#include <libpsl.h>

#include "filters/mime_bare.h"

#define HOST_MAX  253       /* RFC 1035, SpamAssassin's is_fqdn_valid */
#define LABEL_MAX 63
#define PORT_DIGITS 5
#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255

static int is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

/* starts_word - may a schemeless host start after c?  SpamAssassin's
 * $scstartdelim: white space, ESC, NBSP and ASCII punctuation but
 * . - _ % (a host's own characters, and an escape) */
static int starts_word(unsigned char c)
{
	return c <= ' ' || c == 0x1b || c == 0xa0 || (c != 0 && strchr("!\"#$&'()*+,/:;<=>?@[\\]^`{|}~", c));
}

/* ends_word - does t[k] end a URI's word?  SpamAssassin's $tbirdenddelim
 * (white space, ESC, NBSP, ><"`}]{[|), plus NBSP in UTF-8 and the end */
static int ends_word(const char *t, size_t len, size_t k)
{
	unsigned char c;

	if (k >= len)
		return 1;
	c = (unsigned char)t[k];
	if (c == 0xc2 && k + 1 < len && (unsigned char)t[k + 1] == 0xa0)
		return 1;
	return c <= ' ' || c == 0x1b || c == 0xa0 || strchr("><\"`}]{[|", c) != NULL;
}

static int host_char(unsigned char c)
{
	return is_alnum(c) || c == '.' || c == '-' || c == '_';
}

/* punct_then_end - k past sentence punctuation ends the word */
static int punct_then_end(const char *t, size_t len, size_t k)
{
	while (k < len && strchr(".,;:!?)", t[k]) != NULL && t[k] != '\0')
		k++;
	return ends_word(t, len, k);
}

/* fqdn_ok - h (n bytes, no trailing dot) as SpamAssassin's is_fqdn_valid
 * takes it (two labels or more of 1 to 63 letters, digits, '_' and '-',
 * '-' not first or last, '_' not in the last two), with a last label of
 * letters (or an IDNA "xn--" one) of two or more: "1.2.3" is no host */
static int fqdn_ok(const char *h, size_t n)
{
	size_t labels = 1, s, e;

	if (n == 0 || n > HOST_MAX)
		return 0;
	for (size_t k = 0; k < n; k++)
		labels += h[k] == '.';
	if (labels < 2)
		return 0;
	for (s = 0; s <= n; s = e + 1, labels--) {
		const char *l = h + s;
		size_t ln;

		for (e = s; e < n && h[e] != '.'; e++)
			;
		ln = e - s;
		if (ln == 0 || ln > LABEL_MAX || l[0] == '-' || l[ln - 1] == '-')
			return 0;
		if (labels <= 2 && memchr(l, '_', ln) != NULL)
			return 0;
		if (labels == 1) {
			if (ln >= 5 && (l[0] == 'x' || l[0] == 'X') && (l[1] == 'n' || l[1] == 'N') &&
			    l[2] == '-' && l[3] == '-')
				return 1;
			if (ln < 2)
				return 0;
			for (size_t k = 0; k < ln; k++)
				if (!is_alpha((unsigned char)l[k]))
					return 0;
			return 1;
		}
	}
	return 0;
}

size_t mime_bare_host(const char *t, size_t len, size_t i, size_t *hostlen)
{
	size_t j = i, h, k;

	*hostlen = 0;
	if (i >= len || !is_alnum((unsigned char)t[i]) || (i > 0 && !starts_word((unsigned char)t[i - 1])))
		return 0;
	while (j < len && host_char((unsigned char)t[j]))
		j++;
	h = j;
	if (t[h - 1] == '.')
		h--;                 /* "spammer.com." ending a sentence */
	if (!fqdn_ok(t + i, h - i))
		return 0;
	k = j;
	if (k < len && t[k] == ':') {
		size_t d = 0;

		while (k + 1 + d < len && is_digit((unsigned char)t[k + 1 + d]) && d <= PORT_DIGITS)
			d++;
		if (d >= 1 && d <= PORT_DIGITS && h == j)
			k += 1 + d;
	}
	/* a path is read by mime_bare_uri_len, once the top-level domain
	 * is known to be real */
	if (!(k < len && t[k] == '/') && !punct_then_end(t, len, k))
		return 0;            /* "spammer.com@x", "a.com%2e" ... */
	*hostlen = h - i;
	return (k > j ? k : h) - i;
}

/* utf8_cut - k moved back off the continuation bytes of a character
 * that starts before it (not before floor), so a cut path stays UTF-8 */
static size_t utf8_cut(const char *t, size_t k, size_t floor)
{
	size_t b = k;

	while (b > floor && k - b < 3 && ((unsigned char)t[b] & 0xc0) == 0x80)
		b--;
	return ((unsigned char)t[b] & 0xc0) == 0x80 ? k : b;
}

size_t mime_bare_uri_len(const char *t, size_t len, size_t i, size_t n, size_t max)
{
	size_t k = i + n, end = k, stop;

	/* a dot ending the host and then a path ("a.com./x"): the dot was
	 * no part of n, the path starts after it */
	if (k < len && t[k] == '.')
		k++;
	if (!(k < len && t[k] == '/'))
		return n;
	/* read at most max bytes of URI: a longer word is cut there and its
	 * rest is text of its own, as SpamAssassin's 2048-byte body pieces
	 * cut it; reading a word to its end for each candidate in it was
	 * quadratic in the word's length */
	stop = len - i > max ? i + max : len;
	if (stop <= k)
		stop = k + 1;   /* max shorter than the host: "host/" */
	while (k < stop && !ends_word(t, len, k))
		k++;
	if (k == stop && !ends_word(t, len, k))
		k = utf8_cut(t, k, end + 1);
	/* sentence punctuation after a URI is not part of it (as text_uris) */
	while (k > end + 1 && strchr(".,;:!?)]*", t[k - 1]) != NULL)
		k--;
	return k - i;
}

static int addr_char(unsigned char c)
{
	return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

size_t mime_bare_addr(const char *t, size_t len, size_t at, size_t *start)
{
	size_t a = at, b = at + 1;
	const char *dot;

	if (at >= len || t[at] != '@')
		return 0;
	while (a > 0 && addr_char((unsigned char)t[a - 1]) && at - a < ADDR_LOCAL_MAX)
		a--;
	while (b < len && (is_alnum((unsigned char)t[b]) || t[b] == '.' || t[b] == '-') && b - at < ADDR_DOMAIN_MAX)
		b++;
	while (b > at + 1 && (t[b - 1] == '.' || t[b - 1] == '-'))
		b--;
	while (a < at && t[a] == '.')
		a++;
	if (a == at || b <= at + 1)
		return 0;
	dot = memrchr(t + at + 1, '.', b - at - 1);
	if (dot == NULL || t + b - dot < 3)
		return 0;
	for (const char *c = dot + 1; c < t + b; c++)
		if (!is_alpha((unsigned char)*c))
			return 0;
	*start = a;
	return b;
}

static const psl_ctx_t *tld_psl;        /* libpsl's list: static, read-only */

static void tld_psl_setup(void)
{
	tld_psl = psl_builtin();
	if (tld_psl == NULL)
		tld_psl = psl_latest(NULL);     /* never freed: lives as the process */
}

int mime_bare_tld_ok(const char *host, size_t n)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	char tld[LABEL_MAX + 1];
	size_t s;

	if (n > 0 && host[n - 1] == '.')
		n--;
	for (s = n; s > 0 && host[s - 1] != '.'; s--)
		;
	if (n - s == 0 || n - s > LABEL_MAX)
		return 0;
	for (size_t k = s; k < n; k++) {
		unsigned char c = (unsigned char)host[k];

		tld[k - s] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
	}
	tld[n - s] = '\0';
	pthread_once(&once, tld_psl_setup);
	/* no list at all: nothing is known to be a domain, none is taken */
	return tld_psl != NULL && psl_is_public_suffix2(tld_psl, tld, PSL_TYPE_ICANN | PSL_TYPE_NO_STAR_RULE);
}
