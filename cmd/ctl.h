/* Private helpers shared by the `ambient ctl` verbs (cmd/ctl*.c): loading, fetching, tables. */
#ifndef AMBIENT_CMD_CTL_H
#define AMBIENT_CMD_CTL_H

#include "cmd/flags.h"
#include "pkg/base/base.h"
#include "pkg/buf/buf.h"
#include "pkg/config/config.h"
#include "pkg/json/json.h"
#include "pkg/authz/authz.h"
#include "pkg/l7/l7.h"
#include "pkg/proxy/proxy.h"

#include <stdbool.h>
#include <stdio.h>

/*
 * Exit codes of every verb (docs/ctl.md):
 *   0 ok / clean, 1 failure (unreachable admin, unreadable file, bad certificate),
 *   2 usage error, 3 `check`: warnings only, 4 `check`: errors; `explain`: 0 allowed, 5 denied
 *   or failing.
 */
#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2
#define CTL_EXIT_WARNINGS 3
#define CTL_EXIT_ERRORS 4
#define CTL_EXIT_DENIED 5

#define CTL_DEFAULT_ADMIN "http://127.0.0.1:15000"

/* One verb: parses its own flags from argv (argv[0] is the verb). */
struct ctl_verb {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *summary;
};

int ctl_check_main(int argc, char **argv);
int ctl_explain_main(int argc, char **argv);
int ctl_describe_main(int argc, char **argv);
int ctl_cert_main(int argc, char **argv);
int ctl_workloads_main(int argc, char **argv);
int ctl_services_main(int argc, char **argv);
int ctl_policies_main(int argc, char **argv);
int ctl_certs_main(int argc, char **argv);
int ctl_connections_main(int argc, char **argv);
int ctl_config_main(int argc, char **argv);
int ctl_log_main(int argc, char **argv);
int ctl_status_main(int argc, char **argv);
int ctl_bug_report_main(int argc, char **argv);

/*
 * Parses flags for a verb; prints usage (with the example) on --help. Returns 0 to go on, 1 when
 * help was printed (exit 0), -1 on a usage error (already printed; exit 2).
 */
int ctl_parse(const char *verb, const char *usage, const char *example, const struct flag *f,
	      size_t n, int argc, char **argv, const char **pos, int maxpos, int *npos);

/* Reads a file ("-" = stdin) or fetches an http(s) URL (ca_root for https). The text is
 * NUL-terminated; token_file (may be NULL) is sent as a bearer token (the CA's /v1/config). Errors
 * are one clear line: "cannot read mesh.json: No such file or directory". */
int ctl_read_source(const char *src, const char *ca_root, const char *token_file, size_t max,
		    char **text, size_t *len, struct errbuf *eb);

/* Loads and parses a mesh config; errors (and warnings, if given) are the loader's lines. NULL
 * on failure: when the source could not be read at all, eb says why and errs stays empty. */
struct config *ctl_load_config(const char *src, const char *ca_root, const char *token_file,
			       struct errlist *errs, struct errlist *warnings, struct errbuf *eb);

/* "127.0.0.1:15000" -> "http://127.0.0.1:15000" (caller frees). */
char *ctl_admin_url(const char *admin);
/* GET/POST admin path; 0 with status and body (NUL-terminated), else a clear one-line error
 * naming the admin URL and what to do. */
int ctl_admin_fetch(const char *admin, const char *method, const char *path, int *status,
		    struct buf *body, struct errbuf *eb);
/* GET path and parse JSON. */
int ctl_admin_json(const char *admin, const char *path, cJSON **out, struct errbuf *eb);

/* Iterates the items of a cJSON array or object (NULL: none). */
#define CTL_EACH(it, arr) for ((it) = (arr) ? (arr)->child : NULL; (it); (it) = (it)->next)

