/* URL parsing and bearer token files for the blocking HTTP client. */
#include "pkg/httpc/httpc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- URLs --------------------------------------------------------------------------------- */

void httpc_url_fini(struct httpc_url *u)
{
	free(u->host);
	free(u->hostport);
	free(u->target);
	memset(u, 0, sizeof(*u));
}

static bool is_regname_char(int c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_';
}

static int parse_port(const char *p, size_t n, uint16_t *port, struct errbuf *eb)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return errbuf_set(eb, E_INVAL, "invalid port \"%.*s\"", (int)MIN(n, 16), p);
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return errbuf_set(eb, E_INVAL, "invalid port \"%.*s\"", (int)n, p);
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v < 1 || v > 65535)
		return errbuf_set(eb, E_INVAL, "port %lu out of range 1..65535", v);
	*port = (uint16_t)v;
	return 0;
}

static int parse_host(const char *a, size_t n, struct httpc_url *u, struct errbuf *eb)
{
	char tmp[256];
	bool digits_dots = true;

	if (n == 0)
		return errbuf_set(eb, E_INVAL, "missing host");
	if (n >= sizeof(tmp))
		return errbuf_set(eb, E_INVAL, "host name too long");
	memcpy(tmp, a, n);
	tmp[n] = '\0';
	if (tmp[0] == '[') {
		if (tmp[n - 1] != ']')
			return errbuf_set(eb, E_INVAL, "unterminated IPv6 literal");
		tmp[n - 1] = '\0';
		if (strchr(tmp, '%'))
			return errbuf_set(eb, E_INVAL, "IPv6 zone identifiers are not supported");
		if (inet_pton(AF_INET6, tmp + 1, u->ip) != 1)
			return errbuf_set(eb, E_INVAL, "invalid IPv6 address \"%s\"", tmp + 1);
		u->host_is_ip = true;
		u->ip_family = AF_INET6;
		u->host = xstrdup(tmp + 1);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (!is_regname_char((unsigned char)tmp[i]))
			return errbuf_set(eb, E_INVAL, "invalid character in host \"%s\"", tmp);
		if (!isdigit((unsigned char)tmp[i]) && tmp[i] != '.')
			digits_dots = false;
	}
	if (inet_pton(AF_INET, tmp, u->ip) == 1) {
		u->host_is_ip = true;
		u->ip_family = AF_INET;
	} else if (digits_dots) {
		/* "127.1" or "1.2.3.256": getaddrinfo would read these as numbers; refuse instead.
		 */
		return errbuf_set(eb, E_INVAL, "invalid IPv4 address \"%s\"", tmp);
	}
	u->host = xstrdup(tmp);
	return 0;
}

static int url_parse(const char *s, struct httpc_url *u, struct errbuf *eb)
{
	const char *a = strstr(s, "://") + 3;
	const char *end = a + strcspn(a, "/?#");
	const char *colon = NULL;
	const char *hend;
	size_t tlen;
	int r;

	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return errbuf_set(eb, E_INVAL, "URL has a space or non-ASCII character");
	u->tls = tolower((unsigned char)s[4]) == 's';
	if (memchr(a, '@', (size_t)(end - a)))
		return errbuf_set(eb, E_INVAL, "credentials in the URL are not supported");
	if (a < end && *a == '[') {
		hend = memchr(a, ']', (size_t)(end - a));
		if (!hend)
			return errbuf_set(eb, E_INVAL, "unterminated IPv6 literal");
		hend++;
		if (hend < end && *hend != ':')
			return errbuf_set(eb, E_INVAL, "junk after IPv6 literal");
		colon = hend < end ? hend : NULL;
	} else {
		colon = memchr(a, ':', (size_t)(end - a));
		hend = colon ? colon : end;
	}
	r = parse_host(a, (size_t)(hend - a), u, eb);
	if (r < 0)
		return r;
	u->port = u->tls ? 443 : 80;
	if (colon) {
		r = parse_port(colon + 1, (size_t)(end - colon - 1), &u->port, eb);
		if (r < 0)
			return r;
	}
	if (u->ip_family == AF_INET6)
		u->hostport = xasprintf("[%s]:%u", u->host, u->port);
	else
		u->hostport = xasprintf("%s:%u", u->host, u->port);
	tlen = strcspn(end, "#"); /* the fragment is client-side only (RFC 3986 §3.5) */
	if (tlen == 0 || end[0] == '?')
		u->target = xasprintf("/%.*s", (int)tlen, end);
	else
		u->target = xstrndup(end, tlen);
	return 0;
}

int httpc_url_parse(const char *s, struct httpc_url *u, struct errbuf *eb)
{
	int r;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0)
		return errbuf_set(eb, E_UNSUPP, "URL must start with http:// or https://");
	r = url_parse(s, u, eb);
	if (r < 0)
		httpc_url_fini(u);
	return r;
}

/* ---- tokens -----------------------------------------------------------------------------------
 */

int httpc_token_read(const char *path, char *out, size_t cap, struct errbuf *eb)
{
	size_t len = 0;
	int fd;
	int r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return errbuf_set(eb, E_IO, "token file %s: %s", path, strerror(errno));
	for (;;) {
		ssize_t n = read(fd, out + len, cap - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = errbuf_set(eb, E_IO, "token file %s: %s", path, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == cap - 1) {
			r = errbuf_set(eb, E_LIMIT, "token file %s: longer than %zu bytes", path,
				       cap - 2);
			break;
		}
	}
	close(fd);
	while (len && isspace((unsigned char)out[len - 1]))
		len--;
	out[len] = '\0';
	if (r < 0)
		return r;
	if (len == 0)
		return errbuf_set(eb, E_INVAL, "token file %s: empty", path);
	/* Visible ASCII only: anything else would break (or inject into) the header. */
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)out[i] <= 0x20 || (unsigned char)out[i] >= 0x7f)
			return errbuf_set(eb, E_INVAL,
					  "token file %s: token has a space or control character",
					  path);
	return 0;
}
