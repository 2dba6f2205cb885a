/* tls.c - see tls.h. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "proxyproto.h"
#include "sbuf.h"
#include "tls.h"

#define TLS_MAX_CERTS 8

struct tls_server {
	SSL_CTX *ctx[TLS_MAX_CERTS];   /* [0] is the default */
	X509    *cert[TLS_MAX_CERTS];  /* borrowed from ctx[i] */
	size_t   n;
	char     warn[1024];           /* tls_server_warning: "" or why a certificate
	                                * is unfit, as seen at load time */
	int      refs;                 /* its listener's, and one per SSL made from it
	                                * (its SNI callback needs t until the handshake) */
};

/* every SSL made by tls_server_ssl holds its tls_server in this slot; the
 * reference goes when OpenSSL frees the SSL */
static int ssl_owner_idx = -1;
static pthread_once_t ssl_owner_once = PTHREAD_ONCE_INIT;

static void ssl_owner_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
	tls_server_free(ptr);
}

static void ssl_owner_init(void)
{
	ssl_owner_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_owner_free);
}

const char *tls_last_error(char *buf, size_t bufsz)
{
	unsigned long e, last = 0;
	while ((e = ERR_get_error()) != 0) last = e;
	if (last == 0) snprintf(buf, bufsz, "no details");
	else ERR_error_string_n(last, buf, bufsz);
	return buf;
}

/* Settings both legs share: versions, ciphers, no renegotiation, no
 * compression, an EOF without close_notify reads as EOF. */
static int ctx_common(SSL_CTX *ctx, const struct config *cfg, char *err, size_t errlen)
{
	char e[256];
	SSL_CTX_set_min_proto_version(ctx, cfg->tls_min_version);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	                         SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                      SSL_MODE_RELEASE_BUFFERS);
	if (cfg->tls_ciphers[0] && SSL_CTX_set_cipher_list(ctx, cfg->tls_ciphers) != 1) {
		snprintf(err, errlen, "tls_ciphers '%s': %s", cfg->tls_ciphers, tls_last_error(e, sizeof e));
		return -1;
	}
	if (cfg->tls_ciphersuites[0] && SSL_CTX_set_ciphersuites(ctx, cfg->tls_ciphersuites) != 1) {
		snprintf(err, errlen, "tls_ciphersuites '%s': %s", cfg->tls_ciphersuites,
		         tls_last_error(e, sizeof e));
		return -1;
	}
	return 0;
}

/* SNI: switch to the context whose certificate carries the asked name. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_server *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	(void)alert;
	if (name == NULL || t->n < 2) return SSL_TLSEXT_ERR_OK;
	for (size_t i = 0; i < t->n; i++)
		if (X509_check_host(t->cert[i], name, strlen(name), 0, NULL) == 1) {
			if (i > 0) SSL_set_SSL_CTX(ssl, t->ctx[i]);
			return SSL_TLSEXT_ERR_OK;
		}
	return SSL_TLSEXT_ERR_OK;    /* no match: the default certificate */
}

/* next space-separated word of *p into out; 0 when there is none */
static int next_word(const char **p, char *out, size_t outsz)
{
	const char *s = *p;
	while (*s == ' ' || *s == '\t' || *s == ',') s++;
	size_t n = strcspn(s, " \t,");
	if (n == 0) return 0;
	if (n >= outsz) n = outsz - 1;
	memcpy(out, s, n);
	out[n] = '\0';
	*p = s + strcspn(s, " \t,");
	return 1;
}

/* readable - what (a setting) names path, a file this process can open:
 * else err says why, for a permission with the user's name.  The proxy
 * loads its certificates as "user", and OpenSSL's own word for a key only
 * root may read was "error:0A080002:SSL routines::system lib". */
static int readable(const char *what, const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	int e = errno;
	if (e == EACCES || e == EPERM) {
		/* reentrant: each proxy loop rereads its listeners at a reload */
		struct passwd pw, *got = NULL;
		char buf[1024];
		if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &got) != 0) got = NULL;
		if (got != NULL)
			snprintf(err, errlen, "%s %s: not readable by user %s, which the proxy runs as (%s)",
			         what, path, got->pw_name, strerror(e));
		else
			snprintf(err, errlen, "%s %s: not readable by uid %u, which the proxy runs as (%s)",
			         what, path, (unsigned)geteuid(), strerror(e));
	} else {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
	}
	return -1;
}

