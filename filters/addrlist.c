/* addrlist.c - domains of an RFC 5322 address list (addrlist.h).
 *
 * Two passes over a copy of the whole field: first comments go and quoted
 * strings shrink to a placeholder (so neither ',' nor '@' nor '<' inside
 * them counts), then the text is cut at top-level ',' and ';' (group
 * ends), a group's "name:" is dropped, and each mailbox is parsed per the
 * grammar (one_mailbox): an addr-spec, or a display name and one
 * angle-addr.  A mailbox that is neither has no domain (""), which DMARC
 * and the DKIM signer refuse: what a reader makes of an invalid field
 * differs from reader to reader, and any guess of ours is a domain a
 * forger may pick.
 *
 * The whole field, however long: the copy was cut at 4,096 bytes, and
 * "From: x@nodmarc.test" + 4,200 blanks of folding + " <ceo@sign.test>",
 * which GMime and mail programs show as ceo@sign.test, was read as
 * x@nodmarc.test (DMARC of the wrong domain: a p=reject forgery
 * delivered), a second mailbox past the cut not counted.  The field is
 * bounded by the message; each pass is linear in it. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <idn2.h>

#include "filters/addrlist.h"
#include "proxy/sbuf.h"

#define ADDRLIST_STACK 4096   /* fields shorter than this are copied on the stack */

int domain_ok(const char *d)
{
	size_t n = strlen(d), lab = 0, labels = 0, i;

	if (n == 0 || n > 253)
		return 0;
	for (i = 0; i <= n; i++) {
		char c = d[i];

		if (c == '.' || c == '\0') {
			if (lab == 0 || lab > 63)
				return 0;
			labels++;
			lab = 0;
			continue;
		}
		if (!isalnum((unsigned char)c) && c != '-' && c != '_')
			return 0;
		lab++;
	}
	return labels >= 2;
}

/* The text the mailbox parsers below see is pass 1's: comments are one
 * blank, a quoted-string is the one byte '"' (QS), so an '@', '<' or ','
 * inside either counts for nothing. */
#define QS '"'

/* atext - RFC 5322 atext; bytes past 0x7f are UTF-8 (RFC 6532).  ASCII
 * classes by hand: no locale may widen them. */
static int atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c >= 0x80 || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static size_t skip_wsp(const char *s, size_t i, size_t n)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return i;
}

/* phrase_ok - is s[0..n) a phrase (a group's name): words (atoms,
 * quoted-strings), with blanks and, as obs-phrase allows, dots between
 * them ("John Q. Public")?  Empty is one only when may_be_empty.  An
 * unquoted '@', '<', '>', '[' or '\' is not: GMime reads
 * "ceo@victim.test: x@evil.test;" as the mailbox ceo@victim.test.  A
 * mailbox's display name is display_name_ok's. */
static int phrase_ok(const char *s, size_t n, int may_be_empty)
{
	size_t i, words = 0;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == QS || atext(c))
			words++;
		else if (c != ' ' && c != '\t' && c != '.')
			return 0;
	}
	return words > 0 || may_be_empty;
}

/* domain_at - a domain at s[*i..n): dot-atom, or obs-domain (blanks and
 * comments around the dots: "victim . test"), or a domain-literal.  The
 * name, lower case, without blanks and without one final dot, into out
 * ("" for a literal or a name too long: no DMARC domain); *i past it.
 * 0, or -1 when there is no domain there. */
static int domain_at(const char *s, size_t *i, size_t n, char *out)
{
	size_t k = 0, j = skip_wsp(s, *i, n);
	int too_long = 0;

	out[0] = '\0';
	if (j < n && s[j] == '[') {          /* domain-literal: dtext, no '[' '\' */
		for (j++; j < n && s[j] != ']'; j++)
			if (s[j] == '[' || s[j] == '\\' || s[j] == QS)
				return -1;
		if (j == n)
			return -1;
		*i = skip_wsp(s, j + 1, n);
		return 0;
	}
	for (;;) {
		if (j >= n || !atext((unsigned char)s[j]))
			return -1;               /* an empty label */
		for (; j < n && atext((unsigned char)s[j]); j++) {
			if (k < ADDR_DOMAIN_MAX)
				out[k++] = (char)(s[j] >= 'A' && s[j] <= 'Z' ? s[j] - 'A' + 'a' : s[j]);
			else
				too_long = 1;
		}
		j = skip_wsp(s, j, n);
		if (j >= n || s[j] != '.')
			break;
		j = skip_wsp(s, j + 1, n);
		/* one final dot ("a@example.com."), as before: an absolute name */
		if (j >= n || s[j] == '>' || s[j] == ',' || s[j] == ':')
			break;
		if (k < ADDR_DOMAIN_MAX)
			out[k++] = '.';
		else
			too_long = 1;
	}
	out[too_long ? 0 : k] = '\0';
	*i = j;
	return 0;
}

