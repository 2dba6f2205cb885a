/* learn_cmd.c - "mailwarden learn --spam|--ham|--forget FILE|DIR...":
 * teach the Bayes classifier from message files (one message per file,
 * as MUAs, maildirs and corpora keep them, or an mbox of several;
 * directories are walked by learn_walk.c), into the store the settings
 * name, so the daemon sees it at once.
 *
 * Each message is brought to the form the scanner sees (no mbox "From "
 * line, CRLF line ends) and tokenized by the same code as in a scan, so
 * what is learned is exactly what is later looked up.  What does not
 * look like a message (msgfile_is_message), or has too few tokens to
 * learn from, is said and skipped, not failed.
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
 * admin's, which the user may not read) and hands each file to the child
 * over a socket; the child splits, parses, learns, counts and prints. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "filters/bayes.h"
#include "filters/bayes_chars.h"
#include "filters/learn_walk.h"
#include "filters/msgfile.h"
#include "filters/store.h"
#include "proxy/as_user.h"
#include "proxy/log.h"
#include "proxy/master.h"
#include "proxy/sbuf.h"

/* fewer distinct tokens than this is no message to learn from (rspamd's
 * min_tokens): a few words that would count as a whole message towards
 * bayes_min_spam/bayes_min_ham */
#define LEARN_MIN_TOKENS 11
#define LEARN_MAX_NAME 4096     /* a path in a frame */

static const char learn_usage[] =
	"usage: mailwarden learn [-c FILE] [-o name=value]... [--no-train] --spam|--ham|--forget FILE|DIR...\n"
	"       mailwarden learn [-c FILE] [-o name=value]... --rebuild\n"
	"--spam, --ham, --forget: learn each message of the files as spam, as ham, or forget it;\n"
	"  a file is one message, or an mbox of several; a Maildir's cur/ and new/ are read,\n"
	"  other directories walked (dot files skipped); files that are not mail are skipped\n"
	"--no-train: learn, but leave the character model to a later --rebuild\n"
	"--rebuild: train the character model from the examples the store keeps\n";

struct learn_run {
	struct store *store;
	enum bayes_class cls;
	unsigned seen_ttl;
	int examples;           /* bayes_chars: keep each message's example */
	int lists;              /* bayes_list_boilerplate: BAYES_LISTS_ON, or _OFF */
	unsigned done, skipped, failed;
	unsigned refused;       /* not mail, or too few tokens: said, not learned */
	int store_error;
	int sock;               /* to the child doing the store work; -1: here */
	int gone;               /* that child stopped reading: walk no further */
};

/* one file (or one failure) from root's walk to the store child */
struct learn_frame {
	uint32_t kind;          /* LEARN_MSG: namelen + len bytes follow; LEARN_FAILED: none */
	uint32_t namelen;       /* the file's path, for what is said about it */
	uint32_t len;           /* its bytes */
};
enum { LEARN_MSG = 1, LEARN_FAILED = 2 };

static struct learn_run *run;      /* the run of this process */

/* refuse - one message not learned, and why (path's message i of an mbox) */
static void refuse(const char *path, unsigned i, int mbox, const char *why)
{
	char esc[LEARN_SAID_MAX];

	log_esc(esc, sizeof(esc), path, strlen(path));     /* a user's file name: LEARN_SAID_MAX */
	if (mbox)
		fprintf(stderr, "mailwarden learn: %s: message %u: %s: skipped\n", esc, i, why);
	else
		fprintf(stderr, "mailwarden learn: %s: %s: skipped\n", esc, why);
	run->refused++;
}

/* learn_message - one message (raw: borrowed) learned */
static void learn_message(const char *path, unsigned i, int mbox, const char *data, size_t len)
{
	struct bayes_tokens t = { 0 };
	struct sbuf spool;
	struct msgscan ms;
	struct mw_ctx ctx;
	char why[64];
	int r;

	if (!msgfile_is_message(data, len)) {
		refuse(path, i, mbox, len == 0 ? "empty" : "not a message (its first line is no header field)");
		return;
	}
	sbuf_init(&spool, (size_t)LEARN_MAX_SIZE * 2);
	if (mbox)
		msgfile_mbox_to_spool(data, len, &spool);
	else
		msgfile_to_spool(data, len, &spool);
	memset(&ms, 0, sizeof(ms));
	ms.msg = (const unsigned char *)(spool.data ? spool.data : "");
	ms.len = spool.len;
	msgscan_parse(&ms);
	memset(&ctx, 0, sizeof(ctx));
	ctx.ms = &ms;
	ctx.name = "bayes";
	bayes_tokenize(&ctx, &t);
	/* forgetting takes what an older version may have learned from a
	 * short one */
	if (run->cls != BAYES_FORGET && t.n < LEARN_MIN_TOKENS) {
		snprintf(why, sizeof(why), "%zu tokens, fewer than %d", t.n, LEARN_MIN_TOKENS);
		refuse(path, i, mbox, why);
		r = 0;
	} else if ((r = bayes_learn_tokens(run->store, &ctx, &t, run->cls, run->seen_ttl, run->examples,
	                                   run->seen_ttl, run->lists)) == BAYES_LEARN_NOT) {
		char esc[LEARN_SAID_MAX];

		/* this message's trouble (logged): the store works, go on */
		log_esc(esc, sizeof(esc), path, strlen(path));
		if (mbox)
			fprintf(stderr, "mailwarden learn: %s: message %u: not learned\n", esc, i);
		else
			fprintf(stderr, "mailwarden learn: %s: not learned\n", esc);
		run->failed++;
	} else if (r < 0) {
		run->store_error = 1;
		run->failed++;
	} else if (r == 0)
		run->skipped++;
	else
		run->done++;
	bayes_tokens_free(&t);
	msgscan_free(&ms);
	sbuf_free(&spool);
}

