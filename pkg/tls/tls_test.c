/* Tests for pkg/tls without sockets: configs, and handshakes pumped between two conns in memory. */
#include "pkg/tls/tls_int.h"
#include "pkg/tls/tls_test.h"
#include "test/unit.h"

#include <stdlib.h>
#include <unistd.h>

/* ---- fixtures -------------------------------------------------------------------------------- */

static const char FIXTURE_SH[] =
	"set -e\n"
	"cd \"$1\"\n"
	"root() { openssl ecparam -name prime256v1 -genkey -noout -out $1.key\n"
	"  openssl req -x509 -new -key $1.key -subj \"/O=$2\" -days 3650 -out $1.pem \\\n"
	"    -addext basicConstraints=critical,CA:TRUE -addext "
	"keyUsage=critical,keyCertSign,cRLSign; }\n"
	"# leaf NAME CA SAN [keygen args]: an X.509-SVID-like leaf\n"
	"leaf() { n=$1; ca=$2; san=$3; shift 3\n"
	"  if [ $# -gt 0 ]; then openssl genpkey \"$@\" -out $n.key 2>/dev/null; \\\n"
	"  else openssl ecparam -name prime256v1 -genkey -noout -out $n.key; fi\n"
	"  openssl req -new -x509 -key $n.key -subj / -CA $ca.pem -CAkey $ca.key -days 30 \\\n"
	"    -out $n.pem -addext \"subjectAltName=critical,$san\" \\\n"
	"    -addext basicConstraints=critical,CA:FALSE \\\n"
	"    -addext keyUsage=critical,digitalSignature,keyEncipherment \\\n"
	"    -addext extendedKeyUsage=serverAuth,clientAuth; }\n"
	"root root cluster.local\n"
	"root other other.local\n"
	"openssl ecparam -name prime256v1 -genkey -noout -out inter.key\n"
	"openssl req -new -x509 -key inter.key -subj /O=cluster.local/CN=intermediate -CA root.pem "
	"\\\n"
	"  -CAkey root.key -days 365 -out inter.pem -addext basicConstraints=critical,CA:TRUE \\\n"
	"  -addext keyUsage=critical,keyCertSign,cRLSign\n"
	"leaf server root URI:spiffe://cluster.local/ns/a/sa/b\n"
	"leaf client root URI:spiffe://cluster.local/ns/c/sa/d\n"
	"leaf deep inter URI:spiffe://cluster.local/ns/e/sa/f\n"
	"leaf named root DNS:ca.ambient.test,URI:spiffe://cluster.local/ns/ambient/sa/ca\n"
	"leaf stranger other URI:spiffe://other.local/ns/x/sa/y\n"
	"leaf rsa root DNS:localhost -algorithm RSA -pkeyopt rsa_keygen_bits:2048\n"
	"leaf p384 root DNS:localhost -algorithm EC -pkeyopt ec_paramgen_curve:P-384\n"
	"for n in root other inter server client deep named stranger rsa p384; do\n"
	"  openssl x509 -in $n.pem -outform der -out $n.der\n"
	"done\n"
	"for n in root other inter server client deep named stranger p384; do\n"
	"  openssl ec -in $n.key -outform der -out $n.kder 2>/dev/null\n"
	"done\n";

/* Every fixture file, read into memory once: unit_tmpdir() is per test, so the files are
 * written back into the current test's directory when a test wants a path (tt_path). */
#define TT_NAMES "root other inter server client deep named stranger rsa p384"
static const char *const tt_exts[] = {".pem", ".key", ".der", ".kder"};

struct tt_file {
	char name[40];
	uint8_t *p;
	size_t n;
};
static struct tt_file tt_files[64];
static size_t tt_nfiles;

static bool read_file(const char *path, uint8_t **p, size_t *n)
{
	FILE *f = fopen(path, "rb");
	long len;

	*p = NULL;
	*n = 0;
	if (!f)
		return false;
	if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return false;
	}
	*p = xmalloc((size_t)len);
	*n = fread(*p, 1, (size_t)len, f);
	fclose(f);
	return *n == (size_t)len;
}

static const struct tt_file *tt_find(const char *name, const char *ext)
{
	char full[40];

	snprintf(full, sizeof(full), "%s%s", name, ext);
	for (size_t i = 0; i < tt_nfiles; i++) {
		if (strcmp(tt_files[i].name, full) == 0)
			return &tt_files[i];
	}
	return NULL;
}

static bool tt_generate(void)
{
	char cmd[1400], dir[300], names[] = TT_NAMES;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s", unit_tmpdir());
	snprintf(cmd, sizeof(cmd), "%s/fixtures.sh", dir);
	f = fopen(cmd, "w");
	if (!f)
		return false;
	fputs(FIXTURE_SH, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "sh '%s/fixtures.sh' '%s' >'%s/fixtures.log' 2>&1", dir, dir,
		 dir);
	if (system(cmd) != 0) {
		snprintf(cmd, sizeof(cmd), "cat '%s/fixtures.log' >&2", dir);
		if (system(cmd) != 0)
			return false;
		return false;
	}
	for (char *save = NULL, *n = strtok_r(names, " ", &save); n;
	     n = strtok_r(NULL, " ", &save)) {
		for (size_t e = 0; e < ARRAY_LEN(tt_exts); e++) {
			struct tt_file *tf = &tt_files[tt_nfiles];
			char path[600];

			snprintf(tf->name, sizeof(tf->name), "%s%s", n, tt_exts[e]);
			snprintf(path, sizeof(path), "%s/%s", dir, tf->name);
			if (read_file(path, &tf->p, &tf->n))
				tt_nfiles++;
			else
				free(tf->p);
		}
	}
	return tt_nfiles >= 38; /* rsa has no .kder */
}

bool tt_fixtures(void)
{
	static int state; /* 0 not yet, 1 ok, -1 failed */

	if (!state)
		state = tt_generate() ? 1 : -1;
	if (state < 0)
		unit_fail(__FILE__, __LINE__, "openssl fixture generation failed");
	return state > 0;
}

