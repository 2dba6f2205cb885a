/* config.c - mailwarden's settings: one typed table, an INI file read with
 * libinih, "-o name=value" overrides, and a dump that parses back.
 *
 * Every setting is one row of cfg_opts[]: name, type, default (as text),
 * bounds, where it lives (offsetof into struct config or struct
 * listener_cfg) and a one-line doc.  Defaults go through the same parser as
 * the file and the overrides, so a default that would not parse is caught
 * by the unit tests, and there is no second place where a default lives.
 *
 * inih does the syntax; a line reader in front of it (cfg_reader) guards
 * against what inih would otherwise get silently wrong:
 *   - it counts lines, so every message carries FILE:LINE (Debian's inih is
 *     built without INI_HANDLER_LINENO);
 *   - it strips leading whitespace, so an indented "name = value" is a
 *     setting and never an inih continuation line of the previous value;
 *   - it refuses over-long lines and NUL bytes instead of letting inih cut
 *     them into two lines;
 *   - it reads section headers itself, so an unknown or duplicate section is
 *     an error at its own line even when the section is empty, and a long
 *     listener name is never truncated (inih keeps 50 bytes of a section).
 * A ';' preceded by whitespace starts a comment (inih's inline comments); a
 * value wrapped in double quotes loses the quotes (to keep outer spaces).
 * A setting given twice in the file is an error; a list setting ("plugin")
 * appends, and an empty value empties the list.  Overrides replace.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ini.h>

#include "proxy/config.h"
#include "proxy/netaddr.h"
#include "filters/ipnet.h"

#define CFG_LINE_MAX   4096	/* longest line of the file, newline excluded */
#define CFG_ERR_MAX    512	/* one message, before its FILE:LINE prefix */

enum cfg_type {
	CFG_STR,        /* char[]; "" allowed unless the check refuses it */
	CFG_BOOL,       /* int: yes/no true/false on/off 1/0 */
	CFG_UINT,       /* unsigned, decimal */
	CFG_SIZE,       /* uint64_t bytes: 10M, 512k, 1G, bare bytes */
	CFG_DURATION,   /* unsigned milliseconds: 250ms, 300s, 5m, 1h, 1d, bare seconds */
	CFG_AGE,        /* unsigned seconds, same syntax: ages of days to years, beyond
	                 * the 49 days milliseconds hold */
	CFG_DOUBLE,     /* double */
	CFG_ENUM,       /* int (or an enum of int size) from a word list */
	CFG_LIST        /* char[n][len] + unsigned count; each line appends */
};

enum cfg_scope { CFG_GLOBAL, CFG_LISTENER };

struct cfg_word {
	const char *word;
	int         value;
};

struct cfg_opt {
	const char     *name;
	enum cfg_type   type;
	enum cfg_scope  scope;
	const char     *def;         /* default as text; NULL: defun() computes it */
	double          min, max;    /* inclusive bounds: count, bytes, ms, or value;
	                              * for CFG_LIST, max is the number of entries */
	size_t          off;         /* offsetof into struct config / listener_cfg */
	size_t          size;        /* sizeof the field (CFG_LIST: of one entry) */
	size_t          cnt_off;     /* CFG_LIST: offsetof the unsigned count */
	const struct cfg_word *words;              /* CFG_ENUM, NULL-terminated */
	int (*check)(const char *v, char *err, size_t errlen);  /* CFG_STR/LIST */
	void (*defun)(char *buf, size_t len);      /* when def == NULL */
	const char     *doc;         /* one line */
	const char     *lowered;     /* a maximum lowered since an earlier release:
	                              * added to the "above maximum" error (since
	                              * when, why, what to do), as an old config
	                              * that passed then stops the daemon now */
};

/* Rows are built with these, so that a row whose type does not match its
 * field does not compile (_Generic without a matching association). */
#define FLD(st, f, T) \
	(offsetof(struct st, f) + 0 * sizeof(_Generic(((struct st *)0)->f, T: 1)))
#define FSZ(st, f) sizeof(((struct st *)0)->f)

#define G_STR(n, f, def, chk, doc) \
	{ n, CFG_STR, CFG_GLOBAL, def, 0, 0, FLD(config, f, char *), FSZ(config, f), 0, NULL, chk, NULL, doc, NULL }
#define G_UINT(n, f, def, lo, hi, doc) \
	{ n, CFG_UINT, CFG_GLOBAL, def, lo, hi, FLD(config, f, unsigned), sizeof(unsigned), 0, NULL, NULL, NULL, doc, NULL }
#define G_UINT_LOWERED(n, f, def, lo, hi, lowered, doc) \
	{ n, CFG_UINT, CFG_GLOBAL, def, lo, hi, FLD(config, f, unsigned), sizeof(unsigned), 0, NULL, NULL, NULL, doc, lowered }
#define G_SIZE(n, f, def, lo, hi, doc) \
	{ n, CFG_SIZE, CFG_GLOBAL, def, lo, hi, FLD(config, f, uint64_t), sizeof(uint64_t), 0, NULL, NULL, NULL, doc, NULL }
#define G_DUR(n, f, def, lo, hi, doc) \
	{ n, CFG_DURATION, CFG_GLOBAL, def, lo, hi, FLD(config, f, unsigned), sizeof(unsigned), 0, NULL, NULL, NULL, doc, NULL }
#define G_AGE(n, f, def, lo, hi, doc) \
	{ n, CFG_AGE, CFG_GLOBAL, def, lo, hi, FLD(config, f, unsigned), sizeof(unsigned), 0, NULL, NULL, NULL, doc, NULL }
#define G_DBL(n, f, def, lo, hi, doc) \
	{ n, CFG_DOUBLE, CFG_GLOBAL, def, lo, hi, FLD(config, f, double), sizeof(double), 0, NULL, NULL, NULL, doc, NULL }
#define G_ENUM(n, f, T, def, words, doc) \
	{ n, CFG_ENUM, CFG_GLOBAL, def, 0, 0, FLD(config, f, T), FSZ(config, f), 0, words, NULL, NULL, doc, NULL }
#define L_STR(n, f, def, chk, doc) \
	{ n, CFG_STR, CFG_LISTENER, def, 0, 0, FLD(listener_cfg, f, char *), FSZ(listener_cfg, f), 0, NULL, chk, NULL, doc, NULL }
#define L_ENUM(n, f, T, def, words, doc) \
	{ n, CFG_ENUM, CFG_LISTENER, def, 0, 0, FLD(listener_cfg, f, T), FSZ(listener_cfg, f), 0, words, NULL, NULL, doc, NULL }

#define MS_S   1000.0
#define MS_M   (60 * MS_S)
#define MS_H   (60 * MS_M)
#define KIB    1024.0
#define GIB    (1024.0 * 1024.0 * 1024.0)

static int check_hostname(const char *, char *, size_t);
static int check_user(const char *, char *, size_t);
static int check_facility(const char *, char *, size_t);
static int check_path(const char *, char *, size_t);
static int check_path_or_empty(const char *, char *, size_t);
static int check_plugin(const char *, char *, size_t);
static int check_reject_reply(const char *, char *, size_t);
static int check_tempfail_reply(const char *, char *, size_t);
static int check_accept_reply(const char *, char *, size_t);
static int check_subject_tag(const char *, char *, size_t);
static int check_listen(const char *, char *, size_t);
static int check_filter_list(const char *, char *, size_t);
static int check_authserv_id(const char *, char *, size_t);
static int check_milter_listen(const char *, char *, size_t);
static int check_socket_mode(const char *, char *, size_t);
static int check_group(const char *, char *, size_t);
static int check_cidr_list(const char *, char *, size_t);
static int check_nat64_prefixes(const char *, char *, size_t);
static int check_upstream(const char *, char *, size_t);
static void default_hostname(char *, size_t);

