/* proxy.c - the proxy process: one libevent loop for every listener and
 * session, the scanner client, capability probes, and the signals
 * (SIGTERM: drain and stop; SIGHUP: new config for new sessions, new
 * scanner connection). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "audit.h"
#include "log.h"
#include "proxy.h"
#include "scanclient.h"
#include "session.h"

static int control_fd = -1;

void proxy_set_control_fd(int fd)
{
	control_fd = fd;
}

/* The master announces each new scanner generation's address. */
static void control_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;
	struct { socklen_t len; struct sockaddr_un a; } msg;
	ssize_t n = read(fd, &msg, sizeof msg);
	if (n == (ssize_t)sizeof msg) {
		scanclient_set_address(px->scan, &msg.a, msg.len);
		slog(NULL, LOG_INFO, "switching to the new scanner");
		return;
	}
	if (n == 0) {        /* the master is gone: stop as on SIGTERM */
		slog(NULL, LOG_WARNING, "master went away");
		event_del(px->control);
		raise(SIGTERM);
	}
}

static void probe_all(struct proxy *px)
{
	for (unsigned i = 0; i < px->nlisteners; i++) {
		/* listeners sharing one upstream probe it once each: cheap enough */
		upstream_probe(px->base, px->cfg, &px->listeners[i].target);
	}
}

static void probe_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	probe_all(arg);
}

void proxy_session_gone(struct proxy *px, struct session *s)
{
	(void)s;
	if (px->stopping && px->nsessions == 0) event_base_loopexit(px->base, NULL);
}

static void stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;
	slog(NULL, LOG_NOTICE, "shutdown deadline: closing %u sessions", px->nsessions);
	struct session *s = px->sessions;
	while (s) {
		struct session *next = session_next(s);
		session_shutdown(s, 1);
		s = next;
	}
	/* give the 421s a moment to leave, then stop regardless */
	struct timeval tv = { 1, 0 };
	event_base_loopexit(px->base, &tv);
}

static void sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
	struct proxy *px = arg;
	if (px->stopping) return;
	px->stopping = 1;
	slog(NULL, LOG_NOTICE, "stopping: %u sessions open", px->nsessions);
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

static void sighup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct proxy *px = arg;
	char err[512];
	struct config *c = config_load(px->config_path, px->overrides, px->noverrides, err, sizeof err);
	if (c == NULL) {
		slog(NULL, LOG_ERR, "reload failed, keeping the running config: %s", err);
	} else {
		config_unref(px->cfg);
		px->cfg = c;
		log_set_level(c->log_level);
		if (audit_open(c->audit_log) < 0)
			slog_errno(NULL, LOG_ERR, "audit log %s", c->audit_log);
		slog(NULL, LOG_NOTICE, "config reloaded; listener changes need a restart");
	}
}

int proxy_main(struct config *cfg, const int *fds, const struct sockaddr_un *scanner_addr,
               socklen_t scanner_addrlen, const char *config_path,
               const char *const *overrides, size_t noverrides)
{
	struct proxy *px = calloc(1, sizeof *px);
	char err[512];

	if (px == NULL) die("out of memory");
	signal(SIGPIPE, SIG_IGN);
	px->cfg = config_ref(cfg);
	px->config_path = config_path;
	px->overrides = overrides;
	px->noverrides = noverrides;
	px->base = event_base_new();
	if (px->base == NULL) die("event_base_new failed");
	if (audit_open(cfg->audit_log) < 0) {
		slog_errno(NULL, LOG_ERR, "audit log %s", cfg->audit_log);
		return 1;
	}
	px->scan = scanclient_new(px->base, scanner_addr, scanner_addrlen);
	px->nlisteners = cfg->nlisteners;
	for (unsigned i = 0; i < cfg->nlisteners; i++) {
		struct listener *ln = &px->listeners[i];
		ln->cfg = cfg->listeners[i];
		ln->fd = fds[i];
		memcpy(ln->target.spec, ln->cfg.upstream, sizeof ln->target.spec);
		if (netaddr_parse(ln->cfg.upstream, 0, &ln->target.addr, err, sizeof err) < 0) {
			slog(NULL, LOG_ERR, "listener %s: upstream %s", ln->cfg.name, err);
			return 1;
		}
		if (listener_start(px, ln) < 0) {
			slog(NULL, LOG_ERR, "listener %s: cannot start", ln->cfg.name);
			return 1;
		}
	}
	px->sig_term = evsignal_new(px->base, SIGTERM, sigterm_cb, px);
	px->sig_int = evsignal_new(px->base, SIGINT, sigterm_cb, px);
	px->sig_hup = evsignal_new(px->base, SIGHUP, sighup_cb, px);
	event_add(px->sig_term, NULL);
	event_add(px->sig_int, NULL);
	event_add(px->sig_hup, NULL);
	px->probe_timer = event_new(px->base, -1, EV_PERSIST, probe_timer_cb, px);
	struct timeval tv = { cfg->upstream_probe_interval / 1000, (cfg->upstream_probe_interval % 1000) * 1000 };
	if (cfg->upstream_probe_interval > 0) event_add(px->probe_timer, &tv);
	if (control_fd >= 0) {
		px->control = event_new(px->base, control_fd, EV_READ | EV_PERSIST, control_cb, px);
		event_add(px->control, NULL);
	}
	probe_all(px);

	slog(NULL, LOG_INFO, "proxy ready: %u listeners", px->nlisteners);
	event_base_dispatch(px->base);

	slog(NULL, LOG_INFO, "proxy stopped");
	return 0;
}
