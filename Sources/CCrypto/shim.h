#ifndef CREDPROXY_CCRYPTO_H
#define CREDPROXY_CCRYPTO_H
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/rand.h>
#endif
