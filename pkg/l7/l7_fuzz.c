/* Fuzz target for pkg/l7: the input is a request ("METHOD path\nname: value\n..."), evaluated
 * under every normalization mode against a fixed mesh with regex, prefix and exact routes and
 * ALLOW/DENY policies with templates. Checks that normalization is idempotent and yields no dot
 * segments, and that route selection and authorization never crash or contradict themselves. */
#include "pkg/l7/l7.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char mesh_doc[] =
	"{\"workloads\": [{\"uid\": \"wp\", \"name\": \"waypoint\", \"namespace\": \"ns\", "
	"\"workloadIps\": [\"10.0.0.9\"]}, {\"uid\": \"e\", \"namespace\": \"ns\", "
	"\"workloadIps\": "
	"[\"10.0.0.1\"], \"services\": {\"ns/echo.ns.svc\": {\"80\": 8080}}}],"
	"\"services\": [{\"name\": \"echo\", \"namespace\": \"ns\", \"hostname\": \"echo.ns.svc\", "
	"\"vips\": [\"10.96.0.1\"], \"ports\": {\"80\": 8080}, \"waypoint\": {\"destination\": "
	"\"/10.0.0.9\"}}],"
	"\"routes\": [{\"metadata\": {\"name\": \"r\", \"namespace\": \"ns\"}, \"spec\": "
	"{\"parentRefs\": [{\"kind\": \"Service\", \"name\": \"echo\"}], \"rules\": ["
	"{\"matches\": [{\"path\": {\"type\": \"RegularExpression\", \"value\": \"/v[0-9]+/.*\"}, "
	"\"headers\": [{\"type\": \"RegularExpression\", \"name\": \"x-v\", \"value\": "
	"\"(a|b)+\"}]}], \"backendRefs\": [{\"name\": \"echo\", \"port\": 80, \"weight\": 3}]},"
	"{\"matches\": [{\"path\": {\"type\": \"Exact\", \"value\": \"/e\"}, \"method\": "
	"\"POST\"}, {\"queryParams\": [{\"name\": \"q\", \"value\": \"1\"}]}], \"backendRefs\": "
	"[{\"name\": \"echo\", \"port\": 80}]},"
	"{\"matches\": [{\"path\": {\"value\": \"/p/q\"}}], \"filters\": [{\"type\": "
	"\"URLRewrite\", \"urlRewrite\": {\"path\": {\"type\": \"ReplacePrefixMatch\", "
	"\"replacePrefixMatch\": \"/z\"}}}]}]}}],"
	"\"l7Policies\": [{\"metadata\": {\"name\": \"d\", \"namespace\": \"ns\"}, \"spec\": "
	"{\"targetRefs\": [{\"kind\": \"Service\", \"name\": \"echo\"}], \"action\": \"DENY\", "
	"\"rules\": [{\"to\": [{\"operation\": {\"paths\": [\"/admin*\", \"/a/{*}/b/{**}\"]}}]}]}},"
	"{\"metadata\": {\"name\": \"a\", \"namespace\": \"ns\"}, \"spec\": {\"targetRefs\": "
	"[{\"kind\": \"Service\", \"name\": \"echo\"}], \"rules\": [{\"to\": [{\"operation\": "
	"{\"methods\": [\"GET\"], \"notPaths\": [\"*.secret\"]}}], \"when\": [{\"key\": "
	"\"request.headers[x-v]\", \"notValues\": [\"bad\"]}]}]}}]}";

static struct config *cfg;
static struct l7_table *table;

