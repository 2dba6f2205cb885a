/* netaddr.c - parse, resolve and bind the addresses of the config. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "netaddr.h"
#include "filters/ipnet.h"

int netaddr_parse(const char *spec, int passive, struct netaddr *out, char *err, size_t errlen)
{
	char host[256];
	const char *port, *colon;
	size_t hlen;

	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (close == NULL || close[1] != ':') {
			snprintf(err, errlen, "'%s': expected [IPv6]:PORT", spec);
			return -1;
		}
		hlen = (size_t)(close - spec - 1);
		if (hlen >= sizeof host) goto toolong;
		memcpy(host, spec + 1, hlen);
		port = close + 2;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "'%s': expected HOST:PORT", spec);
			return -1;
		}
		hlen = (size_t)(colon - spec);
		if (hlen >= sizeof host) goto toolong;
		memcpy(host, spec, hlen);
		port = colon + 1;
	}
	host[hlen] = '\0';

	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	hints.ai_family = AF_UNSPEC;
	const char *node = host;
	if (strcmp(host, "*") == 0 || host[0] == '\0') {
		node = NULL;
		hints.ai_family = AF_INET6;
		hints.ai_flags |= AI_PASSIVE;
	}
	int rc = getaddrinfo(node, port, &hints, &res);
	if (rc != 0 || res == NULL) {
		snprintf(err, errlen, "'%s': %s", spec, rc ? gai_strerror(rc) : "no address");
		return -1;
	}
	memset(out, 0, sizeof *out);
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
toolong:
	snprintf(err, errlen, "'%.64s...': host name too long", spec);
	return -1;
}

const char *netaddr_ip(const struct sockaddr *sa, char *buf, size_t bufsz, unsigned *port)
{
	buf[0] = '\0';
	if (port) *port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)bufsz);
		if (port) *port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf, (socklen_t)bufsz);
		else
			inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)bufsz);
		if (port) *port = ntohs(in6->sin6_port);
	}
	return buf;
}

int netaddr_client(struct sockaddr_storage *ss)
{
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
	struct sockaddr_in in;
	unsigned char v4[4];

	if (ss->ss_family != AF_INET6 || !ipnet_xlat_v4(in6->sin6_addr.s6_addr, v4))
		return 0;
	memset(&in, 0, sizeof in);
	in.sin_family = AF_INET;
	in.sin_port = in6->sin6_port;
	memcpy(&in.sin_addr, v4, 4);
	memset(ss, 0, sizeof *ss);
	memcpy(ss, &in, sizeof in);
	return 1;
}

const char *netaddr_client_ip(const struct sockaddr *sa, char *buf, size_t bufsz, unsigned *port)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof ss);
	memcpy(&ss, sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                : sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr));
	netaddr_client(&ss);
	return netaddr_ip((const struct sockaddr *)&ss, buf, bufsz, port);
}

int netaddr_listen(const struct netaddr *a, int backlog, int reuseport, char *err, size_t errlen)
{
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1, zero = 0;
	char ip[64];
	unsigned port;

	netaddr_ip((const struct sockaddr *)&a->ss, ip, sizeof ip, &port);
	if (fd < 0) goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) goto fail;
	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
		int any = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, any ? &zero : &one, sizeof one);
	}
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) goto fail;
	if (listen(fd, backlog) < 0) goto fail;
	return fd;
fail:
	snprintf(err, errlen, "listen on %s port %u: %s", ip, port, strerror(errno));
	if (fd >= 0) close(fd);
	return -1;
}

int netaddr_same(const struct netaddr *a, const struct sockaddr *sa)
{
	char ip1[64], ip2[64];
	unsigned p1 = 0, p2 = 0;
	netaddr_ip((const struct sockaddr *)&a->ss, ip1, sizeof ip1, &p1);
	netaddr_ip(sa, ip2, sizeof ip2, &p2);
	if (p1 != p2) return 0;
	return strcmp(ip1, ip2) == 0 || strcmp(ip1, "::") == 0 || strcmp(ip1, "0.0.0.0") == 0;
}

/* interface_address - ip (netaddr_ip form) is an address of one of this
 * host's interfaces (getifaddrs) */
static int interface_address(const char *ip)
{
	struct ifaddrs *ifs, *ifa;
	char have[64];
	int found = 0;

	if (getifaddrs(&ifs) < 0)
		return 0;
	for (ifa = ifs; ifa != NULL && !found; ifa = ifa->ifa_next)
		if (ifa->ifa_addr != NULL && (ifa->ifa_addr->sa_family == AF_INET ||
		                              ifa->ifa_addr->sa_family == AF_INET6))
			found = strcmp(netaddr_ip(ifa->ifa_addr, have, sizeof have, NULL), ip) == 0;
	freeifaddrs(ifs);
	return found;
}

/* host_address - 1: ip is surely this host (loopback, unspecified);
 * 2: an interface's address, which a connect may still not reach here
 * (a VIP that IPVS or a local DNAT sends on to another machine; an IPv6
 * link-local address without its scope); 0 neither */
static int host_address(const char *ip)
{
	if (strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 || strcmp(ip, "0.0.0.0") == 0 ||
	    strcmp(ip, "::") == 0)
		return 1;
	return interface_address(ip) ? 2 : 0;
}

int netaddr_reaches(const struct netaddr *listen, const struct netaddr *dst)
{
	char lip[64], dip[64];
	unsigned lport, dport;

	netaddr_ip((const struct sockaddr *)&listen->ss, lip, sizeof lip, &lport);
	netaddr_ip((const struct sockaddr *)&dst->ss, dip, sizeof dip, &dport);
	if (lport != dport)
		return 0;
	if (strcmp(lip, dip) == 0)
		return 1;
	/* a connect to an unspecified address reaches the loopback one */
	if ((strcmp(dip, "0.0.0.0") == 0 && strcmp(lip, "127.0.0.1") == 0) ||
	    (strcmp(dip, "::") == 0 && strcmp(lip, "::1") == 0))
		return 1;
	if (strcmp(lip, "0.0.0.0") == 0)
		return strchr(dip, ':') == NULL ? host_address(dip) : 0;
	return strcmp(lip, "::") == 0 ? host_address(dip) : 0;
}
