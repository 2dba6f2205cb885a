/* learn_cmd.c - "mailwarden learn --spam|--ham|--forget FILE|DIR...":
 * teach the Bayes classifier from message files (one message per file,
 * as MUAs, maildirs and corpora keep them; directories are walked), into
 * the store the settings name, so the daemon sees it at once.
 *
 * Each message is brought to the form the scanner sees (no mbox "From "
 * line, CRLF line ends) and tokenized by the same code as in a scan, so
 * what is learned is exactly what is later looked up.
 *
 * At the end (or with --rebuild alone), the character model (bayes_chars.h) is trained again from
 * every example the store keeps; with --no-train, the daemon trains it
 * (bayes_retrain_interval). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filters/bayes.h"
#include "filters/bayes_chars.h"
#include "filters/msgfile.h"
#include "proxy/sbuf.h"

#define LEARN_MAX_SIZE (32u * 1024 * 1024)    /* bigger files are skipped */

static const char learn_usage[] =
	"usage: mailwarden learn [-c FILE] [-o name=value]... [--no-train] --spam|--ham|--forget FILE|DIR...\n"
	"       mailwarden learn [-c FILE] [-o name=value]... --rebuild\n"
	"--no-train: learn, but leave the character model to a later --rebuild\n";

struct learn_run {
	struct store *store;
	enum bayes_class cls;
	unsigned seen_ttl;
	int examples;           /* bayes_chars: keep each message's example */
	unsigned done, skipped, failed;
	int store_error;
};

static struct learn_run *run;      /* for the nftw callback */

static int read_file(const char *path, struct sbuf *b)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc, e;

	if (fd < 0)
		return -1;
	rc = msgfile_read_fd(fd, b);
	e = errno;
	close(fd);
	errno = e;
	return rc;
}

static void learn_file(const char *path)
{
	struct sbuf raw, spool;
	struct msgscan ms;
	struct mw_ctx ctx;
	int r;

	sbuf_init(&raw, LEARN_MAX_SIZE);
	if (read_file(path, &raw) < 0) {
		fprintf(stderr, "mailwarden learn: %s: %s\n", path, strerror(errno));
		run->failed++;
		sbuf_free(&raw);
		return;
	}
	sbuf_init(&spool, (size_t)LEARN_MAX_SIZE * 2);
	msgfile_to_spool(raw.data ? raw.data : "", raw.len, &spool);
	sbuf_free(&raw);
	memset(&ms, 0, sizeof(ms));
	ms.msg = (const unsigned char *)(spool.data ? spool.data : "");
	ms.len = spool.len;
	msgscan_parse(&ms);
	memset(&ctx, 0, sizeof(ctx));
	ctx.ms = &ms;
	ctx.name = "bayes";
	r = bayes_learn(run->store, &ctx, run->cls, run->seen_ttl, run->examples, run->seen_ttl);
	if (r < 0) {
		run->store_error = 1;
		run->failed++;
	} else if (r == 0)
		run->skipped++;
	else
		run->done++;
	msgscan_free(&ms);
	sbuf_free(&spool);
}

static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	const char *base = path + ftw->base;

	if (type == FTW_F && S_ISREG(st->st_mode) && base[0] != '.')
		learn_file(path);
	else if (type == FTW_DNR || type == FTW_NS) {
		fprintf(stderr, "mailwarden learn: %s: cannot read\n", path);
		run->failed++;
	}
	return run->store_error ? 1 : 0;      /* store gone: stop */
}