const char *tt_path(const char *name, const char *ext)
{
	static char bufs[4][600];
	static int next;
	char *b = bufs[next++ % 4];
	const struct tt_file *tf = tt_fixtures() ? tt_find(name, ext) : NULL;
	FILE *f;

	snprintf(b, sizeof(bufs[0]), "%s/%s%s", unit_tmpdir(), name, ext);
	if (tf && access(b, R_OK) != 0 && (f = fopen(b, "wb"))) {
		fwrite(tf->p, 1, tf->n, f);
		fclose(f);
	}
	return b;
}

br_x509_certificate tt_cert(const char *name)
{
	const struct tt_file *tf = tt_fixtures() ? tt_find(name, ".der") : NULL;

	if (!tf) {
		unit_fail(__FILE__, __LINE__, "no fixture %s.der", name);
		return (br_x509_certificate){NULL, 0};
	}
	return (br_x509_certificate){tf->p, tf->n};
}

bool tt_cred_load(struct tt_cred *c, const char *leaf, const char *inter)
{
	br_skey_decoder_context dc;
	const br_ec_private_key *sk;
	const struct tt_file *tf;

	memset(c, 0, sizeof(*c));
	c->chain[c->chain_len++] = tt_cert(leaf);
	if (inter)
		c->chain[c->chain_len++] = tt_cert(inter);
	tf = tt_fixtures() ? tt_find(leaf, ".kder") : NULL;
	if (!c->chain[0].data || !tf) {
		unit_fail(__FILE__, __LINE__, "no fixture %s.kder", leaf);
		return false;
	}
	br_skey_decoder_init(&dc);
	br_skey_decoder_push(&dc, tf->p, tf->n);
	sk = br_skey_decoder_get_ec(&dc);
	if (!sk || sk->xlen > sizeof(c->kbuf)) {
		unit_fail(__FILE__, __LINE__, "%s.kder: not an EC key (error %d)", leaf,
			  br_skey_decoder_last_error(&dc));
		return false;
	}
	memcpy(c->kbuf, sk->x, sk->xlen);
	c->key = (br_ec_private_key){sk->curve, c->kbuf, sk->xlen};
	return true;
}

void tt_cred_fini(struct tt_cred *c)
{
	secure_wipe(c, sizeof(*c));
}

int tt_verify_fn(void *arg, const struct tls_peer *peer, char *reason, size_t cap)
{
	struct tt_verify *v = arg;

	v->calls++;
	snprintf(v->uri, sizeof(v->uri), "%s", peer->uri);
	v->chain_len = peer->chain_len;
	v->leaf_len = peer->leaf.n;
	v->peer_is_server = peer->peer_is_server;
	if (peer->chain_len == 0 || peer->chain[0].p != peer->leaf.p)
		return snprintf(reason, cap, "inconsistent peer"), 1;
	if (v->reject) {
		snprintf(reason, cap, "%s", v->reject);
		return 1;
	}
	return 0;
}

static const char *const ALPN_H2[] = {"h2"};
static br_x509_certificate root_anchor[1];

void tt_server_opts(struct tls_server_opts *o, struct tt_cred *cred)
{
	root_anchor[0] = tt_cert("root");
	*o = (struct tls_server_opts){
		.chain = cred->chain,
		.chain_len = cred->chain_len,
		.key = &cred->key,
		.alpn = ALPN_H2,
		.alpn_len = 1,
		.alpn_required = true,
		.client_auth = TLS_CLIENT_AUTH_REQUIRE,
		.anchor_certs = root_anchor,
		.anchor_certs_len = 1,
	};
}

void tt_client_opts(struct tls_client_opts *o, struct tt_cred *cred)
{
	root_anchor[0] = tt_cert("root");
	*o = (struct tls_client_opts){
		.anchor_certs = root_anchor,
		.anchor_certs_len = 1,
		.chain = cred ? cred->chain : NULL,
		.chain_len = cred ? cred->chain_len : 0,
		.key = cred ? &cred->key : NULL,
		.alpn = ALPN_H2,
		.alpn_len = 1,
		.alpn_required = true,
	};
}

/* ---- the in-memory wire ---------------------------------------------------------------------- */

/* Moves ciphertext from one conn to the other, at most `chunk` bytes per push (0: no limit). */
static bool xfer(struct tls_conn *from, struct tls_conn *to, size_t chunk)
{
	bool progress = false;
	const uint8_t *p;
	size_t len;

	while ((p = tls_conn_pull_cipher(from, &len))) {
		size_t k = tls_conn_push_cipher(to, p, chunk ? MIN(len, chunk) : len);

		if (k == 0)
			break;
		tls_conn_cipher_done(from, k);
		progress = true;
	}
	return progress;
}

static void wire(struct tls_conn *a, struct tls_conn *b, size_t chunk)
{
	for (int i = 0; i < 100000; i++) {
		bool pa = xfer(a, b, chunk);
		bool pb = xfer(b, a, chunk);

		if (!pa && !pb)
			return;
	}
	unit_fail(__FILE__, __LINE__, "wire: no quiescence");
}

/* One client/server pair over the in-memory wire. */
struct pair {
	struct tls_conn cli, srv;
	struct tls_config *ccfg, *scfg;
	struct tt_cred scred, ccred;
};

/* Builds both configs from the fixture names (ccred may be NULL: no client certificate); the
 * callers adjust the opts through the hooks before the configs are made. */
typedef void (*pair_hook)(struct tls_server_opts *so, struct tls_client_opts *co);

