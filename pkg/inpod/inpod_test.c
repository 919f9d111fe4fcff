/* Tests for the ZDS codec (literal bytes, round trips, every malformed class), the session rules
 * and the SEQPACKET transport (fd passing, truncation, close, timeout, nack, hello). */
#include "pkg/inpod/inpod.h"
#include "test/unit.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------------------------------- */

#define B(...) ((const uint8_t[]){__VA_ARGS__})
#define BLEN(...) sizeof((const uint8_t[]){__VA_ARGS__})
/* Decodes a literal request; expects failure with exactly msg. */
#define CHECK_BAD_REQ(msg, ...) check_bad_req(__LINE__, msg, B(__VA_ARGS__), BLEN(__VA_ARGS__))

static void check_bad_req(int line, const char *msg, const uint8_t *p, size_t n)
{
	struct inpod_request r;
	struct errbuf eb = {0};
	int rc = inpod_request_decode(p, n, &r, &eb);

	if (rc != -E_PARSE)
		unit_fail(__FILE__, line, "decode: rc %d, want -E_PARSE", rc);
	if (strcmp(eb.msg, msg) != 0)
		unit_fail(__FILE__, line, "decode: \"%s\" != \"%s\"", eb.msg, msg);
}

static struct inpod_request req(enum inpod_type t, const char *uid, const char *name,
				const char *ns, const char *sa)
{
	struct inpod_request r;

	memset(&r, 0, sizeof(r));
	r.type = t;
	snprintf(r.uid, sizeof(r.uid), "%s", uid);
	snprintf(r.name, sizeof(r.name), "%s", name);
	snprintf(r.namespace_, sizeof(r.namespace_), "%s", ns);
	snprintf(r.service_account, sizeof(r.service_account), "%s", sa);
	return r;
}

static bool req_eq(const struct inpod_request *a, const struct inpod_request *b)
{
	return a->type == b->type && !strcmp(a->uid, b->uid) && !strcmp(a->name, b->name) &&
	       !strcmp(a->namespace_, b->namespace_) &&
	       !strcmp(a->service_account, b->service_account);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	if (d)
		closedir(d);
	return n - 1; /* the DIR's own fd */
}

/* Sends a raw packet with nfds copies of fd (fd < 0: none). */
static ssize_t send_raw(int s, const void *p, size_t n, int fd, int nfds)
{
	char ctl[CMSG_SPACE(sizeof(int) * 64)];
	struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

	memset(ctl, 0, sizeof(ctl));
	if (fd >= 0 && nfds > 0) {
		struct cmsghdr *c;
		msg.msg_control = ctl;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		for (int i = 0; i < nfds; i++)
			memcpy(CMSG_DATA(c) + (size_t)i * sizeof(int), &fd, sizeof(int));
	}
	return sendmsg(s, &msg, MSG_NOSIGNAL);
}

/* The doc example (docs/zds.md): Add uid "u1", pod "p" in "ns", service account "sa". */
static const uint8_t add_example[] = {0x0a, 0x11, 0x0a, 0x02, 'u', '1',	 0x12, 0x0b, 0x0a, 0x01,
				      'p',  0x12, 0x02, 'n',  's', 0x1a, 0x02, 's',  'a'};

/* ---- codec: literal bytes -------------------------------------------------------------------- */

TEST(test_hello_bytes)
{
	uint8_t b[INPOD_PACKET_MAX];
	uint32_t v = 99;
	struct errbuf eb = {0};

	CHECK_INT(inpod_hello_encode(b, sizeof(b), INPOD_VERSION_V1), 2);
	CHECK_MEM(b, B(0x08, 0x01), 2);
	CHECK_INT(inpod_hello_encode(b, sizeof(b), 300), 3);
	CHECK_MEM(b, B(0x08, 0xac, 0x02), 3);
	CHECK_INT(inpod_hello_encode(b, sizeof(b), 0), 0); /* proto3: default omitted */
	CHECK_INT(inpod_hello_encode(b, 1, 1), -E_LIMIT);
	CHECK_INT(inpod_hello_decode(B(0x08, 0x01), 2, &v, &eb), 0);
	CHECK_INT(v, 1);
	CHECK_INT(inpod_hello_decode(b, 0, &v, &eb), 0);
	CHECK_INT(v, 0);
	/* Unknown fields of every wire type are skipped. */
	CHECK_INT(inpod_hello_decode(B(0x10, 0x05, 0x08, 0x02, 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x22,
				       0x01, 'x', 0x2d, 1, 2, 3, 4),
				     21, &v, &eb),
		  0);
	CHECK_INT(v, 2);
}

