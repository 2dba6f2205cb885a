/* audit.c - the audit log; see audit.h. */
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "audit.h"
#include "log.h"
#include "monotime.h"
#include "sbuf.h"
#include "utf8.h"

/* audit_fd is read without write_lock only to see whether there is one */
static int audit_fd = -1;
static char audit_path[PATH_MAX];   /* configured; for reopens and the log lines */
static int configured;              /* a log is configured (audit_path) */
/* A configured log that could not be opened is tried again by the writes
 * that find no descriptor, at most this often */
#define REOPEN_EVERY_MS 1000
static long long retry_at_ms;
static int open_errno;              /* of its last failed open */

/* A failed write (ENOSPC, EDQUOT, EIO, EFBIG) must not leave part of a
 * line: the next record would be glued onto it and neither would parse.
 * Several processes append to the file (the proxy, the milter, the
 * quarantine commands), each through its own descriptor.  One write() of
 * a whole record is not enough: a write that fails part-way leaves a
 * fragment, and a retry of the rest is a second write.  So the writes of
 * this process's threads are serialized under write_lock, and those of
 * all processes under flock() on the file, held from the check of the
 * file's last byte through the write to the cut of a partial one: nobody
 * appends between a fragment and its cut, or after a fragment that is
 * still there.  Lost records are counted and logged once per streak, not
 * once per line, so a full disk does not also flood the system log. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long lost_lines;    /* in the current streak of failures */
static int glued;                   /* a partial line could not be cut off */
static int lockable;                /* a regular file: flock, lseek, cut */
static int readable;                /* its last byte can be read (O_RDWR) */
static off_t last_end = -1;         /* its size after our last write, -1 unknown */
static int lock_failed_logged;

/* open_log - open path to append to, as audit_open says: the descriptor,
 * its stat in *st and whether it could be opened for reading in *rdwr;
 * -1 with errno */
static int open_log(const char *path, struct stat *st, int *rdwr)
{
	/* Its directory belongs to the daemon's user, and "mailwarden
	 * quarantine release|delete" writes here as root: a link planted in
	 * place of the log (by a compromised child) must not make root append
	 * to /etc/passwd.  Root writing in a directory root does not own takes
	 * no symlink, no other name of another file, no FIFO to hang on
	 * (O_NONBLOCK changes nothing for a regular file).  Elsewhere a link
	 * is the admin's (or reaches only what the user may write anyway). */
	char dir[PATH_MAX];
	struct stat ds;
	int guarded = 0;
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash != NULL) slash[slash == dir ? 1 : 0] = '\0';
	if (geteuid() == 0 && slash != NULL && stat(dir, &ds) == 0 && ds.st_uid != 0)
		guarded = 1;
	/* read access only to see whether the file ends in a newline (a
	 * writer died mid-record); a file we may only append to goes without */
	int flags = O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK | (guarded ? O_NOFOLLOW : 0);
	*rdwr = 1;
	int fd = open(path, O_RDWR | flags, 0640);
	if (fd < 0 && (errno == EACCES || errno == EPERM)) {
		*rdwr = 0;
		fd = open(path, O_WRONLY | flags, 0640);
	}
	if (fd < 0) return -1;
	if (fstat(fd, st) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	if (guarded && (!S_ISREG(st->st_mode) || st->st_nlink != 1)) {
		close(fd);
		errno = S_ISREG(st->st_mode) ? EMLINK : EINVAL;
		return -1;
	}
	/* made just now by a command run as root: it stays the daemon's (its
	 * directory's owner), or the daemon could not write it */
	if (guarded && st->st_uid == 0 && st->st_size == 0)
		(void)!fchown(fd, ds.st_uid, ds.st_gid);
	return fd;
}

/* install_locked - under write_lock: fd (taken) becomes the log's
 * descriptor.  0, or -1 with errno (fd closed). */
