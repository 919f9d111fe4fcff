/* `ambient waypoint`: the L7 proxy (DESIGN.md §6): config watch and admin from the runtime, the
 * data plane (15008 HBONE, HTTP routing and authorization) from pkg/waypoint, its own certificate
 * from pkg/identity. */
#include "cmd/cmd.h"
#include "cmd/server.h"
#include "pkg/identity/identity.h"
#include "pkg/json/json.h"
#include "pkg/waypoint/waypoint.h"
#include "pkg/watch/watch.h"

#include <string.h>

struct wpc {
	const char *ca_dir, *ca_url;
	const char *workload;
	const char *path_normalization;
	int hbone_port;
	bool reject_escaped_slashes;
	uint64_t pool_idle_ms, idle_ms, stream_idle_ms;
	int outlier_errors;
	uint64_t outlier_ejection_ms;
	int max_request_line, max_request_headers, max_request_body;
	struct l7_norm_opts norm;
	struct identity_mgr *idm;
	struct waypoint *wp;
};

#define WPC_MAX_IDLE_MS (8760ull * 3600 * 1000)

static const char *const norm_names[] = {"NONE", "BASE", "MERGE_SLASHES",
					 "DECODE_AND_MERGE_SLASHES"};

static int wpc_check(void *ctx, const struct server_settings *set, struct errbuf *eb)
{
	struct wpc *z = ctx;
	bool found = false;

	if (z->ca_dir && z->ca_url)
		return errbuf_set(eb, E_INVAL,
				  "waypoint takes one certificate source: --ca-dir DIR, or "
				  "--ca-url URL with --ca-root FILE and --token-file FILE");
	if (z->ca_url && (!set->ca_root || !set->token_file))
		return errbuf_set(eb, E_INVAL, "--ca-url needs --ca-root and --token-file");
	if (z->outlier_errors < 0)
		return errbuf_set(eb, E_INVAL, "--outlier-consecutive-errors must be 0 or more");
	if (z->max_request_line < 64 || z->max_request_headers < 256 || z->max_request_body < 0)
		return errbuf_set(eb, E_INVAL,
				  "--max-request-line must be at least 64, --max-request-headers "
				  "at least 256, --max-request-body 0 (unlimited) or more");
	if (z->hbone_port <= 0 || z->hbone_port > 65535)
		return errbuf_set(eb, E_INVAL, "--hbone-port must be in 1..65535");
	/* A year is far past any useful idle timeout; beyond it loop-time sums could wrap. */
	if (z->idle_ms > WPC_MAX_IDLE_MS || z->stream_idle_ms > WPC_MAX_IDLE_MS)
		return errbuf_set(eb, E_INVAL,
				  "--idle-timeout and --stream-idle-timeout must be at most 8760h "
				  "(0 = never)");
	if (!set->check_config && (!z->workload || !*z->workload))
		return errbuf_set(eb, E_INVAL,
				  "--workload UID is required: the waypoint workload of the mesh "
				  "config that this process is");
	for (size_t i = 0; i < ARRAY_LEN(norm_names); i++) {
		if (strcasecmp(z->path_normalization, norm_names[i]) == 0) {
			z->norm.mode = (enum l7_norm_mode)i;
			found = true;
		}
	}
	if (strcasecmp(z->path_normalization, "DEFAULT") == 0) {
		z->norm.mode = L7_NORM_BASE;
		found = true;
	}
	if (!found)
		return errbuf_set(eb, E_INVAL,
				  "--path-normalization must be DEFAULT, NONE, BASE, MERGE_SLASHES "
				  "or DECODE_AND_MERGE_SLASHES");
	z->norm.reject_escaped_slashes = z->reject_escaped_slashes;
	return 0;
}

static int wpc_start(struct server *srv, void *ctx, struct errbuf *eb)
{
	struct wpc *z = ctx;
	const struct server_settings *set = server_settings_get(srv);
	struct identity_opts io = {
		.ca_dir = z->ca_dir,
		.ca_url = z->ca_url,
		.ca_root = z->ca_url ? set->ca_root : NULL,
		.token_file = z->ca_url ? set->token_file : NULL,
	};
	struct waypoint_opts wo = {
		.workload_uid = z->workload,
		.hbone_port = (uint16_t)z->hbone_port,
		.norm = z->norm,
		.pool_idle_ms = z->pool_idle_ms,
		.outlier_consecutive = (uint32_t)z->outlier_errors,
		.outlier_ejection_ms = z->outlier_ejection_ms,
		.max_request_line = (uint32_t)z->max_request_line,
		.max_request_headers = (uint32_t)z->max_request_headers,
		.max_request_body = (uint64_t)z->max_request_body,
		.idle_ms = z->idle_ms,
		.stream_idle_ms = z->stream_idle_ms,
	};
	struct config *c;

	if (!z->ca_dir && !z->ca_url) {
		log_warn("waypoint: no certificate source, the data plane stays off",
			 LF_STR("hint", "pass --ca-dir DIR or --ca-url URL"));
		return 0;
	}
	z->idm = identity_mgr_new(&io, eb);
	if (!z->idm)
		return -E_INVAL;
	wo.idm = z->idm;
	z->wp = waypoint_new(&wo, eb);
	if (!z->wp)
		return -E_INVAL;
	c = watch_current(server_watch(srv));
	if (c) {
		waypoint_set_config(z->wp, c);
		config_unref(c);
	}
	return 0;
}

static void wpc_stop(struct server *srv, void *ctx)
{
	struct wpc *z = ctx;

	(void)srv;
	waypoint_free(z->wp);
	identity_mgr_free(z->idm);
	z->wp = NULL;
	z->idm = NULL;
}

