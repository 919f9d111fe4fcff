/* Tests for the metrics registry: exact exposition text, escaping, sharded concurrency, bounds. */
#include "pkg/base/base.h"
#include "pkg/buf/buf.h"
#include "pkg/metrics/metrics.h"
#include "pkg/metrics/metrics_int.h"
#include "test/unit.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static char *render_str(struct metrics_registry *r)
{
	struct buf b;
	char *s;

	buf_init(&b, 0);
	if (metrics_render(r, &b) < 0) {
		buf_fini(&b);
		return xstrdup("(render failed)");
	}
	s = xstrndup((const char *)buf_rptr(&b), buf_len(&b));
	buf_fini(&b);
	return s;
}

static struct metrics_family *reg(struct metrics_registry *r, const struct metrics_def *d)
{
	struct metrics_family *f = NULL;
	struct errbuf eb = {0};

	if (metrics_register(r, d, &f, &eb) < 0)
		fprintf(stderr, "    register: %s\n", eb.msg);
	return f;
}

/* The value of the sample line starting with `prefix` ("name{...} " or "name "), or NaN. */
static double sample(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, prefix, n) == 0)
			return strtod(p + n, NULL);
	return NAN;
}

static double answer(void *ctx)
{
	return *(double *)ctx;
}

static const char *const req_labels[] = {"method", "code"};
static const char *const route_label[] = {"route"};
static const double lat_buckets[] = {0.1, 0.5, 1};

TEST(metrics_render_exact)
{
	struct metrics_registry *r = metrics_registry_new(&(struct metrics_opts){.nshards = 4});
	double v = 42;
	struct metrics_family *req = reg(r, &(struct metrics_def){.name = "test_requests_total",
								  .help = "Requests handled.",
								  .type = METRICS_COUNTER,
								  .labels = req_labels,
								  .nlabels = 2});
	struct metrics_family *depth = reg(r, &(struct metrics_def){.name = "test_queue_depth",
								    .help = "Items waiting.",
								    .type = METRICS_GAUGE});
	struct metrics_family *lat = reg(r, &(struct metrics_def){.name = "test_latency_seconds",
								  .help = "Request latency.",
								  .type = METRICS_HISTOGRAM,
								  .labels = route_label,
								  .nlabels = 1,
								  .buckets = lat_buckets,
								  .nbuckets = 3});
	struct metrics_family *ans =
		reg(r, &(struct metrics_def){.name = "test_answer",
					     .help = "The answer.\nWith \\ backslash.",
					     .type = METRICS_GAUGE,
					     .fn = answer,
					     .fn_ctx = &v});
	struct metrics_series *s;
	char *text;

	REQUIRE(req && depth && lat && ans);
	metrics_counter_add(metrics_counter_with(req, (const char *[]){"POST", "500"}), 1);
	metrics_counter_add(metrics_counter_with(req, (const char *[]){"GET", "200"}), 3);
	REQUIRE(metrics_thread_set_index(3) == 0);
	s = metrics_counter_with(req, (const char *[]){"GET", "404"});
	metrics_counter_inc(s);
	REQUIRE(metrics_thread_set_index(0) == 0);
	metrics_counter_inc(s);
	s = metrics_gauge_with(depth, NULL);
	metrics_gauge_set(s, 10);
	metrics_gauge_add(s, -3);
	CHECK_INT(metrics_gauge_value(s), 7);
	s = metrics_histogram_with(lat, (const char *[]){"/a"});
	/* Bounds are inclusive: 0.5 lands in le="0.5", 1 in le="1". */
	metrics_histogram_observe(s, 0.0625);
	metrics_histogram_observe(s, 0.5);
	metrics_histogram_observe(s, 1);
	metrics_histogram_observe(s, 3);
	metrics_histogram_observe(s, NAN);
	CHECK(metrics_histogram_with(lat, (const char *[]){"/b"}) != NULL);

	text = render_str(r);
	CHECK_STR(text, "# HELP test_answer The answer.\\nWith \\\\ backslash.\n"
			"# TYPE test_answer gauge\n"
			"test_answer 42\n"
			"# HELP test_latency_seconds Request latency.\n"
			"# TYPE test_latency_seconds histogram\n"
			"test_latency_seconds_bucket{route=\"/a\",le=\"0.1\"} 1\n"
			"test_latency_seconds_bucket{route=\"/a\",le=\"0.5\"} 2\n"
			"test_latency_seconds_bucket{route=\"/a\",le=\"1\"} 3\n"
			"test_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n"
			"test_latency_seconds_sum{route=\"/a\"} 4.5625\n"
			"test_latency_seconds_count{route=\"/a\"} 4\n"
			"test_latency_seconds_bucket{route=\"/b\",le=\"0.1\"} 0\n"
			"test_latency_seconds_bucket{route=\"/b\",le=\"0.5\"} 0\n"
			"test_latency_seconds_bucket{route=\"/b\",le=\"1\"} 0\n"
			"test_latency_seconds_bucket{route=\"/b\",le=\"+Inf\"} 0\n"
			"test_latency_seconds_sum{route=\"/b\"} 0\n"
			"test_latency_seconds_count{route=\"/b\"} 0\n"
			"# HELP test_queue_depth Items waiting.\n"
			"# TYPE test_queue_depth gauge\n"
			"test_queue_depth 7\n"
			"# HELP test_requests_total Requests handled.\n"
			"# TYPE test_requests_total counter\n"
			"test_requests_total{method=\"GET\",code=\"200\"} 3\n"
			"test_requests_total{method=\"GET\",code=\"404\"} 2\n"
			"test_requests_total{method=\"POST\",code=\"500\"} 1\n");
	free(text);
	s = metrics_histogram_with(lat, (const char *[]){"/a"});
	CHECK_INT(metrics_histogram_count(s), 4);
	CHECK_INT(metrics_histogram_bucket(s, 1), 2);
	CHECK(metrics_histogram_sum(s) == 4.5625);
	v = -1.5;
	text = render_str(r);
	CHECK_CONTAINS(text, "\ntest_answer -1.5\n");
	free(text);
	metrics_registry_free(r);
}

