/* Blocking TCP/TLS client connections for URL sources, with poll() timeouts and wake-up on stop. */
#include "pkg/watch/watch_int.h"

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

/*
 * TLS: BearSSL's client engine, TLS 1.2 only, full cipher-suite set, trust anchors from a PEM
 * file, driven by br_sslio over a non-blocking socket whose every wait is a poll() on the socket
 * and the watch's eventfd (so watch_stop interrupts a long-poll at once).
 *
 * Server identity (RFC 2818 §3.1, RFC 6125):
 *   DNS host      -> SNI and BearSSL's own check of the leaf's dNSName SANs (and CN).
 *   IP literal    -> no SNI (RFC 6066 §3 forbids literal addresses in it) and no BearSSL name
 *                    check; instead the x509 engine is wrapped: after the chain validates, the
 *                    leaf's DER is walked by a small strict reader and the chain is refused
 *                    unless an iPAddress SAN equals the address we connected to. A leaf that
 *                    does not parse, or is too large to keep, is refused, never guessed.
 *
 * Connecting: getaddrinfo, then pkg/net's non-blocking connect per address, all under one
 * deadline, each wait a poll() that watch_stop can interrupt.
 * getaddrinfo itself cannot be interrupted: with a DNS host, watch_stop may wait for the
 * resolver's own timeout.
 */

#define LEAF_MAX 16384		 /* a leaf certificate larger than this is refused */
#define ROOTS_FILE_MAX (1 << 20) /* trust anchor PEM file */

/* ---- a strict DER reader (X.690 §10: definite, minimal lengths; low tag numbers) ----------- */

struct der {
	const uint8_t *p;
	size_t n;
};

static int der_next(struct der *d, uint8_t *tag, struct der *val)
{
	size_t len;
	size_t off = 2;

	if (d->n < 2 || (d->p[0] & 0x1f) == 0x1f)
		return -E_PARSE;
	*tag = d->p[0];
	len = d->p[1];
	if (len & 0x80) {
		size_t k = len & 0x7f;

		/* No indefinite form, no leading zero octets, long form only when needed. */
		if (k == 0 || k > 3 || d->n < 2 + k || d->p[2] == 0)
			return -E_PARSE;
		len = 0;
		for (size_t i = 0; i < k; i++)
			len = (len << 8) | d->p[2 + i];
		if (len < 0x80)
			return -E_PARSE;
		off += k;
	}
	if (len > d->n - off)
		return -E_PARSE;
	val->p = d->p + off;
	val->n = len;
	d->p += off + len;
	d->n -= off + len;
	return 0;
}

/* Reads one element that must carry `want`. */
static int der_expect(struct der *d, uint8_t want, struct der *val)
{
	uint8_t tag;

	if (der_next(d, &tag, val) < 0 || tag != want)
		return -E_PARSE;
	return 0;
}

/* GeneralNames (RFC 5280 §4.2.1.6): 1 when an iPAddress [7] equals ip. */
static int san_has_ip(struct der gns, const uint8_t *ip, size_t iplen)
{
	struct der seq;
	int found = 0;

	if (der_expect(&gns, 0x30, &seq) < 0 || gns.n != 0 || seq.n == 0)
		return -E_PARSE;
	while (seq.n) {
		struct der v;
		uint8_t tag;

		if (der_next(&seq, &tag, &v) < 0)
			return -E_PARSE;
		if (tag == 0x87 && v.n == iplen && memcmp(v.p, ip, iplen) == 0)
			found = 1;
	}
	return found;
}

