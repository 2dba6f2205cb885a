/* bayes_chars.c - the character 4-gram model of the Bayes filter
 * (bayes_chars.h says what and why). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "filters/bayes_chars.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"
#include "proxy/thread.h"

/* Training, chosen by cross-validation on the corpus' training half
 * (README "Bayes"): 12 passes at rate 20 over features scaled to unit
 * length; one pass leaves the model short of what 12 give, and more
 * change nothing. */
#define CHARS_PASSES 12
#define CHARS_RATE   20.0
/* Each model is the mean of CHARS_ORDERS such trainings, each in an
 * order of its own: at rate 20 the last examples of the last pass move
 * a model most, so one training leans on which examples those are (the
 * order of their store keys, then a fixed shuffle). Over the corpus'
 * training half, two trainings in different orders put a message's
 * margin 0.70 apart (median; 2.4 for one in twenty); means of 8 orders
 * 0.27 (0.87), for 8 times the work, done on up to CHARS_THREADS
 * cores (README "Bayes", session 13). */
#define CHARS_ORDERS  8
#define CHARS_THREADS 4
/* the margin's weight against the word model's log-odds (1/3), chosen
 * with the fit's margin (accuracy_cv.py MARGIN) under cross-validation:
 * at 1/1.5 to 1/2.5 the margin alone lifts a few newsletters the words
 * put at p 0.8-0.9 past 0.95, where Bayes alone tags (README "Bayes") */
#define CHARS_MIX    3.0
/* the header model's weight (1/2), chosen in session 12 together with
 * BAYES_95's score and the fit's margin under cross-validation: at 1/1.5
 * it flags more ham, at 1/2.5-1/3 it catches less spam (README "Bayes") */
#define CHARS_HDR_MIX 2.0

#define EX_PREFIX      "bayes:ex:"
#define MODEL_KEY      "bayes:chars:model"
#define VERSION_KEY    "bayes:chars:version"
/* bumped by every example kept or forgotten; the models were trained
 * from the examples as they stood at TRAINED_KEY's value of it */
#define EXAMPLES_KEY   "bayes:chars:examples"
#define TRAINED_KEY    "bayes:chars:trained"
#define LOCK_KEY       "bayes:chars:lock"

size_t chars_example(const unsigned char *msg, size_t len, unsigned char *out)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n < CHARS_PREFIX; i++)
		if (msg[i] != '\r')
			out[n++] = msg[i];
	return n;
}

static uint32_t gram_hash(const unsigned char *p)
{
	uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;

	/* multiplicative hashing: the top bits of v * the golden ratio mix
	 * every byte */
	return (v * 0x9E3779B1u) >> (32 - CHARS_BITS);
}

/* features - chars_features, and in *nhead how many of them start
 * within the first head bytes: those are the first *nhead (the order is
 * of first occurrence), so one pass gives both models' features */
static size_t features(const unsigned char *ex, size_t len, size_t head, uint32_t *idx, size_t *nhead)
{
	uint64_t seen[CHARS_DIM / 64];
	size_t n = 0;

	*nhead = 0;
	if (len > CHARS_PREFIX)
		len = CHARS_PREFIX;
	if (len < 4)
		return 0;
	memset(seen, 0, sizeof(seen));
	for (size_t i = 0; i + 4 <= len; i++) {
		uint32_t h = gram_hash(ex + i);
		uint64_t bit = (uint64_t)1 << (h & 63);

		if (i + 4 == head + 1)
			*nhead = n;     /* the grams past here cross out of the head */
		if (seen[h >> 6] & bit)
			continue;
		seen[h >> 6] |= bit;
		idx[n++] = h;
	}
	if (head >= 3 && head + 1 > len)
		*nhead = n;     /* no gram crosses out: the head is all of it */
	return n;
}

size_t chars_features(const unsigned char *ex, size_t len, uint32_t *idx)
{
	size_t nhead;

	return features(ex, len, len, idx, &nhead);
}

