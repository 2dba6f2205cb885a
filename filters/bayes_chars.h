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
 * ("bayes:ex:<id>", living as long as its "seen" key), autolearned
 * ones too, and "mailwarden learn" trains the model again from all of
 * them at its end and stores it ("bayes:chars:model", its version in
 * "bayes:chars:version"); so does the daemon, every
 * bayes_retrain_interval, when the examples changed since (chars_retrain:
 * autolearn and "learn --no-train" add examples nobody trains on).  The
 * scanner loads the model when its version changes.
 *
 * Two models are trained on the same examples: one over the whole
 * example, and one over its header alone (up to the first empty line).
 * The second reads the header's form without the first lines of the body
 * that short headers leave in the example; the two disagree enough that
 * their sum ranks better than either, or than one model over both sets of
 * 4-grams (README "Bayes", session 12).
 *
 * Their margins shift the word model's log-odds: p' = sigmoid(logit(p) +
 * margin / CHARS_MIX + header margin / CHARS_HDR_MIX), so that BAYES_00 ..
 * BAYES_999 grade all three. */
#ifndef MW_BAYES_CHARS_H
#define MW_BAYES_CHARS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "filters/store.h"

#define CHARS_BITS   18
#define CHARS_DIM    (1u << CHARS_BITS)
#define CHARS_PREFIX 3000        /* bytes of a message, CRs dropped */
/* the weights of both models, the whole example's first */
#define CHARS_WEIGHTS (2 * (size_t)CHARS_DIM)

/* chars_example - the bytes the model sees of msg: its first CHARS_PREFIX
 * bytes once every CR is dropped, into out (CHARS_PREFIX bytes); the
 * length */
size_t chars_example(const unsigned char *msg, size_t len, unsigned char *out);

/* chars_header_len - how much of an example is its header: the bytes
 * before the first empty line (all of them when none is seen) */
size_t chars_header_len(const unsigned char *ex, size_t len);

/* chars_features - the distinct hashed 4-grams of ex (at most len - 3 of
 * them) into idx (CHARS_PREFIX entries), in order of first occurrence;
 * their count */
size_t chars_features(const unsigned char *ex, size_t len, uint32_t *idx);

/* chars_margin - one model's log-odds for these features (0 for none) */
double chars_margin(const float *w, const uint32_t *idx, size_t n);

/* chars_margins - both models' log-odds for an example (chars_example's
 * form) under w (CHARS_WEIGHTS): m[0] the whole example's, m[1] its
 * header's */
void chars_margins(const float *w, const unsigned char *ex, size_t len, double m[2]);

/* chars_mix - the word model's p shifted by both margins */
double chars_mix(double p, const double m[2]);

struct chars_example {
	const unsigned char *bytes;  /* chars_example()'s form */
	size_t len;
	int    spam;
};

/* chars_train - w (CHARS_WEIGHTS, zeroed here) trained on the n
 * examples: each model the mean of several trainings by a fixed number of
 * passes of stochastic gradient descent on the logistic loss, each in an
 * order shuffled by a fixed seed of its own (ex is left as it is), so the
 * same examples in the same order give the same models */
void chars_train(float *w, const struct chars_example *ex, size_t n);

/* the stored models: "MWC2", bits, learned spam, learned ham (uint32 LE
 * each), then CHARS_WEIGHTS float32 LE.  Session 11's "MWC1" held the
 * whole example's model alone (CHARS_MODEL1_SIZE) */
#define CHARS_MODEL_SIZE (16 + CHARS_WEIGHTS * 4)
#define CHARS_MODEL1_SIZE (16 + (size_t)CHARS_DIM * 4)
void chars_model_encode(const float *w, uint32_t nspam, uint32_t nham, unsigned char *out);
/* w (CHARS_WEIGHTS) from a stored form: 0, 1 for an "MWC1" (a header
 * model of zeros, which shifts nothing, until the next training), or -1
 * for a blob that is not a model of this build's form */
int chars_model_decode(const unsigned char *blob, size_t len, float *w, uint32_t *nspam, uint32_t *nham);

/* --- the store's side ---------------------------------------------- */

