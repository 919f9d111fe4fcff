/* Certificate issuance: the TBSCertificate builder, X.509-SVID leaves, roots and intermediates. */
#include "pkg/x509/x509_int.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t empty_name[] = {0x30, 0x00};

static void ext_begin(struct der_enc *e, const uint8_t *oid, size_t n, bool critical)
{
	der_begin(e, DER_SEQUENCE);
	der_put_oid_bytes(e, oid, n);
	if (critical)
		der_put_bool(e, true);
	der_begin(e, DER_OCTET_STRING);
}

static void ext_end(struct der_enc *e)
{
	der_end(e);
	der_end(e);
}

static void put_ia5(struct der_enc *e, uint8_t tag, const char *s)
{
	size_t n = strlen(s);

	if (der_string_check(DER_IA5_STRING, (const uint8_t *)s, n) || n == 0) {
		der_put_string(e, DER_IA5_STRING, "\xff", 1); /* records -E_INVAL */
		return;
	}
	der_put_tlv(e, tag, s, n);
}

void x509_tbs_extensions(struct der_enc *e, const struct x509_tbs *t)
{
	uint8_t kid[X509_KEY_ID_LEN];

	if (t->ku) {
		ext_begin(e, OID_EXT_KU, t->ku_critical);
		der_put_named_bits(e, t->ku);
		ext_end(e);
	}
	if (t->eku) {
		ext_begin(e, OID_EXT_EKU, false);
		der_begin(e, DER_SEQUENCE);
		if (t->eku & X509_EKU_SERVER_AUTH)
			der_put_oid_bytes(e, OID_KP_SERVER_AUTH);
		if (t->eku & X509_EKU_CLIENT_AUTH)
			der_put_oid_bytes(e, OID_KP_CLIENT_AUTH);
		der_end(e);
		ext_end(e);
	}
	if (t->bc) {
		ext_begin(e, OID_EXT_BC, t->bc_critical);
		der_begin(e, DER_SEQUENCE);
		if (t->ca) /* cA FALSE is the DEFAULT and therefore absent */
			der_put_bool(e, true);
		if (t->path_len >= 0)
			der_put_int(e, t->path_len);
		der_end(e);
		ext_end(e);
	}
	if (t->ski) {
		x509_pubkey_key_id(t->pub, kid);
		ext_begin(e, OID_EXT_SKI, false);
		der_put_octets(e, kid, sizeof(kid));
		ext_end(e);
	}
	if (t->aki.n) {
		ext_begin(e, OID_EXT_AKI, false);
		der_begin(e, DER_SEQUENCE);
		der_put_tlv(e, DER_CTX(0), t->aki.p, t->aki.n);
		der_end(e);
		ext_end(e);
	}
	if (t->n_uris + t->n_dns + t->n_ips) {
		ext_begin(e, OID_EXT_SAN, t->san_critical);
		der_begin(e, DER_SEQUENCE);
		for (size_t i = 0; i < t->n_uris; i++)
			put_ia5(e, DER_CTX(6), t->uris[i]);
		for (size_t i = 0; i < t->n_dns; i++)
			put_ia5(e, DER_CTX(2), t->dns[i]);
		for (size_t i = 0; i < t->n_ips; i++)
			der_put_tlv(e, DER_CTX(7), t->ips[i].a, t->ips[i].len);
		der_end(e);
		ext_end(e);
	}
	for (size_t i = 0; i < t->n_extra; i++) {
		ext_begin(e, t->extra[i].oid.p, t->extra[i].oid.n, t->extra[i].critical);
		der_put_raw(e, t->extra[i].value.p, t->extra[i].value.n);
		ext_end(e);
	}
}

static bool has_extensions(const struct x509_tbs *t)
{
	return t->ku || t->eku || t->bc || t->ski || t->aki.n || t->n_uris || t->n_dns ||
	       t->n_ips || t->n_extra;
}

static void put_validity(struct der_enc *e, const struct x509_tbs *t)
{
	der_begin(e, DER_SEQUENCE);
	if (t->generalized_time) {
		der_put_generalized_time(e, t->not_before);
		der_put_generalized_time(e, t->not_after);
	} else {
		der_put_time(e, t->not_before);
		der_put_time(e, t->not_after);
	}
	der_end(e);
}

int x509_cert_build(const struct x509_tbs *t, const struct x509_key *signer, struct x509_cert **out,
		    struct errbuf *eb)
{
	struct der_enc tbs, cert;
	struct slice tb, cb;
	uint8_t sig[X509_SIG_MAX];
	size_t siglen;
	int r;

