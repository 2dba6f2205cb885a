/* eval_relay.c - eval: functions over the Received chain and trust path (SpamAssassin's RelayEval, X-Spam-Relays-*). */
#include "rules/eval.h"

static const struct eval_def defs[] = {
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_relay = {
	.name = "relay",
	.defs = defs,
};