int learn_command(struct config *cfg, int argc, char **argv)
{
	struct learn_run r;
	char err[512];
	int i, nclass = 0, npaths = 0, rebuild = 0, no_train = 0;
	int64_t ns = 0, nh = 0;
	uint64_t ntok;

	memset(&r, 0, sizeof(r));
	r.seen_ttl = cfg->bayes_seen_ttl;
	r.examples = cfg->bayes_chars;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--spam") == 0) { r.cls = BAYES_SPAM; nclass++; }
		else if (strcmp(argv[i], "--ham") == 0) { r.cls = BAYES_HAM; nclass++; }
		else if (strcmp(argv[i], "--forget") == 0) { r.cls = BAYES_FORGET; nclass++; }
		else if (strcmp(argv[i], "--rebuild") == 0) rebuild = 1;
		else if (strcmp(argv[i], "--no-train") == 0) no_train = 1;
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(learn_usage, stdout);
			return 0;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "mailwarden learn: unknown option \"%s\"\n%s", argv[i], learn_usage);
			return 1;
		} else
			npaths++;
	}
	if (rebuild && no_train) {
		fprintf(stderr, "mailwarden learn: --rebuild and --no-train contradict each other\n%s", learn_usage);
		return 1;
	}
	if (rebuild && nclass == 0 && npaths == 0) {
		/* the character model alone, e.g. after autolearn added examples */
		if (!cfg->bayes_chars) {
			fprintf(stderr, "mailwarden learn: --rebuild: bayes_chars = no\n");
			return 1;
		}
		if ((r.store = store_open_bulk(cfg, err, sizeof(err))) == NULL) {
			fprintf(stderr, "mailwarden learn: %s\n", err);
			return 1;
		}
		i = chars_rebuild(r.store, stdout);
		if (i < 0)
			fprintf(stderr, "mailwarden learn: store %s unavailable, model not trained\n",
			    store_backend(r.store));
		store_close(r.store);
		return i < 0 ? 1 : 0;
	}
	if (nclass != 1 || npaths == 0) {
		fprintf(stderr, "mailwarden learn: give one of --spam, --ham, --forget and at least one file or directory\n%s",
		    learn_usage);
		return 1;
	}
	if ((r.store = store_open_bulk(cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailwarden learn: %s\n", err);
		return 1;
	}
	run = &r;
	for (i = 1; i < argc && !r.store_error; i++) {
		struct stat st;

		if (argv[i][0] == '-')
			continue;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "mailwarden learn: %s: %s\n", argv[i], strerror(errno));
			r.failed++;
		} else if (S_ISDIR(st.st_mode))
			nftw(argv[i], visit, 32, FTW_PHYS);
		else
			learn_file(argv[i]);
	}
	run = NULL;
	if (r.store_error)
		fprintf(stderr, "mailwarden learn: store %s unavailable, stopped\n", store_backend(r.store));
	printf("%s %u message(s), %u already %s, %u failed",
	    r.cls == BAYES_FORGET ? "forgot" : r.cls == BAYES_SPAM ? "learned as spam" : "learned as ham",
	    r.done, r.skipped, r.cls == BAYES_FORGET ? "unknown" : "learned so", r.failed);
	/* after a store error the counts were not read: "holds 0 spam" would
	 * say the store lost what it holds */
	if (!r.store_error && bayes_counts(r.store, &ns, &nh) == 0)
		printf("; store holds %lld spam, %lld ham", (long long)ns, (long long)nh);
	if (!r.store_error && store_tokens_count(r.store, &ntok) == 0)
		printf(", %llu tokens", (unsigned long long)ntok);
	printf("\n");
	/* also when every message was learned already: one may have got its
	 * example only now (a store from before the character model).
	 * --no-train: training reads every example the store keeps (seconds
	 * to minutes on a large store), too much for a hook that teaches one
	 * message at a time; the daemon trains within bayes_retrain_interval
	 * (if its filters run bayes), or a later --rebuild (from cron, say) */
	if (!r.store_error && cfg->bayes_chars && no_train && r.done + r.skipped > 0) {
		if (cfg->bayes_retrain_interval > 0)
			printf("character model not trained (--no-train): the daemon trains it within "
			    "bayes_retrain_interval (%us), or \"mailwarden learn --rebuild\"\n",
			    cfg->bayes_retrain_interval);
		else
			printf("character model not trained (--no-train): \"mailwarden learn --rebuild\" trains it\n");
	}
	else if (!r.store_error && cfg->bayes_chars && (r.done + r.skipped > 0 || rebuild)
	    && chars_rebuild(r.store, stdout) < 0) {
		fprintf(stderr, "mailwarden learn: store %s unavailable, character model not trained\n",
		    store_backend(r.store));
		r.failed++;
	}
	store_close(r.store);
	return r.failed > 0 ? 1 : 0;
}
