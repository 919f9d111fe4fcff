/* The waypoint's lifecycle: config snapshots, per-worker 15008 listeners, readiness, drain, and the
 * request telemetry (Istio's HTTP metrics with reporter="waypoint", one access-log line per
 * request). */
#include "pkg/waypoint/waypoint_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Envoy's default histogram buckets (reference/waypoint-ca-ctl.md §4.4). */
static const double envoy_buckets[] = {0.5,   1,      5,      10,      25,     50,    100,
				       250,   500,    1000,   2500,    5000,   10000, 30000,
				       60000, 300000, 600000, 1800000, 3600000};

/* Istio's label set for HTTP metrics, in istio_stats order. */
static const char *const http_labels[] = {
	"reporter",
	"source_workload",
	"source_workload_namespace",
	"source_principal",
	"source_app",
	"source_version",
	"source_canonical_service",
	"source_canonical_revision",
	"source_cluster",
	"destination_workload",
	"destination_workload_namespace",
	"destination_principal",
	"destination_app",
	"destination_version",
	"destination_service",
	"destination_service_name",
	"destination_service_namespace",
	"destination_canonical_service",
	"destination_canonical_revision",
	"destination_cluster",
	"request_protocol",
	"response_code",
	"grpc_response_status",
	"response_flags",
	"connection_security_policy",
};
#define N_HTTP_LABELS ARRAY_LEN(http_labels)
/* TCP metrics: the same without response_code and grpc_response_status. */
static const char *const tcp_labels[] = {
	"reporter",
	"source_workload",
	"source_workload_namespace",
	"source_principal",
	"source_app",
	"source_version",
	"source_canonical_service",
	"source_canonical_revision",
	"source_cluster",
	"destination_workload",
	"destination_workload_namespace",
	"destination_principal",
	"destination_app",
	"destination_version",
	"destination_service",
	"destination_service_name",
	"destination_service_namespace",
	"destination_canonical_service",
	"destination_canonical_revision",
	"destination_cluster",
	"request_protocol",
	"response_flags",
	"connection_security_policy",
};
#define N_TCP_LABELS ARRAY_LEN(tcp_labels)

static int reg_as(struct waypoint *w, const char *name, const char *help, enum metrics_type type,
		  bool tcp, struct metrics_family **out, struct errbuf *eb)
{
	struct metrics_def d = {
		.name = name,
		.help = help,
		.type = type,
		.labels = tcp ? tcp_labels : http_labels,
		.nlabels = tcp ? N_TCP_LABELS : N_HTTP_LABELS,
		.buckets = type == METRICS_HISTOGRAM ? envoy_buckets : NULL,
		.nbuckets = type == METRICS_HISTOGRAM ? ARRAY_LEN(envoy_buckets) : 0,
	};
	return metrics_register(w->o.metrics, &d, out, eb);
}

static int reg(struct waypoint *w, const char *name, const char *help, enum metrics_type type,
	       struct metrics_family **out, struct errbuf *eb)
{
	return reg_as(w, name, help, type, false, out, eb);
}

struct waypoint *waypoint_new(const struct waypoint_opts *o, struct errbuf *eb)
{
	struct waypoint *w;
	struct metrics_family *acc = NULL;
	struct metrics_def d = {.name = "ambient_waypoint_tunnels_accepted_total",
				.help = "HBONE connections accepted by the waypoint.",
				.type = METRICS_COUNTER};

