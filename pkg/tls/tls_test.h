/* Helpers shared by the tls test files: openssl-made certificates, loaders, verify recorder. */
#ifndef AMBIENT_TLS_TEST_H
#define AMBIENT_TLS_TEST_H

#include "pkg/tls/tls.h"

/*
 * Fixtures, made once per run by openssl in unit_tmpdir() (NAME.pem, NAME.key, NAME.der,
 * NAME.kder):
 *   root      P-256 CA "O=cluster.local"          other   P-256 CA "O=other.local"
 *   inter     P-256 intermediate CA under root
 *   server    leaf under root, spiffe://cluster.local/ns/a/sa/b (empty subject; critical SAN,
 *             basicConstraints and keyUsage, as X.509-SVIDs have)
 *   client    leaf under root, spiffe://cluster.local/ns/c/sa/d
 *   deep      leaf under inter, spiffe://cluster.local/ns/e/sa/f
 *   named     leaf under root, DNS:ca.ambient.test + spiffe://cluster.local/ns/ambient/sa/ca
 *   stranger  leaf under other, spiffe://other.local/ns/x/sa/y
 *   rsa       RSA-2048 leaf under root          p384   P-384 leaf under root
 */
bool tt_fixtures(void);
/* "<tmpdir>/<name><ext>" in a static buffer (one of a few rotating). */
const char *tt_path(const char *name, const char *ext);

/* A certificate chain and P-256 key loaded from the fixtures. */
struct tt_cred {
	br_x509_certificate chain[3];
	size_t chain_len;
	br_ec_private_key key;
	uint8_t kbuf[BR_EC_KBUF_PRIV_MAX_SIZE];
};
/* chain = leaf [, inter]; false (with a test failure) if a file is missing. */
bool tt_cred_load(struct tt_cred *c, const char *leaf, const char *inter);
void tt_cred_fini(struct tt_cred *c);
/* name.der as a certificate (cached for the run). */
br_x509_certificate tt_cert(const char *name);

/* A verify callback that records what it saw and refuses with `reject` when set. */
struct tt_verify {
	int calls;
	char uri[TLS_URI_SIZE];
	size_t chain_len;
	size_t leaf_len;
	bool peer_is_server;
	const char *reject;
};
int tt_verify_fn(void *arg, const struct tls_peer *peer, char *reason, size_t cap);

/* Configs from fixtures with common defaults (ALPN h2 required, mTLS required on the server);
 * the opts may override after tt_*_opts() filled them. */
void tt_server_opts(struct tls_server_opts *o, struct tt_cred *cred);
void tt_client_opts(struct tls_client_opts *o, struct tt_cred *cred);

#endif
