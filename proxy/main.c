/* main.c - mailwarden's command line: the daemon, "-t", and the
 * subcommands.  Every mode reads the same config (-c FILE, embedded
 * defaults without it) and accepts the same -o name=value overrides. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filters/bayes.h"
#include "filters/deadline.h"
#include "filters/pipeline.h"
#include "filters/scanner.h"
#include "as_user.h"
#include "log.h"
#include "master.h"
#include "milter.h"
#include "quarantine_cmd.h"
#include "sbuf.h"
#include "stats.h"
#include "tls.h"

#define MAX_OVERRIDES 256
/* a proxy session: its client, its upstream, and a spool file once a
 * message outgrows spool_memory_max (2 measured for a small one in DATA) */
#define DESCRIPTORS_PER_SESSION 3

static void usage(FILE *out)
{
	fprintf(out,
		"usage: mailwarden [-f] [-c FILE] [-o name=value]... [--listen ADDR:PORT --upstream HOST:PORT [--direction inbound|outbound]]\n"
		"       mailwarden -t [-v] [--no-filters] [-c FILE] [-o name=value]...\n"
		"       mailwarden scan [-c FILE] [-o name=value]... [--from A] [--rcpt B]... [--client-ip IP] [--helo H]\n"
		"                       [--direction inbound|outbound] [--output OUT.eml] FILE.eml|-\n"
		"       mailwarden quarantine [-c FILE] [-o name=value]... list [--since TIME] [--json]\n"
		"                       | show [--json|--raw|--release] ID | release [--to RCPT]... [--again] ID | delete ID | expire\n"
		"       mailwarden learn [-c FILE] [-o name=value]... [--no-train] --spam|--ham|--forget FILE|DIR...\n"
		"       mailwarden learn [-c FILE] [-o name=value]... --rebuild\n"
		"       mailwarden stats [-c FILE] [-o name=value]... [--prometheus]\n");
}

struct cli {
	const char *config;
	const char *ov[MAX_OVERRIDES];
	size_t nov;
	int foreground, check, verbose;
	int no_filters;           /* -t --no-filters: the file and the transport only */
	const char *listen, *upstream, *direction;
	char **rest;              /* arguments left for a subcommand: argc slots
	                           * (learn takes any number of files) */
	int nrest;
};

static void add_override(struct cli *c, const char *o)
{
	if (c->nov >= MAX_OVERRIDES) {
		fprintf(stderr, "mailwarden: too many -o options\n");
		exit(1);
	}
	c->ov[c->nov++] = o;
}

/* Take the common options (-c, -o, and for the daemon -f -t --listen ...)
 * wherever they are; leave the rest for the subcommand (-h and --help too
 * when it has a help of its own: own_help). */
static void parse_cli(struct cli *c, int argc, char **argv, int first, int daemon_mode, int own_help)
{
	for (int i = first; i < argc; i++) {
		const char *a = argv[i];
		const char *next = i + 1 < argc ? argv[i + 1] : NULL;
		/* copies: the process title later reuses argv's memory */
		if (strcmp(a, "-c") == 0 && next) { c->config = xstrdup(next); i++; }
		else if (strcmp(a, "-o") == 0 && next) { add_override(c, xstrdup(next)); i++; }
		else if (strncmp(a, "-o", 2) == 0 && a[2]) add_override(c, xstrdup(a + 2));
		else if (daemon_mode && strcmp(a, "-f") == 0) c->foreground = 1;
		else if (daemon_mode && strcmp(a, "-t") == 0) c->check = 1;
		else if (daemon_mode && strcmp(a, "-v") == 0) c->verbose = 1;
		else if (daemon_mode && strcmp(a, "--no-filters") == 0) c->no_filters = 1;
		else if (daemon_mode && strcmp(a, "--listen") == 0 && next) { c->listen = xstrdup(next); i++; }
		else if (daemon_mode && strcmp(a, "--upstream") == 0 && next) { c->upstream = xstrdup(next); i++; }
		else if (daemon_mode && strcmp(a, "--direction") == 0 && next) { c->direction = xstrdup(next); i++; }
		else if (!own_help && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) { usage(stdout); exit(0); }
		else if (daemon_mode) {
			fprintf(stderr, "mailwarden: unknown option '%s'\n", a);
			usage(stderr);
			exit(1);
		} else
			c->rest[c->nrest++] = argv[i];      /* main gave argc slots */
	}
}

