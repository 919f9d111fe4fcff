/* Tests for pkg/redirect: the ruleset text and messages, the reply decoders, and (as root, with
 * `ip` and `nft`) the real thing in network namespaces of our own (amr-*, 10.80.0.0/24).
 *
 * Hidden driver for tests/e2e/test_redirect.py: with REDIRECT_TOOL="add|del|check|dry-run|has-ipv6
 * NETNS-PATH [flags]" in the environment, this binary does that one thing and exits before the
 * unit tests run (flags: ipv6 dns bypass exclude=PORT break=N). It refuses its own netns. */
#include "pkg/net/net.h"
#include "pkg/redirect/redirect_int.h"
#include "test/unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the hidden driver ----------------------------------------------------------------------- */

static void tool_opts(char *args, struct redirect_opts *o)
{
	for (char *t = strtok(args, " "); t; t = strtok(NULL, " ")) {
		if (strcmp(t, "ipv6") == 0)
			o->ipv6 = true;
		else if (strcmp(t, "dns") == 0)
			o->dns_capture = true;
		else if (strcmp(t, "bypass") == 0)
			o->bypass_inbound = true;
		else if (strncmp(t, "exclude=", 8) == 0 &&
			 o->n_exclude_inbound < REDIRECT_MAX_EXCLUDE)
			o->exclude_inbound[o->n_exclude_inbound++] = (uint16_t)atoi(t + 8);
		else if (strncmp(t, "break=", 6) == 0)
			rr_test_break_rule = atoi(t + 6);
	}
}

__attribute__((constructor)) static void tool_main(void)
{
	const char *env = getenv("REDIRECT_TOOL");
	char cmd[16] = "", path[256] = "", *args;
	struct redirect_opts o = {0};
	struct errbuf eb = {0};
	struct buf out;
	int fd = -1, rc = 0;

	if (!env)
		return;
	args = xstrdup(env);
	if (sscanf(args, "%15s %255s", cmd, path) != 2) {
		fprintf(stderr, "REDIRECT_TOOL: want \"CMD NETNS [flags]\"\n");
		exit(2);
	}
	tool_opts(args + strlen(cmd) + 1 + strlen(path), &o);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		perror(path);
		exit(2);
	}
	/* Never the netns this process runs in (the host's, usually). */
	if (strcmp(cmd, "dry-run") != 0 && strcmp(cmd, "has-ipv6") != 0) {
		int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);

		if (self < 0 || net_netns_inode(self) == net_netns_inode(fd)) {
			fprintf(stderr, "REDIRECT_TOOL: %s is this process's own netns\n", path);
			exit(2);
		}
		close(self);
	}
	if (strcmp(cmd, "add") == 0)
		rc = redirect_add(fd, path, &o, &eb);
	else if (strcmp(cmd, "del") == 0)
		rc = redirect_del(fd, path, &eb);
	else if (strcmp(cmd, "check") == 0)
		rc = redirect_check(fd, path, &o, &eb);
	else if (strcmp(cmd, "has-ipv6") == 0)
		rc = redirect_netns_has_ipv6(fd) ? 0 : -E_NOTFOUND;
	else if (strcmp(cmd, "dry-run") == 0) {
		buf_init(&out, 0);
		redirect_dry_run(&o, &out);
		fwrite(buf_rptr(&out), 1, buf_len(&out), stdout);
		buf_fini(&out);
	} else {
		fprintf(stderr, "REDIRECT_TOOL: unknown command %s\n", cmd);
		exit(2);
	}
	if (rc < 0)
		fprintf(stderr, "%s: %s\n", err_str(rc), eb.msg);
	if (fd >= 0)
		close(fd);
	free(args);
	exit(rc < 0 ? 1 : 0);
}

/* ---- text and messages (no privileges) ---------------------------------------------------------
 */

static char *dry(const struct redirect_opts *o)
{
	struct buf b;
	char *s;

	buf_init(&b, 0);
	redirect_dry_run(o, &b);
	s = xstrndup((const char *)buf_rptr(&b), buf_len(&b));
	buf_fini(&b);
	return s;
}

