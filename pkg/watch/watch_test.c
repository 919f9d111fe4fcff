/* Tests for pkg/watch: sources, file watching, HTTP polling and long-poll, TLS identity. */
#include "pkg/watch/watch_int.h"
#include "test/unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "test/tls_fixtures.h"

/* ---- helpers ------------------------------------------------------------------------------- */

#define DEADLINE_MS 10000

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Polls a condition until it holds or a generous deadline passes; no timing assertions. */
#define WAIT_FOR(cond)                                                                             \
	({                                                                                         \
		uint64_t end_ = time_mono_ms() + DEADLINE_MS;                                      \
		while (!(cond) && time_mono_ms() < end_)                                           \
			sleep_ms(10);                                                              \
		(bool)(cond);                                                                      \
	})

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

/* Writes a temporary file and renames it over path (what editors and config managers do). */
static void write_atomic(const char *path, const char *text)
{
	char *tmp = xasprintf("%s.tmp~", path);

	write_file(tmp, text);
	if (rename(tmp, path) < 0)
		unit_fail(__FILE__, __LINE__, "rename: %s", strerror(errno));
	free(tmp);
}

/* A valid mesh config; n adds whitespace so every n is different bytes (and a different size). */
static char *doc_valid(int n)
{
	return xasprintf("{\"workloads\": []%*s}\n", n, "");
}

/* Two problems, so "every line" is observable. */
static const char DOC_INVALID[] = "{\"bogus\": 1, \"nonsense\": 2}\n";

static uint64_t cur_version(struct watch *w)
{
	struct config *c = watch_current(w);
	uint64_t v = c ? config_version(c) : 0;

	config_unref(c);
	return v;
}

struct stat_snap {
	uint64_t version, successes, errors, unchanged;
	bool ok, longpoll;
	char last_error[1024];
	char http_etag[136];
};

static struct stat_snap snap(struct watch *w)
{
	struct watch_status st;
	struct stat_snap s = {0};

	watch_status_get(w, &st);
	s.version = st.version;
	s.successes = st.successes;
	s.errors = st.errors;
	s.unchanged = st.unchanged;
	s.ok = st.ok;
	s.longpoll = st.longpoll;
	snprintf(s.last_error, sizeof(s.last_error), "%s", st.last_error ? st.last_error : "");
	snprintf(s.http_etag, sizeof(s.http_etag), "%s", st.http_etag);
	watch_status_fini(&st);
	return s;
}

static atomic_int changes;
static atomic_ullong last_changed_version;

static void on_change(struct config *c, void *arg)
{
	(void)arg;
	atomic_store(&last_changed_version, config_version(c));
	atomic_fetch_add(&changes, 1);
}

static struct watch *new_watch(const struct watch_opts *o)
{
	struct errbuf eb = {0};
	struct watch *w = watch_new(o, &eb);

	if (!w)
		unit_fail(__FILE__, __LINE__, "watch_new(%s): %s", o->source, eb.msg);
	return w;
}

static void new_watch_fails(const char *source, const char *ca_root, const char *want)
{
	struct errbuf eb = {0};
	struct watch *w =
		watch_new(&(struct watch_opts){.source = source, .ca_root = ca_root}, &eb);

	CHECK(w == NULL);
	CHECK_CONTAINS(eb.msg, want);
	watch_free(w);
}

/* ---- sources and URLs ------------------------------------------------------------------------ */

TEST(source_errors_are_clear)
{
	new_watch_fails("", NULL, "mesh-config source is empty");
	new_watch_fails("ftp://example.com/mesh.json", NULL, "unsupported scheme \"ftp\"");
	new_watch_fails("file:///etc/mesh.json", NULL, "unsupported scheme \"file\"");
	new_watch_fails("http://", NULL, "missing host");
	new_watch_fails("http:///mesh.json", NULL, "missing host");
	new_watch_fails("http://h:0/", NULL, "port 0 out of range 1..65535");
	new_watch_fails("http://h:99999/", NULL, "port 99999 out of range");
	new_watch_fails("http://h:/", NULL, "invalid port");
	new_watch_fails("http://h:8a/", NULL, "invalid port \"8a\"");
	new_watch_fails("http://[::1/", NULL, "unterminated IPv6 literal");
	new_watch_fails("http://[::1]x/", NULL, "junk after IPv6 literal");
	new_watch_fails("http://[fe80::1%25eth0]/", NULL, "zone identifiers");
	new_watch_fails("http://[zz::1]/", NULL, "invalid IPv6 address");
	new_watch_fails("http://1.2.3.256/", NULL, "invalid IPv4 address \"1.2.3.256\"");
	new_watch_fails("http://127.1/", NULL, "invalid IPv4 address");
	new_watch_fails("http://ex ample/", NULL, "space");
	new_watch_fails("http://h/a\tb", NULL, "space");
	new_watch_fails("http://ex!ample/", NULL, "invalid character in host");
	new_watch_fails("https://ca.example/v1/config", NULL,
			"needs a trust anchor file (--ca-root)");
	new_watch_fails("https://ca.example/v1/config", "/nonexistent/root.pem",
			"--ca-root /nonexistent/root.pem");
	new_watch_fails("mesh\n.json", NULL, "control character");
}

TEST(source_error_never_echoes_credentials)
{
	struct errbuf eb = {0};
	struct watch *w =
		watch_new(&(struct watch_opts){.source = "http://admin:hunter2@h/x"}, &eb);

	CHECK(w == NULL);
	CHECK_CONTAINS(eb.msg, "credentials in the URL are not supported (use --token-file)");
	CHECK(strstr(eb.msg, "hunter2") == NULL);
}