/* ---- tables --------------------------------------------------------------------------------- */
struct ctl_table {
	size_t ncols;
	const char *const *head;
	char **cells; /* rows * ncols, owned */
	size_t nrows, cap;
};
void ctl_table_init(struct ctl_table *t, const char *const *head, size_t ncols);
/* Adds a row of ncols strings (copied; NULL prints as "-"). */
void ctl_table_add(struct ctl_table *t, const char *const *row);
/* Sorts rows by the given columns in order (strcmp), then prints with two-space gaps. */
void ctl_table_sort(struct ctl_table *t, const size_t *cols, size_t ncols);
void ctl_table_print(const struct ctl_table *t, FILE *out);
void ctl_table_fini(struct ctl_table *t);

/* Pretty JSON of a cJSON tree to out with a trailing newline. */
void ctl_print_json(const cJSON *v, FILE *out);
/* Helpers on cJSON objects: "" / 0 when missing. */
const char *ctl_jstr(const cJSON *o, const char *key);
double ctl_jnum(const cJSON *o, const char *key);

/* Parses "2026-11-26T16:55:25Z" (UTC) into Unix seconds; -1 if malformed. */
int64_t ctl_parse_time(const char *s);
/* "23h59m", "89d", "expired 3m ago". */
void ctl_format_left(int64_t secs, char *out, size_t cap);
/* Now in Unix seconds; AMBIENT_CTL_NOW (for golden tests) overrides the clock. */
int64_t ctl_now(void);

/* ---- offline analysis (ctl_explain.c) ------------------------------------------------------- */
/* "namespace/name" (the uid when nameless) into out. */
const char *ctl_wl_name(const struct config_workload *w, char *out, size_t cap);
/* By IP, uid, namespace/name or unique name; NULL with eb set. */
const struct config_workload *ctl_find_workload(const struct config *c, const char *q,
						struct errbuf *eb);
/* The policies authz_check considers for dst, in its order. */
void ctl_applicable_policies(const struct config *c, const struct config_workload *dst,
			     const struct config_policy **out, size_t cap, size_t *n);
/* One L4 enforcement point: every applicable policy evaluated alone plus authz_check's verdict.
 * mesh is config_dump_mesh_write's output parsed. */
cJSON *ctl_authz_point(const struct config *c, const cJSON *mesh, const struct config_workload *dst,
		       const struct authz_conn *conn);
cJSON *ctl_mesh_json(const struct config *c);
/* --to HOST:PORT|IP:PORT -> address; notes how it was resolved into dj. */
int ctl_parse_to(const struct config *c, const char *to, const struct config_workload *src,
		 struct net_addr *orig, cJSON *dj, struct errbuf *eb);
/* The HTTP request explain evaluates at a waypoint. */
struct ctl_l7_opts {
	const char *method, *path;	 /* NULL: "GET", "/" */
	const char *host;		 /* the Host header unless --header host=... */
	const struct flag_list *headers; /* "K=V" or "K: V" */
	struct l7_norm_opts norm;	 /* as the waypoint's --path-normalization */
};
/* The whole explanation as JSON (see docs/ctl.md). */
cJSON *ctl_explain_build(const struct config *c, const struct config_workload *src,
			 const char *src_ip_text, const struct net_addr *orig,
			 const struct ctl_l7_opts *l7);

/* ---- L7 at a waypoint (ctl_l7.c): pkg/l7's own decisions, in pkg/waypoint's order --------- */
/* A backend the waypoint forwards to. */
struct ctl_l7_backend {
	const struct config_service *svc;
	uint16_t port;
};
/* "DEFAULT|NONE|BASE|MERGE_SLASHES|DECODE_AND_MERGE_SLASHES" (NULL: DEFAULT); -1 if unknown. */
int ctl_l7_norm_parse(const char *s, bool reject_escaped, struct l7_norm_opts *o);
/* One request at waypoint wp for the original destination orig (a service VIP, svc, or a
 * workload: svc NULL) port `port`: the enforcement point as JSON ("status", "verdict",
 * "reason", "forwarded" when it reaches a backend) and the backends it may reach (out, up to
 * cap, *nb). */
cJSON *ctl_l7_point(const struct config *c, const struct config_workload *wp,
		    const struct net_addr *orig, const struct config_service *svc, uint16_t port,
		    const struct config_workload *src, const struct config_ip *src_ip,
		    const struct ctl_l7_opts *o, struct ctl_l7_backend *out, size_t cap,
		    size_t *nb);

#endif
