/* dnsbl_code.h - what an A answer of a DNS blocklist means, shared by the
 * dnsbl filter (filters/dnsbl.c) and the rules' network tests
 * (rules/eval_net.c, filters/rules_net.c), so both read the answers the
 * same way.
 *
 * Not listings: anything outside 127.0.0.0/8 (a resolver that rewrites
 * NXDOMAIN, or garbage), 127.255.255.0/24 (Spamhaus: query refused,
 * public/open resolver, excessive use) and, for lists of domains,
 * 127.0.1.255 (Spamhaus DBL: "IP queries are not supported"; in IP lists
 * such as ISIPP's IADB the same code is a real answer). */
#ifndef MW_RULES_DNSBL_CODE_H
#define MW_RULES_DNSBL_CODE_H

enum dnsbl_verdict {
	DNSBL_LISTING = 0,    /* a real answer: match it against the list's codes */
	DNSBL_REFUSED,        /* the list refused the query or blocked the resolver */
	DNSBL_BOGUS,          /* not a blocklist answer at all (outside 127/8) */
};

static inline enum dnsbl_verdict dnsbl_code_verdict(const unsigned char a[4], int domain_list)
{
	if (a[0] != 127) return DNSBL_BOGUS;
	if (a[1] == 255 && a[2] == 255) return DNSBL_REFUSED;
	if (domain_list && a[1] == 0 && a[2] == 1 && a[3] == 255) return DNSBL_REFUSED;
	return DNSBL_LISTING;
}

#endif
