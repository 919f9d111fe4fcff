/* DER (X.690) encoder and strict decoder: the byte layer under certificates, keys and CSRs. */
#ifndef AMBIENT_DER_H
#define AMBIENT_DER_H

#include "pkg/base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Only single-octet identifiers exist here (tag numbers 0..30): X.509, PKCS#8 and PKCS#10 use
 * nothing else, and the decoder rejects the high-tag-number form with a reason. A tag is the
 * whole identifier octet: class bits, the constructed bit and the number, e.g. 0x30 = SEQUENCE,
 * 0xa3 = [3] constructed, 0x86 = [6] primitive.
 */
enum der_tag {
	DER_BOOLEAN = 0x01,
	DER_INTEGER = 0x02,
	DER_BIT_STRING = 0x03,
	DER_OCTET_STRING = 0x04,
	DER_NULL = 0x05,
	DER_OID = 0x06,
	DER_UTF8_STRING = 0x0c,
	DER_PRINTABLE_STRING = 0x13,
	DER_T61_STRING = 0x14,
	DER_IA5_STRING = 0x16,
	DER_UTC_TIME = 0x17,
	DER_GENERALIZED_TIME = 0x18,
	DER_VISIBLE_STRING = 0x1a,
	DER_UNIVERSAL_STRING = 0x1c,
	DER_BMP_STRING = 0x1e,
	DER_SEQUENCE = 0x30,
	DER_SET = 0x31,
};
#define DER_CONSTRUCTED 0x20
#define DER_CONTEXT 0x80
/* [n] IMPLICIT on a primitive type (e.g. GeneralName dNSName = DER_CTX(2)). */
#define DER_CTX(n) ((uint8_t)(DER_CONTEXT | (n)))
/* [n] EXPLICIT, or [n] IMPLICIT on a constructed type. */
#define DER_CTX_CONS(n) ((uint8_t)(DER_CONTEXT | DER_CONSTRUCTED | (n)))

/* Nesting limit of both the encoder and the decoder. */
#define DER_MAX_DEPTH 32
/* Largest accepted length (4 length octets); certificates are a few KiB. */
#define DER_MAX_LEN 0x7fffffffu
/* Longest dotted OID text and encoded OID this module produces or accepts. */
#define DER_OID_TEXT_MAX 128
#define DER_OID_MAX 64

/* Short name of a tag for messages: "SEQUENCE", "[3]", "INTEGER", "tag 0x1f". Static or in buf. */
const char *der_tag_name(uint8_t tag, char *buf, size_t cap);

/* ---- encoder ---------------------------------------------------------------------------------
 * Appends TLVs to a growing buffer. Constructed values are opened with der_begin() and closed
 * with der_end(), which patches the (minimal) length in place, moving the contents if the length
 * needs more than one octet. Errors are sticky: after the first failure every call is a no-op
 * and der_enc_result() reports it, so a builder checks once at the end:
 *
 *   struct der_enc e;
 *   der_enc_init(&e, 0);
 *   der_begin(&e, DER_SEQUENCE);
 *   der_put_int(&e, 2);
 *   der_put_oid(&e, "1.2.840.10045.4.3.2");
 *   der_end(&e);
 *   if (der_enc_result(&e, &out) < 0) ...   // out is valid until der_enc_fini
 *   der_enc_fini(&e);
 *
 * The buffer is wiped when it grows and on fini, so private keys may be encoded with it.
 */
struct der_enc {
	uint8_t *p;
	size_t len;
	size_t cap;
	size_t max;
	size_t open[DER_MAX_DEPTH]; /* offsets of the identifier octets of open values */
	int depth;
	int err; /* first error (negative), or 0 */
};

/* cap_hint: initial capacity (0 = 512). Output is limited to 16 MiB. */
void der_enc_init(struct der_enc *e, size_t cap_hint);
/* Wipes and frees the buffer; a zeroed struct is fine. */
void der_enc_fini(struct der_enc *e);
/* 0 and the encoding (borrowed from e) if every call succeeded and all values are closed;
 * -E_INVAL (bad argument: OID text, string charset, time range), -E_STATE (unbalanced
 * begin/end), -E_LIMIT (too deep or too large). */
int der_enc_result(const struct der_enc *e, struct slice *out);
/* Hands the buffer to the caller (free with free(), or secure_wipe first if secret); e is reset. */
int der_enc_take(struct der_enc *e, uint8_t **p, size_t *n);

