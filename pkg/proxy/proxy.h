/* The ztunnel data plane (DESIGN.md §2): 15001 outbound capture, 15006 inbound plaintext and
 * 15008 inbound HBONE listeners on the worker loops, plus the sans-I/O routing decisions. */
#ifndef AMBIENT_PROXY_H
#define AMBIENT_PROXY_H

#include "pkg/base/base.h"
#include "pkg/config/config.h"
#include "pkg/ev/ev.h"
#include "pkg/hbone/hbone.h"
#include "pkg/identity/identity.h"
#include "pkg/json/json.h"
#include "pkg/metrics/metrics.h"
#include "pkg/net/net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Scope of this first version (dedicated mode, one ztunnel per netns):
 * - served workloads: those of the snapshot with a workloadIp assigned to an interface of this
 *   netns (getifaddrs at each config change) or named by uid in proxy_opts.workload_uids;
 * - outbound HBONE streams share pooled TLS + HTTP/2 connections per worker, keyed by (source
 *   identity, destination identity, source IP, destination ip:15008); past 100 streams a new
 *   connection opens; one idle for pool_idle_ms is closed;
 * - waypoints: a service VIP whose service has one, or a workload with one (unless the source is
 *   that waypoint), goes over HBONE to a waypoint workload with :authority = the original
 *   destination; network gateways are not implemented: a destination that needs one fails;
 * - authorization runs at setup and again for every open inbound connection at each config
 *   change (newly denied ones are closed);
 * - a TLS config is built per HBONE connection from the current certificate.
 *
 * Threading: proxy_set_config() may run on any thread (the config watcher); the worker functions
 * run on their worker's loop. Each connection holds a reference on the snapshot it was decided
 * with.
 */

#define PROXY_MARK 1337u /* SO_MARK on every upstream socket: nft rules skip it */
#define PROXY_CONNECT_TIMEOUT_MS 10000
/* Draining: how long served HBONE connections stay up after their GOAWAY (within the drain
 * timeout) so clients move their new streams elsewhere instead of seeing a reset. */
#define PROXY_DRAIN_GOAWAY_MS 1000

struct proxy_opts {
	struct identity_mgr *idm; /* required */
	const char *const *workload_uids;
	size_t n_workload_uids;
	uint16_t inbound_port;	/* 15006 */
	uint16_t outbound_port; /* 15001 */
	uint16_t hbone_port;	/* 15008 (listen, and the port dialled on other nodes) */
	/* Bind upstream app connections to the client's IP (IP_TRANSPARENT). Needs policy routing
	 * on the node so the replies come back; off by default in dedicated mode. */
	bool preserve_source;
	struct metrics_registry *metrics; /* NULL: metrics_default() */
	uint16_t socks5_port;		  /* SOCKS5 on 127.0.0.1; 0: off */
	uint64_t pool_idle_ms;	/* close idle pooled HBONE connections after this; 0: 5 min */
	size_t max_connections; /* open connections; more are refused; 0: 100000 */
	/* Shared mode (DESIGN.md §5): no listeners of our own; workloads are enrolled over ZDS
	 * (proxy_zds_start) or proxy_pod_add, each with listeners inside its netns. */
	bool shared;
	const char *node; /* match enrolled workloads on this node (shared mode) */
	unsigned workers; /* worker loops that will call proxy_worker_start (shared: required) */
	uint64_t pod_drain_ms; /* a removed workload's connections are closed after this; 0: 5 s */
};

struct proxy;

struct proxy *proxy_new(const struct proxy_opts *o, struct errbuf *eb);
/* After the workers stopped. NULL is a no-op. */
void proxy_free(struct proxy *p);
/* A new snapshot: recomputes the served workloads and prefetches their identities. c is
 * borrowed (a reference is taken). */
void proxy_set_config(struct proxy *p, struct config *c);
/* On a worker's loop: opens that worker's SO_REUSEPORT listeners. */
int proxy_worker_start(struct proxy *p, struct ev_loop *loop, unsigned worker, struct errbuf *eb);
/* On the same worker after its loop stopped: closes listeners and every connection. */
void proxy_worker_stop(struct proxy *p, struct ev_loop *loop, unsigned worker);
/* NULL when a config is loaded and every worker's listeners are up; else why not. */
const char *proxy_not_ready(struct proxy *p);
/* Live connections as a JSON array value (for /connections); any thread. */
void proxy_connections(struct proxy *p, struct json_writer *w);
/* Drain: every worker stops accepting (new connections are refused by the kernel); open ones
 * go on. Any thread. */
void proxy_drain(struct proxy *p);
/* Open connections on every worker (drain waits for 0). */
size_t proxy_open_connections(struct proxy *p);
/* Served workload uids as a JSON array value (for /config_dump). */
void proxy_dump(struct proxy *p, struct json_writer *w);

