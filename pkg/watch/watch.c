/* The watch core: options, the load-validate-swap pipeline, published state and the thread. */
#include "pkg/watch/watch_int.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/*
 * Snapshot life cycle (one loading thread at a time: the watcher, or the caller of
 * watch_load_once while the watcher is not running):
 *
 *   fetch --error--> watch_fail: log every line, errors++, keep the snapshot
 *     |  HTTP 304 --> watch_unchanged: the newest document is the one seen last (below)
 *     v
 *   same bytes as published --> unchanged (no version bump, status ok)
 *   same bytes as the last rejected document --> its errors reported again, nothing counted
 *     v
 *   config_parse(version = published + 1) --NULL--> log every line, errors++, keep snapshot
 *     v
 *   swap under mu, unref the old one, log, on_change(new)
 */

const char *watch_kind_name(enum watch_kind k)
{
	switch (k) {
	case WATCH_FILE: return "file";
	case WATCH_HTTP: return "http";
	case WATCH_HTTPS: return "https";
	}
	return "?";
}

static void sha256(const void *p, size_t n, uint8_t out[WATCH_HASH_LEN])
{
	br_sha256_context h;

	br_sha256_init(&h);
	br_sha256_update(&h, p, n);
	br_sha256_out(&h, out);
}

/* Scheme of "scheme://..." (RFC 3986 §3.1 syntax), or 0 when s is not URL-shaped. */
static size_t url_scheme_len(const char *s)
{
	size_t i = 0;

	if (!isalpha((unsigned char)s[0]))
		return 0;
	while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')
		i++;
	return strncmp(s + i, "://", 3) == 0 ? i : 0;
}

static void opts_defaults(struct watch_opts *o)
{
	if (!o->poll_ms)
		o->poll_ms = 5000;
	if (!o->file_poll_ms)
		o->file_poll_ms = 1000;
	if (!o->debounce_ms)
		o->debounce_ms = 100;
	if (!o->longpoll_s)
		o->longpoll_s = 60;
	if (!o->connect_timeout_ms)
		o->connect_timeout_ms = 5000;
	if (!o->io_timeout_ms)
		o->io_timeout_ms = 15000;
	if (!o->backoff_min_ms)
		o->backoff_min_ms = 1000;
	if (!o->backoff_max_ms)
		o->backoff_max_ms = 60000;
	if (o->backoff_max_ms < o->backoff_min_ms)
		o->backoff_max_ms = o->backoff_min_ms;
	if (!o->max_bytes)
		o->max_bytes = WATCH_MAX_BYTES_DEFAULT;
}

static int setup_url(struct watch *w, const struct watch_opts *opts, struct errbuf *eb)
{
	const char *auth = strstr(opts->source, "://") + 3;
	char tok[HTTPC_TOKEN_MAX];
	struct httpc_url u;
	bool tls;
	int r;

	/* Never echo the URL itself: it may hold credentials. */
	if (memchr(auth, '@', strcspn(auth, "/?#")))
		return errbuf_set(eb, E_INVAL,
				  "mesh-config URL: credentials in the URL are not supported (use "
				  "--token-file)");
	r = httpc_url_parse(opts->source, &u, eb);
	if (r < 0) {
		errbuf_prefix(eb, "mesh-config URL");
		return r;
	}
	tls = u.tls;
	w->kind = tls ? WATCH_HTTPS : WATCH_HTTP;
	w->source = xasprintf("%s://%s%s", tls ? "https" : "http", u.hostport, u.target);
	httpc_url_fini(&u);
	if (tls && (!opts->ca_root || !opts->ca_root[0]))
		return errbuf_set(eb, E_INVAL,
				  "%s: https source needs a trust anchor file (--ca-root)",
				  w->source);
	r = httpc_init(&w->http, opts->source,
		       &(struct httpc_opts){.ca_root = opts->ca_root,
					    .ca_root_what = "--ca-root",
					    .connect_timeout_ms = w->o.connect_timeout_ms,
					    .io_timeout_ms = w->o.io_timeout_ms},
		       eb);
	if (r < 0)
		return r;
	if (opts->token_file && opts->token_file[0]) {
		/* Read it once now so a missing or malformed token fails at startup. */
		r = httpc_token_read(opts->token_file, tok, sizeof(tok), eb);
		secure_wipe(tok, sizeof(tok));
		if (r < 0)
			return r;
		w->token_file = xstrdup(opts->token_file);
		if (!tls)
			log_warn("bearer token will be sent over plain http",
				 LF_STR("source", w->source));
	}
	return 0;
}

