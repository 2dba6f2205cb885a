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
 *
 * A leaf under a signature (in a multipart/signed, or an S/MIME
 * signed-data part) or in a multipart/encrypted is never replaced: the
 * recipient's program would report the genuine message as forged, or
 * could not decrypt it.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>

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
	/* the multipart/signed or multipart/encrypted the leaf lies in (the
	 * innermost one), or NULL */
	const char   *sealed;
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
                    GMimeMessage *msg, unsigned depth, unsigned nest, const char *sealed)
{
	if (obj == NULL || nest > MIME_MAX_DEPTH || l->n >= MIME_MAX_PARTS)
		return;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		GMimeContentType *ct = g_mime_object_get_content_type(obj);
		int i, n = g_mime_multipart_get_count(mp);

		/* by the declared type, not GMime's class: a client goes by
		 * the type too */
		if (ct != NULL && g_mime_content_type_is_type(ct, "multipart", "signed"))
			sealed = "multipart/signed";
		else if (ct != NULL && g_mime_content_type_is_type(ct, "multipart", "encrypted"))
			sealed = "multipart/encrypted";
		for (i = 0; i < n && l->n < MIME_MAX_PARTS; i++)
			collect(l, g_mime_multipart_get_part(mp, i), obj, i, msg, depth, nest + 1, sealed);
	} else if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *m = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

		if (m != NULL)
			collect(l, g_mime_message_get_mime_part(m), NULL, 0, m, depth + 1, nest + 1, sealed);
	} else {
		struct slot s = { obj, parent, index, msg, depth, sealed };

		add_slot(l, &s);
	}
}

/* der_len - skip a DER/BER length at *p (indefinite: 0); -1 if bad */
static int der_len(const unsigned char **p, const unsigned char *end, size_t *len)
{
	unsigned n;

	if (*p >= end)
		return -1;
	if (**p < 0x80) {
		*len = *(*p)++;
		return 0;
	}
	n = *(*p)++ & 0x7f;
	if (n > 4 || (size_t)(end - *p) < n)
		return -1;
	for (*len = 0; n > 0; n--)
		*len = (*len << 8) | *(*p)++;
	return 0;
}

int mime_cms_kind(const unsigned char *d, size_t n)
{
	/* ContentInfo ::= SEQUENCE { contentType OBJECT IDENTIFIER, ... };
	 * the OIDs under 1.2.840.113549.1 (pkcs) without their tag */
	static const unsigned char pkcs7[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07 };
	static const unsigned char smime_ct[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01 };
	const unsigned char *p = d, *end = d + n;
	size_t len;

	if (n < 4 || *p++ != 0x30 || der_len(&p, end, &len) < 0 || p + 2 > end || *p++ != 0x06)
		return MIME_CMS_NONE;
	if (der_len(&p, end, &len) < 0 || (size_t)(end - p) < len)
		return MIME_CMS_NONE;
	if (len == sizeof(pkcs7) + 1 && memcmp(p, pkcs7, sizeof(pkcs7)) == 0)
		return p[len - 1] == 2 ? MIME_CMS_SIGNED : p[len - 1] == 3 ? MIME_CMS_ENVELOPED : MIME_CMS_OTHER;
	if (len == sizeof(smime_ct) + 1 && memcmp(p, smime_ct, sizeof(smime_ct)) == 0)
		return p[len - 1] == 23 ? MIME_CMS_ENVELOPED : MIME_CMS_OTHER;   /* authEnvelopedData */
	return MIME_CMS_NONE;
}

unsigned char *mime_cms_content(const unsigned char *d, size_t n, size_t *len)
{
	const unsigned char *p = d;
	CMS_ContentInfo *cms;
	ASN1_OCTET_STRING **content;
	unsigned char *out = NULL;

	*len = 0;
	if (mime_cms_kind(d, n) != MIME_CMS_SIGNED || n > LONG_MAX)
		return NULL;
	/* OpenSSL joins the pieces of a BER constructed string (openssl cms
	 * -sign -stream writes the content so) into one */
	if ((cms = d2i_CMS_ContentInfo(NULL, &p, (long)n)) == NULL) {
		ERR_clear_error();
		return NULL;
	}
	content = CMS_get0_content(cms);
	if (content != NULL && *content != NULL && ASN1_STRING_length(*content) > 0) {
		*len = (size_t)ASN1_STRING_length(*content);
		out = malloc(*len + 1);
		if (out != NULL) {
			memcpy(out, ASN1_STRING_get0_data(*content), *len);
			out[*len] = '\0';
		} else
			*len = 0;
	}
	CMS_ContentInfo_free(cms);
	ERR_clear_error();
	return out;
}

