/* IP addresses and CIDRs, TCP listeners, accept and connect helpers, and socket options. */
#ifndef AMBIENT_NET_H
#define AMBIENT_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "pkg/base/base.h"
#include "pkg/ev/ev.h"

/*
 * Decisions:
 * - struct net_addr holds only IPv4/IPv6 (a union of sockaddr_in/_in6, 32 bytes) rather than a
 *   128-byte sockaddr_storage: a proxy keeps several per connection, and unix sockets are not
 *   addressed through it. `sa` and `len` pass straight to bind/connect.
 * - IPv4-mapped IPv6 addresses (::ffff:a.b.c.d), which a dual-stack listener reports for IPv4
 *   peers, are converted to plain IPv4 by net_accept(), net_sock_local/peer() and the CIDR
 *   matchers, so "10.0.0.0/8" matches such a peer and logs show 10.1.2.3, not ::ffff:10.1.2.3.
 *   net_ip_parse() keeps what it was given.
 * - ":15000" means every interface: [::] with IPV6_V6ONLY off (IPv4 and IPv6), falling back to
 *   0.0.0.0 on hosts without IPv6. "localhost" means 127.0.0.1; no other name is resolved here.
 * - CIDRs with host bits set ("10.1.2.3/8") are accepted, as Istio does, and stored masked
 *   (10.0.0.0/8); net_cidr_parse() returns 1 in that case so callers can warn.
 * - Formatting follows RFC 5952 (lower case, longest zero run compressed, never a single zero
 *   field) with our own code, so musl and glibc builds print the same text.
 * - Errors: the functions return -E_* (see net_err_from_errno) and, where an errbuf is taken,
 *   a message naming the operation and the address: "connect 127.0.0.1:8080: connection
 *   refused".
 */

#define NET_ADDR_STRLEN 64 /* "[ffff:...:ffff%4294967295]:65535" */
#define NET_IP_STRLEN 48
#define NET_CIDR_STRLEN 52
#define NET_DEFAULT_BACKLOG 4096 /* the kernel caps it at net.core.somaxconn */

/* An IPv4 or IPv6 socket address; len == 0 means unset. */
struct net_addr {
	union {
		struct sockaddr sa;
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
	};
	socklen_t len;
};

/* An IP address without port; v4 uses the first 4 bytes of b. */
struct net_ip {
	sa_family_t family; /* AF_INET or AF_INET6 */
	uint8_t b[16];
};

struct net_cidr {
	struct net_ip ip; /* host bits are always zero */
	uint8_t prefix;	  /* 0..32 or 0..128 */
};

/* ---- addresses ------------------------------------------------------------------------------- */

/* Parses "1.2.3.4:80", "[::1]:80", "[fe80::1%eth0]:80", ":15000" (all interfaces),
 * "localhost:15000" (127.0.0.1). Port 0 is allowed (kernel picks). -E_PARSE with e.g.
 * `address "::1:80": IPv6 addresses need brackets, as in [::1]:80`. */
int net_addr_parse(struct net_addr *a, const char *s, struct errbuf *eb);
/* "1.2.3.4:80", "[::1]:80", "[fe80::1%2]:80"; "-" when unset. Returns out. */
char *net_addr_format(const struct net_addr *a, char *out, size_t cap);
/* From a kernel sockaddr; -E_UNSUPP for families other than IPv4/IPv6. Unmaps v4-mapped. */
int net_addr_from_sockaddr(struct net_addr *a, const struct sockaddr *sa, socklen_t len);
void net_addr_from_ip(struct net_addr *a, const struct net_ip *ip, uint16_t port);
void net_addr_ip(const struct net_addr *a, struct net_ip *ip);
uint16_t net_addr_port(const struct net_addr *a);
void net_addr_set_port(struct net_addr *a, uint16_t port);
bool net_addr_equal(const struct net_addr *a, const struct net_addr *b);
/* Turns ::ffff:a.b.c.d:p into a.b.c.d:p; other addresses are left alone. */
void net_addr_unmap(struct net_addr *a);

/* ---- IPs and CIDRs --------------------------------------------------------------------------- */

