/* test_sbuf.c - unit tests for proxy/sbuf.c: the hard ceiling (a failed
 * append leaves the buffer as it was), binary safety, the '\0' invariant,
 * formatted appends across growth, steal/reset/free, and the x* wrappers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "proxy/sbuf.h"

static void invariant(const struct sbuf *b)
{
	assert_true(b->len <= b->limit);
	if (b->data != NULL) {
		assert_true(b->len < b->cap);
		assert_int_equal(b->data[b->len], '\0');
	} else
		assert_int_equal(b->len, 0);
}

static void test_init_free(void **st)
{
	struct sbuf b;

	(void)st;
	sbuf_init(&b, 100);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.limit, 100);
	sbuf_reset(&b);			/* on an empty buffer */
	invariant(&b);
	sbuf_free(&b);
	sbuf_free(&b);			/* twice is harmless */
	assert_null(b.data);
	/* usable again after free, with the same limit */
	assert_int_equal(sbuf_adds(&b, "x"), 0);
	assert_string_equal(b.data, "x");
	sbuf_free(&b);
}

static void test_add(void **st)
{
	struct sbuf b;
	int i;

	(void)st;
	sbuf_init(&b, 1 << 20);
	assert_int_equal(sbuf_adds(&b, "hello"), 0);
	assert_int_equal(sbuf_addc(&b, ' '), 0);
	assert_int_equal(sbuf_add(&b, "world!!", 5), 0);
	assert_int_equal(b.len, 11);
	assert_string_equal(b.data, "hello world");
	invariant(&b);
	assert_int_equal(sbuf_add(&b, "", 0), 0);
	assert_int_equal(b.len, 11);
	/* growth across many reallocations keeps the contents */
	for (i = 0; i < 10000; i++)
		assert_int_equal(sbuf_addc(&b, (char)('a' + i % 26)), 0);
	assert_int_equal(b.len, 10011);
	for (i = 0; i < 10000; i++)
		assert_int_equal(b.data[11 + i], 'a' + i % 26);
	invariant(&b);
	sbuf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	assert_true(b.cap > 10000);	/* memory kept */
	invariant(&b);
	sbuf_free(&b);
}

static void test_binary(void **st)
{
	struct sbuf b;
	static const char bin[] = { 'a', '\0', 'b', '\r', '\n', '\0', (char)0xff };

	(void)st;
	sbuf_init(&b, 64);
	assert_int_equal(sbuf_add(&b, bin, sizeof bin), 0);
	assert_int_equal(sbuf_addc(&b, '\0'), 0);
	assert_int_equal(b.len, sizeof bin + 1);
	assert_memory_equal(b.data, bin, sizeof bin);
	assert_int_equal(b.data[sizeof bin], '\0');
	invariant(&b);
	sbuf_free(&b);
}

static void test_limit(void **st)
{
	struct sbuf b;
	char big[300];

	(void)st;
	memset(big, 'x', sizeof big);
	sbuf_init(&b, 10);
	assert_int_equal(sbuf_add(&b, big, 11), -1);
	assert_null(b.data);
	assert_int_equal(sbuf_add(&b, big, 10), 0);	/* exactly the limit */
	assert_int_equal(b.len, 10);
	assert_true(b.cap <= 11);			/* never holds more than it may */
	invariant(&b);
	assert_int_equal(sbuf_addc(&b, 'y'), -1);
	assert_int_equal(sbuf_adds(&b, "y"), -1);
	assert_int_equal(sbuf_add(&b, "", 0), 0);
	assert_int_equal(sbuf_addf(&b, "%d", 1), -1);
	assert_int_equal(sbuf_addf(&b, "%s", ""), 0);
	assert_int_equal(b.len, 10);
	assert_memory_equal(b.data, big, 10);
	invariant(&b);

	/* a failed append in the middle leaves the buffer intact */
	sbuf_reset(&b);
	assert_int_equal(sbuf_adds(&b, "abcd"), 0);
	assert_int_equal(sbuf_add(&b, big, 7), -1);
	assert_string_equal(b.data, "abcd");
	assert_int_equal(sbuf_addf(&b, "%s", "1234567"), -1);
	assert_string_equal(b.data, "abcd");
	assert_int_equal(b.len, 4);
	invariant(&b);
	assert_int_equal(sbuf_addf(&b, "%s", "123456"), 0);
	assert_string_equal(b.data, "abcd123456");
	sbuf_free(&b);

	/* sizes that would overflow are refused, not wrapped */
	sbuf_init(&b, SIZE_MAX);
	assert_int_equal(sbuf_adds(&b, "ab"), 0);
	assert_int_equal(sbuf_add(&b, big, SIZE_MAX), -1);
	assert_int_equal(sbuf_add(&b, big, SIZE_MAX - 2), -1);
	assert_string_equal(b.data, "ab");
	sbuf_free(&b);

	/* limit 0: only the empty string */
	sbuf_init(&b, 0);
	assert_int_equal(sbuf_addc(&b, 'a'), -1);
	assert_int_equal(sbuf_add(&b, "", 0), 0);
	assert_string_equal(b.data, "");
	sbuf_free(&b);
}

