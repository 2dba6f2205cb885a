/* safe_open.h - opening a file root writes where another user may have
 * planted a symlink, a hard link or a FIFO ("mailwarden scan --output").
 *
 * The rule is Postfix's safe_open(), applied to every component of the
 * path, not only the last: a symlink is followed only when nobody else
 * could have put it there, that is when it and its directory belong to
 * root or to the user running the command and the directory is writable
 * by neither group nor other (/dev/stdout and the links it leads through,
 * /proc/self and /proc/self/fd/N, qualify).  The path is walked one
 * component at a time, each directory opened with O_NOFOLLOW relative to
 * the one before, so that a link planted between a check and the open is
 * not followed either (~user/sub replaced by a link to a directory of
 * root's is refused as ~user/out.eml is).  The file is created (or
 * truncated, or later removed) in the directory the walk checked, by
 * openat()/unlinkat() on its descriptor.  An existing regular file with a
 * second hard link is refused.  Anything that is not a regular file (a
 * FIFO, a device, a tty) is written only in a directory nobody else
 * writes (/dev, /dev/pts, /proc/self/fd): a FIFO a user put in ~user is
 * refused, and is opened non-blocking first so that it cannot hold the
 * command forever.  The rule is root's: for any other user every
 * directory counts as trusted (its writes reach only what it may write
 * itself, and until session 21 an open of its path followed every link).
 */
#ifndef MW_SAFE_OPEN_H
#define MW_SAFE_OPEN_H

#include <stddef.h>
#include <sys/types.h>

/* what safe_open_output opened, for a caller that may have to remove it */
struct safe_output {
	int fd;            /* the file, for writing (O_CLOEXEC) */
	int dirfd;         /* the directory it is in (direct only), else -1 */
	char leaf[256];    /* its name there */
	dev_t dev;         /* its identity, to remove this file and no other */
	ino_t ino;
	int direct;        /* a regular file named by the path's last component (no
	                    * symlink followed there): only then may it be removed */
};

/* safe_open_output - path opened for writing (created 0600 if absent, a
 * regular file truncated) under the rule above.  Returns o->fd, or -1
 * with errno and why[] (a sentence, no path) set.  The caller closes
 * o->fd and calls safe_output_done() (or safe_output_unlink()). */
int safe_open_output(const char *path, struct safe_output *o, char *why, size_t whylen);

/* safe_output_unlink - removes the file o names when it is direct and
 * its directory entry still names that file (a cut-off message must not
 * pass for the whole one); then as safe_output_done.  0 / -1 (errno). */
int safe_output_unlink(struct safe_output *o);

/* safe_output_done - releases o->dirfd (not o->fd) */
void safe_output_done(struct safe_output *o);

/* safe_output_dir - path's directory, walked under the rule above: its
 * descriptor (O_PATH, O_CLOEXEC; the caller closes it) with the last
 * component in leaf[], or -1 with errno and why[] set.  For a caller that
 * examines or removes the entry itself (fstatat/unlinkat on it). */
int safe_output_dir(const char *path, char *leaf, size_t leaflen, char *why, size_t whylen);

#endif
