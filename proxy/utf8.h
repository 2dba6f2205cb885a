/* utf8.h - UTF-8 validation and repair.  json-c copies bytes >= 0x80 into
 * its output unchanged, so JSON built from network bytes (the audit log,
 * "mailwarden scan" output) is passed through utf8_sanitize before it is
 * written: the result is always valid UTF-8, hence valid JSON. */
#ifndef MW_UTF8_H
#define MW_UTF8_H

#include <stddef.h>

struct sbuf;

/* utf8_valid - 1 if p[0..len) is well-formed UTF-8 (RFC 3629: no overlongs,
 * no surrogates U+D800..U+DFFF, nothing above U+10FFFF), else 0.  NUL bytes
 * are valid UTF-8. */
int utf8_valid(const char *p, size_t len);

/* utf8_has_8bit - any byte >= 0x80 in p[0..len) (a UTF-8 address, an
 * 8-bit body) */
int utf8_has_8bit(const char *p, size_t len);

/* utf8_seq - length of the well-formed sequence at p (1..4; len > 0), or 0
 * if it is ill-formed; then *bad is the length of its maximal subpart
 * (1..3): the lead byte and the continuation bytes that were still
 * acceptable, to be replaced by one U+FFFD. */
size_t utf8_seq(const unsigned char *p, size_t len, size_t *bad);

/* utf8_decode - the code point of the well-formed sequence p[0..n) (n as
 * utf8_seq returned it, 1..4) */
unsigned utf8_decode(const unsigned char *p, size_t n);

/* utf8_cp_acts - 1 if a terminal or a text renderer acts on code point cp
 * rather than show it: C0 controls (tab included), DEL, C1 controls
 * (U+0080..U+009F: xterm and others take U+009B for CSI in UTF-8 too), and
 * the bidirectional formatting characters (U+061C, U+200E, U+200F,
 * U+202A..U+202E, U+2066..U+2069: an override reverses the rest of the
 * line, so "exe.pdf" shows for "fdp.exe"; Unicode's Trojan Source list).
 * Text for a terminal or a log writes these as escapes. */
int utf8_cp_acts(unsigned cp);

/* utf8_sanitize_sbuf - append in[0..len) to out, with every ill-formed
 * sequence replaced by U+FFFD (EF BF BD), one replacement per maximal
 * subpart as Unicode 3.9 / W3C recommend and Python's errors='replace'
 * does ("\xe2\x82A" -> U+FFFD "A"; "\xed\xa0\x80" -> three U+FFFD).
 * in: borrowed.  Returns 0, or -1 if out's limit was reached (out then holds
 * a prefix of the result that ends on a character boundary). */
int utf8_sanitize_sbuf(struct sbuf *out, const char *in, size_t len);

/* utf8_term_sbuf - append in[0..len) to out as text for root's terminal:
 * ill-formed sequences as U+FFFD (as utf8_sanitize_sbuf), and every
 * character a terminal acts on (utf8_cp_acts) escaped.  mode
 * UTF8_TERM_TEXT (0): C0 controls (but tab) and DEL as \xHH, C1 and bidi
 * as \uXXXX.  UTF8_TERM_JSON (1): in is JSON text from json-c, whose C0
 * characters are its own layout (it escapes them inside strings) and
 * stay; DEL, C1 and bidi, which json-c copies into strings as they are
 * and which stand nowhere else, become \uXXXX, the same string to a JSON
 * reader.  UTF8_TERM_QUOTED: as TEXT, and the ASCII that log_esc_quoted
 * escapes escaped the same way but '=' (a tab and '"' as \xHH, a
 * backslash doubled): a value printed in quotes (subject="%s") that cannot end
 * early and start a forged key="value".  UTF8_TERM_WORD: as QUOTED, and
 * a space, '<' and '>' as \xHH, as log_esc_word: a value standing bare
 * (<%s>), which stays one token.  Unlike log_esc these keep printable
 * UTF-8 as it is, for the reader of a terminal, and '=', which cannot end
 * either value and is in RFC 2047 Subjects and BATV/SRS/VERP senders.  The one way the
 * commands root runs ("mailwarden quarantine", "mailwarden scan") print
 * what a sender or the daemon's user wrote.  Returns 0, or -1 at out's
 * limit. */
#define UTF8_TERM_TEXT   0
#define UTF8_TERM_JSON   1
#define UTF8_TERM_QUOTED 2
#define UTF8_TERM_WORD   3
int utf8_term_sbuf(struct sbuf *out, const char *in, size_t len, int mode);

/* utf8_sanitize - the same into a fixed buffer: writes at most outsz-1
 * bytes, cutting only between characters, and NUL-terminates (if outsz >
 * 0).  Returns the number of bytes written, without the NUL. */
size_t utf8_sanitize(const char *in, size_t len, char *out, size_t outsz);

#endif