TEST(test_hello_bad)
{
	uint32_t v;
	struct errbuf eb = {0};

	CHECK_INT(inpod_hello_decode(B(0x0a, 0x00), 2, &v, &eb), -E_PARSE);
	CHECK_STR(eb.msg, "ZdsHello: field 1 (version): wire type 2 (length-delimited), expected 0 "
			  "(varint)");
	CHECK_INT(inpod_hello_decode(B(0x08, 0x80), 2, &v, &eb), -E_PARSE);
	CHECK_STR(eb.msg, "ZdsHello: field 1 (version): truncated varint");
	CHECK_INT(inpod_hello_decode(B(0x08, 0x01, 0x08, 0x01), 4, &v, &eb), -E_PARSE);
	CHECK_STR(eb.msg, "ZdsHello: field 1 (version): repeated");
	/* Enum -1 (int32 sign-extended to 10 bytes). */
	CHECK_INT(inpod_hello_decode(
			  B(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), 11,
			  &v, &eb),
		  -E_PARSE);
	CHECK_STR(eb.msg, "ZdsHello: field 1 (version): -1 out of range");
	CHECK_INT(inpod_hello_decode(
			  B(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02), 11,
			  &v, &eb),
		  -E_PARSE);
	CHECK_STR(eb.msg, "ZdsHello: field 1 (version): varint longer than 64 bits");
	CHECK_INT(inpod_hello_decode(B(0x13, 0x14), 2, &v, &eb), -E_PARSE);
	CHECK_STR(eb.msg, "ZdsHello: field 2: wire type 3 is group (deprecated, refused)");
}

TEST(test_request_bytes)
{
	uint8_t b[INPOD_PACKET_MAX];
	struct inpod_request r;

	r = req(INPOD_ADD, "u1", "p", "ns", "sa");
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), sizeof(add_example));
	CHECK_MEM(b, add_example, sizeof(add_example));
	/* No WorkloadInfo at all when every field of it is empty. */
	r = req(INPOD_ADD, "u1", "", "", "");
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), 6);
	CHECK_MEM(b, B(0x0a, 0x04, 0x0a, 0x02, 'u', '1'), 6);
	r = req(INPOD_ADD, "u1", "", "", "sa");
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), 12);
	CHECK_MEM(b, B(0x0a, 0x0a, 0x0a, 0x02, 'u', '1', 0x12, 0x04, 0x1a, 0x02, 's', 'a'), 12);
	/* DelWorkload's uid is field 2. */
	r = req(INPOD_DEL, "u1", "ignored", "", "");
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), 6);
	CHECK_MEM(b, B(0x12, 0x04, 0x12, 0x02, 'u', '1'), 6);
	r = req(INPOD_KEEP, "u1", "", "", "");
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), 6);
	CHECK_MEM(b, B(0x2a, 0x04, 0x0a, 0x02, 'u', '1'), 6);
	r = req(INPOD_SNAPSHOT_SENT, "ignored", "", "", "");
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), 2);
	CHECK_MEM(b, B(0x1a, 0x00), 2);
	/* Empty payload messages are still sent. */
	r = req(INPOD_KEEP, "", "", "", "");
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), 2);
	CHECK_MEM(b, B(0x2a, 0x00), 2);
}

TEST(test_request_long_lengths)
{
	uint8_t b[INPOD_PACKET_MAX];
	struct inpod_request r, d;
	struct errbuf eb = {0};
	char s[INPOD_STR_MAX + 1];

	memset(s, 'a', INPOD_STR_MAX);
	s[INPOD_STR_MAX] = '\0';
	r = req(INPOD_KEEP, s, "", "", "");
	/* 2a fe 01 | 0a fd 01 <253>: two-byte length varints. */
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), 3 + 3 + INPOD_STR_MAX);
	CHECK_MEM(b, B(0x2a, 0x80, 0x02, 0x0a, 0xfd, 0x01), 6);
	CHECK_INT(inpod_request_decode(b, 6 + INPOD_STR_MAX, &d, &eb), 0);
	CHECK(req_eq(&r, &d));
	/* Four 253-byte strings need 1029 bytes: more than ztunnel reads. */
	r = req(INPOD_ADD, s, s, s, s);
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), -E_LIMIT);
	r = req(INPOD_ADD, s, s, s, "");
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), 3 + 3 + 253 + 1 + 2 + 2 * (3 + 253));
	CHECK_INT(inpod_request_decode(b, 3 + 3 + 253 + 1 + 2 + 2 * (3 + 253), &d, &eb), 0);
	CHECK(req_eq(&r, &d));
}

