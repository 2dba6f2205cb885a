/* sbuf.h - growable byte string with a hard ceiling.  data[len] == '\0'
 * always, so it can be used as a C string; binary-safe through len.  As with
 * Postfix's VSTRING, pointers into data die at the next append. */
#ifndef MW_SBUF_H
#define MW_SBUF_H

#include <stdarg.h>
#include <stddef.h>

struct sbuf {
	char  *data;    /* owned; NULL until the first append */
	size_t len;
	size_t cap;
	size_t limit;   /* len never exceeds this */
};

void sbuf_init(struct sbuf *b, size_t limit);
void sbuf_free(struct sbuf *b);
void sbuf_reset(struct sbuf *b);              /* len = 0, keeps memory */
/* 0, or -1 (b unchanged) if len+n would pass the limit; aborts on OOM */
int  sbuf_add(struct sbuf *b, const void *p, size_t n);
int  sbuf_adds(struct sbuf *b, const char *s);
int  sbuf_addc(struct sbuf *b, char c);
int  sbuf_addf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int  sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* detach the data (caller frees); b is left empty */
char *sbuf_steal(struct sbuf *b);

/* xmalloc family: abort with a log line on OOM */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
