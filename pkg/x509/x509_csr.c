/* PKCS#10 certification requests (RFC 2986): encoding for workloads, strict decoding for the CA. */
#include "pkg/x509/x509_int.h"

#include <stdlib.h>
#include <string.h>

int x509_csr_encode(const struct x509_key *key, const char *uri, struct buf *out, struct errbuf *eb)
{
	static const uint8_t empty_name[] = {0x30, 0x00};
	struct x509_spiffe id;
	struct x509_tbs t = {0};
	struct der_enc info, req;
	struct slice ib, rb;
	uint8_t sig[X509_SIG_MAX];
	size_t siglen;
	int r;

	if ((r = x509_spiffe_parse(uri, strlen(uri), &id, eb)) < 0)
		return r;
	t.uris = &uri;
	t.n_uris = 1;
	t.san_critical = true; /* the subject is empty (RFC 5280 §4.2.1.6) */
	der_enc_init(&info, 512);
	der_begin(&info, DER_SEQUENCE);
	der_put_int(&info, 0); /* version v1 */
	der_put_raw(&info, empty_name, sizeof(empty_name));
	x509_spki_encode(x509_key_public(key), &info);
	der_begin(&info, DER_CTX_CONS(0)); /* attributes [0] IMPLICIT SET OF Attribute */
	der_begin(&info, DER_SEQUENCE);
	der_put_oid_bytes(&info, OID_EXT_REQUEST);
	der_begin(&info, DER_SET);
	der_begin(&info, DER_SEQUENCE); /* Extensions */
	x509_tbs_extensions(&info, &t);
	der_end(&info);
	der_end(&info);
	der_end(&info);
	der_end(&info);
	der_end(&info);
	if ((r = der_enc_result(&info, &ib)) < 0 ||
	    (r = x509_key_sign(key, ib.p, ib.n, sig, &siglen)) < 0) {
		der_enc_fini(&info);
		return errbuf_set(eb, r, "cannot encode the CSR (%s)", err_str(r));
	}
	der_enc_init(&req, ib.n + 128);
	der_begin(&req, DER_SEQUENCE);
	der_put_raw(&req, ib.p, ib.n);
	der_begin(&req, DER_SEQUENCE);
	der_put_oid_bytes(&req, OID_ECDSA_SHA256);
	der_end(&req);
	der_put_bits(&req, sig, siglen, 0);
	der_end(&req);
	der_enc_fini(&info);
	if ((r = der_enc_result(&req, &rb)) == 0)
		r = buf_append(out, rb.p, rb.n);
	der_enc_fini(&req);
	return r < 0 ? errbuf_set(eb, r, "cannot encode the CSR (%s)", err_str(r)) : 0;
}

void x509_csr_free(struct x509_csr *c)
{
	if (!c)
		return;
	free(c->der);
	free(c->subject_text);
	free(c->san);
	free(c);
}

/* Attribute ::= SEQUENCE { type OID, values SET SIZE(1..MAX) OF ANY } */
static int read_attributes(struct der_dec *info, struct x509_csr *c)
{
	struct der_dec attrs, a, vals;
	struct der_tlv t, vt;
	struct slice oid;
	int r;

	/* RFC 2986 §4.1: attributes [0] is not OPTIONAL (it may be an empty SET). */
	if ((r = der_enter(info, DER_CTX_CONS(0), "attributes", &attrs, NULL)) < 0)
		return r;
	while (der_dec_more(&attrs)) {
		if ((r = der_enter(&attrs, DER_SEQUENCE, "Attribute", &a, &t)) < 0 ||
		    (r = der_read_oid(&a, "Attribute.type", &oid)) < 0 ||
		    (r = der_enter(&a, DER_SET, "Attribute.values", &vals, &vt)) < 0 ||
		    (r = der_dec_done(&a, "Attribute")) < 0)
			return r;
		if (!der_dec_more(&vals))
			return der_dec_fail(&a, &vt, "Attribute.values",
					    "empty SET (SIZE (1..MAX))");
		if (!oid_is(oid, OID_EXT_REQUEST)) {
			while (der_dec_more(&vals))
				if ((r = der_read_any(&vals, "Attribute.value", &vt)) < 0)
					return r;
			continue;
		}
		if (c->has_ext_request)
			return der_dec_fail(&attrs, &t, "extensionRequest", "duplicate attribute");
		c->has_ext_request = true;
		if ((r = x509_csr_extensions_read(&vals, c)) < 0 ||
		    (r = der_dec_done(&vals, "extensionRequest")) < 0)
			return r;
	}
	return 0;
}

