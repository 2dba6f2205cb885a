/* test_unit_tmpdir.c - the unit tests' scratch directory helper
 * (unit_tmpdir.c): a fresh private directory, removed with its nested
 * entries, a link inside removed without touching what it names, the
 * cmocka setup/teardown pair, and a path that is not a test directory
 * left alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/unit/unit_tmpdir.h"

static void put(const char *path)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("x\n", f);
	fclose(f);
}

static void test_make_and_remove(void **state)
{
	char d[UNIT_TMPDIR_MAX], other[UNIT_TMPDIR_MAX], keep[UNIT_TMPDIR_MAX + 8], p[256];
	struct stat st;

	(void)state;
	assert_int_equal(unit_tmpdir_make(d, sizeof(d), "tmpdir"), 0);
	assert_int_equal(strncmp(d, "/tmp/mw-tmpdir-", 15), 0);
	assert_int_equal(stat(d, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	/* a second one is another directory */
	assert_int_equal(unit_tmpdir_make(other, sizeof(other), "tmpdir"), 0);
	assert_string_not_equal(d, other);
	snprintf(keep, sizeof(keep), "%s/keep", other);
	put(keep);

	snprintf(p, sizeof(p), "%s/a", d);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/a/b", d);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/a/b/f", d);
	put(p);
	snprintf(p, sizeof(p), "%s/.hidden", d);
	put(p);
	/* links out of the tree: removed, not followed */
	snprintf(p, sizeof(p), "%s/a/to-other", d);
	assert_int_equal(symlink(other, p), 0);
	snprintf(p, sizeof(p), "%s/to-keep", d);
	assert_int_equal(symlink(keep, p), 0);

	assert_int_equal(unit_tmpdir_remove(d), 0);
	assert_int_equal(access(d, F_OK), -1);
	assert_int_equal(access(keep, F_OK), 0);
	assert_int_equal(unit_tmpdir_remove(d), 0);          /* gone already */
	assert_int_equal(unit_tmpdir_remove(other), 0);
	assert_int_equal(access(other, F_OK), -1);
}

/* the cmocka pair: unit_dir named after the program, gone afterwards */
static void test_setup_teardown(void **state)
{
	char was[UNIT_TMPDIR_MAX], p[UNIT_TMPDIR_MAX + 8];

	assert_string_equal(unit_dir, "");
	assert_int_equal(unit_tmpdir_setup(state), 0);
	assert_int_equal(strncmp(unit_dir, "/tmp/mw-test_unit_tmpdir-", 25), 0);
	snprintf(p, sizeof(p), "%s/f", unit_dir);
	put(p);
	snprintf(was, sizeof(was), "%s", unit_dir);
	assert_int_equal(unit_tmpdir_teardown(state), 0);
	assert_string_equal(unit_dir, "");
	assert_int_equal(access(was, F_OK), -1);
}

static void test_refusals(void **state)
{
	char small[16], d[UNIT_TMPDIR_MAX];

	(void)state;
	assert_int_equal(unit_tmpdir_remove(""), 0);          /* a setup that failed */
	assert_int_equal(unit_tmpdir_remove("/etc"), -1);
	assert_int_equal(unit_tmpdir_remove("/tmp/mw-x/../.."), -1);
	assert_int_equal(access("/etc", F_OK), 0);
	assert_int_equal(unit_tmpdir_make(small, sizeof(small), "a-long-tag"), -1);
	assert_string_equal(small, "");
	assert_int_equal(unit_tmpdir_make(d, sizeof(d), "a/b"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_make_and_remove),
		cmocka_unit_test(test_setup_teardown),
		cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
