/* `ambient ctl cert inspect`: decodes a PEM certificate chain and checks it against a root. */
#include "cmd/ctl.h"
#include "pkg/x509/x509.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void rfc3339(int64_t t, char *out, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *role(const struct x509_cert *c)
{
	if (!c->ca)
		return "Leaf";
	if (c->issuer.n == c->subject.n && memcmp(c->issuer.p, c->subject.p, c->issuer.n) == 0)
		return "Root";
	return "Intermediate";
}

static cJSON *cert_json(const struct x509_cert *c, size_t idx, int64_t now)
{
	cJSON *o = cJSON_CreateObject(), *dns = NULL, *ips = NULL;
	char serial[2 * X509_MAX_SERIAL + 1], t[32], left[48];
	struct slice uri = x509_cert_uri(c);

	x509_cert_serial_hex(c, serial, sizeof(serial));
	cJSON_AddNumberToObject(o, "index", (double)idx);
	cJSON_AddStringToObject(o, "type", role(c));
	if (uri.p) {
		char *u = xstrndup((const char *)uri.p, uri.n);
		cJSON_AddStringToObject(o, "spiffeId", u);
		free(u);
	} else {
		cJSON_AddNullToObject(o, "spiffeId");
	}
	cJSON_AddStringToObject(o, "subject", c->subject_text);
	cJSON_AddStringToObject(o, "issuer", c->issuer_text);
	cJSON_AddStringToObject(o, "serialNumber", serial);
	rfc3339(c->not_before, t, sizeof(t));
	cJSON_AddStringToObject(o, "notBefore", t);
	rfc3339(c->not_after, t, sizeof(t));
	cJSON_AddStringToObject(o, "notAfter", t);
	if (now < c->not_before)
		snprintf(left, sizeof(left), "not yet valid");
	else
		ctl_format_left(c->not_after - now, left, sizeof(left));
	cJSON_AddStringToObject(o, "timeLeft", left);
	cJSON_AddBoolToObject(o, "validNow", x509_cert_valid_at(c, now));
	cJSON_AddStringToObject(o, "keyType", c->pub.desc);
	cJSON_AddStringToObject(o, "signatureAlgorithm", c->sig_alg_name);
	cJSON_AddBoolToObject(o, "ca", c->ca);
	for (size_t i = 0; i < c->n_san; i++) {
		if (c->san[i].type == X509_GN_DNS) {
			if (!dns)
				dns = cJSON_AddArrayToObject(o, "dnsNames");
			char *d = xstrndup((const char *)c->san[i].v.p, c->san[i].v.n);
			cJSON_AddItemToArray(dns, cJSON_CreateString(d));
			free(d);
		} else if (c->san[i].type == X509_GN_IP) {
			char ip[64] = "";
			if (!ips)
				ips = cJSON_AddArrayToObject(o, "ipAddresses");
			inet_ntop(c->san[i].v.n == 4 ? AF_INET : AF_INET6, c->san[i].v.p, ip,
				  sizeof(ip));
			cJSON_AddItemToArray(ips, cJSON_CreateString(ip));
		}
	}
	return o;
}

static const char inspect_usage[] = "ambient ctl cert inspect FILE|- [--root FILE] [-o json]";
static const char inspect_example[] =
	"  ambient ctl cert inspect chain.pem --root root-cert.pem\n"
	"  curl -s .../cert | ambient ctl cert inspect -\n"
	"exit: 0 decoded (and verified with --root), 1 unreadable or not verified, 2 usage";

static int load_chain(const char *src, struct x509_chain *ch, size_t *skipped, struct errbuf *eb)
{
	char *text;
	size_t len;
	struct x509_pem_list l;
	int rc;

	*skipped = 0;
	if (ctl_read_source(src, NULL, NULL, 1 << 20, &text, &len, eb) < 0)
		return -1;
	rc = x509_pem_parse(text, len, &l, eb);
	free(text);
	if (rc < 0) {
		errbuf_prefix(eb, "%s", src);
		return -1;
	}
	for (size_t i = 0; i < l.n; i++) {
		struct x509_cert *c;
		if (strcmp(l.v[i].label, "CERTIFICATE") != 0) {
			(*skipped)++; /* private keys are never decoded or shown */
			continue;
		}
		if (x509_cert_decode(l.v[i].der, l.v[i].len, &c, eb) < 0) {
			errbuf_prefix(eb, "%s: certificate %zu (line %u)", src, ch->n, l.v[i].line);
			x509_pem_list_fini(&l);
			return -1;
		}
		x509_chain_add(ch, c);
	}
	x509_pem_list_fini(&l);
	if (ch->n == 0)
		return errbuf_set(eb, E_PARSE, "%s: no CERTIFICATE block found", src);
	return 0;
}

