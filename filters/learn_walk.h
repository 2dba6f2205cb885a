/* learn_walk.h - the files "mailwarden learn" reads: its path arguments
 * opened and directories walked, by the process that may read them (root
 * when run as root), safely: no FIFO waited on, no link a user planted
 * followed, Maildirs and quarantine days read as what they are.  The
 * bytes go to a sink (the store child, learn_cmd.c), which parses them. */
#ifndef MW_LEARN_WALK_H
#define MW_LEARN_WALK_H

#include <stddef.h>

#define LEARN_MAX_SIZE (32u * 1024 * 1024)    /* bigger files fail */

/* LEARN_SAID_MAX - room for a path as learn says it on stderr: through
 * log_esc (proxy/log.h), a byte outside printable ASCII as \xHH, a
 * backslash doubled.  A path comes from the walk of a folder a user
 * writes, and root's learn says it on root's terminal: a file name
 * holding an escape sequence, a C1 control, a bidi override or a newline
 * would act there (rewrite the screen, forge a line).  4 bytes a byte of
 * PATH_MAX, longer ones cut with "...". */
#define LEARN_SAID_MAX (4 * 4096 + 4)

struct learn_sink {
	void *arg;
	/* a file's bytes: path and data borrowed for the call */
	void (*file)(void *arg, const char *path, const char *data, size_t len);
	/* one file that could not be read (said on stderr already) */
	void (*failed)(void *arg);
	/* 1: walk no further (the store failed, its child is gone) */
	int (*stop)(void *arg);
};

/* learn_walk - one path argument: a file read whole, a directory walked
 * (a Maildir: its cur/ and new/ only).  The path is opened one name at a
 * time, its links followed hop by hop.  Run as root, a symbolic link is
 * followed only where the directory holding it is one only root can
 * write, and a file read only where the directory holding it is, or else
 * only another user's than root's, in that user's directory or with one
 * name where others write too (learn_walk.c's header: the rule and why).
 * As any other user every link is followed.  In a walk a link is never
 * followed to a directory. */
void learn_walk(const char *path, const struct learn_sink *sink);

/* learn_walk_skips - is a directory entry's name one that learn passes
 * over in a walk (dot files, Dovecot's and Courier's control files, a
 * Maildir message flagged T, deleted)?  1 or 0 */
int learn_walk_skips(const char *name);

#endif
