/* ctlmsg.h - the master's control channel to a front end (the proxy, the
 * milter): a SOCK_SEQPACKET socketpair, one message a packet, so that a
 * message is never read in pieces and one can carry a descriptor.
 *
 * What goes down it:
 *   - the address of a new scanner generation (len: its length, > 0 and
 *     at most sizeof(struct sockaddr_un));
 *   - CTL_CONFIG: the config the front end is to run from now on (the
 *     master's, which its scanner runs), as a sealed memfd passed with
 *     SCM_RIGHTS (config_export / config_import).  The front ends never
 *     read the config file: they run as "user", which may not read it;
 *   - CTL_REOPEN: reopen the audit log (the milter's; libmilter takes
 *     the signals the proxy gets).
 * The end of the channel (EOF): the master stops or is gone; stop.
 *
 * The master's end is non-blocking: a front end that does not read must
 * not stall the master.  Only the latest config and address count, so the
 * master keeps what it still has to say and says it again later when a
 * send would block (master.c, ctl_flush). */
#ifndef MW_CTLMSG_H
#define MW_CTLMSG_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

struct ctl_msg {
	socklen_t len;          /* address length, or CTL_CONFIG / CTL_REOPEN */
	struct sockaddr_un a;   /* the scanner's address (len > 0) */
};
#define CTL_REOPEN ((socklen_t)~0u)
#define CTL_CONFIG ((socklen_t)~1u)

/* ctl_pair - a control channel: sv[0] the front end's (blocking), sv[1]
 * the master's (non-blocking), both close-on-exec.  0, or -1 with errno. */
int ctl_pair(int sv[2]);

/* ctl_send - one message, with fd (>= 0) passed along; never blocks.
 * 0, or -1 with errno (EAGAIN: the front end's queue is full, try later). */
int ctl_send(int fd, const struct ctl_msg *m, int pass_fd);

/* ctl_recv - one message into *m, and the descriptor it carried into
 * *got_fd (close-on-exec; -1 if none; a message with more than one is
 * refused and all closed).  The number of bytes read (sizeof *m for a
 * well-formed message; 0: EOF), or -1 with errno. */
ssize_t ctl_recv(int fd, struct ctl_msg *m, int *got_fd);

struct config;
/* ctl_config - the config a CTL_CONFIG message carried in cfd (closed
 * here; -1: none came with it), or NULL when there is none to run, said
 * in the log as "<prefix>reload failed, keeping the running config: ..." */
struct config *ctl_config(int cfd, const char *prefix);

#endif
