/* spool.c - memfd spool; see spool.h. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "spool.h"

int spool_open(struct spool *s)
{
	s->size = 0;
	s->map = NULL;
	s->fd = memfd_create("mailwarden-spool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	return s->fd < 0 ? -1 : 0;
}

int spool_write(void *arg, const char *p, size_t n)
{
	struct spool *s = arg;
	while (n > 0) {
		ssize_t w = write(s->fd, p, n);
		if (w < 0) {
			if (errno == EINTR) continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
		s->size += (uint64_t)w;
	}
	return 0;
}

int spool_finish(struct spool *s)
{
	if (fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		return -1;
	if (s->size == 0) return 0;
	void *m = mmap(NULL, s->size, PROT_READ, MAP_SHARED, s->fd, 0);
	if (m == MAP_FAILED) return -1;
	s->map = m;
	return 0;
}

void spool_close(struct spool *s)
{
	if (s->map) munmap(s->map, s->size);
	s->map = NULL;
	if (s->fd >= 0) close(s->fd);
	s->fd = -1;
	s->size = 0;
}
