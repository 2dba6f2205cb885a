/* plugin.h - one filter instance of the pipeline: a plugin loaded with
 * dlopen() from a config line "path k=v ...", or a built-in filter (a
 * struct mw_filter_ops compiled into mailwarden).  Either way the filter is
 * checked (API version, name) and initialized once, here. */
#ifndef MW_PLUGIN_H
#define MW_PLUGIN_H

#include <stddef.h>
#include "mailwarden/filter.h"

struct plugin {
	char  *spec;                        /* owned: the config line, for logs */
	char  *path;                        /* owned: "" for a built-in */
	void  *handle;                      /* dlopen handle; NULL for a built-in */
	const struct mw_filter_ops *ops;    /* in the plugin's image, or static */
	void  *instance;                    /* from ops->init */
	int    inited;                      /* init succeeded: fini is due */
	char  *words;                       /* owned: copy of spec, split in place */
	const char **keys, **values;        /* owned arrays pointing into words; kept
	                                     * for the plugin's life */
	struct mw_filter_args args;
};

/* plugin_load - spec is "path k1=v1 k2=v2" (words split on blanks; a value
 * cannot hold a blank yet).  path must contain a '/'.  dlopen(RTLD_NOW |
 * RTLD_LOCAL), look up MW_FILTER_SYMBOL (a const struct mw_filter_ops),
 * check api_version and name, call init.  Returns the plugin, or NULL with
 * a one-line reason naming the path in err. */
struct plugin *plugin_load(const char *spec, char *err, size_t errlen);

/* plugin_builtin - the same for a filter compiled in; args_spec holds only
 * the "k=v" words (may be NULL or ""). */
struct plugin *plugin_builtin(const struct mw_filter_ops *ops, const char *args_spec,
                              char *err, size_t errlen);

/* plugin_free - fini (if init succeeded), dlclose, free. NULL is fine. */
void plugin_free(struct plugin *p);

#endif
