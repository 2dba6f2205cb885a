/* av.c - scan outcomes into symbols, X-Virus-* fields and verdicts (av.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include <archive.h>
#include <archive_entry.h>

#include "filters/av.h"
#include "filters/deadline.h"
#include "filters/mime.h"
#include "filters/pgp_packet.h"
#include "filters/textenc.h"
#include "proxy/sbuf.h"

#define AV_NAME_MAX 128    /* a signature name as shown in replies and headers */
#define AV_WHERE_MAX 160   /* where a hidden content was found, as shown */
#define ZIP_UNPACK_MAX (64u << 20)   /* containers unpacked to count the zips' entries */

/* realloc_or_free - realloc that frees the block when it fails */
static void *realloc_or_free(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (q == NULL)
		free(p);
	return q;
}

int av_limit_name(const char *virname)
{
	return strncmp(virname, "Heuristics.Limits.Exceeded", 26) == 0;
}

/* safe_name - the name as printable ASCII without the characters that
 * would break a header or a reply ('(' ')' ';' stay: names have none) */
static void safe_name(char *out, size_t outsz, const char *name)
{
	size_t i, n = 0;

	for (i = 0; name[i] != '\0' && n + 1 < outsz && n < AV_NAME_MAX; i++) {
		unsigned char c = (unsigned char)name[i];

		out[n++] = (c > 0x20 && c < 0x7f) ? (char)c : '_';
	}
	out[n] = '\0';
	if (n == 0)
		snprintf(out, outsz, "unnamed");
}

/* headers - the sender's X-Virus-Status fields go, ours come in */
static void headers(struct mw_ctx *ctx, const struct config *cfg, const char *scanner,
                    const char *status)
{
	char v[300];

	mw_header_remove(ctx, AV_HDR_STATUS);
	if (!cfg->av_headers)
		return;
	snprintf(v, sizeof(v), "%s at %s", scanner, cfg->hostname);
	mw_header_add(ctx, AV_HDR_SCANNED, v);
	mw_header_add(ctx, AV_HDR_STATUS, status);
}

void av_clean(struct mw_ctx *ctx, const struct config *cfg, const char *scanner)
{
	headers(ctx, cfg, scanner, "Clean");
}

void av_virus(struct mw_ctx *ctx, const struct config *cfg, const char *scanner,
              const char *virname, const char *where)
{
	char name[AV_NAME_MAX + 1], text[AV_NAME_MAX + AV_WHERE_MAX + 40], found[AV_NAME_MAX + AV_WHERE_MAX + 8];
	int mode = mw_direction(ctx) == MW_OUTBOUND ? cfg->av_outbound_action
	                                            : cfg->av_inbound_action;

	safe_name(name, sizeof(name), virname);
	if (where != NULL && where[0] != '\0')
		snprintf(found, sizeof(found), "%s in %.*s", name, AV_WHERE_MAX, where);
	else
		snprintf(found, sizeof(found), "%s", name);
	mw_symbol(ctx, AV_SYM_VIRUS, 0, "%s", found);
	mw_log(ctx, LOG_NOTICE, "virus found: %s (action %s)", found,
	    mode == AV_VIRUS_QUARANTINE ? "quarantine" : mode == AV_VIRUS_TAG ? "tag" : "reject");
	snprintf(text, sizeof(text), "Infected (%s)", name);
	headers(ctx, cfg, scanner, text);
	switch (mode) {
	case AV_VIRUS_QUARANTINE:
		mw_verdict(ctx, MW_QUARANTINE, NULL);
		break;
	case AV_VIRUS_TAG:
		mw_verdict(ctx, MW_TAG, NULL);
		break;
	default:
		snprintf(text, sizeof(text), "554 5.7.1 Virus found: %s", found);
		mw_verdict(ctx, MW_REJECT, text);
		break;
	}
}

void av_unscanned(struct mw_ctx *ctx, const struct config *cfg, const char *scanner,
                  int is_limit, const char *why)
{
	int mode = is_limit ? cfg->av_limit_action : cfg->av_fail_action;

	mw_symbol(ctx, AV_SYM_UNSCANNED, 0, "%s: %s", is_limit ? "limit" : "failure", why);
	mw_log(ctx, is_limit ? LOG_NOTICE : LOG_WARNING, "not scanned (%s): %s; action %s",
	    is_limit ? "limit" : "failure", why,
	    mode == AV_FAIL_TEMPFAIL ? "tempfail" : mode == AV_FAIL_TAG ? "tag" : "accept");
	headers(ctx, cfg, scanner, "Unscanned");
	if (mode == AV_FAIL_TEMPFAIL)
		mw_verdict(ctx, MW_TEMPFAIL, NULL);
	else if (mode == AV_FAIL_TAG)
		mw_verdict(ctx, MW_TAG, NULL);
}

/* zip_entries - the entry count a zip's end of central directory record
 * (or its ZIP64 one) gives, 0 if b is no zip or has none */
static uint64_t zip_entries(const unsigned char *b, size_t n)
{
	size_t i, lo;

	if (n < 22 || memcmp(b, "PK\x03\x04", 4) != 0)
		return 0;
	lo = n - 22 > 0xffff ? n - 22 - 0xffff : 0;     /* the record ends in a comment of < 64 KiB */
	for (i = n - 22 + 1; i-- > lo;) {
		uint64_t e, off;
		size_t k;

		if (memcmp(b + i, "PK\x05\x06", 4) != 0)
			continue;
		e = (uint64_t)b[i + 10] | (uint64_t)b[i + 11] << 8;
		if (e != 0xffff || i < 20 || memcmp(b + i - 20, "PK\x06\x07", 4) != 0)
			return e;
		/* ZIP64: the locator says where the ZIP64 record is */
		for (off = 0, k = 0; k < 8; k++)
			off |= (uint64_t)b[i - 20 + 8 + k] << (8 * k);
		if (off > n - 56 || n < 56 || memcmp(b + off, "PK\x06\x06", 4) != 0)
			return e;
		for (e = 0, k = 0; k < 8; k++)
			e |= (uint64_t)b[off + 32 + k] << (8 * k);
		return e;
	}
	return 0;
}

/* is_container - could b be what libclamav unpacks and finds a zip in: a
 * zip, a tar, a 7z, or a gzip, bzip2 or xz stream (it unpacks those three
 * itself, whatever the name) */
static int is_container(const unsigned char *b, size_t n)
{
	return (n >= 4 && memcmp(b, "PK\x03\x04", 4) == 0) ||
	    (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) ||
	    (n >= 3 && memcmp(b, "BZh", 3) == 0) ||
	    (n >= 6 && memcmp(b, "\xfd" "7zXZ\x00", 6) == 0) ||
	    (n >= 6 && memcmp(b, "7z\xbc\xaf\x27\x1c", 6) == 0) ||
	    (n >= 262 && memcmp(b + 257, "ustar", 5) == 0);
}

/* drain - the rest of the current entry, read into nothing where skipping
 * it would decompress it anyway (a compressed stream, a solid 7z block),
 * counted with the already read into *budget, which it stops at; a tar.gz
 * of 20 GB of zeros is not unpacked whole to look for zips */
