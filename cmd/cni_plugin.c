/* The CNI plugin (CNI spec 1.0.0, chained after the primary plugin): with CNI_COMMAND set, reads
 * the network configuration on stdin and enrolls ambient pods through the node agent. */
#include "cmd/cni.h"
#include "pkg/buf/buf.h"
#include "pkg/json/json.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* CNI spec §"Error": well-known error codes. */
enum {
	CNI_E_INCOMPATIBLE = 1,
	CNI_E_INVALID_ENV = 4,
	CNI_E_DECODE = 6,
	CNI_E_INVALID_NETCONF = 7,
	CNI_E_TRY_LATER = 11,
	CNI_E_OTHER = 999,
};

static const char *const supported[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0"};

#define STDIN_MAX ((size_t)1 << 20)

struct plugin {
	const char *command;
	const char *version; /* the netconf's cniVersion, once known */
	cJSON *conf;
	const char *ctl;
	const char *netns, *container, *ifname;
	char uid[INPOD_STR_MAX + 1];
	char pod_name[INPOD_STR_MAX + 1];
	char pod_ns[INPOD_STR_MAX + 1];
	char pod_sa[INPOD_STR_MAX + 1];
	bool enroll;
	uint16_t ports[REDIRECT_MAX_EXCLUDE];
	size_t nports;
};

static void emit(struct buf *b)
{
	fwrite(buf_rptr(b), 1, buf_len(b), stdout);
	fputc('\n', stdout);
	fflush(stdout);
}

/* The result of a failed command is this JSON on stdout and a non-zero exit (spec §"Error"). */
static int fail(const struct plugin *p, int code, const char *msg, const char *details)
{
	struct buf b;
	struct json_writer w;

	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "cniVersion", p->version ? p->version : "1.0.0");
	json_kv_int(&w, "code", code);
	json_kv_str(&w, "msg", msg);
	if (details && *details)
		json_kv_str(&w, "details", details);
	json_write_object_end(&w);
	json_writer_finish(&w);
	emit(&b);
	buf_fini(&b);
	fprintf(stderr, "ambient cni plugin: %s%s%s\n", msg, details && *details ? ": " : "",
		details ? details : "");
	return 1;
}

static int cmd_version_out(void)
{
	struct buf b;
	struct json_writer w;

	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "cniVersion", "1.0.0");
	json_write_key(&w, "supportedVersions");
	json_write_array_begin(&w);
	for (size_t i = 0; i < ARRAY_LEN(supported); i++)
		json_write_string(&w, supported[i]);
	json_write_array_end(&w);
	json_write_object_end(&w);
	json_writer_finish(&w);
	emit(&b);
	buf_fini(&b);
	return 0;
}

/* ADD's result for a chained plugin: prevResult unchanged, in the netconf's version. */
static int pass_through(const struct plugin *p)
{
	const cJSON *prev = cJSON_GetObjectItemCaseSensitive(p->conf, "prevResult");
	const cJSON *it;
	struct buf b;
	struct json_writer w;

	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "cniVersion", p->version);
	if (cJSON_IsObject(prev))
		cJSON_ArrayForEach(it, prev)
		{
			if (strcmp(it->string, "cniVersion") == 0)
				continue;
			json_write_key(&w, it->string);
			json_write_cjson(&w, it);
		}
	json_write_object_end(&w);
	json_writer_finish(&w);
	emit(&b);
	buf_fini(&b);
	return 0;
}

static int read_stdin(struct buf *b)
{
	ssize_t r;

	while ((r = buf_read_fd(b, 0, 0)) > 0)
		;
	return r < 0 ? -1 : 0;
}

