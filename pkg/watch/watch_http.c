/* URL sources: URL parsing, conditional GET and long-poll requests, retry with backoff. */
#include "pkg/watch/watch_int.h"

#include "pkg/http1/http1.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * One request per connection (`Connection: close`): a poll every few seconds or one long-poll a
 * minute does not need keep-alive, and a fresh connection never inherits a half-read response.
 *
 *   plain server:  GET /mesh.json            If-None-Match: "e1"   -> 200 (new doc) | 304
 *                  ...sleep poll_ms, repeat
 *   ambient ca:    GET /v1/config            -> 200, ETag: "e1", X-Ambient-Watch: 1
 *                  GET /v1/config?watch=e1&timeoutSeconds=60   If-None-Match: "e1"
 *                     -> blocks until the document differs from e1 (200) or the timeout (304)
 *                  ...repeat at once
 *   any error:     sleep rand[0, min(backoff_max, backoff_min * 2^n)) (full jitter), retry
 *
 * The `watch` parameter carries the ETag's opaque-tag without quotes or W/ prefix,
 * percent-encoded (RFC 3986 unreserved characters pass as is). Long-poll requests wait
 * io_timeout_ms + longpoll_s for the answer. A server that stops sending `X-Ambient-Watch: 1`
 * (replaced by a plain one) is polled again.
 */

#define ERR_BODY_MAX 200     /* bytes of an error response body quoted in the error */
#define LONGPOLL_MIN_MS 1000 /* spacing of long-polls that returned quickly with nothing new */

/* ---- URLs --------------------------------------------------------------------------------------
 */

void watch_url_fini(struct watch_url *u)
{
	free(u->host);
	free(u->hostport);
	free(u->target);
	memset(u, 0, sizeof(*u));
}

static bool is_regname_char(int c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_';
}

static int parse_port(const char *p, size_t n, uint16_t *port, struct errbuf *eb)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return errbuf_set(eb, E_INVAL, "invalid port \"%.*s\"", (int)MIN(n, 16), p);
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return errbuf_set(eb, E_INVAL, "invalid port \"%.*s\"", (int)n, p);
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v < 1 || v > 65535)
		return errbuf_set(eb, E_INVAL, "port %lu out of range 1..65535", v);
	*port = (uint16_t)v;
	return 0;
}

static int parse_host(const char *a, size_t n, struct watch_url *u, struct errbuf *eb)
{
	char tmp[256];
	bool digits_dots = true;

	if (n == 0)
		return errbuf_set(eb, E_INVAL, "missing host");
	if (n >= sizeof(tmp))
		return errbuf_set(eb, E_INVAL, "host name too long");
	memcpy(tmp, a, n);
	tmp[n] = '\0';
	if (tmp[0] == '[') {
		if (tmp[n - 1] != ']')
			return errbuf_set(eb, E_INVAL, "unterminated IPv6 literal");
		tmp[n - 1] = '\0';
		if (strchr(tmp, '%'))
			return errbuf_set(eb, E_INVAL, "IPv6 zone identifiers are not supported");
		if (inet_pton(AF_INET6, tmp + 1, u->ip) != 1)
			return errbuf_set(eb, E_INVAL, "invalid IPv6 address \"%s\"", tmp + 1);
		u->host_is_ip = true;
		u->ip_family = AF_INET6;
		u->host = xstrdup(tmp + 1);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (!is_regname_char((unsigned char)tmp[i]))
			return errbuf_set(eb, E_INVAL, "invalid character in host \"%s\"", tmp);
		if (!isdigit((unsigned char)tmp[i]) && tmp[i] != '.')
			digits_dots = false;
	}
	if (inet_pton(AF_INET, tmp, u->ip) == 1) {
		u->host_is_ip = true;
		u->ip_family = AF_INET;
	} else if (digits_dots) {
		/* "127.1" or "1.2.3.256": getaddrinfo would read these as numbers; refuse instead.
		 */
		return errbuf_set(eb, E_INVAL, "invalid IPv4 address \"%s\"", tmp);
	}
	u->host = xstrdup(tmp);
	return 0;
}