TEST(url_parse_shapes)
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
	CHECK(u.tls);
	CHECK(u.host_is_ip);
	CHECK_INT(u.ip_family, AF_INET6);
	CHECK_STR(u.host, "::1");
	CHECK_STR(u.hostport, "[::1]:15012");
	CHECK_STR(u.target, "/");
	CHECK_INT(u.ip[15], 1);
	httpc_url_fini(&u);

	REQUIRE(httpc_url_parse("http://10.1.2.3?q", &u, &eb) == 0);
	CHECK(u.host_is_ip);
	CHECK_INT(u.ip_family, AF_INET);
	CHECK_MEM(u.ip, "\x0a\x01\x02\x03", 4);
	CHECK_STR(u.target, "/?q");
	httpc_url_fini(&u);
}

TEST(status_describes_source)
{
	struct watch *w = new_watch(&(struct watch_opts){.source = "http://127.0.0.1:9/m.json#x"});
	struct watch_status st;

	REQUIRE(w);
	watch_status_get(w, &st);
	CHECK_INT(st.kind, WATCH_HTTP);
	CHECK_STR(st.source, "http://127.0.0.1:9/m.json");
	CHECK(st.last_error == NULL);
	CHECK_INT(st.version, 0);
	CHECK_STR(watch_kind_name(st.kind), "http");
	watch_status_fini(&st);
	CHECK(watch_current(w) == NULL);
	watch_free(w);
}

TEST(token_file_checked_at_start)
{
	char *tok = tpath("token");
	char buf[HTTPC_TOKEN_MAX];
	struct errbuf eb = {0};
	struct watch *w;

	w = watch_new(&(struct watch_opts){.source = "http://127.0.0.1:9/", .token_file = tok},
		      &eb);
	CHECK(w == NULL);
	CHECK_CONTAINS(eb.msg, "token file");
	CHECK_CONTAINS(eb.msg, "No such file");

	write_file(tok, "  \n");
	CHECK_INT(httpc_token_read(tok, buf, sizeof(buf), &eb), -E_INVAL);
	CHECK_CONTAINS(eb.msg, "empty");

	write_file(tok, "abc def\n");
	CHECK_INT(httpc_token_read(tok, buf, sizeof(buf), &eb), -E_INVAL);
	CHECK_CONTAINS(eb.msg, "space or control character");
	CHECK(strstr(eb.msg, "abc") == NULL);

	write_file(tok, "s3cr3t-token\r\n");
	CHECK_INT(httpc_token_read(tok, buf, sizeof(buf), &eb), 0);
	CHECK_STR(buf, "s3cr3t-token");
	free(tok);
}

/* ---- file sources ---------------------------------------------------------------------------- */

TEST(file_load_once_and_unchanged)
{
	char *path = tpath("mesh.json");
	char *d1 = doc_valid(1);
	struct errlist errs = {0};
	struct watch *w;
	struct stat_snap s;
	struct config *c;

	write_file(path, d1);
	w = new_watch(&(struct watch_opts){.source = path});
	REQUIRE(w);
	CHECK_INT(watch_load_once(w, &errs), 0);
	CHECK_INT(errs.n, 0);
	c = watch_current(w);
	REQUIRE(c);
	CHECK_INT(config_version(c), 1);
	CHECK_STR(config_source(c), path);
	/* Same bytes again: no new version. */
	CHECK_INT(watch_load_once(w, &errs), 0);
	CHECK_INT(cur_version(w), 1);
	s = snap(w);
	CHECK_INT(s.successes, 1);
	CHECK_INT(s.unchanged, 1);
	CHECK_INT(s.errors, 0);
	CHECK(s.ok);
	/* The old snapshot stays valid for its holder after a swap. */
	write_file(path, DOC_INVALID);
	free(d1);
	d1 = doc_valid(2);
	write_file(path, d1);
	CHECK_INT(watch_load_once(w, &errs), 0);
	CHECK_INT(cur_version(w), 2);
	CHECK_INT(config_version(c), 1);
	config_unref(c);
	errlist_fini(&errs);
	watch_free(w);
	free(d1);
	free(path);
}

TEST(file_first_load_invalid_publishes_nothing)
{
	char *path = tpath("mesh.json");
	struct errlist errs = {0};
	struct watch *w;
	struct stat_snap s;

	write_file(path, DOC_INVALID);
	w = new_watch(&(struct watch_opts){.source = path});
	REQUIRE(w);
	CHECK_INT(watch_load_once(w, &errs), -E_PARSE);
	CHECK_INT(errs.n, 2);
	if (errs.n == 2) {
		char *want = xasprintf("%s: .bogus: unknown field", path);

		CHECK_CONTAINS(errs.items[0], want);
		CHECK_CONTAINS(errs.items[1], ".nonsense: unknown field");
		free(want);
	}
	CHECK(watch_current(w) == NULL);
	s = snap(w);
	CHECK_INT(s.errors, 1);
	CHECK(!s.ok);
	CHECK_CONTAINS(s.last_error, ".bogus: unknown field\n"); /* every line is kept */
	CHECK_CONTAINS(s.last_error, ".nonsense: unknown field");
	/* The same bad bytes again: same errors reported, not counted twice. */
	errlist_fini(&errs);
	CHECK_INT(watch_load_once(w, &errs), -E_PARSE);
	CHECK(errs.n >= 1);
	CHECK_INT(snap(w).errors, 1);
	errlist_fini(&errs);
	watch_free(w);
	free(path);
}

