/* Workload certificate manager: per-SPIFFE-ID keys and X.509-SVIDs from a remote or local CA,
 * fetched single-flight on one identity thread, renewed at half-life, served refcounted. */
#ifndef AMBIENT_IDENTITY_H
#define AMBIENT_IDENTITY_H

#include "pkg/base/base.h"
#include "pkg/json/json.h"
#include "pkg/x509/x509.h"

#include <bearssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * One manager per process (ztunnel or waypoint). Sources (exactly one):
 *   ca_url + ca_root + token_file   remote CA, `POST <ca_url>/v1/certificates` (docs/ca.md)
 *   ca_dir                          local signing from a CA directory (pkg/ca)
 *
 *   struct identity_mgr *m = identity_mgr_new(&(struct identity_opts){.ca_dir = dir}, &eb);
 *   identity_prefetch(m, "spiffe://cluster.local/ns/default/sa/app");  // local workloads
 *   r = identity_get(m, id, &cert, &conn->waiter, &eb);
 *       0        cert holds a new reference: build the TLS config, identity_cert_unref(cert)
 *       -E_AGAIN the first fetch is in flight; conn->waiter.fn runs once when it ends
 *       < 0      no usable certificate (eb: the last CA error); fail the connection
 *   identity_mgr_free(m);
 *
 * Per-identity states (docs/identity.md has the diagram):
 *
 *   (new) --get/prefetch--> PENDING --ok--> READY --half-life--> RENEWING --ok--> READY
 *                              |                                   |   \
 *                              | fail                         fail: keep serving, retry
 *                              v                              with backoff; notAfter passes
 *                           FAILED --retry ok--> READY             v
 *                                                              EXPIRED --retry ok--> READY
 *
 * Retries after a failure wait a jittered exponential backoff: min(1 s * 2^(k-1), 150 s),
 * times a random factor in [0.8, 1.2], then clamped to [1 s, 150 s]; a 429's Retry-After is
 * honoured up to 150 s.
 *
 * Threading: every CA request runs on the manager's own thread, one at a time; all other
 * functions may be called from any thread. Waiter callbacks run on the identity thread with the
 * manager's lock held: they must be short and must not call identity_* (post to your own loop
 * with ev_loop_post instead). identity_waiter_cancel() is therefore race-free: once it returns
 * the callback is not running and will not run.
 */

#define IDENTITY_BACKOFF_MIN_MS 1000
#define IDENTITY_BACKOFF_MAX_MS 150000
#define IDENTITY_JITTER_PCT 20
#define IDENTITY_SERIAL_MAX (2 * X509_MAX_SERIAL + 1)

/* Unix time in milliseconds. Tests inject a fake clock; the default is time_real_ms(). */
typedef int64_t (*identity_now_fn)(void *arg);

/* Zero means "default" for every number. Strings are copied. */
struct identity_opts {
	/* Remote CA. */
	const char *ca_url;  /* https://host[:port][/prefix]; plain http is refused */
	const char *ca_root; /* PEM roots: the CA's serving chain and every issued chain's root */
	const char *token_file;	 /* bearer token, re-read for every request (required) */
	const char *ca_identity; /* optional: the exact URI SAN the CA's serving cert must carry */
	/* Local signing. */
	const char *ca_dir;	  /* Istio cacerts layout (pkg/ca) */
	const char *trust_domain; /* ca_dir only: NULL takes the O= of ca-cert.pem */
	/* Tuning. */
	int64_t ttl_s;		     /* requested certificate lifetime (24 h) */
	uint32_t connect_timeout_ms; /* TCP connect + TLS handshake (5000) */
	uint32_t io_timeout_ms;	     /* per read/write wait (15000) */
	uint32_t backoff_min_ms;     /* IDENTITY_BACKOFF_MIN_MS */
	uint32_t backoff_max_ms;     /* IDENTITY_BACKOFF_MAX_MS */
	identity_now_fn now;	     /* NULL: wall clock */
	void *now_arg;
};

struct identity_mgr;

/* Checks opts, loads ca_root or the CA directory (refusing rather than guessing), starts the
 * identity thread. NULL with the reason in eb. */
struct identity_mgr *identity_mgr_new(const struct identity_opts *opts, struct errbuf *eb);
/* Stops the thread (a request in flight is abandoned at once), calls every armed waiter with
 * -E_CLOSED, drops the cache. Certificates still referenced by callers stay valid. NULL: no-op. */
void identity_mgr_free(struct identity_mgr *m);

/* ---- certificates ------------------------------------------------------------------------------
 * Immutable once published; refcounted atomically so a TLS config can keep one while a renewal
 * swaps in the next. The fields are read-only. */
struct identity_cert {
	const char *spiffe_id;
	const br_ec_private_key *key;	  /* for tls_{server,client}_opts.key */
	const br_x509_certificate *chain; /* leaf first, then intermediates (no root) */
	size_t chain_len;
	const br_x509_certificate *roots; /* trust bundle: the root(s) of the CA's response */
	size_t roots_len;
	int64_t not_before, not_after;	  /* Unix seconds, inclusive */
	int64_t refresh_at_ms;		  /* notBefore + lifetime / 2 */
	char serial[IDENTITY_SERIAL_MAX]; /* lower-case hex */
	const struct x509_cert *leaf;	  /* decoded leaf */
	/* private */
	atomic_uint refs;
	char *id_owned;
	struct x509_key *k;
	struct x509_chain certs; /* leaf + intermediates */
	struct x509_chain tail;	 /* roots */
	br_x509_certificate *br_chain;
	br_x509_certificate *br_roots;
};

