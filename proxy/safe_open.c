/* safe_open.c - see safe_open.h.  A root command that writes where the
 * admin says (scan --output ~user/sub/out.eml) must not be turned by that
 * user into a write over (or the removal of) a file of root's: the user
 * owns ~user and may put a symlink, a hard link or a FIFO anywhere in it,
 * at the last component or at any before it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "proxy/safe_open.h"

/* a directory descriptor good for *at() calls only: O_PATH needs no read
 * permission on the directory (search is enough, as for open(path)) */
#ifdef O_PATH
#define DIR_FLAGS (O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#else
#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#endif

/* an open's ENXIO: a FIFO nobody reads (O_NONBLOCK), or a socket (stdout
 * of a service: /dev/stdout cannot be opened then) */
#define ENXIO_WHY "No such device or address (a socket, or a FIFO nobody reads): not written"

/* as the kernel's limit: a loop of trusted links ends */
#define SAFE_MAX_LINKS 40

/* the path still to walk: a symlink's target spliced before the rest */
#define SAFE_PATH_MAX 8192

/* trusted_owner - uid is root or the user running the command */
static int trusted_owner(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/* dir_trusted - the directory dirfd belongs to root or to us and is not
 * writable by group or other: nobody else can change its entries.  Any
 * directory for a user other than root: the rule is root's, whose write
 * through a link another user planted reaches any file; a user's own
 * links in a directory of its group's, in /tmp or a FIFO it made there
 * were refused (review rv-today6), where an open of theirs always
 * followed them. */
static int dir_trusted(int dirfd)
{
	struct stat st;

	if (geteuid() != 0)
		return 1;
	return fstat(dirfd, &st) == 0 && trusted_owner(st.st_uid)
	    && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* say - why[] and errno set; -1 */
static int say(char *why, size_t whylen, int e, const char *text)
{
	snprintf(why, whylen, "%s", text != NULL ? text : strerror(e));
	errno = e;
	return -1;
}

/* follow_link - the link name (lst: its lstat) in dirfd checked under
 * the rule and read: its target in target[] (for splice_target).  0 / -1 (said) */
static int follow_link(int dirfd, const char *name, const struct stat *lst, int *links,
    char *target, size_t tlen, char *why, size_t whylen)
{
	ssize_t n;

	if (!trusted_owner(lst->st_uid) || !dir_trusted(dirfd))
		return say(why, whylen, ELOOP, "a symlink in a directory another user may write: "
		    "not followed (give the path it leads to)");
	if (++*links > SAFE_MAX_LINKS)
		return say(why, whylen, ELOOP, NULL);
	n = readlinkat(dirfd, name, target, tlen);
	if (n < 0)
		return say(why, whylen, errno, NULL);
	if ((size_t)n >= tlen || n == 0)
		return say(why, whylen, ENAMETOOLONG, NULL);
	target[n] = '\0';
	return 0;
}

/* splice_target - *rest becomes target then "/" then what remained of it, in
 * buf (of SAFE_PATH_MAX); an absolute target sets *dirfd back to "/".
 * 0 / -1 (said) */
static int splice_target(const char *target, const char *remain, char *buf, int *dirfd,
    char *why, size_t whylen)
{
	char tmp[SAFE_PATH_MAX];
	int n, nd;

	n = snprintf(tmp, sizeof(tmp), "%s/%s", target, remain);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return say(why, whylen, ENAMETOOLONG, NULL);
	if (target[0] == '/') {
		if ((nd = open("/", DIR_FLAGS)) < 0)
			return say(why, whylen, errno, NULL);
		close(*dirfd);
		*dirfd = nd;
	}
	memcpy(buf, tmp, (size_t)n + 1);
	return 0;
}

/* walk - path (relative to at: a directory descriptor, or AT_FDCWD)
 * walked to its last component: the directory's descriptor, the
 * component in leaf[].  Every directory on the way is opened with
 * O_NOFOLLOW from the one before; a symlink there is followed only under
 * the rule (its target walked the same way).  -1 (said) on refusal. */
static int walk(int at, const char *path, int *links, char *leaf, size_t leaflen,
    char *why, size_t whylen)
{
	char buf[SAFE_PATH_MAX], target[PATH_MAX], comp[NAME_MAX + 1];
	const char *p, *end;
	struct stat st;
	size_t len;
	int dirfd, nd;

	if (path[0] == '\0')
		return say(why, whylen, ENOENT, NULL);
	if (strlen(path) >= sizeof(buf))
		return say(why, whylen, ENAMETOOLONG, NULL);
	memcpy(buf, path, strlen(path) + 1);
	if (path[0] == '/')
		dirfd = open("/", DIR_FLAGS);
	else if (at == AT_FDCWD)
		dirfd = open(".", DIR_FLAGS);
	else
		dirfd = fcntl(at, F_DUPFD_CLOEXEC, 0);
	if (dirfd < 0)
		return say(why, whylen, errno, NULL);
	p = buf;
	for (;;) {
		while (*p == '/')
			p++;
		if (*p == '\0') {
			close(dirfd);
			return say(why, whylen, EISDIR, NULL);
		}
		end = strchr(p, '/');
		len = end ? (size_t)(end - p) : strlen(p);
		if (len >= sizeof(comp)) {
			close(dirfd);
			return say(why, whylen, ENAMETOOLONG, NULL);
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		p += len;
		while (*p == '/')
			p++;
		if (*p == '\0') {
			/* the last component: "dir/" or "." names a directory */
			if (end != NULL || strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0) {
				close(dirfd);
				return say(why, whylen, EISDIR, NULL);
			}
			if (len >= leaflen) {
				close(dirfd);
				return say(why, whylen, ENAMETOOLONG, NULL);
			}
			memcpy(leaf, comp, len + 1);
			return dirfd;
		}
		if (strcmp(comp, ".") == 0)
			continue;
		if (fstatat(dirfd, comp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			nd = errno;
			close(dirfd);
			return say(why, whylen, nd, NULL);
		}
		if (S_ISLNK(st.st_mode)) {
			if (follow_link(dirfd, comp, &st, links, target, sizeof(target), why, whylen) < 0
			    || splice_target(target, p, buf, &dirfd, why, whylen) < 0) {
				nd = errno;
				close(dirfd);
				errno = nd;
				return -1;
			}
			p = buf;
			continue;
		}
		/* O_NOFOLLOW: a link put there since the fstatat is not taken */
		nd = openat(dirfd, comp, DIR_FLAGS);
		if (nd < 0) {
			int e = errno;

			close(dirfd);
			return say(why, whylen, e, e == ELOOP ? "a symlink appeared on the way: not followed"
			    : NULL);
		}
		close(dirfd);
		dirfd = nd;
	}
}

int safe_output_dir(const char *path, char *leaf, size_t leaflen, char *why, size_t whylen)
{
	int links = 0;

	why[0] = '\0';
	return walk(AT_FDCWD, path, &links, leaf, leaflen, why, whylen);
}

/* open_leaf - the last component (not a symlink when looked at) opened
 * for writing in dirfd, o filled; want (dev/ino, or NULL): the file a
 * trusted link led to, which must be the one opened (no O_CREAT then).
 * -1 (said) */
static int open_leaf(int dirfd, struct safe_output *o, const struct stat *want, char *why, size_t whylen)
{
	struct stat st;
	int fd, e, trusted = dir_trusted(dirfd);

	/* not a FIFO or a device another user may have put there: not even
	 * opened (opening a device may do something) */
	if (fstatat(dirfd, o->leaf, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode) && !trusted)
			return say(why, whylen, EPERM, "not a regular file, in a directory another user "
			    "may write: not written");
	} else if (errno != ENOENT)
		return say(why, whylen, errno, NULL);
	else if (want != NULL)
		return say(why, whylen, ENOENT, "the file a symlink led to went away: not written");
	/* not O_TRUNC yet: a hard-linked file is refused untouched;
	 * O_NONBLOCK: a FIFO with no reader does not hold us (ENXIO) */
	fd = openat(dirfd, o->leaf, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC
	    | (want ? 0 : O_CREAT), 0600);
	if (fd < 0) {
		e = errno;
		return say(why, whylen, e, e == ELOOP ? "a symlink appeared there: not followed"
		    : e == ENXIO ? ENXIO_WHY : NULL);
	}
	if (fstat(fd, &st) < 0)
		goto fail;
	if (want != NULL && (st.st_dev != want->st_dev || st.st_ino != want->st_ino)) {
		close(fd);
		return say(why, whylen, ELOOP, "the file a symlink led to changed: not written");
	}
	if (S_ISREG(st.st_mode)) {
		/* another name of root's file, made by the directory's owner
		 * (where protected_hardlinks is off) */
		if (st.st_nlink > 1) {
			snprintf(why, whylen, "a regular file with %lu links: not written",
			    (unsigned long)st.st_nlink);
			close(fd);
			errno = EMLINK;
			return -1;
		}
		if (ftruncate(fd, 0) < 0)
			goto fail;
	} else if (!trusted) {
		/* one put there since the fstatat */
		close(fd);
		return say(why, whylen, EPERM, "not a regular file, in a directory another user may "
		    "write: not written");
	}
	/* writes to a pipe or tty wait as usual */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
		goto fail;
	o->fd = fd;
	o->dev = st.st_dev;
	o->ino = st.st_ino;
	return fd;
fail:
	e = errno;
	close(fd);
	return say(why, whylen, e, NULL);
}

/* on_proc - dirfd is a directory of /proc, whose links (/proc/self/fd/N)
 * lead to an open file, not through a path: "pipe:[N]" is no path */
static int on_proc(int dirfd)
{
	struct statfs sf;

	return fstatfs(dirfd, &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC;
}

/* proc_link - a trusted link of /proc (dirfd) at o->leaf: opened as the
 * kernel opens it.  What it leads to that is not a regular file (a pipe,
 * a tty: what /dev/stdout is) is taken (*fd set, 1); a regular file's
 * identity goes to *want, and 0: the caller walks the link's target, to
 * open that file under the rule.  -1 (said) */
static int proc_link(int dirfd, struct safe_output *o, int *fd, struct stat *want, char *why, size_t whylen)
{
	struct stat st;
	int e;

	*fd = openat(dirfd, o->leaf, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (*fd < 0)
		return say(why, whylen, errno, errno == ENXIO ? ENXIO_WHY : NULL);
	if (fstat(*fd, &st) < 0)
		goto fail;
	if (S_ISREG(st.st_mode)) {
		close(*fd);
		*fd = -1;
		*want = st;
		return 0;
	}
	/* writes to a pipe or tty wait as usual */
	if (fcntl(*fd, F_SETFL, fcntl(*fd, F_GETFL) & ~O_NONBLOCK) < 0)
		goto fail;
	o->dev = st.st_dev;
	o->ino = st.st_ino;
	return 1;
fail:
	e = errno;
	close(*fd);
	*fd = -1;
	return say(why, whylen, e, NULL);
}

int safe_open_output(const char *path, struct safe_output *o, char *why, size_t whylen)
{
	char target[PATH_MAX];
	struct stat lst, want;
	const char *p = path;
	int at = AT_FDCWD, dirfd, links = 0, linked = 0, have_want = 0, fd, r, e;

	o->fd = -1;
	o->dirfd = -1;
	o->leaf[0] = '\0';
	o->direct = 0;
	why[0] = '\0';
	for (;;) {
		dirfd = walk(at, p, &links, o->leaf, sizeof(o->leaf), why, whylen);
		if (at != AT_FDCWD) {
			e = errno;
			close(at);
			errno = e;
		}
		if (dirfd < 0)
			return -1;
		if (fstatat(dirfd, o->leaf, &lst, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISLNK(lst.st_mode))
			break;
		if (follow_link(dirfd, o->leaf, &lst, &links, target, sizeof(target), why, whylen) < 0)
			goto fail;
		linked = 1;
		/* any other link's target is walked as the path was: the
		 * kernel following it would go through links another user
		 * planted on the way (root's /root/out -> ~user/out, that one
		 * a link to a device) */
		if (on_proc(dirfd)) {
			if ((r = proc_link(dirfd, o, &fd, &want, why, whylen)) < 0)
				goto fail;
			if (r == 1) {
				close(dirfd);
				o->fd = fd;
				return fd;
			}
			have_want = 1;
		}
		at = dirfd;
		p = target;
	}
	if (open_leaf(dirfd, o, have_want ? &want : NULL, why, whylen) < 0)
		goto fail;
	if (!linked) {
		struct stat st2;

		o->direct = fstat(o->fd, &st2) == 0 && S_ISREG(st2.st_mode);
	}
	if (o->direct)
		o->dirfd = dirfd;
	else
		close(dirfd);
	return o->fd;
fail:
	e = errno;
	close(dirfd);
	errno = e;
	return -1;
}

int safe_output_unlink(struct safe_output *o)
{
	struct stat st;
	int rc = 0;

	if (o->direct && o->dirfd >= 0
	    && fstatat(o->dirfd, o->leaf, &st, AT_SYMLINK_NOFOLLOW) == 0
	    && st.st_dev == o->dev && st.st_ino == o->ino)
		rc = unlinkat(o->dirfd, o->leaf, 0);
	safe_output_done(o);
	return rc;
}

void safe_output_done(struct safe_output *o)
{
	if (o->dirfd >= 0)
		close(o->dirfd);
	o->dirfd = -1;
}