size_t chars_header_len(const unsigned char *ex, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (ex[i] == '\n' && ex[i + 1] == '\n')
			return i;
	return len;
}

double chars_margin(const float *w, const uint32_t *idx, size_t n)
{
	double z = 0;

	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		z += w[idx[i]];
	return z / sqrt((double)n);
}

void chars_margins(const float *w, const unsigned char *ex, size_t len, double m[2])
{
	uint32_t idx[CHARS_PREFIX];
	size_t nhead, n = features(ex, len, chars_header_len(ex, len), idx, &nhead);

	m[0] = chars_margin(w, idx, n);
	m[1] = chars_margin(w + CHARS_DIM, idx, nhead);
}

double chars_mix(double p, const double m[2])
{
	double lo;

	if (p < 1e-9)
		p = 1e-9;
	else if (p > 1 - 1e-9)
		p = 1 - 1e-9;
	lo = log(p / (1 - p)) + m[0] / CHARS_MIX + m[1] / CHARS_HDR_MIX;
	if (lo > 40)
		lo = 40;
	else if (lo < -40)
		lo = -40;
	return 1 / (1 + exp(-lo));
}

/* xorshift64* - a fixed sequence, so that training is repeatable */
static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

/* train_one - one model (CHARS_DIM weights) on the examples, or on
 * their headers */
static void train_one(float *w, struct chars_example *ex, size_t n, int header, uint64_t rng)
{
	uint32_t *idx = xcalloc(CHARS_PREFIX, sizeof(*idx));

	memset(w, 0, (size_t)CHARS_DIM * sizeof(*w));
	for (unsigned pass = 0; pass < CHARS_PASSES; pass++) {
		for (size_t i = n; i > 1; i--) {
			size_t j = (size_t)(next_rand(&rng) % i);
			struct chars_example t = ex[i - 1];

			ex[i - 1] = ex[j];
			ex[j] = t;
		}
		for (size_t i = 0; i < n; i++) {
			size_t len = header ? chars_header_len(ex[i].bytes, ex[i].len) : ex[i].len;
			size_t m = chars_features(ex[i].bytes, len, idx);
			double norm, z, g;

			if (m == 0)
				continue;
			norm = 1 / sqrt((double)m);
			z = chars_margin(w, idx, m);
			if (z > 30)
				z = 30;
			else if (z < -30)
				z = -30;
			g = ((ex[i].spam ? 1.0 : 0.0) - 1 / (1 + exp(-z))) * CHARS_RATE * norm;
			for (size_t k = 0; k < m; k++)
				w[idx[k]] += (float)g;
		}
	}
	free(idx);
}

/* one order: both models, from the examples' given order shuffled by
 * its own seed (its own copy of them, so orders run side by side) */
struct order {
	const struct chars_example *from;
	size_t n;
	uint64_t seed;
	float *w;                       /* CHARS_WEIGHTS, its result */
};

static void *train_order(void *arg)
{
	struct order *o = arg;
	struct chars_example *ex = xcalloc(o->n ? o->n : 1, sizeof(*ex));
	uint64_t s = o->seed;

	if (o->n > 0)   /* from may be NULL with no examples */
		memcpy(ex, o->from, o->n * sizeof(*ex));
	train_one(o->w, ex, o->n, 0, next_rand(&s) | 1);
	train_one(o->w + CHARS_DIM, ex, o->n, 1, next_rand(&s) | 1);
	free(ex);
	return NULL;
}

