/* Netlink I/O for pkg/redirect: the nf_tables batch, ip rule/route, the dumps behind
 * redirect_check, and the strict decoders of what the kernel answers.
 *
 *   add:   [nf_tables batch] --ok--> [rule v4, route v4 (, v6)] --ok--> done
 *                |error                    |error (EEXIST is fine)
 *                v                         v
 *          report (nothing changed)  undo our rule/route, delete the table, report
 *
 * Every operation uses its own socket made inside the target netns (net_netns_socket), so this
 * thread never stays there. The kernel answers a netlink request inside sendmsg(), so all acks
 * of a batch are queued by the time sendto() returns. */
#include "pkg/net/net.h"
#include "pkg/redirect/redirect_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <linux/fib_rules.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

#define RECV_CAP (64 * 1024)

/* ---- decoding -----------------------------------------------------------------------------------
 */

struct rattr {
	const uint8_t *p;
	size_t n;
	bool on;
};

#define RR_MAX_ATTR 32

/* Splits p[0..n) into attributes by type (types >= max are skipped). Every length must fit. */
static int attrs(const uint8_t *p, size_t n, struct rattr *tb, size_t max)
{
	memset(tb, 0, sizeof(*tb) * max);
	while (n > 0) {
		struct nlattr a;
		size_t adv;
		uint16_t t;

		if (n < NLA_HDRLEN)
			return -E_PROTO;
		memcpy(&a, p, sizeof(a));
		if (a.nla_len < NLA_HDRLEN || a.nla_len > n)
			return -E_PROTO;
		t = a.nla_type & NLA_TYPE_MASK;
		if (t < max)
			tb[t] = (struct rattr){p + NLA_HDRLEN, a.nla_len - NLA_HDRLEN, true};
		adv = NLA_ALIGN(a.nla_len);
		if (adv > n)
			adv = n; /* the last attribute may go without its padding */
		p += adv;
		n -= adv;
	}
	return 0;
}

static bool a_u32(const struct rattr *a, uint32_t *v)
{
	if (!a->on || a->n != 4)
		return false;
	memcpy(v, a->p, 4);
	return true;
}

static bool a_be32(const struct rattr *a, uint32_t *v)
{
	if (!a_u32(a, v))
		return false;
	*v = ntohl(*v);
	return true;
}

/* A NUL-terminated string attribute that fits in cap; false otherwise. */
static bool a_str(const struct rattr *a, char *out, size_t cap)
{
	size_t l;

	if (!a->on || a->n == 0)
		return false;
	l = strnlen((const char *)a->p, a->n);
	if (l == a->n || l >= cap)
		return false;
	memcpy(out, a->p, l + 1);
	return true;
}

static bool a_streq(const struct rattr *a, const char *s)
{
	char tmp[64];

	return a_str(a, tmp, sizeof(tmp)) && strcmp(tmp, s) == 0;
}

typedef int (*msg_fn)(const struct nlmsghdr *h, const uint8_t *pl, size_t n, void *ctx);

/* Walks the messages of one recv; each must be whole. */
static int walk(const uint8_t *p, size_t n, msg_fn fn, void *ctx)
{
	while (n > 0) {
		struct nlmsghdr h;
		size_t adv;
		int rc;

		if (n < sizeof(h))
			return -E_PROTO;
		memcpy(&h, p, sizeof(h));
		if (h.nlmsg_len < sizeof(h) || h.nlmsg_len > n)
			return -E_PROTO;
		rc = fn(&h, p + sizeof(h), h.nlmsg_len - sizeof(h), ctx);
		if (rc < 0)
			return rc;
		adv = NLMSG_ALIGN(h.nlmsg_len);
		if (adv > n)
			adv = n;
		p += adv;
		n -= adv;
	}
	return 0;
}

/* NLMSG_ERROR payload: the errno (0 for an ack) and the extended-ack text. */
static int decode_err(const struct nlmsghdr *h, const uint8_t *pl, size_t n, int *error, char *msg,
		      size_t cap)
{
	struct nlmsgerr e;
	struct rattr tb[NLMSGERR_ATTR_MAX + 1];
	size_t off;

	if (n < sizeof(e))
		return -E_PROTO;
	memcpy(&e, pl, sizeof(e));
	if (e.error > 0 || e.error < -4095 || e.msg.nlmsg_len < sizeof(struct nlmsghdr))
		return -E_PROTO;
	*error = -e.error;
	if (msg && cap)
		msg[0] = '\0';
	if (!(h->nlmsg_flags & NLM_F_ACK_TLVS))
		return 0;
	/* The TLVs follow the echoed request: its header only when capped, else all of it. */
	off = sizeof(int) + ((h->nlmsg_flags & NLM_F_CAPPED) ? sizeof(struct nlmsghdr)
							     : NLMSG_ALIGN(e.msg.nlmsg_len));
	if (off > n || attrs(pl + off, n - off, tb, NLMSGERR_ATTR_MAX + 1) < 0)
		return -E_PROTO;
	if (msg && cap && tb[NLMSGERR_ATTR_MSG].on && !a_str(&tb[NLMSGERR_ATTR_MSG], msg, cap))
		return -E_PROTO;
	return 0;
}