int watch_cert_has_ip_san(const uint8_t *der, size_t len, const uint8_t *ip, size_t iplen)
{
	static const uint8_t san_oid[] = {0x55, 0x1d, 0x11}; /* 2.5.29.17 */
	struct der d = {der, len};
	struct der cert;
	struct der tbs;
	struct der el;
	struct der exts;
	uint8_t tag;
	int found = -1;

	if (der_expect(&d, 0x30, &cert) < 0 || d.n != 0 || der_expect(&cert, 0x30, &tbs) < 0)
		return -E_PARSE;
	/* TBSCertificate (RFC 5280 §4.1): [0] version?, serial, signature, issuer, validity,
	 * subject, subjectPublicKeyInfo, [1] issuerUID?, [2] subjectUID?, [3] extensions? */
	if (tbs.n && tbs.p[0] == 0xa0 && der_next(&tbs, &tag, &el) < 0)
		return -E_PARSE;
	if (der_expect(&tbs, 0x02, &el) < 0)
		return -E_PARSE;
	for (int i = 0; i < 5; i++)
		if (der_expect(&tbs, 0x30, &el) < 0)
			return -E_PARSE;
	if (tbs.n && tbs.p[0] == 0x81 && der_next(&tbs, &tag, &el) < 0)
		return -E_PARSE;
	if (tbs.n && tbs.p[0] == 0x82 && der_next(&tbs, &tag, &el) < 0)
		return -E_PARSE;
	if (tbs.n == 0)
		return 0; /* no extensions, no SAN */
	if (der_expect(&tbs, 0xa3, &el) < 0 || tbs.n != 0 || der_expect(&el, 0x30, &exts) < 0 ||
	    el.n != 0)
		return -E_PARSE;
	while (exts.n) {
		struct der ext;
		struct der oid;
		struct der val;

		if (der_expect(&exts, 0x30, &ext) < 0 || der_expect(&ext, 0x06, &oid) < 0)
			return -E_PARSE;
		if (ext.n && ext.p[0] == 0x01 && der_next(&ext, &tag, &val) < 0)
			return -E_PARSE;
		if (der_expect(&ext, 0x04, &val) < 0 || ext.n != 0)
			return -E_PARSE;
		if (oid.n != sizeof(san_oid) || memcmp(oid.p, san_oid, sizeof(san_oid)) != 0)
			continue;
		if (found >= 0)
			return -E_PARSE; /* RFC 5280 §4.2: at most one instance of an extension */
		found = san_has_ip(val, ip, iplen);
		if (found < 0)
			return found;
	}
	return found > 0 ? 1 : 0;
}

/* ---- the x509 wrapper that adds the iPAddress check ------------------------------------------ */

enum ipverdict { IPV_OK = 0, IPV_NOMATCH, IPV_MALFORMED, IPV_TOOBIG };

struct ipcheck {
	const br_x509_class *vtable; /* must be first: BearSSL passes &vtable around */
	const br_x509_class **inner;
	const uint8_t *ip;
	size_t iplen;
	int certs; /* certificates started so far */
	size_t leaf_len;
	bool leaf_too_big;
	enum ipverdict verdict;
	uint8_t leaf[LEAF_MAX];
};

static struct ipcheck *ipc_of(const br_x509_class **ctx)
{
	return (struct ipcheck *)(void *)ctx;
}

static void ipc_start_chain(const br_x509_class **ctx, const char *server_name)
{
	struct ipcheck *x = ipc_of(ctx);

	x->certs = 0;
	x->leaf_len = 0;
	x->leaf_too_big = false;
	x->verdict = IPV_OK;
	(*x->inner)->start_chain(x->inner, server_name);
}

static void ipc_start_cert(const br_x509_class **ctx, uint32_t length)
{
	struct ipcheck *x = ipc_of(ctx);

	if (x->certs++ == 0 && length > LEAF_MAX)
		x->leaf_too_big = true;
	(*x->inner)->start_cert(x->inner, length);
}

static void ipc_append(const br_x509_class **ctx, const unsigned char *buf, size_t len)
{
	struct ipcheck *x = ipc_of(ctx);

	if (x->certs == 1 && !x->leaf_too_big) {
		if (len > LEAF_MAX - x->leaf_len) {
			x->leaf_too_big = true;
		} else {
			memcpy(x->leaf + x->leaf_len, buf, len);
			x->leaf_len += len;
		}
	}
	(*x->inner)->append(x->inner, buf, len);
}

