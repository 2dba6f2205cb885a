/* mime_qp.h - does quoted-printable decoding change how a multipart's body
 * splits?  (A multipart labelled quoted-printable, which RFC 2045 forbids.)
 *
 * Bulk mailers often leave the Content-Transfer-Encoding of their parts
 * (quoted-printable) on a multipart/alternative.  GMime and libclamav read
 * such a body as it is; a program that QP-decodes it first sees the same
 * parts as long as decoding changes none of the lines that split it: the
 * delimiter lines and the parts' header fields.  It does in a body built
 * to hide a part from the filters ("=2D=2DBND" is a delimiter only once
 * decoded; a soft line break "=" before a delimiter joins it to the line
 * above and it is none any more; a header field with "=3D" names another
 * file).  The bodies of the parts are not compared: text decoded twice
 * is still text. */
#ifndef MW_MIME_QP_H
#define MW_MIME_QP_H

#include <stddef.h>

/* mime_qp_changes_split - 1 if QP-decoding the body b (n bytes) changes a
 * line that matters: a line, raw or decoded, that starts with "--" and one
 * of the NULL-terminated boundaries (the multipart's and those of the
 * multiparts in it), or a line of a part's header (from a delimiter line
 * to the first empty line); else 0.  A logical line is the raw lines
 * joined by soft line breaks; it is changed when it spans more than one
 * raw line or holds an "=XX" escape (X a hex digit).  An escaped CR or LF
 * ("=0D=0A") splits the decoded logical line into lines of their own, each
 * looked at whole: one that is a delimiter changes the split (a part only
 * the decoding program sees).  Bounded: one pass over b, and a buffer of
 * "--" and the longest boundary. */
int mime_qp_changes_split(const unsigned char *b, size_t n, const char *const *boundaries);

#endif