static const char default_text[] =
	"table inet ambient {\n"
	"\tchain prerouting-mangle {\n"
	"\t\ttype filter hook prerouting priority mangle; policy accept;\n"
	"\t\tmeta mark & 0x00000fff == 0x00000539 ct mark set ct mark & 0xfffff111 | 0x00000111\n"
	"\t}\n"
	"\n"
	"\tchain output-mangle {\n"
	"\t\ttype route hook output priority mangle; policy accept;\n"
	"\t\tct mark & 0x00000fff == 0x00000111 meta mark set ct mark\n"
	"\t}\n"
	"\n"
	"\tchain prerouting-nat {\n"
	"\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
	"\t\tip saddr 169.254.7.127 meta l4proto tcp accept\n"
	"\t\tip daddr != 127.0.0.1 tcp dport != 15008 meta mark & 0x00000fff != 0x00000539 "
	"redirect to :15006\n"
	"\t}\n"
	"\n"
	"\tchain output-nat {\n"
	"\t\ttype nat hook output priority -100; policy accept;\n"
	"\t\tip daddr 169.254.7.127 meta l4proto tcp accept\n"
	"\t\tmeta l4proto tcp meta mark & 0x00000fff == 0x00000111 accept\n"
	"\t\tip daddr != 127.0.0.1 oifname \"lo\" accept\n"
	"\t\tip daddr != 127.0.0.1 meta l4proto tcp meta mark & 0x00000fff != 0x00000539 "
	"redirect to :15001\n"
	"\t}\n"
	"}\n"
	"# ip rule add fwmark 0x111/0xfff pref 32764 lookup 100\n"
	"# ip route add local 0.0.0.0/0 dev lo table 100\n";

TEST(dry_run_default_is_istio_ruleset)
{
	struct redirect_opts o = {0};
	char *s = dry(&o);

	CHECK_STR(s, default_text);
	free(s);
}

TEST(dry_run_options)
{
	struct redirect_opts o = {.dns_capture = true, .ipv6 = true, .outbound_port = 16001};
	char *s;

	o.exclude_inbound[o.n_exclude_inbound++] = 22;
	s = dry(&o);
	CHECK_CONTAINS(s, "\t\tip6 saddr fd16:9254:7127:1337:ffff:ffff:ffff:ffff meta l4proto tcp "
			  "accept\n\t\ttcp dport 22 accept\n\t\tip daddr != 127.0.0.1 tcp dport");
	CHECK_CONTAINS(s, "\t\tip6 daddr != ::1 tcp dport != 15008 meta mark & 0x00000fff != "
			  "0x00000539 redirect to :15006\n");
	CHECK_CONTAINS(s, "\t\toifname != \"lo\" udp dport 53 meta mark & 0x00000fff != 0x00000539 "
			  "redirect to :15053\n");
	CHECK_CONTAINS(s, "\t\tip6 daddr != ::1 tcp dport 53 meta mark & 0x00000fff != 0x00000539 "
			  "redirect to :15053\n");
	CHECK_CONTAINS(s, "redirect to :16001\n");
	CHECK_CONTAINS(s, "# ip -6 route add local ::/0 dev lo table 100\n");
	free(s);

	o = (struct redirect_opts){.bypass_inbound = true};
	o.exclude_inbound[o.n_exclude_inbound++] = 22;
	s = dry(&o);
	/* Ingress mode: no probe accept, no excluded ports, no 15006 in PREROUTING. */
	CHECK_CONTAINS(s, "priority dstnat; policy accept;\n\t}\n");
	CHECK(!strstr(s, ":15006") && !strstr(s, "dport 22") && !strstr(s, "ip saddr"));
	free(s);
}

TEST(rule_counts)
{
	struct redirect_opts o = {0};
	size_t c[RR__NCHAINS];

	rr_rule_counts(&o, c);
	CHECK_INT(c[RR_PRE_MANGLE], 1);
	CHECK_INT(c[RR_OUT_MANGLE], 1);
	CHECK_INT(c[RR_PRE_NAT], 2);
	CHECK_INT(c[RR_OUT_NAT], 4);
	o.ipv6 = o.dns_capture = true;
	o.n_exclude_inbound = REDIRECT_MAX_EXCLUDE;
	for (size_t i = 0; i < REDIRECT_MAX_EXCLUDE; i++)
		o.exclude_inbound[i] = (uint16_t)(1000 + i);
	rr_rule_counts(&o, c);
	CHECK_INT(c[RR_PRE_NAT], 4 + REDIRECT_MAX_EXCLUDE);
	CHECK_INT(c[RR_OUT_NAT], 2 + 1 + 2 + 1 + 2 + 2);
}

