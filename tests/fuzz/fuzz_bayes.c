/* fuzz_bayes.c - libFuzzer target for the Bayes tokenizer
 * (filters/bayes_tok.c) over what it reads: the scanner's header field
 * parse of the message (msgscan_parse, filters/filter_api.c) and the
 * shared MIME parse (filters/mime.c, through mime_get as a filter gets it).
 * The input is a whole message, any bytes.
 *
 * Build and run: make fuzz FUZZ_TARGETS=bayes FUZZ_SECONDS=60
 *
 * Checks beyond the sanitizers: the tokens are sorted, distinct and at
 * most 4 x BAYES_MAX_TOKENS (bayes_tokens_keep cuts them to
 * BAYES_MAX_TOKENS: checked here with a fixed key, the cut sorted and a
 * subset); tokenizing is deterministic (the same message twice gives the
 * same tokens); the message key has its fixed form.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/bayes.h"
#include "filters/filter_api.h"
#include "proxy/scanproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "check failed: %s\n", #x); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scan_request req;
	struct msgscan ms;
	struct mw_ctx ctx;
	struct bayes_tokens a = { 0 }, b = { 0 };
	unsigned char *msg = malloc(size ? size : 1);
	char key[64];
	size_t i;

	memcpy(msg, data, size);
	memset(&req, 0, sizeof(req));
	memset(&ms, 0, sizeof(ms));
	ms.req = &req;
	ms.msg = msg;
	ms.len = size;
	msgscan_parse(&ms);
	CHECK(ms.body_off <= size);
	for (i = 0; i < ms.nfields; i++)
		CHECK(ms.fields[i].name != NULL && ms.fields[i].value != NULL);
	memset(&ctx, 0, sizeof(ctx));
	ctx.ms = &ms;
	ctx.name = "bayes";
	bayes_tokenize(&ctx, &a);
	CHECK(a.n <= 4 * BAYES_MAX_TOKENS);
	for (i = 1; i < a.n; i++)
		CHECK(a.h[i - 1] < a.h[i]);
	bayes_tokenize(&ctx, &b);
	CHECK(a.n == b.n && (a.n == 0 || memcmp(a.h, b.h, a.n * sizeof(*a.h)) == 0));
	{
		const struct bayes_sample_key k = { 0x0123456789abcdefULL, 0xfedcba9876543210ULL };
		size_t max = a.n / 2, j = 0;

		bayes_tokens_cut(&b, &k, max);
		CHECK(b.n == (a.n <= max ? a.n : max));
		for (i = 0; i < b.n; i++) {
			CHECK(i == 0 || b.h[i - 1] < b.h[i]);
			while (j < a.n && a.h[j] < b.h[i])
				j++;
			CHECK(j < a.n && a.h[j] == b.h[i]);
		}
	}
	CHECK(bayes_msg_key(&ctx, key, sizeof(key)) == 0);
	CHECK(strlen(key) == strlen("bayes:seen:") + STORE_HASH_HEX);
	bayes_msg_key_legacy(&ctx, key, sizeof(key));
	CHECK(strlen(key) == strlen("bayes:seen:") + 16);
	bayes_tokens_free(&a);
	bayes_tokens_free(&b);
	mw_ctx_end(&ctx);
	msgscan_free(&ms);
	free(msg);
	return 0;
}
