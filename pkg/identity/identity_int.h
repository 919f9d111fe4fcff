/* Private interfaces between the identity manager, its chain checks and its HTTPS CA client. */
#ifndef AMBIENT_IDENTITY_INT_H
#define AMBIENT_IDENTITY_INT_H

#include "pkg/identity/identity.h"

#include "pkg/ca/ca.h"
#include "pkg/httpc/httpc.h"
#include "pkg/net/net.h"

#include <stdatomic.h>

#define IDENTITY_RESPONSE_MAX (1u << 20) /* CA response body */

/* ---- identity_verify.c ------------------------------------------------------------------------
 */

/* Checks a CA answer for `id` and our `key` (taken in every case) and builds the certificate:
 * pem[0] the leaf, pem[1..n-2] intermediates (one each), pem[n-1] the root bundle (one or more
 * blocks), every root byte-equal to one of `trusted`; leaf URI SAN exactly `id`, leaf key ours,
 * path verified by x509_verify_chain at now_s in the identity's trust domain. */
int identity_cert_build(const char *id, struct x509_key *key, char *const *pem, size_t n,
			const struct x509_chain *trusted, const char *trusted_what, int64_t now_s,
			struct identity_cert **out, struct errbuf *eb);

/* ---- identity_https.c -------------------------------------------------------------------------
 */

struct identity_url {
	char *host;    /* without brackets, lower case */
	char *prefix;  /* "" or "/path" without a trailing slash */
	char *display; /* "https://host:port/prefix" */
	uint16_t port;
	bool host_is_ip;
};

int identity_url_parse(const char *s, struct identity_url *u, struct errbuf *eb);
void identity_url_fini(struct identity_url *u);

struct identity_client {
	struct identity_url url;
	struct httpc http; /* roots: the ca_root anchors */
	char *token_file;
	int wakefd;		     /* readable: stop or new work */
	const atomic_bool *stopping; /* abandon the request at once when set */
};

/* What a remote request produced. */
struct identity_answer {
	char **pem; /* certChain */
	size_t n;
	int status;	     /* HTTP status (0: no answer) */
	int64_t retry_after; /* seconds, from a 429/503 Retry-After; 0 if none */
};

int identity_client_init(struct identity_client *c, const struct identity_opts *o,
			 struct errbuf *eb);
void identity_client_fini(struct identity_client *c);
/* One POST /v1/certificates; blocking, bounded by the timeouts, cut short by *stopping. */
int identity_client_request(struct identity_client *c, const char *id, const char *csr_pem,
			    int64_t ttl_s, int64_t now_s, struct identity_answer *a,
			    struct errbuf *eb);
void identity_answer_fini(struct identity_answer *a);

#endif