static void ipc_end_cert(const br_x509_class **ctx)
{
	struct ipcheck *x = ipc_of(ctx);

	(*x->inner)->end_cert(x->inner);
}

static unsigned ipc_end_chain(const br_x509_class **ctx)
{
	struct ipcheck *x = ipc_of(ctx);
	unsigned err = (*x->inner)->end_chain(x->inner);
	int r;

	if (err != BR_ERR_OK || !x->ip)
		return err;
	if (x->leaf_too_big) {
		x->verdict = IPV_TOOBIG;
		return BR_ERR_X509_BAD_SERVER_NAME;
	}
	r = watch_cert_has_ip_san(x->leaf, x->leaf_len, x->ip, x->iplen);
	if (r == 1)
		return BR_ERR_OK;
	x->verdict = r < 0 ? IPV_MALFORMED : IPV_NOMATCH;
	return BR_ERR_X509_BAD_SERVER_NAME;
}

static const br_x509_pkey *ipc_get_pkey(const br_x509_class *const *ctx, unsigned *usages)
{
	const struct ipcheck *x = (const struct ipcheck *)(const void *)ctx;

	return (*x->inner)->get_pkey(x->inner, usages);
}

static const br_x509_class ipcheck_vtable = {
	sizeof(struct ipcheck), ipc_start_chain, ipc_start_cert, ipc_append,
	ipc_end_cert,		ipc_end_chain,	 ipc_get_pkey,
};

/* ---- connections ---------------------------------------------------------------------------- */

struct watch_conn {
	size_t size; /* allocated bytes: plain connections stop before cc */
	struct watch *w;
	int fd;
	bool tls;
	bool eof;
	uint32_t timeout_ms; /* wait limit of the current operation */
	struct errbuf ioerr; /* transport failure behind a BearSSL BR_ERR_IO */
	const struct watch_url *u;
	br_ssl_client_context cc;
	br_x509_minimal_context xc;
	struct ipcheck ipc;
	br_sslio_context ioc;
	unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];
};

/* Waits for `ev` on fd; -E_TIMEOUT, or -E_CLOSED when the watch is stopping. */
static int wait_fd(struct watch *w, int fd, short ev, uint32_t timeout_ms, struct errbuf *eb)
{
	uint64_t end = time_mono_ms() + timeout_ms;

	for (;;) {
		struct pollfd p[2] = {{.fd = fd, .events = ev},
				      {.fd = w->wakefd, .events = POLLIN}};
		uint64_t now = time_mono_ms();
		int r;

		if (watch_stopping(w))
			return errbuf_set(eb, E_CLOSED, "stopped");
		if (now >= end)
			return errbuf_set(eb, E_TIMEOUT, "timed out after %u ms", timeout_ms);
		r = poll(p, 2, (int)MIN(end - now, 60000));
		if (r < 0 && errno != EINTR)
			return errbuf_set(eb, E_IO, "poll: %s", strerror(errno));
		if (r > 0 && p[0].revents)
			return 0;
	}
}

/* pkg/net's non-blocking connect, waited for here so that watch_stop can cut it short
 * (net_connect_timeout would block in its own poll). */
static int connect_one(struct watch *w, const struct addrinfo *ai, uint64_t end, struct errbuf *eb)
{
	struct net_addr dst;
	uint64_t now = time_mono_ms();
	int fd = -1;
	int r;

	r = net_addr_from_sockaddr(&dst, ai->ai_addr, ai->ai_addrlen);
	if (r < 0)
		return errbuf_set(eb, -r, "connect: unsupported address family %d", ai->ai_family);
	r = net_connect_start(&dst, NULL, &fd, eb);
	if (r == 0)
		return fd;
	if (r < 0)
		return r;
	do {
		r = wait_fd(w, fd, POLLOUT, now < end ? (uint32_t)(end - now) : 0, eb);
		if (r < 0) {
			errbuf_prefix(eb, "connect");
			break;
		}
		r = net_connect_finish(fd, &dst, eb);
		now = time_mono_ms();
	} while (r == -E_AGAIN);
	if (r == 0)
		return fd;
	close(fd);
	return r;
}