struct walk_count {
	size_t msgs, acks;
	uint32_t seq_next;
	bool seq_ok;
};

/* The add batch: BEGIN, 3 table messages, 4 chains, the rules, END; consecutive seqs; every
 * message inside asks for an ack; decoding it gives what check expects. */
TEST(add_batch_shape)
{
	struct redirect_opts o = {.ipv6 = true, .dns_capture = true};
	struct rr_batch map;
	struct rr_dump *d = xcalloc(1, sizeof(*d));
	struct buf b;
	const uint8_t *p;
	size_t n, i = 0;

	buf_init(&b, 0);
	REQUIRE(rr_build_add_batch(&o, 100, &b, &map) == 0);
	p = buf_rptr(&b);
	n = buf_len(&b);
	while (n > 0) {
		struct nlmsghdr h;

		REQUIRE(n >= sizeof(h));
		memcpy(&h, p, sizeof(h));
		REQUIRE(h.nlmsg_len >= sizeof(h) && h.nlmsg_len <= n && h.nlmsg_len % 4 == 0);
		CHECK_INT(h.nlmsg_seq, 100 + i);
		if (i == 0)
			CHECK_INT(h.nlmsg_type, NFNL_MSG_BATCH_BEGIN);
		else if (i == map.n - 1)
			CHECK_INT(h.nlmsg_type, NFNL_MSG_BATCH_END);
		else
			CHECK(h.nlmsg_flags & NLM_F_ACK);
		p += h.nlmsg_len;
		n -= h.nlmsg_len;
		i++;
	}
	CHECK_INT(i, map.n);
	CHECK_STR(map.what[1], "table inet ambient");
	CHECK_STR(map.what[4], "chain prerouting-mangle");
	CHECK_STR(map.what[8], "chain prerouting-mangle rule 1");
	CHECK_STR(map.what[map.n - 2], "chain output-nat rule 10");
	REQUIRE(rr_parse_dump(buf_rptr(&b), buf_len(&b), 0, d) == 0);
	CHECK(d->table);
	CHECK_INT(d->nchains, 4);
	CHECK_STR(d->chains[3].name, "output-nat");
	CHECK_STR(d->chains[3].type, "nat");
	CHECK_INT(d->chains[3].prio, -100);
	CHECK_INT(d->nrules, map.n - 9);
	/* meta load mark, bitwise & 0xfff, cmp == 0x539, then ct mark set. */
	CHECK_STR(d->rules[0].canon,
		  "meta(1=00000001,2=00000003) bitwise(1=00000001,2=00000001,3=00000004,"
		  "4=08000100ff0f0000,5=0800010000000000,6=00000000) "
		  "cmp(1=00000001,2=00000000,3=0800010039050000) "
		  "ct(1=00000001,2=00000003) "
		  "bitwise(1=00000001,2=00000001,3=00000004,4=0800010000f0ffff,5=0800010011010000,"
		  "6=00000000) ct(2=00000003,4=00000001)");
	buf_fini(&b);
	free(d);
}

