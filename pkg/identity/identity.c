/* The identity manager: the per-SPIFFE-ID cache, its state machine, the identity thread that
 * fetches single-flight with backoff, and the status snapshot. */
#include "pkg/identity/identity_int.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/*
 *   identity_get / identity_prefetch (new id)
 *          |
 *          v        fetch ok                   now >= refresh_at (half-life)
 *      PENDING  -----------------> READY  ------------------------------> RENEWING
 *          |                        ^  ^                                   |  |  |
 *          | fetch fails            |  +---------- fetch ok ---------------+  |  | fetch fails:
 *          v                        |                                         |  | keep serving,
 *       FAILED  --- retry ok -------+                                         |  | backoff
 *          ^ \___ retry fails (backoff)      now > notAfter: drop the cert    |  v
 *          |                                                                  v (retry)
 *          +-- (never had a cert)           EXPIRED <-------------------------+
 *                                             |  retry ok -> READY; fails -> EXPIRED, backoff
 *
 * Every entry has one deadline, due_ms: the next fetch (half-life after a success, now +
 * backoff after a failure, now for a new entry). The identity thread takes the due entry
 * (those with waiters first), marks it in flight, and runs the request without the lock; a
 * burst of identity_get calls for one ID finds it in flight and only arms waiters
 * (single-flight). The thread sleeps on an eventfd until the earliest due_ms or notAfter.
 */

#define MAX_SLEEP_MS 60000 /* re-check at least this often (wall clock jumps) */
#define HASH_MIN 64

struct entry {
	struct entry *hnext;
	char *id;
	uint64_t hash;
	enum identity_state state;
	struct identity_cert *cert;
	bool prefetch;
	bool in_flight;
	bool orphan; /* forgotten while in flight: the thread frees it */
	int64_t due_ms;
	uint32_t fails;
	uint32_t backoff_ms;
	uint64_t fetches, failures;
	char *last_error;
	int last_code;
	int64_t last_error_ms, last_success_ms;
	struct identity_waiter *waiters;
	uint64_t nwaiters;
};

struct identity_mgr {
	identity_now_fn now;
	void *now_arg;
	int64_t ttl_s;
	uint32_t bmin, bmax;
	bool remote;
	struct identity_client cl;
	struct ca_authority *auth;
	char *roots_what; /* where the trusted roots came from, for errors */
	char *source;
	pthread_mutex_t mu;
	struct entry **tab;
	size_t nb, n;
	uint64_t fetches, failures;
	atomic_bool stopping;
	int wakefd;
	pthread_t th;
	bool started;
};

static int64_t real_now(void *arg)
{
	(void)arg;
	return time_real_ms();
}

static int64_t now_ms(const struct identity_mgr *m)
{
	return m->now(m->now_arg);
}

const char *identity_state_name(enum identity_state s)
{
	switch (s) {
	case IDENTITY_PENDING: return "pending";
	case IDENTITY_READY: return "ready";
	case IDENTITY_RENEWING: return "renewing";
	case IDENTITY_FAILED: return "failed";
	case IDENTITY_EXPIRED: return "expired";
	}
	return "unknown";
}