	*out = NULL;
	der_enc_init(&tbs, 1024);
	der_begin(&tbs, DER_SEQUENCE);
	der_begin(&tbs, DER_CTX_CONS(0));
	der_put_int(&tbs, 2); /* v3 */
	der_end(&tbs);
	der_put_uint(&tbs, DER_INTEGER, t->serial, t->serial_len);
	der_begin(&tbs, DER_SEQUENCE);
	der_put_oid_bytes(&tbs, OID_ECDSA_SHA256); /* no parameters (RFC 5758 §3.2) */
	der_end(&tbs);
	der_put_raw(&tbs, t->issuer.p, t->issuer.n);
	put_validity(&tbs, t);
	der_put_raw(&tbs, t->subject.p, t->subject.n);
	x509_spki_encode(t->pub, &tbs);
	if (has_extensions(t)) {
		der_begin(&tbs, DER_CTX_CONS(3));
		der_begin(&tbs, DER_SEQUENCE);
		x509_tbs_extensions(&tbs, t);
		der_end(&tbs);
		der_end(&tbs);
	}
	der_end(&tbs);
	if ((r = der_enc_result(&tbs, &tb)) < 0) {
		der_enc_fini(&tbs);
		return errbuf_set(eb, r, "certificate fields cannot be encoded (%s)", err_str(r));
	}
	if ((r = x509_key_sign(signer, tb.p, tb.n, sig, &siglen)) < 0) {
		der_enc_fini(&tbs);
		return errbuf_set(eb, r, "signing the certificate failed");
	}
	der_enc_init(&cert, tb.n + 128);
	der_begin(&cert, DER_SEQUENCE);
	der_put_raw(&cert, tb.p, tb.n);
	der_begin(&cert, DER_SEQUENCE);
	der_put_oid_bytes(&cert, OID_ECDSA_SHA256);
	der_end(&cert);
	der_put_bits(&cert, sig, siglen, 0);
	der_end(&cert);
	der_enc_fini(&tbs);
	if ((r = der_enc_result(&cert, &cb)) == 0 &&
	    (r = x509_cert_decode(cb.p, cb.n, out, eb)) < 0)
		errbuf_prefix(eb, "issued certificate does not decode");
	der_enc_fini(&cert);
	return r;
}

/* ---- policy ---------------------------------------------------------------------------------- */

static int check_issuer(const struct x509_cert *issuer, const struct x509_key *key, int64_t now,
			struct errbuf *eb)
{
	char t[32];

	if (!x509_pubkey_equal(&issuer->pub, x509_key_public(key)))
		return errbuf_set(eb, E_INVAL, "issuer key does not match the issuer certificate");
	if (!issuer->ca || !(issuer->key_usage & X509_KU_KEY_CERT_SIGN))
		return errbuf_set(eb, E_INVAL,
				  "issuer certificate '%s' is not a CA (needs basicConstraints "
				  "CA:TRUE and keyUsage keyCertSign)",
				  issuer->subject_text);
	if (now < issuer->not_before) {
		der_time_format(issuer->not_before, t, sizeof(t));
		return errbuf_set(eb, E_STATE, "issuer certificate is not valid before %s", t);
	}
	if (now > issuer->not_after) {
		der_time_format(issuer->not_after, t, sizeof(t));
		return errbuf_set(eb, E_STATE, "issuer certificate expired at %s", t);
	}
	return 0;
}

/* now and now + validity must be encodable times (years 1950..9999) and not overflow. */
static int check_times(int64_t now, int64_t validity, struct errbuf *eb)
{
	static const int64_t min = -631152000LL;   /* 1950-01-01 */
	static const int64_t max = 253402300799LL; /* 9999-12-31T23:59:59 */

	if (validity > X509_MAX_VALIDITY)
		return errbuf_set(eb, E_INVAL, "validity of %lld s is above the 100-year limit",
				  (long long)validity);
	if (now < min + X509_BACKDATE_SECS || now > max - MAX(validity, 0))
		return errbuf_set(eb, E_INVAL, "time %lld is out of range", (long long)now);
	return 0;
}

static void make_serial(uint8_t s[X509_SERIAL_LEN], const uint8_t *given)
{
	uint8_t any = 0;

	if (given) {
		memcpy(s, given, X509_SERIAL_LEN);
		return;
	}
	/* 128 random bits; an all-zero draw (not a positive INTEGER) is drawn again. */
	while (!any) {
		rand_bytes(s, X509_SERIAL_LEN);
		for (int i = 0; i < X509_SERIAL_LEN; i++)
			any |= s[i];
	}
}

static bool serial_ok(const uint8_t *s)
{
	uint8_t any = 0;

	for (int i = 0; s && i < X509_SERIAL_LEN; i++)
		any |= s[i];
	return !s || any;
}

