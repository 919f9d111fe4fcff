/* The wake-up floor for bench/l7.sh: the least work a process can do per HTTP/1.1 request.
 *
 * One thread, epoll; each wake-up reads what arrived and answers every complete request (a head
 * ending in CRLF CRLF; no body is expected) with "200 OK" and a 1024-byte body in one send().
 * That is one epoll_wait, one read and one send per request, the system calls a proxy makes for
 * each direction of a request it forwards. Its CPU per 1,000 requests at a fixed rate is the
 * kernel's cost of a wake-up on the machine (scheduling in and out, the TCP send and receive
 * paths), which no proxy can go under.
 *
 * usage: floor ADDR PORT (IPv4). Runs until killed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY 1024
#define HEAD                                                                                       \
	"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nContent-Type: "                                \
	"application/octet-stream\r\n\r\n"

/* Per connection: how much of "\r\n\r\n" the previous read ended with. */
static unsigned char matched[65536];

static int fail(const char *what)
{
	fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
	return 1;
}

/* Complete request heads in p[0..n), carrying a partial "\r\n\r\n" across reads. */
static int count_heads(int fd, const char *p, ssize_t n)
{
	static const char end[] = "\r\n\r\n";
	unsigned m = matched[fd];
	int heads = 0;

	for (ssize_t i = 0; i < n; i++) {
		if (p[i] == end[m])
			m++;
		else
			m = p[i] == '\r' ? 1 : 0;
		if (m == 4) {
			heads++;
			m = 0;
		}
	}
	matched[fd] = (unsigned char)m;
	return heads;
}

int main(int argc, char **argv)
{
	static char in[65536], resp[sizeof(HEAD) - 1 + BODY];
	struct sockaddr_in a = {.sin_family = AF_INET};
	int one = 1, ls, ep;

	if (argc != 3 || inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || atoi(argv[2]) <= 0) {
		fprintf(stderr, "usage: floor IPV4 PORT\n");
		return 2;
	}
	a.sin_port = htons((unsigned short)atoi(argv[2]));
	memcpy(resp, HEAD, sizeof(HEAD) - 1);
	memset(resp + sizeof(HEAD) - 1, 'x', BODY);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ls < 0)
		return fail("socket");
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0)
		return fail("bind");
	if (listen(ls, 1024) < 0)
		return fail("listen");
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return fail("epoll_create1");
	if (epoll_ctl(ep, EPOLL_CTL_ADD, ls,
		      &(struct epoll_event){.events = EPOLLIN, .data.fd = ls}) < 0)
		return fail("epoll_ctl");
	for (;;) {
		struct epoll_event ev[64];
		int n = epoll_wait(ep, ev, 64, -1);

		if (n < 0 && errno != EINTR)
			return fail("epoll_wait");
		for (int i = 0; i < n; i++) {
			int fd = ev[i].data.fd;
			ssize_t r;
			int heads;

			if (fd == ls) {
				int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

				if (c < 0)
					continue;
				if (c >= (int)sizeof(matched)) {
					close(c);
					continue;
				}
				matched[c] = 0;
				setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				epoll_ctl(ep, EPOLL_CTL_ADD, c,
					  &(struct epoll_event){.events = EPOLLIN, .data.fd = c});
				continue;
			}
			r = read(fd, in, sizeof(in));
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				close(fd); /* also leaves the epoll set */
				continue;
			}
			/* A client waits for each answer (no pipelining in rate.py and curl), so
			 * the responses to one read fit the socket buffer; a short send drops the
			 * rest. */
			for (heads = count_heads(fd, in, r); heads > 0; heads--)
				if (send(fd, resp, sizeof(resp), MSG_NOSIGNAL) !=
				    (ssize_t)sizeof(resp))
					break;
		}
	}
}
