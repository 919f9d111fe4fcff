/* The blocking HTTPS client for `POST /v1/certificates`: pkg/tls driven over a non-blocking
 * socket with poll() timeouts, interruptible through the identity thread's eventfd. */
#include "pkg/identity/identity_int.h"

#include "pkg/http1/http1.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * CA server verification (docs/identity.md, the same rule as pkg/watch):
 *   - the chain must verify against the roots in `ca_root` (BearSSL minimal engine, TLS 1.2);
 *   - a DNS host is sent as SNI and matched by BearSSL against the leaf's dNSName SANs;
 *   - an IP-literal host is never sent as SNI (RFC 6066 §3); the leaf must carry an iPAddress
 *     SAN equal to it (RFC 2818 §3.1), checked here on the decoded leaf;
 *   - with ca_identity set, the leaf's URI SAN must also be exactly that SPIFFE ID.
 * Anything else is refused, not guessed: there is no "pin the root and accept any name" mode.
 *
 * The bearer token is read from token_file for every request, sent once, and wiped from every
 * buffer we own; it is never logged or put in an error message. BearSSL encrypts records in
 * place, so the plaintext copy inside the TLS engine is overwritten by ciphertext on send.
 */

#define CA_PATH "/v1/certificates"
#define ROOT_FILE_MAX (1u << 20)

/* ---- URL ------------------------------------------------------------------------------------ */

static int parse_port(const char *s, size_t n, uint16_t *port)
{
	unsigned v = 0;

	if (n == 0 || n > 5)
		return -E_PARSE;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -E_PARSE;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v == 0 || v > 65535 || (n > 1 && s[0] == '0'))
		return -E_PARSE;
	*port = (uint16_t)v;
	return 0;
}

static bool dns_name_ok(const char *h)
{
	size_t n = strlen(h);

	if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.')
			return false;
	return true;
}

