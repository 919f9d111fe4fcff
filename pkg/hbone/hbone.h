/* HBONE (HTTP/2 classic CONNECT tunnels, DESIGN.md §2) as a sans-I/O protocol core over nghttp2,
 * for both the outbound (client) and the inbound :15008 (server) side. */
#ifndef AMBIENT_HBONE_H
#define AMBIENT_HBONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pkg/base/base.h"
#include "pkg/net/net.h"

/*
 * ---- what this is -------------------------------------------------------------------------------
 * One struct hbone_session per HTTP/2 connection. It never touches a socket or TLS: the caller
 * pushes the plaintext it got from tls_conn (hbone_session_push), pulls the plaintext to give to
 * tls_conn (hbone_session_pull / _pull_done), and calls hbone_session_tick() with the monotonic
 * time at hbone_session_next_tick() for the PING keepalive. Everything else arrives as events.
 *
 * ---- wire contract (ztunnel-and-cni.md §3.2-3.4)
 * --------------------------------------------------
 * - Classic CONNECT: `:method CONNECT`, `:authority ip:port` or `[v6]:port`, no :scheme/:path;
 *   optional `baggage`, `forwarded`, `traceparent`, `x-forwarded-network`. nghttp2's HTTP
 *   messaging checks stay on, so a CONNECT carrying :path/:scheme or :protocol (extended CONNECT
 *   is never enabled) is reset by nghttp2 before we see it. Other methods reach the application
 *   as a request with ok == false, which answers 400 as ztunnel does.
 * - SETTINGS: INITIAL_WINDOW_SIZE 4 MiB, MAX_FRAME_SIZE 1 MiB, MAX_HEADER_LIST_SIZE 16 KiB
 *   (client) / 64 KiB (server, enforced, not just advertised), server MAX_CONCURRENT_STREAMS 200,
 *   client ENABLE_PUSH 0; connection window raised to 16 MiB with a WINDOW_UPDATE.
 * - A client session takes at most min(100, peer's MAX_CONCURRENT_STREAMS) streams;
 *   hbone_session_can_open() turns false at that point and the pool opens another connection.
 * - PING after 10 s without receiving anything; no ACK within 20 s fails the session
 *   (-E_TIMEOUT). nghttp2's flood guards stay at the library defaults: 8 CONTINUATIONs per
 *   header block, 1000 queued ACK-type frames, RST_STREAM rate limit (burst 1000, 33/s).
 * - Responses: 200 opens the tunnel; anything else ends it (the server follows a non-200 with
 *   RST_STREAM NO_ERROR if the client has not finished, RFC 9113 §8.1; the client cancels a
 *   stream whose response was not 200). A client holds its DATA until the 200 arrives.
 *
 * ---- flow control is the backpressure ---------------------------------------------------------
 * Received DATA is handed to the application in HBONE_EV_DATA (a borrowed slice). The window is
 * credited back to the peer only when the application calls hbone_stream_consumed() after it
 * forwarded the bytes, so a slow TCP reader stops the peer after 4 MiB on that stream (16 MiB on
 * the connection). On the way out, hbone_stream_write() copies into a per-stream send buffer of
 * at most cfg.stream_send_buf bytes and returns how much it took; HBONE_EV_WRITABLE says when
 * half of it has drained after a short write. When a stream closes, bytes the application has
 * not yet acknowledged are credited to the connection window at once (the stream can receive
 * nothing more), and hbone_stream_consumed() on it then returns -E_NOTFOUND.
 *
 * ---- stream states (RFC 9113 §5.1 as seen through this API) -----------------------------------
 *
 *              hbone_stream_open()  /  HBONE_EV_REQUEST (server)
 *   idle ------------------------------------------------------> open
 *                                       (client: data held until HBONE_EV_RESPONSE 200;
 *                                        server: until hbone_stream_respond(200))
 *                                          |                         |
 *         hbone_stream_shutdown_write()    |                         | HBONE_EV_PEER_EOF
 *         (END_STREAM once the send        |                         | (peer sent END_STREAM)
 *          buffer has drained)             v                         v
 *                              half-closed(local)         half-closed(remote)
 *                                          |                         |
 *                                          +--- the other side ------+
 *                                                     |
 *                                                     v
 *                                   closed: HBONE_EV_CLOSED (error_code 0)
 *
 *   From any state: hbone_stream_reset(code) -> RST_STREAM -> HBONE_EV_CLOSED(code);
 *   peer RST_STREAM -> HBONE_EV_RESET(code) then HBONE_EV_CLOSED(code); a non-200 response,
 *   a GOAWAY below the stream's id, or a session failure also end in HBONE_EV_CLOSED.
 *   HBONE_EV_CLOSED is always the last event of a stream; its id is invalid afterwards.
 *
 * ---- session states -----------------------------------------------------------------------------
 *
 *   new --preface/SETTINGS--> running --hbone_session_shutdown() or peer GOAWAY--> draining
 *                                |                                                   |
 *                                | protocol error (GOAWAY queued), PING timeout,     | last
 *                                | memory limit, bad preface                         | stream
 *                                v                                                   v
 *                             failed (hbone_session_error/reason)            done (no read, no
 *                             pull may still flush a GOAWAY                  write wanted)
 *   The caller closes the connection once !want_read && !want_write.
 *
 * ---- events -------------------------------------------------------------------------------------
 * cfg.on_event is called synchronously from push, pull and tick. Inside it the application may
 * call any hbone_stream_* function and hbone_session_shutdown/can_open/stats, but not
 * hbone_session_push/pull/tick/free (they return -E_STATE / are refused). Pointers in an event
 * are valid during the call only.
 *
 * ---- memory -------------------------------------------------------------------------------------
 * All of nghttp2's memory for a session goes through a counting allocator capped at
 * cfg.mem_limit (default 1 MiB; exceeding it fails the session with -E_LIMIT, not the process).
 * Measured nghttp2 use: ~20 KiB for an idle session, ~+0.5 KiB per open stream. Our part:
 * struct hbone_session (~0.5 KiB) and per stream a struct (~0.2 KiB) plus its send buffer (grows
 * to at most cfg.stream_send_buf, default 256 KiB). While a server request's header block is
 * being received the four extra header values are held (at most 8 KiB each) and freed right after
 * HBONE_EV_REQUEST. Received DATA is never buffered here. Worst case per server session:
 * mem_limit + 200 x (0.2 KiB + stream_send_buf).
 */

