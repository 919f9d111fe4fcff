/* Command-line flags with AMBIENT_* environment fallbacks, declared as a table per subcommand. */
#ifndef AMBIENT_CMD_FLAGS_H
#define AMBIENT_CMD_FLAGS_H

#include "pkg/base/base.h"

#include <stdbool.h>
#include <stdio.h>

enum flag_type {
	FLAG_STR,      /* char ** (points into argv/environ; not owned) */
	FLAG_INT,      /* int * */
	FLAG_BOOL,     /* bool *; `--x`, `--x=true|false` */
	FLAG_DURATION, /* uint64_t * milliseconds; "250ms", "30s", "5m", "1h", bare number = seconds
			*/
	FLAG_STR_LIST, /* struct flag_list *; repeatable */
};

struct flag_list {
	const char *items[64];
	int n;
};

struct flag {
	const char *name; /* without leading dashes: "mesh-config" */
	enum flag_type type;
	void *target;
	const char *help;
	const char *placeholder; /* "SOURCE", "ADDR"; NULL for bools */
};

/*
 * Parses argv[1..] (argv[0] is the subcommand). Values come from AMBIENT_<NAME> first (e.g.
 * AMBIENT_MESH_CONFIG), then flags override. Positional arguments are collected in order into
 * pos/npos (up to maxpos). `--help` sets *help. Returns 0 or -E_INVAL with a precise message.
 */
int flags_parse(const struct flag *flags, size_t nflags, int argc, char **argv, const char **pos,
		int maxpos, int *npos, bool *help, struct errbuf *eb);
void flags_usage(FILE *out, const char *usage_line, const struct flag *flags, size_t nflags);
/* "30s" -> 30000; -E_INVAL on junk or overflow. */
int flags_parse_duration(const char *s, uint64_t *ms);

#endif
