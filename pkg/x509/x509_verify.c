/* X.509-SVID leaf rules and certification path validation (RFC 5280 §6 subset) for mesh chains. */
#include "pkg/x509/x509_int.h"

#include <stdio.h>
#include <string.h>

/* "leaf (spiffe://td/ns/a/sa/b)", "intermediate 2 'O=Example CA'" or "root '...'", for messages. */
static void describe(const struct x509_cert *c, int depth, bool anchor, char *out, size_t cap)
{
	struct slice uri = x509_cert_uri(c);
	char who[160];

	if (depth == 0 && uri.n)
		x509_escape(uri.p, uri.n, who, sizeof(who));
	else
		snprintf(who, sizeof(who), "%s",
			 c->subject_text[0] ? c->subject_text : "empty subject");
	if (depth == 0)
		snprintf(out, cap, "leaf (%s)", who);
	else if (anchor)
		snprintf(out, cap, "root '%s'", who);
	else
		snprintf(out, cap, "intermediate %d '%s'", depth, who);
}

int x509_svid_check(const struct x509_cert *leaf, const char *trust_domain,
		    struct x509_spiffe *id_out, struct errbuf *eb)
{
	struct x509_spiffe id;
	struct slice uri;
	char esc[160];
	int r;

	if ((r = x509_pubkey_require_p256(&leaf->pub, "leaf certificate key", eb)) < 0)
		return r;
	/* X.509-SVID §4.1: leaf SVIDs MUST set cA to false. */
	if (leaf->ca)
		return errbuf_set(eb, E_INVAL,
				  "leaf certificate is a CA (basicConstraints CA:TRUE); an "
				  "X.509-SVID leaf must have CA:FALSE (X.509-SVID §4.1)");
	/* X.509-SVID §4.3: keyUsage present, digitalSignature set, keyCertSign/cRLSign clear. */
	if (!(leaf->ext_present & X509_EXT_KEY_USAGE))
		return errbuf_set(eb, E_INVAL,
				  "leaf certificate has no keyUsage extension (X.509-SVID §4.3)");
	if (!(leaf->key_usage & X509_KU_DIGITAL_SIGNATURE))
		return errbuf_set(eb, E_INVAL,
				  "leaf certificate keyUsage lacks digitalSignature (X.509-SVID "
				  "§4.3)");
	if (leaf->key_usage & (X509_KU_KEY_CERT_SIGN | X509_KU_CRL_SIGN))
		return errbuf_set(eb, E_INVAL,
				  "leaf certificate keyUsage has keyCertSign or cRLSign "
				  "(X.509-SVID §4.3)");
	/* X.509-SVID §4.4: if extKeyUsage is present, both TLS purposes. */
	if ((leaf->ext_present & X509_EXT_EXT_KEY_USAGE) && !(leaf->ext_key_usage & X509_EKU_ANY) &&
	    (leaf->ext_key_usage & (X509_EKU_SERVER_AUTH | X509_EKU_CLIENT_AUTH)) !=
		    (X509_EKU_SERVER_AUTH | X509_EKU_CLIENT_AUTH))
		return errbuf_set(eb, E_INVAL,
				  "leaf certificate extKeyUsage lacks serverAuth or clientAuth "
				  "(X.509-SVID §4.4)");
	/* X.509-SVID §2: exactly one URI SAN; validators MUST reject more than one. */
	if (leaf->n_uri == 0)
		return errbuf_set(eb, E_INVAL,
				  "leaf certificate has no URI SAN; an X.509-SVID has exactly one "
				  "SPIFFE ID (X.509-SVID §2)");
	if (leaf->n_uri > 1)
		return errbuf_set(eb, E_INVAL,
				  "leaf certificate has %zu URI SANs; an X.509-SVID must have "
				  "exactly one (X.509-SVID §2)",
				  leaf->n_uri);
	uri = x509_cert_uri(leaf);
	if ((r = x509_spiffe_parse((const char *)uri.p, uri.n, &id, eb)) < 0) {
		errbuf_prefix(eb, "leaf certificate URI SAN");
		return r;
	}
	/* X.509-SVID §3.1: a leaf's SPIFFE ID has a non-root path. */
	if (id.path.n == 0) {
		x509_escape(uri.p, uri.n, esc, sizeof(esc));
		return errbuf_set(eb, E_INVAL, "leaf SPIFFE ID '%s' has no path (X.509-SVID §3.1)",
				  esc);
	}
	if (trust_domain &&
	    (id.td.n != strlen(trust_domain) || memcmp(id.td.p, trust_domain, id.td.n) != 0)) {
		x509_escape(uri.p, uri.n, esc, sizeof(esc));
		return errbuf_set(eb, E_DENIED,
				  "wrong trust domain: leaf SPIFFE ID '%s' is in trust domain "
				  "'%.*s', expected '%s'",
				  esc, (int)MIN(id.td.n, 255u), (const char *)id.td.p,
				  trust_domain);
	}
	if (id_out)
		*id_out = id;
	return 0;
}