static void drain(struct archive *ar, uint64_t *budget, size_t already)
{
	static _Thread_local char scratch[65536];
	uint64_t used = already;
	la_ssize_t r;

	if (archive_filter_count(ar) > 1 ||
	    (archive_format(ar) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_7ZIP)
		while (used < *budget && (r = archive_read_data(ar, scratch, sizeof(scratch))) > 0)
			used += (uint64_t)r;
	*budget -= used < *budget ? used : *budget;
}

/* entry_data - the current entry's data, to its end, if it fits in
 * *budget (which what is read comes out of); NULL if it does not, or on
 * an error, or if it is empty */
static unsigned char *entry_data(struct archive *ar, struct archive_entry *e, uint64_t *budget,
                                 size_t *got)
{
	size_t max = *budget > SIZE_MAX / 4 ? SIZE_MAX / 4 : (size_t)*budget, cap;
	unsigned char *in;
	la_ssize_t r;

	*got = 0;
	if (archive_entry_size_is_set(e) && (uint64_t)archive_entry_size(e) > max) {
		drain(ar, budget, 0);
		return NULL;
	}
	cap = archive_entry_size_is_set(e) ? (size_t)archive_entry_size(e) + 1 : 65536;
	if (cap > max + 1)
		cap = max + 1;
	if ((in = malloc(cap)) == NULL)
		return NULL;
	for (;;) {
		/* the head first: what is no container is not read on */
		size_t want = *got < 512 && cap > 512 ? 512 - *got : cap - *got;

		if ((r = archive_read_data(ar, in + *got, want)) <= 0)
			break;
		*got += (size_t)r;
		if (*got >= 512 && *got - (size_t)r < 512 && !is_container(in, *got)) {
			drain(ar, budget, *got);
			free(in);
			return NULL;
		}
		if (*got == cap) {
			if (cap > max) {
				r = -1;         /* past the budget */
				break;
			}
			cap = cap > max / 2 ? max + 1 : cap * 2;
			if ((in = realloc_or_free(in, cap)) == NULL)
				return NULL;
		}
	}
	*budget -= *got < *budget ? *got : *budget;
	if (r != 0 || *got == 0) {
		free(in);
		return NULL;
	}
	return in;
}

/* zip_count - the entries of the zip in b, plus those of the zips inside
 * it and inside the other containers libclamav opens (tar, 7z, gzip,
 * bzip2, xz: a zip of 5,000 empty entries gzipped took libclamav 5 to 10
 * s past this count) to depth levels; what is unpacked for that comes out
 * of *budget.  Stops early past limit. */
static uint64_t zip_count(const unsigned char *b, size_t n, unsigned depth, uint64_t limit,
                          uint64_t *budget)
{
	uint64_t total = zip_entries(b, n);
	struct archive *ar;
	struct archive_entry *e;

	if (total > limit || depth == 0 || !is_container(b, n) || (ar = archive_read_new()) == NULL)
		return total;
	archive_read_support_format_zip(ar);
	archive_read_support_format_tar(ar);
	archive_read_support_format_7zip(ar);
	archive_read_support_format_raw(ar);
	/* built into Debian's libarchive: never an external program here
	 * (attachments.c checks each at setup; the same library) */
	archive_read_support_filter_gzip(ar);
	archive_read_support_filter_bzip2(ar);
	archive_read_support_filter_xz(ar);
	if (archive_read_open_memory(ar, b, n) == ARCHIVE_OK) {
		while (total <= limit && *budget > 0 && archive_read_next_header(ar, &e) == ARCHIVE_OK) {
			unsigned char *in;
			size_t got;

			if (archive_format(ar) == ARCHIVE_FORMAT_RAW && archive_filter_count(ar) <= 1)
				break;          /* not compressed: nothing libclamav unpacks */
			if ((archive_format(ar) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_ZIP &&
			    archive_filter_count(ar) > 1)
				total++;        /* a zip read through gzip ...: its entries one by one */
			if (total > limit)
				break;
			if (archive_entry_size_is_set(e) && archive_entry_size(e) < 22) {
				drain(ar, budget, 0);
				continue;
			}
			if ((in = entry_data(ar, e, budget, &got)) == NULL)
				continue;
			total += zip_count(in, got, depth - 1, limit - total, budget);
			free(in);
		}
	}
	archive_read_free(ar);
	return total;
}

static void shown_name(const struct mime_part *p, size_t idx, char *out, size_t outsz);

/* zips_over - the zip entries of parts (and of the zips and containers in
 * them) added to *total, unpacking out of *budget; 1 with why once past
 * av_max_zip_entries, or at a part the MIME parse cut at its 64 MiB
 * (whose zips cannot all be counted, nor signed content found in it) */
static int zips_over(const struct mime_part *parts, size_t nparts, const struct config *cfg,
                     uint64_t *total, uint64_t *budget, char *why, size_t whylen)
{
	for (size_t i = 0; i < nparts; i++) {
		if (parts[i].truncated) {
			char name[96];

			shown_name(&parts[i], i, name, sizeof(name));
			snprintf(why, whylen, "%s: decoded past 64 MiB (the MIME parse's limit), not all looked into",
			    name);
			return 1;
		}
		*total += zip_count(parts[i].raw, parts[i].raw_len, cfg->av_max_recursion,
		    cfg->av_max_zip_entries, budget);
		if (*total > cfg->av_max_zip_entries) {
			snprintf(why, whylen, "zip attachments list more than %u entries (av_max_zip_entries)",
			    cfg->av_max_zip_entries);
			return 1;
		}
	}
	return 0;
}

/* --- contents the engine cannot open itself ---------------------------------
 *
 * S/MIME opaque signed-data (application/pkcs7-mime; smime-type=
 * signed-data) carries the signed message in the clear inside a CMS
 * object, which mail programs open and show, attachments and all;
 * libclamav (1.4.6) has no parser for it and scans the DER as data, in
 * which a base64 attachment is just text: a virus attached inside passed
 * both filters.  The content OpenSSL takes out (mime_cms_content) is
 * handed to the same engine as a message of its own.  Everything else the
 * shared parse lists the engine opens itself (multipart/signed is plain
 * MIME; its detached signature holds no content) and is not scanned again.
 * An opaque OpenPGP signed message (gpg --sign: its literal data
 * deflated, base64 again when armored) is the same case with another
 * wrapping, inline in a text body, attached, or the "encrypted" part of a
 * PGP/MIME message that is only signed: its literal data (pgp_packet.c)
 * is scanned as a message when it is a MIME entity, else as the file it
 * is.  A signed-data part may also sit in a message GMime keeps as a leaf (an
 * encoded message/rfc822, a .eml file), which libclamav does parse but
 * cannot see the signed-data of: those are parsed too, not scanned.
 *
 * All of it is taken out before any scan, so that the zips in it count
 * toward av_max_zip_entries before libclamav meets them (the reason for
 * that count: its time grows with the square of a zip's entries). */

#define HIDDEN_MAX_LEVELS 8    /* as the attachments filter opens messages; said in collect */
#define HIDDEN_MAX_BYTES  MIME_MAX_DECODED   /* parsed and taken out, per message */
/* one scan each: a message of many tiny signed-data parts would otherwise
 * cost thousands of scans (clamd connections); said in collect */
#define HIDDEN_MAX_ITEMS  100

/* The signed content is a MIME entity (its header fields are the MIME
 * ones): libclamav takes a buffer for mail only when it starts like one
 * ("\nMIME-Version: " then "\nContent-Type: " in its first 2 KiB), which
 * an entity of many fields, or none, does not; as the body of a
 * message/rfc822 it is read as a message whatever its fields. */
static const char wrap_cms[] = "X-Mailwarden-Content: S/MIME signed content\r\n"
    "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n";
static const char wrap_pgp[] = "X-Mailwarden-Content: OpenPGP signed content\r\n"
    "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n";

struct hidden_item {
	const unsigned char *buf; /* the wrap and the content, or a file as it is */
	unsigned char *owned;    /* buf when it is a copy of ours (freed), or NULL */
	size_t         len;
	int            is_file;  /* OpenPGP literal data that is no MIME entity */
	/* a decoded leaf of a message the engine parses as mail, scanned
	 * again as a file: counted toward a budget of av_max_scansize of
	 * the leaves' own (see "decoded leaves"); 1 for a leaf of the
	 * message's own parse, 2 for one of a message taken out (scanned
	 * after those of the message) */
	int            leaf;
	uint64_t       hash;     /* of a leaf's content: the same content is scanned once */
	char           where[AV_WHERE_MAX + 1];
};

struct hidden {
	const struct config *cfg;
	uint64_t  zip_total, zip_budget;   /* as av_zip_over counts, the message's included */
	uint64_t  opened;        /* bytes parsed or taken out so far */
	unsigned  level;
	struct hidden_item *items;
	size_t    nitems, cap;
	size_t    nsigned;       /* of them signed contents */
	size_t    nleaves;       /* of them leaves of messages read as text */
	size_t    ndecoded;      /* of them decoded leaves of messages taken out (DECODED_MAX_LEAVES) */
	size_t    nencoded;      /* of them files encoded in text parts */
	int       zips;          /* stopped: past av_max_zip_entries */
	int       limit;         /* stopped: past the levels or the bytes */
	char      why[200];      /* why it stopped */
	char      where[AV_WHERE_MAX + 1];
};

/* printable - s made printable ASCII in place: it goes into a reply */
static void printable(char *s)
{
	for (; *s != '\0'; s++)
		if (*s < 0x20 || *s >= 0x7f)
			*s = '_';
}

/* shown_name - a part's name for a log line or a reply: its filename (a
 * sender chose it: cut, made printable later), or its place and type */
static void shown_name(const struct mime_part *p, size_t idx, char *out, size_t outsz)
{
	if (p->filename == NULL || p->filename[0] == '\0')
		snprintf(out, outsz, "part %zu (%.60s)", idx + 1, p->content_type);
	else
		snprintf(out, outsz, "%.60s", p->filename);
}

/* is_message - a whole message GMime keeps as a leaf: message/rfc822 or
 * message/global sent base64 or quoted-printable, or a file named .eml */
static int is_message(const struct mime_part *p)
{
	if (strcmp(p->content_type, "message/rfc822") == 0 ||
	    strcmp(p->content_type, "message/global") == 0)
		return 1;
	for (size_t k = 0; p->names != NULL && p->names[k] != NULL; k++) {
		size_t n = strlen(p->names[k]);

		if (n >= 4 && strcasecmp(p->names[k] + n - 4, ".eml") == 0)
			return 1;
	}
	return 0;
}

/* is_pgp_named - a part that says it is OpenPGP data (its type or name):
 * one that does not parse is then unchecked, where a file that only
 * starts like a binary OpenPGP message is left as it is */
static int is_pgp_named(const struct mime_part *p)
{
	if (strncmp(p->content_type, "application/pgp", 15) == 0)
		return 1;
	for (size_t k = 0; p->names != NULL && p->names[k] != NULL; k++) {
		size_t n = strlen(p->names[k]);

		if (n >= 4 && (strcasecmp(p->names[k] + n - 4, ".gpg") == 0 ||
		    strcasecmp(p->names[k] + n - 4, ".pgp") == 0 ||
		    strcasecmp(p->names[k] + n - 4, ".asc") == 0 ||
		    strcasecmp(p->names[k] + n - 4, ".sig") == 0))
			return 1;
	}
	return 0;
}

/* stop - -1, with where and why it stopped: the first limit hit is the
 * one said (the leaves read as text and the encoded files are still
 * taken out after a limit, each within their own count), unless the zip
 * count, which ends it all, is the one past */
static int stop(struct hidden *h, const char *here, const char *why)
{
	if (h->why[0] == '\0' || h->zips) {
		snprintf(h->where, sizeof(h->where), "%s", here);
		snprintf(h->why, sizeof(h->why), "%s", why);
	}
	return -1;
}

static int collect(struct hidden *h, const struct mime_part *parts, size_t nparts, const char *in);
static int collect_as_text(struct hidden *h, const struct mime_msg *m, const unsigned char *b, size_t len,
                           int as_mail, const char *in, int m_outlives);
static int collect_encoded(struct hidden *h, const struct mime_msg *m, const char *in, int m_outlives);

enum content_kind { C_MESSAGE, C_CMS, C_PGP };

/* file_part - one, a part of the file data (named fname, or not) as the
 * MIME parse would list it; names: room for its names */
static void file_part(struct mime_part *one, const char *names[2], const unsigned char *data, size_t len,
                      const char *fname)
{
	memset(one, 0, sizeof(*one));
	one->content_type = "application/octet-stream";
	one->declared_type = "";
	one->filename = fname != NULL && fname[0] != '\0' ? fname : NULL;
	one->raw = one->data = data;
	one->raw_len = one->len = len;
	names[0] = one->filename;
	names[1] = NULL;
	one->names = one->filename != NULL ? names : NULL;
}

/* hidden_zips - the zips of parts found in a part (here) counted with the
 * message's: 0, or -1 past av_max_zip_entries (h->zips set, said) */
static int hidden_zips(struct hidden *h, const char *here, const struct mime_part *parts, size_t nparts)
{
	char why[200];

	if (!zips_over(parts, nparts, h->cfg, &h->zip_total, &h->zip_budget, why, sizeof(why)))
		return 0;
	h->zips = 1;
	return stop(h, here, why);
}

/* new_item - the next of h's items, where it is */
static struct hidden_item *new_item(struct hidden *h, const char *here, int is_file)
{
	struct hidden_item *it;

	if (h->nitems == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 4;
		h->items = xrealloc(h->items, h->cap * sizeof(*h->items));
	}
	it = &h->items[h->nitems++];
	memset(it, 0, sizeof(*it));
	it->is_file = is_file;
	snprintf(it->where, sizeof(it->where), "%s", here);
	return it;
}

/* keep - a content kept for its scan (freed by av_scan_message): wrap its
 * head, or NULL for a file scanned as it is; where the copy of data is */
static const unsigned char *keep(struct hidden *h, const char *here, const unsigned char *data, size_t len,
                                 const char *wrap)
{
	struct hidden_item *it = new_item(h, here, wrap == NULL);
	size_t wl = wrap != NULL ? strlen(wrap) : 0;

	it->len = wl + len;
	it->owned = xmalloc(it->len + 1);
	if (wl > 0)             /* a file has no wrapper: wrap is NULL */
		memcpy(it->owned, wrap, wl);
	if (len > 0)
		memcpy(it->owned + wl, data, len);
	it->owned[it->len] = '\0';
	it->buf = it->owned;
	return it->owned + wl;
}

/* keep_file - a file scanned as it is, from data that outlives the scans
 * (a leaf of the message's MIME parse): not copied */
static void keep_file(struct hidden *h, const char *here, const unsigned char *data, size_t len)
{
	struct hidden_item *it = new_item(h, here, 1);

	it->buf = data;
	it->len = len;
}

/* take - one content found in a part (here says where): within the
 * levels, bytes and count, kept for its scan (signed content: wrap is its
 * head, or NULL for a file scanned as it is), then looked into: parsed as
 * a message (or, a file, as one part) for the zips and the signed content
 * in it.  0, or -1 when a limit stopped it */
static int take(struct hidden *h, const char *here, enum content_kind kind, const unsigned char *data,
                size_t len, const char *wrap, const char *fname)
{
	const unsigned char *inner = data;
	int rc;

	if (h->level >= HIDDEN_MAX_LEVELS) {
		h->limit = 1;
		return stop(h, here, "nested more than 8 levels in messages and signed content");
	}
	if (h->opened + len > HIDDEN_MAX_BYTES) {
		h->limit = 1;
		return stop(h, here, "messages and signed content over 64 MiB");
	}
	if (kind != C_MESSAGE && h->nsigned >= HIDDEN_MAX_ITEMS) {
		h->limit = 1;
		return stop(h, here, "more than 100 signed contents in the message");
	}
	h->opened += len;
	if (kind != C_MESSAGE) {
		/* kept, wrapped, for its scan (freed by av_scan_message); the
		 * reader's copy goes at the caller */
		inner = keep(h, here, data, len, wrap);
		h->nsigned++;
	}
	h->level++;
	if (wrap == NULL && kind == C_PGP) {
		/* a file: libclamav opens its zips (counted) and the signed
		 * content inside it is looked for as in a part of that name */
		struct mime_part one;
		const char *names[2];

		file_part(&one, names, inner, len, fname);
		if ((rc = hidden_zips(h, here, &one, 1)) == 0)
			rc = collect(h, &one, 1, here);
	} else {
		struct mime_msg *m = mime_parse(inner, len);

		if (m->encoded_multipart) {
			/* as for the message's own (av_scan_message): neither
			 * GMime nor the engine decoded it; said, and what is
			 * there looked into all the same */
			h->limit = 1;
			stop(h, here, "a multipart sent encoded (RFC 2045 forbids it), its parts not scanned");
		}
		if ((rc = hidden_zips(h, here, m->parts, m->nparts)) == 0) {
			/* a signed-data in the signed content, or in a message in it */
			rc = collect(h, m->parts, m->nparts, here);
			/* signed content is scanned as the body of a
			 * message/rfc822, which the engine reads as mail
			 * whatever its fields; a message that is a leaf it
			 * types as it types any */
			if (rc == 0)
				rc = collect_as_text(h, m, inner, len, kind != C_MESSAGE, here, 0);
			if (rc == 0)
				rc = collect_encoded(h, m, here, 0);
		}
		mime_free(m);
	}
	h->level--;
	return rc;
}

/* take_pgp - the OpenPGP message at d (armored or not) in a part: its
 * literal data taken; encrypted messages and those without literal data
 * are left as they are.  One that does not parse is a limit hit when the
 * part is armored or says it is OpenPGP, else no OpenPGP message at all */
static int take_pgp(struct hidden *h, const char *here, const unsigned char *d, size_t n, int armored,
                    int named)
{
	struct pgp_literal lit;
	char why[150], whyp[200];
	uint64_t room = HIDDEN_MAX_BYTES - h->opened;
	size_t max;
	int rc;

	if (h->cfg->av_max_scansize > 0 && h->cfg->av_max_scansize < room)
		room = h->cfg->av_max_scansize;
	max = room > SIZE_MAX / 4 ? SIZE_MAX / 4 : (size_t)room;
	switch (pgp_read(d, n, armored, max, &lit, why, sizeof(why))) {
	case PGP_LITERAL:
		break;
	case PGP_MALFORMED:
		if (!armored && !named)
			return 0;
		/* fall through */
	case PGP_LIMIT:
		h->limit = 1;
		snprintf(whyp, sizeof(whyp), "OpenPGP message not read: %s", why);
		return stop(h, here, whyp);
	default:
		return 0;
	}
	rc = take(h, here, C_PGP, lit.data, lit.len,
	    pgp_looks_mime(lit.data, lit.len) ? wrap_pgp : NULL, lit.name);
	free(lit.data);
	return rc;
}

/* collect - the signed contents among parts and in the messages among
 * them, into h->items; in: where parts are, NULL at the top.  0, or -1
 * when a limit stopped it (h->zips or h->limit set, with where and why) */
static int collect(struct hidden *h, const struct mime_part *parts, size_t nparts, const char *in)
{
	for (size_t i = 0; i < nparts; i++) {
		const struct mime_part *p = &parts[i];
		int is_signed = mime_cms_kind(p->raw, p->raw_len) == MIME_CMS_SIGNED;
		char name[96], here[AV_WHERE_MAX + 1];
		unsigned char *content;
		size_t len, pos = 0, at, blen;
		int rc, armored = 0;

		shown_name(p, i, name, sizeof(name));
		if (p->truncated) {
			/* zips_over refuses these first; a cut part is never
			 * taken for a whole one here either */
			snprintf(here, sizeof(here), "%s%s%s", name, in != NULL ? " in " : "", in != NULL ? in : "");
			printable(here);
			h->limit = 1;
			return stop(h, here, "decoded past 64 MiB (the MIME parse's limit), not all looked into");
		}
		if (is_signed) {
			snprintf(here, sizeof(here), "the S/MIME signed content of %s%s%s", name,
			    in != NULL ? " in " : "", in != NULL ? in : "");
			printable(here);
			/* a detached signature has no content, and one OpenSSL
			 * cannot read no program shows */
			if ((content = mime_cms_content(p->raw, p->raw_len, &len)) == NULL)
				continue;
			rc = take(h, here, C_CMS, content, len, wrap_cms, NULL);
			free(content);
			if (rc < 0)
				return rc;
			continue;
		}
		if (is_message(p)) {
			if (p->raw_len == 0)
				continue;
			snprintf(here, sizeof(here), "message %s%s%s", name, in != NULL ? " in " : "",
			    in != NULL ? in : "");
			printable(here);
			if ((rc = take(h, here, C_MESSAGE, p->raw, p->raw_len, NULL, NULL)) < 0)
				return rc;
			continue;
		}
		/* OpenPGP: armored blocks anywhere in the part (the body of an
		 * inline message, an .asc file), or the part a binary message */
		snprintf(here, sizeof(here), "the OpenPGP signed content of %s%s%s", name,
		    in != NULL ? " in " : "", in != NULL ? in : "");
		printable(here);
		while (pgp_armor_find(p->raw, p->raw_len, &pos, &at, &blen)) {
			armored = 1;
			if ((rc = take_pgp(h, here, p->raw + at, blen, 1, 1)) < 0)
				return rc;
		}
		if (!armored && pgp_binary_sniff(p->raw, p->raw_len) &&
		    (rc = take_pgp(h, here, p->raw, p->raw_len, 0, is_pgp_named(p))) < 0)
			return rc;
	}
	return 0;
}

/* --- messages the engine reads as text ---------------------------------------
 *
 * libclamav (1.4.6) parses a message as mail only when it types it so:
 * the buffer it is handed, and each message/rfc822 part (or .eml file) it
 * meets in a message, which it writes to a file and types again.  Its
 * mail types are byte patterns whose field names have a fixed case:
 * "Received: ", "From: ", "Subject: " ... at the first byte, or a
 * "MIME-Version: " line followed within 1 KiB by a "Content-Type: " line
 * (or a "From: " line by a "MIME-Version: " one; of those only the first
 * letters of the words in either case).  A
 * message none of them matches ("FROM:", "MIME-VERSION:",
 * "CoNtEnT-TyPe:", or a message of other fields first and no
 * MIME-Version) is scanned as ASCII text: a base64 attachment in it is
 * never decoded, nor is anything in the messages forwarded in it, and a
 * virus attached passed both filters.  GMime reads field names in any case
 * (RFC 5322), as mail programs do.  So, once the message came back clean,
 * the leaves of the messages the engine read as text are scanned one by
 * one, as GMime decoded them: a text/plain one as the body of a message of
 * its own (the engine then finds the uuencoded files in it, as in mail),
 * any other as the file it is.  A message the engine reads as mail costs
 * nothing more than the look at its first bytes. */

/* --- decoded leaves ------------------------------------------------------------
 *
 * The engine finds the parts of a message with its own MIME parser, which
 * does not split a message where mail programs do: a delimiter line with
 * transport padding ("--BND<TAB>", RFC 2046), which GMime, Python and
 * Thunderbird take as a delimiter, is text to libclamav (1.4.6), and a
 * line of an attachment's base64 that starts with the boundary and "--"
 * ("--WDVP--IVAl..." under boundary WDVP: base64 decoders skip the '-',
 * so programs open the file whole) is its close delimiter.  EICAR so
 * attached passed both filters as Clean.  So once a message came back
 * clean each leaf of it, as GMime decoded it (base64 decoded on past
 * mid-stream padding, mime_base64.h), is scanned again as the file it is:
 * what a mail program would save is what the engine sees, however the
 * engine split the message.  It costs little where the engine split the
 * message as GMime did: it decoded the same bytes then, and its clean
 * cache (keyed by content; the options never vary) answers their scan
 * without a match run; clamd's too, one connection more each.
 *
 * What bounds them, and in what order (a bound an attacker reaches
 * cheaply, with a virus past it, is a way around the scan when
 * av_limit_action is accept, the default):
 *  - the same content is scanned once (hash, then the bytes compared):
 *    a thousand copies of one part cost one scan;
 *  - the leaves of the message's own parse are all kept (at most
 *    MIME_MAX_PARTS: the parse lists no more) and scanned first, the
 *    smallest first; then those of the messages taken out (forwarded
 *    messages sent encoded, which GMime keeps as leaves, parsed here),
 *    the smallest first, of which at most 1000 distinct ones are kept:
 *    past it a limit hit.  So parts of a forwarded message (a 75 KB one
 *    sent base64 can have 1000) no longer push a leaf of the message out
 *    of the scans, and a few big leaves do not use the budget before
 *    the small ones are scanned;
 *  - what the engine counted of their scans (a gzip leaf counts what it
 *    inflates to) counts toward a budget of av_max_scansize of the
 *    leaves' own, beside the message's (the engine counted most of them
 *    once already in the message's scan, a legitimate message must not
 *    pay them twice): a leaf past what is left is a limit hit.  100 gzip
 *    leaves of 20 MiB of zeros each (a 2.8 MB message) cost the scanner
 *    30 s before this; now five of them are scanned;
 *  - the scan's deadline is looked at before each scan after the
 *    message's: past it, the scan fails as the front end's wait would
 *    have (av_fail_action), and the scanner thread is free again.
 * What stays reachable: a virus in a forwarded message sent encoded
 * behind 1000 distinct parts of such messages, or in a leaf bigger than
 * leaves that together count past av_max_scansize, is a limit hit
 * (av_limit_action; README says to set it to reject or quarantine).
 * The leaves of the messages read as text (below) are scanned as before. */

/* distinct decoded leaves kept of the messages taken out, all together
 * (one parse lists up to MIME_MAX_PARTS, but 1000 forwarded messages
 * sent base64 could list as many each); past it a limit hit */
#define DECODED_MAX_LEAVES MIME_MAX_PARTS

/* leaf_hash - FNV-1a of a leaf's content: to find the same content again
 * (a match is compared byte by byte: a collision only costs a compare) */
static uint64_t leaf_hash(const unsigned char *d, size_t n)
{
	uint64_t x = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++)
		x = (x ^ d[i]) * 0x100000001b3ULL;
	return x;
}

/* keep_leaf - a decoded leaf (prio: 1 the message's own, 2 of a message
 * taken out) kept for its scan, unless the same content is kept already
 * (then scanned at the earlier of the two priorities).  1 when kept, 0
 * when it was there */
static int keep_leaf(struct hidden *h, const char *here, const unsigned char *data, size_t len, int prio,
                     int m_outlives)
{
	uint64_t x = leaf_hash(data, len);

	for (size_t i = 0; i < h->nitems; i++) {
		struct hidden_item *it = &h->items[i];

		if (it->leaf != 0 && it->hash == x && it->len == len && memcmp(it->buf, data, len) == 0) {
			if (prio < it->leaf)
				it->leaf = prio;
			return 0;
		}
	}
	if (m_outlives)
		keep_file(h, here, data, len);
	else
		keep(h, here, data, len, NULL);
	h->items[h->nitems - 1].leaf = prio;
	h->items[h->nitems - 1].hash = x;
	return 1;
}

/* alt_leaf - what Thunderbird saves of p instead, when that differs (a
 * base64 content whose last quartet was cut short, mime_part.alt_tail):
 * a new buffer (free) of *len bytes, or NULL.  The leaf as GMime decodes
 * it is p->raw, which every filter checks; this one is scanned beside it,
 * so a file sent unpadded matches its whole-file hash signature in
 * whichever of the two is the file (review rv-today4) */
static unsigned char *alt_leaf(const struct mime_part *p, size_t *len)
{
	unsigned char *b;

	if (p->alt_tail_len == 0 || p->alt_keep > p->raw_len || p->alt_tail_len > sizeof(p->alt_tail))
		return NULL;
	*len = p->alt_keep + p->alt_tail_len;
	b = xmalloc(*len + 1);
	memcpy(b, p->raw, p->alt_keep);
	memcpy(b + p->alt_keep, p->alt_tail, p->alt_tail_len);
	b[*len] = '\0';
	return b;
}

/* keep_alt_leaf - p's Thunderbird save (alt_leaf), if it has one, kept
 * as keep_leaf keeps a leaf (the buffer becomes the item's own); 1 when
 * kept, 0 when it has none or the same content was there */
static int keep_alt_leaf(struct hidden *h, const char *here, const struct mime_part *p, int prio)
{
	size_t len = 0;
	unsigned char *b = alt_leaf(p, &len);
	uint64_t x;

	if (b == NULL)
		return 0;
	x = leaf_hash(b, len);
	for (size_t i = 0; i < h->nitems; i++) {
		struct hidden_item *it = &h->items[i];

		if (it->leaf != 0 && it->hash == x && it->len == len && memcmp(it->buf, b, len) == 0) {
			if (prio < it->leaf)
				it->leaf = prio;
			free(b);
			return 0;
		}
	}
	{
		struct hidden_item *it = new_item(h, here, 1);

		it->buf = it->owned = b;
		it->len = len;
		it->leaf = prio;
		it->hash = x;
	}
	return 1;
}

#define HIDDEN_MAX_LEAVES 100   /* scans of such leaves; said in collect_as_text */
#define MAIL_TYPE_SPAN (64u << 10)   /* of a header section looked at; past it: text */

static const char wrap_text[] = "X-Mailwarden-Content: text of a message read as text\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n";

/* the types of libclamav 1.4.6's own table (filetypes_int.h, used when
 * the database has no daily.ftm) that say mail by a message's first
 * bytes, as written; the odd ones (">From ", "X-EVS", a qmail bounce) left
 * out: what is not here is scanned apart, which only costs */
static const char *const mail_starts[] = {
	"Received: ", "Return-Path: ", "Return-path: ", "From: ", "From ", "Date: ", "Subject: ",
	"To: ", "Message-ID: ", "Message-Id: ", "Delivered-To: ", "Delivery-date: ",
	"Envelope-to: ", "For: ", "Received-SPF: ", "X-Apparently-To: ", "X-Envelope-From: ",
	"X-Original-To: ", "X-Real-To: ", "X-Sieve: ", "X-UIDL: ", NULL
};

/* shaped - s starts with pat, where an upper-case letter of pat stands
 * for itself in either case and every other byte for itself */
static int shaped(const unsigned char *s, size_t n, const char *pat)
{
	size_t i;

	for (i = 0; pat[i] != '\0'; i++) {
		unsigned char c = (unsigned char)pat[i];

		if (i >= n)
			return 0;
		if (c >= 'A' && c <= 'Z' ? (s[i] != c && s[i] != c + 32) : s[i] != c)
			return 0;
	}
	return 1;
}

/* line_after - a line shaped as pat starts less than 1000 bytes after
 * from, before end */
static int line_after(const unsigned char *b, size_t from, size_t end, const char *pat)
{
	for (size_t j = from; j < end && j <= from + 1000; j++)
		if (b[j] == '\n' && shaped(b + j + 1, end - j - 1, pat))
			return 1;
	return 0;
}

/* engine_reads_mail - does libclamav type the message at b as mail: 1
 * only when one of its mail types surely matches, in its header section:
 * a first field of mail_starts, a MIME-Version line with a Content-Type
 * line less than 1000 bytes after it, or a From line in the first 1000
 * bytes with a MIME-Version line less than 1000 bytes after it; else 0 */
static int engine_reads_mail(const unsigned char *b, size_t n)
{
	size_t i, end = n < MAIL_TYPE_SPAN ? n : MAIL_TYPE_SPAN;

	for (i = 0; mail_starts[i] != NULL; i++)
		if (n >= strlen(mail_starts[i]) && memcmp(b, mail_starts[i], strlen(mail_starts[i])) == 0)
			return 1;
	for (i = 0; i < end; i++) {
		if (i > 0 && b[i - 1] != '\n')
			continue;
		if (b[i] == '\n' || (b[i] == '\r' && i + 1 < end && b[i + 1] == '\n'))
			break;          /* the empty line: the body is not looked at */
		if (shaped(b + i, end - i, "MIME-Version: ") && line_after(b, i + 14, end, "Content-Type: "))
			return 1;
		/* (the '\n' before it, where the type's pattern starts, in its
		 * first 1 KiB) */
		if (i > 0 && i < 1000 && shaped(b + i, end - i, "From: ") &&
		    line_after(b, i + 6, end, "MIME-Version: "))
			return 1;
	}
	return 0;
}

/* append - s after the used bytes of out (cut to fit) */
static void append(char *out, size_t outsz, const char *s)
{
	size_t used = strlen(out);

	if (used + 1 < outsz)
		snprintf(out + used, outsz - used, "%s", s);
}

/* leaf_where - a leaf of m as a reply names it: its name, then each
 * message it is forwarded in, then in (where m is, or NULL) */
static void leaf_where(const struct mime_msg *m, size_t idx, const char *in, char *out, size_t outsz)
{
	const struct mime_part *p = &m->parts[idx];
	char name[96];

	shown_name(p, idx, name, sizeof(name));
	snprintf(out, outsz, "%s", name);
	for (size_t k = p->msg, hops = 0; k != 0 && k < m->nmsgs && hops < m->nmsgs; k = m->msgs[k].parent, hops++) {
		if (m->msgs[k].filename != NULL) {
			snprintf(name, sizeof(name), " in message %.60s", m->msgs[k].filename);
			append(out, outsz, name);
		} else
			append(out, outsz, " in a forwarded message");
	}
	if (in != NULL) {
		append(out, outsz, " in ");
		append(out, outsz, in);
	}
	printable(out);
}

/* collect_as_text - the leaves of m (parsed from the len bytes at b) in
 * the messages the engine reads as text, kept for a scan each, and those
 * of the messages it parses as files (decoded leaves, above); as_mail:
 * the engine reads b as mail whatever its fields (b is the body of the
 * message/rfc822 it is handed); in: where b is, NULL for the message
 * itself; m_outlives: m lives until the scans (the message's own parse),
 * so its non-text leaves are scanned where they are, not copied.  0, or
 * -1 when a limit stopped it (h->limit, with where and why) */
static int collect_as_text(struct hidden *h, const struct mime_msg *m, const unsigned char *b, size_t len,
                           int as_mail, const char *in, int m_outlives)
{
	unsigned char *parsed;      /* per message of m: the engine parses it as mail */
	int rc = 0, as_text = 0;

	if (m->nmsgs == 0)
		return 0;
	parsed = xmalloc(m->nmsgs);
	parsed[0] = as_mail || engine_reads_mail(b, len);
	for (size_t k = 1; k < m->nmsgs; k++) {
		const struct mime_message *mm = &m->msgs[k];

		/* the engine meets a forwarded message only in one it parsed */
		parsed[k] = mm->parent < k && parsed[mm->parent] && mm->offset >= 0 &&
		    (unsigned long long)mm->offset < len &&
		    engine_reads_mail(b + mm->offset, len - (size_t)mm->offset);
	}
	for (size_t k = 0; k < m->nmsgs; k++)
		as_text |= !parsed[k];
	if (as_text && m->incomplete != NULL) {
		/* the parts GMime did not list were not seen decoded */
		char why[200];

		snprintf(why, sizeof(why), "read as text by the engine, and its MIME structure not walked whole (%s)",
		    m->incomplete);
		h->limit = 1;
		rc = stop(h, in != NULL ? in : "the message", why);
	}
	for (size_t i = 0; rc == 0 && i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];
		char here[AV_WHERE_MAX + 1];
		int is_text = strcmp(p->content_type, "text/plain") == 0;

		if (p->raw_len == 0)
			continue;
		leaf_where(m, i, in, here, sizeof(here));
		if (parsed[p->msg]) {
			/* the engine parsed it, but may have split it
			 * elsewhere (see "decoded leaves" above); a part cut
			 * at the parse's 64 MiB is a limit hit already
			 * (zips_over) */
			if (p->truncated)
				continue;
			if (m_outlives) {
				/* the message's own: as many as the parse lists
				 * (twice the few sent unpadded) */
				keep_leaf(h, here, p->raw, p->raw_len, 1, 1);
				keep_alt_leaf(h, here, p, 1);
				continue;
			}
			if (h->ndecoded >= DECODED_MAX_LEAVES) {
				h->limit = 1;
				rc = stop(h, here, "more than 1000 distinct decoded parts in forwarded messages sent encoded");
				break;
			}
			h->ndecoded += (size_t)keep_leaf(h, here, p->raw, p->raw_len, 2, 0);
			if (p->alt_tail_len > 0) {
				if (h->ndecoded >= DECODED_MAX_LEAVES) {
					h->limit = 1;
					rc = stop(h, here, "more than 1000 distinct decoded parts in forwarded messages "
					    "sent encoded");
					break;
				}
				h->ndecoded += (size_t)keep_alt_leaf(h, here, p, 2);
			}
			continue;
		}
		if (p->truncated) {
			h->limit = 1;
			rc = stop(h, here, "decoded past 64 MiB in a message read as text by the engine");
		} else if (h->nleaves >= HIDDEN_MAX_LEAVES) {
			h->limit = 1;
			rc = stop(h, here, "more than 100 parts in messages the engine reads as text");
		} else {
			size_t alen = 0;
			unsigned char *alt = alt_leaf(p, &alen);

			if (is_text || !m_outlives)
				keep(h, here, p->raw, p->raw_len, is_text ? wrap_text : NULL);
			else
				keep_file(h, here, p->raw, p->raw_len);
			h->nleaves++;
			/* Thunderbird's save of a content sent unpadded too */
			if (alt != NULL && h->nleaves >= HIDDEN_MAX_LEAVES) {
				h->limit = 1;
				rc = stop(h, here, "more than 100 parts in messages the engine reads as text");
			} else if (alt != NULL) {
				keep(h, here, alt, alen, is_text ? wrap_text : NULL);
				h->nleaves++;
			}
			free(alt);
		}
	}
	free(parsed);
	return rc;
}