static void test_addf(void **st)
{
	struct sbuf b;
	char want[5000];
	int i;

	(void)st;
	sbuf_init(&b, 100000);
	assert_int_equal(sbuf_addf(&b, "%s=%d", "size", 42), 0);
	assert_string_equal(b.data, "size=42");
	assert_int_equal(sbuf_addf(&b, " %05u|%-3s|", 7u, "x"), 0);
	assert_string_equal(b.data, "size=42 00007|x  |");
	assert_int_equal(b.len, strlen(b.data));
	/* a long format that needs growth while there is some spare room */
	sbuf_reset(&b);
	memset(want, 'q', 4000);
	want[4000] = '\0';
	assert_int_equal(sbuf_adds(&b, "<"), 0);
	assert_int_equal(sbuf_addf(&b, "%s>", want), 0);
	assert_int_equal(b.len, 4002);
	assert_int_equal(b.data[0], '<');
	assert_int_equal(b.data[4001], '>');
	assert_int_equal(b.data[4002], '\0');
	invariant(&b);
	/* many small formatted appends */
	sbuf_reset(&b);
	for (i = 0; i < 1000; i++)
		assert_int_equal(sbuf_addf(&b, "%d,", i), 0);
	assert_int_equal(strncmp(b.data, "0,1,2,3,", 8), 0);
	assert_int_equal(b.len, strlen(b.data));
	invariant(&b);
	sbuf_free(&b);

	/* into a buffer that has no memory yet */
	sbuf_init(&b, 8);
	assert_int_equal(sbuf_addf(&b, "%s", "123456789"), -1);
	assert_null(b.data);
	assert_int_equal(sbuf_addf(&b, "%s", "12345678"), 0);
	assert_string_equal(b.data, "12345678");
	sbuf_free(&b);
}

static void test_steal(void **st)
{
	struct sbuf b;
	char *s;

	(void)st;
	sbuf_init(&b, 50);
	s = sbuf_steal(&b);		/* nothing appended yet: still a string */
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
	assert_int_equal(sbuf_adds(&b, "mine"), 0);
	s = sbuf_steal(&b);
	assert_string_equal(s, "mine");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	assert_int_equal(b.limit, 50);
	free(s);
	assert_int_equal(sbuf_adds(&b, "again"), 0);
	assert_string_equal(b.data, "again");
	sbuf_free(&b);
}

static void test_xalloc(void **st)
{
	char *p;
	int *v;

	(void)st;
	p = xmalloc(0);
	assert_non_null(p);
	free(p);
	p = xstrdup("copy");
	assert_string_equal(p, "copy");
	p = xrealloc(p, 100);
	assert_string_equal(p, "copy");
	free(p);
	p = xstrndup("abcdef", 3);
	assert_string_equal(p, "abc");
	free(p);
	p = xstrndup("ab", 10);		/* stops at the NUL */
	assert_string_equal(p, "ab");
	free(p);
	p = xstrndup("ab", 0);
	assert_string_equal(p, "");
	free(p);
	v = xcalloc(16, sizeof *v);
	for (int i = 0; i < 16; i++)
		assert_int_equal(v[i], 0);
	free(v);
	p = xcalloc(0, 0);
	assert_non_null(p);
	free(p);
}

/* out of memory: the process does not go on with a NULL pointer */
static void test_oom(void **st)
{
	pid_t pid;
	int status, devnull;

	(void)st;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, STDERR_FILENO);
		(void)xmalloc(SIZE_MAX - 4096);
		_exit(0);		/* not reached */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_free),
		cmocka_unit_test(test_add),
		cmocka_unit_test(test_binary),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_addf),
		cmocka_unit_test(test_steal),
		cmocka_unit_test(test_xalloc),
		cmocka_unit_test(test_oom),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
