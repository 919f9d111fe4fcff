/* Parsing, formatting and matching of IP addresses, socket addresses and CIDR blocks. */
#include "pkg/net/net.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest accepted input; anything longer is not an address and would clutter messages. */
#define NET_INPUT_MAX 128

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* ---- formatting (RFC 5952) ------------------------------------------------------------------- */

static size_t fmt4(const uint8_t *b, char *out)
{
	char *p = out;

	for (int i = 0; i < 4; i++) { /* by hand: sprintf is a hot cost on the request path */
		if (i)
			*p++ = '.';
		p += str_u64(p, b[i]);
	}
	*p = '\0';
	return (size_t)(p - out);
}

/* out must hold 46 bytes. RFC 5952 §4: lower case, no leading zeros, "::" replaces the longest
 * run (first if tied) of two or more zero fields; §5: v4-mapped addresses in mixed notation. */
static size_t fmt6(const uint8_t *b, char *out)
{
	uint16_t w[8];
	int best = -1, bestlen = 0;
	char *p = out;

	if (memcmp(b, v4mapped_prefix, 12) == 0) {
		p += sprintf(p, "::ffff:");
		return (size_t)(p - out) + fmt4(b + 12, p);
	}
	for (int i = 0; i < 8; i++)
		w[i] = (uint16_t)(b[2 * i] << 8 | b[2 * i + 1]);
	for (int i = 0; i < 8;) {
		int j = i;
		while (j < 8 && w[j] == 0)
			j++;
		if (j - i > bestlen && j - i >= 2) {
			best = i;
			bestlen = j - i;
		}
		i = j > i ? j : i + 1;
	}
	for (int i = 0; i < 8; i++) {
		if (i == best) {
			p += sprintf(p, "::");
			i += bestlen - 1;
			continue;
		}
		if (i > 0 && i != best + bestlen)
			*p++ = ':';
		p += sprintf(p, "%x", w[i]);
	}
	*p = '\0';
	return (size_t)(p - out);
}

/* Copies src (NUL-terminated) into out/cap, truncating safely; returns out. */
static char *copy_out(char *out, size_t cap, const char *src)
{
	if (cap == 0)
		return out;
	snprintf(out, cap, "%s", src);
	return out;
}

char *net_ip_format(const struct net_ip *ip, char *out, size_t cap)
{
	char tmp[NET_IP_STRLEN];

	if (ip->family == AF_INET)
		fmt4(ip->b, tmp);
	else if (ip->family == AF_INET6)
		fmt6(ip->b, tmp);
	else
		strcpy(tmp, "-");
	return copy_out(out, cap, tmp);
}

char *net_addr_format(const struct net_addr *a, char *out, size_t cap)
{
	char tmp[NET_ADDR_STRLEN];
	char *p = tmp;

	if (a->len == 0 || (a->sa.sa_family != AF_INET && a->sa.sa_family != AF_INET6))
		return copy_out(out, cap, "-");
	if (a->sa.sa_family == AF_INET) {
		p += fmt4((const uint8_t *)&a->sin.sin_addr, p);
	} else {
		*p++ = '[';
		p += fmt6(a->sin6.sin6_addr.s6_addr, p);
		if (a->sin6.sin6_scope_id)
			p += sprintf(p, "%%%u", (unsigned)a->sin6.sin6_scope_id);
		*p++ = ']';
	}
	*p++ = ':';
	p[str_u64(p, net_addr_port(a))] = '\0';
	return copy_out(out, cap, tmp);
}

char *net_cidr_format(const struct net_cidr *c, char *out, size_t cap)
{
	char ip[NET_IP_STRLEN];
	char tmp[NET_CIDR_STRLEN];

	net_ip_format(&c->ip, ip, sizeof(ip));
	snprintf(tmp, sizeof(tmp), "%s/%u", ip, c->prefix);
	return copy_out(out, cap, tmp);
}

/* ---- conversions ----------------------------------------------------------------------------- */

uint16_t net_addr_port(const struct net_addr *a)
{
	if (a->sa.sa_family == AF_INET)
		return ntohs(a->sin.sin_port);
	if (a->sa.sa_family == AF_INET6)
		return ntohs(a->sin6.sin6_port);
	return 0;
}

