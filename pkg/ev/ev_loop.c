/* The epoll loop itself: creation, the run cycle, fd watchers and cross-thread posts. */
#include "pkg/ev/ev_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

_Thread_local struct ev_loop *ev_tls_loop;

#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(struct ev_io) == 32, "ev_io is embedded in every connection: keep it small");
_Static_assert(sizeof(struct ev_timer) == 24, "ev_timer is embedded in every connection");
#endif

static void wake_cb(struct ev_loop *loop, struct ev_io *io, unsigned events);

/* ---- intrusive queue of watchers due for a callback ------------------------------------------ */

static void link_init(struct ev_link *h)
{
	h->next = h->prev = h;
}

static bool link_empty(const struct ev_link *h)
{
	return h->next == h;
}

static void link_unlink(struct ev_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->next = l->prev = NULL;
}

static void link_push(struct ev_link *h, struct ev_link *l)
{
	l->prev = h->prev;
	l->next = h;
	h->prev->next = l;
	h->prev = l;
}

/* Moves all of src to the (empty) dst. */
static void link_splice(struct ev_link *dst, struct ev_link *src)
{
	if (link_empty(src)) {
		link_init(dst);
		return;
	}
	dst->next = src->next;
	dst->prev = src->prev;
	dst->next->prev = dst;
	dst->prev->next = dst;
	link_init(src);
}

void ev_io_queue(struct ev_loop *loop, struct ev_io *io)
{
	if (!io->q.next)
		link_push(&loop->pending, &io->q);
}

/* ---- loop ------------------------------------------------------------------------------------ */

struct ev_loop *ev_loop_new(struct errbuf *eb)
{
	struct ev_loop *loop = xcalloc(1, sizeof(*loop));

	loop->epfd = -1;
	loop->wake_fd = -1;
	loop->sig_fd = -1;
	link_init(&loop->pending);
	atomic_init(&loop->stop, false);
	pthread_mutex_init(&loop->post_mu, NULL);
	sigemptyset(&loop->sig_mask);
	loop->now = time_mono_ms();

	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		errbuf_set(eb, E_IO, "epoll_create1: %s", strerror(errno));
		goto fail;
	}
	loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->wake_fd < 0) {
		errbuf_set(eb, E_IO, "eventfd: %s", strerror(errno));
		goto fail;
	}
	ev_io_init(&loop->wake_io, loop->wake_fd, wake_cb);
	if (ev_io_start(loop, &loop->wake_io, EV_READ) < 0) {
		errbuf_set(eb, E_IO, "epoll_ctl(eventfd): %s", strerror(errno));
		goto fail;
	}
	return loop;
fail:
	ev_loop_free(loop);
	return NULL;
}

static void posts_run(struct ev_loop *loop);

void ev_loop_free(struct ev_loop *loop)
{
	if (!loop)
		return;
	if (loop->running)
		die("ev_loop_free: the loop is still running");
	/* Bounded so that posts re-posting themselves cannot keep us here forever. */
	for (int i = 0; i < 64; i++) {
		pthread_mutex_lock(&loop->post_mu);
		bool more = loop->postq.n != 0;
		pthread_mutex_unlock(&loop->post_mu);
		if (!more)
			break;
		posts_run(loop);
	}
	ev_signals_fini(loop);
	ev_timers_fini(loop);
	if (loop->wake_io.active)
		ev_io_stop(loop, &loop->wake_io);
	if (loop->wake_fd >= 0)
		close(loop->wake_fd);
	if (loop->epfd >= 0)
		close(loop->epfd);
	pthread_mutex_destroy(&loop->post_mu);
	free(loop->postq.v);
	free(loop->postq_run.v);
	if (ev_tls_loop == loop)
		ev_tls_loop = NULL;
	free(loop);
}

uint64_t ev_now(const struct ev_loop *loop)
{
	return loop->now;
}

void ev_now_update(struct ev_loop *loop)
{
	loop->now = time_mono_ms();
}

struct ev_loop *ev_loop_current(void)
{
	return ev_tls_loop;
}