TEST(file_missing_and_limits)
{
	char *path = tpath("absent.json");
	char *big = tpath("big.json");
	struct errlist errs = {0};
	struct watch *w = new_watch(&(struct watch_opts){.source = path});

	REQUIRE(w);
	CHECK(watch_load_once(w, &errs) < 0);
	REQUIRE(errs.n == 1);
	CHECK_CONTAINS(errs.items[0], "No such file or directory");
	CHECK_INT(snap(w).errors, 1);
	errlist_fini(&errs);
	watch_free(w);

	write_file(big, "{\"workloads\": [                                                ]}");
	w = new_watch(&(struct watch_opts){.source = big, .max_bytes = 16});
	REQUIRE(w);
	CHECK_INT(watch_load_once(w, &errs), -E_LIMIT);
	REQUIRE(errs.n == 1);
	CHECK_CONTAINS(errs.items[0], "over the 16-byte limit");
	errlist_fini(&errs);
	watch_free(w);

	w = new_watch(&(struct watch_opts){.source = unit_tmpdir()});
	REQUIRE(w);
	CHECK(watch_load_once(w, &errs) < 0);
	REQUIRE(errs.n == 1);
	CHECK_CONTAINS(errs.items[0], "not a regular file");
	errlist_fini(&errs);
	watch_free(w);
	free(path);
	free(big);
}

/* The full file cycle: rename-over, in-place write, invalid doc kept out, recovery. */
static void file_cycle(bool no_inotify)
{
	char *path = tpath("mesh.json");
	char *d[5];
	struct watch *w;
	struct stat_snap s;

	for (int i = 0; i < 5; i++)
		d[i] = doc_valid(i + 1);
	atomic_store(&changes, 0);
	write_file(path, d[0]);
	w = new_watch(&(struct watch_opts){.source = path,
					   .no_inotify = no_inotify,
					   .file_poll_ms = 20,
					   .debounce_ms = 20,
					   .on_change = on_change});
	REQUIRE(w);
	CHECK_INT(watch_load_once(w, NULL), 0);
	REQUIRE(watch_start(w, NULL) == 0);
	CHECK(watch_start(w, NULL) == -E_STATE);
	CHECK_INT(watch_load_once(w, NULL), -E_STATE);

	write_atomic(path, d[1]);
	CHECK(WAIT_FOR(cur_version(w) == 2));

	write_file(path, d[2]); /* in place: same inode */
	CHECK(WAIT_FOR(cur_version(w) == 3));

	write_atomic(path, DOC_INVALID);
	CHECK(WAIT_FOR(snap(w).errors == 1));
	s = snap(w);
	CHECK_INT(s.version, 3);
	CHECK(!s.ok);
	CHECK_CONTAINS(s.last_error, "bogus");
	CHECK_INT(cur_version(w), 3); /* the last good snapshot stays */

	write_atomic(path, d[3]);
	CHECK(WAIT_FOR(cur_version(w) == 4));
	CHECK(snap(w).ok);

	/* Delete, then recreate. */
	CHECK(unlink(path) == 0);
	CHECK(WAIT_FOR(snap(w).errors == 2));
	write_file(path, d[4]);
	CHECK(WAIT_FOR(cur_version(w) == 5));
	s = snap(w);
	CHECK_INT(s.successes, 5);
	/* Every swap ran the callback: the first inside watch_load_once, then on the thread. */
	CHECK(WAIT_FOR(atomic_load(&changes) == 5)); /* it runs just after the swap */
	CHECK_INT(atomic_load(&last_changed_version), 5);

	watch_stop(w);
	watch_stop(w);
	/* After stop, synchronous loads work again. */
	CHECK_INT(watch_load_once(w, NULL), 0);
	CHECK_INT(cur_version(w), 5);
	watch_free(w);
	for (int i = 0; i < 5; i++)
		free(d[i]);
	free(path);
}

TEST(file_watch_inotify)
{
	file_cycle(false);
}

TEST(file_watch_stat_poll)
{
	file_cycle(true);
}

/* Kubernetes ConfigMap volumes: mesh.json -> ..data/mesh.json, ..data -> ..v1, swapped by
 * renaming a new ..data symlink over the old one. No event names mesh.json. */
TEST(file_watch_configmap_symlink_swap)
{
	const char *dir = unit_tmpdir();
	char *v1 = xasprintf("%s/..v1", dir);
	char *v2 = xasprintf("%s/..v2", dir);
	char *f1 = xasprintf("%s/mesh.json", v1);
	char *f2 = xasprintf("%s/mesh.json", v2);
	char *data = xasprintf("%s/..data", dir);
	char *tmp = xasprintf("%s/..data_tmp", dir);
	char *path = xasprintf("%s/mesh.json", dir);
	char *d1 = doc_valid(1);
	char *d2 = doc_valid(2);
	char *d3 = doc_valid(3);
	struct watch *w;

	CHECK(mkdir(v1, 0755) == 0 && mkdir(v2, 0755) == 0);
	write_file(f1, d1);
	write_file(f2, d2);
	CHECK(symlink("..v1", data) == 0);
	CHECK(symlink("..data/mesh.json", path) == 0);
	/* The periodic resync is 10 s: only inotify can make this fast, but the test does not
	 * measure time, it only requires the change to arrive. */
	w = new_watch(&(struct watch_opts){.source = path, .debounce_ms = 20});
	REQUIRE(w);
	REQUIRE(watch_start(w, NULL) == 0);
	CHECK(WAIT_FOR(cur_version(w) == 1));
	CHECK(symlink("..v2", tmp) == 0);
	CHECK(rename(tmp, data) == 0);
	CHECK(WAIT_FOR(cur_version(w) == 2));
	/* An in-place write inside the target directory is seen through the second watch. */
	write_file(f2, d3);
	CHECK(WAIT_FOR(cur_version(w) == 3));
	watch_free(w);
	free(v1), free(v2), free(f1), free(f2), free(data), free(tmp), free(path);
	free(d1), free(d2), free(d3);
}

