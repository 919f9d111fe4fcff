/* Tests for address/CIDR parsing and matching, listeners, accept, connect and socket options. */
#include "pkg/net/net.h"
#include "test/unit.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

static char fmtbuf[NET_ADDR_STRLEN];

static const char *fmt(const struct net_addr *a)
{
	return net_addr_format(a, fmtbuf, sizeof(fmtbuf));
}

/* Parses s and returns its formatted form (or the error message). */
static const char *roundtrip(const char *s)
{
	static char out[ERRBUF_SIZE + 16];
	struct net_addr a;
	struct errbuf eb;

	if (net_addr_parse(&a, s, &eb) < 0)
		snprintf(out, sizeof(out), "error: %s", eb.msg);
	else
		net_addr_format(&a, out, sizeof(out));
	return out;
}

/* ---- addresses ------------------------------------------------------------------------------- */

TEST(addr_parse_accepts_the_documented_forms)
{
	struct net_addr a;

	CHECK_STR(roundtrip("1.2.3.4:80"), "1.2.3.4:80");
	CHECK_STR(roundtrip("[::1]:80"), "[::1]:80");
	CHECK_STR(roundtrip(":15000"), "[::]:15000");
	CHECK_STR(roundtrip("0.0.0.0:15020"), "0.0.0.0:15020");
	CHECK_STR(roundtrip("localhost:15000"), "127.0.0.1:15000");
	CHECK_STR(roundtrip("LocalHost:1"), "127.0.0.1:1");
	CHECK_STR(roundtrip("127.0.0.1:0"), "127.0.0.1:0");
	CHECK_STR(roundtrip("[2001:DB8::1]:65535"), "[2001:db8::1]:65535");
	CHECK_STR(roundtrip("[fe80::1%1]:80"), "[fe80::1%1]:80");
	CHECK_STR(roundtrip("[::ffff:10.0.0.1]:8080"), "[::ffff:10.0.0.1]:8080");

	REQUIRE(net_addr_parse(&a, "10.1.2.3:8080", NULL) == 0);
	CHECK_INT(a.sa.sa_family, AF_INET);
	CHECK_INT(a.len, sizeof(struct sockaddr_in));
	CHECK_INT(net_addr_port(&a), 8080);
	net_addr_set_port(&a, 9);
	CHECK_STR(fmt(&a), "10.1.2.3:9");
	REQUIRE(net_addr_parse(&a, ":1", NULL) == 0);
	CHECK_INT(a.sa.sa_family, AF_INET6);
	CHECK_INT(a.len, sizeof(struct sockaddr_in6));
	memset(&a, 0, sizeof(a));
	CHECK_STR(fmt(&a), "-");
}

