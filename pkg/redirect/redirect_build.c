/* The in-pod ruleset as data, and its two renderings: nf_tables/rtnetlink messages and `nft`
 * text (sans-I/O: everything here only writes into a struct buf). */
#include "pkg/redirect/redirect_int.h"

#include <arpa/inet.h>
#include <linux/fib_rules.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* nft 1.0.6 prints -150 as "mangle" for filter/route chains and -100 as "dstnat" for nat
 * prerouting, but a nat output chain at -100 as the number. */
const struct rr_chain rr_chains[RR__NCHAINS] = {
	[RR_PRE_MANGLE] = {"prerouting-mangle", "filter", NF_INET_PRE_ROUTING, -150, "mangle"},
	[RR_OUT_MANGLE] = {"output-mangle", "route", NF_INET_LOCAL_OUT, -150, "mangle"},
	[RR_PRE_NAT] = {"prerouting-nat", "nat", NF_INET_PRE_ROUTING, -100, "dstnat"},
	[RR_OUT_NAT] = {"output-nat", "nat", NF_INET_LOCAL_OUT, -100, "-100"},
};

int rr_test_break_rule;

#define LOOP4 "127.0.0.1"
#define LOOP6 "::1"

void rr_opts_defaults(const struct redirect_opts *in, struct redirect_opts *out)
{
	*out = *in;
	if (!out->outbound_port)
		out->outbound_port = 15001;
	if (!out->inbound_port)
		out->inbound_port = 15006;
	if (!out->hbone_port)
		out->hbone_port = 15008;
	if (!out->dns_port)
		out->dns_port = 15053;
	if (out->n_exclude_inbound > REDIRECT_MAX_EXCLUDE)
		out->n_exclude_inbound = REDIRECT_MAX_EXCLUDE;
}

/* ---- the rules --------------------------------------------------------------------------------
 */

struct rr_list {
	struct rr_rule *r;
	size_t n, max;
};

static struct rr_rule *add_rule(struct rr_list *l, enum rr_chain_id c, enum rr_action a,
				uint16_t port)
{
	static struct rr_rule sink;
	struct rr_rule *r = l->n < l->max ? &l->r[l->n] : &sink;

	l->n++;
	memset(r, 0, sizeof(*r));
	r->chain = c;
	r->act = a;
	r->port = port;
	return r;
}

static void m_addr(struct rr_rule *r, bool v6, bool src, bool neg, const char *addr)
{
	r->m[r->nmatch++] = (struct rr_match){
		.kind = RR_M_ADDR, .v6 = v6, .src = src, .neg = neg, .text = addr};
}

static void m_l4(struct rr_rule *r, uint8_t proto)
{
	r->m[r->nmatch++] = (struct rr_match){.kind = RR_M_L4PROTO, .proto = proto};
}

static void m_dport(struct rr_rule *r, uint8_t proto, uint16_t port, bool neg)
{
	r->m[r->nmatch++] =
		(struct rr_match){.kind = RR_M_DPORT, .proto = proto, .port = port, .neg = neg};
}

static void m_mark(struct rr_rule *r, enum rr_match_kind k, uint32_t val, bool neg)
{
	r->m[r->nmatch++] = (struct rr_match){.kind = k, .val = val, .neg = neg};
}

static void m_oif(struct rr_rule *r, const char *name, bool neg)
{
	r->m[r->nmatch++] = (struct rr_match){.kind = RR_M_OIFNAME, .text = name, .neg = neg};
}

/* One rule per family that the address match needs (v4, then v6 when o->ipv6). */
static void per_family(struct rr_list *l, const struct redirect_opts *o,
		       void (*fn)(struct rr_list *, const struct redirect_opts *, bool))
{
	fn(l, o, false);
	if (o->ipv6)
		fn(l, o, true);
}

static void pre_probe(struct rr_list *l, const struct redirect_opts *o, bool v6)
{
	struct rr_rule *r = add_rule(l, RR_PRE_NAT, RR_A_ACCEPT, 0);

	(void)o;
	m_addr(r, v6, true, false, v6 ? REDIRECT_PROBE_IP6 : REDIRECT_PROBE_IP4);
	m_l4(r, IPPROTO_TCP);
}

