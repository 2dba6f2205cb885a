/* av_speed.c - antivirus scan throughput of the filter pipeline, as the
 * scanner runs it: config from -o overrides (filters=clamav or clamd, ...),
 * pipeline_new (engine load), then THREADS worker threads scanning every
 * message ROUNDS times through pipeline_scan_ex (dry run: nothing stored).
 *
 *   av_speed [-t THREADS] [-r ROUNDS] [-o name=value]... -l LISTFILE
 *
 * LISTFILE names one message file per line (mbox "From " line dropped, LF
 * made CRLF, each held in a sealed memfd as the proxy's spool is).  Prints
 * one line of key=value figures: messages/s, MB/s, the process's RSS after
 * the engine was built and after the run (VmRSS, VmHWM), and the actions.
 * Built by tests/bench/av_bench.sh against build/libmw.a. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "filters/pipeline.h"
#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"

struct msgfile {
	int fd;
	size_t len;
};

static struct pipeline *pipe_;
static struct msgfile *msgs;
static size_t nmsgs, total;
static atomic_size_t next_i;
static atomic_ulong actions[MW_ACTION_COUNT];

static long status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t n = strlen(key);

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, n) == 0 && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

static int load_msg(const char *path, struct msgfile *m)
{
	FILE *f = fopen(path, "rb");
	struct sbuf out;
	int c, prev = 0, first = 1, skip = 0;

	if (f == NULL)
		return -1;
	sbuf_init(&out, (size_t)-1);
	while ((c = getc(f)) != EOF) {
		if (first) {
			first = 0;
			skip = c == 'F';       /* "From " mbox line: checked below */
			if (skip) {
				char w[5] = { 0 };
				size_t k = fread(w, 1, 4, f);

				if (k == 4 && memcmp(w, "rom ", 4) == 0) {
					while ((c = getc(f)) != EOF && c != '\n')
						;
					continue;
				}
				sbuf_add(&out, "F", 1);
				sbuf_add(&out, w, k);
				prev = k ? w[k - 1] : 'F';
				continue;
			}
		}
		if (c == '\n' && prev != '\r')
			sbuf_add(&out, "\r", 1);
		{
			char ch = (char)c;

			sbuf_add(&out, &ch, 1);
		}
		prev = c;
	}
	fclose(f);
	m->fd = memfd_create("msg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (m->fd < 0 || write(m->fd, out.data, out.len) != (ssize_t)out.len) {
		sbuf_free(&out);
		return -1;
	}
	fcntl(m->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE);
	m->len = out.len;
	sbuf_free(&out);
	return 0;
}

static void *worker(void *arg)
{
	struct scan_request req;
	struct scan_result res;
	size_t i;

	(void)arg;
	memset(&req, 0, sizeof(req));
	req.listener = "bench";
	req.direction = MW_INBOUND;
	req.client_ip = req.client_name = req.helo = req.mail_from = req.mail_params = "";
	req.auth_user = req.tls = "";
	while ((i = atomic_fetch_add(&next_i, 1)) < total) {
		req.id = i + 1;
		pipeline_scan_ex(pipe_, &req, msgs[i % nmsgs].fd, PIPELINE_DRY_RUN, &res);
		atomic_fetch_add(&actions[res.action], 1);
		scan_result_free(&res);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *ov[64], *list = NULL;
	size_t nov = 0, cap = 0, i, bytes = 0;
	unsigned threads = 4, rounds = 1;
	struct config *cfg;
	pthread_t *th;
	struct timespec t0, t1;
	char err[512], line[4096];
	long rss0, rss1, hwm;
	double secs;
	int c;
	FILE *lf;

	while ((c = getopt(argc, argv, "t:r:o:l:")) != -1) {
		if (c == 't')
			threads = (unsigned)atoi(optarg);
		else if (c == 'r')
			rounds = (unsigned)atoi(optarg);
		else if (c == 'o' && nov < 64)
			ov[nov++] = optarg;
		else if (c == 'l')
			list = optarg;
		else {
			fprintf(stderr, "usage: av_speed [-t N] [-r N] [-o k=v]... -l LISTFILE\n");
			return 2;
		}
	}
	if (list == NULL || (lf = fopen(list, "r")) == NULL) {
		fprintf(stderr, "av_speed: -l LISTFILE needed\n");
		return 2;
	}
	while (fgets(line, sizeof(line), lf) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (!line[0])
			continue;
		if (nmsgs == cap) {
			cap = cap ? cap * 2 : 256;
			msgs = xrealloc(msgs, cap * sizeof(*msgs));
		}
		if (load_msg(line, &msgs[nmsgs]) < 0) {
			fprintf(stderr, "av_speed: cannot load %s\n", line);
			return 1;
		}
		bytes += msgs[nmsgs++].len;
	}
	fclose(lf);
	if (nmsgs == 0) {
		fprintf(stderr, "av_speed: no messages\n");
		return 1;
	}
	if ((cfg = config_load(NULL, ov, nov, err, sizeof(err))) == NULL) {
		fprintf(stderr, "av_speed: %s\n", err);
		return 1;
	}
	log_set_level(cfg->log_level);
	if ((pipe_ = pipeline_new(cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "av_speed: %s\n", err);
		return 1;
	}
	rss0 = status_kb("VmRSS");
	total = nmsgs * rounds;
	th = xcalloc(threads, sizeof(*th));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rss1 = status_kb("VmRSS");
	hwm = status_kb("VmHWM");
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("messages=%zu threads=%u seconds=%.2f msgs_per_s=%.0f MB_per_s=%.1f "
	    "rss_after_setup_kb=%ld rss_after_kb=%ld hwm_kb=%ld accept=%lu reject=%lu "
	    "tempfail=%lu other=%lu\n", total, threads, secs, (double)total / secs,
	    (double)bytes * rounds / secs / 1e6, rss0, rss1, hwm,
	    (unsigned long)actions[MW_ACCEPT], (unsigned long)actions[MW_REJECT],
	    (unsigned long)actions[MW_TEMPFAIL],
	    (unsigned long)(total - actions[MW_ACCEPT] - actions[MW_REJECT] - actions[MW_TEMPFAIL]));
	pipeline_free(pipe_);
	config_unref(cfg);
	return 0;
}