static int install_locked(int fd, const struct stat *st, int rdwr)
{
	int cur = __atomic_load_n(&audit_fd, __ATOMIC_RELAXED);

	if (cur < 0) {
		__atomic_store_n(&audit_fd, fd, __ATOMIC_RELAXED);
	} else {
		/* reopen (log rotation, reload) while other threads may be
		 * writing: dup3 swaps the file under the same descriptor number
		 * atomically */
		int rc = dup3(fd, cur, O_CLOEXEC);
		int saved = errno;
		close(fd);
		if (rc < 0) {
			errno = saved;
			return -1;
		}
	}
	lockable = S_ISREG(st->st_mode);
	readable = rdwr;
	last_end = -1;          /* the first write looks at the file's last byte */
	if (rdwr) glued = 0;    /* which tells; else keep it, the same file may be reopened */
	return 0;
}

/* still_there - the open descriptor is the file path names (its reopen
 * failed for another reason: out of descriptors, say) */
static int still_there(const char *path)
{
	struct stat a, b;

	return audit_fd >= 0 && fstat(audit_fd, &a) == 0 && lstat(path, &b) == 0
	       && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* drop_locked - under write_lock: no descriptor any more */
static void drop_locked(void)
{
	int fd = __atomic_load_n(&audit_fd, __ATOMIC_RELAXED);

	__atomic_store_n(&audit_fd, -1, __ATOMIC_RELAXED);
	if (fd >= 0) close(fd);
}

int audit_open(const char *path)
{
	struct stat st;
	int rdwr, rc = 0, saved;

	if (path == NULL || path[0] == '\0') {
		audit_close();
		return 0;
	}
	int fd = open_log(path, &st, &rdwr);
	saved = errno;
	pthread_mutex_lock(&write_lock);
	/* A log that cannot be opened is one that cannot be written: the
	 * records are counted as lost (audit_failure = tempfail refuses mail
	 * meanwhile) and each write tries to open it again, once a second.
	 * Going on writing into the file we had would be worse: after a
	 * rotation that is the renamed one, which the next rotation
	 * compresses and removes, and everything written to it after that is
	 * gone without an error. */
	if (fd >= 0) {
		rc = install_locked(fd, &st, rdwr);
		saved = errno;
	} else {
		rc = -1;
	}
	if (rc < 0 && !(strcmp(path, audit_path) == 0 && still_there(path)))
		drop_locked();
	snprintf(audit_path, sizeof audit_path, "%s", path);
	open_errno = rc < 0 ? saved : 0;
	retry_at_ms = monotime_ms() + REOPEN_EVERY_MS;
	__atomic_store_n(&configured, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&write_lock);
	errno = saved;
	return rc;
}

/* reopen_locked - under write_lock, the log configured but not open: try
 * to open it again, at most once every REOPEN_EVERY_MS.  0, or -1 with the
 * open's errno. */
static int reopen_locked(void)
{
	long long now = monotime_ms();
	struct stat st;
	int rdwr;

	if (now < retry_at_ms) {
		errno = open_errno;
		return -1;
	}
	retry_at_ms = now + REOPEN_EVERY_MS;
	int fd = open_log(audit_path, &st, &rdwr);
	if (fd < 0 || install_locked(fd, &st, rdwr) < 0) {
		open_errno = errno;
		return -1;
	}
	open_errno = 0;
	slog(NULL, LOG_NOTICE, "audit log %s: opened now", audit_path);
	return 0;
}

int audit_open_logged(const char *path, const char *who)
{
	if (audit_open(path) == 0) return 0;
	slog_errno(NULL, LOG_ERR, "%saudit log %s: cannot open it; its records are lost (and "
	           "audit_failure = tempfail refuses mail) until it opens, tried again each second",
	           who, path);
	return -1;
}

void audit_close(void)
{
	/* under write_lock: another thread may be in write_all with the
	 * descriptor, whose number a socket could take once it is closed */
	pthread_mutex_lock(&write_lock);
	drop_locked();
	__atomic_store_n(&configured, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&lost_lines, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&write_lock);
}

json_object *json_string_bytes(const char *p, size_t len)
{
	return json_object_new_string_len(p, (int)len);
}

json_object *json_number(double d, int decimals)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%.*f", decimals, d);
	/* trim trailing zeros, keep one decimal: 6.000 -> 6.0 */
	char *dot = strchr(buf, '.');
	if (dot) {
		char *end = buf + strlen(buf) - 1;
		while (end > dot + 1 && *end == '0') *end-- = '\0';
	}
	return json_object_new_double_s(d, buf);
}

