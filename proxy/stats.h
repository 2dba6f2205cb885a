/* stats.h - the daemon's counters: sessions, transactions by direction
 * and outcome, bytes, scan time, scanner failures, reloads.
 *
 * They live in one small file (stats_file, default on tmpfs under /run)
 * that the master creates and maps shared before it forks, so the proxy
 * and the milter add to the same block without a message to anyone, and
 * "mailwarden stats" reads it from outside (plain or in Prometheus' text
 * format) with no listening socket to defend.  The scanner inherits the
 * mapping too (its overruns).  The master holds an
 * exclusive flock on the file for its life: a second daemon pointed at the
 * same file runs without counters instead of mixing its own in, and the
 * reader can tell a running daemon from counts left by a stopped one.
 * Every call is a no-op while no block is mapped (stats off, or the
 * subcommands). */
#ifndef MW_STATS_H
#define MW_STATS_H

#include <stdint.h>
#include "config.h"

enum stats_frontend { STATS_PROXY, STATS_MILTER, STATS_NFRONTENDS };

/* stats_open - create (or take over) cfg's stats_file, zero it and map it
 * shared; before the master forks.  0, or -1 with the reason logged (the
 * daemon goes on without counters). */
int stats_open(const struct config *cfg);

/* a session began (delta 1: counted and active) or ended (-1) */
void stats_session(enum stats_frontend fe, int delta);
/* a connection refused before its session began (connection limits) */
void stats_refused(enum stats_frontend fe);
/* a transaction ended: its direction, action ("accept", "tag", ...,
 * "aborted"; others count as "other"), message bytes, and its scan time
 * when it was scanned (scan_ms < 0: not scanned) */
void stats_txn(enum stats_frontend fe, int outbound, const char *action, uint64_t size,
               double scan_ms);
/* the scanner could not answer (gone, timed out): the message was tempfailed */
void stats_scan_failure(enum stats_frontend fe);
/* a scanner's filter still ran past its front end's wait (scanner.c's
 * watch): the scan's thread is held until the filter returns */
void stats_scan_overrun(void);
/* the master reloaded its configuration */
void stats_reload(void);
/* a front end process ended: none of its sessions is active any more */
void stats_frontend_gone(enum stats_frontend fe);

/* stats_command - "mailwarden stats [--prometheus]": print the counters
 * of the daemon that uses cfg's stats_file.  Exit status. */
int stats_command(const struct config *cfg, int argc, char **argv);

#endif
