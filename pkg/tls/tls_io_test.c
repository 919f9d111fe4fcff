/* Tests for the fd adapter on pkg/ev, and interop with openssl s_client/s_server on loopback. */
#include "pkg/net/net.h"
#include "pkg/tls/tls_int.h"
#include "pkg/tls/tls_test.h"
#include "test/unit.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- an echo server on an ev loop ---------------------------------------------------------------
 * Echoes what it reads; with close_after_line it closes (close_notify) after echoing a line,
 * which lets `openssl s_client -ign_eof` finish on its own. */

struct esrv {
	struct ev_loop *loop;
	struct net_listener lis;
	struct tls_config *cfg;
	bool close_after_line;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* Results of the last connection, under mu. */
	int finished;
	int err;
	char reason[TLS_REASON_SIZE];
	char alpn[16];
	char uri[TLS_URI_SIZE];
	uint16_t suite;
};

struct econn {
	struct ev_io io;
	struct tls_conn tls;
	struct esrv *srv;
	uint8_t pend[16384];
	size_t pend_len;
	bool saw_line;
	bool closing;
};

static void econn_finish(struct econn *k)
{
	struct esrv *s = k->srv;
	const char *alpn = tls_conn_alpn(&k->tls);

	pthread_mutex_lock(&s->mu);
	s->err = tls_conn_error(&k->tls);
	snprintf(s->reason, sizeof(s->reason), "%s", tls_conn_reason(&k->tls));
	snprintf(s->alpn, sizeof(s->alpn), "%s", alpn ? alpn : "");
	snprintf(s->uri, sizeof(s->uri), "%s", tls_conn_peer_uri(&k->tls));
	s->suite = tls_conn_cipher_suite(&k->tls);
	s->finished++;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	ev_io_stop(s->loop, &k->io);
	close(k->io.fd);
	tls_conn_fini(&k->tls);
	free(k);
}

/* One step of the echo: returns 1 to go on, 0 when blocked, -1 when the conn is finished. */
static int econn_step(struct econn *k)
{
	ssize_t n;

	if (k->pend_len) {
		n = tls_io_write(&k->tls, &k->io, k->pend, k->pend_len);
		if (n == -E_AGAIN)
			return 0;
		if (n < 0)
			return -1;
		memmove(k->pend, k->pend + n, k->pend_len - (size_t)n);
		k->pend_len -= (size_t)n;
		if (k->pend_len)
			return 0;
		k->closing = k->saw_line && k->srv->close_after_line;
	}
	if (k->closing) {
		n = tls_io_shutdown(&k->tls, &k->io);
		return n == -E_AGAIN ? 0 : -1;
	}
	n = tls_io_read(&k->tls, &k->io, k->pend, sizeof(k->pend));
	if (n == -E_AGAIN)
		return 0;
	if (n <= 0)
		return -1;
	k->pend_len = (size_t)n;
	k->saw_line = k->saw_line || memchr(k->pend, '\n', k->pend_len);
	return 1;
}

static void econn_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct econn *k = ev_container_of(io, struct econn, io);
	int r = 1;

	(void)events;
	for (int i = 0; i < 64 && r > 0; i++)
		r = econn_step(k);
	if (r < 0) {
		econn_finish(k);
		return;
	}
	ev_io_set(loop, io, tls_io_interest(&k->tls));
}

static void econn_start(struct esrv *s, int fd)
{
	struct econn *k = xcalloc(1, sizeof(*k));

	k->srv = s;
	ev_io_init(&k->io, fd, econn_io);
	if (tls_conn_init_server(&k->tls, s->cfg) < 0 ||
	    ev_io_start(s->loop, &k->io, EV_READ | EV_WRITE) < 0) {
		unit_fail(__FILE__, __LINE__, "econn_start");
		close(fd);
		tls_conn_fini(&k->tls);
		free(k);
	}
}