static bool pair_init(struct pair *p, const char *sleaf, const char *cleaf, pair_hook hook)
{
	struct tls_server_opts so;
	struct tls_client_opts co;
	struct errbuf eb = {0};

	memset(p, 0, sizeof(*p));
	if (!tt_fixtures() || !tt_cred_load(&p->scred, sleaf, NULL))
		return false;
	if (cleaf && !tt_cred_load(&p->ccred, cleaf, NULL))
		return false;
	tt_server_opts(&so, &p->scred);
	tt_client_opts(&co, cleaf ? &p->ccred : NULL);
	if (hook)
		hook(&so, &co);
	p->scfg = tls_config_new_server(&so, &eb);
	if (!p->scfg) {
		unit_fail(__FILE__, __LINE__, "server config: %s", eb.msg);
		return false;
	}
	p->ccfg = tls_config_new_client(&co, &eb);
	if (!p->ccfg) {
		unit_fail(__FILE__, __LINE__, "client config: %s", eb.msg);
		return false;
	}
	return tls_conn_init_server(&p->srv, p->scfg) == 0 &&
	       tls_conn_init_client(&p->cli, p->ccfg, NULL) == 0;
}

static void pair_fini(struct pair *p)
{
	tls_conn_fini(&p->cli);
	tls_conn_fini(&p->srv);
	tls_config_unref(p->ccfg);
	tls_config_unref(p->scfg);
	tt_cred_fini(&p->scred);
	tt_cred_fini(&p->ccred);
}

static bool both_done(const struct pair *p)
{
	return (tls_conn_state(&p->cli) & TLS_ST_DONE) && (tls_conn_state(&p->srv) & TLS_ST_DONE);
}

static bool failed(const struct tls_conn *c)
{
	return (tls_conn_state(c) & (TLS_ST_ERROR | TLS_ST_CLOSED)) ==
	       (TLS_ST_ERROR | TLS_ST_CLOSED);
}

/* ---- configs --------------------------------------------------------------------------------- */

TEST(config_rejects_bad_identities)
{
	struct tt_cred srv, p384, cli;
	struct tls_server_opts so;
	struct tls_client_opts co;
	struct errbuf eb = {0};
	br_x509_certificate bogus = {(unsigned char *)"not a certificate", 17};
	struct tls_config *cfg;

	REQUIRE(tt_fixtures() && tt_cred_load(&srv, "server", NULL) &&
		tt_cred_load(&p384, "p384", NULL) && tt_cred_load(&cli, "client", NULL));

	tt_server_opts(&so, &srv);
	so.key = &cli.key; /* the client's key with the server's certificate */
	CHECK(tls_config_new_server(&so, &eb) == NULL);
	CHECK_CONTAINS(eb.msg, "certificate 0 does not match the private key");

	tt_server_opts(&so, &p384);
	CHECK(tls_config_new_server(&so, &eb) == NULL);
	CHECK_CONTAINS(eb.msg, "private key is not EC P-256");

	tt_server_opts(&so, &srv);
	so.chain_len = 0;
	CHECK(tls_config_new_server(&so, &eb) == NULL);
	CHECK_CONTAINS(eb.msg, "a certificate chain is required");

	tt_server_opts(&so, &srv);
	so.anchor_certs = &bogus;
	CHECK(tls_config_new_server(&so, &eb) == NULL);
	CHECK_CONTAINS(eb.msg, "trust anchor certificate 0: not a valid certificate");

	tt_server_opts(&so, &srv);
	so.anchor_certs_len = 0;
	CHECK(tls_config_new_server(&so, &eb) == NULL);
	CHECK_CONTAINS(eb.msg, "client certificates need trust anchors");

	tt_server_opts(&so, &srv);
	so.alpn_len = 0;
	CHECK(tls_config_new_server(&so, &eb) == NULL);
	CHECK_CONTAINS(eb.msg, "alpn_required needs at least one ALPN name");

	tt_client_opts(&co, NULL);
	co.anchor_certs_len = 0;
	CHECK(tls_config_new_client(&co, &eb) == NULL);
	CHECK_STR(eb.msg, "TLS client config: trust anchors are required");

	tt_client_opts(&co, NULL);
	co.alpn = (const char *const[]){""};
	CHECK(tls_config_new_client(&co, &eb) == NULL);
	CHECK_CONTAINS(eb.msg, "ALPN name 0 must be 1..255 bytes");

	/* Roles are checked when a conn starts. */
	tt_client_opts(&co, NULL);
	cfg = tls_config_new_client(&co, &eb);
	REQUIRE(cfg);
	{
		struct tls_conn c;

		CHECK_INT(tls_conn_init_server(&c, cfg), -E_INVAL);
		tls_conn_fini(&c);
		CHECK(!tls_config_is_server(cfg));
	}
	CHECK(tls_config_ref(cfg) == cfg);
	tls_config_unref(cfg);
	tls_config_unref(cfg);
	tls_config_unref(NULL);
	tt_cred_fini(&srv);
	tt_cred_fini(&p384);
	tt_cred_fini(&cli);
}

TEST(config_copies_everything_it_is_given)
{
	struct tt_cred srv;
	struct tls_server_opts so;
	struct tls_config *cfg;
	struct errbuf eb = {0};
	char name[] = "h2";
	const char *alpn[] = {name};
	uint8_t der[4096];
	br_x509_certificate chain[1];

	REQUIRE(tt_cred_load(&srv, "server", NULL) && srv.chain[0].data_len <= sizeof(der));
	memcpy(der, srv.chain[0].data, srv.chain[0].data_len);
	chain[0] = (br_x509_certificate){der, srv.chain[0].data_len};
	tt_server_opts(&so, &srv);
	so.chain = chain;
	so.alpn = alpn;
	cfg = tls_config_new_server(&so, &eb);
	REQUIRE(cfg);
	/* Scribble over the caller's copies: the config must not notice. */
	memset(der, 0, sizeof(der));
	name[0] = 'x';
	memset(srv.kbuf, 0, sizeof(srv.kbuf));
	CHECK_STR(cfg->alpn[0], "h2");
	CHECK(cfg->chain[0].data != der);
	CHECK_MEM(cfg->chain[0].data, tt_cert("server").data, cfg->chain[0].data_len);
	CHECK_INT(cfg->ntas, 1);
	CHECK(cfg->tas[0].flags & BR_X509_TA_CA);
	CHECK(cfg->nsuites == 3);
	/* Hardware AES when the CPU has it, the constant-time 64-bit code otherwise. */
	if (br_aes_x86ni_ctr_get_vtable() && br_ghash_pclmul_get()) {
		CHECK(cfg->hw_aes && tls_config_hw_aes(cfg));
		CHECK(cfg->aes_ctr == br_aes_x86ni_ctr_get_vtable());
		CHECK(cfg->ghash == br_ghash_pclmul_get());
	} else {
		CHECK(!cfg->hw_aes);
		CHECK(cfg->aes_ctr == &br_aes_ct64_ctr_vtable);
	}
	CHECK(cfg->suites[0] == (cfg->hw_aes ? BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
					     : BR_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256));
	tls_config_unref(cfg);
	tt_cred_fini(&srv);
}

