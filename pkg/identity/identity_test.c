/* Tests for the identity manager: local signing, and a remote CA played by an in-test HTTPS
 * server (pkg/tls + pkg/ca) that can fail, hang, lie or refuse on command. */
#include "pkg/identity/identity_int.h"

#include "pkg/http1/http1.h"
#include "test/unit.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define TD "cluster.local"
#define ID_APP "spiffe://cluster.local/ns/default/sa/app"
#define ID_OTHER "spiffe://cluster.local/ns/other/sa/x"
#define TOKEN "amb1.s3cr3t-T0KEN-never-logged-0123456789abcdefghijklmn"

/* ---- fake clock --------------------------------------------------------------------------- */

static _Atomic int64_t g_now_ms;

static int64_t fake_now(void *arg)
{
	(void)arg;
	return atomic_load(&g_now_ms);
}

static void clock_reset(void)
{
	atomic_store(&g_now_ms, time_real_ms());
}

static void clock_add(int64_t ms)
{
	atomic_fetch_add(&g_now_ms, ms);
}

static void sleep_ms(unsigned ms)
{
	poll(NULL, 0, (int)ms);
}

static char *tpath(const char *name)
{
	return xasprintf("%s/%s", unit_tmpdir(), name);
}

static struct ca_authority *make_ca(const char *name)
{
	char *dir = tpath(name);
	struct ca_authority *a = NULL;
	struct errbuf eb = {0};

	if (ca_init(dir, TD, false, fake_now(NULL) / 1000, &eb) < 0 ||
	    ca_authority_load(dir, NULL, fake_now(NULL) / 1000, &a, &eb) < 0)
		unit_fail(__FILE__, __LINE__, "CA %s: %s", dir, eb.msg);
	free(dir);
	return a;
}

/* ---- the test CA server -------------------------------------------------------------------- */

enum mode { M_OK = 0, M_503, M_429, M_HANG, M_REFUSE, M_WRONG_ID, M_UNTRUSTED };

struct tsrv {
	struct ca_authority *auth;  /* signs answers and the serving certificate */
	struct ca_authority *other; /* M_UNTRUSTED signs with this one */
	struct tls_config *tls;
	int lfd;
	int stop[2];
	uint16_t port;
	pthread_t th;
	_Atomic int mode;
	atomic_int requests;
	char auth_hdr[256];
	pthread_mutex_t mu;
};

static int srv_flush(struct tls_conn *t, int fd)
{
	size_t len;
	const uint8_t *p;

	while ((p = tls_conn_pull_cipher(t, &len)) && len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n <= 0)
			return -1;
		tls_conn_cipher_done(t, (size_t)n);
	}
	return 0;
}

static int srv_recv(struct tls_conn *t, int fd)
{
	size_t cap;
	uint8_t *w = tls_conn_cipher_wbuf(t, &cap);
	ssize_t n;

	if (!w || !cap)
		return -1;
	n = recv(fd, w, cap, 0);
	if (n <= 0) {
		tls_conn_push_eof(t);
		return -1;
	}
	tls_conn_cipher_commit(t, (size_t)n);
	return 0;
}

/* Reads one request (head + Content-Length body) into b; 0 or -1. */
static int srv_read_request(struct tls_conn *t, int fd, struct buf *b)
{
	for (;;) {
		size_t len;
		const uint8_t *p = tls_conn_pull_plain(t, &len);
		const char *s;
		const char *end;

		if (p && len) {
			buf_append(b, p, len);
			tls_conn_plain_done(t, len);
			s = xstrndup((const char *)buf_rptr(b), buf_len(b));
			end = strstr(s, "\r\n\r\n");
			if (end) {
				const char *cl = strcasestr(s, "content-length:");
				size_t want = cl ? strtoul(cl + 15, NULL, 10) : 0;

				if (buf_len(b) >= (size_t)(end + 4 - s) + want) {
					free((void *)s);
					buf_append(b, "", 1); /* NUL-terminated for the caller */
					return 0;
				}
			}
			free((void *)s);
			continue;
		}
		if (srv_flush(t, fd) < 0 || (tls_conn_state(t) & (TLS_ST_ERROR | TLS_ST_EOF)))
			return -1;
		if (srv_recv(t, fd) < 0)
			return -1;
	}
}

static void srv_write(struct tls_conn *t, int fd, const char *s, size_t n)
{
	while (n) {
		size_t w = tls_conn_push_plain(t, s, n);

		s += w;
		n -= w;
		tls_conn_flush(t);
		if (srv_flush(t, fd) < 0 || (tls_conn_state(t) & TLS_ST_ERROR))
			return;
	}
	tls_conn_close_notify(t);
	srv_flush(t, fd);
}

