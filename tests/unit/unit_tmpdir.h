/* unit_tmpdir.h - a private scratch directory for a unit test: made
 * fresh by a test's setup, removed with all it holds by its teardown, so
 * that no test sees another's files (tests/unit/test_*.c link
 * unit_tmpdir.o: see the Makefile).
 *
 *	cmocka_unit_test_setup_teardown(test_x, unit_tmpdir_setup, unit_tmpdir_teardown)
 *
 * gives test_x a new unit_dir; a setup of its own calls unit_tmpdir_setup
 * in turn.  unit_tmpdir_make/_remove are the same for other paths. */
#ifndef MW_UNIT_TMPDIR_H
#define MW_UNIT_TMPDIR_H

#include <stddef.h>

/* room for "/tmp/mw-<tag>-XXXXXX" with a tag of up to 40 bytes */
#define UNIT_TMPDIR_MAX 64

/* unit_tmpdir_make - a new directory /tmp/mw-<tag>-XXXXXX (mode 0700,
 * mkdtemp), its path into out[outsz].  0, or -1 with the reason on
 * stderr (out then holds ""). */
int unit_tmpdir_make(char *out, size_t outsz, const char *tag);

/* unit_tmpdir_remove - path and everything below it, without a shell
 * and without following links (a link is removed, not what it names).
 * Only paths unit_tmpdir_make gives ("/tmp/mw-...") are touched: a
 * broken setup must never lead a teardown elsewhere.  "" (a setup that
 * failed) is nothing to do.  0, or -1 with the first entry that would
 * not go on stderr. */
int unit_tmpdir_remove(const char *path);

/* unit_dir - the directory of the running test ("" outside one) */
extern char unit_dir[UNIT_TMPDIR_MAX];

/* unit_tmpdir_setup, unit_tmpdir_teardown - cmocka setup and teardown:
 * unit_dir made as /tmp/mw-<program>-XXXXXX, then removed.  0, or -1
 * (cmocka then reports the test as failed in its setup or teardown). */
int unit_tmpdir_setup(void **state);
int unit_tmpdir_teardown(void **state);

#endif
