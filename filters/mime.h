/* mime.h - the one MIME parse of a message (GMime 3), shared by every
 * filter that wants it: built once per message on first use, then read-only.
 *
 * INTERFACE OWNED BY THE MIME LAYER (issue 5); filters code against it.
 * Thread-safety: a parse belongs to one message on one scanner thread. */
#ifndef MW_MIME_H
#define MW_MIME_H

#include <stddef.h>

struct mw_ctx;

/* One leaf part (or attachment) of the message, depth-first in tree order.
 * Nested message/rfc822 parts are descended into (their parts follow, with
 * depth + 1); multiparts are not listed themselves. */
struct mime_part {
	unsigned    depth;            /* 0 = top-level message */
	const char *content_type;     /* "text/plain", lower case, without parameters */
	const char *declared_type;    /* as declared, same as content_type unless absent */
	const char *filename;         /* decoded (RFC 2231/2047) UTF-8 filename, or NULL */
	const char *disposition;      /* "attachment", "inline" or NULL */
	int         is_text;          /* text/plain or text/html */
	int         is_html;
	/* decoded content (transfer encoding removed); for text parts
	 * converted to UTF-8 (charset honoured; invalid bytes replaced) */
	const unsigned char *data;
	size_t      len;
	/* for text/html: the visible text rendered as SpamAssassin's body
	 * rules see it (tags removed, entities decoded), UTF-8; else NULL */
	const char *rendered;
	size_t      rendered_len;
};

struct mime_msg {
	struct mime_part *parts;      /* nparts leaves */
	size_t            nparts;
	char            **uris;       /* URIs found in text and HTML parts, deduplicated */
	size_t            nuris;
	int               parse_error;/* the MIME structure was broken somewhere */
};

/* mime_get - the message's parse (built on first call, then shared by
 * every filter of that message).  Never NULL: a message that cannot be
 * parsed gives nparts 0 and parse_error 1. */
const struct mime_msg *mime_get(struct mw_ctx *ctx);

#endif
