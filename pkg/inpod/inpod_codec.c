/* Hand-written protobuf codec for the ZDS messages (package istio.workload.zds), strict on input.
 *
 * Wire format (protobuf encoding guide): a message is a sequence of fields, each a varint tag
 * (field number << 3 | wire type) and a value: 0 varint, 1 fixed64, 2 varint length + bytes,
 * 5 fixed32; 3/4 are the deprecated groups. Nested messages are length-delimited fields.
 *
 * Strictness, beyond what protobuf itself demands:
 *   - truncated or over-long (> 10 bytes, > 64 bits) varints, lengths past the end: refused;
 *   - a known field with the wrong wire type, or repeated (protobuf would merge / keep the
 *     last one): refused;
 *   - strings longer than INPOD_STR_MAX, holding a NUL byte or not UTF-8 (proto3 strings must
 *     be; Go's and prost's decoders refuse them too): refused;
 *   - WorkloadRequest / WorkloadResponse are one oneof: no payload, two payloads or an unknown
 *     payload field are refused, because ztunnel could not act on them anyway;
 *   - group wire types 3/4 and the invalid 6/7 are refused everywhere.
 * Unknown fields inside the payload messages and the hello are skipped, as protobuf requires,
 * so a newer agent that adds a field stays compatible.
 */
#include "pkg/inpod/inpod.h"

#include <stdio.h>
#include <string.h>

#define PB_VARINT 0
#define PB_I64 1
#define PB_LEN 2
#define PB_SGROUP 3
#define PB_EGROUP 4
#define PB_I32 5
#define PB_FIELD_MAX 536870911u /* 2^29 - 1 */

/* Longest Ack.error accepted: whatever fits in one packet. */
#define INPOD_ERR_MAX (INPOD_PACKET_MAX - 6)

const char *inpod_type_name(enum inpod_type t)
{
	switch (t) {
	case INPOD_ADD: return "Add";
	case INPOD_DEL: return "Del";
	case INPOD_SNAPSHOT_SENT: return "SnapshotSent";
	case INPOD_KEEP: return "Keep";
	}
	return "unknown";
}

/* ---- encoding -------------------------------------------------------------------------------- */

struct wr {
	uint8_t *p;
	size_t cap;
	size_t n;
};

static size_t varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Writes past cap are counted but dropped; the caller checks n <= cap at the end. */
static void put_byte(struct wr *w, uint8_t b)
{
	if (w->n < w->cap)
		w->p[w->n] = b;
	w->n++;
}

