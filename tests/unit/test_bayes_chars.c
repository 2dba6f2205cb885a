/* test_bayes_chars.c - the character 4-gram model of the Bayes filter
 * (filters/bayes_chars.c): what it sees of a message, its training, the
 * stored form, and the store's round trip from learned examples to a
 * margin in the scanner. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/bayes_chars.h"
#include "proxy/config.h"
#include "tests/unit/unit_tmpdir.h"

/* the running test's scratch directory (unit_tmpdir_setup) */
static const char *const dir = unit_dir;

static size_t feats(const char *s, uint32_t *idx)
{
	unsigned char ex[CHARS_PREFIX];

	return chars_features(ex, chars_example((const unsigned char *)s, strlen(s), ex), idx);
}

static void test_example_and_features(void **state)
{
	static unsigned char big[3 * CHARS_PREFIX], ex[CHARS_PREFIX];
	static uint32_t a[CHARS_PREFIX], b[CHARS_PREFIX];
	size_t na, nb;

	(void)state;
	/* CRs are dropped: a file learned with LF ends and the same message
	 * seen by the daemon with CRLF have the same features */
	na = feats("Subject: hello\nFrom: a@b\n\nbody\n", a);
	nb = feats("Subject: hello\r\nFrom: a@b\r\n\r\nbody\r\n", b);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na * sizeof(a[0]));
	/* distinct 4-grams only: abcd bcda cdab dabc, then abcd again */
	assert_int_equal(feats("abcdabcd", a), 4);
	assert_int_equal(feats("abc", a), 0);
	assert_int_equal(feats("", a), 0);
	for (size_t i = 0; i < 4; i++)
		assert_true(a[i] < CHARS_DIM);
	/* only the start of the message counts */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (unsigned char)(i * 7919 % 251 == '\r' ? 'r' : i * 7919 % 251);
	assert_int_equal(chars_example(big, sizeof(big), ex), CHARS_PREFIX);
	na = chars_features(ex, CHARS_PREFIX, a);
	assert_true(na > 0 && na <= CHARS_PREFIX - 3);
	memset(big + CHARS_PREFIX, 'x', sizeof(big) - CHARS_PREFIX);
	nb = chars_features(ex, chars_example(big, sizeof(big), ex), b);
	assert_int_equal(na, nb);
}

/* a toy corpus: spam from one mailer, ham from another, words shared */
static char *message(int spam, int i)
{
	char *m = malloc(512);

	snprintf(m, 512, "Received: from %s%d.example (%s)\nX-Mailer: %s\nSubject: note %d about the meeting\n\n"
	    "Hello, here is the note %d about the meeting.\n",
	    spam ? "dsl-pool-" : "mail", i, spam ? "unknown" : "mail.example.org",
	    spam ? "Mass Mailer Pro 3.1" : "Mutt/1.5.4i", i, i);
	return m;
}

static void train_toy(float *w, char **msgs, unsigned char ex[][CHARS_PREFIX], struct chars_example *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		e[i].bytes = ex[i];
		e[i].len = chars_example((const unsigned char *)msgs[i], strlen(msgs[i]), ex[i]);
		e[i].spam = (int)(i % 2);
	}
	chars_train(w, e, n);
}

static void test_train(void **state)
{
	enum { N = 40 };
	static unsigned char ex[N][CHARS_PREFIX];
	static uint32_t idx[CHARS_PREFIX];
	struct chars_example e[N];
	char *msgs[N];
	float *w = malloc(CHARS_WEIGHTS * sizeof(float)), *w2 = malloc(CHARS_WEIGHTS * sizeof(float));
	unsigned char one[CHARS_PREFIX];
	double m[2];
	size_t n;

	(void)state;
	for (int i = 0; i < N; i++)
		msgs[i] = message(i % 2, i);
	train_toy(w, msgs, ex, e, N);
	/* unseen messages of each kind fall on their side */
	for (int i = 100; i < 104; i++) {
		char *msg = message(i % 2, i);

		chars_margins(w, one, chars_example((const unsigned char *)msg, strlen(msg), one), m);
		/* both models: the whole example's and the header's */
		if (i % 2)
			assert_true(m[0] > 1 && m[1] > 1);
		else
			assert_true(m[0] < -1 && m[1] < -1);
		n = feats(msg, idx);
		assert_true(chars_margin(w, idx, n) == m[0]);
		free(msg);
	}
	/* repeatable: the same examples in the same order, the same model */
	train_toy(w2, msgs, ex, e, N);
	assert_memory_equal(w, w2, CHARS_WEIGHTS * sizeof(float));
	assert_true(chars_margin(w, idx, 0) == 0);
	for (int i = 0; i < N; i++)
		free(msgs[i]);
	free(w);
	free(w2);
}

