/* rules_facts.h - what the rules filter tells eval: functions about other
 * filters' verdicts and the session (rules/eval.h, eval_fact keys other
 * than "dns:").  Owned by the facts area (eval_facts.c asks, this answers). */
#ifndef MW_RULES_FACTS_H
#define MW_RULES_FACTS_H

#include <stddef.h>

struct mw_ctx;

/* the value of key for this message, written to buf if it has to be
 * made; NULL when unknown.  The result is valid until the next call. */
const char *rules_fact(struct mw_ctx *ctx, const char *key, char *buf, size_t buflen);

#endif
