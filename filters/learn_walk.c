/* learn_walk.c - see learn_walk.h.
 *
 * Every open is made relative to a descriptor of the directory holding
 * the name (openat), O_NOFOLLOW, and O_NONBLOCK: a FIFO opens at once
 * without a writer, and fstat of what was opened, not the name, says what
 * it is; only regular files are read and directories walked.  A path (an
 * argument, a link's target) is opened one name at a time from / or the
 * working directory; a symbolic link met on the way, or as the last name,
 * is read (readlinkat of the link itself, opened O_PATH|O_NOFOLLOW) and
 * its target opened the same way, hop by hop, so every link followed is
 * judged by the directory that holds it, and every file read by the
 * directory that holds it, whatever links led there.
 *
 * The rule, as root (any other user reads what it may anyway):
 *  1. A link is followed only in a directory only root can write
 *     (root's, not writable by its group or others): an admin's link.
 *  2. A regular file is read when the directory that holds its name is
 *     one only root can write (no one else can have put a name there),
 *     or else when the file is another user's than root's and
 *       - in a directory only its owner writes: owned by that owner (a
 *         user's own tree; any number of names: Dovecot copies messages
 *         between folders as hard links);
 *       - in a directory others write too (group or others' write bit:
 *         /tmp, /var/mail 1777 or root:mail 2775, a shared folder): has
 *         one name (each user's mailbox is theirs, with one name).
 *     Why: whoever writes a directory can put there a link to anything, a
 *     hard link to any file they can see (fs.protected_hardlinks off; it
 *     keeps its owner and, once the original name is renamed over as
 *     passwd(1) does /etc/shadow, has one name), or a file renamed from
 *     another directory they write.  Outside root's own directories root
 *     cannot tell its own file from one steered there, so it reads none
 *     of root's; a user's own file in that user's directory tells nothing
 *     the user may not read; another's there is a link or was moved.
 *     Left: in a directory others write, another user's file with one
 *     name whose other name that user removed (protected_hardlinks off).
 *
 * Until session 19 the walk was nftw's (lstat, then an open by name): a
 * link the daemon's user swapped in between was followed by root's learn,
 * a FIFO named or swapped in made it wait for a writer for ever, a link
 * named on the command line in a user's folder was read by root, one to
 * a folder walked nothing.  The first learn_walk.c (learn19) checked only
 * the first link: the kernel followed the rest of its target (a user's
 * link behind an admin's), and it read a root file with one name, or any
 * file of the directory's owner, in a directory others write. */
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
#include "proxy/log.h"
#include "proxy/sbuf.h"

#define WALK_MAX_DEPTH 32       /* directories below an argument: bounds the descriptors held */
#define WALK_MAX_HOPS 40        /* links followed for one name, as the kernel's MAXSYMLINKS */

enum { AS_ARG = 1, IN_MAILDIR = 2 };   /* visit()'s flags */
enum { LK_READ, LK_DIR };              /* lookup()'s want: opened to read (O_RDONLY), or a directory (O_PATH) */

struct walk {
	const struct learn_sink *sink;  /* borrowed */
	uid_t me;                       /* euid: root follows and reads by the rule above */
	struct sbuf raw;                /* owned: one file's bytes */
};

/* a directory names are looked up in: its descriptor (borrowed) and stat */
struct dir {
	int fd;
	struct stat st;
};

/* what lookup() and resolve() opened */
struct found {
	int fd;                 /* owned by the caller: O_RDONLY|O_NONBLOCK (LK_READ), O_PATH (LK_DIR) */
	struct stat st;         /* of fd */
	struct stat dst;        /* of the directory that holds the name opened (after links) */
	int linked;             /* a link was followed to it */
};

/* say - "mailwarden learn: PATH: text" on stderr, path escaped
 * (LEARN_SAID_MAX); the buffer in this leaf's frame only, not in each
 * frame of the walk's recursion */
static void say(const char *path, const char *text)
{
	char esc[LEARN_SAID_MAX];

	fprintf(stderr, "mailwarden learn: %s: %s\n", log_esc(esc, sizeof(esc), path, strlen(path)), text);
}

/* fail - one path not read, said (path escaped: LEARN_SAID_MAX; fmt's
 * arguments are ours, but a name from the walk, which goes through
 * log_esc first) and counted */