static int tcp_connect(struct watch *w, const struct watch_url *u, struct errbuf *eb)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	uint64_t end = time_mono_ms() + w->o.connect_timeout_ms;
	char port[8];
	int fd = -E_IO;
	int r;

	if (u->host_is_ip)
		hints.ai_flags |= AI_NUMERICHOST;
	snprintf(port, sizeof(port), "%u", u->port);
	r = getaddrinfo(u->host, port, &hints, &res);
	if (r != 0)
		return errbuf_set(eb, E_NOTFOUND, "resolve %s: %s", u->host,
				  r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = connect_one(w, ai, end, eb);
		if (fd >= 0 || watch_stopping(w) || time_mono_ms() >= end)
			break;
	}
	freeaddrinfo(res);
	return fd;
}

static int low_read(void *ctx, unsigned char *buf, size_t len)
{
	struct watch_conn *c = ctx;

	for (;;) {
		ssize_t n;

		if (wait_fd(c->w, c->fd, POLLIN, c->timeout_ms, &c->ioerr) < 0)
			return -1;
		n = recv(c->fd, buf, len, 0);
		if (n > 0)
			return (int)n;
		if (n == 0) {
			c->eof = true;
			errbuf_set(&c->ioerr, E_CLOSED, "connection closed by the server");
			return -1;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			errbuf_set(&c->ioerr, E_IO, "recv: %s", strerror(errno));
			return -1;
		}
	}
}

static int low_write(void *ctx, const unsigned char *buf, size_t len)
{
	struct watch_conn *c = ctx;

	for (;;) {
		ssize_t n;

		if (wait_fd(c->w, c->fd, POLLOUT, c->timeout_ms, &c->ioerr) < 0)
			return -1;
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return (int)n;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			errbuf_set(&c->ioerr, E_IO, "send: %s", strerror(errno));
			return -1;
		}
	}
}

static const char *tls_reason(int err)
{
	switch (err) {
	case BR_ERR_X509_NOT_TRUSTED: return "server certificate is not signed by --ca-root";
	case BR_ERR_X509_EXPIRED: return "server certificate expired or not yet valid";
	case BR_ERR_X509_BAD_SERVER_NAME: return "server certificate does not name this host";
	case BR_ERR_X509_CRITICAL_EXTENSION:
		return "server certificate has an unsupported critical extension";
	case BR_ERR_X509_NOT_CA: return "a certificate in the server chain is not a CA";
	case BR_ERR_X509_FORBIDDEN_KEY_USAGE: return "server certificate key usage forbids TLS";
	case BR_ERR_X509_WEAK_PUBLIC_KEY: return "server certificate key is too weak";
	case BR_ERR_X509_EMPTY_CHAIN: return "server sent no certificate";
	case BR_ERR_UNSUPPORTED_VERSION:
	case BR_ERR_BAD_VERSION: return "server does not speak TLS 1.2";
	case BR_ERR_BAD_CIPHER_SUITE: return "no common cipher suite";
	case BR_ERR_BAD_MAC: return "record integrity check failed";
	default: return NULL;
	}
}

