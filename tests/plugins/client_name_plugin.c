/* client_name_plugin.c - a test plugin: adds "X-Client-Name: NAME" with
 * what mw_client_name() says ("(none)" if it says ""), so a functional test
 * sees what a filter sees.  Built by tests/functional/test_rdns.py. */
#include <stddef.h>
#include "mailwarden/filter.h"

static void on_eom(struct mw_ctx *ctx)
{
	const char *n = mw_client_name(ctx);

	mw_header_add(ctx, "X-Client-Name", n[0] ? n : "(none)");
}

const struct mw_filter_ops mailwarden_filter = {
	.api_version = MW_FILTER_API_VERSION,
	.name = "client_name",
	.on_eom = on_eom,
};
