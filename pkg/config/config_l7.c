/* The waypoint part of the mesh-config schema (DESIGN.md §6): Gateway API HTTPRoute and Istio
 * AuthorizationPolicy objects as Kubernetes serves them, their value checks, and the reference
 * checks against services. */
#include "pkg/config/config_int.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- value checks ---------------------------------------------------------------------------- */

int config_duration_parse(const char *s, uint64_t *ms)
{
	uint64_t total = 0;
	int parts = 0;

	if (!s || !*s)
		return -E_INVAL;
	while (*s) {
		uint64_t v = 0;
		int digits = 0;
		uint64_t unit;

		while (*s >= '0' && *s <= '9') {
			v = v * 10 + (uint64_t)(*s++ - '0');
			if (++digits > 5)
				return -E_INVAL;
		}
		if (!digits)
			return -E_INVAL;
		if (s[0] == 'm' && s[1] == 's') {
			unit = 1;
			s += 2;
		} else if (*s == 'h') {
			unit = 3600000;
			s++;
		} else if (*s == 'm') {
			unit = 60000;
			s++;
		} else if (*s == 's') {
			unit = 1000;
			s++;
		} else {
			return -E_INVAL;
		}
		total += v * unit;
		if (++parts > 4)
			return -E_INVAL;
	}
	*ms = total;
	return 0;
}

static const char *chk_duration(const char *s, char *tmp, size_t cap)
{
	uint64_t ms;

	(void)tmp;
	(void)cap;
	if (config_duration_parse(s, &ms) < 0)
		return "invalid duration (Gateway API: 1 to 4 of <1-5 digits><h|m|s|ms>, e.g. "
		       "\"1h30m\", \"500ms\")";
	return NULL;
}

static const char *chk_nonempty(const char *s, char *tmp, size_t cap)
{
	(void)tmp;
	(void)cap;
	return *s ? NULL : "must not be empty";
}

static bool tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 9110 field names are tokens. */
static const char *chk_header_name(const char *s, char *tmp, size_t cap)
{
	if (!*s)
		return "must not be empty";
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (!tchar(*c)) {
			snprintf(tmp, cap,
				 "invalid header name (character 0x%02x is not a token "
				 "character)",
				 *c);
			return tmp;
		}
	}
	return NULL;
}

static const char *chk_header_value(const char *s, char *tmp, size_t cap)
{
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if ((*c < 0x20 && *c != '\t') || *c == 0x7f) {
			snprintf(tmp, cap, "control character 0x%02x not allowed in a header value",
				 *c);
			return tmp;
		}
	}
	return NULL;
}

static const char *chk_port_string(const char *s, char *tmp, size_t cap)
{
	char *end;
	unsigned long v;

	(void)tmp;
	(void)cap;
	if (!*s || *s < '0' || *s > '9')
		return "expected a port number 0..65535 as a string";
	v = strtoul(s, &end, 10);
	if (*end || v > 65535)
		return "expected a port number 0..65535 as a string";
	return NULL;
}

/* regcomp's reason in our own words: musl and glibc word regerror() differently, and error
 * messages must not depend on the libc. */
static const char *regex_reason(int rc)
{
	switch (rc) {
	case REG_EPAREN: return "unmatched parenthesis";
	case REG_EBRACK: return "unmatched bracket";
	case REG_EBRACE: return "unmatched brace";
	case REG_BADBR: return "invalid repetition count";
	case REG_ERANGE: return "invalid character range";
	case REG_ECTYPE: return "unknown character class";
	case REG_ECOLLATE: return "invalid collating element";
	case REG_EESCAPE: return "trailing backslash";
	case REG_ESUBREG: return "invalid back reference";
	case REG_BADRPT: return "repetition operator without an operand";
	case REG_ESPACE: return "out of memory";
	default: return "invalid pattern";
	}
}

/* Reports a bad POSIX extended regular expression at key `field` of the current object. */
static void check_regex(struct cfg_ctx *ctx, const char *field, const char *re)
{
	regex_t rx;
	int rc;
	size_t mark;

	if (!re)
		return;
	rc = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
	if (rc == 0) {
		regfree(&rx);
		return;
	}
	mark = json_path_push_key(&ctx->path, field);
	cfg_error(ctx, "invalid regular expression (POSIX extended): %s", regex_reason(rc));
	json_path_pop(&ctx->path, mark);
}

/* Istio path templates: "{*}" one segment, "{**}" any, only as whole segments, "{**}" last;
 * outside them '*', '{', '}' are illegal (a '*' at either end is Istio's prefix/suffix form). */
static const char *template_error(const char *p)
{
	bool has_op = strstr(p, "{*") != NULL;
	const char *seg = p;

	if (!has_op)
		return NULL;
	if (*p != '/')
		return "a path template must start with '/'";
	while (seg && *seg) {
		const char *next = strchr(seg + 1, '/');
		size_t n = next ? (size_t)(next - seg - 1) : strlen(seg + 1);
		const char *s = seg + 1;

		if (memchr(s, '{', n) || memchr(s, '}', n) || memchr(s, '*', n)) {
			if (n == 3 && memcmp(s, "{*}", 3) == 0) {
			} else if (n == 4 && memcmp(s, "{**}", 4) == 0) {
				if (next && next[1])
					return "{**} must be the last operator of a path template";
			} else {
				return "a path template operator ({*} or {**}) must be a whole "
				       "segment; '*', '{' and '}' are not allowed elsewhere";
			}
		}
		seg = next;
	}
	return NULL;
}

/* ---- leaf and enum types --------------------------------------------------------------------- */

#define STRING_TYPE(nm, fn, d)                                                                     \
	{                                                                                          \
		.kind = CFG_STRING, .name = nm, .size = sizeof(const char *), .check = fn,         \
		.doc = d                                                                           \
	}
#define ENUM_TYPE(nm, vals, b)                                                                     \
	{                                                                                          \
		.kind = CFG_ENUM, .name = nm, .size = sizeof(int), .values = vals,                 \
		.nvalues = ARRAY_LEN(vals), .base = b                                              \
	}
#define ARRAY_OF(elem_)                                                                            \
	{                                                                                          \
		.kind = CFG_ARRAY, .name = "array", .elem = &(elem_)                               \
	}
#define FIELD(nm, ty, fl, df, st, mem, d)                                                          \
	{                                                                                          \
		.name = nm, .type = &(ty), .flags = fl, .def = df, .off = offsetof(st, mem),       \
		.doc = d                                                                           \
	}