/* Explains why the TLS engine failed; the transport reason wins when it was the cause. */
static int tls_error(struct watch_conn *c, const char *what, struct errbuf *eb)
{
	int err = br_ssl_engine_last_error(&c->cc.eng);
	const char *why = tls_reason(err);

	if (err == BR_ERR_X509_BAD_SERVER_NAME && c->u->host_is_ip) {
		switch (c->ipc.verdict) {
		case IPV_TOOBIG:
			return errbuf_set(eb, E_CRYPTO, "%s: server certificate over %d bytes",
					  what, LEAF_MAX);
		case IPV_MALFORMED:
			return errbuf_set(eb, E_CRYPTO,
					  "%s: cannot read the server certificate's SAN extension",
					  what);
		default:
			return errbuf_set(eb, E_CRYPTO,
					  "%s: server certificate has no IP SAN %s (RFC 2818 §3.1)",
					  what, c->u->host);
		}
	}
	if ((err == BR_ERR_IO || err == BR_ERR_OK) && c->ioerr.msg[0])
		return errbuf_set(eb, c->ioerr.code, "%s: %s", what, c->ioerr.msg);
	if (why)
		return errbuf_set(eb, E_CRYPTO, "%s: %s", what, why);
	if (err >= BR_ERR_SEND_FATAL_ALERT)
		return errbuf_set(eb, E_CRYPTO, "%s: sent TLS alert %d", what,
				  err - BR_ERR_SEND_FATAL_ALERT);
	if (err >= BR_ERR_RECV_FATAL_ALERT)
		return errbuf_set(eb, E_CRYPTO, "%s: server sent TLS alert %d", what,
				  err - BR_ERR_RECV_FATAL_ALERT);
	return errbuf_set(eb, E_CRYPTO, "%s: TLS error %d", what, err);
}

static int tls_start(struct watch_conn *c, struct watch *w, const struct watch_url *u,
		     struct errbuf *eb)
{
	uint8_t seed[32];

	br_ssl_client_init_full(&c->cc, &c->xc, w->tas, w->ntas);
	br_ssl_engine_set_versions(&c->cc.eng, BR_TLS12, BR_TLS12);
	c->ipc.vtable = &ipcheck_vtable;
	c->ipc.inner = &c->xc.vtable;
	if (u->host_is_ip) {
		c->ipc.ip = u->ip;
		c->ipc.iplen = u->ip_family == AF_INET ? 4 : 16;
	}
	br_ssl_engine_set_x509(&c->cc.eng, &c->ipc.vtable);
	br_ssl_engine_set_buffer(&c->cc.eng, c->iobuf, sizeof(c->iobuf), 1);
	/* No SNI and no BearSSL name check for IP literals: the wrapper checks the IP SAN. */
	if (!br_ssl_client_reset(&c->cc, u->host_is_ip ? NULL : u->host, 0))
		return tls_error(c, "TLS setup", eb);
	rand_bytes(seed, sizeof(seed));
	br_ssl_engine_inject_entropy(&c->cc.eng, seed, sizeof(seed));
	secure_wipe(seed, sizeof(seed));
	br_sslio_init(&c->ioc, &c->cc.eng, low_read, c, low_write, c);
	if (br_sslio_flush(&c->ioc) < 0)
		return tls_error(c, "TLS handshake", eb);
	return 0;
}

struct watch_conn *watch_conn_open(struct watch *w, const struct watch_url *u, struct errbuf *eb)
{
	uint64_t t0 = time_mono_ms();
	struct watch_conn *c;
	int fd;

	fd = tcp_connect(w, u, eb);
	if (fd < 0) {
		if (watch_stopping(w))
			errbuf_set(eb, E_CLOSED, "stopped");
		return NULL;
	}
	c = xcalloc(1, u->tls ? sizeof(*c) : offsetof(struct watch_conn, cc));
	c->size = u->tls ? sizeof(*c) : offsetof(struct watch_conn, cc);
	c->w = w;
	c->fd = fd;
	c->u = u;
	c->tls = u->tls;
	if (!c->tls)
		return c;
	/* The handshake shares the connect deadline. */
	c->timeout_ms =
		(uint32_t)MAX(1, (int64_t)w->o.connect_timeout_ms - (int64_t)(time_mono_ms() - t0));
	if (tls_start(c, w, u, eb) < 0) {
		watch_conn_close(c);
		return NULL;
	}
	return c;
}

