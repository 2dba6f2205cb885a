/* sender_norm.h - one envelope sender for all the return paths a
 * correspondent writes: the stable part of a tagged address (BATV, SRS,
 * VERP, +extensions), as Postgrey builds its triplets, so that greylisting
 * (and, without the ids, ratelimit_sender: sender_norm_tags) sees a mailing list or a BATV-signing
 * site as one sender instead of a new one per message.  Pure string code,
 * no I/O, no allocation. */
#ifndef MW_SENDER_NORM_H
#define MW_SENDER_NORM_H

#include <stddef.h>

/* sender_norm - the normalised form of the envelope sender in into out
 * (outsz bytes), ASCII lower-cased:
 *   - BATV: "prvs=TAG=local@d" and "msprvs1=TAG=local@d" -> "local@d"
 *   - SRS: "SRS0=HASH=TT=orig.dom=orig@fwd" -> "srs0=orig.dom=orig@fwd"
 *     (hash and timestamp gone; the forwarder and the original kept:
 *     the forwarder is the client, the original says whose mail it is);
 *     "SRS1=HASH=fwd1==HASH=TT=orig.dom=orig@fwd2" ->
 *     "srs1=fwd1==orig.dom=orig@fwd2"
 *   - "+ext" after the first character of the local part removed
 *   - in the local part, each run of digits -> '#', and each word of 8 or
 *     more hex digits holding a digit (a message id, a hash) -> '#'
 * The domain is only lower-cased.  The null sender "" stays "", an
 * address without '@' is treated as a local part.  out is never longer
 * than in, so outsz > strlen(in) always suffices.  Returns the length
 * written, or -1 (out holds "") if it does not fit. */
int sender_norm(const char *in, char *out, size_t outsz);

/* sender_norm_tags - sender_norm without the ids: the BATV and SRS tags
 * and the +extension go, digits stay.  For a key that is the sender alone
 * (ratelimit_sender): there user1@ and user2@ are two mailboxes, where
 * greylisting's triplet also has the client network and the recipient to
 * tell them apart. */
int sender_norm_tags(const char *in, char *out, size_t outsz);

#endif