/* "10.1.2.3" or "fd00::1" (no brackets, no zone, no port). -E_PARSE naming the input. */
int net_ip_parse(struct net_ip *ip, const char *s, struct errbuf *eb);
char *net_ip_format(const struct net_ip *ip, char *out, size_t cap);
bool net_ip_equal(const struct net_ip *a, const struct net_ip *b);
/* "10.0.0.0/8", "::/0", or a bare IP (= /32 or /128). Returns 0, or 1 if host bits were set
 * and have been cleared; -E_PARSE naming the input. */
int net_cidr_parse(struct net_cidr *c, const char *s, struct errbuf *eb);
char *net_cidr_format(const struct net_cidr *c, char *out, size_t cap);
/* True if ip is inside c. Families must agree after unmapping: an IPv4 address never matches
 * an IPv6 CIDR, so "::/0" matches all IPv6 and no IPv4, "0.0.0.0/0" all IPv4 and no IPv6. */
bool net_cidr_match(const struct net_cidr *c, const struct net_ip *ip);
bool net_cidr_match_addr(const struct net_cidr *c, const struct net_addr *a);

/* ---- sockets --------------------------------------------------------------------------------- */

/* E_AGAIN (EAGAIN/EINPROGRESS), E_TIMEOUT, E_CLOSED (refused/reset/pipe), E_LIMIT (fd or
 * buffer exhaustion), E_PERM, E_EXIST (address in use), E_INVAL (address not available),
 * E_UNSUPP, E_NOTFOUND, else E_IO; returned negated. */
int net_err_from_errno(int e);

struct net_listen_opts {
	int backlog;	  /* 0: NET_DEFAULT_BACKLOG */
	bool reuseport;	  /* SO_REUSEPORT: one listener per worker on the same port */
	bool v6only;	  /* [::] accepts IPv6 only (default: IPv4 too) */
	bool transparent; /* IP_TRANSPARENT: accept for non-local addresses (TPROXY) */
	uint32_t mark;	  /* SO_MARK on the listener (0: none) */
	/* With in_netns: the socket is made inside that network namespace (an fd of
	 * /proc/PID/ns/net or /var/run/netns/X) and stays there; see net_netns_socket(). */
	bool in_netns;
	int netns_fd;
};

/* A non-blocking, close-on-exec, SO_REUSEADDR listening TCP socket. opts may be NULL.
 * Returns the fd or -E_* with "listen 127.0.0.1:15000: address already in use". */
int net_listen(const struct net_addr *a, const struct net_listen_opts *opts, struct errbuf *eb);
/* accept4(NONBLOCK|CLOEXEC). Returns the fd and the (unmapped) peer address (peer may be NULL).
 * Transient network errors and aborted handshakes are skipped. -E_AGAIN when the queue is
 * empty, -E_LIMIT when out of fds or memory (pause accepting), -E_IO otherwise. */
int net_accept(int lfd, struct net_addr *peer);

struct net_connect_opts {
	uint32_t mark;		      /* SO_MARK (0: none), e.g. 1337 to bypass redirection */
	const struct net_addr *local; /* bind to this source first (port 0: kernel picks late) */
	bool transparent;	      /* IP_TRANSPARENT, to bind a non-local source address */
	bool nodelay;		      /* TCP_NODELAY */
	bool in_netns;		      /* make the socket inside netns_fd (as for listeners) */
	int netns_fd;
};

#define NET_INPROGRESS 1
/* Starts a non-blocking connect; opts may be NULL. Stores the fd (non-blocking, CLOEXEC) in
 * *fd and returns 0 if already connected, NET_INPROGRESS if the handshake continues (wait for
 * EV_WRITE, then call net_connect_finish), or -E_* with no fd left open. */
int net_connect_start(const struct net_addr *dst, const struct net_connect_opts *opts, int *fd,
		      struct errbuf *eb);
/* Completes a connect after the fd became writable (or reported an error): 0 when connected,
 * -E_AGAIN if still in progress, else -E_* with "connect 10.0.0.1:80: connection refused".
 * The fd stays open either way; the caller closes it on failure. */
int net_connect_finish(int fd, const struct net_addr *dst, struct errbuf *eb);
/* A blocking connect bounded by timeout_ms (poll), for simple clients (CLI, probes). Returns a
 * connected fd in blocking mode (CLOEXEC), or -E_TIMEOUT ("connect ...: timed out after 500
 * ms") or another -E_*. */