	if (!o->idm || !o->workload_uid || !*o->workload_uid) {
		errbuf_set(eb, E_INVAL,
			   "waypoint: an identity manager and --workload are required");
		return NULL;
	}
	w = xcalloc(1, sizeof(*w));
	w->o = *o;
	w->uid = xstrdup(o->workload_uid);
	w->o.workload_uid = w->uid;
	if (!w->o.metrics)
		w->o.metrics = metrics_default();
	if (!w->o.hbone_port)
		w->o.hbone_port = 15008;
	http1_limits_default(&w->lim);
	if (o->max_request_line)
		w->lim.max_line = o->max_request_line;
	if (o->max_request_headers)
		w->lim.max_head = o->max_request_headers;
	w->lim.max_body = o->max_request_body;
	pthread_mutex_init(&w->mu, NULL);
	pthread_mutex_init(&w->omu, NULL);
	if (reg(w, "istio_requests_total", "Requests handled by the waypoint.", METRICS_COUNTER,
		&w->m_total, eb) < 0 ||
	    reg(w, "istio_request_duration_milliseconds", "Request duration in milliseconds.",
		METRICS_HISTOGRAM, &w->m_dur, eb) < 0 ||
	    reg(w, "istio_request_bytes", "Request sizes in bytes (headers and body).",
		METRICS_HISTOGRAM, &w->m_req_bytes, eb) < 0 ||
	    reg(w, "istio_response_bytes", "Response sizes in bytes (headers and body).",
		METRICS_HISTOGRAM, &w->m_resp_bytes, eb) < 0 ||
	    reg_as(w, "istio_tcp_connections_opened_total",
		   "TCP connections (appProtocol TCP) opened through the waypoint.",
		   METRICS_COUNTER, true, &w->m_tcp_opened, eb) < 0 ||
	    reg_as(w, "istio_tcp_connections_closed_total",
		   "TCP connections (appProtocol TCP) closed through the waypoint.",
		   METRICS_COUNTER, true, &w->m_tcp_closed, eb) < 0 ||
	    reg_as(w, "istio_tcp_sent_bytes_total",
		   "Bytes sent to the client on TCP connections (the destination's response).",
		   METRICS_COUNTER, true, &w->m_tcp_sent, eb) < 0 ||
	    reg_as(w, "istio_tcp_received_bytes_total",
		   "Bytes received from the client on TCP connections (the request).",
		   METRICS_COUNTER, true, &w->m_tcp_received, eb) < 0 ||
	    metrics_register(w->o.metrics, &d, &acc, eb) < 0) {
		waypoint_free(w);
		return NULL;
	}
	w->m_accepted = metrics_counter_with(acc, NULL);
	return w;
}

void waypoint_free(struct waypoint *w)
{
	if (!w)
		return;
	wp_snap_put(w->snap);
	pthread_mutex_destroy(&w->mu);
	pthread_mutex_destroy(&w->omu);
	for (size_t i = 0; i < w->n_outliers; i++)
		free(w->outliers[i].uid);
	free(w->outliers);
	free(w->uid);
	free(w);
}

/* ---- snapshots ------------------------------------------------------------------------------- */

struct wp_snap *wp_snap_get(struct waypoint *w)
{
	struct wp_snap *s;

	pthread_mutex_lock(&w->mu);
	s = w->snap;
	if (s)
		atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&w->mu);
	return s;
}

void wp_snap_put(struct wp_snap *s)
{
	if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	l7_table_free(s->t);
	config_unref(s->c);
	free(s);
}

void waypoint_set_config(struct waypoint *w, struct config *c)
{
	struct wp_snap *s = xcalloc(1, sizeof(*s)), *old;
	struct errbuf eb = {0};

	atomic_init(&s->refs, 1);
	s->c = config_ref(c);
	s->self = config_workload_by_uid(c, w->uid);
	s->t = l7_table_new(c, &eb);
	if (!s->t) {
		log_error("waypoint: cannot use the new config", LF_ERR(eb.msg));
		wp_snap_put(s);
		return;
	}
	if (!s->self)
		log_warn("waypoint: this workload is not in the mesh config",
			 LF_STR("workload", w->uid));
	else if (s->self->identity)
		identity_prefetch(w->o.idm, s->self->identity, NULL);
	pthread_mutex_lock(&w->mu);
	old = w->snap;
	w->snap = s;
	pthread_mutex_unlock(&w->mu);
	wp_snap_put(old);
}

