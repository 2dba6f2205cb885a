/* learn_walk.c - see learn_walk.h.
 *
 * Every open is made relative to a descriptor of the directory holding
 * the name (openat), O_NOFOLLOW unless a link there may be followed, and
 * O_NONBLOCK: a FIFO opens at once without a writer, and fstat of what
 * was opened, not the name, says what it is; only regular files are read
 * and directories walked.  Until session 19 the walk was nftw's (lstat,
 * then an open by name): a link the daemon's user swapped in between was
 * followed by root's learn, a FIFO named or swapped in made it wait for a
 * writer for ever, a link named on the command line in a user's folder was
 * read by root, one to a folder walked nothing. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filters/learn_walk.h"
#include "filters/msgfile.h"
#include "proxy/sbuf.h"

#define WALK_MAX_DEPTH 32       /* directories below an argument: bounds the descriptors held */

enum { AS_ARG = 1, IN_MAILDIR = 2 };   /* visit()'s flags */

struct walk {
	const struct learn_sink *sink;  /* borrowed */
	uid_t me;                       /* euid: root follows links only where only root writes */
	struct sbuf raw;                /* owned: one file's bytes */
};

static void fail(struct walk *w, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct walk *w, const char *path, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mailwarden learn: %s: ", path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	w->sink->failed(w->sink->arg);
}

/* roots - can only root change the directory whose stat is dst (root's,
 * not writable by its group or others)? */