/* a noisier toy corpus: words drawn from an overlapping vocabulary, so
 * that where stochastic gradient descent ends depends on the order */
static char *noisy_message(int spam, uint32_t *rng)
{
	char *m = malloc(1024);
	size_t n = (size_t)snprintf(m, 1024, "Subject: news\n\n");

	for (int k = 0; k < 40; k++) {
		unsigned w;

		*rng = *rng * 1103515245u + 12345u;
		w = (*rng >> 16) % 60 + (spam ? 0 : 30);
		n += (size_t)snprintf(m + n, 1024 - n, "w%02u ", w);
	}
	return m;
}

static void test_train_order(void **state)
{
	enum { N = 300, T = 60 };
	static unsigned char ex[N][CHARS_PREFIX], one[CHARS_PREFIX];
	struct chars_example e[N], r[N];
	float *w = malloc(CHARS_WEIGHTS * sizeof(float)), *w2 = malloc(CHARS_WEIGHTS * sizeof(float));
	uint32_t rng = 7;
	double diff = 0, size = 0, m[2], m2[2];

	(void)state;
	for (int i = 0; i < N; i++) {
		char *msg = noisy_message(i % 2, &rng);

		e[i].bytes = ex[i];
		e[i].len = chars_example((const unsigned char *)msg, strlen(msg), ex[i]);
		e[i].spam = i % 2;
		r[N - 1 - i] = e[i];
		free(msg);
	}
	chars_train(w, e, N);
	chars_train(w2, r, N);
	for (int i = 0; i < T; i++) {
		char *msg = noisy_message(i % 2, &rng);
		size_t len = chars_example((const unsigned char *)msg, strlen(msg), one);

		chars_margins(w, one, len, m);
		chars_margins(w2, one, len, m2);
		diff += fabs(m[0] - m2[0]) + fabs(m[1] - m2[1]);
		size += fabs(m[0]) + fabs(m[1]);
		free(msg);
	}
	/* the same examples in the reverse order move the margins less than
	 * their size: measured 0.46 of it with the mean of 8 orders, 1.09
	 * with one order alone (0.14 with 32) */
	print_message("margins moved by the order: %.3f of their size\n", diff / size);
	assert_true(diff < 0.6 * size);
	free(w);
	free(w2);
}

static double mix(double p, double whole, double header)
{
	double m[2] = { whole, header };

	return chars_mix(p, m);
}

static void test_mix(void **state)
{
	(void)state;
	assert_true(fabs(mix(0.3, 0, 0) - 0.3) < 1e-9);
	assert_true(mix(0.3, 2, 0) > 0.3);
	assert_true(mix(0.3, -2, 0) < 0.3);
	assert_true(mix(0.3, 0, 2) > 0.3);
	assert_true(mix(0.3, 0, -2) < 0.3);
	/* the header's margin weighs more than the whole example's (1/2
	 * against 1/3), and opposite margins of those sizes cancel */
	assert_true(mix(0.3, 0, 1) > mix(0.3, 1, 0));
	assert_true(fabs(mix(0.3, 3, -2) - 0.3) < 1e-9);
	/* the word model's certainty is not absolute: a strong margin moves
	 * p = 0 and p = 1 too, and the result stays a probability */
	assert_true(mix(0, 90, 0) > 0.5);
	assert_true(mix(1, 0, -90) < 0.5);
	assert_true(mix(1, 1e6, 1e6) <= 1 && mix(0, -1e6, -1e6) >= 0);
}

