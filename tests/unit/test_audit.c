/* test_audit.c - unit tests for proxy/audit.c: the audit log written by
 * several processes at once (the proxy, the milter, the quarantine
 * commands each open it and append), with writes that fail part-way
 * (past RLIMIT_FSIZE, as a full disk does), and a log that ends in the
 * fragment of a writer that died mid-record or of a cut that was refused
 * (an append-only file).  Every line must be one whole
 * JSON record, and exactly the records whose write returned 0 must be in
 * the file, once each. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "proxy/audit.h"

static char dir[] = "/tmp/test_audit.XXXXXX";
static char path[sizeof dir + 16];

static int setup(void **st)
{
	(void)st;
	strcpy(dir, "/tmp/test_audit.XXXXXX");
	if (mkdtemp(dir) == NULL) return -1;
	snprintf(path, sizeof path, "%s/audit.log", dir);
	return 0;
}

/* set_append_only - chattr +a / -a; 0, or -1 where that is not permitted */
static int set_append_only(const char *p, int on)
{
	int fd = open(p, O_RDONLY), flags, rc = -1;

	if (fd < 0) return -1;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
		flags = on ? flags | FS_APPEND_FL : flags & ~FS_APPEND_FL;
		rc = ioctl(fd, FS_IOC_SETFLAGS, &flags);
	}
	close(fd);
	return rc;
}

static int teardown(void **st)
{
	(void)st;
	audit_close();
	(void)set_append_only(path, 0);
	unlink(path);
	rmdir(dir);
	return 0;
}

static char *slurp(const char *p, size_t *lenp)
{
	int fd = open(p, O_RDONLY);
	struct stat s;
	char *buf;
	size_t got = 0;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &s), 0);
	buf = malloc((size_t)s.st_size + 1);
	assert_non_null(buf);
	while (got < (size_t)s.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)s.st_size - got);
		assert_true(n > 0);
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);
	*lenp = got;
	return buf;
}

/* one_record - line (without its newline) as exactly one JSON object, or NULL */
static json_object *one_record(const char *line, size_t len)
{
	json_tokener *tok = json_tokener_new();
	json_object *o = json_tokener_parse_ex(tok, line, (int)len);

	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	                  json_tokener_get_parse_end(tok) != len ||
	                  !json_object_is_type(o, json_type_object))) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* Several processes --------------------------------------------------------- */

#define NWRITERS 6
#define NRECORDS 600

/* record_len - a mix of sizes: mostly a few hundred bytes to 3 KB (a
 * transaction), some 70 KB (a batch of the proxy's loop), a few 300 KB
 * (a batch at concurrency 100); deterministic per writer and number */
static size_t record_len(int w, int n)
{
	if (n % 50 == 49) return 300000;
	if (n % 13 == 12) return 70000;
	return 100 + ((unsigned)(w * 7919 + n * 104729) % 3000);
}

static char *make_record(int w, int n, size_t *lenp)
{
	size_t len = record_len(w, n);
	char *p = malloc(len + 1);
	int head;

	if (p == NULL) _exit(90);
	head = snprintf(p, len + 1, "{\"w\":%d,\"n\":%d,\"pad\":\"", w, n);
	memset(p + head, 'a' + (w + n) % 26, len - (size_t)head - 2);
	memcpy(p + len - 2, "\"}", 2);
	p[len] = '\0';
	*lenp = len;
	return p;
}

/* writer - the body of one child.  Odd writers cut every other write of
 * theirs part-way: RLIMIT_FSIZE set just past the file's current end makes
 * write() append part of the record and fail (EFBIG, as ENOSPC would).
 * Meanwhile the others append whole records.  Reports through fd, one byte
 * per record: 1 if audit_write_line returned 0. */
