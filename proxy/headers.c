/* headers.c - walk the header section of a message held in memory (RFC 5322
 * 2.2 and 3.6).  No copies and no allocation: each field is described by
 * pointers into the caller's buffer.
 *
 * Line ends: the spool holds canonical CRLF (the DATA framer sees to that),
 * but "mailwarden scan FILE.eml" may be given a file with Unix LF line ends,
 * so a line here ends at LF, with an optional CR before it.  A CR not
 * followed by LF is an ordinary byte.
 *
 * Field syntax: name = 1*(%d33-57 / %d59-126), then optional WSP (the
 * obsolete form "Name  : value", RFC 5322 4.5.3), then ":".  A line that
 * starts with SP or HTAB continues the field before it.  Anything else ends
 * the header section and is body, as Postfix's cleanup treats it: a line
 * without a colon, a continuation line with nothing to continue, or the
 * mbox "From " line (its name would be "From" followed by WSP and then
 * not a colon).
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "proxy/headers.h"

/* line_end - offset just past the line starting at p (past its LF), or len
 * when the buffer ends without one; *eol gets the offset of the line end
 * itself (the CR of a CR LF, or the LF, or len). */
static size_t line_end(const char *buf, size_t len, size_t p, size_t *eol)
{
	const char *lf = memchr(buf + p, '\n', len - p);
	size_t e;

	if (lf == NULL) {
		*eol = len;
		return len;
	}
	e = (size_t)(lf - buf);
	*eol = (e > p && buf[e - 1] == '\r') ? e - 1 : e;
	return e + 1;
}

static int is_name_char(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

int header_next(const char *buf, size_t len, size_t *pos, struct header_field *f)
{
	size_t p = *pos, q, next, eol;

	if (p >= len)
		return 0;
	/* the empty line ends the header section */
	if (buf[p] == '\n' || (buf[p] == '\r' && p + 1 < len && buf[p + 1] == '\n')) {
		*pos = p + (buf[p] == '\n' ? 1 : 2);
		return 0;
	}
	/* field name */
	q = p;
	while (q < len && is_name_char((unsigned char)buf[q]))
		q++;
	if (q == p)
		return -1;
	f->name = buf + p;
	f->name_len = q - p;
	while (q < len && (buf[q] == ' ' || buf[q] == '\t'))
		q++;
	if (q >= len || buf[q] != ':')
		return -1;
	q++;
	f->start = buf + p;
	f->value = buf + q;
	/* the value runs to the end of the last continuation line */
	next = line_end(buf, len, q, &eol);
	while (next < len && (buf[next] == ' ' || buf[next] == '\t'))
		next = line_end(buf, len, next, &eol);
	f->value_len = eol - q;
	f->len = next - p;
	*pos = next;
	return 1;
}

size_t header_unfold(const struct header_field *f, char *out, size_t outsz)
{
	const char *v = f->value;
	size_t n = f->value_len, i, o = 0, s, e;

	if (outsz == 0)
		return 0;
	/* trim leading and trailing WSP and line ends */
	s = 0;
	while (s < n && (v[s] == ' ' || v[s] == '\t' || v[s] == '\r' || v[s] == '\n'))
		s++;
	e = n;
	while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t' || v[e - 1] == '\r'
	    || v[e - 1] == '\n'))
		e--;
	for (i = s; i < e && o + 1 < outsz; i++) {
		/* unfolding: drop the CRLF (or LF) before a continuation */
		if (v[i] == '\n')
			continue;
		if (v[i] == '\r' && i + 1 < e && v[i + 1] == '\n')
			continue;
		out[o++] = v[i];
	}
	out[o] = '\0';
	return o;
}

int header_name_is(const struct header_field *f, const char *name)
{
	size_t n = strlen(name), i;

	if (n != f->name_len)
		return 0;
	for (i = 0; i < n; i++)
		if (tolower((unsigned char)f->name[i]) != tolower((unsigned char)name[i]))
			return 0;
	return 1;
}

size_t header_body_offset(const char *buf, size_t len)
{
	struct header_field f;
	size_t pos = 0;

	while (header_next(buf, len, &pos, &f) == 1)
		;
	return pos;
}

int header_name_starts(const struct header_field *f, const char *prefix)
{
	size_t n = strlen(prefix);

	return f->name_len >= n && strncasecmp(f->name, prefix, n) == 0;
}
