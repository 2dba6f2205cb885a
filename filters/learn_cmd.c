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
 * (bayes_retrain_interval).
 *
 * Run as root for a store the daemon's user keeps ("user" set, or an LMDB
 * store in a directory another user owns), the store work is done in a
 * child dropped to that user, as the scanner and a root "scan" do: LMDB
 * maps the file and trusts every page of it, and the user can write it
 * (a few changed bytes made root's learn write past a heap buffer).  Root
 * keeps only what needs root: it walks the paths and reads the files (the
 * admin's, which the user may not read) and hands each message to the
 * child over a socket; the child parses, learns, counts and prints. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "filters/bayes.h"
#include "filters/bayes_chars.h"
#include "filters/msgfile.h"
#include "filters/store.h"
#include "proxy/as_user.h"
#include "proxy/master.h"
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
	int sock;               /* to the child doing the store work; -1: here */
	int gone;               /* that child stopped reading: walk no further */
};

/* one message (or one failure) from root's walk to the store child */
struct learn_frame {
	uint32_t kind;          /* LEARN_MSG: len bytes follow; LEARN_FAILED: none */
	uint32_t len;
};
enum { LEARN_MSG = 1, LEARN_FAILED = 2 };

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

/* learn_bytes - one message file's bytes (raw: borrowed) learned */
static void learn_bytes(const char *data, size_t len)
{
	struct sbuf spool;
	struct msgscan ms;
	struct mw_ctx ctx;
	int r;

	sbuf_init(&spool, (size_t)LEARN_MAX_SIZE * 2);
	msgfile_to_spool(data, len, &spool);
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

/* send_frame - to the store child; a child gone (it stopped at a store
 * error or died, and said so or is reported at the wait) ends the walk */
static void send_frame(uint32_t kind, const char *data, size_t len)
{
	struct learn_frame h = { kind, (uint32_t)len };
	const char *p = (const char *)&h;
	size_t n = sizeof(h), off = 0;

	for (int part = 0; part < 2 && !run->gone; part++) {
		while (off < n) {
			ssize_t w = send(run->sock, p + off, n - off, MSG_NOSIGNAL);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				run->gone = 1;
				break;
			}
			off += (size_t)w;
		}
		p = data;
		n = len;
		off = 0;
	}
}

static void note_failed(void)
{
	if (run->sock >= 0)
		send_frame(LEARN_FAILED, NULL, 0);
	else
		run->failed++;
}

static void learn_file(const char *path)
{
	struct sbuf raw;

	sbuf_init(&raw, LEARN_MAX_SIZE);
	if (read_file(path, &raw) < 0) {
		fprintf(stderr, "mailwarden learn: %s: %s\n", path, strerror(errno));
		note_failed();
	} else if (run->sock >= 0)
		send_frame(LEARN_MSG, raw.data ? raw.data : "", raw.len);
	else
		learn_bytes(raw.data ? raw.data : "", raw.len);
	sbuf_free(&raw);
}

/* read_full - n bytes: 1, 0 at the end before any, -1 on an error or a
 * frame cut short */
static int read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r == 0 && got == 0 ? 0 : -1;
		got += (size_t)r;
	}
	return 1;
}

/* learn_frames - the store child: the messages root sends, until it is
 * done (end of stream) or the store fails */
static void learn_frames(int fd)
{
	struct learn_frame h;
	struct sbuf raw;
	char chunk[65536];
	int r;

	sbuf_init(&raw, LEARN_MAX_SIZE);
	while (!run->store_error && (r = read_full(fd, &h, sizeof(h))) != 0) {
		if (r < 0 || (h.kind != LEARN_MSG && h.kind != LEARN_FAILED) || h.len > LEARN_MAX_SIZE) {
			fprintf(stderr, "mailwarden learn: the messages from the walk were cut short\n");
			run->failed++;
			break;
		}
		if (h.kind == LEARN_FAILED) {
			run->failed++;
			continue;
		}
		sbuf_reset(&raw);
		for (size_t left = h.len; left > 0; ) {
			size_t n = left < sizeof(chunk) ? left : sizeof(chunk);

			if (read_full(fd, chunk, n) != 1) {
				r = -1;
				break;
			}
			sbuf_add(&raw, chunk, n);
			left -= n;
		}
		if (r < 0) {
			fprintf(stderr, "mailwarden learn: the messages from the walk were cut short\n");
			run->failed++;
			break;
		}
		learn_bytes(raw.data ? raw.data : "", raw.len);
	}
	sbuf_free(&raw);
}

