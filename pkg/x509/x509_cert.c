/* Strict X.509 v3 certificate decoding (RFC 5280 §4.1), PEM and chain files, signature checks. */
#include "pkg/x509/x509_int.h"

#include <stdlib.h>
#include <string.h>

#define X509_CERT_MAX (1u << 20)

void x509_cert_free(struct x509_cert *c)
{
	if (!c)
		return;
	free(c->der);
	free(c->issuer_text);
	free(c->subject_text);
	free(c->san);
	free(c);
}

/* RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 on. */
static int read_validity_time(struct der_dec *d, const char *what, int64_t *t)
{
	size_t off = der_dec_offset(d);
	uint8_t type;
	int r = der_read_time(d, what, t, &type);
	int64_t y2050 = der_days_from_civil(2050, 1, 1) * 86400;

	if (r < 0)
		return r;
	if (type == DER_GENERALIZED_TIME && *t < y2050)
		return der_dec_fail(d, &(struct der_tlv){.off = off}, what,
				    "GeneralizedTime before 2050 (RFC 5280 §4.1.2.5 requires "
				    "UTCTime)");
	return 0;
}

static int read_validity(struct der_dec *d, struct x509_cert *c)
{
	struct der_dec v;
	struct der_tlv t;
	int r;

	if ((r = der_enter(d, DER_SEQUENCE, "validity", &v, &t)) < 0 ||
	    (r = read_validity_time(&v, "validity.notBefore", &c->not_before)) < 0 ||
	    (r = read_validity_time(&v, "validity.notAfter", &c->not_after)) < 0 ||
	    (r = der_dec_done(&v, "validity")) < 0)
		return r;
	if (c->not_after < c->not_before)
		return der_dec_fail(d, &t, "validity", "notAfter is before notBefore");
	return 0;
}

static int read_version(struct der_dec *d)
{
	struct der_dec v;
	int64_t ver;
	int r;

	/* version [0] EXPLICIT Version DEFAULT v1: absent means v1. */
	if (der_peek(d) != DER_CTX_CONS(0))
		return der_dec_fail(d, NULL, "version",
				    "only X.509 v3 certificates are supported (found v1)");
	if ((r = der_enter(d, DER_CTX_CONS(0), "version", &v, NULL)) < 0 ||
	    (r = der_read_int(&v, "version", 0, 2, &ver)) < 0 ||
	    (r = der_dec_done(&v, "version")) < 0)
		return r;
	if (ver != 2)
		return der_dec_fail(d, NULL, "version",
				    "only X.509 v3 certificates are supported (found v%d)",
				    (int)ver + 1);
	return 0;
}

/* [n] IMPLICIT UniqueIdentifier (BIT STRING), optional. */
static int read_unique_id(struct der_dec *d, uint8_t tag, const char *what)
{
	struct slice bits;
	unsigned unused;

	if (der_peek(d) != tag)
		return 0;
	return der_read_bits(d, tag, what, &bits, &unused);
}

