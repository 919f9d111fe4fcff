/* Private to pkg/cniconf: typed member access that reports "SOURCE: PATH: reason". */
#ifndef AMBIENT_CNICONF_INT_H
#define AMBIENT_CNICONF_INT_H

#include "pkg/cniconf/cniconf.h"

/* Where a decoder is: the input's name ("netconf", "request", a state file's path) and the JSON
 * path of the value being looked at. */
struct cc {
	const char *src;
	struct json_path path;
	struct errbuf *eb;
};

void cc_init(struct cc *c, const char *src, struct errbuf *eb);
/* errbuf_set(code, "SRC: PATH: fmt..."); returns -code. */
int cc_fail(struct cc *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "expected T, got U" at the current path (or "missing" when v is NULL). */
int cc_type(struct cc *c, const cJSON *v, const char *want);

/* Each reads member `key` of object o, with the path extended by it while checking. An absent
 * member is "" / false / NULL unless required. */
int cc_str(struct cc *c, const cJSON *o, const char *key, bool required, const char **out);
int cc_str_copy(struct cc *c, const cJSON *o, const char *key, bool required, char *out,
		size_t cap);
int cc_bool(struct cc *c, const cJSON *o, const char *key, bool *out);
int cc_ports(struct cc *c, const cJSON *o, const char *key, uint16_t *ports, size_t *n);
/* null or absent -> 0; else an RFC 3339 time string. */
int cc_time(struct cc *c, const cJSON *o, const char *key, int64_t *ms);

/* Parses text with json_parse; on failure "SRC:LINE:COL: invalid JSON: ..." and -E_PARSE/-E_LIMIT.
 * A root that is not an object is -E_PARSE ("SRC: .: expected an object, got array"). */
int cc_parse_object(struct cc *c, const char *text, size_t len, cJSON **root);

#endif
