/* listener.c - accept client connections and apply the connection limits
 * (total, per client IP) before a session costs anything. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include <sys/resource.h>
#include <sys/socket.h>

#include "log.h"
#include "proxyproto.h"
#include "netaddr.h"
#include "proxy.h"
#include "sbuf.h"
#include "session.h"
#include "stats.h"

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

/* One line to a client that gets no session: best effort, it may be gone. */
static void tell(evutil_socket_t fd, const char *line)
{
	ssize_t w = write(fd, line, strlen(line));
	(void)w;
}

/* Refuse a connection with one line, without a session. */
static void refuse(evutil_socket_t fd, const char *line)
{
	tell(fd, line);
	evutil_closesocket(fd);
}

/* Every descriptor a listener takes (a client's, its reserve) is taken
 * under this lock, which all loops share.  Out of descriptors, a loop
 * closes its reserve to accept the client it answers 421 into that slot;
 * another loop's accept (each retries every 100 ms) or reserve took the
 * slot in between, and the first loop was left with no reserve for as long
 * as descriptors stayed short: a client that came to it got no answer at
 * all (test_out_of_descriptors[4] failed so on a loaded machine;
 * test_out_of_descriptors_reserve_kept).  A session's own descriptors
 * (upstream, spool, scanner) are not taken under it: a reserve one of them
 * takes is taken back at a pause once it is closed (take_reserve). */
static pthread_mutex_t fd_reserve_lock = PTHREAD_MUTEX_INITIALIZER;

/* with fd_reserve_lock held */
static void take_reserve_locked(struct listener *ln)
{
	if (ln->spare_fd < 0) ln->spare_fd = fcntl(ln->fd, F_DUPFD_CLOEXEC, 0);
}

static void take_reserve(struct listener *ln)
{
	pthread_mutex_lock(&fd_reserve_lock);
	take_reserve_locked(ln);
	pthread_mutex_unlock(&fd_reserve_lock);
}

static void starved_over(struct listener *ln);

/* ---- PROXY protocol: the header is read before a session exists ------ */

#define PP_DEADLINE_MS 10000   /* a balancer sends the header at once */
#define PP_RETRY_MS    20      /* a header cut in two: look again soon */

struct pp_wait {
	struct listener *ln;
	int              fd;
	struct event    *ev;
	struct timespec  start;
	struct sockaddr_storage peer;
};

static void admit(struct listener *ln, evutil_socket_t fd, struct sockaddr *sa, int salen);

static void pp_done(struct pp_wait *w, int ok_fd)
{
	event_free(w->ev);
	if (!ok_fd) evutil_closesocket(w->fd);
	free(w);
}

static void pp_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pp_wait *w = arg;
	unsigned char buf[PROXYPROTO_MAX];
	char ip[64];
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (now.tv_sec - w->start.tv_sec) * 1000 + (now.tv_nsec - w->start.tv_nsec) / 1000000;
	netaddr_ip((struct sockaddr *)&w->peer, ip, sizeof ip, NULL);

	/* peek, so that nothing after the header is taken from the socket
	 * (an implicit-TLS ClientHello may follow in the same segment) */
	ssize_t n = recv(w->fd, buf, sizeof buf, MSG_PEEK);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
		pp_done(w, 0);
		return;
	}
	size_t used = 0;
	struct sockaddr_storage src, dst;
	const char *why = "";
	enum pp_result r = n > 0 ? proxyproto_parse(buf, (size_t)n, &used, &src, &dst, &why) : PP_NEED_MORE;
	if (r == PP_INVALID) {
		slog(NULL, LOG_WARNING, "listener %s: bad PROXY header from [%s]: %s", w->ln->cfg.name, ip, why);
		pp_done(w, 0);
		return;
	}
	if (r == PP_NEED_MORE) {
		if (ms >= PP_DEADLINE_MS) {
			slog(NULL, LOG_WARNING, "listener %s: no PROXY header from [%s] in time", w->ln->cfg.name, ip);
			pp_done(w, 0);
			return;
		}
		/* wait for more: a short timer, since the bytes already there keep
		 * the socket readable */
		struct event_base *base = event_get_base(w->ev);
		event_del(w->ev);
		if (n > 0) {
			struct timeval tv = { 0, PP_RETRY_MS * 1000 };
			event_assign(w->ev, base, -1, 0, pp_cb, w);
			event_add(w->ev, &tv);
		} else {
			struct timeval left = { (PP_DEADLINE_MS - ms) / 1000, ((PP_DEADLINE_MS - ms) % 1000) * 1000 };
			event_assign(w->ev, base, w->fd, EV_READ, pp_cb, w);
			event_add(w->ev, &left);
		}
		return;
	}
	/* take exactly the header off the socket */
	ssize_t got = recv(w->fd, buf, used, 0);
	if (got != (ssize_t)used) {
		pp_done(w, 0);
		return;
	}
	struct listener *ln = w->ln;
	int cfd = w->fd;
	struct sockaddr_storage client = w->peer;
	if (src.ss_family == AF_INET || src.ss_family == AF_INET6) client = src;
	pp_done(w, 1);
	admit(ln, cfd, (struct sockaddr *)&client,
	      client.ss_family == AF_INET ? (int)sizeof(struct sockaddr_in) : (int)sizeof(struct sockaddr_in6));
}

