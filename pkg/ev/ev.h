/* The event loop: one epoll loop per worker thread with fd watchers, timers, signals and posts. */
#ifndef AMBIENT_EV_H
#define AMBIENT_EV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pkg/base/base.h"
#include "pkg/buf/buf.h"

/*
 * ---- model ------------------------------------------------------------------------------------
 * A struct ev_loop belongs to one thread: every function below except ev_loop_post() and
 * ev_loop_stop() must be called on the thread running the loop (or, before ev_loop_run(), on
 * the thread that owns it). Watchers (struct ev_io, struct ev_timer) are caller-owned and meant
 * to be embedded in connection structs: the loop allocates nothing per watcher or per timer.
 *
 * Loop lifecycle:
 *
 *   ev_loop_new() --> IDLE ---- ev_loop_run() ----> RUNNING ---- callbacks ----+
 *                      ^  \                           |   ^                     |
 *                      |   ev_loop_stop() (sticky:    |   +---------------------+
 *                      |   the next run returns at    | ev_loop_stop() from any thread,
 *                      |   once)                      | or a failing epoll_wait
 *                      |                              v
 *                      +--------- run returns ---- STOPPING (current iteration ends)
 *   IDLE -- ev_loop_free() --> runs still-queued posts, then gone
 *
 * One iteration of ev_loop_run():
 *   1. epoll_wait(timeout) -- timeout 0 if callbacks are queued, else until the earliest timer
 *   2. harvest: record the readiness of every returned fd in its watcher; queue the watchers
 *      whose readiness meets their interest (no callback runs yet, so a callback that stops and
 *      frees another watcher never leaves a dangling pointer in the epoll batch)
 *   3. run the queued I/O callbacks (posts and signals arrive through internal watchers here)
 *   4. run the timers that are due (after I/O, so data that arrived at a deadline is seen first)
 *
 * ---- edge-triggered kernel, level-triggered API ---------------------------------------------
 * Each fd is registered once with EPOLLIN|EPOLLOUT|EPOLLET and never modified afterwards:
 * turning read/write interest on and off (which a proxy does on every backpressure change) is a
 * plain store, not an epoll_ctl() syscall. This is what nginx and Envoy do with edge triggering.
 * To make that safe, each watcher caches the readiness the kernel reported (`ready`) until the
 * owner sees EAGAIN, and the loop offers level-triggered semantics on top:
 *
 *   - the callback runs while (ready & interest) is non-empty: once per loop iteration, so one
 *     busy connection cannot starve the others (read a bounded amount per callback);
 *   - when an I/O call returns EAGAIN (or a short read/write on a stream), the owner clears the
 *     bit with ev_io_clear_ready() -- ev_io_read()/ev_io_write() do it for you; forgetting it
 *     makes the loop call back again (a visible spin, never a silent stall);
 *   - enabling an interest whose readiness is still cached calls back on the next iteration, so
 *     an edge that arrived while the owner was not interested is never lost;
 *   - EV_ERROR and EV_HUP are delivered when the kernel reports them, whatever the interest;
 *     they also mark both directions ready (no I/O call blocks any more), so the owner's
 *     usual read/write path runs and meets the EOF or the error.
 *
 * Like level triggering, a readable EOF stays readable: drop read interest after reading 0.
 *
 * ---- signals --------------------------------------------------------------------------------
 * Signals are read from a signalfd. A process-directed signal goes to any thread that does not
 * block it, so it reaches the signalfd only if every thread blocks it. The process must block
 * them before it creates any thread: call ev_signals_block() early in main(), and
 * threads inherit the mask (ev_workers_start() additionally blocks all asynchronous signals in
 * its workers). Register each signal on one loop only, normally the main thread's. The process
 * should also ignore SIGPIPE (buf_write_fd uses MSG_NOSIGNAL, but other writes may not).
 */

#define EV_MAX_THREADS 64 /* ev_thread_index() is always < EV_MAX_THREADS */

enum ev_events {
	EV_READ = 1u << 0,
	EV_WRITE = 1u << 1,
	EV_ERROR = 1u << 2, /* EPOLLERR: do I/O (or read SO_ERROR) to learn the error */
	EV_HUP = 1u << 3,   /* EPOLLHUP: both directions are shut down */
};

struct ev_loop;
struct ev_io;
struct ev_timer;

/* For watchers embedded in a larger struct: the struct from a pointer to its member. */
#define ev_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- loop ------------------------------------------------------------------------------------ */

