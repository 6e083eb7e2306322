#ifndef CREDPROXY_CSYSTEM_H
#define CREDPROXY_CSYSTEM_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/resource.h>
#include <malloc.h>
/* accept4 is declared only under _GNU_SOURCE; the symbol is always in glibc. */
extern int accept4(int, struct sockaddr *, socklen_t *, int);
/* Token programs are spawned with every inherited descriptor above stderr closed (glibc 2.34+;
   declared only under _GNU_SOURCE). */
#include <spawn.h>
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *, int);
extern int pipe2(int pipefd[2], int flags);
#endif
