/* HTTP/1.1 servers for the admin, metrics and readiness ports: routing, limits, keep-alive. */
#include "pkg/admin/admin.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Connection states:
 *
 *   accept --> READING --(request END)--> handler --> response queued --+
 *                 ^   \                                                  |
 *                 |    (parse error) --> error response, CLOSING         |
 *                 +----------------- keep-alive <------------------------+
 *                                    (no keep-alive) --> CLOSING --(out flushed)--> closed
 *
 * Reading pauses while more than OUT_HIGH bytes of responses wait to be written (a pipelining
 * client that never reads cannot make us buffer without bound).
 */

#define ADMIN_MAX_LISTENERS 4
#define ADMIN_MAX_ROUTES 32
#define OUT_HIGH (256 * 1024)

struct route {
	char *path;
	unsigned methods;
	admin_handler_fn fn;
	void *arg;
};

struct admin_pending {
	struct conn *c;
	admin_cancel_fn cancel;
	void *arg;
};

struct conn {
	struct admin_server *srv;
	struct admin_pending *pending; /* a deferred response is outstanding */
	struct tls_conn *tls;	       /* NULL on plain servers */
	struct conn *next;
	struct conn *prev;
	struct ev_io io;
	struct ev_timer idle;
	struct net_addr peer;
	struct buf in;
	struct buf out;
	struct buf body;
	struct buf head;      /* the current request's head bytes (c->msg points into them) */
	struct http1_msg msg; /* the current request's head */
	struct http1_parser parser;
	bool closing;	/* close once out is flushed */
	bool lingering; /* write side shut; discarding input until EOF or timeout */
	bool have_head; /* a request head has been received and not yet answered */
	bool head_only; /* current request is HEAD */
	bool keep_alive;
	enum http1_method method;
	char path[1024];
	size_t path_len;
	size_t query_off;
};

struct admin_server {
	struct ev_loop *loop;
	char *name;
	struct admin_opts opts;
	struct http1_limits lim;
	struct net_listener listeners[ADMIN_MAX_LISTENERS];
	size_t nlisteners;
	struct route routes[ADMIN_MAX_ROUTES];
	size_t nroutes;
	struct conn *conns;
	struct admin_stats stats;
	struct tls_config *tls;
};

static void conn_close(struct conn *c);
static void conn_update(struct conn *c);

struct admin_server *admin_server_new(struct ev_loop *loop, const char *name,
				      const struct admin_opts *opts, struct errbuf *eb)
{
	struct admin_server *s;

	if (!loop)
		return errbuf_set(eb, E_INVAL, "admin server needs an event loop"), NULL;
	s = xcalloc(1, sizeof(*s));
	s->loop = loop;
	s->name = xstrdup(name ? name : "admin");
	if (opts)
		s->opts = *opts;
	if (!s->opts.max_conns)
		s->opts.max_conns = 64;
	if (!s->opts.idle_ms)
		s->opts.idle_ms = 30000;
	if (!s->opts.max_head)
		s->opts.max_head = 16 * 1024;
	if (!s->opts.max_line)
		s->opts.max_line = 4096;
	if (!s->opts.max_fields)
		s->opts.max_fields = 64;
	if (!s->opts.max_body)
		s->opts.max_body = 64 * 1024;
	if (!s->opts.max_response)
		s->opts.max_response = 64u << 20;
	http1_limits_default(&s->lim);
	s->lim.max_line = s->opts.max_line;
	s->lim.max_head = s->opts.max_head;
	s->lim.max_fields = s->opts.max_fields;
	s->lim.max_body = s->opts.max_body;
	return s;
}

void admin_server_set_tls(struct admin_server *s, struct tls_config *cfg)
{
	tls_config_unref(s->tls);
	s->tls = cfg ? tls_config_ref(cfg) : NULL;
}

void admin_server_free(struct admin_server *s)
{
	if (!s)
		return;
	admin_stop_listening(s);
	while (s->conns)
		conn_close(s->conns);
	tls_config_unref(s->tls);
	for (size_t i = 0; i < s->nroutes; i++)
		free(s->routes[i].path);
	free(s->name);
	free(s);
}

