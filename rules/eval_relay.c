/* eval_relay.c - eval: functions over the Received chain and trust path
 * (SpamAssassin's RelayEval, X-Spam-Relays-* pseudo-headers).
 *
 * So far only the hop from the SMTP client to us is known (when the bridge
 * gives the client's address); Received fields are not parsed yet. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rules/eval.h"
#include "rules/eval_relay.h"

static void relays_free(void *p)
{
	struct eval_relays *r = p;
	if (!r) return;
	free(r->relay);
	free(r);
}

const struct eval_relays *eval_relays(struct eval_msg *m)
{
	struct eval_relays *rl = eval_cache_get(m, EVC_RELAYS);
	if (rl) return rl;
	rl = calloc(1, sizeof *rl);
	if (!rl) abort();
	if (m->in->client_ip && *m->in->client_ip) {
		rl->relay = calloc(1, sizeof *rl->relay);
		if (!rl->relay) abort();
		struct eval_relay *r = &rl->relay[0];
		snprintf(r->ip, sizeof r->ip, "%s", m->in->client_ip);
		if (m->in->client_name) snprintf(r->rdns, sizeof r->rdns, "%s", m->in->client_name);
		if (m->in->helo) snprintf(r->helo, sizeof r->helo, "%s", m->in->helo);
		rl->n = 1;
	}
	eval_cache_set(m, EVC_RELAYS, rl, relays_free);
	return rl;
}

static const struct eval_def defs[] = {
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_relay = {
	.name = "relay",
	.defs = defs,
};