/* --- files encoded in text parts ---------------------------------------------
 *
 * Files yEnc'd or BinHex'd in a text body, which mail programs show as
 * attachments (the attachments filter checks their names and types).
 * libclamav (1.4.6) finds neither in a text part (a BinHex file only on
 * its own or as an application/mac-binhex40 part), nor a uuencoded file
 * in a text part sent base64 or in HTML: EICAR so encoded passed both the
 * clamav and clamd filters as Clean.  So each text part with a
 * uuencoded block is scanned again as the body of a message of its own
 * (the engine finds those there), and each yEnc and BinHex file is
 * decoded (textenc.c) and scanned as the file it is; a part that says it
 * is BinHex is read so too.  At most 100 of them and their share of the
 * 64 MiB of content taken out, or a limit hit.  They are taken out with
 * the signed contents, before any scan, for the zips in the files (those
 * uuencoded, too: the engine opens them, in the message's own scan for
 * a text/plain part sent as it is) to count toward av_max_zip_entries;
 * they are scanned once the message came back clean. */

#define ENCODED_MAX_SCANS 100   /* said in encoded_room */

static const char encoded_over[] = "more than 100 text parts and files encoded in them";

/* encoded_room - one more scan of len bytes taken out: 0, or -1 (a limit
 * hit, said) past the count or the bytes */
