/* The ambient binary: dispatches to a subcommand by argv[1] or by the name it was invoked as. */
#include "cmd/cmd.h"
#include "pkg/base/base.h"
#include "version.h"

#include <libgen.h>
#include <nghttp2/nghttp2ver.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vendor_versions.h>

struct subcommand {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *summary;
};

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

static const struct subcommand subcommands[] = {
	{"ztunnel", cmd_ztunnel,
	 "per-node L4 proxy: HBONE mTLS tunnels, identity, L4 authorization"},
	{"waypoint", cmd_waypoint, "L7 proxy: HTTP routing, L7 authorization, request telemetry"},
	{"cni", cmd_cni, "traffic redirection and workload enrollment"},
	{"ca", cmd_ca, "certificate authority; serves the mesh config"},
	{"ctl", cmd_ctl, "troubleshooting: inspect proxies, check configs, explain decisions"},
	{"help", cmd_help, "show this help"},
	{"version", cmd_version, "print version and build information"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: ambient <command> [flags]\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_LEN(subcommands); i++)
		fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
	fprintf(out, "\n'ambient <command> --help' shows a command's flags.\n");
}

static int cmd_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	usage(stdout);
	return 0;
}

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("ambient %s\n", AMBIENT_VERSION);
	printf("commit: %s\n", AMBIENT_GIT_COMMIT);
	printf("build: %s\n", AMBIENT_BUILD_TYPE);
	printf("bearssl: %s\n", VENDOR_BEARSSL_VERSION);
	printf("nghttp2: %s (library %s)\n", VENDOR_NGHTTP2_VERSION, NGHTTP2_VERSION);
	printf("cjson: %s\n", VENDOR_CJSON_VERSION);
	return 0;
}

static const struct subcommand *find(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(subcommands); i++)
		if (strcmp(subcommands[i].name, name) == 0)
			return &subcommands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const struct subcommand *sc;
	char self[256];

	/* CNI spec: a runtime runs the plugin (/opt/cni/bin/<type>) with CNI_COMMAND set and no
	 * arguments, whatever the binary is called. */
	if (getenv("CNI_COMMAND"))
		return cmd_cni(argc, argv);
	/* A `ztunnel -> ambient` symlink runs the subcommand directly. */
	snprintf(self, sizeof(self), "%s", argc > 0 && argv[0] ? argv[0] : "ambient");
	sc = find(basename(self));
	if (sc && sc->main != cmd_help && sc->main != cmd_version)
		return sc->main(argc, argv);

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return cmd_help(argc - 1, argv + 1);
	if (strcmp(argv[1], "--version") == 0)
		return cmd_version(argc - 1, argv + 1);
	sc = find(argv[1]);
	if (!sc) {
		fprintf(stderr, "ambient: unknown command '%s'\n\n", argv[1]);
		usage(stderr);
		return 2;
	}
	return sc->main(argc - 1, argv + 1);
}
