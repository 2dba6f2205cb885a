/* fuzz_mime.c - libFuzzer target for the shared MIME parse (filters/mime.c)
 * and the HTML renderer: any input must parse, within the limits, into
 * valid UTF-8 text, without a crash or a leak.
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -I. \
 *     $(pkg-config --cflags gmime-3.0) tests/fuzz/fuzz_mime.c filters/mime.c \
 *     $(pkg-config --libs gmime-3.0) -o build/fuzz/fuzz_mime */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "filters/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_msg *m = mime_parse(data, size);
	size_t i, n;
	char *r;

	if (m->nparts > MIME_MAX_PARTS || m->nuris > 2 * MIME_MAX_URIS)
		abort();
	for (i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];

		if (p->is_text && !g_utf8_validate((const char *)p->data, (gssize)p->len, NULL))
			abort();
		if (p->rendered != NULL && !g_utf8_validate(p->rendered, (gssize)p->rendered_len, NULL))
			abort();
		if (p->filename != NULL && !g_utf8_validate(p->filename, -1, NULL))
			abort();
	}
	for (i = 0; i < m->nuris; i++)
		if (!g_utf8_validate(m->uris[i], -1, NULL))
			abort();
	mime_free(m);
	r = mime_html_render((const char *)data, size, &n);
	if (strlen(r) != n && memchr(data, 0, size) == NULL)
		abort();
	g_free(r);
	return 0;
}
