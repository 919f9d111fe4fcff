/* `ambient ca serve`: the HTTPS API of DESIGN.md §4 (certificates, roots, mesh config with
 * long-poll), node authorization, rate limits, audit log and metrics. */
#include "cmd/ca.h"
#include "cmd/server.h"
#include "pkg/admin/admin.h"
#include "pkg/ca/ca.h"
#include "pkg/ca/ca_tokens.h"
#include "pkg/json/json.h"
#include "pkg/metrics/metrics.h"
#include "pkg/watch/watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CA_MAX_BODY (64 * 1024)
#define SERVER_CERT_TTL (24 * 3600)
#define LONGPOLL_DEFAULT_S 60
#define LONGPOLL_MAX_S 600

/*
 * Threads: the HTTPS API runs on every worker loop (one SO_REUSEPORT listener each), so
 * signing uses all cores. What the loops share sits behind `mu`: the token table, the rate
 * limiter, the current mesh document (a refcounted `struct ca_doc`, swapped on every config
 * change) and the serving TLS config. The authority (keys, chain) is read-only after start.
 * Long-poll waiters belong to the loop that accepted them; a config change posts a wake-up to
 * every loop, which answers its own waiters.
 */

struct ca_doc {
	atomic_int ref;
	struct config *cfg;
	struct buf body; /* the normalized mesh document */
	char etag[48];	 /* quoted */
};

struct ca_loop;

struct waiter {
	struct waiter *next;
	struct waiter *prev;
	struct ca_loop *cl;
	struct admin_pending *p;
	struct ev_timer t;
};

struct ca_loop {
	struct ca_server *ca;
	struct ev_loop *loop;
	struct admin_server *https;
	struct waiter *waiters;
};

struct ca_server {
	/* flags */
	const char *dir;
	const char *listen;
	const char *identity;
	struct flag_list dns;
	struct flag_list ips;
	int rate;
	int burst;
	/* read-only after start */
	struct server *srv;
	struct ca_authority *auth;
	char *server_identity;
	char tokens_path[4096];
	/* main loop only */
	struct ev_timer renew;
	/* shared, under mu */
	pthread_mutex_t mu;
	struct tls_config *tls;
	char server_serial[2 * X509_MAX_SERIAL + 1];
	int64_t server_not_after;
	struct ca_tokens tokens;
	struct ca_ratelimit *rl;
	struct ca_doc *doc;
	struct ca_loop *loops[EV_MAX_THREADS];
	unsigned nloops;
	atomic_uint nwaiters;
	/* metrics (thread-safe) */
	struct metrics_series *m_issued;
	struct metrics_family *m_refusals;
	struct metrics_series *m_latency;
	struct metrics_series *m_watchers;
};

