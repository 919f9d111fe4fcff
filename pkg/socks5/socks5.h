/* Sans-I/O server side of SOCKS5 (RFC 1928): CONNECT only, no authentication, for the ztunnel. */
#ifndef AMBIENT_SOCKS5_H
#define AMBIENT_SOCKS5_H

#include "pkg/base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * STATE MACHINE
 *
 *           VER NMETHODS METHODS          VER CMD RSV ATYP DST.ADDR DST.PORT
 *   GREETING -----------------> REQUEST ------------------------------> CONNECT
 *      |    queues 05 00          |       event SOCKS5_EV_CONNECT         |
 *      |                          |                                       | socks5_reply()
 *      | bad VER, no 0x00         | bad VER/CMD/RSV/ATYP/name/port        |
 *      v                          v                             code != 0 | code 0
 *   FAILED <----------------------+---------------------------------------+------> DONE
 *   (error reply queued: write the pull() bytes, then close)           (tunnel follows)
 *
 * CALLER CONTRACT
 *
 * The core copies what it needs into its own fixed-size storage (a message is at most 262
 * bytes), so the caller may push any split of the stream, down to one byte at a time, and need
 * not keep pushed bytes. Nothing is allocated.
 *
 *   struct socks5 s;
 *   socks5_init(&s);
 *   ...after every read of n bytes into in:
 *   int r = socks5_push(&s, in, n);
 *   flush: while (socks5_pull(&s, &p, &len)) { write(fd, p, k <= len); socks5_pull_done(&s, k); }
 *   if (r < 0) { log socks5_reason(&s); flush; close; }
 *   if (socks5_state(&s) == SOCKS5_STATE_CONNECT) {
 *           t = socks5_target(&s);            // resolve/dial t, then:
 *           socks5_reply(&s, SOCKS5_REP_SUCCEEDED, &bound);   (or an error code)
 *           flush;
 *           in[r..n) are the first tunnel bytes: forward them upstream.
 *   }
 *   ...at EOF before CONNECT: socks5_eof(&s) fails with "truncated greeting/request".
 *
 * push() returns how many bytes of `in` belong to the handshake. It stops right after the
 * request, so with a pipelined "greeting + request + payload" the payload stays unconsumed
 * (in + r). In CONNECT and DONE it consumes nothing and returns 0. Clients may send the request
 * before reading the method selection reply; the reply is queued either way and leaves first.
 *
 * ERRORS are sticky: once push (or eof) fails, every later push returns the same -E_*. The core
 * has then queued the bytes the server must send before closing (possibly none):
 *
 *   greeting VER != 5        -E_UNSUPP "unsupported SOCKS version 4"             nothing
 *   NMETHODS == 0            -E_PROTO  "no authentication methods offered"       05 FF
 *   0x00 not offered         -E_DENIED "no acceptable auth method (client offered 0x02)"  05 FF
 *   request VER != 5         -E_PROTO  "unsupported SOCKS version 4 in request"  REP 01
 *   CMD BIND / UDP ASSOCIATE -E_UNSUPP "command BIND (2) not supported"          REP 07
 *   other CMD                -E_UNSUPP "unknown command 0x09"                    REP 07
 *   RSV != 0                 -E_PROTO  "reserved byte is 0x01, not 0x00"         REP 01
 *   ATYP not 1, 3, 4         -E_UNSUPP "address type 2 not supported"            REP 08
 *   domain length 0          -E_PROTO  "empty domain name"                       REP 01
 *   bad domain character     -E_PROTO  "domain name has invalid character at 7"  REP 01
 *   empty / long label       -E_PROTO  "domain name has an empty label at 0"     REP 01
 *                                      "domain name label longer than 63 at 64"
 *   DST.PORT 0               -E_PROTO  "destination port 0"                      REP 01
 *   eof in greeting          -E_CLOSED "truncated greeting" (or "connection closed before
 *                                      greeting" when nothing arrived)           nothing
 *   eof in request           -E_CLOSED "truncated request"                       REP 01
 *                                      ("connection closed before request"       nothing)
 *
 * Positions in reasons are 0-based offsets into the domain name. An error reply (REP != 0) has
 * BND.ADDR 0.0.0.0 and BND.PORT 0. After socks5_reply() with a failure code the state is
 * FAILED too and push returns -E_CLOSED ("replied 5 (connection refused)").
 *
 * A domain name is 1..255 bytes of letters, digits, '-', '_' and '.' (no NUL, so the copy in
 * socks5_target.name is a C string), with labels of 1..63 bytes; one trailing '.' is allowed.
 * Case is preserved: hostname lookups are case-insensitive and belong to the caller.
 */

/* RFC 1928 §6 reply codes. */
enum socks5_rep {
	SOCKS5_REP_SUCCEEDED = 0,
	SOCKS5_REP_GENERAL_FAILURE = 1,
	SOCKS5_REP_NOT_ALLOWED = 2, /* connection not allowed by ruleset */
	SOCKS5_REP_NET_UNREACHABLE = 3,
	SOCKS5_REP_HOST_UNREACHABLE = 4,
	SOCKS5_REP_CONN_REFUSED = 5,
	SOCKS5_REP_TTL_EXPIRED = 6,
	SOCKS5_REP_CMD_UNSUPPORTED = 7,
	SOCKS5_REP_ATYP_UNSUPPORTED = 8,
};

/* RFC 1928 §4 address types. */
enum socks5_atyp {
	SOCKS5_ATYP_IPV4 = 1,
	SOCKS5_ATYP_DOMAIN = 3,
	SOCKS5_ATYP_IPV6 = 4,
};

enum socks5_state {
	SOCKS5_STATE_GREETING = 0, /* reading VER NMETHODS METHODS */
	SOCKS5_STATE_REQUEST,	   /* method 0x00 selected; reading the request */
	SOCKS5_STATE_CONNECT,	   /* request parsed: the caller must call socks5_reply() */
	SOCKS5_STATE_DONE,	   /* success reply queued; further bytes belong to the tunnel */
	SOCKS5_STATE_FAILED,	   /* error or failure reply queued: write pull() bytes and close */
};

enum socks5_event {
	SOCKS5_EV_NONE = 0,
	SOCKS5_EV_CONNECT, /* the last push completed a CONNECT request: see socks5_target() */
};

/* A destination (parsed from the request) or a bound address (given to socks5_reply()). */
struct socks5_target {
	enum socks5_atyp atyp;
	uint8_t addr[16]; /* IPV4: 4 bytes, IPV6: 16 bytes, network order */
	char name[256];	  /* DOMAIN: NUL-terminated, name_len bytes */
	uint8_t name_len; /* DOMAIN: 1..255 */
	uint16_t port;	  /* host order */
};

/* Largest message either way: VER CMD RSV ATYP LEN name[255] PORT[2]. */
#define SOCKS5_MSG_MAX 262

/* Caller-owned session state. Fields are private: use the functions below. No fini needed. */
struct socks5 {
	int st;			    /* enum socks5_state */
	int err;		    /* -E_* once failed */
	enum socks5_event ev;	    /* event of the last push */
	uint8_t in[SOCKS5_MSG_MAX]; /* the message being received */
	size_t in_len;
	uint8_t out[2 + SOCKS5_MSG_MAX]; /* method reply + request reply */
	size_t out_off, out_len;
	struct socks5_target target;
	char reason[128];
};

void socks5_init(struct socks5 *s);

/* Feeds received bytes. Returns how many of them belong to the handshake (the rest, in + r, is
 * tunnel payload), or -E_* (see socks5_reason(); then write the pull() bytes and close). */
int socks5_push(struct socks5 *s, const uint8_t *in, size_t n);

/* The peer closed its side. Before CONNECT this fails (-E_CLOSED, see the table above);
 * afterwards it returns 0 (or the sticky error). */
int socks5_eof(struct socks5 *s);

/* Pending output: true and *p, *n set if there are bytes to send. */
bool socks5_pull(const struct socks5 *s, const uint8_t **p, size_t *n);
/* Marks the first n pending bytes as sent (n is clamped to what is pending). */
void socks5_pull_done(struct socks5 *s, size_t n);

/* Answers the CONNECT request with an RFC 1928 REP code (0..8) and the address the server bound
 * for the upstream connection (NULL = 0.0.0.0:0, which clients ignore). Code 0 moves to DONE, any
 * other to FAILED. -E_STATE outside SOCKS5_STATE_CONNECT, -E_INVAL for a code above 8 or a bad
 * bound address (unknown atyp, domain length 0). */
int socks5_reply(struct socks5 *s, enum socks5_rep code, const struct socks5_target *bound);

enum socks5_state socks5_state(const struct socks5 *s);
/* SOCKS5_EV_CONNECT if the last push completed the request, else SOCKS5_EV_NONE. */
enum socks5_event socks5_event(const struct socks5 *s);
/* The parsed destination; valid from SOCKS5_STATE_CONNECT on, NULL before. */
const struct socks5_target *socks5_target(const struct socks5 *s);
/* The precise failure reason ("" if none). */
const char *socks5_reason(const struct socks5 *s);
/* "connection refused" etc. for a REP code; "unassigned" above 8. */
const char *socks5_rep_name(int code);
/* "CONNECT", "BIND", "UDP ASSOCIATE", or NULL for other command codes. */
const char *socks5_cmd_name(int cmd);

#endif
