/* mime_qp.c - whether QP-decoding a multipart's body changes how it splits
 * (mime_qp.h). */
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

/* is_delimiter - s (n bytes) starts with "--" and one of the boundaries */
static int is_delimiter(const unsigned char *s, size_t n, const char *const *boundaries)
{
	if (n < 2 || s[0] != '-' || s[1] != '-')
		return 0;
	for (size_t k = 0; boundaries[k] != NULL; k++) {
		size_t bl = strlen(boundaries[k]);

		if (n - 2 >= bl && memcmp(s + 2, boundaries[k], bl) == 0)
			return 1;
	}
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

/* the start of a decoded line looked at: enough for "--" and a boundary
 * (RFC 2046: at most 70 characters) */
#define HEAD_MAX 80

int mime_qp_changes_split(const unsigned char *b, size_t n, const char *const *boundaries)
{
	size_t i = 0;
	int in_header = 0;

	while (i < n) {
		unsigned char head[HEAD_MAX];
		size_t hl = 0, start, next, e;
		int changed = 0, matters = in_header, raw_lines = 0, soft;

		/* one logical line: raw lines joined by soft line breaks */
		do {
			start = i;
			e = line_end(b, n, i, &next);
			raw_lines++;
			if (is_delimiter(b + start, e - start, boundaries)) {
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
				}
				if (hl < sizeof(head))
					head[hl++] = c;
			}
			changed |= soft;
			i = next;
		} while (soft && i < n);
		if (is_delimiter(head, hl, boundaries))
			matters = 1;
		if (changed && matters)
			return 1;
	}
	return 0;
}