static void esrv_accept(struct net_listener *l, int fd, const struct net_addr *peer)
{
	(void)peer;
	econn_start(l->arg, fd);
}

static void *esrv_thread(void *arg)
{
	struct esrv *s = arg;

	ev_loop_run(s->loop);
	return NULL;
}

static bool esrv_init(struct esrv *s, struct tls_config *cfg)
{
	struct errbuf eb = {0};

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->cfg = cfg;
	s->loop = ev_loop_new(&eb);
	return s->loop != NULL;
}

/* Waits (bounded, so a bug fails instead of hanging) until `n` conns have finished. */
static bool esrv_wait(struct esrv *s, int n)
{
	struct timespec ts;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 30;
	pthread_mutex_lock(&s->mu);
	while (s->finished < n && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0)
		;
	ok = s->finished >= n;
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static void esrv_fini(struct esrv *s)
{
	ev_loop_free(s->loop);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
}

/* ---- a client on the same loop --------------------------------------------------------------- */

struct ecli {
	struct ev_io io;
	struct tls_conn tls;
	const uint8_t *out;
	uint8_t *in;
	size_t len, sent, got;
	bool shut, eof;
	bool zc;  /* small tls_io_write_more() writes + tls_io_flush(), tls_io_read_peek() */
	int fail; /* first unexpected result */
};

/* The usual callback shape: pump (handshake, flush, fill), then plaintext both ways. */
static int ecli_step(struct ecli *c)
{
	uint8_t tmp[4096];
	ssize_t n;
	bool progress = false;
	int st = tls_io_pump(&c->tls, &c->io);

	if (st < 0)
		return st;
	if (!(st & TLS_ST_DONE))
		return (st & TLS_ST_ERROR) ? -tls_error_class(tls_conn_error(&c->tls)) : 0;
	if (c->sent < c->len && c->zc) {
		int r;

		/* Many small writes: they fill whole records, the flush seals the last one. */
		for (int i = 0; i < 40 && c->sent < c->len; i++) {
			n = tls_io_write_more(&c->tls, &c->io, c->out + c->sent,
					      MIN(c->len - c->sent, 1000));
			if (n == -E_AGAIN)
				break;
			if (n < 0)
				return (int)n;
			c->sent += (size_t)n;
			progress = true;
		}
		r = tls_io_flush(&c->tls, &c->io);
		if (r < 0)
			return r;
	} else if (c->sent < c->len) {
		n = tls_io_write(&c->tls, &c->io, c->out + c->sent, MIN(c->len - c->sent, 20000));
		if (n > 0) {
			c->sent += (size_t)n;
			progress = true;
		} else if (n != -E_AGAIN) {
			return (int)n;
		}
	}
	if (c->zc) {
		const uint8_t *p;

		n = tls_io_read_peek(&c->tls, &c->io, &p);
		if (n > 0) {
			if ((size_t)n > c->len - c->got)
				return -E_PROTO;
			memcpy(c->in + c->got, p, (size_t)n);
			tls_conn_plain_done(&c->tls, (size_t)n);
		}
	} else {
		n = tls_io_read(&c->tls, &c->io, tmp, sizeof(tmp));
		if (n > 0) {
			if ((size_t)n > c->len - c->got)
				return -E_PROTO;
			memcpy(c->in + c->got, tmp, (size_t)n);
		}
	}
	if (n > 0) {
		c->got += (size_t)n;
		progress = true;
	} else if (n == 0) {
		c->eof = true;
		return 0;
	} else if (n != -E_AGAIN) {
		return (int)n;
	}
	if (c->got == c->len && !c->shut) {
		n = tls_io_shutdown(&c->tls, &c->io);
		if (n == 0)
			c->shut = true;
		else if (n != -E_AGAIN)
			return (int)n;
	}
	return progress;
}

static void ecli_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct ecli *c = ev_container_of(io, struct ecli, io);
	int r = 1;

	(void)events;
	for (int i = 0; i < 64 && r > 0; i++)
		r = ecli_step(c);
	if (r < 0 && !c->fail)
		c->fail = r;
	if (r < 0 || c->eof) {
		ev_io_stop(loop, io);
		ev_loop_stop(loop);
		return;
	}
	ev_io_set(loop, io, tls_io_interest(&c->tls));
}

