/* `ambient ca`: init, token add|list|revoke, issue (offline) and serve (the HTTPS CA). */
#include "cmd/ca.h"
#include "cmd/cmd.h"
#include "cmd/flags.h"
#include "pkg/ca/ca.h"
#include "pkg/ca/ca_tokens.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char ca_usage[] =
	"usage: ambient ca <command> [flags]\n\n"
	"commands:\n"
	"  init     --trust-domain TD --dir DIR [--force]   create a self-signed root\n"
	"  token    add --dir DIR --node NAME | list --dir DIR | revoke --dir DIR (--node "
	"NAME|--id "
	"ID)\n"
	"  issue    --dir DIR --identity spiffe://... --out DIR [--ttl DUR]   offline issuance\n"
	"  serve    --dir DIR --mesh-config SOURCE [--listen ADDR]   the HTTPS CA and config "
	"server\n";

/* Parses flags for an offline command; prints usage on --help. Returns -1 to exit 0 (help),
 * -2 on a usage error (already printed), 0 to go on. */
static int parse(const char *usage, const struct flag *f, size_t n, int argc, char **argv)
{
	struct errbuf eb;
	const char *pos[1];
	int npos;
	bool help;

	if (flags_parse(f, n, argc, argv, pos, 0, &npos, &help, &eb) < 0) {
		fprintf(stderr, "ca: %s\n", eb.msg);
		return -2;
	}
	if (help) {
		flags_usage(stdout, usage, f, n);
		return -1;
	}
	return 0;
}

static int need(const char *v, const char *flag)
{
	if (v && *v)
		return 0;
	fprintf(stderr, "ca: %s is required (see --help)\n", flag);
	return -1;
}

static int ca_init_main(int argc, char **argv)
{
	const char *dir = NULL;
	const char *td = NULL;
	bool force = false;
	struct errbuf eb;
	const struct flag f[] = {
		{"dir", FLAG_STR, &dir, "CA directory to create (cacerts layout)", "DIR"},
		{"trust-domain", FLAG_STR, &td, "trust domain, recorded as the root's O=", "TD"},
		{"force", FLAG_BOOL, &force, "overwrite an existing CA in DIR", NULL},
	};
	int rc = parse("ambient ca init --trust-domain TD --dir DIR [--force]", f, ARRAY_LEN(f),
		       argc, argv);

	if (rc < 0)
		return rc == -1 ? 0 : 2;
	if (need(dir, "--dir") < 0 || need(td, "--trust-domain") < 0)
		return 2;
	if (ca_init(dir, td, force, time(NULL), &eb) < 0) {
		fprintf(stderr, "ca init: %s\n", eb.msg);
		return 1;
	}
	printf("created a self-signed root for trust domain %s in %s\n", td, dir);
	return 0;
}

static void tokens_path(const char *dir, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", dir, CA_TOKENS_FILE);
}

static int ca_token_main(int argc, char **argv)
{
	const char *dir = NULL;
	const char *node = NULL;
	const char *id = NULL;
	const struct flag f[] = {
		{"dir", FLAG_STR, &dir, "CA directory", "DIR"},
		{"node", FLAG_STR, &node, "node name", "NAME"},
		{"id", FLAG_STR, &id, "token id (revoke)", "ID"},
	};
	const char *verb = argc > 1 ? argv[1] : NULL;
	char path[4096];
	struct errbuf eb;
	int rc;

	if (!verb || (strcmp(verb, "add") && strcmp(verb, "list") && strcmp(verb, "revoke"))) {
		fprintf(stderr, "usage: ambient ca token add|list|revoke --dir DIR [--node NAME] "
				"[--id ID]\n");
		return 2;
	}
	rc = parse("ambient ca token add|list|revoke --dir DIR [--node NAME] [--id ID]", f,
		   ARRAY_LEN(f), argc - 1, argv + 1);
	if (rc < 0)
		return rc == -1 ? 0 : 2;
	if (need(dir, "--dir") < 0)
		return 2;
	tokens_path(dir, path, sizeof(path));
	if (strcmp(verb, "add") == 0) {
		char tok[CA_TOKEN_LEN];
		char tid[CA_TOKEN_ID_LEN];
		if (need(node, "--node") < 0)
			return 2;
		if (ca_tokens_add(path, node, tok, tid, &eb) < 0) {
			fprintf(stderr, "ca token add: %s\n", eb.msg);
			return 1;
		}
		/* The only time the token is shown: stdout, for a file or a secret store. */
		printf("%s\n", tok);
		fprintf(stderr, "token %s for node %s added (only its hash is stored)\n", tid,
			node);
		secure_wipe(tok, sizeof(tok));
		return 0;
	}
	if (strcmp(verb, "list") == 0) {
		struct ca_tokens t = {0};
		if (ca_tokens_load(path, &t, &eb) < 0) {
			fprintf(stderr, "ca token list: %s\n", eb.msg);
			return 1;
		}
		printf("%-14s %-32s %s\n", "ID", "NODE", "CREATED");
		for (size_t i = 0; i < t.n; i++)
			printf("%-14s %-32s %s\n", t.e[i].id, t.e[i].node, t.e[i].created);
		ca_tokens_fini(&t);
		return 0;
	}
	{
		size_t removed;
		if ((!node && !id) || (node && id)) {
			fprintf(stderr, "ca token revoke: give exactly one of --node or --id\n");
			return 2;
		}
		if (ca_tokens_revoke(path, node ? node : id, &removed, &eb) < 0) {
			fprintf(stderr, "ca token revoke: %s\n", eb.msg);
			return 1;
		}
		printf("revoked %zu token%s\n", removed, removed == 1 ? "" : "s");
		return 0;
	}
}

