/* test_pipeline.c - the filter pipeline with the example plugin over
 * in-memory messages (memfd): accept, tag, reject, quarantine (files on
 * disk), plugin load errors; the mw_* API checks; and the scanner process
 * end to end over its unix socket (results, busy, malformed packets,
 * SIGTERM drain).
 *
 * The plugin: $MW_PLUGIN, else example_plugin.so next to this test binary
 * (the Makefile puts both in $(BUILD)/tests), else
 * build/tests/example_plugin.so relative to the repository root. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "filters/builtin.h"
#include "filters/deadline.h"
#include "filters/filter_api.h"
#include "filters/pipeline.h"
#include "filters/scanner.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"
#include "tests/unit/unit_tmpdir.h"

static char plugin_path[512];
static pid_t scanner_pid;       /* a scanner still running after a failed test */
/* the running test's scratch directory (unit_tmpdir_setup) */
static const char *const tmpdir = unit_dir;

static void find_plugin(void)
{
	const char *env = getenv("MW_PLUGIN");
	char self[480], *slash;
	ssize_t n;

	if (env != NULL && *env != '\0') {
		snprintf(plugin_path, sizeof(plugin_path), "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL) {
			*slash = '\0';
			snprintf(plugin_path, sizeof(plugin_path), "%s/example_plugin.so", self);
			if (access(plugin_path, R_OK) == 0)
				return;
		}
	}
	snprintf(plugin_path, sizeof(plugin_path), "build/tests/example_plugin.so");
}

static void cfg_init(struct config *c, const char *plugin_args)
{
	memset(c, 0, sizeof(*c));
	c->refcount = 1;
	c->inbound.tag_score = 5.0;
	c->inbound.reject_score = 15.0;
	c->outbound.tag_score = 5.0;
	c->outbound.reject_score = 10.0;
	strcpy(c->reject_reply, "550 5.7.1 Message rejected as spam");
	strcpy(c->tempfail_reply, "451 4.7.1 Try again later");
	strcpy(c->quarantine_reply, "250 2.0.0 Message accepted");
	strcpy(c->discard_reply, "250 2.0.0 Message accepted");
	snprintf(c->quarantine_dir, sizeof(c->quarantine_dir), "%s/q", tmpdir);
	c->scanner_threads = 2;
	c->scanner_queue = 4;
	c->shutdown_timeout = 5000;
	c->scan_timeout = 30000;       /* a front end waits: 0 would be a deadline passed at once */
	snprintf(c->plugins[0], sizeof(c->plugins[0]), "%s%s%s", plugin_path,
	    plugin_args ? " " : "", plugin_args ? plugin_args : "");
	c->nplugins = 1;
}

static void req_init(struct scan_request *r, uint64_t id)
{
	memset(r, 0, sizeof(*r));
	r->id = id;
	strcpy(r->session_id, "00000000000000aa");
	r->listener = strdup("test");
	r->client_ip = strdup("192.0.2.1");
	r->client_port = 4242;
	r->client_name = strdup("");
	r->helo = strdup("client.example");
	r->mail_from = strdup("sender@example.org");
	r->mail_params = strdup("");
	r->rcpts = calloc(2, sizeof(char *));
	r->rcpts[0] = strdup("a@example.net");
	r->rcpts[1] = strdup("b@example.net");
	r->nrcpts = 2;
	r->auth_user = strdup("");
	r->tls = strdup("");
}

static int memfd_of(const char *msg, size_t len)
{
	int fd = memfd_create("msg", MFD_CLOEXEC);
	size_t off = 0;
	ssize_t w;

	assert_true(fd >= 0);
	while (off < len) {
		w = write(fd, msg + off, len - off);
		assert_true(w > 0);
		off += (size_t)w;
	}
	return fd;
}

/* memfd_sealed - as the proxy's spool: sealed, so the scanner maps it */
static int memfd_sealed(const char *msg, size_t len)
{
	int fd = memfd_create("msg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	size_t off = 0;
	ssize_t w;

	assert_true(fd >= 0);
	while (off < len) {
		w = write(fd, msg + off, len - off);
		assert_true(w > 0);
		off += (size_t)w;
	}
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE), 0);
	return fd;
}

/* scan - one message through a pipeline built from cfg (sealed memfd:
 * mapped; the threads and scanner tests use unsealed ones: copied) */
static void scan(struct config *cfg, const char *msg, unsigned flags, struct scan_result *res)
{
	struct scan_request req;
	struct pipeline *p;
	char err[512];
	int fd;

	p = pipeline_new(cfg, err, sizeof(err));
	if (p == NULL)
		fail_msg("pipeline_new: %s", err);
	req_init(&req, 7);
	fd = memfd_sealed(msg, strlen(msg));
	pipeline_scan_ex(p, &req, fd, flags, res);
	close(fd);
	assert_true(res->id == 7);
	scan_request_free(&req);
	pipeline_free(p);
}

static const struct header_edit *find_edit(const struct scan_result *r, enum header_edit_op op,
                                           const char *name)
{
	size_t i;

	for (i = 0; i < r->nedits; i++)
		if (r->edits[i].op == op && strcmp(r->edits[i].name, name) == 0)
			return &r->edits[i];
	return NULL;
}

static const char clean_msg[] =
	"From: Alice <alice@example.org>\r\n"
	"To: bob@example.net\r\n"
	"Subject: Lunch tomorrow?\r\n"
	"Message-ID: <1@example.org>\r\n"
	"\r\n"
	"Shall we?\r\n";

static const char spam_msg[] =
	"From: Spammer <s@example.com>\r\n"
	"To: bob@example.net\r\n"
	"Subject: Cheap\r\n"
	"  ViAgRa here\r\n"		/* folded: the plugin sees it unfolded */
	"X-Spam-Flag: NO\r\n"		/* a pre-set flag, to be removed */
	"\r\n"
	"Buy now\r\n";

