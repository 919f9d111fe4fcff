/* TCP sockets: listen, accept, non-blocking and bounded connects, options, original dst. */
#include "pkg/net/net.h"

#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>; defined here so the
 * glibc and musl builds need no kernel headers. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif

/* A non-blocking TCP socket, here (-1 with errno when socket() fails) or inside ns_fd's netns
 * (-E_NETNS with eb set on any failure). */
#define E_NETNS 1000
static int stream_socket(int family, int ns_fd, struct errbuf *eb)
{
	int fd;

	if (ns_fd < 0)
		return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	fd = net_netns_socket(ns_fd, family, SOCK_STREAM | SOCK_NONBLOCK, IPPROTO_TCP, eb);
	return fd >= 0 ? fd : -E_NETNS;
}

int net_err_from_errno(int e)
{
	switch (e) {
	case EAGAIN:
#if EWOULDBLOCK != EAGAIN
	case EWOULDBLOCK:
#endif
	case EINPROGRESS:
	case EALREADY: return -E_AGAIN;
	case ETIMEDOUT: return -E_TIMEOUT;
	case ECONNREFUSED:
	case ECONNRESET:
	case ECONNABORTED:
	case EPIPE:
	case ENOTCONN:
	case ESHUTDOWN: return -E_CLOSED;
	case EMFILE:
	case ENFILE:
	case ENOBUFS:
	case ENOMEM: return -E_LIMIT;
	case EACCES:
	case EPERM: return -E_PERM;
	case EADDRINUSE: return -E_EXIST;
	case EADDRNOTAVAIL:
	case EINVAL: return -E_INVAL;
	case EAFNOSUPPORT:
	case EPROTONOSUPPORT:
	case ENOPROTOOPT:
	case EOPNOTSUPP: return -E_UNSUPP;
	case ENOENT: return -E_NOTFOUND;
	default: return -E_IO;
	}
}

/* strerror with a lower-case first letter ("connection refused"), keeping "I/O error". */
static const char *errtext(int e, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && buf[1] >= 'a' && buf[1] <= 'z')
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

/* errbuf_set for a failed syscall: "<op> <addr>: [what: ]<errno text>". */
static int sys_fail(struct errbuf *eb, int e, const char *op, const struct net_addr *a,
		    const char *what)
{
	char as[NET_ADDR_STRLEN];
	char et[128];

	net_addr_format(a, as, sizeof(as));
	errtext(e, et, sizeof(et));
	if (what)
		errbuf_set(eb, -net_err_from_errno(e), "%s %s: %s: %s", op, as, what, et);
	else
		errbuf_set(eb, -net_err_from_errno(e), "%s %s: %s", op, as, et);
	errno = e;
	return net_err_from_errno(e);
}

static int setopt_int(int fd, int level, int name, int v)
{
	if (setsockopt(fd, level, name, &v, sizeof(v)) < 0)
		return net_err_from_errno(errno);
	return 0;
}

static int close_keep_errno(int fd)
{
	int e = errno;

	close(fd);
	errno = e;
	return -1;
}

/* ---- options --------------------------------------------------------------------------------- */

int net_sock_set_nodelay(int fd, bool on)
{
	return setopt_int(fd, IPPROTO_TCP, TCP_NODELAY, on);
}

int net_sock_set_keepalive(int fd, int idle_s, int interval_s, int count)
{
	int rc;

	if (idle_s <= 0)
		return setopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 0);
	if ((rc = setopt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s)) < 0)
		return rc;
	if (interval_s > 0 && (rc = setopt_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, interval_s)) < 0)
		return rc;
	if (count > 0 && (rc = setopt_int(fd, IPPROTO_TCP, TCP_KEEPCNT, count)) < 0)
		return rc;
	return setopt_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
}

int net_sock_set_mark(int fd, uint32_t mark)
{
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0)
		return net_err_from_errno(errno);
	return 0;
}