TEST(rtnetlink_messages)
{
	struct buf b;
	struct nlmsghdr h;
	struct rr_dump *d = xcalloc(1, sizeof(*d));

	/* Our own RTM_NEWRULE / RTM_NEWROUTE decode as "ours" (what check looks for). */
	buf_init(&b, 0);
	REQUIRE(rr_build_rule(RTM_NEWRULE, AF_INET, 7, &b) == 0);
	{
		const uint8_t *first = buf_rptr(&b);

		REQUIRE(first != NULL && buf_len(&b) >= sizeof(h));
		memcpy(&h, first, sizeof(h));
	}
	CHECK_INT(h.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
	REQUIRE(rr_build_route(RTM_NEWROUTE, AF_INET6, 7, &b) == 0);
	REQUIRE(rr_parse_dump(buf_rptr(&b), buf_len(&b), 7, d) == 0);
	CHECK_INT(d->fib_rules, 1);
	CHECK_INT(d->routes, 1);
	/* A different seq is somebody else's reply. */
	CHECK_INT(rr_parse_dump(buf_rptr(&b), buf_len(&b), 8, d), -E_PROTO);
	buf_reset(&b);
	REQUIRE(rr_build_rule(RTM_DELRULE, AF_INET, 9, &b) == 0);
	{
		const uint8_t *first = buf_rptr(&b);

		REQUIRE(first != NULL && buf_len(&b) >= sizeof(h));
		memcpy(&h, first, sizeof(h));
	}
	CHECK_INT(h.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
	buf_fini(&b);
	free(d);
}

/* An NLMSG_ERROR as the kernel sends it with NETLINK_CAP_ACK and NETLINK_EXT_ACK. */
static size_t make_err(uint8_t *p, uint32_t seq, int error, const char *msg)
{
	struct nlmsghdr h = {
		.nlmsg_type = NLMSG_ERROR, .nlmsg_seq = seq, .nlmsg_flags = NLM_F_CAPPED};
	struct nlmsgerr e = {.error = -error};
	size_t n = sizeof(h) + sizeof(e);

	e.msg.nlmsg_len = 64; /* the original request's length; only its header is echoed */
	e.msg.nlmsg_seq = seq;
	memcpy(p + sizeof(h), &e, sizeof(e));
	if (msg) {
		struct nlattr a = {.nla_len = (uint16_t)(NLA_HDRLEN + strlen(msg) + 1),
				   .nla_type = NLMSGERR_ATTR_MSG};

		h.nlmsg_flags |= NLM_F_ACK_TLVS;
		memcpy(p + n, &a, sizeof(a));
		memcpy(p + n + NLA_HDRLEN, msg, strlen(msg) + 1);
		n += NLA_ALIGN(a.nla_len);
	}
	h.nlmsg_len = (uint32_t)n;
	memcpy(p, &h, sizeof(h));
	return n;
}

TEST(parse_acks)
{
	uint8_t m[512];
	struct rr_ack a[2];
	size_t n = 0, more = 9, b1, b2;

	n += make_err(m + n, 11, 0, NULL);
	b1 = n;
	n += make_err(m + n, 12, EOPNOTSUPP, "Unknown expression");
	b2 = n;
	n += make_err(m + n, 13, ENOENT, NULL);
	CHECK_INT(rr_parse_acks(m, n, a, 2, &more), 2);
	CHECK_INT(more, 1);
	CHECK_INT(a[0].seq, 11);
	CHECK_INT(a[0].error, 0);
	CHECK_INT(a[1].seq, 12);
	CHECK_INT(a[1].error, EOPNOTSUPP);
	CHECK_STR(a[1].msg, "Unknown expression");
	/* Every cut inside a message is malformed, never a crash or a silent success. */
	for (size_t cut = 1; cut < n; cut++) {
		int rc = rr_parse_acks(m, cut, a, 2, NULL);

		if (cut == b1 || cut == b2)
			CHECK_INT(rc, cut == b1 ? 1 : 2);
		else
			CHECK_INT(rc, -E_PROTO);
	}
	/* A positive error field is not something the kernel sends. */
	n = make_err(m, 1, 0, NULL);
	m[16] = 1;
	CHECK_INT(rr_parse_acks(m, n, a, 2, NULL), -E_PROTO);
	/* TLV past the end. */
	n = make_err(m, 1, EINVAL, "x");
	m[36] = 200;
	CHECK_INT(rr_parse_acks(m, n, a, 2, NULL), -E_PROTO);
}

TEST(canon_is_order_independent)
{
	/* One "cmp" expression with its attributes in two orders. */
	static const uint8_t a[] = {
		40, 0, 1, 0,		       /* NFTA_LIST_ELEM */
		8,  0, 1, 0, 'c', 'm', 'p', 0, /* NFTA_EXPR_NAME */
		28, 0, 2, 0,		       /* NFTA_EXPR_DATA */
		8,  0, 1, 0, 0,	  0,   0,   1, /* SREG */
		8,  0, 2, 0, 0,	  0,   0,   0, /* OP */
		8,  0, 3, 0, 4,	  0,   1,   0, /* DATA nest holding an empty value */
	};
	static const uint8_t b[] = {
		40, 0, 1, 0, 8, 0, 1, 0, 'c', 'm', 'p', 0, 28, 0, 2, 0, 8, 0, 3, 0,
		4,  0, 1, 0, 8, 0, 2, 0, 0,   0,   0,	0, 8,  0, 1, 0, 0, 0, 0, 1,
	};
	char ca[256], cb[256];

	REQUIRE(rr_canon_exprs(a, sizeof(a), ca, sizeof(ca)) == 0);
	REQUIRE(rr_canon_exprs(b, sizeof(b), cb, sizeof(cb)) == 0);
	CHECK_STR(ca, "cmp(1=00000001,2=00000000,3=04000100)");
	CHECK_STR(ca, cb);
	CHECK_INT(rr_canon_exprs(a, sizeof(a), ca, 10), -E_LIMIT);
	CHECK_INT(rr_canon_exprs(a, sizeof(a) - 1, ca, sizeof(ca)), -E_PROTO);
}

/* ---- in network namespaces (root) ---------------------------------------------------------------
 */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	return rc == -1 ? -1 : WEXITSTATUS(rc);
}

/* Output of a shell command (caller frees). */
static char *run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *run(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	struct buf b;
	FILE *f;
	char tmp[4096];
	size_t k;
	char *s;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	buf_init(&b, 0);
	f = popen(cmd, "r");
	while (f && (k = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, k);
	if (f)
		pclose(f);
	s = buf_len(&b) ? xstrndup((const char *)buf_rptr(&b), buf_len(&b)) : xstrdup("");
	buf_fini(&b);
	return s;
}

static bool can_netns(void)
{
	static int ok = -1;

	if (ok < 0) {
		ok = geteuid() == 0 &&
		     sh("command -v ip >/dev/null && command -v nft >/dev/null") == 0;
		if (!ok)
			fprintf(stderr,
				"    (redirect netns tests skipped: need root, ip and nft)\n");
	}
	return ok;
}

struct ns {
	char name[32];
	char path[64];
	int fd;
};

/* A fresh netns amr-<pid>-<tag>, with lo up when lo_up. */
static bool ns_make(struct ns *n, const char *tag, bool lo_up)
{
	snprintf(n->name, sizeof(n->name), "amr-%d-%s", (int)getpid(), tag);
	snprintf(n->path, sizeof(n->path), "/var/run/netns/%s", n->name);
	n->fd = -1;
	sh("ip netns del %s 2>/dev/null", n->name);
	if (sh("ip netns add %s", n->name) != 0)
		return false;
	if (lo_up && sh("ip -n %s link set lo up", n->name) != 0)
		return false;
	n->fd = open(n->path, O_RDONLY | O_CLOEXEC);
	return n->fd >= 0;
}

static void ns_drop(struct ns *n)
{
	if (!n->name[0])
		return;
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
	sh("ip netns del %s 2>/dev/null", n->name);
}

/* The dry-run text without the trailing `# ip ...` comment lines. */
static char *dry_nft(const struct redirect_opts *o)
{
	char *s = dry(o), *c = strstr(s, "}\n# ");

	if (c)
		c[2] = '\0';
	return s;
}

static void expect_ruleset(const struct ns *n, const struct redirect_opts *o)
{
	char *want = dry_nft(o);
	char *got = run("ip netns exec %s nft list ruleset", n->name);

	CHECK_STR(got, want);
	free(want);
	free(got);
}

static bool has_rule(const struct ns *n, const char *v)
{
	char *s = run("ip %s -n %s rule", v, n->name);
	bool r = strstr(s, "32764:\tfrom all fwmark 0x111/0xfff lookup 100") != NULL;

	free(s);
	return r;
}

static bool has_route(const struct ns *n, const char *v)
{
	char *s = run("ip %s -n %s route show table 100", v, n->name);
	bool r = strstr(s, "local default dev lo") != NULL;

	free(s);
	return r;
}

TEST(ns_add_matches_nft_and_is_idempotent)
{
	struct ns n = {.fd = -1};
	struct errbuf eb = {0};
	struct redirect_opts o = {0};

	if (!can_netns())
		return;
	REQUIRE(ns_make(&n, "add", true));
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), -E_STATE);
	CHECK_CONTAINS(eb.msg, "table inet ambient: missing");
	CHECK_INT(redirect_add(n.fd, n.name, &o, &eb), 0);
	expect_ruleset(&n, &o);
	CHECK(has_rule(&n, "-4") && has_route(&n, "-4"));
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), 0);
	/* Again: same table (replaced, not doubled), same single rule and route. */
	CHECK_INT(redirect_add(n.fd, n.name, &o, &eb), 0);
	expect_ruleset(&n, &o);
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), 0);
	/* Other options replace the table with theirs. */
	o.dns_capture = true;
	o.exclude_inbound[o.n_exclude_inbound++] = 22;
	o.exclude_inbound[o.n_exclude_inbound++] = 2222;
	CHECK_INT(redirect_add(n.fd, n.name, &o, &eb), 0);
	expect_ruleset(&n, &o);
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), 0);
	o.dns_capture = false;
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), -E_STATE);
	CHECK_CONTAINS(eb.msg, "chain output-nat: 6 rules, expected 4");
	{
		char *r = run("ip -n %s rule | grep -c 'lookup 100'", n.name);

		CHECK_STR(r, "1\n");
		free(r);
	}
	ns_drop(&n);
}

