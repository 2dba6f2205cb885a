/* spool.c - the message spool; see spool.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fdio.h"
#include "sbuf.h"
#include "spool.h"

static uint64_t spool_budget;   /* 0 = none; read and set atomically */
static uint64_t spool_held;     /* bytes counted by all open spools */

void spool_set_budget(uint64_t bytes)
{
	__atomic_store_n(&spool_budget, bytes, __ATOMIC_RELAXED);
}

int spool_full(void)
{
	uint64_t b = __atomic_load_n(&spool_budget, __ATOMIC_RELAXED);
	return b != 0 && __atomic_load_n(&spool_held, __ATOMIC_RELAXED) + SPOOL_MIN_FREE > b;
}

/* budget_take - count n more bytes of s, unless that passes the budget */
static int budget_take(struct spool *s, size_t n)
{
	uint64_t b = __atomic_load_n(&spool_budget, __ATOMIC_RELAXED);
	uint64_t after = __atomic_add_fetch(&spool_held, n, __ATOMIC_RELAXED);

	if (b != 0 && after > b) {
		__atomic_sub_fetch(&spool_held, n, __ATOMIC_RELAXED);
		s->full = 1;
		errno = ENOSPC;
		return -1;
	}
	s->counted += n;
	return 0;
}

int spool_open(struct spool *s)
{
	memset(s, 0, sizeof *s);
	s->fd = -1;
	return 0;
}

static int make_memfd(struct spool *s)
{
	s->fd = memfd_create("mailwarden-spool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	return s->fd < 0 ? -1 : 0;
}

int spool_err_storage(int e)
{
	return e == ENOSPC || e == EDQUOT || e == EFBIG || e == ENOMEM;
}

static int spool_write1(struct spool *s, const char *p, size_t n);

/* the front ends answer after the rest of the message was read, by when
 * errno is long gone: keep it with the spool */
int spool_write(void *arg, const char *p, size_t n)
{
	struct spool *s = arg;
	if (spool_write1(s, p, n) == 0) return 0;
	if (s->err == 0) s->err = errno;
	return -1;
}

static int spool_write1(struct spool *s, const char *p, size_t n)
{
	if (budget_take(s, n) < 0) return -1;
	if (s->fd < 0 && s->size + n <= SPOOL_MEM_MAX) {
		if (s->size + n > s->memcap) {
			size_t cap = s->memcap ? s->memcap * 2 : 16384;
			while (cap < s->size + n) cap *= 2;
			s->mem = xrealloc(s->mem, cap);
			s->memcap = cap;
		}
		memcpy(s->mem + s->size, p, n);
		s->size += n;
		return 0;
	}
	if (s->fd < 0) {            /* outgrew memory: move to the memfd */
		if (make_memfd(s) < 0) return -1;
		if (fd_write_all(s->fd, s->mem, s->size) < 0) return -1;
		free(s->mem);
		s->mem = NULL;
		s->memcap = 0;
	}
	if (fd_write_all(s->fd, p, n) < 0) return -1;
	s->size += n;
	return 0;
}

int spool_finish(struct spool *s)
{
	if (s->fd < 0) {
		if (make_memfd(s) < 0) return -1;
		if (fd_write_all(s->fd, s->mem, s->size) < 0) return -1;
		s->map = s->mem ? s->mem : "";
	}
	if (fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		return -1;
	if (s->map != NULL || s->size == 0) {
		if (s->map == NULL) s->map = "";
		return 0;
	}
	void *m = mmap(NULL, s->size, PROT_READ, MAP_SHARED, s->fd, 0);
	if (m == MAP_FAILED) return -1;
	s->map = m;
	s->mapped = 1;
	return 0;
}

int spool_finish_small(struct spool *s, size_t max)
{
	if (s->fd < 0 && s->size <= max) {
		s->map = s->mem ? s->mem : "";
		return 0;
	}
	return spool_finish(s);
}

int spool_sealed_copy(const char *p, size_t n)
{
	int fd = memfd_create("mailwarden-spool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) return -1;
	if (fd_write_all(fd, p, n) < 0
	    || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

void spool_close(struct spool *s)
{
	if (s->counted) __atomic_sub_fetch(&spool_held, s->counted, __ATOMIC_RELAXED);
	if (s->mapped) munmap((void *)s->map, s->size);
	free(s->mem);
	if (s->fd >= 0) close(s->fd);
	memset(s, 0, sizeof *s);
	s->fd = -1;
}