static void pre_redirect(struct rr_list *l, const struct redirect_opts *o, bool v6)
{
	struct rr_rule *r = add_rule(l, RR_PRE_NAT, RR_A_REDIRECT, o->inbound_port);

	m_addr(r, v6, false, true, v6 ? LOOP6 : LOOP4);
	m_dport(r, IPPROTO_TCP, o->hbone_port, true);
	m_mark(r, RR_M_MARK, REDIRECT_MARK, true);
}

static void out_probe(struct rr_list *l, const struct redirect_opts *o, bool v6)
{
	struct rr_rule *r = add_rule(l, RR_OUT_NAT, RR_A_ACCEPT, 0);

	(void)o;
	m_addr(r, v6, false, false, v6 ? REDIRECT_PROBE_IP6 : REDIRECT_PROBE_IP4);
	m_l4(r, IPPROTO_TCP);
}

static void out_dns_tcp(struct rr_list *l, const struct redirect_opts *o, bool v6)
{
	struct rr_rule *r = add_rule(l, RR_OUT_NAT, RR_A_REDIRECT, o->dns_port);

	m_addr(r, v6, false, true, v6 ? LOOP6 : LOOP4);
	m_dport(r, IPPROTO_TCP, 53, false);
	m_mark(r, RR_M_MARK, REDIRECT_MARK, true);
}

static void out_lo(struct rr_list *l, const struct redirect_opts *o, bool v6)
{
	struct rr_rule *r = add_rule(l, RR_OUT_NAT, RR_A_ACCEPT, 0);

	(void)o;
	m_addr(r, v6, false, true, v6 ? LOOP6 : LOOP4);
	m_oif(r, "lo", false);
}

static void out_redirect(struct rr_list *l, const struct redirect_opts *o, bool v6)
{
	struct rr_rule *r = add_rule(l, RR_OUT_NAT, RR_A_REDIRECT, o->outbound_port);

	m_addr(r, v6, false, true, v6 ? LOOP6 : LOOP4);
	m_l4(r, IPPROTO_TCP);
	m_mark(r, RR_M_MARK, REDIRECT_MARK, true);
}

/* reference/ztunnel-and-cni.md §7.2, rule for rule; family-independent matches are one rule of
 * the inet table, address matches one rule per family. */
size_t rr_rules(const struct redirect_opts *in, struct rr_rule *rules, size_t max)
{
	struct redirect_opts o;
	struct rr_list l = {rules, 0, max};
	struct rr_rule *r;

	rr_opts_defaults(in, &o);
	/* mangle: connections ztunnel opened with its mark get connmark 0x111 (iptables
	 * --set-xmark 0x111/0xfff), replies of the app get it back as packet mark. */
	r = add_rule(&l, RR_PRE_MANGLE, RR_A_CTMARK_SET, 0);
	m_mark(r, RR_M_MARK, REDIRECT_MARK, false);
	r = add_rule(&l, RR_OUT_MANGLE, RR_A_MARK_RESTORE, 0);
	m_mark(r, RR_M_CTMARK, REDIRECT_TPROXY_MARK, false);

	if (!o.bypass_inbound) {
		per_family(&l, &o, pre_probe);
		for (size_t i = 0; i < o.n_exclude_inbound; i++) {
			r = add_rule(&l, RR_PRE_NAT, RR_A_ACCEPT, 0);
			m_dport(r, IPPROTO_TCP, o.exclude_inbound[i], false);
		}
		per_family(&l, &o, pre_redirect);
	}

	per_family(&l, &o, out_probe);
	if (o.dns_capture) {
		r = add_rule(&l, RR_OUT_NAT, RR_A_REDIRECT, o.dns_port);
		m_oif(r, "lo", true);
		m_dport(r, IPPROTO_UDP, 53, false);
		m_mark(r, RR_M_MARK, REDIRECT_MARK, true);
		per_family(&l, &o, out_dns_tcp);
	}
	r = add_rule(&l, RR_OUT_NAT, RR_A_ACCEPT, 0);
	m_l4(r, IPPROTO_TCP);
	m_mark(r, RR_M_MARK, REDIRECT_TPROXY_MARK, false);
	per_family(&l, &o, out_lo);
	per_family(&l, &o, out_redirect);
	return l.n;
}

