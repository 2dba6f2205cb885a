/* mime.h - the one MIME parse of a message (GMime 3), shared by every
 * filter that wants it: built once per message on first use, then read-only.
 *
 * INTERFACE OWNED BY THE MIME LAYER (issue 5); filters code against it.
 * Thread-safety: a parse belongs to one message on one scanner thread. */
#ifndef MW_MIME_H
#define MW_MIME_H

#include <stddef.h>
#include <stdint.h>

struct mw_ctx;

/* Limits of one parse (a hostile message must not cost more). */
#define MIME_MAX_PARTS    1000          /* leaves listed; more: parse_error */
#define MIME_MAX_DEPTH    32            /* multipart/message nesting walked */
/* decoded bytes kept, all parts together; and as much again of text
 * converted to UTF-8 (the copies that differ from the bytes decoded) */
#define MIME_MAX_DECODED  (64u << 20)
/* of the converted text's MIME_MAX_DECODED, what one part cannot take:
 * each text part after keeps its first MIME_TEXT_PREFIX bytes of UTF-8
 * from it (128 parts), so a big part cannot leave the text of those after
 * it unchecked; a part cut to less than its prefix once it is spent too
 * (none of it, or what was left) makes the parse incomplete */
#define MIME_TEXT_RESERVE (8u << 20)
#define MIME_TEXT_PREFIX  (64u << 10)
/* distinct URIs kept: MIME_MAX_URIS links (<a>/<area> href, form
 * action) and MIME_MAX_URIS of the rest (images, other markup, text), the
 * last MIME_URI_NEW_DOMAIN of each only of registrable domains not seen
 * before in the message (mime.c uri_add: decoys must not crowd links out) */
#define MIME_MAX_URIS     1000
#define MIME_URI_NEW_DOMAIN 100
#define MIME_MAX_URI_LEN  2048          /* longer ones are ignored */
/* schemeless hosts and bare mail addresses in text (mime_bare.h) looked
 * at in one message: each costs a public suffix lookup and a URI kept or
 * found again, about 1 us; the text is up to MIME_MAX_DECODED bytes, and
 * 64 MB of "a.com " was 10 million of them */
#define MIME_MAX_BARE_LOOKS 50000
/* What GMime is handed at most: it builds every part and header field of
 * what it parses before a limit above applies, at about 1 KB per field or
 * part and 30 times the bytes of a long header field.  A message past one
 * of these is parsed up to the line where it was reached (incomplete). */
#define MIME_MAX_DELIMS        20000          /* delimiter lines of declared boundaries */
#define MIME_MAX_HEADER_LINES  100000         /* lines of header sections */
#define MIME_MAX_HEADER_BYTES  (2u << 20)     /* bytes of header sections */

/* One leaf part (or attachment) of the message, depth-first in tree order.
 * Nested message/rfc822 parts are descended into (their parts follow, with
 * depth + 1); multiparts are not listed themselves. */