static int roots(const struct stat *dst)
{
	return dst->st_uid == 0 && (dst->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* follows - may a link in the directory whose stat is dst be followed?
 * Root's learn reads what the daemon's user may not: in a directory
 * someone else can write (a user's Maildir, the quarantine, /tmp, a
 * group's /var/mail) a link could point it anywhere.  Any other user
 * reads only what it may read anyway. */
static int follows(const struct walk *w, const struct stat *dst)
{
	return w->me != 0 || roots(dst);
}

int learn_walk_skips(const char *name)
{
	static const char *const control[] = {
		"subscriptions", "maildirfolder", "maildirsize", "courierpop3dsizelist", NULL
	};
	const char *flags;

	if (name[0] == '.')
		return 1;
	/* dovecot-uidlist, dovecot.index*, dovecot-keywords, ...; Courier's
	 * courierimapuiddb, courierimapkeywords/, ... */
	if (strncmp(name, "dovecot", 7) == 0 || strncmp(name, "courierimap", 11) == 0)
		return 1;
	for (int i = 0; control[i] != NULL; i++)
		if (strcmp(name, control[i]) == 0)
			return 1;
	/* a Maildir message "UNIQUE:2,FLAGS" flagged T (trashed): deleted,
	 * waiting for an expunge; what it was is no longer the user's word */
	flags = strstr(name, ":2,");
	return flags != NULL && strchr(flags + 3, 'T') != NULL;
}

/* open_at - name in the directory dfd (whose stat is dst); *st what was
 * opened, *linked whether a link was followed to it.  The descriptor
 * (O_RDONLY|O_NONBLOCK), or -1 said and counted. */
static int open_at(struct walk *w, int dfd, const struct stat *dst, const char *name, const char *path,
                   struct stat *st, int *linked)
{
	int fl = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, fd;

	*linked = 0;
	fd = openat(dfd, name, fl | O_NOFOLLOW);
	if (fd < 0 && errno == ELOOP) {
		if (!follows(w, dst)) {
			fail(w, path, "a symbolic link in a directory of uid %u, mode %03o: not followed (run as "
			     "root, learn follows links only in directories only root can write)",
			     (unsigned)dst->st_uid, (unsigned)(dst->st_mode & 07777));
			return -1;
		}
		*linked = 1;
		fd = openat(dfd, name, fl);
	}
	if (fd < 0) {
		fail(w, path, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fd, st) < 0) {
		fail(w, path, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* read_regular - a regular file's bytes to the sink */
static void read_regular(struct walk *w, int fd, const struct stat *st, const struct stat *dst, const char *path)
{
	int fl;

	/* a hard link the directory's owner made to another's file (where
	 * fs.protected_hardlinks is off), as the quarantine commands refuse
	 * one: root reads in others' directories only their own files or
	 * files with one name */
	if (w->me == 0 && !roots(dst) && st->st_uid != dst->st_uid && st->st_nlink > 1) {
		fail(w, path, "a file of uid %u with %lu names in a directory of uid %u: not read",
		     (unsigned)st->st_uid, (unsigned long)st->st_nlink, (unsigned)dst->st_uid);
		return;
	}
	if (st->st_size > (off_t)LEARN_MAX_SIZE) {
		fail(w, path, "%s (over %u MiB)", strerror(EFBIG), LEARN_MAX_SIZE >> 20);
		return;
	}
	if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		fail(w, path, "%s", strerror(errno));
		return;
	}
	sbuf_reset(&w->raw);
	if (msgfile_read_fd(fd, &w->raw) < 0) {
		fail(w, path, "%s", strerror(errno));
		return;
	}
	w->sink->file(w->sink->arg, path, w->raw.data ? w->raw.data : "", w->raw.len);
}

static void walk_dir(struct walk *w, int fd, const struct stat *st, const char *path, int depth);

/* visit - one name in the directory dfd: a file read, a directory walked */
static void visit(struct walk *w, int dfd, const struct stat *dst, const char *name, const char *path,
                  int flags, int depth)
{
	struct stat st;
	int linked, fd;

	if ((fd = open_at(w, dfd, dst, name, path, &st, &linked)) < 0)
		return;
	if (S_ISDIR(st.st_mode)) {
		if (linked && !(flags & AS_ARG))
			/* a walk into a link to a folder could loop, or walk a
			 * tree twice: name it on the command line */
			fprintf(stderr, "mailwarden learn: %s: a link to a directory, not followed "
			        "(give it as an argument)\n", path);
		else if (!(flags & IN_MAILDIR))
			walk_dir(w, fd, &st, path, depth);
	} else if (S_ISREG(st.st_mode))
		read_regular(w, fd, &st, dst, path);
	else
		fail(w, path, "not a regular file or a directory");
	close(fd);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* quarantine_record - name ID.json or ID.body beside ID.eml (names:
 * sorted): a quarantine entry's record or rewritten body, not a message */
static int quarantine_record(char **names, size_t n, const char *name)
{
	size_t len = strlen(name);
	char eml[NAME_MAX + 1], *key = eml;

	if (len < 6 || len > NAME_MAX || (strcmp(name + len - 5, ".json") != 0 && strcmp(name + len - 5, ".body") != 0))
		return 0;
	memcpy(eml, name, len - 5);
	memcpy(eml + len - 5, ".eml", 5);
	return bsearch(&key, names, n, sizeof(*names), cmp_names) != NULL;
}

/* walk_entries - the names of the directory fd, in order, each visited */
static void walk_entries(struct walk *w, int fd, const struct stat *st, const char *path, int flags, int depth)
{
	char **names = NULL, child[PATH_MAX];
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int dup_fd = dup(fd);

	if (dup_fd < 0 || (d = fdopendir(dup_fd)) == NULL) {
		fail(w, path, "%s", strerror(errno));
		if (dup_fd >= 0)
			close(dup_fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (learn_walk_skips(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = xrealloc(names, cap * sizeof(*names));
		}
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		if (!w->sink->stop(w->sink->arg) && !quarantine_record(names, n, names[i])) {
			snprintf(child, sizeof(child), "%s%s%s", path,
			         path[0] != '\0' && path[strlen(path) - 1] == '/' ? "" : "/", names[i]);
			visit(w, fd, st, names[i], child, flags, depth + 1);
		}
	}
	for (size_t i = 0; i < n; i++)     /* after: quarantine_record looks at them all */
		free(names[i]);
	free(names);
}

/* is_maildir - has the directory fd a cur/, a new/ and a tmp/? */
static int is_maildir(int fd)
{
	static const char *const sub[] = { "cur", "new", "tmp" };
	struct stat s;

	for (int i = 0; i < 3; i++)
		if (fstatat(fd, sub[i], &s, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(s.st_mode))
			return 0;
	return 1;
}

/* walk_dir - a directory: a Maildir's cur/ and new/ (as sa-learn reads
 * one: tmp/ holds deliveries under way, its .Folder subfolders are other
 * folders, its top the IMAP server's files), any other one whole */
static void walk_dir(struct walk *w, int fd, const struct stat *st, const char *path, int depth)
{
	static const char *const sub[] = { "cur", "new" };
	char child[PATH_MAX];

	if (depth >= WALK_MAX_DEPTH) {
		fail(w, path, "more than %d directories deep: not walked", WALK_MAX_DEPTH);
		return;
	}
	if (!is_maildir(fd)) {
		walk_entries(w, fd, st, path, 0, depth);
		return;
	}
	for (int i = 0; i < 2 && !w->sink->stop(w->sink->arg); i++) {
		struct stat sst;
		int linked, sfd;

		snprintf(child, sizeof(child), "%s%s%s", path,
		         path[0] != '\0' && path[strlen(path) - 1] == '/' ? "" : "/", sub[i]);
		if ((sfd = open_at(w, fd, st, sub[i], child, &sst, &linked)) < 0)
			continue;
		if (S_ISDIR(sst.st_mode) && !linked)
			walk_entries(w, sfd, &sst, child, IN_MAILDIR, depth + 1);
		close(sfd);
	}
}

/* open_parent - the directory holding path's last name, opened (O_PATH)
 * one name at a time from / or ".", each link on the way followed only as
 * follows() allows; *last that name ("." for "/").  The descriptor, or -1
 * said and counted. */
static int open_parent(struct walk *w, const char *path, char *buf, size_t bufsz, const char **last,
                       struct stat *dst)
{
	size_t len = strlen(path);
	char *slash, *comp, *save = NULL, *dir;
	int fd, nfd;

	if (len == 0 || len >= bufsz) {
		fail(w, path, "%s", strerror(len == 0 ? ENOENT : ENAMETOOLONG));
		return -1;
	}
	memcpy(buf, path, len + 1);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	if ((slash = strrchr(buf, '/')) == NULL) {
		dir = NULL;
		*last = buf;
	} else {
		*slash = '\0';
		dir = buf;
		*last = slash[1] != '\0' ? slash + 1 : ".";     /* "/": the root itself */
	}
	if ((fd = open(path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
		fail(w, path, "%s", strerror(errno));
		return -1;
	}
	for (comp = dir ? strtok_r(dir, "/", &save) : NULL; comp != NULL; comp = strtok_r(NULL, "/", &save)) {
		struct stat ds, ls, ns;

		if (strcmp(comp, ".") == 0)
			continue;
		if (fstat(fd, &ds) < 0 || fstatat(fd, comp, &ls, AT_SYMLINK_NOFOLLOW) < 0) {
			fail(w, path, "%s", strerror(errno));
			close(fd);
			return -1;
		}
		if (S_ISLNK(ls.st_mode) && !follows(w, &ds)) {
			fail(w, path, "%s is a symbolic link in a directory of uid %u, mode %03o: not followed (run "
			     "as root, learn follows links only in directories only root can write)", comp,
			     (unsigned)ds.st_uid, (unsigned)(ds.st_mode & 07777));
			close(fd);
			return -1;
		}
		nfd = openat(fd, comp, O_PATH | O_DIRECTORY | O_CLOEXEC | (S_ISLNK(ls.st_mode) ? 0 : O_NOFOLLOW));
		/* swapped for a link since the look: O_NOFOLLOW gives the link
		 * itself, no directory */
		if (nfd < 0 || fstat(nfd, &ns) < 0 || !S_ISDIR(ns.st_mode)) {
			fail(w, path, "%s", nfd < 0 ? strerror(errno) : strerror(ENOTDIR));
			if (nfd >= 0)
				close(nfd);
			close(fd);
			return -1;
		}
		close(fd);
		fd = nfd;
	}
	if (fstat(fd, dst) < 0) {
		fail(w, path, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

void learn_walk(const char *path, const struct learn_sink *sink)
{
	struct walk w = { .sink = sink, .me = geteuid() };
	char buf[PATH_MAX];
	const char *last;
	struct stat dst;
	int dfd;

	if ((dfd = open_parent(&w, path, buf, sizeof(buf), &last, &dst)) < 0)
		return;
	sbuf_init(&w.raw, LEARN_MAX_SIZE);
	visit(&w, dfd, &dst, last, path, AS_ARG, 0);
	sbuf_free(&w.raw);
	close(dfd);
}
