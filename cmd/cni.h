/* Private to `ambient cni`: the control-socket client and the entry points of the agent
 * (cni_agent.c) and the CNI plugin (cni_plugin.c). The decoders and records live in pkg/cniconf. */
#ifndef AMBIENT_CMD_CNI_H
#define AMBIENT_CMD_CNI_H

#include "pkg/base/base.h"
#include "pkg/cniconf/cniconf.h"
#include "pkg/inpod/inpod.h"
#include "pkg/redirect/redirect.h"

#include <stdbool.h>
#include <stdint.h>

#define CNI_DEFAULT_CONTROL "/var/run/ambient/cni.sock"
#define CNI_DEFAULT_STATE "/var/lib/ambient/cni-state.json"
#define CNI_PATH_MAX CNICONF_PATH_MAX
#define CNI_CTL_MAX CNICONF_CTL_MAX
/* How long a client waits for the agent: an add waits for ztunnel's ack (up to 5 s) after the
 * rules are in. */
#define CNI_CTL_TIMEOUT_MS 30000
/* The agent's reply when ztunnel is not connected; the plugin maps it to "try again later". */
#define CNI_ERR_NO_ZTUNNEL "no ztunnel connection"

/* pkg/cniconf sits below inpod and redirect in the module order, so it repeats their limits. */
_Static_assert(CNICONF_STR_MAX == INPOD_STR_MAX, "cniconf and inpod string limits differ");
_Static_assert(CNICONF_MAX_EXCLUDE == REDIRECT_MAX_EXCLUDE, "cniconf and redirect port limits");

/* Sends one request and decodes the agent's reply into *reply (cniconf_reply_fini it, also on
 * failure). -E_CLOSED/-E_IO when the agent cannot be reached (eb says so and how to start it),
 * -E_PROTO on a reply that does not decode (eb names the field). The reply's "ok" is not
 * interpreted. */
int cni_ctl_call(const char *path, const struct cniconf_request *req, struct cniconf_reply *reply,
		 struct errbuf *eb);

/* True when fd is a network namespace (NS_GET_NSTYPE), not some other file at that path. */
bool cni_is_netns(int fd);

int cni_agent_main(int argc, char **argv);
/* Runs as a CNI plugin (CNI_COMMAND is set). Returns the exit status. */
int cni_plugin_main(void);

#endif
