/* The CA client for `POST /v1/certificates`: the ca_url policy, the request body and the
 * answer's JSON, over pkg/httpc (blocking HTTPS, interruptible through the thread's eventfd). */
#include "pkg/identity/identity_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/*
 * CA server verification (docs/identity.md, pkg/httpc, the same rule as pkg/watch):
 *   - the chain must verify against the roots in `ca_root` (TLS 1.2 through pkg/tls);
 *   - a DNS host is sent as SNI and matched by BearSSL against the leaf's dNSName SANs;
 *   - an IP-literal host is never sent as SNI (RFC 6066 §3); the leaf must carry an iPAddress
 *     SAN equal to it (RFC 2818 §3.1);
 *   - with ca_identity set, the leaf's URI SAN must also be exactly that SPIFFE ID.
 * Anything else is refused, not guessed: there is no "pin the root and accept any name" mode.
 *
 * The bearer token is read from token_file for every request by pkg/httpc, sent once, and
 * wiped; it is never logged or put in an error message.
 */

#define CA_PATH "/v1/certificates"

/* ---- URL ------------------------------------------------------------------------------------ */

static bool dns_name_ok(const char *h)
{
	size_t n = strlen(h);

	if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.')
			return false;
	return true;
}

int identity_url_parse(const char *s, struct identity_url *u, struct errbuf *eb)
{
	struct httpc_url h;
	size_t plen;
	int r;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(s, "http://", 7) == 0)
		return errbuf_set(eb, E_INVAL,
				  "ca_url %s: plain http is refused (the request carries the node "
				  "token); use https://",
				  s);
	if (strncasecmp(s, "https://", 8) != 0)
		return errbuf_set(eb, E_INVAL, "ca_url \"%s\": want https://host[:port][/prefix]",
				  s);
	if (strpbrk(s, "@?# \t\r\n"))
		return errbuf_set(eb, E_INVAL,
				  "ca_url \"%s\": userinfo, query, fragment and spaces are not "
				  "allowed",
				  s);
	r = httpc_url_parse(s, &h, eb);
	if (r == 0 && !h.host_is_ip && !dns_name_ok(h.host))
		r = errbuf_set(eb, E_PARSE, "\"%s\" is neither an IP address nor a DNS name",
			       h.host);
	if (r < 0) {
		errbuf_prefix(eb, "ca_url \"%s\"", s);
		httpc_url_fini(&h);
		return r;
	}
	u->host = xstrdup(h.host);
	for (char *p = u->host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	u->port = h.port;
	u->host_is_ip = h.host_is_ip;
	plen = strlen(h.target);
	while (plen && h.target[plen - 1] == '/')
		plen--;
	u->prefix = xstrndup(h.target, plen);
	if (h.ip_family == AF_INET6)
		u->display = xasprintf("https://[%s]:%u%s", u->host, u->port, u->prefix);
	else
		u->display = xasprintf("https://%s:%u%s", u->host, u->port, u->prefix);
	httpc_url_fini(&h);
	return 0;
}

void identity_url_fini(struct identity_url *u)
{
	free(u->host);
	free(u->prefix);
	free(u->display);
	memset(u, 0, sizeof(*u));
}

/* ---- client setup --------------------------------------------------------------------------- */

int identity_client_init(struct identity_client *c, const struct identity_opts *o,
			 struct errbuf *eb)
{
	int r;

	memset(c, 0, sizeof(*c));
	c->wakefd = -1;
	r = identity_url_parse(o->ca_url, &c->url, eb);
	if (r < 0)
		return r;
	if (!o->ca_root || !o->token_file) {
		r = errbuf_set(eb, E_INVAL, "ca_url %s needs ca_root (PEM roots) and token_file",
			       c->url.display);
		goto fail;
	}
	if (o->ca_identity && x509_spiffe_parse(o->ca_identity, strlen(o->ca_identity),
						&(struct x509_spiffe){0}, eb) < 0) {
		errbuf_prefix(eb, "ca_identity");
		r = -E_INVAL;
		goto fail;
	}
	r = httpc_init(&c->http, o->ca_url,
		       &(struct httpc_opts){.ca_root = o->ca_root,
					    .ca_root_what = "ca_root",
					    .peer_what = "CA",
					    .pin_uri = o->ca_identity,
					    .connect_timeout_ms = o->connect_timeout_ms,
					    .io_timeout_ms = o->io_timeout_ms},
		       eb);
	if (r < 0)
		goto fail;
	c->token_file = xstrdup(o->token_file);
	return 0;
fail:
	identity_client_fini(c);
	return r;
}

void identity_client_fini(struct identity_client *c)
{
	identity_url_fini(&c->url);
	httpc_fini(&c->http);
	free(c->token_file);
	c->token_file = NULL;
}

void identity_answer_fini(struct identity_answer *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->pem[i]);
	free(a->pem);
	memset(a, 0, sizeof(*a));
}

/* ---- the request -------------------------------------------------------------------------- */

static void format_body(const char *id, const char *csr_pem, int64_t ttl_s, struct buf *body)
{
	struct json_writer w;

	json_writer_init(&w, body, 0);
	json_write_object_begin(&w);
	json_write_key(&w, "csr");
	json_write_string(&w, csr_pem);
	json_write_key(&w, "identity");
	json_write_string(&w, id);
	json_write_key(&w, "ttlSeconds");
	json_write_int(&w, ttl_s);
	json_write_object_end(&w);
	json_writer_finish(&w);
}