/* ---- handshakes ------------------------------------------------------------------------------ */

static struct tt_verify vcli, vsrv;

static void hook_record(struct tls_server_opts *so, struct tls_client_opts *co)
{
	memset(&vcli, 0, sizeof(vcli));
	memset(&vsrv, 0, sizeof(vsrv));
	so->verify = tt_verify_fn;
	so->verify_arg = &vsrv;
	co->verify = tt_verify_fn;
	co->verify_arg = &vcli;
}

TEST(mtls_h2_handshake_with_spiffe_leaves)
{
	struct pair p;
	struct slice s;

	REQUIRE(pair_init(&p, "server", "client", hook_record));
	CHECK(tls_conn_state(&p.cli) & TLS_ST_CIPHER_OUT); /* ClientHello */
	CHECK(!(tls_conn_state(&p.cli) & TLS_ST_DONE));
	wire(&p.cli, &p.srv, 0);
	REQUIRE(both_done(&p));
	CHECK_INT(tls_conn_error(&p.cli), 0);
	CHECK_INT(tls_conn_error(&p.srv), 0);
	CHECK_STR(tls_conn_reason(&p.cli), "");
	CHECK_STR(tls_conn_alpn(&p.cli), "h2");
	CHECK_STR(tls_conn_alpn(&p.srv), "h2");
	CHECK(tls_conn_cipher_suite(&p.cli) == tls_conn_cipher_suite(&p.srv));
	CHECK(tls_conn_cipher_suite(&p.cli) == p.scfg->suites[0]);
	CHECK(strstr(tls_suite_name(tls_conn_cipher_suite(&p.cli)), "ECDHE-ECDSA-") != NULL);
	CHECK_INT(p.cli.u.eng.session.version, BR_TLS12);
	/* No SNI by default. */
	CHECK(tls_conn_server_name(&p.srv) == NULL);
	/* Critical SAN, basicConstraints and keyUsage pass BearSSL; the hook saw the leaves. */
	CHECK_INT(vcli.calls, 1);
	CHECK_STR(vcli.uri, "spiffe://cluster.local/ns/a/sa/b");
	CHECK(vcli.peer_is_server);
	CHECK_INT(vsrv.calls, 1);
	CHECK_STR(vsrv.uri, "spiffe://cluster.local/ns/c/sa/d");
	CHECK(!vsrv.peer_is_server);
	s = tls_conn_peer_cert(&p.cli);
	CHECK_INT(s.n, tt_cert("server").data_len);
	CHECK(s.p && memcmp(s.p, tt_cert("server").data, s.n) == 0);
	s = tls_conn_peer_cert(&p.srv);
	CHECK_INT(s.n, tt_cert("client").data_len);
	CHECK(s.p && memcmp(s.p, tt_cert("client").data, s.n) == 0);
	CHECK_STR(tls_conn_peer_uri(&p.srv), "spiffe://cluster.local/ns/c/sa/d");
	CHECK_INT(tls_conn_peer_chain_len(&p.srv), 1);
	/* Nothing left to say, both can take data. */
	CHECK(!(tls_conn_state(&p.cli) & (TLS_ST_CIPHER_OUT | TLS_ST_ERROR | TLS_ST_EOF)));
	CHECK(tls_conn_state(&p.cli) & TLS_ST_PLAIN_OUT);
	CHECK(tls_conn_state(&p.srv) & TLS_ST_CIPHER_IN);
	pair_fini(&p);
}

static void hook_chain(struct tls_server_opts *so, struct tls_client_opts *co)
{
	static struct tt_cred deep;

	hook_record(so, co);
	if (tt_cred_load(&deep, "deep", "inter")) {
		so->chain = deep.chain;
		so->chain_len = deep.chain_len;
		so->key = &deep.key;
	}
}

TEST(intermediate_chain_in_tiny_pieces)
{
	struct pair p;

	REQUIRE(pair_init(&p, "server", "client", hook_chain));
	wire(&p.cli, &p.srv, 7); /* 7-byte pushes: records split everywhere */
	REQUIRE(both_done(&p));
	CHECK_INT(tls_conn_peer_chain_len(&p.cli), 2);
	CHECK_INT(vcli.chain_len, 2);
	CHECK_STR(tls_conn_peer_uri(&p.cli), "spiffe://cluster.local/ns/e/sa/f");
	CHECK_INT(tls_conn_peer_chain(&p.cli, 1).n, tt_cert("inter").data_len);
	CHECK(tls_conn_peer_chain(&p.cli, 2).p == NULL);
	pair_fini(&p);
}

