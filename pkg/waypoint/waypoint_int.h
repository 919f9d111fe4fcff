/* Private types of pkg/waypoint: snapshots, workers, HBONE tunnels and the streams on them. */
#ifndef AMBIENT_WAYPOINT_INT_H
#define AMBIENT_WAYPOINT_INT_H

#include "pkg/waypoint/waypoint.h"
#include "pkg/buf/buf.h"
#include "pkg/hbone/hbone.h"
#include "pkg/http1/http1.h"
#include "pkg/net/net.h"
#include "pkg/tls/tls.h"

#include <pthread.h>
#include <stdatomic.h>

#define WP_MAX_WORKERS 64
#define WP_CONNECT_TIMEOUT_MS 10000
/* Flow control is the backpressure: bytes received on a stream are credited back to its sender
 * only while what they turned into on the other side stays under WP_CREDIT_LOW; with the HBONE
 * stream window (4 MiB) on top, a buffer never grows past WP_BUF_MAX. */
#define WP_CREDIT_LOW (256u << 10)
#define WP_BUF_MAX (8u << 20)
/* A request is kept for retries and mirrors while its head and (framed) body fit in this. */
#define WP_REPLAY_MAX (64u << 10)
#define WP_MAX_MIRRORS 4
/* Upstream keep-alive (waypoint_pool.c): an idle upstream stream is closed after this long,
 * below the 5 s keep-alive timeout of common servers (Node.js, Apache), so that a backend
 * rarely closes one just as a request is sent on it; at most this many per endpoint and worker. */
#define WP_UP_IDLE_MS 4000
#define WP_UP_IDLE_PER_ENDPOINT 128
#define WP_REC_CACHE_SLOTS 64
#define WP_REC_KEY_MAX 1024

/* A config snapshot with what the waypoint derived from it. */
struct wp_snap {
	atomic_uint refs;
	struct config *c;
	struct l7_table *t;
	const struct config_workload *self; /* NULL: not in this config */
};

struct wp_worker;
struct wtun;

/* Per-request objects recycled per worker (wp_obj_new): a ~9 KiB exchange, or a stream, freed
 * and allocated again at every request would make musl's allocator map and unmap memory. */
enum wp_obj { WP_OBJ_XCHG, WP_OBJ_DSTR, WP_OBJ_H2REQ, WP_OBJ_N };
#define WP_OBJ_FREE_MAX 256
/* Buffer allocations up to WP_SPARE_CAP kept per worker for the next stream or request (a 1 KiB
 * response otherwise reallocs its buffers 256 -> 512 -> 1024 -> 2048 every time). */
#define WP_SPARES 256
#define WP_SPARE_CAP (16u << 10)
struct wp_spare {
	uint8_t *data;
	size_t cap;
};

/* A stream on a tunnel: a downstream client connection (server tunnel) or an upstream request
 * (client tunnel). Both embed this first. */
struct wstream {
	struct wtun *t;
	int32_t sid; /* 0 while the tunnel handshakes (client) */
	bool up;
	bool tcp; /* up: a plain-TCP socket (waypoint_tcp.c), never on a tunnel */
	struct wstream *next, *prev;		 /* the tunnel's streams */
	char authority[HBONE_AUTHORITY_MAX + 1]; /* up: the CONNECT authority */
};

struct wtun {
	struct wp_worker *wk;
	struct wtun *next, *prev;
	struct ev_io io;
	struct ev_timer timer; /* connect/handshake timeout, then HTTP/2 ticks */
	struct ev_timer kick;
	struct ev_timer idle;
	struct tls_conn tls;
	bool tls_on, server, connecting, running, dead;
	bool goaway; /* client: the peer sent GOAWAY (no new exchange on its idle streams) */
	struct hbone_session *h;
	struct wstream *streams;
	struct net_addr peer, local;
	struct wp_snap *snap;
	struct identity_waiter waiter;
	atomic_bool post_pending;
	char key[2 * TLS_URI_SIZE + NET_ADDR_STRLEN + 8]; /* client: pool key */
	char expect_id[TLS_URI_SIZE];
	struct identity_hbone_peer peer_check; /* what the handshake accepts (points into snap) */
	char peer_id[TLS_URI_SIZE];	       /* server: the client's SPIFFE ID */
	char why[256];
};