uint64_t wp_rand(struct wp_worker *wk)
{
	/* xorshift64*: endpoint and backend choice need spread, not secrecy. */
	uint64_t x = wk->rnd;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	wk->rnd = x;
	return x * 0x2545F4914F6CDD1Dull;
}

uint32_t wp_inflight_get(const struct wp_worker *wk, const char *uid)
{
	for (size_t i = 0; i < wk->n_inflight; i++)
		if (strcmp(wk->inflight[i].uid, uid) == 0)
			return wk->inflight[i].n;
	return 0;
}

void wp_inflight_add(struct wp_worker *wk, const char *uid, int delta)
{
	size_t i;

	for (i = 0; i < wk->n_inflight; i++)
		if (strcmp(wk->inflight[i].uid, uid) == 0)
			break;
	if (i == wk->n_inflight) {
		if (delta <= 0)
			return;
		if (wk->n_inflight == wk->cap_inflight) {
			wk->cap_inflight = wk->cap_inflight ? 2 * wk->cap_inflight : 16;
			wk->inflight =
				xrealloc(wk->inflight, wk->cap_inflight * sizeof(*wk->inflight));
		}
		wk->inflight[wk->n_inflight++] = (struct wp_inflight){xstrdup(uid), 0};
	}
	if (delta < 0 && wk->inflight[i].n <= (uint32_t)-delta) {
		free(wk->inflight[i].uid);
		wk->inflight[i] = wk->inflight[--wk->n_inflight];
		return;
	}
	wk->inflight[i].n = (uint32_t)((int64_t)wk->inflight[i].n + delta);
}

/* ---- outlier ejection -------------------------------------------------------------------------
 * Envoy's consecutive_5xx detector, process-wide: an endpoint (workload uid) with
 * o.outlier_consecutive failed tries in a row is skipped by the endpoint choice for
 * o.outlier_ejection_ms; then it gets traffic again, and another streak ejects it again. Only
 * endpoints with a failure streak are tracked, so the healthy fast path takes no lock. */

static struct wp_outlier *outlier_find(struct waypoint *w, const char *uid)
{
	for (size_t i = 0; i < w->n_outliers; i++)
		if (strcmp(w->outliers[i].uid, uid) == 0)
			return &w->outliers[i];
	return NULL;
}

bool wp_outlier_ejected(struct waypoint *w, const char *uid, uint64_t now_ms)
{
	const struct wp_outlier *o;
	bool ejected;

	if (!w->o.outlier_consecutive || !atomic_load(&w->n_tracked))
		return false;
	pthread_mutex_lock(&w->omu);
	o = outlier_find(w, uid);
	ejected = o && o->ejected_until_ms > now_ms;
	pthread_mutex_unlock(&w->omu);
	return ejected;
}

void wp_outlier_report(struct waypoint *w, const char *uid, bool failure, uint64_t now_ms)
{
	struct wp_outlier *o;
	uint64_t eject_ms = w->o.outlier_ejection_ms ? w->o.outlier_ejection_ms : 30000;

	if (!w->o.outlier_consecutive || !uid || (!failure && !atomic_load(&w->n_tracked)))
		return;
	pthread_mutex_lock(&w->omu);
	o = outlier_find(w, uid);
	if (!failure) {
		if (o && o->ejected_until_ms <= now_ms) { /* a success ends the streak */
			free(o->uid);
			*o = w->outliers[--w->n_outliers];
			atomic_store(&w->n_tracked, w->n_outliers);
		}
		pthread_mutex_unlock(&w->omu);
		return;
	}
	if (!o) {
		if (w->n_outliers == w->cap_outliers) {
			w->cap_outliers = w->cap_outliers ? 2 * w->cap_outliers : 8;
			w->outliers = xrealloc(w->outliers, w->cap_outliers * sizeof(*w->outliers));
		}
		o = &w->outliers[w->n_outliers++];
		*o = (struct wp_outlier){xstrdup(uid), 0, 0};
		atomic_store(&w->n_tracked, w->n_outliers);
	}
	if (++o->consecutive >= w->o.outlier_consecutive && o->ejected_until_ms <= now_ms) {
		o->ejected_until_ms = now_ms + eject_ms;
		o->consecutive = 0;
		log_warn("waypoint: endpoint ejected", LF_STR("workload", uid),
			 LF_U64("failures", w->o.outlier_consecutive), LF_U64("for_ms", eject_ms));
	}
	pthread_mutex_unlock(&w->omu);
}