static struct ca_server g_ca = {
	.listen = "0.0.0.0:15012", .rate = 10, .burst = 20, .mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- audit and refusals --------------------------------------------------------------------- */

static void peer_text(const struct net_addr *peer, char *out, size_t cap)
{
	if (!peer || !net_addr_format(peer, out, cap))
		snprintf(out, cap, "-");
}

static void audit_refusal(struct ca_server *ca, const char *node, const char *identity, int status,
			  const char *reason, const char *label, const struct net_addr *peer)
{
	char p[NET_ADDR_STRLEN];
	const char *v[] = {label};

	peer_text(peer, p, sizeof(p));
	log_warn("ca audit", LF_STR("event", "refused"), LF_STR("node", node ? node : "-"),
		 LF_STR("identity", identity ? identity : "-"), LF_I64("status", status),
		 LF_STR("reason", reason), LF_STR("peer", p));
	metrics_counter_inc(metrics_counter_with(ca->m_refusals, v));
}

/* A JSON error body {"error": "..."} with the status, audited. */
static void refuse(struct ca_server *ca, struct admin_response *r, int status, const char *label,
		   const char *node, const char *identity, const struct net_addr *peer,
		   const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static void refuse(struct ca_server *ca, struct admin_response *r, int status, const char *label,
		   const char *node, const char *identity, const struct net_addr *peer,
		   const char *fmt, ...)
{
	char msg[512];
	struct json_writer w;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->status = status;
	r->content_type = "application/json";
	buf_reset(&r->body);
	json_writer_init(&w, &r->body, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "error", msg);
	json_write_object_end(&w);
	json_writer_finish(&w);
	buf_append(&r->body, "\n", 1);
	audit_refusal(ca, node, identity, status, msg, label, peer);
}

static void on_reject(void *arg, int status, const char *reason, const struct net_addr *peer)
{
	audit_refusal(arg, NULL, NULL, status, reason, status == 413 ? "too_large" : "bad_request",
		      peer);
}

/* The node that owns the request's bearer token, copied into node[]; false (and why) if none. */
static bool authenticate(struct ca_server *ca, const struct admin_request *req, char *node,
			 size_t cap, const char **why)
{
	struct slice v;
	char tok[256];
	const struct ca_token_entry *e;
	struct errbuf eb;
	bool ok = false;

	if (!http1_fields_get(&req->msg->headers, "authorization", &v)) {
		*why = "missing Authorization: Bearer <node token>";
		return false;
	}
	if (v.n < 8 || strncasecmp((const char *)v.p, "bearer ", 7) != 0 ||
	    v.n - 7 >= sizeof(tok)) {
		*why = "Authorization is not a bearer token";
		return false;
	}
	memcpy(tok, v.p + 7, v.n - 7);
	tok[v.n - 7] = '\0';
	pthread_mutex_lock(&ca->mu);
	/* Tokens added or revoked by `ambient ca token` take effect without a restart. */
	if (ca_tokens_refresh(ca->tokens_path, &ca->tokens, &eb) < 0)
		log_error("ca: cannot reload tokens", LF_ERR(eb.msg));
	e = ca_tokens_lookup(&ca->tokens, tok);
	if (e) {
		snprintf(node, cap, "%s", e->node);
		ok = true;
	}
	pthread_mutex_unlock(&ca->mu);
	secure_wipe(tok, sizeof(tok));
	if (!ok)
		*why = "unknown or revoked token";
	return ok;
}

static struct ca_doc *doc_get(struct ca_server *ca)
{
	struct ca_doc *d;

	pthread_mutex_lock(&ca->mu);
	d = ca->doc;
	if (d)
		atomic_fetch_add(&d->ref, 1);
	pthread_mutex_unlock(&ca->mu);
	return d;
}

static void doc_put(struct ca_doc *d)
{
	if (!d || atomic_fetch_sub(&d->ref, 1) != 1)
		return;
	config_unref(d->cfg);
	buf_fini(&d->body);
	free(d);
}

/* ---- POST /v1/certificates ---------------------------------------------------------------- */

struct csr_req {
	const char *csr;
	const char *identity;
	int64_t ttl;
};

/* Decodes {"csr", "identity", "ttlSeconds"}; unknown fields are errors. */
static int decode_request(const struct slice body, cJSON **root, struct csr_req *out, char *err,
			  size_t cap)
{
	struct json_error je;
	const cJSON *f;

	memset(out, 0, sizeof(*out));
	if (json_parse((const char *)body.p, body.n, NULL, root, &je) < 0) {
		json_error_format(&je, "body", err, cap);
		return -1;
	}
	if (!cJSON_IsObject(*root)) {
		snprintf(err, cap, "body: want a JSON object");
		return -1;
	}
	for (f = (*root)->child; f; f = f->next) {
		if (strcmp(f->string, "csr") == 0 && cJSON_IsString(f)) {
			out->csr = f->valuestring;
		} else if (strcmp(f->string, "identity") == 0 && cJSON_IsString(f)) {
			out->identity = f->valuestring;
		} else if (strcmp(f->string, "ttlSeconds") == 0) {
			int64_t v;
			if (json_get_int(f, 0, INT32_MAX, &v) < 0) {
				snprintf(err, cap, "body: .ttlSeconds: want an integer 0..%d",
					 INT32_MAX);
				return -1;
			}
			out->ttl = v;
		} else if (strcmp(f->string, "csr") == 0 || strcmp(f->string, "identity") == 0) {
			snprintf(err, cap, "body: .%s: want a string", f->string);
			return -1;
		} else {
			snprintf(err, cap,
				 "body: .%.64s: unknown field (want csr, identity, "
				 "ttlSeconds)",
				 f->string);
			return -1;
		}
	}
	if (!out->csr || !out->identity) {
		snprintf(err, cap, "body: .%s is required", out->csr ? "identity" : "csr");
		return -1;
	}
	return 0;
}

static void write_issued(struct admin_response *r, const struct ca_issued *is, const char *clamp)
{
	struct json_writer w;

	r->content_type = "application/json";
	json_writer_init(&w, &r->body, 0);
	json_write_object_begin(&w);
	json_write_key(&w, "certChain");
	json_write_array_begin(&w);
	for (size_t i = 0; i < is->n; i++)
		json_write_string(&w, is->pem[i]);
	json_write_array_end(&w);
	json_kv_str(&w, "serialNumber", is->serial);
	json_kv_time_ms(&w, "notAfter", is->not_after * 1000);
	json_kv_int(&w, "ttlSeconds", is->ttl);
	json_write_key(&w, "warnings");
	json_write_array_begin(&w);
	if (clamp[0])
		json_write_string(&w, clamp);
	json_write_array_end(&w);
	json_write_object_end(&w);
	json_writer_finish(&w);
	buf_append(&r->body, "\n", 1);
}

static void h_certificates(const struct admin_request *req, struct admin_response *r, void *arg)
{
	struct ca_server *ca = arg;
	uint64_t t0 = time_mono_ns();
	const char *why = NULL;
	char node[256];
	bool authed = authenticate(ca, req, node, sizeof(node), &why);
	struct ca_doc *doc = NULL;
	bool allowed;
	struct csr_req cr;
	cJSON *root = NULL;
	struct x509_csr *csr = NULL;
	struct ca_issued is = {0};
	struct errbuf eb;
	char err[512];
	char clamp[160];
	char retry[24];
	char p[NET_ADDR_STRLEN];
	uint64_t retry_ms = 0;
	int rc;

	if (!authed) {
		refuse(ca, r, 401, "unauthenticated", NULL, NULL, req->peer, "%s", why);
		return;
	}
	pthread_mutex_lock(&ca->mu);
	allowed = ca_ratelimit_take(ca->rl, node, time_mono_ms(), &retry_ms);
	pthread_mutex_unlock(&ca->mu);
	if (!allowed) {
		snprintf(retry, sizeof(retry), "%llu",
			 (unsigned long long)((retry_ms + 999) / 1000));
		admin_add_header(r, "retry-after", retry);
		refuse(ca, r, 429, "rate_limited", node, NULL, req->peer,
		       "node %s exceeded %d certificate requests per second (burst %d)", node,
		       ca->rate, ca->burst);
		return;
	}
	if (decode_request(req->body, &root, &cr, err, sizeof(err)) < 0) {
		refuse(ca, r, 400, "bad_request", node, NULL, req->peer, "%s", err);
		goto out;
	}
	if (x509_csr_parse_pem(cr.csr, strlen(cr.csr), &csr, &eb) < 0) {
		refuse(ca, r, 400, "bad_csr", node, cr.identity, req->peer, "csr: %s", eb.msg);
		goto out;
	}
	doc = doc_get(ca);
	rc = ca_authorize(doc ? doc->cfg : NULL, ca->auth->trust_domain, node, cr.identity, &eb);
	if (rc < 0) {
		refuse(ca, r, rc == -E_INVAL ? 400 : 403,
		       rc == -E_INVAL ? "bad_request" : "forbidden", node, cr.identity, req->peer,
		       "%s", eb.msg);
		goto out;
	}
	{
		struct ca_issue_req ir = {.pub = &csr->pub,
					  .identity = cr.identity,
					  .ttl = cr.ttl,
					  .now = time(NULL)};
		rc = ca_issue(ca->auth, &ir, &is, &eb);
	}
	if (rc < 0) {
		refuse(ca, r, rc == -E_DENIED ? 403 : 400, "bad_request", node, cr.identity,
		       req->peer, "%s", eb.msg);
		goto out;
	}
	ca_clamp_describe(&is, cr.ttl, clamp, sizeof(clamp));
	write_issued(r, &is, clamp);
	metrics_counter_inc(ca->m_issued);
	metrics_histogram_observe(ca->m_latency, (double)(time_mono_ns() - t0) / 1e9);
	peer_text(req->peer, p, sizeof(p));
	log_info("ca audit", LF_STR("event", "issued"), LF_STR("node", node),
		 LF_STR("identity", cr.identity), LF_STR("serial", is.serial),
		 LF_I64("not_after", is.not_after), LF_I64("ttl", is.ttl),
		 LF_STR("reason", clamp[0] ? clamp : "authorized"), LF_STR("peer", p));
out:
	doc_put(doc);
	ca_issued_fini(&is);
	x509_csr_free(csr);
	json_free(root);
}

/* ---- GET /v1/roots ------------------------------------------------------------------------ */

static void h_roots(const struct admin_request *req, struct admin_response *r, void *arg)
{
	struct ca_server *ca = arg;
	struct json_writer w;

	(void)req;
	r->content_type = "application/json";
	json_writer_init(&w, &r->body, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "trustDomain", ca->auth->trust_domain);
	json_write_key(&w, "roots");
	json_write_array_begin(&w);
	for (size_t i = 0; i < ca->auth->n_root; i++)
		json_write_string(&w, ca->auth->root_pem[i]);
	json_write_array_end(&w);
	json_write_object_end(&w);
	json_writer_finish(&w);
	buf_append(&r->body, "\n", 1);
}

/* ---- GET /v1/config (+ long-poll) ---------------------------------------------------------- */

static void set_doc_headers(const struct ca_doc *d, struct admin_response *r)
{
	admin_add_header(r, "etag", d->etag);
	admin_add_header(r, WATCH_HDR_LONGPOLL, "1");
}

static void fill_doc(const struct ca_doc *d, struct admin_response *r)
{
	r->status = 200;
	r->content_type = "application/json";
	buf_append(&r->body, buf_rptr(&d->body), buf_len(&d->body));
	set_doc_headers(d, r);
}

static void waiter_unlink(struct waiter *w)
{
	struct ca_loop *cl = w->cl;

	if (w->prev)
		w->prev->next = w->next;
	else
		cl->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	atomic_fetch_sub(&cl->ca->nwaiters, 1);
	metrics_gauge_dec(cl->ca->m_watchers);
	ev_timer_del(cl->loop, &w->t);
}

/* Answers with the current document: 200 when it changed since the wait began, else 304. */
static void waiter_answer(struct waiter *w, bool changed)
{
	struct admin_response r = {.status = 304};
	struct ca_doc *d = doc_get(w->cl->ca);

	buf_init(&r.body, 0);
	if (changed)
		fill_doc(d, &r);
	else
		set_doc_headers(d, &r);
	waiter_unlink(w);
	admin_pending_respond(w->p, &r);
	buf_fini(&r.body);
	doc_put(d);
	free(w);
}

static void on_waiter_timeout(struct ev_loop *loop, struct ev_timer *t)
{
	(void)loop;
	waiter_answer(ev_container_of(t, struct waiter, t), false);
}

static void on_waiter_cancel(struct admin_pending *p, void *arg)
{
	struct waiter *w = arg;

	(void)p;
	waiter_unlink(w);
	free(w);
}

/* The `watch=` value matches the ETag, quoted or not. */
static bool etag_matches(const struct ca_doc *d, const char *v)
{
	size_t n = strlen(d->etag);

	return strcmp(v, d->etag) == 0 ||
	       (strlen(v) == n - 2 && strncmp(v, d->etag + 1, n - 2) == 0);
}

static void h_config(const struct admin_request *req, struct admin_response *r, void *arg)
{
	struct ca_loop *cl = arg;
	struct ca_server *ca = cl->ca;
	const char *why = NULL;
	char node[256];
	char watch[160];
	char tmo[16];
	struct slice inm;
	long timeout_s = LONGPOLL_DEFAULT_S;
	struct ca_doc *d;

	if (!authenticate(ca, req, node, sizeof(node), &why)) {
		refuse(ca, r, 401, "unauthenticated", NULL, NULL, req->peer, "%s", why);
		return;
	}
	d = doc_get(ca);
	if (!d) {
		admin_error(r, 503, "no mesh config loaded yet");
		return;
	}
	if (admin_query_get(req->query, "timeoutSeconds", tmo, sizeof(tmo))) {
		char *end;
		timeout_s = strtol(tmo, &end, 10);
		if (*end || timeout_s < 1 || timeout_s > LONGPOLL_MAX_S) {
			admin_error(r, 400, "timeoutSeconds: want 1..%d", LONGPOLL_MAX_S);
			goto out;
		}
	}
	if (admin_query_get(req->query, "watch", watch, sizeof(watch)) && etag_matches(d, watch)) {
		struct waiter *w = xcalloc(1, sizeof(*w));
		w->cl = cl;
		w->p = admin_defer(req, on_waiter_cancel, w);
		if (!w->p) {
			free(w);
			admin_error(r, 500, "cannot defer the response");
			goto out;
		}
		ev_timer_init(&w->t, on_waiter_timeout);
		ev_timer_add(cl->loop, &w->t, (uint64_t)timeout_s * 1000);
		w->next = cl->waiters;
		if (cl->waiters)
			cl->waiters->prev = w;
		cl->waiters = w;
		atomic_fetch_add(&ca->nwaiters, 1);
		metrics_gauge_inc(ca->m_watchers);
		goto out;
	}
	if (http1_fields_get(&req->msg->headers, "if-none-match", &inm) &&
	    http1_slice_eq(inm, d->etag)) {
		r->status = 304;
		set_doc_headers(d, r);
		goto out;
	}
	fill_doc(d, r);
out:
	doc_put(d);
}

/* On a worker loop: the document changed, answer every waiter of this loop. */
static void wake_waiters(struct ev_loop *loop, void *arg)
{
	struct ca_loop *cl = arg;

	(void)loop;
	while (cl->waiters)
		waiter_answer(cl->waiters, true);
}

/* On the watcher thread: render the new document once, swap it in, wake every loop. */
static void on_config(struct server *srv, void *ctx, struct config *c)
{
	struct ca_server *ca = ctx;
	struct ca_doc *d = xcalloc(1, sizeof(*d));
	struct ca_doc *old;
	struct json_writer w;

	(void)srv;
	atomic_init(&d->ref, 1);
	d->cfg = config_ref(c);
	buf_init(&d->body, 0);
	json_writer_init(&w, &d->body, 2);
	config_dump_mesh_write(c, &w);
	json_writer_finish(&w);
	buf_append(&d->body, "\n", 1);
	snprintf(d->etag, sizeof(d->etag), "\"%s\"", config_etag(c));
	pthread_mutex_lock(&ca->mu);
	old = ca->doc;
	ca->doc = d;
	for (unsigned i = 0; i < ca->nloops; i++)
		ev_loop_post(ca->loops[i]->loop, wake_waiters, ca->loops[i]);
	pthread_mutex_unlock(&ca->mu);
	doc_put(old);
}

/* ---- the serving certificate ------------------------------------------------------------------
 */

/* On a worker loop: serve new connections with the current serving certificate. */
static void adopt_tls(struct ev_loop *loop, void *arg)
{
	struct ca_loop *cl = arg;

	(void)loop;
	pthread_mutex_lock(&cl->ca->mu);
	admin_server_set_tls(cl->https, cl->ca->tls);
	pthread_mutex_unlock(&cl->ca->mu);
}

static int make_tls(struct ca_server *ca, struct errbuf *eb)
{
	struct x509_key *key = NULL;
	struct ca_issued is = {0};
	struct x509_ip ips[16];
	struct x509_chain ch = {0};
	br_x509_certificate certs[X509_MAX_CHAIN];
	struct tls_config *cfg;
	static const char *const alpn[] = {"http/1.1"};
	int rc;

	for (int i = 0; i < ca->ips.n; i++) {
		struct net_ip ip;
		if (i >= (int)ARRAY_LEN(ips) || net_ip_parse(&ip, ca->ips.items[i], eb) < 0) {
			errbuf_prefix(eb, "--ip");
			return -E_INVAL;
		}
		ips[i].len = ip.family == AF_INET ? 4 : 16;
		memcpy(ips[i].a, ip.b, ips[i].len);
	}
	if ((rc = x509_key_generate(&key)) < 0)
		return errbuf_set(eb, E_CRYPTO, "key generation failed");
	{
		struct ca_issue_req req = {.pub = x509_key_public(key),
					   .identity = ca->server_identity,
					   .ttl = SERVER_CERT_TTL,
					   .now = time(NULL),
					   .dns = ca->dns.items,
					   .n_dns = (size_t)ca->dns.n,
					   .ips = ips,
					   .n_ips = (size_t)ca->ips.n};
		rc = ca_issue(ca->auth, &req, &is, eb);
	}
	if (rc < 0)
		goto out;
	{
		struct buf all;
		buf_init(&all, 0);
		for (size_t i = 0; i < is.n; i++)
			buf_append_str(&all, is.pem[i]);
		rc = x509_chain_parse_pem((const char *)buf_rptr(&all), buf_len(&all), &ch, eb);
		buf_fini(&all);
	}
	if (rc < 0)
		goto out;
	/* Clients hold the root: send the leaf and the intermediates only. */
	for (size_t i = 0; i < ch.n; i++)
		certs[i] = (br_x509_certificate){ch.v[i]->der, ch.v[i]->len};
	{
		size_t n = ch.n > 1 && ch.v[ch.n - 1]->ca &&
					   strcmp(ch.v[ch.n - 1]->issuer_text,
						  ch.v[ch.n - 1]->subject_text) == 0
				   ? ch.n - 1
				   : ch.n;
		struct tls_server_opts o = {.chain = certs,
					    .chain_len = n,
					    .key = x509_key_br(key),
					    .alpn = alpn,
					    .alpn_len = 1,
					    .half_duplex = true};
		cfg = tls_config_new_server(&o, eb);
	}
	if (!cfg) {
		rc = -E_CRYPTO;
		goto out;
	}
	pthread_mutex_lock(&ca->mu);
	tls_config_unref(ca->tls);
	ca->tls = cfg;
	snprintf(ca->server_serial, sizeof(ca->server_serial), "%s", is.serial);
	ca->server_not_after = is.not_after;
	/* Each loop switches its server to the new certificate on its own thread. */
	for (unsigned i = 0; i < ca->nloops; i++)
		ev_loop_post(ca->loops[i]->loop, adopt_tls, ca->loops[i]);
	pthread_mutex_unlock(&ca->mu);
	log_info("ca serving certificate issued", LF_STR("identity", ca->server_identity),
		 LF_STR("serial", is.serial), LF_I64("not_after", is.not_after));
out:
	x509_chain_fini(&ch);
	ca_issued_fini(&is);
	x509_key_free(key);
	return rc;
}

static void on_renew(struct ev_loop *loop, struct ev_timer *t)
{
	struct ca_server *ca = ev_container_of(t, struct ca_server, renew);
	struct errbuf eb;

	/* Renew at half-life; on failure keep serving the valid one and retry in a minute. */
	if (make_tls(ca, &eb) < 0) {
		log_error("ca: cannot renew the serving certificate", LF_ERR(eb.msg));
		ev_timer_add(loop, t, 60000);
		return;
	}
	ev_timer_add(loop, t, (uint64_t)SERVER_CERT_TTL * 500);
}

/* ---- wiring ------------------------------------------------------------------------------------
 */

static int register_metrics(struct ca_server *ca, struct errbuf *eb)
{
	static const char *const reason[] = {"reason"};
	static const double lat[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25};
	struct metrics_registry *r = metrics_default();
	struct metrics_family *f;
	struct metrics_def d_issued = {.name = "ambient_ca_certificates_issued_total",
				       .help = "Workload certificates issued.",
				       .type = METRICS_COUNTER};
	struct metrics_def d_ref = {.name = "ambient_ca_certificate_refusals_total",
				    .help = "CA requests refused, by reason.",
				    .type = METRICS_COUNTER,
				    .labels = reason,
				    .nlabels = 1};
	struct metrics_def d_lat = {.name = "ambient_ca_signing_duration_seconds",
				    .help = "Time to authorize and sign a certificate request.",
				    .type = METRICS_HISTOGRAM,
				    .buckets = lat,
				    .nbuckets = ARRAY_LEN(lat)};
	struct metrics_def d_w = {.name = "ambient_ca_config_watchers",
				  .help = "Long-poll GET /v1/config requests waiting for a change.",
				  .type = METRICS_GAUGE};
	int rc;

	if ((rc = metrics_register(r, &d_issued, &f, eb)) < 0)
		return rc;
	ca->m_issued = metrics_counter_with(f, NULL);
	if ((rc = metrics_register(r, &d_ref, &ca->m_refusals, eb)) < 0)
		return rc;
	if ((rc = metrics_register(r, &d_lat, &f, eb)) < 0)
		return rc;
	ca->m_latency = metrics_histogram_with(f, NULL);
	if ((rc = metrics_register(r, &d_w, &f, eb)) < 0)
		return rc;
	ca->m_watchers = metrics_gauge_with(f, NULL);
	return 0;
}

static int ca_check(void *ctx, const struct server_settings *set, struct errbuf *eb)
{
	struct ca_server *ca = ctx;

	(void)set;
	if (!ca->dir || !*ca->dir)
		return errbuf_set(eb, E_INVAL, "--dir is required");
	if (ca->rate < 1 || ca->burst < 1)
		return errbuf_set(eb, E_INVAL, "--rate-limit and --rate-burst must be >= 1");
	return 0;
}

static int ca_start(struct server *srv, void *ctx, struct errbuf *eb)
{
	struct ca_server *ca = ctx;
	const struct server_settings *set = server_settings_get(srv);
	/* --trust-domain overrides only when given; the default comes from the CA itself. */
	const char *td = strcmp(set->trust_domain, "cluster.local") != 0 ? set->trust_domain : NULL;
	int rc;

	ca->srv = srv;
	if ((rc = ca_authority_load(ca->dir, td, time(NULL), &ca->auth, eb)) < 0)
		return rc;
	ca->server_identity = ca->identity ? xstrdup(ca->identity)
					   : xasprintf("spiffe://%s/ns/istio-system/sa/ambient-ca",
						       ca->auth->trust_domain);
	snprintf(ca->tokens_path, sizeof(ca->tokens_path), "%s/%s", ca->dir, CA_TOKENS_FILE);
	if ((rc = ca_tokens_load(ca->tokens_path, &ca->tokens, eb)) < 0)
		return rc;
	ca->rl = ca_ratelimit_new(ca->rate, ca->burst);
	if ((rc = register_metrics(ca, eb)) < 0)
		return rc;
	if ((rc = make_tls(ca, eb)) < 0)
		return rc;
	ev_timer_init(&ca->renew, on_renew);
	ev_timer_add(server_loop(srv), &ca->renew, (uint64_t)SERVER_CERT_TTL * 500);
	log_info("ca serving", LF_STR("listen", ca->listen),
		 LF_STR("trust_domain", ca->auth->trust_domain), LF_STR("dir", ca->dir),
		 LF_U64("tokens", ca->tokens.n), LF_I64("loops", set->workers));
	return 0;
}

/* Each worker loop gets its own HTTPS server on the same address (SO_REUSEPORT). */
static int ca_worker_init(struct server *srv, void *ctx, struct ev_loop *loop, unsigned worker,
			  struct errbuf *eb)
{
	struct ca_server *ca = ctx;
	struct ca_loop *cl = xcalloc(1, sizeof(*cl));
	struct admin_opts ao = {.max_body = CA_MAX_BODY,
				.max_conns = 1024,
				.on_reject = on_reject,
				.reject_arg = ca,
				.reuseport = true};
	int rc;

	(void)srv;
	(void)worker;
	cl->ca = ca;
	cl->loop = loop;
	cl->https = admin_server_new(loop, "ca", &ao, eb);
	if (!cl->https) {
		free(cl);
		return -E_INVAL;
	}
	admin_route(cl->https, "/v1/certificates", ADMIN_POST, h_certificates, ca);
	admin_route(cl->https, "/v1/roots", ADMIN_GET, h_roots, ca);
	admin_route(cl->https, "/v1/config", ADMIN_GET, h_config, cl);
	pthread_mutex_lock(&ca->mu);
	admin_server_set_tls(cl->https, ca->tls);
	pthread_mutex_unlock(&ca->mu);
	rc = admin_listen(cl->https, ca->listen, eb);
	if (rc < 0) {
		/* worker_fini does not run for a worker whose init failed. */
		admin_server_free(cl->https);
		free(cl);
		return rc;
	}
	pthread_mutex_lock(&ca->mu);
	ca->loops[ca->nloops++] = cl;
	pthread_mutex_unlock(&ca->mu);
	return 0;
}

static void ca_worker_fini(struct server *srv, void *ctx, struct ev_loop *loop, unsigned worker)
{
	struct ca_server *ca = ctx;
	struct ca_loop *cl = NULL;

	(void)srv;
	(void)worker;
	pthread_mutex_lock(&ca->mu);
	for (unsigned i = 0; i < ca->nloops; i++) {
		if (ca->loops[i]->loop == loop) {
			cl = ca->loops[i];
			ca->loops[i] = ca->loops[--ca->nloops];
			break;
		}
	}
	pthread_mutex_unlock(&ca->mu);
	if (!cl)
		return;
	admin_server_free(cl->https); /* cancels this loop's waiters */
	free(cl);
}

static void ca_stop(struct server *srv, void *ctx)
{
	struct ca_server *ca = ctx;

	/* The workers and their servers are gone by now. */
	ev_timer_del(server_loop(srv), &ca->renew);
	tls_config_unref(ca->tls);
	ca_ratelimit_free(ca->rl);
	ca_tokens_fini(&ca->tokens);
	doc_put(ca->doc);
	ca->doc = NULL;
	ca_authority_free(ca->auth);
	free(ca->server_identity);
}

static const char *ca_not_ready(struct server *srv, void *ctx)
{
	struct ca_server *ca = ctx;
	bool have;

	(void)srv;
	pthread_mutex_lock(&ca->mu);
	have = ca->doc != NULL;
	pthread_mutex_unlock(&ca->mu);
	return have ? NULL : "mesh config not yet served";
}

static void ca_dump(struct server *srv, void *ctx, struct json_writer *w)
{
	struct ca_server *ca = ctx;
	char serial[2 * X509_MAX_SERIAL + 1];

	(void)srv;
	json_write_key(w, "ca");
	json_write_object_begin(w);
	json_kv_str(w, "trustDomain", ca->auth->trust_domain);
	json_kv_str(w, "dir", ca->dir);
	json_kv_str(w, "listen", ca->listen);
	json_write_key(w, "signingCertificate");
	json_write_object_begin(w);
	x509_cert_serial_hex(ca->auth->signing, serial, sizeof(serial));
	json_kv_str(w, "subject", ca->auth->signing->subject_text);
	json_kv_str(w, "serialNumber", serial);
	json_kv_time_ms(w, "notAfter", ca->auth->signing->not_after * 1000);
	json_write_object_end(w);
	pthread_mutex_lock(&ca->mu);
	json_write_key(w, "servingCertificate");
	json_write_object_begin(w);
	json_kv_str(w, "identity", ca->server_identity);
	json_kv_str(w, "serialNumber", ca->server_serial);
	json_kv_time_ms(w, "notAfter", ca->server_not_after * 1000);
	json_write_object_end(w);
	json_kv_uint(w, "nodeTokens", ca->tokens.n);
	json_kv_uint(w, "httpsLoops", ca->nloops);
	pthread_mutex_unlock(&ca->mu);
	json_kv_uint(w, "roots", ca->auth->n_root);
	json_kv_uint(w, "configWatchers", atomic_load(&ca->nwaiters));
	json_write_object_end(w);
}

int ca_serve_main(int argc, char **argv)
{
	struct ca_server *ca = &g_ca;
	const struct flag flags[] = {
		{"dir", FLAG_STR, &ca->dir, "CA directory (cacerts layout, tokens.json)", "DIR"},
		{"listen", FLAG_STR, &ca->listen, "HTTPS address (0.0.0.0:15012)", "ADDR"},
		{"dns", FLAG_STR_LIST, &ca->dns, "DNS SAN for the serving certificate (repeatable)",
		 "NAME"},
		{"ip", FLAG_STR_LIST, &ca->ips, "IP SAN for the serving certificate (repeatable)",
		 "IP"},
		{"identity", FLAG_STR, &ca->identity,
		 "the CA's own SPIFFE ID (spiffe://TD/ns/istio-system/sa/ambient-ca)", "ID"},
		{"rate-limit", FLAG_INT, &ca->rate, "certificate requests per second per node (10)",
		 "N"},
		{"rate-burst", FLAG_INT, &ca->burst, "burst of certificate requests per node (20)",
		 "N"},
	};
	struct server_component comp = {
		.name = "ca",
		.usage = "ambient ca serve --dir DIR --mesh-config SOURCE [--listen ADDR] [flags]",
		.flags = flags,
		.nflags = ARRAY_LEN(flags),
		.ctx = ca,
		.check = ca_check,
		.start = ca_start,
		.stop = ca_stop,
		.worker_init = ca_worker_init,
		.worker_fini = ca_worker_fini,
		.dump = ca_dump,
		.on_config = on_config,
		.not_ready = ca_not_ready,
	};

	return server_main(&comp, argc, argv);
}
