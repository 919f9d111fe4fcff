/* `ambient ctl status` and `ambient ctl bug-report`: several running components at once. */
#include "cmd/ctl.h"
#include "pkg/httpc/httpc.h"
#include "version.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Admin URLs from repeated --admin and from an inventory file (one URL per line, # comments). */
static int collect_admins(const struct flag_list *admins, const char *inventory,
			  struct flag_list *out, char **inv_text, struct errbuf *eb)
{
	size_t len;

	out->n = 0;
	*inv_text = NULL;
	for (int i = 0; i < admins->n; i++)
		out->items[out->n++] = admins->items[i];
	if (inventory && *inventory) {
		char *line, *save = NULL;
		if (ctl_read_source(inventory, NULL, NULL, 1 << 20, inv_text, &len, eb) < 0)
			return -1;
		for (line = strtok_r(*inv_text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			char *e;
			while (*line == ' ' || *line == '\t')
				line++;
			e = line + strlen(line);
			while (e > line && (e[-1] == ' ' || e[-1] == '\r' || e[-1] == '\t'))
				*--e = '\0';
			if (!*line || *line == '#')
				continue;
			if (out->n == (int)ARRAY_LEN(out->items))
				return errbuf_set(eb, E_LIMIT, "%s: more than %zu components",
						  inventory, ARRAY_LEN(out->items));
			out->items[out->n++] = line;
		}
	}
	if (out->n == 0)
		out->items[out->n++] = CTL_DEFAULT_ADMIN;
	return 0;
}

static const cJSON *cfg_of(const cJSON *d)
{
	return cJSON_GetObjectItemCaseSensitive(d, "config");
}

/* The earliest certificate expiry in a dump ("" if none) and the first certificate error. */
static void cert_summary(const cJSON *d, char *exp, size_t cap, char *err, size_t ecap)
{
	const cJSON *it, *ca = cJSON_GetObjectItemCaseSensitive(d, "ca");
	int64_t best = -1, now = ctl_now();
	const char *best_s = "", *state = "";

	exp[0] = err[0] = '\0';
	CTL_EACH(it, cJSON_GetObjectItemCaseSensitive(
			     cJSON_GetObjectItemCaseSensitive(d, "certificates"), "identities"))
	{
		int64_t t = ctl_parse_time(ctl_jstr(it, "notAfter"));
		if (t >= 0 && (best < 0 || t < best)) {
			best = t;
			best_s = ctl_jstr(it, "notAfter");
		}
		if (strcmp(ctl_jstr(it, "state"), "ready") != 0)
			state = ctl_jstr(it, "state");
		if (!err[0] && *ctl_jstr(it, "lastError"))
			snprintf(err, ecap, "cert %s: %s", ctl_jstr(it, "identity"),
				 ctl_jstr(it, "lastError"));
	}
	if (ca) {
		const cJSON *sc = cJSON_GetObjectItemCaseSensitive(ca, "servingCertificate");
		int64_t t = ctl_parse_time(ctl_jstr(sc, "notAfter"));
		if (t >= 0 && (best < 0 || t < best)) {
			best = t;
			best_s = ctl_jstr(sc, "notAfter");
		}
	}
	if (best >= 0) {
		char left[48];
		ctl_format_left(best - now, left, sizeof(left));
		snprintf(exp, cap, "%s (%s)%s%s", left, best_s, *state ? " " : "", state);
	}
}

/* ---- the control plane's current config: the CA's /v1/config ETag ------------------------- */

struct etag_arg {
	char *out;
	size_t cap;
};

static void on_ca_head(void *arg, const struct http1_msg *m)
{
	struct etag_arg *a = arg;
	struct slice v;

	if (http1_fields_get(&m->headers, "etag", &v)) {
		/* Quoted (RFC 9110 §8.8.3); the dumps show it bare. */
		if (v.n >= 2 && v.p[0] == '"' && v.p[v.n - 1] == '"') {
			v.p++;
			v.n -= 2;
		}
		snprintf(a->out, a->cap, "%.*s", (int)v.n, (const char *)v.p);
	}
}

/* GET <ca>/v1/config (ca: "https://host:port" or the full URL) with the node token; the ETag
 * header into out. */
static int ca_config_etag(const char *ca, const char *ca_root, const char *token_file, char *out,
			  size_t cap, struct errbuf *eb)
{
	const char *hp = strstr(ca, "://");
	char *url;
	struct httpc c;
	struct httpc_opts o = {.ca_root = ca_root,
			       .ca_root_what = "--ca-root",
			       .peer_what = "CA",
			       .connect_timeout_ms = 3000};
	struct etag_arg a = {out, cap};
	struct httpc_req rq = {.max_body = CONFIG_MAX_BYTES,
			       .wakefd = -1,
			       .accept = "application/json",
			       .token_file = token_file,
			       .on_head = on_ca_head,
			       .arg = &a};
	struct httpc_resp rs;
	int rc;

	out[0] = '\0';
	if (!hp)
		url = xasprintf("https://%s/v1/config", ca);
	else if (!strchr(hp + 3, '/'))
		url = xasprintf("%s/v1/config", ca);
	else
		url = xstrdup(ca);
	if (strncmp(url, "https://", 8) == 0 && (!ca_root || !*ca_root)) {
		free(url);
		return errbuf_set(eb, E_INVAL, "--ca %s: an https URL needs --ca-root FILE", ca);
	}
	if (httpc_init(&c, url, &o, eb) < 0) {
		errbuf_prefix(eb, "--ca %s", ca);
		httpc_fini(&c);
		free(url);
		return -E_INVAL;
	}
	rc = httpc_fetch(&c, &rq, &rs, eb);
	httpc_fini(&c);
	if (rc < 0)
		errbuf_prefix(eb, "cannot fetch %s", url);
	else if (rs.status != 200)
		rc = errbuf_set(eb, E_PROTO, "cannot fetch %s: HTTP %d%s", url, rs.status,
				rs.status == 401 ? " (pass --token-file with a node token)" : "");
	else if (!out[0])
		rc = errbuf_set(eb, E_PROTO, "%s: the response has no ETag", url);
	httpc_resp_fini(&rs);
	free(url);
	return rc < 0 ? rc : 0;
}

/* Whether a component's config is the CA's current one: its own etag (a hash of the bytes it
 * loaded: equal for a copy of the CA's source file) or, when it follows the CA over HTTP, the
 * ETag the CA sent it (the CA serves a re-rendered document, whose bytes hash differently). */
static bool etag_current(const cJSON *cfg, const char *want)
{
	const char *h = ctl_jstr(cfg, "httpEtag");
	size_t n = strlen(h), w = strlen(want);

	if (strcmp(ctl_jstr(cfg, "etag"), want) == 0)
		return true;
	if (strncmp(h, "W/", 2) == 0) {
		h += 2;
		n -= 2;
	}
	if (n >= 2 && h[0] == '"' && h[n - 1] == '"') {
		h++;
		n -= 2;
	}
	return n == w && strncmp(h, want, n) == 0;
}

static const char status_usage[] =
	"ambient ctl status [--admin URL]... [--inventory FILE] [--ca URL --ca-root FILE "
	"[--token-file FILE]] [--ca-admin URL] [-o json]";

int ctl_status_main(int argc, char **argv)
{
	static const char *const head[] = {"NAME",   "COMPONENT", "VERSION",	 "ETAG",
					   "SYNCED", "READY",	  "CERT EXPIRY", "LAST ERROR"};
	struct flag_list admins = {.n = 0}, all;
	const char *inventory = NULL, *ca_admin = NULL, *out = "table", *ca = NULL;
	const char *ca_root = NULL, *token_file = NULL;
	const struct flag fl[] = {
		{"admin", FLAG_STR_LIST, &admins, "admin URL of a component (repeatable)", "URL"},
		{"inventory", FLAG_STR, &inventory, "file with one admin URL per line", "FILE"},
		{"ca", FLAG_STR, &ca,
		 "the CA serving the config (https://host:port or its /v1/config URL): the ETag "
		 "it serves now is the current config",
		 "URL"},
		{"ca-root", FLAG_STR, &ca_root, "root certificate for an https --ca", "FILE"},
		{"token-file", FLAG_STR, &token_file, "bearer token (a node token) for --ca",
		 "FILE"},
		{"ca-admin", FLAG_STR, &ca_admin,
		 "admin URL of the CA: its config dump's etag (fallback when --ca is not given or "
		 "fails)",
		 "URL"},
		{"o", FLAG_STR, &out, "output: table (default) or json", "FORMAT"},
	};
	const char *pos[1];
	int npos, rc, exit_rc = CTL_EXIT_OK;
	struct errbuf eb = {0};
	char *inv = NULL;
	const char *want_etag = NULL, *etag_from = "";
	char ca_etag[160];
	cJSON *ca_dump = NULL, *arr = cJSON_CreateArray();
	struct ctl_table t;

	rc = ctl_parse("status", status_usage,
		       "  ambient ctl status --admin 10.0.0.1:15000 --admin 10.0.0.2:15000 "
		       "--ca https://10.0.0.9:15012 --ca-root root-cert.pem --token-file token\n"
		       "  ambient ctl status --inventory nodes.txt --ca-admin 10.0.0.9:15000",
		       fl, ARRAY_LEN(fl), argc, argv, pos, 0, &npos);
	if (rc) {
		cJSON_Delete(arr);
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	}
	if (collect_admins(&admins, inventory, &all, &inv, &eb) < 0) {
		fprintf(stderr, "ctl status: %s\n", eb.msg);
		free(inv);
		cJSON_Delete(arr);
		return CTL_EXIT_FAIL;
	}
	if (ca) {
		if (ca_config_etag(ca, ca_root, token_file, ca_etag, sizeof(ca_etag), &eb) < 0) {
			fprintf(stderr, "ctl status: CA: %s%s\n", eb.msg,
				ca_admin ? "; using --ca-admin" : "");
			if (!ca_admin)
				exit_rc = CTL_EXIT_FAIL;
		} else {
			want_etag = ca_etag;
			etag_from = "ca /v1/config ETag";
		}
	}
	if (ca_admin && !want_etag) {
		if (ctl_admin_json(ca_admin, "/config_dump", &ca_dump, &eb) < 0) {
			fprintf(stderr, "ctl status: CA: %s\n", eb.msg);
			exit_rc = CTL_EXIT_FAIL;
		} else {
			want_etag = ctl_jstr(cfg_of(ca_dump), "etag");
			etag_from = "ca admin /config_dump";
		}
	}
	ctl_table_init(&t, head, ARRAY_LEN(head));
	for (int i = 0; i < all.n; i++) {
		char *url = ctl_admin_url(all.items[i]);
		const char *name = strstr(url, "://") ? strstr(url, "://") + 3 : url;
		cJSON *d = NULL, *o = cJSON_CreateObject();
		struct buf rb;
		int st = 0;
		char ver[32] = "-", ready[256] = "-", exp[128], err[512], synced[96] = "-";
		const char *row[8];

		cJSON_AddStringToObject(o, "admin", url);
		if (ctl_admin_json(all.items[i], "/config_dump", &d, &eb) < 0) {
			row[0] = name;
			row[1] = row[2] = row[3] = row[4] = row[6] = "-";
			row[5] = "UNREACHABLE";
			row[7] = eb.msg;
			ctl_table_add(&t, row);
			cJSON_AddBoolToObject(o, "reachable", false);
			cJSON_AddStringToObject(o, "error", eb.msg);
			cJSON_AddItemToArray(arr, o);
			exit_rc = CTL_EXIT_FAIL;
			free(url);
			continue;
		}
		buf_init(&rb, 0);
		if (ctl_admin_fetch(all.items[i], "GET", "/healthz/ready", &st, &rb, &eb) == 0) {
			snprintf(ready, sizeof(ready), "%s",
				 st == 200 ? "READY" : (const char *)buf_rptr(&rb));
			ready[strcspn(ready, "\n")] = '\0';
		}
		buf_fini(&rb);
		if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(cfg_of(d), "version")))
			snprintf(ver, sizeof(ver), "%d", (int)ctl_jnum(cfg_of(d), "version"));
		cert_summary(d, exp, sizeof(exp), err, sizeof(err));
		{
			const cJSON *le = cJSON_GetObjectItemCaseSensitive(cfg_of(d), "lastError");
			if (cJSON_GetArraySize(le) > 0)
				snprintf(err, sizeof(err), "config: %s%s",
					 cJSON_GetArrayItem(le, 0)->valuestring,
					 cJSON_GetArraySize(le) > 1 ? " (+more)" : "");
		}
		if (want_etag)
			snprintf(synced, sizeof(synced), "%s",
				 etag_current(cfg_of(d), want_etag) ? "SYNCED" : "STALE");
		if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg_of(d), "ok")) && cfg_of(d))
			snprintf(synced, sizeof(synced), "ERROR");
		row[0] = name;
		row[1] = ctl_jstr(cJSON_GetObjectItemCaseSensitive(d, "settings"), "component");
		row[2] = ver;
		row[3] = ctl_jstr(cfg_of(d), "etag");
		row[4] = synced;
		row[5] = ready;
		row[6] = exp;
		row[7] = err;
		ctl_table_add(&t, row);
		cJSON_AddBoolToObject(o, "reachable", true);
		cJSON_AddStringToObject(o, "component", row[1]);
		cJSON_AddNumberToObject(o, "configVersion", ctl_jnum(cfg_of(d), "version"));
		cJSON_AddStringToObject(o, "etag", row[3]);
		cJSON_AddStringToObject(o, "httpEtag", ctl_jstr(cfg_of(d), "httpEtag"));
		cJSON_AddStringToObject(o, "caEtag", want_etag ? want_etag : "");
		cJSON_AddStringToObject(o, "caEtagFrom", etag_from);
		cJSON_AddStringToObject(o, "synced", synced);
		cJSON_AddStringToObject(o, "ready", ready);
		cJSON_AddStringToObject(o, "certExpiry", exp);
		cJSON_AddStringToObject(o, "lastError", err);
		cJSON_AddItemToArray(arr, o);
		if (strcmp(ready, "READY") != 0 || strcmp(synced, "STALE") == 0 ||
		    strcmp(synced, "ERROR") == 0)
			exit_rc = CTL_EXIT_FAIL;
		cJSON_Delete(d);
		free(url);
	}
	if (strcmp(out, "json") == 0) {
		ctl_print_json(arr, stdout);
	} else {
		static const size_t sort[] = {0};
		ctl_table_sort(&t, sort, 1);
		ctl_table_print(&t, stdout);
	}
	ctl_table_fini(&t);
	cJSON_Delete(arr);
	cJSON_Delete(ca_dump);
	free(inv);
	return exit_rc;
}