static void srv_respond(struct tls_conn *t, int fd, int status, const char *extra, const char *body)
{
	char *r = xasprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%s"
			    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			    status, http1_reason(status), extra, strlen(body), body);

	srv_write(t, fd, r, strlen(r));
	free(r);
}

static void srv_issue(struct tsrv *s, struct tls_conn *t, int fd, const char *req, int mode)
{
	const char *body = strstr(req, "\r\n\r\n") + 4;
	cJSON *root = NULL;
	struct x509_csr *csr = NULL;
	struct ca_issued is = {0};
	struct errbuf eb = {0};
	struct buf out;
	struct json_writer w;
	const cJSON *jc;
	const cJSON *ji;
	const cJSON *jt;

	buf_init(&out, 0);
	if (json_parse(body, strlen(body), NULL, &root, NULL) < 0) {
		srv_respond(t, fd, 400, "", "{\"error\":\"bad json\"}");
		return;
	}
	jc = cJSON_GetObjectItem(root, "csr");
	ji = cJSON_GetObjectItem(root, "identity");
	jt = cJSON_GetObjectItem(root, "ttlSeconds");
	if (!cJSON_IsString(jc) || !cJSON_IsString(ji) || !cJSON_IsNumber(jt) ||
	    x509_csr_parse_pem(jc->valuestring, strlen(jc->valuestring), &csr, &eb) < 0) {
		srv_respond(t, fd, 400, "", "{\"error\":\"bad request\"}");
		goto out;
	}
	{
		struct ca_issue_req ir = {.pub = &csr->pub,
					  .identity =
						  mode == M_WRONG_ID ? ID_OTHER : ji->valuestring,
					  .ttl = (int64_t)jt->valuedouble,
					  .now = fake_now(NULL) / 1000};
		if (ca_issue(mode == M_UNTRUSTED ? s->other : s->auth, &ir, &is, &eb) < 0) {
			srv_respond(t, fd, 403, "", "{\"error\":\"refused\"}");
			goto out;
		}
	}
	json_writer_init(&w, &out, 0);
	json_write_object_begin(&w);
	json_write_key(&w, "certChain");
	json_write_array_begin(&w);
	for (size_t i = 0; i < is.n; i++)
		json_write_string(&w, is.pem[i]);
	json_write_array_end(&w);
	json_write_key(&w, "serialNumber");
	json_write_string(&w, is.serial);
	json_write_key(&w, "warnings");
	json_write_array_begin(&w);
	json_write_array_end(&w);
	json_write_object_end(&w);
	json_writer_finish(&w);
	buf_append(&out, "", 1);
	srv_respond(t, fd, 200, "", (const char *)buf_rptr(&out));
out:
	ca_issued_fini(&is);
	x509_csr_free(csr);
	json_free(root);
	buf_fini(&out);
}

static void srv_conn(struct tsrv *s, int fd)
{
	struct tls_conn t;
	struct buf req;
	int mode = atomic_load(&s->mode);
	struct timeval tv = {.tv_sec = 5};

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (mode == M_REFUSE)
		return;
	memset(&t, 0, sizeof(t));
	buf_init(&req, 1 << 20);
	if (tls_conn_init_server(&t, s->tls) < 0)
		goto out;
	tls_conn_set_time(&t, fake_now(NULL) / 1000);
	if (srv_read_request(&t, fd, &req) < 0)
		goto out;
	atomic_fetch_add(&s->requests, 1);
	{
		const char *a = strcasestr((const char *)buf_rptr(&req), "\r\nauthorization:");
		pthread_mutex_lock(&s->mu);
		snprintf(s->auth_hdr, sizeof(s->auth_hdr), "%.*s",
			 a ? (int)strcspn(a + 2, "\r") : 0, a ? a + 2 : "");
		pthread_mutex_unlock(&s->mu);
	}
	switch (mode) {
	case M_503:
		srv_respond(&t, fd, 503, "", "{\"error\":\"CA is down for maintenance\"}");
		break;
	case M_429:
		srv_respond(&t, fd, 429, "Retry-After: 30\r\n", "{\"error\":\"slow down\"}");
		break;
	case M_HANG: {
		struct pollfd p = {.fd = s->stop[0], .events = POLLIN};
		poll(&p, 1, 5000);
		break;
	}
	default: srv_issue(s, &t, fd, (const char *)buf_rptr(&req), mode); break;
	}
out:
	tls_conn_fini(&t);
	buf_fini(&req);
}

static void *srv_main(void *arg)
{
	struct tsrv *s = arg;

	for (;;) {
		struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN},
				      {.fd = s->stop[0], .events = POLLIN}};
		int fd;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		fd = net_accept(s->lfd, NULL);
		if (fd < 0)
			continue;
		srv_conn(s, fd);
		close(fd);
	}
	return NULL;
}

