/* bayes.h - the Bayes classifier's parts shared by the "bayes" filter
 * (bayes.c), its tokenizer (bayes_tok.c) and "mailwarden learn"
 * (learn_cmd.c). */
#ifndef MW_BAYES_H
#define MW_BAYES_H

#include <stddef.h>
#include <stdint.h>
#include "filters/filter_api.h"
#include "filters/store.h"
#include "proxy/config.h"

#define BAYES_MAX_TOKENS 20000     /* distinct tokens kept per message */
/* Of those, autolearn counts at most this many (bayes_tokens_keep: a
 * sample the words do not choose), marking the message 'S' or 'H' (a
 * sample) where a taught one is 's' or 'h': forgetting or relearning it
 * takes off that sample, teaching it counts the rest.  A message of 4,000 random words has
 * 20,000, about 3 MB of a Redis server's memory; of the 3,056 messages
 * of the SpamAssassin corpus's training half the median has 207, 99%
 * fewer than 2,600, 12 more than 3,000 (at most 10,800).  The site's own
 * "mailwarden learn" counts them all. */
#define BAYES_AUTOLEARN_MAX_TOKENS 3000

/* The distinct tokens of one message: 64-bit hashes, sorted, unique. */
struct bayes_tokens {
	uint64_t *h;                   /* owned */
	size_t    n, cap;
};

/* bayes_tokenize - the message of ctx (its header fields and its decoded
 * text parts, from the shared MIME parse when it is linked in, else the
 * raw body) as tokens: words and word pairs of the text, words of the
 * header fields prefixed by the field name.  out is filled anew. */
void bayes_tokenize(struct mw_ctx *ctx, struct bayes_tokens *out);
void bayes_tokens_free(struct bayes_tokens *t);

/* bayes_tokenize gives up to 4 x BAYES_MAX_TOKENS tokens; which of them
 * are kept when fewer may count is chosen by the store's secret
 * (bayes_sample.c): the lowest SipHash-2-4 of the token under it, the
 * same choice in every process sharing the store, one a sender cannot
 * aim at. */
struct bayes_sample_key {
	uint64_t k0, k1;
};
/* bayes_sample_key - the store's key ("bayes:sample_key"), made the first
 * time.  0, or -1 (store failure, a value that is not a key: logged) */
int bayes_sample_key(struct store *st, struct bayes_sample_key *k);
/* bayes_sample_rank - a token's place in the order (lowest first) */
uint64_t bayes_sample_rank(const struct bayes_sample_key *k, uint64_t h);
/* bayes_tokens_cut - t down to its max tokens of the lowest rank, still
 * sorted by hash */
void bayes_tokens_cut(struct bayes_tokens *t, const struct bayes_sample_key *k, size_t max);
/* bayes_tokens_keep - the same with st's key, read only when t has more
 * than max tokens.  0, or -1 (the key could not be had: t as it was) */
int bayes_tokens_keep(struct store *st, struct bayes_tokens *t, size_t max);
/* bayes_tokens_copy - dst (empty) a copy of src */
void bayes_tokens_copy(struct bayes_tokens *dst, const struct bayes_tokens *src);

/* bayes_msg_key - "bayes:seen:<32 hex>", the key recording how a message
 * was learned: store_key_hash_bytes of "mid" and its Message-ID (one of
 * more than 4 bytes), else of "msg" and the whole message.  0, or -1 (out
 * too small, digest failure). */
int bayes_msg_key(struct mw_ctx *ctx, char *out, size_t outsz);
/* bayes_msg_key_legacy - "bayes:seen:<16 hex>", the same message's key
 * before (64-bit FNV-1a over "mid" and the Message-ID, or "msg" and the
 * message, no separator), which anyone could make collide with another
 * message's.  Only read, to move a mark left by an older version
 * (bayes_learn). */
void bayes_msg_key_legacy(struct mw_ctx *ctx, char *out, size_t outsz);

enum bayes_class { BAYES_SPAM, BAYES_HAM, BAYES_FORGET };

/* bayes_learn - learn the message of ctx as spam or ham, or forget it.
 * Relearning a message as the other class first forgets it.  Returns 1
 * learned/forgotten, 0 nothing to do (already learned so / not known),
 * -1 store failure, BAYES_LEARN_NOT (-2) this message not learned with
 * the store working (its mark holds no class, other learners changed it
 * at every look, no key could be made: logged), which a bulk learner
 * counts as one failure and goes on from.  A store that answers "the
 * mark changed" at every try while it stays as it was is failing: -1.   The message is remembered as learned for seen_ttl
 * seconds (bayes_seen_ttl; 0 = for ever), then counts as new.  example:
 * also keep its example for the character model (bayes_chars.h), as
 * learn and autolearn do with bayes_chars on, for example_ttl seconds
 * (0 = for ever; autolearn's bayes_autolearn_example_ttl, learn's
 * seen_ttl).  lists: a message of a mailing list learned for the first
 * time joins its list's window (bayes_list.h), for example_ttl too:
 * BAYES_LISTS_OFF (bayes_list_boilerplate = no) nothing of it written,
 * BAYES_LISTS_ON (learn) from the list's first message, BAYES_LISTS_STUB
 * (autolearn) from its second, the first leaving only its id. */
int bayes_learn(struct store *st, struct mw_ctx *ctx, enum bayes_class cls, unsigned seen_ttl, int example,
                unsigned example_ttl, int lists);
#define BAYES_LEARN_NOT (-2)
enum { BAYES_LISTS_OFF, BAYES_LISTS_ON, BAYES_LISTS_STUB };
/* bayes_learn_tokens - bayes_learn with the message's tokens already
 * made (pre: borrowed, bayes_tokenize of the same ctx), as learn does to
 * count them first; pre NULL: bayes_learn */
int bayes_learn_tokens(struct store *st, struct mw_ctx *ctx, const struct bayes_tokens *pre,
                       enum bayes_class cls, unsigned seen_ttl, int example, unsigned example_ttl,
                       int lists);

/* bayes_counts - learned spam and ham messages; 0 or -1 */
int bayes_counts(struct store *st, int64_t *nspam, int64_t *nham);

/* bayes_probability - spam probability of the tokens given what is
 * learned (Robinson's f(w) combined with Fisher's chi-square as
 * SpamAssassin does), or -1 when too little is learned or on a store
 * failure.  *used gets the count of tokens that counted.  listed (NULL:
 * none): a mailing list's boilerplate in the message (bayes_list.h),
 * tokens that count only where they lean to spam: a list's footer
 * learned from its ham says nothing of what a spam posted to it says,
 * while a list that relays spam only (a spam trap's) is evidence;
 * *left_out (may be NULL) gets how many did not count. */
double bayes_probability(struct store *st, const struct config *cfg,
                         const struct bayes_tokens *t, const struct bayes_tokens *listed,
                         size_t *used, size_t *left_out);

/* bayes_retrain_wanted - does the daemon train the character models
 * (bayes_chars, bayes_retrain_interval > 0, the bayes filter in
 * filters)?  1 or 0 */
int bayes_retrain_wanted(const struct config *cfg);
/* bayes_retrain - the daemon's periodic job, in a process of its own
 * (it lowers its priority and opens the store): train the character
 * models if their examples changed and no other process of the store is
 * at it (chars_retrain), with one line in the log.  0, or -1 when the
 * store failed (the stored models stay). */
int bayes_retrain(const struct config *cfg);

/* learn_command - "mailwarden learn --spam|--ham|--forget FILE|DIR..." */
int learn_command(struct config *cfg, int argc, char **argv);

#endif
