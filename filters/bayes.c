/* bayes.c - the built-in "bayes" filter: a statistical classifier
 * trained by the site ("mailwarden learn", optional autolearn), its token
 * counts kept in the store (store.h) so several machines can share them.
 *
 * Combination in the way of SpamAssassin and bogofilter (Gary Robinson's
 * method): each token's spam probability from the learned counts,
 * smoothed towards ROBINSON_X by ROBINSON_S (rare tokens say little); the
 * bayes_max_tokens most significant tokens (|f - 0.5| >= the minimum
 * strength) combined with Fisher's inverse chi-square, once for "the
 * clues are not spam" and once for "not ham"; the two log tails make one
 * probability (see bayes_probability for why not their difference).  That probability becomes one graded symbol, BAYES_00 (p <
 * 1%) ... BAYES_999 (p >= 99.9%), scored from bayes_scores.  Nothing is
 * said until bayes_min_spam spam and bayes_min_ham ham were learned.
 *
 * Autolearn (bayes_autolearn): a message whose score from the filters
 * before this one (Bayes itself excluded, as SpamAssassin does) reaches
 * bayes_autolearn_spam is learned as spam, one at or below
 * bayes_autolearn_ham as ham; with bayes_autolearn_examples its example
 * is kept for the character models as "mailwarden learn" keeps it.
 * Autolearn learns only messages the store has no mark for, at most
 * BAYES_AUTOLEARN_MAX_TOKENS of their tokens, and on Redis those expire
 * (bayes_autolearn_token_ttl): see autolearn().
 *
 * Training the character models (bayes_retrain): a child of the master,
 * every bayes_retrain_interval, trains them when their examples changed
 * (autolearn, "learn --no-train"), one process of all those sharing the
 * store at a time (chars_retrain).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "filters/bayes.h"
#include "filters/bayes_chars.h"
#include "filters/bayes_list.h"
#include "filters/builtin.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"

#define ROBINSON_S 0.30      /* strength of the prior (tuned on the training half) */
#define ROBINSON_X 0.538     /* the prior: SpamAssassin's value */
#define TOKEN_BATCH 4096

static const char *const band_names[] = {
	"BAYES_00", "BAYES_05", "BAYES_20", "BAYES_40", "BAYES_50",
	"BAYES_60", "BAYES_80", "BAYES_95", "BAYES_99", "BAYES_999"
};
/* upper bound (exclusive) of each band's probability */
static const double band_top[] = { 0.01, 0.05, 0.20, 0.40, 0.60, 0.80, 0.95, 0.99, 0.999, 2.0 };
static const double band_low[] = { 0.0, 0.01, 0.05, 0.20, 0.40, 0.60, 0.80, 0.95, 0.99, 0.999 };
#define NBANDS (sizeof(band_names) / sizeof(band_names[0]))

struct bayes {
	const struct config *cfg;
	struct store *store;
	struct chars_cache *chars;    /* NULL: bayes_chars = no */
	double score[NBANDS];
};

int bayes_counts(struct store *st, int64_t *nspam, int64_t *nham)
{
	char v[32];
	int r;

	*nspam = *nham = 0;
	if ((r = store_get(st, "bayes:nspam", v, sizeof(v))) < 0)
		return -1;
	if (r == 1)
		*nspam = strtoll(v, NULL, 10);
	if ((r = store_get(st, "bayes:nham", v, sizeof(v))) < 0)
		return -1;
	if (r == 1)
		*nham = strtoll(v, NULL, 10);
	return 0;
}

/* log_chi2q - ln P(chi-square with v degrees of freedom >= x2), v even:
 * ln(e^-m * sum over i < v/2 of m^i / i!), m = x2 / 2, summed in the log
 * domain so that it never underflows to 0 (a long message's clues give
 * tails of 1e-300 and less, and the difference between two such tails is
 * the verdict) */
static double log_chi2q(double x2, unsigned v)
{
	double m = x2 / 2, lm, term = 0, top = 0, sum = 0;
	unsigned i, k = v / 2;

	if (m <= 0 || k == 0)
		return 0;
	lm = log(m);
	/* the terms rise up to i = m then fall: the largest is at min(m, k-1) */
	for (i = 1; i < k; i++) {
		term += lm - log((double)i);
		if (term > top)
			top = term;
	}
	for (i = 0, term = 0; i < k; i++) {
		if (i > 0)
			term += lm - log((double)i);
		sum += exp(term - top);
	}
	term = -m + top + log(sum);
	return term < 0 ? term : 0;
}

