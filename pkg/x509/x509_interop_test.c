/* OpenSSL interoperability tests: openssl accepts what we issue, and we read what openssl makes. */
#include "pkg/x509/x509.h"

#include "test/unit.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>

#define TD "cluster.local"
#define ID "spiffe://cluster.local/ns/default/sa/foo"

/* Runs a shell command in the test directory; output goes to cmd.log unless redirected. */
__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...)
{
	char cmd[2048], full[2600];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd '%s' && ( %s ) >>cmd.log 2>&1", unit_tmpdir(), cmd);
	st = system(full);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *name, size_t *n)
{
	char path[512];
	FILE *f;
	char *p;
	long len;

	snprintf(path, sizeof(path), "%s/%s", unit_tmpdir(), name);
	f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = malloc((size_t)len + 1);
	if (!p || fread(p, 1, (size_t)len, f) != (size_t)len) {
		free(p);
		fclose(f);
		return NULL;
	}
	p[len] = '\0';
	fclose(f);
	if (n)
		*n = (size_t)len;
	return p;
}

static void spit(const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", unit_tmpdir(), name);
	f = fopen(path, "wb");
	if (!f) {
		unit_fail(__FILE__, __LINE__, "cannot create %s", path);
		return;
	}
	if (fwrite(p, 1, n, f) != n)
		unit_fail(__FILE__, __LINE__, "cannot write %s", path);
	fclose(f);
}

static void spit_str(const char *name, const char *s)
{
	spit(name, s, strlen(s));
}

static void write_cert(const char *name, const struct x509_cert *c)
{
	struct buf b;

	buf_init(&b, 0);
	if (x509_cert_format_pem(c, &b) < 0)
		die("format");
	spit(name, buf_rptr(&b), buf_len(&b));
	buf_fini(&b);
}

static void write_certs(const char *name, const struct x509_cert *a, const struct x509_cert *b)
{
	struct buf o;

	buf_init(&o, 0);
	if (x509_cert_format_pem(a, &o) < 0 || (b && x509_cert_format_pem(b, &o) < 0))
		die("format");
	spit(name, buf_rptr(&o), buf_len(&o));
	buf_fini(&o);
}

static void write_key(const char *name, const struct x509_key *k, enum x509_key_format f)
{
	struct buf b;

	buf_init(&b, 0);
	if (x509_key_format_pem(k, f, &b) < 0)
		die("format key");
	spit(name, buf_rptr(&b), buf_len(&b));
	x509_buf_wipe(&b);
}

static struct x509_cert *read_cert(const char *name, struct errbuf *eb)
{
	size_t n;
	char *t = slurp(name, &n);
	struct x509_cert *c = NULL;

	if (t && x509_cert_parse_pem(t, n, &c, eb) < 0)
		c = NULL;
	free(t);
	return c;
}

static struct x509_key *read_key(const char *name, struct errbuf *eb)
{
	size_t n;
	char *t = slurp(name, &n);
	struct x509_key *k = NULL;

	errbuf_clear(eb);
	if (!t) {
		errbuf_set(eb, E_IO, "cannot read %s", name);
		return NULL;
	}
	if (x509_key_parse_pem(t, n, &k, eb) < 0)
		k = NULL;
	secure_wipe(t, n);
	free(t);
	return k;
}

static bool file_contains(const char *name, const char *needle)
{
	char *t = slurp(name, NULL);
	bool r = t && strstr(t, needle);

	if (!r)
		fprintf(stderr, "    %s does not contain \"%s\"\n", name, needle);
	free(t);
	return r;
}

static int64_t now_s(void)
{
	return time_real_ms() / 1000;
}

struct ours {
	struct x509_key *rk, *ik, *lk;
	struct x509_cert *root, *inter, *leaf, *leaf2, *server;
};

