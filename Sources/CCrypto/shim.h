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
#endif