TEST(test_request_encode_errors)
{
	uint8_t b[INPOD_PACKET_MAX];
	struct inpod_request r = req(INPOD_ADD, "u1", "p", "ns", "sa");

	CHECK_INT(inpod_request_encode(&r, b, sizeof(add_example) - 1), -E_LIMIT);
	CHECK_INT(inpod_request_encode(&r, b, 0), -E_LIMIT);
	memset(r.name, 'x', sizeof(r.name)); /* not NUL-terminated */
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), -E_INVAL);
	r = req(INPOD_DEL, "u1", "", "", "");
	memset(r.uid, 'x', sizeof(r.uid));
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), -E_INVAL);
	r = req((enum inpod_type)4, "u1", "", "", "");
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), -E_INVAL);
	/* proto3 strings are UTF-8: Istio's agent and ztunnel refuse anything else. */
	r = req(INPOD_ADD, "u1", "\xff\xfe", "", "");
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), -E_INVAL);
	r = req(INPOD_KEEP, "u\xc3", "", "", "");
	CHECK_INT(inpod_request_encode(&r, b, sizeof(b)), -E_INVAL);
	CHECK_STR(inpod_type_name(INPOD_ADD), "Add");
	CHECK_STR(inpod_type_name(INPOD_DEL), "Del");
	CHECK_STR(inpod_type_name(INPOD_SNAPSHOT_SENT), "SnapshotSent");
	CHECK_STR(inpod_type_name(INPOD_KEEP), "Keep");
	CHECK_STR(inpod_type_name((enum inpod_type)4), "unknown");
}

TEST(test_request_round_trip)
{
	const struct inpod_request cases[] = {
		req(INPOD_ADD, "0b0c6ef8-0dcb-4c2b-a7f6-4f3c1d7e1a2b", "web-5d8f7-abcde", "default",
		    "web"),
		req(INPOD_ADD, "u", "", "kube-system", ""),
		req(INPOD_ADD, "u", "n\xc3\xa9", "", ""), /* UTF-8 passes through */
		req(INPOD_DEL, "0b0c6ef8", "", "", ""),
		req(INPOD_KEEP, "k", "", "", ""),
		req(INPOD_SNAPSHOT_SENT, "", "", "", ""),
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		uint8_t b[INPOD_PACKET_MAX];
		struct inpod_request d;
		struct errbuf eb = {0};
		int n = inpod_request_encode(&cases[i], b, sizeof(b));
		CHECK(n > 0);
		CHECK_INT(inpod_request_decode(b, (size_t)n, &d, &eb), 0);
		CHECK(req_eq(&cases[i], &d));
	}
}

TEST(test_request_unknown_fields_skipped)
{
	struct inpod_request r;
	struct errbuf eb = {0};

	/* AddWorkload with field 4 (reserved trust_domain), a varint field 9, a fixed64 field 10,
	 * a fixed32 field 11, and WorkloadInfo with an unknown field 7 before name. */
	static const uint8_t add[] = {0x0a, 0x23, 0x22, 0x02, 'c',  'l',  0x0a, 0x02, 'u',  '1',
				      0x48, 0x96, 0x01, 0x51, 1,    2,	  3,	4,    5,    6,
				      7,    8,	  0x5d, 1,    2,    3,	  4,	0x12, 0x08, 0x3a,
				      0x03, 'z',  'z',	'z',  0x0a, 0x01, 'p'};

	CHECK_INT(inpod_request_decode(add, sizeof(add), &r, &eb), 0);
	CHECK_INT(r.type, INPOD_ADD);
	CHECK_STR(r.uid, "u1");
	CHECK_STR(r.name, "p");
	CHECK_STR(r.namespace_, "");
	/* DelWorkload field 1 is unknown (uid is 2): skipped, uid stays empty. */
	CHECK_INT(inpod_request_decode(B(0x12, 0x04, 0x0a, 0x02, 'u', '1'), 6, &r, &eb), 0);
	CHECK_INT(r.type, INPOD_DEL);
	CHECK_STR(r.uid, "");
	/* SnapshotSent with a field from the future. */
	CHECK_INT(inpod_request_decode(B(0x1a, 0x02, 0x08, 0x01), 4, &r, &eb), 0);
	CHECK_INT(r.type, INPOD_SNAPSHOT_SENT);
}