static int url_parse(const char *s, struct watch_url *u, struct errbuf *eb)
{
	const char *a = strstr(s, "://") + 3;
	const char *end = a + strcspn(a, "/?#");
	const char *colon = NULL;
	const char *hend;
	size_t tlen;
	int r;

	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return errbuf_set(eb, E_INVAL, "URL has a space or non-ASCII character");
	u->tls = tolower((unsigned char)s[4]) == 's';
	if (memchr(a, '@', (size_t)(end - a)))
		return errbuf_set(eb, E_INVAL,
				  "credentials in the URL are not supported (use --token-file)");
	if (a < end && *a == '[') {
		hend = memchr(a, ']', (size_t)(end - a));
		if (!hend)
			return errbuf_set(eb, E_INVAL, "unterminated IPv6 literal");
		hend++;
		if (hend < end && *hend != ':')
			return errbuf_set(eb, E_INVAL, "junk after IPv6 literal");
		colon = hend < end ? hend : NULL;
	} else {
		colon = memchr(a, ':', (size_t)(end - a));
		hend = colon ? colon : end;
	}
	r = parse_host(a, (size_t)(hend - a), u, eb);
	if (r < 0)
		return r;
	u->port = u->tls ? 443 : 80;
	if (colon) {
		r = parse_port(colon + 1, (size_t)(end - colon - 1), &u->port, eb);
		if (r < 0)
			return r;
	}
	if (u->ip_family == AF_INET6)
		u->hostport = xasprintf("[%s]:%u", u->host, u->port);
	else
		u->hostport = xasprintf("%s:%u", u->host, u->port);
	tlen = strcspn(end, "#"); /* the fragment is client-side only (RFC 3986 §3.5) */
	if (tlen == 0 || end[0] == '?')
		u->target = xasprintf("/%.*s", (int)tlen, end);
	else
		u->target = xstrndup(end, tlen);
	return 0;
}

int watch_url_parse(const char *s, struct watch_url *u, struct errbuf *eb)
{
	int r;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0)
		return errbuf_set(eb, E_UNSUPP, "URL must start with http:// or https://");
	r = url_parse(s, u, eb);
	if (r < 0) {
		/* Never echo the URL itself: it may hold credentials. */
		errbuf_prefix(eb, "mesh-config URL");
		watch_url_fini(u);
	}
	return r;
}

/* ---- tokens -----------------------------------------------------------------------------------
 */

int watch_token_read(const char *path, char *out, size_t cap, struct errbuf *eb)
{
	size_t len = 0;
	int fd;
	int r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return errbuf_set(eb, E_IO, "token file %s: %s", path, strerror(errno));
	for (;;) {
		ssize_t n = read(fd, out + len, cap - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = errbuf_set(eb, E_IO, "token file %s: %s", path, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == cap - 1) {
			r = errbuf_set(eb, E_LIMIT, "token file %s: longer than %zu bytes", path,
				       cap - 2);
			break;
		}
	}
	close(fd);
	while (len && isspace((unsigned char)out[len - 1]))
		len--;
	out[len] = '\0';
	if (r < 0)
		return r;
	if (len == 0)
		return errbuf_set(eb, E_INVAL, "token file %s: empty", path);
	/* Visible ASCII only: anything else would break (or inject into) the header. */
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)out[i] <= 0x20 || (unsigned char)out[i] >= 0x7f)
			return errbuf_set(eb, E_INVAL,
					  "token file %s: token has a space or control character",
					  path);
	return 0;
}

/* ---- requests -----------------------------------------------------------------------------------
 */

/* The opaque-tag of an entity-tag (RFC 9110 §8.8.3): without W/ and the quotes. */
static void etag_opaque(const char *etag, const char **p, size_t *n)
{
	size_t len;

	if (strncmp(etag, "W/", 2) == 0)
		etag += 2;
	len = strlen(etag);
	if (len >= 2 && etag[0] == '"' && etag[len - 1] == '"') {
		etag++;
		len -= 2;
	}
	*p = etag;
	*n = len;
}

