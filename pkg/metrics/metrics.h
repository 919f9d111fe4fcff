/* Counters, gauges and histograms with label sets, sharded per thread and rendered as Prometheus
 * text. */
#ifndef AMBIENT_METRICS_H
#define AMBIENT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pkg/base/base.h"
#include "pkg/buf/buf.h"

/*
 * Model
 *   registry  --has-->  families (name, help, type, fixed label names, histogram buckets)
 *   family    --has-->  series   (one per distinct tuple of label values)
 *
 * Slow path: metrics_*_with(family, values) finds or creates a series under the family's lock and
 * returns a handle that stays valid until the registry is freed. Callers cache handles (per
 * connection, per workload pair, ...); calling it often is safe, just not free.
 *
 * Fast path: metrics_counter_add(series, n) and friends. Each series keeps one cache-line-padded
 * block of cells per shard; a thread writes the shard chosen by metrics_thread_set_index() (shard 0
 * for threads that never call it), folded modulo the registry's shard count. Writes are relaxed
 * atomic adds, so threads that share a shard stay exact; the only cost of sharing is contention.
 * Scrapes sum the shards. A NULL series handle is accepted everywhere and ignored, so code can run
 * with metrics disabled.
 *
 * Gauges: add/inc/dec are sharded like counters (good for "open sockets" levels updated by every
 * worker). set(v) stores v minus the current shard sum in one unsharded base, so the rendered value
 * is v plus whatever adds land after the set. Concurrent set()s race as you would expect (one
 * wins).
 *
 * Series bound: each family keeps at most max_series series (registry default, overridable per
 * family). Label values can come from peers (hostnames, SNI, principals), so an unbounded map would
 * let traffic grow memory and scrape size without limit. Past the bound, requests for new label
 * sets get the family's single overflow series, whose every label value is METRICS_OVERFLOW_VALUE,
 * and ambient_metrics_series_dropped_total{family="<name>"} rises by one per refused request. The
 * totals across a family stay right; only the attribution of the newest label sets is lost.
 *
 * Output: text exposition format 0.0.4, families sorted by name, series sorted by their rendered
 * labels, families without series omitted; output passes `promtool check metrics`. Label values are
 * truncated to METRICS_MAX_VALUE_LEN bytes and invalid UTF-8 is replaced by U+FFFD (the format
 * requires UTF-8; one bad byte from a peer would otherwise break every scrape).
 */