TEST(test_request_malformed)
{
	check_bad_req(__LINE__, "WorkloadRequest: no payload", NULL, 0);
	/* Truncation at each level. */
	CHECK_BAD_REQ("WorkloadRequest: tag at offset 0: truncated varint", 0x8a);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): truncated varint", 0x0a);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): truncated varint", 0x0a, 0x80);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): truncated: length 5, 1 bytes left", 0x0a,
		      0x05, 0x0a);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): AddWorkload: field 1 (uid): truncated: "
		      "length 3, 1 bytes left",
		      0x0a, 0x03, 0x0a, 0x03, 'u');
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): AddWorkload: field 2 (workload_info): "
		      "WorkloadInfo: field 2 (namespace): truncated: length 9, 1 bytes left",
		      0x0a, 0x05, 0x12, 0x03, 0x12, 0x09, 'n');
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): AddWorkload: unknown field 9 (fixed64): "
		      "truncated fixed64 (3 of 8 bytes)",
		      0x0a, 0x04, 0x49, 1, 2, 3);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): AddWorkload: unknown field 9 (fixed32): "
		      "truncated fixed32 (1 of 4 bytes)",
		      0x0a, 0x02, 0x4d, 1);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): AddWorkload: unknown field 9 (varint): "
		      "truncated varint",
		      0x0a, 0x02, 0x48, 0xff);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): varint longer than 64 bits", 0x0a, 0xff,
		      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): varint longer than 64 bits", 0x0a, 0x80,
		      0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): truncated: length 18446744073709551615, 0 "
		      "bytes left",
		      0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
	/* Wire types. */
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): wire type 0 (varint), expected 2 "
		      "(length-delimited)",
		      0x08, 0x01);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): AddWorkload: field 1 (uid): wire type 5 "
		      "(fixed32), expected 2 (length-delimited)",
		      0x0a, 0x05, 0x0d, 1, 2, 3, 4);
	CHECK_BAD_REQ("WorkloadRequest: field 1: wire type 3 is group (deprecated, refused)", 0x0b,
		      0x0c);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): AddWorkload: field 2 (workload_info): "
		      "WorkloadInfo: field 9: wire type 4 is group (deprecated, refused)",
		      0x0a, 0x03, 0x12, 0x01, 0x4c);
	CHECK_BAD_REQ("WorkloadRequest: field 1: wire type 6 is invalid", 0x0e);
	CHECK_BAD_REQ("WorkloadRequest: field 2: wire type 7 is invalid", 0x17);
	CHECK_BAD_REQ("WorkloadRequest: invalid field number 0 at offset 0", 0x02, 0x00);
	CHECK_BAD_REQ("WorkloadRequest: invalid field number 68719476735 at offset 0", 0xfa, 0xff,
		      0xff, 0xff, 0xff, 0x0f, 0x00);
	/* The oneof. */
	CHECK_BAD_REQ("WorkloadRequest: two payloads: field 1 (add) and field 2 (del)", 0x0a, 0x00,
		      0x12, 0x00);
	CHECK_BAD_REQ("WorkloadRequest: two payloads: field 3 (snapshot_sent) and field 5 (keep)",
		      0x1a, 0x00, 0x2a, 0x00);
	CHECK_BAD_REQ("WorkloadRequest: field 3 (snapshot_sent): repeated", 0x1a, 0x00, 0x1a, 0x00);
	CHECK_BAD_REQ("WorkloadRequest: unknown payload field 4 (length-delimited)", 0x22, 0x00);
	CHECK_BAD_REQ("WorkloadRequest: unknown payload field 6 (varint)", 0x1a, 0x00, 0x30, 0x01);
	/* Strings. */
	CHECK_BAD_REQ("WorkloadRequest: field 5 (keep): KeepWorkload: field 1 (uid): NUL byte at "
		      "offset 1",
		      0x2a, 0x04, 0x0a, 0x02, 'u', 0x00);
	CHECK_BAD_REQ("WorkloadRequest: field 5 (keep): KeepWorkload: field 1 (uid): invalid UTF-8 "
		      "at offset 1",
		      0x2a, 0x05, 0x0a, 0x03, 'u', 0xc3, 'x');
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): AddWorkload: field 2 (workload_info): "
		      "WorkloadInfo: field 1 (name): invalid UTF-8 at offset 0",
		      0x0a, 0x05, 0x12, 0x03, 0x0a, 0x01, 0x9c);
	CHECK_BAD_REQ("WorkloadRequest: field 2 (del): DelWorkload: field 2 (uid): repeated", 0x12,
		      0x06, 0x12, 0x01, 'a', 0x12, 0x01, 'b');
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): AddWorkload: field 2 (workload_info): "
		      "repeated",
		      0x0a, 0x04, 0x12, 0x00, 0x12, 0x00);
	CHECK_BAD_REQ("WorkloadRequest: field 1 (add): AddWorkload: field 2 (workload_info): "
		      "WorkloadInfo: field 3 (service_account): NUL byte at offset 0",
		      0x0a, 0x05, 0x12, 0x03, 0x1a, 0x01, 0x00);
}

TEST(test_request_too_long_string)
{
	uint8_t b[8 + INPOD_STR_MAX + 1];
	struct inpod_request r;
	struct errbuf eb = {0};

	/* keep{uid: 254 x 'a'} */
	memset(b, 'a', sizeof(b));
	memcpy(b, B(0x2a, 0x81, 0x02, 0x0a, 0xfe, 0x01), 6);
	CHECK_INT(inpod_request_decode(b, 6 + INPOD_STR_MAX + 1, &r, &eb), -E_PARSE);
	CHECK_STR(eb.msg,
		  "WorkloadRequest: field 5 (keep): KeepWorkload: field 1 (uid): 254 bytes, more "
		  "than 253");
	/* A 253-byte one is fine. */
	memcpy(b, B(0x2a, 0x80, 0x02, 0x0a, 0xfd, 0x01), 6);
	CHECK_INT(inpod_request_decode(b, 6 + INPOD_STR_MAX, &r, &eb), 0);
	CHECK_INT(strlen(r.uid), INPOD_STR_MAX);
}