void chars_train(float *w, const struct chars_example *ex, size_t n)
{
	struct order o[CHARS_ORDERS];
	pthread_t tid[CHARS_ORDERS];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t par = cpus < 1 ? 1 : cpus > CHARS_THREADS ? CHARS_THREADS : (size_t)cpus;
	uint64_t seed = 0x9E3779B97F4A7C15ull;

	memset(w, 0, CHARS_WEIGHTS * sizeof(*w));
	for (size_t k = 0; k < CHARS_ORDERS; k++)
		o[k] = (struct order){ .from = ex, .n = n, .seed = next_rand(&seed) };
	for (size_t k0 = 0; k0 < CHARS_ORDERS; k0 += par) {
		size_t end = k0 + par < CHARS_ORDERS ? k0 + par : CHARS_ORDERS;
		int started[CHARS_ORDERS] = { 0 };

		for (size_t k = k0; k < end; k++) {
			o[k].w = xmalloc(CHARS_WEIGHTS * sizeof(*o[k].w));
			/* no thread (a limit hit): the same training, here */
			started[k] = k > k0 && thread_start_blocked(&tid[k], train_order, &o[k]) == 0;
		}
		for (size_t k = k0; k < end; k++)
			if (!started[k])
				train_order(&o[k]);
		/* summed in the orders' own order whichever thread ends first:
		 * the same examples always give the same models */
		for (size_t k = k0; k < end; k++) {
			if (started[k])
				pthread_join(tid[k], NULL);
			for (size_t i = 0; i < CHARS_WEIGHTS; i++)
				w[i] += o[k].w[i] / CHARS_ORDERS;
			free(o[k].w);
		}
	}
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void chars_model_encode(const float *w, uint32_t nspam, uint32_t nham, unsigned char *out)
{
	memcpy(out, "MWC2", 4);
	put32(out + 4, CHARS_BITS);
	put32(out + 8, nspam);
	put32(out + 12, nham);
	for (size_t i = 0; i < CHARS_WEIGHTS; i++) {
		uint32_t v;

		memcpy(&v, &w[i], 4);
		put32(out + 16 + 4 * i, v);
	}
}

int chars_model_decode(const unsigned char *blob, size_t len, float *w, uint32_t *nspam, uint32_t *nham)
{
	size_t nw;

	if (len == CHARS_MODEL_SIZE && memcmp(blob, "MWC2", 4) == 0)
		nw = CHARS_WEIGHTS;
	else if (len == CHARS_MODEL1_SIZE && memcmp(blob, "MWC1", 4) == 0)
		nw = CHARS_DIM;     /* trained before the header model */
	else
		return -1;
	if (get32(blob + 4) != CHARS_BITS)
		return -1;
	*nspam = get32(blob + 8);
	*nham = get32(blob + 12);
	memset(w, 0, CHARS_WEIGHTS * sizeof(*w));
	for (size_t i = 0; i < nw; i++) {
		uint32_t v = get32(blob + 16 + 4 * i);

		memcpy(&w[i], &v, 4);
		/* a weight that is not a finite number would make every margin
		 * one: a damaged model is no model */
		if (!isfinite(w[i]))
			return -1;
	}
	return nw == CHARS_DIM;
}

/* ex_key - "bayes:ex:<id>" of a "bayes:seen:<id>" key; -1 if it is not one */
static int ex_key(const char *seen_key, char *out, size_t outsz)
{
	const char *id = strrchr(seen_key, ':');

	if (id == NULL || strncmp(seen_key, "bayes:seen:", 11) != 0)
		return -1;
	return snprintf(out, outsz, EX_PREFIX "%s", id + 1) < (int)outsz ? 0 : -1;
}

int chars_keep(struct store *st, const char *seen_key, const unsigned char *msg, size_t len,
               int cls, unsigned ttl_s)
{
	unsigned char val[1 + CHARS_PREFIX];
	char key[STORE_KEY_MAX];
	size_t n;

	if (ex_key(seen_key, key, sizeof(key)) < 0)
		return -1;
	if (cls < 0) {
		if (store_del(st, key) < 0)
			return -1;
	} else {
		val[0] = cls ? 's' : 'h';
		n = chars_example(msg, len, val + 1);
		if (store_blob_set(st, key, val, n + 1, ttl_s) < 0)
			return -1;
	}
	/* after the example: a training that reads the new count reads the
	 * example too */
	return store_incr(st, EXAMPLES_KEY, 1, 0, NULL);
}

int chars_learning(struct store_learning *l, struct chars_kept_example *ex,
                   const unsigned char *msg, size_t len, int cls, unsigned ttl_s)
{
	if (ex_key(l->mark, ex->key, sizeof(ex->key)) < 0)
		return -1;
	l->kept = ex->key;
	l->kept_val = NULL;
	l->kept_len = 0;
	l->kept_ttl_s = 0;
	if (cls >= 0) {
		ex->val[0] = cls ? 's' : 'h';
		l->kept_val = ex->val;
		l->kept_len = 1 + chars_example(msg, len, ex->val + 1);
		l->kept_ttl_s = ttl_s;
	}
	l->kept_count = EXAMPLES_KEY;
	return 0;
}

int chars_move(struct store *st, const char *from_seen, const char *to_seen)
{
	char from[STORE_KEY_MAX], to[STORE_KEY_MAX];

	if (ex_key(from_seen, from, sizeof(from)) < 0 || ex_key(to_seen, to, sizeof(to)) < 0)
		return -1;
	return store_move(st, from, to) < 0 ? -1 : 0;
}

int chars_kept(struct store *st, const char *seen_key)
{
	char key[STORE_KEY_MAX];
	unsigned char *val = NULL;
	size_t len;
	int r;

	if (ex_key(seen_key, key, sizeof(key)) < 0)
		return -1;
	r = store_blob_get(st, key, &val, &len);
	free(val);
	return r;
}

struct collected {
	struct kept {
		char *key;
		unsigned char *val;
		size_t len;
	} *v;
	size_t n, cap;
};

static int collect(const char *key, const unsigned char *data, size_t len, void *arg)
{
	struct collected *c = arg;

	if (len < 1 || (data[0] != 's' && data[0] != 'h') || len > 1 + CHARS_PREFIX)
		return 0;       /* not one of ours: left alone */
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 1024;
		c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
	}
	c->v[c->n].key = xstrdup(key);
	c->v[c->n].val = xmalloc(len);
	memcpy(c->v[c->n].val, data, len);
	c->v[c->n].len = len;
	c->n++;
	return 0;
}

