/* tls_source.c - an SMTP load generator that can speak STARTTLS, for the
 * TLS benchmark (tests/bench/tls.sh).  Postfix's smtp-source cannot do TLS;
 * this does the same job: CONC threads, each running sessions of
 * PER_SESSION messages of SIZE bytes until TOTAL messages were sent.
 *
 *   tls_source [-T] -c CONC -n TOTAL -m PER_SESSION -s SIZE HOST:PORT
 *
 * -T: STARTTLS after the first EHLO (no certificate check: a benchmark).
 * MAIL, RCPT and DATA go in one write (PIPELINING), the content in one
 * write.  Prints "messages=N errors=E seconds=S rate=R"; exit 1 if any
 * session failed.  Blocking sockets with 30 s timeouts; loopback only by
 * the script that runs it.
 *
 * Build: cc -O2 -o tls_source tls_source.c -lssl -lcrypto -lpthread */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int use_tls;
static long total, per_session;
static size_t msg_size;
static struct sockaddr_in target;
static SSL_CTX *ctx;
static atomic_long claimed, sent, errors;
static char *message;            /* headers + body + ".\r\n" */
static size_t message_len;

struct io {
	int   fd;
	SSL  *ssl;
	char  buf[8192];
	size_t off, len;
};

static int io_write(struct io *io, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = io->ssl ? SSL_write(io->ssl, p, (int)n) : write(io->fd, p, n);
		if (w <= 0) return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int io_fill(struct io *io)
{
	if (io->off > 0) {
		memmove(io->buf, io->buf + io->off, io->len - io->off);
		io->len -= io->off;
		io->off = 0;
	}
	ssize_t r = io->ssl ? SSL_read(io->ssl, io->buf + io->len, (int)(sizeof io->buf - io->len))
	                    : read(io->fd, io->buf + io->len, sizeof io->buf - io->len);
	if (r <= 0) return -1;
	io->len += (size_t)r;
	return 0;
}

/* One reply; its code, or -1. */
static int io_reply(struct io *io)
{
	for (;;) {
		char *lf;
		while ((lf = memchr(io->buf + io->off, '\n', io->len - io->off)) == NULL)
			if (io_fill(io) < 0) return -1;
		char *line = io->buf + io->off;
		size_t n = (size_t)(lf - line) + 1;
		io->off += n;
		if (n < 4) return -1;
		if (line[3] == ' ' || line[3] == '\r') return atoi(line);
	}
}

static int expect(struct io *io, int code)
{
	int c = io_reply(io);
	return c == code ? 0 : -1;
}

static int session(long nmsgs)
{
	struct io io = { .fd = socket(AF_INET, SOCK_STREAM, 0) };
	int rc = -1;
	if (io.fd < 0) return -1;
	struct timeval tv = { 30, 0 };
	setsockopt(io.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(io.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(io.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(io.fd, (struct sockaddr *)&target, sizeof target) < 0) goto out;
	if (expect(&io, 220) < 0) goto out;
	if (io_write(&io, "EHLO bench.example\r\n", 20) < 0 || expect(&io, 250) < 0) goto out;
	if (use_tls) {
		if (io_write(&io, "STARTTLS\r\n", 10) < 0 || expect(&io, 220) < 0) goto out;
		io.ssl = SSL_new(ctx);
		SSL_set_fd(io.ssl, io.fd);
		if (SSL_connect(io.ssl) != 1) goto out;
		io.off = io.len = 0;
		if (io_write(&io, "EHLO bench.example\r\n", 20) < 0 || expect(&io, 250) < 0) goto out;
	}
	static const char env[] = "MAIL FROM:<bench@example.org>\r\nRCPT TO:<sink@example.net>\r\nDATA\r\n";
	for (long i = 0; i < nmsgs; i++) {
		if (io_write(&io, env, sizeof env - 1) < 0) goto out;
		if (expect(&io, 250) < 0 || expect(&io, 250) < 0 || expect(&io, 354) < 0) goto out;
		if (io_write(&io, message, message_len) < 0 || expect(&io, 250) < 0) goto out;
		atomic_fetch_add(&sent, 1);
	}
	io_write(&io, "QUIT\r\n", 6);
	io_reply(&io);
	rc = 0;
out:
	if (io.ssl) {
		SSL_shutdown(io.ssl);
		SSL_free(io.ssl);
	}
	close(io.fd);
	return rc;
}

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		long start = atomic_fetch_add(&claimed, per_session);
		if (start >= total) break;
		long n = total - start < per_session ? total - start : per_session;
		if (session(n) < 0) atomic_fetch_add(&errors, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int opt, conc = 10;
	total = 1000;
	per_session = 1;
	msg_size = 10240;
	while ((opt = getopt(argc, argv, "Tc:n:m:s:")) != -1) {
		switch (opt) {
		case 'T': use_tls = 1; break;
		case 'c': conc = atoi(optarg); break;
		case 'n': total = atol(optarg); break;
		case 'm': per_session = atol(optarg); break;
		case 's': msg_size = (size_t)atol(optarg); break;
		default: goto usage;
		}
	}
	if (optind != argc - 1 || conc < 1 || total < 1 || per_session < 1) goto usage;
	char host[64];
	const char *colon = strrchr(argv[optind], ':');
	if (colon == NULL || (size_t)(colon - argv[optind]) >= sizeof host) goto usage;
	memcpy(host, argv[optind], (size_t)(colon - argv[optind]));
	host[colon - argv[optind]] = '\0';
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &target.sin_addr) != 1) goto usage;

	/* the message: a few headers, then lines of 78 'x' up to msg_size */
	message = malloc(msg_size + 512);
	size_t n = (size_t)sprintf(message, "From: bench@example.org\r\nTo: sink@example.net\r\n"
	                                    "Subject: benchmark\r\nMessage-ID: <b@example.org>\r\n\r\n");
	while (n + 80 < msg_size) {
		memset(message + n, 'x', 78);
		memcpy(message + n + 78, "\r\n", 2);
		n += 80;
	}
	memcpy(message + n, ".\r\n", 3);
	message_len = n + 3;

	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_t *th = calloc((size_t)conc, sizeof *th);
	for (int i = 0; i < conc; i++) pthread_create(&th[i], NULL, worker, NULL);
	for (int i = 0; i < conc; i++) pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("messages=%ld errors=%ld seconds=%.3f rate=%.1f\n", (long)atomic_load(&sent),
	       (long)atomic_load(&errors), s, (double)atomic_load(&sent) / s);
	return atomic_load(&errors) ? 1 : 0;
usage:
	fprintf(stderr, "usage: tls_source [-T] -c CONC -n TOTAL -m PER_SESSION -s SIZE IPV4:PORT\n");
	return 2;
}