TEST(addr_parse_errors_name_the_input)
{
	CHECK_STR(roundtrip(""), "error: address \"\": empty (expected host:port)");
	CHECK_STR(roundtrip("1.2.3.4"),
		  "error: address \"1.2.3.4\": missing port (expected host:port)");
	CHECK_STR(roundtrip("1.2.3.4:"), "error: address \"1.2.3.4:\": missing port after ':'");
	CHECK_STR(roundtrip("1.2.3.4:99999"),
		  "error: address \"1.2.3.4:99999\": port \"99999\" is not a number in 0..65535");
	CHECK_STR(roundtrip("1.2.3.4:8x"),
		  "error: address \"1.2.3.4:8x\": port \"8x\" is not a number in 0..65535");
	CHECK_STR(roundtrip("1.2.3.4:-1"),
		  "error: address \"1.2.3.4:-1\": port \"-1\" is not a number in 0..65535");
	CHECK_STR(roundtrip("fe80::1:80"),
		  "error: address \"fe80::1:80\": missing port (IPv6 addresses need brackets, as "
		  "in [fe80::1:80]:port)");
	CHECK_STR(roundtrip("fe80::g:80"),
		  "error: address \"fe80::g:80\": IPv6 addresses need brackets, as in "
		  "[fe80::g]:port");
	CHECK_STR(roundtrip("example.com:80"),
		  "error: address \"example.com:80\": \"example.com\" is not an IP address (only "
		  "localhost is resolved)");
	CHECK_STR(roundtrip("1.2.3.256:80"),
		  "error: address \"1.2.3.256:80\": \"1.2.3.256\" is not an IP address (only "
		  "localhost is resolved)");
	CHECK_STR(roundtrip("[::1"), "error: address \"[::1\": missing ']'");
	CHECK_STR(roundtrip("[::1]80"),
		  "error: address \"[::1]80\": missing port (expected [ip]:port)");
	CHECK_STR(roundtrip("[::1]"),
		  "error: address \"[::1]\": missing port (expected [ip]:port)");
	CHECK_STR(
		roundtrip("[1.2.3.4]:80"),
		"error: address \"[1.2.3.4]:80\": brackets are only for IPv6 (write 1.2.3.4:port)");
	CHECK_STR(roundtrip("[nope]:80"),
		  "error: address \"[nope]:80\": \"nope\" is not an IPv6 address");
	CHECK_STR(roundtrip("[fe80::1%]:80"),
		  "error: address \"[fe80::1%]:80\": empty zone after '%'");
	CHECK_STR(roundtrip("[fe80::1%no-such-if9]:80"),
		  "error: address \"[fe80::1%no-such-if9]:80\": unknown interface \"no-such-if9\"");

	struct net_addr a;
	struct errbuf eb;
	CHECK_INT(net_addr_parse(&a, "x", &eb), -E_PARSE);
	CHECK_INT(eb.code, E_PARSE);
	CHECK_INT(a.len, 0);
	CHECK_INT(net_addr_parse(&a, NULL, NULL), -E_PARSE);
}

TEST(addr_unmap_and_equal)
{
	struct net_addr a, b;

	REQUIRE(net_addr_parse(&a, "[::ffff:192.0.2.7]:443", NULL) == 0);
	REQUIRE(net_addr_parse(&b, "192.0.2.7:443", NULL) == 0);
	CHECK(!net_addr_equal(&a, &b));
	net_addr_unmap(&a);
	CHECK_STR(fmt(&a), "192.0.2.7:443");
	CHECK(net_addr_equal(&a, &b));
	net_addr_set_port(&b, 444);
	CHECK(!net_addr_equal(&a, &b));
	REQUIRE(net_addr_parse(&a, "[::1]:443", NULL) == 0);
	net_addr_unmap(&a); /* not mapped: unchanged */
	CHECK_STR(fmt(&a), "[::1]:443");
}

/* ---- IPs and CIDRs --------------------------------------------------------------------------- */

static const char *ip_rt(const char *s)
{
	static char out[ERRBUF_SIZE + 16];
	struct net_ip ip;
	struct errbuf eb;

	if (net_ip_parse(&ip, s, &eb) < 0)
		snprintf(out, sizeof(out), "error: %s", eb.msg);
	else
		net_ip_format(&ip, out, sizeof(out));
	return out;
}