TEST(ns_bypass_and_ipv6)
{
	struct ns n = {.fd = -1};
	struct errbuf eb = {0};
	struct redirect_opts o = {.bypass_inbound = true};

	if (!can_netns())
		return;
	REQUIRE(ns_make(&n, "v6", true));
	CHECK(redirect_netns_has_ipv6(n.fd)); /* lo up has ::1 */
	o.ipv6 = true;
	o.dns_capture = true;
	CHECK_INT(redirect_add(n.fd, n.name, &o, &eb), 0);
	expect_ruleset(&n, &o);
	CHECK(has_rule(&n, "-6") && has_route(&n, "-6"));
	CHECK(has_rule(&n, "-4") && has_route(&n, "-4"));
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), 0);
	sh("ip -n %s -6 route del local ::/0 dev lo table 100", n.name);
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), -E_STATE);
	CHECK_CONTAINS(eb.msg, "ip -6 route local ::/0 dev lo table 100: missing");
	CHECK_INT(redirect_del(n.fd, n.name, &eb), 0);
	CHECK(!has_rule(&n, "-6") && !has_rule(&n, "-4") && !has_route(&n, "-4"));
	ns_drop(&n);

	REQUIRE(ns_make(&n, "nov6", false));
	CHECK(!redirect_netns_has_ipv6(n.fd)); /* lo down: no address at all */
	ns_drop(&n);
}

