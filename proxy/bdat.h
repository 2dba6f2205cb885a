/* bdat.h - the content of BDAT chunks (RFC 3030 CHUNKING) on its way into
 * the spool.
 *
 * BDAT content is counted, not framed: no dot-stuffing and no end-of-data
 * line, so "\r\n.\r\n" inside a chunk is just content.  The line rules of
 * DATA still apply to it (unless the transaction is BODY=BINARYMIME): a bare
 * CR or LF is a fault (or turned into CRLF with bare_newline = normalize),
 * so is a NUL or a line over 998 octets; and the size limit holds across
 * all chunks of a message.  Like the DATA decoder, a fault never stops the
 * reading: the chunk is consumed to its last octet (the client and we stay
 * in step), the content is dropped, and the first fault is reported at the
 * end of the message.  The faults are the DATA decoder's (dataframe.h). */
#ifndef MW_BDAT_H
#define MW_BDAT_H

#include <stddef.h>
#include <stdint.h>

#include "dataframe.h"

struct bdat_content {
	data_sink_fn sink;
	void        *sink_arg;
	uint64_t     size_limit;
	int          normalize;      /* bare CR/LF -> CRLF instead of a fault */
	int          binary;         /* BODY=BINARYMIME: no line rules */
	int          pending_cr;     /* the last octet fed was a CR */
	size_t       line_len;
	uint64_t     size;           /* content bytes written to the sink */
	enum data_fault fault;
	unsigned     bare_lf, bare_cr, nul;
	char         out[8192];
	size_t       outlen;
};

void bdat_content_init(struct bdat_content *b, data_sink_fn sink, void *arg,
                       uint64_t size_limit, int normalize, int binary);
/* bdat_content_feed - take all len octets of a chunk */
void bdat_content_feed(struct bdat_content *b, const char *p, size_t len);
/* bdat_content_finish - the last chunk is in: a CR left pending is a bare
 * CR; flush to the sink.  Returns b->fault. */
enum data_fault bdat_content_finish(struct bdat_content *b);

#endif
