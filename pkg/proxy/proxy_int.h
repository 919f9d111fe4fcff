/* Private types of pkg/proxy shared by the listeners, the relay and the HBONE tunnels. */
#ifndef AMBIENT_PROXY_INT_H
#define AMBIENT_PROXY_INT_H

#include "pkg/proxy/proxy.h"
#include "pkg/authz/authz.h"
#include "pkg/socks5/socks5.h"
#include "pkg/tls/tls.h"

#include <pthread.h>
#include <stdatomic.h>

struct proxy_pod;

/* A shared-mode workload of a snapshot: the enrolled pod and the config workload it matched
 * (NULL while pending). */
struct proxy_snap_pod {
	struct proxy_pod *pod; /* a reference */
	const struct config_workload *wl;
};

/* A config snapshot with the workloads this ztunnel serves and the local IPs. */
struct proxy_snap {
	atomic_uint refs;
	struct config *c;
	const struct config_workload **served;
	size_t n_served;
	struct net_ip *local;
	size_t n_local;
	struct proxy_snap_pod *pods; /* shared mode */
	size_t n_pods;
};

/* One listening socket of a worker: the proxy's own (pod NULL) or a pod's. */
enum lsn_kind { LSN_INBOUND = 0, LSN_OUTBOUND, LSN_HBONE, LSN_SOCKS, LSN_N };
struct proxy_lsn {
	struct net_listener l;
	struct proxy_worker *w;
	struct proxy_pod *pod;
	bool on;
};

enum pod_state { POD_PENDING = 0, POD_READY, POD_DRAINING };

/* A workload enrolled over ZDS (shared mode): its netns and its listeners on every worker.
 * Refcounted: the pod list, snapshots, listeners, flows and tunnels each hold a reference. */
struct proxy_pod {
	struct proxy *p;
	atomic_uint refs;
	char uid[256], name[256], ns[256], sa[256];
	int netns_fd;
	uint64_t netns_ino;
	struct net_ip *local; /* the netns's addresses (loop check) */
	size_t n_local;
	int64_t added_ms;
	unsigned gen; /* the ZDS connection generation that last named it */
	/* Guarded by proxy.mu: */
	enum pod_state state;
	char wl_uid[256]; /* the matched config workload */
	char error[256];
	struct proxy_pod *next;
	struct proxy_pod_worker *pw; /* proxy_opts.workers entries */
	atomic_uint drains; /* removed: workers still draining it (on proxy.gone until 0) */
};

struct proxy_pod_worker {
	int lfd[LSN_N]; /* made in the netns, not yet adopted by the worker (proxy.mu) */
	/* The worker's own (touched on its loop only): */
	struct proxy_lsn lsn[LSN_N];
	struct ev_timer drain;
	struct proxy_pod *pod;
};

struct proxy {
	struct proxy_opts o;
	char **uids;
	pthread_mutex_t mu;
	struct proxy_snap *snap;
	atomic_uint workers_up;
	unsigned workers_want;
	struct metrics_family *m_opened, *m_closed, *m_sent, *m_recv;
	struct metrics_series *m_pool_opened, *m_hbone_accepted, *m_refused_limit;
	atomic_size_t n_flows; /* open flows on every worker (the --max-connections bound) */
	atomic_bool draining;
	_Atomic uint64_t drain_started_ms;
	atomic_size_t n_server_tuns; /* accepted HBONE connections still open */
	pthread_mutex_t live_mu;     /* guards live: established flows of every worker */
	struct flow *live;
	struct ev_loop *_Atomic loops[EV_MAX_THREADS];
	uint16_t ports[4]; /* inbound, outbound, hbone, socks5 (0: off) */
	/* Shared mode (guarded by mu): enrolled pods, the ZDS generation, snapshot received. */
	struct proxy_pod *pods;
	struct proxy_pod *gone; /* removed, connections still draining */
	unsigned zds_gen;
	bool zds_synced;
	struct config *cfg; /* the latest config (snapshots are rebuilt from it on pod changes) */
	struct proxy_zds *zds;
};

enum end_kind { END_NONE = 0, END_FD, END_H2 };

