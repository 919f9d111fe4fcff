/* Fixtures shared by the x509 unit test files (linked into the x509_test binary only). */
#ifndef AMBIENT_X509_TEST_H
#define AMBIENT_X509_TEST_H

#include "pkg/x509/x509_int.h"

#define NOW 1748736000LL /* 2025-06-01T00:00:00Z */
#define TD "cluster.local"
#define ID "spiffe://cluster.local/ns/default/sa/foo"

/* leaf: root -> leaf; leaf2: root -> inter (pathLen 0) -> leaf; fixed keys, serial and NOW. */
struct pki {
	struct x509_key *rk, *ik, *lk;
	struct x509_cert *root, *inter, *leaf, *leaf2;
};

/* A key whose scalar is 32 octets of `fill`. */
struct x509_key *key_of(uint8_t fill);
void pki_init(struct pki *p);
void pki_fini(struct pki *p);
bool slice_is(struct slice s, const char *str);
/* SubjectPublicKeyInfo with any algorithm/curve OID and key bits, written to out. */
size_t spki_custom(uint8_t *out, const char *alg, const char *curve, bool null_param,
		   const uint8_t *key, size_t n);
/* RSAPublicKey with a 2048-bit modulus, written to out. */
size_t rsa_key_bits(uint8_t *out);

#endif
