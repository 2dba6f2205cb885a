/* proxy.c - the proxy process: N event loops (threads), each with its own
 * sessions, scanner connection and upstream capability caches, all
 * accepting on the same listening sockets.  Nothing of a session ever
 * crosses loops; what they share (connection counts per client IP, the
 * newest config, the current scanner address) sits in struct proxy_shared
 * under one mutex.  The main thread runs loop 0 and takes the signals
 * (SIGTERM: drain and stop) and the master's control channel (ctlmsg.h:
 * a reload's config for new sessions, a new scanner's address), and
 * passes them on to the other loops. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "audit.h"
#include "ctlmsg.h"
#include "log.h"
#include "proxy.h"
#include "spool.h"
#include "thread.h"
#include "tls.h"
#include "scanclient.h"
#include "session.h"
#include "filters/ipnet.h"

#define MAX_LOOPS PROXY_MAX_LOOPS

enum { NOTE_STOP = 1, NOTE_CONFIG = 2, NOTE_SCANNER = 4 };

struct proxy_shared {
	pthread_mutex_t    lock;
	struct ipcount    *ipcounts;        /* under lock */
	unsigned           nsessions;       /* all loops; under lock */
	struct config     *cfg;             /* newest; under lock */
	struct sockaddr_un scan_addr;       /* under lock */
	socklen_t          scan_addrlen;
	struct proxy      *loops[MAX_LOOPS];
	unsigned           nloops;
};

static int control_fd = -1;

void proxy_set_control_fd(int fd)
{
	control_fd = fd;
}

/* Tell every loop (but the caller's, if given) that something changed. */
static void notify_loops(struct proxy_shared *sh, unsigned what)
{
	pthread_mutex_lock(&sh->lock);
	for (unsigned i = 0; i < sh->nloops; i++) {
		sh->loops[i]->notes |= what;
		event_active(sh->loops[i]->notify, EV_TIMEOUT, 1);
	}
	pthread_mutex_unlock(&sh->lock);
}

static void probe_all(struct proxy *px)
{
	for (unsigned i = 0; i < px->nlisteners; i++)
		upstream_probe(px->base, px->cfg, &px->listeners[i].target);
}

static void probe_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	probe_all(arg);
}

/* limit_key - what max_connections_per_ip counts: an IPv4 address or an
 * IPv6 /64, as ratelimit_ip does (an IPv6 host picks any address of its
 * /64 for each connection) */
static const char *limit_key(const char *ip, char *buf, size_t bufsz)
{
	return ipnet_limit_key(ip, buf, bufsz) == 0 ? buf : ip;
}

int proxy_admit(struct proxy *px, const char *ip, int per_ip, unsigned *count)
{
	struct proxy_shared *sh = px->sh;
	char key[64];
	int rc = 0;

	ip = limit_key(ip, key, sizeof key);
	pthread_mutex_lock(&sh->lock);
	*count = per_ip ? ipcount_get(sh->ipcounts, ip) : 0;
	if (sh->nsessions >= px->cfg->max_connections) {
		*count = sh->nsessions;
		rc = -1;
	} else if (per_ip && *count >= px->cfg->max_connections_per_ip) {
		rc = -2;
	} else {
		if (per_ip)
			ipcount_inc(&sh->ipcounts, ip);
		sh->nsessions++;
	}
	pthread_mutex_unlock(&sh->lock);
	return rc;
}

void proxy_release(struct proxy *px, const char *ip, int per_ip)
{
	struct proxy_shared *sh = px->sh;
	char key[64];

	ip = limit_key(ip, key, sizeof key);
	pthread_mutex_lock(&sh->lock);
	if (per_ip)
		ipcount_dec(sh->ipcounts, ip);
	sh->nsessions--;
	pthread_mutex_unlock(&sh->lock);
}

void proxy_session_gone(struct proxy *px, struct session *s)
{
	(void)s;
	if (px->stopping && px->nsessions == 0) event_base_loopexit(px->base, NULL);
}

