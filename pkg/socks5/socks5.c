/* The SOCKS5 server state machine: greeting, method selection, CONNECT request and its reply. */
#include "pkg/socks5/socks5.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SOCKS5_VER 0x05
#define SOCKS5_METHOD_NONE 0x00	  /* RFC 1928 §3: NO AUTHENTICATION REQUIRED */
#define SOCKS5_METHOD_REJECT 0xff /* RFC 1928 §3: NO ACCEPTABLE METHODS */
#define SOCKS5_CMD_CONNECT 0x01
#define SOCKS5_CMD_BIND 0x02
#define SOCKS5_CMD_UDP 0x03
#define SOCKS5_LABEL_MAX 63	/* RFC 1035 §2.3.4 */
#define SOCKS5_METHODS_LISTED 8 /* offered methods named in a reason before "..." */

void socks5_init(struct socks5 *s)
{
	memset(s, 0, sizeof(*s));
	s->st = SOCKS5_STATE_GREETING;
}

static void queue(struct socks5 *s, const uint8_t *p, size_t n)
{
	/* Capacity: at most one method reply (2) and one request reply (<= 262) are ever queued. */
	memcpy(s->out + s->out_len, p, n);
	s->out_len += n;
}

/* RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT. */
static void queue_reply(struct socks5 *s, uint8_t rep, const struct socks5_target *bound)
{
	uint8_t m[SOCKS5_MSG_MAX];
	size_t n = 0;

	m[n++] = SOCKS5_VER;
	m[n++] = rep;
	m[n++] = 0x00;
	if (!bound) {
		m[n++] = SOCKS5_ATYP_IPV4;
		memset(m + n, 0, 6);
		queue(s, m, n + 6);
		return;
	}
	m[n++] = (uint8_t)bound->atyp;
	switch (bound->atyp) {
	case SOCKS5_ATYP_IPV4:
		memcpy(m + n, bound->addr, 4);
		n += 4;
		break;
	case SOCKS5_ATYP_IPV6:
		memcpy(m + n, bound->addr, 16);
		n += 16;
		break;
	case SOCKS5_ATYP_DOMAIN:
		m[n++] = bound->name_len;
		memcpy(m + n, bound->name, bound->name_len);
		n += bound->name_len;
		break;
	}
	m[n++] = (uint8_t)(bound->port >> 8);
	m[n++] = (uint8_t)bound->port;
	queue(s, m, n);
}

static int vfail(struct socks5 *s, int code, const char *fmt, va_list ap)
{
	vsnprintf(s->reason, sizeof(s->reason), fmt, ap);
	s->st = SOCKS5_STATE_FAILED;
	s->err = -code;
	return -code;
}

/* Fails in the greeting; `reject` queues the "no acceptable methods" selection. */
__attribute__((format(printf, 4, 5))) static int fail_greeting(struct socks5 *s, int code,
							       bool reject, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (reject) {
		const uint8_t m[2] = {SOCKS5_VER, SOCKS5_METHOD_REJECT};
		queue(s, m, sizeof(m));
	}
	va_start(ap, fmt);
	r = vfail(s, code, fmt, ap);
	va_end(ap);
	return r;
}

/* Fails in the request; queues a reply with REP `rep` and a zero bound address. */
__attribute__((format(printf, 4, 5))) static int fail_request(struct socks5 *s, int code,
							      uint8_t rep, const char *fmt, ...)
{
	va_list ap;
	int r;

	queue_reply(s, rep, NULL);
	va_start(ap, fmt);
	r = vfail(s, code, fmt, ap);
	va_end(ap);
	return r;
}

/* Total length of the message being received, as far as its prefix tells. */
static size_t need(const struct socks5 *s)
{
	if (s->st == SOCKS5_STATE_GREETING)
		return s->in_len < 2 ? 2 : 2 + (size_t)s->in[1];
	if (s->in_len < 4)
		return 4;
	switch (s->in[3]) {
	case SOCKS5_ATYP_IPV4: return 4 + 4 + 2;
	case SOCKS5_ATYP_IPV6: return 4 + 16 + 2;
	default: return s->in_len < 5 ? 5 : 5 + (size_t)s->in[4] + 2; /* DOMAIN (others failed) */
	}
}

static int fail_no_method(struct socks5 *s)
{
	char list[SOCKS5_METHODS_LISTED * 5 + 8];
	size_t nm = s->in[1], k = 0;

	for (size_t i = 0; i < nm && i < SOCKS5_METHODS_LISTED; i++)
		k += (size_t)snprintf(list + k, sizeof(list) - k, "%s0x%02x", i ? " " : "",
				      s->in[2 + i]);
	if (nm > SOCKS5_METHODS_LISTED)
		snprintf(list + k, sizeof(list) - k, " ...");
	return fail_greeting(s, E_DENIED, true, "no acceptable auth method (client offered %s)",
			     list);
}

