/* textenc.h - decoders of the files mail programs find in text bodies:
 * uuencoded ones (found by uu_begin and uu_end, decoded by GMime), yEnc
 * and BinHex 4.0.  The
 * attachments filter checks the files' names and types with them, the
 * antivirus scans what they decode (libclamav decodes neither in most
 * text parts).  No allocation here: callers bound what they decode. */
#ifndef MW_TEXTENC_H
#define MW_TEXTENC_H

#include <stddef.h>
#include <stdint.h>

/* uu_begin - line (n bytes) is a uuencode header, "begin", a mode of 3
 * or 4 octal digits, then the name: the name's offset, or 0 (a line of
 * prose starting "begin " is not one) */
size_t uu_begin(const char *line, size_t n);

/* uu_end - the start of the "end" line that closes a uuencoded block
 * starting at p (the line after its header), or of the next "begin "
 * line (a block left open must not hide the next one's name), or end */
const char *uu_end(const char *p, const char *end);

/* uu_decode - the n bytes of a block's lines at d (to its uu_end)
 * decoded by GMime into out (room for n + 4 bytes); the bytes written */
size_t uu_decode(const char *d, size_t n, unsigned char *out);

/* yEnc (=ybegin line=128 size=N name=...  ...  =yend): each byte plus 42,
 * '=' escaping the critical ones (plus 64 more) */
#define YENC_BEGIN "=ybegin "

/* yenc_data - the data lines of a yEnc block from d (the line after its
 * =ybegin) to its =yend line (an =ypart line skipped), or to end, decoded
 * into out (room for end - d bytes: output is never longer); the bytes
 * written.  *after: past the =yend line (or end) */
size_t yenc_data(const char *d, const char *end, unsigned char *out, const char **after);

/* BinHex 4.0 ("(This file must be converted with BinHex 4.0)", then the
 * file between ':' and ':'): six bits a character of its own alphabet,
 * run-length coded with 0x90, then a header holding the file's name, the
 * data fork and the resource fork, each with a CRC.  Runs expand up to
 * 255 times: read what you need with hqx_read, bounded. */
#define HQX_MARK "(This file must be converted with BinHex"

struct hqx {
	const unsigned char *p, *end;  /* the encoded text left */
	uint32_t bits;                 /* sextets not yet made bytes */
	unsigned nbits;
	int      last;                 /* the byte a run repeats, -1 none */
	unsigned rep;                  /* repeats of last still owed */
	int      done;                 /* ':' met, or the text ended */
	int      bad;                  /* a character not of the alphabet */
};

/* hqx_read - up to max decoded bytes into out; how many (fewer: the end) */
size_t hqx_read(struct hqx *h, unsigned char *out, size_t max);

/* binhex_next - the next BinHex file of the text [b, end) from *at: the
 * ':' its data starts after, or NULL when none is left; *at moves past
 * its closing ':'.  typed: the text says it is BinHex (its first line
 * starting with ':' is one even without the "(This file ..." line) */
const unsigned char *binhex_next(const unsigned char *b, const unsigned char *end,
                                 const unsigned char **at, int typed);

enum binhex_header_result { BINHEX_OK, BINHEX_MALFORMED, BINHEX_CUT, BINHEX_CRC };

/* binhex_header - the header at the start of h's data: the file's name
 * (NUL-terminated, up to 63 bytes; given also for BINHEX_CRC) and its
 * data fork's length; h is then at the data fork */
enum binhex_header_result binhex_header(struct hqx *h, char name[64], uint32_t *data_len);

#endif
