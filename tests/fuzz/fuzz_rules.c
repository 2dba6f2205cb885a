/* fuzz_rules.c - libFuzzer target for rules/ (parser, meta expressions,
 * compiler, evaluator).  The input is split at its first NUL byte (or in
 * half): the first part is a rule file, the second a message body line
 * and header value the compiled rules are run on.  Besides the
 * sanitizers, a rule file that loads must compile, and scanning must end.
 *
 * Build and run (from the top of the tree):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. -Iinclude \
 *     $(pkg-config --cflags libhs libpcre2-8) tests/fuzz/fuzz_rules.c rules/[a-z]*.c \
 *     $(pkg-config --libs libhs libpcre2-8) -lstdc++ -lm -o build/fuzz/fuzz_rules
 *   build/fuzz/fuzz_rules -max_total_time=60 -max_len=2048 build/fuzz/corpus-rules
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "rules/rules.h"

static void on_hit(void *arg, const struct rules_hit *h) { (void)arg; (void)h; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t cut = nul ? (size_t)(nul - data) : size / 2;
	struct ruleset *rs = rules_new();
	char err[512];
	if (rules_load_text(rs, "fuzz.cf", (const char *)data, cut, err, sizeof err) == 0) {
		if (rules_compile(rs, NULL, err, sizeof err) != 0) abort();
		size_t n = size - cut - (nul ? 1 : 0);
		char *text = malloc(n + 1);
		memcpy(text, data + size - n, n);
		text[n] = '\0';
		for (size_t i = 0; i < n; i++) if (!text[i]) text[i] = ' ';
		struct rules_header h[2] = { { "Subject", text, NULL }, { "From", text, text } };
		const char *lines[1] = { text };
		size_t lens[1] = { n };
		struct rules_input in = { .headers = h, .nheaders = 2, .body = lines, .body_len = lens, .nbody = 1,
			.rawbody = lines, .rawbody_len = lens, .nrawbody = 1, .full = text, .full_len = n,
			.uris = lines, .nuris = 1, .time_budget_ms = 1000 };
		struct rules_scratch *s = rules_scratch_new(rs);
		if (s) rules_scan(rs, s, &in, on_hit, NULL);
		rules_scratch_free(s);
		free(text);
	}
	rules_free(rs);
	return 0;
}
