/* The CNI plugin's inputs and outputs: network configuration, CNI_ARGS, versions, the ambient
 * decision and the result JSON (CNI spec 1.0.0, chained plugin). */
#include "pkg/cniconf/cniconf_int.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

const char *const cniconf_versions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0"};
const size_t cniconf_n_versions = ARRAY_LEN(cniconf_versions);

bool cniconf_version_supported(const char *v)
{
	for (size_t i = 0; v && i < cniconf_n_versions; i++)
		if (strcmp(v, cniconf_versions[i]) == 0)
			return true;
	return false;
}

enum cniconf_command cniconf_command_parse(const char *s)
{
	static const struct {
		const char *name;
		enum cniconf_command cmd;
	} cmds[] = {
		{"ADD", CNICONF_CMD_ADD},
		{"DEL", CNICONF_CMD_DEL},
		{"CHECK", CNICONF_CMD_CHECK},
		{"VERSION", CNICONF_CMD_VERSION},
	};

	for (size_t i = 0; s && i < ARRAY_LEN(cmds); i++)
		if (strcmp(s, cmds[i].name) == 0)
			return cmds[i].cmd;
	return CNICONF_CMD_UNKNOWN;
}

enum cniconf_mode cniconf_mode_parse(const char *v)
{
	if (v && strcmp(v, "ambient") == 0)
		return CNICONF_MODE_AMBIENT;
	if (v && strcmp(v, "none") == 0)
		return CNICONF_MODE_NONE;
	return CNICONF_MODE_UNSET;
}

bool cniconf_enroll_decide(bool netconf_enroll, enum cniconf_mode mode)
{
	if (mode == CNICONF_MODE_NONE)
		return false;
	return mode == CNICONF_MODE_AMBIENT || netconf_enroll;
}

/* ---- network configuration ------------------------------------------------------------------- */

/* Walks .args.cni.labels: [{"key": K, "value": V}...]. ambient.io/dataplane-mode wins (the last
 * one); istio.io/dataplane-mode counts only when no ambient.io label came before it, and then the
 * first one. */
static int labels_decode(struct cc *c, const cJSON *root, enum cniconf_mode *mode)
{
	static const char *const keys[] = {"args", "cni", "labels"};
	const cJSON *v = root, *it;
	const char *chosen = NULL;
	size_t i = 0, m0 = c->path.len;

	*mode = CNICONF_MODE_UNSET;
	for (size_t k = 0; k < ARRAY_LEN(keys); k++) {
		v = cJSON_GetObjectItemCaseSensitive(v, keys[k]);
		json_path_push_key(&c->path, keys[k]);
		if (!v) {
			json_path_pop(&c->path, m0);
			return 0;
		}
		if (k < 2 && !cJSON_IsObject(v))
			return cc_type(c, v, "an object");
	}
	if (!cJSON_IsArray(v))
		return cc_type(c, v, "an array");
	cJSON_ArrayForEach(it, v)
	{
		const cJSON *key = cJSON_GetObjectItemCaseSensitive(it, "key");
		const cJSON *val = cJSON_GetObjectItemCaseSensitive(it, "value");
		size_t m = json_path_push_index(&c->path, i++);

		if (!cJSON_IsObject(it))
			return cc_type(c, it, "an object");
		if (!cJSON_IsString(key) || !cJSON_IsString(val)) {
			json_path_push_key(&c->path, cJSON_IsString(key) ? "value" : "key");
			return cc_type(c, cJSON_IsString(key) ? val : key, "a string");
		}
		if (strcmp(key->valuestring, "ambient.io/dataplane-mode") == 0 ||
		    (strcmp(key->valuestring, "istio.io/dataplane-mode") == 0 && !chosen))
			chosen = val->valuestring;
		json_path_pop(&c->path, m);
	}
	*mode = cniconf_mode_parse(chosen);
	json_path_pop(&c->path, m0);
	return 0;
}

static int version_check(struct cc *c, struct cniconf_netconf *nc)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(nc->root, "cniVersion");
	size_t m = json_path_push_key(&c->path, "cniVersion");
	int rc = 0;

	if (!cJSON_IsString(v))
		rc = cc_type(c, v, "a string");
	else if (!cniconf_version_supported(v->valuestring))
		rc = cc_fail(c, E_UNSUPP,
			     "\"%.64s\" is not supported; this plugin supports 0.3.0, "
			     "0.3.1, 0.4.0, 1.0.0",
			     v->valuestring);
	else
		nc->version = v->valuestring;
	json_path_pop(&c->path, m);
	return rc;
}

int cniconf_netconf_decode(const char *text, size_t len, struct cniconf_netconf *nc,
			   struct errbuf *eb)
{
	struct cc c;
	const cJSON *v;
	int rc;