void admin_stop_listening(struct admin_server *s)
{
	for (size_t i = 0; i < s->nlisteners; i++)
		net_listener_stop(&s->listeners[i]);
}

const struct net_addr *admin_bound_addr(const struct admin_server *s, size_t i)
{
	return i < s->nlisteners ? &s->listeners[i].addr : NULL;
}

void admin_get_stats(const struct admin_server *s, struct admin_stats *out)
{
	*out = s->stats;
}

int admin_route(struct admin_server *s, const char *path, unsigned methods, admin_handler_fn fn,
		void *arg)
{
	for (size_t i = 0; i < s->nroutes; i++) {
		if (strcmp(s->routes[i].path, path) == 0) {
			s->routes[i].methods = methods;
			s->routes[i].fn = fn;
			s->routes[i].arg = arg;
			return 0;
		}
	}
	if (s->nroutes == ADMIN_MAX_ROUTES)
		return -E_LIMIT;
	s->routes[s->nroutes++] = (struct route){xstrdup(path), methods, fn, arg};
	return 0;
}

/* ---- responses ------------------------------------------------------------------------------ */

int admin_add_header(struct admin_response *r, const char *name, const char *value)
{
	size_t nl = strlen(name);
	size_t vl = strlen(value);
	char *p = r->hstore + r->hstore_len;

	if (r->nheaders == ARRAY_LEN(r->headers) || r->hstore_len + nl + vl > sizeof(r->hstore))
		return -E_LIMIT;
	memcpy(p, name, nl);
	memcpy(p + nl, value, vl);
	r->hstore_len += nl + vl;
	r->headers[r->nheaders++] =
		(struct http1_field){{(const uint8_t *)p, nl}, {(const uint8_t *)p + nl, vl}};
	return 0;
}

int admin_printf(struct admin_response *r, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vprintf(&r->body, fmt, ap);
	va_end(ap);
	return rc;
}

void admin_error(struct admin_response *r, int status, const char *fmt, ...)
{
	va_list ap;

	r->status = status;
	r->content_type = "text/plain; charset=utf-8";
	buf_reset(&r->body);
	va_start(ap, fmt);
	if (buf_vprintf(&r->body, fmt, ap) == 0)
		buf_append(&r->body, "\n", 1);
	va_end(ap);
}

static void queue_response(struct conn *c, struct admin_response *r, bool close_after)
{
	struct http1_field f[12];
	size_t nf = 0;
	size_t before = buf_len(&c->out);

	f[nf++] = (struct http1_field){
		http1_s("content-type"),
		http1_s(r->content_type ? r->content_type : "text/plain; charset=utf-8")};
	f[nf++] = (struct http1_field){http1_s("cache-control"), http1_s("no-store")};
	for (size_t i = 0; i < r->nheaders && nf < ARRAY_LEN(f) - 1; i++)
		f[nf++] = r->headers[i];
	if (close_after)
		f[nf++] = (struct http1_field){http1_s("connection"), http1_s("close")};
	if (http1_format_response_head(&c->out, r->status, NULL, f, nf,
				       (int64_t)buf_len(&r->body)) < 0 ||
	    (!c->head_only && buf_append(&c->out, buf_rptr(&r->body), buf_len(&r->body)) < 0)) {
		/* A handler produced an invalid header value or an unbounded body: report that. */
		c->out.wr = c->out.rd + before;
		static const char msg[] = "HTTP/1.1 500 Internal Server Error\r\n"
					  "content-length: 0\r\nconnection: close\r\n\r\n";
		buf_append(&c->out, msg, sizeof(msg) - 1);
		close_after = true;
	}
	if (close_after)
		c->closing = true;
}

static void respond_status(struct conn *c, int status, const char *reason)
{
	struct admin_response r = {.status = status};

	if (c->srv->opts.on_reject)
		c->srv->opts.on_reject(c->srv->opts.reject_arg, status, reason, &c->peer);

	buf_init(&r.body, 4096);
	admin_error(&r, status, "%s", reason);
	queue_response(c, &r, true);
	buf_fini(&r.body);
}

/* ---- request dispatch ----------------------------------------------------------------------- */