/* addr_spec - is s[0..n) exactly one addr-spec: a local part of words
 * (dot-atom, quoted-string, obs-local-part: blanks around the dots), one
 * unquoted '@', a domain?  Its domain into out.  0, or -1 ("ceo
 * x@evil.test", "ceo@victim.test@evil.test", "a@b,c@d": not one address,
 * whatever part of it a reader would take).  Empty words between dots
 * ("a..b", "a.") are let through: they are RFC 5322's obs- forms' only
 * gap that mail really carries, and cannot hide an '@'. */
static int addr_spec(const char *s, size_t n, char *out)
{
	size_t i = skip_wsp(s, 0, n);
	int words = 0;

	out[0] = '\0';
	for (;;) {
		if (i < n && s[i] == QS) {
			i++;
			words++;
		} else if (i < n && atext((unsigned char)s[i])) {
			while (i < n && atext((unsigned char)s[i]))
				i++;
			words++;
		}
		i = skip_wsp(s, i, n);
		if (i < n && s[i] == '.') {
			i = skip_wsp(s, i + 1, n);
			continue;
		}
		break;
	}
	if (words == 0 || i >= n || s[i] != '@')
		return -1;
	i++;
	if (domain_at(s, &i, n, out) < 0 || skip_wsp(s, i, n) != n) {
		out[0] = '\0';
		return -1;
	}
	return 0;
}

/* route_len - the length of an obs-route at the start of s[0..n)
 * ("@a.test,@b.test:"), 0 if there is none, -1 if one is broken */
static long route_len(const char *s, size_t n)
{
	char scratch[ADDR_DOMAIN_MAX + 1];
	size_t i = skip_wsp(s, 0, n);
	int domains = 0;

	if (i >= n || (s[i] != '@' && s[i] != ','))
		return 0;
	for (;;) {
		while (i < n && (s[i] == ',' || s[i] == ' ' || s[i] == '\t'))
			i++;
		if (i < n && s[i] == ':')
			return domains > 0 ? (long)(i + 1) : -1;
		if (i >= n || s[i] != '@')
			return -1;
		i++;
		if (domain_at(s, &i, n, scratch) < 0)
			return -1;
		domains++;
		if (i < n && s[i] != ',' && s[i] != ':')
			return -1;
	}
}

/* same_domain - are a and b (lower case ASCII, or UTF-8 left as written)
 * one domain?  Byte for byte, or else in their IDNA A-label form, as
 * dmarc.c names the From domain: "b\xc3\xbccher.test", "B\xc3\x9c" "CHER.test"
 * and "xn--bcher-kva.test" are one. */
static int same_domain(const char *a, const char *b)
{
	char *x = NULL, *y = NULL;
	int same;

	if (strcmp(a, b) == 0)
		return 1;
	same = idn2_to_ascii_8z(a, &x, IDN2_NONTRANSITIONAL) == IDN2_OK &&
	    idn2_to_ascii_8z(b, &y, IDN2_NONTRANSITIONAL) == IDN2_OK && x != NULL && y != NULL &&
	    strcmp(x, y) == 0;
	idn2_free(x);
	idn2_free(y);
	return same;
}

/* display_name_ok - is s[0..n) the display name of a mailbox whose
 * address is at domain dom?  A phrase (phrase_ok; and '[' ']', as in
 * "[Ticket #42] Support", which name no domain), or one where each
 * unquoted '@' is followed by dom itself or by a name of one label:
 * "a@sign.test <a@sign.test>", Outlook's "'a@sign.test' <a@sign.test>",
 * "Sales - sales@sign.test <sales@sign.test>", "Joe @ Acme <joe@acme.com>".
 * Those are common, GMime and Python read each as the one mailbox, and
 * whichever way a reader takes the name, the only domain it can find in
 * it is the address's own (a one-label name has no DMARC record and is
 * no usable domain here).  "ceo@victim.test <x@evil.test>" stays no
 * mailbox: a reader may see victim.test where DMARC checks evil.test.
 * The domain after an '@' ends at a blank or at the end of the name
 * ("ceo@victim\"x\".test" is not "victim", one label); one "'" closing
 * it is Outlook's quote, not the domain's. */
static int display_name_ok(const char *s, size_t n, const char *dom)
{
	char name_dom[ADDR_DOMAIN_MAX + 1];
	size_t i, j, k;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == QS || atext(c) || c == '[' || c == ']' || c == ' ' || c == '\t' || c == '.')
			continue;
		if (c != '@')
			return 0;
		j = i + 1;
		if (dom[0] == '\0' || domain_at(s, &j, n, name_dom) < 0 || name_dom[0] == '\0')
			return 0;
		if (j < n && s[j - 1] != ' ' && s[j - 1] != '\t')
			return 0;                /* glued to more text */
		k = strlen(name_dom);
		if (name_dom[k - 1] == '\'')
			name_dom[--k] = '\0';
		if (k == 0 || (strchr(name_dom, '.') != NULL && !same_domain(name_dom, dom)))
			return 0;
		i = j - 1;
	}
	return 1;
}

