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
#define CFG_MAX_NOTES     16

enum bare_newline_mode { BARE_NEWLINE_REJECT = 0, BARE_NEWLINE_NORMALIZE };
enum early_talker_mode { EARLY_TALKER_NOTE = 0, EARLY_TALKER_REJECT };
enum vrfy_mode { VRFY_252 = 0, VRFY_RELAY };
enum log_target { LOG_TO_STDERR = 0, LOG_TO_SYSLOG };
enum spam_headers_mode { SPAM_HEADERS_TAGGED = 0, SPAM_HEADERS_ALWAYS };
enum milter_fail_action { MILTER_FAIL_TEMPFAIL = 0, MILTER_FAIL_ACCEPT };
enum milter_quarantine_mode { MILTER_QUARANTINE_STORE = 0, MILTER_QUARANTINE_MTA };

/* the listener name of the requests of the milter front end and of
 * "mailwarden scan" in the audit log (reserved: no [listener NAME] may
 * take them) */
#define SCAN_LISTENER_MILTER "milter"
#define SCAN_LISTENER_CLI    "scan"

/* --- MIME, attachments (issue 5) --- */
enum attach_action { ATTACH_NONE = 0, ATTACH_TAG, ATTACH_REPLACE, ATTACH_QUARANTINE, ATTACH_REJECT };

struct listener_cfg {
	char   name[64];
	char   listen[256];      /* "ADDR:PORT" as written */
	char   upstream[256];    /* "HOST:PORT" as written */
	enum mw_direction direction;
	/* --- per-listener transport (issue 3) --- */
	enum mw_tls_mode { MW_TLS_NONE = 0, MW_TLS_STARTTLS, MW_TLS_IMPLICIT } tls_mode;
	char   tls_cert[1024];        /* chain files, space separated (SNI picks) */
	char   tls_key[1024];         /* key files, same order */
	int    tls_required;          /* 530 5.7.0 before TLS (session.c tls_first) */
	enum mw_upstream_tls { MW_UPTLS_OFF = 0, MW_UPTLS_OPPORTUNISTIC, MW_UPTLS_REQUIRED } upstream_tls;
	char   upstream_tls_ca_file[512];  /* verify the upstream against it; "" = no check */
	char   upstream_tls_name[256];     /* expected name; "" = host of upstream */
	enum mw_auth_mode { MW_AUTH_NONE = 0, MW_AUTH_RELAY } auth;   /* relay: the upstream checks */
	int    auth_plaintext;        /* AUTH allowed without TLS */
	int    upstream_xclient;      /* send XCLIENT/XFORWARD when offered */
	int    proxy_protocol;        /* a PROXY v1/v2 header comes first */
	char   proxy_protocol_from[512];   /* networks allowed to send it */
	char   xforward_from[512];    /* peers whose XFORWARD names the client */
	int    transparent;           /* relay to the original destination */

};

/* Score thresholds of one direction; 0 disables a threshold. */
struct policy_cfg {
	double tag_score;
	double quarantine_score;
	double reject_score;
};

/* max_recipients' maximum: that many recipients of SMTP_PATH_MAX octets
 * fit one scan request (scanproto.h "Big envelopes"; session.c checks) */
