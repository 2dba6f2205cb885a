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

/* milter_main - run the milter until SIGTERM (or the end of the master's
 * control channel ctl_fd, ctlmsg.h: libmilter takes SIGHUP as "stop", so
 * the milter hears of reloads, new scanners and log rotation there, and
 * gets each reload's config from the master rather than reading the file).
 * Returns the process exit status. */
int milter_main(struct config *cfg, int ctl_fd, const struct sockaddr_un *scan_addr,
                socklen_t scan_addrlen);

/* the milter's exit status when its unix: socket cannot be made where
 * milter_listen says (EX_CONFIG): no restart can help, the master stops */
#define MILTER_EXIT_CANNOT_LISTEN 78

/* milter_socket_path - the file of a unix: (or local:) milter_listen,
 * else NULL */
const char *milter_socket_path(const struct config *cfg);

/* milter_socket_dir_check - can this process make the unix: socket of
 * milter_listen (write and search its directory)?  Run as "user", where
 * the milter makes it.  A directory that does not exist yet is fine with
 * missing_ok (the master, as root, makes it at start).  0, or -1 with
 * why, the directory's owner and mode and what to do in err. */
int milter_socket_dir_check(const struct config *cfg, int missing_ok, char *err, size_t errlen);

#endif