static int by_key(const void *a, const void *b)
{
	return strcmp(((const struct kept *)a)->key, ((const struct kept *)b)->key);
}

/* read_count - the integer at key (0 absent), or -1 on a store failure */
static long long read_count(struct store *st, const char *key)
{
	char v[32];
	int r = store_get(st, key, v, sizeof(v));

	if (r < 0)
		return -1;
	return r == 1 ? strtoll(v, NULL, 10) : 0;
}

/* rebuild - chars_rebuild, its counts and time into *out */
static int rebuild(struct store *st, struct chars_trained *out)
{
	struct collected c = { 0 };
	struct chars_example *ex;
	float *w;
	unsigned char *blob;
	uint32_t nspam = 0, nham = 0;
	size_t n = 0;
	struct timespec t0, t1;
	long long examples;
	char num[32];
	int rc = -1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* read before the examples: one kept meanwhile leaves the count
	 * ahead of what is recorded as trained, and the next look trains */
	if ((examples = read_count(st, EXAMPLES_KEY)) < 0)
		return -1;
	if (store_scan(st, EX_PREFIX, collect, &c) < 0)
		goto out;
	/* in key order, duplicates dropped (Redis' SCAN may give a key
	 * twice): the same examples always train the same model */
	if (c.n > 0)            /* no example: c.v is NULL, which qsort may not take */
		qsort(c.v, c.n, sizeof(*c.v), by_key);
	ex = xcalloc(c.n ? c.n : 1, sizeof(*ex));
	for (size_t i = 0; i < c.n; i++) {
		if (i > 0 && strcmp(c.v[i].key, c.v[i - 1].key) == 0)
			continue;
		ex[n].bytes = c.v[i].val + 1;
		ex[n].len = c.v[i].len - 1;
		ex[n].spam = c.v[i].val[0] == 's';
		if (ex[n].spam)
			nspam++;
		else
			nham++;
		n++;
	}
	w = xmalloc(CHARS_WEIGHTS * sizeof(*w));
	chars_train(w, ex, n);
	blob = xmalloc(CHARS_MODEL_SIZE);
	chars_model_encode(w, nspam, nham, blob);
	snprintf(num, sizeof(num), "%lld", examples);
	if (store_blob_set(st, MODEL_KEY, blob, CHARS_MODEL_SIZE, 0) == 0
	    && store_incr(st, VERSION_KEY, 1, 0, NULL) == 0
	    && store_set(st, TRAINED_KEY, num, 0) == 0)
		rc = 0;
	free(blob);
	free(w);
	free(ex);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	out->nspam = nspam;
	out->nham = nham;
	out->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
out:
	for (size_t i = 0; i < c.n; i++) {
		free(c.v[i].key);
		free(c.v[i].val);
	}
	free(c.v);
	return rc;
}