static struct tls_config *server_cfg(struct tt_cred *cred, const char *leaf, bool mtls)
{
	struct tls_server_opts so;
	struct errbuf eb = {0};
	struct tls_config *cfg;

	if (!tt_cred_load(cred, leaf, NULL))
		return NULL;
	tt_server_opts(&so, cred);
	if (!mtls) {
		so.client_auth = TLS_CLIENT_AUTH_NONE;
		so.anchor_certs_len = 0;
	}
	cfg = tls_config_new_server(&so, &eb);
	if (!cfg)
		unit_fail(__FILE__, __LINE__, "%s", eb.msg);
	return cfg;
}

static struct tls_config *client_cfg(struct tt_cred *cred, const char *leaf)
{
	struct tls_client_opts co;
	struct errbuf eb = {0};
	struct tls_config *cfg;

	if (leaf && !tt_cred_load(cred, leaf, NULL))
		return NULL;
	tt_client_opts(&co, leaf ? cred : NULL);
	cfg = tls_config_new_client(&co, &eb);
	if (!cfg)
		unit_fail(__FILE__, __LINE__, "%s", eb.msg);
	return cfg;
}

static void echo_mebibyte(bool zc)
{
	struct tt_cred sc, cc;
	struct tls_config *scfg, *ccfg;
	struct esrv s;
	struct ecli c;
	size_t n = 1 << 20;
	int sv[2];

	REQUIRE(tt_fixtures());
	memset(&c, 0, sizeof(c));
	c.zc = zc;
	scfg = server_cfg(&sc, "server", true);
	ccfg = client_cfg(&cc, "client");
	REQUIRE(scfg && ccfg && esrv_init(&s, scfg));
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	econn_start(&s, sv[0]);
	c.out = xmalloc(n);
	c.in = xmalloc(n);
	c.len = n;
	rand_bytes((void *)c.out, n);
	REQUIRE(tls_conn_init_client(&c.tls, ccfg, NULL) == 0);
	ev_io_init(&c.io, sv[1], ecli_io);
	REQUIRE(ev_io_start(s.loop, &c.io, EV_READ | EV_WRITE) == 0);
	REQUIRE(ev_loop_run(s.loop) == 0);
	CHECK_INT(c.fail, 0);
	CHECK_INT(c.got, n);
	CHECK(memcmp(c.out, c.in, n) == 0);
	CHECK(c.shut);
	CHECK(c.eof);
	CHECK_INT(tls_conn_error(&c.tls), 0);
	CHECK_STR(tls_conn_alpn(&c.tls), "h2");
	/* The server finished on the client's close_notify, cleanly. */
	CHECK(esrv_wait(&s, 1));
	CHECK_INT(s.err, 0);
	CHECK_STR(s.uri, "spiffe://cluster.local/ns/c/sa/d");
	close(sv[1]);
	tls_conn_fini(&c.tls);
	esrv_fini(&s);
	free((void *)c.out);
	free(c.in);
	tls_config_unref(scfg);
	tls_config_unref(ccfg);
	tt_cred_fini(&sc);
	tt_cred_fini(&cc);
}

TEST(fd_adapter_on_one_loop_echoes_a_mebibyte)
{
	echo_mebibyte(false);
}

TEST(fd_adapter_write_more_flush_and_read_peek)
{
	echo_mebibyte(true);
}