/* RFC 5280 §4.2.1.1: keyIdentifier of the issuer = its SKI, or its key id if it has none. */
static struct slice issuer_key_id(const struct x509_cert *issuer, uint8_t buf[X509_KEY_ID_LEN])
{
	if (issuer->ski.n)
		return issuer->ski;
	x509_pubkey_key_id(&issuer->pub, buf);
	return (struct slice){buf, X509_KEY_ID_LEN};
}

/* Letters, digits, hyphens; labels of 1..63 not starting or ending with '-'; an optional leading
 * "*." wildcard label; at most 253 characters. */
static bool dns_name_ok(const char *s)
{
	size_t n = strlen(s), lab = 0;

	if (n >= 2 && s[0] == '*' && s[1] == '.') {
		s += 2;
		n -= 2;
	}
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i <= n; i++) {
		char c = s[i];
		if (c == '.' || c == '\0') {
			if (lab == 0 || lab > 63 || s[i - 1] == '-')
				return false;
			lab = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      (c == '-' && lab > 0)))
			return false;
		lab++;
	}
	return true;
}

static int check_leaf_req(const struct x509_leaf_req *req, struct errbuf *eb)
{
	struct x509_spiffe id;
	int r;

	if (!req->pub || !req->spiffe_id)
		return errbuf_set(eb, E_INVAL, "leaf request needs a public key and a SPIFFE ID");
	if ((r = x509_pubkey_require_p256(req->pub, "subject key", eb)) < 0)
		return r;
	if ((r = x509_spiffe_parse(req->spiffe_id, strlen(req->spiffe_id), &id, eb)) < 0)
		return r;
	/* X.509-SVID §3.1: a leaf's SPIFFE ID has a non-root path. */
	if (id.path.n == 0)
		return errbuf_set(eb, E_INVAL, "SPIFFE ID of a leaf must have a path");
	for (size_t i = 0; i < req->n_dns; i++)
		if (!dns_name_ok(req->dns[i]))
			return errbuf_set(eb, E_INVAL, "invalid DNS name '%.100s'", req->dns[i]);
	for (size_t i = 0; i < req->n_ips; i++)
		if (req->ips[i].len != 4 && req->ips[i].len != 16)
			return errbuf_set(eb, E_INVAL, "IP address SAN must be 4 or 16 octets");
	if (!serial_ok(req->serial))
		return errbuf_set(eb, E_INVAL, "serial number must not be zero");
	return 0;
}

int x509_issue_leaf(const struct x509_cert *issuer, const struct x509_key *issuer_key,
		    const struct x509_leaf_req *req, struct x509_cert **out, unsigned *clamped,
		    struct errbuf *eb)
{
	uint8_t serial[X509_SERIAL_LEN], kid[X509_KEY_ID_LEN];
	const char *uris[1];
	struct x509_tbs t = {0};
	int64_t ttl;
	unsigned cl = 0;
	int r;

	*out = NULL;
	if (clamped)
		*clamped = 0;
	if ((r = check_times(req->now, X509_LEAF_MAX_TTL, eb)) < 0 ||
	    (r = check_issuer(issuer, issuer_key, req->now, eb)) < 0 ||
	    (r = check_leaf_req(req, eb)) < 0)
		return r;
	ttl = req->ttl > 0 ? req->ttl : X509_LEAF_DEFAULT_TTL;
	if (ttl > X509_LEAF_MAX_TTL) {
		ttl = X509_LEAF_MAX_TTL;
		cl |= X509_CLAMP_MAX_TTL;
	}
	make_serial(serial, req->serial);
	uris[0] = req->spiffe_id;
	t.serial = serial;
	t.serial_len = sizeof(serial);
	t.issuer = issuer->subject;
	/* X.509-SVID §2: the subject may be empty; then the SAN MUST be critical (RFC 5280). */
	t.subject = (struct slice){empty_name, sizeof(empty_name)};
	t.not_before = req->now - X509_BACKDATE_SECS;
	t.not_after = req->now + ttl;
	if (t.not_after > issuer->not_after) {
		t.not_after = issuer->not_after;
		cl |= X509_CLAMP_ISSUER;
	}
	t.pub = req->pub;
	/* X.509-SVID §4.1: leaf CA:FALSE; §4.3: keyUsage critical with digitalSignature. */
	t.bc = t.bc_critical = true;
	t.path_len = -1;
	t.ku = X509_KU_DIGITAL_SIGNATURE | X509_KU_KEY_ENCIPHERMENT;
	t.ku_critical = true;
	t.eku = X509_EKU_SERVER_AUTH | X509_EKU_CLIENT_AUTH;
	t.uris = uris;
	t.n_uris = 1;
	t.dns = req->dns;
	t.n_dns = req->n_dns;
	t.ips = req->ips;
	t.n_ips = req->n_ips;
	t.san_critical = true;
	t.ski = true;
	t.aki = issuer_key_id(issuer, kid);
	if ((r = x509_cert_build(&t, issuer_key, out, eb)) < 0)
		return r;
	if (clamped)
		*clamped = cl;
	return 0;
}

