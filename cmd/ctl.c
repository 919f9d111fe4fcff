/* `ambient ctl`: the troubleshooting CLI's dispatcher and the helpers its verbs share. */
#include "cmd/ctl.h"
#include "cmd/cmd.h"
#include "pkg/httpc/httpc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct ctl_verb verbs[] = {
	{"check", ctl_check_main, "find problems in a mesh config (like istioctl analyze)"},
	{"explain", ctl_explain_main,
	 "walk one connection through the mesh: route, waypoint, identity, policies, verdict"},
	{"describe", ctl_describe_main,
	 "ambient-aware describe of a workload or service (waypoint, policies, mTLS)"},
	{"cert", ctl_cert_main, "cert inspect FILE|-: decode a certificate chain"},
	{"workloads", ctl_workloads_main, "workloads a running proxy knows (admin API)"},
	{"services", ctl_services_main, "services a running proxy knows (admin API)"},
	{"policies", ctl_policies_main, "authorization policies a running proxy knows"},
	{"certs", ctl_certs_main, "certificates of a running proxy"},
	{"connections", ctl_connections_main, "live connections of a running ztunnel"},
	{"config", ctl_config_main, "raw /config_dump of a running process"},
	{"log", ctl_log_main, "show or set the log level of a running process"},
	{"status", ctl_status_main,
	 "config version, readiness, certificates and errors of running proxies"},
	{"bug-report", ctl_bug_report_main,
	 "one archive with every reachable component's state (no keys, no tokens)"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: ambient ctl <verb> [flags]\n\nverbs:\n");
	for (size_t i = 0; i < ARRAY_LEN(verbs); i++)
		fprintf(out, "  %-12s %s\n", verbs[i].name, verbs[i].summary);
	fprintf(out, "\n'ambient ctl <verb> --help' shows a verb's flags and an example.\n"
		     "Exit codes: 0 ok, 1 failure, 2 usage, 3 check found warnings, 4 check "
		     "found errors, 5 explain: denied or failing.\n");
}

int cmd_ctl(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CTL_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return CTL_EXIT_OK;
	}
	for (size_t i = 0; i < ARRAY_LEN(verbs); i++)
		if (strcmp(verbs[i].name, argv[1]) == 0)
			return verbs[i].main(argc - 1, argv + 1);
	fprintf(stderr, "ctl: unknown verb '%s'\n\n", argv[1]);
	usage(stderr);
	return CTL_EXIT_USAGE;
}

int ctl_parse(const char *verb, const char *usage_line, const char *example, const struct flag *f,
	      size_t n, int argc, char **argv, const char **pos, int maxpos, int *npos)
{
	struct errbuf eb = {0};
	bool help = false;

	if (flags_parse(f, n, argc, argv, pos, maxpos, npos, &help, &eb) < 0) {
		fprintf(stderr, "ctl %s: %s\n", verb, eb.msg);
		return -1;
	}
	if (help) {
		flags_usage(stdout, usage_line, f, n);
		if (example)
			printf("\nexample:\n%s\n", example);
		return 1;
	}
	return 0;
}

/* ---- sources ---------------------------------------------------------------------------------
 */

static bool is_url(const char *s)
{
	return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

static int read_stream(FILE *f, const char *name, size_t max, struct buf *b, struct errbuf *eb)
{
	char chunk[65536];
	size_t r;

	while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (buf_len(b) + r > max)
			return errbuf_set(eb, E_LIMIT, "%s: larger than %zu bytes", name, max);
		buf_append(b, chunk, r);
	}
	if (ferror(f))
		return errbuf_set(eb, E_IO, "cannot read %s: %s", name, strerror(errno));
	return 0;
}

