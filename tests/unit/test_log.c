/* test_log.c - unit tests for proxy/log.c: the stderr line format, levels,
 * errno handling, truncation, control-byte scrubbing, invalid UTF-8, C1 and
 * bidi controls as \xHH, whole lines from many threads, die()/bug() in a
 * child process, and log_esc(). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/log.h"
#include "proxy/sbuf.h"

/* Capturing stderr ----------------------------------------------------------- */

static int saved_fd = -1;
static char cap_path[] = "/tmp/test_log.XXXXXX";

static void cap_start(void)
{
	int fd;

	strcpy(cap_path, "/tmp/test_log.XXXXXX");
	fd = mkstemp(cap_path);
	assert_true(fd >= 0);
	close(fd);
	fd = open(cap_path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	fflush(stderr);
	saved_fd = dup(STDERR_FILENO);
	assert_true(saved_fd >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	close(fd);
}

/* cap_end - restore stderr; returns what was written (caller frees) */
static char *cap_end(size_t *lenp)
{
	struct sbuf b;
	char buf[4096];
	ssize_t n;
	int fd;

	fflush(stderr);
	dup2(saved_fd, STDERR_FILENO);
	close(saved_fd);
	saved_fd = -1;
	sbuf_init(&b, 16 << 20);
	fd = open(cap_path, O_RDONLY);
	assert_true(fd >= 0);
	while ((n = read(fd, buf, sizeof buf)) > 0)
		assert_int_equal(sbuf_add(&b, buf, (size_t)n), 0);
	close(fd);
	unlink(cap_path);
	if (lenp != NULL)
		*lenp = b.len;
	return sbuf_steal(&b);
}

static char prefix[64];

static int setup(void **st)
{
	(void)st;
	log_init("mailwarden", 0, "mail", LOG_INFO);
	snprintf(prefix, sizeof prefix, "mailwarden[%ld]: ", (long)getpid());
	return 0;
}

/* Tests ---------------------------------------------------------------------- */

static void test_format(void **st)
{
	char *out, want[256];

	(void)st;
	cap_start();
	slog(NULL, LOG_INFO, "hello n=%d", 5);
	slog("0123456789abcdef", LOG_WARNING, "reject stage=%s", "rcpt");
	slog("", LOG_ERR, "empty sid");
	out = cap_end(NULL);
	snprintf(want, sizeof want, "%s- hello n=5\n%s0123456789abcdef reject stage=rcpt\n"
	    "%s- empty sid\n", prefix, prefix, prefix);
	assert_string_equal(out, want);
	free(out);

	/* the ident is the one given to log_init */
	log_init("mw-test", 0, NULL, LOG_INFO);
	cap_start();
	slog(NULL, LOG_NOTICE, "x");
	out = cap_end(NULL);
	snprintf(want, sizeof want, "mw-test[%ld]: - x\n", (long)getpid());
	assert_string_equal(out, want);
	free(out);
}

static void test_levels(void **st)
{
	char *out, want[256];

	(void)st;
	assert_true(log_enabled(LOG_ERR));
	assert_true(log_enabled(LOG_INFO));
	assert_false(log_enabled(LOG_DEBUG));
	cap_start();
	slog(NULL, LOG_DEBUG, "hidden");
	log_set_level(LOG_DEBUG);
	assert_true(log_enabled(LOG_DEBUG));
	slog(NULL, LOG_DEBUG, "shown");
	log_set_level(LOG_ERR);
	slog(NULL, LOG_WARNING, "hidden");
	slog(NULL, LOG_CRIT, "crit");
	assert_false(log_enabled(LOG_WARNING));
	out = cap_end(NULL);
	snprintf(want, sizeof want, "%s- shown\n%s- crit\n", prefix, prefix);
	assert_string_equal(out, want);
	free(out);
	/* out-of-range levels are clamped, not trusted */
	log_set_level(99);
	assert_true(log_enabled(LOG_DEBUG));
	log_set_level(-5);
	assert_true(log_enabled(LOG_EMERG));
	assert_false(log_enabled(LOG_ALERT));
}

static void test_errno(void **st)
{
	char *out, want[256];

	(void)st;
	cap_start();
	errno = ENOENT;
	slog_errno("00000000000000ff", LOG_WARNING, "open %s", "/nonexistent");
	assert_int_equal(errno, ENOENT);	/* logging keeps errno */
	errno = EINTR;
	slog(NULL, LOG_INFO, "plain");
	assert_int_equal(errno, EINTR);
	errno = 0;
	slog_errno(NULL, LOG_INFO, "zero");
	out = cap_end(NULL);
	snprintf(want, sizeof want, "%s00000000000000ff open /nonexistent: %s\n%s- plain\n"
	    "%s- zero: %s\n", prefix, strerror(ENOENT), prefix, prefix, strerror(0));
	assert_string_equal(out, want);
	free(out);
}

static void test_truncate(void **st)
{
	char big[5000], *out, *nl, tail[128];
	size_t len;

	(void)st;
	memset(big, 'z', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	cap_start();
	slog(NULL, LOG_INFO, "%s", big);
	errno = EACCES;
	slog_errno(NULL, LOG_INFO, "%s", big);
	out = cap_end(&len);
	/* first line: capped, marked, one newline */
	nl = strchr(out, '\n');
	assert_non_null(nl);
	assert_true((size_t)(nl - out) < 2048 + 64);
	assert_memory_equal(nl - 3, "...", 3);
	assert_memory_equal(out, prefix, strlen(prefix));
	/* second line: cut, but the errno text survives */
	snprintf(tail, sizeof tail, "...: %s\n", strerror(EACCES));
	assert_true(len > strlen(tail));
	assert_memory_equal(out + len - strlen(tail), tail, strlen(tail));
	assert_true(strlen(nl + 1) < 2048 + 64);
	free(out);
}

static void test_scrub(void **st)
{
	char *out, want[256];

	(void)st;
	cap_start();
	slog(NULL, LOG_INFO, "evil=%s end", "a\r\nmailwarden[1]: - forged\x1b[0m\x7f");
	out = cap_end(NULL);
	snprintf(want, sizeof want, "%s- evil=a??mailwarden[1]: - forged?[0m? end\n", prefix);
	assert_string_equal(out, want);
	free(out);
}

/* what is not UTF-8 text a reader can show as it is becomes \xHH per byte;
 * valid UTF-8 text stays as it is (session 19: invalid UTF-8 made journald
 * store the line as a blob, U+009B is CSI to a terminal) */
static void test_scrub_utf8(void **st)
{
	char *out, want[1024];
	size_t len;

	(void)st;
	cap_start();
	/* valid text: accented Latin, CJK, an emoji, U+FFFD itself */
	slog(NULL, LOG_INFO, "subject=%s", "caf\xc3\xa9 \xe6\xbc\xa2\xe5\xad\x97 \xf0\x9f\x93\xa7 \xef\xbf\xbd");
	/* stray bytes, truncated and overlong sequences, a surrogate */
	slog(NULL, LOG_INFO, "user=%s", "bob\xff\xfe x\xc3 y\xe2\x82 z\xc0\xaf s\xed\xa0\x80");
	/* C1 controls as UTF-8 (CSI, NEL) and raw */
	slog(NULL, LOG_INFO, "redis=%s", "ERR \xc2\x9b" "31m red \xc2\x85 \x9b" "2J");
	/* bidi formatting characters */
	slog(NULL, LOG_INFO, "name=%s", "invoice \xe2\x80\xae" "fdp.exe \xe2\x81\xa6x\xe2\x81\xa9 "
	    "\xe2\x80\x8e\xe2\x80\x8f\xd8\x9c \xe2\x80\x8b");
	/* the errno text is scrubbed as well, and kept */
	errno = ENOENT;
	slog_errno(NULL, LOG_WARNING, "open %s", "\xff");
	out = cap_end(&len);
	snprintf(want, sizeof want,
	    "%s- subject=caf\xc3\xa9 \xe6\xbc\xa2\xe5\xad\x97 \xf0\x9f\x93\xa7 \xef\xbf\xbd\n"
	    "%s- user=bob\\xff\\xfe x\\xc3 y\\xe2\\x82 z\\xc0\\xaf s\\xed\\xa0\\x80\n"
	    "%s- redis=ERR \\xc2\\x9b31m red \\xc2\\x85 \\x9b2J\n"
	    "%s- name=invoice \\xe2\\x80\\xae" "fdp.exe \\xe2\\x81\\xa6x\\xe2\\x81\\xa9 "
	    "\\xe2\\x80\\x8e\\xe2\\x80\\x8f\\xd8\\x9c \xe2\x80\x8b\n"
	    "%s- open \\xff: %s\n", prefix, prefix, prefix, prefix, prefix, strerror(ENOENT));
	assert_string_equal(out, want);
	free(out);
}

/* a line of hostile bytes: every escape grows it fourfold, the line stays
 * within its cap, is cut between escapes, keeps the errno text, and is
 * valid UTF-8 with no C1 or bidi character left */
static void test_scrub_cap(void **st)
{
	static char bad[3000], mixed[3000];
	char *out, *nl, tail[128];
	size_t len, i;

	(void)st;
	memset(bad, '\xff', sizeof bad - 1);
	for (i = 0; i + 3 < sizeof mixed; i += 3)
		memcpy(mixed + i, i % 2 ? "\xe2\x80\xae" : "\xc3\xa9\xc2", 3);
	cap_start();
	slog(NULL, LOG_INFO, "%s", bad);
	errno = EACCES;
	slog_errno(NULL, LOG_INFO, "%s", bad);
	slog(NULL, LOG_INFO, "%s", mixed);
	out = cap_end(&len);
	nl = strchr(out, '\n');
	assert_non_null(nl);
	assert_true((size_t)(nl - out) < 2048 + 64);
	assert_memory_equal(nl - 7, "\\xff...", 7);	/* no half escape */
	snprintf(tail, sizeof tail, "\\xff...: %s\n", strerror(EACCES));
	nl = strchr(nl + 1, '\n');
	assert_non_null(nl);
	assert_memory_equal(nl + 1 - strlen(tail), tail, strlen(tail));
	assert_true(strlen(nl + 1) < 2048 + 64);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)out[i];

		assert_true(c >= 0x20 || c == '\n');
		assert_true(c != 0x7f);
		if (c == 0xc2)
			assert_true((unsigned char)out[i + 1] >= 0xa0);
		if (c == 0xe2)
			assert_false(out[i + 1] == '\x80' && out[i + 2] == '\xae');
	}
	{
		/* valid UTF-8 throughout (é kept whole, never cut in two) */
		size_t k = 0;

		while (k < len) {
			unsigned char c = (unsigned char)out[k];
			size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;

			assert_true(c < 0x80 || (c >= 0xc2 && c <= 0xf4));
			for (size_t j = 1; j < n; j++)
				assert_true(k + j < len && ((unsigned char)out[k + j] & 0xc0) == 0x80);
			k += n;
		}
	}
	free(out);
}

static void test_facility(void **st)
{
	char *out;

	(void)st;
	cap_start();
	log_init("mailwarden", 0, "no-such-facility", LOG_INFO);
	log_init("mailwarden", 0, "LOCAL3", LOG_INFO);
	out = cap_end(NULL);
	assert_non_null(strstr(out, "unknown syslog facility \"no-such-facility\""));
	assert_null(strstr(out, "LOCAL3"));
	free(out);
}

/* Threads -------------------------------------------------------------------- */

#define NTHREADS 8
#define NLINES   400

static void *thread_main(void *arg)
{
	char sid[17];
	int i, t = (int)(intptr_t)arg;

	snprintf(sid, sizeof sid, "%016x", t);
	for (i = 0; i < NLINES; i++)
		slog(sid, LOG_INFO, "thread=%d line=%d pad=%0200d end", t, i, 0);
	return NULL;
}

static void test_threads(void **st)
{
	pthread_t th[NTHREADS];
	int counts[NTHREADS] = { 0 }, t, i, n = 0;
	char *out, *line, *save = NULL;

	(void)st;
	cap_start();
	for (t = 0; t < NTHREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, thread_main, (void *)(intptr_t)t), 0);
	for (t = 0; t < NTHREADS; t++)
		pthread_join(th[t], NULL);
	out = cap_end(NULL);
	for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char sid[17];

		assert_memory_equal(line, prefix, strlen(prefix));
		assert_int_equal(sscanf(line + strlen(prefix), "%16s thread=%d line=%d", sid, &t, &i), 3);
		assert_true(t >= 0 && t < NTHREADS);
		assert_int_equal(strtol(sid, NULL, 16), t);
		assert_int_equal(i, counts[t]);		/* in order per thread */
		counts[t]++;
		assert_int_equal(strcmp(line + strlen(line) - 4, " end"), 0);
		n++;
	}
	assert_int_equal(n, NTHREADS * NLINES);
	free(out);
}