#define LIST(nm, ty, fl, df, st, mem, d)                                                           \
	{                                                                                          \
		.name = nm, .type = &(ty), .flags = fl, .def = df, .off = offsetof(st, mem),       \
		.count_off = offsetof(st, n_##mem), .doc = d                                       \
	}
#define IGNORED(nm)                                                                                \
	{                                                                                          \
		.name = nm, .type = &t_string, .flags = CF_IGNORED,                                \
		.doc = "Accepted and ignored (Kubernetes bookkeeping)."                            \
	}
#define UNSUPPORTED(nm, why)                                                                       \
	{                                                                                          \
		.name = nm, .type = &t_string, .flags = CF_UNSUPPORTED, .doc = why                 \
	}
#define OBJECT_TYPE(nm, st, flds, d)                                                               \
	.kind = CFG_OBJECT, .name = nm, .size = sizeof(st), .fields = flds,                        \
	.nfields = ARRAY_LEN(flds), .doc = d

static const struct cfg_type t_string = STRING_TYPE("string", NULL, "Any string.");
static const struct cfg_type t_nonempty =
	STRING_TYPE("non-empty string", chk_nonempty, "Any string except \"\".");
static const struct cfg_type t_duration = STRING_TYPE("duration", chk_duration, "");
static const struct cfg_type t_header_name = STRING_TYPE("header name", chk_header_name, "");
static const struct cfg_type t_header_value = STRING_TYPE("header value", chk_header_value, "");
static const struct cfg_type t_port_string = STRING_TYPE("port string", chk_port_string, "");
static const struct cfg_type t_port0 = {
	.kind = CFG_UINT, .name = "port", .size = sizeof(uint16_t), .min = 1, .max = 65535};
static const struct cfg_type t_status = {
	.kind = CFG_UINT, .name = "status code", .size = sizeof(uint16_t), .min = 300, .max = 399};
static const struct cfg_type t_weight = {
	.kind = CFG_UINT, .name = "weight", .size = sizeof(uint32_t), .min = 0, .max = 1000000};
static const struct cfg_type t_percent = {
	.kind = CFG_UINT, .name = "percent", .size = sizeof(uint16_t), .min = 0, .max = 100};
static const struct cfg_type t_u32 = {
	.kind = CFG_UINT, .name = "integer", .size = sizeof(uint32_t), .min = 0, .max = 1000000};
static const struct cfg_type t_denominator = {.kind = CFG_UINT,
					      .name = "denominator",
					      .size = sizeof(uint32_t),
					      .min = 1,
					      .max = 1000000};
static const struct cfg_type t_attempts = {
	.kind = CFG_UINT, .name = "attempts", .size = sizeof(uint32_t), .min = 0, .max = 100};
static const struct cfg_type t_code = {
	.kind = CFG_UINT, .name = "status code", .size = sizeof(uint16_t), .min = 400, .max = 599};
static const struct cfg_type t_code_list = ARRAY_OF(t_code);
static const struct cfg_type t_cidr = {
	.kind = CFG_CIDR, .name = "CIDR", .size = sizeof(struct config_cidr)};
static const struct cfg_type t_string_list = ARRAY_OF(t_string);
static const struct cfg_type t_header_name_list = ARRAY_OF(t_header_name);
static const struct cfg_type t_port_string_list = ARRAY_OF(t_port_string);
static const struct cfg_type t_cidr_list = ARRAY_OF(t_cidr);

static const char *const v_parent_kind[] = {"Service", "Gateway"};
static const char *const v_path_type[] = {"Exact", "PathPrefix", "RegularExpression"};
static const char *const v_value_type[] = {"Exact", "RegularExpression"};
static const char *const v_method[] = {"GET",	  "HEAD",    "POST",  "PUT",  "DELETE",
				       "CONNECT", "OPTIONS", "TRACE", "PATCH"};
static const char *const v_modifier[] = {"ReplaceFullPath", "ReplacePrefixMatch"};
static const char *const v_scheme[] = {"http", "https"};
static const char *const v_filter[] = {"RequestHeaderModifier", "ResponseHeaderModifier",
				       "RequestRedirect", "URLRewrite", "RequestMirror"};
static const char *const v_l7_action[] = {"ALLOW", "DENY", "AUDIT"};
static const char *const v_target_kind[] = {"Service", "Gateway"};

static const struct cfg_type t_parent_kind = ENUM_TYPE("kind", v_parent_kind, 0);
static const struct cfg_type t_path_type = ENUM_TYPE("path match type", v_path_type, 0);
static const struct cfg_type t_value_type = ENUM_TYPE("match type", v_value_type, 0);
static const struct cfg_type t_method = ENUM_TYPE("method", v_method, 1);
static const struct cfg_type t_modifier = ENUM_TYPE("path modifier type", v_modifier, 0);
static const struct cfg_type t_scheme = ENUM_TYPE("scheme", v_scheme, 1);
static const struct cfg_type t_filter_type = ENUM_TYPE("filter type", v_filter, 0);
static const struct cfg_type t_l7_action = ENUM_TYPE("action", v_l7_action, 0);
static const struct cfg_type t_target_kind = ENUM_TYPE("kind", v_target_kind, 0);

const char *config_http_method_name(enum config_http_method m)
{
	if (m <= CONFIG_METHOD_ANY || (size_t)m > ARRAY_LEN(v_method))
		return "";
	return v_method[m - 1];
}

/* ---- metadata -------------------------------------------------------------------------------- */

#define MD struct config_k8s_meta
static const struct cfg_field f_meta[] = {
	FIELD("name", t_nonempty, CF_REQUIRED, NULL, MD, name, "Object name."),
	FIELD("namespace", t_nonempty, 0, "default", MD, namespace, "Namespace."),
	FIELD("creationTimestamp", t_string, CF_OMIT_UNSET, "", MD, creation_timestamp,
	      "RFC 3339 time; the older route wins precedence ties."),
	IGNORED("uid"),
	IGNORED("resourceVersion"),
	IGNORED("generation"),
	IGNORED("labels"),
	IGNORED("annotations"),
	IGNORED("managedFields"),
	IGNORED("ownerReferences"),
	IGNORED("finalizers"),
	IGNORED("selfLink"),
};
#undef MD
static const struct cfg_type t_meta = {
	OBJECT_TYPE("ObjectMeta", struct config_k8s_meta, f_meta,
		    "Kubernetes metadata; bookkeeping fields are accepted and ignored."),
};

/* ---- HTTPRoute ------------------------------------------------------------------------------- */

static void parent_post(struct cfg_ctx *ctx, void *obj);
static void path_post(struct cfg_ctx *ctx, void *obj);
static void value_post(struct cfg_ctx *ctx, void *obj);
static void redirect_post(struct cfg_ctx *ctx, void *obj);
static void modifier_post(struct cfg_ctx *ctx, void *obj);
static void filter_post(struct cfg_ctx *ctx, void *obj);
static void timeouts_post(struct cfg_ctx *ctx, void *obj);
static void retry_post(struct cfg_ctx *ctx, void *obj);
static void mirror_post(struct cfg_ctx *ctx, void *obj);
static void rule_post(struct cfg_ctx *ctx, void *obj);
static void route_post(struct cfg_ctx *ctx, void *obj);
static void operation_post(struct cfg_ctx *ctx, void *obj);
static void condition_post(struct cfg_ctx *ctx, void *obj);
static void l7_policy_post(struct cfg_ctx *ctx, void *obj);

#define PR struct config_parent_ref
static const struct cfg_field f_parent[] = {
	FIELD("group", t_string, CF_OMIT_UNSET, "", PR, group, "`\"\"` for a Service."),
	FIELD("kind", t_parent_kind, 0, "Gateway", PR, kind,
	      "`Service` (GAMMA); `Gateway` parents are not supported yet."),
	FIELD("name", t_nonempty, CF_REQUIRED, NULL, PR, name, "Service name."),
	FIELD("namespace", t_string, CF_OMIT_UNSET, "", PR, namespace,
	      "Default: the route's namespace."),
	FIELD("port", t_port0, CF_OMIT_UNSET, NULL, PR, port,
	      "Only this service port (default: all)."),
	FIELD("sectionName", t_string, CF_OMIT_UNSET, "", PR, section_name, "Ignored for now."),
};
#undef PR
static const struct cfg_type t_parent = {
	OBJECT_TYPE("ParentReference", struct config_parent_ref, f_parent,
		    "The service a route attaches to."),
	.post = parent_post,
};
static const struct cfg_type t_parent_list = ARRAY_OF(t_parent);

static const struct cfg_field f_path[] = {
	FIELD("type", t_path_type, 0, "PathPrefix", struct config_path_match, type,
	      "`RegularExpression` uses POSIX extended regular expressions (regcomp), not RE2, "
	      "matched against the whole path."),
	FIELD("value", t_string, 0, "/", struct config_path_match, value,
	      "Exact/PathPrefix: starts with `/`."),
};
static const struct cfg_type t_path = {
	OBJECT_TYPE("HTTPPathMatch", struct config_path_match, f_path, "Path match."),
	.post = path_post,
};

static const struct cfg_field f_value[] = {
	FIELD("type", t_value_type, 0, "Exact", struct config_value_match, type,
	      "`RegularExpression`: POSIX extended, matching the whole value."),
	FIELD("name", t_nonempty, CF_REQUIRED, NULL, struct config_value_match, name,
	      "Header name (case-insensitive) or query parameter name (exact)."),
	FIELD("value", t_string, CF_REQUIRED, NULL, struct config_value_match, value, "Value."),
};
static const struct cfg_type t_value = {
	OBJECT_TYPE("HTTPHeaderMatch", struct config_value_match, f_value,
		    "A header or query parameter match (HTTPQueryParamMatch has the same shape)."),
	.post = value_post,
};
static const struct cfg_type t_value_list = ARRAY_OF(t_value);

#define RM struct config_route_match
static const struct cfg_field f_match[] = {
	FIELD("path", t_path, 0, "{}", RM, path, "Default: PathPrefix `/`."),
	LIST("headers", t_value_list, CF_OMIT_UNSET, "[]", RM, headers, "All must match."),
	LIST("queryParams", t_value_list, CF_OMIT_UNSET, "[]", RM, query_params,
	     "All must match (the first value of a repeated parameter counts)."),
	FIELD("method", t_method, CF_OMIT_UNSET, NULL, RM, method, "Absent: any method."),
};
#undef RM
static const struct cfg_type t_match = {
	OBJECT_TYPE("HTTPRouteMatch", struct config_route_match, f_match,
		    "Every given condition must hold."),
};
static const struct cfg_type t_match_list = ARRAY_OF(t_match);

static const struct cfg_field f_header[] = {
	FIELD("name", t_header_name, CF_REQUIRED, NULL, struct config_http_header, name, ""),
	FIELD("value", t_header_value, CF_REQUIRED, NULL, struct config_http_header, value, ""),
};
static const struct cfg_type t_header = {
	OBJECT_TYPE("HTTPHeader", struct config_http_header, f_header, "A header to set or add."),
};
static const struct cfg_type t_header_list = ARRAY_OF(t_header);

#define HF struct config_header_filter
static const struct cfg_field f_header_filter[] = {
	LIST("set", t_header_list, CF_OMIT_UNSET, "[]", HF, set, "Replace (or add)."),
	LIST("add", t_header_list, CF_OMIT_UNSET, "[]", HF, add, "Append."),
	LIST("remove", t_header_name_list, CF_OMIT_UNSET, "[]", HF, remove, "Delete."),
};
#undef HF
static const struct cfg_type t_header_filter = {
	OBJECT_TYPE("HTTPHeaderFilter", struct config_header_filter, f_header_filter,
		    "Header edits, applied remove, then set, then add."),
	.has_present = true,
	.present_off = offsetof(struct config_header_filter, present),
};

#define PM struct config_path_modifier
static const struct cfg_field f_modifier[] = {
	FIELD("type", t_modifier, CF_REQUIRED, NULL, PM, type, ""),
	FIELD("replaceFullPath", t_string, CF_OMIT_UNSET, NULL, PM, replace_full_path,
	      "With ReplaceFullPath."),
	FIELD("replacePrefixMatch", t_string, CF_OMIT_UNSET, NULL, PM, replace_prefix_match,
	      "With ReplacePrefixMatch (the rule needs exactly one PathPrefix match)."),
};
#undef PM
static const struct cfg_type t_modifier_obj = {
	OBJECT_TYPE("HTTPPathModifier", struct config_path_modifier, f_modifier, "Path rewrite."),
	.has_present = true,
	.present_off = offsetof(struct config_path_modifier, present),
	.post = modifier_post,
};

#define RD struct config_redirect
static const struct cfg_field f_redirect[] = {
	FIELD("scheme", t_scheme, CF_OMIT_UNSET, NULL, RD, scheme, ""),
	FIELD("hostname", t_string, CF_OMIT_UNSET, NULL, RD, hostname, ""),
	FIELD("path", t_modifier_obj, CF_OMIT_UNSET, NULL, RD, path, ""),
	FIELD("port", t_port0, CF_OMIT_UNSET, NULL, RD, port, ""),
	FIELD("statusCode", t_status, 0, "302", RD, status_code, "301, 302, 303, 307 or 308."),
};
#undef RD
static const struct cfg_type t_redirect = {
	OBJECT_TYPE("HTTPRequestRedirectFilter", struct config_redirect, f_redirect,
		    "Answer with a redirect instead of forwarding."),
	.has_present = true,
	.present_off = offsetof(struct config_redirect, present),
	.post = redirect_post,
};

static const struct cfg_field f_rewrite[] = {
	FIELD("hostname", t_string, CF_OMIT_UNSET, NULL, struct config_url_rewrite, hostname, ""),
	FIELD("path", t_modifier_obj, CF_OMIT_UNSET, NULL, struct config_url_rewrite, path, ""),
};
static const struct cfg_type t_rewrite = {
	OBJECT_TYPE("HTTPURLRewriteFilter", struct config_url_rewrite, f_rewrite,
		    "Rewrite host and path before forwarding."),
	.has_present = true,
	.present_off = offsetof(struct config_url_rewrite, present),
};

#define BR struct config_backend_ref
static const struct cfg_field f_object_ref[] = {
	FIELD("group", t_string, CF_OMIT_UNSET, "", BR, group, ""),
	FIELD("kind", t_string, 0, "Service", BR, kind, "Only `Service`."),
	FIELD("name", t_nonempty, CF_REQUIRED, NULL, BR, name, "Service name."),
	FIELD("namespace", t_string, CF_OMIT_UNSET, "", BR, namespace,
	      "Default: the route's namespace."),
	FIELD("port", t_port0, CF_REQUIRED, NULL, BR, port, "Service port."),
};
#undef BR
static const struct cfg_type t_object_ref = {
	OBJECT_TYPE("BackendObjectReference", struct config_backend_ref, f_object_ref,
		    "A backend service without a weight."),
};

#define FR struct config_fraction
static const struct cfg_field f_fraction[] = {
	FIELD("numerator", t_u32, CF_REQUIRED, NULL, FR, numerator, "At most `denominator`."),
	FIELD("denominator", t_denominator, 0, "100", FR, denominator, ""),
};
#undef FR
static const struct cfg_type t_fraction = {
	OBJECT_TYPE("Fraction", struct config_fraction, f_fraction, "numerator / denominator."),
	.has_present = true,
	.present_off = offsetof(struct config_fraction, present),
};

#define MR struct config_mirror
static const struct cfg_field f_mirror[] = {
	FIELD("backendRef", t_object_ref, CF_REQUIRED, NULL, MR, backend_ref,
	      "Where the copies go (an endpoint picked as for any backend)."),
	FIELD("percent", t_percent, 0, "100", MR, percent,
	      "Share of the requests mirrored (not with `fraction`)."),
	FIELD("fraction", t_fraction, CF_OMIT_UNSET, NULL, MR, fraction,
	      "Share of the requests mirrored, as a fraction."),
};
#undef MR
static const struct cfg_type t_mirror = {
	OBJECT_TYPE("HTTPRequestMirrorFilter", struct config_mirror, f_mirror,
		    "Fire and forget: a copy of the request (`Host` suffixed `-shadow`, as Envoy "
		    "does) goes to the backend once the request is complete, its response is "
		    "discarded and never delays the main response. Requests whose body is over "
		    "64 KiB are not mirrored."),
	.has_present = true,
	.present_off = offsetof(struct config_mirror, present),
	.post = mirror_post,
};

#define RF struct config_route_filter
static const struct cfg_field f_filter[] = {
	FIELD("type", t_filter_type, CF_REQUIRED, NULL, RF, type,
	      "`CORS` and `ExtensionRef` are not supported yet."),
	FIELD("requestHeaderModifier", t_header_filter, CF_OMIT_UNSET, NULL, RF,
	      request_header_modifier, ""),
	FIELD("responseHeaderModifier", t_header_filter, CF_OMIT_UNSET, NULL, RF,
	      response_header_modifier, ""),
	FIELD("requestRedirect", t_redirect, CF_OMIT_UNSET, NULL, RF, request_redirect, ""),
	FIELD("urlRewrite", t_rewrite, CF_OMIT_UNSET, NULL, RF, url_rewrite, ""),
	FIELD("requestMirror", t_mirror, CF_OMIT_UNSET, NULL, RF, request_mirror, ""),
};
#undef RF
static const struct cfg_type t_filter = {
	OBJECT_TYPE("HTTPRouteFilter", struct config_route_filter, f_filter,
		    "The member named by `type` must be given."),
	.post = filter_post,
};
static const struct cfg_type t_filter_list = ARRAY_OF(t_filter);

#define BR struct config_backend_ref
static const struct cfg_field f_backend[] = {
	FIELD("group", t_string, CF_OMIT_UNSET, "", BR, group, ""),
	FIELD("kind", t_string, 0, "Service", BR, kind, "Only `Service`."),
	FIELD("name", t_nonempty, CF_REQUIRED, NULL, BR, name, "Service name."),
	FIELD("namespace", t_string, CF_OMIT_UNSET, "", BR, namespace,
	      "Default: the route's namespace."),
	FIELD("port", t_port0, CF_REQUIRED, NULL, BR, port, "Service port."),
	FIELD("weight", t_weight, 0, "1", BR, weight,
	      "Share of traffic: weight / sum of weights; 0 = none."),
	UNSUPPORTED("filters", "backendRef filters are not supported yet"),
};
#undef BR
static const struct cfg_type t_backend = {
	OBJECT_TYPE("HTTPBackendRef", struct config_backend_ref, f_backend, "A backend service."),
};
static const struct cfg_type t_backend_list = ARRAY_OF(t_backend);

#define TO struct config_route_timeouts
static const struct cfg_field f_timeouts[] = {
	FIELD("request", t_duration, CF_OMIT_UNSET, "", TO, request,
	      "Whole request; `0s` disables. 504 when it expires."),
	FIELD("backendRequest", t_duration, CF_OMIT_UNSET, "", TO, backend_request,
	      "One upstream attempt; at most `request`."),
};
#undef TO
static const struct cfg_type t_timeouts = {
	OBJECT_TYPE("HTTPRouteTimeouts", struct config_route_timeouts, f_timeouts,
		    "Gateway API durations (GEP-2257): `^([0-9]{1,5}(h|m|s|ms)){1,4}$`."),
	.post = timeouts_post,
};

#define RY struct config_route_retry
static const struct cfg_field f_retry[] = {
	FIELD("attempts", t_attempts, 0, "2", RY, attempts,
	      "Retries after the first try (Istio's default 2); 0 disables."),
	FIELD("backoff", t_duration, CF_OMIT_UNSET, "", RY, backoff,
	      "Minimum wait before a retry (default 25ms), doubled per retry up to 10x, plus "
	      "jitter."),
	LIST("codes", t_code_list, CF_OMIT_UNSET, "[]", RY, codes,
	     "Response statuses (400..599) that are retried."),
};
#undef RY
static const struct cfg_type t_retry = {
	OBJECT_TYPE("HTTPRouteRetry", struct config_route_retry, f_retry,
		    "Gateway API v1.2 (GEP-1731). A failed connection or a refused HBONE CONNECT "
		    "(the request never reached the backend) is always retried; a response with "
		    "one of `codes`, or an upstream reset before the response, only for an "
		    "idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE). Retries go to "
		    "another endpoint when there is one, stay within `timeouts.request`, and need "
		    "the request (head and body) to fit in 64 KiB."),
	.has_present = true,
	.present_off = offsetof(struct config_route_retry, present),
	.post = retry_post,
};

#define RR struct config_route_rule
static const struct cfg_field f_rule[] = {
	FIELD("name", t_string, CF_OMIT_UNSET, "", RR, name, ""),
	LIST("matches", t_match_list, CF_OMIT_UNSET, "[]", RR, matches,
	     "Any may match; none given = PathPrefix `/`."),
	LIST("filters", t_filter_list, CF_OMIT_UNSET, "[]", RR, filters, "In order."),
	LIST("backendRefs", t_backend_list, CF_OMIT_UNSET, "[]", RR, backend_refs,
	     "Weighted backends; none (and no redirect): 500."),
	FIELD("timeouts", t_timeouts, CF_OMIT_UNSET, "{}", RR, timeouts, ""),
	FIELD("retry", t_retry, CF_OMIT_UNSET, NULL, RR, retry, ""),
	UNSUPPORTED("sessionPersistence", "sessionPersistence is not supported"),
};
#undef RR
static const struct cfg_type t_rule = {
	OBJECT_TYPE("HTTPRouteRule", struct config_route_rule, f_rule, "One routing rule."),
	.post = rule_post,
};
static const struct cfg_type t_rule_list = ARRAY_OF(t_rule);

#define RS struct config_route_spec
static const struct cfg_field f_route_spec[] = {
	LIST("parentRefs", t_parent_list, CF_REQUIRED, NULL, RS, parent_refs,
	     "Services the route attaches to."),
	LIST("hostnames", t_string_list, CF_OMIT_UNSET, "[]", RS, hostnames,
	     "Ignored for Service parents (GAMMA: use a Host header match)."),
	LIST("rules", t_rule_list, 0, "[]", RS, rules, "Rules."),
};
#undef RS
static const struct cfg_type t_route_spec = {
	OBJECT_TYPE("HTTPRouteSpec", struct config_route_spec, f_route_spec, "Route spec."),
};

#define RT struct config_route
static const struct cfg_field f_route[] = {
	IGNORED("apiVersion"),
	IGNORED("kind"),
	FIELD("metadata", t_meta, CF_REQUIRED, NULL, RT, metadata, ""),
	FIELD("spec", t_route_spec, CF_REQUIRED, NULL, RT, spec, ""),
	IGNORED("status"),
};
#undef RT
const struct cfg_type cfg_route_type = {
	OBJECT_TYPE("HTTPRoute", struct config_route, f_route,
		    "A Gateway API v1 HTTPRoute as `kubectl get httproute -o json` prints it "
		    "(one element of `routes`)."),
	.post = route_post,
};

/* ---- AuthorizationPolicy --------------------------------------------------------------------- */

#define TR struct config_target_ref
static const struct cfg_field f_target[] = {
	FIELD("group", t_string, CF_OMIT_UNSET, "", TR, group, ""),
	FIELD("kind", t_target_kind, CF_REQUIRED, NULL, TR, kind,
	      "`Service` (its traffic through a waypoint) or `Gateway` (the waypoint: a "
	      "waypoint workload's `name`)."),
	FIELD("name", t_nonempty, CF_REQUIRED, NULL, TR, name, ""),
	FIELD("namespace", t_string, CF_OMIT_UNSET, "", TR, namespace,
	      "Default: the policy's namespace."),
};
#undef TR
static const struct cfg_type t_target = {
	OBJECT_TYPE("PolicyTargetReference", struct config_target_ref, f_target,
		    "What a waypoint policy applies to."),
};
static const struct cfg_type t_target_list = ARRAY_OF(t_target);

#define SO struct config_l7_source
static const struct cfg_field f_source[] = {
	LIST("principals", t_string_list, CF_OMIT_UNSET, "[]", SO, principals,
	     "Client identity without `spiffe://`."),
	LIST("notPrincipals", t_string_list, CF_OMIT_UNSET, "[]", SO, not_principals, ""),
	LIST("namespaces", t_string_list, CF_OMIT_UNSET, "[]", SO, namespaces, ""),
	LIST("notNamespaces", t_string_list, CF_OMIT_UNSET, "[]", SO, not_namespaces, ""),
	LIST("ipBlocks", t_cidr_list, CF_OMIT_UNSET, "[]", SO, ip_blocks, "Source IP."),
	LIST("notIpBlocks", t_cidr_list, CF_OMIT_UNSET, "[]", SO, not_ip_blocks, ""),
	UNSUPPORTED("requestPrincipals", "requestPrincipals need RequestAuthentication (JWT), "
					 "not supported yet"),
	UNSUPPORTED("notRequestPrincipals", "notRequestPrincipals need RequestAuthentication "
					    "(JWT), not supported yet"),
	UNSUPPORTED("remoteIpBlocks", "remoteIpBlocks are not supported yet"),
	UNSUPPORTED("notRemoteIpBlocks", "notRemoteIpBlocks are not supported yet"),
	UNSUPPORTED("serviceAccounts", "serviceAccounts are not supported yet (use principals)"),
	UNSUPPORTED("notServiceAccounts", "notServiceAccounts are not supported yet"),
};
#undef SO
static const struct cfg_type t_source = {
	OBJECT_TYPE("Source", struct config_l7_source, f_source,
		    "Fields are ANDed, values within a field ORed; Istio string matching "
		    "(`abc`, `abc*`, `*abc`, `*`)."),
};
static const struct cfg_field f_from[] = {
	FIELD("source", t_source, CF_REQUIRED, NULL, struct config_l7_from, source, ""),
};
static const struct cfg_type t_from = {
	OBJECT_TYPE("From", struct config_l7_from, f_from, ""),
};
static const struct cfg_type t_from_list = ARRAY_OF(t_from);

#define OP struct config_l7_operation
static const struct cfg_field f_operation[] = {
	LIST("hosts", t_string_list, CF_OMIT_UNSET, "[]", OP, hosts,
	     "Host / :authority, case-insensitive."),
	LIST("notHosts", t_string_list, CF_OMIT_UNSET, "[]", OP, not_hosts, ""),
	LIST("ports", t_port_string_list, CF_OMIT_UNSET, "[]", OP, ports,
	     "Destination (service) port as a string."),
	LIST("notPorts", t_port_string_list, CF_OMIT_UNSET, "[]", OP, not_ports, ""),
	LIST("methods", t_string_list, CF_OMIT_UNSET, "[]", OP, methods, ""),
	LIST("notMethods", t_string_list, CF_OMIT_UNSET, "[]", OP, not_methods, ""),
	LIST("paths", t_string_list, CF_OMIT_UNSET, "[]", OP, paths,
	     "Normalized path; also `{*}` (one segment) and `{**}` (the rest) templates."),
	LIST("notPaths", t_string_list, CF_OMIT_UNSET, "[]", OP, not_paths, ""),
};
#undef OP
static const struct cfg_type t_operation = {
	OBJECT_TYPE("Operation", struct config_l7_operation, f_operation,
		    "Fields are ANDed, values within a field ORed."),
	.post = operation_post,
};
static const struct cfg_field f_to[] = {
	FIELD("operation", t_operation, CF_REQUIRED, NULL, struct config_l7_to, operation, ""),
};
static const struct cfg_type t_to = {
	OBJECT_TYPE("To", struct config_l7_to, f_to, ""),
};
static const struct cfg_type t_to_list = ARRAY_OF(t_to);

#define CO struct config_l7_condition
static const struct cfg_field f_condition[] = {
	FIELD("key", t_nonempty, CF_REQUIRED, NULL, CO, key,
	      "`request.headers[<name>]`, `source.ip`, `source.namespace`, `source.principal`, "
	      "`destination.port`."),
	LIST("values", t_string_list, CF_OMIT_UNSET, "[]", CO, values, ""),
	LIST("notValues", t_string_list, CF_OMIT_UNSET, "[]", CO, not_values, ""),
};
#undef CO
static const struct cfg_type t_condition = {
	OBJECT_TYPE("Condition", struct config_l7_condition, f_condition,
		    "At least one of `values` / `notValues`."),
	.post = condition_post,
};
static const struct cfg_type t_condition_list = ARRAY_OF(t_condition);

#define LR struct config_l7_rule
static const struct cfg_field f_l7_rule[] = {
	LIST("from", t_from_list, CF_OMIT_UNSET, "[]", LR, from, "Any may match; none = any."),
	LIST("to", t_to_list, CF_OMIT_UNSET, "[]", LR, to, "Any may match; none = any."),
	LIST("when", t_condition_list, CF_OMIT_UNSET, "[]", LR, when, "All must match."),
};
#undef LR
static const struct cfg_type t_l7_rule = {
	OBJECT_TYPE("Rule", struct config_l7_rule, f_l7_rule, "`{}` matches everything."),
};
static const struct cfg_type t_l7_rule_list = ARRAY_OF(t_l7_rule);

#define LS struct config_l7_spec
static const struct cfg_field f_l7_spec[] = {
	LIST("targetRefs", t_target_list, CF_REQUIRED, NULL, LS, target_refs,
	     "Waypoints honour only targetRefs policies; a `Service` target needs a `waypoint`, "
	     "a `Gateway` target must be a waypoint workload."),
	FIELD("action", t_l7_action, 0, "ALLOW", LS, action,
	      "DENY match -> 403; if ALLOW policies apply one must match; AUDIT only logs."),
	LIST("rules", t_l7_rule_list, 0, "[]", LS, rules,
	     "Any may match; none: never matches (an ALLOW policy without rules denies all)."),
	UNSUPPORTED("selector", "waypoints ignore selector policies; use targetRefs"),
	UNSUPPORTED("targetRef", "use targetRefs"),
	UNSUPPORTED("provider", "CUSTOM actions are not supported"),
};
#undef LS
static const struct cfg_type t_l7_spec = {
	OBJECT_TYPE("AuthorizationPolicySpec", struct config_l7_spec, f_l7_spec, ""),
};

#define LP struct config_l7_policy
static const struct cfg_field f_l7_policy[] = {
	IGNORED("apiVersion"),
	IGNORED("kind"),
	FIELD("metadata", t_meta, CF_REQUIRED, NULL, LP, metadata, ""),
	FIELD("spec", t_l7_spec, CF_REQUIRED, NULL, LP, spec, ""),
	IGNORED("status"),
};
#undef LP
const struct cfg_type cfg_l7_policy_type = {
	OBJECT_TYPE("AuthorizationPolicy", struct config_l7_policy, f_l7_policy,
		    "An Istio security.istio.io/v1 AuthorizationPolicy (one element of "
		    "`l7Policies`)."),
	.post = l7_policy_post,
};

const struct cfg_type *const cfg_l7_doc_types[] = {
	&cfg_route_type,  &t_meta,	   &t_route_spec,
	&t_parent,	  &t_rule,	   &t_match,
	&t_path,	  &t_value,	   &t_filter,
	&t_header_filter, &t_header,	   &t_redirect,
	&t_rewrite,	  &t_modifier_obj, &t_backend,
	&t_timeouts,	  &t_retry,	   &t_mirror,
	&t_object_ref,	  &t_fraction,	   &cfg_l7_policy_type,
	&t_l7_spec,	  &t_target,	   &t_l7_rule,
	&t_from,	  &t_source,	   &t_to,
	&t_operation,	  &t_condition,
};
const size_t cfg_l7_doc_ntypes = ARRAY_LEN(cfg_l7_doc_types);

/* ---- object hooks ---------------------------------------------------------------------------- */

static void error_at_key(struct cfg_ctx *ctx, const char *key, const char *msg)
{
	size_t mark = json_path_push_key(&ctx->path, key);
	cfg_error(ctx, "%s", msg);
	json_path_pop(&ctx->path, mark);
}

static void parent_post(struct cfg_ctx *ctx, void *obj)
{
	const struct config_parent_ref *p = obj;

	if (p->kind == CONFIG_PARENT_GATEWAY)
		error_at_key(ctx, "kind",
			     "parentRefs of kind Gateway are not supported yet; attach the route "
			     "to a Service");
}

static void path_post(struct cfg_ctx *ctx, void *obj)
{
	const struct config_path_match *m = obj;

	if (!m->value)
		return;
	if (m->type == CONFIG_PATH_REGEX) {
		check_regex(ctx, "value", m->value);
		return;
	}
	if (m->value[0] != '/')
		error_at_key(ctx, "value", "path must start with '/'");
	else if (strstr(m->value, "//"))
		error_at_key(ctx, "value", "path must not contain \"//\"");
}

static void value_post(struct cfg_ctx *ctx, void *obj)
{
	const struct config_value_match *m = obj;

	if (m->type == CONFIG_VALUE_REGEX)
		check_regex(ctx, "value", m->value);
}

static void modifier_post(struct cfg_ctx *ctx, void *obj)
{
	const struct config_path_modifier *m = obj;

	if (m->type == CONFIG_PATH_REPLACE_FULL && !m->replace_full_path)
		cfg_error(ctx, "ReplaceFullPath needs \"replaceFullPath\"");
	if (m->type == CONFIG_PATH_REPLACE_PREFIX && !m->replace_prefix_match)
		cfg_error(ctx, "ReplacePrefixMatch needs \"replacePrefixMatch\"");
}

static void redirect_post(struct cfg_ctx *ctx, void *obj)
{
	const struct config_redirect *r = obj;
	uint16_t c = r->status_code;

	if (c != 301 && c != 302 && c != 303 && c != 307 && c != 308)
		error_at_key(ctx, "statusCode",
			     "redirect status must be 301, 302, 303, 307 or 308");
}

static void filter_post(struct cfg_ctx *ctx, void *obj)
{
	const struct config_route_filter *f = obj;
	static const char *const member[] = {"requestHeaderModifier", "responseHeaderModifier",
					     "requestRedirect", "urlRewrite", "requestMirror"};
	bool have[] = {f->request_header_modifier.present, f->response_header_modifier.present,
		       f->request_redirect.present, f->url_rewrite.present,
		       f->request_mirror.present};

	for (size_t i = 0; i < ARRAY_LEN(have); i++) {
		if (i == (size_t)f->type && !have[i])
			cfg_error(ctx, "filter type %s needs \"%s\"", v_filter[i], member[i]);
		else if (i != (size_t)f->type && have[i])
			cfg_error(ctx, "\"%s\" does not go with filter type %s", member[i],
				  v_filter[f->type]);
	}
}

static void timeouts_post(struct cfg_ctx *ctx, void *obj)
{
	struct config_route_timeouts *t = obj;

	if (t->request && *t->request)
		(void)config_duration_parse(t->request, &t->request_ms);
	if (t->backend_request && *t->backend_request)
		(void)config_duration_parse(t->backend_request, &t->backend_request_ms);
	if (t->request_ms && t->backend_request_ms > t->request_ms)
		error_at_key(ctx, "backendRequest", "backendRequest must not exceed request");
}

static void retry_post(struct cfg_ctx *ctx, void *obj)
{
	struct config_route_retry *r = obj;

	(void)ctx;
	r->backoff_ms = 25;
	if (r->backoff && *r->backoff)
		(void)config_duration_parse(r->backoff, &r->backoff_ms);
}

static void mirror_post(struct cfg_ctx *ctx, void *obj)
{
	struct config_mirror *m = obj;

	m->numerator = m->percent;
	m->denominator = 100;
	if (!m->fraction.present)
		return;
	if (m->percent != 100)
		cfg_error(ctx, "give \"percent\" or \"fraction\", not both");
	if (m->fraction.numerator > m->fraction.denominator)
		error_at_key(ctx, "fraction", "numerator must not exceed denominator");
	m->numerator = m->fraction.numerator;
	m->denominator = m->fraction.denominator;
}

static void rule_post(struct cfg_ctx *ctx, void *obj)
{
	const struct config_route_rule *r = obj;
	bool redirect = false, rewrite = false, prefix_mod = false;
	size_t n_prefix = 0;
	int seen[4] = {0};

	for (size_t i = 0; i < r->n_filters; i++) {
		const struct config_route_filter *f = &r->filters[i];
		/* RequestMirror may repeat (Gateway API); the others appear at most once. */
		if ((unsigned)f->type < 4 && seen[f->type]++)
			cfg_error(ctx, "filter %s appears more than once in one rule",
				  v_filter[f->type]);
		redirect |= f->type == CONFIG_FILTER_REDIRECT;
		rewrite |= f->type == CONFIG_FILTER_URL_REWRITE;
		if ((f->type == CONFIG_FILTER_URL_REWRITE && f->url_rewrite.path.present &&
		     f->url_rewrite.path.type == CONFIG_PATH_REPLACE_PREFIX) ||
		    (f->type == CONFIG_FILTER_REDIRECT && f->request_redirect.path.present &&
		     f->request_redirect.path.type == CONFIG_PATH_REPLACE_PREFIX))
			prefix_mod = true;
	}
	for (size_t i = 0; i < r->n_matches; i++)
		n_prefix += r->matches[i].path.type == CONFIG_PATH_PREFIX;
	if (redirect && rewrite)
		cfg_error(ctx, "RequestRedirect and URLRewrite cannot be combined");
	if (redirect && r->n_backend_refs)
		cfg_error(ctx, "RequestRedirect cannot be combined with backendRefs");
	if (prefix_mod && !(r->n_matches == 1 && n_prefix == 1))
		cfg_error(ctx, "ReplacePrefixMatch needs exactly one PathPrefix match in the rule");
}

static void set_key(struct cfg_ctx *ctx, const struct config_k8s_meta *m, const char **key)
{
	if (m->name && m->namespace)
		*key = cfg_sprintf(ctx->arena, "%s/%s", m->namespace, m->name);
}

static void route_post(struct cfg_ctx *ctx, void *obj)
{
	struct config_route *r = obj;
	set_key(ctx, &r->metadata, &r->key);
}

static void check_templates(struct cfg_ctx *ctx, const char *key, const char **paths, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *why = template_error(paths[i]);
		size_t m1, m2;
		if (!why)
			continue;
		m1 = json_path_push_key(&ctx->path, key);
		m2 = json_path_push_index(&ctx->path, i);
		cfg_error(ctx, "%s", why);
		json_path_pop(&ctx->path, m2);
		json_path_pop(&ctx->path, m1);
	}
}