static void put_varint(struct wr *w, uint64_t v)
{
	while (v >= 0x80) {
		put_byte(w, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	put_byte(w, (uint8_t)v);
}

static void put_len_hdr(struct wr *w, uint32_t field, size_t len)
{
	put_varint(w, (uint64_t)field << 3 | PB_LEN);
	put_varint(w, len);
}

/* Size of a string field, 0 when the string is empty (proto3 omits default values). */
static size_t str_field_len(uint32_t field, size_t len)
{
	return len ? varint_len((uint64_t)field << 3) + varint_len(len) + len : 0;
}

static void put_str(struct wr *w, uint32_t field, const char *s, size_t len)
{
	if (!len)
		return;
	put_len_hdr(w, field, len);
	for (size_t i = 0; i < len; i++)
		put_byte(w, (uint8_t)s[i]);
}

static int wr_done(const struct wr *w)
{
	if (w->n > INPOD_PACKET_MAX || w->n > w->cap)
		return -E_LIMIT;
	return (int)w->n;
}

/* Offset of the first byte of p[0..n) that is not part of well-formed UTF-8, or n. */
static size_t utf8_bad_at(const uint8_t *p, size_t n)
{
	size_t i = 0, k;

	while (i < n && (k = utf8_seq_len(p + i, n - i)))
		i += k;
	return i;
}

/* Length of a struct inpod_request string, or -1 if it is not NUL-terminated in its array or
 * not UTF-8 (proto3 strings must be: Go's and prost's decoders refuse anything else). */
static int req_strlen(const char *s)
{
	size_t n = strnlen(s, INPOD_STR_MAX + 1);

	if (n > INPOD_STR_MAX || utf8_bad_at((const uint8_t *)s, n) < n)
		return -1;
	return (int)n;
}

int inpod_hello_encode(uint8_t *out, size_t cap, uint32_t version)
{
	struct wr w = {out, cap, 0};

	if (version) {
		put_varint(&w, 1 << 3 | PB_VARINT);
		put_varint(&w, version);
	}
	return wr_done(&w);
}

int inpod_request_encode(const struct inpod_request *r, uint8_t *out, size_t cap)
{
	struct wr w = {out, cap, 0};
	int uid = req_strlen(r->uid), name = req_strlen(r->name);
	int ns = req_strlen(r->namespace_), sa = req_strlen(r->service_account);
	size_t info, body;

	switch (r->type) {
	case INPOD_SNAPSHOT_SENT: put_len_hdr(&w, INPOD_SNAPSHOT_SENT, 0); return wr_done(&w);
	case INPOD_DEL:	 /* DelWorkload{uid = 2} */
	case INPOD_KEEP: /* KeepWorkload{uid = 1} */
		if (uid < 0)
			return -E_INVAL;
		body = str_field_len(r->type == INPOD_DEL ? 2 : 1, (size_t)uid);
		put_len_hdr(&w, r->type, body);
		put_str(&w, r->type == INPOD_DEL ? 2 : 1, r->uid, (size_t)uid);
		return wr_done(&w);
	case INPOD_ADD: break;
	default: return -E_INVAL;
	}
	if (uid < 0 || name < 0 || ns < 0 || sa < 0)
		return -E_INVAL;
	/* AddWorkload{uid = 1, workload_info = 2}. An all-empty WorkloadInfo is left out, so
	 * ztunnel sees "no info" (and matches by uid) rather than an info naming nothing. */
	info = str_field_len(1, (size_t)name) + str_field_len(2, (size_t)ns) +
	       str_field_len(3, (size_t)sa);
	body = str_field_len(1, (size_t)uid) + (info ? 1 + varint_len(info) + info : 0);
	put_len_hdr(&w, INPOD_ADD, body);
	put_str(&w, 1, r->uid, (size_t)uid);
	if (info) {
		put_len_hdr(&w, 2, info);
		put_str(&w, 1, r->name, (size_t)name);
		put_str(&w, 2, r->namespace_, (size_t)ns);
		put_str(&w, 3, r->service_account, (size_t)sa);
	}
	return wr_done(&w);
}

int inpod_ack_encode(const char *error, uint8_t *out, size_t cap)
{
	struct wr w = {out, cap, 0};
	size_t n = error ? strnlen(error, INPOD_ERR_MAX + 1) : 0;

	if (n > INPOD_ERR_MAX)
		return -E_LIMIT;
	/* WorkloadResponse{ack = 1: Ack{error = 1}}; the Ack itself is always present. */
	put_len_hdr(&w, 1, str_field_len(1, n));
	if (n)
		put_len_hdr(&w, 1, n);
	/* An error text is for humans: bytes that are not UTF-8 go out as '?' rather than make
	 * the peer's protobuf decoder refuse the whole ack. */
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq_len((const uint8_t *)error + i, n - i);
		if (!k) {
			put_byte(&w, '?');
			i++;
			continue;
		}
		for (; k; k--, i++)
			put_byte(&w, (uint8_t)error[i]);
	}
	return wr_done(&w);
}

/* ---- decoding -------------------------------------------------------------------------------- */

struct fdesc {
	uint32_t num;
	const char *name;
	unsigned wt;
};

struct mdesc {
	const char *name;
	const struct fdesc *f;
	size_t nf;
	bool oneof; /* every field is a payload: exactly one, unknown ones refused */
};

struct rd {
	const uint8_t *p;
	size_t n;
	size_t off;
	uint32_t seen; /* bit i: field f[i] was present */
};

/* One decoded field: the varint value (wire type 0) or the bytes (wire type 2). */
struct field {
	const struct fdesc *d;
	uint64_t v;
	struct slice s;
};

static const char *wt_name(unsigned wt)
{
	static const char *const names[] = {"varint",	   "fixed64",	"length-delimited",
					    "start group", "end group", "fixed32"};

	return wt < ARRAY_LEN(names) ? names[wt] : "invalid";
}

/* NULL, or why the varint at r->off is malformed. */
static const char *rd_varint(struct rd *r, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned i = 0; i < 10; i++) {
		uint8_t b;
		if (r->off >= r->n)
			return "truncated varint";
		b = r->p[r->off++];
		/* The 10th byte holds bit 63 only. */
		if (i == 9 && b > 1)
			return "varint longer than 64 bits";
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return NULL;
		}
	}
	return "varint longer than 10 bytes";
}

