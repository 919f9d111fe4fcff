/* Private state shared by the watch core, the file source and the URL source. */
#ifndef AMBIENT_WATCH_INT_H
#define AMBIENT_WATCH_INT_H

#include "pkg/watch/watch.h"

#include "pkg/httpc/httpc.h"

#include <pthread.h>
#include <stdatomic.h>

#define WATCH_HASH_LEN 32  /* sha256 of the document bytes */
#define WATCH_ETAG_MAX 128 /* longer ETags are ignored (not sent back) */

/* The result of one fetch. */
struct watch_doc {
	char *text; /* owned; NULL when unchanged */
	size_t len;
	bool unchanged; /* 304 Not Modified */
	char etag[WATCH_ETAG_MAX + 8];
	bool longpoll; /* the response carried WATCH_HDR_LONGPOLL: 1 */
};

struct watch {
	/* Immutable after watch_new. */
	struct watch_opts o; /* strings below are our own copies */
	enum watch_kind kind;
	char *source;	   /* description for logs and status (no secrets) */
	char *path;	   /* file source */
	char *token_file;  /* URL source, optional */
	struct httpc http; /* URL source: the client (URL, trust anchors, timeouts) */

	/* Thread control. */
	pthread_t thr;
	bool running;
	int wakefd; /* eventfd: watch_stop writes, every poll() in the thread watches it */
	atomic_bool stopping;

	/* Loader state, touched only by the loading thread (the watcher or watch_load_once). */
	uint8_t good_hash[WATCH_HASH_LEN]; /* bytes of the published snapshot */
	uint8_t last_hash[WATCH_HASH_LEN]; /* bytes of the last document parsed (good or bad) */
	bool have_good_hash;
	bool last_rejected;  /* the newest document seen (last_hash) failed validation */
	char *reject_errors; /* its error lines, joined */
	char req_etag[WATCH_ETAG_MAX + 8]; /* ETag to send back (If-None-Match / ?watch=) */
	bool longpoll;

	/* Published state: under mu. */
	pthread_mutex_t mu;
	struct config *cur;
	struct watch_status st;
};

/* watch.c: the load pipeline and status updates (called on the loading thread). */
/* Publishes text if it is new and valid. Returns 1 (published), 0 (same bytes as published) or
 * -E_PARSE with the errors in errs (also logged and recorded). */
int watch_apply(struct watch *w, const char *text, size_t len, struct errlist *errs);
/* Records an HTTP 304: the newest document is still the one seen last. Returns 0, or -E_PARSE
 * with its errors in errs when that document was rejected. */
int watch_unchanged(struct watch *w, struct errlist *errs);
/* Records a failed read/fetch: logs each line, counts it, keeps it as the last error. */
void watch_fail(struct watch *w, const struct errlist *errs);
/* Server-side facts for the status (ETag, long-poll support). */
void watch_note_http(struct watch *w, const char *etag, bool longpoll);
/* Sleeps up to ms, returning early (true) when watch_stop was called. */
bool watch_sleep(struct watch *w, uint32_t ms);
bool watch_stopping(struct watch *w);

/* watch_file.c */
int watch_file_read(struct watch *w, struct watch_doc *doc, struct errlist *errs);
void watch_file_loop(struct watch *w);

/* watch_http.c */
/* One request: a long-poll when `longpoll` (and an ETag is known), else a conditional GET. */
int watch_http_fetch(struct watch *w, bool longpoll, struct watch_doc *doc, struct errlist *errs);
void watch_http_loop(struct watch *w);

#endif
