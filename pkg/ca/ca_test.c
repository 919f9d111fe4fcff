/* Tests for the CA's token store, node authorization and rate limiting. */
#include "pkg/ca/ca_tokens.h"
#include "test/unit.h"

#include <stdlib.h>
#include <sys/stat.h>

static char *tokens_path(void)
{
	static char p[512];
	snprintf(p, sizeof(p), "%s/tokens.json", unit_tmpdir());
	return p;
}

TEST(ca_tokens_add_lookup_revoke)
{
	struct ca_tokens t = {0};
	struct errbuf eb;
	char tok1[CA_TOKEN_LEN], tok2[CA_TOKEN_LEN], id1[CA_TOKEN_ID_LEN], id2[CA_TOKEN_ID_LEN];
	const char *path = tokens_path();
	struct stat st;
	size_t removed;
	FILE *f;
	char content[4096] = {0};

	REQUIRE(ca_tokens_load(path, &t, &eb) == 0); /* missing file: empty */
	CHECK_INT(t.n, 0);
	REQUIRE(ca_tokens_add(path, "node-a", tok1, id1, &eb) == 0);
	REQUIRE(ca_tokens_add(path, "node-b", tok2, id2, &eb) == 0);
	CHECK_INT(strlen(tok1), 48);
	CHECK(strncmp(tok1, "amb1.", 5) == 0);
	CHECK(strcmp(tok1, tok2) != 0);
	REQUIRE(stat(path, &st) == 0);
	CHECK_INT(st.st_mode & 0777, 0600);
	/* Only hashes are stored. */
	f = fopen(path, "r");
	REQUIRE(f);
	CHECK(fread(content, 1, sizeof(content) - 1, f) > 0);
	fclose(f);
	CHECK(strstr(content, tok1 + 5) == NULL);
	CHECK_CONTAINS(content, id1);

	REQUIRE(ca_tokens_refresh(path, &t, &eb) == 1);
	CHECK_INT(t.n, 2);
	REQUIRE(ca_tokens_lookup(&t, tok1) != NULL);
	CHECK_STR(ca_tokens_lookup(&t, tok1)->node, "node-a");
	CHECK_STR(ca_tokens_lookup(&t, tok2)->node, "node-b");
	CHECK(ca_tokens_lookup(&t, "amb1.nope") == NULL);
	CHECK(ca_tokens_lookup(&t, "") == NULL);
	CHECK_INT(ca_tokens_refresh(path, &t, &eb), 0);

	REQUIRE(ca_tokens_revoke(path, id1, &removed, &eb) == 0);
	CHECK_INT(removed, 1);
	CHECK_INT(ca_tokens_revoke(path, "ghost", &removed, &eb), -E_NOTFOUND);
	CHECK_CONTAINS(eb.msg, "ghost");
	REQUIRE(ca_tokens_refresh(path, &t, &eb) == 1);
	CHECK(ca_tokens_lookup(&t, tok1) == NULL);
	CHECK(ca_tokens_lookup(&t, tok2) != NULL);
	ca_tokens_fini(&t);
}

TEST(ca_tokens_reject_bad_input)
{
	struct ca_tokens t = {0};
	struct errbuf eb;
	char tok[CA_TOKEN_LEN], id[CA_TOKEN_ID_LEN];
	const char *path = tokens_path();
	FILE *f;

	CHECK_INT(ca_tokens_add(path, "bad node", tok, id, &eb), -E_INVAL);
	CHECK_CONTAINS(eb.msg, "invalid node name 'bad node'");
	f = fopen(path, "w");
	REQUIRE(f);
	fputs("{\"tokens\": [{\"id\": \"x\", \"node\": \"n\", \"sha256\": \"zz\"}]}", f);
	fclose(f);
	CHECK_INT(ca_tokens_load(path, &t, &eb), -E_PARSE);
	CHECK_CONTAINS(eb.msg, ".tokens[0].sha256");
	f = fopen(path, "w");
	REQUIRE(f);
	fputs("{\"tokens\": [", f);
	fclose(f);
	CHECK(ca_tokens_load(path, &t, &eb) < 0);
	CHECK_CONTAINS(eb.msg, "tokens.json");
	ca_tokens_fini(&t);
}