static void writer(int w, int fd)
{
	char ok[NRECORDS];
	struct rlimit unlimited;

	signal(SIGXFSZ, SIG_IGN);       /* as main.c: EFBIG, not death */
	if (getrlimit(RLIMIT_FSIZE, &unlimited) < 0) _exit(91);
	if (audit_open(path) < 0) _exit(92);
	for (int n = 0; n < NRECORDS; n++) {
		size_t len;
		char *rec = make_record(w, n, &len);

		if (w % 2 == 1 && n % 2 == 0) {
			struct stat s;
			struct rlimit lim = unlimited;

			if (stat(path, &s) < 0) _exit(93);
			lim.rlim_cur = (rlim_t)s.st_size + len / 2;
			if (setrlimit(RLIMIT_FSIZE, &lim) < 0) _exit(94);
		}
		ok[n] = audit_write_line(rec, len) == 0;
		if (w % 2 == 1 && n % 2 == 0 && setrlimit(RLIMIT_FSIZE, &unlimited) < 0) _exit(95);
		free(rec);
	}
	audit_close();
	if (write(fd, ok, sizeof ok) != (ssize_t)sizeof ok) _exit(96);
	_exit(0);
}

static void test_writers_and_cuts(void **st)
{
	static char ok[NWRITERS][NRECORDS], seen[NWRITERS][NRECORDS];
	int fds[NWRITERS];
	pid_t pids[NWRITERS];
	size_t len, nlines = 0, nok = 0, nfailed = 0;
	char *data, *p, *end;

	(void)st;
	memset(seen, 0, sizeof seen);
	for (int w = 0; w < NWRITERS; w++) {
		int pfd[2];

		assert_int_equal(pipe(pfd), 0);
		pids[w] = fork();
		assert_true(pids[w] >= 0);
		if (pids[w] == 0) {
			int null = open("/dev/null", O_WRONLY);

			/* the "write failed" lines of the cut writers */
			if (null >= 0) dup2(null, STDERR_FILENO);
			close(pfd[0]);
			writer(w, pfd[1]);
		}
		close(pfd[1]);
		fds[w] = pfd[0];
	}
	for (int w = 0; w < NWRITERS; w++) {
		int status;
		size_t got = 0;

		while (got < NRECORDS) {
			ssize_t n = read(fds[w], ok[w] + got, NRECORDS - got);
			assert_true(n > 0);
			got += (size_t)n;
		}
		close(fds[w]);
		assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}

	data = slurp(path, &len);
	assert_true(len > 0);
	assert_int_equal(data[len - 1], '\n');
	for (p = data; p < data + len; p = end + 1) {
		json_object *o, *v;
		int w, n;

		end = memchr(p, '\n', (size_t)(data + len - p));
		o = one_record(p, (size_t)(end - p));
		if (o == NULL)
			fail_msg("line %zu (%zu bytes at offset %zu) is not one JSON record: %.60s...",
			         nlines + 1, (size_t)(end - p), (size_t)(p - data), p);
		assert_true(json_object_object_get_ex(o, "w", &v));
		w = json_object_get_int(v);
		assert_true(json_object_object_get_ex(o, "n", &v));
		n = json_object_get_int(v);
		assert_true(w >= 0 && w < NWRITERS && n >= 0 && n < NRECORDS);
		assert_true(json_object_object_get_ex(o, "pad", &v));
		assert_int_equal(json_object_get_string_len(v), record_len(w, n) - strlen("\"}") -
		                 (size_t)snprintf(NULL, 0, "{\"w\":%d,\"n\":%d,\"pad\":\"", w, n));
		if (seen[w][n]) fail_msg("record %d/%d is in the log twice", w, n);
		seen[w][n] = 1;
		json_object_put(o);
		nlines++;
	}
	free(data);
	for (int w = 0; w < NWRITERS; w++)
		for (int n = 0; n < NRECORDS; n++) {
			if (ok[w][n] != seen[w][n])
				fail_msg("record %d/%d: written says %d, in the log %d", w, n, ok[w][n],
				         seen[w][n]);
			nok += ok[w][n] != 0;
			nfailed += ok[w][n] == 0;
		}
	assert_int_equal(nlines, nok);
	/* the test must have cut writes; the writers that are never cut must
	 * all have succeeded */
	assert_true(nfailed >= NRECORDS / 4);
	for (int w = 0; w < NWRITERS; w += 2)
		for (int n = 0; n < NRECORDS; n++)
			assert_int_equal(ok[w][n], 1);
}

/* A writer that died mid-record --------------------------------------------- */