TEST(ns_del_removes_everything)
{
	struct ns n = {.fd = -1};
	struct errbuf eb = {0};
	struct redirect_opts o = {.ipv6 = true};
	char *s;

	if (!can_netns())
		return;
	REQUIRE(ns_make(&n, "del", true));
	CHECK_INT(redirect_del(n.fd, n.name, &eb), 0); /* nothing there: fine */
	CHECK_INT(redirect_add(n.fd, n.name, &o, &eb), 0);
	CHECK_INT(redirect_del(n.fd, n.name, &eb), 0);
	s = run("ip netns exec %s nft list ruleset", n.name);
	CHECK_STR(s, "");
	free(s);
	s = run("ip -n %s route show table 100; ip -6 -n %s route show table 100", n.name, n.name);
	CHECK_STR(s, "");
	free(s);
	CHECK(!has_rule(&n, "-4") && !has_rule(&n, "-6"));
	CHECK_INT(redirect_del(n.fd, n.name, &eb), 0); /* twice: fine */
	ns_drop(&n);
}

static char *last_handle(const struct ns *n, const char *chain)
{
	return run("ip netns exec %s nft -a list chain inet ambient %s | "
		   "sed -n 's/.*# handle \\([0-9]*\\)$/\\1/p' | tail -1 | tr -d '\\n'",
		   n->name, chain);
}

TEST(ns_check_reports_drift)
{
	struct ns n = {.fd = -1};
	struct errbuf eb = {0};
	struct redirect_opts o = {0};
	char *h;

	if (!can_netns())
		return;
	REQUIRE(ns_make(&n, "drift", true));
	REQUIRE(redirect_add(n.fd, n.name, &o, &eb) == 0);
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), 0);
	h = last_handle(&n, "output-nat");
	CHECK_INT(
		sh("ip netns exec %s nft delete rule inet ambient output-nat handle %s", n.name, h),
		0);
	free(h);
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), -E_STATE);
	CHECK_CONTAINS(eb.msg, "chain output-nat: 3 rules, expected 4");
	/* Same count, other content. */
	CHECK_INT(sh("ip netns exec %s nft add rule inet ambient output-nat tcp dport 81 accept",
		     n.name),
		  0);
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), -E_STATE);
	CHECK_CONTAINS(eb.msg, "chain output-nat rule 4: differs");
	CHECK_INT(sh("ip netns exec %s nft flush chain inet ambient prerouting-mangle", n.name), 0);
	sh("ip -n %s rule del pref 32764", n.name);
	sh("ip netns exec %s nft add chain inet ambient extra", n.name);
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), -E_STATE);
	CHECK_CONTAINS(eb.msg, "chain prerouting-mangle: 0 rules, expected 1");
	CHECK_CONTAINS(eb.msg, "chain extra: not ours");
	CHECK_CONTAINS(eb.msg, "ip rule fwmark 0x111/0xfff lookup 100: missing");
	/* add repairs it all. */
	CHECK_INT(redirect_add(n.fd, n.name, &o, &eb), 0);
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), 0);
	sh("ip netns exec %s nft delete chain inet ambient prerouting-mangle", n.name);
	CHECK_INT(redirect_check(n.fd, n.name, &o, &eb), -E_STATE);
	CHECK_CONTAINS(eb.msg, "chain prerouting-mangle: missing");
	ns_drop(&n);
}

