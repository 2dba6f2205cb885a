/* fuzz_html.c - libFuzzer target for rules/html_stats.c (SpamAssassin's
 * HTML statistics): any bytes as an HTML part, parsed as characters and
 * as bytes; besides the sanitizers, the results must stay within their
 * documented bounds.
 *
 * Build and run (from the top of the tree):
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. -Iinclude \
 *     tests/fuzz/fuzz_html.c rules/html_stats.c -lm -o build/fuzz/fuzz_html
 *   build/fuzz/fuzz_html -max_total_time=60 -max_len=4096 build/fuzz/corpus-html
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "rules/html_stats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int utf8 = 0; utf8 < 2; utf8++) {
		struct html_stats *st = html_stats_parse((const char *)data, size, utf8);
		if (st->closed_extra > st->tags || st->elements_seen > st->tags_seen || st->ntags > HTML_MAX_TAGNAMES ||
		    st->non_space_len > st->html_length || st->comment.n > HTML_MAX_ITEMS || st->nanchors > HTML_MAX_ITEMS)
			abort();
		for (size_t i = 0; i < st->ntags; i++)
			if (st->tagv[i].inside < 0) abort();
		html_stats_free(st);
	}
	return 0;
}
