/* agent.c — placeholder until the agent lands. */
#include <stdio.h>
#include "pglease/agent.h"
#include "pglease/common.h"

int
pgl_agent_main(int argc, char **argv)
{
	fprintf(stderr, "pglease run: not implemented yet\n");
	return PGL_EXIT_FAIL;
}