static void wake(struct ev_loop *loop)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is saturated, so a wake-up is already pending. */
	while (write(loop->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

void ev_loop_stop(struct ev_loop *loop)
{
	atomic_store(&loop->stop, true);
	if (ev_tls_loop != loop)
		wake(loop);
}

/* Maps epoll bits to EV_* readiness. */
static unsigned epoll_to_ev(uint32_t e)
{
	unsigned r = 0;

	if (e & (EPOLLIN | EPOLLRDHUP | EPOLLPRI))
		r |= EV_READ;
	if (e & EPOLLRDHUP)
		r |= EV_RDHUP_;
	if (e & EPOLLOUT)
		r |= EV_WRITE;
	/* After an error or a hang-up no I/O call blocks any more: reads see EOF or the error,
	 * writes fail at once. Report both directions ready so the owner's usual path runs. */
	if (e & EPOLLERR)
		r |= EV_ERROR | EV_READ | EV_WRITE;
	if (e & EPOLLHUP)
		r |= EV_HUP | EV_READ | EV_WRITE;
	return r;
}

static void harvest(struct ev_loop *loop, int n)
{
	for (int i = 0; i < n; i++) {
		struct ev_io *io = loop->events[i].data.ptr;
		unsigned r = epoll_to_ev(loop->events[i].events);

		io->ready |= (uint8_t)r;
		if (r & (io->interest | EV_ERROR | EV_HUP))
			ev_io_queue(loop, io);
	}
}

static void dispatch(struct ev_loop *loop, struct ev_io *io)
{
	unsigned ev = io->ready & (io->interest | EV_ERROR | EV_HUP);

	if (!ev)
		return;
	loop->cur_io = io;
	io->cb(loop, io, ev);
	if (loop->cur_io != io)
		return; /* stopped inside the callback: the memory may be gone */
	loop->cur_io = NULL;
	/* Level-triggered emulation: still ready and still wanted -> again next iteration. */
	if (io->ready & io->interest & (EV_READ | EV_WRITE))
		ev_io_queue(loop, io);
}

static void run_pending(struct ev_loop *loop)
{
	struct ev_link run;

	/* A snapshot: watchers queued by these callbacks run in the next iteration. */
	link_splice(&run, &loop->pending);
	while (!link_empty(&run)) {
		struct ev_io *io = ev_container_of(run.next, struct ev_io, q);
		link_unlink(&io->q);
		dispatch(loop, io);
	}
}

static int compute_timeout(struct ev_loop *loop, int max_wait_ms)
{
	int t;

	if (!link_empty(&loop->pending) || loop->post_local || atomic_load(&loop->stop))
		return 0;
	t = ev_timers_timeout(loop, time_mono_ms());
	if (max_wait_ms >= 0 && (t < 0 || t > max_wait_ms))
		t = max_wait_ms;
	return t;
}

static int iterate(struct ev_loop *loop, int max_wait_ms)
{
	int n = epoll_wait(loop->epfd, loop->events, EV_BATCH, compute_timeout(loop, max_wait_ms));

	if (n < 0) {
		if (errno != EINTR) {
			log_error("epoll_wait failed", LF_ERR(strerror(errno)));
			return -E_IO;
		}
		n = 0;
	}
	loop->now = time_mono_ms();
	harvest(loop, n);
	if (loop->post_local) {
		loop->post_local = false;
		posts_run(loop);
	}
	run_pending(loop);
	ev_timers_run(loop);
	return 0;
}

int ev_loop_run_once(struct ev_loop *loop, int max_wait_ms)
{
	struct ev_loop *prev = ev_tls_loop;
	int rc;

	ev_tls_loop = loop;
	loop->running = true;
	rc = iterate(loop, max_wait_ms);
	loop->running = false;
	ev_tls_loop = prev;
	return rc;
}

int ev_loop_run(struct ev_loop *loop)
{
	struct ev_loop *prev = ev_tls_loop;
	int rc = 0;

	ev_tls_loop = loop;
	loop->running = true;
	while (!atomic_load_explicit(&loop->stop, memory_order_acquire)) {
		rc = iterate(loop, -1);
		if (rc < 0)
			break;
	}
	atomic_store(&loop->stop, false);
	loop->running = false;
	ev_tls_loop = prev;
	return rc;
}

/* ---- posts ----------------------------------------------------------------------------------- */

void ev_loop_post(struct ev_loop *loop, ev_post_fn fn, void *arg)
{
	struct ev_postq *q = &loop->postq;
	bool was_empty;

	pthread_mutex_lock(&loop->post_mu);
	if (q->n == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 16;
		q->v = xrealloc(q->v, q->cap * sizeof(*q->v));
	}
	q->v[q->n++] = (struct ev_post){fn, arg};
	was_empty = q->n == 1;
	pthread_mutex_unlock(&loop->post_mu);
	/* Only the post that makes the queue non-empty needs to wake the loop: the loop reads the
	 * eventfd before it takes the queue, so a post after the take always sees it empty. */
	if (!was_empty)
		return;
	if (ev_tls_loop == loop)
		loop->post_local = true;
	else
		wake(loop);
}

static void posts_run(struct ev_loop *loop)
{
	struct ev_postq tmp;

	pthread_mutex_lock(&loop->post_mu);
	tmp = loop->postq;
	loop->postq = loop->postq_run;
	loop->postq.n = 0;
	pthread_mutex_unlock(&loop->post_mu);
	for (size_t i = 0; i < tmp.n; i++)
		tmp.v[i].fn(loop, tmp.v[i].arg);
	tmp.n = 0;
	loop->postq_run = tmp; /* keep both arrays: no allocation in steady state */
}

static void wake_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	uint64_t v;

	(void)events;
	/* One read resets the counter; a later write is a new edge. Drain before taking the queue.
	 */
	if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN && errno != EINTR)
		log_error("eventfd read failed", LF_ERR(strerror(errno)));
	ev_io_clear_ready(io, EV_READ);
	posts_run(loop);
}

