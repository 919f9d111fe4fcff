/* `ambient cni agent`: the node agent. Serves ZDS to ztunnel and a local control socket, applies
 * the in-pod rules, and persists the enrolled set so a restart replays it (DESIGN.md §5).
 *
 * One thread runs everything from one poll loop, so ZDS's strict lock-step (one request, one
 * ack) is serialized by construction between control requests and the replay to a new ztunnel:
 *
 *   ztunnel connects --> hello --> replay: Add (netns reopened from its path)... --> SnapshotSent
 *        ^                                                                            |
 *        |   (a newer connection takes over; POLLHUP, a timeout or a               v
 *        +--- protocol error closes it) <---------------- steady state: Add/Del per control request
 *
 * Requests go to the newest live connection only (as Istio's node agent does, so a second
 * ztunnel started for an upgrade takes over); older ones stay open until their ztunnel leaves. */
#include "cmd/cni.h"
#include "cmd/flags.h"
#include "pkg/buf/buf.h"
#include "pkg/json/json.h"
#include "pkg/net/net.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Default wait for each ack. Istio uses 5 s; our ztunnel may hold an Add's ack up to 5 s while it
 * waits for the mesh config to name the workload, so the agent waits longer than that. */
#define ZDS_TIMEOUT_MS 10000
#define MAX_ZT_CONNS 8
#define MAX_CTL_CONNS 32
#define CTL_SNDBUF (8 << 20)

struct agent {
	const char *zds_path, *ctl_path, *state_path;
	int zds_lfd, ctl_lfd, sig_fd;
	ino_t zds_ino, ctl_ino;
	int zds_timeout_ms;
	int zt[MAX_ZT_CONNS]; /* oldest first; the last one gets the requests */
	size_t nzt;
	int ctl[MAX_CTL_CONNS];
	size_t nctl;
	struct cniconf_entry *e;
	size_t n, cap;
};

/* ---- state file ------------------------------------------------------------------------------ */

static struct cniconf_entry *entry_find(struct agent *a, const char *uid)
{
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->e[i].uid, uid) == 0)
			return &a->e[i];
	return NULL;
}

static void entry_remove(struct agent *a, struct cniconf_entry *e)
{
	size_t i = (size_t)(e - a->e);

	memmove(&a->e[i], &a->e[i + 1], (a->n - i - 1) * sizeof(*e));
	a->n--;
}

static struct cniconf_entry *entry_append(struct agent *a)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 16;
		a->e = xrealloc(a->e, a->cap * sizeof(*a->e));
	}
	memset(&a->e[a->n], 0, sizeof(a->e[0]));
	return &a->e[a->n++];
}

static int read_file(const char *path, struct buf *b, struct errbuf *eb)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return errbuf_set(eb, errno == ENOENT ? E_NOTFOUND : E_IO, "%s: %s", path,
				  strerror(errno));
	while ((r = buf_read_fd(b, fd, 0)) > 0)
		;
	close(fd);
	if (r < 0)
		return errbuf_set(eb, E_IO, "%s: read failed", path);
	return 0;
}

/* A missing file is an empty set; anything else must be a state file we wrote. */
static int state_load(struct agent *a, struct errbuf *eb)
{
	struct buf b;
	int rc;

	buf_init(&b, CNI_CTL_MAX * 4);
	rc = read_file(a->state_path, &b, eb);
	if (rc == -E_NOTFOUND)
		rc = 0;
	else if (rc == 0)
		rc = cniconf_state_decode((const char *)buf_rptr(&b), buf_len(&b), a->state_path,
					  &a->e, &a->n, eb);
	a->cap = a->n;
	buf_fini(&b);
	return rc;
}