/* ---- bug-report: ustar inside a gzip of stored deflate blocks ------------------------------
 * No zlib in the binary: the gzip stream (RFC 1952) carries the tar as uncompressed deflate
 * blocks (RFC 1951 §3.2.4, BTYPE 00), which every gunzip reads. */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static void tar_add(struct buf *tar, const char *name, const void *data, size_t n, int64_t mtime)
{
	uint8_t h[512] = {0};
	unsigned sum = 0;
	static const uint8_t zero[512];

	snprintf((char *)h, 100, "%s", name);
	memcpy(h + 100, "0000644", 8);
	memcpy(h + 108, "0000000", 8);
	memcpy(h + 116, "0000000", 8);
	snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)n);
	snprintf((char *)h + 136, 12, "%011llo", (unsigned long long)mtime);
	memset(h + 148, ' ', 8);
	h[156] = '0';
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	for (size_t i = 0; i < sizeof(h); i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	h[155] = ' ';
	buf_append(tar, h, sizeof(h));
	buf_append(tar, data, n);
	if (n % 512)
		buf_append(tar, zero, 512 - n % 512);
}

static int write_gzip(const char *path, const struct buf *tar, int64_t mtime, struct errbuf *eb)
{
	FILE *f = fopen(path, "wb");
	const uint8_t *p = buf_rptr(tar);
	size_t n = buf_len(tar), off = 0;
	uint8_t hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, tr[8];
	uint32_t crc;

	if (!f)
		return errbuf_set(eb, E_IO, "cannot write %s: %s", path, strerror(errno));
	hdr[4] = (uint8_t)mtime;
	hdr[5] = (uint8_t)(mtime >> 8);
	hdr[6] = (uint8_t)(mtime >> 16);
	hdr[7] = (uint8_t)(mtime >> 24);
	fwrite(hdr, 1, sizeof(hdr), f);
	do {
		size_t k = MIN(n - off, (size_t)65535);
		uint8_t bh[5] = {off + k == n ? 1 : 0, (uint8_t)k, (uint8_t)(k >> 8), (uint8_t)~k,
				 (uint8_t)(~k >> 8)};
		fwrite(bh, 1, sizeof(bh), f);
		fwrite(p + off, 1, k, f);
		off += k;
	} while (off < n);
	crc_init();
	crc = crc32_update(0, p, n);
	for (int i = 0; i < 4; i++) {
		tr[i] = (uint8_t)(crc >> (8 * i));
		tr[4 + i] = (uint8_t)((uint32_t)n >> (8 * i));
	}
	fwrite(tr, 1, sizeof(tr), f);
	if (fclose(f) != 0)
		return errbuf_set(eb, E_IO, "cannot write %s: %s", path, strerror(errno));
	return 0;
}

