/* Subcommands whose implementation has not landed yet: each says so and exits non-zero. */
#include "cmd/cmd.h"

#include <stdio.h>

static int not_implemented(const char *name, const char *issue)
{
	fprintf(stderr, "ambient %s: not implemented yet (tracked in the '%s' issue)\n", name,
		issue);
	return 1;
}

int cmd_ctl(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return not_implemented("ctl", "ctl");
}
