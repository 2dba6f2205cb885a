/* headers.h - RFC 5322 header section walker over a buffer in memory (the
 * spool).  Shared by the scanner (filters see name/value) and the proxy
 * (header edits applied on the way out). */
#ifndef MW_HEADERS_H
#define MW_HEADERS_H

#include <stddef.h>

struct header_field {
	const char *start;      /* first byte of the field, in the buffer */
	size_t      len;        /* whole field incl. continuation lines and final CRLF */
	const char *name;       /* in the buffer, not NUL-terminated */
	size_t      name_len;
	const char *value;      /* after "name:", in the buffer, raw with folding */
	size_t      value_len;  /* up to but excluding the final CRLF */
};

/* header_next - the field starting at *pos in buf[0..len).  Returns 1 and
 * advances *pos past the field; 0 at the end of the header section (the
 * empty line; *pos is then moved past it, to the body); -1 if the text at
 * *pos is not a header field (no colon, bad name): the header section is
 * then over too, and *pos is left there (that text is body, as Postfix
 * treats it).  A body-less message (no empty line) ends with 0 at len. */
int header_next(const char *buf, size_t len, size_t *pos, struct header_field *f);

/* header_unfold - value without CRLF folding, leading/trailing WSP trimmed,
 * into out (NUL-terminated, at most outsz-1 bytes).  Returns the length. */
size_t header_unfold(const struct header_field *f, char *out, size_t outsz);

/* header_name_is - case-insensitive name compare */
int header_name_is(const struct header_field *f, const char *name);

/* header_name_starts - the name starts with prefix, in any case
 * (HE_REMOVE_PREFIX: "X-Spam-") */
int header_name_starts(const struct header_field *f, const char *prefix);

/* header_body_offset - offset of the body (after the empty line), or len */
size_t header_body_offset(const char *buf, size_t len);

#endif
