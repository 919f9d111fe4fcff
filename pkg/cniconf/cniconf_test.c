/* Unit tests for pkg/cniconf: netconf, CNI_ARGS, the ambient decision, results, the state file,
 * control requests and replies, times and port lists. */
#include "pkg/cniconf/cniconf.h"
#include "test/unit.h"

#include <stdlib.h>

/* b's bytes as a C string (a static copy). */
static const char *bstr(const struct buf *b)
{
	static char s[4096];

	snprintf(s, sizeof(s), "%.*s", (int)buf_len(b), (const char *)buf_rptr(b));
	return s;
}

/* ---- netconf --------------------------------------------------------------------------------- */

#define NC_HEAD "{\"cniVersion\":\"1.0.0\",\"name\":\"k8s\",\"type\":\"ambient\""

/* Decodes s; returns "ok" or the error text (static), and the rc in *rc. */
static const char *nc_err(const char *s, int *rc)
{
	static struct errbuf eb;
	struct cniconf_netconf nc;

	errbuf_clear(&eb);
	*rc = cniconf_netconf_decode(s, strlen(s), &nc, &eb);
	cniconf_netconf_fini(&nc);
	return *rc == 0 ? "ok" : eb.msg;
}

static bool nc_enroll(const char *s)
{
	struct cniconf_netconf nc;
	struct errbuf eb;
	bool r;

	if (cniconf_netconf_decode(s, strlen(s), &nc, &eb) < 0) {
		unit_fail(__FILE__, __LINE__, "decode %s: %s", s, eb.msg);
		cniconf_netconf_fini(&nc);
		return false;
	}
	r = nc.enroll;
	cniconf_netconf_fini(&nc);
	return r;
}

TEST(cniconf_versions_and_commands)
{
	CHECK(cniconf_version_supported("0.3.0"));
	CHECK(cniconf_version_supported("1.0.0"));
	CHECK(!cniconf_version_supported("0.2.0"));
	CHECK(!cniconf_version_supported("1.0"));
	CHECK(!cniconf_version_supported(NULL));
	CHECK_INT(cniconf_n_versions, 4);
	CHECK_INT(cniconf_command_parse("ADD"), CNICONF_CMD_ADD);
	CHECK_INT(cniconf_command_parse("DEL"), CNICONF_CMD_DEL);
	CHECK_INT(cniconf_command_parse("CHECK"), CNICONF_CMD_CHECK);
	CHECK_INT(cniconf_command_parse("VERSION"), CNICONF_CMD_VERSION);
	CHECK_INT(cniconf_command_parse("add"), CNICONF_CMD_UNKNOWN);
	CHECK_INT(cniconf_command_parse("GC"), CNICONF_CMD_UNKNOWN);
	CHECK_INT(cniconf_command_parse(NULL), CNICONF_CMD_UNKNOWN);
}

TEST(cniconf_enroll_decision)
{
	CHECK_INT(cniconf_mode_parse("ambient"), CNICONF_MODE_AMBIENT);
	CHECK_INT(cniconf_mode_parse("none"), CNICONF_MODE_NONE);
	CHECK_INT(cniconf_mode_parse("Ambient"), CNICONF_MODE_UNSET);
	CHECK_INT(cniconf_mode_parse(""), CNICONF_MODE_UNSET);
	CHECK_INT(cniconf_mode_parse(NULL), CNICONF_MODE_UNSET);
	CHECK(!cniconf_enroll_decide(false, CNICONF_MODE_UNSET));
	CHECK(cniconf_enroll_decide(true, CNICONF_MODE_UNSET));
	CHECK(cniconf_enroll_decide(false, CNICONF_MODE_AMBIENT));
	CHECK(!cniconf_enroll_decide(true, CNICONF_MODE_NONE));
}