void rr_rule_counts(const struct redirect_opts *o, size_t counts[RR__NCHAINS])
{
	struct rr_rule rules[RR_MAX_RULES];
	size_t n = rr_rules(o, rules, RR_MAX_RULES);

	memset(counts, 0, sizeof(size_t) * RR__NCHAINS);
	for (size_t i = 0; i < n && i < RR_MAX_RULES; i++)
		counts[rules[i].chain]++;
}

/* ---- nft text ----------------------------------------------------------------------------------
 */

static const char *proto_name(uint8_t p)
{
	return p == IPPROTO_UDP ? "udp" : "tcp";
}

static void text_match(struct buf *out, const struct rr_match *m)
{
	const char *op = m->neg ? "!= " : "";

	switch (m->kind) {
	case RR_M_ADDR:
		buf_printf(out, "%s %s %s%s ", m->v6 ? "ip6" : "ip", m->src ? "saddr" : "daddr", op,
			   m->text);
		break;
	case RR_M_L4PROTO: buf_printf(out, "meta l4proto %s ", proto_name(m->proto)); break;
	case RR_M_DPORT:
		buf_printf(out, "%s dport %s%u ", proto_name(m->proto), op, (unsigned)m->port);
		break;
	case RR_M_OIFNAME: buf_printf(out, "oifname %s\"%s\" ", op, m->text); break;
	case RR_M_MARK:
	case RR_M_CTMARK:
		buf_printf(out, "%s mark & 0x%08x %s 0x%08x ", m->kind == RR_M_MARK ? "meta" : "ct",
			   REDIRECT_MARK_MASK, m->neg ? "!=" : "==", m->val);
		break;
	}
}

static void text_rule(struct buf *out, const struct rr_rule *r)
{
	buf_append_str(out, "\t\t");
	for (size_t i = 0; i < r->nmatch; i++)
		text_match(out, &r->m[i]);
	switch (r->act) {
	case RR_A_ACCEPT: buf_append_str(out, "accept"); break;
	case RR_A_REDIRECT: buf_printf(out, "redirect to :%u", (unsigned)r->port); break;
	case RR_A_CTMARK_SET:
		/* The kernel holds (ct mark & 0xfffff000) ^ 0x111; nft 1.0.6 prints the mask of
		 * such a bitwise OR-ed with the value. */
		buf_printf(out, "ct mark set ct mark & 0x%08x | 0x%08x",
			   ~REDIRECT_MARK_MASK | REDIRECT_TPROXY_MARK, REDIRECT_TPROXY_MARK);
		break;
	case RR_A_MARK_RESTORE: buf_append_str(out, "meta mark set ct mark"); break;
	}
	buf_append_str(out, "\n");
}

void redirect_dry_run(const struct redirect_opts *o, struct buf *out)
{
	struct rr_rule rules[RR_MAX_RULES];
	size_t n = rr_rules(o, rules, RR_MAX_RULES);

	buf_printf(out, "table inet %s {\n", REDIRECT_TABLE);
	for (int c = 0; c < RR__NCHAINS; c++) {
		const struct rr_chain *ch = &rr_chains[c];

		if (c)
			buf_append_str(out, "\n");
		buf_printf(out, "\tchain %s {\n\t\ttype %s hook %s priority %s; policy accept;\n",
			   ch->name, ch->type,
			   ch->hook == NF_INET_PRE_ROUTING ? "prerouting" : "output",
			   ch->prio_text);
		for (size_t i = 0; i < n && i < RR_MAX_RULES; i++)
			if (rules[i].chain == (enum rr_chain_id)c)
				text_rule(out, &rules[i]);
		buf_append_str(out, "\t}\n");
	}
	buf_append_str(out, "}\n");
	buf_printf(out, "# ip rule add fwmark 0x%x/0x%x pref %d lookup %d\n", REDIRECT_TPROXY_MARK,
		   REDIRECT_MARK_MASK, REDIRECT_RULE_PRIORITY, REDIRECT_ROUTE_TABLE);
	buf_printf(out, "# ip route add local 0.0.0.0/0 dev lo table %d\n", REDIRECT_ROUTE_TABLE);
	if (o->ipv6) {
		buf_printf(out, "# ip -6 rule add fwmark 0x%x/0x%x pref %d lookup %d\n",
			   REDIRECT_TPROXY_MARK, REDIRECT_MARK_MASK, REDIRECT_RULE_PRIORITY,
			   REDIRECT_ROUTE_TABLE);
		buf_printf(out, "# ip -6 route add local ::/0 dev lo table %d\n",
			   REDIRECT_ROUTE_TABLE);
	}
}