TEST(metrics_histogram_without_labels_and_number_format)
{
	struct metrics_registry *r = metrics_registry_new(NULL);
	static const double b[] = {0.00025, 0.001, 0.1, 1500, 1e6, 1e21, INFINITY};
	struct metrics_family *f = reg(r, &(struct metrics_def){.name = "test_size_bytes",
								.help = "Sizes.",
								.type = METRICS_HISTOGRAM,
								.buckets = b,
								.nbuckets = ARRAY_LEN(b)});
	struct metrics_series *s = metrics_histogram_with(f, NULL);
	char num[32];
	char *text;

	REQUIRE(s);
	metrics_histogram_observe(s, 0.1);
	metrics_histogram_observe(s, 0.2);
	text = render_str(r);
	CHECK_STR(text, "# HELP test_size_bytes Sizes.\n"
			"# TYPE test_size_bytes histogram\n"
			"test_size_bytes_bucket{le=\"0.00025\"} 0\n"
			"test_size_bytes_bucket{le=\"0.001\"} 0\n"
			"test_size_bytes_bucket{le=\"0.1\"} 1\n"
			"test_size_bytes_bucket{le=\"1500\"} 2\n"
			"test_size_bytes_bucket{le=\"1000000\"} 2\n"
			"test_size_bytes_bucket{le=\"1e+21\"} 2\n"
			"test_size_bytes_bucket{le=\"+Inf\"} 2\n"
			"test_size_bytes_sum 0.30000000000000004\n"
			"test_size_bytes_count 2\n");
	free(text);
	metrics_fmt_double(num, sizeof(num), -0.5);
	CHECK_STR(num, "-0.5");
	metrics_fmt_double(num, sizeof(num), -INFINITY);
	CHECK_STR(num, "-Inf");
	metrics_fmt_double(num, sizeof(num), NAN);
	CHECK_STR(num, "NaN");
	metrics_fmt_double(num, sizeof(num), 18446744073709551615.0);
	CHECK_STR(num, "1.8446744073709552e+19");
	metrics_registry_free(r);
}