static int mkdir_parent(const char *path, mode_t mode)
{
	char dir[CNI_PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", path);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, mode) < 0 && errno != EEXIST)
			return -E_IO;
		*p = '/';
	}
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Written to a temporary file, synced, then renamed over the old one: a crash leaves either the
 * old or the new set, never a torn file. */
static int state_save(struct agent *a, struct errbuf *eb)
{
	char tmp[CNI_PATH_MAX + 32], dir[CNI_PATH_MAX];
	struct buf b;
	int fd = -1, rc = -E_IO;

	buf_init(&b, 0);
	if (cniconf_state_encode(a->e, a->n, &b) < 0) {
		rc = errbuf_set(eb, E_LIMIT, "%s: state too large", a->state_path);
		goto done;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", a->state_path, (int)getpid());
	if (mkdir_parent(a->state_path, 0755) < 0) {
		errbuf_set(eb, E_IO, "%s: cannot create its directory: %s", a->state_path,
			   strerror(errno));
		goto done;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, buf_rptr(&b), buf_len(&b)) < 0 || fsync(fd) < 0) {
		errbuf_set(eb, E_IO, "%s: %s", tmp, strerror(errno));
		goto done;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, a->state_path) < 0) {
		errbuf_set(eb, E_IO, "rename %s to %s: %s", tmp, a->state_path, strerror(errno));
		goto done;
	}
	snprintf(dir, sizeof(dir), "%s", a->state_path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0)
		fsync(fd); /* the rename itself */
	rc = 0;
done:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	buf_fini(&b);
	return rc;
}

/* ---- ztunnel connections --------------------------------------------------------------------- */

static int zt_current(const struct agent *a)
{
	return a->nzt ? a->zt[a->nzt - 1] : -1;
}

static void zt_close(struct agent *a, int fd, const char *why)
{
	for (size_t i = 0; i < a->nzt; i++) {
		if (a->zt[i] != fd)
			continue;
		memmove(&a->zt[i], &a->zt[i + 1], (a->nzt - i - 1) * sizeof(int));
		a->nzt--;
		close(fd);
		log_warn("ztunnel disconnected", LF_STR("reason", why),
			 LF_U64("remaining", a->nzt));
		return;
	}
}

static void fill_request(struct inpod_request *r, enum inpod_type t, const struct cniconf_entry *e)
{
	memset(r, 0, sizeof(*r));
	r->type = t;
	if (!e)
		return;
	snprintf(r->uid, sizeof(r->uid), "%s", e->uid);
	snprintf(r->name, sizeof(r->name), "%s", e->name);
	snprintf(r->namespace_, sizeof(r->namespace_), "%s", e->namespace_);
	snprintf(r->service_account, sizeof(r->service_account), "%s", e->service_account);
}

/* One lock-step exchange on the current connection. A nack (-E_DENIED) leaves the connection
 * usable; anything else (timeout, close, I/O) breaks the lock-step, so the connection is closed
 * and ztunnel will reconnect and get a fresh snapshot. */
static int zt_send(struct agent *a, int fd, enum inpod_type t, const struct cniconf_entry *e,
		   int netns_fd, struct errbuf *eb)
{
	struct inpod_request r;
	int rc;

	fill_request(&r, t, e);
	rc = inpod_server_send(fd, &r, netns_fd, a->zds_timeout_ms, eb);
	if (rc < 0 && rc != -E_DENIED)
		zt_close(a, fd, eb->msg);
	return rc;
}

/* Opens an entry's netns path and makes sure it is still the namespace that was enrolled. */
static int netns_reopen(const struct cniconf_entry *e, struct errbuf *eb)
{
	int fd = open(e->netns, O_RDONLY | O_CLOEXEC);
	uint64_t ino;

	if (fd < 0)
		return errbuf_set(eb, errno == ENOENT ? E_NOTFOUND : E_IO, "netns %s: %s", e->netns,
				  strerror(errno));
	ino = net_netns_inode(fd);
	if (e->netns_inode && ino != e->netns_inode) {
		close(fd);
		return errbuf_set(eb, E_NOTFOUND,
				  "netns %s: now a different namespace (inode %llu, enrolled %llu)",
				  e->netns, (unsigned long long)ino,
				  (unsigned long long)e->netns_inode);
	}
	return fd;
}

/* Replays the enrolled set to a new connection, then SnapshotSent. Entries whose netns is gone
 * are dropped (their rules went with it); one that cannot be opened for another reason (out of
 * fds, say) is sent as Keep, as Istio does for a pod without a netns handle, so a ztunnel that
 * already serves it keeps it. */
