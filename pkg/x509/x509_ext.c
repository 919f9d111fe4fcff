/* Certificate and CSR extensions (RFC 5280 §4.2): strict decoding of the ones the mesh relies on.
 */
#include "pkg/x509/x509_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXTENSIONS 32

struct ext_info {
	const uint8_t *oid;
	size_t n;
	const char *name;
	uint32_t bit;
};

static const struct ext_info known[] = {
	{OID_EXT_BC, "basicConstraints", X509_EXT_BASIC_CONSTRAINTS},
	{OID_EXT_KU, "keyUsage", X509_EXT_KEY_USAGE},
	{OID_EXT_EKU, "extKeyUsage", X509_EXT_EXT_KEY_USAGE},
	{OID_EXT_SAN, "subjectAltName", X509_EXT_SAN},
	{OID_EXT_SKI, "subjectKeyIdentifier", X509_EXT_SKI},
	{OID_EXT_AKI, "authorityKeyIdentifier", X509_EXT_AKI},
};

static const struct ext_info *find_known(struct slice oid)
{
	for (size_t i = 0; i < ARRAY_LEN(known); i++)
		if (oid_is(oid, known[i].oid, known[i].n))
			return &known[i];
	return NULL;
}

struct ext {
	struct der_tlv tlv; /* the Extension SEQUENCE */
	struct slice oid;
	bool critical;
	struct der_tlv value; /* extnValue OCTET STRING */
	char name[DER_OID_TEXT_MAX];
	const struct ext_info *info;
};

/* Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING } */
static int read_extension(struct der_dec *seq, struct ext *x, struct slice *seen, size_t *n_seen)
{
	struct der_dec s;
	int r;

	memset(x, 0, sizeof(*x));
	if ((r = der_enter(seq, DER_SEQUENCE, "Extension", &s, &x->tlv)) < 0 ||
	    (r = der_read_oid(&s, "Extension.extnID", &x->oid)) < 0)
		return r;
	x->info = find_known(x->oid);
	if (x->info)
		snprintf(x->name, sizeof(x->name), "%s", x->info->name);
	else
		der_oid_format(x->oid, x->name, sizeof(x->name));
	if (der_peek(&s) == DER_BOOLEAN) {
		if ((r = der_read_bool(&s, x->name, &x->critical)) < 0)
			return r;
		/* X.690 §11.5: a DEFAULT value is never encoded. */
		if (!x->critical)
			return der_dec_fail(seq, &x->tlv, x->name,
					    "critical FALSE must be omitted (DER DEFAULT)");
	}
	if ((r = der_read(&s, DER_OCTET_STRING, x->name, &x->value)) < 0 ||
	    (r = der_dec_done(&s, x->name)) < 0)
		return r;
	/* RFC 5280 §4.2: at most one instance of a particular extension. */
	for (size_t i = 0; i < *n_seen; i++)
		if (seen[i].n == x->oid.n && !memcmp(seen[i].p, x->oid.p, x->oid.n))
			return der_dec_fail(seq, &x->tlv, x->name,
					    "duplicate extension (RFC 5280 §4.2)");
	if (*n_seen == MAX_EXTENSIONS)
		return der_dec_fail(seq, &x->tlv, "extensions", "more than %d extensions",
				    MAX_EXTENSIONS);
	seen[(*n_seen)++] = x->oid;
	return 0;
}

/* BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL } */
static int parse_bc(struct der_dec *v, struct x509_cert *c)
{
	struct der_dec s;
	struct der_tlv t;
	int64_t pl;
	int r;

	if ((r = der_enter(v, DER_SEQUENCE, "basicConstraints", &s, &t)) < 0)
		return r;
	if (der_peek(&s) == DER_BOOLEAN) {
		if ((r = der_read_bool(&s, "basicConstraints.cA", &c->ca)) < 0)
			return r;
		if (!c->ca)
			return der_dec_fail(v, &t, "basicConstraints",
					    "cA FALSE must be omitted (DER DEFAULT)");
	}
	if (der_peek(&s) == DER_INTEGER) {
		if ((r = der_read_int(&s, "basicConstraints.pathLenConstraint", 0, INT_MAX, &pl)) <
		    0)
			return r;
		/* RFC 5280 §4.2.1.9: pathLenConstraint only when cA is TRUE. */
		if (!c->ca)
			return der_dec_fail(
				v, &t, "basicConstraints",
				"pathLenConstraint without cA TRUE (RFC 5280 §4.2.1.9)");
		c->path_len = (int)pl;
	}
	return der_dec_done(&s, "basicConstraints");
}

