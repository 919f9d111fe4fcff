/* PEM (RFC 7468) reading and writing with strict base64 and matching BEGIN/END labels. */
#include "pkg/x509/x509_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

struct line {
	const char *p;
	size_t n;     /* without the line ending and trailing blanks */
	size_t next;  /* offset of the next line */
	unsigned num; /* 1-based */
};

static bool next_line(const char *text, size_t len, size_t pos, unsigned num, struct line *ln)
{
	size_t end = pos;

	if (pos >= len)
		return false;
	while (end < len && text[end] != '\n')
		end++;
	ln->p = text + pos;
	ln->n = end - pos;
	ln->next = end < len ? end + 1 : end;
	ln->num = num;
	while (ln->n > 0 &&
	       (ln->p[ln->n - 1] == '\r' || ln->p[ln->n - 1] == ' ' || ln->p[ln->n - 1] == '\t'))
		ln->n--;
	return true;
}

static bool has_prefix(const struct line *ln, const char *pre)
{
	size_t k = strlen(pre);

	return ln->n >= k && memcmp(ln->p, pre, k) == 0;
}

/* "-----BEGIN X-----" / "-----END X-----": returns the label range or false. */
static bool boundary(const struct line *ln, const char *kind, const char **label, size_t *n)
{
	size_t k = strlen(kind);

	if (ln->n < k + 5 || memcmp(ln->p, kind, k) != 0 ||
	    memcmp(ln->p + ln->n - 5, "-----", 5) != 0)
		return false;
	*label = ln->p + k;
	*n = ln->n - k - 5;
	return true;
}

/* RFC 7468 §3: label = [labelchar *(["-" / SP] labelchar)], labelchar = %x21-2C / %x2E-7E. */
static bool label_ok(const char *s, size_t n)
{
	if (n == 0 || n > X509_PEM_LABEL_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)s[i];
		bool labelchar = c >= 0x21 && c <= 0x7e && c != '-';
		if (labelchar)
			continue;
		if ((c == '-' || c == ' ') && i > 0 && i + 1 < n && s[i - 1] != '-' &&
		    s[i - 1] != ' ' && s[i + 1] != '-' && s[i + 1] != ' ')
			continue;
		return false;
	}
	return true;
}

/* Decodes the base64 lines between a BEGIN (line num - 1) and body_end into an exact-size
 * allocation. */
static int decode_body(const char *text, size_t len, size_t pos, unsigned num, size_t body_end,
		       const char *label, struct x509_pem *out, struct errbuf *eb)
{
	struct line ln;
	size_t total = 0, first_pad = SIZE_MAX, o = 0, pad, cap, p;
	uint32_t acc = 0;
	unsigned lastnum = num, k;
	uint8_t *der;

	/* First pass: validate the characters, count them, find the padding. */
	for (p = pos, k = num; p < body_end && next_line(text, len, p, k, &ln); p = ln.next, k++) {
		for (size_t i = 0; i < ln.n; i++, total++) {
			uint8_t c = (uint8_t)ln.p[i];
			if (c == '=') {
				if (first_pad == SIZE_MAX)
					first_pad = total;
				continue;
			}
			if (b64_value(c) < 0)
				return errbuf_set(eb, E_PARSE,
						  "PEM line %u: invalid base64 character 0x%02x in "
						  "'%s' block",
						  ln.num, c, label);
			if (first_pad != SIZE_MAX)
				return errbuf_set(eb, E_PARSE,
						  "PEM line %u: base64 data after padding in '%s' "
						  "block",
						  ln.num, label);
		}
		lastnum = ln.num;
	}
	if (total == 0)
		return errbuf_set(eb, E_PARSE, "PEM line %u: empty '%s' block", num - 1, label);
	if (total % 4)
		return errbuf_set(eb, E_PARSE,
				  "PEM line %u: base64 length %zu in '%s' block is not a multiple "
				  "of 4",
				  lastnum, total, label);
	pad = first_pad == SIZE_MAX ? 0 : total - first_pad;
	if (pad > 2)
		return errbuf_set(eb, E_PARSE, "PEM line %u: too much base64 padding in '%s' block",
				  lastnum, label);
	cap = total / 4 * 3;
	der = xmalloc(cap);
	for (p = pos, k = num; p < body_end && next_line(text, len, p, k, &ln); p = ln.next, k++) {
		for (size_t i = 0; i < ln.n; i++) {
			int v = ln.p[i] == '=' ? 0 : b64_value((uint8_t)ln.p[i]);
			acc = acc << 6 | (uint32_t)v;
			if (++o % 4 == 0) {
				der[o / 4 * 3 - 3] = (uint8_t)(acc >> 16);
				der[o / 4 * 3 - 2] = (uint8_t)(acc >> 8);
				der[o / 4 * 3 - 1] = (uint8_t)acc;
				acc = 0;
			}
		}
	}
	/* The bits dropped by padding must be zero (canonical encoding, RFC 4648 §3.5). */
	if ((pad == 1 && der[cap - 1] != 0) || (pad == 2 && (der[cap - 2] | der[cap - 1]) != 0)) {
		secure_wipe(der, cap);
		free(der);
		return errbuf_set(eb, E_PARSE, "PEM line %u: non-canonical base64 in '%s' block",
				  lastnum, label);
	}
	out->der = der;
	out->len = cap - pad;
	return 0;
}