static void ours_init(struct ours *o, int64_t now)
{
	const char *const dns[] = {"ca.mesh.local"};
	const struct x509_ip ip = {4, {127, 0, 0, 1}};
	struct x509_leaf_req req = {.spiffe_id = ID, .now = now};
	struct x509_leaf_req srv = {.spiffe_id = "spiffe://cluster.local/ns/ambient/sa/ca",
				    .dns = dns,
				    .n_dns = 1,
				    .ips = &ip,
				    .n_ips = 1,
				    .now = now};
	struct x509_ca_req cr = {.org = TD, .cn = "Intermediate CA", .path_len = 0, .now = now};
	struct errbuf eb;

	if (x509_key_generate(&o->rk) < 0 || x509_key_generate(&o->ik) < 0 ||
	    x509_key_generate(&o->lk) < 0)
		die("keygen");
	req.pub = srv.pub = x509_key_public(o->lk);
	cr.pub = x509_key_public(o->ik);
	if (x509_self_signed_root(o->rk, TD, now, 0, &o->root, &eb) < 0 ||
	    x509_issue_leaf(o->root, o->rk, &req, &o->leaf, NULL, &eb) < 0 ||
	    x509_issue_intermediate(o->root, o->rk, &cr, &o->inter, NULL, &eb) < 0 ||
	    x509_issue_leaf(o->inter, o->ik, &req, &o->leaf2, NULL, &eb) < 0 ||
	    x509_issue_leaf(o->inter, o->ik, &srv, &o->server, NULL, &eb) < 0)
		die("ours: %s", eb.msg);
}

static void ours_fini(struct ours *o)
{
	x509_cert_free(o->root);
	x509_cert_free(o->inter);
	x509_cert_free(o->leaf);
	x509_cert_free(o->leaf2);
	x509_cert_free(o->server);
	x509_key_free(o->rk);
	x509_key_free(o->ik);
	x509_key_free(o->lk);
}

TEST(openssl_verifies_our_chains)
{
	struct ours o;

	REQUIRE(sh("openssl version") == 0);
	ours_init(&o, now_s());
	write_cert("a-root.pem", o.root);
	write_cert("a-leaf.pem", o.leaf);
	write_cert("a-inter.pem", o.inter);
	write_cert("a-leaf2.pem", o.leaf2);
	write_cert("a-server.pem", o.server);
	CHECK_INT(sh("openssl verify -x509_strict -CAfile a-root.pem a-leaf.pem > a-v1.txt"), 0);
	CHECK(file_contains("a-v1.txt", "a-leaf.pem: OK"));
	CHECK_INT(sh("openssl verify -x509_strict -purpose sslserver -CAfile a-root.pem "
		     "-untrusted a-inter.pem a-leaf2.pem > a-v2.txt"),
		  0);
	CHECK(file_contains("a-v2.txt", "a-leaf2.pem: OK"));
	CHECK_INT(sh("openssl verify -x509_strict -purpose sslclient -CAfile a-root.pem "
		     "-untrusted a-inter.pem a-leaf2.pem"),
		  0);
	CHECK_INT(sh("openssl verify -x509_strict -purpose sslserver -verify_hostname "
		     "ca.mesh.local -CAfile a-root.pem -untrusted a-inter.pem a-server.pem"),
		  0);
	CHECK_INT(sh("openssl verify -x509_strict -verify_ip 127.0.0.1 -CAfile a-root.pem "
		     "-untrusted a-inter.pem a-server.pem"),
		  0);
	/* the harness notices a failure: the leaf of the intermediate without it */
	CHECK(sh("openssl verify -CAfile a-root.pem a-leaf2.pem") != 0);
	ours_fini(&o);
}

TEST(openssl_shows_required_extensions)
{
	struct ours o;

	ours_init(&o, now_s());
	write_cert("b-leaf.pem", o.leaf);
	write_cert("b-root.pem", o.root);
	write_cert("b-inter.pem", o.inter);
	REQUIRE(sh("openssl x509 -text -noout -in b-leaf.pem > b-leaf.txt") == 0);
	static const char *const want[] = {
		"Version: 3 (0x2)",
		"Signature Algorithm: ecdsa-with-SHA256",
		"Issuer: O = cluster.local",
		"ASN1 OID: prime256v1",
		"X509v3 Key Usage: critical\n                Digital Signature, Key Encipherment",
		"X509v3 Extended Key Usage: \n                TLS Web Server Authentication, TLS "
		"Web Client Authentication",
		"X509v3 Basic Constraints: critical\n                CA:FALSE",
		"X509v3 Subject Key Identifier",
		"X509v3 Authority Key Identifier",
		"X509v3 Subject Alternative Name: critical\n                URI:" ID,
	};
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		CHECK(file_contains("b-leaf.txt", want[i]));
	CHECK(file_contains("b-leaf.txt", "Subject: \n"));
	REQUIRE(sh("openssl x509 -text -noout -in b-root.pem > b-root.txt") == 0);
	CHECK(file_contains("b-root.txt", "Subject: O = cluster.local"));
	CHECK(file_contains("b-root.txt", "X509v3 Basic Constraints: critical\n                "
					  "CA:TRUE\n"));
	CHECK(file_contains("b-root.txt", "X509v3 Key Usage: critical\n                "
					  "Certificate Sign, CRL Sign"));
	REQUIRE(sh("openssl x509 -text -noout -in b-inter.pem > b-inter.txt") == 0);
	CHECK(file_contains("b-inter.txt", "CA:TRUE, pathlen:0"));
	CHECK(file_contains("b-inter.txt", "Subject: O = cluster.local, CN = Intermediate CA"));
	CHECK_INT(sh("openssl asn1parse -in b-leaf.pem -strictpem > /dev/null"), 0);
	ours_fini(&o);
}

