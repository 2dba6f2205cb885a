/* bayes_list.h - a mailing list's boilerplate, left out of the word
 * model's evidence (bayes_list.c). */
#ifndef MW_BAYES_LIST_H
#define MW_BAYES_LIST_H

#include <stddef.h>
#include <stdint.h>
#include "filters/bayes.h"
#include "filters/filter_api.h"
#include "filters/store.h"

#define BAYES_LIST_RING     20     /* a list's messages remembered, the latest learned */
#define BAYES_LIST_MIN      5      /* remembered before its boilerplate is used */
/* tokens of a message remembered; a bigger one is not.  2,048: 4,096
 * until session 20's review, which let one window take 640 KB and one
 * message's slot 32 KB of a map; of the corpus' learned list messages
 * (median 300 tokens, p90 659, p99 2,619) 16 of 1,066 are longer (1 was
 * over 4,096), long texts whose words are theirs, not the list's */
#define BAYES_LIST_SLOT_MAX 2048

/* bayes_list_key - "bayes:list:<32 hex>" into out for a message that came
 * through a mailing list: the list named by its List-Id (RFC 2919), else
 * by Mailing-List, X-Mailing-List or List-Post, else by a Sender that is
 * a list's owner or bounce address.  1 with the key, 0 no list, -1 out
 * too small or no digest. */
int bayes_list_key(const struct msgscan *ms, char *out, size_t outsz);

/* bayes_list_note - remember the tokens of a message just learned in its
 * list's window (key from bayes_list_key; the oldest of BAYES_LIST_RING
 * makes room) and store the list's boilerplate anew: the tokens in at
 * least half of the messages remembered, once there are BAYES_LIST_MIN.
 * id: the message's (8 bytes of its bayes:seen key, not 0): a message
 * the window holds already (forgotten and learned again) is not added
 * twice.  stub_first (autolearn): a name not seen before gets a stub
 * (the id alone, 24 bytes), not a window, and the list's second message
 * starts it: anyone's mail that scores clearly is autolearned, and a
 * sender naming a new list in each message then leaves no window of its
 * tokens (up to BAYES_LIST_SLOT_MAX x 8 bytes) each.  Not for "mailwarden
 * learn", the site's own choice of mail: there the first message of a
 * list is remembered, as a stub costs accuracy where a list has few
 * learned messages (the swapped split of test_accuracy.py, 3/8 of the
 * training half learned: Bayes alone 96.1% -> 95.6%, rules + Bayes 97.7%
 * -> 97.5%; in the corpus 10 of 33 lists had one learned message).
 * Both values live ttl_s (0 = for ever); they are a cache, which a full
 * LMDB map removes (store_lmdb.c make_room).  0, or -1 store failure. */
int bayes_list_note(struct store *st, const char *key, uint64_t id, const struct bayes_tokens *t,
                    unsigned ttl_s, int stub_first);

/* bayes_list_strip - move the list's boilerplate out of t (sorted,
 * unique: stays so) into listed (emptied first; sorted too), for
 * bayes_probability to weigh only as spam evidence.  0 (also when the
 * list has none yet, or its stored value is damaged: logged once a
 * process, rewritten by the list's next note), -1 store failure. */
int bayes_list_strip(struct store *st, const char *key, struct bayes_tokens *t, struct bayes_tokens *listed);

#endif