/* ---- shared mode: enrolled workloads (proxy_pod.c, proxy_zds.c) ----------------------------
 * Each enrolled workload gets the 15001/15006/15008 (and SOCKS5) listeners inside its netns, made
 * on the calling thread (setns there and back), with SO_MARK 1337 and SO_REUSEPORT (an upgraded
 * ztunnel binds alongside), and tcp_migrate_req=1 in that netns so connections queued on a
 * closing listener move to the new one instead of being reset. It is matched to the mesh config
 * by uid, else by namespace + service account + name on proxy_opts.node. */

/* Enrolls (or re-enrolls) a workload; takes netns_fd. The same uid with the same netns inode is
 * kept (a replay); with another inode the old one is removed first. Waits up to wait_ms for a
 * config match (it stays pending, and the proxy not ready, until one comes). -E_* with eb when
 * the listeners cannot be made (the workload is not kept). */
int proxy_pod_add(struct proxy *p, const char *uid, const char *name, const char *ns,
		  const char *sa, int netns_fd, uint64_t wait_ms, struct errbuf *eb);
/* Marks uid as named by the current ZDS connection; -E_NOTFOUND if unknown. */
int proxy_pod_keep(struct proxy *p, const char *uid, struct errbuf *eb);
/* Closes uid's listeners and, after pod_drain_ms, its connections. Unknown uid: -E_NOTFOUND. */
int proxy_pod_del(struct proxy *p, const char *uid, struct errbuf *eb);
/* A new ZDS connection starts (generation++) / its snapshot is complete: every workload not
 * named since begin is removed. */
void proxy_pods_begin(struct proxy *p);
void proxy_pods_snapshot_done(struct proxy *p);
/* Enrolled workloads with their state as a JSON array value (for /config_dump). */
void proxy_pods_dump(struct proxy *p, struct json_writer *w);

/* Runs the ZDS client (DESIGN.md §5) on its own thread: connects to the node agent at path
 * (retrying with backoff 10 ms doubling to 15 s), says hello and applies Add/Keep/Del/
 * SnapshotSent, acking each. */
int proxy_zds_start(struct proxy *p, const char *path, struct errbuf *eb);
void proxy_zds_stop(struct proxy *p);

/* ---- sans-I/O decisions (proxy_decide.c) ----------------------------------------------------- */

enum proxy_route_kind {
	PROXY_ROUTE_FAIL = 0,	 /* refuse the connection: route.reason says why */
	PROXY_ROUTE_HBONE,	 /* mTLS + CONNECT to target (ip:hbone_port), :authority */
	PROXY_ROUTE_TCP,	 /* direct TCP to target (a plain TCP workload) */
	PROXY_ROUTE_PASSTHROUGH, /* unknown destination: direct TCP to the original address */
};

struct proxy_route {
	enum proxy_route_kind kind;
	struct net_addr target;			 /* where to connect */
	char authority[HBONE_AUTHORITY_MAX + 1]; /* HBONE: "ip:targetPort" */
	const struct config_workload *dst;	 /* destination workload, if known */
	const struct config_service *svc;	 /* when the original dst was a service VIP */
	const struct config_workload *waypoint;	 /* HBONE via this waypoint (its identity) */
	const char *reason;			 /* PROXY_ROUTE_FAIL: static text */
};

/* The outbound decision for a connection from src (the served source workload, may be NULL) to
 * orig, DESIGN §2 order: a service VIP whose service has a waypoint -> that waypoint; else an
 * endpoint; a workload with a waypoint -> that waypoint unless src is one of its members. Via a
 * waypoint: HBONE to a usable waypoint workload at the waypoint's hboneMtlsPort (else hbone_port),
 * :authority = orig, route.waypoint set (route.dst: the workload when orig was one). rnd picks
 * the endpoint (weighted by capacity among healthy endpoints). */
void proxy_decide_outbound(const struct config *c, const struct config_workload *src,
			   const struct net_addr *orig, uint64_t rnd, uint16_t hbone_port,
			   struct proxy_route *r);
/* Picks an endpoint of svc for service port `port`: healthy ones (all with AllowAll) weighted by
 * capacity, rnd % total weight. Sets *target_port (service targetPort, else the endpoint's own
 * mapping, else port). NULL when none is usable. */
const struct config_endpoint *proxy_pick_endpoint(const struct config_service *svc, uint16_t port,
						  uint64_t rnd, uint16_t *target_port);
/* "ip:port" / "[v6]:port" of an address into out (cap >= HBONE_AUTHORITY_MAX + 1). */
char *proxy_authority(const struct net_addr *a, char *out, size_t cap);
/* True when dst is one of our own listeners: a local IP (or loopback, or unspecified) and one of
 * the ports. */
bool proxy_is_loop(const struct net_addr *dst, const struct net_ip *local, size_t n_local,
		   const uint16_t *ports, size_t n_ports);
/* Converts between the config and net IP types. */
void proxy_ip_from_net(struct config_ip *out, const struct net_ip *in);
void proxy_ip_to_net(struct net_ip *out, const struct config_ip *in);
/* The trust domain of a SPIFFE ID ("spiffe://td/..."), as a slice of id; {NULL,0} if none. */
struct slice proxy_trust_domain(const char *spiffe_id);

#endif
