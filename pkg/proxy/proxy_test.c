/* Unit tests for pkg/proxy's sans-I/O decisions: outbound routes, endpoint choice, loops. */
#include "pkg/proxy/proxy.h"
#include "test/unit.h"

#include <stdlib.h>
#include <string.h>

static const char mesh_doc[] =
	"{\"workloads\":["
	"{\"uid\":\"a\",\"name\":\"a\",\"namespace\":\"ns\",\"workloadIps\":[\"10.0.0.1\"],"
	"\"protocol\":\"HBONE\",\"capacity\":1,\"services\":{\"ns/svc.ns.svc\":{\"80\":8080}}},"
	"{\"uid\":\"b\",\"name\":\"b\",\"namespace\":\"ns\",\"workloadIps\":[\"10.0.0.2\"],"
	"\"capacity\":3,\"services\":{\"ns/svc.ns.svc\":{\"80\":9090}}},"
	"{\"uid\":\"c\",\"name\":\"c\",\"namespace\":\"ns\",\"workloadIps\":[\"10.0.0.3\"],"
	"\"status\":\"Unhealthy\",\"services\":{\"ns/svc.ns.svc\":{\"80\":8080}}}],"
	"\"services\":[{\"name\":\"svc\",\"namespace\":\"ns\",\"hostname\":\"svc.ns.svc\","
	"\"vips\":[\"/10.96.0.1\"],\"ports\":{\"80\":0}}]}";

/* Waypoints: service wsvc (VIP 10.96.0.2) uses the waypoint service ns/wp.ns.svc (endpoints wp1
 * healthy, wp2 unhealthy); workload w uses the address-form waypoint "/10.0.1.1" (wp1); workload
 * x uses a waypoint address that is no workload; service gone uses a waypoint without healthy
 * endpoint. */
static const char wp_doc[] =
	"{\"workloads\":["
	"{\"uid\":\"wp1\",\"name\":\"wp1\",\"namespace\":\"ns\",\"serviceAccount\":\"wp\","
	"\"workloadIps\":[\"10.0.1.1\"],\"protocol\":\"HBONE\",\"waypointFor\":\"all\","
	"\"services\":{\"ns/wp.ns.svc\":{\"15008\":15008}}},"
	"{\"uid\":\"wp2\",\"name\":\"wp2\",\"namespace\":\"ns\",\"serviceAccount\":\"wp\","
	"\"workloadIps\":[\"10.0.1.2\"],\"protocol\":\"HBONE\",\"status\":\"Unhealthy\","
	"\"waypointFor\":\"all\","
	"\"services\":{\"ns/wp.ns.svc\":{\"15008\":15008},\"ns/bad.ns.svc\":{\"15008\":15008}}},"
	"{\"uid\":\"s\",\"name\":\"s\",\"namespace\":\"ns\",\"workloadIps\":[\"10.0.0.5\"],"
	"\"protocol\":\"HBONE\",\"services\":{\"ns/wsvc.ns.svc\":{\"80\":8080},"
	"\"ns/gone.ns.svc\":{\"80\":8080}}},"
	"{\"uid\":\"w\",\"name\":\"w\",\"namespace\":\"ns\",\"workloadIps\":[\"10.0.0.6\"],"
	"\"protocol\":\"HBONE\",\"waypoint\":{\"destination\":\"/10.0.1.1\"}},"
	"{\"uid\":\"x\",\"name\":\"x\",\"namespace\":\"ns\",\"workloadIps\":[\"10.0.0.7\"],"
	"\"protocol\":\"HBONE\",\"waypoint\":{\"destination\":\"/10.0.9.9\"}}],"
	"\"services\":["
	"{\"name\":\"wp\",\"namespace\":\"ns\",\"hostname\":\"wp.ns.svc\","
	"\"vips\":[\"/10.96.0.3\"],\"ports\":{\"15008\":15008}},"
	"{\"name\":\"bad\",\"namespace\":\"ns\",\"hostname\":\"bad.ns.svc\","
	"\"vips\":[\"/10.96.0.5\"],\"ports\":{\"15008\":15008}},"
	"{\"name\":\"wsvc\",\"namespace\":\"ns\",\"hostname\":\"wsvc.ns.svc\","
	"\"vips\":[\"/10.96.0.2\"],\"ports\":{\"80\":8080},"
	"\"waypoint\":{\"destination\":\"ns/wp.ns.svc\",\"hboneMtlsPort\":15009}},"
	"{\"name\":\"gone\",\"namespace\":\"ns\",\"hostname\":\"gone.ns.svc\","
	"\"vips\":[\"/10.96.0.4\"],\"ports\":{\"80\":8080},"
	"\"waypoint\":{\"destination\":\"ns/bad.ns.svc\"}}]}";