struct clue {
	double f, strength;
};

static int by_strength(const void *a, const void *b)
{
	double x = ((const struct clue *)a)->strength, y = ((const struct clue *)b)->strength;

	return x < y ? 1 : x > y ? -1 : 0;
}

double bayes_probability(struct store *st, const struct config *cfg,
                         const struct bayes_tokens *t, const struct bayes_tokens *listed,
                         size_t *used, size_t *left_out)
{
	int64_t ns, nh;
	struct store_token *tk;
	struct clue *clues;
	size_t i, n = 0, off, nl = listed != NULL ? listed->n : 0, all = t->n + nl, out = 0;
	double sl = 0, hl = 0, p;

	*used = 0;
	if (left_out != NULL)
		*left_out = 0;
	if (bayes_counts(st, &ns, &nh) < 0)
		return -1;
	if (ns < (int64_t)cfg->bayes_min_spam || nh < (int64_t)cfg->bayes_min_ham || ns <= 0 || nh <= 0)
		return -1;
	tk = xcalloc(all ? all : 1, sizeof(*tk));
	clues = xcalloc(all ? all : 1, sizeof(*clues));
	for (i = 0; i < t->n; i++)
		tk[i].hash = t->h[i];
	for (i = 0; i < nl; i++)
		tk[t->n + i].hash = listed->h[i];
	for (off = 0; off < all; off += TOKEN_BATCH) {
		size_t m = all - off < TOKEN_BATCH ? all - off : TOKEN_BATCH;

		if (store_tokens_get(st, tk + off, m) < 0) {
			free(tk);
			free(clues);
			return -1;
		}
	}
	for (i = 0; i < all; i++) {
		double rs, rh, prob, f, cnt;

		if (tk[i].spam == 0 && tk[i].ham == 0)
			continue;
		rs = (double)tk[i].spam / (double)ns;
		rh = (double)tk[i].ham / (double)nh;
		if (rs > 1)
			rs = 1;
		if (rh > 1)
			rh = 1;
		prob = rs / (rs + rh);
		if (i >= t->n && prob <= 0.5) {
			out++;          /* the list's, leaning to ham: not this message's evidence */
			continue;
		}
		cnt = (double)tk[i].spam + (double)tk[i].ham;
		f = (ROBINSON_S * ROBINSON_X + cnt * prob) / (ROBINSON_S + cnt);
		if (fabs(f - 0.5) < cfg->bayes_min_prob_strength)
			continue;
		clues[n].f = f;
		clues[n].strength = fabs(f - 0.5);
		n++;
	}
	free(tk);
	if (left_out != NULL)
		*left_out = out;
	if (n == 0) {
		free(clues);
		return 0.5;
	}
	qsort(clues, n, sizeof(*clues), by_strength);
	if (n > cfg->bayes_max_tokens)
		n = cfg->bayes_max_tokens;
	for (i = 0; i < n; i++) {
		double f = clues[i].f;

		if (f < 1e-6) f = 1e-6;
		if (f > 1 - 1e-6) f = 1 - 1e-6;
		sl += log(1 - f);
		hl += log(f);
	}
	free(clues);
	/* Fisher's method on both hypotheses, as SpamAssassin and bogofilter:
	 * ham_tail = P(chi2 >= -2 sum ln f), small when the clues are hammy;
	 * spam_tail = P(chi2 >= -2 sum ln(1 - f)), small when they are spammy.
	 * Their indicator (1 + ham_tail - spam_tail) / 2 says 0.5 whenever
	 * both tails are tiny, which is what a long message with strong clues
	 * both ways gives (spam written as prose, a newsletter): it cannot
	 * tell 1e-40 from 1e-4.  We compare the strength of the two rejections
	 * instead: p = -ln(spam_tail) / (-ln(ham_tail) - ln(spam_tail)),
	 * which is near 1 or 0 when one side alone rejects (as the classic
	 * indicator) and graded by how much more strongly one side rejects
	 * when both do (spam recall 86.8% -> 91.9% on the training half at
	 * no ham above p 0.95; README "Accuracy"). */
	{
		double ham_ev = -log_chi2q(-2 * hl, 2 * (unsigned)n);
		double spam_ev = -log_chi2q(-2 * sl, 2 * (unsigned)n);

		p = ham_ev + spam_ev > 0 ? spam_ev / (ham_ev + spam_ev) : 0.5;
		if (!(p > 0))
			p = 0;          /* never -0 (a "p=-0.0000" in the description) */
		else if (p > 1)
			p = 1;
	}
	*used = n;
	return p;
}