static void hook_long_chain(struct tls_server_opts *so, struct tls_client_opts *co)
{
	static struct tt_cred deep;
	static br_x509_certificate chain[TLS_MAX_CHAIN_CERTS + 1];

	hook_record(so, co);
	if (!tt_cred_load(&deep, "deep", "inter"))
		return;
	/* The intermediate over and over: valid DER, one certificate too many. */
	chain[0] = deep.chain[0];
	for (size_t i = 1; i < ARRAY_LEN(chain); i++)
		chain[i] = deep.chain[1];
	so->chain = chain;
	so->chain_len = ARRAY_LEN(chain);
	so->key = &deep.key;
}

TEST(overlong_peer_chain_is_refused)
{
	struct pair p;

	REQUIRE(pair_init(&p, "server", "client", hook_long_chain));
	wire(&p.cli, &p.srv, 0);
	CHECK_INT(tls_conn_error(&p.cli), TLS_ERR_CHAIN_LIMIT);
	CHECK_STR(tls_conn_reason(&p.cli), "peer certificate chain too long");
	CHECK_INT(tls_conn_error(&p.srv), BR_ERR_RECV_FATAL_ALERT + 42);
	CHECK_INT(vcli.calls, 0);
	pair_fini(&p);
}

static void hook_alpn_http11(struct tls_server_opts *so, struct tls_client_opts *co)
{
	static const char *const http11[] = {"http/1.1"};

	(void)so;
	co->alpn = http11;
}

TEST(alpn_mismatch_fails_both_sides)
{
	struct pair p;

	REQUIRE(pair_init(&p, "server", "client", hook_alpn_http11));
	wire(&p.cli, &p.srv, 0);
	CHECK(failed(&p.srv));
	CHECK(failed(&p.cli));
	CHECK_INT(tls_conn_error(&p.srv), TLS_ERR_ALPN);
	CHECK_STR(tls_conn_reason(&p.srv), "ALPN mismatch (no common protocol)");
	CHECK_INT(tls_conn_error(&p.cli), BR_ERR_RECV_FATAL_ALERT + 120);
	CHECK_STR(tls_conn_reason(&p.cli), "ALPN mismatch (peer sent no_application_protocol)");
	CHECK(tls_conn_alpn(&p.cli) == NULL);
	pair_fini(&p);
}

static void hook_client_no_alpn(struct tls_server_opts *so, struct tls_client_opts *co)
{
	(void)so;
	co->alpn = NULL;
	co->alpn_len = 0;
	co->alpn_required = false;
}

TEST(alpn_required_by_server_and_client_sends_none)
{
	struct pair p;

	REQUIRE(pair_init(&p, "server", "client", hook_client_no_alpn));
	wire(&p.cli, &p.srv, 0);
	CHECK_INT(tls_conn_error(&p.srv), TLS_ERR_ALPN);
	CHECK_INT(tls_conn_error(&p.cli), BR_ERR_RECV_FATAL_ALERT + 40);
	CHECK_CONTAINS(tls_conn_reason(&p.cli), "handshake_failure");
	pair_fini(&p);
}

static void hook_server_no_alpn(struct tls_server_opts *so, struct tls_client_opts *co)
{
	(void)co;
	so->alpn = NULL;
	so->alpn_len = 0;
	so->alpn_required = false;
}

TEST(alpn_required_by_client_and_server_ignores_it)
{
	struct pair p;

	REQUIRE(pair_init(&p, "server", "client", hook_server_no_alpn));
	wire(&p.cli, &p.srv, 0);
	CHECK_INT(tls_conn_error(&p.cli), TLS_ERR_ALPN);
	/* Our plaintext alert reached the server. */
	CHECK_INT(tls_conn_error(&p.srv), BR_ERR_RECV_FATAL_ALERT + 120);
	CHECK(tls_conn_peer_cert(&p.cli).p == NULL);
	pair_fini(&p);
}

/* A handshake whose client runs at `when` (Unix s); returns the client's error. */
static int client_error_at(const char *sleaf, int64_t when, int *srv_err, char *reason, size_t cap)
{
	struct pair p;
	int e;

	if (!pair_init(&p, sleaf, "client", hook_record))
		return -1;
	if (when)
		tls_conn_set_time(&p.cli, when);
	wire(&p.cli, &p.srv, 0);
	e = tls_conn_error(&p.cli);
	*srv_err = tls_conn_error(&p.srv);
	snprintf(reason, cap, "%s", tls_conn_reason(&p.cli));
	if (!failed(&p.cli) || vcli.calls != 0)
		e = -2;
	pair_fini(&p);
	return e;
}

TEST(expired_and_untrusted_certs_have_distinct_reasons)
{
	char r1[TLS_REASON_SIZE], r2[TLS_REASON_SIZE];
	int s1, s2;
	int64_t now = time_real_ms() / 1000;

	/* 100 days on, the 30-day leaf has expired; 10 days back it was not yet valid. */
	CHECK_INT(client_error_at("server", now + 100 * 86400, &s1, r1, sizeof(r1)),
		  BR_ERR_X509_EXPIRED);
	CHECK_STR(r1, "certificate expired or not yet valid");
	CHECK_INT(s1, BR_ERR_RECV_FATAL_ALERT + 45); /* certificate_expired */
	CHECK_INT(client_error_at("server", now - 10 * 86400, &s1, r1, sizeof(r1)),
		  BR_ERR_X509_EXPIRED);

	CHECK_INT(client_error_at("stranger", 0, &s2, r2, sizeof(r2)), BR_ERR_X509_NOT_TRUSTED);
	CHECK_STR(r2, "certificate not trusted (unknown CA)");
	CHECK_INT(s2, BR_ERR_RECV_FATAL_ALERT + 48); /* unknown_ca */
	CHECK(strcmp(r1, r2) != 0);
}