#define METRICS_MAX_SHARDS 64
#define METRICS_DEFAULT_SHARDS 8
#define METRICS_DEFAULT_MAX_SERIES 10000
#define METRICS_MAX_LABELS 32
#define METRICS_MAX_BUCKETS 64
#define METRICS_MAX_VALUE_LEN 1024
#define METRICS_OVERFLOW_VALUE "__overflow__"
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum metrics_type { METRICS_COUNTER = 0, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics_registry;
struct metrics_family;
struct metrics_series;

/* Computes a value at scrape time (process memory, open fds, uptime). Called from the scraping
 * thread with no metrics lock held. */
typedef double (*metrics_value_fn)(void *ctx);

struct metrics_opts {
	unsigned nshards;  /* 1..METRICS_MAX_SHARDS; 0 = METRICS_DEFAULT_SHARDS. Use workers + 1. */
	size_t max_series; /* per family; 0 = METRICS_DEFAULT_MAX_SERIES */
};

/* A family definition; all strings are copied. */
struct metrics_def {
	const char *name; /* [a-z_][a-z0-9_]*; counters must end in "_total" */
	const char *help; /* required, UTF-8 */
	enum metrics_type type;
	const char *const *labels; /* label names, [a-z_][a-z0-9_]*, not "le"/"quantile"/"__*" */
	size_t nlabels;
	const double
		*buckets; /* histograms: finite upper bounds, strictly increasing; +Inf implied */
	size_t nbuckets;
	size_t max_series; /* 0 = registry default */
	metrics_value_fn
		fn; /* callback family (counter or gauge, no labels); NULL = stored values */
	void *fn_ctx;
};

/* ---- thread shard ---------------------------------------------------------------------------- */
/* Chooses this thread's shard (0..METRICS_MAX_SHARDS-1); each worker calls it once at start with
 * its worker index. -E_INVAL when out of range (the shard is left unchanged). */
int metrics_thread_set_index(int idx);
int metrics_thread_index(void);

/* ---- registry -------------------------------------------------------------------------------- */
/* opts may be NULL for defaults. Every registry carries ambient_metrics_series_dropped_total. */
struct metrics_registry *metrics_registry_new(const struct metrics_opts *opts);
void metrics_registry_free(struct metrics_registry *r);
unsigned metrics_registry_nshards(const struct metrics_registry *r);

/* The process-wide registry, created on first use (never freed). */
struct metrics_registry *metrics_default(void);
/* Sets the default registry's options; -E_STATE once metrics_default() has been called. */
int metrics_default_configure(const struct metrics_opts *opts);

/* Adds a family, or returns the existing one when an identical definition was registered before
 * (so several modules may register the same Istio metric). -E_INVAL for a bad definition, -E_EXIST
 * when the name is taken by a different definition; eb says why. */
int metrics_register(struct metrics_registry *r, const struct metrics_def *def,
		     struct metrics_family **out, struct errbuf *eb);
/* The family of that name, or NULL. */
struct metrics_family *metrics_find(struct metrics_registry *r, const char *name);
const char *metrics_family_name(const struct metrics_family *f);
enum metrics_type metrics_family_type(const struct metrics_family *f);
/* Series currently held, the overflow series included. */
size_t metrics_family_series_count(struct metrics_family *f);

/* ---- slow path: series lookup ---------------------------------------------------------------- */
/* values has one entry per label name (NULL = ""; ignored when the family has no labels). Returns
 * the series (created if new, the overflow series past the bound), or NULL if f is NULL, is a
 * callback family, or (typed variants) is of another type. */
struct metrics_series *metrics_with(struct metrics_family *f, const char *const *values);
struct metrics_series *metrics_counter_with(struct metrics_family *f, const char *const *values);
struct metrics_series *metrics_gauge_with(struct metrics_family *f, const char *const *values);
struct metrics_series *metrics_histogram_with(struct metrics_family *f, const char *const *values);
bool metrics_series_is_overflow(const struct metrics_series *s);

/* ---- fast path ------------------------------------------------------------------------------- */
void metrics_counter_add(struct metrics_series *s, uint64_t n);
void metrics_counter_inc(struct metrics_series *s);
void metrics_gauge_add(struct metrics_series *s, int64_t d);
void metrics_gauge_inc(struct metrics_series *s);
void metrics_gauge_dec(struct metrics_series *s);
void metrics_gauge_set(struct metrics_series *s, int64_t v);
/* NaN observations are dropped. */
void metrics_histogram_observe(struct metrics_series *s, double v);

/* ---- reading (tests, admin endpoints) -------------------------------------------------------- */
uint64_t metrics_counter_value(const struct metrics_series *s);
int64_t metrics_gauge_value(const struct metrics_series *s);
uint64_t metrics_histogram_count(const struct metrics_series *s);
double metrics_histogram_sum(const struct metrics_series *s);
/* Observations <= the bound of bucket i (i == nbuckets: all of them). */
uint64_t metrics_histogram_bucket(const struct metrics_series *s, size_t i);

/* ---- rendering ------------------------------------------------------------------------------- */
/* Appends the whole registry in text format 0.0.4; -E_LIMIT when out's max is reached. */
int metrics_render(struct metrics_registry *r, struct buf *out);

/* Registers ambient_process_* callback metrics: cpu_seconds_total, resident_memory_bytes,
 * virtual_memory_bytes, open_fds, max_fds, threads, start_time_seconds, uptime_seconds. */
int metrics_register_process(struct metrics_registry *r, struct errbuf *eb);

#endif