/* Serving certificate for 127.0.0.1 from auth, plus the ca_root file (auth's roots). */
static bool tsrv_start(struct tsrv *s, const char *root_file)
{
	struct x509_key *key = NULL;
	struct ca_issued is = {0};
	struct x509_chain ch = {0};
	br_x509_certificate certs[X509_MAX_CHAIN];
	struct x509_ip ip = {.len = 4, .a = {127, 0, 0, 1}};
	struct errbuf eb = {0};
	struct net_addr a;
	struct buf all;
	FILE *f;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	s->auth = make_ca("ca");
	s->other = make_ca("other-ca");
	if (!s->auth || !s->other || x509_key_generate(&key) < 0)
		return false;
	{
		struct ca_issue_req r = {.pub = x509_key_public(key),
					 .identity =
						 "spiffe://" TD "/ns/istio-system/sa/ambient-ca",
					 .ttl = 86400,
					 .now = fake_now(NULL) / 1000,
					 .ips = &ip,
					 .n_ips = 1};
		if (ca_issue(s->auth, &r, &is, &eb) < 0)
			return false;
	}
	buf_init(&all, 0);
	for (size_t i = 0; i < is.n; i++)
		buf_append_str(&all, is.pem[i]);
	if (x509_chain_parse_pem((const char *)buf_rptr(&all), buf_len(&all), &ch, &eb) < 0)
		return false;
	buf_fini(&all);
	for (size_t i = 0; i < ch.n; i++)
		certs[i] = (br_x509_certificate){ch.v[i]->der, ch.v[i]->len};
	s->tls = tls_config_new_server(&(struct tls_server_opts){.chain = certs,
								 .chain_len = ch.n - 1,
								 .key = x509_key_br(key),
								 .half_duplex = true},
				       &eb);
	x509_chain_fini(&ch);
	ca_issued_fini(&is);
	x509_key_free(key);
	if (!s->tls)
		return false;
	f = fopen(root_file, "w");
	for (size_t i = 0; i < s->auth->n_root; i++)
		fputs(s->auth->root_pem[i], f);
	fclose(f);
	net_addr_parse(&a, "127.0.0.1:0", NULL);
	s->lfd = net_listen(&a, NULL, &eb);
	if (s->lfd < 0 || pipe(s->stop) < 0)
		return false;
	net_sock_local(s->lfd, &a);
	s->port = net_addr_port(&a);
	return pthread_create(&s->th, NULL, srv_main, s) == 0;
}

static void tsrv_stop(struct tsrv *s)
{
	if (write(s->stop[1], "x", 1) < 0)
		return;
	pthread_join(s->th, NULL);
	close(s->lfd);
	close(s->stop[0]);
	close(s->stop[1]);
	tls_config_unref(s->tls);
	ca_authority_free(s->auth);
	ca_authority_free(s->other);
	pthread_mutex_destroy(&s->mu);
}

/* ---- manager helpers ------------------------------------------------------------------------ */

struct fixture {
	struct tsrv srv;
	char *root;
	char *token;
	char *url;
	struct identity_mgr *m;
};

static struct identity_mgr *new_remote(struct fixture *fx, const char *url, int64_t ttl,
				       const char *ca_identity, struct errbuf *eb)
{
	struct identity_opts o = {.ca_url = url,
				  .ca_root = fx->root,
				  .token_file = fx->token,
				  .ca_identity = ca_identity,
				  .ttl_s = ttl,
				  .io_timeout_ms = 2000,
				  .connect_timeout_ms = 2000,
				  .now = fake_now};
	return identity_mgr_new(&o, eb);
}

static bool fixture_start(struct fixture *fx, int64_t ttl)
{
	struct errbuf eb = {0};
	FILE *f;

	memset(fx, 0, sizeof(*fx));
	clock_reset();
	fx->root = tpath("root-cert.pem");
	fx->token = tpath("node.token");
	f = fopen(fx->token, "w");
	fputs(TOKEN "\n", f);
	fclose(f);
	if (!tsrv_start(&fx->srv, fx->root))
		return false;
	fx->url = xasprintf("https://127.0.0.1:%u", fx->srv.port);
	fx->m = new_remote(fx, fx->url, ttl, NULL, &eb);
	if (!fx->m)
		unit_fail(__FILE__, __LINE__, "identity_mgr_new: %s", eb.msg);
	return fx->m != NULL;
}

static void fixture_stop(struct fixture *fx)
{
	identity_mgr_free(fx->m);
	tsrv_stop(&fx->srv);
	free(fx->root);
	free(fx->token);
	free(fx->url);
}

static bool entry_status(struct identity_mgr *m, const char *id, struct identity_entry_status *out)
{
	struct identity_status st;
	bool found = false;

	identity_status_get(m, &st);
	for (size_t i = 0; i < st.n; i++) {
		if (strcmp(st.v[i].spiffe_id, id) == 0) {
			*out = st.v[i];
			out->spiffe_id = NULL;
			out->last_error = NULL;
			found = true;
		}
	}
	identity_status_fini(&st);
	return found;
}

