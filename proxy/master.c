/* master.c - see master.h.
 *
 * Each reload's scanner gets its own listening unix socket (an abstract
 * address chosen by the kernel), and the proxy learns the address of the
 * current one through a control channel.  So a reload never lets an old
 * scanner accept the proxy's new connection, and an old scanner keeps
 * answering on its existing connection until the proxy closes it:
 * reloading drops no scan.  A scanner restarted after it died takes over
 * its socket (start_scanner): no old scanner is left to accept from it,
 * and the connections made while none ran are served.
 *
 * On reload the new scanner is "pending" until it reports ready (its
 * filters set up: the antivirus engine loaded and compiled, which may take
 * a while with big signature databases); only then is the proxy switched
 * to it and the old one retired.  A new scanner that dies before it is
 * ready leaves the running one in service.
 *
 * So the master holds two configs: the one the serving scanner runs (cfg:
 * every restart after a crash uses it, and the front ends run it) and a
 * reload's candidate (cand), which only its pending scanner runs.  The
 * candidate becomes cfg when that scanner reports ready, and the front
 * ends then get it down their control channel (ctlmsg.h), with the new
 * scanner's address; a candidate whose scanner dies first is dropped, and
 * nobody ran it but that scanner.  The listeners (and milter_listen) are
 * bound once: every config the master takes keeps the running ones, so
 * that a proxy restarted after a crash gets sockets laid out as its config
 * says.
 *
 * A retired scanner is told to drain (SIGUSR2), not to stop: it finishes
 * what it has for as long as a front end may still wait for it
 * (scanner.h); only a stop of the daemon cuts that to shutdown_timeout. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stddef.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "filters/bayes.h"
#include "filters/scanner.h"
#include "as_user.h"
#include "ctlmsg.h"
#include "log.h"
#include "master.h"
#include "monotime.h"
#include "milter.h"
#include "netaddr.h"
#include "proxy.h"
#include "quarantine.h"
#include "sbuf.h"
#include "stats.h"
#include "tls.h"

/* a reload's scanner starts at least this long after the last reload
 * started and after the last takeover: a burst of SIGHUPs becomes one
 * reload (the latest file) instead of a scanner generation each */
#define RELOAD_SPACING_MS 2000
/* an old scanner is told to drain this long after every front end was
 * sent the address of a newer one: requests already on their way to it
 * are still taken */
#define RETIRE_GRACE_MS 2000
/* an old scanner kept this long for a front end that has not taken a
 * newer one's address is said in the log (once) */
#define RETIRE_STUCK_WARN_MS 60000

struct child {
	pid_t  pid;
	time_t started;
	unsigned fails;        /* quick deaths in a row, for backoff */
	time_t restart_at;     /* 0 = not waiting */
	int    term_sent;      /* the stop's SIGTERM went to pid */
};

/* an old scanner finishing what it has (retire), or a reload's that
 * never served (discard), until it is reaped.  Every one is kept: a stop
 * must reach them all. */
struct retiree {
	pid_t  pid;
	unsigned long gen;     /* its scanner generation (M.gen) */
	long long drain_at;    /* monotime_ms to send SIGUSR2; 0: not yet known */
	long long retired_at;  /* monotime_ms */
	int    stuck_said;     /* RETIRE_STUCK_WARN_MS passed, said */
	int    drained;        /* SIGUSR2 sent (or never to be: it did not serve) */
	int    term_sent;      /* SIGTERM sent (a stop, or it never served) */
};

/* the master's end of a front end's control channel (ctlmsg.h) and what
 * it still has to tell it: only the latest config and scanner address
 * count, so a send that would block is simply tried again later */
enum { CTL_WANT_CONFIG = 1, CTL_WANT_ADDR = 2, CTL_WANT_REOPEN = 4 };
struct ctl_end {
	int      fd;           /* -1: no front end */
	unsigned want;         /* CTL_WANT_* */
	int      failed;       /* a send error was logged (said once) */
	unsigned long sent_gen;  /* the scanner generation whose address it has */
};

static struct {
	struct config *cfg;             /* the serving scanner's, and the front ends' */
	struct config *cand;            /* a reload's, for the pending scanner; or NULL */
	int cfg_fd;                     /* cfg sealed in a memfd (config_export), made at
	                                 * its first send and passed to both front ends */
	const char *path;
	const char *const *ov;
	size_t nov;
	int argc;
	char **argv;
	int lfds[CFG_MAX_LISTENERS * PROXY_MAX_LOOPS];  /* [loop * nlisteners + listener] */
	unsigned nlfds, nloops;
	int scan_fd;                    /* current scanner generation's socket */
	struct sockaddr_un scan_addr;
	socklen_t scan_addrlen;
	unsigned long gen;              /* scan_addr's scanner generation: one more each
	                                 * start or takeover */
	struct ctl_end proxy_ctl;       /* master -> proxy: configs, scanner addresses */
	struct ctl_end milter_ctl;      /* master -> milter: the same, and log reopening */
	struct child proxy, scanner, milter;
	pid_t pending;                  /* reload: new scanner not ready yet, or 0 */
	int pending_fd;                 /* its socket */
	int pending_ready;              /* read end of its readiness pipe */
	struct sockaddr_un pending_addr;
	socklen_t pending_addrlen;
	struct retiree *retiring;       /* old scanners not reaped yet */
	size_t nretiring, retiring_cap;
	int reload_wanted;              /* a SIGHUP waits for RELOAD_SPACING_MS */
	long long reload_not_before;    /* monotime_ms of the next reload allowed */
	struct privs privs;
	pid_t retrain;                  /* bayes_retrain_interval's child, or 0 */
	int fatal;                      /* a child that no restart can mend: stop, exit 1 */
} M;

void set_proc_title(int argc, char **argv, const char *name)
{
	char title[64];
	snprintf(title, sizeof title, "mailwarden: %s", name);
	char comm[16];
	snprintf(comm, sizeof comm, "mw-%s", name);
	prctl(PR_SET_NAME, comm, 0, 0, 0);
	if (argc < 1 || argv == NULL || argv[0] == NULL) return;
	/* argv strings are contiguous; reuse their space for the title.  The
	 * space is measured once, before the first title overwrites it. */
	static size_t space;
	char *start = argv[0];
	if (space == 0) {
		char *end = argv[0] + strlen(argv[0]);
		for (int i = 1; i < argc; i++)
			if (argv[i] == end + 1) end = argv[i] + strlen(argv[i]);
		space = (size_t)(end - start);
	}
	size_t n = strlen(title);
	if (n > space) n = space;
	memset(start, 0, space);
	memcpy(start, title, n);
}

