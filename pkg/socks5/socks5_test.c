/* Tests for the SOCKS5 server core: every address type, every split, each error, and curl. */
#include "pkg/socks5/socks5.h"
#include "test/unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------------------------------- */

struct result {
	int rc;		 /* last push result if negative, else 0 */
	size_t consumed; /* handshake bytes consumed */
	uint8_t out[600];
	size_t out_n;
	int state;
	int connects; /* SOCKS5_EV_CONNECT events seen */
	char reason[128];
	struct socks5_target t;
	bool has_target;
};

static void drain(struct socks5 *s, struct result *r)
{
	const uint8_t *p;
	size_t n;

	while (socks5_pull(s, &p, &n)) {
		if (r->out_n + n <= sizeof(r->out)) {
			memcpy(r->out + r->out_n, p, n);
			r->out_n += n;
		}
		socks5_pull_done(s, n);
	}
}

/* Feeds in[0..n) in pieces: split > 0 cuts once at `split`, step > 0 feeds step bytes at a time,
 * both 0 feeds everything at once. Stops at an error or once the request is complete. */
static void feed(struct socks5 *s, const uint8_t *in, size_t n, size_t split, size_t step,
		 struct result *r)
{
	size_t off = 0;

	memset(r, 0, sizeof(*r));
	while (off < n) {
		size_t k = n - off;
		int rc;
		if (split && off < split)
			k = split - off;
		else if (step)
			k = MIN(k, step);
		rc = socks5_push(s, in + off, k);
		drain(s, r);
		if (rc < 0) {
			r->rc = rc;
			off = 0; /* nothing belongs to a tunnel */
			break;
		}
		if (socks5_event(s) == SOCKS5_EV_CONNECT)
			r->connects++;
		off += (size_t)rc;
		if ((size_t)rc < k)
			break; /* the rest belongs to the tunnel */
	}
	r->consumed = off;
	r->state = socks5_state(s);
	snprintf(r->reason, sizeof(r->reason), "%s", socks5_reason(s));
	if (socks5_target(s)) {
		r->t = *socks5_target(s);
		r->has_target = true;
	}
}

static void run(const uint8_t *in, size_t n, size_t split, size_t step, struct result *r)
{
	struct socks5 s;

	socks5_init(&s);
	feed(&s, in, n, split, step, r);
}

static bool same(const struct result *a, const struct result *b)
{
	return a->rc == b->rc && a->consumed == b->consumed && a->out_n == b->out_n &&
	       memcmp(a->out, b->out, a->out_n) == 0 && a->state == b->state &&
	       a->connects == b->connects && strcmp(a->reason, b->reason) == 0 &&
	       a->has_target == b->has_target && memcmp(&a->t, &b->t, sizeof(a->t)) == 0;
}

/* Builds greeting + request for atyp with address bytes a (domain: the name) and port. */
static size_t build(uint8_t *m, uint8_t atyp, const void *a, size_t alen, uint16_t port)
{
	size_t n = 0;

	m[n++] = 5;
	m[n++] = 1;
	m[n++] = 0;
	m[n++] = 5;
	m[n++] = 1;
	m[n++] = 0;
	m[n++] = atyp;
	if (atyp == SOCKS5_ATYP_DOMAIN)
		m[n++] = (uint8_t)alen;
	memcpy(m + n, a, alen);
	n += alen;
	m[n++] = (uint8_t)(port >> 8);
	m[n++] = (uint8_t)port;
	return n;
}

static const uint8_t SEL_OK[2] = {5, 0};
static const uint8_t SEL_REJECT[2] = {5, 0xff};

/* Expects method reply 05 00 followed by a REP `rep` reply with a zero IPv4 address. */
static bool out_is_request_error(const struct result *r, uint8_t rep)
{
	const uint8_t want[12] = {5, 0, 5, rep, 0, 1, 0, 0, 0, 0, 0, 0};
	return r->out_n == sizeof(want) && memcmp(r->out, want, sizeof(want)) == 0;
}

/* ---- success paths --------------------------------------------------------------------------- */

