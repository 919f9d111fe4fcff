/* Shared mode: workloads enrolled over ZDS, each with its listeners inside its own netns
 * (DESIGN.md §5). The listening sockets are made on the caller's thread (the ZDS thread): setns
 * into the workload's netns, socket, back; then every worker adopts its own set on its loop. */
#include "pkg/proxy/proxy_int.h"

#include <ifaddrs.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const lsn_names[LSN_N] = {"inbound", "outbound", "hbone", "socks5"};

void proxy_pod_put(struct proxy_pod *pod)
{
	if (!pod || atomic_fetch_sub(&pod->refs, 1) != 1)
		return;
	for (unsigned i = 0; pod->pw && i < pod->p->o.workers; i++)
		for (int k = 0; k < LSN_N; k++)
			if (pod->pw[i].lfd[k] >= 0)
				close(pod->pw[i].lfd[k]);
	if (pod->netns_fd >= 0)
		close(pod->netns_fd);
	free(pod->pw);
	free(pod->local);
	free(pod);
}

/* ---- inside the workload's netns ---------------------------------------------------------- */

struct in_ns {
	struct proxy_pod *pod;
};

/* The netns's addresses (for the loop check) and tcp_migrate_req (so a closing listener's queue
 * moves to an upgraded ztunnel's instead of being reset). Runs inside the netns. */
static int pod_ns_setup(void *arg)
{
	struct proxy_pod *pod = ((struct in_ns *)arg)->pod;
	struct ifaddrs *ifa = NULL;
	size_t cap = 0;
	int fd;

	if (getifaddrs(&ifa) == 0) {
		for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
			struct net_addr a;

			if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET &&
					     i->ifa_addr->sa_family != AF_INET6))
				continue;
			if (net_addr_from_sockaddr(&a, i->ifa_addr,
						   i->ifa_addr->sa_family == AF_INET
							   ? sizeof(struct sockaddr_in)
							   : sizeof(struct sockaddr_in6)) < 0)
				continue;
			if (pod->n_local == cap) {
				cap = cap ? cap * 2 : 8;
				pod->local = xrealloc(pod->local, cap * sizeof(*pod->local));
			}
			net_addr_ip(&a, &pod->local[pod->n_local++]);
		}
		freeifaddrs(ifa);
	}
	/* /proc/sys/net is the opening thread's netns. Best effort: older kernels lack it. */
	fd = open("/proc/sys/net/ipv4/tcp_migrate_req", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "1", 1) != 1)
			log_debug("ztunnel: cannot set tcp_migrate_req", LF_STR("uid", pod->uid));
		close(fd);
	}
	return 0;
}

/* Makes every worker's listening sockets in the pod's netns. */
static int pod_listen(struct proxy *p, struct proxy_pod *pod, struct errbuf *eb)
{
	const uint16_t ports[LSN_N] = {p->o.inbound_port, p->o.outbound_port, p->o.hbone_port,
				       p->o.socks5_port};
	struct net_listen_opts lo = {
		.reuseport = true,
		.mark = PROXY_MARK,
		.in_netns = true,
		.netns_fd = pod->netns_fd,
		.backlog = 128,
	};
	struct in_ns x = {pod};

	if (net_netns_run(pod->netns_fd, pod_ns_setup, &x, eb) < 0)
		return -E_IO;
	for (unsigned i = 0; i < p->o.workers; i++)
		for (int k = 0; k < LSN_N; k++) {
			struct net_addr a;
			char s[40];
			int fd;

			if (!ports[k])
				continue;
			/* "[::]" takes IPv4 too; a netns without IPv6 falls back to 0.0.0.0. */
			snprintf(s, sizeof(s), "%s:%u", k == LSN_SOCKS ? "127.0.0.1" : "[::]",
				 ports[k]);
			if (net_addr_parse(&a, s, eb) < 0)
				return -E_INVAL;
			fd = net_listen(&a, &lo, eb);
			if (fd < 0) {
				errbuf_prefix(eb, "%s listener", lsn_names[k]);
				return fd;
			}
			pod->pw[i].lfd[k] = fd;
		}
	return 0;
}

/* ---- on the workers' loops ----------------------------------------------------------------- */