int chars_retrain_due(struct store *st)
{
	long long examples = read_count(st, EXAMPLES_KEY), trained;

	if (examples < 0 || (trained = read_count(st, TRAINED_KEY)) < 0)
		return -1;
	return examples != trained;
}

/* The lock lives CHARS_LOCK_TTL seconds and is renewed every third of
 * that while the training runs: a trainer killed (the daemon stopped,
 * the machine gone) holds the others back a minute at most, and one
 * that runs for an hour on a large store keeps it. */
struct renewer {
	struct store   *st;
	const char     *token;    /* the lock's value while it is ours */
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	int             stop;
};

static void *renew(void *arg)
{
	struct renewer *r = arg;
	struct timespec at;

	pthread_mutex_lock(&r->mu);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &at);
		at.tv_sec += CHARS_LOCK_TTL / 3;
		while (!r->stop && pthread_cond_timedwait(&r->cv, &r->mu, &at) == 0)
			;
		if (r->stop)
			break;
		pthread_mutex_unlock(&r->mu);
		/* renewed only while it holds our token: one that expired
		 * while we stalled and another process took is theirs.  A
		 * failure is the store's to log; the training goes on, and at
		 * worst another machine trains the same examples once more */
		(void)store_swap(r->st, LOCK_KEY, r->token, r->token, CHARS_LOCK_TTL);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* LOCK_TOKEN_SZ - a holder's token: "<pid>-<64 random bits>" */
#define LOCK_TOKEN_SZ 40

/* take_lock - 1 taken (its value, our token, in token), 0 someone
 * else's, -1 store failure.  The lock is taken only where there is none
 * (store_swap: the look and the write one step) and holds a token of
 * ours, so that only we renew and release it: a holder that stalled
 * past CHARS_LOCK_TTL finds it someone else's, and leaves it.  Until
 * session 18 it was a counter, renewed and deleted by whoever trained:
 * a stalled holder's release removed the next holder's lock. */
static int take_lock(struct store *st, char token[LOCK_TOKEN_SZ])
{
	uint64_t rnd = 0;

	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&rnd;
	snprintf(token, LOCK_TOKEN_SZ, "%ld-%016llx", (long)getpid(), (unsigned long long)rnd);
	return store_swap(st, LOCK_KEY, NULL, token, CHARS_LOCK_TTL);
}

/* RELEASE_RETRY_MS - the wait before a failed release is tried again:
 * past store_redis.c's RETRY_MS (1 s), within which a Redis client that
 * failed to connect makes no new attempt (the retry would fail untried) */
#define RELEASE_RETRY_MS 1200

/* drop_lock - the lock released if it is still ours.  A release that
 * failed (the command lost with its connection, Redis out of reach for
 * a moment, another client's script past Redis' busy-reply-threshold)
 * left the lock until CHARS_LOCK_TTL: no machine trained, and a "learn"
 * waited up to a minute.  So it is tried once more.  Repeating it is
 * harmless when the first did reach the server and only its answer was
 * lost (a reply past store_timeout: Redis still runs a command whose
 * client has gone): the lock goes only while it holds our token. */
