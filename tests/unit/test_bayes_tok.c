/* test_bayes_tok.c - the Bayes tokenizer (filters/bayes_tok.c) over
 * messages the fuzzers found, and the message keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "filters/bayes.h"
#include "filters/filter_api.h"
#include "proxy/scanproto.h"

/* a parsed message and the bayes filter's context over it; undone by
 * mw_ctx_end and msgscan_free */
static void open_msg(const char *msg, size_t len, struct scan_request *req, struct msgscan *ms,
                     struct mw_ctx *ctx)
{
	memset(req, 0, sizeof(*req));
	memset(ms, 0, sizeof(*ms));
	ms->req = req;
	ms->msg = (const unsigned char *)msg;
	ms->len = len;
	msgscan_parse(ms);
	memset(ctx, 0, sizeof(*ctx));
	ctx->ms = ms;
	ctx->name = "bayes";
}

static size_t tokens_of(const char *msg, size_t len)
{
	struct scan_request req;
	struct msgscan ms;
	struct mw_ctx ctx;
	struct bayes_tokens t = { 0 };
	size_t n;

	open_msg(msg, len, &req, &ms, &ctx);
	bayes_tokenize(&ctx, &t);
	n = t.n;
	for (size_t i = 1; i < t.n; i++)
		assert_true(t.h[i - 1] < t.h[i]);
	bayes_tokens_free(&t);
	mw_ctx_end(&ctx);
	msgscan_free(&ms);
	return n;
}

/* fuzz_bayes found this: a message that gives no token left the token
 * array NULL, and it was still handed to qsort (undefined behaviour: the
 * SANITIZE=1 build stops on it) */
static void test_no_token(void **state)
{
	static const char msg[] = "X: a\r\n\r\n";

	(void)state;
	assert_int_equal(tokens_of(msg, sizeof(msg) - 1), 0);
}

static void test_some_tokens(void **state)
{
	static const char msg[] = "Subject: cheap watches\r\n\r\nBuy cheap watches today\r\n";

	(void)state;
	assert_true(tokens_of(msg, sizeof(msg) - 1) >= 5);
}

/* both keys of a message (bayes_msg_key, bayes_msg_key_legacy) */
static void keys_of(const char *msg, size_t len, char *key, char *old)
{
	struct scan_request req;
	struct msgscan ms;
	struct mw_ctx ctx;

	open_msg(msg, len, &req, &ms, &ctx);
	assert_int_equal(bayes_msg_key(&ctx, key, 64), 0);
	bayes_msg_key_legacy(&ctx, old, 64);
	mw_ctx_end(&ctx);
	msgscan_free(&ms);
}

/* Two local parts found with tests/bench/fnv1a_collide.c "mid<" (the old
 * key hashed "mid" then the Message-ID, no separator): one FNV-1a-64
 * state after "mid<" and them, so any common rest keeps them equal.
 * Under the old key a message with the one was "already learned" when
 * the other was, and relearning or forgetting it moved the other's. */
#define MID_A "3i5beq2bsee2e"
#define MID_B "ruvdim2aeptyi"

static void test_msg_key_fnv_collision(void **state)
{
	static const char a[] = "Message-ID: <" MID_A "@example.org>\r\nSubject: a\r\n\r\nbody\r\n";
	static const char b[] = "Message-ID: <" MID_B "@example.org>\r\nSubject: b\r\n\r\nother\r\n";
	char ka[64], oa[64], kb[64], ob[64];

	(void)state;
	keys_of(a, sizeof(a) - 1, ka, oa);
	keys_of(b, sizeof(b) - 1, kb, ob);
	assert_string_equal(oa, ob);                     /* one key before */
	assert_string_equal(oa, "bayes:seen:62ebc802c5714204");
	assert_string_not_equal(ka, kb);
	assert_int_equal(strlen(ka), 11 + STORE_HASH_HEX);
	/* pinned: store_key_hash_bytes of "mid" and the Message-ID */
	assert_string_equal(ka, "bayes:seen:6b08e2b7cb7d96cbf79ee9f1dca1b6d1");
}

/* without a Message-ID (or one too short) the whole message, every byte
 * counting: the case, and what follows a NUL */
static void test_msg_key_content(void **state)
{
	static const char a[] = "Message-ID: <>\r\nSubject: x\r\n\r\nbody\0one\r\n";
	static const char b[] = "Message-ID: <>\r\nSubject: x\r\n\r\nbody\0two\r\n";
	static const char c[] = "Message-ID: <>\r\nSubject: x\r\n\r\nBody\0one\r\n";
	char ka[64], oa[64], kb[64], ob[64], kc[64], oc[64];

	(void)state;
	keys_of(a, sizeof(a) - 1, ka, oa);
	keys_of(b, sizeof(b) - 1, kb, ob);
	keys_of(c, sizeof(c) - 1, kc, oc);
	assert_string_not_equal(ka, kb);
	assert_string_not_equal(ka, kc);
	assert_string_not_equal(kb, kc);
	assert_string_not_equal(oa, ob);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_token),
		cmocka_unit_test(test_some_tokens),
		cmocka_unit_test(test_msg_key_fnv_collision),
		cmocka_unit_test(test_msg_key_content),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
