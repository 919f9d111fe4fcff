/* CA directory: `ca init`, loading and cross-checking the `cacerts` layout, issuing chains. */
#include "pkg/ca/ca.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CA_FILE_MAX (1u << 20)

char *ca_read_file(const char *path, size_t max, size_t *len, struct errbuf *eb)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *data;
	size_t got = 0;

	if (fd < 0)
		return errbuf_set(eb, errno == ENOENT ? E_NOTFOUND : E_IO, "%s: %s", path,
				  strerror(errno)),
		       NULL;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		close(fd);
		return errbuf_set(eb, E_LIMIT, "%s: not a regular file of at most %zu bytes", path,
				  max),
		       NULL;
	}
	data = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	data[got] = '\0';
	if (len)
		*len = got;
	return data;
}

int ca_write_file(const char *path, const void *data, size_t n, unsigned mode, struct errbuf *eb)
{
	char tmp[4096];
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return errbuf_set(eb, E_LIMIT, "%s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return errbuf_set(eb, E_IO, "%s: %s", tmp, strerror(errno));
	/* The umask must not widen or narrow what we asked for (keys stay 0600, certs 0644). */
	if (fchmod(fd, mode) != 0 || write(fd, data, n) != (ssize_t)n || fsync(fd) != 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return errbuf_set(eb, E_IO, "%s: write: %s", tmp, strerror(e));
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		return errbuf_set(eb, E_IO, "rename %s: %s", path, strerror(e));
	}
	return 0;
}

static void join(char *out, size_t cap, const char *dir, const char *file)
{
	snprintf(out, cap, "%s/%s", dir, file);
}

static int write_cert(const char *dir, const char *file, struct x509_cert *const *v, size_t n,
		      struct errbuf *eb)
{
	char path[4096];
	struct buf b;
	int rc = 0;

	buf_init(&b, 0);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = x509_cert_format_pem(v[i], &b);
	join(path, sizeof(path), dir, file);
	if (rc == 0)
		rc = ca_write_file(path, buf_rptr(&b), buf_len(&b), 0644, eb);
	else
		errbuf_set(eb, E_INVAL, "%s: cannot encode certificate", path);
	buf_fini(&b);
	return rc;
}

static int write_key(const char *dir, const char *file, const struct x509_key *key,
		     struct errbuf *eb)
{
	char path[4096];
	struct buf b;
	int rc;

	buf_init(&b, 0);
	join(path, sizeof(path), dir, file);
	rc = x509_key_format_pem(key, X509_KEY_PKCS8, &b);
	if (rc == 0)
		rc = ca_write_file(path, buf_rptr(&b), buf_len(&b), 0600, eb);
	else
		errbuf_set(eb, E_CRYPTO, "%s: cannot encode the key", path);
	x509_buf_wipe(&b);
	return rc;
}

int ca_init(const char *dir, const char *trust_domain, bool force, int64_t now, struct errbuf *eb)
{
	static const char *const files[] = {CA_CERT_FILE, CA_KEY_FILE, CA_CHAIN_FILE, CA_ROOT_FILE};
	struct x509_key *key = NULL;
	struct x509_cert *root = NULL;
	char path[4096];
	int rc;

	rc = x509_trust_domain_check(trust_domain, strlen(trust_domain), eb);
	if (rc < 0) {
		errbuf_prefix(eb, "--trust-domain");
		return rc;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return errbuf_set(eb, E_IO, "%s: %s", dir, strerror(errno));
	for (size_t i = 0; i < ARRAY_LEN(files) && !force; i++) {
		join(path, sizeof(path), dir, files[i]);
		if (access(path, F_OK) == 0)
			return errbuf_set(eb, E_EXIST,
					  "%s already exists: refusing to overwrite a CA without "
					  "--force",
					  path);
	}
	rc = x509_key_generate(&key);
	if (rc < 0) {
		errbuf_set(eb, E_CRYPTO, "key generation failed");
		goto out;
	}
	rc = x509_self_signed_root(key, trust_domain, now, 0, &root, eb);
	if (rc < 0)
		goto out;
	/* The key first: a crash after it leaves a directory `ca init --force` can redo. */
	rc = write_key(dir, CA_KEY_FILE, key, eb);
	if (rc == 0)
		rc = write_cert(dir, CA_CERT_FILE, &root, 1, eb);
	if (rc == 0)
		rc = write_cert(dir, CA_CHAIN_FILE, &root, 1, eb);
	if (rc == 0)
		rc = write_cert(dir, CA_ROOT_FILE, &root, 1, eb);
out:
	x509_cert_free(root);
	x509_key_free(key);
	return rc;
}

void ca_authority_free(struct ca_authority *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n_tail; i++)
		free(a->tail_pem[i]);
	for (size_t i = 0; i < a->n_root; i++)
		free(a->root_pem[i]);
	free(a->tail_pem);
	free(a->root_pem);
	x509_chain_fini(&a->chain);
	x509_chain_fini(&a->roots);
	x509_cert_free(a->signing);
	x509_key_free(a->key);
	free(a->trust_domain);
	free(a->dir);
	free(a);
}

static char *cert_pem(const struct x509_cert *c)
{
	struct buf b;
	char *s;

	buf_init(&b, 0);
	if (x509_cert_format_pem(c, &b) < 0) {
		buf_fini(&b);
		return NULL;
	}
	s = xstrndup((const char *)buf_rptr(&b), buf_len(&b));
	buf_fini(&b);
	return s;
}

static int load_chain(const char *dir, const char *file, struct x509_chain *ch, struct errbuf *eb)
{
	char path[4096];
	size_t len;
	char *text;
	int rc;

	join(path, sizeof(path), dir, file);
	text = ca_read_file(path, CA_FILE_MAX, &len, eb);
	if (!text)
		return -E_IO;
	rc = x509_chain_parse_pem(text, len, ch, eb);
	free(text);
	if (rc == 0 && ch->n == 0)
		rc = errbuf_set(eb, E_INVAL, "holds no certificate");
	if (rc < 0)
		errbuf_prefix(eb, "%s", path);
	return rc;
}

static int load_key(const char *dir, struct x509_key **key, struct errbuf *eb)
{
	char path[4096];
	struct stat st;
	size_t len;
	char *text;
	int rc;

	join(path, sizeof(path), dir, CA_KEY_FILE);
	if (stat(path, &st) != 0)
		return errbuf_set(eb, E_IO, "%s: %s", path, strerror(errno));
	if (st.st_mode & 077)
		return errbuf_set(eb, E_PERM,
				  "%s: private key is readable by group or others (mode %04o); "
				  "run chmod 600 on it",
				  path, (unsigned)(st.st_mode & 07777));
	text = ca_read_file(path, CA_FILE_MAX, &len, eb);
	if (!text)
		return -E_IO;
	rc = x509_key_parse_pem(text, len, key, eb);
	secure_wipe(text, len);
	free(text);
	if (rc < 0)
		errbuf_prefix(eb, "%s", path);
	return rc;
}

/* The trust domain `ca init` records as the root's O=. */
static char *trust_domain_from(const struct x509_cert *c)
{
	const char *o = strstr(c->subject_text, "O=");
	size_t n;

	if (!o)
		return NULL;
	o += 2;
	n = strcspn(o, ",+");
	if (x509_trust_domain_check(o, n, NULL) < 0)
		return NULL;
	return xstrndup(o, n);
}

static bool same_cert(const struct x509_cert *a, const struct x509_cert *b)
{
	return a->len == b->len && memcmp(a->der, b->der, a->len) == 0;
}

/* Each chain link is signed by the next, and the last by (or equal to) a root. */
static int check_links(struct ca_authority *a, int64_t now, struct errbuf *eb)
{
	const struct x509_cert *top;
	bool anchored = false;

	for (size_t i = 0; i < a->chain.n; i++) {
		const struct x509_cert *c = a->chain.v[i];
		if (!c->ca || !(c->key_usage & X509_KU_KEY_CERT_SIGN))
			return errbuf_set(eb, E_INVAL,
					  "%s[%zu] (%s) is not a CA certificate with keyCertSign",
					  CA_CHAIN_FILE, i, c->subject_text);
		if (!x509_cert_valid_at(c, now))
			return errbuf_set(eb, E_TIMEOUT, "%s[%zu] (%s) is expired or not yet valid",
					  CA_CHAIN_FILE, i, c->subject_text);
		if (i + 1 < a->chain.n &&
		    x509_cert_check_signature(c, &a->chain.v[i + 1]->pub, eb) < 0) {
			errbuf_prefix(eb, "%s[%zu] is not signed by %s[%zu]", CA_CHAIN_FILE, i,
				      CA_CHAIN_FILE, i + 1);
			return -E_CRYPTO;
		}
	}
	top = a->chain.v[a->chain.n - 1];
	for (size_t r = 0; r < a->roots.n && !anchored; r++) {
		const struct x509_cert *root = a->roots.v[r];
		if (same_cert(top, root) || x509_cert_check_signature(top, &root->pub, NULL) == 0)
			anchored = true;
	}
	if (!anchored)
		return errbuf_set(eb, E_CRYPTO, "%s does not lead to a root in %s", CA_CHAIN_FILE,
				  CA_ROOT_FILE);
	return 0;
}

/* The issued chain's tail: the signing chain up to (not including) its root, then one PEM
 * bundle with every root of root-cert.pem, the one that anchors the chain first. Clients take
 * that bundle as their trust roots, so during a root rotation (both roots in root-cert.pem)
 * workloads trust peers signed under either root. */
static int build_pems(struct ca_authority *a, struct errbuf *eb)
{
	const struct x509_cert *top = a->chain.v[a->chain.n - 1];
	size_t anchor = a->roots.n, n_below = a->chain.n;
	struct buf bundle;
	char *pem;

	for (size_t r = 0; r < a->roots.n && anchor == a->roots.n; r++)
		if (same_cert(top, a->roots.v[r])) {
			anchor = r;
			n_below = a->chain.n - 1; /* the chain ends with the root itself */
		}
	for (size_t r = 0; r < a->roots.n && anchor == a->roots.n; r++)
		if (x509_cert_check_signature(top, &a->roots.v[r]->pub, NULL) == 0)
			anchor = r;
	if (anchor == a->roots.n)
		return errbuf_set(eb, E_CRYPTO, "%s does not lead to a root in %s", CA_CHAIN_FILE,
				  CA_ROOT_FILE);
	a->tail_pem = xcalloc(n_below + 1, sizeof(char *));
	for (size_t i = 0; i < n_below; i++)
		a->tail_pem[a->n_tail++] = cert_pem(a->chain.v[i]);
	a->root_pem = xcalloc(a->roots.n, sizeof(char *));
	for (size_t r = 0; r < a->roots.n; r++)
		a->root_pem[a->n_root++] = cert_pem(a->roots.v[r]);
	for (size_t i = 0; i < a->n_tail; i++)
		if (!a->tail_pem[i])
			return errbuf_set(eb, E_INVAL, "cannot re-encode the CA chain");
	for (size_t i = 0; i < a->n_root; i++)
		if (!a->root_pem[i])
			return errbuf_set(eb, E_INVAL, "cannot re-encode the roots");
	buf_init(&bundle, 0);
	buf_append_str(&bundle, a->root_pem[anchor]);
	for (size_t r = 0; r < a->n_root; r++)
		if (r != anchor)
			buf_append_str(&bundle, a->root_pem[r]);
	pem = xcalloc(1, buf_len(&bundle) + 1);
	memcpy(pem, buf_rptr(&bundle), buf_len(&bundle));
	buf_fini(&bundle);
	a->tail_pem[a->n_tail++] = pem;
	return 0;
}

int ca_authority_load(const char *dir, const char *trust_domain, int64_t now,
		      struct ca_authority **out, struct errbuf *eb)
{
	struct ca_authority *a = xcalloc(1, sizeof(*a));
	struct x509_chain signing = {0};
	char path[4096];
	int rc;

	a->dir = xstrdup(dir);
	if ((rc = load_chain(dir, CA_CERT_FILE, &signing, eb)) < 0)
		goto fail;
	a->signing = signing.v[0];
	signing.v[0] = NULL;
	x509_chain_fini(&signing);
	if ((rc = load_key(dir, &a->key, eb)) < 0)
		goto fail;
	if ((rc = load_chain(dir, CA_CHAIN_FILE, &a->chain, eb)) < 0)
		goto fail;
	if ((rc = load_chain(dir, CA_ROOT_FILE, &a->roots, eb)) < 0)
		goto fail;
	join(path, sizeof(path), dir, CA_KEY_FILE);
	if (!x509_pubkey_equal(x509_key_public(a->key), &a->signing->pub)) {
		rc = errbuf_set(eb, E_CRYPTO, "%s does not match the public key of %s", path,
				CA_CERT_FILE);
		goto fail;
	}
	if (!same_cert(a->signing, a->chain.v[0])) {
		rc = errbuf_set(eb, E_INVAL, "%s/%s must start with %s", dir, CA_CHAIN_FILE,
				CA_CERT_FILE);
		goto fail;
	}
	if ((rc = check_links(a, now, eb)) < 0) {
		errbuf_prefix(eb, "%s", dir);
		goto fail;
	}
	a->trust_domain = trust_domain ? xstrdup(trust_domain) : trust_domain_from(a->signing);
	if (!a->trust_domain) {
		rc = errbuf_set(eb, E_INVAL,
				"%s/%s has no O=<trust domain> in its subject: pass --trust-domain",
				dir, CA_CERT_FILE);
		goto fail;
	}
	if ((rc = x509_trust_domain_check(a->trust_domain, strlen(a->trust_domain), eb)) < 0) {
		errbuf_prefix(eb, "trust domain");
		goto fail;
	}
	if ((rc = build_pems(a, eb)) < 0)
		goto fail;
	*out = a;
	return 0;
fail:
	ca_authority_free(a);
	return rc < 0 ? rc : -E_INVAL;
}

/* ---- issuance ---------------------------------------------------------------------------------
 */

void ca_issued_fini(struct ca_issued *is)
{
	for (size_t i = 0; i < is->n; i++)
		free(is->pem[i]);
	free(is->pem);
	memset(is, 0, sizeof(*is));
}

int ca_issue(const struct ca_authority *a, const struct ca_issue_req *req, struct ca_issued *out,
	     struct errbuf *eb)
{
	struct x509_leaf_req lr = {
		.pub = req->pub,
		.spiffe_id = req->identity,
		.dns = req->dns,
		.n_dns = req->n_dns,
		.ips = req->ips,
		.n_ips = req->n_ips,
		.now = req->now,
		.ttl = req->ttl,
	};
	struct x509_spiffe id;
	struct slice ns, sa;
	struct x509_cert *leaf = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = x509_spiffe_parse(req->identity, strlen(req->identity), &id, eb);
	if (rc < 0)
		return rc;
	if (id.td.n != strlen(a->trust_domain) || memcmp(id.td.p, a->trust_domain, id.td.n) != 0)
		return errbuf_set(eb, E_DENIED, "identity %s is outside the trust domain %s",
				  req->identity, a->trust_domain);
	if ((rc = x509_spiffe_istio(&id, &ns, &sa, eb)) < 0)
		return rc;
	rc = x509_pubkey_require_p256(req->pub, "the CSR's key", eb);
	if (rc < 0)
		return rc;
	rc = x509_issue_leaf(a->signing, a->key, &lr, &leaf, &out->clamped, eb);
	if (rc < 0)
		return rc;
	out->pem = xcalloc(a->n_tail + 1, sizeof(char *));
	out->pem[out->n++] = cert_pem(leaf);
	for (size_t i = 0; i < a->n_tail; i++)
		out->pem[out->n++] = xstrdup(a->tail_pem[i]);
	x509_cert_serial_hex(leaf, out->serial, sizeof(out->serial));
	out->not_after = leaf->not_after;
	out->ttl = leaf->not_after - req->now;
	x509_cert_free(leaf);
	if (!out->pem[0]) {
		ca_issued_fini(out);
		return errbuf_set(eb, E_INVAL, "cannot encode the issued certificate");
	}
	return 0;
}

void ca_clamp_describe(const struct ca_issued *is, int64_t requested, char *out, size_t cap)
{
	out[0] = '\0';
	if (is->clamped & X509_CLAMP_ISSUER)
		snprintf(out, cap, "TTL clamped to %lld s: the certificate may not outlive the CA",
			 (long long)is->ttl);
	else if (is->clamped & X509_CLAMP_MAX_TTL)
		snprintf(out, cap, "requested TTL %lld s exceeds the maximum %d s; clamped",
			 (long long)requested, X509_LEAF_MAX_TTL);
}

int ca_write_bundle(const char *dir, const struct x509_key *key, const struct ca_issued *is,
		    const struct ca_authority *a, struct errbuf *eb)
{
	char path[4096];
	struct buf chain;
	int rc;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return errbuf_set(eb, E_IO, "%s: %s", dir, strerror(errno));
	rc = write_key(dir, "key.pem", key, eb);
	if (rc < 0)
		return rc;
	join(path, sizeof(path), dir, "cert.pem");
	rc = ca_write_file(path, is->pem[0], strlen(is->pem[0]), 0644, eb);
	if (rc < 0)
		return rc;
	/* chain.pem: the leaf and the intermediates, without the roots (the last element is
	 * always the root bundle). */
	buf_init(&chain, 0);
	for (size_t i = 0; i + 1 < is->n; i++)
		buf_append_str(&chain, is->pem[i]);
	join(path, sizeof(path), dir, "chain.pem");
	rc = ca_write_file(path, buf_rptr(&chain), buf_len(&chain), 0644, eb);
	buf_reset(&chain);
	for (size_t r = 0; r < a->n_root && rc == 0; r++)
		buf_append_str(&chain, a->root_pem[r]);
	join(path, sizeof(path), dir, CA_ROOT_FILE);
	if (rc == 0)
		rc = ca_write_file(path, buf_rptr(&chain), buf_len(&chain), 0644, eb);
	buf_fini(&chain);
	return rc;
}
