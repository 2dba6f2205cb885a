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
	size_t  count;
};

/* milter_reply - split "550 5.7.1 text" and smfi_setreply it; 0 / -1 */
int milter_reply(SMFICTX *ctx, const char *reply);

/* milter_apply - the result's action and edits.  leadspc: the MTA keeps
 * the leading space of header values (SMFIP_HDR_LEADSPC negotiated), so
 * ours must carry one.  *what gets the action name for the audit log
 * ("accept", "tag", "reject", "quarantine", ...). */
sfsistat milter_apply(SMFICTX *ctx, const struct config *cfg, const struct scan_result *res,
                      const struct milter_fields *fields, int leadspc, const char **what);

#endif