TEST(openssl_accepts_our_csr_keys_and_signatures)
{
	struct x509_key *k;
	struct buf der, pem;
	struct der_enc e;
	struct slice spki;
	struct errbuf eb;
	uint8_t sig[X509_SIG_MAX];
	size_t siglen, n;
	char *pub;

	REQUIRE(x509_key_generate(&k) == 0);
	buf_init(&der, 0);
	buf_init(&pem, 0);
	REQUIRE(x509_csr_encode(k, ID, &der, &eb) == 0);
	REQUIRE(x509_pem_format(&pem, "CERTIFICATE REQUEST", buf_rptr(&der), buf_len(&der)) == 0);
	spit("c-csr.pem", buf_rptr(&pem), buf_len(&pem));
	CHECK_INT(sh("openssl req -verify -noout -in c-csr.pem > c-req.txt 2>&1"), 0);
	CHECK(file_contains("c-req.txt", "verify OK"));
	REQUIRE(sh("openssl req -text -noout -in c-csr.pem > c-req-text.txt") == 0);
	CHECK(file_contains(
		"c-req-text.txt",
		"X509v3 Subject Alternative Name: critical\n                    URI:" ID));
	CHECK(file_contains("c-req-text.txt", "Subject: \n"));

	write_key("c-k8.pem", k, X509_KEY_PKCS8);
	write_key("c-k1.pem", k, X509_KEY_SEC1);
	CHECK_INT(sh("openssl pkey -in c-k8.pem -check -noout"), 0);
	CHECK_INT(sh("openssl ec -in c-k1.pem -check -noout"), 0);
	CHECK_INT(sh("openssl pkey -in c-k8.pem -pubout -outform DER -out c-k8.pub"), 0);
	CHECK_INT(sh("openssl pkey -in c-k1.pem -pubout -outform DER -out c-k1.pub"), 0);
	der_enc_init(&e, 0);
	x509_spki_encode(x509_key_public(k), &e);
	REQUIRE(der_enc_result(&e, &spki) == 0);
	for (int i = 0; i < 2; i++) {
		pub = slurp(i ? "c-k1.pub" : "c-k8.pub", &n);
		REQUIRE(pub != NULL);
		CHECK(n == spki.n && !memcmp(pub, spki.p, n));
		free(pub);
	}
	der_enc_fini(&e);

	/* our signature verifies in openssl, and openssl's in ours */
	spit("c-msg.bin", "attack at dawn", 14);
	REQUIRE(x509_key_sign(k, "attack at dawn", 14, sig, &siglen) == 0);
	spit("c-sig.bin", sig, siglen);
	CHECK_INT(sh("openssl pkey -in c-k8.pem -pubout -out c-pub.pem && openssl dgst -sha256 "
		     "-verify c-pub.pem -signature c-sig.bin c-msg.bin"),
		  0);
	REQUIRE(sh("openssl dgst -sha256 -sign c-k1.pem -out c-osig.bin c-msg.bin") == 0);
	pub = slurp("c-osig.bin", &n);
	REQUIRE(pub != NULL);
	CHECK_INT(x509_pubkey_verify(x509_key_public(k), "attack at dawn", 14, (uint8_t *)pub, n),
		  0);
	free(pub);
	buf_fini(&der);
	buf_fini(&pem);
	x509_key_free(k);
}

