/* jsonw.h - a streaming JSON text writer into an sbuf, for the lines the
 * proxy writes once per transaction (the audit log).  Building a json-c
 * object tree only to print it cost about a tenth of the proxy's CPU per
 * message; this writes the same text directly.
 *
 * Every string goes through jsonw_str: quotes, backslashes and control
 * bytes are escaped, and any ill-formed UTF-8 becomes U+FFFD (one per
 * maximal subpart, as utf8_sanitize does), so any byte sequence in any
 * field gives valid UTF-8, valid JSON.  Keys are escaped the same way.
 * The writer tracks commas; nesting is bounded (JSONW_MAX_DEPTH).  It
 * does not check that keys and values alternate: callers write objects of
 * a fixed shape. */
#ifndef MW_JSONW_H
#define MW_JSONW_H

#include <stddef.h>
#include <stdint.h>

struct sbuf;

#define JSONW_MAX_DEPTH 8

struct jsonw {
	struct sbuf  *out;           /* borrowed */
	unsigned      depth;
	int           after_key;     /* the next value follows "key": */
	unsigned char first[JSONW_MAX_DEPTH + 1];  /* nothing written yet at this depth */
	int           failed;        /* out's limit was reached or nesting too deep */
};

/* jsonw_init - write into out (appending); nothing is written yet. */
void jsonw_init(struct jsonw *w, struct sbuf *out);
/* jsonw_failed - 1 if any write failed (out's limit, nesting): the text
 * in out is then incomplete and must not be used */
int  jsonw_failed(const struct jsonw *w);

void jsonw_object_begin(struct jsonw *w);
void jsonw_object_end(struct jsonw *w);
void jsonw_array_begin(struct jsonw *w);
void jsonw_array_end(struct jsonw *w);
/* jsonw_key - "key": inside an object (key: NUL-terminated, any bytes) */
void jsonw_key(struct jsonw *w, const char *key);

/* values (after a key, or as array elements) */
void jsonw_str(struct jsonw *w, const char *p, size_t len);   /* any bytes */
void jsonw_cstr(struct jsonw *w, const char *s);              /* NULL = "" */
void jsonw_int(struct jsonw *w, int64_t v);
void jsonw_bool(struct jsonw *w, int v);
/* jsonw_num - d with at most `decimals` decimals, trailing zeros trimmed
 * down to one (6 -> 6.0, 0.059372 -> 0.059 with 3); NaN and infinities,
 * which JSON cannot hold, are written as null */
void jsonw_num(struct jsonw *w, double d, int decimals);

/* jsonw_str_max - jsonw_str, the literal (quotes included) cut to at most
 * max bytes (max >= 8): as many whole characters as fit with "..." after
 * them, which marks the cut */
void jsonw_str_max(struct jsonw *w, const char *p, size_t len, size_t max);
/* jsonw_escaped_len - the length of jsonw_escape's literal of p[0..len) */
size_t jsonw_escaped_len(const char *p, size_t len);
/* jsonw_init_inside - write the rest of an object whose first members
 * were written elsewhere: each key gets its comma, jsonw_object_end
 * closes it */
void jsonw_init_inside(struct jsonw *w, struct sbuf *out);

/* jsonw_escape - append the JSON string literal of p[0..len) (with its
 * quotes) to out.  0, or -1 if out's limit was reached. */
int jsonw_escape(struct sbuf *out, const char *p, size_t len);

#endif
