/* milter_result.h - a scan result as milter actions at end of message:
 * header edits (smfi_insheader / smfi_chgheader), reply codes
 * (smfi_setreply), quarantine (smfi_quarantine), and the sfsistat. */
#ifndef MW_MILTER_RESULT_H
#define MW_MILTER_RESULT_H

#include <stddef.h>
#include <libmilter/mfapi.h>

#include "config.h"
#include "scanproto.h"

/* the header field names of the message, in order, as the MTA sent them */
struct milter_fields {
	char  **names;
	size_t  count, cap;
};

/* milter_reply - split "550 5.7.1 text" and smfi_setreply it; 0 / -1 */
int milter_reply(SMFICTX *ctx, const char *reply);

/* MILTER_MAX_DELETIONS - header fields the milter removes from one
 * message at most; a message that needs more is refused (milter_apply) */
#define MILTER_MAX_DELETIONS 1000

/* milter_apply - the result's action and edits.  leadspc: the MTA keeps
 * the leading space of header values (SMFIP_HDR_LEADSPC negotiated), so
 * ours must carry one.  *what gets the action name for the audit log
 * ("accept", "tag", "reject", "quarantine", ...), *reply the reply given
 * (the result's, or the milter's own when it could not carry it out). */
sfsistat milter_apply(SMFICTX *ctx, const struct config *cfg, const struct scan_result *res,
                      const struct milter_fields *fields, int leadspc, const char **what,
                      const char **reply);

#endif
