/* Network namespaces: make a socket inside another netns from the calling thread. */
#include "pkg/net/net.h"

#include <sched.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef CLONE_NEWNET
#define CLONE_NEWNET 0x40000000
#endif

static pthread_once_t home_once = PTHREAD_ONCE_INIT;
static int home_fd = -1;
static int home_errno;

/* The netns the process started in: every switch returns there. */
static void home_open(void)
{
	home_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (home_fd < 0)
		home_errno = errno;
}

int net_netns_run(int ns_fd, int (*fn)(void *arg), void *arg, struct errbuf *eb)
{
	int rc;

	if (ns_fd < 0)
		return fn(arg);
	pthread_once(&home_once, home_open);
	if (home_fd < 0)
		return errbuf_set(eb, -net_err_from_errno(home_errno), "open /proc/self/ns/net: %s",
				  strerror(home_errno));
	if (setns(ns_fd, CLONE_NEWNET) < 0) {
		int e = errno;

		return errbuf_set(eb, -net_err_from_errno(e), "setns into the workload netns: %s",
				  strerror(e));
	}
	rc = fn(arg);
	if (setns(home_fd, CLONE_NEWNET) < 0) {
		/* Going on would make later sockets in the wrong namespace. */
		fprintf(stderr, "fatal: setns back to the home netns: %s\n", strerror(errno));
		abort();
	}
	return rc;
}

struct sock_args {
	int domain, type, proto;
	int err;
};

static int do_socket(void *arg)
{
	struct sock_args *a = arg;
	int fd = socket(a->domain, a->type | SOCK_CLOEXEC, a->proto);

	if (fd < 0)
		a->err = errno;
	return fd;
}

int net_netns_socket(int ns_fd, int domain, int type, int proto, struct errbuf *eb)
{
	struct sock_args a = {domain, type, proto, 0};
	int fd = net_netns_run(ns_fd, do_socket, &a, eb);

	if (fd < 0 && a.err)
		return errbuf_set(eb, -net_err_from_errno(a.err), "socket: %s", strerror(a.err));
	return fd;
}

uint64_t net_netns_inode(int ns_fd)
{
	struct stat st;

	if (ns_fd < 0 || fstat(ns_fd, &st) < 0)
		return 0;
	return (uint64_t)st.st_ino;
}