/* Last error text of id (caller frees). */
static char *last_error(struct identity_mgr *m, const char *id)
{
	struct identity_status st;
	char *r = NULL;

	identity_status_get(m, &st);
	for (size_t i = 0; i < st.n; i++)
		if (strcmp(st.v[i].spiffe_id, id) == 0 && st.v[i].last_error)
			r = xstrdup(st.v[i].last_error);
	identity_status_fini(&st);
	return r ? r : xstrdup("");
}

/* Waits (real time, 10 s) until id has made `fetches` attempts and none is in flight. */
static bool wait_fetches(struct identity_mgr *m, const char *id, uint64_t fetches)
{
	for (int i = 0; i < 5000; i++) {
		struct identity_entry_status s;

		if (entry_status(m, id, &s) && s.fetches >= fetches && !s.in_flight)
			return true;
		sleep_ms(2);
	}
	return false;
}

static void on_ready(struct identity_waiter *w, int status)
{
	atomic_int *calls = w->arg;

	atomic_fetch_add(&calls[0], 1);
	atomic_store(&calls[1], status);
}

/* identity_get that waits for the first fetch; returns the cert or NULL. */
static struct identity_cert *get_wait(struct identity_mgr *m, const char *id)
{
	atomic_int calls[2] = {0, 0};
	struct identity_waiter w = {.fn = on_ready, .arg = calls};
	struct identity_cert *c = NULL;
	struct errbuf eb = {0};
	int r = identity_get(m, id, &c, &w, &eb);

	if (r == -E_AGAIN) {
		for (int i = 0; i < 5000 && atomic_load(&calls[0]) == 0; i++)
			sleep_ms(2);
		identity_waiter_cancel(m, &w);
		r = identity_get(m, id, &c, NULL, &eb);
	}
	return r == 0 ? c : NULL;
}

/* ---- local signing ----------------------------------------------------------------------------
 */

TEST(local_signing_from_ca_dir)
{
	struct errbuf eb = {0};
	char *dir;
	struct identity_mgr *m;
	struct identity_cert *c;
	struct identity_entry_status s;
	struct tls_config *cfg;

	clock_reset();
	dir = tpath("local-ca");
	REQUIRE(ca_init(dir, TD, false, fake_now(NULL) / 1000, &eb) == 0);
	m = identity_mgr_new(&(struct identity_opts){.ca_dir = dir, .now = fake_now}, &eb);
	REQUIRE(m != NULL);
	c = get_wait(m, ID_APP);
	REQUIRE(c != NULL);
	CHECK_STR(c->spiffe_id, ID_APP);
	CHECK_INT(c->chain_len, 1); /* leaf; the root signs directly */
	CHECK_INT(c->roots_len, 1);
	CHECK(c->key != NULL && c->key->curve == BR_EC_secp256r1);
	CHECK_INT(c->not_after - c->not_before, 24 * 3600 + X509_BACKDATE_SECS);
	CHECK_INT(c->refresh_at_ms, c->not_before * 1000 + (c->not_after - c->not_before) * 500);
	REQUIRE(entry_status(m, ID_APP, &s));
	CHECK_INT(s.state, IDENTITY_READY);
	CHECK_INT(s.fetches, 1);
	CHECK_STR(s.serial, c->serial);
	CHECK_INT(s.next_refresh_ms, c->refresh_at_ms);
	/* Ready for TLS as is. */
	cfg = tls_config_new_server(&(struct tls_server_opts){.chain = c->chain,
							      .chain_len = c->chain_len,
							      .key = c->key},
				    &eb);
	CHECK(cfg != NULL);
	tls_config_unref(cfg);
	identity_cert_unref(c);
	/* An identity outside the CA's trust domain is refused with the CA's reason. */
	CHECK(get_wait(m, "spiffe://other.domain/ns/a/sa/b") == NULL);
	REQUIRE(entry_status(m, "spiffe://other.domain/ns/a/sa/b", &s));
	CHECK_INT(s.state, IDENTITY_FAILED);
	{
		char *e = last_error(m, "spiffe://other.domain/ns/a/sa/b");
		CHECK_CONTAINS(e, "local CA");
		free(e);
	}
	identity_mgr_free(m);
	free(dir);
}