static int read_info(struct der_dec *info, struct x509_csr *c)
{
	int64_t ver;
	int r;

	if ((r = der_read_int(info, "version", 0, 0, &ver)) < 0 ||
	    (r = x509_name_read(info, "subject", &c->subject, &c->subject_text)) < 0 ||
	    (r = x509_spki_read(info, "subjectPKInfo", &c->pub, &c->spki)) < 0 ||
	    (r = read_attributes(info, c)) < 0)
		return r;
	return der_dec_done(info, "certificationRequestInfo");
}

int x509_csr_decode(const uint8_t *der, size_t n, struct x509_csr **out, struct errbuf *eb)
{
	struct x509_csr *c;
	struct der_dec d, req, info;
	struct der_tlv it, st;
	struct slice alg;
	bool ecdsa;
	char name[48];
	int r;

	*out = NULL;
	if (n > (64u << 10))
		return errbuf_set(eb, E_LIMIT, "CSR larger than 64 KiB");
	c = xcalloc(1, sizeof(*c));
	c->der = xmalloc(n ? n : 1);
	if (n)
		memcpy(c->der, der, n);
	c->len = n;
	der_dec_init(&d, c->der, n, eb);
	if ((r = der_enter(&d, DER_SEQUENCE, "CertificationRequest", &req, NULL)) < 0 ||
	    (r = der_dec_done(&d, "CertificationRequest")) < 0 ||
	    (r = der_enter(&req, DER_SEQUENCE, "certificationRequestInfo", &info, &it)) < 0 ||
	    (r = x509_sigalg_read(&req, "signatureAlgorithm", &alg, &ecdsa, name, sizeof(name))) <
		    0 ||
	    (r = der_read(&req, DER_BIT_STRING, "signature", &st)) < 0 ||
	    (r = der_dec_done(&req, "CertificationRequest")) < 0)
		goto fail;
	c->info = it.raw;
	if ((r = read_info(&info, c)) < 0)
		goto fail;
	if ((r = der_check(c->der, c->len, eb)) < 0) { /* opaque attribute values too */
		errbuf_prefix(eb, "CSR");
		goto fail;
	}
	if ((r = x509_pubkey_require_p256(&c->pub, "CSR key", eb)) < 0)
		goto fail;
	if (!ecdsa) {
		r = errbuf_set(eb, E_UNSUPP,
			       "CSR signature algorithm %s is not supported (need "
			       "ecdsa-with-SHA256)",
			       name);
		goto fail;
	}
	if ((r = x509_ecdsa_sig_check(&req, &st, "signature")) < 0)
		goto fail;
	if (x509_pubkey_verify(&c->pub, c->info.p, c->info.n, st.val.p + 1, st.val.n - 1) < 0) {
		r = errbuf_set(eb, E_CRYPTO, "CSR signature does not verify with its own key");
		goto fail;
	}
	*out = c;
	return 0;
fail:
	x509_csr_free(c);
	return r;
}

int x509_csr_parse_pem(const char *text, size_t n, struct x509_csr **out, struct errbuf *eb)
{
	struct x509_pem_list l = {0};
	int r;

	*out = NULL;
	if ((r = x509_pem_parse(text, n, &l, eb)) < 0)
		return r;
	if (l.n != 1)
		r = errbuf_set(eb, E_INVAL, "expected one CERTIFICATE REQUEST PEM block, found %zu",
			       l.n);
	else if (strcmp(l.v[0].label, "CERTIFICATE REQUEST") != 0 &&
		 strcmp(l.v[0].label, "NEW CERTIFICATE REQUEST") != 0)
		r = errbuf_set(eb, E_INVAL, "expected a CERTIFICATE REQUEST PEM block, found '%s'",
			       l.v[0].label);
	if (r == 0 && (r = x509_csr_decode(l.v[0].der, l.v[0].len, out, eb)) < 0)
		errbuf_prefix(eb, "CSR");
	x509_pem_list_fini(&l);
	return r;
}