/* A new loop (epoll fd, eventfd for posts); NULL with the reason in eb if the kernel refuses. */
struct ev_loop *ev_loop_new(struct errbuf *eb);
/* Runs still-queued posts (so a post that hands over ownership never leaks), then frees.
 * Watchers must have been stopped; the loop must not be running. NULL is a no-op. */
void ev_loop_free(struct ev_loop *loop);
/* Runs until ev_loop_stop(). Returns 0, or -E_IO if epoll_wait fails (other than EINTR). */
int ev_loop_run(struct ev_loop *loop);
/* One iteration, waiting at most max_wait_ms (-1: until something happens). 0 or -E_IO. */
int ev_loop_run_once(struct ev_loop *loop, int max_wait_ms);
/* Thread-safe: makes ev_loop_run() return after the current iteration. Sticky if the loop is not
 * running (the next ev_loop_run() returns at once), which makes shutdown race-free. */
void ev_loop_stop(struct ev_loop *loop);

typedef void (*ev_post_fn)(struct ev_loop *loop, void *arg);
/* Thread-safe: runs fn(loop, arg) on the loop's thread during a later iteration (never inline).
 * Posts from one thread run in the order they were posted. */
void ev_loop_post(struct ev_loop *loop, ev_post_fn fn, void *arg);

/* The loop's cached CLOCK_MONOTONIC time in ms, refreshed after every epoll_wait. */
uint64_t ev_now(const struct ev_loop *loop);
/* Refreshes the cached time (after a long computation, before arming a precise timer). */
void ev_now_update(struct ev_loop *loop);
/* The loop the calling thread is running (NULL outside ev_loop_run()). */
struct ev_loop *ev_loop_current(void);

/* ---- fd watchers ----------------------------------------------------------------------------- */

typedef void (*ev_io_fn)(struct ev_loop *loop, struct ev_io *io, unsigned events);

struct ev_link {
	struct ev_link *next; /* NULL when not queued */
	struct ev_link *prev;
};

/* Caller-owned; 32 bytes. Treat the fields as private except `fd`. */
struct ev_io {
	struct ev_link q; /* queued for a callback */
	ev_io_fn cb;
	int fd;
	uint8_t interest; /* EV_READ|EV_WRITE the owner wants */
	uint8_t ready;	  /* readiness reported by the kernel and not yet consumed */
	uint8_t active;
};

void ev_io_init(struct ev_io *io, int fd, ev_io_fn cb);
/* Registers io->fd (once, edge-triggered) with the given interest. 0, -E_STATE if already
 * active, -E_IO if epoll_ctl refuses (errno kept: EPERM for regular files, EBADF, ...). */
int ev_io_start(struct ev_loop *loop, struct ev_io *io, unsigned interest);
/* Changes the interest (EV_READ|EV_WRITE); no syscall. */
void ev_io_set(struct ev_loop *loop, struct ev_io *io, unsigned interest);
/* Unregisters; safe from any callback, including the watcher's own. Call before close(fd)
 * and before freeing the memory. A stopped or never-started watcher is a no-op. */
void ev_io_stop(struct ev_loop *loop, struct ev_io *io);
/* Marks readiness as consumed: call when read/write/accept returned EAGAIN. */
static inline void ev_io_clear_ready(struct ev_io *io, unsigned events)
{
	io->ready &= (uint8_t)~events;
}
static inline bool ev_io_active(const struct ev_io *io)
{
	return io->active != 0;
}
/* Whether a read may find data: the kernel reported the fd readable and no EAGAIN or short
 * read consumed it since. A watcher not registered with a loop has no cached readiness: always
 * true. Reading only then saves the EAGAIN read a proxy otherwise makes on every pass. */
static inline bool ev_io_may_read(const struct ev_io *io)
{
	return !io->active || (io->ready & EV_READ);
}
/* After a short read on a stream: the queue is drained, so drop the cached EV_READ -- unless a
 * hang-up or error came with the edge already harvested (bit 4 is the loop's private peer-
 * shutdown bit): no further edge would announce the EOF, so keep reading until 0. */
static inline void ev_io_short_read(struct ev_io *io)
{
	if (!(io->ready & (uint8_t) ~(EV_READ | EV_WRITE)))
		ev_io_clear_ready(io, EV_READ);
}
/* buf_read_fd()/buf_write_fd() that clear the readiness on EAGAIN, and on a short read or
 * write, which on a stream (TCP, unix stream, pipe) means the kernel queue is drained or full
 * (the next change is an edge the loop will see). Not for datagram sockets. */
ssize_t ev_io_read(struct ev_io *io, struct buf *b, size_t want);
ssize_t ev_io_write(struct ev_io *io, struct buf *b);