TEST(options_are_checked)
{
	struct errbuf eb = {0};
	char *dir = tpath("nonexistent");

	CHECK(identity_mgr_new(&(struct identity_opts){0}, &eb) == NULL);
	CHECK_CONTAINS(eb.msg, "exactly one certificate source");
	CHECK(identity_mgr_new(&(struct identity_opts){.ca_url = "http://127.0.0.1:1",
						       .ca_root = "x",
						       .token_file = "y"},
			       &eb) == NULL);
	CHECK_CONTAINS(eb.msg, "plain http is refused");
	CHECK(identity_mgr_new(&(struct identity_opts){.ca_url = "https://127.0.0.1:1"}, &eb) ==
	      NULL);
	CHECK_CONTAINS(eb.msg, "needs ca_root");
	CHECK(identity_mgr_new(&(struct identity_opts){.ca_url = "https://u@h:1/",
						       .ca_root = "x",
						       .token_file = "y"},
			       &eb) == NULL);
	CHECK_CONTAINS(eb.msg, "userinfo");
	CHECK(identity_mgr_new(&(struct identity_opts){.ca_dir = dir}, &eb) == NULL);
	CHECK_CONTAINS(eb.msg, "ca_dir");
	free(dir);
}

TEST(url_parse)
{
	struct identity_url u;
	struct errbuf eb = {0};

	REQUIRE(identity_url_parse("https://[::1]:15012/ca/", &u, &eb) == 0);
	CHECK(u.host_is_ip);
	CHECK_INT(u.port, 15012);
	CHECK_STR(u.prefix, "/ca");
	CHECK_STR(u.display, "https://[::1]:15012/ca");
	identity_url_fini(&u);
	REQUIRE(identity_url_parse("https://CA.Example", &u, &eb) == 0);
	CHECK(!u.host_is_ip);
	CHECK_STR(u.host, "ca.example");
	CHECK_INT(u.port, 443);
	identity_url_fini(&u);
	CHECK(identity_url_parse("https://h:0", &u, &eb) < 0);
	CHECK(identity_url_parse("https://h:99999", &u, &eb) < 0);
	CHECK(identity_url_parse("https://h_x:1", &u, &eb) < 0);
	CHECK(identity_url_parse("ftp://h", &u, &eb) < 0);
}

/* ---- remote ------------------------------------------------------------------------------------
 */

static atomic_int g_burst_calls;
static atomic_int g_burst_bad;

static void on_burst(struct identity_waiter *w, int status)
{
	(void)w;
	atomic_fetch_add(&g_burst_calls, 1);
	if (status != 0)
		atomic_fetch_add(&g_burst_bad, 1);
}

TEST(remote_single_flight_burst)
{
	struct fixture fx;
	struct identity_waiter w[50];
	struct errbuf eb = {0};
	int again = 0;

	REQUIRE(fixture_start(&fx, 3600));
	atomic_store(&g_burst_calls, 0);
	atomic_store(&g_burst_bad, 0);
	for (int i = 0; i < 50; i++) {
		struct identity_cert *c = NULL;
		int r;

		w[i] = (struct identity_waiter){.fn = on_burst};
		r = identity_get(fx.m, ID_APP, &c, &w[i], &eb);
		if (r == -E_AGAIN)
			again++;
		else if (r == 0)
			identity_cert_unref(c);
	}
	CHECK_INT(again, 50);
	for (int i = 0; i < 5000 && atomic_load(&g_burst_calls) < 50; i++)
		sleep_ms(2);
	CHECK_INT(atomic_load(&g_burst_calls), 50);
	CHECK_INT(atomic_load(&g_burst_bad), 0);
	CHECK_INT(atomic_load(&fx.srv.requests), 1);
	{
		struct identity_cert *c = get_wait(fx.m, ID_APP);
		struct identity_entry_status s;

		REQUIRE(c != NULL);
		CHECK_INT(c->chain_len, 1);
		CHECK_INT(c->not_after - c->not_before, 3600 + X509_BACKDATE_SECS);
		REQUIRE(entry_status(fx.m, ID_APP, &s));
		CHECK_INT(s.state, IDENTITY_READY);
		CHECK_INT(s.fetches, 1);
		identity_cert_unref(c);
	}
	CHECK_INT(atomic_load(&fx.srv.requests), 1);
	pthread_mutex_lock(&fx.srv.mu);
	CHECK_STR(fx.srv.auth_hdr, "Authorization: Bearer " TOKEN);
	pthread_mutex_unlock(&fx.srv.mu);
	fixture_stop(&fx);
}