TEST(fd_adapter_reports_truncation_and_socket_errors)
{
	struct tt_cred sc, cc;
	struct tls_config *scfg, *ccfg;
	struct tls_conn cli, srv;
	struct ev_io cio, sio;
	int sv[2];
	ssize_t n;

	REQUIRE(tt_fixtures());
	scfg = server_cfg(&sc, "server", false);
	ccfg = client_cfg(&cc, NULL);
	REQUIRE(scfg && ccfg);
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	REQUIRE(tls_conn_init_client(&cli, ccfg, NULL) == 0);
	REQUIRE(tls_conn_init_server(&srv, scfg) == 0);
	ev_io_init(&cio, sv[0], NULL);
	ev_io_init(&sio, sv[1], NULL);
	for (int i = 0; i < 20 && !((tls_conn_state(&cli) & tls_conn_state(&srv)) & TLS_ST_DONE);
	     i++) {
		CHECK(tls_io_pump(&cli, &cio) >= 0);
		CHECK(tls_io_pump(&srv, &sio) >= 0);
	}
	REQUIRE(tls_conn_state(&cli) & tls_conn_state(&srv) & TLS_ST_DONE);
	CHECK_INT(tls_io_read(&srv, &sio, (uint8_t[8]){0}, 8), -E_AGAIN);
	CHECK(tls_io_interest(&srv) & EV_READ);
	CHECK(!(tls_io_interest(&srv) & EV_WRITE));
	CHECK_INT(tls_io_write(&cli, &cio, "hi", 2), 2);
	/* The peer goes away without close_notify. */
	shutdown(sv[0], SHUT_WR);
	{
		char buf[8];

		n = tls_io_read(&srv, &sio, buf, sizeof(buf));
		CHECK_INT(n, 2);
		n = tls_io_read(&srv, &sio, buf, sizeof(buf));
		CHECK_INT(n, -E_CLOSED);
		CHECK_INT(tls_conn_error(&srv), TLS_ERR_TRUNCATED);
	}
	/* Writing into a closed socket: a socket error, with errno's words. */
	close(sv[1]);
	n = tls_io_write(&cli, &cio, "again", 5);
	for (int i = 0; i < 3 && n > 0; i++)
		n = tls_io_write(&cli, &cio, "again", 5);
	CHECK(n == -E_CLOSED || n == -E_IO);
	CHECK_INT(tls_conn_error(&cli), TLS_ERR_IO);
	CHECK_CONTAINS(tls_conn_reason(&cli), "send: ");
	close(sv[0]);
	tls_conn_fini(&cli);
	tls_conn_fini(&srv);
	tls_config_unref(scfg);
	tls_config_unref(ccfg);
	tt_cred_fini(&sc);
	tt_cred_fini(&cc);
}

static void noop_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	(void)loop;
	(void)io;
	(void)events;
}

/* A watcher started on a loop is read only while the loop says the socket is readable: no read
 * before the edge is harvested, and a short read consumes the readiness (no EAGAIN read after). */