TEST(metrics_label_escaping_and_utf8)
{
	struct metrics_registry *r = metrics_registry_new(NULL);
	static const char *const v[] = {"v"};
	struct metrics_family *f = reg(r, &(struct metrics_def){.name = "test_escape_total",
								.help = "Escaping.",
								.type = METRICS_COUNTER,
								.labels = v,
								.nlabels = 1});
	struct metrics_series *a;
	struct metrics_series *b;
	char long_value[2001];
	char *text;

	REQUIRE(f);
	metrics_counter_inc(metrics_counter_with(f, (const char *[]){"a\\b\"c\nd"}));
	a = metrics_counter_with(f, (const char *[]){"x\xffy"});
	b = metrics_counter_with(f, (const char *[]){"x\xEF\xBF\xBDy"});
	CHECK(a == b); /* same rendered labels, so one series */
	metrics_counter_add(a, 2);
	/* Overlong "/" (C0 AF), a surrogate (ED A0 80) and a truncated sequence are all invalid. */
	metrics_counter_inc(
		metrics_counter_with(f, (const char *[]){"\xC0\xAF|\xED\xA0\x80|\xE2\x82"}));
	metrics_counter_inc(
		metrics_counter_with(f, (const char *[]){"\xE2\x82\xAC \xF0\x9F\x98\x80"}));
	metrics_counter_inc(metrics_counter_with(f, (const char *[]){NULL}));
	text = render_str(r);
	CHECK_STR(text, "# HELP test_escape_total Escaping.\n"
			"# TYPE test_escape_total counter\n"
			"test_escape_total{v=\"\"} 1\n"
			"test_escape_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"
			"test_escape_total{v=\"x\xEF\xBF\xBDy\"} 2\n"
			"test_escape_total{v=\"\xE2\x82\xAC \xF0\x9F\x98\x80\"} 1\n"
			"test_escape_total{v=\"\xEF\xBF\xBD\xEF\xBF\xBD|\xEF\xBF\xBD\xEF\xBF\xBD"
			"\xEF\xBF\xBD|\xEF\xBF\xBD\xEF\xBF\xBD\"} 1\n");
	free(text);

	/* Long values are cut at METRICS_MAX_VALUE_LEN, before a character rather than through it.
	 */
	memset(long_value, 'a', sizeof(long_value) - 1);
	long_value[sizeof(long_value) - 1] = '\0';
	memcpy(long_value + METRICS_MAX_VALUE_LEN - 1, "\xC3\xA9", 2);
	a = metrics_counter_with(f, (const char *[]){long_value});
	REQUIRE(a);
	CHECK_INT(a->key_len, METRICS_MAX_VALUE_LEN - 1);
	CHECK(metrics_utf8_valid(a->text, strlen(a->text)));
	metrics_registry_free(r);
}

struct conc {
	struct metrics_family *req;
	struct metrics_family *per;
	struct metrics_family *lat;
	struct metrics_family *open;
	int idx; /* -1: never sets a shard (stays on shard 0) */
};

#define CONC_THREADS 8
#define CONC_ITERS 100000

