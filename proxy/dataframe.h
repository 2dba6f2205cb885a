/* dataframe.h - the strict CRLF framer for the DATA phase, and the dot-
 * stuffing encoder for the way out.  Both legs use these, and nothing else,
 * to find lines and the end of data, which is what closes the SMTP
 * smuggling hole: the end of data is <CRLF>.<CRLF> in the raw stream and
 * nothing else (no \n.\n, no \r.\r, no NUL tricks).
 *
 * Decoder: feed raw bytes from the client as they arrive; it writes the
 * message content (dot-unstuffed, canonical CRLF line ends) to a sink and
 * reports the end of data.  It never stops early: after a fault (bare LF or
 * CR in reject mode, NUL, a line over 998 octets, content over the size
 * limit) it keeps reading, discards, and reports the fault at the end, so the
 * client gets one reply at the true end of data.
 */
#ifndef MW_DATAFRAME_H
#define MW_DATAFRAME_H

#include <stddef.h>
#include <stdint.h>

#define DATA_LINE_MAX 998     /* RFC 5322 2.1.1, without CRLF */

enum data_fault {
	DF_OK = 0,
	DF_BARE_LF,       /* bare LF and reject mode */
	DF_BARE_CR,       /* bare CR and reject mode */
	DF_NUL,           /* NUL byte in content */
	DF_LINE_TOO_LONG, /* a line over DATA_LINE_MAX octets */
	DF_TOO_BIG,       /* content over the size limit */
	DF_SINK_ERROR     /* the sink refused (e.g. spool write failed) */
};

/* sink: write len content bytes; return 0 or -1 */
typedef int (*data_sink_fn)(void *arg, const char *p, size_t len);

struct data_decoder {
	/* set by data_decoder_init */
	data_sink_fn sink;
	void        *sink_arg;
	uint64_t     size_limit;
	int          normalize;      /* bare LF/CR -> CRLF instead of a fault */
	/* state */
	int          state;          /* internal */
	size_t       line_len;       /* octets in the current line so far */
	uint64_t     size;           /* content bytes written to the sink */
	enum data_fault fault;       /* first fault seen */
	unsigned     bare_lf, bare_cr, nul;  /* counts, for the log */
	char         out[8192];      /* batched output to the sink */
	size_t       outlen;
};

/* size_limit 0 means no limit (the config never allows it). */
void data_decoder_init(struct data_decoder *d, data_sink_fn sink, void *arg,
                       uint64_t size_limit, int normalize);
/* data_decoder_feed - consume up to len bytes.  Returns the number of bytes
 * consumed; *done = 1 when the end of data was seen (bytes after it are not
 * consumed: they belong to the next command).  The content is flushed to the
 * sink before *done is set. */
size_t data_decoder_feed(struct data_decoder *d, const char *p, size_t len, int *done);
const char *data_fault_name(enum data_fault f);

/* Encoder: content (CRLF lines, not stuffed) -> wire form.  Stuffs a '.'
 * at the start of each line; the content is expected canonical (our own
 * spool), but a bare CR or LF in it is turned into CRLF anyway so the way out
 * can never carry a fake end of data.  data_encoder_finish() writes the final
 * CRLF if the content did not end with one, then ".\r\n". */
struct data_encoder {
	int at_line_start;
	int pending_cr;
};
typedef int (*data_out_fn)(void *arg, const char *p, size_t len);
void data_encoder_init(struct data_encoder *e);
int  data_encoder_feed(struct data_encoder *e, const char *p, size_t len,
                       data_out_fn out, void *arg);
int  data_encoder_finish(struct data_encoder *e, data_out_fn out, void *arg);

#endif
