/* base64.h - RFC 4648 base64 (the standard alphabet, padded) for bytes kept
 * in a JSON text that must stay valid UTF-8: a quarantine record's header
 * edit whose value is not UTF-8 (quarantine.c).
 *
 * The decoder is strict: it takes exactly what the encoder writes (no
 * whitespace or line breaks, '=' only as the last one or two characters,
 * the unused bits of the last character zero), so each byte string has one
 * form, and a record the daemon's user rewrote cannot have root's release
 * read something a lenient decoder would make up. */
#ifndef MW_BASE64_H
#define MW_BASE64_H

#include <stddef.h>

struct sbuf;

/* base64_len - the length of the encoding of n bytes: 4 * ceil(n / 3) */
size_t base64_len(size_t n);

/* base64_encode - append the encoding of in[0..n) to out (borrowed).
 * Returns 0, or -1 if out's limit would be passed (out unchanged). */
int base64_encode(struct sbuf *out, const void *in, size_t n);

/* base64_decode - append the bytes in[0..n) encodes to out.  Returns 0, or
 * -1 if in is not base64 as base64_encode writes it, or out's limit would
 * be passed (out unchanged either way). */
int base64_decode(struct sbuf *out, const char *in, size_t n);

#endif