#define CONFIG_MAX_RECIPIENTS_MAX 50000

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
	int  audit_fail_tempfail;     /* audit log failing: 1 = tempfail new messages */
	char stats_file[512];         /* path of the shared counters (stats.h); "" = none */
	char quarantine_dir[512];
	unsigned proxy_threads;       /* event loops of the proxy; 0 = one per four CPUs */
	unsigned scanner_threads;
	unsigned scanner_queue;       /* requests waiting for a thread */
	char     plugins[CFG_MAX_PLUGINS][1024];   /* "path k=v ..." */
	unsigned nplugins;

	/* limits */
	uint64_t message_size_limit;  /* bytes */
	uint64_t spool_memory_max;    /* bytes of messages in flight, 0 = no limit */
	unsigned max_connections;
	unsigned max_connections_per_ip;
	unsigned max_recipients;      /* at most CONFIG_MAX_RECIPIENTS_MAX */
	unsigned command_line_limit;  /* bytes, CRLF included */
	unsigned max_errors;          /* bad commands before 421 */
	unsigned junk_command_limit;  /* NOOP, RSET, ... before each is an error */

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
	char     dns_forwarder[256];  /* "ADDR[@PORT] ..."; "" = /etc/resolv.conf */
	unsigned dns_timeout;         /* ms, deadline of one lookup */
	unsigned dns_cache_size;      /* answers kept (entries) */
	uint64_t dns_cache_memory;    /* bytes the kept answers may take */
	unsigned dns_cache_max_ttl;   /* ms, longest time an answer is kept */
	unsigned dns_negative_ttl;    /* ms, longest time NXDOMAIN/NODATA is kept */
	unsigned dns_failure_ttl;     /* ms, how long SERVFAIL is remembered */
	int      dns_client_name;     /* look up the client's forward-confirmed reverse DNS */

	/* --- SPF (issue 4) --- */
	enum mw_action spf_fail_action;       /* verdict per result; MW_ACCEPT = none */
	enum mw_action spf_softfail_action;
	enum mw_action spf_neutral_action;
	enum mw_action spf_none_action;
	enum mw_action spf_temperror_action;
	enum mw_action spf_permerror_action;
	double spf_pass_score, spf_fail_score, spf_softfail_score, spf_neutral_score;
	double spf_none_score, spf_temperror_score, spf_permerror_score;
	char   spf_reject_text[400];          /* %{d} domain, %{i} client, %{e} explanation */
	char   spf_skip_networks[512];        /* CIDRs whose clients are not checked */
	unsigned spf_timeout;                 /* ms, all lookups of one check */

	/* --- DKIM, DMARC (issue 4) --- */
	unsigned dkim_min_key_bits;   /* smaller keys never pass (result "policy") */
	enum dkim_length_mode { DKIM_LENGTH_WHOLE = 0, DKIM_LENGTH_ACCEPT, DKIM_LENGTH_REFUSE }
	         dkim_body_length;    /* what a signature with l= may cover */
	unsigned dkim_timeout;        /* ms for all key lookups of one message */
	unsigned dkim_max_signatures; /* signatures looked at per message */
	double   dkim_pass_score;
	double   dkim_fail_score;
	char     dkim_sign_keys[32][1024];   /* "domain selector /path/key.pem" */
	unsigned ndkim_sign_keys;
	char     dkim_sign_headers[1024];    /* "from:to:subject:..." */
	char     dkim_oversign_headers[512];
	enum dmarc_action { DMARC_ACT_REJECT = 0, DMARC_ACT_QUARANTINE, DMARC_ACT_TAG, DMARC_ACT_SCORE }
	         dmarc_reject_action, dmarc_quarantine_action, dmarc_bad_from_action;
	double   dmarc_fail_score;
	char     dmarc_psl_file[512];

	/* --- antivirus (issue 5) --- */
	char av_database[512];        /* libclamav database directory (or file) */
	char av_tmpdir[512];          /* libclamav temp dir; "" = its default */
	uint64_t av_max_scansize;     /* bytes; 0 = libclamav's default */
	uint64_t av_max_filesize;
	unsigned av_max_recursion;
	unsigned av_max_files;
	unsigned av_max_zip_entries;  /* listed by a message's zip attachments */
	unsigned av_max_scantime;     /* ms */
	int  av_limit_action;         /* enum av_fail_mode (filters/av.h) */
	int  av_fail_action;          /* enum av_fail_mode */
	unsigned av_db_check_interval;/* ms; 0 = never look for database changes */
	int  av_inbound_action;       /* enum av_virus_mode (filters/av.h) */
	int  av_outbound_action;
	int  av_headers;              /* add X-Virus-Scanned / X-Virus-Status */
	char clamd_socket[512];       /* "/path" (unix) or "HOST:PORT" */
	unsigned clamd_connect_timeout;  /* ms */
	unsigned clamd_timeout;       /* ms, the whole scan exchange */

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
	int  attach_inbound_unchecked_action;         /* MIME past mime.h's limits */
	int  attach_outbound_unchecked_action;
	int  attach_scan_archives;                    /* look inside zip, 7z, rar, tar ... */
	unsigned attach_archive_depth;                /* archives inside archives */
	unsigned attach_archive_max_entries;          /* entries read per message */
	uint64_t attach_archive_max_size;             /* bytes of a nested archive read */

	/* --- quarantine (issue 5) --- */
	unsigned quarantine_max_age;          /* seconds; entries older are expired; 0 = keep */
	unsigned quarantine_expire_interval;  /* ms between the daemon's expiry runs */
	char quarantine_release_upstream[256]; /* HOST:PORT; "" = the listener's upstream */
	int  quarantine_delete_released;      /* remove an entry once fully released */

	/* --- rules (issue 6) --- */
	int      rules_net_tests;         /* network tests of the rules (DNS blocklists, URIBL): on/off */
	unsigned rules_dns_timeout;       /* ms for all DNS lookups of the rules on one message */
	char     rules_files[64][1024];   /* files, directories (*.cf) or globs of rule files */
	unsigned nrules_files;
	char     rules_cache_dir[512];    /* compiled Hyperscan databases; "" = no cache */
	unsigned rules_time_budget;       /* ms per message for all rules; 0 = none */
	int      rules_score_set;         /* SpamAssassin score set 0..3; -1 = auto (2 with bayes, else 0) */

	/* --- store, Bayes (issue 6) --- */
	int      store_backend;          /* enum store_kind: 0 lmdb, 1 redis */
	char     store_path[512];        /* LMDB file */
	uint64_t store_map_size;         /* LMDB map size, bytes */
	char     store_redis[256];       /* "HOST:PORT" */
	char     store_prefix[64];       /* key prefix in Redis */
	char     store_redis_user[128];  /* Redis ACL user to AUTH as; "" = the default user */
	char     store_redis_password_file[512]; /* file holding the Redis password; "" = no AUTH */
	unsigned store_timeout;          /* ms, every Redis call */
	int      store_fail_closed;      /* store down: 1 = tempfail, 0 = go on */
	double   bayes_min_prob_strength;/* |p-0.5| of a token to count */
	unsigned bayes_min_spam;         /* learned spam before Bayes speaks */
	unsigned bayes_min_ham;
	unsigned bayes_max_tokens;       /* most significant tokens combined */
	unsigned bayes_token_max;        /* LMDB: tokens kept, the least useful removed past it (0 = all) */
	unsigned bayes_token_ttl;        /* Redis: s a token lives after it was last learned (0 = ever) */
	unsigned bayes_seen_ttl;         /* s a learned message's "seen" key lives (0 = ever) */
	char     bayes_scores[512];      /* "BAYES_00=-1.9 ..." */
	int      bayes_autolearn;
	int      bayes_chars;            /* the character 4-gram model (bayes_chars.h) */
	int      bayes_list_boilerplate; /* a list's boilerplate left out (bayes_list.h) */
	unsigned bayes_retrain_interval; /* s between the daemon's looks at its examples (0 = never) */
	double   bayes_autolearn_spam;   /* score (others' symbols) to learn spam */
	double   bayes_autolearn_ham;    /* score at or below which to learn ham */
	int      bayes_autolearn_examples;  /* autolearn keeps examples too */
	unsigned bayes_autolearn_example_ttl; /* s they live (0 = as bayes_seen_ttl) */
	unsigned bayes_autolearn_token_ttl; /* Redis, bayes_token_ttl 0: s a token autolearn made lives (0 = ever) */

	/* --- DNSBL, greylisting, rate limits, spamd (issue 6) --- */
	char     dnsbl_lists[32][1024];  /* "ZONE ip|domain CODE=SYMBOL:SCORE ..." */
	unsigned ndnsbl_lists;
	unsigned dnsbl_timeout;          /* ms per lookup; 0 = dns_timeout */
	unsigned dnsbl_max_domains;      /* URI/sender domains looked up per message */
	unsigned greylist_delay;         /* ms before a retry passes */
	unsigned greylist_retry_window;  /* ms a first attempt is remembered */
	unsigned greylist_pass_lifetime; /* ms a passed triplet stays whitelisted */
	char     greylist_whitelist[1024]; /* client nets, sender domains, recipients */
	char     greylist_whitelist_file[1024]; /* more entries, one or more a line; "" = none */
	unsigned greylist_auto_whitelist_clients; /* passes that whitelist a client net; 0 = off */
	char     ratelimit_ip[64];       /* "COUNT/WINDOW", "" = off */
	char     ratelimit_sender[64];
	char     ratelimit_user[64];
	char     ratelimit_rcpt_domain[64];
	char     spamd_address[256];     /* "HOST:PORT" */
	unsigned spamd_timeout;          /* ms, whole exchange */
	uint64_t spamd_max_size;         /* larger messages are not sent */
	double   spamd_weight;           /* spamd's score counts this much */

	/* --- milter (issue 7) --- */
	char     milter_listen[256];          /* "inet:PORT@ADDR", "unix:/path"; "" = no milter */
	char     milter_socket_mode[8];       /* octal, of a unix: socket */
	char     milter_socket_group[64];     /* its group; "" = the user's */
	unsigned milter_timeout;              /* ms the scanner may take at end of message */
	enum milter_fail_action milter_default_action;
	char     milter_internal_networks[1024];  /* CIDRs whose mail is outbound */
	enum milter_quarantine_mode milter_quarantine;
	int      milter_early;                /* envelope verdicts at RCPT */
	unsigned milter_early_timeout;        /* ms the scanner may take for one at RCPT */
	unsigned milter_max_connections;      /* MTA connections at once (0: no bound) */
	/* ms libmilter waits on the MTA (smfi_settimeout): for the rest of a
	 * packet (a worker thread waits with it), for a write, and between
	 * commands (swept every 10 min); taken at start, as libmilter copies it
	 * into each connection from what smfi_main was given */
	unsigned milter_peer_timeout;

	/* --- transport: TLS, AUTH, XCLIENT, PROXY (issue 3) --- */
	int  tls_min_version;         /* TLS1_2_VERSION ... */
	char tls_ciphers[512];        /* TLS <= 1.2 cipher list ("" = OpenSSL's) */
	char tls_ciphersuites[512];   /* TLS 1.3 suites ("" = OpenSSL's) */
	/* IPv6 prefixes of translated IPv4 clients (RFC 6052); config_load
	 * hands them to ipnet_xlat_set, process-wide */
	char nat64_prefixes[512];

	struct listener_cfg listeners[CFG_MAX_LISTENERS];
	unsigned nlisteners;

	/* list entries config_load rewrote (written inside one of
	 * nat64_prefixes, they are the IPv4 networks their clients are):
	 * "FILE:LINE: note: ..." each, for -t and the start-up log */
	char     notes[CFG_MAX_NOTES][400];
	unsigned nnotes;              /* all of them; only CFG_MAX_NOTES kept */
};