static void ca_profile(struct x509_tbs *t, int path_len)
{
	/* RFC 5280 §4.2.1.9: CAs MUST mark basicConstraints critical; X.509-SVID §5.1 signing
	 * certificates: keyCertSign set. */
	t->bc = t->ca = t->bc_critical = true;
	t->path_len = path_len;
	t->ku = X509_KU_KEY_CERT_SIGN | X509_KU_CRL_SIGN;
	t->ku_critical = true;
	t->ski = true;
}

int x509_self_signed_root(const struct x509_key *key, const char *trust_domain, int64_t now,
			  int64_t validity, struct x509_cert **out, struct errbuf *eb)
{
	uint8_t serial[X509_SERIAL_LEN];
	struct x509_tbs t = {0};
	struct der_enc name;
	int r;

	*out = NULL;
	if ((r = x509_trust_domain_check(trust_domain, strlen(trust_domain), eb)) < 0 ||
	    (r = check_times(now, validity > 0 ? validity : X509_ROOT_DEFAULT_VALIDITY, eb)) < 0)
		return r;
	der_enc_init(&name, 0);
	x509_name_encode(&name, trust_domain, NULL);
	if ((r = der_enc_result(&name, &t.subject)) < 0) {
		der_enc_fini(&name);
		return errbuf_set(eb, r, "cannot encode the root subject");
	}
	make_serial(serial, NULL);
	t.serial = serial;
	t.serial_len = sizeof(serial);
	t.issuer = t.subject;
	t.not_before = now - X509_BACKDATE_SECS;
	t.not_after = now + (validity > 0 ? validity : X509_ROOT_DEFAULT_VALIDITY);
	t.pub = x509_key_public(key);
	ca_profile(&t, -1);
	r = x509_cert_build(&t, key, out, eb);
	der_enc_fini(&name);
	return r;
}

int x509_issue_intermediate(const struct x509_cert *issuer, const struct x509_key *issuer_key,
			    const struct x509_ca_req *req, struct x509_cert **out,
			    unsigned *clamped, struct errbuf *eb)
{
	uint8_t serial[X509_SERIAL_LEN], kid[X509_KEY_ID_LEN];
	struct x509_tbs t = {0};
	struct der_enc name;
	unsigned cl = 0;
	int r;

	*out = NULL;
	if (clamped)
		*clamped = 0;
	if ((r = check_times(req->now,
			     req->validity > 0 ? req->validity : X509_INTERMEDIATE_DEFAULT_VALIDITY,
			     eb)) < 0 ||
	    (r = check_issuer(issuer, issuer_key, req->now, eb)) < 0)
		return r;
	if (!req->pub || !req->org || !req->org[0])
		return errbuf_set(eb, E_INVAL, "intermediate request needs a public key and an O");
	if ((r = x509_pubkey_require_p256(req->pub, "intermediate key", eb)) < 0)
		return r;
	if (!serial_ok(req->serial))
		return errbuf_set(eb, E_INVAL, "serial number must not be zero");
	/* pathLenConstraint of the issuer leaves room for this CA (RFC 5280 §4.2.1.9). */
	if (issuer->path_len == 0)
		return errbuf_set(eb, E_INVAL,
				  "issuer's pathLenConstraint 0 forbids intermediate CAs");
	der_enc_init(&name, 0);
	x509_name_encode(&name, req->org, req->cn);
	if ((r = der_enc_result(&name, &t.subject)) < 0) {
		der_enc_fini(&name);
		return errbuf_set(eb, E_INVAL, "cannot encode the subject (invalid UTF-8?)");
	}
	make_serial(serial, req->serial);
	t.serial = serial;
	t.serial_len = sizeof(serial);
	t.issuer = issuer->subject;
	t.not_before = req->now - X509_BACKDATE_SECS;
	t.not_after =
		req->now + (req->validity > 0 ? req->validity : X509_INTERMEDIATE_DEFAULT_VALIDITY);
	if (t.not_after > issuer->not_after) {
		t.not_after = issuer->not_after;
		cl |= X509_CLAMP_ISSUER;
	}
	t.pub = req->pub;
	ca_profile(&t, req->path_len);
	t.aki = issuer_key_id(issuer, kid);
	r = x509_cert_build(&t, issuer_key, out, eb);
	der_enc_fini(&name);
	if (r == 0 && clamped)
		*clamped = cl;
	return r;
}