/* RFC 1928 §3: validates what has arrived of the greeting; answers it once complete. */
static int step_greeting(struct socks5 *s)
{
	static const uint8_t selected[2] = {SOCKS5_VER, SOCKS5_METHOD_NONE};

	if (s->in[0] != SOCKS5_VER)
		return fail_greeting(s, E_UNSUPP, false, "unsupported SOCKS version %u", s->in[0]);
	if (s->in_len < 2)
		return 0;
	if (s->in[1] == 0)
		return fail_greeting(s, E_PROTO, true, "no authentication methods offered");
	if (s->in_len < need(s))
		return 0;
	if (!memchr(s->in + 2, SOCKS5_METHOD_NONE, s->in[1]))
		return fail_no_method(s);
	queue(s, selected, sizeof(selected));
	s->st = SOCKS5_STATE_REQUEST;
	s->in_len = 0;
	return 0;
}

static bool host_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* Letters, digits, '-', '_' in labels of 1..63 bytes separated by '.', one trailing '.' allowed
 * (the name is 1..255 bytes by construction). */
static int check_domain(struct socks5 *s, const uint8_t *name, size_t len)
{
	size_t label = 0; /* start of the current label */

	for (size_t i = 0; i < len; i++) {
		uint8_t c = name[i];
		if (c == '.') {
			if (i == label)
				return fail_request(s, E_PROTO, SOCKS5_REP_GENERAL_FAILURE,
						    "domain name has an empty label at %zu", i);
			label = i + 1;
			continue;
		}
		if (!host_char(c))
			return fail_request(s, E_PROTO, SOCKS5_REP_GENERAL_FAILURE,
					    "domain name has invalid character at %zu", i);
		if (i - label >= SOCKS5_LABEL_MAX)
			return fail_request(s, E_PROTO, SOCKS5_REP_GENERAL_FAILURE,
					    "domain name label longer than %d at %zu",
					    SOCKS5_LABEL_MAX, i);
	}
	return 0;
}

static int check_command(struct socks5 *s, uint8_t cmd)
{
	const char *name = socks5_cmd_name(cmd);

	if (cmd == SOCKS5_CMD_CONNECT)
		return 0;
	if (name)
		return fail_request(s, E_UNSUPP, SOCKS5_REP_CMD_UNSUPPORTED,
				    "command %s (%u) not supported", name, cmd);
	return fail_request(s, E_UNSUPP, SOCKS5_REP_CMD_UNSUPPORTED, "unknown command 0x%02x", cmd);
}

/* Checks the fixed fields VER CMD RSV ATYP (and the domain length) as soon as each arrives. */
static int check_request_head(struct socks5 *s)
{
	const uint8_t *m = s->in;

	if (m[0] != SOCKS5_VER)
		return fail_request(s, E_PROTO, SOCKS5_REP_GENERAL_FAILURE,
				    "unsupported SOCKS version %u in request", m[0]);
	if (s->in_len < 2)
		return 0;
	if (check_command(s, m[1]) < 0)
		return s->err;
	if (s->in_len < 3)
		return 0;
	if (m[2] != 0x00)
		return fail_request(s, E_PROTO, SOCKS5_REP_GENERAL_FAILURE,
				    "reserved byte is 0x%02x, not 0x00", m[2]);
	if (s->in_len < 4)
		return 0;
	if (m[3] != SOCKS5_ATYP_IPV4 && m[3] != SOCKS5_ATYP_DOMAIN && m[3] != SOCKS5_ATYP_IPV6)
		return fail_request(s, E_UNSUPP, SOCKS5_REP_ATYP_UNSUPPORTED,
				    "address type %u not supported", m[3]);
	if (m[3] == SOCKS5_ATYP_DOMAIN && s->in_len >= 5 && m[4] == 0)
		return fail_request(s, E_PROTO, SOCKS5_REP_GENERAL_FAILURE, "empty domain name");
	return 0;
}

/* RFC 1928 §4: validates what has arrived of the request; reports CONNECT once complete. */
static int step_request(struct socks5 *s)
{
	struct socks5_target *t = &s->target;
	const uint8_t *m = s->in, *port;

	if (check_request_head(s) < 0)
		return s->err;
	if (s->in_len < 4 || s->in_len < need(s))
		return 0;
	memset(t, 0, sizeof(*t));
	t->atyp = (enum socks5_atyp)m[3];
	switch (t->atyp) {
	case SOCKS5_ATYP_IPV4: memcpy(t->addr, m + 4, 4); break;
	case SOCKS5_ATYP_IPV6: memcpy(t->addr, m + 4, 16); break;
	case SOCKS5_ATYP_DOMAIN:
		if (check_domain(s, m + 5, m[4]) < 0) {
			memset(t, 0, sizeof(*t));
			return s->err;
		}
		t->name_len = m[4];
		memcpy(t->name, m + 5, m[4]);
		t->name[m[4]] = '\0';
		break;
	}
	port = m + s->in_len - 2;
	t->port = (uint16_t)(port[0] << 8 | port[1]);
	if (t->port == 0) {
		memset(t, 0, sizeof(*t));
		return fail_request(s, E_PROTO, SOCKS5_REP_GENERAL_FAILURE, "destination port 0");
	}
	s->st = SOCKS5_STATE_CONNECT;
	s->ev = SOCKS5_EV_CONNECT;
	s->in_len = 0;
	return 0;
}

