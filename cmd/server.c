/* Runtime of long-running subcommands: flags, logging, config watch, admin servers, drain. */
#include "cmd/server.h"

#include "pkg/admin/admin.h"
#include "pkg/config/config.h"
#include "pkg/ev/ev.h"
#include "pkg/json/json.h"
#include "pkg/metrics/metrics.h"
#include "pkg/watch/watch.h"
#include "version.h"

#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct server {
	const struct server_component *comp;
	struct server_settings *set;
	struct ev_loop *loop;
	struct ev_workers workers;
	struct watch *watch;
	struct admin_server *admin;
	struct admin_server *metrics;
	struct admin_server *ready;
	struct ev_timer drain_timer;
	uint64_t drain_deadline; /* monotonic ms */
	atomic_bool draining;
	atomic_bool started; /* component start() returned: on_config may run */
	int64_t started_ms;
};

struct ev_loop *server_loop(struct server *srv)
{
	return srv->loop;
}

struct ev_loop *server_worker_loop(struct server *srv, unsigned i)
{
	return ev_workers_loop(&srv->workers, i);
}

unsigned server_worker_count(struct server *srv)
{
	return srv->workers.n;
}

struct watch *server_watch(struct server *srv)
{
	return srv->watch;
}

struct admin_server *server_admin(struct server *srv)
{
	return srv->admin;
}

const struct server_settings *server_settings_get(struct server *srv)
{
	return srv->set;
}

static const struct flag *server_flags(struct server_settings *s,
				       const struct server_component *comp, size_t *n)
{
	static struct flag f[48];
	size_t i = 0;

	f[i++] = (struct flag){"mesh-config", FLAG_STR, &s->mesh_config,
			       "mesh config: file path or http(s):// URL", "SOURCE"};
	f[i++] = (struct flag){"check-config", FLAG_BOOL, &s->check_config,
			       "validate the mesh config, print every error, exit", NULL};
	f[i++] = (struct flag){"node", FLAG_STR, &s->node, "this node's name", "NAME"};
	f[i++] = (struct flag){"admin", FLAG_STR, &s->admin, "admin address (127.0.0.1:15000)",
			       "ADDR"};
	f[i++] = (struct flag){"metrics", FLAG_STR, &s->metrics,
			       "Prometheus metrics address (0.0.0.0:15020)", "ADDR"};
	f[i++] = (struct flag){"ready", FLAG_STR, &s->ready, "readiness address (0.0.0.0:15021)",
			       "ADDR"};
	f[i++] = (struct flag){"workers", FLAG_INT, &s->workers, "worker threads (2)", "N"};
	f[i++] = (struct flag){"log-level", FLAG_STR, &s->log_level,
			       "error|warn|info|debug|trace (info)", "LEVEL"};
	f[i++] =
		(struct flag){"log-format", FLAG_STR, &s->log_format, "text|json (text)", "FORMAT"};
	f[i++] = (struct flag){"drain-timeout", FLAG_DURATION, &s->drain_timeout_ms,
			       "how long to drain on SIGTERM (5s)", "DUR"};
	f[i++] = (struct flag){"poll-interval", FLAG_DURATION, &s->poll_interval_ms,
			       "URL config poll interval without long-poll (5s)", "DUR"};
	f[i++] = (struct flag){"ca-root", FLAG_STR, &s->ca_root,
			       "PEM root for https config URLs (and the CA)", "FILE"};
	f[i++] = (struct flag){"token-file", FLAG_STR, &s->token_file,
			       "bearer token for the CA and config URL", "FILE"};
	f[i++] = (struct flag){"trust-domain", FLAG_STR, &s->trust_domain,
			       "trust domain (cluster.local)", "TD"};
	for (size_t k = 0; k < comp->nflags && i < ARRAY_LEN(f); k++)
		f[i++] = comp->flags[k];
	*n = i;
	return f;
}

/* ---- admin handlers ------------------------------------------------------------------------- */

