/* SOCKS5 on 127.0.0.1:15080: the handshake (pkg/socks5), the destination from the mesh config's
 * service hostnames or an IP literal (no DNS in this version), then the outbound path. */
#include "pkg/proxy/proxy_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes the queued handshake bytes (a few bytes: the socket takes them at once). */
static void socks_flush(struct flow *f)
{
	const uint8_t *p;
	size_t n;

	while (socks5_pull(f->socks, &p, &n)) {
		ssize_t w = write(f->e[0].io.fd, p, n);

		if (w <= 0)
			break;
		socks5_pull_done(f->socks, (size_t)w);
	}
}

void socks_reply(struct flow *f, int rep)
{
	if (!f->socks || socks5_state(f->socks) != SOCKS5_STATE_CONNECT || f->e[0].closed)
		return;
	socks5_reply(f->socks, (enum socks5_rep)rep, NULL);
	socks_flush(f);
	if (rep == SOCKS5_REP_SUCCEEDED) {
		free(f->socks);
		f->socks = NULL;
	}
}

static void socks_refuse(struct flow *f, int rep, const char *fmt, const char *arg)
{
	socks_reply(f, rep);
	flow_fail(f, rep == SOCKS5_REP_NOT_ALLOWED ? "DENY" : "-", fmt, arg);
}

/* The SOCKS client is local: the only served workload, or the one named by --workload. */
static const struct config_workload *socks_source(struct flow *f)
{
	const struct proxy_snap *s = f->snap;
	const struct proxy *p = f->w->p;

	if (s->n_served == 1)
		return s->served[0];
	if (p->o.n_workload_uids == 1) {
		const struct config_workload *w =
			config_workload_by_uid(s->c, p->o.workload_uids[0]);

		if (w && proxy_snap_serves(s, w))
			return w;
	}
	return NULL;
}

static void socks_resolve(struct flow *f)
{
	const struct socks5_target *t = socks5_target(f->socks);
	struct proxy *p = f->w->p;
	struct net_ip nip;
	uint16_t port = net_addr_port(&f->src);

	f->src_wl = socks_source(f);
	if (!f->src_wl) {
		log_warn("SOCKS5: refused: cannot tell which served workload the client is",
			 LF_U64("served_workloads", f->snap->n_served),
			 LF_STR("hint", "serve one workload or name it with --workload"));
		socks_refuse(f, SOCKS5_REP_NOT_ALLOWED, "SOCKS5: %s", "ambiguous source workload");
		return;
	}
	/* Traffic leaves as the workload: its IP (the pool key, logs, the peer's view). */
	if (f->src_wl->n_workload_ips) {
		proxy_ip_to_net(&nip, &f->src_wl->workload_ips[0]);
		net_addr_from_ip(&f->src, &nip, port);
	}
	if (t->atyp == SOCKS5_ATYP_DOMAIN) {
		char name[256];
		size_t n = t->name_len;
		const struct config_service *svc;

		for (size_t i = 0; i < n; i++)
			name[i] = (char)tolower((unsigned char)t->name[i]);
		if (n > 1 && name[n - 1] == '.')
			n--;
		name[n] = 0;
		svc = config_service_by_hostname(f->snap->c, name, f->src_wl->namespace);
		if (!svc || svc->n_vips == 0) {
			socks_refuse(f, SOCKS5_REP_HOST_UNREACHABLE,
				     "SOCKS5: %s is not a mesh service with a VIP (no DNS lookup)",
				     t->name);
			return;
		}
		proxy_ip_to_net(&nip, &svc->vips[0].ip);
		net_addr_from_ip(&f->dst, &nip, t->port);
	} else {
		struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(t->port)};
		struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(t->port)};
		int rc;

		if (t->atyp == SOCKS5_ATYP_IPV4) {
			memcpy(&s4.sin_addr, t->addr, 4);
			rc = net_addr_from_sockaddr(&f->dst, (struct sockaddr *)&s4, sizeof(s4));
		} else {
			memcpy(&s6.sin6_addr, t->addr, 16);
			rc = net_addr_from_sockaddr(&f->dst, (struct sockaddr *)&s6, sizeof(s6));
		}
		if (rc < 0) {
			socks_refuse(f, SOCKS5_REP_ATYP_UNSUPPORTED, "SOCKS5: %s", "bad address");
			return;
		}
	}
	if (proxy_is_loop(&f->dst, f->snap->local, f->snap->n_local, p->ports,
			  ARRAY_LEN(p->ports))) {
		socks_refuse(f, SOCKS5_REP_NOT_ALLOWED, "SOCKS5: %s",
			     "refusing a connection to our own listener (loop)");
		return;
	}
	proxy_outbound_dispatch(f);
}

void socks_on_fd(struct flow *f)
{
	struct end *e = &f->e[0];
	uint8_t in[SOCKS5_MSG_MAX + 64];

	while (!f->dead && socks5_state(f->socks) < SOCKS5_STATE_CONNECT) {
		ssize_t n = read(e->io.fd, in, sizeof(in));
		int r;

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ev_io_clear_ready(&e->io, EV_READ);
			return;
		}
		if (n < 0) {
			flow_fail(f, "-", "SOCKS5: read: %s", strerror(errno));
			return;
		}
		r = n == 0 ? socks5_eof(f->socks) : socks5_push(f->socks, in, (size_t)n);
		socks_flush(f);
		if (r < 0 || n == 0) {
			flow_fail(f, "-", "SOCKS5 handshake: %s",
				  socks5_reason(f->socks)[0] ? socks5_reason(f->socks) : "closed");
			return;
		}
		if (socks5_state(f->socks) == SOCKS5_STATE_CONNECT) {
			if ((size_t)r < (size_t)n) /* payload sent before our reply */
				buf_append(&f->early, in + r, (size_t)n - (size_t)r);
			ev_timer_del(f->w->loop, &f->timer);
			ev_io_set(f->w->loop, &e->io, 0);
			socks_resolve(f);
			return;
		}
	}
	if (!f->dead)
		ev_io_set(f->w->loop, &e->io, 0);
}

void on_accept_socks(struct net_listener *l, int fd, const struct net_addr *peer)
{
	struct proxy_worker *w = l->arg;
	struct proxy *p = w->p;
	struct proxy_snap *snap;
	struct flow *f;

	if (proxy_over_limit(p, fd))
		return;
	snap = proxy_snap_get(p);
	f = flow_new(w, FLOW_OUTBOUND, snap);
	f->src = *peer;
	f->socks = xcalloc(1, sizeof(*f->socks));
	socks5_init(f->socks);
	if (end_fd_start(&f->e[0], fd, false) < 0) {
		flow_fail(f, "-", "cannot watch the SOCKS5 client socket");
		return;
	}
	if (!snap) {
		flow_fail(f, "-", "no mesh config loaded yet");
		return;
	}
	ev_io_set(w->loop, &f->e[0].io, EV_READ);
	ev_timer_add(w->loop, &f->timer, PROXY_CONNECT_TIMEOUT_MS); /* handshake deadline */
	socks_on_fd(f);
}
