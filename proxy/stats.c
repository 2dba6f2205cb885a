/* stats.c - the daemon's counters in a shared file (stats.h) and
 * "mailwarden stats". */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "stats.h"

#define STATS_MAGIC "MWSTATS1"

/* outcomes a transaction is counted under (the audit record's action);
 * anything else is "other".  "tempfail-by-upstream": the upstream's 4xx
 * to the end of data, beside its 5xx (it was counted as "other", where
 * an alert on tempfails or on the upstream's refusals missed it).
 * "other" stays last. */
static const char *const txn_actions[] = {
	"accept", "tag", "quarantine", "discard", "tempfail", "reject",
	"rejected-by-upstream", "tempfail-by-upstream", "aborted", "other",
};
#define NACTIONS (sizeof(txn_actions) / sizeof(txn_actions[0]))

/* upper bounds (seconds) of the scan-time histogram's buckets; +Inf after */
static const double scan_buckets[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 };
#define NBUCKETS (sizeof(scan_buckets) / sizeof(scan_buckets[0]))

static const char *const fe_names[STATS_NFRONTENDS] = { "proxy", "milter" };
static const char *const dir_names[2] = { "inbound", "outbound" };

struct fe_counters {
	_Atomic uint64_t sessions;
	_Atomic int64_t  active;
	_Atomic uint64_t refused;
	_Atomic uint64_t txns[2][NACTIONS];
	_Atomic uint64_t bytes[2];
	_Atomic uint64_t scanned;
	_Atomic uint64_t scan_us;               /* sum of scan times */
	_Atomic uint64_t scan_le[NBUCKETS];     /* scans within each bound (not cumulative) */
	_Atomic uint64_t scan_failures;
};

struct stats_block {
	char     magic[8];
	uint32_t size;         /* of this struct: a reader of another layout refuses */
	uint32_t reserved;
	int64_t  start_time;
	int64_t  master_pid;
	_Atomic uint64_t reloads;
	_Atomic uint64_t scan_overruns;      /* the scanner's: a filter held its thread past the wait */
	struct fe_counters fe[STATS_NFRONTENDS];
};

static struct stats_block *blk;      /* NULL: counting off */
static int lock_fd = -1;

/* The daemon claims the file for its life with an open file description
 * lock on all of it (fcntl F_OFD_SETLK: like flock, it belongs to the
 * descriptor the front ends inherit), and "mailwarden stats" tests for it
 * with F_OFD_GETLK, which takes no lock.  With flock the command had to
 * take a shared lock to see whether an exclusive one was held, and a
 * daemon starting in that moment found the file "in use by another
 * mailwarden" and ran without counters for its whole life. */
static struct flock whole_file(short type)
{
	struct flock fl;

	memset(&fl, 0, sizeof fl);
	fl.l_type = type;
	fl.l_whence = SEEK_SET;     /* l_start 0, l_len 0: all of it */
	return fl;
}

