/* rules_net.c - DNS lookups for eval: rules (see rules_net.h).  No
 * network eval function is loaded yet, so nothing is ever asked. */
#include <stddef.h>
#include "filters/rules_net.h"

struct rules_net *rules_net_resolve(struct mw_ctx *ctx, const struct ruleset *rs, struct rules_scratch *scr,
                                    const struct rules_input *in, unsigned timeout_ms)
{
	(void)ctx; (void)rs; (void)scr; (void)in; (void)timeout_ms;
	return NULL;
}

const char *rules_net_answer(struct rules_net *n, const char *key)
{
	(void)n; (void)key;
	return NULL;
}

void rules_net_free(struct rules_net *n)
{
	(void)n;
}
