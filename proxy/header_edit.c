/* header_edit.c - see header_edit.h */
#include <string.h>

#include "proxy/header_edit.h"
#include "proxy/headers.h"

#define MAX_NAMED 64    /* edits that track per-name counts (change, remove_at) */

size_t header_edits_apply(const char *msg, size_t len, const struct header_edit *edits,
                          size_t nedits, struct sbuf *out)
{
	unsigned char changed[MAX_NAMED] = { 0 };
	unsigned seen[MAX_NAMED] = { 0 };    /* fields of edit i's name so far */
	struct header_field f;
	size_t pos = 0, i;

	if (msg == NULL)
		msg = "";
	for (i = 0; i < nedits; i++)
		if (edits[i].op == HE_ADD && out != NULL)
			sbuf_addf(out, "%s: %s\r\n", edits[i].name, edits[i].value);
	for (;;) {
		size_t at = pos;
		int rc = header_next(msg, len, &pos, &f);
		int keep = 1;

		if (rc != 1)
			return rc == 0 ? at : pos;
		for (i = 0; i < nedits; i++) {
			const struct header_edit *e = &edits[i];

			switch (e->op) {
			case HE_ADD:
				break;
			case HE_REMOVE:
				if (header_name_matches(&f, e->name))
					keep = 0;
				break;
			case HE_REMOVE_AT:
				if (i < MAX_NAMED && header_name_is(&f, e->name)
				    && seen[i]++ == e->index)
					keep = 0;
				break;
			case HE_CHANGE:
				if (keep && i < MAX_NAMED && !changed[i] && header_name_is(&f, e->name)) {
					changed[i] = 1;
					if (out != NULL)
						sbuf_addf(out, "%.*s: %s\r\n", (int)f.name_len, f.name, e->value);
					keep = 0;
				}
				break;
			}
		}
		if (keep && out != NULL)
			sbuf_add(out, f.start, f.len);
	}
}
