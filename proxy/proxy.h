/* proxy.h - the proxy process: listeners, sessions, and the links they
 * share (the scanner client, the upstream capability caches). */
#ifndef MW_PROXY_H
#define MW_PROXY_H

#include "episode.h"
#include <event2/event.h>
#include <sys/un.h>

#include "config.h"
#include "upstream.h"

struct session;
struct scanclient;
struct proxy_shared;
struct tls_server;

struct listener {
	struct proxy          *px;
	struct listener_cfg    cfg;       /* copy of the config entry */
	struct upstream_target target;    /* where its sessions relay to */
	struct event          *accept_ev; /* its socket readable (listener.c) */
	int                    fd;        /* listening socket, from the master */
	struct tls_server     *tls;       /* client-facing TLS; NULL without */
	/* out of descriptors (listener.c): */
	int                    spare_fd;  /* given up to answer one client 421 */
	struct event          *resume;    /* accepting again after a pause */
	int                    paused;    /* for lack of descriptors */
	struct episode         starved;   /* out of descriptors; its count: clients refused */
};

/* One event loop (thread) of the proxy process. */
struct proxy {
	struct proxy_shared *sh;          /* what the loops share */
	struct event      *notify;        /* activated by other threads */
	unsigned           notes;         /* NOTE_*; under sh->lock */
	struct event_base *base;
	struct config     *cfg;           /* current; each session holds its own ref */
	struct scanclient *scan;
	struct listener    listeners[CFG_MAX_LISTENERS];
	unsigned           nlisteners;
	struct session    *sessions;      /* this loop's live sessions */
	unsigned           nsessions;
	int                stopping;      /* SIGTERM seen: finishing transactions */
	struct event      *probe_timer;
	struct event      *stop_timer;
	struct event      *sig_term, *sig_hup, *sig_int, *sig_usr1;
	struct event      *control;       /* master's control channel (ctlmsg.h) */
};

#define PROXY_MAX_LOOPS 16

/* proxy_loop_count - how many event loops cfg asks for (proxy_threads, or
 * one per four CPUs, at least one); fixed at start-up: the master binds one listening socket
 * per listener and loop. */
unsigned proxy_loop_count(const struct config *cfg);

/* proxy_main - the body of the proxy process with nloops event loops.
 * fds[k * cfg->nlisteners + i] is loop k's listening socket for
 * cfg->listeners[i] (SO_REUSEPORT siblings when nloops > 1).  Returns the
 * exit code. */
int proxy_main(struct config *cfg, unsigned nloops, const int *fds, const struct sockaddr_un *scanner_addr,
               socklen_t scanner_addrlen);

/* per-client-IP connection counts (listener.c); the caller holds the lock */
struct ipcount;
unsigned ipcount_get(struct ipcount *t, const char *ip);
void ipcount_inc(struct ipcount **t, const char *ip);
void ipcount_dec(struct ipcount *t, const char *ip);

/* proxy_admit - count a new client connection against max_connections and
 * (per_ip set) max_connections_per_ip (all loops together).  0 when
 * admitted; -1 over the total, -2 over the per-IP limit (*count: the count
 * that was hit).  A peer in the listener's xforward_from is not counted per
 * IP: it is an MTA speaking for many clients, and counts its own. */
int proxy_admit(struct proxy *px, const char *ip, int per_ip, unsigned *count);
/* proxy_release - the connection counted by proxy_admit (with the same
 * per_ip) is gone */
void proxy_release(struct proxy *px, const char *ip, int per_ip);

/* proxy_set_control_fd - the front end's end of the master's control
 * channel (ctlmsg.h), over which a reload's config and the addresses of
 * new scanner generations arrive. */
void proxy_set_control_fd(int fd);

/* listener.c */
int listener_start(struct proxy *px, struct listener *ln);
void listener_stop(struct listener *ln);

/* called by a session when it ends */
void proxy_session_gone(struct proxy *px, struct session *s);

#endif