struct mime_part {
	unsigned    depth;            /* 0 = top-level message */
	const char *content_type;     /* "text/plain", lower case, without parameters */
	const char *declared_type;    /* as declared, same as content_type unless absent
	                               * ("" then) or invalid; of the last Content-Type
	                               * field, as content_type is */
	/* every distinct type the part's Content-Type fields declare (as
	 * declared_type is), NULL-terminated, or NULL when there is none:
	 * a part with two disagreeing fields is checked as both */
	const char *const *types;
	const char *filename;         /* decoded (RFC 2231/2047) UTF-8 filename, or NULL */
	/* every distinct name the part's fields give, decoded as filename
	 * is: Content-Disposition filename= and Content-Type name=, each
	 * one a field repeats, of every such field (a field given twice),
	 * and the values of Content-Name and X-Sun-Data-Name fields (which
	 * Thunderbird names a file by when it has neither parameter);
	 * filename first; NULL-terminated, or NULL when there is none.  Mail
	 * programs differ on which one they show and save under, so a
	 * policy checks them all. */
	const char *const *names;
	/* more than 64 distinct names, or 16 Content-Type and
	 * Content-Disposition fields: names does not hold them all */
	int         names_truncated;
	const char *disposition;      /* "attachment", "inline" or NULL */
	int         is_text;          /* text/plain or text/html */
	int         is_html;
	/* decoded content (transfer encoding removed); for text parts
	 * converted to UTF-8 (charset honoured; invalid bytes replaced by
	 * U+FFFD, NUL bytes by spaces).  Always followed by a NUL byte
	 * (data[len] == 0), so text can be used as a C string. */
	const unsigned char *data;
	size_t      len;
	/* for text/html: the visible text rendered as SpamAssassin's body
	 * rules see it (tags removed, entities decoded), UTF-8; else NULL */
	const char *rendered;
	size_t      rendered_len;
	/* the content as decoded (raw) cut, or kept empty, at the
	 * MIME_MAX_DECODED of the message's parts together: what is checked
	 * in it was not all there (the parse is then incomplete) */
	int         truncated;
	/* text parts: data cut (a conversion past the MIME_MAX_DECODED of
	 * converted text, to MIME_TEXT_PREFIX once the budget is down to its
	 * reserve, or raw truncated); raw may still be whole */
	int         text_truncated;
	/* the decoded bytes before any charset conversion (what a file
	 * type is detected from); the same pointer as data unless the
	 * conversion of a text part changed them */
	const unsigned char *raw;
	size_t      raw_len;
	/* base64 whose last quartet was cut short (no '=' padding): raw
	 * holds the bytes its characters hold, as GMime, Python and most
	 * mail programs save the file; Thunderbird saves the first alt_keep
	 * bytes of raw followed by the alt_tail_len (4) bytes of alt_tail
	 * instead (mime_base64.h), which the antivirus scans too.  alt_tail_len
	 * 0: no such difference (nor when the content was truncated) */
	size_t      alt_keep;
	unsigned char alt_tail[4];
	size_t      alt_tail_len;
	const char *charset;          /* declared charset parameter, lower case, or NULL */
	const char *encoding;         /* Content-Transfer-Encoding as declared, lower
	                               * case, trimmed, or NULL */
	size_t      msg;              /* the innermost message holding it: an index
	                               * into mime_msg.msgs (0: the message itself) */
};

/* A message of the parse: the message itself (msgs[0]), or a
 * message/rfc822 (or message/global) part descended into, listed as the
 * walk meets it (a message comes before those nested in it). */
struct mime_message {
	/* where its header section starts in the bytes parsed, by GMime's
	 * offset of its first header field; -1 when it has none (msgs[0]: 0) */
	long long   offset;
	size_t      parent;           /* the message it is in (msgs[0]: 0) */
	unsigned    depth;            /* as mime_part.depth */
	const char *filename;         /* the message/rfc822 part's filename, as
	                               * mime_part.filename, or NULL */
};

/* what put a URI in mime_msg.uris, most link-like first */
enum mime_uri_kind {
	MIME_URI_ANCHOR,   /* <a href>, <area href> */
	MIME_URI_FORM,     /* <form action> */
	MIME_URI_IMAGE,    /* <img src>, <input src>, a background attribute */
	MIME_URI_OTHER,    /* any other href/src/action (link, iframe, script, base, ...) */
	MIME_URI_TEXT      /* written in text (or in an HTML part's rendered text) */
};