/* STOP_HOLD_S - past shutdown_timeout, how long a session whose message
 * the upstream holds waits for the upstream's reply: the master kills the
 * proxy 5 s after shutdown_timeout, and a 421 needs a moment to leave */
#define STOP_HOLD_S 3

/* close_all - 421 to every session, then stop the loop a moment later
 * (for the 421s to leave) whatever is left */
static void close_all(struct proxy *px)
{
	for (struct session *s = px->sessions, *next; s != NULL; s = next) {
		next = session_next(s);
		session_shutdown(s, 1);
	}
	struct timeval tv = { 1, 0 };
	event_base_loopexit(px->base, &tv);
}

static void stop_final_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;

	slog(NULL, LOG_NOTICE, "shutdown deadline: no reply from the upstream in %d s more: closing %u "
	     "sessions", STOP_HOLD_S, px->nsessions);
	close_all(px);
}

/* stop_deadline_cb - shutdown_timeout passed: every session is closed with
 * 421, except those whose whole message the upstream has and has not
 * answered yet: the client would send it again, and the upstream may have
 * queued it (RFC 1047); they get STOP_HOLD_S more for the reply */
static void stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;
	unsigned held = 0;

	for (struct session *s = px->sessions; s != NULL; s = session_next(s))
		held += session_upstream_holds_message(s) != 0;
	slog(NULL, LOG_NOTICE, "shutdown deadline: closing %u sessions%s", px->nsessions - held,
	     held ? "; waiting for the upstream's reply to the messages it holds" : "");
	for (struct session *s = px->sessions, *next; s != NULL; s = next) {
		next = session_next(s);
		if (!session_upstream_holds_message(s))
			session_shutdown(s, 1);
	}
	if (held == 0) {
		close_all(px);
		return;
	}
	/* the timer has fired (not pending): it may take another callback */
	evtimer_assign(px->stop_timer, px->base, stop_final_cb, px);
	struct timeval tv = { STOP_HOLD_S, 0 };
	evtimer_add(px->stop_timer, &tv);
}

static void loop_stop(struct proxy *px)
{
	if (px->stopping) return;
	px->stopping = 1;
	for (unsigned i = 0; i < px->nlisteners; i++) listener_stop(&px->listeners[i]);
	event_del(px->probe_timer);
	struct session *s = px->sessions;
	while (s) {
		struct session *next = session_next(s);
		session_shutdown(s, 0);
		s = next;
	}
	if (px->nsessions == 0) {
		event_base_loopexit(px->base, NULL);
		return;
	}
	px->stop_timer = evtimer_new(px->base, stop_deadline_cb, px);
	struct timeval tv = { px->cfg->shutdown_timeout / 1000, (px->cfg->shutdown_timeout % 1000) * 1000 };
	evtimer_add(px->stop_timer, &tv);
}

/* reload_tls - a reload rereads the listeners' certificates (renewed in
 * place); a session keeps the context its TLS started with.  The files
 * are the ones named at start: listener changes need a restart. */
static void reload_tls(struct proxy *px)
{
	char err[512];
	for (unsigned i = 0; i < px->nlisteners; i++) {
		struct listener *ln = &px->listeners[i];
		if (ln->tls == NULL) continue;
		struct tls_server *t = tls_server_new(px->cfg, &ln->cfg, err, sizeof err);
		if (t == NULL) {
			slog(NULL, LOG_ERR, "reload: listener %s keeps its TLS certificates: %s", ln->cfg.name, err);
			continue;
		}
		/* served all the same, as at start (tls.h): one line, not one
		 * per event loop */
		if (tls_server_warning(t)[0] && px == px->sh->loops[0])
			slog(NULL, LOG_WARNING, "reload: listener %s: %s", ln->cfg.name, tls_server_warning(t));
		tls_server_free(ln->tls);
		ln->tls = t;
	}
	/* the upstream side too: tls_min_version, tls_ciphers and
	 * tls_ciphersuites are the config's, and its context was made once
	 * (a session's SSL keeps a reference to the one it started with) */
	for (unsigned i = 0; i < px->nlisteners; i++) {
		struct listener *ln = &px->listeners[i];
		if (ln->target.tls_ctx == NULL) continue;
		SSL_CTX *c = tls_client_new(px->cfg, &ln->cfg, err, sizeof err);
		if (c == NULL) {
			slog(NULL, LOG_ERR, "reload: listener %s keeps its upstream TLS settings: %s", ln->cfg.name, err);
			continue;
		}
		SSL_CTX_free(ln->target.tls_ctx);
		ln->target.tls_ctx = c;
	}
}