/* die / bug ------------------------------------------------------------------ */

static void test_die_bug(void **st)
{
	char *out;
	pid_t pid;
	int status;

	(void)st;
	cap_start();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		log_set_level(LOG_EMERG);	/* die is logged whatever the level */
		die("config %s unusable", "/x.conf");
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGABRT, SIG_DFL);
		bug("state %d", 42);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);

	/* with syslog as the sink, ordinary lines leave stderr alone but die()
	 * still shows there */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		log_init("mailwarden", 1, "local7", LOG_DEBUG);
		slog(NULL, LOG_DEBUG, "to syslog only");
		die("startup failed");
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 1);

	out = cap_end(NULL);
	assert_non_null(strstr(out, "]: - config /x.conf unusable\n"));
	assert_non_null(strstr(out, "]: - bug: state 42\n"));
	assert_non_null(strstr(out, "]: - startup failed\n"));
	assert_null(strstr(out, "to syslog only"));
	free(out);
}

/* log_esc -------------------------------------------------------------------- */

static void test_esc(void **st)
{
	char out[64], small[8];
	char big[1100];
	unsigned char bytes[256];
	int i;

	(void)st;
	assert_ptr_equal(log_esc(out, sizeof out, "plain text", 10), out);
	assert_string_equal(out, "plain text");
	log_esc(out, sizeof out, "a\r\nb", 4);
	assert_string_equal(out, "a\\x0d\\x0ab");
	log_esc(out, sizeof out, "back\\slash", 10);
	assert_string_equal(out, "back\\\\slash");
	log_esc(out, sizeof out, "nul\0x", 5);
	assert_string_equal(out, "nul\\x00x");
	log_esc(out, sizeof out, "\x7f\x80\xff\x1f ~", 6);
	assert_string_equal(out, "\\x7f\\x80\\xff\\x1f ~");
	log_esc(out, sizeof out, "ignored", 0);
	assert_string_equal(out, "");
	log_esc(out, sizeof out, NULL, 5);
	assert_string_equal(out, "");
	/* the length, not a NUL, bounds the input */
	log_esc(out, sizeof out, "abcdef", 3);
	assert_string_equal(out, "abc");

	/* exact fit: no marker */
	log_esc(small, sizeof small, "1234567", 7);
	assert_string_equal(small, "1234567");
	/* one more: cut with the marker, within outsz-1 */
	log_esc(small, sizeof small, "12345678", 8);
	assert_string_equal(small, "1234...");
	/* an escape is never cut in half */
	log_esc(small, sizeof small, "ab\x01\x02", 4);
	assert_string_equal(small, "ab...");
	log_esc(small, sizeof small, "\x01\x02", 2);
	assert_string_equal(small, "\\x01...");
	log_esc(small, sizeof small, "\x01", 1);
	assert_string_equal(small, "\\x01");
	log_esc(small, sizeof small, "\\\\\\\\", 4);
	assert_string_equal(small, "\\\\\\\\...");
	/* tiny outputs */
	log_esc(small, 1, "abc", 3);
	assert_string_equal(small, "");
	log_esc(small, 3, "abc", 3);
	assert_string_equal(small, "..");
	log_esc(small, 3, "ab", 2);
	assert_string_equal(small, "ab");
	log_esc(small, 4, "abcd", 4);
	assert_string_equal(small, "...");
	assert_ptr_equal(log_esc(small, 0, "abc", 3), small);	/* writes nothing */
	assert_null(log_esc(NULL, 10, "abc", 3));

	/* every byte value: output is printable ASCII only */
	for (i = 0; i < 256; i++)
		bytes[i] = (unsigned char)i;
	log_esc(big, sizeof big, bytes, sizeof bytes);
	assert_true(strlen(big) < sizeof big);
	assert_null(strstr(big, "..."));
	for (i = 0; big[i]; i++)
		assert_true(big[i] >= 0x20 && big[i] <= 0x7e);
	/* a long hostile input stays inside the output buffer */
	{
		static unsigned char huge[100000];

		memset(huge, '\n', sizeof huge);
		log_esc(out, sizeof out, huge, sizeof huge);
		assert_true(strlen(out) <= sizeof out - 1);
		assert_memory_equal(out + strlen(out) - 3, "...", 3);
	}
}

