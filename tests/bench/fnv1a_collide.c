/* fnv1a_collide.c - two 13-character strings of [a-z2-7] with one 64-bit
 * FNV-1a state after them, from the state after PREFIX: how the colliding
 * senders of tests/functional/test_greylist.py (GL_*, RL_*) were found, to
 * show that the greylist and rate limit keys of before (session 11 and
 * earlier) were forgeable.  A parallel-collision search with
 * distinguished points (van Oorschot and Wiener): chains of f(x) = FNV-1a
 * of x spelt in base 32, ended where the low 18 bits of the state are 0;
 * two chains ending at one point are walked again to where they meet.
 * About 2^32 steps (1-5 minutes on one core), memory a few MB.  Not run by
 * "make check".
 *
 * Build and run:
 *   cc -O2 -o build/fnv1a_collide tests/bench/fnv1a_collide.c
 *   build/fnv1a_collide ""                              (rate limits)
 *   build/fnv1a_collide "$(printf '127.0.0.0/24\xff')"  (greylisting from 127.0.0.1)
 *   build/fnv1a_collide "mid<"                          (Bayes Message-IDs "<A@...>")
 * prints "A B STATE STEPS"; any common suffix ("@example.org") keeps A and
 * B colliding. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define P 0x100000001b3ULL
#define DPBITS 18
#define LEN 13
static const char alpha[] = "abcdefghijklmnopqrstuvwxyz234567";
static uint64_t S0;

static void enc(uint64_t x, char *s)
{
	for (int i = 0; i < LEN; i++) { s[i] = alpha[x & 31]; x >>= 5; }
	s[LEN] = 0;
}
static inline uint64_t f(uint64_t x)
{
	uint64_t h = S0;
	for (int i = 0; i < LEN; i++) { h = (h ^ (unsigned char)alpha[x & 31]) * P; x >>= 5; }
	return h;
}
struct ent { uint64_t dp, start, len; };
#define TB (1u << 20)
static struct ent tab[TB];

static uint64_t rnd(void)
{
	static uint64_t s = 0;
	if (!s) s = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)clock();
	s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s;
}

int main(int argc, char **argv)
{
	const char *pre = argc > 1 ? argv[1] : "";
	uint64_t h = 0xcbf29ce484222325ULL, steps = 0;
	for (const char *p = pre; *p; p++) h = (h ^ (unsigned char)*p) * P;
	S0 = h;
	for (;;) {
		uint64_t x0 = rnd(), x = x0, n = 0;
		while ((x & ((1u << DPBITS) - 1)) != 0 && n < (20u << DPBITS)) { x = f(x); n++; }
		steps += n;
		if (n >= (20u << DPBITS)) continue;
		uint32_t i = (uint32_t)(x >> DPBITS) & (TB - 1);
		while (tab[i].len && tab[i].dp != x) i = (i + 1) & (TB - 1);
		if (!tab[i].len) { tab[i] = (struct ent){ x, x0, n }; continue; }
		uint64_t a = tab[i].start, la = tab[i].len, b = x0, lb = n;
		while (la > lb) { a = f(a); la--; }
		while (lb > la) { b = f(b); lb--; }
		if (a == b) continue;   /* one chain inside the other */
		while (f(a) != f(b)) { a = f(a); b = f(b); }
		if (a == b) continue;
		char sa[LEN + 1], sb[LEN + 1];
		enc(a, sa); enc(b, sb);
		if (strcmp(sa, sb) == 0) continue;
		printf("%s %s %016llx steps=%llu\n", sa, sb, (unsigned long long)f(a),
		       (unsigned long long)steps);
		fflush(stdout);
		return 0;
	}
}
