/* scanconn.h - what a front end's scanner client (scanclient.c, the
 * proxy's; scansync.c, the milter's) makes of a request it could not
 * send.  One rule for both, so that the proxy and the milter never again
 * tell a dead connection, a scanner that is away and a request that cannot
 * go apart in two different ways:
 *
 * - the connection is gone (scanconn_gone) and it was one kept from
 *   before, with nothing in flight on it: the scanner it led to went away
 *   since (killed and respawned by the master, or retired by a reload),
 *   which says nothing of the scanner listening now.  The request goes
 *   once more on a new connection, within its own deadline
 *   (scanconn_send_again); only if that fails too is the scanner
 *   unavailable (the proxy's 451, the milter's milter_default_action).
 * - the connection is gone and it was new, or carried requests in flight:
 *   the scanner is unavailable (or died under those requests).
 * - anything else but a full socket is the request's own failure (too
 *   big, no memory or descriptor for its memfd): the scanner is fine, it
 *   fails alone and is logged as what it is (scanconn_unsent_why), never
 *   as "scanner unavailable". */
#ifndef MW_SCANCONN_H
#define MW_SCANCONN_H

#include <stddef.h>

/* scanconn_gone - errno of a send or connect that says the connection or
 * the scanner is gone (EPIPE, ECONNRESET, ENOTCONN, ECONNREFUSED); EBADF
 * is not one (a bad descriptor in SCM_RIGHTS: the request's own) */
int scanconn_gone(int e);

/* scanconn_send_again - 1 if a request whose send failed with e goes once
 * more on a new connection: e says the connection is gone and kept_idle
 * (it was kept from an earlier request, and nothing is in flight on it) */
int scanconn_send_again(int e, int kept_idle);

/* scanconn_unsent_why - the request could not be sent for a reason of its
 * own (errno e): "scan request not sent: " and what it was, into buf */
void scanconn_unsent_why(int e, char *buf, size_t len);

#endif