static struct config *parse(const char *doc)
{
	struct errlist errs = {0};
	struct config *c = config_parse("mesh.json", doc, strlen(doc), 1, &errs);

	if (!c) {
		char *j = errlist_join(&errs);
		unit_fail(__FILE__, __LINE__, "config_parse: %s", j);
		free(j);
	}
	errlist_fini(&errs);
	return c;
}

static struct config *mesh(void)
{
	return parse(mesh_doc);
}

static struct net_addr addr(const char *s)
{
	struct net_addr a;
	struct errbuf eb = {0};

	net_addr_parse(&a, s, &eb);
	return a;
}

TEST(proxy_route_workload_hbone)
{
	struct config *c = mesh();
	struct net_addr o = addr("10.0.0.1:8080");
	struct proxy_route r;
	char s[NET_ADDR_STRLEN];

	REQUIRE(c);
	proxy_decide_outbound(c, NULL, &o, 0, 15008, &r);
	CHECK_INT(r.kind, PROXY_ROUTE_HBONE);
	CHECK_STR(r.authority, "10.0.0.1:8080");
	CHECK_STR(net_addr_format(&r.target, s, sizeof(s)), "10.0.0.1:15008");
	CHECK_STR(r.dst->uid, "a");
	config_unref(c);
}

TEST(proxy_route_tcp_and_passthrough)
{
	struct config *c = mesh();
	struct net_addr o = addr("10.0.0.2:9090"), u = addr("192.0.2.1:443");
	struct proxy_route r;
	char s[NET_ADDR_STRLEN];

	REQUIRE(c);
	proxy_decide_outbound(c, NULL, &o, 0, 15008, &r);
	CHECK_INT(r.kind, PROXY_ROUTE_TCP);
	CHECK_STR(net_addr_format(&r.target, s, sizeof(s)), "10.0.0.2:9090");
	proxy_decide_outbound(c, NULL, &u, 0, 15008, &r);
	CHECK_INT(r.kind, PROXY_ROUTE_PASSTHROUGH);
	CHECK_STR(net_addr_format(&r.target, s, sizeof(s)), "192.0.2.1:443");
	CHECK(r.dst == NULL);
	config_unref(c);
}

/* Service VIP: weighted by capacity (a: 1, b: 3), the unhealthy c never chosen, the endpoint's
 * own port mapping used since the service's targetPort is 0. */
TEST(proxy_route_service_vip)
{
	struct config *c = mesh();
	struct net_addr o = addr("10.96.0.1:80"), bad = addr("10.96.0.1:81");
	struct proxy_route r;
	int hits[2] = {0, 0};

	REQUIRE(c);
	for (uint64_t rnd = 0; rnd < 8; rnd++) {
		proxy_decide_outbound(c, NULL, &o, rnd, 15008, &r);
		REQUIRE(r.dst);
		CHECK(strcmp(r.dst->uid, "c") != 0);
		if (strcmp(r.dst->uid, "a") == 0) {
			hits[0]++;
			CHECK_INT(r.kind, PROXY_ROUTE_HBONE);
			CHECK_STR(r.authority, "10.0.0.1:8080");
		} else {
			hits[1]++;
			CHECK_INT(r.kind, PROXY_ROUTE_TCP);
			CHECK_INT(net_addr_port(&r.target), 9090);
		}
		CHECK(r.svc != NULL);
	}
	CHECK_INT(hits[0], 2);
	CHECK_INT(hits[1], 6);
	proxy_decide_outbound(c, NULL, &bad, 0, 15008, &r);
	CHECK_INT(r.kind, PROXY_ROUTE_FAIL);
	CHECK_CONTAINS(r.reason, "no healthy endpoint");
	config_unref(c);
}

/* A service VIP with a waypoint: HBONE to the healthy waypoint endpoint at the waypoint's
 * hboneMtlsPort, :authority = the VIP:port, no endpoint of the service picked. */
