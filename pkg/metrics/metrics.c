/* The metrics registry: family registration, series lookup under a bound, and the sharded hot path.
 */
#include "pkg/metrics/metrics_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DROPPED_NAME "ambient_metrics_series_dropped_total"
#define DROPPED_HELP                                                                               \
	"Label sets refused because their metric family reached its series limit; their "          \
	"updates went to the family's overflow series."

/* ---- thread shard ---------------------------------------------------------------------------- */

static _Thread_local unsigned metrics_tls_shard;

int metrics_thread_set_index(int idx)
{
	if (idx < 0 || idx >= METRICS_MAX_SHARDS)
		return -E_INVAL;
	metrics_tls_shard = (unsigned)idx;
	return 0;
}

int metrics_thread_index(void)
{
	return (int)metrics_tls_shard;
}

static inline _Atomic uint64_t *my_block(const struct metrics_series *s)
{
	unsigned i = metrics_tls_shard;

	if (i >= s->nshards)
		i %= s->nshards;
	return s->cells + (size_t)i * s->stride;
}

/* ---- fast path ------------------------------------------------------------------------------- */

void metrics_counter_add(struct metrics_series *s, uint64_t n)
{
	if (!s)
		return;
	atomic_fetch_add_explicit(my_block(s), n, memory_order_relaxed);
}

void metrics_counter_inc(struct metrics_series *s)
{
	metrics_counter_add(s, 1);
}

void metrics_gauge_add(struct metrics_series *s, int64_t d)
{
	if (!s)
		return;
	atomic_fetch_add_explicit(my_block(s), (uint64_t)d, memory_order_relaxed);
}

void metrics_gauge_inc(struct metrics_series *s)
{
	metrics_gauge_add(s, 1);
}

void metrics_gauge_dec(struct metrics_series *s)
{
	metrics_gauge_add(s, -1);
}

void metrics_gauge_set(struct metrics_series *s, int64_t v)
{
	if (!s)
		return;
	atomic_store_explicit(&s->base, (int64_t)((uint64_t)v - metrics_cell_sum(s, 0)),
			      memory_order_relaxed);
}

