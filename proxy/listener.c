/* listener.c - accept client connections and apply the connection limits
 * (total, per client IP) before a session costs anything. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/listener.h>

#include "log.h"
#include "netaddr.h"
#include "proxy.h"
#include "sbuf.h"
#include "session.h"

#define IPC_BUCKETS 4096

struct ipcount_entry {
	char ip[64];
	unsigned n;
	struct ipcount_entry *next;
};

struct ipcount {
	struct ipcount_entry *b[IPC_BUCKETS];
};

static unsigned ip_hash(const char *ip)
{
	unsigned h = 2166136261u;           /* FNV-1a */
	for (; *ip; ip++) h = (h ^ (unsigned char)*ip) * 16777619u;
	return h % IPC_BUCKETS;
}

static struct ipcount_entry **ipc_find(struct ipcount *t, const char *ip)
{
	struct ipcount_entry **pp = &t->b[ip_hash(ip)];
	while (*pp && strcmp((*pp)->ip, ip) != 0) pp = &(*pp)->next;
	return pp;
}

unsigned ipcount_get(struct ipcount *t, const char *ip)
{
	if (t == NULL) return 0;
	struct ipcount_entry **pp = ipc_find(t, ip);
	return *pp ? (*pp)->n : 0;
}

void ipcount_inc(struct ipcount **tp, const char *ip)
{
	if (*tp == NULL) *tp = xcalloc(1, sizeof **tp);
	struct ipcount_entry **pp = ipc_find(*tp, ip);
	if (*pp == NULL) {
		*pp = xcalloc(1, sizeof **pp);
		snprintf((*pp)->ip, sizeof (*pp)->ip, "%s", ip);
	}
	(*pp)->n++;
}

void ipcount_dec(struct ipcount *t, const char *ip)
{
	if (t == NULL) return;
	struct ipcount_entry **pp = ipc_find(t, ip), *e = *pp;
	if (e == NULL) return;
	if (--e->n == 0) {
		*pp = e->next;
		free(e);
	}
}

/* Refuse a connection with one line, without a session. */
static void refuse(evutil_socket_t fd, const char *line)
{
	ssize_t w = write(fd, line, strlen(line));
	(void)w;
	evutil_closesocket(fd);
}

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct listener *ln = arg;
	struct proxy *px = ln->px;
	char ip[64];
	char line[400];

	netaddr_ip(sa, ip, sizeof ip, NULL);
	if (px->stopping) {
		snprintf(line, sizeof line, "421 4.3.2 %s Service shutting down\r\n", px->cfg->hostname);
		refuse(fd, line);
		return;
	}
	unsigned count;
	int rc = proxy_admit(px, ip, &count);
	if (rc == -1) {
		slog(NULL, LOG_WARNING, "refused [%s]: %u connections (max_connections)", ip, count);
		snprintf(line, sizeof line, "421 4.7.0 %s Error: too many connections\r\n", px->cfg->hostname);
		refuse(fd, line);
		return;
	}
	if (rc == -2) {
		slog(NULL, LOG_NOTICE, "refused [%s]: too many connections from this address", ip);
		snprintf(line, sizeof line, "421 4.7.0 %s Error: too many connections from %s\r\n",
		         px->cfg->hostname, ip);
		refuse(fd, line);
		return;
	}
	session_new(px, ln, fd, sa, salen);
}

static void accept_error_cb(struct evconnlistener *evl, void *arg)
{
	struct listener *ln = arg;
	int err = EVUTIL_SOCKET_ERROR();
	slog(NULL, LOG_WARNING, "accept on %s: %s", ln->cfg.name, evutil_socket_error_to_string(err));
	/* EMFILE and friends: the listener keeps going; the next accept retries */
}

int listener_start(struct proxy *px, struct listener *ln)
{
	ln->px = px;
	/* the master owns the socket (each loop has its own SO_REUSEPORT one) */
	ln->evl = evconnlistener_new(px->base, accept_cb, ln, 0, -1, ln->fd);
	if (ln->evl == NULL) return -1;
	evconnlistener_set_error_cb(ln->evl, accept_error_cb);
	return 0;
}

void listener_stop(struct listener *ln)
{
	if (ln->evl) evconnlistener_disable(ln->evl);
}
