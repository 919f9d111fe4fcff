/* ZDS over a unix SOCK_SEQPACKET socket: one message per packet, the netns fd in SCM_RIGHTS.
 *
 * The calls block (poll, then a non-blocking sendmsg/recvmsg) so each side runs them on its own
 * thread. Lock-step, as Istio: the agent sends one request and waits for its ack; correlation is
 * by order only, so after a timeout or any error mid-exchange the connection must be closed.
 * Any fd that arrives with a refused packet is closed before returning.
 */
#include "pkg/inpod/inpod.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define INPOD_FDS_MAX 8		 /* fds accepted per packet (only one is kept) before MSG_CTRUNC */
#define INPOD_IO_TIMEOUT_MS 5000 /* Istio's CNI read/write deadline */
#define INPOD_BACKLOG 8

/* Monotonic deadline in ms, or -1 for none. */
static int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : (int64_t)time_mono_ms() + timeout_ms;
}

/* Waits until fd is ready for ev (or has an error/hangup, which the next call reports). */
static int wait_fd(int fd, short ev, int64_t deadline, const char *step, struct errbuf *eb)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = ev};
		int ms = -1, rc;
		if (deadline >= 0) {
			int64_t left = deadline - (int64_t)time_mono_ms();
			ms = left > 0 ? (int)MIN(left, INT_MAX) : 0;
		}
		rc = poll(&pfd, 1, ms);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return errbuf_set(eb, E_IO, "%s: poll: %s", step, strerror(errno));
		if (rc == 0)
			return errbuf_set(eb, E_TIMEOUT, "%s: timed out", step);
		if (pfd.revents & POLLNVAL)
			return errbuf_set(eb, E_INVAL, "%s: fd %d is not open", step, fd);
		return 0;
	}
}

static void close_fds(int *fds, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		close(fds[i]);
	*n = 0;
}

static int sock_err(int e, const char *step, struct errbuf *eb)
{
	if (e == EPIPE || e == ECONNRESET || e == ENOTCONN)
		return errbuf_set(eb, E_CLOSED, "%s: connection closed by peer", step);
	return errbuf_set(eb, E_IO, "%s: %s", step, strerror(e));
}

/* Receives one packet into buf[INPOD_PACKET_MAX] and the fds that came with it (fds[], up to
 * INPOD_FDS_MAX). Returns its length; truncated packets and control data are -E_PARSE. */
static int recv_packet(int fd, uint8_t *buf, int *fds, size_t *nfds, int64_t deadline,
		       const char *step, struct errbuf *eb)
{
	union {
		struct cmsghdr align;
		char b[CMSG_SPACE(sizeof(int) * INPOD_FDS_MAX)];
	} ctl;

	*nfds = 0;
	for (;;) {
		struct iovec iov = {.iov_base = buf, .iov_len = INPOD_PACKET_MAX};
		struct msghdr msg = {.msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = ctl.b,
				     .msg_controllen = sizeof(ctl.b)};
		ssize_t n;
		int rc = wait_fd(fd, POLLIN, deadline, step, eb);
		if (rc < 0)
			return rc;
		n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return sock_err(errno, step, eb);
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			size_t k;
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k && *nfds < INPOD_FDS_MAX; i++)
				memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int),
				       sizeof(int));
		}
		if (msg.msg_flags & MSG_CTRUNC) {
			close_fds(fds, nfds);
			return errbuf_set(eb, E_PARSE,
					  "%s: control data truncated (more than %d fds)", step,
					  INPOD_FDS_MAX);
		}
		if (msg.msg_flags & MSG_TRUNC) {
			close_fds(fds, nfds);
			return errbuf_set(eb, E_PARSE, "%s: packet longer than %d bytes", step,
					  INPOD_PACKET_MAX);
		}
		/* SEQPACKET reads 0 at EOF; an empty packet is never a valid ZDS message either. */
		if (n == 0 && *nfds == 0)
			return errbuf_set(eb, E_CLOSED, "%s: connection closed by peer", step);
		return (int)n;
	}
}

static int send_packet(int fd, const uint8_t *p, size_t n, int sendfd, int64_t deadline,
		       const char *step, struct errbuf *eb)
{
	union {
		struct cmsghdr align;
		char b[CMSG_SPACE(sizeof(int))];
	} ctl;

	memset(&ctl, 0, sizeof(ctl));
	for (;;) {
		struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t w;
		int rc = wait_fd(fd, POLLOUT, deadline, step, eb);
		if (rc < 0)
			return rc;
		if (sendfd >= 0) {
			struct cmsghdr *c;
			msg.msg_control = ctl.b;
			msg.msg_controllen = sizeof(ctl.b);
			c = CMSG_FIRSTHDR(&msg);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &sendfd, sizeof(int));
		}
		w = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w < 0)
			return sock_err(errno, step, eb);
		return 0;
	}
}