/* "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=..." */
static int args_parse(struct plugin *p, const char *args, char *bad, size_t cap)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{"K8S_POD_UID", offsetof(struct plugin, uid)},
		{"K8S_POD_NAME", offsetof(struct plugin, pod_name)},
		{"K8S_POD_NAMESPACE", offsetof(struct plugin, pod_ns)},
		{"K8S_POD_SERVICE_ACCOUNT", offsetof(struct plugin, pod_sa)},
	};
	const char *s = args;

	while (s && *s) {
		const char *end = strchr(s, ';');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		const char *eq = memchr(s, '=', len);

		if (len == 0) {
			s = end ? end + 1 : NULL;
			continue;
		}
		if (!eq || eq == s) {
			snprintf(bad, cap, "'%.*s' is not KEY=VALUE", (int)len, s);
			return -1;
		}
		for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
			size_t vlen = len - (size_t)(eq + 1 - s);

			if (strlen(keys[i].key) != (size_t)(eq - s) ||
			    strncmp(s, keys[i].key, (size_t)(eq - s)) != 0)
				continue;
			if (vlen > INPOD_STR_MAX) {
				snprintf(bad, cap, "%s: longer than %d bytes", keys[i].key,
					 INPOD_STR_MAX);
				return -1;
			}
			memcpy((char *)p + keys[i].off, eq + 1, vlen);
			((char *)p + keys[i].off)[vlen] = '\0';
		}
		s = end ? end + 1 : NULL;
	}
	return 0;
}

static bool label_says(const char *v, const char *what)
{
	return v && strcmp(v, what) == 0;
}

/* Pods are ambient when the netconf says enroll:true or a pod label
 * ambient.io/dataplane-mode (or istio.io/dataplane-mode) is "ambient"; "none" always opts out. */
static int netconf_check(struct plugin *p, char *why, size_t cap)
{
	const cJSON *c = p->conf, *v, *labels, *it;
	const char *mode = NULL;

	v = cJSON_GetObjectItemCaseSensitive(c, "name");
	if (!cJSON_IsString(v) || !v->valuestring[0])
		return snprintf(why, cap, ".name: missing or not a string"), -1;
	v = cJSON_GetObjectItemCaseSensitive(c, "type");
	if (!cJSON_IsString(v) || !v->valuestring[0])
		return snprintf(why, cap, ".type: missing or not a string"), -1;
	v = cJSON_GetObjectItemCaseSensitive(c, "controlSocket");
	if (v && !cJSON_IsString(v))
		return snprintf(why, cap, ".controlSocket: expected a string"), -1;
	if (v)
		p->ctl = v->valuestring;
	v = cJSON_GetObjectItemCaseSensitive(c, "enroll");
	if (v && !cJSON_IsBool(v))
		return snprintf(why, cap, ".enroll: expected a boolean"), -1;
	p->enroll = cJSON_IsTrue(v);
	v = cJSON_GetObjectItemCaseSensitive(c, "prevResult");
	if (v && !cJSON_IsObject(v))
		return snprintf(why, cap, ".prevResult: expected an object"), -1;
	v = cJSON_GetObjectItemCaseSensitive(c, "excludeInboundPorts");
	if (v && !cJSON_IsArray(v))
		return snprintf(why, cap, ".excludeInboundPorts: expected an array"), -1;
	cJSON_ArrayForEach(it, v)
	{
		uint64_t port;

		if (p->nports == REDIRECT_MAX_EXCLUDE || json_get_uint(it, 1, 65535, &port) < 0)
			return snprintf(why, cap,
					".excludeInboundPorts: up to %d ports in 1..65535",
					REDIRECT_MAX_EXCLUDE),
			       -1;
		p->ports[p->nports++] = (uint16_t)port;
	}
	labels = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "args"),
						 "cni"),
		"labels");
	if (labels && !cJSON_IsArray(labels))
		return snprintf(why, cap, ".args.cni.labels: expected an array"), -1;
	cJSON_ArrayForEach(it, labels)
	{
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(it, "key");
		const cJSON *val = cJSON_GetObjectItemCaseSensitive(it, "value");

		if (!cJSON_IsString(k) || !cJSON_IsString(val))
			return snprintf(why, cap,
					".args.cni.labels: each item needs string key and value"),
			       -1;
		if (strcmp(k->valuestring, "ambient.io/dataplane-mode") == 0 ||
		    (strcmp(k->valuestring, "istio.io/dataplane-mode") == 0 && !mode))
			mode = val->valuestring;
	}
	if (label_says(mode, "none"))
		p->enroll = false;
	else if (label_says(mode, "ambient"))
		p->enroll = true;
	return 0;
}