TEST(renewal_at_half_life)
{
	struct fixture fx;
	struct identity_cert *c1;
	struct identity_cert *c2;
	struct identity_entry_status s;

	REQUIRE(fixture_start(&fx, 3600));
	c1 = get_wait(fx.m, ID_APP);
	REQUIRE(c1 != NULL);
	/* Just before half-life: nothing happens. */
	atomic_store(&g_now_ms, c1->refresh_at_ms - 1000);
	identity_mgr_wake(fx.m);
	sleep_ms(50);
	CHECK_INT(atomic_load(&fx.srv.requests), 1);
	atomic_store(&g_now_ms, c1->refresh_at_ms);
	identity_mgr_wake(fx.m);
	REQUIRE(wait_fetches(fx.m, ID_APP, 2));
	CHECK_INT(atomic_load(&fx.srv.requests), 2);
	c2 = get_wait(fx.m, ID_APP);
	REQUIRE(c2 != NULL);
	CHECK(strcmp(c1->serial, c2->serial) != 0);
	CHECK(c2->not_after > c1->not_after);
	REQUIRE(entry_status(fx.m, ID_APP, &s));
	CHECK_INT(s.state, IDENTITY_READY);
	CHECK_INT(s.next_refresh_ms, c2->refresh_at_ms);
	/* The old certificate stays intact for whoever still holds it. */
	CHECK_STR(c1->spiffe_id, ID_APP);
	CHECK(c1->chain[0].data_len > 0 && c1->key->xlen == 32);
	identity_cert_unref(c1);
	identity_cert_unref(c2);
	fixture_stop(&fx);
}

static void check_backoff(uint32_t got, uint64_t base)
{
	uint64_t lo = MAX(base * 80 / 100, IDENTITY_BACKOFF_MIN_MS);
	uint64_t hi = MIN(base * 120 / 100, IDENTITY_BACKOFF_MAX_MS);

	if (got < lo || got > hi)
		unit_fail(__FILE__, __LINE__, "backoff %u ms outside [%llu, %llu] (base %llu)", got,
			  (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)base);
}

TEST(ca_down_backoff_keeps_serving_then_recovers)
{
	struct fixture fx;
	struct identity_cert *c1;
	struct identity_entry_status s;
	uint64_t base = IDENTITY_BACKOFF_MIN_MS;

	REQUIRE(fixture_start(&fx, 3600));
	c1 = get_wait(fx.m, ID_APP);
	REQUIRE(c1 != NULL);
	atomic_store(&fx.srv.mode, M_503);
	atomic_store(&g_now_ms, c1->refresh_at_ms);
	for (uint64_t k = 1; k <= 11; k++) {
		struct identity_cert *c = NULL;
		struct errbuf eb = {0};

		identity_mgr_wake(fx.m);
		REQUIRE(wait_fetches(fx.m, ID_APP, k + 1));
		REQUIRE(entry_status(fx.m, ID_APP, &s));
		CHECK_INT(s.state, IDENTITY_RENEWING);
		CHECK_INT(s.consecutive_failures, k);
		check_backoff(s.backoff_ms, base);
		CHECK_INT(s.next_refresh_ms, atomic_load(&g_now_ms) + s.backoff_ms);
		/* The still-valid certificate keeps being served. */
		REQUIRE(identity_get(fx.m, ID_APP, &c, NULL, &eb) == 0);
		CHECK_STR(c->serial, c1->serial);
		identity_cert_unref(c);
		base = MIN(base * 2, IDENTITY_BACKOFF_MAX_MS);
		clock_add(s.backoff_ms);
	}
	{
		char *e = last_error(fx.m, ID_APP);
		CHECK_CONTAINS(e, "answered 503 Service Unavailable: CA is down for maintenance");
		free(e);
	}
	/* Recovery. */
	atomic_store(&fx.srv.mode, M_OK);
	identity_mgr_wake(fx.m);
	REQUIRE(wait_fetches(fx.m, ID_APP, 13));
	REQUIRE(entry_status(fx.m, ID_APP, &s));
	CHECK_INT(s.state, IDENTITY_READY);
	CHECK_INT(s.consecutive_failures, 0);
	CHECK_INT(s.backoff_ms, 0);
	CHECK(strcmp(s.serial, c1->serial) != 0);
	identity_cert_unref(c1);
	fixture_stop(&fx);
}

TEST(retry_after_is_honoured)
{
	struct fixture fx;
	struct identity_entry_status s;

	REQUIRE(fixture_start(&fx, 3600));
	atomic_store(&fx.srv.mode, M_429);
	CHECK(get_wait(fx.m, ID_APP) == NULL);
	REQUIRE(wait_fetches(fx.m, ID_APP, 1));
	REQUIRE(entry_status(fx.m, ID_APP, &s));
	CHECK_INT(s.state, IDENTITY_FAILED);
	CHECK_INT(s.backoff_ms, 30000);
	fixture_stop(&fx);
}