/* ---- netlink message writer -------------------------------------------------------------------
 */

static void put(struct rnl *w, const void *p, size_t n)
{
	size_t pad = NLMSG_ALIGN(n) - n;
	static const uint8_t zero[4];

	if (w->err)
		return;
	if (buf_append(w->b, p, n) < 0 || buf_append(w->b, zero, pad) < 0)
		w->err = -E_LIMIT;
}

static uint8_t *at(struct rnl *w, size_t off)
{
	return (uint8_t *)buf_rptr(w->b) + off;
}

size_t rnl_msg_begin(struct rnl *w, uint16_t type, uint16_t flags, uint32_t seq, const void *hdr,
		     size_t hdrlen)
{
	struct nlmsghdr h = {.nlmsg_type = type, .nlmsg_flags = flags, .nlmsg_seq = seq};
	size_t off = buf_len(w->b);

	put(w, &h, sizeof(h));
	put(w, hdr, hdrlen);
	return off;
}

void rnl_msg_end(struct rnl *w, size_t off)
{
	uint32_t len = (uint32_t)(buf_len(w->b) - off);

	if (!w->err)
		memcpy(at(w, off), &len, sizeof(len));
}

void rnl_attr(struct rnl *w, uint16_t type, const void *p, size_t n)
{
	struct nlattr a = {.nla_len = (uint16_t)(NLA_HDRLEN + n), .nla_type = type};

	if (n > 0xffff - NLA_HDRLEN) {
		w->err = -E_LIMIT;
		return;
	}
	put(w, &a, sizeof(a));
	if (n)
		put(w, p, n);
}

void rnl_attr_u32(struct rnl *w, uint16_t type, uint32_t v)
{
	rnl_attr(w, type, &v, sizeof(v));
}

void rnl_attr_be32(struct rnl *w, uint16_t type, uint32_t v)
{
	rnl_attr_u32(w, type, htonl(v));
}

void rnl_attr_str(struct rnl *w, uint16_t type, const char *s)
{
	rnl_attr(w, type, s, strlen(s) + 1);
}

size_t rnl_nest_begin(struct rnl *w, uint16_t type)
{
	size_t off = buf_len(w->b);

	/* No NLA_F_NESTED, like libnftnl: nf_tables dumps its nests without it, and check
	 * compares our bytes with the dump's. */
	rnl_attr(w, type, NULL, 0);
	return off;
}

void rnl_nest_end(struct rnl *w, size_t off)
{
	size_t len = buf_len(w->b) - off;
	uint16_t l16 = (uint16_t)len;

	if (len > 0xffff)
		w->err = -E_LIMIT;
	if (!w->err)
		memcpy(at(w, off), &l16, sizeof(l16));
}

/* ---- nf_tables expressions ------------------------------------------------------------------- */

static size_t expr_begin(struct rnl *w, const char *name, size_t *data)
{
	size_t e = rnl_nest_begin(w, NFTA_LIST_ELEM);

	rnl_attr_str(w, NFTA_EXPR_NAME, name);
	*data = rnl_nest_begin(w, NFTA_EXPR_DATA);
	return e;
}

static void expr_end(struct rnl *w, size_t e, size_t data)
{
	rnl_nest_end(w, data);
	rnl_nest_end(w, e);
}

static void data_value(struct rnl *w, uint16_t type, const void *p, size_t n)
{
	size_t d = rnl_nest_begin(w, type);

	rnl_attr(w, NFTA_DATA_VALUE, p, n);
	rnl_nest_end(w, d);
}

static void e_meta_load(struct rnl *w, uint32_t key)
{
	size_t d, e = expr_begin(w, "meta", &d);

	rnl_attr_be32(w, NFTA_META_DREG, NFT_REG_1);
	rnl_attr_be32(w, NFTA_META_KEY, key);
	expr_end(w, e, d);
}

