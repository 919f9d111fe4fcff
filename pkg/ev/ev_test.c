/* Tests for the event loop: timers, fd watchers, posts, signals and worker threads. */
#include "pkg/ev/ev.h"
#include "test/unit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static struct ev_loop *new_loop(void)
{
	struct errbuf eb;
	struct ev_loop *loop = ev_loop_new(&eb);

	if (!loop)
		unit_fail(__FILE__, __LINE__, "ev_loop_new: %s", eb.msg);
	return loop;
}

/* Stops the loop if a test would otherwise hang; never reached when the code works. */
static void guard_cb(struct ev_loop *loop, struct ev_timer *t)
{
	(void)t;
	unit_fail(__FILE__, __LINE__, "guard timer fired: the loop did not finish");
	ev_loop_stop(loop);
}

/* ---- timers ---------------------------------------------------------------------------------- */

struct tnode {
	struct ev_timer t;
	int id;
};

static int order[64];
static int norder;
static int stop_after;

static void record_cb(struct ev_loop *loop, struct ev_timer *t)
{
	struct tnode *n = ev_container_of(t, struct tnode, t);

	order[norder++] = n->id;
	if (norder == stop_after)
		ev_loop_stop(loop);
}

TEST(timers_fire_in_deadline_then_arming_order)
{
	struct ev_loop *loop = new_loop();
	struct tnode n[5];
	uint64_t delays[5] = {30, 10, 20, 10, 0};
	struct ev_timer guard;

	REQUIRE(loop);
	norder = 0;
	stop_after = 5;
	for (int i = 0; i < 5; i++) {
		n[i].id = i;
		ev_timer_init(&n[i].t, record_cb);
		ev_timer_add(loop, &n[i].t, delays[i]);
		CHECK(ev_timer_active(&n[i].t));
	}
	ev_timer_init(&guard, guard_cb);
	ev_timer_add(loop, &guard, 10000);
	CHECK_INT(ev_timer_count(loop), 6);
	CHECK_INT(ev_loop_run(loop), 0);
	REQUIRE(norder == 5);
	/* delay 0 first, then the two 10 ms timers in arming order, then 20, then 30 */
	CHECK_INT(order[0], 4);
	CHECK_INT(order[1], 1);
	CHECK_INT(order[2], 3);
	CHECK_INT(order[3], 2);
	CHECK_INT(order[4], 0);
	for (int i = 0; i < 5; i++)
		CHECK(!ev_timer_active(&n[i].t));
	ev_timer_del(loop, &guard);
	CHECK_INT(ev_timer_count(loop), 0);
	ev_loop_free(loop);
}

TEST(timer_cancel_and_rearm)
{
	struct ev_loop *loop = new_loop();
	struct tnode a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
	struct ev_timer guard;

	REQUIRE(loop);
	norder = 0;
	stop_after = 2;
	ev_timer_init(&a.t, record_cb);
	ev_timer_init(&b.t, record_cb);
	ev_timer_init(&c.t, record_cb);
	ev_timer_add(loop, &a.t, 60);
	ev_timer_add(loop, &b.t, 20);
	ev_timer_add(loop, &c.t, 1);
	ev_timer_del(loop, &c.t);
	ev_timer_del(loop, &c.t); /* second delete is a no-op */
	CHECK(!ev_timer_active(&c.t));
	ev_timer_add(loop, &a.t, 5); /* re-arm earlier than b */
	CHECK_INT(ev_timer_count(loop), 2);
	ev_timer_init(&guard, guard_cb);
	ev_timer_add(loop, &guard, 10000);
	CHECK_INT(ev_loop_run(loop), 0);
	CHECK_INT(norder, 2);
	CHECK_INT(order[0], 1);
	CHECK_INT(order[1], 2);
	ev_timer_del(loop, &guard);
	ev_loop_free(loop);
}

static int rearm_fired;