TEST(proxy_route_service_waypoint)
{
	struct config *c = parse(wp_doc);
	struct net_addr o = addr("10.96.0.2:80"), g = addr("10.96.0.4:80");
	struct proxy_route r;
	char s[NET_ADDR_STRLEN];

	REQUIRE(c);
	for (uint64_t rnd = 0; rnd < 4; rnd++) {
		proxy_decide_outbound(c, NULL, &o, rnd, 15008, &r);
		CHECK_INT(r.kind, PROXY_ROUTE_HBONE);
		CHECK_STR(r.authority, "10.96.0.2:80");
		CHECK_STR(net_addr_format(&r.target, s, sizeof(s)), "10.0.1.1:15009");
		REQUIRE(r.waypoint);
		CHECK_STR(r.waypoint->uid, "wp1");
		CHECK_STR(r.waypoint->identity, "spiffe://cluster.local/ns/ns/sa/wp");
		CHECK(r.svc != NULL);
		CHECK(r.dst == NULL);
	}
	/* The waypoint itself reaches the service's endpoints directly. */
	proxy_decide_outbound(c, config_workload_by_uid(c, "wp1"), &o, 0, 15008, &r);
	CHECK_INT(r.kind, PROXY_ROUTE_HBONE);
	CHECK_STR(r.authority, "10.0.0.5:8080");
	CHECK(r.waypoint == NULL);
	REQUIRE(r.dst);
	CHECK_STR(r.dst->uid, "s");
	/* A waypoint without a healthy endpoint: refused, not bypassed. */
	proxy_decide_outbound(c, NULL, &g, 0, 15008, &r);
	CHECK_INT(r.kind, PROXY_ROUTE_FAIL);
	CHECK_CONTAINS(r.reason, "waypoint has no healthy endpoint");
	config_unref(c);
}

/* A workload with an (address-form) waypoint: HBONE to it with :authority = the workload's
 * ip:port, unless the source is that waypoint; an unknown waypoint fails. Direct pod traffic to
 * the service's endpoint s (no workload waypoint) is not redirected. */
TEST(proxy_route_workload_waypoint)
{
	struct config *c = parse(wp_doc);
	struct net_addr o = addr("10.0.0.6:8080"), x = addr("10.0.0.7:80"),
			s5 = addr("10.0.0.5:8080");
	struct proxy_route r;
	char s[NET_ADDR_STRLEN];

	REQUIRE(c);
	proxy_decide_outbound(c, config_workload_by_uid(c, "s"), &o, 0, 15008, &r);
	CHECK_INT(r.kind, PROXY_ROUTE_HBONE);
	CHECK_STR(r.authority, "10.0.0.6:8080");
	CHECK_STR(net_addr_format(&r.target, s, sizeof(s)), "10.0.1.1:15008");
	REQUIRE(r.waypoint);
	CHECK_STR(r.waypoint->uid, "wp1");
	REQUIRE(r.dst);
	CHECK_STR(r.dst->uid, "w");
	proxy_decide_outbound(c, config_workload_by_uid(c, "wp1"), &o, 0, 15008, &r);
	CHECK_INT(r.kind, PROXY_ROUTE_HBONE);
	CHECK_STR(net_addr_format(&r.target, s, sizeof(s)), "10.0.0.6:15008");
	CHECK(r.waypoint == NULL);
	proxy_decide_outbound(c, NULL, &x, 0, 15008, &r);
	CHECK_INT(r.kind, PROXY_ROUTE_FAIL);
	CHECK_CONTAINS(r.reason, "unknown waypoint");
	proxy_decide_outbound(c, NULL, &s5, 0, 15008, &r);
	CHECK_INT(r.kind, PROXY_ROUTE_HBONE);
	CHECK(r.waypoint == NULL);
	config_unref(c);
}

TEST(proxy_loop_refusal)
{
	struct net_ip local[1];
	struct errbuf eb = {0};
	const uint16_t ports[3] = {15006, 15001, 15008};
	struct net_addr a = addr("10.0.0.9:15001"), b = addr("10.0.0.9:8080"),
			c = addr("127.0.0.1:15008"), d = addr("10.0.0.7:15008");

	net_ip_parse(&local[0], "10.0.0.9", &eb);
	CHECK(proxy_is_loop(&a, local, 1, ports, 3));
	CHECK(!proxy_is_loop(&b, local, 1, ports, 3));
	CHECK(proxy_is_loop(&c, local, 1, ports, 3));
	CHECK(!proxy_is_loop(&d, local, 1, ports, 3)); /* another node's 15008 is fine */
}

TEST(proxy_authority_and_trust_domain)
{
	struct net_addr a = addr("[fd00::1]:80");
	char out[HBONE_AUTHORITY_MAX + 1];
	struct slice td = proxy_trust_domain("spiffe://cluster.local/ns/a/sa/b");

	CHECK_STR(proxy_authority(&a, out, sizeof(out)), "[fd00::1]:80");
	REQUIRE(td.p);
	CHECK_INT(td.n, strlen("cluster.local"));
	CHECK(memcmp(td.p, "cluster.local", td.n) == 0);
	CHECK(proxy_trust_domain("cluster.local/ns/a").p == NULL);
	CHECK(proxy_trust_domain(NULL).p == NULL);
}
