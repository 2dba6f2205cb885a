/* mime_rewrite.c - replace leaves of a message by short text parts (the
 * attachments filter's "replace" action), with GMime: the message is
 * parsed as mime.c parses it (mime_gmime_parse), the leaves are found by
 * the same depth-first walk and limits (so an index of mime_msg.parts
 * names the same part here), swapped for text/plain parts in the tree, and
 * the body is written back with CRLF line ends.
 *
 * Only what follows the header section is produced: the top-level fields
 * stay as the front end relays them (with the filters' header edits), so
 * a multipart keeps its Content-Type and boundary and nothing else of the
 * header section moves.  A single-part message whose body is the banned
 * part is the one case that needs new top-level fields; the caller makes
 * them (mime.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/mime.h"
#include "filters/mime_gmime.h"
#include "proxy/header_edit.h"
#include "proxy/sbuf.h"

/* where one leaf sits: in a multipart at index, or as the body of a
 * message (the top-level one or a message/rfc822 part's) */
struct slot {
	GMimeObject  *leaf;
	GMimeObject  *multipart;      /* NULL: the leaf is msg's body */
	int           index;
	GMimeMessage *msg;
	unsigned      depth;
};

struct leaves {
	struct slot *v;
	size_t       n;
	size_t       cap;
};

static void add_slot(struct leaves *l, const struct slot *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = *s;
}

/* collect - the walk of mime.c (walk()), recording where each leaf sits */
static void collect(struct leaves *l, GMimeObject *obj, GMimeObject *parent, int index,
                    GMimeMessage *msg, unsigned depth, unsigned nest)
{
	if (obj == NULL || nest > MIME_MAX_DEPTH || l->n >= MIME_MAX_PARTS)
		return;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int i, n = g_mime_multipart_get_count(mp);

		for (i = 0; i < n && l->n < MIME_MAX_PARTS; i++)
			collect(l, g_mime_multipart_get_part(mp, i), obj, i, msg, depth, nest + 1);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

		if (m != NULL)
			collect(l, g_mime_message_get_mime_part(m), NULL, 0, m, depth + 1, nest + 1);
	} else {
		struct slot s = { obj, parent, index, msg, depth };

		add_slot(l, &s);
	}
}

/* note_byte - what note_part makes of a byte of a note */
static unsigned char note_byte(unsigned char c)
{
	return c >= 0x7f || (c < 0x20 && c != '\n') ? '?' : c;
}

/* holds_note - the decoded part is the note (line ends CRLF or LF, and
 * maybe the line end that closes the message) */
static int holds_note(const struct mime_part *p, const char *note)
{
	const unsigned char *d = p->data;
	size_t i = 0, k;

	for (k = 0; note[k] != '\0'; k++, i++) {
		unsigned char want = note_byte((unsigned char)note[k]);

		if (want == '\n' && i < p->len && d[i] == '\r')
			i++;
		if (i >= p->len || d[i] != want)
			return 0;
	}
	while (i < p->len && (d[i] == '\r' || d[i] == '\n'))
		i++;
	return i == p->len;
}

/* k_of - which replacement names leaf i */
static size_t k_of(const struct mime_replacement *rep, size_t nrep, size_t i)
{
	size_t k;

	for (k = 0; k < nrep && rep[k].part != i; k++)
		;
	return k;
}

/* same_parts - the message as the front end will relay it (its header
 * section, then rest) parses clean into the leaves of the original, each
 * replaced one a text/plain part without a name holding its note, every
 * other one the same type, name and content as before.  So nothing
 * reaches the recipient that the filters did not see: GMime writes some
 * hostile structures back otherwise than they came (a NUL byte cuts a
 * part's field; multiparts nested under one boundary parse back in other
 * places; a top-level structure can come back as one text part), and
 * such a message is not delivered rewritten. */
static int same_parts(const unsigned char *msg, size_t len, const struct mime_msg *parsed,
                      size_t front, const char *rest, size_t rest_len,
                      const struct mime_replacement *rep, size_t nrep)
{
	unsigned char *whole = xmalloc(front + rest_len + 1);
	struct mime_msg *own = parsed != NULL ? NULL : mime_parse(msg, len), *now;
	const struct mime_msg *was = parsed != NULL ? parsed : own;
	int ok;
	size_t i, k;

	memcpy(whole, msg, front);
	memcpy(whole + front, rest, rest_len);
	now = mime_parse(whole, front + rest_len);
	ok = !now->parse_error && now->nparts == was->nparts;
	for (i = 0; ok && i < now->nparts; i++) {
		const struct mime_part *a = &was->parts[i], *b = &now->parts[i];

		if ((k = k_of(rep, nrep, i)) < nrep)
			ok = strcmp(b->content_type, "text/plain") == 0 && b->filename == NULL &&
			    holds_note(b, rep[k].note);
		else
			ok = strcmp(a->content_type, b->content_type) == 0 &&
			    (a->filename == NULL) == (b->filename == NULL) &&
			    (a->filename == NULL || strcmp(a->filename, b->filename) == 0) &&
			    a->raw_len == b->raw_len && memcmp(a->raw, b->raw, a->raw_len) == 0;
	}
	mime_free(now);
	mime_free(own);
	free(whole);
	return ok;
}

