/* eval_net.h - what the network-tests module (eval_net.c) and its DNS
 * bridge (filters/rules_net.c) agree on, beyond rules_net_queries().
 *
 * The module asks names through want(qname, rrtype) and reads the answers
 * as facts:
 *   "dns:A:<qname>"    addresses, space separated ("" = none)
 *   "dns:TXT:<qname>"  records, one a line: each record's text (its
 *                      strings concatenated) with a backslash, a line
 *                      break and a NUL escaped as backslash followed by
 *                      a backslash, 'n' and '0' (eval_net_txt_escape)
 *   "dns:NS:<qname>"   name server names, space separated
 *   "dns:status:<TYPE>:<qname>"  OK, NXDOMAIN, NODATA, SERVFAIL or TIMEOUT
 * (NULL = not asked, or no answer within the deadline).  A blocklist query
 * carries EVAL_NET_LIST in rrtype: its A answers are blocklist codes, and
 * the bridge drops (and logs) those that are not listings, as
 * eval_net_verdict() says, before the rules see them. */
#ifndef MW_RULES_EVAL_NET_H
#define MW_RULES_EVAL_NET_H

#include <stddef.h>

#include "rules/dnsbl_code.h"

struct ruleset;

#define EVAL_NET_LIST  0x10000   /* flag on rrtype: a blocklist query */
#define EVAL_NET_RRTYPE(t) ((t) & 0xffff)

/* what the A answer a (4 bytes) to the blocklist query qname means: the
 * shared code meanings (dnsbl_code.h; a lookup whose owner name is not a
 * reversed address is a domain list) and the rule files' dns_block_rule
 * lines (an answer that the named rule's subtest accepts, for that zone,
 * means the query was refused: URIBL's 127.0.0.1, SURBL's bit 1). */
enum dnsbl_verdict eval_net_verdict(const struct ruleset *rs, const char *qname, const unsigned char a[4]);

/* eval_net_txt_escape - the text of one TXT record (len bytes, any byte)
 * as a line of a "dns:TXT:" fact into out, which has room for 2 * len + 1
 * bytes; returns the line's length (out is NUL-terminated) */
size_t eval_net_txt_escape(const char *text, size_t len, char *out);

/* eval_net_domain_valid - host is a domain SpamAssassin's
 * RegistryBoundaries::is_domain_valid accepts: a dot and a known top-level
 * domain after the last one (rs's util_rb_tld lines; without them, or
 * without rs, any alphabetic one) */
int eval_net_domain_valid(const struct ruleset *rs, const char *host);

#endif
