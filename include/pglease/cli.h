/*
 * cli.h — the subcommands of the one pglease binary.
 */
#ifndef PGLEASE_CLI_H
#define PGLEASE_CLI_H

/* Dispatches argv[1]; returns a PGL_EXIT_* code. */
int pgl_cli_main(int argc, char **argv);

#endif