int socks5_push(struct socks5 *s, const uint8_t *in, size_t n)
{
	size_t off = 0;

	s->ev = SOCKS5_EV_NONE;
	if (s->st == SOCKS5_STATE_FAILED)
		return s->err;
	if (!in && n)
		return -E_INVAL;
	if (n > INT32_MAX)
		n = INT32_MAX; /* the return value is an int; the caller pushes the rest later */
	while (off < n && (s->st == SOCKS5_STATE_GREETING || s->st == SOCKS5_STATE_REQUEST)) {
		size_t take = MIN(need(s) - s->in_len, n - off);
		int r;

		memcpy(s->in + s->in_len, in + off, take);
		s->in_len += take;
		off += take;
		r = s->st == SOCKS5_STATE_GREETING ? step_greeting(s) : step_request(s);
		if (r < 0)
			return r;
	}
	return (int)off;
}

int socks5_eof(struct socks5 *s)
{
	switch (s->st) {
	case SOCKS5_STATE_FAILED: return s->err;
	case SOCKS5_STATE_GREETING:
		if (s->in_len == 0)
			return fail_greeting(s, E_CLOSED, false,
					     "connection closed before greeting");
		return fail_greeting(s, E_CLOSED, false, "truncated greeting");
	case SOCKS5_STATE_REQUEST:
		if (s->in_len == 0)
			return fail_greeting(s, E_CLOSED, false,
					     "connection closed before request");
		return fail_request(s, E_CLOSED, SOCKS5_REP_GENERAL_FAILURE, "truncated request");
	default: return 0;
	}
}

bool socks5_pull(const struct socks5 *s, const uint8_t **p, size_t *n)
{
	*n = s->out_len - s->out_off;
	*p = s->out + s->out_off;
	return *n > 0;
}

void socks5_pull_done(struct socks5 *s, size_t n)
{
	s->out_off += MIN(n, s->out_len - s->out_off);
	if (s->out_off == s->out_len)
		s->out_off = s->out_len = 0;
}

static bool bound_valid(const struct socks5_target *b)
{
	if (!b)
		return true;
	switch (b->atyp) {
	case SOCKS5_ATYP_IPV4:
	case SOCKS5_ATYP_IPV6: return true;
	case SOCKS5_ATYP_DOMAIN: return b->name_len > 0;
	}
	return false;
}

int socks5_reply(struct socks5 *s, enum socks5_rep code, const struct socks5_target *bound)
{
	if (s->st != SOCKS5_STATE_CONNECT)
		return -E_STATE;
	if ((unsigned)code > SOCKS5_REP_ATYP_UNSUPPORTED || !bound_valid(bound))
		return -E_INVAL;
	queue_reply(s, (uint8_t)code, bound);
	if (code == SOCKS5_REP_SUCCEEDED) {
		s->st = SOCKS5_STATE_DONE;
		return 0;
	}
	snprintf(s->reason, sizeof(s->reason), "replied %u (%s)", (unsigned)code,
		 socks5_rep_name((int)code));
	s->st = SOCKS5_STATE_FAILED;
	s->err = -E_CLOSED;
	return 0;
}

enum socks5_state socks5_state(const struct socks5 *s)
{
	return (enum socks5_state)s->st;
}

enum socks5_event socks5_event(const struct socks5 *s)
{
	return s->ev;
}

const struct socks5_target *socks5_target(const struct socks5 *s)
{
	return s->target.atyp ? &s->target : NULL;
}

const char *socks5_reason(const struct socks5 *s)
{
	return s->reason;
}

const char *socks5_rep_name(int code)
{
	static const char *const names[] = {
		"succeeded",
		"general SOCKS server failure",
		"connection not allowed by ruleset",
		"network unreachable",
		"host unreachable",
		"connection refused",
		"TTL expired",
		"command not supported",
		"address type not supported",
	};

	if (code < 0 || (size_t)code >= ARRAY_LEN(names))
		return "unassigned";
	return names[code];
}

const char *socks5_cmd_name(int cmd)
{
	switch (cmd) {
	case SOCKS5_CMD_CONNECT: return "CONNECT";
	case SOCKS5_CMD_BIND: return "BIND";
	case SOCKS5_CMD_UDP: return "UDP ASSOCIATE";
	default: return NULL;
	}
}
