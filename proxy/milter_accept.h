/* milter_accept.h - libmilter's accept() and close(), seen by the milter
 * front end: new MTA connections paced when descriptors run out, and
 * bounded by milter_max_connections.
 *
 * libmilter has no hook at accept(): its listener accepts, allocates and
 * starts or wakes a worker before any callback, and calls accept() again
 * at once when it fails for want of descriptors.  The daemon links
 * Debian's static libmilter.a with -Wl,--wrap=accept,--wrap=close
 * (Makefile), so libmilter's calls come here first.  Our own code uses
 * accept4(); its close() calls pass through, only looked at. */
#ifndef MW_MILTER_ACCEPT_H
#define MW_MILTER_ACCEPT_H

/* milter_accept_start - from now on, in this process (the milter's),
 * count the connections libmilter accepts and closes, refuse those past
 * max_connections (0: no bound), and pace accept() when descriptors run
 * out.  Before it, both wrappers only pass the calls on. */
void milter_accept_start(unsigned max_connections);

/* milter_accept_set_max - a reload's milter_max_connections */
void milter_accept_set_max(unsigned max_connections);

#endif