static int fill_addr(struct sockaddr_un *sa, const char *path, struct errbuf *eb)
{
	size_t n = strlen(path);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (n == 0 || n >= sizeof(sa->sun_path))
		return errbuf_set(eb, E_INVAL, "%s: socket path must be 1..%zu bytes", path,
				  sizeof(sa->sun_path) - 1);
	memcpy(sa->sun_path, path, n + 1);
	return 0;
}

/* ---- ztunnel (client) ------------------------------------------------------------------------ */

int inpod_client_connect(const char *path, struct errbuf *eb)
{
	struct sockaddr_un sa;
	uint8_t hello[16];
	int fd, rc, n;

	if ((rc = fill_addr(&sa, path, eb)) < 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return errbuf_set(eb, E_IO, "socket: %s", strerror(errno));
	/* Non-blocking so a full listen backlog fails fast (EAGAIN) instead of hanging. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		close(fd);
		if (e == ENOENT)
			return errbuf_set(eb, E_NOTFOUND, "connect %s: no such socket", path);
		if (e == EAGAIN)
			return errbuf_set(eb, E_AGAIN, "connect %s: listen backlog full", path);
		return errbuf_set(eb, E_IO, "connect %s: %s", path, strerror(e));
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
		rc = errbuf_set(eb, E_IO, "connect %s: fcntl: %s", path, strerror(errno));
		goto fail;
	}
	n = inpod_hello_encode(hello, sizeof(hello), INPOD_VERSION_V1);
	rc = send_packet(fd, hello, (size_t)n, -1, deadline_of(INPOD_IO_TIMEOUT_MS), "send hello",
			 eb);
	if (rc < 0) {
		errbuf_prefix(eb, "%s", path);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return rc;
}

int inpod_client_recv(int fd, struct inpod_request *r, int *netns_fd, int timeout_ms,
		      struct errbuf *eb)
{
	uint8_t buf[INPOD_PACKET_MAX];
	int fds[INPOD_FDS_MAX];
	size_t nfds;
	int n, rc;

	*netns_fd = -1;
	n = recv_packet(fd, buf, fds, &nfds, deadline_of(timeout_ms), "recv WorkloadRequest", eb);
	if (n < 0)
		return n;
	if ((rc = inpod_request_decode(buf, (size_t)n, r, eb)) < 0) {
		close_fds(fds, &nfds);
		errbuf_prefix(eb, "recv");
		return rc;
	}
	/* Exactly one fd belongs to an Add; extras are closed (as ztunnel does). */
	for (size_t i = 1; i < nfds; i++)
		close(fds[i]);
	if (nfds)
		*netns_fd = fds[0];
	return 0;
}

int inpod_client_ack(int fd, const char *error, struct errbuf *eb)
{
	uint8_t buf[INPOD_PACKET_MAX];
	int n = inpod_ack_encode(error, buf, sizeof(buf));

	if (n < 0)
		return errbuf_set(eb, n, "send ack: error text longer than a packet");
	return send_packet(fd, buf, (size_t)n, -1, deadline_of(INPOD_IO_TIMEOUT_MS), "send ack",
			   eb);
}

/* ---- agent (server) -------------------------------------------------------------------------- */

/* mkdir -p of path's directory; directories it creates are 0755. */
static int make_parent(const char *path, struct errbuf *eb)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1;; p++) {
		bool end = *p == '\0';
		if (*p != '/' && !end)
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) == 0) {
			/* The umask may have narrowed it; ztunnel (another process) must traverse
			 * it. */
			if (chmod(dir, 0755) != 0)
				return errbuf_set(eb, E_IO, "chmod %s: %s", dir, strerror(errno));
		} else if (errno != EEXIST) {
			return errbuf_set(eb, E_IO, "mkdir %s: %s", dir, strerror(errno));
		}
		if (end)
			return 0;
		*p = '/';
	}
}