void net_addr_set_port(struct net_addr *a, uint16_t port)
{
	if (a->sa.sa_family == AF_INET)
		a->sin.sin_port = htons(port);
	else if (a->sa.sa_family == AF_INET6)
		a->sin6.sin6_port = htons(port);
}

void net_addr_from_ip(struct net_addr *a, const struct net_ip *ip, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	if (ip->family == AF_INET) {
		a->sin.sin_family = AF_INET;
		memcpy(&a->sin.sin_addr, ip->b, 4);
		a->sin.sin_port = htons(port);
		a->len = sizeof(a->sin);
	} else if (ip->family == AF_INET6) {
		a->sin6.sin6_family = AF_INET6;
		memcpy(&a->sin6.sin6_addr, ip->b, 16);
		a->sin6.sin6_port = htons(port);
		a->len = sizeof(a->sin6);
	}
}

void net_addr_ip(const struct net_addr *a, struct net_ip *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (a->sa.sa_family == AF_INET) {
		ip->family = AF_INET;
		memcpy(ip->b, &a->sin.sin_addr, 4);
	} else if (a->sa.sa_family == AF_INET6) {
		ip->family = AF_INET6;
		memcpy(ip->b, &a->sin6.sin6_addr, 16);
	}
}

void net_addr_unmap(struct net_addr *a)
{
	struct in_addr v4;
	uint16_t port;

	if (a->sa.sa_family != AF_INET6 || memcmp(&a->sin6.sin6_addr, v4mapped_prefix, 12) != 0)
		return;
	memcpy(&v4, a->sin6.sin6_addr.s6_addr + 12, 4);
	port = a->sin6.sin6_port;
	memset(a, 0, sizeof(*a));
	a->sin.sin_family = AF_INET;
	a->sin.sin_addr = v4;
	a->sin.sin_port = port;
	a->len = sizeof(a->sin);
}

int net_addr_from_sockaddr(struct net_addr *a, const struct sockaddr *sa, socklen_t len)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET && len >= sizeof(a->sin)) {
		memcpy(&a->sin, sa, sizeof(a->sin));
		a->len = sizeof(a->sin);
	} else if (sa->sa_family == AF_INET6 && len >= sizeof(a->sin6)) {
		memcpy(&a->sin6, sa, sizeof(a->sin6));
		a->len = sizeof(a->sin6);
		net_addr_unmap(a);
	} else {
		return -E_UNSUPP;
	}
	return 0;
}

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
	if (a->len != b->len || a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->sin.sin_port == b->sin.sin_port &&
		       a->sin.sin_addr.s_addr == b->sin.sin_addr.s_addr;
	if (a->sa.sa_family == AF_INET6)
		return a->sin6.sin6_port == b->sin6.sin6_port &&
		       a->sin6.sin6_scope_id == b->sin6.sin6_scope_id &&
		       memcmp(&a->sin6.sin6_addr, &b->sin6.sin6_addr, 16) == 0;
	return a->len == 0;
}

bool net_ip_equal(const struct net_ip *a, const struct net_ip *b)
{
	if (a->family != b->family)
		return false;
	return memcmp(a->b, b->b, a->family == AF_INET ? 4 : 16) == 0;
}

/* ---- parsing --------------------------------------------------------------------------------- */

/* inet_pton into ip; a trailing zone or anything else makes it fail. */
static bool ip_from_text(struct net_ip *ip, const char *s)
{
	memset(ip, 0, sizeof(*ip));
	if (inet_pton(AF_INET, s, ip->b) == 1) {
		ip->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, ip->b) == 1) {
		ip->family = AF_INET6;
		return true;
	}
	return false;
}

int net_ip_parse(struct net_ip *ip, const char *s, struct errbuf *eb)
{
	if (!s || !*s)
		return errbuf_set(eb, E_PARSE, "IP address \"\": empty");
	if (strlen(s) >= NET_INPUT_MAX)
		return errbuf_set(eb, E_PARSE, "IP address \"%.40s...\": too long", s);
	if (ip_from_text(ip, s))
		return 0;
	if (s[0] == '[')
		return errbuf_set(eb, E_PARSE, "IP address \"%s\": no brackets here (write ::1)",
				  s);
	if (strchr(s, '%'))
		return errbuf_set(eb, E_PARSE, "IP address \"%s\": a zone (%%...) is not allowed",
				  s);
	return errbuf_set(eb, E_PARSE, "IP address \"%s\": not an IPv4 or IPv6 address", s);
}