static void accepted(struct listener *ln, evutil_socket_t fd, struct sockaddr *sa, int salen)
{
	char ip[64];
	if (episode_going(&ln->starved)) {
		evtimer_del(ln->resume);
		starved_over(ln);
	}
	if (ln->cfg.proxy_protocol) {
		netaddr_ip(sa, ip, sizeof ip, NULL);
		if (!netlist_match(ln->cfg.proxy_protocol_from, sa)) {
			slog(NULL, LOG_WARNING, "listener %s: [%s] may not send PROXY headers (proxy_protocol_from): refused",
			     ln->cfg.name, ip);
			refuse(fd, "421 4.7.0 Error: connection refused\r\n");
			return;
		}
		struct pp_wait *w = xcalloc(1, sizeof *w);
		w->ln = ln;
		w->fd = fd;
		memcpy(&w->peer, sa, (size_t)salen < sizeof w->peer ? (size_t)salen : sizeof w->peer);
		clock_gettime(CLOCK_MONOTONIC, &w->start);
		evutil_make_socket_nonblocking(fd);
		w->ev = event_new(ln->px->base, fd, EV_READ, pp_cb, w);
		struct timeval tv = { PP_DEADLINE_MS / 1000, 0 };
		event_add(w->ev, &tv);
		return;
	}
	admit(ln, fd, sa, salen);
}

/* Connection limits, then a session. */
static void admit(struct listener *ln, evutil_socket_t fd, struct sockaddr *sa, int salen)
{
	struct proxy *px = ln->px;
	char ip[64];
	char line[400];
	struct sockaddr_storage client;

	/* a translated IPv4 client (nat64_prefixes) is its IPv4 address from
	 * here on: the limits, the session, the audit log, XCLIENT, the scan */
	memset(&client, 0, sizeof client);
	memcpy(&client, sa, (size_t)salen < sizeof client ? (size_t)salen : sizeof client);
	if (netaddr_client(&client)) {
		char v6[64];
		unsigned port;

		netaddr_ip(sa, v6, sizeof v6, &port);
		netaddr_ip((struct sockaddr *)&client, ip, sizeof ip, NULL);
		slog(NULL, LOG_INFO, "listener %s: [%s]:%u is the IPv4 client %s (nat64_prefixes)",
		     ln->cfg.name, v6, port, ip);
		sa = (struct sockaddr *)&client;
		salen = (int)sizeof(struct sockaddr_in);
	}
	netaddr_ip(sa, ip, sizeof ip, NULL);
	if (px->stopping) {
		snprintf(line, sizeof line, "421 4.3.2 %s Service shutting down\r\n", px->cfg->hostname);
		refuse(fd, line);
		return;
	}
	unsigned count;
	int rc = proxy_admit(px, ip, !netlist_match(ln->cfg.xforward_from, sa), &count);
	if (rc < 0)
		stats_refused(STATS_PROXY);
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

/* ---- out of descriptors ------------------------------------------------
 * accept() failing with EMFILE leaves the client in the backlog and the
 * socket readable, so the loop would call it again at once: a core spun
 * and 300,000 log lines a second were written (measured), while the
 * clients waited unanswered.  Instead the listener pauses, and each pause
 * answers one waiting client 421 through a descriptor held in reserve
 * for it (the way nginx and libuv do); one log line when it starts, one
 * every EPISODE_LOG_MS while it lasts, one when accepting works again. */

#define STARVED_PAUSE_MS 100
#define STARVED_QUIET_MS 1000

static void starved_over(struct listener *ln)
{
	unsigned long refused;
	long long secs;

	if (episode_end(&ln->starved, episode_now_ms(), &refused, &secs))
		slog(NULL, LOG_NOTICE, "listener %s: accepting again (%lu client(s) refused for lack of "
		     "descriptors in the last %lld s)", ln->cfg.name, refused, secs);
}

/* the end of a pause, or STARVED_QUIET_MS after it with no failure (a
 * loop that no client reaches would otherwise never say it is over) */
static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listener *ln = arg;
	(void)fd; (void)what;
	if (ln->px->stopping) return;
	if (!ln->paused) {
		starved_over(ln);
		return;
	}
	take_reserve(ln);
	ln->paused = 0;
	event_add(ln->accept_ev, NULL);
	struct timeval tv = { STARVED_QUIET_MS / 1000, (STARVED_QUIET_MS % 1000) * 1000 };
	evtimer_add(ln->resume, &tv);
}

