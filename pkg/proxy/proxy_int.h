/* Private types of pkg/proxy shared by the listeners, the relay and the HBONE tunnels. */
#ifndef AMBIENT_PROXY_INT_H
#define AMBIENT_PROXY_INT_H

#include "pkg/proxy/proxy.h"
#include "pkg/authz/authz.h"
#include "pkg/socks5/socks5.h"
#include "pkg/tls/tls.h"

#include <pthread.h>
#include <stdatomic.h>

/* A config snapshot with the workloads this ztunnel serves and the local IPs. */
struct proxy_snap {
	atomic_uint refs;
	struct config *c;
	const struct config_workload **served;
	size_t n_served;
	struct net_ip *local;
	size_t n_local;
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
	pthread_mutex_t live_mu; /* guards live: established flows of every worker */
	struct flow *live;
	struct ev_loop *_Atomic loops[EV_MAX_THREADS];
	uint16_t ports[4]; /* inbound, outbound, hbone, socks5 (0: off) */
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
	struct net_listener l[4]; /* inbound, outbound, hbone, socks5 */
	bool listening[4];
	struct flow *flows;
	struct tun *tuns;
};

enum flow_kind { FLOW_OUTBOUND = 0, FLOW_INBOUND_HBONE, FLOW_INBOUND_PLAIN };

struct flow {
	struct proxy_worker *w;
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
	struct buf early; /* client bytes that came with the SOCKS request */
	/* Outbound HBONE: waiting for the source certificate. */
	struct identity_waiter waiter;
	atomic_bool post_pending;
	const char *src_identity;
	struct proxy_route route;
};

struct tun {
	struct proxy_worker *w;
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
	char key[2 * TLS_URI_SIZE + 2 * NET_ADDR_STRLEN];
	struct ev_timer idle;
	const char *src_identity; /* in snap */
	char expect_id[TLS_URI_SIZE];
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
/* Sends the SOCKS reply for f (0 = success) if one is due. */
void socks_reply(struct flow *f, int rep);

/* proxy_live.c: /connections, policy re-check, drain */
void live_add(struct flow *f);
void live_del(struct flow *f);
void live_bytes(struct flow *f, int dir, uint64_t n);
/* Posts a re-check of every open inbound connection against the current snapshot. */
void proxy_recheck(struct proxy *p);

struct proxy_snap *proxy_snap_get(struct proxy *p);
void proxy_snap_put(struct proxy_snap *s);
bool proxy_snap_serves(const struct proxy_snap *s, const struct config_workload *w);

#endif