static void rearm_self_cb(struct ev_loop *loop, struct ev_timer *t)
{
	rearm_fired++;
	ev_timer_add(loop, t, 0);
}

TEST(timer_rearmed_from_its_callback_waits_for_next_iteration)
{
	struct ev_loop *loop = new_loop();
	struct ev_timer t;

	REQUIRE(loop);
	rearm_fired = 0;
	ev_timer_init(&t, rearm_self_cb);
	ev_timer_add_at(loop, &t, 0); /* already due */
	CHECK_INT(ev_loop_run_once(loop, 0), 0);
	CHECK_INT(rearm_fired, 1);
	CHECK(ev_timer_active(&t));
	CHECK_INT(ev_loop_run_once(loop, 0), 0);
	CHECK_INT(rearm_fired, 2);
	ev_timer_del(loop, &t);
	ev_loop_free(loop);
}

struct hnode {
	struct ev_timer t;
	uint64_t deadline;
	bool cancelled;
	bool fired;
};

static uint64_t heap_last;
static int heap_bad;

static void heap_cb(struct ev_loop *loop, struct ev_timer *t)
{
	struct hnode *h = ev_container_of(t, struct hnode, t);

	(void)loop;
	if (h->cancelled || h->fired || h->deadline < heap_last)
		heap_bad++;
	h->fired = true;
	heap_last = h->deadline;
}

TEST(timer_heap_random_operations_keep_order)
{
	enum { N = 2000 };
	struct ev_loop *loop = new_loop();
	struct hnode *h = calloc(N, sizeof(*h));
	int live = 0;

	REQUIRE(loop && h);
	heap_last = 0;
	heap_bad = 0;
	/* Deadlines in the past relative to the loop clock, so one pass fires everything. */
	for (int i = 0; i < N; i++) {
		h[i].deadline = rand_below(1000);
		ev_timer_init(&h[i].t, heap_cb);
		ev_timer_add_at(loop, &h[i].t, h[i].deadline);
	}
	for (int i = 0; i < N; i++) {
		uint64_t r = rand_below(3);
		if (r == 0) {
			ev_timer_del(loop, &h[i].t);
			h[i].cancelled = true;
		} else if (r == 1) {
			h[i].deadline = rand_below(1000);
			ev_timer_add_at(loop, &h[i].t, h[i].deadline);
		}
	}
	for (int i = 0; i < N; i++)
		live += !h[i].cancelled;
	CHECK_INT(ev_timer_count(loop), live);
	CHECK_INT(ev_loop_run_once(loop, 0), 0);
	CHECK_INT(heap_bad, 0);
	CHECK_INT(ev_timer_count(loop), 0);
	for (int i = 0; i < N; i++)
		CHECK(h[i].fired == !h[i].cancelled);
	free(h);
	ev_loop_free(loop);
}

/* ---- fd watchers ----------------------------------------------------------------------------- */

struct pio {
	struct ev_io io;
	int calls;
	unsigned last;
	int bytes;
	bool one_byte; /* read one byte per call and never clear readiness by hand */
	bool eof;
};

static void pipe_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct pio *p = ev_container_of(io, struct pio, io);
	char c[64];
	ssize_t n;

	(void)loop;
	p->calls++;
	p->last = events;
	if (!(events & EV_READ))
		return;
	n = read(io->fd, c, p->one_byte ? 1 : sizeof(c));
	if (n > 0)
		p->bytes += (int)n;
	else if (n == 0)
		p->eof = true;
	else if (errno == EAGAIN)
		ev_io_clear_ready(io, EV_READ);
}

static int make_pipe(int fds[2])
{
	return pipe2(fds, O_NONBLOCK | O_CLOEXEC);
}

