/*
 * cli.h — the subcommands of the one pglease binary.
 */
#ifndef PGLEASE_CLI_H
#define PGLEASE_CLI_H

#include <stdio.h>

struct pgl_store;

/* Dispatches argv[1]; returns a PGL_EXIT_* code. */
int pgl_cli_main(int argc, char **argv);

/*
 * Writes the document `pglease status --json` prints (the HTTP API's
 * /cluster).  Returns 0, or the store's negative PGL_E* code.
 */
int pgl_cli_status_json(struct pgl_store *st, FILE *f);

#endif
