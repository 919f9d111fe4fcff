/* The agent's records: workload entries, the state file, and the control socket's requests and
 * replies (one JSON object per SOCK_SEQPACKET packet; docs/cni.md "Control protocol"). */
#include "pkg/cniconf/cniconf_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- entries --------------------------------------------------------------------------------- */

void cniconf_entry_write(struct json_writer *w, const struct cniconf_entry *e)
{
	json_write_object_begin(w);
	json_kv_str(w, "uid", e->uid);
	json_kv_str(w, "netns", e->netns);
	json_kv_uint(w, "netnsInode", e->netns_inode);
	json_kv_str(w, "name", e->name);
	json_kv_str(w, "namespace", e->namespace_);
	json_kv_str(w, "serviceAccount", e->service_account);
	json_kv_bool(w, "host", e->host);
	json_kv_bool(w, "ipv6", e->ipv6);
	json_write_key(w, "excludeInboundPorts");
	json_write_array_begin(w);
	for (size_t i = 0; i < e->n_exclude; i++)
		json_write_uint(w, e->exclude[i]);
	json_write_array_end(w);
	json_kv_time_ms(w, "enrolled", e->enrolled_ms);
	json_write_object_end(w);
}

/* Unknown members are ignored (a newer agent's state file still loads). */
static int entry_decode(struct cc *c, const cJSON *o, struct cniconf_entry *e)
{
	const cJSON *v;
	size_t m;
	int rc;

	memset(e, 0, sizeof(*e));
	if (!cJSON_IsObject(o))
		return cc_type(c, o, "an object");
	if ((rc = cc_str_copy(c, o, "uid", true, e->uid, sizeof(e->uid))) < 0 ||
	    (rc = cc_str_copy(c, o, "netns", true, e->netns, sizeof(e->netns))) < 0 ||
	    (rc = cc_str_copy(c, o, "name", false, e->name, sizeof(e->name))) < 0 ||
	    (rc = cc_str_copy(c, o, "namespace", false, e->namespace_, sizeof(e->namespace_))) <
		    0 ||
	    (rc = cc_str_copy(c, o, "serviceAccount", false, e->service_account,
			      sizeof(e->service_account))) < 0 ||
	    (rc = cc_bool(c, o, "host", &e->host)) < 0 ||
	    (rc = cc_bool(c, o, "ipv6", &e->ipv6)) < 0 ||
	    (rc = cc_ports(c, o, "excludeInboundPorts", e->exclude, &e->n_exclude)) < 0 ||
	    (rc = cc_time(c, o, "enrolled", &e->enrolled_ms)) < 0)
		return rc;
	v = cJSON_GetObjectItemCaseSensitive(o, "netnsInode");
	if (v && json_get_uint(v, 0, UINT64_MAX, &e->netns_inode) < 0) {
		m = json_path_push_key(&c->path, "netnsInode");
		rc = cc_fail(c, E_INVAL, "expected an integer, got %s", json_type_name(v));
		json_path_pop(&c->path, m);
		return rc;
	}
	return 0;
}

/* ---- state file ------------------------------------------------------------------------------ */

static bool uid_seen(const struct cniconf_entry *e, size_t n, const char *uid)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(e[i].uid, uid) == 0)
			return true;
	return false;
}

int cniconf_state_decode(const char *text, size_t len, const char *source,
			 struct cniconf_entry **out, size_t *n, struct errbuf *eb)
{
	struct cniconf_entry *e = NULL;
	cJSON *root;
	const cJSON *arr, *it;
	struct cc c;
	size_t cnt = 0, cap = 0, i = 0;
	int rc;

	*out = NULL;
	*n = 0;
	cc_init(&c, source, eb);
	if ((rc = cc_parse_object(&c, text, len, &root)) < 0)
		return rc;
	rc = -E_INVAL;
	arr = cJSON_GetObjectItemCaseSensitive(root, "workloads");
	json_path_push_key(&c.path, "workloads");
	if (!cJSON_IsArray(arr)) {
		cc_type(&c, arr, "an array");
		goto fail;
	}
	cJSON_ArrayForEach(it, arr)
	{
		size_t m = json_path_push_index(&c.path, i++);

		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			e = xrealloc(e, cap * sizeof(*e));
		}
		if ((rc = entry_decode(&c, it, &e[cnt])) < 0)
			goto fail;
		if (uid_seen(e, cnt, e[cnt].uid)) {
			json_path_push_key(&c.path, "uid");
			rc = cc_fail(&c, E_INVAL, "workload %s appears twice", e[cnt].uid);
			goto fail;
		}
		cnt++;
		json_path_pop(&c.path, m);
	}
	json_free(root);
	*out = e;
	*n = cnt;
	return 0;
fail:
	free(e);
	json_free(root);
	return rc;
}

