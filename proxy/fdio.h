/* fdio.h - whole writes to a blocking descriptor (a memfd, a file, stderr) */
#ifndef MW_FDIO_H
#define MW_FDIO_H

#include <stddef.h>

/* fd_write_all - p[0..n) into fd: a short write is continued and EINTR
 * retried, so nothing is lost to a signal.  0, or -1 with errno. */
int fd_write_all(int fd, const char *p, size_t n);

#endif
