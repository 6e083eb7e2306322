// curl_floor: the cost of libcurl alone, the floor under credproxy (which forwards with libcurl).
//
// A bare client on the same event model as credproxy: one multi handle driven by
// curl_multi_socket_action from an epoll loop with a timerfd, CONNS transfers kept in flight, each
// a keep-alive GET of URL; when one finishes its easy handle is re-added at once. No proxy, no
// parsing, no policy: what is left is libcurl's per-request work (handle add/remove, request
// building, TLS records, HTTP/1.1 or HTTP/2 framing) plus the kernel's. credproxy's CPU per request
// minus this one's is credproxy's own cost (scripts/bench prints both, measured in the same run).
//
//   curl_floor URL CA-FILE 1.1|2 CONNS SECONDS [configured|reset] [HOST:PORT:ADDR]
//
//   1.1 | 2     the upstream shape: HTTP/1.1, or HTTP/2 over TLS (ALPN), streams multiplexed
//   configured  (default) each handle's options are set once; per request only the URL and the
//               header list are set again (what any forwarder must do: they change per request)
//   reset       curl_easy_reset and every option again per request
//   HOST:PORT:ADDR  pinned with CURLOPT_RESOLVE (no resolver in the measured path)
//
// Prints one JSON line: requests, seconds, cpu_s, rps, cpu_us_per_req, p50_us, p99_us (latency
// from handle add to done). A one-second warm-up is not counted.
#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#if __has_include(<valgrind/callgrind.h>)
// Under `valgrind --tool=callgrind --instr-atstart=no` only the counted window is measured, so its
// instructions ÷ requests is the floor's instruction count per request (bench/profile.py); outside
// valgrind these are a few no-op instructions.
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

#define MAX_LAT_US 1000000 /* latency histogram: 1 µs buckets up to 1 s, the rest in the last */

static const char *url, *ca;
static long version;
static int reset_mode;
static struct curl_slist *headers, *resolve;
static CURLM *multi;
static int ep, tfd;
static uint32_t *histogram;
static long counted, total_done;
static int counting;

typedef struct {
  CURL *easy;
  double started;
} Slot;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static size_t discard(char *p, size_t size, size_t n, void *user) {
  (void)p;
  (void)user;
  return size * n;
}

static void die(const char *what, int code) {
  fprintf(stderr, "curl_floor: %s failed (%d)\n", what, code);
  exit(1);
}

#define SET(e, opt, val)                                           \
  do {                                                             \
    CURLcode rc_ = curl_easy_setopt((e), (opt), (val));            \
    if (rc_ != CURLE_OK) die("curl_easy_setopt " #opt, (int)rc_); \
  } while (0)

// Every option of a transfer; called once per handle (configured) or per request (reset).
static void configure(Slot *s) {
  CURL *e = s->easy;
  SET(e, CURLOPT_PRIVATE, s);
  SET(e, CURLOPT_URL, url);
  SET(e, CURLOPT_CAINFO, ca);
  SET(e, CURLOPT_HTTP_VERSION, version);
  if (version == CURL_HTTP_VERSION_2TLS) SET(e, CURLOPT_PIPEWAIT, 1L);
  SET(e, CURLOPT_TCP_NODELAY, 1L);
  SET(e, CURLOPT_NOSIGNAL, 1L);
  SET(e, CURLOPT_PROXY, "");
  SET(e, CURLOPT_HTTPHEADER, headers);
  if (resolve) SET(e, CURLOPT_RESOLVE, resolve);
  SET(e, CURLOPT_WRITEFUNCTION, discard);
  SET(e, CURLOPT_HEADERFUNCTION, discard);
}

static void launch(Slot *s) {
  if (reset_mode) {
    curl_easy_reset(s->easy);
    configure(s);
  } else {
    // What changes per request for a forwarder: where to, and which headers.
    SET(s->easy, CURLOPT_URL, url);
    SET(s->easy, CURLOPT_HTTPHEADER, headers);
  }
  s->started = now();
  CURLMcode rc = curl_multi_add_handle(multi, s->easy);
  if (rc != CURLM_OK) die("curl_multi_add_handle", (int)rc);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)e;
  (void)userp;
  struct epoll_event ev = {0};
  ev.data.fd = fd;
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    return 0;
  }
  if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
  if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
  // socketp marks a socket already in the epoll set (curl keeps it per socket).
  if (socketp) {
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
  } else {
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    curl_multi_assign(multi, fd, (void *)1);
  }
  return 0;
}

// curl's timeouts, handled as credproxy's event loop does (a fair floor must not pay syscalls that
// credproxy avoids): "now" runs at the end of the current batch, with no syscall; the timerfd is
// re-armed only to fire earlier than it already will, and an early fire re-arms to the deadline.
static int timeout_due;
static double deadline = -1, armed = -1;