TEST(ipv4_connect)
{
	const uint8_t ip[4] = {127, 0, 0, 1};
	uint8_t m[64];
	size_t n = build(m, SOCKS5_ATYP_IPV4, ip, 4, 8080);
	struct socks5 s;
	struct result r;
	struct socks5_target bound = {
		.atyp = SOCKS5_ATYP_IPV4, .addr = {10, 0, 0, 1}, .port = 1234};
	const uint8_t want[10] = {5, 0, 0, 1, 10, 0, 0, 1, 0x04, 0xd2};

	socks5_init(&s);
	CHECK_INT(socks5_state(&s), SOCKS5_STATE_GREETING);
	CHECK(socks5_target(&s) == NULL);
	feed(&s, m, n, 0, 0, &r);
	CHECK_INT(r.rc, 0);
	CHECK_INT(r.consumed, n);
	CHECK_INT(r.connects, 1);
	CHECK_INT(r.state, SOCKS5_STATE_CONNECT);
	REQUIRE(r.out_n == 2);
	CHECK_MEM(r.out, SEL_OK, 2);
	REQUIRE(r.has_target);
	CHECK_INT(r.t.atyp, SOCKS5_ATYP_IPV4);
	CHECK_MEM(r.t.addr, ip, 4);
	CHECK_INT(r.t.port, 8080);
	CHECK_STR(r.reason, "");

	/* Pushing more before the reply consumes nothing. */
	CHECK_INT(socks5_push(&s, (const uint8_t *)"x", 1), 0);
	CHECK_INT(socks5_event(&s), SOCKS5_EV_NONE);
	CHECK_INT(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, &bound), 0);
	CHECK_INT(socks5_state(&s), SOCKS5_STATE_DONE);
	r.out_n = 0;
	drain(&s, &r);
	REQUIRE(r.out_n == sizeof(want));
	CHECK_MEM(r.out, want, sizeof(want));
	CHECK_INT(socks5_push(&s, (const uint8_t *)"GET", 3), 0);
	CHECK_INT(socks5_eof(&s), 0);
	CHECK_INT(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL), -E_STATE);
	CHECK(socks5_target(&s) != NULL);
}

TEST(ipv6_connect)
{
	uint8_t ip[16] = {0};
	uint8_t m[64];
	size_t n;
	struct socks5 s;
	struct result r;
	struct socks5_target bound = {.atyp = SOCKS5_ATYP_IPV6, .port = 443};
	uint8_t want[22] = {5, 0, 0, 4};

	ip[0] = 0xfd;
	ip[15] = 0x42;
	n = build(m, SOCKS5_ATYP_IPV6, ip, 16, 443);
	CHECK_INT(n, 3 + 4 + 16 + 2);
	socks5_init(&s);
	feed(&s, m, n, 0, 0, &r);
	CHECK_INT(r.rc, 0);
	CHECK_INT(r.consumed, n);
	CHECK_INT(r.state, SOCKS5_STATE_CONNECT);
	CHECK_INT(r.t.atyp, SOCKS5_ATYP_IPV6);
	CHECK_MEM(r.t.addr, ip, 16);
	CHECK_INT(r.t.port, 443);

	memcpy(bound.addr, ip, 16);
	memcpy(want + 4, ip, 16);
	want[20] = 0x01;
	want[21] = 0xbb;
	CHECK_INT(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, &bound), 0);
	r.out_n = 0;
	drain(&s, &r);
	REQUIRE(r.out_n == sizeof(want));
	CHECK_MEM(r.out, want, sizeof(want));
}

TEST(domain_connect)
{
	static const char *const good[] = {"example.test", "a",
					   "reviews.default.svc.cluster.local.",
					   "_grpc._tcp.x-y.Z9", "1.2.3.4"};

	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		uint8_t m[300];
		size_t len = strlen(good[i]);
		size_t n = build(m, SOCKS5_ATYP_DOMAIN, good[i], len, 8080);
		struct result r;

		run(m, n, 0, 0, &r);
		CHECK_INT(r.rc, 0);
		CHECK_INT(r.consumed, n);
		CHECK_INT(r.state, SOCKS5_STATE_CONNECT);
		CHECK_INT(r.t.atyp, SOCKS5_ATYP_DOMAIN);
		CHECK_INT(r.t.name_len, len);
		CHECK_STR(r.t.name, good[i]);
		CHECK_INT(r.t.port, 8080);
	}
}

TEST(domain_max_length)
{
	char name[256];
	uint8_t m[300];
	size_t n;
	struct result r;

	/* Four labels of 63 bytes joined by '.' = 255 bytes, the most a length byte allows. */
	memset(name, 'a', 255);
	name[63] = name[127] = name[191] = '.';
	name[255] = '\0';
	n = build(m, SOCKS5_ATYP_DOMAIN, name, 255, 1);
	run(m, n, 0, 0, &r);
	CHECK_INT(r.rc, 0);
	CHECK_INT(r.t.name_len, 255);
	CHECK_STR(r.t.name, name);
	CHECK_INT(r.t.port, 1);
}

TEST(method_among_others)
{
	const uint8_t m[] = {5, 3, 2, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 0, 80};
	struct result r;

	run(m, sizeof(m), 0, 0, &r);
	CHECK_INT(r.rc, 0);
	CHECK_INT(r.state, SOCKS5_STATE_CONNECT);
	REQUIRE(r.out_n == 2);
	CHECK_MEM(r.out, SEL_OK, 2);
	CHECK_INT(r.t.port, 80);
}

