/* scan_cmd.c - "mailwarden scan": run the filter pipeline in-process over
 * one message file and print the result as JSON.
 *
 * Why in-process and through a memfd: it must be the same code path as
 * the scanner (pipeline_scan over a mapped spool), so what an admin sees
 * here is what the daemon would decide; only the quarantine store is
 * skipped (dry run), since nothing is being delivered.
 *
 * Files saved by MUAs and mbox tools have LF line ends and maybe an mbox
 * "From " separator line; the spool the proxy hands the scanner has CRLF
 * and no separator, so the file is brought to that form first.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "filters/msgfile.h"
#include "filters/pipeline.h"
#include "filters/scanner.h"
#include "proxy/as_user.h"
#include "proxy/fdio.h"
#include "proxy/header_edit.h"
#include "proxy/master.h"
#include "proxy/safe_open.h"
#include "proxy/sbuf.h"
#include "proxy/scanproto.h"
#include "proxy/spool.h"
#include "proxy/utf8.h"

static const char scan_usage[] =
	"usage: mailwarden scan [-c FILE] [-o name=value]... [--from ADDR] [--rcpt ADDR]...\n"
	"                       [--client-ip IP] [--helo NAME] [--direction inbound|outbound]\n"
	"                       [--output OUT.eml] FILE.eml|-\n"
	"--output: write the message as it would be relayed (header edits, signatures,\n"
	"a replaced attachment; CRLF lines) when the action delivers it (accept, tag)\n";

/* write_relayed - the message as a front end would relay it (the header
 * section with the result's edits, then the rewritten body if there is
 * one, else the spool's) into path, or into to (>= 0: a memfd the root
 * parent copies to path).  0 / -1 (said on stderr). */
static int write_relayed(const char *path, int to, const struct sbuf *spool, const struct scan_result *res)
{
	const char *msg = spool->data ? spool->data : "";
	struct sbuf hdr;
	size_t rest;
	struct safe_output so = { .fd = -1, .dirfd = -1 };
	int fd, bad, e = 0;
	char why[200] = "";

	sbuf_init(&hdr, SIZE_MAX / 4);
	rest = header_edits_apply(msg, spool->len, res->edits, res->nedits, &hdr);
	fd = to >= 0 ? dup(to) : safe_open_output(path, &so, why, sizeof(why));
	bad = fd < 0 || fd_write_all(fd, hdr.data ? hdr.data : "", hdr.len) < 0;
	if (!bad && res->new_body) {
		char buf[65536];
		off_t off = 0;
		ssize_t n;

		while ((n = pread(res->new_body_fd, buf, sizeof(buf), off)) > 0 && !bad) {
			bad = fd_write_all(fd, buf, (size_t)n) < 0;
			off += n;
		}
		bad |= n < 0;
	} else if (!bad)
		bad = fd_write_all(fd, msg + rest, spool->len - rest) < 0;
	if (bad)
		e = errno;
	if (fd >= 0 && close(fd) < 0 && !bad) {
		bad = 1;
		e = errno;
	}
	sbuf_free(&hdr);
	if (bad) {
		fprintf(stderr, "mailwarden scan: --output %s: %s\n", path, fd < 0 && why[0] ? why : strerror(e));
		/* a cut-off message must not pass for the whole one (never
		 * unlinked through a symlink: /dev/stdout is one) */
		if (to >= 0)
			(void)!ftruncate(to, 0);
		else if (fd >= 0)
			(void)safe_output_unlink(&so);
	}
	safe_output_done(&so);
	return bad ? -1 : 0;
}

/* opt_value - "--name value" or "--name=value": 1 with *val (advancing
 * *i past a separate value), 0 if argv[*i] is another option, -1 if the
 * value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
	size_t n = strlen(name);
	const char *a = argv[*i];

	if (strncmp(a, name, n) != 0 || (a[n] != '=' && a[n] != '\0'))
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

/* copy_out - the memfd's content into path (the admin's, written as
 * root, so opened by safe_open_output: no symlink or hard link another
 * user planted is followed): 0 / -1 (said) */
