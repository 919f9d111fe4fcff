/* File sources: bounded reads, inotify on the file's directory, and a stat-poll fallback. */
#include "pkg/watch/watch_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Why the directory and not the file: a watch on the file's inode misses every replacement
 * (rename-over by editors and config management, delete+recreate, Kubernetes ConfigMap volumes,
 * which swap a `..data` symlink). The directory sees all of them. Events are filtered by name:
 *
 *   event for our name (or queue overflow) ........ reload (bytes are compared, so spurious
 *                                                    reloads never bump the version)
 *   event for another name (`..data`, swap files) .. stat the path; reload only if the
 *                                                    (dev, ino, size, mtime, ctime) signature moved
 *
 * When the path is a symlink into another directory we watch that directory too, re-resolved
 * after every load. Bursts are debounced: a load happens `debounce_ms` after the last event (but
 * at most ~1 s after the first). A slow stat check runs every RESYNC_MS even with inotify, for
 * filesystems that do not deliver events (NFS, some bind mounts); without inotify (unavailable, or
 * opts.no_inotify) the stat check runs every file_poll_ms.
 *
 *        +----------- event (ours / other) ----------+
 *        v                                           |
 *     IDLE --event--> PENDING --quiet for debounce--> LOAD --> IDLE
 *        \--tick (stat signature moved)---------------^
 */

#define RESYNC_MS 10000
#define DEBOUNCE_CAP_MS 1000
/* No IN_MODIFY: it fires on every write to any file of the directory (a log file next to the
 * config woke the watcher for each log line); a config writer closes the file (IN_CLOSE_WRITE)
 * or renames it into place, and the periodic stat resync catches anything else. */
#define DIR_WATCH_MASK                                                                             \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |        \
	 IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