/* Every single cut, and one byte at a time, gives exactly what one push gives. */
TEST(split_every_boundary)
{
	const uint8_t ip4[4] = {192, 168, 1, 2};
	uint8_t ip6[16];
	uint8_t m[3][400];
	size_t n[3];
	const char *payload = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

	for (int i = 0; i < 16; i++)
		ip6[i] = (uint8_t)(i * 17);
	n[0] = build(m[0], SOCKS5_ATYP_IPV4, ip4, 4, 80);
	n[1] = build(m[1], SOCKS5_ATYP_IPV6, ip6, 16, 65535);
	n[2] = build(m[2], SOCKS5_ATYP_DOMAIN, "productpage.bookinfo.svc", 24, 9080);
	for (int i = 0; i < 3; i++) {
		struct result whole, r;
		size_t hs = n[i];

		memcpy(m[i] + n[i], payload, strlen(payload));
		n[i] += strlen(payload);
		run(m[i], n[i], 0, 0, &whole);
		CHECK_INT(whole.rc, 0);
		CHECK_INT(whole.consumed, hs);
		CHECK_INT(whole.connects, 1);
		for (size_t k = 1; k < n[i]; k++) {
			run(m[i], n[i], k, 0, &r);
			if (!same(&whole, &r))
				unit_fail(__FILE__, __LINE__, "case %d split at %zu differs", i, k);
		}
		for (size_t step = 1; step <= 3; step++) {
			run(m[i], n[i], 0, step, &r);
			if (!same(&whole, &r))
				unit_fail(__FILE__, __LINE__, "case %d step %zu differs", i, step);
		}
	}
}

/* Greeting, request and payload in one push: only the handshake is consumed. */
TEST(pipelined_payload)
{
	uint8_t m[128];
	size_t hs = build(m, SOCKS5_ATYP_DOMAIN, "example.test", 12, 8080);
	const char *payload = "GET / HTTP/1.1\r\n\r\n";
	size_t n = hs + strlen(payload);
	struct socks5 s;
	int rc;

	memcpy(m + hs, payload, strlen(payload));
	socks5_init(&s);
	rc = socks5_push(&s, m, n);
	CHECK_INT(rc, hs);
	CHECK_INT(socks5_event(&s), SOCKS5_EV_CONNECT);
	CHECK_INT(socks5_state(&s), SOCKS5_STATE_CONNECT);
	CHECK_MEM(m + rc, payload, strlen(payload));
	CHECK_INT(socks5_push(&s, m + rc, n - (size_t)rc), 0);
	CHECK_INT(socks5_event(&s), SOCKS5_EV_NONE);
	CHECK_INT(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL), 0);
	{
		const uint8_t want[12] = {5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0};
		const uint8_t *p;
		size_t len;
		REQUIRE(socks5_pull(&s, &p, &len));
		REQUIRE(len == sizeof(want));
		CHECK_MEM(p, want, sizeof(want));
		/* Partial writes: the rest stays pending, in order. */
		socks5_pull_done(&s, 5);
		REQUIRE(socks5_pull(&s, &p, &len));
		CHECK_INT(len, 7);
		CHECK_MEM(p, want + 5, 7);
		socks5_pull_done(&s, 100);
		CHECK(!socks5_pull(&s, &p, &len));
		CHECK_INT(len, 0);
	}
}

/* The method selection is queued as soon as the greeting completes, before any request byte. */
TEST(greeting_reply_before_request)
{
	const uint8_t g[] = {5, 1, 0};
	struct socks5 s;
	const uint8_t *p;
	size_t len;

	socks5_init(&s);
	CHECK_INT(socks5_push(&s, g, 2), 2);
	CHECK(!socks5_pull(&s, &p, &len));
	CHECK_INT(socks5_push(&s, g + 2, 1), 1);
	CHECK_INT(socks5_state(&s), SOCKS5_STATE_REQUEST);
	REQUIRE(socks5_pull(&s, &p, &len));
	REQUIRE(len == 2);
	CHECK_MEM(p, SEL_OK, 2);
	CHECK_INT(socks5_push(&s, NULL, 0), 0);
	CHECK_INT(socks5_push(&s, NULL, 1), -E_INVAL);
}

/* ---- errors ---------------------------------------------------------------------------------- */

struct err_case {
	const char *name;
	const uint8_t *in;
	size_t n;
	int rc;
	const char *reason;
	const uint8_t *out; /* NULL: method reply + request reply with REP out_rep */
	size_t out_n;
	uint8_t out_rep;
};