static int copy_out(int from, const char *path)
{
	char buf[65536], why[200] = "";
	off_t off = 0;
	ssize_t n;
	struct safe_output so;
	int fd = safe_open_output(path, &so, why, sizeof(why)), bad = fd < 0, e = errno;

	while (!bad && (n = pread(from, buf, sizeof(buf), off)) != 0) {
		bad = n < 0 || fd_write_all(fd, buf, (size_t)n) < 0;
		e = errno;
		off += n;
	}
	if (fd >= 0 && close(fd) < 0 && !bad) {
		bad = 1;
		e = errno;
	}
	if (bad) {
		fprintf(stderr, "mailwarden scan: --output %s: %s\n", path, fd < 0 && why[0] ? why : strerror(e));
		if (fd >= 0)
			(void)safe_output_unlink(&so);
	}
	safe_output_done(&so);
	return bad ? -1 : 0;
}

/* one scan: the message (mfd, sealed; spool its bytes) through the
 * filters, the result as JSON on stdout, and with --output the message as
 * it would be relayed (into relayed, >= 0, for root to write) */
struct scan_job {
	struct config *cfg;
	const struct scan_request *req;
	int mfd;
	const struct sbuf *spool;
	const char *output;
	int relayed;
	int written;            /* output was written (by this process) */
	int failed;             /* writing it failed (said; nothing of it left) */
};

/* scan_run - the scan: its exit code (0 / 1, said on stderr) */
static int scan_run(struct scan_job *job)
{
	struct scan_result res;
	struct pipeline *p;
	struct sbuf out;
	const char *text;
	char err[512];
	size_t tlen;
	json_object *j;
	int rc = 0;

	p = pipeline_new(job->cfg, err, sizeof(err));
	if (p == NULL) {
		fprintf(stderr, "mailwarden scan: %s\n", err);
		return 1;
	}
	pipeline_scan_ex(p, job->req, job->mfd, PIPELINE_DRY_RUN, &res);
	if (job->output != NULL && (res.action == MW_ACCEPT || res.action == MW_TAG)) {
		if (write_relayed(job->output, job->relayed, job->spool, &res) < 0) {
			rc = 1;
			job->failed = job->relayed < 0;
		}
		else
			job->written = job->relayed < 0;    /* a memfd: root writes the file */
	}

	j = scan_result_to_json(&res);
	text = json_object_to_json_string_length(j,
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE, &tlen);
	sbuf_init(&out, SIZE_MAX / 4);
	/* valid UTF-8, and no C1 or bidi control from the message (a symbol's
	 * description quotes a file name, a Subject) acting on the terminal
	 * of whoever runs it (root, or a user with a mail from outside):
	 * json-c escapes C0 only */
	(void)utf8_term_sbuf(&out, text, tlen, 1);
	sbuf_addc(&out, '\n');
	if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
		fprintf(stderr, "mailwarden scan: stdout: %s\n", strerror(errno));
		rc = 1;
	}
	sbuf_free(&out);
	json_object_put(j);
	if (res.error[0] != '\0') {
		struct sbuf esc;

		sbuf_init(&esc, SIZE_MAX / 4);
		(void)utf8_term_sbuf(&esc, res.error, strlen(res.error), 0);
		fprintf(stderr, "mailwarden scan: scan failed: %.*s\n", (int)esc.len, esc.data ? esc.data : "");
		sbuf_free(&esc);
		rc = 1;
	}
	scan_result_free(&res);
	pipeline_free(p);
	return rc;
}

static int scan_child(void *arg, char *err, size_t errlen)
{
	return scan_run(arg);
}

/* scan_as_user - the scan in a child dropped to pv (with --output, the
 * relayed message comes back in a memfd, written by root to the file
 * once the child went through whole): its exit code */