struct waypoint {
	struct waypoint_opts o;
	char *uid;
	pthread_mutex_t mu;
	struct wp_snap *snap;
	atomic_bool draining;
	atomic_uint workers_up;
	atomic_size_t active;
	struct wp_worker *workers[WP_MAX_WORKERS];
	struct metrics_family *m_total, *m_dur, *m_req_bytes, *m_resp_bytes;
	/* appProtocol TCP connections (Istio's TCP metrics) */
	struct metrics_family *m_tcp_opened, *m_tcp_closed, *m_tcp_sent, *m_tcp_received;
	struct metrics_series *m_accepted;
	struct http1_limits lim; /* downstream requests */
	/* outlier ejection (consecutive 5xx / connect failures per endpoint), all workers */
	pthread_mutex_t omu;
	struct wp_outlier *outliers;
	size_t n_outliers, cap_outliers;
	atomic_size_t n_tracked; /* n_outliers, read without the lock on the fast path */
};

struct wp_outlier {
	char *uid;
	uint32_t consecutive;
	uint64_t ejected_until_ms; /* 0: not ejected */
};

/* Idle upstream streams to one endpoint (workload uid, target port), most recent first. */
struct wp_idle {
	char *uid;
	uint16_t port;
	bool tcp;
	unsigned n;
	struct ustr *head;
};

/* Requests in flight to one endpoint from one worker (least-request choice). */
struct wp_inflight {
	char *uid;
	uint32_t n;
};

struct wp_worker {
	struct waypoint *w;
	struct wp_inflight *inflight;
	size_t n_inflight, cap_inflight;
	struct ev_loop *loop;
	unsigned idx;
	struct net_listener lsn;
	bool lsn_on;
	struct wtun *tuns;
	uint64_t rnd;
	/* upstream keep-alive (waypoint_pool.c) */
	struct wp_idle *idle;
	size_t n_idle, cap_idle, n_idle_streams;
	struct ev_timer pool_sweep;
	bool stopping;
	struct wp_rec_cache *rec_cache; /* wp_record's series cache (WP_REC_CACHE_SLOTS) */
	void *obj_free[WP_OBJ_N];	/* wp_obj_new's free lists */
	unsigned n_obj_free[WP_OBJ_N];
	struct wp_spare spare[WP_SPARES]; /* wp_buf_init / wp_buf_fini */
	unsigned n_spare;
};

/* ---- HTTP (waypoint_http.c, waypoint_h2.c) ----------------------------------------------------
 */
/* An HTTP/2 request while its HEADERS arrive (waypoint_h2.c). */
struct h2_req {
	struct buf head; /* regular header lines, HTTP/1.1 form */
	char method[24];
	char path[L7_PATH_MAX];
	char authority[256];
	bool has_cl, bad;
};
struct wp_h2;
struct xchg;
struct ustr;

struct dstr {
	struct wstream s; /* first */
	struct wp_worker *wk;
	struct wp_snap *snap;
	const struct config_service *svc;  /* destination service (VIP authority) */
	const struct config_workload *dwl; /* destination workload (workload authority) */
	const struct config_workload *src_wl;
	struct net_addr dst;
	uint16_t port;
	char src_ip[NET_IP_STRLEN];
	struct config_ip src_cip;
	bool have_src_ip;
	char peer_id[TLS_URI_SIZE];
	char principal[TLS_URI_SIZE];
	struct buf in, out;
	struct http1_parser p;
	bool peer_eof, closing, shut, first;
	size_t unacked; /* received from the client, not yet credited */
	struct xchg *x;
	/* HTTP/2 (waypoint_h2.c): the connection side owns the nghttp2 session; each h2 stream
	 * is a child dstr that sees its request as HTTP/1.1 and whose HTTP/1.1 response is
	 * translated back. */
	struct wp_h2 *h2;
	struct dstr *parent;
	struct dstr *h2next, *h2prev;
	int32_t h2_sid;
	void *h2_req;		/* child: the request while its HEADERS arrive */
	struct http1_parser rp; /* child: parses its own HTTP/1.1 output */
	struct buf h2body;	/* child: response body for the data provider */
	bool h2_chunked_in, h2_submitted, h2_eof, h2_closed;
	bool h2_direct; /* child: the upstream response goes to nghttp2 as is (wp_h2_child_head) */
	bool l4;	/* the port's appProtocol is TCP: one relayed connection, no HTTP */
	/* Idle timeouts (waypoint_http.c): the loop time of the last byte either way; the timer
	 * of a tunnel's stream, which also checks the streams of its HTTP/2 connection; set once
	 * an idle stream was ended (END_STREAM or GOAWAY): reset if the client keeps it open. */
	uint64_t active_ms;
	struct ev_timer idle_timer;
	bool idle_shut;
};