TEST(cniconf_netconf_full)
{
	const char *s = NC_HEAD
		",\"controlSocket\":\"/run/c.sock\",\"enroll\":false,"
		"\"excludeInboundPorts\":[22,8080],"
		"\"prevResult\":{\"cniVersion\":\"0.4.0\",\"ips\":[{\"address\":\"10.0.0.5/24\"}]},"
		"\"args\":{\"cni\":{\"labels\":[{\"key\":\"app\",\"value\":\"web\"},"
		"{\"key\":\"ambient.io/dataplane-mode\",\"value\":\"ambient\"}]}}}";
	struct cniconf_netconf nc;
	struct errbuf eb;
	struct buf out;

	REQUIRE(cniconf_netconf_decode(s, strlen(s), &nc, &eb) == 0);
	CHECK_STR(nc.version, "1.0.0");
	CHECK_STR(nc.name, "k8s");
	CHECK_STR(nc.type, "ambient");
	CHECK_STR(nc.control_socket, "/run/c.sock");
	CHECK(!nc.enroll_flag);
	CHECK_INT(nc.mode, CNICONF_MODE_AMBIENT);
	CHECK(nc.enroll);
	CHECK_INT(nc.n_exclude, 2);
	CHECK_INT(nc.exclude[0], 22);
	CHECK_INT(nc.exclude[1], 8080);
	buf_init(&out, 0);
	REQUIRE(cniconf_prev_result_encode(&nc, &out) == 0);
	CHECK_INT(buf_len(&out),
		  strlen("{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.0.0.5/24\"}]}"));
	CHECK(memcmp(buf_rptr(&out),
		     "{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.0.0.5/24\"}]}",
		     buf_len(&out)) == 0);
	buf_fini(&out);
	cniconf_netconf_fini(&nc);
	CHECK(nc.root == NULL);
}

TEST(cniconf_netconf_minimal)
{
	const char *s = NC_HEAD "}";
	struct cniconf_netconf nc;
	struct errbuf eb;
	struct buf out;

	REQUIRE(cniconf_netconf_decode(s, strlen(s), &nc, &eb) == 0);
	CHECK(nc.control_socket == NULL);
	CHECK(nc.prev_result == NULL);
	CHECK(!nc.enroll);
	CHECK_INT(nc.n_exclude, 0);
	buf_init(&out, 0);
	REQUIRE(cniconf_prev_result_encode(&nc, &out) == 0);
	CHECK(buf_len(&out) == 22 && memcmp(buf_rptr(&out), "{\"cniVersion\":\"1.0.0\"}", 22) == 0);
	buf_fini(&out);
	cniconf_netconf_fini(&nc);
}

TEST(cniconf_netconf_labels)
{
#define L(k, v) "{\"key\":\"" k "\",\"value\":\"" v "\"}"
#define NC(extra, labels) NC_HEAD extra ",\"args\":{\"cni\":{\"labels\":[" labels "]}}}"
	CHECK(!nc_enroll(NC("", L("app", "web"))));
	CHECK(nc_enroll(NC(",\"enroll\":true", L("app", "web"))));
	CHECK(nc_enroll(NC("", L("istio.io/dataplane-mode", "ambient"))));
	CHECK(!nc_enroll(NC(",\"enroll\":true", L("ambient.io/dataplane-mode", "none"))));
	CHECK(!nc_enroll(NC(",\"enroll\":true", L("istio.io/dataplane-mode", "none"))));
	/* ambient.io wins over istio.io in either order; the first istio.io label counts. */
	CHECK(!nc_enroll(NC("", L("istio.io/dataplane-mode",
				  "ambient") "," L("ambient.io/dataplane-mode", "none"))));
	CHECK(nc_enroll(NC("", L("ambient.io/dataplane-mode",
				 "ambient") "," L("istio.io/dataplane-mode", "none"))));
	CHECK(nc_enroll(NC("", L("istio.io/dataplane-mode",
				 "ambient") "," L("istio.io/dataplane-mode", "none"))));
	/* An unknown value is no label: the netconf's enroll decides. */
	CHECK(nc_enroll(NC(",\"enroll\":true", L("ambient.io/dataplane-mode", "sidecar"))));
	CHECK(!nc_enroll(NC("", L("ambient.io/dataplane-mode", "sidecar"))));
	CHECK(!nc_enroll(NC_HEAD ",\"args\":{\"k8s\":1}}"));
	CHECK(!nc_enroll(NC_HEAD ",\"args\":{\"cni\":{}}}"));
	CHECK(nc_enroll(NC_HEAD ",\"args\":{\"cni\":{\"labels\":[]}},\"enroll\":true}"));
#undef NC
#undef L
}