static int parse_host(const char *auth, size_t n, struct identity_url *u, struct errbuf *eb)
{
	const char *colon;
	size_t hlen;

	if (n && auth[0] == '[') {
		const char *end = memchr(auth, ']', n);

		if (!end)
			return errbuf_set(eb, E_PARSE, "unterminated [IPv6] host");
		hlen = (size_t)(end - auth - 1);
		u->host = xstrndup(auth + 1, hlen);
		colon = end + 1 < auth + n ? end + 1 : NULL;
		if (colon && *colon != ':')
			return errbuf_set(eb, E_PARSE, "junk after the [IPv6] host");
		if (net_ip_parse(&u->ip, u->host, NULL) < 0 || u->ip.family != AF_INET6)
			return errbuf_set(eb, E_PARSE, "\"%s\" is not an IPv6 address", u->host);
		u->host_is_ip = true;
	} else {
		colon = memchr(auth, ':', n);
		hlen = colon ? (size_t)(colon - auth) : n;
		u->host = xstrndup(auth, hlen);
		if (net_ip_parse(&u->ip, u->host, NULL) == 0) {
			u->host_is_ip = true;
		} else if (!dns_name_ok(u->host)) {
			return errbuf_set(eb, E_PARSE,
					  "\"%s\" is neither an IP address nor a DNS name",
					  u->host);
		}
		for (char *p = u->host; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	u->port = 443;
	if (colon && parse_port(colon + 1, (size_t)(auth + n - colon - 1), &u->port) < 0)
		return errbuf_set(eb, E_PARSE, "bad port \"%.*s\"", (int)(auth + n - colon - 1),
				  colon + 1);
	return 0;
}

int identity_url_parse(const char *s, struct identity_url *u, struct errbuf *eb)
{
	const char *auth;
	const char *path;
	size_t plen;
	int r;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(s, "http://", 7) == 0)
		return errbuf_set(eb, E_INVAL,
				  "ca_url %s: plain http is refused (the request carries the node "
				  "token); use https://",
				  s);
	if (strncasecmp(s, "https://", 8) != 0)
		return errbuf_set(eb, E_INVAL, "ca_url \"%s\": want https://host[:port][/prefix]",
				  s);
	auth = s + 8;
	path = auth + strcspn(auth, "/");
	if (strpbrk(s, "@?# \t\r\n"))
		return errbuf_set(eb, E_INVAL,
				  "ca_url \"%s\": userinfo, query, fragment and spaces are not "
				  "allowed",
				  s);
	r = parse_host(auth, (size_t)(path - auth), u, eb);
	if (r < 0) {
		errbuf_prefix(eb, "ca_url \"%s\"", s);
		identity_url_fini(u);
		return r;
	}
	plen = strlen(path);
	while (plen && path[plen - 1] == '/')
		plen--;
	u->prefix = xstrndup(path, plen);
	if (u->ip.family == AF_INET6 && u->host_is_ip)
		u->display = xasprintf("https://[%s]:%u%s", u->host, u->port, u->prefix);
	else
		u->display = xasprintf("https://%s:%u%s", u->host, u->port, u->prefix);
	return 0;
}

void identity_url_fini(struct identity_url *u)
{
	free(u->host);
	free(u->prefix);
	free(u->display);
	memset(u, 0, sizeof(*u));
}

/* ---- client setup --------------------------------------------------------------------------- */

/* The CA's serving certificate: IP SAN for IP hosts, URI SAN when ca_identity is set. */
static int verify_server(void *arg, const struct tls_peer *peer, char *reason, size_t cap)
{
	struct identity_client *c = arg;
	struct x509_cert *leaf = NULL;
	struct errbuf eb;
	int bad = 0;

	if (x509_cert_decode(peer->leaf.p, peer->leaf.n, &leaf, &eb) < 0) {
		snprintf(reason, cap, "CA certificate does not decode: %s", eb.msg);
		return 1;
	}
	if (c->url.host_is_ip) {
		size_t alen = c->url.ip.family == AF_INET ? 4 : 16;
		bool found = false;

		for (size_t i = 0; i < leaf->n_san; i++)
			found |= leaf->san[i].type == X509_GN_IP && leaf->san[i].v.n == alen &&
				 memcmp(leaf->san[i].v.p, c->url.ip.b, alen) == 0;
		if (!found) {
			snprintf(reason, cap, "CA certificate has no IP SAN %s (RFC 2818 §3.1)",
				 c->url.host);
			bad = 1;
		}
	}
	if (!bad && c->ca_identity) {
		struct slice uri = x509_cert_uri(leaf);

		if (leaf->n_uri != 1 || uri.n != strlen(c->ca_identity) ||
		    memcmp(uri.p, c->ca_identity, uri.n) != 0) {
			snprintf(reason, cap, "CA certificate is not for %s", c->ca_identity);
			bad = 1;
		}
	}
	x509_cert_free(leaf);
	return bad;
}

static int load_roots(struct identity_client *c, const char *path, struct errbuf *eb)
{
	size_t len = 0;
	char *text = ca_read_file(path, ROOT_FILE_MAX, &len, eb);
	int r;

	if (!text)
		return eb ? -eb->code : -E_IO;
	r = x509_chain_parse_pem(text, len, &c->roots, eb);
	free(text);
	if (r < 0)
		return r;
	c->br_roots = xcalloc(c->roots.n, sizeof(*c->br_roots));
	for (size_t i = 0; i < c->roots.n; i++)
		c->br_roots[i] = (br_x509_certificate){c->roots.v[i]->der, c->roots.v[i]->len};
	return 0;
}

int identity_client_init(struct identity_client *c, const struct identity_opts *o,
			 struct errbuf *eb)
{
	static const char *const alpn[] = {"http/1.1"};
	int r;

	memset(c, 0, sizeof(*c));
	c->wakefd = -1;
	r = identity_url_parse(o->ca_url, &c->url, eb);
	if (r < 0)
		return r;
	if (!o->ca_root || !o->token_file) {
		r = errbuf_set(eb, E_INVAL, "ca_url %s needs ca_root (PEM roots) and token_file",
			       c->url.display);
		goto fail;
	}
	if (o->ca_identity && x509_spiffe_parse(o->ca_identity, strlen(o->ca_identity),
						&(struct x509_spiffe){0}, eb) < 0) {
		errbuf_prefix(eb, "ca_identity");
		r = -E_INVAL;
		goto fail;
	}
	r = load_roots(c, o->ca_root, eb);
	if (r < 0) {
		errbuf_prefix(eb, "ca_root");
		goto fail;
	}
	{
		struct tls_client_opts to = {.anchor_certs = c->br_roots,
					     .anchor_certs_len = c->roots.n,
					     .alpn = alpn,
					     .alpn_len = 1,
					     .verify = verify_server,
					     .verify_arg = c,
					     .half_duplex = true};
		c->tls = tls_config_new_client(&to, eb);
	}
	if (!c->tls) {
		errbuf_prefix(eb, "ca_root %s", o->ca_root);
		r = -E_CRYPTO;
		goto fail;
	}
	c->token_file = xstrdup(o->token_file);
	c->ca_identity = o->ca_identity ? xstrdup(o->ca_identity) : NULL;
	c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
	c->io_timeout_ms = o->io_timeout_ms ? o->io_timeout_ms : 15000;
	return 0;
fail:
	identity_client_fini(c);
	return r;
}

void identity_client_fini(struct identity_client *c)
{
	identity_url_fini(&c->url);
	tls_config_unref(c->tls);
	x509_chain_fini(&c->roots);
	free(c->br_roots);
	free(c->token_file);
	free(c->ca_identity);
	c->tls = NULL;
	c->br_roots = NULL;
	c->token_file = NULL;
	c->ca_identity = NULL;
}

void identity_answer_fini(struct identity_answer *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->pem[i]);
	free(a->pem);
	memset(a, 0, sizeof(*a));
}

