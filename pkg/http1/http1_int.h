/* Private helpers shared by the HTTP/1 parser, field utilities and writer. */
#ifndef AMBIENT_HTTP1_INT_H
#define AMBIENT_HTTP1_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Character classes (RFC 9110 §5.6.2 token, §5.5 field-vchar, RFC 3986 host characters). */
enum {
	H1C_TOKEN = 1,	/* tchar */
	H1C_FIELD = 2,	/* field-vchar, SP or HTAB: allowed inside a field value */
	H1C_TARGET = 4, /* visible ASCII except '#': allowed in a request-target */
	H1C_HOST = 8,	/* reg-name / IP-literal / port characters (Host, authority-form) */
	H1C_HEX = 16,	/* HEXDIG */
	H1C_QDTEXT = 32 /* qdtext of a quoted-string (RFC 9110 §5.6.4) */
};
extern const uint8_t http1_cls[256];

static inline bool h1_is(uint8_t c, uint8_t cls)
{
	return (http1_cls[c] & cls) != 0;
}

static inline bool h1_ows(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/* ASCII lower-case. */
static inline uint8_t h1_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* Case-insensitive comparison of p[0..n) with the NUL-terminated s. */
bool h1_eq(const uint8_t *p, size_t n, const char *s);

/* Iterates comma-separated list elements of p[0..n) from *pos, OWS-trimmed; empty elements are
 * returned too (callers decide). Returns false when the list is exhausted. */
bool h1_list_next(const uint8_t *p, size_t n, size_t *pos, const uint8_t **ep, size_t *en);

#endif