int stats_open(const struct config *cfg)
{
	const char *path = cfg->stats_file;
	char dir[sizeof(cfg->stats_file)];
	int fd;
	void *p;

	if (path[0] == '\0')
		return 0;
	snprintf(dir, sizeof dir, "%s", path);
	/* /run/mailwarden does not survive a reboot: make it (one level) */
	if (mkdir(dirname(dir), 0755) == 0)
		(void)chmod(dir, 0755);     /* whatever the umask: "mailwarden stats" is for anyone */
	else if (errno != EEXIST)
		goto fail;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0)
		goto fail;
	/* counts, no mail: readable by a monitoring user.  A file of another
	 * name (a hard link planted in a directory others can write) is not
	 * ours to truncate. */
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		errno = EMLINK;
		goto fail;
	}
	if ((st.st_mode & 07777) != 0644)
		(void)fchmod(fd, 0644);
	struct flock claim = whole_file(F_WRLCK);
	if (fcntl(fd, F_OFD_SETLK, &claim) < 0) {
		if (errno != EAGAIN && errno != EACCES) {
			close(fd);
			goto fail;
		}
		slog(NULL, LOG_ERR, "stats_file %s is in use by another mailwarden: running without counters",
		     path);
		close(fd);
		return -1;
	}
	/* The size changes only when it is not a block's: "mailwarden stats"
	 * maps a file of that size only, and a mapping cut short under a
	 * reader would kill it with SIGBUS (it takes no lock that would keep
	 * us out).  The counts of an earlier run are zeroed below. */
	if (st.st_size != (off_t)sizeof *blk && (ftruncate(fd, 0) < 0 || ftruncate(fd, sizeof *blk) < 0)) {
		close(fd);
		goto fail;
	}
	/* ftruncate leaves a hole: on a full file system the first store into
	 * the mapping would find no block and kill the process with SIGBUS.
	 * Allocate the blocks now, while a failure is still an errno. */
	int rc = posix_fallocate(fd, 0, sizeof *blk);
	if (rc != 0) {
		(void)ftruncate(fd, 0);     /* no stale or half-made counters to read */
		close(fd);
		errno = rc;
		goto fail;
	}
	p = mmap(NULL, sizeof *blk, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		close(fd);
		goto fail;
	}
	blk = p;
	/* counts of an earlier run start again from 0; a reader meanwhile
	 * finds no magic ("not a stats file") rather than half-zeroed counts */
	memset(blk->magic, 0, sizeof blk->magic);
	atomic_thread_fence(memory_order_seq_cst);
	memset((char *)blk + sizeof blk->magic, 0, sizeof *blk - sizeof blk->magic);
	atomic_thread_fence(memory_order_seq_cst);
	blk->size = sizeof *blk;
	blk->start_time = (int64_t)time(NULL);
	blk->master_pid = (int64_t)getpid();
	memcpy(blk->magic, STATS_MAGIC, 8);     /* last: a reader sees a whole header or none */
	lock_fd = fd;
	return 0;
fail:
	slog_errno(NULL, LOG_ERR, "stats_file %s: running without counters", path);
	return -1;
}

static struct fe_counters *fe_of(enum stats_frontend fe)
{
	return blk != NULL && (unsigned)fe < STATS_NFRONTENDS ? &blk->fe[fe] : NULL;
}

void stats_session(enum stats_frontend fe, int delta)
{
	struct fe_counters *c = fe_of(fe);

	if (c == NULL)
		return;
	if (delta > 0)
		atomic_fetch_add(&c->sessions, 1);
	atomic_fetch_add(&c->active, delta > 0 ? 1 : -1);
}

void stats_refused(enum stats_frontend fe)
{
	struct fe_counters *c = fe_of(fe);

	if (c != NULL)
		atomic_fetch_add(&c->refused, 1);
}

void stats_txn(enum stats_frontend fe, int outbound, const char *action, uint64_t size,
               double scan_ms)
{
	struct fe_counters *c = fe_of(fe);
	size_t a;
	int d = outbound ? 1 : 0;

	if (c == NULL)
		return;
	for (a = 0; a < NACTIONS - 1; a++)
		if (action != NULL && strcmp(action, txn_actions[a]) == 0)
			break;
	atomic_fetch_add(&c->txns[d][a], 1);
	atomic_fetch_add(&c->bytes[d], size);
	if (scan_ms >= 0) {
		double s = scan_ms / 1000;
		size_t b;

		atomic_fetch_add(&c->scanned, 1);
		atomic_fetch_add(&c->scan_us, (uint64_t)(scan_ms * 1000));
		for (b = 0; b < NBUCKETS && s > scan_buckets[b]; b++)
			;
		if (b < NBUCKETS)
			atomic_fetch_add(&c->scan_le[b], 1);
	}
}

void stats_scan_failure(enum stats_frontend fe)
{
	struct fe_counters *c = fe_of(fe);

	if (c != NULL)
		atomic_fetch_add(&c->scan_failures, 1);
}

void stats_scan_overrun(void)
{
	if (blk != NULL)
		atomic_fetch_add(&blk->scan_overruns, 1);
}

void stats_reload(void)
{
	if (blk != NULL)
		atomic_fetch_add(&blk->reloads, 1);
}

void stats_frontend_gone(enum stats_frontend fe)
{
	struct fe_counters *c = fe_of(fe);

	if (c != NULL)
		atomic_store(&c->active, 0);
}