/* ---- per-worker object recycling --------------------------------------------------------------
 */

static size_t obj_size(enum wp_obj k)
{
	switch (k) {
	case WP_OBJ_XCHG: return sizeof(struct xchg);
	case WP_OBJ_DSTR: return sizeof(struct dstr);
	case WP_OBJ_H2REQ: return sizeof(struct h2_req);
	case WP_OBJ_N: break;
	}
	return 0;
}

void *wp_obj_new(struct wp_worker *wk, enum wp_obj k)
{
	void *p;

	if (!wk || !wk->obj_free[k])
		return xcalloc(1, obj_size(k));
	p = wk->obj_free[k];
	memcpy(&wk->obj_free[k], p, sizeof(void *));
	wk->n_obj_free[k]--;
	memset(p, 0, obj_size(k));
	return p;
}

void wp_obj_free(struct wp_worker *wk, enum wp_obj k, void *p)
{
	if (!p)
		return;
	if (!wk || wk->stopping || wk->n_obj_free[k] >= WP_OBJ_FREE_MAX) {
		free(p);
		return;
	}
	memcpy(p, &wk->obj_free[k], sizeof(void *));
	wk->obj_free[k] = p;
	wk->n_obj_free[k]++;
}

void wp_buf_init(struct wp_worker *wk, struct buf *b, size_t max)
{
	buf_init(b, max);
	if (wk && wk->n_spare && wk->spare[wk->n_spare - 1].cap <= b->max) {
		struct wp_spare *sp = &wk->spare[--wk->n_spare];
		b->data = sp->data;
		b->cap = sp->cap;
	}
}

void wp_buf_fini(struct wp_worker *wk, struct buf *b)
{
	if (wk && !wk->stopping && b->data && b->cap <= WP_SPARE_CAP && wk->n_spare < WP_SPARES) {
		wk->spare[wk->n_spare++] = (struct wp_spare){b->data, b->cap};
		b->data = NULL;
		b->cap = b->rd = b->wr = 0;
		return;
	}
	buf_fini(b);
}

static void obj_fini(struct wp_worker *wk)
{
	while (wk->n_spare)
		free(wk->spare[--wk->n_spare].data);
	for (int k = 0; k < WP_OBJ_N; k++)
		while (wk->obj_free[k]) {
			void *p = wk->obj_free[k];
			memcpy(&wk->obj_free[k], p, sizeof(void *));
			free(p);
		}
}

/* ---- workers --------------------------------------------------------------------------------- */

int waypoint_worker_start(struct waypoint *w, struct ev_loop *loop, unsigned worker,
			  struct errbuf *eb)
{
	struct wp_worker *wk;
	struct net_addr a;
	struct net_listen_opts lo = {.reuseport = true};

	if (worker >= WP_MAX_WORKERS)
		return errbuf_set(eb, E_INVAL, "waypoint: too many workers");
	wk = xcalloc(1, sizeof(*wk));
	wk->w = w;
	wk->loop = loop;
	wk->idx = worker;
	rand_bytes(&wk->rnd, sizeof(wk->rnd));
	wk->rnd |= 1;
	wp_pool_init(wk);
	if (net_addr_parse(&a, "[::]:0", eb) < 0) {
		free(wk);
		return -E_INVAL;
	}
	net_addr_set_port(&a, w->o.hbone_port);
	if (net_listener_start(&wk->lsn, loop, &a, &lo, wp_on_accept, wk, eb) < 0) {
		free(wk);
		return -E_IO;
	}
	wk->lsn_on = true;
	w->workers[worker] = wk;
	atomic_fetch_add(&w->workers_up, 1);
	return 0;
}

