/* eval_html.c - eval: functions over HTML (SpamAssassin's HTMLEval, ImageInfo). */
#include "rules/eval.h"

static const struct eval_def defs[] = {
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_html = {
	.name = "html",
	.defs = defs,
};