/* ---- a tiny HTTP(S) server on 127.0.0.1:0 ------------------------------------------------------
 */

struct tsrv {
	int lfd;
	int port;
	int stop_pipe[2];
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	/* Behaviour (under mu). */
	char *doc;
	int gen;    /* the ETag is "e<gen>" */
	int status; /* != 0: answer this status with a short body */
	bool longpoll;
	bool chunked;
	const char *raw; /* != NULL: answer exactly these bytes */
	/* TLS (cert_pem NULL = plain HTTP). */
	const char *cert_pem;
	uint8_t cert_der[2048];
	size_t cert_len;
	br_ec_private_key key;
	uint8_t key_x[64];
	/* Observations (under mu). */
	int nreq;
	int n304;
	char last_req[4096];
	char first_watch_target[512];
	int blocked; /* long-polls waiting right now */
};

struct tconn {
	int fd;
	bool tls;
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

static int tconn_read(struct tconn *c, char *p, size_t n)
{
	if (c->tls)
		return br_sslio_read(&c->ioc, p, n);
	return (int)recv(c->fd, p, n, 0);
}

static void tconn_write(struct tconn *c, const char *p, size_t n)
{
	if (c->tls) {
		br_sslio_write_all(&c->ioc, p, n);
		br_sslio_flush(&c->ioc);
		return;
	}
	while (n) {
		ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);

		if (k <= 0)
			return;
		p += k;
		n -= (size_t)k;
	}
}

/* The value of header `name` in a raw request head (case-insensitive name), or "" if absent. */
static void hdr_get(const char *req, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);

	out[0] = '\0';
	for (const char *l = strstr(req, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
		const char *s = l + 2;

		if (strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
			const char *v = s + nl + 1;
			size_t n;

			while (*v == ' ')
				v++;
			n = strcspn(v, "\r");
			snprintf(out, cap, "%.*s", (int)n, v);
			return;
		}
	}
}

/* Long-poll: waits while ?watch= names the current ETag, up to timeoutSeconds. */
static void tsrv_longpoll_wait(struct tsrv *s, const char *target)
{
	const char *wp = strstr(target, "watch=");
	const char *tp = strstr(target, "timeoutSeconds=");
	char tag[64];
	char cur[64];
	struct timespec dl;

	if (!wp || !s->longpoll)
		return;
	snprintf(tag, sizeof(tag), "%.*s", (int)strcspn(wp + 6, "& "), wp + 6);
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += tp ? atoi(tp + 15) : 1;
	if (!s->first_watch_target[0])
		snprintf(s->first_watch_target, sizeof(s->first_watch_target), "%s", target);
	for (;;) {
		snprintf(cur, sizeof(cur), "e%d", s->gen);
		if (s->stop || strcmp(tag, cur) != 0)
			return;
		s->blocked++;
		int r = pthread_cond_timedwait(&s->cv, &s->mu, &dl);
		s->blocked--;
		if (r == ETIMEDOUT)
			return;
	}
}

static void tsrv_respond(struct tsrv *s, struct tconn *c, const char *req)
{
	char target[512];
	char inm[128];
	char etag[64];
	char *resp;

	snprintf(target, sizeof(target), "%.*s", (int)strcspn(req + 4, " "), req + 4);
	hdr_get(req, "If-None-Match", inm, sizeof(inm));
	pthread_mutex_lock(&s->mu);
	s->nreq++;
	snprintf(s->last_req, sizeof(s->last_req), "%s", req);
	tsrv_longpoll_wait(s, target);
	snprintf(etag, sizeof(etag), "\"e%d\"", s->gen);
	if (s->raw) {
		resp = xstrdup(s->raw);
	} else if (s->status) {
		resp = xasprintf(
			"HTTP/1.1 %d Oops\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
			"token denied",
			s->status);
	} else if (strcmp(inm, etag) == 0) {
		s->n304++;
		resp = xasprintf(
			"HTTP/1.1 304 Not Modified\r\nETag: %s\r\n%sConnection: close\r\n\r\n",
			etag, s->longpoll ? WATCH_HDR_LONGPOLL ": 1\r\n" : "");
	} else if (s->chunked) {
		size_t n = strlen(s->doc);
		resp = xasprintf("HTTP/1.1 200 OK\r\nETag: %s\r\n%sTransfer-Encoding: chunked\r\n"
				 "Connection: close\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n",
				 etag, s->longpoll ? WATCH_HDR_LONGPOLL ": 1\r\n" : "", n, s->doc);
	} else {
		resp = xasprintf("HTTP/1.1 200 OK\r\nETag: %s\r\n%sContent-Length: %zu\r\n"
				 "Connection: close\r\n\r\n%s",
				 etag, s->longpoll ? WATCH_HDR_LONGPOLL ": 1\r\n" : "",
				 strlen(s->doc), s->doc);
	}
	pthread_mutex_unlock(&s->mu);
	tconn_write(c, resp, strlen(resp));
	free(resp);
}

