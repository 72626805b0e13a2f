/*
 * main.c — entry point of the pglease binary; everything is a subcommand.
 */
#include "pglease/cli.h"

int
main(int argc, char **argv)
{
	return pgl_cli_main(argc, argv);
}
