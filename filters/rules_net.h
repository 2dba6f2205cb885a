/* rules_net.h - the DNS lookups eval: rules need for one message
 * (rules_net_queries in rules/rules.h), done through the shared DNS layer
 * before the rules run, answered as "dns:A:<name>" / "dns:TXT:<name>"
 * facts.  Owned by the network-tests area (eval_net.c). */
#ifndef MW_RULES_NET_H
#define MW_RULES_NET_H

struct mw_ctx;
struct ruleset;
struct rules_scratch;
struct rules_input;
struct rules_net;

/* look up what the message's eval rules want, within timeout_ms; NULL when
 * nothing was asked (or no DNS layer) */
struct rules_net *rules_net_resolve(struct mw_ctx *ctx, const struct ruleset *rs, struct rules_scratch *scr,
                                    const struct rules_input *in, unsigned timeout_ms);
/* the answer for a "dns:..." key, or NULL (not asked, or no answer in time) */
const char *rules_net_answer(struct rules_net *n, const char *key);
void rules_net_free(struct rules_net *n);

#endif