void waypoint_worker_stop(struct waypoint *w, struct ev_loop *loop, unsigned worker)
{
	struct wp_worker *wk = worker < WP_MAX_WORKERS ? w->workers[worker] : NULL;

	(void)loop;
	if (!wk)
		return;
	if (wk->lsn_on)
		net_listener_stop(&wk->lsn);
	wk->stopping = true;
	wp_pool_fini(wk);
	wtun_close_all(wk);
	w->workers[worker] = NULL;
	for (size_t i = 0; i < wk->n_inflight; i++)
		free(wk->inflight[i].uid);
	free(wk->inflight);
	free(wk->rec_cache);
	obj_fini(wk);
	free(wk);
}

static void stop_listening(struct ev_loop *loop, void *arg)
{
	struct wp_worker *wk = arg;

	(void)loop;
	if (wk->lsn_on) {
		net_listener_stop(&wk->lsn);
		wk->lsn_on = false;
	}
	wp_pool_close_all(wk); /* draining: no upstream connection is kept idle */
}

void waypoint_drain(struct waypoint *w)
{
	atomic_store(&w->draining, true);
	for (unsigned i = 0; i < WP_MAX_WORKERS; i++)
		if (w->workers[i])
			ev_loop_post(w->workers[i]->loop, stop_listening, w->workers[i]);
}

size_t waypoint_active(struct waypoint *w)
{
	return atomic_load(&w->active);
}

const char *waypoint_not_ready(struct waypoint *w)
{
	struct wp_snap *s = wp_snap_get(w);
	const char *why = NULL;

	if (!s)
		why = "no mesh config yet";
	else if (!s->self)
		why = "this waypoint (--workload) is not in the mesh config";
	else if (atomic_load(&w->workers_up) == 0)
		why = "listeners not up";
	wp_snap_put(s);
	return why;
}

void waypoint_dump(struct waypoint *w, struct json_writer *jw)
{
	struct wp_snap *s = wp_snap_get(w);

	json_write_object_begin(jw);
	json_write_key(jw, "workload");
	json_write_string(jw, w->uid);
	json_write_key(jw, "identity");
	json_write_string(jw, s && s->self ? s->self->identity : "");
	json_write_key(jw, "hbonePort");
	json_write_uint(jw, w->o.hbone_port);
	json_write_key(jw, "activeStreams");
	json_write_uint(jw, atomic_load(&w->active));
	json_write_object_end(jw);
	wp_snap_put(s);
}

/* ---- telemetry ------------------------------------------------------------------------------- */

static const char *or_unknown(const char *s)
{
	return s && *s ? s : "unknown";
}

static const char *wl_name(const struct config_workload *w)
{
	return w ? (w->workload_name[0] ? w->workload_name : w->name) : NULL;
}

static const char *strip_spiffe(const char *id)
{
	if (id && strncmp(id, "spiffe://", 9) == 0)
		return id + 9;
	return id;
}

