/* The certificate authority: CA directory (Istio `cacerts` layout), issuance policy, node
 * authorization and per-node rate limiting. I/O is limited to reading and writing the directory. */
#ifndef AMBIENT_CA_H
#define AMBIENT_CA_H

#include "pkg/base/base.h"
#include "pkg/buf/buf.h"
#include "pkg/config/config.h"
#include "pkg/x509/x509.h"

#include <stdbool.h>

/*
 * A CA directory always has Istio's layout (DESIGN.md §4):
 *   ca-cert.pem     the signing certificate (the root itself after `ambient ca init`)
 *   ca-key.pem      its private key, SEC1 or PKCS#8, mode 0600 (refused otherwise)
 *   cert-chain.pem  the signing certificate up to the root
 *   root-cert.pem   the root(s) that clients trust
 *   tokens.json     node tokens (hashes only; see ca_tokens.h)
 */
#define CA_CERT_FILE "ca-cert.pem"
#define CA_KEY_FILE "ca-key.pem"
#define CA_CHAIN_FILE "cert-chain.pem"
#define CA_ROOT_FILE "root-cert.pem"
#define CA_TOKENS_FILE "tokens.json"

struct ca_authority {
	char *dir;
	char *trust_domain;
	struct x509_cert *signing;
	struct x509_key *key;
	struct x509_chain chain; /* cert-chain.pem: signing certificate first */
	struct x509_chain roots; /* root-cert.pem */
	/* What follows the leaf in an issued chain: cert-chain.pem, plus the root when the file
	 * stops below it. PEM text, one block each. */
	char **tail_pem;
	size_t n_tail;
	char **root_pem;
	size_t n_root;
};

/* Writes a new self-signed P-256 root into dir (created 0700 if missing). Refuses to touch a
 * directory that already holds any CA file unless force. */
int ca_init(const char *dir, const char *trust_domain, bool force, int64_t now, struct errbuf *eb);
/* Loads and cross-checks the directory: key matches ca-cert, ca-cert is a CA that may sign,
 * cert-chain starts at ca-cert and every link verifies up to a root in root-cert.pem, all valid
 * at now. trust_domain NULL: the O= of ca-cert (as `ca init` writes it). */
int ca_authority_load(const char *dir, const char *trust_domain, int64_t now,
		      struct ca_authority **out, struct errbuf *eb);
void ca_authority_free(struct ca_authority *a);

/* An issued certificate: PEM chain leaf first, root last (DESIGN.md §4 `certChain`). */
struct ca_issued {
	char **pem;
	size_t n;
	char serial[2 * X509_MAX_SERIAL + 1];
	int64_t not_after;
	int64_t ttl;	  /* granted, seconds */
	unsigned clamped; /* X509_CLAMP_* */
};

struct ca_issue_req {
	const struct x509_pubkey *pub;
	const char *identity; /* spiffe://<trust domain>/ns/<ns>/sa/<sa> */
	int64_t ttl;	      /* <= 0: 24 h */
	int64_t now;
	/* Extra SANs: only for the CA's own serving certificate. */
	const char *const *dns;
	size_t n_dns;
	const struct x509_ip *ips;
	size_t n_ips;
};

int ca_issue(const struct ca_authority *a, const struct ca_issue_req *req, struct ca_issued *out,
	     struct errbuf *eb);
void ca_issued_fini(struct ca_issued *is);
/* The clamp as text for responses and audit lines ("" when none). */
void ca_clamp_describe(const struct ca_issued *is, int64_t requested, char *out, size_t cap);

/* `ambient ca issue --out DIR`: key.pem (PKCS#8, 0600), cert.pem, chain.pem (leaf and
 * intermediates, no root), root-cert.pem. */
int ca_write_bundle(const char *dir, const struct x509_key *key, const struct ca_issued *is,
		    const struct ca_authority *a, struct errbuf *eb);

/* Node authorization (DESIGN.md §4): `node` may obtain `identity` only while the mesh config has
 * a workload with that namespace and service account, in the CA's trust domain, on that node.
 * 0, -E_INVAL (malformed identity: 400), -E_DENIED (403) with the reason in eb. */
int ca_authorize(const struct config *c, const char *trust_domain, const char *node,
		 const char *identity, struct errbuf *eb);

/* Token bucket per node: `rate` requests per second, bursts of `burst`. */
struct ca_ratelimit;
struct ca_ratelimit *ca_ratelimit_new(double rate, double burst);
void ca_ratelimit_free(struct ca_ratelimit *r);
/* true if the request may proceed; otherwise *retry_ms says when one token is back. */
bool ca_ratelimit_take(struct ca_ratelimit *r, const char *node, uint64_t now_ms,
		       uint64_t *retry_ms);

/* Small file helpers shared with the commands: whole-file read (NUL-terminated, at most max
 * bytes) and atomic write (temp file + fsync + rename) with the given mode. */
char *ca_read_file(const char *path, size_t max, size_t *len, struct errbuf *eb);
int ca_write_file(const char *path, const void *data, size_t n, unsigned mode, struct errbuf *eb);

#endif
