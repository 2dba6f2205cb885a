/* clamav.c - the built-in "clamav" filter: libclamav in the scanner process.
 *
 * One engine per scanner process, loaded and compiled once from
 * av_database in setup(), then shared read-only by every worker thread
 * (libclamav allows concurrent scans on one compiled engine).  Each message
 * is scanned whole, as the RFC 5322 text it is, from memory (an fmap over
 * the pipeline's buffer: no copy, no temp file of ours), with mail parsing
 * and every other parser on: clamav's own MIME decoder finds the parts,
 * unpacks archives, renders HTML, looks into PDF and OLE2.  What it has no
 * parser for (the message inside S/MIME opaque signed-data) is taken out
 * and scanned after it, on the same engine (av_scan_message, av.c), and so
 * is each leaf as GMime decoded it, since clamav's parser may split the
 * message elsewhere than mail programs (its clean cache answers the leaves
 * it did see).
 *
 * The scan options are one constant (scan_options below) for the life of
 * the process, and the limits are fixed per engine: libclamav's clean-
 * result cache is keyed by content alone (LIBRARIES.md section 4), so it
 * must never see scans made with different options, and here it cannot.
 * A configuration reload is a new scanner process with a new engine.
 *
 * Signature reload.  SIGHUP makes the master start a new scanner
 * generation (proxy/master.c): that process builds its own engine before
 * it serves; the old one keeps its engine until its scans are answered.
 * A change of the database directory while the process runs (freshclam,
 * an admin copying a .ndb) is found by a watcher thread every
 * av_db_check_interval (cl_statchkdir), which loads and compiles a new
 * engine off the scan path and swaps it in; scans already running keep the
 * engine they took (a reference each), and the old engine is freed by its
 * last user.  A database that fails to load keeps the running engine.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <clamav.h>

#include "filters/av.h"
#include "filters/builtin.h"
#include "proxy/log.h"
#include "proxy/sbuf.h"
#include "proxy/thread.h"

struct engine {
	struct cl_engine *cl;      /* owned */
	unsigned     refs;         /* under inst->lock: the instance's + one per scan */
	unsigned     signatures;
	unsigned long long generation;
};

struct clamav {
	const struct config *cfg;  /* borrowed (outlives the pipeline) */
	pthread_mutex_t lock;      /* guards cur and refs of every engine */
	struct engine  *cur;       /* the engine new scans take */
	struct cl_stat  dbstat;    /* the database as last loaded */
	int             have_stat;  /* av_database is a directory we could stat */
	int             retry;      /* the last reload failed (watcher thread only) */
	pthread_t       watcher;
	int             have_watcher;
	pthread_cond_t  stop_cond;
	int             stopping;  /* under lock */
	char            label[96]; /* "ClamAV 1.4.6/sigs" for X-Virus-Scanned */
};