/* Extension file for `openssl x509 -req`: a leaf with the given SAN and basicConstraints. */
static void leaf_ext(const char *name, const char *san, const char *bc)
{
	char text[1024];
	int n = snprintf(text, sizeof(text),
			 "[v]\nbasicConstraints=critical,%s\n"
			 "keyUsage=critical,digitalSignature,keyEncipherment\n"
			 "extendedKeyUsage=serverAuth,clientAuth\n"
			 "subjectAltName=critical,%s\n"
			 "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
			 bc, san);
	spit(name, text, (size_t)n);
}

TEST(we_read_openssl_keys_csrs_and_certs)
{
	struct errbuf eb;
	struct x509_key *k1, *k8, *kn, *rk;
	struct x509_csr *csr;
	struct x509_cert *root, *leaf, *inter, *ours;
	struct x509_pubkey pk;
	size_t n;
	char *t;

	/* keys: SEC1 with an EC PARAMETERS block, PKCS#8, SEC1 without the public key */
	REQUIRE(sh("openssl ecparam -name prime256v1 -genkey -out d-sec1.pem") == 0);
	REQUIRE(sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "
		   "d-p8.pem") == 0);
	REQUIRE(sh("openssl ec -in d-sec1.pem -no_public -out d-nopub.pem") == 0);
	k1 = read_key("d-sec1.pem", &eb);
	CHECK_STR(eb.msg, "");
	k8 = read_key("d-p8.pem", &eb);
	CHECK_STR(eb.msg, "");
	kn = read_key("d-nopub.pem", &eb);
	CHECK_STR(eb.msg, "");
	REQUIRE(k1 && k8 && kn);
	CHECK(x509_pubkey_equal(x509_key_public(k1), x509_key_public(kn)));
	REQUIRE(sh("openssl pkey -in d-p8.pem -pubout -outform DER -out d-p8.pub") == 0);
	t = slurp("d-p8.pub", &n);
	REQUIRE(t && x509_spki_decode((uint8_t *)t, n, &pk, &eb) == 0);
	CHECK(x509_pubkey_equal(&pk, x509_key_public(k8)));
	free(t);

	/* CSRs: empty subject with a URI SAN, and one with a subject */
	REQUIRE(sh("openssl req -new -key d-p8.pem -subj / -addext "
		   "subjectAltName=critical,URI:spiffe://cluster.local/ns/a/sa/b -out d-csr.pem") ==
		0);
	t = slurp("d-csr.pem", &n);
	REQUIRE(t && x509_csr_parse_pem(t, n, &csr, &eb) == 0);
	CHECK_INT(csr->n_uri, 1);
	CHECK(csr->san[0].v.n == 32 &&
	      !memcmp(csr->san[0].v.p, "spiffe://cluster.local/ns/a/sa/b", 32));
	CHECK(x509_pubkey_equal(&csr->pub, x509_key_public(k8)));
	CHECK_STR(csr->subject_text, "");
	x509_csr_free(csr);
	free(t);
	REQUIRE(sh("openssl req -new -key d-sec1.pem -subj /CN=x/O=y -out d-csr2.pem") == 0);
	t = slurp("d-csr2.pem", &n);
	REQUIRE(t && x509_csr_parse_pem(t, n, &csr, &eb) == 0);
	CHECK_STR(csr->subject_text, "CN=x, O=y");
	CHECK(!csr->has_ext_request);
	CHECK_INT(csr->n_uri, 0);
	x509_csr_free(csr);
	free(t);

	/* an openssl root, intermediate and leaf */
	REQUIRE(sh("openssl req -x509 -new -key d-sec1.pem -subj /O=cluster.local -days 3650 "
		   "-addext basicConstraints=critical,CA:TRUE -addext "
		   "keyUsage=critical,keyCertSign,cRLSign -out d-root.pem") == 0);
	spit_str("d-ca.cnf", "[ca]\nbasicConstraints=critical,CA:TRUE,pathlen:0\n"
			     "keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n"
			     "authorityKeyIdentifier=keyid\n");
	REQUIRE(sh("openssl req -new -key d-p8.pem -subj /O=cluster.local/CN=Inter -out d-ic.csr "
		   "&& openssl x509 -req -in d-ic.csr -CA d-root.pem -CAkey d-sec1.pem -set_serial "
		   "0x0a01 -days 365 -extfile d-ca.cnf -extensions ca -out d-inter.pem") == 0);
	leaf_ext("d-leaf.cnf", "URI:spiffe://cluster.local/ns/a/sa/b", "CA:FALSE");
	REQUIRE(sh("openssl x509 -req -in d-csr.pem -CA d-inter.pem -CAkey d-p8.pem -set_serial "
		   "0x0b02 -days 1 -extfile d-leaf.cnf -extensions v -out d-leaf.pem") == 0);
	root = read_cert("d-root.pem", &eb);
	CHECK_STR(eb.msg, "");
	inter = read_cert("d-inter.pem", &eb);
	CHECK_STR(eb.msg, "");
	leaf = read_cert("d-leaf.pem", &eb);
	CHECK_STR(eb.msg, "");
	REQUIRE(root && inter && leaf);
	CHECK(root->ca && inter->ca && inter->path_len == 0 && !leaf->ca);
	CHECK_INT(leaf->n_uri, 1);
	CHECK_INT(x509_verify_chain(leaf, &inter, 1, &root, 1, now_s(), TD, &eb), 0);
	CHECK_STR(eb.msg, "");

	/* our leaf under the openssl root and its openssl-made SEC1 key */
	rk = read_key("d-sec1.pem", &eb);
	REQUIRE(rk);
	struct x509_leaf_req req = {.pub = x509_key_public(k8), .spiffe_id = ID, .now = now_s()};
	REQUIRE(x509_issue_leaf(root, rk, &req, &ours, NULL, &eb) == 0);
	write_cert("d-ours.pem", ours);
	CHECK_INT(sh("openssl verify -x509_strict -CAfile d-root.pem d-ours.pem"), 0);
	x509_cert_free(ours);
	x509_cert_free(root);
	x509_cert_free(inter);
	x509_cert_free(leaf);
	x509_key_free(rk);
	x509_key_free(k1);
	x509_key_free(k8);
	x509_key_free(kn);
}