static int scanner_socket(struct sockaddr_un *addr, socklen_t *addrlen)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) return -1;
	struct sockaddr_un a;
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	/* autobind: the kernel picks a unique abstract name */
	if (bind(fd, (struct sockaddr *)&a, sizeof(sa_family_t)) < 0 || listen(fd, 256) < 0) {
		close(fd);
		return -1;
	}
	*addrlen = sizeof *addr;
	if (getsockname(fd, (struct sockaddr *)addr, addrlen) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int privs_lookup(const char *user, struct privs *p, char *err, size_t errlen)
{
	memset(p, 0, sizeof *p);
	if (user == NULL || user[0] == '\0') return 0;
	errno = 0;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, errlen, "user %s: no such user", user);
		return -1;
	}
	if (geteuid() != 0) {
		/* started by the user itself (a test, a container): nothing to
		 * switch; by anybody else: it cannot, and every child would die
		 * trying, so say it once, now */
		if (pw->pw_uid == geteuid()) return 0;
		snprintf(err, errlen, "user %s: mailwarden runs as uid %u, not root, and cannot switch to it "
		         "(start it as root, or as %s)", user, (unsigned)geteuid(), user);
		return -1;
	}
	p->uid = pw->pw_uid;
	p->gid = pw->pw_gid;
	p->drop = 1;
	return 0;
}

