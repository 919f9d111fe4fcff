/* Distinguished names and GeneralNames: strict decoding, printable forms, and the names we encode.
 */
#include "pkg/x509/x509_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void x509_escape(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	if (cap == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char tmp[5];
		size_t k;
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
			tmp[0] = (char)p[i];
			k = 1;
		} else {
			k = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", p[i]);
		}
		if (o + k + 4 > cap) {
			if (o + 4 <= cap)
				memcpy(out + o, "...", 3), o += 3;
			break;
		}
		memcpy(out + o, tmp, k);
		o += k;
	}
	out[o] = '\0';
}

/* X.690 §11.6: SET OF components in ascending order of their encodings, the shorter one padded
 * with zero octets for the comparison. */
static int der_order(struct slice a, struct slice b)
{
	size_t n = MAX(a.n, b.n);

	for (size_t i = 0; i < n; i++) {
		uint8_t x = i < a.n ? a.p[i] : 0, y = i < b.n ? b.p[i] : 0;
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

static bool is_string_type(uint8_t tag)
{
	return tag == DER_UTF8_STRING || tag == DER_PRINTABLE_STRING || tag == DER_IA5_STRING ||
	       tag == DER_VISIBLE_STRING || tag == DER_T61_STRING || tag == DER_BMP_STRING ||
	       tag == DER_UNIVERSAL_STRING;
}

static int read_atv(struct der_dec *rdn, struct der_tlv *atv)
{
	struct der_dec s;
	struct der_tlv v;
	struct slice type;
	const char *why;
	int r;

	if ((r = der_enter(rdn, DER_SEQUENCE, "AttributeTypeAndValue", &s, atv)) < 0 ||
	    (r = der_read_oid(&s, "AttributeTypeAndValue.type", &type)) < 0 ||
	    (r = der_read_any(&s, "AttributeTypeAndValue.value", &v)) < 0 ||
	    (r = der_dec_done(&s, "AttributeTypeAndValue")) < 0)
		return r;
	if (is_string_type(v.tag) && (why = der_string_check(v.tag, v.val.p, v.val.n)))
		return der_dec_fail(&s, &v, "AttributeTypeAndValue.value", "%s", why);
	return 0;
}

int x509_name_read(struct der_dec *d, const char *what, struct slice *raw, char **text)
{
	struct der_dec name, rdn;
	struct der_tlv t, set;
	int r;

	if ((r = der_enter(d, DER_SEQUENCE, what, &name, &t)) < 0)
		return r;
	while (der_dec_more(&name)) {
		struct slice prev = {0};
		if ((r = der_enter(&name, DER_SET, "RelativeDistinguishedName", &rdn, &set)) < 0)
			return r;
		if (!der_dec_more(&rdn))
			return der_dec_fail(&name, &set, "RelativeDistinguishedName",
					    "empty SET (SIZE (1..MAX))");
		while (der_dec_more(&rdn)) {
			struct der_tlv atv;
			if ((r = read_atv(&rdn, &atv)) < 0)
				return r;
			if (prev.n && der_order(prev, atv.raw) > 0)
				return der_dec_fail(&rdn, &atv, "RelativeDistinguishedName",
						    "SET OF not in DER order");
			prev = atv.raw;
		}
	}
	if (raw)
		*raw = t.raw;
	if (text)
		*text = x509_name_text(t.raw);
	return 0;
}

static const char *attr_name(struct slice oid)
{
	const struct {
		const uint8_t *oid;
		size_t n;
		const char *name;
	} names[] = {
		{OID_AT_CN, "CN"},
		{OID(0x55, 0x04, 0x04), "SN"},
		{OID(0x55, 0x04, 0x05), "serialNumber"},
		{OID(0x55, 0x04, 0x06), "C"},
		{OID(0x55, 0x04, 0x07), "L"},
		{OID(0x55, 0x04, 0x08), "ST"},
		{OID(0x55, 0x04, 0x09), "street"},
		{OID_AT_O, "O"},
		{OID(0x55, 0x04, 0x0b), "OU"},
		{OID(0x55, 0x04, 0x0c), "title"},
		{OID(0x55, 0x04, 0x2a), "GN"},
		{OID(0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19), "DC"},
		{OID(0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01), "UID"},
		{OID(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01), "emailAddress"},
	};

	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (oid_is(oid, names[i].oid, names[i].n))
			return names[i].name;
	return NULL;
}

static void put_hex(struct buf *b, struct slice s)
{
	buf_append_str(b, "#");
	for (size_t i = 0; i < s.n; i++)
		buf_printf(b, "%02x", s.p[i]);
}

/* RFC 4514 §2.4 escaping of a string value (non-ASCII and controls as \xx). */
static void put_value(struct buf *b, const struct der_tlv *v)
{
	bool text = v->tag == DER_UTF8_STRING || v->tag == DER_PRINTABLE_STRING ||
		    v->tag == DER_IA5_STRING || v->tag == DER_VISIBLE_STRING ||
		    v->tag == DER_T61_STRING;

	if (!text) {
		put_hex(b, v->raw);
		return;
	}
	for (size_t i = 0; i < v->val.n; i++) {
		uint8_t c = v->val.p[i];
		if (c < 0x20 || c >= 0x7f)
			buf_printf(b, "\\%02x", c);
		else if (strchr(",+\"\\<>;=", c) || (c == ' ' && (i == 0 || i + 1 == v->val.n)) ||
			 (c == '#' && i == 0))
			buf_printf(b, "\\%c", c);
		else
			buf_append(b, &c, 1);
	}
}

char *x509_name_text(struct slice name)
{
	struct der_dec d, seq, rdn, atv;
	struct buf b;
	bool first = true;
	char *out;

	buf_init(&b, 0);
	der_dec_init(&d, name.p, name.n, NULL);
	if (der_enter(&d, DER_SEQUENCE, NULL, &seq, NULL) == 0) {
		while (der_enter(&seq, DER_SET, NULL, &rdn, NULL) == 0) {
			bool first_in_rdn = true;
			while (der_enter(&rdn, DER_SEQUENCE, NULL, &atv, NULL) == 0) {
				struct slice oid;
				struct der_tlv v;
				const char *an;
				char dotted[DER_OID_TEXT_MAX];
				if (der_read_oid(&atv, NULL, &oid) < 0 ||
				    der_read_any(&atv, NULL, &v) < 0)
					break;
				buf_append_str(&b, first ? "" : first_in_rdn ? ", " : "+");
				first = first_in_rdn = false;
				an = attr_name(oid);
				if (!an) {
					der_oid_format(oid, dotted, sizeof(dotted));
					an = dotted;
				}
				buf_printf(&b, "%s=", an);
				put_value(&b, &v);
			}
		}
	}
	buf_append(&b, "", 1);
	out = xstrdup((const char *)buf_rptr(&b));
	buf_fini(&b);
	return out;
}

static void put_attr(struct der_enc *e, const uint8_t *oid, size_t oid_n, const char *v)
{
	der_begin(e, DER_SET);
	der_begin(e, DER_SEQUENCE);
	der_put_oid_bytes(e, oid, oid_n);
	der_put_string(e, DER_UTF8_STRING, v, strlen(v));
	der_end(e);
	der_end(e);
}

void x509_name_encode(struct der_enc *e, const char *org, const char *cn)
{
	der_begin(e, DER_SEQUENCE);
	if (org)
		put_attr(e, OID_AT_O, org);
	if (cn)
		put_attr(e, OID_AT_CN, cn);
	der_end(e);
}

/* ---- GeneralNames (RFC 5280 §4.2.1.6) ----------------------------------------------------------
 */

static int read_gn(struct der_dec *d, struct x509_gn *gn)
{
	struct der_dec sub, ex;
	struct der_tlv t, v;
	struct slice oid;
	const char *why;
	int r;

	if ((r = der_read_any(d, "GeneralName", &t)) < 0)
		return r;
	gn->v = t.val;
	switch (t.tag) {
	case DER_CTX_CONS(0): /* otherName: type-id OID, [0] EXPLICIT value */
		gn->type = X509_GN_OTHER;
		if ((r = der_open(d, &t, "otherName", &sub)) < 0 ||
		    (r = der_read_oid(&sub, "otherName.type-id", &oid)) < 0 ||
		    (r = der_enter(&sub, DER_CTX_CONS(0), "otherName.value", &ex, NULL)) < 0 ||
		    (r = der_read_any(&ex, "otherName.value", &v)) < 0 ||
		    (r = der_dec_done(&ex, "otherName.value")) < 0 ||
		    (r = der_dec_done(&sub, "otherName")) < 0)
			return r;
		return 0;
	case DER_CTX(1):
	case DER_CTX(2):
	case DER_CTX(6):
		gn->type = (enum x509_gn_type)(t.tag & 0x1f);
		if ((why = der_string_check(DER_IA5_STRING, t.val.p, t.val.n)))
			return der_dec_fail(d, &t, "GeneralName", "%s", why);
		/* RFC 5280 §4.2.1.6: empty rfc822Name/dNSName/URI are not allowed. */
		if (t.val.n == 0)
			return der_dec_fail(d, &t, "GeneralName", "empty %s",
					    t.tag == DER_CTX(6)	  ? "uniformResourceIdentifier"
					    : t.tag == DER_CTX(2) ? "dNSName"
								  : "rfc822Name");
		return 0;
	case DER_CTX(7):
		gn->type = X509_GN_IP;
		if (t.val.n != 4 && t.val.n != 16)
			return der_dec_fail(d, &t, "GeneralName",
					    "iPAddress must be 4 or 16 octets, got %zu", t.val.n);
		return 0;
	case DER_CTX(8):
		gn->type = X509_GN_RID;
		if ((why = der_oid_check(t.val.p, t.val.n)))
			return der_dec_fail(d, &t, "registeredID", "%s", why);
		return 0;
	case DER_CTX_CONS(3): gn->type = X509_GN_X400; return 0;
	case DER_CTX_CONS(5): gn->type = X509_GN_EDI; return 0;
	case DER_CTX_CONS(4): /* directoryName: [4] EXPLICIT Name (Name is a CHOICE) */
		gn->type = X509_GN_DIR;
		if ((r = der_open(d, &t, "directoryName", &sub)) < 0 ||
		    (r = x509_name_read(&sub, "directoryName", NULL, NULL)) < 0 ||
		    (r = der_dec_done(&sub, "directoryName")) < 0)
			return r;
		return 0;
	default: {
		char b[24];
		return der_dec_fail(d, &t, "GeneralName", "unknown GeneralName choice %s",
				    der_tag_name(t.tag, b, sizeof(b)));
	}
	}
}

int x509_general_names_read(struct der_dec *d, uint8_t tag, const char *what, struct x509_gn **out,
			    size_t *n, size_t *n_uri)
{
	struct der_dec seq;
	struct der_tlv t;
	struct x509_gn *v = NULL;
	size_t cnt = 0, cap = 0, uris = 0;
	int r;

	*out = NULL;
	*n = *n_uri = 0;
	if ((r = der_enter(d, tag, what, &seq, &t)) < 0)
		return r;
	if (!der_dec_more(&seq))
		return der_dec_fail(d, &t, what, "empty GeneralNames (SIZE (1..MAX))");
	while (der_dec_more(&seq)) {
		if (cnt == X509_MAX_NAMES) {
			free(v);
			return der_dec_fail(&seq, NULL, what, "more than %d names", X509_MAX_NAMES);
		}
		if (cnt == cap) {
			cap = cap ? cap * 2 : 4;
			v = xrealloc(v, cap * sizeof(*v));
		}
		if ((r = read_gn(&seq, &v[cnt])) < 0) {
			free(v);
			return r;
		}
		uris += v[cnt].type == X509_GN_URI;
		cnt++;
	}
	*out = v;
	*n = cnt;
	*n_uri = uris;
	return 0;
}