int watch_conn_write(struct watch_conn *c, const void *p, size_t n, struct errbuf *eb)
{
	const uint8_t *q = p;

	c->timeout_ms = c->w->o.io_timeout_ms;
	if (c->tls) {
		if (br_sslio_write_all(&c->ioc, p, n) < 0 || br_sslio_flush(&c->ioc) < 0)
			return tls_error(c, "send", eb);
		return 0;
	}
	while (n) {
		int k = low_write(c, q, n);

		if (k < 0)
			return errbuf_set(eb, c->ioerr.code, "send: %s", c->ioerr.msg);
		q += k;
		n -= (size_t)k;
	}
	return 0;
}

long watch_conn_read(struct watch_conn *c, void *p, size_t n, uint32_t timeout_ms,
		     struct errbuf *eb)
{
	int k;

	c->timeout_ms = timeout_ms;
	if (!c->tls) {
		k = low_read(c, p, n);
		if (k >= 0)
			return k;
		if (c->eof)
			return 0;
		return errbuf_set(eb, c->ioerr.code, "receive: %s", c->ioerr.msg);
	}
	k = br_sslio_read(&c->ioc, p, n);
	if (k >= 0)
		return k;
	/* A close_notify is a clean end. A TCP close without one is an error: the response reader
	 * stops at the end of a Content-Length or chunked body before getting here, so this only
	 * refuses close-delimited bodies, which an attacker could have truncated. */
	if (br_ssl_engine_current_state(&c->cc.eng) == BR_SSL_CLOSED &&
	    br_ssl_engine_last_error(&c->cc.eng) == BR_ERR_OK)
		return 0;
	return tls_error(c, "receive", eb);
}

void watch_conn_close(struct watch_conn *c)
{
	if (!c)
		return;
	close(c->fd);
	/* The TLS buffers held the request in clear, bearer token included. */
	secure_wipe(c, c->size);
	free(c);
}

/* ---- trust anchors ----------------------------------------------------------------------------
 */

struct bytes {
	uint8_t *p;
	size_t n;
	size_t cap;
};

static void bytes_add(void *ctx, const void *p, size_t n)
{
	struct bytes *b = ctx;

	if (b->n + n > b->cap) {
		b->cap = MAX(b->cap * 2, b->n + n + 256);
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static int ta_from_der(const struct bytes *der, br_x509_trust_anchor *ta, struct errbuf *eb)
{
	br_x509_decoder_context dc;
	struct bytes dn = {0};
	const br_x509_pkey *pk;
	int err;

	br_x509_decoder_init(&dc, bytes_add, &dn);
	br_x509_decoder_push(&dc, der->p, der->n);
	err = br_x509_decoder_last_error(&dc);
	pk = br_x509_decoder_get_pkey(&dc);
	if (err != 0 || !pk) {
		free(dn.p);
		return errbuf_set(eb, E_PARSE, "malformed certificate (BearSSL x509 error %d)",
				  err);
	}
	memset(ta, 0, sizeof(*ta));
	ta->dn.data = dn.p;
	ta->dn.len = dn.n;
	/* A non-CA anchor is trusted directly (the server's own self-signed certificate). */
	ta->flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
	ta->pkey.key_type = pk->key_type;
	if (pk->key_type == BR_KEYTYPE_EC) {
		ta->pkey.key.ec.curve = pk->key.ec.curve;
		ta->pkey.key.ec.q = xmalloc(pk->key.ec.qlen);
		memcpy(ta->pkey.key.ec.q, pk->key.ec.q, pk->key.ec.qlen);
		ta->pkey.key.ec.qlen = pk->key.ec.qlen;
	} else if (pk->key_type == BR_KEYTYPE_RSA) {
		ta->pkey.key.rsa.n = xmalloc(pk->key.rsa.nlen);
		memcpy(ta->pkey.key.rsa.n, pk->key.rsa.n, pk->key.rsa.nlen);
		ta->pkey.key.rsa.nlen = pk->key.rsa.nlen;
		ta->pkey.key.rsa.e = xmalloc(pk->key.rsa.elen);
		memcpy(ta->pkey.key.rsa.e, pk->key.rsa.e, pk->key.rsa.elen);
		ta->pkey.key.rsa.elen = pk->key.rsa.elen;
	} else {
		free(dn.p);
		return errbuf_set(eb, E_UNSUPP, "unsupported public key type %d", pk->key_type);
	}
	return 0;
}

void watch_tls_free_roots(br_x509_trust_anchor *tas, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(tas[i].dn.data);
		if (tas[i].pkey.key_type == BR_KEYTYPE_EC) {
			free(tas[i].pkey.key.ec.q);
		} else {
			free(tas[i].pkey.key.rsa.n);
			free(tas[i].pkey.key.rsa.e);
		}
	}
	free(tas);
}

static int read_small_file(const char *path, struct bytes *out, size_t max, struct errbuf *eb)
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
		if (n == 0 || out->n + (size_t)n > max)
			break;
		bytes_add(out, tmp, (size_t)n);
	}
	close(fd);
	return r;
}