static void operation_post(struct cfg_ctx *ctx, void *obj)
{
	const struct config_l7_operation *o = obj;

	check_templates(ctx, "paths", o->paths, o->n_paths);
	check_templates(ctx, "notPaths", o->not_paths, o->n_not_paths);
}

static void condition_post(struct cfg_ctx *ctx, void *obj)
{
	const struct config_l7_condition *c = obj;
	static const char *const keys[] = {"source.ip", "source.namespace", "source.principal",
					   "destination.port"};
	bool ok = false;

	if (!c->key)
		return;
	for (size_t i = 0; i < ARRAY_LEN(keys); i++)
		ok |= strcmp(c->key, keys[i]) == 0;
	if (strncmp(c->key, "request.headers[", 16) == 0 && c->key[16] &&
	    c->key[strlen(c->key) - 1] == ']' && strlen(c->key) > 17)
		ok = true;
	if (!ok)
		error_at_key(ctx, "key",
			     "unsupported condition key (supported: request.headers[<name>], "
			     "source.ip, source.namespace, source.principal, destination.port)");
	if (!c->n_values && !c->n_not_values)
		cfg_error(ctx, "a condition needs \"values\" or \"notValues\"");
}

static void l7_policy_post(struct cfg_ctx *ctx, void *obj)
{
	struct config_l7_policy *p = obj;
	set_key(ctx, &p->metadata, &p->key);
}