/* Never ship key material or credentials, even if some future dump carried them. */
static bool has_secret(const struct buf *b)
{
	const char *s = (const char *)buf_rptr(b);
	size_t n = buf_len(b);

	return memmem(s, n, "PRIVATE KEY", 11) || memmem(s, n, "Bearer ", 7);
}

static void add_fetched(struct buf *tar, struct buf *notes, const char *dir, const char *admin,
			const char *path, const char *file, int64_t now)
{
	struct buf b;
	int st = 0;
	struct errbuf eb = {0};
	char name[200];

	buf_init(&b, 0);
	snprintf(name, sizeof(name), "%s/%s", dir, file);
	if (ctl_admin_fetch(admin, "GET", path, &st, &b, &eb) < 0) {
		buf_printf(notes, "%s: %s\n", name, eb.msg);
	} else if (has_secret(&b)) {
		buf_printf(notes, "%s: left out: it looked like it held a key or token\n", name);
	} else {
		if (st != 200)
			buf_printf(notes, "%s: HTTP %d\n", name, st);
		tar_add(tar, name, buf_rptr(&b), buf_len(&b), now);
	}
	buf_fini(&b);
}

static const char bug_usage[] =
	"ambient ctl bug-report [--admin URL]... [--inventory FILE] [--out FILE.tar.gz]";