struct ack_ctx {
	struct rr_ack *acks;
	size_t max, n, more;
};

static int ack_msg(const struct nlmsghdr *h, const uint8_t *pl, size_t n, void *ctx)
{
	struct ack_ctx *c = ctx;
	struct rr_ack a = {.seq = h->nlmsg_seq};
	int rc;

	if (h->nlmsg_type != NLMSG_ERROR)
		return 0;
	rc = decode_err(h, pl, n, &a.error, a.msg, sizeof(a.msg));
	if (rc < 0)
		return rc;
	if (c->n < c->max)
		c->acks[c->n++] = a;
	else
		c->more++;
	return 0;
}

int rr_parse_acks(const uint8_t *p, size_t n, struct rr_ack *acks, size_t max, size_t *more)
{
	struct ack_ctx c = {acks, max, 0, 0};
	int rc = walk(p, n, ack_msg, &c);

	if (more)
		*more = c.more;
	return rc < 0 ? rc : (int)c.n;
}

/* ---- canonical expressions --------------------------------------------------------------------
 */

struct canon {
	char *out;
	size_t cap, len;
	int err;
};

static void cput(struct canon *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cput(struct canon *c, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (c->err)
		return;
	va_start(ap, fmt);
	k = vsnprintf(c->out + c->len, c->cap - c->len, fmt, ap);
	va_end(ap);
	if (k < 0 || (size_t)k >= c->cap - c->len) {
		c->err = -E_LIMIT;
		return;
	}
	c->len += (size_t)k;
}

/* The attributes of an expression's data, sorted by type, values in hex (nests included raw:
 * nf_tables never flags them NLA_F_NESTED, so their bytes are comparable). */
static int canon_data(struct canon *c, const uint8_t *p, size_t n)
{
	struct {
		uint16_t t;
		const uint8_t *v;
		size_t n;
	} a[RR_MAX_ATTR];
	size_t k = 0;

	while (n > 0) {
		struct nlattr h;
		size_t adv;

		if (n < NLA_HDRLEN)
			return -E_PROTO;
		memcpy(&h, p, sizeof(h));
		if (h.nla_len < NLA_HDRLEN || h.nla_len > n || k == RR_MAX_ATTR)
			return -E_PROTO;
		a[k].t = h.nla_type & NLA_TYPE_MASK;
		a[k].v = p + NLA_HDRLEN;
		a[k].n = h.nla_len - NLA_HDRLEN;
		for (size_t j = k; j > 0 && a[j - 1].t > a[j].t; j--) {
			__typeof__(a[0]) t = a[j];
			a[j] = a[j - 1];
			a[j - 1] = t;
		}
		k++;
		adv = NLA_ALIGN(h.nla_len);
		if (adv > n)
			adv = n;
		p += adv;
		n -= adv;
	}
	for (size_t i = 0; i < k; i++) {
		cput(c, "%s%u=", i ? "," : "", (unsigned)a[i].t);
		for (size_t j = 0; j < a[i].n; j++)
			cput(c, "%02x", a[i].v[j]);
	}
	return 0;
}

int rr_canon_exprs(const uint8_t *p, size_t n, char *out, size_t cap)
{
	struct canon c = {out, cap, 0, 0};
	size_t count = 0;

	if (!cap)
		return -E_LIMIT;
	out[0] = '\0';
	while (n > 0) {
		struct nlattr h;
		struct rattr tb[NFTA_EXPR_MAX + 1];
		char name[32];
		size_t adv;

		if (n < NLA_HDRLEN)
			return -E_PROTO;
		memcpy(&h, p, sizeof(h));
		if (h.nla_len < NLA_HDRLEN || h.nla_len > n ||
		    (h.nla_type & NLA_TYPE_MASK) != NFTA_LIST_ELEM)
			return -E_PROTO;
		if (attrs(p + NLA_HDRLEN, h.nla_len - NLA_HDRLEN, tb, NFTA_EXPR_MAX + 1) < 0 ||
		    !a_str(&tb[NFTA_EXPR_NAME], name, sizeof(name)))
			return -E_PROTO;
		cput(&c, "%s%s(", count++ ? " " : "", name);
		if (tb[NFTA_EXPR_DATA].on &&
		    canon_data(&c, tb[NFTA_EXPR_DATA].p, tb[NFTA_EXPR_DATA].n) < 0)
			return -E_PROTO;
		cput(&c, ")");
		adv = NLA_ALIGN(h.nla_len);
		if (adv > n)
			adv = n;
		p += adv;
		n -= adv;
	}
	return c.err;
}

/* ---- dumps --------------------------------------------------------------------------------------
 */

struct dump_ctx {
	uint32_t seq; /* 0: any (decoding our own batch) */
	struct rr_dump *d;
};

static int nft_family_ok(const uint8_t *pl, size_t n)
{
	struct nfgenmsg g;

	if (n < sizeof(g))
		return -E_PROTO;
	memcpy(&g, pl, sizeof(g));
	return g.nfgen_family == NFPROTO_INET;
}

static struct rr_dump_chain *find_chain(struct rr_dump *d, const char *name)
{
	for (size_t i = 0; i < d->nchains && i < ARRAY_LEN(d->chains); i++)
		if (strcmp(d->chains[i].name, name) == 0)
			return &d->chains[i];
	return NULL;
}

static int dump_chain(struct rr_dump *d, const uint8_t *p, size_t n)
{
	struct rattr tb[NFTA_CHAIN_MAX + 1], hk[NFTA_HOOK_MAX + 1];
	struct rr_dump_chain c = {0};
	uint32_t prio;

	if (attrs(p, n, tb, NFTA_CHAIN_MAX + 1) < 0)
		return -E_PROTO;
	if (!a_streq(&tb[NFTA_CHAIN_TABLE], REDIRECT_TABLE))
		return 0;
	if (!a_str(&tb[NFTA_CHAIN_NAME], c.name, sizeof(c.name)))
		return -E_PROTO;
	if (tb[NFTA_CHAIN_TYPE].on && !a_str(&tb[NFTA_CHAIN_TYPE], c.type, sizeof(c.type)))
		return -E_PROTO;
	if (tb[NFTA_CHAIN_POLICY].on && !a_be32(&tb[NFTA_CHAIN_POLICY], &c.policy))
		return -E_PROTO;
	if (tb[NFTA_CHAIN_HOOK].on) {
		if (attrs(tb[NFTA_CHAIN_HOOK].p, tb[NFTA_CHAIN_HOOK].n, hk, NFTA_HOOK_MAX + 1) <
			    0 ||
		    !a_be32(&hk[NFTA_HOOK_HOOKNUM], &c.hook) ||
		    !a_be32(&hk[NFTA_HOOK_PRIORITY], &prio))
			return -E_PROTO;
		c.prio = (int32_t)prio;
		c.has_hook = true;
	}
	if (find_chain(d, c.name))
		return -E_PROTO; /* a chain name is unique in its table */
	if (d->nchains < ARRAY_LEN(d->chains))
		d->chains[d->nchains] = c;
	d->nchains++;
	return 0;
}

static int dump_rule(struct rr_dump *d, const uint8_t *p, size_t n)
{
	struct rattr tb[NFTA_RULE_MAX + 1];
	char chain[64];
	struct rr_dump_chain *c;
	int rc;

	if (attrs(p, n, tb, NFTA_RULE_MAX + 1) < 0)
		return -E_PROTO;
	if (!a_streq(&tb[NFTA_RULE_TABLE], REDIRECT_TABLE))
		return 0;
	if (!a_str(&tb[NFTA_RULE_CHAIN], chain, sizeof(chain)))
		return -E_PROTO;
	c = find_chain(d, chain);
	if (c)
		c->nrules++;
	if (d->nrules >= ARRAY_LEN(d->rules)) {
		d->extra_rules++;
		return 0;
	}
	memcpy(d->rules[d->nrules].chain, chain, sizeof(chain));
	rc = rr_canon_exprs(tb[NFTA_RULE_EXPRESSIONS].p, tb[NFTA_RULE_EXPRESSIONS].n,
			    d->rules[d->nrules].canon, RR_CANON_MAX);
	if (rc < 0)
		return rc;
	d->nrules++;
	return 0;
}

static int dump_fib_rule(struct rr_dump *d, const uint8_t *pl, size_t n)
{
	struct fib_rule_hdr h;
	struct rattr tb[FRA_MAX + 1];
	uint32_t table, mark = 0, mask = 0, prio = 0;

	if (n < sizeof(h) ||
	    attrs(pl + NLMSG_ALIGN(sizeof(h)), n - NLMSG_ALIGN(sizeof(h)), tb, FRA_MAX + 1) < 0)
		return -E_PROTO;
	memcpy(&h, pl, sizeof(h));
	table = h.table;
	if (tb[FRA_TABLE].on && !a_u32(&tb[FRA_TABLE], &table))
		return -E_PROTO;
	if ((tb[FRA_FWMARK].on && !a_u32(&tb[FRA_FWMARK], &mark)) ||
	    (tb[FRA_FWMASK].on && !a_u32(&tb[FRA_FWMASK], &mask)) ||
	    (tb[FRA_PRIORITY].on && !a_u32(&tb[FRA_PRIORITY], &prio)))
		return -E_PROTO;
	if (h.action == FR_ACT_TO_TBL && table == REDIRECT_ROUTE_TABLE &&
	    mark == REDIRECT_TPROXY_MARK && mask == REDIRECT_MARK_MASK &&
	    prio == REDIRECT_RULE_PRIORITY)
		d->fib_rules++;
	return 0;
}

static int dump_route(struct rr_dump *d, const uint8_t *pl, size_t n)
{
	struct rtmsg h;
	struct rattr tb[RTA_MAX + 1];
	uint32_t table, oif = 0;

	if (n < sizeof(h) ||
	    attrs(pl + NLMSG_ALIGN(sizeof(h)), n - NLMSG_ALIGN(sizeof(h)), tb, RTA_MAX + 1) < 0)
		return -E_PROTO;
	memcpy(&h, pl, sizeof(h));
	table = h.rtm_table;
	if ((tb[RTA_TABLE].on && !a_u32(&tb[RTA_TABLE], &table)) ||
	    (tb[RTA_OIF].on && !a_u32(&tb[RTA_OIF], &oif)))
		return -E_PROTO;
	if (table == REDIRECT_ROUTE_TABLE && h.rtm_dst_len == 0 && h.rtm_type == RTN_LOCAL &&
	    oif == 1)
		d->routes++;
	return 0;
}

static int dump_addr(struct rr_dump *d, const uint8_t *pl, size_t n)
{
	struct ifaddrmsg h;
	struct rattr tb[IFA_MAX + 1];

	if (n < sizeof(h) ||
	    attrs(pl + NLMSG_ALIGN(sizeof(h)), n - NLMSG_ALIGN(sizeof(h)), tb, IFA_MAX + 1) < 0)
		return -E_PROTO;
	d->addrs++;
	return 0;
}

static int dump_msg(const struct nlmsghdr *h, const uint8_t *pl, size_t n, void *ctx)
{
	struct dump_ctx *c = ctx;
	struct rr_dump *d = c->d;
	int err, fam;

	if (c->seq && h->nlmsg_seq != c->seq)
		return -E_PROTO;
	if (d->done)
		return -E_PROTO; /* nothing may follow the end */
	switch (h->nlmsg_type) {
	case NLMSG_NOOP: return 0;
	case NLMSG_DONE:
		d->done = true;
		if (n >= sizeof(int)) {
			memcpy(&err, pl, sizeof(err));
			if (err > 0 || err < -4095)
				return -E_PROTO;
			d->error = -err;
		}
		return 0;
	case NLMSG_ERROR: d->done = true; return decode_err(h, pl, n, &d->error, NULL, 0);
	case RTM_NEWRULE: return dump_fib_rule(d, pl, n);
	case RTM_NEWROUTE: return dump_route(d, pl, n);
	case RTM_NEWADDR: return dump_addr(d, pl, n);
	default: break;
	}
	if ((h->nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES)
		return 0;
	fam = nft_family_ok(pl, n);
	if (fam <= 0)
		return fam;
	pl += sizeof(struct nfgenmsg);
	n -= sizeof(struct nfgenmsg);
	switch (h->nlmsg_type & 0xff) {
	case NFT_MSG_NEWTABLE: {
		struct rattr tb[NFTA_TABLE_MAX + 1];

		if (attrs(pl, n, tb, NFTA_TABLE_MAX + 1) < 0)
			return -E_PROTO;
		if (a_streq(&tb[NFTA_TABLE_NAME], REDIRECT_TABLE))
			d->table = true;
		return 0;
	}
	case NFT_MSG_NEWCHAIN: return dump_chain(d, pl, n);
	case NFT_MSG_NEWRULE: return dump_rule(d, pl, n);
	default: return 0;
	}
}

int rr_parse_dump(const uint8_t *p, size_t n, uint32_t seq, struct rr_dump *d)
{
	struct dump_ctx c = {seq, d};

	return walk(p, n, dump_msg, &c);
}

/* ---- sockets ----------------------------------------------------------------------------------
 */

struct op {
	int ns_fd;
	const char *label;
	struct errbuf *eb;
	uint8_t *rbuf; /* RECV_CAP bytes */
	uint32_t seq;
};

static const char *lbl(const struct op *op)
{
	return op->label ? op->label : "(own netns)";
}

static int nl_open(struct op *op, int proto)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	struct timeval tv = {.tv_sec = 5};
	int one = 1;
	int fd = net_netns_socket(op->ns_fd, AF_NETLINK, SOCK_RAW, proto, op->eb);

	if (fd < 0) {
		errbuf_prefix(op->eb, "netns %s: netlink", lbl(op));
		return fd;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		return errbuf_set(op->eb, -net_err_from_errno(e), "netns %s: netlink bind: %s",
				  lbl(op), strerror(e));
	}
	/* Best effort: short acks, and the kernel's reason text with errors. */
	(void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	(void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static int nl_send(struct op *op, int fd, const struct buf *b, const char *what)
{
	struct sockaddr_nl k = {.nl_family = AF_NETLINK};
	ssize_t w = sendto(fd, buf_rptr(b), buf_len(b), 0, (struct sockaddr *)&k, sizeof(k));

	if (w == (ssize_t)buf_len(b))
		return 0;
	if (w >= 0)
		errno = EMSGSIZE;
	return errbuf_set(op->eb, -net_err_from_errno(errno), "netns %s: %s: send: %s", lbl(op),
			  what, strerror(errno));
}

/* One datagram; a truncated one is a protocol error (we would lose messages). */
static ssize_t nl_recv(struct op *op, int fd, int flags, const char *what)
{
	ssize_t r = recv(fd, op->rbuf, RECV_CAP, flags | MSG_TRUNC);

	if (r < 0) {
		int e = errno;

		if ((e == EAGAIN || e == EWOULDBLOCK) && (flags & MSG_DONTWAIT))
			return -E_AGAIN;
		if (e == EAGAIN || e == EWOULDBLOCK)
			return errbuf_set(op->eb, E_TIMEOUT,
					  "netns %s: %s: no reply from the kernel", lbl(op), what);
		return errbuf_set(op->eb, -net_err_from_errno(e), "netns %s: %s: recv: %s", lbl(op),
				  what, strerror(e));
	}
	if (r > RECV_CAP)
		return errbuf_set(op->eb, E_PROTO, "netns %s: %s: reply truncated", lbl(op), what);
	return r;
}

/* Sends a batch and returns 0, or the first error (by seq) named after its message. */
static int nl_batch(struct op *op, int fd, const struct buf *b, const struct rr_batch *map,
		    const char *step)
{
	struct rr_ack acks[RR_MAX_BATCH];
	struct rr_ack first = {0};
	const struct rr_ack *bad = NULL;
	size_t got = 0;
	int flags = 0;
	int rc = nl_send(op, fd, b, step);

	if (rc < 0)
		return rc;
	for (;;) {
		ssize_t r = nl_recv(op, fd, flags, step);
		int k;

		if (r == -E_AGAIN)
			break;
		if (r < 0)
			return (int)r;
		k = rr_parse_acks(op->rbuf, (size_t)r, acks, RR_MAX_BATCH, NULL);
		if (k < 0)
			return errbuf_set(op->eb, E_PROTO, "netns %s: %s: malformed reply", lbl(op),
					  step);
		for (int i = 0; i < k; i++) {
			got++;
			if (acks[i].error && (!bad || acks[i].seq < bad->seq)) {
				first = acks[i];
				bad = &first;
			}
		}
		/* Everything is queued already; read the rest without waiting. */
		flags = MSG_DONTWAIT;
		if (!bad && got >= map->n - 2)
			break;
	}
	if (bad) {
		size_t i = bad->seq - map->seq0;
		const char *what = i < map->n && i < RR_MAX_BATCH ? map->what[i] : "message";

		return errbuf_set(op->eb, -net_err_from_errno(bad->error),
				  "netns %s: %s: %s: %s%s%s%s", lbl(op), step, what,
				  strerror(bad->error), bad->msg[0] ? " (" : "", bad->msg,
				  bad->msg[0] ? ")" : "");
	}
	if (got < map->n - 2)
		return errbuf_set(op->eb, E_PROTO, "netns %s: %s: %zu of %zu acks", lbl(op), step,
				  got, map->n - 2);
	return 0;
}

/* One request with NLM_F_ACK: -E_* when the exchange failed, else 0 with the kernel's answer
 * in *ack (error 0 or an errno, and its extended-ack text). */
static int nl_request(struct op *op, int fd, const struct buf *b, uint32_t seq, const char *what,
		      struct rr_ack *ack)
{
	int rc = nl_send(op, fd, b, what);

	memset(ack, 0, sizeof(*ack));
	if (rc < 0)
		return rc;
	for (;;) {
		struct rr_ack acks[4];
		size_t more;
		ssize_t r = nl_recv(op, fd, 0, what);
		int k;

		if (r < 0)
			return (int)r;
		k = rr_parse_acks(op->rbuf, (size_t)r, acks, ARRAY_LEN(acks), &more);
		if (k < 0)
			return errbuf_set(op->eb, E_PROTO, "netns %s: %s: malformed reply", lbl(op),
					  what);
		for (int i = 0; i < k; i++) {
			if (acks[i].seq == seq) {
				*ack = acks[i];
				return 0;
			}
		}
	}
}

/* A dump (or get) into d; d's done/error are reset first. -E_* when the exchange failed, else
 * 0 with the kernel's errno (if any) in d->error. */
static int nl_dump(struct op *op, int fd, const struct buf *b, uint32_t seq, struct rr_dump *d,
		   const char *what)
{
	int rc = nl_send(op, fd, b, what);

	d->done = false;
	d->error = 0;
	if (rc < 0)
		return rc;
	while (!d->done) {
		ssize_t r = nl_recv(op, fd, 0, what);

		if (r < 0)
			return (int)r;
		if (rr_parse_dump(op->rbuf, (size_t)r, seq, d) < 0)
			return errbuf_set(op->eb, E_PROTO, "netns %s: %s: malformed reply", lbl(op),
					  what);
	}
	return 0;
}

/* ---- operations ---------------------------------------------------------------------------------
 */

static void op_init(struct op *op, int ns_fd, const char *label, struct errbuf *eb)
{
	op->ns_fd = ns_fd;
	op->label = label;
	op->eb = eb;
	op->rbuf = xmalloc(RECV_CAP);
	op->seq = (uint32_t)time_real_ms();
}

static const char *fam_ip(int family)
{
	return family == AF_INET6 ? "ip -6" : "ip";
}

/* ip rule/route add or del for one family. Existing on add and missing on del are fine;
 * *changed says whether the kernel changed something. */
static int rt_one(struct op *op, int fd, bool rule, uint16_t type, int family, bool *changed)
{
	struct buf b;
	char what[96];
	bool add = type == RTM_NEWRULE || type == RTM_NEWROUTE;
	uint32_t seq = ++op->seq;
	struct rr_ack ack = {0};
	int rc;

	if (rule)
		snprintf(what, sizeof(what), "%s rule %s fwmark 0x%x/0x%x pref %d lookup %d",
			 fam_ip(family), add ? "add" : "del", REDIRECT_TPROXY_MARK,
			 REDIRECT_MARK_MASK, REDIRECT_RULE_PRIORITY, REDIRECT_ROUTE_TABLE);
	else
		snprintf(what, sizeof(what), "%s route %s local %s dev lo table %d", fam_ip(family),
			 add ? "add" : "del", family == AF_INET6 ? "::/0" : "0.0.0.0/0",
			 REDIRECT_ROUTE_TABLE);
	buf_init(&b, 0);
	rc = rule ? rr_build_rule(type, family, seq, &b) : rr_build_route(type, family, seq, &b);
	if (rc == 0)
		rc = nl_request(op, fd, &b, seq, what, &ack);
	buf_fini(&b);
	*changed = rc == 0 && ack.error == 0;
	if (rc < 0)
		return rc;
	if (ack.error == 0 || (add && ack.error == EEXIST) ||
	    (!add && (ack.error == ENOENT || ack.error == ESRCH || ack.error == EAFNOSUPPORT)))
		return 0;
	return errbuf_set(op->eb, -net_err_from_errno(ack.error), "netns %s: %s: %s%s%s%s", lbl(op),
			  what, strerror(ack.error), ack.msg[0] ? " (" : "", ack.msg,
			  ack.msg[0] ? ")" : "");
}

static int table_del(struct op *op, int *fdp)
{
	struct buf b;
	struct rr_batch map;
	int rc;

	if (*fdp < 0) {
		*fdp = nl_open(op, NETLINK_NETFILTER);
		if (*fdp < 0)
			return *fdp;
	}
	buf_init(&b, 0);
	op->seq += 16;
	rc = rr_build_del_batch(op->seq, &b, &map);
	op->seq += (uint32_t)map.n;
	if (rc == 0)
		rc = nl_batch(op, *fdp, &b, &map, "nf_tables delete");
	buf_fini(&b);
	return rc;
}

static int families(const struct redirect_opts *o, int fam[2])
{
	fam[0] = AF_INET;
	fam[1] = AF_INET6;
	return o->ipv6 ? 2 : 1;
}

int redirect_add(int ns_fd, const char *label, const struct redirect_opts *o, struct errbuf *eb)
{
	struct op op;
	struct buf b;
	struct rr_batch map;
	int nfd = -1, rfd = -1, fam[2], nf = families(o, fam), rc;
	bool added[2][2] = {{false}};

	op_init(&op, ns_fd, label, eb);
	buf_init(&b, 0);
	nfd = nl_open(&op, NETLINK_NETFILTER);
	rc = nfd;
	if (nfd < 0)
		goto out;
	rc = rr_build_add_batch(o, op.seq, &b, &map);
	op.seq += (uint32_t)map.n;
	if (rc < 0) {
		errbuf_set(eb, -rc, "netns %s: building the nf_tables batch: %s", lbl(&op),
			   err_str(rc));
		goto out;
	}
	rc = nl_batch(&op, nfd, &b, &map, "nf_tables batch");
	if (rc < 0)
		goto out;
	rfd = nl_open(&op, NETLINK_ROUTE);
	rc = rfd;
	for (int i = 0; rc >= 0 && i < nf; i++) {
		rc = rt_one(&op, rfd, true, RTM_NEWRULE, fam[i], &added[i][0]);
		if (rc >= 0)
			rc = rt_one(&op, rfd, false, RTM_NEWROUTE, fam[i], &added[i][1]);
	}
	if (rc < 0) {
		/* Roll back: what this call added, then the table; eb keeps the first error. */
		struct errbuf ignore;
		bool ch;

		op.eb = &ignore;
		for (int i = 0; rfd >= 0 && i < nf; i++) {
			if (added[i][1])
				rt_one(&op, rfd, false, RTM_DELROUTE, fam[i], &ch);
			if (added[i][0])
				rt_one(&op, rfd, true, RTM_DELRULE, fam[i], &ch);
		}
		table_del(&op, &nfd);
		goto out;
	}
	rc = 0;
out:
	if (nfd >= 0)
		close(nfd);
	if (rfd >= 0)
		close(rfd);
	buf_fini(&b);
	free(op.rbuf);
	return rc;
}

int redirect_del(int ns_fd, const char *label, struct errbuf *eb)
{
	struct op op;
	int nfd = -1, rfd, rc;
	bool ch;

	op_init(&op, ns_fd, label, eb);
	rc = table_del(&op, &nfd);
	if (nfd >= 0)
		close(nfd);
	if (rc < 0)
		goto out;
	rfd = nl_open(&op, NETLINK_ROUTE);
	rc = rfd;
	for (int f = 0; rfd >= 0 && f < 2 && rc >= 0; f++) {
		int family = f ? AF_INET6 : AF_INET;

		/* Someone may have added a copy; remove until none is left (bounded). */
		for (int i = 0; i < 8 && rc >= 0; i++) {
			rc = rt_one(&op, rfd, true, RTM_DELRULE, family, &ch);
			if (!ch)
				break;
		}
		for (int i = 0; i < 8 && rc >= 0; i++) {
			rc = rt_one(&op, rfd, false, RTM_DELROUTE, family, &ch);
			if (!ch)
				break;
		}
	}
	if (rfd >= 0)
		close(rfd);
	if (rc > 0)
		rc = 0;
out:
	free(op.rbuf);
	return rc;
}

/* ---- check --------------------------------------------------------------------------------------
 */

static void drift(struct errlist *el, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void drift(struct errlist *el, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errlist_vadd(el, fmt, ap);
	va_end(ap);
}

static int nft_get(struct op *op, int fd, uint16_t msg, bool dump, struct rr_dump *d,
		   const char *what)
{
	struct buf b;
	uint32_t seq = ++op->seq;
	int rc;

	buf_init(&b, 0);
	rc = rr_build_get(msg, dump, seq, &b);
	if (rc == 0)
		rc = nl_dump(op, fd, &b, seq, d, what);
	buf_fini(&b);
	return rc;
}

static int rt_dump(struct op *op, int fd, uint16_t type, int family, struct rr_dump *d,
		   const char *what)
{
	struct buf b;
	uint32_t seq = ++op->seq;
	int rc;

	buf_init(&b, 0);
	rc = rr_build_rtdump(type, family, seq, &b);
	if (rc == 0)
		rc = nl_dump(op, fd, &b, seq, d, what);
	buf_fini(&b);
	return rc;
}

/* The chains and rules that redirect_add(o) makes, decoded from our own batch. */
static int expected(const struct redirect_opts *o, struct rr_dump *want)
{
	struct buf b;
	struct rr_batch map;
	int rc;

	buf_init(&b, 0);
	rc = rr_build_add_batch(o, 1, &b, &map);
	if (rc == 0)
		rc = rr_parse_dump(buf_rptr(&b), buf_len(&b), 0, want);
	buf_fini(&b);
	return rc;
}

static void compare_nft(const struct rr_dump *want, const struct rr_dump *got, struct errlist *el)
{
	for (size_t i = 0; i < want->nchains; i++) {
		const struct rr_dump_chain *w = &want->chains[i];
		const struct rr_dump_chain *g = find_chain((struct rr_dump *)got, w->name);
		size_t wi = 0, gi = 0;

		if (!g) {
			drift(el, "chain %s: missing", w->name);
			continue;
		}
		if (!g->has_hook || g->hook != w->hook || g->prio != w->prio ||
		    strcmp(g->type, w->type) != 0 || g->policy != w->policy)
			drift(el, "chain %s: type, hook, priority or policy differs", w->name);
		if (g->nrules != w->nrules) {
			drift(el, "chain %s: %zu rules, expected %zu", w->name, g->nrules,
			      w->nrules);
			continue;
		}
		/* Same count: compare rule by rule, in order. */
		for (size_t k = 1; k <= w->nrules; k++) {
			while (wi < want->nrules && strcmp(want->rules[wi].chain, w->name) != 0)
				wi++;
			while (gi < got->nrules && strcmp(got->rules[gi].chain, w->name) != 0)
				gi++;
			if (wi >= want->nrules || gi >= got->nrules)
				break;
			if (strcmp(want->rules[wi].canon, got->rules[gi].canon) != 0)
				drift(el, "chain %s rule %zu: differs", w->name, k);
			wi++;
			gi++;
		}
	}
	for (size_t i = 0; i < got->nchains && i < ARRAY_LEN(got->chains); i++)
		if (!find_chain((struct rr_dump *)want, got->chains[i].name))
			drift(el, "chain %s: not ours", got->chains[i].name);
}

static int check_nft(struct op *op, const struct redirect_opts *o, struct errlist *el)
{
	struct rr_dump *want = xcalloc(1, sizeof(*want)), *got = xcalloc(1, sizeof(*got));
	int fd = nl_open(op, NETLINK_NETFILTER), rc = fd;

	if (fd < 0)
		goto out;
	rc = expected(o, want);
	if (rc < 0) {
		errbuf_set(op->eb, -rc, "netns %s: building the expected ruleset: %s", lbl(op),
			   err_str(rc));
		goto out;
	}
	rc = nft_get(op, fd, NFT_MSG_GETTABLE, false, got, "get table");
	if (rc == 0 && got->error == ENOENT) {
		drift(el, "table inet %s: missing", REDIRECT_TABLE);
		goto out;
	}
	if (rc == 0 && !got->error)
		rc = nft_get(op, fd, NFT_MSG_GETCHAIN, true, got, "dump chains");
	if (rc == 0 && !got->error)
		rc = nft_get(op, fd, NFT_MSG_GETRULE, true, got, "dump rules");
	if (rc == 0 && got->error)
		rc = errbuf_set(op->eb, -net_err_from_errno(got->error),
				"netns %s: nf_tables dump: %s", lbl(op), strerror(got->error));
	if (rc < 0)
		goto out;
	compare_nft(want, got, el);
out:
	if (fd >= 0)
		close(fd);
	free(want);
	free(got);
	return rc;
}

static int check_rt(struct op *op, const struct redirect_opts *o, struct errlist *el)
{
	struct rr_dump *d = xcalloc(1, sizeof(*d));
	int fam[2], nf = families(o, fam), fd = nl_open(op, NETLINK_ROUTE), rc = fd;

	for (int i = 0; fd >= 0 && i < nf; i++) {
		d->fib_rules = d->routes = 0;
		rc = rt_dump(op, fd, RTM_GETRULE, fam[i], d, "dump ip rules");
		if (rc == 0)
			rc = rt_dump(op, fd, RTM_GETROUTE, fam[i], d, "dump routes");
		if (rc == 0 && d->error)
			rc = errbuf_set(op->eb, -net_err_from_errno(d->error),
					"netns %s: rtnetlink dump: %s", lbl(op),
					strerror(d->error));
		if (rc < 0)
			break;
		if (!d->fib_rules)
			drift(el, "%s rule fwmark 0x%x/0x%x lookup %d: missing", fam_ip(fam[i]),
			      REDIRECT_TPROXY_MARK, REDIRECT_MARK_MASK, REDIRECT_ROUTE_TABLE);
		if (!d->routes)
			drift(el, "%s route local %s dev lo table %d: missing", fam_ip(fam[i]),
			      fam[i] == AF_INET6 ? "::/0" : "0.0.0.0/0", REDIRECT_ROUTE_TABLE);
	}
	if (fd >= 0)
		close(fd);
	free(d);
	return rc < 0 ? rc : 0;
}

int redirect_check(int ns_fd, const char *label, const struct redirect_opts *o, struct errbuf *eb)
{
	struct errbuf local = {0};
	struct errlist el = {0};
	struct op op;
	int rc;

	op_init(&op, ns_fd, label, eb ? eb : &local);
	op.eb->msg[0] = '\0';
	rc = check_nft(&op, o, &el);
	if (rc >= 0)
		rc = check_rt(&op, o, &el);
	if (rc >= 0 && el.n) {
		struct buf b;

		buf_init(&b, 0);
		for (size_t i = 0; i < el.n; i++)
			buf_printf(&b, "%s%s", i ? "; " : "", el.items[i]);
		buf_append(&b, "", 1);
		rc = errbuf_set(eb, E_STATE, "netns %s: %s", lbl(&op), (const char *)buf_rptr(&b));
		buf_fini(&b);
	}
	errlist_fini(&el);
	free(op.rbuf);
	return rc < 0 ? rc : 0;
}

bool redirect_netns_has_ipv6(int ns_fd)
{
	struct errbuf eb = {0};
	struct op op;
	struct rr_dump *d = xcalloc(1, sizeof(*d));
	int fd, rc = -1;

	op_init(&op, ns_fd, NULL, &eb);
	fd = nl_open(&op, NETLINK_ROUTE);
	if (fd >= 0) {
		rc = rt_dump(&op, fd, RTM_GETADDR, AF_INET6, d, "dump addresses");
		close(fd);
	}
	rc = rc == 0 && !d->error && d->addrs > 0;
	free(d);
	free(op.rbuf);
	return rc;
}