static void e_meta_set(struct rnl *w, uint32_t key)
{
	size_t d, e = expr_begin(w, "meta", &d);

	rnl_attr_be32(w, NFTA_META_KEY, key);
	rnl_attr_be32(w, NFTA_META_SREG, NFT_REG_1);
	expr_end(w, e, d);
}

static void e_ct_load(struct rnl *w, uint32_t key)
{
	size_t d, e = expr_begin(w, "ct", &d);

	rnl_attr_be32(w, NFTA_CT_DREG, NFT_REG_1);
	rnl_attr_be32(w, NFTA_CT_KEY, key);
	expr_end(w, e, d);
}

static void e_ct_set(struct rnl *w, uint32_t key)
{
	size_t d, e = expr_begin(w, "ct", &d);

	rnl_attr_be32(w, NFTA_CT_KEY, key);
	rnl_attr_be32(w, NFTA_CT_SREG, NFT_REG_1);
	expr_end(w, e, d);
}

static void e_cmp(struct rnl *w, bool neg, const void *p, size_t n)
{
	size_t d, e = expr_begin(w, "cmp", &d);

	rnl_attr_be32(w, NFTA_CMP_SREG, NFT_REG_1);
	rnl_attr_be32(w, NFTA_CMP_OP, neg ? NFT_CMP_NEQ : NFT_CMP_EQ);
	data_value(w, NFTA_CMP_DATA, p, n);
	expr_end(w, e, d);
}

static void e_cmp_u8(struct rnl *w, uint8_t v)
{
	e_cmp(w, false, &v, 1);
}

/* reg1 = (reg1 & mask) ^ xor on 4 host-order bytes (a mark). */
static void e_bitwise(struct rnl *w, uint32_t mask, uint32_t xor)
{
	size_t d, e = expr_begin(w, "bitwise", &d);

	rnl_attr_be32(w, NFTA_BITWISE_SREG, NFT_REG_1);
	rnl_attr_be32(w, NFTA_BITWISE_DREG, NFT_REG_1);
	rnl_attr_be32(w, NFTA_BITWISE_LEN, 4);
	/* Sent although it is the default, because the kernel's dump has it (redirect_check
	 * compares the two). */
	rnl_attr_be32(w, NFTA_BITWISE_OP, NFT_BITWISE_BOOL);
	data_value(w, NFTA_BITWISE_MASK, &mask, 4);
	data_value(w, NFTA_BITWISE_XOR, &xor, 4);
	expr_end(w, e, d);
}

static void e_payload(struct rnl *w, uint32_t base, uint32_t offset, uint32_t len)
{
	size_t d, e = expr_begin(w, "payload", &d);

	rnl_attr_be32(w, NFTA_PAYLOAD_DREG, NFT_REG_1);
	rnl_attr_be32(w, NFTA_PAYLOAD_BASE, base);
	rnl_attr_be32(w, NFTA_PAYLOAD_OFFSET, offset);
	rnl_attr_be32(w, NFTA_PAYLOAD_LEN, len);
	expr_end(w, e, d);
}

