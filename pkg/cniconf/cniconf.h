/* The decoders and encoders of `ambient cni`, sans I/O: the CNI network configuration (stdin) and
 * CNI_ARGS of the plugin, the agent's state file, the control-socket requests and replies, and the
 * small pure decisions around them (which pods are ambient, which uid, which CNI versions).
 *
 * Every decoder takes bytes or a string and returns a struct, or -E_* with an errbuf naming the
 * input and the JSON path: "netconf: .args.cni.labels[1].value: expected a string, got number".
 * Nothing here reads files, sockets or the environment; cmd/cni*.c do that (docs/cni.md).
 *
 *   plugin:  stdin --cniconf_netconf_decode--> struct cniconf_netconf --enroll?--> request
 *            CNI_ARGS --cniconf_args_parse--> struct cniconf_args --cniconf_uid_choose--> uid
 *   CLI:     cniconf_request_encode --> socket --> cniconf_reply_decode
 *   agent:   socket --> cniconf_request_decode ... cniconf_entry_write --> reply
 *            state file <--> cniconf_state_decode / cniconf_state_encode
 */
#ifndef AMBIENT_CNICONF_H
#define AMBIENT_CNICONF_H

#include "pkg/base/base.h"
#include "pkg/buf/buf.h"
#include "pkg/json/json.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Equal to INPOD_STR_MAX and REDIRECT_MAX_EXCLUDE (cmd/cni.h checks); this module sits below
 * both and so repeats them. */
#define CNICONF_STR_MAX 253
#define CNICONF_MAX_EXCLUDE 16
#define CNICONF_PATH_MAX 4096

/* CNI spec 1.0.0 §"Error": well-known error codes of a plugin's error result. */
enum {
	CNICONF_E_INCOMPATIBLE = 1,
	CNICONF_E_INVALID_ENV = 4,
	CNICONF_E_DECODE = 6,
	CNICONF_E_INVALID_NETCONF = 7,
	CNICONF_E_TRY_LATER = 11,
	CNICONF_E_OTHER = 999,
};

/* ---- versions, commands, the ambient decision ------------------------------------------------ */

/* The cniVersions this plugin speaks, oldest first, and their count. */
extern const char *const cniconf_versions[];
extern const size_t cniconf_n_versions;
bool cniconf_version_supported(const char *v);

enum cniconf_command {
	CNICONF_CMD_UNKNOWN = 0,
	CNICONF_CMD_ADD,
	CNICONF_CMD_DEL,
	CNICONF_CMD_CHECK,
	CNICONF_CMD_VERSION,
};
/* CNI_COMMAND (CNI spec §3, case-sensitive); NULL or anything else is CNICONF_CMD_UNKNOWN. */
enum cniconf_command cniconf_command_parse(const char *s);

/* What the pod's labels say (ambient.io/dataplane-mode, else istio.io/dataplane-mode). */
enum cniconf_mode {
	CNICONF_MODE_UNSET = 0, /* no label, or a value other than the two below */
	CNICONF_MODE_AMBIENT,	/* "ambient": enroll */
	CNICONF_MODE_NONE,	/* "none": never enroll, even with "enroll": true */
};
enum cniconf_mode cniconf_mode_parse(const char *label_value);
/* The label wins; without one, the netconf's "enroll". */
bool cniconf_enroll_decide(bool netconf_enroll, enum cniconf_mode mode);

/* ---- CNI network configuration (plugin stdin) ------------------------------------------------ */

struct cniconf_netconf {
	cJSON *root;		    /* owned; cniconf_netconf_fini frees it */
	const char *version;	    /* .cniVersion, supported (strings borrow from root) */
	const char *name, *type;    /* non-empty */
	const char *control_socket; /* .controlSocket, NULL when absent */
	bool enroll_flag;	    /* .enroll as written (false when absent) */
	enum cniconf_mode mode;	    /* from .args.cni.labels */
	bool enroll;		    /* cniconf_enroll_decide(enroll_flag, mode) */
	const cJSON *prev_result;   /* .prevResult (an object) or NULL */
	uint16_t exclude[CNICONF_MAX_EXCLUDE]; /* .excludeInboundPorts */
	size_t n_exclude;
};

/* Decodes the netconf text[0..len). Returns 0, or with eb "netconf...: ...":
 *   -E_PARSE   not JSON, or not an object             (CNI error 6, "decode")
 *   -E_UNSUPP  a cniVersion this plugin does not speak (CNI error 1, "incompatible")
 *   -E_INVAL / -E_LIMIT  a field is missing or wrong   (CNI error 7, "invalid netconf")
 * Checks .cniVersion first; from then on nc->version is set, also on failure (an error result
 * is written in the netconf's version). Call cniconf_netconf_fini either way. */
int cniconf_netconf_decode(const char *text, size_t len, struct cniconf_netconf *nc,
			   struct errbuf *eb);
void cniconf_netconf_fini(struct cniconf_netconf *nc);
/* The CNI error code for a cniconf_netconf_decode failure. */
int cniconf_netconf_error_code(int rc);

/* ---- CNI_ARGS -------------------------------------------------------------------------------- */

struct cniconf_args {
	char pod_uid[CNICONF_STR_MAX + 1]; /* K8S_POD_UID; "" when absent */
	char pod_name[CNICONF_STR_MAX + 1];
	char pod_namespace[CNICONF_STR_MAX + 1];
	char pod_service_account[CNICONF_STR_MAX + 1];
};

/* "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=..." (s may be
 * NULL). Unknown keys are ignored, empty items skipped; an item without "KEY=" or a known value
 * longer than CNICONF_STR_MAX is -E_INVAL with "CNI_ARGS: ..." in eb. */