struct pem_walk {
	br_x509_trust_anchor *tas;
	size_t n;
	struct bytes der;
	bool in_cert;
};

static int pem_event(struct pem_walk *pw, br_pem_decoder_context *pc, struct errbuf *eb)
{
	int ev = br_pem_decoder_event(pc);
	int r;

	if (ev == BR_PEM_BEGIN_OBJ) {
		const char *name = br_pem_decoder_name(pc);

		pw->in_cert =
			strcmp(name, "CERTIFICATE") == 0 || strcmp(name, "X509 CERTIFICATE") == 0;
		pw->der.n = 0;
		br_pem_decoder_setdest(pc, pw->in_cert ? bytes_add : NULL, &pw->der);
	} else if (ev == BR_PEM_END_OBJ && pw->in_cert) {
		pw->tas = xrealloc(pw->tas, (pw->n + 1) * sizeof(*pw->tas));
		r = ta_from_der(&pw->der, &pw->tas[pw->n], eb);
		if (r < 0) {
			errbuf_prefix(eb, "certificate %zu", pw->n + 1);
			return r;
		}
		pw->n++;
		pw->in_cert = false;
	} else if (ev == BR_PEM_ERROR) {
		return errbuf_set(eb, E_PARSE, "malformed PEM");
	}
	return 0;
}

int watch_tls_load_roots(const char *path, br_x509_trust_anchor **tas, size_t *n, struct errbuf *eb)
{
	br_pem_decoder_context pc;
	struct pem_walk pw = {0};
	struct bytes file = {0};
	const uint8_t *p;
	size_t left;
	int r;

	r = read_small_file(path, &file, ROOTS_FILE_MAX, eb);
	if (r < 0)
		goto out;
	bytes_add(&file, "\n", 1); /* the decoder needs a line end after the last END line */
	br_pem_decoder_init(&pc);
	p = file.p;
	left = file.n;
	while (left) {
		size_t k = br_pem_decoder_push(&pc, p, left);

		p += k;
		left -= k;
		r = pem_event(&pw, &pc, eb);
		if (r < 0)
			goto out;
	}
	if (pw.n == 0)
		r = errbuf_set(eb, E_INVAL, "no CERTIFICATE in the file");
out:
	free(file.p);
	free(pw.der.p);
	if (r < 0) {
		errbuf_prefix(eb, "--ca-root %s", path);
		watch_tls_free_roots(pw.tas, pw.n);
		return r;
	}
	*tas = pw.tas;
	*n = pw.n;
	return 0;
}
