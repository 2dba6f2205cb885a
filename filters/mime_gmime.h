/* mime_gmime.h - internal to the MIME layer (mime.c, mime_rewrite.c,
 * mime_files.c): the one way a message becomes a GMime tree, so the parse
 * that filters read and the tree a rewrite edits are built alike (same
 * leaves, same order); and where a parse keeps its memo of encoded files.
 * Other code reads mime.h only and never touches GObjects. */
#ifndef MW_MIME_GMIME_H
#define MW_MIME_GMIME_H

#include <stddef.h>
#include <gmime/gmime.h>

/* mime_gmime_parse - the message's GMime tree (g_object_unref it), or
 * NULL; warn (may be NULL) hears the parser's complaints; *headers_end
 * (may be NULL) gets the offset where GMime found the top-level header
 * section to end.  Initialises GMime on first use. */
GMimeMessage *mime_gmime_parse(const unsigned char *msg, size_t len,
                               GMimeParserWarningFunc warn, void *warn_data, gint64 *headers_end);

struct mime_msg;
struct mime_files;

/* mime_files_slot - where the parse keeps its memo of files encoded in
 * text parts (mime_files.c; NULL until first asked for) */
struct mime_files **mime_files_slot(const struct mime_msg *m);
void mime_files_free(struct mime_files *mf);

#endif