/* config_load - defaults, then the file (if path != NULL), then each
 * override "name=value" in order.  Returns a new config (refcount 1), or NULL
 * with "file:line: message" (or "-o name: message") in err.  A config that
 * loads sets the process's translation prefixes (nat64_prefixes,
 * ipnet_xlat_set): every front end and the scanner load their config
 * through here, at start-up and at each reload.  An IPv6 entry of a
 * network list (spf_skip_networks, greylist_whitelist,
 * milter_internal_networks, proxy_protocol_from) inside one of those
 * prefixes is rewritten as the IPv4 network it names (c->notes). */
struct config *config_load(const char *path, const char *const *overrides,
                           size_t noverrides, char *err, size_t errlen);
struct config *config_ref(struct config *c);
void config_unref(struct config *c);

/* config_listeners_same - the same listeners in the same order, each with
 * the same settings (compared as -t -v prints them, not byte by byte)?
 * 1 or 0.  The master binds the listeners once: a reload that changes
 * them cannot take effect before a restart of the daemon. */
int config_listeners_same(const struct config *a, const struct config *b);

/* config_export - c (a flat struct, no pointers) in a new memfd, sealed
 * against any change (a front end that received it cannot alter what
 * another one reads); the descriptor (close-on-exec), or -1 with errno.
 * The master passes it down its control channel (ctlmsg.h): the front
 * ends never read the file themselves (they run as "user", and a file
 * only root may read would be theirs to miss). */