static void labels(const struct wp_record *r, const char **v, char *code, size_t cap)
{
	const struct config_workload *s = r->src_wl, *d = r->dst_wl;

	if (cap > 20 && r->status >= 0)
		code[str_u64(code, (uint64_t)r->status)] = '\0';
	else
		snprintf(code, cap, "%d", r->status);
	v[0] = "waypoint";
	v[1] = or_unknown(wl_name(s));
	v[2] = or_unknown(s ? s->namespace : NULL);
	v[3] = or_unknown(strip_spiffe(r->src_id));
	v[4] = or_unknown(s ? s->canonical_name : NULL);
	v[5] = or_unknown(s ? s->canonical_revision : NULL);
	v[6] = or_unknown(s ? s->canonical_name : NULL);
	v[7] = or_unknown(s ? s->canonical_revision : NULL);
	v[8] = or_unknown(s ? s->cluster_id : NULL);
	v[9] = or_unknown(wl_name(d));
	v[10] = or_unknown(d ? d->namespace : NULL);
	v[11] = or_unknown(strip_spiffe(r->dst_id));
	v[12] = or_unknown(d ? d->canonical_name : NULL);
	v[13] = or_unknown(d ? d->canonical_revision : NULL);
	v[14] = or_unknown(r->dst_svc ? r->dst_svc->hostname : NULL);
	v[15] = or_unknown(r->dst_svc ? r->dst_svc->name : NULL);
	v[16] = or_unknown(r->dst_svc ? r->dst_svc->namespace : NULL);
	v[17] = or_unknown(d ? d->canonical_name : NULL);
	v[18] = or_unknown(d ? d->canonical_revision : NULL);
	v[19] = or_unknown(d ? d->cluster_id : NULL);
	v[20] = "http";
	v[21] = code;
	v[22] = "";
	v[23] = r->flags && *r->flags ? r->flags : "-";
	v[24] = "mutual_tls";
}

/* The HTTP label values without response_code (21) and grpc_response_status (22). */
static void tcp_values(const char *const *v, const char **t)
{
	for (size_t i = 0; i < 21; i++)
		t[i] = v[i];
	t[20] = "tcp";
	t[21] = v[23];
	t[22] = v[24];
}

void wp_record_tcp_open(struct waypoint *w, const struct wp_record *r,
			struct metrics_series **received, struct metrics_series **sent)
{
	const char *v[N_HTTP_LABELS], *t[N_TCP_LABELS];
	char code[16];

	labels(r, v, code, sizeof(code));
	tcp_values(v, t);
	metrics_counter_inc(metrics_counter_with(w->m_tcp_opened, t));
	*received = metrics_counter_with(w->m_tcp_received, t);
	*sent = metrics_counter_with(w->m_tcp_sent, t);
}

/* The four request series of one label tuple, cached per worker: most requests repeat a handful
 * of tuples, and a lookup in the registry builds, validates and hashes a key per family. The key
 * here is the values joined by 0xff (as the registry's), compared in full; series live as long as
 * their registry. */
struct wp_rec_cache {
	uint64_t hash;
	size_t len;
	struct metrics_series *total, *dur, *req_bytes, *resp_bytes;
	char key[WP_REC_KEY_MAX];
};
static void http_series(struct waypoint *w, struct wp_worker *wk, const char *const *v,
			struct metrics_series **out)
{
	char key[WP_REC_KEY_MAX];
	size_t n = 0;
	uint64_t h = 1469598103934665603ull;
	struct wp_rec_cache *e = NULL;

	for (size_t i = 0; i < N_HTTP_LABELS; i++) {
		size_t vn = strlen(v[i]);
		/* 0xff inside a value would make two tuples join alike: no caching then. */
		if (n + vn + 1 > sizeof(key) || memchr(v[i], 0xff, vn)) {
			n = 0;
			break;
		}
		copy_short(key + n, v[i], vn);
		n += vn;
		key[n++] = '\xff';
	}
	if (n) {
		for (size_t i = 0; i < n; i++)
			h = (h ^ (uint8_t)key[i]) * 1099511628211ull;
		if (wk && !wk->rec_cache)
			wk->rec_cache = xcalloc(WP_REC_CACHE_SLOTS, sizeof(*wk->rec_cache));
		e = wk ? &wk->rec_cache[h % WP_REC_CACHE_SLOTS] : NULL;
		if (e && e->len && e->hash == h && e->len == n && !memcmp(e->key, key, n)) {
			out[0] = e->total;
			out[1] = e->dur;
			out[2] = e->req_bytes;
			out[3] = e->resp_bytes;
			return;
		}
	}
	out[0] = metrics_counter_with(w->m_total, v);
	out[1] = metrics_histogram_with(w->m_dur, v);
	out[2] = metrics_histogram_with(w->m_req_bytes, v);
	out[3] = metrics_histogram_with(w->m_resp_bytes, v);
	if (e) {
		e->hash = h;
		e->len = n;
		e->total = out[0];
		e->dur = out[1];
		e->req_bytes = out[2];
		e->resp_bytes = out[3];
		memcpy(e->key, key, n);
	}
}

