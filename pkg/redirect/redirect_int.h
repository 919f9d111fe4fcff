/* Private interface of pkg/redirect: the ruleset model, netlink message building (sans-I/O) and
 * the strict decoders of kernel replies, shared by redirect_build.c, redirect_nl.c, the unit
 * tests and the fuzz target. */
#ifndef AMBIENT_REDIRECT_INT_H
#define AMBIENT_REDIRECT_INT_H

#include "pkg/redirect/redirect.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the ruleset model ------------------------------------------------------------------------
 * One list of rules feeds both the `nft` text (redirect_dry_run) and the netlink expressions, so
 * the two cannot drift apart. */
enum rr_chain_id { RR_PRE_MANGLE, RR_OUT_MANGLE, RR_PRE_NAT, RR_OUT_NAT, RR__NCHAINS };

struct rr_chain {
	const char *name; /* "prerouting-mangle" */
	const char *type; /* "filter", "route", "nat" */
	uint32_t hook;	  /* NF_INET_PRE_ROUTING / NF_INET_LOCAL_OUT */
	int32_t prio;
	const char *prio_text; /* how nft 1.0.6 prints prio for this type and hook */
};
extern const struct rr_chain rr_chains[RR__NCHAINS];

enum rr_match_kind {
	RR_M_ADDR,    /* ip/ip6 saddr/daddr [!=] addr */
	RR_M_L4PROTO, /* meta l4proto tcp */
	RR_M_DPORT,   /* tcp/udp dport [!=] port */
	RR_M_OIFNAME, /* oifname [!=] "lo" */
	RR_M_MARK,    /* meta mark & 0xfff ==/!= val */
	RR_M_CTMARK,  /* ct mark & 0xfff == val */
};

struct rr_match {
	enum rr_match_kind kind;
	bool neg;
	bool v6;	  /* RR_M_ADDR */
	bool src;	  /* RR_M_ADDR: saddr */
	uint8_t proto;	  /* RR_M_L4PROTO, RR_M_DPORT: IPPROTO_TCP/UDP */
	uint16_t port;	  /* RR_M_DPORT */
	uint32_t val;	  /* RR_M_MARK, RR_M_CTMARK */
	const char *text; /* RR_M_ADDR address, RR_M_OIFNAME name */
};

enum rr_action { RR_A_ACCEPT, RR_A_REDIRECT, RR_A_CTMARK_SET, RR_A_MARK_RESTORE };

#define RR_MAX_MATCH 4
#define RR_MAX_RULES (24 + 2 * REDIRECT_MAX_EXCLUDE)
struct rr_rule {
	enum rr_chain_id chain;
	size_t nmatch;
	struct rr_match m[RR_MAX_MATCH];
	enum rr_action act;
	uint16_t port; /* RR_A_REDIRECT */
};

/* Fills rules (in chain order, then rule order) for o (defaults applied); returns the count. */
size_t rr_rules(const struct redirect_opts *o, struct rr_rule *rules, size_t max);
/* o with the 0 ports replaced by their defaults. */
void rr_opts_defaults(const struct redirect_opts *in, struct redirect_opts *out);
/* Rules per chain of the ruleset for o. */
void rr_rule_counts(const struct redirect_opts *o, size_t counts[RR__NCHAINS]);

/* ---- building netlink messages -----------------------------------------------------------------
 * Offsets are relative to buf_rptr(), so they survive the buffer growing. A build error (the
 * buffer's max) is sticky in err. */
struct rnl {
	struct buf *b;
	int err;
};
size_t rnl_msg_begin(struct rnl *w, uint16_t type, uint16_t flags, uint32_t seq, const void *hdr,
		     size_t hdrlen);
void rnl_msg_end(struct rnl *w, size_t off);
void rnl_attr(struct rnl *w, uint16_t type, const void *p, size_t n);
void rnl_attr_u32(struct rnl *w, uint16_t type, uint32_t v);  /* host order */
void rnl_attr_be32(struct rnl *w, uint16_t type, uint32_t v); /* network order */
void rnl_attr_str(struct rnl *w, uint16_t type, const char *s);
size_t rnl_nest_begin(struct rnl *w, uint16_t type);
void rnl_nest_end(struct rnl *w, size_t off);

