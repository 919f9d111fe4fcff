/* The waypoint data plane (DESIGN.md §6): HBONE server on 15008 with the waypoint's own identity,
 * HTTP/1.1 inside each tunnel, L7 authorization and routing (pkg/l7), and HBONE to the
 * destination workloads' ztunnels. */
#ifndef AMBIENT_WAYPOINT_H
#define AMBIENT_WAYPOINT_H

#include "pkg/base/base.h"
#include "pkg/config/config.h"
#include "pkg/ev/ev.h"
#include "pkg/identity/identity.h"
#include "pkg/json/json.h"
#include "pkg/l7/l7.h"
#include "pkg/metrics/metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Scope of this first slice:
 * - one process is one waypoint workload of the mesh config (waypoint_opts.workload_uid); it
 *   accepts HBONE CONNECTs whose :authority is a service VIP:port whose service names this
 *   waypoint (or, with waypointFor workload|all, a workload ip:port that names it); others get
 *   400;
 * - inside each tunnel stream: HTTP/1.1 with keep-alive (requests are handled one at a time, in
 *   order; pipelined requests wait for the previous response), or HTTP/2 with prior knowledge
 *   (nghttp2; up to 100 concurrent streams, each handled like one HTTP/1.1 request);
 * - per request: path normalization, L7 authorization (403), HTTPRoute selection (404), the
 *   RequestRedirect, URLRewrite and header filters, weighted backends, a random healthy
 *   endpoint (weighted by capacity) of the backend service, one upstream HBONE stream to the
 *   endpoint's ztunnel (ip:15008, :authority ip:targetPort, its SPIFFE ID expected), with
 *   pooled TLS + HTTP/2 connections per worker; request/backendRequest timeouts (504);
 * - retries (HTTPRoute retry), RequestMirror copies, outlier ejection of endpoints;
 * - plain-TCP endpoints (protocol TCP) are connected to directly, one connection per request.
 */

struct waypoint_opts {
	struct identity_mgr *idm;	  /* required */
	const char *workload_uid;	  /* required: this waypoint in the mesh config */
	uint16_t hbone_port;		  /* 15008: listen, and dial on endpoints */
	struct l7_norm_opts norm;	  /* path normalization before authorization */
	struct metrics_registry *metrics; /* NULL: metrics_default() */
	uint64_t pool_idle_ms;		  /* idle pooled upstream connections; 0: 5 min */
	/* Outlier ejection: after this many consecutive 5xx responses or connect failures an
	 * endpoint is skipped for outlier_ejection_ms (0: never ejected). */
	uint32_t outlier_consecutive;
	uint64_t outlier_ejection_ms; /* 0: 30 s */
	/* Downstream request limits (NULL fields: pkg/http1's defaults): request line -> 414,
	 * header section -> 431, body -> 413. */
	uint32_t max_request_line, max_request_headers;
	uint64_t max_request_body; /* 0: unlimited */
	/* Idle timeouts (0: none). idle_ms: a downstream connection (an HTTP/1.1 keep-alive or
	 * HTTP/2 stream of a tunnel, or a relayed TCP / Upgrade / CONNECT one) with no request in
	 * progress and no byte either way is closed. stream_idle_ms: a request with no byte
	 * either way is answered 408 (flag SI), or reset once its response started. */
	uint64_t idle_ms, stream_idle_ms;
};

struct waypoint;

struct waypoint *waypoint_new(const struct waypoint_opts *o, struct errbuf *eb);
void waypoint_free(struct waypoint *w);
/* A new snapshot (any thread); c is borrowed (a reference is taken). */
void waypoint_set_config(struct waypoint *w, struct config *c);
/* On a worker loop: opens that worker's SO_REUSEPORT 15008 listener. */
int waypoint_worker_start(struct waypoint *w, struct ev_loop *loop, unsigned worker,
			  struct errbuf *eb);
void waypoint_worker_stop(struct waypoint *w, struct ev_loop *loop, unsigned worker);
/* NULL when ready (config with this workload loaded, listeners up), else why not. */
const char *waypoint_not_ready(struct waypoint *w);
/* Stop accepting (open tunnels go on). */
void waypoint_drain(struct waypoint *w);
/* Open downstream tunnel streams on every worker. */
size_t waypoint_active(struct waypoint *w);
/* State for /config_dump as a JSON object value. */
void waypoint_dump(struct waypoint *w, struct json_writer *jw);

struct net_addr;
/* Whether the waypoint workload self accepts an HBONE CONNECT whose authority is dst (sans-I/O,
 * shared with `ctl explain`): NULL, or the reason it answers 400 (waypointFor, an unknown
 * address or port, a destination that uses another waypoint). *svc gets the service when dst
 * is a service VIP, else *dwl the workload (each NULL otherwise). */
const char *waypoint_bind(const struct config *c, const struct config_workload *self,
			  const struct net_addr *dst, const struct config_service **svc,
			  const struct config_workload **dwl);

#endif