static void check_error(const struct err_case *c)
{
	struct result whole, r;
	struct socks5 s;

	socks5_init(&s);
	feed(&s, c->in, c->n, 0, 0, &whole);
	if (whole.rc != c->rc)
		unit_fail(__FILE__, __LINE__, "%s: rc %d, want %d", c->name, whole.rc, c->rc);
	if (strcmp(whole.reason, c->reason) != 0)
		unit_fail(__FILE__, __LINE__, "%s: reason \"%s\", want \"%s\"", c->name,
			  whole.reason, c->reason);
	if (c->out ? whole.out_n != c->out_n || memcmp(whole.out, c->out, c->out_n) != 0
		   : !out_is_request_error(&whole, c->out_rep))
		unit_fail(__FILE__, __LINE__, "%s: wrong reply bytes (%zu bytes)", c->name,
			  whole.out_n);
	if (whole.state != SOCKS5_STATE_FAILED || whole.connects != 0 || whole.has_target)
		unit_fail(__FILE__, __LINE__, "%s: state %d connects %d target %d", c->name,
			  whole.state, whole.connects, whole.has_target);
	/* Sticky: later pushes and eof return the same error and queue nothing more. */
	if (socks5_push(&s, (const uint8_t *)"\x05", 1) != c->rc || socks5_eof(&s) != c->rc ||
	    socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL) != -E_STATE)
		unit_fail(__FILE__, __LINE__, "%s: not sticky", c->name);
	r.out_n = 0;
	drain(&s, &r);
	if (r.out_n != 0)
		unit_fail(__FILE__, __LINE__, "%s: more output after the error", c->name);
	/* The same outcome at every split. */
	for (size_t k = 1; k < c->n; k++) {
		run(c->in, c->n, k, 0, &r);
		if (!same(&whole, &r))
			unit_fail(__FILE__, __LINE__, "%s: split at %zu differs", c->name, k);
	}
	run(c->in, c->n, 0, 1, &r);
	if (!same(&whole, &r))
		unit_fail(__FILE__, __LINE__, "%s: byte-at-a-time differs", c->name);
}

#define REQ(...) 5, 1, 0, __VA_ARGS__

