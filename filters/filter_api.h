/* filter_api.h - internal: the state behind struct mw_ctx, shared by the
 * pipeline driver (which fills it) and filter_api.c (the mw_* functions a
 * filter calls).  Plugins never see this; they get include/mailwarden/
 * filter.h only. */
#ifndef MW_FILTER_API_H
#define MW_FILTER_API_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include "mailwarden/filter.h"
#include "proxy/scanproto.h"

#define MW_MAX_SYMBOLS   256    /* per message, all filters together */
#define MW_MAX_EDITS     64     /* header edits per message from filters */
#define MW_MAX_DESC      512    /* bytes of a symbol description */
#define MW_MAX_FIELDS    10000  /* header fields shown to filters */
#define MW_MAX_LINE      998    /* RFC 5322 line limit, for added fields */
#define MW_MAX_REPLY_TEXT 400   /* a verdict's reply text */

/* one header field of the message, parsed once per message */
struct msg_field {
	char       *name;       /* owned, NUL-terminated */
	char       *value;      /* owned, unfolded, trimmed, NUL-terminated */
	const char *raw;        /* raw value in the message (folding kept) */
	size_t      raw_len;
};

#define MW_MAX_AUTH      64     /* Authentication-Results entries per message */
#define MW_MAX_AUTH_PROPS 900

/* one Authentication-Results entry (mw_auth_result) */
struct auth_entry {
	char  method[32];
	char  result[32];
	char *props;                        /* owned, "" if none */
	char  filter[32];                   /* who said it */
};

/* one message under scan: input shared by every filter, and what they say */
struct msgscan {
	const struct scan_request *req;     /* borrowed */
	const unsigned char *msg;           /* borrowed: the mapped spool */
	size_t      len;
	size_t      body_off;               /* first byte of the body */
	struct msg_field *fields;           /* owned: the first MW_MAX_FIELDS, and the
	                                       first From field wherever it stands */
	size_t      nfields;
	size_t      nfrom;                  /* From fields in the whole header */
	size_t      nsubject;               /* Subject fields in the whole header */
	size_t      nunseen;                /* fields past the cap, not in fields[] */

	struct scan_symbol *symbols;        /* owned; moved into the result */
	size_t      nsymbols;
	struct header_edit *edits;          /* owned; moved into the result */
	size_t      nedits;
	enum mw_action hard;                /* hardest verdict, MW_ACCEPT if none */
	char        hard_text[MW_MAX_REPLY_TEXT + 1];   /* "" = configured text */
	char        hard_by[32];            /* filter name */
	int         cap_logged;             /* "symbol/edit cap reached" said once */
	struct auth_entry *auth;            /* owned, in the order filters said them */
	size_t      nauth;
	char        client_name[256];       /* forward-confirmed reverse DNS, "" if none */
	void       *mime;                   /* the shared MIME parse (mime.h), lazily built */
	void      (*mime_free)(void *);
	struct ms_outcome {                 /* owned; builtin_on_outcome, in order */
		void (*fn)(void *data, int taken);
		void *data;
	} *outcome;
	size_t      noutcome;
	char       *new_rest;               /* owned; builtin_new_body, NULL if none */
	size_t      new_rest_len;
	int         new_rest_top;           /* it replaces a single-part body */
};

/* one message seen by one filter */
struct mw_ctx {
	struct msgscan *ms;
	const struct mw_filter_ops *ops;
	void       *instance;
	const char *name;                   /* the filter's name, [a-z0-9_]{1,31} */
	void       *msgdata;                /* mw_set_msgdata */
	void      (*msgdata_free)(void *);
	/* The calls that write the result (mw_symbol, mw_verdict, the header
	 * edits, mw_auth_result, mw_set_msgdata) write the msgscan without a
	 * lock: only the hook's own thread may make them, while its ctx lives.
	 * A ctx made by mw_ctx_begin records that thread and refuses (and
	 * logs, once) a call from another one or after mw_ctx_end; one made
	 * otherwise (learning, tests: one thread) is not checked.  A call
	 * after run_filter returned reaches a ctx that is gone: nothing can
	 * catch every such call, filter.h forbids it. */
	pthread_t   owner;
	int         owned;
	atomic_int  ended;
	atomic_int  misuse_logged;
};

/* msgscan_parse - parse the header section of ms->msg once; 0 (always:
 * a message without a valid header section just has no fields).  Fields
 * past MW_MAX_FIELDS are walked (nfrom, nsubject, nunseen, body_off) but
 * not kept, except the first From and the first Subject field. */
int  msgscan_parse(struct msgscan *ms);
/* msgscan_auth - the n-th (0-based) entry of that method ("spf", "dkim",
 * ...), or NULL.  For filters that build on others' results (DMARC). */
const struct auth_entry *msgscan_auth(const struct msgscan *ms, const char *method, size_t n);

/* auth_props_get - the value of property key ("smtp.mailfrom", "header.d")
 * in an entry's props, copied to out; 1 if found, 0 if not. */
int auth_props_get(const struct auth_entry *e, const char *key, char *out, size_t outsz);

/* msgscan_outcome - tell what asked (builtin_on_outcome) whether the
 * message was taken, once: the calls are made and forgotten. */
void msgscan_outcome(struct msgscan *ms, int taken);
/* msgscan_free - an outcome not told yet is told "not taken"; then free everything owned (symbols/edits not yet moved out too). */
void msgscan_free(struct msgscan *ms);
/* mw_ctx_begin - ctx for one filter (ops, its instance) over ms, owned by
 * the calling thread (the scanner worker that runs the hooks) */
void mw_ctx_begin(struct mw_ctx *ctx, struct msgscan *ms, const struct mw_filter_ops *ops,
                  void *instance);
/* mw_ctx_end - free the filter's per-message data (after on_eom); the
 * writing calls are refused from then on. */
void mw_ctx_end(struct mw_ctx *ctx);

/* filter_name_ok - [a-z0-9_], 1 to 31 chars */
int  filter_name_ok(const char *name);
/* header_field_name_ok - RFC 5322 field name, 1 to 76 chars */
int  header_field_name_ok(const char *name);

#endif
