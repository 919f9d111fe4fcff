/* Tests for the bounded I/O buffer. */
#include "pkg/base/base.h"
#include "pkg/buf/buf.h"
#include "test/unit.h"

#include <unistd.h>

TEST(buf_append_consume_and_compact)
{
	struct buf b;
	buf_init(&b, 0);
	REQUIRE(buf_append(&b, "hello ", 6) == 0);
	REQUIRE(buf_printf(&b, "world %d", 42) == 0);
	CHECK_INT(buf_len(&b), 14);
	CHECK_MEM(buf_rptr(&b), "hello world 42", 14);
	buf_consume(&b, 6);
	CHECK_MEM(buf_rptr(&b), "world 42", 8);
	buf_compact(&b);
	CHECK_INT(b.rd, 0);
	CHECK_MEM(buf_rptr(&b), "world 42", 8);
	buf_consume(&b, 8);
	CHECK_INT(buf_len(&b), 0);
	buf_fini(&b);
}

TEST(buf_respects_max)
{
	struct buf b;
	char big[300];
	memset(big, 'x', sizeof(big));
	buf_init(&b, 512);
	CHECK_INT(buf_append(&b, big, 300), 0);
	CHECK_INT(buf_append(&b, big, 300), -E_LIMIT);
	CHECK_INT(buf_len(&b), 300);
	buf_consume(&b, 200);
	/* After consuming, the same space is reusable. */
	CHECK_INT(buf_append(&b, big, 300), 0);
	CHECK_INT(buf_len(&b), 400);
	CHECK(b.cap <= 512);
	buf_fini(&b);
}

TEST(buf_printf_grows)
{
	struct buf b;
	buf_init(&b, 0);
	for (int i = 0; i < 1000; i++)
		REQUIRE(buf_printf(&b, "%04d,", i) == 0);
	CHECK_INT(buf_len(&b), 5000);
	CHECK_MEM(buf_rptr(&b) + 4995, "0999,", 5);
	buf_fini(&b);
}

TEST(buf_fd_roundtrip)
{
	struct buf in;
	struct buf out;
	int p[2];
	REQUIRE(pipe(p) == 0);
	buf_init(&in, 0);
	buf_init(&out, 0);
	buf_append_str(&out, "payload");
	CHECK_INT(buf_write_fd(&out, p[1]), 7);
	CHECK_INT(buf_len(&out), 0);
	close(p[1]);
	CHECK_INT(buf_read_fd(&in, p[0], 0), 7);
	CHECK_MEM(buf_rptr(&in), "payload", 7);
	CHECK_INT(buf_read_fd(&in, p[0], 0), 0);
	close(p[0]);
	buf_fini(&in);
	buf_fini(&out);
}
