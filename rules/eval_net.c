/* eval_net.c - eval: functions over DNS blocklists (SpamAssassin's DNSEval check_rbl*, URIDNSBL). */
#include "rules/eval.h"

static const struct eval_def defs[] = {
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_net = {
	.name = "net",
	.defs = defs,
};
