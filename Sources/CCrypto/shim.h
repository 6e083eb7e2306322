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
static inline long cp_ssl_ctx_session_cache_off(SSL_CTX *ctx) {
  return SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
}
static const long CP_SSL_MODE_PARTIAL_WRITE = SSL_MODE_ENABLE_PARTIAL_WRITE;
static const long CP_SSL_MODE_MOVING_BUFFER = SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
static const long CP_SSL_MODE_RELEASE_BUFFERS = SSL_MODE_RELEASE_BUFFERS;

/* Interception: the TLS SNI must name the CONNECT target, which the connection keeps as the SSL's
   app data. The check itself is Swift (CredproxyCore's ClientTransport), so the SNI is read with
   the router's host canonicaliser. */
typedef int (*cp_servername_cb)(SSL *ssl, int *alert, void *arg);
static inline long cp_ssl_ctx_set_servername_callback(SSL_CTX *ctx, cp_servername_cb cb) {
  return SSL_CTX_set_tlsext_servername_callback(ctx, cb);
}
static inline void *cp_ssl_get_app_data(const SSL *ssl) { return SSL_get_app_data(ssl); }
static const int CP_SSL_AD_UNRECOGNIZED_NAME = SSL_AD_UNRECOGNIZED_NAME;
static const int CP_SSL_TLSEXT_ERR_OK = SSL_TLSEXT_ERR_OK;
static const int CP_SSL_TLSEXT_ERR_NOACK = SSL_TLSEXT_ERR_NOACK;
static const int CP_SSL_TLSEXT_ERR_ALERT_FATAL = SSL_TLSEXT_ERR_ALERT_FATAL;
static inline int cp_ssl_set_app_data(SSL *ssl, void *data) { return SSL_set_app_data(ssl, data); }

/* The local CA (module LocalCA): certificates, extensions, EC keys, ALPN. */
#include <openssl/x509v3.h>
#include <openssl/ec.h>
static const unsigned long CP_XN_FLAG_RFC2253 = XN_FLAG_RFC2253;
static inline EVP_PKEY *cp_ec_p256_keygen(void) { return EVP_EC_gen("P-256"); }
static inline long cp_ssl_ctx_add1_chain_cert(SSL_CTX *ctx, X509 *x) {
  return SSL_CTX_add1_chain_cert(ctx, x);
}
static const unsigned char cp_alpn_http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
/* Server side: pick http/1.1 when the client offers it; otherwise no ALPN (not an error). */
static int cp_alpn_select_http11(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                 const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl; (void)arg;
  unsigned char *selected = NULL;
  if (SSL_select_next_proto(&selected, outlen, cp_alpn_http11, sizeof cp_alpn_http11, in, inlen)
      != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}
static inline void cp_ssl_ctx_alpn_http11(SSL_CTX *ctx) {
  SSL_CTX_set_alpn_select_cb(ctx, cp_alpn_select_http11, NULL);
}
#endif
