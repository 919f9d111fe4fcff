/* Snapshot memory (an arena) and the read-only hash indexes behind the O(1) lookups. */
#include "pkg/config/config_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- arena ----------------------------------------------------------------------------------- */

#define CHUNK_SIZE ((size_t)64 << 10)
#define ALIGN ((size_t) _Alignof(max_align_t))

struct cfg_chunk {
	struct cfg_chunk *next;
	size_t used, cap;
	max_align_t data[];
};

void *cfg_alloc(struct cfg_arena *a, size_t n)
{
	struct cfg_chunk *c = a->head;
	void *p;

	if (n == 0)
		n = 1;
	if (n > SIZE_MAX - ALIGN)
		die("config: allocation of %zu bytes", n);
	n = (n + ALIGN - 1) & ~(ALIGN - 1);
	if (!c || c->cap - c->used < n) {
		size_t cap = n > CHUNK_SIZE / 4 ? n : CHUNK_SIZE;
		struct cfg_chunk *nc = xmalloc(sizeof(*nc) + cap);
		nc->used = 0;
		nc->cap = cap;
		if (c && cap == n && c->cap - c->used >= ALIGN) {
			/* A big one-off block: keep filling the current chunk afterwards. */
			nc->next = c->next;
			c->next = nc;
		} else {
			nc->next = c;
			a->head = nc;
		}
		c = nc;
	}
	p = (uint8_t *)c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

void *cfg_alloc_array(struct cfg_arena *a, size_t count, size_t size)
{
	if (size && count > SIZE_MAX / size)
		die("config: array of %zu x %zu bytes", count, size);
	return cfg_alloc(a, count * size);
}

char *cfg_strndup(struct cfg_arena *a, const char *s, size_t n)
{
	char *p = cfg_alloc(a, n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *cfg_strdup(struct cfg_arena *a, const char *s)
{
	return cfg_strndup(a, s, strlen(s));
}

char *cfg_sprintf(struct cfg_arena *a, const char *fmt, ...)
{
	va_list ap;
	char *tmp, *p;

	va_start(ap, fmt);
	if (vasprintf(&tmp, fmt, ap) < 0)
		die("config: out of memory");
	va_end(ap);
	p = cfg_strdup(a, tmp);
	free(tmp);
	return p;
}

void cfg_arena_free(struct cfg_arena *a)
{
	struct cfg_chunk *c = a->head;

	while (c) {
		struct cfg_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
}

/* ---- hash map -------------------------------------------------------------------------------- */

/* FNV-1a with a final avalanche (splitmix64). Keys come from the operator's own config, so
 * flooding resistance is not a goal; uniform spreading of similar keys (IPs, uids) is. */
static uint64_t hash_bytes(const void *key, size_t n)
{
	const uint8_t *p = key;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h;
}

void cfg_map_init(struct cfg_map *m, struct cfg_arena *a, size_t expected)
{
	size_t cap = 8;

	while (cap < expected * 2 + 1)
		cap *= 2;
	m->slots = cfg_alloc_array(a, cap, sizeof(*m->slots));
	m->cap = cap;
	m->n = 0;
}

static struct cfg_slot *map_find(const struct cfg_map *m, const void *key, size_t klen, uint64_t h)
{
	size_t mask = m->cap - 1;

	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct cfg_slot *s = &m->slots[i];
		if (!s->key)
			return s;
		if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0)
			return s;
	}
}

void *cfg_map_put(struct cfg_map *m, const void *key, size_t klen, void *val)
{
	uint64_t h = hash_bytes(key, klen);
	struct cfg_slot *s = map_find(m, key, klen, h);

	if (s->key)
		return s->val;
	if ((m->n + 1) * 2 > m->cap)
		die("config: index sized for fewer keys");
	s->key = key;
	s->klen = klen;
	s->hash = h;
	s->val = val;
	m->n++;
	return NULL;
}

void *cfg_map_get(const struct cfg_map *m, const void *key, size_t klen)
{
	struct cfg_slot *s;

	if (!m->cap)
		return NULL;
	s = map_find(m, key, klen, hash_bytes(key, klen));
	return s->key ? s->val : NULL;
}

void cfg_list_count(struct cfg_map *m, struct cfg_arena *a, const void *key, size_t klen)
{
	struct cfg_list *l = cfg_map_get(m, key, klen);

	if (!l) {
		l = cfg_alloc(a, sizeof(*l));
		cfg_map_put(m, key, klen, l);
	}
	l->n++;
}

void cfg_list_alloc(struct cfg_map *m, struct cfg_arena *a)
{
	for (size_t i = 0; i < m->cap; i++) {
		struct cfg_list *l = m->slots[i].val;
		if (!m->slots[i].key)
			continue;
		l->items = cfg_alloc_array(a, l->n, sizeof(*l->items));
		l->n = 0;
	}
}

void cfg_list_add(struct cfg_map *m, const void *key, size_t klen, const void *item)
{
	struct cfg_list *l = cfg_map_get(m, key, klen);

	if (l)
		l->items[l->n++] = item;
}

/* ---- lookups --------------------------------------------------------------------------------- */

const struct config_workload *config_workload_by_uid(const struct config *c, const char *uid)
{
	return uid ? cfg_map_get(&c->by_uid, uid, strlen(uid)) : NULL;
}

static const void *get_by_ip(const struct cfg_map *m, const char *network,
			     const struct config_ip *ip)
{
	char stack[CFG_IP_KEY_MAX];
	struct config_ip canon = *ip;
	const void *v;
	size_t n;
	char *key = stack;

	/* Callers may hold a v4-mapped address from a dual-stack socket; the index has v4. */
	if (canon.family != AF_INET && canon.family != AF_INET6)
		return NULL;
	if (canon.family == AF_INET6) {
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(canon.addr, mapped, sizeof(mapped)) == 0) {
			memmove(canon.addr, canon.addr + 12, 4);
			memset(canon.addr + 4, 0, 12);
			canon.family = AF_INET;
		}
	}
	n = cfg_ip_key(stack, sizeof(stack), network ? network : "", &canon);
	if (n > sizeof(stack)) {
		key = xmalloc(n);
		cfg_ip_key(key, n, network ? network : "", &canon);
	}
	v = cfg_map_get(m, key, n);
	if (key != stack)
		free(key);
	return v;
}

const struct config_workload *config_workload_by_ip(const struct config *c, const char *network,
						    const struct config_ip *ip)
{
	return get_by_ip(&c->by_ip, network, ip);
}

const struct config_service *config_service_by_vip(const struct config *c, const char *network,
						   const struct config_ip *ip)
{
	return get_by_ip(&c->by_vip, network, ip);
}

static const void *const *list_get(const struct cfg_map *m, const char *key, size_t *n)
{
	const struct cfg_list *l = key ? cfg_map_get(m, key, strlen(key)) : NULL;

	*n = l ? l->n : 0;
	return l ? l->items : NULL;
}

const struct config_workload *const *config_workloads_by_node(const struct config *c,
							      const char *node, size_t *n)
{
	return (const struct config_workload *const *)list_get(&c->by_node, node, n);
}

/* Looks up "a/b" without building the string on the heap for typical lengths. */
static const void *get_pair(const struct cfg_map *m, const char *a, const char *b)
{
	char stack[256];
	size_t la, lb, n;
	char *key = stack;
	const void *v;

	if (!a || !b)
		return NULL;
	la = strlen(a);
	lb = strlen(b);
	n = la + 1 + lb;
	if (n + 1 > sizeof(stack))
		key = xmalloc(n + 1);
	memcpy(key, a, la);
	key[la] = '/';
	memcpy(key + la + 1, b, lb);
	key[n] = '\0';
	v = cfg_map_get(m, key, n);
	if (key != stack)
		free(key);
	return v;
}

const struct config_service *config_service_by_key(const struct config *c, const char *ns,
						   const char *hostname)
{
	return get_pair(&c->by_svc_key, ns, hostname);
}

const struct config_service *const *config_services_by_hostname(const struct config *c,
								const char *hostname, size_t *n)
{
	return (const struct config_service *const *)list_get(&c->by_hostname, hostname, n);
}

const struct config_service *config_service_by_hostname(const struct config *c,
							const char *hostname, const char *prefer_ns)
{
	size_t n;
	const struct config_service *const *l = config_services_by_hostname(c, hostname, &n);
	const struct config_service *canonical = NULL;

	if (!n)
		return NULL;
	if (prefer_ns) {
		const struct config_service *s = config_service_by_key(c, prefer_ns, hostname);
		if (s)
			return s;
	}
	for (size_t i = 0; i < n && !canonical; i++)
		if (l[i]->canonical)
			canonical = l[i];
	return canonical ? canonical : l[0];
}

const struct config_policy *config_policy_by_key(const struct config *c, const char *ns,
						 const char *name)
{
	return get_pair(&c->by_policy_key, ns, name);
}

const struct config_policy *const *config_policies_by_namespace(const struct config *c,
								const char *ns, size_t *n)
{
	return (const struct config_policy *const *)list_get(&c->policies_by_ns, ns, n);
}

const struct config_policy *const *config_policies_global(const struct config *c, size_t *n)
{
	*n = c->global_policies.n;
	return (const struct config_policy *const *)c->global_policies.items;
}

enum config_app_protocol config_service_app_protocol(const struct config_service *s, uint16_t port)
{
	for (size_t i = 0; s && i < s->n_app_protocols; i++)
		if (s->app_protocols[i].port == port)
			return s->app_protocols[i].protocol;
	return CONFIG_APP_PROTOCOL_UNSET;
}