/* Port text: 1..5 digits, value 0..65535. */
static bool port_from_text(const char *s, uint16_t *port)
{
	unsigned v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* "[v6%zone]" host part: fills a (port not set). */
static int parse_bracketed(struct net_addr *a, const char *in, const char *host, struct errbuf *eb)
{
	char h[NET_INPUT_MAX];
	char *zone;
	struct net_ip ip;
	unsigned scope = 0;

	snprintf(h, sizeof(h), "%s", host);
	zone = strchr(h, '%');
	if (zone) {
		*zone++ = '\0';
		if (!*zone)
			return errbuf_set(eb, E_PARSE, "address \"%s\": empty zone after '%%'", in);
		if (strspn(zone, "0123456789") == strlen(zone))
			scope = (unsigned)strtoul(zone, NULL, 10);
		else
			scope = if_nametoindex(zone);
		if (!scope)
			return errbuf_set(eb, E_PARSE, "address \"%s\": unknown interface \"%s\"",
					  in, zone);
	}
	if (!ip_from_text(&ip, h))
		return errbuf_set(eb, E_PARSE, "address \"%s\": \"%s\" is not an IPv6 address", in,
				  h);
	if (ip.family != AF_INET6)
		return errbuf_set(eb, E_PARSE,
				  "address \"%s\": brackets are only for IPv6 (write %s:port)", in,
				  h);
	net_addr_from_ip(a, &ip, 0);
	a->sin6.sin6_scope_id = scope;
	return 0;
}

/* Unbracketed host: "", "localhost" or an IPv4 address. */
static int parse_host(struct net_addr *a, const char *in, const char *host, struct errbuf *eb)
{
	struct net_ip ip;

	memset(&ip, 0, sizeof(ip));
	if (!*host) {
		ip.family = AF_INET6; /* [::], dual-stack: every interface, IPv4 and IPv6 */
	} else if (strcasecmp(host, "localhost") == 0) {
		ip.family = AF_INET;
		ip.b[0] = 127;
		ip.b[3] = 1;
	} else if (!ip_from_text(&ip, host) || ip.family != AF_INET) {
		if (ip.family == AF_INET6)
			return errbuf_set(eb, E_PARSE,
					  "address \"%s\": IPv6 addresses need brackets, as in "
					  "[%s]:port",
					  in, host);
		return errbuf_set(eb, E_PARSE,
				  "address \"%s\": \"%s\" is not an IP address (only localhost is "
				  "resolved)",
				  in, host);
	}
	net_addr_from_ip(a, &ip, 0);
	return 0;
}

int net_addr_parse(struct net_addr *a, const char *s, struct errbuf *eb)
{
	char host[NET_INPUT_MAX];
	const char *colon;
	uint16_t port;
	int rc;

	memset(a, 0, sizeof(*a));
	if (!s || !*s)
		return errbuf_set(eb, E_PARSE, "address \"\": empty (expected host:port)");
	if (strlen(s) >= NET_INPUT_MAX)
		return errbuf_set(eb, E_PARSE, "address \"%.40s...\": too long", s);
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close)
			return errbuf_set(eb, E_PARSE, "address \"%s\": missing ']'", s);
		if (close[1] != ':')
			return errbuf_set(eb, E_PARSE,
					  "address \"%s\": missing port (expected [ip]:port)", s);
		snprintf(host, sizeof(host), "%.*s", (int)(close - s - 1), s + 1);
		colon = close + 1;
		rc = parse_bracketed(a, s, host, eb);
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return errbuf_set(eb, E_PARSE,
					  "address \"%s\": missing port (expected host:port)", s);
		snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
		if (strchr(host, ':')) {
			struct net_ip ip;
			if (ip_from_text(&ip, s))
				return errbuf_set(eb, E_PARSE,
						  "address \"%s\": missing port (IPv6 addresses "
						  "need brackets, as in [%s]:port)",
						  s, s);
			return errbuf_set(eb, E_PARSE,
					  "address \"%s\": IPv6 addresses need brackets, as in "
					  "[%s]:port",
					  s, host);
		}
		rc = parse_host(a, s, host, eb);
	}
	if (rc < 0) {
		memset(a, 0, sizeof(*a));
		return rc;
	}
	if (!port_from_text(colon + 1, &port)) {
		memset(a, 0, sizeof(*a));
		if (!colon[1])
			return errbuf_set(eb, E_PARSE, "address \"%s\": missing port after ':'", s);
		return errbuf_set(eb, E_PARSE,
				  "address \"%s\": port \"%s\" is not a number in 0..65535", s,
				  colon + 1);
	}
	net_addr_set_port(a, port);
	return 0;
}