static const struct cfg_word log_words[] = {
	{ "stderr", LOG_TO_STDERR }, { "syslog", LOG_TO_SYSLOG }, { NULL, 0 }
};
static const struct cfg_word level_words[] = {
	{ "err", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
	{ "info", LOG_INFO }, { "debug", LOG_DEBUG }, { NULL, 0 }
};
static const struct cfg_word bare_newline_words[] = {
	{ "reject", BARE_NEWLINE_REJECT }, { "normalize", BARE_NEWLINE_NORMALIZE }, { NULL, 0 }
};
static const struct cfg_word early_talker_words[] = {
	{ "note", EARLY_TALKER_NOTE }, { "reject", EARLY_TALKER_REJECT }, { NULL, 0 }
};
static const struct cfg_word vrfy_words[] = {
	{ "252", VRFY_252 }, { "relay", VRFY_RELAY }, { NULL, 0 }
};
static const struct cfg_word spam_headers_words[] = {
	{ "tagged", SPAM_HEADERS_TAGGED }, { "always", SPAM_HEADERS_ALWAYS }, { NULL, 0 }
};
static const struct cfg_word milter_fail_words[] = {
	{ "tempfail", MILTER_FAIL_TEMPFAIL }, { "accept", MILTER_FAIL_ACCEPT }, { NULL, 0 }
};
static const struct cfg_word milter_quarantine_words[] = {
	{ "store", MILTER_QUARANTINE_STORE }, { "mta", MILTER_QUARANTINE_MTA }, { NULL, 0 }
};
static const struct cfg_word direction_words[] = {
	{ "inbound", MW_INBOUND }, { "outbound", MW_OUTBOUND }, { NULL, 0 }
};

/* The table.  Order = order of config_dump, the sample and the man page. */
static const struct cfg_opt cfg_opts[] = {
	/* identity, process */
	{ "hostname", CFG_STR, CFG_GLOBAL, NULL, 0, 0, FLD(config, hostname, char *),
	  FSZ(config, hostname), 0, NULL, check_hostname, default_hostname,
	  "name in the greeting and in EHLO to the upstream (default: this machine's name)", NULL },
	G_STR("user", user, "", check_user,
	      "drop privileges to this user after binding the listeners (empty = stay)"),
	G_ENUM("log", log, enum log_target, "stderr", log_words,
	       "where log lines go: stderr or syslog"),
	G_ENUM("log_level", log_level, int, "info", level_words,
	       "lowest priority logged: err, warning, notice, info or debug"),
	G_STR("syslog_facility", syslog_facility, "mail", check_facility,
	      "syslog facility: mail, daemon, user, auth, authpriv, local0..local7"),
	G_STR("audit_log", audit_log, "/var/log/mailwarden/audit.log", check_path_or_empty,
	      "file that gets one JSON line per transaction (empty = no audit log)"),
	G_ENUM("audit_failure", audit_fail_tempfail, int, "continue",
	       ((const struct cfg_word[]){ { "continue", 0 }, { "tempfail", 1 }, { NULL, 0 } }),
	       "audit log not writable (full disk): continue (records lost, logged) or tempfail "
	       "(new messages 452 4.3.1 until a record is written again)"),
	G_STR("stats_file", stats_file, "/run/mailwarden/stats", check_path_or_empty,
	      "file the daemon keeps its counters in, read by \"mailwarden stats\" (empty = no counters)"),
	G_STR("quarantine_dir", quarantine_dir, "/var/lib/mailwarden/quarantine", check_path,
	      "directory where quarantined messages are stored with envelope and result"),
	G_UINT("proxy_threads", proxy_threads, "0", 0, 16,
	       "event loops (threads) of the proxy process; 0 = one per four CPUs"),
	G_UINT("scanner_threads", scanner_threads, "4", 1, 256,
	       "worker threads of the scanner"),
	G_UINT("scanner_queue", scanner_queue, "256", 1, 65536,
	       "scan requests that may wait for a thread; more get 451"),
	{ "plugin", CFG_LIST, CFG_GLOBAL, "", 0, CFG_MAX_PLUGINS, FLD(config, plugins, char (*)[1024]),
	  FSZ(config, plugins[0]), FLD(config, nplugins, unsigned), NULL, check_plugin, NULL,
	  "filter plugin to load: \"/path/x.so key=value ...\"; repeat for more, empty clears", NULL },

	/* limits */
	G_SIZE("message_size_limit", message_size_limit, "50M", 1 * KIB, 2 * GIB,
	       "largest message accepted (offered as SIZE); bigger ones get 552"),
	G_SIZE("spool_memory_max", spool_memory_max, "1G", 0, 1024 * GIB,
	       "messages in flight held by one front end at once (RAM or swap; 0 = no limit); past it 452 4.3.1"),
	G_UINT("max_connections", max_connections, "2000", 1, 1000000,
	       "client connections at once, over all listeners"),
	G_UINT("max_connections_per_ip", max_connections_per_ip, "50", 1, 1000000,
	       "client connections at once from one IP address (IPv6: per /64); more get 421"),
	G_UINT_LOWERED("max_recipients", max_recipients, "1000", 1, CONFIG_MAX_RECIPIENTS_MAX,
	               "lowered from 100000 in session 19, so that every recipient with its DSN "
	               "parameters fits one scan request: lower it",
	               "recipients per message; more get 452"),
	G_UINT("command_line_limit", command_line_limit, "2048", 512, 65536,
	       "longest SMTP command line in bytes, CRLF included"),
	G_UINT("max_errors", max_errors, "20", 1, 10000,
	       "errors in one session (bad commands, refused recipients and AUTH credentials) "
	       "before it is closed with 421; forgiven but refused credentials when a message is delivered"),
	G_UINT("junk_command_limit", junk_command_limit, "100", 1, 1000000000,
	       "NOOP, RSET, VRFY, HELP, HELO and EHLO in one session before each more counts towards "
	       "max_errors; forgiven when a message is delivered"),

	/* timeouts */
	G_DUR("greet_pause", greet_pause, "0", 0, 5 * MS_M,
	      "wait this long before the greeting (early talkers are noted); 0 = none"),
	G_DUR("client_command_timeout", client_command_timeout, "300s", 10, 24 * MS_H,
	      "how long to wait for the client's next command"),
	G_DUR("client_data_timeout", client_data_timeout, "180s", 10, 24 * MS_H,
	      "how long to wait for more message data from the client"),
	G_DUR("upstream_connect_timeout", upstream_connect_timeout, "30s", 10, 24 * MS_H,
	      "how long to wait for the upstream connection and its greeting"),
	G_DUR("upstream_command_timeout", upstream_command_timeout, "300s", 10, 24 * MS_H,
	      "how long to wait for the upstream's reply to a command"),
	G_DUR("upstream_data_timeout", upstream_data_timeout, "180s", 10, 24 * MS_H,
	      "how long a write of message data to the upstream may block"),
	G_DUR("upstream_eod_timeout", upstream_eod_timeout, "600s", 10, 24 * MS_H,
	      "how long to wait for the upstream's reply to the end of data"),
	G_DUR("upstream_probe_interval", upstream_probe_interval, "60s", 1 * MS_S, 24 * MS_H,
	      "how often each upstream is probed (EHLO) to refresh its capabilities"),
	G_DUR("scan_timeout", scan_timeout, "150s", 10, 24 * MS_H,
	      "how long a message may wait for the scanner; then 451"),
	G_DUR("shutdown_timeout", shutdown_timeout, "30s", 0, 24 * MS_H,
	      "on SIGTERM, how long transactions in flight may finish before 421"),

	/* SMTP behaviour */
	G_ENUM("bare_newline", bare_newline, enum bare_newline_mode, "reject", bare_newline_words,
	       "bare CR or LF in DATA: reject (550 5.5.2) or normalize to CRLF"),
	G_ENUM("early_talker", early_talker, enum early_talker_mode, "note", early_talker_words,
	       "client that talks before the greeting: note (in the audit log) or reject"),
	G_ENUM("vrfy", vrfy, enum vrfy_mode, "252", vrfy_words,
	       "VRFY: answer 252 without looking, or relay it to the upstream"),

	/* policy */
	G_DBL("inbound_tag_score", inbound.tag_score, "5.0", 0, 10000,
	      "inbound: score at which a message is tagged (0 = never)"),
	G_DBL("inbound_quarantine_score", inbound.quarantine_score, "0", 0, 10000,
	      "inbound: score at which a message is quarantined (0 = never)"),
	G_DBL("inbound_reject_score", inbound.reject_score, "15.0", 0, 10000,
	      "inbound: score at which a message is rejected (0 = never)"),
	G_DBL("outbound_tag_score", outbound.tag_score, "5.0", 0, 10000,
	      "outbound: score at which a message is tagged (0 = never)"),
	G_DBL("outbound_quarantine_score", outbound.quarantine_score, "0", 0, 10000,
	      "outbound: score at which a message is quarantined (0 = never)"),
	G_DBL("outbound_reject_score", outbound.reject_score, "10.0", 0, 10000,
	      "outbound: score at which a message is rejected (0 = never)"),
	G_STR("reject_reply", reject_reply, "550 5.7.1 Message rejected as spam", check_reject_reply,
	      "reply to a rejected message: 5xx, optional enhanced code, text"),
	G_STR("tempfail_reply", tempfail_reply, "451 4.7.1 Try again later", check_tempfail_reply,
	      "reply to a tempfailed message: 4xx, optional enhanced code, text"),
	G_STR("quarantine_reply", quarantine_reply, "250 2.0.0 Message accepted", check_accept_reply,
	      "reply to a quarantined message: 2xx, optional enhanced code, text"),
	G_STR("discard_reply", discard_reply, "250 2.0.0 Message accepted", check_accept_reply,
	      "reply to a discarded message: 2xx, optional enhanced code, text"),
	G_STR("subject_tag", subject_tag, "", check_subject_tag,
	      "prefix added to the Subject of tagged messages (empty = leave it alone)"),
	G_ENUM("spam_headers", spam_headers, enum spam_headers_mode, "tagged", spam_headers_words,
	       "add X-Spam-* headers to tagged messages only, or to every message"),

	/* filters */
	G_STR("filters", filters, "", check_filter_list,
	      "built-in filters to run, in order, before any plugin (e.g. \"spf dkim dmarc\")"),
	G_STR("authserv_id", authserv_id, "", check_authserv_id,
	      "authserv-id of the Authentication-Results field we add (empty = hostname)"),

	/* --- DNS layer (issue 4) --- */
	G_STR("dns_forwarder", dns_forwarder, "", NULL,
	      "resolvers to ask: \"ADDR[@PORT] ...\" (IPv4/IPv6); empty = /etc/resolv.conf"),
	G_DUR("dns_timeout", dns_timeout, "5s", 100, 60 * MS_S,
	      "deadline of one DNS lookup; past it the lookup is a temporary error"),
	G_UINT("dns_cache_size", dns_cache_size, "20000", 16, 10000000,
	       "DNS answers kept in the scanner's shared cache"),
	G_SIZE("dns_cache_memory", dns_cache_memory, "32M", 64 * KIB, 4 * GIB,
	       "memory the kept DNS answers may take (a hostile zone's answers are up to 64 KiB each)"),
	G_DUR("dns_cache_max_ttl", dns_cache_max_ttl, "1d", 0, 7 * 24 * MS_H,
	      "longest time a DNS answer is kept, whatever its TTL"),
	G_DUR("dns_negative_ttl", dns_negative_ttl, "15m", 0, 24 * MS_H,
	      "longest time an NXDOMAIN or NODATA answer is kept (RFC 2308)"),
	G_DUR("dns_failure_ttl", dns_failure_ttl, "10s", 0, 5 * MS_M,
	      "how long a failed lookup (SERVFAIL) is remembered before asking again"),
	{ "dns_client_name", CFG_BOOL, CFG_GLOBAL, "yes", 0, 0, FLD(config, dns_client_name, int),
	  sizeof(int), 0, NULL, NULL, NULL,
	  "look up the client's forward-confirmed reverse DNS name for filters and the audit log", NULL },

	/* --- SPF (issue 4) --- */
#define SPF_ACTIONS (const struct cfg_word[]){ { "accept", MW_ACCEPT }, { "tag", MW_TAG }, \
	{ "quarantine", MW_QUARANTINE }, { "discard", MW_DISCARD }, { "tempfail", MW_TEMPFAIL }, \
	{ "reject", MW_REJECT }, { NULL, 0 } }
	G_ENUM("spf_fail_action", spf_fail_action, enum mw_action, "accept", SPF_ACTIONS,
	       "verdict for SPF fail: accept (score only), tag, quarantine, discard, tempfail, reject"),
	G_ENUM("spf_softfail_action", spf_softfail_action, enum mw_action, "accept", SPF_ACTIONS,
	       "verdict for SPF softfail (as spf_fail_action)"),
	G_ENUM("spf_neutral_action", spf_neutral_action, enum mw_action, "accept", SPF_ACTIONS,
	       "verdict for SPF neutral (as spf_fail_action)"),
	G_ENUM("spf_none_action", spf_none_action, enum mw_action, "accept", SPF_ACTIONS,
	       "verdict for SPF none, no record (as spf_fail_action)"),
	G_ENUM("spf_temperror_action", spf_temperror_action, enum mw_action, "accept", SPF_ACTIONS,
	       "verdict for SPF temperror, a DNS failure (as spf_fail_action)"),
	G_ENUM("spf_permerror_action", spf_permerror_action, enum mw_action, "accept", SPF_ACTIONS,
	       "verdict for SPF permerror, a broken record (as spf_fail_action)"),
#undef SPF_ACTIONS
	G_DBL("spf_pass_score", spf_pass_score, "-0.1", -1000, 1000, "score of SPF_PASS"),
	G_DBL("spf_fail_score", spf_fail_score, "3.0", -1000, 1000, "score of SPF_FAIL"),
	G_DBL("spf_softfail_score", spf_softfail_score, "1.0", -1000, 1000, "score of SPF_SOFTFAIL"),
	G_DBL("spf_neutral_score", spf_neutral_score, "0", -1000, 1000, "score of SPF_NEUTRAL"),
	G_DBL("spf_none_score", spf_none_score, "0", -1000, 1000, "score of SPF_NONE"),
	G_DBL("spf_temperror_score", spf_temperror_score, "0", -1000, 1000, "score of SPF_TEMPERROR"),
	G_DBL("spf_permerror_score", spf_permerror_score, "0.5", -1000, 1000, "score of SPF_PERMERROR"),
	G_STR("spf_reject_text", spf_reject_text, "SPF: %{i} is not allowed to send mail for %{d}",
	      NULL, "reply text of an SPF reject; %{d} domain, %{i} client address, %{e} its explanation"),
	G_STR("spf_skip_networks", spf_skip_networks, "127.0.0.0/8 ::1", NULL,
	      "clients in these networks (CIDR, space-separated) are not SPF-checked"),
	G_DUR("spf_timeout", spf_timeout, "15s", 100, 5 * MS_M,
	      "deadline of all DNS lookups of one SPF check together"),

	/* --- DKIM, DMARC (issue 4) --- */
	G_UINT("dkim_min_key_bits", dkim_min_key_bits, "1024", 512, 16384,
	       "DKIM: a signature made with a smaller RSA key never passes (result policy)"),
	G_ENUM("dkim_body_length", dkim_body_length, enum dkim_length_mode, "whole",
	       ((const struct cfg_word[]){ { "whole", DKIM_LENGTH_WHOLE }, { "accept", DKIM_LENGTH_ACCEPT },
	                                   { "refuse", DKIM_LENGTH_REFUSE }, { NULL, 0 } }),
	       "DKIM l= tag: whole (passes only if l= covers the whole body), accept, or refuse"),
	G_DUR("dkim_timeout", dkim_timeout, "10s", 100, 5 * MS_M,
	      "DKIM: deadline for all key lookups of one message (then temperror)"),
	G_UINT("dkim_max_signatures", dkim_max_signatures, "8", 1, 64,
	       "DKIM: signatures verified per message; further ones are ignored"),
	G_DBL("dkim_pass_score", dkim_pass_score, "-0.1", -100, 100,
	      "DKIM: score of a message with a valid signature (DKIM_VALID)"),
	G_DBL("dkim_fail_score", dkim_fail_score, "1.0", -100, 100,
	      "DKIM: score of a message with an invalid signature (DKIM_INVALID)"),
	{ "dkim_sign_key", CFG_LIST, CFG_GLOBAL, "", 0, 32, FLD(config, dkim_sign_keys, char (*)[1024]),
	  FSZ(config, dkim_sign_keys[0]), FLD(config, ndkim_sign_keys, unsigned), NULL, NULL, NULL,
	  "DKIM signing key: \"DOMAIN SELECTOR /path/key.pem\" (RSA or Ed25519); repeat for more", NULL },
	G_STR("dkim_sign_headers", dkim_sign_headers,
	      "from:to:cc:subject:date:message-id:reply-to:in-reply-to:references:mime-version:content-type:content-transfer-encoding",
	      NULL, "DKIM signing: header fields signed (colon-separated)"),
	G_STR("dkim_oversign_headers", dkim_oversign_headers, "from:to:subject", NULL,
	      "DKIM signing: fields also signed once more than present (nobody can add one)"),
	G_ENUM("dmarc_reject_action", dmarc_reject_action, enum dmarc_action, "reject", ((const struct cfg_word[]){ { "reject", DMARC_ACT_REJECT }, { "quarantine", DMARC_ACT_QUARANTINE }, { "tag", DMARC_ACT_TAG }, { "score", DMARC_ACT_SCORE }, { NULL, 0 } }),
	       "DMARC p=reject failure: reject (550 5.7.1), quarantine, tag or score"),
	G_ENUM("dmarc_quarantine_action", dmarc_quarantine_action, enum dmarc_action, "quarantine",
	       ((const struct cfg_word[]){ { "reject", DMARC_ACT_REJECT }, { "quarantine", DMARC_ACT_QUARANTINE }, { "tag", DMARC_ACT_TAG }, { "score", DMARC_ACT_SCORE }, { NULL, 0 } }), "DMARC p=quarantine failure: reject, quarantine, tag or score"),
	G_ENUM("dmarc_bad_from_action", dmarc_bad_from_action, enum dmarc_action, "reject",
	       ((const struct cfg_word[]){ { "reject", DMARC_ACT_REJECT }, { "quarantine", DMARC_ACT_QUARANTINE }, { "tag", DMARC_ACT_TAG }, { "score", DMARC_ACT_SCORE }, { NULL, 0 } }), "DMARC: message with several From addresses or none: reject, quarantine, tag or score"),
	G_DBL("dmarc_fail_score", dmarc_fail_score, "2.0", -100, 100,
	      "DMARC: score of a failing message (DMARC_FAIL; the only effect of p=none)"),
	G_STR("dmarc_psl_file", dmarc_psl_file, "/usr/share/publicsuffix/public_suffix_list.dat",
	      check_path, "DMARC: public suffix list for organizational domains"),

	/* --- antivirus (issue 5) --- */
	G_STR("av_database", av_database, "/var/lib/clamav", check_path,
	      "clamav: signature database directory (.cvd/.cld/.ndb/.hdb/.hsb/.ldb ...)"),
	G_STR("av_tmpdir", av_tmpdir, "", check_path_or_empty,
	      "clamav: directory for the engine's temporary files (tmpfs advised; empty = $TMPDIR or /tmp)"),
	G_SIZE("av_max_scansize", av_max_scansize, "100M", 0, 4 * GIB,
	       "clamav: most data scanned per message, archives unpacked included"),
	G_SIZE("av_max_filesize", av_max_filesize, "25M", 0, 4 * GIB,
	       "clamav: largest single file (part, archive member) scanned"),
	G_UINT("av_max_recursion", av_max_recursion, "25", 1, 255,
	       "clamav: deepest nesting of parts and archives scanned (mail adds levels a file scan has not)"),
	G_UINT("av_max_files", av_max_files, "10000", 1, 1000000,
	       "clamav: most files (parts, archive members) scanned per message"),
	G_UINT("av_max_zip_entries", av_max_zip_entries, "2000", 1, 1000000,
	       "clamav, clamd: most entries the zip attachments of a message may list; more is a scan limit "
	       "(libclamav's time grows with their square)"),
	G_DUR("av_max_scantime", av_max_scantime, "60s", 100, 24 * MS_H,
	      "clamav: longest time one message may be scanned"),
	G_ENUM("av_limit_action", av_limit_action, int, "accept",
	       ((const struct cfg_word[]){ { "accept", 0 }, { "tag", 1 }, { "tempfail", 2 }, { NULL, 0 } }),
	       "a message that hits a scan limit: accept, tag or tempfail (symbol AV_UNSCANNED)"),
	G_ENUM("av_fail_action", av_fail_action, int, "tempfail",
	       ((const struct cfg_word[]){ { "accept", 0 }, { "tag", 1 }, { "tempfail", 2 }, { NULL, 0 } }),
	       "scan failure (clamd down, engine error): tempfail, tag or accept (symbol AV_UNSCANNED)"),
	G_DUR("av_db_check_interval", av_db_check_interval, "60s", 0, 24 * MS_H,
	      "clamav: how often the database directory is checked for changes (0 = never)"),
	G_ENUM("av_inbound_action", av_inbound_action, int, "reject",
	       ((const struct cfg_word[]){ { "reject", 0 }, { "quarantine", 1 }, { "tag", 2 }, { NULL, 0 } }),
	       "inbound message with a virus: reject (554 5.7.1 with its name), quarantine or tag"),
	G_ENUM("av_outbound_action", av_outbound_action, int, "reject",
	       ((const struct cfg_word[]){ { "reject", 0 }, { "quarantine", 1 }, { "tag", 2 }, { NULL, 0 } }),
	       "outbound message with a virus: reject (554 5.7.1 with its name), quarantine or tag"),
	{ "av_headers", CFG_BOOL, CFG_GLOBAL, "yes", 0, 0, FLD(config, av_headers, int), sizeof(int),
	  0, NULL, NULL, NULL, "add X-Virus-Scanned and X-Virus-Status to delivered messages", NULL },
	G_STR("clamd_socket", clamd_socket, "/run/clamav/clamd.ctl", NULL,
	      "clamd: its socket, /path (unix) or HOST:PORT (TCP)"),
	G_DUR("clamd_connect_timeout", clamd_connect_timeout, "5s", 10, 10 * MS_M,
	      "clamd: how long to wait for the connection"),
	G_DUR("clamd_timeout", clamd_timeout, "60s", 10, 24 * MS_H,
	      "clamd: how long the whole scan (send and verdict) may take"),

	/* --- MIME, attachments (issue 5) --- */
#define ATTACH_ACTIONS ((const struct cfg_word[]){ { "none", ATTACH_NONE }, { "tag", ATTACH_TAG }, { "replace", ATTACH_REPLACE }, \
	{ "quarantine", ATTACH_QUARANTINE }, { "reject", ATTACH_REJECT }, { NULL, 0 } })
/* nothing to replace when the parts could not be walked */
#define ATTACH_UNCHECKED_ACTIONS ((const struct cfg_word[]){ { "none", ATTACH_NONE }, { "tag", ATTACH_TAG }, \
	{ "quarantine", ATTACH_QUARANTINE }, { "reject", ATTACH_REJECT }, { NULL, 0 } })
#define ATTACH_EXT_DEFAULT "ade adp app application bas bat chm cmd com cpl crt dll exe gadget hlp hta inf ins isp " \
	"jar js jse lnk mde msc msi msp mst pif ps1 psm1 reg scf scr sct shb shs sys url vb vbe vbs vxd " \
	"wsc wsf wsh iso img vhd vhdx"
