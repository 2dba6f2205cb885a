/* master.h - the master process: binds the sockets, forks and supervises
 * the proxy and the scanner, restarts a child that dies, and turns
 * SIGTERM/SIGHUP into an orderly stop or reload. */
#ifndef MW_MASTER_H
#define MW_MASTER_H

#include <sys/types.h>

#include "config.h"

/* the unprivileged identity of the children ("user"); drop = 0: stay */
struct privs {
	uid_t uid;
	gid_t gid;
	int   drop;
};

/* privs_lookup - the identity "user" names.  Started as root: drop = 1.
 * Started as that user already: drop = 0.  Started as anybody else: -1
 * (it cannot switch), with the reason in err. */
int privs_lookup(const char *user, struct privs *p, char *err, size_t errlen);

/* privs_drop - in a child: become p (no supplementary group but the
 * extra ones, gid before uid, every result checked, root verified gone),
 * then PR_SET_NO_NEW_PRIVS and PR_SET_DUMPABLE 0 whether dropped or not.
 * -1 with the reason in err: the caller must not go on. */
int privs_drop(const struct privs *p, const gid_t *extra, size_t nextra, char *err, size_t errlen);

/* master_run - never returns to serve; returns the exit code when stopped.
 * argv: main's, for process titles of the children. */
int master_run(struct config *cfg, const char *config_path, const char *const *overrides,
               size_t noverrides, int argc, char **argv);

/* master_prepare - as root, before the filters are first set up: the
 * directories of audit_log and quarantine_dir (and so of the store, by
 * default beside the quarantine) made and given to "user"; what is open
 * to other users closed.  Dies if "user" cannot be had. */
void master_prepare(struct config *cfg);

/* set_proc_title - "mailwarden: NAME" in ps and /proc/PID/comm */
void set_proc_title(int argc, char **argv, const char *name);

#endif
