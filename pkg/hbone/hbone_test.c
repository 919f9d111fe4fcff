/* Tests for pkg/hbone: client and server sessions wired back to back in memory, a raw nghttp2
 * client for malformed requests, and python3-h2 as an independent interop peer. */
#include "pkg/hbone/hbone.h"
#include "test/unit.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXID 1024

struct rec {
	bool req, ok, eof, reset, closed, resp;
	int status;
	uint32_t reset_code, close_code;
	char reason[200], authority[80], baggage[200], forwarded[200], traceparent[100];
	struct net_addr addr;
	uint8_t *rx;
	size_t rx_len, rx_cap;
	uint8_t *pend; /* echo bytes not yet taken by hbone_stream_write */
	size_t pend_len;
	int writable;
};

struct peer {
	struct hbone_session *s;
	struct rec *r; /* indexed by stream id */
	int auto_status;
	bool no_consume, echo;
	int goaways;
	uint32_t goaway_code;
	int closed;
	uint8_t *wire; /* what the zero-copy sink took, ahead of the next pulled range */
	size_t wire_len, sink_calls;
};

static void copy_slice(char *dst, size_t cap, struct slice s)
{
	size_t n = MIN(s.n, cap - 1);
	if (s.p)
		memcpy(dst, s.p, n);
	dst[s.p ? n : 0] = 0;
}

static void echo_more(struct peer *p, int32_t id, struct rec *r)
{
	ssize_t w = hbone_stream_write(p->s, id, r->pend, r->pend_len);

	if (w <= 0)
		return;
	CHECK_INT(hbone_stream_consumed(p->s, id, (size_t)w), 0);
	memmove(r->pend, r->pend + w, r->pend_len - (size_t)w);
	r->pend_len -= (size_t)w;
	if (r->pend_len == 0 && r->eof)
		hbone_stream_shutdown_write(p->s, id);
}

static void on_ev(void *ctx, struct hbone_session *s, const struct hbone_event *ev)
{
	struct peer *p = ctx;
	struct rec *r = ev->stream_id > 0 && ev->stream_id < MAXID ? &p->r[ev->stream_id] : NULL;

	(void)s;
	if (ev->type != HBONE_EV_GOAWAY && !r)
		return;
	switch (ev->type) {
	case HBONE_EV_REQUEST:
		r->req = true;
		r->ok = ev->request.ok;
		snprintf(r->reason, sizeof(r->reason), "%s",
			 ev->request.reason ? ev->request.reason : "");
		copy_slice(r->authority, sizeof(r->authority), ev->request.authority);
		copy_slice(r->baggage, sizeof(r->baggage), ev->request.baggage);
		copy_slice(r->forwarded, sizeof(r->forwarded), ev->request.forwarded);
		copy_slice(r->traceparent, sizeof(r->traceparent), ev->request.traceparent);
		r->addr = ev->request.addr;
		if (!ev->request.ok)
			CHECK_INT(hbone_stream_respond(p->s, ev->stream_id, 400), 0);
		else if (p->auto_status)
			CHECK_INT(hbone_stream_respond(p->s, ev->stream_id, p->auto_status), 0);
		break;
	case HBONE_EV_RESPONSE:
		r->resp = true;
		r->status = ev->status;
		break;
	case HBONE_EV_DATA:
		if (r->rx_len + ev->data.n > r->rx_cap) {
			r->rx_cap = (r->rx_len + ev->data.n) * 2;
			r->rx = realloc(r->rx, r->rx_cap);
		}
		memcpy(r->rx + r->rx_len, ev->data.p, ev->data.n);
		r->rx_len += ev->data.n;
		if (p->echo) {
			r->pend = realloc(r->pend, r->pend_len + ev->data.n);
			memcpy(r->pend + r->pend_len, ev->data.p, ev->data.n);
			r->pend_len += ev->data.n;
			echo_more(p, ev->stream_id, r);
		} else if (!p->no_consume) {
			CHECK_INT(hbone_stream_consumed(p->s, ev->stream_id, ev->data.n), 0);
		}
		break;
	case HBONE_EV_PEER_EOF:
		r->eof = true;
		if (p->echo && r->pend_len == 0)
			hbone_stream_shutdown_write(p->s, ev->stream_id);
		break;
	case HBONE_EV_WRITABLE:
		r->writable++;
		if (p->echo)
			echo_more(p, ev->stream_id, r);
		break;
	case HBONE_EV_RESET:
		r->reset = true;
		r->reset_code = ev->error_code;
		break;
	case HBONE_EV_CLOSED:
		CHECK(!r->closed);
		r->closed = true;
		r->close_code = ev->error_code;
		p->closed++;
		break;
	case HBONE_EV_GOAWAY:
		p->goaways++;
		p->goaway_code = ev->goaway.error_code;
		break;
	}
}

static void peer_init(struct peer *p, enum hbone_role role, const struct hbone_config *base)
{
	struct hbone_config cfg = base ? *base : (struct hbone_config){0};

	memset(p, 0, sizeof(*p));
	p->r = calloc(MAXID, sizeof(*p->r));
	cfg.role = role;
	cfg.on_event = on_ev;
	cfg.ctx = p;
	p->s = hbone_session_new(&cfg, 0);
	p->auto_status = 200;
}

static void peer_fini(struct peer *p)
{
	hbone_session_free(p->s);
	for (int i = 0; i < MAXID; i++) {
		free(p->r[i].rx);
		free(p->r[i].pend);
	}
	free(p->r);
	free(p->wire);
}