TEST(io_readiness_is_cached_while_not_interested)
{
	struct ev_loop *loop = new_loop();
	struct pio p = {0};
	int fds[2];

	REQUIRE(loop);
	REQUIRE(make_pipe(fds) == 0);
	ev_io_init(&p.io, fds[0], pipe_cb);
	REQUIRE(ev_io_start(loop, &p.io, 0) == 0);
	CHECK_INT(ev_io_start(loop, &p.io, 0), -E_STATE);
	REQUIRE(write(fds[1], "abc", 3) == 3);
	CHECK_INT(ev_loop_run_once(loop, 50), 0);
	CHECK_INT(p.calls, 0); /* the edge came while nobody wanted to read */
	ev_io_set(loop, &p.io, EV_READ);
	CHECK_INT(ev_loop_run_once(loop, 0), 0);
	CHECK_INT(p.calls, 1);
	CHECK_INT(p.bytes, 3);
	CHECK(p.last & EV_READ);
	/* Still marked ready, so it is called again; that read sees EAGAIN and clears it. */
	CHECK_INT(ev_loop_run_once(loop, 0), 0);
	CHECK_INT(p.calls, 2);
	CHECK_INT(ev_loop_run_once(loop, 0), 0);
	CHECK_INT(p.calls, 2);
	ev_io_stop(loop, &p.io);
	ev_io_stop(loop, &p.io);
	close(fds[0]);
	close(fds[1]);
	ev_loop_free(loop);
}

TEST(io_level_triggered_emulation_calls_until_drained)
{
	struct ev_loop *loop = new_loop();
	struct pio p = {.one_byte = true};
	int fds[2];

	REQUIRE(loop);
	REQUIRE(make_pipe(fds) == 0);
	ev_io_init(&p.io, fds[0], pipe_cb);
	REQUIRE(ev_io_start(loop, &p.io, EV_READ) == 0);
	REQUIRE(write(fds[1], "xyz", 3) == 3);
	/* One callback per iteration, one byte each: no new edge is needed for the rest. */
	for (int i = 1; i <= 3; i++) {
		CHECK_INT(ev_loop_run_once(loop, 1000), 0);
		CHECK_INT(p.calls, i);
		CHECK_INT(p.bytes, i);
	}
	CHECK_INT(ev_loop_run_once(loop, 0), 0); /* EAGAIN */
	CHECK_INT(ev_loop_run_once(loop, 0), 0);
	CHECK_INT(p.calls, 4);
	close(fds[1]);
	CHECK_INT(ev_loop_run_once(loop, 1000), 0);
	CHECK(p.last & EV_HUP);
	CHECK(p.eof);
	ev_io_stop(loop, &p.io);
	close(fds[0]);
	ev_loop_free(loop);
}

struct pair {
	struct ev_io a;
	struct ev_io *b;
	bool b_called;
};

static struct pair *the_pair;

static void pair_a_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	(void)events;
	ev_io_stop(loop, the_pair->b);
	free(the_pair->b);
	the_pair->b = NULL;
	ev_io_stop(loop, io); /* stopping yourself inside your callback is allowed too */
}

static void pair_b_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	(void)loop;
	(void)io;
	(void)events;
	the_pair->b_called = true;
}

TEST(io_stop_and_free_another_ready_watcher_from_a_callback)
{
	struct ev_loop *loop = new_loop();
	struct pair pr = {0};
	int p1[2], p2[2];

	REQUIRE(loop);
	REQUIRE(make_pipe(p1) == 0 && make_pipe(p2) == 0);
	the_pair = &pr;
	pr.b = malloc(sizeof(*pr.b));
	REQUIRE(pr.b);
	ev_io_init(&pr.a, p1[0], pair_a_cb);
	ev_io_init(pr.b, p2[0], pair_b_cb);
	/* b is registered first so the kernel is likely to report it first as well: whichever
	 * order, a's callback frees b and ASan would catch any later use. */
	REQUIRE(ev_io_start(loop, pr.b, EV_READ) == 0);
	REQUIRE(ev_io_start(loop, &pr.a, EV_READ) == 0);
	REQUIRE(write(p1[1], "a", 1) == 1 && write(p2[1], "b", 1) == 1);
	CHECK_INT(ev_loop_run_once(loop, 1000), 0);
	CHECK_INT(ev_loop_run_once(loop, 0), 0);
	CHECK(!ev_io_active(&pr.a));
	/* b may have run before a in the first pass, but never after being freed */
	CHECK(pr.b == NULL);
	for (int i = 0; i < 2; i++) {
		close(p1[i]);
		close(p2[i]);
	}
	ev_loop_free(loop);
}

