/* builtin.c - the table of built-in filters (builtin.h). */
#include <string.h>

#include "filters/builtin.h"

/* One line per built-in, grouped by area; each is defined in filters/NAME.c. */
/* sender authentication */
extern const struct builtin_filter builtin_spf;
extern const struct builtin_filter builtin_dkim, builtin_dkim_sign, builtin_dmarc;

/* content */
extern const struct builtin_filter builtin_attachments;
extern const struct builtin_filter builtin_clamav;
extern const struct builtin_filter builtin_clamd;

/* spam */
extern const struct builtin_filter builtin_bayes;
extern const struct builtin_filter builtin_greylist;
extern const struct builtin_filter builtin_ratelimit;
extern const struct builtin_filter builtin_dnsbl;
extern const struct builtin_filter builtin_spamd;
extern const struct builtin_filter builtin_rules;

static const struct builtin_filter *const builtins[] = {
	/* sender authentication */
	&builtin_spf,
	&builtin_dkim, &builtin_dkim_sign, &builtin_dmarc,

	/* content */
	&builtin_attachments,
	&builtin_clamav,
	&builtin_clamd,

	/* spam */
	&builtin_bayes,
	&builtin_greylist,
	&builtin_ratelimit,
	&builtin_dnsbl,
	&builtin_spamd,
	&builtin_rules,

	NULL
};

const struct builtin_filter *builtin_find(const char *name)
{
	size_t i;

	for (i = 0; builtins[i] != NULL; i++)
		if (strcmp(builtins[i]->name, name) == 0)
			return builtins[i];
	return NULL;
}

const char *builtin_name(size_t i)
{
	size_t n;

	for (n = 0; builtins[n] != NULL; n++)
		if (n == i)
			return builtins[n]->name;
	return NULL;
}
