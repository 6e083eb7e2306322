#ifndef CREDPROXY_CCRYPTO_H
#define CREDPROXY_CCRYPTO_H
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/rand.h>
/* Macros Swift does not import. */
static inline long cp_ssl_ctx_set_min_tls12(SSL_CTX *ctx) {
  return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}
static inline long cp_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
static const long CP_SSL_MODE_PARTIAL_WRITE = SSL_MODE_ENABLE_PARTIAL_WRITE;
static const long CP_SSL_MODE_MOVING_BUFFER = SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
static const long CP_SSL_MODE_RELEASE_BUFFERS = SSL_MODE_RELEASE_BUFFERS;

/* Interception: the TLS SNI must name the CONNECT target, which the connection keeps as the SSL's
   app data. A mismatch fails the handshake; no SNI is allowed (IP literals have none) and the
   inner requests' authority is bound to the target anyway. */
#include <strings.h>
static int cp_sni_matches_target(SSL *ssl, int *alert, void *arg) {
  (void)arg;
  const char *expected = (const char *)SSL_get_app_data(ssl);
  const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (sni == NULL) return SSL_TLSEXT_ERR_NOACK;
  if (expected == NULL || strcasecmp(sni, expected) != 0) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}
static inline long cp_ssl_ctx_require_sni_target(SSL_CTX *ctx) {
  return SSL_CTX_set_tlsext_servername_callback(ctx, cp_sni_matches_target);
}
static inline int cp_ssl_set_app_data(SSL *ssl, void *data) { return SSL_set_app_data(ssl, data); }
#endif
