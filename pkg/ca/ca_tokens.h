/* Node bearer tokens of the CA: only SHA-256 hashes are stored, mapped to node names. */
#ifndef AMBIENT_CA_TOKENS_H
#define AMBIENT_CA_TOKENS_H

#include "pkg/base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

/*
 * File format (DIR/tokens.json, mode 0600, replaced atomically under an flock on
 * DIR/tokens.json.lock so concurrent `token add` runs cannot lose each other's entries):
 *
 *   {"tokens": [{"id": "3f9c0a1b2c4d", "node": "node-a",
 *                "sha256": "<64 hex>", "created": "2026-11-26T14:00:00Z"}]}
 *
 * A token is 32 random bytes, base64url without padding (43 characters), prefixed "amb1." so a
 * leaked one is recognisable in logs and scanners. It is printed once by `token add` and never
 * stored; `id` (the first 12 hex digits of its hash) names it in listings and audit lines.
 */

#define CA_TOKEN_LEN 49 /* "amb1." + 43 base64url characters + NUL */
#define CA_TOKEN_ID_LEN 13

struct ca_token_entry {
	char *id;
	char *node;
	char *created;
	uint8_t sha256[32];
};

struct ca_tokens {
	struct ca_token_entry *e;
	size_t n;
	struct stat st; /* of the file when loaded, for ca_tokens_refresh() */
	bool st_valid;
};

/* Loads path; a missing file is an empty table. Errors name the file and the JSON path. */
int ca_tokens_load(const char *path, struct ca_tokens *t, struct errbuf *eb);
void ca_tokens_fini(struct ca_tokens *t);
/* Reloads when the file changed on disk (size, mtime, inode); keeps the old table on error.
 * Returns 1 if reloaded, 0 if unchanged, < 0 on error. */
int ca_tokens_refresh(const char *path, struct ca_tokens *t, struct errbuf *eb);
/* The node a presented token belongs to, or NULL. Constant-time in the token's content. */
const struct ca_token_entry *ca_tokens_lookup(const struct ca_tokens *t, const char *token);

/* Adds a token for node; writes the token (to show once) and its id. */
int ca_tokens_add(const char *path, const char *node, char token[CA_TOKEN_LEN],
		  char id[CA_TOKEN_ID_LEN], struct errbuf *eb);
/* Removes every token whose id or node equals `which`; *removed counts them (0 is an error). */
int ca_tokens_revoke(const char *path, const char *which, size_t *removed, struct errbuf *eb);

/* Node names: 1..253 characters of [A-Za-z0-9._-] (Kubernetes node names fit). */
bool ca_node_name_valid(const char *s);

#endif
