/* test_config.c - the settings table, the INI reader, overrides, listeners,
 * the dump (which must read back), and the shipped sample etc/mailwarden.conf
 * (which must load and must mention every setting, so the two cannot drift).
 * Temporary files are made with mkstemp under /tmp and removed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proxy/config.h"

#define MIB (1024ULL * 1024)

static char errbuf[1024];

/* tmpfile_with - a new file under /tmp holding text; the path is static
 * storage of the caller (path must hold 32 bytes) */
static void tmpfile_with(char *path, const char *text, size_t len)
{
	strcpy(path, "/tmp/mw_test_config_XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

/* load - text as a config file (NULL: no file) plus overrides */
static struct config *load_ov(const char *text, const char *const *ov, size_t nov)
{
	char path[32];
	struct config *c;

	errbuf[0] = '\0';
	if (text == NULL)
		return config_load(NULL, ov, nov, errbuf, sizeof errbuf);
	tmpfile_with(path, text, strlen(text));
	c = config_load(path, ov, nov, errbuf, sizeof errbuf);
	/* make messages path-independent: replace the path by "F" */
	size_t pl = strlen(path);
	if (strncmp(errbuf, path, pl) == 0) {
		memmove(errbuf + 1, errbuf + pl, strlen(errbuf + pl) + 1);
		errbuf[0] = 'F';
	}
	unlink(path);
	return c;
}

static struct config *load(const char *text)
{
	return load_ov(text, NULL, 0);
}

static char *dump_text(const struct config *c);

/* expect_err - loading fails with exactly msg */
static void expect_err_ov(const char *text, const char *const *ov, size_t nov, const char *msg)
{
	struct config *c = load_ov(text, ov, nov);
	if (c != NULL) {
		config_unref(c);
		fail_msg("loaded, expected error: %s", msg);
	}
	if (strcmp(errbuf, msg) != 0)
		fail_msg("error\n  got:  %s\n  want: %s", errbuf, msg);
}

static void expect_err(const char *text, const char *msg)
{
	expect_err_ov(text, NULL, 0, msg);
}

static void expect_override_err(const char *ov, const char *msg)
{
	expect_err_ov(NULL, &ov, 1, msg);
}

/* ------------------------------------------------------------------ */

static void test_defaults(void **state)
{
	(void)state;
	struct config *c = load(NULL);
	assert_non_null(c);
	assert_int_equal(c->refcount, 1);
	assert_string_equal(c->source, "");
	assert_true(c->hostname[0] != '\0');
	assert_string_equal(c->user, "");
	assert_int_equal(c->log, LOG_TO_STDERR);
	assert_int_equal(c->log_level, LOG_INFO);
	assert_string_equal(c->syslog_facility, "mail");
	assert_string_equal(c->audit_log, "/var/log/mailwarden/audit.log");
	assert_string_equal(c->quarantine_dir, "/var/lib/mailwarden/quarantine");
	assert_int_equal(c->scanner_threads, 4);
	assert_int_equal(c->scanner_queue, 256);
	assert_int_equal(c->nplugins, 0);
	assert_int_equal(c->message_size_limit, 50 * MIB);
	assert_int_equal(c->max_connections, 2000);
	assert_int_equal(c->max_connections_per_ip, 50);
	assert_int_equal(c->max_recipients, 1000);
	assert_int_equal(c->command_line_limit, 2048);
	assert_int_equal(c->max_errors, 20);
	assert_int_equal(c->greet_pause, 0);
	assert_int_equal(c->client_command_timeout, 300000);
	assert_int_equal(c->client_data_timeout, 180000);
	assert_int_equal(c->upstream_connect_timeout, 30000);
	assert_int_equal(c->upstream_command_timeout, 300000);
	assert_int_equal(c->upstream_data_timeout, 180000);
	assert_int_equal(c->upstream_eod_timeout, 600000);
	assert_int_equal(c->upstream_probe_interval, 60000);
	assert_int_equal(c->scan_timeout, 150000);
	assert_int_equal(c->milter_timeout, 150000);   /* holds the typical filters (107 s, 120 s with Redis) */
	/* the answer at RCPT must reach Sendmail within its T=R: (10 s), which
	 * no progress packet extends before the end of the message */
	assert_int_equal(c->milter_early_timeout, 8000);
	assert_int_equal(c->shutdown_timeout, 30000);
	assert_int_equal(c->bare_newline, BARE_NEWLINE_REJECT);
	assert_int_equal(c->early_talker, EARLY_TALKER_NOTE);
	assert_int_equal(c->vrfy, VRFY_252);
	assert_true(c->inbound.tag_score == 5.0);
	assert_true(c->inbound.quarantine_score == 0.0);
	assert_true(c->inbound.reject_score == 15.0);
	assert_true(c->outbound.tag_score == 5.0);
	assert_true(c->outbound.quarantine_score == 0.0);
	assert_true(c->outbound.reject_score == 10.0);
	assert_string_equal(c->reject_reply, "550 5.7.1 Message rejected as spam");
	assert_string_equal(c->tempfail_reply, "451 4.7.1 Try again later");
	assert_string_equal(c->quarantine_reply, "250 2.0.0 Message accepted");
	assert_string_equal(c->discard_reply, "250 2.0.0 Message accepted");
	assert_string_equal(c->subject_tag, "");
	assert_int_equal(c->spam_headers, SPAM_HEADERS_TAGGED);
	assert_int_equal(c->nlisteners, 0);
	config_unref(c);
}

static void test_default_hostname(void **state)
{
	(void)state;
	char h[256] = "";
	struct config *c = load(NULL);
	assert_non_null(c);
	assert_int_equal(gethostname(h, sizeof h), 0);
	/* the system name unless it is not a valid host name */
	if (strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == strlen(h))
		assert_string_equal(c->hostname, h);
	config_unref(c);
}

static void test_empty_file_is_defaults(void **state)
{
	(void)state;
	struct config *c = load("# nothing\n\n; nothing either\n");
	assert_non_null(c);
	assert_true(c->source[0] == '/');
	assert_int_equal(c->message_size_limit, 50 * MIB);
	config_unref(c);
}

static void test_refcount(void **state)
{
	(void)state;
	struct config *c = load(NULL);
	assert_non_null(c);
	assert_ptr_equal(config_ref(c), c);
	assert_int_equal(c->refcount, 2);
	config_unref(c);
	assert_int_equal(c->refcount, 1);
	config_unref(c);
	config_unref(NULL);
	assert_null(config_ref(NULL));
}

/* ------------------------------------------------------------------ */
/* value parsers                                                        */

static void test_parse_size(void **state)
{
	(void)state;
	static const struct { const char *s; uint64_t v; } ok[] = {
		{ "0", 0 }, { "123", 123 }, { "512k", 512 * 1024 }, { "512K", 512 * 1024 },
		{ "10M", 10 * MIB }, { "10m", 10 * MIB }, { "1G", 1024 * MIB },
		{ "2T", 2ULL << 40 }, { "18446744073709551615", UINT64_MAX },
	};
	static const char *const bad[] = {
		"", "k", "10X", "-1", "+1", "1.5M", " 1", "1 ", "10 M", "0x10", "10MB",
		"18446744073709551616", "17179869184G",
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		v = 1;
		assert_int_equal(config_parse_size(ok[i].s, &v), 0);
		assert_true(v == ok[i].v);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (config_parse_size(bad[i], &v) != -1)
			fail_msg("size '%s' accepted", bad[i]);
}

/* a parser of unsigned values: each of ok gives its value, each of bad is refused */
struct parsed { const char *s; unsigned v; };
static void check_parser(int (*parse)(const char *, unsigned *), const char *what,
                         const struct parsed *ok, size_t nok, const char *const *bad, size_t nbad)
{
	unsigned v;

	for (size_t i = 0; i < nok; i++) {
		v = 1;
		assert_int_equal(parse(ok[i].s, &v), 0);
		assert_int_equal(v, ok[i].v);
	}
	for (size_t i = 0; i < nbad; i++)
		if (parse(bad[i], &v) != -1)
			fail_msg("%s '%s' accepted", what, bad[i]);
}

static void test_parse_duration(void **state)
{
	(void)state;
	static const struct parsed ok[] = {
		{ "0", 0 }, { "30", 30000 }, { "300s", 300000 }, { "5m", 300000 },
		{ "250ms", 250 }, { "1h", 3600000 }, { "1d", 86400000 },
		{ "4294967s", 4294967000u }, { "4294967295ms", 4294967295u },
	};
	static const char *const bad[] = {
		"", "s", "ms", "5 m", "1.5s", "-1", "5x", "5sec", "4294968s", "4294967296ms",
		"99999999999999999999999s", "1m30s",
	};
	check_parser(config_parse_duration, "duration", ok, sizeof ok / sizeof ok[0], bad, sizeof bad / sizeof bad[0]);
}

/* ages (quarantine_max_age) are whole seconds, so that they reach past the
 * 49 days a millisecond duration holds */
static void test_parse_age(void **state)
{
	(void)state;
	static const struct parsed ok[] = {
		{ "0", 0 }, { "30", 30 }, { "90m", 5400 }, { "1000ms", 1 }, { "30d", 2592000 },
		{ "365d", 31536000 }, { "4294967295s", 4294967295u },
	};
	static const char *const bad[] = { "", "1500ms", "1d2h", "4294967296s", "-1d", "99999999999999999999d" };
	check_parser(config_parse_age, "age", ok, sizeof ok / sizeof ok[0], bad, sizeof bad / sizeof bad[0]);

	static const char *const year[] = { "quarantine_max_age=365d" };
	struct config *c = load_ov(NULL, year, 1);
	assert_non_null(c);
	assert_int_equal(c->quarantine_max_age, 31536000);
	char *d = dump_text(c);
	assert_non_null(strstr(d, "quarantine_max_age = 365d\n"));
	free(d);
	config_unref(c);
	c = load(NULL);
	assert_int_equal(c->quarantine_max_age, 30 * 86400);
	config_unref(c);
	expect_override_err("quarantine_max_age=3661d",
	                    "-o quarantine_max_age: value 3661d above maximum 3660d");
	expect_override_err("quarantine_max_age=1500ms",
	                    "-o quarantine_max_age: '1500ms' is not a duration of whole seconds");
}

static void test_parse_bool(void **state)
{
	(void)state;
	static const char *const yes[] = { "yes", "YES", "true", "on", "1" };
	static const char *const no[] = { "no", "False", "off", "0" };
	static const char *const bad[] = { "", "2", "y", "yes please", "nein" };
	int b;

	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		b = 0;
		assert_int_equal(config_parse_bool(yes[i], &b), 0);
		assert_int_equal(b, 1);
	}
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
		b = 1;
		assert_int_equal(config_parse_bool(no[i], &b), 0);
		assert_int_equal(b, 0);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(config_parse_bool(bad[i], &b), -1);
}

/* ------------------------------------------------------------------ */
/* every type through the file                                          */

static void test_every_type(void **state)
{
	(void)state;
	struct config *c = load(
		"# comment\n"
		"; another comment\n"
		"hostname = mx1.example.org\n"              /* string */
		"user = mailwarden\n"
		"message_size_limit = 10M\n"                /* size */
		"max_recipients = 100\n"                    /* uint */
		"client_command_timeout = 5m\n"             /* duration */
		"scan_timeout = 250ms\n"
		"upstream_eod_timeout = 42\n"               /* bare number: seconds */
		"inbound_tag_score = 3.5\n"                 /* double */
		"outbound_reject_score = 7\n"
		"bare_newline = NORMALIZE\n"                /* enum, any case */
		"log_level = debug\n"
		"log = syslog\n"
		"vrfy = relay\n"
		"spam_headers = always\n"
		"early_talker = reject\n"
		"plugin = /usr/lib/a.so word=viagra score=2.5\n"   /* list */
		"plugin = /usr/lib/b.so\n"
		"subject_tag = [SPAM]\n"
		"syslog_facility = local3\n"
		"audit_log =\n");
	assert_non_null(c);
	assert_string_equal(c->hostname, "mx1.example.org");
	assert_string_equal(c->user, "mailwarden");
	assert_int_equal(c->message_size_limit, 10 * MIB);
	assert_int_equal(c->max_recipients, 100);
	assert_int_equal(c->client_command_timeout, 300000);
	assert_int_equal(c->scan_timeout, 250);
	assert_int_equal(c->upstream_eod_timeout, 42000);
	assert_true(c->inbound.tag_score == 3.5);
	assert_true(c->outbound.reject_score == 7.0);
	assert_int_equal(c->bare_newline, BARE_NEWLINE_NORMALIZE);
	assert_int_equal(c->log_level, LOG_DEBUG);
	assert_int_equal(c->log, LOG_TO_SYSLOG);
	assert_int_equal(c->vrfy, VRFY_RELAY);
	assert_int_equal(c->spam_headers, SPAM_HEADERS_ALWAYS);
	assert_int_equal(c->early_talker, EARLY_TALKER_REJECT);
	assert_int_equal(c->nplugins, 2);
	assert_string_equal(c->plugins[0], "/usr/lib/a.so word=viagra score=2.5");
	assert_string_equal(c->plugins[1], "/usr/lib/b.so");
	assert_string_equal(c->subject_tag, "[SPAM]");
	assert_string_equal(c->syslog_facility, "local3");
	assert_string_equal(c->audit_log, "");
	config_unref(c);
}

static void test_syntax_details(void **state)
{
	(void)state;
	/* [mailwarden] section, indented keys (never continuation lines),
	 * ':' separator, inline ';' comments, quotes keep outer spaces,
	 * a UTF-8 BOM, CRLF line ends */
	struct config *c = load(
		"\xEF\xBB\xBFmax_errors = 7\r\n"
		"[mailwarden]\n"
		"    max_recipients = 10\n"
		"    max_connections = 11   ; inline comment\n"
		"\tscanner_threads: 3\n"
		"subject_tag = \" [SPAM] \"\n"
		"reject_reply = 550 5.7.1 No;thanks # not a comment\n"
		"[ listener  mx ]\n"
		"  listen = 127.0.0.1:2525\n"
		"  upstream = 127.0.0.1:25\n");
	assert_non_null(c);
	assert_int_equal(c->max_errors, 7);
	assert_int_equal(c->max_recipients, 10);
	assert_int_equal(c->max_connections, 11);
	assert_int_equal(c->scanner_threads, 3);
	assert_string_equal(c->subject_tag, " [SPAM] ");
	assert_string_equal(c->reject_reply, "550 5.7.1 No;thanks # not a comment");
	assert_int_equal(c->nlisteners, 1);
	assert_string_equal(c->listeners[0].name, "mx");
	assert_string_equal(c->listeners[0].listen, "127.0.0.1:2525");
	config_unref(c);

	/* a long line is fine up to the limit */
	char big[5000];
	snprintf(big, sizeof big, "plugin = /x.so k=%0*d\n", 1000, 0);
	c = load(big);
	assert_non_null(c);
	assert_int_equal(strlen(c->plugins[0]), 1008);
	config_unref(c);
}

static void test_syntax_errors(void **state)
{
	(void)state;
	expect_err("max_errors = 1\nthis is not a setting\n",
	           "F:2: syntax error (expected 'name = value' or '[section]')");
	expect_err("[listener mx\n", "F:1: syntax error (expected 'name = value' or '[section]')");
	expect_err("\n[listener mx] junk\n", "F:2: unexpected text after section header");
	expect_err("subject_tag = \"[SPAM]\n", "F:1: subject_tag: unbalanced quote");
	/* ' ;' starts a comment, so a quoted value cannot hide it */
	expect_err("subject_tag = \"a ; b\"\n", "F:1: subject_tag: unbalanced quote");

	char big[5000];
	memset(big, 'x', sizeof big);
	memcpy(big, "plugin = /x.so k=", 17);
	big[4200] = '\n';
	big[4201] = '\0';
	expect_err(big, "F:1: line too long (at most 4096 characters)");

	/* a NUL byte in a line */
	char path[32];
	static const char nul[] = "max_errors = 1\nuser = a\0b\n";
	tmpfile_with(path, nul, sizeof nul - 1);
	assert_null(config_load(path, NULL, 0, errbuf, sizeof errbuf));
	char want[80];
	snprintf(want, sizeof want, "%s:2: NUL byte in line", path);
	assert_string_equal(errbuf, want);
	unlink(path);
}

static void test_missing_file(void **state)
{
	(void)state;
	assert_null(config_load("/nonexistent/mailwarden.conf", NULL, 0, errbuf, sizeof errbuf));
	assert_string_equal(errbuf, "/nonexistent/mailwarden.conf: No such file or directory");
	assert_null(config_load("/tmp", NULL, 0, errbuf, sizeof errbuf));
	assert_string_equal(errbuf, "/tmp: Is a directory");
}

/* ------------------------------------------------------------------ */
/* errors with FILE:LINE                                                */

static void test_bad_values(void **state)
{
	(void)state;
	expect_err("# a\n\nmessage_size_limit = 10X\n", "F:3: message_size_limit: '10X' is not a size");
	expect_err("max_recipients = 12abc\n", "F:1: max_recipients: '12abc' is not a number");
	expect_err("max_recipients = -1\n", "F:1: max_recipients: '-1' is not a number");
	expect_err("max_recipients = 99999999999\n",
	           "F:1: max_recipients: '99999999999' is not a number");
	expect_err("max_recipients =\n", "F:1: max_recipients: '' is not a number");
	expect_err("scan_timeout = 5x\n", "F:1: scan_timeout: '5x' is not a duration");
	expect_err("inbound_tag_score = abc\n", "F:1: inbound_tag_score: 'abc' is not a number");
	expect_err("inbound_tag_score = nan\n", "F:1: inbound_tag_score: 'nan' is not a number");
	expect_err("bare_newline = maybe\n",
	           "F:1: bare_newline: 'maybe' is not one of reject or normalize");
	expect_err("log_level = trace\n",
	           "F:1: log_level: 'trace' is not one of err, warning, notice, info or debug");
	expect_err("syslog_facility = mial\n",
	           "F:1: syslog_facility: 'mial' is not a syslog facility (mail, daemon, user, "
	           "auth, authpriv, local0..local7)");
	expect_err("quarantine_dir = var/q\n", "F:1: quarantine_dir: 'var/q' is not an absolute path");
	expect_err("quarantine_dir =\n", "F:1: quarantine_dir: '' is not an absolute path");
	expect_err("audit_log = audit.log\n", "F:1: audit_log: 'audit.log' is not an absolute path");
	expect_err("hostname = bad_host!\n", "F:1: hostname: 'bad_host!' is not a host name");
	expect_err("hostname = -x.example\n", "F:1: hostname: '-x.example' is not a host name");
	expect_err("user = -root\n", "F:1: user: '-root' is not a user name");
	expect_err("subject_tag = \xc3\xa9t\xc3\xa9\n", "F:1: subject_tag: only printable ASCII is allowed");
	char longtag[200];
	snprintf(longtag, sizeof longtag, "subject_tag = %070d\n", 0);
	expect_err(longtag, "F:1: subject_tag: value too long (at most 63 characters)");
	/* address literals are host names too */
	struct config *c = load("hostname = [192.0.2.1]\n");
	assert_non_null(c);
	config_unref(c);
	c = load("hostname = [IPv6:2001:db8::1]\n");
	assert_non_null(c);
	config_unref(c);
}

static void test_bounds(void **state)
{
	(void)state;
	expect_err("command_line_limit = 0\n", "F:1: command_line_limit: value 0 below minimum 512");
	expect_err("command_line_limit = 65537\n",
	           "F:1: command_line_limit: value 65537 above maximum 65536");
	expect_err("scanner_threads = 0\n", "F:1: scanner_threads: value 0 below minimum 1");
	expect_err("scanner_threads = 257\n", "F:1: scanner_threads: value 257 above maximum 256");
	expect_err("message_size_limit = 512\n",
	           "F:1: message_size_limit: value 512 below minimum 1k");
	expect_err("message_size_limit = 3G\n",
	           "F:1: message_size_limit: value 3G above maximum 2G");
	expect_err("greet_pause = 6m\n", "F:1: greet_pause: value 6m above maximum 300s");
	expect_err("client_command_timeout = 0\n",
	           "F:1: client_command_timeout: value 0 below minimum 10ms");
	expect_err("inbound_reject_score = -1\n",
	           "F:1: inbound_reject_score: value -1 below minimum 0.0");
	expect_err("outbound_tag_score = 1e9\n",
	           "F:1: outbound_tag_score: value 1e9 above maximum 10000.0");
	/* a maximum lowered since an earlier release: a config that passed
	 * then stops the daemon now, and the error says why and what to do */
	expect_err("max_recipients = 100000\n",
	           "F:1: max_recipients: value 100000 above maximum 50000 (lowered from 100000 in "
	           "session 19, so that every recipient with its DSN parameters fits one scan request: "
	           "lower it)");
	expect_err("max_recipients = 50001\n",
	           "F:1: max_recipients: value 50001 above maximum 50000 (lowered from 100000 in "
	           "session 19, so that every recipient with its DSN parameters fits one scan request: "
	           "lower it)");

	/* the bounds themselves are accepted */
	struct config *c = load("command_line_limit = 512\nmessage_size_limit = 2G\n"
	                        "scanner_threads = 256\ngreet_pause = 5m\nshutdown_timeout = 0\n");
	assert_non_null(c);
	assert_int_equal(c->command_line_limit, 512);
	assert_int_equal(c->message_size_limit, 2048 * MIB);
	assert_int_equal(c->greet_pause, 300000);
	assert_int_equal(c->shutdown_timeout, 0);
	config_unref(c);
}

static void test_unknown_key_and_section(void **state)
{
	(void)state;
	char text[512] = "";
	for (int i = 1; i < 12; i++)
		strcat(text, i % 2 ? "# filler\n" : "\n");
	strcat(text, "foo = 1\n");
	expect_err(text, "F:12: unknown setting 'foo'");

	expect_err("max_errors = 3\n[smtpd]\nfoo = 1\n",
	           "F:2: unknown section '[smtpd]' (expected [mailwarden] or [listener NAME])");
	/* an empty unknown section is an error too */
	expect_err("[smtpd]\n",
	           "F:1: unknown section '[smtpd]' (expected [mailwarden] or [listener NAME])");
	expect_err("[listener]\n",
	           "F:1: unknown section '[listener]' (expected [mailwarden] or [listener NAME])");
	expect_err("[listener mx]\nlisten = 127.0.0.1:25\nupstream = 127.0.0.1:26\nmax_errors = 3\n",
	           "F:4: 'max_errors' is a global setting: put it before the first section "
	           "or in [mailwarden]");
	expect_err("[listener mx]\nlisten = 127.0.0.1:25\nbogus = 1\n",
	           "F:3: unknown setting 'bogus' in [listener mx]");
	expect_err("listen = 127.0.0.1:25\n", "F:1: 'listen' belongs in a [listener NAME] section");
}

static void test_duplicate_setting(void **state)
{
	(void)state;
	expect_err("max_errors = 3\n\n[mailwarden]\nmax_errors = 4\n",
	           "F:4: duplicate setting 'max_errors' (first at line 1)");
	expect_err("[listener a]\nlisten = *:25\nlisten = *:26\n",
	           "F:3: duplicate setting 'listen' (first at line 2)");
}

/* ------------------------------------------------------------------ */
/* listeners                                                            */

/* a filter is named by a word of the list, not by a piece of one */
static void test_runs_filter(void **state)
{
	(void)state;
	struct config *c = load("filters = spf rules_x bayes\n");
	assert_non_null(c);
	assert_true(config_runs_filter(c, "bayes"));
	assert_true(config_runs_filter(c, "spf"));
	assert_true(config_runs_filter(c, "rules_x"));
	assert_false(config_runs_filter(c, "rules"));
	assert_false(config_runs_filter(c, "bay"));
	assert_false(config_runs_filter(c, "dkim"));
	config_unref(c);
	c = load("filters = bayes  rules spf\n");
	assert_non_null(c);
	assert_true(config_runs_filter(c, "bayes"));
	assert_true(config_runs_filter(c, "rules"));
	config_unref(c);
}

static void test_listeners(void **state)
{
	(void)state;
	struct config *c = load(
		"max_errors = 5\n"
		"[listener mx]\n"
		"listen = *:25\n"
		"upstream = 127.0.0.1:10025\n"
		"[listener submission.v6]\n"
		"listen = [::1]:587\n"
		"upstream = [::1]:10026\n"
		"direction = outbound\n"
		"[listener Local_1]\n"
		"listen = 127.0.0.1:2525\n"
		"upstream = mta.example.org:25\n"
		"[mailwarden]\n"
		"max_recipients = 50\n");
	assert_non_null(c);
	assert_int_equal(c->nlisteners, 3);
	assert_int_equal(c->max_recipients, 50);
	assert_string_equal(c->listeners[0].name, "mx");
	assert_string_equal(c->listeners[0].listen, "*:25");
	assert_string_equal(c->listeners[0].upstream, "127.0.0.1:10025");
	assert_int_equal(c->listeners[0].direction, MW_INBOUND);
	assert_string_equal(c->listeners[1].name, "submission.v6");
	assert_string_equal(c->listeners[1].listen, "[::1]:587");
	assert_string_equal(c->listeners[1].upstream, "[::1]:10026");
	assert_int_equal(c->listeners[1].direction, MW_OUTBOUND);
	assert_string_equal(c->listeners[2].name, "Local_1");
	assert_string_equal(c->listeners[2].upstream, "mta.example.org:25");
	config_unref(c);
}

/* config_listeners_same - what the master compares at a reload: names,
 * order and every setting, as formatted (not the bytes a longer value
 * left after a string's NUL) */
static void test_listeners_same(void **state)
{
	(void)state;
	const char *two = "[listener a]\nlisten = 127.0.0.1:2525\nupstream = 127.0.0.1:25\n"
	                  "[listener b]\nlisten = 127.0.0.1:2526\nupstream = 127.0.0.1:26\n";
	struct config *c = load(two), *d = load(two);
	assert_non_null(c);
	assert_non_null(d);
	assert_true(config_listeners_same(c, d));
	/* bytes after the NUL differ, the value does not */
	memset(d->listeners[0].upstream_tls_name + 1, 'x', 10);
	assert_true(config_listeners_same(c, d));
	d->listeners[0].direction = MW_OUTBOUND;
	assert_false(config_listeners_same(c, d));
	config_unref(d);
	const char *other[] = {
		"[listener b]\nlisten = 127.0.0.1:2526\nupstream = 127.0.0.1:26\n"
		"[listener a]\nlisten = 127.0.0.1:2525\nupstream = 127.0.0.1:25\n",       /* reordered */
		"[listener b]\nlisten = 127.0.0.1:2526\nupstream = 127.0.0.1:26\n",      /* removed */
		"[listener a]\nlisten = 127.0.0.1:2525\nupstream = 127.0.0.1:25\n"
		"[listener b]\nlisten = 127.0.0.1:2526\nupstream = 127.0.0.1:27\n",       /* a setting */
	};
	for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
		d = load(other[i]);
		assert_non_null(d);
		assert_false(config_listeners_same(c, d));
		config_unref(d);
	}
	config_unref(c);
}

/* config_export / config_import - the master's config, as a front end
 * gets it: the same settings, a reference of its own, sealed */
static void test_export_import(void **state)
{
	(void)state;
	struct config *c = load("message_size_limit = 2k\n[listener a]\nlisten = 127.0.0.1:2525\n"
	                        "upstream = 127.0.0.1:25\n");
	assert_non_null(c);
	config_ref(c);
	int fd = config_export(c);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), -1);        /* sealed */
	struct config *d = config_import(fd, errbuf, sizeof errbuf);
	assert_non_null(d);
	assert_int_equal(d->refcount, 1);
	assert_int_equal(d->message_size_limit, 2048);
	assert_true(config_listeners_same(c, d));
	char *a = dump_text(c), *b = dump_text(d);
	assert_string_equal(a, b);
	free(a);
	free(b);
	close(fd);
	config_unref(d);
	config_unref(c);
	config_unref(c);
	/* anything else is refused */
	fd = memfd_create("x", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "short", 5), 5);
	assert_null(config_import(fd, errbuf, sizeof errbuf));
	close(fd);
}

