/* eval_facts.c - eval: functions over other filters' verdicts (Bayes, SPF, DKIM, DMARC) and lists (welcomelist, freemail). */
#include "rules/eval.h"

static const struct eval_def defs[] = {
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_facts = {
	.name = "facts",
	.defs = defs,
};
