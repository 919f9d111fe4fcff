/* A blocking HTTP/1.1 client over TCP or TLS 1.2 for a dedicated thread (mesh-config and CA
 * requests), with timeouts, an interrupting wake fd and strict server verification. */
#ifndef AMBIENT_HTTPC_H
#define AMBIENT_HTTPC_H

#include "pkg/base/base.h"
#include "pkg/buf/buf.h"
#include "pkg/http1/http1.h"
#include "pkg/tls/tls.h"
#include "pkg/x509/x509.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * One request per connection (`Connection: close`):
 *
 *   httpc_fetch: build request (token read, wiped after send)
 *      -> resolve, connect (connect_timeout_ms)   "connect 127.0.0.1:15012: connection refused"
 *      -> TLS handshake (rest of that deadline)    "TLS handshake: ..."
 *      -> send (io_timeout_ms per wait)           "send: ..."
 *      -> read response (req timeout per wait)    "response body over the N-byte limit"
 *   every wait is a poll() on the socket and the request's wake fd: a wake-up with *stopping
 *   set (or any wake-up when stopping is NULL) ends the request at once with -E_CLOSED.
 *
 * Server identity (RFC 2818 §3.1, RFC 6125), TLS 1.2 through pkg/tls:
 *   DNS host   -> SNI and BearSSL's check of the leaf's dNSName SANs;
 *   IP literal -> no SNI (RFC 6066 §3); the leaf, decoded by pkg/x509, must carry an iPAddress
 *                 SAN equal to the address (never a CN fallback);
 *   pin_uri    -> in addition, the leaf's only URI SAN must be exactly that (a SPIFFE ID).
 * getaddrinfo cannot be interrupted: with a DNS host, a stop may wait for the resolver.
 */

#define HTTPC_TOKEN_MAX 8192 /* bearer token file, bytes */

/* A parsed http(s) URL. `target` is the request-target (path plus query, never empty). */
struct httpc_url {
	bool tls;
	bool host_is_ip; /* IPv4 or bracketed IPv6 literal: no SNI, iPAddress SAN check */
	int ip_family;	 /* AF_INET / AF_INET6 when host_is_ip */
	uint8_t ip[16];
	char *host;	/* without brackets, as written */
	char *hostport; /* Host header value: host:port, IPv6 in brackets */
	uint16_t port;
	char *target;
};

/* Errors never quote the URL (it may hold credentials); userinfo is refused. */
int httpc_url_parse(const char *s, struct httpc_url *u, struct errbuf *eb);
void httpc_url_fini(struct httpc_url *u);

/* Reads a bearer token file into out (NUL-terminated, trailing space trimmed, visible ASCII
 * only, at most cap - 2 bytes); errors name the path, never the content. Wipe out after use. */
int httpc_token_read(const char *path, char *out, size_t cap, struct errbuf *eb);

struct httpc_opts {
	const char *ca_root;	     /* PEM trust anchors; required for https */
	const char *ca_root_what;    /* its name in errors ("--ca-root"); default: the path */
	const char *peer_what;	     /* the server in errors ("CA"); default "server" */
	const char *pin_uri;	     /* optional: required URI SAN of the server's leaf */
	uint32_t connect_timeout_ms; /* 0: 5000 */
	uint32_t io_timeout_ms;	     /* 0: 15000 */
};

/* Caller-owned; fields are read-only for the caller. */
struct httpc {
	struct httpc_url url;
	struct x509_chain roots; /* the anchors from ca_root (https only) */
	br_x509_certificate *br_roots;
	struct tls_config *tls;
	char *ca_root_what;
	char *peer_what;
	char *pin_uri;
	uint32_t connect_timeout_ms, io_timeout_ms;
};

/* Parses url and, for https, loads the anchors. Errors about the URL are unprefixed; errors
 * about the roots start with "[<ca_root_what> ]<ca_root>: ". A failed init is safe to fini. */
int httpc_init(struct httpc *c, const char *url, const struct httpc_opts *o, struct errbuf *eb);
void httpc_fini(struct httpc *c);

/* Called with the final (>= 200) response head; the message is valid during the call only. */
typedef void (*httpc_head_fn)(void *arg, const struct http1_msg *m);

struct httpc_req {
	const char *method; /* NULL: GET */
	const char *target; /* NULL: the URL's */
	const char *token_file;
	const char *if_none_match;
	const char *content_type; /* with a body */
	const char *accept;
	const char *user_agent;
	const void *body;
	size_t body_len;
	size_t max_body;     /* response body limit; 0: 1 MiB */
	uint32_t timeout_ms; /* each wait for the response; 0: io_timeout_ms */
	int64_t now_s;	     /* validate the server certificate at this time; 0: wall clock */
	int wakefd;	     /* readable: stop (or, with stopping, maybe other work); -1: none */
	const atomic_bool *stopping;
	httpc_head_fn on_head;
	void *arg;
};

struct httpc_resp {
	int status;
	struct buf body; /* whole body (any status), at most max_body */
};

/* One request. 0 with the response (any status) in rs, or -E_* with the precise reason in eb
 * (-E_CLOSED "stopped" when interrupted). rs is initialised here; free it with
 * httpc_resp_fini either way. */
int httpc_fetch(struct httpc *c, const struct httpc_req *rq, struct httpc_resp *rs,
		struct errbuf *eb);
void httpc_resp_fini(struct httpc_resp *rs);

#endif
