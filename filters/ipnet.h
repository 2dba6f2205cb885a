/* ipnet.h - client addresses as greylisting and rate limits see them:
 * the network a sender's retries come from (IPv4 /24, IPv6 /64: a
 * pool of outgoing servers rarely retries from the same address) and
 * CIDR pass lists. */
#ifndef MW_IPNET_H
#define MW_IPNET_H

#include <stddef.h>

struct ipnet {
	int           family;          /* 4 or 6; 0 = invalid */
	unsigned char addr[16];
	unsigned      bits;            /* prefix length */
};

/* ipnet_parse - "192.0.2.1", "192.0.2.0/24", "2001:db8::/32"; an
 * IPv4-mapped IPv6 address counts as IPv4.  0, or -1. */
int ipnet_parse(const char *s, struct ipnet *out);
/* ipnet_contains - is the address ip inside net? */
int ipnet_contains(const struct ipnet *net, const struct ipnet *ip);
/* ipnet_client_net - "192.0.2.0/24" or "2001:db8:1:2::/64" of an address
 * in text; 0, or -1 if ip is not an address. */
int ipnet_client_net(const char *ip, char *out, size_t outsz);

/* ipnet_canon - the one spelling of an address every filter, list and
 * store key sees: IPv4-mapped IPv6 as IPv4, IPv6 in RFC 5952 form (lower
 * case, zeros compressed), an "IPv6:" prefix dropped.  0, or -1 if ip is
 * not a single address. */
int ipnet_canon(const char *ip, char *out, size_t outsz);
/* ipnet_limit_key - what a per-client limit counts: the IPv4 address, or
 * the IPv6 /64 (one subscriber or server gets a whole /64 and can rotate
 * through it at will).  0, or -1 if ip is not an address. */
int ipnet_limit_key(const char *ip, char *out, size_t outsz);

#endif