static int sock_name(int fd, struct net_addr *a, bool peer)
{
	struct sockaddr_in6 sa; /* big enough for IPv4 and IPv6 */
	socklen_t len = sizeof(sa);
	int rc;

	memset(&sa, 0, sizeof(sa));
	rc = peer ? getpeername(fd, (struct sockaddr *)&sa, &len)
		  : getsockname(fd, (struct sockaddr *)&sa, &len);
	if (rc < 0) {
		memset(a, 0, sizeof(*a));
		return net_err_from_errno(errno);
	}
	return net_addr_from_sockaddr(a, (struct sockaddr *)&sa, len);
}

int net_sock_local(int fd, struct net_addr *a)
{
	return sock_name(fd, a, false);
}

int net_sock_peer(int fd, struct net_addr *a)
{
	return sock_name(fd, a, true);
}

int net_sock_original_dst(int fd, struct net_addr *a, struct errbuf *eb)
{
	struct net_addr local;
	struct sockaddr_in6 sa;
	socklen_t len = sizeof(sa);
	bool v6;
	int rc;
	char et[128];

	memset(a, 0, sizeof(*a));
	rc = sock_name(fd, &local, false);
	if (rc < 0)
		return errbuf_set(eb, -rc, "original destination of fd %d: getsockname: %s", fd,
				  errtext(errno, et, sizeof(et)));
	/* A v4-mapped local address (unmapped by sock_name) means an IPv4 flow, which conntrack
	 * keeps in its IPv4 table even on an AF_INET6 socket. */
	v6 = local.sa.sa_family == AF_INET6;
	memset(&sa, 0, sizeof(sa));
	if (getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IP6T_SO_ORIGINAL_DST : SO_ORIGINAL_DST, &sa,
		       &len) < 0) {
		int e = errno;
		char ls[NET_ADDR_STRLEN];
		net_addr_format(&local, ls, sizeof(ls));
		if (e == ENOENT)
			return errbuf_set(eb, E_NOTFOUND,
					  "original destination of connection to %s: no conntrack "
					  "entry (not redirected?)",
					  ls);
		return errbuf_set(eb, -net_err_from_errno(e),
				  "original destination of connection to %s: %s%s", ls,
				  errtext(e, et, sizeof(et)),
				  e == ENOPROTOOPT ? " (is nf_conntrack loaded?)" : "");
	}
	if (net_addr_from_sockaddr(a, (struct sockaddr *)&sa, len) < 0)
		return errbuf_set(eb, E_PROTO,
				  "original destination of fd %d: unexpected family %d", fd,
				  sa.sin6_family);
	return 0;
}

void net_sock_abort(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* ---- listen and accept ----------------------------------------------------------------------- */

static bool is_v6_any(const struct net_addr *a)
{
	static const struct in6_addr any = IN6ADDR_ANY_INIT;

	return a->sa.sa_family == AF_INET6 && memcmp(&a->sin6.sin6_addr, &any, 16) == 0;
}

static int listen_opts_apply(int fd, const struct net_addr *a, const struct net_listen_opts *o,
			     struct errbuf *eb)
{
	int rc;

	if (setopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0)
		return sys_fail(eb, errno, "listen", a, "setsockopt SO_REUSEADDR");
	if (o->reuseport && setopt_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0)
		return sys_fail(eb, errno, "listen", a, "setsockopt SO_REUSEPORT");
	if (a->sa.sa_family == AF_INET6 &&
	    setopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, o->v6only ? 1 : 0) < 0)
		return sys_fail(eb, errno, "listen", a, "setsockopt IPV6_V6ONLY");
	if (o->transparent) {
		rc = a->sa.sa_family == AF_INET6 ? setopt_int(fd, SOL_IPV6, IPV6_TRANSPARENT, 1)
						 : setopt_int(fd, SOL_IP, IP_TRANSPARENT, 1);
		if (rc < 0)
			return sys_fail(eb, errno, "listen", a, "setsockopt IP_TRANSPARENT");
	}
	if (o->mark && net_sock_set_mark(fd, o->mark) < 0)
		return sys_fail(eb, errno, "listen", a, "setsockopt SO_MARK");
	return 0;
}