/* ---- authority ------------------------------------------------------------------------------- */

#include "pkg/ca/ca.h"

#include <unistd.h>

#define NOW 1800000000LL /* 2027-01-15 */

static const char *ca_dir(void)
{
	static char p[512];
	snprintf(p, sizeof(p), "%s/ca", unit_tmpdir());
	return p;
}

TEST(ca_init_load_issue_roundtrip)
{
	struct errbuf eb;
	struct ca_authority *a = NULL;
	struct x509_key *k = NULL;
	struct ca_issued is = {0};
	struct x509_cert *leaf = NULL;
	struct stat st;
	char path[600];

	REQUIRE(ca_init(ca_dir(), "cluster.local", false, NOW, &eb) == 0);
	snprintf(path, sizeof(path), "%s/ca-key.pem", ca_dir());
	REQUIRE(stat(path, &st) == 0);
	CHECK_INT(st.st_mode & 0777, 0600);
	CHECK_INT(ca_init(ca_dir(), "cluster.local", false, NOW, &eb), -E_EXIST);
	CHECK_CONTAINS(eb.msg, "refusing to overwrite");
	REQUIRE(ca_authority_load(ca_dir(), NULL, NOW, &a, &eb) == 0);
	CHECK_STR(a->trust_domain, "cluster.local");
	CHECK_INT(a->n_tail, 1); /* self-signed: the chain is the root */
	REQUIRE(x509_key_generate(&k) == 0);
	{
		struct ca_issue_req req = {.pub = x509_key_public(k),
					   .identity = "spiffe://cluster.local/ns/default/sa/app",
					   .ttl = 100 * 86400,
					   .now = NOW};
		REQUIRE(ca_issue(a, &req, &is, &eb) == 0);
	}
	CHECK_INT(is.n, 2);
	CHECK_INT(is.ttl, 90 * 86400);
	CHECK(is.clamped & X509_CLAMP_MAX_TTL);
	{
		char msg[160];
		ca_clamp_describe(&is, 100 * 86400, msg, sizeof(msg));
		CHECK_CONTAINS(msg, "exceeds the maximum");
	}
	REQUIRE(x509_cert_parse_pem(is.pem[0], strlen(is.pem[0]), &leaf, &eb) == 0);
	CHECK(x509_verify_chain(leaf, NULL, 0, a->roots.v, a->roots.n, NOW, "cluster.local", &eb) ==
	      0);
	{
		struct ca_issue_req bad = {.pub = x509_key_public(k),
					   .identity = "spiffe://other.td/ns/default/sa/app",
					   .now = NOW};
		struct ca_issued none = {0};
		CHECK_INT(ca_issue(a, &bad, &none, &eb), -E_DENIED);
		CHECK_CONTAINS(eb.msg, "outside the trust domain cluster.local");
	}
	x509_cert_free(leaf);
	ca_issued_fini(&is);
	x509_key_free(k);
	ca_authority_free(a);
}

TEST(ca_load_refuses_bad_directories)
{
	struct errbuf eb;
	struct ca_authority *a = NULL;
	char path[600];
	char other[600];

	CHECK(ca_authority_load(ca_dir(), NULL, NOW, &a, &eb) < 0);
	CHECK_CONTAINS(eb.msg, "ca-cert.pem");
	REQUIRE(ca_init(ca_dir(), "cluster.local", false, NOW, &eb) == 0);
	snprintf(path, sizeof(path), "%s/ca-key.pem", ca_dir());
	chmod(path, 0644);
	CHECK_INT(ca_authority_load(ca_dir(), NULL, NOW, &a, &eb), -E_PERM);
	CHECK_CONTAINS(eb.msg, "chmod 600");
	chmod(path, 0600);
	/* Expired at load time. */
	CHECK(ca_authority_load(ca_dir(), NULL, NOW + 11LL * 365 * 86400, &a, &eb) < 0);
	CHECK_CONTAINS(eb.msg, "expired");
	/* A key from another CA. */
	snprintf(other, sizeof(other), "%s/other", unit_tmpdir());
	REQUIRE(ca_init(other, "cluster.local", false, NOW, &eb) == 0);
	snprintf(other, sizeof(other), "%s/other/ca-key.pem", unit_tmpdir());
	REQUIRE(rename(other, path) == 0);
	CHECK_INT(ca_authority_load(ca_dir(), NULL, NOW, &a, &eb), -E_CRYPTO);
	CHECK_CONTAINS(eb.msg, "does not match");
	CHECK(a == NULL);
}