static void zt_replay(struct agent *a, int fd)
{
	struct errbuf eb;
	size_t dropped = 0, sent = 0;
	int rc;

	for (size_t i = 0; i < a->n;) {
		struct cniconf_entry *e = &a->e[i];
		int nfd = netns_reopen(e, &eb);

		if (nfd == -E_NOTFOUND) {
			log_warn("dropping workload whose netns is gone", LF_STR("uid", e->uid),
				 LF_ERR(eb.msg));
			entry_remove(a, e);
			dropped++;
			continue;
		}
		if (nfd < 0) {
			log_warn("cannot reopen a workload's netns; sending Keep",
				 LF_STR("uid", e->uid), LF_ERR(eb.msg));
			rc = zt_send(a, fd, INPOD_KEEP, e, -1, &eb);
		} else {
			rc = zt_send(a, fd, INPOD_ADD, e, nfd, &eb);
			close(nfd);
		}
		if (rc == -E_DENIED)
			log_warn("ztunnel refused a replayed workload", LF_STR("uid", e->uid),
				 LF_ERR(eb.msg));
		else if (rc < 0)
			goto out;
		else
			sent++;
		i++;
	}
	rc = zt_send(a, fd, INPOD_SNAPSHOT_SENT, NULL, -1, &eb);
	if (rc == -E_DENIED)
		log_warn("ztunnel refused SnapshotSent", LF_ERR(eb.msg));
	else if (rc == 0)
		log_info("snapshot sent to ztunnel", LF_U64("workloads", sent),
			 LF_U64("dropped", dropped));
out:
	if (dropped && state_save(a, &eb) < 0)
		log_error("cannot save the state", LF_ERR(eb.msg));
}

static void zt_accept(struct agent *a)
{
	struct errbuf eb;
	int fd = inpod_server_accept(a->zds_lfd, a->zds_timeout_ms, &eb);

	if (fd < 0) {
		log_warn("ztunnel connection failed", LF_ERR(eb.msg));
		return;
	}
	if (a->nzt == MAX_ZT_CONNS) {
		log_warn("too many ztunnel connections; closing the oldest",
			 LF_U64("max", MAX_ZT_CONNS));
		zt_close(a, a->zt[0], "replaced");
	}
	a->zt[a->nzt++] = fd;
	log_info("ztunnel connected", LF_U64("connections", a->nzt));
	zt_replay(a, fd);
}

/* An idle connection is readable only when ztunnel left (or misbehaves: it speaks only when
 * asked). */
static void zt_readable(struct agent *a, int fd, short revents)
{
	uint8_t tmp[INPOD_PACKET_MAX];
	ssize_t r;

	if (revents & (POLLERR | POLLNVAL)) {
		zt_close(a, fd, "socket error");
		return;
	}
	r = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r == 0 || (revents & POLLHUP))
		zt_close(a, fd, "ztunnel closed the connection");
	else if (r < 0)
		zt_close(a, fd, strerror(errno));
	else
		zt_close(a, fd, "unexpected packet from ztunnel");
}

/* ---- control requests ------------------------------------------------------------------------ */

static void reply_error(struct json_writer *w, const char *msg)
{
	json_write_object_begin(w);
	json_kv_bool(w, "ok", false);
	json_kv_str(w, "error", msg);
	json_write_object_end(w);
}

static void opts_from(const struct cniconf_entry *e, struct redirect_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->ipv6 = e->ipv6;
	memcpy(o->exclude_inbound, e->exclude, sizeof(e->exclude));
	o->n_exclude_inbound = e->n_exclude;
}

/* ztunnel first (its listeners exist before any packet is redirected to them, so a running
 * application never sees a refused connection), then the rules; a failure undoes both. */
static int do_add(struct agent *a, const struct cniconf_request *req, struct json_writer *w,
		  struct errbuf *eb)
{
	struct cniconf_entry e = req->e, *old;
	struct redirect_opts o;
	int nfd, zt = zt_current(a), rc;
	bool zt_added = false, rules_added = false, again;