static int parse_ku(struct der_dec *v, struct x509_cert *c)
{
	size_t off = der_dec_offset(v);
	int r = der_read_named_bits(v, "keyUsage", &c->key_usage);

	if (r < 0)
		return r;
	/* RFC 5280 §4.2.1.3: at least one bit MUST be set. */
	if (c->key_usage == 0)
		return der_dec_fail(v, &(struct der_tlv){.off = off}, "keyUsage",
				    "no bits set (RFC 5280 §4.2.1.3)");
	return 0;
}

static int parse_eku(struct der_dec *v, struct x509_cert *c)
{
	struct der_dec s;
	struct der_tlv t;
	struct slice oid;
	int r;

	if ((r = der_enter(v, DER_SEQUENCE, "extKeyUsage", &s, &t)) < 0)
		return r;
	if (!der_dec_more(&s))
		return der_dec_fail(v, &t, "extKeyUsage", "empty SEQUENCE (SIZE (1..MAX))");
	while (der_dec_more(&s)) {
		if ((r = der_read_oid(&s, "extKeyUsage.KeyPurposeId", &oid)) < 0)
			return r;
		if (oid_is(oid, OID_KP_SERVER_AUTH))
			c->ext_key_usage |= X509_EKU_SERVER_AUTH;
		else if (oid_is(oid, OID_KP_CLIENT_AUTH))
			c->ext_key_usage |= X509_EKU_CLIENT_AUTH;
		else if (oid_is(oid, OID_KP_ANY))
			c->ext_key_usage |= X509_EKU_ANY;
		else
			c->ext_key_usage |= X509_EKU_OTHER;
	}
	return 0;
}

static int parse_ski(struct der_dec *v, struct x509_cert *c)
{
	size_t off = der_dec_offset(v);
	int r = der_read_octets(v, DER_OCTET_STRING, "subjectKeyIdentifier", &c->ski);

	if (r < 0)
		return r;
	if (c->ski.n == 0)
		return der_dec_fail(v, &(struct der_tlv){.off = off}, "subjectKeyIdentifier",
				    "empty key identifier");
	return 0;
}

/* AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0], authorityCertIssuer [1] GeneralNames,
 * authorityCertSerialNumber [2] INTEGER }, all optional, [1] and [2] together. */
static int parse_aki(struct der_dec *v, struct x509_cert *c)
{
	struct der_dec s;
	struct der_tlv t;
	struct x509_gn *gn = NULL;
	struct slice serial;
	size_t n, nu;
	int r, has_issuer, has_serial = 0;

	if ((r = der_enter(v, DER_SEQUENCE, "authorityKeyIdentifier", &s, &t)) < 0)
		return r;
	if ((r = der_read_opt(&s, DER_CTX(0), "authorityKeyIdentifier.keyIdentifier", &t)) < 0)
		return r;
	if (r == 1) {
		if (t.val.n == 0)
			return der_dec_fail(&s, &t, "authorityKeyIdentifier",
					    "empty key identifier");
		c->aki = t.val;
	}
	has_issuer = der_peek(&s) == DER_CTX_CONS(1);
	if (has_issuer) {
		if ((r = x509_general_names_read(&s, DER_CTX_CONS(1),
						 "authorityKeyIdentifier.authorityCertIssuer", &gn,
						 &n, &nu)) < 0)
			return r;
		free(gn);
	}
	if (der_peek(&s) == DER_CTX(2)) {
		if ((r = der_read_uint(&s, DER_CTX(2),
				       "authorityKeyIdentifier.authorityCertSerialNumber",
				       X509_MAX_SERIAL + 1, &serial)) < 0)
			return r;
		has_serial = 1;
	}
	if (has_issuer != has_serial)
		return der_dec_fail(v, NULL, "authorityKeyIdentifier",
				    "authorityCertIssuer and authorityCertSerialNumber must be "
				    "present together (RFC 5280 §4.2.1.1)");
	return der_dec_done(&s, "authorityKeyIdentifier");
}

