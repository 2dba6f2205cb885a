/* bayeskey_speed.c - what the Bayes message key costs a learned message:
 * bayes_msg_key (store_key_hash_bytes) against the 64-bit FNV-1a key of
 * before (bayes_msg_key_legacy), over the messages of the files given
 * (the corpus' training half: build/corpus-cache/even/train/{spam,ham}),
 * each in the form "mailwarden learn" gives it (msgfile_to_spool);
 * then, given a store's settings after "--", a store_get of an absent key:
 * the read added to each message learned for the first time (the old
 * key, looked up on a miss of the new one).  A benchmark, not a test: not
 * run by "make check".
 *
 * Build and run (from the top of the tree, after make): as
 * tests/bench/storekey_speed.c, then
 *   build/bayeskey_speed FILE... [-- store_path=/tmp/x.lmdb | -- store=redis store_redis=HOST:PORT]
 *
 * Each figure is the best of three runs (a busy machine only adds). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "filters/bayes.h"
#include "filters/filter_api.h"
#include "filters/msgfile.h"
#include "filters/store.h"
#include "proxy/config.h"
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"

#define REPS 200

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* slurp - the file as learn sees it (CRLF lines, no mbox "From " line),
 * or NULL */
static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	struct sbuf out;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0
	    || (p = malloc((size_t)n + 1)) == NULL || fread(p, 1, (size_t)n, f) != (size_t)n) {
		free(p);
		if (f != NULL)
			fclose(f);
		return NULL;
	}
	fclose(f);
	sbuf_init(&out, 64u << 20);
	msgfile_to_spool(p, (size_t)n, &out);
	free(p);
	*len = out.len;
	return (unsigned char *)out.data;
}

int main(int argc, char **argv)
{
	struct scan_request req;
	struct msgscan *ms;
	struct mw_ctx *ctx;
	unsigned char **msgs;
	char key[96], v[64], err[256];
	double best[2] = { 1e9, 1e9 }, t;
	unsigned sink = 0;
	int n = 0, i, dash = argc;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "--") == 0) {
			dash = i;
			break;
		}
	ms = calloc((size_t)dash, sizeof(*ms));
	ctx = calloc((size_t)dash, sizeof(*ctx));
	msgs = calloc((size_t)dash, sizeof(*msgs));
	memset(&req, 0, sizeof(req));
	for (i = 1; i < dash; i++) {
		size_t len;

		if ((msgs[n] = slurp(argv[i], &len)) == NULL)
			continue;
		ms[n].req = &req;
		ms[n].msg = msgs[n];
		ms[n].len = len;
		msgscan_parse(&ms[n]);
		ctx[n].ms = &ms[n];
		ctx[n].name = "bayes";
		n++;
	}
	if (n == 0) {
		fprintf(stderr, "usage: bayeskey_speed FILE... [-- name=value...]\n");
		return 2;
	}
	for (int rep = 0; rep < 3; rep++)
		for (int which = 0; which < 2; which++) {
			t = now();
			for (int r = 0; r < REPS; r++)
				for (i = 0; i < n; i++) {
					if (which == 0)
						bayes_msg_key_legacy(&ctx[i], key, sizeof(key));
					else if (bayes_msg_key(&ctx[i], key, sizeof(key)) < 0)
						return 1;
					sink += (unsigned char)key[12];
				}
			t = (now() - t) * 1e9 / ((double)REPS * n);
			best[which] = t < best[which] ? t : best[which];
		}
	printf("%d messages\nFNV-1a-64 key (before)   %6.0f ns a message\n"
	       "store_key_hash_bytes key %6.0f ns a message\n", n, best[0], best[1]);
	if (dash < argc - 1) {
		struct config *c = config_load(NULL, (const char **)(argv + dash + 1),
		                               (size_t)(argc - dash - 1), err, sizeof(err));
		struct store *s = c != NULL ? store_open(c, err, sizeof(err)) : NULL;
		double b = 1e9;

		if (s == NULL) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		for (int rep = 0; rep < 3; rep++) {
			int m = 20000;

			t = now();
			for (i = 0; i < m; i++) {
				snprintf(key, sizeof(key), "bayes:seen:%016x", (unsigned)i * 2654435761u);
				sink += (unsigned)store_get(s, key, v, sizeof(v));
			}
			t = (now() - t) * 1e9 / m;
			b = t < b ? t : b;
		}
		printf("%s store_get (absent)  %8.0f ns\n", store_backend(s), b);
		store_close(s);
		config_unref(c);
	}
	for (i = 0; i < n; i++) {
		msgscan_free(&ms[i]);
		free(msgs[i]);
	}
	free(ms);
	free(ctx);
	free(msgs);
	return (int)(sink & 0);
}