	nfd = open(e.netns, O_RDONLY | O_CLOEXEC);
	if (nfd < 0)
		return errbuf_set(eb, E_NOTFOUND, "netns %s: %s", e.netns, strerror(errno));
	if (!cni_is_netns(nfd)) {
		close(nfd);
		return errbuf_set(eb, E_INVAL, "%s is not a network namespace", e.netns);
	}
	e.netns_inode = net_netns_inode(nfd);
	for (size_t i = 0; i < a->n; i++)
		if (a->e[i].netns_inode == e.netns_inode && strcmp(a->e[i].uid, e.uid) != 0) {
			close(nfd);
			return errbuf_set(eb, E_EXIST,
					  "netns %s is already enrolled as workload %s", e.netns,
					  a->e[i].uid);
		}
	e.ipv6 = redirect_netns_has_ipv6(nfd);
	e.enrolled_ms = time_real_ms();
	old = entry_find(a, e.uid);
	/* Re-adding the same netns is idempotent: on failure the earlier enrollment stays. */
	again = old && old->netns_inode == e.netns_inode;
	if (again)
		e.enrolled_ms = old->enrolled_ms;
	if (zt < 0) {
		rc = errbuf_set(eb, E_STATE, CNI_ERR_NO_ZTUNNEL);
		goto fail;
	}
	if ((rc = zt_send(a, zt, INPOD_ADD, &e, nfd, eb)) < 0) {
		if (rc == -E_DENIED)
			errbuf_prefix(eb, "ztunnel refused workload %s", e.uid);
		else
			errbuf_prefix(eb, "ztunnel did not ack workload %s", e.uid);
		goto fail;
	}
	zt_added = true;
	opts_from(&e, &o);
	if ((rc = redirect_add(nfd, e.netns, &o, eb)) < 0)
		goto fail; /* it removed what it added */
	rules_added = true;
	if (old)
		*old = e;
	else
		*entry_append(a) = e;
	if ((rc = state_save(a, eb)) < 0) {
		if (!old)
			entry_remove(a, entry_find(a, e.uid));
		goto fail;
	}
	close(nfd);
	log_info("workload enrolled", LF_STR("uid", e.uid), LF_STR("netns", e.netns),
		 LF_STR("namespace", e.namespace_), LF_STR("name", e.name), LF_BOOL("ipv6", e.ipv6),
		 LF_BOOL("host", e.host));
	json_write_object_begin(w);
	json_kv_bool(w, "ok", true);
	json_write_key(w, "workload");
	cniconf_entry_write(w, &e);
	json_write_object_end(w);
	return 0;
fail:
	if (!again) {
		struct errbuf eb2;

		if (rules_added && redirect_del(nfd, e.netns, &eb2) < 0)
			log_warn("rollback: removing the rules failed", LF_STR("uid", e.uid),
				 LF_ERR(eb2.msg));
		if (zt_added && zt_current(a) == zt && zt_send(a, zt, INPOD_DEL, &e, -1, &eb2) < 0)
			log_warn("rollback: ztunnel Del failed", LF_STR("uid", e.uid),
				 LF_ERR(eb2.msg));
	}
	close(nfd);
	log_warn("enrollment failed", LF_STR("uid", e.uid), LF_STR("netns", e.netns),
		 LF_ERR(eb->msg));
	return rc;
}

/* Rules first (traffic goes back to plain at once), then ztunnel drops the workload's proxy.
 * Unknown uids and vanished namespaces are fine: del is idempotent. */
static int do_del(struct agent *a, const struct cniconf_request *req, struct json_writer *w,
		  struct errbuf *eb)
{
	const char *uid = req->e.uid;
	struct cniconf_entry *e, tmp;
	int zt = zt_current(a), rc, nfd;

	e = entry_find(a, uid);
	if (e) {
		nfd = netns_reopen(e, eb);
		if (nfd < 0 && nfd != -E_NOTFOUND)
			return nfd; /* still there, but its rules cannot be reached now */
		if (nfd >= 0) {
			rc = redirect_del(nfd, e->netns, eb);
			close(nfd);
			if (rc < 0)
				return rc;
		}
	}
	memset(&tmp, 0, sizeof(tmp));
	snprintf(tmp.uid, sizeof(tmp.uid), "%s", uid);
	if (zt >= 0 && (rc = zt_send(a, zt, INPOD_DEL, &tmp, -1, eb)) < 0)
		log_warn("ztunnel Del failed; it drops the workload at its next snapshot",
			 LF_STR("uid", uid), LF_ERR(eb->msg));
	if (e) {
		entry_remove(a, e);
		if ((rc = state_save(a, eb)) < 0)
			return rc;
		log_info("workload removed", LF_STR("uid", uid));
	}
	json_write_object_begin(w);
	json_kv_bool(w, "ok", true);
	json_kv_bool(w, "removed", e != NULL);
	json_write_object_end(w);
	return 0;
}