static void tsrv_handle(struct tsrv *s, int fd)
{
	struct tconn *c = xcalloc(1, sizeof(*c));
	struct timeval tv = {5, 0};
	char req[4096];
	size_t n = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	c->fd = fd;
	if (s->cert_pem) {
		br_x509_certificate chain = {s->cert_der, s->cert_len};

		c->tls = true;
		br_ssl_server_init_full_ec(&c->sc, &chain, 1, BR_KEYTYPE_EC, &s->key);
		br_ssl_engine_set_buffer(&c->sc.eng, c->iobuf, sizeof(c->iobuf), 1);
		br_ssl_server_reset(&c->sc);
		br_sslio_init(&c->ioc, &c->sc.eng, sock_read, &c->fd, sock_write, &c->fd);
	}
	while (n < sizeof(req) - 1) {
		int k = tconn_read(c, req + n, sizeof(req) - 1 - n);

		if (k <= 0)
			break;
		n += (size_t)k;
		req[n] = '\0';
		if (strstr(req, "\r\n\r\n")) {
			tsrv_respond(s, c, req);
			break;
		}
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

static bool tsrv_start(struct tsrv *s, const char *doc, const char *cert_pem)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->doc = xstrdup(doc);
	s->gen = 1;
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
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (write(s->stop_pipe[1], "x", 1) != 1)
		unit_fail(__FILE__, __LINE__, "stop pipe");
	pthread_join(s->thr, NULL);
	close(s->lfd);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
	free(s->doc);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
}

/* Replaces the served document (new ETag) and wakes blocked long-polls. */
static void tsrv_set_doc(struct tsrv *s, const char *doc)
{
	pthread_mutex_lock(&s->mu);
	free(s->doc);
	s->doc = xstrdup(doc);
	s->gen++;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void tsrv_set_status(struct tsrv *s, int status)
{
	pthread_mutex_lock(&s->mu);
	s->status = status;
	pthread_mutex_unlock(&s->mu);
}

static int tsrv_get(struct tsrv *s, int *field)
{
	int v;

	pthread_mutex_lock(&s->mu);
	v = *field;
	pthread_mutex_unlock(&s->mu);
	return v;
}

static void tsrv_last_req(struct tsrv *s, char *out, size_t cap)
{
	pthread_mutex_lock(&s->mu);
	snprintf(out, cap, "%s", s->last_req);
	pthread_mutex_unlock(&s->mu);
}

static char *srv_url(const struct tsrv *s, const char *scheme, const char *host, const char *path)
{
	return xasprintf("%s://%s:%d%s", scheme, host, s->port, path);
}

/* ---- URL sources ----------------------------------------------------------------------------- */

TEST(http_etag_and_304)
{
	struct tsrv s;
	char *d1 = doc_valid(1);
	char *d2 = doc_valid(2);
	char req[4096];
	char *url;
	struct watch *w;
	struct stat_snap st;

	REQUIRE(tsrv_start(&s, d1, NULL));
	url = srv_url(&s, "http", "127.0.0.1", "/mesh.json");
	w = new_watch(&(struct watch_opts){.source = url});
	REQUIRE(w);
	CHECK_INT(watch_load_once(w, NULL), 0);
	CHECK_INT(cur_version(w), 1);
	tsrv_last_req(&s, req, sizeof(req));
	CHECK(strncmp(req, "GET /mesh.json HTTP/1.1\r\n", 25) == 0);
	CHECK(strcasestr(req, "\r\nHost: 127.0.0.1:") != NULL);
	CHECK(strcasestr(req, "If-None-Match") == NULL); /* nothing to match yet */
	CHECK(strcasestr(req, "Authorization") == NULL);
	st = snap(w);
	CHECK_STR(st.http_etag, "\"e1\"");
	CHECK(!st.longpoll);

	/* Unchanged: If-None-Match is sent, the 304 does not bump the version. */
	CHECK_INT(watch_load_once(w, NULL), 0);
	tsrv_last_req(&s, req, sizeof(req));
	CHECK(strstr(req, "\r\nIf-None-Match: \"e1\"\r\n") != NULL);
	CHECK(strstr(req, "watch=") == NULL); /* no long-poll without the server's say-so */
	CHECK_INT(tsrv_get(&s, &s.n304), 1);
	CHECK_INT(cur_version(w), 1);
	st = snap(w);
	CHECK_INT(st.unchanged, 1);
	CHECK(st.ok);

	tsrv_set_doc(&s, d2);
	CHECK_INT(watch_load_once(w, NULL), 0);
	CHECK_INT(cur_version(w), 2);
	CHECK_STR(snap(w).http_etag, "\"e2\"");

	/* A new ETag over the same bytes is not a new version either. */
	tsrv_set_doc(&s, d2);
	CHECK_INT(watch_load_once(w, NULL), 0);
	CHECK_INT(cur_version(w), 2);
	CHECK_INT(snap(w).unchanged, 2);

	watch_free(w);
	tsrv_stop(&s);
	free(url);
	free(d1);
	free(d2);
}

TEST(http_poll_thread_keeps_last_good)
{
	struct tsrv s;
	char *d1 = doc_valid(1);
	char *d2 = doc_valid(2);
	char *d3 = doc_valid(3);
	char *url;
	struct watch *w;
	struct stat_snap st;

	REQUIRE(tsrv_start(&s, d1, NULL));
	s.chunked = true; /* before any request: exercises the chunked body path */
	url = srv_url(&s, "http", "127.0.0.1", "/");
	w = new_watch(&(struct watch_opts){.source = url, .poll_ms = 20});
	REQUIRE(w);
	REQUIRE(watch_start(w, NULL) == 0);
	CHECK(WAIT_FOR(cur_version(w) == 1));
	CHECK(WAIT_FOR(tsrv_get(&s, &s.n304) >= 2)); /* polling with If-None-Match */
	CHECK_INT(cur_version(w), 1);

	tsrv_set_doc(&s, d2);
	CHECK(WAIT_FOR(cur_version(w) == 2));

	tsrv_set_doc(&s, DOC_INVALID);
	CHECK(WAIT_FOR(snap(w).errors == 1));
	/* The rejected document's ETag is remembered: it is not fetched and counted again. */
	CHECK(WAIT_FOR(tsrv_get(&s, &s.n304) >= 4));
	st = snap(w);
	CHECK_INT(st.errors, 1);
	CHECK_INT(st.version, 2);
	CHECK(!st.ok); /* a 304 for the rejected document does not make it good */
	CHECK_CONTAINS(st.last_error, "bogus");
	CHECK_INT(cur_version(w), 2);

	tsrv_set_doc(&s, d3);
	CHECK(WAIT_FOR(cur_version(w) == 3));
	CHECK(snap(w).ok);
	watch_free(w);
	tsrv_stop(&s);
	free(url);
	free(d1), free(d2), free(d3);
}

TEST(http_first_doc_invalid_then_304)
{
	struct tsrv s;
	struct errlist errs = {0};
	char *url;
	struct watch *w;

	REQUIRE(tsrv_start(&s, DOC_INVALID, NULL));
	url = srv_url(&s, "http", "127.0.0.1", "/");
	w = new_watch(&(struct watch_opts){.source = url});
	REQUIRE(w);
	CHECK_INT(watch_load_once(w, &errs), -E_PARSE);
	CHECK_INT(errs.n, 2);
	errlist_fini(&errs);
	/* The server now answers 304 to If-None-Match "e1": still the rejected document. */
	CHECK_INT(watch_load_once(w, &errs), -E_PARSE);
	CHECK_INT(tsrv_get(&s, &s.n304), 1);
	CHECK_INT(errs.n, 2);
	if (errs.n == 2)
		CHECK_CONTAINS(errs.items[0], ".bogus");
	CHECK(watch_current(w) == NULL);
	CHECK_INT(snap(w).errors, 1);
	errlist_fini(&errs);
	watch_free(w);
	tsrv_stop(&s);
	free(url);
}

TEST(http_longpoll_request_shape)
{
	struct tsrv s;
	char *d1 = doc_valid(1);
	char *d2 = doc_valid(2);
	char *url;
	struct watch *w;
	char target[512];

	REQUIRE(tsrv_start(&s, d1, NULL));
	s.longpoll = true;
	url = srv_url(&s, "http", "127.0.0.1", "/v1/config?x=1");
	w = new_watch(&(struct watch_opts){.source = url, .longpoll_s = 30, .poll_ms = 600000});
	REQUIRE(w);
	REQUIRE(watch_start(w, NULL) == 0);
	CHECK(WAIT_FOR(cur_version(w) == 1));
	/* The next request is a long-poll that blocks in the server. A 10-minute poll_ms means
	 * only the long-poll path can get a change through in time. */
	CHECK(WAIT_FOR(tsrv_get(&s, &s.blocked) == 1));
	pthread_mutex_lock(&s.mu);
	snprintf(target, sizeof(target), "%s", s.first_watch_target);
	pthread_mutex_unlock(&s.mu);
	CHECK_STR(target, "/v1/config?x=1&watch=e1&timeoutSeconds=30");
	CHECK(snap(w).longpoll);

	tsrv_set_doc(&s, d2);
	CHECK(WAIT_FOR(cur_version(w) == 2));
	CHECK(WAIT_FOR(tsrv_get(&s, &s.blocked) == 1)); /* and it waits again, on e2 */
	/* watch_stop interrupts a blocked long-poll (the server would hold it 30 s). */
	watch_stop(w);
	CHECK_INT(cur_version(w), 2);
	watch_free(w);
	tsrv_stop(&s);
	free(url);
	free(d1), free(d2);
}

TEST(http_longpoll_timeout_is_unchanged)
{
	struct tsrv s;
	char *d1 = doc_valid(1);
	char *url;
	struct watch *w;

	REQUIRE(tsrv_start(&s, d1, NULL));
	s.longpoll = true;
	url = srv_url(&s, "http", "127.0.0.1", "/v1/config");
	w = new_watch(&(struct watch_opts){.source = url, .longpoll_s = 1});
	REQUIRE(w);
	REQUIRE(watch_start(w, NULL) == 0);
	/* Each long-poll ends with a 304 after timeoutSeconds: no version bump, no error. */
	CHECK(WAIT_FOR(tsrv_get(&s, &s.n304) >= 2));
	CHECK_INT(cur_version(w), 1);
	CHECK_INT(snap(w).errors, 0);
	watch_free(w);
	tsrv_stop(&s);
	free(url);
	free(d1);
}

TEST(http_errors_token_and_limits)
{
	struct tsrv s;
	char *d1 = doc_valid(1);
	char *tok = tpath("token");
	char *logp = tpath("log");
	char req[4096];
	struct errlist errs = {0};
	char *url;
	struct watch *w;
	int logfd;

	REQUIRE(tsrv_start(&s, d1, NULL));
	url = srv_url(&s, "http", "127.0.0.1", "/v1/config");
	write_file(tok, "sekrit-token-value\n");
	logfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	REQUIRE(logfd >= 0);
	log_set_fd(logfd);
	log_set_level(LOG_DEBUG);
	w = new_watch(&(struct watch_opts){.source = url, .token_file = tok});
	REQUIRE(w);
	tsrv_set_status(&s, 401);
	CHECK_INT(watch_load_once(w, &errs), -E_DENIED);
	REQUIRE(errs.n == 1);
	CHECK_CONTAINS(errs.items[0], "HTTP 401 Unauthorized: token denied");
	tsrv_last_req(&s, req, sizeof(req));
	CHECK(strstr(req, "\r\nAuthorization: Bearer sekrit-token-value\r\n") != NULL);
	errlist_fini(&errs);

	tsrv_set_status(&s, 503);
	CHECK_INT(watch_load_once(w, &errs), -E_PROTO);
	REQUIRE(errs.n == 1);
	CHECK_CONTAINS(errs.items[0], "HTTP 503");
	errlist_fini(&errs);

	/* The token is re-read for every request (rotation). */
	tsrv_set_status(&s, 0);
	write_file(tok, "rotated-token\n");
	CHECK_INT(watch_load_once(w, &errs), 0);
	tsrv_last_req(&s, req, sizeof(req));
	CHECK(strstr(req, "\r\nAuthorization: Bearer rotated-token\r\n") != NULL);
	CHECK_INT(snap(w).errors, 2);
	watch_free(w);

	/* Response size limit. */
	w = new_watch(&(struct watch_opts){.source = url, .max_bytes = 10});
	REQUIRE(w);
	CHECK_INT(watch_load_once(w, &errs), -E_LIMIT);
	REQUIRE(errs.n == 1);
	CHECK_CONTAINS(errs.items[0], "response body over the 10-byte limit");
	errlist_fini(&errs);
	watch_free(w);

	log_set_fd(-1);
	log_set_level(LOG_INFO);
	close(logfd);
	{
		char logbuf[65536] = {0};
		int fd = open(logp, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, logbuf, sizeof(logbuf) - 1) : -1;

		CHECK(n > 0);
		CHECK(strstr(logbuf, "HTTP 401") != NULL); /* the log did capture the session */
		CHECK(strstr(logbuf, "sekrit") == NULL);
		CHECK(strstr(logbuf, "rotated-token") == NULL);
		if (fd >= 0)
			close(fd);
	}
	tsrv_stop(&s);
	free(url);
	free(tok);
	free(logp);
	free(d1);
}

TEST(http_connect_refused_and_retry)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	struct errlist errs = {0};
	struct watch *w;
	char *url;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	/* A port that was just free: nothing listens there. */
	REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		getsockname(fd, (struct sockaddr *)&a, &al) == 0);
	close(fd);
	url = xasprintf("http://127.0.0.1:%d/x", ntohs(a.sin_port));
	w = new_watch(
		&(struct watch_opts){.source = url, .backoff_min_ms = 10, .backoff_max_ms = 20});
	REQUIRE(w);
	CHECK(watch_load_once(w, &errs) < 0);
	REQUIRE(errs.n == 1);
	{
		char *want =
			xasprintf("connect 127.0.0.1:%d: connection refused", ntohs(a.sin_port));
		CHECK_CONTAINS(errs.items[0], want);
		free(want);
	}
	errlist_fini(&errs);
	/* The thread retries with backoff and keeps counting. */
	REQUIRE(watch_start(w, NULL) == 0);
	CHECK(WAIT_FOR(snap(w).errors >= 3));
	CHECK(watch_current(w) == NULL);
	watch_free(w);
	free(url);
}

