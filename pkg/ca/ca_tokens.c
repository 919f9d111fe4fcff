/* Node bearer-token store: generation, hashing, atomic file updates, constant-time lookup. */
#include "pkg/ca/ca_tokens.h"

#include "pkg/ca/ca.h"
#include "pkg/json/json.h"

#include <bearssl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define TOKENS_MAX_BYTES (4u << 20)

bool ca_node_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
	br_sha256_context h;

	br_sha256_init(&h);
	br_sha256_update(&h, p, n);
	br_sha256_out(&h, out);
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -E_PARSE;
	for (size_t i = 0; i < 2 * n; i++) {
		char c = s[i];
		int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (v < 0)
			return -E_PARSE;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	return 0;
}

void ca_tokens_fini(struct ca_tokens *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->e[i].id);
		free(t->e[i].node);
		free(t->e[i].created);
	}
	free(t->e);
	memset(t, 0, sizeof(*t));
}

static int entry_decode(const cJSON *o, size_t i, const char *path, struct ca_token_entry *e,
			struct errbuf *eb)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
	const cJSON *node = cJSON_GetObjectItemCaseSensitive(o, "node");
	const cJSON *hash = cJSON_GetObjectItemCaseSensitive(o, "sha256");
	const cJSON *created = cJSON_GetObjectItemCaseSensitive(o, "created");

	if (!cJSON_IsObject(o) || !cJSON_IsString(id) || !cJSON_IsString(node) ||
	    !cJSON_IsString(hash))
		return errbuf_set(eb, E_PARSE, "%s: .tokens[%zu]: want {id, node, sha256, created}",
				  path, i);
	if (unhex(hash->valuestring, e->sha256, 32) < 0)
		return errbuf_set(eb, E_PARSE, "%s: .tokens[%zu].sha256: want 64 lower-case hex",
				  path, i);
	if (!ca_node_name_valid(node->valuestring))
		return errbuf_set(eb, E_PARSE, "%s: .tokens[%zu].node: invalid node name", path, i);
	e->id = xstrdup(id->valuestring);
	e->node = xstrdup(node->valuestring);
	e->created = xstrdup(cJSON_IsString(created) ? created->valuestring : "");
	return 0;
}

int ca_tokens_load(const char *path, struct ca_tokens *t, struct errbuf *eb)
{
	struct ca_tokens nt = {0};
	struct json_error jerr;
	size_t len = 0;
	cJSON *root = NULL;
	const cJSON *arr;
	char *data;
	int rc = 0;

	if (stat(path, &nt.st) != 0 && errno == ENOENT) {
		ca_tokens_fini(t);
		return 0;
	}
	data = ca_read_file(path, TOKENS_MAX_BYTES, &len, eb);
	if (!data)
		return -E_IO;
	nt.st_valid = true;
	if (json_parse(data, len, NULL, &root, &jerr) < 0) {
		char msg[256];
		json_error_format(&jerr, path, msg, sizeof(msg));
		rc = errbuf_set(eb, E_PARSE, "%s", msg);
		goto out;
	}
	arr = cJSON_GetObjectItemCaseSensitive(root, "tokens");
	if (!cJSON_IsArray(arr)) {
		rc = errbuf_set(eb, E_PARSE, "%s: .tokens: want an array", path);
		goto out;
	}
	nt.e = xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*nt.e));
	for (const cJSON *o = arr->child; o; o = o->next) {
		rc = entry_decode(o, nt.n, path, &nt.e[nt.n], eb);
		if (rc < 0)
			goto out;
		nt.n++;
	}
	ca_tokens_fini(t);
	*t = nt;
	memset(&nt, 0, sizeof(nt));
out:
	ca_tokens_fini(&nt);
	json_free(root);
	free(data);
	return rc;
}

int ca_tokens_refresh(const char *path, struct ca_tokens *t, struct errbuf *eb)
{
	struct stat st;
	int rc;

	if (stat(path, &st) != 0) {
		if (errno != ENOENT)
			return errbuf_set(eb, E_IO, "%s: %s", path, strerror(errno));
		if (!t->st_valid && t->n == 0)
			return 0;
		ca_tokens_fini(t);
		return 1;
	}
	if (t->st_valid && st.st_ino == t->st.st_ino && st.st_size == t->st.st_size &&
	    st.st_mtim.tv_sec == t->st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == t->st.st_mtim.tv_nsec)
		return 0;
	rc = ca_tokens_load(path, t, eb);
	return rc < 0 ? rc : 1;
}