/* legacy_seen - the message's mark under its key of before
 * (bayes_msg_key_legacy), moved to key with its example, each with what
 * is left of its lifetime, and the old key gone: a message an older
 * version learned stays learned so (and is taken off once, by --forget
 * or relearning), and the old key then speaks for no crafted message
 * colliding with it.  Until then such a message is taken for the one
 * learned, as before the upgrade, and only while old marks live (README
 * "Bayes").  1 with the mark in seen, 0 none, -1 store failure. */
static int legacy_seen(struct store *st, struct mw_ctx *ctx, const char *key, char *seen,
                       size_t seensz)
{
	char old[64];
	int r;

	bayes_msg_key_legacy(ctx, old, sizeof(old));
	if ((r = store_get(st, old, seen, seensz)) <= 0)
		return r;
	/* the example first: stopped between the two, the mark is still at
	 * its old key and both move next time */
	if (chars_move(st, old, key) < 0)
		return -1;
	return store_move(st, old, key);
}

/* autolearn_example_ttl - an autolearned example lives no longer than
 * its seen key (0 = for ever, on either side) */
static unsigned autolearn_example_ttl(const struct config *cfg)
{
	unsigned seen = cfg->bayes_seen_ttl, ex = cfg->bayes_autolearn_example_ttl;

	if (ex == 0)
		return seen;
	return seen != 0 && seen < ex ? seen : ex;
}

/* example_as - into l, the message's example for the character model as
 * class c ('s', 'h'; '\0' or !example: its removal), for store_learn to
 * write with the mark.  0, or -1. */
static int example_as(struct store_learning *l, struct chars_kept_example *ex, struct mw_ctx *ctx,
                      char c, int example, unsigned example_ttl)
{
	size_t len;
	const unsigned char *msg;

	if (c == '\0' || !example)
		return chars_learning(l, ex, NULL, 0, -1, 0);
	msg = mw_message(ctx, &len);
	return chars_learning(l, ex, msg, len, c == 's' || c == 'S', example_ttl);
}

/* Another learner that changes the mark between our look and our
 * write makes us look again; more than a few in a row is a store that
 * does not keep what it is told. */
#define LEARN_ATTEMPTS 4

/* learned_after_all - after a store_learn that failed: does the mark hold
 * the class asked now?  A Redis script given up on past store_timeout
 * runs on (its example with it: one step); a mark read at the class
 * asked counts as learned, as "learn" then says. */
static int learned_after_all(struct store *st, const char *key, char now)
{
	char seen[8];
	int r = store_get(st, key, seen, sizeof(seen));

	return r >= 0 && (r == 0 ? '\0' : seen[0]) == now && (r == 0 || seen[1] == '\0');
}

/* The example for the character model (bayes:ex:<id>) is written by the
 * store_learn that sets the mark (bayes:seen:<id>), in its one step
 * (store.h), never on its own: until session 19 it was written just
 * before, and one learner's example could land after another's learn
 * (three learners of one message at once on one Redis, 5 rounds in 100:
 * the mark gone and a ham example left, or the reverse), or be rewritten
 * after a forget on a message learned before examples were kept. */
/* How one learning goes: as "mailwarden learn" asks (every token, the
 * mark read and moved whatever it holds) or as autolearn does (below). */
struct learn_how {
	unsigned seen_ttl;          /* the mark's lifetime (bayes_seen_ttl) */
	int      example;           /* keep the example (bayes_chars.h) */
	unsigned example_ttl;
	int      lists;             /* BAYES_LISTS_* */
	int      new_only;          /* a message with a mark (either class) left alone */
	int      sample;            /* count BAYES_AUTOLEARN_MAX_TOKENS, marked 'S'/'H' */
	unsigned volatile_ttl;      /* store_learning's volatile_ttl_s */
};