struct ustr {
	struct wstream s; /* first */
	struct xchg *x;	  /* NULL once its exchange finished */
	struct buf in, out;
	struct http1_parser p;
	bool peer_eof, closed;
	size_t unacked; /* received from the backend, not yet credited */
	bool in_gone;	/* wp_stream_gone runs: it frees u itself */
	bool mirror;	/* a RequestMirror copy: no exchange, the response is discarded */
	/* keep-alive: parked in wk's pool (waypoint_pool.c) between exchanges */
	bool idle;
	struct wp_worker *wk;
	struct ustr *inext, *iprev;
	size_t pool_slot;
	uint64_t idle_since_ms;
	bool shut; /* mirror: write side shut after the request */
	/* s.tcp: the socket to a plain-TCP endpoint (waypoint_tcp.c) */
	int tcp_fd;
	struct ev_io tcp_io;
	struct ev_loop *tcp_loop;
	struct net_addr tcp_dst;
	bool tcp_connecting, tcp_rd_off;
};

/* waypoint_tcp.c */
enum wp_tcp_ev {
	WP_TCP_CONNECTED,
	WP_TCP_FAILED, /* the connection failed: nothing reached the endpoint */
	WP_TCP_DATA,   /* more bytes in u->in */
	WP_TCP_EOF,
	WP_TCP_WRITABLE, /* u->out drained */
	WP_TCP_CLOSED,	 /* read/write error */
};
/* Connects u (fresh, s.up) to dst; events arrive in wp_up_tcp. 0 or -E_* (eb). */
int wp_tcp_open(struct wp_worker *wk, struct ustr *u, const struct net_addr *dst,
		struct errbuf *eb);
void wp_tcp_flush(struct ustr *u);  /* u->out has bytes to send */
void wp_tcp_credit(struct ustr *u); /* the client side has room again */
void wp_tcp_close(struct ustr *u);  /* from ustr_free */
/* Half-closes the socket (relay: the client's EOF) once connected; whether it was done. */
bool wp_tcp_shutdown_write(struct ustr *u);
/* waypoint_pool.c. put: parks u (its exchange is done, nothing buffered) under endpoint
 * uid:port; false when it cannot be reused (the caller releases it). take: the most recent
 * usable idle stream to that endpoint (identity: the tunnel's expected peer) or NULL. event: an
 * idle stream got bytes (data) or an EOF: it is dropped (a reset frees it through
 * wp_stream_gone). */
void wp_pool_init(struct wp_worker *wk);
void wp_pool_fini(struct wp_worker *wk);
bool wp_pool_put(struct wp_worker *wk, struct ustr *u, const char *uid, uint16_t port);
struct ustr *wp_pool_take(struct wp_worker *wk, const char *uid, uint16_t port, bool tcp,
			  const char *identity);
void wp_pool_event(struct ustr *u, bool data);
void wp_pool_remove(struct ustr *u); /* from ustr_free */
void wp_pool_drop_tunnel(struct wtun *t);
void wp_pool_close_all(struct wp_worker *wk);
/* waypoint_http.c: lets go of an upstream stream (half-close when clean, else reset; freed when
 * its stream closes, at once when it never opened or is a plain-TCP socket). */
void wp_ustr_release(struct ustr *u, bool clean);
/* waypoint_http.c, for waypoint_tcp.c (may free u) */
void wp_up_tcp(struct ustr *u, enum wp_tcp_ev ev, const char *why);
bool wp_ustr_backlogged(const struct ustr *u);