static void dump_settings(struct json_writer *w, const struct server *srv)
{
	const struct server_settings *s = srv->set;

	json_write_key(w, "settings");
	json_write_object_begin(w);
	json_kv_str(w, "component", srv->comp->name);
	json_kv_str(w, "meshConfig", s->mesh_config);
	json_kv_str(w, "node", s->node);
	json_kv_str(w, "admin", s->admin);
	json_kv_str(w, "metrics", s->metrics);
	json_kv_str(w, "ready", s->ready);
	json_kv_int(w, "workers", s->workers);
	json_kv_str(w, "logLevel", log_level_name(log_get_level()));
	json_kv_str(w, "logFormat", log_get_format() == LOG_FMT_JSON ? "json" : "text");
	json_kv_uint(w, "drainTimeoutMs", s->drain_timeout_ms);
	json_kv_str(w, "trustDomain", s->trust_domain);
	json_kv_str(w, "caRoot", s->ca_root);
	/* The token file's path is not secret; its content is never shown. */
	json_kv_str(w, "tokenFile", s->token_file);
	json_write_object_end(w);
}

static void dump_config(struct json_writer *w, struct server *srv, struct buf *snap)
{
	struct watch_status st;
	struct config *c = watch_current(srv->watch);

	watch_status_get(srv->watch, &st);
	json_write_key(w, "config");
	json_write_object_begin(w);
	json_kv_str(w, "source", st.source);
	json_kv_str(w, "kind", watch_kind_name(st.kind));
	json_kv_uint(w, "version", st.version);
	json_kv_str(w, "etag", st.etag[0] ? st.etag : NULL);
	json_kv_str(w, "httpEtag", st.http_etag[0] ? st.http_etag : NULL);
	json_kv_bool(w, "ok", st.ok);
	json_kv_bool(w, "longPoll", st.longpoll);
	json_kv_uint(w, "loads", st.successes);
	json_kv_uint(w, "unchanged", st.unchanged);
	json_kv_uint(w, "reloadErrors", st.errors);
	json_kv_time_ms(w, "lastAttempt", st.last_attempt_ms);
	json_kv_time_ms(w, "lastSuccess", st.last_success_ms);
	json_kv_time_ms(w, "lastErrorTime", st.last_error_ms);
	json_write_key(w, "lastError");
	if (st.last_error) {
		/* One array element per error line, so each JSON path reads on its own. */
		json_write_array_begin(w);
		for (char *line = st.last_error; *line;) {
			char *nl = strchr(line, '\n');
			size_t len = nl ? (size_t)(nl - line) : strlen(line);
			json_write_stringn(w, line, len);
			line += len + (nl ? 1 : 0);
		}
		json_write_array_end(w);
	} else {
		json_write_null(w);
	}
	json_write_key(w, "snapshot");
	if (c) {
		buf_reset(snap);
		if (config_dump_json(c, snap) == 0) {
			cJSON *j = NULL;
			if (json_parse((const char *)buf_rptr(snap), buf_len(snap), NULL, &j,
				       NULL) == 0) {
				json_write_cjson(w, j);
				json_free(j);
			} else {
				json_write_null(w);
			}
		} else {
			json_write_null(w);
		}
		config_unref(c);
	} else {
		json_write_null(w);
	}
	json_write_object_end(w);
	watch_status_fini(&st);
}

static void h_config_dump(const struct admin_request *req, struct admin_response *r, void *arg)
{
	struct server *srv = arg;
	struct json_writer w;
	struct buf snap;

	(void)req;
	buf_init(&snap, 0);
	json_writer_init(&w, &r->body, 2);
	json_write_object_begin(&w);
	json_write_key(&w, "build");
	json_write_object_begin(&w);
	json_kv_str(&w, "version", AMBIENT_VERSION);
	json_kv_str(&w, "commit", AMBIENT_GIT_COMMIT);
	json_kv_str(&w, "buildType", AMBIENT_BUILD_TYPE);
	json_write_object_end(&w);
	json_kv_time_ms(&w, "startTime", srv->started_ms);
	dump_settings(&w, srv);
	dump_config(&w, srv, &snap);
	if (srv->comp->dump)
		srv->comp->dump(srv, srv->comp->ctx, &w);
	json_write_object_end(&w);
	if (json_writer_finish(&w) < 0)
		admin_error(r, 500, "config dump too large");
	else
		buf_append(&r->body, "\n", 1);
	r->content_type = "application/json";
	buf_fini(&snap);
}

