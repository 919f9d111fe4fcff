/* libFuzzer target for the ZDS codec and session rules: no crash, strict decode round-trips.
 *
 * Input: byte 0 holds one has_fd bit per packet (packet i uses bit i % 8), the rest is a list of
 * packets, each a 2-byte big-endian length and that many bytes (the last one may be short).
 * Every packet goes through the hello, ack and request decoders. A decoded request holds only
 * UTF-8 C strings, re-encodes to at most its own size and decodes back to the same struct, then
 * passes through inpod_session_check (which must refuse without changing the session, or accept
 * only what the lock-step rules allow); a decoded ack re-encodes and decodes back to the same
 * text, and a small buffer gets a prefix of it.
 */
#include "pkg/inpod/inpod.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "inpod_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c);        \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

static void check_request(const uint8_t *p, size_t n, struct inpod_session *s, bool has_fd)
{
	struct inpod_request r, again;
	struct inpod_session before = *s;
	struct errbuf eb = {0};
	uint8_t out[INPOD_PACKET_MAX];
	int rc = inpod_request_decode(p, n, &r, &eb), len;

	if (rc < 0) {
		ASSERT(rc == -E_PARSE && eb.msg[0]);
		return;
	}
	ASSERT(rc == 0);
	ASSERT(r.type == INPOD_ADD || r.type == INPOD_DEL || r.type == INPOD_KEEP ||
	       r.type == INPOD_SNAPSHOT_SENT);
	ASSERT(terminated(r.uid, sizeof(r.uid)) && terminated(r.name, sizeof(r.name)) &&
	       terminated(r.namespace_, sizeof(r.namespace_)) &&
	       terminated(r.service_account, sizeof(r.service_account)));
	ASSERT(utf8_valid((const uint8_t *)r.uid, strlen(r.uid)) &&
	       utf8_valid((const uint8_t *)r.name, strlen(r.name)) &&
	       utf8_valid((const uint8_t *)r.namespace_, strlen(r.namespace_)) &&
	       utf8_valid((const uint8_t *)r.service_account, strlen(r.service_account)));
	len = inpod_request_encode(&r, out, sizeof(out));
	if (n <= INPOD_PACKET_MAX)
		ASSERT(len > 0 && (size_t)len <= n);
	if (len > 0) {
		ASSERT(inpod_request_decode(out, (size_t)len, &again, &eb) == 0);
		ASSERT(again.type == r.type && !strcmp(again.uid, r.uid));
		if (r.type == INPOD_ADD)
			ASSERT(!strcmp(again.name, r.name) &&
			       !strcmp(again.namespace_, r.namespace_) &&
			       !strcmp(again.service_account, r.service_account));
	}
	rc = inpod_session_check(s, &r, has_fd, &eb);
	if (rc < 0) {
		ASSERT(rc == -E_PROTO && eb.msg[0]);
		ASSERT(s->snapshot_sent == before.snapshot_sent);
		return;
	}
	ASSERT(r.type != INPOD_SNAPSHOT_SENT || (!before.snapshot_sent && s->snapshot_sent));
	ASSERT(r.type != INPOD_KEEP || !before.snapshot_sent);
	ASSERT(has_fd == (r.type == INPOD_ADD));
}

static void check_ack(const uint8_t *p, size_t n)
{
	char err[INPOD_PACKET_MAX], small[5], again[INPOD_PACKET_MAX];
	struct errbuf eb = {0};
	uint8_t out[INPOD_PACKET_MAX];
	int rc = inpod_ack_decode(p, n, err, sizeof(err), &eb), len;

	if (rc < 0) {
		ASSERT(rc == -E_PARSE && eb.msg[0] && err[0] == '\0');
		ASSERT(inpod_ack_decode(p, n, small, sizeof(small), &eb) == rc);
		return;
	}
	ASSERT(inpod_ack_decode(p, n, small, sizeof(small), &eb) == 0);
	ASSERT(strncmp(small, err, sizeof(small) - 1) == 0 && strlen(small) < sizeof(small));
	len = inpod_ack_encode(err, out, sizeof(out));
	ASSERT(len > 0 && (n > INPOD_PACKET_MAX || (size_t)len <= n));
	ASSERT(inpod_ack_decode(out, (size_t)len, again, sizeof(again), &eb) == 0);
	ASSERT(strcmp(again, err) == 0);
}

static void check_hello(const uint8_t *p, size_t n)
{
	struct errbuf eb = {0};
	uint8_t out[16];
	uint32_t v, again;
	int rc = inpod_hello_decode(p, n, &v, &eb), len;

	if (rc < 0) {
		ASSERT(rc == -E_PARSE && eb.msg[0]);
		return;
	}
	len = inpod_hello_encode(out, sizeof(out), v);
	ASSERT(len >= 0 && (size_t)len <= n);
	ASSERT(inpod_hello_decode(out, (size_t)len, &again, &eb) == 0 && again == v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct inpod_session s = {0};
	uint8_t fds;
	size_t off = 1;

	if (size < 1)
		return 0;
	fds = data[0];
	for (unsigned i = 0; off < size; i++) {
		size_t n = 0;
		if (size - off >= 2)
			n = (size_t)data[off] << 8 | data[off + 1];
		off += MIN((size_t)2, size - off);
		n = MIN(n, size - off);
		check_hello(data + off, n);
		check_ack(data + off, n);
		check_request(data + off, n, &s, (fds >> (i % 8)) & 1);
		off += n;
	}
	return 0;
}