/* Makes a leaf with openssl from key file `key`, signed by our root (e-root.pem/e-rootkey.pem),
 * and returns our verdict on it. */
static const char *openssl_leaf_verdict(const char *tag, const char *key, const char *san,
					const char *bc, const char *ca, const char *cakey,
					int64_t offset, struct errbuf *eb)
{
	struct x509_cert *leaf, *root;
	char name[64];
	const char *res;

	errbuf_clear(eb);
	leaf_ext("e-leaf.cnf", san, bc);
	if (sh("openssl req -new -key %s -subj / -out e-%s.csr && openssl x509 -req -in e-%s.csr "
	       "-CA %s -CAkey %s -set_serial 0x77 -days 1 -extfile e-leaf.cnf -extensions v -out "
	       "e-%s.pem",
	       key, tag, tag, ca, cakey, tag) != 0)
		return "openssl failed";
	snprintf(name, sizeof(name), "e-%s.pem", tag);
	leaf = read_cert(name, eb);
	if (!leaf)
		return eb->msg;
	root = read_cert("e-root.pem", eb);
	if (!root) {
		x509_cert_free(leaf);
		return "no root";
	}
	/* openssl starts the validity at its own "now": verify relative to the real clock */
	res = x509_verify_chain(leaf, NULL, 0, &root, 1, now_s() + offset, TD, eb) == 0 ? "accepted"
											: eb->msg;
	x509_cert_free(leaf);
	x509_cert_free(root);
	return res;
}