static void h_logging(const struct admin_request *req, struct admin_response *r, void *arg)
{
	char val[32];
	int lvl;

	(void)arg;
	if (req->method == HTTP1_M_POST) {
		if (!admin_query_get(req->query, "level", val, sizeof(val))) {
			admin_error(r, 400, "POST /logging?level=error|warn|info|debug|trace");
			return;
		}
		lvl = log_level_parse(val);
		if (lvl < 0) {
			admin_error(r, 400, "unknown log level '%s' (error|warn|info|debug|trace)",
				    val);
			return;
		}
		log_set_level((enum log_level)lvl);
		log_info("log level changed", LF_STR("level", log_level_name(lvl)));
	}
	admin_printf(r, "level: %s\n", log_level_name(log_get_level()));
}

static void h_metrics(const struct admin_request *req, struct admin_response *r, void *arg)
{
	(void)req;
	(void)arg;
	r->content_type = METRICS_CONTENT_TYPE;
	if (metrics_render(metrics_default(), &r->body) < 0)
		admin_error(r, 500, "metrics output too large");
}

static void h_ready(const struct admin_request *req, struct admin_response *r, void *arg)
{
	struct server *srv = arg;
	struct config *c;

	(void)req;
	if (atomic_load(&srv->draining)) {
		admin_error(r, 503, "not ready: draining");
		return;
	}
	c = watch_current(srv->watch);
	if (!c) {
		admin_error(r, 503, "not ready: no valid mesh config loaded yet");
		return;
	}
	config_unref(c);
	if (srv->comp->not_ready_reason) {
		admin_error(r, 503, "not ready: %s", srv->comp->not_ready_reason);
		return;
	}
	if (srv->comp->not_ready) {
		const char *why = srv->comp->not_ready(srv, srv->comp->ctx);
		if (why) {
			admin_error(r, 503, "not ready: %s", why);
			return;
		}
	}
	admin_printf(r, "ready\n");
}

static void h_live(const struct admin_request *req, struct admin_response *r, void *arg)
{
	(void)req;
	(void)arg;
	admin_printf(r, "live\n");
}

static void start_drain(struct server *srv, const char *why);

static void quit_after(void *arg)
{
	start_drain(arg, "/quitquitquit");
}

