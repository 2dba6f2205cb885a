/* msgfile.h - a message file (.eml, or an mbox-style file with a leading
 * "From " line) turned into what the proxy would have spooled: CRLF lines,
 * no "From " line.  Shared by "mailwarden scan" and "mailwarden learn". */
#ifndef MW_MSGFILE_H
#define MW_MSGFILE_H

#include <stddef.h>
#include "proxy/sbuf.h"

/* msgfile_read_fd - the whole of fd into b (bounded by b's limit).  0, or
 * -1 with errno (EFBIG past the limit). */
int msgfile_read_fd(int fd, struct sbuf *b);

/* msgfile_to_spool - in[0..len) as the proxy spools it, appended to out */
void msgfile_to_spool(const char *in, size_t len, struct sbuf *out);

#endif
