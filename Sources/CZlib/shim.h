#ifndef CREDPROXY_CZLIB_H
#define CREDPROXY_CZLIB_H
#include <zlib.h>

/* inflateInit2 is a macro, which Swift cannot call. windowBits 15 + 32: zlib detects a gzip
   (or zlib) header itself. Nothing else lives here. */
static inline int cp_inflate_init_auto(z_stream *s) { return inflateInit2(s, 15 + 32); }

#endif