struct tun;
struct flow;
struct proxy_worker;

/* One side of a flow: a plain socket or an HBONE stream. */
struct end {
	struct flow *f;
	enum end_kind kind;
	/* END_FD */
	struct ev_io io;
	struct buf out; /* bytes for this socket (from the other end) */
	bool connecting, rd_eof, wr_shut, closed;
	/* END_H2 */
	struct tun *t;
	int32_t sid;
	struct end *tnext, *tprev; /* the tunnel's ends */
	bool h2_eof;		   /* PEER_EOF seen */
	uint64_t rx;		   /* bytes received from this end (atomic: read by /connections) */
};

struct proxy_worker {
	struct proxy *p;
	struct ev_loop *loop;
	unsigned idx;
	struct proxy_lsn lsn[LSN_N]; /* dedicated mode */
	struct flow *flows;
	struct tun *tuns;
};

enum flow_kind { FLOW_OUTBOUND = 0, FLOW_INBOUND_HBONE, FLOW_INBOUND_PLAIN };

struct flow {
	struct proxy_worker *w;
	struct proxy_pod *pod; /* shared mode: the workload whose listener it came in on */
	struct flow *next, *prev;
	struct proxy_snap *snap;
	enum flow_kind kind;
	struct end e[2]; /* 0: the client side (downstream), 1: the server side (upstream) */
	struct net_addr src, dst; /* client address; L4 destination we dialled / were dialled at */
	char hbone_addr[HBONE_AUTHORITY_MAX + 1];
	const struct config_workload *src_wl, *dst_wl;
	const struct config_service *svc;
	char src_id[TLS_URI_SIZE];
	const char *dst_id;
	bool mtls;
	uint64_t start_ms;
	struct ev_timer timer;	/* connect timeout */
	struct ev_timer reaper; /* frees a dead flow after the current callbacks */
	bool done[2];		/* direction d (e[d] -> e[1-d]) finished with a half-close */
	bool established, dead, opened_counted;
	bool retried;	   /* outbound: the HBONE stream was refused once and retried */
	const char *flags; /* response_flags */
	char err[384];
	/* Registered in proxy.live (established, visible in /connections). */
	struct flow *lnext, *lprev;
	bool live;
	/* Inbound: what authorization saw at setup, for the re-check on policy changes. */
	struct authz_conn ac;
	bool authz_done;
	/* Byte counters already added to the metrics (live), per direction. */
	uint64_t counted[2];
	struct metrics_series *live_sent, *live_recv;
	/* SOCKS5 (15080): the handshake state while it runs, then NULL. */
	struct socks5 *socks;
	struct buf early;    /* client bytes that came with the SOCKS request */
	struct dns_job *dns; /* a DNS lookup in flight (proxy_socks.c; guarded by its lock) */
	/* Outbound HBONE: waiting for the source certificate. */
	struct identity_waiter waiter;
	atomic_bool post_pending;
	const char *src_identity;
	struct proxy_route route;
};

struct tun {
	struct proxy_worker *w;
	struct proxy_pod *pod; /* shared mode: the netns it lives in */
	struct tun *next, *prev;
	struct ev_io io;
	struct ev_timer timer; /* connect/handshake timeout, then HTTP/2 keepalive ticks */
	struct ev_timer kick;  /* runs the pump after the current callbacks; frees when dead */
	struct tls_conn tls;
	bool tls_on, server, connecting, running, dead;
	struct hbone_session *h;
	struct end *ends;
	struct net_addr peer, local;
	/* server */
	struct proxy_snap *snap;
	const struct config_workload *local_wl;
	struct identity_waiter waiter;
	atomic_bool post_pending;
	/* client: the pool key and the idle timer (armed while no stream is open) */
	char key[2 * TLS_URI_SIZE + 2 * NET_ADDR_STRLEN + 32];
	struct ev_timer idle;
	const char *src_identity; /* in snap */
	char expect_id[TLS_URI_SIZE];
	struct identity_hbone_peer peer_check; /* what the handshake accepts (points into snap) */
	char why[256];
};

