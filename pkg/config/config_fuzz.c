/* Fuzz target for the mesh-config parser: parse, then exercise every lookup and the dump, and
 * check that a valid snapshot's dump parses back to the same snapshot. */
#include "pkg/config/config.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dump_mesh(const struct config *c, size_t *len)
{
	struct buf b;
	struct json_writer w;
	char *s;

	buf_init(&b, 0);
	json_writer_init(&w, &b, 0);
	config_dump_mesh_write(c, &w);
	if (json_writer_finish(&w) < 0)
		abort();
	*len = buf_len(&b);
	s = xmalloc(*len + 1);
	memcpy(s, buf_rptr(&b), *len);
	s[*len] = '\0';
	buf_fini(&b);
	return s;
}

static void exercise(const struct config *c)
{
	size_t n, m;
	const struct config_workload *w = config_workloads(c, &n);
	const struct config_service *s;
	const struct config_policy *p;
	struct buf out;

	for (size_t i = 0; i < n; i++) {
		if (config_workload_by_uid(c, w[i].uid) != &w[i])
			abort();
		for (size_t k = 0; k < w[i].n_workload_ips; k++) {
			const struct config_workload *f =
				config_workload_by_ip(c, w[i].network, &w[i].workload_ips[k]);
			if (w[i].network_mode == CONFIG_NETWORK_MODE_STANDARD && f != &w[i])
				abort();
		}
		config_workloads_by_node(c, w[i].node, &m);
		if (m == 0)
			abort();
	}
	s = config_services(c, &n);
	for (size_t i = 0; i < n; i++) {
		if (config_service_by_key(c, s[i].namespace, s[i].hostname) != &s[i])
			abort();
		config_services_by_hostname(c, s[i].hostname, &m);
		if (m == 0 || !config_service_by_hostname(c, s[i].hostname, s[i].namespace))
			abort();
		for (size_t k = 0; k < s[i].n_vips; k++)
			if (config_service_by_vip(c, s[i].vips[k].network, &s[i].vips[k].ip) !=
			    &s[i])
				abort();
	}
	p = config_policies(c, &n);
	for (size_t i = 0; i < n; i++)
		if (config_policy_by_key(c, p[i].namespace, p[i].name) != &p[i])
			abort();
	config_policies_global(c, &m);
	buf_init(&out, 0);
	if (config_dump_json(c, &out) < 0)
		abort();
	buf_fini(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errlist errs = {0}, warns = {0};
	struct config_parse_opts o = {.warnings = &warns};
	struct config *c = config_parse_ex("fuzz.json", (const char *)data, size, 1, &o, &errs);
	cJSON *root = NULL;
	struct json_error je;

	if (c ? errs.n != 0 : errs.n == 0)
		abort();
	for (size_t i = 0; i < errs.n; i++)
		if (strncmp(errs.items[i], "fuzz.json", 9) != 0)
			abort();
	if (c) {
		struct errlist again_errs = {0};
		size_t l1, l2;
		char *d1, *d2;
		struct config *again;

		exercise(c);
		d1 = dump_mesh(c, &l1);
		again = config_parse("dump", d1, l1, 2, &again_errs);
		if (!again)
			abort();
		d2 = dump_mesh(again, &l2);
		if (l1 != l2 || memcmp(d1, d2, l1) != 0)
			abort();
		free(d1);
		free(d2);
		config_unref(again);
		errlist_fini(&again_errs);
		config_unref(config_ref(c));
		config_unref(c);
	}
	/* The strict JSON layer alone, duplicates rejected. */
	if (json_parse((const char *)data, size, NULL, &root, &je) == 0)
		json_free(root);
	errlist_fini(&errs);
	errlist_fini(&warns);
	return 0;
}