/* Another thread changed something this loop must follow. */
static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;
	struct proxy_shared *sh = px->sh;
	struct sockaddr_un addr;
	socklen_t addrlen = 0;
	struct config *cfg = NULL;

	pthread_mutex_lock(&sh->lock);
	unsigned notes = px->notes;
	px->notes = 0;
	if (notes & NOTE_CONFIG) cfg = config_ref(sh->cfg);
	if (notes & NOTE_SCANNER) {
		addr = sh->scan_addr;
		addrlen = sh->scan_addrlen;
	}
	pthread_mutex_unlock(&sh->lock);

	if (cfg) {
		config_unref(px->cfg);
		px->cfg = cfg;
		reload_tls(px);
	}
	if (addrlen) scanclient_set_address(px->scan, &addr, addrlen);
	if (notes & NOTE_STOP) loop_stop(px);
}

static void sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
	struct proxy *px = arg;
	slog(NULL, LOG_NOTICE, "stopping");
	notify_loops(px->sh, NOTE_STOP);
}

/* SIGHUP to the proxy itself: the master reloads, not the proxy (which
 * gets the config from it, once the scanner that runs it is ready) */
static void sighup_cb(evutil_socket_t sig, short what, void *arg)
{
	slog(NULL, LOG_WARNING, "SIGHUP ignored: a reload is the master's (send it SIGHUP)");
}

/* apply_config - the master's reload reached us: c (taken) for new
 * sessions; listener settings are the ones of the start (the master
 * keeps them in every config it passes) */
static void apply_config(struct proxy *px, struct config *c)
{
	struct proxy_shared *sh = px->sh;

	log_set_level(c->log_level);
	spool_set_budget(c->spool_memory_max);
	audit_open_logged(c->audit_log, "");
	pthread_mutex_lock(&sh->lock);
	config_unref(sh->cfg);
	sh->cfg = c;
	pthread_mutex_unlock(&sh->lock);
	notify_loops(sh, NOTE_CONFIG);
	slog(NULL, LOG_NOTICE, "config reloaded (from the master)");
}

/* SIGUSR1 (from the master): reopen the audit log after rotation, and
 * nothing else, where SIGHUP would also start a new scanner generation
 * (with libclamav, a second engine in memory for a while) */
static void sigusr1_cb(evutil_socket_t sig, short what, void *arg)
{
	struct proxy_shared *sh = ((struct proxy *)arg)->sh;
	char path[sizeof(sh->cfg->audit_log)];

	pthread_mutex_lock(&sh->lock);
	snprintf(path, sizeof path, "%s", sh->cfg->audit_log);
	pthread_mutex_unlock(&sh->lock);
	if (audit_open_logged(path, "") == 0)
		slog(NULL, LOG_NOTICE, "audit log reopened");
}

/* The master's control channel: a reload's config, each new scanner
 * generation's address. */