/* ---- the table ------------------------------------------------------------------------------ */

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static struct entry *find(struct identity_mgr *m, const char *id)
{
	uint64_t h = fnv1a(id);

	for (struct entry *e = m->tab[h & (m->nb - 1)]; e; e = e->hnext)
		if (e->hash == h && strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

static void grow(struct identity_mgr *m)
{
	size_t nb = m->nb * 2;
	struct entry **t = xcalloc(nb, sizeof(*t));

	for (size_t i = 0; i < m->nb; i++) {
		for (struct entry *e = m->tab[i], *next; e; e = next) {
			next = e->hnext;
			e->hnext = t[e->hash & (nb - 1)];
			t[e->hash & (nb - 1)] = e;
		}
	}
	free(m->tab);
	m->tab = t;
	m->nb = nb;
}

static struct entry *create(struct identity_mgr *m, const char *id, int64_t now)
{
	struct entry *e = xcalloc(1, sizeof(*e));

	if (m->n + 1 > m->nb * 2)
		grow(m);
	e->id = xstrdup(id);
	e->hash = fnv1a(id);
	e->state = IDENTITY_PENDING;
	e->due_ms = now;
	e->hnext = m->tab[e->hash & (m->nb - 1)];
	m->tab[e->hash & (m->nb - 1)] = e;
	m->n++;
	return e;
}

static void unlink_entry(struct identity_mgr *m, struct entry *e)
{
	struct entry **pp = &m->tab[e->hash & (m->nb - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	m->n--;
}

static void entry_free(struct entry *e)
{
	identity_cert_unref(e->cert);
	free(e->last_error);
	free(e->id);
	free(e);
}

#define EACH_ENTRY(m, e)                                                                           \
	for (size_t i_ = 0; i_ < (m)->nb; i_++)                                                    \
		for (struct entry *e = (m)->tab[i_]; e; e = e->hnext)

/* ---- waiters (lock held) ------------------------------------------------------------------- */

static void waiter_unlink(struct entry *e, struct identity_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		e->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
	w->entry = NULL;
	e->nwaiters--;
}

static void waiter_arm(struct entry *e, struct identity_waiter *w)
{
	w->prev = NULL;
	w->next = e->waiters;
	if (e->waiters)
		e->waiters->prev = w;
	e->waiters = w;
	w->entry = e;
	e->nwaiters++;
}

static void notify(struct entry *e, int status)
{
	while (e->waiters) {
		struct identity_waiter *w = e->waiters;

		waiter_unlink(e, w);
		w->fn(w, status);
	}
}

void identity_waiter_cancel(struct identity_mgr *m, struct identity_waiter *w)
{
	pthread_mutex_lock(&m->mu);
	if (w->entry)
		waiter_unlink(w->entry, w);
	pthread_mutex_unlock(&m->mu);
}

/* ---- state changes (lock held) --------------------------------------------------------------- */

static bool cert_live(const struct identity_cert *c, int64_t now)
{
	return c && now < (c->not_after + 1) * 1000; /* notAfter is inclusive */
}

/* Drops a certificate past its notAfter; refetch at once unless a backoff is running. */
static void expire(struct entry *e, int64_t now)
{
	log_warn("identity: certificate expired, dropped", LF_STR("identity", e->id),
		 LF_STR("serial", e->cert->serial), LF_I64("not_after", e->cert->not_after));
	identity_cert_unref(e->cert);
	e->cert = NULL;
	e->state = IDENTITY_EXPIRED;
	if (e->fails == 0 && e->due_ms > now)
		e->due_ms = now;
}

/* min(min * 2^(fails-1), max), times [1 - J, 1 + J], clamped to [min, max]; Retry-After wins
 * when longer (up to max). */
static uint32_t backoff_delay(const struct identity_mgr *m, uint32_t fails, int64_t retry_after_s)
{
	uint64_t base = m->bmin;
	uint64_t lo;
	uint64_t hi;
	uint64_t d;

	for (uint32_t k = 1; k < fails && base < m->bmax; k++)
		base *= 2;
	base = MIN(base, m->bmax);
	lo = base * (100 - IDENTITY_JITTER_PCT) / 100;
	hi = base * (100 + IDENTITY_JITTER_PCT) / 100;
	d = lo + rand_below(hi - lo + 1);
	d = MAX(d, m->bmin);
	d = MIN(d, m->bmax);
	if (retry_after_s > 0 && (uint64_t)retry_after_s * 1000 > d)
		d = MIN((uint64_t)retry_after_s * 1000, m->bmax);
	return (uint32_t)d;
}

static void publish_ok(struct identity_mgr *m, struct entry *e, struct identity_cert *c,
		       int64_t now)
{
	identity_cert_unref(e->cert);
	e->cert = c;
	e->state = IDENTITY_READY;
	e->fails = 0;
	e->backoff_ms = 0;
	e->last_success_ms = now;
	/* A certificate already past its half-life (tiny TTL, skew) must not spin the thread. */
	e->due_ms = MAX(c->refresh_at_ms, now + m->bmin);
	log_info("identity: certificate issued", LF_STR("identity", e->id),
		 LF_STR("serial", c->serial), LF_I64("not_after", c->not_after),
		 LF_I64("refresh_at_ms", e->due_ms));
	notify(e, 0);
}

static void publish_fail(struct identity_mgr *m, struct entry *e, const struct errbuf *eb,
			 int64_t retry_after, int64_t now)
{
	e->fails++;
	e->failures++;
	m->failures++;
	e->backoff_ms = backoff_delay(m, e->fails, retry_after);
	e->due_ms = now + e->backoff_ms;
	free(e->last_error);
	e->last_error = xstrdup(eb->msg);
	e->last_code = eb->code ? eb->code : E_IO;
	e->last_error_ms = now;
	if (e->cert && !cert_live(e->cert, now))
		expire(e, now);
	if (e->cert)
		e->state = IDENTITY_RENEWING; /* keep serving the valid one */
	else if (e->state != IDENTITY_EXPIRED)
		e->state = IDENTITY_FAILED;
	log_warn("identity: certificate fetch failed", LF_STR("identity", e->id),
		 LF_STR("state", identity_state_name(e->state)), LF_U64("attempt", e->fails),
		 LF_U64("retry_in_ms", e->backoff_ms), LF_ERR(eb->msg));
	notify(e, -e->last_code);
}

/* ---- fetching (no lock) -------------------------------------------------------------------- */

static int fetch_remote(struct identity_mgr *m, const char *id, struct x509_key *key, int64_t now,
			struct identity_answer *a, struct errbuf *eb)
{
	struct buf der;
	struct buf pem;
	int r;

	buf_init(&der, 0);
	buf_init(&pem, 0);
	r = x509_csr_encode(key, id, &der, eb);
	if (r == 0)
		r = x509_pem_format(&pem, "CERTIFICATE REQUEST", buf_rptr(&der), buf_len(&der));
	if (r == 0)
		r = buf_append(&pem, "", 1); /* NUL */
	if (r == 0)
		r = identity_client_request(&m->cl, id, (const char *)buf_rptr(&pem), m->ttl_s,
					    now / 1000, a, eb);
	buf_fini(&der);
	buf_fini(&pem);
	return r;
}

static int fetch(struct identity_mgr *m, const char *id, int64_t now, struct identity_cert **out,
		 int64_t *retry_after, struct errbuf *eb)
{
	struct x509_key *key = NULL;
	struct identity_answer a = {0};
	struct ca_issued is = {0};
	const struct x509_chain *trusted;
	char **pem;
	size_t n;
	int r;

	if (x509_key_generate(&key) < 0)
		return errbuf_set(eb, E_CRYPTO, "key generation failed");
	if (m->remote) {
		r = fetch_remote(m, id, key, now, &a, eb);
		*retry_after = a.retry_after;
		pem = a.pem;
		n = a.n;
		trusted = &m->cl.http.roots;
	} else {
		struct ca_issue_req req = {.pub = x509_key_public(key),
					   .identity = id,
					   .ttl = m->ttl_s,
					   .now = now / 1000};

		r = ca_issue(m->auth, &req, &is, eb);
		if (r < 0)
			errbuf_prefix(eb, "local CA %s", m->auth->dir);
		pem = is.pem;
		n = is.n;
		trusted = &m->auth->roots;
	}
	if (r < 0) {
		x509_key_free(key);
		goto out;
	}
	r = identity_cert_build(id, key, pem, n, trusted, m->roots_what, now_ms(m) / 1000, out, eb);
	if (r < 0)
		errbuf_prefix(eb, "%s", m->source);
out:
	identity_answer_fini(&a);
	ca_issued_fini(&is);
	return r;
}

/* ---- the identity thread --------------------------------------------------------------------- */

static struct entry *pick_due(struct identity_mgr *m, int64_t now)
{
	struct entry *best = NULL;

	EACH_ENTRY(m, e)
	{
		if (e->in_flight || e->due_ms > now)
			continue;
		if (!best || (e->nwaiters > 0 && best->nwaiters == 0) ||
		    ((e->nwaiters > 0) == (best->nwaiters > 0) && e->due_ms < best->due_ms))
			best = e;
	}
	return best;
}

static int64_t next_deadline(struct identity_mgr *m, int64_t now)
{
	int64_t d = now + MAX_SLEEP_MS;

	EACH_ENTRY(m, e)
	{
		if (e->in_flight)
			continue;
		d = MIN(d, e->due_ms);
		if (e->cert)
			d = MIN(d, (e->cert->not_after + 1) * 1000);
	}
	return d;
}

static void expire_pass(struct identity_mgr *m, int64_t now)
{
	EACH_ENTRY(m, e)
	{
		if (e->cert && !cert_live(e->cert, now))
			expire(e, now);
	}
}

static void run_one(struct identity_mgr *m, struct entry *e, int64_t now)
{
	struct identity_cert *c = NULL;
	struct errbuf eb = {0};
	int64_t retry_after = 0;
	char *id = xstrdup(e->id);
	int r;

	e->in_flight = true;
	e->fetches++;
	m->fetches++;
	if (e->state == IDENTITY_READY)
		e->state = IDENTITY_RENEWING;
	pthread_mutex_unlock(&m->mu);
	r = fetch(m, id, now, &c, &retry_after, &eb);
	pthread_mutex_lock(&m->mu);
	free(id);
	e->in_flight = false;
	now = now_ms(m);
	if (e->orphan) {
		identity_cert_unref(c);
		entry_free(e);
	} else if (r == 0) {
		publish_ok(m, e, c, now);
	} else if (!atomic_load(&m->stopping)) {
		publish_fail(m, e, &eb, retry_after, now);
	}
}

static void sleep_until(struct identity_mgr *m, int64_t ms)
{
	struct pollfd p = {.fd = m->wakefd, .events = POLLIN};
	uint64_t v;

	if (poll(&p, 1, (int)ms) > 0 && read(m->wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_error("identity: eventfd read failed", LF_ERR(strerror(errno)));
}

static void *identity_main(void *arg)
{
	struct identity_mgr *m = arg;

	pthread_mutex_lock(&m->mu);
	while (!atomic_load(&m->stopping)) {
		int64_t now = now_ms(m);
		struct entry *e;
		int64_t wait;

		expire_pass(m, now);
		e = pick_due(m, now);
		if (e) {
			run_one(m, e, now);
			continue;
		}
		wait = next_deadline(m, now) - now;
		pthread_mutex_unlock(&m->mu);
		sleep_until(m, MAX(0, MIN(wait, MAX_SLEEP_MS)));
		pthread_mutex_lock(&m->mu);
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

void identity_mgr_wake(struct identity_mgr *m)
{
	uint64_t one = 1;

	if (write(m->wakefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_error("identity: eventfd write failed", LF_ERR(strerror(errno)));
}

/* ---- lifecycle ---------------------------------------------------------------------------------
 */

static int setup_source(struct identity_mgr *m, const struct identity_opts *o, struct errbuf *eb)
{
	int r;

	if (!!o->ca_url == !!o->ca_dir)
		return errbuf_set(
			eb, E_INVAL,
			"identity: set exactly one certificate source: ca_url (remote CA) "
			"or ca_dir (local signing)");
	if (o->ca_url) {
		m->remote = true;
		r = identity_client_init(&m->cl, o, eb);
		if (r < 0)
			return r;
		m->cl.wakefd = m->wakefd;
		m->cl.stopping = &m->stopping;
		m->source = xstrdup(m->cl.url.display);
		m->roots_what = xstrdup(o->ca_root);
		return 0;
	}
	if (o->ca_root || o->token_file || o->ca_identity)
		return errbuf_set(eb, E_INVAL,
				  "identity: ca_root, token_file and ca_identity belong to ca_url, "
				  "not ca_dir");
	r = ca_authority_load(o->ca_dir, o->trust_domain, now_ms(m) / 1000, &m->auth, eb);
	if (r < 0) {
		errbuf_prefix(eb, "identity: ca_dir %s", o->ca_dir);
		return r;
	}
	m->source = xasprintf("ca-dir %s", o->ca_dir);
	m->roots_what = xasprintf("%s/%s", o->ca_dir, CA_ROOT_FILE);
	return 0;
}

struct identity_mgr *identity_mgr_new(const struct identity_opts *o, struct errbuf *eb)
{
	struct identity_mgr *m = xcalloc(1, sizeof(*m));
	int r;

	m->now = o->now ? o->now : real_now;
	m->now_arg = o->now_arg;
	m->ttl_s = o->ttl_s > 0 ? o->ttl_s : X509_LEAF_DEFAULT_TTL;
	m->bmin = o->backoff_min_ms ? o->backoff_min_ms : IDENTITY_BACKOFF_MIN_MS;
	m->bmax = o->backoff_max_ms ? o->backoff_max_ms : IDENTITY_BACKOFF_MAX_MS;
	m->nb = HASH_MIN;
	m->tab = xcalloc(m->nb, sizeof(*m->tab));
	m->cl.wakefd = -1;
	atomic_init(&m->stopping, false);
	pthread_mutex_init(&m->mu, NULL);
	m->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (m->wakefd < 0) {
		errbuf_set(eb, E_IO, "identity: eventfd: %s", strerror(errno));
		goto fail;
	}
	if (o->ttl_s < 0 || o->ttl_s > X509_LEAF_MAX_TTL || m->bmin > m->bmax) {
		errbuf_set(eb, E_INVAL, "identity: ttl must be 0..%d s and backoff min <= max",
			   X509_LEAF_MAX_TTL);
		goto fail;
	}
	if (setup_source(m, o, eb) < 0)
		goto fail;
	r = pthread_create(&m->th, NULL, identity_main, m);
	if (r != 0) {
		errbuf_set(eb, E_IO, "identity: thread: %s", strerror(r));
		goto fail;
	}
	m->started = true;
	return m;
fail:
	identity_mgr_free(m);
	return NULL;
}

void identity_mgr_free(struct identity_mgr *m)
{
	if (!m)
		return;
	atomic_store(&m->stopping, true);
	if (m->started) {
		identity_mgr_wake(m);
		pthread_join(m->th, NULL);
	}
	for (size_t i = 0; i < m->nb; i++) {
		for (struct entry *e = m->tab[i], *next; e; e = next) {
			next = e->hnext;
			notify(e, -E_CLOSED);
			entry_free(e);
		}
	}
	free(m->tab);
	if (m->remote)
		identity_client_fini(&m->cl);
	ca_authority_free(m->auth);
	if (m->wakefd >= 0)
		close(m->wakefd);
	pthread_mutex_destroy(&m->mu);
	free(m->source);
	free(m->roots_what);
	free(m);
}

/* ---- lookups -----------------------------------------------------------------------------------
 */

static int check_id(const char *id, struct errbuf *eb)
{
	struct x509_spiffe s;
	struct slice ns;
	struct slice sa;

	if (!id || x509_spiffe_parse(id, strlen(id), &s, eb) < 0 ||
	    x509_spiffe_istio(&s, &ns, &sa, eb) < 0) {
		errbuf_prefix(eb, "identity");
		return -E_INVAL;
	}
	return 0;
}

int identity_get(struct identity_mgr *m, const char *spiffe_id, struct identity_cert **out,
		 struct identity_waiter *w, struct errbuf *eb)
{
	struct entry *e;
	bool wake = false;
	int64_t now;
	int r;

	*out = NULL;
	if (check_id(spiffe_id, eb) < 0)
		return -E_INVAL;
	pthread_mutex_lock(&m->mu);
	now = now_ms(m);
	e = find(m, spiffe_id);
	if (!e) {
		e = create(m, spiffe_id, now);
		wake = true;
	}
	if (e->cert && cert_live(e->cert, now)) {
		*out = identity_cert_ref(e->cert);
		pthread_mutex_unlock(&m->mu);
		return 0;
	}
	if (e->cert) {
		expire(e, now);
		wake = true;
	}
	if (e->state == IDENTITY_PENDING || e->in_flight || e->due_ms <= now) {
		if (w) {
			if (w->entry)
				waiter_unlink(w->entry, w);
			waiter_arm(e, w);
		}
		r = errbuf_set(eb, E_AGAIN, "%s: certificate fetch in progress", spiffe_id);
		wake = wake || (!e->in_flight && e->due_ms <= now);
	} else {
		r = errbuf_set(eb, e->last_code ? e->last_code : E_IO,
			       "%s: no valid certificate (%s; next attempt in %lld ms): %s",
			       spiffe_id, identity_state_name(e->state),
			       (long long)(e->due_ms - now),
			       e->last_error ? e->last_error : "unknown error");
	}
	pthread_mutex_unlock(&m->mu);
	if (wake)
		identity_mgr_wake(m);
	return r;
}

int identity_prefetch(struct identity_mgr *m, const char *spiffe_id, struct errbuf *eb)
{
	struct entry *e;
	bool created = false;

	if (check_id(spiffe_id, eb) < 0)
		return -E_INVAL;
	pthread_mutex_lock(&m->mu);
	e = find(m, spiffe_id);
	if (!e) {
		e = create(m, spiffe_id, now_ms(m));
		created = true;
	}
	e->prefetch = true;
	pthread_mutex_unlock(&m->mu);
	if (created)
		identity_mgr_wake(m);
	return 0;
}

int identity_forget(struct identity_mgr *m, const char *spiffe_id)
{
	struct entry *e;

	pthread_mutex_lock(&m->mu);
	e = spiffe_id ? find(m, spiffe_id) : NULL;
	if (!e) {
		pthread_mutex_unlock(&m->mu);
		return -E_NOTFOUND;
	}
	unlink_entry(m, e);
	notify(e, -E_CLOSED);
	if (e->in_flight)
		e->orphan = true;
	else
		entry_free(e);
	pthread_mutex_unlock(&m->mu);
	return 0;
}

/* ---- status ------------------------------------------------------------------------------------
 */

void identity_status_get(struct identity_mgr *m, struct identity_status *st)
{
	size_t k = 0;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&m->mu);
	st->source = xstrdup(m->source);
	st->fetches = m->fetches;
	st->failures = m->failures;
	st->v = xcalloc(m->n ? m->n : 1, sizeof(*st->v));
	EACH_ENTRY(m, e)
	{
		struct identity_entry_status *s = &st->v[k++];

		s->spiffe_id = xstrdup(e->id);
		s->state = e->state;
		s->prefetch = e->prefetch;
		s->in_flight = e->in_flight;
		if (e->cert) {
			snprintf(s->serial, sizeof(s->serial), "%s", e->cert->serial);
			s->not_before = e->cert->not_before;
			s->not_after = e->cert->not_after;
		}
		s->next_refresh_ms = e->due_ms;
		s->consecutive_failures = e->fails;
		s->backoff_ms = e->backoff_ms;
		s->fetches = e->fetches;
		s->failures = e->failures;
		s->waiters = e->nwaiters;
		s->last_error = e->last_error ? xstrdup(e->last_error) : NULL;
		s->last_error_ms = e->last_error_ms;
		s->last_success_ms = e->last_success_ms;
	}
	st->n = k;
	pthread_mutex_unlock(&m->mu);
}

void identity_status_fini(struct identity_status *st)
{
	for (size_t i = 0; i < st->n; i++) {
		free(st->v[i].spiffe_id);
		free(st->v[i].last_error);
	}
	free(st->v);
	free(st->source);
	memset(st, 0, sizeof(*st));
}

static void write_entry(struct json_writer *w, const struct identity_entry_status *s)
{
	json_write_object_begin(w);
	json_kv_str(w, "identity", s->spiffe_id);
	json_kv_str(w, "state", identity_state_name(s->state));
	json_kv_bool(w, "prefetch", s->prefetch);
	json_kv_bool(w, "inFlight", s->in_flight);
	json_kv_str(w, "serialNumber", s->serial[0] ? s->serial : NULL);
	json_kv_time_ms(w, "notBefore", s->not_before * 1000);
	json_kv_time_ms(w, "notAfter", s->not_after * 1000);
	json_kv_time_ms(w, "nextRefresh", s->next_refresh_ms);
	json_kv_uint(w, "consecutiveFailures", s->consecutive_failures);
	json_kv_uint(w, "backoffMs", s->backoff_ms);
	json_kv_uint(w, "fetches", s->fetches);
	json_kv_uint(w, "failures", s->failures);
	json_kv_uint(w, "waiters", s->waiters);
	json_kv_str(w, "lastError", s->last_error);
	json_kv_time_ms(w, "lastErrorTime", s->last_error_ms);
	json_kv_time_ms(w, "lastSuccess", s->last_success_ms);
	json_write_object_end(w);
}

void identity_status_write_json(const struct identity_status *st, struct json_writer *w)
{
	json_write_object_begin(w);
	json_kv_str(w, "source", st->source);
	json_kv_uint(w, "fetches", st->fetches);
	json_kv_uint(w, "failures", st->failures);
	json_write_key(w, "identities");
	json_write_array_begin(w);
	for (size_t i = 0; i < st->n; i++)
		write_entry(w, &st->v[i]);
	json_write_array_end(w);
	json_write_object_end(w);
}