/* ---- decoding and linking -------------------------------------------------------------------- */

static void *decode_list(struct cfg_ctx *ctx, const cJSON *arr, const char *name,
			 const struct cfg_type *t, size_t *n_out)
{
	size_t n = 0, i = 0;
	uint8_t *items;
	size_t m1;

	*n_out = 0;
	if (!cJSON_IsArray(arr))
		return NULL;
	for (const cJSON *e = arr->child; e; e = e->next)
		n++;
	items = cfg_alloc_array(ctx->arena, n ? n : 1, t->size);
	m1 = json_path_push_key(&ctx->path, name);
	for (const cJSON *e = arr->child; e; e = e->next, i++) {
		size_t m2;
		if (!cJSON_IsObject(e))
			continue; /* reported by the raw decoder */
		m2 = json_path_push_index(&ctx->path, i);
		cfg_decode_object(ctx, e, t, items + i * t->size);
		json_path_pop(&ctx->path, m2);
	}
	json_path_pop(&ctx->path, m1);
	*n_out = n;
	return items;
}

void cfg_decode_l7(struct cfg_ctx *ctx, struct config *c)
{
	c->route_list = decode_list(ctx, c->routes, "routes", &cfg_route_type, &c->n_route_list);
	for (size_t i = 0; i < c->n_route_list; i++)
		c->route_list[i].index = i;
	c->l7_list =
		decode_list(ctx, c->l7_policies, "l7Policies", &cfg_l7_policy_type, &c->n_l7_list);
	for (size_t i = 0; i < c->n_l7_list; i++)
		c->l7_list[i].index = i;
}