static void test_listener_errors(void **state)
{
	(void)state;
	expect_err("[listener mx]\nlisten = *:25\nupstream = 127.0.0.1:26\n\n[listener mx]\n",
	           "F:5: duplicate listener 'mx' (first at line 1)");
	expect_err("[listener mx]\nupstream = 127.0.0.1:26\n", "F:1: listener 'mx' has no listen");
	expect_err("\n[listener mx]\nlisten = *:25\n", "F:2: listener 'mx' has no upstream");
	expect_err("[listener mx]\n", "F:1: listener 'mx' has no listen");
	expect_err("[listener a b]\n",
	           "F:1: bad listener name 'a b' (1..63 of A-Z a-z 0-9 _ . -)");
	expect_err("[listener a/b]\n",
	           "F:1: bad listener name 'a/b' (1..63 of A-Z a-z 0-9 _ . -)");
	expect_err("[listener milter]\n", "F:1: listener name 'milter' is reserved (the milter front end)");
	expect_err("[listener scan]\n", "F:1: listener name 'scan' is reserved (the scan command)");
	expect_err("[listener a]\nlisten = *:25\nupstream = h:1\n"
	           "[listener b]\nlisten = *:25\nupstream = h:2\n",
	           "F:4: listener 'b': listen *:25 is already used by listener 'a'");
	expect_err("[listener mx]\nlisten = *:25\nupstream = h:1\ndirection = sideways\n",
	           "F:4: direction: 'sideways' is not one of inbound or outbound");

	/* CFG_MAX_LISTENERS, and one more */
	char text[8192] = "";
	for (int i = 0; i <= CFG_MAX_LISTENERS; i++) {
		char s[128];
		snprintf(s, sizeof s, "[listener l%d]\nlisten = 127.0.0.1:%d\nupstream = 127.0.0.1:25\n",
		         i, 2000 + i);
		strcat(text, s);
	}
	char want[64];
	snprintf(want, sizeof want, "F:%d: more than %d listeners", 3 * CFG_MAX_LISTENERS + 1,
	         CFG_MAX_LISTENERS);
	expect_err(text, want);
	*strrchr(text, '[') = '\0';
	struct config *c = load(text);
	assert_non_null(c);
	assert_int_equal(c->nlisteners, CFG_MAX_LISTENERS);
	config_unref(c);
}