TEST(fd_adapter_reads_only_on_readiness)
{
	struct tt_cred sc, cc;
	struct tls_config *scfg, *ccfg;
	struct tls_conn cli, srv;
	struct ev_io cio, sio;
	struct ev_loop *loop;
	struct errbuf eb = {0};
	uint8_t buf[8];
	int sv[2];

	REQUIRE(tt_fixtures());
	scfg = server_cfg(&sc, "server", false);
	ccfg = client_cfg(&cc, NULL);
	REQUIRE(scfg && ccfg);
	loop = ev_loop_new(&eb);
	REQUIRE(loop);
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	REQUIRE(tls_conn_init_client(&cli, ccfg, NULL) == 0);
	REQUIRE(tls_conn_init_server(&srv, scfg) == 0);
	ev_io_init(&cio, sv[0], NULL);
	ev_io_init(&sio, sv[1], noop_io);
	for (int i = 0; i < 20 && !((tls_conn_state(&cli) & tls_conn_state(&srv)) & TLS_ST_DONE);
	     i++) {
		CHECK(tls_io_pump(&cli, &cio) >= 0);
		CHECK(tls_io_pump(&srv, &sio) >= 0);
	}
	REQUIRE(tls_conn_state(&cli) & tls_conn_state(&srv) & TLS_ST_DONE);
	CHECK(ev_io_may_read(&sio)); /* not on a loop: always */
	REQUIRE(ev_io_start(loop, &sio, EV_READ) == 0);
	CHECK(!ev_io_may_read(&sio));
	CHECK_INT(tls_io_write(&cli, &cio, "hi", 2), 2);
	/* The record is in the socket, but the loop has not reported it yet. */
	CHECK_INT(tls_io_read(&srv, &sio, buf, sizeof(buf)), -E_AGAIN);
	CHECK_INT(ev_loop_run_once(loop, 1000), 0);
	CHECK(ev_io_may_read(&sio));
	CHECK_INT(tls_io_read(&srv, &sio, buf, sizeof(buf)), 2);
	CHECK(memcmp(buf, "hi", 2) == 0);
	CHECK(!ev_io_may_read(&sio)); /* the short read drained it */
	CHECK_INT(tls_io_read(&srv, &sio, buf, sizeof(buf)), -E_AGAIN);
	ev_io_stop(loop, &sio);
	close(sv[0]);
	close(sv[1]);
	tls_conn_fini(&cli);
	tls_conn_fini(&srv);
	ev_loop_free(loop);
	tls_config_unref(scfg);
	tls_config_unref(ccfg);
	tt_cred_fini(&sc);
	tt_cred_fini(&cc);
}

/* ---- openssl s_client against our server ----------------------------------------------------- */

struct listening {
	struct esrv s;
	struct tt_cred cred;
	pthread_t th;
	uint16_t port;
};

static bool listening_start(struct listening *l, bool mtls)
{
	struct net_addr a;
	struct errbuf eb = {0};
	struct tls_config *cfg;

	if (!tt_fixtures() || !(cfg = server_cfg(&l->cred, "server", mtls)))
		return false;
	if (!esrv_init(&l->s, cfg))
		return false;
	l->s.close_after_line = true;
	if (net_addr_parse(&a, "127.0.0.1:0", &eb) < 0 ||
	    net_listener_start(&l->s.lis, l->s.loop, &a, NULL, esrv_accept, &l->s, &eb) < 0) {
		unit_fail(__FILE__, __LINE__, "listen: %s", eb.msg);
		return false;
	}
	l->port = net_addr_port(&l->s.lis.addr);
	return pthread_create(&l->th, NULL, esrv_thread, &l->s) == 0;
}

static void listening_stop(struct listening *l)
{
	ev_loop_stop(l->s.loop);
	pthread_join(l->th, NULL);
	net_listener_stop(&l->s.lis);
	tls_config_unref(l->s.cfg);
	esrv_fini(&l->s);
	tt_cred_fini(&l->cred);
}

