/* rules_batch.c - runs the filter pipeline (as "mailwarden scan" does, in
 * process, same code) over many message files with one setup, printing
 * per message the symbols the rules filter added, and the throughput on
 * stderr.  Used by the SpamAssassin agreement test and the rules bench.
 *
 * usage: rules_batch [--scores] [-c FILE] [-o name=value]... FILE...
 *        rules_batch --report CACHEDIR RULEFILE|DIR|GLOB...   (every rule: name, kind,
 *        loaded 0/1, score, reason it is not loaded)
 * stdout: "FILE<TAB>SYM SYM ...\n" per message (symbols of the rules filter);
 *         with --scores "FILE<TAB>SCORE<TAB>SYM=score SYM=score ...<TAB>BAYES\n"
 *         with the total score, the symbols of every filter and the
 *         description of the Bayes symbol (its p=) (the accuracy test)
 * stderr: "rules_batch: N messages in S s (R msg/s), setup T s" */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "filters/msgfile.h"
#include "filters/pipeline.h"
#include "proxy/config.h"
#include "proxy/scanproto.h"
#include "rules/rules.h"

static int report(int argc, char **argv)
{
	static const char *const kinds[] = { "header", "body", "rawbody", "full", "uri", "meta", "other" };
	struct ruleset *rs = rules_new();
	char err[1024];
	for (int i = 1; i < argc; i++)
		if (rules_load_file(rs, argv[i], err, sizeof err) < 0) { fprintf(stderr, "rules_batch: %s\n", err); return 1; }
	if (rules_compile(rs, argc > 0 ? argv[0] : NULL, err, sizeof err) < 0) { fprintf(stderr, "rules_batch: %s\n", err); return 1; }
	for (size_t i = 0; i < rules_count(rs); i++) {
		enum rule_kind k;
		int loaded;
		double score;
		const char *name = rules_info(rs, i, &k, &loaded, &score);
		const char *why = "";
		if (!loaded) {
			const char *n, *w;
			for (size_t j = 0; (n = rules_not_loaded(rs, j, &w)); j++)
				if (strcmp(n, name) == 0) { why = w; break; }
			if (!*why) continue;     /* score/describe only: not a rule */
		}
		printf("%s\t%s\t%d\t%g\t%s\n", name, kinds[k], loaded, score, why);
	}
	rules_free(rs);
	return 0;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* the file as a spool (msgfile.c: CRLF lines, no mbox "From " line); memfd or -1 */
static int spool_of(const char *path)
{
	struct sbuf raw, spool;
	int in = open(path, O_RDONLY | O_CLOEXEC), fd = -1;

	if (in < 0) return -1;
	sbuf_init(&raw, (size_t)-1);
	sbuf_init(&spool, (size_t)-1);
	if (msgfile_read_fd(in, &raw) == 0) {
		msgfile_to_spool(raw.data ? raw.data : "", raw.len, &spool);
		fd = memfd_create("rules-batch", MFD_CLOEXEC);
		if (fd >= 0 && spool.len > 0 && write(fd, spool.data, spool.len) != (ssize_t)spool.len) {
			close(fd);
			fd = -1;
		}
	}
	close(in);
	sbuf_free(&raw);
	sbuf_free(&spool);
	return fd;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--report") == 0) return report(argc - 2, argv + 2);
	const char *conf = NULL;
	const char *ov[64];
	size_t nov = 0;
	int i = 1;
	int scores = 0;
	if (argc > 1 && strcmp(argv[1], "--scores") == 0) { scores = 1; i++; }
	for (; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) conf = argv[++i];
		else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc && nov < 64) ov[nov++] = argv[++i];
		else break;
	}
	char err[1024];
	double t0 = now();
	struct config *cfg = config_load(conf, ov, nov, err, sizeof err);
	if (!cfg) { fprintf(stderr, "rules_batch: %s\n", err); return 1; }
	struct pipeline *p = pipeline_new(cfg, err, sizeof err);
	if (!p) { fprintf(stderr, "rules_batch: %s\n", err); return 1; }
	double t1 = now();
	unsigned done = 0;
	for (; i < argc; i++) {
		int fd = spool_of(argv[i]);
		if (fd < 0) { fprintf(stderr, "rules_batch: %s: %s\n", argv[i], strerror(errno)); continue; }
		struct scan_request req = { 0 };
		req.id = done;
		snprintf(req.session_id, sizeof req.session_id, "%016x", done);
		req.listener = strdup("batch");
		req.client_ip = strdup("");
		req.client_name = strdup("");
		req.helo = strdup("");
		req.mail_from = strdup("");
		req.mail_params = strdup("");
		req.auth_user = strdup("");
		req.tls = strdup("");
		req.size = (uint64_t)lseek(fd, 0, SEEK_END);
		struct scan_result res = { 0 };
		pipeline_scan_ex(p, &req, fd, PIPELINE_DRY_RUN, &res);
		close(fd);
		printf("%s\t", argv[i]);
		if (scores) printf("%.3f\t", res.score);
		for (size_t k = 0; k < res.nsymbols; k++)
			if (scores) printf("%s=%g ", res.symbols[k].name, res.symbols[k].score);
			else if (strcmp(res.symbols[k].filter, "rules") == 0) printf("%s ", res.symbols[k].name);
		if (scores) {
			printf("\t");
			for (size_t k = 0; k < res.nsymbols; k++)
				if (strcmp(res.symbols[k].filter, "bayes") == 0 && res.symbols[k].desc)
					printf("%s", res.symbols[k].desc);
		}
		printf("\n");
		if (res.error[0]) fprintf(stderr, "rules_batch: %s: %s\n", argv[i], res.error);
		scan_result_free(&res);
		scan_request_free(&req);
		done++;
	}
	double t2 = now();
	fprintf(stderr, "rules_batch: %u messages in %.3f s (%.1f msg/s), setup %.3f s\n",
	        done, t2 - t1, done / (t2 - t1 > 0 ? t2 - t1 : 1e-9), t1 - t0);
	pipeline_free(p);
	config_unref(cfg);
	return 0;
}