struct mime_msg {
	struct mime_part *parts;      /* nparts leaves */
	size_t            nparts;
	struct mime_message *msgs;    /* nmsgs >= 1 messages: the message itself */
	size_t            nmsgs;      /* and those its leaves are nested in */
	/* URIs found in text and HTML parts, deduplicated, valid UTF-8:
	 * HTML href/src/action/background values (entities decoded; "#...",
	 * cid: and data: left out) and bare http://, https:// and www. in
	 * text (www.x given as http://www.x), trailing punctuation cut; in
	 * text too, as SpamAssassin: a schemeless host of a real top-level
	 * domain with its port and path as http://host/path (ftp.x as
	 * ftp://ftp.x) and a bare mail address as mailto:addr (mime_bare.h) */
	char            **uris;
	size_t            nuris;
	/* uri_kinds[i]: how uris[i] appeared (enum mime_uri_kind), the most
	 * link-like of its appearances (a lower value): blocklist lookups
	 * ask about links before images, as SpamAssassin's URIDNSBL does */
	unsigned char    *uri_kinds;
	int               parse_error;/* the MIME structure was broken somewhere
	                               * (or a MIME_MAX_* limit was reached) */
	int               parts_truncated; /* more than MIME_MAX_PARTS leaves */
	int               uris_truncated;  /* a URI cap was reached (not parse_error) */
	size_t            uris_dropped;    /* distinct URIs the caps left out */
	int               bare_stopped;    /* the text's schemeless hosts and mail
	                                    * addresses were looked for up to
	                                    * MIME_MAX_BARE_LOOKS only */
	/* not all of the message was walked, or a part's content was cut
	 * at MIME_MAX_DECODED: a filter looking for something (a banned
	 * attachment) did not see all of it; why, or NULL */
	const char       *incomplete;
	/* a multipart declared base64 or uuencoded, or quoted-printable
	 * where decoding changes how its body splits (mime_qp.h; RFC 2045
	 * forbids all three): its body was read as it is, as GMime and
	 * libclamav read it, where a program that decodes it first may
	 * show parts no filter saw (incomplete says so too; parse_error
	 * for base64 and uuencode only) */
	int               encoded_multipart;
};

/* Files encoded in the body of a text part (uuencoded, yEnc) or BinHex'd
 * in a text part or in a part that says it is BinHex (its type, a .hqx
 * name), which mail programs show as attachments: found and decoded once
 * per parse, on first use, and read by every filter that checks them (the
 * attachments filter: names, types, archives; the antivirus: zips
 * counted, files scanned).  Built by whichever filter asks first; the
 * filters of a message run one after the other on one thread (as for
 * mime_get), so the memo needs no lock.  A parse of mime_parse has one of
 * its own, freed by mime_free. */
enum mime_file_kind { MIME_FILE_UU, MIME_FILE_YENC, MIME_FILE_BINHEX };

/* files listed per parse: uuencoded ones, and yEnc and BinHex ones
 * together (BinHex ones whose header decodes: the files the antivirus
 * scans); past it the next one found (in each part for uuencoded files,
 * once for the others) is listed with over set, not decoded.  BinHex
 * files whose header does not decode are listed too, over 0, up to as
 * many again, and not past that (the attachments filter, which calls each
 * unchecked, counts them with the others and has stopped by then) */
#define MIME_MAX_TEXT_FILES 100

struct mime_file {
	size_t      part;             /* the leaf it is in: index into mime_msg.parts */
	enum mime_file_kind kind;
	int         over;             /* past MIME_MAX_TEXT_FILES: not read */
	/* the name its header gives (uuencoded: the "begin" line's; yEnc:
	 * "name=", NULL without one; BinHex: the encoded header's, NULL when
	 * malformed or cut), as sent: up to 255 bytes, cut at a NUL */
	const char *name;
	int         binhex;           /* BinHex: enum binhex_header_result (textenc.h) */
	/* yEnc: the bytes from its =ybegin line's end to the part's end (the
	 * most it decodes to); BinHex: the data fork's length its header
	 * claims (runs expand 255 times: no measure of what will come) */
	uint64_t    claimed;
	/* decoded (a NUL follows): uuencoded and yEnc files whole; BinHex
	 * data forks as far as mime_file_read was asked to take them */
	const unsigned char *data;
	size_t      len;
};

/* mime_text_files - the files of part (an index into m->parts), in the
 * order they come in it; *n of them (0: none, and NULL) */
const struct mime_file *mime_text_files(const struct mime_msg *m, size_t part, size_t *n);

/* mime_says_binhex - the part says it is BinHex: application/mac-binhex40,
 * or a name whose last extension is .hqx (trailing dots and spaces
 * dropped); its first line starting with ':' is one then even without the
 * "(This file must be converted ..." line */
int mime_says_binhex(const struct mime_part *p);

