/* Per-thread indices and the worker pool: N threads, each running its own loop. */
#include "pkg/ev/ev_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define EV_WORKER_STACK (1u << 20) /* musl's 128 KiB default is too tight for TLS handshakes */

/* ---- thread indices -------------------------------------------------------------------------- */

static pthread_mutex_t index_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t index_used = 1; /* bit 0: the shared index of unregistered threads */
static _Thread_local int tls_index;

_Static_assert(EV_MAX_THREADS <= 64, "thread index bitmap is one uint64_t");

static int index_alloc(void)
{
	int idx = -E_LIMIT;

	pthread_mutex_lock(&index_mu);
	for (int i = 1; i < EV_MAX_THREADS; i++) {
		if (!(index_used & (UINT64_C(1) << i))) {
			index_used |= UINT64_C(1) << i;
			idx = i;
			break;
		}
	}
	pthread_mutex_unlock(&index_mu);
	return idx;
}

static void index_free(int idx)
{
	if (idx <= 0 || idx >= EV_MAX_THREADS)
		return;
	pthread_mutex_lock(&index_mu);
	index_used &= ~(UINT64_C(1) << idx);
	pthread_mutex_unlock(&index_mu);
}

int ev_thread_index(void)
{
	return tls_index;
}

int ev_thread_register(void)
{
	int idx;

	if (tls_index)
		return tls_index;
	idx = index_alloc();
	if (idx > 0)
		tls_index = idx;
	return idx;
}

void ev_thread_unregister(void)
{
	index_free(tls_index);
	tls_index = 0;
}

/* ---- workers --------------------------------------------------------------------------------- */

/* State shared by the starter and the workers while they initialize. */
struct ev_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned done; /* workers whose init returned */
	int rc;	       /* first init failure */
	struct errbuf eb;
	ev_worker_init_fn init;
	ev_worker_fini_fn fini;
	void *arg;
};

struct ev_worker {
	pthread_t th;
	bool started;
	unsigned i;
	int index;
	struct ev_loop *loop;
	struct ev_pool *pool;
};

static void *worker_main(void *p)
{
	struct ev_worker *w = p;
	struct ev_pool *pool = w->pool;
	struct errbuf eb;
	int rc = 0;

	tls_index = w->index;
	ev_tls_loop = w->loop; /* so init may post to its own loop and see ev_loop_current() */
	errbuf_clear(&eb);
	if (pool->init)
		rc = pool->init(w->loop, w->i, pool->arg, &eb);
	pthread_mutex_lock(&pool->mu);
	if (rc < 0 && pool->rc == 0) {
		pool->rc = rc;
		errbuf_set(&pool->eb, -rc, "worker %u: %s", w->i, eb.msg[0] ? eb.msg : err_str(rc));
	}
	pool->done++;
	pthread_cond_broadcast(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	if (rc < 0)
		return NULL;
	if (ev_loop_run(w->loop) < 0)
		log_error("worker loop failed", LF_U64("worker", w->i));
	if (pool->fini)
		pool->fini(w->loop, w->i, pool->arg);
	return NULL;
}

/* Signals that report a fault in the running code stay deliverable to the thread causing them. */
static void async_signal_mask(sigset_t *set)
{
	static const int sync_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};

	sigfillset(set);
	for (size_t i = 0; i < ARRAY_LEN(sync_sigs); i++)
		sigdelset(set, sync_sigs[i]);
}

static int worker_spawn(struct ev_worker *w, struct errbuf *eb)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, EV_WORKER_STACK);
	/* Created with signals blocked, so there is no window where a worker could take one. */
	async_signal_mask(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rc = pthread_create(&w->th, &attr, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0)
		return errbuf_set(eb, rc == EAGAIN ? E_LIMIT : E_IO,
				  "worker %u: pthread_create: %s", w->i, strerror(rc));
	w->started = true;
	return 0;
}

int ev_workers_start(struct ev_workers *ws, unsigned n, ev_worker_init_fn init,
		     ev_worker_fini_fn fini, void *arg, struct errbuf *eb)
{
	struct ev_pool *pool;
	int rc = 0;

	memset(ws, 0, sizeof(*ws));
	if (n == 0 || n >= EV_MAX_THREADS)
		return errbuf_set(eb, E_LIMIT, "workers: %u out of range 1..%d", n,
				  EV_MAX_THREADS - 1);
	pool = xcalloc(1, sizeof(*pool));
	pthread_mutex_init(&pool->mu, NULL);
	pthread_cond_init(&pool->cv, NULL);
	pool->init = init;
	pool->fini = fini;
	pool->arg = arg;
	ws->w = xcalloc(n, sizeof(*ws->w));
	ws->n = n;
	for (unsigned i = 0; i < n; i++) {
		struct ev_worker *w = &ws->w[i];
		w->i = i;
		w->pool = pool;
		w->index = index_alloc();
		if (w->index < 0) {
			rc = errbuf_set(eb, E_LIMIT, "workers: more than %d threads",
					EV_MAX_THREADS - 1);
			goto fail;
		}
		w->loop = ev_loop_new(eb);
		if (!w->loop) {
			errbuf_prefix(eb, "worker %u", i);
			rc = -E_IO;
			goto fail;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		rc = worker_spawn(&ws->w[i], eb);
		if (rc < 0)
			goto fail;
	}
	pthread_mutex_lock(&pool->mu);
	while (pool->done < n && pool->rc == 0)
		pthread_cond_wait(&pool->cv, &pool->mu);
	rc = pool->rc;
	if (rc < 0 && eb)
		*eb = pool->eb;
	pthread_mutex_unlock(&pool->mu);
	if (rc < 0)
		goto fail;
	return 0;
fail:
	ev_workers_stop(ws);
	return rc;
}

struct ev_loop *ev_workers_loop(const struct ev_workers *ws, unsigned i)
{
	return i < ws->n ? ws->w[i].loop : NULL;
}

void ev_workers_stop(struct ev_workers *ws)
{
	struct ev_pool *pool = NULL;

	if (!ws->w)
		return;
	for (unsigned i = 0; i < ws->n; i++) {
		if (ws->w[i].started)
			ev_loop_stop(ws->w[i].loop);
	}
	for (unsigned i = 0; i < ws->n; i++) {
		struct ev_worker *w = &ws->w[i];
		pool = w->pool;
		if (w->started)
			pthread_join(w->th, NULL);
		ev_loop_free(w->loop);
		index_free(w->index);
	}
	if (pool) {
		pthread_mutex_destroy(&pool->mu);
		pthread_cond_destroy(&pool->cv);
		free(pool);
	}
	free(ws->w);
	memset(ws, 0, sizeof(*ws));
}