/* --- batching ------------------------------------------------------------- */

/* A proxy event loop collects the lines of one iteration and writes them
 * with one write() just before it waits again: at concurrency 10 or 100
 * several transactions end in the same iteration.  The flush is an event
 * made active when the first line is queued; libevent runs events that
 * become active during an iteration in that same iteration, after the ones
 * already queued, so the lines are written before epoll_wait and a crash
 * loses at most the lines of the iteration it happened in. */
#define BATCH_FLUSH_AT (64 * 1024)   /* write at once past this much */

struct audit_batch {
	struct event *flush;
	struct sbuf   buf;
	int           pending;   /* flush is active */
};

static _Thread_local struct audit_batch *batch;

int audit_failing(void)
{
	return __atomic_load_n(&configured, __ATOMIC_RELAXED)
	       && (__atomic_load_n(&lost_lines, __ATOMIC_RELAXED) != 0
	           || __atomic_load_n(&audit_fd, __ATOMIC_RELAXED) < 0);
}

/* cut_partial - a write appended done bytes of a line and then failed:
 * remove them.  Our offset is the end of what we appended (O_APPEND).
 * Under the file lock no one else appends, but a writer that does not
 * take it (an admin's echo >>) may have: if the file is longer, cutting
 * would take its line, so the fragment stays and the next record starts
 * with a newline instead.  The cut also fails on an append-only file
 * (chattr +a: EPERM). */
static void cut_partial(size_t done)
{
	struct stat st;
	off_t end = lseek(audit_fd, 0, SEEK_CUR);

	if (end >= (off_t)done && fstat(audit_fd, &st) == 0 && st.st_size == end
	    && ftruncate(audit_fd, end - (off_t)done) == 0) {
		last_end = end - (off_t)done;
		return;
	}
	glued = 1;
	last_end = -1;
}

static int write_some(const char *p, size_t len, size_t *done)
{
	*done = 0;
	while (*done < len) {
		ssize_t w = write(audit_fd, p + *done, len - *done);
		if (w < 0 && errno == EINTR) continue;
		if (w <= 0) {
			if (w == 0) errno = ENOSPC;
			return -1;
		}
		*done += (size_t)w;
	}
	return 0;
}

/* lock_file - flock the log against the other processes; 0 when it cannot
 * be locked (a file system without locks: then as before, unlocked) */
static int lock_file(void)
{
	if (!lockable) return 0;
	while (flock(audit_fd, LOCK_EX) < 0) {
		if (errno == EINTR) continue;
		if (!lock_failed_logged) {
			lock_failed_logged = 1;
			slog_errno(NULL, LOG_WARNING, "audit log %s: cannot lock it (records of "
			           "other processes may end up on the line of one that fails part-way)",
			           audit_path);
		}
		return 0;
	}
	return 1;
}

/* ends_open - the file does not end with a newline: a writer died in the
 * middle of a record, or its cut failed.  Sets *size to the file's size
 * (-1 unknown).  Only a file that changed since our last write is read. */
static int ends_open(off_t *size)
{
	char c;

	/* lseek costs half an fstat; the offset is the writes' (O_APPEND) */
	*size = lockable ? lseek(audit_fd, 0, SEEK_END) : -1;
	if (*size < 0) return glued;
	if (*size == 0) return 0;
	if (*size == last_end && !glued) return 0;
	if (!readable || pread(audit_fd, &c, 1, *size - 1) != 1) return glued;
	return c != '\n';
}