/* Moves everything a has to send into b; returns bytes moved. */
static size_t xfer(struct peer *a, struct peer *b)
{
	size_t moved = 0;

	for (;;) {
		const uint8_t *p;
		size_t n;

		if (hbone_session_pull(a->s, &p, &n) < 0)
			return moved;
		if (a->wire_len) {
			/* The sink's bytes were produced before the range pull returned. */
			hbone_session_push(b->s, a->wire, a->wire_len);
			moved += a->wire_len;
			a->wire_len = 0;
		}
		if (n == 0)
			return moved;
		hbone_session_push(b->s, p, n);
		hbone_session_pull_done(a->s, n);
		moved += n;
	}
}

static void pump(struct peer *a, struct peer *b)
{
	for (int i = 0; i < 100000; i++)
		if (xfer(a, b) + xfer(b, a) == 0)
			return;
	unit_fail(__FILE__, __LINE__, "pump did not settle");
}

static void pair(struct peer *c, struct peer *s)
{
	peer_init(c, HBONE_CLIENT, NULL);
	peer_init(s, HBONE_SERVER, NULL);
	pump(c, s);
}

static void unpair(struct peer *c, struct peer *s)
{
	peer_fini(c);
	peer_fini(s);
}

static uint8_t pat(size_t i, unsigned seed)
{
	return (uint8_t)(((i * 2654435761u) >> 13) ^ (i >> 20) ^ seed);
}

/* ---- authority ---------------------------------------------------------------------------------
 */

TEST(authority_ok)
{
	static const struct {
		const char *in, *out;
	} ok[] = {
		{"10.0.0.1:8080", "10.0.0.1:8080"},
		{"0.0.0.0:1", "0.0.0.0:1"},
		{"255.255.255.255:65535", "255.255.255.255:65535"},
		{"[fd00::1]:80", "[fd00::1]:80"},
		{"[FD00:0:0:0:0:0:0:1]:443", "[fd00::1]:443"},
		{"[::ffff:10.1.2.3]:80", "[::ffff:10.1.2.3]:80"},
	};
	for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
		struct net_addr a;
		struct errbuf eb = {0};
		char out[NET_ADDR_STRLEN];

		CHECK_INT(hbone_authority_parse(ok[i].in, strlen(ok[i].in), &a, &eb), 0);
		CHECK_STR(hbone_authority_format(&a, out, sizeof(out)), ok[i].out);
	}
}

TEST(authority_bad)
{
	static const struct {
		const char *in, *why;
	} bad[] = {
		{"", "empty authority"},
		{"example.com:80", "not an IP literal"},
		{"10.0.0.1", "missing port"},
		{"10.0.0.1:", "missing port after ':'"},
		{"10.0.0.1:0", "port 0 out of range 1..65535"},
		{"10.0.0.1:65536", "port 65536 out of range"},
		{"10.0.0.1:080", "leading zero"},
		{"10.0.0.1:+80", "not a decimal number"},
		{"10.0.0.01:80", "leading zero in part 4"},
		{"10.0.0.256:80", "part 4 out of range"},
		{"10.0.0:80", "expected 4 parts"},
		{"10.0.0.1.2:80", "unexpected '.'"},
		{"fd00::1:80", "IPv6 address must be in brackets"},
		{"[fd00::1]", "missing port"},
		{"[fd00::1]80", "expected ':' after ']'"},
		{"[fd00::1", "missing ']'"},
		{"[fe80::1%eth0]:80", "zone identifiers"},
		{"[fd00::g]:80", "unexpected character"},
		{"[1:2:3:4:5:6:7:8:9]:80", "bad IPv6 address"},
		{"user@10.0.0.1:80", "userinfo"},
		{" 10.0.0.1:80", "empty or non-digit"},
		{"10.0.0.1:80 ", "not a decimal number"},
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		struct net_addr a;
		struct errbuf eb = {0};

		CHECK_INT(hbone_authority_parse(bad[i].in, strlen(bad[i].in), &a, &eb), -E_PARSE);
		CHECK_CONTAINS(eb.msg, bad[i].why);
		CHECK_INT(a.len, 0);
	}
}

/* ---- CONNECT -----------------------------------------------------------------------------------
 */

