/* bayes_list.h - a mailing list's boilerplate, left out of the word
 * model's evidence (bayes_list.c). */
#ifndef MW_BAYES_LIST_H
#define MW_BAYES_LIST_H

#include <stddef.h>
#include "filters/bayes.h"
#include "filters/filter_api.h"
#include "filters/store.h"

#define BAYES_LIST_RING     20     /* a list's messages remembered, the latest learned */
#define BAYES_LIST_MIN      5      /* remembered before its boilerplate is used */
#define BAYES_LIST_SLOT_MAX 4096   /* tokens of a message remembered; a bigger one is not */

/* bayes_list_key - "bayes:list:<32 hex>" into out for a message that came
 * through a mailing list: the list named by its List-Id (RFC 2919), else
 * by Mailing-List, X-Mailing-List or List-Post, else by a Sender that is
 * a list's owner or bounce address.  1 with the key, 0 no list, -1 out
 * too small or no digest. */
int bayes_list_key(const struct msgscan *ms, char *out, size_t outsz);

/* bayes_list_note - remember the tokens of a message just learned in its
 * list's window (key from bayes_list_key; the oldest of BAYES_LIST_RING
 * makes room) and store the list's boilerplate anew: the tokens in at
 * least half of the messages remembered, once there are
 * BAYES_LIST_MIN.  Both values live ttl_s (0 = for ever).  0, or -1 store
 * failure. */
int bayes_list_note(struct store *st, const char *key, const struct bayes_tokens *t, unsigned ttl_s);

/* bayes_list_strip - move the list's boilerplate out of t (sorted,
 * unique: stays so) into listed (emptied first; sorted too), for
 * bayes_probability to weigh only as spam evidence.  0 (also when the
 * list has none yet, or its stored value is damaged: logged), -1 store
 * failure. */
int bayes_list_strip(struct store *st, const char *key, struct bayes_tokens *t, struct bayes_tokens *listed);

#endif