static bool has_dot_segment(const char *p)
{
	const char *q = strchr(p, '?');
	size_t n = q ? (size_t)(q - p) : strlen(p);

	for (size_t i = 0; i < n; i++) {
		if (p[i] != '/')
			continue;
		if (i + 2 <= n && p[i + 1] == '.' && (i + 2 == n || p[i + 2] == '/'))
			return true;
		if (i + 3 <= n && p[i + 1] == '.' && p[i + 2] == '.' &&
		    (i + 3 == n || p[i + 3] == '/'))
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *line, *save = NULL, *sp;
	struct l7_header hdrs[16];
	size_t nh = 0;
	const struct config_service *svc;

	if (!cfg) {
		cfg = config_parse("fuzz.json", mesh_doc, sizeof(mesh_doc) - 1, 1, NULL);
		if (!cfg)
			abort();
		table = l7_table_new(cfg, NULL);
		if (!table)
			abort();
	}
	if (size > 4096)
		return 0;
	text = xmalloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	line = strtok_r(text, "\n", &save);
	if (!line || !(sp = strchr(line, ' '))) {
		free(text);
		return 0;
	}
	*sp = '\0';
	for (char *h; (h = strtok_r(NULL, "\n", &save)) && nh < 16;) {
		char *colon = strchr(h, ':');
		if (!colon)
			continue;
		*colon = '\0';
		hdrs[nh].name = (struct slice){(const uint8_t *)h, strlen(h)};
		hdrs[nh].value = (struct slice){(const uint8_t *)colon + 1, strlen(colon + 1)};
		nh++;
	}
	svc = config_service_by_name(cfg, "ns", "echo");
	for (int mode = L7_NORM_NONE; mode <= L7_NORM_DECODE_AND_MERGE_SLASHES; mode++) {
		struct l7_norm_opts o = {(enum l7_norm_mode)mode, mode == L7_NORM_BASE};
		char path[L7_PATH_MAX], again[L7_PATH_MAX];
		const char *why;
		int n = l7_path_normalize(sp + 1, strlen(sp + 1), &o, path, sizeof(path), &why);
		struct l7_request req = {.method = line,
					 .path = path,
					 .host = "echo.ns.svc",
					 .headers = hdrs,
					 .n_headers = nh,
					 .source_principal = "cluster.local/ns/a/sa/b",
					 .dest_port = 80};
		struct l7_route_result rr, rr2;
		struct l7_authz_result az;

		if (n < 0) {
			if (!why[0])
				abort();
			continue;
		}
		if ((size_t)n != strlen(path) || path[0] != '/')
			abort();
		if (mode != L7_NORM_NONE) {
			if (has_dot_segment(path))
				abort();
			/* Idempotent, except that decoding may create new escapes to decode:
			 * "%252F" -> "%2F" is left as is (only unreserved are decoded). */
			if (l7_path_normalize(path, (size_t)n, &o, again, sizeof(again), &why) <
				    0 ||
			    strcmp(again, path) != 0)
				if (mode != L7_NORM_DECODE_AND_MERGE_SLASHES)
					abort();
		}
		bool hit = l7_route_select(table, svc, 80, &req, &rr);
		if (hit != l7_route_select(table, svc, 80, &req, &rr2) ||
		    (hit && (rr.route != rr2.route || rr.rule_index != rr2.rule_index)))
			abort();
		if (hit && rr.match &&
		    !l7_match_request(table, rr.route, rr.rule_index, rr.match_index, &req))
			abort();
		if (hit && rr.rule->n_backend_refs && l7_backend_pick(rr.rule, (uint64_t)n) < 0)
			abort();
		l7_authz_check(cfg, svc, NULL, &req, &az);
		if (!az.reason ||
		    (az.allow && az.policy && az.policy->spec.action != CONFIG_L7_ALLOW))
			abort();
		if (!az.allow && az.policy && az.policy->spec.action != CONFIG_L7_DENY)
			abort();
		/* The same source as a TCP connection: a DENY ignores its HTTP fields there, so
		 * it matches at least what it matched for the request. */
		struct l7_request tcp = req;
		struct l7_authz_result az4;
		tcp.tcp = true;
		l7_authz_check(cfg, svc, NULL, &tcp, &az4);
		if (!az4.reason || (!az.allow && az.policy && az4.allow))
			abort();
	}
	free(text);
	return 0;
}