/* write_all - append whole lines (p ends with a newline) or none of them */
static int write_all(const char *p, size_t len)
{
	size_t done, lines = 0;
	off_t size;
	int rc, locked;
	const char *what = "write failed";

	pthread_mutex_lock(&write_lock);
	if (audit_fd < 0) {
		/* configured, but it could not be opened (or reopened) */
		locked = 0;
		if (!configured) {
			pthread_mutex_unlock(&write_lock);
			return 0;
		}
		if (reopen_locked() < 0) {
			what = "cannot open it";
			goto fail;
		}
	}
	locked = lock_file();
	if (ends_open(&size)) {
		if (write_some("\n", 1, &done) < 0) goto fail;
		glued = 0;
		if (size >= 0) size++;
	}
	if (write_some(p, len, &done) < 0) {
		int saved = errno;
		last_end = -1;
		if (done > 0) cut_partial(done);
		errno = saved;
		goto fail;
	}
	last_end = size >= 0 ? size + (off_t)len : -1;
	if (locked) flock(audit_fd, LOCK_UN);
	if (lost_lines > 0) {
		slog(NULL, LOG_NOTICE, "audit log %s: writing again; %lu record%s lost", audit_path,
		     lost_lines, lost_lines == 1 ? "" : "s");
		__atomic_store_n(&lost_lines, 0, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&write_lock);
	return 0;
fail:
	rc = errno;
	if (locked) flock(audit_fd, LOCK_UN);
	for (size_t i = 0; i < len; i++)
		lines += p[i] == '\n';
	if (lost_lines == 0) {
		errno = rc;
		slog_errno(NULL, LOG_ERR, "audit log %s: %s, record lost (logged once until "
		           "writes succeed again)", audit_path, what);
	}
	/* at least 1: audit_failing must see the failure */
	__atomic_store_n(&lost_lines, lost_lines + (lines ? lines : 1), __ATOMIC_RELAXED);
	pthread_mutex_unlock(&write_lock);
	errno = rc;
	return -1;
}

static void batch_flush(struct audit_batch *b)
{
	if (b->buf.len > 0) write_all(b->buf.data, b->buf.len);
	sbuf_reset(&b->buf);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct audit_batch *b = arg;
	(void)fd;
	(void)what;
	b->pending = 0;
	batch_flush(b);
}

void audit_batch_start(struct event_base *base)
{
	if (batch != NULL) return;
	struct audit_batch *b = xcalloc(1, sizeof *b);
	sbuf_init(&b->buf, (size_t)-1);
	b->flush = event_new(base, -1, 0, flush_cb, b);
	if (b->flush == NULL) {
		free(b);
		return;                 /* lines are then written one by one */
	}
	batch = b;
}

void audit_batch_stop(void)
{
	struct audit_batch *b = batch;
	if (b == NULL) return;
	batch = NULL;
	batch_flush(b);
	event_free(b->flush);
	sbuf_free(&b->buf);
	free(b);
}

int audit_write_line(const char *text, size_t len)
{
	if (!__atomic_load_n(&configured, __ATOMIC_RELAXED)) return 0;
	struct audit_batch *b = batch;
	if (b == NULL) {
		/* one write per line: lines of different threads never interleave */
		struct sbuf line;
		sbuf_init(&line, (size_t)-1);
		sbuf_add(&line, text, len);
		sbuf_addc(&line, '\n');
		int rc = write_all(line.data, line.len);
		int saved = errno;
		sbuf_free(&line);
		errno = saved;
		return rc;
	}
	if (b->buf.len > 0 && b->buf.len + len + 1 > BATCH_FLUSH_AT) batch_flush(b);
	sbuf_add(&b->buf, text, len);
	sbuf_addc(&b->buf, '\n');
	if (!b->pending) {
		b->pending = 1;
		event_active(b->flush, EV_TIMEOUT, 1);
	}
	return 0;
}

int audit_write(json_object *rec)
{
	if (!__atomic_load_n(&configured, __ATOMIC_RELAXED)) {
		json_object_put(rec);
		return 0;
	}
	size_t len;
	const char *text = json_object_to_json_string_length(rec, JSON_C_TO_STRING_PLAIN |
	                                                     JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	struct sbuf line;
	sbuf_init(&line, (size_t)-1);
	utf8_sanitize_sbuf(&line, text, len);
	int rc = audit_write_line(line.data ? line.data : "", line.len);
	int saved = errno;
	sbuf_free(&line);
	json_object_put(rec);
	errno = saved;
	return rc;
}