#define ATTACH_TYPES_DEFAULT "application/x-dosexec application/x-msdownload application/x-msdos-program " \
	"application/vnd.microsoft.portable-executable application/x-executable application/x-sharedlib " \
	"application/x-pie-executable application/hta application/x-ms-shortcut application/x-msi"
	G_STR("attach_inbound_banned_extensions", attach_inbound_banned_extensions, ATTACH_EXT_DEFAULT, NULL,
	      "inbound: banned filename extensions (last one, after trailing dots/spaces), also inside archives"),
	G_STR("attach_outbound_banned_extensions", attach_outbound_banned_extensions, ATTACH_EXT_DEFAULT, NULL,
	      "outbound: banned filename extensions"),
	G_STR("attach_inbound_banned_types", attach_inbound_banned_types, ATTACH_TYPES_DEFAULT, NULL,
	      "inbound: banned MIME types, declared or detected from content (type/* allowed)"),
	G_STR("attach_outbound_banned_types", attach_outbound_banned_types, ATTACH_TYPES_DEFAULT, NULL,
	      "outbound: banned MIME types"),
	G_ENUM("attach_inbound_extension_action", attach_inbound_extension_action, int, "reject", ATTACH_ACTIONS,
	       "inbound: banned extension or double extension: none, tag, replace, quarantine or reject"),
	G_ENUM("attach_inbound_type_action", attach_inbound_type_action, int, "reject", ATTACH_ACTIONS,
	       "inbound: banned declared MIME type: none, tag, replace, quarantine or reject"),
	G_ENUM("attach_inbound_content_action", attach_inbound_content_action, int, "reject", ATTACH_ACTIONS,
	       "inbound: content of a banned type (libmagic) declared as another: none, tag, replace, quarantine, reject"),
	G_ENUM("attach_inbound_archive_action", attach_inbound_archive_action, int, "reject", ATTACH_ACTIONS,
	       "inbound: banned name or type inside an archive: none, tag, replace, quarantine or reject"),
	G_ENUM("attach_inbound_encrypted_action", attach_inbound_encrypted_action, int, "tag", ATTACH_ACTIONS,
	       "inbound: encrypted archive (cannot be checked): none, tag, replace, quarantine or reject"),
	G_ENUM("attach_outbound_extension_action", attach_outbound_extension_action, int, "reject", ATTACH_ACTIONS,
	       "outbound: banned extension or double extension"),
	G_ENUM("attach_outbound_type_action", attach_outbound_type_action, int, "reject", ATTACH_ACTIONS,
	       "outbound: banned declared MIME type"),
	G_ENUM("attach_outbound_content_action", attach_outbound_content_action, int, "reject", ATTACH_ACTIONS,
	       "outbound: content of a banned type declared as another"),
	G_ENUM("attach_outbound_archive_action", attach_outbound_archive_action, int, "reject", ATTACH_ACTIONS,
	       "outbound: banned name or type inside an archive"),
	G_ENUM("attach_outbound_encrypted_action", attach_outbound_encrypted_action, int, "none", ATTACH_ACTIONS,
	       "outbound: encrypted archive"),
	G_ENUM("attach_inbound_unchecked_action", attach_inbound_unchecked_action, int, "quarantine",
	       ATTACH_UNCHECKED_ACTIONS,
	       "inbound: MIME structure past the parse limits or an archive not read whole: none, tag, quarantine or reject"),
	G_ENUM("attach_outbound_unchecked_action", attach_outbound_unchecked_action, int, "tag",
	       ATTACH_UNCHECKED_ACTIONS,
	       "outbound: MIME structure past the parse limits or an archive not read whole"),
	{ "attach_scan_archives", CFG_BOOL, CFG_GLOBAL, "yes", 0, 0, FLD(config, attach_scan_archives, int),
	  sizeof(int), 0, NULL, NULL, NULL,
	  "look inside attached archives (zip, 7z, rar, tar, cab, iso) and compressed files (gzip, bzip2, xz, zstd, lzip, lzma) for banned names", NULL },
	G_UINT("attach_archive_depth", attach_archive_depth, "3", 1, 10,
	       "levels of archives inside archives that are opened"),
	G_UINT("attach_archive_max_entries", attach_archive_max_entries, "10000", 1, 1000000,
	       "archive entries looked at per message; more make the message unchecked"),
	G_SIZE("attach_archive_max_size", attach_archive_max_size, "20M", 1 * KIB, 2 * GIB,
	       "largest archive inside an archive that is unpacked to be looked into"),

	/* --- quarantine (issue 5) --- */
	G_AGE("quarantine_max_age", quarantine_max_age, "30d", 0, 3660 * 86400.0,
	      "quarantined messages older than this are removed (0 = keep them; at most 3660d)"),
	G_DUR("quarantine_expire_interval", quarantine_expire_interval, "1h", 1 * MS_S, 24 * MS_H,
	      "how often the daemon removes expired quarantined messages"),
	G_STR("quarantine_release_upstream", quarantine_release_upstream, "", check_upstream,
	      "MTA a released message is sent to: HOST:PORT (empty = its listener's upstream)"),
	{ "quarantine_delete_released", CFG_BOOL, CFG_GLOBAL, "no", 0, 1,
	  FLD(config, quarantine_delete_released, int), sizeof(int), 0, NULL, NULL, NULL,
	  "remove a message from the quarantine once released to all its recipients", NULL },

	/* --- rules (issue 6) --- */
	{ "rules_net_tests", CFG_BOOL, CFG_GLOBAL, "no", 0, 0, FLD(config, rules_net_tests, int), sizeof(int), 0,
	  NULL, NULL, NULL,
	  "run the rules' network tests (SpamAssassin's check_rbl*, uridnsbl/urirhssub lists, check_dns_sender) "
	  "through the DNS layer; off: they never hit, as SpamAssassin with network tests off", NULL },
	G_DUR("rules_dns_timeout", rules_dns_timeout, "3s", 10, 60 * MS_S,
	      "time all DNS lookups of the rules' network tests may take together on one message; "
	      "unanswered lookups count as not listed"),
	{ "rules_files", CFG_LIST, CFG_GLOBAL, "", 0, 64,
	  FLD(config, rules_files, char (*)[1024]), FSZ(config, rules_files[0]),
	  FLD(config, nrules_files, unsigned), NULL, NULL, NULL,
	  "rule files for the rules filter: a file, a directory (its *.cf) or a glob; repeat for more, empty clears; "
	  "none = the shipped rules in /usr/share/mailwarden/rules (add /usr/share/spamassassin for SpamAssassin's stock rules)", NULL },
	G_STR("rules_cache_dir", rules_cache_dir, "/var/lib/mailwarden/rules-cache", check_path_or_empty,
	      "directory for compiled rule databases, keyed by the rules' hash (empty = compile at every start)"),
	G_DUR("rules_time_budget", rules_time_budget, "2s", 0, 600 * MS_S,
	      "time all rules together may take on one message; rules not reached count as not hit (0 = no limit)"),
	G_ENUM("rules_score_set", rules_score_set, int, "auto",
	       ((const struct cfg_word[]){ { "auto", -1 }, { "0", 0 }, { "1", 1 }, { "2", 2 }, { "3", 3 }, { NULL, 0 } }),
	       "which value of SpamAssassin's 4-value score lines applies: 0 plain, 1 network, 2 Bayes, 3 both; "
	       "auto = 2 when the bayes filter runs, else 0, plus 1 with rules_net_tests"),

	/* --- store, Bayes (issue 6) --- */
	G_ENUM("store", store_backend, int, "lmdb",
	       ((const struct cfg_word[]){ { "lmdb", 0 }, { "redis", 1 }, { NULL, 0 } }),
	       "where greylisting, rate limits and Bayes keep state: lmdb (this machine) or redis (shared)"),
	G_STR("store_path", store_path, "/var/lib/mailwarden/store.lmdb", check_path,
	      "the LMDB file (store = lmdb)"),
	G_SIZE("store_map_size", store_map_size, "1G", 1024 * KIB, 1024 * GIB,
	       "largest size the LMDB file may grow to"),
	G_STR("store_redis", store_redis, "127.0.0.1:6379", NULL,
	      "Redis server HOST:PORT (store = redis)"),
	G_STR("store_prefix", store_prefix, "mw:", NULL,
	      "prefix of every key mailwarden writes to Redis"),
	G_STR("store_redis_user", store_redis_user, "", NULL,
	      "Redis ACL user mailwarden AUTHs as (Redis 6+; empty = the default user)"),
	G_STR("store_redis_password_file", store_redis_password_file, "", check_path_or_empty,
	      "file whose first line is the Redis password, sent with AUTH at every connect "
	      "(empty = no AUTH)"),
	G_DUR("store_timeout", store_timeout, "1s", 10, 60 * MS_S,
	      "deadline of every Redis connect and call"),
	G_ENUM("store_failure", store_fail_closed, int, "open",
	       ((const struct cfg_word[]){ { "open", 0 }, { "closed", 1 }, { NULL, 0 } }),
	       "store unreachable: open (greylisting/rate limits let mail through) or closed (tempfail)"),
	G_DBL("bayes_min_prob_strength", bayes_min_prob_strength, "0.346", 0, 0.5,
	      "Bayes: tokens whose probability is closer than this to 0.5 are ignored"),
	G_UINT("bayes_min_spam", bayes_min_spam, "200", 0, 1000000000,
	       "Bayes: spam messages that must be learned before Bayes scores"),
	G_UINT("bayes_min_ham", bayes_min_ham, "200", 0, 1000000000,
	       "Bayes: ham messages that must be learned before Bayes scores"),
	G_UINT("bayes_max_tokens", bayes_max_tokens, "150", 1, 10000,
	       "Bayes: most significant tokens of a message combined"),
	G_UINT("bayes_token_max", bayes_token_max, "2000000", 0, 1000000000,
	       "Bayes, store = lmdb: tokens kept; past it those seen in one message, then the others, "
	       "learned longest ago go first, down to three quarters (0 = no limit)"),
	G_AGE("bayes_token_ttl", bayes_token_ttl, "0", 0, 3650 * 86400,
	      "Bayes, store = redis: a token not learned again for this long expires (0 = a taught token never does, "
	      "one autolearn adds after bayes_autolearn_token_ttl)"),
	G_AGE("bayes_seen_ttl", bayes_seen_ttl, "90d", 0, 3650 * 86400,
	      "Bayes: how long a learned message is remembered as learned (0 = for ever)"),
	G_STR("bayes_scores", bayes_scores,
	      "BAYES_00=-3.0 BAYES_05=-0.5 BAYES_20=0 BAYES_40=0 BAYES_50=1.0 "
	      "BAYES_60=1.5 BAYES_80=1.5 BAYES_95=4.0 BAYES_99=6.0 BAYES_999=7.0", NULL,
	      "Bayes: score of each probability band symbol (BAYES_00 .. BAYES_999)"),
	{ "bayes_chars", CFG_BOOL, CFG_GLOBAL, "yes", 0, 0, FLD(config, bayes_chars, int),
	  sizeof(int), 0, NULL, NULL, NULL,
	  "Bayes: also weigh the character 4-gram models of the start of the message and of its header (trained by mailwarden learn and the daemon)", NULL },
	{ "bayes_list_boilerplate", CFG_BOOL, CFG_GLOBAL, "yes", 0, 0, FLD(config, bayes_list_boilerplate, int),
	  sizeof(int), 0, NULL, NULL, NULL,
	  "Bayes: leave a mailing list's boilerplate (the tokens in half of its latest learned messages) out of the word model's evidence where it leans to ham", NULL },
	G_AGE("bayes_retrain_interval", bayes_retrain_interval, "1h", 0, 7 * 86400,
	      "Bayes: how often the daemon trains the character models again when their examples "
	      "changed (autolearn, learn --no-train); one process of all sharing the store trains (0 = never)"),
	{ "bayes_autolearn", CFG_BOOL, CFG_GLOBAL, "no", 0, 0, FLD(config, bayes_autolearn, int),
	  sizeof(int), 0, NULL, NULL, NULL,
	  "Bayes: learn messages whose score (other filters) is clearly spam or ham", NULL },
	G_DBL("bayes_autolearn_spam", bayes_autolearn_spam, "12.0", -10000, 10000,
	      "Bayes: autolearn as spam at or above this score"),
	G_DBL("bayes_autolearn_ham", bayes_autolearn_ham, "0.1", -10000, 10000,
	      "Bayes: autolearn as ham at or below this score"),
	{ "bayes_autolearn_examples", CFG_BOOL, CFG_GLOBAL, "no", 0, 0, FLD(config, bayes_autolearn_examples, int),
	  sizeof(int), 0, NULL, NULL, NULL,
	  "Bayes: autolearn also keeps the message's example (3 KB for bayes_autolearn_example_ttl) for the "
	  "character models' training", NULL },
	G_AGE("bayes_autolearn_example_ttl", bayes_autolearn_example_ttl, "7d", 0, 3650 * 86400,
	      "Bayes, with bayes_autolearn_examples: how long an autolearned message's example is kept "
	      "(at most bayes_seen_ttl; 0 = as long as that): the store they take is the autolearn rate times this"),
	G_AGE("bayes_autolearn_token_ttl", bayes_autolearn_token_ttl, "21d", 0, 3650 * 86400,
	      "Bayes, store = redis with bayes_token_ttl = 0: a token autolearn adds to the store expires when "
	      "not autolearned again for this long, unless the site teaches it (0 = never: nothing bounds them)"),

	/* --- DNSBL, greylisting, rate limits, spamd (issue 6) --- */
	{ "dnsbl_list", CFG_LIST, CFG_GLOBAL, "", 0, 32, FLD(config, dnsbl_lists, char (*)[1024]),
	  FSZ(config, dnsbl_lists[0]), FLD(config, ndnsbl_lists, unsigned), NULL, NULL, NULL,
	  "DNS list: \"ZONE ip|domain|uri|sender CODE=SYMBOL:SCORE ...\"; repeat for more, empty clears", NULL },
	G_DUR("dnsbl_timeout", dnsbl_timeout, "0", 0, 60 * MS_S,
	      "deadline of one DNS list lookup (0 = dns_timeout)"),
	G_UINT("dnsbl_max_domains", dnsbl_max_domains, "20", 0, 1000,
	       "URI and sender domains looked up per message in domain lists"),
	G_DUR("greylist_delay", greylist_delay, "300s", 0, 24 * MS_H,
	      "greylisting: how long a new triplet is refused (451 4.7.1)"),
	G_DUR("greylist_retry_window", greylist_retry_window, "2d", 1 * MS_S, 30 * 24 * MS_H,
	      "greylisting: how long a first attempt is remembered, waiting for its retry"),
	G_DUR("greylist_pass_lifetime", greylist_pass_lifetime, "35d", 1 * MS_S, 45 * 24 * MS_H,
	      "greylisting: how long a triplet that passed is let through without delay"),
	G_STR("greylist_whitelist", greylist_whitelist, "", NULL,
	      "greylisting: client IPs/networks, client host names (.suffix), sender domains "
	      "(@dom, with an SPF pass only) and recipients (to:) never greylisted"),
	G_STR("greylist_whitelist_file", greylist_whitelist_file, "", check_path_or_empty,
	      "greylisting: a file of greylist_whitelist entries, one or more a line, a # starting "
	      "a word a comment (read at start and reload; empty = none)"),
	G_UINT("greylist_auto_whitelist_clients", greylist_auto_whitelist_clients, "5", 0, 1000,
	       "greylisting: a client network whose messages passed greylisting by retrying this many "
	       "times, an hour apart at least, is not greylisted for greylist_pass_lifetime (0 = off)"),
	G_STR("ratelimit_ip", ratelimit_ip, "", NULL,
	      "rate limit per client IP (IPv6: per /64): COUNT/WINDOW, e.g. 100/1h (empty = off)"),
	G_STR("ratelimit_sender", ratelimit_sender, "", NULL,
	      "rate limit per envelope sender: COUNT/WINDOW (empty = off)"),
	G_STR("ratelimit_user", ratelimit_user, "", NULL,
	      "rate limit per authenticated user: COUNT/WINDOW (empty = off)"),
	G_STR("ratelimit_rcpt_domain", ratelimit_rcpt_domain, "", NULL,
	      "rate limit per recipient domain (in IDNA A-label form): COUNT/WINDOW (empty = off)"),
	G_STR("spamd_address", spamd_address, "127.0.0.1:783", NULL,
	      "SpamAssassin spamd to ask: HOST:PORT"),
	G_DUR("spamd_timeout", spamd_timeout, "30s", 10, 600 * MS_S,
	      "deadline of the whole exchange with spamd"),
	G_SIZE("spamd_max_size", spamd_max_size, "512k", 1 * KIB, 1 * GIB,
	       "larger messages are not sent to spamd"),
	G_DBL("spamd_weight", spamd_weight, "1.0", -100, 100,
	      "spamd's score is added to ours multiplied by this"),

	/* --- milter (issue 7) --- */
	G_STR("milter_listen", milter_listen, "", check_milter_listen,
	      "milter socket for Postfix/Sendmail: inet:PORT@ADDR, inet6:PORT@ADDR or unix:/path (empty = no milter)"),
	G_STR("milter_socket_mode", milter_socket_mode, "0660", check_socket_mode,
	      "mode of a unix: milter socket (octal); the MTA needs write access to connect"),
	G_STR("milter_socket_group", milter_socket_group, "", check_group,
	      "group of a unix: milter socket, one the MTA's user is in (empty = user's own group)"),
	G_DUR("milter_timeout", milter_timeout, "150s", 100, 10 * MS_M,
	      "how long the milter waits for the scanner at end of message (keep it below Postfix's milter_content_timeout and Sendmail's T=E:)"),
	G_ENUM("milter_default_action", milter_default_action, enum milter_fail_action, "tempfail",
	       milter_fail_words, "milter answer when the scanner is down or late: tempfail or accept"),
	G_STR("milter_internal_networks", milter_internal_networks, "127.0.0.0/8 ::1/128", check_cidr_list,
	      "client networks whose mail the milter treats as outbound (so is authenticated mail)"),
	G_ENUM("milter_quarantine", milter_quarantine, enum milter_quarantine_mode, "store",
	       milter_quarantine_words, "milter quarantine: store (mailwarden's store) or mta (the MTA's hold queue)"),
	{ "milter_early", CFG_BOOL, CFG_GLOBAL, "yes", 0, 0, FLD(config, milter_early, int),
	  sizeof(int), 0, NULL, NULL, NULL,
	  "milter: ask the filters for an envelope verdict at RCPT (SPF fail, greylisting) so the MTA refuses before DATA", NULL },
	G_DUR("milter_early_timeout", milter_early_timeout, "8s", 100, 10 * MS_M,
	      "how long the milter waits for an envelope verdict at RCPT before it lets the recipient through (keep it below the MTA's wait for that reply: Postfix's milter_command_timeout, 30s; Sendmail's T=R:, 10s)"),
	G_UINT("milter_max_connections", milter_max_connections, "1000", 0, 1000000,
	       "MTA connections the milter serves at once (0: no bound); past it a new one is closed at once and the MTA applies its milter_default_action"),
	G_DUR("milter_peer_timeout", milter_peer_timeout, "600s", 1 * MS_S, 24 * MS_H,
	      "how long the milter waits on the MTA (the rest of a packet, a write, the next command) before it drops the connection; read at start only (keep it above Postfix's smtpd_timeout)"),

	/* --- transport: TLS, AUTH, XCLIENT, PROXY (issue 3) --- */