static void arm(double at) {
  double in = at - now();
  if (in < 0.001) in = 0.001;
  struct itimerspec its = {0};
  its.it_value.tv_sec = (time_t)in;
  its.it_value.tv_nsec = (long)((in - (double)its.it_value.tv_sec) * 1e9);
  timerfd_settime(tfd, 0, &its, NULL);
  armed = at;
}

static int on_timer(CURLM *m, long ms, void *userp) {
  (void)m;
  (void)userp;
  if (ms < 0) {
    deadline = -1;
  } else if (ms == 0) {
    deadline = -1;
    timeout_due = 1;
  } else {
    deadline = now() + ms / 1000.0;
    if (armed < 0 || deadline < armed) arm(deadline);
  }
  return 0;
}

static void reap(void) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    Slot *s;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    if (msg->data.result != CURLE_OK) {
      fprintf(stderr, "curl_floor: transfer failed: %s\n", curl_easy_strerror(msg->data.result));
      exit(1);
    }
    long code = 0;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
      fprintf(stderr, "curl_floor: HTTP %ld from %s\n", code, url);
      exit(1);
    }
    curl_multi_remove_handle(multi, s->easy);
    total_done++;
    if (counting) {
      long us = (long)((now() - s->started) * 1e6);
      histogram[us < MAX_LAT_US ? us : MAX_LAT_US]++;
      counted++;
    }
    launch(s);
  }
}

static long percentile(double q) {
  long want = (long)(q * counted), seen = 0;
  for (long us = 0; us <= MAX_LAT_US; us++) {
    seen += histogram[us];
    if (seen > want) return us;
  }
  return MAX_LAT_US;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: curl_floor URL CA-FILE 1.1|2 CONNS SECONDS [configured|reset] [HOST:PORT:ADDR]\n");
    return 2;
  }
  url = argv[1];
  ca = argv[2];
  version = strcmp(argv[3], "2") == 0 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1;
  int conns = atoi(argv[4]);
  double seconds = atof(argv[5]);
  reset_mode = argc > 6 && strcmp(argv[6], "reset") == 0;
  if (argc > 7) resolve = curl_slist_append(NULL, argv[7]);
  if (conns < 1 || seconds <= 0) {
    fprintf(stderr, "curl_floor: CONNS and SECONDS must be positive\n");
    return 2;
  }
  histogram = calloc(MAX_LAT_US + 1, sizeof *histogram);
  if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) die("curl_global_init", 0);
  // The same headers credproxy sends for wrk's request: the injected credential, and no Accept.
  headers = curl_slist_append(NULL, "Authorization: Bearer bench-static-token-0123456789abcdef");
  headers = curl_slist_append(headers, "Accept:");
  headers = curl_slist_append(headers, "Expect:");

  ep = epoll_create1(EPOLL_CLOEXEC);
  tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (ep < 0 || tfd < 0) die("epoll/timerfd", errno);
  struct epoll_event tev = {.events = EPOLLIN, .data.fd = tfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

  multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)(conns + 8));

  Slot *slots = calloc(conns, sizeof *slots);
  for (int i = 0; i < conns; i++) {
    slots[i].easy = curl_easy_init();
    if (!slots[i].easy) die("curl_easy_init", 0);
    configure(&slots[i]);
    launch(&slots[i]);
  }

  double start = now(), warm_until = start + 1.0, t0 = 0, c0 = 0;
  int running = 0;
  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, 1000);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == tfd) {
        uint64_t ticks;
        if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN) die("timerfd read", errno);
        armed = -1;
        if (deadline >= 0 && deadline <= now()) {
          deadline = -1;
          curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
        } else if (deadline >= 0) {
          arm(deadline);
        }
      } else {
        int flags = 0;
        if (events[i].events & EPOLLIN) flags |= CURL_CSELECT_IN;
        if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(multi, fd, flags, &running);
      }
      reap();
    }
    for (int rounds = 0; timeout_due && rounds < 16; rounds++) {
      timeout_due = 0;
      curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
      reap();
    }
    if (timeout_due) arm(now());
    double t = now();
    if (!counting && t >= warm_until) {
      counting = 1;
      t0 = t;
      c0 = cpu();
      CALLGRIND_START_INSTRUMENTATION;
    }
    if (counting && t - t0 >= seconds) break;
  }
  CALLGRIND_STOP_INSTRUMENTATION;
  double elapsed = now() - t0, used = cpu() - c0;
  if (counted == 0) {
    fprintf(stderr, "curl_floor: no request finished\n");
    return 1;
  }
  printf("{\"requests\": %ld, \"seconds\": %.3f, \"cpu_s\": %.4f, \"rps\": %.1f, \"cpu_us_per_req\": %.2f, "
         "\"p50_us\": %ld, \"p99_us\": %ld, \"http\": \"%s\", \"mode\": \"%s\", \"conns\": %d}\n",
         counted, elapsed, used, counted / elapsed, used * 1e6 / counted, percentile(0.50), percentile(0.99),
         version == CURL_HTTP_VERSION_2TLS ? "2" : "1.1", reset_mode ? "reset" : "configured", conns);
  return 0;
}