int config_export(const struct config *c);

/* config_import - the config in a descriptor config_export made (not
 * closed here): a new struct config, refcount 1, and the process's
 * translation prefixes set from it as config_load would; NULL with the
 * reason in err (a short or foreign file). */
struct config *config_import(int fd, char *err, size_t errlen);

/* config_set_process - the process-wide settings a config carries
 * (nat64_prefixes, ipnet_xlat_set), for a child that runs c after the
 * master loaded another one since (a reload's candidate).  0 or -1. */
int config_set_process(const struct config *c, char *err, size_t errlen);

/* config_open_proxy - does listener i take PROXY headers or XFORWARD
 * (which choose the client address) from a network wider than a few
 * balancers or MTAs: proxy_protocol_from (or xforward_from) holding an IPv4 prefix shorter than /8 or an IPv6
 * one shorter than /16 (0.0.0.0/0, ::/0; all-private ones such as
 * fc00::/7 excepted)?  1 with the warning in msg, else 0. */
int config_open_proxy(const struct config *c, unsigned i, char *msg, size_t msglen);
/* config_wide_internal - with a milter, does milter_internal_networks
 * hold a network as wide (as for config_open_proxy): its clients' mail
 * is outbound, unchecked and DKIM-signed.  1 with the
 * warning in msg, else 0. */
