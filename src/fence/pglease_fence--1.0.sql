-- pglease_fence--1.0.sql: SQL interface of the pglease in-server fence.
-- The library must also be in shared_preload_libraries; without it every
-- function raises an error.  All functions are superuser-only by default:
-- GRANT EXECUTE to the agent's role if it is not a superuser.

\echo Use "CREATE EXTENSION pglease_fence" to load this file. \quit

-- Sets the fence deadline: absolute CLOCK_MONOTONIC milliseconds (> 0).
CREATE FUNCTION pglease_fence_arm(deadline_ms bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'pglease_fence_arm'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- Clears the fence deadline (the postmaster check stays active).
CREATE FUNCTION pglease_fence_disarm()
RETURNS void
AS 'MODULE_PATHNAME', 'pglease_fence_disarm'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- One row: whether armed, the deadline, the server's CLOCK_MONOTONIC now,
-- and deadline - now (negative once passed; NULL when not armed).
CREATE FUNCTION pglease_fence_status(
	OUT armed boolean,
	OUT deadline_ms bigint,
	OUT now_ms bigint,
	OUT remaining_ms bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'pglease_fence_status'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

REVOKE ALL ON FUNCTION pglease_fence_arm(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION pglease_fence_disarm() FROM PUBLIC;
REVOKE ALL ON FUNCTION pglease_fence_status() FROM PUBLIC;
