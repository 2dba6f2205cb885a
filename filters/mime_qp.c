/* mime_qp.c - whether QP-decoding a multipart's body changes how it splits
 * (mime_qp.h). */
#include <stdlib.h>
#include <string.h>

#include "filters/mime_qp.h"

static int is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

static int hex_value(unsigned char c)
{
	return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* The boundaries with their lengths, measured once, and how many lines
 * starting with "--" were compared with them: a body of millions of such
 * lines against a thousand long boundaries of nested multiparts cost
 * seconds of a scanner thread (8.9 s for 10 MB, session 20 review) */
struct bset {
	const char *const *b;
	size_t *len;
	size_t n;
	size_t looks;
};

/* past this many candidate lines the answer is "may change" (the
 * message is unchecked, as any limit of the parse makes it): a bulk
 * mailer's QP-labelled multipart has a few delimiter lines, not this */
#define QP_LOOKS_MAX 20000

/* is_delimiter - s (n bytes) starts with "--" and one of the boundaries;
 * -1 past QP_LOOKS_MAX lines looked at */
static int is_delimiter(const unsigned char *s, size_t n, struct bset *bs)
{
	if (n < 2 || s[0] != '-' || s[1] != '-')
		return 0;
	if (++bs->looks > QP_LOOKS_MAX)
		return -1;
	for (size_t k = 0; k < bs->n; k++)
		if (n - 2 >= bs->len[k] && memcmp(s + 2, bs->b[k], bs->len[k]) == 0)
			return 1;
	return 0;
}

/* line_end - the end of the raw line at b[i] (without CR LF, LF, and
 * trailing blanks: QP ignores those), and *next the start of the next */
static size_t line_end(const unsigned char *b, size_t n, size_t i, size_t *next)
{
	size_t e = i;

	while (e < n && b[e] != '\n')
		e++;
	*next = e < n ? e + 1 : n;
	while (e > i && (b[e - 1] == '\r' || b[e - 1] == ' ' || b[e - 1] == '\t'))
		e--;
	return e;
}

/* room kept on the stack for the start of a decoded line; a longer
 * boundary (GMime takes any length) gets a buffer of its size */
#define HEAD_STACK 128

/* bset_init - bs over the NULL-terminated boundaries; the size of what
 * of a decoded line is looked at ("--" and the longest boundary, enough
 * to tell a delimiter whole: not cut at 80 bytes, where a longer boundary
 * once went unmatched), or 0 when out of memory */
static size_t bset_init(struct bset *bs, const char *const *boundaries)
{
	size_t m = 0, k;

	memset(bs, 0, sizeof(*bs));
	bs->b = boundaries;
	while (boundaries[bs->n] != NULL)
		bs->n++;
	if ((bs->len = malloc((bs->n ? bs->n : 1) * sizeof(*bs->len))) == NULL)
		return 0;
	for (k = 0; k < bs->n; k++) {
		bs->len[k] = strlen(boundaries[k]);
		if (bs->len[k] > m)
			m = bs->len[k];
	}
	return m + 2;
}

int mime_qp_changes_split(const unsigned char *b, size_t n, const char *const *boundaries)
{
	unsigned char stack[HEAD_STACK], *head = stack;
	struct bset bs;
	size_t i = 0, hmax = bset_init(&bs, boundaries);
	int in_header = 0, rc = 0, d;

	if (hmax == 0)
		return 1;    /* cannot tell: say it may change (unchecked) */
	if (hmax > sizeof(stack) && (head = malloc(hmax)) == NULL) {
		free(bs.len);
		return 1;
	}
	while (i < n && rc == 0) {
		size_t hl = 0, start, next, e;
		/* sub: the decoded lines of this logical line so far after its
		 * first, each begun by a CR or LF decoded from "=0D"/"=0A" */
		size_t sub = 0;
		int changed = 0, matters = in_header, raw_lines = 0, soft;

		/* one logical line: raw lines joined by soft line breaks */
		do {
			start = i;
			e = line_end(b, n, i, &next);
			raw_lines++;
			if ((d = is_delimiter(b + start, e - start, &bs)) < 0) {
				rc = 1;
				break;
			} else if (d) {
				matters = 1;
				in_header = 1;
			} else if (e == start && raw_lines == 1)
				in_header = 0;     /* the end of a part's header */
			soft = e > start && b[e - 1] == '=';
			for (size_t k = start; k < e - (size_t)soft; k++) {
				unsigned char c = b[k];

				if (c == '=' && k + 2 < e && is_hex(b[k + 1]) && is_hex(b[k + 2])) {
					c = (unsigned char)(hex_value(b[k + 1]) << 4 | hex_value(b[k + 2]));
					k += 2;
					changed = 1;
					if (c == '\r' || c == '\n') {
						/* a line break decoded in the middle of
						 * the line: a program that decodes the
						 * body first sees a new line here, where
						 * GMime and libclamav see none.  Each such
						 * line is checked whole: a delimiter in it
						 * is a part no filter saw
						 * ("...=0D=0A--BND=0D=0AContent-Type:") */
						if (is_delimiter(head, hl, &bs) != 0)
							rc = 1;    /* a delimiter, or past the looks */
						sub++;
						hl = 0;
						continue;
					}
				}
				if (hl < hmax)
					head[hl++] = c;
			}
			changed |= soft;
			i = next;
		} while (soft && i < n);
		/* a line neither joined nor decoded was looked at as it came:
		 * looked at again it would count twice against QP_LOOKS_MAX */
		if (rc == 0 && (raw_lines > 1 || sub > 0 || changed)
		    && (d = is_delimiter(head, hl, &bs)) != 0) {
			if (sub > 0 || d < 0)
				rc = 1;    /* the last decoded line, after a decoded break */
			matters = 1;
		}
		if (changed && matters)
			rc = 1;
	}
	if (head != stack)
		free(head);
	free(bs.len);
	return rc;
}