/* learn_message's answer to a new_only learn whose message has a mark */
#define LEARNED_BEFORE (-3)

static int learn_message(struct store *st, struct mw_ctx *ctx, const struct bayes_tokens *pre,
                         enum bayes_class cls, const struct learn_how *how);

int bayes_learn(struct store *st, struct mw_ctx *ctx, enum bayes_class cls, unsigned seen_ttl, int example,
                unsigned example_ttl, int lists)
{
	return bayes_learn_tokens(st, ctx, NULL, cls, seen_ttl, example, example_ttl, lists);
}

int bayes_learn_tokens(struct store *st, struct mw_ctx *ctx, const struct bayes_tokens *pre,
                       enum bayes_class cls, unsigned seen_ttl, int example, unsigned example_ttl,
                       int lists)
{
	const struct learn_how how = {
		.seen_ttl = seen_ttl, .example = example, .example_ttl = example_ttl, .lists = lists,
	};

	return learn_message(st, ctx, pre, cls, &how);
}

/* note_list - a message learned for the first time, from a mailing list:
 * its tokens join the list's window (bayes_list.c), with
 * bayes_list_boilerplate on (lists: BAYES_LISTS_ON, or _STUB for
 * autolearn, bayes.h); off, nothing is written (until
 * session 20's review the windows were kept whatever the setting, so that
 * turning it on found the lists learned: a store filled for a feature
 * turned off).  mark: the message's "bayes:seen:<32 hex>", whose first 16
 * digits are its id in the window.  The window is a sample: a failure is
 * logged, the learn stands.  It lives as long as the message's example
 * (learn: bayes_seen_ttl; autolearn: bayes_autolearn_example_ttl, 7
 * days), renewed by each note. */
static void note_list(struct store *st, struct mw_ctx *ctx, const char *mark, const struct bayes_tokens *t,
                      unsigned ttl, int lists)
{
	char key[64], hex[17];
	const char *digits = mark + strlen("bayes:seen:");
	uint64_t id;

	if (lists == BAYES_LISTS_OFF || strlen(digits) < 16)
		return;
	memcpy(hex, digits, 16);
	hex[16] = '\0';
	id = strtoull(hex, NULL, 16);
	if (id == 0)
		id = 1;                 /* 0 is a window's "not known" */
	if (bayes_list_key(ctx->ms, key, sizeof(key)) == 1
	    && bayes_list_note(st, key, id, t, ttl, lists == BAYES_LISTS_STUB) < 0)
		slog(NULL, LOG_WARNING, "bayes: %s: the list's window not updated: store %s unavailable",
		     key, store_backend(st));
}

/* tokens_and_sample - the message's tokens into all (pre's, or made),
 * BAYES_MAX_TOKENS at most, and the BAYES_AUTOLEARN_MAX_TOKENS of them
 * autolearn counts into sample: both chosen by the store's key
 * (bayes_sample.c), so that a forget or a relearn finds the sample
 * autolearn counted.  0, or -1 (the key could not be had) */
static int tokens_and_sample(struct store *st, struct mw_ctx *ctx, const struct bayes_tokens *pre,
                             struct bayes_tokens *all, struct bayes_tokens *sample)
{
	struct bayes_sample_key k;

	if (pre != NULL)
		bayes_tokens_copy(all, pre);
	else
		bayes_tokenize(ctx, all);
	if (all->n > BAYES_AUTOLEARN_MAX_TOKENS) {
		if (bayes_sample_key(st, &k) < 0)
			return -1;
		bayes_tokens_cut(all, &k, BAYES_MAX_TOKENS);
		bayes_tokens_copy(sample, all);
		bayes_tokens_cut(sample, &k, BAYES_AUTOLEARN_MAX_TOKENS);
	} else
		bayes_tokens_copy(sample, all);
	return 0;
}

/* learn_sides - which tokens l moves: its new class counted on all of
 * them ('s', 'h': taught) or on the sample ('S', 'H': autolearned), its
 * old class taken off what the old mark says was counted.  Until session
 * 21 the mark said 's' or 'h' after autolearn too, and a forget or a
 * relearn took off every token, those autolearn had not counted included
 * (other messages' counts), while a teach found it "learned already"
 * (review rv-today3). */