static char *build_target(struct watch *w, bool longpoll)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *tag;
	size_t n;
	struct buf b;
	char *s;

	if (!longpoll)
		return xstrdup(w->url.target);
	etag_opaque(w->req_etag, &tag, &n);
	buf_init(&b, 0);
	buf_printf(&b, "%s%cwatch=", w->url.target, strchr(w->url.target, '?') ? '&' : '?');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)tag[i];

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
			buf_printf(&b, "%c", c);
		else
			buf_printf(&b, "%%%c%c", hex[c >> 4], hex[c & 15]);
	}
	buf_printf(&b, "&timeoutSeconds=%u", w->o.longpoll_s);
	s = xstrndup((const char *)buf_rptr(&b), buf_len(&b));
	buf_fini(&b);
	return s;
}

static int build_request(struct watch *w, const char *target, struct buf *req, struct errbuf *eb)
{
	char tok[WATCH_TOKEN_MAX];
	char *auth = NULL;
	struct http1_field f[6];
	size_t nf = 0;
	int r;

	f[nf++] = (struct http1_field){http1_s("Host"), http1_s(w->url.hostport)};
	f[nf++] = (struct http1_field){http1_s("User-Agent"), http1_s("ambient-watch")};
	f[nf++] = (struct http1_field){http1_s("Accept"), http1_s("application/json")};
	f[nf++] = (struct http1_field){http1_s("Connection"), http1_s("close")};
	if (w->req_etag[0])
		f[nf++] = (struct http1_field){http1_s("If-None-Match"), http1_s(w->req_etag)};
	if (w->token_file) {
		r = watch_token_read(w->token_file, tok, sizeof(tok), eb);
		if (r < 0)
			goto out;
		auth = xasprintf("Bearer %s", tok);
		f[nf++] = (struct http1_field){http1_s("Authorization"), http1_s(auth)};
	}
	/* Room for everything up front: a realloc would leave a copy of the token behind. */
	r = buf_reserve(req, 4096 + strlen(target) + sizeof(w->req_etag) + sizeof(tok));
	if (r == 0)
		r = http1_format_request_head(req, "GET", target, f, nf, HTTP1_LEN_NONE);
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

/* ---- responses ------------------------------------------------------------------------------- */

struct resp {
	int status;
	struct buf body;
	char etag[WATCH_ETAG_MAX + 8];
	bool has_etag;
	bool longpoll;
	char location[128];
};

static void copy_slice(char *dst, size_t cap, struct slice s)
{
	size_t n = MIN(s.n, cap - 1);

	for (size_t i = 0; i < n; i++)
		dst[i] = (s.p[i] < 0x20 || s.p[i] >= 0x7f) ? '?' : (char)s.p[i];
	dst[n] = '\0';
}

static void on_head(struct resp *rs, const struct http1_msg *m)
{
	struct slice v;

	rs->status = m->status;
	if (http1_fields_get(&m->headers, "etag", &v) && v.n > 0 && v.n <= WATCH_ETAG_MAX) {
		bool ok = true;

		/* Only visible ASCII goes back to the server in If-None-Match. */
		for (size_t i = 0; i < v.n; i++)
			ok = ok && v.p[i] > 0x20 && v.p[i] < 0x7f;
		if (ok) {
			memcpy(rs->etag, v.p, v.n);
			rs->etag[v.n] = '\0';
			rs->has_etag = true;
		}
	}
	if (http1_fields_get(&m->headers, WATCH_HDR_LONGPOLL, &v))
		rs->longpoll = http1_slice_eq(v, "1");
	if (http1_fields_get(&m->headers, "location", &v))
		copy_slice(rs->location, sizeof(rs->location), v);
}

/* Feeds everything buffered to the parser. Returns 1 at the end of the response, 0 for more. */
static int parse_some(struct watch *w, struct http1_parser *p, struct buf *in, struct resp *rs,
		      struct errbuf *eb)
{
	for (;;) {
		struct http1_event ev;
		int n = http1_parser_push(p, buf_rptr(in), buf_len(in), &ev);

		if (n < 0 && n == -E_LIMIT && http1_parser_status(p) == 413)
			return errbuf_set(eb, E_LIMIT, "response body over the %zu-byte limit",
					  w->o.max_bytes);
		if (n < 0)
			return errbuf_set(eb, -n, "bad HTTP response: %s", http1_parser_reason(p));
		if (ev.type == HTTP1_EV_HEAD && ev.msg->status >= 200)
			on_head(rs, ev.msg);
		if (ev.type == HTTP1_EV_BODY && rs->status) {
			size_t keep = ev.data.n;

			/* Error bodies are only quoted, so keep a little of them. */
			if (rs->status != 200)
				keep = MIN(keep,
					   ERR_BODY_MAX - MIN(ERR_BODY_MAX, buf_len(&rs->body)));
			if (buf_append(&rs->body, ev.data.p, keep) < 0)
				return errbuf_set(eb, E_LIMIT,
						  "response body over the %zu-byte limit",
						  w->o.max_bytes);
		}
		buf_consume(in, (size_t)n);
		if (ev.type == HTTP1_EV_END && rs->status >= 200)
			return 1;
		if (ev.type == HTTP1_EV_UPGRADE)
			return errbuf_set(eb, E_PROTO, "unexpected protocol upgrade");
		if (ev.type == HTTP1_EV_NONE)
			return 0;
	}
}

static int read_response(struct watch *w, struct watch_conn *c, uint32_t timeout_ms,
			 struct resp *rs, struct errbuf *eb)
{
	struct http1_limits lim;
	struct http1_parser p;
	struct buf in;
	int r = 0;

	http1_limits_default(&lim);
	lim.max_body = w->o.max_bytes;
	http1_parser_init(&p, HTTP1_RESPONSE, &lim);
	buf_init(&in, lim.max_head + 65536);
	while (r == 0) {
		long n;

		if (buf_reserve(&in, 16384) < 0) {
			r = errbuf_set(eb, E_LIMIT, "response head too large");
			break;
		}
		n = watch_conn_read(c, buf_wptr(&in), buf_wspace(&in), timeout_ms, eb);
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
				r = 1;
			else
				r = errbuf_set(eb, E_CLOSED, "connection closed before a response");
			break;
		}
		buf_produce(&in, (size_t)n);
		r = parse_some(w, &p, &in, rs, eb);
	}
	buf_fini(&in);
	return r < 0 ? r : 0;
}