#define TLS_VERSION_WORDS ((const struct cfg_word[]){ { "TLSv1.2", 0x0303 }, { "TLSv1.3", 0x0304 }, { NULL, 0 } })
	G_ENUM("tls_min_version", tls_min_version, int, "TLSv1.2", TLS_VERSION_WORDS,
	       "lowest TLS version on both legs: TLSv1.2 or TLSv1.3"),
	G_STR("tls_ciphers", tls_ciphers, "HIGH:!aNULL:!MD5:!RC4:!3DES", NULL,
	      "OpenSSL cipher list for TLS 1.2 (empty = OpenSSL's default)"),
	G_STR("tls_ciphersuites", tls_ciphersuites, "", NULL,
	      "OpenSSL TLS 1.3 ciphersuites (empty = OpenSSL's default)"),
	G_STR("nat64_prefixes", nat64_prefixes, "64:ff9b::/96", check_nat64_prefixes,
	      "IPv6 prefixes (/96, or /32../64 of RFC 6052) of a translator's IPv4 clients (SIIT-DC, NAT64): such a client is checked as its IPv4 address (empty = none)"),

	/* [listener NAME] */
	L_STR("listen", listen, "", check_listen,
	      "address to accept on: IPv4:PORT, [IPv6]:PORT or *:PORT (required)"),
	L_STR("upstream", upstream, "", check_upstream,
	      "MTA to relay to: HOST:PORT or [IPv6]:PORT (required)"),
	L_ENUM("direction", direction, enum mw_direction, "inbound", direction_words,
	       "inbound or outbound (unchecked by SPF/DMARC/greylisting, DKIM-signed); with auth = relay, only once authenticated"),

	/* --- per-listener transport (issue 3) --- */
#define L_BOOL(n, f, def, doc) \
	{ n, CFG_BOOL, CFG_LISTENER, def, 0, 0, FLD(listener_cfg, f, int), sizeof(int), 0, NULL, NULL, NULL, doc, NULL }
	L_ENUM("tls", tls_mode, enum mw_tls_mode, "none",
	       ((const struct cfg_word[]){ { "none", MW_TLS_NONE }, { "starttls", MW_TLS_STARTTLS },
	                                   { "implicit", MW_TLS_IMPLICIT }, { NULL, 0 } }),
	       "TLS towards clients: none, starttls (offered in EHLO) or implicit (port 465)"),
	L_STR("tls_cert", tls_cert, "", NULL,
	      "certificate chain file(s) (PEM), space separated; SNI picks among several"),
	L_STR("tls_key", tls_key, "", NULL,
	      "private key file(s) (PEM), space separated, in the order of tls_cert"),
	L_BOOL("tls_required", tls_required, "no",
	       "530 5.7.0 to every command but EHLO, HELO, STARTTLS, NOOP, RSET and QUIT until the client started TLS"),
	L_ENUM("upstream_tls", upstream_tls, enum mw_upstream_tls, "off",
	       ((const struct cfg_word[]){ { "off", MW_UPTLS_OFF }, { "opportunistic", MW_UPTLS_OPPORTUNISTIC },
	                                   { "required", MW_UPTLS_REQUIRED }, { NULL, 0 } }),
	       "STARTTLS towards the upstream: off, opportunistic (when offered) or required"),
	L_STR("upstream_tls_ca_file", upstream_tls_ca_file, "", check_path_or_empty,
	      "verify the upstream's certificate against these CAs (empty = no verification)"),
	L_STR("upstream_tls_name", upstream_tls_name, "", NULL,
	      "name the upstream's certificate must carry (empty = host part of upstream)"),
	L_ENUM("auth", auth, enum mw_auth_mode, "none",
	       ((const struct cfg_word[]){ { "none", MW_AUTH_NONE }, { "relay", MW_AUTH_RELAY }, { NULL, 0 } }),
	       "SMTP AUTH: none, or relay (PLAIN/LOGIN checked by the upstream)"),
	L_BOOL("auth_plaintext", auth_plaintext, "no",
	       "allow AUTH before the client started TLS (credentials in clear)"),
	L_BOOL("upstream_xclient", upstream_xclient, "yes",
	       "tell the upstream the real client with XCLIENT (or XFORWARD) when it offers it"),
	L_BOOL("proxy_protocol", proxy_protocol, "no",
	       "connections start with a PROXY protocol v1 or v2 header (HAProxy send-proxy)"),
	L_STR("proxy_protocol_from", proxy_protocol_from, "127.0.0.0/8 ::1", NULL,
	      "networks allowed to send the PROXY header (others are refused), space separated"),
	L_STR("xforward_from", xforward_from, "", NULL,
	      "peers (a Postfix smtpd with smtpd_proxy_filter) whose XFORWARD names the client every "
	      "check sees; empty = none (XFORWARD refused)"),
	L_BOOL("transparent", transparent, "no",
	       "relay to each connection's original destination (nftables redirect or TPROXY)"),
};
#define NOPTS (sizeof cfg_opts / sizeof cfg_opts[0])

_Static_assert(sizeof(enum log_target) == sizeof(int), "enum size");
_Static_assert(sizeof(enum bare_newline_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum early_talker_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum vrfy_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum spam_headers_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum mw_direction) == sizeof(int), "enum size");
_Static_assert(sizeof(enum milter_fail_action) == sizeof(int), "enum size");
_Static_assert(sizeof(enum milter_quarantine_mode) == sizeof(int), "enum size");

/* ------------------------------------------------------------------ */
/* small helpers                                                        */

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* fail - format a message into err; returns -1 */
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* esc - printable copy of s for an error message: control bytes as \xHH,
 * cut with "..." to fit len (at least 8) */
static const char *esc(char *buf, size_t len, const char *s)
{
	size_t o = 0;

	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		size_t need = (ch < 0x20 || ch == 0x7f) ? 4 : 1;
		if (o + need + 4 > len) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (need == 4)
			snprintf(buf + o, len - o, "\\x%02x", ch);
		else
			buf[o] = (char)ch;
		o += need;
	}
	buf[o] = '\0';
	return buf;
}

/* opt_find - the row called name in scope, or NULL */
static const struct cfg_opt *opt_find(const char *name, enum cfg_scope scope)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (cfg_opts[i].scope == scope && strcmp(cfg_opts[i].name, name) == 0)
			return &cfg_opts[i];
	return NULL;
}

/* is_digits - non-empty and only 0-9 */
static int is_digits(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* parse_u64 - decimal digits only (no sign, no spaces), with overflow check */
static int parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* ------------------------------------------------------------------ */
/* value parsers (exported ones first)                                  */

/* config_parse_size - "10M", "512k", "1G", "2T" (binary multiples) or bare
 * bytes.  0 or -1 (syntax or overflow). */
int config_parse_size(const char *s, uint64_t *out)
{
	size_t n = strlen(s);
	uint64_t v, mul = 1;

	if (n > 1 && !isdigit((unsigned char)s[n - 1])) {
		switch (s[n - 1]) {
		case 'k': case 'K': mul = 1ULL << 10; break;
		case 'm': case 'M': mul = 1ULL << 20; break;
		case 'g': case 'G': mul = 1ULL << 30; break;
		case 't': case 'T': mul = 1ULL << 40; break;
		default: return -1;
		}
		n--;
	}
	if (parse_u64(s, n, &v) < 0 || v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

/* parse_duration_ms - "250ms", "300s", "5m", "1h", "1d" or bare seconds,
 * into milliseconds (at most UINT64_MAX).  0 or -1. */
static int parse_duration_ms(const char *s, uint64_t *ms)
{
	size_t n = strlen(s), d = 0;
	uint64_t v, mul;

	while (d < n && isdigit((unsigned char)s[d]))
		d++;
	if (d == 0)
		return -1;
	if (d == n || strcmp(s + d, "s") == 0)
		mul = 1000;
	else if (strcmp(s + d, "ms") == 0)
		mul = 1;
	else if (strcmp(s + d, "m") == 0)
		mul = 60ULL * 1000;
	else if (strcmp(s + d, "h") == 0)
		mul = 3600ULL * 1000;
	else if (strcmp(s + d, "d") == 0)
		mul = 86400ULL * 1000;
	else
		return -1;
	if (parse_u64(s, d, &v) < 0 || v > UINT64_MAX / mul)
		return -1;
	*ms = v * mul;
	return 0;
}

/* config_parse_duration - a duration into milliseconds (at most UINT_MAX).
 * 0 or -1. */
int config_parse_duration(const char *s, unsigned *ms)
{
	uint64_t v;

	if (parse_duration_ms(s, &v) < 0 || v > UINT_MAX)
		return -1;
	*ms = (unsigned)v;
	return 0;
}

/* config_parse_age - a duration of whole seconds ("30d", "3600s", "1000ms")
 * into seconds (at most UINT_MAX).  0 or -1. */
int config_parse_age(const char *s, unsigned *sec)
{
	uint64_t v;

	if (parse_duration_ms(s, &v) < 0 || v % 1000 != 0 || v / 1000 > UINT_MAX)
		return -1;
	*sec = (unsigned)(v / 1000);
	return 0;
}

/* config_parse_bool - yes/no, true/false, on/off, 1/0 (any case).  0 or -1. */
int config_parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) { *out = 1; return 0; }
		if (strcasecmp(s, no[i]) == 0) { *out = 0; return 0; }
	}
	return -1;
}

/* parse_double - a plain decimal number ("5", "-1.5", "2.5e1"); no hex,
 * inf or nan. */
static int parse_double(const char *s, double *out)
{
	char *end;
	double v;

	if (*s == '\0' || strspn(s, "0123456789.+-eE") != strlen(s))
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (*end != '\0' || errno == ERANGE || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

/* ------------------------------------------------------------------ */
/* formatting (dump and bound messages)                                 */

/* fmt_size - in the largest binary unit that is exact: "50M", "1000" */
static void fmt_size(char *buf, size_t len, uint64_t v)
{
	static const char units[] = "kMGT";
	int u = -1;

	while (v != 0 && v % 1024 == 0 && u < 3) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, units[u]);
}

/* fmt_duration - "250ms" or "300s": exact, and reads back */
static void fmt_duration(char *buf, size_t len, uint64_t ms)
{
	if (ms % 1000 != 0)
		snprintf(buf, len, "%llums", (unsigned long long)ms);
	else
		snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
}

/* fmt_age - seconds as "30d", "12h", "90m" or "45s": exact, and reads back */
static void fmt_age(char *buf, size_t len, uint64_t sec)
{
	if (sec != 0 && sec % 86400 == 0)
		snprintf(buf, len, "%llud", (unsigned long long)(sec / 86400));
	else if (sec != 0 && sec % 3600 == 0)
		snprintf(buf, len, "%lluh", (unsigned long long)(sec / 3600));
	else if (sec != 0 && sec % 60 == 0)
		snprintf(buf, len, "%llum", (unsigned long long)(sec / 60));
	else
		snprintf(buf, len, "%llus", (unsigned long long)sec);
}

/* fmt_double - shortest of %g / %.17g that reads back as the same value */
static void fmt_double(char *buf, size_t len, double v)
{
	snprintf(buf, len, "%g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, len, "%.17g", v);
	if (strpbrk(buf, ".e") == NULL && strlen(buf) + 2 < len)
		strcat(buf, ".0");
}

/* fmt_bound - a bound of o in the unit its values are written in */
static void fmt_bound(const struct cfg_opt *o, double b, char *buf, size_t len)
{
	switch (o->type) {
	case CFG_SIZE:     fmt_size(buf, len, (uint64_t)b); break;
	case CFG_DURATION: fmt_duration(buf, len, (uint64_t)b); break;
	case CFG_AGE:      fmt_age(buf, len, (uint64_t)b); break;
	case CFG_DOUBLE:   fmt_double(buf, len, b); break;
	default:           snprintf(buf, len, "%llu", (unsigned long long)b); break;
	}
}

/* check_bounds - v within o->min..o->max; text is v as written */
static int check_bounds(const struct cfg_opt *o, double v, const char *text,
                        char *err, size_t errlen)
{
	char b[64];

	if (v < o->min) {
		fmt_bound(o, o->min, b, sizeof b);
		return fail(err, errlen, "value %s below minimum %s", text, b);
	}
	if (v > o->max) {
		fmt_bound(o, o->max, b, sizeof b);
		if (o->lowered != NULL)
			return fail(err, errlen, "value %s above maximum %s (%s)", text, b, o->lowered);
		return fail(err, errlen, "value %s above maximum %s", text, b);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* syntax checks of string settings                                     */

/* check_ascii - printable ASCII only (replies and headers go on the wire) */
static int check_ascii(const char *v, char *err, size_t errlen)
{
	for (; *v != '\0'; v++)
		if ((unsigned char)*v < 0x20 || (unsigned char)*v > 0x7e)
			return fail(err, errlen, "only printable ASCII is allowed");
	return 0;
}

/* is_ldh_name - a DNS name of letters, digits, '-' and '_' (no empty
 * label, no label starting or ending with '-'), at most 253 characters */
static int is_ldh_name(const char *s, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
		} else if (isalnum((unsigned char)ch) || ch == '-' || ch == '_') {
			if (label == 0 && ch == '-')
				return 0;
			if (++label > 63)
				return 0;
		} else
			return 0;
	}
	return s[n - 1] != '-';
}

/* is_ipv4 / is_ipv6 - n bytes of s are an address inet_pton accepts */
static int is_ipv4(const char *s, size_t n)
{
	char buf[INET_ADDRSTRLEN];
	struct in_addr a;

	if (n == 0 || n >= sizeof buf)
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET, buf, &a) == 1;
}

static int is_ipv6(const char *s, size_t n)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr a;

	if (n == 0 || n >= sizeof buf)
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET6, buf, &a) == 1;
}