TEST(greeting_errors)
{
	static const uint8_t v4[] = {4, 1, 0, 0, 80, 127, 0, 0, 1, 0};
	static const uint8_t v4_1[] = {4};
	static const uint8_t none[] = {5, 0};
	static const uint8_t gss[] = {5, 1, 2};
	static const uint8_t two[] = {5, 2, 1, 2, 5, 1, 0, 1};
	static const uint8_t many[] = {5, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
	static const uint8_t eight[] = {5, 8, 1, 2, 3, 4, 5, 6, 7, 0x80};
	const struct err_case cases[] = {
		{"socks4", v4, sizeof(v4), -E_UNSUPP, "unsupported SOCKS version 4", SEL_OK, 0, 0},
		{"socks4 first byte", v4_1, 1, -E_UNSUPP, "unsupported SOCKS version 4", SEL_OK, 0,
		 0},
		{"no methods", none, sizeof(none), -E_PROTO, "no authentication methods offered",
		 SEL_REJECT, 2, 0},
		{"gssapi only", gss, sizeof(gss), -E_DENIED,
		 "no acceptable auth method (client offered 0x02)", SEL_REJECT, 2, 0},
		{"two methods", two, sizeof(two), -E_DENIED,
		 "no acceptable auth method (client offered 0x01 0x02)", SEL_REJECT, 2, 0},
		{"many methods", many, sizeof(many), -E_DENIED,
		 "no acceptable auth method (client offered 0x01 0x02 0x03 0x04 0x05 0x06 0x07 "
		 "0x08 ...)",
		 SEL_REJECT, 2, 0},
		{"eight methods", eight, sizeof(eight), -E_DENIED,
		 "no acceptable auth method (client offered 0x01 0x02 0x03 0x04 0x05 0x06 0x07 "
		 "0x80)",
		 SEL_REJECT, 2, 0},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		check_error(&cases[i]);
}

TEST(request_errors)
{
	static const uint8_t ver[] = {REQ(4, 1, 0, 1, 1, 2, 3, 4, 0, 80)};
	static const uint8_t ver_only[] = {REQ(4)};
	static const uint8_t bind[] = {REQ(5, 2, 0, 1, 1, 2, 3, 4, 0, 80)};
	static const uint8_t udp[] = {REQ(5, 3, 0, 1, 0, 0, 0, 0, 0, 0)};
	static const uint8_t cmd9[] = {REQ(5, 9)};
	static const uint8_t rsv[] = {REQ(5, 1, 1, 1, 1, 2, 3, 4, 0, 80)};
	static const uint8_t atyp2[] = {REQ(5, 1, 0, 2, 1, 2, 3, 4, 0, 80)};
	static const uint8_t atyp0[] = {REQ(5, 1, 0, 0)};
	static const uint8_t empty[] = {REQ(5, 1, 0, 3, 0, 0, 80)};
	static const uint8_t nul[] = {REQ(5, 1, 0, 3, 12, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 't',
					  'e', 's', 't', 0, 80)};
	static const uint8_t space[] = {REQ(5, 1, 0, 3, 3, 'a', ' ', 'b', 0, 80)};
	static const uint8_t colon[] = {REQ(5, 1, 0, 3, 6, 'h', 'o', 's', 't', ':', '1', 0, 80)};
	static const uint8_t high[] = {REQ(5, 1, 0, 3, 2, 'a', 0xc3, 0, 80)};
	static const uint8_t dotdot[] = {REQ(5, 1, 0, 3, 4, 'a', '.', '.', 'b', 0, 80)};
	static const uint8_t lead[] = {REQ(5, 1, 0, 3, 2, '.', 'a', 0, 80)};
	static const uint8_t dot[] = {REQ(5, 1, 0, 3, 1, '.', 0, 80)};
	static const uint8_t port0[] = {REQ(5, 1, 0, 1, 127, 0, 0, 1, 0, 0)};
	static const uint8_t port0d[] = {REQ(5, 1, 0, 3, 1, 'a', 0, 0)};
	static uint8_t longlabel[3 + 5 + 64 + 2];
	const struct err_case cases[] = {
		{"version", ver, sizeof(ver), -E_PROTO, "unsupported SOCKS version 4 in request",
		 NULL, 0, 1},
		{"version early", ver_only, sizeof(ver_only), -E_PROTO,
		 "unsupported SOCKS version 4 in request", NULL, 0, 1},
		{"bind", bind, sizeof(bind), -E_UNSUPP, "command BIND (2) not supported", NULL, 0,
		 7},
		{"udp", udp, sizeof(udp), -E_UNSUPP, "command UDP ASSOCIATE (3) not supported",
		 NULL, 0, 7},
		{"cmd 9", cmd9, sizeof(cmd9), -E_UNSUPP, "unknown command 0x09", NULL, 0, 7},
		{"rsv", rsv, sizeof(rsv), -E_PROTO, "reserved byte is 0x01, not 0x00", NULL, 0, 1},
		{"atyp 2", atyp2, sizeof(atyp2), -E_UNSUPP, "address type 2 not supported", NULL, 0,
		 8},
		{"atyp 0", atyp0, sizeof(atyp0), -E_UNSUPP, "address type 0 not supported", NULL, 0,
		 8},
		{"empty domain", empty, sizeof(empty), -E_PROTO, "empty domain name", NULL, 0, 1},
		{"nul", nul, sizeof(nul), -E_PROTO, "domain name has invalid character at 7", NULL,
		 0, 1},
		{"space", space, sizeof(space), -E_PROTO, "domain name has invalid character at 1",
		 NULL, 0, 1},
		{"colon", colon, sizeof(colon), -E_PROTO, "domain name has invalid character at 4",
		 NULL, 0, 1},
		{"utf8", high, sizeof(high), -E_PROTO, "domain name has invalid character at 1",
		 NULL, 0, 1},
		{"dotdot", dotdot, sizeof(dotdot), -E_PROTO, "domain name has an empty label at 2",
		 NULL, 0, 1},
		{"leading dot", lead, sizeof(lead), -E_PROTO, "domain name has an empty label at 0",
		 NULL, 0, 1},
		{"dot", dot, sizeof(dot), -E_PROTO, "domain name has an empty label at 0", NULL, 0,
		 1},
		{"long label", longlabel, sizeof(longlabel), -E_PROTO,
		 "domain name label longer than 63 at 63", NULL, 0, 1},
		{"port 0", port0, sizeof(port0), -E_PROTO, "destination port 0", NULL, 0, 1},
		{"port 0 domain", port0d, sizeof(port0d), -E_PROTO, "destination port 0", NULL, 0,
		 1},
	};
	const uint8_t head[] = {REQ(5, 1, 0, 3, 64)};

	memcpy(longlabel, head, sizeof(head));
	memset(longlabel + sizeof(head), 'x', 64);
	longlabel[sizeof(longlabel) - 1] = 80;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		check_error(&cases[i]);
}

/* A bad field fails as soon as its byte arrives, without waiting for the rest of the message. */
TEST(errors_are_early)
{
	const uint8_t bind[] = {REQ(5, 2)};
	struct socks5 s;

	socks5_init(&s);
	CHECK_INT(socks5_push(&s, bind, sizeof(bind)), -E_UNSUPP);
	CHECK_STR(socks5_reason(&s), "command BIND (2) not supported");
}

TEST(eof_cases)
{
	static const uint8_t partial_req[] = {REQ(5, 1, 0, 3, 5, 'a', 'b')};
	static const uint8_t full[] = {REQ(5, 1, 0, 1, 1, 2, 3, 4, 0, 80)};
	struct socks5 s;
	struct result r;

	socks5_init(&s);
	CHECK_INT(socks5_eof(&s), -E_CLOSED);
	CHECK_STR(socks5_reason(&s), "connection closed before greeting");
	CHECK_INT(socks5_state(&s), SOCKS5_STATE_FAILED);

	socks5_init(&s);
	feed(&s, (const uint8_t *)"\x05\x02\x00", 3, 0, 0, &r);
	CHECK_INT(socks5_eof(&s), -E_CLOSED);
	CHECK_STR(socks5_reason(&s), "truncated greeting");
	r.out_n = 0;
	drain(&s, &r);
	CHECK_INT(r.out_n, 0);

	socks5_init(&s);
	feed(&s, partial_req, 3, 0, 0, &r);
	CHECK_INT(socks5_eof(&s), -E_CLOSED);
	CHECK_STR(socks5_reason(&s), "connection closed before request");
	drain(&s, &r);
	CHECK_INT(r.out_n, 2); /* only the method selection */

	socks5_init(&s);
	feed(&s, partial_req, sizeof(partial_req), 0, 0, &r);
	CHECK_INT(r.rc, 0);
	CHECK_INT(socks5_eof(&s), -E_CLOSED);
	CHECK_STR(socks5_reason(&s), "truncated request");
	drain(&s, &r);
	CHECK(out_is_request_error(&r, SOCKS5_REP_GENERAL_FAILURE));
	CHECK_INT(socks5_push(&s, full, 1), -E_CLOSED);

	socks5_init(&s);
	feed(&s, full, sizeof(full), 0, 0, &r);
	CHECK_INT(socks5_eof(&s), 0);
	CHECK_INT(socks5_state(&s), SOCKS5_STATE_CONNECT);
}

/* Every failure REP the caller may answer with, and its exact bytes and reason. */
TEST(reply_failure_codes)
{
	static const uint8_t full[] = {REQ(5, 1, 0, 1, 1, 2, 3, 4, 0, 80)};

	for (int code = 1; code <= 8; code++) {
		struct socks5 s;
		struct result r;
		char want[128];

		socks5_init(&s);
		feed(&s, full, sizeof(full), 0, 0, &r);
		CHECK_INT(socks5_reply(&s, (enum socks5_rep)code, NULL), 0);
		CHECK_INT(socks5_state(&s), SOCKS5_STATE_FAILED);
		snprintf(want, sizeof(want), "replied %d (%s)", code, socks5_rep_name(code));
		CHECK_STR(socks5_reason(&s), want);
		drain(&s, &r);
		CHECK(out_is_request_error(&r, (uint8_t)code));
		CHECK_INT(socks5_push(&s, full, 1), -E_CLOSED);
		CHECK_INT(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL), -E_STATE);
		CHECK(socks5_target(&s) != NULL); /* still there for logging */
	}
}

TEST(reply_misuse_and_domain_bound)
{
	static const uint8_t full[] = {REQ(5, 1, 0, 1, 1, 2, 3, 4, 0, 80)};
	struct socks5_target bad = {.atyp = (enum socks5_atyp)2};
	struct socks5_target empty = {.atyp = SOCKS5_ATYP_DOMAIN};
	struct socks5_target dom = {
		.atyp = SOCKS5_ATYP_DOMAIN, .name = "gw", .name_len = 2, .port = 15008};
	const uint8_t want[2 + 9] = {5, 0, 5, 0, 0, 3, 2, 'g', 'w', 0x3a, 0xa0};
	struct socks5 s;
	struct result r;

	socks5_init(&s);
	CHECK_INT(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL), -E_STATE);
	feed(&s, full, sizeof(full), 0, 0, &r);
	CHECK_INT(socks5_reply(&s, (enum socks5_rep)9, NULL), -E_INVAL);
	CHECK_INT(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, &bad), -E_INVAL);
	CHECK_INT(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, &empty), -E_INVAL);
	CHECK_INT(socks5_state(&s), SOCKS5_STATE_CONNECT);
	CHECK_INT(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, &dom), 0);
	drain(&s, &r);
	REQUIRE(r.out_n == sizeof(want));
	CHECK_MEM(r.out, want, sizeof(want));
}

