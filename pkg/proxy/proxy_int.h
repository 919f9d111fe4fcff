/* Private types of pkg/proxy shared by the listeners, the relay and the HBONE tunnels. */
#ifndef AMBIENT_PROXY_INT_H
#define AMBIENT_PROXY_INT_H

#include "pkg/proxy/proxy.h"
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

struct proxy_worker;

struct proxy {
	struct proxy_opts o;
	char **uids;
	pthread_mutex_t mu;
	struct proxy_snap *snap;
	atomic_uint workers_up;
	unsigned workers_want;
	struct metrics_family *m_opened, *m_closed, *m_sent, *m_recv;
	uint16_t ports[3];
};

enum end_kind { END_NONE = 0, END_FD, END_H2 };

struct tun;
struct flow;

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
	uint64_t rx;		   /* bytes received from this end */
};

struct proxy_snap *proxy_snap_get(struct proxy *p);
void proxy_snap_put(struct proxy_snap *s);
bool proxy_snap_serves(const struct proxy_snap *s, const struct config_workload *w);

#endif
