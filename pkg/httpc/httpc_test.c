/* Tests for pkg/httpc: URLs, tokens, plain HTTP, HTTPS server identity, wake-up and limits, all
 * against in-test servers on loopback. */
#include "pkg/httpc/httpc.h"
#include "test/unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test/tls_fixtures.h"

static char *tpath(const char *name)
{
	return xasprintf("%s/%s", unit_tmpdir(), name);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t n = strlen(text);

	if (fd < 0 || write(fd, text, n) != (ssize_t)n)
		unit_fail(__FILE__, __LINE__, "write %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* ---- a one-connection-at-a-time test server ---------------------------------------------- */

struct tsrv {
	int lfd;
	int port;
	int stop_pipe[2];
	pthread_t thr;
	const char *resp;     /* raw response; NULL: hang until stopped */
	const char *cert_pem; /* NULL: plain */
	uint8_t cert_der[2048];
	size_t cert_len;
	br_ec_private_key key;
	uint8_t key_x[64];
	pthread_mutex_t mu;
	char req[8192]; /* the last request, head and body */
	int nreq;
};

struct tconn {
	int fd;
	br_ssl_server_context sc;
	br_sslio_context ioc;
	unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];
};

static int sock_read(void *ctx, unsigned char *buf, size_t len)
{
	ssize_t n = recv(*(int *)ctx, buf, len, 0);

	return n > 0 ? (int)n : -1;
}

static int sock_write(void *ctx, const unsigned char *buf, size_t len)
{
	ssize_t n = send(*(int *)ctx, buf, len, MSG_NOSIGNAL);

	return n > 0 ? (int)n : -1;
}

/* The request is complete when the head is and Content-Length bytes follow it. */
static bool req_complete(const char *r, size_t n)
{
	const char *end = strstr(r, "\r\n\r\n");
	const char *cl = strstr(r, "Content-Length: ");

	if (!end)
		return false;
	if (!cl || cl > end)
		return true;
	return n >= (size_t)(end + 4 - r) + strtoul(cl + 16, NULL, 10);
}

static void tsrv_handle(struct tsrv *s, int fd)
{
	struct tconn *c = xcalloc(1, sizeof(*c));
	struct timeval tv = {5, 0};
	char req[8192];
	size_t n = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	c->fd = fd;
	if (s->cert_pem) {
		br_x509_certificate chain = {s->cert_der, s->cert_len};

		br_ssl_server_init_full_ec(&c->sc, &chain, 1, BR_KEYTYPE_EC, &s->key);
		br_ssl_engine_set_buffer(&c->sc.eng, c->iobuf, sizeof(c->iobuf), 1);
		br_ssl_server_reset(&c->sc);
		br_sslio_init(&c->ioc, &c->sc.eng, sock_read, &c->fd, sock_write, &c->fd);
	}
	while (n < sizeof(req) - 1) {
		int k = s->cert_pem ? br_sslio_read(&c->ioc, req + n, sizeof(req) - 1 - n)
				    : (int)recv(fd, req + n, sizeof(req) - 1 - n, 0);

		if (k <= 0)
			break;
		n += (size_t)k;
		req[n] = '\0';
		if (!req_complete(req, n))
			continue;
		pthread_mutex_lock(&s->mu);
		memcpy(s->req, req, n + 1);
		s->nreq++;
		pthread_mutex_unlock(&s->mu);
		if (!s->resp) {
			struct pollfd p = {.fd = s->stop_pipe[0], .events = POLLIN};

			poll(&p, 1, 10000);
		} else if (s->cert_pem) {
			br_sslio_write_all(&c->ioc, s->resp, strlen(s->resp));
			br_sslio_close(&c->ioc);
		} else if (send(fd, s->resp, strlen(s->resp), MSG_NOSIGNAL) < 0) {
			unit_fail(__FILE__, __LINE__, "send: %s", strerror(errno));
		}
		break;
	}
	close(fd);
	free(c);
}

static void *tsrv_main(void *arg)
{
	struct tsrv *s = arg;

	for (;;) {
		struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN},
				      {.fd = s->stop_pipe[0], .events = POLLIN}};
		int fd;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			tsrv_handle(s, fd);
	}
	return NULL;
}