static const char reject_msg[] =
	"From: x@example.com\r\n"
	"X-Reject-Me: please\r\n"
	"Subject: viagra\r\n"
	"\r\n"
	"body\r\n";

static void test_clean_accept(void **state)
{
	struct config cfg;
	struct scan_result res;

	(void)state;
	cfg_init(&cfg, NULL);
	scan(&cfg, clean_msg, 0, &res);
	assert_int_equal(res.action, MW_ACCEPT);
	assert_string_equal(res.error, "");
	assert_string_equal(res.reply, "");
	assert_int_equal(res.nsymbols, 0);
	assert_true(res.score == 0);
	assert_int_equal(res.nedits, 1);	/* the X-Spam-* removal */
	assert_true(res.scan_ms >= 0);
	scan_result_free(&res);
}

static void test_subject_tag(void **state)
{
	struct config cfg;
	struct scan_result res;
	const struct header_edit *e;

	(void)state;
	cfg_init(&cfg, NULL);
	strcpy(cfg.subject_tag, "[SPAM]");
	scan(&cfg, spam_msg, 0, &res);
	assert_int_equal(res.action, MW_TAG);
	assert_string_equal(res.reply, "");
	assert_int_equal(res.nsymbols, 1);
	assert_string_equal(res.symbols[0].name, "EXAMPLE_SUBJECT_WORD");
	assert_string_equal(res.symbols[0].filter, "example");
	assert_string_equal(res.symbols[0].desc, "Subject contains \"viagra\"");
	assert_true(res.symbols[0].score == 6.0);
	assert_true(res.score == 6.0);
	assert_true(res.required == 5.0);
	assert_non_null(find_edit(&res, HE_REMOVE_PREFIX, "X-Spam-"));
	assert_string_equal(find_edit(&res, HE_ADD, "X-Spam-Flag")->value, "YES");
	assert_string_equal(find_edit(&res, HE_ADD, "X-Spam-Score")->value, "6.0");
	assert_string_equal(find_edit(&res, HE_ADD, "X-Spam-Status")->value,
	    "Yes, score=6.0 required=5.0 tests=EXAMPLE_SUBJECT_WORD");
	e = find_edit(&res, HE_CHANGE, "Subject");
	assert_non_null(e);
	assert_string_equal(e->value, "[SPAM] Cheap\r\n  ViAgRa here");
	scan_result_free(&res);
}

static void test_reject_header(void **state)
{
	struct config cfg;
	struct scan_result res;

	(void)state;
	cfg_init(&cfg, NULL);
	scan(&cfg, reject_msg, 0, &res);
	assert_int_equal(res.action, MW_REJECT);
	assert_string_equal(res.reply, "550 5.7.1 Message refused by example plugin");
	assert_int_equal(res.nsymbols, 1);	/* the subject word was seen too */
	scan_result_free(&res);

	/* another configured code, same text from the plugin */
	strcpy(cfg.reject_reply, "554 5.7.0 Go away");
	scan(&cfg, reject_msg, 0, &res);
	assert_string_equal(res.reply, "554 5.7.0 Message refused by example plugin");
	scan_result_free(&res);
}

static void test_plugin_args(void **state)
{
	struct config cfg;
	struct scan_result res;

	(void)state;
	cfg_init(&cfg, "word=lunch score=20 reject_header=X-Nope");
	scan(&cfg, clean_msg, 0, &res);
	assert_int_equal(res.action, MW_REJECT);	/* by score: configured text */
	assert_string_equal(res.reply, "550 5.7.1 Message rejected as spam");
	assert_string_equal(res.symbols[0].desc, "Subject contains \"lunch\"");
	scan_result_free(&res);

	scan(&cfg, reject_msg, 0, &res);	/* X-Reject-Me is not the header now */
	assert_int_equal(res.action, MW_ACCEPT);
	scan_result_free(&res);

	/* outbound thresholds apply to outbound mail */
	cfg_init(&cfg, "score=12");
	{
		struct scan_request req;
		struct pipeline *p;
		char err[256];
		int fd;

		p = pipeline_new(&cfg, err, sizeof(err));
		assert_non_null(p);
		req_init(&req, 9);
		req.direction = MW_OUTBOUND;
		fd = memfd_of(spam_msg, strlen(spam_msg));
		pipeline_scan(p, &req, fd, &res);
		close(fd);
		assert_int_equal(res.action, MW_REJECT);
		scan_result_free(&res);
		req.direction = MW_INBOUND;
		fd = memfd_of(spam_msg, strlen(spam_msg));
		pipeline_scan(p, &req, fd, &res);
		close(fd);
		assert_int_equal(res.action, MW_TAG);
		scan_result_free(&res);
		scan_request_free(&req);
		pipeline_free(p);
	}
}

/* a plugin that works in steps while the deadline leaves time (the
 * example's work_header, mw_time_left_ms) is cut at the deadline, in time
 * for the front end, and the result says who was cut */
static void test_work_cut_at_deadline(void **state)
{
	static const char msg[] = "Subject: work\r\nX-Work: 5000\r\n\r\nbody\r\n";
	static const char short_msg[] = "Subject: work\r\nX-Work: 60\r\n\r\nbody\r\n";
	struct config cfg;
	struct scan_result res;
	long long t0, took;

	(void)state;
	cfg_init(&cfg, "work_header=X-Work");
	cfg.scan_timeout = 1000;	/* deadline: 800 ms after the start */
	t0 = deadline_now_ms();
	scan(&cfg, msg, 0, &res);
	took = deadline_now_ms() - t0;
	assert_in_range(took, 790, 990);
	assert_int_equal(res.nsymbols, 1);
	assert_string_equal(res.symbols[0].name, "EXAMPLE_WORK_CUT");
	assert_non_null(strstr(res.symbols[0].desc, "of 5000 ms"));
	assert_string_equal(res.timed_out, "example=scan_deadline");
	assert_int_equal(res.action, MW_ACCEPT);
	scan_result_free(&res);

	/* work that fits: done whole, nobody noted */
	scan(&cfg, short_msg, 0, &res);
	assert_int_equal(res.nsymbols, 0);
	assert_string_equal(res.timed_out, "");
	scan_result_free(&res);
}