/* the header model reads the header alone: up to the first empty line */
static void test_header(void **state)
{
	static const char a[] = "Subject: one\nFrom: a@example.org\n\nBody of the first.\n";
	static const char b[] = "Subject: one\nFrom: a@example.org\n\nAnother body, longer than that.\n";
	float *w = calloc(CHARS_WEIGHTS, sizeof(float));
	unsigned char ea[CHARS_PREFIX], eb[CHARS_PREFIX];
	size_t la, lb;
	double ma[2], mb[2];

	(void)state;
	assert_int_equal(chars_header_len((const unsigned char *)"A: b\n\nc", 7), 4);
	assert_int_equal(chars_header_len((const unsigned char *)"\n\nbody", 6), 0);
	assert_int_equal(chars_header_len((const unsigned char *)"A: b\nC: d\n", 10), 10);
	/* CRLF becomes LF first, so a CRLF message has the same header */
	la = chars_example((const unsigned char *)"A: b\r\n\r\nc", 9, ea);
	assert_int_equal(chars_header_len(ea, la), 4);
	/* every weight nonzero: both examples give margins, equal in the
	 * header model only */
	for (size_t i = 0; i < CHARS_WEIGHTS; i++)
		w[i] = (float)((i * 2654435761u) % 1000) / 1000 - 0.4f;
	la = chars_example((const unsigned char *)a, strlen(a), ea);
	lb = chars_example((const unsigned char *)b, strlen(b), eb);
	chars_margins(w, ea, la, ma);
	chars_margins(w, eb, lb, mb);
	assert_true(ma[1] == mb[1]);
	assert_true(ma[0] != mb[0]);
	/* one pass gives both models' features: the same margins as each
	 * model's features taken apart, for every length of header and
	 * example (short ones, no empty line, the prefix cut) */
	{
		static unsigned char ex[CHARS_PREFIX];
		static uint32_t idx[CHARS_PREFIX];
		unsigned seed = 7;

		for (int t = 0; t < 20000; t++) {
			size_t len = t % 100 == 0 ? CHARS_PREFIX : (size_t)(rand_r(&seed) % 40);
			double m[2];

			for (size_t i = 0; i < len; i++)
				ex[i] = (unsigned char)"ab\n:c"[rand_r(&seed) % 5];
			chars_margins(w, ex, len, m);
			assert_true(m[0] == chars_margin(w, idx, chars_features(ex, len, idx)));
			assert_true(m[1] == chars_margin(w + CHARS_DIM, idx,
			                                 chars_features(ex, chars_header_len(ex, len), idx)));
		}
	}
	free(w);
}

static void test_model_form(void **state)
{
	float *w = calloc(CHARS_WEIGHTS, sizeof(float)), *back = calloc(CHARS_WEIGHTS, sizeof(float));
	unsigned char *blob = malloc(CHARS_MODEL_SIZE);
	uint32_t ns, nh;
	float nan = NAN;

	(void)state;
	w[0] = 1.5f;
	w[CHARS_DIM - 1] = -2.25f;
	w[12345] = 1e-7f;
	w[CHARS_DIM + 7] = 3.5f;
	w[CHARS_WEIGHTS - 1] = -0.5f;
	chars_model_encode(w, 7, 9, blob);
	assert_int_equal(chars_model_decode(blob, CHARS_MODEL_SIZE, back, &ns, &nh), 0);
	assert_int_equal(ns, 7);
	assert_int_equal(nh, 9);
	assert_memory_equal(w, back, CHARS_WEIGHTS * sizeof(float));
	assert_int_equal(chars_model_decode(blob, CHARS_MODEL_SIZE - 1, back, &ns, &nh), -1);
	/* session 11's form, the whole example's model alone: read, with a
	 * header model of zeros; of the new size it is refused */
	memcpy(blob, "MWC1", 4);
	assert_int_equal(chars_model_decode(blob, CHARS_MODEL_SIZE, back, &ns, &nh), -1);
	assert_int_equal(chars_model_decode(blob, CHARS_MODEL1_SIZE, back, &ns, &nh), 1);
	assert_memory_equal(w, back, CHARS_DIM * sizeof(float));
	for (size_t i = CHARS_DIM; i < CHARS_WEIGHTS; i++)
		assert_true(back[i] == 0);
	memcpy(blob, "MWC2", 4);
	assert_int_equal(chars_model_decode(blob, CHARS_MODEL1_SIZE, back, &ns, &nh), -1);
	blob[4] ^= 1;          /* another CHARS_BITS */
	assert_int_equal(chars_model_decode(blob, CHARS_MODEL_SIZE, back, &ns, &nh), -1);
	blob[4] ^= 1;
	memcpy(blob + 16 + 4 * 100, &nan, 4);
	assert_int_equal(chars_model_decode(blob, CHARS_MODEL_SIZE, back, &ns, &nh), -1);
	memset(blob + 16 + 4 * 100, 0, 4);
	memcpy(blob + 16 + 4 * (CHARS_DIM + 100), &nan, 4);     /* in the header model */
	assert_int_equal(chars_model_decode(blob, CHARS_MODEL_SIZE, back, &ns, &nh), -1);
	free(blob);
	free(w);
	free(back);
}

