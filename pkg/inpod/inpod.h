/* ZDS, Istio's ztunnel enrollment protocol (DESIGN.md §5, reference ztunnel-and-cni.md §7.3):
 * one protobuf message per SOCK_SEQPACKET packet on a unix socket; the node agent (`ambient cni
 * agent`) is the server, ztunnel the client. ztunnel says hello; the agent then sends
 * WorkloadRequests (Add with the workload's netns fd in SCM_RIGHTS, Keep, Del, SnapshotSent),
 * and ztunnel answers each with exactly one WorkloadResponse{Ack{error}}.
 *
 * The codec (inpod_codec.c) is sans-I/O: bytes in, structs out, strict: wrong wire types,
 * truncation, repeated known fields, two payloads, unknown payload numbers, invalid UTF-8, NUL
 * bytes and over-long strings are errors; unknown fields inside a known message are skipped
 * (protobuf's forward compatibility). inpod_sock.c moves packets and fds; after any error or
 * timeout in the middle of an exchange the connection must be closed (acks match requests by
 * order only). docs/zds.md has the details. */
#ifndef AMBIENT_INPOD_H
#define AMBIENT_INPOD_H

#include "pkg/base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INPOD_DEFAULT_PATH "/var/run/ztunnel/ztunnel.sock" /* Istio's INPOD_UDS default */
#define INPOD_PACKET_MAX 1024 /* receive buffer, as Istio's; larger packets are refused */
#define INPOD_STR_MAX 253     /* uid, name, namespace, service account */
#define INPOD_VERSION_V1 1

enum inpod_type {
	INPOD_ADD = 1,		 /* WorkloadRequest.add (field 1): needs a netns fd */
	INPOD_DEL = 2,		 /* WorkloadRequest.del (field 2) */
	INPOD_SNAPSHOT_SENT = 3, /* WorkloadRequest.snapshot_sent (field 3) */
	INPOD_KEEP = 5,		 /* WorkloadRequest.keep (field 5) */
};

struct inpod_request {
	enum inpod_type type;
	char uid[INPOD_STR_MAX + 1]; /* Add, Keep, Del */
	/* Add: WorkloadInfo (may be empty strings) */
	char name[INPOD_STR_MAX + 1];
	char namespace_[INPOD_STR_MAX + 1];
	char service_account[INPOD_STR_MAX + 1];
};

const char *inpod_type_name(enum inpod_type t); /* "Add", "Del", "SnapshotSent", "Keep" */

/* ---- codec ------------------------------------------------------------------------------------
 * encode: returns the length written to out (cap >= INPOD_PACKET_MAX is always enough), or -E_*.
 * decode: 0, or -E_PARSE with the reason in eb ("WorkloadRequest: field 1 (add): truncated"). */
int inpod_hello_encode(uint8_t *out, size_t cap, uint32_t version);
int inpod_hello_decode(const uint8_t *p, size_t n, uint32_t *version, struct errbuf *eb);
int inpod_request_encode(const struct inpod_request *r, uint8_t *out, size_t cap);
int inpod_request_decode(const uint8_t *p, size_t n, struct inpod_request *r, struct errbuf *eb);
/* error NULL or "" = success. */
int inpod_ack_encode(const char *error, uint8_t *out, size_t cap);
/* err gets the ack's error text ("" for success), truncated to cap. */
int inpod_ack_decode(const uint8_t *p, size_t n, char *err, size_t cap, struct errbuf *eb);

/* ---- the protocol rules on ztunnel's side (sans-I/O) -----------------------------------------
 * Checks one received request against the session so far: an fd with anything but Add, an Add
 * without an fd, Keep after SnapshotSent, a second SnapshotSent, an empty uid. Returns 0 (and
 * records SnapshotSent) or -E_PROTO with the reason in eb. */
struct inpod_session {
	bool snapshot_sent;
};
int inpod_session_check(struct inpod_session *s, const struct inpod_request *r, bool has_fd,
			struct errbuf *eb);

/* ---- sockets (blocking, with timeouts; for a dedicated thread on each side) ------------------
 * Every function returns 0 / a fd, or -E_* with eb naming the step and the path. */

/* ztunnel: connect to the agent's socket and send the hello. */
int inpod_client_connect(const char *path, struct errbuf *eb);
/* ztunnel: receive one request. *netns_fd gets the fd from SCM_RIGHTS (-1 if none; extra fds are
 * closed). Truncated packets (MSG_TRUNC/MSG_CTRUNC) and undecodable ones are -E_PARSE (any fd
 * received is closed). -E_CLOSED when the agent closed the connection. timeout_ms < 0: wait. */
int inpod_client_recv(int fd, struct inpod_request *r, int *netns_fd, int timeout_ms,
		      struct errbuf *eb);
int inpod_client_ack(int fd, const char *error, struct errbuf *eb);

/* agent: listen on path (a stale socket file is replaced; the directory is created 0755; the
 * socket is 0600, root only). */
int inpod_server_listen(const char *path, struct errbuf *eb);
/* agent: accept one ztunnel connection and read its hello (version must be V1). */
int inpod_server_accept(int lfd, int timeout_ms, struct errbuf *eb);
/* agent: send a request (netns_fd >= 0 only with Add) and wait for its ack: 0 on an empty ack,
 * -E_DENIED with the ztunnel's error text in eb on a non-empty one, -E_TIMEOUT, -E_CLOSED. */
int inpod_server_send(int fd, const struct inpod_request *r, int netns_fd, int timeout_ms,
		      struct errbuf *eb);

#endif