TEST(names)
{
	CHECK_STR(socks5_rep_name(0), "succeeded");
	CHECK_STR(socks5_rep_name(2), "connection not allowed by ruleset");
	CHECK_STR(socks5_rep_name(5), "connection refused");
	CHECK_STR(socks5_rep_name(8), "address type not supported");
	CHECK_STR(socks5_rep_name(9), "unassigned");
	CHECK_STR(socks5_rep_name(-1), "unassigned");
	CHECK_STR(socks5_cmd_name(1), "CONNECT");
	CHECK_STR(socks5_cmd_name(3), "UDP ASSOCIATE");
	CHECK(socks5_cmd_name(4) == NULL);
}

/* ---- interop with curl ----------------------------------------------------------------------
 * A one-connection SOCKS5 server on a thread drives the core over a blocking socket. For the
 * CANNED mode it answers the tunnelled HTTP request itself; for RELAY it connects to the target
 * (which must be 127.0.0.1: nothing leaves loopback) and copies bytes both ways. */

enum srv_mode { SRV_CANNED, SRV_RELAY };

struct srv {
	int lfd;
	uint16_t port;
	enum srv_mode mode;
	int rc;
	bool connected;
	struct socks5_target t;
	char req[2048]; /* the HTTP request seen in the tunnel */
	size_t req_len;
};

static const char CANNED[] = "HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\n"
			     "hello via mesh";
static const char UPSTREAM[] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
			       "from upstream";

static int listen_loopback(uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 4) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

