/* `ambient ztunnel`: the per-node L4 proxy: config watch and admin from the runtime, the data
 * plane (15001/15006/15008, HBONE) from pkg/proxy, certificates from pkg/identity. */
#include "cmd/cmd.h"
#include "cmd/server.h"
#include "pkg/admin/admin.h"
#include "pkg/identity/identity.h"
#include "pkg/inpod/inpod.h"
#include "pkg/json/json.h"
#include "pkg/proxy/proxy.h"
#include "pkg/watch/watch.h"

#include <string.h>

struct zt {
	const char *ca_dir, *ca_url;
	const char *mode, *zds_socket;
	bool shared;
	struct flag_list workloads;
	int inbound_port, outbound_port, hbone_port, socks5_port, max_connections;
	uint64_t pool_idle_ms;
	bool preserve_source;
	struct identity_mgr *idm;
	struct proxy *proxy;
};

static int port_ok(int p)
{
	return p > 0 && p < 65536;
}

static int zt_check(void *ctx, const struct server_settings *set, struct errbuf *eb)
{
	struct zt *z = ctx;

	if (strcmp(z->mode, "dedicated") != 0 && strcmp(z->mode, "shared") != 0)
		return errbuf_set(eb, E_INVAL, "--mode must be dedicated or shared, not \"%s\"",
				  z->mode);
	z->shared = strcmp(z->mode, "shared") == 0;
	if (z->shared && z->workloads.n > 0)
		return errbuf_set(eb, E_INVAL,
				  "--workload is for dedicated mode; in shared mode the node agent "
				  "enrolls workloads");
	if (z->ca_dir && z->ca_url)
		return errbuf_set(eb, E_INVAL,
				  "ztunnel takes one certificate source: --ca-dir DIR, or "
				  "--ca-url URL with --ca-root FILE and --token-file FILE");
	if (z->ca_url && (!set->ca_root || !set->token_file))
		return errbuf_set(eb, E_INVAL, "--ca-url needs --ca-root and --token-file");
	if (!port_ok(z->inbound_port) || !port_ok(z->outbound_port) || !port_ok(z->hbone_port))
		return errbuf_set(eb, E_INVAL, "ports must be in 1..65535");
	if (z->socks5_port != 0 && !port_ok(z->socks5_port))
		return errbuf_set(eb, E_INVAL, "--socks5-port must be 0 (off) or in 1..65535");
	if (z->max_connections < 1)
		return errbuf_set(eb, E_INVAL, "--max-connections must be at least 1");
	if (z->pool_idle_ms == 0)
		return errbuf_set(eb, E_INVAL, "--pool-idle-timeout must be positive");
	return 0;
}

static void h_connections(const struct admin_request *req, struct admin_response *r, void *arg)
{
	struct zt *z = arg;
	struct json_writer w;

	(void)req;
	r->content_type = "application/json";
	json_writer_init(&w, &r->body, 2);
	if (z->proxy)
		proxy_connections(z->proxy, &w);
	else {
		json_write_array_begin(&w);
		json_write_array_end(&w);
	}
	if (json_writer_finish(&w) < 0) {
		buf_reset(&r->body);
		admin_error(r, 500, "cannot render the connections");
		return;
	}
	buf_append(&r->body, "\n", 1);
}

static int zt_start(struct server *srv, void *ctx, struct errbuf *eb)
{
	struct zt *z = ctx;
	const struct server_settings *set = server_settings_get(srv);
	struct identity_opts io = {
		.ca_dir = z->ca_dir,
		.ca_url = z->ca_url,
		.ca_root = z->ca_url ? set->ca_root : NULL,
		.token_file = z->ca_url ? set->token_file : NULL,
	};
	struct proxy_opts po = {
		.workload_uids = z->workloads.items,
		.n_workload_uids = (size_t)z->workloads.n,
		.inbound_port = (uint16_t)z->inbound_port,
		.outbound_port = (uint16_t)z->outbound_port,
		.hbone_port = (uint16_t)z->hbone_port,
		.preserve_source = z->preserve_source,
		.socks5_port = (uint16_t)z->socks5_port,
		.pool_idle_ms = z->pool_idle_ms,
		.max_connections = (size_t)z->max_connections,
		.shared = z->shared,
		.node = set->node,
		.workers = (unsigned)set->workers,
	};
	struct config *c;

	if (!z->ca_dir && !z->ca_url) {
		log_warn("ztunnel: no certificate source, the data plane stays off",
			 LF_STR("hint", "pass --ca-dir DIR or --ca-url URL"));
		return 0;
	}
	z->idm = identity_mgr_new(&io, eb);
	if (!z->idm)
		return -E_INVAL;
	po.idm = z->idm;
	z->proxy = proxy_new(&po, eb);
	if (!z->proxy)
		return -E_INVAL;
	admin_route(server_admin(srv), "/connections", ADMIN_GET, h_connections, z);
	if (z->shared && proxy_zds_start(z->proxy, z->zds_socket, eb) < 0)
		return -E_INVAL;
	c = watch_current(server_watch(srv));
	if (c) {
		proxy_set_config(z->proxy, c);
		config_unref(c);
	}
	return 0;
}

