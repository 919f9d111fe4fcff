/* The blocking HTTP/1.1 client: connect, TLS through pkg/tls with server verification, one
 * request and its response through pkg/http1, every wait interruptible by a wake fd. */
#include "pkg/httpc/httpc.h"

#include "pkg/net/net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* See httpc.h for the request sequence and the server identity rules. The bearer token is
 * read for every request, sent once and wiped from every buffer we own; BearSSL encrypts
 * records in place, so its plaintext copy is overwritten on send. */

#define ROOTS_FILE_MAX (1u << 20)
#define BODY_MAX_DEFAULT (1u << 20)
#define REASON_MAX 192

/* ---- setup ---------------------------------------------------------------------------------- */

static int read_small_file(const char *path, struct buf *out, size_t max, struct errbuf *eb)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int r = 0;

	if (fd < 0)
		return errbuf_set(eb, E_IO, "%s", strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		close(fd);
		return errbuf_set(eb, E_INVAL, "not a regular file of at most %zu bytes", max);
	}
	for (;;) {
		uint8_t tmp[4096];
		ssize_t n = read(fd, tmp, sizeof(tmp));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = errbuf_set(eb, E_IO, "read: %s", strerror(errno));
			break;
		}
		if (n == 0)
			break;
		if (buf_append(out, tmp, (size_t)n) < 0) {
			r = errbuf_set(eb, E_LIMIT, "larger than %zu bytes", max);
			break;
		}
	}
	close(fd);
	return r;
}

static int load_roots(struct httpc *c, const char *path, struct errbuf *eb)
{
	struct buf text;
	int r;

	buf_init(&text, ROOTS_FILE_MAX);
	r = read_small_file(path, &text, ROOTS_FILE_MAX, eb);
	if (r == 0)
		r = x509_chain_parse_pem((const char *)buf_rptr(&text), buf_len(&text), &c->roots,
					 eb);
	buf_fini(&text);
	if (r < 0)
		return r;
	c->br_roots = xcalloc(c->roots.n, sizeof(*c->br_roots));
	for (size_t i = 0; i < c->roots.n; i++)
		c->br_roots[i] = (br_x509_certificate){c->roots.v[i]->der, c->roots.v[i]->len};
	return 0;
}

int httpc_init(struct httpc *c, const char *url, const struct httpc_opts *o, struct errbuf *eb)
{
	static const char *const alpn[] = {"http/1.1"};
	int r;

	memset(c, 0, sizeof(*c));
	r = httpc_url_parse(url, &c->url, eb);
	if (r < 0)
		return r;
	c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
	c->io_timeout_ms = o->io_timeout_ms ? o->io_timeout_ms : 15000;
	c->peer_what = xstrdup(o->peer_what ? o->peer_what : "server");
	c->pin_uri = o->pin_uri ? xstrdup(o->pin_uri) : NULL;
	if (!c->url.tls)
		return 0;
	if (!o->ca_root || !o->ca_root[0]) {
		r = errbuf_set(eb, E_INVAL, "https needs a trust anchor file");
		goto fail;
	}
	c->ca_root_what = xstrdup(o->ca_root_what ? o->ca_root_what : o->ca_root);
	r = load_roots(c, o->ca_root, eb);
	if (r == 0) {
		struct tls_client_opts to = {.anchor_certs = c->br_roots,
					     .anchor_certs_len = c->roots.n,
					     .alpn = alpn,
					     .alpn_len = 1,
					     .half_duplex = true};

		c->tls = tls_config_new_client(&to, eb);
		if (!c->tls)
			r = -E_CRYPTO;
	}
	if (r < 0) {
		if (o->ca_root_what)
			errbuf_prefix(eb, "%s %s", o->ca_root_what, o->ca_root);
		else
			errbuf_prefix(eb, "%s", o->ca_root);
		goto fail;
	}
	return 0;
fail:
	httpc_fini(c);
	return r;
}