static int scan_as_user(const struct privs *pv, struct scan_job *job)
{
	char err[256];
	int status, rc;

	if (job->output != NULL && (job->relayed = memfd_create("mailwarden-relayed", MFD_CLOEXEC)) < 0) {
		fprintf(stderr, "mailwarden scan: memfd: %s\n", strerror(errno));
		return 1;
	}
	if (run_as_user(pv, scan_child, job, NULL, NULL, &status, err, sizeof(err)) < 0) {
		fprintf(stderr, "mailwarden scan: %s\n", err);
		rc = 1;
		goto out;
	}
	/* the child says nothing in err but why it could not drop */
	if (err[0] != '\0')
		fprintf(stderr, "mailwarden scan: user: %s\n", err);
	rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
	if (!WIFEXITED(status))
		fprintf(stderr, "mailwarden scan: the scan (as the user) died of signal %d\n", WTERMSIG(status));
	/* written only when the action delivers and the child went through
	 * whole: one that died or failed may have left half a message */
	if (rc == 0 && job->relayed >= 0 && lseek(job->relayed, 0, SEEK_END) > 0) {
		if (copy_out(job->relayed, job->output) < 0) {
			rc = 1;
			job->failed = 1;
		} else
			job->written = 1;
	}
out:
	if (job->relayed >= 0)
		close(job->relayed);
	return rc;
}

/* drop_stale_output - path (--output) after a scan that did not write it
 * (the action does not deliver, or the scan failed): an OUT.eml an
 * earlier scan left there is removed, or it passes for this message's
 * (`scan --output out.eml in.eml && deliver out.eml` handed on the
 * previous message after a quarantine, exit 0).  Only a regular file
 * (not a FIFO, a device or a symlink such as /dev/stdout, which may lead
 * to a file not ours to remove); when it is the message file itself
 * (in: its stat, or NULL) it is left, and said.  0, or -1 (said on
 * stderr: the exit status is then 1, so that no script takes the file). */
static int drop_stale_output(const char *path, const struct stat *in)
{
	struct stat st;
	char leaf[256], why[200];
	int dirfd, rc = 0;

	/* the directory walked as for writing (no symlink another user
	 * planted on the way), the entry removed from that directory */
	dirfd = safe_output_dir(path, leaf, sizeof(leaf), why, sizeof(why));
	if (dirfd < 0) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, "mailwarden scan: --output %s: %s\n", path, why);
		return -1;
	}
	if (fstatat(dirfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT) {
			fprintf(stderr, "mailwarden scan: --output %s: %s\n", path, strerror(errno));
			rc = -1;
		}
	} else if (!S_ISREG(st.st_mode))
		rc = 0;
	else if (in != NULL && st.st_dev == in->st_dev && st.st_ino == in->st_ino) {
		fprintf(stderr, "mailwarden scan: --output %s is the message file: not written "
		    "(the action does not deliver it), left as it is\n", path);
		rc = -1;
	} else if (unlinkat(dirfd, leaf, 0) < 0) {
		fprintf(stderr, "mailwarden scan: --output %s: an earlier one could not be removed: %s\n",
		    path, strerror(errno));
		rc = -1;
	}
	close(dirfd);
	return rc;
}