/* chars_keep - remember msg's example under the message's id (the hex
 * of its "bayes:seen:" key) as spam or ham for ttl_s seconds (0 = ever),
 * or forget it (cls < 0), on its own, whatever the mark says (for tests
 * and tools that set up examples; bayes_learn writes them with the mark,
 * chars_learning).  0, or -1 on a store failure. */
int chars_keep(struct store *st, const char *seen_key, const unsigned char *msg, size_t len,
               int cls, unsigned ttl_s);

/* One example as store_learn keeps it beside the message's mark */
struct chars_kept_example {
	char          key[STORE_KEY_MAX + 1];   /* "bayes:ex:<id>" */
	unsigned char val[1 + CHARS_PREFIX];    /* 's' or 'h', then the example */
};
/* chars_learning - l->kept (and the fields after it) set to msg's example
 * as spam (cls 1) or ham (0) for ttl_s seconds (0 = ever), or to its
 * removal (cls < 0), under the id of l->mark (a "bayes:seen:" key), with
 * the count of example changes to bump: store_learn writes it in the step
 * that sets the mark (bayes_learn), so that the example is always the
 * mark's class, whatever other learners of the message do meanwhile
 * (chars_keep's own write could land after another learner's learn).  l
 * then points into ex.  0, or -1 if l->mark is not a seen key. */
int chars_learning(struct store_learning *l, struct chars_kept_example *ex,
                   const unsigned char *msg, size_t len, int cls, unsigned ttl_s);

/* chars_move - the example of one seen key, if any, to another's, with
 * what is left of its lifetime (a message's id changing form: bayes.c).
 * 0, or -1 on a store failure. */
int chars_move(struct store *st, const char *from_seen, const char *to_seen);

/* chars_kept - is an example kept for the message of this seen key?
 * 1, 0, or -1 on a store failure */
int chars_kept(struct store *st, const char *seen_key);

/* chars_rebuild - train the model from every example the store keeps and
 * store it, with the count of example changes it saw (chars_keep bumps
 * one); a line on report (may be NULL).  Under the training lock of
 * chars_retrain: while another process holds it, waits (a line on report
 * every 30 s).  0, or -1 on a store failure (the stored model is left as
 * it was). */
int chars_rebuild(struct store *st, FILE *report);

/* chars_retrain_due - were examples kept or forgotten since the stored
 * model was trained?  Examples that expired (bayes_seen_ttl) change
 * nothing here: the next change trains without them.  1, 0, or -1 on a
 * store failure */
int chars_retrain_due(struct store *st);

/* seconds the training lock lives unless renewed (every third of it) */
#define CHARS_LOCK_TTL 60

struct chars_trained {
	uint32_t nspam, nham;   /* examples trained on */
	double   seconds;       /* reading them, training, storing */
};
enum chars_retrain {
	CHARS_RETRAIN_TRAINED,  /* *out says on what and how long */
	CHARS_RETRAIN_NOT_DUE,  /* the model is the examples' */
	CHARS_RETRAIN_LOCKED,   /* another process or machine trains */
	CHARS_RETRAIN_FAILED    /* the store failed: the stored model stays */
};
/* chars_retrain - the daemon's training: chars_rebuild when due, under a
 * lock in the store ("bayes:chars:lock", CHARS_LOCK_TTL, renewed by a
 * thread while it trains), so that of several processes or machines
 * sharing the store one trains and the others find it done */
enum chars_retrain chars_retrain(struct store *st, struct chars_trained *out);

/* A process's copy of the stored model, shared by the scanner's threads
 * and loaded again when its version in the store changes (looked at
 * most every check_s seconds: CHARS_CHECK_S, or bayes_retrain_interval
 * when that is shorter). */
#define CHARS_CHECK_S 10
struct chars_cache;
struct chars_cache *chars_cache_new(unsigned check_s);
void chars_cache_free(struct chars_cache *c);
/* chars_cache_margin - the margins of msg under the current models (as
 * chars_margins): 1 and m, or 0 when there is no model (none stored, fewer than min_spam
 * spam or min_ham ham learned, the store unavailable) */
int chars_cache_margin(struct chars_cache *c, struct store *st, unsigned min_spam, unsigned min_ham,
                       const unsigned char *msg, size_t len, double m[2]);

#endif