/* read_file - whole file, NUL-terminated */
static char *read_file(const char *path, size_t *len)
{
	struct stat st;
	char *b;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size + 1);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	b[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	close(fd);
	return b;
}

static int count_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' || (e->d_name[1] != '\0' && e->d_name[1] != '.'))
			n++;
	closedir(d);
	return n;
}

static void test_quarantine(void **state)
{
	struct config cfg;
	struct scan_result res;
	char path[PATH_MAX + 100], day[PATH_MAX];
	json_object *j, *env, *v;
	struct stat st;
	size_t len;
	char *b;

	(void)state;
	cfg_init(&cfg, NULL);
	cfg.inbound.quarantine_score = 6.0;

	/* dry run: reported, nothing stored */
	scan(&cfg, spam_msg, PIPELINE_DRY_RUN, &res);
	assert_int_equal(res.action, MW_QUARANTINE);
	assert_string_equal(res.quarantine_id, "");
	assert_int_equal(stat(cfg.quarantine_dir, &st), -1);
	scan_result_free(&res);

	scan(&cfg, spam_msg, 0, &res);
	assert_int_equal(res.action, MW_QUARANTINE);
	assert_string_equal(res.reply, "250 2.0.0 Message accepted");
	assert_string_equal(res.error, "");
	assert_int_equal(strlen(res.quarantine_id), 24);	/* 20261127T013000-3f9a0c1d */
	assert_int_equal(res.quarantine_id[8], 'T');
	assert_int_equal(res.quarantine_id[15], '-');
	assert_int_equal(stat(cfg.quarantine_dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(day, sizeof(day), "%s/%.8s", cfg.quarantine_dir, res.quarantine_id);
	assert_int_equal(count_dir(day), 2);	/* one directory per day */

	snprintf(path, sizeof(path), "%s/%s.eml", day, res.quarantine_id);
	b = read_file(path, &len);
	assert_int_equal(len, strlen(spam_msg));
	assert_memory_equal(b, spam_msg, len);		/* byte-exact */
	free(b);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	snprintf(path, sizeof(path), "%s/%s.json", day, res.quarantine_id);
	b = read_file(path, &len);
	j = json_tokener_parse(b);
	free(b);
	assert_non_null(j);
	assert_true(json_object_object_get_ex(j, "id", &v));
	assert_string_equal(json_object_get_string(v), res.quarantine_id);
	assert_true(json_object_object_get_ex(j, "time", &v));
	assert_true(json_object_object_get_ex(j, "reason", &v));
	assert_non_null(strstr(json_object_get_string(v), "quarantine"));
	assert_true(json_object_object_get_ex(j, "envelope", &env));
	assert_true(json_object_object_get_ex(env, "mail_from", &v));
	assert_string_equal(json_object_get_string(v), "sender@example.org");
	assert_true(json_object_object_get_ex(env, "rcpts", &v));
	assert_int_equal(json_object_array_length(v), 2);
	assert_true(json_object_object_get_ex(j, "result", &env));
	assert_true(json_object_object_get_ex(env, "action", &v));
	assert_string_equal(json_object_get_string(v), "quarantine");
	assert_true(json_object_object_get_ex(env, "quarantine_id", &v));
	assert_string_equal(json_object_get_string(v), res.quarantine_id);
	json_object_put(j);
	scan_result_free(&res);

	/* a second one gets its own ID */
	scan(&cfg, spam_msg, 0, &res);
	assert_int_equal(res.action, MW_QUARANTINE);
	snprintf(path, sizeof(path), "%s/%.8s", cfg.quarantine_dir, res.quarantine_id);
	assert_int_equal(count_dir(day), strcmp(path, day) == 0 ? 4 : 2);	/* midnight? */
	scan_result_free(&res);

	/* the store fails (the directory is a file): tempfail, with the reason */
	snprintf(cfg.quarantine_dir, sizeof(cfg.quarantine_dir), "%s/q/%s.eml", tmpdir,
	    "notadir");
	{
		int fd = open(cfg.quarantine_dir, O_CREAT | O_WRONLY, 0600);

		assert_true(fd >= 0);
		close(fd);
	}
	scan(&cfg, spam_msg, 0, &res);
	assert_int_equal(res.action, MW_TEMPFAIL);
	assert_string_equal(res.reply, "451 4.7.1 Try again later");
	assert_non_null(strstr(res.error, "quarantine"));
	scan_result_free(&res);
}

static void test_odd_messages(void **state)
{
	struct config cfg;
	struct scan_result res;
	struct scan_request req;
	struct pipeline *p;
	char err[256], *big;
	int fd, pfd[2];
	size_t n;

	(void)state;
	cfg_init(&cfg, NULL);
	scan(&cfg, "", 0, &res);			/* 0 bytes is a message */
	assert_int_equal(res.action, MW_ACCEPT);
	assert_string_equal(res.error, "");
	scan_result_free(&res);
	scan(&cfg, "Subject: viagra", 0, &res);	/* no line end, no body */
	assert_int_equal(res.action, MW_TAG);
	scan_result_free(&res);
	scan(&cfg, "no header here\r\nSubject: viagra\r\n\r\n", 0, &res);
	assert_int_equal(res.action, MW_ACCEPT);	/* that Subject is body */
	scan_result_free(&res);

	/* a body of several chunks */
	n = 300 * 1024;
	big = malloc(n + 100);
	strcpy(big, "Subject: big viagra\r\n\r\n");
	memset(big + strlen(big), 'x', n);
	big[n] = '\0';
	scan(&cfg, big, 0, &res);
	assert_int_equal(res.action, MW_TAG);
	free(big);
	scan_result_free(&res);

	/* not a regular file: tempfail with an error */
	p = pipeline_new(&cfg, err, sizeof(err));
	assert_non_null(p);
	req_init(&req, 3);
	assert_int_equal(pipe(pfd), 0);
	pipeline_scan(p, &req, pfd[0], &res);
	assert_int_equal(res.action, MW_TEMPFAIL);
	assert_true(res.id == 3);
	assert_string_equal(res.reply, "451 4.7.1 Try again later");
	assert_non_null(strstr(res.error, "regular file"));
	scan_result_free(&res);
	pipeline_scan(p, &req, -1, &res);
	assert_int_equal(res.action, MW_TEMPFAIL);
	scan_result_free(&res);
	close(pfd[0]);
	close(pfd[1]);
	fd = memfd_of(clean_msg, strlen(clean_msg));
	pipeline_scan(p, &req, fd, &res);
	assert_int_equal(res.action, MW_ACCEPT);
	close(fd);
	scan_result_free(&res);
	scan_request_free(&req);
	pipeline_free(p);
}

static void test_load_errors(void **state)
{
	struct config cfg;
	char err[512];

	(void)state;
	cfg_init(&cfg, NULL);
	snprintf(cfg.plugins[0], sizeof(cfg.plugins[0]), "%s/does/not/exist.so word=x", tmpdir);
	assert_null(pipeline_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "/does/not/exist.so"));

	snprintf(cfg.plugins[0], sizeof(cfg.plugins[0]), "example_plugin.so");
	assert_null(pipeline_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "example_plugin.so"));

	snprintf(cfg.plugins[0], sizeof(cfg.plugins[0]), "/etc/passwd");
	assert_null(pipeline_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "/etc/passwd"));

	cfg_init(&cfg, "colour=blue");
	assert_null(pipeline_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, plugin_path));
	assert_non_null(strstr(err, "colour"));

	cfg_init(&cfg, "score=lots");
	assert_null(pipeline_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "score"));

	cfg_init(&cfg, "novalue");
	assert_null(pipeline_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "key=value"));

	/* the second of two plugins fails: the first is unloaded cleanly */
	cfg_init(&cfg, NULL);
	snprintf(cfg.plugins[1], sizeof(cfg.plugins[1]), "%s/nope.so", tmpdir);
	cfg.nplugins = 2;
	assert_null(pipeline_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "nope.so"));
}

