/* spool.h - one message held in memory (memfd) between the client's end of
 * data and the upstream's final reply.  Nothing is queued on disk: the
 * client hears 250 only after the upstream said 250.  Once complete, the
 * spool is sealed, so the scanner (which gets the descriptor) cannot alter
 * the bytes the proxy then relays. */
#ifndef MW_SPOOL_H
#define MW_SPOOL_H

#include <stddef.h>
#include <stdint.h>

struct spool {
	int      fd;        /* owned; -1 when closed */
	uint64_t size;
	void    *map;       /* read-only mapping after spool_finish, or NULL */
};

int  spool_open(struct spool *s);                       /* 0 / -1 errno */
int  spool_write(void *spool, const char *p, size_t n); /* a data_sink_fn */
/* spool_finish - seal and map it read-only.  0 / -1 errno */
int  spool_finish(struct spool *s);
void spool_close(struct spool *s);

#endif