static void control_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;
	struct ctl_msg msg;
	int cfd;
	ssize_t n = ctl_recv(fd, &msg, &cfd);
	if (n == (ssize_t)sizeof msg && msg.len == CTL_CONFIG) {
		struct config *c = ctl_config(cfd, "");
		if (c != NULL) apply_config(px, c);
		return;
	}
	if (cfd >= 0) close(cfd);
	if (n == (ssize_t)sizeof msg && msg.len > 0 && msg.len <= sizeof msg.a) {
		pthread_mutex_lock(&px->sh->lock);
		px->sh->scan_addr = msg.a;
		px->sh->scan_addrlen = msg.len;
		pthread_mutex_unlock(&px->sh->lock);
		notify_loops(px->sh, NOTE_SCANNER);
		slog(NULL, LOG_INFO, "switching to the new scanner");
		return;
	}
	if (n == 0 || (n < 0 && errno != EAGAIN)) {   /* the master is gone: stop as on SIGTERM */
		slog(NULL, LOG_WARNING, "master went away");
		event_del(px->control);
		notify_loops(px->sh, NOTE_STOP);
	}
}

static struct proxy *loop_new(struct proxy_shared *sh, struct config *cfg, const int *fds)
{
	struct proxy *px = calloc(1, sizeof *px);
	char err[512];
	if (px == NULL) die("out of memory");
	px->sh = sh;
	px->cfg = config_ref(cfg);
	px->base = event_base_new();
	if (px->base == NULL) die("event_base_new failed");
	px->scan = scanclient_new(px->base, &sh->scan_addr, sh->scan_addrlen);
	px->notify = event_new(px->base, -1, 0, notify_cb, px);
	px->nlisteners = cfg->nlisteners;
	for (unsigned i = 0; i < cfg->nlisteners; i++) {
		struct listener *ln = &px->listeners[i];
		ln->cfg = cfg->listeners[i];
		ln->fd = fds[i];
		memcpy(ln->target.spec, ln->cfg.upstream, sizeof ln->target.spec);
		if (netaddr_parse(ln->cfg.upstream, 0, &ln->target.addr, err, sizeof err) < 0)
			die("listener %s: upstream %s", ln->cfg.name, err);
		if (ln->cfg.tls_mode != MW_TLS_NONE &&
		    (ln->tls = tls_server_new(cfg, &ln->cfg, err, sizeof err)) == NULL)
			die("listener %s: %s", ln->cfg.name, err);
		ln->target.tls_mode = ln->cfg.upstream_tls;
		if (ln->cfg.upstream_tls != MW_UPTLS_OFF) {
			if ((ln->target.tls_ctx = tls_client_new(cfg, &ln->cfg, err, sizeof err)) == NULL)
				die("listener %s: %s", ln->cfg.name, err);
			ln->target.tls_verify = ln->cfg.upstream_tls_ca_file[0] != '\0';
			/* the expected name, or the host part of HOST:PORT / [HOST]:PORT
			 * (built in a local: both fields live in *px) */
			char name[sizeof ln->target.tls_name];
			const char *u = ln->cfg.upstream;
			size_t n = u[0] == '[' ? strcspn(u + 1, "]") : strcspn(u, ":");
			if (ln->cfg.upstream_tls_name[0]) snprintf(name, sizeof name, "%s", ln->cfg.upstream_tls_name);
			else snprintf(name, sizeof name, "%.*s", (int)n, u + (u[0] == '['));
			memcpy(ln->target.tls_name, name, sizeof name);
		}
		ln->target.xclient = ln->cfg.upstream_xclient;
		if (listener_start(px, ln) < 0)
			die("listener %s: cannot start", ln->cfg.name);
	}
	px->probe_timer = event_new(px->base, -1, EV_PERSIST, probe_timer_cb, px);
	struct timeval tv = { cfg->upstream_probe_interval / 1000, (cfg->upstream_probe_interval % 1000) * 1000 };
	if (cfg->upstream_probe_interval > 0) event_add(px->probe_timer, &tv);
	probe_all(px);
	return px;
}

static void *loop_thread(void *arg)
{
	struct proxy *px = arg;
	audit_batch_start(px->base);
	event_base_dispatch(px->base);
	audit_batch_stop();
	return NULL;
}

