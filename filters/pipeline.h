/* pipeline.h - the filter pipeline: built-in filters and plugins, run over
 * one message, and the policy that turns their findings into one action.
 * The same code runs in the scanner process (on its worker threads) and in
 * "mailwarden scan" (in-process). */
#ifndef MW_PIPELINE_H
#define MW_PIPELINE_H

#include "../proxy/config.h"
#include "../proxy/scanproto.h"

struct pipeline;

/* pipeline_new - load plugins and init every filter of cfg.  Returns NULL
 * with a one-line reason in err.  cfg is borrowed: it must outlive p. */
struct pipeline *pipeline_new(struct config *cfg, char *err, size_t errlen);
void pipeline_free(struct pipeline *p);

/* pipeline_scan - run every filter over the message in msgfd (read-only;
 * mapped, not consumed), then policy.  Always fills res (res->id = req->id);
 * on an internal failure res->action = MW_TEMPFAIL and res->error is set.
 * If policy says quarantine, the message is stored first (a store failure
 * turns the action into tempfail).  Thread-safe. */
void pipeline_scan(struct pipeline *p, const struct scan_request *req, int msgfd,
                   struct scan_result *res);

/* pipeline_scan_ex - the same with flags: PIPELINE_DRY_RUN stores nothing
 * (a quarantine verdict is reported, quarantine_id stays ""), for
 * "mailwarden scan". */
#define PIPELINE_DRY_RUN 0x1
void pipeline_scan_ex(struct pipeline *p, const struct scan_request *req, int msgfd,
                      unsigned flags, struct scan_result *res);

#endif