TEST(test_ack)
{
	uint8_t b[INPOD_PACKET_MAX];
	char err[64], small[4];
	struct errbuf eb = {0};
	char big[INPOD_PACKET_MAX + 1];

	CHECK_INT(inpod_ack_encode(NULL, b, sizeof(b)), 2);
	CHECK_MEM(b, B(0x0a, 0x00), 2);
	CHECK_INT(inpod_ack_encode("", b, sizeof(b)), 2);
	CHECK_INT(inpod_ack_encode("boom", b, sizeof(b)), 8);
	CHECK_MEM(b, B(0x0a, 0x06, 0x0a, 0x04, 'b', 'o', 'o', 'm'), 8);
	CHECK_INT(inpod_ack_decode(b, 8, err, sizeof(err), &eb), 0);
	CHECK_STR(err, "boom");
	CHECK_INT(inpod_ack_decode(b, 8, small, sizeof(small), &eb), 0);
	CHECK_STR(small, "boo");
	CHECK_INT(inpod_ack_decode(B(0x0a, 0x00), 2, err, sizeof(err), &eb), 0);
	CHECK_STR(err, "");
	CHECK_INT(inpod_ack_encode("boom", b, 7), -E_LIMIT);
	/* Invalid UTF-8 in an error text is replaced, valid UTF-8 kept. */
	CHECK_INT(inpod_ack_encode("b\xffo\xc3\xa9", b, sizeof(b)), 9);
	CHECK_MEM(b, B(0x0a, 0x07, 0x0a, 0x05, 'b', '?', 'o', 0xc3, 0xa9), 9);
	CHECK_INT(inpod_ack_decode(B(0x0a, 0x03, 0x0a, 0x01, 0xff), 5, err, sizeof(err), &eb),
		  -E_PARSE);
	CHECK_STR(eb.msg, "WorkloadResponse: field 1 (ack): Ack: field 1 (error): invalid UTF-8 at "
			  "offset 0");
	memset(big, 'e', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_INT(inpod_ack_encode(big, b, sizeof(b)), -E_LIMIT);
	big[INPOD_PACKET_MAX - 6] = '\0'; /* the longest that fits: 0a 84 08 0a 80 08 <1018> */
	CHECK_INT(inpod_ack_encode(big, b, sizeof(b)), INPOD_PACKET_MAX);
	CHECK_INT(inpod_ack_decode(b, INPOD_PACKET_MAX, err, sizeof(err), &eb), 0);
	CHECK_INT(strlen(err), sizeof(err) - 1);

	CHECK_INT(inpod_ack_decode(b, 0, err, sizeof(err), &eb), -E_PARSE);
	CHECK_STR(eb.msg, "WorkloadResponse: no payload");
	CHECK_INT(inpod_ack_decode(B(0x0a, 0x00, 0x0a, 0x00), 4, err, sizeof(err), &eb), -E_PARSE);
	CHECK_STR(eb.msg, "WorkloadResponse: field 1 (ack): repeated");
	CHECK_INT(inpod_ack_decode(B(0x12, 0x00), 2, err, sizeof(err), &eb), -E_PARSE);
	CHECK_STR(eb.msg, "WorkloadResponse: unknown payload field 2 (length-delimited)");
	CHECK_INT(inpod_ack_decode(B(0x0a, 0x04, 0x0a, 0x02, 'x', 0x00), 6, err, sizeof(err), &eb),
		  -E_PARSE);
	CHECK_STR(eb.msg, "WorkloadResponse: field 1 (ack): Ack: field 1 (error): NUL byte at "
			  "offset 1");
	CHECK_INT(inpod_ack_decode(B(0x0a, 0x05, 0x0a, 0x01, 'x', 0x10, 0x80), 7, err, sizeof(err),
				   &eb),
		  -E_PARSE);
	CHECK_STR(eb.msg, "WorkloadResponse: field 1 (ack): Ack: unknown field 2 (varint): "
			  "truncated varint");
	CHECK_STR(err, ""); /* nothing half-decoded is left behind */
	/* Unknown Ack fields are skipped. */
	CHECK_INT(inpod_ack_decode(B(0x0a, 0x05, 0x10, 0x01, 0x0a, 0x01, 'x'), 7, err, sizeof(err),
				   &eb),
		  0);
	CHECK_STR(err, "x");
}

/* ---- session --------------------------------------------------------------------------------- */

TEST(test_session)
{
	struct inpod_session s = {0};
	struct errbuf eb = {0};
	struct inpod_request add = req(INPOD_ADD, "a", "", "", ""),
			     keep = req(INPOD_KEEP, "k", "", "", ""),
			     del = req(INPOD_DEL, "d", "", "", ""),
			     snap = req(INPOD_SNAPSHOT_SENT, "", "", "", ""),
			     noid = req(INPOD_ADD, "", "", "", "");

	CHECK_INT(inpod_session_check(&s, &add, true, &eb), 0);
	CHECK_INT(inpod_session_check(&s, &keep, false, &eb), 0);
	CHECK_INT(inpod_session_check(&s, &del, false, &eb), 0);
	CHECK_INT(inpod_session_check(&s, &add, false, &eb), -E_PROTO);
	CHECK_STR(eb.msg, "Add a without a netns fd");
	CHECK_INT(inpod_session_check(&s, &keep, true, &eb), -E_PROTO);
	CHECK_STR(eb.msg, "Keep carries an fd (only Add may)");
	CHECK_INT(inpod_session_check(&s, &del, true, &eb), -E_PROTO);
	CHECK_STR(eb.msg, "Del carries an fd (only Add may)");
	CHECK_INT(inpod_session_check(&s, &snap, true, &eb), -E_PROTO);
	CHECK_STR(eb.msg, "SnapshotSent carries an fd (only Add may)");
	CHECK(!s.snapshot_sent); /* refused: no state change */
	CHECK_INT(inpod_session_check(&s, &noid, true, &eb), -E_PROTO);
	CHECK_STR(eb.msg, "Add with an empty uid");
	del.uid[0] = '\0';
	CHECK_INT(inpod_session_check(&s, &del, false, &eb), -E_PROTO);
	CHECK_STR(eb.msg, "Del with an empty uid");
	keep.uid[0] = '\0';
	CHECK_INT(inpod_session_check(&s, &keep, false, &eb), -E_PROTO);
	CHECK_STR(eb.msg, "Keep with an empty uid");
	keep.uid[0] = 'k';

	CHECK_INT(inpod_session_check(&s, &snap, false, &eb), 0);
	CHECK(s.snapshot_sent);
	CHECK_INT(inpod_session_check(&s, &keep, false, &eb), -E_PROTO);
	CHECK_STR(eb.msg, "Keep k after SnapshotSent");
	CHECK_INT(inpod_session_check(&s, &snap, false, &eb), -E_PROTO);
	CHECK_STR(eb.msg, "second SnapshotSent");
	CHECK_INT(inpod_session_check(&s, &add, true, &eb), 0);
	del.uid[0] = 'd';
	CHECK_INT(inpod_session_check(&s, &del, false, &eb), 0);
	add.type = (enum inpod_type)7;
	CHECK_INT(inpod_session_check(&s, &add, false, &eb), -E_PROTO);
	CHECK_STR(eb.msg, "unknown request type 7");
}

/* ---- sockets --------------------------------------------------------------------------------- */

TEST(test_sock_fd_passing)
{
	int sv[2], nfd = -1, ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	struct inpod_request r = req(INPOD_ADD, "u1", "p", "ns", "sa"), got;
	struct errbuf eb = {0};
	struct stat a, b;
	int before;

	REQUIRE(ns >= 0);
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	/* ztunnel acks first: lock-step is by order only, so the ack waits in the socket. */
	CHECK_INT(inpod_client_ack(sv[1], NULL, &eb), 0);
	CHECK_INT(inpod_server_send(sv[0], &r, ns, 1000, &eb), 0);
	before = count_fds();
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 1000, &eb), 0);
	CHECK(req_eq(&r, &got));
	REQUIRE(nfd >= 0);
	CHECK_INT(count_fds(), before + 1);
	CHECK(nfd != ns);
	CHECK(fstat(ns, &a) == 0 && fstat(nfd, &b) == 0);
	CHECK_INT(a.st_ino, b.st_ino);
	CHECK_INT(a.st_dev, b.st_dev);
	CHECK(fcntl(nfd, F_GETFD) & FD_CLOEXEC);
	close(nfd);

	/* Three fds with an Add: the first is kept, the others closed. */
	CHECK(send_raw(sv[0], add_example, sizeof(add_example), ns, 3) > 0);
	before = count_fds();
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 1000, &eb), 0);
	CHECK_STR(got.uid, "u1");
	CHECK(nfd >= 0);
	CHECK_INT(count_fds(), before + 1);
	close(nfd);

	/* Requests without fds get -1. */
	CHECK(send_raw(sv[0], B(0x1a, 0x00), 2, -1, 0) == 2);
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 1000, &eb), 0);
	CHECK_INT(got.type, INPOD_SNAPSHOT_SENT);
	CHECK_INT(nfd, -1);
	close(sv[0]);
	close(sv[1]);
	close(ns);
}

