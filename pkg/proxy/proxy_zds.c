/* The ZDS client (shared mode): one thread that connects to the node agent, says hello and turns
 * its Add/Keep/Del/SnapshotSent requests into proxy_pod_* calls, acking each exactly once. */
#include "pkg/proxy/proxy_int.h"
#include "pkg/inpod/inpod.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ZDS_BACKOFF_MIN_MS 10
#define ZDS_BACKOFF_MAX_MS 15000
#define ZDS_POLL_MS 200	       /* how often a blocked receive looks at the stop flag */
#define ZDS_MATCH_WAIT_MS 5000 /* Add: wait this long for the mesh config to name the workload */

struct proxy_zds {
	struct proxy *p;
	char *path;
	pthread_t th;
	atomic_bool stop;
};

static void sleep_ms(struct proxy_zds *z, uint64_t ms)
{
	uint64_t end = time_mono_ms() + ms;

	while (!atomic_load(&z->stop) && time_mono_ms() < end) {
		struct timespec ts = {0, 20 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
}

/* Applies one request; returns the ack's error text ("" on success) in err. */
static void zds_apply(struct proxy_zds *z, const struct inpod_request *r, int nsfd, char *err,
		      size_t cap)
{
	struct errbuf eb = {0};
	int rc = 0;

	switch (r->type) {
	case INPOD_ADD:
		rc = proxy_pod_add(z->p, r->uid, r->name, r->namespace_, r->service_account, nsfd,
				   ZDS_MATCH_WAIT_MS, &eb);
		break;
	case INPOD_KEEP: rc = proxy_pod_keep(z->p, r->uid, &eb); break;
	case INPOD_DEL:
		rc = proxy_pod_del(z->p, r->uid, &eb);
		if (rc == -E_NOTFOUND) /* already gone: Del is idempotent */
			rc = 0;
		break;
	case INPOD_SNAPSHOT_SENT: proxy_pods_snapshot_done(z->p); break;
	}
	snprintf(err, cap, "%s", rc < 0 ? eb.msg : "");
}

static void zds_session(struct proxy_zds *z, int fd)
{
	struct inpod_session ss = {0};

	proxy_pods_begin(z->p);
	while (!atomic_load(&z->stop)) {
		struct inpod_request r;
		struct errbuf eb = {0};
		char err[ERRBUF_SIZE];
		int nsfd = -1;
		int rc = inpod_client_recv(fd, &r, &nsfd, ZDS_POLL_MS, &eb);

		if (rc == -E_TIMEOUT)
			continue;
		if (rc == -E_CLOSED) {
			log_warn("ztunnel: the node agent closed the ZDS connection",
				 LF_STR("path", z->path));
			return;
		}
		if (rc == -E_PARSE) { /* one bad packet: refuse it and go on in lock-step */
			log_warn("ztunnel: bad ZDS message refused", LF_ERR(eb.msg));
			if (inpod_client_ack(fd, eb.msg, &eb) < 0)
				return;
			continue;
		}
		if (rc < 0) {
			log_warn("ztunnel: ZDS receive failed", LF_ERR(eb.msg));
			return;
		}
		if (inpod_session_check(&ss, &r, nsfd >= 0, &eb) < 0) {
			if (nsfd >= 0)
				close(nsfd);
			log_warn("ztunnel: ZDS protocol error",
				 LF_STR("message", inpod_type_name(r.type)), LF_ERR(eb.msg));
			snprintf(err, sizeof(err), "%s", eb.msg);
		} else {
			log_debug("ztunnel: ZDS request",
				  LF_STR("message", inpod_type_name(r.type)), LF_STR("uid", r.uid));
			zds_apply(z, &r, nsfd, err, sizeof(err));
			if (err[0])
				log_warn("ztunnel: ZDS request failed",
					 LF_STR("message", inpod_type_name(r.type)),
					 LF_STR("uid", r.uid), LF_ERR(err));
		}
		if (inpod_client_ack(fd, err, &eb) < 0) {
			log_warn("ztunnel: ZDS ack failed", LF_ERR(eb.msg));
			return;
		}
	}
}

static void *zds_main(void *arg)
{
	struct proxy_zds *z = arg;
	uint64_t backoff = ZDS_BACKOFF_MIN_MS;
	unsigned failures = 0;

	while (!atomic_load(&z->stop)) {
		struct errbuf eb = {0};
		int fd = inpod_client_connect(z->path, &eb);

		if (fd < 0) {
			/* Log the first failure and then every 10th, not every retry. */
			if (failures++ % 10 == 0)
				log_warn("ztunnel: cannot reach the node agent (ZDS); retrying",
					 LF_STR("path", z->path), LF_ERR(eb.msg),
					 LF_U64("retry_ms", backoff));
			sleep_ms(z, backoff);
			backoff =
				backoff * 2 > ZDS_BACKOFF_MAX_MS ? ZDS_BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		log_info("ztunnel: connected to the node agent (ZDS)", LF_STR("path", z->path));
		backoff = ZDS_BACKOFF_MIN_MS;
		failures = 0;
		zds_session(z, fd);
		close(fd);
	}
	return NULL;
}

int proxy_zds_start(struct proxy *p, const char *path, struct errbuf *eb)
{
	struct proxy_zds *z;

	if (!p->o.shared)
		return errbuf_set(eb, E_STATE, "ZDS needs shared mode");
	if (p->zds)
		return errbuf_set(eb, E_STATE, "ZDS client already running");
	z = xcalloc(1, sizeof(*z));
	z->p = p;
	z->path = xstrdup(path);
	atomic_init(&z->stop, false);
	if (pthread_create(&z->th, NULL, zds_main, z) != 0) {
		free(z->path);
		free(z);
		return errbuf_set(eb, E_IO, "cannot start the ZDS thread");
	}
	p->zds = z;
	return 0;
}

void proxy_zds_stop(struct proxy *p)
{
	struct proxy_zds *z = p->zds;

	if (!z)
		return;
	atomic_store(&z->stop, true);
	pthread_join(z->th, NULL);
	free(z->path);
	free(z);
	p->zds = NULL;
}
