/* In-pod traffic redirection (DESIGN.md §5, reference ztunnel-and-cni.md §7.2): istio-cni's
 * in-pod ruleset, programmed natively with nf_tables netlink batches and rtnetlink (no `nft` or
 * `iptables` binary: a scratch image has none).
 *
 * Everything lives in one nftables table of our own, `inet ambient` (REDIRECT_TABLE), so add is
 * one atomic batch, re-adding replaces it (idempotent), and del removes exactly that table plus
 * the policy route `fwmark 0x111/0xfff lookup 100` and `local 0.0.0.0/0 dev lo table 100` (and
 * the ::/0 ones when the netns has IPv6).
 *
 * The message building (redirect_build.c) is sans-I/O; redirect_nl.c talks netlink on a socket
 * made inside the target netns (net_netns_socket), so no thread ever stays in another netns.
 *
 * Chains of the table (docs/redirect.md has the whole ruleset): prerouting-mangle (filter,
 * prerouting, -150), output-mangle (route, output, -150), prerouting-nat (nat, prerouting, -100),
 * output-nat (nat, output, -100). Needs CAP_NET_ADMIN, and CAP_SYS_ADMIN for another netns. */
#ifndef AMBIENT_REDIRECT_H
#define AMBIENT_REDIRECT_H

#include "pkg/base/base.h"
#include "pkg/buf/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REDIRECT_TABLE "ambient"
#define REDIRECT_MARK 0x539u	    /* ztunnel's SO_MARK (1337): its sockets skip every rule */
#define REDIRECT_TPROXY_MARK 0x111u /* connmark of connections ztunnel made with the mark */
#define REDIRECT_MARK_MASK 0xfffu
#define REDIRECT_ROUTE_TABLE 100
#define REDIRECT_RULE_PRIORITY 32764
#define REDIRECT_PROBE_IP4 "169.254.7.127"
#define REDIRECT_PROBE_IP6 "fd16:9254:7127:1337:ffff:ffff:ffff:ffff"
#define REDIRECT_MAX_EXCLUDE 16

struct redirect_opts {
	uint16_t outbound_port; /* 0: 15001 */
	uint16_t inbound_port;	/* 0: 15006 */
	uint16_t hbone_port;	/* 0: 15008 (inbound traffic to it is not redirected) */
	uint16_t dns_port;	/* 0: 15053 */
	bool dns_capture;	/* UDP+TCP port 53 -> dns_port; off by default */
	bool ipv6;		/* also the IPv6 rules and route (redirect_netns_has_ipv6) */
	bool bypass_inbound;	/* ingress mode: no 15006 redirect */
	/* Host mode (a VM whose own processes are the workload): inbound TCP to these local ports
	 * is never redirected (e.g. the operator's SSH port). */
	uint16_t exclude_inbound[REDIRECT_MAX_EXCLUDE];
	size_t n_exclude_inbound;
};

/* The ruleset in `nft` syntax, exactly as `nft list ruleset` prints our table in that netns
 * (the e2e test compares the two), followed by the two `ip rule`/`ip route` lines as comments. */
void redirect_dry_run(const struct redirect_opts *o, struct buf *out);

/* Apply in the netns of ns_fd (-1: the caller's own). One batch: an existing table of ours is
 * replaced atomically; then the rule and route (existing ones are kept). On any failure what
 * this call added is removed again and eb names the netns label and the failing step
 * ("netns /var/run/netns/w1: nf_tables batch: chain output-nat rule 3: Operation not
 * supported"). label is only for messages. */
int redirect_add(int ns_fd, const char *label, const struct redirect_opts *o, struct errbuf *eb);
/* Removes the table, rule and route; what is already gone is fine (idempotent). */
int redirect_del(int ns_fd, const char *label, struct errbuf *eb);
/* 0 when the netns has exactly what redirect_add(o) makes (chains with their type, hook,
 * priority and policy; every rule's expressions, compared in order; the ip rule and route);
 * -E_STATE with every drift found, joined by "; " after "netns LABEL: " ("table inet ambient:
 * missing", "chain output-nat: 4 rules, expected 5", "chain output-nat rule 2: differs",
 * "chain extra: not ours", "ip rule fwmark 0x111/0xfff lookup 100: missing"). Other -E_* when
 * the netns cannot be asked. */
int redirect_check(int ns_fd, const char *label, const struct redirect_opts *o, struct errbuf *eb);
/* True when the netns has any IPv6 address (::1 on an up lo counts; lo down or IPv6 disabled
 * gives none). */
bool redirect_netns_has_ipv6(int ns_fd);

#endif
