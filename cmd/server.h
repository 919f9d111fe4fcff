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
	const char *ca_url;
	const char *ca_root;
	const char *token_file;
	const char *ca_dir;
	const char *trust_domain;
	const char *mode;
	const char *zds_socket;
	struct flag_list workloads;
	int workers;
	uint64_t drain_timeout_ms;
	uint64_t poll_interval_ms;
	bool check_config;
};

/* What a subcommand plugs into the runtime. */
struct server_component {
	const char *name; /* "ztunnel" */
	/* While non-NULL, readiness answers 503 with this reason (a part not built yet). */
	const char *not_ready_reason;
};

/* Parses flags, then either checks the config (--check-config) or runs until SIGTERM/SIGINT or
 * POST /quitquitquit. Returns the exit status. */
int server_main(const struct server_component *comp, int argc, char **argv);

#endif