void httpc_fini(struct httpc *c)
{
	httpc_url_fini(&c->url);
	tls_config_unref(c->tls);
	x509_chain_fini(&c->roots);
	free(c->br_roots);
	free(c->ca_root_what);
	free(c->peer_what);
	free(c->pin_uri);
	memset(c, 0, sizeof(*c));
}

void httpc_resp_fini(struct httpc_resp *rs)
{
	buf_fini(&rs->body);
	rs->status = 0;
}

/* ---- one connection --------------------------------------------------------------------------
 */

struct conn {
	struct httpc *c;
	const struct httpc_req *rq;
	int fd;
	bool tls;
	struct tls_conn t;
	struct errbuf ioerr;	 /* the transport failure behind a TLS error */
	char reason[REASON_MAX]; /* why the verify callback refused the server */
	bool woken;		 /* a wait ended on a stop */
};

static bool stopping(const struct conn *k)
{
	return k->woken || (k->rq->stopping && atomic_load(k->rq->stopping));
}

/* Waits for ev on fd: 0, -E_TIMEOUT, or -E_CLOSED when stopped. With a stopping flag, a
 * wake-up for other work is drained and ignored (the caller rescans after this request). */
static int wait_fd(struct conn *k, short ev, uint32_t timeout_ms, struct errbuf *eb)
{
	uint64_t end = time_mono_ms() + timeout_ms;
	int wfd = k->rq->wakefd;

	for (;;) {
		struct pollfd p[2] = {{.fd = k->fd, .events = ev}, {.fd = wfd, .events = POLLIN}};
		uint64_t now = time_mono_ms();
		int r;

		if (stopping(k))
			return errbuf_set(eb, E_CLOSED, "stopped");
		if (now >= end)
			return errbuf_set(eb, E_TIMEOUT, "timed out after %u ms", timeout_ms);
		r = poll(p, wfd >= 0 ? 2 : 1, (int)MIN(end - now, 60000));
		if (r < 0 && errno != EINTR)
			return errbuf_set(eb, E_IO, "poll: %s", strerror(errno));
		if (r > 0 && wfd >= 0 && p[1].revents) {
			uint64_t v;

			if (!k->rq->stopping || stopping(k)) {
				k->woken = true;
				return errbuf_set(eb, E_CLOSED, "stopped");
			}
			if (read(wfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				return errbuf_set(eb, E_IO, "wake fd: %s", strerror(errno));
		}
		if (r > 0 && p[0].revents)
			return 0;
	}
}

/* pkg/net's non-blocking connect, waited for here so that a stop can cut it short. */
static int connect_one(struct conn *k, const struct addrinfo *ai, uint64_t end, struct errbuf *eb)
{
	struct net_addr dst;
	int r;

	r = net_addr_from_sockaddr(&dst, ai->ai_addr, ai->ai_addrlen);
	if (r < 0)
		return errbuf_set(eb, -r, "connect: unsupported address family %d", ai->ai_family);
	r = net_connect_start(&dst, &(struct net_connect_opts){.nodelay = true}, &k->fd, eb);
	if (r <= 0)
		return r;
	do {
		uint64_t now = time_mono_ms();

		r = wait_fd(k, POLLOUT, now < end ? (uint32_t)(end - now) : 0, eb);
		if (r < 0) {
			errbuf_prefix(eb, "connect");
			break;
		}
		r = net_connect_finish(k->fd, &dst, eb);
	} while (r == -E_AGAIN);
	if (r < 0) {
		close(k->fd);
		k->fd = -1;
	}
	return r;
}

static int tcp_connect(struct conn *k, uint64_t end, struct errbuf *eb)
{
	const struct httpc_url *u = &k->c->url;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char port[8];
	int r = -E_IO;

	if (u->host_is_ip)
		hints.ai_flags |= AI_NUMERICHOST;
	snprintf(port, sizeof(port), "%u", u->port);
	r = getaddrinfo(u->host, port, &hints, &res);
	if (r != 0)
		return errbuf_set(eb, E_NOTFOUND, "resolve %s: %s", u->host,
				  r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
	r = errbuf_set(eb, E_NOTFOUND, "resolve %s: no address", u->host);
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		r = connect_one(k, ai, end, eb);
		if (r == 0 || stopping(k) || time_mono_ms() >= end)
			break;
	}
	freeaddrinfo(res);
	return r;
}

/* ---- TLS --------------------------------------------------------------------------------------
 */

/* The leaf against the URL's IP literal and the pinned URI (the chain already verified). */
static int verify_server(void *arg, const struct tls_peer *peer, char *reason, size_t cap)
{
	struct conn *k = arg;
	const struct httpc *c = k->c;
	struct x509_cert *leaf = NULL;
	struct errbuf eb = {0};

	if (x509_cert_decode(peer->leaf.p, peer->leaf.n, &leaf, &eb) < 0) {
		snprintf(k->reason, sizeof(k->reason), "cannot read the %s certificate: %.120s",
			 c->peer_what, eb.msg);
		goto bad;
	}
	if (c->url.host_is_ip) {
		size_t alen = c->url.ip_family == AF_INET ? 4 : 16;
		bool found = false;

		for (size_t i = 0; i < leaf->n_san; i++)
			found |= leaf->san[i].type == X509_GN_IP && leaf->san[i].v.n == alen &&
				 memcmp(leaf->san[i].v.p, c->url.ip, alen) == 0;
		if (!found) {
			snprintf(k->reason, sizeof(k->reason),
				 "%s certificate has no IP SAN %s (RFC 2818 §3.1)", c->peer_what,
				 c->url.host);
			goto bad;
		}
	}
	if (c->pin_uri) {
		struct slice uri = x509_cert_uri(leaf);

		if (leaf->n_uri != 1 || uri.n != strlen(c->pin_uri) ||
		    memcmp(uri.p, c->pin_uri, uri.n) != 0) {
			snprintf(k->reason, sizeof(k->reason), "%s certificate is not for %s",
				 c->peer_what, c->pin_uri);
			goto bad;
		}
	}
	x509_cert_free(leaf);
	return 0;
bad:
	x509_cert_free(leaf);
	snprintf(reason, cap, "%s", k->reason);
	return 1;
}

/* Explains a TLS failure; the transport reason wins when it was the cause. */
static int tls_fail(struct conn *k, const char *what, struct errbuf *eb)
{
	int e = tls_conn_error(&k->t);
	const char *pw = k->c->peer_what;

	if (k->ioerr.msg[0])
		return errbuf_set(eb, k->ioerr.code ? k->ioerr.code : E_IO, "%s: %s", what,
				  k->ioerr.msg);
	switch (e) {
	case 0: return errbuf_set(eb, E_PROTO, "%s: unexpected TLS state", what);
	case TLS_ERR_REJECTED:
		if (k->reason[0])
			return errbuf_set(eb, E_CRYPTO, "%s: %s", what, k->reason);
		break;
	case BR_ERR_X509_NOT_TRUSTED:
		return errbuf_set(eb, E_CRYPTO, "%s: %s certificate is not signed by %s", what, pw,
				  k->c->ca_root_what);
	case BR_ERR_X509_BAD_SERVER_NAME:
		return errbuf_set(eb, E_CRYPTO, "%s: %s certificate does not name this host", what,
				  pw);
	case BR_ERR_X509_EXPIRED:
		return errbuf_set(eb, E_CRYPTO, "%s: %s certificate expired or not yet valid", what,
				  pw);
	default: break;
	}
	return errbuf_set(eb, tls_error_class(e), "%s: %s", what, tls_conn_reason(&k->t));
}

/* Sends every record the engine has. */
static int flush_out(struct conn *k, uint32_t timeout_ms)
{
	for (;;) {
		size_t len;
		const uint8_t *p = tls_conn_pull_cipher(&k->t, &len);
		ssize_t n;

		if (!p || len == 0)
			return 0;
		n = send(k->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			tls_conn_cipher_done(&k->t, (size_t)n);
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return errbuf_set(&k->ioerr, E_IO, "send: %s", strerror(errno));
		if (wait_fd(k, POLLOUT, timeout_ms, &k->ioerr) < 0)
			return -k->ioerr.code;
	}
}

/* Reads one batch of ciphertext into the engine (EOF included). */
static int read_in(struct conn *k, uint32_t timeout_ms)
{
	for (;;) {
		size_t cap;
		uint8_t *w = tls_conn_cipher_wbuf(&k->t, &cap);
		ssize_t n;

		if (!w || cap == 0)
			return 0;
		n = recv(k->fd, w, cap, 0);
		if (n > 0) {
			tls_conn_cipher_commit(&k->t, (size_t)n);
			return 0;
		}
		if (n == 0) {
			tls_conn_push_eof(&k->t);
			return 0;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return errbuf_set(&k->ioerr, E_IO, "recv: %s", strerror(errno));
		if (wait_fd(k, POLLIN, timeout_ms, &k->ioerr) < 0)
			return -k->ioerr.code;
	}
}

static int handshake(struct conn *k, uint32_t t, struct errbuf *eb)
{
	const struct httpc_url *u = &k->c->url;

	if (tls_conn_init_client(&k->t, k->c->tls, u->host_is_ip ? NULL : u->host) < 0)
		return errbuf_set(eb, E_CRYPTO, "TLS setup failed");
	tls_conn_set_verify(&k->t, verify_server, k);
	if (k->rq->now_s)
		tls_conn_set_time(&k->t, k->rq->now_s);
	for (;;) {
		unsigned st;

		if (flush_out(k, t) < 0)
			return tls_fail(k, "TLS handshake", eb);
		st = tls_conn_state(&k->t);
		if (st & (TLS_ST_ERROR | TLS_ST_CLOSED))
			return tls_fail(k, "TLS handshake", eb);
		if (st & TLS_ST_DONE)
			return 0;
		if (!(st & TLS_ST_CIPHER_IN) || read_in(k, t) < 0)
			return tls_fail(k, "TLS handshake", eb);
	}
}

static int conn_open(struct conn *k, struct errbuf *eb)
{
	uint64_t end = time_mono_ms() + k->c->connect_timeout_ms;
	uint64_t now;
	int r;

	r = tcp_connect(k, end, eb);
	if (r < 0)
		return stopping(k) ? errbuf_set(eb, E_CLOSED, "stopped") : r;
	k->tls = k->c->url.tls;
	if (!k->tls)
		return 0;
	/* The handshake shares the connect deadline. */
	now = time_mono_ms();
	return handshake(k, now < end ? (uint32_t)(end - now) : 1, eb);
}

static int conn_write(struct conn *k, const uint8_t *p, size_t n, struct errbuf *eb)
{
	uint32_t t = k->c->io_timeout_ms;

	while (n && !k->tls) {
		ssize_t w = send(k->fd, p, n, MSG_NOSIGNAL);

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return errbuf_set(eb, E_IO, "send: %s", strerror(errno));
		if (wait_fd(k, POLLOUT, t, eb) < 0) {
			errbuf_prefix(eb, "send");
			return -eb->code;
		}
	}
	while (n) {
		size_t w;

		if (tls_conn_state(&k->t) & (TLS_ST_ERROR | TLS_ST_CLOSED))
			return tls_fail(k, "send", eb);
		w = tls_conn_push_plain(&k->t, p, n);
		p += w;
		n -= w;
		if (n == 0)
			tls_conn_flush(&k->t);
		if (flush_out(k, t) < 0)
			return tls_fail(k, "send", eb);
		if (w == 0 && !(tls_conn_state(&k->t) & TLS_ST_PLAIN_OUT) && read_in(k, t) < 0)
			return tls_fail(k, "send", eb);
	}
	return 0;
}

/* Bytes into in: count, 0 at the end of the stream, or -E_*. */
static long conn_read(struct conn *k, struct buf *in, uint32_t t, struct errbuf *eb)
{
	for (;;) {
		size_t len;
		const uint8_t *p;
		unsigned st;

		if (buf_reserve(in, 16384) < 0)
			return errbuf_set(eb, E_LIMIT, "response head too large");
		if (!k->tls) {
			ssize_t n = recv(k->fd, buf_wptr(in), buf_wspace(in), 0);

			if (n >= 0) {
				buf_produce(in, (size_t)n);
				return n;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				return errbuf_set(eb, E_IO, "receive: recv: %s", strerror(errno));
			if (wait_fd(k, POLLIN, t, eb) < 0) {
				errbuf_prefix(eb, "receive");
				return -eb->code;
			}
			continue;
		}
		p = tls_conn_pull_plain(&k->t, &len);
		if (p && len) {
			len = MIN(len, buf_wspace(in));
			memcpy(buf_wptr(in), p, len);
			buf_produce(in, len);
			tls_conn_plain_done(&k->t, len);
			return (long)len;
		}
		st = tls_conn_state(&k->t);
		if (st & TLS_ST_ERROR)
			return tls_fail(k, "receive", eb);
		if (st & (TLS_ST_EOF | TLS_ST_CLOSED))
			return 0;
		if (flush_out(k, t) < 0 || read_in(k, t) < 0)
			return tls_fail(k, "receive", eb);
	}
}

static void conn_close(struct conn *k)
{
	if (k->tls)
		tls_conn_fini(&k->t);
	if (k->fd >= 0)
		close(k->fd);
	k->fd = -1;
}

/* ---- request and response --------------------------------------------------------------------
 */

static int build_request(struct httpc *c, const struct httpc_req *rq, struct buf *req,
			 struct errbuf *eb)
{
	char tok[HTTPC_TOKEN_MAX];
	char *auth = NULL;
	char clen[24];
	struct http1_field f[9];
	const char *target = rq->target ? rq->target : c->url.target;
	size_t nf = 0;
	int r;

	f[nf++] = (struct http1_field){http1_s("Host"), http1_s(c->url.hostport)};
	if (rq->user_agent)
		f[nf++] = (struct http1_field){http1_s("User-Agent"), http1_s(rq->user_agent)};
	if (rq->accept)
		f[nf++] = (struct http1_field){http1_s("Accept"), http1_s(rq->accept)};
	f[nf++] = (struct http1_field){http1_s("Connection"), http1_s("close")};
	if (rq->if_none_match && rq->if_none_match[0])
		f[nf++] =
			(struct http1_field){http1_s("If-None-Match"), http1_s(rq->if_none_match)};
	if (rq->body && rq->content_type)
		f[nf++] = (struct http1_field){http1_s("Content-Type"), http1_s(rq->content_type)};
	if (rq->token_file) {
		r = httpc_token_read(rq->token_file, tok, sizeof(tok), eb);
		if (r < 0)
			goto out;
		auth = xasprintf("Bearer %s", tok);
		f[nf++] = (struct http1_field){http1_s("Authorization"), http1_s(auth)};
	}
	snprintf(clen, sizeof(clen), "%zu", rq->body_len);
	/* Room for everything up front: a realloc would leave a copy of the token behind. */
	r = buf_reserve(req, 4096 + strlen(target) + sizeof(tok) + rq->body_len +
				     (rq->if_none_match ? strlen(rq->if_none_match) : 0));
	if (r == 0)
		r = http1_format_request_head(req, rq->method ? rq->method : "GET", target, f, nf,
					      rq->body ? (int64_t)rq->body_len : HTTP1_LEN_NONE);
	if (r == 0 && rq->body)
		r = buf_append(req, rq->body, rq->body_len);
	if (r < 0)
		errbuf_set(eb, -r, "cannot build the request: %s", err_str(r));
out:
	secure_wipe(tok, sizeof(tok));
	if (auth) {
		secure_wipe(auth, strlen(auth));
		free(auth);
	}
	return r;
}

/* Feeds everything buffered to the parser. Returns 1 at the end of the response, 0 for more. */
static int parse_some(const struct httpc_req *rq, size_t max, struct http1_parser *p,
		      struct buf *in, struct httpc_resp *rs, struct errbuf *eb)
{
	for (;;) {
		struct http1_event ev;
		int n = http1_parser_push(p, buf_rptr(in), buf_len(in), &ev);

		if (n == -E_LIMIT && http1_parser_status(p) == 413)
			return errbuf_set(eb, E_LIMIT, "response body over the %zu-byte limit",
					  max);
		if (n < 0)
			return errbuf_set(eb, -n, "bad HTTP response: %s", http1_parser_reason(p));
		if (ev.type == HTTP1_EV_HEAD && ev.msg->status >= 200) {
			rs->status = ev.msg->status;
			if (rq->on_head)
				rq->on_head(rq->arg, ev.msg);
		}
		if (ev.type == HTTP1_EV_BODY && rs->status &&
		    buf_append(&rs->body, ev.data.p, ev.data.n) < 0)
			return errbuf_set(eb, E_LIMIT, "response body over the %zu-byte limit",
					  max);
		buf_consume(in, (size_t)n);
		if (ev.type == HTTP1_EV_END && rs->status >= 200)
			return 1;
		if (ev.type == HTTP1_EV_UPGRADE)
			return errbuf_set(eb, E_PROTO, "unexpected protocol upgrade");
		if (ev.type == HTTP1_EV_NONE)
			return 0;
	}
}

static int read_response(struct conn *k, size_t max, struct httpc_resp *rs, struct errbuf *eb)
{
	const struct httpc_req *rq = k->rq;
	uint32_t t = rq->timeout_ms ? rq->timeout_ms : k->c->io_timeout_ms;
	struct http1_limits lim;
	struct http1_parser p;
	struct buf in;
	int r = 0;

	http1_limits_default(&lim);
	lim.max_body = max;
	http1_parser_init(&p, HTTP1_RESPONSE, &lim);
	if (rq->method && strcmp(rq->method, "HEAD") == 0)
		http1_parser_set_method(&p, HTTP1_M_HEAD);
	buf_init(&in, lim.max_head + 65536);
	while (r == 0) {
		long n = conn_read(k, &in, t, eb);

		if (n < 0) {
			r = (int)n;
			break;
		}
		if (n == 0) {
			struct http1_event ev;

			r = http1_parser_eof(&p, &ev);
			if (r < 0)
				r = errbuf_set(eb, E_CLOSED, "connection closed early: %s",
					       http1_parser_reason(&p));
			else if (ev.type == HTTP1_EV_END && rs->status >= 200)
				r = ev.data.n && buf_append(&rs->body, ev.data.p, ev.data.n) < 0
					    ? errbuf_set(eb, E_LIMIT,
							 "response body over the %zu-byte limit",
							 max)
					    : 1;
			else
				r = errbuf_set(eb, E_CLOSED, "connection closed before a response");
			break;
		}
		r = parse_some(rq, max, &p, &in, rs, eb);
	}
	buf_fini(&in);
	return r < 0 ? r : 0;
}

int httpc_fetch(struct httpc *c, const struct httpc_req *rq, struct httpc_resp *rs,
		struct errbuf *eb)
{
	struct conn *k = xcalloc(1, sizeof(*k));
	size_t max = rq->max_body ? rq->max_body : BODY_MAX_DEFAULT;
	struct buf req;
	int r;

	k->c = c;
	k->rq = rq;
	k->fd = -1;
	rs->status = 0;
	buf_init(&rs->body, max);
	buf_init(&req, 0);
	r = build_request(c, rq, &req, eb);
	if (r == 0)
		r = conn_open(k, eb);
	if (r == 0)
		r = conn_write(k, buf_rptr(&req), buf_len(&req), eb);
	/* The request holds the bearer token: wipe it as soon as it is sent. */
	secure_wipe(req.data, req.cap);
	if (r == 0)
		r = read_response(k, max, rs, eb);
	if (r < 0 && stopping(k))
		r = errbuf_set(eb, E_CLOSED, "stopped");
	conn_close(k);
	buf_fini(&req);
	free(k);
	return r;
}