#define HBONE_STREAM_WINDOW (4u << 20)	   /* SETTINGS_INITIAL_WINDOW_SIZE */
#define HBONE_CONN_WINDOW (16u << 20)	   /* connection receive window */
#define HBONE_MAX_FRAME (1u << 20)	   /* SETTINGS_MAX_FRAME_SIZE */
#define HBONE_SERVER_MAX_STREAMS 200	   /* SETTINGS_MAX_CONCURRENT_STREAMS we advertise */
#define HBONE_CLIENT_MAX_STREAMS 100	   /* streams per client connection before a new one */
#define HBONE_CLIENT_MAX_HEADER_LIST 16384 /* SETTINGS_MAX_HEADER_LIST_SIZE, client */
#define HBONE_SERVER_MAX_HEADER_LIST 65536 /* SETTINGS_MAX_HEADER_LIST_SIZE, server */
#define HBONE_MAX_HEADER_VALUE 8192	   /* longest baggage/forwarded/... value kept */
#define HBONE_AUTHORITY_MAX 64		   /* longest authority accepted ("[v6]:port" fits) */
#define HBONE_PING_INTERVAL_MS 10000
#define HBONE_PING_TIMEOUT_MS 20000
#define HBONE_DEFAULT_SEND_BUF (256u << 10)
#define HBONE_DEFAULT_MEM_LIMIT (1u << 20)
#define HBONE_REASON_SIZE 192

/* HTTP/2 error codes used with hbone_stream_reset (RFC 9113 §7). */
#define HBONE_NO_ERROR 0x0u
#define HBONE_PROTOCOL_ERROR 0x1u
#define HBONE_INTERNAL_ERROR 0x2u
#define HBONE_REFUSED_STREAM 0x7u
#define HBONE_CANCEL 0x8u
#define HBONE_CONNECT_ERROR 0xau

struct hbone_session;

enum hbone_role { HBONE_CLIENT = 0, HBONE_SERVER };

enum hbone_event_type {
	HBONE_EV_REQUEST = 1, /* server: a CONNECT (or other) request; answer with _respond */
	HBONE_EV_RESPONSE,    /* client: the final response status */
	HBONE_EV_DATA,	      /* payload bytes; acknowledge with hbone_stream_consumed() */
	HBONE_EV_PEER_EOF,    /* the peer sent END_STREAM (map to shutdown(SHUT_WR)) */
	HBONE_EV_WRITABLE,    /* the send buffer drained to half after a short write */
	HBONE_EV_RESET,	      /* the peer sent RST_STREAM */
	HBONE_EV_CLOSED,      /* the stream is gone (always its last event) */
	HBONE_EV_GOAWAY,      /* the peer sent GOAWAY: no new streams on this session */
};

/* Extra request headers; NULL (or, in an event, a slice with p == NULL) = absent. */
struct hbone_headers {
	const char *baggage;
	const char *forwarded;
	const char *traceparent;
	const char *x_forwarded_network;
};