static int status_error(struct watch *w, const struct resp *rs, struct errbuf *eb)
{
	char body[ERR_BODY_MAX + 1];

	copy_slice(body, sizeof(body), (struct slice){buf_rptr(&rs->body), buf_len(&rs->body)});
	if (rs->status >= 300 && rs->status < 400 && rs->location[0])
		return errbuf_set(eb, E_PROTO,
				  "HTTP %d %s (redirects are not followed; Location: %s)",
				  rs->status, http1_reason(rs->status), rs->location);
	if (rs->status == 401 || rs->status == 403)
		return errbuf_set(
			eb, E_DENIED, "HTTP %d %s%s%s%s", rs->status, http1_reason(rs->status),
			w->token_file ? "" : " (no --token-file)", body[0] ? ": " : "", body);
	return errbuf_set(eb, E_PROTO, "HTTP %d %s%s%s", rs->status, http1_reason(rs->status),
			  body[0] ? ": " : "", body);
}

/* Takes the response's facts into the watch and the doc. */
static int finish(struct watch *w, struct resp *rs, struct watch_doc *doc, struct errbuf *eb)
{
	if (rs->status != 200 && rs->status != 304)
		return status_error(w, rs, eb);
	doc->longpoll = rs->longpoll;
	w->longpoll = rs->longpoll;
	if (rs->status == 304) {
		doc->unchanged = true;
	} else {
		doc->len = buf_len(&rs->body);
		doc->text = xmalloc(doc->len + 1);
		memcpy(doc->text, buf_rptr(&rs->body), doc->len);
		doc->text[doc->len] = '\0';
		/* The ETag of the document we now hold, valid or not: a rejected document is not
		 * fetched again until it changes. */
		snprintf(w->req_etag, sizeof(w->req_etag), "%s", rs->has_etag ? rs->etag : "");
	}
	snprintf(doc->etag, sizeof(doc->etag), "%s", w->req_etag);
	watch_note_http(w, w->req_etag, w->longpoll);
	return 0;
}