static void test_two_instances(void **state)
{
	struct config cfg;
	struct scan_result res;

	(void)state;
	cfg_init(&cfg, "word=cheap score=1.5");
	snprintf(cfg.plugins[1], sizeof(cfg.plugins[1]), "%s word=viagra score=2.25", plugin_path);
	cfg.nplugins = 2;
	scan(&cfg, spam_msg, 0, &res);
	/* same symbol name twice: the first stays */
	assert_int_equal(res.nsymbols, 1);
	assert_true(res.score == 1.5);
	assert_int_equal(res.action, MW_ACCEPT);
	scan_result_free(&res);
}

/* --- the mw_* API checks, on a message state built by hand --------------- */

static int freed;
static void count_free(void *p)
{
	free(p);
	freed++;
}

static void test_filter_api(void **state)
{
	static const char msg[] = "Subject: one\r\nsubject: two\r\nX-A:  folded\r\n\tvalue \r\n\r\nbody";
	struct scan_request req;
	struct msgscan ms;
	struct mw_ctx ctx;
	char name[16];
	size_t len;
	int i;

	(void)state;
	req_init(&req, 1);
	memset(&ms, 0, sizeof(ms));
	ms.req = &req;
	ms.msg = (const unsigned char *)msg;
	ms.len = strlen(msg);
	msgscan_parse(&ms);
	memset(&ctx, 0, sizeof(ctx));
	ctx.ms = &ms;
	ctx.name = "tester";
	ctx.instance = &ms;

	/* reading */
	assert_ptr_equal(mw_instance(&ctx), &ms);
	assert_string_equal(mw_session_id(&ctx), "00000000000000aa");
	assert_string_equal(mw_listener(&ctx), "test");
	assert_int_equal(mw_direction(&ctx), MW_INBOUND);
	assert_string_equal(mw_client_ip(&ctx), "192.0.2.1");
	assert_int_equal(mw_client_port(&ctx), 4242);
	assert_string_equal(mw_helo(&ctx), "client.example");
	assert_string_equal(mw_mail_from(&ctx), "sender@example.org");
	assert_int_equal(mw_rcpt_count(&ctx), 2);
	assert_string_equal(mw_rcpt(&ctx, 1), "b@example.net");
	assert_null(mw_rcpt(&ctx, 2));
	assert_string_equal(mw_header(&ctx, "SUBJECT", 0), "one");
	assert_string_equal(mw_header(&ctx, "subject", 1), "two");
	assert_null(mw_header(&ctx, "subject", 2));
	assert_string_equal(mw_header(&ctx, "x-a", 0), "folded\tvalue");
	assert_null(mw_header(&ctx, "X-B", 0));
	assert_ptr_equal(mw_message(&ctx, &len), msg);
	assert_int_equal(len, strlen(msg));
	assert_int_equal(strcmp(msg + ms.body_off, "body"), 0);

	/* symbols: names checked, first one kept, capped */
	mw_symbol(&ctx, "GOOD_1", 1.0, "desc %d\x01\r\n", 5);
	mw_symbol(&ctx, "GOOD_1", 9.0, NULL);
	mw_symbol(&ctx, "lower", 1.0, NULL);
	mw_symbol(&ctx, "HAS SPACE", 1.0, NULL);
	mw_symbol(&ctx, "", 1.0, NULL);
	mw_symbol(&ctx, "A123456789012345678901234567890123456789012345678901234567890123", 1.0, NULL);
	mw_symbol(&ctx, "NAN_SCORE", 0.0 / 0.0, NULL);
	assert_int_equal(ms.nsymbols, 1);
	assert_true(ms.symbols[0].score == 1.0);
	assert_string_equal(ms.symbols[0].desc, "desc 5   ");
	assert_string_equal(ms.symbols[0].filter, "tester");
	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "S%d", i);
		mw_symbol(&ctx, name, 0.1, "%0600d", 1);	/* description cut at 512 */
	}
	assert_int_equal(ms.nsymbols, MW_MAX_SYMBOLS);
	assert_int_equal(strlen(ms.symbols[1].desc), MW_MAX_DESC);

	/* header edits */
	mw_header_add(&ctx, "X-Good", "value\twith tab \xc3\xa9");
	mw_header_add(&ctx, "X-Bad:", "v");
	mw_header_add(&ctx, "X Bad", "v");
	mw_header_add(&ctx, "", "v");
	mw_header_add(&ctx, "X-Inject", "a\r\nX-Evil: 1");
	mw_header_add(&ctx, "X-Fold", "a\r\n b");
	mw_header_add(&ctx, "X-Null", NULL);
	mw_header_add(&ctx, "X-Spam-Status", "No");	/* policy's field */
	mw_header_change(&ctx, "x-spam-flag", "NO");
	mw_header_remove(&ctx, "Received");
	mw_header_change(&ctx, "Subject", "new");
	{
		char longv[1000];

		memset(longv, 'v', sizeof(longv) - 1);
		longv[sizeof(longv) - 1] = '\0';
		mw_header_add(&ctx, "X-Long", longv);		/* over 998 */
		longv[998 - strlen("X-Long: ")] = '\0';
		mw_header_add(&ctx, "X-Long", longv);		/* exactly 998 */
	}
	assert_int_equal(ms.nedits, 4);
	assert_int_equal(ms.edits[0].op, HE_ADD);
	assert_string_equal(ms.edits[0].name, "X-Good");
	assert_int_equal(ms.edits[1].op, HE_REMOVE);
	assert_null(ms.edits[1].value);
	assert_int_equal(ms.edits[2].op, HE_CHANGE);
	assert_string_equal(ms.edits[3].name, "X-Long");
	for (i = 0; i < 100; i++)
		mw_header_add(&ctx, "X-Many", "1");
	assert_int_equal(ms.nedits, MW_MAX_EDITS);

	/* verdicts: the hardest wins, the first of equals keeps its text */
	mw_verdict(&ctx, MW_ACCEPT, "x");
	assert_int_equal(ms.hard, MW_ACCEPT);
	mw_verdict(&ctx, MW_TEMPFAIL, "Later");
	mw_verdict(&ctx, MW_TAG, "mild");
	assert_int_equal(ms.hard, MW_TEMPFAIL);
	assert_string_equal(ms.hard_text, "Later");
	mw_verdict(&ctx, MW_REJECT, "No\r\n250 OK");	/* bad text: verdict stands */
	assert_int_equal(ms.hard, MW_REJECT);
	assert_string_equal(ms.hard_text, "");
	mw_verdict(&ctx, MW_REJECT, "Other");
	assert_string_equal(ms.hard_text, "");
	assert_string_equal(ms.hard_by, "tester");
	mw_verdict(&ctx, (enum mw_action)99, NULL);
	assert_int_equal(ms.hard, MW_REJECT);

	/* per-message data: replaced data is freed, the rest at the end */
	freed = 0;
	mw_set_msgdata(&ctx, malloc(1), count_free);
	mw_set_msgdata(&ctx, malloc(1), count_free);
	assert_int_equal(freed, 1);
	assert_non_null(mw_msgdata(&ctx));
	mw_ctx_end(&ctx);
	assert_int_equal(freed, 2);
	assert_null(mw_msgdata(&ctx));

	/* time left: none outside a timed scan; what is left of it; 0 once
	 * passed, and then the filter that asked is noted as cut */
	{
		char out[128];

		deadline_end();
		assert_int_equal(mw_time_left_ms(&ctx), MW_NO_DEADLINE);
		deadline_begin(deadline_now_ms() + 5000);
		deadline_filter("tester");
		assert_in_range(mw_time_left_ms(&ctx), 4000, 5000);
		assert_int_equal(deadline_report(out, sizeof(out)), 0);
		deadline_begin(deadline_now_ms() - 1);
		deadline_filter("tester");
		assert_int_equal(mw_time_left_ms(&ctx), 0);
		assert_int_equal(deadline_report(out, sizeof(out)), 1);
		assert_string_equal(out, "tester=scan_deadline");
		deadline_end();
	}

	mw_log(&ctx, LOG_DEBUG, "a log line with \x1b[31m escapes");
	msgscan_free(&ms);
	scan_request_free(&req);
}