TEST(ip_format_follows_rfc5952)
{
	CHECK_STR(ip_rt("10.0.0.1"), "10.0.0.1");
	CHECK_STR(ip_rt("2001:DB8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
	CHECK_STR(ip_rt("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1"); /* one zero: kept */
	CHECK_STR(ip_rt("1:0:0:2:0:0:3:4"), "1::2:0:0:3:4");		  /* tie: first run */
	CHECK_STR(ip_rt("0:0:1:0:0:0:1:0"), "0:0:1::1:0");		  /* longest run */
	CHECK_STR(ip_rt("::"), "::");
	CHECK_STR(ip_rt("::1"), "::1");
	CHECK_STR(ip_rt("1::"), "1::");
	CHECK_STR(ip_rt("2001:0db8:0000:0000:0000:ff00:0042:8329"), "2001:db8::ff00:42:8329");
	CHECK_STR(ip_rt("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
	CHECK_STR(ip_rt(""), "error: IP address \"\": empty");
	CHECK_STR(ip_rt("1.2.3"), "error: IP address \"1.2.3\": not an IPv4 or IPv6 address");
	CHECK_STR(ip_rt("01.2.3.4"), "error: IP address \"01.2.3.4\": not an IPv4 or IPv6 address");
	CHECK_STR(ip_rt("[::1]"), "error: IP address \"[::1]\": no brackets here (write ::1)");
	CHECK_STR(ip_rt("fe80::1%eth0"),
		  "error: IP address \"fe80::1%eth0\": a zone (%...) is not allowed");

	struct net_ip a, b;
	REQUIRE(net_ip_parse(&a, "fd00::1", NULL) == 0 && net_ip_parse(&b, "FD00:0::1", NULL) == 0);
	CHECK(net_ip_equal(&a, &b));
	REQUIRE(net_ip_parse(&b, "fd00::2", NULL) == 0);
	CHECK(!net_ip_equal(&a, &b));
}

static bool match(const char *cidr, const char *ip)
{
	struct net_cidr c;
	struct net_ip i;
	struct errbuf eb;

	if (net_cidr_parse(&c, cidr, &eb) < 0 || net_ip_parse(&i, ip, &eb) < 0) {
		unit_fail(__FILE__, __LINE__, "%s", eb.msg);
		return false;
	}
	return net_cidr_match(&c, &i);
}

TEST(cidr_match_edge_cases)
{
	CHECK(match("10.0.0.0/8", "10.255.1.1"));
	CHECK(!match("10.0.0.0/8", "11.0.0.1"));
	CHECK(match("192.168.0.0/20", "192.168.15.255"));
	CHECK(!match("192.168.0.0/20", "192.168.16.0"));
	CHECK(match("0.0.0.0/0", "255.255.255.255"));
	CHECK(match("0.0.0.0/0", "0.0.0.0"));
	CHECK(!match("0.0.0.0/0", "::1")); /* families never mix */
	CHECK(match("::/0", "::1"));
	CHECK(match("::/0", "2001:db8::1"));
	CHECK(!match("::/0", "1.2.3.4"));
	CHECK(match("1.2.3.4", "1.2.3.4")); /* bare IP = /32 */
	CHECK(!match("1.2.3.4", "1.2.3.5"));
	CHECK(match("1.2.3.4/32", "1.2.3.4"));
	CHECK(!match("1.2.3.4/32", "1.2.3.5"));
	CHECK(match("::1", "::1")); /* bare IP = /128 */
	CHECK(!match("::1", "::2"));
	CHECK(match("2001:db8::/127", "2001:db8::1"));
	CHECK(!match("2001:db8::/127", "2001:db8::2"));
	CHECK(match("fc00::/7", "fd12:3456::1"));
	CHECK(!match("fc00::/7", "fe80::1"));
	/* a v4-mapped address is an IPv4 address for matching purposes */
	CHECK(match("10.0.0.0/8", "::ffff:10.9.8.7"));
	CHECK(!match("::/0", "::ffff:10.9.8.7"));
	CHECK(match("::ffff:10.0.0.0/104", "10.1.1.1"));

	struct net_cidr c;
	struct net_addr a;
	REQUIRE(net_cidr_parse(&c, "127.0.0.0/8", NULL) == 0);
	REQUIRE(net_addr_parse(&a, "127.0.0.1:80", NULL) == 0);
	CHECK(net_cidr_match_addr(&c, &a));
	REQUIRE(net_addr_parse(&a, "[::1]:80", NULL) == 0);
	CHECK(!net_cidr_match_addr(&c, &a));
}

static const char *cidr_rt(const char *s, int want_rc)
{
	static char out[ERRBUF_SIZE + 16];
	struct net_cidr c;
	struct errbuf eb;
	int rc = net_cidr_parse(&c, s, &eb);

	if (rc < 0) {
		snprintf(out, sizeof(out), "error: %s", eb.msg);
		return out;
	}
	if (rc != want_rc)
		unit_fail(__FILE__, __LINE__, "net_cidr_parse(%s) = %d, want %d", s, rc, want_rc);
	return net_cidr_format(&c, out, sizeof(out));
}

TEST(cidr_parse_masks_host_bits_and_reports_errors)
{
	CHECK_STR(cidr_rt("10.0.0.0/8", 0), "10.0.0.0/8");
	CHECK_STR(cidr_rt("10.1.2.3/8", 1), "10.0.0.0/8");
	CHECK_STR(cidr_rt("192.168.31.1/20", 1), "192.168.16.0/20");
	CHECK_STR(cidr_rt("1.2.3.4", 0), "1.2.3.4/32");
	CHECK_STR(cidr_rt("::", 0), "::/128");
	CHECK_STR(cidr_rt("::/0", 0), "::/0");
	CHECK_STR(cidr_rt("2001:db8::1/32", 1), "2001:db8::/32");
	CHECK_STR(cidr_rt("::ffff:10.1.0.0/112", 0), "10.1.0.0/16");
	CHECK_STR(cidr_rt("0.0.0.0/0", 0), "0.0.0.0/0");
	CHECK_STR(cidr_rt("10.0.0.0/33", 0),
		  "error: CIDR \"10.0.0.0/33\": prefix length 33 out of range 0..32");
	CHECK_STR(cidr_rt("::/129", 0),
		  "error: CIDR \"::/129\": prefix length 129 out of range 0..128");
	CHECK_STR(cidr_rt("10.0.0.0/", 0),
		  "error: CIDR \"10.0.0.0/\": prefix length \"\" is not a number in 0..32");
	CHECK_STR(cidr_rt("10.0.0.0/-1", 0),
		  "error: CIDR \"10.0.0.0/-1\": prefix length \"-1\" is not a number in 0..32");
	CHECK_STR(cidr_rt("10.0.0.0/8/9", 0),
		  "error: CIDR \"10.0.0.0/8/9\": prefix length \"8/9\" is not a number in 0..32");
	CHECK_STR(cidr_rt("x/8", 0), "error: CIDR \"x/8\": \"x\" is not an IP address");
	CHECK_STR(cidr_rt("", 0), "error: CIDR \"\": empty");
}

/* ---- sockets --------------------------------------------------------------------------------- */

static int listen_loopback(struct net_addr *bound, bool reuseport)
{
	struct net_addr a;
	struct net_listen_opts o = {.reuseport = reuseport};
	struct errbuf eb;
	int fd;

	if (net_addr_parse(&a, "127.0.0.1:0", NULL) < 0)
		return -1;
	fd = net_listen(&a, &o, &eb);
	if (fd < 0) {
		unit_fail(__FILE__, __LINE__, "%s", eb.msg);
		return -1;
	}
	if (net_sock_local(fd, bound) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

TEST(listen_rejects_a_taken_port_unless_reuseport)
{
	struct net_addr a;
	struct net_listen_opts ro = {.reuseport = true};
	struct errbuf eb;
	char want[128];
	int l1, l2, l3;

	l1 = listen_loopback(&a, true);
	REQUIRE(l1 >= 0);
	CHECK(net_addr_port(&a) != 0);
	l2 = net_listen(&a, &ro, &eb);
	CHECK(l2 >= 0); /* second listener on the same port */
	l3 = net_listen(&a, NULL, &eb);
	CHECK_INT(l3, -E_EXIST);
	snprintf(want, sizeof(want), "listen %s: address", fmt(&a));
	CHECK_CONTAINS(eb.msg, want); /* "address already in use" (glibc) / "address in use" */
	CHECK_INT(eb.code, E_EXIST);
	if (l2 >= 0)
		close(l2);
	close(l1);
}

TEST(accept_on_an_empty_queue_says_again)
{
	struct net_addr a;
	int l = listen_loopback(&a, false);

	REQUIRE(l >= 0);
	CHECK_INT(net_accept(l, NULL), -E_AGAIN);
	close(l);
}

static int reserve_closed_port(struct net_addr *a)
{
	/* Bound but not listening: nobody else gets the port, and connects are refused. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || net_addr_parse(a, "127.0.0.1:0", NULL) < 0 || bind(fd, &a->sa, a->len) < 0 ||
	    net_sock_local(fd, a) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

TEST(connect_timeout_to_a_closed_port_is_refused)
{
	struct net_addr a;
	struct errbuf eb;
	char want[128];
	int hold = reserve_closed_port(&a);

	REQUIRE(hold >= 0);
	CHECK_INT(net_connect_timeout(&a, 2000, NULL, &eb), -E_CLOSED);
	snprintf(want, sizeof(want), "connect %s: connection refused", fmt(&a));
	CHECK_STR(eb.msg, want);
	close(hold);
}

TEST(connect_timeout_gives_a_blocking_connected_fd)
{
	struct net_addr a, local, peer;
	struct net_connect_opts o = {.nodelay = true};
	struct errbuf eb;
	int l = listen_loopback(&a, false);
	int c, s, v = 0;
	socklen_t len = sizeof(v);
	char buf[8];

	REQUIRE(l >= 0);
	c = net_connect_timeout(&a, 2000, &o, &eb);
	REQUIRE(c >= 0);
	CHECK((fcntl(c, F_GETFL) & O_NONBLOCK) == 0);
	CHECK((fcntl(c, F_GETFD) & FD_CLOEXEC) != 0);
	CHECK(getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 && v);
	s = net_accept(l, &peer);
	if (s == -E_AGAIN) { /* the handshake completed but accept raced it: wait and retry */
		struct pollfd p = {.fd = l, .events = POLLIN};
		poll(&p, 1, 2000);
		s = net_accept(l, &peer);
	}
	REQUIRE(s >= 0);
	CHECK((fcntl(s, F_GETFL) & O_NONBLOCK) != 0);
	REQUIRE(net_sock_local(c, &local) == 0);
	CHECK(net_addr_equal(&peer, &local));
	REQUIRE(net_sock_peer(c, &peer) == 0);
	CHECK(net_addr_equal(&peer, &a));
	CHECK(write(c, "ping", 4) == 4);
	CHECK(read(s, buf, sizeof(buf)) == 4);
	/* abort: the peer sees a reset, not an orderly EOF */
	net_sock_abort(s);
	CHECK(read(c, buf, sizeof(buf)) < 0 && errno == ECONNRESET);
	close(c);
	close(l);
}

TEST(socket_options_take_effect)
{
	struct net_addr a;
	int l = listen_loopback(&a, false);
	int v = 0, rc;
	socklen_t len = sizeof(v);
	uint32_t mark = 0;

	REQUIRE(l >= 0);
	CHECK_INT(net_sock_set_keepalive(l, 30, 5, 4), 0);
	CHECK(getsockopt(l, SOL_SOCKET, SO_KEEPALIVE, &v, &len) == 0 && v == 1);
	CHECK(getsockopt(l, IPPROTO_TCP, TCP_KEEPIDLE, &v, &len) == 0 && v == 30);
	CHECK(getsockopt(l, IPPROTO_TCP, TCP_KEEPINTVL, &v, &len) == 0 && v == 5);
	CHECK(getsockopt(l, IPPROTO_TCP, TCP_KEEPCNT, &v, &len) == 0 && v == 4);
	CHECK_INT(net_sock_set_keepalive(l, 0, 0, 0), 0);
	CHECK(getsockopt(l, SOL_SOCKET, SO_KEEPALIVE, &v, &len) == 0 && v == 0);
	CHECK_INT(net_sock_set_nodelay(l, true), 0);
	CHECK(getsockopt(l, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 && v == 1);
	/* SO_MARK needs CAP_NET_ADMIN: either it sticks or we get a clean -E_PERM */
	rc = net_sock_set_mark(l, 1337);
	if (rc == 0) {
		len = sizeof(mark);
		CHECK(getsockopt(l, SOL_SOCKET, SO_MARK, &mark, &len) == 0 && mark == 1337);
	} else {
		CHECK_INT(rc, -E_PERM);
	}
	CHECK_INT(net_sock_set_nodelay(-1, true), -E_IO); /* EBADF */
	close(l);
}

TEST(original_dst_reports_conntrack_or_explains)
{
	struct net_addr a, od, local;
	struct errbuf eb;
	int l = listen_loopback(&a, false);
	int c, s;

	REQUIRE(l >= 0);
	c = net_connect_timeout(&a, 2000, NULL, &eb);
	REQUIRE(c >= 0);
	for (int i = 0; i < 200 && (s = net_accept(l, NULL)) == -E_AGAIN; i++)
		usleep(5000);
	REQUIRE(s >= 0);
	REQUIRE(net_sock_local(s, &local) == 0);
	if (net_sock_original_dst(s, &od, &eb) == 0) {
		/* conntrack tracks the flow; not redirected, so the original dst is the local one
		 */
		CHECK(net_addr_equal(&od, &local));
	} else {
		CHECK_CONTAINS(eb.msg, "original destination of connection to ");
		CHECK(eb.code == E_NOTFOUND || eb.code == E_UNSUPP);
	}
	close(s);
	close(c);
	close(l);
}

/* ---- non-blocking connect and a listener on a loop ------------------------------------------- */

struct conn_test {
	struct net_listener l;
	struct ev_io cio;
	struct net_addr dst;
	int cfd;
	int connect_rc;
	int accepted_fd;
	struct net_addr peer;
	bool stop_in_accept;
	struct errbuf eb;
};

static int accept_calls;

static void accept_fn(struct net_listener *l, int fd, const struct net_addr *peer)
{
	struct conn_test *t = l->arg;

	accept_calls++;
	if (t->stop_in_accept) {
		close(fd);
		net_listener_stop(l);
		free(t);
		return;
	}
	t->accepted_fd = fd;
	t->peer = *peer;
}

static void connect_io_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct conn_test *t = ev_container_of(io, struct conn_test, cio);
	int rc;

	(void)events;
	rc = net_connect_finish(io->fd, &t->dst, &t->eb);
	if (rc == -E_AGAIN)
		return;
	t->connect_rc = rc;
	ev_io_set(loop, io, 0);
}

static void guard_cb(struct ev_loop *loop, struct ev_timer *tm)
{
	(void)loop;
	(void)tm;
	unit_fail(__FILE__, __LINE__, "guard timer fired");
}

/* Runs the loop until done(t) or the guard fires. */
static void run_until(struct ev_loop *loop, bool (*done)(const struct conn_test *),
		      const struct conn_test *t)
{
	struct ev_timer guard;

	ev_timer_init(&guard, guard_cb);
	ev_timer_add(loop, &guard, 10000);
	while (!done(t) && ev_timer_active(&guard))
		ev_loop_run_once(loop, -1);
	ev_timer_del(loop, &guard);
}

static bool both_done(const struct conn_test *t)
{
	return t->accepted_fd >= 0 && t->connect_rc != 1;
}

static bool connect_done(const struct conn_test *t)
{
	return t->connect_rc != 1;
}

TEST(listener_on_a_loop_accepts_a_nonblocking_connect)
{
	struct ev_loop *loop = ev_loop_new(NULL);
	struct conn_test t = {.cfd = -1, .connect_rc = 1, .accepted_fd = -1};
	struct net_addr a, local;
	struct errbuf eb;
	int rc;

	REQUIRE(loop);
	REQUIRE(net_addr_parse(&a, "127.0.0.1:0", NULL) == 0);
	REQUIRE(net_listener_start(&t.l, loop, &a, NULL, accept_fn, &t, &eb) == 0);
	CHECK_STR(fmt(&a), "127.0.0.1:0");
	CHECK(net_addr_port(&t.l.addr) != 0);
	t.dst = t.l.addr;
	rc = net_connect_start(&t.dst, NULL, &t.cfd, &eb);
	REQUIRE(rc >= 0);
	if (rc == 0)
		t.connect_rc = 0;
	ev_io_init(&t.cio, t.cfd, connect_io_cb);
	REQUIRE(ev_io_start(loop, &t.cio, rc == NET_INPROGRESS ? EV_WRITE : 0) == 0);
	run_until(loop, both_done, &t);
	CHECK_INT(t.connect_rc, 0);
	REQUIRE(t.accepted_fd >= 0);
	REQUIRE(net_sock_local(t.cfd, &local) == 0);
	CHECK(net_addr_equal(&t.peer, &local));
	CHECK_INT(t.l.accepted, 1);
	ev_io_stop(loop, &t.cio);
	close(t.cfd);
	close(t.accepted_fd);
	net_listener_stop(&t.l);
	net_listener_stop(&t.l); /* no-op */
	ev_loop_free(loop);
}

TEST(nonblocking_connect_to_a_closed_port_fails_in_finish_or_start)
{
	struct ev_loop *loop = ev_loop_new(NULL);
	struct conn_test t = {.cfd = -1, .connect_rc = 1, .accepted_fd = 0};
	struct net_addr a;
	char want[128];
	int rc, hold = reserve_closed_port(&a);

	REQUIRE(loop && hold >= 0);
	t.dst = a;
	rc = net_connect_start(&a, NULL, &t.cfd, &t.eb);
	if (rc == NET_INPROGRESS) {
		ev_io_init(&t.cio, t.cfd, connect_io_cb);
		REQUIRE(ev_io_start(loop, &t.cio, EV_WRITE) == 0);
		run_until(loop, connect_done, &t);
		ev_io_stop(loop, &t.cio);
		close(t.cfd);
		rc = t.connect_rc;
	}
	CHECK_INT(rc, -E_CLOSED);
	snprintf(want, sizeof(want), "connect %s: connection refused", fmt(&a));
	CHECK_STR(t.eb.msg, want);
	close(hold);
	ev_loop_free(loop);
}

TEST(listener_may_be_stopped_and_freed_by_its_callback)
{
	struct ev_loop *loop = ev_loop_new(NULL);
	struct conn_test *t = calloc(1, sizeof(*t));
	struct net_addr a, dst;
	struct errbuf eb;
	int c1, c2;

	REQUIRE(loop && t);
	accept_calls = 0;
	t->stop_in_accept = true;
	t->accepted_fd = -1;
	REQUIRE(net_addr_parse(&a, "127.0.0.1:0", NULL) == 0);
	REQUIRE(net_listener_start(&t->l, loop, &a, NULL, accept_fn, t, &eb) == 0);
	dst = t->l.addr;
	/* Two queued connections: the first accept frees the listener, the batch must stop. */
	c1 = net_connect_timeout(&dst, 2000, NULL, &eb);
	c2 = net_connect_timeout(&dst, 2000, NULL, &eb);
	REQUIRE(c1 >= 0 && c2 >= 0);
	for (int i = 0; i < 5 && accept_calls == 0; i++)
		ev_loop_run_once(loop, 1000);
	ev_loop_run_once(loop, 0);
	/* ASan reports any use of the freed listener after the first callback. */
	CHECK_INT(accept_calls, 1);
	close(c1);
	close(c2);
	ev_loop_free(loop);
}

TEST(ipv6_and_dual_stack_listeners)
{
	struct net_addr a, bound, peer, dst;
	struct errbuf eb;
	int l, c, s;

	REQUIRE(net_addr_parse(&a, "[::]:0", NULL) == 0);
	l = net_listen(&a, NULL, &eb);
	if (l < 0 && (eb.code == E_UNSUPP || eb.code == E_INVAL)) {
		fprintf(stderr, "    (skipped: no IPv6 here: %s)\n", eb.msg);
		return;
	}
	REQUIRE(l >= 0);
	REQUIRE(net_sock_local(l, &bound) == 0);
	/* IPv4 client on a dual-stack listener: the peer comes back unmapped. */
	REQUIRE(net_addr_parse(&dst, "127.0.0.1:0", NULL) == 0);
	net_addr_set_port(&dst, net_addr_port(&bound));
	c = net_connect_timeout(&dst, 2000, NULL, &eb);
	REQUIRE(c >= 0);
	for (int i = 0; i < 200 && (s = net_accept(l, &peer)) == -E_AGAIN; i++)
		usleep(5000);
	REQUIRE(s >= 0);
	CHECK_INT(peer.sa.sa_family, AF_INET);
	CHECK_CONTAINS(fmt(&peer), "127.0.0.1:");
	close(s);
	close(c);
	/* IPv6 loopback client */
	REQUIRE(net_addr_parse(&dst, "[::1]:0", NULL) == 0);
	net_addr_set_port(&dst, net_addr_port(&bound));
	c = net_connect_timeout(&dst, 2000, NULL, &eb);
	if (c >= 0) {
		for (int i = 0; i < 200 && (s = net_accept(l, &peer)) == -E_AGAIN; i++)
			usleep(5000);
		REQUIRE(s >= 0);
		CHECK_CONTAINS(fmt(&peer), "[::1]:");
		close(s);
		close(c);
	}
	close(l);
}