int net_listen(const struct net_addr *a, const struct net_listen_opts *opts, struct errbuf *eb)
{
	static const struct net_listen_opts defaults;
	const struct net_listen_opts *o = opts ? opts : &defaults;
	struct net_addr v4any;
	int fd, rc;

	if (a->len == 0)
		return errbuf_set(eb, E_INVAL, "listen: no address");
	fd = stream_socket(a->sa.sa_family, o->in_netns ? o->netns_fd : -1, eb);
	if (fd == -E_NETNS) {
		errbuf_prefix(eb, "listen in the workload netns");
		return -E_IO;
	}
	if (fd < 0 && errno == EAFNOSUPPORT && is_v6_any(a) && !o->v6only) {
		/* Kernel without IPv6: "all interfaces" can still mean all IPv4 interfaces. */
		memset(&v4any, 0, sizeof(v4any));
		v4any.sin.sin_family = AF_INET;
		v4any.sin.sin_port = a->sin6.sin6_port;
		v4any.len = sizeof(v4any.sin);
		a = &v4any;
		fd = stream_socket(AF_INET, o->in_netns ? o->netns_fd : -1, eb);
	}
	if (fd < 0)
		return sys_fail(eb, errno, "listen", a, "socket");
	rc = listen_opts_apply(fd, a, o, eb);
	if (rc < 0) {
		close_keep_errno(fd);
		return rc;
	}
	if (bind(fd, &a->sa, a->len) < 0) {
		close_keep_errno(fd);
		return sys_fail(eb, errno, "listen", a, NULL);
	}
	if (listen(fd, o->backlog > 0 ? o->backlog : NET_DEFAULT_BACKLOG) < 0) {
		close_keep_errno(fd);
		return sys_fail(eb, errno, "listen", a, NULL);
	}
	return fd;
}