void metrics_histogram_observe(struct metrics_series *s, double v)
{
	const struct metrics_family *f;
	_Atomic uint64_t *blk;
	size_t lo = 0;
	size_t hi;
	uint64_t old;

	if (!s || isnan(v))
		return;
	f = s->fam;
	hi = f->nbuckets;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v <= f->bounds[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	blk = my_block(s);
	atomic_fetch_add_explicit(&blk[lo], 1, memory_order_relaxed);
	/* Only threads sharing this shard contend here, so the CAS loop rarely repeats. */
	old = atomic_load_explicit(&blk[f->nbuckets + 1], memory_order_relaxed);
	for (;;) {
		double d;
		uint64_t nw;
		memcpy(&d, &old, sizeof(d));
		d += v;
		memcpy(&nw, &d, sizeof(nw));
		if (atomic_compare_exchange_weak_explicit(&blk[f->nbuckets + 1], &old, nw,
							  memory_order_relaxed,
							  memory_order_relaxed))
			break;
	}
}

/* ---- reading --------------------------------------------------------------------------------- */

uint64_t metrics_cell_sum(const struct metrics_series *s, size_t i)
{
	uint64_t sum = 0;

	for (uint32_t k = 0; k < s->nshards; k++)
		sum += atomic_load_explicit(&s->cells[(size_t)k * s->stride + i],
					    memory_order_relaxed);
	return sum;
}

double metrics_cell_sum_double(const struct metrics_series *s, size_t i)
{
	double sum = 0;

	for (uint32_t k = 0; k < s->nshards; k++) {
		uint64_t bits = atomic_load_explicit(&s->cells[(size_t)k * s->stride + i],
						     memory_order_relaxed);
		double d;
		memcpy(&d, &bits, sizeof(d));
		sum += d;
	}
	return sum;
}

uint64_t metrics_counter_value(const struct metrics_series *s)
{
	return s ? metrics_cell_sum(s, 0) : 0;
}

int64_t metrics_gauge_value(const struct metrics_series *s)
{
	if (!s)
		return 0;
	return (int64_t)((uint64_t)atomic_load_explicit(&s->base, memory_order_relaxed) +
			 metrics_cell_sum(s, 0));
}

uint64_t metrics_histogram_count(const struct metrics_series *s)
{
	uint64_t n = 0;

	if (!s)
		return 0;
	for (size_t i = 0; i <= s->fam->nbuckets; i++)
		n += metrics_cell_sum(s, i);
	return n;
}

double metrics_histogram_sum(const struct metrics_series *s)
{
	return s ? metrics_cell_sum_double(s, s->fam->nbuckets + 1) : 0;
}

uint64_t metrics_histogram_bucket(const struct metrics_series *s, size_t i)
{
	uint64_t n = 0;

	if (!s)
		return 0;
	for (size_t k = 0; k <= i && k <= s->fam->nbuckets; k++)
		n += metrics_cell_sum(s, k);
	return n;
}

/* ---- series ---------------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Length of v kept: at most METRICS_MAX_VALUE_LEN, cut before a multi-byte character rather than
 * through it. */
static size_t value_len(const char *v)
{
	size_t n = strnlen(v, METRICS_MAX_VALUE_LEN + 1);

	if (n <= METRICS_MAX_VALUE_LEN)
		return n;
	n = METRICS_MAX_VALUE_LEN;
	for (int k = 0; k < 3 && n > 0 && ((uint8_t)v[n] & 0xC0) == 0x80; k++)
		n--;
	return n;
}

/* Builds the lookup key of a tuple of label values (caller frees). */
static char *key_build(const struct metrics_family *f, const char *const *values, size_t *len)
{
	size_t cap = 1;
	char *key;
	size_t n = 0;

	for (size_t i = 0; i < f->nlabels; i++)
		cap += 3 * value_len(values[i] ? values[i] : "") + 1;
	key = xmalloc(cap);
	for (size_t i = 0; i < f->nlabels; i++) {
		const char *v = values[i] ? values[i] : "";
		size_t vn = value_len(v);
		if (i > 0)
			key[n++] = '\xff';
		if (metrics_utf8_valid(v, vn)) {
			memcpy(key + n, v, vn);
			n += vn;
		} else {
			n += metrics_utf8_sanitize(key + n, v, vn);
		}
	}
	key[n] = '\0';
	*len = n;
	return key;
}

/* Renders a="x",b="y" from a key. */
static char *text_build(const struct metrics_family *f, const char *key, size_t key_len)
{
	size_t cap = 2 * key_len + 1;
	const char *p = key;
	const char *end = key + key_len;
	char *text;
	size_t n = 0;

	for (size_t i = 0; i < f->nlabels; i++)
		cap += strlen(f->labels[i]) + 4;
	text = xmalloc(cap);
	for (size_t i = 0; i < f->nlabels; i++) {
		const char *sep = memchr(p, 0xff, (size_t)(end - p));
		size_t vn = sep ? (size_t)(sep - p) : (size_t)(end - p);
		size_t ln = strlen(f->labels[i]);
		if (i > 0)
			text[n++] = ',';
		memcpy(text + n, f->labels[i], ln);
		n += ln;
		text[n++] = '=';
		text[n++] = '"';
		n += metrics_escape(text + n, p, vn, true);
		text[n++] = '"';
		p += vn + (sep ? 1 : 0);
	}
	text[n] = '\0';
	return text;
}

static struct metrics_series *series_new(struct metrics_family *f, char *key_take, size_t key_len,
					 uint64_t hash)
{
	struct metrics_series *s = xcalloc(1, sizeof(*s));
	unsigned nshards = f->reg->nshards;
	size_t bytes;
	void *cells = NULL;

	s->fam = f;
	s->nshards = nshards;
	s->stride = (f->ncells + METRICS_LINE_CELLS - 1) / METRICS_LINE_CELLS * METRICS_LINE_CELLS;
	bytes = (size_t)nshards * s->stride * sizeof(uint64_t);
	if (posix_memalign(&cells, METRICS_LINE_CELLS * sizeof(uint64_t), bytes) != 0)
		die("out of memory (%zu bytes)", bytes);
	memset(cells, 0, bytes);
	s->cells = cells;
	atomic_init(&s->base, 0);
	s->hash = hash;
	s->key = key_take;
	s->key_len = key_len;
	s->text = text_build(f, key_take, key_len);
	return s;
}

static void series_free(struct metrics_series *s)
{
	free((void *)s->cells);
	free(s->key);
	free(s->text);
	free(s);
}

static struct metrics_series *table_find(const struct metrics_family *f, uint64_t h,
					 const char *key, size_t len)
{
	size_t mask = f->table_cap - 1;

	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct metrics_series *s = f->table[i];
		if (!s)
			return NULL;
		if (s->hash == h && s->key_len == len && memcmp(s->key, key, len) == 0)
			return s;
	}
}

