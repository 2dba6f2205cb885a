/* as_user.h - work done in a child process that dropped to "user": the
 * root tools (`mailwarden -t`, `learn`, `scan` started as root) run what
 * touches the store, the rules cache or the message's parsing as the user
 * the daemon's scanner runs as, never as root. */
#ifndef MW_AS_USER_H
#define MW_AS_USER_H

#include <stddef.h>

#include "config.h"
#include "master.h"

/* run_as_user - fork; the child becomes pv (privs_drop, no supplementary
 * group) and runs child(carg, err, errlen), whose result is its exit
 * status; what a child that fails (non-zero) leaves in err comes back in
 * the caller's err.  Meanwhile parent(parg) runs here, if not NULL (it may
 * feed the child through a socket made before).  stdio is flushed before
 * the fork and in the child before it ends.
 * 0 once the child was reaped: *status its wait status, err what it said
 * ("" if nothing; a child that could not drop says why and exits 1).
 * -1 with the reason in err if no child ran or it could not be waited
 * for (parent did not run if none ran). */
int run_as_user(const struct privs *pv, int (*child)(void *carg, char *err, size_t errlen), void *carg,
                void (*parent)(void *parg), void *parg, int *status, char *err, size_t errlen);

/* as_user - fn(cfg, err, errlen) run as "user": in a child that dropped
 * to it when that takes a switch, else here.  Whatever fn creates (the
 * store, the rules cache) then belongs to the user the scanner runs as.
 * Not root: fn runs here, as whoever runs it.
 * fn's result (0 or -1, err filled), or -1 if the child could not run. */
int as_user(struct config *cfg, int (*fn)(struct config *, char *, size_t), char *err, size_t errlen);

/* child_exit - the end of a forked child: _exit(status), not exit() (the
 * parent's atexit handlers and stdio buffers are not its own), after
 * LeakSanitizer's check in a SANITIZE=1 build */
_Noreturn void child_exit(int status);

#endif