int watch_http_fetch(struct watch *w, bool longpoll, struct watch_doc *doc, struct errlist *errs)
{
	struct errbuf eb = {0};
	struct resp rs = {0};
	struct watch_conn *c = NULL;
	struct buf req;
	uint32_t timeout;
	char *target;
	int r;

	longpoll = longpoll && w->req_etag[0];
	target = build_target(w, longpoll);
	timeout = w->o.io_timeout_ms + (longpoll ? w->o.longpoll_s * 1000 : 0);
	buf_init(&req, 0);
	buf_init(&rs.body, w->o.max_bytes);
	r = build_request(w, target, &req, &eb);
	if (r < 0)
		goto out;
	c = watch_conn_open(w, &w->url, &eb);
	if (!c) {
		r = -(eb.code ? eb.code : E_IO);
		goto out;
	}
	r = watch_conn_write(c, buf_rptr(&req), buf_len(&req), &eb);
	/* The request holds the bearer token: wipe it as soon as it is sent. */
	secure_wipe(req.data, req.cap);
	if (r < 0)
		goto out;
	log_debug("mesh config request", LF_STR("source", w->source), LF_STR("target", target),
		  LF_BOOL("longpoll", longpoll));
	r = read_response(w, c, timeout, &rs, &eb);
	if (r == 0)
		r = finish(w, &rs, doc, &eb);
out:
	if (r < 0)
		errlist_add(errs, "%s: %s", w->source, eb.msg[0] ? eb.msg : err_str(r));
	watch_conn_close(c);
	secure_wipe(req.data, req.cap);
	buf_fini(&req);
	buf_fini(&rs.body);
	free(target);
	return r;
}

/* ---- the loop ----------------------------------------------------------------------------------
 */

/* Full jitter (uniform in [0, cap]) so that a fleet restarted together does not retry in step. */
static uint32_t backoff_ms(struct watch *w, unsigned attempt)
{
	uint64_t cap = w->o.backoff_min_ms;

	for (unsigned i = 0; i < attempt && cap < w->o.backoff_max_ms; i++)
		cap *= 2;
	cap = MIN(cap, (uint64_t)w->o.backoff_max_ms);
	return (uint32_t)MAX(rand_below(cap + 1), MIN(cap, 100));
}

void watch_http_loop(struct watch *w)
{
	unsigned attempt = 0;
	bool was_longpoll = false;

	log_info("watching mesh config", LF_STR("source", w->source), LF_STR("mode", "http"));
	while (!watch_stopping(w)) {
		bool lp = w->longpoll && w->req_etag[0];
		uint64_t t0 = time_mono_ms();
		struct watch_doc doc = {0};
		struct errlist errs = {0};
		uint32_t delay;
		int r;

		r = watch_http_fetch(w, lp, &doc, &errs);
		if (watch_stopping(w)) {
			free(doc.text);
			errlist_fini(&errs);
			break; /* a fetch cut short by watch_stop is not a failure */
		}
		if (r < 0) {
			watch_fail(w, &errs);
			delay = backoff_ms(w, attempt);
			attempt += attempt < 32;
			log_info("retrying mesh config fetch", LF_STR("source", w->source),
				 LF_U64("delay_ms", delay));
		} else {
			attempt = 0;
			if (doc.unchanged)
				r = watch_unchanged(w, NULL);
			else
				r = watch_apply(w, doc.text, doc.len, NULL);
			if (w->longpoll != was_longpoll)
				log_info(w->longpoll
						 ? "mesh config server supports long-poll"
						 : "mesh config server does not long-poll, polling",
					 LF_STR("source", w->source));
			was_longpoll = w->longpoll;
			if (!(w->longpoll && w->req_etag[0]))
				delay = w->o.poll_ms;
			else if (r == 1 || time_mono_ms() - t0 >= LONGPOLL_MIN_MS)
				delay = 0;
			else
				delay = (uint32_t)(LONGPOLL_MIN_MS - (time_mono_ms() - t0));
		}
		free(doc.text);
		errlist_fini(&errs);
		if (delay && watch_sleep(w, delay))
			break;
	}
}
