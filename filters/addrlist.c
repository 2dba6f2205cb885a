/* addrlist.c - domains of an RFC 5322 address list (addrlist.h).
 *
 * Two passes over a copy of the whole field: first comments go and quoted
 * strings shrink to a placeholder (so neither ',' nor '@' nor '<' inside
 * them counts), then the text is cut at top-level ',' and ';' (group
 * ends), a group's "name:" is dropped, and each mailbox yields the
 * addr-spec inside <...> or the bare token, whose domain is what follows
 * the last '@'.
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

/* one_mailbox - the domain of the mailbox in s[0..n) into out ("" if none) */
static void one_mailbox(const char *s, size_t n, char *out)
{
	const char *lt = memchr(s, '<', n), *at = NULL, *e;
	size_t i, k = 0;

	out[0] = '\0';
	if (lt != NULL) {
		const char *gt = memchr(lt, '>', (size_t)(s + n - lt));

		if (gt == NULL)
			return;
		s = lt + 1;
		n = (size_t)(gt - s);
	}
	for (i = 0; i < n; i++)
		if (s[i] == '@')
			at = s + i;
	if (at == NULL)
		return;
	e = s + n;
	at++;
	while (at < e && (*at == ' ' || *at == '\t'))
		at++;
	while (e > at && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (e > at && e[-1] == '.')
		e--;
	if ((size_t)(e - at) > ADDR_DOMAIN_MAX)
		return;
	for (; at < e; at++) {
		if (*at == ' ' || *at == '\t')   /* "a@b c": not one address */
			{ out[0] = '\0'; return; }
		out[k++] = (char)tolower((unsigned char)*at);
	}
	out[k] = '\0';
}

size_t addrlist_domains(const char *value, char doms[][ADDR_DOMAIN_MAX + 1], size_t max)
{
	char small[ADDRLIST_STACK], *buf = small;
	size_t n = 0, i, start, count = 0, vlen = strlen(value);
	int depth = 0, angle = 0;

	/* pass 1 never makes the text longer */
	if (vlen >= sizeof(small))
		buf = xmalloc(vlen + 1);
	/* pass 1: drop comments, shrink quoted strings to q */
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
			buf[n++] = 'q';
			if (value[i] == '\0')
				break;
		} else
			buf[n++] = c;
	}
	buf[n] = '\0';

	/* pass 2: cut into mailboxes */
	for (i = 0, start = 0; i <= n; i++) {
		char c = buf[i];

		if (c == '<')
			angle = 1;
		else if (c == '>')
			angle = 0;
		if (angle && c != '\0')
			continue;
		if (c == ':') {            /* group name: what came before is no mailbox */
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
				if (count < max)
					one_mailbox(buf + a, b - a, doms[count]);
				count++;
			}
			start = i + 1;
		}
	}
	if (buf != small)
		free(buf);
	return count;
}