/* Accepts one connection within 10 s, with a 10 s receive timeout. */
static int accept_one(int lfd)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	struct timeval tv = {.tv_sec = 10};
	int fd;

	if (poll(&p, 1, 10000) != 1)
		return -1;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static bool write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
		if (k <= 0)
			return false;
		b += k;
		n -= (size_t)k;
	}
	return true;
}

static bool flush(struct socks5 *s, int fd)
{
	const uint8_t *p;
	size_t n;

	while (socks5_pull(s, &p, &n)) {
		if (!write_all(fd, p, n))
			return false;
		socks5_pull_done(s, n);
	}
	return true;
}

/* Records tunnel bytes until the end of the HTTP head, then sends the canned response. */
static void serve_canned(struct srv *sv, int fd, const uint8_t *early, size_t n)
{
	for (;;) {
		size_t k = MIN(n, sizeof(sv->req) - 1 - sv->req_len);
		ssize_t r;
		if (k)
			memcpy(sv->req + sv->req_len, early, k);
		sv->req_len += k;
		sv->req[sv->req_len] = '\0';
		if (strstr(sv->req, "\r\n\r\n") || sv->req_len == sizeof(sv->req) - 1)
			break;
		r = recv(fd, sv->req + sv->req_len, sizeof(sv->req) - 1 - sv->req_len, 0);
		if (r <= 0)
			return;
		early = NULL;
		n = 0;
		sv->req_len += (size_t)r;
		sv->req[sv->req_len] = '\0';
	}
	write_all(fd, CANNED, strlen(CANNED));
}

/* Copies bytes both ways until the upstream closes. */
static void relay(int a, int b)
{
	struct pollfd p[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
	uint8_t buf[4096];

	while (poll(p, 2, 10000) > 0) {
		for (int i = 0; i < 2; i++) {
			ssize_t n;
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = recv(p[i].fd, buf, sizeof(buf), 0);
			if (n <= 0 || !write_all(p[1 - i].fd, buf, (size_t)n))
				return;
		}
	}
}

static int dial_target(const struct socks5_target *t, struct socks5_target *bound)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(t->port)};
	socklen_t al = sizeof(a);
	const uint8_t lo[4] = {127, 0, 0, 1};
	int fd;

	if (t->atyp != SOCKS5_ATYP_IPV4 || memcmp(t->addr, lo, 4) != 0)
		return -1; /* never leave loopback */
	memcpy(&a.sin_addr, t->addr, 4);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
		close(fd);
		return -1;
	}
	bound->atyp = SOCKS5_ATYP_IPV4;
	memcpy(bound->addr, &a.sin_addr, 4);
	bound->port = ntohs(a.sin_port);
	return fd;
}

static void *srv_main(void *arg)
{
	struct srv *sv = arg;
	struct socks5 s;
	uint8_t buf[4096];
	int fd = accept_one(sv->lfd);

	socks5_init(&s);
	while (fd >= 0) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct socks5_target bound = {0};
		int up;
		if (n <= 0) {
			sv->rc = socks5_eof(&s);
			flush(&s, fd);
			break;
		}
		sv->rc = socks5_push(&s, buf, (size_t)n);
		if (!flush(&s, fd) || sv->rc < 0)
			break;
		if (socks5_state(&s) != SOCKS5_STATE_CONNECT)
			continue;
		sv->connected = true;
		sv->t = *socks5_target(&s);
		if (sv->mode == SRV_CANNED) {
			socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL);
			if (flush(&s, fd))
				serve_canned(sv, fd, buf + sv->rc, (size_t)n - (size_t)sv->rc);
			break;
		}
		up = dial_target(socks5_target(&s), &bound);
		socks5_reply(&s, up >= 0 ? SOCKS5_REP_SUCCEEDED : SOCKS5_REP_CONN_REFUSED,
			     up >= 0 ? &bound : NULL);
		if (flush(&s, fd) && up >= 0 &&
		    write_all(up, buf + sv->rc, (size_t)n - (size_t)sv->rc))
			relay(fd, up);
		if (up >= 0)
			close(up);
		break;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* The upstream of the RELAY mode: reads one request head and answers UPSTREAM. */