/* log_esc_quoted, log_esc_word, and what they keep out of a line: a value from the
 * network can neither end a quoted value nor make a key=value of its own
 * (a MAIL FROM:<"x action=accept"@d> read by a field parser) */
static void test_esc_fields(void **st)
{
	char out[256];
	unsigned char bytes[256];
	int i;

	(void)st;
	log_esc(out, sizeof out, "a \"b\" c=d <e>", 13);
	assert_string_equal(out, "a \"b\" c=d <e>");      /* free text */
	log_esc_quoted(out, sizeof out, "a \"b\" c=d <e>", 13);
	assert_string_equal(out, "a \\x22b\\x22 c\\x3dd <e>");
	log_esc_word(out, sizeof out, "a \"b\" c=d <e>", 13);
	assert_string_equal(out, "a\\x20\\x22b\\x22\\x20c\\x3dd\\x20\\x3ce\\x3e");
	log_esc_word(out, sizeof out, "user@example.org", 16);
	assert_string_equal(out, "user@example.org");
	log_esc_word(out, sizeof out, "b\\s", 3);
	assert_string_equal(out, "b\\\\s");
	/* cut as log_esc is: never in an escape */
	log_esc_word(out, 8, "a b c", 5);
	assert_string_equal(out, "a...");

	for (i = 0; i < 256; i++)
		bytes[i] = (unsigned char)i;
	log_esc_quoted(out, sizeof out, bytes, sizeof bytes);
	assert_null(strchr(out, '"'));
	assert_null(strchr(out, '='));
	log_esc_word(out, sizeof out, bytes, sizeof bytes);
	assert_null(strpbrk(out, "\"= <>"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_format, setup),
		cmocka_unit_test_setup(test_levels, setup),
		cmocka_unit_test_setup(test_errno, setup),
		cmocka_unit_test_setup(test_truncate, setup),
		cmocka_unit_test_setup(test_scrub, setup),
		cmocka_unit_test_setup(test_scrub_utf8, setup),
		cmocka_unit_test_setup(test_scrub_cap, setup),
		cmocka_unit_test_setup(test_facility, setup),
		cmocka_unit_test_setup(test_threads, setup),
		cmocka_unit_test_setup(test_die_bug, setup),
		cmocka_unit_test(test_esc),
		cmocka_unit_test(test_esc_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