TEST(test_sock_refused_packets_close_fds)
{
	int sv[2], nfd = 5, ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	uint8_t big[INPOD_PACKET_MAX + 1];
	struct inpod_request got;
	struct errbuf eb = {0};
	int before;

	REQUIRE(ns >= 0);
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	memset(big, 0, sizeof(big));
	/* > 1024 bytes: MSG_TRUNC. */
	before = count_fds();
	CHECK(send_raw(sv[0], big, sizeof(big), ns, 1) > 0);
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 1000, &eb), -E_PARSE);
	CHECK_STR(eb.msg, "recv WorkloadRequest: packet longer than 1024 bytes");
	CHECK_INT(nfd, -1);
	CHECK_INT(count_fds(), before);
	/* Exactly 1024 is not truncated (it is just not a valid message). */
	CHECK(send_raw(sv[0], big, INPOD_PACKET_MAX, ns, 1) > 0);
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 1000, &eb), -E_PARSE);
	CHECK_STR(eb.msg, "recv: WorkloadRequest: invalid field number 0 at offset 0");
	CHECK_INT(count_fds(), before);
	/* More fds than the control buffer holds: MSG_CTRUNC. */
	CHECK(send_raw(sv[0], add_example, sizeof(add_example), ns, 20) > 0);
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 1000, &eb), -E_PARSE);
	CHECK_STR(eb.msg, "recv WorkloadRequest: control data truncated (more than 8 fds)");
	CHECK_INT(count_fds(), before);
	/* Undecodable with an fd. */
	CHECK(send_raw(sv[0], B(0x0a, 0x05), 2, ns, 1) > 0);
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 1000, &eb), -E_PARSE);
	CHECK_STR(eb.msg,
		  "recv: WorkloadRequest: field 1 (add): truncated: length 5, 0 bytes left");
	CHECK_INT(count_fds(), before);
	close(sv[0]);
	close(sv[1]);
	close(ns);
}

