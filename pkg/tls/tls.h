/* Non-blocking TLS 1.2 over BearSSL: shared configs, a sans-I/O connection pump with a peer
 * verification hook, and an fd adapter for pkg/ev loops. */
#ifndef AMBIENT_TLS_H
#define AMBIENT_TLS_H

#include <bearssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pkg/base/base.h"
#include "pkg/ev/ev.h"

/*
 * ---- policy (DESIGN.md §2, HBONE wire contract) -----------------------------------------------
 * - TLS 1.2 only; suites ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-ECDSA-AES256-GCM-SHA384 and
 *   ECDHE-ECDSA-CHACHA20-POLY1305 (unless aes_only). The server's order wins: AES-GCM first
 *   when the CPU has AES-NI and PCLMUL (chosen at run time, portable ct64/ctmul64 otherwise),
 *   ChaCha20 first when it does not.
 * - Key exchange and handshake signatures on P-256 only (br_ec_p256_m31, ECDSA i31); the
 *   peer's end-entity key must be ECDSA P-256. CA certificates above it may use P-256/384/521
 *   or RSA, so an operator's intermediate or root of another type still validates.
 * - No session resumption (no server cache, the client never resumes), no renegotiation.
 * - ALPN: names are matched exactly; with alpn_required the handshake fails when there is no
 *   common protocol, including when the peer sends no ALPN at all.
 * - No SNI unless the client passes a server name (which is then also matched against the
 *   server certificate's DNS names by BearSSL). IP SANs and SPIFFE URIs are checked in the
 *   verify callback.
 * - The PRNG is seeded from getrandom (rand_bytes); BearSSL's own system seeder is not used.
 * - Certificate failures found by us (chain, verify callback, ALPN on the client) are reported
 *   to the peer with a plaintext fatal alert (bad_certificate, certificate_expired, unknown_ca,
 *   no_application_protocol ...): at that point neither side has sent ChangeCipherSpec.
 * - TLS has no half-close here: a close_notify from the peer makes BearSSL answer with its own
 *   and the connection is over in both directions. Half-close of proxied TCP streams is
 *   carried above TLS (HTTP/2 END_STREAM).
 *
 * ---- memory per connection --------------------------------------------------------------------
 * struct tls_conn is caller-owned, 8456 bytes on x86-64: BearSSL's server context (4128 B; the
 * client's is 3720 B) and X.509 minimal engine (3168 B), a 512 B read stash, the peer's first
 * URI SAN and a failure reason. One heap buffer holds the records: 33178 B full duplex
 * (BR_SSL_BUFSIZE_BIDI, for HBONE, where both directions stream at once) or 16709 B half
 * duplex (BR_SSL_BUFSIZE_MONO with half_duplex, for request/response servers like the CA).
 * The peer's chain is kept from validation on (~0.6 KiB for an SVID leaf, at most
 * TLS_MAX_CHAIN_BYTES). Totals: ~41 KiB full duplex, ~25 KiB half duplex.
 *
 * ---- connection states ------------------------------------------------------------------------
 *
 *   tls_conn_init_*()
 *          |
 *          v           push/pull ciphertext             peer verified, Finished exchanged
 *     HANDSHAKE  ----------------------------------->  OPEN  (TLS_ST_DONE: plaintext flows)
 *       |    \                                         |  \
 *       |     \ verify/ALPN/cipher failure,            |   tls_conn_close_notify()
 *       |      \ bad record, transport EOF             |        |
 *       |       v                                      |        v
 *       |     FAILED (TLS_ST_ERROR|TLS_ST_CLOSED;      |   CLOSING: our close_notify queued;
 *       |        a plaintext alert may still be        |   peer's close_notify (or transport
 *       |        pending as ciphertext out;            |   EOF after ours) completes it
 *       |        tls_conn_error/reason say why)        |        |
 *       |                                              | peer's close_notify: BearSSL queues
 *       |                                              | ours (TLS_ST_EOF: no more plaintext)
 *       |                                              v        v
 *       +----------- bad record, truncation ------> CLOSED (TLS_ST_CLOSED|TLS_ST_EOF, clean)
 *
 * In every state the mask also says what the engine wants right now: TLS_ST_CIPHER_OUT
 * (records to send), TLS_ST_CIPHER_IN (room for records), TLS_ST_PLAIN_IN (decrypted data to
 * read), TLS_ST_PLAIN_OUT (room for data to encrypt). Drive it until no bit you can serve is
 * set: send what CIPHER_OUT offers, feed what the peer sent while CIPHER_IN is set.
 *
 * ---- threading --------------------------------------------------------------------------------
 * A struct tls_config is immutable once made, refcounted atomically, and shared by the
 * connections of every thread. A struct tls_conn belongs to one thread at a time.
 */

