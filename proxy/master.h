/* master.h - the master process: binds the sockets, forks and supervises
 * the proxy and the scanner, restarts a child that dies, and turns
 * SIGTERM/SIGHUP into an orderly stop or reload. */
#ifndef MW_MASTER_H
#define MW_MASTER_H

#include "config.h"

/* master_run - never returns to serve; returns the exit code when stopped.
 * argv: main's, for process titles of the children. */
int master_run(struct config *cfg, const char *config_path, const char *const *overrides,
               size_t noverrides, int argc, char **argv);

/* set_proc_title - "mailwarden: NAME" in ps and /proc/PID/comm */
void set_proc_title(int argc, char **argv, const char *name);

#endif