static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	const char *base = path + ftw->base;

	if (type == FTW_F && S_ISREG(st->st_mode) && base[0] != '.')
		learn_file(path);
	else if (type == FTW_DNR || type == FTW_NS) {
		fprintf(stderr, "mailwarden learn: %s: cannot read\n", path);
		note_failed();
	}
	return run->store_error || run->gone ? 1 : 0;      /* store gone: stop */
}

/* learn_privs - who does the store work of a learn run by this process:
 * pv->drop = 0 here, as whoever runs it; 1 in a child dropped to pv.
 * Root drops to "user", or, without one, to the owner of an LMDB store's
 * directory when that is another user (the case the store used to open
 * with only its file-system identity switched).  -1 with err: "user"
 * cannot be switched to. */
static int learn_privs(const struct config *cfg, struct privs *pv, char *err, size_t errlen)
{
	memset(pv, 0, sizeof(*pv));
	if (geteuid() != 0)
		return 0;
	if (cfg->user[0] != '\0')
		return privs_lookup(cfg->user, pv, err, errlen);
	if (cfg->store_backend == 0 && store_lmdb_dir_owner(cfg->store_path, &pv->uid, &pv->gid))
		pv->drop = 1;
	return 0;
}

/* learn_rebuild_only - --rebuild alone: the character model from the
 * examples the store keeps */
static int learn_rebuild_only(struct config *cfg)
{
	char err[512];
	struct store *st;
	int i;

	if ((st = store_open_bulk(cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailwarden learn: %s\n", err);
		return 1;
	}
	i = chars_rebuild(st, stdout);
	if (i < 0)
		fprintf(stderr, "mailwarden learn: store %s unavailable, model not trained\n",
		    store_backend(st));
	store_close(st);
	return i < 0 ? 1 : 0;
}

/* learn_paths - the message files and directories of argv into the store
 * (r->sock >= 0: to the store child, which learns them) */
static void learn_paths(struct learn_run *r, int argc, char **argv)
{
	run = r;
	for (int i = 1; i < argc && !r->store_error && !r->gone; i++) {
		struct stat st;

		if (argv[i][0] == '-')
			continue;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "mailwarden learn: %s: %s\n", argv[i], strerror(errno));
			note_failed();
		} else if (S_ISDIR(st.st_mode))
			nftw(argv[i], visit, 32, FTW_PHYS);
		else
			learn_file(argv[i]);
	}
	run = NULL;
}

/* learn_finish - what was learned, said; then the character model
 * trained; the store closed.  The exit code. */
static int learn_finish(struct config *cfg, struct learn_run *r, int rebuild, int no_train)
{
	int64_t ns = 0, nh = 0;
	uint64_t ntok;

	if (r->store_error)
		fprintf(stderr, "mailwarden learn: store %s unavailable, stopped\n", store_backend(r->store));
	printf("%s %u message(s), %u already %s, %u failed",
	    r->cls == BAYES_FORGET ? "forgot" : r->cls == BAYES_SPAM ? "learned as spam" : "learned as ham",
	    r->done, r->skipped, r->cls == BAYES_FORGET ? "unknown" : "learned so", r->failed);
	/* after a store error the counts were not read: "holds 0 spam" would
	 * say the store lost what it holds */
	if (!r->store_error && bayes_counts(r->store, &ns, &nh) == 0)
		printf("; store holds %lld spam, %lld ham", (long long)ns, (long long)nh);
	if (!r->store_error && store_tokens_count(r->store, &ntok) == 0)
		printf(", %llu tokens", (unsigned long long)ntok);
	printf("\n");
	/* also when every message was learned already: one may have got its
	 * example only now (a store from before the character model).
	 * --no-train: training reads every example the store keeps (seconds
	 * to minutes on a large store), too much for a hook that teaches one
	 * message at a time; the daemon trains within bayes_retrain_interval
	 * (if its filters run bayes), or a later --rebuild (from cron, say) */
	if (!r->store_error && cfg->bayes_chars && no_train && r->done + r->skipped > 0) {
		if (cfg->bayes_retrain_interval > 0)
			printf("character model not trained (--no-train): the daemon trains it within "
			    "bayes_retrain_interval (%us), or \"mailwarden learn --rebuild\"\n",
			    cfg->bayes_retrain_interval);
		else
			printf("character model not trained (--no-train): \"mailwarden learn --rebuild\" trains it\n");
	}
	else if (!r->store_error && cfg->bayes_chars && (r->done + r->skipped > 0 || rebuild)
	    && chars_rebuild(r->store, stdout) < 0) {
		fprintf(stderr, "mailwarden learn: store %s unavailable, character model not trained\n",
		    store_backend(r->store));
		r->failed++;
	}
	store_close(r->store);
	return r->failed > 0 ? 1 : 0;
}

