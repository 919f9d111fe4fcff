/* SOCKS5 on 127.0.0.1:15080: the handshake (pkg/socks5), the destination from the mesh config's
 * service hostnames first, else DNS (getaddrinfo on a short-lived thread, never on the loop), or
 * an IP literal, then the outbound path. */
#include "pkg/proxy/proxy_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <pthread.h>
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

	if (f->pod) /* shared mode: the listener is in that workload's netns */
		return proxy_snap_pod_workload(s, f->pod);
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

/* The destination is known (f->dst): loop check, then the outbound decision. */
static void socks_connect(struct flow *f)
{
	struct proxy *p = f->w->p;
	const struct net_ip *locals;
	size_t n_locals;

	proxy_locals(f->snap, f->pod, &locals, &n_locals);
	if (proxy_is_loop(&f->dst, locals, n_locals, p->ports, ARRAY_LEN(p->ports))) {
		socks_refuse(f, SOCKS5_REP_NOT_ALLOWED, "SOCKS5: %s",
			     "refusing a connection to our own listener (loop)");
		return;
	}
	proxy_outbound_dispatch(f);
}

/* ---- DNS for names outside the mesh ----------------------------------------------------------
 * getaddrinfo blocks, so each lookup runs on a short-lived detached thread and posts its result
 * back to the flow's loop. A worker that stops cancels its lookups (under dns_mu): a running
 * one then frees itself without posting, a posted one is dropped when its post runs. */

enum dns_state { DNS_RUNNING, DNS_POSTED, DNS_CANCELLED };

struct dns_job {
	struct dns_job *next, *prev; /* dns_jobs */
	enum dns_state state;
	struct flow *f;
	struct ev_loop *loop;
	char name[256];
	uint16_t port;
	struct net_addr result;
	int err; /* getaddrinfo's code, 0 on success */
};

static pthread_mutex_t dns_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dns_job *dns_jobs; /* in flight (keeps them reachable for leak checkers too) */

static void dns_unlink(struct dns_job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		dns_jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
}

static void dns_done(struct ev_loop *loop, void *arg)
{
	struct dns_job *j = arg;
	struct flow *f;
	bool cancelled;

	pthread_mutex_lock(&dns_mu);
	cancelled = j->state == DNS_CANCELLED;
	dns_unlink(j);
	pthread_mutex_unlock(&dns_mu);
	f = j->f;
	if (!cancelled) {
		f->dns = NULL;
		if (f->dead) {
			/* The client went away meanwhile: nothing to answer. */
		} else if (j->err) {
			socks_refuse(f, SOCKS5_REP_HOST_UNREACHABLE,
				     "SOCKS5: %s: not a mesh service, and DNS failed", j->name);
			log_debug("SOCKS5: DNS lookup failed", LF_STR("name", j->name),
				  LF_ERR(gai_strerror(j->err)));
		} else {
			ev_timer_del(loop, &f->timer);
			f->dst = j->result;
			net_addr_set_port(&f->dst, j->port);
			socks_connect(f);
		}
	}
	free(j);
}

static void *dns_thread(void *arg)
{
	struct dns_job *j = arg;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int err = getaddrinfo(j->name, NULL, &hints, &res);

	if (!err) {
		/* The first answer, IPv4 preferred (the mesh addresses in tests and most configs).
		 */
		const struct addrinfo *pick = res;

		for (const struct addrinfo *a = res; a; a = a->ai_next)
			if (a->ai_family == AF_INET) {
				pick = a;
				break;
			}
		if (!pick ||
		    net_addr_from_sockaddr(&j->result, pick->ai_addr, pick->ai_addrlen) < 0)
			err = EAI_FAMILY;
		freeaddrinfo(res);
	}
	pthread_mutex_lock(&dns_mu);
	j->err = err;
	if (j->state == DNS_CANCELLED) {
		dns_unlink(j);
		free(j);
	} else {
		j->state = DNS_POSTED;
		ev_loop_post(j->loop, dns_done, j);
	}
	pthread_mutex_unlock(&dns_mu);
	return NULL;
}

static void dns_start(struct flow *f, const char *name, uint16_t port)
{
	struct dns_job *j = xcalloc(1, sizeof(*j));
	pthread_attr_t attr;
	pthread_t th;
	int rc;

	j->f = f;
	j->loop = f->w->loop;
	j->port = port;
	snprintf(j->name, sizeof(j->name), "%s", name);
	pthread_mutex_lock(&dns_mu);
	j->next = dns_jobs;
	if (dns_jobs)
		dns_jobs->prev = j;
	dns_jobs = j;
	f->dns = j;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	rc = pthread_create(&th, &attr, dns_thread, j);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		dns_unlink(j);
		f->dns = NULL;
	}
	pthread_mutex_unlock(&dns_mu);
	if (rc != 0) {
		free(j);
		socks_refuse(f, SOCKS5_REP_GENERAL_FAILURE, "SOCKS5: %s",
			     "cannot start a DNS lookup");
		return;
	}
	ev_timer_add(f->w->loop, &f->timer, PROXY_CONNECT_TIMEOUT_MS); /* bounds the lookup too */
}

void socks_dns_cancel(struct flow *f)
{
	pthread_mutex_lock(&dns_mu);
	if (f->dns) {
		f->dns->state = DNS_CANCELLED;
		f->dns = NULL;
	}
	pthread_mutex_unlock(&dns_mu);
}

static void socks_resolve(struct flow *f)
{
	const struct socks5_target *t = socks5_target(f->socks);
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
			dns_start(f, name, t->port);
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
	socks_connect(f);
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
	struct proxy_lsn *ls = proxy_lsn_of(l);
	struct proxy_worker *w = ls->w;
	struct proxy *p = w->p;
	struct proxy_snap *snap;
	struct flow *f;

	if (proxy_over_limit(p, fd))
		return;
	snap = proxy_snap_get(p);
	f = flow_new(w, FLOW_OUTBOUND, snap);
	f->pod = proxy_pod_ref(ls->pod);
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
