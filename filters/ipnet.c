/* ipnet.c - client networks and CIDR lists (ipnet.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/ipnet.h"

int ipnet_parse(const char *s, struct ipnet *out)
{
	char buf[64], *slash;
	unsigned max, mapped_net = 0;

	memset(out, 0, sizeof(*out));
	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = 4;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };

		if (memcmp(out->addr, mapped, 12) == 0) {
			memmove(out->addr, out->addr + 12, 4);
			memset(out->addr + 4, 0, 12);
			out->family = 4;
			max = 32;
			/* "::ffff:10.0.0.0/104" is 10.0.0.0/8 written as IPv6 */
			mapped_net = 1;
		} else {
			out->family = 6;
			max = 128;
		}
	} else
		return -1;
	out->bits = max;
	if (slash != NULL) {
		char *end;
		long b = strtol(slash + 1, &end, 10);

		if (mapped_net && b >= 96 && b <= 128)
			b -= 96;
		else if (mapped_net)
			return -1;	/* wider than the mapped space: no IPv4 meaning */
		if (*end != '\0' || slash[1] == '\0' || !isdigit((unsigned char)slash[1])
		    || b < 0 || b > (long)max)
			return -1;
		out->bits = (unsigned)b;
	}
	return 0;
}

int ipnet_contains(const struct ipnet *net, const struct ipnet *ip)
{
	unsigned full, rest;

	if (net->family != ip->family || net->family == 0)
		return 0;
	full = net->bits / 8;
	rest = net->bits % 8;
	if (memcmp(net->addr, ip->addr, full) != 0)
		return 0;
	if (rest != 0) {
		unsigned char mask = (unsigned char)(0xff << (8 - rest));

		if ((net->addr[full] & mask) != (ip->addr[full] & mask))
			return 0;
	}
	return 1;
}

int ipnet_client_net(const char *ip, char *out, size_t outsz)
{
	struct ipnet a;
	char txt[INET6_ADDRSTRLEN];

	if (ipnet_parse(ip, &a) < 0 || a.bits != (a.family == 4 ? 32u : 128u))
		return -1;
	if (a.family == 4) {
		snprintf(out, outsz, "%u.%u.%u.0/24", a.addr[0], a.addr[1], a.addr[2]);
		return 0;
	}
	memset(a.addr + 8, 0, 8);
	inet_ntop(AF_INET6, a.addr, txt, sizeof(txt));
	snprintf(out, outsz, "%s/64", txt);
	return 0;
}

int ipnet_canon(const char *ip, char *out, size_t outsz)
{
	struct ipnet a;

	/* Sendmail's {client_addr} and XCLIENT write "IPv6:2001:db8::1" */
	if (strncasecmp(ip, "IPv6:", 5) == 0)
		ip += 5;
	if (strchr(ip, '/') != NULL || ipnet_parse(ip, &a) < 0)
		return -1;
	return inet_ntop(a.family == 4 ? AF_INET : AF_INET6, a.addr, out, (socklen_t)outsz) != NULL ? 0 : -1;
}

int ipnet_limit_key(const char *ip, char *out, size_t outsz)
{
	struct ipnet a;

	if (ipnet_parse(ip, &a) < 0 || a.bits != (a.family == 4 ? 32u : 128u))
		return -1;
	if (a.family == 6)
		return ipnet_client_net(ip, out, outsz);
	return inet_ntop(AF_INET, a.addr, out, (socklen_t)outsz) != NULL ? 0 : -1;
}
