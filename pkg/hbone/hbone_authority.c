/* Strict parsing and formatting of the HBONE `:authority` (an IP literal and a port, nothing else)
 * and small text helpers. */
#include "pkg/hbone/hbone_int.h"

#include <arpa/inet.h>
#include <string.h>

/* Dotted quad, four decimal parts 0..255 without leading zeros ("010" is octal to some parsers,
 * so it is refused rather than guessed). */
static int parse_v4(const char *s, size_t n, uint8_t out[4], struct errbuf *eb)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		size_t start = i;
		unsigned v = 0;

		if (part > 0) {
			if (i >= n || s[i] != '.')
				return errbuf_set(eb, E_PARSE,
						  "bad IPv4 address: expected 4 parts");
			start = ++i;
		}
		while (i < n && s[i] >= '0' && s[i] <= '9' && i - start < 4)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == start)
			return errbuf_set(eb, E_PARSE,
					  "bad IPv4 address: empty or non-digit part %d", part + 1);
		if (i - start > 3 || v > 255)
			return errbuf_set(eb, E_PARSE,
					  "bad IPv4 address: part %d out of range 0..255",
					  part + 1);
		if (i - start > 1 && s[start] == '0')
			return errbuf_set(eb, E_PARSE, "bad IPv4 address: leading zero in part %d",
					  part + 1);
		out[part] = (uint8_t)v;
	}
	if (i != n)
		return errbuf_set(eb, E_PARSE, "bad IPv4 address: unexpected '%c'", s[i]);
	return 0;
}

static int parse_v6(const char *s, size_t n, uint8_t out[16], struct errbuf *eb)
{
	char tmp[INET6_ADDRSTRLEN];

	if (n == 0)
		return errbuf_set(eb, E_PARSE, "empty IPv6 address in brackets");
	if (n >= sizeof(tmp))
		return errbuf_set(eb, E_PARSE, "IPv6 address too long");
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%')
			return errbuf_set(eb, E_PARSE, "IPv6 zone identifiers are not accepted");
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
		      c == ':' || c == '.'))
			return errbuf_set(eb, E_PARSE,
					  "bad IPv6 address: unexpected character 0x%02x",
					  (unsigned char)c);
	}
	memcpy(tmp, s, n);
	tmp[n] = 0;
	if (inet_pton(AF_INET6, tmp, out) != 1)
		return errbuf_set(eb, E_PARSE, "bad IPv6 address");
	return 0;
}

static int parse_port(const char *s, size_t n, uint16_t *port, struct errbuf *eb)
{
	unsigned long v = 0;

	if (n == 0)
		return errbuf_set(eb, E_PARSE, "missing port after ':'");
	if (n > 5)
		return errbuf_set(eb, E_PARSE, "port out of range 1..65535");
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return errbuf_set(eb, E_PARSE, "port is not a decimal number");
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return errbuf_set(eb, E_PARSE, "port %lu out of range 1..65535", v);
	if (s[0] == '0')
		return errbuf_set(eb, E_PARSE, "port has a leading zero");
	*port = (uint16_t)v;
	return 0;
}

static bool looks_like_name(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_')
			return true;
	}
	return false;
}

int hbone_authority_parse(const char *s, size_t n, struct net_addr *out, struct errbuf *eb)
{
	const char *colon;
	uint16_t port = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!s || n == 0)
		return errbuf_set(eb, E_PARSE, "empty authority");
	if (n > HBONE_AUTHORITY_MAX)
		return errbuf_set(eb, E_PARSE, "authority longer than %d bytes",
				  HBONE_AUTHORITY_MAX);
	if (memchr(s, '@', n))
		return errbuf_set(eb, E_PARSE, "userinfo is not allowed in the authority");
	if (s[0] == '[') {
		const char *close = memchr(s, ']', n);
		uint8_t ip6[16];

		if (!close)
			return errbuf_set(eb, E_PARSE, "missing ']' after IPv6 address");
		rc = parse_v6(s + 1, (size_t)(close - s - 1), ip6, eb);
		if (rc < 0)
			return rc;
		if ((size_t)(close - s) + 1 == n)
			return errbuf_set(eb, E_PARSE, "missing port");
		if (close[1] != ':')
			return errbuf_set(eb, E_PARSE, "expected ':' after ']'");
		rc = parse_port(close + 2, n - (size_t)(close - s) - 2, &port, eb);
		if (rc < 0)
			return rc;
		out->sin6.sin6_family = AF_INET6;
		memcpy(&out->sin6.sin6_addr, ip6, 16);
		out->sin6.sin6_port = htons(port);
		out->len = sizeof(out->sin6);
		return 0;
	}
	colon = memchr(s, ':', n);
	if (colon && memchr(colon + 1, ':', n - (size_t)(colon - s) - 1))
		return errbuf_set(eb, E_PARSE, "IPv6 address must be in brackets");
	if (looks_like_name(s, colon ? (size_t)(colon - s) : n))
		return errbuf_set(eb, E_PARSE,
				  "authority is not an IP literal (host names are not "
				  "accepted)");
	if (!colon)
		return errbuf_set(eb, E_PARSE, "missing port");
	rc = parse_v4(s, (size_t)(colon - s), (uint8_t *)&out->sin.sin_addr, eb);
	if (rc < 0) {
		memset(out, 0, sizeof(*out));
		return rc;
	}
	rc = parse_port(colon + 1, n - (size_t)(colon - s) - 1, &port, eb);
	if (rc < 0) {
		memset(out, 0, sizeof(*out));
		return rc;
	}
	out->sin.sin_family = AF_INET;
	out->sin.sin_port = htons(port);
	out->len = sizeof(out->sin);
	return 0;
}

char *hbone_authority_format(const struct net_addr *a, char *out, size_t cap)
{
	return net_addr_format(a, out, cap);
}

/* RFC 9110 §5.5 field-value without obs-text: visible ASCII and inner SP/HTAB. */
bool hbone_header_value_ok(const char *v, size_t n)
{
	if (n > HBONE_MAX_HEADER_VALUE)
		return false;
	if (n > 0 && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t'))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if ((c < 0x20 && c != '\t') || c >= 0x7f)
			return false;
	}
	return true;
}

const char *hbone_error_code_str(uint32_t code)
{
	static const char *const names[] = {
		"NO_ERROR",
		"PROTOCOL_ERROR",
		"INTERNAL_ERROR",
		"FLOW_CONTROL_ERROR",
		"SETTINGS_TIMEOUT",
		"STREAM_CLOSED",
		"FRAME_SIZE_ERROR",
		"REFUSED_STREAM",
		"CANCEL",
		"COMPRESSION_ERROR",
		"CONNECT_ERROR",
		"ENHANCE_YOUR_CALM",
		"INADEQUATE_SECURITY",
		"HTTP_1_1_REQUIRED",
	};
	return code < ARRAY_LEN(names) ? names[code] : "UNKNOWN";
}