static void learn_sides(struct store_learning *l, const struct bayes_tokens *all,
                        const struct bayes_tokens *sample)
{
	const struct bayes_tokens *on = l->now == '\0' ? NULL : islower((unsigned char)l->now) ? all : sample;
	const struct bayes_tokens *off = l->was == '\0' ? NULL : islower((unsigned char)l->was) ? all : sample;

	l->off = NULL;
	l->off_n = 0;
	if (on == NULL && off == NULL) {
		l->hashes = NULL;
		l->n = 0;
	} else if (on == NULL || off == NULL || on == off) {
		/* one list: +1 for the new class, -1 for the old (store.h) */
		l->hashes = (on ? on : off)->h;
		l->n = (on ? on : off)->n;
	} else {
		l->hashes = on->h;
		l->n = on->n;
		l->off = off->h;
		l->off_n = off->n;
	}
}

static int learn_message(struct store *st, struct mw_ctx *ctx, const struct bayes_tokens *pre,
                         enum bayes_class cls, const struct learn_how *how)
{
	struct bayes_tokens t = { 0 }, sample = { 0 };
	struct store_learning l = { .count = { "bayes:nspam", "bayes:nham" }, .mark_ttl_s = how->seen_ttl,
	                            .volatile_ttl_s = how->volatile_ttl };
	const int example = how->example;
	const unsigned example_ttl = how->example_ttl;
	struct chars_kept_example *ex = xmalloc(sizeof(*ex));   /* 3 KB: not on a scanner's stack */
	char key[64], seen[8], first_was = '\0';
	int r, rc = -1, tokenized = 0, attempt, moved = 0;

	if (bayes_msg_key(ctx, key, sizeof(key)) < 0) {
		free(ex);
		return BAYES_LEARN_NOT;       /* this message's: the store is fine */
	}
	l.mark = key;
	l.now = cls == BAYES_SPAM ? 's' : cls == BAYES_HAM ? 'h' : '\0';
	if (how->sample && l.now != '\0')
		l.now = l.now == 's' ? 'S' : 'H';
	for (attempt = 0; attempt < LEARN_ATTEMPTS; attempt++) {
		l.kept = NULL;
		if ((r = store_get(st, key, seen, sizeof(seen))) < 0)
			break;
		if (r == 0 && (r = legacy_seen(st, ctx, key, seen, sizeof(seen))) < 0)
			break;
		l.was = r == 0 ? '\0' : seen[0] != '\0' && strchr("shSH", seen[0]) != NULL ? seen[0] : '?';
		if (attempt == 0)
			first_was = l.was;
		else if (l.was != first_was)
			moved = 1;      /* another learner's change, seen */
		if (how->new_only && l.was != '\0') {
			rc = LEARNED_BEFORE;
			break;
		}
		if (l.was == '?') {
			/* the store is no trusted source for the log: a Redis
			 * server shared by several machines, or a damaged file,
			 * may hold a newline or a terminal's escape there */
			char esc[4 * sizeof(seen)];

			slog(NULL, LOG_ERR, "bayes: %s holds \"%s\", not a class: left alone", key,
			     log_esc_quoted(esc, sizeof(esc), seen, strlen(seen)));
			rc = BAYES_LEARN_NOT;
			break;
		}
		if (l.was == l.now) {
			rc = 0;
			/* learned before examples were kept (a store from
			 * before the character model): teaching it again gives
			 * it its example, written only while the mark still
			 * holds the class (a forget meanwhile took the example
			 * away, and must not find it back); forgetting what is
			 * not known, nothing */
			if (l.now == '\0' || !example || (r = chars_kept(st, key)) == 1)
				break;
			if (r < 0 || example_as(&l, ex, ctx, l.now, example, example_ttl) < 0) {
				rc = -1;
				break;
			}
			l.hashes = NULL;
			l.n = 0;
			l.off = NULL;      /* an earlier attempt's, from a mark since moved */
			l.off_n = 0;
			if ((r = store_learn(st, &l)) != 0) {
				rc = r < 0 ? -1 : 0;
				break;
			}
			rc = -1;
			continue;       /* the mark changed: look again */
		}
		if (!tokenized && tokens_and_sample(st, ctx, pre, &t, &sample) < 0)
			break;
		tokenized = 1;
		learn_sides(&l, &t, &sample);
		/* a message taught and counted in the tokens always has its
		 * example for the character model; one forgotten or relearned
		 * without one loses the old one */
		if (((l.now != '\0' && example) || l.was != '\0')
		    && example_as(&l, ex, ctx, l.now, example, example_ttl) < 0)
			break;
		if ((r = store_learn(st, &l)) == 1) {
			rc = 1;
			if (l.was == '\0' && l.now != '\0')
				note_list(st, ctx, key, &t, example_ttl, how->lists);
			break;
		}
		if (r < 0) {
			if (learned_after_all(st, key, l.now))
				rc = 1;
			break;
		}
	}
	/* the store said "the mark changed" at every try: if it was seen
	 * changing, other learners are at this message (it alone fails); if
	 * it never moved, the store is not keeping what it is told, which is
	 * the store's failure (store_lmdb.c answered a failed write so while
	 * its TXN_NOTHING and its error were both -1: a full disk) */
	if (attempt == LEARN_ATTEMPTS && moved) {
		slog(NULL, LOG_ERR, "bayes: %s changed by other learners %d times in a row: not learned",
		     key, LEARN_ATTEMPTS);
		rc = BAYES_LEARN_NOT;
	} else if (attempt == LEARN_ATTEMPTS)
		slog(NULL, LOG_ERR, "bayes: %s: the store kept none of %d writes, its mark unchanged: "
		     "not learned", key, LEARN_ATTEMPTS);
	bayes_tokens_free(&t);
	bayes_tokens_free(&sample);
	free(ex);
	return rc;
}