/* Runs a shell command, returns its exit status and its output (stdout+stderr) in out. */
static int run(const char *cmd, char *out, size_t cap)
{
	FILE *p = popen(cmd, "r");
	size_t n = 0, k;
	int st;

	out[0] = '\0';
	if (!p)
		return -1;
	while (n + 1 < cap && (k = fread(out + n, 1, cap - 1 - n, p)) > 0)
		n += k;
	out[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int s_client_as(const struct listening *l, const char *cert, const char *extra, char *out,
		       size_t cap)
{
	char cmd[2048];
	FILE *f = fopen(tt_path("input", ".txt"), "w");

	if (!f)
		return -1;
	fputs("ping-from-openssl\n", f);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "timeout 30 openssl s_client -connect 127.0.0.1:%u -CAfile '%s' -cert '%s' "
		 "-key '%s' -verify_return_error -ign_eof %s <'%s' 2>&1",
		 l->port, tt_path("root", ".pem"), tt_path(cert, ".pem"), tt_path(cert, ".key"),
		 extra, tt_path("input", ".txt"));
	return run(cmd, out, cap);
}

static int s_client(const struct listening *l, const char *extra, char *out, size_t cap)
{
	return s_client_as(l, "client", extra, out, cap);
}

TEST(openssl_s_client_tls12_h2_mtls_against_our_server)
{
	static char out[65536];
	struct listening l;

	REQUIRE(listening_start(&l, true));
	CHECK_INT(s_client(&l, "-tls1_2 -alpn h2", out, sizeof(out)), 0);
	CHECK_CONTAINS(out, "ALPN protocol: h2");
	CHECK_CONTAINS(out, "Verify return code: 0 (ok)");
	CHECK_CONTAINS(out, "Protocol  : TLSv1.2");
	CHECK_CONTAINS(out, "Cipher    : ECDHE-ECDSA-");
	CHECK_CONTAINS(out, "\nping-from-openssl\n"); /* echoed back */
	REQUIRE(esrv_wait(&l.s, 1));
	CHECK_INT(l.s.err, 0);
	CHECK_STR(l.s.alpn, "h2");
	CHECK_STR(l.s.uri, "spiffe://cluster.local/ns/c/sa/d");

	/* ChaCha20 when the client asks only for it. */
	CHECK_INT(s_client(&l, "-tls1_2 -alpn h2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305", out,
			   sizeof(out)),
		  0);
	CHECK_CONTAINS(out, "Cipher    : ECDHE-ECDSA-CHACHA20-POLY1305");
	REQUIRE(esrv_wait(&l.s, 2));
	CHECK_INT(l.s.suite, BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256);
	listening_stop(&l);
}

TEST(openssl_clients_that_must_be_refused)
{
	static char out[65536];
	struct listening l;

	REQUIRE(listening_start(&l, true));
	/* TLS 1.3 only: no TLS 1.2 suite in the ClientHello. */
	CHECK(s_client(&l, "-tls1_3 -alpn h2", out, sizeof(out)) != 0);
	CHECK_CONTAINS(out, "alert handshake failure");
	REQUIRE(esrv_wait(&l.s, 1));
	CHECK_INT(l.s.err, TLS_ERR_NO_SHARED_CIPHER);
	CHECK_CONTAINS(l.s.reason, "no shared cipher suite");

	/* Wrong ALPN. */
	CHECK(s_client(&l, "-tls1_2 -alpn http/1.1", out, sizeof(out)) != 0);
	CHECK_CONTAINS(out, "no application protocol");
	REQUIRE(esrv_wait(&l.s, 2));
	CHECK_INT(l.s.err, TLS_ERR_ALPN);

	/* No client certificate (and mTLS is required). */
	{
		char cmd[1024];

		snprintf(cmd, sizeof(cmd),
			 "timeout 30 openssl s_client -connect 127.0.0.1:%u -CAfile '%s' -tls1_2 "
			 "-alpn h2 -ign_eof </dev/null 2>&1",
			 l.port, tt_path("root", ".pem"));
		CHECK(run(cmd, out, sizeof(out)) != 0 || !strstr(out, "ping"));
	}
	REQUIRE(esrv_wait(&l.s, 3));
	CHECK_INT(l.s.err, BR_ERR_NO_CLIENT_AUTH);

	/* A client certificate that chains to our root but has a P-384 key. */
	CHECK(s_client_as(&l, "p384", "-tls1_2 -alpn h2", out, sizeof(out)) != 0);
	CHECK_CONTAINS(out, "unsupported certificate");
	REQUIRE(esrv_wait(&l.s, 4));
	CHECK_INT(l.s.err, TLS_ERR_PEER_KEY);
	CHECK_STR(l.s.reason, "peer certificate key is not ECDSA P-256");

	/* A client certificate from another CA. */
	CHECK(s_client_as(&l, "stranger", "-tls1_2 -alpn h2", out, sizeof(out)) != 0);
	CHECK_CONTAINS(out, "unknown ca");
	REQUIRE(esrv_wait(&l.s, 5));
	CHECK_INT(l.s.err, BR_ERR_X509_NOT_TRUSTED);
	listening_stop(&l);
}

/* ---- our client against openssl s_server ----------------------------------------------------- */

struct sserver {
	pid_t pid;
	int out; /* its stdout+stderr */
	uint16_t port;
};

static uint16_t free_port(void)
{
	struct net_addr a;
	struct errbuf eb = {0};
	uint16_t port = 0;
	int fd;

	if (net_addr_parse(&a, "127.0.0.1:0", &eb) < 0)
		return 0;
	fd = net_listen(&a, NULL, &eb);
	if (fd < 0)
		return 0;
	if (net_sock_local(fd, &a) == 0)
		port = net_addr_port(&a);
	close(fd);
	return port;
}

/* Starts `openssl s_server ARGS -accept 127.0.0.1:PORT` and waits for its "ACCEPT" line. */
static bool sserver_start(struct sserver *s, const char *args)
{
	char cmd[2048], buf[4096];
	size_t n = 0;
	int pfd[2];

	s->port = free_port();
	if (!s->port || pipe(pfd) < 0)
		return false;
	/* -www: answer "GET /" with a status page and never read stdin (in its interactive mode
	 * s_server drops the connection when stdin ends). */
	snprintf(cmd, sizeof(cmd),
		 "exec openssl s_server -accept 127.0.0.1:%u -naccept 1 -www %s </dev/null",
		 s->port, args);
	s->pid = fork();
	if (s->pid < 0)
		return false;
	if (s->pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		close(pfd[1]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	s->out = pfd[0];
	while (n + 1 < sizeof(buf)) {
		struct pollfd p = {s->out, POLLIN, 0};
		ssize_t k;

		if (poll(&p, 1, 30000) <= 0)
			break;
		k = read(s->out, buf + n, sizeof(buf) - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
		buf[n] = '\0';
		if (strstr(buf, "ACCEPT"))
			return true;
	}
	unit_fail(__FILE__, __LINE__, "s_server did not start: %s", n ? buf : "(no output)");
	return false;
}

static void sserver_stop(struct sserver *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
	}
	if (s->out >= 0)
		close(s->out);
	s->pid = 0;
	s->out = -1;
}

/* Connects our client, sends req once the handshake is done and reads until EOF or error.
 * Returns 0 at a clean EOF, else -E_*. */
static int client_run(struct tls_conn *c, uint16_t port, const char *req, char *out, size_t cap)
{
	struct net_addr a;
	struct errbuf eb = {0};
	struct ev_io io;
	size_t got = 0;
	bool sent = false;
	int fd, r = -E_TIMEOUT;

	out[0] = '\0';
	net_addr_parse(&a, "127.0.0.1:0", &eb);
	net_addr_set_port(&a, port);
	fd = net_connect_timeout(&a, 10000, NULL, &eb);
	if (fd < 0)
		return fd;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	ev_io_init(&io, fd, NULL);
	for (int i = 0; i < 10000; i++) {
		ssize_t n;
		struct pollfd p = {fd, 0, 0};
		unsigned want;

		if (!sent && (tls_conn_state(c) & TLS_ST_DONE))
			sent = tls_io_write(c, &io, req, strlen(req)) == (ssize_t)strlen(req);
		n = tls_io_read(c, &io, out + got, cap - 1 - got);
		if (n > 0) {
			got += (size_t)n;
			out[got] = '\0';
			continue;
		}
		if (n != -E_AGAIN) {
			r = (int)n;
			break;
		}
		if (!sent && (tls_conn_state(c) & TLS_ST_DONE))
			continue; /* the handshake ended in that read: write before waiting */
		want = tls_io_interest(c);
		p.events = (short)(((want & EV_READ) ? POLLIN : 0) |
				   ((want & EV_WRITE) ? POLLOUT : 0));
		if (poll(&p, 1, 30000) <= 0)
			break;
	}
	close(fd);
	return r;
}

TEST(our_client_against_openssl_s_server)
{
	static char out[65536];
	char args[2048];
	struct sserver s = {.out = -1};
	struct tt_cred cc;
	struct tls_config *ccfg;
	struct tls_conn c;

	REQUIRE(tt_fixtures());
	ccfg = client_cfg(&cc, "client");
	REQUIRE(ccfg);

	/* mTLS, ALPN h2, our client certificate verified by OpenSSL. */
	snprintf(args, sizeof(args),
		 "-tls1_2 -alpn h2 -cert '%s' -key '%s' -CAfile '%s' -Verify 1 "
		 "-verify_return_error",
		 tt_path("server", ".pem"), tt_path("server", ".key"), tt_path("root", ".pem"));
	REQUIRE(sserver_start(&s, args));
	REQUIRE(tls_conn_init_client(&c, ccfg, NULL) == 0);
	CHECK_INT(client_run(&c, s.port, "GET / HTTP/1.0\r\n\r\n", out, sizeof(out)), 0);
	CHECK_CONTAINS(out, "HTTP/1.0 200 ok");
	CHECK_CONTAINS(out, "Protocol  : TLSv1.2");
	CHECK_STR(tls_conn_alpn(&c), "h2");
	CHECK_STR(tls_conn_peer_uri(&c), "spiffe://cluster.local/ns/a/sa/b");
	CHECK_INT(tls_conn_error(&c), 0);
	tls_conn_fini(&c);
	sserver_stop(&s);

	/* An RSA server certificate: OpenSSL finds no suite it can serve to us. */
	snprintf(args, sizeof(args), "-tls1_2 -alpn h2 -cert '%s' -key '%s'",
		 tt_path("rsa", ".pem"), tt_path("rsa", ".key"));
	REQUIRE(sserver_start(&s, args));
	REQUIRE(tls_conn_init_client(&c, ccfg, NULL) == 0);
	CHECK(client_run(&c, s.port, "x", out, sizeof(out)) < 0);
	CHECK_INT(tls_conn_error(&c), BR_ERR_RECV_FATAL_ALERT + 40);
	tls_conn_fini(&c);
	sserver_stop(&s);

	/* A P-384 certificate: we offer only P-256, which binds the server's key too (RFC 8422
	 * §5.1), so OpenSSL has nothing to serve. */
	snprintf(args, sizeof(args), "-tls1_2 -alpn h2 -cert '%s' -key '%s'",
		 tt_path("p384", ".pem"), tt_path("p384", ".key"));
	REQUIRE(sserver_start(&s, args));
	REQUIRE(tls_conn_init_client(&c, ccfg, NULL) == 0);
	CHECK(client_run(&c, s.port, "x", out, sizeof(out)) < 0);
	CHECK_INT(tls_conn_error(&c), BR_ERR_RECV_FATAL_ALERT + 40);
	tls_conn_fini(&c);
	sserver_stop(&s);

	/* A TLS 1.3-only server. */
	snprintf(args, sizeof(args), "-tls1_3 -alpn h2 -cert '%s' -key '%s'",
		 tt_path("server", ".pem"), tt_path("server", ".key"));
	REQUIRE(sserver_start(&s, args));
	REQUIRE(tls_conn_init_client(&c, ccfg, NULL) == 0);
	CHECK(client_run(&c, s.port, "x", out, sizeof(out)) < 0);
	CHECK_INT(tls_conn_error(&c), BR_ERR_RECV_FATAL_ALERT + 70);
	CHECK_STR(tls_conn_reason(&c), "peer sent alert protocol_version (70)");
	tls_conn_fini(&c);
	sserver_stop(&s);

	tls_config_unref(ccfg);
	tt_cred_fini(&cc);
}
