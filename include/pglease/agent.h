/*
 * agent.h — `pglease run`: the agent that owns the local PostgreSQL.
 */
#ifndef PGLEASE_AGENT_H
#define PGLEASE_AGENT_H

/* argv[0] is "run".  Returns a PGL_EXIT_* code. */
int pgl_agent_main(int argc, char **argv);

#endif
