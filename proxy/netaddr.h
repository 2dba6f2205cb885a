/* netaddr.h - socket addresses as the config writes them: "127.0.0.1:25",
 * "[::1]:25", "*:25", "mx.example:25".  Names are resolved once, at start-up
 * or reload, never on the request path. */
#ifndef MW_NETADDR_H
#define MW_NETADDR_H

#include <sys/socket.h>
#include <stddef.h>

struct netaddr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* netaddr_parse - "HOST:PORT" -> address.  passive: "*" means any (IPv6
 * any, which also takes IPv4 unless the system forbids it).  Names are
 * resolved with getaddrinfo (blocking).  0, or -1 with a reason in err. */
int netaddr_parse(const char *spec, int passive, struct netaddr *out, char *err, size_t errlen);
/* netaddr_ip - numeric host part into buf ("192.0.2.1", "2001:db8::1"; IPv4-
 * mapped IPv6 shown as IPv4), returns buf; *port gets the port if non-NULL */
const char *netaddr_ip(const struct sockaddr *sa, char *buf, size_t bufsz, unsigned *port);
/* netaddr_client - a client's socket address as the checks are to see
 * it: one of nat64_prefixes (a translated IPv4 client, ipnet_xlat_v4)
 * becomes the IPv4 address with the same port, in place.  1 if rewritten,
 * else 0.  Only for clients: a listener's, upstream's or original
 * destination's address is where we connect or listen, never translated. */
int netaddr_client(struct sockaddr_storage *ss);
/* netaddr_client_ip - netaddr_ip of the client address netaddr_client
 * makes of sa */
const char *netaddr_client_ip(const struct sockaddr *sa, char *buf, size_t bufsz, unsigned *port);
/* netaddr_listen - socket, SO_REUSEADDR (and SO_REUSEPORT if reuseport:
 * several sockets on one address, the kernel spreads connections over
 * them), IPV6_V6ONLY=0 for "*", bind, listen, non-blocking, close-on-exec.
 * fd, or -1 with a reason in err. */
int netaddr_listen(const struct netaddr *a, int backlog, int reuseport, char *err, size_t errlen);

/* netaddr_same - sa is the address a names: same port, and the same IP or
 * a is a wildcard ("*").  1 or 0. */
int netaddr_same(const struct netaddr *a, const struct sockaddr *sa);

/* netaddr_reaches - would a connection to dst land on a socket bound to
 * listen?  The same port, and the same IP (IPv4-mapped IPv6 as IPv4), or
 * listen a wildcard and dst an address of this host: loopback (all of
 * 127.0.0.0/8), an interface's (getifaddrs), or unspecified (a connect
 * to 0.0.0.0 or :: reaches the host itself); "0.0.0.0" takes IPv4 only,
 * "::" both (netaddr_listen sets IPV6_V6ONLY=0).  1 surely, 2 probably
 * (a wildcard listen and dst an interface's address: a VIP served by IPVS
 * or a local DNAT to another machine is on an interface too), 0 no. */
int netaddr_reaches(const struct netaddr *listen, const struct netaddr *dst);

#endif
