/* bayes_chars.h - the Bayes filter's second model: a logistic regression
 * over the character 4-grams of the start of each message.
 *
 * The word model (bayes.c) counts tokens and combines them as if each
 * were independent evidence; what it misses is how a message is written:
 * the order and spelling of its header fields, the shape of its Received
 * lines and MIME boundaries, which spamware gets wrong in small ways.
 * Hashed binary 4-grams of the first CHARS_PREFIX bytes (carriage returns
 * dropped: learn reads files with LF ends, the daemon sees CRLF) with a
 * discriminatively trained weight each catch that (the method of
 * Sculley and Wachman's relaxed online SVMs and logistic regression at
 * the TREC spam tracks); overlapping 4-grams are strongly correlated,
 * which is why counting them as a naive Bayes does not work (README
 * "Bayes": tried).
 *
 * The model is trained in batch, so that it depends neither on the order
 * in which messages were learned (one online pass over a spam folder and
 * then a ham folder ends leaning to ham) nor on what was forgotten: every
 * learned message keeps its first CHARS_PREFIX bytes in the store
 * ("bayes:ex:<id>", living as long as its "seen" key), and "mailwarden
 * learn" trains the model again from all of them at its end and stores
 * it ("bayes:chars:model", its version in "bayes:chars:version").  The
 * scanner loads the model when its version changes.  Only what a person
 * taught keeps an example: autolearned messages (bayes_autolearn) count in
 * the word model only, since they would cost CHARS_PREFIX bytes each in
 * the store and teach the model what the filters already said.
 *
 * Its margin shifts the word model's log-odds: p' = sigmoid(logit(p) +
 * margin / CHARS_MIX), so that BAYES_00 .. BAYES_999 grade both. */
#ifndef MW_BAYES_CHARS_H
#define MW_BAYES_CHARS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "filters/store.h"

#define CHARS_BITS   18
#define CHARS_DIM    (1u << CHARS_BITS)
#define CHARS_PREFIX 3000        /* bytes of a message, CRs dropped */

/* chars_example - the bytes the model sees of msg: its first CHARS_PREFIX
 * bytes once every CR is dropped, into out (CHARS_PREFIX bytes); the
 * length */
size_t chars_example(const unsigned char *msg, size_t len, unsigned char *out);

/* chars_features - the distinct hashed 4-grams of ex (at most len - 3 of
 * them) into idx (CHARS_PREFIX entries), in order of first occurrence;
 * their count */
size_t chars_features(const unsigned char *ex, size_t len, uint32_t *idx);

/* chars_margin - the model's log-odds for these features (0 for none) */
double chars_margin(const float *w, const uint32_t *idx, size_t n);

/* chars_mix - the word model's p shifted by the margin */
double chars_mix(double p, double margin);

struct chars_example {
	const unsigned char *bytes;  /* chars_example()'s form */
	size_t len;
	int    spam;
};

/* chars_train - w (CHARS_DIM, zeroed here) trained on the n examples: a
 * fixed number of passes of stochastic gradient descent on the logistic
 * loss, in an order shuffled by a fixed seed (ex is reordered), so the
 * same examples in the same order give the same model */
void chars_train(float *w, struct chars_example *ex, size_t n);

/* the stored model: "MWC1", bits, learned spam, learned ham (uint32 LE
 * each), then CHARS_DIM float32 LE */
#define CHARS_MODEL_SIZE (16 + (size_t)CHARS_DIM * 4)
void chars_model_encode(const float *w, uint32_t nspam, uint32_t nham, unsigned char *out);
/* 0, or -1 for a blob that is not a model of this build's form */
int chars_model_decode(const unsigned char *blob, size_t len, float *w, uint32_t *nspam, uint32_t *nham);

/* --- the store's side ---------------------------------------------- */

/* chars_keep - remember msg's example under the message's id (the hex
 * of its "bayes:seen:" key) as spam or ham for ttl_s seconds (0 = ever),
 * or forget it (cls < 0).  0, or -1 on a store failure. */
int chars_keep(struct store *st, const char *seen_key, const unsigned char *msg, size_t len,
               int cls, unsigned ttl_s);

/* chars_kept - is an example kept for the message of this seen key?
 * 1, 0, or -1 on a store failure */
int chars_kept(struct store *st, const char *seen_key);

/* chars_rebuild - train the model from every example the store keeps and
 * store it; a line on report (may be NULL).  0, or -1 on a store failure
 * (the stored model is left as it was). */
int chars_rebuild(struct store *st, FILE *report);

/* A process's copy of the stored model, shared by the scanner's threads
 * and loaded again when its version in the store changes (looked at
 * most every CHARS_CHECK_S seconds). */
#define CHARS_CHECK_S 10
struct chars_cache;
struct chars_cache *chars_cache_new(void);
void chars_cache_free(struct chars_cache *c);
/* chars_cache_margin - the margin of msg under the current model: 1 and
 * *margin, or 0 when there is no model (none stored, fewer than min_spam
 * spam or min_ham ham learned, the store unavailable) */
int chars_cache_margin(struct chars_cache *c, struct store *st, unsigned min_spam, unsigned min_ham,
                       const unsigned char *msg, size_t len, double *margin);

#endif