	memset(nc, 0, sizeof(*nc));
	cc_init(&c, "netconf", eb);
	if ((rc = cc_parse_object(&c, text, len, &nc->root)) < 0 ||
	    (rc = version_check(&c, nc)) < 0 ||
	    (rc = cc_str(&c, nc->root, "name", true, &nc->name)) < 0 ||
	    (rc = cc_str(&c, nc->root, "type", true, &nc->type)) < 0 ||
	    (rc = cc_bool(&c, nc->root, "enroll", &nc->enroll_flag)) < 0 ||
	    (rc = cc_ports(&c, nc->root, "excludeInboundPorts", nc->exclude, &nc->n_exclude)) < 0)
		return rc;
	if (cJSON_GetObjectItemCaseSensitive(nc->root, "controlSocket") &&
	    (rc = cc_str(&c, nc->root, "controlSocket", true, &nc->control_socket)) < 0)
		return rc;
	v = cJSON_GetObjectItemCaseSensitive(nc->root, "prevResult");
	if (v && !cJSON_IsObject(v)) {
		json_path_push_key(&c.path, "prevResult");
		return cc_type(&c, v, "an object");
	}
	nc->prev_result = v;
	if ((rc = labels_decode(&c, nc->root, &nc->mode)) < 0)
		return rc;
	nc->enroll = cniconf_enroll_decide(nc->enroll_flag, nc->mode);
	return 0;
}

void cniconf_netconf_fini(struct cniconf_netconf *nc)
{
	json_free(nc->root);
	memset(nc, 0, sizeof(*nc));
}

int cniconf_netconf_error_code(int rc)
{
	switch (rc) {
	case -E_PARSE: return CNICONF_E_DECODE;
	case -E_UNSUPP: return CNICONF_E_INCOMPATIBLE;
	default: return CNICONF_E_INVALID_NETCONF;
	}
}

/* ---- CNI_ARGS -------------------------------------------------------------------------------- */

int cniconf_args_parse(const char *args, struct cniconf_args *a, struct errbuf *eb)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{"K8S_POD_UID", offsetof(struct cniconf_args, pod_uid)},
		{"K8S_POD_NAME", offsetof(struct cniconf_args, pod_name)},
		{"K8S_POD_NAMESPACE", offsetof(struct cniconf_args, pod_namespace)},
		{"K8S_POD_SERVICE_ACCOUNT", offsetof(struct cniconf_args, pod_service_account)},
	};
	const char *s = args;
	size_t item = 0;

	memset(a, 0, sizeof(*a));
	while (s && *s) {
		const char *end = strchr(s, ';');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		const char *eq = memchr(s, '=', len);

		item++;
		if (len == 0) {
			s = end ? end + 1 : NULL;
			continue;
		}
		if (!eq || eq == s)
			return errbuf_set(eb, E_INVAL, "CNI_ARGS: item %zu '%.*s' is not KEY=VALUE",
					  item, (int)(len > 64 ? 64 : len), s);
		for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
			size_t vlen = len - (size_t)(eq + 1 - s);
			char *dst = (char *)a + keys[i].off;

			if (strlen(keys[i].key) != (size_t)(eq - s) ||
			    strncmp(s, keys[i].key, (size_t)(eq - s)) != 0)
				continue;
			if (vlen > CNICONF_STR_MAX)
				return errbuf_set(eb, E_INVAL, "CNI_ARGS: %s: longer than %d bytes",
						  keys[i].key, CNICONF_STR_MAX);
			memcpy(dst, eq + 1, vlen);
			dst[vlen] = '\0';
		}
		s = end ? end + 1 : NULL;
	}
	return 0;
}

void cniconf_uid_choose(const struct cniconf_args *a, const char *container_id, char *out)
{
	const char *s = a->pod_uid[0] ? a->pod_uid : container_id ? container_id : "";

	snprintf(out, CNICONF_STR_MAX + 1, "%.*s", CNICONF_STR_MAX, s);
}

/* ---- results --------------------------------------------------------------------------------- */

int cniconf_version_result_encode(struct buf *out)
{
	struct json_writer w;

	json_writer_init(&w, out, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "cniVersion", "1.0.0");
	json_write_key(&w, "supportedVersions");
	json_write_array_begin(&w);
	for (size_t i = 0; i < cniconf_n_versions; i++)
		json_write_string(&w, cniconf_versions[i]);
	json_write_array_end(&w);
	json_write_object_end(&w);
	return json_writer_finish(&w);
}

int cniconf_prev_result_encode(const struct cniconf_netconf *nc, struct buf *out)
{
	struct json_writer w;
	const cJSON *it;

	json_writer_init(&w, out, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "cniVersion", nc->version ? nc->version : "1.0.0");
	cJSON_ArrayForEach(it, nc->prev_result)
	{
		if (strcmp(it->string, "cniVersion") == 0)
			continue;
		json_write_key(&w, it->string);
		json_write_cjson(&w, it);
	}
	json_write_object_end(&w);
	return json_writer_finish(&w);
}

int cniconf_error_result_encode(const char *version, int code, const char *msg, const char *details,
				struct buf *out)
{
	struct json_writer w;

	json_writer_init(&w, out, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "cniVersion", version ? version : "1.0.0");
	json_kv_int(&w, "code", code);
	json_kv_str(&w, "msg", msg);
	if (details && *details)
		json_kv_str(&w, "details", details);
	json_write_object_end(&w);
	return json_writer_finish(&w);
}
