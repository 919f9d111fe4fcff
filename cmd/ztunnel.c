/* `ambient ztunnel`: the per-node L4 proxy. Config loading/watching and the admin surface run;
 * the data plane (HBONE, listeners) lands with the ztunnel issue. */
#include "cmd/cmd.h"
#include "cmd/server.h"

int cmd_ztunnel(int argc, char **argv)
{
	static const struct server_component comp = {
		.name = "ztunnel",
		.not_ready_reason = "data plane not implemented yet (HBONE, 15001/15006/15008 "
				    "listeners): this build serves config and admin only",
	};

	return server_main(&comp, argc, argv);
}
