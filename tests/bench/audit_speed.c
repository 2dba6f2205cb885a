/* audit_speed.c - records per second appended to the audit log
 * (proxy/audit.c) by 1 and by 4 processes at once, each with its own
 * descriptor as the proxy, the milter and the quarantine commands have:
 * one write per record (the milter, the commands) and batches of 10
 * records per event-loop iteration (the proxy).  A benchmark, not a test:
 * it asserts nothing about time and is not run by "make check"; it checks
 * the line count so a broken build cannot print a fast, meaningless figure.
 *
 * Build and run (from the top of the tree, after make):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -g -Iinclude -I. $(pkg-config --cflags json-c) \
 *     tests/bench/audit_speed.c build/libmw.a $(pkg-config --libs libevent \
 *     libevent_pthreads json-c) -lpthread -o build/audit_speed
 *   build/audit_speed [DIR]        (DIR: where the log goes, default /tmp)
 *
 * Records are 600 bytes (a short transaction).  Each case writes 100,000
 * records in all (25,000 per process with 4), five times; the best
 * records/s and the least CPU time per record (user + system of all the
 * writers, which a loaded machine disturbs less than the wall clock) are
 * printed. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proxy/audit.h"

#define TOTAL   100000
#define RECLEN  600
#define BATCH   10

static char rec[RECLEN];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_records(const char *path, int n, int batched)
{
	struct event_base *base = NULL;

	if (audit_open(path) < 0) {
		perror(path);
		exit(1);
	}
	if (batched) {
		base = event_base_new();
		audit_batch_start(base);
	}
	for (int i = 0; i < n; i++) {
		audit_write_line(rec, sizeof rec);
		if (batched && (i % BATCH == BATCH - 1 || i == n - 1))
			event_base_loop(base, EVLOOP_NONBLOCK);
	}
	if (batched) {
		audit_batch_stop();
		event_base_free(base);
	}
	audit_close();
}

static double cpu_children(void)
{
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* run - records/s (wall clock); *cpu_us: CPU time (user + system, all the
 * writers) per record in microseconds, which a loaded machine disturbs less */
static double run(const char *path, int procs, int batched, double *cpu_us)
{
	double t0, c0 = cpu_children();
	pid_t pids[16];
	long lines = 0;
	FILE *f;
	int c;

	unlink(path);
	t0 = now();
	for (int p = 0; p < procs; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			write_records(path, TOTAL / procs, batched);
			_exit(0);
		}
	}
	for (int p = 0; p < procs; p++) waitpid(pids[p], NULL, 0);
	t0 = now() - t0;
	*cpu_us = (cpu_children() - c0) / TOTAL * 1e6;
	f = fopen(path, "r");
	while (f != NULL && (c = getc(f)) != EOF) lines += c == '\n';
	if (f != NULL) fclose(f);
	if (lines != TOTAL) {
		fprintf(stderr, "audit_speed: %ld lines, expected %d\n", lines, TOTAL);
		exit(1);
	}
	return TOTAL / t0;
}

int main(int argc, char **argv)
{
	char path[4096];
	static const struct { int procs, batched; } cases[] = { {1, 0}, {4, 0}, {1, 1}, {4, 1} };

	snprintf(path, sizeof path, "%s/audit_speed.%d.log", argc > 1 ? argv[1] : "/tmp",
	         (int)getpid());
	memset(rec, 'x', sizeof rec);
	memcpy(rec, "{\"pad\":\"", 8);
	memcpy(rec + sizeof rec - 2, "\"}", 2);
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		double best = 0, best_cpu = 1e9, cpu;
		for (int r = 0; r < 5; r++) {
			double v = run(path, cases[k].procs, cases[k].batched, &cpu);
			if (v > best) best = v;
			if (cpu < best_cpu) best_cpu = cpu;
		}
		printf("%d process%-3s %-22s %9.0f records/s  %5.2f us CPU/record\n", cases[k].procs,
		       cases[k].procs == 1 ? "," : "es,",
		       cases[k].batched ? "batches of 10 records" : "one write per record", best,
		       best_cpu);
	}
	unlink(path);
	return 0;
}