static void e_accept(struct rnl *w)
{
	size_t d, e = expr_begin(w, "immediate", &d), v, vv;

	rnl_attr_be32(w, NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
	v = rnl_nest_begin(w, NFTA_IMMEDIATE_DATA);
	vv = rnl_nest_begin(w, NFTA_DATA_VERDICT);
	rnl_attr_be32(w, NFTA_VERDICT_CODE, NF_ACCEPT);
	rnl_nest_end(w, vv);
	rnl_nest_end(w, v);
	expr_end(w, e, d);
}

static void e_redirect(struct rnl *w, uint16_t port)
{
	uint16_t be = htons(port);
	size_t d, e = expr_begin(w, "immediate", &d);

	rnl_attr_be32(w, NFTA_IMMEDIATE_DREG, NFT_REG_1);
	data_value(w, NFTA_IMMEDIATE_DATA, &be, 2);
	expr_end(w, e, d);
	e = expr_begin(w, "redir", &d);
	rnl_attr_be32(w, NFTA_REDIR_REG_PROTO_MIN, NFT_REG_1);
	rnl_attr_be32(w, NFTA_REDIR_REG_PROTO_MAX, NFT_REG_1);
	rnl_attr_be32(w, NFTA_REDIR_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
	expr_end(w, e, d);
}

static void e_l4proto(struct rnl *w, uint8_t proto)
{
	e_meta_load(w, NFT_META_L4PROTO);
	e_cmp_u8(w, proto);
}

static int exprs_match(struct rnl *w, const struct rr_match *m)
{
	uint8_t a[16];
	char ifname[16] = {0};
	uint16_t port;

	switch (m->kind) {
	case RR_M_ADDR:
		if (inet_pton(m->v6 ? AF_INET6 : AF_INET, m->text, a) != 1)
			return -E_INVAL;
		e_meta_load(w, NFT_META_NFPROTO);
		e_cmp_u8(w, m->v6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
		if (m->v6)
			e_payload(w, NFT_PAYLOAD_NETWORK_HEADER, m->src ? 8 : 24, 16);
		else
			e_payload(w, NFT_PAYLOAD_NETWORK_HEADER, m->src ? 12 : 16, 4);
		e_cmp(w, m->neg, a, m->v6 ? 16 : 4);
		break;
	case RR_M_L4PROTO: e_l4proto(w, m->proto); break;
	case RR_M_DPORT:
		port = htons(m->port);
		e_l4proto(w, m->proto);
		e_payload(w, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
		e_cmp(w, m->neg, &port, 2);
		break;
	case RR_M_OIFNAME:
		memcpy(ifname, m->text, strnlen(m->text, sizeof(ifname) - 1));
		e_meta_load(w, NFT_META_OIFNAME);
		e_cmp(w, m->neg, ifname, sizeof(ifname));
		break;
	case RR_M_MARK:
	case RR_M_CTMARK:
		if (m->kind == RR_M_MARK)
			e_meta_load(w, NFT_META_MARK);
		else
			e_ct_load(w, NFT_CT_MARK);
		e_bitwise(w, REDIRECT_MARK_MASK, 0);
		e_cmp(w, m->neg, &m->val, 4);
		break;
	}
	return 0;
}

static int exprs_rule(struct rnl *w, const struct rr_rule *r)
{
	for (size_t i = 0; i < r->nmatch; i++)
		if (exprs_match(w, &r->m[i]) < 0)
			return -E_INVAL;
	switch (r->act) {
	case RR_A_ACCEPT: e_accept(w); break;
	case RR_A_REDIRECT: e_redirect(w, r->port); break;
	case RR_A_CTMARK_SET:
		e_ct_load(w, NFT_CT_MARK);
		e_bitwise(w, ~REDIRECT_MARK_MASK, REDIRECT_TPROXY_MARK);
		e_ct_set(w, NFT_CT_MARK);
		break;
	case RR_A_MARK_RESTORE:
		e_ct_load(w, NFT_CT_MARK);
		e_meta_set(w, NFT_META_MARK);
		break;
	}
	return 0;
}

/* ---- batches -----------------------------------------------------------------------------------
 */

#define NFT_TYPE(m) ((uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | (m)))

static size_t nft_begin(struct rnl *w, uint16_t msg, uint16_t flags, uint32_t seq)
{
	struct nfgenmsg g = {.nfgen_family = NFPROTO_INET, .version = NFNETLINK_V0};

	return rnl_msg_begin(w, NFT_TYPE(msg), NLM_F_REQUEST | flags, seq, &g, sizeof(g));
}

static void batch_mark(struct rnl *w, uint16_t type, uint32_t seq)
{
	struct nfgenmsg g = {.nfgen_family = AF_UNSPEC,
			     .version = NFNETLINK_V0,
			     .res_id = htons(NFNL_SUBSYS_NFTABLES)};
	size_t off = rnl_msg_begin(w, type, NLM_F_REQUEST, seq, &g, sizeof(g));

	rnl_msg_end(w, off);
}

static void map_add(struct rr_batch *map, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void map_add(struct rr_batch *map, const char *fmt, ...)
{
	va_list ap;

	if (map->n < RR_MAX_BATCH) {
		va_start(ap, fmt);
		vsnprintf(map->what[map->n], sizeof(map->what[0]), fmt, ap);
		va_end(ap);
	}
	map->n++;
}

static void table_msg(struct rnl *w, uint16_t msg, uint16_t flags, struct rr_batch *map)
{
	size_t off = nft_begin(w, msg, flags | NLM_F_ACK, map->seq0 + (uint32_t)map->n);

	rnl_attr_str(w, NFTA_TABLE_NAME, REDIRECT_TABLE);
	if (msg == NFT_MSG_NEWTABLE)
		rnl_attr_be32(w, NFTA_TABLE_FLAGS, 0);
	rnl_msg_end(w, off);
	map_add(map, "table inet %s", REDIRECT_TABLE);
}

static void chain_msg(struct rnl *w, const struct rr_chain *c, struct rr_batch *map)
{
	size_t off = nft_begin(w, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_ACK,
			       map->seq0 + (uint32_t)map->n);
	size_t h;

	rnl_attr_str(w, NFTA_CHAIN_TABLE, REDIRECT_TABLE);
	rnl_attr_str(w, NFTA_CHAIN_NAME, c->name);
	h = rnl_nest_begin(w, NFTA_CHAIN_HOOK);
	rnl_attr_be32(w, NFTA_HOOK_HOOKNUM, c->hook);
	rnl_attr_be32(w, NFTA_HOOK_PRIORITY, (uint32_t)c->prio);
	rnl_nest_end(w, h);
	rnl_attr_be32(w, NFTA_CHAIN_POLICY, NF_ACCEPT);
	rnl_attr_str(w, NFTA_CHAIN_TYPE, c->type);
	rnl_msg_end(w, off);
	map_add(map, "chain %s", c->name);
}

static int rule_msg(struct rnl *w, const struct rr_rule *r, size_t idx, struct rr_batch *map)
{
	size_t off = nft_begin(w, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK,
			       map->seq0 + (uint32_t)map->n);
	size_t ex;

	rnl_attr_str(w, NFTA_RULE_TABLE, REDIRECT_TABLE);
	rnl_attr_str(w, NFTA_RULE_CHAIN, rr_chains[r->chain].name);
	ex = rnl_nest_begin(w, NFTA_RULE_EXPRESSIONS);
	if (exprs_rule(w, r) < 0)
		return -E_INVAL;
	if (rr_test_break_rule > 0 && map->n - 3 - RR__NCHAINS == (size_t)rr_test_break_rule) {
		size_t d, e = expr_begin(w, "ambient-test-broken", &d);

		expr_end(w, e, d);
	}
	rnl_nest_end(w, ex);
	rnl_msg_end(w, off);
	map_add(map, "chain %s rule %zu", rr_chains[r->chain].name, idx);
	return 0;
}

int rr_build_add_batch(const struct redirect_opts *o, uint32_t seq0, struct buf *out,
		       struct rr_batch *map)
{
	struct rr_rule rules[RR_MAX_RULES];
	size_t n = rr_rules(o, rules, RR_MAX_RULES);
	size_t per_chain[RR__NCHAINS] = {0};
	struct rnl w = {out, 0};

	if (n > RR_MAX_RULES)
		return -E_LIMIT;
	memset(map, 0, sizeof(*map));
	map->seq0 = seq0;
	batch_mark(&w, NFNL_MSG_BATCH_BEGIN, seq0);
	map_add(map, "batch begin");
	/* Create-if-missing, delete, create: the same transaction replaces an old table of ours
	 * whatever it holds, and works on kernels without NFT_MSG_DESTROYTABLE (< 6.3). */
	table_msg(&w, NFT_MSG_NEWTABLE, NLM_F_CREATE, map);
	table_msg(&w, NFT_MSG_DELTABLE, 0, map);
	table_msg(&w, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL, map);
	for (int c = 0; c < RR__NCHAINS; c++)
		chain_msg(&w, &rr_chains[c], map);
	for (size_t i = 0; i < n; i++) {
		/* "rule N" counts from 1 within its chain, as `nft -a` users read them. */
		if (rule_msg(&w, &rules[i], ++per_chain[rules[i].chain], map) < 0)
			return -E_INVAL;
	}
	batch_mark(&w, NFNL_MSG_BATCH_END, seq0 + (uint32_t)map->n);
	map_add(map, "batch end");
	return w.err;
}

int rr_build_del_batch(uint32_t seq0, struct buf *out, struct rr_batch *map)
{
	struct rnl w = {out, 0};

	memset(map, 0, sizeof(*map));
	map->seq0 = seq0;
	batch_mark(&w, NFNL_MSG_BATCH_BEGIN, seq0);
	map_add(map, "batch begin");
	table_msg(&w, NFT_MSG_NEWTABLE, NLM_F_CREATE, map);
	table_msg(&w, NFT_MSG_DELTABLE, 0, map);
	batch_mark(&w, NFNL_MSG_BATCH_END, seq0 + (uint32_t)map->n);
	map_add(map, "batch end");
	return w.err;
}

/* ---- rtnetlink ----------------------------------------------------------------------------------
 */

static uint16_t new_flags(uint16_t type)
{
	bool add = type == RTM_NEWRULE || type == RTM_NEWROUTE;

	return (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0));
}

int rr_build_rule(uint16_t type, int family, uint32_t seq, struct buf *out)
{
	struct fib_rule_hdr h = {
		.family = (uint8_t)family, .table = REDIRECT_ROUTE_TABLE, .action = FR_ACT_TO_TBL};
	struct rnl w = {out, 0};
	size_t off = rnl_msg_begin(&w, type, new_flags(type), seq, &h, sizeof(h));

	rnl_attr_u32(&w, FRA_FWMARK, REDIRECT_TPROXY_MARK);
	rnl_attr_u32(&w, FRA_FWMASK, REDIRECT_MARK_MASK);
	rnl_attr_u32(&w, FRA_PRIORITY, REDIRECT_RULE_PRIORITY);
	rnl_attr_u32(&w, FRA_TABLE, REDIRECT_ROUTE_TABLE);
	rnl_msg_end(&w, off);
	return w.err;
}

/* local 0.0.0.0/0 (::/0) dev lo table 100; lo is ifindex 1 in every netns (LOOPBACK_IFINDEX). */
int rr_build_route(uint16_t type, int family, uint32_t seq, struct buf *out)
{
	struct rtmsg h = {.rtm_family = (uint8_t)family,
			  .rtm_table = REDIRECT_ROUTE_TABLE,
			  .rtm_protocol = RTPROT_BOOT,
			  .rtm_scope = RT_SCOPE_HOST,
			  .rtm_type = RTN_LOCAL};
	struct rnl w = {out, 0};
	size_t off = rnl_msg_begin(&w, type, new_flags(type), seq, &h, sizeof(h));

	rnl_attr_u32(&w, RTA_TABLE, REDIRECT_ROUTE_TABLE);
	rnl_attr_u32(&w, RTA_OIF, 1);
	rnl_msg_end(&w, off);
	return w.err;
}

int rr_build_get(uint16_t nft_msg, bool dump, uint32_t seq, struct buf *out)
{
	struct rnl w = {out, 0};
	/* A get is answered by the object and, asked for, an ack that ends it; a dump ends with
	 * NLMSG_DONE. */
	size_t off = nft_begin(&w, nft_msg, dump ? NLM_F_DUMP : NLM_F_ACK, seq);

	switch (nft_msg) {
	case NFT_MSG_GETTABLE: rnl_attr_str(&w, NFTA_TABLE_NAME, REDIRECT_TABLE); break;
	case NFT_MSG_GETCHAIN: rnl_attr_str(&w, NFTA_CHAIN_TABLE, REDIRECT_TABLE); break;
	case NFT_MSG_GETRULE: rnl_attr_str(&w, NFTA_RULE_TABLE, REDIRECT_TABLE); break;
	default: return -E_INVAL;
	}
	rnl_msg_end(&w, off);
	return w.err;
}

int rr_build_rtdump(uint16_t type, int family, uint32_t seq, struct buf *out)
{
	struct rnl w = {out, 0};
	union {
		struct fib_rule_hdr r;
		struct rtmsg rt;
		struct ifaddrmsg a;
	} h;
	size_t hl = type == RTM_GETADDR ? sizeof(h.a) : sizeof(h.rt);
	size_t off;

	memset(&h, 0, sizeof(h));
	h.rt.rtm_family = (uint8_t)family; /* the first byte of all three */
	off = rnl_msg_begin(&w, type, NLM_F_REQUEST | NLM_F_DUMP, seq, &h, hl);
	rnl_msg_end(&w, off);
	return w.err;
}