struct hbone_request {
	bool ok;		/* a CONNECT with a valid authority and headers */
	const char *reason;	/* why not ok ("authority: port 0 out of range 1..65535") */
	struct slice method;	/* as sent (truncated to 16 bytes) */
	struct slice authority; /* as sent (truncated to HBONE_AUTHORITY_MAX) */
	struct net_addr addr;	/* parsed authority when ok */
	struct slice baggage, forwarded, traceparent, x_forwarded_network; /* p NULL: absent */
};

struct hbone_event {
	enum hbone_event_type type;
	int32_t stream_id; /* 0 for HBONE_EV_GOAWAY */
	void *stream_user; /* from hbone_stream_open / hbone_stream_set_user */
	union {
		struct hbone_request request; /* HBONE_EV_REQUEST */
		int status;		      /* HBONE_EV_RESPONSE */
		struct slice data;	      /* HBONE_EV_DATA */
		uint32_t error_code;	      /* HBONE_EV_RESET, HBONE_EV_CLOSED */
		struct {
			int32_t last_stream_id;
			uint32_t error_code;
		} goaway; /* HBONE_EV_GOAWAY */
	};
};

typedef void (*hbone_event_fn)(void *ctx, struct hbone_session *s, const struct hbone_event *ev);

struct hbone_config {
	enum hbone_role role;
	hbone_event_fn on_event; /* required */
	void *ctx;
	size_t stream_send_buf;	   /* per-stream send buffer bound; 0 = HBONE_DEFAULT_SEND_BUF */
	size_t mem_limit;	   /* nghttp2 heap bound per session; 0 = HBONE_DEFAULT_MEM_LIMIT */
	uint32_t max_streams;	   /* client cap / server SETTINGS value; 0 = 100 / 200 */
	uint32_t ping_interval_ms; /* 0 = HBONE_PING_INTERVAL_MS */
	uint32_t ping_timeout_ms;  /* 0 = HBONE_PING_TIMEOUT_MS */
	/* Optional zero-copy output for DATA frames. Called from hbone_session_pull() with a frame
	 * header and the payload, still in the stream's send buffer; it sends (a prefix of) hd then
	 * p, in this order before anything pull returns afterwards, and returns how many of the
	 * hdlen + n bytes it took. The session keeps what it did not take and hands it out first
	 * from the next pull. Without it, DATA payload is copied into nghttp2's frame buffer. */
	size_t (*send_data)(void *ctx, const uint8_t *hd, size_t hdlen, const uint8_t *p, size_t n);
};

struct hbone_stream_stats {
	uint64_t bytes_in;  /* DATA payload received */
	uint64_t bytes_out; /* DATA payload handed to nghttp2 for sending */
	size_t unacked;	    /* received, not yet hbone_stream_consumed() */
	size_t send_queued; /* in the send buffer */
};

struct hbone_session_stats {
	uint64_t bytes_in;  /* HTTP/2 bytes pushed */
	uint64_t bytes_out; /* HTTP/2 bytes pulled */
	uint64_t streams_opened;
	size_t active_streams;
	size_t mem_used; /* nghttp2 heap now */
	size_t mem_peak;
};

/* ---- sessions ------------------------------------------------------------------------------- */

/* Makes a session and queues the preface (client), SETTINGS and the connection WINDOW_UPDATE.
 * NULL when cfg.mem_limit is too small for an idle session; aborts only when the heap is
 * exhausted (like xmalloc). */
struct hbone_session *hbone_session_new(const struct hbone_config *cfg, uint64_t now_ms);
/* Frees the session and every stream (no events). NULL is a no-op. */
void hbone_session_free(struct hbone_session *s);

/* Feeds n plaintext bytes received from the peer; events fire from here. 0 or -E_* (the session
 * has failed; see hbone_session_reason). */
int hbone_session_push(struct hbone_session *s, const uint8_t *in, size_t n);
/* Points *out at bytes to send (*len == 0: nothing now). The bytes stay valid until
 * hbone_session_pull_done; call pull again until it returns an empty range. 0 or -E_*. */
int hbone_session_pull(struct hbone_session *s, const uint8_t **out, size_t *len);
/* Marks n bytes of the last pulled range as sent (n may be less than offered). */
void hbone_session_pull_done(struct hbone_session *s, size_t n);
bool hbone_session_want_read(const struct hbone_session *s);
bool hbone_session_want_write(const struct hbone_session *s);

/* Keepalive: sends a PING when due and fails the session with -E_TIMEOUT when the last one went
 * unanswered for ping_timeout_ms. Returns 0 or -E_*. */
int hbone_session_tick(struct hbone_session *s, uint64_t now_ms);
/* When hbone_session_tick wants to run next (monotonic ms). */
uint64_t hbone_session_next_tick(const struct hbone_session *s);