static int read_tbs(struct der_dec *tbs, struct x509_cert *c, struct slice outer_alg)
{
	struct slice inner_alg;
	bool ecdsa;
	char name[48];
	int r;

	if ((r = read_version(tbs)) < 0)
		return r;
	/* RFC 5280 §4.1.2.2: positive, at most 20 octets. */
	if ((r = der_read_uint(tbs, DER_INTEGER, "serialNumber", X509_MAX_SERIAL, &c->serial)) < 0)
		return r;
	if (c->serial.n == 0)
		return der_dec_fail(tbs, NULL, "serialNumber",
				    "serial number must be positive (RFC 5280 §4.1.2.2)");
	if ((r = x509_sigalg_read(tbs, "signature", &inner_alg, &ecdsa, name, sizeof(name))) < 0)
		return r;
	/* RFC 5280 §4.1.2.3: MUST be the same as signatureAlgorithm. */
	if (inner_alg.n != outer_alg.n || memcmp(inner_alg.p, outer_alg.p, inner_alg.n) != 0)
		return der_dec_fail(
			tbs, NULL, "signature",
			"differs from the outer signatureAlgorithm (RFC 5280 §4.1.2.3)");
	if ((r = x509_name_read(tbs, "issuer", &c->issuer, &c->issuer_text)) < 0)
		return r;
	/* RFC 5280 §4.1.2.4: the issuer field MUST contain a non-empty name. */
	if (c->issuer.n <= 2)
		return der_dec_fail(tbs, NULL, "issuer", "empty issuer name (RFC 5280 §4.1.2.4)");
	if ((r = read_validity(tbs, c)) < 0 ||
	    (r = x509_name_read(tbs, "subject", &c->subject, &c->subject_text)) < 0 ||
	    (r = x509_spki_read(tbs, "subjectPublicKeyInfo", &c->pub, &c->spki)) < 0)
		return r;
	/* issuerUniqueID [1] / subjectUniqueID [2]: allowed in v3, not used. */
	if ((r = read_unique_id(tbs, DER_CTX(1), "issuerUniqueID")) < 0 ||
	    (r = read_unique_id(tbs, DER_CTX(2), "subjectUniqueID")) < 0)
		return r;
	if (der_peek(tbs) == DER_CTX_CONS(3) && (r = x509_extensions_read(tbs, c)) < 0)
		return r;
	if ((r = der_dec_done(tbs, "tbsCertificate")) < 0)
		return r;
	/* RFC 5280 §4.1.2.6 and §4.2.1.6: an empty subject needs a critical subjectAltName. */
	if (c->subject.n <= 2 &&
	    (!(c->ext_present & X509_EXT_SAN) || !(c->ext_critical & X509_EXT_SAN)))
		return errbuf_set(tbs->eb, E_PARSE,
				  "subject is empty but subjectAltName is %s (RFC 5280 §4.2.1.6)",
				  (c->ext_present & X509_EXT_SAN) ? "not critical" : "missing");
	return 0;
}

int x509_cert_decode(const uint8_t *der, size_t n, struct x509_cert **out, struct errbuf *eb)
{
	struct x509_cert *c;
	struct der_dec d, cert, tbs;
	struct der_tlv tbs_t, sig_t;
	struct slice alg;
	int r;

	*out = NULL;
	if (n > X509_CERT_MAX)
		return errbuf_set(eb, E_LIMIT, "certificate larger than %u bytes", X509_CERT_MAX);
	c = xcalloc(1, sizeof(*c));
	c->der = xmalloc(n ? n : 1);
	if (n)
		memcpy(c->der, der, n);
	c->len = n;
	c->path_len = -1;
	der_dec_init(&d, c->der, n, eb);
	if ((r = der_enter(&d, DER_SEQUENCE, "certificate", &cert, NULL)) < 0 ||
	    (r = der_dec_done(&d, "certificate")) < 0 ||
	    (r = der_enter(&cert, DER_SEQUENCE, "tbsCertificate", &tbs, &tbs_t)) < 0 ||
	    (r = x509_sigalg_read(&cert, "signatureAlgorithm", &alg, &c->sig_ecdsa_sha256,
				  c->sig_alg_name, sizeof(c->sig_alg_name))) < 0 ||
	    (r = der_read(&cert, DER_BIT_STRING, "signatureValue", &sig_t)) < 0 ||
	    (r = der_dec_done(&cert, "certificate")) < 0)
		goto fail;
	c->tbs = tbs_t.raw;
	c->sig_alg = alg;
	if (strncmp(c->sig_alg_name, "ecdsa-", 6) == 0) {
		/* ECDSA-Sig-Value must itself be DER: no second encoding of one signature. */
		if ((r = x509_ecdsa_sig_check(&cert, &sig_t, "signatureValue")) < 0)
			goto fail;
	} else {
		struct der_dec s;
		struct slice bits;
		unsigned unused;
		der_dec_init(&s, sig_t.raw.p, sig_t.raw.n, eb);
		s.base = sig_t.off;
		if ((r = der_read_bits(&s, DER_BIT_STRING, "signatureValue", &bits, &unused)) < 0)
			goto fail;
	}
	c->sig.p = sig_t.val.p + 1;
	c->sig.n = sig_t.val.n - 1;
	if ((r = read_tbs(&tbs, c, alg)) < 0)
		goto fail;
	/* Values this decoder treats as opaque (ANY attribute values, unknown extensions in
	 * constructed form) must still be DER. */
	if ((r = der_check(c->der, c->len, eb)) < 0) {
		errbuf_prefix(eb, "certificate");
		goto fail;
	}
	*out = c;
	return 0;
fail:
	x509_cert_free(c);
	return r;
}