static int check_time(const struct x509_cert *c, const char *who, int64_t now, struct errbuf *eb)
{
	char t1[32], t2[32];

	der_time_format(now, t2, sizeof(t2));
	if (now < c->not_before) {
		der_time_format(c->not_before, t1, sizeof(t1));
		return errbuf_set(eb, E_TIMEOUT,
				  "certificate not yet valid: %s is valid from %s (now %s)", who,
				  t1, t2);
	}
	if (now > c->not_after) {
		der_time_format(c->not_after, t1, sizeof(t1));
		return errbuf_set(eb, E_TIMEOUT, "certificate expired: %s expired at %s (now %s)",
				  who, t1, t2);
	}
	return 0;
}

/* RFC 5280 §6.1.4 (k), (n): an issuer must be a CA allowed to sign certificates. */
static int check_issuer_ca(const struct x509_cert *c, const char *who, struct errbuf *eb)
{
	if (!c->ca)
		return errbuf_set(eb, E_INVAL, "%s is not a CA (basicConstraints CA:TRUE missing)",
				  who);
	if (!(c->ext_present & X509_EXT_KEY_USAGE) || !(c->key_usage & X509_KU_KEY_CERT_SIGN))
		return errbuf_set(eb, E_INVAL,
				  "%s may not sign certificates (keyUsage keyCertSign "
				  "missing)",
				  who);
	if (c->pub.type != X509_KEY_P256)
		return errbuf_set(eb, E_UNSUPP, "%s key is %s; only ECDSA P-256 keys are supported",
				  who, c->pub.desc);
	return 0;
}

static bool names_chain(const struct x509_cert *child, const struct x509_cert *parent)
{
	if (child->issuer.n != parent->subject.n ||
	    memcmp(child->issuer.p, parent->subject.p, child->issuer.n) != 0)
		return false;
	/* RFC 5280 §4.2.1.1: when both are present, AKI keyIdentifier = issuer's SKI. */
	if (child->aki.n && parent->ski.n &&
	    (child->aki.n != parent->ski.n || memcmp(child->aki.p, parent->ski.p, child->aki.n)))
		return false;
	return true;
}

static bool self_issued(const struct x509_cert *c)
{
	return c->issuer.n == c->subject.n && memcmp(c->issuer.p, c->subject.p, c->issuer.n) == 0;
}

struct search {
	const struct x509_cert *found;
	const struct x509_cert *name_match; /* a candidate whose name matched but sig failed */
	int sig_err;
	char sig_msg[ERRBUF_SIZE];
};