static void table_put(struct metrics_series **table, size_t cap, struct metrics_series *s)
{
	size_t i = s->hash & (cap - 1);

	while (table[i])
		i = (i + 1) & (cap - 1);
	table[i] = s;
}

/* Inserts a new series (write lock held); the table stays at most half full. */
static void family_insert(struct metrics_family *f, struct metrics_series *s)
{
	if ((f->nlist + 1) * 2 > f->table_cap) {
		size_t cap = f->table_cap * 2;
		struct metrics_series **t = xcalloc(cap, sizeof(*t));
		for (size_t i = 0; i < f->nlist; i++)
			table_put(t, cap, f->list[i]);
		free(f->table);
		f->table = t;
		f->table_cap = cap;
	}
	table_put(f->table, f->table_cap, s);
	if (f->nlist == f->list_cap) {
		f->list_cap = f->list_cap ? f->list_cap * 2 : 16;
		f->list = xrealloc(f->list, f->list_cap * sizeof(*f->list));
	}
	f->list[f->nlist++] = s;
}

/* The overflow series (write lock held): the one whose values are all METRICS_OVERFLOW_VALUE,
 * reusing a real series with those values if one exists so no label set appears twice. */
static struct metrics_series *family_overflow(struct metrics_family *f)
{
	const char *vals[METRICS_MAX_LABELS];
	struct metrics_series *s;
	size_t len;
	char *key;
	uint64_t h;

	if (f->overflow)
		return f->overflow;
	for (size_t i = 0; i < f->nlabels; i++)
		vals[i] = METRICS_OVERFLOW_VALUE;
	key = key_build(f, vals, &len);
	h = hash_bytes(key, len);
	s = table_find(f, h, key, len);
	if (s) {
		free(key);
	} else {
		s = series_new(f, key, len, h);
		family_insert(f, s);
	}
	s->overflow = true;
	f->overflow = s;
	return s;
}

struct metrics_series *metrics_with(struct metrics_family *f, const char *const *values)
{
	static const char *const none[METRICS_MAX_LABELS];
	struct metrics_series *s;
	bool dropped = false;
	size_t len;
	char *key;
	uint64_t h;

	if (!f || f->fn)
		return NULL;
	key = key_build(f, values ? values : none, &len);
	h = hash_bytes(key, len);
	pthread_rwlock_rdlock(&f->lock);
	s = table_find(f, h, key, len);
	pthread_rwlock_unlock(&f->lock);
	if (s) {
		free(key);
		return s;
	}
	pthread_rwlock_wrlock(&f->lock);
	s = table_find(f, h, key, len);
	if (s) {
		free(key);
	} else if (f->nreal < f->max_series) {
		s = series_new(f, key, len, h);
		family_insert(f, s);
		f->nreal++;
	} else {
		free(key);
		s = family_overflow(f);
		dropped = true;
	}
	pthread_rwlock_unlock(&f->lock);
	/* Outside f's lock: the dropped family has its own. It never counts itself (no recursion).
	 */
	if (dropped && f != f->reg->dropped) {
		const char *name[1] = {f->name};
		metrics_counter_inc(metrics_with(f->reg->dropped, name));
	}
	return s;
}

static struct metrics_series *with_type(struct metrics_family *f, const char *const *values,
					enum metrics_type t)
{
	if (!f || f->type != t)
		return NULL;
	return metrics_with(f, values);
}

struct metrics_series *metrics_counter_with(struct metrics_family *f, const char *const *values)
{
	return with_type(f, values, METRICS_COUNTER);
}

struct metrics_series *metrics_gauge_with(struct metrics_family *f, const char *const *values)
{
	return with_type(f, values, METRICS_GAUGE);
}