struct identity_cert *identity_cert_ref(struct identity_cert *c);
/* The last reference wipes the private key. NULL is a no-op. */
void identity_cert_unref(struct identity_cert *c);

/* ---- HBONE mTLS (DESIGN.md §4) ------------------------------------------------------------------
 * The TLS config of an HBONE connection, the same for ztunnel (15008, its client pool) and the
 * waypoint: this identity's chain and key, its roots as anchors, ALPN exactly "h2"; a server
 * requires a client certificate whose SPIFFE ID is in `trust_domain`, a client requires the
 * server's SPIFFE ID to be exactly `expect_id`. `peer` is read during the handshake: it must
 * outlive it. Consumes the reference to cert. NULL with the reason in eb. */
struct tls_config;
struct identity_hbone_peer {
	const char *trust_domain; /* server side */
	const char *expect_id;	  /* client side */
};
struct tls_config *identity_hbone_tls_config(bool server, struct identity_cert *cert,
					     struct identity_hbone_peer *peer, struct errbuf *eb);

/* ---- lookups -----------------------------------------------------------------------------------
 */

struct identity_waiter;
/* status: 0 (a certificate is ready: call identity_get again) or -E_* (the fetch failed, the
 * identity was forgotten: -E_CLOSED, or the manager stopped: -E_CLOSED). */
typedef void (*identity_ready_fn)(struct identity_waiter *w, int status);

/* Caller-owned (embed it in the connection); set fn and arg, leave the rest zero. */
struct identity_waiter {
	identity_ready_fn fn;
	void *arg;
	/* private */
	struct identity_waiter *next, *prev;
	void *entry; /* the cache entry it waits on; NULL when not armed */
};

/* The current certificate for a SPIFFE ID (validated with x509_spiffe_parse; it must be in the
 * Istio shape spiffe://td/ns/<ns>/sa/<sa>). A new identity is created in PENDING and fetched
 * on demand. Returns:
 *   0         *out = a new reference to a certificate valid now;
 *   -E_AGAIN  no valid certificate yet but a fetch is due or in flight (first fetch, or a
 *             retry under way); w (if not NULL) is armed and called exactly once;
 *   -E_*      no valid certificate and the last attempt failed (FAILED/EXPIRED, waiting for
 *             its backoff): fail fast with eb = the last error; or -E_INVAL for a bad ID.
 * A burst of calls for one identity causes one CA request (single-flight). */
int identity_get(struct identity_mgr *m, const char *spiffe_id, struct identity_cert **out,
		 struct identity_waiter *w, struct errbuf *eb);
/* Disarms w (no-op if not armed). After it returns, w->fn is not running and will not run. */
void identity_waiter_cancel(struct identity_mgr *m, struct identity_waiter *w);

/* Fetches ahead of need (a local workload appeared). 0, or -E_INVAL for a bad ID. */
int identity_prefetch(struct identity_mgr *m, const char *spiffe_id, struct errbuf *eb);
/* Drops an identity (the last local workload with it left): its waiters get -E_CLOSED, a
 * fetch in flight is discarded. 0 or -E_NOTFOUND. */
int identity_forget(struct identity_mgr *m, const char *spiffe_id);
/* Makes the identity thread re-check deadlines now (after a fake clock moved). */
void identity_mgr_wake(struct identity_mgr *m);

/* ---- status (for /config_dump, metrics, ctl) ---------------------------------------------------
 */
enum identity_state {
	IDENTITY_PENDING = 0, /* first fetch due or in flight, no certificate yet */
	IDENTITY_READY,	      /* valid certificate, before its refresh time */
	IDENTITY_RENEWING,    /* valid certificate, renewal in flight or retrying */
	IDENTITY_FAILED,      /* no certificate ever; last fetch failed; retrying */
	IDENTITY_EXPIRED,     /* the certificate expired and was dropped; refetching */
};
const char *identity_state_name(enum identity_state s); /* "pending" "ready" ... */

struct identity_entry_status {
	char *spiffe_id;
	enum identity_state state;
	bool prefetch;			  /* a local workload's identity */
	bool in_flight;			  /* a CA request is running now */
	char serial[IDENTITY_SERIAL_MAX]; /* "" without a certificate */
	int64_t not_before, not_after;	  /* Unix s; 0 without a certificate */
	int64_t next_refresh_ms;	  /* Unix ms of the next fetch */
	uint32_t consecutive_failures;
	uint32_t backoff_ms; /* delay chosen after the last failure, 0 after a success */
	uint64_t fetches;    /* CA requests made */
	uint64_t failures;
	uint64_t waiters; /* armed waiters now */
	char *last_error; /* NULL if none yet */
	int64_t last_error_ms;
	int64_t last_success_ms;
};

struct identity_status {
	char *source; /* "https://ca:15012" or "ca-dir /etc/ambient/ca" (never secrets) */
	struct identity_entry_status *v;
	size_t n;
	uint64_t fetches, failures; /* totals, forgotten identities included */
};

void identity_status_get(struct identity_mgr *m, struct identity_status *st);
void identity_status_fini(struct identity_status *st);
/* {"source":..., "fetches":..., "failures":..., "identities":[{...}]} */
void identity_status_write_json(const struct identity_status *st, struct json_writer *w);

#endif