static void *upstream_main(void *arg)
{
	int lfd = *(int *)arg, fd = accept_one(lfd);
	char req[2048];
	size_t len = 0;

	while (fd >= 0 && len < sizeof(req) - 1) {
		ssize_t n = recv(fd, req + len, sizeof(req) - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n")) {
			write_all(fd, UPSTREAM, strlen(UPSTREAM));
			break;
		}
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static bool have_curl(void)
{
	return access("/usr/bin/curl", X_OK) == 0 || access("/usr/local/bin/curl", X_OK) == 0;
}

/* Runs curl with a SOCKS option against url; returns its exit status and stdout in out. */
static int run_curl(const char *socks_opt, uint16_t port, const char *url, char *out, size_t cap)
{
	char proxy[64];
	int pfd[2];
	pid_t pid;
	size_t len = 0;
	int status;

	snprintf(proxy, sizeof(proxy), "127.0.0.1:%u", port);
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		const char *const vars[] = {"ALL_PROXY", "all_proxy", "http_proxy", "HTTP_PROXY",
					    "NO_PROXY",	 "no_proxy",  "CURL_HOME"};
		for (size_t i = 0; i < ARRAY_LEN(vars); i++)
			unsetenv(vars[i]);
		dup2(pfd[1], 1);
		if (devnull >= 0)
			dup2(devnull, 2);
		execlp("curl", "curl", "-q", "-sS", "--max-time", "10", socks_opt, proxy, url,
		       (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	for (;;) {
		ssize_t n = read(pfd[0], out + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int start_srv(struct srv *sv, enum srv_mode mode, pthread_t *t)
{
	memset(sv, 0, sizeof(*sv));
	sv->mode = mode;
	sv->lfd = listen_loopback(&sv->port);
	if (sv->lfd < 0)
		return -1;
	return pthread_create(t, NULL, srv_main, sv) == 0 ? 0 : -1;
}

TEST(curl_socks5_hostname)
{
	struct srv sv;
	pthread_t t;
	char out[4096];
	int rc;

	if (!have_curl()) {
		fprintf(stderr, "    (curl not installed; skipped)\n");
		return;
	}
	REQUIRE(start_srv(&sv, SRV_CANNED, &t) == 0);
	rc = run_curl("--socks5-hostname", sv.port, "http://example.test:8080/", out, sizeof(out));
	pthread_join(t, NULL);
	close(sv.lfd);
	CHECK_INT(rc, 0);
	CHECK_STR(out, "hello via mesh");
	CHECK(sv.connected);
	CHECK_INT(sv.t.atyp, SOCKS5_ATYP_DOMAIN); /* curl let the proxy resolve the name */
	CHECK_STR(sv.t.name, "example.test");
	CHECK_INT(sv.t.port, 8080);
	CHECK_CONTAINS(sv.req, "GET / HTTP/1.1\r\n");
	CHECK_CONTAINS(sv.req, "Host: example.test:8080\r\n");
}

TEST(curl_socks5_ipv4_relay)
{
	struct srv sv;
	pthread_t t, ut;
	char out[4096], url[64];
	uint16_t uport;
	int ulfd, rc;

	if (!have_curl())
		return;
	ulfd = listen_loopback(&uport);
	REQUIRE(ulfd >= 0);
	REQUIRE(pthread_create(&ut, NULL, upstream_main, &ulfd) == 0);
	REQUIRE(start_srv(&sv, SRV_RELAY, &t) == 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/", uport);
	rc = run_curl("--socks5", sv.port, url, out, sizeof(out));
	pthread_join(t, NULL);
	pthread_join(ut, NULL);
	close(sv.lfd);
	close(ulfd);
	CHECK_INT(rc, 0);
	CHECK_STR(out, "from upstream");
	CHECK(sv.connected);
	CHECK_INT(sv.t.atyp, SOCKS5_ATYP_IPV4);
	CHECK_MEM(sv.t.addr, "\x7f\x00\x00\x01", 4);
	CHECK_INT(sv.t.port, uport);
}

TEST(curl_socks5_ipv6_canned)
{
	const uint8_t lo6[16] = {[15] = 1};
	struct srv sv;
	pthread_t t;
	char out[4096];
	int rc;

	if (!have_curl())
		return;
	REQUIRE(start_srv(&sv, SRV_CANNED, &t) == 0);
	rc = run_curl("--socks5-hostname", sv.port, "http://[::1]:8080/", out, sizeof(out));
	pthread_join(t, NULL);
	close(sv.lfd);
	CHECK_INT(rc, 0);
	CHECK_STR(out, "hello via mesh");
	CHECK_INT(sv.t.atyp, SOCKS5_ATYP_IPV6);
	CHECK_MEM(sv.t.addr, lo6, 16);
	CHECK_INT(sv.t.port, 8080);
}

/* A refused CONNECT reaches curl as a failure (exit 97, "proxy handshake error"). */
TEST(curl_socks5_refused)
{
	struct srv sv;
	pthread_t t;
	char out[4096];
	int rc;

	if (!have_curl())
		return;
	REQUIRE(start_srv(&sv, SRV_RELAY, &t) == 0);
	/* RELAY refuses anything but 127.0.0.1, and nothing is dialled for this address. */
	rc = run_curl("--socks5", sv.port, "http://192.0.2.1:80/", out, sizeof(out));
	pthread_join(t, NULL);
	close(sv.lfd);
	CHECK(rc != 0);
	CHECK_STR(out, "");
	CHECK(sv.connected);
	CHECK_INT(sv.t.atyp, SOCKS5_ATYP_IPV4);
	CHECK_MEM(sv.t.addr, "\xc0\x00\x02\x01", 4);
}