/* --- mailwarden stats ----------------------------------------------------- */

static void print_plain(const struct stats_block *b, int running)
{
	time_t started = (time_t)b->start_time;
	struct tm tm;
	char when[64] = "?";

	if (gmtime_r(&started, &tm) != NULL)
		strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
	printf("daemon %s, pid %" PRId64 ", started %s (%" PRId64 " s ago), %" PRIu64 " reload(s)\n",
	       running ? "running" : "not running (counts of its last run)", b->master_pid,
	       when, (int64_t)time(NULL) - b->start_time, atomic_load(&b->reloads));
	for (unsigned f = 0; f < STATS_NFRONTENDS; f++) {
		const struct fe_counters *c = &b->fe[f];
		const char *n = fe_names[f];
		uint64_t scanned = atomic_load(&c->scanned);

		printf("%s.sessions %" PRIu64 "\n", n, atomic_load(&c->sessions));
		printf("%s.sessions_active %" PRId64 "\n", n, atomic_load(&c->active));
		printf("%s.connections_refused %" PRIu64 "\n", n, atomic_load(&c->refused));
		for (unsigned d = 0; d < 2; d++) {
			for (unsigned a = 0; a < NACTIONS; a++)
				printf("%s.%s.%s %" PRIu64 "\n", n, dir_names[d], txn_actions[a],
				       atomic_load(&c->txns[d][a]));
			printf("%s.%s.bytes %" PRIu64 "\n", n, dir_names[d], atomic_load(&c->bytes[d]));
		}
		printf("%s.scanned %" PRIu64 "\n", n, scanned);
		printf("%s.scan_seconds_mean %.4g\n", n,
		       scanned ? (double)atomic_load(&c->scan_us) / 1e6 / (double)scanned : 0.0);
		printf("%s.scan_failures %" PRIu64 "\n", n, atomic_load(&c->scan_failures));
	}
	printf("scanner.overruns %" PRIu64 "\n", atomic_load(&b->scan_overruns));
}