static const struct route *find_route(struct admin_server *s, const char *path, size_t n)
{
	for (size_t i = 0; i < s->nroutes; i++)
		if (strlen(s->routes[i].path) == n && memcmp(s->routes[i].path, path, n) == 0)
			return &s->routes[i];
	return NULL;
}

static unsigned method_bit(enum http1_method m)
{
	switch (m) {
	case HTTP1_M_GET:
	case HTTP1_M_HEAD: return ADMIN_GET;
	case HTTP1_M_POST: return ADMIN_POST;
	case HTTP1_M_PUT: return ADMIN_PUT;
	case HTTP1_M_DELETE: return ADMIN_DELETE;
	default: return 0;
	}
}

static void allow_header(unsigned methods, char *out, size_t cap)
{
	static const char *const names[] = {"GET, HEAD", "POST", "PUT", "DELETE"};
	size_t n = 0;

	out[0] = '\0';
	for (unsigned i = 0; i < ARRAY_LEN(names); i++) {
		if (!(methods & (1u << i)))
			continue;
		n += (size_t)snprintf(out + n, cap - MIN(n, cap), "%s%s", n ? ", " : "", names[i]);
	}
}

static void dispatch(struct conn *c, const struct http1_msg *msg)
{
	struct admin_server *s = c->srv;
	struct admin_response r = {.status = 200};
	struct admin_request req = {
		.method = c->method,
		.path = {(const uint8_t *)c->path, c->query_off},
		.query = {(const uint8_t *)c->path + MIN(c->query_off + 1, c->path_len),
			  c->path_len - MIN(c->query_off + 1, c->path_len)},
		.msg = msg,
		.body = {buf_rptr(&c->body), buf_len(&c->body)},
		.peer = &c->peer,
		.conn = c,
	};
	const struct route *rt = find_route(s, c->path, c->query_off);
	char allow[64];

	s->stats.requests++;
	buf_init(&r.body, s->opts.max_response);
	if (!rt) {
		admin_error(&r, 404, "no such endpoint: %.*s", (int)c->query_off, c->path);
	} else if (!(rt->methods & method_bit(c->method))) {
		allow_header(rt->methods, allow, sizeof(allow));
		admin_error(&r, 405, "method not allowed; use %s", allow);
		admin_add_header(&r, "allow", allow);
	} else {
		rt->fn(&req, &r, rt->arg);
		if (c->pending) {
			/* Answered later by admin_pending_respond(). */
			ev_timer_del(s->loop, &c->idle);
			buf_fini(&r.body);
			return;
		}
	}
	queue_response(c, &r, !c->keep_alive);
	buf_fini(&r.body);
	if (r.after)
		r.after(r.after_arg);
}

/* The head's bytes are consumed before the body arrives, so the handler gets a copy of them
 * with the message's slices moved onto it. */
static void keep_head(struct conn *c, const struct http1_msg *m, const uint8_t *data, size_t n)
{
	struct slice *s[] = {&c->msg.method_raw, &c->msg.target, &c->msg.host, &c->msg.reason,
			     &c->msg.headers.raw};

	buf_reset(&c->head);
	buf_append(&c->head, data, n); /* n <= max_head: the parser enforced it */
	c->msg = *m;
	for (size_t i = 0; i < ARRAY_LEN(s); i++)
		if (s[i]->p && s[i]->p >= data && s[i]->p <= data + n)
			s[i]->p = buf_rptr(&c->head) + (s[i]->p - data);
}

static bool on_head(struct conn *c, const struct http1_msg *m, const uint8_t *data, size_t n)
{
	const uint8_t *q;

	c->have_head = true;
	c->method = m->method;
	c->head_only = m->method == HTTP1_M_HEAD;
	c->keep_alive = m->keep_alive;
	buf_reset(&c->body);
	keep_head(c, m, data, n);
	if (m->target.n >= sizeof(c->path) || m->target.n == 0 || m->target.p[0] != '/') {
		respond_status(c, m->target.n >= sizeof(c->path) ? 414 : 400,
			       "request-target must be an origin-form path of at most 1023 bytes");
		return false;
	}
	memcpy(c->path, m->target.p, m->target.n);
	c->path[m->target.n] = '\0';
	c->path_len = m->target.n;
	q = memchr(c->path, '?', c->path_len);
	c->query_off = q ? (size_t)(q - (const uint8_t *)c->path) : c->path_len;
	return true;
}