static struct config *load(struct cli *c)
{
	char err[1024];
	static char lbuf[3][600];
	if (c->listen || c->upstream) {
		if (!c->listen || !c->upstream) {
			fprintf(stderr, "mailwarden: --listen and --upstream go together\n");
			exit(1);
		}
		snprintf(lbuf[0], sizeof lbuf[0], "listener.default.listen=%s", c->listen);
		snprintf(lbuf[1], sizeof lbuf[1], "listener.default.upstream=%s", c->upstream);
		add_override(c, lbuf[0]);
		add_override(c, lbuf[1]);
		if (c->direction) {
			snprintf(lbuf[2], sizeof lbuf[2], "listener.default.direction=%s", c->direction);
			add_override(c, lbuf[2]);
		}
	}
	if (c->config && c->config[0] != '/') {
		/* the daemon chdirs to /, and reloads read the file again */
		char *abs = realpath(c->config, NULL);
		if (abs) c->config = abs;
	}
	struct config *cfg = config_load(c->config, c->ov, c->nov, err, sizeof err);
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	return cfg;
}

static void daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0) die("fork: %s", strerror(errno));
	if (pid > 0) _exit(0);
	setsid();
	if (chdir("/") < 0) die("chdir /: %s", strerror(errno));
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2) close(fd);
	}
}

/* say_log_destination - before detaching: with log = stderr the daemon's
 * stderr becomes /dev/null, so its log goes to syslog instead; say so on the
 * stderr the admin still sees (until session 21 nothing did, and an admin
 * without a syslog daemon lost every line after the start).  Where no
 * syslog daemon listens (/dev/log), the lines are lost: say that too. */
static void say_log_destination(const struct config *cfg)
{
	const char *fac = cfg->syslog_facility[0] ? cfg->syslog_facility : "mail";
	struct stat st;
	int have_syslog = stat("/dev/log", &st) == 0 && S_ISSOCK(st.st_mode);

	if (cfg->log == LOG_TO_STDERR)
		fprintf(stderr, "mailwarden: log = stderr, and the daemon detaches (no -f): "
		        "logging to syslog (facility %s) instead; -f keeps the log on stderr\n", fac);
	if (!have_syslog)
		fprintf(stderr, "mailwarden: warning: no syslog daemon listens on /dev/log: "
		        "the daemon's log lines are lost; run it with -f (log = stderr), or start one\n");
}

/* check_prefix - -t: the config's name, which starts each warning the
 * checks below print; NULL when starting, where the proxy logs them */
static const char *check_prefix;

/* print_check_warning - -t: a warning of transport_check_config (an
 * expired certificate: served all the same, so not an error) */
static void print_check_warning(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "%s: warning: %s\n", check_prefix, msg);
}

/* check_filters - the filters set up once and freed, then the listeners'
 * TLS files loaded.  Run as "user" (as_user), as the scanner and the
 * proxy do: set up as root, the filters made the store and the rules
 * cache root's, and the scanner then could not open them; and a key only
 * root may read passed as root, then the proxy died at every start. */
static int check_filters(struct config *cfg, char *err, size_t errlen)
{
	struct pipeline *p = pipeline_new(cfg, err, errlen);
	if (p == NULL) return -1;
	pipeline_free(p);
	return transport_check_config(cfg, check_prefix ? print_check_warning : NULL, NULL, err, errlen);
}

