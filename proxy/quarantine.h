/* quarantine.h - the quarantine store: a directory holding, per message,
 * ID.eml (the message exactly as received: CRLF lines, not dot-stuffed) and
 * ID.json (envelope, scan result, reason, time).  ID is the UTC time of
 * storage and random hex, e.g. "20261127T013000-3f9a0c1d", so a plain "ls"
 * lists the store in time order.  An entry exists once its .json exists
 * (written last); a lone .eml or a ".tmp-*" file is debris of a crash. */
#ifndef MW_QUARANTINE_H
#define MW_QUARANTINE_H

#include <stddef.h>
#include "proxy/scanproto.h"

#define QUARANTINE_ID_MAX 32    /* "YYYYMMDDTHHMMSS-xxxxxxxx" + NUL fits */

/* quarantine_store - store msg[0..len) with its envelope (req), result
 * (res; res->quarantine_id is not read) and reason (may be NULL) under a
 * new ID in dir, creating dir (mode 0700, parents too) if missing.  Each
 * file is written to a temporary name, fsync'ed and renamed into place; an
 * existing entry is never overwritten.  Thread-safe.  Returns 0 with the ID
 * in id_out (NUL-terminated), or -1 with errno (ENAMETOOLONG when idsz is
 * too small or dir too long). */
int quarantine_store(const char *dir, const struct scan_request *req,
                     const struct scan_result *res, const char *reason,
                     const void *msg, size_t len, char *id_out, size_t idsz);

#endif