struct metrics_series *metrics_histogram_with(struct metrics_family *f, const char *const *values)
{
	return with_type(f, values, METRICS_HISTOGRAM);
}

bool metrics_series_is_overflow(const struct metrics_series *s)
{
	return s && s->overflow;
}

size_t metrics_family_series_count(struct metrics_family *f)
{
	size_t n;

	if (!f)
		return 0;
	pthread_rwlock_rdlock(&f->lock);
	n = f->nlist;
	pthread_rwlock_unlock(&f->lock);
	return n;
}

const char *metrics_family_name(const struct metrics_family *f)
{
	return f->name;
}

enum metrics_type metrics_family_type(const struct metrics_family *f)
{
	return f->type;
}

/* ---- families -------------------------------------------------------------------------------- */

static bool name_ok(const char *s)
{
	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static bool has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s);
	size_t k = strlen(suf);

	return n >= k && strcmp(s + n - k, suf) == 0;
}

static int check_labels(const struct metrics_def *d, struct errbuf *eb)
{
	if (d->nlabels > METRICS_MAX_LABELS)
		return errbuf_set(eb, E_INVAL, "metrics: %s: %zu labels (at most %d)", d->name,
				  d->nlabels, METRICS_MAX_LABELS);
	if (d->nlabels && d->fn)
		return errbuf_set(eb, E_INVAL, "metrics: %s: callback metrics take no labels",
				  d->name);
	for (size_t i = 0; i < d->nlabels; i++) {
		const char *l = d->labels[i];
		if (!name_ok(l) || strncmp(l, "__", 2) == 0)
			return errbuf_set(eb, E_INVAL, "metrics: %s: invalid label name \"%s\"",
					  d->name, l ? l : "(null)");
		/* promtool: "le" belongs to histograms, "quantile" to summaries. */
		if (strcmp(l, "le") == 0 || strcmp(l, "quantile") == 0)
			return errbuf_set(eb, E_INVAL, "metrics: %s: label name \"%s\" is reserved",
					  d->name, l);
		for (size_t j = 0; j < i; j++)
			if (strcmp(d->labels[j], l) == 0)
				return errbuf_set(eb, E_INVAL,
						  "metrics: %s: duplicate label name \"%s\"",
						  d->name, l);
	}
	return 0;
}

/* Buckets without a trailing +Inf (which is always implied). */
static size_t effective_buckets(const struct metrics_def *d)
{
	size_t n = d->nbuckets;

	if (n > 0 && isinf(d->buckets[n - 1]) && d->buckets[n - 1] > 0)
		n--;
	return n;
}

static int check_buckets(const struct metrics_def *d, struct errbuf *eb)
{
	size_t n = effective_buckets(d);

	if (d->type != METRICS_HISTOGRAM) {
		if (d->nbuckets)
			return errbuf_set(eb, E_INVAL, "metrics: %s: buckets on a non-histogram",
					  d->name);
		return 0;
	}
	if (d->fn)
		return errbuf_set(eb, E_INVAL, "metrics: %s: histograms cannot be callbacks",
				  d->name);
	if (n > METRICS_MAX_BUCKETS)
		return errbuf_set(eb, E_INVAL, "metrics: %s: %zu buckets (at most %d)", d->name, n,
				  METRICS_MAX_BUCKETS);
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(d->buckets[i]) || (i > 0 && !(d->buckets[i] > d->buckets[i - 1])))
			return errbuf_set(eb, E_INVAL,
					  "metrics: %s: bucket %zu: bounds must be finite and "
					  "strictly increasing",
					  d->name, i);
	}
	return 0;
}

