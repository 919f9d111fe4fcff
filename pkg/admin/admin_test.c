/* Tests for the admin HTTP server: routing, limits, pipelining, query decoding. */
#include "pkg/admin/admin.h"
#include "test/unit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

struct client {
	const struct net_addr *addr;
	const char *req;
	size_t req_len;
	char resp[65536];
	size_t resp_len;
	atomic_bool done;
};

/* Sends one raw request blob and reads until the server closes (or 5 s idle). */
static void *client_main(void *arg)
{
	struct client *c = arg;
	struct errbuf eb;
	int fd = net_connect_timeout(c->addr, 5000, NULL, &eb);
	struct timeval tv = {.tv_sec = 5};

	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		for (size_t off = 0; off < c->req_len;) {
			ssize_t n = send(fd, c->req + off, c->req_len - off, MSG_NOSIGNAL);
			if (n <= 0)
				break;
			off += (size_t)n;
		}
		for (;;) {
			ssize_t n = recv(fd, c->resp + c->resp_len,
					 sizeof(c->resp) - 1 - c->resp_len, 0);
			if (n <= 0)
				break;
			c->resp_len += (size_t)n;
		}
		close(fd);
	}
	c->resp[c->resp_len] = '\0';
	atomic_store(&c->done, true);
	return NULL;
}

static void hello(const struct admin_request *req, struct admin_response *r, void *arg)
{
	char who[64];

	(void)arg;
	if (!admin_query_get(req->query, "who", who, sizeof(who)))
		snprintf(who, sizeof(who), "nobody");
	admin_printf(r, "hello %s (%zu body bytes)\n", who, req->body.n);
}

/* Runs the loop until the client thread finishes. */
static void exchange(struct ev_loop *loop, struct admin_server *s, const char *req, size_t len,
		     struct client *c)
{
	pthread_t t;

	memset(c, 0, sizeof(*c));
	c->addr = admin_bound_addr(s, 0);
	c->req = req;
	c->req_len = len;
	pthread_create(&t, NULL, client_main, c);
	while (!atomic_load(&c->done))
		ev_loop_run_once(loop, 50);
	pthread_join(t, NULL);
}

static struct admin_server *start(struct ev_loop **loop)
{
	struct errbuf eb;
	struct admin_server *s;

	*loop = ev_loop_new(&eb);
	s = admin_server_new(*loop, "test", NULL, &eb);
	admin_route(s, "/hello", ADMIN_GET | ADMIN_POST, hello, NULL);
	if (admin_listen(s, "127.0.0.1:0", &eb) < 0)
		unit_fail(__FILE__, __LINE__, "listen: %s", eb.msg);
	return s;
}

#define REQ(s) s, sizeof(s) - 1