static const char *ns_or(const char *ns, const char *dflt)
{
	return ns && *ns ? ns : dflt;
}

static bool service_has_port(const struct config_service *s, uint16_t port)
{
	for (size_t i = 0; i < s->n_ports; i++)
		if (s->ports[i].service_port == port)
			return true;
	return false;
}

/* Resolves the backendRef of routes[r].spec.rules[k].filters[i] (a RequestMirror). */
static void link_mirror(struct cfg_ctx *ctx, struct config *c, struct config_route *r, size_t k,
			size_t i)
{
	struct config_backend_ref *b = &r->spec.rules[k].filters[i].request_mirror.backend_ref;
	const char *ns = r->metadata.namespace ? r->metadata.namespace : "default";
	struct json_path p;

	if (!b->name)
		return;
	json_path_init(&p);
	json_path_push_key(&p, "routes");
	json_path_push_index(&p, r->index);
	json_path_push_key(&p, "spec");
	json_path_push_key(&p, "rules");
	json_path_push_index(&p, k);
	json_path_push_key(&p, "filters");
	json_path_push_index(&p, i);
	json_path_push_key(&p, "requestMirror");
	json_path_push_key(&p, "backendRef");
	if (b->kind && strcmp(b->kind, "Service") != 0) {
		cfg_error_at(ctx, json_path_str(&p),
			     "backend kind \"%s\" is not supported (only Service)", b->kind);
		return;
	}
	b->service = config_service_by_name(c, ns_or(b->namespace, ns), b->name);
	if (!b->service)
		cfg_error_at(ctx, json_path_str(&p), "unknown mirror service \"%s/%s\"",
			     ns_or(b->namespace, ns), b->name);
	else if (!service_has_port(b->service, b->port))
		cfg_error_at(ctx, json_path_str(&p), "mirror service \"%s/%s\" has no port %u",
			     ns_or(b->namespace, ns), b->name, b->port);
}

