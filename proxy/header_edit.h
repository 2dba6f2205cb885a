/* header_edit.h - apply a scan result's header edits to a message's header
 * section.  One implementation for the proxy (what it relays) and the
 * scanner (what a DKIM signer must sign: the header section exactly as it
 * will leave). */
#ifndef MW_HEADER_EDIT_H
#define MW_HEADER_EDIT_H

#include <stddef.h>
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"

/* header_edits_apply - append to out the header section of msg[0..len) as
 * it goes out: added fields first (in edit order), then the message's own
 * fields without the removed ones and with changed ones replaced (a change
 * takes the first field of its name that no removal takes, as the milter
 * front end does), for any number of edits; the empty
 * line that ends the section is NOT appended, unless the section ended
 * at a line that is no field (and no empty line): then one is, so that
 * the rest is body for every later reader as it was for the filters.  Returns the offset in msg
 * where the rest (the empty line and the body, or the body-less rest)
 * starts.  out may be NULL: only that offset (where the front ends cut
 * the message: the one walk for all who need it). */
size_t header_edits_apply(const char *msg, size_t len, const struct header_edit *edits,
                          size_t nedits, struct sbuf *out);

#endif