#define TLS_MAX_ALPN 8		  /* ALPN names per config */
#define TLS_MAX_CHAIN_CERTS 8	  /* peer chains longer than this are refused */
#define TLS_MAX_CHAIN_BYTES 32768 /* and so are larger ones */
#define TLS_REASON_SIZE 192
#define TLS_URI_SIZE 256       /* longest URI SAN reported by tls_conn_peer_uri() */
#define TLS_IO_STASH_SIZE 4096 /* bytes read past the current record (see tls_io_pump) */

/* ---- errors -----------------------------------------------------------------------------------
 * tls_conn_error() returns BearSSL's code (BR_ERR_*: 1..63 engine and X.509 errors,
 * BR_ERR_RECV_FATAL_ALERT + alert when the peer sent an alert, BR_ERR_SEND_FATAL_ALERT + alert
 * when we did), or one of ours below. */
enum tls_err {
	TLS_ERR_REJECTED = 1024,  /* the verify callback refused the peer; see tls_conn_reason() */
	TLS_ERR_PEER_KEY,	  /* the peer's end-entity key is not ECDSA P-256 */
	TLS_ERR_ALPN,		  /* ALPN required and no common protocol */
	TLS_ERR_CHAIN_LIMIT,	  /* peer chain over TLS_MAX_CHAIN_CERTS or TLS_MAX_CHAIN_BYTES */
	TLS_ERR_TRUNCATED,	  /* transport EOF without close_notify after the handshake */
	TLS_ERR_EOF_HANDSHAKE,	  /* transport EOF during the handshake */
	TLS_ERR_IO,		  /* socket error (fd adapter); the reason names errno */
	TLS_ERR_NO_SHARED_CIPHER, /* server: no common suite, curve or signature hash */
};

/* Static text for a code: "certificate expired or not yet valid", "no shared cipher suite",
 * "peer sent alert certificate_expired (45)", "ALPN mismatch (peer sent
 * no_application_protocol)" ... */
const char *tls_error_str(int code);
/* The project error (E_DENIED for a rejected peer, E_CRYPTO for certificate and handshake
 * crypto failures, E_CLOSED for truncation, E_IO, E_LIMIT, else E_PROTO); 0 for 0. */
int tls_error_class(int code);

/* ---- configs --------------------------------------------------------------------------------- */

/* What the verify callback sees, after BearSSL validated the chain against the anchors at the
 * validation time (and, on the client, ALPN was checked). Valid during the call only. */
struct tls_peer {
	struct slice leaf;	   /* end-entity certificate (DER) */
	const struct slice *chain; /* chain[0] == leaf, then what the peer sent after it */
	size_t chain_len;
	const char *uri;     /* first URI SAN of the leaf ("" if none or longer than 255) */
	const char *alpn;    /* negotiated protocol or NULL */
	int64_t now;	     /* validation time, Unix seconds */
	bool peer_is_server; /* we are the client */
};

/* Returns 0 to accept the peer, or non-zero to refuse it after writing a short reason
 * ("expired", "wrong trust domain", "not one of the expected identities") into reason, a
 * NUL-terminated string of at most cap bytes. Runs inside tls_conn_push_cipher(). */
typedef int (*tls_verify_fn)(void *arg, const struct tls_peer *peer, char *reason, size_t cap);

enum tls_client_auth {
	TLS_CLIENT_AUTH_NONE = 0, /* no CertificateRequest */
	TLS_CLIENT_AUTH_OPTIONAL, /* request one; a client without a valid one goes on
				   * unauthenticated (tls_conn_peer_cert() empty) */
	TLS_CLIENT_AUTH_REQUIRE,  /* fail without a valid client certificate */
};

