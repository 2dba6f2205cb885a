/* test_bayes_tok.c - the Bayes tokenizer (filters/bayes_tok.c) over
 * messages the fuzzers found. */
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

static size_t tokens_of(const char *msg, size_t len)
{
	struct scan_request req;
	struct msgscan ms;
	struct mw_ctx ctx;
	struct bayes_tokens t = { 0 };
	size_t n;

	memset(&req, 0, sizeof(req));
	memset(&ms, 0, sizeof(ms));
	ms.req = &req;
	ms.msg = (const unsigned char *)msg;
	ms.len = len;
	msgscan_parse(&ms);
	memset(&ctx, 0, sizeof(ctx));
	ctx.ms = &ms;
	ctx.name = "bayes";
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_token),
		cmocka_unit_test(test_some_tokens),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