int watch_file_read(struct watch *w, struct watch_doc *doc, struct errlist *errs)
{
	size_t max = w->o.max_bytes;
	size_t cap;
	size_t len = 0;
	struct stat st;
	char *text = NULL;
	int fd;
	int r = -E_IO;

	/* O_NONBLOCK: a FIFO at the path must not hang the watcher. */
	fd = open(w->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		errlist_add(errs, "%s: %s", w->path, strerror(errno));
		return errno == ENOENT ? -E_NOTFOUND : -E_IO;
	}
	if (fstat(fd, &st) < 0) {
		errlist_add(errs, "%s: stat: %s", w->path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		errlist_add(errs, "%s: not a regular file", w->path);
		r = -E_INVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		errlist_add(errs, "%s: file is %lld bytes, over the %zu-byte limit", w->path,
			    (long long)st.st_size, max);
		r = -E_LIMIT;
		goto out;
	}
	cap = (size_t)st.st_size + 1;
	text = xmalloc(cap + 1);
	for (;;) {
		ssize_t n;

		if (len == cap) {
			/* The file grew while we read it; keep going up to the limit. */
			if (cap > max) {
				errlist_add(errs, "%s: file is over the %zu-byte limit", w->path,
					    max);
				r = -E_LIMIT;
				goto out;
			}
			cap = MIN(cap * 2, max + 1);
			text = xrealloc(text, cap + 1);
		}
		n = read(fd, text + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			errlist_add(errs, "%s: read: %s", w->path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max) {
		errlist_add(errs, "%s: file is over the %zu-byte limit", w->path, max);
		r = -E_LIMIT;
		goto out;
	}
	text[len] = '\0';
	doc->text = text;
	doc->len = len;
	doc->unchanged = false;
	text = NULL;
	r = 0;
out:
	free(text);
	close(fd);
	return r;
}

/* ---- change detection ----------------------------------------------------------------------- */

struct fsig {
	int err; /* errno of stat(), 0 when the file exists */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
	struct timespec ctim;
};

static void sig_take(const char *path, struct fsig *s)
{
	struct stat st;

	memset(s, 0, sizeof(*s));
	if (stat(path, &st) < 0) {
		s->err = errno;
		return;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->size = st.st_size;
	s->mtim = st.st_mtim;
	s->ctim = st.st_ctim;
}

static bool ts_eq(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static bool sig_eq(const struct fsig *a, const struct fsig *b)
{
	if (a->err || b->err)
		return a->err == b->err;
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       ts_eq(a->mtim, b->mtim) && ts_eq(a->ctim, b->ctim);
}

/* One watched directory and the name in it that is "ours". */
struct dwatch {
	int wd;
	char *dir;
	char *name;
};

struct fstate {
	int ifd;	     /* inotify fd, -1 when stat-polling */
	struct dwatch dw[2]; /* [0] the path's directory, [1] its symlink target's directory */
	struct fsig last;
	bool loaded;	   /* at least one load attempt was made */
	bool warned;	   /* the inotify setup failure was logged */
	bool pending;	   /* events arrived; load when the debounce deadline passes */
	bool force;	   /* one of them named our file */
	uint64_t first_ms; /* first event of the current burst */
	uint64_t due_ms;   /* debounce deadline */
	uint64_t tick_ms;  /* next stat check */
};

/* Splits path into directory and last component ("mesh.json" -> ".", "mesh.json"). */
static void split_path(const char *path, char **dir, char **name)
{
	const char *slash = strrchr(path, '/');

	if (!slash) {
		*dir = xstrdup(".");
		*name = xstrdup(path);
	} else if (slash == path) {
		*dir = xstrdup("/");
		*name = xstrdup(slash + 1);
	} else {
		*dir = xstrndup(path, (size_t)(slash - path));
		*name = xstrdup(slash + 1);
	}
}

static void dwatch_drop(struct fstate *fs, int i)
{
	struct dwatch *d = &fs->dw[i];

	/* Both entries may share one wd (same directory): remove it only when unshared. */
	if (d->wd >= 0 && fs->ifd >= 0 && d->wd != fs->dw[1 - i].wd)
		inotify_rm_watch(fs->ifd, d->wd);
	free(d->dir);
	free(d->name);
	d->dir = d->name = NULL;
	d->wd = -1;
}

static int dwatch_add(struct fstate *fs, int i, const char *path)
{
	struct dwatch *d = &fs->dw[i];

	split_path(path, &d->dir, &d->name);
	d->wd = inotify_add_watch(fs->ifd, d->dir, DIR_WATCH_MASK);
	return d->wd < 0 ? -errno : 0;
}

/* Watches the symlink target's directory when the path resolves elsewhere. */
static void retarget(struct watch *w, struct fstate *fs)
{
	char *real;
	char *rdir;
	char *rname;
	bool same;

	if (fs->ifd < 0)
		return;
	real = realpath(w->path, NULL);
	if (!real) {
		dwatch_drop(fs, 1);
		return;
	}
	if (fs->dw[1].dir) {
		split_path(real, &rdir, &rname);
		same = strcmp(rdir, fs->dw[1].dir) == 0 && strcmp(rname, fs->dw[1].name) == 0;
		free(rdir);
		free(rname);
		if (same && fs->dw[1].wd >= 0) {
			free(real);
			return;
		}
		dwatch_drop(fs, 1);
	}
	if (dwatch_add(fs, 1, real) < 0 || fs->dw[1].wd == fs->dw[0].wd)
		dwatch_drop(fs, 1);
	free(real);
}

static void inotify_close(struct fstate *fs)
{
	dwatch_drop(fs, 1);
	dwatch_drop(fs, 0);
	if (fs->ifd >= 0)
		close(fs->ifd);
	fs->ifd = -1;
}

/* Sets up inotify; on failure logs once (until it works again) and leaves fs stat-polling. */
static bool inotify_open(struct watch *w, struct fstate *fs)
{
	int r;

	fs->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fs->ifd < 0) {
		if (!fs->warned)
			log_warn("inotify unavailable, polling the mesh config file",
				 LF_STR("source", w->source), LF_ERR(strerror(errno)));
		fs->warned = true;
		return false;
	}
	r = dwatch_add(fs, 0, w->path);
	if (r < 0) {
		if (!fs->warned)
			log_warn("cannot watch the mesh config directory, polling",
				 LF_STR("dir", fs->dw[0].dir), LF_ERR(strerror(-r)));
		fs->warned = true;
		inotify_close(fs);
		return false;
	}
	fs->warned = false;
	retarget(w, fs);
	return true;
}

static void do_load(struct watch *w, struct fstate *fs, bool force)
{
	struct watch_doc doc = {0};
	struct errlist errs = {0};
	struct fsig s;

	/* Signature first: a change during the read moves it again and triggers another load. */
	sig_take(w->path, &s);
	if (!force && fs->loaded && sig_eq(&s, &fs->last))
		return;
	if (s.err && fs->loaded && s.err == fs->last.err)
		return; /* still missing: reported once already */
	fs->last = s;
	fs->loaded = true;
	if (watch_file_read(w, &doc, &errs) < 0)
		watch_fail(w, &errs);
	else
		watch_apply(w, doc.text, doc.len, NULL);
	free(doc.text);
	errlist_fini(&errs);
	retarget(w, fs);
}

static void on_events(struct fstate *fs, const char *p, size_t n)
{
	const struct inotify_event *ev;

	for (size_t off = 0; off + sizeof(*ev) <= n; off += sizeof(*ev) + ev->len) {
		ev = (const struct inotify_event *)(const void *)(p + off);
		if (ev->mask & IN_Q_OVERFLOW) {
			fs->force = true;
			continue;
		}
		for (int i = 0; i < 2; i++) {
			struct dwatch *d = &fs->dw[i];

			if (d->wd < 0 || ev->wd != d->wd)
				continue;
			if (ev->mask & IN_IGNORED)
				d->wd = -1; /* directory gone or unmounted: re-added on the next
					       tick */
			if (ev->len && strcmp(ev->name, d->name) == 0)
				fs->force = true;
		}
	}
}

static void drain_inotify(struct watch *w, struct fstate *fs)
{
	/* Aligned for struct inotify_event, big enough for many events per read. */
	char evbuf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	uint64_t now = time_mono_ms();
	bool any = false;

	for (;;) {
		ssize_t n = read(fs->ifd, evbuf, sizeof(evbuf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		on_events(fs, evbuf, (size_t)n);
		any = true;
	}
	if (!any)
		return;
	if (!fs->pending) {
		fs->pending = true;
		fs->first_ms = now;
	}
	fs->due_ms =
		MIN(now + w->o.debounce_ms, fs->first_ms + MAX(DEBOUNCE_CAP_MS, w->o.debounce_ms));
}

static uint32_t tick_interval(struct watch *w, const struct fstate *fs)
{
	return fs->ifd >= 0 && fs->dw[0].wd >= 0 ? RESYNC_MS : w->o.file_poll_ms;
}

static void on_tick(struct watch *w, struct fstate *fs)
{
	if (!w->o.no_inotify && (fs->ifd < 0 || fs->dw[0].wd < 0)) {
		/* The directory may have (re)appeared. */
		inotify_close(fs);
		if (inotify_open(w, fs)) {
			log_info("watching mesh config directory", LF_STR("dir", fs->dw[0].dir));
			do_load(w, fs, true); /* whatever happened while we were not watching */
		}
	}
	do_load(w, fs, false);
}

void watch_file_loop(struct watch *w)
{
	struct fstate fs = {.ifd = -1, .dw = {{.wd = -1}, {.wd = -1}}};
	bool inotify = !w->o.no_inotify && inotify_open(w, &fs);

	log_info("watching mesh config", LF_STR("source", w->source),
		 LF_STR("mode", inotify ? "inotify" : "stat-poll"));
	/* Always look once: the file may have changed since watch_load_once. */
	do_load(w, &fs, true);
	fs.tick_ms = time_mono_ms() + tick_interval(w, &fs);
	while (!watch_stopping(w)) {
		struct pollfd p[2] = {{.fd = w->wakefd, .events = POLLIN},
				      {.fd = fs.ifd, .events = POLLIN}};
		uint64_t now = time_mono_ms();
		uint64_t due = fs.pending ? MIN(fs.due_ms, fs.tick_ms) : fs.tick_ms;
		int r;

		r = poll(p, fs.ifd >= 0 ? 2 : 1, due > now ? (int)MIN(due - now, 60000) : 0);
		if (r < 0 && errno != EINTR) {
			log_error("watch: poll failed", LF_ERR(strerror(errno)));
			watch_sleep(w, 1000);
			continue;
		}
		if (watch_stopping(w))
			break;
		if (fs.ifd >= 0 && (p[1].revents & POLLIN))
			drain_inotify(w, &fs);
		now = time_mono_ms();
		if (fs.pending && now >= fs.due_ms) {
			do_load(w, &fs, fs.force);
			fs.pending = fs.force = false;
		}
		if (now >= fs.tick_ms) {
			on_tick(w, &fs);
			fs.tick_ms = time_mono_ms() + tick_interval(w, &fs);
		}
	}
	inotify_close(&fs);
}