/* check_hostname - a host name, [IPv4] or [IPv6:addr]: it goes into the
 * greeting and EHLO, so nothing else */
static int check_hostname(const char *v, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (n >= 2 && v[0] == '[' && v[n - 1] == ']') {
		if (is_ipv4(v + 1, n - 2) ||
		    (n > 7 && strncasecmp(v + 1, "IPv6:", 5) == 0 && is_ipv6(v + 6, n - 7)))
			return 0;
		return fail(err, errlen, "'%s' is not an address literal", v);
	}
	if (!is_ldh_name(v, n))
		return fail(err, errlen, "'%s' is not a host name", v);
	return 0;
}

/* default_hostname - gethostname(), or "localhost" if that is unusable */
static void default_hostname(char *buf, size_t len)
{
	char h[256];

	if (gethostname(h, sizeof h) == 0) {
		h[sizeof h - 1] = '\0';
		if (check_hostname(h, NULL, 0) == 0 && strlen(h) < len) {
			snprintf(buf, len, "%s", h);
			return;
		}
	}
	snprintf(buf, len, "localhost");
}

/* check_user - portable user name characters; existence is checked when
 * privileges are dropped, not here */
static int check_user(const char *v, char *err, size_t errlen)
{
	if (*v == '-' || strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                           "0123456789_.-") != strlen(v))
		return fail(err, errlen, "'%s' is not a user name", v);
	return 0;
}

/* check_facility - the names log_init() knows */
static int check_facility(const char *v, char *err, size_t errlen)
{
	static const char *const fac[] = {
		"mail", "daemon", "user", "auth", "authpriv", "local0", "local1",
		"local2", "local3", "local4", "local5", "local6", "local7"
	};

	for (size_t i = 0; i < sizeof fac / sizeof fac[0]; i++)
		if (strcmp(v, fac[i]) == 0)
			return 0;
	return fail(err, errlen, "'%s' is not a syslog facility (mail, daemon, user, "
	            "auth, authpriv, local0..local7)", v);
}

/* check_path - absolute: the daemon's working directory is no anchor */
static int check_path(const char *v, char *err, size_t errlen)
{
	if (v[0] != '/')
		return fail(err, errlen, "'%s' is not an absolute path", v);
	return 0;
}

static int check_path_or_empty(const char *v, char *err, size_t errlen)
{
	return *v == '\0' ? 0 : check_path(v, err, errlen);
}

/* check_plugin - "PATH [key=value]...": PATH non-empty, each further word
 * has a non-empty key and an '=' (values may be empty). */
static int check_plugin(const char *v, char *err, size_t errlen)
{
	const char *p = v, *w;
	size_t n;
	int first = 1;

	for (;;) {
		p += strspn(p, " \t");
		if (*p == '\0')
			break;
		w = p;
		n = strcspn(p, " \t");
		p += n;
		if (first) {
			first = 0;
			continue;
		}
		const char *eq = memchr(w, '=', n);
		if (eq == NULL || eq == w)
			return fail(err, errlen, "argument '%.*s' is not key=value", (int)n, w);
	}
	if (first)
		return fail(err, errlen, "empty plugin path");
	return 0;
}

/* check_reply - "CODE[ X.Y.Z] TEXT": CODE a reply code of the given class
 * (x[0-5][0-9]), X.Y.Z an RFC 3463 enhanced code of the same class, TEXT
 * printable ASCII and not empty. */
static int check_reply(const char *v, char cls, char *err, size_t errlen)
{
	const char *p = v;

	if (check_ascii(v, err, errlen) < 0)
		return -1;
	if (!(p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '5' &&
	      isdigit((unsigned char)p[2])) || (p[3] != ' ' && p[3] != '\0'))
		return fail(err, errlen, "'%s' does not start with a reply code %cxx", v, cls);
	if (p[0] != cls)
		return fail(err, errlen, "'%s': reply code must be %cxx", v, cls);
	p += 3;
	p += strspn(p, " ");
	if (isdigit((unsigned char)p[0]) && p[1] == '.') {
		/* enhanced status code: class.subject.detail, 1-3 digits each */
		const char *q = p + 2;
		size_t a = strspn(q, "0123456789");
		if (p[0] != cls || a < 1 || a > 3 || q[a] != '.')
			goto bad_enh;
		q += a + 1;
		a = strspn(q, "0123456789");
		if (a < 1 || a > 3 || (q[a] != ' ' && q[a] != '\0'))
			goto bad_enh;
		p = q + a;
		p += strspn(p, " ");
	}
	if (*p == '\0')
		return fail(err, errlen, "'%s': reply text is missing", v);
	return 0;
bad_enh:
	return fail(err, errlen, "'%s': enhanced status code must be %c.N.N", v, cls);
}

/* the reply checks of the table, one per class */
static int check_reject_reply(const char *v, char *err, size_t errlen)
{
	return check_reply(v, '5', err, errlen);
}

static int check_tempfail_reply(const char *v, char *err, size_t errlen)
{
	return check_reply(v, '4', err, errlen);
}

static int check_accept_reply(const char *v, char *err, size_t errlen)
{
	return check_reply(v, '2', err, errlen);
}

static int check_subject_tag(const char *v, char *err, size_t errlen)
{
	return check_ascii(v, err, errlen);
}

/* check_filter_list - names of built-ins, [a-z0-9_] words separated by
 * blanks; whether each exists is checked when the pipeline is built (the
 * table lives in filters/, which the config does not know). */
static int check_filter_list(const char *v, char *err, size_t errlen)
{
	if (strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_ \t") != strlen(v))
		return fail(err, errlen, "filter names are [a-z0-9_] words separated by blanks");
	return 0;
}

/* check_authserv_id - a domain-like token (RFC 8601 value: no blanks, ';' or '(') */
static int check_authserv_id(const char *v, char *err, size_t errlen)
{
	if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != strlen(v))
		return fail(err, errlen, "authserv_id must be a host name like mx.example.com");
	return 0;
}

/* check_milter_listen - libmilter's socket syntax */
/* check_socket_mode - an octal mode for the milter socket, 0..0777 */
static int check_socket_mode(const char *v, char *err, size_t errlen)
{
	if (v[0] == '\0' || strlen(v) > 4 || strspn(v, "01234567") != strlen(v)
	    || strtoul(v, NULL, 8) > 0777)
		return fail(err, errlen, "'%s' is not an octal mode (0000..0777)", v);
	return 0;
}

/* check_group - a group name (whether it exists is checked at start) */
static int check_group(const char *v, char *err, size_t errlen)
{
	if (*v == '-' || strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                           "0123456789_.-") != strlen(v))
		return fail(err, errlen, "'%s' is not a group name", v);
	return 0;
}

static int check_milter_listen(const char *v, char *err, size_t errlen)
{
	const char *at;
	uint64_t port;

	if (v[0] == '\0')
		return 0;
	if (strncmp(v, "unix:", 5) == 0 || strncmp(v, "local:", 6) == 0) {
		const char *path = strchr(v, ':') + 1;
		if (path[0] != '/' || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return fail(err, errlen, "unix: needs an absolute path of at most 107 bytes");
		return 0;
	}
	if (strncmp(v, "inet:", 5) != 0 && strncmp(v, "inet6:", 6) != 0)
		return fail(err, errlen, "give inet:PORT@ADDR, inet6:PORT@ADDR or unix:/path");
	v = strchr(v, ':') + 1;
	at = strchr(v, '@');
	if (at == NULL || at == v || at[1] == '\0' || parse_u64(v, (size_t)(at - v), &port) < 0
	    || port < 1 || port > 65535)
		return fail(err, errlen, "give inet:PORT@ADDR with a port 1..65535 and an address");
	return 0;
}

/* check_cidr_list - blank-separated ADDR[/LEN], IPv4 or IPv6 */
static int check_cidr_list(const char *v, char *err, size_t errlen)
{
	for (;;) {
		char word[64], *slash;
		unsigned char buf[16];
		size_t n;
		uint64_t len = 0;
		int v6;

		v += strspn(v, " \t,");
		if ((n = strcspn(v, " \t,")) == 0)
			return 0;
		if (n >= sizeof(word))
			return fail(err, errlen, "\"%.*s\" is not an address/prefix", (int)n, v);
		memcpy(word, v, n);
		word[n] = '\0';
		v += n;
		if ((slash = strchr(word, '/')) != NULL)
			*slash = '\0';
		v6 = strchr(word, ':') != NULL;
		if (inet_pton(v6 ? AF_INET6 : AF_INET, word, buf) != 1
		    || (slash != NULL && (parse_u64(slash + 1, strlen(slash + 1), &len) < 0
		        || len > (v6 ? 128u : 32u)
		        /* a mapped network is matched as IPv4 (ipnet.h): one wider
		         * than ::ffff:0:0/96 has no IPv4 meaning */
		        || (v6 && memcmp(buf, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0 && len < 96))))
			return fail(err, errlen, "\"%s%s%s\" is not an address/prefix", word,
			    slash ? "/" : "", slash ? slash + 1 : "");
	}
}

/* check_nat64_prefixes - RFC 6052 prefixes (ipnet_xlat_parse) */
static int check_nat64_prefixes(const char *v, char *err, size_t errlen)
{
	struct ipnet nets[IPNET_XLAT_MAX];
	size_t n;

	return ipnet_xlat_parse(v, nets, &n, err, errlen);
}

/* parse_port - 1..65535, decimal */
static int parse_port(const char *s)
{
	uint64_t v;

	if (strlen(s) > 5 || parse_u64(s, strlen(s), &v) < 0 || v < 1 || v > 65535)
		return -1;
	return (int)v;
}

/* split_hostport - "[h]:p" or "h:p" -> host span and port text; the host of
 * the bracket form is returned without brackets and *bracket set. */
static int split_hostport(const char *v, const char **host, size_t *hlen,
                          const char **port, int *bracket, char *err, size_t errlen)
{
	const char *colon;

	*bracket = 0;
	if (v[0] == '[') {
		const char *close = strchr(v, ']');
		if (close == NULL)
			return fail(err, errlen, "'%s': missing ']'", v);
		if (close[1] != ':')
			return fail(err, errlen, "'%s': expected [IPv6]:PORT", v);
		*host = v + 1;
		*hlen = (size_t)(close - v - 1);
		*port = close + 2;
		*bracket = 1;
		return 0;
	}
	colon = strrchr(v, ':');
	if (colon == NULL)
		return fail(err, errlen, "'%s': missing ':PORT'", v);
	if (memchr(v, ':', (size_t)(colon - v)) != NULL)
		return fail(err, errlen, "'%s': an IPv6 address must be written [ADDR]:PORT", v);
	*host = v;
	*hlen = (size_t)(colon - v);
	*port = colon + 1;
	return 0;
}

/* check_listen - IPv4:PORT, [IPv6]:PORT or *:PORT; "" = not set yet */
static int check_listen(const char *v, char *err, size_t errlen)
{
	const char *host, *port;
	size_t hlen;
	int br;

	if (*v == '\0')
		return 0;       /* "not set"; a listener without listen fails later */
	if (split_hostport(v, &host, &hlen, &port, &br, err, errlen) < 0)
		return -1;
	if (br ? !is_ipv6(host, hlen)
	       : !(is_ipv4(host, hlen) || (hlen == 1 && host[0] == '*')))
		return fail(err, errlen, "'%s': address must be IPv4, [IPv6] or *", v);
	if (parse_port(port) < 0)
		return fail(err, errlen, "'%s': port must be 1..65535", v);
	return 0;
}

/* check_upstream - NAME:PORT, IPv4:PORT or [IPv6]:PORT; never resolved
 * here; "" = not set yet */
static int check_upstream(const char *v, char *err, size_t errlen)
{
	const char *host, *port;
	size_t hlen;
	int br;

	if (*v == '\0')
		return 0;
	if (split_hostport(v, &host, &hlen, &port, &br, err, errlen) < 0)
		return -1;
	if (br ? !is_ipv6(host, hlen) : !(is_ipv4(host, hlen) || is_ldh_name(host, hlen)))
		return fail(err, errlen, "'%s': host must be a name, IPv4 or [IPv6]", v);
	if (parse_port(port) < 0)
		return fail(err, errlen, "'%s': port must be 1..65535", v);
	return 0;
}

/* check_listener_name - 1..63 of [A-Za-z0-9_.-] (it appears in logs) */
static int check_listener_name(const char *v, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (n == 0 || n >= FSZ(listener_cfg, name) ||
	    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	              "0123456789_.-") != n) {
		char e[80];
		return fail(err, errlen, "bad listener name '%s' (1..%zu of A-Z a-z 0-9 _ . -)",
		            esc(e, sizeof e, v), FSZ(listener_cfg, name) - 1);
	}
	/* the names the other front ends give their requests: the audit log
	 * tells them apart by it */
	if (strcmp(v, SCAN_LISTENER_MILTER) == 0 || strcmp(v, SCAN_LISTENER_CLI) == 0)
		return fail(err, errlen, "listener name '%s' is reserved (the %s)", v,
		            strcmp(v, SCAN_LISTENER_MILTER) == 0 ? "milter front end" : "scan command");
	return 0;
}

/* ------------------------------------------------------------------ */
/* setting one value                                                    */

/* opt_set - parse value for o into the struct at base (struct config or
 * struct listener_cfg).  value: borrowed.  0, or -1 with a message (without
 * the name) in err; on error the field is left as it was. */
static int opt_set(const struct cfg_opt *o, void *base, const char *value,
                   char *err, size_t errlen)
{
	char *field = (char *)base + o->off;
	char e[CFG_ERR_MAX], ev[160], v[CFG_LINE_MAX + 1];
	size_t n = strlen(value);
	uint64_t u64;
	unsigned u;
	double d;
	int b;

	/* "..." keeps outer whitespace; the quotes go */
	if (n >= 1 && value[0] == '"') {
		if (n < 2 || value[n - 1] != '"')
			return fail(err, errlen, "unbalanced quote");
		value++;
		n -= 2;
	}
	if (n >= sizeof v)
		return fail(err, errlen, "value too long");
	memcpy(v, value, n);
	v[n] = '\0';
	esc(ev, sizeof ev, v);

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v[i];
		if (ch < 0x20 || ch == 0x7f)
			return fail(err, errlen, "control character in '%s'", ev);
		/* would start an inline comment in the file: refused everywhere,
		 * so that whatever is set can be dumped and read back */
		if (ch == ';' && i > 0 && (v[i - 1] == ' ' || v[i - 1] == '\t'))
			return fail(err, errlen, "' ;' would start a comment: not "
			            "allowed in '%s'", ev);
	}

	switch (o->type) {
	case CFG_STR:
		if (n >= o->size)
			return fail(err, errlen, "value too long (at most %zu characters)",
			            o->size - 1);
		if (o->check != NULL && o->check(v, e, sizeof e) < 0)
			return fail(err, errlen, "%s", e);
		memset(field, 0, o->size);
		memcpy(field, v, n);
		return 0;

	case CFG_LIST: {
		unsigned *cnt = (unsigned *)(void *)((char *)base + o->cnt_off);
		if (n == 0) {
			*cnt = 0;
			return 0;
		}
		if (n >= o->size)
			return fail(err, errlen, "value too long (at most %zu characters)",
			            o->size - 1);
		if (*cnt >= (unsigned)o->max)
			return fail(err, errlen, "more than %u entries", (unsigned)o->max);
		if (o->check != NULL && o->check(v, e, sizeof e) < 0)
			return fail(err, errlen, "%s", e);
		memset(field + (size_t)*cnt * o->size, 0, o->size);
		memcpy(field + (size_t)*cnt * o->size, v, n);
		(*cnt)++;
		return 0;
	}

	case CFG_BOOL:
		if (config_parse_bool(v, &b) < 0)
			return fail(err, errlen, "'%s' is not yes or no", ev);
		memcpy(field, &b, sizeof b);
		return 0;

	case CFG_UINT:
		if (!is_digits(v) || parse_u64(v, n, &u64) < 0 || u64 > UINT_MAX)
			return fail(err, errlen, "'%s' is not a number", ev);
		if (check_bounds(o, (double)u64, v, err, errlen) < 0)
			return -1;
		u = (unsigned)u64;
		memcpy(field, &u, sizeof u);
		return 0;

	case CFG_SIZE:
		if (config_parse_size(v, &u64) < 0)
			return fail(err, errlen, "'%s' is not a size", ev);
		if (check_bounds(o, (double)u64, v, err, errlen) < 0)
			return -1;
		memcpy(field, &u64, sizeof u64);
		return 0;

	case CFG_DURATION:
	case CFG_AGE:
		if (o->type == CFG_AGE ? config_parse_age(v, &u) < 0 : config_parse_duration(v, &u) < 0)
			return fail(err, errlen, "'%s' is not a duration%s", ev,
			            o->type == CFG_AGE ? " of whole seconds" : "");
		if (check_bounds(o, (double)u, v, err, errlen) < 0)
			return -1;
		memcpy(field, &u, sizeof u);
		return 0;

	case CFG_DOUBLE:
		if (parse_double(v, &d) < 0)
			return fail(err, errlen, "'%s' is not a number", ev);
		if (check_bounds(o, d, v, err, errlen) < 0)
			return -1;
		memcpy(field, &d, sizeof d);
		return 0;

	case CFG_ENUM:
		for (const struct cfg_word *w = o->words; w->word != NULL; w++) {
			if (strcasecmp(v, w->word) == 0) {
				memcpy(field, &w->value, sizeof w->value);
				return 0;
			}
		}
		{
			char words[160] = "";
			for (const struct cfg_word *w = o->words; w->word != NULL; w++) {
				if (words[0] != '\0')
					strncat(words, w[1].word != NULL ? ", " : " or ",
					        sizeof words - strlen(words) - 1);
				strncat(words, w->word, sizeof words - strlen(words) - 1);
			}
			return fail(err, errlen, "'%s' is not one of %s", ev, words);
		}
	}
	return fail(err, errlen, "internal error: bad type");
}