static void test_listen_addresses(void **state)
{
	(void)state;
	static const char *const good_listen[] = {
		"127.0.0.1:25", "0.0.0.0:2525", "*:25", "[::1]:25", "[::]:65535",
		"[2001:db8::1]:587", "[::ffff:127.0.0.1]:25",
	};
	static const struct { const char *v, *msg; } bad_listen[] = {
		{ "localhost:25", "'localhost:25': address must be IPv4, [IPv6] or *" },
		{ "127.0.0.1", "'127.0.0.1': missing ':PORT'" },
		{ "127.0.0.1:0", "'127.0.0.1:0': port must be 1..65535" },
		{ "127.0.0.1:65536", "'127.0.0.1:65536': port must be 1..65535" },
		{ "127.0.0.1:", "'127.0.0.1:': port must be 1..65535" },
		{ "127.0.0.1:+25", "'127.0.0.1:+25': port must be 1..65535" },
		{ "127.0.0.1:smtp", "'127.0.0.1:smtp': port must be 1..65535" },
		{ "::1:25", "'::1:25': an IPv6 address must be written [ADDR]:PORT" },
		{ "[::1]25", "'[::1]25': expected [IPv6]:PORT" },
		{ "[::1:25", "'[::1:25': missing ']'" },
		{ "[::g]:25", "'[::g]:25': address must be IPv4, [IPv6] or *" },
		{ "[127.0.0.1]:25", "'[127.0.0.1]:25': address must be IPv4, [IPv6] or *" },
		{ "1.2.3.4.5:25", "'1.2.3.4.5:25': address must be IPv4, [IPv6] or *" },
		{ "256.1.1.1:25", "'256.1.1.1:25': address must be IPv4, [IPv6] or *" },
		{ ":25", "':25': address must be IPv4, [IPv6] or *" },
	};
	static const char *const good_upstream[] = {
		"127.0.0.1:25", "mx.example.org:25", "localhost:10025", "[::1]:25",
		"[2001:db8::25]:2525", "mail-1.example:25",
	};
	static const struct { const char *v, *msg; } bad_upstream[] = {
		{ "*:25", "'*:25': host must be a name, IPv4 or [IPv6]" },
		{ "bad_host!:25", "'bad_host!:25': host must be a name, IPv4 or [IPv6]" },
		{ "-mx.example:25", "'-mx.example:25': host must be a name, IPv4 or [IPv6]" },
		{ "mx..example:25", "'mx..example:25': host must be a name, IPv4 or [IPv6]" },
		{ "[::1]:99999", "'[::1]:99999': port must be 1..65535" },
		{ "mx.example.org", "'mx.example.org': missing ':PORT'" },
		{ "2001:db8::1:25", "'2001:db8::1:25': an IPv6 address must be written [ADDR]:PORT" },
	};
	char text[512], want[512];
	struct config *c;

	for (size_t i = 0; i < sizeof good_listen / sizeof good_listen[0]; i++) {
		snprintf(text, sizeof text, "[listener x]\nlisten = %s\nupstream = 127.0.0.1:25\n",
		         good_listen[i]);
		c = load(text);
		if (c == NULL)
			fail_msg("listen %s: %s", good_listen[i], errbuf);
		assert_string_equal(c->listeners[0].listen, good_listen[i]);
		config_unref(c);
	}
	for (size_t i = 0; i < sizeof bad_listen / sizeof bad_listen[0]; i++) {
		snprintf(text, sizeof text, "[listener x]\nlisten = %s\nupstream = 127.0.0.1:25\n",
		         bad_listen[i].v);
		snprintf(want, sizeof want, "F:2: listen: %s", bad_listen[i].msg);
		expect_err(text, want);
	}
	for (size_t i = 0; i < sizeof good_upstream / sizeof good_upstream[0]; i++) {
		snprintf(text, sizeof text, "[listener x]\nlisten = *:25\nupstream = %s\n",
		         good_upstream[i]);
		c = load(text);
		if (c == NULL)
			fail_msg("upstream %s: %s", good_upstream[i], errbuf);
		config_unref(c);
	}
	for (size_t i = 0; i < sizeof bad_upstream / sizeof bad_upstream[0]; i++) {
		snprintf(text, sizeof text, "[listener x]\nlisten = *:25\nupstream = %s\n",
		         bad_upstream[i].v);
		snprintf(want, sizeof want, "F:3: upstream: %s", bad_upstream[i].msg);
		expect_err(text, want);
	}
}