TEST(ca_authorize_checks_node_and_identity)
{
	static const char doc[] =
		"{\"workloads\": [{\"uid\": \"w1\", \"name\": \"a\", \"namespace\": \"default\","
		" \"serviceAccount\": \"app\", \"workloadIps\": [\"10.0.0.2\"], \"node\": \"n1\","
		" \"services\": {}}]}";
	struct errlist errs = {0};
	struct config *c = config_parse("mesh.json", doc, sizeof(doc) - 1, 7, &errs);
	struct errbuf eb;

	REQUIRE(c);
	CHECK_INT(ca_authorize(c, "cluster.local", "n1", "spiffe://cluster.local/ns/default/sa/app",
			       &eb),
		  0);
	CHECK_INT(ca_authorize(c, "cluster.local", "n2", "spiffe://cluster.local/ns/default/sa/app",
			       &eb),
		  -E_DENIED);
	CHECK_STR(eb.msg, "node n2 runs no workload with identity "
			  "spiffe://cluster.local/ns/default/sa/app (mesh config version 7)");
	CHECK_INT(ca_authorize(c, "cluster.local", "n1", "spiffe://cluster.local/ns/default/sa/b",
			       &eb),
		  -E_DENIED);
	CHECK_INT(ca_authorize(c, "cluster.local", "n1", "spiffe://x.td/ns/default/sa/app", &eb),
		  -E_DENIED);
	CHECK_CONTAINS(eb.msg, "outside the trust domain");
	CHECK_INT(ca_authorize(c, "cluster.local", "n1", "https://cluster.local/ns/default/sa/app",
			       &eb),
		  -E_INVAL);
	CHECK_INT(ca_authorize(c, "cluster.local", "n1", "spiffe://cluster.local/foo/bar", &eb),
		  -E_INVAL);
	CHECK_INT(ca_authorize(NULL, "cluster.local", "n1",
			       "spiffe://cluster.local/ns/default/sa/app", &eb),
		  -E_DENIED);
	config_unref(c);
	errlist_fini(&errs);
}

TEST(ca_ratelimit_token_bucket)
{
	struct ca_ratelimit *r = ca_ratelimit_new(2, 3);
	uint64_t retry = 0;

	for (int i = 0; i < 3; i++)
		CHECK(ca_ratelimit_take(r, "n1", 1000, &retry));
	CHECK(!ca_ratelimit_take(r, "n1", 1000, &retry));
	CHECK(retry > 0 && retry <= 501);
	/* Another node has its own bucket. */
	CHECK(ca_ratelimit_take(r, "n2", 1000, &retry));
	/* 500 ms later at 2/s, one token is back. */
	CHECK(ca_ratelimit_take(r, "n1", 1500, &retry));
	CHECK(!ca_ratelimit_take(r, "n1", 1500, &retry));
	/* Many nodes make the table grow without losing buckets. */
	for (int i = 0; i < 500; i++) {
		char name[16];
		snprintf(name, sizeof(name), "node%d", i);
		CHECK(ca_ratelimit_take(r, name, 2000, &retry));
	}
	CHECK(!ca_ratelimit_take(r, "n1", 1500, &retry));
	ca_ratelimit_free(r);
}
