/* libFuzzer target for HBONE: the strict authority parser and raw frames into a server session.
 *
 * Input: byte 0 selects the mode. Even: the rest is an authority; a parse that succeeds must
 * format back to text that parses to the same address. Odd: the rest is fed, after a valid client
 * preface and SETTINGS, into a server session in pieces whose sizes come from byte 1; the event
 * handler answers requests (200, or 400 for bad ones), echoes and acknowledges DATA, half-closes
 * on PEER_EOF and resets every seventh stream, and output is drained between pieces while a fake
 * clock drives the keepalive.
 */
#include "pkg/hbone/hbone.h"

#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static void fuzz_authority(const uint8_t *d, size_t n)
{
	struct net_addr a, b;
	struct errbuf eb = {0};
	char out[NET_ADDR_STRLEN];

	if (hbone_authority_parse((const char *)d, n, &a, &eb) < 0) {
		ASSERT(eb.msg[0] != 0);
		ASSERT(a.len == 0);
		return;
	}
	ASSERT(a.len != 0);
	hbone_authority_format(&a, out, sizeof(out));
	ASSERT(hbone_authority_parse(out, strlen(out), &b, &eb) == 0);
	ASSERT(a.len == b.len && memcmp(&a, &b, a.len) == 0);
}

static void on_event(void *ctx, struct hbone_session *s, const struct hbone_event *ev)
{
	(void)ctx;
	switch (ev->type) {
	case HBONE_EV_REQUEST:
		if (ev->request.ok)
			ASSERT(ev->request.addr.len != 0);
		else
			ASSERT(ev->request.reason && ev->request.reason[0]);
		hbone_stream_respond(s, ev->stream_id, ev->request.ok ? 200 : 400);
		if (ev->stream_id % 7 == 0)
			hbone_stream_reset(s, ev->stream_id, HBONE_CANCEL);
		break;
	case HBONE_EV_DATA: {
		ssize_t w = hbone_stream_write(s, ev->stream_id, ev->data.p, ev->data.n);
		(void)w;
		ASSERT(hbone_stream_consumed(s, ev->stream_id, ev->data.n) == 0);
		break;
	}
	case HBONE_EV_PEER_EOF: hbone_stream_shutdown_write(s, ev->stream_id); break;
	case HBONE_EV_CLOSED: ASSERT(hbone_stream_consumed(s, ev->stream_id, 1) <= 0); break;
	default: break;
	}
}

static void drain(struct hbone_session *s)
{
	const uint8_t *p;
	size_t n;

	for (int i = 0; i < 64; i++) {
		if (hbone_session_pull(s, &p, &n) < 0 || n == 0)
			return;
		hbone_session_pull_done(s, n);
	}
}

static void fuzz_server(const uint8_t *d, size_t n)
{
	static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
					 "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
	struct hbone_config cfg = {.role = HBONE_SERVER,
				   .on_event = on_event,
				   .stream_send_buf = 4096,
				   .mem_limit = 256 * 1024};
	struct hbone_session *s = hbone_session_new(&cfg, 0);
	size_t step = n > 0 ? (size_t)d[0] % 64 + 1 : 1;
	uint64_t now = 0;

	ASSERT(s);
	if (n > 0) {
		d++;
		n--;
	}
	hbone_session_push(s, preface, sizeof(preface) - 1);
	drain(s);
	for (size_t off = 0; off < n; off += step) {
		size_t k = MIN(step, n - off);
		if (hbone_session_push(s, d + off, k) < 0)
			break;
		drain(s);
		now += 3000;
		hbone_session_tick(s, now);
	}
	drain(s);
	if (hbone_session_error(s))
		ASSERT(hbone_session_reason(s)[0] != 0);
	hbone_session_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if ((data[0] & 1) == 0)
		fuzz_authority(data + 1, size - 1);
	else
		fuzz_server(data + 1, size - 1);
	return 0;
}
