/* scanner.h - the scanner process, and "mailwarden scan".
 *
 * The scanner serves scan requests (proxy/scanproto.h) from front ends
 * (the proxy, the milter) that connect to its unix socket.  Its contract
 * with them:
 *   - Only peers with our uid or uid 0 (SO_PEERCRED) are served.
 *   - Each request packet must carry the message fd; a packet that is not
 *     a valid request closes that connection (logged).
 *   - Results come back on the connection the request came from, in any
 *     order, one packet each.  When scanner_queue requests are already
 *     waiting (beyond the idle threads), the answer is immediate: action
 *     tempfail, error "scanner busy".
 *   - SIGTERM (and SIGINT): the scanner stops accepting, shuts the read
 *     side of every connection (a front end's next send fails with EPIPE:
 *     time to reconnect, the listening socket stays with the master),
 *     still scans what it had received and sends those results, then
 *     closes.  Requests not started by the shutdown_timeout deadline get
 *     tempfail, error "scanner shutting down".  Exit code 0.
 *   - SIGUSR2 (the master retiring it after a reload): the same, but for
 *     as long as a front end may still wait for an answer (the longer of
 *     scan_timeout and milter_timeout, and a margin); a SIGTERM after it
 *     cuts that to shutdown_timeout from then.
 *   - SIGHUP and SIGPIPE are ignored (the master restarts the scanner to
 *     reload).
 */
#ifndef MW_SCANNER_H
#define MW_SCANNER_H

#include "proxy/config.h"

/* scanner_ready_fd - when >= 0 (set by the master in the child before
 * scanner_main), scanner_main writes one byte to it and closes it once the
 * pipeline is built (filters set up: the antivirus engine loaded): a
 * reload switches the proxy to a new scanner only then.  A scanner that
 * cannot build its pipeline exits without writing (EOF). */
extern int scanner_ready_fd;

/* scanner_main - the body of the scanner process.  listen_fd: a bound,
 * listening SOCK_SEQPACKET unix socket (made non-blocking here; not
 * closed at exit, the master owns its copy).  Builds the pipeline, serves
 * until SIGTERM, returns the exit code (0; 1 if the pipeline could not be
 * built or setup failed).  Call once per process, from its only thread. */
int scanner_main(struct config *cfg, int listen_fd);

/* scan_command - "mailwarden scan [--from A] [--rcpt B]... [--client-ip IP]
 * [--helo H] [--direction inbound|outbound] FILE.eml" (argv[0] is "scan";
 * FILE "-" is stdin).  LF line ends become CRLF, a leading mbox "From "
 * line is dropped; the pipeline runs in-process, never stores into the
 * quarantine, and the result is printed as JSON (valid UTF-8) on stdout.
 * Returns the exit code: 0, or 1 after one line on stderr (bad usage,
 * unreadable file, pipeline or scan failure). */
int scan_command(struct config *cfg, int argc, char **argv);

#endif
