/* Private to `ambient cni`: the enrolled-workload record, the control-socket client and the
 * entry points of the agent (cni_agent.c) and the CNI plugin (cni_plugin.c). */
#ifndef AMBIENT_CMD_CNI_H
#define AMBIENT_CMD_CNI_H

#include "pkg/base/base.h"
#include "pkg/inpod/inpod.h"
#include "pkg/redirect/redirect.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#define CNI_DEFAULT_CONTROL "/var/run/ambient/cni.sock"
#define CNI_DEFAULT_STATE "/var/lib/ambient/cni-state.json"
#define CNI_PATH_MAX 4096
/* The largest control request or reply (a `list` of many workloads). */
#define CNI_CTL_MAX ((size_t)4 << 20)
/* How long a client waits for the agent: an add waits for ztunnel's ack (up to 5 s) after the
 * rules are in. */
#define CNI_CTL_TIMEOUT_MS 30000
/* The agent's reply when ztunnel is not connected; the plugin maps it to "try again later". */
#define CNI_ERR_NO_ZTUNNEL "no ztunnel connection"

/* One enrolled workload, as the agent keeps it and persists it in the state file. */
struct cni_entry {
	char uid[INPOD_STR_MAX + 1];
	char netns[CNI_PATH_MAX];
	uint64_t netns_inode; /* to tell a recreated or reused netns path from ours */
	char name[INPOD_STR_MAX + 1];
	char namespace_[INPOD_STR_MAX + 1];
	char service_account[INPOD_STR_MAX + 1];
	bool host;
	bool ipv6;
	uint16_t exclude[REDIRECT_MAX_EXCLUDE];
	size_t n_exclude;
	int64_t enrolled_ms;
};

/* Sends one request (a JSON object) to the agent and returns its reply in *reply (free with
 * json_free). -E_CLOSED/-E_IO when the agent cannot be reached (eb says so and how to start it),
 * -E_PROTO on a reply that is not a JSON object. The reply's "ok" is not interpreted. */
int cni_ctl_call(const char *path, const char *req, size_t n, cJSON **reply, struct errbuf *eb);

/* True when fd is a network namespace (NS_GET_NSTYPE), not some other file at that path. */
bool cni_is_netns(int fd);

/* "22,2222" -> ports; -E_INVAL with the bad item in eb. */
int cni_ports_parse(const char *s, uint16_t *ports, size_t cap, size_t *n, struct errbuf *eb);

int cni_agent_main(int argc, char **argv);
/* Runs as a CNI plugin (CNI_COMMAND is set). Returns the exit status. */
int cni_plugin_main(void);

#endif
