/* Timers on a binary min-heap keyed by (deadline ms, arming sequence), caller-owned nodes. */
#include "pkg/ev/ev_int.h"

#include <limits.h>
#include <stdlib.h>

/* Heap entries carry copies of the keys, so comparisons never touch the timer structs. */
static bool ent_less(const struct ev_heap_ent *a, const struct ev_heap_ent *b)
{
	return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_place(struct ev_loop *loop, uint32_t i, struct ev_heap_ent e)
{
	loop->heap[i] = e;
	e.t->slot = i + 1;
}

static void sift_up(struct ev_loop *loop, uint32_t i)
{
	struct ev_heap_ent e = loop->heap[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!ent_less(&e, &loop->heap[parent]))
			break;
		heap_place(loop, i, loop->heap[parent]);
		i = parent;
	}
	heap_place(loop, i, e);
}

static void sift_down(struct ev_loop *loop, uint32_t i)
{
	struct ev_heap_ent e = loop->heap[i];
	uint32_t n = loop->nheap;

	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && ent_less(&loop->heap[c + 1], &loop->heap[c]))
			c++;
		if (!ent_less(&loop->heap[c], &e))
			break;
		heap_place(loop, i, loop->heap[c]);
		i = c;
	}
	heap_place(loop, i, e);
}

/* Restores the heap after the key at i changed in either direction. */
static void heap_fix(struct ev_loop *loop, uint32_t i)
{
	if (i > 0 && ent_less(&loop->heap[i], &loop->heap[(i - 1) / 2]))
		sift_up(loop, i);
	else
		sift_down(loop, i);
}

static void heap_remove(struct ev_loop *loop, uint32_t i)
{
	struct ev_timer *t = loop->heap[i].t;

	t->slot = 0;
	loop->nheap--;
	if (i == loop->nheap)
		return;
	heap_place(loop, i, loop->heap[loop->nheap]);
	heap_fix(loop, i);
}

void ev_timer_init(struct ev_timer *t, ev_timer_fn cb)
{
	t->cb = cb;
	t->deadline = 0;
	t->slot = 0;
}

void ev_timer_add_at(struct ev_loop *loop, struct ev_timer *t, uint64_t deadline_ms)
{
	struct ev_heap_ent e = {.deadline = deadline_ms, .seq = loop->seq++, .t = t};

	t->deadline = deadline_ms;
	if (t->slot) {
		uint32_t i = t->slot - 1;
		loop->heap[i] = e;
		heap_fix(loop, i);
		return;
	}
	if (loop->nheap == loop->capheap) {
		if (loop->capheap >= UINT32_MAX / 2)
			die("ev: timer heap overflow");
		loop->capheap = loop->capheap ? loop->capheap * 2 : 64;
		loop->heap = xrealloc(loop->heap, loop->capheap * sizeof(*loop->heap));
	}
	loop->heap[loop->nheap] = e;
	sift_up(loop, loop->nheap++);
}

void ev_timer_add(struct ev_loop *loop, struct ev_timer *t, uint64_t delay_ms)
{
	uint64_t d = loop->now + delay_ms;

	ev_timer_add_at(loop, t, d < loop->now ? UINT64_MAX : d);
}

void ev_timer_del(struct ev_loop *loop, struct ev_timer *t)
{
	if (t->slot)
		heap_remove(loop, t->slot - 1);
}

size_t ev_timer_count(const struct ev_loop *loop)
{
	return loop->nheap;
}

void ev_timers_run(struct ev_loop *loop)
{
	uint64_t now = loop->now;
	/* Timers armed from these callbacks get a later sequence and wait for the next pass. */
	uint64_t limit = loop->seq;

	while (loop->nheap && loop->heap[0].deadline <= now && loop->heap[0].seq < limit) {
		struct ev_timer *t = loop->heap[0].t;
		heap_remove(loop, 0);
		t->cb(loop, t);
	}
}

int ev_timers_timeout(struct ev_loop *loop, uint64_t now)
{
	uint64_t d;

	if (!loop->nheap)
		return -1;
	d = loop->heap[0].deadline;
	if (d <= now)
		return 0;
	return d - now > INT_MAX ? INT_MAX : (int)(d - now);
}

void ev_timers_fini(struct ev_loop *loop)
{
	for (uint32_t i = 0; i < loop->nheap; i++)
		loop->heap[i].t->slot = 0;
	free(loop->heap);
	loop->heap = NULL;
	loop->nheap = loop->capheap = 0;
}