/* --- threads share one pipeline ------------------------------------------ */

struct tjob {
	struct pipeline *p;
	int bad;
};

static void *scan_thread(void *arg)
{
	struct tjob *t = arg;
	struct scan_request req;
	struct scan_result res;
	int i, fd;

	req_init(&req, 1);
	for (i = 0; i < 200; i++) {
		const char *m = (i % 2) ? spam_msg : clean_msg;

		fd = memfd_of(m, strlen(m));
		req.id = (uint64_t)i;
		pipeline_scan(t->p, &req, fd, &res);
		close(fd);
		if (res.id != (uint64_t)i || res.action != ((i % 2) ? MW_TAG : MW_ACCEPT))
			t->bad++;
		scan_result_free(&res);
	}
	scan_request_free(&req);
	return NULL;
}

/* outcome hook: what it was told */
static int told_taken = -1, told_calls;
static void note_outcome(void *data, int taken)
{
	free(data);
	told_taken = taken;
	told_calls++;
}

/* Session 19: of two tempfails whose texts say when to come back, the
 * later stands, whichever came first (greylisting's "1 seconds" beside a
 * rate limit's hour); a text saying none keeps the first-of-equals rule.
 * The outcome hook is told once, and "not taken" when the scan ends
 * without a word on it. */
static void test_verdict_waits_and_outcome(void **state)
{
	struct scan_request req;
	struct msgscan ms;
	struct mw_ctx gl, rl;

	(void)state;
	req_init(&req, 1);
	memset(&ms, 0, sizeof(ms));
	ms.req = &req;
	memset(&gl, 0, sizeof(gl));
	gl.ms = &ms;
	gl.name = "greylist";
	rl = gl;
	rl.name = "ratelimit";
	mw_verdict(&gl, MW_TEMPFAIL, "Greylisted, please try again in 1 seconds");
	mw_verdict(&rl, MW_TEMPFAIL, "Rate limit exceeded (sender), please try again in 65 minutes");
	assert_string_equal(ms.hard_text, "Rate limit exceeded (sender), please try again in 65 minutes");
	assert_string_equal(ms.hard_by, "ratelimit");
	mw_verdict(&gl, MW_TEMPFAIL, "Greylisted, please try again in 300 seconds");
	assert_string_equal(ms.hard_by, "ratelimit");               /* 300 s < 65 min */
	mw_verdict(&gl, MW_TEMPFAIL, "Greylisted, please try again in 2 hours");
	assert_string_equal(ms.hard_text, "Greylisted, please try again in 2 hours");
	mw_verdict(&rl, MW_TEMPFAIL, "Busy, please try again later");   /* says no time */
	assert_string_equal(ms.hard_by, "greylist");
	msgscan_free(&ms);
	memset(&ms, 0, sizeof(ms));
	ms.req = &req;
	mw_verdict(&gl, MW_TEMPFAIL, "Store down, please try again later");
	mw_verdict(&rl, MW_TEMPFAIL, "Rate limit exceeded (ip), please try again in 3 seconds");
	assert_string_equal(ms.hard_by, "greylist");                /* the first had no time */

	told_calls = 0;
	builtin_on_outcome(&rl, note_outcome, malloc(1));
	msgscan_outcome(&ms, 1);
	assert_int_equal(told_calls, 1);
	assert_int_equal(told_taken, 1);
	msgscan_outcome(&ms, 0);                                    /* told once only */
	assert_int_equal(told_calls, 1);
	builtin_on_outcome(&rl, note_outcome, malloc(1));
	msgscan_free(&ms);                                          /* untold: not taken */
	assert_int_equal(told_calls, 2);
	assert_int_equal(told_taken, 0);
	scan_request_free(&req);
}