int cniconf_state_encode(const struct cniconf_entry *e, size_t n, struct buf *out)
{
	struct json_writer w;
	int rc;

	json_writer_init(&w, out, 2);
	json_write_object_begin(&w);
	json_kv_int(&w, "version", 1);
	json_write_key(&w, "workloads");
	json_write_array_begin(&w);
	for (size_t i = 0; i < n; i++)
		cniconf_entry_write(&w, &e[i]);
	json_write_array_end(&w);
	json_write_object_end(&w);
	if ((rc = json_writer_finish(&w)) < 0)
		return rc;
	return buf_append(out, "\n", 1) < 0 ? -E_LIMIT : 0;
}

/* ---- requests -------------------------------------------------------------------------------- */

static const struct {
	const char *name;
	enum cniconf_op op;
	const char *keys[8]; /* besides "op" */
	const char *usage;
} ops[] = {
	{"add",
	 CNICONF_OP_ADD,
	 {"uid", "netns", "name", "namespace", "serviceAccount", "host", "excludeInboundPorts"},
	 "add takes op, uid, netns, name, namespace, serviceAccount, host, excludeInboundPorts"},
	{"del", CNICONF_OP_DEL, {"uid"}, "del takes op, uid"},
	{"list", CNICONF_OP_LIST, {NULL}, "list takes op"},
	{"check", CNICONF_OP_CHECK, {"uid"}, "check takes op, uid"},
};

static int keys_check(struct cc *c, const cJSON *req, size_t k)
{
	const cJSON *it;

	cJSON_ArrayForEach(it, req)
	{
		bool known = strcmp(it->string, "op") == 0;

		for (size_t i = 0; !known && i < ARRAY_LEN(ops[k].keys) && ops[k].keys[i]; i++)
			known = strcmp(it->string, ops[k].keys[i]) == 0;
		if (!known)
			return errbuf_set(c->eb, E_INVAL, "%s: unknown key \"%.64s\" (%s)", c->src,
					  it->string, ops[k].usage);
	}
	return 0;
}

static int request_fields(struct cc *c, const cJSON *req, struct cniconf_request *r)
{
	struct cniconf_entry *e = &r->e;
	int rc;

	switch (r->op) {
	case CNICONF_OP_ADD:
		if ((rc = entry_decode(c, req, e)) < 0)
			return rc;
		if (e->netns[0] != '/') {
			json_path_push_key(&c->path, "netns");
			return cc_fail(c, E_INVAL, "must be an absolute path, got \"%.256s\"",
				       e->netns);
		}
		return 0;
	case CNICONF_OP_DEL: return cc_str_copy(c, req, "uid", true, e->uid, sizeof(e->uid));
	case CNICONF_OP_CHECK: return cc_str_copy(c, req, "uid", false, e->uid, sizeof(e->uid));
	case CNICONF_OP_LIST: return 0;
	}
	return -E_INVAL;
}

int cniconf_request_decode(const char *text, size_t len, struct cniconf_request *r,
			   struct errbuf *eb)
{
	struct json_error je;
	cJSON *req = NULL;
	const cJSON *op;
	struct cc c;
	size_t k;
	int rc;

	memset(r, 0, sizeof(*r));
	cc_init(&c, "request", eb);
	if ((rc = json_parse(text, len, NULL, &req, &je)) < 0) {
		char line[ERRBUF_SIZE];

		json_error_format(&je, "request", line, sizeof(line));
		return errbuf_set(eb, -rc, "%s", line);
	}
	op = cJSON_GetObjectItemCaseSensitive(req, "op");
	if (!cJSON_IsObject(req) || !cJSON_IsString(op)) {
		rc = errbuf_set(eb, E_INVAL, "request: expected an object with \"op\"");
		goto done;
	}
	for (k = 0; k < ARRAY_LEN(ops) && strcmp(op->valuestring, ops[k].name) != 0; k++)
		;
	if (k == ARRAY_LEN(ops)) {
		rc = errbuf_set(eb, E_INVAL,
				"request: .op: unknown op \"%.64s\" (add, del, list, check)",
				op->valuestring);
		goto done;
	}
	r->op = ops[k].op;
	if ((rc = keys_check(&c, req, k)) >= 0)
		rc = request_fields(&c, req, r);
done:
	json_free(req);
	if (rc < 0) {
		enum cniconf_op keep = r->op;

		memset(r, 0, sizeof(*r));
		r->op = keep;
	}
	return rc;
}

