/* libFuzzer target for certificate, private key and SubjectPublicKeyInfo decoding.
 *
 * The same bytes go to x509_cert_decode(), x509_key_decode() and x509_spki_decode(). Failures
 * must leave no output and a reason in the errbuf. An accepted certificate must be DER
 * throughout, keep every slice inside its own copy, survive a PEM round trip unchanged, and go
 * through the signature, SVID and chain checks without crashing. An accepted key must encode
 * in both formats and decode back to the same public key.
 */
#include "pkg/x509/x509.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "x509_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c);         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static bool inside(const struct x509_cert *c, struct slice s)
{
	return s.n == 0 || (s.p >= c->der && s.p + s.n <= c->der + c->len);
}

static void check_cert(const struct x509_cert *c)
{
	struct x509_cert *back;
	struct x509_spiffe id;
	struct errbuf eb;
	struct buf b;
	char hex[64];

	ASSERT(der_check(c->der, c->len, NULL) == 0);
	ASSERT(inside(c, c->tbs) && inside(c, c->serial) && inside(c, c->sig_alg) &&
	       inside(c, c->sig) && inside(c, c->issuer) && inside(c, c->subject) &&
	       inside(c, c->spki) && inside(c, c->ski) && inside(c, c->aki));
	ASSERT(c->serial.n >= 1 && c->serial.n <= X509_MAX_SERIAL);
	ASSERT(c->not_before <= c->not_after);
	ASSERT(c->issuer_text && c->subject_text);
	ASSERT(c->n_uri <= c->n_san);
	for (size_t i = 0; i < c->n_san; i++)
		ASSERT(inside(c, c->san[i].v));
	if (c->pub.type == X509_KEY_P256)
		ASSERT(c->pub.q[0] == 0x04);
	x509_cert_serial_hex(c, hex, sizeof(hex));
	ASSERT(strlen(hex) == 2 * c->serial.n);

	buf_init(&b, 0);
	ASSERT(x509_cert_format_pem(c, &b) == 0);
	ASSERT(x509_cert_parse_pem((const char *)buf_rptr(&b), buf_len(&b), &back, &eb) == 0);
	ASSERT(back->len == c->len && memcmp(back->der, c->der, c->len) == 0);
	ASSERT(strcmp(back->subject_text, c->subject_text) == 0);
	x509_cert_free(back);
	buf_fini(&b);

	(void)x509_cert_check_signature(c, &c->pub, &eb);
	(void)x509_svid_check(c, "cluster.local", &id, &eb);
	(void)x509_verify_chain(c, NULL, 0, (struct x509_cert *const *)&c, 1, c->not_before, NULL,
				&eb);
}

static void check_key(const struct x509_key *k)
{
	uint8_t der[256];
	struct x509_key *back;
	struct errbuf eb;

	for (int f = 0; f < 2; f++) {
		int n = x509_key_encode(k, f ? X509_KEY_SEC1 : X509_KEY_PKCS8, der, sizeof(der));
		ASSERT(n > 0);
		ASSERT(x509_key_decode(der, (size_t)n, &back, &eb) == 0);
		ASSERT(x509_pubkey_equal(x509_key_public(k), x509_key_public(back)));
		x509_key_free(back);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct x509_cert *c = (struct x509_cert *)1;
	struct x509_key *k = (struct x509_key *)1;
	struct x509_pubkey pk;
	struct errbuf eb;

	errbuf_clear(&eb);
	if (x509_cert_decode(data, size, &c, &eb) == 0) {
		check_cert(c);
		x509_cert_free(c);
	} else {
		ASSERT(c == NULL && eb.msg[0] != '\0');
	}
	errbuf_clear(&eb);
	if (x509_key_decode(data, size, &k, &eb) == 0) {
		check_key(k);
		x509_key_free(k);
	} else {
		ASSERT(k == NULL && eb.msg[0] != '\0');
	}
	errbuf_clear(&eb);
	if (x509_spki_decode(data, size, &pk, &eb) == 0)
		ASSERT(pk.desc[0] != '\0');
	else
		ASSERT(eb.msg[0] != '\0');
	return 0;
}