TEST(test_sock_close_and_timeout)
{
	int sv[2], nfd;
	struct inpod_request got, r = req(INPOD_DEL, "u9", "", "", "");
	struct errbuf eb = {0};

	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 20, &eb), -E_TIMEOUT);
	CHECK_STR(eb.msg, "recv WorkloadRequest: timed out");
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 0, &eb), -E_TIMEOUT);
	/* The agent's send goes out, no ack comes back. */
	CHECK_INT(inpod_server_send(sv[0], &r, -1, 20, &eb), -E_TIMEOUT);
	CHECK_STR(eb.msg, "Del u9: recv ack: timed out");
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 0, &eb), 0);
	CHECK_STR(got.uid, "u9");
	close(sv[0]);
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, -1, &eb), -E_CLOSED);
	CHECK_STR(eb.msg, "recv WorkloadRequest: connection closed by peer");
	CHECK_INT(inpod_client_ack(sv[1], "", &eb), -E_CLOSED);
	CHECK_STR(eb.msg, "send ack: connection closed by peer");
	close(sv[1]);

	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	close(sv[1]);
	CHECK_INT(inpod_server_send(sv[0], &r, -1, 1000, &eb), -E_CLOSED);
	CHECK_STR(eb.msg, "Del u9: send: connection closed by peer");
	close(sv[0]);

	/* The peer reads the request, then closes instead of acking. */
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK(send_raw(sv[1], B(0x0a, 0x00), 2, -1, 0) == 2); /* an ack queued ... */
	r = req(INPOD_SNAPSHOT_SENT, "", "", "", "");
	CHECK_INT(inpod_server_send(sv[0], &r, -1, 1000, &eb), 0);
	shutdown(sv[1], SHUT_WR);
	CHECK_INT(inpod_server_send(sv[0], &r, -1, 1000, &eb), -E_CLOSED);
	CHECK_STR(eb.msg, "SnapshotSent: recv ack: connection closed by peer");
	close(sv[0]);
	close(sv[1]);
}

TEST(test_sock_nack_and_bad_acks)
{
	int sv[2], nfd = -1, ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	struct inpod_request got, r = req(INPOD_ADD, "u1", "", "", "");
	struct errbuf eb = {0};
	int before;

	REQUIRE(ns >= 0);
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK_INT(inpod_client_ack(sv[1], "failed to bind 15001: address in use", &eb), 0);
	CHECK_INT(inpod_server_send(sv[0], &r, ns, 1000, &eb), -E_DENIED);
	CHECK_STR(eb.msg, "failed to bind 15001: address in use");
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 1000, &eb), 0);
	CHECK(nfd >= 0);
	close(nfd);

	/* An ack that is not one. */
	CHECK(send_raw(sv[1], B(0x12, 0x00), 2, -1, 0) == 2);
	CHECK_INT(inpod_server_send(sv[0], &r, ns, 1000, &eb), -E_PARSE);
	CHECK_STR(eb.msg, "Add u1: recv: WorkloadResponse: unknown payload field 2 "
			  "(length-delimited)");
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 1000, &eb), 0);
	close(nfd);
	/* An ack with an fd. */
	CHECK(send_raw(sv[1], B(0x0a, 0x00), 2, ns, 1) == 2);
	before = count_fds();
	CHECK_INT(inpod_server_send(sv[0], &r, ns, 1000, &eb), -E_PROTO);
	CHECK_STR(eb.msg, "Add u1: recv ack: ack carries an fd");
	CHECK_INT(count_fds(), before);
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 1000, &eb), 0);
	close(nfd);

	/* Refused before anything is sent. */
	CHECK_INT(inpod_server_send(sv[0], &r, -1, 1000, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "send Add: Add needs a netns fd");
	r = req(INPOD_KEEP, "k", "", "", "");
	CHECK_INT(inpod_server_send(sv[0], &r, ns, 1000, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "send Keep: only Add carries a netns fd");
	r = req((enum inpod_type)9, "k", "", "", "");
	CHECK_INT(inpod_server_send(sv[0], &r, -1, 1000, &eb), -E_INVAL);
	CHECK_STR(eb.msg, "send unknown: cannot encode (invalid request)");
	CHECK_INT(inpod_client_recv(sv[1], &got, &nfd, 0, &eb), -E_TIMEOUT);
	close(sv[0]);
	close(sv[1]);
	close(ns);
}

/* A raw client that connects and sends one packet as its hello. */
static int raw_client(const char *path, const uint8_t *hello, size_t n)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return -1;
	if (n && send_raw(fd, hello, n, -1, 0) != (ssize_t)n)
		return -1;
	return fd;
}