static int parse_block(const char *text, size_t len, const struct line *begin, const char *label,
		       size_t label_n, struct x509_pem *out, size_t *resume, unsigned *resume_num,
		       struct errbuf *eb)
{
	struct line ln;
	size_t p = begin->next;
	unsigned k = begin->num + 1;

	memcpy(out->label, label, label_n);
	out->label[label_n] = '\0';
	out->line = begin->num;
	for (; next_line(text, len, p, k, &ln); p = ln.next, k++) {
		const char *el;
		size_t en;
		if (boundary(&ln, "-----END ", &el, &en)) {
			if (en != label_n || memcmp(el, label, en) != 0)
				return errbuf_set(
					eb, E_PARSE,
					"PEM line %u: END label does not match BEGIN '%s' "
					"at line %u",
					ln.num, out->label, begin->num);
			*resume = ln.next;
			*resume_num = ln.num + 1;
			return decode_body(text, len, begin->next, begin->num + 1, p, out->label,
					   out, eb);
		}
		if (has_prefix(&ln, "-----"))
			return errbuf_set(eb, E_PARSE,
					  "PEM line %u: unexpected boundary inside '%s' block "
					  "(missing END?)",
					  ln.num, out->label);
		if (memchr(ln.p, ':', ln.n))
			return errbuf_set(eb, E_UNSUPP,
					  "PEM line %u: headers in '%s' block are not supported "
					  "(encrypted PEM?)",
					  ln.num, out->label);
		if (ln.n == 0)
			return errbuf_set(eb, E_PARSE, "PEM line %u: blank line inside '%s' block",
					  ln.num, out->label);
	}
	return errbuf_set(eb, E_PARSE, "PEM: no END line for '%s' block at line %u", out->label,
			  begin->num);
}

int x509_pem_parse(const char *text, size_t len, struct x509_pem_list *l, struct errbuf *eb)
{
	struct line ln;
	size_t p = 0, cap = 0;
	unsigned k = 1;
	int r = 0;

	memset(l, 0, sizeof(*l));
	if (memchr(text, '\0', len))
		return errbuf_set(eb, E_PARSE, "PEM: NUL byte in text");
	while (r == 0 && next_line(text, len, p, k, &ln)) {
		const char *label;
		size_t label_n, next = ln.next;
		unsigned next_num = ln.num + 1;
		if (boundary(&ln, "-----BEGIN ", &label, &label_n)) {
			if (!label_ok(label, label_n)) {
				r = errbuf_set(eb, E_PARSE, "PEM line %u: invalid label", ln.num);
				break;
			}
			if (l->n == X509_PEM_MAX_BLOCKS) {
				r = errbuf_set(eb, E_LIMIT, "PEM: more than %d blocks",
					       X509_PEM_MAX_BLOCKS);
				break;
			}
			if (l->n == cap) {
				cap = cap ? cap * 2 : 4;
				l->v = xrealloc(l->v, cap * sizeof(*l->v));
			}
			memset(&l->v[l->n], 0, sizeof(l->v[l->n]));
			r = parse_block(text, len, &ln, label, label_n, &l->v[l->n], &next,
					&next_num, eb);
			if (r == 0)
				l->n++;
		} else if (has_prefix(&ln, "-----END")) {
			r = errbuf_set(eb, E_PARSE, "PEM line %u: END without BEGIN", ln.num);
		}
		p = next;
		k = next_num;
	}
	if (r == 0 && l->n == 0)
		r = errbuf_set(eb, E_NOTFOUND, "PEM: no BEGIN line found");
	if (r < 0)
		x509_pem_list_fini(l);
	return r;
}

void x509_pem_list_fini(struct x509_pem_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i].der) {
			secure_wipe(l->v[i].der, l->v[i].len);
			free(l->v[i].der);
		}
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int x509_pem_format(struct buf *out, const char *label, const uint8_t *der, size_t n)
{
	size_t ll = strlen(label), b64 = (n + 2) / 3 * 4, lines = (b64 + 63) / 64;
	size_t total = (11 + ll + 6) + b64 + lines + (9 + ll + 6), col = 0;
	uint8_t *w;
	int r;

	if (!label_ok(label, ll))
		return -E_INVAL;
	/* One reservation, so a secret never sits in a block that a later growth frees. */
	if ((r = buf_reserve(out, total + 1)) < 0) /* + the NUL snprintf writes */
		return r;
	w = buf_wptr(out);
	w += snprintf((char *)w, total + 1, "-----BEGIN %s-----\n", label);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)der[i] << 16;
		size_t k = MIN((size_t)3, n - i);
		if (k > 1)
			v |= (uint32_t)der[i + 1] << 8;
		if (k > 2)
			v |= der[i + 2];
		*w++ = (uint8_t)b64_alphabet[v >> 18 & 63];
		*w++ = (uint8_t)b64_alphabet[v >> 12 & 63];
		*w++ = (uint8_t)(k > 1 ? b64_alphabet[v >> 6 & 63] : '=');
		*w++ = (uint8_t)(k > 2 ? b64_alphabet[v & 63] : '=');
		col += 4;
		if (col == 64 || i + 3 >= n) {
			*w++ = '\n';
			col = 0;
		}
	}
	w += snprintf((char *)w, total + 1 - (size_t)(w - buf_wptr(out)), "-----END %s-----\n",
		      label);
	buf_produce(out, (size_t)(w - buf_wptr(out)));
	return 0;
}