static void raw_case(struct tsrv *s, const char *url, const char *raw, int want_r,
		     const char *want_msg)
{
	struct errlist errs = {0};
	struct watch *w = new_watch(&(struct watch_opts){.source = url});

	if (!w)
		return;
	pthread_mutex_lock(&s->mu);
	s->raw = raw;
	pthread_mutex_unlock(&s->mu);
	CHECK_INT(watch_load_once(w, &errs), want_r);
	CHECK_INT(errs.n, 1);
	if (errs.n)
		CHECK_CONTAINS(errs.items[0], want_msg);
	errlist_fini(&errs);
	watch_free(w);
}

TEST(http_bad_responses)
{
	struct tsrv s;
	char *url;

	REQUIRE(tsrv_start(&s, "{}", NULL));
	url = srv_url(&s, "http", "127.0.0.1", "/");
	raw_case(&s, url, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
		 -E_PROTO, "bad HTTP response: duplicate Content-Length");
	raw_case(&s, url, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", -E_CLOSED,
		 "connection closed early");
	raw_case(&s, url, "HTTP/1.1 302 Found\r\nLocation: http://x/\r\nContent-Length: 0\r\n\r\n",
		 -E_PROTO, "redirects are not followed; Location: http://x/");
	raw_case(&s, url, "", -E_CLOSED, "connection closed before a response");
	tsrv_stop(&s);
	free(url);
}