static int encoded_room(struct hidden *h, const char *here, uint64_t len)
{
	if (h->nencoded >= ENCODED_MAX_SCANS) {
		h->limit = 1;
		return stop(h, here, encoded_over);
	}
	if (h->opened + len > HIDDEN_MAX_BYTES) {
		h->limit = 1;
		return stop(h, here, "messages, signed content and encoded files over 64 MiB");
	}
	h->nencoded++;
	h->opened += len;
	return 0;
}

/* keep_decoded - a decoded file to scan (name: the one it was encoded
 * under, or NULL), its zips counted first: libclamav opens them in its
 * scan, which their entries make slow as those of a zip attached.  The
 * MIME layer's copy is scanned where it is when its parse outlives the
 * scans (the message's own), else copied.  0, or -1 past
 * av_max_zip_entries */
static int keep_decoded(struct hidden *h, const char *here, const unsigned char *data, size_t len,
                        const char *name, int m_outlives)
{
	struct mime_part one;
	const char *names[2];

	if (m_outlives)
		keep_file(h, here, data, len);
	else
		keep(h, here, data, len, NULL);
	file_part(&one, names, data, len, name);
	return hidden_zips(h, here, &one, 1);
}

/* encoded_files - the files of kind (uuencoded, or yEnc and BinHex) in
 * the part m->parts[i], as the MIME layer decoded them (mime_text_files:
 * once per message, for the attachments filter too): the zips of the
 * uuencoded ones counted (the engine decodes those itself, in the
 * message's own scan when the part is text/plain sent as it is, else in
 * the part's scan again, and opens their zips), the yEnc and BinHex ones
 * kept to scan.  A BinHex file whose header does not read is left to the
 * attachments filter, which calls it unchecked.  The files found (0:
 * none), or -1 when a limit stopped it */