/* learn_bytes - one file's bytes (borrowed): its message, or each
 * message of an mbox, learned */
static void learn_bytes(const char *path, const char *data, size_t len)
{
	struct msgfile_iter it;
	const char *m;
	size_t mlen;
	unsigned i = 0;

	msgfile_iter_init(&it, data, len);
	while (!run->store_error && msgfile_next(&it, &m, &mlen))
		learn_message(path, ++i, it.mbox, m, mlen);
}

/* send_all - n bytes to the store child; a child gone (it stopped at a
 * store error or died, and said so or is reported at the wait) ends the
 * walk */
static void send_all(const void *data, size_t n)
{
	for (size_t off = 0; off < n && !run->gone; ) {
		ssize_t w = send(run->sock, (const char *)data + off, n - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			run->gone = 1;
			break;
		}
		off += (size_t)w;
	}
}

static void send_frame(uint32_t kind, const char *path, const char *data, size_t len)
{
	size_t nl = path ? strlen(path) : 0;
	struct learn_frame h;

	if (nl > LEARN_MAX_NAME)
		nl = LEARN_MAX_NAME;    /* only said: its start will do */
	h = (struct learn_frame){ kind, (uint32_t)nl, (uint32_t)len };
	send_all(&h, sizeof(h));
	send_all(path, nl);
	send_all(data, len);
}

/* the walk's sink (learn_walk.h): each file to the store child, or
 * learned here */
static void sink_file(void *arg, const char *path, const char *data, size_t len)
{
	if (run->sock >= 0)
		send_frame(LEARN_MSG, path, data, len);
	else
		learn_bytes(path, data, len);
}

static void sink_failed(void *arg)
{
	if (run->sock >= 0)
		send_frame(LEARN_FAILED, NULL, NULL, 0);
	else
		run->failed++;
}

static int sink_stop(void *arg)
{
	return run->store_error || run->gone;
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

/* read_into - n bytes of fd appended to b; 0 or -1 */
static int read_into(int fd, struct sbuf *b, size_t n)
{
	char chunk[65536];

	while (n > 0) {
		size_t k = n < sizeof(chunk) ? n : sizeof(chunk);

		if (read_full(fd, chunk, k) != 1 || sbuf_add(b, chunk, k) < 0)
			return -1;
		n -= k;
	}
	return 0;
}

/* learn_frames - the store child: the files root sends, until it is
 * done (end of stream) or the store fails */
static void learn_frames(int fd)
{
	struct learn_frame h;
	struct sbuf raw, name;
	int r;

	sbuf_init(&raw, LEARN_MAX_SIZE);
	sbuf_init(&name, LEARN_MAX_NAME);
	while (!run->store_error && (r = read_full(fd, &h, sizeof(h))) != 0) {
		if (r < 0 || (h.kind != LEARN_MSG && h.kind != LEARN_FAILED) || h.len > LEARN_MAX_SIZE
		    || h.namelen > LEARN_MAX_NAME) {
			fprintf(stderr, "mailwarden learn: the messages from the walk were cut short\n");
			run->failed++;
			break;
		}
		if (h.kind == LEARN_FAILED) {
			run->failed++;
			continue;
		}
		sbuf_reset(&raw);
		sbuf_reset(&name);
		if (read_into(fd, &name, h.namelen) < 0 || read_into(fd, &raw, h.len) < 0) {
			fprintf(stderr, "mailwarden learn: the messages from the walk were cut short\n");
			run->failed++;
			break;
		}
		learn_bytes(name.data ? name.data : "", raw.data ? raw.data : "", raw.len);
	}
	sbuf_free(&name);
	sbuf_free(&raw);
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
	static const struct learn_sink sink = { NULL, sink_file, sink_failed, sink_stop };

	run = r;
	for (int i = 1; i < argc && !r->store_error && !r->gone; i++)
		if (argv[i][0] != '-')
			learn_walk(argv[i], &sink);
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
	/* skipped, not failed: one stray file must not fail a cron job */
	if (r->refused > 0)
		printf(", %u skipped (not mail, or fewer than %d tokens)", r->refused, LEARN_MIN_TOKENS);
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
	r.lists = cfg->bayes_list_boilerplate ? BAYES_LISTS_ON : BAYES_LISTS_OFF;
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
