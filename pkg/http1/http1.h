/* Sans-I/O HTTP/1.1 parser and writer (RFC 9112, RFC 9110) for servers, clients and proxies. */
#ifndef AMBIENT_HTTP1_H
#define AMBIENT_HTTP1_H

#include "pkg/base/base.h"
#include "pkg/buf/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * PARSER CONTRACT
 *
 * The parser never copies, allocates or does I/O. The caller keeps all received-but-unconsumed
 * bytes in one contiguous buffer (normally a struct buf) and on every call presents ALL of them,
 * starting at the first unconsumed byte. The buffer may move between calls (buf_reserve may
 * realloc or compact); the parser keeps offsets, not pointers. Each call returns how many bytes
 * it consumed and at most one event; the caller handles the event, then drops those bytes:
 *
 *   struct http1_parser p;
 *   http1_parser_init(&p, HTTP1_REQUEST, NULL);          // NULL = default limits
 *   ...after every read into `in`:
 *   for (;;) {
 *           struct http1_event ev;
 *           int n = http1_parser_push(&p, buf_rptr(&in), buf_len(&in), &ev);
 *           if (n < 0) {   // reply http1_parser_status(&p), log http1_parser_reason(&p), close
 *                   break;
 *           }
 *           switch (ev.type) {
 *           case HTTP1_EV_HEAD: use ev.msg (slices valid now, before buf_consume); break;
 *           case HTTP1_EV_BODY: use ev.data; break;
 *           case HTTP1_EV_END:  message done; ev.msg->keep_alive says whether more may follow;
 *                               break;
 *           case HTTP1_EV_UPGRADE: message done; remaining bytes belong to the tunnel; break;
 *           case HTTP1_EV_NONE: break;
 *           }
 *           buf_consume(&in, (size_t)n);
 *           if (ev.type == HTTP1_EV_NONE || ev.type == HTTP1_EV_UPGRADE)
 *                   break;                                // read more (or hand off)
 *   }
 *   ...at EOF: http1_parser_eof(&p, &ev) ends a close-delimited response body (HTTP1_EV_END)
 *   or reports a truncated message (-E_CLOSED).
 *
 * Event order per message: HEAD, zero or more BODY, then END (or UPGRADE). A message without a
 * body still gets its END from the next push (which may have len 0): keep calling until
 * HTTP1_EV_NONE. After END the parser is ready for the next (pipelined) message; the bytes of
 * that message are simply the remaining unconsumed ones.
 *
 * Zero-copy lifetime: every slice in an event points into the `data` given to that push call and
 * stays valid as long as the caller keeps those bytes where they are (i.e. until it consumes or
 * moves them). ev.msg itself lives inside the parser until the next message's HEAD; its numeric
 * fields (status, version, framing, content_length, keep_alive, ...) stay valid for the whole
 * message, but the parser clears its slices on the next push, so copy what you need at HEAD.
 *
 * Responses: the framing of a response depends on the request (RFC 9112 §6.3), so a client calls
 * http1_parser_set_method() with the request's method before each response is parsed (for
 * pipelined requests, after each final response's END). It defaults to GET. Interim 1xx
 * responses (except 101) produce HEAD + END and keep the method for the final response.
 *
 * Upgrades and tunnels: a CONNECT request, a request carrying "Upgrade" + "Connection: upgrade"
 * (HTTP/1.1 only, RFC 9110 §7.8), a 101 response, and a 2xx response to CONNECT end with
 * HTTP1_EV_UPGRADE instead of HTTP1_EV_END (a CONNECT request right after its HEAD; an Upgrade
 * request after its body). The parser then stays in HTTP1_STATE_UPGRADED and consumes nothing;
 * the unconsumed bytes belong to the new protocol. If the other side declined (e.g. the server
 * answered the Upgrade request with 200, or the CONNECT with 4xx), http1_parser_resume() goes
 * back to parsing HTTP.
 *
 * Errors are sticky: once push returns < 0 every later call returns the same code. The code is
 * -E_PARSE (malformed), -E_PROTO (smuggling shapes: CL+TE, conflicting Content-Length, ...),
 * -E_LIMIT (a limit), -E_UNSUPP (transfer coding or HTTP version), -E_CLOSED (eof mid-message).
 * http1_parser_reason() gives the precise reason ("duplicate Content-Length with different
 * values", "obs-fold in header 'x-foo'") and http1_parser_status() the status a server should
 * answer with: 400, 413, 414, 431, 501 or 505. For a response parser the status is the analogous
 * request status (informational; a proxy answers 502 to its own client).
 *
 * STRICTNESS (we are a proxy; RFC leniencies that enable smuggling are refused):
 *  - Lines end in CRLF only: a bare LF (RFC 9112 §2.2 MAY accept it) and a bare CR anywhere in
 *    the head, chunk lines or trailers are 400.
 *  - Exactly one SP between request-line / status-line parts; request-target must be visible
 *    ASCII without '#' and of the form its method allows (origin/absolute; authority-form
 *    "host:port" only and always for CONNECT; "*" only for OPTIONS). A CONNECT request with
 *    content (Transfer-Encoding or non-zero Content-Length) is -E_PROTO.
 *  - Only "HTTP/1.0" and "HTTP/1.1": another well-formed "HTTP/x.y" is 505 (also "HTTP/1.2",
 *    which RFC 9112 §2.3 would let us treat as 1.1), anything else 400.
 *  - Field names are tokens; whitespace before the colon, obs-fold (a line starting with SP/HTAB),
 *    and NUL / CTL (other than HTAB) / DEL in values are 400. Leading/trailing OWS is trimmed.
 *  - HTTP/1.1 requests need exactly one Host, and a Host value must consist of URI host/port
 *    characters (RFC 9112 §3.2); an empty Host is allowed.
 *  - Content-Length: 1*DIGIT (no sign, no space inside), at most 2^62-1. Repeated lines or a
 *    comma list all carrying the SAME value are accepted as that value (RFC 9110 §8.6 MAY);
 *    differing values are -E_PROTO "duplicate Content-Length with different values".
 *  - Transfer-Encoding together with Content-Length is -E_PROTO (RFC 9112 §6.3 says "ought to be
 *    handled as an error"; we always do, requests and responses). Transfer-Encoding in an
 *    HTTP/1.0 message is 400 (RFC 9112 §6.1). The only supported coding is a single "chunked"
 *    (case-insensitive, possibly split over lines, empty list elements ignored); any other coding
 *    is -E_UNSUPP/501 and "chunked" twice is 400. Responses are held to the same rule instead of
 *    falling back to read-until-close.
 *  - Chunk sizes: 1*HEXDIG, at most 15 hex digits after leading zeros; chunk extensions are
 *    validated (token[=token|quoted-string], BWS only before ';' and '=') and ignored; the chunk
 *    line must end in CRLF and chunk data must be followed by CRLF.
 *  - Any number of empty lines (CRLF) before a message are skipped (RFC 9112 §2.2).
 *  - A status line without a reason phrase ("HTTP/1.1 200\r\n") is accepted; status 100..599.
 *  - Upgrade and "Expect: 100-continue" are ignored in HTTP/1.0 requests (RFC 9110 §7.8,
 *    §10.1.1).
 *
 * LIMITS (all -E_LIMIT): request-line (or status-line) longer than max_line -> 414; header section
 * (start line included) longer than max_head or more than max_fields field lines -> 431; trailer
 * section uses the same two limits -> 431; chunk-size line longer than max_chunk_line -> 400; body
 * longer than max_body (when non-zero) -> 413, detected at HEAD for Content-Length, at each
 * chunk-size line for chunked bodies, and once max_body bytes were delivered for close-delimited
 * bodies. A limit is judged before the content of the line that breaks it, so an input fails the
 * same way however it is split across pushes.
 */

enum http1_kind {
	HTTP1_REQUEST = 0, /* parse requests (server side) */
	HTTP1_RESPONSE,	   /* parse responses (client side) */
};

/* Well-known methods; anything else that is a valid token is HTTP1_M_OTHER (see msg.method_raw). */
enum http1_method {
	HTTP1_M_OTHER = 0,
	HTTP1_M_GET,
	HTTP1_M_HEAD,
	HTTP1_M_POST,
	HTTP1_M_PUT,
	HTTP1_M_DELETE,
	HTTP1_M_CONNECT,
	HTTP1_M_OPTIONS,
	HTTP1_M_TRACE,
	HTTP1_M_PATCH,
	HTTP1__M_COUNT
};

/* How the body of a message is delimited (RFC 9112 §6.3). */
enum http1_framing {
	HTTP1_FRAMING_NONE =
		0, /* no body (also HEAD/1xx/204/304 responses, requests without CL/TE) */
	HTTP1_FRAMING_LENGTH,  /* Content-Length bytes */
	HTTP1_FRAMING_CHUNKED, /* Transfer-Encoding: chunked */
	HTTP1_FRAMING_CLOSE,   /* response body runs until the connection closes */
	HTTP1_FRAMING_TUNNEL,  /* CONNECT / 101: the bytes after the head are another protocol */
};

struct http1_limits {
	uint32_t max_line;	 /* request-/status-line incl. CRLF (default 8192) -> 414 */
	uint32_t max_head;	 /* header section incl. start line and final CRLF (65536) -> 431 */
	uint32_t max_fields;	 /* field lines in the header (or trailer) section (100) -> 431 */
	uint32_t max_chunk_line; /* chunk-size line incl. extensions and CRLF (1024) -> 400 */
	uint64_t max_body;	 /* decoded body bytes, 0 = unlimited (default 0) -> 413 */
};

/* Fills the defaults documented above. */
void http1_limits_default(struct http1_limits *l);

/* One field line: name and value (OWS-trimmed) as slices into the parsed bytes. */
struct http1_field {
	struct slice name;
	struct slice value;
};

/* A validated header or trailer section: its raw field lines (each ending in CRLF, without the
 * final empty line) and their count. Iterate with http1_fields_next(). */
struct http1_fields {
	struct slice raw;
	uint32_t count;
};

/* A parsed message head. */
struct http1_msg {
	enum http1_kind kind;
	int version;		     /* minor version: 0 (HTTP/1.0) or 1 (HTTP/1.1) */
	enum http1_method method;    /* requests; for responses: the method set for this response */
	struct slice method_raw;     /* requests: the method token as received */
	struct slice target;	     /* requests: the request-target as received */
	struct slice host;	     /* requests: the Host value (empty if absent) */
	int status;		     /* responses: 100..599 */
	struct slice reason;	     /* responses: reason phrase (may be empty) */
	struct http1_fields headers; /* all field lines, in order */
	enum http1_framing framing;  /* how the body is delimited */
	uint64_t content_length;     /* valid when has_content_length (even if framing is NONE) */
	bool has_content_length;     /* a Content-Length was present (and valid) */
	bool keep_alive;	     /* connection persists after this message (RFC 9112 §9.3) */
	bool upgrade;		     /* request asks for Upgrade, or response is 101 */
	bool expect_continue;	     /* request carries "Expect: 100-continue" */
	bool connection_options;     /* Connection names a field beyond close/keep-alive/upgrade */
};

enum http1_ev_type {
	HTTP1_EV_NONE = 0, /* need more input (some framing bytes may still have been consumed) */
	HTTP1_EV_HEAD,	   /* ev.msg is the parsed head */
	HTTP1_EV_BODY,	   /* ev.data is a piece of decoded body (chunk framing removed) */
	HTTP1_EV_END,	   /* message complete; ev.trailers holds any chunked trailer fields */
	HTTP1_EV_UPGRADE,  /* message complete; the rest of the stream is another protocol */
};

struct http1_event {
	enum http1_ev_type type;
	const struct http1_msg *msg;  /* set for every event except NONE */
	struct slice data;	      /* BODY */
	struct http1_fields trailers; /* END after a chunked body (count 0 otherwise) */
};

enum http1_state {
	HTTP1_STATE_IDLE = 0, /* between messages, nothing buffered */
	HTTP1_STATE_HEAD,     /* receiving a head */
	HTTP1_STATE_BODY,     /* head delivered, body (or END) pending */
	HTTP1_STATE_UPGRADED, /* after HTTP1_EV_UPGRADE; see http1_parser_resume() */
	HTTP1_STATE_CLOSED,   /* after a message with keep_alive false (or eof): ignores input */
	HTTP1_STATE_ERROR,    /* after an error (sticky) */
};

/* Caller-owned parser state. Fields are private: use the functions below. No fini needed. */
struct http1_parser {
	enum http1_kind kind;
	struct http1_limits lim;
	int st;		   /* internal state (http1.c) */
	int err;	   /* -E_* once failed */
	int err_status;	   /* HTTP status for the error */
	size_t scan;	   /* start of the next unvalidated line, relative to the first byte */
	size_t seek;	   /* how far the current line has been searched for LF */
	uint32_t nfields;  /* field lines seen in the current section */
	size_t fields_off; /* offset of the first field line */
	size_t last_name_off, last_name_len; /* previous field name (for obs-fold errors) */
	size_t m_off, m_len, t_off, t_len, r_off, r_len, h_off, h_len; /* start-line parts, Host */
	uint64_t remaining;  /* body bytes left in the current chunk / Content-Length body */
	uint64_t body_total; /* decoded body bytes so far */
	enum http1_method req_method; /* responses: method of the request being answered */
	uint32_t hflags;	      /* per-head flags collected while parsing fields (http1.c) */
	unsigned te_chunked;	      /* "chunked" codings seen */
	unsigned host_count;
	bool msg_upgrade; /* this message ends with HTTP1_EV_UPGRADE */
	struct http1_msg msg;
	char reason[160];
};

/* Initializes a parser for requests or responses; lim NULL = defaults (copied). */
void http1_parser_init(struct http1_parser *p, enum http1_kind kind,
		       const struct http1_limits *lim);

/* Parses from data[0..len) (all unconsumed bytes, see the contract above). Returns the number of
 * bytes the caller must consume after handling *ev, or -E_* (see http1_parser_reason()). */
int http1_parser_push(struct http1_parser *p, const uint8_t *data, size_t len,
		      struct http1_event *ev);

/* The peer closed the stream. A close-delimited body ends (HTTP1_EV_END, returns 0); between
 * messages, after UPGRADE or CLOSED returns 0 with HTTP1_EV_NONE; inside a message returns
 * -E_CLOSED ("connection closed in body, 12 bytes missing"). The parser is CLOSED afterwards. */
int http1_parser_eof(struct http1_parser *p, struct http1_event *ev);

/* Response parsers: the method of the request the next response answers (HEAD and CONNECT change
 * the framing). Call before that response's head is parsed. Resets to GET after each final
 * response. Ignored by request parsers. */
void http1_parser_set_method(struct http1_parser *p, enum http1_method m);

/* After HTTP1_EV_UPGRADE, when the upgrade/CONNECT was refused: parse HTTP again from the
 * remaining bytes. -E_STATE if not in HTTP1_STATE_UPGRADED. */
int http1_parser_resume(struct http1_parser *p);

enum http1_state http1_parser_state(const struct http1_parser *p);
/* The precise failure reason ("" if none). */
const char *http1_parser_reason(const struct http1_parser *p);
/* The status a server should answer the failure with (400/413/414/431/501/505), 0 if none. */
int http1_parser_status(const struct http1_parser *p);

/* ---- fields and tokens ------------------------------------------------------------------------
 */

/* Iterates field lines: start with *pos = 0; returns false at the end. */
bool http1_fields_next(const struct http1_fields *f, size_t *pos, struct http1_field *out);
/* The value of the first field named `name` (case-insensitive). */
bool http1_fields_get(const struct http1_fields *f, const char *name, struct slice *value);
/* Whether any field line named `name` has `token` in its comma-separated list (case-insensitive),
 * e.g. http1_fields_has_token(&m->headers, "connection", "close"). */
bool http1_fields_has_token(const struct http1_fields *f, const char *name, const char *token);
/* Whether the comma-separated list `list` contains `token` (case-insensitive, OWS around
 * elements, empty elements ignored; parameters after ';' are not stripped). */
bool http1_list_contains(struct slice list, const char *token);
/* Case-insensitive comparison of a slice with a NUL-terminated string. */
bool http1_slice_eq(struct slice s, const char *str);
/* Whether a field must not be forwarded by a proxy (RFC 9110 §7.6.1): Connection, Keep-Alive,
 * Proxy-Connection, TE, Transfer-Encoding, Upgrade, Trailer(s), and any field named in the
 * message's Connection header. `m` may be NULL (fixed list only). */
bool http1_is_hop_by_hop(const struct http1_msg *m, struct slice name);

enum http1_method http1_method_parse(struct slice s);
/* "GET", ...; NULL for HTTP1_M_OTHER. */
const char *http1_method_name(enum http1_method m);
/* The standard reason phrase for a status ("Not Found"), "Unknown" if not in the table. */
const char *http1_reason(int status);

/* ---- writer -------------------------------------------------------------------------------------
 * All writers append to a struct buf and return 0 or -E_*; on failure the buffer is left as it
 * was (no partial head). Names and values are validated: a name must be a token, a value must not
 * contain CR, LF, NUL or other CTLs except HTAB (-E_INVAL; prevents header injection). */

/* Framing argument of the head writers. */
#define HTTP1_LEN_NONE (-2)    /* write no Content-Length / Transfer-Encoding */
#define HTTP1_LEN_CHUNKED (-1) /* "Transfer-Encoding: chunked" */
/* >= 0: "Content-Length: <n>" */

/* "METHOD target HTTP/1.1\r\n" + fields + framing + "\r\n". The caller includes Host in fields. */
int http1_format_request_head(struct buf *b, const char *method, const char *target,
			      const struct http1_field *fields, size_t nfields, int64_t length);
/* "HTTP/1.1 <status> <reason>\r\n" + fields + framing + "\r\n"; reason NULL = http1_reason(). */
int http1_format_response_head(struct buf *b, int status, const char *reason,
			       const struct http1_field *fields, size_t nfields, int64_t length);
/* Lower-level pieces for building a head incrementally. */
int http1_format_request_line(struct buf *b, struct slice method, struct slice target);
int http1_format_status_line(struct buf *b, int status, const char *reason);
int http1_format_field(struct buf *b, struct slice name, struct slice value);
int http1_format_field_str(struct buf *b, const char *name, const char *value);
/* Writes the framing field for `length` as above. */
int http1_format_length(struct buf *b, int64_t length);
/* Ends the head ("\r\n"). */
int http1_format_end(struct buf *b);

/* One chunk "<hex>\r\n<data>\r\n"; n == 0 writes nothing (use http1_format_last_chunk). */
int http1_format_chunk(struct buf *b, const void *data, size_t n);
/* Only the chunk header "<hex>\r\n", for callers that append n data bytes themselves and then
 * http1_format_chunk_end(). n must be > 0. */
int http1_format_chunk_head(struct buf *b, size_t n);
int http1_format_chunk_end(struct buf *b);
/* "0\r\n" + trailer fields + "\r\n". */
int http1_format_last_chunk(struct buf *b, const struct http1_field *trailers, size_t n);

/* Shorthand for a slice over a NUL-terminated string. */
static inline struct slice http1_s(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return (struct slice){(const uint8_t *)s, n};
}

#endif