static int encoded_files(struct hidden *h, const struct mime_msg *m, size_t i, const char *here,
                         int m_outlives, int uuencoded)
{
	size_t n;
	const struct mime_file *e = mime_text_files(m, i, &n);
	int found = 0;

	for (size_t k = 0; k < n; k++) {
		struct mime_part one;
		const char *names[2];
		size_t got;

		if ((e[k].kind == MIME_FILE_UU) != uuencoded)
			continue;
		if (e[k].over) {
			/* past the files the MIME layer decodes of a message */
			h->limit = 1;
			return stop(h, here, encoded_over);
		}
		switch (e[k].kind) {
		case MIME_FILE_UU:
			file_part(&one, names, e[k].data, e[k].len, NULL);
			if (hidden_zips(h, here, &one, 1) < 0)
				return -1;
			break;
		case MIME_FILE_YENC:
			/* what it decodes to is at most the rest of the part */
			if (encoded_room(h, here, e[k].claimed) < 0)
				return -1;
			h->opened -= e[k].claimed - e[k].len;
			if (keep_decoded(h, here, e[k].data, e[k].len, NULL, m_outlives) < 0)
				return -1;
			break;
		case MIME_FILE_BINHEX:
			if (e[k].binhex != BINHEX_OK)
				continue;
			/* runs make 255 bytes of 4 characters: the length it
			 * claims is what is counted */
			if (encoded_room(h, here, e[k].claimed) < 0)
				return -1;
			got = mime_file_read(m, &e[k], (size_t)e[k].claimed);
			h->opened -= e[k].claimed - got;
			if (keep_decoded(h, here, e[k].data, got, e[k].name, m_outlives) < 0)
				return -1;
			break;
		}
		found++;
	}
	return found;
}