int privs_drop(const struct privs *p, const gid_t *extra, size_t nextra, char *err, size_t errlen)
{
	if (p->drop) {
		/* the groups first: setgroups and setgid need the root that
		 * setuid gives up.  No supplementary group of root's stays
		 * (only the one the milter socket may need). */
		if (setgroups(nextra, extra) < 0 || setgid(p->gid) < 0 || setuid(p->uid) < 0) {
			snprintf(err, errlen, "cannot drop privileges: %s", strerror(errno));
			return -1;
		}
		/* setuid from root sets the saved uid too; make sure that is so
		 * (a kernel or a libc that did otherwise must not pass quietly) */
		if (getuid() != p->uid || geteuid() != p->uid || getgid() != p->gid || getegid() != p->gid
		    || (p->uid != 0 && (setuid(0) == 0 || setegid(0) == 0))) {
			snprintf(err, errlen, "privileges not dropped: root could be taken back");
			return -1;
		}
	}
	/* no setuid program run from here (a plugin's helper) gains anything,
	 * and a crash leaves no core with other people's mail in it (nor may
	 * the unprivileged user attach a debugger to read it) */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		snprintf(err, errlen, "prctl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void drop_privileges(const gid_t *extra, size_t nextra)
{
	char err[256];
	if (privs_drop(&M.privs, extra, nextra, err, sizeof err) < 0)
		die("user %s: %s", M.cfg->user, err);
}

static void child_signals(void)
{
	sigset_t none;
	sigemptyset(&none);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	/* the proxy installs its own handler; until then, and in the other
	 * children, a log-rotation signal must not kill */
	signal(SIGUSR1, SIG_IGN);
	/* nor a retired scanner's "drain" (SIGUSR2), before its handler */
	signal(SIGUSR2, SIG_IGN);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static void announce_scanner(void);

/* close_inherited - in a child: the master's descriptors it has no use
 * for (keep: one of them it runs on, or -1) */
static void close_inherited(int keep, int listeners)
{
	int fds[] = { M.proxy_ctl.fd, M.milter_ctl.fd, M.scan_fd, M.pending_fd, M.pending_ready, M.cfg_fd };

	if (!listeners)
		for (unsigned i = 0; i < M.nlfds; i++) close(M.lfds[i]);
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fds[i] >= 0 && fds[i] != keep) close(fds[i]);
}

/* child_config - in a child: the process-wide settings of the config it
 * runs (the master may have loaded a reload's candidate since) */
static void child_config(const struct config *c)
{
	char err[256];

	if (config_set_process(c, err, sizeof err) < 0)
		die("%s", err);
	/* the master takes a reload's log_level only once its scanner is
	 * ready: that scanner was forked before, and logged at the old level
	 * until the next reload */
	log_set_level(c->log_level);
}

/* retry_later - a child that failed or could not start waits 1, 2, 4, 8,
 * 16, then 30 s before the next try (a fork that fails with EAGAIN was
 * tried again on every turn of the loop, up to 20 times a second, each
 * with its log line) */
static void retry_later(struct child *c)
{
	c->fails++;
	c->pid = 0;
	c->restart_at = time(NULL) + (c->fails > 5 ? 30 : 1u << (c->fails - 1));
}

/* start_scanner - the serving scanner: at start, or again after it died.
 * A restart keeps the dead one's listening socket (only the master still
 * holds it: no other scanner can accept from it): a front end's request
 * that came while none was running, on a connection the dead one never
 * accepted, waits in its backlog and is scanned by the new one within its
 * deadline.  A new socket each time made the restart close the old one,
 * and reset those connections: with milter_default_action = accept the
 * milter passed their messages unscanned. */
static pid_t start_scanner(void)
{
	if (M.scan_fd < 0)
		M.scan_fd = scanner_socket(&M.scan_addr, &M.scan_addrlen);
	if (M.scan_fd < 0) {
		slog_errno(NULL, LOG_ERR, "scanner socket");
		retry_later(&M.scanner);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		slog_errno(NULL, LOG_ERR, "fork scanner");
		retry_later(&M.scanner);
		return -1;
	}
	if (pid == 0) {
		child_signals();
		set_proc_title(M.argc, M.argv, "scanner");
		close_inherited(M.scan_fd, 0);
		child_config(M.cfg);
		drop_privileges(NULL, 0);
		child_exit(scanner_main(M.cfg, M.scan_fd));
	}
	M.scanner.pid = pid;
	M.scanner.term_sent = 0;
	M.scanner.started = time(NULL);
	M.gen++;
	slog(NULL, LOG_INFO, "scanner started pid=%d", (int)pid);
	announce_scanner();
	return pid;
}

/* signal_child - kill(), and a failure said: a child that missed its
 * SIGTERM or SIGHUP goes on with its old config or never stops, and the
 * admin must learn why.  ESRCH is not one (the child is already gone, its
 * SIGCHLD on the way).  Said once per child and signal: the SIGKILLs at a
 * stop that hangs are sent again every 5 s. */
static void signal_child(pid_t pid, int sig, const char *role)
{
	static struct { pid_t pid; int sig; } said[8];
	static unsigned next;
	int e;

	if (kill(pid, sig) == 0 || errno == ESRCH)
		return;
	e = errno;
	for (unsigned i = 0; i < sizeof said / sizeof said[0]; i++)
		if (said[i].pid == pid && said[i].sig == sig)
			return;
	said[next].pid = pid;
	said[next].sig = sig;
	next = (next + 1) % (sizeof said / sizeof said[0]);
	errno = e;
	slog_errno(NULL, LOG_ERR, "cannot send SIG%s to the %s pid=%d (errno %d)",
	    sigabbrev_np(sig) ? sigabbrev_np(sig) : "?", role, (int)pid, e);
}

static void add_retiree(struct retiree r)
{
	if (M.nretiring == M.retiring_cap) {
		M.retiring_cap = M.retiring_cap ? 2 * M.retiring_cap : 16;
		M.retiring = xrealloc(M.retiring, M.retiring_cap * sizeof *M.retiring);
	}
	M.retiring[M.nretiring++] = r;
}

/* retire - an old scanner (generation gen) that served: told to drain
 * (SIGUSR2) RETIRE_GRACE_MS after the last front end was sent a newer
 * scanner's address (drain_retirees), never before: a front end that
 * still connects to it would have its scan reset (451).  It ends once it
 * has answered what it has, or when no front end waits for that any
 * longer (scanner.h). */
static void retire(pid_t old, unsigned long gen)
{
	add_retiree((struct retiree){ .pid = old, .gen = gen, .retired_at = monotime_ms() });
}

/* discard - a scanner that never served (a pending one superseded, or
 * the daemon stopping): SIGTERM now, reaped with the retired ones */
static void discard(pid_t pid)
{
	signal_child(pid, SIGTERM, "new scanner");
	add_retiree((struct retiree){ .pid = pid, .drained = 1, .term_sent = 1 });
}

/* frontend_using - the running front end whose last scanner address is
 * generation gen's, or NULL.  Addresses go out in order, so a front end
 * was sent at most one of the old scanners' that it has not moved past:
 * the others (older ones, RETIRE_GRACE_MS after its newer address, and
 * newer ones, never sent while its channel was full) wait for nobody.
 * One not running now learns the current scanner when it starts. */
static const char *frontend_using(unsigned long gen)
{
	if (M.proxy_ctl.fd >= 0 && M.proxy_ctl.sent_gen == gen) return "proxy";
	if (M.milter_ctl.fd >= 0 && M.milter_ctl.sent_gen == gen) return "milter";
	return NULL;
}

/* drain_retirees - SIGUSR2 to the old scanners no front end uses any
 * longer (retire): at most one a front end waits, however many reloads a
 * front end that does not read its control channel misses */
static void drain_retirees(long long now_ms)
{
	for (size_t i = 0; i < M.nretiring; i++) {
		struct retiree *r = &M.retiring[i];
		if (r->drained) continue;
		const char *user = r->drain_at == 0 ? frontend_using(r->gen) : NULL;
		if (r->drain_at == 0 && user == NULL)
			r->drain_at = now_ms + RETIRE_GRACE_MS;
		if (user != NULL && !r->stuck_said && now_ms - r->retired_at >= RETIRE_STUCK_WARN_MS) {
			slog(NULL, LOG_WARNING, "old scanner pid=%d kept for the %s, which has not taken a newer "
			     "scanner's address (nor its config) for %d s", (int)r->pid, user,
			     RETIRE_STUCK_WARN_MS / 1000);
			r->stuck_said = 1;
		}
		if (r->drain_at != 0 && now_ms >= r->drain_at) {
			signal_child(r->pid, SIGUSR2, "old scanner");
			r->drained = 1;
		}
	}
}

/* forget_retiree - pid was reaped: 1 if it was an old scanner */
static int forget_retiree(pid_t pid)
{
	for (size_t i = 0; i < M.nretiring; i++)
		if (M.retiring[i].pid == pid) {
			M.retiring[i] = M.retiring[--M.nretiring];
			return 1;
		}
	return 0;
}

static void pending_close(void)
{
	if (M.pending_fd >= 0) close(M.pending_fd);
	if (M.pending_ready >= 0) close(M.pending_ready);
	M.pending_fd = M.pending_ready = -1;
	M.pending = 0;
}

/* drop_candidate - the reload's config goes with its scanner: the
 * serving config stays for everyone (restarts, the front ends) */
static void drop_candidate(const char *why)
{
	if (why != NULL)
		slog(NULL, LOG_ERR, "reload: %s; keeping the running config (the scanner in service, "
		     "its restarts and the front ends keep it)", why);
	config_unref(M.cand);
	M.cand = NULL;
}

/* start_pending_scanner - reload: a new scanner with the candidate config
 * beside the running one; the switch happens in check_pending() once it
 * is ready */
static void start_pending_scanner(void)
{
	int rp[2];
	if (pipe2(rp, O_CLOEXEC) < 0) {
		slog_errno(NULL, LOG_ERR, "pipe");
		drop_candidate("cannot start the new scanner");
		return;
	}
	M.pending_fd = scanner_socket(&M.pending_addr, &M.pending_addrlen);
	M.pending_ready = rp[0];
	if (M.pending_fd < 0) {
		slog_errno(NULL, LOG_ERR, "scanner socket");
		close(rp[1]);
		pending_close();
		drop_candidate("cannot start the new scanner");
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		slog_errno(NULL, LOG_ERR, "fork scanner");
		close(rp[1]);
		pending_close();
		drop_candidate("cannot start the new scanner");
		return;
	}
	if (pid == 0) {
		child_signals();
		set_proc_title(M.argc, M.argv, "scanner");
		close(rp[0]);
		M.pending_ready = -1;
		close_inherited(M.pending_fd, 0);
		scanner_ready_fd = rp[1];
		child_config(M.cand);
		drop_privileges(NULL, 0);
		child_exit(scanner_main(M.cand, M.pending_fd));
	}
	close(rp[1]);
	M.pending = pid;
	slog(NULL, LOG_INFO, "scanner started pid=%d (waits until ready to take over)", (int)pid);
}

/* tell - what a front end is to learn (CTL_WANT_*), sent now if it can be */
static void ctl_flush(struct ctl_end *e, const char *name);
static void tell(unsigned what)
{
	if (M.proxy_ctl.fd >= 0) M.proxy_ctl.want |= what & (CTL_WANT_CONFIG | CTL_WANT_ADDR);
	if (M.milter_ctl.fd >= 0) M.milter_ctl.want |= what;
	ctl_flush(&M.proxy_ctl, "proxy");
	ctl_flush(&M.milter_ctl, "milter");
}

/* check_pending - the pending scanner said ready: its config becomes the
 * running one, the front ends get it and are switched to the scanner, and
 * the old scanner is retired; it died first: its config is dropped */
static void check_pending(void)
{
	struct pollfd p = { .fd = M.pending_ready, .events = POLLIN };
	char c;
	if (M.pending <= 0 || poll(&p, 1, 0) <= 0) return;
	ssize_t n = read(M.pending_ready, &c, 1);
	if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
	if (n != 1) {
		char why[128];
		snprintf(why, sizeof why, "the new scanner pid=%d failed before it was ready", (int)M.pending);
		discard(M.pending);
		pending_close();
		drop_candidate(why);
		return;
	}
	pid_t old = M.scanner.pid;
	unsigned long old_gen = M.gen;
	if (M.scan_fd >= 0) close(M.scan_fd);
	M.scan_fd = M.pending_fd;
	M.scan_addr = M.pending_addr;
	M.scan_addrlen = M.pending_addrlen;
	M.scanner.pid = M.pending;
	M.scanner.started = time(NULL);
	/* a ready scanner serves: a restart the old one's death had put off
	 * is moot (its time left in restart_at kept the stop from ever
	 * sending this one SIGTERM) */
	M.scanner.fails = 0;
	M.scanner.restart_at = 0;
	M.scanner.term_sent = 0;
	M.gen++;
	M.pending_fd = -1;
	close(M.pending_ready);
	M.pending_ready = -1;
	M.pending = 0;
	config_unref(M.cfg);
	M.cfg = M.cand;
	M.cand = NULL;
	if (M.cfg_fd >= 0) close(M.cfg_fd);
	M.cfg_fd = -1;
	log_set_level(M.cfg->log_level);
	stats_reload();
	slog(NULL, LOG_NOTICE, "reload: scanner pid=%d ready, taking over; the front ends get its config",
	     (int)M.scanner.pid);
	tell(CTL_WANT_CONFIG | CTL_WANT_ADDR);
	/* requests already on their way to the old one are still answered */
	if (old > 0) retire(old, old_gen);
	M.reload_not_before = monotime_ms() + RELOAD_SPACING_MS;
}

/* ctl_flush - send e what it still has to learn, in order (the config
 * before the scanner that runs it); a send that would block is tried
 * again on a later turn of the loop, other failures (the front end gone,
 * its restart brings it up to date) end it; others are tried again */
static void ctl_flush(struct ctl_end *e, const char *name)
{
	while (e->fd >= 0 && e->want != 0) {
		struct ctl_msg msg;
		unsigned bit;
		int cfd = -1, rc;

		memset(&msg, 0, sizeof msg);
		if (e->want & CTL_WANT_CONFIG) {
			bit = CTL_WANT_CONFIG;
			msg.len = CTL_CONFIG;
			/* one export a config: sealed, it is the same for both
			 * front ends and for a send tried again */
			if (M.cfg_fd < 0 && (M.cfg_fd = config_export(M.cfg)) < 0) {
				if (!e->failed)
					slog_errno(NULL, LOG_ERR, "cannot pass the config to the %s", name);
				e->failed = 1;
				return;     /* tried again on the next turn */
			}
			cfd = M.cfg_fd;
		} else if (e->want & CTL_WANT_ADDR) {
			bit = CTL_WANT_ADDR;
			msg.len = M.scan_addrlen;
			msg.a = M.scan_addr;
		} else {
			bit = CTL_WANT_REOPEN;
			msg.len = CTL_REOPEN;
		}
		rc = ctl_send(e->fd, &msg, cfd);
		int err = errno;
		if (rc < 0 && (err == EAGAIN || err == EWOULDBLOCK)) return;
		if (rc < 0) {
			int gone = err == EPIPE || err == ECONNRESET;
			if (!e->failed && !gone) {
				errno = err;
				slog_errno(NULL, LOG_ERR, "cannot tell the %s (tried again)", name);
			}
			e->failed = 1;
			/* anything else (ENOBUFS, ENOMEM, ETOOMANYREFS) may pass:
			 * a front end that runs keeps its scanner, not drained
			 * while it still has its address, until it is told */
			if (!gone) return;
			/* EPIPE: it is gone, no old scanner waits on it: its
			 * restart starts with the current scanner */
			e->want = 0;
			e->sent_gen = M.gen;
			return;
		}
		e->want &= ~bit;
		e->failed = 0;
		if (bit == CTL_WANT_ADDR) e->sent_gen = M.gen;
	}
}

/* announce_scanner - the front ends learn where the current scanner
 * listens (a restart of it; a reload's goes with its config) */
static void announce_scanner(void)
{
	tell(CTL_WANT_ADDR);
}

static int run_proxy(int ctl_fd)
{
	proxy_set_control_fd(ctl_fd);
	return proxy_main(M.cfg, M.nloops, M.lfds, &M.scan_addr, M.scan_addrlen);
}

static int run_milter(int ctl_fd)
{
	for (unsigned i = 0; i < M.nlfds; i++) close(M.lfds[i]);
	return milter_main(M.cfg, ctl_fd, &M.scan_addr, M.scan_addrlen);
}

/* start_frontend - fork a front end (proxy or milter) with a control
 * channel from the master (ctlmsg.h): it learns the config and the
 * scanner's address from it after every reload or scanner restart.
 * e gets the master's end. */
static pid_t start_frontend(const char *name, int (*run)(int ctl_fd), struct ctl_end *e,
                            struct child *c)
{
	int ctl[2];
	if (ctl_pair(ctl) < 0) {
		slog_errno(NULL, LOG_ERR, "socketpair");
		retry_later(c);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		slog_errno(NULL, LOG_ERR, "fork %s", name);
		close(ctl[0]);
		close(ctl[1]);
		retry_later(c);
		return -1;
	}
	if (pid == 0) {
		child_signals();
		set_proc_title(M.argc, M.argv, name);
		close(ctl[1]);
		close_inherited(-1, 1);
		child_config(M.cfg);
		/* the milter keeps the one group it must give its socket to */
		gid_t sg;
		struct group *g = run == run_milter && M.cfg->milter_socket_group[0]
		                  ? getgrnam(M.cfg->milter_socket_group) : NULL;
		if (g != NULL) sg = g->gr_gid;
		drop_privileges(g != NULL ? &sg : NULL, g != NULL ? 1 : 0);
		child_exit(run(ctl[0]));
	}
	close(ctl[0]);
	if (e->fd >= 0) close(e->fd);
	/* it starts with the config and scanner of now: nothing to tell */
	*e = (struct ctl_end){ .fd = ctl[1], .sent_gen = M.gen };
	c->pid = pid;
	c->term_sent = 0;
	c->started = time(NULL);
	slog(NULL, LOG_INFO, "%s started pid=%d", name, (int)pid);
	return pid;
}

static pid_t start_proxy(void)
{
	return start_frontend("proxy", run_proxy, &M.proxy_ctl, &M.proxy);
}

static pid_t start_milter(void)
{
	return start_frontend("milter", run_milter, &M.milter_ctl, &M.milter);
}

static void schedule_restart(struct child *c, const char *name, int status)
{
	time_t now = time(NULL);
	if (WIFSIGNALED(status))
		slog(NULL, LOG_ERR, "%s pid=%d killed by signal %d; restarting", name, (int)c->pid, WTERMSIG(status));
	else
		slog(NULL, LOG_ERR, "%s pid=%d exited with status %d; restarting", name, (int)c->pid, WEXITSTATUS(status));
	if (now - c->started < 10) {
		retry_later(c);
	} else {                 /* it had been up a while: at once */
		c->fails = 0;
		c->pid = 0;
		c->restart_at = now;
	}
}

/* stopped - a child gone while the daemon stops: expected, but a crash
 * or a failure then must still reach the log */
static void stopped(struct child *c, const char *name, int status)
{
	if (WIFSIGNALED(status))
		slog(NULL, LOG_ERR, "%s pid=%d killed by signal %d while stopping", name, (int)c->pid,
		     WTERMSIG(status));
	else if (WEXITSTATUS(status) != 0)
		slog(NULL, LOG_ERR, "%s pid=%d exited with status %d while stopping", name, (int)c->pid,
		     WEXITSTATUS(status));
	c->pid = 0;
}

static void reap(int stopping)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (forget_retiree(pid)) {
			slog(NULL, LOG_INFO, "old scanner pid=%d finished", (int)pid);
			continue;
		}
		if (pid == M.retrain) {     /* it logged its own failures */
			M.retrain = 0;
			if (WIFSIGNALED(status) && !stopping)
				slog(NULL, LOG_ERR, "bayes retrain pid=%d killed by signal %d; the stored "
				     "character models stay", (int)pid, WTERMSIG(status));
			continue;
		}
		if (pid == M.pending) {     /* died before it took over */
			char why[128];
			snprintf(why, sizeof why, "the new scanner pid=%d failed before it was ready", (int)pid);
			pending_close();
			drop_candidate(stopping ? NULL : why);
			continue;
		}
		if (pid == M.scanner.pid) {
			if (stopping) stopped(&M.scanner, "scanner", status);
			else schedule_restart(&M.scanner, "scanner", status);
		} else if (pid == M.proxy.pid) {
			stats_frontend_gone(STATS_PROXY);
			if (stopping) stopped(&M.proxy, "proxy", status);
			else schedule_restart(&M.proxy, "proxy", status);
		} else if (pid == M.milter.pid) {
			stats_frontend_gone(STATS_MILTER);
			if (stopping) stopped(&M.milter, "milter", status);
			else if (WIFEXITED(status) && WEXITSTATUS(status) == MILTER_EXIT_CANNOT_LISTEN) {
				/* its socket's directory: every restart would fail the same */
				slog(NULL, LOG_ERR, "milter pid=%d cannot make its socket %s (see above): not "
				     "restarted; mailwarden stops", (int)pid, M.cfg->milter_listen);
				M.milter.pid = 0;
				M.fatal = 1;
			} else schedule_restart(&M.milter, "milter", status);
		}
	}
}