int cniconf_request_encode(const struct cniconf_request *r, struct buf *out)
{
	const struct cniconf_entry *e = &r->e;
	struct json_writer w;
	const char *name = NULL;

	for (size_t k = 0; k < ARRAY_LEN(ops); k++)
		if (ops[k].op == r->op)
			name = ops[k].name;
	if (!name)
		return -E_INVAL;
	json_writer_init(&w, out, 0);
	json_write_object_begin(&w);
	json_kv_str(&w, "op", name);
	if (r->op == CNICONF_OP_DEL || (r->op == CNICONF_OP_CHECK && e->uid[0]) ||
	    r->op == CNICONF_OP_ADD)
		json_kv_str(&w, "uid", e->uid);
	if (r->op == CNICONF_OP_ADD) {
		json_kv_str(&w, "netns", e->netns);
		json_kv_str(&w, "name", e->name);
		json_kv_str(&w, "namespace", e->namespace_);
		json_kv_str(&w, "serviceAccount", e->service_account);
		json_kv_bool(&w, "host", e->host);
		json_write_key(&w, "excludeInboundPorts");
		json_write_array_begin(&w);
		for (size_t i = 0; i < e->n_exclude; i++)
			json_write_uint(&w, e->exclude[i]);
		json_write_array_end(&w);
	}
	json_write_object_end(&w);
	return json_writer_finish(&w);
}

/* ---- replies --------------------------------------------------------------------------------- */

static int row_decode(struct cc *c, const cJSON *o, struct cniconf_row *row)
{
	const cJSON *err;
	int rc;

	memset(row, 0, sizeof(*row));
	if (!cJSON_IsObject(o))
		return cc_type(c, o, "an object");
	if ((rc = cc_str(c, o, "uid", false, &row->uid)) < 0 ||
	    (rc = cc_str(c, o, "netns", false, &row->netns)) < 0 ||
	    (rc = cc_str(c, o, "name", false, &row->name)) < 0 ||
	    (rc = cc_str(c, o, "namespace", false, &row->namespace_)) < 0 ||
	    (rc = cc_str(c, o, "serviceAccount", false, &row->service_account)) < 0 ||
	    (rc = cc_str(c, o, "error", false, &row->error)) < 0 ||
	    (rc = cc_bool(c, o, "ok", &row->ok)) < 0 ||
	    (rc = cc_time(c, o, "enrolled", &row->enrolled_ms)) < 0)
		return rc;
	err = cJSON_GetObjectItemCaseSensitive(o, "error");
	if (!err)
		row->error = NULL;
	return 0;
}

static int reply_fields(struct cc *c, struct cniconf_reply *r)
{
	const cJSON *wl, *it;
	size_t i = 0, m;
	int rc;

	if ((rc = cc_bool(c, r->root, "ok", &r->ok)) < 0 ||
	    (rc = cc_str(c, r->root, "error", false, &r->error)) < 0 ||
	    (rc = cc_bool(c, r->root, "removed", &r->removed)) < 0 ||
	    (rc = cc_bool(c, r->root, "ztunnelConnected", &r->ztunnel_connected)) < 0)
		return rc;
	if (!cJSON_GetObjectItemCaseSensitive(r->root, "error"))
		r->error = NULL;
	wl = cJSON_GetObjectItemCaseSensitive(r->root, "workload");
	if (wl && !cJSON_IsNull(wl)) {
		m = json_path_push_key(&c->path, "workload");
		if (!cJSON_IsObject(wl))
			return cc_type(c, wl, "an object");
		if ((rc = cc_bool(c, wl, "ipv6", &r->ipv6)) < 0)
			return rc;
		json_path_pop(&c->path, m);
	}
	wl = cJSON_GetObjectItemCaseSensitive(r->root, "workloads");
	if (!wl || cJSON_IsNull(wl))
		return 0;
	json_path_push_key(&c->path, "workloads");
	if (!cJSON_IsArray(wl))
		return cc_type(c, wl, "an array");
	r->workloads = wl;
	r->n_rows = (size_t)cJSON_GetArraySize(wl);
	r->rows = r->n_rows ? xcalloc(r->n_rows, sizeof(*r->rows)) : NULL;
	cJSON_ArrayForEach(it, wl)
	{
		m = json_path_push_index(&c->path, i);
		if ((rc = row_decode(c, it, &r->rows[i++])) < 0)
			return rc;
		json_path_pop(&c->path, m);
	}
	return 0;
}

int cniconf_reply_decode(const char *text, size_t len, struct cniconf_reply *r, struct errbuf *eb)
{
	struct cc c;
	int rc;

	memset(r, 0, sizeof(*r));
	cc_init(&c, "reply", eb);
	if ((rc = cc_parse_object(&c, text, len, &r->root)) < 0)
		return rc;
	if ((rc = reply_fields(&c, r)) < 0)
		cniconf_reply_fini(r);
	return rc;
}

void cniconf_reply_fini(struct cniconf_reply *r)
{
	json_free(r->root);
	free(r->rows);
	memset(r, 0, sizeof(*r));
}