int net_accept(int lfd, struct net_addr *peer)
{
	struct sockaddr_in6 sa;
	socklen_t len;
	int fd;

	for (;;) {
		len = sizeof(sa);
		fd = accept4(lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		switch (errno) {
		/* accept(2): pending network errors of the new socket surface here; the listener
		 * itself is fine, so take the next connection. */
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
		case ENETDOWN:
		case ENOPROTOOPT:
		case EHOSTDOWN:
		case ENONET:
		case EHOSTUNREACH:
		case ENETUNREACH:
		case EPERM: /* a firewall rule refused it */ continue;
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			return -E_AGAIN;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM: return -E_LIMIT;
		default: return -E_IO;
		}
	}
	if (peer && net_addr_from_sockaddr(peer, (struct sockaddr *)&sa, len) < 0)
		memset(peer, 0, sizeof(*peer));
	return fd;
}

/* ---- connect --------------------------------------------------------------------------------- */

static int connect_opts_apply(int fd, const struct net_addr *dst, const struct net_connect_opts *o,
			      struct errbuf *eb)
{
	bool v6 = dst->sa.sa_family == AF_INET6;

	if (o->mark && net_sock_set_mark(fd, o->mark) < 0) {
		char what[48];
		snprintf(what, sizeof(what), "setsockopt SO_MARK %u", (unsigned)o->mark);
		return sys_fail(eb, errno, "connect", dst, what);
	}
	if (o->nodelay && net_sock_set_nodelay(fd, true) < 0)
		return sys_fail(eb, errno, "connect", dst, "setsockopt TCP_NODELAY");
	if (o->transparent && (v6 ? setopt_int(fd, SOL_IPV6, IPV6_TRANSPARENT, 1)
				  : setopt_int(fd, SOL_IP, IP_TRANSPARENT, 1)) < 0)
		return sys_fail(eb, errno, "connect", dst, "setsockopt IP_TRANSPARENT");
	if (o->local && o->local->len) {
		char what[NET_ADDR_STRLEN + 8];
		/* Without a fixed port, let connect() pick it together with the destination:
		 * binding first would reserve a port per source address and exhaust them. */
		if (net_addr_port(o->local) == 0)
			setopt_int(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1);
		if (bind(fd, &o->local->sa, o->local->len) < 0) {
			snprintf(what, sizeof(what), "bind ");
			net_addr_format(o->local, what + 5, sizeof(what) - 5);
			return sys_fail(eb, errno, "connect", dst, what);
		}
	}
	return 0;
}

int net_connect_start(const struct net_addr *dst, const struct net_connect_opts *opts, int *fdp,
		      struct errbuf *eb)
{
	static const struct net_connect_opts defaults;
	const struct net_connect_opts *o = opts ? opts : &defaults;
	int fd, rc;

	*fdp = -1;
	if (dst->len == 0)
		return errbuf_set(eb, E_INVAL, "connect: no address");
	fd = stream_socket(dst->sa.sa_family, o->in_netns ? o->netns_fd : -1, eb);
	if (fd == -E_NETNS) {
		errbuf_prefix(eb, "connect from the workload netns");
		return -E_IO;
	}
	if (fd < 0)
		return sys_fail(eb, errno, "connect", dst, "socket");
	rc = connect_opts_apply(fd, dst, o, eb);
	if (rc < 0) {
		close_keep_errno(fd);
		return rc;
	}
	if (connect(fd, &dst->sa, dst->len) == 0) {
		*fdp = fd;
		return 0;
	}
	/* EINTR: the handshake goes on asynchronously, exactly like EINPROGRESS. */
	if (errno == EINPROGRESS || errno == EINTR) {
		*fdp = fd;
		return NET_INPROGRESS;
	}
	close_keep_errno(fd);
	return sys_fail(eb, errno, "connect", dst, NULL);
}

int net_connect_finish(int fd, const struct net_addr *dst, struct errbuf *eb)
{
	int err = 0;
	socklen_t len = sizeof(err);
	struct sockaddr_in6 sa;
	socklen_t salen = sizeof(sa);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return sys_fail(eb, errno, "connect", dst, "getsockopt SO_ERROR");
	if (err)
		return sys_fail(eb, err, "connect", dst, NULL);
	/* No error yet is not success while the handshake is still running. */
	if (getpeername(fd, (struct sockaddr *)&sa, &salen) < 0) {
		if (errno == ENOTCONN)
			return -E_AGAIN;
		return sys_fail(eb, errno, "connect", dst, "getpeername");
	}
	return 0;
}

static int wait_writable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	uint64_t deadline = time_mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);

	for (;;) {
		uint64_t now = time_mono_ms();
		int left = now >= deadline ? 0 : (int)(deadline - now);
		int n = poll(&p, 1, left);
		if (n > 0)
			return 0;
		if (n == 0)
			return -E_TIMEOUT;
		if (errno != EINTR)
			return -E_IO;
	}
}

int net_connect_timeout(const struct net_addr *dst, int timeout_ms,
			const struct net_connect_opts *opts, struct errbuf *eb)
{
	int fd = -1;
	int rc = net_connect_start(dst, opts, &fd, eb);
	int fl;

	if (rc < 0)
		return rc;
	if (rc == NET_INPROGRESS) {
		rc = wait_writable(fd, timeout_ms);
		if (rc == -E_TIMEOUT) {
			char as[NET_ADDR_STRLEN];
			close(fd);
			return errbuf_set(eb, E_TIMEOUT, "connect %s: timed out after %d ms",
					  net_addr_format(dst, as, sizeof(as)), timeout_ms);
		}
		if (rc < 0) {
			rc = sys_fail(eb, errno, "connect", dst, "poll");
			close(fd);
			return rc;
		}
		rc = net_connect_finish(fd, dst, eb);
		if (rc < 0) {
			if (rc == -E_AGAIN)
				rc = errbuf_set(eb, E_STATE,
						"connect: still in progress after poll");
			close(fd);
			return rc;
		}
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		rc = sys_fail(eb, errno, "connect", dst, "fcntl");
		close(fd);
		return rc;
	}
	return fd;
}