TEST(http_read_timeout)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct errlist errs = {0};
	struct watch *w;
	char *url;

	REQUIRE(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		listen(lfd, 4) == 0 && getsockname(lfd, (struct sockaddr *)&a, &al) == 0);
	url = xasprintf("http://127.0.0.1:%d/", ntohs(a.sin_port));
	w = new_watch(&(struct watch_opts){.source = url, .io_timeout_ms = 200});
	REQUIRE(w);
	/* Nobody accepts: the connection is queued, the request is sent, no answer comes. */
	CHECK_INT(watch_load_once(w, &errs), -E_TIMEOUT);
	REQUIRE(errs.n == 1);
	CHECK_CONTAINS(errs.items[0], "timed out");
	errlist_fini(&errs);
	watch_free(w);
	close(lfd);
	free(url);
}

/* ---- TLS and server identity --------------------------------------------------------------- */

/* The fixtures' iPAddress SANs as pkg/x509 decodes them (the server check uses that decoder). */
static int cert_has_ip_san(const char *pem, const uint8_t *ip, size_t iplen)
{
	uint8_t der[2048];
	size_t n = pem_der(pem, der, sizeof(der));
	struct x509_cert *c = NULL;
	int found = 0;

	if (n == 0 || x509_cert_decode(der, n, &c, NULL) < 0)
		return -E_PARSE;
	for (size_t i = 0; i < c->n_san; i++)
		found |= c->san[i].type == X509_GN_IP && c->san[i].v.n == iplen &&
			 memcmp(c->san[i].v.p, ip, iplen) == 0;
	x509_cert_free(c);
	return found;
}