static void *conc_worker(void *arg)
{
	struct conc *c = arg;
	char name[16];
	struct metrics_series *mine;
	struct metrics_series *shared = NULL;
	struct metrics_series *h = metrics_histogram_with(c->lat, NULL);
	struct metrics_series *g = metrics_gauge_with(c->open, NULL);

	if (c->idx >= 0)
		metrics_thread_set_index(c->idx);
	snprintf(name, sizeof(name), "t%d", c->idx);
	mine = metrics_counter_with(c->per, (const char *[]){name});
	for (int i = 0; i < CONC_ITERS; i++) {
		/* Re-look the shared series up now and then, racing other threads' lookups. */
		if (i % 1000 == 0)
			shared = metrics_counter_with(c->req, (const char *[]){"shared"});
		metrics_counter_inc(shared);
		metrics_counter_add(mine, 2);
		metrics_gauge_inc(g);
		if (i % 2 == 0)
			metrics_histogram_observe(h, 1.0);
		metrics_gauge_dec(g);
	}
	return NULL;
}

TEST(metrics_concurrent_increments_sum_exactly)
{
	/* 4 shards for 8 threads with indices up to 63: several threads share each shard. */
	struct metrics_registry *r = metrics_registry_new(&(struct metrics_opts){.nshards = 4});
	static const char *const t[] = {"t"};
	static const double b[] = {0.5, 2};
	struct conc c[CONC_THREADS];
	pthread_t th[CONC_THREADS];
	struct metrics_family *req = reg(r, &(struct metrics_def){.name = "test_conc_total",
								  .help = "Shared.",
								  .type = METRICS_COUNTER,
								  .labels = t,
								  .nlabels = 1});
	struct metrics_family *per = reg(r, &(struct metrics_def){.name = "test_per_thread_total",
								  .help = "Per thread.",
								  .type = METRICS_COUNTER,
								  .labels = t,
								  .nlabels = 1});
	struct metrics_family *lat = reg(r, &(struct metrics_def){.name = "test_conc_seconds",
								  .help = "Observed.",
								  .type = METRICS_HISTOGRAM,
								  .buckets = b,
								  .nbuckets = 2});
	struct metrics_family *open =
		reg(r, &(struct metrics_def){
			       .name = "test_conc_open", .help = "Open.", .type = METRICS_GAUGE});
	struct metrics_series *h;
	char *text;

	REQUIRE(req && per && lat && open);
	for (int i = 0; i < CONC_THREADS; i++) {
		c[i] = (struct conc){req, per, lat, open, i == CONC_THREADS - 1 ? -1 : i * 9};
		REQUIRE(pthread_create(&th[i], NULL, conc_worker, &c[i]) == 0);
	}
	/* Scrapes race the writers; they must not crash or tear the text. */
	for (int i = 0; i < 20; i++) {
		text = render_str(r);
		CHECK(strncmp(text, "(render failed)", 15) != 0);
		free(text);
	}
	for (int i = 0; i < CONC_THREADS; i++)
		pthread_join(th[i], NULL);

	CHECK_INT(metrics_counter_value(metrics_counter_with(req, (const char *[]){"shared"})),
		  (long long)CONC_THREADS * CONC_ITERS);
	CHECK_INT(metrics_family_series_count(req), 1);
	CHECK_INT(metrics_family_series_count(per), CONC_THREADS);
	for (int i = 0; i < CONC_THREADS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "t%d", c[i].idx);
		CHECK_INT(metrics_counter_value(metrics_counter_with(per, (const char *[]){name})),
			  2LL * CONC_ITERS);
	}
	h = metrics_histogram_with(lat, NULL);
	CHECK_INT(metrics_histogram_count(h), (long long)CONC_THREADS * CONC_ITERS / 2);
	CHECK_INT(metrics_histogram_bucket(h, 0), 0);
	CHECK(metrics_histogram_sum(h) == (double)CONC_THREADS * CONC_ITERS / 2);
	CHECK_INT(metrics_gauge_value(metrics_gauge_with(open, NULL)), 0);
	text = render_str(r);
	CHECK_CONTAINS(text, "\ntest_conc_total{t=\"shared\"} 800000\n");
	CHECK_CONTAINS(text, "\ntest_conc_seconds_count 400000\n");
	free(text);
	metrics_registry_free(r);
}