TEST(cniconf_netconf_errors)
{
	int rc;

	CHECK_STR(nc_err("{not json", &rc), "netconf:1:2: invalid JSON: expected a string key or "
					    "'}', got 'not'");
	CHECK_INT(rc, -E_PARSE);
	CHECK_INT(cniconf_netconf_error_code(rc), CNICONF_E_DECODE);
	CHECK_STR(nc_err("[]", &rc), "netconf: .: expected an object, got array");
	CHECK_INT(rc, -E_PARSE);
	CHECK_STR(nc_err("{\"name\":\"n\",\"type\":\"t\"}", &rc), "netconf: .cniVersion: missing");
	CHECK_INT(cniconf_netconf_error_code(rc), CNICONF_E_INVALID_NETCONF);
	CHECK_STR(nc_err("{\"cniVersion\":1}", &rc),
		  "netconf: .cniVersion: expected a string, got number");
	CHECK_STR(nc_err("{\"cniVersion\":\"0.2.0\",\"name\":5}", &rc),
		  "netconf: .cniVersion: \"0.2.0\" is not supported; this plugin supports 0.3.0, "
		  "0.3.1, 0.4.0, 1.0.0");
	CHECK_INT(rc, -E_UNSUPP);
	CHECK_INT(cniconf_netconf_error_code(rc), CNICONF_E_INCOMPATIBLE);
	CHECK_STR(nc_err("{\"cniVersion\":\"1.0.0\",\"type\":\"t\"}", &rc),
		  "netconf: .name: missing");
	CHECK_STR(nc_err("{\"cniVersion\":\"1.0.0\",\"name\":\"\",\"type\":\"t\"}", &rc),
		  "netconf: .name: empty");
	CHECK_STR(nc_err("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":5}", &rc),
		  "netconf: .type: expected a string, got number");
	CHECK_INT(rc, -E_INVAL);
	CHECK_STR(nc_err(NC_HEAD ",\"enroll\":\"yes\"}", &rc),
		  "netconf: .enroll: expected a boolean, got string");
	CHECK_STR(nc_err(NC_HEAD ",\"controlSocket\":7}", &rc),
		  "netconf: .controlSocket: expected a string, got number");
	CHECK_STR(nc_err(NC_HEAD ",\"controlSocket\":\"\"}", &rc),
		  "netconf: .controlSocket: empty");
	CHECK_STR(nc_err(NC_HEAD ",\"prevResult\":[]}", &rc),
		  "netconf: .prevResult: expected an object, got array");
	CHECK_STR(nc_err(NC_HEAD ",\"excludeInboundPorts\":22}", &rc),
		  "netconf: .excludeInboundPorts: expected an array, got number");
	CHECK_STR(nc_err(NC_HEAD ",\"excludeInboundPorts\":[22,0]}", &rc),
		  "netconf: .excludeInboundPorts[1]: expected a port 1..65535");
	CHECK_STR(nc_err(NC_HEAD ",\"excludeInboundPorts\":[22,\"80\"]}", &rc),
		  "netconf: .excludeInboundPorts[1]: expected a port 1..65535");
	CHECK_STR(nc_err(NC_HEAD ",\"excludeInboundPorts\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,"
				 "16,17]}",
			 &rc),
		  "netconf: .excludeInboundPorts: more than 16 ports");
	CHECK_INT(rc, -E_LIMIT);
	CHECK_STR(nc_err(NC_HEAD ",\"args\":[]}", &rc),
		  "netconf: .args: expected an object, got array");
	CHECK_STR(nc_err(NC_HEAD ",\"args\":{\"cni\":\"x\"}}", &rc),
		  "netconf: .args.cni: expected an object, got string");
	CHECK_STR(nc_err(NC_HEAD ",\"args\":{\"cni\":{\"labels\":{}}}}", &rc),
		  "netconf: .args.cni.labels: expected an array, got object");
	CHECK_STR(nc_err(NC_HEAD ",\"args\":{\"cni\":{\"labels\":[{\"key\":\"a\",\"value\":\"b\"},"
				 "{\"key\":\"c\",\"value\":1}]}}}",
			 &rc),
		  "netconf: .args.cni.labels[1].value: expected a string, got number");
	CHECK_STR(nc_err(NC_HEAD ",\"args\":{\"cni\":{\"labels\":[{\"value\":\"b\"}]}}}", &rc),
		  "netconf: .args.cni.labels[0].key: missing");
	CHECK_STR(nc_err(NC_HEAD ",\"args\":{\"cni\":{\"labels\":[\"a=b\"]}}}", &rc),
		  "netconf: .args.cni.labels[0]: expected an object, got string");
	CHECK_STR(nc_err(NC_HEAD ",\"name\":\"dup\"}", &rc),
		  "netconf:1:53: invalid JSON: duplicate key \"name\" at .name");
}

