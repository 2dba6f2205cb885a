/* eval_mime.c - eval: functions over MIME structure (SpamAssassin's MIMEEval, BodyEval). */
#include "rules/eval.h"

static const struct eval_def defs[] = {
	{ NULL, NULL, 0, 0, NULL, NULL, 0 }
};

const struct eval_module eval_module_mime = {
	.name = "mime",
	.defs = defs,
};