static int agent_error(const struct plugin *p, int rc, const char *msg)
{
	if (rc == -E_CLOSED || rc == -E_IO || rc == -E_PROTO)
		return fail(p, CNI_E_TRY_LATER, "the ambient cni agent is not reachable", msg);
	if (strcmp(msg, CNI_ERR_NO_ZTUNNEL) == 0)
		return fail(p, CNI_E_TRY_LATER, CNI_ERR_NO_ZTUNNEL,
			    "ztunnel is not connected to the ambient cni agent; retry later");
	return fail(p, CNI_E_OTHER, "ambient enrollment failed", msg);
}

/* Returns 0 with the reply when the agent said ok; else the agent's error text in err. */
static int ask(const struct plugin *p, struct buf *req, cJSON **reply, char *err, size_t cap)
{
	struct errbuf eb;
	const cJSON *e;
	int rc = cni_ctl_call(p->ctl, (const char *)buf_rptr(req), buf_len(req), reply, &eb);

	if (rc < 0) {
		snprintf(err, cap, "%s", eb.msg);
		return rc;
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(*reply, "ok")))
		return 0;
	e = cJSON_GetObjectItemCaseSensitive(*reply, "error");
	snprintf(err, cap, "%s", cJSON_IsString(e) ? e->valuestring : "refused");
	json_free(*reply);
	*reply = NULL;
	return -E_DENIED;
}

static int do_add(struct plugin *p)
{
	struct buf b;
	struct json_writer w;
	cJSON *reply = NULL;
	char err[ERRBUF_SIZE];
	int rc;

	if (!p->enroll)
		return pass_through(p);
	if (!p->netns || !*p->netns)
		return fail(p, CNI_E_INVALID_ENV, "CNI_NETNS is required for ADD", NULL);
	buf_init(&b, CNI_CTL_MAX);
	json_writer_init(&w, &b, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "op", "add");
	json_kv_str(&w, "uid", p->uid);
	json_kv_str(&w, "netns", p->netns);
	json_kv_str(&w, "name", p->pod_name);
	json_kv_str(&w, "namespace", p->pod_ns);
	json_kv_str(&w, "serviceAccount", p->pod_sa);
	json_write_key(&w, "excludeInboundPorts");
	json_write_array_begin(&w);
	for (size_t i = 0; i < p->nports; i++)
		json_write_uint(&w, p->ports[i]);
	json_write_array_end(&w);
	json_write_object_end(&w);
	json_writer_finish(&w);
	rc = ask(p, &b, &reply, err, sizeof(err));
	buf_fini(&b);
	json_free(reply);
	if (rc < 0)
		return agent_error(p, rc, err);
	return pass_through(p);
}

/* DEL must succeed when there is nothing (left) to delete (spec §"DEL"): an unknown uid, a
 * netns already gone, even an agent that is down (the rules die with the netns and the agent
 * drops the entry when it cannot reopen it). */
static int do_del(struct plugin *p)
{
	struct buf b;
	struct json_writer w;
	cJSON *reply = NULL;
	char err[ERRBUF_SIZE];
	int rc;

	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "op", "del");
	json_kv_str(&w, "uid", p->uid);
	json_write_object_end(&w);
	json_writer_finish(&w);
	rc = ask(p, &b, &reply, err, sizeof(err));
	buf_fini(&b);
	json_free(reply);
	if (rc < 0 && p->enroll)
		fprintf(stderr, "ambient cni plugin: DEL %s: %s (ignored)\n", p->uid, err);
	return 0;
}