int net_connect_timeout(const struct net_addr *dst, int timeout_ms,
			const struct net_connect_opts *opts, struct errbuf *eb);

/* Socket options: 0 or -E_* with errno preserved. */
int net_sock_set_nodelay(int fd, bool on);
/* SO_KEEPALIVE with TCP_KEEPIDLE/KEEPINTVL/KEEPCNT; idle_s <= 0 turns keepalive off. */
int net_sock_set_keepalive(int fd, int idle_s, int interval_s, int count);
/* SO_MARK (needs CAP_NET_ADMIN: -E_PERM otherwise). */
int net_sock_set_mark(int fd, uint32_t mark);
/* Local and peer addresses, unmapped. */
int net_sock_local(int fd, struct net_addr *a);
int net_sock_peer(int fd, struct net_addr *a);
/* The destination a REDIRECTed connection was sent to (SO_ORIGINAL_DST at SOL_IP for IPv4 and
 * v4-mapped sockets, IP6T_SO_ORIGINAL_DST at SOL_IPV6 for IPv6). -E_NOTFOUND if conntrack has
 * no entry, -E_UNSUPP without conntrack, each with a message. */
int net_sock_original_dst(int fd, struct net_addr *a, struct errbuf *eb);
/* Closes with SO_LINGER 0 so the peer sees a RST (to propagate a reset through the proxy). */
void net_sock_abort(int fd);

/* ---- network namespaces ------------------------------------------------------------------------
 * A socket belongs to the netns its creating thread was in when it called socket(), for life.
 * These switch only the calling thread (setns(CLONE_NEWNET)), then switch back to the netns the
 * process started in; they need CAP_SYS_ADMIN. */

/* socket() inside the netns of ns_fd (ns_fd < 0: here). CLOEXEC is added. Returns the fd or
 * -E_* ("setns into the workload netns: operation not permitted"). */
int net_netns_socket(int ns_fd, int domain, int type, int proto, struct errbuf *eb);
/* Runs fn(arg) with the calling thread inside ns_fd's netns and returns its result; -E_* if
 * entering failed. Switching back cannot fail in practice: if it does the process aborts rather
 * than go on in the wrong namespace. */
int net_netns_run(int ns_fd, int (*fn)(void *arg), void *arg, struct errbuf *eb);
/* The inode of a netns fd (st_ino of fstat), to tell namespaces apart; 0 on error. */
uint64_t net_netns_inode(int ns_fd);

/* ---- listener on a loop ----------------------------------------------------------------------
 * Accepts up to `batch` connections per loop iteration (fair to established connections) and,
 * when the process runs out of fds, stops accepting for NET_ACCEPT_PAUSE_MS instead of spinning
 * on a listener that stays readable. */

#define NET_ACCEPT_BATCH 64
#define NET_ACCEPT_PAUSE_MS 100

struct net_listener;
/* Owns fd from here on. The callback may stop the listener, and even free it. */
typedef void (*net_accept_fn)(struct net_listener *l, int fd, const struct net_addr *peer);

struct net_listener {
	struct ev_io io;
	struct ev_timer pause;
	struct ev_loop *loop;
	net_accept_fn cb;
	void *arg;	      /* for the callback's use */
	struct net_addr addr; /* the bound address, with the port the kernel chose */
	unsigned batch;	      /* accepts per iteration; 0 means NET_ACCEPT_BATCH */
	bool *alive;	      /* set to false by stop while the accept loop runs */
	uint64_t accepted;    /* connections accepted */
	uint64_t pauses;      /* times fd exhaustion paused accepting */
};

/* net_listen() + start accepting on loop. */
int net_listener_start(struct net_listener *l, struct ev_loop *loop, const struct net_addr *a,
		       const struct net_listen_opts *opts, net_accept_fn cb, void *arg,
		       struct errbuf *eb);
/* Starts accepting on an existing listening fd (made in another netns, inherited, ...); takes
 * ownership of fd, even on failure. */
int net_listener_adopt(struct net_listener *l, struct ev_loop *loop, int fd, net_accept_fn cb,
		       void *arg, struct errbuf *eb);
/* Stops accepting and closes the socket. A zeroed or stopped listener is a no-op. */
void net_listener_stop(struct net_listener *l);

#endif
