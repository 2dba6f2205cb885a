/* bayes_sample.c - which of a message's tokens count when not all of
 * them may: scoring keeps BAYES_MAX_TOKENS, autolearn counts
 * BAYES_AUTOLEARN_MAX_TOKENS (bayes.h).
 *
 * Until session 21 both kept the tokens of the lowest hashes.  The hash
 * (64-bit FNV-1a, bayes_tok.c) is public and unkeyed, so a spammer
 * chose the sample: 3,000 words hashing low (found in 0.2 s) appended to
 * a spam made autolearn count them and none of the spam's own words, and
 * 20,000 kept Bayes from seeing any of them (review rv-today3).  The
 * order is now the tokens' SipHash-2-4 under a secret of the store
 * ("bayes:sample_key", 128 random bits made by the first process that
 * needs it): the same sample for every process sharing the store, so
 * that a forget or a relearn takes off exactly what autolearn counted,
 * and one no sender can compute.  The token hashes themselves (the
 * store's keys) are unchanged. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/random.h>

#include "filters/bayes.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"

#define SAMPLE_KEY "bayes:sample_key"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
	} while (0)

uint64_t bayes_sample_rank(const struct bayes_sample_key *k, uint64_t h)
{
	/* SipHash-2-4 of the 8 bytes of h (little-endian), as the reference
	 * implementation computes it for an 8-byte message */
	uint64_t v0 = k->k0 ^ 0x736f6d6570736575ULL, v1 = k->k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k->k0 ^ 0x6c7967656e657261ULL, v3 = k->k1 ^ 0x7465646279746573ULL;
	uint64_t last = (uint64_t)8 << 56;

	v3 ^= h;
	SIPROUND;
	SIPROUND;
	v0 ^= h;
	v3 ^= last;
	SIPROUND;
	SIPROUND;
	v0 ^= last;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* parse_key - 32 hex digits into k: 0, or -1 */
static int parse_key(const char *v, struct bayes_sample_key *k)
{
	char half[17];
	char *end;

	if (strlen(v) != 32 || strspn(v, "0123456789abcdef") != 32)
		return -1;
	memcpy(half, v, 16);
	half[16] = '\0';
	k->k0 = strtoull(half, &end, 16);
	memcpy(half, v + 16, 16);
	k->k1 = strtoull(half, &end, 16);
	return 0;
}

int bayes_sample_key(struct store *st, struct bayes_sample_key *k)
{
	char v[64];
	unsigned char rnd[16];
	int r, tries;

	for (tries = 0; tries < 2; tries++) {
		if ((r = store_get(st, SAMPLE_KEY, v, sizeof(v))) < 0)
			return -1;
		if (r == 1) {
			if (parse_key(v, k) == 0)
				return 0;
			/* not ours: replacing it would change every sample, and
			 * forgets would take off what autolearn never counted */
			slog(NULL, LOG_ERR, "bayes: %s in the store is not 32 hex digits: the "
			     "tokens of long messages not chosen (remove it to make a new one)", SAMPLE_KEY);
			return -1;
		}
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
			slog_errno(NULL, LOG_ERR, "bayes: getrandom");
			return -1;
		}
		for (size_t i = 0; i < sizeof(rnd); i++)
			snprintf(v + 2 * i, 3, "%02x", rnd[i]);
		/* made once: a process that made one at the same time finds
		 * the other's there and takes it */
		if ((r = store_swap(st, SAMPLE_KEY, NULL, v, 0)) < 0)
			return -1;
		if (r == 1)
			return parse_key(v, k);
	}
	return -1;
}

struct ranked {
	uint64_t rank, h;
};

static int by_rank(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	return x->h < y->h ? -1 : x->h > y->h;
}

static int by_hash(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void bayes_tokens_cut(struct bayes_tokens *t, const struct bayes_sample_key *k, size_t max)
{
	struct ranked *r;
	size_t i;

	if (t->n <= max)
		return;
	r = xcalloc(t->n, sizeof(*r));
	for (i = 0; i < t->n; i++) {
		r[i].h = t->h[i];
		r[i].rank = bayes_sample_rank(k, t->h[i]);
	}
	qsort(r, t->n, sizeof(*r), by_rank);
	for (i = 0; i < max; i++)
		t->h[i] = r[i].h;
	t->n = max;
	free(r);
	/* sorted by hash again, as bayes_tokens are */
	qsort(t->h, t->n, sizeof(*t->h), by_hash);
}

int bayes_tokens_keep(struct store *st, struct bayes_tokens *t, size_t max)
{
	struct bayes_sample_key k;

	if (t->n <= max)
		return 0;               /* no choice to make: no key needed */
	if (bayes_sample_key(st, &k) < 0)
		return -1;
	bayes_tokens_cut(t, &k, max);
	return 0;
}

void bayes_tokens_copy(struct bayes_tokens *dst, const struct bayes_tokens *src)
{
	dst->n = dst->cap = src->n;
	dst->h = src->n ? xmalloc(src->n * sizeof(*dst->h)) : NULL;
	if (src->n)
		memcpy(dst->h, src->h, src->n * sizeof(*dst->h));
}