static void refuse_one_starved(struct listener *ln)
{
	char line[400];

	pthread_mutex_lock(&fd_reserve_lock);
	if (ln->spare_fd < 0) {
		pthread_mutex_unlock(&fd_reserve_lock);
		return;
	}
	close(ln->spare_fd);
	ln->spare_fd = -1;
	int fd = accept4(ln->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0) {
		snprintf(line, sizeof line, "421 4.3.2 %s Error: too busy, try again later\r\n",
		         ln->px->cfg->hostname);
		tell(fd, line);
		/* the client's slot is the reserve again: dup3 closes the client
		 * and fills its number in one step, so nothing can take it */
		ln->spare_fd = dup3(ln->fd, fd, O_CLOEXEC);
		if (ln->spare_fd < 0) close(fd);
		stats_refused(STATS_PROXY);
		ln->starved.count++;
	} else {
		/* a session's descriptor took the slot; resume_cb tries again */
		take_reserve_locked(ln);
	}
	pthread_mutex_unlock(&fd_reserve_lock);
}

static void starved(struct listener *ln, int err)
{
	unsigned long refused;
	long long secs;

	event_del(ln->accept_ev);
	ln->paused = 1;
	refuse_one_starved(ln);
	switch (episode_step(&ln->starved, episode_now_ms(), &refused, &secs)) {
	case EPISODE_STARTS: {
		struct rlimit rl;
		getrlimit(RLIMIT_NOFILE, &rl);
		slog(NULL, LOG_WARNING, "listener %s: accept: %s: new clients get 421 until descriptors free "
		     "(%u sessions in this loop; open files limit %llu)", ln->cfg.name,
		     evutil_socket_error_to_string(err), ln->px->nsessions, (unsigned long long)rl.rlim_cur);
		break;
	}
	case EPISODE_LASTS:
		slog(NULL, LOG_WARNING, "listener %s: still out of descriptors: %lu client(s) refused in %lld s",
		     ln->cfg.name, refused, secs);
		break;
	case EPISODE_QUIET:
		break;
	}
	struct timeval tv = { 0, STARVED_PAUSE_MS * 1000 };
	evtimer_add(ln->resume, &tv);
}

static void accept_failed(struct listener *ln, int err)
{
	if (episode_accept_starved(err)) {
		starved(ln, err);
		return;
	}
	/* the others (EPERM from a firewall, EPROTO) end that one connection */
	slog(NULL, LOG_WARNING, "accept on %s: %s", ln->cfg.name, evutil_socket_error_to_string(err));
}

/* The listening socket is readable: accept until the backlog is empty or
 * the listener pauses (accept under fd_reserve_lock, which is why this is
 * not libevent's evconnlistener). */
static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct listener *ln = arg;
	(void)what;
	while (event_pending(ln->accept_ev, EV_READ, NULL)) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		pthread_mutex_lock(&fd_reserve_lock);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int err = errno;
		if (fd >= 0) take_reserve_locked(ln);
		pthread_mutex_unlock(&fd_reserve_lock);
		if (fd < 0) {
			if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR && err != ECONNABORTED)
				accept_failed(ln, err);
			return;
		}
		accepted(ln, fd, (struct sockaddr *)&ss, (int)len);
	}
}

int listener_start(struct proxy *px, struct listener *ln)
{
	ln->px = px;
	/* the master owns the socket (each loop has its own SO_REUSEPORT one) */
	ln->accept_ev = event_new(px->base, ln->fd, EV_READ | EV_PERSIST, accept_cb, ln);
	ln->resume = evtimer_new(px->base, resume_cb, ln);
	ln->spare_fd = -1;
	take_reserve(ln);
	if (ln->accept_ev == NULL || ln->resume == NULL || ln->spare_fd < 0) return -1;
	return event_add(ln->accept_ev, NULL);
}

void listener_stop(struct listener *ln)
{
	if (ln->resume) evtimer_del(ln->resume);
	if (ln->accept_ev) event_del(ln->accept_ev);
}