/* collect_encoded - the text parts of m with encoded files in them, kept
 * for a scan each as above; in: where m is, NULL for the message itself;
 * m_outlives as for collect_as_text.  0, or -1 when a limit stopped it */
static int collect_encoded(struct hidden *h, const struct mime_msg *m, const char *in, int m_outlives)
{
	for (size_t i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];
		char here[AV_WHERE_MAX + 1];
		int uu;

		if ((!p->is_text && !mime_says_binhex(p)) || p->raw_len == 0 || p->truncated)
			continue;
		leaf_where(m, i, in, here, sizeof(here));
		/* a part with uuencoded files is scanned again as the body of
		 * a message of its own (the engine finds them there) */
		if ((uu = encoded_files(h, m, i, here, m_outlives, 1)) < 0 ||
		    (uu > 0 && encoded_room(h, here, m_outlives ? 0 : p->raw_len) < 0))
			return -1;
		if (uu > 0)
			keep(h, here, p->raw, p->raw_len, wrap_text);
		if (encoded_files(h, m, i, here, m_outlives, 0) < 0)
			return -1;
	}
	return 0;
}

/* scan_order - the order of h's items for their scans: the others as
 * they were taken out, then the decoded leaves, the message's own first,
 * each group the smallest first (see "decoded leaves"); indexes into
 * h->items, to free */