/* note_part - a text/plain part holding note, printable US-ASCII and line
 * breaks only */
static GMimeObject *note_part(const char *note)
{
	GMimeTextPart *tp = g_mime_text_part_new_with_subtype("plain");
	char *t = g_strdup(note);

	for (char *p = t; *p; p++)
		*p = (char)note_byte((unsigned char)*p);
	g_mime_text_part_set_text(tp, t);
	g_mime_object_set_content_type_parameter(GMIME_OBJECT(tp), "charset", "us-ascii");
	g_mime_part_set_content_encoding(GMIME_PART(tp), GMIME_CONTENT_ENCODING_7BIT);
	g_mime_object_set_disposition(GMIME_OBJECT(tp), "inline");
	g_free(t);
	return GMIME_OBJECT(tp);
}

int mime_replace_parts(const unsigned char *msg, size_t len, const struct mime_msg *parsed,
                       const struct mime_replacement *rep, size_t nrep, size_t max,
                       struct sbuf *rest, int *top, char *err, size_t errlen)
{
	gint64 hend = -1;
	GMimeMessage *m = mime_gmime_parse(msg, len, NULL, NULL, &hend);
	struct leaves l = { NULL, 0, 0 };
	GMimeFormatOptions *fo = NULL;
	GMimeStream *out = NULL;
	GByteArray *bytes;
	int rc = -1;
	size_t i, start, front;

	*top = 0;
	if (m == NULL) {
		snprintf(err, errlen, "the message does not parse");
		return -1;
	}
	front = header_edits_apply((const char *)msg, len, NULL, 0, NULL);   /* where the front ends cut */
	if (hend < 0 || (uint64_t)hend != front) {
		/* the front end relays its own header section before what is
		 * written here: both must cut the message at the same place */
		snprintf(err, errlen, "the header section ends elsewhere for GMime");
		goto out;
	}
	collect(&l, g_mime_message_get_mime_part(m), NULL, 0, m, 0, 0);
	for (i = 0; i < nrep; i++)
		if (rep[i].part >= l.n) {
			snprintf(err, errlen, "part %zu not found (%zu parts)", rep[i].part + 1, l.n);
			goto out;
		}
	for (i = 0; i < nrep; i++) {
		const struct slot *s = &l.v[rep[i].part];
		GMimeObject *np = note_part(rep[i].note);

		if (s->multipart != NULL) {
			GMimeObject *old = g_mime_multipart_replace(GMIME_MULTIPART(s->multipart),
			    s->index, np);

			if (old != NULL)
				g_object_unref(old);
		} else {
			if (s->msg == m)
				*top = 1;
			g_mime_message_set_mime_part(s->msg, np);
		}
		g_object_unref(np);    /* the tree holds it */
	}
	fo = g_mime_format_options_new();
	g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
	out = g_mime_stream_mem_new();
	if (g_mime_object_write_content_to_stream(g_mime_message_get_mime_part(m), fo, out) < 0) {
		snprintf(err, errlen, "cannot write the new body");
		goto out;
	}
	bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
	/* GMime writes some line ends bare whatever the format options say
	 * (after the epilogue): every line of the result ends in CRLF, and the
	 * last one too (RFC 5322) */
	start = rest->len;
	if (sbuf_add(rest, "\r\n", 2) < 0)
		goto too_long;
	for (i = 0; i < bytes->len; ) {
		const guint8 *nl = memchr(bytes->data + i, '\n', bytes->len - i);
		size_t end = nl != NULL ? (size_t)(nl - bytes->data) : bytes->len;

		if (sbuf_add(rest, bytes->data + i, end - i) < 0)
			goto too_long;
		if (nl == NULL)
			break;
		if ((end == 0 || bytes->data[end - 1] != '\r') && sbuf_addc(rest, '\r') < 0)
			goto too_long;
		if (sbuf_addc(rest, '\n') < 0)
			goto too_long;
		i = end + 1;
	}
	if (bytes->len > 0 && bytes->data[bytes->len - 1] != '\n' && sbuf_add(rest, "\r\n", 2) < 0)
		goto too_long;
	if (rest->len - start > max)
		goto too_long;
	/* the tree and its copy of the message go before the check parses
	 * the message again */
	g_object_unref(out);
	out = NULL;
	g_object_unref(m);
	m = NULL;
	if (!*top && !same_parts(msg, len, parsed, front, rest->data + start, rest->len - start,
	    rep, nrep)) {
		snprintf(err, errlen, "the rewritten message does not parse back to the same parts");
		goto out;
	}
	rc = 0;
	goto out;
too_long:
	snprintf(err, errlen, "the new body is longer than %zu bytes", max);
out:
	if (out != NULL)
		g_object_unref(out);
	if (fo != NULL)
		g_mime_format_options_free(fo);
	free(l.v);
	if (m != NULL)
		g_object_unref(m);
	return rc;
}