static void fail(struct walk *w, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct walk *w, const char *path, const char *fmt, ...)
{
	char esc[LEARN_SAID_MAX];
	va_list ap;

	fprintf(stderr, "mailwarden learn: %s: ", log_esc(esc, sizeof(esc), path, strlen(path)));
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

/* reads - may the regular file st, whose name the directory dst holds,
 * be read?  Rule 2 of the header; 0 said and counted */
static int reads(struct walk *w, const struct stat *st, const struct stat *dst, const char *path)
{
	int shared = (dst->st_mode & (S_IWGRP | S_IWOTH)) != 0;

	if (w->me != 0 || roots(dst))
		return 1;
	if (st->st_uid != 0 && (shared ? st->st_nlink == 1 : st->st_uid == dst->st_uid))
		return 1;
	fail(w, path, "a file of uid %u with %lu %s in a directory of uid %u, mode %03o: not read (run as "
	     "root, learn reads root's files only in directories only root can write, and another user's "
	     "only in that user's directories or, where others write too, with one name)",
	     (unsigned)st->st_uid, (unsigned long)st->st_nlink, st->st_nlink == 1 ? "name" : "names",
	     (unsigned)dst->st_uid, (unsigned)(dst->st_mode & 07777));
	return 0;
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

static int resolve(struct walk *w, const struct dir *from, const char *target, const char *path, int want,
                   int *hops, struct found *out);

/* lookup - one name (no slash) in the directory d, opened as want says;
 * a link there followed hop by hop (resolve) as follows() allows.  path:
 * what is said in a failure.  0 with *out, or -1 said and counted. */
static int lookup(struct walk *w, const struct dir *d, const char *name, const char *path, int want, int *hops,
                  struct found *out)
{
	char target[PATH_MAX];
	ssize_t n = -1;
	int fd, bare = 0, rc;

	if (want == LK_DIR)
		fd = openat(d->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	else if ((fd = openat(d->fd, name, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC)) < 0
	         && errno == ELOOP) {
		/* a link: the link itself, to read where it points */
		fd = openat(d->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		bare = 1;
	}
	if (fd < 0 || fstat(fd, &out->st) < 0) {
		fail(w, path, "%s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (S_ISLNK(out->st.st_mode)) {
		if (!follows(w, &d->st)) {
			/* the name said is the path's last (no link followed
			 * yet, not a directory on the way), else named */
			int last = *hops == 0 && want == LK_READ;
			char esc[4 * NAME_MAX + 8];     /* one name of the path */

			fail(w, path, "%s%sa symbolic link in a directory of uid %u, mode %03o: not followed (run as "
			     "root, learn follows links only in directories only root can write)",
			     last ? "" : log_esc(esc, sizeof(esc), name, strlen(name)),
			     last ? "" : " is ", (unsigned)d->st.st_uid, (unsigned)(d->st.st_mode & 07777));
			close(fd);
			return -1;
		}
		/* the link opened, not its name again: what was judged is read */
		if (++*hops > WALK_MAX_HOPS)
			errno = ELOOP;
		else
			n = readlinkat(fd, "", target, sizeof(target));
		close(fd);
		if (n < 0 || (size_t)n >= sizeof(target)) {
			fail(w, path, "%s", strerror(n < 0 ? errno : ENAMETOOLONG));
			return -1;
		}
		target[n] = '\0';
		if ((rc = resolve(w, d, target, path, want, hops, out)) == 0)
			out->linked = 1;
		return rc;
	}
	if (bare || (want == LK_DIR && !S_ISDIR(out->st.st_mode))) {
		/* bare: a link when opened, none now (swapped back) */
		fail(w, path, "%s", strerror(bare ? ESTALE : ENOTDIR));
		close(fd);
		return -1;
	}
	out->fd = fd;
	out->dst = d->st;
	out->linked = 0;
	return 0;
}

/* resolve - the path target opened as want says, one name at a time
 * (lookup): from "/" when it starts with one, else from the directory
 * from (a link's), or, from NULL, the working directory (an argument).
 * 0 with *out, or -1 said and counted. */
static int resolve(struct walk *w, const struct dir *from, const char *target, const char *path, int want,
                   int *hops, struct found *out)
{
	char buf[PATH_MAX], *comp, *next, *save = NULL;
	size_t len = strlen(target);
	struct dir cur;
	int slash = 0, rc;

	if (len == 0 || len >= sizeof(buf)) {
		fail(w, path, "%s", strerror(len == 0 ? ENOENT : ENAMETOOLONG));
		return -1;
	}
	memcpy(buf, target, len + 1);
	while (len > 1 && buf[len - 1] == '/') {        /* "dir/": a directory */
		buf[--len] = '\0';
		slash = 1;
	}
	if (buf[0] == '/' || from == NULL)
		cur.fd = open(buf[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	else
		cur.fd = fcntl(from->fd, F_DUPFD_CLOEXEC, 0);
	if (cur.fd < 0 || fstat(cur.fd, &cur.st) < 0) {
		fail(w, path, "%s", strerror(errno));
		if (cur.fd >= 0)
			close(cur.fd);
		return -1;
	}
	for (comp = strtok_r(buf, "/", &save); comp != NULL && (next = strtok_r(NULL, "/", &save)) != NULL;
	     comp = next) {
		struct found f;

		if (strcmp(comp, ".") == 0)
			continue;
		if (lookup(w, &cur, comp, path, LK_DIR, hops, &f) < 0) {
			close(cur.fd);
			return -1;
		}
		close(cur.fd);
		cur.fd = f.fd;
		cur.st = f.st;
	}
	if (comp == NULL || strcmp(comp, ".") == 0) {
		/* "/", "dir/.": the directory reached itself */
		out->fd = want == LK_DIR ? fcntl(cur.fd, F_DUPFD_CLOEXEC, 0)
		                         : openat(cur.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (out->fd < 0) {
			fail(w, path, "%s", strerror(errno));
			close(cur.fd);
			return -1;
		}
		out->st = out->dst = cur.st;
		out->linked = 0;
		close(cur.fd);
		return 0;
	}
	rc = lookup(w, &cur, comp, path, want, hops, out);
	close(cur.fd);
	if (rc == 0 && slash && !S_ISDIR(out->st.st_mode)) {
		fail(w, path, "%s", strerror(ENOTDIR));
		close(out->fd);
		return -1;
	}
	return rc;
}

/* read_regular - a regular file's bytes to the sink, if reads() allows */
static void read_regular(struct walk *w, const struct found *f, const char *path)
{
	int fl;

	if (!reads(w, &f->st, &f->dst, path))
		return;
	if (f->st.st_size > (off_t)LEARN_MAX_SIZE) {
		fail(w, path, "%s (over %u MiB)", strerror(EFBIG), LEARN_MAX_SIZE >> 20);
		return;
	}
	if ((fl = fcntl(f->fd, F_GETFL)) < 0 || fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		fail(w, path, "%s", strerror(errno));
		return;
	}
	sbuf_reset(&w->raw);
	if (msgfile_read_fd(f->fd, &w->raw) < 0) {
		fail(w, path, "%s", strerror(errno));
		return;
	}
	w->sink->file(w->sink->arg, path, w->raw.data ? w->raw.data : "", w->raw.len);
}

static void walk_dir(struct walk *w, const struct dir *d, const char *path, int depth);

/* visit - what was opened (*f, closed here): a file read, a directory walked */
static void visit(struct walk *w, struct found *f, const char *path, int flags, int depth)
{
	if (S_ISDIR(f->st.st_mode)) {
		struct dir d = { f->fd, f->st };

		if (f->linked && !(flags & AS_ARG))
			/* a walk into a link to a folder could loop, or walk a
			 * tree twice: name it on the command line */
			say(path, "a link to a directory, not followed (give it as an argument)");
		else if (!(flags & IN_MAILDIR))
			walk_dir(w, &d, path, depth);
	} else if (S_ISREG(f->st.st_mode))
		read_regular(w, f, path);
	else
		fail(w, path, "not a regular file or a directory");
	close(f->fd);
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

/* walk_entries - the names of the directory d, in order, each visited */
static void walk_entries(struct walk *w, const struct dir *d, const char *path, int flags, int depth)
{
	char **names = NULL, child[PATH_MAX];
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *dp;
	int dup_fd = dup(d->fd);

	if (dup_fd < 0 || (dp = fdopendir(dup_fd)) == NULL) {
		fail(w, path, "%s", strerror(errno));
		if (dup_fd >= 0)
			close(dup_fd);
		return;
	}
	while ((de = readdir(dp)) != NULL) {
		if (learn_walk_skips(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = xrealloc(names, cap * sizeof(*names));
		}
		names[n++] = xstrdup(de->d_name);
	}
	closedir(dp);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		if (!w->sink->stop(w->sink->arg) && !quarantine_record(names, n, names[i])) {
			struct found f;
			int hops = 0;

			snprintf(child, sizeof(child), "%s%s%s", path,
			         path[0] != '\0' && path[strlen(path) - 1] == '/' ? "" : "/", names[i]);
			if (lookup(w, d, names[i], child, LK_READ, &hops, &f) == 0)
				visit(w, &f, child, flags, depth + 1);
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
static void walk_dir(struct walk *w, const struct dir *d, const char *path, int depth)
{
	static const char *const sub[] = { "cur", "new" };
	char child[PATH_MAX];

	if (depth >= WALK_MAX_DEPTH) {
		fail(w, path, "more than %d directories deep: not walked", WALK_MAX_DEPTH);
		return;
	}
	if (!is_maildir(d->fd)) {
		walk_entries(w, d, path, 0, depth);
		return;
	}
	for (int i = 0; i < 2 && !w->sink->stop(w->sink->arg); i++) {
		struct found f;
		int hops = 0;

		snprintf(child, sizeof(child), "%s%s%s", path,
		         path[0] != '\0' && path[strlen(path) - 1] == '/' ? "" : "/", sub[i]);
		if (lookup(w, d, sub[i], child, LK_READ, &hops, &f) < 0)
			continue;
		if (S_ISDIR(f.st.st_mode) && !f.linked) {
			struct dir sd = { f.fd, f.st };

			walk_entries(w, &sd, child, IN_MAILDIR, depth + 1);
		}
		close(f.fd);
	}
}

void learn_walk(const char *path, const struct learn_sink *sink)
{
	struct walk w = { .sink = sink, .me = geteuid() };
	struct found f;
	int hops = 0;

	if (resolve(&w, NULL, path, path, LK_READ, &hops, &f) < 0)
		return;
	sbuf_init(&w.raw, LEARN_MAX_SIZE);
	visit(&w, &f, path, AS_ARG, 0);
	sbuf_free(&w.raw);
}
