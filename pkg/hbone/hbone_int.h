/* Private types shared by the HBONE session, stream and authority files. */
#ifndef AMBIENT_HBONE_INT_H
#define AMBIENT_HBONE_INT_H

#include <nghttp2/nghttp2.h>

#include "pkg/buf/buf.h"
#include "pkg/hbone/hbone.h"

#define HBONE_METHOD_MAX 16
#define HBONE_FRAME_HDLEN 9 /* RFC 9113 §4.1 */
/* DATA payload per frame with a cfg.send_data sink (within the peer's SETTINGS_MAX_FRAME_SIZE):
 * the receiver then gets about one chunk per TLS record instead of two. Without a sink, nghttp2's
 * 16 KiB. */
#define HBONE_SEND_FRAME (64u << 10)

/* A server request while its header block arrives; freed after HBONE_EV_REQUEST. */
struct hbone_req_acc {
	char method[HBONE_METHOD_MAX];
	size_t method_len;
	char authority[HBONE_AUTHORITY_MAX];
	size_t authority_len;
	bool authority_long;
	char *hdr[4]; /* baggage, forwarded, traceparent, x-forwarded-network */
	size_t hdr_len[4];
	size_t list_size; /* RFC 9113 §6.5.2 accounting: name + value + 32 per field */
	char bad[128];	  /* first problem found, "" if none */
};

struct hbone_stream {
	struct hbone_stream *prev, *next;
	struct hbone_session *s;
	int32_t id;
	void *user;
	bool local;	     /* we opened it (client) */
	bool ready;	     /* DATA may flow out: client got 200 / server answered 200 */
	bool responded;	     /* server: respond called; client: final response seen */
	bool rejected;	     /* non-200 */
	bool deferred;	     /* our data source returned NGHTTP2_ERR_DEFERRED */
	bool wr_shut;	     /* shutdown_write called */
	bool eof_sent;	     /* END_STREAM handed to nghttp2 */
	bool rst_sent;	     /* we reset it: drop late DATA */
	bool want_writable;  /* a write came up short */
	bool notify_pending; /* emit HBONE_EV_WRITABLE after this pull */
	uint32_t rst_code;
	int status;
	size_t hdr_list; /* client: response header list size */
	size_t unacked;
	uint64_t bytes_in, bytes_out;
	struct buf sendbuf;
	struct hbone_req_acc *req;
};

struct hbone_mem {
	size_t used, peak, limit;
};

struct hbone_session {
	struct hbone_config cfg;
	nghttp2_session *ngh;
	nghttp2_mem mem_fns;
	struct hbone_mem mem;
	struct hbone_stream *streams; /* every stream we know, doubly linked */
	size_t nstreams;
	size_t nlocal; /* client streams counted against the cap */
	size_t notify_count;
	int in_cb; /* > 0 while an event callback runs */

	const uint8_t *out;
	size_t out_len, out_off;
	/* The part of a zero-copy DATA frame cfg.send_data did not take; goes out before `out`.
	 * At most one frame: while it holds bytes the next DATA frame waits (WOULDBLOCK). */
	struct buf pend;
	bool pull_pend; /* the last pull handed out pend */

	uint64_t now;
	uint64_t last_rx; /* monotonic ms of the last tick that saw input */
	bool rx_since_tick;
	bool ping_out;
	uint64_t ping_sent;
	uint64_t ping_seq;

	bool goaway_recv, goaway_sent;
	int err;   /* -E_* once failed */
	bool dead; /* failed with nothing left worth sending */
	char reason[HBONE_REASON_SIZE];
	char last_ngh_err[128]; /* nghttp2's last error message, for the failure reason */

	uint64_t bytes_in, bytes_out, streams_opened;
};

/* hbone_session.c */
void hbone_emit(struct hbone_session *s, struct hbone_event *ev);
void hbone_fail(struct hbone_session *s, int err, bool dead, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
struct hbone_stream *hbone_stream_find(const struct hbone_session *s, int32_t id);
struct hbone_stream *hbone_stream_add(struct hbone_session *s, int32_t id, bool local);
void hbone_stream_del(struct hbone_session *s, struct hbone_stream *st);

/* hbone_stream.c */
int hbone_send_data_cb(nghttp2_session *ngh, nghttp2_frame *f, const uint8_t *hd, size_t len,
		       nghttp2_data_source *src, void *ud);
ssize_t hbone_data_read_cb(nghttp2_session *ngh, int32_t id, uint8_t *buf, size_t len,
			   uint32_t *flags, nghttp2_data_source *src, void *ud);
void hbone_flush_writable(struct hbone_session *s);
int hbone_on_header(nghttp2_session *ngh, const nghttp2_frame *f, const uint8_t *name,
		    size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud);
void hbone_request_emit(struct hbone_session *s, struct hbone_stream *st, bool eof);
void hbone_response_emit(struct hbone_session *s, struct hbone_stream *st);
bool hbone_header_value_ok(const char *v, size_t n);

#endif