/* ---- blocking I/O -----------------------------------------------------------------------------
 */

struct conn {
	struct identity_client *c;
	int fd;
	struct tls_conn tls;
	struct errbuf ioerr;
};

static bool stopping(const struct identity_client *c)
{
	return c->stopping && atomic_load(c->stopping);
}

/* Waits for ev on fd: 0, -E_TIMEOUT, or -E_CLOSED when the manager stops. A wake-up for other
 * work is drained and ignored: the thread's loop rescans after this request anyway. */
static int wait_fd(struct identity_client *c, int fd, short ev, uint32_t timeout_ms,
		   struct errbuf *eb)
{
	uint64_t end = time_mono_ms() + timeout_ms;

	for (;;) {
		struct pollfd p[2] = {{.fd = fd, .events = ev},
				      {.fd = c->wakefd, .events = POLLIN}};
		uint64_t now = time_mono_ms();
		int r;

		if (stopping(c))
			return errbuf_set(eb, E_CLOSED, "stopped");
		if (now >= end)
			return errbuf_set(eb, E_TIMEOUT, "timed out after %u ms", timeout_ms);
		r = poll(p, c->wakefd >= 0 ? 2 : 1, (int)MIN(end - now, 60000));
		if (r < 0 && errno != EINTR)
			return errbuf_set(eb, E_IO, "poll: %s", strerror(errno));
		if (r > 0 && p[1].revents) {
			uint64_t v;

			if (read(c->wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				return errbuf_set(eb, E_IO, "eventfd: %s", strerror(errno));
		}
		if (r > 0 && p[0].revents)
			return 0;
	}
}

static int connect_addr(struct identity_client *c, const struct net_addr *dst, uint64_t end,
			struct errbuf *eb)
{
	int fd = -1;
	int r = net_connect_start(dst, &(struct net_connect_opts){.nodelay = true}, &fd, eb);

	if (r == 0)
		return fd;
	if (r < 0)
		return r;
	do {
		uint64_t now = time_mono_ms();

		r = wait_fd(c, fd, POLLOUT, now < end ? (uint32_t)(end - now) : 0, eb);
		if (r < 0) {
			errbuf_prefix(eb, "connect");
			break;
		}
		r = net_connect_finish(fd, dst, eb);
	} while (r == -E_AGAIN);
	if (r == 0)
		return fd;
	close(fd);
	return r;
}

/* getaddrinfo cannot be interrupted: with a DNS host, a stop may wait for the resolver. */
static int tcp_connect(struct identity_client *c, struct errbuf *eb)
{
	uint64_t end = time_mono_ms() + c->connect_timeout_ms;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	struct net_addr dst;
	char port[8];
	int fd = -E_IO;
	int r;

	if (c->url.host_is_ip) {
		net_addr_from_ip(&dst, &c->url.ip, c->url.port);
		return connect_addr(c, &dst, end, eb);
	}
	snprintf(port, sizeof(port), "%u", c->url.port);
	r = getaddrinfo(c->url.host, port, &hints, &res);
	if (r != 0)
		return errbuf_set(eb, E_NOTFOUND, "resolve %s: %s", c->url.host,
				  r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (net_addr_from_sockaddr(&dst, ai->ai_addr, ai->ai_addrlen) < 0)
			continue;
		fd = connect_addr(c, &dst, end, eb);
		if (fd >= 0 || stopping(c) || time_mono_ms() >= end)
			break;
	}
	freeaddrinfo(res);
	return fd;
}

static int tls_fail(struct conn *k, const char *what, struct errbuf *eb)
{
	int e = tls_conn_error(&k->tls);

	if (e == TLS_ERR_IO || k->ioerr.msg[0])
		return errbuf_set(eb, k->ioerr.code ? k->ioerr.code : E_IO, "%s: %s", what,
				  k->ioerr.msg[0] ? k->ioerr.msg : tls_conn_reason(&k->tls));
	return errbuf_set(eb, e ? tls_error_class(e) : E_PROTO, "%s: %s", what,
			  e ? tls_conn_reason(&k->tls) : "unexpected TLS state");
}

/* Sends every record the engine has. */
static int flush_out(struct conn *k, uint32_t timeout_ms)
{
	for (;;) {
		size_t len;
		const uint8_t *p = tls_conn_pull_cipher(&k->tls, &len);
		ssize_t n;

		if (!p || len == 0)
			return 0;
		n = send(k->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			tls_conn_cipher_done(&k->tls, (size_t)n);
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return errbuf_set(&k->ioerr, E_IO, "send: %s", strerror(errno));
		if (wait_fd(k->c, k->fd, POLLOUT, timeout_ms, &k->ioerr) < 0)
			return -k->ioerr.code;
	}
}

/* Reads one batch of ciphertext into the engine (EOF included). */
static int read_in(struct conn *k, uint32_t timeout_ms)
{
	for (;;) {
		size_t cap;
		uint8_t *w = tls_conn_cipher_wbuf(&k->tls, &cap);
		ssize_t n;

		if (!w || cap == 0)
			return 0;
		n = recv(k->fd, w, cap, 0);
		if (n > 0) {
			tls_conn_cipher_commit(&k->tls, (size_t)n);
			return 0;
		}
		if (n == 0) {
			tls_conn_push_eof(&k->tls);
			return 0;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return errbuf_set(&k->ioerr, E_IO, "recv: %s", strerror(errno));
		if (wait_fd(k->c, k->fd, POLLIN, timeout_ms, &k->ioerr) < 0)
			return -k->ioerr.code;
	}
}

static int handshake(struct conn *k, int64_t now_s, struct errbuf *eb)
{
	uint32_t t = k->c->connect_timeout_ms;

	if (tls_conn_init_client(&k->tls, k->c->tls, k->c->url.host_is_ip ? NULL : k->c->url.host) <
	    0)
		return errbuf_set(eb, E_CRYPTO, "TLS setup failed");
	/* Validate the CA's certificate on the manager's clock (tests move it). */
	tls_conn_set_time(&k->tls, now_s);
	for (;;) {
		unsigned st;

		if (flush_out(k, t) < 0)
			return tls_fail(k, "TLS handshake", eb);
		st = tls_conn_state(&k->tls);
		if (st & (TLS_ST_ERROR | TLS_ST_CLOSED))
			return tls_fail(k, "TLS handshake", eb);
		if (st & TLS_ST_DONE)
			return 0;
		if (!(st & TLS_ST_CIPHER_IN) || read_in(k, t) < 0)
			return tls_fail(k, "TLS handshake", eb);
	}
}

static int write_all(struct conn *k, const uint8_t *p, size_t n, struct errbuf *eb)
{
	while (n) {
		size_t w;

		if (tls_conn_state(&k->tls) & (TLS_ST_ERROR | TLS_ST_CLOSED))
			return tls_fail(k, "send", eb);
		w = tls_conn_push_plain(&k->tls, p, n);
		p += w;
		n -= w;
		if (n == 0)
			tls_conn_flush(&k->tls);
		if (flush_out(k, k->c->io_timeout_ms) < 0)
			return tls_fail(k, "send", eb);
		if (w == 0 && !(tls_conn_state(&k->tls) & TLS_ST_PLAIN_OUT) &&
		    read_in(k, k->c->io_timeout_ms) < 0)
			return tls_fail(k, "send", eb);
	}
	return 0;
}

/* Plaintext into `in`: bytes added, 0 at the end of the stream, or -E_*. */
static long read_plain(struct conn *k, struct buf *in, struct errbuf *eb)
{
	for (;;) {
		size_t len;
		const uint8_t *p = tls_conn_pull_plain(&k->tls, &len);
		unsigned st;

		if (p && len) {
			if (buf_append(in, p, len) < 0)
				return errbuf_set(eb, E_LIMIT, "CA response over %u bytes",
						  IDENTITY_RESPONSE_MAX);
			tls_conn_plain_done(&k->tls, len);
			return (long)len;
		}
		st = tls_conn_state(&k->tls);
		if (st & TLS_ST_ERROR)
			return tls_fail(k, "receive", eb);
		if (st & (TLS_ST_EOF | TLS_ST_CLOSED))
			return 0;
		if (flush_out(k, k->c->io_timeout_ms) < 0 || read_in(k, k->c->io_timeout_ms) < 0)
			return tls_fail(k, "receive", eb);
	}
}

/* ---- the request -------------------------------------------------------------------------- */

/* The token, trimmed; the caller wipes and frees it. */
static char *read_token(const char *path, struct errbuf *eb)
{
	size_t len = 0;
	char *t = ca_read_file(path, IDENTITY_TOKEN_MAX, &len, eb);

	if (!t) {
		errbuf_prefix(eb, "token_file");
		return NULL;
	}
	while (len && isspace((unsigned char)t[len - 1]))
		t[--len] = '\0';
	for (size_t i = 0; i < len; i++) {
		if (t[i] <= 0x20 || t[i] >= 0x7f) {
			len = 0; /* do not echo any of it */
			break;
		}
	}
	if (len == 0) {
		secure_wipe(t, strlen(t));
		free(t);
		errbuf_set(eb, E_INVAL, "token_file %s: empty or not a single printable token",
			   path);
		return NULL;
	}
	return t;
}

static int format_request(struct identity_client *c, const char *id, const char *csr_pem,
			  int64_t ttl_s, struct buf *out, struct errbuf *eb)
{
	struct buf body;
	struct json_writer w;
	char *token = read_token(c->token_file, eb);
	char *auth;
	char *host;
	char *target;
	int r;

	if (!token)
		return -E_INVAL;
	buf_init(&body, 0);
	json_writer_init(&w, &body, 0);
	json_write_object_begin(&w);
	json_write_key(&w, "csr");
	json_write_string(&w, csr_pem);
	json_write_key(&w, "identity");
	json_write_string(&w, id);
	json_write_key(&w, "ttlSeconds");
	json_write_int(&w, ttl_s);
	json_write_object_end(&w);
	json_writer_finish(&w);
	auth = xasprintf("Bearer %s", token);
	secure_wipe(token, strlen(token));
	free(token);
	host = c->url.ip.family == AF_INET6 && c->url.host_is_ip
		       ? xasprintf("[%s]:%u", c->url.host, c->url.port)
		       : xasprintf("%s:%u", c->url.host, c->url.port);
	target = xasprintf("%s%s", c->url.prefix, CA_PATH);
	{
		const struct http1_field f[] = {
			{http1_s("Host"), http1_s(host)},
			{http1_s("Authorization"), http1_s(auth)},
			{http1_s("Content-Type"), http1_s("application/json")},
			{http1_s("Accept"), http1_s("application/json")},
			{http1_s("Connection"), http1_s("close")},
		};
		/* Reserve first so that no reallocation leaves a stale copy of the token. */
		buf_reserve(out,
			    1024 + strlen(auth) + strlen(host) + strlen(target) + buf_len(&body));
		r = http1_format_request_head(out, "POST", target, f, ARRAY_LEN(f),
					      (int64_t)buf_len(&body));
	}
	if (r == 0)
		r = buf_append(out, buf_rptr(&body), buf_len(&body));
	if (r < 0)
		r = errbuf_set(eb, E_INVAL, "cannot format the CA request");
	secure_wipe(auth, strlen(auth));
	free(auth);
	free(host);
	free(target);
	buf_fini(&body);
	return r;
}

struct resp {
	int status;
	int64_t retry_after;
	struct buf body;
};

static void on_head(const struct http1_msg *m, struct resp *rs)
{
	struct slice v;

	rs->status = m->status;
	if (http1_fields_get(&m->headers, "retry-after", &v) && v.n > 0 && v.n < 10) {
		int64_t s = 0;

		for (size_t i = 0; i < v.n && s >= 0; i++)
			s = isdigit(v.p[i]) ? s * 10 + (v.p[i] - '0') : -1;
		rs->retry_after = s > 0 ? s : 0;
	}
}

static int read_response(struct conn *k, struct resp *rs, struct errbuf *eb)
{
	struct http1_limits lim;
	struct http1_parser p;
	struct buf in;
	int r = 0;

	http1_limits_default(&lim);
	lim.max_body = IDENTITY_RESPONSE_MAX;
	http1_parser_init(&p, HTTP1_RESPONSE, &lim);
	http1_parser_set_method(&p, HTTP1_M_POST);
	buf_init(&in, IDENTITY_RESPONSE_MAX + 65536);
	for (bool done = false; !done;) {
		struct http1_event ev;
		int n = http1_parser_push(&p, buf_rptr(&in), buf_len(&in), &ev);
		long got;

		if (n < 0) {
			r = errbuf_set(eb, E_PROTO, "bad HTTP response: %s",
				       http1_parser_reason(&p));
			break;
		}
		if (ev.type == HTTP1_EV_HEAD && ev.msg->status >= 200)
			on_head(ev.msg, rs);
		else if (ev.type == HTTP1_EV_BODY && rs->status >= 200)
			buf_append(&rs->body, ev.data.p, ev.data.n);
		else if (ev.type == HTTP1_EV_END && rs->status >= 200)
			done = true;
		buf_consume(&in, (size_t)n);
		if (done || ev.type != HTTP1_EV_NONE)
			continue;
		got = read_plain(k, &in, eb);
		if (got < 0) {
			r = (int)got;
			break;
		}
		if (got == 0) {
			r = http1_parser_eof(&p, &ev);
			if (r < 0 || ev.type != HTTP1_EV_END || rs->status < 200) {
				r = errbuf_set(eb, E_CLOSED,
					       "CA closed the connection before a full response");
				break;
			}
			if (rs->status >= 200)
				buf_append(&rs->body, ev.data.p, ev.data.n);
			done = true;
		}
	}
	buf_fini(&in);
	return r;
}

static int status_class(int status)
{
	switch (status) {
	case 400: return E_INVAL;
	case 401:
	case 403: return E_DENIED;
	case 413:
	case 429: return E_LIMIT;
	default: return status >= 500 ? E_IO : E_PROTO;
	}
}

/* {"certChain": [PEM...], "warnings": [...]} or {"error": "..."}. */
static int decode_answer(struct identity_client *c, const struct resp *rs, const char *id,
			 struct identity_answer *a, struct errbuf *eb)
{
	cJSON *root = NULL;
	const cJSON *chain;
	const cJSON *warn;
	int r = 0;

	a->status = rs->status;
	a->retry_after = rs->retry_after;
	if (json_parse((const char *)buf_rptr(&rs->body), buf_len(&rs->body), NULL, &root, NULL) <
		    0 ||
	    !cJSON_IsObject(root)) {
		json_free(root);
		return errbuf_set(eb, rs->status == 200 ? E_PROTO : status_class(rs->status),
				  "CA %s answered %d %s without a JSON object", c->url.display,
				  rs->status, http1_reason(rs->status));
	}
	if (rs->status != 200) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");

		r = errbuf_set(eb, status_class(rs->status), "CA %s answered %d %s: %.300s",
			       c->url.display, rs->status, http1_reason(rs->status),
			       cJSON_IsString(e) ? e->valuestring : "(no error text)");
		goto out;
	}
	chain = cJSON_GetObjectItemCaseSensitive(root, "certChain");
	if (!cJSON_IsArray(chain)) {
		r = errbuf_set(eb, E_PROTO, "CA %s: response has no certChain array",
			       c->url.display);
		goto out;
	}
	for (const cJSON *e = chain->child; e; e = e->next) {
		if (!cJSON_IsString(e)) {
			r = errbuf_set(eb, E_PROTO, "CA %s: certChain[%zu] is not a string",
				       c->url.display, a->n);
			goto out;
		}
		if (a->n >= X509_MAX_CHAIN) {
			r = errbuf_set(eb, E_LIMIT, "CA %s: certChain over %d elements",
				       c->url.display, X509_MAX_CHAIN);
			goto out;
		}
		a->pem = xrealloc(a->pem, (a->n + 1) * sizeof(*a->pem));
		a->pem[a->n++] = xstrdup(e->valuestring);
	}
	warn = cJSON_GetObjectItemCaseSensitive(root, "warnings");
	if (cJSON_IsArray(warn))
		for (const cJSON *e = warn->child; e; e = e->next)
			if (cJSON_IsString(e))
				log_warn("identity: CA warning", LF_STR("identity", id),
					 LF_STR("warning", e->valuestring));
out:
	json_free(root);
	return r;
}

int identity_client_request(struct identity_client *c, const char *id, const char *csr_pem,
			    int64_t ttl_s, int64_t now_s, struct identity_answer *a,
			    struct errbuf *eb)
{
	struct conn k = {.c = c, .fd = -1};
	struct resp rs = {0};
	struct buf req;
	int r;

	memset(a, 0, sizeof(*a));
	buf_init(&req, 0);
	buf_init(&rs.body, IDENTITY_RESPONSE_MAX);
	r = format_request(c, id, csr_pem, ttl_s, &req, eb);
	if (r < 0)
		goto out;
	k.fd = tcp_connect(c, eb);
	if (k.fd < 0) {
		r = k.fd;
		errbuf_prefix(eb, "CA %s", c->url.display);
		goto out;
	}
	r = handshake(&k, now_s, eb);
	if (r == 0)
		r = write_all(&k, buf_rptr(&req), buf_len(&req), eb);
	if (r == 0)
		r = read_response(&k, &rs, eb);
	if (r < 0) {
		errbuf_prefix(eb, "CA %s", c->url.display);
		goto out;
	}
	r = decode_answer(c, &rs, id, a, eb);
out:
	if (stopping(c))
		r = errbuf_set(eb, E_CLOSED, "stopped");
	tls_conn_fini(&k.tls);
	if (k.fd >= 0)
		close(k.fd);
	x509_buf_wipe(&req); /* held the bearer token */
	buf_fini(&rs.body);
	if (r < 0) {
		/* Keep status and Retry-After for the backoff; drop any partial chain. */
		struct identity_answer keep = {.status = a->status, .retry_after = a->retry_after};

		identity_answer_fini(a);
		*a = keep;
	}
	return r;
}
