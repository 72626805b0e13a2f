/* cli.c — placeholder: the CLI is being written. */
#include <stdio.h>
#include <string.h>
#include "pglease/agent.h"
#include "pglease/cli.h"
#include "pglease/common.h"

int
pgl_cli_main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "run") == 0)
		return pgl_agent_main(argc - 1, argv + 1);
	fprintf(stderr, "usage: pglease <command>\n");
	return PGL_EXIT_USAGE;
}
