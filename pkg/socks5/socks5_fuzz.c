/* libFuzzer target for the SOCKS5 server core: whole vs. split feeding must agree, requests
 * round-trip.
 *
 * Input: byte 0 seeds the split sizes, byte 1 selects the reply code after a CONNECT (low nibble
 * modulo 9) and whether eof follows the stream (bit 4), the rest is the client's byte stream. The
 * core runs twice, once with the whole stream in one push and once fed in pieces of 1..8 bytes;
 * both must produce the same digest of results, output bytes, reasons and targets. A parsed
 * request must re-encode to exactly the bytes it was parsed from.
 */
#include "pkg/socks5/socks5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "socks5_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c);       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

struct digest {
	uint64_t h;
	int rc;
	int state;
	size_t consumed;
};

static void mix(struct digest *d, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		d->h = (d->h ^ b[i]) * 0x100000001b3ULL;
}

static void drain(struct socks5 *s, struct digest *d)
{
	const uint8_t *p;
	size_t n;

	while (socks5_pull(s, &p, &n)) {
		ASSERT(n > 0 && n <= 2 + SOCKS5_MSG_MAX);
		/* Partial writes must be fine: send one byte at a time, so the digest sees the
		 * output stream however it was queued. */
		mix(d, p, 1);
		socks5_pull_done(s, 1);
	}
}

/* The request bytes in[from..to) must be exactly the encoding of the parsed target. */
static void check_target(const struct socks5_target *t, const uint8_t *in, size_t from, size_t to)
{
	uint8_t m[SOCKS5_MSG_MAX];
	size_t n = 0;

	ASSERT(t && t->port != 0);
	m[n++] = 5;
	m[n++] = 1;
	m[n++] = 0;
	m[n++] = (uint8_t)t->atyp;
	switch (t->atyp) {
	case SOCKS5_ATYP_IPV4:
		memcpy(m + n, t->addr, 4);
		n += 4;
		break;
	case SOCKS5_ATYP_IPV6:
		memcpy(m + n, t->addr, 16);
		n += 16;
		break;
	case SOCKS5_ATYP_DOMAIN:
		ASSERT(t->name_len > 0 && strlen(t->name) == t->name_len);
		ASSERT(t->name[0] != '.');
		for (size_t i = 0; i < t->name_len; i++)
			ASSERT(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				      "0123456789-_.",
				      t->name[i]));
		m[n++] = t->name_len;
		memcpy(m + n, t->name, t->name_len);
		n += t->name_len;
		break;
	default: ASSERT(0);
	}
	m[n++] = (uint8_t)(t->port >> 8);
	m[n++] = (uint8_t)t->port;
	ASSERT(to - from == n && memcmp(in + from, m, n) == 0);
}

static void run(const uint8_t *in, size_t len, uint8_t seed, uint8_t mode, struct digest *d)
{
	struct socks5 s;
	size_t off = 0;
	uint32_t rng = seed * 2654435761u + 1;
	int connects = 0;

	memset(d, 0, sizeof(*d));
	d->h = 0xcbf29ce484222325ULL;
	socks5_init(&s);
	while (off < len) {
		size_t k = len - off;
		int r;
		if (seed) {
			rng = rng * 1103515245u + 12345u;
			k = MIN(k, (size_t)(rng >> 16) % 8 + 1);
		}
		r = socks5_push(&s, in + off, k);
		drain(&s, d);
		if (r < 0) {
			d->rc = r;
			off = 0;
			ASSERT(socks5_state(&s) == SOCKS5_STATE_FAILED);
			ASSERT(socks5_reason(&s)[0] != '\0');
			ASSERT(socks5_push(&s, in, len) == r); /* sticky */
			break;
		}
		ASSERT((size_t)r <= k);
		off += (size_t)r;
		if (socks5_event(&s) == SOCKS5_EV_CONNECT) {
			ASSERT(socks5_state(&s) == SOCKS5_STATE_CONNECT);
			connects++;
		}
		if ((size_t)r < k) {
			ASSERT(socks5_state(&s) == SOCKS5_STATE_CONNECT);
			break;
		}
	}
	ASSERT(connects <= 1);
	if (socks5_state(&s) == SOCKS5_STATE_CONNECT) {
		const struct socks5_target *t = socks5_target(&s);
		int code = (mode & 0x0f) % 9;

		ASSERT(connects == 1 && len >= 2);
		check_target(t, in, 2 + (size_t)in[1], off);
		mix(d, t, sizeof(*t));
		ASSERT(socks5_push(&s, in, len) == 0);
		ASSERT(socks5_reply(&s, (enum socks5_rep)code, NULL) == 0);
		ASSERT(socks5_state(&s) == (code ? SOCKS5_STATE_FAILED : SOCKS5_STATE_DONE));
		ASSERT(socks5_reply(&s, SOCKS5_REP_SUCCEEDED, NULL) == -E_STATE);
		drain(&s, d);
	}
	if (mode & 0x10) {
		int r = socks5_eof(&s);
		drain(&s, d);
		if (r < 0)
			d->rc = r;
		if (r < 0 && socks5_state(&s) != SOCKS5_STATE_FAILED)
			ASSERT(0);
	}
	mix(d, socks5_reason(&s), strlen(socks5_reason(&s)));
	d->state = socks5_state(&s);
	d->consumed = off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct digest whole, split;
	uint8_t seed, mode;

	if (size < 2)
		return 0;
	seed = data[0];
	mode = data[1];
	data += 2;
	size -= 2;
	run(data, size, 0, mode, &whole);
	run(data, size, (uint8_t)(seed | 1), mode, &split);
	ASSERT(whole.h == split.h && whole.rc == split.rc && whole.state == split.state &&
	       whole.consumed == split.consumed);
	return 0;
}
