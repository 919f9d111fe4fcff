/* Loading a mesh-config document into a refcounted snapshot: parse, decode, link, hash, and the
 * snapshot's accessors and /config_dump rendering. */
#include "pkg/config/config_int.h"

#include <bearssl_hash.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void destroy(struct config *c)
{
	if (!c)
		return;
	cJSON_Delete(c->routes);
	cJSON_Delete(c->l7_policies);
	cfg_arena_free(&c->arena);
	free(c->source);
	free(c);
}

static void on_duplicate(const char *path, const char *key, void *arg)
{
	(void)key;
	cfg_error_at(arg, path, "duplicate key");
}

static void compute_etag(const char *text, size_t len, char out[17])
{
	static const char hex[] = "0123456789abcdef";
	br_sha256_context h;
	uint8_t sum[32];

	br_sha256_init(&h);
	br_sha256_update(&h, text, len);
	br_sha256_out(&h, sum);
	for (int i = 0; i < 8; i++) {
		out[2 * i] = hex[sum[i] >> 4];
		out[2 * i + 1] = hex[sum[i] & 15];
	}
	out[16] = '\0';
}

/* Takes ownership of a raw array (routes, l7Policies) out of the parse tree. */
static cJSON *adopt_raw(cJSON *root, cJSON *item)
{
	if (!item)
		return cJSON_CreateArray();
	return cJSON_DetachItemViaPointer(root, item);
}

static void copy_list(struct errlist *to, const struct errlist *from)
{
	if (!to)
		return;
	for (size_t i = 0; i < from->n; i++)
		errlist_add(to, "%s", from->items[i]);
}

static void add_overflow_line(struct errlist *el, const char *source, size_t count)
{
	if (el && count > CONFIG_MAX_ERRORS)
		errlist_add(el, "%s: %zu more not shown", source, count - CONFIG_MAX_ERRORS);
}

struct config *config_parse_ex(const char *source_name, const char *text, size_t len,
			       uint64_t version, const struct config_parse_opts *opts,
			       struct errlist *errs)
{
	struct json_opts jo = {
		.max_bytes = opts && opts->max_bytes ? opts->max_bytes : CONFIG_MAX_BYTES,
		.max_depth = CONFIG_MAX_DEPTH,
		.allow_duplicate_keys = true, /* reported below, all of them, with paths */
	};
	struct errlist warns = {0};
	struct json_error je;
	struct cfg_ctx ctx;
	struct config *c;
	cJSON *root = NULL;
	const char *source = source_name ? source_name : "<config>";

