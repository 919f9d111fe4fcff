/* Private layout of struct ev_loop shared by the ev_*.c files. */
#ifndef AMBIENT_EV_INT_H
#define AMBIENT_EV_INT_H

#include "pkg/ev/ev.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/epoll.h>

#define EV_BATCH 256 /* epoll events harvested per epoll_wait */
/* Private readiness bit: the peer shut down its side (sticky until the watcher stops). */
#define EV_RDHUP_ (1u << 4)

struct ev_heap_ent {
	uint64_t deadline;
	uint64_t seq; /* arming order: FIFO among equal deadlines, and no re-fire in one pass */
	struct ev_timer *t;
};

struct ev_post {
	ev_post_fn fn;
	void *arg;
};

struct ev_postq {
	struct ev_post *v;
	size_t n;
	size_t cap;
};

struct ev_sig {
	ev_signal_fn fn;
	void *arg;
};

struct ev_loop {
	int epfd;
	uint64_t now;
	atomic_bool stop;
	bool running;

	/* I/O: watchers whose callback is due, and the one being called (NULL once stopped). */
	struct ev_link pending;
	struct ev_io *cur_io;
	struct epoll_event events[EV_BATCH];

	/* timers */
	struct ev_heap_ent *heap;
	uint32_t nheap;
	uint32_t capheap;
	uint64_t seq;

	/* posts: producers append to postq under post_mu; the loop swaps it with postq_run. */
	pthread_mutex_t post_mu;
	struct ev_postq postq;
	struct ev_postq postq_run;
	bool post_local; /* a post from the loop thread itself is waiting (no eventfd write) */
	int wake_fd;
	struct ev_io wake_io;

	/* signals: one signalfd per loop, created on the first ev_signal_add() */
	int sig_fd;
	struct ev_io sig_io;
	sigset_t sig_mask;
	struct ev_sig *sigs; /* _NSIG entries */
};

extern _Thread_local struct ev_loop *ev_tls_loop;

/* ev_timer.c */
void ev_timers_run(struct ev_loop *loop);
/* ms until the earliest timer (0 if due), -1 if none. */
int ev_timers_timeout(struct ev_loop *loop, uint64_t now);
void ev_timers_fini(struct ev_loop *loop);

/* ev_signal.c */
void ev_signals_fini(struct ev_loop *loop);

/* ev_loop.c: enqueue io for a callback (idempotent). */
void ev_io_queue(struct ev_loop *loop, struct ev_io *io);

#endif
