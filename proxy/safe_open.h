/* safe_open.h - opening a file root writes where another user may have
 * planted a symlink or a hard link ("mailwarden scan --output").
 *
 * The rule is Postfix's safe_open(): a symlink is followed only when
 * nobody else could have put it there, that is when it and its directory
 * belong to root or to the user running the command and the directory is
 * writable by neither group nor other (/dev/stdout qualifies: root's, in
 * root's /dev).  Any other path is opened with O_NOFOLLOW, so that a link
 * planted between a check and the open is not followed either, and an
 * existing regular file with a second hard link is refused.
 */
#ifndef MW_SAFE_OPEN_H
#define MW_SAFE_OPEN_H

#include <stddef.h>

/* safe_open_output - path opened for writing (created 0600 if absent, a
 * regular file truncated) under the rule above.  *direct is set to 1 when
 * path itself is the regular file opened (no symlink followed): only then
 * may a caller that fails to write it unlink(path).  Returns the
 * descriptor (O_CLOEXEC), or -1 with errno and why[] (a sentence, no
 * path) set. */
int safe_open_output(const char *path, int *direct, char *why, size_t whylen);

#endif