int cniconf_args_parse(const char *s, struct cniconf_args *a, struct errbuf *eb);
/* The workload uid: K8S_POD_UID when given, else the container id (CNI_CONTAINERID), cut to
 * CNICONF_STR_MAX bytes. out has room for CNICONF_STR_MAX + 1. */
void cniconf_uid_choose(const struct cniconf_args *a, const char *container_id, char *out);

/* ---- plugin results -------------------------------------------------------------------------- */

/* VERSION's result: {"cniVersion":"1.0.0","supportedVersions":[...]}. */
int cniconf_version_result_encode(struct buf *out);
/* ADD's result for a chained plugin: prevResult unchanged, in the netconf's cniVersion. */
int cniconf_prev_result_encode(const struct cniconf_netconf *nc, struct buf *out);
/* The error result (CNI spec §"Error"); version NULL means "1.0.0", details NULL or "" omitted. */
int cniconf_error_result_encode(const char *version, int code, const char *msg, const char *details,
				struct buf *out);

/* ---- an enrolled workload, the state file ---------------------------------------------------- */

struct cniconf_entry {
	char uid[CNICONF_STR_MAX + 1];
	char netns[CNICONF_PATH_MAX];
	uint64_t netns_inode; /* to tell a recreated or reused netns path from ours */
	char name[CNICONF_STR_MAX + 1];
	char namespace_[CNICONF_STR_MAX + 1];
	char service_account[CNICONF_STR_MAX + 1];
	bool host;
	bool ipv6;
	uint16_t exclude[CNICONF_MAX_EXCLUDE];
	size_t n_exclude;
	int64_t enrolled_ms; /* whole seconds; 0 when unknown */
};

/* {"uid": ..., "netns": ..., "netnsInode": N, ..., "enrolled": "2026-11-26T14:00:00Z"}. */
void cniconf_entry_write(struct json_writer *w, const struct cniconf_entry *e);

/* Decodes a state file ({"version": 1, "workloads": [entry...]}); source names it in errors
 * ("/var/lib/ambient/cni-state.json: .workloads[0].uid: expected a string, got number").
 * Returns 0 with *out (xmalloc'd, free() it; NULL when empty) and *n, or -E_PARSE/-E_INVAL/-E_LIMIT
 * with *out NULL. A uid may appear once. */
int cniconf_state_decode(const char *text, size_t len, const char *source,
			 struct cniconf_entry **out, size_t *n, struct errbuf *eb);
/* The state file's text (indented, ending in a newline); -E_LIMIT when out's max is too small. */
int cniconf_state_encode(const struct cniconf_entry *e, size_t n, struct buf *out);

/* "2026-11-26T14:00:00Z" (years 1970..9999) -> Unix ms; -E_PARSE otherwise. */
int cniconf_time_parse(const char *s, int64_t *ms);

/* ---- control socket: requests ---------------------------------------------------------------- */

/* Largest request or reply (a `list` of many workloads): one SOCK_SEQPACKET packet. */
#define CNICONF_CTL_MAX ((size_t)4 << 20)

enum cniconf_op {
	CNICONF_OP_ADD = 1,
	CNICONF_OP_DEL,
	CNICONF_OP_LIST,
	CNICONF_OP_CHECK,
};

/* One request. add: e.uid, e.netns (absolute), name, namespace_, service_account, host, exclude;
 * del: e.uid; check: e.uid ("" for all workloads); list: nothing. */
struct cniconf_request {
	enum cniconf_op op;
	struct cniconf_entry e;
};

/* Decodes one request; unknown keys, missing or wrong fields are -E_INVAL/-E_LIMIT/-E_PARSE with
 * "request: ..." in eb ("request: .uid: expected a string, got number"). */
int cniconf_request_decode(const char *text, size_t len, struct cniconf_request *r,
			   struct errbuf *eb);
/* Compact JSON, one line; what cniconf_request_decode accepts. -E_LIMIT when out is full. */
int cniconf_request_encode(const struct cniconf_request *r, struct buf *out);

/* ---- control socket: replies ----------------------------------------------------------------- */

/* One item of a reply's "workloads" (list: entries; check: uid, netns, ok, error). Strings are
 * borrowed from the reply's tree; "" when absent. */
struct cniconf_row {
	const char *uid, *netns, *name, *namespace_, *service_account;
	const char *error;   /* check: why it drifted; NULL when absent */
	bool ok;	     /* check */
	int64_t enrolled_ms; /* list: 0 when absent or null */
};

struct cniconf_reply {
	cJSON *root; /* owned; cniconf_reply_fini frees everything */
	bool ok;
	const char *error;	  /* when !ok: the agent's reason, NULL if it gave none */
	bool removed;		  /* del */
	bool ztunnel_connected;	  /* list, check */
	bool ipv6;		  /* add: .workload.ipv6 */
	const cJSON *workloads;	  /* list, check: the array as sent (for `list -o json`), or NULL */
	struct cniconf_row *rows; /* the same, decoded */
	size_t n_rows;
};

/* Decodes a reply: a JSON object whose known members have the right types (unknown ones are
 * ignored, for newer agents). -E_PARSE/-E_INVAL with "reply: ..." in eb, r zeroed. */
int cniconf_reply_decode(const char *text, size_t len, struct cniconf_reply *r, struct errbuf *eb);
void cniconf_reply_fini(struct cniconf_reply *r);

/* ---- CLI arguments --------------------------------------------------------------------------- */

/* "22,2222" -> ports (1..65535, at most cap); -E_INVAL/-E_LIMIT with the bad item in eb. */
int cniconf_ports_parse(const char *s, uint16_t *ports, size_t cap, size_t *n, struct errbuf *eb);

#endif
