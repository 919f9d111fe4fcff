/* Mesh-config sources (DESIGN.md §3): load a file or http(s) URL, validate, publish snapshots. */
#ifndef AMBIENT_WATCH_H
#define AMBIENT_WATCH_H

#include "pkg/base/base.h"
#include "pkg/config/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A watch owns one source and publishes the newest valid snapshot of it:
 *
 *   struct watch *w = watch_new(&(struct watch_opts){.source = "/etc/ambient/mesh.json"}, &eb);
 *   if (watch_load_once(w, &errs) < 0) ...        first load, synchronous (--check-config)
 *   watch_start(w);                               background thread: inotify / HTTP watch
 *   struct config *c = watch_current(w);          new ref or NULL; config_unref(c) when done
 *   watch_stop(w); watch_free(w);
 *
 * Every load reads the document, runs config_parse and, when it is valid and differs from the
 * published one, swaps the snapshot (version = previous + 1). An invalid document changes nothing:
 * the last good snapshot stays, every error line is logged and kept in the status, and the error
 * counter grows. Identical bytes (or an HTTP 304) never bump the version.
 *
 * Sources:
 *   /path/mesh.json      inotify on the directory (rename-over, in-place write, delete+recreate,
 *                        Kubernetes ConfigMap symlink swaps), stat-poll fallback.
 *   http://h:p/path      conditional GET (If-None-Match) every poll interval, or a long-poll
 *   https://h:p/path     `GET path?watch=<etag>&timeoutSeconds=N` when the server answers with
 *                        the header `X-Ambient-Watch: 1` (WATCH_HDR_LONGPOLL; `ambient ca` does).
 *                        https is TLS 1.2 with trust anchors from `ca_root`; DNS hosts are matched
 *                        against the certificate's DNS names, IP-literal hosts against its
 *                        iPAddress SANs (RFC 2818 §3.1), never guessed.
 * See docs/watch.md.
 */

/* Response header by which a server advertises long-poll support (value "1"). */
#define WATCH_HDR_LONGPOLL "X-Ambient-Watch"

#define WATCH_MAX_BYTES_DEFAULT (16u * 1024 * 1024)

struct watch;

/* Runs after every snapshot swap: on the watcher thread, or inside watch_load_once on the
 * caller's thread. `c` is borrowed (take config_ref to keep it). Must not call watch_stop. */
typedef void (*watch_change_fn)(struct config *c, void *arg);

enum watch_kind { WATCH_FILE = 0, WATCH_HTTP, WATCH_HTTPS };

/* Zero means "default" for every number. */
struct watch_opts {
	const char *source;	/* file path or http(s):// URL (required) */
	const char *ca_root;	/* PEM trust anchors for https (required for https) */
	const char *token_file; /* bearer token for URL sources (re-read per request; optional) */
	uint32_t poll_ms;	/* URL polling interval without long-poll (5000) */
	uint32_t file_poll_ms;	/* stat-poll interval when inotify is unavailable (1000) */
	uint32_t debounce_ms;	/* quiet time after the last file event before loading (100) */
	uint32_t longpoll_s;	/* timeoutSeconds sent on long-poll requests (60) */
	uint32_t connect_timeout_ms; /* TCP connect (+ TLS handshake) deadline (5000) */
	uint32_t io_timeout_ms;	 /* idle read/write timeout; long-polls add longpoll_s (15000) */
	uint32_t backoff_min_ms; /* first retry delay cap after an error (1000) */
	uint32_t backoff_max_ms; /* largest retry delay cap (60000) */
	size_t max_bytes;	 /* largest document accepted (WATCH_MAX_BYTES_DEFAULT) */
	bool no_inotify;	 /* force the stat-poll fallback */
	watch_change_fn on_change;
	void *arg;
};

/* A copy of the watch's state for /config_dump, metrics and `ambient ctl`. */
struct watch_status {
	enum watch_kind kind;
	char *source;		 /* description: the path, or the URL (never holds secrets) */
	char *last_error;	 /* every line of the most recent failure, or NULL if none yet */
	bool ok;		 /* the most recent attempt succeeded (changed or unchanged) */
	bool longpoll;		 /* the server advertised long-poll support */
	uint64_t version;	 /* published snapshot version, 0 = none */
	char etag[40];		 /* config_etag of the published snapshot, "" if none */
	char http_etag[136];	 /* last ETag the server sent, "" if none */
	uint64_t successes;	 /* snapshots published */
	uint64_t errors;	 /* failed loads: unreadable, unreachable or invalid */
	uint64_t unchanged;	 /* loads that found the published document again */
	int64_t last_attempt_ms; /* wall clock (Unix ms) of the last load attempt, 0 = never */
	int64_t last_success_ms; /* ... of the last attempt that succeeded */
	int64_t last_error_ms;	 /* ... of the last failure */
};

/* Checks opts (source syntax, scheme, ca_root and token_file readable) and prepares a watch.
 * Returns NULL with the reason in eb. Nothing is loaded yet. */
struct watch *watch_new(const struct watch_opts *opts, struct errbuf *eb);
/* Stops the thread if running, drops the snapshot, wipes secrets. NULL is a no-op. */
void watch_free(struct watch *w);

/* One synchronous load (a plain conditional GET for URLs; no long-poll, no retry). Returns 0 when
 * a snapshot is published (new or unchanged), else -E_* with every error line in errs (may be
 * NULL). Not allowed while the thread runs (-E_STATE). */
int watch_load_once(struct watch *w, struct errlist *errs);

/* Spawns the watcher thread (it loads at once if nothing is published yet). */
int watch_start(struct watch *w, struct errbuf *eb);
/* Wakes and joins the thread; returns promptly even mid-request. Idempotent. */
void watch_stop(struct watch *w);

/* The current snapshot with a new reference (caller unrefs), or NULL before the first good load. */
struct config *watch_current(struct watch *w);

void watch_status_get(struct watch *w, struct watch_status *st);
void watch_status_fini(struct watch_status *st);

const char *watch_kind_name(enum watch_kind k); /* "file" "http" "https" */

#endif