/* What each message of a batch is, by seq - seq0, for error messages. */
#define RR_MAX_BATCH (8 + RR__NCHAINS + RR_MAX_RULES)
struct rr_batch {
	uint32_t seq0;
	size_t n;
	char what[RR_MAX_BATCH][48]; /* "table inet ambient", "chain output-nat rule 3" */
};
/* The add batch: BEGIN, NEWTABLE, DELTABLE, NEWTABLE (replaces any old table of ours in the same
 * transaction), the chains, the rules, END. Every message carries NLM_F_ACK. */
int rr_build_add_batch(const struct redirect_opts *o, uint32_t seq0, struct buf *out,
		       struct rr_batch *map);
/* Tests only: when > 0, the rule with this number (1-based over the whole batch) is sent with an
 * expression the kernel does not know, to exercise a failing batch. */
extern int rr_test_break_rule;
/* The del batch: BEGIN, NEWTABLE, DELTABLE, END (no error when the table is already gone). */
int rr_build_del_batch(uint32_t seq0, struct buf *out, struct rr_batch *map);
/* The ip rule fwmark 0x111/0xfff pref 32764 lookup 100 (RTM_NEWRULE with CREATE|EXCL, or
 * RTM_DELRULE), and the route local 0.0.0.0/0 (::/0) dev lo table 100. */
int rr_build_rule(uint16_t type, int family, uint32_t seq, struct buf *out);
int rr_build_route(uint16_t type, int family, uint32_t seq, struct buf *out);
/* Requests: get our table, dump chains / rules of the inet family, dump ip rules / routes /
 * addresses of family. */
int rr_build_get(uint16_t nft_msg, bool dump, uint32_t seq, struct buf *out);
int rr_build_rtdump(uint16_t type, int family, uint32_t seq, struct buf *out);

/* ---- decoding replies (strict: any malformed length is -E_PROTO) ---------------------------- */
struct rr_ack {
	uint32_t seq;
	int error;     /* 0 or a positive errno */
	char msg[128]; /* extended ack text (NLMSGERR_ATTR_MSG), "" when none */
};
/* Decodes the NLMSG_ERROR messages of one recv; other message types are skipped. Returns the
 * number stored (at most max, the rest counted in *more when not NULL) or -E_PROTO. */
int rr_parse_acks(const uint8_t *p, size_t n, struct rr_ack *acks, size_t max, size_t *more);

/* A dump, decoded into what check compares. */
#define RR_CANON_MAX 2048
struct rr_dump_chain {
	char name[64];
	char type[16];
	uint32_t hook;
	int32_t prio;
	bool has_hook;
	uint32_t policy;
	size_t nrules;
};
struct rr_dump {
	bool done;	/* NLMSG_DONE seen */
	int error;	/* NLMSG_ERROR with an errno (positive) */
	bool table;	/* a NEWTABLE for our table */
	size_t nchains; /* chains of our table */
	struct rr_dump_chain chains[8];
	size_t nrules; /* rules of our table */
	struct {
		char chain[64];
		char canon[RR_CANON_MAX]; /* see rr_canon_exprs */
	} rules[RR_MAX_RULES + 8];
	size_t extra_rules; /* rules past the array (still counted per chain) */
	size_t fib_rules;   /* our ip rules seen */
	size_t routes;	    /* our table-100 local default routes seen */
	size_t addrs;	    /* addresses seen (RTM_NEWADDR), not counting IPv6 link-local */
};
/* Feeds one recv's worth of messages into d; seq must match every message. 0, or -E_PROTO. */
int rr_parse_dump(const uint8_t *p, size_t n, uint32_t seq, struct rr_dump *d);
/* A canonical text for a NFTA_RULE_EXPRESSIONS payload: each expression as
 * name(type=hex,...) with attributes sorted by type at every nesting level, so the kernel's
 * attribute order and our own do not matter. -E_PROTO when malformed, -E_LIMIT when too long. */
int rr_canon_exprs(const uint8_t *p, size_t n, char *out, size_t cap);

#endif
