/* auth_speed.c - scan throughput of the sender-authentication filters
 * (built-ins named by -o filters=..., e.g. "spf dkim dmarc") over a set of
 * messages, in-process through pipeline_scan() as the scanner runs it,
 * with a warm DNS cache (every message is scanned once before timing).
 *
 *   auth_speed [-t THREADS] [-s SECONDS] [-o name=value]... FILE...
 *
 * Prints one line: threads, messages scanned, seconds, messages/s, and
 * how many scans ended in each action (a sanity check that the filters
 * did their work: the signed test messages should pass).  Driven by
 * tests/bench/auth_bench.py, which serves the keys on loopback DNS. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "filters/pipeline.h"
#include "proxy/config.h"
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"

#define MAX_FILES 256
#define MAX_OPTS  64

static struct pipeline *pipe_;
static int fds[MAX_FILES];
static size_t nfiles;
static double seconds = 3.0;
static volatile int stop_flag;

struct worker {
	pthread_t tid;
	unsigned long scans;
	unsigned long actions[MW_ACTION_COUNT];
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void fill_request(struct scan_request *req, uint64_t id)
{
	memset(req, 0, sizeof(*req));
	req->id = id;
	snprintf(req->session_id, sizeof(req->session_id), "%016llx", (unsigned long long)id);
	req->listener = xstrdup("bench");
	req->direction = MW_INBOUND;
	req->client_ip = xstrdup("192.0.2.10");
	req->client_name = xstrdup("");
	req->helo = xstrdup("mx.example.org");
	req->mail_from = xstrdup("sender@example.org");
	req->mail_params = xstrdup("");
	req->auth_user = xstrdup("");
	req->tls = xstrdup("");
	req->rcpts = xcalloc(1, sizeof(char *));
	req->rcpts[0] = xstrdup("rcpt@example.net");
	req->nrcpts = 1;
}

static void scan_one(size_t i, uint64_t id, struct worker *w)
{
	struct scan_request req;
	struct scan_result res;

	fill_request(&req, id);
	pipeline_scan(pipe_, &req, fds[i], &res);
	if (w != NULL) {
		w->scans++;
		if (res.action >= 0 && res.action < MW_ACTION_COUNT)
			w->actions[res.action]++;
	}
	scan_result_free(&res);
	scan_request_free(&req);
}

static void *run(void *arg)
{
	struct worker *w = arg;
	uint64_t id = 1;
	size_t i = 0;

	while (!stop_flag) {
		scan_one(i, id++, w);
		i = (i + 1) % nfiles;
	}
	return NULL;
}

/* load - the file as a memfd, LF line ends turned into CRLF */
static int load(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct sbuf b;
	int c, prev = 0, fd;

	if (f == NULL)
		return -1;
	sbuf_init(&b, (size_t)-1);
	while ((c = fgetc(f)) != EOF) {
		if (c == '\n' && prev != '\r')
			sbuf_addc(&b, '\r');
		sbuf_addc(&b, (char)c);
		prev = c;
	}
	fclose(f);
	fd = memfd_create("bench", MFD_ALLOW_SEALING);
	if (fd < 0 || write(fd, b.data, b.len) != (ssize_t)b.len) {
		sbuf_free(&b);
		return -1;
	}
	sbuf_free(&b);
	return fd;
}

int main(int argc, char **argv)
{
	const char *opts[MAX_OPTS];
	size_t nopts = 0, i;
	unsigned threads = 1, t;
	struct worker *w;
	struct config *cfg;
	char err[512];
	unsigned long total = 0, actions[MW_ACTION_COUNT] = { 0 };
	double t0, el;
	int c;

	while ((c = getopt(argc, argv, "t:s:o:")) != -1) {
		switch (c) {
		case 't': threads = (unsigned)atoi(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'o': if (nopts < MAX_OPTS) opts[nopts++] = optarg; break;
		default:
			fprintf(stderr, "usage: auth_speed [-t N] [-s SEC] [-o k=v]... FILE...\n");
			return 2;
		}
	}
	if (threads == 0 || optind >= argc) {
		fprintf(stderr, "usage: auth_speed [-t N] [-s SEC] [-o k=v]... FILE...\n");
		return 2;
	}
	for (; optind < argc && nfiles < MAX_FILES; optind++) {
		if ((fds[nfiles] = load(argv[optind])) < 0) {
			fprintf(stderr, "auth_speed: %s: %s\n", argv[optind], strerror(errno));
			return 1;
		}
		nfiles++;
	}
	if ((cfg = config_load(NULL, opts, nopts, err, sizeof(err))) == NULL ||
	    (pipe_ = pipeline_new(cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "auth_speed: %s\n", err);
		return 1;
	}
	for (i = 0; i < nfiles; i++)       /* warm the DNS cache */
		scan_one(i, 1000000 + i, NULL);

	w = xcalloc(threads, sizeof(*w));
	t0 = now();
	for (t = 0; t < threads; t++)
		pthread_create(&w[t].tid, NULL, run, &w[t]);
	usleep((useconds_t)(seconds * 1e6));
	stop_flag = 1;
	for (t = 0; t < threads; t++) {
		pthread_join(w[t].tid, NULL);
		total += w[t].scans;
		for (i = 0; i < MW_ACTION_COUNT; i++)
			actions[i] += w[t].actions[i];
	}
	el = now() - t0;
	printf("threads=%u messages=%lu seconds=%.2f rate=%.0f accept=%lu tag=%lu reject=%lu other=%lu\n",
	    threads, total, el, (double)total / el, actions[MW_ACCEPT], actions[MW_TAG],
	    actions[MW_REJECT], total - actions[MW_ACCEPT] - actions[MW_TAG] - actions[MW_REJECT]);
	free(w);
	pipeline_free(pipe_);
	config_unref(cfg);
	for (i = 0; i < nfiles; i++)
		close(fds[i]);
	return 0;
}
