/* av.c - scan outcomes into symbols, X-Virus-* fields and verdicts (av.h). */
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "filters/av.h"

#define AV_NAME_MAX 128    /* a signature name as shown in replies and headers */

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