/* parse_scores - "BAYES_00=-1.9 ..." into b->score; -1 with err */
static int parse_scores(struct bayes *b, const char *v, char *err, size_t errlen)
{
	char buf[sizeof(b->cfg->bayes_scores)], *save = NULL, *w;

	snprintf(buf, sizeof(buf), "%s", v);
	for (w = strtok_r(buf, " \t,", &save); w != NULL; w = strtok_r(NULL, " \t,", &save)) {
		char *eq = strchr(w, '='), *end;
		size_t i;
		double s;

		if (eq == NULL) {
			snprintf(err, errlen, "bayes_scores: \"%s\" is not NAME=SCORE", w);
			return -1;
		}
		*eq = '\0';
		s = strtod(eq + 1, &end);
		if (*end != '\0' || eq[1] == '\0' || !isfinite(s)) {
			snprintf(err, errlen, "bayes_scores: \"%s\" is not a number", eq + 1);
			return -1;
		}
		for (i = 0; i < NBANDS; i++)
			if (strcmp(w, band_names[i]) == 0)
				break;
		if (i == NBANDS) {
			snprintf(err, errlen, "bayes_scores: no symbol %s (BAYES_00 .. BAYES_999)", w);
			return -1;
		}
		b->score[i] = s;
	}
	return 0;
}

static int bayes_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	struct bayes *b = xcalloc(1, sizeof(*b));

	b->cfg = env->cfg;
	if (parse_scores(b, env->cfg->bayes_scores, err, errlen) < 0) {
		free(b);
		return -1;
	}
	if ((b->store = store_open(env->cfg, err, errlen)) == NULL) {
		free(b);
		return -1;
	}
	/* said at every start and reload: a store whose Bayes tokens
	 * nothing bounds fills (LMDB: its map, which greylisting and rate
	 * limits write to as well; Redis: maxmemory, README "The store") at
	 * the rate mail is autolearned */
	if (env->cfg->bayes_autolearn && env->cfg->store_backend == 1 && env->cfg->bayes_token_ttl == 0
	    && env->cfg->bayes_autolearn_token_ttl == 0)
		slog(NULL, LOG_WARNING, "bayes: store = redis, bayes_autolearn = yes and both "
		     "bayes_token_ttl and bayes_autolearn_token_ttl 0: the tokens autolearn adds never "
		     "expire, and the Redis server's memory fills with them");
	else if (env->cfg->bayes_autolearn && env->cfg->store_backend == 0 && env->cfg->bayes_token_max == 0)
		slog(NULL, LOG_WARNING, "bayes: store = lmdb, bayes_autolearn = yes and bayes_token_max = 0: "
		     "the tokens autolearn adds are never removed, and the store's map fills with them");
	if (env->cfg->bayes_chars) {
		unsigned every = env->cfg->bayes_retrain_interval;

		/* a daemon that trains every few seconds (a test, a site that
		 * wants it) should see the new models about as soon */
		b->chars = chars_cache_new(every > 0 && every < CHARS_CHECK_S ? every : CHARS_CHECK_S);
	}
	*instance = b;
	return 0;
}