struct xchg {
	struct dstr *d;
	struct ustr *u;
	uint64_t start_ms;
	char method[24];
	char path[L7_PATH_MAX];
	char host[256];
	char req_id[48];
	char traceparent[64]; /* started here when the client sent none */
	char upstream[HBONE_AUTHORITY_MAX + 1];
	const char *flags;
	const char *reason;
	int status;
	bool local, req_end, resp_started, resp_end, head_req, chunked_up, chunked_out, close_after;
	int client_version;
	uint64_t req_bytes, resp_bytes;
	const struct config_route *route;
	size_t rule_index;
	const struct config_l7_policy *policy;
	size_t policy_rule;
	const struct config_header_filter *resp_mod;
	char *inflight_uid; /* the endpoint, counted in the worker's in-flight requests */
	const struct config_service *dst_svc;
	const struct config_workload *dst_wl;
	struct ev_timer timer;
	/* Retries: every try re-sends `replay` (the upstream request head and framed body, kept
	 * while it fits in WP_REPLAY_MAX) on a new upstream stream. */
	const struct config_route_retry *retry;
	struct buf replay;
	size_t replay_head; /* the head's length in replay */
	bool replay_ok, idempotent, up_sent, retry_wait, reported;
	unsigned attempt; /* tries started */
	uint64_t deadline_ms, try_ms;
	struct ev_timer rtimer; /* backoff, or the per-try timeout */
	int http_method;	/* enum http1_method of the request */
	const struct config_service *bsvc;
	const struct config_workload *bwl;
	uint16_t bport;
	char last_uid[256]; /* the previous try's endpoint (retries prefer another) */
	const struct config_mirror *mirrors[WP_MAX_MIRRORS];
	size_t n_mirrors;
	struct buf mirror_head; /* the request head for mirrors (Host: <host>-shadow) */
	/* A raw byte relay both ways (waypoint_http.c relay_pump): an appProtocol TCP connection
	 * from the start (tcp), or an Upgrade / CONNECT request after its 101 / 2xx. */
	bool relay, tcp, upgrade;
	bool tcp_opened; /* istio_tcp_connections_opened_total counted */
	/* istio_tcp_{received,sent}_bytes_total of an appProtocol TCP connection, added to as its
	 * bytes move (so a long connection shows its traffic before it closes) */
	struct metrics_series *m_tcp_received, *m_tcp_sent;
	uint64_t req_counted, resp_counted;
	bool up_shut; /* the client's EOF went on to the upstream */
	bool up_eof;  /* the upstream's EOF was seen (goes on to the client once d->out drains) */
	/* keep-alive: the response let the upstream connection persist; this try runs on a
	 * reused stream; the one re-send on a fresh stream after a reused one failed was made */
	bool up_keep, reused, reuse_retried;
	uint16_t up_port; /* the try's endpoint port (with last_uid: the pool key) */
};

/* The request bytes waiting to go upstream are past WP_CREDIT_LOW: the client's are not
 * credited back until they drain (waypoint_http.c dstr_credit, waypoint_h2.c child_credit). */
static inline bool wp_up_backlogged(const struct xchg *x)
{
	return x && x->u && buf_len(&x->u->out) >= WP_CREDIT_LOW;
}

/* waypoint_http.c, for waypoint_h2.c */
void wp_dstr_process(struct dstr *d);
void wp_dstr_end(struct dstr *d);
void wp_dstr_free(struct dstr *d);
/* Credits the backend's bytes once the client side has room (see WP_CREDIT_LOW). */
void wp_ustr_credit(struct ustr *u);
/* waypoint_h2.c: an HTTP/2 prior-knowledge stream */
void wp_h2_start(struct dstr *d);	/* d->in starts with the preface */
void wp_h2_input(struct dstr *d);	/* more bytes in d->in (or d->peer_eof) */
void wp_h2_pump(struct dstr *d);	/* send what the session has (HBONE writable) */
void wp_h2_child_flush(struct dstr *c); /* the child wrote HTTP/1.1 response bytes */
/* An upstream response head for child c, submitted without an HTTP/1.1 round trip (its body then
 * goes to c->h2body, its end sets c->h2_eof); returns its HTTP/1.1 size (for the metrics). */
size_t wp_h2_child_head(struct dstr *c, const struct http1_msg *m,
			const struct config_header_filter *mod, bool no_body);
/* waypoint_http.c: calls emit for each field of the upstream response m that the client gets:
 * no hop-by-hop fields nor Content-Length, the route's ResponseHeaderModifier applied. */
void wp_resp_fields(const struct http1_msg *m, const struct config_header_filter *mod,
		    void (*emit)(void *ctx, struct slice name, struct slice value), void *ctx);
/* waypoint_http.c: whether name is in names / in the fields h (case-insensitive). */
bool wp_in_names(struct slice name, const char **names, size_t n);
bool wp_in_headers(struct slice name, const struct config_http_header *h, size_t n);
void wp_h2_child_reset(struct dstr *c);
/* Idle timeouts of an HTTP/2 connection's streams (see waypoint_opts): ends the expired ones
 * and returns the earliest deadline of the others (UINT64_MAX: none); *streams: it has any. */