/* Parses and answers as many complete requests as the input holds. */
static void process_input(struct conn *c)
{
	while (!c->closing && !c->pending && buf_len(&c->out) < OUT_HIGH) {
		struct http1_event ev;
		int n = http1_parser_push(&c->parser, buf_rptr(&c->in), buf_len(&c->in), &ev);

		if (n < 0) {
			c->srv->stats.bad_requests++;
			log_debug("admin: bad request", LF_STR("server", c->srv->name),
				  LF_STR("reason", http1_parser_reason(&c->parser)),
				  LF_I64("status", http1_parser_status(&c->parser)));
			respond_status(c, http1_parser_status(&c->parser),
				       http1_parser_reason(&c->parser));
			return;
		}
		switch (ev.type) {
		case HTTP1_EV_HEAD:
			if (!on_head(c, ev.msg, buf_rptr(&c->in), (size_t)n))
				return;
			break;
		case HTTP1_EV_BODY:
			if (buf_append(&c->body, ev.data.p, ev.data.n) < 0) {
				respond_status(c, 413, "request body too large");
				return;
			}
			break;
		case HTTP1_EV_END:
			c->have_head = false;
			dispatch(c, &c->msg);
			break;
		case HTTP1_EV_UPGRADE:
			respond_status(c, 400, "upgrades and CONNECT are not served here");
			return;
		case HTTP1_EV_NONE: break;
		}
		buf_consume(&c->in, (size_t)n);
		if (ev.type == HTTP1_EV_NONE)
			break;
	}
}

/* ---- connection I/O ------------------------------------------------------------------------- */

