/* URL sources: URL parsing, conditional GET and long-poll requests, retry with backoff. */
#include "pkg/watch/watch_int.h"

#include <ctype.h>
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
		return xstrdup(w->http.url.target);
	etag_opaque(w->req_etag, &tag, &n);
	buf_init(&b, 0);
	buf_printf(&b, "%s%cwatch=", w->http.url.target,
		   strchr(w->http.url.target, '?') ? '&' : '?');
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

/* ---- responses ------------------------------------------------------------------------------- */

/* What the watch keeps of a response head. */
struct resp {
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

static void on_head(void *arg, const struct http1_msg *m)
{
	struct resp *rs = arg;
	struct slice v;

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

static int status_error(struct watch *w, const struct httpc_resp *hr, const struct resp *rs,
			struct errbuf *eb)
{
	char body[ERR_BODY_MAX + 1];
	int st = hr->status;

	copy_slice(body, sizeof(body), (struct slice){buf_rptr(&hr->body), buf_len(&hr->body)});
	if (st >= 300 && st < 400 && rs->location[0])
		return errbuf_set(eb, E_PROTO,
				  "HTTP %d %s (redirects are not followed; Location: %s)", st,
				  http1_reason(st), rs->location);
	if (st == 401 || st == 403)
		return errbuf_set(eb, E_DENIED, "HTTP %d %s%s%s%s", st, http1_reason(st),
				  w->token_file ? "" : " (no --token-file)", body[0] ? ": " : "",
				  body);
	return errbuf_set(eb, E_PROTO, "HTTP %d %s%s%s", st, http1_reason(st), body[0] ? ": " : "",
			  body);
}

/* Takes the response's facts into the watch and the doc. */
static int finish(struct watch *w, const struct httpc_resp *hr, const struct resp *rs,
		  struct watch_doc *doc, struct errbuf *eb)
{
	if (hr->status != 200 && hr->status != 304)
		return status_error(w, hr, rs, eb);
	doc->longpoll = rs->longpoll;
	w->longpoll = rs->longpoll;
	if (hr->status == 304) {
		doc->unchanged = true;
	} else {
		doc->len = buf_len(&hr->body);
		doc->text = xmalloc(doc->len + 1);
		memcpy(doc->text, buf_rptr(&hr->body), doc->len);
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
	struct httpc_resp hr = {0};
	char *target;
	int r;

	longpoll = longpoll && w->req_etag[0];
	target = build_target(w, longpoll);
	log_debug("mesh config request", LF_STR("source", w->source), LF_STR("target", target),
		  LF_BOOL("longpoll", longpoll));
	r = httpc_fetch(
		&w->http,
		&(struct httpc_req){
			.target = target,
			.token_file = w->token_file,
			.if_none_match = w->req_etag,
			.accept = "application/json",
			.user_agent = "ambient-watch",
			.max_body = w->o.max_bytes,
			/* Long-polls wait longpoll_s more for the answer. */
			.timeout_ms = w->o.io_timeout_ms + (longpoll ? w->o.longpoll_s * 1000 : 0),
			.wakefd = w->wakefd,
			.stopping = &w->stopping,
			.on_head = on_head,
			.arg = &rs,
		},
		&hr, &eb);
	if (r == 0)
		r = finish(w, &hr, &rs, doc, &eb);
	if (r < 0)
		errlist_add(errs, "%s: %s", w->source, eb.msg[0] ? eb.msg : err_str(r));
	httpc_resp_fini(&hr);
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