TEST(metrics_series_limit_overflow)
{
	struct metrics_registry *r = metrics_registry_new(&(struct metrics_opts){.max_series = 3});
	static const char *const l[] = {"peer", "dir"};
	static const char *const one[] = {"peer"};
	struct metrics_family *f = reg(r, &(struct metrics_def){.name = "test_conn_total",
								.help = "Connections.",
								.type = METRICS_COUNTER,
								.labels = l,
								.nlabels = 2});
	struct metrics_family *g = reg(r, &(struct metrics_def){.name = "test_peers",
								.help = "Peers.",
								.type = METRICS_GAUGE,
								.labels = one,
								.nlabels = 1,
								.max_series = 2});
	struct metrics_family *dropped = metrics_find(r, "ambient_metrics_series_dropped_total");
	struct metrics_series *a;
	struct metrics_series *d;
	struct metrics_series *e;
	struct metrics_series *pre;
	char *text;

	REQUIRE(f && g && dropped);
	a = metrics_counter_with(f, (const char *[]){"a", "in"});
	metrics_counter_with(f, (const char *[]){"b", "in"});
	metrics_counter_with(f, (const char *[]){"c", "in"});
	CHECK(!metrics_series_is_overflow(a));
	d = metrics_counter_with(f, (const char *[]){"d", "in"});
	e = metrics_counter_with(f, (const char *[]){"e", "out"});
	REQUIRE(d && e);
	CHECK(d == e);
	CHECK(metrics_series_is_overflow(d));
	CHECK(metrics_counter_with(f, (const char *[]){"a", "in"}) == a); /* old ones still found */
	metrics_counter_add(d, 2);
	metrics_counter_add(e, 3);
	metrics_counter_inc(a);
	CHECK_INT(metrics_family_series_count(f), 4);
	CHECK_INT(metrics_counter_value(
			  metrics_counter_with(dropped, (const char *[]){"test_conn_total"})),
		  2);

	/* A real series that already has the overflow values becomes the overflow series. */
	pre = metrics_gauge_with(g, (const char *[]){METRICS_OVERFLOW_VALUE});
	metrics_gauge_with(g, (const char *[]){"x"});
	CHECK(metrics_gauge_with(g, (const char *[]){"y"}) == pre);
	CHECK(metrics_series_is_overflow(pre));
	CHECK_INT(metrics_family_series_count(g), 2);
	metrics_gauge_add(metrics_gauge_with(g, (const char *[]){"z"}), 5);

	text = render_str(r);
	CHECK_STR(text, "# HELP ambient_metrics_series_dropped_total Label sets refused because "
			"their metric family reached its series limit; their updates went to the "
			"family's overflow series.\n"
			"# TYPE ambient_metrics_series_dropped_total counter\n"
			"ambient_metrics_series_dropped_total{family=\"test_conn_total\"} 2\n"
			"ambient_metrics_series_dropped_total{family=\"test_peers\"} 2\n"
			"# HELP test_conn_total Connections.\n"
			"# TYPE test_conn_total counter\n"
			"test_conn_total{peer=\"__overflow__\",dir=\"__overflow__\"} 5\n"
			"test_conn_total{peer=\"a\",dir=\"in\"} 1\n"
			"test_conn_total{peer=\"b\",dir=\"in\"} 0\n"
			"test_conn_total{peer=\"c\",dir=\"in\"} 0\n"
			"# HELP test_peers Peers.\n"
			"# TYPE test_peers gauge\n"
			"test_peers{peer=\"__overflow__\"} 5\n"
			"test_peers{peer=\"x\"} 0\n");
	free(text);
	metrics_registry_free(r);
}