/* ------------------------------------------------------------------ */
/* overrides                                                            */

static void test_overrides(void **state)
{
	(void)state;
	static const char *const ov[] = {
		"max_errors=9",
		"max_errors = 10",                         /* later wins; spaces trimmed */
		"audit_log=/tmp/audit.jsonl",
		"listener.mx.upstream=127.0.0.1:2626",     /* changes a file listener */
		"listener.new.one.listen=[::1]:2525",      /* creates one; name with a dot */
		"listener.new.one.upstream=127.0.0.1:25",
		"listener.new.one.direction=outbound",
		"plugin=/b.so",                            /* appends */
		"subject_tag=\"[SPAM] \"",
	};
	struct config *c = load_ov("max_errors = 3\nplugin = /a.so\n[listener mx]\n"
	                           "listen = *:25\nupstream = 127.0.0.1:26\n",
	                           ov, sizeof ov / sizeof ov[0]);
	assert_non_null(c);
	assert_int_equal(c->max_errors, 10);
	assert_string_equal(c->audit_log, "/tmp/audit.jsonl");
	assert_int_equal(c->nlisteners, 2);
	assert_string_equal(c->listeners[0].upstream, "127.0.0.1:2626");
	assert_string_equal(c->listeners[1].name, "new.one");
	assert_string_equal(c->listeners[1].listen, "[::1]:2525");
	assert_int_equal(c->listeners[1].direction, MW_OUTBOUND);
	assert_int_equal(c->nplugins, 2);
	assert_string_equal(c->plugins[1], "/b.so");
	assert_string_equal(c->subject_tag, "[SPAM] ");
	config_unref(c);

	/* without a file; "plugin=" empties the list */
	static const char *const ov2[] = { "plugin=/a.so", "plugin=", "plugin=/c.so x=1" };
	c = load_ov(NULL, ov2, 3);
	assert_non_null(c);
	assert_int_equal(c->nplugins, 1);
	assert_string_equal(c->plugins[0], "/c.so x=1");
	config_unref(c);
}