TEST(der_ip_san_reader)
{
	uint8_t der[2048];
	size_t n1 = pem_der(PEM_SRV1, der, sizeof(der));
	struct x509_cert *c = NULL;
	static const uint8_t lo[4] = {127, 0, 0, 1};
	static const uint8_t lo2[4] = {127, 0, 0, 2};
	static const uint8_t lo6[16] = {[15] = 1};

	REQUIRE(n1 > 0);
	CHECK_INT(cert_has_ip_san(PEM_SRV1, lo, 4), 1);
	CHECK_INT(cert_has_ip_san(PEM_SRV1, lo6, 16), 1);
	CHECK_INT(cert_has_ip_san(PEM_SRV1, lo2, 4), 0);
	CHECK_INT(cert_has_ip_san(PEM_SRV2, lo2, 4), 1);
	CHECK_INT(cert_has_ip_san(PEM_SRV2, lo, 4), 0);
	CHECK_INT(cert_has_ip_san(PEM_SRV3, lo, 4), 0); /* no SAN extension at all */
	/* Truncated or trailing bytes: refused, never guessed. */
	CHECK(x509_cert_decode(der, n1 - 1, &c, NULL) < 0);
	der[n1] = 0;
	CHECK(x509_cert_decode(der, n1 + 1, &c, NULL) < 0);
}

TEST(tls_roots_file_errors)
{
	char *bad = tpath("bad.pem");
	char *two = tpath("two.pem");
	char *both = xasprintf("%s%s", PEM_OTHER, PEM_ROOT);
	struct watch *w;

	write_file(bad, "not a pem\n");
	new_watch_fails("https://127.0.0.1:1/", bad, "--ca-root");
	new_watch_fails("https://127.0.0.1:1/", bad, "no BEGIN line");
	write_file(bad, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
	new_watch_fails("https://127.0.0.1:1/", bad, bad);
	write_file(two, both);
	w = new_watch(&(struct watch_opts){.source = "https://127.0.0.1:1/", .ca_root = two});
	CHECK(w != NULL);
	if (w)
		CHECK_INT(w->http.roots.n, 2);
	watch_free(w);
	free(bad);
	free(two);
	free(both);
}

/* Loads once over https from a server presenting `cert`; returns the result and the error. */
static int tls_case(const char *cert, const char *roots_pem, const char *host, char *err,
		    size_t cap)
{
	struct tsrv s;
	char *roots = tpath("roots.pem");
	char *d1 = doc_valid(1);
	struct errlist errs = {0};
	struct watch *w;
	char *url;
	int r = -E_STATE;

	err[0] = '\0';
	write_file(roots, roots_pem);
	if (!tsrv_start(&s, d1, cert)) {
		unit_fail(__FILE__, __LINE__, "tls server start");
		free(roots);
		free(d1);
		return r;
	}
	url = srv_url(&s, "https", host, "/v1/config");
	w = new_watch(&(struct watch_opts){.source = url, .ca_root = roots});
	if (w) {
		r = watch_load_once(w, &errs);
		if (errs.n)
			snprintf(err, cap, "%s", errs.items[0]);
		if (r == 0 && cur_version(w) != 1)
			r = -E_STATE;
	}
	errlist_fini(&errs);
	watch_free(w);
	tsrv_stop(&s);
	free(url);
	free(roots);
	free(d1);
	return r;
}

TEST(tls_ip_host_checks_ip_san)
{
	char err[512];

	CHECK_INT(tls_case(PEM_SRV1, PEM_ROOT, "127.0.0.1", err, sizeof(err)), 0);
	CHECK_STR(err, "");
	/* Signed by the right root, but for 127.0.0.2 only: refused, with the reason. */
	CHECK(tls_case(PEM_SRV2, PEM_ROOT, "127.0.0.1", err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "server certificate has no IP SAN 127.0.0.1");
	/* No SAN at all: refused too (never a CN fallback for addresses). */
	CHECK(tls_case(PEM_SRV3, PEM_ROOT, "127.0.0.1", err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "no IP SAN 127.0.0.1");
}

TEST(tls_dns_host_and_trust)
{
	char err[512];

	CHECK_INT(tls_case(PEM_SRV1, PEM_ROOT, "localhost", err, sizeof(err)), 0);
	CHECK_STR(err, "");
	CHECK(tls_case(PEM_SRV2, PEM_ROOT, "localhost", err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "server certificate does not name this host");
	CHECK(tls_case(PEM_SRV1, PEM_OTHER, "127.0.0.1", err, sizeof(err)) < 0);
	CHECK_CONTAINS(err, "server certificate is not signed by --ca-root");
}

TEST(tls_plain_server_fails_cleanly)
{
	struct tsrv s;
	char *roots = tpath("roots.pem");
	struct errlist errs = {0};
	struct watch *w;
	char *url;

	write_file(roots, PEM_ROOT);
	REQUIRE(tsrv_start(&s, "{}", NULL));
	url = srv_url(&s, "https", "127.0.0.1", "/");
	w = new_watch(
		&(struct watch_opts){.source = url, .ca_root = roots, .connect_timeout_ms = 300});
	REQUIRE(w);
	CHECK(watch_load_once(w, &errs) < 0);
	REQUIRE(errs.n == 1);
	CHECK_CONTAINS(errs.items[0], "TLS handshake");
	errlist_fini(&errs);
	watch_free(w);
	tsrv_stop(&s);
	free(url);
	free(roots);
}