static void drop_lock(struct store *st, const char *token)
{
	struct timespec pause = { RELEASE_RETRY_MS / 1000, (RELEASE_RETRY_MS % 1000) * 1000000L };

	if (store_swap(st, LOCK_KEY, token, NULL, 0) >= 0)
		return;
	while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
		;
	if (store_swap(st, LOCK_KEY, token, NULL, 0) >= 0) {
		slog(NULL, LOG_NOTICE, "bayes: the training lock (%s) released at the second attempt",
		     LOCK_KEY);
		return;
	}
	slog(NULL, LOG_WARNING, "bayes: the training lock (%s) could not be released: no process "
	     "trains the character models until it expires (%d s)", LOCK_KEY, CHARS_LOCK_TTL);
}

/* train_locked - rebuild under the lock the caller took, renewed by a
 * thread meanwhile; the lock released */
static int train_locked(struct store *st, const char *token, struct chars_trained *out)
{
	struct renewer r = { .st = st, .token = token };
	pthread_condattr_t ca;
	pthread_t tid;
	int rc, renewing;

	pthread_mutex_init(&r.mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r.cv, &ca);
	pthread_condattr_destroy(&ca);
	renewing = thread_start_blocked(&tid, renew, &r) == 0;
	rc = rebuild(st, out);
	if (renewing) {
		pthread_mutex_lock(&r.mu);
		r.stop = 1;
		pthread_cond_signal(&r.cv);
		pthread_mutex_unlock(&r.mu);
		pthread_join(tid, NULL);
	}
	pthread_cond_destroy(&r.cv);
	pthread_mutex_destroy(&r.mu);
	drop_lock(st, token);
	return rc;
}

enum chars_retrain chars_retrain(struct store *st, struct chars_trained *out)
{
	char token[LOCK_TOKEN_SZ];
	int due, got;

	memset(out, 0, sizeof(*out));
	if ((due = chars_retrain_due(st)) <= 0)
		return due < 0 ? CHARS_RETRAIN_FAILED : CHARS_RETRAIN_NOT_DUE;
	if ((got = take_lock(st, token)) <= 0)
		return got < 0 ? CHARS_RETRAIN_FAILED : CHARS_RETRAIN_LOCKED;
	/* another machine may have trained between the look and the lock */
	if ((due = chars_retrain_due(st)) <= 0) {
		drop_lock(st, token);
		return due < 0 ? CHARS_RETRAIN_FAILED : CHARS_RETRAIN_NOT_DUE;
	}
	return train_locked(st, token, out) < 0 ? CHARS_RETRAIN_FAILED : CHARS_RETRAIN_TRAINED;
}

/* "learn" trains whether or not it is due (it was asked to), but under
 * the same lock: trained beside a daemon's training that started before
 * its examples, its model could be overwritten by that older one */
int chars_rebuild(struct store *st, FILE *report)
{
	struct chars_trained t;
	char token[LOCK_TOKEN_SZ];
	unsigned waited = 0;
	int got, rc;

	memset(&t, 0, sizeof(t));
	/* a live holder renews the lock while it trains; a dead one's goes
	 * within CHARS_LOCK_TTL */
	while ((got = take_lock(st, token)) == 0) {
		if (report != NULL && waited % 30 == 0) {
			fprintf(report, "another process trains the character model (%s): waiting for it\n", LOCK_KEY);
			fflush(report);
		}
		sleep(1);
		waited++;
	}
	if (got < 0)
		return -1;
	rc = train_locked(st, token, &t);
	if (report != NULL && rc == 0)
		fprintf(report, "character model trained on %u spam, %u ham in %.1f s\n", t.nspam, t.nham,
		    t.seconds);
	return rc;
}

/* --- the scanner's copy -------------------------------------------- */

struct loaded {
	float   *w;
	uint32_t nspam, nham;
	unsigned refs;
};

