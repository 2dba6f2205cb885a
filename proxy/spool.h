/* spool.h - one message held in memory between the client's end of data
 * and the upstream's final reply.  Nothing is queued on disk: the client
 * hears 250 only after the upstream said 250.
 *
 * A message up to SPOOL_MEM_MAX is gathered in a heap buffer and copied
 * into a memfd in one write at the end (the scanner needs a descriptor); a
 * larger one streams into the memfd as it arrives.  Once complete, the
 * memfd is sealed, so the scanner (which gets the descriptor) cannot alter
 * the bytes the proxy then relays. */
#ifndef MW_SPOOL_H
#define MW_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define SPOOL_MEM_MAX (256 * 1024)

struct spool {
	int      fd;        /* owned; -1 until needed or when closed */
	uint64_t size;
	const char *map;    /* the content after spool_finish (heap or mapping), or NULL */
	char    *mem;       /* owned; the content while it fits SPOOL_MEM_MAX */
	size_t   memcap;
	int      mapped;    /* map is an mmap of fd */
	uint64_t counted;   /* bytes counted in the process's spool budget */
	int      full;      /* a write failed: the budget was used up */
	int      err;       /* errno of the first failed write or finish, or 0 */
};

int  spool_open(struct spool *s);                       /* 0 / -1 errno */
int  spool_write(void *spool, const char *p, size_t n); /* a data_sink_fn */
/* spool_finish - into a sealed memfd; map the content.  0 / -1 errno */
int  spool_finish(struct spool *s);
/* spool_finish_small - the same, but a message of at most max bytes still
 * in memory stays there (no memfd: s->fd stays -1, s->map is the heap
 * copy), to be sent inline to the scanner.  0 / -1 errno */
int  spool_finish_small(struct spool *s, size_t max);
/* spool_sealed_copy - a new sealed memfd holding p[0..n).  fd / -1 errno */
int  spool_sealed_copy(const char *p, size_t n);
void spool_close(struct spool *s);
/* spool_set_budget - bytes all spools of this process may hold at once,
 * 0 = no limit (spool_memory_max): the memfds and heap buffers are RAM or
 * swap, and message_size_limit x max_connections is far beyond either.
 * Past it spool_write fails with ENOSPC and sets s->full. */
void spool_set_budget(uint64_t bytes);
/* spool_err_storage - e is a lack of room (ENOSPC, EDQUOT, EFBIG, ENOMEM):
 * the reply is 452 4.3.1 Insufficient system storage, as for the budget */
int  spool_err_storage(int e);
/* spool_full - less than SPOOL_MIN_FREE of the budget is left: a new
 * message is refused at once rather than cut off on its way (as Postfix's
 * queue_minfree) */
#define SPOOL_MIN_FREE (64 * 1024)
int  spool_full(void);

#endif
