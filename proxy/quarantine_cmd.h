/* quarantine_cmd.h - "mailwarden quarantine": look at, release, delete and
 * expire quarantined messages (the store: quarantine.h).
 *
 *   list [--since TIME] [--json]     entries, oldest first
 *   show [--json|--raw] ID           envelope, result, reason, headers; or the message
 *   release [--to RCPT]... [--again] ID
 *                                    send it on over SMTP (original envelope,
 *                                    or the given recipients) to those an
 *                                    earlier release did not deliver to
 *                                    (--again: to them too); audit-logged
 *   delete ID                        remove it; audit-logged
 *   expire                           remove entries older than quarantine_max_age
 *
 * argv[0] is "quarantine".  Returns the exit code: 0, or 1 after one line
 * on stderr (bad usage, bad or unknown ID, store or SMTP failure, a release
 * refused for some recipients); for release also 2 (nothing sent: every
 * recipient had it from an earlier release) and 3 (delivered, or perhaps
 * delivered, and not recorded as released: the record could not be
 * rewritten, or the upstream did not answer the end of the message). */
#ifndef MW_QUARANTINE_CMD_H
#define MW_QUARANTINE_CMD_H

#include "proxy/config.h"

int quarantine_command(struct config *cfg, int argc, char **argv);

#endif
