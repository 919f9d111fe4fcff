/* libFuzzer target for PKCS#10 CSR decoding: accepted CSRs are DER, self-signed and P-256.
 *
 * The input is decoded as a CSR; a failure must give a reason and no output. An accepted CSR
 * must be DER throughout, carry a P-256 key whose signature over the request info verifies,
 * keep its slices inside its own copy, and survive a PEM round trip unchanged.
 */
#include "pkg/x509/x509.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "csr_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c);          \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static bool inside(const struct x509_csr *c, struct slice s)
{
	return s.n == 0 || (s.p >= c->der && s.p + s.n <= c->der + c->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct x509_csr *c = (struct x509_csr *)1, *back;
	struct x509_spiffe id;
	struct errbuf eb;
	struct buf b;

	errbuf_clear(&eb);
	if (x509_csr_decode(data, size, &c, &eb) < 0) {
		ASSERT(c == NULL && eb.msg[0] != '\0');
		return 0;
	}
	ASSERT(der_check(c->der, c->len, NULL) == 0);
	ASSERT(c->pub.type == X509_KEY_P256);
	ASSERT(inside(c, c->info) && inside(c, c->subject) && inside(c, c->spki));
	ASSERT(c->subject_text != NULL);
	ASSERT(c->n_uri <= c->n_san);
	for (size_t i = 0; i < c->n_san; i++) {
		ASSERT(inside(c, c->san[i].v));
		if (c->san[i].type == X509_GN_URI)
			(void)x509_spiffe_parse((const char *)c->san[i].v.p, c->san[i].v.n, &id,
						&eb);
	}
	buf_init(&b, 0);
	ASSERT(x509_pem_format(&b, "CERTIFICATE REQUEST", c->der, c->len) == 0);
	ASSERT(x509_csr_parse_pem((const char *)buf_rptr(&b), buf_len(&b), &back, &eb) == 0);
	ASSERT(back->len == c->len && memcmp(back->der, c->der, c->len) == 0);
	x509_csr_free(back);
	buf_fini(&b);
	x509_csr_free(c);
	return 0;
}
