/* storekey_speed.c - nanoseconds per greylist key: the 64-bit FNV-1a key
 * of before (filters/greylist.c, legacy_key) against store_key_hash, over
 * a million triplets; then, given a store's settings, a store_get and a
 * store_set of such a key, the round trips a key sits beside.  A
 * benchmark, not a test: not run by "make check".
 *
 * Build and run (from the top of the tree, after make):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Iinclude -I. $(pkg-config --cflags json-c inih \
 *     openssl lmdb hiredis) tests/bench/storekey_speed.c build/libmw.a \
 *     $(pkg-config --libs libevent libevent_pthreads json-c inih openssl libunbound \
 *     opendkim libpsl libclamav gmime-3.0 libmagic libarchive libhs libpcre2-8 lmdb \
 *     hiredis milter) -lspf2 -lopendmarc -lpthread -ldl -lm -o build/storekey_speed
 *   build/storekey_speed [store_path=/tmp/x.lmdb | store=redis store_redis=HOST:PORT]
 *
 * Each figure is the best of three runs (a busy machine only adds). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "filters/store.h"
#include "proxy/config.h"

#define N 1000000

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void legacy_key(const char *const *parts, char *out, size_t outsz)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (int k = 0; k < 3; k++) {
		for (const char *p = parts[k]; *p; p++) {
			unsigned char c = (unsigned char)*p;

			h ^= (c >= 'A' && c <= 'Z') ? c + 32 : c;
			h *= 0x100000001b3ULL;
		}
		h ^= 0xff;
		h *= 0x100000001b3ULL;
	}
	snprintf(out, outsz, "gl:%016llx", (unsigned long long)h);
}

int main(int argc, char **argv)
{
	static char senders[1000][48];
	char key[96], v[64], err[256];
	double best[2] = { 1e9, 1e9 }, t;
	unsigned sink = 0;

	for (int i = 0; i < 1000; i++)
		snprintf(senders[i], sizeof(senders[i]), "s%d-bounces@lists.example.org", i);
	for (int rep = 0; rep < 3; rep++)
		for (int which = 0; which < 2; which++) {
			t = now();
			for (int i = 0; i < N; i++) {
				const char *f[3] = { "192.0.2.0/24", senders[i % 1000], "someone@example.net" };

				if (which == 0)
					legacy_key(f, key, sizeof(key));
				else if (store_key_hash("gl:", f, 3, key, sizeof(key)) < 0)
					return 1;
				sink += (unsigned char)key[4];
			}
			t = (now() - t) * 1e9 / N;
			best[which] = t < best[which] ? t : best[which];
		}
	printf("FNV-1a-64 key (before)   %6.0f ns\nstore_key_hash key       %6.0f ns\n", best[0], best[1]);
	if (argc > 1) {
		struct config *c = config_load(NULL, (const char **)(argv + 1), (size_t)(argc - 1), err, sizeof(err));
		struct store *s = c != NULL ? store_open(c, err, sizeof(err)) : NULL;
		int m;

		if (s == NULL) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		store_set(s, key, "P1", 60);
		for (int op = 0; op < 2; op++) {
			m = op == 0 ? 20000 : 200;
			t = now();
			for (int i = 0; i < m; i++) {
				if (op == 0)
					sink += (unsigned)store_get(s, key, v, sizeof(v));
				else {
					snprintf(v, sizeof(v), "gl:speed%d", i);
					sink += (unsigned)store_set(s, v, "F1", 60);
				}
			}
			printf("%s %s  %8.0f ns\n", store_backend(s), op == 0 ? "store_get" : "store_set",
			       (now() - t) * 1e9 / m);
		}
		store_close(s);
		config_unref(c);
	}
	return (int)(sink & 0);
}