static void test_threads(void **state)
{
	struct config cfg;
	struct tjob t[4];
	pthread_t th[4];
	char err[256];
	struct pipeline *p;
	int i;

	(void)state;
	cfg_init(&cfg, NULL);
	p = pipeline_new(&cfg, err, sizeof(err));
	assert_non_null(p);
	for (i = 0; i < 4; i++) {
		t[i].p = p;
		t[i].bad = 0;
		assert_int_equal(pthread_create(&th[i], NULL, scan_thread, &t[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].bad, 0);
	}
	pipeline_free(p);
}

/* --- the scanner process ------------------------------------------------- */

struct scanner_proc {
	pid_t pid;
	char path[108];
};

static void start_scanner(struct scanner_proc *sp, struct config *cfg)
{
	struct sockaddr_un sa;
	int lfd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sp->path, sizeof(sp->path), "%s/scanner.sock", tmpdir);
	unlink(sp->path);
	assert_true(strlen(sp->path) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, sp->path);
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(lfd, 16), 0);
	sp->pid = fork();
	assert_true(sp->pid >= 0);
	if (sp->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);	/* a failed test leaves nothing behind */
		_exit(scanner_main(cfg, lfd));
	}
	scanner_pid = sp->pid;
	close(lfd);
}

static int connect_scanner(const struct scanner_proc *sp)
{
	struct sockaddr_un sa;
	struct timeval tv = { 10, 0 };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, sp->path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));	/* a hang fails */
	return fd;
}

static int send_req(int fd, uint64_t id, const char *msg)
{
	struct scan_request req;
	int mfd, r;

	req_init(&req, id);
	mfd = memfd_of(msg, strlen(msg));
	r = scanproto_send_request(fd, &req, mfd);
	close(mfd);
	scan_request_free(&req);
	return r;
}

/* send_req_inline - the message in the request packet (no memfd), as the
 * proxy sends a small one */
static int send_req_inline(int fd, uint64_t id, const char *msg)
{
	struct scan_request req;
	int r;

	req_init(&req, id);
	req.msg = (const unsigned char *)msg;
	req.msg_len = strlen(msg);
	req.msg_inline = 1;
	r = scanproto_send_request(fd, &req, -1);
	scan_request_free(&req);
	return r;
}

static void recv_res(int fd, struct scan_result *res)
{
	int r;

	r = scanproto_recv_result(fd, res, 0);
	if (r != 1)
		fail_msg("scanproto_recv_result: %d (%s)", r, r < 0 ? strerror(errno) : "EOF");
}