static int def_check(const struct metrics_def *d, struct errbuf *eb)
{
	if (!name_ok(d->name))
		return errbuf_set(eb, E_INVAL, "metrics: invalid metric name \"%s\"",
				  d->name ? d->name : "(null)");
	if (d->type != METRICS_COUNTER && d->type != METRICS_GAUGE && d->type != METRICS_HISTOGRAM)
		return errbuf_set(eb, E_INVAL, "metrics: %s: unknown type %d", d->name,
				  (int)d->type);
	if (!d->help || !*d->help || !metrics_utf8_valid(d->help, strlen(d->help)))
		return errbuf_set(eb, E_INVAL, "metrics: %s: help text missing or not UTF-8",
				  d->name);
	if (d->type == METRICS_COUNTER && !has_suffix(d->name, "_total"))
		return errbuf_set(eb, E_INVAL, "metrics: %s: counter names must end in _total",
				  d->name);
	/* These suffixes name a histogram's own series; on anything else promtool objects. */
	if (d->type != METRICS_HISTOGRAM &&
	    (has_suffix(d->name, "_bucket") || has_suffix(d->name, "_count") ||
	     has_suffix(d->name, "_sum")))
		return errbuf_set(
			eb, E_INVAL,
			"metrics: %s: _bucket, _count and _sum are reserved for histograms",
			d->name);
	if (d->nlabels && !d->labels)
		return errbuf_set(eb, E_INVAL, "metrics: %s: label names missing", d->name);
	if (d->nbuckets && !d->buckets)
		return errbuf_set(eb, E_INVAL, "metrics: %s: buckets missing", d->name);
	if (check_labels(d, eb) < 0)
		return -E_INVAL;
	return check_buckets(d, eb);
}

static bool def_same(const struct metrics_family *f, const struct metrics_def *d)
{
	size_t nb = effective_buckets(d);

	if (f->type != d->type || strcmp(f->help, d->help) != 0 || f->nlabels != d->nlabels ||
	    f->nbuckets != nb || f->fn != d->fn || f->fn_ctx != d->fn_ctx)
		return false;
	for (size_t i = 0; i < f->nlabels; i++)
		if (strcmp(f->labels[i], d->labels[i]) != 0)
			return false;
	for (size_t i = 0; i < nb; i++)
		if (f->bounds[i] != d->buckets[i])
			return false;
	return true;
}

static char *help_escape(const char *help)
{
	size_t n = strlen(help);
	char *out = xmalloc(2 * n + 1);

	out[metrics_escape(out, help, n, false)] = '\0';
	return out;
}

static struct metrics_family *family_new(struct metrics_registry *r, const struct metrics_def *d)
{
	struct metrics_family *f = xcalloc(1, sizeof(*f));
	char num[32];

	f->reg = r;
	f->name = xstrdup(d->name);
	f->help = xstrdup(d->help);
	f->help_text = help_escape(d->help);
	f->type = d->type;
	f->nlabels = d->nlabels;
	f->labels = xcalloc(d->nlabels ? d->nlabels : 1, sizeof(*f->labels));
	for (size_t i = 0; i < d->nlabels; i++)
		f->labels[i] = xstrdup(d->labels[i]);
	f->nbuckets = effective_buckets(d);
	f->bounds = xcalloc(f->nbuckets + 1, sizeof(*f->bounds));
	f->le = xcalloc(f->nbuckets + 1, sizeof(*f->le));
	for (size_t i = 0; i < f->nbuckets; i++) {
		f->bounds[i] = d->buckets[i];
		metrics_fmt_double(num, sizeof(num), d->buckets[i]);
		f->le[i] = xstrdup(num);
	}
	f->max_series = d->max_series ? d->max_series : r->max_series;
	f->fn = d->fn;
	f->fn_ctx = d->fn_ctx;
	f->ncells = f->type == METRICS_HISTOGRAM ? (uint32_t)f->nbuckets + 2 : 1;
	pthread_rwlock_init(&f->lock, NULL);
	f->table_cap = 16;
	f->table = xcalloc(f->table_cap, sizeof(*f->table));
	return f;
}

static void family_free(struct metrics_family *f)
{
	for (size_t i = 0; i < f->nlist; i++)
		series_free(f->list[i]);
	for (size_t i = 0; i < f->nlabels; i++)
		free(f->labels[i]);
	for (size_t i = 0; i < f->nbuckets; i++)
		free(f->le[i]);
	pthread_rwlock_destroy(&f->lock);
	free(f->list);
	free(f->table);
	free(f->labels);
	free(f->le);
	free(f->bounds);
	free(f->name);
	free(f->help);
	free(f->help_text);
	free(f);
}

