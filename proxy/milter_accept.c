/* milter_accept.c - libmilter's accept() and close(), paced and counted
 * (milter_accept.h).
 *
 * Why here: libmilter's listener (listener.c, mi_listener) treats EMFILE,
 * ENFILE, ENOBUFS and ENOMEM from accept() like EINTR: "continue", with no
 * pause.  The MTA's connection stays in the backlog, poll() says readable
 * again at once, and the thread spins (2.95 s of CPU in 3 s, measured
 * with prlimit on the milter) while MTA connections wait unserved.  And it
 * starts a worker for every connection without bound, so a peer opening
 * connections faster than milter_peer_timeout drops them reaches the
 * thread limit, past which libmilter leaves a connection with no worker
 * and no timeout (README "Stalled and silent peers").
 *
 * The listener is one thread, the only caller of accept() in the milter
 * process; close() is called from every thread, ours included. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "episode.h"
#include "log.h"
#include "milter_accept.h"
#include "stats.h"

int __real_accept(int fd, struct sockaddr *sa, socklen_t *len);
int __real_close(int fd);
int __wrap_accept(int fd, struct sockaddr *sa, socklen_t *len);
int __wrap_close(int fd);

/* the same pacing as the proxy's listener (listener.c): one try per
 * pause, and the episode in three kinds of log line (episode.h) */
#define STARVED_PAUSE_MS 100
/* descriptors past this are not counted (a limit above a million) */
#define TRACK_MAX        (1u << 20)

static atomic_bool tracking;
static atomic_uint max_open;
static atomic_uint nopen;
static _Atomic unsigned char *is_open;    /* by descriptor: accepted here, not yet closed */
static unsigned ntrack;

/* listener thread only */
static int spare_fd = -1;                  /* held for the one refusal of each pause */

/* counts: connections closed unserved */
static struct episode starved_ep, full_ep;

void milter_accept_start(unsigned max_connections)
{
	struct rlimit rl;

	ntrack = TRACK_MAX;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < TRACK_MAX)
		ntrack = (unsigned)rl.rlim_cur;
	is_open = calloc(ntrack, sizeof(*is_open));
	if (is_open == NULL) {
		slog(NULL, LOG_ERR, "milter: no memory to count connections: milter_max_connections not enforced");
		return;
	}
	spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	atomic_store(&max_open, max_connections);
	atomic_store(&tracking, 1);
}

void milter_accept_set_max(unsigned max_connections)
{
	atomic_store(&max_open, max_connections);
}

static void track(int fd)
{
	if (fd >= 0 && (unsigned)fd < ntrack && !atomic_exchange(&is_open[fd], 1))
		atomic_fetch_add(&nopen, 1);
}

/* a connection is forgotten before its descriptor is closed: once closed,
 * the number may be accepted again at once, and counted anew */
static void untrack(int fd)
{
	if (fd >= 0 && (unsigned)fd < ntrack && atomic_exchange(&is_open[fd], 0))
		atomic_fetch_sub(&nopen, 1);
}

static void over(struct episode *ep, const char *what)
{
	unsigned long refused;
	long long secs;

	if (episode_end(ep, episode_now_ms(), &refused, &secs))
		slog(NULL, LOG_NOTICE, "milter: accepting again (%lu MTA connection(s) closed unserved %s "
		     "in the last %lld s)", refused, what, secs);
}

/* out of descriptors: close one waiting connection through the reserve
 * (the MTA then applies its milter_default_action at once, instead of
 * waiting out its connect timeout in our backlog), and rest */
static void starved(int listen_fd, int err)
{
	struct timespec pause = { 0, STARVED_PAUSE_MS * 1000000L };
	unsigned long refused;
	long long secs;
	struct pollfd waiting = { .fd = listen_fd, .events = POLLIN };

	/* only when a connection waits: the listening socket may block, and
	 * a listener blocked in accept() would not see the milter's stop */
	if (spare_fd >= 0 && poll(&waiting, 1, 0) == 1) {
		__real_close(spare_fd);
		int c = __real_accept(listen_fd, NULL, NULL);
		if (c >= 0) {
			starved_ep.count++;
			stats_refused(STATS_MILTER);
			__real_close(c);
		}
		/* no reserve until one frees, if another thread took the slot */
		spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	switch (episode_step(&starved_ep, episode_now_ms(), &refused, &secs)) {
	case EPISODE_STARTS: {
		struct rlimit rl;
		getrlimit(RLIMIT_NOFILE, &rl);
		slog(NULL, LOG_WARNING, "milter: accept: %s: new MTA connections are closed until descriptors "
		     "free (%u connection(s) open; open files limit %llu)", strerror(err),
		     atomic_load(&nopen), (unsigned long long)rl.rlim_cur);
		break;
	}
	case EPISODE_LASTS:
		slog(NULL, LOG_WARNING, "milter: still out of descriptors: %lu MTA connection(s) closed in %lld s",
		     refused, secs);
		break;
	case EPISODE_QUIET:
		break;
	}
	nanosleep(&pause, NULL);
}

/* past milter_max_connections: the connection is closed at once, so the
 * MTA applies its milter_default_action to that SMTP session (Postfix:
 * tempfail) rather than queue behind the others */
static int refuse_past_max(int c, unsigned max)
{
	unsigned long refused;
	long long secs;

	/* counted before the close: whoever sees the close sees it counted */
	full_ep.count++;
	stats_refused(STATS_MILTER);
	__real_close(c);
	switch (episode_step(&full_ep, episode_now_ms(), &refused, &secs)) {
	case EPISODE_STARTS:
		slog(NULL, LOG_WARNING, "milter: %u MTA connections open (milter_max_connections): "
		     "new ones are closed until some end", max);
		break;
	case EPISODE_LASTS:
		slog(NULL, LOG_WARNING, "milter: still at milter_max_connections %u: %lu MTA connection(s) "
		     "closed in %lld s", max, refused, secs);
		break;
	case EPISODE_QUIET:
		break;
	}
	/* libmilter goes on to its next poll() without a word on this one */
	errno = ECONNABORTED;
	return -1;
}

int __wrap_accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	if (!atomic_load(&tracking))
		return __real_accept(fd, sa, len);
	int c = __real_accept(fd, sa, len);
	if (c < 0) {
		int err = errno;
		if (episode_accept_starved(err))
			starved(fd, err);
		errno = err;
		return -1;
	}
	over(&starved_ep, "for lack of descriptors");
	unsigned max = atomic_load(&max_open);
	if (max > 0 && atomic_load(&nopen) >= max)
		return refuse_past_max(c, max);
	over(&full_ep, "at milter_max_connections");
	track(c);
	return c;
}

int __wrap_close(int fd)
{
	if (atomic_load(&tracking))
		untrack(fd);
	return __real_close(fd);
}