TEST(we_reject_openssl_bad_ones)
{
	struct ours o;
	struct errbuf eb;
	struct x509_key *k;
	int64_t now = now_s();
	const char *good = "URI:" ID;

	ours_init(&o, now);
	write_cert("e-root.pem", o.root);
	write_key("e-rootkey.pem", o.rk, X509_KEY_PKCS8);
	write_key("e-p256.pem", o.lk, X509_KEY_SEC1);
	REQUIRE(sh("openssl ecparam -name secp384r1 -genkey -out e-p384.pem") == 0);
	REQUIRE(sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "
		   "e-p384-8.pem") == 0);
	REQUIRE(sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "
		   "e-rsa8.pem && openssl rsa -in e-rsa8.pem -traditional -out e-rsa1.pem") == 0);

	/* keys */
	k = read_key("e-p384.pem", &eb);
	CHECK(k == NULL);
	CHECK_STR(eb.msg, "EC PRIVATE KEY (PEM block at line 4): private key is ECDSA secp384r1; "
			  "only ECDSA P-256 keys are supported");
	k = read_key("e-p384-8.pem", &eb);
	CHECK(k == NULL);
	CHECK_STR(eb.msg, "PRIVATE KEY (PEM block at line 1): private key is ECDSA secp384r1; only "
			  "ECDSA P-256 keys are supported");
	k = read_key("e-rsa8.pem", &eb);
	CHECK(k == NULL);
	CHECK_STR(eb.msg, "PRIVATE KEY (PEM block at line 1): private key is RSA; only ECDSA "
			  "P-256 keys are supported");
	k = read_key("e-rsa1.pem", &eb);
	CHECK(k == NULL);
	CHECK_STR(eb.msg, "private key is RSA (PEM block at line 1); only ECDSA P-256 keys are "
			  "supported");

	/* CSRs with unusable keys */
	{
		struct x509_csr *csr;
		size_t n;
		char *t;
		REQUIRE(sh("openssl req -new -key e-p384.pem -subj /CN=a -out e-c384.csr && "
			   "openssl req -new -key e-rsa8.pem -subj /CN=a -out e-crsa.csr") == 0);
		t = slurp("e-c384.csr", &n);
		CHECK_INT(x509_csr_parse_pem(t, n, &csr, &eb), -E_UNSUPP);
		CHECK_STR(eb.msg, "CSR: CSR key is ECDSA secp384r1; only ECDSA P-256 keys are "
				  "supported");
		free(t);
		t = slurp("e-crsa.csr", &n);
		CHECK_INT(x509_csr_parse_pem(t, n, &csr, &eb), -E_UNSUPP);
		CHECK_STR(eb.msg,
			  "CSR: CSR key is RSA 2048-bit; only ECDSA P-256 keys are supported");
		free(t);
	}

	/* leaves, each with one defect, signed by our root */
	CHECK_STR(openssl_leaf_verdict("ok", "e-p256.pem", good, "CA:FALSE", "e-root.pem",
				       "e-rootkey.pem", 0, &eb),
		  "accepted");
	CHECK_STR(openssl_leaf_verdict("p384", "e-p384.pem", good, "CA:FALSE", "e-root.pem",
				       "e-rootkey.pem", 0, &eb),
		  "leaf certificate key is ECDSA secp384r1; only ECDSA P-256 keys are supported");
	CHECK_STR(openssl_leaf_verdict("rsa", "e-rsa8.pem", good, "CA:FALSE", "e-root.pem",
				       "e-rootkey.pem", 0, &eb),
		  "leaf certificate key is RSA 2048-bit; only ECDSA P-256 keys are supported");
	CHECK_STR(openssl_leaf_verdict("two", "e-p256.pem",
				       "URI:" ID ",URI:spiffe://cluster.local/ns/default/sa/bar",
				       "CA:FALSE", "e-root.pem", "e-rootkey.pem", 0, &eb),
		  "leaf certificate has 2 URI SANs; an X.509-SVID must have exactly one "
		  "(X.509-SVID §2)");
	CHECK_STR(openssl_leaf_verdict("ca", "e-p256.pem", good, "CA:TRUE", "e-root.pem",
				       "e-rootkey.pem", 0, &eb),
		  "leaf certificate is a CA (basicConstraints CA:TRUE); an X.509-SVID leaf must "
		  "have CA:FALSE (X.509-SVID §4.1)");
	CHECK_CONTAINS(openssl_leaf_verdict("exp", "e-p256.pem", good, "CA:FALSE", "e-root.pem",
					    "e-rootkey.pem", 3 * 86400, &eb),
		       "certificate expired: leaf (" ID ") expired at ");
	CHECK_CONTAINS(openssl_leaf_verdict("nyv", "e-p256.pem", good, "CA:FALSE", "e-root.pem",
					    "e-rootkey.pem", -86400, &eb),
		       "certificate not yet valid: leaf (" ID ") is valid from ");
	CHECK_STR(openssl_leaf_verdict("td", "e-p256.pem", "URI:spiffe://other.domain/ns/a/sa/b",
				       "CA:FALSE", "e-root.pem", "e-rootkey.pem", 0, &eb),
		  "wrong trust domain: leaf SPIFFE ID 'spiffe://other.domain/ns/a/sa/b' is in "
		  "trust domain 'other.domain', expected 'cluster.local'");
	/* signed by a different (openssl) root than the one we trust */
	REQUIRE(sh("openssl ecparam -name prime256v1 -genkey -noout -out e-ok.key && openssl req "
		   "-x509 -new -key e-ok.key -subj /O=elsewhere -days 30 -out e-other.pem") == 0);
	CHECK_STR(openssl_leaf_verdict("unk", "e-p256.pem", good, "CA:FALSE", "e-other.pem",
				       "e-ok.key", 0, &eb),
		  "unknown root: no trusted root or intermediate 'O=elsewhere' issued leaf (" ID
		  ")");
	/* the same name as our root but another key: AKI differs, so also unknown; without AKI
	 * the names match and the signature check fails */
	REQUIRE(sh("openssl req -x509 -new -key e-ok.key -subj /O=cluster.local -days 30 -out "
		   "e-imp.pem") == 0);
	spit_str("e-noaki.cnf",
		 "[v]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
		 "subjectAltName=critical,URI:" ID "\n"
		 "subjectKeyIdentifier=none\nauthorityKeyIdentifier=none\n");
	REQUIRE(sh("openssl req -new -key e-p256.pem -subj / -out e-imp.csr && openssl x509 -req "
		   "-in e-imp.csr -CA e-imp.pem -CAkey e-ok.key -set_serial 0x78 -days 1 -extfile "
		   "e-noaki.cnf -extensions v -out e-imp-leaf.pem") == 0);
	{
		struct x509_cert *leaf = read_cert("e-imp-leaf.pem", &eb);
		REQUIRE(leaf != NULL);
		CHECK_INT(x509_verify_chain(leaf, NULL, 0, &o.root, 1, now_s(), TD, &eb),
			  -E_CRYPTO);
		CHECK_STR(eb.msg, "bad signature: leaf (" ID ") is not signed by the key of "
				  "'O=cluster.local'");
		x509_cert_free(leaf);
	}
	ours_fini(&o);
}