TEST(metrics_register_validation)
{
	struct metrics_registry *r = metrics_registry_new(NULL);
	static const char *const dup[] = {"a", "a"};
	static const char *const le[] = {"le"};
	static const char *const under[] = {"__x"};
	static const char *const ok[] = {"a"};
	static const double unsorted[] = {1, 1};
	static const double withinf[] = {1, 2, INFINITY};
	static const double noinf[] = {1, 2};
	struct metrics_family *f1;
	struct metrics_family *f2;
	struct errbuf eb = {0};
	int rc;

#define BAD(want, needle, ...)                                                                     \
	do {                                                                                       \
		errbuf_clear(&eb);                                                                 \
		rc = metrics_register(r, &(struct metrics_def){__VA_ARGS__}, &f1, &eb);            \
		CHECK_INT(rc, -(want));                                                            \
		CHECK(f1 == NULL);                                                                 \
		CHECK_CONTAINS(eb.msg, needle);                                                    \
	} while (0)

	BAD(E_INVAL, "invalid metric name", .name = "Bad-Name", .help = "h", .type = METRICS_GAUGE);
	BAD(E_INVAL, "invalid metric name", .name = "1abc", .help = "h", .type = METRICS_GAUGE);
	BAD(E_INVAL, "help text", .name = "x", .type = METRICS_GAUGE);
	BAD(E_INVAL, "help text", .name = "x", .help = "\xff", .type = METRICS_GAUGE);
	BAD(E_INVAL, "must end in _total", .name = "x_requests", .help = "h",
	    .type = METRICS_COUNTER);
	BAD(E_INVAL, "reserved for histograms", .name = "x_count", .help = "h",
	    .type = METRICS_GAUGE);
	BAD(E_INVAL, "duplicate label name \"a\"", .name = "x", .help = "h", .type = METRICS_GAUGE,
	    .labels = dup, .nlabels = 2);
	BAD(E_INVAL, "label name \"le\" is reserved", .name = "x", .help = "h",
	    .type = METRICS_GAUGE, .labels = le, .nlabels = 1);
	BAD(E_INVAL, "invalid label name \"__x\"", .name = "x", .help = "h", .type = METRICS_GAUGE,
	    .labels = under, .nlabels = 1);
	BAD(E_INVAL, "strictly increasing", .name = "x", .help = "h", .type = METRICS_HISTOGRAM,
	    .buckets = unsorted, .nbuckets = 2);
	BAD(E_INVAL, "buckets on a non-histogram", .name = "x", .help = "h", .type = METRICS_GAUGE,
	    .buckets = noinf, .nbuckets = 2);
	BAD(E_INVAL, "take no labels", .name = "x", .help = "h", .type = METRICS_GAUGE,
	    .labels = ok, .nlabels = 1, .fn = answer);
#undef BAD

	/* Identical definitions share one family (a trailing +Inf bucket changes nothing). */
	f1 = reg(r, &(struct metrics_def){.name = "x_seconds",
					  .help = "h",
					  .type = METRICS_HISTOGRAM,
					  .labels = ok,
					  .nlabels = 1,
					  .buckets = withinf,
					  .nbuckets = 3});
	f2 = reg(r, &(struct metrics_def){.name = "x_seconds",
					  .help = "h",
					  .type = METRICS_HISTOGRAM,
					  .labels = ok,
					  .nlabels = 1,
					  .buckets = noinf,
					  .nbuckets = 2});
	REQUIRE(f1);
	CHECK(f1 == f2);
	CHECK(metrics_find(r, "x_seconds") == f1);
	CHECK(metrics_find(r, "x_second") == NULL);
	CHECK_STR(metrics_family_name(f1), "x_seconds");
	CHECK_INT(metrics_family_type(f1), METRICS_HISTOGRAM);
	rc = metrics_register(r,
			      &(struct metrics_def){.name = "x_seconds",
						    .help = "other",
						    .type = METRICS_HISTOGRAM,
						    .labels = ok,
						    .nlabels = 1},
			      &f2, &eb);
	CHECK_INT(rc, -E_EXIST);
	CHECK(f2 == NULL);
	CHECK_CONTAINS(eb.msg, "x_seconds: already registered");

	/* Typed lookups refuse the wrong type, and NULL handles are ignored. */
	CHECK(metrics_counter_with(f1, (const char *[]){"v"}) == NULL);
	CHECK(metrics_gauge_with(f1, (const char *[]){"v"}) == NULL);
	CHECK(metrics_counter_with(NULL, NULL) == NULL);
	metrics_counter_inc(NULL);
	metrics_gauge_set(NULL, 1);
	metrics_histogram_observe(NULL, 1);
	CHECK_INT(metrics_counter_value(NULL), 0);
	metrics_registry_free(r);
	metrics_registry_free(NULL);
}