/* opt_format - the value of o at base as it would be written in the file
 * (CFG_LIST: entry idx). */
static void opt_format(const struct cfg_opt *o, const void *base, size_t idx,
                       char *buf, size_t len)
{
	const char *field = (const char *)base + o->off;
	uint64_t u64;
	unsigned u;
	double d;
	int i;

	switch (o->type) {
	case CFG_STR:
	case CFG_LIST: {
		const char *s = o->type == CFG_LIST ? field + idx * o->size : field;
		size_t n = strlen(s);
		int quote = n > 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == '"' ||
		                      s[n - 1] == ' ' || s[n - 1] == '\t');
		snprintf(buf, len, quote ? "\"%s\"" : "%s", s);
		return;
	}
	case CFG_BOOL:
		memcpy(&i, field, sizeof i);
		snprintf(buf, len, "%s", i ? "yes" : "no");
		return;
	case CFG_UINT:
		memcpy(&u, field, sizeof u);
		snprintf(buf, len, "%u", u);
		return;
	case CFG_SIZE:
		memcpy(&u64, field, sizeof u64);
		fmt_size(buf, len, u64);
		return;
	case CFG_DURATION:
	case CFG_AGE:
		memcpy(&u, field, sizeof u);
		(o->type == CFG_AGE ? fmt_age : fmt_duration)(buf, len, u);
		return;
	case CFG_DOUBLE:
		memcpy(&d, field, sizeof d);
		fmt_double(buf, len, d);
		return;
	case CFG_ENUM:
		memcpy(&i, field, sizeof i);
		for (const struct cfg_word *w = o->words; w->word != NULL; w++) {
			if (w->value == i) {
				snprintf(buf, len, "%s", w->word);
				return;
			}
		}
		snprintf(buf, len, "?%d", i);
		return;
	}
	snprintf(buf, len, "?");
}