void wp_record(struct waypoint *w, struct wp_worker *wk, const struct wp_record *r)
{
	const struct config_workload *s = r->src_wl;
	char code[16], dur[32], rt[300], pol[300];
	const char *v[N_HTTP_LABELS], *t[N_TCP_LABELS];
	enum log_level lvl;

	labels(r, v, code, sizeof(code));
	if (r->tcp) {
		tcp_values(v, t);
		if (!r->tcp_opened)
			metrics_counter_inc(metrics_counter_with(w->m_tcp_opened, t));
		metrics_counter_inc(metrics_counter_with(w->m_tcp_closed, t));
		if (r->resp_bytes > r->resp_counted)
			metrics_counter_add(metrics_counter_with(w->m_tcp_sent, t),
					    r->resp_bytes - r->resp_counted);
		if (r->req_bytes > r->req_counted)
			metrics_counter_add(metrics_counter_with(w->m_tcp_received, t),
					    r->req_bytes - r->req_counted);
	} else { /* a relayed TCP connection is only logged (docs/waypoint.md) */
		struct metrics_series *m[4];
		http_series(w, wk, v, m);
		metrics_counter_inc(m[0]);
		metrics_histogram_observe(m[1], (double)r->duration_ms);
		metrics_histogram_observe(m[2], (double)r->req_bytes);
		metrics_histogram_observe(m[3], (double)r->resp_bytes);
	}
	if (r->tcp)
		lvl = strcmp(v[23], "-") ? LOG_WARN : LOG_INFO;
	else
		lvl = r->status >= 500 || r->status == 0 ? LOG_WARN : LOG_INFO;
	if (!log_enabled(lvl))
		return;

	snprintf(dur, sizeof(dur), "%llums", (unsigned long long)r->duration_ms);
	if (r->has_route)
		snprintf(rt, sizeof(rt), "%s#%zu", r->route, r->route_rule);
	else
		rt[0] = '\0';
	if (r->has_policy)
		snprintf(pol, sizeof(pol), "%s#%zu", r->policy, r->policy_rule);
	else
		pol[0] = '\0';
	const struct log_field fl[] = {
		LF_STR("method", r->method ? r->method : ""),
		LF_STR("authority", r->authority ? r->authority : ""),
		LF_STR("path", r->path ? r->path : ""),
		LF_I64("status", r->status),
		LF_STR("flags", v[23]),
		LF_STR("upstream", r->upstream ? r->upstream : ""),
		LF_STR("duration", dur),
		LF_U64("bytes_received", r->req_bytes),
		LF_U64("bytes_sent", r->resp_bytes),
		LF_STR("src.identity", r->src_id ? r->src_id : ""),
		LF_STR("src.workload", s ? s->name : ""),
		LF_STR("dst.identity", r->dst_id ? r->dst_id : ""),
		LF_STR("dst.service", r->dst_svc ? r->dst_svc->hostname : ""),
		LF_STR("route", rt),
		LF_U64("attempts", r->attempts),
		LF_STR("policy", pol),
		LF_STR("request_id", r->request_id ? r->request_id : ""),
		LF_STR("reason", r->reason ? r->reason : ""),
	};
	log_write(lvl, r->tcp ? "connection complete" : "request complete", fl, ARRAY_LEN(fl));
}
