/* SPIFFE IDs (SPIFFE-ID spec §2) and Istio's spiffe://<td>/ns/<ns>/sa/<sa> identities. */
#include "pkg/x509/x509_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int bad(struct errbuf *eb, const char *s, size_t n, const char *why)
{
	char esc[128];

	x509_escape((const uint8_t *)s, n, esc, sizeof(esc));
	return errbuf_set(eb, E_INVAL, "invalid SPIFFE ID '%s': %s", esc, why);
}

static bool td_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool path_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

/* Reason a trust domain is invalid, or NULL (SPIFFE-ID §2.1). */
static const char *td_problem(const char *td, size_t n)
{
	if (n == 0)
		return "trust domain is empty";
	if (n > X509_TRUST_DOMAIN_MAX)
		return "trust domain is longer than 255 characters";
	for (size_t i = 0; i < n; i++) {
		char c = td[i];
		if (td_char(c))
			continue;
		if (c >= 'A' && c <= 'Z')
			return "trust domain must be lower case";
		if (c == ':')
			return "trust domain must not contain a port";
		if (c == '@')
			return "trust domain must not contain userinfo";
		if (c == '%')
			return "percent-encoding is not allowed";
		return "trust domain may only contain [a-z0-9.-_]";
	}
	return NULL;
}

int x509_trust_domain_check(const char *td, size_t n, struct errbuf *eb)
{
	const char *why = td_problem(td, n);
	char esc[128];

	if (!why)
		return 0;
	x509_escape((const uint8_t *)td, n, esc, sizeof(esc));
	return errbuf_set(eb, E_INVAL, "invalid trust domain '%s': %s", esc, why);
}

int x509_spiffe_parse(const char *s, size_t n, struct x509_spiffe *id, struct errbuf *eb)
{
	static const char scheme[] = "spiffe://";
	size_t k = sizeof(scheme) - 1, td_end, seg;
	const char *why;

	memset(id, 0, sizeof(*id));
	if (n > X509_SPIFFE_MAX)
		return bad(eb, s, n, "longer than 2048 bytes");
	if (n < k || memcmp(s, scheme, k) != 0) {
		if (n >= k && strncasecmp(s, scheme, k) == 0)
			return bad(eb, s, n, "scheme must be lower-case \"spiffe\"");
		return bad(eb, s, n, "must start with spiffe://");
	}
	td_end = k;
	while (td_end < n && s[td_end] != '/' && s[td_end] != '?' && s[td_end] != '#')
		td_end++;
	if ((why = td_problem(s + k, td_end - k)))
		return bad(eb, s, n, why);
	id->td = (struct slice){(const uint8_t *)s + k, td_end - k};
	id->path = (struct slice){(const uint8_t *)s + td_end, n - td_end};
	/* Path: ("/" segment)*, segments non-empty, not "." or "..", of [A-Za-z0-9.-_]. */
	for (size_t i = td_end; i < n; i = seg) {
		char c = s[i];
		if (c == '?')
			return bad(eb, s, n, "query is not allowed");
		if (c == '#')
			return bad(eb, s, n, "fragment is not allowed");
		/* s[i] is '/' here: every segment starts with one. */
		seg = i + 1;
		while (seg < n && s[seg] != '/') {
			c = s[seg];
			if (c == '?')
				return bad(eb, s, n, "query is not allowed");
			if (c == '#')
				return bad(eb, s, n, "fragment is not allowed");
			if (c == '%')
				return bad(eb, s, n, "percent-encoding is not allowed");
			if (!path_char(c))
				return bad(eb, s, n,
					   "path may only contain [A-Za-z0-9.-_] and '/'");
			seg++;
		}
		if (seg == i + 1)
			return bad(eb, s, n,
				   seg == n ? "trailing '/' is not allowed" : "empty path segment");
		if ((seg - i - 1 == 1 && s[i + 1] == '.') ||
		    (seg - i - 1 == 2 && s[i + 1] == '.' && s[i + 2] == '.'))
			return bad(eb, s, n, "path segments '.' and '..' are not allowed");
	}
	return 0;
}

int x509_spiffe_istio(const struct x509_spiffe *id, struct slice *ns, struct slice *sa,
		      struct errbuf *eb)
{
	const char *p = (const char *)id->path.p;
	size_t n = id->path.n, i, ns_end;
	char esc[128];

	/* /ns/<ns>/sa/<sa>: exactly four segments (segments are already known non-empty). */
	if (n < 4 || memcmp(p, "/ns/", 4) != 0)
		goto fail;
	for (ns_end = 4; ns_end < n && p[ns_end] != '/'; ns_end++)
		;
	if (ns_end == 4 || n - ns_end < 5 || memcmp(p + ns_end, "/sa/", 4) != 0)
		goto fail;
	for (i = ns_end + 4; i < n; i++)
		if (p[i] == '/')
			goto fail;
	ns->p = (const uint8_t *)p + 4;
	ns->n = ns_end - 4;
	sa->p = (const uint8_t *)p + ns_end + 4;
	sa->n = n - ns_end - 4;
	return 0;
fail:
	x509_escape(id->path.p, id->path.n, esc, sizeof(esc));
	return errbuf_set(eb, E_INVAL,
			  "SPIFFE ID path '%s' is not of the form /ns/<namespace>/sa/<account>",
			  esc);
}

int x509_spiffe_istio_format(char *out, size_t cap, const char *td, const char *ns, const char *sa,
			     struct errbuf *eb)
{
	struct x509_spiffe id;
	int k = snprintf(out, cap, "spiffe://%s/ns/%s/sa/%s", td, ns, sa);

	if (k < 0 || (size_t)k >= cap)
		return errbuf_set(eb, E_LIMIT, "SPIFFE ID too long");
	if (!ns[0] || !sa[0])
		return errbuf_set(eb, E_INVAL, "namespace and service account must not be empty");
	if (strchr(ns, '/') || strchr(sa, '/'))
		return errbuf_set(eb, E_INVAL,
				  "namespace and service account must not contain '/'");
	return x509_spiffe_parse(out, (size_t)k, &id, eb);
}