int inpod_server_listen(const char *path, struct errbuf *eb)
{
	struct sockaddr_un sa, tmp;
	char tmpname[sizeof(sa.sun_path) + 32];
	struct stat st;
	int fd, rc;

	if ((rc = fill_addr(&sa, path, eb)) < 0)
		return rc;
	/* Bound under a temporary name, made 0600, then renamed over the path: the socket is
	 * never reachable with looser permissions, and a stale one is replaced atomically. */
	snprintf(tmpname, sizeof(tmpname), "%s.%d.tmp", path, (int)getpid());
	if (fill_addr(&tmp, tmpname, eb) < 0)
		return errbuf_set(eb, E_INVAL, "%s: socket path too long (%zu bytes)", path,
				  strlen(path));
	if ((rc = make_parent(path, eb)) < 0)
		return rc;
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return errbuf_set(eb, E_EXIST, "%s: exists and is not a socket", path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errbuf_set(eb, E_IO, "socket: %s", strerror(errno));
	unlink(tmpname);
	if (bind(fd, (struct sockaddr *)&tmp, sizeof(tmp)) != 0) {
		rc = errbuf_set(eb, E_IO, "bind %s: %s", tmpname, strerror(errno));
		goto fail;
	}
	if (chmod(tmpname, 0600) != 0) {
		rc = errbuf_set(eb, E_IO, "chmod %s: %s", tmpname, strerror(errno));
		goto fail;
	}
	if (listen(fd, INPOD_BACKLOG) != 0) {
		rc = errbuf_set(eb, E_IO, "listen %s: %s", tmpname, strerror(errno));
		goto fail;
	}
	if (rename(tmpname, path) != 0) {
		rc = errbuf_set(eb, E_IO, "rename %s to %s: %s", tmpname, path, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	unlink(tmpname);
	close(fd);
	return rc;
}

static int read_hello(int fd, struct errbuf *eb)
{
	uint8_t buf[INPOD_PACKET_MAX];
	int fds[INPOD_FDS_MAX];
	size_t nfds;
	uint32_t version;
	int n, rc;

	/* The hello gets Istio's read deadline whatever the accept wait was. */
	n = recv_packet(fd, buf, fds, &nfds, deadline_of(INPOD_IO_TIMEOUT_MS), "recv hello", eb);
	if (n < 0)
		return n;
	if (nfds) {
		close_fds(fds, &nfds);
		return errbuf_set(eb, E_PROTO, "recv hello: hello carries an fd");
	}
	if ((rc = inpod_hello_decode(buf, (size_t)n, &version, eb)) < 0) {
		errbuf_prefix(eb, "recv");
		return rc;
	}
	if (version != INPOD_VERSION_V1)
		return errbuf_set(eb, E_UNSUPP, "recv hello: ztunnel speaks ZDS version %u, not %d",
				  version, INPOD_VERSION_V1);
	return 0;
}

int inpod_server_accept(int lfd, int timeout_ms, struct errbuf *eb)
{
	int64_t deadline = deadline_of(timeout_ms);
	int fd, rc;

	for (;;) {
		if ((rc = wait_fd(lfd, POLLIN, deadline, "accept", eb)) < 0)
			return rc;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0)
			break;
		if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
			continue;
		return errbuf_set(eb, E_IO, "accept: %s", strerror(errno));
	}
	/* Blocking like the client's socket; our own I/O uses MSG_DONTWAIT after poll. */
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
		rc = errbuf_set(eb, E_IO, "accept: fcntl: %s", strerror(errno));
		close(fd);
		return rc;
	}
	if ((rc = read_hello(fd, eb)) < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

int inpod_server_send(int fd, const struct inpod_request *r, int netns_fd, int timeout_ms,
		      struct errbuf *eb)
{
	uint8_t buf[INPOD_PACKET_MAX];
	char text[INPOD_PACKET_MAX];
	int fds[INPOD_FDS_MAX];
	size_t nfds;
	int64_t deadline = deadline_of(timeout_ms);
	const char *t = inpod_type_name(r->type);
	int n, rc;

	if ((r->type == INPOD_ADD) != (netns_fd >= 0))
		return errbuf_set(eb, E_INVAL, "send %s: %s", t,
				  netns_fd >= 0 ? "only Add carries a netns fd"
						: "Add needs a netns fd");
	n = inpod_request_encode(r, buf, sizeof(buf));
	if (n < 0)
		return errbuf_set(eb, n, "send %s: cannot encode (%s)", t,
				  n == -E_LIMIT ? "longer than a packet" : "invalid request");
	if ((rc = send_packet(fd, buf, (size_t)n, netns_fd, deadline, "send", eb)) < 0)
		goto fail;
	n = recv_packet(fd, buf, fds, &nfds, deadline, "recv ack", eb);
	if (n < 0) {
		rc = n;
		goto fail;
	}
	if (nfds) {
		close_fds(fds, &nfds);
		rc = errbuf_set(eb, E_PROTO, "recv ack: ack carries an fd");
		goto fail;
	}
	if ((rc = inpod_ack_decode(buf, (size_t)n, text, sizeof(text), eb)) < 0) {
		errbuf_prefix(eb, "recv");
		goto fail;
	}
	/* A nack: eb holds ztunnel's text as is, for the caller to log or report. */
	if (text[0])
		return errbuf_set(eb, E_DENIED, "%s", text);
	return 0;
fail:
	if (r->uid[0] && r->type != INPOD_SNAPSHOT_SENT)
		errbuf_prefix(eb, "%s %s", t, r->uid);
	else
		errbuf_prefix(eb, "%s", t);
	return rc;
}
