/* Private to pkg/config: the schema table types, the decoder context, the arena and hash indexes.
 */
#ifndef AMBIENT_CONFIG_INT_H
#define AMBIENT_CONFIG_INT_H

#include "pkg/config/config.h"

#include <stdatomic.h>

/* ---- arena: every snapshot allocation lives here and dies with the snapshot ------------------ */
struct cfg_chunk;
struct cfg_arena {
	struct cfg_chunk *head;
};
/* Zeroed, aligned for any type; aborts on out-of-memory like xmalloc. */
void *cfg_alloc(struct cfg_arena *a, size_t n);
void *cfg_alloc_array(struct cfg_arena *a, size_t count, size_t size);
char *cfg_strdup(struct cfg_arena *a, const char *s);
char *cfg_strndup(struct cfg_arena *a, const char *s, size_t n);
char *cfg_sprintf(struct cfg_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cfg_arena_free(struct cfg_arena *a);

/* ---- hash index: built once, read-only afterwards; keys are byte strings --------------------- */
struct cfg_slot {
	const void *key;
	size_t klen;
	uint64_t hash;
	void *val;
};
struct cfg_map {
	struct cfg_slot *slots;
	size_t cap; /* power of two, at least twice the number of keys */
	size_t n;
};
/* A value list for multi-valued indexes (by node, by hostname, by namespace). */
struct cfg_list {
	const void **items;
	size_t n;
};

void cfg_map_init(struct cfg_map *m, struct cfg_arena *a, size_t expected);
/* Inserts key -> val unless the key exists; returns the existing value, or NULL if inserted.
 * The key bytes must outlive the map (arena memory). */
void *cfg_map_put(struct cfg_map *m, const void *key, size_t klen, void *val);
void *cfg_map_get(const struct cfg_map *m, const void *key, size_t klen);
/* Appends item to the list under key (two-pass: count with cfg_list_count, then cfg_list_alloc,
 * then cfg_list_add). */
void cfg_list_count(struct cfg_map *m, struct cfg_arena *a, const void *key, size_t klen);
void cfg_list_alloc(struct cfg_map *m, struct cfg_arena *a);
void cfg_list_add(struct cfg_map *m, const void *key, size_t klen, const void *item);
/* "network\0<family><addr>" key for (network, ip) indexes; returns its length. */
size_t cfg_ip_key(char *out, size_t cap, const char *network, const struct config_ip *ip);
#define CFG_IP_KEY_MAX 320 /* for networks up to 300 bytes; longer networks use the heap */

/* ---- schema ----------------------------------------------------------------------------------
 * The mesh config is described by tables of fields (name, type, required, default, doc) whose
 * types carry enum values, ranges and validators. One generic decoder reads JSON into the public
 * structs through the fields' offsets, one generic encoder writes them back out for /config_dump,
 * and the markdown generator prints the same tables as docs/config.md. */
enum cfg_kind {
	CFG_STRING,  /* const char *, optional validator */
	CFG_BOOL,    /* bool */
	CFG_UINT,    /* uint16_t or uint32_t (by size) in [min, max]; map keys as decimal strings */
	CFG_ENUM,    /* C enum (int-sized): index in values[] + base */
	CFG_IP,	     /* struct config_ip */
	CFG_CIDR,    /* struct config_cidr */
	CFG_NETADDR, /* struct config_netaddr */
	CFG_GWDEST,  /* struct config_gateway_dest */
	CFG_EMPTY,   /* only [] accepted; stores "" (StringMatch Presence) */
	CFG_OBJECT,  /* struct with fields */
	CFG_ONEOF,   /* object with exactly one of the fields; the index goes to tag_off */
	CFG_ARRAY,   /* items pointer + count */
	CFG_MAP,     /* object as a map: entries with a key (from the member name) and a value */
	CFG_RAW,     /* array of objects, kept as a cJSON tree (cJSON *) */
};

struct cfg_ctx;
struct cfg_field;

/* A string validator: returns NULL if s is fine, else a message ("must be \"namespace/name\""). */
typedef const char *(*cfg_check_fn)(const char *s, char *tmp, size_t cap);
/* Runs after an object's fields are decoded (derived fields, object-level checks). */
typedef void (*cfg_post_fn)(struct cfg_ctx *ctx, void *obj);

struct cfg_type {
	enum cfg_kind kind;
	const char *name; /* docs and messages: "port", "IP address", "Workload" */
	const char *doc;  /* object types: a paragraph for docs/config.md */
	size_t size;	  /* bytes of one decoded value */
	cfg_check_fn check;
	uint64_t min, max;
	const char *const *values;
	unsigned nvalues, base;
	const struct cfg_field *fields;
	size_t nfields;
	bool has_present;
	size_t present_off;
	size_t tag_off;
	cfg_post_fn post;
	/* CFG_ARRAY/CFG_MAP used as a value (element of another array, value of a map). Fields of
	 * these kinds use the field's off/count_off instead. */
	size_t items_off, count_off;
	const struct cfg_type *elem; /* array element, map value */
	const struct cfg_type *key;  /* map key: CFG_UINT or CFG_STRING */
	size_t entry_size, key_off, val_off;
};

enum {
	CF_REQUIRED = 1 << 0,
	CF_OMIT_UNSET = 1 << 1,	 /* dump skips the field when empty/absent/zero */
	CF_UNSUPPORTED = 1 << 2, /* a ztunnel field we reject with `doc` as the reason */
	CF_IGNORED = 1 << 3,	 /* any value accepted and dropped (Kubernetes bookkeeping) */
};

struct cfg_field {
	const char *name;
	const struct cfg_type *type;
	unsigned flags;
	/* Default applied when absent, as text: "cluster.local", "TCP", "1", "false"; "[]"/"{}" for
	 * empty arrays and maps; "{}" for an object means "its fields' defaults". NULL: none. */
	const char *def;
	size_t off;
	size_t count_off; /* CFG_ARRAY/CFG_MAP fields */
	const char *doc;
};

/* The top level, and the object types in the order docs/config.md lists them. */
extern const struct cfg_type cfg_mesh_type;
extern const struct cfg_type *const cfg_doc_types[];
extern const size_t cfg_doc_ntypes;

/* ---- decoding context ------------------------------------------------------------------------ */
struct cfg_ctx {
	const char *source;
	struct json_path path;
	struct cfg_arena *arena;
	struct errlist *errs;
	size_t nerr;
	struct errlist *warns;
	size_t nwarn;
	bool services_given;
};

void cfg_error(struct cfg_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cfg_error_at(struct cfg_ctx *ctx, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void cfg_warn_at(struct cfg_ctx *ctx, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void cfg_warn(struct cfg_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Decodes v as the fields of `t` into dst (the top level is decoded this way). */
void cfg_decode_object(struct cfg_ctx *ctx, const cJSON *v, const struct cfg_type *t, void *dst);
/* Writes the struct at src as JSON according to `t`. */
void cfg_encode_object(struct json_writer *w, const struct cfg_type *t, const void *src);

/* Closest candidate within a small edit distance (or a case-insensitive match), else NULL. */
const char *cfg_suggest(const char *word, const char *const *candidates, size_t n);

/* Formats "network/IP" into out. */
void cfg_netaddr_format(const struct config_netaddr *na, char *out, size_t cap);
/* Parses "network/IP" (split at the last '/') or a bare IP; network is an arena copy. */
int cfg_netaddr_parse(struct cfg_arena *a, const char *s, struct config_netaddr *out);

/* ---- the snapshot ---------------------------------------------------------------------------- */
struct config {
	atomic_size_t refs;
	char *source;
	uint64_t version;
	char etag[17];
	struct cfg_arena arena;
	/* Decoded straight from the document (offsets used by the schema table). */
	struct config_workload *workloads;
	size_t n_workloads;
	struct config_service *services;
	size_t n_services;
	struct config_policy *policies;
	size_t n_policies;
	cJSON *routes; /* owned, detached from the parse tree */
	cJSON *l7_policies;
	/* The same two decoded (config_l7.c). */
	struct config_route *route_list;
	size_t n_route_list;
	struct config_l7_policy *l7_list;
	size_t n_l7_list;
	/* Derived. */
	const char **warnings;
	size_t n_warnings;
	struct cfg_map by_uid, by_ip, by_node, by_svc_key, by_hostname, by_vip, by_policy_key,
		policies_by_ns;
	struct cfg_list global_policies;
};

/* config_l7.c: decodes the raw routes / l7Policies arrays into the typed lists, and (from
 * cfg_link) resolves and checks their references. */
extern const struct cfg_type cfg_route_type, cfg_l7_policy_type;
extern const struct cfg_type *const cfg_l7_doc_types[];
extern const size_t cfg_l7_doc_ntypes;
void cfg_decode_l7(struct cfg_ctx *ctx, struct config *c);
void cfg_link_l7(struct cfg_ctx *ctx, struct config *c);

/* config_validate.c: derive cross references, build the indexes, run the cross-field checks. */
void cfg_link(struct cfg_ctx *ctx, struct config *c);

/* config_waypoint.c (from cfg_link, last): waypointFor against the services and workloads naming
 * each waypoint, and l7Policies whose target cannot enforce them. */
void cfg_check_waypoints(struct cfg_ctx *ctx, struct config *c);

#endif