/* ---- timers -----------------------------------------------------------------------------------
 * A binary min-heap of (deadline, sequence): add, re-arm and delete are O(log n); timers with
 * the same deadline fire in the order they were armed. A timer armed from a timer callback
 * never fires in the same iteration, even with delay 0. Re-arming an idle timeout on every read
 * is fine; cheaper still is to store the last activity time and re-arm lazily when it fires. */

typedef void (*ev_timer_fn)(struct ev_loop *loop, struct ev_timer *t);

struct ev_timer {
	ev_timer_fn cb;
	uint64_t deadline; /* ms, CLOCK_MONOTONIC; valid while active */
	uint32_t slot;	   /* heap index + 1; 0 = not armed */
};

void ev_timer_init(struct ev_timer *t, ev_timer_fn cb);
/* Arms (or re-arms) t to fire delay_ms after ev_now(loop). */
void ev_timer_add(struct ev_loop *loop, struct ev_timer *t, uint64_t delay_ms);
/* Arms (or re-arms) t to fire at an absolute CLOCK_MONOTONIC time in ms. */
void ev_timer_add_at(struct ev_loop *loop, struct ev_timer *t, uint64_t deadline_ms);
/* Disarms; a no-op if not armed. Safe from any callback. */
void ev_timer_del(struct ev_loop *loop, struct ev_timer *t);
static inline bool ev_timer_active(const struct ev_timer *t)
{
	return t->slot != 0;
}
/* Number of armed timers (for tests and metrics). */
size_t ev_timer_count(const struct ev_loop *loop);

/* ---- signals --------------------------------------------------------------------------------- */

typedef void (*ev_signal_fn)(struct ev_loop *loop, int signo, void *arg);

/* Blocks the signals in the calling thread (threads created later inherit the mask). Call from
 * main() before starting any thread. 0 or -E_INVAL for a bad signal number. */
int ev_signals_block(const int *signos, size_t n);
/* Delivers signo to cb on this loop through a signalfd; also blocks it in the calling thread.
 * Replaces an earlier callback for the same signal. -E_INVAL (bad or uncatchable signal), -E_IO. */
int ev_signal_add(struct ev_loop *loop, int signo, ev_signal_fn cb, void *arg);
/* Stops delivering signo on this loop (the signal stays blocked). */
void ev_signal_del(struct ev_loop *loop, int signo);

/* ---- threads ----------------------------------------------------------------------------------
 * Each thread has a stable index, for picking a per-thread shard (metrics, pools): 0 for the
 * main thread and for any thread ev did not start or register, 1..N for workers (a pool of N
 * started while no other index is taken gets exactly 1..N, in worker order). Index 0 can therefore
 * be shared by several threads; shard 0 must tolerate concurrent use. */

int ev_thread_index(void);
/* Gives the calling thread its own index (for long-lived threads ev did not start, e.g. a
 * setns thread). Returns the index (the existing one if already registered), -E_LIMIT. */
int ev_thread_register(void);
/* Releases the calling thread's index (back to 0). */
void ev_thread_unregister(void);

/* Runs on each worker thread with its loop before the loop runs; worker is 0..n-1. A negative
 * return (with the reason in eb) makes ev_workers_start() fail. */
typedef int (*ev_worker_init_fn)(struct ev_loop *loop, unsigned worker, void *arg,
				 struct errbuf *eb);
/* Runs on each worker thread after its loop stopped (only if init succeeded). */
typedef void (*ev_worker_fini_fn)(struct ev_loop *loop, unsigned worker, void *arg);

struct ev_worker;
struct ev_workers {
	struct ev_worker *w;
	unsigned n;
};

/* Starts n threads, each with its own loop, and waits until every init has returned. On
 * failure, stops the workers already started and returns the first init error ("worker 2: ...").
 * Workers block all asynchronous signals. -E_LIMIT if n is 0 or exceeds EV_MAX_THREADS - 1. */
int ev_workers_start(struct ev_workers *ws, unsigned n, ev_worker_init_fn init,
		     ev_worker_fini_fn fini, void *arg, struct errbuf *eb);
/* The loop of worker i (0..n-1), for ev_loop_post(). */
struct ev_loop *ev_workers_loop(const struct ev_workers *ws, unsigned i);
/* Stops every loop, joins the threads (after their fini) and frees the loops; posts that
 * arrived too late run here, on the caller's thread. Must not be called from a worker. A zeroed
 * struct is a no-op. */
void ev_workers_stop(struct ev_workers *ws);

#endif