/* Graceful close: GOAWAY (NO_ERROR) naming the last stream we accepted; existing streams go on,
 * no new ones. 0 or -E_STATE. */
int hbone_session_shutdown(struct hbone_session *s);

/* Whether a client session may open another stream now (not failed, no GOAWAY either way,
 * under min(max_streams, peer's MAX_CONCURRENT_STREAMS), stream ids left). */
bool hbone_session_can_open(const struct hbone_session *s);
size_t hbone_session_active_streams(const struct hbone_session *s);
/* 0 while healthy, else the -E_* that failed it (E_PROTO, E_TIMEOUT, E_LIMIT, ...). */
int hbone_session_error(const struct hbone_session *s);
/* "" while healthy, else why it failed ("PING timeout: no ACK within 20000 ms"). */
const char *hbone_session_reason(const struct hbone_session *s);
void hbone_session_stats(const struct hbone_session *s, struct hbone_session_stats *st);

/* ---- streams -------------------------------------------------------------------------------- */

/* Client: queues a CONNECT to authority ("10.0.0.1:8080", "[fd00::1]:80", parsed strictly) with
 * the optional headers (values: visible ASCII and inner spaces, at most HBONE_MAX_HEADER_VALUE).
 * Returns the stream id (> 0), -E_STATE (server session, failed, GOAWAY), -E_LIMIT (at the stream
 * cap: see can_open), or -E_INVAL with a reason in eb (NULL eb is fine). */
int32_t hbone_stream_open(struct hbone_session *s, const char *authority,
			  const struct hbone_headers *h, void *user, struct errbuf *eb);
/* Server: answers a request. 200 opens the tunnel; 400/401/503 (any 1xx..5xx but 200 is
 * allowed) end it. -E_NOTFOUND (gone), -E_STATE (client session or already answered). */
int hbone_stream_respond(struct hbone_session *s, int32_t id, int status);
/* Copies up to n bytes into the stream's send buffer; returns how many it took (0 when full:
 * wait for HBONE_EV_WRITABLE), -E_STATE after shutdown_write or a non-200, -E_NOTFOUND. */
ssize_t hbone_stream_write(struct hbone_session *s, int32_t id, const void *p, size_t n);
/* Zero-copy variant of hbone_stream_write(): returns the free room in the send buffer (0 when it
 * is full, with HBONE_EV_WRITABLE to follow as after a short write, or when the stream cannot
 * take data) and points *p at the part of it already allocated at the buffer's tail (*cap bytes,
 * maybe 0). The caller fills a prefix of that and hands it over with hbone_stream_write_commit()
 * before any other call on the session; the rest of the room takes hbone_stream_write(). */
size_t hbone_stream_write_reserve(struct hbone_session *s, int32_t id, uint8_t **p, size_t *cap);
void hbone_stream_write_commit(struct hbone_session *s, int32_t id, size_t n);
/* Free room in the send buffer (0 when the stream is gone or shut). */
size_t hbone_stream_write_space(const struct hbone_session *s, int32_t id);
/* Acknowledges n received bytes as forwarded, reopening the peer's window. -E_INVAL when n is
 * more than was received and not yet acknowledged, -E_NOTFOUND after HBONE_EV_CLOSED. */
int hbone_stream_consumed(struct hbone_session *s, int32_t id, size_t n);
/* Half-close: END_STREAM after what is already buffered. Idempotent. */
int hbone_stream_shutdown_write(struct hbone_session *s, int32_t id);
/* RST_STREAM with error_code (HBONE_CANCEL, ...); HBONE_EV_CLOSED follows. */
int hbone_stream_reset(struct hbone_session *s, int32_t id, uint32_t error_code);
int hbone_stream_set_user(struct hbone_session *s, int32_t id, void *user);
void *hbone_stream_user(const struct hbone_session *s, int32_t id);
int hbone_stream_stats(const struct hbone_session *s, int32_t id, struct hbone_stream_stats *st);

/* ---- authority --------------------------------------------------------------------------------
 */

/* Strict `:authority` parse: an IPv4 dotted quad (no leading zeros) or a bracketed IPv6 literal
 * (no zone), ':', a port 1..65535 (no sign, no leading zero), nothing else. -E_PARSE with the
 * reason in eb ("IPv6 address must be in brackets", "port 0 out of range 1..65535", ...). */
int hbone_authority_parse(const char *s, size_t n, struct net_addr *out, struct errbuf *eb);
/* "10.0.0.1:8080" / "[fd00::1]:80" (RFC 5952) into out; returns out. */
char *hbone_authority_format(const struct net_addr *a, char *out, size_t cap);

/* "CANCEL", "NO_ERROR", ... for an HTTP/2 error code. */
const char *hbone_error_code_str(uint32_t code);

#endif
