/* sbuf.c - growable byte string with a hard ceiling, and the xmalloc family.
 *
 * Every buffer that holds network input has a limit chosen by its owner, so
 * a hostile peer can make one fail (-1, buffer unchanged) but never make the
 * process grow without bound.  data[len] is kept '\0' so the contents can be
 * passed to C string functions; len stays authoritative for binary data.
 * Out of memory is not a condition we try to survive: it aborts with a log
 * line, as Postfix's mymalloc() does.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/sbuf.h"
#include "proxy/log.h"

/* Memory ------------------------------------------------------------------- */

static void oom(size_t n)
{
	bug("out of memory allocating %zu bytes", n);
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p;

	if (n == 0 || size == 0)
		n = size = 1;
	if ((p = calloc(n, size)) == NULL)
		oom(size && n > SIZE_MAX / size ? SIZE_MAX : n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

/* xstrndup - copy at most n bytes of s, stopping at a NUL; always terminated */
char *xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* Buffers ------------------------------------------------------------------ */

void sbuf_init(struct sbuf *b, size_t limit)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->limit = limit;
}

void sbuf_free(struct sbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void sbuf_reset(struct sbuf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

/* sbuf_room - make space for n more bytes plus the terminator.  -1 if that
 * would pass the limit (b unchanged); aborts on OOM. */
static int sbuf_room(struct sbuf *b, size_t n)
{
	size_t need, ncap;

	if (b->len > b->limit || n > b->limit - b->len)
		return -1;
	need = b->len + n;
	if (need == SIZE_MAX)
		return -1;
	need++;				/* the '\0' */
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? SIZE_MAX : ncap * 2;
	/* never hold more than the ceiling allows */
	if (b->limit < SIZE_MAX && ncap > b->limit + 1)
		ncap = b->limit + 1;
	if (ncap < need)
		ncap = need;
	b->data = xrealloc(b->data, ncap);
	b->cap = ncap;
	if (b->len == 0)
		b->data[0] = '\0';
	return 0;
}

int sbuf_add(struct sbuf *b, const void *p, size_t n)
{
	if (sbuf_room(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int sbuf_adds(struct sbuf *b, const char *s)
{
	return sbuf_add(b, s, strlen(s));
}

int sbuf_addc(struct sbuf *b, char c)
{
	return sbuf_add(b, &c, 1);
}

int sbuf_addf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = sbuf_vaddf(b, fmt, ap);
	va_end(ap);
	return rc;
}

/* sbuf_vaddf - try the spare room first; when that is too small, measure,
 * check the limit and print again.  On failure data[len] is restored. */
int sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	size_t spare = b->cap > b->len ? b->cap - b->len : 0;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(spare ? b->data + b->len : NULL, spare, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		goto fail;
	if ((size_t)n < spare) {
		if (b->len > b->limit || (size_t)n > b->limit - b->len)
			goto fail;
		b->len += (size_t)n;
		return 0;
	}
	if (sbuf_room(b, (size_t)n) < 0)
		goto fail;
	va_copy(ap2, ap);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		goto fail;
	b->len += (size_t)n;
	return 0;
fail:
	if (b->data != NULL)
		b->data[b->len] = '\0';
	return -1;
}

char *sbuf_steal(struct sbuf *b)
{
	char *p = b->data;

	if (p == NULL)
		p = xstrdup("");
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}