struct sock_reader {
	struct ev_io io;
	struct buf b;
	bool eof;
};

static void sock_read_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct sock_reader *r = ev_container_of(io, struct sock_reader, io);
	ssize_t n;

	(void)events;
	n = ev_io_read(io, &r->b, 0);
	if (n == 0) {
		r->eof = true;
		ev_io_set(loop, io, 0);
		ev_loop_stop(loop);
	}
}

TEST(io_read_helper_sees_eof_that_came_with_the_data)
{
	struct ev_loop *loop = new_loop();
	struct sock_reader r = {0};
	struct ev_timer guard;
	int sv[2];

	REQUIRE(loop);
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	buf_init(&r.b, 1 << 20);
	/* Data and FIN are both queued before the first epoll_wait: one edge announces both. */
	REQUIRE(write(sv[1], "hello", 5) == 5);
	REQUIRE(shutdown(sv[1], SHUT_WR) == 0);
	ev_io_init(&r.io, sv[0], sock_read_cb);
	REQUIRE(ev_io_start(loop, &r.io, EV_READ) == 0);
	ev_timer_init(&guard, guard_cb);
	ev_timer_add(loop, &guard, 10000);
	CHECK_INT(ev_loop_run(loop), 0);
	CHECK(r.eof);
	CHECK_INT(buf_len(&r.b), 5);
	CHECK_MEM(buf_rptr(&r.b), "hello", 5);
	ev_timer_del(loop, &guard);
	ev_io_stop(loop, &r.io);
	buf_fini(&r.b);
	close(sv[0]);
	close(sv[1]);
	ev_loop_free(loop);
}

/* ---- posts and stop -------------------------------------------------------------------------- */

struct post_ctx {
	struct ev_loop *loop;
	pthread_t loop_thread;
	atomic_int ran;
	int wrong_thread;
	int total;
};

static void post_fn(struct ev_loop *loop, void *arg)
{
	struct post_ctx *c = arg;

	if (!pthread_equal(pthread_self(), c->loop_thread) || ev_loop_current() != loop)
		c->wrong_thread++;
	if (atomic_fetch_add(&c->ran, 1) + 1 == c->total)
		ev_loop_stop(loop);
}

static void *poster_main(void *arg)
{
	struct post_ctx *c = arg;

	for (int i = 0; i < c->total / 4; i++)
		ev_loop_post(c->loop, post_fn, c);
	return NULL;
}