/* apply_defaults - every row of scope at base, through opt_set */
static int apply_defaults(enum cfg_scope scope, void *base, char *err, size_t errlen)
{
	char dyn[512], e[CFG_ERR_MAX];

	for (size_t i = 0; i < NOPTS; i++) {
		const struct cfg_opt *o = &cfg_opts[i];
		const char *def = o->def;
		if (o->scope != scope)
			continue;
		if (def == NULL) {
			o->defun(dyn, sizeof dyn);
			def = dyn;
		}
		if (opt_set(o, base, def, e, sizeof e) < 0)
			return fail(err, errlen, "internal error: default of %s: %s", o->name, e);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* listeners                                                            */

static struct listener_cfg *listener_find(struct config *c, const char *name)
{
	for (unsigned i = 0; i < c->nlisteners; i++)
		if (strcmp(c->listeners[i].name, name) == 0)
			return &c->listeners[i];
	return NULL;
}

/* listener_add - a new listener with its defaults; NULL with a message if
 * the name is bad or there are too many. */
static struct listener_cfg *listener_add(struct config *c, const char *name,
                                         char *err, size_t errlen)
{
	struct listener_cfg *l;

	if (check_listener_name(name, err, errlen) < 0)
		return NULL;
	if (c->nlisteners >= CFG_MAX_LISTENERS) {
		fail(err, errlen, "more than %d listeners", CFG_MAX_LISTENERS);
		return NULL;
	}
	l = &c->listeners[c->nlisteners];
	memset(l, 0, sizeof *l);
	snprintf(l->name, sizeof l->name, "%s", name);
	if (apply_defaults(CFG_LISTENER, l, err, errlen) < 0)
		return NULL;
	c->nlisteners++;
	return l;
}

/* ------------------------------------------------------------------ */
/* the file                                                             */

struct cfg_load {
	struct config *c;
	const char    *file;
	FILE          *fp;
	char          *raw;          /* getline buffer */
	size_t         rawcap;
	unsigned       lineno;       /* of the line inih is working on */
	unsigned       errline;      /* first error found here (0 = none) */
	char           err[CFG_ERR_MAX];
	int            ioerr;        /* errno of a read error, or 0 */
	int            section;      /* 0 global, 1 listener, -1 bad section */
	struct listener_cfg *cur;    /* when section == 1 */
	unsigned       seen[NOPTS];                         /* first line of each global */
	unsigned       lseen[CFG_MAX_LISTENERS][NOPTS];     /* ... of each listener key */
	unsigned       lline[CFG_MAX_LISTENERS];            /* its [listener] line, 0 = -o */
};
#define SEEN_OVERRIDE UINT_MAX      /* in seen/lseen: the value came from -o */

static void load_error(struct cfg_load *ld, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* load_error - keep the first error (the lowest line) */
static void load_error(struct cfg_load *ld, const char *fmt, ...)
{
	va_list ap;

	if (ld->errline != 0)
		return;
	ld->errline = ld->lineno;
	va_start(ap, fmt);
	vsnprintf(ld->err, sizeof ld->err, fmt, ap);
	va_end(ap);
}

/* section_line - a "[...]" line, seen by the reader before inih sees it.
 * inih only ever hands the section name to the handler; reading it here
 * means an empty section is checked too. */
static void section_line(struct cfg_load *ld, const char *s)
{
	const char *close = strchr(s, ']'), *p;
	char name[CFG_LINE_MAX + 1], e[CFG_ERR_MAX], ev[160];
	size_t n;

	ld->section = -1;
	if (close == NULL)
		return;         /* inih reports the syntax error */
	p = close + 1;
	p += strspn(p, " \t\r\n");
	if (*p != '\0' && *p != ';' && *p != '#') {
		load_error(ld, "unexpected text after section header");
		return;
	}
	s++;
	s += strspn(s, " \t");
	n = (size_t)(close - s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	memcpy(name, s, n);
	name[n] = '\0';

	if (strcmp(name, "mailwarden") == 0) {
		ld->section = 0;
		return;
	}
	if (strncmp(name, "listener", 8) == 0 && (name[8] == ' ' || name[8] == '\t')) {
		const char *lname = name + 8 + strspn(name + 8, " \t");
		struct listener_cfg *l = listener_find(ld->c, lname);
		if (l != NULL) {
			unsigned first = ld->lline[l - ld->c->listeners];
			load_error(ld, "duplicate listener '%s' (first at line %u)", lname, first);
			return;
		}
		if ((l = listener_add(ld->c, lname, e, sizeof e)) == NULL) {
			load_error(ld, "%s", e);
			return;
		}
		ld->lline[l - ld->c->listeners] = ld->lineno;
		ld->cur = l;
		ld->section = 1;
		return;
	}
	load_error(ld, "unknown section '[%s]' (expected [mailwarden] or [listener NAME])",
	           esc(ev, sizeof ev, name));
}

/* cfg_reader - inih's fgets: one line per call, so ld->lineno is the line
 * the next handler calls are about.  Leading whitespace is dropped (no
 * continuation lines); NUL bytes and lines longer than CFG_LINE_MAX end the
 * parse with an error rather than being cut in two. */
static char *cfg_reader(char *str, int num, void *stream)
{
	struct cfg_load *ld = stream;
	ssize_t n;
	char *s;

	if (ld->errline != 0 || num < 2)
		return NULL;
	errno = 0;
	n = getline(&ld->raw, &ld->rawcap, ld->fp);
	if (n < 0) {
		if (ferror(ld->fp))
			ld->ioerr = errno ? errno : EIO;
		return NULL;
	}
	ld->lineno++;
	if (memchr(ld->raw, '\0', (size_t)n) != NULL) {
		load_error(ld, "NUL byte in line");
		return NULL;
	}
	s = ld->raw;
	if (ld->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;         /* UTF-8 byte order mark */
	s += strspn(s, " \t");
	n = (ssize_t)strlen(s);
	if (n > 0 && s[n - 1] == '\n')
		n--;
	if (n > CFG_LINE_MAX || n + 2 > num) {
		load_error(ld, "line too long (at most %d characters)",
		           num - 2 < CFG_LINE_MAX ? num - 2 : CFG_LINE_MAX);
		return NULL;
	}
	if (s[0] == '[')
		section_line(ld, s);
	memcpy(str, s, (size_t)n);
	str[n] = '\n';
	str[n + 1] = '\0';
	return str;
}

/* cfg_handler - one "name = value" of the file; section: ignored, the
 * reader knows it better (see section_line) */
static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_load *ld = user;
	const struct cfg_opt *o;
	char e[CFG_ERR_MAX], en[160];
	unsigned *seen;
	void *base;

	(void)section;
	if (ld->errline != 0)
		return 0;
	if (value == NULL) {
		load_error(ld, "'%s': expected name = value", esc(en, sizeof en, name));
		return 0;
	}
	if (ld->section < 0)
		return 1;       /* inside a bad section: already reported */
	if (ld->section == 1) {
		o = opt_find(name, CFG_LISTENER);
		if (o == NULL) {
			if (opt_find(name, CFG_GLOBAL) != NULL)
				load_error(ld, "'%s' is a global setting: put it before the first "
				           "section or in [mailwarden]", name);
			else
				load_error(ld, "unknown setting '%s' in [listener %s]",
				           esc(en, sizeof en, name), ld->cur->name);
			return 0;
		}
		base = ld->cur;
		seen = &ld->lseen[ld->cur - ld->c->listeners][o - cfg_opts];
	} else {
		o = opt_find(name, CFG_GLOBAL);
		if (o == NULL) {
			if (opt_find(name, CFG_LISTENER) != NULL)
				load_error(ld, "'%s' belongs in a [listener NAME] section", name);
			else
				load_error(ld, "unknown setting '%s'", esc(en, sizeof en, name));
			return 0;
		}
		base = ld->c;
		seen = &ld->seen[o - cfg_opts];
	}
	if (*seen != 0 && o->type != CFG_LIST) {
		load_error(ld, "duplicate setting '%s' (first at line %u)", name, *seen);
		return 0;
	}
	if (*seen == 0)
		*seen = ld->lineno;
	if (opt_set(o, base, value, e, sizeof e) < 0) {
		load_error(ld, "%s: %s", name, e);
		return 0;
	}
	return 1;
}

/* inih's options, pinned here rather than left to how the library was
 * built.  Debian's libinih exports them as variables; a heap line buffer
 * lets lines of CFG_LINE_MAX through in one reader call (the stack buffer
 * is 200 bytes). */
static void ini_setup(void)
{
	static char start_comments[] = ";#";
	static char inline_comments[] = ";";

	ini_use_stack = false;
	ini_allow_realloc = false;
	ini_initial_alloc = CFG_LINE_MAX + 3;
	ini_max_line = CFG_LINE_MAX + 3;
	ini_allow_multiline = false;
	ini_allow_bom = true;
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = inline_comments;
	ini_start_comment_prefixes = start_comments;
	ini_allow_no_value = false;
	ini_stop_on_first_error = true;
}

/* load_file - parse path into ld->c; 0, or -1 with "FILE[:LINE]: message" */
static int load_file(struct cfg_load *ld, const char *path,
                     char *err, size_t errlen)
{
	int rc;

	ld->file = path;
	ld->fp = fopen(path, "re");
	if (ld->fp == NULL)
		return fail(err, errlen, "%s: %s", path, strerror(errno));
	ini_setup();
	rc = ini_parse_stream(cfg_reader, ld, cfg_handler, ld);
	fclose(ld->fp);
	ld->fp = NULL;
	free(ld->raw);
	ld->raw = NULL;

	if (ld->ioerr != 0)
		return fail(err, errlen, "%s: %s", path, strerror(ld->ioerr));
	if (ld->errline != 0 && (rc <= 0 || (unsigned)rc >= ld->errline))
		return fail(err, errlen, "%s:%u: %s", path, ld->errline, ld->err);
	if (rc > 0)
		return fail(err, errlen, "%s:%d: syntax error (expected 'name = value' or "
		            "'[section]')", path, rc);
	if (rc < 0)
		return fail(err, errlen, "%s: cannot parse (%s)", path,
		            rc == -2 ? "out of memory" : "read error");
	return 0;
}

/* ------------------------------------------------------------------ */
/* overrides                                                            */

/* apply_override - one "-o name=value" (or listener.NAME.key=value); the
 * value is trimmed like a file value; 0, or -1 with "-o NAME: message" */
static int apply_override(struct config *c, struct cfg_load *ld, const char *ov,
                          char *err, size_t errlen)
{
	char name[256], e[CFG_ERR_MAX], en[300], vbuf[CFG_LINE_MAX + 1];
	const char *eq = strchr(ov, '='), *value;
	const struct cfg_opt *o;
	size_t n;

	if (eq == NULL)
		return fail(err, errlen, "-o %s: expected name=value", esc(en, sizeof en, ov));
	n = (size_t)(eq - ov);
	while (n > 0 && (ov[n - 1] == ' ' || ov[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= sizeof name)
		return fail(err, errlen, "-o %s: expected name=value", esc(en, sizeof en, ov));
	memcpy(name, ov, n);
	name[n] = '\0';
	value = eq + 1;
	value += strspn(value, " \t");
	n = strlen(value);
	while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
		n--;
	if (n >= sizeof vbuf)
		return fail(err, errlen, "-o %s: value too long", esc(en, sizeof en, name));
	memcpy(vbuf, value, n);
	vbuf[n] = '\0';
	value = vbuf;

	if (strncmp(name, "listener.", 9) == 0) {
		char *lname = name + 9, *dot = strrchr(lname, '.');
		struct listener_cfg *l;
		if (dot == NULL || dot == lname)
			return fail(err, errlen, "-o %s: expected listener.NAME.key=value",
			            esc(en, sizeof en, name));
		*dot = '\0';
		o = opt_find(dot + 1, CFG_LISTENER);
		if (o == NULL) {
			*dot = '.';
			return fail(err, errlen, "-o %s: unknown listener setting '%s'",
			            esc(en, sizeof en, name), esc(e, sizeof e, dot + 1));
		}
		l = listener_find(c, lname);
		if (l == NULL) {
			if ((l = listener_add(c, lname, e, sizeof e)) == NULL) {
				*dot = '.';
				return fail(err, errlen, "-o %s: %s", esc(en, sizeof en, name), e);
			}
			ld->lline[l - c->listeners] = 0;
		}
		*dot = '.';
		if (opt_set(o, l, value, e, sizeof e) < 0)
			return fail(err, errlen, "-o %s: %s", name, e);
		ld->lseen[l - c->listeners][o - cfg_opts] = SEEN_OVERRIDE;
		return 0;
	}
	o = opt_find(name, CFG_GLOBAL);
	if (o == NULL) {
		esc(en, sizeof en, name);
		if (opt_find(name, CFG_LISTENER) != NULL)
			return fail(err, errlen, "-o %s: listener setting: use "
			            "-o listener.NAME.%s=value", en, en);
		return fail(err, errlen, "-o %s: unknown setting '%s'", en, en);
	}
	if (opt_set(o, c, value, e, sizeof e) < 0)
		return fail(err, errlen, "-o %s: %s", name, e);
	ld->seen[o - cfg_opts] = SEEN_OVERRIDE;
	return 0;
}

/* ------------------------------------------------------------------ */
/* whole-config checks                                                  */

/* check_listeners - after file and overrides: every listener complete, no
 * two on the same listen address */
static int check_listeners(struct config *c, struct cfg_load *ld, char *err, size_t errlen)
{
	char where[600];

	for (unsigned i = 0; i < c->nlisteners; i++) {
		const struct listener_cfg *l = &c->listeners[i];
		const char *missing = NULL;

		if (ld->lline[i] != 0)
			snprintf(where, sizeof where, "%s:%u", ld->file, ld->lline[i]);
		else
			snprintf(where, sizeof where, "-o listener.%s", l->name);
		if (l->listen[0] == '\0')
			missing = "listen";
		else if (l->upstream[0] == '\0')
			missing = "upstream";
		if (missing != NULL)
			return fail(err, errlen, "%s: listener '%s' has no %s", where, l->name, missing);
		for (unsigned j = 0; j < i; j++)
			if (strcmp(c->listeners[j].listen, l->listen) == 0)
				return fail(err, errlen, "%s: listener '%s': listen %s is "
				            "already used by listener '%s'", where, l->name,
				            l->listen, c->listeners[j].name);
	}
	return 0;
}

/* set_where - where global setting name got its value: "FILE:LINE", "-o
 * NAME" or "default"; its seen mark (SEEN_OVERRIDE > any line > 0) */
static unsigned set_where(const struct cfg_load *ld, const char *name, char *out, size_t outsz)
{
	const struct cfg_opt *o = opt_find(name, CFG_GLOBAL);
	unsigned line = o != NULL ? ld->seen[o - cfg_opts] : 0;

	if (line == SEEN_OVERRIDE)
		snprintf(out, outsz, "-o %s", name);
	else if (line != 0)
		snprintf(out, outsz, "%s:%u", ld->file, line);
	else
		snprintf(out, outsz, "default");
	return line;
}

/* the settings only the SMTP proxy reads (its sessions, its listeners'
 * sockets); only the milter reads those named milter_* (milter_listen,
 * which starts it, aside) */
static const char *const proxy_only[] = {
	"proxy_threads", "max_connections", "max_connections_per_ip", "max_recipients",
	"command_line_limit", "max_errors", "junk_command_limit", "greet_pause", "client_command_timeout",
	"client_data_timeout", "upstream_probe_interval", "bare_newline", "early_talker", "vrfy",
};

/* same_value - setting o holds the same value in the configs a and b */
static int same_value(const struct cfg_opt *o, const struct config *a, const struct config *b)
{
	const char *fa = (const char *)a + o->off, *fb = (const char *)b + o->off;

	if (o->type == CFG_STR)
		return strncmp(fa, fb, o->size) == 0;
	if (o->type == CFG_LIST) {
		unsigned na = *(const unsigned *)((const char *)a + o->cnt_off);
		unsigned nb = *(const unsigned *)((const char *)b + o->cnt_off);
		return na == nb && memcmp(fa, fb, (size_t)na * o->size) == 0;
	}
	return memcmp(fa, fb, o->size) == 0;
}

/* note_unread - a setting given (file or -o) for the front end the
 * config does not run, with another value than its default: "WHERE: NAME
 * is read only by the proxy; ignored" in the notes (-t, the start-up
 * log), where it passed without a word (a milter took 5 recipients with
 * max_recipients = 2).  A default written out (the dump of -t -v) is no
 * news. */
static void note_unread(struct config *c, const struct cfg_load *ld)
{
	int proxy = c->nlisteners > 0, milter = c->milter_listen[0] != '\0';
	struct config *def = NULL;
	char e[CFG_ERR_MAX];

	if (proxy == milter)        /* both read everything; neither is said elsewhere */
		return;
	for (size_t i = 0; i < NOPTS; i++) {
		const struct cfg_opt *o = &cfg_opts[i];
		char where[600];
		int by_milter = strncmp(o->name, "milter_", 7) == 0 && strcmp(o->name, "milter_listen") != 0;
		int by_proxy = 0;

		if (o->scope != CFG_GLOBAL || ld->seen[i] == 0)
			continue;
		for (size_t k = 0; k < sizeof proxy_only / sizeof proxy_only[0]; k++)
			by_proxy |= strcmp(o->name, proxy_only[k]) == 0;
		if (!(by_proxy && !proxy) && !(by_milter && !milter))
			continue;
		if (def == NULL && ((def = calloc(1, sizeof *def)) == NULL
		                    || apply_defaults(CFG_GLOBAL, def, e, sizeof e) < 0))
			break;      /* out of memory: a note is not worth failing the load */
		if (same_value(o, c, def))
			continue;
		set_where(ld, o->name, where, sizeof where);
		if (c->nnotes < CFG_MAX_NOTES)
			snprintf(c->notes[c->nnotes], sizeof c->notes[0], "%.250s: %s is read only by the %s; ignored "
			         "(%s)", where, o->name, by_proxy ? "proxy" : "milter",
			         by_proxy ? "no [listener] runs the proxy" : "no milter_listen runs the milter");
		c->nnotes++;
	}
	free(def);
}

/* check_greylist - greylist_delay must be shorter than
 * greylist_retry_window: a first attempt is remembered for the window
 * and a retry passes once the delay is over, so with a delay as long no
 * new sender ever passes (each retry finds its first attempt forgotten
 * and starts again).  Named at the later of the two settings (the one
 * that made them clash). */
static int check_greylist(const struct config *c, const struct cfg_load *ld, char *err, size_t errlen)
{
	char wd[600], ww[600], d[32], w[32];
	unsigned ld_delay, ld_window;

	if (c->greylist_delay < c->greylist_retry_window)
		return 0;
	ld_delay = set_where(ld, "greylist_delay", wd, sizeof wd);
	ld_window = set_where(ld, "greylist_retry_window", ww, sizeof ww);
	fmt_duration(d, sizeof d, c->greylist_delay);
	fmt_duration(w, sizeof w, c->greylist_retry_window);
	return fail(err, errlen, "%s: greylist_delay (%s) must be shorter than greylist_retry_window (%s): "
	            "a first attempt is forgotten before its retry may pass, and no new sender ever would",
	            ld_window > ld_delay ? ww : wd, d, w);
}

/* xlat_list - rewrite each IPv6 entry of the list value (a field of size
 * sz, the setting o) that lies inside one of the translation prefixes
 * pfx as the IPv4 network it names (ipnet_xlat_net): its clients are
 * IPv4 from the listener on, so as written it would match none of them.
 * where: "FILE:LINE", or "-o NAME" (named: it names the setting), for
 * the notes and the error.  Words
 * that are not IPv6 networks (IPv4, @domain, to:rcpt, a bad one the
 * setting's own check reports) are left alone.  0, or -1 with err. */
static int xlat_list(struct config *c, const struct cfg_opt *o, char *value, size_t sz, const char *where,
                     int named, const struct ipnet *pfx, size_t npfx, char *err, size_t errlen)
{
	char out[CFG_LINE_MAX + 1], head[700];
	const char *name = named ? "" : o->name, *colon = named ? "" : ": ";
	const char *v = value;
	size_t k = 0;
	int changed = 0;

	snprintf(head, sizeof head, "%s%s%s", where, colon, name);
	for (;;) {
		char word[64], v4txt[INET_ADDRSTRLEN], pfxtxt[INET6_ADDRSTRLEN], add[128];
		size_t sep = strspn(v, " \t,"), n, which = 0;
		struct ipnet net, v4;
		int keep6, rc;

		if (k + sep >= sizeof out)
			return fail(err, errlen, "%s: too long once translated", head);
		memcpy(out + k, v, sep);
		k += sep;
		v += sep;
		if ((n = strcspn(v, " \t,")) == 0)
			break;
		snprintf(word, sizeof word, "%.*s", (int)n, v);
		v += n;
		rc = n < sizeof word && ipnet_parse(word, &net) == 0
		     ? ipnet_xlat_net(pfx, npfx, &net, &v4, &keep6, &which) : 0;
		if (rc != 0)
			inet_ntop(AF_INET6, pfx[which].addr, pfxtxt, sizeof pfxtxt);
		if (rc < 0)
			return fail(err, errlen, "%s: \"%s\" is the whole translation prefix %s/%u "
			            "(nat64_prefixes): every IPv4 client once translated; write 0.0.0.0/0 "
			            "if that is meant, or the IPv4 networks", head, word, pfxtxt,
			            pfx[which].bits);
		if (rc == 0) {
			snprintf(add, sizeof add, "%s", word);
		} else {
			inet_ntop(AF_INET, v4.addr, v4txt, sizeof v4txt);
			if (v4.bits < 32)
				snprintf(v4txt + strlen(v4txt), sizeof v4txt - strlen(v4txt), "/%u", v4.bits);
			snprintf(add, sizeof add, keep6 ? "%s %s" : "%s", v4txt, word);
			if (c->nnotes < CFG_MAX_NOTES)
				snprintf(c->notes[c->nnotes], sizeof c->notes[0],
				         "%s: note: %s%s%s is inside the translation prefix %s/%u (nat64_prefixes), "
				         "whose clients are their IPv4 address: taken as %s%s", where, name, colon, word,
				         pfxtxt, pfx[which].bits, v4txt,
				         keep6 ? ", and as written for the addresses never translated" : "");
			c->nnotes++;
			changed = 1;
		}
		if (k + strlen(add) >= sizeof out)
			return fail(err, errlen, "%s: too long once translated", head);
		memcpy(out + k, add, strlen(add));
		k += strlen(add);
	}
	out[k] = '\0';
	if (!changed)
		return 0;
	if (k >= sz)
		return fail(err, errlen, "%s: too long once translated (at most %zu characters)",
		            head, sz - 1);
	memcpy(value, out, k + 1);
	return 0;
}

/* xlat_lists - xlat_list over every network list, global and per
 * listener, under this config's nat64_prefixes (not yet the process's:
 * the config may still be refused) */
static int xlat_lists(struct config *c, struct cfg_load *ld, char *err, size_t errlen)
{
	static const char *const lists[] = {
		"spf_skip_networks", "greylist_whitelist", "milter_internal_networks", "proxy_protocol_from",
		"xforward_from", NULL
	};
	struct ipnet pfx[IPNET_XLAT_MAX];
	size_t npfx;
	char where[600];

	if (ipnet_xlat_parse(c->nat64_prefixes, pfx, &npfx, err, errlen) < 0)
		return -1;
	if (npfx == 0)
		return 0;
	for (const char *const *name = lists; *name != NULL; name++) {
		const struct cfg_opt *o = opt_find(*name, CFG_GLOBAL);
		unsigned line;

		if (o != NULL) {
			line = set_where(ld, *name, where, sizeof where);
			if (xlat_list(c, o, (char *)c + o->off, o->size, where, line == SEEN_OVERRIDE,
			              pfx, npfx, err, errlen) < 0)
				return -1;
			continue;
		}
		if ((o = opt_find(*name, CFG_LISTENER)) == NULL)
			continue;
		for (unsigned i = 0; i < c->nlisteners; i++) {
			line = ld->lseen[i][o - cfg_opts];
			if (line == SEEN_OVERRIDE)
				snprintf(where, sizeof where, "-o listener.%s.%s", c->listeners[i].name, o->name);
			else if (line != 0)
				snprintf(where, sizeof where, "%s:%u", ld->file, line);
			else
				snprintf(where, sizeof where, "listener '%s': default", c->listeners[i].name);
			if (xlat_list(c, o, (char *)&c->listeners[i] + o->off, o->size, where,
			              line == SEEN_OVERRIDE, pfx, npfx, err, errlen) < 0)
				return -1;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* the API                                                              */

/* config_load - see config.h.  Not thread-safe: it sets inih's global
 * options (ini_setup); the master and "mailwarden scan" call it from one
 * thread. */
struct config *config_load(const char *path, const char *const *overrides,
                           size_t noverrides, char *err, size_t errlen)
{
	struct config *c;
	struct cfg_load *ld;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	c = calloc(1, sizeof *c);
	ld = calloc(1, sizeof *ld);
	if (c == NULL || ld == NULL) {
		fail(err, errlen, "out of memory");
		goto bad;
	}
	c->refcount = 1;
	ld->c = c;
	ld->file = path != NULL ? path : "";
	if (apply_defaults(CFG_GLOBAL, c, err, errlen) < 0)
		goto bad;
	if (path != NULL) {
		if (strlen(path) >= sizeof c->source) {
			fail(err, errlen, "%s: path too long", path);
			goto bad;
		}
		snprintf(c->source, sizeof c->source, "%s", path);
		if (load_file(ld, path, err, errlen) < 0)
			goto bad;
	}
	for (size_t i = 0; i < noverrides; i++)
		if (apply_override(c, ld, overrides[i], err, errlen) < 0)
			goto bad;
	if (check_listeners(c, ld, err, errlen) < 0)
		goto bad;
	if (check_greylist(c, ld, err, errlen) < 0)
		goto bad;
	if (xlat_lists(c, ld, err, errlen) < 0)
		goto bad;
	note_unread(c, ld);
	if (ipnet_xlat_set(c->nat64_prefixes, err, errlen) < 0)
		goto bad;
	free(ld);
	return c;
bad:
	if (ld != NULL)
		free(ld->raw);
	free(ld);
	free(c);
	return NULL;
}

int config_open_outbound(const struct config *c, unsigned i, char *msg, size_t msglen)
{
	const struct listener_cfg *l = &c->listeners[i];
	struct netaddr na;
	struct ipnet a;
	char ip[64], e[200];

	if (l->direction != MW_OUTBOUND || l->auth == MW_AUTH_RELAY)
		return 0;
	/* numeric and "*" without a lookup; a name resolves as the listener
	 * itself will (start-up and -t only) */
	if (netaddr_parse(l->listen, 1, &na, e, sizeof e) < 0)
		return 0;
	netaddr_ip((const struct sockaddr *)&na.ss, ip, sizeof ip, NULL);
	if (ipnet_parse(ip, &a) == 0 && ipnet_private(&a))
		return 0;
	snprintf(msg, msglen, "listener '%s': direction = outbound without auth = relay on %s, "
	         "which is not a loopback or private address: anyone who reaches it sends as the site "
	         "(DKIM-signed, no SPF, DMARC or greylisting); bind it to an internal address, "
	         "firewall it, or set auth = relay", l->name, l->listen);
	return 1;
}

void config_listener_hops(const struct config *c, struct listener_hop *hop)
{
	struct netaddr up, ln[CFG_MAX_LISTENERS];
	int listens[CFG_MAX_LISTENERS];
	char e[200];

	/* each listen parsed and each upstream resolved once: a resolver that
	 * times out costs one timeout per name, not one per pair */
	for (unsigned j = 0; j < c->nlisteners; j++)
		listens[j] = netaddr_parse(c->listeners[j].listen, 1, &ln[j], e, sizeof e) == 0;
	for (unsigned i = 0; i < c->nlisteners; i++) {
		hop[i].to = -1;
		hop[i].sure = 0;
		if (c->listeners[i].transparent || netaddr_parse(c->listeners[i].upstream, 0, &up, e, sizeof e) < 0)
			continue;
		/* a listener reached surely wins over one reached only by an
		 * interface's address */
		for (unsigned j = 0; j < c->nlisteners && !hop[i].sure; j++) {
			int r = listens[j] ? netaddr_reaches(&ln[j], &up) : 0;

			if (r == 1 || (r == 2 && hop[i].to < 0)) {
				hop[i].to = (int)j;
				hop[i].sure = r == 1;
			}
		}
	}
}

/* not_sure - the ending of a loop's message when a hop is known only by
 * an interface's address: a warning then, not an error */
static const char not_sure[] = " (unless that address of this host's interfaces is sent on elsewhere, "
                               "an IPVS VIP or a DNAT to another machine)";

int config_listener_loop(const struct config *c, const struct listener_hop *hop, unsigned i, char *msg,
                         size_t msglen)
{
	const struct listener_cfg *l = &c->listeners[i];
	char path[CFG_MAX_LISTENERS * 70] = "";
	size_t len = 0;
	unsigned k = i;
	int sure;

	if (hop[i].to < 0)
		return 0;
	const struct listener_cfg *next = &c->listeners[hop[i].to];
	sure = hop[i].sure;
	if ((unsigned)hop[i].to == i) {
		snprintf(msg, msglen, "listener '%s': upstream %s is its own listen address %s: every message "
		         "would come back to it, never reaching the MTA%s; set upstream to the MTA", l->name,
		         l->upstream, l->listen, sure ? "" : not_sure);
		return sure ? -1 : 1;
	}
	if (next->transparent) {
		snprintf(msg, msglen, "listener '%s': upstream %s is the listen address %s of transparent "
		         "listener '%s', which refuses (421) every connection made to that address%s; set upstream "
		         "to the MTA", l->name, l->upstream, next->listen, next->name, sure ? "" : not_sure);
		return sure ? -1 : 1;
	}
	/* follow the chain: back to i is a loop; anything else a second pass */
	len += (size_t)snprintf(path, sizeof path, "'%s'", l->name);
	for (unsigned steps = 0; steps < c->nlisteners && hop[k].to >= 0; steps++) {
		sure = sure && hop[k].sure;
		k = (unsigned)hop[k].to;
		if (len < sizeof path)
			len += (size_t)snprintf(path + len, sizeof path - len, " -> '%s'", c->listeners[k].name);
		if (k == i) {
			snprintf(msg, msglen, "listener '%s': upstream %s is the listen address %s of listener '%s', "
			         "and the chain of upstreams leads back (%s): every message would loop through "
			         "mailwarden, never reaching the MTA%s; set one of them to the MTA", l->name, l->upstream,
			         next->listen, next->name, path, sure ? "" : not_sure);
			return sure ? -1 : 1;
		}
	}
	snprintf(msg, msglen, "listener '%s': upstream %s is the listen address %s of listener '%s': "
	         "its mail passes mailwarden twice (scanned, stamped and counted again there); unless that "
	         "is meant, set upstream to the MTA ('%s' relays to %s)", l->name, l->upstream, next->listen,
	         next->name, next->name, next->upstream);
	return 1;
}

/* wide_entry - the first entry of a network list wider than a site's
 * own networks or a few balancers ever are: IPv4 shorter than /8, IPv6
 * shorter than /16 (0.0.0.0/0, ::/0, a mapped ::ffff:0:0/96), unless it
 * is all private (ULA fc00::/7: no outsider's address); 1 with it in
 * word, else 0 */
static int wide_entry(const char *list, char *word, size_t wordsz)
{
	for (;;) {
		struct ipnet n, last;
		size_t len;

		list += strspn(list, " \t,");
		if ((len = strcspn(list, " \t,")) == 0)
			return 0;
		snprintf(word, wordsz, "%.*s", (int)len, list);
		list += len;
		if (len >= wordsz || ipnet_parse(word, &n) < 0 || n.bits >= (n.family == 4 ? 8u : 16u))
			continue;
		last = n;
		for (unsigned b = n.bits; b < (n.family == 4 ? 32u : 128u); b++)
			last.addr[b / 8] |= (unsigned char)(0x80 >> (b % 8));
		if (!(ipnet_private(&n) && ipnet_private(&last)))
			return 1;
	}
}

int config_open_proxy(const struct config *c, unsigned i, char *msg, size_t msglen)
{
	const struct listener_cfg *l = &c->listeners[i];
	char word[64];

	if (l->proxy_protocol && wide_entry(l->proxy_protocol_from, word, sizeof word)) {
		snprintf(msg, msglen, "listener '%s': proxy_protocol_from holds %s: any host in it may send a "
		         "PROXY header and so choose the client address every check sees (SPF, DNS lists, "
		         "limits, milter and pass lists); list the balancers' own addresses", l->name, word);
		return 1;
	}
	if (wide_entry(l->xforward_from, word, sizeof word)) {
		snprintf(msg, msglen, "listener '%s': xforward_from holds %s: any host in it may send "
		         "XFORWARD and so choose the client address every check sees (SPF, DNS lists, "
		         "limits, greylisting), and its login (outbound); list the MTA's own addresses",
		         l->name, word);
		return 1;
	}
	return 0;
}

int config_runs_filter(const struct config *c, const char *name)
{
	size_t n = strlen(name);

	/* a word of the list (space-separated: check_filter_list, and no
	 * control character in a value): "rules" is not "rules_net" */
	for (const char *p = c->filters; (p = strstr(p, name)) != NULL; p += n)
		if ((p == c->filters || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
			return 1;
	return 0;
}

int config_wide_internal(const struct config *c, char *msg, size_t msglen)
{
	char word[64];

	if (c->milter_listen[0] == '\0' || !wide_entry(c->milter_internal_networks, word, sizeof word))
		return 0;
	snprintf(msg, msglen, "milter_internal_networks holds %s: the milter takes the mail of every "
	         "client in it as outbound (DKIM-signed, no SPF, DMARC or greylisting); list the site's "
	         "own networks only", word);
	return 1;
}

int config_milter_release(const struct config *c, char *msg, size_t msglen)
{
	if (c->milter_listen[0] == '\0' || c->milter_quarantine != MILTER_QUARANTINE_STORE
	    || c->quarantine_release_upstream[0] != '\0')
		return 0;
	snprintf(msg, msglen, "milter_quarantine = store without quarantine_release_upstream: a "
	         "message the milter quarantined has no upstream to be released to, and released into "
	         "the MTA that runs the milter it is scanned again (from 127.0.0.1: as outbound) and "
	         "quarantined anew; add an smtpd without milters to master.cf (127.0.0.1:10027 ... "
	         "-o smtpd_milters= -o non_smtpd_milters=, README \"Quarantine\") and set "
	         "quarantine_release_upstream = 127.0.0.1:10027");
	return 1;
}

int config_milter_port25(const struct config *c, char *msg, size_t msglen)
{
	if (c->milter_listen[0] == '\0')
		return 0;
	for (unsigned i = 0; i < c->nlisteners; i++) {
		const char *colon = strrchr(c->listeners[i].listen, ':');
		if (colon == NULL || strcmp(colon + 1, "25") != 0)
			continue;
		snprintf(msg, msglen, "milter_listen is set and [listener %s] listens on %s: port 25 is "
		         "the MTA's on a milter site, and whichever starts second cannot bind it; a "
		         "milter-only site removes the listener (the sample's [listener mx]; README "
		         "\"Milter front end\")", c->listeners[i].name, c->listeners[i].listen);
		return 1;
	}
	return 0;
}

int config_scans_nothing(const struct config *c, char *msg, size_t msglen)
{
	if (c->filters[0] != '\0' || c->nplugins > 0)
		return 0;
	snprintf(msg, msglen, "filters is empty and no plugin is loaded: every message passes "
	         "unscanned (only mailwarden's own checks: size, header limits, forged X-Spam-* "
	         "fields); set filters, e.g. filters = spf dkim dmarc rules");
	return 1;
}

/* config_ref / config_unref - atomic, so any thread may drop its reference */
struct config *config_ref(struct config *c)
{
	if (c != NULL)
		__atomic_add_fetch(&c->refcount, 1, __ATOMIC_RELAXED);
	return c;
}

void config_unref(struct config *c)
{
	if (c != NULL && __atomic_sub_fetch(&c->refcount, 1, __ATOMIC_ACQ_REL) == 0)
		free(c);
}

int config_listeners_same(const struct config *a, const struct config *b)
{
	char va[CFG_LINE_MAX + 8], vb[CFG_LINE_MAX + 8];

	if (a->nlisteners != b->nlisteners)
		return 0;
	for (unsigned l = 0; l < a->nlisteners; l++) {
		const struct listener_cfg *la = &a->listeners[l], *lb = &b->listeners[l];

		if (strcmp(la->name, lb->name) != 0)
			return 0;
		/* formatted, as -t -v shows them: the bytes of a string field
		 * after its NUL are whatever a longer value left there */
		for (size_t i = 0; i < NOPTS; i++) {
			const struct cfg_opt *o = &cfg_opts[i];
			unsigned na = 1, nb = 1;

			if (o->scope != CFG_LISTENER)
				continue;
			if (o->type == CFG_LIST) {
				memcpy(&na, (const char *)la + o->cnt_off, sizeof na);
				memcpy(&nb, (const char *)lb + o->cnt_off, sizeof nb);
				if (na != nb)
					return 0;
			}
			for (unsigned k = 0; k < na; k++) {
				opt_format(o, la, k, va, sizeof va);
				opt_format(o, lb, k, vb, sizeof vb);
				if (strcmp(va, vb) != 0)
					return 0;
			}
		}
	}
	return 1;
}

int config_export(const struct config *c)
{
	const char *p = (const char *)c;
	size_t left = sizeof *c;
	int fd = memfd_create("mailwarden-config", MFD_CLOEXEC | MFD_ALLOW_SEALING), e;

	if (fd < 0)
		return -1;
	while (left > 0) {
		ssize_t n = write(fd, p, left);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			e = n < 0 ? errno : EIO;
			goto bad;
		}
		p += n;
		left -= (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		e = errno;
		goto bad;
	}
	return fd;
bad:
	close(fd);
	errno = e;
	return -1;
}

struct config *config_import(int fd, char *err, size_t errlen)
{
	struct config *c;
	struct stat st;
	size_t got = 0;
	int seals;

	/* sealed, so that nobody but the master that made it wrote it */
	seals = fcntl(fd, F_GET_SEALS);
	if (fstat(fd, &st) < 0 || seals < 0) {
		fail(err, errlen, "config from the master: %s", strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != sizeof *c || !(seals & F_SEAL_WRITE)) {
		fail(err, errlen, "config from the master: %lld bytes, seals %#x (expected %zu, sealed)",
		     (long long)st.st_size, (unsigned)seals, sizeof *c);
		return NULL;
	}
	if ((c = malloc(sizeof *c)) == NULL) {
		fail(err, errlen, "out of memory");
		return NULL;
	}
	while (got < sizeof *c) {
		ssize_t n = pread(fd, (char *)c + got, sizeof *c - got, (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fail(err, errlen, "config from the master: %s", n < 0 ? strerror(errno) : "short read");
			free(c);
			return NULL;
		}
		got += (size_t)n;
	}
	c->refcount = 1;
	if (config_set_process(c, err, errlen) < 0) {
		free(c);
		return NULL;
	}
	return c;
}

int config_set_process(const struct config *c, char *err, size_t errlen)
{
	return ipnet_xlat_set(c->nat64_prefixes, err, errlen);
}

/* dump_opt - "name = value" line(s) of one row; "name =" when empty */
static void dump_opt(const struct cfg_opt *o, const void *base, FILE *out)
{
	char buf[CFG_LINE_MAX + 8];

	if (o->type == CFG_LIST) {
		unsigned cnt;
		memcpy(&cnt, (const char *)base + o->cnt_off, sizeof cnt);
		if (cnt == 0)
			fprintf(out, "%s =\n", o->name);
		for (unsigned i = 0; i < cnt; i++) {
			opt_format(o, base, i, buf, sizeof buf);
			fprintf(out, "%s = %s\n", o->name, buf);
		}
		return;
	}
	opt_format(o, base, 0, buf, sizeof buf);
	if (buf[0] == '\0')
		fprintf(out, "%s =\n", o->name);
	else
		fprintf(out, "%s = %s\n", o->name, buf);
}

/* config_dump - globals first (a key after a section header belongs to
 * that section), then one [listener NAME] block each */
void config_dump(const struct config *c, FILE *out)
{
	fprintf(out, "# mailwarden settings from %s\n",
	        c->source[0] != '\0' ? c->source : "built-in defaults");
	for (size_t i = 0; i < NOPTS; i++)
		if (cfg_opts[i].scope == CFG_GLOBAL)
			dump_opt(&cfg_opts[i], c, out);
	for (unsigned l = 0; l < c->nlisteners; l++) {
		fprintf(out, "\n[listener %s]\n", c->listeners[l].name);
		for (size_t i = 0; i < NOPTS; i++)
			if (cfg_opts[i].scope == CFG_LISTENER)
				dump_opt(&cfg_opts[i], &c->listeners[l], out);
	}
}

/* config_setting_count / config_setting_name - the rows, for docs and tests */
size_t config_setting_count(void)
{
	return NOPTS;
}

const char *config_setting_name(size_t i, const char **doc)
{
	if (i >= NOPTS)
		return NULL;
	if (doc != NULL)
		*doc = cfg_opts[i].doc;
	return cfg_opts[i].name;
}
