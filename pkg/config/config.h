/* The mesh config (DESIGN.md §3): parsed, validated and indexed into an immutable snapshot. */
#ifndef AMBIENT_CONFIG_H
#define AMBIENT_CONFIG_H

#include "pkg/base/base.h"

#include <stdint.h>

/*
 * CONTRACT (used by watch, admin and cmd/; keep these signatures):
 *
 *   struct config *c = config_parse("mesh.json", text, len, version, &errs);
 *   if (!c)  -> every problem is in errs, one line each: "mesh.json: .services[2].ports.\"70000\": port out of range 1..65535"
 *   config_ref(c) / config_unref(c)   refcount is atomic; snapshots are shared across threads.
 *
 * A snapshot is immutable after config_parse returns.
 */
struct config;

struct config *config_parse(const char *source_name, const char *text, size_t len, uint64_t version,
			    struct errlist *errs);
struct config *config_ref(struct config *c);
void config_unref(struct config *c);

/* Monotonic version assigned by the loader, and the content hash (hex sha256, first 16 chars). */
uint64_t config_version(const struct config *c);
const char *config_etag(const struct config *c);
const char *config_source(const struct config *c);

#endif
