/* rules_net.h - the DNS lookups eval: rules need for one message
 * (rules_net_queries in rules/rules.h), done through the shared DNS layer
 * before the rules run, answered as "dns:A:<name>" / "dns:TXT:<name>"
 * (and "dns:NS:", "dns:MX:", "dns:status:<TYPE>:<name>", rules/eval_net.h)
 * facts.  Owned by the network-tests area (eval_net.c).
 *
 * The names are asked in rounds (a round may ask about what the previous
 * one answered: a URI domain's name servers, then their addresses, then
 * those addresses in a blocklist), each round's lookups in parallel, all
 * within one deadline.  Blocklist answers that are not listings (query
 * refused, blocked resolver, dns_block_rule codes) are logged, marked with
 * the score-0 symbol RULES_DNS_BLOCKED and never reach the rules; lookups
 * not answered in time give RULES_DNS_TIMEOUT (score 0) and count as not
 * listed. */
#ifndef MW_RULES_NET_H
#define MW_RULES_NET_H

struct mw_ctx;
struct dns;
struct ruleset;
struct rules_scratch;
struct rules_input;
struct rules_net;

#define RULES_NET_MAX_QUERIES 300   /* lookups per message */
#define RULES_NET_MAX_ROUNDS  4
#define RULES_NET_THREADS     16    /* lookups in flight at once for one message */

/* look up what the message's eval rules want through dns, all within
 * timeout_ms; NULL when nothing was asked (or dns is NULL: network tests
 * off) */
struct rules_net *rules_net_resolve(struct mw_ctx *ctx, struct dns *dns, const struct ruleset *rs,
                                    struct rules_scratch *scr, const struct rules_input *in, unsigned timeout_ms);
/* the answer for a "dns:..." key, or NULL (not asked, or no answer in time) */
const char *rules_net_answer(struct rules_net *n, const char *key);
void rules_net_free(struct rules_net *n);

#endif