static void zt_stop(struct server *srv, void *ctx)
{
	struct zt *z = ctx;

	(void)srv;
	proxy_free(z->proxy);
	identity_mgr_free(z->idm);
	z->proxy = NULL;
	z->idm = NULL;
}

static void zt_on_config(struct server *srv, void *ctx, struct config *c)
{
	struct zt *z = ctx;

	(void)srv;
	if (z->proxy)
		proxy_set_config(z->proxy, c);
}

static int zt_worker_init(struct server *srv, void *ctx, struct ev_loop *loop, unsigned worker,
			  struct errbuf *eb)
{
	struct zt *z = ctx;

	(void)srv;
	if (!z->proxy)
		return 0;
	return proxy_worker_start(z->proxy, loop, worker, eb);
}

static void zt_worker_fini(struct server *srv, void *ctx, struct ev_loop *loop, unsigned worker)
{
	struct zt *z = ctx;

	(void)srv;
	if (z->proxy)
		proxy_worker_stop(z->proxy, loop, worker);
}

static void zt_drain(struct server *srv, void *ctx)
{
	struct zt *z = ctx;

	(void)srv;
	if (z->proxy)
		proxy_drain(z->proxy);
}

static size_t zt_active(struct server *srv, void *ctx)
{
	struct zt *z = ctx;

	(void)srv;
	return z->proxy ? proxy_open_connections(z->proxy) : 0;
}

static const char *zt_not_ready(struct server *srv, void *ctx)
{
	struct zt *z = ctx;

	(void)srv;
	return z->proxy ? proxy_not_ready(z->proxy)
			: "data plane off: no certificate source "
			  "(--ca-dir DIR or --ca-url URL)";
}

static void zt_dump(struct server *srv, void *ctx, struct json_writer *w)
{
	struct zt *z = ctx;

	(void)srv;
	if (z->idm) {
		/* Certificate state per identity: state, serial, validity, next refresh, last
		 * error. */
		struct identity_status st;
		identity_status_get(z->idm, &st);
		json_write_key(w, "certificates");
		identity_status_write_json(&st, w);
		identity_status_fini(&st);
	}
	if (!z->proxy)
		return;
	json_write_key(w, "proxy");
	proxy_dump(z->proxy, w);
}

int cmd_ztunnel(int argc, char **argv)
{
	static struct zt z = {.mode = "dedicated",
			      .zds_socket = INPOD_DEFAULT_PATH,
			      .inbound_port = 15006,
			      .outbound_port = 15001,
			      .hbone_port = 15008,
			      .socks5_port = 15080,
			      .max_connections = 100000,
			      .pool_idle_ms = 5 * 60 * 1000};
	static const struct flag flags[] = {
		{"mode", FLAG_STR, &z.mode,
		 "dedicated (serve this netns's workloads) or shared (one per node: workloads "
		 "enrolled by the node agent, listeners in each workload's netns)",
		 "MODE"},
		{"zds-socket", FLAG_STR, &z.zds_socket,
		 "shared mode: the node agent's ZDS socket (" INPOD_DEFAULT_PATH ")", "PATH"},
		{"ca-dir", FLAG_STR, &z.ca_dir,
		 "sign workload certificates locally from this CA "
		 "directory",
		 "DIR"},
		{"ca-url", FLAG_STR, &z.ca_url, "remote CA (with --ca-root and --token-file)",
		 "URL"},
		{"workload", FLAG_STR_LIST, &z.workloads,
		 "serve this workload uid (repeatable; workloads with a local IP are served "
		 "anyway)",
		 "UID"},
		{"inbound-port", FLAG_INT, &z.inbound_port, "inbound plaintext port (15006)",
		 "PORT"},
		{"outbound-port", FLAG_INT, &z.outbound_port, "outbound capture port (15001)",
		 "PORT"},
		{"hbone-port", FLAG_INT, &z.hbone_port, "inbound HBONE port (15008)", "PORT"},
		{"socks5-port", FLAG_INT, &z.socks5_port,
		 "SOCKS5 on 127.0.0.1 for the served workload (15080; 0: off)", "PORT"},
		{"max-connections", FLAG_INT, &z.max_connections,
		 "open connections at most; more are refused (100000)", "N"},
		{"pool-idle-timeout", FLAG_DURATION, &z.pool_idle_ms,
		 "close a pooled HBONE connection idle this long (5m)", "DUR"},
		{"preserve-source", FLAG_BOOL, &z.preserve_source,
		 "connect to apps from the client's IP (IP_TRANSPARENT; needs policy routing)",
		 NULL},
	};
	static const struct server_component comp = {
		.name = "ztunnel",
		.flags = flags,
		.nflags = ARRAY_LEN(flags),
		.ctx = &z,
		.check = zt_check,
		.start = zt_start,
		.stop = zt_stop,
		.dump = zt_dump,
		.on_config = zt_on_config,
		.worker_init = zt_worker_init,
		.worker_fini = zt_worker_fini,
		.not_ready = zt_not_ready,
		.drain = zt_drain,
		.active = zt_active,
	};

	return server_main(&comp, argc, argv);
}