static bool tsrv_start(struct tsrv *s, const char *resp, const char *cert_pem)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	s->resp = resp;
	s->cert_pem = cert_pem;
	if (cert_pem) {
		br_skey_decoder_context kd;
		uint8_t kder[256];
		size_t kl = pem_der(PEM_SRV_KEY, kder, sizeof(kder));
		const br_ec_private_key *k;

		s->cert_len = pem_der(cert_pem, s->cert_der, sizeof(s->cert_der));
		br_skey_decoder_init(&kd);
		br_skey_decoder_push(&kd, kder, kl);
		k = br_skey_decoder_get_ec(&kd);
		if (!s->cert_len || !k || k->xlen > sizeof(s->key_x))
			return false;
		memcpy(s->key_x, k->x, k->xlen);
		s->key = (br_ec_private_key){k->curve, s->key_x, k->xlen};
	}
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(s->lfd, 16) < 0 || getsockname(s->lfd, (struct sockaddr *)&a, &al) < 0 ||
	    pipe2(s->stop_pipe, O_CLOEXEC) < 0)
		return false;
	s->port = ntohs(a.sin_port);
	return pthread_create(&s->thr, NULL, tsrv_main, s) == 0;
}

static void tsrv_stop(struct tsrv *s)
{
	if (write(s->stop_pipe[1], "x", 1) != 1)
		unit_fail(__FILE__, __LINE__, "stop pipe");
	pthread_join(s->thr, NULL);
	close(s->lfd);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
	pthread_mutex_destroy(&s->mu);
}

static const char RESP_OK[] = "HTTP/1.1 200 OK\r\nETag: \"e7\"\r\nContent-Length: 5\r\n\r\nhello";

/* Initialises c for url (scheme://host:port/path on s) with roots_pem as the anchors. */
static int client_for(struct httpc *c, const struct tsrv *s, const char *scheme, const char *host,
		      const char *roots_pem, const char *pin, struct errbuf *eb)
{
	char *roots = tpath("roots.pem");
	char *url = xasprintf("%s://%s:%d/v1/x", scheme, host, s->port);
	int r;

	if (roots_pem)
		write_file(roots, roots_pem);
	r = httpc_init(c, url,
		       &(struct httpc_opts){.ca_root = roots_pem ? roots : NULL,
					    .pin_uri = pin,
					    .connect_timeout_ms = 2000,
					    .io_timeout_ms = 2000},
		       eb);
	free(url);
	free(roots);
	return r;
}

/* ---- tests ----------------------------------------------------------------------------------- */

TEST(url_parse)
{
	struct httpc_url u;
	struct errbuf eb = {0};

	REQUIRE(httpc_url_parse("HTTP://Example.com/a/b?x=1#frag", &u, &eb) == 0);
	CHECK(!u.tls);
	CHECK(!u.host_is_ip);
	CHECK_STR(u.host, "Example.com");
	CHECK_INT(u.port, 80);
	CHECK_STR(u.hostport, "Example.com:80");
	CHECK_STR(u.target, "/a/b?x=1");
	httpc_url_fini(&u);
	REQUIRE(httpc_url_parse("https://[::1]:15012", &u, &eb) == 0);
	CHECK(u.tls && u.host_is_ip);
	CHECK_INT(u.ip_family, AF_INET6);
	CHECK_STR(u.hostport, "[::1]:15012");
	CHECK_STR(u.target, "/");
	httpc_url_fini(&u);
	CHECK_INT(httpc_url_parse("ftp://h/", &u, &eb), -E_UNSUPP);
	CHECK(httpc_url_parse("http://user:hunter2@h/", &u, &eb) < 0);
	CHECK_CONTAINS(eb.msg, "credentials in the URL are not supported");
	CHECK(strstr(eb.msg, "hunter2") == NULL);
	CHECK(httpc_url_parse("http://h:0/", &u, &eb) < 0);
	CHECK_CONTAINS(eb.msg, "port 0 out of range");
	CHECK(httpc_url_parse("http://127.1/", &u, &eb) < 0);
	CHECK_CONTAINS(eb.msg, "invalid IPv4 address");
}

