/*
 * pglease_fence.c — the in-server fence (DESIGN.md section 2, "In-server
 * fence").
 *
 * The agent fences its postgres by killing it once the lease deadline
 * passes without a renewal.  That is too late when the whole node was
 * frozen (SIGSTOP, docker pause): on thaw, a backend with a pending commit
 * runs before the agent can act, while another node may already be
 * primary.  An orphan backend (postmaster SIGKILLed) can also still commit.
 *
 * This module closes both holes inside the server.  It owns:
 *   - one shared-memory word, the fence deadline in milliseconds on the
 *     host's CLOCK_MONOTONIC (0 = not armed), moved by the agent through
 *     pglease_fence_arm() after every lease renewal;
 *   - a transaction callback that, at pre-commit and pre-prepare of a
 *     transaction that has an xid, refuses to commit when the deadline has
 *     passed or when the postmaster is gone;
 *   - a ProcessUtility hook that refuses COMMIT PREPARED in the same cases
 *     (a prepared transaction commits inside the statement, before the
 *     surrounding transaction reaches pre-commit);
 *   - the GUC pglease_fence.enabled (SIGHUP), the emergency switch.
 *
 * It must be loaded through shared_preload_libraries; loaded any other way
 * it installs nothing and its SQL functions raise an error, so an agent
 * can never believe it armed a fence that does not exist.
 */
#include "postgres.h"

#include <time.h>

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

/* Shared state: one word, written by the arming backend, read by all. */
struct pgl_fence_shared
{
	pg_atomic_uint64 deadline_ms;	/* CLOCK_MONOTONIC ms; 0 = not armed */
};

static struct pgl_fence_shared *fence_shared = NULL;
static bool fence_enabled = true;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(pglease_fence_arm);
PG_FUNCTION_INFO_V1(pglease_fence_disarm);
PG_FUNCTION_INFO_V1(pglease_fence_status);

/*
 * Milliseconds on CLOCK_MONOTONIC, computed exactly as the agent's
 * pgl_mono_ms() does, so a deadline the agent computed compares directly.
 */
static int64
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Requests the shared memory for struct pgl_fence_shared (PG 15 hook). */
static void
fence_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(struct pgl_fence_shared)));
}

/*
 * Creates (postmaster, also after a crash reinitialisation) or attaches
 * (EXEC_BACKEND children) the shared struct.  A fresh struct is not armed:
 * after a crash restart the fence stays open until the agent arms it again.
 */
static void
fence_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	fence_shared = ShmemInitStruct("pglease_fence",
								   sizeof(struct pgl_fence_shared), &found);
	if (!found)
		pg_atomic_init_u64(&fence_shared->deadline_ms, 0);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Raises ERROR when this node must not commit: the check is enabled, the
 * server is not in recovery, and either the postmaster is gone or the armed
 * deadline has passed.  `what` names the refused action for the message.
 * Returns normally otherwise.  Callers decide whether the transaction wrote.
 */
static void
fence_check(const char *what)
{
	uint64		deadline;
	int64		now;

	if (!fence_enabled || fence_shared == NULL || RecoveryInProgress())
		return;

	/*
	 * An orphan backend keeps running after its postmaster was killed; the
	 * agent's proof-of-death lock is still held, but nothing supervises it.
	 * Only meaningful under a postmaster (not in single-user mode).
	 */
	if (IsUnderPostmaster && !PostmasterIsAlive())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pglease: refusing to %s: the postmaster is gone", what),
				 errdetail("This backend outlived its postmaster; it is no longer supervised by the pglease agent."),
				 errhint("Another node may already be the primary.")));

	deadline = pg_atomic_read_u64(&fence_shared->deadline_ms);
	if (deadline == 0)
		return;
	now = mono_ms();
	if (now > (int64) deadline)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pglease: refusing to %s: this node's lease deadline has passed", what),
				 errdetail("The fence deadline passed %lld ms ago (CLOCK_MONOTONIC).",
						   (long long) (now - (int64) deadline)),
				 errhint("Another node may already be the primary; the pglease agent will stop this server.")));
}

/*
 * XactCallback: refuses the commit (or the PREPARE TRANSACTION) of a
 * transaction that has an xid, i.e. one that wrote, when fence_check()
 * says so.  An ERROR at these events aborts the transaction before its
 * commit record is written.  Read-only transactions are never refused.
 */
static void
fence_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
				fence_check("commit");
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
				fence_check("prepare");
			break;
		default:
			break;
	}
}

/*
 * ProcessUtility hook: refuses COMMIT PREPARED when fence_check() says so.
 * The prepared transaction's commit record is written while the statement
 * runs, so the pre-commit callback of the surrounding transaction would be
 * too late.  ROLLBACK PREPARED stays allowed.  Everything else is passed on.
 */
static void
fence_process_utility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED)
		fence_check("commit prepared transaction");

	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context,
								   params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * Module load.  Installs the hooks, the callback and the GUC only when
 * loaded from shared_preload_libraries; otherwise it does nothing and the
 * SQL functions report the misconfiguration.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomBoolVariable("pglease_fence.enabled",
							 "Refuses commits of writing transactions once the pglease fence deadline has passed or the postmaster is gone.",
							 "Turn off only in an emergency: it disables the in-server fence.",
							 &fence_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("pglease_fence");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = fence_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = fence_shmem_startup;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = fence_process_utility;

	RegisterXactCallback(fence_xact_callback, NULL);
}

/* Raises ERROR unless the module was preloaded and its shared memory exists. */
static void
require_preloaded(void)
{
	if (fence_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pglease_fence must be loaded via shared_preload_libraries")));
}

/*
 * pglease_fence_arm(deadline_ms bigint) RETURNS void
 * Sets the fence deadline to deadline_ms, an absolute CLOCK_MONOTONIC time
 * in milliseconds (> 0).  Replaces any earlier deadline, later or not.
 */
Datum
pglease_fence_arm(PG_FUNCTION_ARGS)
{
	int64		deadline = PG_GETARG_INT64(0);

	require_preloaded();
	if (deadline <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pglease_fence_arm: deadline_ms must be positive, got %lld",
						(long long) deadline),
				 errhint("Use pglease_fence_disarm() to open the fence.")));
	pg_atomic_write_u64(&fence_shared->deadline_ms, (uint64) deadline);
	PG_RETURN_VOID();
}

/*
 * pglease_fence_disarm() RETURNS void
 * Clears the deadline: writes commit regardless of the clock (the
 * postmaster check stays active).
 */
Datum
pglease_fence_disarm(PG_FUNCTION_ARGS)
{
	require_preloaded();
	pg_atomic_write_u64(&fence_shared->deadline_ms, 0);
	PG_RETURN_VOID();
}

/*
 * pglease_fence_status(OUT armed boolean, OUT deadline_ms bigint,
 *                      OUT now_ms bigint, OUT remaining_ms bigint)
 * Returns one row.  deadline_ms and remaining_ms (deadline - now, negative
 * once passed) are NULL when not armed.
 */
Datum
pglease_fence_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	uint64		deadline;
	int64		now;

	require_preloaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pglease_fence_status: return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	deadline = pg_atomic_read_u64(&fence_shared->deadline_ms);
	now = mono_ms();
	values[0] = BoolGetDatum(deadline != 0);
	values[1] = Int64GetDatum((int64) deadline);
	values[2] = Int64GetDatum(now);
	values[3] = Int64GetDatum((int64) deadline - now);
	if (deadline == 0)
		nulls[1] = nulls[3] = true;

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
