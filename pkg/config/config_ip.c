/* IP addresses, CIDRs and "network/IP" pairs: strict parsing and canonical formatting, done here
 * rather than with inet_pton/inet_ntop so that musl and glibc builds accept and print the same. */
#include "pkg/config/config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Dotted quad s[0..len): four decimal parts 0..255, no leading zeros, nothing else. */
static int parse_v4(const char *s, size_t len, uint8_t out[4])
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0;
		size_t start = i;
		while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 3)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == start || v > 255 || (i - start > 1 && s[start] == '0'))
			return -E_INVAL;
		out[part] = (uint8_t)v;
		if (part < 3) {
			if (i >= len || s[i] != '.')
				return -E_INVAL;
			i++;
		}
	}
	return i == len ? 0 : -E_INVAL;
}

/* RFC 4291 §2.2 text forms, including "::" and a trailing dotted quad; no zone, no brackets. */
static int parse_v6(const char *s, uint8_t out[16])
{
	uint16_t words[8];
	int n = 0, gap = -1;
	const char *p = s;

	if (p[0] == ':') {
		if (p[1] != ':')
			return -E_INVAL;
		gap = 0;
		p += 2;
	}
	while (*p) {
		const char *e = p;
		unsigned v = 0;

		while (*e && *e != ':')
			e++;
		if (n == 8)
			return -E_INVAL;
		if (memchr(p, '.', (size_t)(e - p))) {
			uint8_t q[4];
			if (*e || n > 6 || parse_v4(p, (size_t)(e - p), q) < 0)
				return -E_INVAL;
			words[n++] = (uint16_t)(q[0] << 8 | q[1]);
			words[n++] = (uint16_t)(q[2] << 8 | q[3]);
			p = e;
			break;
		}
		if (e - p < 1 || e - p > 4)
			return -E_INVAL;
		for (const char *c = p; c < e; c++) {
			int h = hex_digit_value(*c);
			if (h < 0)
				return -E_INVAL;
			v = v * 16 + (unsigned)h;
		}
		words[n++] = (uint16_t)v;
		p = e;
		if (*p == ':') {
			p++;
			if (*p == ':') {
				if (gap >= 0)
					return -E_INVAL;
				gap = n;
				p++;
			} else if (!*p) {
				return -E_INVAL;
			}
		}
	}
	if ((gap < 0 && n != 8) || (gap >= 0 && n > 7))
		return -E_INVAL;
	memset(out, 0, 16);
	for (int i = 0; i < n; i++) {
		int pos = (gap >= 0 && i >= gap) ? i + (8 - n) : i;
		out[2 * pos] = (uint8_t)(words[i] >> 8);
		out[2 * pos + 1] = (uint8_t)words[i];
	}
	return 0;
}

static bool is_v4_mapped(const uint8_t a[16])
{
	static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return memcmp(a, prefix, sizeof(prefix)) == 0;
}

static int ip_parse_raw(const char *s, struct config_ip *out)
{
	memset(out, 0, sizeof(*out));
	if (!s || !*s)
		return -E_INVAL;
	if (strchr(s, ':')) {
		out->family = AF_INET6;
		return parse_v6(s, out->addr);
	}
	out->family = AF_INET;
	return parse_v4(s, strlen(s), out->addr);
}

static void unmap_v4(struct config_ip *ip)
{
	uint8_t v4[4];

	memcpy(v4, ip->addr + 12, 4);
	memset(ip->addr, 0, sizeof(ip->addr));
	memcpy(ip->addr, v4, 4);
	ip->family = AF_INET;
}

int config_ip_parse(const char *s, struct config_ip *out)
{
	int rc = ip_parse_raw(s, out);

	if (rc < 0) {
		memset(out, 0, sizeof(*out));
		return rc;
	}
	if (out->family == AF_INET6 && is_v4_mapped(out->addr))
		unmap_v4(out);
	return 0;
}