TEST(metrics_thread_index_and_folding)
{
	struct metrics_registry *r = metrics_registry_new(&(struct metrics_opts){.nshards = 3});
	struct metrics_family *f = reg(r, &(struct metrics_def){.name = "test_fold_total",
								.help = "Folding.",
								.type = METRICS_COUNTER});
	struct metrics_series *s = metrics_counter_with(f, NULL);

	REQUIRE(s);
	CHECK_INT(metrics_registry_nshards(r), 3);
	CHECK_INT(metrics_thread_set_index(-1), -E_INVAL);
	CHECK_INT(metrics_thread_set_index(METRICS_MAX_SHARDS), -E_INVAL);
	CHECK_INT(metrics_thread_index(), 0);
	for (int i = 0; i < METRICS_MAX_SHARDS; i++) {
		REQUIRE(metrics_thread_set_index(i) == 0);
		CHECK_INT(metrics_thread_index(), i);
		metrics_counter_add(s, (uint64_t)i);
	}
	metrics_thread_set_index(0);
	CHECK_INT(metrics_counter_value(s), 63 * 64 / 2);
	/* Shard k holds the indices that fold onto it: 0+3+...+63 = 693 on shard 0. */
	CHECK_INT(atomic_load(&s->cells[0]), 693);
	metrics_registry_free(r);
}

TEST(metrics_render_respects_buffer_limit)
{
	struct metrics_registry *r = metrics_registry_new(NULL);
	struct metrics_family *f = reg(r, &(struct metrics_def){.name = "test_limit_total",
								.help = "A help text long enough.",
								.type = METRICS_COUNTER});
	struct buf b;

	metrics_counter_inc(metrics_counter_with(f, NULL));
	buf_init(&b, 32);
	CHECK_INT(metrics_render(r, &b), -E_LIMIT);
	buf_fini(&b);
	metrics_registry_free(r);
}

TEST(metrics_default_registry)
{
	struct metrics_registry *r;

	CHECK_INT(metrics_default_configure(&(struct metrics_opts){.nshards = 5}), 0);
	r = metrics_default();
	REQUIRE(r);
	CHECK(metrics_default() == r);
	CHECK_INT(metrics_registry_nshards(r), 5);
	CHECK_INT(metrics_default_configure(NULL), -E_STATE);
	CHECK(metrics_find(r, "ambient_metrics_series_dropped_total") != NULL);
}

TEST(metrics_process_values)
{
	struct metrics_registry *r = metrics_registry_new(NULL);
	struct errbuf eb = {0};
	double now = (double)time_real_ms() / 1000.0;
	char *text;

	REQUIRE(metrics_register_process(r, &eb) == 0);
	CHECK_INT(metrics_register_process(r, &eb), 0); /* identical re-registration */
	text = render_str(r);
	CHECK(sample(text, "ambient_process_open_fds ") >= 3);
	CHECK(sample(text, "ambient_process_max_fds ") >=
	      sample(text, "ambient_process_open_fds "));
	CHECK(sample(text, "ambient_process_resident_memory_bytes ") > 0);
	CHECK(sample(text, "ambient_process_virtual_memory_bytes ") >=
	      sample(text, "ambient_process_resident_memory_bytes "));
	CHECK(sample(text, "ambient_process_threads ") >= 1);
	CHECK(sample(text, "ambient_process_cpu_seconds_total ") >= 0);
	CHECK(sample(text, "ambient_process_start_time_seconds ") > 1e9);
	CHECK(sample(text, "ambient_process_start_time_seconds ") <= now + 1);
	CHECK(sample(text, "ambient_process_uptime_seconds ") >= 0);
	CHECK_CONTAINS(text, "# TYPE ambient_process_cpu_seconds_total counter\n");
	free(text);
	metrics_registry_free(r);
}