static void test_override_errors(void **state)
{
	(void)state;
	expect_override_err("foo=1", "-o foo: unknown setting 'foo'");
	expect_override_err("message_size_limit=10X", "-o message_size_limit: '10X' is not a size");
	expect_override_err("command_line_limit=1", "-o command_line_limit: value 1 below minimum 512");
	expect_override_err("max_errors", "-o max_errors: expected name=value");
	expect_override_err("=3", "-o =3: expected name=value");
	expect_override_err("listen=*:25",
	                    "-o listen: listener setting: use -o listener.NAME.listen=value");
	expect_override_err("listener.mx.bogus=1", "-o listener.mx.bogus: unknown listener setting 'bogus'");
	expect_override_err("listener.mx=1", "-o listener.mx: expected listener.NAME.key=value");
	expect_override_err("listener.a b.listen=*:25",
	                    "-o listener.a b.listen: bad listener name 'a b' (1..63 of A-Z a-z 0-9 _ . -)");
	expect_override_err("listener.mx.listen=nope",
	                    "-o listener.mx.listen: 'nope': missing ':PORT'");
	expect_override_err("listener.mx.listen=*:25", "-o listener.mx: listener 'mx' has no upstream");
	expect_override_err("reject_reply=550 5.7.1 a\r\nRCPT TO:<x>",
	                    "-o reject_reply: control character in '550 5.7.1 a\\x0d\\x0aRCPT TO:<x>'");
	expect_override_err("subject_tag=a ; b",
	                    "-o subject_tag: ' ;' would start a comment: not allowed in 'a ; b'");

	/* an error in the file comes first, with its line */
	static const char *const ov[] = { "foo=1" };
	expect_err_ov("max_errors = x\n", ov, 1, "F:1: max_errors: 'x' is not a number");
}