/* the store's side: learned examples -> a model -> the scanner's margin */
static void test_store_round_trip(void **state)
{
	enum { N = 40 };
	char err[512], ov[160], key[64];
	const char *o[1] = { ov };
	struct config *c;
	struct store *st;
	struct chars_cache *cache;
	double m[2] = { 0, 0 };
	char *probe_spam = message(1, 200), *probe_ham = message(0, 201);

	(void)state;
	snprintf(ov, sizeof(ov), "store_path=%s/s.lmdb", dir);
	assert_non_null(c = config_load(NULL, o, 1, err, sizeof(err)));
	assert_non_null(st = store_open(c, err, sizeof(err)));
	cache = chars_cache_new(CHARS_CHECK_S);
	/* nothing stored yet: no model, no margin */
	assert_int_equal(chars_cache_margin(cache, st, 1, 1, (const unsigned char *)probe_spam,
	                                    strlen(probe_spam), m), 0);
	for (int i = 0; i < N; i++) {
		char *msg = message(i % 2, i);

		snprintf(key, sizeof(key), "bayes:seen:%04d", i);
		assert_int_equal(chars_keep(st, key, (const unsigned char *)msg, strlen(msg), i % 2, 0), 0);
		free(msg);
	}
	/* a key that is not a seen key is refused */
	assert_int_equal(chars_keep(st, "other:1", (const unsigned char *)"x", 1, 1, 0), -1);
	assert_int_equal(chars_rebuild(st, NULL), 0);
	/* a fresh cache looks at once; one made before waits CHARS_CHECK_S */
	chars_cache_free(cache);
	cache = chars_cache_new(CHARS_CHECK_S);
	assert_int_equal(chars_cache_margin(cache, st, 1, 1, (const unsigned char *)probe_spam,
	                                    strlen(probe_spam), m), 1);
	assert_true(m[0] > 1 && m[1] > 1);
	assert_int_equal(chars_cache_margin(cache, st, 1, 1, (const unsigned char *)probe_ham,
	                                    strlen(probe_ham), m), 1);
	assert_true(m[0] < -1 && m[1] < -1);
	/* a model stored by session 11 (the whole example's model alone) is
	 * still used, with no header margin */
	{
		unsigned char *blob = NULL;
		size_t blen = 0;
		double m1[2];

		assert_int_equal(store_blob_get(st, "bayes:chars:model", &blob, &blen), 1);
		assert_int_equal(blen, CHARS_MODEL_SIZE);
		memcpy(blob, "MWC1", 4);
		assert_int_equal(store_blob_set(st, "bayes:chars:model", blob, CHARS_MODEL1_SIZE, 0), 0);
		assert_int_equal(store_incr(st, "bayes:chars:version", 1, 0, NULL), 0);
		free(blob);
		chars_cache_free(cache);
		cache = chars_cache_new(CHARS_CHECK_S);
		assert_int_equal(chars_cache_margin(cache, st, 1, 1, (const unsigned char *)probe_ham,
		                                    strlen(probe_ham), m1), 1);
		assert_true(m1[0] == m[0] && m1[1] == 0);
	}
	/* fewer learned than bayes_min_spam / bayes_min_ham: silent */
	assert_int_equal(chars_cache_margin(cache, st, 21, 1, (const unsigned char *)probe_ham,
	                                    strlen(probe_ham), m), 0);
	/* forgetting every spam example leaves a model that knows no spam */
	for (int i = 1; i < N; i += 2) {
		snprintf(key, sizeof(key), "bayes:seen:%04d", i);
		assert_int_equal(chars_keep(st, key, NULL, 0, -1, 0), 0);
	}
	assert_int_equal(chars_rebuild(st, NULL), 0);
	chars_cache_free(cache);
	cache = chars_cache_new(CHARS_CHECK_S);
	assert_int_equal(chars_cache_margin(cache, st, 1, 1, (const unsigned char *)probe_spam,
	                                    strlen(probe_spam), m), 0);
	chars_cache_free(cache);
	store_close(st);
	config_unref(c);
	free(probe_spam);
	free(probe_ham);
}