TEST(ns_failed_batch_changes_nothing)
{
	struct ns n = {.fd = -1};
	struct errbuf eb = {0};
	struct redirect_opts o = {0};
	char *before, *after;

	if (!can_netns())
		return;
	REQUIRE(ns_make(&n, "batch", true));
	/* Fresh netns: a failing batch leaves no table. */
	rr_test_break_rule = 7; /* output-nat rule 3 */
	CHECK(redirect_add(n.fd, n.name, &o, &eb) < 0);
	rr_test_break_rule = 0;
	CHECK_CONTAINS(eb.msg, "nf_tables batch: chain output-nat rule 3: ");
	after = run("ip netns exec %s nft list ruleset", n.name);
	CHECK_STR(after, "");
	free(after);
	CHECK(!has_rule(&n, "-4"));
	/* Over an existing table: the old one stays as it was (one transaction). */
	REQUIRE(redirect_add(n.fd, n.name, &o, &eb) == 0);
	before = run("ip netns exec %s nft list ruleset", n.name);
	o.dns_capture = true;
	rr_test_break_rule = 1;
	CHECK(redirect_add(n.fd, n.name, &o, &eb) < 0);
	rr_test_break_rule = 0;
	CHECK_CONTAINS(eb.msg, "chain prerouting-mangle rule 1");
	after = run("ip netns exec %s nft list ruleset", n.name);
	CHECK_STR(after, before);
	free(before);
	free(after);
	ns_drop(&n);
}

TEST(ns_failed_route_rolls_back)
{
	struct ns n = {.fd = -1};
	struct errbuf eb = {0};
	struct redirect_opts o = {.ipv6 = true};
	char *s;

	if (!can_netns())
		return;
	/* lo down: the IPv4 rule and route go in, the IPv6 route fails ("Nexthop device is not
	 * up"); everything must be undone. */
	REQUIRE(ns_make(&n, "rollback", false));
	CHECK(redirect_add(n.fd, n.name, &o, &eb) < 0);
	CHECK_CONTAINS(eb.msg, "netns amr-");
	CHECK_CONTAINS(eb.msg, ": ip -6 route add local ::/0 dev lo table 100: ");
	s = run("ip netns exec %s nft list ruleset; ip -n %s route show table 100", n.name, n.name);
	CHECK_STR(s, "");
	free(s);
	CHECK(!has_rule(&n, "-4") && !has_rule(&n, "-6"));
	ns_drop(&n);
}

/* Traffic: client netns A (rules, 10.80.0.1) and server netns B (10.80.0.2) on a veth pair. */
static bool pair_make(struct ns *a, struct ns *b)
{
	if (!ns_make(a, "ta", true) || !ns_make(b, "tb", true))
		return false;
	return sh("ip -n %s link add amr%dA type veth peer name amr%dB netns %s && "
		  "ip -n %s addr add 10.80.0.1/24 dev amr%dA && ip -n %s link set amr%dA up && "
		  "ip -n %s addr add 10.80.0.2/24 dev amr%dB && ip -n %s link set amr%dB up",
		  a->name, (int)getpid() % 100000, (int)getpid() % 100000, b->name, a->name,
		  (int)getpid() % 100000, a->name, (int)getpid() % 100000, b->name,
		  (int)getpid() % 100000, b->name, (int)getpid() % 100000) == 0;
}

