/* milter.h - the milter front end: the same scanner and pipeline for
 * Postfix (smtpd_milters / non_smtpd_milters) and Sendmail, through
 * libmilter.  libmilter owns its signals (SIGTERM/SIGHUP stop it) and
 * process-global state, so the front end is a process of its own, forked
 * by the master when milter_listen is set.
 *
 * Per message it gathers what the MTA sends (connect info, macros, HELO,
 * envelope, header fields, body) into a sealed memfd and the same scan
 * request the proxy builds, asks the scanner (scansync.c), and maps the
 * result onto milter actions (milter_result.c).  It answers within
 * milter_timeout, with milter_default_action when the scanner is down or
 * late.  With milter_early, each RCPT gets an envelope-only scan so a hard
 * verdict (SPF fail, greylisting) refuses the recipient before DATA. */
#ifndef MW_MILTER_H
#define MW_MILTER_H

#include <sys/socket.h>
#include <sys/un.h>

#include "config.h"

/* a message on the master's control pipe: the address of a new scanner
 * generation (len > 0), MILTER_CTL_RELOAD (len == 0): the master
 * reloaded, read the configuration again (libmilter takes SIGHUP as
 * "stop", so the milter cannot get the proxy's signal), or
 * MILTER_CTL_REOPEN: reopen the audit log (the master's SIGUSR1, log
 * rotation) */
struct milter_ctl {
	socklen_t len;
	struct sockaddr_un a;
};
#define MILTER_CTL_RELOAD 0
#define MILTER_CTL_REOPEN ((socklen_t)~0u)

/* milter_main - run the milter until SIGTERM (or the master's end of the
 * control pipe ctl_fd).  config_path and overrides are what the daemon was
 * started with: a reload reads them again.  Returns the process exit
 * status. */
int milter_main(struct config *cfg, int ctl_fd, const struct sockaddr_un *scan_addr,
                socklen_t scan_addrlen, const char *config_path,
                const char *const *overrides, size_t noverrides);

#endif
