/* scanmem.c - the scanner's memory budget for big requests (scanmem.h).
 *
 * Only big requests come here, a few at a time at most (each is a
 * recipient list past 256 KiB): one lock and a list walk each are nothing
 * beside reading them, and the small requests' path never takes it. */
#include <stdlib.h>

#include "filters/scanmem.h"
#include "proxy/sbuf.h"

struct scanmem_hold {
	struct scanmem_hold *next;
	size_t *conn_held;
	size_t  bytes;
	dev_t   dev;
	ino_t   ino;
};

void scanmem_init(struct scanmem *m, size_t total_max, size_t conn_max)
{
	pthread_mutex_init(&m->lock, NULL);
	m->total_max = total_max;
	m->conn_max = conn_max;
	m->held = 0;
	m->holds = NULL;
}

void scanmem_destroy(struct scanmem *m)
{
	struct scanmem_hold *h, *next;

	for (h = m->holds; h != NULL; h = next) {
		next = h->next;
		free(h);
	}
	m->holds = NULL;
	pthread_mutex_destroy(&m->lock);
}

struct scanmem_hold *scanmem_take(struct scanmem *m, size_t *conn_held, size_t bytes,
                                  dev_t dev, ino_t ino, enum scanmem_refusal *why)
{
	struct scanmem_hold *h;

	pthread_mutex_lock(&m->lock);
	*why = SCANMEM_OK;
	for (h = m->holds; h != NULL; h = h->next)
		if (h->dev == dev && h->ino == ino) {
			*why = SCANMEM_SAME;
			break;
		}
	/* written so that nothing overflows: bytes may be anything */
	if (*why == SCANMEM_OK && (bytes > m->conn_max || *conn_held > m->conn_max - bytes))
		*why = SCANMEM_CONN;
	if (*why == SCANMEM_OK && (bytes > m->total_max || m->held > m->total_max - bytes))
		*why = SCANMEM_TOTAL;
	if (*why != SCANMEM_OK) {
		pthread_mutex_unlock(&m->lock);
		return NULL;
	}
	h = xcalloc(1, sizeof(*h));
	h->conn_held = conn_held;
	h->bytes = bytes;
	h->dev = dev;
	h->ino = ino;
	h->next = m->holds;
	m->holds = h;
	m->held += bytes;
	*conn_held += bytes;
	pthread_mutex_unlock(&m->lock);
	return h;
}

void scanmem_shrink(struct scanmem *m, struct scanmem_hold *h, size_t bytes)
{
	pthread_mutex_lock(&m->lock);
	if (bytes < h->bytes) {
		m->held -= h->bytes - bytes;
		*h->conn_held -= h->bytes - bytes;
		h->bytes = bytes;
	}
	pthread_mutex_unlock(&m->lock);
}

void scanmem_give(struct scanmem *m, struct scanmem_hold *h)
{
	struct scanmem_hold **pp;

	if (h == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	for (pp = &m->holds; *pp != NULL; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	m->held -= h->bytes;
	*h->conn_held -= h->bytes;
	pthread_mutex_unlock(&m->lock);
	free(h);
}

size_t scanmem_held(struct scanmem *m)
{
	size_t n;

	pthread_mutex_lock(&m->lock);
	n = m->held;
	pthread_mutex_unlock(&m->lock);
	return n;
}

const char *scanmem_refusal_name(enum scanmem_refusal why)
{
	switch (why) {
	case SCANMEM_OK:    return "ok";
	case SCANMEM_CONN:  return "connection's share";
	case SCANMEM_TOTAL: return "scanner's total";
	case SCANMEM_SAME:  return "same memfd as a request held";
	}
	return "?";
}