int ctl_read_source(const char *src, const char *ca_root, const char *token_file, size_t max,
		    char **text, size_t *len, struct errbuf *eb)
{
	struct buf b;
	int rc = 0;

	*text = NULL;
	*len = 0;
	buf_init(&b, 0);
	if (is_url(src)) {
		struct httpc c;
		struct httpc_opts o = {
			.ca_root = ca_root, .ca_root_what = "--ca-root", .peer_what = "server"};
		struct httpc_req rq = {.max_body = max,
				       .wakefd = -1,
				       .accept = "application/json",
				       .token_file = token_file};
		struct httpc_resp rs;

		if (strncmp(src, "https://", 8) == 0 && (!ca_root || !*ca_root)) {
			buf_fini(&b);
			return errbuf_set(eb, E_INVAL,
					  "%s: an https URL needs --ca-root FILE (the root its "
					  "server certificate chains to)",
					  src);
		}
		if (httpc_init(&c, src, &o, eb) < 0) {
			errbuf_prefix(eb, "bad URL %s", src);
			httpc_fini(&c);
			buf_fini(&b);
			return -E_INVAL;
		}
		rc = httpc_fetch(&c, &rq, &rs, eb);
		httpc_fini(&c);
		if (rc < 0) {
			errbuf_prefix(eb, "cannot fetch %s", src);
		} else if (rs.status != 200) {
			rc = errbuf_set(eb, E_PROTO, "cannot fetch %s: HTTP %d", src, rs.status);
		} else {
			buf_append(&b, buf_rptr(&rs.body), buf_len(&rs.body));
		}
		httpc_resp_fini(&rs);
	} else if (strcmp(src, "-") == 0) {
		rc = read_stream(stdin, "standard input", max, &b, eb);
	} else {
		FILE *f = fopen(src, "rb");

		if (!f) {
			buf_fini(&b);
			return errbuf_set(eb, E_IO, "cannot read %s: %s", src, strerror(errno));
		}
		rc = read_stream(f, src, max, &b, eb);
		fclose(f);
	}
	if (rc < 0) {
		buf_fini(&b);
		return rc;
	}
	*len = buf_len(&b);
	*text = xmalloc(*len + 1);
	memcpy(*text, buf_rptr(&b), *len);
	(*text)[*len] = '\0';
	buf_fini(&b);
	return 0;
}

struct config *ctl_load_config(const char *src, const char *ca_root, const char *token_file,
			       struct errlist *errs, struct errlist *warnings, struct errbuf *eb)
{
	char *text;
	size_t len;
	struct config *c;
	struct config_parse_opts o = {.warnings = warnings};
	const char *name = strrchr(src, '/');

	if (ctl_read_source(src, ca_root, token_file, CONFIG_MAX_BYTES, &text, &len, eb) < 0)
		return NULL;
	/* Messages name the file, not the directory it came from (stable across machines). */
	name = is_url(src) || !name ? src : name + 1;
	c = config_parse_ex(name, text, len, 1, &o, errs);
	free(text);
	if (!c)
		errbuf_set(eb, E_PARSE, "%s: mesh config is invalid", src);
	return c;
}

/* ---- admin API -------------------------------------------------------------------------------
 */

char *ctl_admin_url(const char *admin)
{
	size_t n;

	if (!admin || !*admin)
		admin = CTL_DEFAULT_ADMIN;
	n = strlen(admin);
	while (n > 0 && admin[n - 1] == '/')
		n--;
	if (is_url(admin))
		return xstrndup(admin, n);
	return xasprintf("http://%.*s", (int)n, admin);
}

int ctl_admin_fetch(const char *admin, const char *method, const char *path, int *status,
		    struct buf *body, struct errbuf *eb)
{
	char *base = ctl_admin_url(admin);
	char *url = xasprintf("%s%s", base, path);
	struct httpc c;
	struct httpc_opts o = {.peer_what = "admin", .connect_timeout_ms = 3000};
	struct httpc_req rq = {.method = method, .max_body = 64u << 20, .wakefd = -1};
	struct httpc_resp rs;
	struct errbuf e2 = {0};
	int rc;

	if (strncmp(base, "https://", 8) == 0) {
		rc = errbuf_set(eb, E_INVAL,
				"admin URL %s: the admin API is plain http on loopback "
				"(e.g. http://127.0.0.1:15000)",
				base);
		goto out;
	}
	if (httpc_init(&c, url, &o, &e2) < 0) {
		httpc_fini(&c);
		rc = errbuf_set(eb, E_INVAL, "bad admin URL %s: %s", base, e2.msg);
		goto out;
	}
	rc = httpc_fetch(&c, &rq, &rs, &e2);
	httpc_fini(&c);
	if (rc < 0) {
		/* httpc says "connect 127.0.0.1:15000: connection refused": keep only the
		 * reason, the URL is named once. */
		const char *why = e2.msg;
		const char *colon = strncmp(why, "connect ", 8) == 0 ? strstr(why, ": ") : NULL;

		if (colon)
			why = colon + 2;
		errbuf_set(eb, -rc,
			   "cannot reach admin at %s: %s (is the process running? pass --admin "
			   "URL)",
			   base, why);
		httpc_resp_fini(&rs);
		goto out;
	}
	*status = rs.status;
	buf_append(body, buf_rptr(&rs.body), buf_len(&rs.body));
	/* A NUL past the end, so the body can be read as a string. */
	buf_append(body, "", 1);
	body->wr--;
	httpc_resp_fini(&rs);
	rc = 0;
out:
	free(url);
	free(base);
	return rc;
}

