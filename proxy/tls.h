/* tls.h - OpenSSL contexts of the proxy's two legs, and what a TLS
 * session is reported as (audit log, scan request).
 *
 * The I/O itself (SSL_read/SSL_write on the non-blocking socket) lives in
 * conn.c; this file only builds and configures the SSL_CTX objects. */
#ifndef MW_TLS_H
#define MW_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "config.h"

struct tls_server;

/* tls_server_new - the client-facing context of listener l: every
 * tls_cert/tls_key pair loaded (the first one is the default; SNI picks
 * another whose names match), minimum version and ciphers from cfg.
 * NULL with a reason in err. */
struct tls_server *tls_server_new(const struct config *cfg, const struct listener_cfg *l,
                                  char *err, size_t errlen);
/* tls_server_free - drop the caller's reference; the contexts go when the
 * last SSL made from them is freed too (a reload replaces a listener's
 * while its sessions still use the old one) */
void tls_server_free(struct tls_server *t);
/* tls_server_ssl - a new SSL object for one accepted connection; it holds
 * a reference to t until SSL_free */
SSL *tls_server_ssl(struct tls_server *t);

/* tls_client_new - the upstream-facing context of listener l: minimum
 * version and ciphers from cfg; if upstream_tls_ca_file is set, the chain
 * is verified against it.  NULL with a reason in err. */
SSL_CTX *tls_client_new(const struct config *cfg, const struct listener_cfg *l,
                        char *err, size_t errlen);
/* tls_client_ssl - SSL object towards the upstream; when verify, the
 * certificate must carry name (SNI is sent with it too). */
SSL *tls_client_ssl(SSL_CTX *ctx, const char *name, int verify);

/* transport_check_config - every listener's transport settings hold: TLS
 * certificates, keys, CA file and ciphers load, PROXY networks parse.  0, or -1 with "listener NAME: reason". */
int transport_check_config(const struct config *cfg, char *err, size_t errlen);

/* tls_describe - "TLSv1.3 TLS_AES_256_GCM_SHA384 256" into buf */
const char *tls_describe(SSL *ssl, char *buf, size_t bufsz);
/* tls_last_error - OpenSSL's error queue, one line, into buf (emptied) */
const char *tls_last_error(char *buf, size_t bufsz);

#endif