TEST(expiry_while_ca_down)
{
	struct fixture fx;
	struct identity_cert *c1;
	struct identity_cert *c = NULL;
	struct identity_entry_status s;
	struct errbuf eb = {0};

	REQUIRE(fixture_start(&fx, 600));
	c1 = get_wait(fx.m, ID_APP);
	REQUIRE(c1 != NULL);
	atomic_store(&fx.srv.mode, M_REFUSE);
	atomic_store(&g_now_ms, (c1->not_after + 1) * 1000);
	identity_mgr_wake(fx.m);
	REQUIRE(wait_fetches(fx.m, ID_APP, 2));
	REQUIRE(entry_status(fx.m, ID_APP, &s));
	CHECK_INT(s.state, IDENTITY_EXPIRED);
	CHECK_STR(s.serial, "");
	CHECK_INT(s.consecutive_failures, 1);
	/* No certificate now: fail fast with the reason. */
	CHECK(identity_get(fx.m, ID_APP, &c, NULL, &eb) < 0);
	CHECK(c == NULL);
	CHECK_CONTAINS(eb.msg, "expired");
	/* A holder of the old reference still has intact memory (ASan). */
	CHECK_STR(c1->spiffe_id, ID_APP);
	/* The CA comes back. */
	atomic_store(&fx.srv.mode, M_OK);
	clock_add(s.backoff_ms);
	identity_mgr_wake(fx.m);
	REQUIRE(wait_fetches(fx.m, ID_APP, 3));
	c = get_wait(fx.m, ID_APP);
	REQUIRE(c != NULL);
	CHECK(strcmp(c->serial, c1->serial) != 0);
	identity_cert_unref(c);
	identity_cert_unref(c1);
	fixture_stop(&fx);
}

TEST(wrong_identity_refused)
{
	struct fixture fx;
	struct identity_entry_status s;
	char *e;

	REQUIRE(fixture_start(&fx, 3600));
	atomic_store(&fx.srv.mode, M_WRONG_ID);
	CHECK(get_wait(fx.m, ID_APP) == NULL);
	REQUIRE(entry_status(fx.m, ID_APP, &s));
	CHECK_INT(s.state, IDENTITY_FAILED);
	e = last_error(fx.m, ID_APP);
	CHECK_CONTAINS(e,
		       "CA returned a certificate for \"" ID_OTHER "\", not the requested " ID_APP);
	free(e);
	fixture_stop(&fx);
}

TEST(untrusted_root_refused)
{
	struct fixture fx;
	char *e;

	REQUIRE(fixture_start(&fx, 3600));
	atomic_store(&fx.srv.mode, M_UNTRUSTED);
	CHECK(get_wait(fx.m, ID_APP) == NULL);
	e = last_error(fx.m, ID_APP);
	CHECK_CONTAINS(e, "is not one of the trusted roots in");
	CHECK_CONTAINS(e, "root-cert.pem");
	free(e);
	fixture_stop(&fx);
}

TEST(ca_server_name_and_identity_checked)
{
	struct fixture fx;
	struct identity_mgr *m;
	struct errbuf eb = {0};
	char *url;
	char *e;

	REQUIRE(fixture_start(&fx, 3600));
	/* A DNS name the serving certificate does not carry. */
	url = xasprintf("https://localhost:%u", fx.srv.port);
	m = new_remote(&fx, url, 3600, NULL, &eb);
	REQUIRE(m != NULL);
	CHECK(get_wait(m, ID_APP) == NULL);
	e = last_error(m, ID_APP);
	CHECK_CONTAINS(e, "TLS handshake");
	free(e);
	identity_mgr_free(m);
	free(url);
	CHECK_INT(atomic_load(&fx.srv.requests), 0);
	/* The right IP but another CA identity than the one pinned. */
	m = new_remote(&fx, fx.url, 3600, "spiffe://cluster.local/ns/istio-system/sa/impostor",
		       &eb);
	REQUIRE(m != NULL);
	CHECK(get_wait(m, ID_APP) == NULL);
	e = last_error(m, ID_APP);
	CHECK_CONTAINS(e, "CA certificate is not for spiffe://cluster.local/ns/istio-system/sa/"
			  "impostor");
	free(e);
	identity_mgr_free(m);
	CHECK_INT(atomic_load(&fx.srv.requests), 0);
	/* And the matching pin works. */
	m = new_remote(&fx, fx.url, 3600, "spiffe://cluster.local/ns/istio-system/sa/ambient-ca",
		       &eb);
	REQUIRE(m != NULL);
	{
		struct identity_cert *c = get_wait(m, ID_APP);
		CHECK(c != NULL);
		identity_cert_unref(c);
	}
	identity_mgr_free(m);
	fixture_stop(&fx);
}