static void h_quit(const struct admin_request *req, struct admin_response *r, void *arg)
{
	(void)req;
	admin_printf(r, "draining\n");
	r->after = quit_after;
	r->after_arg = arg;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void on_drain_done(struct ev_loop *loop, struct ev_timer *t)
{
	struct server *srv = ev_container_of(t, struct server, drain_timer);
	size_t n = srv->comp->active ? srv->comp->active(srv, srv->comp->ctx) : 0;

	if (n > 0 && time_mono_ms() < srv->drain_deadline) {
		ev_timer_add(loop, t, 50);
		return;
	}
	if (n > 0)
		log_warn("drain timeout: closing the open connections", LF_U64("open", n));
	else if (srv->comp->active)
		log_info("drained", LF_U64("open", 0));
	ev_loop_stop(loop);
}

static void start_drain(struct server *srv, const char *why)
{
	if (atomic_exchange(&srv->draining, true))
		return;
	log_info("draining", LF_STR("reason", why),
		 LF_U64("drain_timeout_ms", srv->set->drain_timeout_ms));
	/* Readiness now fails so load balancers stop sending; the metrics and readiness ports stay
	 * up until exit. The component stops accepting; its open connections may run until the
	 * drain timeout (on_drain_done polls them). */
	if (srv->comp->drain)
		srv->comp->drain(srv, srv->comp->ctx);
	srv->drain_deadline = time_mono_ms() + srv->set->drain_timeout_ms;
	ev_timer_add(srv->loop, &srv->drain_timer, 0);
}

static void on_signal(struct ev_loop *loop, int signo, void *arg)
{
	(void)loop;
	start_drain(arg, signo == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_config_change(struct config *c, void *arg)
{
	struct server *srv = arg;

	log_info("mesh config applied", LF_STR("source", config_source(c)),
		 LF_U64("version", config_version(c)), LF_STR("etag", config_etag(c)));
	if (srv->comp->on_config && srv->started)
		srv->comp->on_config(srv, srv->comp->ctx, c);
}

/* Scrape-time views of the watch status; `which` picks the field. */
enum watch_metric { WM_ERRORS, WM_SUCCESSES, WM_VERSION };

static double watch_metric(struct watch *w, enum watch_metric which)
{
	struct watch_status st;
	double v;

	watch_status_get(w, &st);
	v = (double)(which == WM_ERRORS	     ? st.errors
		     : which == WM_SUCCESSES ? st.successes
					     : st.version);
	watch_status_fini(&st);
	return v;
}

static double m_reload_errors(void *ctx)
{
	return watch_metric(ctx, WM_ERRORS);
}

static double m_reloads(void *ctx)
{
	return watch_metric(ctx, WM_SUCCESSES);
}

static double m_version(void *ctx)
{
	return watch_metric(ctx, WM_VERSION);
}

static int register_metrics(struct server *srv, struct errbuf *eb)
{
	struct metrics_registry *r = metrics_default();
	struct metrics_family *f;
	static const char *const build_labels[] = {"component", "tag"};
	const char *build_values[] = {srv->comp->name, AMBIENT_VERSION};
	struct metrics_def defs[] = {
		{.name = "ambient_config_reload_errors_total",
		 .help = "Mesh config loads that failed (unreadable, unreachable or invalid).",
		 .type = METRICS_COUNTER,
		 .fn = m_reload_errors,
		 .fn_ctx = srv->watch},
		{.name = "ambient_config_reloads_total",
		 .help = "Mesh config snapshots published.",
		 .type = METRICS_COUNTER,
		 .fn = m_reloads,
		 .fn_ctx = srv->watch},
		{.name = "ambient_config_version",
		 .help = "Version of the mesh config snapshot in use (0 = none).",
		 .type = METRICS_GAUGE,
		 .fn = m_version,
		 .fn_ctx = srv->watch},
	};
	struct metrics_def build = {.name = "istio_build",
				    .help = "Istio component build info.",
				    .type = METRICS_GAUGE,
				    .labels = build_labels,
				    .nlabels = 2};
	int rc;

	for (size_t i = 0; i < ARRAY_LEN(defs); i++) {
		rc = metrics_register(r, &defs[i], &f, eb);
		if (rc < 0)
			return rc;
	}
	rc = metrics_register(r, &build, &f, eb);
	if (rc < 0)
		return rc;
	metrics_gauge_set(metrics_gauge_with(f, build_values), 1);
	return metrics_register_process(r, eb);
}

static int worker_init(struct ev_loop *loop, unsigned worker, void *arg, struct errbuf *eb)
{
	struct server *srv = arg;

	metrics_thread_set_index(ev_thread_index());
	if (srv->comp->worker_init)
		return srv->comp->worker_init(srv, srv->comp->ctx, loop, worker, eb);
	return 0;
}

static void worker_fini(struct ev_loop *loop, unsigned worker, void *arg)
{
	struct server *srv = arg;

	if (srv->comp->worker_fini)
		srv->comp->worker_fini(srv, srv->comp->ctx, loop, worker);
}

static int check_config(struct server *srv)
{
	struct errlist errs = {0};
	struct config *c;
	int rc;

	/* The errors are printed below, once each; the loader's own log lines would repeat them. */
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);

	if (devnull >= 0)
		log_set_fd(devnull);
	rc = watch_load_once(srv->watch, &errs);
	log_set_fd(-1);
	if (devnull >= 0)
		close(devnull);
	if (rc < 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.items[i]);
		fprintf(stderr, "%s: mesh config is invalid (%zu error%s)\n", srv->comp->name,
			errs.n, errs.n == 1 ? "" : "s");
		errlist_fini(&errs);
		return 1;
	}
	errlist_fini(&errs);
	c = watch_current(srv->watch);
	printf("%s: mesh config ok: %s (etag %s)\n", srv->comp->name,
	       c ? config_source(c) : srv->set->mesh_config, c ? config_etag(c) : "-");
	config_unref(c);
	return 0;
}

static int apply_logging(const struct server_settings *s, struct errbuf *eb)
{
	int lvl = log_level_parse(s->log_level);

	if (lvl < 0)
		return errbuf_set(eb, E_INVAL, "--log-level: unknown level '%s'", s->log_level);
	log_set_level((enum log_level)lvl);
	if (strcmp(s->log_format, "json") == 0)
		log_set_format(LOG_FMT_JSON);
	else if (strcmp(s->log_format, "text") == 0)
		log_set_format(LOG_FMT_TEXT);
	else
		return errbuf_set(eb, E_INVAL, "--log-format: want text or json, got '%s'",
				  s->log_format);
	return 0;
}

static int start_admin(struct server *srv, struct errbuf *eb)
{
	struct server_settings *s = srv->set;
	int rc;

	srv->admin = admin_server_new(srv->loop, "admin", NULL, eb);
	srv->metrics = admin_server_new(srv->loop, "metrics", NULL, eb);
	srv->ready = admin_server_new(srv->loop, "readiness", NULL, eb);
	if (!srv->admin || !srv->metrics || !srv->ready)
		return -E_INVAL;
	admin_route(srv->admin, "/config_dump", ADMIN_GET, h_config_dump, srv);
	admin_route(srv->admin, "/logging", ADMIN_GET | ADMIN_POST, h_logging, srv);
	admin_route(srv->admin, "/quitquitquit", ADMIN_POST, h_quit, srv);
	admin_route(srv->admin, "/metrics", ADMIN_GET, h_metrics, srv);
	admin_route(srv->admin, "/stats/prometheus", ADMIN_GET, h_metrics, srv);
	admin_route(srv->admin, "/healthz/ready", ADMIN_GET, h_ready, srv);
	admin_route(srv->admin, "/healthz/live", ADMIN_GET, h_live, srv);
	admin_route(srv->metrics, "/metrics", ADMIN_GET, h_metrics, srv);
	admin_route(srv->metrics, "/stats/prometheus", ADMIN_GET, h_metrics, srv);
	admin_route(srv->ready, "/healthz/ready", ADMIN_GET, h_ready, srv);
	rc = admin_listen(srv->admin, s->admin, eb);
	if (rc == 0)
		rc = admin_listen(srv->metrics, s->metrics, eb);
	if (rc == 0)
		rc = admin_listen(srv->ready, s->ready, eb);
	return rc;
}

static int run(struct server *srv, struct errbuf *eb)
{
	static const int sigs[] = {SIGTERM, SIGINT};
	struct metrics_opts mo = {.nshards = (unsigned)srv->set->workers + 1};
	struct errbuf ceb;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	if ((rc = ev_signals_block(sigs, ARRAY_LEN(sigs))) < 0)
		return errbuf_set(eb, E_IO, "cannot block signals");
	metrics_default_configure(&mo);
	srv->loop = ev_loop_new(eb);
	if (!srv->loop)
		return -E_IO;
	ev_timer_init(&srv->drain_timer, on_drain_done);
	if ((rc = ev_signal_add(srv->loop, SIGTERM, on_signal, srv)) < 0 ||
	    (rc = ev_signal_add(srv->loop, SIGINT, on_signal, srv)) < 0)
		return errbuf_set(eb, E_IO, "cannot watch signals");
	if ((rc = register_metrics(srv, eb)) < 0)
		return rc;
	if ((rc = start_admin(srv, eb)) < 0)
		return rc;
	if (srv->comp->start && (rc = srv->comp->start(srv, srv->comp->ctx, eb)) < 0)
		return rc;
	atomic_store(&srv->started, true);
	if ((rc = watch_start(srv->watch, eb)) < 0)
		return rc;
	rc = ev_workers_start(&srv->workers, (unsigned)srv->set->workers, worker_init, worker_fini,
			      srv, eb);
	if (rc < 0)
		return rc;
	log_info("started", LF_STR("component", srv->comp->name),
		 LF_STR("version", AMBIENT_VERSION), LF_STR("admin", srv->set->admin),
		 LF_STR("metrics", srv->set->metrics), LF_STR("ready", srv->set->ready),
		 LF_STR("mesh_config", srv->set->mesh_config),
		 LF_I64("workers", srv->set->workers));
	if (srv->comp->not_ready_reason)
		log_warn("not ready", LF_STR("component", srv->comp->name),
			 LF_STR("reason", srv->comp->not_ready_reason));
	rc = ev_loop_run(srv->loop);
	log_info("stopping", LF_STR("component", srv->comp->name));
	watch_stop(srv->watch);
	ev_workers_stop(&srv->workers); /* workers' fini hooks run before the component stops */
	if (srv->comp->stop && atomic_load(&srv->started))
		srv->comp->stop(srv, srv->comp->ctx);
	(void)ceb;
	return rc < 0 ? errbuf_set(eb, E_IO, "event loop failed") : 0;
}

int server_main(const struct server_component *comp, int argc, char **argv)
{
	struct server_settings set = {
		.admin = "127.0.0.1:15000",
		.metrics = "0.0.0.0:15020",
		.ready = "0.0.0.0:15021",
		.log_level = "info",
		.log_format = "text",
		.trust_domain = "cluster.local",
		.workers = 2,
		.drain_timeout_ms = 5000,
		.poll_interval_ms = 5000,
	};
	struct server srv = {.comp = comp, .set = &set, .started_ms = time_real_ms()};
	struct watch_opts wo = {0};
	struct errbuf eb = {0};
	const char *pos[1];
	char usage[128];
	int npos;
	bool help;
	size_t nflags;
	const struct flag *flags = server_flags(&set, comp, &nflags);
	int rc;

	if (comp->usage)
		snprintf(usage, sizeof(usage), "%s", comp->usage);
	else
		snprintf(usage, sizeof(usage), "ambient %s --mesh-config SOURCE [flags]",
			 comp->name);
	if (flags_parse(flags, nflags, argc, argv, pos, 0, &npos, &help, &eb) < 0) {
		fprintf(stderr, "%s: %s\n", comp->name, eb.msg);
		return 2;
	}
	if (help) {
		flags_usage(stdout, usage, flags, nflags);
		return 0;
	}
	if (apply_logging(&set, &eb) < 0) {
		fprintf(stderr, "%s: %s\n", comp->name, eb.msg);
		return 2;
	}
	if (set.workers < 1 || set.workers >= EV_MAX_THREADS) {
		fprintf(stderr, "%s: --workers must be 1..%d\n", comp->name, EV_MAX_THREADS - 1);
		return 2;
	}
	if (!set.mesh_config) {
		fprintf(stderr, "%s: --mesh-config (or AMBIENT_MESH_CONFIG) is required\n",
			comp->name);
		return 2;
	}
	wo.source = set.mesh_config;
	wo.ca_root = set.ca_root;
	wo.token_file = set.token_file;
	wo.poll_ms = (uint32_t)MIN(set.poll_interval_ms, (uint64_t)UINT32_MAX);
	if (comp->check && comp->check(comp->ctx, &set, &eb) < 0) {
		fprintf(stderr, "%s: %s\n", comp->name, eb.msg);
		return 2;
	}
	wo.on_change = on_config_change;
	wo.arg = &srv;
	srv.watch = watch_new(&wo, &eb);
	if (!srv.watch) {
		fprintf(stderr, "%s: %s\n", comp->name, eb.msg);
		return 2;
	}
	if (set.check_config) {
		rc = check_config(&srv);
		watch_free(srv.watch);
		return rc;
	}
	rc = run(&srv, &eb);
	if (rc < 0)
		log_error("fatal", LF_STR("component", comp->name), LF_ERR(eb.msg));
	ev_workers_stop(&srv.workers);
	watch_stop(srv.watch);
	admin_server_free(srv.admin);
	admin_server_free(srv.metrics);
	admin_server_free(srv.ready);
	watch_free(srv.watch);
	ev_loop_free(srv.loop);
	return rc < 0 ? 1 : 0;
}