static int setup_source(struct watch *w, const struct watch_opts *opts, struct errbuf *eb)
{
	const char *s = opts->source;
	size_t sl;

	if (!s || !s[0])
		return errbuf_set(eb, E_INVAL, "mesh-config source is empty");
	sl = url_scheme_len(s);
	if (sl) {
		if ((sl == 4 && strncasecmp(s, "http", 4) == 0) ||
		    (sl == 5 && strncasecmp(s, "https", 5) == 0))
			return setup_url(w, opts, eb);
		/* Only the scheme is quoted: the rest may hold credentials. */
		return errbuf_set(eb, E_UNSUPP,
				  "mesh-config source: unsupported scheme \"%.*s\" (want a file "
				  "path, http:// or https://)",
				  (int)MIN(sl, 32), s);
	}
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20)
			return errbuf_set(eb, E_INVAL, "mesh-config path has a control character");
	w->kind = WATCH_FILE;
	w->path = xstrdup(s);
	w->source = xstrdup(s);
	return 0;
}

struct watch *watch_new(const struct watch_opts *opts, struct errbuf *eb)
{
	struct watch *w;

	if (!opts) {
		errbuf_set(eb, E_INVAL, "no watch options");
		return NULL;
	}
	w = xcalloc(1, sizeof(*w));
	w->wakefd = -1;
	w->o = *opts;
	w->o.source = NULL;
	w->o.ca_root = NULL;
	w->o.token_file = NULL;
	opts_defaults(&w->o);
	if (setup_source(w, opts, eb) < 0)
		goto fail;
	w->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->wakefd < 0) {
		errbuf_set(eb, E_IO, "eventfd: %s", strerror(errno));
		goto fail;
	}
	pthread_mutex_init(&w->mu, NULL);
	w->st.kind = w->kind;
	w->st.source = w->source;
	return w;
fail:
	httpc_fini(&w->http);
	free(w->token_file);
	free(w->source);
	free(w->path);
	free(w);
	return NULL;
}

void watch_free(struct watch *w)
{
	if (!w)
		return;
	watch_stop(w);
	config_unref(w->cur);
	pthread_mutex_destroy(&w->mu);
	close(w->wakefd);
	httpc_fini(&w->http);
	free(w->st.last_error);
	free(w->reject_errors);
	free(w->token_file);
	free(w->source);
	free(w->path);
	free(w);
}

struct config *watch_current(struct watch *w)
{
	struct config *c;

	pthread_mutex_lock(&w->mu);
	c = w->cur ? config_ref(w->cur) : NULL;
	pthread_mutex_unlock(&w->mu);
	return c;
}

void watch_status_get(struct watch *w, struct watch_status *st)
{
	pthread_mutex_lock(&w->mu);
	*st = w->st;
	st->source = xstrdup(w->st.source);
	st->last_error = w->st.last_error ? xstrdup(w->st.last_error) : NULL;
	pthread_mutex_unlock(&w->mu);
}

void watch_status_fini(struct watch_status *st)
{
	if (!st)
		return;
	free(st->source);
	free(st->last_error);
	st->source = NULL;
	st->last_error = NULL;
}

/* ---- the load pipeline ---------------------------------------------------------------------- */

static void copy_errs(struct errlist *dst, const struct errlist *src);

