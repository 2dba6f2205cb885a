/* as_user.c - see as_user.h */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "as_user.h"

/* LeakSanitizer looks for leaks at exit(), and the children end with
 * _exit(), so in a SANITIZE=1 build a child asks for the check itself
 * before it goes.  Weak: a plain build has no such symbol (NULL). */
extern void __lsan_do_leak_check(void) __attribute__((weak));

_Noreturn void child_exit(int status)
{
	if (__lsan_do_leak_check != NULL)
		__lsan_do_leak_check();
	_exit(status);
}

int run_as_user(const struct privs *pv, int (*child)(void *carg, char *err, size_t errlen), void *carg,
                void (*parent)(void *parg), void *parg, int *status, char *err, size_t errlen)
{
	int ep[2];
	size_t got = 0;

	/* the child's reason for failing comes back on a pipe: it is written
	 * once, shorter than the pipe's buffer, so the child never waits on
	 * a parent still busy feeding it */
	if (pipe2(ep, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	/* what stdio holds now is the parent's, not to be written twice */
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(ep[0]);
		close(ep[1]);
		return -1;
	}
	if (pid == 0) {
		int rc;

		close(ep[0]);
		err[0] = '\0';
		rc = privs_drop(pv, NULL, 0, err, errlen) < 0 ? 1 : child(carg, err, errlen);
		if (rc != 0 && err[0] != '\0') {
			ssize_t w = write(ep[1], err, strnlen(err, errlen - 1));
			(void)w;
		}
		fflush(NULL);
		child_exit(rc);
	}
	close(ep[1]);
	if (parent != NULL)
		parent(parg);
	for (;;) {
		ssize_t n = read(ep[0], err + got, errlen - 1 - got);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) break;
		got += (size_t)n;
		if (got == errlen - 1) break;
	}
	err[got] = '\0';
	close(ep[0]);
	while (waitpid(pid, status, 0) < 0)
		if (errno != EINTR) {
			snprintf(err, errlen, "waitpid: %s", strerror(errno));
			return -1;
		}
	return 0;
}

struct check_call {
	struct config *cfg;
	int (*fn)(struct config *, char *, size_t);
};

static int check_child(void *arg, char *err, size_t errlen)
{
	struct check_call *c = arg;

	return c->fn(c->cfg, err, errlen) < 0 ? 1 : 0;
}

int as_user(struct config *cfg, int (*fn)(struct config *, char *, size_t), char *err, size_t errlen)
{
	struct check_call call = { cfg, fn };
	struct privs p;
	int status;

	/* not root: nothing to switch to; "-t" by an unprivileged admin checks
	 * as that admin, as it always did (the daemon says it cannot switch) */
	if (geteuid() != 0) return fn(cfg, err, errlen);
	if (privs_lookup(cfg->user, &p, err, errlen) < 0) return -1;
	if (!p.drop) return fn(cfg, err, errlen);
	if (run_as_user(&p, check_child, &call, NULL, NULL, &status, err, errlen) < 0) return -1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
	if (err[0] == '\0')
		snprintf(err, errlen, "the check as user %s %s %d", cfg->user,
		         WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
		         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	return -1;
}