uint64_t wp_h2_idle_check(struct dstr *d, uint64_t now, bool *streams);
/* No stream for the idle timeout: GOAWAY, then the connection ends. */
void wp_h2_idle_close(struct dstr *d);
/* waypoint_http.c: the stream idle timeout of one request (h2 children too). */
void wp_dstr_idle_expire(struct dstr *d);
/* The child's upstream took request bytes: give the client's windows back what it can. */
void wp_h2_child_credit(struct dstr *c);
void wp_h2_end(struct dstr *d); /* the HBONE stream is gone: children first */

/* One finished request for telemetry (waypoint.c). */
struct wp_record {
	const struct config_workload *src_wl, *dst_wl;
	const struct config_service *dst_svc;
	const char *src_id, *dst_id;
	const char *method, *authority, *path, *flags, *upstream, *request_id;
	const char *route, *policy, *reason;
	size_t route_rule, policy_rule;
	unsigned attempts;
	bool has_route, has_policy;
	bool tcp; /* an appProtocol TCP connection: "connection complete", istio_tcp_* metrics */
	bool tcp_opened; /* istio_tcp_connections_opened_total was counted (wp_record_tcp_open) */
	int status;
	uint64_t duration_ms, req_bytes, resp_bytes;
	/* TCP: the bytes already added to istio_tcp_{received,sent}_bytes_total as they moved */
	uint64_t req_counted, resp_counted;
};
void wp_record(struct waypoint *w, struct wp_worker *wk, const struct wp_record *r);
/* An appProtocol TCP connection got its upstream: istio_tcp_connections_opened_total, and the
 * byte counters of its series (received: from the client, sent: to it) for adding bytes as
 * they move; series live as long as the registry. */
void wp_record_tcp_open(struct waypoint *w, const struct wp_record *r,
			struct metrics_series **received, struct metrics_series **sent);

/* waypoint.c */
/* A zeroed object of kind k (from wk's free list when it has one; wk may be NULL). */
void *wp_obj_new(struct wp_worker *wk, enum wp_obj k);
void wp_obj_free(struct wp_worker *wk, enum wp_obj k, void *p);
/* buf_init / buf_fini that reuse the worker's spare allocations (wk may be NULL). */
void wp_buf_init(struct wp_worker *wk, struct buf *b, size_t max);
void wp_buf_fini(struct wp_worker *wk, struct buf *b);
struct wp_snap *wp_snap_get(struct waypoint *w);
void wp_snap_put(struct wp_snap *s);
uint64_t wp_rand(struct wp_worker *wk);
/* Outlier ejection: whether endpoint uid is ejected now; a try's outcome on it (failure = 5xx
 * or connect failure / reset). Both no-ops when o.outlier_consecutive is 0. */
bool wp_outlier_ejected(struct waypoint *w, const char *uid, uint64_t now_ms);
void wp_outlier_report(struct waypoint *w, const char *uid, bool failure, uint64_t now_ms);
/* In-flight requests per endpoint workload uid on this worker: get, +1, -1 (entries at 0 go). */
uint32_t wp_inflight_get(const struct wp_worker *wk, const char *uid);
void wp_inflight_add(struct wp_worker *wk, const char *uid, int delta);
/* Server tunnel events for a stream (request, data, eof, writable, closed). */
void wp_down_event(struct wtun *t, const struct hbone_event *ev);
/* Client tunnel events for an upstream stream. */
void wp_up_event(struct wtun *t, struct wstream *s, const struct hbone_event *ev);
/* The tunnel of s failed or closed before s ended. */
void wp_stream_gone(struct wstream *s, const char *why);

/* waypoint_tun.c */
void wtun_kick(struct wtun *t);
void wtun_close(struct wtun *t, const char *why);
void wtun_add(struct wtun *t, struct wstream *s);
void wtun_del(struct wstream *s);
/* The worker's loop stopped: closes and frees every tunnel (their streams end first). */
void wtun_close_all(struct wp_worker *wk);
void wp_on_accept(struct net_listener *l, int fd, const struct net_addr *peer);
/* Opens an upstream stream s (s->up) to target (ip:hbone_port) with :authority, expecting
 * dst_id, presenting the waypoint's identity; reuses a pooled tunnel. The stream's events
 * arrive in wp_up_event. 0 or -E_* (eb). */
int wp_upstream_open(struct wp_worker *wk, struct wp_snap *snap, struct wstream *s,
		     const struct net_addr *target, const char *authority, const char *dst_id,
		     struct errbuf *eb);
/* Writes what fits of out into s (once its stream id exists); returns 0 or -E_*. */
int wp_stream_flush(struct wstream *s, struct buf *out);

#endif