/* SIGUSR1: the front ends reopen the audit log (log rotation).
 * libmilter takes SIGHUP as "stop" and passes no other signal on, so the
 * milter hears of it down its control channel. */
static void reopen_logs(void)
{
	if (M.proxy.pid > 0) signal_child(M.proxy.pid, SIGUSR1, "proxy");
	if (M.milter.pid > 0)
		tell(CTL_WANT_REOPEN);      /* the milter's alone: the proxy had SIGUSR1 */
}

static void prepare_dirs(const struct config *c);

/* settings read once, at the start of the daemon (privileges looked up,
 * the proxy's loops and probe timer set up, the log opened, the milter's
 * socket made): a reload keeps the running value in the config it takes,
 * and says so, so that a child restarted after a crash runs what the
 * others run */
static const struct start_only {
	const char *name;
	size_t off, len;
	int is_str;
} start_only[] = {
#define START_ONLY(f, s) { #f, offsetof(struct config, f), sizeof(((struct config *)0)->f), s }
	START_ONLY(user, 1),
	START_ONLY(proxy_threads, 0),
	START_ONLY(upstream_probe_interval, 0),
	START_ONLY(log, 0),
	START_ONLY(syslog_facility, 1),
	START_ONLY(milter_socket_mode, 1),
	START_ONLY(milter_socket_group, 1),
#undef START_ONLY
};