/* Adopts the listeners made for worker w (under p->mu). */
static void pod_adopt_locked(struct proxy_pod *pod, struct proxy_worker *w)
{
	struct proxy_pod_worker *pw = &pod->pw[w->idx];

	if (pod->state == POD_DRAINING || atomic_load(&w->p->draining))
		return;
	for (int k = 0; k < LSN_N; k++) {
		struct errbuf eb = {0};
		int fd = pw->lfd[k];

		if (fd < 0)
			continue;
		pw->lfd[k] = -1;
		pw->lsn[k].w = w;
		pw->lsn[k].pod = pod;
		if (net_listener_adopt(&pw->lsn[k].l, w->loop, fd, proxy_accept_cbs[k], &pw->lsn[k],
				       &eb) < 0) {
			log_error("ztunnel: cannot watch a workload listener",
				  LF_STR("uid", pod->uid), LF_ERR(eb.msg));
			continue;
		}
		pw->lsn[k].on = true;
	}
}

static void pod_stop_listening(struct proxy_pod *pod, struct proxy_worker *w)
{
	struct proxy_pod_worker *pw = &pod->pw[w->idx];

	for (int k = 0; k < LSN_N; k++)
		if (pw->lsn[k].on) {
			net_listener_stop(&pw->lsn[k].l);
			pw->lsn[k].on = false;
		}
}

struct pod_post {
	struct proxy_pod *pod; /* a reference */
	unsigned idx;
};

static void adopt_post(struct ev_loop *loop, void *arg)
{
	struct pod_post *x = arg;
	struct proxy_worker *w = proxy_worker_get(x->idx);

	(void)loop;
	if (w && w->p == x->pod->p) {
		pthread_mutex_lock(&w->p->mu);
		pod_adopt_locked(x->pod, w);
		pthread_mutex_unlock(&w->p->mu);
	}
	proxy_pod_put(x->pod);
	free(x);
}