TEST(test_sock_listen_connect)
{
	char dir[512], path[600];
	struct errbuf eb = {0};
	struct inpod_request got, r = req(INPOD_KEEP, "k1", "", "", "");
	struct stat st;
	int lfd, cfd, afd, nfd, fd;

	snprintf(dir, sizeof(dir), "%s/run/ztunnel", unit_tmpdir());
	snprintf(path, sizeof(path), "%s/ztunnel.sock", dir);
	/* A stale socket file from an earlier agent is replaced. */
	CHECK_INT(inpod_client_connect(path, &eb), -E_NOTFOUND);
	lfd = inpod_server_listen(path, &eb);
	REQUIRE(lfd >= 0);
	close(lfd);
	CHECK(lstat(path, &st) == 0 && S_ISSOCK(st.st_mode));
	lfd = inpod_server_listen(path, &eb);
	REQUIRE(lfd >= 0);
	CHECK(lstat(path, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK_INT(st.st_mode & 0777, 0600);
	CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
	CHECK_INT(st.st_mode & 0777, 0755);

	cfd = inpod_client_connect(path, &eb);
	REQUIRE(cfd >= 0);
	afd = inpod_server_accept(lfd, 1000, &eb);
	REQUIRE(afd >= 0);
	CHECK_INT(inpod_client_ack(cfd, "", &eb), 0);
	CHECK_INT(inpod_server_send(afd, &r, -1, 1000, &eb), 0);
	CHECK_INT(inpod_client_recv(cfd, &got, &nfd, 1000, &eb), 0);
	CHECK(req_eq(&r, &got));
	close(cfd);
	close(afd);

	/* Nobody connecting. */
	CHECK_INT(inpod_server_accept(lfd, 20, &eb), -E_TIMEOUT);
	CHECK_STR(eb.msg, "accept: timed out");
	/* Hello version mismatch, bad hello, hello with no packet but EOF. */
	fd = raw_client(path, B(0x08, 0x02), 2);
	CHECK(fd >= 0);
	CHECK_INT(inpod_server_accept(lfd, 1000, &eb), -E_UNSUPP);
	CHECK_STR(eb.msg, "recv hello: ztunnel speaks ZDS version 2, not 1");
	close(fd);
	fd = raw_client(path, B(0x08), 1);
	CHECK(fd >= 0);
	CHECK_INT(inpod_server_accept(lfd, 1000, &eb), -E_PARSE);
	CHECK_STR(eb.msg, "recv: ZdsHello: field 1 (version): truncated varint");
	close(fd);
	fd = raw_client(path, NULL, 0);
	CHECK(fd >= 0);
	close(fd);
	CHECK_INT(inpod_server_accept(lfd, 1000, &eb), -E_CLOSED);
	CHECK_STR(eb.msg, "recv hello: connection closed by peer");
	close(lfd);

	/* Not a socket: left alone. */
	snprintf(path, sizeof(path), "%s/file", dir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	CHECK(fd >= 0);
	close(fd);
	CHECK_INT(inpod_server_listen(path, &eb), -E_EXIST);
	CHECK_CONTAINS(eb.msg, "exists and is not a socket");
	CHECK_INT(inpod_server_listen("", &eb), -E_INVAL);
}

TEST(test_sock_path_too_long)
{
	char path[200];
	struct errbuf eb = {0};

	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	path[0] = '/';
	CHECK_INT(inpod_server_listen(path, &eb), -E_INVAL);
	CHECK_INT(inpod_client_connect(path, &eb), -E_INVAL);
	CHECK_CONTAINS(eb.msg, "socket path must be 1..107 bytes");
}