static int parse_known(struct der_dec *v, const struct ext *x, struct x509_cert *c)
{
	int r;

	switch (x->info->bit) {
	case X509_EXT_BASIC_CONSTRAINTS: r = parse_bc(v, c); break;
	case X509_EXT_KEY_USAGE: r = parse_ku(v, c); break;
	case X509_EXT_EXT_KEY_USAGE: r = parse_eku(v, c); break;
	case X509_EXT_SAN:
		r = x509_general_names_read(v, DER_SEQUENCE, "subjectAltName", &c->san, &c->n_san,
					    &c->n_uri);
		break;
	case X509_EXT_SKI: r = parse_ski(v, c); break;
	default: r = parse_aki(v, c); break;
	}
	if (r < 0)
		return r;
	return der_dec_done(v, x->name);
}

int x509_extensions_read(struct der_dec *d, struct x509_cert *c)
{
	struct der_dec wrap, seq, v;
	struct der_tlv t;
	struct slice seen[MAX_EXTENSIONS];
	size_t n_seen = 0;
	int r;

	if ((r = der_enter(d, DER_CTX_CONS(3), "extensions", &wrap, NULL)) < 0 ||
	    (r = der_enter(&wrap, DER_SEQUENCE, "extensions", &seq, &t)) < 0 ||
	    (r = der_dec_done(&wrap, "extensions")) < 0)
		return r;
	if (!der_dec_more(&seq))
		return der_dec_fail(&wrap, &t, "extensions", "empty SEQUENCE (SIZE (1..MAX))");
	while (der_dec_more(&seq)) {
		struct ext x;
		if ((r = read_extension(&seq, &x, seen, &n_seen)) < 0)
			return r;
		if (!x.info) {
			/* RFC 5280 §4.2: a critical extension that is not recognized MUST cause
			 * the certificate to be rejected. */
			if (x.critical)
				return errbuf_set(seq.eb, E_UNSUPP,
						  "%s: unsupported critical extension at offset "
						  "%zu (RFC 5280 §4.2)",
						  x.name, x.tlv.off);
			continue;
		}
		/* RFC 5280 §4.2.1.1 and §4.2.1.2: AKI and SKI MUST be non-critical. */
		if (x.critical && (x.info->bit & (X509_EXT_SKI | X509_EXT_AKI)))
			return der_dec_fail(&seq, &x.tlv, x.name,
					    "must be non-critical (RFC 5280 §4.2.1.1-2)");
		if ((r = der_open(&seq, &x.value, x.name, &v)) < 0 ||
		    (r = parse_known(&v, &x, c)) < 0)
			return r;
		c->ext_present |= x.info->bit;
		if (x.critical)
			c->ext_critical |= x.info->bit;
	}
	return 0;
}

int x509_csr_extensions_read(struct der_dec *d, struct x509_csr *csr)
{
	struct der_dec seq, v;
	struct der_tlv t;
	struct slice seen[MAX_EXTENSIONS];
	size_t n_seen = 0;
	int r;

	if ((r = der_enter(d, DER_SEQUENCE, "extensionRequest", &seq, &t)) < 0)
		return r;
	if (!der_dec_more(&seq))
		return der_dec_fail(d, &t, "extensionRequest", "empty SEQUENCE (SIZE (1..MAX))");
	while (der_dec_more(&seq)) {
		struct ext x;
		if ((r = read_extension(&seq, &x, seen, &n_seen)) < 0)
			return r;
		/* Only the requested names matter; the CA sets every other extension itself. */
		if (!x.info || x.info->bit != X509_EXT_SAN)
			continue;
		if ((r = der_open(&seq, &x.value, x.name, &v)) < 0 ||
		    (r = x509_general_names_read(&v, DER_SEQUENCE, "subjectAltName", &csr->san,
						 &csr->n_san, &csr->n_uri)) < 0 ||
		    (r = der_dec_done(&v, x.name)) < 0)
			return r;
	}
	return 0;
}
