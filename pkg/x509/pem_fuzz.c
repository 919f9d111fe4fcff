/* libFuzzer target for PEM parsing and the PEM entry points for keys, certificates and chains.
 *
 * Every block that x509_pem_parse() accepts must format back to text that parses to the same
 * label and bytes. The same input also goes through x509_key_parse_pem(), x509_cert_parse_pem(),
 * x509_chain_parse_pem() and x509_csr_parse_pem(), which must either succeed or give a reason.
 * Byte 0 of the input picks CRLF line endings for the re-formatted text (the parser accepts
 * both), so line handling is exercised both ways.
 */
#include "pkg/x509/x509.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "pem_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c);          \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Re-formats the blocks (optionally with CRLF) and checks they parse back identically. */
static void round_trip(const struct x509_pem_list *l, bool crlf)
{
	struct x509_pem_list back;
	struct errbuf eb;
	struct buf b, t;

	buf_init(&b, 0);
	for (size_t i = 0; i < l->n; i++)
		ASSERT(x509_pem_format(&b, l->v[i].label, l->v[i].der, l->v[i].len) == 0);
	buf_init(&t, 0);
	for (size_t i = 0; i < buf_len(&b); i++) {
		uint8_t ch = buf_rptr(&b)[i];
		if (crlf && ch == '\n')
			ASSERT(buf_append(&t, "\r", 1) == 0);
		ASSERT(buf_append(&t, &ch, 1) == 0);
	}
	ASSERT(x509_pem_parse((const char *)buf_rptr(&t), buf_len(&t), &back, &eb) == 0);
	ASSERT(back.n == l->n);
	for (size_t i = 0; i < l->n; i++) {
		ASSERT(strcmp(back.v[i].label, l->v[i].label) == 0);
		ASSERT(back.v[i].len == l->v[i].len);
		ASSERT(memcmp(back.v[i].der, l->v[i].der, l->v[i].len) == 0);
	}
	x509_pem_list_fini(&back);
	buf_fini(&t);
	buf_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct x509_pem_list l;
	struct x509_key *k;
	struct x509_cert *c;
	struct x509_chain ch;
	struct x509_csr *csr;
	struct errbuf eb;

	errbuf_clear(&eb);
	if (x509_pem_parse(text, size, &l, &eb) == 0) {
		ASSERT(l.n > 0 && l.n <= X509_PEM_MAX_BLOCKS);
		for (size_t i = 0; i < l.n; i++)
			ASSERT(l.v[i].len > 0 && l.v[i].label[0] != '\0');
		round_trip(&l, size > 0 && (data[0] & 1));
		x509_pem_list_fini(&l);
	} else {
		ASSERT(l.n == 0 && l.v == NULL && eb.msg[0] != '\0');
	}
	errbuf_clear(&eb);
	if (x509_key_parse_pem(text, size, &k, &eb) == 0)
		x509_key_free(k);
	else
		ASSERT(k == NULL && eb.msg[0] != '\0');
	errbuf_clear(&eb);
	if (x509_cert_parse_pem(text, size, &c, &eb) == 0)
		x509_cert_free(c);
	else
		ASSERT(c == NULL && eb.msg[0] != '\0');
	errbuf_clear(&eb);
	if (x509_chain_parse_pem(text, size, &ch, &eb) == 0)
		ASSERT(ch.n > 0);
	else
		ASSERT(ch.n == 0 && eb.msg[0] != '\0');
	x509_chain_fini(&ch);
	errbuf_clear(&eb);
	if (x509_csr_parse_pem(text, size, &csr, &eb) == 0)
		x509_csr_free(csr);
	else
		ASSERT(csr == NULL && eb.msg[0] != '\0');
	return 0;
}