int x509_cert_parse_pem(const char *text, size_t n, struct x509_cert **out, struct errbuf *eb)
{
	struct x509_pem_list l = {0};
	int r;

	*out = NULL;
	if ((r = x509_pem_parse(text, n, &l, eb)) < 0)
		return r;
	if (l.n != 1)
		r = errbuf_set(eb, E_INVAL, "expected one CERTIFICATE PEM block, found %zu blocks",
			       l.n);
	else if (strcmp(l.v[0].label, "CERTIFICATE") != 0)
		r = errbuf_set(eb, E_INVAL, "expected a CERTIFICATE PEM block, found '%s'",
			       l.v[0].label);
	if (r == 0 && (r = x509_cert_decode(l.v[0].der, l.v[0].len, out, eb)) < 0)
		errbuf_prefix(eb, "certificate at line %u", l.v[0].line);
	x509_pem_list_fini(&l);
	return r;
}

int x509_cert_format_pem(const struct x509_cert *c, struct buf *out)
{
	return x509_pem_format(out, "CERTIFICATE", c->der, c->len);
}

int x509_cert_check_signature(const struct x509_cert *c, const struct x509_pubkey *issuer,
			      struct errbuf *eb)
{
	if (!c->sig_ecdsa_sha256)
		return errbuf_set(
			eb, E_UNSUPP,
			"signature algorithm %s is not supported (need ecdsa-with-SHA256)",
			c->sig_alg_name);
	if (issuer->type != X509_KEY_P256)
		return errbuf_set(eb, E_UNSUPP,
				  "issuer key is %s; only ECDSA P-256 keys are supported",
				  issuer->desc);
	if (x509_pubkey_verify(issuer, c->tbs.p, c->tbs.n, c->sig.p, c->sig.n) < 0)
		return errbuf_set(eb, E_CRYPTO, "bad signature");
	return 0;
}

bool x509_cert_valid_at(const struct x509_cert *c, int64_t now)
{
	return now >= c->not_before && now <= c->not_after;
}

void x509_cert_serial_hex(const struct x509_cert *c, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (cap == 0)
		return;
	for (size_t i = 0; i < c->serial.n && o + 2 < cap; i++) {
		out[o++] = hex[c->serial.p[i] >> 4];
		out[o++] = hex[c->serial.p[i] & 15];
	}
	out[o] = '\0';
}

struct slice x509_cert_uri(const struct x509_cert *c)
{
	for (size_t i = 0; i < c->n_san; i++)
		if (c->san[i].type == X509_GN_URI)
			return c->san[i].v;
	return (struct slice){0};
}

void x509_chain_add(struct x509_chain *ch, struct x509_cert *c)
{
	ch->v = xrealloc(ch->v, (ch->n + 1) * sizeof(*ch->v));
	ch->v[ch->n++] = c;
}

void x509_chain_fini(struct x509_chain *ch)
{
	for (size_t i = 0; i < ch->n; i++)
		x509_cert_free(ch->v[i]);
	free(ch->v);
	ch->v = NULL;
	ch->n = 0;
}

int x509_chain_parse_pem(const char *text, size_t n, struct x509_chain *ch, struct errbuf *eb)
{
	struct x509_pem_list l = {0};
	int r;

	memset(ch, 0, sizeof(*ch));
	if ((r = x509_pem_parse(text, n, &l, eb)) < 0)
		return r;
	for (size_t i = 0; i < l.n && r == 0; i++) {
		struct x509_cert *c;
		if (strcmp(l.v[i].label, "CERTIFICATE") != 0) {
			/* Never carry on with a key that was pasted into a certificate file. */
			r = errbuf_set(eb, E_INVAL, "PEM block at line %u is '%s', not CERTIFICATE",
				       l.v[i].line, l.v[i].label);
			break;
		}
		if ((r = x509_cert_decode(l.v[i].der, l.v[i].len, &c, eb)) < 0) {
			errbuf_prefix(eb, "certificate %zu (line %u)", i + 1, l.v[i].line);
			break;
		}
		x509_chain_add(ch, c);
	}
	x509_pem_list_fini(&l);
	if (r < 0)
		x509_chain_fini(ch);
	return r;
}
