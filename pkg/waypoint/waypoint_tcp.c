/* Upstream requests to plain-TCP endpoints (workloads with `protocol: TCP`, outside the mesh):
 * the waypoint connects to ip:targetPort directly, without HBONE or TLS, and the request and
 * response go over that socket as they would over an HBONE stream.
 *
 *   wp_tcp_open --> CONNECTING --writable, connected--> OPEN (wp_up_tcp: CONNECTED) --+
 *                        |                                 read: DATA, 0: EOF         |
 *                        +--refused / error--> wp_up_tcp: FAILED (retriable: unsent)  |
 *                                              read/write error: CLOSED <-------------+
 *
 * The socket lives as long as its ustr (ustr_free closes it). Reads stop while the client side
 * has WP_CREDIT_LOW bytes queued (wp_tcp_credit resumes them), as the HBONE path's credits do.
 * One callback delivers at most one event to waypoint_http.c, which may free the ustr: nothing
 * here touches it afterwards. */
#include "pkg/waypoint/waypoint_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TCP_READ_MAX (64u << 10)

static void tcp_want(struct ustr *u)
{
	unsigned want = 0;

	if (u->tcp_connecting || buf_len(&u->out))
		want |= EV_WRITE;
	if (!u->tcp_connecting && !u->tcp_rd_off && !u->peer_eof)
		want |= EV_READ;
	ev_io_set(u->tcp_loop, &u->tcp_io, want);
}

static void on_tcp_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
	struct ustr *u = ev_container_of(io, struct ustr, tcp_io);
	struct errbuf eb = {0};
	ssize_t n;

	(void)loop;
	(void)events;
	if (u->tcp_connecting) {
		int rc = net_connect_finish(u->tcp_fd, &u->tcp_dst, &eb);
		if (rc == -E_AGAIN) {
			ev_io_clear_ready(io, EV_WRITE);
			return;
		}
		u->tcp_connecting = false;
		if (rc < 0) {
			ev_io_set(loop, io, 0);
			wp_up_tcp(u, WP_TCP_FAILED, eb.msg[0] ? eb.msg : "connect failed");
			return;
		}
		tcp_want(u);
		wp_up_tcp(u, WP_TCP_CONNECTED, NULL);
		return;
	}
	if ((io->ready & EV_WRITE) && buf_len(&u->out)) {
		n = ev_io_write(io, &u->out);
		if (n < 0 && n != -E_AGAIN) {
			ev_io_set(loop, io, 0);
			wp_up_tcp(u, WP_TCP_CLOSED, "write to the endpoint failed");
			return;
		}
		tcp_want(u);
		if (!buf_len(&u->out)) {
			wp_up_tcp(u, WP_TCP_WRITABLE, NULL);
			return;
		}
	}
	if ((io->ready & EV_READ) && !u->tcp_rd_off && !u->peer_eof) {
		if (wp_ustr_backlogged(u)) {
			u->tcp_rd_off = true; /* wp_tcp_credit turns reads on again */
			tcp_want(u);
			return;
		}
		n = ev_io_read(io, &u->in, TCP_READ_MAX);
		if (n == -E_AGAIN)
			return;
		if (n < 0) {
			ev_io_set(loop, io, 0);
			wp_up_tcp(u, WP_TCP_CLOSED, "read from the endpoint failed");
			return;
		}
		if (n == 0) {
			u->peer_eof = true;
			tcp_want(u);
			wp_up_tcp(u, WP_TCP_EOF, NULL);
			return;
		}
		wp_up_tcp(u, WP_TCP_DATA, NULL);
	}
}

int wp_tcp_open(struct wp_worker *wk, struct ustr *u, const struct net_addr *dst, struct errbuf *eb)
{
	struct net_connect_opts co = {.nodelay = true};
	int fd = -1, rc = net_connect_start(dst, &co, &fd, eb);

	u->tcp_fd = -1;
	if (rc < 0)
		return rc;
	u->s.tcp = true;
	u->s.up = true;
	u->tcp_fd = fd;
	u->tcp_dst = *dst;
	u->tcp_loop = wk->loop;
	u->tcp_connecting = true; /* also when already connected: reported from the loop */
	ev_io_init(&u->tcp_io, fd, on_tcp_io);
	rc = ev_io_start(wk->loop, &u->tcp_io, EV_WRITE);
	if (rc < 0) {
		close(fd);
		u->tcp_fd = -1;
		return errbuf_set(eb, -rc, "cannot watch the endpoint socket");
	}
	return 0;
}

void wp_tcp_flush(struct ustr *u)
{
	if (u->s.tcp && u->tcp_fd >= 0 && !u->tcp_connecting)
		tcp_want(u);
}

void wp_tcp_credit(struct ustr *u)
{
	if (!u->s.tcp || u->tcp_fd < 0 || !u->tcp_rd_off || wp_ustr_backlogged(u))
		return;
	u->tcp_rd_off = false;
	tcp_want(u);
}

void wp_tcp_close(struct ustr *u)
{
	if (!u->s.tcp || u->tcp_fd < 0)
		return;
	ev_io_stop(u->tcp_loop, &u->tcp_io);
	close(u->tcp_fd);
	u->tcp_fd = -1;
}

bool wp_tcp_shutdown_write(struct ustr *u)
{
	if (!u->s.tcp || u->tcp_fd < 0 || u->tcp_connecting || buf_len(&u->out))
		return false;
	shutdown(u->tcp_fd, SHUT_WR);
	return true;
}