TEST(token_file)
{
	char *tok = tpath("token");
	char buf[HTTPC_TOKEN_MAX];
	struct errbuf eb = {0};

	write_file(tok, "\n");
	CHECK_INT(httpc_token_read(tok, buf, sizeof(buf), &eb), -E_INVAL);
	CHECK_CONTAINS(eb.msg, "empty");
	write_file(tok, "a\x01secret\n");
	CHECK_INT(httpc_token_read(tok, buf, sizeof(buf), &eb), -E_INVAL);
	CHECK(strstr(eb.msg, "secret") == NULL);
	write_file(tok, "t0k3n \n");
	CHECK_INT(httpc_token_read(tok, buf, sizeof(buf), &eb), 0);
	CHECK_STR(buf, "t0k3n");
	free(tok);
}

static void note_etag(void *arg, const struct http1_msg *m)
{
	struct slice v;

	if (http1_fields_get(&m->headers, "etag", &v))
		snprintf(arg, 32, "%.*s", (int)v.n, (const char *)v.p);
}

TEST(plain_get_and_post)
{
	struct tsrv s;
	struct httpc c;
	struct httpc_resp rs;
	struct errbuf eb = {0};
	char *tok = tpath("tok");
	char etag[32] = "";

	write_file(tok, "bearer-secret\n");
	REQUIRE(tsrv_start(&s, RESP_OK, NULL));
	REQUIRE(client_for(&c, &s, "http", "127.0.0.1", NULL, NULL, &eb) == 0);
	CHECK_INT(httpc_fetch(&c,
			      &(struct httpc_req){.token_file = tok,
						  .if_none_match = "\"e6\"",
						  .wakefd = -1,
						  .on_head = note_etag,
						  .arg = etag},
			      &rs, &eb),
		  0);
	CHECK_INT(rs.status, 200);
	CHECK_INT(buf_len(&rs.body), 5);
	CHECK_MEM(buf_rptr(&rs.body), "hello", 5);
	CHECK_STR(etag, "\"e7\"");
	httpc_resp_fini(&rs);
	pthread_mutex_lock(&s.mu);
	CHECK(strncmp(s.req, "GET /v1/x HTTP/1.1\r\n", 20) == 0);
	CHECK_CONTAINS(s.req, "\r\nHost: 127.0.0.1:");
	CHECK_CONTAINS(s.req, "\r\nAuthorization: Bearer bearer-secret\r\n");
	CHECK_CONTAINS(s.req, "\r\nIf-None-Match: \"e6\"\r\n");
	CHECK_CONTAINS(s.req, "\r\nConnection: close\r\n");
	pthread_mutex_unlock(&s.mu);

	CHECK_INT(httpc_fetch(&c,
			      &(struct httpc_req){.method = "POST",
						  .target = "/p?q=1",
						  .content_type = "application/json",
						  .body = "{\"a\":1}",
						  .body_len = 7,
						  .wakefd = -1},
			      &rs, &eb),
		  0);
	httpc_resp_fini(&rs);
	pthread_mutex_lock(&s.mu);
	CHECK(strncmp(s.req, "POST /p?q=1 HTTP/1.1\r\n", 22) == 0);
	CHECK_CONTAINS(s.req, "\r\nContent-Type: application/json\r\n");
	CHECK_CONTAINS(s.req, "\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
	CHECK(strstr(s.req, "Authorization") == NULL);
	pthread_mutex_unlock(&s.mu);
	httpc_fini(&c);
	tsrv_stop(&s);
	free(tok);
}

TEST(connect_refused)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct httpc c;
	struct httpc_resp rs;
	struct errbuf eb = {0};
	char *url;
	char *want;

	REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		getsockname(fd, (struct sockaddr *)&a, &al) == 0);
	close(fd);
	url = xasprintf("http://127.0.0.1:%d/", ntohs(a.sin_port));
	want = xasprintf("connect 127.0.0.1:%d: connection refused", ntohs(a.sin_port));
	REQUIRE(httpc_init(&c, url, &(struct httpc_opts){0}, &eb) == 0);
	CHECK(httpc_fetch(&c, &(struct httpc_req){.wakefd = -1}, &rs, &eb) < 0);
	CHECK_STR(eb.msg, want);
	httpc_resp_fini(&rs);
	httpc_fini(&c);
	free(url);
	free(want);
}

