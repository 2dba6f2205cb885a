/* eval_header.c - eval: functions over header fields (SpamAssassin's
 * HeaderEval and the header parts of its Check plugin). */
#include <string.h>
#include <strings.h>
#include "rules/eval.h"

/* check_for_missing_to_header: no To and no Apparently-To field */
static double missing_to(struct eval_msg *m, const struct rule *r)
{
	(void)r;
	return !eval_header_first(m, "To") && !eval_header_first(m, "Apparently-To");
}

/* check_header_count_range(NAME, MIN, MAX): that many fields of NAME */
static double header_count_range(struct eval_msg *m, const struct rule *r)
{
	size_t n = 0;
	const char *name = eval_arg(r, 0);
	for (size_t i = 0; i < m->in->nheaders; i++)
		if (strcasecmp(m->in->headers[i].name, name) == 0) n++;
	return n >= eval_arg_num(r, 1, 0) && n <= eval_arg_num(r, 2, 1e9);
}

static const struct eval_def defs[] = {
	{ "check_for_missing_to_header", missing_to, 0, 0, NULL, NULL, 0 },
	{ "check_header_count_range", header_count_range, 3, 3, NULL, NULL, 0 },
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_header = {
	.name = "header",
	.defs = defs,
};