/* Everything is copied: the options and what they point to may go away after _new. */
struct tls_server_opts {
	const br_x509_certificate *chain; /* leaf first; leaf key ECDSA P-256 matching `key` */
	size_t chain_len;
	const br_ec_private_key *key;
	const char *const *alpn; /* our protocols in preference order; NULL: ignore ALPN */
	size_t alpn_len;
	bool alpn_required;
	enum tls_client_auth client_auth;
	/* Anchors for client certificates, as BearSSL anchors and/or DER certificates. */
	const br_x509_trust_anchor *anchors;
	size_t anchors_len;
	const br_x509_certificate *anchor_certs;
	size_t anchor_certs_len;
	tls_verify_fn verify; /* called for client certificates; NULL: chain validation only */
	void *verify_arg;
	bool half_duplex; /* BR_SSL_BUFSIZE_MONO: half the memory, no simultaneous send+receive */
	bool aes_only;	  /* do not offer ChaCha20-Poly1305 */
};

struct tls_client_opts {
	/* Required: anchors for the server certificate. */
	const br_x509_trust_anchor *anchors;
	size_t anchors_len;
	const br_x509_certificate *anchor_certs;
	size_t anchor_certs_len;
	/* Optional client certificate (sent when the server asks). */
	const br_x509_certificate *chain;
	size_t chain_len;
	const br_ec_private_key *key;
	const char *const *alpn;
	size_t alpn_len;
	bool alpn_required;
	tls_verify_fn verify;
	void *verify_arg;
	bool half_duplex;
	bool aes_only;
};

struct tls_config;

/* NULL with the reason in eb: "TLS server config: certificate 0 does not match the private
 * key", "... private key is not EC P-256 (curve 24)", "... trust anchor certificate 1: not a
 * valid certificate (BearSSL error 34)", ... */
struct tls_config *tls_config_new_server(const struct tls_server_opts *o, struct errbuf *eb);
struct tls_config *tls_config_new_client(const struct tls_client_opts *o, struct errbuf *eb);
struct tls_config *tls_config_ref(struct tls_config *cfg);
/* Drops a reference; the last one wipes the private key and frees. NULL is a no-op. */
void tls_config_unref(struct tls_config *cfg);
bool tls_config_is_server(const struct tls_config *cfg);
/* Whether the AES-NI/PCLMUL implementations were selected (for logs and the admin page). */
bool tls_config_hw_aes(const struct tls_config *cfg);

/* ---- connections ----------------------------------------------------------------------------- */

enum tls_state {
	TLS_ST_DONE = 1u << 0,	     /* handshake complete (sticky) */
	TLS_ST_CIPHER_OUT = 1u << 1, /* ciphertext to send: tls_conn_pull_cipher() */
	TLS_ST_CIPHER_IN = 1u << 2,  /* room for ciphertext: tls_conn_push_cipher() */
	TLS_ST_PLAIN_IN = 1u << 3,   /* plaintext to read: tls_conn_pull_plain() */
	TLS_ST_PLAIN_OUT = 1u << 4,  /* room for plaintext: tls_conn_push_plain() */
	TLS_ST_EOF = 1u << 5,	     /* the peer's close_notify arrived: no more plaintext */
	TLS_ST_CLOSED = 1u << 6,     /* the engine is finished (cleanly unless TLS_ST_ERROR) */
	TLS_ST_ERROR = 1u << 7,	     /* failed: tls_conn_error(), tls_conn_reason() */
};

/* Private: the X.509 wrapper and the server policy wrapper (see tls_verify.c). */
struct tls_conn;
struct tls_x509 {
	const br_x509_class *vtable;
	br_x509_minimal_context min;
	br_name_element uri_elt;
	struct tls_conn *conn;
};
struct tls_policy {
	const br_ssl_server_policy_class *vtable;
	struct tls_conn *conn;
};

/* Caller-owned; embed it in the connection. Fields are private. BearSSL keeps pointers into
 * it, so it must not move between tls_conn_init_*() and tls_conn_fini(). */
