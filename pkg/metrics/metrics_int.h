/* Private structures of the metrics registry, shared by its registry, render and process parts. */
#ifndef AMBIENT_METRICS_INT_H
#define AMBIENT_METRICS_INT_H

#include "pkg/metrics/metrics.h"

#include <pthread.h>
#include <stdatomic.h>

/* Cells per 64-byte cache line; a shard's block of a series is padded to whole lines so two
 * workers never write the same line. */
#define METRICS_LINE_CELLS 8

/*
 * Cells of one series, shard-major:   [shard 0: c0 c1 .. pad][shard 1: c0 c1 .. pad] ...
 *   counter:    c0 = count
 *   gauge:      c0 = sum of add()s (int64 stored as uint64; wrapping adds are exact)
 *   histogram:  c0..c[nbuckets] = per-bucket counts (not cumulative; the last is +Inf),
 *               c[nbuckets+1] = sum of observations (double bits, updated by CAS)
 */
struct metrics_series {
	_Atomic uint64_t *cells;
	uint32_t nshards;
	uint32_t stride; /* cells per shard block, a multiple of METRICS_LINE_CELLS */
	struct metrics_family *fam;
	_Atomic int64_t base; /* gauges: the unsharded part written by set() */
	bool overflow;
	uint64_t hash;
	char *key; /* label values joined by 0xff (never in UTF-8, so unambiguous) */
	size_t key_len;
	char *text; /* rendered labels without braces: a="x",b="y" ("" when none) */
};

struct metrics_family {
	struct metrics_registry *reg;
	char *name;
	char *help;	 /* as given */
	char *help_text; /* escaped for the HELP line */
	enum metrics_type type;
	char **labels;
	size_t nlabels;
	double *bounds;
	char **le; /* formatted bounds for the le label */
	size_t nbuckets;
	size_t max_series;
	metrics_value_fn fn;
	void *fn_ctx;
	uint32_t ncells;

	pthread_rwlock_t lock;	       /* guards everything below */
	struct metrics_series **table; /* open addressing by hash, power-of-two capacity */
	size_t table_cap;
	struct metrics_series **list; /* creation order */
	size_t nlist;
	size_t list_cap;
	size_t nreal; /* series counted against max_series */
	struct metrics_series *overflow;
};

struct metrics_registry {
	unsigned nshards;
	size_t max_series;
	pthread_rwlock_t lock;
	struct metrics_family **fams; /* sorted by name */
	size_t nfams;
	size_t fams_cap;
	struct metrics_family *dropped;
};

/* Sum of cell i over all shards. */
uint64_t metrics_cell_sum(const struct metrics_series *s, size_t i);
double metrics_cell_sum_double(const struct metrics_series *s, size_t i);

/* Shortest text that parses back to v ("0.1", "1500", "+Inf", "NaN"); out needs 32 bytes. */
size_t metrics_fmt_double(char *out, size_t cap, double v);
bool metrics_utf8_valid(const char *s, size_t n);
/* Copies s to out replacing each invalid UTF-8 byte by U+FFFD; out needs 3 * n bytes. */
size_t metrics_utf8_sanitize(char *out, const char *s, size_t n);
/* Escapes for a label value (\\ \" \n) or, with quotes false, for HELP text (\\ \n); out needs
 * 2 * n bytes. Returns the length written. */
size_t metrics_escape(char *out, const char *s, size_t n, bool quotes);

#endif