/* One worker finished draining a removed pod; the last one drops it from proxy.gone. */
static void drain_done(struct proxy_pod *pod)
{
	struct proxy *p = pod->p;
	struct proxy_pod **pp;

	if (atomic_fetch_sub(&pod->drains, 1) != 1)
		return;
	pthread_mutex_lock(&p->mu);
	for (pp = &p->gone; *pp && *pp != pod; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = pod->next;
	pthread_mutex_unlock(&p->mu);
	proxy_pod_put(pod);
}

/* The drain deadline of a removed workload: whatever of its connections is still open goes. */
static void on_pod_drained(struct ev_loop *loop, struct ev_timer *t)
{
	struct proxy_pod_worker *pw = ev_container_of(t, struct proxy_pod_worker, drain);
	struct proxy_pod *pod = pw->pod;
	struct proxy_worker *w = proxy_worker_get((unsigned)(pw - pod->pw));
	struct flow *f, *fnext;
	struct tun *tn, *tnext;

	(void)loop;
	for (f = w ? w->flows : NULL; f; f = fnext) {
		fnext = f->next;
		if (f->pod == pod && !f->dead)
			flow_fail(f, "-", "workload %s was removed from the mesh", pod->uid);
	}
	for (tn = w ? w->tuns : NULL; tn; tn = tnext) {
		tnext = tn->next;
		if (tn->pod == pod && !tn->dead)
			tun_close(tn, "workload removed from the mesh");
	}
	drain_done(pod);
}

static void remove_post(struct ev_loop *loop, void *arg)
{
	struct pod_post *x = arg;
	struct proxy_worker *w = proxy_worker_get(x->idx);

	if (w && w->p == x->pod->p) {
		pod_stop_listening(x->pod, w);
		x->pod->pw[x->idx].pod = x->pod;
		ev_timer_init(&x->pod->pw[x->idx].drain, on_pod_drained);
		ev_timer_add(loop, &x->pod->pw[x->idx].drain, w->p->o.pod_drain_ms);
	} else {
		drain_done(x->pod);
	}
	proxy_pod_put(x->pod);
	free(x);
}

/* Posts fn to every running worker; returns how many. */
static unsigned post_each(struct proxy *p, struct proxy_pod *pod, ev_post_fn fn)
{
	unsigned n = 0;

	for (unsigned i = 0; i < p->o.workers; i++) {
		struct ev_loop *loop = atomic_load(&p->loops[i]);
		struct pod_post *x;

		if (!loop)
			continue;
		x = xcalloc(1, sizeof(*x));
		x->pod = proxy_pod_ref(pod);
		x->idx = i;
		ev_loop_post(loop, fn, x);
		n++;
	}
	return n;
}

void proxy_pods_worker_start(struct proxy *p, struct proxy_worker *w)
{
	pthread_mutex_lock(&p->mu);
	for (struct proxy_pod *pod = p->pods; pod; pod = pod->next)
		pod_adopt_locked(pod, w);
	pthread_mutex_unlock(&p->mu);
}

void proxy_pods_worker_stop(struct proxy *p, struct proxy_worker *w)
{
	pthread_mutex_lock(&p->mu);
	for (struct proxy_pod *pod = p->pods; pod; pod = pod->next)
		pod_stop_listening(pod, w);
	pthread_mutex_unlock(&p->mu);
}

void proxy_pods_worker_fini(struct proxy *p, struct proxy_worker *w)
{
	pthread_mutex_lock(&p->mu);
	for (struct proxy_pod *pod = p->gone; pod; pod = pod->next)
		pod_stop_listening(pod, w);
	pthread_mutex_unlock(&p->mu);
	for (;;) {
		struct proxy_pod *found = NULL;

		pthread_mutex_lock(&p->mu);
		for (struct proxy_pod *pod = p->gone; pod && !found; pod = pod->next)
			if (ev_timer_active(&pod->pw[w->idx].drain))
				found = pod;
		if (found)
			ev_timer_del(w->loop, &found->pw[w->idx].drain);
		pthread_mutex_unlock(&p->mu);
		if (!found)
			return;
		drain_done(found);
	}
}

/* ---- the enrolled set (any thread; the ZDS thread in practice) ----------------------------- */

static struct proxy_pod *find_locked(struct proxy *p, const char *uid)
{
	for (struct proxy_pod *pod = p->pods; pod; pod = pod->next)
		if (strcmp(pod->uid, uid) == 0)
			return pod;
	return NULL;
}

/* Unlinks pod (p->mu held) and starts its drain; the list's reference goes with it. */
static void remove_locked(struct proxy *p, struct proxy_pod *pod, const char *why)
{
	struct proxy_pod **pp = &p->pods;

	while (*pp && *pp != pod)
		pp = &(*pp)->next;
	if (*pp)
		*pp = pod->next;
	pod->next = NULL;
	pod->state = POD_DRAINING;
	/* Listeners not adopted yet are simply closed. */
	for (unsigned i = 0; i < p->o.workers; i++)
		for (int k = 0; k < LSN_N; k++)
			if (pod->pw[i].lfd[k] >= 0) {
				close(pod->pw[i].lfd[k]);
				pod->pw[i].lfd[k] = -1;
			}
	log_info("ztunnel: workload removed", LF_STR("uid", pod->uid), LF_STR("reason", why),
		 LF_U64("drain_ms", p->o.pod_drain_ms));
	/* The list's reference moves to proxy.gone until every worker drained it. */
	atomic_store(&pod->drains, p->o.workers + 1);
	pod->next = p->gone;
	p->gone = pod;
	{
		unsigned posted = post_each(p, pod, remove_post);

		/* Workers never started count as drained; the extra count is ours. */
		if (atomic_fetch_sub(&pod->drains, p->o.workers - posted + 1) ==
		    p->o.workers - posted + 1) {
			p->gone = pod->next;
			proxy_pod_put(pod);
		}
	}
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

int proxy_pod_add(struct proxy *p, const char *uid, const char *name, const char *ns,
		  const char *sa, int netns_fd, uint64_t wait_ms, struct errbuf *eb)
{
	struct proxy_pod *pod, *old;
	uint64_t ino = net_netns_inode(netns_fd), deadline;
	bool matched;

	if (!p->o.shared) {
		close(netns_fd);
		return errbuf_set(eb, E_STATE, "ztunnel is not in shared mode");
	}
	if (!uid || !uid[0] || strlen(uid) >= sizeof(pod->uid)) {
		close(netns_fd);
		return errbuf_set(eb, E_INVAL, "workload uid is empty or too long");
	}
	if (ino == 0) {
		close(netns_fd);
		return errbuf_set(eb, E_INVAL, "the fd sent for %s is not a network namespace",
				  uid);
	}
	pthread_mutex_lock(&p->mu);
	old = find_locked(p, uid);
	if (old && old->netns_ino == ino) { /* a replay of what we have */
		old->gen = p->zds_gen;
		pthread_mutex_unlock(&p->mu);
		close(netns_fd);
		log_debug("ztunnel: workload already enrolled", LF_STR("uid", uid));
		return 0;
	}
	if (old)
		remove_locked(p, old, "a new network namespace for the same uid");
	pthread_mutex_unlock(&p->mu);

	pod = xcalloc(1, sizeof(*pod));
	atomic_init(&pod->refs, 1);
	pod->p = p;
	pod->netns_fd = netns_fd;
	pod->netns_ino = ino;
	copy(pod->uid, sizeof(pod->uid), uid);
	copy(pod->name, sizeof(pod->name), name);
	copy(pod->ns, sizeof(pod->ns), ns);
	copy(pod->sa, sizeof(pod->sa), sa);
	pod->added_ms = time_real_ms();
	pod->pw = xcalloc(p->o.workers, sizeof(*pod->pw));
	for (unsigned i = 0; i < p->o.workers; i++)
		for (int k = 0; k < LSN_N; k++)
			pod->pw[i].lfd[k] = -1;
	if (pod_listen(p, pod, eb) < 0) {
		errbuf_prefix(eb, "workload %s", uid);
		proxy_pod_put(pod);
		return -E_IO;
	}
	pthread_mutex_lock(&p->mu);
	pod->gen = p->zds_gen;
	pod->next = p->pods;
	p->pods = pod;
	pthread_mutex_unlock(&p->mu);
	post_each(p, pod, adopt_post);
	proxy_resnap(p);
	log_info("ztunnel: workload enrolled", LF_STR("uid", uid), LF_STR("namespace", pod->ns),
		 LF_STR("name", pod->name), LF_STR("service_account", pod->sa),
		 LF_U64("netns_inode", ino));
	/* Wait (bounded) for the mesh config to name it, so the workload is served on ack. */
	deadline = time_mono_ms() + wait_ms;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		matched = pod->state == POD_READY;
		pthread_mutex_unlock(&p->mu);
		if (matched || time_mono_ms() >= deadline)
			break;
		{
			struct timespec ts = {0, 20 * 1000 * 1000};

			nanosleep(&ts, NULL);
		}
	}
	if (!matched)
		log_warn("ztunnel: enrolled workload has no match in the mesh config yet (pending)",
			 LF_STR("uid", uid), LF_STR("namespace", pod->ns),
			 LF_STR("name", pod->name), LF_STR("node", p->o.node));
	return 0;
}

int proxy_pod_keep(struct proxy *p, const char *uid, struct errbuf *eb)
{
	struct proxy_pod *pod;

	pthread_mutex_lock(&p->mu);
	pod = find_locked(p, uid);
	if (pod)
		pod->gen = p->zds_gen;
	pthread_mutex_unlock(&p->mu);
	return pod ? 0 : errbuf_set(eb, E_NOTFOUND, "no enrolled workload %s to keep", uid);
}

int proxy_pod_del(struct proxy *p, const char *uid, struct errbuf *eb)
{
	struct proxy_pod *pod;

	pthread_mutex_lock(&p->mu);
	pod = find_locked(p, uid);
	if (pod)
		remove_locked(p, pod, "removed by the node agent");
	pthread_mutex_unlock(&p->mu);
	if (!pod)
		return errbuf_set(eb, E_NOTFOUND, "no enrolled workload %s", uid);
	proxy_resnap(p);
	return 0;
}

void proxy_pods_begin(struct proxy *p)
{
	pthread_mutex_lock(&p->mu);
	p->zds_gen++;
	pthread_mutex_unlock(&p->mu);
}

void proxy_pods_snapshot_done(struct proxy *p)
{
	size_t removed = 0, kept = 0;

	pthread_mutex_lock(&p->mu);
	for (struct proxy_pod *pod = p->pods, *next; pod; pod = next) {
		next = pod->next;
		if (pod->gen != p->zds_gen) {
			remove_locked(p, pod, "not in the node agent's snapshot");
			removed++;
		} else {
			kept++;
		}
	}
	p->zds_synced = true;
	pthread_mutex_unlock(&p->mu);
	log_info("ztunnel: workload snapshot applied", LF_U64("workloads", kept),
		 LF_U64("removed", removed));
	if (removed)
		proxy_resnap(p);
}

void proxy_pods_dump(struct proxy *p, struct json_writer *w)
{
	static const char *const states[] = {"pending", "ready", "draining"};

	json_write_array_begin(w);
	pthread_mutex_lock(&p->mu);
	for (struct proxy_pod *pod = p->pods; pod; pod = pod->next) {
		json_write_object_begin(w);
		json_kv_str(w, "uid", pod->uid);
		json_kv_str(w, "name", pod->name);
		json_kv_str(w, "namespace", pod->ns);
		json_kv_str(w, "serviceAccount", pod->sa);
		json_kv_str(w, "state", states[pod->state]);
		json_kv_str(w, "workload", pod->wl_uid);
		json_kv_int(w, "netnsInode", (int64_t)pod->netns_ino);
		json_write_key(w, "enrolled");
		json_write_time_ms(w, pod->added_ms);
		json_write_object_end(w);
	}
	pthread_mutex_unlock(&p->mu);
	json_write_array_end(w);
}
