/* fuzz_rewrite.c - libFuzzer target for the attachment replacement
 * (filters/mime_rewrite.c): any message, parsed as the attachments filter
 * sees it (filters/mime.c), with one or two of its leaves replaced.
 *
 * Build and run: make fuzz FUZZ_TARGETS=rewrite FUZZ_SECONDS=60
 *
 * Checks beyond the sanitizers: a rewrite of a message whose structure
 * parsed clean (the only ones the filter rewrites) succeeds unless GMime
 * and the proxy end its header section at different places or the result
 * does not parse back to the same parts (both checked inside); what it
 * writes starts with the empty line, has CRLF line ends only and ends
 * with one; parsed again under the same header section it has as many
 * leaves as before, and the replaced ones are text/plain parts holding
 * their note.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/mime.h"
#include "proxy/header_edit.h"
#include "proxy/sbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "check failed: %s\n", #x); abort(); } } while (0)

static const char note[] = "mailwarden removed an attachment: fuzz.exe (extension .exe)";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_msg *m = mime_parse(data, size), *again;
	struct mime_replacement rep[2];
	struct sbuf rest;
	char err[200];
	size_t nrep = 0, hl, i;
	int top, rc;

	if (m->nparts == 0 || m->parse_error) {
		mime_free(m);
		return 0;
	}
	/* the first leaf, and the last when there are several */
	rep[nrep++] = (struct mime_replacement){ 0, note };
	if (m->nparts > 1)
		rep[nrep++] = (struct mime_replacement){ m->nparts - 1, note };
	sbuf_init(&rest, size + 8192);
	rc = mime_replace_parts(data, size, NULL, rep, nrep, rest.limit, &rest, &top, err, sizeof(err));
	if (rc < 0) {
		/* only the ceiling, a header section GMime ends elsewhere than the
		 * proxy, a result that does not parse back to the same parts, or
		 * a leaf under a signature or in an encrypted structure (the
		 * filter then quarantines) may refuse a message that parsed
		 * clean */
		CHECK(rc == MIME_REPLACE_SIGNED || rc == MIME_REPLACE_ENCRYPTED ||
		    strstr(err, "longer than") != NULL || strstr(err, "header section") != NULL ||
		    strstr(err, "parse back") != NULL);
		goto out;
	}
	CHECK(rest.len >= 2 && memcmp(rest.data, "\r\n", 2) == 0);
	CHECK(rest.data[rest.len - 1] == '\n' && rest.data[rest.len - 2] == '\r');
	for (i = 0; i < rest.len; i++)
		if (rest.data[i] == '\n')
			CHECK(i > 0 && rest.data[i - 1] == '\r');
	if (top) {
		CHECK(m->nparts == 1 && nrep == 1);
		goto out;
	}
	{
		/* the header section as the proxy relays it, then the new body */
		hl = header_edits_apply((const char *)data, size, NULL, 0, NULL);   /* where the proxy cuts */
		size_t n = hl + rest.len;
		unsigned char *whole = malloc(n + 1);

		memcpy(whole, data, hl);
		memcpy(whole + hl, rest.data, rest.len);
		again = mime_parse(whole, n);
		CHECK(!again->parse_error);
		CHECK(again->nparts == m->nparts);
		for (i = 0; i < nrep; i++) {
			const struct mime_part *p = &again->parts[rep[i].part];

			CHECK(strcmp(p->content_type, "text/plain") == 0);
			/* the note, and maybe the line end that closes the message */
			CHECK(p->len >= strlen(note) && memcmp(p->data, note, strlen(note)) == 0);
			CHECK(strspn((const char *)p->data + strlen(note), "\r\n") == p->len - strlen(note));
		}
		mime_free(again);
		free(whole);
	}
out:
	sbuf_free(&rest);
	mime_free(m);
	return 0;
}
