/* A minimal unit-test harness: TEST() registers a case, CHECK* records failures and continues. */
#ifndef AMBIENT_UNIT_H
#define AMBIENT_UNIT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef void (*unit_fn)(void);
void unit_register(const char *name, unit_fn fn, const char *file);
void unit_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Failures recorded so far in the running test (for REQUIRE). */
int unit_current_failures(void);
/* A fresh directory for this test under $TMPDIR, removed after the run. */
const char *unit_tmpdir(void);

#define TEST(name)                                                                                 \
	static void name(void);                                                                    \
	__attribute__((constructor)) static void unit_reg_##name(void)                             \
	{                                                                                          \
		unit_register(#name, name, __FILE__);                                              \
	}                                                                                          \
	static void name(void)

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			unit_fail(__FILE__, __LINE__, "CHECK(%s)", #c);                            \
	} while (0)
/* Stops the test on failure. */
#define REQUIRE(c)                                                                                 \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			unit_fail(__FILE__, __LINE__, "REQUIRE(%s)", #c);                          \
			return;                                                                    \
		}                                                                                  \
	} while (0)
#define CHECK_INT(a, b)                                                                            \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_)                                                                      \
			unit_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_);   \
	} while (0)
#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *a_ = (a), *b_ = (b);                                                   \
		if (!a_ || !b_ || strcmp(a_, b_) != 0)                                             \
			unit_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,        \
				  a_ ? a_ : "(null)", b_ ? b_ : "(null)");                         \
	} while (0)
/* Substring check, for error messages. */
#define CHECK_CONTAINS(hay, needle)                                                                \
	do {                                                                                       \
		const char *h_ = (hay), *n_ = (needle);                                            \
		if (!h_ || !strstr(h_, n_))                                                        \
			unit_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"",            \
				  h_ ? h_ : "(null)", n_);                                         \
	} while (0)
#define CHECK_MEM(a, b, n)                                                                         \
	do {                                                                                       \
		if (memcmp((a), (b), (n)) != 0)                                                    \
			unit_fail(__FILE__, __LINE__, "memory %s != %s (%zu bytes)", #a, #b,       \
				  (size_t)(n));                                                    \
	} while (0)

#endif