TEST(cniconf_netconf_version_kept_for_errors)
{
	const char *s = "{\"cniVersion\":\"0.4.0\",\"name\":\"n\",\"type\":\"t\",\"enroll\":1}";
	struct cniconf_netconf nc;
	struct errbuf eb;
	struct buf out;

	CHECK_INT(cniconf_netconf_decode(s, strlen(s), &nc, &eb), -E_INVAL);
	CHECK_STR(nc.version, "0.4.0");
	buf_init(&out, 0);
	REQUIRE(cniconf_error_result_encode(nc.version, CNICONF_E_INVALID_NETCONF,
					    "invalid network configuration", eb.msg, &out) == 0);
	CHECK_STR(bstr(&out), "{\"cniVersion\":\"0.4.0\",\"code\":7,\"msg\":\"invalid network "
			      "configuration\",\"details\":\"netconf: .enroll: expected a "
			      "boolean, got number\"}");
	cniconf_netconf_fini(&nc);
	buf_reset(&out);
	REQUIRE(cniconf_error_result_encode(NULL, 4, "CNI_IFNAME is required", "", &out) == 0);
	CHECK_STR(bstr(&out),
		  "{\"cniVersion\":\"1.0.0\",\"code\":4,\"msg\":\"CNI_IFNAME is required\"}");
	buf_reset(&out);
	REQUIRE(cniconf_version_result_encode(&out) == 0);
	CHECK_STR(bstr(&out), "{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.3.0\","
			      "\"0.3.1\",\"0.4.0\",\"1.0.0\"]}");
	buf_fini(&out);
}

/* ---- CNI_ARGS -------------------------------------------------------------------------------- */

