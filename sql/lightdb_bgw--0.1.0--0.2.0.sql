-- lightdb_bgw 0.1.0 -> 0.2.0: what `ALTER EXTENSION lightdb_bgw UPDATE` runs
-- on a database that has 0.1.0 (pgrx generates only the fresh-install
-- script; this one is written by hand).
--
-- 0.2.0 adds builds for PostgreSQL 16 and 18, and:
--
-- status, pid and terminate raise 22004 for a NULL id, as the waits do,
-- instead of being STRICT (returning NULL).

-- Every later change of the SQL surface is added here in the same change;
-- tests/upgrade.rs compares an updated database with a fresh install and
-- fails on any difference.

ALTER FUNCTION lightdb_bgw.status(bigint) CALLED ON NULL INPUT;
ALTER FUNCTION lightdb_bgw.pid(bigint) CALLED ON NULL INPUT;
ALTER FUNCTION lightdb_bgw.terminate(bigint) CALLED ON NULL INPUT;

-- worker_list() returns the config as jsonb made once at launch (the view
-- no longer casts text to jsonb row by row): the function's result type
-- changes, so the view is made again on top of it.
DROP VIEW lightdb_bgw.workers;
DROP FUNCTION lightdb_bgw.worker_list();
CREATE FUNCTION lightdb_bgw."worker_list"() RETURNS TABLE (
	"id" bigint,
	"name" TEXT,
	"type" TEXT,
	"kind" TEXT,
	"database" TEXT,
	"role" TEXT,
	"pid" INT,
	"status" TEXT,
	"start_time" TEXT,
	"restart_after" interval,
	"launched_by" TEXT,
	"launched_at" timestamp with time zone,
	"started_at" timestamp with time zone,
	"stopped_at" timestamp with time zone,
	"restarts" INT,
	"last_exit" INT,
	"last_error" TEXT,
	"is_static" bool,
	"runs" bigint,
	"last_run_rows" bigint,
	"last_run_ms" double precision,
	"config" jsonb
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_list_wrapper';
REVOKE ALL ON FUNCTION lightdb_bgw.worker_list() FROM PUBLIC;

CREATE VIEW lightdb_bgw.workers AS
SELECT id, name, type, kind, database, role, pid, status, start_time,
       restart_after, launched_by, launched_at, started_at, stopped_at,
       restarts, last_exit, last_error, is_static, runs, last_run_rows,
       last_run_ms, config
FROM lightdb_bgw.worker_list();

COMMENT ON VIEW lightdb_bgw.workers IS
  'One row per background worker lightdb_bgw knows, static and dynamic, live and recent history';
REVOKE ALL ON lightdb_bgw.workers FROM PUBLIC;