TEST(connect_200_headers)
{
	struct peer c, s;
	struct hbone_headers h = {
		.baggage = "k8s.namespace.name=default,service.name=a",
		.forwarded = "for=\"10.0.0.9:4711\";host=b.default.svc",
		.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"};
	struct hbone_session_stats st;
	int32_t id;
	char out[NET_ADDR_STRLEN];

	pair(&c, &s);
	CHECK(hbone_session_can_open(c.s));
	id = hbone_stream_open(c.s, "[fd00::5]:8080", &h, NULL, NULL);
	REQUIRE(id == 1);
	pump(&c, &s);
	CHECK(s.r[id].req);
	CHECK(s.r[id].ok);
	CHECK_STR(s.r[id].authority, "[fd00::5]:8080");
	CHECK_STR(hbone_authority_format(&s.r[id].addr, out, sizeof(out)), "[fd00::5]:8080");
	CHECK_STR(s.r[id].baggage, h.baggage);
	CHECK_STR(s.r[id].forwarded, h.forwarded);
	CHECK_STR(s.r[id].traceparent, h.traceparent);
	CHECK(c.r[id].resp);
	CHECK_INT(c.r[id].status, 200);
	CHECK(!c.r[id].closed);
	CHECK_INT(hbone_session_active_streams(c.s), 1);
	CHECK_INT(hbone_session_active_streams(s.s), 1);
	hbone_session_stats(s.s, &st);
	fprintf(stderr, "mem: client used %zu peak %zu\n", st.mem_used, st.mem_peak);
	CHECK(st.mem_used > 0 && st.mem_used < 64 * 1024);
	CHECK_INT(hbone_session_error(c.s), 0);
	CHECK_STR(hbone_session_reason(c.s), "");
	unpair(&c, &s);
}

static void rejected(int status)
{
	struct peer c, s;
	int32_t id;

	pair(&c, &s);
	s.auto_status = status;
	id = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
	CHECK_INT(hbone_stream_write(c.s, id, "early", 5), 5); /* held until a 200 */
	pump(&c, &s);
	CHECK(c.r[id].resp);
	CHECK_INT(c.r[id].status, status);
	CHECK(c.r[id].closed);
	CHECK(s.r[id].closed);
	CHECK_INT(s.r[id].rx_len, 0);
	CHECK_INT(hbone_session_active_streams(c.s), 0);
	CHECK_INT(hbone_session_active_streams(s.s), 0);
	CHECK_INT(hbone_stream_write(c.s, id, "x", 1), -E_NOTFOUND);
	CHECK_INT(hbone_session_error(c.s), 0);
	CHECK_INT(hbone_session_error(s.s), 0);
	unpair(&c, &s);
}

TEST(connect_401)
{
	rejected(401);
}

TEST(connect_503)
{
	rejected(503);
}

TEST(open_validates)
{
	struct peer c, s;
	struct errbuf eb = {0};
	struct hbone_headers bad = {.baggage = "a=b\r\nx: y"};

	pair(&c, &s);
	CHECK_INT(hbone_stream_open(c.s, "svc.local:80", NULL, NULL, &eb), -E_INVAL);
	CHECK_CONTAINS(eb.msg, "not an IP literal");
	CHECK_INT(hbone_stream_open(c.s, "10.0.0.1:80", &bad, NULL, &eb), -E_INVAL);
	CHECK_CONTAINS(eb.msg, "baggage header");
	CHECK_INT(hbone_stream_open(s.s, "10.0.0.1:80", NULL, NULL, NULL), -E_STATE);
	CHECK_INT(hbone_session_active_streams(c.s), 0);
	CHECK_INT(hbone_stream_respond(c.s, 1, 200), -E_NOTFOUND);
	unpair(&c, &s);
}

/* ---- a raw nghttp2 client, to send what hbone_stream_open refuses to ----------------------------
 */

struct rawc {
	nghttp2_session *ngh;
	int status[MAXID];
	bool closed[MAXID];
	uint32_t code[MAXID];
};

static int raw_on_header(nghttp2_session *n, const nghttp2_frame *f, const uint8_t *name, size_t nl,
			 const uint8_t *v, size_t vl, uint8_t fl, void *ud)
{
	struct rawc *r = ud;

	(void)n;
	(void)fl;
	if (nl == 7 && !memcmp(name, ":status", 7) && vl == 3 && f->hd.stream_id < MAXID)
		r->status[f->hd.stream_id] = atoi((const char *)v) / 1; /* "401" -> 401 */
	return 0;
}

static int raw_on_close(nghttp2_session *n, int32_t id, uint32_t code, void *ud)
{
	struct rawc *r = ud;

	(void)n;
	if (id < MAXID) {
		r->closed[id] = true;
		r->code[id] = code;
	}
	return 0;
}

static void raw_init(struct rawc *r)
{
	nghttp2_session_callbacks *cb;

	memset(r, 0, sizeof(*r));
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, raw_on_header);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, raw_on_close);
	nghttp2_session_client_new(&r->ngh, cb, r);
	nghttp2_session_callbacks_del(cb);
	nghttp2_submit_settings(r->ngh, NGHTTP2_FLAG_NONE, NULL, 0);
}

static void raw_pump(struct rawc *r, struct peer *s)
{
	for (int i = 0; i < 100000; i++) {
		const uint8_t *p;
		ssize_t n;
		size_t moved = 0, m;

		while ((n = nghttp2_session_mem_send(r->ngh, &p)) > 0) {
			hbone_session_push(s->s, p, (size_t)n);
			moved += (size_t)n;
		}
		while (hbone_session_pull(s->s, &p, &m) == 0 && m > 0) {
			nghttp2_session_mem_recv(r->ngh, p, m);
			hbone_session_pull_done(s->s, m);
			moved += m;
		}
		if (!moved)
			return;
	}
}

static int32_t raw_connect(struct rawc *r, const char *method, const char *authority)
{
	nghttp2_nv nv[2] = {
		{(uint8_t *)":method", (uint8_t *)method, 7, strlen(method), 0},
		{(uint8_t *)":authority", (uint8_t *)authority, 10, strlen(authority), 0},
	};
	return nghttp2_submit_request(r->ngh, NULL, nv, 2, NULL, NULL);
}