/* what a learn run does: the walk over argv's files (root's, when it
 * drops), and the store work (the user's) */
struct learn_job {
	struct config *cfg;
	struct learn_run *r;
	int argc;
	char **argv;
	int rebuild_only, rebuild, no_train;
	int sock, peer;         /* the messages' socket, this end and the other; -1: none */
};

/* learn_store_work - the store's part: the messages from root's walk on
 * job->sock, or walked here without one.  Its exit code. */
static int learn_store_work(struct learn_job *job)
{
	struct learn_run *r = job->r;
	char err[512];

	if (job->rebuild_only)
		return learn_rebuild_only(job->cfg);
	if ((r->store = store_open_bulk(job->cfg, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailwarden learn: %s\n", err);
		return 1;
	}
	if (job->sock >= 0) {
		run = r;
		learn_frames(job->sock);
		run = NULL;
		close(job->sock);       /* root's walk stops at its next message */
		job->sock = -1;
	} else
		learn_paths(r, job->argc, job->argv);
	return learn_finish(job->cfg, r, job->rebuild, job->no_train);
}

/* learn_child - the store work in the child, on its end of the socket */
static int learn_child(void *arg, char *err, size_t errlen)
{
	struct learn_job *job = arg;
	int rc;

	close(job->sock);
	job->sock = job->peer;
	rc = learn_store_work(job);
	if (job->sock >= 0)
		close(job->sock);
	return rc;
}

/* learn_feed - root's part: the walk, each message sent to the child */
static void learn_feed(void *arg)
{
	struct learn_job *job = arg;

	close(job->peer);
	job->peer = -1;
	if (!job->rebuild_only) {
		job->r->sock = job->sock;
		learn_paths(job->r, job->argc, job->argv);
	}
	close(job->sock);               /* the end of the messages */
	job->sock = -1;
}

/* learn_as_user - the store work in a child dropped to pv, fed by root's
 * walk: the child's exit code; one that died of a signal (a store that
 * crashed LMDB, say) is an error: 1, said on stderr */
static int learn_as_user(const struct privs *pv, struct learn_job *job)
{
	char err[256];
	int sv[2], status, rc;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		fprintf(stderr, "mailwarden learn: socketpair: %s\n", strerror(errno));
		return 1;
	}
	job->sock = sv[0];
	job->peer = sv[1];
	rc = run_as_user(pv, learn_child, job, learn_feed, job, &status, err, sizeof(err));
	if (job->sock >= 0)             /* no child to feed */
		close(job->sock);
	if (job->peer >= 0)
		close(job->peer);
	if (rc < 0) {
		fprintf(stderr, "mailwarden learn: %s\n", err);
		return 1;
	}
	/* the child says nothing in err but why it could not drop */
	if (err[0] != '\0')
		fprintf(stderr, "mailwarden learn: user: %s\n", err);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	fprintf(stderr, "mailwarden learn: the store work (as uid %u) was killed by signal %d "
	    "(%s): a damaged store?\n", (unsigned)pv->uid, WTERMSIG(status), strsignal(WTERMSIG(status)));
	return 1;
}

int learn_command(struct config *cfg, int argc, char **argv)
{
	struct learn_run r;
	struct learn_job job;
	struct privs pv;
	char err[512];
	int i, nclass = 0, npaths = 0, rebuild = 0, no_train = 0;

	memset(&r, 0, sizeof(r));
	r.sock = -1;
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
	} else if (nclass != 1 || npaths == 0) {
		fprintf(stderr, "mailwarden learn: give one of --spam, --ham, --forget and at least one file or directory\n%s",
		    learn_usage);
		return 1;
	}
	if (learn_privs(cfg, &pv, err, sizeof(err)) < 0) {
		fprintf(stderr, "mailwarden learn: %s\n", err);
		return 1;
	}
	job = (struct learn_job){ cfg, &r, argc, argv, rebuild && nclass == 0, rebuild, no_train, -1, -1 };
	return pv.drop ? learn_as_user(&pv, &job) : learn_store_work(&job);
}