static void bayes_fini(void *instance)
{
	struct bayes *b = instance;

	if (b == NULL)
		return;
	chars_cache_free(b->chars);
	store_close(b->store);
	free(b);
}

/* others_score - the score of what the filters before us said */
static double others_score(const struct mw_ctx *ctx)
{
	double s = 0;

	for (size_t i = 0; i < ctx->ms->nsymbols; i++)
		s += ctx->ms->symbols[i].score;
	return s;
}

/* autolearn - learn the message of ctx as cls, as autolearn does:
 *  - a message the store has a mark for, of either class, is left alone
 *    (LEARNED_BEFORE): the mark is found by the Message-ID, which the
 *    sender writes, and until session 21 autolearn relearned such a
 *    message the other way, so one plain message under the Message-ID of
 *    a spam the site had taught took that spam's counts off every token
 *    it carried and counted them as ham (review rv-redis);
 *    SpamAssassin's autolearn does not relearn either (its no_relearn,
 *    bug 3704);
 *  - at most BAYES_AUTOLEARN_MAX_TOKENS of its tokens (bayes.h);
 *  - on Redis with bayes_token_ttl = 0 the tokens it makes expire after
 *    bayes_autolearn_token_ttl unless learned again (store.h
 *    volatile_ttl_s);
 *  - with its example when the site asked for it: the daemon's training
 *    (bayes_retrain_interval) learns from it too, but each costs 3 KB of
 *    store, so many a day (or a sender who sends many that score
 *    clearly) would fill an LMDB map sized for tokens and greylisting:
 *    they live bayes_autolearn_example_ttl, not bayes_seen_ttl, which
 *    bounds them at the autolearn rate times that.
 * As bayes_learn answers, or LEARNED_BEFORE. */
static int autolearn(struct bayes *b, struct mw_ctx *ctx, enum bayes_class cls)
{
	const struct config *cfg = b->cfg;
	const struct learn_how how = {
		.seen_ttl = cfg->bayes_seen_ttl,
		.example = cfg->bayes_chars && cfg->bayes_autolearn_examples,
		.example_ttl = autolearn_example_ttl(cfg),
		.lists = cfg->bayes_list_boilerplate ? BAYES_LISTS_STUB : BAYES_LISTS_OFF,
		.new_only = 1,
		.sample = 1,
		.volatile_ttl = cfg->bayes_autolearn_token_ttl,
	};

	return learn_message(b->store, ctx, NULL, cls, &how);
}