struct chars_cache {
	pthread_mutex_t lock;
	struct loaded  *cur;         /* NULL: no model */
	long long       version;     /* of cur; -1 none */
	time_t          checked;     /* monotonic s of the last look, 0 never */
	unsigned        check_s;     /* between looks */
	int             loading;     /* a thread is reading the store */
};

static time_t mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1;        /* never 0: 0 is "never looked" */
}

static void loaded_unref(struct loaded *l)
{
	if (l != NULL && --l->refs == 0) {
		free(l->w);
		free(l);
	}
}

struct chars_cache *chars_cache_new(unsigned check_s)
{
	struct chars_cache *c = xcalloc(1, sizeof(*c));

	c->check_s = check_s ? check_s : 1;

	pthread_mutex_init(&c->lock, NULL);
	c->version = -1;
	return c;
}

void chars_cache_free(struct chars_cache *c)
{
	if (c == NULL)
		return;
	loaded_unref(c->cur);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* refresh - look at the stored version; load the model if it changed.
 * Runs on one thread at a time, outside the lock (the store may be slow);
 * on a store failure the copy in hand stays. */
static void refresh(struct chars_cache *c, struct store *st, long long have)
{
	char v[32];
	long long version = -1;
	struct loaded *l = NULL;
	int r = store_get(st, VERSION_KEY, v, sizeof(v));

	if (r < 0)
		goto keep;
	if (r == 1)
		version = strtoll(v, NULL, 10);
	if (version == have)
		goto keep;
	if (version >= 0) {
		unsigned char *blob = NULL;
		size_t len = 0;

		if ((r = store_blob_get(st, MODEL_KEY, &blob, &len)) < 0)
			goto keep;
		if (r == 1) {
			l = xcalloc(1, sizeof(*l));
			l->w = xmalloc(CHARS_WEIGHTS * sizeof(*l->w));
			l->refs = 1;
			int form = chars_model_decode(blob, len, l->w, &l->nspam, &l->nham);

			if (form < 0) {
				slog(NULL, LOG_WARNING, "bayes: the stored character model is damaged; "
				     "\"mailwarden learn --rebuild\" trains it again");
				loaded_unref(l);
				l = NULL;
			} else if (form == 1)
				slog(NULL, LOG_NOTICE, "bayes: the stored character model has no header model "
				     "(trained by an older version); \"mailwarden learn --rebuild\" trains both");
		}
		free(blob);
	}
	pthread_mutex_lock(&c->lock);
	loaded_unref(c->cur);
	c->cur = l;
	c->version = version;
	c->loading = 0;
	pthread_mutex_unlock(&c->lock);
	return;
keep:
	pthread_mutex_lock(&c->lock);
	c->loading = 0;
	pthread_mutex_unlock(&c->lock);
}

int chars_cache_margin(struct chars_cache *c, struct store *st, unsigned min_spam, unsigned min_ham,
                       const unsigned char *msg, size_t len, double m[2])
{
	unsigned char ex[CHARS_PREFIX];
	struct loaded *l;
	time_t now = mono_s();
	long long have;
	int look = 0;

	pthread_mutex_lock(&c->lock);
	if (!c->loading && (c->checked == 0 || now - c->checked >= (time_t)c->check_s)) {
		c->loading = look = 1;
		c->checked = now;
	}
	have = c->version;
	pthread_mutex_unlock(&c->lock);
	if (look)
		refresh(c, st, have);
	pthread_mutex_lock(&c->lock);
	if ((l = c->cur) != NULL)
		l->refs++;
	pthread_mutex_unlock(&c->lock);
	if (l == NULL)
		return 0;
	if (l->nspam < min_spam || l->nham < min_ham || l->nspam == 0 || l->nham == 0) {
		pthread_mutex_lock(&c->lock);
		loaded_unref(l);
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	chars_margins(l->w, ex, chars_example(msg, len, ex), m);
	pthread_mutex_lock(&c->lock);
	loaded_unref(l);
	pthread_mutex_unlock(&c->lock);
	return 1;
}