/* check_transport - -t --no-filters (systemctl reload): the TLS files as
 * user, no filter set up.  The filters are what costs: a whole antivirus
 * engine (hundreds of MB, tens of seconds) loaded beside the reload's own
 * new scanner, whose failure keeps the running config anyway. */
static int check_transport(struct config *cfg, char *err, size_t errlen)
{
	return transport_check_config(cfg, check_prefix ? print_check_warning : NULL, NULL, err, errlen);
}

/* check_milter_socket_later, _now - as "user": can the milter make its
 * unix: socket?  -t: a missing directory is the master's to make; at
 * start (after master_prepare) it has made it. */
static int check_milter_socket_later(struct config *cfg, char *err, size_t errlen)
{
	return milter_socket_dir_check(cfg, 1, err, errlen);
}

static int check_milter_socket_now(struct config *cfg, char *err, size_t errlen)
{
	return milter_socket_dir_check(cfg, 0, err, errlen);
}

/* log_config_warnings - what -t says of the configuration's risks and of
 * the list entries it translated, logged at start-up too */
static void log_config_warnings(const struct config *cfg)
{
	char msg[512];

	for (unsigned i = 0; i < cfg->nnotes && i < CFG_MAX_NOTES; i++)
		slog(NULL, LOG_NOTICE, "%s", cfg->notes[i]);
	if (cfg->nnotes > CFG_MAX_NOTES)
		slog(NULL, LOG_NOTICE, "%u more notes of the configuration (mailwarden -t lists the first %u)",
		     cfg->nnotes - CFG_MAX_NOTES, CFG_MAX_NOTES);
	struct listener_hop hop[CFG_MAX_LISTENERS];

	config_listener_hops(cfg, hop);
	for (unsigned i = 0; i < cfg->nlisteners; i++) {
		if (config_listener_loop(cfg, hop, i, msg, sizeof msg) > 0)
			slog(NULL, LOG_WARNING, "%s", msg);
		if (config_open_outbound(cfg, i, msg, sizeof msg))
			slog(NULL, LOG_WARNING, "%s", msg);
		if (config_open_proxy(cfg, i, msg, sizeof msg))
			slog(NULL, LOG_WARNING, "%s", msg);
	}
	if (config_wide_internal(cfg, msg, sizeof msg))
		slog(NULL, LOG_WARNING, "%s", msg);
	if (config_milter_release(cfg, msg, sizeof msg))
		slog(NULL, LOG_WARNING, "%s", msg);
	if (config_milter_port25(cfg, msg, sizeof msg))
		slog(NULL, LOG_WARNING, "%s", msg);
	if (config_scans_nothing(cfg, msg, sizeof msg))
		slog(NULL, LOG_WARNING, "%s", msg);
}

/* log_deadline_warnings - what -t says of the filters' waits against
 * scan_timeout / milter_timeout, logged at start-up too: a site that
 * never runs -t learns it from the log rather than from 451s */
static void log_deadline_warnings(const struct config *cfg)
{
	char *buf = NULL, *line, *save = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return;
	deadline_check_config(cfg, f, "config");
	fclose(f);
	for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		slog(NULL, LOG_WARNING, "%s", line);
	free(buf);
}

/* raise_open_files - the soft limit on descriptors up to the hard one:
 * a shell or an init script leaves 1024, which a few hundred SMTP
 * sessions use up (README "Out of descriptors"); warns when even the
 * hard limit is short of max_connections */
static void raise_open_files(const struct config *cfg)
{
	struct rlimit rl;
	unsigned long long want = (unsigned long long)cfg->max_connections * DESCRIPTORS_PER_SESSION + 256;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = rl;
		FILE *f = fopen("/proc/sys/fs/nr_open", "r");
		unsigned long long nr_open = 0;
		if (f) {
			if (fscanf(f, "%llu", &nr_open) != 1) nr_open = 0;
			fclose(f);
		}
		up.rlim_cur = rl.rlim_max;
		if (nr_open > 0 && up.rlim_cur > nr_open) up.rlim_cur = (rlim_t)nr_open;
		if (up.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl = up;
	}
	if (rl.rlim_cur < want)
		slog(NULL, LOG_WARNING, "open files limit %llu is below what max_connections %u may need "
		     "(%u descriptors each, about %llu): raise the hard limit (LimitNOFILE, ulimit -Hn) "
		     "or lower max_connections", (unsigned long long)rl.rlim_cur, cfg->max_connections,
		     DESCRIPTORS_PER_SESSION, want);
}

