/* A listening socket on an event loop: batched accepts, pausing when out of file descriptors. */
#include "pkg/net/net.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static void resume_cb(struct ev_loop *loop, struct ev_timer *t)
{
	struct net_listener *l = ev_container_of(t, struct net_listener, pause);

	ev_io_set(loop, &l->io, EV_READ);
}

static void pause_accepting(struct net_listener *l, int rc)
{
	char as[NET_ADDR_STRLEN];

	l->pauses++;
	log_warn("accept failed, pausing listener",
		 LF_STR("addr", net_addr_format(&l->addr, as, sizeof(as))),
		 LF_STR("error",
			rc == -E_LIMIT ? "out of file descriptors or memory" : strerror(errno)),
		 LF_U64("pause_ms", NET_ACCEPT_PAUSE_MS));
	/* The listener stays readable while the backlog is full: stop asking, retry later. */
	ev_io_set(l->loop, &l->io, 0);
	ev_timer_add(l->loop, &l->pause, NET_ACCEPT_PAUSE_MS);
}

static void accept_cb(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct net_listener *l = ev_container_of(io, struct net_listener, io);
	unsigned batch = l->batch ? l->batch : NET_ACCEPT_BATCH;
	bool alive = true;

	(void)loop;
	(void)events;
	l->alive = &alive;
	for (unsigned i = 0; i < batch; i++) {
		struct net_addr peer;
		int fd = net_accept(io->fd, &peer);
		if (fd == -E_AGAIN) {
			ev_io_clear_ready(io, EV_READ);
			break;
		}
		if (fd < 0) {
			pause_accepting(l, fd);
			break;
		}
		l->accepted++;
		/* Every server here writes whole messages: no Nagle delay behind the peer's
		 * delayed ACK (it cost ~40 ms per request through HBONE). */
		net_sock_set_nodelay(fd, true);
		l->cb(l, fd, &peer);
		if (!alive)
			return; /* stopped, maybe freed, by the callback */
	}
	/* Batch used up with readiness left: the loop calls again next iteration. */
	l->alive = NULL;
}

int net_listener_adopt(struct net_listener *l, struct ev_loop *loop, int fd, net_accept_fn cb,
		       void *arg, struct errbuf *eb)
{
	unsigned batch = l->batch;
	int rc;

	memset(l, 0, sizeof(*l));
	l->batch = batch;
	l->loop = loop;
	l->cb = cb;
	l->arg = arg;
	ev_io_init(&l->io, fd, accept_cb);
	ev_timer_init(&l->pause, resume_cb);
	rc = net_sock_local(fd, &l->addr);
	if (rc < 0) {
		errbuf_set(eb, -rc, "listener fd %d: getsockname: %s", fd, strerror(errno));
		goto fail;
	}
	if (ev_io_start(loop, &l->io, EV_READ) < 0) {
		char as[NET_ADDR_STRLEN];
		rc = errbuf_set(eb, E_IO, "listen %s: epoll_ctl: %s",
				net_addr_format(&l->addr, as, sizeof(as)), strerror(errno));
		goto fail;
	}
	return 0;
fail:
	close(fd);
	l->loop = NULL;
	l->io.fd = -1;
	return rc;
}

int net_listener_start(struct net_listener *l, struct ev_loop *loop, const struct net_addr *a,
		       const struct net_listen_opts *opts, net_accept_fn cb, void *arg,
		       struct errbuf *eb)
{
	int fd = net_listen(a, opts, eb);

	if (fd < 0) {
		unsigned batch = l->batch;
		memset(l, 0, sizeof(*l));
		l->batch = batch;
		l->io.fd = -1;
		return fd;
	}
	return net_listener_adopt(l, loop, fd, cb, arg, eb);
}

void net_listener_stop(struct net_listener *l)
{
	if (!l->loop)
		return;
	if (l->alive)
		*l->alive = false;
	l->alive = NULL;
	ev_io_stop(l->loop, &l->io);
	ev_timer_del(l->loop, &l->pause);
	close(l->io.fd);
	l->io.fd = -1;
	l->loop = NULL;
}
