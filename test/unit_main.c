/* Runs the registered unit tests of one module binary and prints "N passed, N failed". */
#include "test/unit.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct unit_case {
	const char *name;
	unit_fn fn;
	const char *file;
};

static struct unit_case cases[1024];
static int ncases;
static int cur_failures;
static char tmpdir[256];

void unit_register(const char *name, unit_fn fn, const char *file)
{
	if (ncases == (int)(sizeof(cases) / sizeof(cases[0]))) {
		fprintf(stderr, "unit: too many tests\n");
		exit(2);
	}
	cases[ncases++] = (struct unit_case){name, fn, file};
}

void unit_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	cur_failures++;
	fprintf(stderr, "    %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int unit_current_failures(void)
{
	return cur_failures;
}

const char *unit_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(tmpdir, sizeof(tmpdir), "%s/ambient-unit-XXXXXX", base ? base : "/tmp");
		if (!mkdtemp(tmpdir)) {
			perror("mkdtemp");
			exit(2);
		}
	}
	return tmpdir;
}

static void cleanup_tmpdir(void)
{
	char cmd[300];

	if (!tmpdir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "unit: could not remove %s\n", tmpdir);
	tmpdir[0] = '\0';
}

int main(int argc, char **argv)
{
	int passed = 0;
	int failed = 0;
	const char *filter = argc > 1 ? argv[1] : NULL;

	for (int i = 0; i < ncases; i++) {
		if (filter && !strstr(cases[i].name, filter))
			continue;
		cur_failures = 0;
		cases[i].fn();
		cleanup_tmpdir();
		if (cur_failures) {
			failed++;
			fprintf(stderr, "FAIL %s (%s)\n", cases[i].name, cases[i].file);
		} else {
			passed++;
			if (getenv("UNIT_VERBOSE"))
				fprintf(stderr, "ok   %s\n", cases[i].name);
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