static void on_head(void *arg, const struct http1_msg *m)
{
	int64_t *retry_after = arg;
	struct slice v;

	if (http1_fields_get(&m->headers, "retry-after", &v) && v.n > 0 && v.n < 10) {
		int64_t s = 0;

		for (size_t i = 0; i < v.n && s >= 0; i++)
			s = isdigit(v.p[i]) ? s * 10 + (v.p[i] - '0') : -1;
		*retry_after = s > 0 ? s : 0;
	}
}

static int status_class(int status)
{
	switch (status) {
	case 400: return E_INVAL;
	case 401:
	case 403: return E_DENIED;
	case 413:
	case 429: return E_LIMIT;
	default: return status >= 500 ? E_IO : E_PROTO;
	}
}

/* {"certChain": [PEM...], "warnings": [...]} or {"error": "..."}. */
static int decode_answer(struct identity_client *c, const struct httpc_resp *rs,
			 int64_t retry_after, const char *id, struct identity_answer *a,
			 struct errbuf *eb)
{
	cJSON *root = NULL;
	const cJSON *chain;
	const cJSON *warn;
	int r = 0;

	a->status = rs->status;
	a->retry_after = retry_after;
	if (json_parse((const char *)buf_rptr(&rs->body), buf_len(&rs->body), NULL, &root, NULL) <
		    0 ||
	    !cJSON_IsObject(root)) {
		json_free(root);
		return errbuf_set(eb, rs->status == 200 ? E_PROTO : status_class(rs->status),
				  "CA %s answered %d %s without a JSON object", c->url.display,
				  rs->status, http1_reason(rs->status));
	}
	if (rs->status != 200) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");

		r = errbuf_set(eb, status_class(rs->status), "CA %s answered %d %s: %.300s",
			       c->url.display, rs->status, http1_reason(rs->status),
			       cJSON_IsString(e) ? e->valuestring : "(no error text)");
		goto out;
	}
	chain = cJSON_GetObjectItemCaseSensitive(root, "certChain");
	if (!cJSON_IsArray(chain)) {
		r = errbuf_set(eb, E_PROTO, "CA %s: response has no certChain array",
			       c->url.display);
		goto out;
	}
	for (const cJSON *e = chain->child; e; e = e->next) {
		if (!cJSON_IsString(e)) {
			r = errbuf_set(eb, E_PROTO, "CA %s: certChain[%zu] is not a string",
				       c->url.display, a->n);
			goto out;
		}
		if (a->n >= X509_MAX_CHAIN) {
			r = errbuf_set(eb, E_LIMIT, "CA %s: certChain over %d elements",
				       c->url.display, X509_MAX_CHAIN);
			goto out;
		}
		a->pem = xrealloc(a->pem, (a->n + 1) * sizeof(*a->pem));
		a->pem[a->n++] = xstrdup(e->valuestring);
	}
	warn = cJSON_GetObjectItemCaseSensitive(root, "warnings");
	if (cJSON_IsArray(warn))
		for (const cJSON *e = warn->child; e; e = e->next)
			if (cJSON_IsString(e))
				log_warn("identity: CA warning", LF_STR("identity", id),
					 LF_STR("warning", e->valuestring));
out:
	json_free(root);
	return r;
}

int identity_client_request(struct identity_client *c, const char *id, const char *csr_pem,
			    int64_t ttl_s, int64_t now_s, struct identity_answer *a,
			    struct errbuf *eb)
{
	struct httpc_resp rs = {0};
	int64_t retry_after = 0;
	struct buf body;
	char *target = xasprintf("%s%s", c->url.prefix, CA_PATH);
	int r;

	memset(a, 0, sizeof(*a));
	buf_init(&body, 0);
	format_body(id, csr_pem, ttl_s, &body);
	r = httpc_fetch(&c->http,
			&(struct httpc_req){.method = "POST",
					    .target = target,
					    .token_file = c->token_file,
					    .content_type = "application/json",
					    .accept = "application/json",
					    .body = buf_rptr(&body),
					    .body_len = buf_len(&body),
					    .max_body = IDENTITY_RESPONSE_MAX,
					    /* Validate the CA's certificate on the manager's clock
					     * (tests move it). */
					    .now_s = now_s,
					    .wakefd = c->wakefd,
					    .stopping = c->stopping,
					    .on_head = on_head,
					    .arg = &retry_after},
			&rs, eb);
	if (r < 0)
		errbuf_prefix(eb, "CA %s", c->url.display);
	else
		r = decode_answer(c, &rs, retry_after, id, a, eb);
	if (c->stopping && atomic_load(c->stopping))
		r = errbuf_set(eb, E_CLOSED, "stopped");
	httpc_resp_fini(&rs);
	buf_fini(&body);
	free(target);
	if (r < 0) {
		/* Keep status and Retry-After for the backoff; drop any partial chain. */
		struct identity_answer keep = {.status = a->status, .retry_after = a->retry_after};

		identity_answer_fini(a);
		*a = keep;
	}
	return r;
}