static void link_route(struct cfg_ctx *ctx, struct config *c, struct config_route *r)
{
	struct json_path p;
	const char *ns = r->metadata.namespace ? r->metadata.namespace : "default";
	char buf[64];

	for (size_t i = 0; i < r->spec.n_parent_refs; i++) {
		struct config_parent_ref *pr = &r->spec.parent_refs[i];
		if (pr->kind != CONFIG_PARENT_SERVICE || !pr->name)
			continue;
		pr->service = config_service_by_name(c, ns_or(pr->namespace, ns), pr->name);
		json_path_init(&p);
		json_path_push_key(&p, "routes");
		json_path_push_index(&p, r->index);
		json_path_push_key(&p, "spec");
		json_path_push_key(&p, "parentRefs");
		json_path_push_index(&p, i);
		if (!pr->service) {
			cfg_error_at(ctx, json_path_str(&p), "unknown parent service \"%s/%s\"",
				     ns_or(pr->namespace, ns), pr->name);
		} else if (pr->port && !service_has_port(pr->service, pr->port)) {
			snprintf(buf, sizeof(buf), "%u", pr->port);
			cfg_error_at(ctx, json_path_str(&p),
				     "parent service \"%s/%s\" has no port %s",
				     ns_or(pr->namespace, ns), pr->name, buf);
		}
	}
	for (size_t k = 0; k < r->spec.n_rules; k++) {
		struct config_route_rule *ru = &r->spec.rules[k];
		for (size_t i = 0; i < ru->n_filters; i++)
			if (ru->filters[i].type == CONFIG_FILTER_REQUEST_MIRROR &&
			    ru->filters[i].request_mirror.present)
				link_mirror(ctx, c, r, k, i);
		for (size_t i = 0; i < ru->n_backend_refs; i++) {
			struct config_backend_ref *b = &ru->backend_refs[i];
			if (!b->name)
				continue;
			json_path_init(&p);
			json_path_push_key(&p, "routes");
			json_path_push_index(&p, r->index);
			json_path_push_key(&p, "spec");
			json_path_push_key(&p, "rules");
			json_path_push_index(&p, k);
			json_path_push_key(&p, "backendRefs");
			json_path_push_index(&p, i);
			if (b->kind && strcmp(b->kind, "Service") != 0) {
				cfg_error_at(ctx, json_path_str(&p),
					     "backend kind \"%s\" is not supported (only Service)",
					     b->kind);
				continue;
			}
			b->service = config_service_by_name(c, ns_or(b->namespace, ns), b->name);
			if (!b->service)
				cfg_error_at(ctx, json_path_str(&p),
					     "unknown backend service \"%s/%s\"",
					     ns_or(b->namespace, ns), b->name);
			else if (b->port && !service_has_port(b->service, b->port))
				cfg_error_at(ctx, json_path_str(&p),
					     "backend service \"%s/%s\" has no port %u",
					     ns_or(b->namespace, ns), b->name, b->port);
		}
	}
}