unsigned proxy_loop_count(const struct config *cfg)
{
	long n = cfg->proxy_threads;
	/* automatic: one loop per four CPUs.  The proxy shares the machine
	 * with the scanner and usually the MTA, and its work per message is
	 * small: more loops than that only split the events of one wake-up
	 * over more threads.  On 2 CPUs at concurrency 10, two loops cost
	 * about 1.6 context switches more per message than one. */
	if (n == 0) n = sysconf(_SC_NPROCESSORS_ONLN) / 4;
	if (n < 1) n = 1;
	if (n > MAX_LOOPS) n = MAX_LOOPS;
	return (unsigned)n;
}

int proxy_main(struct config *cfg, unsigned n, const int *fds, const struct sockaddr_un *scanner_addr,
               socklen_t scanner_addrlen)
{
	static struct proxy_shared sh;
	pthread_t tids[MAX_LOOPS];

	signal(SIGPIPE, SIG_IGN);
	if (evthread_use_pthreads() < 0) die("libevent without thread support");
	pthread_mutex_init(&sh.lock, NULL);
	sh.cfg = config_ref(cfg);
	sh.scan_addr = *scanner_addr;
	sh.scan_addrlen = scanner_addrlen;
	spool_set_budget(cfg->spool_memory_max);
	/* a log that cannot be opened is a log that cannot be written, as
	 * in the milter: records lost, audit_failure, retried (an exit here
	 * had the master restart the proxy in a loop, its clients unanswered) */
	audit_open_logged(cfg->audit_log, "");
	if (n < 1 || n > MAX_LOOPS) n = 1;
	for (unsigned i = 0; i < n; i++)
		sh.loops[i] = loop_new(&sh, cfg, fds + (size_t)i * cfg->nlisteners);
	pthread_mutex_lock(&sh.lock);
	sh.nloops = n;
	pthread_mutex_unlock(&sh.lock);

	/* an expired (or soon expiring) certificate: a warning, not a refusal
	 * to start (tls.h); once, from the first loop's copy */
	for (unsigned i = 0; i < sh.loops[0]->nlisteners; i++) {
		const struct listener *ln = &sh.loops[0]->listeners[i];
		if (ln->tls != NULL && tls_server_warning(ln->tls)[0])
			slog(NULL, LOG_WARNING, "listener %s: %s", ln->cfg.name, tls_server_warning(ln->tls));
	}

	/* the main thread's loop also takes the signals and the control pipe;
	 * the other threads must not get them */
	struct proxy *main_px = sh.loops[0];
	main_px->sig_term = evsignal_new(main_px->base, SIGTERM, sigterm_cb, main_px);
	main_px->sig_int = evsignal_new(main_px->base, SIGINT, sigterm_cb, main_px);
	main_px->sig_hup = evsignal_new(main_px->base, SIGHUP, sighup_cb, main_px);
	main_px->sig_usr1 = evsignal_new(main_px->base, SIGUSR1, sigusr1_cb, main_px);
	event_add(main_px->sig_term, NULL);
	event_add(main_px->sig_int, NULL);
	event_add(main_px->sig_hup, NULL);
	event_add(main_px->sig_usr1, NULL);
	if (control_fd >= 0) {
		main_px->control = event_new(main_px->base, control_fd, EV_READ | EV_PERSIST, control_cb, main_px);
		event_add(main_px->control, NULL);
	}
	/* the signals are this thread's loop's (evsignal above) */
	for (unsigned i = 1; i < n; i++)
		if (thread_start_blocked(&tids[i], loop_thread, sh.loops[i]) != 0)
			die("cannot start proxy thread %u", i);

	slog(NULL, LOG_INFO, "proxy ready: %u listeners, %u event loops", cfg->nlisteners, n);
	audit_batch_start(main_px->base);
	event_base_dispatch(main_px->base);
	audit_batch_stop();
	/* loop 0 ends when it has drained; make sure the others were told */
	notify_loops(&sh, NOTE_STOP);
	for (unsigned i = 1; i < n; i++) pthread_join(tids[i], NULL);
	slog(NULL, LOG_INFO, "proxy stopped");
	return 0;
}
