/* mime_base64.h - the base64 decoder of MIME part contents, as tolerant as
 * the most tolerant mail program: what a mail client would save from a
 * part is what the filters check (the attachments filter's type detection
 * and archive reading, the antivirus's scan of each decoded leaf).
 *
 * Thunderbird (mailnews/mime/src/mimeenc.cpp) skips every character outside
 * A-Z a-z 0-9 + / =, decodes the rest four by four, and counts the '='
 * of each quartet on its own: a quartet with one '=' gives two bytes, with
 * two one byte, and decoding goes on after it.  So the base64 of a file
 * sent as two padded pieces ("...Ag==" then "...") opens whole in it,
 * where GMime's decoder stopped at the first '=' (the filters saw 35 bytes
 * of a 68-byte file) and libclamav matched nothing.  Well-formed base64
 * decodes the same either way.  Exactly as Thunderbird, where it differs
 * from other decoders too: a quartet of three or four '=' gives one byte
 * ("W===" the byte 'X', "====" a NUL), where a decoder that gave none
 * let EICAR sent with its first byte as "W===" pass as Clean.
 *
 * Except at a content's end: the characters of a last quartet cut short
 * (no padding: "Zm9vYg") are decoded to the bytes they hold ("foo" then
 * "b"), as GMime's decoder, Python's email package and most programs save
 * them; Thunderbird writes them as they are, made four with '=' ("fooYg==").
 * Decoding the Thunderbird way only (mime20b) made the leaf checked differ
 * from the file in its last byte or two, so a file sent unpadded escaped
 * every whole-file hash signature (.hdb/.hsb: clam.exe passed as Clean),
 * and text ended in "Yg==".  So the bytes held are the content, and what
 * Thunderbird would save instead is given apart, for the antivirus to scan
 * too (mime_part.alt_tail). */
#ifndef MW_MIME_BASE64_H
#define MW_MIME_BASE64_H

#include <stddef.h>

struct mime_base64 {
	unsigned char q[4];           /* the quartet being read, as sent */
	unsigned char v[4];           /* its characters' values */
	unsigned      nq;             /* of it so far, 0..3 */
};

/* mime_base64_init - a decoder at the start of a content */
void mime_base64_init(struct mime_base64 *d);

/* mime_base64_step - decode n characters at in, the output into out, which
 * has room for n / 4 * 3 + 3 bytes; returns the bytes written.  Any split
 * of a content into steps decodes the same. */
size_t mime_base64_step(struct mime_base64 *d, const char *in, size_t n, unsigned char *out);

/* mime_base64_finish - the end of a content: the bytes the characters of
 * a last quartet cut short hold, as GMime decodes them (those before its
 * first '=': two characters give one byte, three two), 0..2 into out;
 * what Thunderbird writes for them instead into tb (room for 4: the
 * characters as they are, made four with '=', unless the first is '=')
 * and its length into *tb_len: 0 when Thunderbird's save is the same as
 * out.  The decoder is then at a start again. */
size_t mime_base64_finish(struct mime_base64 *d, unsigned char *out, unsigned char *tb, size_t *tb_len);

#endif