TEST(connect_400_bad_authority)
{
	static const struct {
		const char *auth, *why;
	} cases[] = {
		{"backend.default.svc:80",
		 "authority \"backend.default.svc:80\": authority is not an IP"},
		{"10.0.0.1:0", "port 0 out of range 1..65535"},
		{"[fd00::1]", "missing port"},
		{"10.1.1.1:80:90", "IPv6 address must be in brackets"},
	};
	struct rawc r;
	struct peer s;

	peer_init(&s, HBONE_SERVER, NULL);
	raw_init(&r);
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		int32_t id = raw_connect(&r, "CONNECT", cases[i].auth);
		raw_pump(&r, &s);
		REQUIRE(id > 0 && id < MAXID);
		CHECK(s.r[id].req);
		CHECK(!s.r[id].ok);
		CHECK_CONTAINS(s.r[id].reason, cases[i].why);
		CHECK_INT(r.status[id], 400);
		CHECK(r.closed[id]);
	}
	CHECK_INT(hbone_session_error(s.s), 0);
	CHECK_INT(hbone_session_active_streams(s.s), 0);
	nghttp2_session_del(r.ngh);
	peer_fini(&s);
}

TEST(non_connect_method_is_400)
{
	struct rawc r;
	struct peer s;
	nghttp2_nv nv[4] = {
		{(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
		{(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
		{(uint8_t *)":path", (uint8_t *)"/", 5, 1, 0},
		{(uint8_t *)":authority", (uint8_t *)"10.0.0.1:80", 10, 11, 0},
	};
	int32_t id;

	peer_init(&s, HBONE_SERVER, NULL);
	raw_init(&r);
	id = nghttp2_submit_request(r.ngh, NULL, nv, 4, NULL, NULL);
	raw_pump(&r, &s);
	CHECK(s.r[id].req);
	CHECK_CONTAINS(s.r[id].reason, "method GET is not CONNECT");
	CHECK_INT(r.status[id], 400);
	/* A CONNECT carrying :path is malformed (RFC 9113 §8.5): nghttp2 resets it, no event. */
	id = nghttp2_submit_request(
		r.ngh, NULL,
		(nghttp2_nv[]){{(uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7, 0},
			       {(uint8_t *)":authority", (uint8_t *)"10.0.0.1:80", 10, 11, 0},
			       {(uint8_t *)":path", (uint8_t *)"/", 5, 1, 0}},
		3, NULL, NULL);
	raw_pump(&r, &s);
	CHECK(!s.r[id].req);
	CHECK(r.closed[id]);
	CHECK_INT(r.code[id], NGHTTP2_PROTOCOL_ERROR);
	CHECK_INT(hbone_session_active_streams(s.s), 0);
	nghttp2_session_del(r.ngh);
	peer_fini(&s);
}

TEST(server_takes_150_streams)
{
	struct rawc r;
	struct peer s;
	int32_t ids[150];

	peer_init(&s, HBONE_SERVER, NULL);
	raw_init(&r);
	raw_pump(&r, &s);
	for (int i = 0; i < 150; i++)
		ids[i] = raw_connect(&r, "CONNECT", "10.0.0.1:80");
	raw_pump(&r, &s);
	for (int i = 0; i < 150; i++)
		CHECK_INT(r.status[ids[i]], 200);
	CHECK_INT(hbone_session_active_streams(s.s), 150);
	CHECK_INT(
		nghttp2_session_get_remote_settings(r.ngh, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
		200);
	CHECK_INT(nghttp2_session_get_remote_settings(r.ngh, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE),
		  HBONE_STREAM_WINDOW);
	CHECK_INT(nghttp2_session_get_remote_settings(r.ngh, NGHTTP2_SETTINGS_MAX_FRAME_SIZE),
		  HBONE_MAX_FRAME);
	CHECK_INT(nghttp2_session_get_remote_window_size(r.ngh), HBONE_CONN_WINDOW);
	nghttp2_session_del(r.ngh);
	peer_fini(&s);
}

TEST(client_cap_100_of_150)
{
	struct peer c, s;
	int opened = 0, refused = 0;

	pair(&c, &s);
	for (int i = 0; i < 150; i++) {
		int32_t id = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
		if (id > 0)
			opened++;
		else if (id == -E_LIMIT)
			refused++;
	}
	CHECK_INT(opened, 100);
	CHECK_INT(refused, 50);
	CHECK(!hbone_session_can_open(c.s));
	pump(&c, &s);
	CHECK_INT(hbone_session_active_streams(s.s), 100);
	CHECK_INT(c.r[199].status, 200);
	CHECK(hbone_stream_reset(c.s, 1, HBONE_CANCEL) == 0);
	pump(&c, &s);
	CHECK(hbone_session_can_open(c.s));
	CHECK_INT(hbone_session_active_streams(c.s), 99);
	unpair(&c, &s);
}

/* ---- data --------------------------------------------------------------------------------------
 */

static void fill(struct peer *p, int32_t id, size_t *sent, size_t total, unsigned seed)
{
	uint8_t chunk[65536];

	while (*sent < total) {
		size_t n = MIN(sizeof(chunk), total - *sent);
		ssize_t w;
		for (size_t i = 0; i < n; i++)
			chunk[i] = pat(*sent + i, seed);
		w = hbone_stream_write(p->s, id, chunk, n);
		if (w <= 0)
			return;
		*sent += (size_t)w;
	}
}

static bool same_pattern(const struct rec *r, size_t total, unsigned seed)
{
	if (r->rx_len != total)
		return false;
	for (size_t i = 0; i < total; i++)
		if (r->rx[i] != pat(i, seed))
			return false;
	return true;
}

TEST(data_10mib_both_ways)
{
	const size_t total = 10u << 20;
	struct peer c, s;
	struct hbone_stream_stats st;
	size_t cs = 0, ss = 0;
	int32_t id;

	pair(&c, &s);
	id = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
	pump(&c, &s);
	for (int i = 0; i < 10000 && (cs < total || ss < total); i++) {
		fill(&c, id, &cs, total, 1);
		fill(&s, id, &ss, total, 2);
		pump(&c, &s);
	}
	hbone_stream_shutdown_write(c.s, id);
	hbone_stream_shutdown_write(s.s, id);
	CHECK_INT(hbone_stream_stats(c.s, id, &st), 0);
	CHECK_INT(st.bytes_in, total);
	CHECK_INT(st.bytes_out, total);
	pump(&c, &s);
	CHECK(same_pattern(&s.r[id], total, 1));
	CHECK(same_pattern(&c.r[id], total, 2));
	CHECK(c.r[id].eof && s.r[id].eof);
	CHECK(c.r[id].closed && s.r[id].closed);
	CHECK_INT(c.r[id].close_code, 0);
	CHECK_INT(s.r[id].close_code, 0);
	CHECK(c.r[id].writable > 0);
	unpair(&c, &s);
}

/* A send_data sink that takes nothing, part of the header, half the payload or all of it in
 * turn: the session must keep the rest and hand it out first, in order. */
static size_t sink(void *ctx, const uint8_t *hd, size_t hdlen, const uint8_t *p, size_t n)
{
	struct peer *pe = ctx;
	size_t take;

	switch (pe->sink_calls++ % 4) {
	case 0: take = 0; break;
	case 1: take = MIN(hdlen, 3); break;
	case 2: take = hdlen + n / 2; break;
	default: take = hdlen + n; break;
	}
	if (take == 0)
		return 0;
	pe->wire = realloc(pe->wire, pe->wire_len + take);
	memcpy(pe->wire + pe->wire_len, hd, MIN(take, hdlen));
	if (take > hdlen)
		memcpy(pe->wire + pe->wire_len + hdlen, p, take - hdlen);
	pe->wire_len += take;
	return take;
}

/* Writes through hbone_stream_write_reserve/commit instead of hbone_stream_write. */
static void fill_reserve(struct peer *p, int32_t id, size_t *sent, size_t total, unsigned seed)
{
	while (*sent < total) {
		uint8_t *w, chunk[20000];
		size_t cap, n;
		size_t space = hbone_stream_write_reserve(p->s, id, &w, &cap);

		if (space == 0)
			return;
		CHECK(cap <= space);
		n = MIN(cap, total - *sent);
		for (size_t i = 0; i < n; i++)
			w[i] = pat(*sent + i, seed);
		hbone_stream_write_commit(p->s, id, n);
		*sent += n;
		if (n == cap && *sent < total) { /* no room left at the tail: grow by a copy */
			size_t m = MIN(MIN(sizeof(chunk), space - n), total - *sent);
			for (size_t i = 0; i < m; i++)
				chunk[i] = pat(*sent + i, seed);
			CHECK_INT(hbone_stream_write(p->s, id, chunk, m), (ssize_t)m);
			*sent += m;
		}
	}
}

TEST(data_zero_copy_sink_partial)
{
	const size_t total = 3u << 20;
	struct hbone_config cfg = {.send_data = sink, .stream_send_buf = 100000};
	struct peer c, s;
	struct hbone_stream_stats st;
	size_t cs = 0, ss = 0;
	int32_t id;

	peer_init(&c, HBONE_CLIENT, &cfg);
	peer_init(&s, HBONE_SERVER, &cfg);
	pump(&c, &s);
	id = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
	pump(&c, &s);
	for (int i = 0; i < 10000 && (cs < total || ss < total); i++) {
		fill_reserve(&c, id, &cs, total, 5);
		fill(&s, id, &ss, total, 6);
		pump(&c, &s);
	}
	CHECK_INT(cs, total);
	CHECK_INT(ss, total);
	{
		uint8_t *w;
		size_t cap;

		CHECK_INT(hbone_stream_write_reserve(c.s, id, &w, &cap), 100000);
		hbone_stream_shutdown_write(c.s, id);
		hbone_stream_shutdown_write(s.s, id);
		CHECK_INT(hbone_stream_write_reserve(c.s, id, &w, &cap), 0);
		CHECK(w == NULL && cap == 0);
	}
	CHECK_INT(hbone_stream_stats(c.s, id, &st), 0);
	CHECK_INT(st.bytes_out, total);
	pump(&c, &s);
	CHECK(c.sink_calls >= 40 && s.sink_calls >= 40);
	CHECK(same_pattern(&s.r[id], total, 5));
	CHECK(same_pattern(&c.r[id], total, 6));
	CHECK(c.r[id].eof && s.r[id].eof);
	CHECK(c.r[id].closed && s.r[id].closed);
	CHECK_INT(c.r[id].close_code, 0);
	CHECK_INT(s.r[id].close_code, 0);
	CHECK(!hbone_session_want_write(c.s) && !hbone_session_want_write(s.s));
	unpair(&c, &s);
}

TEST(half_close_client_first)
{
	struct peer c, s;
	int32_t id;

	pair(&c, &s);
	id = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
	hbone_stream_write(c.s, id, "ping", 4);
	hbone_stream_shutdown_write(c.s, id);
	pump(&c, &s);
	CHECK(s.r[id].eof);
	CHECK_INT(s.r[id].rx_len, 4);
	CHECK(!s.r[id].closed);
	CHECK_INT(hbone_stream_write(c.s, id, "x", 1), -E_STATE);
	/* The other direction still works. */
	CHECK_INT(hbone_stream_write(s.s, id, "pong", 4), 4);
	pump(&c, &s);
	CHECK_INT(c.r[id].rx_len, 4);
	CHECK_MEM(c.r[id].rx, "pong", 4);
	CHECK(!c.r[id].eof);
	hbone_stream_shutdown_write(s.s, id);
	pump(&c, &s);
	CHECK(c.r[id].eof);
	CHECK(c.r[id].closed && s.r[id].closed);
	CHECK_INT(c.r[id].close_code, 0);
	unpair(&c, &s);
}

TEST(half_close_server_first)
{
	struct peer c, s;
	int32_t id;

	pair(&c, &s);
	id = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
	pump(&c, &s);
	hbone_stream_write(s.s, id, "hello", 5);
	hbone_stream_shutdown_write(s.s, id);
	pump(&c, &s);
	CHECK(c.r[id].eof);
	CHECK(!s.r[id].eof);
	CHECK_INT(hbone_stream_write(c.s, id, "more", 4), 4);
	pump(&c, &s);
	CHECK_INT(s.r[id].rx_len, 4);
	CHECK(!c.r[id].closed);
	hbone_stream_shutdown_write(c.s, id);
	pump(&c, &s);
	CHECK(s.r[id].eof);
	CHECK(c.r[id].closed && s.r[id].closed);
	unpair(&c, &s);
}

TEST(reset_both_ways)
{
	struct peer c, s;
	int32_t a, b;

	pair(&c, &s);
	a = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
	b = hbone_stream_open(c.s, "10.0.0.1:81", NULL, NULL, NULL);
	pump(&c, &s);
	CHECK_INT(hbone_stream_reset(c.s, a, HBONE_CANCEL), 0);
	pump(&c, &s);
	CHECK(s.r[a].reset);
	CHECK_INT(s.r[a].reset_code, HBONE_CANCEL);
	CHECK(s.r[a].closed && c.r[a].closed);
	CHECK_INT(c.r[a].close_code, HBONE_CANCEL);
	CHECK(!c.r[a].reset); /* our own reset is not reported as a peer reset */
	CHECK_INT(hbone_stream_reset(s.s, b, HBONE_CONNECT_ERROR), 0);
	pump(&c, &s);
	CHECK(c.r[b].reset);
	CHECK_INT(c.r[b].reset_code, HBONE_CONNECT_ERROR);
	CHECK(c.r[b].closed && s.r[b].closed);
	CHECK_INT(hbone_session_active_streams(c.s), 0);
	CHECK_INT(hbone_session_error(c.s), 0);
	CHECK_STR(hbone_error_code_str(HBONE_CONNECT_ERROR), "CONNECT_ERROR");
	unpair(&c, &s);
}

TEST(reset_before_headers_sent)
{
	struct peer c, s;
	int32_t id;

	pair(&c, &s);
	id = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
	CHECK_INT(hbone_stream_reset(c.s, id, HBONE_CANCEL), 0);
	pump(&c, &s);
	CHECK(c.r[id].closed);
	CHECK(!s.r[id].req);
	CHECK_INT(hbone_session_active_streams(c.s), 0);
	unpair(&c, &s);
}

TEST(flow_control_stops_peer)
{
	struct peer c, s;
	struct hbone_stream_stats st;
	size_t sent = 0, before;
	int32_t id;

	pair(&c, &s);
	s.no_consume = true;
	id = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
	pump(&c, &s);
	for (int i = 0; i < 200; i++) {
		size_t was = sent;
		fill(&c, id, &sent, 64u << 20, 3);
		pump(&c, &s);
		if (sent == was)
			break;
	}
	/* The server app acknowledged nothing: the peer stopped at the stream window. */
	CHECK_INT(s.r[id].rx_len, HBONE_STREAM_WINDOW);
	CHECK(sent <= HBONE_STREAM_WINDOW + HBONE_DEFAULT_SEND_BUF);
	CHECK_INT(hbone_stream_write(c.s, id, "x", 1), 0);
	CHECK_INT(hbone_stream_stats(s.s, id, &st), 0);
	CHECK_INT(st.unacked, HBONE_STREAM_WINDOW);
	CHECK_INT(hbone_stream_consumed(s.s, id, HBONE_STREAM_WINDOW + 1), -E_INVAL);
	/* Acknowledge it all: the sender moves again. */
	before = s.r[id].rx_len;
	CHECK_INT(hbone_stream_consumed(s.s, id, s.r[id].rx_len), 0);
	pump(&c, &s);
	CHECK(c.r[id].writable > 0);
	fill(&c, id, &sent, 64u << 20, 3);
	pump(&c, &s);
	CHECK(s.r[id].rx_len > before);
	CHECK(s.r[id].rx_len <= 2 * HBONE_STREAM_WINDOW);
	CHECK(same_pattern(&s.r[id], s.r[id].rx_len, 3));
	unpair(&c, &s);
}

TEST(write_backpressure_bounded)
{
	struct peer c, s;
	struct hbone_config cfg = {.stream_send_buf = 1000};
	static uint8_t big[5000];
	int32_t id;

	peer_init(&c, HBONE_CLIENT, &cfg);
	peer_init(&s, HBONE_SERVER, NULL);
	pump(&c, &s);
	id = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
	CHECK_INT(hbone_stream_write(c.s, id, big, sizeof(big)), 1000);
	CHECK_INT(hbone_stream_write(c.s, id, big, sizeof(big)), 0);
	CHECK_INT(hbone_stream_write_space(c.s, id), 0);
	pump(&c, &s);
	CHECK_INT(c.r[id].writable, 1);
	CHECK_INT(hbone_stream_write_space(c.s, id), 1000);
	CHECK_INT(s.r[id].rx_len, 1000);
	unpair(&c, &s);
}

/* ---- session -----------------------------------------------------------------------------------
 */

TEST(ping_timeout_fake_clock)
{
	struct peer c, s;
	const uint8_t *p;
	size_t n;

	pair(&c, &s);
	CHECK_INT(hbone_session_tick(c.s, 5000), 0);
	CHECK_INT(hbone_session_next_tick(c.s), 15000); /* input seen: the interval restarts */
	CHECK_INT(hbone_session_tick(c.s, 15000), 0);	/* PING goes out */
	CHECK(hbone_session_want_write(c.s));
	CHECK_INT(hbone_session_next_tick(c.s), 35000);
	pump(&c, &s);				      /* server ACKs */
	CHECK_INT(hbone_session_tick(c.s, 34999), 0); /* the ACK restarts the interval */
	CHECK_INT(hbone_session_tick(c.s, 44998), 0);
	CHECK(!hbone_session_want_write(c.s));
	CHECK_INT(hbone_session_tick(c.s, 44999), 0); /* second PING, never answered */
	CHECK_INT(hbone_session_pull(c.s, &p, &n), 0);
	CHECK(n == 17); /* 9-byte header + 8 opaque bytes */
	hbone_session_pull_done(c.s, n);
	CHECK_INT(hbone_session_tick(c.s, 64998), 0);
	CHECK_INT(hbone_session_tick(c.s, 64999), -E_TIMEOUT);
	CHECK_CONTAINS(hbone_session_reason(c.s), "PING timeout");
	CHECK_INT(hbone_session_error(c.s), -E_TIMEOUT);
	CHECK(!hbone_session_want_read(c.s));
	CHECK(!hbone_session_want_write(c.s));
	CHECK(!hbone_session_can_open(c.s));
	unpair(&c, &s);
}

TEST(goaway_stops_new_streams)
{
	struct peer c, s;
	int32_t id;

	pair(&c, &s);
	id = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
	pump(&c, &s);
	CHECK_INT(hbone_session_shutdown(s.s), 0);
	pump(&c, &s);
	CHECK_INT(c.goaways, 1);
	CHECK_INT(c.goaway_code, 0);
	CHECK(!hbone_session_can_open(c.s));
	CHECK_INT(hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL), -E_STATE);
	/* The stream below last_stream_id goes on. */
	CHECK_INT(hbone_stream_write(c.s, id, "abc", 3), 3);
	hbone_stream_shutdown_write(c.s, id);
	hbone_stream_shutdown_write(s.s, id);
	pump(&c, &s);
	CHECK_INT(s.r[id].rx_len, 3);
	CHECK(c.r[id].closed);
	CHECK(!hbone_session_want_read(s.s) && !hbone_session_want_write(s.s));
	CHECK_INT(hbone_session_error(c.s), 0);
	unpair(&c, &s);
}

TEST(garbage_fails_server)
{
	struct peer s;
	const uint8_t *p;
	size_t n;
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	/* A SETTINGS frame on stream 1 is a connection error (RFC 9113 §6.5). */
	static const uint8_t bad[] = {0, 0, 0, 4, 0, 0, 0, 0, 1};

	peer_init(&s, HBONE_SERVER, NULL);
	CHECK_INT(hbone_session_push(s.s, (const uint8_t *)preface, 24), 0);
	CHECK_INT(hbone_session_push(s.s, bad, sizeof(bad)), 0);
	CHECK(hbone_session_want_write(s.s)); /* SETTINGS, then the GOAWAY */
	while (hbone_session_pull(s.s, &p, &n) == 0 && n > 0)
		hbone_session_pull_done(s.s, n);
	CHECK_INT(hbone_session_error(s.s), -E_PROTO);
	CHECK_CONTAINS(hbone_session_reason(s.s), "connection error PROTOCOL_ERROR");
	CHECK(!hbone_session_want_read(s.s));
	CHECK(!hbone_session_want_write(s.s));
	CHECK_INT(hbone_session_push(s.s, bad, sizeof(bad)), -E_PROTO);
	peer_fini(&s);

	peer_init(&s, HBONE_SERVER, NULL);
	CHECK_INT(hbone_session_push(s.s, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18), -E_PROTO);
	CHECK_CONTAINS(hbone_session_reason(s.s), "preface");
	peer_fini(&s);
}

TEST(memory_limit_fails_session)
{
	struct peer c, s;
	struct hbone_config cfg = {.mem_limit = 40 * 1024};
	struct hbone_config tiny = {.role = HBONE_SERVER, .on_event = on_ev, .mem_limit = 4096};
	struct hbone_session_stats st;
	int32_t id = 0;

	CHECK(hbone_session_new(&tiny, 0) == NULL);
	peer_init(&c, HBONE_CLIENT, NULL);
	peer_init(&s, HBONE_SERVER, &cfg);
	pump(&c, &s);
	for (int i = 0; i < 100 && hbone_session_error(s.s) == 0; i++) {
		id = hbone_stream_open(c.s, "10.0.0.1:80", NULL, NULL, NULL);
		pump(&c, &s);
	}
	CHECK(id > 0);
	CHECK_INT(hbone_session_error(s.s), -E_LIMIT);
	CHECK_CONTAINS(hbone_session_reason(s.s), "memory limit");
	hbone_session_stats(s.s, &st);
	CHECK(st.mem_peak <= 40 * 1024);
	fprintf(stderr, "mem: limit hit after %d streams\n", (id + 1) / 2);
	unpair(&c, &s);
}

/* ---- interop: python3-h2 as the client ---------------------------------------------------------
 */

static const char py_client[] =
	"import socket, sys\n"
	"import h2.connection, h2.config, h2.events\n"
	"s = socket.socket(fileno=int(sys.argv[1]))\n"
	"cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,\n"
	"    validate_inbound_headers=False, header_encoding='utf-8')\n"
	"c = h2.connection.H2Connection(config=cfg)\n"
	"c.initiate_connection()\n"
	"sid = c.get_next_available_stream_id()\n"
	"c.send_headers(sid, [(':method', 'CONNECT'), (':authority', '10.9.8.7:8080'),\n"
	"    ('baggage', 'k8s.namespace.name=py'), ('forwarded', 'for=\"10.0.0.1:1\"'),\n"
	"    ('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00')])\n"
	"s.sendall(c.data_to_send())\n"
	"payload = bytes((i * 7 + (i >> 8)) & 255 for i in range(300000))\n"
	"off = 0; ended = False; status = None; got = bytearray(); done = False\n"
	"def send_more():\n"
	"    global off, ended\n"
	"    while off < len(payload):\n"
	"        n = min(c.local_flow_control_window(sid), c.max_outbound_frame_size,\n"
	"                len(payload) - off)\n"
	"        if n <= 0: return\n"
	"        c.send_data(sid, payload[off:off + n]); off += n\n"
	"    if not ended:\n"
	"        c.end_stream(sid); ended = True\n"
	"while not done:\n"
	"    data = s.recv(65536)\n"
	"    if not data: break\n"
	"    for ev in c.receive_data(data):\n"
	"        if isinstance(ev, h2.events.ResponseReceived):\n"
	"            status = dict(ev.headers)[':status']\n"
	"            if status == '200': send_more()\n"
	"        elif isinstance(ev, h2.events.WindowUpdated):\n"
	"            if status == '200': send_more()\n"
	"        elif isinstance(ev, h2.events.DataReceived):\n"
	"            got += ev.data\n"
	"            c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)\n"
	"        elif isinstance(ev, h2.events.StreamEnded):\n"
	"            done = True\n"
	"    s.sendall(c.data_to_send())\n"
	"ok = status == '200' and bytes(got) == payload\n"
	"print('py: status=%s got=%d ok=%s' % (status, len(got), ok), file=sys.stderr)\n"
	"sys.exit(0 if ok else 1)\n";

TEST(interop_python_h2_client)
{
	char path[512];
	FILE *f;
	int sv[2], status = -1;
	pid_t pid;
	struct peer s;
	bool eof = false, hung = false;

	if (access("/usr/bin/python3", X_OK) != 0)
		return;
	snprintf(path, sizeof(path), "%s/client.py", unit_tmpdir());
	f = fopen(path, "w");
	REQUIRE(f);
	fputs(py_client, f);
	fclose(f);
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		char fd[16];
		close(sv[0]);
		snprintf(fd, sizeof(fd), "%d", sv[1]);
		execl("/usr/bin/python3", "python3", path, fd, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	peer_init(&s, HBONE_SERVER, NULL);
	s.echo = true;
	while (!eof) {
		struct pollfd pfd = {.fd = sv[0], .events = POLLIN};
		const uint8_t *p;
		size_t n;
		uint8_t in[65536];
		ssize_t r;

		while (hbone_session_pull(s.s, &p, &n) == 0 && n > 0) {
			ssize_t w = write(sv[0], p, n);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				eof = true;
				break;
			}
			hbone_session_pull_done(s.s, (size_t)w);
		}
		if (eof)
			break;
		/* Generous guard against a hung child; not a timing assertion. */
		if (poll(&pfd, 1, 60000) <= 0) {
			unit_fail(__FILE__, __LINE__, "python peer hung");
			hung = true;
			break;
		}
		r = read(sv[0], in, sizeof(in));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (hbone_session_push(s.s, in, (size_t)r) < 0)
			break;
	}
	close(sv[0]); /* python sees EOF and exits if it has not already */
	if (hung)
		kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(s.r[1].req && s.r[1].ok);
	CHECK_STR(s.r[1].authority, "10.9.8.7:8080");
	CHECK_STR(s.r[1].baggage, "k8s.namespace.name=py");
	CHECK_STR(s.r[1].forwarded, "for=\"10.0.0.1:1\"");
	CHECK_INT(s.r[1].rx_len, 300000);
	CHECK(s.r[1].eof);
	CHECK_INT(hbone_session_error(s.s), 0);
	peer_fini(&s);
}