/* A process killed part-way through its write (or one whose cut was
 * refused: an append-only file) leaves the start of a record without its
 * newline.  The next record, whoever writes it, must not continue that
 * line: then the fragment is one line that does not parse, and the record
 * is whole on the next. */
static void test_fragment_of_another_writer(void **st)
{
	static const char frag[] = "{\"time\":\"2026-01-01T00:00:00Z\",\"subject\":\"cut";
	static const char rec1[] = "{\"n\":1}", rec2[] = "{\"n\":2}";
	size_t len;
	char *data;
	int fd;

	(void)st;
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"n\":0}\n", 8), 8);
	assert_int_equal(write(fd, frag, strlen(frag)), (ssize_t)strlen(frag));
	assert_int_equal(audit_open(path), 0);
	assert_int_equal(audit_write_line(rec1, strlen(rec1)), 0);
	/* the next one follows directly: no empty line */
	assert_int_equal(audit_write_line(rec2, strlen(rec2)), 0);
	/* and so does a record after another process's whole one */
	assert_int_equal(write(fd, "{\"n\":3}\n", 8), 8);
	assert_int_equal(audit_write_line(rec1, strlen(rec1)), 0);
	/* a fragment written while our descriptor stays open */
	assert_int_equal(write(fd, frag, strlen(frag)), (ssize_t)strlen(frag));
	assert_int_equal(audit_write_line(rec2, strlen(rec2)), 0);
	close(fd);
	data = slurp(path, &len);
	assert_string_equal(data, "{\"n\":0}\n"
	                    "{\"time\":\"2026-01-01T00:00:00Z\",\"subject\":\"cut\n"
	                    "{\"n\":1}\n"
	                    "{\"n\":2}\n"
	                    "{\"n\":3}\n"
	                    "{\"n\":1}\n"
	                    "{\"time\":\"2026-01-01T00:00:00Z\",\"subject\":\"cut\n"
	                    "{\"n\":2}\n");
	free(data);
}


/* A cut that is refused ---------------------------------------------------- */

/* An append-only file (chattr +a, for an audit log that root's own
 * mistakes must not shorten) takes no ftruncate: a write that fails
 * part-way leaves its fragment.  Before, only the process that wrote it
 * knew, and the next record of any other process continued that line. */