	if (json_parse(text, len, &jo, &root, &je) < 0) {
		char line[768];
		json_error_format(&je, source, line, sizeof(line));
		if (errs)
			errlist_add(errs, "%s", line);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->source = xstrdup(source);
	c->version = version;
	memset(&ctx, 0, sizeof(ctx));
	ctx.source = c->source;
	ctx.arena = &c->arena;
	ctx.errs = errs;
	ctx.warns = &warns;
	json_path_init(&ctx.path);

	json_duplicates_each(root, on_duplicate, &ctx);
	if (!cJSON_IsObject(root)) {
		cfg_error(&ctx, "expected an object, got %s", json_type_name(root));
	} else {
		ctx.services_given = cJSON_GetObjectItemCaseSensitive(root, "services") != NULL;
		cfg_decode_object(&ctx, root, &cfg_mesh_type, c);
	}
	/* The raw arrays were stored as pointers into the tree; keep them, drop the rest. */
	c->routes = adopt_raw(root, c->routes);
	c->l7_policies = adopt_raw(root, c->l7_policies);
	cJSON_Delete(root);
	cfg_decode_l7(&ctx, c);
	/* Cross-field checks run even after schema errors, so one pass reports everything. */
	cfg_link(&ctx, c);

	add_overflow_line(errs, c->source, ctx.nerr);
	if (opts && opts->warnings) {
		copy_list(opts->warnings, &warns);
		add_overflow_line(opts->warnings, c->source, ctx.nwarn);
	}
	if (ctx.nerr) {
		errlist_fini(&warns);
		destroy(c);
		return NULL;
	}
	add_overflow_line(&warns, c->source, ctx.nwarn);
	c->warnings = cfg_alloc_array(&c->arena, warns.n, sizeof(char *));
	for (size_t i = 0; i < warns.n; i++)
		c->warnings[i] = cfg_strdup(&c->arena, warns.items[i]);
	c->n_warnings = warns.n;
	errlist_fini(&warns);
	compute_etag(text ? text : "", text ? len : 0, c->etag);
	atomic_init(&c->refs, 1);
	return c;
}

struct config *config_parse(const char *source_name, const char *text, size_t len, uint64_t version,
			    struct errlist *errs)
{
	return config_parse_ex(source_name, text, len, version, NULL, errs);
}

struct config *config_ref(struct config *c)
{
	if (c)
		atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
	return c;
}

void config_unref(struct config *c)
{
	/* acq_rel: every reader's accesses happen before the last one frees. */
	if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		destroy(c);
}

uint64_t config_version(const struct config *c)
{
	return c->version;
}

const char *config_etag(const struct config *c)
{
	return c->etag;
}

const char *config_source(const struct config *c)
{
	return c->source;
}

const char *const *config_warnings(const struct config *c, size_t *n)
{
	*n = c->n_warnings;
	return c->warnings;
}

const struct config_workload *config_workloads(const struct config *c, size_t *n)
{
	*n = c->n_workloads;
	return c->workloads;
}

const struct config_service *config_services(const struct config *c, size_t *n)
{
	*n = c->n_services;
	return c->services;
}

const struct config_policy *config_policies(const struct config *c, size_t *n)
{
	*n = c->n_policies;
	return c->policies;
}

const cJSON *config_routes(const struct config *c)
{
	return c->routes;
}

const cJSON *config_l7_policies(const struct config *c)
{
	return c->l7_policies;
}

/* ---- dump ------------------------------------------------------------------------------------ */

void config_dump_mesh_write(const struct config *c, struct json_writer *w)
{
	cfg_encode_object(w, &cfg_mesh_type, c);
}

void config_dump_write(const struct config *c, struct json_writer *w)
{
	json_write_object_begin(w);
	json_write_key(w, "source");
	json_write_string(w, c->source);
	json_write_key(w, "version");
	json_write_uint(w, c->version);
	json_write_key(w, "etag");
	json_write_string(w, c->etag);
	json_write_key(w, "warnings");
	json_write_array_begin(w);
	for (size_t i = 0; i < c->n_warnings; i++)
		json_write_string(w, c->warnings[i]);
	json_write_array_end(w);
	json_write_key(w, "mesh");
	config_dump_mesh_write(c, w);
	json_write_object_end(w);
}

int config_dump_json(const struct config *c, struct buf *out)
{
	struct json_writer w;
	int rc;

	json_writer_init(&w, out, 2);
	config_dump_write(c, &w);
	rc = json_writer_finish(&w);
	if (rc == 0)
		rc = buf_append(out, "\n", 1);
	return rc < 0 ? rc : 0;
}

const struct config_route *config_route_list(const struct config *c, size_t *n)
{
	*n = c->n_route_list;
	return c->route_list;
}

const struct config_l7_policy *config_l7_policy_list(const struct config *c, size_t *n)
{
	*n = c->n_l7_list;
	return c->l7_list;
}

const struct config_service *config_service_by_name(const struct config *c, const char *ns,
						    const char *name)
{
	for (size_t i = 0; i < c->n_services; i++) {
		const struct config_service *s = &c->services[i];
		if (s->name && s->namespace && strcmp(s->name, name) == 0 &&
		    strcmp(s->namespace, ns) == 0)
			return s;
	}
	return NULL;
}