static void conn_close(struct conn *c)
{
	struct admin_server *s = c->srv;

	if (c->pending) {
		struct admin_pending *p = c->pending;
		c->pending = NULL;
		if (p->cancel)
			p->cancel(p, p->arg);
		free(p);
	}
	ev_io_stop(s->loop, &c->io);
	ev_timer_del(s->loop, &c->idle);
	close(c->io.fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->stats.open_conns--;
	buf_fini(&c->in);
	buf_fini(&c->out);
	buf_fini(&c->body);
	buf_fini(&c->head);
	if (c->tls) {
		tls_conn_fini(c->tls);
		free(c->tls);
	}
	free(c);
}

/* Returns false if the connection was closed. */
/* Transport: plain TCP, or TLS when the server has a TLS config. Same return conventions as
 * ev_io_read()/ev_io_write(): > 0 bytes, 0 EOF (reads), -E_AGAIN, -E_LIMIT (input full), -E_*. */
static ssize_t conn_read(struct conn *c)
{
	ssize_t n;
	int r;

	if (!c->tls)
		return ev_io_read(&c->io, &c->in, 0);
	r = buf_reserve(&c->in, MIN((size_t)16384, c->in.max - buf_len(&c->in)));
	if (r < 0 || buf_wspace(&c->in) == 0)
		return -E_LIMIT;
	n = tls_io_read(c->tls, &c->io, buf_wptr(&c->in), buf_wspace(&c->in));
	if (n > 0)
		buf_produce(&c->in, (size_t)n);
	return n;
}

static ssize_t conn_write(struct conn *c)
{
	ssize_t n;

	if (!c->tls)
		return ev_io_write(&c->io, &c->out);
	n = tls_io_write(c->tls, &c->io, buf_rptr(&c->out), buf_len(&c->out));
	if (n > 0)
		buf_consume(&c->out, (size_t)n);
	return n;
}

static bool flush(struct conn *c)
{
	while (buf_len(&c->out)) {
		ssize_t n = conn_write(c);
		if (n == -E_AGAIN || n == 0)
			return true;
		if (n < 0) {
			conn_close(c);
			return false;
		}
	}
	if (c->closing && !c->lingering) {
		/* Closing with unread input would send RST and could destroy the response before
		 * the client reads it: half-close, then discard input for a short while. */
		if (c->tls && tls_io_shutdown(c->tls, &c->io) == -E_AGAIN)
			return true; /* close_notify still going out; flush again on EV_WRITE */
		shutdown(c->io.fd, SHUT_WR);
		c->lingering = true;
		ev_timer_add(c->srv->loop, &c->idle, 2000);
	}
	return true;
}

/* Returns false if the connection was closed. */
static bool linger_read(struct conn *c)
{
	for (;;) {
		ssize_t n;
		buf_reset(&c->in);
		/* After our close_notify the TLS engine is done: read the socket raw. */
		n = ev_io_read(&c->io, &c->in, 0);
		if (n == -E_AGAIN)
			return true;
		if (n <= 0) {
			conn_close(c);
			return false;
		}
	}
}

static void conn_update(struct conn *c)
{
	unsigned want = 0;

	/* A pending long-poll still reads, to notice the client leaving (EOF); a full input buffer
	 * stops reading until requests are consumed. */
	if (c->lingering ||
	    (!c->closing && buf_len(&c->out) < OUT_HIGH && buf_len(&c->in) < c->in.max))
		want |= EV_READ;
	if (buf_len(&c->out))
		want |= EV_WRITE;
	if (c->tls && !c->lingering)
		want |= tls_io_interest(c->tls) & (EV_WRITE | ((want & EV_READ) ? EV_READ : 0));
	ev_io_set(c->srv->loop, &c->io, want);
}

static void on_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct conn *c = ev_container_of(io, struct conn, io);

	if (c->lingering) {
		if ((events & (EV_READ | EV_HUP | EV_ERROR)) && !linger_read(c))
			return;
		conn_update(c);
		return;
	}
	/* TLS may hold decrypted bytes after the socket is drained, so read until the transport
	 * says EAGAIN (or the input buffer is full) rather than once per callback. */
	while ((events & EV_READ) || c->tls) {
		ssize_t n = conn_read(c);
		if (n == 0 || (n < 0 && n != -E_AGAIN && n != -E_LIMIT)) {
			/* Peer closed or failed: answer what is complete, then go. */
			if (n < 0 && c->tls && !buf_len(&c->out))
				log_debug("admin: tls connection failed",
					  LF_STR("server", c->srv->name),
					  LF_STR("reason", tls_conn_reason(c->tls)));
			http1_parser_eof(&c->parser, &(struct http1_event){0});
			if (!buf_len(&c->out)) {
				conn_close(c);
				return;
			}
			c->closing = true;
			break;
		}
		if (n > 0)
			ev_timer_add(loop, &c->idle, c->srv->opts.idle_ms);
		process_input(c);
		if (n <= 0 || c->closing || c->pending || buf_len(&c->out) >= OUT_HIGH)
			break;
	}
	if (!flush(c))
		return;
	if (!c->closing && buf_len(&c->out) < OUT_HIGH && buf_len(&c->in))
		process_input(c);
	if (!flush(c))
		return;
	conn_update(c);
}

static void on_idle(struct ev_loop *loop, struct ev_timer *t)
{
	struct conn *c = ev_container_of(t, struct conn, idle);

	(void)loop;
	if (c->lingering || c->closing) {
		conn_close(c);
		return;
	}
	if (c->have_head || buf_len(&c->in)) {
		/* A request started but never finished. */
		respond_status(c, 408, "request timeout");
		if (flush(c))
			conn_update(c);
		return;
	}
	conn_close(c);
}