static int do_list(struct agent *a, struct json_writer *w)
{
	json_write_object_begin(w);
	json_kv_bool(w, "ok", true);
	json_kv_bool(w, "ztunnelConnected", zt_current(a) >= 0);
	json_write_key(w, "workloads");
	json_write_array_begin(w);
	for (size_t i = 0; i < a->n; i++)
		cniconf_entry_write(w, &a->e[i]);
	json_write_array_end(w);
	json_write_object_end(w);
	return 0;
}

static void check_one(const struct cniconf_entry *e, struct json_writer *w)
{
	struct redirect_opts o;
	struct errbuf eb;
	int nfd = netns_reopen(e, &eb);

	if (nfd >= 0) {
		opts_from(e, &o);
		errbuf_clear(&eb);
		if (redirect_check(nfd, e->netns, &o, &eb) < 0 && !eb.msg[0])
			snprintf(eb.msg, sizeof(eb.msg), "check failed");
		close(nfd);
	}
	json_write_object_begin(w);
	json_kv_str(w, "uid", e->uid);
	json_kv_str(w, "netns", e->netns);
	json_kv_bool(w, "ok", eb.msg[0] == '\0');
	if (eb.msg[0])
		json_kv_str(w, "error", eb.msg);
	json_write_object_end(w);
}

static int do_check(struct agent *a, const struct cniconf_request *req, struct json_writer *w,
		    struct errbuf *eb)
{
	const char *uid = req->e.uid;
	const struct cniconf_entry *one = NULL;

	if (uid[0] && !(one = entry_find(a, uid)))
		return errbuf_set(eb, E_NOTFOUND, "workload %s is not enrolled", uid);
	json_write_object_begin(w);
	json_kv_bool(w, "ok", true);
	json_kv_bool(w, "ztunnelConnected", zt_current(a) >= 0);
	json_write_key(w, "workloads");
	json_write_array_begin(w);
	for (size_t i = 0; i < a->n; i++)
		if (!one || one == &a->e[i])
			check_one(&a->e[i], w);
	json_write_array_end(w);
	json_write_object_end(w);
	return 0;
}

static void handle_request(struct agent *a, const char *p, size_t n, struct buf *out)
{
	struct json_writer w;
	struct errbuf eb;
	struct cniconf_request *req = xmalloc(sizeof(*req)); /* ~5 KiB: off the stack */
	int rc;

	errbuf_clear(&eb);
	json_writer_init(&w, out, 0);
	if ((rc = cniconf_request_decode(p, n, req, &eb)) < 0)
		goto fail;
	switch (req->op) {
	case CNICONF_OP_ADD: rc = do_add(a, req, &w, &eb); break;
	case CNICONF_OP_DEL: rc = do_del(a, req, &w, &eb); break;
	case CNICONF_OP_LIST: rc = do_list(a, &w); break;
	case CNICONF_OP_CHECK: rc = do_check(a, req, &w, &eb); break;
	}
	if (rc >= 0 && json_writer_finish(&w) >= 0)
		goto done;
	if (rc >= 0)
		errbuf_set(&eb, E_LIMIT, "reply too large");
fail:
	buf_reset(out);
	json_writer_init(&w, out, 0);
	reply_error(&w, eb.msg);
	json_writer_finish(&w);
done:
	free(req);
}

static void ctl_close(struct agent *a, size_t i)
{
	close(a->ctl[i]);
	a->ctl[i] = a->ctl[--a->nctl];
}