TEST(cniconf_args)
{
	struct cniconf_args a;
	struct errbuf eb;
	char uid[CNICONF_STR_MAX + 1], big[600];

	REQUIRE(cniconf_args_parse("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;;K8S_POD_NAME=web-0;"
				   "K8S_POD_UID=u-1;K8S_POD_SERVICE_ACCOUNT=sa;X=a=b;",
				   &a, &eb) == 0);
	CHECK_STR(a.pod_namespace, "shop");
	CHECK_STR(a.pod_name, "web-0");
	CHECK_STR(a.pod_uid, "u-1");
	CHECK_STR(a.pod_service_account, "sa");
	cniconf_uid_choose(&a, "c0ffee", uid);
	CHECK_STR(uid, "u-1");
	REQUIRE(cniconf_args_parse("K8S_POD_NAME=x;K8S_POD_UID=", &a, &eb) == 0);
	cniconf_uid_choose(&a, "c0ffee", uid);
	CHECK_STR(uid, "c0ffee");
	REQUIRE(cniconf_args_parse(NULL, &a, &eb) == 0);
	CHECK_STR(a.pod_name, "");
	memset(big, 'c', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cniconf_uid_choose(&a, big, uid);
	CHECK_INT(strlen(uid), CNICONF_STR_MAX);
	cniconf_uid_choose(&a, NULL, uid);
	CHECK_STR(uid, "");
	CHECK_INT(cniconf_args_parse("K8S_POD_NAME=a;oops;K8S_POD_UID=u", &a, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "CNI_ARGS: item 2 'oops' is not KEY=VALUE");
	CHECK_INT(cniconf_args_parse("=v", &a, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "CNI_ARGS: item 1 '=v' is not KEY=VALUE");
	memcpy(big, "K8S_POD_UID=", 12);
	CHECK_INT(cniconf_args_parse(big, &a, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "CNI_ARGS: K8S_POD_UID: longer than 253 bytes");
	/* Unknown keys may be long. */
	memcpy(big, "OTHER_THING=", 12);
	CHECK_INT(cniconf_args_parse(big, &a, &eb), 0);
}

/* ---- state file ------------------------------------------------------------------------------ */

static const char *state_err(const char *s)
{
	static struct errbuf eb;
	struct cniconf_entry *e;
	size_t n;

	if (cniconf_state_decode(s, strlen(s), "st.json", &e, &n, &eb) == 0) {
		free(e);
		return "ok";
	}
	CHECK(e == NULL && n == 0);
	return eb.msg;
}

TEST(cniconf_state_roundtrip)
{
	const char *s =
		"{\"version\":1,\"workloads\":[{\"uid\":\"u1\",\"netns\":\"/var/run/netns/a\","
		"\"netnsInode\":4026532301,\"name\":\"web\",\"namespace\":\"shop\","
		"\"serviceAccount\":\"sa\",\"host\":false,\"ipv6\":true,"
		"\"excludeInboundPorts\":[22],\"enrolled\":\"2026-11-26T14:00:00Z\","
		"\"future\":{\"x\":1}},{\"uid\":\"vm\",\"netns\":\"/proc/1/ns/net\","
		"\"host\":true,\"enrolled\":null,\"excludeInboundPorts\":null}]}";
	struct cniconf_entry *e, *e2;
	struct errbuf eb;
	struct buf out;
	size_t n, n2;

	REQUIRE(cniconf_state_decode(s, strlen(s), "st", &e, &n, &eb) == 0);
	REQUIRE(n == 2);
	CHECK_STR(e[0].uid, "u1");
	CHECK_STR(e[0].netns, "/var/run/netns/a");
	CHECK(e[0].netns_inode == 4026532301ull);
	CHECK_STR(e[0].namespace_, "shop");
	CHECK_STR(e[0].service_account, "sa");
	CHECK(e[0].ipv6 && !e[0].host);
	CHECK_INT(e[0].n_exclude, 1);
	CHECK_INT(e[0].exclude[0], 22);
	CHECK(e[0].enrolled_ms == 1795701600000ll);
	CHECK(e[1].host && e[1].enrolled_ms == 0 && e[1].n_exclude == 0);
	CHECK_STR(e[1].name, "");
	buf_init(&out, 0);
	REQUIRE(cniconf_state_encode(e, n, &out) == 0);
	CHECK(buf_len(&out) > 0 && buf_rptr(&out)[buf_len(&out) - 1] == '\n');
	REQUIRE(cniconf_state_decode((const char *)buf_rptr(&out), buf_len(&out), "st", &e2, &n2,
				     &eb) == 0);
	REQUIRE(n2 == 2);
	CHECK(memcmp(&e[0], &e2[0], sizeof(e[0])) == 0);
	CHECK(memcmp(&e[1], &e2[1], sizeof(e[1])) == 0);
	free(e);
	free(e2);
	buf_reset(&out);
	REQUIRE(cniconf_state_encode(NULL, 0, &out) == 0);
	REQUIRE(cniconf_state_decode((const char *)buf_rptr(&out), buf_len(&out), "st", &e, &n,
				     &eb) == 0);
	CHECK(n == 0 && e == NULL);
	buf_fini(&out);
}

TEST(cniconf_state_errors)
{
	char big[400];

	CHECK_STR(state_err("{\"workloads\": [}"),
		  "st.json:1:16: invalid JSON: expected a value or ']', got '}'");
	CHECK_STR(state_err("[]"), "st.json: .: expected an object, got array");
	CHECK_STR(state_err("{\"version\":1}"), "st.json: .workloads: missing");
	CHECK_STR(state_err("{\"workloads\":{}}"),
		  "st.json: .workloads: expected an array, got object");
	CHECK_STR(state_err("{\"workloads\":[{\"uid\":5,\"netns\":\"/x\"}]}"),
		  "st.json: .workloads[0].uid: expected a string, got number");
	CHECK_STR(state_err("{\"workloads\":[{\"uid\":\"a\",\"netns\":\"/x\"},7]}"),
		  "st.json: .workloads[1]: expected an object, got number");
	CHECK_STR(state_err("{\"workloads\":[{\"uid\":\"a\"}]}"),
		  "st.json: .workloads[0].netns: missing");
	CHECK_STR(state_err("{\"workloads\":[{\"uid\":\"\",\"netns\":\"/x\"}]}"),
		  "st.json: .workloads[0].uid: empty");
	CHECK_STR(state_err("{\"workloads\":[{\"uid\":\"a\",\"netns\":\"/x\"},"
			    "{\"uid\":\"a\",\"netns\":\"/y\"}]}"),
		  "st.json: .workloads[1].uid: workload a appears twice");
	CHECK_STR(state_err("{\"workloads\":[{\"uid\":\"a\",\"netns\":\"/x\",\"host\":1}]}"),
		  "st.json: .workloads[0].host: expected a boolean, got number");
	CHECK_STR(state_err("{\"workloads\":[{\"uid\":\"a\",\"netns\":\"/x\",\"netnsInode\":-1}]}"),
		  "st.json: .workloads[0].netnsInode: expected an integer, got number");
	CHECK_STR(state_err("{\"workloads\":[{\"uid\":\"a\",\"netns\":\"/x\",\"enrolled\":"
			    "\"yesterday\"}]}"),
		  "st.json: .workloads[0].enrolled: expected a time like "
		  "\"2026-11-26T14:00:00Z\"");
	CHECK_STR(state_err("{\"workloads\":[{\"uid\":\"a\",\"netns\":\"/x\","
			    "\"excludeInboundPorts\":[22,70000]}]}"),
		  "st.json: .workloads[0].excludeInboundPorts[1]: expected a port 1..65535");
	snprintf(big, sizeof(big), "{\"workloads\":[{\"netns\":\"/x\",\"uid\":\"%0300d\"}]}", 0);
	CHECK_STR(state_err(big), "st.json: .workloads[0].uid: longer than 253 bytes");
}

TEST(cniconf_times)
{
	int64_t ms;

	CHECK_INT(cniconf_time_parse("1970-01-01T00:00:00Z", &ms), 0);
	CHECK_INT(ms, 0);
	CHECK_INT(cniconf_time_parse("2026-11-26T14:00:00Z", &ms), 0);
	CHECK(ms == 1795701600000ll);
	CHECK_INT(cniconf_time_parse("2024-02-29T23:59:59Z", &ms), 0);
	CHECK(ms == 1709251199000ll);
	CHECK_INT(cniconf_time_parse("2000-02-29T00:00:00Z", &ms), 0);
	CHECK_INT(cniconf_time_parse("2025-02-29T00:00:00Z", &ms), -E_PARSE);
	CHECK_INT(cniconf_time_parse("1900-02-29T00:00:00Z", &ms), -E_PARSE);
	CHECK_INT(cniconf_time_parse("1969-12-31T23:59:59Z", &ms), -E_PARSE);
	CHECK_INT(cniconf_time_parse("2026-04-31T00:00:00Z", &ms), -E_PARSE);
	CHECK_INT(cniconf_time_parse("2026-11-26T24:00:00Z", &ms), -E_PARSE);
	CHECK_INT(cniconf_time_parse("2026-11-26T14:00:00", &ms), -E_PARSE);
	CHECK_INT(cniconf_time_parse("2026-11-26T14:00:00Z ", &ms), -E_PARSE);
	CHECK_INT(cniconf_time_parse("2026-11-26 14:00:00Z", &ms), -E_PARSE);
	CHECK_INT(cniconf_time_parse("2026-1-026T14:00:00Z", &ms), -E_PARSE);
	CHECK_INT(cniconf_time_parse("+026-11-26T14:00:00Z", &ms), -E_PARSE);
	CHECK_INT(cniconf_time_parse("", &ms), -E_PARSE);
}

/* ---- control requests ------------------------------------------------------------------------ */

static const char *req_err(const char *s)
{
	static struct errbuf eb;
	struct cniconf_request r;

	if (cniconf_request_decode(s, strlen(s), &r, &eb) == 0)
		return "ok";
	return eb.msg;
}

TEST(cniconf_request_ops)
{
	const char *add = "{\"op\":\"add\",\"uid\":\"u1\",\"netns\":\"/var/run/netns/a\","
			  "\"namespace\":\"demo\",\"host\":true,\"excludeInboundPorts\":[22,2222]}";
	struct cniconf_request r, r2;
	struct errbuf eb;
	struct buf out;

	REQUIRE(cniconf_request_decode(add, strlen(add), &r, &eb) == 0);
	CHECK_INT(r.op, CNICONF_OP_ADD);
	CHECK_STR(r.e.uid, "u1");
	CHECK_STR(r.e.netns, "/var/run/netns/a");
	CHECK_STR(r.e.namespace_, "demo");
	CHECK(r.e.host);
	CHECK_INT(r.e.n_exclude, 2);
	buf_init(&out, 0);
	REQUIRE(cniconf_request_encode(&r, &out) == 0);
	CHECK_STR(bstr(&out), "{\"op\":\"add\",\"uid\":\"u1\",\"netns\":\"/var/run/netns/a\","
			      "\"name\":\"\",\"namespace\":\"demo\",\"serviceAccount\":\"\","
			      "\"host\":true,\"excludeInboundPorts\":[22,2222]}");
	REQUIRE(cniconf_request_decode((const char *)buf_rptr(&out), buf_len(&out), &r2, &eb) == 0);
	CHECK(memcmp(&r, &r2, sizeof(r)) == 0);

	REQUIRE(cniconf_request_decode("{\"op\":\"list\"}", strlen("{\"op\":\"list\"}"), &r, &eb) ==
		0);
	CHECK_INT(r.op, CNICONF_OP_LIST);
	buf_reset(&out);
	REQUIRE(cniconf_request_encode(&r, &out) == 0);
	CHECK_STR(bstr(&out), "{\"op\":\"list\"}");
	REQUIRE(cniconf_request_decode("{\"op\":\"check\"}", strlen("{\"op\":\"check\"}"), &r,
				       &eb) == 0);
	CHECK_INT(r.op, CNICONF_OP_CHECK);
	CHECK_STR(r.e.uid, "");
	buf_reset(&out);
	REQUIRE(cniconf_request_encode(&r, &out) == 0);
	CHECK_STR(bstr(&out), "{\"op\":\"check\"}");
	memset(&r, 0, sizeof(r));
	r.op = CNICONF_OP_DEL;
	snprintf(r.e.uid, sizeof(r.e.uid), "pod-1");
	buf_reset(&out);
	REQUIRE(cniconf_request_encode(&r, &out) == 0);
	CHECK_STR(bstr(&out), "{\"op\":\"del\",\"uid\":\"pod-1\"}");
	r.op = 0;
	CHECK_INT(cniconf_request_encode(&r, &out), -E_INVAL);
	buf_fini(&out);
}

TEST(cniconf_request_errors)
{
	char big[400];

	CHECK_STR(req_err("{"), "request:1:2: invalid JSON: unexpected end of input");
	CHECK_STR(req_err("[1]"), "request: expected an object with \"op\"");
	CHECK_STR(req_err("{\"uid\":\"x\"}"), "request: expected an object with \"op\"");
	CHECK_STR(req_err("{\"op\":\"frob\"}"),
		  "request: .op: unknown op \"frob\" (add, del, list, check)");
	CHECK_STR(req_err("{\"op\":\"del\"}"), "request: .uid: missing");
	CHECK_STR(req_err("{\"op\":\"del\",\"uid\":\"\"}"), "request: .uid: empty");
	CHECK_STR(req_err("{\"op\":\"del\",\"uid\":\"x\",\"extra\":1}"),
		  "request: unknown key \"extra\" (del takes op, uid)");
	CHECK_STR(req_err("{\"op\":\"list\",\"uid\":\"x\"}"),
		  "request: unknown key \"uid\" (list takes op)");
	CHECK_STR(req_err("{\"op\":\"add\",\"uid\":\"x\",\"netns\":\"/n\",\"netnsInode\":1}"),
		  "request: unknown key \"netnsInode\" (add takes op, uid, netns, name, namespace, "
		  "serviceAccount, host, excludeInboundPorts)");
	CHECK_STR(req_err("{\"op\":\"add\",\"uid\":7,\"netns\":\"/x\"}"),
		  "request: .uid: expected a string, got number");
	CHECK_STR(req_err("{\"op\":\"add\",\"uid\":\"x\",\"netns\":\"rel/path\"}"),
		  "request: .netns: must be an absolute path, got \"rel/path\"");
	CHECK_STR(req_err("{\"op\":\"add\",\"uid\":\"x\",\"netns\":\"/n\",\"excludeInboundPorts\":"
			  "[0]}"),
		  "request: .excludeInboundPorts[0]: expected a port 1..65535");
	CHECK_STR(req_err("{\"op\":\"check\",\"uid\":null}"),
		  "request: .uid: expected a string, got null");
	snprintf(big, sizeof(big), "{\"op\":\"add\",\"netns\":\"/x\",\"uid\":\"%0300d\"}", 0);
	CHECK_STR(req_err(big), "request: .uid: longer than 253 bytes");
}

/* ---- control replies ------------------------------------------------------------------------- */

TEST(cniconf_reply_ok)
{
	const char *list = "{\"ok\":true,\"ztunnelConnected\":true,\"workloads\":[{\"uid\":\"u1\","
			   "\"netns\":\"/n\",\"namespace\":\"demo\",\"enrolled\":"
			   "\"2026-11-26T14:00:00Z\",\"netnsInode\":5,\"new\":[1]},"
			   "{\"uid\":\"u2\",\"netns\":\"/m\",\"ok\":false,\"error\":\"gone\"}]}";
	struct cniconf_reply r;
	struct errbuf eb;

	REQUIRE(cniconf_reply_decode(list, strlen(list), &r, &eb) == 0);
	CHECK(r.ok && r.ztunnel_connected && !r.removed && r.error == NULL);
	REQUIRE(r.n_rows == 2 && r.workloads != NULL);
	CHECK_STR(r.rows[0].uid, "u1");
	CHECK_STR(r.rows[0].namespace_, "demo");
	CHECK_STR(r.rows[0].name, "");
	CHECK(r.rows[0].enrolled_ms == 1795701600000ll);
	CHECK(r.rows[0].error == NULL);
	CHECK(!r.rows[1].ok);
	CHECK_STR(r.rows[1].error, "gone");
	cniconf_reply_fini(&r);
	CHECK(r.root == NULL && r.rows == NULL);

	REQUIRE(cniconf_reply_decode("{\"ok\":true,\"workload\":{\"ipv6\":true}}",
				     strlen("{\"ok\":true,\"workload\":{\"ipv6\":true}}"), &r,
				     &eb) == 0);
	CHECK(r.ipv6 && r.n_rows == 0 && r.workloads == NULL);
	cniconf_reply_fini(&r);
	REQUIRE(cniconf_reply_decode("{\"ok\":false,\"error\":\"no ztunnel connection\"}",
				     strlen("{\"ok\":false,\"error\":\"no ztunnel connection\"}"),
				     &r, &eb) == 0);
	CHECK(!r.ok);
	CHECK_STR(r.error, "no ztunnel connection");
	cniconf_reply_fini(&r);
	REQUIRE(cniconf_reply_decode("{\"ok\":true,\"removed\":true}",
				     strlen("{\"ok\":true,\"removed\":true}"), &r, &eb) == 0);
	CHECK(r.removed);
	cniconf_reply_fini(&r);
}

TEST(cniconf_reply_errors)
{
	static const struct {
		const char *in, *err;
	} cases[] = {
		{"", "reply:1:1: invalid JSON: document is empty"},
		{"[]", "reply: .: expected an object, got array"},
		{"{\"ok\":1}", "reply: .ok: expected a boolean, got number"},
		{"{\"ok\":false,\"error\":{}}", "reply: .error: expected a string, got object"},
		{"{\"ok\":true,\"workload\":[]}",
		 "reply: .workload: expected an object, got array"},
		{"{\"ok\":true,\"workloads\":{}}",
		 "reply: .workloads: expected an array, got object"},
		{"{\"ok\":true,\"workloads\":[{},{\"uid\":1}]}",
		 "reply: .workloads[1].uid: expected a string, got number"},
		{"{\"ok\":true,\"workloads\":[{\"enrolled\":\"now\"}]}",
		 "reply: .workloads[0].enrolled: expected a time like \"2026-11-26T14:00:00Z\""},
		{"{\"ok\":true,\"workloads\":[3]}",
		 "reply: .workloads[0]: expected an object, got number"},
	};
	struct cniconf_reply r;
	struct errbuf eb;

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		CHECK(cniconf_reply_decode(cases[i].in, strlen(cases[i].in), &r, &eb) < 0);
		CHECK_STR(eb.msg, cases[i].err);
		CHECK(r.root == NULL && r.rows == NULL);
	}
}

/* ---- CLI ports ------------------------------------------------------------------------------- */

TEST(cniconf_ports)
{
	uint16_t p[4];
	struct errbuf eb;
	size_t n;

	CHECK_INT(cniconf_ports_parse("22,2222,65535", p, 4, &n, &eb), 0);
	CHECK_INT(n, 3);
	CHECK(p[0] == 22 && p[1] == 2222 && p[2] == 65535);
	CHECK_INT(cniconf_ports_parse("", p, 4, &n, &eb), 0);
	CHECK_INT(n, 0);
	CHECK_INT(cniconf_ports_parse("22,", p, 4, &n, &eb), 0);
	CHECK_INT(n, 1);
	CHECK_INT(cniconf_ports_parse("22,x", p, 4, &n, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "'22,x': item 2 'x': expected ports 1..65535 like 22,2222");
	CHECK_INT(cniconf_ports_parse("0", p, 4, &n, &eb), -E_INVAL);
	CHECK_INT(cniconf_ports_parse("65536", p, 4, &n, &eb), -E_INVAL);
	CHECK_INT(cniconf_ports_parse("022222", p, 4, &n, &eb), -E_INVAL);
	CHECK_INT(cniconf_ports_parse(",22", p, 4, &n, &eb), -E_INVAL);
	CHECK_INT(cniconf_ports_parse("+22", p, 4, &n, &eb), -E_INVAL);
	CHECK_INT(cniconf_ports_parse(" 22", p, 4, &n, &eb), -E_INVAL);
	CHECK_INT(cniconf_ports_parse("1,2,3,4,5", p, 4, &n, &eb), -E_LIMIT);
	CHECK_STR(eb.msg, "'1,2,3,4,5': at most 4 ports");
}