static void keep_start_only(struct config *c)
{
	for (size_t i = 0; i < sizeof start_only / sizeof start_only[0]; i++) {
		const struct start_only *s = &start_only[i];
		char *now = (char *)M.cfg + s->off, *want = (char *)c + s->off;
		if (s->is_str ? strncmp(now, want, s->len) == 0 : memcmp(now, want, s->len) == 0)
			continue;
		slog(NULL, LOG_WARNING, "reload: %s needs a restart of the daemon; until then the running "
		     "value stays", s->name);
		memcpy(want, now, s->len);
	}
}

/* reload - SIGHUP: the file read again (here, as root: the children run
 * as "user" and never read it) into a candidate config, which a new
 * scanner runs; it becomes everyone's once that scanner is ready
 * (check_pending).  A newer reload supersedes a candidate still waiting. */
static void reload(void)
{
	char err[512];
	struct config *c = config_load(M.path, M.ov, M.nov, err, sizeof err);
	if (c == NULL) {
		slog(NULL, LOG_ERR, "reload failed, keeping the running config: %s", err);
		return;
	}
	/* the listening sockets were bound once, laid out by the running
	 * listeners: a config with others would give a proxy restarted
	 * after a crash one listener's settings on another's socket, or no
	 * socket at all.  Every config keeps the running ones. */
	if (!config_listeners_same(c, M.cfg)) {
		slog(NULL, LOG_WARNING, "reload: listener changes need a restart of the daemon; "
		     "until then the %u running listeners stay as they are", M.cfg->nlisteners);
		memcpy(c->listeners, M.cfg->listeners, sizeof c->listeners);
		c->nlisteners = M.cfg->nlisteners;
	}
	/* the milter keeps the socket it started with until a restart of the
	 * daemon, as the listeners do: a milter restarted after a crash must
	 * not move to an address the MTA does not use */
	if (strcmp(c->milter_listen, M.cfg->milter_listen) != 0) {
		if (M.cfg->milter_listen[0] == '\0')
			slog(NULL, LOG_WARNING, "reload: milter_listen %s needs a restart", c->milter_listen);
		else
			slog(NULL, LOG_WARNING, "reload: milter_listen %s needs a restart; the milter still "
			     "listens on %s", c->milter_listen[0] ? c->milter_listen : "(empty)",
			     M.cfg->milter_listen);
		memcpy(c->milter_listen, M.cfg->milter_listen, sizeof c->milter_listen);
	}
	keep_start_only(c);
	/* a new audit_log or quarantine_dir directory is made (and the
	 * user's) as at the start: the front ends and the scanner, as user,
	 * cannot */
	prepare_dirs(c);
	if (M.pending > 0) {            /* a newer reload supersedes it */
		discard(M.pending);
		pending_close();
		drop_candidate(NULL);
	}
	M.cand = c;
	slog(NULL, LOG_NOTICE, "reloading: a new scanner with the new config; it and the front ends "
	     "take over once it is ready");
	/* the new scanner takes over once ready (check_pending), also when
	 * none is running now: one waiting to be restarted runs the config
	 * that served last, until this one proves itself */
	start_pending_scanner();
}