/* Reads the value of a field with wire type wt into f (or past it). */
static const char *rd_value(struct rd *r, unsigned wt, struct field *f, char *why, size_t cap)
{
	uint64_t len;
	const char *e;
	size_t fixed = wt == PB_I64 ? 8 : 4;

	switch (wt) {
	case PB_VARINT: return rd_varint(r, &f->v);
	case PB_I64:
	case PB_I32:
		if (r->n - r->off < fixed) {
			snprintf(why, cap, "truncated %s (%zu of %zu bytes)", wt_name(wt),
				 r->n - r->off, fixed);
			return why;
		}
		r->off += fixed;
		return NULL;
	case PB_LEN:
		if ((e = rd_varint(r, &len)))
			return e;
		if (len > r->n - r->off) {
			snprintf(why, cap, "truncated: length %llu, %zu bytes left",
				 (unsigned long long)len, r->n - r->off);
			return why;
		}
		f->s.p = r->p + r->off;
		f->s.n = (size_t)len;
		r->off += (size_t)len;
		return NULL;
	}
	return "unsupported wire type";
}

/* Reads the next field of message m: 1 with *f filled (f->d NULL for a skipped unknown field),
 * 0 at the end, or -E_PARSE with "<Message>: ..." in eb. */
static int rd_field(struct rd *r, const struct mdesc *m, struct field *f, struct errbuf *eb)
{
	char why[96];
	const char *e;
	uint64_t tag;
	uint32_t num;
	unsigned wt;
	size_t at = r->off, i;

	memset(f, 0, sizeof(*f));
	if (r->off >= r->n)
		return 0;
	if ((e = rd_varint(r, &tag)))
		return errbuf_set(eb, E_PARSE, "%s: tag at offset %zu: %s", m->name, at, e);
	wt = (unsigned)(tag & 7);
	if (tag >> 3 == 0 || tag >> 3 > PB_FIELD_MAX)
		return errbuf_set(eb, E_PARSE, "%s: invalid field number %llu at offset %zu",
				  m->name, (unsigned long long)(tag >> 3), at);
	num = (uint32_t)(tag >> 3);
	for (i = 0; i < m->nf && m->f[i].num != num; i++)
		;
	if (i < m->nf)
		f->d = &m->f[i];
	if (wt == PB_SGROUP || wt == PB_EGROUP || wt > PB_I32) {
		const char *kind = wt > PB_I32 ? "invalid" : "group (deprecated, refused)";
		return errbuf_set(eb, E_PARSE, "%s: field %u: wire type %u is %s", m->name, num, wt,
				  kind);
	}
	if (!f->d && m->oneof)
		return errbuf_set(eb, E_PARSE, "%s: unknown payload field %u (%s)", m->name, num,
				  wt_name(wt));
	if (f->d && wt != f->d->wt)
		return errbuf_set(eb, E_PARSE,
				  "%s: field %u (%s): wire type %u (%s), expected %u (%s)", m->name,
				  num, f->d->name, wt, wt_name(wt), f->d->wt, wt_name(f->d->wt));
	if (f->d && (r->seen & 1u << (f->d - m->f)))
		return errbuf_set(eb, E_PARSE, "%s: field %u (%s): repeated", m->name, num,
				  f->d->name);
	if (f->d && m->oneof && r->seen) {
		for (i = 0; !(r->seen & 1u << i); i++)
			;
		return errbuf_set(eb, E_PARSE, "%s: two payloads: field %u (%s) and field %u (%s)",
				  m->name, m->f[i].num, m->f[i].name, num, f->d->name);
	}
	if ((e = rd_value(r, wt, f, why, sizeof(why)))) {
		if (f->d)
			return errbuf_set(eb, E_PARSE, "%s: field %u (%s): %s", m->name, num,
					  f->d->name, e);
		return errbuf_set(eb, E_PARSE, "%s: unknown field %u (%s): %s", m->name, num,
				  wt_name(wt), e);
	}
	if (f->d)
		r->seen |= 1u << (f->d - m->f);
	return 1;
}