TEST(posts_from_other_threads_run_on_the_loop_thread_none_lost)
{
	struct post_ctx c = {.total = 4 * 5000};
	pthread_t th[4];
	struct ev_timer guard;

	c.loop = new_loop();
	REQUIRE(c.loop);
	c.loop_thread = pthread_self();
	ev_timer_init(&guard, guard_cb);
	ev_timer_add(c.loop, &guard, 20000);
	for (int i = 0; i < 4; i++)
		REQUIRE(pthread_create(&th[i], NULL, poster_main, &c) == 0);
	CHECK_INT(ev_loop_run(c.loop), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CHECK_INT(atomic_load(&c.ran), c.total);
	CHECK_INT(c.wrong_thread, 0);
	ev_timer_del(c.loop, &guard);
	ev_loop_free(c.loop);
}

static int local_order[3];
static int nlocal;

static void local_fn(struct ev_loop *loop, void *arg)
{
	local_order[nlocal++] = (int)(intptr_t)arg;
	if (nlocal == 1) {
		ev_loop_post(loop, local_fn, (void *)(intptr_t)3); /* never inline */
		CHECK_INT(nlocal, 1);
	}
	if (nlocal == 3)
		ev_loop_stop(loop);
}

static void start_local(struct ev_loop *loop, struct ev_timer *t)
{
	(void)t;
	ev_loop_post(loop, local_fn, (void *)(intptr_t)1);
	ev_loop_post(loop, local_fn, (void *)(intptr_t)2);
}

TEST(post_from_the_loop_thread_runs_later_in_order)
{
	struct ev_loop *loop = new_loop();
	struct ev_timer t, guard;

	REQUIRE(loop);
	nlocal = 0;
	ev_timer_init(&t, start_local);
	ev_timer_add(loop, &t, 0);
	ev_timer_init(&guard, guard_cb);
	ev_timer_add(loop, &guard, 10000);
	CHECK_INT(ev_loop_run(loop), 0);
	CHECK_INT(nlocal, 3);
	CHECK_INT(local_order[0], 1);
	CHECK_INT(local_order[1], 2);
	CHECK_INT(local_order[2], 3);
	ev_timer_del(loop, &guard);
	ev_loop_free(loop);
}

static void *stopper_main(void *arg)
{
	ev_loop_stop(arg);
	return NULL;
}

TEST(stop_from_another_thread_wakes_a_blocked_loop)
{
	struct ev_loop *loop = new_loop();
	pthread_t th;

	REQUIRE(loop);
	/* No timers or fds: without the wake-up the loop would block forever. */
	REQUIRE(pthread_create(&th, NULL, stopper_main, loop) == 0);
	CHECK_INT(ev_loop_run(loop), 0);
	pthread_join(th, NULL);
	/* Stop before run is sticky: run returns at once. */
	ev_loop_stop(loop);
	CHECK_INT(ev_loop_run(loop), 0);
	ev_loop_free(loop);
}

static int freed_posts;

static void count_fn(struct ev_loop *loop, void *arg)
{
	(void)loop;
	(void)arg;
	freed_posts++;
}

TEST(loop_free_runs_queued_posts)
{
	struct ev_loop *loop = new_loop();

	REQUIRE(loop);
	freed_posts = 0;
	ev_loop_post(loop, count_fn, NULL);
	ev_loop_post(loop, count_fn, NULL);
	ev_loop_free(loop);
	CHECK_INT(freed_posts, 2);
}

/* ---- signals --------------------------------------------------------------------------------- */

static int sig_seen;

static void sig_fn(struct ev_loop *loop, int signo, void *arg)
{
	sig_seen = signo;
	CHECK_INT((int)(intptr_t)arg, 42);
	ev_loop_stop(loop);
}

TEST(signalfd_delivers_a_raised_signal)
{
	struct ev_loop *loop = new_loop();
	struct ev_timer guard;
	int sigs[] = {SIGUSR1};

	REQUIRE(loop);
	sig_seen = 0;
	CHECK_INT(ev_signals_block(sigs, 1), 0);
	CHECK_INT(ev_signal_add(loop, SIGKILL, sig_fn, NULL), -E_INVAL);
	CHECK_INT(ev_signal_add(loop, 0, sig_fn, NULL), -E_INVAL);
	REQUIRE(ev_signal_add(loop, SIGUSR1, sig_fn, (void *)(intptr_t)42) == 0);
	REQUIRE(raise(SIGUSR1) == 0); /* blocked, so it waits for the signalfd */
	ev_timer_init(&guard, guard_cb);
	ev_timer_add(loop, &guard, 10000);
	CHECK_INT(ev_loop_run(loop), 0);
	CHECK_INT(sig_seen, SIGUSR1);
	ev_signal_del(loop, SIGUSR1);
	ev_timer_del(loop, &guard);
	ev_loop_free(loop);
}

/* ---- threads --------------------------------------------------------------------------------- */

struct wctx {
	atomic_int inits;
	atomic_int finis;
	atomic_int checked;
	atomic_int bad;
	int fail_worker; /* -1: none */
	struct ev_workers *ws;
};

static int w_init(struct ev_loop *loop, unsigned worker, void *arg, struct errbuf *eb)
{
	struct wctx *c = arg;

	(void)loop;
	atomic_fetch_add(&c->inits, 1);
	if ((int)worker == c->fail_worker)
		return errbuf_set(eb, E_EXIST, "bind 127.0.0.1:1: address in use");
	if (ev_thread_index() != (int)worker + 1)
		atomic_fetch_add(&c->bad, 1);
	return 0;
}

static void w_fini(struct ev_loop *loop, unsigned worker, void *arg)
{
	struct wctx *c = arg;

	(void)loop;
	(void)worker;
	atomic_fetch_add(&c->finis, 1);
}

struct wcheck {
	struct wctx *c;
	unsigned i;
};

static void w_check(struct ev_loop *loop, void *arg)
{
	struct wcheck *k = arg;

	if (ev_loop_current() != loop || ev_workers_loop(k->c->ws, k->i) != loop ||
	    ev_thread_index() != (int)k->i + 1)
		atomic_fetch_add(&k->c->bad, 1);
	atomic_fetch_add(&k->c->checked, 1);
}

TEST(workers_run_their_own_loops_with_stable_indices)
{
	struct ev_workers ws;
	struct wctx c = {.fail_worker = -1, .ws = &ws};
	struct wcheck k[3];
	struct errbuf eb;

	CHECK_INT(ev_thread_index(), 0);
	REQUIRE(ev_workers_start(&ws, 3, w_init, w_fini, &c, &eb) == 0);
	CHECK_INT(atomic_load(&c.inits), 3);
	CHECK(ev_workers_loop(&ws, 3) == NULL);
	for (unsigned i = 0; i < 3; i++) {
		k[i] = (struct wcheck){&c, i};
		ev_loop_post(ev_workers_loop(&ws, i), w_check, &k[i]);
	}
	while (atomic_load(&c.checked) < 3)
		usleep(1000);
	ev_workers_stop(&ws);
	ev_workers_stop(&ws); /* zeroed: no-op */
	CHECK_INT(atomic_load(&c.finis), 3);
	CHECK_INT(atomic_load(&c.bad), 0);
	CHECK_INT(ev_thread_index(), 0);
}

TEST(workers_start_reports_the_failing_init)
{
	struct ev_workers ws;
	struct wctx c = {.fail_worker = 1, .ws = &ws};
	struct errbuf eb;

	CHECK_INT(ev_workers_start(&ws, 3, w_init, w_fini, &c, &eb), -E_EXIST);
	CHECK_STR(eb.msg, "worker 1: bind 127.0.0.1:1: address in use");
	CHECK(ws.w == NULL);
	/* workers whose init succeeded still ran their fini */
	CHECK_INT(atomic_load(&c.finis), atomic_load(&c.inits) - 1);
	CHECK_INT(ev_workers_start(&ws, 0, w_init, NULL, &c, &eb), -E_LIMIT);
	CHECK_INT(ev_workers_start(&ws, EV_MAX_THREADS, w_init, NULL, &c, &eb), -E_LIMIT);
}

static void *register_main(void *arg)
{
	int *out = arg;

	out[0] = ev_thread_index();
	out[1] = ev_thread_register();
	out[2] = ev_thread_register(); /* idempotent */
	ev_thread_unregister();
	out[3] = ev_thread_index();
	return NULL;
}

TEST(thread_register_gives_a_private_index)
{
	int r[4];
	pthread_t th;

	REQUIRE(pthread_create(&th, NULL, register_main, r) == 0);
	pthread_join(th, NULL);
	CHECK_INT(r[0], 0);
	CHECK(r[1] > 0 && r[1] < EV_MAX_THREADS);
	CHECK_INT(r[2], r[1]);
	CHECK_INT(r[3], 0);
}
