/* libFuzzer target for every cniconf decoder: no crash, no leak, errors carry a message, and what
 * decodes re-encodes to text that decodes to the same thing.
 *
 * Byte 0 picks the decoder ('N' netconf, 'A' CNI_ARGS, 'S' state file, 'Q' control request,
 * 'R' control reply, 'P' CLI port list, 'T' time; any other byte: byte % 7 in that order); the
 * rest is its input. String inputs (CNI_ARGS, ports, time) stop at the first NUL.
 */
#include "pkg/cniconf/cniconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "cniconf_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c);      \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

static void error_ok(int rc, const struct errbuf *eb)
{
	ASSERT(rc < 0);
	ASSERT(eb->msg[0] != '\0' && terminated(eb->msg, sizeof(eb->msg)));
}

static void fuzz_netconf(const char *p, size_t n)
{
	struct cniconf_netconf nc;
	struct errbuf eb = {0};
	struct buf out;
	cJSON *again = NULL;
	int rc = cniconf_netconf_decode(p, n, &nc, &eb);

	if (rc < 0) {
		error_ok(rc, &eb);
		ASSERT(rc == -E_PARSE || rc == -E_UNSUPP || rc == -E_INVAL || rc == -E_LIMIT);
		ASSERT(cniconf_netconf_error_code(rc) > 0);
		ASSERT(!nc.version || cniconf_version_supported(nc.version));
		cniconf_netconf_fini(&nc);
		return;
	}
	ASSERT(cniconf_version_supported(nc.version));
	ASSERT(nc.name[0] && nc.type[0]);
	ASSERT(!nc.control_socket || nc.control_socket[0]);
	ASSERT(nc.n_exclude <= CNICONF_MAX_EXCLUDE);
	for (size_t i = 0; i < nc.n_exclude; i++)
		ASSERT(nc.exclude[i] != 0);
	ASSERT(nc.enroll == cniconf_enroll_decide(nc.enroll_flag, nc.mode));
	if (nc.mode == CNICONF_MODE_NONE)
		ASSERT(!nc.enroll);
	buf_init(&out, 0);
	ASSERT(cniconf_prev_result_encode(&nc, &out) == 0);
	ASSERT(json_parse((const char *)buf_rptr(&out), buf_len(&out), NULL, &again, NULL) == 0);
	ASSERT(cJSON_IsObject(again));
	ASSERT(!strcmp(cJSON_GetObjectItemCaseSensitive(again, "cniVersion")->valuestring,
		       nc.version));
	json_free(again);
	buf_reset(&out);
	ASSERT(cniconf_error_result_encode(nc.version, CNICONF_E_OTHER, "m", nc.name, &out) == 0);
	buf_fini(&out);
	cniconf_netconf_fini(&nc);
}

static void fuzz_args(const char *s)
{
	struct cniconf_args a;
	struct errbuf eb = {0};
	char uid[CNICONF_STR_MAX + 1];
	int rc = cniconf_args_parse(s, &a, &eb);

	if (rc < 0) {
		error_ok(rc, &eb);
		return;
	}
	ASSERT(strlen(a.pod_uid) <= CNICONF_STR_MAX && strlen(a.pod_name) <= CNICONF_STR_MAX &&
	       strlen(a.pod_namespace) <= CNICONF_STR_MAX &&
	       strlen(a.pod_service_account) <= CNICONF_STR_MAX);
	cniconf_uid_choose(&a, s, uid);
	ASSERT(strlen(uid) <= CNICONF_STR_MAX);
	if (a.pod_uid[0])
		ASSERT(!strcmp(uid, a.pod_uid));
	else
		ASSERT(!strncmp(uid, s, strlen(uid)));
}

static bool entry_eq(const struct cniconf_entry *a, const struct cniconf_entry *b)
{
	return !strcmp(a->uid, b->uid) && !strcmp(a->netns, b->netns) &&
	       a->netns_inode == b->netns_inode && !strcmp(a->name, b->name) &&
	       !strcmp(a->namespace_, b->namespace_) &&
	       !strcmp(a->service_account, b->service_account) && a->host == b->host &&
	       a->ipv6 == b->ipv6 && a->n_exclude == b->n_exclude &&
	       !memcmp(a->exclude, b->exclude, a->n_exclude * sizeof(a->exclude[0])) &&
	       a->enrolled_ms == b->enrolled_ms;
}