static int ca_issue_main(int argc, char **argv)
{
	const char *dir = NULL;
	const char *identity = NULL;
	const char *out = NULL;
	const char *td = NULL;
	uint64_t ttl_ms = 0;
	const struct flag f[] = {
		{"dir", FLAG_STR, &dir, "CA directory", "DIR"},
		{"identity", FLAG_STR, &identity, "spiffe://<td>/ns/<ns>/sa/<sa>", "ID"},
		{"out", FLAG_STR, &out,
		 "where to write key.pem, cert.pem, chain.pem, root-cert.pem", "DIR"},
		{"ttl", FLAG_DURATION, &ttl_ms, "certificate lifetime (24h, at most 90 days)",
		 "DUR"},
		{"trust-domain", FLAG_STR, &td, "override the CA's trust domain", "TD"},
	};
	struct ca_authority *a = NULL;
	struct x509_key *key = NULL;
	struct ca_issued is = {0};
	struct errbuf eb;
	int64_t now = time(NULL);
	char clamp[160];
	int rc = parse("ambient ca issue --dir DIR --identity spiffe://... --out DIR [--ttl DUR]",
		       f, ARRAY_LEN(f), argc, argv);

	if (rc < 0)
		return rc == -1 ? 0 : 2;
	if (need(dir, "--dir") < 0 || need(identity, "--identity") < 0 || need(out, "--out") < 0)
		return 2;
	rc = 1;
	if (ca_authority_load(dir, td, now, &a, &eb) < 0)
		goto fail;
	if (x509_key_generate(&key) < 0) {
		errbuf_set(&eb, E_CRYPTO, "key generation failed");
		goto fail;
	}
	{
		struct ca_issue_req req = {.pub = x509_key_public(key),
					   .identity = identity,
					   .ttl = (int64_t)(ttl_ms / 1000),
					   .now = now};
		if (ca_issue(a, &req, &is, &eb) < 0)
			goto fail;
	}
	if (ca_write_bundle(out, key, &is, a, &eb) < 0)
		goto fail;
	ca_clamp_describe(&is, (int64_t)(ttl_ms / 1000), clamp, sizeof(clamp));
	if (clamp[0])
		fprintf(stderr, "ca issue: %s\n", clamp);
	printf("issued %s serial %s valid for %lld s; wrote %s/{key,cert,chain,root-cert}.pem\n",
	       identity, is.serial, (long long)is.ttl, out);
	rc = 0;
	goto done;
fail:
	fprintf(stderr, "ca issue: %s\n", eb.msg);
done:
	ca_issued_fini(&is);
	x509_key_free(key);
	ca_authority_free(a);
	return rc;
}

int cmd_ca(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (!sub) {
		fputs(ca_usage, stderr);
		return 2;
	}
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		fputs(ca_usage, stdout);
		return 0;
	}
	if (strcmp(sub, "init") == 0)
		return ca_init_main(argc - 1, argv + 1);
	if (strcmp(sub, "token") == 0)
		return ca_token_main(argc - 1, argv + 1);
	if (strcmp(sub, "issue") == 0)
		return ca_issue_main(argc - 1, argv + 1);
	if (strcmp(sub, "serve") == 0)
		return ca_serve_main(argc - 1, argv + 1);
	fprintf(stderr, "ca: unknown command '%s'\n\n%s", sub, ca_usage);
	return 2;
}
