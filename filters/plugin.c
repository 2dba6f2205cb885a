/* plugin.c - load and initialize one filter: a plugin .so named on a config
 * line ("plugin = /path/x.so k=v ..."), or a built-in filter.
 *
 * RTLD_NOW so a plugin with a missing symbol fails at startup (where -t and
 * the admin see it), not on the first message; RTLD_LOCAL so two plugins
 * cannot collide on their own symbols.  The plugin resolves the mw_*
 * functions from the mailwarden executable (linked with -rdynamic).
 * Every error names the path, since a config may load several plugins.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/filter_api.h"
#include "filters/plugin.h"
#include "proxy/sbuf.h"

#define PLUGIN_MAX_ARGS 64

/* split_args - split p->spec into words; the first is the path unless
 * builtin.  0, or -1 with err. */
static int split_args(struct plugin *p, int builtin, char *err, size_t errlen)
{
	char *copy = xstrdup(p->spec), *w, *save = NULL, *eq;
	size_t n = 0;

	p->words = copy;
	p->keys = xcalloc(PLUGIN_MAX_ARGS, sizeof(char *));
	p->values = xcalloc(PLUGIN_MAX_ARGS, sizeof(char *));
	w = strtok_r(copy, " \t", &save);
	if (!builtin) {
		if (w == NULL) {
			snprintf(err, errlen, "plugin: empty plugin line");
			return -1;
		}
		p->path = xstrdup(w);
		w = strtok_r(NULL, " \t", &save);
	} else
		p->path = xstrdup("");
	for (; w != NULL; w = strtok_r(NULL, " \t", &save)) {
		eq = strchr(w, '=');
		if (eq == NULL || eq == w) {
			snprintf(err, errlen, "plugin %s: argument \"%.64s\" is not key=value",
			    builtin ? "(built-in)" : p->path, w);
			return -1;
		}
		if (n == PLUGIN_MAX_ARGS) {
			snprintf(err, errlen, "plugin %s: more than %d arguments",
			    builtin ? "(built-in)" : p->path, PLUGIN_MAX_ARGS);
			return -1;
		}
		*eq = '\0';
		p->keys[n] = w;
		p->values[n] = eq + 1;
		n++;
	}
	p->args.count = n;
	p->args.keys = p->keys;
	p->args.values = p->values;
	return 0;
}

/* check_init - verify ops and call init.  0, or -1 with err. */
static int check_init(struct plugin *p, const char *what, char *err, size_t errlen)
{
	char ierr[256];

	if (p->ops->api_version != MW_FILTER_API_VERSION) {
		snprintf(err, errlen, "plugin %s: API version %u, mailwarden has %u", what,
		    p->ops->api_version, MW_FILTER_API_VERSION);
		return -1;
	}
	if (p->ops->name == NULL || !filter_name_ok(p->ops->name)) {
		snprintf(err, errlen, "plugin %s: filter name must be [a-z0-9_], 1 to 31 chars", what);
		return -1;
	}
	if (p->ops->init != NULL) {
		ierr[0] = '\0';
		if (p->ops->init(&p->instance, &p->args, ierr, sizeof(ierr)) != 0) {
			ierr[sizeof(ierr) - 1] = '\0';
			snprintf(err, errlen, "plugin %s: init failed: %s", what,
			    ierr[0] ? ierr : "(no reason given)");
			return -1;
		}
	}
	p->inited = 1;
	return 0;
}

struct plugin *plugin_load(const char *spec, char *err, size_t errlen)
{
	struct plugin *p = xcalloc(1, sizeof(*p));
	const char *e;
	void *sym;

	p->spec = xstrdup(spec);
	if (split_args(p, 0, err, errlen) < 0)
		goto fail;
	if (strchr(p->path, '/') == NULL) {
		snprintf(err, errlen, "plugin %s: give a path with a '/' (./%s for the current directory)",
		    p->path, p->path);
		goto fail;
	}
	dlerror();
	p->handle = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
	if (p->handle == NULL) {
		e = dlerror();
		snprintf(err, errlen, "plugin %s: cannot load: %s", p->path, e ? e : "dlopen failed");
		goto fail;
	}
	dlerror();
	sym = dlsym(p->handle, MW_FILTER_SYMBOL);
	if (sym == NULL) {
		snprintf(err, errlen, "plugin %s: no symbol \"%s\" (not a mailwarden plugin?)",
		    p->path, MW_FILTER_SYMBOL);
		goto fail;
	}
	p->ops = sym;
	if (check_init(p, p->path, err, errlen) < 0)
		goto fail;
	return p;
fail:
	plugin_free(p);
	return NULL;
}

struct plugin *plugin_builtin(const struct mw_filter_ops *ops, const char *args_spec,
                              char *err, size_t errlen)
{
	struct plugin *p = xcalloc(1, sizeof(*p));

	p->spec = xstrdup(args_spec ? args_spec : "");
	p->ops = ops;
	if (split_args(p, 1, err, errlen) < 0
	    || check_init(p, ops->name ? ops->name : "(built-in)", err, errlen) < 0) {
		plugin_free(p);
		return NULL;
	}
	return p;
}

void plugin_free(struct plugin *p)
{
	if (p == NULL)
		return;
	if (p->inited && p->ops->fini != NULL)
		p->ops->fini(p->instance);
	if (p->handle != NULL)
		dlclose(p->handle);
	free(p->words);
	free(p->keys);
	free(p->values);
	free(p->path);
	free(p->spec);
	free(p);
}