static void fuzz_state(const char *p, size_t n)
{
	struct cniconf_entry *e, *e2;
	struct errbuf eb = {0};
	struct buf out;
	size_t ne, ne2;
	int rc = cniconf_state_decode(p, n, "state.json", &e, &ne, &eb);

	if (rc < 0) {
		error_ok(rc, &eb);
		ASSERT(!strncmp(eb.msg, "state.json", 10));
		ASSERT(e == NULL && ne == 0);
		return;
	}
	for (size_t i = 0; i < ne; i++) {
		ASSERT(e[i].uid[0] && e[i].netns[0] && e[i].n_exclude <= CNICONF_MAX_EXCLUDE);
		ASSERT(e[i].enrolled_ms >= 0 && e[i].enrolled_ms % 1000 == 0);
		for (size_t j = 0; j < i; j++)
			ASSERT(strcmp(e[i].uid, e[j].uid) != 0);
	}
	buf_init(&out, 0);
	ASSERT(cniconf_state_encode(e, ne, &out) == 0);
	rc = cniconf_state_decode((const char *)buf_rptr(&out), buf_len(&out), "again", &e2, &ne2,
				  &eb);
	ASSERT(rc == 0 && ne2 == ne);
	for (size_t i = 0; i < ne; i++)
		ASSERT(entry_eq(&e[i], &e2[i]));
	free(e2);
	free(e);
	buf_fini(&out);
}

static void fuzz_request(const char *p, size_t n)
{
	struct cniconf_request r, r2;
	struct errbuf eb = {0};
	struct buf out;
	int rc = cniconf_request_decode(p, n, &r, &eb);

	if (rc < 0) {
		error_ok(rc, &eb);
		ASSERT(!strncmp(eb.msg, "request", 7));
		return;
	}
	ASSERT(r.op >= CNICONF_OP_ADD && r.op <= CNICONF_OP_CHECK);
	if (r.op == CNICONF_OP_ADD)
		ASSERT(r.e.netns[0] == '/' && r.e.uid[0]);
	if (r.op == CNICONF_OP_DEL)
		ASSERT(r.e.uid[0]);
	buf_init(&out, 0);
	ASSERT(cniconf_request_encode(&r, &out) == 0);
	rc = cniconf_request_decode((const char *)buf_rptr(&out), buf_len(&out), &r2, &eb);
	ASSERT(rc == 0 && r2.op == r.op && entry_eq(&r.e, &r2.e));
	buf_fini(&out);
}

static void fuzz_reply(const char *p, size_t n)
{
	struct cniconf_reply r;
	struct errbuf eb = {0};
	int rc = cniconf_reply_decode(p, n, &r, &eb);

	if (rc < 0) {
		error_ok(rc, &eb);
		ASSERT(r.root == NULL && r.rows == NULL);
		return;
	}
	ASSERT(r.root != NULL && (r.ok || !r.error || strlen(r.error) < n));
	ASSERT(r.n_rows == (r.workloads ? (size_t)cJSON_GetArraySize(r.workloads) : 0));
	for (size_t i = 0; i < r.n_rows; i++)
		ASSERT(r.rows[i].uid && r.rows[i].netns && r.rows[i].name && r.rows[i].namespace_ &&
		       r.rows[i].service_account && r.rows[i].enrolled_ms >= 0);
	cniconf_reply_fini(&r);
}

static void fuzz_ports(const char *s)
{
	uint16_t ports[CNICONF_MAX_EXCLUDE];
	struct errbuf eb = {0};
	size_t n;
	int rc = cniconf_ports_parse(s, ports, CNICONF_MAX_EXCLUDE, &n, &eb);

	if (rc < 0) {
		error_ok(rc, &eb);
		return;
	}
	ASSERT(n <= CNICONF_MAX_EXCLUDE);
	for (size_t i = 0; i < n; i++)
		ASSERT(ports[i] != 0);
}

static void fuzz_time(const char *s)
{
	struct cniconf_entry e = {.uid = "u", .netns = "/n"};
	struct cniconf_entry *back;
	struct errbuf eb = {0};
	struct buf out;
	size_t n;
	int64_t ms;

	if (cniconf_time_parse(s, &ms) < 0)
		return;
	ASSERT(ms >= 0 && ms % 1000 == 0);
	/* Written back the way the state file writes it, it reads as the same instant. */
	e.enrolled_ms = ms;
	buf_init(&out, 0);
	ASSERT(cniconf_state_encode(&e, 1, &out) == 0);
	ASSERT(cniconf_state_decode((const char *)buf_rptr(&out), buf_len(&out), "t", &back, &n,
				    &eb) == 0);
	ASSERT(n == 1 && back[0].enrolled_ms == ms);
	if (ms > 0)
		ASSERT(memmem(buf_rptr(&out), buf_len(&out), s, strlen(s)) != NULL);
	free(back);
	buf_fini(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char kinds[] = "NASQRPT";
	const char *k, *p = (const char *)data + 1;
	size_t n = size ? size - 1 : 0;
	char *s;

	if (size == 0)
		return 0;
	k = data[0] ? memchr(kinds, data[0], sizeof(kinds) - 1) : NULL;
	s = malloc(n + 1);
	memcpy(s, p, n);
	s[n] = '\0';
	switch (k ? k - kinds : data[0] % 7) {
	case 0: fuzz_netconf(p, n); break;
	case 1: fuzz_args(s); break;
	case 2: fuzz_state(p, n); break;
	case 3: fuzz_request(p, n); break;
	case 4: fuzz_reply(p, n); break;
	case 5: fuzz_ports(s); break;
	default: fuzz_time(s); break;
	}
	free(s);
	return 0;
}