int ctl_admin_json(const char *admin, const char *path, cJSON **out, struct errbuf *eb)
{
	struct buf b;
	int st = 0, rc;
	struct json_error je;

	*out = NULL;
	buf_init(&b, 0);
	rc = ctl_admin_fetch(admin, "GET", path, &st, &b, eb);
	if (rc < 0)
		goto out;
	if (st != 200) {
		char *base = ctl_admin_url(admin);
		rc = errbuf_set(eb, E_PROTO, "admin at %s answered %s with HTTP %d: %.200s", base,
				path, st, (const char *)buf_rptr(&b));
		free(base);
		goto out;
	}
	rc = json_parse((const char *)buf_rptr(&b), buf_len(&b), NULL, out, &je);
	if (rc < 0) {
		char *base = ctl_admin_url(admin);
		errbuf_set(eb, E_PARSE,
			   "admin at %s: %s is not JSON (%s); is this an ambient admin "
			   "port?",
			   base, path, je.msg);
		free(base);
	}
out:
	buf_fini(&b);
	return rc;
}

/* ---- tables ----------------------------------------------------------------------------------
 */

void ctl_table_init(struct ctl_table *t, const char *const *head, size_t ncols)
{
	memset(t, 0, sizeof(*t));
	t->head = head;
	t->ncols = ncols;
}

void ctl_table_add(struct ctl_table *t, const char *const *row)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cells = xrealloc(t->cells, t->cap * t->ncols * sizeof(char *));
	}
	for (size_t i = 0; i < t->ncols; i++)
		t->cells[t->nrows * t->ncols + i] = xstrdup(row[i] && *row[i] ? row[i] : "-");
	t->nrows++;
}

static const size_t *sort_cols;
static size_t sort_ncols, sort_width;

static int row_cmp(const void *a, const void *b)
{
	char *const *ra = a, *const *rb = b;

	for (size_t i = 0; i < sort_ncols; i++) {
		int c = strcmp(ra[sort_cols[i]], rb[sort_cols[i]]);
		if (c)
			return c;
	}
	for (size_t i = 0; i < sort_width; i++) {
		int c = strcmp(ra[i], rb[i]);
		if (c)
			return c;
	}
	return 0;
}

void ctl_table_sort(struct ctl_table *t, const size_t *cols, size_t ncols)
{
	sort_cols = cols;
	sort_ncols = ncols;
	sort_width = t->ncols;
	if (t->nrows > 1)
		qsort(t->cells, t->nrows, t->ncols * sizeof(char *), row_cmp);
}

void ctl_table_print(const struct ctl_table *t, FILE *out)
{
	size_t w[32] = {0};

	for (size_t c = 0; c < t->ncols && c < ARRAY_LEN(w); c++) {
		w[c] = strlen(t->head[c]);
		for (size_t r = 0; r < t->nrows; r++)
			w[c] = MAX(w[c], strlen(t->cells[r * t->ncols + c]));
	}
	for (size_t r = 0; r <= t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = r == 0 ? t->head[c] : t->cells[(r - 1) * t->ncols + c];
			if (c + 1 == t->ncols)
				fprintf(out, "%s\n", s);
			else
				fprintf(out, "%-*s  ", (int)w[c], s);
		}
	}
}

void ctl_table_fini(struct ctl_table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

/* ---- JSON and time ---------------------------------------------------------------------------
 */

void ctl_print_json(const cJSON *v, FILE *out)
{
	struct buf b;
	struct json_writer w;

	buf_init(&b, 0);
	json_writer_init(&w, &b, 2);
	json_write_cjson(&w, v);
	if (json_writer_finish(&w) == 0)
		fprintf(out, "%.*s\n", (int)buf_len(&b), (const char *)buf_rptr(&b));
	buf_fini(&b);
}

const char *ctl_jstr(const cJSON *o, const char *key)
{
	const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;

	return cJSON_IsString(v) && v->valuestring ? v->valuestring : "";
}

double ctl_jnum(const cJSON *o, const char *key)
{
	const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int64_t ctl_parse_time(const char *s)
{
	struct tm tm = {0};
	char *end;

	if (!s || !*s)
		return -1;
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end)
		return -1;
	return (int64_t)timegm(&tm);
}

void ctl_format_left(int64_t secs, char *out, size_t cap)
{
	int64_t a = secs < 0 ? -secs : secs;
	char t[32];

	if (a >= 2 * 86400)
		snprintf(t, sizeof(t), "%lldd", (long long)(a / 86400));
	else if (a >= 3600)
		snprintf(t, sizeof(t), "%lldh%lldm", (long long)(a / 3600),
			 (long long)(a % 3600 / 60));
	else if (a >= 60)
		snprintf(t, sizeof(t), "%lldm", (long long)(a / 60));
	else
		snprintf(t, sizeof(t), "%llds", (long long)a);
	if (secs < 0)
		snprintf(out, cap, "expired %s ago", t);
	else
		snprintf(out, cap, "%s", t);
}

int64_t ctl_now(void)
{
	const char *e = getenv("AMBIENT_CTL_NOW");

	if (e && *e) {
		int64_t t = ctl_parse_time(e);
		if (t >= 0)
			return t;
	}
	return (int64_t)time(NULL);
}