/* open_dir_at - a directory name in pfd (made if missing, then the
 * user's, 0750).  A link is followed only where root owns the directory
 * that holds it: in one of the user's, it may be the user's doing.
 * *made: it was created here. */
static int open_dir_at(int pfd, const char *name, const char *path, int *made)
{
	struct stat ps;
	int nofollow = fstat(pfd, &ps) < 0 || ps.st_uid != 0 ? O_NOFOLLOW : 0;

	*made = mkdirat(pfd, name, 0750) == 0;
	int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | nofollow);
	if (fd < 0) {
		if (nofollow && (errno == ENOTDIR || errno == ELOOP))
			slog(NULL, LOG_WARNING, "%s: not a directory (a link in a directory root does not "
			     "own is not followed)", path);
		else
			slog_errno(NULL, LOG_WARNING, "%s", path);
		return -1;
	}
	/* through the descriptor: by name, a directory swapped for a link
	 * meanwhile would have root give away whatever it points to */
	if (*made && M.privs.drop && fchown(fd, M.privs.uid, M.privs.gid) < 0)
		slog_errno(NULL, LOG_WARNING, "chown %s", path);
	return fd;
}

/* no_others - mail (entries, the audit log) is nobody else's business: a
 * mode that lets other users in loses those bits, and says so */
static void no_others(int fd, const char *what, const char *path)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || (st.st_mode & 0007) == 0) return;
	if (fchmod(fd, st.st_mode & 07770) < 0)
		slog_errno(NULL, LOG_WARNING, "%s %s is mode %04o, open to every local user, and could not "
		           "be changed", what, path, (unsigned)(st.st_mode & 07777));
	else
		slog(NULL, LOG_WARNING, "%s %s was mode %04o, open to every local user: now %04o", what, path,
		     (unsigned)(st.st_mode & 07777), (unsigned)(st.st_mode & 07770));
}

/* prepare_dir - make path and its missing parents; fd of path, or -1.
 * *made (may be NULL): path itself was made here. */
