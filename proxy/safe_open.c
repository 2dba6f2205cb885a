/* safe_open.c - see safe_open.h.  A root command that writes where the
 * admin says (scan --output ~user/out.eml) must not be turned by that
 * user into a write over a file of root's: the user owns the directory
 * and may put a symlink (or a hard link) in it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/safe_open.h"

/* trusted_owner - uid is root or the user running the command */
static int trusted_owner(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/* parent_trusted - path's directory belongs to root or to us and is not
 * writable by group or other: nobody else can change its entries */
static int parent_trusted(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	struct stat st;

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) >= sizeof(dir))
		return 0;
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	return stat(dir, &st) == 0 && trusted_owner(st.st_uid)
	    && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

int safe_open_output(const char *path, int *direct, char *why, size_t whylen)
{
	struct stat lst, st;
	int fd, follow = 0, e;

	*direct = 0;
	why[0] = '\0';
	if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
		if (!trusted_owner(lst.st_uid) || !parent_trusted(path)) {
			snprintf(why, whylen, "a symlink in a directory another user may write: not "
			    "followed (give the file it leads to)");
			errno = ELOOP;
			return -1;
		}
		follow = 1;
	}
	/* not O_TRUNC yet: a hard-linked file is refused untouched; not
	 * following a link that appears between lstat and here */
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | (follow ? 0 : O_NOFOLLOW), 0600);
	if (fd < 0) {
		e = errno;
		snprintf(why, whylen, "%s", e == ELOOP ? "a symlink appeared there: not followed"
		    : strerror(e));
		errno = e;
		return -1;
	}
	if (fstat(fd, &st) < 0)
		goto fail;
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
		*direct = !follow;
	}
	return fd;
fail:
	e = errno;
	snprintf(why, whylen, "%s", strerror(e));
	close(fd);
	errno = e;
	return -1;
}