/* Copies a string field into dst[max + 1]. */
static int take_str(const struct mdesc *m, const struct field *f, char *dst, size_t max,
		    struct errbuf *eb)
{
	const uint8_t *nul = memchr(f->s.p, 0, f->s.n);
	size_t bad;

	if (f->s.n > max)
		return errbuf_set(eb, E_PARSE, "%s: field %u (%s): %zu bytes, more than %zu",
				  m->name, f->d->num, f->d->name, f->s.n, max);
	if (nul)
		return errbuf_set(eb, E_PARSE, "%s: field %u (%s): NUL byte at offset %zu", m->name,
				  f->d->num, f->d->name, (size_t)(nul - f->s.p));
	if ((bad = utf8_bad_at(f->s.p, f->s.n)) < f->s.n)
		return errbuf_set(eb, E_PARSE, "%s: field %u (%s): invalid UTF-8 at offset %zu",
				  m->name, f->d->num, f->d->name, bad);
	if (f->s.n)
		memcpy(dst, f->s.p, f->s.n);
	dst[f->s.n] = '\0';
	return 0;
}

static const struct fdesc hello_f[] = {{1, "version", PB_VARINT}};
static const struct mdesc hello_m = {"ZdsHello", hello_f, ARRAY_LEN(hello_f), false};

int inpod_hello_decode(const uint8_t *p, size_t n, uint32_t *version, struct errbuf *eb)
{
	struct rd r = {p, n, 0, 0};
	struct field f;
	int rc;

	*version = 0;
	while ((rc = rd_field(&r, &hello_m, &f, eb)) > 0) {
		if (!f.d)
			continue;
		/* An enum is an int32 on the wire: negative values are 10-byte varints. */
		if (f.v > UINT32_MAX)
			return errbuf_set(eb, E_PARSE,
					  "ZdsHello: field 1 (version): %lld out of range",
					  (long long)f.v);
		*version = (uint32_t)f.v;
	}
	return rc;
}

static const struct fdesc info_f[] = {
	{1, "name", PB_LEN}, {2, "namespace", PB_LEN}, {3, "service_account", PB_LEN}};
static const struct mdesc info_m = {"WorkloadInfo", info_f, ARRAY_LEN(info_f), false};

static int decode_info(struct slice s, struct inpod_request *out, struct errbuf *eb)
{
	char *const dst[] = {out->name, out->namespace_, out->service_account};
	struct rd r = {s.p, s.n, 0, 0};
	struct field f;
	int rc;

	while ((rc = rd_field(&r, &info_m, &f, eb)) > 0)
		if (f.d && (rc = take_str(&info_m, &f, dst[f.d - info_f], INPOD_STR_MAX, eb)) < 0)
			return rc;
	return rc;
}

static const struct fdesc add_f[] = {{1, "uid", PB_LEN}, {2, "workload_info", PB_LEN}};
static const struct mdesc add_m = {"AddWorkload", add_f, ARRAY_LEN(add_f), false};
static const struct fdesc keep_f[] = {{1, "uid", PB_LEN}};
static const struct mdesc keep_m = {"KeepWorkload", keep_f, ARRAY_LEN(keep_f), false};
static const struct fdesc del_f[] = {{2, "uid", PB_LEN}};
static const struct mdesc del_m = {"DelWorkload", del_f, ARRAY_LEN(del_f), false};
static const struct mdesc snap_m = {"SnapshotSent", NULL, 0, false};