/* Index of the first family whose name is >= name (registry lock held). */
static size_t fams_lower_bound(const struct metrics_registry *r, const char *name)
{
	size_t lo = 0;
	size_t hi = r->nfams;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(r->fams[mid]->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int metrics_register(struct metrics_registry *r, const struct metrics_def *def,
		     struct metrics_family **out, struct errbuf *eb)
{
	struct metrics_family *f;
	size_t at;
	int rc = 0;

	if (out)
		*out = NULL;
	if (!r || !def)
		return errbuf_set(eb, E_INVAL, "metrics: no registry or definition");
	rc = def_check(def, eb);
	if (rc < 0)
		return rc;
	pthread_rwlock_wrlock(&r->lock);
	at = fams_lower_bound(r, def->name);
	if (at < r->nfams && strcmp(r->fams[at]->name, def->name) == 0) {
		f = r->fams[at];
		if (!def_same(f, def)) {
			rc = errbuf_set(eb, E_EXIST,
					"metrics: %s: already registered with another definition",
					def->name);
			f = NULL;
		}
		goto out;
	}
	f = family_new(r, def);
	if (r->nfams == r->fams_cap) {
		r->fams_cap = r->fams_cap ? r->fams_cap * 2 : 32;
		r->fams = xrealloc(r->fams, r->fams_cap * sizeof(*r->fams));
	}
	memmove(r->fams + at + 1, r->fams + at, (r->nfams - at) * sizeof(*r->fams));
	r->fams[at] = f;
	r->nfams++;
out:
	pthread_rwlock_unlock(&r->lock);
	if (out)
		*out = f;
	return rc;
}

struct metrics_family *metrics_find(struct metrics_registry *r, const char *name)
{
	struct metrics_family *f = NULL;
	size_t at;

	if (!r || !name)
		return NULL;
	pthread_rwlock_rdlock(&r->lock);
	at = fams_lower_bound(r, name);
	if (at < r->nfams && strcmp(r->fams[at]->name, name) == 0)
		f = r->fams[at];
	pthread_rwlock_unlock(&r->lock);
	return f;
}

/* ---- registry -------------------------------------------------------------------------------- */

struct metrics_registry *metrics_registry_new(const struct metrics_opts *opts)
{
	struct metrics_registry *r = xcalloc(1, sizeof(*r));
	static const char *const dropped_labels[] = {"family"};
	const struct metrics_def dropped = {
		.name = DROPPED_NAME,
		.help = DROPPED_HELP,
		.type = METRICS_COUNTER,
		.labels = dropped_labels,
		.nlabels = 1,
		.max_series = SIZE_MAX, /* one series per family at most */
	};

	r->nshards = opts && opts->nshards ? opts->nshards : METRICS_DEFAULT_SHARDS;
	if (r->nshards > METRICS_MAX_SHARDS)
		r->nshards = METRICS_MAX_SHARDS;
	r->max_series = opts && opts->max_series ? opts->max_series : METRICS_DEFAULT_MAX_SERIES;
	pthread_rwlock_init(&r->lock, NULL);
	if (metrics_register(r, &dropped, &r->dropped, NULL) < 0)
		die("metrics: cannot register %s", DROPPED_NAME);
	return r;
}

void metrics_registry_free(struct metrics_registry *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nfams; i++)
		family_free(r->fams[i]);
	free(r->fams);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

unsigned metrics_registry_nshards(const struct metrics_registry *r)
{
	return r->nshards;
}

static pthread_mutex_t default_mu = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_opts default_opts;
static struct metrics_registry *_Atomic default_reg;

struct metrics_registry *metrics_default(void)
{
	struct metrics_registry *r = atomic_load_explicit(&default_reg, memory_order_acquire);

	if (r)
		return r;
	pthread_mutex_lock(&default_mu);
	r = atomic_load_explicit(&default_reg, memory_order_relaxed);
	if (!r) {
		r = metrics_registry_new(&default_opts);
		atomic_store_explicit(&default_reg, r, memory_order_release);
	}
	pthread_mutex_unlock(&default_mu);
	return r;
}

int metrics_default_configure(const struct metrics_opts *opts)
{
	int rc = 0;

	pthread_mutex_lock(&default_mu);
	if (atomic_load_explicit(&default_reg, memory_order_relaxed))
		rc = -E_STATE;
	else if (opts)
		default_opts = *opts;
	pthread_mutex_unlock(&default_mu);
	return rc;
}