/* Opens a value whose contents are the TLVs put until der_end(). A primitive tag is allowed for
 * wrappers whose contents are DER (an OCTET STRING extnValue, a BIT STRING key). */
void der_begin(struct der_enc *e, uint8_t tag);
void der_end(struct der_enc *e);
/* Contents already DER-encoded (a complete TLV or several), copied verbatim. */
void der_put_raw(struct der_enc *e, const void *p, size_t n);
/* A TLV with the given tag and contents (for implicit tags: der_put_tlv(e, DER_CTX(6), ...)). */
void der_put_tlv(struct der_enc *e, uint8_t tag, const void *p, size_t n);
void der_put_bool(struct der_enc *e, bool v);
void der_put_null(struct der_enc *e);
void der_put_int(struct der_enc *e, int64_t v);
/* A non-negative INTEGER from a big-endian magnitude of any length: leading zero octets are
 * dropped and one 0x00 is added when the top bit is set, so the value stays positive. */
void der_put_uint(struct der_enc *e, uint8_t tag, const void *mag, size_t n);
/* OBJECT IDENTIFIER from dotted text ("2.5.29.17") or from its encoded contents. */
void der_put_oid(struct der_enc *e, const char *dotted);
void der_put_oid_bytes(struct der_enc *e, const void *p, size_t n);
/* BIT STRING of n octets whose last `unused` bits (0..7, zero in DER) are padding. */
void der_put_bits(struct der_enc *e, const void *p, size_t n, unsigned unused);
/* BIT STRING for a NamedBitList (bit i = 1u << i), trailing zero bits removed (X.690 §11.2.2). */
void der_put_named_bits(struct der_enc *e, uint32_t bits);
void der_put_octets(struct der_enc *e, const void *p, size_t n);
/* A string type (UTF8String, PrintableString, IA5String, ...) with its charset checked. */
void der_put_string(struct der_enc *e, uint8_t tag, const char *s, size_t n);
/* RFC 5280 §4.1.2.5: UTCTime for years 1950..2049, GeneralizedTime otherwise (0000..9999). */
void der_put_time(struct der_enc *e, int64_t unix_secs);
void der_put_utc_time(struct der_enc *e, int64_t unix_secs);
void der_put_generalized_time(struct der_enc *e, int64_t unix_secs);

/* ---- decoder ---------------------------------------------------------------------------------
 * A cursor over a byte range. Every read takes `what`, the name of the field being read, and on
 * failure fills the errbuf with "<what>: <reason> at offset N" (offset of the offending TLV in
 * the whole input) and returns -E_PARSE (malformed) or -E_LIMIT (too deep). Rules enforced:
 * definite lengths only, minimal length octets, lengths inside the enclosing value, single-octet
 * tags, nesting at most DER_MAX_DEPTH, minimal INTEGERs, BOOLEAN 0x00/0xff, NULL empty, minimal
 * OID sub-identifiers, BIT STRING padding zero, string charsets, exact time formats.
 * der_dec_done() checks that nothing trails a value. Decoders never allocate.
 */
struct der_dec {
	const uint8_t *p;
	size_t n;
	size_t pos;
	size_t base; /* offset of p[0] in the outermost input */
	int depth;
	struct errbuf *eb;
};

struct der_tlv {
	uint8_t tag;
	size_t off;	  /* offset of the identifier octet in the outermost input */
	struct slice raw; /* the whole TLV */
	struct slice val; /* its contents */
};

