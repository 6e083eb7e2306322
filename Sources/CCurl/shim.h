#ifndef CREDPROXY_CCURL_H
#define CREDPROXY_CCURL_H
#include <curl/curl.h>

/* curl_easy_setopt and friends are variadic, which Swift cannot call.
   One fixed-signature wrapper per argument kind; nothing else lives here. */

static inline CURLcode cp_easy_setopt_long(CURL *h, CURLoption o, long v) {
  return curl_easy_setopt(h, o, v);
}
static inline CURLcode cp_easy_setopt_ptr(CURL *h, CURLoption o, const void *v) {
  return curl_easy_setopt(h, o, v);
}
static inline CURLcode cp_easy_setopt_off(CURL *h, CURLoption o, curl_off_t v) {
  return curl_easy_setopt(h, o, v);
}
typedef size_t (*cp_data_callback)(char *, size_t, size_t, void *);
static inline CURLcode cp_easy_setopt_data_cb(CURL *h, CURLoption o, cp_data_callback cb) {
  return curl_easy_setopt(h, o, cb);
}
static inline CURLcode cp_easy_getinfo_long(CURL *h, CURLINFO i, long *v) {
  return curl_easy_getinfo(h, i, v);
}
static inline CURLcode cp_easy_getinfo_ptr(CURL *h, CURLINFO i, void **v) {
  return curl_easy_getinfo(h, i, v);
}
static inline CURLcode cp_easy_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) {
  return curl_easy_getinfo(h, i, v);
}

typedef curl_socket_t (*cp_opensocket_callback)(void *, curlsocktype, struct curl_sockaddr *);
static inline CURLcode cp_easy_setopt_opensocket_cb(CURL *h, cp_opensocket_callback cb) {
  return curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, cb);
}
static const curl_socket_t CP_SOCKET_BAD = CURL_SOCKET_BAD;

/* Called for every request, on a new or a reused connection, with the address it is on. */
typedef int (*cp_prereq_callback)(void *, char *, char *, int, int);
static inline CURLcode cp_easy_setopt_prereq_cb(CURL *h, cp_prereq_callback cb) {
  return curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, cb);
}
static const int CP_PREREQFUNC_OK = CURL_PREREQFUNC_OK;
static const int CP_PREREQFUNC_ABORT = CURL_PREREQFUNC_ABORT;

typedef int (*cp_socket_callback)(CURL *, curl_socket_t, int, void *, void *);
typedef int (*cp_timer_callback)(CURLM *, long, void *);
static inline CURLMcode cp_multi_setopt_long(CURLM *m, CURLMoption o, long v) {
  return curl_multi_setopt(m, o, v);
}
static inline CURLMcode cp_multi_setopt_ptr(CURLM *m, CURLMoption o, void *v) {
  return curl_multi_setopt(m, o, v);
}
static inline CURLMcode cp_multi_setopt_socket_cb(CURLM *m, cp_socket_callback cb) {
  return curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, cb);
}
static inline CURLMcode cp_multi_setopt_timer_cb(CURLM *m, cp_timer_callback cb) {
  return curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, cb);
}

/* Macros Swift does not import. */
static const size_t CP_WRITEFUNC_PAUSE = CURL_WRITEFUNC_PAUSE;
static const size_t CP_READFUNC_PAUSE = CURL_READFUNC_PAUSE;
static const size_t CP_READFUNC_ABORT = CURL_READFUNC_ABORT;
static const int CP_PAUSE_CONT = CURLPAUSE_CONT;
static const int CP_CSELECT_IN = CURL_CSELECT_IN;
static const int CP_CSELECT_OUT = CURL_CSELECT_OUT;
static const int CP_CSELECT_ERR = CURL_CSELECT_ERR;
static const curl_socket_t CP_SOCKET_TIMEOUT = CURL_SOCKET_TIMEOUT;
static const int CP_POLL_IN = CURL_POLL_IN;
static const int CP_POLL_OUT = CURL_POLL_OUT;
static const int CP_POLL_INOUT = CURL_POLL_INOUT;
static const int CP_POLL_REMOVE = CURL_POLL_REMOVE;
static const long CP_GLOBAL_DEFAULT = CURL_GLOBAL_DEFAULT;
static const long CP_HTTP_VERSION_2TLS = CURL_HTTP_VERSION_2TLS;
static const long CP_HTTP_VERSION_1_1 = CURL_HTTP_VERSION_1_1;
static const long CP_HTTP_VERSION_2_PRIOR_KNOWLEDGE = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
#endif