struct tls_conn {
	union {
		br_ssl_engine_context eng;
		br_ssl_client_context cc;
		br_ssl_server_context sc;
	} u;
	struct tls_x509 x509;
	struct tls_policy policy;
	struct tls_config *cfg;
	uint8_t *iobuf;
	tls_verify_fn verify;
	void *verify_arg;
	int64_t now; /* validation time override (Unix s); INT64_MIN: wall clock */
	/* Peer chain: certificates concatenated, cert i at chain[off[i] .. off[i+1]). */
	uint8_t *chain;
	uint32_t chain_len, chain_cap;
	uint32_t off[TLS_MAX_CHAIN_CERTS + 1];
	uint8_t ncerts;
	bool chain_over;
	bool peer_ok; /* the chain passed every check */
	bool server;
	bool done;	  /* handshake completed once */
	bool close_sent;  /* tls_conn_close_notify() called */
	bool eof_clean;	  /* transport EOF after our close_notify */
	bool out_partial; /* the caller took only part of the last ciphertext we offered */
	bool alpn_failed; /* server policy refused for ALPN */
	bool policy_seen; /* server policy was consulted (cipher suites matched) */
	bool err_checked; /* failure analysed (reason formatted, alert decided) */
	uint8_t alert[7]; /* plaintext fatal alert record to send after a failure */
	uint8_t alert_off, alert_len;
	int err;		       /* our error when not BearSSL's; 0 otherwise */
	unsigned st;		       /* cached state mask */
	size_t last_pull;	       /* length offered by the last tls_conn_pull_cipher() */
	uint16_t stash_off, stash_len; /* fd adapter: bytes read past the current record */
	bool rd_eof;		       /* fd adapter: the socket returned EOF */
	char uri[TLS_URI_SIZE];
	char reason[TLS_REASON_SIZE];
	uint8_t stash[TLS_IO_STASH_SIZE];
};

/* Starts a handshake (takes a reference on cfg). server_name: NULL for no SNI and no name
 * check (the HBONE default); otherwise sent as SNI and matched against the server
 * certificate's DNS SANs. -E_INVAL for a config of the other role, -E_CRYPTO if BearSSL
 * refuses the setup. On failure the conn is still safe to tls_conn_fini(). */
int tls_conn_init_server(struct tls_conn *c, struct tls_config *cfg);
int tls_conn_init_client(struct tls_conn *c, struct tls_config *cfg, const char *server_name);
/* Frees the buffers and drops the config reference; a zeroed or failed conn is a no-op. */
void tls_conn_fini(struct tls_conn *c);

/* Replaces the config's verify callback for this connection (expected identities per
 * destination). Call before the first push. */
void tls_conn_set_verify(struct tls_conn *c, tls_verify_fn fn, void *arg);
/* Validates certificates at this Unix time instead of the wall clock (tests, replays). */
void tls_conn_set_time(struct tls_conn *c, int64_t unix_s);

static inline unsigned tls_conn_state(const struct tls_conn *c)
{
	return c->st;
}

/* Ciphertext from the peer. push copies as much as the engine takes and returns that count;
 * wbuf/commit is the zero-copy form (read() straight into the engine's buffer). */
size_t tls_conn_push_cipher(struct tls_conn *c, const void *p, size_t n);
uint8_t *tls_conn_cipher_wbuf(struct tls_conn *c, size_t *cap);
void tls_conn_cipher_commit(struct tls_conn *c, size_t n);
/* The transport reached EOF: clean if the peer's close_notify (or ours) came first, else
 * TLS_ERR_TRUNCATED / TLS_ERR_EOF_HANDSHAKE. */
void tls_conn_push_eof(struct tls_conn *c);

/* Ciphertext for the peer: pull gives a pointer into the engine (NULL when nothing), done(n)
 * says n bytes were sent. */
const uint8_t *tls_conn_pull_cipher(struct tls_conn *c, size_t *len);
void tls_conn_cipher_done(struct tls_conn *c, size_t n);

/* Plaintext to send. Records go out when full or on tls_conn_flush(). */
size_t tls_conn_push_plain(struct tls_conn *c, const void *p, size_t n);
uint8_t *tls_conn_plain_wbuf(struct tls_conn *c, size_t *cap);
void tls_conn_plain_commit(struct tls_conn *c, size_t n);
void tls_conn_flush(struct tls_conn *c);

/* Plaintext received. */
const uint8_t *tls_conn_pull_plain(struct tls_conn *c, size_t *len);
void tls_conn_plain_done(struct tls_conn *c, size_t n);

/* Queues close_notify (after flushing buffered plaintext); no more plaintext can be pushed. */
void tls_conn_close_notify(struct tls_conn *c);

/* After a failure: the code (see enum tls_err) and a readable reason, e.g. "certificate
 * expired or not yet valid", "peer certificate rejected: not one of the expected identities".
 * 0 and "" while all is well (and after a clean close). */
int tls_conn_error(const struct tls_conn *c);
const char *tls_conn_reason(const struct tls_conn *c);

/* After the handshake. */
const char *tls_conn_alpn(const struct tls_conn *c); /* NULL if none */
uint16_t tls_conn_cipher_suite(const struct tls_conn *c);
const char *tls_suite_name(uint16_t suite); /* "ECDHE-ECDSA-AES128-GCM-SHA256" (OpenSSL names) */
/* The SNI the client sent (server side), or NULL. */
const char *tls_conn_server_name(const struct tls_conn *c);
/* The peer's end-entity certificate (DER) and chain as received, once they passed every check
 * (anchors, key, verify callback); {NULL, 0} / 0 / "" otherwise. */
