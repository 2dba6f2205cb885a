/* proxyproto.h - the PROXY protocol header (HAProxy, versions 1 and 2) that
 * a load balancer puts in front of the client's bytes, and the lists of
 * networks it is accepted from.
 *
 * Only the header is parsed here; the listener reads it before a session
 * exists (listener.c), so the address it carries is the client address
 * everywhere: connection limits, logs, audit, scan request, XCLIENT. */
#ifndef MW_PROXYPROTO_H
#define MW_PROXYPROTO_H

#include <stddef.h>
#include <sys/socket.h>

#define PROXYPROTO_MAX 536      /* v1 is at most 107 octets; v2 16 + 520 here */

enum pp_result { PP_NEED_MORE = 0, PP_DONE = 1, PP_INVALID = -1 };

/* proxyproto_parse - p[0..len) is what the connection sent so far.
 * PP_DONE: *consumed octets are the header; *src and *dst got the addresses,
 * or ss_family AF_UNSPEC when the header carries none (v1 UNKNOWN, v2
 * LOCAL: a health check; keep the socket's own addresses).  PP_NEED_MORE:
 * not complete yet.  PP_INVALID: not a PROXY header (why: static text). */
enum pp_result proxyproto_parse(const unsigned char *p, size_t len, size_t *consumed,
                                struct sockaddr_storage *src, struct sockaddr_storage *dst,
                                const char **why);

/* netlist_check - "127.0.0.0/8 ::1 192.0.2.1/32 ..." parses.  0, or -1
 * with a reason in err. */
int netlist_check(const char *list, char *err, size_t errlen);
/* netlist_match - sa is in one of the networks of list (IPv4-mapped IPv6
 * addresses and translated ones, nat64_prefixes, match IPv4 networks).
 * 1 or 0. */
int netlist_match(const char *list, const struct sockaddr *sa);

#endif