static void ctl_accept(struct agent *a)
{
	int fd = accept4(a->ctl_lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	int sz = CTL_SNDBUF;

	if (fd < 0)
		return;
	if (a->nctl == MAX_CTL_CONNS) {
		close(fd);
		log_warn("too many control connections", LF_U64("max", MAX_CTL_CONNS));
		return;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	a->ctl[a->nctl++] = fd;
}

/* One request per packet, one reply; the connection may carry more. */
static void ctl_readable(struct agent *a, size_t i)
{
	int fd = a->ctl[i];
	char peek;
	ssize_t len = recv(fd, &peek, 1, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
	char *p;
	struct buf out;

	if (len < 0 && errno == EAGAIN)
		return;
	if (len <= 0 || (size_t)len > CNI_CTL_MAX) {
		ctl_close(a, i);
		return;
	}
	p = xmalloc((size_t)len);
	if (recv(fd, p, (size_t)len, MSG_DONTWAIT) != len) {
		free(p);
		ctl_close(a, i);
		return;
	}
	buf_init(&out, CNI_CTL_MAX);
	handle_request(a, p, (size_t)len, &out);
	free(p);
	{
		struct pollfd pf = {.fd = fd, .events = POLLOUT};

		/* The reply is one packet; wait briefly for room rather than drop it. */
		if (poll(&pf, 1, 2000) <= 0 ||
		    send(fd, buf_rptr(&out), buf_len(&out), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_warn("cannot send a control reply", LF_ERR(strerror(errno)));
	}
	buf_fini(&out);
}

/* ---- sockets and the loop -------------------------------------------------------------------- */

static int ctl_listen(struct agent *a, struct errbuf *eb)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	mode_t old;
	int fd, rc;

	if (strlen(a->ctl_path) >= sizeof(sa.sun_path))
		return errbuf_set(eb, E_INVAL, "--control-socket %s: path too long", a->ctl_path);
	memcpy(sa.sun_path, a->ctl_path, strlen(a->ctl_path) + 1);
	if (mkdir_parent(a->ctl_path, 0755) < 0)
		return errbuf_set(eb, E_IO, "%s: cannot create its directory: %s", a->ctl_path,
				  strerror(errno));
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errbuf_set(eb, E_IO, "socket: %s", strerror(errno));
	/* A live agent answers on the socket: do not steal it. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		return errbuf_set(eb, E_EXIST, "another cni agent is serving %s", a->ctl_path);
	}
	close(fd);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return errbuf_set(eb, E_IO, "socket: %s", strerror(errno));
	unlink(a->ctl_path);
	old = umask(0177); /* root only from the first instant */
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(fd, 64) < 0 || stat(a->ctl_path, &st) < 0) {
		rc = errbuf_set(eb, E_IO, "listen on %s: %s", a->ctl_path, strerror(errno));
		close(fd);
		return rc;
	}
	chmod(a->ctl_path, 0600);
	a->ctl_ino = st.st_ino;
	a->ctl_lfd = fd;
	return 0;
}

static void unlink_if_ours(const char *path, ino_t ino)
{
	struct stat st;

	if (ino && stat(path, &st) == 0 && st.st_ino == ino)
		unlink(path);
}

static int agent_start(struct agent *a, struct errbuf *eb)
{
	sigset_t set;
	struct stat st;
	int rc;

	if ((rc = state_load(a, eb)) < 0)
		return rc;
	if ((rc = ctl_listen(a, eb)) < 0)
		return rc;
	if ((rc = inpod_server_listen(a->zds_path, eb)) < 0)
		return rc;
	a->zds_lfd = rc;
	if (stat(a->zds_path, &st) == 0)
		a->zds_ino = st.st_ino;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	signal(SIGPIPE, SIG_IGN);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ||
	    (a->sig_fd = signalfd(-1, &set, SFD_CLOEXEC)) < 0)
		return errbuf_set(eb, E_IO, "signalfd: %s", strerror(errno));
	return 0;
}

static void agent_stop(struct agent *a)
{
	while (a->nctl)
		ctl_close(a, 0);
	for (size_t i = 0; i < a->nzt; i++)
		close(a->zt[i]);
	a->nzt = 0;
	if (a->ctl_lfd >= 0)
		close(a->ctl_lfd);
	if (a->zds_lfd >= 0)
		close(a->zds_lfd);
	if (a->sig_fd >= 0)
		close(a->sig_fd);
	unlink_if_ours(a->ctl_path, a->ctl_ino);
	unlink_if_ours(a->zds_path, a->zds_ino);
	free(a->e);
}

static void agent_run(struct agent *a)
{
	for (;;) {
		struct pollfd pf[3 + MAX_ZT_CONNS + MAX_CTL_CONNS];
		int zfd[MAX_ZT_CONNS], cfd[MAX_CTL_CONNS];
		size_t n = 0, nz = a->nzt, nc = a->nctl;

		pf[n++] = (struct pollfd){.fd = a->sig_fd, .events = POLLIN};
		pf[n++] = (struct pollfd){.fd = a->zds_lfd, .events = POLLIN};
		pf[n++] = (struct pollfd){.fd = a->ctl_lfd, .events = POLLIN};
		for (size_t i = 0; i < nz; i++) {
			zfd[i] = a->zt[i];
			pf[n++] = (struct pollfd){.fd = zfd[i], .events = POLLIN};
		}
		for (size_t i = 0; i < nc; i++) {
			cfd[i] = a->ctl[i];
			pf[n++] = (struct pollfd){.fd = cfd[i], .events = POLLIN};
		}
		if (poll(pf, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("poll failed", LF_ERR(strerror(errno)));
			return;
		}
		if (pf[0].revents) {
			struct signalfd_siginfo si;

			if (read(a->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
				log_info("cni agent stopping; workloads stay enrolled",
					 LF_U64("signal", si.ssi_signo));
			return;
		}
		/* Each handler may change the sets, so fds are looked up again by value. */
		for (size_t i = 0; i < nz; i++)
			if (pf[3 + i].revents) {
				for (size_t j = 0; j < a->nzt; j++)
					if (a->zt[j] == zfd[i]) {
						zt_readable(a, zfd[i], pf[3 + i].revents);
						break;
					}
			}
		for (size_t i = 0; i < nc; i++)
			if (pf[3 + nz + i].revents) {
				for (size_t j = 0; j < a->nctl; j++)
					if (a->ctl[j] == cfd[i]) {
						ctl_readable(a, j);
						break;
					}
			}
		if (pf[1].revents & POLLIN)
			zt_accept(a);
		if (pf[2].revents & POLLIN)
			ctl_accept(a);
	}
}

int cni_agent_main(int argc, char **argv)
{
	struct agent a = {.zds_path = INPOD_DEFAULT_PATH,
			  .ctl_path = CNI_DEFAULT_CONTROL,
			  .state_path = CNI_DEFAULT_STATE,
			  .zds_lfd = -1,
			  .ctl_lfd = -1,
			  .sig_fd = -1};
	const char *level = "info";
	uint64_t timeout_ms = ZDS_TIMEOUT_MS;
	const struct flag f[] = {
		{"zds-socket", FLAG_STR, &a.zds_path, "ZDS socket ztunnel connects to", "PATH"},
		{"control-socket", FLAG_STR, &a.ctl_path,
		 "control socket for `ambient cni add|del|list|check` and the CNI plugin", "PATH"},
		{"state-file", FLAG_STR, &a.state_path, "where the enrolled set is persisted",
		 "FILE"},
		{"zds-timeout", FLAG_DURATION, &timeout_ms,
		 "how long to wait for each ztunnel ack (10s)", "DUR"},
		{"log-level", FLAG_STR, &level, "error, warn, info, debug, trace", "LEVEL"},
	};
	const char *pos[1];
	struct errbuf eb;
	bool help;
	int npos, lvl;

	if (flags_parse(f, ARRAY_LEN(f), argc, argv, pos, 0, &npos, &help, &eb) < 0) {
		fprintf(stderr, "cni agent: %s\n", eb.msg);
		return 2;
	}
	if (help) {
		flags_usage(stdout, "ambient cni agent [flags]", f, ARRAY_LEN(f));
		return 0;
	}
	if ((lvl = log_level_parse(level)) < 0) {
		fprintf(stderr, "cni agent: --log-level: unknown level '%s'\n", level);
		return 2;
	}
	log_set_level((enum log_level)lvl);
	if (timeout_ms == 0 || timeout_ms > 600000) {
		fprintf(stderr, "cni agent: --zds-timeout must be between 1ms and 10m\n");
		return 2;
	}
	a.zds_timeout_ms = (int)timeout_ms;
	if (agent_start(&a, &eb) < 0) {
		fprintf(stderr, "cni agent: %s\n", eb.msg);
		agent_stop(&a);
		return 1;
	}
	log_info("cni agent started", LF_STR("zds", a.zds_path), LF_STR("control", a.ctl_path),
		 LF_STR("state", a.state_path), LF_U64("workloads", a.n));
	agent_run(&a);
	agent_stop(&a);
	return 0;
}