/* ------------------------------------------------------------------ */
/* list type                                                            */

static void test_list(void **state)
{
	(void)state;
	char text[8192] = "";
	struct config *c;

	for (int i = 0; i < CFG_MAX_PLUGINS; i++) {
		char s[64];
		snprintf(s, sizeof s, "plugin = /p%d.so n=%d\n", i, i);
		strcat(text, s);
	}
	c = load(text);
	assert_non_null(c);
	assert_int_equal(c->nplugins, CFG_MAX_PLUGINS);
	assert_string_equal(c->plugins[CFG_MAX_PLUGINS - 1], "/p31.so n=31");
	config_unref(c);

	strcat(text, "plugin = /one-too-many.so\n");
	char want[64];
	snprintf(want, sizeof want, "F:%d: plugin: more than %d entries", CFG_MAX_PLUGINS + 1,
	         CFG_MAX_PLUGINS);
	expect_err(text, want);

	c = load("plugin = /a.so\nplugin =\nplugin = /b.so k= j=v\n");
	assert_non_null(c);
	assert_int_equal(c->nplugins, 1);
	assert_string_equal(c->plugins[0], "/b.so k= j=v");
	config_unref(c);

	expect_err("plugin = /a.so word\n", "F:1: plugin: argument 'word' is not key=value");
	expect_err("plugin = /a.so =v\n", "F:1: plugin: argument '=v' is not key=value");
}