static int inspect(int argc, char **argv)
{
	const char *root = NULL, *out = "text";
	const struct flag fl[] = {
		{"root", FLAG_STR, &root, "verify the chain against this root (PEM)", "FILE"},
		{"o", FLAG_STR, &out, "output: text (default) or json", "FORMAT"},
	};
	const char *pos[1];
	int npos, rc = CTL_EXIT_OK;
	struct errbuf eb = {0};
	struct x509_chain ch = {0}, roots = {0};
	size_t skipped, rs;
	int64_t now = ctl_now();
	cJSON *x, *arr, *it;

	rc = ctl_parse("cert inspect", inspect_usage, inspect_example, fl, ARRAY_LEN(fl), argc,
		       argv, pos, 1, &npos);
	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (npos != 1 || (strcmp(out, "text") && strcmp(out, "json"))) {
		fprintf(stderr, "usage: %s\n", inspect_usage);
		return CTL_EXIT_USAGE;
	}
	if (load_chain(pos[0], &ch, &skipped, &eb) < 0) {
		fprintf(stderr, "ctl cert inspect: %s\n", eb.msg);
		x509_chain_fini(&ch);
		return CTL_EXIT_FAIL;
	}
	x = cJSON_CreateObject();
	cJSON_AddStringToObject(x, "source", pos[0]);
	arr = cJSON_AddArrayToObject(x, "certificates");
	for (size_t i = 0; i < ch.n; i++)
		cJSON_AddItemToArray(arr, cert_json(ch.v[i], i, now));
	if (skipped)
		cJSON_AddNumberToObject(x, "skippedBlocks", (double)skipped);
	if (root) {
		cJSON *v = cJSON_AddObjectToObject(x, "verification");
		cJSON_AddStringToObject(v, "root", root);
		if (load_chain(root, &roots, &rs, &eb) < 0) {
			cJSON_AddBoolToObject(v, "ok", false);
			cJSON_AddStringToObject(v, "reason", eb.msg);
			rc = CTL_EXIT_FAIL;
		} else if (ch.v[0]->ca) {
			/* A CA certificate: check it chains to (or is) the root. */
			bool ok = false;
			for (size_t i = 0; i < roots.n && !ok; i++)
				ok = (ch.v[0]->len == roots.v[i]->len &&
				      memcmp(ch.v[0]->der, roots.v[i]->der, ch.v[0]->len) == 0) ||
				     x509_cert_check_signature(ch.v[0], &roots.v[i]->pub, NULL) ==
					     0;
			cJSON_AddBoolToObject(v, "ok", ok);
			cJSON_AddStringToObject(v, "reason",
						ok ? "CA certificate is, or is signed by, the root"
						   : "CA certificate is not signed by the root");
			rc = ok ? CTL_EXIT_OK : CTL_EXIT_FAIL;
		} else {
			int r = x509_verify_chain(ch.v[0], ch.v + 1, ch.n - 1, roots.v, roots.n,
						  now, NULL, &eb);
			/* A chain file may end with the root itself: that is fine. */
			if (r < 0 && ch.n > 1 && ch.v[ch.n - 1]->ca &&
			    strcmp(role(ch.v[ch.n - 1]), "Root") == 0)
				r = x509_verify_chain(ch.v[0], ch.v + 1, ch.n - 2, roots.v, roots.n,
						      now, NULL, &eb);
			cJSON_AddBoolToObject(v, "ok", r == 0);
			cJSON_AddStringToObject(v, "reason",
						r == 0 ? "valid X.509-SVID chain to the root"
						       : eb.msg);
			rc = r == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
		}
	}
	if (strcmp(out, "json") == 0) {
		ctl_print_json(x, stdout);
	} else {
		CTL_EACH(it, arr)
		{
			const cJSON *l;
			printf("Certificate %d (%s)\n", (int)ctl_jnum(it, "index"),
			       ctl_jstr(it, "type"));
			printf("  SPIFFE ID:   %s\n",
			       *ctl_jstr(it, "spiffeId") ? ctl_jstr(it, "spiffeId") : "-");
			printf("  Subject:     %s\n",
			       *ctl_jstr(it, "subject") ? ctl_jstr(it, "subject") : "(empty)");
			printf("  Issuer:      %s\n", ctl_jstr(it, "issuer"));
			printf("  Serial:      %s\n", ctl_jstr(it, "serialNumber"));
			printf("  Not before:  %s\n", ctl_jstr(it, "notBefore"));
			printf("  Not after:   %s (%s)\n", ctl_jstr(it, "notAfter"),
			       ctl_jstr(it, "timeLeft"));
			printf("  Key:         %s, signed with %s%s\n", ctl_jstr(it, "keyType"),
			       ctl_jstr(it, "signatureAlgorithm"),
			       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "ca")) ? ", CA"
											: "");
			CTL_EACH(l, cJSON_GetObjectItemCaseSensitive(it, "dnsNames"))
			printf("  DNS name:    %s\n", l->valuestring);
			CTL_EACH(l, cJSON_GetObjectItemCaseSensitive(it, "ipAddresses"))
			printf("  IP address:  %s\n", l->valuestring);
		}
		if (skipped)
			printf("(%zu non-certificate PEM block%s skipped; private keys are never "
			       "shown)\n",
			       skipped, skipped == 1 ? "" : "s");
		if (root) {
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(x, "verification");
			printf("Verdict against %s: %s: %s\n", root,
			       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "ok")) ? "OK"
										       : "FAILED",
			       ctl_jstr(v, "reason"));
		}
	}
	cJSON_Delete(x);
	x509_chain_fini(&ch);
	x509_chain_fini(&roots);
	return rc;
}

int ctl_cert_main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "inspect") == 0)
		return inspect(argc - 1, argv + 1);
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("usage: %s\n\nexample:\n%s\n", inspect_usage, inspect_example);
		return CTL_EXIT_OK;
	}
	fprintf(stderr, "usage: %s\n", inspect_usage);
	return CTL_EXIT_USAGE;
}
