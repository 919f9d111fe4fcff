/* Small HTTP/1.1 servers for the admin, metrics and readiness ports (DESIGN.md §7). */
#ifndef AMBIENT_ADMIN_H
#define AMBIENT_ADMIN_H

#include "pkg/base/base.h"
#include "pkg/buf/buf.h"
#include "pkg/ev/ev.h"
#include "pkg/http1/http1.h"
#include "pkg/net/net.h"
#include "pkg/tls/tls.h"

#include <stdbool.h>

/*
 * An admin server owns its listeners and connections on ONE event loop (normally the main
 * thread's, never a data-plane worker's) and answers requests with synchronous handlers:
 *
 *   struct admin_server *s = admin_server_new(loop, "admin", NULL, &eb);
 *   admin_route(s, "/config_dump", ADMIN_GET, dump_handler, ctx);
 *   admin_listen(s, "127.0.0.1:15000", &eb);
 *
 * Requests are parsed by pkg/http1 with tight limits; a malformed request gets 400, an oversized
 * head 431 (414 for the request line), an oversized body 413, then the connection is closed. The
 * server keeps serving other connections. Keep-alive and pipelining are supported; responses are
 * written in request order. Every connection has an idle timeout and the number of connections
 * is bounded, so a misbehaving client cannot hold memory.
 */

enum admin_method_mask {
	ADMIN_GET = 1u << 0, /* also answers HEAD */
	ADMIN_POST = 1u << 1,
	ADMIN_PUT = 1u << 2,
	ADMIN_DELETE = 1u << 3,
};

struct admin_opts {
	unsigned max_conns;  /* concurrent connections (default 64); more are closed at once */
	uint64_t idle_ms;    /* idle/keep-alive timeout (default 30 s) */
	uint32_t max_head;   /* request head bytes (default 16 KiB) -> 431 */
	uint32_t max_line;   /* request line bytes (default 4 KiB) -> 414 */
	uint32_t max_fields; /* header lines (default 64) -> 431 */
	uint64_t max_body;   /* request body bytes (default 64 KiB) -> 413 */
	size_t max_response; /* response body bytes (default 64 MiB) -> 500 */
	/* Called for every request refused before reaching a handler (400/413/414/431/505...),
	 * e.g. for an audit log. */
	void (*on_reject)(void *arg, int status, const char *reason, const struct net_addr *peer);
	void *reject_arg;
	/* SO_REUSEPORT: one server per worker loop on the same address shares the load. */
	bool reuseport;
};

struct admin_request {
	enum http1_method method;
	struct slice path;  /* request-target up to '?' (not decoded) */
	struct slice query; /* after '?' (empty if none) */
	const struct http1_msg *msg;
	struct slice body;
	const struct net_addr *peer;
	void *conn; /* private: the connection, for admin_defer() */
};

struct admin_response {
	int status;		  /* default 200 */
	const char *content_type; /* default "text/plain; charset=utf-8" */
	struct buf body;
	/* Extra response headers: add them with admin_add_header(), which copies. */
	struct http1_field headers[8];
	size_t nheaders;
	char hstore[512];
	size_t hstore_len;
	/* Runs on the loop after the response has been queued (e.g. start a drain). */
	void (*after)(void *arg);
	void *after_arg;
};

typedef void (*admin_handler_fn)(const struct admin_request *req, struct admin_response *resp,
				 void *arg);

struct admin_server;

/* name is used in logs ("admin", "metrics", "readiness"); opts NULL = defaults. */
struct admin_server *admin_server_new(struct ev_loop *loop, const char *name,
				      const struct admin_opts *opts, struct errbuf *eb);
/* Closes listeners and connections. NULL is a no-op. */
void admin_server_free(struct admin_server *s);
/* Serves HTTPS on every listener: connections accepted from now on speak TLS with this server
 * config (a reference is taken; NULL goes back to plain HTTP). */
void admin_server_set_tls(struct admin_server *s, struct tls_config *cfg);
/* Binds and starts accepting on addr ("127.0.0.1:15000", "[::]:15020", ":15021"). */
int admin_listen(struct admin_server *s, const char *addr, struct errbuf *eb);
/* The bound address of listener i (for ":0" in tests), NULL if none. */
const struct net_addr *admin_bound_addr(const struct admin_server *s, size_t i);
/* Stops accepting new connections (drain); open ones finish their current request. */
void admin_stop_listening(struct admin_server *s);
/* Routes an exact path (no query) for the given methods; later routes for the same path replace
 * earlier ones. 0 or -E_LIMIT. */
int admin_route(struct admin_server *s, const char *path, unsigned methods, admin_handler_fn fn,
		void *arg);

/*
 * Deferred responses (long-polls): a handler calls admin_defer() instead of filling the response,
 * keeps the handle and answers later, on the server's loop thread, with admin_pending_respond().
 * While a response is pending the connection reads no further requests and has no idle timeout
 * (the owner applies its own, e.g. the long-poll's timeoutSeconds). If the client disconnects or
 * the server is freed first, `cancel` runs and the handle is gone: the owner must drop it.
 */
struct admin_pending;
typedef void (*admin_cancel_fn)(struct admin_pending *p, void *arg);
struct admin_pending *admin_defer(const struct admin_request *req, admin_cancel_fn cancel,
				  void *arg);
/* Queues the response (r->body is copied; the caller still owns and frees r->body) and frees p. */
void admin_pending_respond(struct admin_pending *p, struct admin_response *r);

/* Adds a response header, copying name and value; -E_LIMIT when the response has no room. */
int admin_add_header(struct admin_response *r, const char *name, const char *value);

/* Helpers for handlers. */
int admin_printf(struct admin_response *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Sets status and a one-line plain-text body ending in "\n". */
void admin_error(struct admin_response *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Finds `key` in an application/x-www-form-urlencoded query and percent-decodes its value into
 * out (NUL-terminated). Returns true if present; false if absent or undecodable. */
bool admin_query_get(struct slice query, const char *key, char *out, size_t cap);

/* Counters for tests and /config_dump. */
struct admin_stats {
	uint64_t accepted;
	uint64_t rejected_conns; /* over max_conns */
	uint64_t requests;
	uint64_t bad_requests; /* 4xx answered by the parser path */
	unsigned open_conns;
};
void admin_get_stats(const struct admin_server *s, struct admin_stats *out);

#endif