int config_wide_internal(const struct config *c, char *msg, size_t msglen);
/* config_milter_release - a milter that keeps quarantined messages in
 * our store (milter_quarantine = store) with no
 * quarantine_release_upstream: a release has nowhere to go but the MTA
 * that runs the milter, which scans it again.  1 with the warning in
 * msg, else 0. */
int config_milter_release(const struct config *c, char *msg, size_t msglen);
/* config_milter_port25 - a milter (milter_listen) beside a listener on
 * port 25: a milter site's MTA keeps port 25, and the sample's [listener
 * mx] (*:25), left in the installed config, takes it first or fails to
 * start.  1 with the warning in msg (the first such listener), else 0. */
int config_milter_port25(const struct config *c, char *msg, size_t msglen);
/* config_scans_nothing - no filter and no plugin: every message passes
 * unscanned.  1 with the notice in msg, else 0. */
int config_scans_nothing(const struct config *c, char *msg, size_t msglen);
/* config_runs_filter - whether the filters setting names this filter */
int config_runs_filter(const struct config *c, const char *name);

/* config_open_outbound - does listener i make anyone who reaches it an
 * outbound sender?  direction = outbound without auth = relay, on an
 * address that is neither loopback nor private (RFC 1918, ULA, link-local;
 * a wildcard counts as public).  1 with the warning in msg, else 0. */
int config_open_outbound(const struct config *c, unsigned i, char *msg, size_t msglen);

/* config_listener_hops - hop[i] (CFG_MAX_LISTENERS entries): the listener
 * whose address listener i relays to (to, or -1), and whether surely
 * (loopback, unspecified, the listen address itself) or only by an
 * address of this host's interfaces (netaddr_reaches 2).  Each upstream (resolved as
 * the proxy will) is compared with each listen address: the same port,
 * and the same address or a wildcard listen and an address of this host
 * (netaddr_reaches).  A transparent listener relays to each connection's
 * original destination (its upstream is only probed); an upstream name
 * that does not resolve is the proxy's to report at start.  Each name is
 * looked up once: call it once per check of all listeners. */
struct listener_hop {
	int to;         /* the listener reached, or -1 */
	int sure;       /* by the address itself, not only by an interface's address */
};
void config_listener_hops(const struct config *c, struct listener_hop *hop);

/* config_listener_loop - does listener i relay to one of our own
 * listeners, by the hops config_listener_hops found?  -1 with the
 * error in msg when the mail would loop (its own address, a chain of
 * listeners back to it) or reach a transparent listener's own address
 * (421); 1 with a warning for a chain that ends at an MTA (the mail is
 * scanned twice: plausible, if seldom meant), and for what would be an
 * error but for a hop known only by an interface's address; 0 otherwise. */
int config_listener_loop(const struct config *c, const struct listener_hop *hop, unsigned i, char *msg,
                         size_t msglen);

/* config_dump - "name = value" for every setting, as -t -v prints it. */
void config_dump(const struct config *c, FILE *out);

/* Parsers shared with the listener code; 0 or -1. */
int config_parse_size(const char *s, uint64_t *out);       /* 10M, 512k, 1G, bytes */
int config_parse_duration(const char *s, unsigned *ms);    /* 300s, 5m, 250ms, 1h */
int config_parse_age(const char *s, unsigned *sec);        /* 30d, 12h: whole seconds */
int config_parse_bool(const char *s, int *out);            /* yes/no true/false on/off 1/0 */

/* The table's rows, for documentation and tests: name of row i (NULL past
 * the end) and its one-line doc in *doc (if doc != NULL).  Static strings. */
size_t config_setting_count(void);
const char *config_setting_name(size_t i, const char **doc);

#endif
