/* addrlist.h - the domains of an RFC 5322 address list (From, To ...):
 * what DKIM signing and DMARC need to know of the From field.  Handles
 * display names, quoted strings, comments, angle addresses and groups;
 * no I/O; a field of 4 KB or more is copied to the heap (xmalloc). */
#ifndef MW_ADDRLIST_H
#define MW_ADDRLIST_H

#include <stddef.h>

#define ADDR_DOMAIN_MAX 254

/* addrlist_domains - the domain of each mailbox in value (an unfolded
 * field body, read whole, however long), lower case, without a final dot, into doms[0..max); a
 * mailbox without a usable domain, or that is no mailbox of RFC 5322
 * (not one addr-spec, or one display name and one <addr-spec>; a
 * group whose name is no phrase), gets "".  Returns the number of
 * mailboxes found (may exceed max: only max are stored). */
size_t addrlist_domains(const char *value, char doms[][ADDR_DOMAIN_MAX + 1], size_t max);

/* domain_ok - a DNS name of letters, digits, '-', '_' and dots, labels of
 * 1..63, at most 253 bytes, at least two labels */
int domain_ok(const char *d);

#endif
