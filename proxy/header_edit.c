/* header_edit.c - see header_edit.h.
 *
 * Every edit counts, however many: the per-edit state was a fixed table
 * of 64, and HE_REMOVE_AT / HE_CHANGE edits past it did nothing, so of
 * 80 forged "Authentication-Results: <our authserv-id>; dmarc=pass"
 * fields (one HE_REMOVE_AT each) 17 reached the next hop.
 *
 * The cost stays linear in the header: HE_REMOVE_AT edits (one per
 * forged field, thousands if a sender wants) are sorted once by name and
 * index and walked with one cursor per name, so a field costs one look
 * per distinct name among them, not one per edit.  The other edits (the
 * filters' at most MW_MAX_EDITS and the policy's) are looked at for each
 * field.
 *
 * A field is removed when any removal names it; a change then applies to
 * the first field of its name that is kept.  The milter front end does
 * the same (milter_result.c: the deletions, then smfi_chgheader(name, 1)). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/header_edit.h"
#include "proxy/headers.h"

struct at_edit {
	const char *name;       /* borrowed from the edit */
	unsigned    index;      /* 0-based among the fields of that name */
};

/* at_group - the HE_REMOVE_AT edits of one name: at[next..end) still ahead */
struct at_group {
	const char *name;
	size_t      next, end;
	unsigned    seen;       /* fields of that name so far */
};

static int by_name_index(const void *a, const void *b)
{
	const struct at_edit *x = a, *y = b;
	int c = strcasecmp(x->name, y->name);

	return c != 0 ? c : x->index < y->index ? -1 : x->index > y->index;
}

/* removed_at - does one of the HE_REMOVE_AT edits take field f?  The
 * groups' names differ (in any case): at most one matches. */
static int removed_at(const struct header_field *f, const struct at_edit *at,
                      struct at_group *grp, size_t ngrp)
{
	size_t g;

	for (g = 0; g < ngrp; g++) {
		struct at_group *gp = &grp[g];
		unsigned n;

		if (!header_name_is(f, gp->name))
			continue;
		n = gp->seen++;
		while (gp->next < gp->end && at[gp->next].index < n)
			gp->next++;
		return gp->next < gp->end && at[gp->next].index == n;
	}
	return 0;
}

size_t header_edits_apply(const char *msg, size_t len, const struct header_edit *edits,
                          size_t nedits, struct sbuf *out)
{
	struct at_edit *at = NULL;
	struct at_group *grp = NULL;
	size_t *other = NULL;           /* indexes of the HE_REMOVE(_PREFIX), HE_CHANGE edits */
	unsigned char *changed = NULL;  /* per edit: its HE_CHANGE is done */
	size_t nat = 0, ngrp = 0, nother = 0, pos = 0, ret, i;
	struct header_field f;

	if (msg == NULL)
		msg = "";
	if (nedits > 0) {
		at = xmalloc(nedits * sizeof(*at));
		grp = xmalloc(nedits * sizeof(*grp));
		other = xmalloc(nedits * sizeof(*other));
		changed = xcalloc(nedits, 1);
	}
	for (i = 0; i < nedits; i++) {
		const struct header_edit *e = &edits[i];

		if (e->op == HE_ADD && out != NULL)
			sbuf_addf(out, "%s: %s\r\n", e->name, e->value);
		else if (e->op == HE_REMOVE_AT)
			at[nat++] = (struct at_edit){ e->name, e->index };
		else if (e->op == HE_REMOVE || e->op == HE_REMOVE_PREFIX || e->op == HE_CHANGE)
			other[nother++] = i;
	}
	if (nat > 1)    /* qsort(NULL, 0, ...) is undefined */
		qsort(at, nat, sizeof(*at), by_name_index);
	for (i = 0; i < nat; i++) {
		if (i == 0 || strcasecmp(at[i].name, at[i - 1].name) != 0)
			grp[ngrp++] = (struct at_group){ at[i].name, i, i, 0 };
		grp[ngrp - 1].end = i + 1;
	}
	for (;;) {
		size_t start = pos, k;
		int rc = header_next(msg, len, &pos, &f);
		int keep;

		if (rc != 1) {
			ret = rc == 0 ? start : pos;
			/* a line that is no field ("Junk line") ended the
			 * section for the filters, and what follows was their
			 * body; a later reader may read on (GMime takes a
			 * "From:" after it as a second From field, and a forged
			 * Authentication-Results there as ours).  The empty
			 * line goes in before it, as Postfix's cleanup does, so
			 * that no reader sees another header section than the
			 * one checked. */
			if (rc < 0 && out != NULL)
				sbuf_adds(out, "\r\n");
			break;
		}
		/* removed_at first, always: it counts the fields of its names */
		keep = !removed_at(&f, at, grp, ngrp);
		for (k = 0; k < nother && keep; k++)
			if ((edits[other[k]].op == HE_REMOVE && header_name_is(&f, edits[other[k]].name))
			    || (edits[other[k]].op == HE_REMOVE_PREFIX
			        && header_name_starts(&f, edits[other[k]].name)))
				keep = 0;
		for (k = 0; k < nother && keep; k++) {
			const struct header_edit *e = &edits[other[k]];

			if (e->op == HE_CHANGE && !changed[other[k]] && header_name_is(&f, e->name)) {
				changed[other[k]] = 1;
				if (out != NULL)
					sbuf_addf(out, "%.*s: %s\r\n", (int)f.name_len, f.name, e->value);
				keep = 0;
			}
		}
		if (keep && out != NULL)
			sbuf_add(out, f.start, f.len);
	}
	free(at);
	free(grp);
	free(other);
	free(changed);
	return ret;
}