const struct ca_token_entry *ca_tokens_lookup(const struct ca_tokens *t, const char *token)
{
	uint8_t h[32];
	const struct ca_token_entry *found = NULL;

	if (!token || !*token)
		return NULL;
	sha256(token, strlen(token), h);
	/* Compare against every entry without early exit. */
	for (size_t i = 0; i < t->n; i++) {
		uint8_t diff = 0;
		for (size_t j = 0; j < 32; j++)
			diff |= (uint8_t)(h[j] ^ t->e[i].sha256[j]);
		if (diff == 0 && !found)
			found = &t->e[i];
	}
	secure_wipe(h, sizeof(h));
	return found;
}

/* ---- writing ----------------------------------------------------------------------------------
 */

static int lock_open(const char *path, struct errbuf *eb)
{
	char lp[4096];
	int fd;

	snprintf(lp, sizeof(lp), "%s.lock", path);
	fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return errbuf_set(eb, E_IO, "%s: %s", lp, strerror(errno));
	while (flock(fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			close(fd);
			return errbuf_set(eb, E_IO, "%s: lock: %s", lp, strerror(errno));
		}
	}
	return fd;
}

static int write_table(const char *path, const struct ca_tokens *t, struct errbuf *eb)
{
	struct buf b;
	struct json_writer w;
	char h[65];
	int rc;

	buf_init(&b, 0);
	json_writer_init(&w, &b, 2);
	json_write_object_begin(&w);
	json_write_key(&w, "tokens");
	json_write_array_begin(&w);
	for (size_t i = 0; i < t->n; i++) {
		hex(t->e[i].sha256, 32, h);
		json_write_object_begin(&w);
		json_write_key(&w, "id");
		json_write_string(&w, t->e[i].id);
		json_write_key(&w, "node");
		json_write_string(&w, t->e[i].node);
		json_write_key(&w, "sha256");
		json_write_string(&w, h);
		json_write_key(&w, "created");
		json_write_string(&w, t->e[i].created);
		json_write_object_end(&w);
	}
	json_write_array_end(&w);
	json_write_object_end(&w);
	json_writer_finish(&w);
	buf_append(&b, "\n", 1);
	rc = ca_write_file(path, buf_rptr(&b), buf_len(&b), 0600, eb);
	buf_fini(&b);
	return rc;
}

static void b64url(const uint8_t *p, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = a[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = a[v & 63];
	}
	out[o] = '\0';
}

int ca_tokens_add(const char *path, const char *node, char token[CA_TOKEN_LEN],
		  char id[CA_TOKEN_ID_LEN], struct errbuf *eb)
{
	struct ca_tokens t = {0};
	struct ca_token_entry *e;
	uint8_t raw[32];
	char h[65];
	char when[32];
	time_t now = time(NULL);
	struct tm tm;
	int lfd;
	int rc;

	if (!ca_node_name_valid(node))
		return errbuf_set(eb, E_INVAL,
				  "invalid node name '%s' (1..253 characters of A-Z a-z 0-9 . _ -)",
				  node);
	lfd = lock_open(path, eb);
	if (lfd < 0)
		return lfd;
	rc = ca_tokens_load(path, &t, eb);
	if (rc < 0)
		goto out;
	rand_bytes(raw, sizeof(raw));
	memcpy(token, "amb1.", 5);
	b64url(raw, sizeof(raw), token + 5);
	secure_wipe(raw, sizeof(raw));
	t.e = xrealloc(t.e, (t.n + 1) * sizeof(*t.e));
	e = &t.e[t.n++];
	memset(e, 0, sizeof(*e));
	sha256(token, strlen(token), e->sha256);
	hex(e->sha256, 6, h);
	memcpy(id, h, CA_TOKEN_ID_LEN);
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	e->id = xstrdup(id);
	e->node = xstrdup(node);
	e->created = xstrdup(when);
	rc = write_table(path, &t, eb);
	if (rc < 0)
		secure_wipe(token, CA_TOKEN_LEN);
out:
	ca_tokens_fini(&t);
	close(lfd);
	return rc;
}

int ca_tokens_revoke(const char *path, const char *which, size_t *removed, struct errbuf *eb)
{
	struct ca_tokens t = {0};
	size_t keep = 0;
	int lfd;
	int rc;

	*removed = 0;
	lfd = lock_open(path, eb);
	if (lfd < 0)
		return lfd;
	rc = ca_tokens_load(path, &t, eb);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < t.n; i++) {
		if (strcmp(t.e[i].id, which) == 0 || strcmp(t.e[i].node, which) == 0) {
			free(t.e[i].id);
			free(t.e[i].node);
			free(t.e[i].created);
			(*removed)++;
			continue;
		}
		t.e[keep++] = t.e[i];
	}
	t.n = keep;
	if (*removed == 0) {
		rc = errbuf_set(eb, E_NOTFOUND, "no token with id or node '%s'", which);
		goto out;
	}
	rc = write_table(path, &t, eb);
out:
	ca_tokens_fini(&t);
	close(lfd);
	return rc;
}