int ctl_bug_report_main(int argc, char **argv)
{
	struct flag_list admins = {.n = 0}, all;
	const char *inventory = NULL, *outp = NULL;
	const struct flag fl[] = {
		{"admin", FLAG_STR_LIST, &admins, "admin URL of a component (repeatable)", "URL"},
		{"inventory", FLAG_STR, &inventory, "file with one admin URL per line", "FILE"},
		{"out", FLAG_STR, &outp, "archive to write (ambient-bug-report-<time>.tar.gz)",
		 "FILE"},
	};
	const char *pos[1];
	int npos, rc, reached = 0;
	struct errbuf eb = {0};
	char *inv = NULL, defname[96], ts[32];
	struct buf tar, notes;
	int64_t now = ctl_now();
	time_t tt = (time_t)now;
	struct tm tm;

	rc = ctl_parse("bug-report", bug_usage,
		       "  ambient ctl bug-report --admin 127.0.0.1:15000 --admin 127.0.0.1:15001 "
		       "--out report.tar.gz\n"
		       "contents: per component config_dump.json, metrics.txt, logging.txt, "
		       "ready.txt, connections.json; never private keys or tokens",
		       fl, ARRAY_LEN(fl), argc, argv, pos, 0, &npos);
	if (rc)
		return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
	if (collect_admins(&admins, inventory, &all, &inv, &eb) < 0) {
		fprintf(stderr, "ctl bug-report: %s\n", eb.msg);
		free(inv);
		return CTL_EXIT_FAIL;
	}
	gmtime_r(&tt, &tm);
	strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(defname, sizeof(defname), "ambient-bug-report-%s.tar.gz", ts);
	if (!outp)
		outp = defname;
	buf_init(&tar, 0);
	buf_init(&notes, 0);
	buf_printf(&notes, "ambient ctl %s (%s, %s)\n", AMBIENT_VERSION, AMBIENT_GIT_COMMIT,
		   AMBIENT_BUILD_TYPE);
	for (int i = 0; i < all.n; i++) {
		char *url = ctl_admin_url(all.items[i]);
		char dir[160];
		const char *host = strstr(url, "://") ? strstr(url, "://") + 3 : url;
		cJSON *d = NULL;

		snprintf(dir, sizeof(dir), "ambient-bug-report/%d-%s", i, host);
		for (char *p = dir + 19; *p; p++)
			if (*p == '/' || *p == ':')
				*p = '_';
		if (ctl_admin_json(all.items[i], "/config_dump", &d, &eb) < 0) {
			buf_printf(&notes, "%s: %s\n", url, eb.msg);
			free(url);
			continue;
		}
		cJSON_Delete(d);
		reached++;
		buf_printf(&notes, "%s: reached (%s)\n", url, dir);
		add_fetched(&tar, &notes, dir, all.items[i], "/config_dump", "config_dump.json",
			    now);
		add_fetched(&tar, &notes, dir, all.items[i], "/metrics", "metrics.txt", now);
		add_fetched(&tar, &notes, dir, all.items[i], "/logging", "logging.txt", now);
		add_fetched(&tar, &notes, dir, all.items[i], "/healthz/ready", "ready.txt", now);
		add_fetched(&tar, &notes, dir, all.items[i], "/connections", "connections.json",
			    now);
		free(url);
	}
	tar_add(&tar, "ambient-bug-report/README.txt", buf_rptr(&notes), buf_len(&notes), now);
	{
		static const uint8_t zero[1024];
		buf_append(&tar, zero, sizeof(zero));
	}
	rc = write_gzip(outp, &tar, now, &eb);
	if (rc < 0)
		fprintf(stderr, "ctl bug-report: %s\n", eb.msg);
	else
		printf("wrote %s: %d of %d component%s reached\n%.*s", outp, reached, all.n,
		       all.n == 1 ? "" : "s", (int)buf_len(&notes), (const char *)buf_rptr(&notes));
	buf_fini(&tar);
	buf_fini(&notes);
	free(inv);
	if (rc < 0)
		return CTL_EXIT_FAIL;
	return reached == all.n ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}