static bool gateway_exists(const struct config *c, const char *ns, const char *name)
{
	for (size_t i = 0; i < c->n_workloads; i++) {
		const struct config_workload *w = &c->workloads[i];
		if (w->namespace && strcmp(w->namespace, ns) == 0 &&
		    ((w->name && strcmp(w->name, name) == 0) ||
		     (w->workload_name && strcmp(w->workload_name, name) == 0)))
			return true;
	}
	return false;
}

static void link_policy(struct cfg_ctx *ctx, struct config *c, const struct config_l7_policy *po)
{
	const char *ns = po->metadata.namespace ? po->metadata.namespace : "default";
	struct json_path p;

	for (size_t i = 0; i < po->spec.n_target_refs; i++) {
		const struct config_target_ref *t = &po->spec.target_refs[i];
		bool ok;
		if (!t->name)
			continue;
		if (t->kind == CONFIG_TARGET_SERVICE)
			ok = config_service_by_name(c, ns_or(t->namespace, ns), t->name) != NULL;
		else
			ok = gateway_exists(c, ns_or(t->namespace, ns), t->name);
		if (ok)
			continue;
		json_path_init(&p);
		json_path_push_key(&p, "l7Policies");
		json_path_push_index(&p, po->index);
		json_path_push_key(&p, "spec");
		json_path_push_key(&p, "targetRefs");
		json_path_push_index(&p, i);
		cfg_error_at(ctx, json_path_str(&p), "unknown target %s \"%s/%s\"",
			     t->kind == CONFIG_TARGET_SERVICE ? "service" : "waypoint (Gateway)",
			     ns_or(t->namespace, ns), t->name);
	}
}

void cfg_link_l7(struct cfg_ctx *ctx, struct config *c)
{
	struct json_path p, q;

	for (size_t i = 0; i < c->n_route_list; i++) {
		link_route(ctx, c, &c->route_list[i]);
		for (size_t j = 0; j < i; j++) {
			if (!c->route_list[i].key || !c->route_list[j].key ||
			    strcmp(c->route_list[i].key, c->route_list[j].key) != 0)
				continue;
			json_path_init(&p);
			json_path_push_key(&p, "routes");
			json_path_push_index(&p, i);
			json_path_init(&q);
			json_path_push_key(&q, "routes");
			json_path_push_index(&q, j);
			cfg_error_at(ctx, json_path_str(&p), "duplicate route \"%s\" (first at %s)",
				     c->route_list[i].key, json_path_str(&q));
			break;
		}
	}
	for (size_t i = 0; i < c->n_l7_list; i++)
		link_policy(ctx, c, &c->l7_list[i]);
}