static void record_error(struct watch *w, const struct errlist *errs)
{
	int64_t now = time_real_ms();
	char *joined = errlist_join(errs);

	for (size_t i = 0; i < errs->n; i++)
		log_error("mesh config load failed", LF_STR("source", w->source),
			  LF_ERR(errs->items[i]));
	pthread_mutex_lock(&w->mu);
	free(w->st.last_error);
	w->st.last_error = joined;
	w->st.errors++;
	w->st.ok = false;
	w->st.last_attempt_ms = now;
	w->st.last_error_ms = now;
	pthread_mutex_unlock(&w->mu);
}

void watch_fail(struct watch *w, const struct errlist *errs)
{
	struct errlist one = {0};

	if (errs && errs->n) {
		record_error(w, errs);
		return;
	}
	errlist_add(&one, "%s: load failed", w->source);
	record_error(w, &one);
	errlist_fini(&one);
}

static void note_unchanged(struct watch *w)
{
	int64_t now = time_real_ms();

	pthread_mutex_lock(&w->mu);
	w->st.unchanged++;
	w->st.last_attempt_ms = now;
	w->st.ok = true;
	w->st.last_success_ms = now;
	pthread_mutex_unlock(&w->mu);
	log_debug("mesh config unchanged", LF_STR("source", w->source));
}

void watch_note_http(struct watch *w, const char *etag, bool longpoll)
{
	pthread_mutex_lock(&w->mu);
	snprintf(w->st.http_etag, sizeof(w->st.http_etag), "%s", etag ? etag : "");
	w->st.longpoll = longpoll;
	pthread_mutex_unlock(&w->mu);
}

/* The newest document is one already rejected: report its errors again (the status shows them
 * again if a fetch error came in between), but count nothing. */
static int repeat_rejection(struct watch *w, struct errlist *errs)
{
	char *save = NULL;
	char *copy;

	pthread_mutex_lock(&w->mu);
	w->st.last_attempt_ms = time_real_ms();
	w->st.ok = false;
	if (!w->st.last_error || strcmp(w->st.last_error, w->reject_errors) != 0) {
		free(w->st.last_error);
		w->st.last_error = xstrdup(w->reject_errors);
	}
	pthread_mutex_unlock(&w->mu);
	log_debug("mesh config still invalid", LF_STR("source", w->source));
	if (!errs)
		return -E_PARSE;
	copy = xstrdup(w->reject_errors);
	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		errlist_add(errs, "%s", l);
	free(copy);
	return -E_PARSE;
}

int watch_unchanged(struct watch *w, struct errlist *errs)
{
	if (w->last_rejected)
		return repeat_rejection(w, errs);
	if (!w->have_good_hash) {
		/* A 304 with nothing loaded: only a confused server sends that. */
		struct errlist one = {0};

		errlist_add(&one, "%s: server answered 304 Not Modified but nothing is loaded",
			    w->source);
		watch_fail(w, &one);
		copy_errs(errs, &one);
		errlist_fini(&one);
		return -E_PROTO;
	}
	note_unchanged(w);
	return 0;
}

static void copy_errs(struct errlist *dst, const struct errlist *src)
{
	if (!dst)
		return;
	for (size_t i = 0; i < src->n; i++)
		errlist_add(dst, "%s", src->items[i]);
}