static int stop_scanner(struct scanner_proc *sp)
{
	int st;

	scanner_pid = 0;
	kill(sp->pid, SIGTERM);
	assert_int_equal(waitpid(sp->pid, &st, 0), sp->pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_scanner_process(void **state)
{
	struct scanner_proc sp;
	struct scan_result res;
	struct config cfg;
	int fd, fd2, i, seen[6] = { 0 };

	(void)state;
	cfg_init(&cfg, NULL);
	start_scanner(&sp, &cfg);
	fd = connect_scanner(&sp);
	fd2 = connect_scanner(&sp);

	/* several requests, results matched by id */
	for (i = 1; i <= 5; i++)
		assert_int_equal(send_req(fd, (uint64_t)i, i % 2 ? spam_msg : clean_msg), 0);
	for (i = 1; i <= 5; i++) {
		recv_res(fd, &res);
		assert_true(res.id >= 1 && res.id <= 5);
		seen[res.id]++;
		assert_int_equal(res.action, res.id % 2 ? MW_TAG : MW_ACCEPT);
		scan_result_free(&res);
	}
	for (i = 1; i <= 5; i++)
		assert_int_equal(seen[i], 1);

	/* a malformed packet closes that connection only */
	assert_int_equal(send(fd2, "garbage", 7, MSG_NOSIGNAL), 7);
	assert_int_equal(scanproto_recv_result(fd2, &res, 0), 0);
	close(fd2);
	/* JSON, the format before the binary one, is refused as well */
	fd2 = connect_scanner(&sp);
	assert_int_equal(send(fd2, "{\"id\":9}", 8, MSG_NOSIGNAL), 8);
	assert_int_equal(scanproto_recv_result(fd2, &res, 0), 0);
	close(fd2);
	/* a request without a message (no fd, nothing inline) is malformed too */
	fd2 = connect_scanner(&sp);
	{
		struct scan_request req;
		struct sbuf enc;

		req_init(&req, 9);
		sbuf_init(&enc, 1 << 20);
		scan_request_encode(&enc, &req);
		assert_int_equal(scanproto_send_raw(fd2, enc.data, enc.len, -1, NULL, 0, 0), 0);
		sbuf_free(&enc);
		scan_request_free(&req);
	}
	assert_int_equal(scanproto_recv_result(fd2, &res, 0), 0);
	close(fd2);

	assert_int_equal(send_req(fd, 10, reject_msg), 0);
	recv_res(fd, &res);
	assert_true(res.id == 10);
	assert_int_equal(res.action, MW_REJECT);
	assert_string_equal(res.reply, "550 5.7.1 Message refused by example plugin");
	scan_result_free(&res);

	/* inline messages: scanned from the packet itself, same verdicts */
	assert_int_equal(send_req_inline(fd, 11, spam_msg), 0);
	recv_res(fd, &res);
	assert_true(res.id == 11);
	assert_int_equal(res.action, MW_TAG);
	scan_result_free(&res);
	assert_int_equal(send_req_inline(fd, 12, reject_msg), 0);
	recv_res(fd, &res);
	assert_true(res.id == 12);
	assert_int_equal(res.action, MW_REJECT);
	scan_result_free(&res);
	assert_int_equal(send_req_inline(fd, 13, clean_msg), 0);
	recv_res(fd, &res);
	assert_true(res.id == 13);
	assert_int_equal(res.action, MW_ACCEPT);
	scan_result_free(&res);
	/* an envelope-only request carrying a message is malformed */
	fd2 = connect_scanner(&sp);
	{
		struct scan_request req;
		struct sbuf enc;

		req_init(&req, 14);
		req.stage = SCAN_ENVELOPE;
		sbuf_init(&enc, 1 << 20);
		scan_request_encode(&enc, &req);
		assert_int_equal(scanproto_send_raw(fd2, enc.data, enc.len, -1, "x", 1, 1), 0);
		sbuf_free(&enc);
		scan_request_free(&req);
	}
	assert_int_equal(scanproto_recv_result(fd2, &res, 0), 0);
	close(fd2);

	assert_int_equal(stop_scanner(&sp), 0);
	close(fd);
}

/* a slow plugin (delay_ms) makes the queue fill up */
static void test_scanner_busy(void **state)
{
	struct scanner_proc sp;
	struct scan_result res;
	struct config cfg;
	int fd, i, busy = 0, done = 0;

	(void)state;
	cfg_init(&cfg, "delay_ms=300");
	cfg.scanner_threads = 1;
	cfg.scanner_queue = 1;
	start_scanner(&sp, &cfg);
	fd = connect_scanner(&sp);
	/* one running and one waiting fit; the other three are refused */
	for (i = 0; i < 5; i++)
		assert_int_equal(send_req(fd, (uint64_t)i, clean_msg), 0);
	for (i = 0; i < 5; i++) {
		recv_res(fd, &res);
		if (res.action == MW_TEMPFAIL) {
			assert_string_equal(res.error, "scanner busy");
			assert_string_equal(res.reply, "451 4.7.1 Try again later");
			busy++;
		} else {
			assert_int_equal(res.action, MW_ACCEPT);
			done++;
		}
		scan_result_free(&res);
	}
	assert_int_equal(done, 2);
	assert_int_equal(busy, 3);
	assert_int_equal(stop_scanner(&sp), 0);
	close(fd);
}

static double mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Idle workers read requests themselves; the loop reads only while none
 * is idle.  Both halves must hold: requests that come while every worker
 * is busy are read at once (queued, or refused as busy long before the
 * running scan ends), and requests that find workers idle run at the same
 * time, one per worker, also when they come one by one. */
static void test_scanner_readers(void **state)
{
	struct scanner_proc sp;
	struct scan_result res;
	struct config cfg;
	double t0, el;
	int fd, i;

	(void)state;
	cfg_init(&cfg, "delay_ms=600");
	cfg.scanner_threads = 1;
	cfg.scanner_queue = 1;
	start_scanner(&sp, &cfg);
	fd = connect_scanner(&sp);
	usleep(100 * 1000);		/* accepted: the loop saw the worker idle */
	t0 = mono_ms();
	assert_int_equal(send_req(fd, 1, clean_msg), 0);
	usleep(150 * 1000);		/* the only worker is scanning it now */
	assert_int_equal(send_req(fd, 2, clean_msg), 0);	/* queued */
	assert_int_equal(send_req(fd, 3, clean_msg), 0);	/* refused */
	recv_res(fd, &res);
	el = mono_ms() - t0;
	assert_true(res.id == 3);
	assert_string_equal(res.error, "scanner busy");
	assert_true(el < 450);		/* not when the worker is free again */
	scan_result_free(&res);
	for (i = 1; i <= 2; i++) {
		recv_res(fd, &res);
		assert_true(res.id == (uint64_t)i);
		assert_int_equal(res.action, MW_ACCEPT);
		scan_result_free(&res);
	}
	assert_int_equal(stop_scanner(&sp), 0);
	close(fd);

	cfg_init(&cfg, "delay_ms=400");
	cfg.scanner_threads = 3;
	cfg.scanner_queue = 1;
	start_scanner(&sp, &cfg);
	fd = connect_scanner(&sp);
	t0 = mono_ms();
	for (i = 1; i <= 3; i++) {
		assert_int_equal(send_req(fd, (uint64_t)i, clean_msg), 0);
		usleep(20 * 1000);
	}
	for (i = 1; i <= 3; i++) {
		recv_res(fd, &res);
		assert_int_equal(res.action, MW_ACCEPT);
		scan_result_free(&res);
	}
	el = mono_ms() - t0;
	assert_true(el < 1000);		/* three at once, not one after the other */
	assert_int_equal(stop_scanner(&sp), 0);
	close(fd);
}

/* SIGTERM: scans in flight finish and are answered, the front end's next
 * send fails (EPIPE), then EOF and exit 0 */
static void test_scanner_sigterm(void **state)
{
	struct scanner_proc sp;
	struct scan_result res;
	struct config cfg;
	int fd, st, i;

	(void)state;
	cfg_init(&cfg, "delay_ms=300");
	cfg.scanner_threads = 2;
	start_scanner(&sp, &cfg);
	fd = connect_scanner(&sp);
	for (i = 1; i <= 3; i++)
		assert_int_equal(send_req(fd, (uint64_t)i, spam_msg), 0);
	usleep(100 * 1000);
	kill(sp.pid, SIGTERM);
	usleep(100 * 1000);
	errno = 0;
	assert_int_equal(send_req(fd, 4, spam_msg), -1);
	assert_int_equal(errno, EPIPE);
	for (i = 1; i <= 3; i++) {
		recv_res(fd, &res);
		assert_int_equal(res.action, MW_TAG);
		scan_result_free(&res);
	}
	assert_int_equal(scanproto_recv_result(fd, &res, 0), 0);
	assert_int_equal(waitpid(sp.pid, &st, 0), sp.pid);
	scanner_pid = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(fd);

	/* the deadline: scans not started by then get "shutting down" */
	cfg_init(&cfg, "delay_ms=500");
	cfg.scanner_threads = 1;
	cfg.scanner_queue = 10;
	cfg.shutdown_timeout = 200;
	start_scanner(&sp, &cfg);
	fd = connect_scanner(&sp);
	for (i = 1; i <= 3; i++)
		assert_int_equal(send_req(fd, (uint64_t)i, spam_msg), 0);
	usleep(100 * 1000);
	kill(sp.pid, SIGTERM);
	for (i = 1; i <= 2; i++) {
		recv_res(fd, &res);
		assert_int_equal(res.action, MW_TEMPFAIL);
		assert_string_equal(res.error, "scanner shutting down");
		scan_result_free(&res);
	}
	assert_int_equal(waitpid(sp.pid, &st, 0), sp.pid);
	scanner_pid = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(fd);
}

/* reap - after each test: no scanner process survives a failed one */
static int reap(void **state)
{
	(void)state;
	if (scanner_pid > 0) {
		kill(scanner_pid, SIGKILL);
		waitpid(scanner_pid, NULL, 0);
		scanner_pid = 0;
	}
	return 0;
}

static int setup(void **state)
{
	(void)state;
	find_plugin();
	if (access(plugin_path, R_OK) != 0) {
		fprintf(stderr, "test_pipeline: plugin %s not found (build it: make, or set MW_PLUGIN)\n",
		    plugin_path);
		return -1;
	}
	/* last: a group setup that fails is not torn down */
	if (unit_tmpdir_setup(state) < 0)
		return -1;
	log_init("test_pipeline", 0, NULL, getenv("MW_TEST_DEBUG") ? LOG_DEBUG : LOG_ERR);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean_accept),
		cmocka_unit_test(test_subject_tag),
		cmocka_unit_test(test_reject_header),
		cmocka_unit_test(test_plugin_args),
		cmocka_unit_test(test_work_cut_at_deadline),
		cmocka_unit_test(test_quarantine),
		cmocka_unit_test(test_odd_messages),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_two_instances),
		cmocka_unit_test(test_filter_api),
		cmocka_unit_test(test_verdict_waits_and_outcome),
		cmocka_unit_test(test_threads),
		cmocka_unit_test_teardown(test_scanner_process, reap),
		cmocka_unit_test_teardown(test_scanner_busy, reap),
		cmocka_unit_test_teardown(test_scanner_readers, reap),
		cmocka_unit_test_teardown(test_scanner_sigterm, reap),
	};

	return cmocka_run_group_tests(tests, setup, unit_tmpdir_teardown);
}