/* mime_file_read - a BinHex file's data fork decoded on to want bytes at
 * most (f->data, f->len then hold them; data may move): f->len, fewer
 * than want when the data ends first (the text ends, or a character out
 * of the alphabet).  The buffer grows with what decodes, not with the
 * length claimed.  Other files are whole already: f->len. */
size_t mime_file_read(const struct mime_msg *m, const struct mime_file *f, size_t want);

/* mime_get - the message's parse (built on first call, then shared by
 * every filter of that message).  Never NULL: a message that cannot be
 * parsed gives nparts 0 and parse_error 1. */
const struct mime_msg *mime_get(struct mw_ctx *ctx);

/* mime_parse - parse a whole message (CRLF or LF lines) outside a filter
 * (tests, tools); free with mime_free.  Never NULL. */
struct mime_msg *mime_parse(const unsigned char *msg, size_t len);
void mime_free(void *mime);

/* One leaf to replace: its index in mime_msg.parts (as mime_parse lists
 * them, for the same message) and the text that takes its place. */
struct mime_replacement {
	size_t      part;
	const char *note;             /* US-ASCII; other bytes become '?' */
};

struct sbuf;

/* mime_replace_parts - what follows the header section of msg once those
 * leaves are replaced by text/plain parts holding their note: the empty
 * line and the new body, CRLF lines, not dot-stuffed, appended to rest.
 * Everything else is written back by GMime from the same parse: parts
 * left alone keep their header fields and encoded content, multiparts
 * their boundaries.  *top is set when the leaf replaced is the message's
 * own body (a single-part message): the caller then owes the top-level
 * Content-Type, Content-Transfer-Encoding and Content-Disposition fields
 * of a text/plain part (MIME_REPLACEMENT_*).  parsed: mime_parse of the
 * same message if the caller has it (mime_get), else NULL.  0,
 * MIME_REPLACE_SIGNED or MIME_REPLACE_ENCRYPTED (below), or -1 with err:
 * an index past the leaves, the new body longer than max, GMime ending the
 * header section elsewhere than the front ends, or the message as it will
 * leave not parsing back into the same leaves (the replaced ones holding
 * their notes, the others unchanged). */
int mime_replace_parts(const unsigned char *msg, size_t len, const struct mime_msg *parsed,
                       const struct mime_replacement *rep, size_t nrep, size_t max,
                       struct sbuf *rest, int *top, char *err, size_t errlen);
/* mime_replace_parts refused (with err) because a leaf lies in a
 * multipart/signed or is an S/MIME signed-data part (the rewrite would
 * break the signature the recipient checks), or lies in a
 * multipart/encrypted (which could not be decrypted any more) */
#define MIME_REPLACE_SIGNED    (-2)
#define MIME_REPLACE_ENCRYPTED (-3)

/* mime_cms_kind - what a CMS/PKCS #7 object (the decoded content of an
 * application/pkcs7-mime part, DER or BER) holds, by its ContentInfo's
 * contentType; MIME_CMS_NONE when the bytes do not start as one */
enum { MIME_CMS_NONE, MIME_CMS_SIGNED, MIME_CMS_ENVELOPED, MIME_CMS_OTHER };
int mime_cms_kind(const unsigned char *d, size_t n);
/* mime_cms_content - the content a signed-data object (DER, or the BER of
 * a streamed signature) carries, the signed MIME entity in the clear: a
 * new buffer (free; a NUL follows the *len bytes), or NULL when d is no
 * signed-data, has no content (a detached signature) or does not parse */
unsigned char *mime_cms_content(const unsigned char *d, size_t n, size_t *len);

/* the header fields of a replacement part, for a top-level replacement */
#define MIME_REPLACEMENT_TYPE "text/plain; charset=us-ascii"
#define MIME_REPLACEMENT_CTE  "7bit"

/* mime_html_render - the visible text of an HTML document (UTF-8), as
 * parts' rendered text is made; a new string (g_free), length in *outlen. */
char *mime_html_render(const char *html, size_t len, size_t *outlen);

#endif