TEST(server_name_is_sent_and_checked_when_given)
{
	struct pair p;

	/* The SPIFFE-only leaf has no DNS name: a client asking for one refuses it. */
	REQUIRE(pair_init(&p, "server", "client", hook_record));
	tls_conn_fini(&p.cli);
	REQUIRE(tls_conn_init_client(&p.cli, p.ccfg, "ca.ambient.test") == 0);
	wire(&p.cli, &p.srv, 0);
	CHECK_INT(tls_conn_error(&p.cli), BR_ERR_X509_BAD_SERVER_NAME);
	CHECK_STR(tls_conn_reason(&p.cli), "certificate does not match the server name");
	CHECK_STR(tls_conn_server_name(&p.srv), "ca.ambient.test");
	pair_fini(&p);

	REQUIRE(pair_init(&p, "named", "client", hook_record));
	tls_conn_fini(&p.cli);
	REQUIRE(tls_conn_init_client(&p.cli, p.ccfg, "ca.ambient.test") == 0);
	wire(&p.cli, &p.srv, 0);
	CHECK(both_done(&p));
	CHECK_STR(tls_conn_server_name(&p.srv), "ca.ambient.test");
	CHECK_STR(tls_conn_peer_uri(&p.cli), "spiffe://cluster.local/ns/ambient/sa/ca");
	pair_fini(&p);
}

TEST(verify_callback_rejection_reason_is_kept)
{
	struct pair p;

	REQUIRE(pair_init(&p, "server", "client", hook_record));
	vcli.reject = "not one of the expected identities";
	wire(&p.cli, &p.srv, 0);
	CHECK_INT(vcli.calls, 1);
	CHECK_INT(tls_conn_error(&p.cli), TLS_ERR_REJECTED);
	CHECK_STR(tls_conn_reason(&p.cli),
		  "peer certificate rejected: not one of the expected identities");
	CHECK_INT(tls_error_class(tls_conn_error(&p.cli)), E_DENIED);
	CHECK_INT(tls_conn_error(&p.srv), BR_ERR_RECV_FATAL_ALERT + 42); /* bad_certificate */
	CHECK(tls_conn_peer_cert(&p.cli).p == NULL); /* refused: not reported as the peer */
	pair_fini(&p);

	/* A per-connection hook replaces the config's. */
	REQUIRE(pair_init(&p, "server", "client", hook_record));
	{
		struct tt_verify mine = {.reject = "wrong trust domain"};

		tls_conn_set_verify(&p.srv, tt_verify_fn, &mine);
		wire(&p.cli, &p.srv, 0);
		CHECK_INT(mine.calls, 1);
		CHECK_INT(vsrv.calls, 0);
		CHECK_INT(vcli.calls, 1);
		CHECK_STR(mine.uri, "spiffe://cluster.local/ns/c/sa/d");
	}
	CHECK_INT(tls_conn_error(&p.srv), TLS_ERR_REJECTED);
	CHECK_STR(tls_conn_reason(&p.srv), "peer certificate rejected: wrong trust domain");
	/* The server answered with a plaintext alert although the client had already sent its
	 * encrypted Finished: the client has not seen the server's ChangeCipherSpec yet. */
	CHECK_INT(tls_conn_error(&p.cli), BR_ERR_RECV_FATAL_ALERT + 42);
	pair_fini(&p);
}

TEST(client_certificate_required_and_missing_or_untrusted)
{
	struct pair p;

	REQUIRE(pair_init(&p, "server", NULL, hook_record));
	wire(&p.cli, &p.srv, 0);
	CHECK_INT(tls_conn_error(&p.srv), BR_ERR_NO_CLIENT_AUTH);
	CHECK_STR(tls_conn_reason(&p.srv), "no client certificate");
	CHECK_INT(tls_conn_error(&p.cli), BR_ERR_RECV_FATAL_ALERT + 40);
	pair_fini(&p);

	REQUIRE(pair_init(&p, "server", "stranger", hook_record));
	wire(&p.cli, &p.srv, 0);
	CHECK_INT(tls_conn_error(&p.srv), BR_ERR_X509_NOT_TRUSTED);
	CHECK_INT(tls_conn_error(&p.cli), BR_ERR_RECV_FATAL_ALERT + 48);
	pair_fini(&p);
}

static void hook_optional(struct tls_server_opts *so, struct tls_client_opts *co)
{
	hook_record(so, co);
	so->client_auth = TLS_CLIENT_AUTH_OPTIONAL;
}

static void hook_none(struct tls_server_opts *so, struct tls_client_opts *co)
{
	hook_record(so, co);
	so->client_auth = TLS_CLIENT_AUTH_NONE;
	so->anchor_certs_len = 0;
}

TEST(client_certificate_optional_or_not_asked)
{
	struct pair p;

	REQUIRE(pair_init(&p, "server", NULL, hook_optional));
	wire(&p.cli, &p.srv, 0);
	CHECK(both_done(&p));
	CHECK(tls_conn_peer_cert(&p.srv).p == NULL);
	pair_fini(&p);

	/* An untrusted one is ignored, not reported as the peer. */
	REQUIRE(pair_init(&p, "server", "stranger", hook_optional));
	wire(&p.cli, &p.srv, 0);
	CHECK(both_done(&p));
	CHECK(tls_conn_peer_cert(&p.srv).p == NULL);
	CHECK_STR(tls_conn_peer_uri(&p.srv), "");
	pair_fini(&p);

	REQUIRE(pair_init(&p, "server", "client", hook_optional));
	wire(&p.cli, &p.srv, 0);
	CHECK(both_done(&p));
	CHECK_STR(tls_conn_peer_uri(&p.srv), "spiffe://cluster.local/ns/c/sa/d");
	pair_fini(&p);

	/* Not asked: the client's certificate stays home. */
	REQUIRE(pair_init(&p, "server", "client", hook_none));
	wire(&p.cli, &p.srv, 0);
	CHECK(both_done(&p));
	CHECK_INT(vsrv.calls, 0);
	CHECK(tls_conn_peer_cert(&p.srv).p == NULL);
	pair_fini(&p);
}

/* ---- data ------------------------------------------------------------------------------------ */

struct stream {
	const uint8_t *src;
	size_t sent;
	uint8_t *dst;
	size_t got;
	size_t len;
};

