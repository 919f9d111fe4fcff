/* HTTP/1 field iteration, token lists, method and reason-phrase tables, hop-by-hop fields. */
#include "pkg/http1/http1.h"
#include "pkg/http1/http1_int.h"

#include <string.h>

/* Generated: bit 1 token, 2 field value, 4 request-target, 8 host, 16 hex, 32 qdtext. */
const uint8_t http1_cls[256] = {
	0,  0,	0,  0,	0,  0,	0,  0,	0,  34, 0,  0,	0,  0,	0,  0,	0,  0,	0,  0,	0,  0,
	0,  0,	0,  0,	0,  0,	0,  0,	0,  0,	34, 47, 6,  35, 47, 47, 47, 47, 46, 46, 47, 47,
	46, 47, 47, 38, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 46, 46, 38, 46, 38, 38, 38, 63,
	63, 63, 63, 63, 63, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47,
	47, 47, 47, 46, 6,  46, 39, 47, 39, 63, 63, 63, 63, 63, 63, 47, 47, 47, 47, 47, 47, 47,
	47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 47, 38, 39, 38, 47, 0,	34, 34, 34, 34,
	34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34,
	34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34,
	34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34,
	34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34,
	34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34,
	34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34,
};

bool h1_eq(const uint8_t *p, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == '\0' || h1_lower(p[i]) != h1_lower((uint8_t)s[i]))
			return false;
	}
	return s[i] == '\0';
}

bool h1_list_next(const uint8_t *p, size_t n, size_t *pos, const uint8_t **ep, size_t *en)
{
	size_t i = *pos, s, e;

	if (i > n || (i == n && (n == 0 || p[n - 1] != ',')))
		return false;
	s = i;
	while (i < n && p[i] != ',')
		i++;
	e = i;
	*pos = i + 1; /* past the comma (or past the end) */
	while (s < e && h1_ows(p[s]))
		s++;
	while (e > s && h1_ows(p[e - 1]))
		e--;
	*ep = p + s;
	*en = e - s;
	return true;
}

/* Case-insensitive comparison of two n-byte ranges. */
static bool h1_eqn(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (h1_lower(a[i]) != h1_lower(b[i]))
			return false;
	}
	return true;
}

bool http1_slice_eq(struct slice s, const char *str)
{
	return h1_eq(s.p, s.n, str);
}

bool http1_list_contains(struct slice list, const char *token)
{
	size_t pos = 0, en;
	const uint8_t *ep;

	while (h1_list_next(list.p, list.n, &pos, &ep, &en)) {
		if (en > 0 && h1_eq(ep, en, token))
			return true;
	}
	return false;
}

/* The raw section was validated by the parser: "name:" OWS value OWS CRLF per line. */
bool http1_fields_next(const struct http1_fields *f, size_t *pos, struct http1_field *out)
{
	const uint8_t *p = f->raw.p, *colon, *cr;
	size_t i = *pos, v, e;

	if (!p || i >= f->raw.n)
		return false;
	colon = memchr(p + i, ':', f->raw.n - i);
	cr = memchr(p + i, '\r', f->raw.n - i);
	if (!colon || !cr || colon > cr)
		return false;
	out->name = (struct slice){p + i, (size_t)(colon - (p + i))};
	v = (size_t)(colon - p) + 1;
	e = (size_t)(cr - p);
	while (v < e && h1_ows(p[v]))
		v++;
	while (e > v && h1_ows(p[e - 1]))
		e--;
	out->value = (struct slice){p + v, e - v};
	*pos = (size_t)(cr - p) + 2;
	return true;
}

bool http1_fields_get(const struct http1_fields *f, const char *name, struct slice *value)
{
	struct http1_field fl;
	size_t pos = 0;

	while (http1_fields_next(f, &pos, &fl)) {
		if (http1_slice_eq(fl.name, name)) {
			*value = fl.value;
			return true;
		}
	}
	return false;
}

bool http1_fields_has_token(const struct http1_fields *f, const char *name, const char *token)
{
	struct http1_field fl;
	size_t pos = 0;

	while (http1_fields_next(f, &pos, &fl)) {
		if (http1_slice_eq(fl.name, name) && http1_list_contains(fl.value, token))
			return true;
	}
	return false;
}

bool http1_is_hop_by_hop(const struct http1_msg *m, struct slice name)
{
	static const char *const fixed[] = {"connection", "keep-alive",	       "proxy-connection",
					    "te",	  "transfer-encoding", "upgrade",
					    "trailer",	  "trailers"};
	struct http1_field fl;
	size_t pos = 0;

	for (size_t i = 0; i < ARRAY_LEN(fixed); i++) {
		if (http1_slice_eq(name, fixed[i]))
			return true;
	}
	if (!m || !m->connection_options)
		return false;
	/* RFC 9110 §7.6.1: fields named by Connection options are hop-by-hop too. */
	while (http1_fields_next(&m->headers, &pos, &fl)) {
		size_t lp = 0, en;
		const uint8_t *ep;

		if (!http1_slice_eq(fl.name, "connection"))
			continue;
		while (h1_list_next(fl.value.p, fl.value.n, &lp, &ep, &en)) {
			if (en > 0 && en == name.n && h1_eqn(ep, name.p, en))
				return true;
		}
	}
	return false;
}

static const char *const method_names[HTTP1__M_COUNT] = {
	[HTTP1_M_GET] = "GET",	       [HTTP1_M_HEAD] = "HEAD",	    [HTTP1_M_POST] = "POST",
	[HTTP1_M_PUT] = "PUT",	       [HTTP1_M_DELETE] = "DELETE", [HTTP1_M_CONNECT] = "CONNECT",
	[HTTP1_M_OPTIONS] = "OPTIONS", [HTTP1_M_TRACE] = "TRACE",   [HTTP1_M_PATCH] = "PATCH",
};

/* Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET. */
enum http1_method http1_method_parse(struct slice s)
{
	for (int m = 1; m < HTTP1__M_COUNT; m++) {
		size_t n = strlen(method_names[m]);
		if (s.n == n && memcmp(s.p, method_names[m], n) == 0)
			return (enum http1_method)m;
	}
	return HTTP1_M_OTHER;
}

const char *http1_method_name(enum http1_method m)
{
	if ((int)m <= 0 || m >= HTTP1__M_COUNT)
		return NULL;
	return method_names[m];
}

const char *http1_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 103: return "Early Hints";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 203: return "Non-Authoritative Information";
	case 204: return "No Content";
	case 205: return "Reset Content";
	case 206: return "Partial Content";
	case 300: return "Multiple Choices";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}
