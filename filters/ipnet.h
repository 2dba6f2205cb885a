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
/* Translated IPv4 clients (nat64_prefixes).  Behind a stateless
 * translator (SIIT-DC, RFC 7755) or a NAT64 run in reverse, an IPv4 client
 * reaches us as an IPv6 address that carries its IPv4 address (RFC 6052):
 * that client is the IPv4 address for every check (SPF ip4:, DNSBLs, rDNS,
 * lists, limits).  The table is process-wide, set by config_load, and
 * ipnet_canon reads it; until a config sets it, it is 64:ff9b::/96. */
#define IPNET_XLAT_MAX 8
/* ipnet_xlat_parse - a nat64_prefixes value: up to IPNET_XLAT_MAX IPv6
 * prefixes of length 32, 40, 48, 56, 64 or 96 (RFC 6052 2.2), space or
 * comma separated, "" for none.  0, or -1 with a reason in err. */
int ipnet_xlat_parse(const char *list, struct ipnet *nets, size_t *n, char *err, size_t errlen);
/* ipnet_xlat_set - translate from now on with these prefixes (a list
 * ipnet_xlat_parse takes); safe while other threads translate.  0, or -1
 * (the table in use is kept). */
int ipnet_xlat_set(const char *list, char *err, size_t errlen);
/* ipnet_xlat_v4 - is the IPv6 address a6 an IPv4 client's behind a
 * translator?  1 with its IPv4 address in v4, else 0. */
int ipnet_xlat_v4(const unsigned char a6[16], unsigned char v4[4]);
/* ipnet_xlat_net - what a list entry net (written as IPv6) is once the
 * clients of the prefixes pfx[0..npfx) (ipnet_xlat_parse) are their IPv4
 * address: an entry an administrator writes inside a prefix
 * (64:ff9b::192.0.2.0/120) would otherwise never match the client it
 * names.  Returns
 *   1: the IPv4 network in v4 (/96+n is /n; below /96 the u-octet does
 *      not count), pfx[*which] the prefix; *keep6 = 1 when part of net
 *      is never translated (ipnet_xlat_v4: an excluded IPv4 range, or
 *      below /96 a u-octet or suffix left open), so net is needed as well;
 *   0: no translated client in net (outside every prefix, wider than one,
 *      u-octet or suffix set, or only addresses that stay IPv6);
 *  -1: net is a whole prefix pfx[*which] (every IPv4 client, once
 *      translated): what was meant cannot be told. */
int ipnet_xlat_net(const struct ipnet *pfx, size_t npfx, const struct ipnet *net,
                   struct ipnet *v4, int *keep6, size_t *which);
/* ipnet_private - loopback, RFC 1918, link-local (169.254/16, fe80::/10)
 * or ULA (fc00::/7): 1 or 0 (the unspecified address, a wildcard, is 0).
 * a is an address (bits ignored). */
int ipnet_private(const struct ipnet *a);

/* ipnet_limit_key - what a per-client limit counts: the IPv4 address, or
 * the IPv6 /64 (one subscriber or server gets a whole /64 and can rotate
 * through it at will).  0, or -1 if ip is not an address. */
int ipnet_limit_key(const char *ip, char *out, size_t outsz);

#endif