static void on_accept(struct net_listener *l, int fd, const struct net_addr *peer)
{
	struct admin_server *s = l->arg;
	struct conn *c;
	struct errbuf eb;

	s->stats.accepted++;
	if (s->stats.open_conns >= s->opts.max_conns) {
		s->stats.rejected_conns++;
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->srv = s;
	c->peer = *peer;
	/* Input holds at most one head plus a bounded body chunk; out is bounded by OUT_HIGH plus
	 * one response. */
	buf_init(&c->in, (size_t)s->opts.max_head + 64 * 1024);
	buf_init(&c->out, 0);
	buf_init(&c->body, (size_t)s->opts.max_body);
	buf_init(&c->head, (size_t)s->opts.max_head + 1);
	http1_parser_init(&c->parser, HTTP1_REQUEST, &s->lim);
	ev_io_init(&c->io, fd, on_io);
	if (s->tls) {
		c->tls = xcalloc(1, sizeof(*c->tls));
		if (tls_conn_init_server(c->tls, s->tls) < 0) {
			log_warn("admin: tls setup failed", LF_STR("server", s->name));
			tls_conn_fini(c->tls);
			free(c->tls);
			buf_fini(&c->in);
			buf_fini(&c->out);
			buf_fini(&c->body);
			buf_fini(&c->head);
			free(c);
			close(fd);
			return;
		}
	}
	ev_timer_init(&c->idle, on_idle);
	if (ev_io_start(s->loop, &c->io, EV_READ) < 0) {
		errbuf_set(&eb, E_IO, "epoll: %s", strerror(errno));
		log_warn("admin: cannot watch connection", LF_STR("server", s->name),
			 LF_ERR(eb.msg));
		close(fd);
		if (c->tls) {
			tls_conn_fini(c->tls);
			free(c->tls);
		}
		buf_fini(&c->in);
		buf_fini(&c->out);
		buf_fini(&c->body);
		buf_fini(&c->head);
		free(c);
		return;
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->stats.open_conns++;
	ev_timer_add(s->loop, &c->idle, s->opts.idle_ms);
}

int admin_listen(struct admin_server *s, const char *addr, struct errbuf *eb)
{
	struct net_addr a;
	struct net_listener *l;
	int r;

	if (s->nlisteners == ADMIN_MAX_LISTENERS)
		return errbuf_set(eb, E_LIMIT, "%s: too many listeners", s->name);
	r = net_addr_parse(&a, addr, eb);
	if (r < 0) {
		errbuf_prefix(eb, "%s address", s->name);
		return r;
	}
	l = &s->listeners[s->nlisteners];
	memset(l, 0, sizeof(*l));
	r = net_listener_start(l, s->loop, &a,
			       &(struct net_listen_opts){.reuseport = s->opts.reuseport}, on_accept,
			       s, eb);
	if (r < 0) {
		errbuf_prefix(eb, "%s listener", s->name);
		return r;
	}
	s->nlisteners++;
	return 0;
}

/* ---- deferred responses -------------------------------------------------------------------- */

struct admin_pending *admin_defer(const struct admin_request *req, admin_cancel_fn cancel,
				  void *arg)
{
	struct conn *c = req->conn;
	struct admin_pending *p;

	if (!c || c->pending)
		return NULL;
	p = xcalloc(1, sizeof(*p));
	p->c = c;
	p->cancel = cancel;
	p->arg = arg;
	c->pending = p;
	return p;
}

void admin_pending_respond(struct admin_pending *p, struct admin_response *r)
{
	struct conn *c = p->c;

	c->pending = NULL;
	free(p);
	queue_response(c, r, !c->keep_alive);
	ev_timer_add(c->srv->loop, &c->idle, c->srv->opts.idle_ms);
	process_input(c);
	if (flush(c))
		conn_update(c);
}

/* ---- query strings ---------------------------------------------------------------------------
 */

bool admin_query_get(struct slice q, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);
	size_t i = 0;

	while (i <= q.n && cap > 0) {
		size_t end = i;
		while (end < q.n && q.p[end] != '&')
			end++;
		if (end - i >= klen && memcmp(q.p + i, key, klen) == 0 &&
		    (end - i == klen || q.p[i + klen] == '=')) {
			size_t o = 0;
			for (size_t j = i + klen + (end - i > klen); j < end; j++) {
				uint8_t ch = q.p[j];
				if (ch == '+') {
					ch = ' ';
				} else if (ch == '%') {
					int hi = j + 2 < end ? hex_digit_value(q.p[j + 1]) : -1;
					int lo = j + 2 < end ? hex_digit_value(q.p[j + 2]) : -1;
					if (hi < 0 || lo < 0)
						return false;
					ch = (uint8_t)(hi * 16 + lo);
					j += 2;
				}
				if (ch == 0 || o + 1 >= cap)
					return false;
				out[o++] = (char)ch;
			}
			out[o] = '\0';
			return true;
		}
		i = end + 1;
	}
	return false;
}