static void try_candidates(const struct x509_cert *c, struct x509_cert *const *cands, size_t n,
			   const bool *used, struct search *s)
{
	for (size_t i = 0; i < n && !s->found; i++) {
		struct errbuf eb;
		int r;
		if ((used && used[i]) || !names_chain(c, cands[i]))
			continue;
		r = x509_cert_check_signature(c, &cands[i]->pub, &eb);
		if (r == 0) {
			s->found = cands[i];
			return;
		}
		if (!s->name_match || (s->sig_err == -E_CRYPTO && r != -E_CRYPTO)) {
			s->name_match = cands[i];
			s->sig_err = r;
			snprintf(s->sig_msg, sizeof(s->sig_msg), "%s", eb.msg);
		}
	}
}

/* pathLenConstraint (RFC 5280 §6.1.4 (l)-(m)): path[k] may have at most path_len non-self-issued
 * intermediates below it (excluding the leaf). */
static int check_path_len(const struct x509_cert *const *path, size_t n, struct errbuf *eb)
{
	for (size_t k = 1; k < n; k++) {
		size_t below = 0;
		char who[256];
		if (path[k]->path_len < 0)
			continue;
		for (size_t j = 1; j < k; j++)
			below += !self_issued(path[j]);
		if (below > (size_t)path[k]->path_len) {
			describe(path[k], (int)k, k + 1 == n, who, sizeof(who));
			return errbuf_set(eb, E_INVAL,
					  "%s has pathLenConstraint %d but %zu intermediate CAs "
					  "below it",
					  who, path[k]->path_len, below);
		}
	}
	return 0;
}

int x509_verify_chain(const struct x509_cert *leaf, struct x509_cert *const *inter, size_t n_inter,
		      struct x509_cert *const *roots, size_t n_roots, int64_t now,
		      const char *trust_domain, struct errbuf *eb)
{
	const struct x509_cert *path[X509_MAX_CHAIN];
	bool used[X509_MAX_CHAIN] = {0};
	const struct x509_cert *cur = leaf;
	size_t depth = 0;
	char who[256], iss[160];
	int r;

	if (n_inter > X509_MAX_CHAIN)
		return errbuf_set(eb, E_INVAL, "more than %d intermediate certificates",
				  X509_MAX_CHAIN);
	if ((r = x509_svid_check(leaf, trust_domain, NULL, eb)) < 0)
		return r;
	for (;;) {
		struct search s = {0};
		describe(cur, (int)depth, false, who, sizeof(who));
		if ((r = check_time(cur, who, now, eb)) < 0)
			return r;
		path[depth++] = cur;
		if (depth == X509_MAX_CHAIN)
			return errbuf_set(eb, E_INVAL, "certificate chain longer than %d",
					  X509_MAX_CHAIN);
		try_candidates(cur, roots, n_roots, NULL, &s);
		if (s.found) {
			describe(s.found, (int)depth, true, who, sizeof(who));
			if ((r = check_time(s.found, who, now, eb)) < 0 ||
			    (r = check_issuer_ca(s.found, who, eb)) < 0)
				return r;
			path[depth++] = s.found;
			return check_path_len(path, depth, eb);
		}
		try_candidates(cur, inter, n_inter, used, &s);
		if (!s.found) {
			describe(cur, (int)depth - 1, false, who, sizeof(who));
			snprintf(iss, sizeof(iss), "%s", cur->issuer_text);
			if (s.name_match && s.sig_err == -E_CRYPTO)
				return errbuf_set(eb, E_CRYPTO,
						  "bad signature: %s is not signed by the key of "
						  "'%s'",
						  who, iss);
			if (s.name_match)
				return errbuf_set(eb, s.sig_err, "%s: %s", who, s.sig_msg);
			return errbuf_set(eb, E_CRYPTO,
					  "unknown root: no trusted root or intermediate "
					  "'%s' issued %s",
					  iss, who);
		}
		for (size_t i = 0; i < n_inter; i++)
			if (inter[i] == s.found)
				used[i] = true;
		describe(s.found, (int)depth, false, who, sizeof(who));
		if ((r = check_issuer_ca(s.found, who, eb)) < 0)
			return r;
		cur = s.found;
	}
}
