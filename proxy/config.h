/* config.h - mailwarden's settings: one typed table, read from an INI file
 * (libinih) and from "-o name=value" overrides, into an immutable struct.
 *
 * File layout:
 *   name = value              global settings (before any section, or in [mailwarden])
 *   [listener NAME]           one section per listener:
 *   listen = ADDR:PORT        127.0.0.1:2525, [::1]:2525, *:25
 *   upstream = HOST:PORT
 *   direction = inbound|outbound
 * Overrides: -o name=value for globals, -o listener.NAME.key=value for a
 * listener (creates it when new).  --listen/--upstream on the command line
 * make a listener named "default".
 *
 * Reload builds a new struct config; sessions keep the one they started with
 * (config_ref / config_unref).
 */
#ifndef MW_CONFIG_H
#define MW_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include "mailwarden/filter.h"

#define CFG_MAX_LISTENERS 32
#define CFG_MAX_PLUGINS   32

enum bare_newline_mode { BARE_NEWLINE_REJECT = 0, BARE_NEWLINE_NORMALIZE };
enum early_talker_mode { EARLY_TALKER_NOTE = 0, EARLY_TALKER_REJECT };
enum vrfy_mode { VRFY_252 = 0, VRFY_RELAY };
enum log_target { LOG_TO_STDERR = 0, LOG_TO_SYSLOG };
enum spam_headers_mode { SPAM_HEADERS_TAGGED = 0, SPAM_HEADERS_ALWAYS };
/* --- MIME, attachments (issue 5) --- */
enum attach_action { ATTACH_NONE = 0, ATTACH_TAG, ATTACH_QUARANTINE, ATTACH_REJECT };

struct listener_cfg {
	char   name[64];
	char   listen[256];      /* "ADDR:PORT" as written */
	char   upstream[256];    /* "HOST:PORT" as written */
	enum mw_direction direction;
	/* --- per-listener transport (issue 3) --- */

};

/* Score thresholds of one direction; 0 disables a threshold. */
struct policy_cfg {
	double tag_score;
	double quarantine_score;
	double reject_score;
};

struct config {
	int refcount;
	char source[512];             /* config file path, or "" for embedded defaults */

	/* identity, process */
	char hostname[256];           /* greeting, EHLO to the upstream */
	char user[64];                /* drop privileges to this user; "" = stay */
	enum log_target log;
	int  log_level;               /* syslog priority: LOG_ERR..LOG_DEBUG */
	char syslog_facility[32];
	char audit_log[512];          /* path; "" = no audit log */
	char quarantine_dir[512];
	unsigned proxy_threads;       /* event loops of the proxy; 0 = one per CPU */
	unsigned scanner_threads;
	unsigned scanner_queue;       /* requests waiting for a thread */
	char     plugins[CFG_MAX_PLUGINS][1024];   /* "path k=v ..." */
	unsigned nplugins;

	/* limits */
	uint64_t message_size_limit;  /* bytes */
	unsigned max_connections;
	unsigned max_connections_per_ip;
	unsigned max_recipients;
	unsigned command_line_limit;  /* bytes, CRLF included */
	unsigned max_errors;          /* bad commands before 421 */

	/* timeouts, milliseconds */
	unsigned greet_pause;
	unsigned client_command_timeout;
	unsigned client_data_timeout;
	unsigned upstream_connect_timeout;
	unsigned upstream_command_timeout;
	unsigned upstream_data_timeout;
	unsigned upstream_eod_timeout;
	unsigned upstream_probe_interval;
	unsigned scan_timeout;
	unsigned shutdown_timeout;

	/* SMTP behaviour */
	enum bare_newline_mode bare_newline;
	enum early_talker_mode early_talker;
	enum vrfy_mode vrfy;

	/* policy */
	struct policy_cfg inbound, outbound;
	char reject_reply[256];       /* "550 5.7.1 text" */
	char tempfail_reply[256];     /* "451 4.7.1 text" */
	char quarantine_reply[256];   /* "250 2.0.0 text" */
	char discard_reply[256];      /* "250 2.0.0 text" */
	char subject_tag[64];         /* "" = leave Subject alone */
	enum spam_headers_mode spam_headers;

	/* filters */
	char filters[512];            /* built-in filters to run, in order: "spf dkim ..." */
	char authserv_id[256];        /* Authentication-Results authserv-id; "" = hostname */

	/* --- DNS layer (issue 4) --- */

	/* --- SPF (issue 4) --- */

	/* --- DKIM, DMARC (issue 4) --- */

	/* --- antivirus (issue 5) --- */

	/* --- MIME, attachments (issue 5) --- */
	/* attachment policy ("attachments" filter), per direction [0] inbound, [1] outbound */
	char attach_inbound_banned_extensions[1024];  /* "exe scr ..." */
	char attach_outbound_banned_extensions[1024];
	char attach_inbound_banned_types[1024];       /* "application/x-dosexec ..." */
	char attach_outbound_banned_types[1024];
	int  attach_inbound_extension_action;         /* enum attach_action */
	int  attach_inbound_type_action;
	int  attach_inbound_content_action;
	int  attach_inbound_archive_action;
	int  attach_inbound_encrypted_action;
	int  attach_outbound_extension_action;
	int  attach_outbound_type_action;
	int  attach_outbound_content_action;
	int  attach_outbound_archive_action;
	int  attach_outbound_encrypted_action;
	int  attach_scan_archives;                    /* look inside zip, 7z, rar, tar ... */
	unsigned attach_archive_depth;                /* archives inside archives */
	unsigned attach_archive_max_entries;          /* entries read per message */
	uint64_t attach_archive_max_size;             /* bytes of a nested archive read */

	/* --- quarantine (issue 5) --- */

	/* --- rules (issue 6) --- */
	char     rules_files[64][1024];   /* files, directories (*.cf) or globs of rule files */
	unsigned nrules_files;
	char     rules_cache_dir[512];    /* compiled Hyperscan databases; "" = no cache */
	unsigned rules_time_budget;       /* ms per message for all rules; 0 = none */

	/* --- store, Bayes (issue 6) --- */

	/* --- DNSBL, greylisting, rate limits, spamd (issue 6) --- */

	/* --- milter (issue 7) --- */

	/* --- transport: TLS, AUTH, XCLIENT, PROXY (issue 3) --- */

	struct listener_cfg listeners[CFG_MAX_LISTENERS];
	unsigned nlisteners;
};

/* config_load - defaults, then the file (if path != NULL), then each
 * override "name=value" in order.  Returns a new config (refcount 1), or NULL
 * with "file:line: message" (or "-o name: message") in err. */
struct config *config_load(const char *path, const char *const *overrides,
                           size_t noverrides, char *err, size_t errlen);
struct config *config_ref(struct config *c);
void config_unref(struct config *c);

/* config_dump - "name = value" for every setting, as -t -v prints it. */
void config_dump(const struct config *c, FILE *out);

/* Parsers shared with the listener code; 0 or -1. */
int config_parse_size(const char *s, uint64_t *out);       /* 10M, 512k, 1G, bytes */
int config_parse_duration(const char *s, unsigned *ms);    /* 300s, 5m, 250ms, 1h */
int config_parse_bool(const char *s, int *out);            /* yes/no true/false on/off 1/0 */

/* The table's rows, for documentation and tests: name of row i (NULL past
 * the end) and its one-line doc in *doc (if doc != NULL).  Static strings. */
size_t config_setting_count(void);
const char *config_setting_name(size_t i, const char **doc);

#endif