/* proxy.c: flows */
void flow_fail(struct flow *f, const char *flags, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
struct flow *flow_new(struct proxy_worker *w, enum flow_kind kind, struct proxy_snap *snap);
void flow_established(struct flow *f);
int end_fd_start(struct end *e, int fd, bool connecting);
void proxy_tun_event(void *ctx, struct hbone_session *s, const struct hbone_event *ev);
/* Counts a refused connection; true when fd was refused (closed) for the connection limit. */
bool proxy_over_limit(struct proxy *p, int fd);
/* Runs the outbound decision for f (f->src, f->dst, f->src_wl set) and connects. */
void proxy_outbound_dispatch(struct flow *f);

/* On the worker's own loop. */
struct proxy_worker *proxy_worker_get(unsigned i);
void proxy_worker_stop_listening(struct proxy_worker *w);

/* proxy_pool.c: tunnels and the client pool */
void tun_kick(struct tun *t);
void tun_close(struct tun *t, const char *why);
void tun_free(struct tun *t);
void tun_add_end(struct tun *t, struct end *e);
/* An end left t's stream list: a pooled client tunnel with no stream left arms its idle timer. */
void tun_end_gone(struct tun *t);
/* Outbound HBONE for f: a stream on a pooled connection, or a new one. */
void pool_outbound(struct flow *f);
void on_accept_hbone(struct net_listener *l, int fd, const struct net_addr *peer);

/* proxy_socks.c */
void on_accept_socks(struct net_listener *l, int fd, const struct net_addr *peer);
/* f is in the SOCKS handshake: handles its client socket's events. */
void socks_on_fd(struct flow *f);
/* The flow is going away: its DNS lookup, if any, will not touch it. */
void socks_dns_cancel(struct flow *f);
/* Sends the SOCKS reply for f (0 = success) if one is due. */
void socks_reply(struct flow *f, int rep);

/* proxy_live.c: /connections, policy re-check, drain */
void live_add(struct flow *f);
void live_del(struct flow *f);
void live_bytes(struct flow *f, int dir, uint64_t n);
/* Posts a re-check of every open inbound connection against the current snapshot. */
void proxy_recheck(struct proxy *p);

/* proxy_pod.c */
void proxy_pod_put(struct proxy_pod *pod);
static inline struct proxy_pod *proxy_pod_ref(struct proxy_pod *pod)
{
	if (pod)
		atomic_fetch_add(&pod->refs, 1);
	return pod;
}
/* The netns to make sockets in for pod (-1: ours). */
static inline int proxy_pod_netns(const struct proxy_pod *pod)
{
	return pod ? pod->netns_fd : -1;
}
/* The config workload pod matched in snapshot s (NULL: pending). */
const struct config_workload *proxy_snap_pod_workload(const struct proxy_snap *s,
						      const struct proxy_pod *pod);
/* Rebuilds the snapshot from p->cfg and the pods (p->mu must not be held). */
void proxy_resnap(struct proxy *p);
/* Worker start: adopts the listeners of the pods made before this worker's loop existed. */
void proxy_pods_worker_start(struct proxy *p, struct proxy_worker *w);
void proxy_pods_worker_stop(struct proxy *p, struct proxy_worker *w);
/* The worker's loop is ending: drain timers that will never fire are settled. */
void proxy_pods_worker_fini(struct proxy *p, struct proxy_worker *w);
/* Accept callbacks (proxy.c, proxy_pool.c, proxy_socks.c) by listener kind. */
extern const net_accept_fn proxy_accept_cbs[LSN_N];
/* The listener a callback was called for. */
static inline struct proxy_lsn *proxy_lsn_of(struct net_listener *l)
{
	return l->arg;
}
/* The local addresses for the loop check: the pod's netns, or ours. */
static inline void proxy_locals(const struct proxy_snap *s, const struct proxy_pod *pod,
				const struct net_ip **ips, size_t *n)
{
	*ips = pod ? pod->local : s->local;
	*n = pod ? pod->n_local : s->n_local;
}

struct proxy_snap *proxy_snap_get(struct proxy *p);
void proxy_snap_put(struct proxy_snap *s);
bool proxy_snap_serves(const struct proxy_snap *s, const struct config_workload *w);

#endif