/* Everything at once through the real linter: promtool must accept it without a single remark. */
TEST(metrics_promtool_accepts_output)
{
	struct metrics_registry *r;
	static const char *const tl[] = {"reporter", "source_workload", "destination_principal",
					 "response_flags"};
	static const double dns[] = {0.0005, 0.001, 0.01, 0.1, 1, 5};
	struct metrics_family *tcp;
	struct metrics_family *dur;
	struct metrics_family *build;
	struct errbuf eb = {0};
	char path[512];
	char cmd[600];
	char line[512];
	char *text;
	FILE *fp;
	int lines = 0;
	int status;

	if (access("/usr/bin/promtool", X_OK) != 0) {
		printf("    note: /usr/bin/promtool missing; skipping the promtool check\n");
		return;
	}
	r = metrics_registry_new(&(struct metrics_opts){.max_series = 3});
	tcp = reg(r,
		  &(struct metrics_def){.name = "istio_tcp_sent_bytes_total",
					.help = "Bytes sent during response to a TCP connection.",
					.type = METRICS_COUNTER,
					.labels = tl,
					.nlabels = ARRAY_LEN(tl)});
	dur = reg(r, &(struct metrics_def){.name = "istio_dns_upstream_request_duration_seconds",
					   .help = "Upstream DNS request duration \"in\" seconds.",
					   .type = METRICS_HISTOGRAM,
					   .labels = tl,
					   .nlabels = 1,
					   .buckets = dns,
					   .nbuckets = ARRAY_LEN(dns)});
	build = reg(r, &(struct metrics_def){.name = "istio_build",
					     .help = "Istio component build info.\nSecond line.",
					     .type = METRICS_GAUGE,
					     .labels = (const char *const[]){"component", "tag"},
					     .nlabels = 2});
	REQUIRE(tcp && dur && build);
	REQUIRE(metrics_register_process(r, &eb) == 0);
	metrics_gauge_set(metrics_gauge_with(build, (const char *[]){"ztunnel", "1.24.0"}), 1);
	for (int i = 0; i < 6; i++) {
		char w[32];
		snprintf(w, sizeof(w), "w\"%d\\\n\xff", i);
		metrics_counter_add(
			metrics_counter_with(
				tcp, (const char *[]){"source", w,
						      "spiffe://cluster.local/ns/a/sa/b", "-"}),
			(uint64_t)i * 100);
	}
	metrics_histogram_observe(metrics_histogram_with(dur, (const char *[]){"source"}), 0.003);
	metrics_histogram_observe(metrics_histogram_with(dur, (const char *[]){"destination"}), 7);

	text = render_str(r);
	snprintf(path, sizeof(path), "%s/metrics.txt", unit_tmpdir());
	fp = fopen(path, "w");
	REQUIRE(fp);
	fputs(text, fp);
	fclose(fp);
	CHECK_CONTAINS(text, "istio_tcp_sent_bytes_total{reporter=\"__overflow__\"");
	CHECK_CONTAINS(text, "ambient_metrics_series_dropped_total{family=");
	free(text);

	snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < '%s' 2>&1", path);
	fp = popen(cmd, "r");
	REQUIRE(fp);
	while (fgets(line, sizeof(line), fp)) {
		lines++;
		fprintf(stderr, "    promtool: %s", line);
	}
	status = pclose(fp);
	CHECK(WIFEXITED(status));
	CHECK_INT(WEXITSTATUS(status), 0);
	CHECK_INT(lines, 0);
	metrics_registry_free(r);
}