/* asn1_date - t as "2026-11-28 04:11:00 UTC" into buf */
static const char *asn1_date(const ASN1_TIME *t, char *buf, size_t bufsz)
{
	struct tm tm;
	if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(buf, bufsz, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, bufsz, "?");
	return buf;
}

/* cert_dates - onto warn ("; " between two) what makes x, loaded from
 * path, unfit to serve now: not valid yet, expired, or expiring within
 * TLS_EXPIRY_WARN_DAYS days.  OpenSSL loads such a certificate without a
 * word, and a renewal that copied an old file in place went into service
 * at a reload unnoticed: every sender that verifies (MTA-STS, DANE,
 * submission clients) then failed its handshake. */
static void cert_dates(const char *path, X509 *x, char *warn, size_t warnsz)
{
	const ASN1_TIME *nb = X509_get0_notBefore(x), *na = X509_get0_notAfter(x);
	char when[64], what[1200] = "";
	int days, secs;
	size_t len = strlen(warn);

	if (nb != NULL && ASN1_TIME_diff(&days, &secs, NULL, nb) == 1 && (days > 0 || secs > 0))
		snprintf(what, sizeof what, "tls_cert %s: not valid before %s", path,
		         asn1_date(nb, when, sizeof when));
	else if (na != NULL && ASN1_TIME_diff(&days, &secs, NULL, na) == 1 && (days < 0 || secs < 0))
		snprintf(what, sizeof what, "tls_cert %s: expired on %s", path, asn1_date(na, when, sizeof when));
	else if (na != NULL && ASN1_TIME_diff(&days, &secs, NULL, na) == 1 && days < TLS_EXPIRY_WARN_DAYS)
		snprintf(what, sizeof what, "tls_cert %s: expires in %d days, on %s", path, days,
		         asn1_date(na, when, sizeof when));
	size_t n = strlen(what);
	if (n == 0 || len + 2 + n >= warnsz) return;   /* never half a path */
	if (len > 0) {
		memcpy(warn + len, "; ", 2);
		len += 2;
	}
	memcpy(warn + len, what, n + 1);
}

struct tls_server *tls_server_new(const struct config *cfg, const struct listener_cfg *l,
                                  char *err, size_t errlen)
{
	struct tls_server *t = xcalloc(1, sizeof *t);
	const char *cp = l->tls_cert, *kp = l->tls_key;
	char cert[1024], key[1024], e[256];

	t->refs = 1;

	while (next_word(&cp, cert, sizeof cert)) {
		if (!next_word(&kp, key, sizeof key)) {
			snprintf(err, errlen, "tls_key: no key for %s", cert);
			goto fail;
		}
		if (t->n == TLS_MAX_CERTS) {
			snprintf(err, errlen, "tls_cert: more than %d certificates", TLS_MAX_CERTS);
			goto fail;
		}
		SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
		t->ctx[t->n++] = ctx;
		if (ctx == NULL || ctx_common(ctx, cfg, err, errlen) < 0) goto fail;
		if (readable("tls_cert", cert, err, errlen) < 0 || readable("tls_key", key, err, errlen) < 0)
			goto fail;
		if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
			snprintf(err, errlen, "tls_cert %s: %s", cert, tls_last_error(e, sizeof e));
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1) {
			snprintf(err, errlen, "tls_key %s: %s", key, tls_last_error(e, sizeof e));
			goto fail;
		}
		SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"mailwarden", 10);
		t->cert[t->n - 1] = SSL_CTX_get0_certificate(ctx);
		if (t->cert[t->n - 1] != NULL) cert_dates(cert, t->cert[t->n - 1], t->warn, sizeof t->warn);
	}
	if (next_word(&kp, key, sizeof key)) {
		snprintf(err, errlen, "tls_key: more keys than certificates");
		goto fail;
	}
	if (t->n == 0) {
		snprintf(err, errlen, "tls is on but tls_cert is empty");
		goto fail;
	}
	SSL_CTX_set_tlsext_servername_callback(t->ctx[0], sni_cb);
	SSL_CTX_set_tlsext_servername_arg(t->ctx[0], t);
	return t;
fail:
	tls_server_free(t);
	return NULL;
}