static int do_check(struct plugin *p)
{
	struct buf b;
	struct json_writer w;
	cJSON *reply = NULL;
	const cJSON *it;
	char err[ERRBUF_SIZE];
	int rc;

	if (!p->enroll)
		return 0;
	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "op", "check");
	json_kv_str(&w, "uid", p->uid);
	json_write_object_end(&w);
	json_writer_finish(&w);
	rc = ask(p, &b, &reply, err, sizeof(err));
	buf_fini(&b);
	if (rc < 0)
		return agent_error(p, rc, err);
	rc = 0;
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(reply, "workloads"))
	{
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(it, "error");

		if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "ok"))) {
			rc = fail(p, CNI_E_OTHER, "ambient redirection drifted",
				  cJSON_IsString(e) ? e->valuestring : NULL);
			break;
		}
	}
	if (rc == 0 && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ztunnelConnected")))
		rc = fail(p, CNI_E_TRY_LATER, CNI_ERR_NO_ZTUNNEL, NULL);
	json_free(reply);
	return rc;
}

static bool version_supported(const char *v)
{
	for (size_t i = 0; i < ARRAY_LEN(supported); i++)
		if (strcmp(v, supported[i]) == 0)
			return true;
	return false;
}

static int run(struct plugin *p)
{
	struct buf in;
	struct json_error je;
	const cJSON *v;
	char why[ERRBUF_SIZE];

	if (strcmp(p->command, "VERSION") == 0)
		return cmd_version_out();
	if (strcmp(p->command, "ADD") && strcmp(p->command, "DEL") && strcmp(p->command, "CHECK"))
		return fail(p, CNI_E_INVALID_ENV, "unknown CNI_COMMAND", p->command);
	buf_init(&in, STDIN_MAX);
	if (read_stdin(&in) < 0) {
		buf_fini(&in);
		return fail(p, CNI_E_DECODE, "cannot read the network configuration on stdin",
			    "larger than 1 MiB or unreadable");
	}
	if (json_parse((const char *)buf_rptr(&in), buf_len(&in), NULL, &p->conf, &je) < 0) {
		buf_fini(&in);
		json_error_format(&je, "stdin", why, sizeof(why));
		return fail(p, CNI_E_DECODE, "cannot decode the network configuration", why);
	}
	buf_fini(&in);
	if (!cJSON_IsObject(p->conf))
		return fail(p, CNI_E_DECODE, "cannot decode the network configuration",
			    "expected a JSON object");
	v = cJSON_GetObjectItemCaseSensitive(p->conf, "cniVersion");
	if (!cJSON_IsString(v))
		return fail(p, CNI_E_INVALID_NETCONF, "invalid network configuration",
			    ".cniVersion: missing or not a string");
	if (!version_supported(v->valuestring)) {
		snprintf(why, sizeof(why),
			 "cniVersion %.64s; this plugin supports 0.3.0, 0.3.1, "
			 "0.4.0, 1.0.0",
			 v->valuestring);
		return fail(p, CNI_E_INCOMPATIBLE, "incompatible CNI version", why);
	}
	p->version = v->valuestring;
	if (netconf_check(p, why, sizeof(why)) < 0)
		return fail(p, CNI_E_INVALID_NETCONF, "invalid network configuration", why);
	if (!p->container || !*p->container)
		return fail(p, CNI_E_INVALID_ENV, "CNI_CONTAINERID is required", NULL);
	if (!p->ifname || !*p->ifname)
		return fail(p, CNI_E_INVALID_ENV, "CNI_IFNAME is required", NULL);
	if (args_parse(p, getenv("CNI_ARGS"), why, sizeof(why)) < 0)
		return fail(p, CNI_E_INVALID_ENV, "invalid CNI_ARGS", why);
	if (!p->uid[0])
		snprintf(p->uid, sizeof(p->uid), "%.*s", INPOD_STR_MAX, p->container);
	if (strcmp(p->command, "ADD") == 0)
		return do_add(p);
	if (strcmp(p->command, "DEL") == 0)
		return do_del(p);
	return do_check(p);
}

int cni_plugin_main(void)
{
	struct plugin p = {
		.command = getenv("CNI_COMMAND"),
		.ctl = CNI_DEFAULT_CONTROL,
		.netns = getenv("CNI_NETNS"),
		.container = getenv("CNI_CONTAINERID"),
		.ifname = getenv("CNI_IFNAME"),
	};
	int rc;

	/* stdout carries only the result; logs go to stderr (the runtime records it). */
	log_set_level(LOG_WARN);
	rc = run(&p);
	json_free(p.conf);
	return rc;
}