size_t config_ip_format(const struct config_ip *ip, char *out, size_t cap)
{
	char tmp[CONFIG_IP_STRLEN];
	size_t n = 0;

	if (ip->family == AF_INET) {
		n = (size_t)snprintf(tmp, sizeof(tmp), "%u.%u.%u.%u", ip->addr[0], ip->addr[1],
				     ip->addr[2], ip->addr[3]);
	} else if (ip->family == AF_INET6) {
		/* RFC 5952 §4: lowercase, no leading zeros, the longest run (>= 2) of zero
		 * groups as "::", the first one on a tie. */
		uint16_t w[8];
		int best = -1, best_len = 0;
		for (int i = 0; i < 8; i++)
			w[i] = (uint16_t)(ip->addr[2 * i] << 8 | ip->addr[2 * i + 1]);
		for (int i = 0; i < 8;) {
			int j = i;
			while (j < 8 && w[j] == 0)
				j++;
			if (j - i > best_len && j - i >= 2) {
				best = i;
				best_len = j - i;
			}
			i = j > i ? j : i + 1;
		}
		for (int i = 0; i < 8; i++) {
			if (i == best) {
				n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "::");
				i += best_len - 1;
				continue;
			}
			n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "%s%x",
					      (i && i != best + best_len) ? ":" : "", w[i]);
		}
	} else {
		n = (size_t)snprintf(tmp, sizeof(tmp), "invalid");
	}
	if (cap)
		snprintf(out, cap, "%s", tmp);
	return n;
}

bool config_ip_equal(const struct config_ip *a, const struct config_ip *b)
{
	size_t n = a->family == AF_INET ? 4 : 16;

	return a->family == b->family && memcmp(a->addr, b->addr, n) == 0;
}

static void clear_host_bits(struct config_cidr *c)
{
	size_t bits = c->ip.family == AF_INET ? 32 : 128;

	for (size_t i = c->prefix; i < bits; i++)
		c->ip.addr[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
}

int config_cidr_parse(const char *s, struct config_cidr *out)
{
	const char *slash = s ? strchr(s, '/') : NULL;
	char ipbuf[64];
	uint64_t prefix;
	unsigned max;

	memset(out, 0, sizeof(*out));
	if (!s)
		return -E_INVAL;
	if (!slash) {
		if (config_ip_parse(s, &out->ip) < 0)
			return -E_INVAL;
		out->prefix = out->ip.family == AF_INET ? 32 : 128;
		return 0;
	}
	if ((size_t)(slash - s) >= sizeof(ipbuf))
		return -E_INVAL;
	memcpy(ipbuf, s, (size_t)(slash - s));
	ipbuf[slash - s] = '\0';
	if (ip_parse_raw(ipbuf, &out->ip) < 0)
		goto bad;
	max = out->ip.family == AF_INET ? 32 : 128;
	if (json_parse_uint_str(slash + 1, 0, max, &prefix) < 0)
		goto bad;
	out->prefix = (uint8_t)prefix;
	/* ::ffff:a.b.c.d/N with N >= 96 is the IPv4 range a.b.c.d/(N-96). */
	if (out->ip.family == AF_INET6 && out->prefix >= 96 && is_v4_mapped(out->ip.addr)) {
		unmap_v4(&out->ip);
		out->prefix -= 96;
	}
	clear_host_bits(out);
	return 0;
bad:
	memset(out, 0, sizeof(*out));
	return -E_INVAL;
}

bool config_cidr_contains(const struct config_cidr *c, const struct config_ip *ip)
{
	if (c->ip.family != ip->family)
		return false;
	for (unsigned i = 0; i < c->prefix; i++) {
		uint8_t m = (uint8_t)(0x80u >> (i % 8));
		if ((c->ip.addr[i / 8] & m) != (ip->addr[i / 8] & m))
			return false;
	}
	return true;
}

int cfg_netaddr_parse(struct cfg_arena *a, const char *s, struct config_netaddr *out)
{
	const char *slash = strchr(s, '/');
	struct config_ip ip;

	if (config_ip_parse(slash ? slash + 1 : s, &ip) < 0)
		return -E_INVAL;
	out->ip = ip;
	out->network = slash ? cfg_strndup(a, s, (size_t)(slash - s)) : "";
	return 0;
}

void cfg_netaddr_format(const struct config_netaddr *na, char *out, size_t cap)
{
	char ip[CONFIG_IP_STRLEN];

	config_ip_format(&na->ip, ip, sizeof(ip));
	snprintf(out, cap, "%s/%s", na->network ? na->network : "", ip);
}

size_t cfg_ip_key(char *out, size_t cap, const char *network, const struct config_ip *ip)
{
	size_t nl = network ? strlen(network) : 0;
	size_t al = ip->family == AF_INET ? 4 : 16;
	size_t need = nl + 2 + al;

	if (need > cap)
		return need;
	if (nl)
		memcpy(out, network, nl);
	out[nl] = '\0';
	out[nl + 1] = (char)(ip->family == AF_INET ? 4 : 6);
	memcpy(out + nl + 2, ip->addr, al);
	return need;
}