TEST(size_limit)
{
	struct tsrv s;
	struct httpc c;
	struct httpc_resp rs;
	struct errbuf eb = {0};

	REQUIRE(tsrv_start(&s, RESP_OK, NULL));
	REQUIRE(client_for(&c, &s, "http", "127.0.0.1", NULL, NULL, &eb) == 0);
	CHECK_INT(httpc_fetch(&c, &(struct httpc_req){.max_body = 4, .wakefd = -1}, &rs, &eb),
		  -E_LIMIT);
	CHECK_STR(eb.msg, "response body over the 4-byte limit");
	httpc_resp_fini(&rs);
	CHECK_INT(httpc_fetch(&c, &(struct httpc_req){.max_body = 5, .wakefd = -1}, &rs, &eb), 0);
	CHECK_INT(buf_len(&rs.body), 5);
	httpc_resp_fini(&rs);
	httpc_fini(&c);
	tsrv_stop(&s);
}

/* One HTTPS GET from a server presenting cert; the result, with the error in err. */
static int tls_case(const char *cert, const char *roots_pem, const char *host, const char *pin,
		    char *err, size_t cap)
{
	struct tsrv s;
	struct httpc c;
	struct httpc_resp rs = {0};
	struct errbuf eb = {0};
	int r;

	err[0] = '\0';
	if (!tsrv_start(&s, RESP_OK, cert))
		return -E_STATE;
	r = client_for(&c, &s, "https", host, roots_pem, pin, &eb);
	if (r == 0) {
		r = httpc_fetch(&c, &(struct httpc_req){.wakefd = -1}, &rs, &eb);
		if (r == 0 && (rs.status != 200 || buf_len(&rs.body) != 5))
			r = -E_STATE;
		httpc_resp_fini(&rs);
	}
	if (r < 0)
		snprintf(err, cap, "%s", eb.msg);
	httpc_fini(&c);
	tsrv_stop(&s);
	return r;
}