static int prepare_dir(const char *path, int *made_last)
{
	char buf[600];
	int fd, made = 0;

	if (path[0] != '/' || snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
	if ((fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) return -1;
	for (char *p = buf + 1, *name = p; fd >= 0; p++) {
		if (*p != '/' && *p != '\0') continue;
		char save = *p;
		*p = '\0';
		if (*name != '\0' && strcmp(name, ".") != 0) {
			int next = open_dir_at(fd, name, buf, &made);
			close(fd);
			fd = next;
		}
		*p = save;
		if (save == '\0') break;
		name = p + 1;
	}
	if (made_last != NULL) *made_last = made;
	return fd;
}

/* prepare_milter_dir - the directory of a unix: milter_listen, made
 * (and its missing parents) for "user", who makes the socket in it once
 * dropped: in a directory of root's (the unit's /run/mailwarden) the
 * milter could not, and was restarted forever.  Made here, its group is
 * milter_socket_group, so that the MTA may reach the socket (0750). */
static void prepare_milter_dir(const struct config *c)
{
	const char *path = milter_socket_path(c), *slash;
	char dir[600];
	int fd, made = 0;

	if (path == NULL || path[0] != '/' || (slash = strrchr(path, '/')) == path)
		return;
	if (snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path) >= (int)sizeof dir) return;
	if ((fd = prepare_dir(dir, &made)) < 0) return;
	if (made && c->milter_socket_group[0] != '\0') {
		struct group *g = getgrnam(c->milter_socket_group);
		if (g != NULL && fchown(fd, (uid_t)-1, g->gr_gid) < 0)
			slog_errno(NULL, LOG_WARNING, "chgrp %s %s", c->milter_socket_group, dir);
	}
	close(fd);
}

static void prepare_dirs(const struct config *c)
{
	char dir[600];
	int fd;

	if (c->audit_log[0] != '\0' && snprintf(dir, sizeof dir, "%s", c->audit_log) < (int)sizeof dir) {
		char *slash = strrchr(dir, '/');
		if (slash != NULL && slash != dir) {
			*slash = '\0';
			if ((fd = prepare_dir(dir, NULL)) >= 0) {
				int lfd = openat(fd, slash + 1, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
				struct stat st;
				if (lfd >= 0 && fstat(lfd, &st) == 0 && S_ISREG(st.st_mode))
					no_others(lfd, "audit_log", c->audit_log);
				if (lfd >= 0) close(lfd);
				close(fd);
			}
		}
	}
	/* the store holds Bayes tokens (words of the mail) and greylisting's
	 * addresses: an existing one open to others is closed too */
	if (c->store_path[0] != '\0') {
		int sfd = open(c->store_path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		struct stat st;
		if (sfd >= 0 && fstat(sfd, &st) == 0 && S_ISREG(st.st_mode))
			no_others(sfd, "store_path", c->store_path);
		if (sfd >= 0) close(sfd);
	}
	if (c->quarantine_dir[0] != '\0' && (fd = prepare_dir(c->quarantine_dir, NULL)) >= 0) {
		struct stat st;
		no_others(fd, "quarantine_dir", c->quarantine_dir);
		if (M.privs.drop && fstat(fd, &st) == 0 && st.st_uid != M.privs.uid
		    && !(st.st_gid == M.privs.gid && (st.st_mode & 0030) == 0030))
			slog(NULL, LOG_WARNING, "quarantine_dir %s belongs to uid %u: user %s cannot store "
			     "messages in it", c->quarantine_dir, (unsigned)st.st_uid, c->user);
		close(fd);
	}
	prepare_milter_dir(c);
}

/* fork_chore - a child of the master's for one job as the user: 0 in the
 * child (signals back to their defaults, titled NAME, the master's
 * descriptors closed, dropped), its pid here, -1 (logged: "fork WHAT") */
static pid_t fork_chore(const char *name, const char *what)
{
	pid_t pid = fork();
	if (pid < 0) {
		slog_errno(NULL, LOG_ERR, "fork %s", what);
		return -1;
	}
	if (pid == 0) {
		child_signals();
		set_proc_title(M.argc, M.argv, name);
		close_inherited(-1, 0);
		drop_privileges(NULL, 0);
	}
	return pid;
}

/* expire_quarantine - quarantine_max_age, done as the user that owns the
 * entries: root has no business walking a directory a compromised
 * scanner can rearrange */
static void expire_quarantine(void)
{
	if (M.cfg->quarantine_max_age == 0 || M.cfg->quarantine_dir[0] == '\0') return;
	if (!M.privs.drop) {
		quarantine_expire_run(M.cfg);
		return;
	}
	if (fork_chore("expiry", "quarantine expiry") == 0) {
		quarantine_expire_run(M.cfg);
		child_exit(0);
	}
	/* reaped by reap() with the others: it is none of them */
}

/* start_retrain - bayes_retrain_interval: the character models trained
 * again if their examples changed, in a child of its own, as the user,
 * so that neither the master's loop nor the scanner's mail waits on it;
 * one at a time (a training longer than the interval is not doubled) */
static void start_retrain(void)
{
	if (M.retrain > 0 || !bayes_retrain_wanted(M.cfg)) return;
	pid_t pid = fork_chore("retrain", "bayes retrain");
	if (pid == 0)
		child_exit(bayes_retrain(M.cfg) < 0 ? 1 : 0);
	if (pid > 0)
		M.retrain = pid;
}

void master_prepare(struct config *cfg)
{
	char err[512];

	memset(&M, 0, sizeof M);
	M.cfg = cfg;
	if (privs_lookup(cfg->user, &M.privs, err, sizeof err) < 0) die("%s", err);
	if (geteuid() == 0 && cfg->user[0] == '\0')
		slog(NULL, LOG_WARNING, "running as root with no \"user\": the proxy, the scanner and "
		     "the milter keep root while they parse other people's mail; set user = an "
		     "unprivileged system user");
	prepare_dirs(cfg);
}

#define SIGBIT(sig) (1u << (sig))

/* take_signals - the signals of mask that came, waiting up to ts for the
 * first: all of them, as SIGBIT()s.  sigtimedwait takes the lowest
 * numbered first, so one at a time a burst of SIGHUPs (1) was taken
 * before the SIGCHLD (17) that came with it. */
static unsigned take_signals(const sigset_t *mask, const struct timespec *ts)
{
	static const struct timespec now = { 0, 0 };
	unsigned sigs = 0;
	int sig = sigtimedwait(mask, NULL, ts);

	while (sig > 0 && sig < 32) {
		sigs |= SIGBIT(sig);
		sig = sigtimedwait(mask, NULL, &now);
	}
	return sigs;
}

int master_run(struct config *cfg, const char *config_path, const char *const *overrides,
               size_t noverrides, int argc, char **argv)
{
	char err[512];
	memset(&M, 0, sizeof M);
	M.cfg = cfg;
	M.path = config_path;
	M.ov = overrides;
	M.nov = noverrides;
	M.argc = argc;
	M.argv = argv;
	M.scan_fd = -1;
	/* -1, not memset's 0: a 0 here made the master announce scanner
	 * addresses into its stdin and close it when the milter started */
	M.proxy_ctl.fd = M.milter_ctl.fd = -1;
	M.pending_fd = M.pending_ready = M.cfg_fd = -1;

	if (privs_lookup(cfg->user, &M.privs, err, sizeof err) < 0) die("%s", err);
	/* one socket per listener and proxy loop, so that the kernel spreads
	 * connections over the loops instead of waking them all */
	M.nloops = proxy_loop_count(cfg);
	for (unsigned i = 0; i < cfg->nlisteners; i++) {
		struct netaddr a;
		if (netaddr_parse(cfg->listeners[i].listen, 1, &a, err, sizeof err) < 0)
			die("listener %s: %s", cfg->listeners[i].name, err);
		for (unsigned k = 0; k < M.nloops; k++) {
			int fd = netaddr_listen(&a, 1024, M.nloops > 1, err, sizeof err);
			if (fd < 0) die("listener %s: %s", cfg->listeners[i].name, err);
			int one = 1;
			/* TPROXY hands over connections to addresses that are not ours */
			if (cfg->listeners[i].transparent &&
			    setsockopt(fd, a.ss.ss_family == AF_INET6 ? SOL_IPV6 : SOL_IP,
			               a.ss.ss_family == AF_INET6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, &one, sizeof one) < 0)
				slog_errno(NULL, LOG_WARNING, "listener %s: IP_TRANSPARENT (TPROXY needs it; REDIRECT does not)",
				           cfg->listeners[i].name);
			M.lfds[k * cfg->nlisteners + i] = fd;
		}
	}
	M.nlfds = M.nloops * cfg->nlisteners;

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (start_scanner() < 0) die("cannot start the scanner");
	int want_proxy = cfg->nlisteners > 0, want_milter = cfg->milter_listen[0] != '\0';
	if (want_proxy && start_proxy() < 0) die("cannot start the proxy");
	if (want_milter && start_milter() < 0) die("cannot start the milter");
	slog(NULL, LOG_NOTICE, "mailwarden started: %u listeners%s%s", cfg->nlisteners,
	     want_milter ? ", milter on " : "", want_milter ? cfg->milter_listen : "");

	int stopping = 0;
	time_t stop_deadline = 0, next_expiry = 0, next_retrain = time(NULL) + cfg->bayes_retrain_interval;
	for (;;) {
		/* a reload's scanner getting ready, a reload put off, or a front
		 * end yet to be told something (its channel was full): look
		 * again soon */
		int soon = M.pending > 0 || M.reload_wanted || M.proxy_ctl.want || M.milter_ctl.want;
		struct timespec ts = { soon ? 0 : 1, soon ? 50000000 : 0 };
		unsigned sigs = take_signals(&mask, &ts);
		time_t now = time(NULL);
		long long now_ms = monotime_ms();
		/* every turn: a SIGCHLD that came with others is not lost */
		reap(stopping);
		if (M.pending > 0 && stopping) {
			discard(M.pending);
			pending_close();
			drop_candidate(NULL);
		}
		if (M.pending > 0) check_pending();
		ctl_flush(&M.proxy_ctl, "proxy");
		ctl_flush(&M.milter_ctl, "milter");
		if (((sigs & (SIGBIT(SIGTERM) | SIGBIT(SIGINT))) || M.fatal) && !stopping) {
			stopping = 1;
			stop_deadline = now + M.cfg->shutdown_timeout / 1000 + 5;
			slog(NULL, LOG_NOTICE, "stopping");
			for (unsigned i = 0; i < M.nlfds; i++) close(M.lfds[i]);
			/* the front ends first: their transactions in flight still
			 * need the scanner; the scanners go once they are gone */
			if (M.proxy.pid > 0) signal_child(M.proxy.pid, SIGTERM, "proxy");
			if (M.milter.pid > 0) {
				/* the end of its control channel stops the milter at once
				 * (libmilter notices its own SIGTERM only every 5 s) */
				if (M.milter_ctl.fd >= 0) close(M.milter_ctl.fd);
				M.milter_ctl = (struct ctl_end){ .fd = -1 };
				signal_child(M.milter.pid, SIGTERM, "milter");
			}
			M.proxy.restart_at = M.milter.restart_at = 0;
			/* a training left half done stores nothing; its lock expires */
			if (M.retrain > 0) signal_child(M.retrain, SIGTERM, "retrain");
		}
		if (stopping && M.proxy.pid == 0 && M.milter.pid == 0) {
			/* a flag of its own: restart_at, which served as one, could
			 * still hold the time of a restart put off before a
			 * reload's scanner took over, and this one never got it */
			if (M.scanner.pid > 0 && !M.scanner.term_sent) {
				signal_child(M.scanner.pid, SIGTERM, "scanner");
				M.scanner.term_sent = 1;
			}
			/* a stop cuts the old scanners' drain to shutdown_timeout */
			for (size_t i = 0; i < M.nretiring; i++)
				if (!M.retiring[i].term_sent) {
					signal_child(M.retiring[i].pid, SIGTERM, "old scanner");
					M.retiring[i].term_sent = 1;
				}
		}
		if (!stopping) drain_retirees(now_ms);
		if ((sigs & SIGBIT(SIGHUP)) && !stopping) {
			if (!M.reload_wanted && now_ms < M.reload_not_before)
				slog(NULL, LOG_INFO, "reload: put off %lld ms (reloads come at least %d ms apart; "
				     "the file is read then)", M.reload_not_before - now_ms, RELOAD_SPACING_MS);
			M.reload_wanted = 1;
		}
		if (M.reload_wanted && !stopping && now_ms >= M.reload_not_before) {
			M.reload_wanted = 0;
			M.reload_not_before = now_ms + RELOAD_SPACING_MS;
			reload();
		}
		if ((sigs & SIGBIT(SIGUSR1)) && !stopping) reopen_logs();
		if (stopping) {
			int left = M.proxy.pid > 0 || M.scanner.pid > 0 || M.milter.pid > 0 || M.retrain > 0
			           || M.nretiring > 0;
			if (!left) break;
			if (now > stop_deadline) {
				slog(NULL, LOG_WARNING, "children did not stop in time: killing them");
				if (M.proxy.pid > 0) signal_child(M.proxy.pid, SIGKILL, "proxy");
				if (M.milter.pid > 0) signal_child(M.milter.pid, SIGKILL, "milter");
				if (M.scanner.pid > 0) signal_child(M.scanner.pid, SIGKILL, "scanner");
				if (M.retrain > 0) signal_child(M.retrain, SIGKILL, "retrain");
				for (size_t i = 0; i < M.nretiring; i++)
					signal_child(M.retiring[i].pid, SIGKILL, "old scanner");
				stop_deadline = now + 5;
			}
			continue;
		}
		if (now >= next_expiry) {       /* quarantine_max_age */
			expire_quarantine();
			next_expiry = now + M.cfg->quarantine_expire_interval / 1000;
		}
		if (now >= next_retrain) {      /* bayes_retrain_interval */
			start_retrain();
			next_retrain = now + (M.cfg->bayes_retrain_interval ? M.cfg->bayes_retrain_interval : 60);
		}
		if (M.scanner.pid == 0 && M.scanner.restart_at <= now) {
			M.scanner.restart_at = 0;
			start_scanner();
		}
		if (want_proxy && M.proxy.pid == 0 && M.proxy.restart_at <= now) {
			M.proxy.restart_at = 0;
			start_proxy();
		}
		if (want_milter && M.milter.pid == 0 && M.milter.restart_at <= now) {
			M.milter.restart_at = 0;
			start_milter();
		}
	}
	slog(NULL, LOG_NOTICE, "mailwarden stopped");
	return M.fatal ? 1 : 0;
}
