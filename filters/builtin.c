/* builtin.c - the table of built-in filters (builtin.h). */
#include <string.h>

#include "filters/builtin.h"

/* One line per built-in, grouped by area; each is defined in filters/NAME.c. */
/* sender authentication */

/* content */
extern const struct builtin_filter builtin_attachments;

/* spam */
extern const struct builtin_filter builtin_rules;

static const struct builtin_filter *const builtins[] = {
	/* sender authentication */

	/* content */
	&builtin_attachments,

	/* spam */
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