static int listen_in(const struct ns *n, const char *addr)
{
	struct net_addr a;
	struct net_listen_opts lo = {.in_netns = true, .netns_fd = n->fd};
	struct errbuf eb;

	if (net_addr_parse(&a, addr, &eb) < 0)
		return -1;
	return net_listen(&a, &lo, &eb);
}

static int connect_from(const struct ns *n, const char *addr, uint32_t mark)
{
	struct net_addr a;
	struct net_connect_opts co = {.in_netns = true, .netns_fd = n->fd, .mark = mark};
	struct errbuf eb;

	if (net_addr_parse(&a, addr, &eb) < 0)
		return -1;
	return net_connect_timeout(&a, 2000, &co, &eb);
}

/* Accepts one connection (waiting up to wait_ms) and stores its SO_ORIGINAL_DST ("" if none);
 * false when nothing came. */
static bool accept_orig(int lfd, int wait_ms, char *out, size_t cap)
{
	struct sockaddr_in o;
	socklen_t ol = sizeof(o);
	int fd = -1;

	out[0] = '\0';
	for (int i = 0; i <= wait_ms / 10 && fd < 0; i++) {
		fd = net_accept(lfd, NULL);
		if (fd < 0)
			usleep(10000);
	}
	if (fd < 0)
		return false;
	if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &o, &ol) == 0) {
		char ip[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &o.sin_addr, ip, sizeof(ip));
		snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(o.sin_port));
	}
	close(fd);
	return true;
}

TEST(ns_traffic_is_redirected)
{
	struct ns a = {.fd = -1}, b = {.fd = -1};
	struct errbuf eb = {0};
	struct redirect_opts o = {0};
	int out_l = -1, in_l = -1, srv = -1, c;
	char orig[64];

	if (!can_netns())
		return;
	if (!pair_make(&a, &b)) {
		CHECK(!"veth pair");
		goto out;
	}
	REQUIRE(redirect_add(a.fd, a.name, &o, &eb) == 0);
	out_l = listen_in(&a, "0.0.0.0:15001");
	in_l = listen_in(&a, "0.0.0.0:15006");
	srv = listen_in(&b, "10.80.0.2:80");
	REQUIRE(out_l >= 0 && in_l >= 0 && srv >= 0);

	/* Outbound from A to B:80 lands on A's 15001, original destination kept. */
	c = connect_from(&a, "10.80.0.2:80", 0);
	CHECK(c >= 0);
	CHECK(accept_orig(out_l, 2000, orig, sizeof(orig)));
	CHECK_STR(orig, "10.80.0.2:80");
	CHECK(!accept_orig(srv, 0, orig, sizeof(orig)));
	if (c >= 0)
		close(c);
	/* ztunnel's own mark skips the redirect: it reaches B itself. */
	c = connect_from(&a, "10.80.0.2:80", REDIRECT_MARK);
	CHECK(c >= 0);
	CHECK(accept_orig(srv, 2000, orig, sizeof(orig)));
	CHECK(!accept_orig(out_l, 0, orig, sizeof(orig)));
	if (c >= 0)
		close(c);
	/* Inbound from B to A:8080 lands on A's 15006; to A:15008 (HBONE) it is not redirected
	 * (refused: nothing listens there). */
	c = connect_from(&b, "10.80.0.1:8080", 0);
	CHECK(c >= 0);
	CHECK(accept_orig(in_l, 2000, orig, sizeof(orig)));
	CHECK_STR(orig, "10.80.0.1:8080");
	if (c >= 0)
		close(c);
	c = connect_from(&b, "10.80.0.1:15008", 0);
	CHECK(c < 0);
	if (c >= 0)
		close(c);
	CHECK(!accept_orig(in_l, 0, orig, sizeof(orig)));
	/* After del, the same connect goes to B directly. */
	CHECK_INT(redirect_del(a.fd, a.name, &eb), 0);
	c = connect_from(&a, "10.80.0.2:80", 0);
	CHECK(c >= 0);
	CHECK(accept_orig(srv, 2000, orig, sizeof(orig)));
	CHECK(!accept_orig(out_l, 0, orig, sizeof(orig)));
	if (c >= 0)
		close(c);
out:
	if (out_l >= 0)
		close(out_l);
	if (in_l >= 0)
		close(in_l);
	if (srv >= 0)
		close(srv);
	ns_drop(&a);
	ns_drop(&b);
}
