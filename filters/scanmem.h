/* scanmem.h - the scanner's memory budget for big requests.
 *
 * A big request (scanproto.h "Big envelopes") is read from a memfd of up
 * to SCANPROTO_MAX_REQUEST (64 MiB) named by a 12-byte packet: one memfd
 * sent once may be named by any number of packets, and each was read into
 * a copy and a decoded request of its own, held until its scan ends (the
 * queue holds scanner_queue of them): 16 MiB sent once cost the scanner
 * 1 GiB, and 256 queued requests of 64 MiB would be 16 GiB.  Before big
 * requests existed a request was one packet of at most 256 KiB.
 *
 * So the scanner asks here before it reads one: what reading it takes at
 * most (scanproto_big_read_cost) must fit what its connection may hold
 * (SCANMEM_CONN_MAX) and what all of them may (SCANMEM_TOTAL_MAX), and no
 * request held may be the same memfd (no front end sends one twice); once
 * decoded it holds what scan_request_mem says until its scan ends.  A
 * request refused is answered "scanner busy" (tempfail) unread: the
 * connection goes on being read, so the small requests behind it on it
 * (a proxy loop's connection carries all its sessions' scans) are not
 * held up, and a front end that waits for each answer before it sends
 * again cannot wait on a connection nobody reads. */
#ifndef MW_SCANMEM_H
#define MW_SCANMEM_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include "proxy/scanproto.h"

/* a connection: 160 MiB, what reading one request of the largest size
 * takes (its copy and the request decoded from it, 2 x 64 MiB, and its
 * strings' pointers and allocator overhead, under 10 MB) with room for a
 * smaller one held meanwhile; all connections together: twice that */
#define SCANMEM_CONN_MAX  ((size_t)2 * SCANPROTO_MAX_REQUEST + (size_t)32 * 1024 * 1024)
#define SCANMEM_TOTAL_MAX (2 * SCANMEM_CONN_MAX)

/* why scanmem_take said no */
enum scanmem_refusal {
	SCANMEM_OK = 0,
	SCANMEM_CONN,          /* past its connection's share */
	SCANMEM_TOTAL,         /* past the scanner's */
	SCANMEM_SAME,          /* the memfd of a request held already */
};

struct scanmem_hold;

struct scanmem {
	pthread_mutex_t lock;      /* guards all below, and every conn_held */
	size_t total_max, conn_max;
	size_t held;               /* bytes of all holds */
	struct scanmem_hold *holds; /* the requests held, for SCANMEM_SAME */
};

/* scanmem_init - limits in bytes; scanmem_destroy frees the holds left */
void scanmem_init(struct scanmem *m, size_t total_max, size_t conn_max);
void scanmem_destroy(struct scanmem *m);

/* scanmem_take - hold bytes for one request of the connection whose
 * counter is *conn_held (it lives as long as the hold), its memfd dev/ino:
 * the hold (owned: scanmem_give), or NULL and *why */
struct scanmem_hold *scanmem_take(struct scanmem *m, size_t *conn_held, size_t bytes,
                                  dev_t dev, ino_t ino, enum scanmem_refusal *why);
/* scanmem_shrink - the hold now needs bytes (less than it has) */
void scanmem_shrink(struct scanmem *m, struct scanmem_hold *h, size_t bytes);
/* scanmem_give - the request is done: its bytes are free (h NULL: none) */
void scanmem_give(struct scanmem *m, struct scanmem_hold *h);
/* scanmem_held - all bytes held (for logs and tests) */
size_t scanmem_held(struct scanmem *m);
const char *scanmem_refusal_name(enum scanmem_refusal why);

#endif