struct slice tls_conn_peer_cert(const struct tls_conn *c);
size_t tls_conn_peer_chain_len(const struct tls_conn *c);
struct slice tls_conn_peer_chain(const struct tls_conn *c, size_t i);
/* The first URI SAN of the peer's leaf ("" if none), e.g. a SPIFFE ID. */
const char *tls_conn_peer_uri(const struct tls_conn *c);

/* ---- fd adapter -------------------------------------------------------------------------------
 * Moves ciphertext between a non-blocking stream socket and the engine without copies: reads
 * land in the engine's record buffer, with one readv() per record (the bytes past the record,
 * up to TLS_IO_STASH_SIZE, wait in a small stash and cover the next record header); writes go
 * straight from its output buffer. The ev_io need not be started (readiness is cleared on
 * EAGAIN and short reads/writes, as ev_io_read/ev_io_write do, so it fits pkg/ev's
 * level-triggered API).
 *
 *   static void on_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
 *   {
 *           struct conn *k = ev_container_of(io, struct conn, io);
 *           int st = tls_io_pump(&k->tls, io);        // handshake, send, receive
 *           ssize_t n;
 *
 *           if (st < 0 || (st & TLS_ST_ERROR))
 *                   return fail(k);                   // tls_conn_reason(&k->tls)
 *           if (st & TLS_ST_DONE) {
 *                   while ((n = tls_io_read(&k->tls, io, k->in, sizeof(k->in))) > 0)
 *                           consume(k, n);            // replies: tls_io_write()
 *                   if (n == 0)
 *                           return finish(k);         // clean close_notify
 *                   if (n != -E_AGAIN)
 *                           return fail(k);
 *                   flush_pending_writes(k);          // tls_io_write(); -E_AGAIN: wait
 *           }
 *           ev_io_set(loop, io, tls_io_interest(&k->tls));
 *   }
 *
 * Retry pending writes after reading: the handshake (or room in the engine) may have appeared
 * while reading, and no later event announces it. tls_io_write() also moves a handshake on.
 */

/* Sends pending records, then reads while the engine wants input (bounded per call). Returns
 * the state mask, or -E_* on a socket error (the conn then fails with TLS_ERR_IO). TLS
 * failures are not negative here: check TLS_ST_ERROR. */
int tls_io_pump(struct tls_conn *c, struct ev_io *io);
/* EV_READ while the engine wants ciphertext, EV_WRITE while it has some to send. */
unsigned tls_io_interest(const struct tls_conn *c);
/* Plaintext in: bytes copied (> 0), 0 at a clean close, -E_AGAIN, or -tls_error_class(). */
ssize_t tls_io_read(struct tls_conn *c, struct ev_io *io, void *p, size_t n);
/* Like tls_io_read, without the copy: points *p at the decrypted bytes in the engine and returns
 * how many there are; the caller consumes them with tls_conn_plain_done() before any other call
 * on the conn. */
ssize_t tls_io_read_peek(struct tls_conn *c, struct ev_io *io, const uint8_t **p);
/* Plaintext out, flushed to the socket: bytes accepted (> 0), -E_AGAIN when none could be
 * (call again on EV_WRITE), -E_CLOSED once closed, or -tls_error_class(). */
ssize_t tls_io_write(struct tls_conn *c, struct ev_io *io, const void *p, size_t n);
/* Like tls_io_write, but a partly filled record stays in the engine for the next write, so
 * many small writes fill whole 16 KiB records; full records still go out at once. Follow a
 * batch with tls_io_flush(). */
ssize_t tls_io_write_more(struct tls_conn *c, struct ev_io *io, const void *p, size_t n);
/* Seals a partly filled record and sends what the engine holds: 0 (also when the socket is
 * full: EV_WRITE resumes it), -E_* on a socket error, -tls_error_class() on a failed conn. */
int tls_io_flush(struct tls_conn *c, struct ev_io *io);
/* Sends close_notify: 0 once it is on the wire, -E_AGAIN while it is pending, -E_* on error.
 * Then shutdown(SHUT_WR)/close the socket (waiting for the peer's close_notify is optional). */
int tls_io_shutdown(struct tls_conn *c, struct ev_io *io);

#endif