static void prom_head(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* one counter (or, signed, the gauge of open sessions) of each front
 * end, at offset off of struct fe_counters */
static void prom_per_frontend(const struct stats_block *b, const char *name, const char *type,
                              const char *help, size_t off, int is_signed)
{
	prom_head(name, type, help);
	for (unsigned f = 0; f < STATS_NFRONTENDS; f++) {
		const char *field = (const char *)&b->fe[f] + off;

		if (is_signed)
			printf("%s{frontend=\"%s\"} %" PRId64 "\n", name, fe_names[f],
			       atomic_load((const _Atomic int64_t *)field));
		else
			printf("%s{frontend=\"%s\"} %" PRIu64 "\n", name, fe_names[f],
			       atomic_load((const _Atomic uint64_t *)field));
	}
}

/* Prometheus' text exposition format (version 0.0.4) */
static void print_prometheus(const struct stats_block *b, int running)
{
	unsigned f, d, a, k;

	prom_head("mailwarden_up", "gauge", "1 while the daemon writing these counters runs.");
	printf("mailwarden_up %d\n", running);
	prom_head("mailwarden_start_time_seconds", "gauge", "When the daemon started (Unix time).");
	printf("mailwarden_start_time_seconds %" PRId64 "\n", b->start_time);
	prom_head("mailwarden_reloads_total", "counter", "Configuration reloads (SIGHUP).");
	printf("mailwarden_reloads_total %" PRIu64 "\n", atomic_load(&b->reloads));
	prom_head("mailwarden_scanner_overruns_total", "counter", "Scans whose filter still ran a "
		  "second past the front end's wait, holding a scanner thread (logged with its name).");
	printf("mailwarden_scanner_overruns_total %" PRIu64 "\n", atomic_load(&b->scan_overruns));
	prom_per_frontend(b, "mailwarden_sessions_total", "counter", "SMTP or milter sessions begun.",
			  offsetof(struct fe_counters, sessions), 0);
	prom_per_frontend(b, "mailwarden_sessions_active", "gauge", "Sessions open now.",
			  offsetof(struct fe_counters, active), 1);
	prom_per_frontend(b, "mailwarden_connections_refused_total", "counter",
			  "Connections refused by the connection limits.",
			  offsetof(struct fe_counters, refused), 0);
	prom_head("mailwarden_transactions_total", "counter", "Transactions ended, by outcome.");
	for (f = 0; f < STATS_NFRONTENDS; f++)
		for (d = 0; d < 2; d++)
			for (a = 0; a < NACTIONS; a++)
				printf("mailwarden_transactions_total{frontend=\"%s\",direction=\"%s\",action=\"%s\"} %"
				       PRIu64 "\n", fe_names[f], dir_names[d], txn_actions[a],
				       atomic_load(&b->fe[f].txns[d][a]));
	prom_head("mailwarden_message_bytes_total", "counter", "Bytes of message content received.");
	for (f = 0; f < STATS_NFRONTENDS; f++)
		for (d = 0; d < 2; d++)
			printf("mailwarden_message_bytes_total{frontend=\"%s\",direction=\"%s\"} %" PRIu64 "\n",
			       fe_names[f], dir_names[d], atomic_load(&b->fe[f].bytes[d]));
	prom_head("mailwarden_scan_duration_seconds", "histogram", "Time the filters took per message.");
	for (f = 0; f < STATS_NFRONTENDS; f++) {
		uint64_t cum = 0;

		for (k = 0; k < NBUCKETS; k++) {
			cum += atomic_load(&b->fe[f].scan_le[k]);
			printf("mailwarden_scan_duration_seconds_bucket{frontend=\"%s\",le=\"%g\"} %" PRIu64 "\n",
			       fe_names[f], scan_buckets[k], cum);
		}
		printf("mailwarden_scan_duration_seconds_bucket{frontend=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
		       fe_names[f], atomic_load(&b->fe[f].scanned));
		printf("mailwarden_scan_duration_seconds_sum{frontend=\"%s\"} %.6f\n", fe_names[f],
		       (double)atomic_load(&b->fe[f].scan_us) / 1e6);
		printf("mailwarden_scan_duration_seconds_count{frontend=\"%s\"} %" PRIu64 "\n", fe_names[f],
		       atomic_load(&b->fe[f].scanned));
	}
	prom_per_frontend(b, "mailwarden_scan_failures_total", "counter",
			  "Scans that failed (scanner gone or timed out, a filter error).",
			  offsetof(struct fe_counters, scan_failures), 0);
}

int stats_command(const struct config *cfg, int argc, char **argv)
{
	const char *path = cfg->stats_file;
	int prometheus = 0, fd, running;
	struct stat st;
	struct stats_block *b;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--prometheus") == 0)
			prometheus = 1;
		else {
			fprintf(stderr, "usage: mailwarden stats [-c FILE] [-o name=value]... [--prometheus]\n");
			return 1;
		}
	}
	if (path[0] == '\0') {
		fprintf(stderr, "mailwarden stats: stats_file is empty: the daemon keeps no counters\n");
		return 1;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "mailwarden stats: %s: %s (is the daemon running with this stats_file?)\n",
		        path, strerror(errno));
		return 1;
	}
	if (fstat(fd, &st) < 0 || st.st_size != (off_t)sizeof *b) {
		fprintf(stderr, "mailwarden stats: %s is not a stats file of this version\n", path);
		close(fd);
		return 1;
	}
	b = mmap(NULL, sizeof *b, PROT_READ, MAP_SHARED, fd, 0);
	if (b == MAP_FAILED) {
		fprintf(stderr, "mailwarden stats: %s: %s\n", path, strerror(errno));
		close(fd);
		return 1;
	}
	if (memcmp(b->magic, STATS_MAGIC, 8) != 0 || b->size != sizeof *b) {
		fprintf(stderr, "mailwarden stats: %s is not a stats file of this version\n", path);
		munmap(b, sizeof *b);
		close(fd);
		return 1;
	}
	/* the daemon holds its lock for its life; testing for it takes none */
	struct flock probe = whole_file(F_RDLCK);
	running = fcntl(fd, F_OFD_GETLK, &probe) == 0 && probe.l_type != F_UNLCK;
	if (prometheus)
		print_prometheus(b, running);
	else
		print_plain(b, running);
	munmap(b, sizeof *b);
	close(fd);
	return 0;
}