TEST(stop_interrupts_a_hanging_request)
{
	struct fixture fx;
	struct identity_cert *c = NULL;
	struct errbuf eb = {0};
	struct identity_entry_status s;
	atomic_int calls[2] = {0, 0};
	struct identity_waiter w = {.fn = on_ready, .arg = calls};
	uint64_t t0;

	REQUIRE(fixture_start(&fx, 3600));
	atomic_store(&fx.srv.mode, M_HANG);
	CHECK_INT(identity_get(fx.m, ID_APP, &c, &w, &eb), -E_AGAIN);
	for (int i = 0; i < 5000 && atomic_load(&fx.srv.requests) == 0; i++)
		sleep_ms(2);
	REQUIRE(entry_status(fx.m, ID_APP, &s));
	CHECK(s.in_flight);
	CHECK_INT(s.state, IDENTITY_PENDING);
	t0 = time_mono_ms();
	identity_mgr_free(fx.m);
	fx.m = NULL;
	/* Well under the 2 s I/O timeout: the eventfd cut the poll short. */
	CHECK(time_mono_ms() - t0 < 1500);
	CHECK_INT(atomic_load(&calls[0]), 1);
	CHECK_INT(atomic_load(&calls[1]), -E_CLOSED);
	fixture_stop(&fx);
}

TEST(hang_times_out)
{
	struct fixture fx;
	char *e;

	REQUIRE(fixture_start(&fx, 3600));
	atomic_store(&fx.srv.mode, M_HANG);
	CHECK(get_wait(fx.m, ID_APP) == NULL);
	e = last_error(fx.m, ID_APP);
	CHECK_CONTAINS(e, "timed out after 2000 ms");
	free(e);
	fixture_stop(&fx);
}

TEST(token_never_logged)
{
	struct fixture fx;
	char *logf = tpath("log.txt");
	int fd = open(logf, O_CREAT | O_TRUNC | O_RDWR, 0600);
	enum log_level old = log_get_level();
	char *text;
	size_t len = 0;
	struct buf js;
	struct json_writer w;
	struct identity_status st;

	REQUIRE(fd >= 0);
	log_set_fd(fd);
	log_set_level(LOG_TRACE);
	REQUIRE(fixture_start(&fx, 3600));
	{
		struct identity_cert *c = get_wait(fx.m, ID_APP);
		CHECK(c != NULL);
		identity_cert_unref(c);
	}
	atomic_store(&fx.srv.mode, M_503);
	CHECK(get_wait(fx.m, ID_OTHER) == NULL);
	atomic_store(&fx.srv.mode, M_WRONG_ID);
	CHECK(get_wait(fx.m, "spiffe://cluster.local/ns/a/sa/b") == NULL);
	buf_init(&js, 0);
	json_writer_init(&w, &js, 0);
	identity_status_get(fx.m, &st);
	identity_status_write_json(&st, &w);
	CHECK_INT(json_writer_finish(&w), 0);
	CHECK_INT(st.n, 3);
	CHECK_INT(st.fetches, 3);
	CHECK_INT(st.failures, 2);
	identity_status_fini(&st);
	buf_append(&js, "", 1);
	CHECK(strstr((const char *)buf_rptr(&js), TOKEN) == NULL);
	CHECK_CONTAINS((const char *)buf_rptr(&js), "\"state\":\"ready\"");
	CHECK_CONTAINS((const char *)buf_rptr(&js), "\"state\":\"failed\"");
	{
		cJSON *root = NULL;
		CHECK_INT(json_parse((const char *)buf_rptr(&js),
				     strlen((const char *)buf_rptr(&js)), NULL, &root, NULL),
			  0);
		json_free(root);
	}
	buf_fini(&js);
	fixture_stop(&fx);
	log_set_level(old);
	log_set_fd(-1);
	close(fd);
	text = ca_read_file(logf, 1 << 20, &len, NULL);
	REQUIRE(text != NULL);
	CHECK_CONTAINS(text, "identity: certificate issued");
	CHECK_CONTAINS(text, "identity: certificate fetch failed");
	CHECK(strstr(text, TOKEN) == NULL);
	CHECK(strstr(text, "s3cr3t") == NULL);
	free(text);
	free(logf);
}

TEST(forget_and_prefetch)
{
	struct fixture fx;
	struct errbuf eb = {0};
	struct identity_entry_status s;

	REQUIRE(fixture_start(&fx, 3600));
	CHECK_INT(identity_prefetch(fx.m, "spiffe://cluster.local/ns/x", &eb), -E_INVAL);
	CHECK_INT(identity_prefetch(fx.m, ID_APP, &eb), 0);
	REQUIRE(wait_fetches(fx.m, ID_APP, 1));
	REQUIRE(entry_status(fx.m, ID_APP, &s));
	CHECK(s.prefetch);
	CHECK_INT(s.state, IDENTITY_READY);
	CHECK_INT(identity_forget(fx.m, ID_APP), 0);
	CHECK_INT(identity_forget(fx.m, ID_APP), -E_NOTFOUND);
	CHECK(!entry_status(fx.m, ID_APP, &s));
	CHECK_INT(atomic_load(&fx.srv.requests), 1);
	fixture_stop(&fx);
}