static void wpc_on_config(struct server *srv, void *ctx, struct config *c)
{
	struct wpc *z = ctx;

	(void)srv;
	if (z->wp)
		waypoint_set_config(z->wp, c);
}

static int wpc_worker_init(struct server *srv, void *ctx, struct ev_loop *loop, unsigned worker,
			   struct errbuf *eb)
{
	struct wpc *z = ctx;

	(void)srv;
	return z->wp ? waypoint_worker_start(z->wp, loop, worker, eb) : 0;
}

static void wpc_worker_fini(struct server *srv, void *ctx, struct ev_loop *loop, unsigned worker)
{
	struct wpc *z = ctx;

	(void)srv;
	if (z->wp)
		waypoint_worker_stop(z->wp, loop, worker);
}

static void wpc_drain(struct server *srv, void *ctx)
{
	struct wpc *z = ctx;

	(void)srv;
	if (z->wp)
		waypoint_drain(z->wp);
}

static size_t wpc_active(struct server *srv, void *ctx)
{
	struct wpc *z = ctx;

	(void)srv;
	return z->wp ? waypoint_active(z->wp) : 0;
}

static const char *wpc_not_ready(struct server *srv, void *ctx)
{
	struct wpc *z = ctx;

	(void)srv;
	return z->wp ? waypoint_not_ready(z->wp)
		     : "data plane off: no certificate source (--ca-dir DIR or --ca-url URL)";
}

static void wpc_dump(struct server *srv, void *ctx, struct json_writer *w)
{
	struct wpc *z = ctx;

	(void)srv;
	if (z->idm) {
		struct identity_status st;
		identity_status_get(z->idm, &st);
		json_write_key(w, "certificates");
		identity_status_write_json(&st, w);
		identity_status_fini(&st);
	}
	if (!z->wp)
		return;
	json_write_key(w, "waypoint");
	waypoint_dump(z->wp, w);
}

int cmd_waypoint(int argc, char **argv)
{
	static struct wpc z = {.hbone_port = 15008,
			       .path_normalization = "DEFAULT",
			       .pool_idle_ms = 5 * 60 * 1000,
			       .idle_ms = 60 * 60 * 1000,
			       .stream_idle_ms = 5 * 60 * 1000,
			       .outlier_errors = 5,
			       .outlier_ejection_ms = 30000,
			       .max_request_line = 8192,
			       .max_request_headers = 65536,
			       .max_request_body = 0};
	static const struct flag flags[] = {
		{"ca-dir", FLAG_STR, &z.ca_dir,
		 "sign the waypoint's certificate locally from this CA directory", "DIR"},
		{"ca-url", FLAG_STR, &z.ca_url, "remote CA (with --ca-root and --token-file)",
		 "URL"},
		{"workload", FLAG_STR, &z.workload,
		 "the waypoint workload (uid) of the mesh config that this process is", "UID"},
		{"hbone-port", FLAG_INT, &z.hbone_port,
		 "HBONE port to listen on and to dial on endpoints (15008)", "PORT"},
		{"path-normalization", FLAG_STR, &z.path_normalization,
		 "DEFAULT (= BASE), NONE, BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES "
		 "(Istio's MeshConfig pathNormalization)",
		 "MODE"},
		{"reject-escaped-slashes", FLAG_BOOL, &z.reject_escaped_slashes,
		 "answer 400 to paths containing %2F or %5C instead of forwarding them unchanged",
		 NULL},
		{"pool-idle-timeout", FLAG_DURATION, &z.pool_idle_ms,
		 "close a pooled upstream HBONE connection idle this long (5m)", "DUR"},
		{"idle-timeout", FLAG_DURATION, &z.idle_ms,
		 "close a client connection (keep-alive, HTTP/2, relayed TCP) with no request and "
		 "no "
		 "byte for this long (1h; 0 = never)",
		 "DUR"},
		{"stream-idle-timeout", FLAG_DURATION, &z.stream_idle_ms,
		 "answer 408 to a request with no byte either way for this long, or reset it once "
		 "its response started (5m; 0 = never)",
		 "DUR"},
		{"outlier-consecutive-errors", FLAG_INT, &z.outlier_errors,
		 "eject an endpoint after this many 5xx / connect failures in a row (5; 0 = never)",
		 "N"},
		{"outlier-ejection-time", FLAG_DURATION, &z.outlier_ejection_ms,
		 "how long an ejected endpoint gets no traffic (30s)", "DUR"},
		{"max-request-line", FLAG_INT, &z.max_request_line,
		 "longest request line in bytes, else 414 (8192)", "BYTES"},
		{"max-request-headers", FLAG_INT, &z.max_request_headers,
		 "largest request header section in bytes, else 431 (65536)", "BYTES"},
		{"max-request-body", FLAG_INT, &z.max_request_body,
		 "largest request body in bytes, else 413 (0 = unlimited)", "BYTES"},
	};
	static const struct server_component comp = {
		.name = "waypoint",
		.flags = flags,
		.nflags = ARRAY_LEN(flags),
		.ctx = &z,
		.check = wpc_check,
		.start = wpc_start,
		.stop = wpc_stop,
		.dump = wpc_dump,
		.on_config = wpc_on_config,
		.worker_init = wpc_worker_init,
		.worker_fini = wpc_worker_fini,
		.not_ready = wpc_not_ready,
		.drain = wpc_drain,
		.active = wpc_active,
	};

	return server_main(&comp, argc, argv);
}
