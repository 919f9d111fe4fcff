/* The HBONE mTLS setup that ztunnel (15008 and its client pool) and the waypoint share. */
#include "pkg/identity/identity.h"

#include "pkg/tls/tls.h"

#include <stdio.h>
#include <string.h>

/* A server accepts a client whose SPIFFE ID is in its own trust domain. */
static int verify_client(void *arg, const struct tls_peer *peer, char *reason, size_t cap)
{
	const struct identity_hbone_peer *want = arg;
	const char *td = want->trust_domain ? want->trust_domain : "";
	struct x509_spiffe id;

	if (x509_spiffe_parse(peer->uri, strlen(peer->uri), &id, NULL) < 0 || id.path.n == 0) {
		snprintf(reason, cap, "client certificate has no SPIFFE ID");
		return 1;
	}
	if (id.td.n != strlen(td) || memcmp(id.td.p, td, id.td.n) != 0) {
		snprintf(reason, cap, "wrong trust domain (want %s)", td);
		return 1;
	}
	return 0;
}

/* A client accepts exactly the server identity it dialled for. */
static int verify_server(void *arg, const struct tls_peer *peer, char *reason, size_t cap)
{
	const struct identity_hbone_peer *want = arg;
	const char *id = want->expect_id ? want->expect_id : "";

	if (strcmp(peer->uri, id) != 0) {
		snprintf(reason, cap, "server identity %s is not the expected %s",
			 peer->uri[0] ? peer->uri : "(none)", id);
		return 1;
	}
	return 0;
}

static const char *const alpn_h2[] = {"h2"};

struct tls_config *identity_hbone_tls_config(bool server, struct identity_cert *cert,
					     struct identity_hbone_peer *peer, struct errbuf *eb)
{
	struct tls_config *cfg;

	if (server) {
		struct tls_server_opts o = {
			.chain = cert->chain,
			.chain_len = cert->chain_len,
			.key = cert->key,
			.alpn = alpn_h2,
			.alpn_len = 1,
			.alpn_required = true,
			.client_auth = TLS_CLIENT_AUTH_REQUIRE,
			.anchor_certs = cert->roots,
			.anchor_certs_len = cert->roots_len,
			.verify = verify_client,
			.verify_arg = peer,
		};
		cfg = tls_config_new_server(&o, eb);
	} else {
		struct tls_client_opts o = {
			.anchor_certs = cert->roots,
			.anchor_certs_len = cert->roots_len,
			.chain = cert->chain,
			.chain_len = cert->chain_len,
			.key = cert->key,
			.alpn = alpn_h2,
			.alpn_len = 1,
			.alpn_required = true,
			.verify = verify_server,
			.verify_arg = peer,
		};
		cfg = tls_config_new_client(&o, eb);
	}
	identity_cert_unref(cert);
	return cfg;
}