/* Decodes one payload message; its only fields are uid and, for Add, workload_info. */
static int decode_payload(const struct mdesc *m, struct slice s, struct inpod_request *out,
			  struct errbuf *eb)
{
	struct rd r = {s.p, s.n, 0, 0};
	struct field f;
	int rc;

	while ((rc = rd_field(&r, m, &f, eb)) > 0) {
		if (!f.d)
			continue;
		if (m != &add_m || f.d->num == 1)
			rc = take_str(m, &f, out->uid, INPOD_STR_MAX, eb);
		else if ((rc = decode_info(f.s, out, eb)) < 0)
			errbuf_prefix(eb, "AddWorkload: field 2 (workload_info)");
		if (rc < 0)
			return rc;
	}
	return rc;
}

static const struct fdesc req_f[] = {{INPOD_ADD, "add", PB_LEN},
				     {INPOD_DEL, "del", PB_LEN},
				     {INPOD_SNAPSHOT_SENT, "snapshot_sent", PB_LEN},
				     {INPOD_KEEP, "keep", PB_LEN}};
static const struct mdesc req_m = {"WorkloadRequest", req_f, ARRAY_LEN(req_f), true};

int inpod_request_decode(const uint8_t *p, size_t n, struct inpod_request *out, struct errbuf *eb)
{
	static const struct mdesc *const payload_m[] = {&add_m, &del_m, &snap_m, &keep_m};
	struct rd r = {p, n, 0, 0};
	struct field f;
	int rc;

	memset(out, 0, sizeof(*out));
	while ((rc = rd_field(&r, &req_m, &f, eb)) > 0) {
		const struct mdesc *m = payload_m[f.d - req_f];
		out->type = (enum inpod_type)f.d->num;
		if ((rc = decode_payload(m, f.s, out, eb)) < 0) {
			errbuf_prefix(eb, "WorkloadRequest: field %u (%s)", f.d->num, f.d->name);
			return rc;
		}
	}
	if (rc < 0)
		return rc;
	if (!r.seen)
		return errbuf_set(eb, E_PARSE, "WorkloadRequest: no payload");
	return 0;
}

static const struct fdesc resp_f[] = {{1, "ack", PB_LEN}};
static const struct mdesc resp_m = {"WorkloadResponse", resp_f, ARRAY_LEN(resp_f), true};
static const struct fdesc ack_f[] = {{1, "error", PB_LEN}};
static const struct mdesc ack_m = {"Ack", ack_f, ARRAY_LEN(ack_f), false};

static int decode_ack(struct slice s, char *err, size_t cap, struct errbuf *eb)
{
	char text[INPOD_ERR_MAX + 1];
	struct rd r = {s.p, s.n, 0, 0};
	struct field f;
	int rc;

	while ((rc = rd_field(&r, &ack_m, &f, eb)) > 0) {
		if (!f.d)
			continue;
		if ((rc = take_str(&ack_m, &f, text, INPOD_ERR_MAX, eb)) < 0)
			return rc;
		if (cap)
			snprintf(err, cap, "%s", text);
	}
	return rc;
}

int inpod_ack_decode(const uint8_t *p, size_t n, char *err, size_t cap, struct errbuf *eb)
{
	struct rd r = {p, n, 0, 0};
	struct field f;
	int rc;

	if (cap)
		err[0] = '\0';
	while ((rc = rd_field(&r, &resp_m, &f, eb)) > 0) {
		if ((rc = decode_ack(f.s, err, cap, eb)) < 0) {
			errbuf_prefix(eb, "WorkloadResponse: field 1 (ack)");
			break;
		}
	}
	if (rc < 0 && cap)
		err[0] = '\0';
	if (rc < 0)
		return rc;
	if (!r.seen)
		return errbuf_set(eb, E_PARSE, "WorkloadResponse: no payload");
	return 0;
}
