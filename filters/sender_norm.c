/* sender_norm.c - the stable part of a tagged envelope sender (see
 * sender_norm.h).  Every step only shortens the local part, so the work
 * is done in place in the caller's buffer, with memmove. */
#include <string.h>

#include "filters/sender_norm.h"

#define ID_WORD_MIN 8          /* a hex word this long with a digit is an id */

static int is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_sep(char c)
{
	return c == '=' || c == '+' || c == '-';
}

/* field_end - the '=' ending the non-empty field at p (within end), or NULL */
static char *field_end(char *p, char *end)
{
	char *e = memchr(p, '=', (size_t)(end - p));

	return e != NULL && e > p ? e : NULL;
}

/* strip_batv - "prvs=TAG=rest" or "msprvs1=TAG=rest" -> "rest".  TAG is
 * what BATV signers put there: letters and digits (key, day, hash); a
 * local part merely starting with "prvs=" but not so is left alone. */
static void strip_batv(char *l, size_t *ln)
{
	static const char *const pfx[] = { "prvs=", "msprvs1=" };
	char *end = l + *ln, *t, *e;

	for (size_t i = 0; i < sizeof(pfx) / sizeof(pfx[0]); i++) {
		size_t pl = strlen(pfx[i]);

		if (*ln <= pl || memcmp(l, pfx[i], pl) != 0)
			continue;
		t = l + pl;
		if ((e = field_end(t, end)) == NULL || e - t > 64 || e + 1 >= end)
			return;
		for (char *p = t; p < e; p++)
			if (!is_alnum(*p))
				return;
		*ln = (size_t)(end - (e + 1));
		memmove(l, e + 1, *ln);
		return;
	}
}

/* strip_srs - if the local part was SRS, the offset of the original
 * sender's local part in what is left (the marker and the domains before
 * it are kept as they are), else 0.  SRS0's hash and timestamp, SRS1's two hashes and timestamp
 * (the parts that change per message or per day); the separator after
 * "SRS0"/"SRS1" may be '=', '+' or '-' (the SRS papers allow all three).
 * A local part that does not parse as SRS is left alone. */
static size_t strip_srs(char *l, size_t *ln)
{
	char *end = l + *ln, *p, *hash, *tt, *rest, *eq, *fwd = NULL, *fe = NULL;
	size_t w, n;

	if (*ln < 6 || memcmp(l, "srs", 3) != 0 || (l[3] != '0' && l[3] != '1') || !is_sep(l[4]))
		return 0;
	p = l + 5;
	if ((hash = field_end(p, end)) == NULL)
		return 0;
	p = hash + 1;
	if (l[3] == '1') {
		/* SRS1=HASH=fwd1.example==HASH=TT=orig.dom=orig: the inner
		 * SRS0 address follows "fwd1" and its own separator */
		fwd = p;
		if ((fe = field_end(p, end)) == NULL || fe + 1 >= end || !is_sep(fe[1]))
			return 0;
		p = fe + 2;
		if ((hash = field_end(p, end)) == NULL)
			return 0;
		p = hash + 1;
	}
	if ((tt = field_end(p, end)) == NULL)
		return 0;
	rest = tt + 1;
	/* orig.dom=orig: both parts there */
	if ((eq = field_end(rest, end)) == NULL || eq + 1 >= end)
		return 0;
	l[4] = '=';
	w = 5;
	if (fwd != NULL) {
		n = (size_t)(fe - fwd);
		memmove(l + w, fwd, n);
		w += n;
		l[w++] = '=';
		l[w++] = '=';
	}
	n = (size_t)(end - rest);
	memmove(l + w, rest, n);
	*ln = w + n;
	return w + (size_t)(eq - rest) + 1;      /* the original's local part */
}

/* strip_ext - "+ext" (Postfix's and most sites' recipient_delimiter) from
 * the first '+' on; a '+' in first place is kept (nothing would be left) */
static void strip_ext(char *l, size_t *ln)
{
	char *plus = *ln > 1 ? memchr(l + 1, '+', *ln - 1) : NULL;

	if (plus != NULL)
		*ln = (size_t)(plus - l);
}

/* hash_ids - digit runs -> '#', hex words of ID_WORD_MIN or more holding
 * a digit -> '#': list and ESP bounce addresses carry a message or
 * subscriber number (VERP: bounces-1000123-...), often in hex.  Only hex:
 * a word of other letters and digits (j0hn2smith) is more likely a
 * mailbox of its own, told apart from its neighbours by its letters.  The
 * first from bytes (strip_srs' marker and domains) are kept. */
static void hash_ids(char *l, size_t *ln, size_t from)
{
	size_t r = from, w = from, n = *ln;

	while (r < n) {
		size_t s = r, digits = 0, hex = 1;

		if (!is_alnum(l[r])) {
			l[w++] = l[r++];
			continue;
		}
		for (; r < n && is_alnum(l[r]); r++) {
			if (l[r] >= '0' && l[r] <= '9')
				digits++;
			else if (l[r] > 'f')
				hex = 0;
		}
		if (digits > 0 && hex && r - s >= ID_WORD_MIN) {
			l[w++] = '#';
			continue;
		}
		/* l[i - 1] may be overwritten already: the run is tracked */
		for (size_t i = s, in_run = 0; i < r; i++) {
			int d = l[i] >= '0' && l[i] <= '9';

			if (!d)
				l[w++] = l[i];
			else if (!in_run)
				l[w++] = '#';
			in_run = (size_t)d;
		}
	}
	*ln = w;
}

/* normalise - sender_norm, with the ids of the local part hashed or not */
static int normalise(const char *in, char *out, size_t outsz, int ids)
{
	size_t len = strlen(in), ln, dl, keep;
	char *at;

	if (outsz == 0)
		return -1;
	if (len >= outsz) {
		out[0] = '\0';
		return -1;
	}
	for (size_t i = 0; i <= len; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] - 'A' + 'a') : in[i];
	at = strrchr(out, '@');
	ln = at != NULL ? (size_t)(at - out) : len;
	dl = len - ln;                 /* "@domain", or 0 */
	strip_batv(out, &ln);
	keep = strip_srs(out, &ln);
	strip_ext(out, &ln);
	if (ids)
		hash_ids(out, &ln, keep);
	/* the domain moves down behind the shortened local part */
	memmove(out + ln, out + len - dl, dl + 1);
	return (int)(ln + dl);
}

int sender_norm(const char *in, char *out, size_t outsz)
{
	return normalise(in, out, outsz, 1);
}

int sender_norm_tags(const char *in, char *out, size_t outsz)
{
	return normalise(in, out, outsz, 0);
}