/* the daemon's training: only when examples changed, never under
 * another's lock, and "learn"'s training counts as done */
static void test_retrain(void **state)
{
	char err[512], ov[160], key[64], v[32];
	const char *o[1] = { ov };
	struct config *c;
	struct store *st;
	struct chars_trained t;

	(void)state;
	snprintf(ov, sizeof(ov), "store_path=%s/r.lmdb", dir);
	assert_non_null(c = config_load(NULL, o, 1, err, sizeof(err)));
	assert_non_null(st = store_open(c, err, sizeof(err)));
	/* an empty store, or one whose model is its examples': nothing to do */
	assert_int_equal(chars_retrain_due(st), 0);
	assert_int_equal(chars_retrain(st, &t), CHARS_RETRAIN_NOT_DUE);
	for (int i = 0; i < 6; i++) {
		char *msg = message(i % 2, i);

		snprintf(key, sizeof(key), "bayes:seen:%04d", i);
		assert_int_equal(chars_keep(st, key, (const unsigned char *)msg, strlen(msg), i % 2, 0), 0);
		free(msg);
	}
	assert_int_equal(chars_retrain_due(st), 1);
	assert_int_equal(chars_retrain(st, &t), CHARS_RETRAIN_TRAINED);
	assert_true(t.nspam == 3 && t.nham == 3 && t.seconds >= 0);
	assert_int_equal(store_get(st, "bayes:chars:version", v, sizeof(v)), 1);
	assert_string_equal(v, "1");
	assert_int_equal(store_get(st, "bayes:chars:lock", v, sizeof(v)), 0);   /* released */
	assert_int_equal(chars_retrain_due(st), 0);
	assert_int_equal(chars_retrain(st, &t), CHARS_RETRAIN_NOT_DUE);
	/* a forgotten example is a change too */
	assert_int_equal(chars_keep(st, "bayes:seen:0000", NULL, 0, -1, 0), 0);
	assert_int_equal(chars_retrain_due(st), 1);
	/* another holds the lock: not trained, the lock left to its holder */
	assert_int_equal(store_incr(st, "bayes:chars:lock", 1, 60, NULL), 0);
	assert_int_equal(chars_retrain(st, &t), CHARS_RETRAIN_LOCKED);
	assert_int_equal(store_get(st, "bayes:chars:version", v, sizeof(v)), 1);
	assert_string_equal(v, "1");
	assert_int_equal(store_get(st, "bayes:chars:lock", v, sizeof(v)), 1);
	assert_int_equal(store_del(st, "bayes:chars:lock"), 0);
	assert_int_equal(chars_retrain(st, &t), CHARS_RETRAIN_TRAINED);
	assert_true(t.nspam == 3 && t.nham == 2);
	/* what "learn" trains counts as trained */
	assert_int_equal(chars_keep(st, "bayes:seen:0000", (const unsigned char *)"x", 1, 0, 0), 0);
	assert_int_equal(chars_retrain_due(st), 1);
	assert_int_equal(chars_rebuild(st, NULL), 0);
	assert_int_equal(chars_retrain_due(st), 0);
	/* "learn" waits while another holds the lock (here one that dies:
	 * its lock expires in 2 s), then trains under it and lets it go */
	{
		char *report = NULL;
		size_t rlen = 0;
		FILE *rf = open_memstream(&report, &rlen);
		struct timespec t0, t1;

		assert_int_equal(store_incr(st, "bayes:chars:lock", 1, 2, NULL), 0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(chars_rebuild(st, rf), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		fclose(rf);
		assert_true(t1.tv_sec - t0.tv_sec >= 1);
		assert_non_null(strstr(report, "another process trains the character model (bayes:chars:lock): waiting"));
		assert_non_null(strstr(report, "character model trained on 3 spam, 3 ham"));
		assert_int_equal(store_get(st, "bayes:chars:version", v, sizeof(v)), 1);
		assert_string_equal(v, "4");
		assert_int_equal(store_get(st, "bayes:chars:lock", v, sizeof(v)), 0);
		free(report);
	}
	store_close(st);
	config_unref(c);
}

/* takes the lock from its holder as soon as it is held: what a holder
 * that stalled past CHARS_LOCK_TTL finds (its lock expired, another
 * process took it) */
struct thief {
	struct store *st;
	atomic_int    stole, stop;
};

static void *steal(void *arg)
{
	struct thief *t = arg;
	char v[64];

	while (!atomic_load(&t->stop)) {
		if (store_get(t->st, "bayes:chars:lock", v, sizeof(v)) == 1 && strcmp(v, "other") != 0) {
			assert_int_equal(store_set(t->st, "bayes:chars:lock", "other", 60), 0);
			atomic_store(&t->stole, 1);
			break;
		}
		usleep(200);
	}
	return NULL;
}

/* a holder lets go of the lock only while it is its own: one that
 * expired while it trained and another took stays the other's (until
 * session 18 the release deleted it whoever held it) */
static void test_lock_released_only_by_its_holder(void **state)
{
	char err[512], ov[160], key[64], v[64];
	const char *o[1] = { ov };
	struct config *c;
	struct store *st;
	struct thief th = { 0 };
	pthread_t tid;

	(void)state;
	snprintf(ov, sizeof(ov), "store_path=%s/lock.lmdb", dir);
	assert_non_null(c = config_load(NULL, o, 1, err, sizeof(err)));
	assert_non_null(st = store_open(c, err, sizeof(err)));
	for (int i = 0; i < 400; i++) {       /* a training of some 100 ms */
		char *msg = message(i % 2, i);

		snprintf(key, sizeof(key), "bayes:seen:%04d", i);
		assert_int_equal(chars_keep(st, key, (const unsigned char *)msg, strlen(msg), i % 2, 0), 0);
		free(msg);
	}
	th.st = st;
	assert_int_equal(pthread_create(&tid, NULL, steal, &th), 0);
	assert_int_equal(chars_rebuild(st, NULL), 0);
	atomic_store(&th.stop, 1);
	pthread_join(tid, NULL);
	assert_true(atomic_load(&th.stole));     /* taken while it trained */
	assert_int_equal(store_get(st, "bayes:chars:lock", v, sizeof(v)), 1);
	assert_string_equal(v, "other");
	/* and the other's lock keeps the daemon's training off */
	assert_int_equal(chars_keep(st, "bayes:seen:0000", NULL, 0, -1, 0), 0);
	assert_int_equal(chars_retrain(st, &(struct chars_trained){ 0 }), CHARS_RETRAIN_LOCKED);
	assert_int_equal(store_get(st, "bayes:chars:lock", v, sizeof(v)), 1);
	assert_string_equal(v, "other");
	store_close(st);
	config_unref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_and_features),
		cmocka_unit_test(test_train),
		cmocka_unit_test(test_train_order),
		cmocka_unit_test(test_mix),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_model_form),
		cmocka_unit_test(test_store_round_trip),
		cmocka_unit_test(test_retrain),
		cmocka_unit_test(test_lock_released_only_by_its_holder),
	};

	return cmocka_run_group_tests(tests, unit_tmpdir_setup, unit_tmpdir_teardown);
}
