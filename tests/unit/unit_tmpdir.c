/* unit_tmpdir.c - the unit tests' scratch directories (unit_tmpdir.h).
 * Removal walks the tree with nftw() instead of running "rm -rf" through
 * system(): no shell quoting of the path, and a failure names the entry. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/unit_tmpdir.h"

#define TMPDIR_BASE "/tmp/mw-"

char unit_dir[UNIT_TMPDIR_MAX];

int unit_tmpdir_make(char *out, size_t outsz, const char *tag)
{
	int n = snprintf(out, outsz, TMPDIR_BASE "%s-XXXXXX", tag);

	if (n < 0 || (size_t)n >= outsz || strchr(tag, '/') != NULL) {
		fprintf(stderr, "unit_tmpdir: tag \"%s\" does not make a path of %zu bytes\n",
		        tag, outsz);
		if (outsz > 0)
			out[0] = '\0';
		return -1;
	}
	if (mkdtemp(out) == NULL) {
		fprintf(stderr, "unit_tmpdir: mkdtemp %s: %s\n", out, strerror(errno));
		out[0] = '\0';
		return -1;
	}
	return 0;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	if (remove(path) < 0 && errno != ENOENT) {
		fprintf(stderr, "unit_tmpdir: remove %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int unit_tmpdir_remove(const char *path)
{
	if (path[0] == '\0')
		return 0;
	if (strncmp(path, TMPDIR_BASE, strlen(TMPDIR_BASE)) != 0 || strstr(path, "..") != NULL) {
		fprintf(stderr, "unit_tmpdir: %s is not a test directory: left alone\n", path);
		return -1;
	}
	/* depth first: a directory's entries go before it; physical: a link
	 * is an entry to remove, not a way out of the tree */
	if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, "unit_tmpdir: %s not removed: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int unit_tmpdir_setup(void **state)
{
	(void)state;
	return unit_tmpdir_make(unit_dir, sizeof(unit_dir), program_invocation_short_name);
}

int unit_tmpdir_teardown(void **state)
{
	int rc;

	(void)state;
	rc = unit_tmpdir_remove(unit_dir);
	unit_dir[0] = '\0';
	return rc;
}