static void stream_step(struct stream *out, struct tls_conn *from, struct stream *in)
{
	const uint8_t *p;
	size_t len;

	if (out->sent < out->len) {
		/* Odd-sized writes so records do not line up with anything. */
		size_t r = (size_t)rand_below(20000) + 1;
		size_t want = MIN(out->len - out->sent, r);

		out->sent += tls_conn_push_plain(from, out->src + out->sent, want);
		tls_conn_flush(from);
	}
	while ((p = tls_conn_pull_plain(from, &len))) {
		len = MIN(len, in->len - in->got);
		memcpy(in->dst + in->got, p, len);
		in->got += len;
		tls_conn_plain_done(from, len);
		if (in->got == in->len)
			break;
	}
}

static void transfer_both_ways(struct pair *p, size_t n, size_t chunk)
{
	uint8_t *a = xmalloc(n), *b = xmalloc(n), *ra = xmalloc(n), *rb = xmalloc(n);
	struct stream c2s = {a, 0, ra, 0, n}, s2c = {b, 0, rb, 0, n};
	int rounds = 0;

	rand_bytes(a, n);
	rand_bytes(b, n);
	while ((c2s.got < n || s2c.got < n) && rounds++ < 100000) {
		stream_step(&c2s, &p->cli, &s2c);
		stream_step(&s2c, &p->srv, &c2s);
		wire(&p->cli, &p->srv, chunk);
	}
	CHECK_INT(c2s.got, n);
	CHECK_INT(s2c.got, n);
	CHECK(memcmp(a, ra, n) == 0);
	CHECK(memcmp(b, rb, n) == 0);
	CHECK_INT(tls_conn_error(&p->cli), 0);
	CHECK_INT(tls_conn_error(&p->srv), 0);
	free(a);
	free(b);
	free(ra);
	free(rb);
}

TEST(one_mebibyte_each_way)
{
	struct pair p;

	REQUIRE(pair_init(&p, "server", "client", NULL));
	wire(&p.cli, &p.srv, 0);
	REQUIRE(both_done(&p));
	transfer_both_ways(&p, 1 << 20, 0);
	transfer_both_ways(&p, 100000, 1000); /* and with ciphertext in 1000-byte pieces */
	pair_fini(&p);
}

static void hook_half_duplex_aes(struct tls_server_opts *so, struct tls_client_opts *co)
{
	static const char *const http11[] = {"http/1.1"};

	/* The CA's server: HTTP/1.1, no client certificates; a client offering only h2 gets
	 * no ALPN rather than a failure when neither side requires it. */
	so->alpn = http11;
	so->half_duplex = true;
	so->aes_only = true;
	so->client_auth = TLS_CLIENT_AUTH_NONE;
	so->alpn_required = false;
	co->alpn_required = false;
	co->aes_only = true;
}

TEST(half_duplex_server_request_response)
{
	struct pair p;
	static const char req[] = "GET /v1/roots HTTP/1.1\r\nHost: ca\r\n\r\n";
	char got[256] = "";
	size_t len, n = 0;
	const uint8_t *q;

	REQUIRE(pair_init(&p, "server", NULL, hook_half_duplex_aes));
	wire(&p.cli, &p.srv, 0);
	REQUIRE(both_done(&p));
	CHECK(tls_conn_cipher_suite(&p.srv) == BR_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 ||
	      tls_conn_cipher_suite(&p.srv) == BR_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384);
	for (int round = 0; round < 3; round++) {
		CHECK_INT(tls_conn_push_plain(&p.cli, req, strlen(req)), strlen(req));
		tls_conn_flush(&p.cli);
		wire(&p.cli, &p.srv, 0);
		n = 0;
		while ((q = tls_conn_pull_plain(&p.srv, &len))) {
			memcpy(got + n, q, MIN(len, sizeof(got) - 1 - n));
			n += MIN(len, sizeof(got) - 1 - n);
			tls_conn_plain_done(&p.srv, len);
		}
		got[n] = '\0';
		CHECK_STR(got, req);
		CHECK_INT(tls_conn_push_plain(&p.srv, "HTTP/1.1 200 OK\r\n\r\n", 19), 19);
		tls_conn_flush(&p.srv);
		wire(&p.cli, &p.srv, 0);
		q = tls_conn_pull_plain(&p.cli, &len);
		CHECK(q && len == 19 && memcmp(q, "HTTP/1.1 200 OK", 15) == 0);
		if (q)
			tls_conn_plain_done(&p.cli, len);
	}
	CHECK(tls_conn_alpn(&p.srv) == NULL);
	CHECK(tls_conn_alpn(&p.cli) == NULL);
	CHECK(p.srv.u.eng.ibuf_len == BR_SSL_BUFSIZE_MONO && p.srv.u.eng.obuf == p.srv.u.eng.ibuf);
	pair_fini(&p);
}

/* ---- closing and failures -------------------------------------------------------------------- */

TEST(close_notify_is_eof_and_closes_both)
{
	struct pair p;
	const uint8_t *q;
	size_t len;

	REQUIRE(pair_init(&p, "server", "client", NULL));
	wire(&p.cli, &p.srv, 0);
	REQUIRE(both_done(&p));
	/* Buffered plaintext goes out before the close_notify. */
	CHECK_INT(tls_conn_push_plain(&p.cli, "bye", 3), 3);
	tls_conn_close_notify(&p.cli);
	CHECK_INT(tls_conn_push_plain(&p.cli, "more", 4), 0);
	wire(&p.cli, &p.srv, 0);
	q = tls_conn_pull_plain(&p.srv, &len);
	REQUIRE(q && len == 3 && memcmp(q, "bye", 3) == 0);
	CHECK(!(tls_conn_state(&p.srv) & TLS_ST_EOF));
	tls_conn_plain_done(&p.srv, len);
	wire(&p.cli, &p.srv, 0);
	CHECK(tls_conn_state(&p.srv) & TLS_ST_EOF);
	CHECK(tls_conn_state(&p.srv) & TLS_ST_CLOSED);
	CHECK(!(tls_conn_state(&p.srv) & TLS_ST_ERROR));
	CHECK(tls_conn_state(&p.cli) & TLS_ST_CLOSED);
	CHECK(tls_conn_state(&p.cli) & TLS_ST_EOF);
	CHECK_INT(tls_conn_error(&p.cli), 0);
	CHECK_INT(tls_conn_error(&p.srv), 0);
	CHECK(tls_conn_state(&p.cli) & TLS_ST_DONE);
	/* A transport EOF now changes nothing. */
	tls_conn_push_eof(&p.srv);
	CHECK_INT(tls_conn_error(&p.srv), 0);
	pair_fini(&p);
}

