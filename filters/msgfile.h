/* msgfile.h - a message file (.eml, or an mbox-style file with a leading
 * "From " line) turned into what the proxy would have spooled: CRLF lines,
 * no "From " line.  Shared by "mailwarden scan" and "mailwarden learn".
 * learn also splits an mbox file into its messages and refuses files that
 * do not look like a message at all. */
#ifndef MW_MSGFILE_H
#define MW_MSGFILE_H

#include <stddef.h>
#include "proxy/sbuf.h"

/* msgfile_read_fd - the whole of fd into b (bounded by b's limit).  0, or
 * -1 with errno (EFBIG past the limit). */
int msgfile_read_fd(int fd, struct sbuf *b);

/* msgfile_to_spool - in[0..len) as the proxy spools it, appended to out */
void msgfile_to_spool(const char *in, size_t len, struct sbuf *out);

/* msgfile_mbox_to_spool - one message of an mbox file (its From_ line
 * already cut off) as msgfile_to_spool gives it, each ">From ", ">>From "
 * ... line losing one '>' (the mboxrd convention; for mboxo, which quotes
 * only "From ", the same) */
void msgfile_mbox_to_spool(const char *in, size_t len, struct sbuf *out);

/* An mbox file read one message at a time (no copy: slices of the
 * caller's bytes, which must outlive the iterator).  A file whose first
 * line is a From_ line ("From " at its very start) is an mbox: a message
 * starts after that line and after each later "From SENDER DATE" line
 * (with a time, h:mm, in the date) that follows an empty line, and ends
 * before the empty line that precedes the next one (Content-Length is not
 * read, as most readers do not).  Any other file is one message, whole. */
struct msgfile_iter {
	const char *data;       /* borrowed */
	size_t len, off;
	int mbox;               /* 1: the file opened with a From_ line */
	int done;
};
void msgfile_iter_init(struct msgfile_iter *it, const char *data, size_t len);
/* msgfile_next - the next message as a slice (*msg, *len: no From_ line);
 * 1, or 0 at the end */
int msgfile_next(struct msgfile_iter *it, const char **msg, size_t *len);

/* msgfile_is_message - does msg[0..len) look like a message: its first
 * line a header field (a name of letters, digits, '-', '_' or '.', at
 * most 76 of them, then ':' after optional blanks)?  1 or 0.  An empty
 * file, a picture, a JSON record, a binary fail it. */
int msgfile_is_message(const char *msg, size_t len);

#endif