void der_dec_init(struct der_dec *d, const void *p, size_t n, struct errbuf *eb);
bool der_dec_more(const struct der_dec *d);
/* Offset of the next unread octet in the outermost input. */
size_t der_dec_offset(const struct der_dec *d);
/* The next tag, or -1 at the end; never fails. */
int der_peek(const struct der_dec *d);
/* Error unless every octet was consumed: "<what>: N trailing bytes at offset M". */
int der_dec_done(const struct der_dec *d, const char *what);
/* Sets a decoder error at the TLV (or current position with t = NULL), for callers' checks. */
int der_dec_fail(const struct der_dec *d, const struct der_tlv *t, const char *what,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

int der_read_any(struct der_dec *d, const char *what, struct der_tlv *t);
int der_read(struct der_dec *d, uint8_t tag, const char *what, struct der_tlv *t);
/* Reads a TLV with `tag` if it is next; 0 if absent (nothing consumed), 1 if read, <0 error.
 * t may be NULL when only presence matters. */
int der_read_opt(struct der_dec *d, uint8_t tag, const char *what, struct der_tlv *t);
/* Reads a constructed TLV and opens a decoder over its contents (one level deeper). */
int der_enter(struct der_dec *d, uint8_t tag, const char *what, struct der_dec *sub,
	      struct der_tlv *t);
/* A decoder over the contents of an already-read TLV (e.g. an OCTET STRING holding DER). */
int der_open(const struct der_dec *d, const struct der_tlv *t, const char *what,
	     struct der_dec *sub);

/* Value readers; `tag` variants take an implicit tag in place of the universal one. */
int der_read_bool(struct der_dec *d, const char *what, bool *v);
int der_read_null(struct der_dec *d, const char *what);
/* INTEGER in [min, max]. */
int der_read_int(struct der_dec *d, const char *what, int64_t min, int64_t max, int64_t *v);
/* Non-negative INTEGER of any size: its magnitude without the sign octet (empty for 0).
 * Negative values are an error. max_len bounds the magnitude (0 = no bound). */
int der_read_uint(struct der_dec *d, uint8_t tag, const char *what, size_t max_len,
		  struct slice *mag);
int der_read_oid(struct der_dec *d, const char *what, struct slice *oid);
int der_read_bits(struct der_dec *d, uint8_t tag, const char *what, struct slice *bytes,
		  unsigned *unused);
/* NamedBitList BIT STRING (at most 32 bits, trailing zero bits must be absent). */
int der_read_named_bits(struct der_dec *d, const char *what, uint32_t *bits);
int der_read_octets(struct der_dec *d, uint8_t tag, const char *what, struct slice *s);
/* String of the given universal type (or implicit `tag` with `type` charset). */
int der_read_string(struct der_dec *d, uint8_t tag, uint8_t type, const char *what,
		    struct slice *s);
/* UTCTime or GeneralizedTime (whichever is next); *type_out (may be NULL) gets the tag. */
int der_read_time(struct der_dec *d, const char *what, int64_t *unix_secs, uint8_t *type_out);

/* ---- helpers on contents ------------------------------------------------------------------- */
/* Checks INTEGER contents for minimal encoding; returns 0 or a static reason. */
const char *der_int_check(const uint8_t *p, size_t n);
/* Checks OID contents; returns 0 or a static reason. */
const char *der_oid_check(const uint8_t *p, size_t n);
/* Checks string contents against the charset of `type`; returns 0 or a static reason. */
const char *der_string_check(uint8_t type, const uint8_t *p, size_t n);
/* Checks and converts time contents of a UTCTime/GeneralizedTime; returns 0 or a reason. */
const char *der_time_check(uint8_t type, const uint8_t *p, size_t n, int64_t *unix_secs);
bool der_oid_eq(struct slice oid, const uint8_t *ref, size_t n);
/* Dotted text of OID contents ("1.2.840.10045.2.1"); -E_INVAL if malformed, -E_LIMIT if the
 * text does not fit (out is always NUL-terminated when cap > 0). */
int der_oid_format(struct slice oid, char *out, size_t cap);
/* Encodes dotted text into OID contents; returns the length or -E_INVAL / -E_LIMIT. */
int der_oid_parse(const char *dotted, uint8_t *out, size_t cap);
/* Civil time helpers (proleptic Gregorian, UTC). */
int64_t der_days_from_civil(int64_t y, unsigned m, unsigned d);
void der_civil_from_unix(int64_t t, int64_t *y, unsigned *mo, unsigned *d, unsigned *h,
			 unsigned *mi, unsigned *s);
/* Formats a time as "2025-01-02T03:04:05Z" (cap >= 21; years outside 0..9999 are clamped). */
void der_time_format(int64_t unix_secs, char *out, size_t cap);

/* Walks a whole DER value: every constructed value is descended, every universal primitive
 * type is checked (BOOLEAN, INTEGER, NULL, OID, BIT STRING, strings, times); exactly one
 * top-level value. For fuzzing and for diagnosing a file. */
int der_check(const void *p, size_t n, struct errbuf *eb);

#endif