/* One set of options for every scan of the process (see the file comment). */
static const struct cl_scan_options scan_options_init = {
	.general   = CL_SCAN_GENERAL_HEURISTICS,
	.parse     = ~0u,
	.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX,
	.mail      = 0,
	.dev       = 0,
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static cl_error_t init_rc;

/* The first error libclamav reported on this thread during the current
 * scan.  libclamav may log an error and still answer CL_CLEAN: a temp
 * directory that vanished (a tmpfs cleaned under it) or a full disk make
 * every attachment unscannable, and the message "clean".  Its message
 * callback carries no per-scan context, but it runs on the scanning
 * thread, so a thread-local slot ties the error to the scan. */
static _Thread_local char *scan_error;   /* points into the scan's buffer, or NULL */
static _Thread_local size_t scan_error_len;

/* libclamav's own messages go to our log (not to stderr, unlabelled) */
static void clamav_msg(enum cl_msg severity, const char *fullmsg, const char *msg, void *context)
{
	int len;

	(void)fullmsg;
	(void)context;
	if (msg == NULL)
		return;
	len = (int)strcspn(msg, "\n");
	if (len > 300)
		len = 300;
	if (severity >= CL_MSG_ERROR && scan_error != NULL && scan_error[0] == '\0')
		snprintf(scan_error, scan_error_len, "%.*s", len, msg);
	slog(NULL, severity >= CL_MSG_ERROR ? LOG_ERR : severity >= CL_MSG_WARN ? LOG_WARNING
	    : LOG_DEBUG, "libclamav: %.*s", len, msg);
}

static void clamav_global_init(void)
{
	cl_set_clcb_msg(clamav_msg);
	init_rc = cl_init(CL_INIT_DEFAULT);
}

static int set_num(struct cl_engine *e, enum cl_engine_field f, long long v,
                   const char *what, char *err, size_t errlen)
{
	cl_error_t rc = cl_engine_set_num(e, f, v);

	if (rc != CL_SUCCESS) {
		snprintf(err, errlen, "%s: %s", what, cl_strerror(rc));
		return -1;
	}
	return 0;
}

/* What one scan found, filled by found_cb: the name is copied while
 * libclamav still owns it (a heuristic's name does not outlive the scan). */
struct scan_found {
	char name[160];
};

static void found_cb(int fd, const char *virname, void *context)
{
	struct scan_found *f = context;

	(void)fd;
	if (f != NULL && virname != NULL && f->name[0] == '\0')
		snprintf(f->name, sizeof(f->name), "%s", virname);
}

/* engine_build - a new compiled engine from the configured database.
 * NULL with a one-line reason. */
static struct engine *engine_build(const struct config *cfg, char *err, size_t errlen)
{
	struct cl_engine *e = cl_engine_new();
	unsigned sigs = 0;
	cl_error_t rc;
	struct engine *en;

	if (e == NULL) {
		snprintf(err, errlen, "cl_engine_new failed");
		return NULL;
	}
	if ((cfg->av_max_scansize && set_num(e, CL_ENGINE_MAX_SCANSIZE,
	        (long long)cfg->av_max_scansize, "av_max_scansize", err, errlen) < 0)
	    || (cfg->av_max_filesize && set_num(e, CL_ENGINE_MAX_FILESIZE,
	        (long long)cfg->av_max_filesize, "av_max_filesize", err, errlen) < 0)
	    || set_num(e, CL_ENGINE_MAX_RECURSION, cfg->av_max_recursion, "av_max_recursion",
	        err, errlen) < 0
	    || set_num(e, CL_ENGINE_MAX_FILES, cfg->av_max_files, "av_max_files", err, errlen) < 0
	    || set_num(e, CL_ENGINE_MAX_SCANTIME, cfg->av_max_scantime, "av_max_scantime",
	        err, errlen) < 0)
		goto fail;
	if (cfg->av_tmpdir[0] && (rc = cl_engine_set_str(e, CL_ENGINE_TMPDIR, cfg->av_tmpdir))
	    != CL_SUCCESS) {
		snprintf(err, errlen, "av_tmpdir %s: %s", cfg->av_tmpdir, cl_strerror(rc));
		goto fail;
	}
	rc = cl_load(cfg->av_database, e, &sigs, CL_DB_STDOPT);
	if (rc != CL_SUCCESS) {
		snprintf(err, errlen, "av_database %s: %s", cfg->av_database, cl_strerror(rc));
		goto fail;
	}
	if (sigs == 0) {
		/* an empty engine passes everything: refuse rather than pretend */
		snprintf(err, errlen, "av_database %s: no signatures", cfg->av_database);
		goto fail;
	}
	if ((rc = cl_engine_compile(e)) != CL_SUCCESS) {
		snprintf(err, errlen, "compile %s: %s", cfg->av_database, cl_strerror(rc));
		goto fail;
	}
	cl_engine_set_clcb_virus_found(e, found_cb);
	en = xcalloc(1, sizeof(*en));
	en->cl = e;
	en->refs = 1;
	en->signatures = sigs;
	return en;
fail:
	cl_engine_free(e);
	return NULL;
}

/* engine_take - the current engine, with a reference for one scan */
static struct engine *engine_take(struct clamav *c)
{
	struct engine *en;

	pthread_mutex_lock(&c->lock);
	en = c->cur;
	en->refs++;
	pthread_mutex_unlock(&c->lock);
	return en;
}

/* engine_drop - give a reference back; the last one frees the engine */
static void engine_drop(struct clamav *c, struct engine *en)
{
	unsigned left;

	pthread_mutex_lock(&c->lock);
	left = --en->refs;
	pthread_mutex_unlock(&c->lock);
	if (left == 0) {
		cl_engine_free(en->cl);
		free(en);
	}
}

/* db_changed - has anything in the database directory changed since the
 * last load (compared against the stat taken before that load), or did the
 * last reload fail (a file still being written: try again)? */
static int db_changed(struct clamav *c)
{
	return c->retry || (c->have_stat && cl_statchkdir(&c->dbstat) == 1);
}

static void db_stat(struct clamav *c)
{
	if (c->have_stat)
		cl_statfree(&c->dbstat);
	memset(&c->dbstat, 0, sizeof(c->dbstat));
	c->have_stat = cl_statinidir(c->cfg->av_database, &c->dbstat) == CL_SUCCESS;
}

/* reload - build a new engine and swap it in; the old one goes with its
 * last scan.  Called from the watcher thread only. */
static void reload(struct clamav *c)
{
	struct engine *en, *old;
	char err[400];

	/* the stat first: a change made while we load is seen next time */
	db_stat(c);
	if ((en = engine_build(c->cfg, err, sizeof(err))) == NULL) {
		slog(NULL, LOG_ERR, "clamav: database changed but cannot be loaded, keeping "
		    "the running engine (retrying every av_db_check_interval): %s", err);
		c->retry = 1;
		return;
	}
	c->retry = 0;
	pthread_mutex_lock(&c->lock);
	old = c->cur;
	en->generation = old->generation + 1;
	c->cur = en;
	pthread_mutex_unlock(&c->lock);
	slog(NULL, LOG_NOTICE, "clamav: database %s reloaded: %u signatures (engine %llu)",
	    c->cfg->av_database, en->signatures, en->generation);
	engine_drop(c, old);
}

static void *watcher(void *arg)
{
	struct clamav *c = arg;
	struct timespec until;
	unsigned ms = c->cfg->av_db_check_interval;

	pthread_mutex_lock(&c->lock);
	while (!c->stopping) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += ms / 1000;
		until.tv_nsec += (long)(ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!c->stopping && pthread_cond_timedwait(&c->stop_cond, &c->lock, &until) == 0)
			;
		if (c->stopping)
			break;
		pthread_mutex_unlock(&c->lock);
		if (db_changed(c))
			reload(c);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void clamav_fini(void *instance)
{
	struct clamav *c = instance;

	if (c == NULL)
		return;
	if (c->have_watcher) {
		pthread_mutex_lock(&c->lock);
		c->stopping = 1;
		pthread_cond_signal(&c->stop_cond);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->watcher, NULL);
	}
	if (c->cur != NULL)
		engine_drop(c, c->cur);
	if (c->have_stat)
		cl_statfree(&c->dbstat);
	pthread_cond_destroy(&c->stop_cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static int clamav_setup(void **instance, const struct scan_env *env, char *err, size_t errlen)
{
	struct clamav *c;
	pthread_condattr_t ca;

	pthread_once(&init_once, clamav_global_init);
	if (init_rc != CL_SUCCESS) {
		snprintf(err, errlen, "cl_init: %s", cl_strerror(init_rc));
		return -1;
	}
	if (env->cfg->av_tmpdir[0] && access(env->cfg->av_tmpdir, W_OK | X_OK) != 0) {
		snprintf(err, errlen, "av_tmpdir %s: %s", env->cfg->av_tmpdir, strerror(errno));
		return -1;
	}
	c = xcalloc(1, sizeof(*c));
	c->cfg = env->cfg;
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->stop_cond, &ca);
	pthread_condattr_destroy(&ca);
	db_stat(c);
	if ((c->cur = engine_build(c->cfg, err, errlen)) == NULL) {
		clamav_fini(c);
		return -1;
	}
	snprintf(c->label, sizeof(c->label), "ClamAV %s (libclamav)", cl_retver());
	slog(NULL, LOG_INFO, "clamav: %u signatures from %s", c->cur->signatures,
	    c->cfg->av_database);
	if (c->cfg->av_db_check_interval > 0) {
		/* signals stay with the scanner's loop thread */
		c->have_watcher = thread_start_blocked(&c->watcher, watcher, c) == 0;
		if (!c->have_watcher) {
			snprintf(err, errlen, "cannot start the database watcher thread");
			clamav_fini(c);
			return -1;
		}
	}
	*instance = c;
	return 0;
}

struct one_scan {
	struct clamav *c;
	struct engine *en;          /* one engine for all the scans of a message */
};

/* clamav_scan - one buffer through the engine (av_scanner.scan) */
static enum av_result clamav_scan(void *arg, const unsigned char *d, size_t n, const char *name,
                                  char *out, size_t outsz, uint64_t *counted)
{
	struct one_scan *o = arg;
	struct cl_scan_options opts = scan_options_init;
	const char *virname = NULL;
	unsigned long scanned = 0;
	char lib_error[320];
	struct scan_found found;
	cl_fmap_t *map;
	cl_error_t rc;

	*counted = 0;
	if (n == 0)
		return AV_CLEAN;
	if ((map = cl_fmap_open_memory(d, n)) == NULL) {
		snprintf(out, outsz, "cannot map the message");
		return AV_FAILED;
	}
	memset(&found, 0, sizeof(found));
	lib_error[0] = '\0';
	scan_error = lib_error;
	scan_error_len = sizeof(lib_error);
	rc = cl_scanmap_callback(map, name, &virname, &scanned, o->en->cl, &opts, &found);
	scan_error = NULL;
	cl_fmap_close(map);
	/* what libclamav counts toward its scan size, in its blocks */
	*counted = (uint64_t)scanned * CL_COUNT_PRECISION;
	if (rc == CL_VIRUS) {
		snprintf(out, outsz, "%s", found.name[0] != '\0' ? found.name
		    : virname != NULL ? virname : "");
		return av_limit_name(out) ? AV_LIMIT : AV_VIRUS;
	}
	if (rc == CL_CLEAN && lib_error[0] != '\0') {
		/* "clean" after an error is no verdict (see scan_error) */
		snprintf(out, outsz, "libclamav: %s", lib_error);
		return AV_FAILED;
	}
	if (rc == CL_CLEAN)
		return AV_CLEAN;
	if (rc == CL_ETIMEOUT || rc == CL_EMAXSIZE || rc == CL_EMAXREC || rc == CL_EMAXFILES) {
		snprintf(out, outsz, "scan limit: %s", cl_strerror(rc));
		return AV_LIMIT;
	}
	snprintf(out, outsz, "libclamav: %s", cl_strerror(rc));
	return AV_FAILED;
}

static void clamav_eom(struct mw_ctx *ctx)
{
	struct clamav *c = mw_instance(ctx);
	struct one_scan o = { .c = c };
	struct av_scanner s = { .label = c->label, .arg = &o, .scan = clamav_scan };

	o.en = engine_take(c);
	av_scan_message(ctx, c->cfg, &s);
	engine_drop(c, o.en);
}

static const struct mw_filter_ops clamav_ops = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "clamav",
	.fini = clamav_fini,
	.on_eom = clamav_eom,
};

const struct builtin_filter builtin_clamav = {
	.name = "clamav",
	.ops = &clamav_ops,
	.setup = clamav_setup,
};