/* is_pkcs7 - a part S/MIME clients open as a CMS object: by its type, or
 * named smime.p7m under another type (application/octet-stream) */
static int is_pkcs7(const struct mime_part *p)
{
	if (strcmp(p->content_type, "application/pkcs7-mime") == 0 ||
	    strcmp(p->content_type, "application/x-pkcs7-mime") == 0)
		return 1;
	for (size_t k = 0; p->names != NULL && p->names[k] != NULL; k++) {
		size_t n = strlen(p->names[k]);

		if (n >= 4 && g_ascii_strcasecmp(p->names[k] + n - 4, ".p7m") == 0)
			return 1;
	}
	return 0;
}

/* sealed_by - why replacing leaf i (the shared parse's p) would break a
 * signature or an encrypted structure the recipient's program checks, or
 * NULL */
static const char *sealed_by(const struct slot *s, const struct mime_part *p)
{
	const char *st;

	if (s->sealed != NULL)
		return s->sealed;
	if (!is_pkcs7(p))
		return NULL;
	/* what the content is, whatever smime-type says; the parameter
	 * still counts when the content is not DER a client could read */
	if (mime_cms_kind(p->raw, p->raw_len) == MIME_CMS_SIGNED)
		return "signed S/MIME part (signed-data)";
	st = g_mime_object_get_content_type_parameter(s->leaf, "smime-type");
	if (st != NULL && g_ascii_strcasecmp(st, "signed-data") == 0)
		return "signed S/MIME part (signed-data)";
	return NULL;
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
static int same_parts(const unsigned char *msg, const struct mime_msg *was,
                      size_t front, const char *rest, size_t rest_len,
                      const struct mime_replacement *rep, size_t nrep)
{
	unsigned char *whole = xmalloc(front + rest_len + 1);
	struct mime_msg *now;
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
	struct mime_msg *own = NULL;
	const struct mime_msg *was = parsed;
	int rc = -1;
	size_t i, start, front;

	*top = 0;
	if (m == NULL) {
		snprintf(err, errlen, "the message does not parse");
		return -1;
	}
	if (was == NULL)
		was = own = mime_parse(msg, len);
	front = header_edits_apply((const char *)msg, len, NULL, 0, NULL);   /* where the front ends cut */
	if (hend < 0 || (uint64_t)hend != front) {
		/* the front end relays its own header section before what is
		 * written here: both must cut the message at the same place */
		snprintf(err, errlen, "the header section ends elsewhere for GMime");
		goto out;
	}
	collect(&l, g_mime_message_get_mime_part(m), NULL, 0, m, 0, 0, NULL);
	for (i = 0; i < nrep; i++)
		if (rep[i].part >= l.n || rep[i].part >= was->nparts) {
			snprintf(err, errlen, "part %zu not found (%zu parts)", rep[i].part + 1, l.n);
			goto out;
		}
	/* a client checks a signature over the bytes of the part it covers
	 * (RFC 1847, 5751, 3156): one leaf changed there, or an opaque signed
	 * part swapped whole, and the recipient sees a broken or forged
	 * signature on a genuine message; a multipart/encrypted with a part
	 * replaced cannot be decrypted.  The caller delivers neither. */
	for (i = 0; i < nrep; i++) {
		const char *why = sealed_by(&l.v[rep[i].part], &was->parts[rep[i].part]);

		if (why != NULL) {
			snprintf(err, errlen, "part %zu is in a %s", rep[i].part + 1, why);
			rc = strcmp(why, "multipart/encrypted") == 0 ? MIME_REPLACE_ENCRYPTED
			                                             : MIME_REPLACE_SIGNED;
			goto out;
		}
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
	if (!*top && !same_parts(msg, was, front, rest->data + start, rest->len - start,
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
	mime_free(own);
	return rc;
}