static void test_cut_refused(void **st)
{
	static const char rec[] = "{\"n\":1}", big[] = "{\"n\":2,\"pad\":\"0123456789abcdef\"}";
	struct rlimit old, lim;
	size_t len;
	char *data;
	pid_t pid;
	int fd, status;

	(void)st;
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0640);
	assert_true(fd >= 0);
	close(fd);
	if (set_append_only(path, 1) < 0) {
		skip();         /* no CAP_LINUX_IMMUTABLE, or the file system has no such flag */
		return;
	}
	assert_int_equal(audit_open(path), 0);
	assert_int_equal(audit_write_line(rec, strlen(rec)), 0);
	/* the next write stops after 10 bytes of big */
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = strlen(rec) + 1 + 10;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	assert_int_equal(audit_write_line(big, strlen(big)), -1);
	assert_int_equal(errno, EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	/* another process writes the next record */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		audit_close();
		_exit(audit_open(path) == 0 && audit_write_line(rec, strlen(rec)) == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* and then this one again */
	assert_int_equal(audit_write_line(big, strlen(big)), 0);
	data = slurp(path, &len);
	assert_string_equal(data, "{\"n\":1}\n"
	                    "{\"n\":2,\"pa\n"
	                    "{\"n\":1}\n"
	                    "{\"n\":2,\"pad\":\"0123456789abcdef\"}\n");
	free(data);
}

/* A log that cannot be opened ------------------------------------------------ */

/* read_file - the file's text ("" when there is none) */
static char *read_file(const char *p)
{
	size_t len;

	if (access(p, F_OK) != 0) return strdup("");
	return slurp(p, &len);
}

/* A configured log that cannot be opened (its directory is missing, a
 * directory stands where the file should be) is a log that cannot be
 * written: before, audit_open failed once, the writes returned 0 without
 * a word and audit_failing() stayed false, so audit_failure = tempfail
 * let every message through unrecorded.  Now the records are counted lost
 * and each write tries to open the log again, at most once a second. */
static void test_unopened_log_is_failing_and_retried(void **st)
{
	static const char rec1[] = "{\"n\":1}", rec2[] = "{\"n\":2}", rec3[] = "{\"n\":3}";
	char sub[sizeof path + 16], p[sizeof path + 32];
	char *data;

	(void)st;
	snprintf(sub, sizeof sub, "%s/sub", dir);
	snprintf(p, sizeof p, "%s/audit.log", sub);
	assert_int_equal(audit_open(p), -1);
	assert_int_equal(errno, ENOENT);
	assert_true(audit_failing());
	assert_int_equal(audit_write_line(rec1, strlen(rec1)), -1);
	assert_int_equal(errno, ENOENT);
	assert_true(audit_failing());
	assert_int_equal(mkdir(sub, 0750), 0);
	/* tried again a second after the last attempt, not at every write */
	assert_int_equal(audit_write_line(rec2, strlen(rec2)), -1);
	assert_false(access(p, F_OK) == 0);
	usleep(1100 * 1000);
	assert_int_equal(audit_write_line(rec3, strlen(rec3)), 0);
	assert_false(audit_failing());
	data = read_file(p);
	assert_string_equal(data, "{\"n\":3}\n");
	free(data);
	audit_close();
	assert_false(audit_failing());      /* no log configured: nothing to fail */
	unlink(p);
	rmdir(sub);
}

/* logrotate renamed the log and the reopen (SIGUSR1) cannot create the new
 * one: the records must not go on into the renamed file, which the next
 * rotation compresses and removes (every record after that would vanish
 * without an error).  They are lost and counted; once the file can be
 * made, the writes make it. */
static void test_failed_reopen_after_rotation(void **st)
{
	static const char rec1[] = "{\"n\":1}", rec2[] = "{\"n\":2}", rec3[] = "{\"n\":3}";
	char rotated[sizeof path + 8];
	char *data;

	(void)st;
	snprintf(rotated, sizeof rotated, "%s.1", path);
	assert_int_equal(audit_open(path), 0);
	assert_int_equal(audit_write_line(rec1, strlen(rec1)), 0);
	assert_int_equal(rename(path, rotated), 0);
	assert_int_equal(mkdir(path, 0750), 0);         /* EISDIR, whoever opens it */
	assert_int_equal(audit_open(path), -1);
	assert_true(audit_failing());
	assert_int_equal(audit_write_line(rec2, strlen(rec2)), -1);
	data = read_file(rotated);
	assert_string_equal(data, "{\"n\":1}\n");
	free(data);
	assert_int_equal(rmdir(path), 0);
	usleep(1100 * 1000);
	assert_int_equal(audit_write_line(rec3, strlen(rec3)), 0);
	assert_false(audit_failing());
	data = read_file(path);
	assert_string_equal(data, "{\"n\":3}\n");
	free(data);
	unlink(rotated);
}

/* A reopen that fails while the descriptor is still the file the path
 * names (out of descriptors) keeps it: nothing is lost, nothing refused. */
static void test_failed_reopen_same_file_kept(void **st)
{
	static const char rec1[] = "{\"n\":1}", rec2[] = "{\"n\":2}";
	struct rlimit old, lim;
	char *data;
	int lowest;

	(void)st;
	assert_int_equal(audit_open(path), 0);
	assert_int_equal(audit_write_line(rec1, strlen(rec1)), 0);
	lowest = dup(0);
	assert_true(lowest >= 0);
	close(lowest);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)lowest;          /* no new descriptor */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
	int rc = audit_open(path), err = errno;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(rc, -1);
	assert_int_equal(err, EMFILE);
	assert_false(audit_failing());
	assert_int_equal(audit_write_line(rec2, strlen(rec2)), 0);
	data = read_file(path);
	assert_string_equal(data, "{\"n\":1}\n{\"n\":2}\n");
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_writers_and_cuts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fragment_of_another_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cut_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unopened_log_is_failing_and_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_reopen_after_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_reopen_same_file_kept, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