struct order_key {
	int    leaf;
	size_t len, i;
};

static int by_scan_order(const void *a, const void *b)
{
	const struct order_key *x = a, *y = b;

	if (x->leaf != y->leaf)
		return x->leaf < y->leaf ? -1 : 1;
	if (x->leaf != 0 && x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

static size_t *scan_order(const struct hidden *h)
{
	struct order_key *k = xmalloc((h->nitems ? h->nitems : 1) * sizeof(*k));
	size_t *o = xmalloc((h->nitems ? h->nitems : 1) * sizeof(*o));

	for (size_t i = 0; i < h->nitems; i++)
		k[i] = (struct order_key){ .leaf = h->items[i].leaf, .len = h->items[i].len, .i = i };
	qsort(k, h->nitems, sizeof(*k), by_scan_order);
	for (size_t i = 0; i < h->nitems; i++)
		o[i] = k[i].i;
	free(k);
	return o;
}

void av_scan_message(struct mw_ctx *ctx, const struct config *cfg, const struct av_scanner *s)
{
	const unsigned char *msg;
	const struct mime_msg *m = mime_get(ctx);
	char out[400], why[AV_WHERE_MAX + 420];
	const char *where = NULL;
	struct hidden h = { .cfg = cfg, .zip_budget = ZIP_UNPACK_MAX };
	uint64_t counted = 0, budget, leaf_budget = cfg->av_max_scansize;
	enum av_result r;
	size_t len, *order = NULL;

	msg = mw_message(ctx, &len);
	if (zips_over(m->parts, m->nparts, cfg, &h.zip_total, &h.zip_budget, out, sizeof(out))) {
		av_unscanned(ctx, cfg, s->label, 1, out);
		return;
	}
	/* the encoded files of its text parts too: libclamav opens the zips
	 * of the uuencoded ones in the message's own scan.  A limit hit
	 * while the signed contents are taken out does not end the taking
	 * out of those files, nor of the leaves read as text below, nor the
	 * scans of what was taken out: it made the antivirus scan nothing it
	 * had taken out, so that a virus yEnc'd before 101 yEnc'd files, or
	 * attached to a message the engine reads as text, passed as a limit
	 * hit (av_limit_action accept by default).  Only what is past a
	 * limit is not seen. */
	collect(&h, m->parts, m->nparts, NULL);
	if (!h.zips)
		collect_encoded(&h, m, NULL, 1);
	if (h.zips) {
		/* as for the message's own zips: before any scan */
		snprintf(why, sizeof(why), "%s: %s", h.where, h.why);
		av_unscanned(ctx, cfg, s->label, 1, why);
		goto done;
	}
	out[0] = '\0';
	r = s->scan(s->arg, msg, len, "message.eml", out, sizeof(out), &counted);
	/* the message's own leaves, when it or a message in it was read as
	 * text: only once it came back clean (their zips are counted) */
	if (r == AV_CLEAN)
		collect_as_text(&h, m, msg, len, 0, NULL, 1);
	/* only what came back clean is looked into: a virus the engine found
	 * in the message is not looked for again.  The contents count toward
	 * av_max_scansize with what the message's scan counted. */
	budget = cfg->av_max_scansize > (counted > len ? counted : len)
	    ? cfg->av_max_scansize - (counted > len ? counted : len) : 0;
	if (r == AV_CLEAN)
		order = scan_order(&h);
	for (size_t k = 0; r == AV_CLEAN && k < h.nitems; k++) {
		const struct hidden_item *it = &h.items[order[k]];
		uint64_t *left = it->leaf ? &leaf_budget : &budget;

		where = it->where;
		if (deadline_left_ms() == 0) {
			/* the front end has stopped waiting (or is about to):
			 * the scanner thread is not held for what nobody waits
			 * for; a failure as a timed-out clamd is */
			deadline_timed_out("scan_deadline");
			snprintf(out, sizeof(out), "no time left of the scan's deadline");
			r = AV_FAILED;
			break;
		}
		if (cfg->av_max_scansize > 0 && it->len > *left) {
			snprintf(out, sizeof(out), it->leaf ? "decoded parts past av_max_scansize"
			    : "past av_max_scansize with the rest of the message");
			r = AV_LIMIT;
			break;
		}
		r = s->scan(s->arg, it->buf, it->len, it->is_file ? "content" : "content.eml", out, sizeof(out),
		    &counted);
		*left -= counted < *left ? counted : *left;
	}
	free(order);
	if (r == AV_CLEAN && m->encoded_multipart && !h.limit) {
		/* neither GMime nor the engine decoded it: what a program
		 * decoding it would show was not scanned */
		h.limit = 1;
		snprintf(h.where, sizeof(h.where), "the message");
		snprintf(h.why, sizeof(h.why), "a multipart sent encoded (RFC 2045 forbids it), its parts not scanned");
	}
	if (r == AV_CLEAN && h.limit) {
		/* what is past the levels, the bytes or a count was not seen */
		snprintf(out, sizeof(out), "%s", h.why);
		where = h.where;
		r = AV_LIMIT;
	}
	if (r == AV_CLEAN)
		where = NULL;
	if (where != NULL)
		snprintf(why, sizeof(why), "%s: %s", where, out);
	else
		snprintf(why, sizeof(why), "%s", out);
	switch (r) {
	case AV_CLEAN:
		av_clean(ctx, cfg, s->label);
		break;
	case AV_VIRUS:
		av_virus(ctx, cfg, s->label, out, where);
		break;
	case AV_LIMIT:
		av_unscanned(ctx, cfg, s->label, 1, why);
		break;
	default:
		av_unscanned(ctx, cfg, s->label, 0, why);
		break;
	}
done:
	for (size_t i = 0; i < h.nitems; i++)
		free(h.items[i].owned);
	free(h.items);
}
