/* rules_facts.c - answers eval: functions' questions about other filters'
 * verdicts (see rules_facts.h).  No fact is known yet. */
#include "filters/rules_facts.h"

const char *rules_fact(struct mw_ctx *ctx, const char *key, char *buf, size_t buflen)
{
	(void)ctx; (void)key; (void)buf; (void)buflen;
	return NULL;
}