int main(int argc, char **argv)
{
	static struct cli c;    /* static: its strings live as long as the process */
	memset(&c, 0, sizeof c);
	/* a write past RLIMIT_FSIZE (a spool memfd, the audit log, the store)
	 * must fail with EFBIG and be answered as any failed write, not kill
	 * the process mid-message; inherited by every child */
	signal(SIGXFSZ, SIG_IGN);
	/* room for every argument: until session 19 there were 255, and
	 * "learn --spam" of more files (a glob of a Junk folder) was refused */
	c.rest = xcalloc((size_t)argc + 1, sizeof(*c.rest));

	if (argc > 1 && (strcmp(argv[1], "scan") == 0 || strcmp(argv[1], "quarantine") == 0)) {
		c.rest[c.nrest++] = argv[1];
		parse_cli(&c, argc, argv, 2, 0, argv[1][0] == 's');
		struct config *cfg = load(&c);
		log_init("mailwarden", 0, cfg->syslog_facility, cfg->log_level < LOG_WARNING ? cfg->log_level : LOG_WARNING);
		int rc = argv[1][0] == 's' ? scan_command(cfg, c.nrest, c.rest)
		                           : quarantine_command(cfg, c.nrest, c.rest);
		config_unref(cfg);
		return rc;
	}
	if (argc > 1 && strcmp(argv[1], "stats") == 0) {
		c.rest[c.nrest++] = argv[1];
		parse_cli(&c, argc, argv, 2, 0, 0);
		struct config *cfg = load(&c);
		int rc = stats_command(cfg, c.nrest, c.rest);
		config_unref(cfg);
		return rc;
	}
	if (argc > 1 && strcmp(argv[1], "learn") == 0) {         /* Bayes (issue 6) */
		c.rest[c.nrest++] = argv[1];
		/* learn --help: learn's own, which explains its options */
		parse_cli(&c, argc, argv, 2, 0, 1);
		struct config *cfg = load(&c);
		log_init("mailwarden", 0, cfg->syslog_facility, cfg->log_level < LOG_WARNING ? cfg->log_level : LOG_WARNING);
		int rc = learn_command(cfg, c.nrest, c.rest);
		config_unref(cfg);
		return rc;
	}
	if (argc > 1 && argv[1][0] != '-') {
		fprintf(stderr, "mailwarden: unknown command '%s'\n", argv[1]);
		usage(stderr);
		return 1;
	}
	parse_cli(&c, argc, argv, 1, 1, 0);
	struct config *cfg = load(&c);

	if (c.check) {
		char err[512];
		log_init("mailwarden", 0, cfg->syslog_facility, LOG_WARNING);
		check_prefix = c.config ? c.config : "mailwarden";
		if (as_user(cfg, c.no_filters ? check_transport : check_filters, err, sizeof err) < 0
		    || as_user(cfg, check_milter_socket_later, err, sizeof err) < 0) {
			fprintf(stderr, "%s: %s\n", c.config ? c.config : "mailwarden", err);
			/* freed here too, or a SANITIZE=1 build reports it at exit */
			config_unref(cfg);
			return 1;
		}
		if (cfg->nlisteners == 0 && cfg->milter_listen[0] == '\0')
			fprintf(stderr, "%s: warning: no listener and no milter_listen configured\n", c.config ? c.config : "mailwarden");
		for (unsigned i = 0; i < cfg->nnotes && i < CFG_MAX_NOTES; i++)
			fprintf(stderr, "%s\n", cfg->notes[i]);
		if (cfg->nnotes > CFG_MAX_NOTES)
			fprintf(stderr, "%s: note: %u more notes like these\n",
			        c.config ? c.config : "mailwarden", cfg->nnotes - CFG_MAX_NOTES);
		struct listener_hop hop[CFG_MAX_LISTENERS];

		config_listener_hops(cfg, hop);
		for (unsigned i = 0; i < cfg->nlisteners; i++) {
			int loop = config_listener_loop(cfg, hop, i, err, sizeof err);
			if (loop < 0) {
				fprintf(stderr, "%s: %s\n", c.config ? c.config : "mailwarden", err);
				config_unref(cfg);
				return 1;
			}
			if (loop > 0)
				fprintf(stderr, "%s: warning: %s\n", c.config ? c.config : "mailwarden", err);
			if (config_open_outbound(cfg, i, err, sizeof err))
				fprintf(stderr, "%s: warning: %s\n", c.config ? c.config : "mailwarden", err);
			if (config_open_proxy(cfg, i, err, sizeof err))
				fprintf(stderr, "%s: warning: %s\n", c.config ? c.config : "mailwarden", err);
		}
		if (config_wide_internal(cfg, err, sizeof err))
			fprintf(stderr, "%s: warning: %s\n", c.config ? c.config : "mailwarden", err);
		if (config_milter_release(cfg, err, sizeof err))
			fprintf(stderr, "%s: warning: %s\n", c.config ? c.config : "mailwarden", err);
		if (config_milter_port25(cfg, err, sizeof err))
			fprintf(stderr, "%s: warning: %s\n", c.config ? c.config : "mailwarden", err);
		if (config_scans_nothing(cfg, err, sizeof err))
			fprintf(stderr, "%s: notice: %s\n", c.config ? c.config : "mailwarden", err);
		deadline_check_config(cfg, stderr, c.config ? c.config : "mailwarden");
		printf("%s: configuration OK\n", c.config ? c.config : "(embedded defaults)");
		if (c.verbose) config_dump(cfg, stdout);     /* every setting, as in effect */
		config_unref(cfg);
		return 0;
	}
	if (cfg->nlisteners == 0 && cfg->milter_listen[0] == '\0') {
		fprintf(stderr, "mailwarden: no listener: give --listen and --upstream, [listener NAME] sections, or milter_listen\n");
		return 1;
	}
	{
		/* a filter that cannot start is a start-up error, not a scanner
		 * crash loop */
		char err[512];
		struct listener_hop hop[CFG_MAX_LISTENERS];

		log_init("mailwarden", 0, cfg->syslog_facility, LOG_WARNING);
		config_listener_hops(cfg, hop);
		for (unsigned i = 0; i < cfg->nlisteners; i++)
			if (config_listener_loop(cfg, hop, i, err, sizeof err) < 0) {
				fprintf(stderr, "mailwarden: %s\n", err);
				return 1;
			}
		master_prepare(cfg);
		if (as_user(cfg, check_filters, err, sizeof err) < 0
		    || as_user(cfg, check_milter_socket_now, err, sizeof err) < 0) {
			fprintf(stderr, "mailwarden: %s\n", err);
			return 1;
		}
	}
	int to_syslog = cfg->log == LOG_TO_SYSLOG || !c.foreground;
	log_init("mailwarden", to_syslog, cfg->syslog_facility, cfg->log_level);
	log_config_warnings(cfg);
	log_deadline_warnings(cfg);
	raise_open_files(cfg);
	if (!c.foreground) {
		say_log_destination(cfg);
		daemonize();
	}
	set_proc_title(argc, argv, "master");
	/* what a library or a plugin creates without asking (a temporary file
	 * of a message, a socket) is not for other local users; the files
	 * meant to be read by others set their mode themselves (stats_file) */
	umask(027);
	stats_open(cfg);         /* before the children are forked: they inherit the mapping */
	return master_run(cfg, c.config, c.ov, c.nov, argc, argv);
}