/* Istio's plug-in `cacerts` layout: ca-cert.pem (the signing intermediate), ca-key.pem,
 * cert-chain.pem (intermediate up to the root), root-cert.pem. */
TEST(cacerts_layout_round_trip)
{
	struct ours o;
	struct errbuf eb;
	struct x509_cert *ca, *leaf;
	struct x509_key *cakey;
	struct x509_chain chain, roots;
	size_t n;
	char *t;
	int64_t now = now_s();

	ours_init(&o, now);
	REQUIRE(sh("mkdir -p f-cacerts") == 0);
	write_cert("f-cacerts/ca-cert.pem", o.inter);
	write_key("f-cacerts/ca-key.pem", o.ik, X509_KEY_SEC1);
	write_certs("f-cacerts/cert-chain.pem", o.inter, o.root);
	write_certs("f-cacerts/root-cert.pem", o.root, NULL);

	ca = read_cert("f-cacerts/ca-cert.pem", &eb);
	cakey = read_key("f-cacerts/ca-key.pem", &eb);
	REQUIRE(ca && cakey);
	t = slurp("f-cacerts/cert-chain.pem", &n);
	REQUIRE(t && x509_chain_parse_pem(t, n, &chain, &eb) == 0);
	free(t);
	t = slurp("f-cacerts/root-cert.pem", &n);
	REQUIRE(t && x509_chain_parse_pem(t, n, &roots, &eb) == 0);
	free(t);
	CHECK_INT(chain.n, 2);
	CHECK_INT(roots.n, 1);
	struct x509_leaf_req req = {.pub = x509_key_public(o.lk), .spiffe_id = ID, .now = now};
	REQUIRE(x509_issue_leaf(ca, cakey, &req, &leaf, NULL, &eb) == 0);
	CHECK_INT(x509_verify_chain(leaf, chain.v, chain.n, roots.v, roots.n, now, TD, &eb), 0);
	CHECK_STR(eb.msg, "");
	write_cert("f-leaf.pem", leaf);
	CHECK_INT(sh("openssl verify -x509_strict -purpose sslclient -CAfile "
		     "f-cacerts/root-cert.pem -untrusted f-cacerts/cert-chain.pem f-leaf.pem"),
		  0);
	x509_cert_free(leaf);
	x509_cert_free(ca);
	x509_key_free(cakey);
	x509_chain_fini(&chain);
	x509_chain_fini(&roots);
	ours_fini(&o);
}