/* ---- fd watchers ----------------------------------------------------------------------------- */

void ev_io_init(struct ev_io *io, int fd, ev_io_fn cb)
{
	memset(io, 0, sizeof(*io));
	io->fd = fd;
	io->cb = cb;
}

int ev_io_start(struct ev_loop *loop, struct ev_io *io, unsigned interest)
{
	struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
				.data.ptr = io};

	if (io->active)
		return -E_STATE;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &e) < 0)
		return -E_IO;
	io->active = 1;
	io->ready = 0;
	io->interest = (uint8_t)(interest & (EV_READ | EV_WRITE));
	io->q.next = io->q.prev = NULL;
	return 0;
}

void ev_io_set(struct ev_loop *loop, struct ev_io *io, unsigned interest)
{
	io->interest = (uint8_t)(interest & (EV_READ | EV_WRITE));
	if (io->active && (io->ready & io->interest & (EV_READ | EV_WRITE)))
		ev_io_queue(loop, io);
}

void ev_io_stop(struct ev_loop *loop, struct ev_io *io)
{
	if (!io->active)
		return;
	/* Explicit DEL: close() alone keeps the registration alive while a dup of the fd exists,
	 * and the kernel would then report events for freed memory. */
	if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL) < 0)
		log_debug("epoll_ctl del failed", LF_I64("fd", io->fd), LF_ERR(strerror(errno)));
	if (io->q.next)
		link_unlink(&io->q);
	if (loop->cur_io == io)
		loop->cur_io = NULL;
	io->active = 0;
	io->ready = 0;
}

ssize_t ev_io_read(struct ev_io *io, struct buf *b, size_t want)
{
	ssize_t n = buf_read_fd(b, io->fd, want);

	if (n == -E_AGAIN) {
		ev_io_clear_ready(io, EV_READ);
	} else if (n > 0 && (want ? (size_t)n < want : buf_wspace(b) > 0)) {
		ev_io_short_read(io);
	}
	return n;
}

ssize_t ev_io_write(struct ev_io *io, struct buf *b)
{
	ssize_t n = buf_write_fd(b, io->fd);

	if (n == -E_AGAIN || (n >= 0 && buf_len(b) > 0))
		ev_io_clear_ready(io, EV_WRITE);
	return n;
}
