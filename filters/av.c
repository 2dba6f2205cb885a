/* av.c - scan outcomes into symbols, X-Virus-* fields and verdicts (av.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <archive.h>
#include <archive_entry.h>

#include "filters/av.h"
#include "filters/mime.h"

#define AV_NAME_MAX 128    /* a signature name as shown in replies and headers */
#define ZIP_UNPACK_MAX (64u << 20)   /* zips in zips unpacked to count their entries */

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
              const char *virname)
{
	char name[AV_NAME_MAX + 1], text[300];
	int mode = mw_direction(ctx) == MW_OUTBOUND ? cfg->av_outbound_action
	                                            : cfg->av_inbound_action;

	safe_name(name, sizeof(name), virname);
	mw_symbol(ctx, AV_SYM_VIRUS, 0, "%s", name);
	mw_log(ctx, LOG_NOTICE, "virus found: %s (action %s)", name,
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
		snprintf(text, sizeof(text), "554 5.7.1 Virus found: %s", name);
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

/* zip_count - the entries of the zip in b, plus those of the zips inside
 * it (any name: libclamav finds them by content) to depth levels; what
 * is unpacked for that comes out of *budget.  Stops early past limit. */
static uint64_t zip_count(const unsigned char *b, size_t n, unsigned depth, uint64_t limit,
                          uint64_t *budget)
{
	uint64_t total = zip_entries(b, n);
	struct archive *ar;
	struct archive_entry *e;

	if (total == 0 || total > limit || depth == 0 || (ar = archive_read_new()) == NULL)
		return total;
	archive_read_support_format_zip(ar);
	if (archive_read_open_memory(ar, b, n) == ARCHIVE_OK) {
		while (total <= limit && archive_read_next_header(ar, &e) == ARCHIVE_OK) {
			la_int64_t size = archive_entry_size(e);
			unsigned char *in;
			size_t got = 0;
			la_ssize_t r;

			if (!archive_entry_size_is_set(e) || size < 22 || (uint64_t)size > *budget ||
			    (in = malloc((size_t)size)) == NULL)
				continue;
			while (got < (size_t)size &&
			    (r = archive_read_data(ar, in + got, (size_t)size - got)) > 0)
				got += (size_t)r;
			*budget -= got;
			total += zip_count(in, got, depth - 1, limit - total, budget);
			free(in);
		}
	}
	archive_read_free(ar);
	return total;
}

int av_zip_over(struct mw_ctx *ctx, const struct config *cfg, char *why, size_t whylen)
{
	const struct mime_msg *m = mime_get(ctx);
	uint64_t total = 0, budget = ZIP_UNPACK_MAX;

	for (size_t i = 0; i < m->nparts; i++) {
		total += zip_count(m->parts[i].raw, m->parts[i].raw_len, cfg->av_max_recursion,
		    cfg->av_max_zip_entries, &budget);
		if (total > cfg->av_max_zip_entries) {
			snprintf(why, whylen, "zip attachments list more than %u entries (av_max_zip_entries)",
			    cfg->av_max_zip_entries);
			return 1;
		}
	}
	return 0;
}