int scan_command(struct config *cfg, int argc, char **argv)
{
	struct scan_request req;
	struct scan_job job;
	struct privs pv = { 0 };
	struct sbuf raw, spool;
	const char *file = NULL, *output = NULL, *v;
	unsigned char rnd[8];
	char err[512];
	struct stat in_st;
	int i, r, fd, mfd, rc, opts_done = 0, have_in;

	memset(&req, 0, sizeof(req));
	req.id = 1;
	req.listener = xstrdup(SCAN_LISTENER_CLI);
	req.direction = MW_INBOUND;
	req.client_ip = xstrdup("");
	req.client_name = xstrdup("");
	req.helo = xstrdup("");
	req.mail_from = xstrdup("");
	req.mail_params = xstrdup("");
	req.auth_user = xstrdup("");
	req.tls = xstrdup("");
	req.rcpts = xcalloc(1, sizeof(char *));

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (opts_done || a[0] != '-' || strcmp(a, "-") == 0) {
			if (file != NULL) {
				fprintf(stderr, "mailwarden scan: one message file only (\"%s\" and \"%s\")\n",
				    file, a);
				goto fail;
			}
			file = a;
		} else if (strcmp(a, "--") == 0)
			opts_done = 1;
		else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(scan_usage, stdout);
			scan_request_free(&req);
			return 0;
		} else if ((r = opt_value(argc, argv, &i, "--from", &v)) != 0) {
			if (r < 0)
				goto missing;
			free(req.mail_from);
			req.mail_from = xstrdup(v);
		} else if ((r = opt_value(argc, argv, &i, "--rcpt", &v)) != 0) {
			if (r < 0)
				goto missing;
			req.rcpts = xrealloc(req.rcpts, (req.nrcpts + 1) * sizeof(char *));
			req.rcpts[req.nrcpts++] = xstrdup(v);
		} else if ((r = opt_value(argc, argv, &i, "--client-ip", &v)) != 0) {
			if (r < 0)
				goto missing;
			free(req.client_ip);
			req.client_ip = xstrdup(v);
		} else if ((r = opt_value(argc, argv, &i, "--helo", &v)) != 0) {
			if (r < 0)
				goto missing;
			free(req.helo);
			req.helo = xstrdup(v);
		} else if ((r = opt_value(argc, argv, &i, "--output", &v)) != 0) {
			if (r < 0)
				goto missing;
			output = v;
		} else if ((r = opt_value(argc, argv, &i, "--direction", &v)) != 0) {
			if (r < 0)
				goto missing;
			if (strcmp(v, "inbound") == 0)
				req.direction = MW_INBOUND;
			else if (strcmp(v, "outbound") == 0)
				req.direction = MW_OUTBOUND;
			else {
				fprintf(stderr, "mailwarden scan: --direction: \"%s\" is not inbound or outbound\n", v);
				goto fail;
			}
		} else {
			fprintf(stderr, "mailwarden scan: unknown option \"%s\" (see mailwarden scan --help)\n", a);
			goto fail;
		}
	}
	if (file == NULL) {
		fprintf(stderr, "mailwarden scan: no message file given (see mailwarden scan --help)\n");
		goto fail;
	}
	if (getrandom(rnd, sizeof(rnd), 0) == (ssize_t)sizeof(rnd))
		snprintf(req.session_id, sizeof(req.session_id), "%02x%02x%02x%02x%02x%02x%02x%02x",
		    rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	else
		snprintf(req.session_id, sizeof(req.session_id), "%016llx",
		    (unsigned long long)getpid());

	/* the message, as a spool */
	fd = strcmp(file, "-") == 0 ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "mailwarden scan: %s: %s\n", file, strerror(errno));
		scan_request_free(&req);
		return 1;
	}
	have_in = fstat(fd, &in_st) == 0;
	sbuf_init(&raw, SIZE_MAX / 4);
	if (msgfile_read_fd(fd, &raw) < 0) {
		fprintf(stderr, "mailwarden scan: %s: %s\n", file, strerror(errno));
		if (fd != STDIN_FILENO)
			close(fd);
		sbuf_free(&raw);
		scan_request_free(&req);
		return 1;
	}
	if (fd != STDIN_FILENO)
		close(fd);
	sbuf_init(&spool, SIZE_MAX / 4);
	msgfile_to_spool(raw.data ? raw.data : "", raw.len, &spool);
	sbuf_free(&raw);
	req.size = spool.len;
	if ((mfd = spool_sealed_copy(spool.data ? spool.data : "", spool.len)) < 0) {
		fprintf(stderr, "mailwarden scan: memfd: %s\n", strerror(errno));
		sbuf_free(&spool);
		scan_request_free(&req);
		return 1;
	}

	/* root with a "user": the scan runs as that user, in a child, as the
	 * daemon's scanner does.  The same decision, and it can load the
	 * compiled rules the daemon wrote: root may not (Hyperscan trusts a
	 * database as code, and the user could have written anything there),
	 * and compiling them again takes minutes.  The message was read as
	 * root; the relayed copy comes back through a memfd for root to
	 * write. */
	job = (struct scan_job){ cfg, &req, mfd, &spool, output, -1, 0, 0 };
	if (geteuid() == 0 && cfg->user[0] != '\0' && privs_lookup(cfg->user, &pv, err, sizeof(err)) < 0) {
		fprintf(stderr, "mailwarden scan: %s\n", err);
		rc = 1;
	} else
		rc = pv.drop ? scan_as_user(&pv, &job) : scan_run(&job);
	if (output != NULL && !job.written && !job.failed && drop_stale_output(output, have_in ? &in_st : NULL) < 0)
		rc = 1;
	close(mfd);
	sbuf_free(&spool);
	scan_request_free(&req);
	return rc;
missing:
	fprintf(stderr, "mailwarden scan: %s needs a value\n", argv[i]);
fail:
	scan_request_free(&req);
	return 1;
}