/* ---- CIDR ------------------------------------------------------------------------------------ */

/* Clears the bits past prefix; returns true if any was set. */
static bool mask_host_bits(uint8_t *b, unsigned nbytes, unsigned prefix)
{
	bool had = false;

	for (unsigned i = 0; i < nbytes; i++) {
		unsigned keep = prefix >= 8 * (i + 1) ? 8 : (prefix > 8 * i ? prefix - 8 * i : 0);
		uint8_t m = (uint8_t)(keep ? 0xff << (8 - keep) : 0);
		if (b[i] & ~m)
			had = true;
		b[i] &= m;
	}
	return had;
}

int net_cidr_parse(struct net_cidr *c, const char *s, struct errbuf *eb)
{
	char ipt[NET_INPUT_MAX];
	const char *slash;
	unsigned max, prefix = 0;

	memset(c, 0, sizeof(*c));
	if (!s || !*s)
		return errbuf_set(eb, E_PARSE, "CIDR \"\": empty");
	if (strlen(s) >= NET_INPUT_MAX)
		return errbuf_set(eb, E_PARSE, "CIDR \"%.40s...\": too long", s);
	slash = strchr(s, '/');
	snprintf(ipt, sizeof(ipt), "%.*s", slash ? (int)(slash - s) : (int)strlen(s), s);
	if (!ip_from_text(&c->ip, ipt)) {
		memset(c, 0, sizeof(*c));
		return errbuf_set(eb, E_PARSE, "CIDR \"%s\": \"%s\" is not an IP address", s, ipt);
	}
	max = c->ip.family == AF_INET ? 32 : 128;
	if (!slash) {
		c->prefix = (uint8_t)max;
	} else {
		const char *p = slash + 1;
		size_t n = strlen(p);
		if (n == 0 || n > 3 || strspn(p, "0123456789") != n) {
			memset(c, 0, sizeof(*c));
			return errbuf_set(
				eb, E_PARSE,
				"CIDR \"%s\": prefix length \"%s\" is not a number in 0..%u", s, p,
				max);
		}
		prefix = (unsigned)strtoul(p, NULL, 10);
		if (prefix > max) {
			memset(c, 0, sizeof(*c));
			return errbuf_set(eb, E_PARSE,
					  "CIDR \"%s\": prefix length %u out of range 0..%u", s,
					  prefix, max);
		}
		c->prefix = (uint8_t)prefix;
	}
	/* ::ffff:a.b.c.d/n (n >= 96) describes IPv4 space: store it as IPv4 so it matches the
	 * unmapped IPv4 addresses the matcher sees. */
	if (c->ip.family == AF_INET6 && c->prefix >= 96 &&
	    memcmp(c->ip.b, v4mapped_prefix, 12) == 0) {
		memmove(c->ip.b, c->ip.b + 12, 4);
		memset(c->ip.b + 4, 0, 12);
		c->ip.family = AF_INET;
		c->prefix = (uint8_t)(c->prefix - 96);
	}
	return mask_host_bits(c->ip.b, c->ip.family == AF_INET ? 4 : 16, c->prefix) ? 1 : 0;
}

bool net_cidr_match(const struct net_cidr *c, const struct net_ip *ip)
{
	struct net_ip u = *ip;
	unsigned full, rest;

	if (u.family == AF_INET6 && memcmp(u.b, v4mapped_prefix, 12) == 0) {
		memmove(u.b, u.b + 12, 4);
		u.family = AF_INET;
	}
	if (u.family != c->ip.family)
		return false;
	full = c->prefix / 8;
	rest = c->prefix % 8;
	if (memcmp(u.b, c->ip.b, full) != 0)
		return false;
	if (rest) {
		uint8_t m = (uint8_t)(0xff << (8 - rest));
		if ((u.b[full] & m) != c->ip.b[full])
			return false;
	}
	return true;
}

bool net_cidr_match_addr(const struct net_cidr *c, const struct net_addr *a)
{
	struct net_ip ip;

	net_addr_ip(a, &ip);
	return net_cidr_match(c, &ip);
}
