/* Prometheus text exposition format 0.0.4: escaping, number formatting and the scrape itself. */
#include "pkg/metrics/metrics_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- text helpers ---------------------------------------------------------------------------- */

size_t metrics_fmt_double(char *out, size_t cap, double v)
{
	int n = 0;

	if (isnan(v))
		return (size_t)snprintf(out, cap, "NaN");
	if (isinf(v))
		return (size_t)snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
	/* 15 digits print integers and short decimals plainly ("1500", "0.1"); 17 always
	 * round-trip. */
	for (int p = 15; p <= 17; p++) {
		n = snprintf(out, cap, "%.*g", p, v);
		if (strtod(out, NULL) == v)
			break;
	}
	return (size_t)n;
}

bool metrics_utf8_valid(const char *s, size_t n)
{
	return utf8_valid((const uint8_t *)s, n);
}

size_t metrics_utf8_sanitize(char *out, const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq_len(p + i, n - i);
		if (k) {
			memcpy(out + o, p + i, k);
			o += k;
			i += k;
		} else {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
		}
	}
	return o;
}

size_t metrics_escape(char *out, const char *s, size_t n, bool quotes)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\\' || (quotes && c == '"')) {
			out[o++] = '\\';
			out[o++] = c;
		} else if (c == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = c;
		}
	}
	return o;
}

/* ---- rendering ------------------------------------------------------------------------------- */

static const char *type_name(enum metrics_type t)
{
	switch (t) {
	case METRICS_COUNTER: return "counter";
	case METRICS_GAUGE: return "gauge";
	case METRICS_HISTOGRAM: return "histogram";
	}
	return "untyped";
}

static int render_header(const struct metrics_family *f, struct buf *out)
{
	return buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help_text, f->name,
			  type_name(f->type));
}

/* One sample line: name[suffix]{labels[,extra]} value */
static int render_line(struct buf *out, const char *name, const char *suffix, const char *labels,
		       const char *extra, const char *value)
{
	bool any = *labels || extra;

	return buf_printf(out, "%s%s%s%s%s%s%s %s\n", name, suffix, any ? "{" : "", labels,
			  *labels && extra ? "," : "", extra ? extra : "", any ? "}" : "", value);
}

static int render_histogram(const struct metrics_series *s, struct buf *out)
{
	const struct metrics_family *f = s->fam;
	char extra[64];
	char num[32];
	uint64_t cum = 0;
	int rc;

	for (size_t i = 0; i <= f->nbuckets; i++) {
		cum += metrics_cell_sum(s, i);
		snprintf(extra, sizeof(extra), "le=\"%s\"", i < f->nbuckets ? f->le[i] : "+Inf");
		snprintf(num, sizeof(num), "%llu", (unsigned long long)cum);
		rc = render_line(out, f->name, "_bucket", s->text, extra, num);
		if (rc < 0)
			return rc;
	}
	metrics_fmt_double(num, sizeof(num), metrics_cell_sum_double(s, f->nbuckets + 1));
	rc = render_line(out, f->name, "_sum", s->text, NULL, num);
	if (rc < 0)
		return rc;
	/* The count is the +Inf bucket of the same read, so the two always agree. */
	snprintf(num, sizeof(num), "%llu", (unsigned long long)cum);
	return render_line(out, f->name, "_count", s->text, NULL, num);
}

static int render_series(const struct metrics_series *s, struct buf *out)
{
	char num[32];

	switch (s->fam->type) {
	case METRICS_COUNTER:
		snprintf(num, sizeof(num), "%llu", (unsigned long long)metrics_counter_value(s));
		break;
	case METRICS_GAUGE:
		snprintf(num, sizeof(num), "%lld", (long long)metrics_gauge_value(s));
		break;
	case METRICS_HISTOGRAM: return render_histogram(s, out);
	}
	return render_line(out, s->fam->name, "", s->text, NULL, num);
}

static int series_cmp(const void *a, const void *b)
{
	const struct metrics_series *x = *(const struct metrics_series *const *)a;
	const struct metrics_series *y = *(const struct metrics_series *const *)b;

	return strcmp(x->text, y->text);
}

static int render_family(struct metrics_family *f, struct buf *out)
{
	struct metrics_series **list;
	char num[32];
	size_t n;
	int rc = 0;

	if (f->fn) {
		metrics_fmt_double(num, sizeof(num), f->fn(f->fn_ctx));
		rc = render_header(f, out);
		return rc < 0 ? rc : render_line(out, f->name, "", "", NULL, num);
	}
	/* Series are never freed before the registry, so a copy of the list can be read unlocked.
	 */
	pthread_rwlock_rdlock(&f->lock);
	n = f->nlist;
	list = xmalloc((n ? n : 1) * sizeof(*list));
	if (n)
		memcpy(list, f->list, n * sizeof(*list));
	pthread_rwlock_unlock(&f->lock);
	if (n == 0)
		goto out;
	qsort(list, n, sizeof(*list), series_cmp);
	rc = render_header(f, out);
	for (size_t i = 0; i < n && rc >= 0; i++)
		rc = render_series(list[i], out);
out:
	free(list);
	return rc;
}

int metrics_render(struct metrics_registry *r, struct buf *out)
{
	struct metrics_family **fams;
	size_t n;
	int rc = 0;

	if (!r || !out)
		return -E_INVAL;
	/* Families are never removed, so render from a snapshot without holding the registry. */
	pthread_rwlock_rdlock(&r->lock);
	n = r->nfams;
	fams = xmalloc((n ? n : 1) * sizeof(*fams));
	if (n)
		memcpy(fams, r->fams, n * sizeof(*fams));
	pthread_rwlock_unlock(&r->lock);
	for (size_t i = 0; i < n && rc >= 0; i++)
		rc = render_family(fams[i], out);
	free(fams);
	return rc < 0 ? rc : 0;
}