/* ------------------------------------------------------------------ */
/* replies                                                              */

static void test_replies(void **state)
{
	(void)state;
	static const struct { const char *name, *value; } good[] = {
		{ "reject_reply", "550 5.7.1 Message rejected as spam" },
		{ "reject_reply", "554 Transaction failed" },
		{ "reject_reply", "550 5.7.1  two spaces are fine" },
		{ "reject_reply", "550 5.123.456 three-digit parts" },
		{ "tempfail_reply", "451 4.7.1 Try again later" },
		{ "tempfail_reply", "450 Later" },
		{ "quarantine_reply", "250 2.0.0 Queued" },
		{ "discard_reply", "250 OK" },
	};
	static const struct { const char *ov, *msg; } bad[] = {
		{ "reject_reply=450 4.7.1 Later",
		  "-o reject_reply: '450 4.7.1 Later': reply code must be 5xx" },
		{ "reject_reply=550 4.7.1 Mixed",
		  "-o reject_reply: '550 4.7.1 Mixed': enhanced status code must be 5.N.N" },
		{ "reject_reply=550 5.7 Short",
		  "-o reject_reply: '550 5.7 Short': enhanced status code must be 5.N.N" },
		{ "reject_reply=550 5.7.1234 Long",
		  "-o reject_reply: '550 5.7.1234 Long': enhanced status code must be 5.N.N" },
		{ "reject_reply=550",
		  "-o reject_reply: '550': reply text is missing" },
		{ "reject_reply=550 5.7.1",
		  "-o reject_reply: '550 5.7.1': reply text is missing" },
		{ "reject_reply=55 Short",
		  "-o reject_reply: '55 Short' does not start with a reply code 5xx" },
		{ "reject_reply=5500 Long",
		  "-o reject_reply: '5500 Long' does not start with a reply code 5xx" },
		{ "reject_reply=590 Bad",
		  "-o reject_reply: '590 Bad' does not start with a reply code 5xx" },
		{ "reject_reply=Rejected",
		  "-o reject_reply: 'Rejected' does not start with a reply code 5xx" },
		{ "reject_reply=550-5.7.1 Multi",
		  "-o reject_reply: '550-5.7.1 Multi' does not start with a reply code 5xx" },
		{ "reject_reply=550 5.7.1 caf\xc3\xa9",
		  "-o reject_reply: only printable ASCII is allowed" },
		{ "reject_reply=550 5.7.1 a\nb",
		  "-o reject_reply: control character in '550 5.7.1 a\\x0ab'" },
		{ "tempfail_reply=550 5.7.1 No",
		  "-o tempfail_reply: '550 5.7.1 No': reply code must be 4xx" },
		{ "tempfail_reply=451 5.7.1 No",
		  "-o tempfail_reply: '451 5.7.1 No': enhanced status code must be 4.N.N" },
		{ "quarantine_reply=451 4.7.1 No",
		  "-o quarantine_reply: '451 4.7.1 No': reply code must be 2xx" },
		{ "discard_reply=354 Go ahead",
		  "-o discard_reply: '354 Go ahead': reply code must be 2xx" },
	};
	char ov[256];

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		const char *p = ov;
		snprintf(ov, sizeof ov, "%s=%s", good[i].name, good[i].value);
		struct config *c = load_ov(NULL, &p, 1);
		if (c == NULL)
			fail_msg("%s: %s", ov, errbuf);
		config_unref(c);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_override_err(bad[i].ov, bad[i].msg);
	/* and from the file, with its line */
	expect_err("\nreject_reply = 250 2.0.0 Ok\n",
	           "F:2: reject_reply: '250 2.0.0 Ok': reply code must be 5xx");
}

/* ------------------------------------------------------------------ */
/* dump and read back                                                   */

static char *dump_text(const struct config *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	config_dump(c, f);
	fclose(f);
	/* drop the first line: it names the source */
	char *nl = strchr(buf, '\n');
	assert_non_null(nl);
	memmove(buf, nl + 1, strlen(nl + 1) + 1);
	return buf;
}