TEST(https_ip_san)
{
	char err[512];

	CHECK_INT(tls_case(PEM_SRV1, PEM_ROOT, "127.0.0.1", NULL, err, sizeof(err)), 0);
	CHECK_STR(err, "");
	CHECK(tls_case(PEM_SRV2, PEM_ROOT, "127.0.0.1", NULL, err, sizeof(err)) < 0);
	CHECK_STR(err, "TLS handshake: server certificate has no IP SAN 127.0.0.1 (RFC 2818 §3.1)");
	CHECK(tls_case(PEM_SRV3, PEM_ROOT, "127.0.0.1", NULL, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "no IP SAN 127.0.0.1");
}

TEST(https_dns_name_trust_and_pin)
{
	char err[512];

	CHECK_INT(tls_case(PEM_SRV1, PEM_ROOT, "localhost", NULL, err, sizeof(err)), 0);
	CHECK(tls_case(PEM_SRV2, PEM_ROOT, "localhost", NULL, err, sizeof(err)) < 0);
	CHECK_STR(err, "TLS handshake: server certificate does not name this host");
	CHECK(tls_case(PEM_SRV1, PEM_OTHER, "127.0.0.1", NULL, err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "TLS handshake: server certificate is not signed by ");
	CHECK_CONTAINS(err, "roots.pem");
	/* The fixtures carry no URI SAN: a pin refuses them. */
	CHECK(tls_case(PEM_SRV1, PEM_ROOT, "127.0.0.1", "spiffe://td/ns/a/sa/b", err, sizeof(err)) <
	      0);
	CHECK_STR(err, "TLS handshake: server certificate is not for spiffe://td/ns/a/sa/b");
}

TEST(roots_file_errors)
{
	struct httpc c;
	struct errbuf eb = {0};
	char *bad = tpath("bad.pem");

	CHECK(httpc_init(&c, "https://127.0.0.1:1/", &(struct httpc_opts){0}, &eb) < 0);
	CHECK_CONTAINS(eb.msg, "needs a trust anchor file");
	write_file(bad, "not a pem\n");
	CHECK(httpc_init(&c, "https://127.0.0.1:1/",
			 &(struct httpc_opts){.ca_root = bad, .ca_root_what = "--roots"}, &eb) < 0);
	CHECK(strncmp(eb.msg, "--roots ", 8) == 0);
	CHECK_CONTAINS(eb.msg, "bad.pem: PEM");
	CHECK(httpc_init(&c, "https://127.0.0.1:1/",
			 &(struct httpc_opts){.ca_root = "/nonexistent/r.pem"}, &eb) < 0);
	CHECK_CONTAINS(eb.msg, "/nonexistent/r.pem: No such file");
	free(bad);
}

struct waker {
	int fd;
	atomic_bool *stopping;
};

static void *wake_later(void *arg)
{
	struct waker *k = arg;
	uint64_t one = 1;
	struct timespec ts = {0, 150 * 1000 * 1000};

	nanosleep(&ts, NULL);
	if (k->stopping)
		atomic_store(k->stopping, true);
	if (write(k->fd, &one, sizeof(one)) != sizeof(one))
		unit_fail(__FILE__, __LINE__, "eventfd write");
	return NULL;
}

/* The server reads the request and never answers; the wake fd must end the wait at once. */
static void hung_case(const char *cert, bool with_flag, bool other_work_first)
{
	struct tsrv s;
	struct httpc c;
	struct httpc_resp rs;
	struct errbuf eb = {0};
	atomic_bool stopping = false;
	struct waker k = {.stopping = with_flag ? &stopping : NULL};
	pthread_t t;
	uint64_t t0;
	int r;

	k.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	REQUIRE(k.fd >= 0 && tsrv_start(&s, NULL, cert));
	REQUIRE(client_for(&c, &s, cert ? "https" : "http", "127.0.0.1", cert ? PEM_ROOT : NULL,
			   NULL, &eb) == 0);
	if (other_work_first) {
		uint64_t one = 1;

		/* A wake-up for other work (stopping still false) is drained, not a stop. */
		CHECK(write(k.fd, &one, sizeof(one)) == sizeof(one));
	}
	REQUIRE(pthread_create(&t, NULL, wake_later, &k) == 0);
	t0 = time_mono_ms();
	r = httpc_fetch(&c,
			&(struct httpc_req){.timeout_ms = 10000,
					    .wakefd = k.fd,
					    .stopping = with_flag ? &stopping : NULL},
			&rs, &eb);
	CHECK_INT(r, -E_CLOSED);
	CHECK_STR(eb.msg, "stopped");
	CHECK(time_mono_ms() - t0 < 1500); /* not the 10 s timeout */
	pthread_join(t, NULL);
	httpc_resp_fini(&rs);
	httpc_fini(&c);
	tsrv_stop(&s);
	close(k.fd);
}

TEST(wake_interrupts_hung_request)
{
	hung_case(NULL, false, false);
	hung_case(NULL, true, true);
	hung_case(PEM_SRV1, true, false);
}

TEST(io_timeout)
{
	struct tsrv s;
	struct httpc c;
	struct httpc_resp rs;
	struct errbuf eb = {0};

	REQUIRE(tsrv_start(&s, NULL, NULL));
	REQUIRE(client_for(&c, &s, "http", "127.0.0.1", NULL, NULL, &eb) == 0);
	CHECK_INT(httpc_fetch(&c, &(struct httpc_req){.timeout_ms = 200, .wakefd = -1}, &rs, &eb),
		  -E_TIMEOUT);
	CHECK_STR(eb.msg, "receive: timed out after 200 ms");
	httpc_resp_fini(&rs);
	httpc_fini(&c);
	tsrv_stop(&s);
}