int watch_apply(struct watch *w, const char *text, size_t len, struct errlist *errs)
{
	uint8_t h[WATCH_HASH_LEN];
	struct errlist pe = {0};
	struct config *c;
	struct config *old;
	uint64_t version;

	sha256(text, len, h);
	if (w->have_good_hash && memcmp(h, w->good_hash, sizeof(h)) == 0) {
		w->last_rejected = false;
		note_unchanged(w);
		return 0;
	}
	if (w->last_rejected && memcmp(h, w->last_hash, sizeof(h)) == 0)
		return repeat_rejection(w, errs);
	memcpy(w->last_hash, h, sizeof(h));

	pthread_mutex_lock(&w->mu);
	version = w->st.version + 1;
	pthread_mutex_unlock(&w->mu);

	c = config_parse(w->source, text, len, version, &pe);
	if (!c) {
		if (!pe.n)
			errlist_add(&pe, "%s: invalid mesh config", w->source);
		record_error(w, &pe);
		copy_errs(errs, &pe);
		free(w->reject_errors);
		w->reject_errors = errlist_join(&pe);
		w->last_rejected = true;
		errlist_fini(&pe);
		return -E_PARSE;
	}
	errlist_fini(&pe);

	pthread_mutex_lock(&w->mu);
	old = w->cur;
	w->cur = c;
	w->st.version = version;
	snprintf(w->st.etag, sizeof(w->st.etag), "%s", config_etag(c) ? config_etag(c) : "");
	w->st.successes++;
	w->st.ok = true;
	w->st.last_attempt_ms = w->st.last_success_ms = time_real_ms();
	pthread_mutex_unlock(&w->mu);
	config_unref(old);
	memcpy(w->good_hash, h, sizeof(h));
	w->have_good_hash = true;
	w->last_rejected = false;

	log_info("mesh config loaded", LF_STR("source", w->source), LF_U64("version", version),
		 LF_STR("etag", config_etag(c)), LF_U64("bytes", len));
	/* Only this thread replaces w->cur, so c stays alive for the callback. */
	if (w->o.on_change)
		w->o.on_change(c, w->o.arg);
	return 1;
}

/* ---- loading and the thread ------------------------------------------------------------------ */

static int load_doc(struct watch *w, struct watch_doc *doc, struct errlist *errs)
{
	struct errlist fe = {0};
	int r;

	if (w->kind == WATCH_FILE)
		r = watch_file_read(w, doc, &fe);
	else
		r = watch_http_fetch(w, false, doc, &fe);
	if (r < 0) {
		watch_fail(w, &fe);
		copy_errs(errs, &fe);
	}
	errlist_fini(&fe);
	return r;
}

int watch_load_once(struct watch *w, struct errlist *errs)
{
	struct watch_doc doc = {0};
	int r;

	if (w->running) {
		if (errs)
			errlist_add(errs, "%s: watch_load_once while the watcher runs", w->source);
		return -E_STATE;
	}
	r = load_doc(w, &doc, errs);
	if (r < 0)
		return r;
	if (doc.unchanged)
		return watch_unchanged(w, errs);
	r = watch_apply(w, doc.text, doc.len, errs);
	free(doc.text);
	return r < 0 ? r : 0;
}

bool watch_stopping(struct watch *w)
{
	return atomic_load(&w->stopping);
}

bool watch_sleep(struct watch *w, uint32_t ms)
{
	uint64_t end = time_mono_ms() + ms;

	for (;;) {
		struct pollfd p = {.fd = w->wakefd, .events = POLLIN};
		uint64_t now = time_mono_ms();

		if (watch_stopping(w))
			return true;
		if (now >= end)
			return false;
		if (poll(&p, 1, (int)MIN(end - now, 60000)) < 0 && errno != EINTR)
			return watch_stopping(w);
	}
}

static void *thread_main(void *arg)
{
	struct watch *w = arg;

	if (w->kind == WATCH_FILE)
		watch_file_loop(w);
	else
		watch_http_loop(w);
	return NULL;
}

int watch_start(struct watch *w, struct errbuf *eb)
{
	uint64_t v;
	int r;

	if (w->running)
		return errbuf_set(eb, E_STATE, "%s: watcher already running", w->source);
	while (read(w->wakefd, &v, sizeof(v)) > 0)
		;
	atomic_store(&w->stopping, false);
	r = pthread_create(&w->thr, NULL, thread_main, w);
	if (r)
		return errbuf_set(eb, E_IO, "pthread_create: %s", strerror(r));
	w->running = true;
	return 0;
}

void watch_stop(struct watch *w)
{
	uint64_t one = 1;

	if (!w || !w->running)
		return;
	atomic_store(&w->stopping, true);
	if (write(w->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("watch: wake failed", LF_ERR(strerror(errno)));
	pthread_join(w->thr, NULL);
	w->running = false;
}