static void test_dump_round_trip(void **state)
{
	(void)state;
	static const char *const ov[] = {
		"subject_tag=\"\"[SPAM]\" \"",
		"inbound_tag_score=0.1",
		"outbound_quarantine_score=7.25",
		"scan_timeout=1500ms",
		"message_size_limit=1000000",
		"user=\"mw\"",
		"plugin=/x.so a=b c=",
		"listener.v6.listen=[::1]:2525",
		"listener.v6.upstream=[::1]:25",
		"listener.v6.direction=outbound",
	};
	struct config *a = load_ov(
		"hostname = mx.example.org\nlog = syslog\nlog_level = notice\n"
		"greet_pause = 2s\nvrfy = relay\nplugin = /a.so k=v\naudit_log =\n"
		"reject_reply = 554 5.7.1 Go away; spam\n"
		"[listener mx]\nlisten = *:25\nupstream = mta.example.org:10025\n",
		ov, sizeof ov / sizeof ov[0]);
	if (a == NULL)
		fail_msg("%s", errbuf);
	char *ta = dump_text(a);
	assert_non_null(strstr(ta, "\nsubject_tag = \"\"[SPAM]\" \"\n"));
	assert_non_null(strstr(ta, "\nuser = mw\n"));
	assert_non_null(strstr(ta, "\nscan_timeout = 1500ms\n"));
	assert_non_null(strstr(ta, "\n[listener v6]\nlisten = [::1]:2525\n"));
	assert_non_null(strstr(ta, "\naudit_log =\n"));

	struct config *b = load(ta);
	if (b == NULL)
		fail_msg("dump does not load: %s\n%s", errbuf, ta);
	char *tb = dump_text(b);
	assert_string_equal(ta, tb);
	/* the structs agree field by field, except for where they came from */
	memset(a->source, 0, sizeof a->source);
	memset(b->source, 0, sizeof b->source);
	assert_memory_equal(a, b, sizeof *a);
	free(ta);
	free(tb);
	config_unref(a);
	config_unref(b);

	/* the defaults, dumped, read back to the defaults */
	a = load(NULL);
	ta = dump_text(a);
	assert_non_null(strstr(ta, "\nplugin =\n"));
	b = load(ta);
	assert_non_null(b);
	tb = dump_text(b);
	assert_string_equal(ta, tb);
	free(ta);
	free(tb);
	config_unref(a);
	config_unref(b);
}

/* ------------------------------------------------------------------ */
/* the table and the shipped sample                                     */

static void test_table(void **state)
{
	(void)state;
	size_t n = config_setting_count();
	const char *doc;

	assert_true(n > 40);
	for (size_t i = 0; i < n; i++) {
		const char *name = config_setting_name(i, &doc);
		assert_non_null(name);
		assert_non_null(doc);
		assert_true(strlen(doc) > 10);
		assert_true(strchr(doc, '\n') == NULL);
		for (size_t j = 0; j < i; j++)
			if (strcmp(name, config_setting_name(j, NULL)) == 0)
				fail_msg("setting '%s' twice", name);
	}
	assert_null(config_setting_name(n, &doc));
}

static void sample_path(char *buf, size_t len)
{
	const char *src = getenv("MW_SRCDIR");
	snprintf(buf, len, "%s/etc/mailwarden.conf", src != NULL && *src != '\0' ? src : ".");
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		fail_msg("%s: cannot open (run from the source tree or set MW_SRCDIR)", path);
	char *buf = malloc(1 << 20);
	assert_non_null(buf);
	size_t n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_sample_loads(void **state)
{
	(void)state;
	char path[1024];
	sample_path(path, sizeof path);
	struct config *c = config_load(path, NULL, 0, errbuf, sizeof errbuf);
	if (c == NULL)
		fail_msg("%s", errbuf);
	assert_true(c->nlisteners >= 1);
	config_unref(c);
}

/* every row of the table appears in the sample as "name = " or "#name = " */
static void test_sample_mentions_every_setting(void **state)
{
	(void)state;
	char path[1024];
	sample_path(path, sizeof path);
	char *text = slurp(path);

	for (size_t i = 0; i < config_setting_count(); i++) {
		const char *name = config_setting_name(i, NULL);
		int found = 0;
		for (char *line = text; line != NULL && *line != '\0'; ) {
			char *p = line;
			if (*p == '#')
				p++;
			size_t n = strlen(name);
			if (strncmp(p, name, n) == 0 && strncmp(p + n, " =", 2) == 0)
				found = 1;
			line = strchr(line, '\n');
			if (line != NULL)
				line++;
		}
		if (!found)
			fail_msg("setting '%s' is not in %s", name, path);
	}
	free(text);
}

/* every row of the table is described in mailwarden.conf(5) */
static void test_manpage_mentions_every_setting(void **state)
{
	(void)state;
	char path[1024], want[128];
	const char *src = getenv("MW_SRCDIR");
	snprintf(path, sizeof path, "%s/doc/mailwarden.conf.5",
	         src != NULL && *src != '\0' ? src : ".");
	char *text = slurp(path);

	for (size_t i = 0; i < config_setting_count(); i++) {
		snprintf(want, sizeof want, "\n.BI %s \" = ", config_setting_name(i, NULL));
		if (strstr(text, want) == NULL)
			fail_msg("setting '%s' is not described in %s", config_setting_name(i, NULL), path);
	}
	free(text);
}

/* the "#name = value" lines of the sample are the real defaults:
 * uncomment them all (but the examples for hostname and plugin) and the
 * result must equal the sample as shipped */
static void test_sample_shows_defaults(void **state)
{
	(void)state;
	char path[1024];
	sample_path(path, sizeof path);
	char *text = slurp(path);
	struct config *shipped = config_load(path, NULL, 0, errbuf, sizeof errbuf);
	assert_non_null(shipped);

	char *out = malloc(strlen(text) + 1);
	assert_non_null(out);
	out[0] = '\0';
	int n = 0;
	for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		if (line[0] == '#' && line[1] >= 'a' && line[1] <= 'z' &&
		    strncmp(line, "#hostname ", 10) != 0 && strncmp(line, "#plugin ", 8) != 0) {
			line++;
			n++;
		}
		strcat(out, line);
		strcat(out, "\n");
	}
	/* all but hostname, plugin (examples) and listen, upstream (set) */
	assert_int_equal(n + 4, config_setting_count());
	struct config *all = load(out);
	if (all == NULL)
		fail_msg("uncommented sample: %s", errbuf);
	char *ta = dump_text(shipped), *tb = dump_text(all);
	assert_string_equal(ta, tb);
	free(ta);
	free(tb);
	free(out);
	free(text);
	config_unref(shipped);
	config_unref(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_default_hostname),
		cmocka_unit_test(test_empty_file_is_defaults),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_age),
		cmocka_unit_test(test_parse_bool),
		cmocka_unit_test(test_every_type),
		cmocka_unit_test(test_syntax_details),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_unknown_key_and_section),
		cmocka_unit_test(test_duplicate_setting),
		cmocka_unit_test(test_listeners),
		cmocka_unit_test(test_listeners_same),
		cmocka_unit_test(test_export_import),
		cmocka_unit_test(test_listener_errors),
		cmocka_unit_test(test_listen_addresses),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_override_errors),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_runs_filter),
		cmocka_unit_test(test_replies),
		cmocka_unit_test(test_dump_round_trip),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_sample_loads),
		cmocka_unit_test(test_sample_mentions_every_setting),
		cmocka_unit_test(test_sample_shows_defaults),
		cmocka_unit_test(test_manpage_mentions_every_setting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