TEST(admin_routes_and_decodes_query)
{
	struct ev_loop *loop;
	struct admin_server *s = start(&loop);
	static struct client c;

	exchange(loop, s,
		 REQ("GET /hello?who=a%20b+c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
		 &c);
	CHECK_CONTAINS(c.resp, "HTTP/1.1 200 OK\r\n");
	CHECK_CONTAINS(c.resp, "\r\n\r\nhello a b c (0 body bytes)\n");
	CHECK_CONTAINS(c.resp, "Content-Length: 27\r\n");
	admin_server_free(s);
	ev_loop_free(loop);
}

TEST(admin_unknown_path_and_wrong_method)
{
	struct ev_loop *loop;
	struct admin_server *s = start(&loop);
	static struct client c;

	exchange(loop, s,
		 REQ("GET /nope HTTP/1.1\r\nHost: x\r\n\r\nDELETE /hello HTTP/1.1\r\nHost: "
		     "x\r\nConnection: close\r\n\r\n"),
		 &c);
	CHECK_CONTAINS(c.resp, "HTTP/1.1 404 Not Found\r\n");
	CHECK_CONTAINS(c.resp, "no such endpoint: /nope\n");
	CHECK_CONTAINS(c.resp, "HTTP/1.1 405 Method Not Allowed\r\n");
	CHECK_CONTAINS(c.resp, "allow: GET, HEAD, POST\r\n");
	admin_server_free(s);
	ev_loop_free(loop);
}

TEST(admin_pipelined_requests_answer_in_order)
{
	struct ev_loop *loop;
	struct admin_server *s = start(&loop);
	static struct client c;
	const char *a;
	const char *b;

	exchange(loop, s,
		 REQ("GET /hello?who=first HTTP/1.1\r\nHost: x\r\n\r\n"
		     "POST /hello?who=second HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
		     "HEAD /hello?who=third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
		 &c);
	a = strstr(c.resp, "hello first");
	b = strstr(c.resp, "hello second (3 body bytes)");
	REQUIRE(a && b);
	CHECK(a < b);
	/* HEAD gets headers only. */
	CHECK(strstr(c.resp, "hello third") == NULL);
	CHECK_INT(admin_bound_addr(s, 1) == NULL, 1);
	admin_server_free(s);
	ev_loop_free(loop);
}

TEST(admin_limits_map_to_status_codes)
{
	struct ev_loop *loop;
	struct admin_server *s = start(&loop);
	static struct client c;
	static char big[40000];
	int n;
	struct admin_stats st;

	n = snprintf(big, sizeof(big), "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(big + n, 'a', 20000);
	memcpy(big + n + 20000, "\r\n\r\n", 4);
	exchange(loop, s, big, (size_t)n + 20004, &c);
	CHECK_CONTAINS(c.resp, "HTTP/1.1 431 ");
	CHECK_CONTAINS(c.resp, "connection: close\r\n");

	exchange(loop, s, REQ("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n"),
		 &c);
	CHECK_CONTAINS(c.resp, "HTTP/1.1 413 ");

	exchange(loop, s,
		 REQ("GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: "
		     "chunked\r\n\r\n"),
		 &c);
	CHECK_CONTAINS(c.resp, "HTTP/1.1 400 ");
	CHECK_CONTAINS(c.resp, "Transfer-Encoding");

	exchange(loop, s, REQ("GET http://x/hello HTTP/1.1\r\nHost: x\r\n\r\n"), &c);
	CHECK_CONTAINS(c.resp, "HTTP/1.1 400 ");

	/* Still serving. */
	exchange(loop, s, REQ("GET /hello HTTP/1.0\r\n\r\n"), &c);
	CHECK_CONTAINS(c.resp, "HTTP/1.1 200 OK");
	admin_get_stats(s, &st);
	CHECK_INT(st.bad_requests, 3);
	admin_server_free(s);
	ev_loop_free(loop);
}

TEST(admin_query_get_edge_cases)
{
	char out[16];
	struct slice q = http1_s("a=1&level=debug&empty=&flag&bad=%zz&long=0123456789abcdefXYZ");

	CHECK(admin_query_get(q, "level", out, sizeof(out)));
	CHECK_STR(out, "debug");
	CHECK(admin_query_get(q, "empty", out, sizeof(out)));
	CHECK_STR(out, "");
	CHECK(admin_query_get(q, "flag", out, sizeof(out)));
	CHECK(!admin_query_get(q, "bad", out, sizeof(out)));
	CHECK(!admin_query_get(q, "long", out, sizeof(out)));
	CHECK(!admin_query_get(q, "lev", out, sizeof(out)));
	CHECK(!admin_query_get(http1_s("x=%00"), "x", out, sizeof(out)));
}

struct lp {
	struct admin_pending *p;
	int cancelled;
};

static void lp_cancel(struct admin_pending *p, void *arg)
{
	struct lp *lp = arg;

	(void)p;
	lp->p = NULL;
	lp->cancelled++;
}

static void lp_handler(const struct admin_request *req, struct admin_response *r, void *arg)
{
	struct lp *lp = arg;

	(void)r;
	lp->p = admin_defer(req, lp_cancel, lp);
}

TEST(admin_deferred_response_and_pipelining_after_it)
{
	struct ev_loop *loop;
	struct admin_server *s = start(&loop);
	static struct client c;
	struct lp lp = {0};
	pthread_t t;
	const char *a;
	const char *b;

	admin_route(s, "/wait", ADMIN_GET, lp_handler, &lp);
	memset(&c, 0, sizeof(c));
	c.addr = admin_bound_addr(s, 0);
	c.req = "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"
		"GET /hello?who=after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	c.req_len = strlen(c.req);
	pthread_create(&t, NULL, client_main, &c);
	while (!lp.p)
		ev_loop_run_once(loop, 50);
	/* Nothing is answered while the first response is pending. */
	for (int i = 0; i < 5; i++)
		ev_loop_run_once(loop, 10);
	CHECK_INT(c.resp_len, 0);
	{
		struct admin_response r = {.status = 200};
		buf_init(&r.body, 0);
		admin_printf(&r, "changed\n");
		admin_pending_respond(lp.p, &r);
		buf_fini(&r.body);
		lp.p = NULL;
	}
	while (!atomic_load(&c.done))
		ev_loop_run_once(loop, 50);
	pthread_join(t, NULL);
	a = strstr(c.resp, "changed\n");
	b = strstr(c.resp, "hello after");
	REQUIRE(a && b);
	CHECK(a < b);
	CHECK_INT(lp.cancelled, 0);
	admin_server_free(s);
	ev_loop_free(loop);
}

TEST(admin_deferred_cancelled_when_client_leaves)
{
	struct ev_loop *loop;
	struct admin_server *s = start(&loop);
	struct lp lp = {0};
	struct errbuf eb;
	int fd;
	static const char req[] = "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n";

	admin_route(s, "/wait", ADMIN_GET, lp_handler, &lp);
	fd = net_connect_timeout(admin_bound_addr(s, 0), 5000, NULL, &eb);
	REQUIRE(fd >= 0);
	REQUIRE(send(fd, req, sizeof(req) - 1, 0) == (ssize_t)sizeof(req) - 1);
	while (!lp.p)
		ev_loop_run_once(loop, 50);
	close(fd);
	for (int i = 0; i < 200 && !lp.cancelled; i++)
		ev_loop_run_once(loop, 20);
	CHECK_INT(lp.cancelled, 1);
	CHECK(lp.p == NULL);
	/* Freeing the server with a pending response cancels it too. */
	fd = net_connect_timeout(admin_bound_addr(s, 0), 5000, NULL, &eb);
	REQUIRE(fd >= 0);
	REQUIRE(send(fd, req, sizeof(req) - 1, 0) == (ssize_t)sizeof(req) - 1);
	while (!lp.p)
		ev_loop_run_once(loop, 50);
	admin_server_free(s);
	CHECK_INT(lp.cancelled, 2);
	close(fd);
	ev_loop_free(loop);
}

static void echo_header(const struct admin_request *req, struct admin_response *r, void *arg)
{
	struct slice v;

	(void)arg;
	if (http1_fields_get(&req->msg->headers, "x-who", &v))
		admin_printf(r, "who=%.*s body=%.*s\n", (int)v.n, (const char *)v.p,
			     (int)req->body.n, (const char *)req->body.p);
	else
		admin_printf(r, "no header\n");
}

struct split_client {
	const struct net_addr *addr;
	char resp[4096];
	atomic_bool done;
};

/* Sends the head, waits, then the body: the head's bytes are gone from the input buffer by the
 * time the request completes. */
static void *split_main(void *arg)
{
	struct split_client *c = arg;
	struct errbuf eb;
	int fd = net_connect_timeout(c->addr, 5000, NULL, &eb);
	static const char head[] = "POST /echo HTTP/1.1\r\nHost: x\r\nX-Who: alice\r\n"
				   "Content-Length: 5\r\nConnection: close\r\n\r\n";
	size_t got = 0;

	if (fd >= 0) {
		if (send(fd, head, sizeof(head) - 1, 0) < 0 || usleep(200000) != 0 ||
		    send(fd, "hello", 5, 0) < 0)
			c->resp[0] = '\0';
		for (;;) {
			ssize_t n = recv(fd, c->resp + got, sizeof(c->resp) - 1 - got, 0);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		close(fd);
	}
	c->resp[got] = '\0';
	atomic_store(&c->done, true);
	return NULL;
}

TEST(admin_handler_sees_headers_after_a_late_body)
{
	struct ev_loop *loop;
	struct admin_server *s = start(&loop);
	static struct split_client c;
	pthread_t t;

	admin_route(s, "/echo", ADMIN_POST, echo_header, NULL);
	memset(&c, 0, sizeof(c));
	c.addr = admin_bound_addr(s, 0);
	pthread_create(&t, NULL, split_main, &c);
	while (!atomic_load(&c.done))
		ev_loop_run_once(loop, 50);
	pthread_join(t, NULL);
	CHECK_CONTAINS(c.resp, "who=alice body=hello\n");
	admin_server_free(s);
	ev_loop_free(loop);
}