TEST(transport_eof_without_close_notify_is_an_error)
{
	struct pair p;

	REQUIRE(pair_init(&p, "server", "client", NULL));
	xfer(&p.cli, &p.srv, 0); /* ClientHello only */
	tls_conn_push_eof(&p.srv);
	CHECK_INT(tls_conn_error(&p.srv), TLS_ERR_EOF_HANDSHAKE);
	CHECK_STR(tls_conn_reason(&p.srv), "connection closed during the handshake");
	CHECK(!(tls_conn_state(&p.srv) & TLS_ST_CIPHER_OUT)); /* no alert for that */
	pair_fini(&p);

	REQUIRE(pair_init(&p, "server", "client", NULL));
	wire(&p.cli, &p.srv, 0);
	REQUIRE(both_done(&p));
	tls_conn_push_eof(&p.cli);
	CHECK_INT(tls_conn_error(&p.cli), TLS_ERR_TRUNCATED);
	CHECK_INT(tls_error_class(TLS_ERR_TRUNCATED), E_CLOSED);
	CHECK(failed(&p.cli));
	CHECK_INT(tls_conn_push_plain(&p.cli, "x", 1), 0);
	pair_fini(&p);

	/* After our own close_notify, a peer that just hangs up is fine. */
	REQUIRE(pair_init(&p, "server", "client", NULL));
	wire(&p.cli, &p.srv, 0);
	tls_conn_close_notify(&p.cli);
	tls_conn_push_eof(&p.cli);
	CHECK_INT(tls_conn_error(&p.cli), 0);
	CHECK(tls_conn_state(&p.cli) & TLS_ST_CLOSED);
	pair_fini(&p);
}

TEST(tampered_record_and_garbage_fail)
{
	struct pair p;
	const uint8_t *q;
	uint8_t rec[64];
	size_t len;

	REQUIRE(pair_init(&p, "server", "client", NULL));
	wire(&p.cli, &p.srv, 0);
	REQUIRE(both_done(&p));
	CHECK_INT(tls_conn_push_plain(&p.cli, "secret", 6), 6);
	tls_conn_flush(&p.cli);
	q = tls_conn_pull_cipher(&p.cli, &len);
	REQUIRE(q && len <= sizeof(rec) && len > 20);
	memcpy(rec, q, len);
	tls_conn_cipher_done(&p.cli, len);
	rec[len - 1] ^= 1; /* flip a tag bit */
	tls_conn_push_cipher(&p.srv, rec, len);
	CHECK_INT(tls_conn_error(&p.srv), BR_ERR_BAD_MAC);
	CHECK_INT(tls_error_class(BR_ERR_BAD_MAC), E_CRYPTO);
	CHECK(tls_conn_pull_plain(&p.srv, &len) == NULL);
	pair_fini(&p);

	REQUIRE(pair_init(&p, "server", "client", NULL));
	tls_conn_push_cipher(&p.srv, "GET / HTTP/1.1\r\n\r\n", 18);
	CHECK(failed(&p.srv));
	CHECK(tls_conn_error(&p.srv) != 0);
	CHECK(tls_conn_reason(&p.srv)[0] != '\0');
	pair_fini(&p);
}

TEST(error_strings)
{
	CHECK_STR(tls_error_str(0), "");
	CHECK_STR(tls_error_str(BR_ERR_X509_EXPIRED), "certificate expired or not yet valid");
	CHECK_STR(tls_error_str(BR_ERR_RECV_FATAL_ALERT + 45),
		  "peer sent alert certificate_expired (45)");
	CHECK_STR(tls_error_str(BR_ERR_SEND_FATAL_ALERT + 70), "sent alert protocol_version (70)");
	CHECK_CONTAINS(tls_error_str(TLS_ERR_NO_SHARED_CIPHER), "no shared cipher suite");
	CHECK_STR(tls_error_str(TLS_ERR_PEER_KEY), "peer certificate key is not ECDSA P-256");
	CHECK_STR(tls_error_str(BR_ERR_RECV_FATAL_ALERT + 200), "peer sent an unknown alert");
	CHECK_INT(tls_error_class(0), 0);
	CHECK_INT(tls_error_class(BR_ERR_X509_NOT_TRUSTED), E_CRYPTO);
	CHECK_INT(tls_error_class(TLS_ERR_ALPN), E_PROTO);
	CHECK_INT(tls_error_class(TLS_ERR_IO), E_IO);
	CHECK_INT(tls_error_alert(BR_ERR_X509_BAD_SIGNATURE), 42);
	CHECK_INT(tls_error_alert(BR_ERR_SEND_FATAL_ALERT + 40), 0);
	CHECK_STR(tls_suite_name(0xc02b), "ECDHE-ECDSA-AES128-GCM-SHA256");
}

TEST(fini_is_safe_on_zeroed_and_repeated)
{
	struct tls_conn c;

	memset(&c, 0, sizeof(c));
	tls_conn_fini(&c);
	tls_conn_fini(&c);
	CHECK_INT(tls_conn_error(&c), 0);
	CHECK(tls_conn_alpn(&c) == NULL);
}