/* one_mailbox - the domain of the mailbox s[0..n) into out; "" when it
 * is not one mailbox: an addr-spec, or a display name (display_name_ok)
 * and one <...> holding an optional route and one addr-spec, blanks
 * around.  Until session 20 the last '@' inside <...>, or of the whole
 * text, gave the domain and the rest went unchecked:
 * "ceo@victim.test@evil.test", "<x@evil.test> <ceo@victim.test>",
 * "<ceo@victim.test,x@evil.test>", which GMime reads as (or as holding)
 * ceo@victim.test, were DMARC of evil.test.  Doubled brackets around the
 * one address ("<<u@x>>", "user <u@x>>"), which GMime reads as that
 * mailbox, are let through: nothing else is in them. */
static void one_mailbox(const char *s, size_t n, char *out)
{
	const char *gt = memchr(s, '>', n), *lt;
	long r;
	size_t in_n, k, name_n;

	out[0] = '\0';
	if (gt == NULL) {
		if (memchr(s, '<', n) == NULL)
			addr_spec(s, n, out);
		return;
	}
	for (lt = gt; lt > s && lt[-1] != '<'; lt--)
		;
	if (lt == s)                                   /* a '>' with no '<' before it */
		return;
	lt--;
	for (k = (size_t)(gt + 1 - s); k < n; k++)     /* after '>': blanks and '>' only */
		if (s[k] != ' ' && s[k] != '\t' && s[k] != '>')
			return;
	in_n = (size_t)(gt - lt - 1);
	if ((r = route_len(lt + 1, in_n)) < 0)
		return;
	if (addr_spec(lt + 1 + r, in_n - (size_t)r, out) < 0)
		return;
	/* the name: before the last '<', less blanks and extra '<' */
	for (name_n = (size_t)(lt - s); name_n > 0 && (s[name_n - 1] == '<' ||
	    s[name_n - 1] == ' ' || s[name_n - 1] == '\t'); name_n--)
		;
	if (!display_name_ok(s, name_n, out))
		out[0] = '\0';
}

size_t addrlist_domains(const char *value, char doms[][ADDR_DOMAIN_MAX + 1], size_t max)
{
	char small[ADDRLIST_STACK], *buf = small;
	size_t n = 0, i, start, count = 0, vlen = strlen(value);
	int depth = 0, angle = 0, in_group = 0, bad_group = 0;

	/* pass 1 never makes the text longer */
	if (vlen >= sizeof(small))
		buf = xmalloc(vlen + 1);
	/* pass 1: comments become a blank, quoted strings the one byte QS */
	for (i = 0; value[i] != '\0'; i++) {
		char c = value[i];

		if (depth > 0) {
			if (c == '\\' && value[i + 1] != '\0')
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			continue;
		}
		if (c == '(') {
			depth = 1;
			buf[n++] = ' ';
		} else if (c == '"') {
			for (i++; value[i] != '\0' && value[i] != '"'; i++)
				if (value[i] == '\\' && value[i + 1] != '\0')
					i++;
			buf[n++] = QS;
			if (value[i] == '\0')
				break;
		} else
			buf[n++] = c;
	}
	buf[n] = '\0';

	/* pass 2: cut into mailboxes at ',' and ';' outside <...> (inside,
	 * ',' belongs to a route or makes the mailbox no mailbox).  A group's
	 * "name:" goes, but only a name that is a phrase: GMime reads
	 * "ceo@victim.test: x@evil.test;" as the mailbox ceo@victim.test and a
	 * group, so every mailbox of a group with such a name, or of a second
	 * ':' before the ';', is one without a domain. */
	for (i = 0, start = 0; i <= n; i++) {
		char c = buf[i];

		if (c == '<')
			angle = 1;
		else if (c == '>')
			angle = 0;
		if (angle && c != '\0')
			continue;
		if (c == ':') {
			if (in_group || !phrase_ok(buf + start, i - start, 0))
				bad_group = 1;
			in_group = 1;
			start = i + 1;
			continue;
		}
		if (c == ',' || c == ';' || c == '\0') {
			size_t a = start, b = i;

			while (a < b && (buf[a] == ' ' || buf[a] == '\t'))
				a++;
			while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t'))
				b--;
			if (b > a) {
				if (count < max) {
					one_mailbox(buf + a, b - a, doms[count]);
					if (bad_group)
						doms[count][0] = '\0';
				}
				count++;
			}
			if (c == ';')
				in_group = bad_group = 0;
			start = i + 1;
		}
	}
	if (buf != small)
		free(buf);
	return count;
}