void tls_server_free(struct tls_server *t)
{
	if (t == NULL || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
	for (size_t i = 0; i < t->n; i++) SSL_CTX_free(t->ctx[i]);
	free(t);
}

const char *tls_server_warning(const struct tls_server *t)
{
	return t->warn;
}

SSL *tls_server_ssl(struct tls_server *t)
{
	(void)pthread_once(&ssl_owner_once, ssl_owner_init);
	SSL *ssl = SSL_new(t->ctx[0]);
	if (ssl == NULL) return NULL;
	__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
	if (ssl_owner_idx < 0 || SSL_set_ex_data(ssl, ssl_owner_idx, t) != 1) {
		tls_server_free(t);
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

SSL_CTX *tls_client_new(const struct config *cfg, const struct listener_cfg *l,
                        char *err, size_t errlen)
{
	char e[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		snprintf(err, errlen, "SSL_CTX_new: %s", tls_last_error(e, sizeof e));
		return NULL;
	}
	if (ctx_common(ctx, cfg, err, errlen) < 0) goto fail;
	if (l->upstream_tls_ca_file[0] && readable("upstream_tls_ca_file", l->upstream_tls_ca_file, err, errlen) < 0)
		goto fail;
	if (l->upstream_tls_ca_file[0] &&
	    SSL_CTX_load_verify_locations(ctx, l->upstream_tls_ca_file, NULL) != 1) {
		snprintf(err, errlen, "upstream_tls_ca_file %s: %s", l->upstream_tls_ca_file,
		         tls_last_error(e, sizeof e));
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* is_ip_literal - name is an IPv4 or IPv6 address, not a host name */
static int is_ip_literal(const char *name)
{
	unsigned char a[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

SSL *tls_client_ssl(SSL_CTX *ctx, const char *name, int verify)
{
	SSL *ssl = SSL_new(ctx);
	if (ssl == NULL) return NULL;
	if (name && name[0] && is_ip_literal(name)) {
		/* no SNI: RFC 6066 3 "Literal IPv4 and IPv6 addresses are not
		 * permitted in HostName" (and Postfix sends none to an address);
		 * verified against the certificate's IP address entries */
		if (verify && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	} else if (name && name[0]) {
		SSL_set_tlsext_host_name(ssl, name);
		if (verify) SSL_set1_host(ssl, name);
	}
	SSL_set_verify(ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	return ssl;
}

const char *tls_describe(SSL *ssl, char *buf, size_t bufsz)
{
	int bits = 0;
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	if (c) SSL_CIPHER_get_bits(c, &bits);
	snprintf(buf, bufsz, "%s %s %d", SSL_get_version(ssl), c ? SSL_CIPHER_get_name(c) : "?", bits);
	return buf;
}

int transport_check_config(const struct config *cfg, void (*warn)(void *arg, const char *msg),
                           void *warn_arg, char *err, size_t errlen)
{
	char e[400];
	for (unsigned i = 0; i < cfg->nlisteners; i++) {
		const struct listener_cfg *l = &cfg->listeners[i];
		if (l->tls_mode != MW_TLS_NONE || l->tls_cert[0]) {
			struct tls_server *t = tls_server_new(cfg, l, e, sizeof e);
			if (t == NULL) {
				snprintf(err, errlen, "listener %s: %s", l->name, e);
				return -1;
			}
			if (warn != NULL && t->warn[0]) {
				char msg[sizeof t->warn + 300];
				snprintf(msg, sizeof msg, "listener %s: %s", l->name, t->warn);
				warn(warn_arg, msg);
			}
			tls_server_free(t);
		}
		if (l->tls_required && l->tls_mode == MW_TLS_NONE) {
			snprintf(err, errlen, "listener %s: tls_required needs tls = starttls or implicit", l->name);
			return -1;
		}
		if (netlist_check(l->proxy_protocol_from, e, sizeof e) < 0) {
			snprintf(err, errlen, "listener %s: proxy_protocol_from: %s", l->name, e);
			return -1;
		}
		if (netlist_check(l->xforward_from, e, sizeof e) < 0) {
			snprintf(err, errlen, "listener %s: xforward_from: %s", l->name, e);
			return -1;
		}
		if (l->xforward_from[0] && l->proxy_protocol) {
			/* whose address would xforward_from be matched against: the
			 * balancer's, or the one its header names? */
			snprintf(err, errlen, "listener %s: xforward_from and proxy_protocol exclude each other "
			         "(XFORWARD comes from an MTA that connects directly)", l->name);
			return -1;
		}
		if (l->upstream_tls != MW_UPTLS_OFF) {
			SSL_CTX *c = tls_client_new(cfg, l, e, sizeof e);
			if (c == NULL) {
				snprintf(err, errlen, "listener %s: %s", l->name, e);
				return -1;
			}
			SSL_CTX_free(c);
		}
	}
	return 0;
}
