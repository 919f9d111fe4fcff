/* libFuzzer target for the netlink reply decoders of pkg/redirect (acks, nf_tables and
 * rtnetlink dumps, canonical rule expressions), plus a round trip through the batch builder.
 *
 * Input: byte 0 picks the ruleset options for the round trip (bit 0 ipv6, 1 dns capture, 2
 * bypass inbound, 3 one excluded port), the rest is one recv()'s worth of kernel replies (the
 * seed corpus holds real ones captured from 6.x kernels). Every decoder must either reject the
 * bytes with -E_PROTO/-E_LIMIT or return bounded, NUL-terminated results, the same on a second
 * run; a decoded dump must decode the same when the input is fed one message at a time.
 */
#include "pkg/redirect/redirect_int.h"

#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "redirect_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c);     \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static void check_acks(const uint8_t *p, size_t n)
{
	struct rr_ack a[8], b[8];
	size_t more = 0, more2 = 0;
	int k = rr_parse_acks(p, n, a, 8, &more);
	int k2 = rr_parse_acks(p, n, b, 8, &more2);

	ASSERT(k == k2 && more == more2);
	if (k < 0) {
		ASSERT(k == -E_PROTO);
		return;
	}
	ASSERT(k <= 8);
	for (int i = 0; i < k; i++) {
		ASSERT(a[i].error >= 0 && a[i].error < 4096);
		ASSERT(strlen(a[i].msg) < sizeof(a[i].msg));
		ASSERT(a[i].seq == b[i].seq && a[i].error == b[i].error);
	}
}

static void check_dump(const struct rr_dump *d)
{
	ASSERT(d->nrules <= ARRAY_LEN(d->rules));
	for (size_t i = 0; i < d->nrules; i++) {
		ASSERT(strlen(d->rules[i].canon) < RR_CANON_MAX);
		ASSERT(strlen(d->rules[i].chain) < sizeof(d->rules[i].chain));
	}
	for (size_t i = 0; i < d->nchains && i < ARRAY_LEN(d->chains); i++) {
		ASSERT(strlen(d->chains[i].name) < sizeof(d->chains[i].name));
		ASSERT(strlen(d->chains[i].type) < sizeof(d->chains[i].type));
	}
	ASSERT(d->error >= 0 && d->error < 4096);
}

/* Whole vs. message by message: the decoder keeps no state between messages besides d. */
static void check_dump_split(const uint8_t *p, size_t n, struct rr_dump *whole,
			     struct rr_dump *split)
{
	int rc = rr_parse_dump(p, n, 0, whole);
	int rc2 = 0;
	size_t off = 0;

	check_dump(whole);
	if (rc < 0) {
		ASSERT(rc == -E_PROTO || rc == -E_LIMIT);
		return;
	}
	while (off < n && rc2 == 0) {
		struct nlmsghdr h;
		size_t len;

		ASSERT(n - off >= sizeof(h)); /* the whole parse accepted it */
		memcpy(&h, p + off, sizeof(h));
		len = NLMSG_ALIGN(h.nlmsg_len);
		if (len > n - off)
			len = n - off;
		rc2 = rr_parse_dump(p + off, len, 0, split);
		off += len;
	}
	ASSERT(rc2 == 0);
	ASSERT(whole->done == split->done && whole->error == split->error &&
	       whole->table == split->table && whole->nchains == split->nchains &&
	       whole->nrules == split->nrules && whole->fib_rules == split->fib_rules &&
	       whole->routes == split->routes && whole->addrs == split->addrs);
	for (size_t i = 0; i < whole->nrules; i++)
		ASSERT(strcmp(whole->rules[i].canon, split->rules[i].canon) == 0);
}

static void check_roundtrip(uint8_t sel)
{
	struct redirect_opts o = {
		.ipv6 = sel & 1, .dns_capture = (sel >> 1) & 1, .bypass_inbound = (sel >> 2) & 1};
	struct rr_batch map;
	struct rr_dump *d = xcalloc(1, sizeof(*d));
	size_t counts[RR__NCHAINS], total = 0;
	struct buf b;

	if (sel & 8)
		o.exclude_inbound[o.n_exclude_inbound++] = (uint16_t)(sel * 257);
	buf_init(&b, 0);
	ASSERT(rr_build_add_batch(&o, 1, &b, &map) == 0);
	ASSERT(rr_parse_dump(buf_rptr(&b), buf_len(&b), 0, d) == 0);
	rr_rule_counts(&o, counts);
	for (int c = 0; c < RR__NCHAINS; c++) {
		ASSERT(d->chains[c].nrules == counts[c]);
		total += counts[c];
	}
	ASSERT(d->table && d->nchains == RR__NCHAINS && d->nrules == total);
	ASSERT(map.n == total + 4 + RR__NCHAINS + 1);
	buf_fini(&b);
	free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t done_sel[256];
	struct rr_dump *whole, *split;
	char canon[RR_CANON_MAX], canon2[RR_CANON_MAX];
	int rc, rc2;

	if (size < 1)
		return 0;
	if (!done_sel[data[0]]) {
		check_roundtrip(data[0] & 0x0f);
		done_sel[data[0]] = 1;
	}
	data++;
	size--;
	check_acks(data, size);
	whole = xcalloc(1, sizeof(*whole));
	split = xcalloc(1, sizeof(*split));
	check_dump_split(data, size, whole, split);
	free(whole);
	free(split);
	rc = rr_canon_exprs(data, size, canon, sizeof(canon));
	rc2 = rr_canon_exprs(data, size, canon2, sizeof(canon2));
	ASSERT(rc == rc2);
	ASSERT(rc == 0 || rc == -E_PROTO || rc == -E_LIMIT);
	if (rc == 0)
		ASSERT(strlen(canon) < sizeof(canon) && strcmp(canon, canon2) == 0);
	return 0;
}
