/* The runtime shared by long-running subcommands: settings, config watch, admin, signals, drain. */
#ifndef AMBIENT_CMD_SERVER_H
#define AMBIENT_CMD_SERVER_H

#include "cmd/flags.h"

/* Process settings (DESIGN.md §3): flags, each also read from AMBIENT_<FLAG>. */
struct server_settings {
	const char *mesh_config;
	const char *node;
	const char *admin;
	const char *metrics;
	const char *ready;
	const char *log_level;
	const char *log_format;
	const char *ca_root;
	const char *token_file;
	const char *trust_domain;
	int workers;
	uint64_t drain_timeout_ms;
	uint64_t poll_interval_ms;
	bool check_config;
};

struct server;
struct config;
struct ev_loop;
struct json_writer;

/* What a subcommand plugs into the runtime. Every hook is optional. */
struct server_component {
	const char *name;  /* "ztunnel" */
	const char *usage; /* usage line; NULL: "ambient <name> --mesh-config SOURCE [flags]" */
	/* While non-NULL, readiness answers 503 with this reason (a part not built yet). */
	const char *not_ready_reason;
	/* Flags of the component, parsed with the common ones. */
	const struct flag *flags;
	size_t nflags;
	void *ctx;
	/* After flags are parsed, before anything starts: a failure is a usage error (exit 2). */
	int (*check)(void *ctx, const struct server_settings *set, struct errbuf *eb);
	/* On the main loop after the admin servers listen and the config watch started. */
	int (*start)(struct server *srv, void *ctx, struct errbuf *eb);
	/* On the main loop after it stopped, before the runtime frees anything. */
	void (*stop)(struct server *srv, void *ctx);
	/* Adds the component's keys to the /config_dump object. */
	void (*dump)(struct server *srv, void *ctx, struct json_writer *w);
	/* On the watcher thread, after each new snapshot (post to the loop for loop work). */
	void (*on_config)(struct server *srv, void *ctx, struct config *c);
	/* On each worker thread with its loop, before it runs / after it stopped. */
	int (*worker_init)(struct server *srv, void *ctx, struct ev_loop *loop, unsigned worker,
			   struct errbuf *eb);
	void (*worker_fini)(struct server *srv, void *ctx, struct ev_loop *loop, unsigned worker);
	/* Readiness: NULL if ready, else why not (checked after the config). */
	const char *(*not_ready)(struct server *srv, void *ctx);
	/* Drain (SIGTERM, /quitquitquit): stop accepting; open work goes on. */
	void (*drain)(struct server *srv, void *ctx);
	/* Open connections: the drain ends when this is 0 or after --drain-timeout, whichever
	 * comes first. Without it the process stops at once. */
	size_t (*active)(struct server *srv, void *ctx);
};

/* For component hooks. */
struct ev_loop *server_loop(struct server *srv);
/* The worker loops (for posting to every worker); n is set to their number. */
struct ev_loop *server_worker_loop(struct server *srv, unsigned i);
unsigned server_worker_count(struct server *srv);
struct watch *server_watch(struct server *srv);
/* The admin server (127.0.0.1:15000), for a component's own routes (from start()). */
struct admin_server *server_admin(struct server *srv);
const struct server_settings *server_settings_get(struct server *srv);

/* Parses flags, then either checks the config (--check-config) or runs until SIGTERM/SIGINT or
 * POST /quitquitquit. Returns the exit status. */
int server_main(const struct server_component *comp, int argc, char **argv);

#endif
