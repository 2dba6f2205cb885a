/* bdat.c - see bdat.h.  One octet at a time: BDAT is the rare path (most
 * clients use DATA), and the rules are few. */
#include <string.h>

#include "bdat.h"

void bdat_content_init(struct bdat_content *b, data_sink_fn sink, void *arg,
                       uint64_t size_limit, int normalize, int binary)
{
	memset(b, 0, sizeof *b);
	b->sink = sink;
	b->sink_arg = arg;
	b->size_limit = size_limit;
	b->normalize = normalize;
	b->binary = binary;
}

static void fault(struct bdat_content *b, enum data_fault f)
{
	if (b->fault == DF_OK) b->fault = f;
}

static void flush(struct bdat_content *b)
{
	if (b->outlen && b->fault == DF_OK && b->sink(b->sink_arg, b->out, b->outlen) < 0)
		fault(b, DF_SINK_ERROR);
	b->outlen = 0;
}

static void put(struct bdat_content *b, const char *p, size_t n)
{
	if (b->fault != DF_OK) return;            /* after a fault: discard */
	if (b->size_limit && b->size + n > b->size_limit) {
		fault(b, DF_TOO_BIG);
		return;
	}
	b->size += n;
	if (b->outlen + n > sizeof b->out) flush(b);
	memcpy(b->out + b->outlen, p, n);
	b->outlen += n;
}

/* A line ended (CRLF, or a normalized bare CR/LF). */
static void line_end(struct bdat_content *b)
{
	put(b, "\r\n", 2);
	b->line_len = 0;
}

static void bare(struct bdat_content *b, int is_cr)
{
	if (is_cr) b->bare_cr++;
	else b->bare_lf++;
	if (b->normalize) line_end(b);
	else fault(b, is_cr ? DF_BARE_CR : DF_BARE_LF);
}

void bdat_content_feed(struct bdat_content *b, const char *p, size_t len)
{
	if (b->binary) {
		/* anything goes; only the size counts (put checks it) */
		for (size_t off = 0; off < len;) {
			size_t n = len - off < sizeof b->out ? len - off : sizeof b->out;
			put(b, p + off, n);
			off += n;
		}
		return;
	}
	for (size_t i = 0; i < len; i++) {
		char c = p[i];
		if (b->pending_cr) {
			b->pending_cr = 0;
			if (c == '\n') {
				line_end(b);
				continue;
			}
			bare(b, 1);                      /* the CR was alone */
		}
		if (c == '\r') {
			b->pending_cr = 1;
			continue;
		}
		if (c == '\n') {
			bare(b, 0);
			continue;
		}
		if (c == '\0') {
			b->nul++;
			fault(b, DF_NUL);
		}
		if (++b->line_len > DATA_LINE_MAX) fault(b, DF_LINE_TOO_LONG);
		put(b, &c, 1);
	}
}

enum data_fault bdat_content_finish(struct bdat_content *b)
{
	if (b->pending_cr) {
		b->pending_cr = 0;
		bare(b, 1);
	}
	flush(b);
	return b->fault;
}