static void bayes_eom(struct mw_ctx *ctx)
{
	struct bayes *b = mw_instance(ctx);
	struct bayes_tokens t = { 0 }, boiler = { 0 };
	double p, before = others_score(ctx);
	size_t used, i, listed = 0;
	char list[64], parts[64] = "";

	bayes_tokenize(ctx, &t);
	/* a long message's tokens: those the store's key chooses, not the
	 * sender (bayes_sample.c) */
	if (bayes_tokens_keep(b->store, &t, BAYES_MAX_TOKENS) < 0)
		p = -1;                 /* as a failed probability: no verdict */
	else if (b->cfg->bayes_list_boilerplate && bayes_list_key(ctx->ms, list, sizeof(list)) == 1
	    && bayes_list_strip(b->store, list, &t, &boiler) < 0)
		p = -1;                 /* as a failed probability: no verdict */
	else
		p = bayes_probability(b->store, b->cfg, &t, &boiler, &used, &listed);
	bayes_tokens_free(&t);
	bayes_tokens_free(&boiler);
	if (p >= 0) {
		double words = p, margin[2] = { 0, 0 };
		size_t len;
		const unsigned char *msg = mw_message(ctx, &len);
		int chars = b->chars != NULL
		    && chars_cache_margin(b->chars, b->store, b->cfg->bayes_min_spam, b->cfg->bayes_min_ham,
		                          msg, len, margin);

		if (chars)
			p = chars_mix(words, margin);
		for (i = 0; i < NBANDS - 1 && p >= band_top[i]; i++)
			;
		if (listed > 0)
			snprintf(parts, sizeof(parts), ", %zu of the list's left out", listed);
		if (chars)
			mw_symbol(ctx, band_names[i], b->score[i],
			    "Bayes spam probability is %g to %g%% (p=%.4f, words %.4f of %zu tokens, characters %+.2f, header %+.2f%s)",
			    band_low[i] * 100, i == NBANDS - 1 ? 100.0 : band_top[i] * 100, p, words, used,
			    margin[0], margin[1], parts);
		else
			mw_symbol(ctx, band_names[i], b->score[i],
			    "Bayes spam probability is %g to %g%% (p=%.4f, %zu tokens%s)",
			    band_low[i] * 100, i == NBANDS - 1 ? 100.0 : band_top[i] * 100, p, used, parts);
	}
	if (b->cfg->bayes_autolearn) {
		enum bayes_class cls;
		int r;

		if (before >= b->cfg->bayes_autolearn_spam)
			cls = BAYES_SPAM;
		else if (before <= b->cfg->bayes_autolearn_ham)
			cls = BAYES_HAM;
		else
			return;
		r = autolearn(b, ctx, cls);
		if (r == LEARNED_BEFORE)
			mw_log(ctx, LOG_INFO, "not autolearned as %s (score %.2f): learned before, "
			    "autolearn learns new messages only", cls == BAYES_SPAM ? "spam" : "ham", before);
		else if (r == BAYES_LEARN_NOT)
			mw_log(ctx, LOG_WARNING, "autolearn failed: not learned (logged above)");
		else if (r < 0)
			mw_log(ctx, LOG_WARNING, "autolearn failed: store unavailable");
		else if (r > 0)
			mw_log(ctx, LOG_INFO, "autolearned as %s (score %.2f)",
			    cls == BAYES_SPAM ? "spam" : "ham", before);
	}
}

int bayes_retrain_wanted(const struct config *cfg)
{
	/* nobody but the bayes filter reads the models */
	return cfg->bayes_chars && cfg->bayes_retrain_interval != 0 && config_runs_filter(cfg, "bayes");
}

int bayes_retrain(const struct config *cfg)
{
	char err[512];
	struct chars_trained t;
	struct store *st;
	enum chars_retrain r;

	/* the mail comes first: the scanner's threads and the front ends
	 * get the CPU this leaves (the training threads inherit it) */
	errno = 0;
	if (nice(10) == -1 && errno != 0)
		slog_errno(NULL, LOG_WARNING, "bayes: retrain: nice");
	if ((st = store_open(cfg, err, sizeof(err))) == NULL) {
		slog(NULL, LOG_WARNING, "bayes: character models not trained: %s", err);
		return -1;
	}
	r = chars_retrain(st, &t);
	switch (r) {
	case CHARS_RETRAIN_TRAINED:
		slog(NULL, LOG_NOTICE, "bayes: character models trained on %u spam, %u ham examples in %.1f s",
		     t.nspam, t.nham, t.seconds);
		break;
	case CHARS_RETRAIN_NOT_DUE:
		slog(NULL, LOG_DEBUG, "bayes: character models up to date with their examples");
		break;
	case CHARS_RETRAIN_LOCKED:
		slog(NULL, LOG_INFO, "bayes: character models not trained here: another process holds "
		     "the training lock in the store");
		break;
	case CHARS_RETRAIN_FAILED:
		slog(NULL, LOG_WARNING, "bayes: training the character models failed: store %s unavailable; "
		     "the stored models stay", store_backend(st));
		break;
	}
	store_close(st);
	return r == CHARS_RETRAIN_FAILED ? -1 : 0;
}

static const struct mw_filter_ops bayes_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "bayes",
	.fini = bayes_fini,
	.on_eom = bayes_eom,
};

const struct builtin_filter builtin_bayes = {
	.name = "bayes",
	.ops = &bayes_ops,
	.setup = bayes_setup,
};
