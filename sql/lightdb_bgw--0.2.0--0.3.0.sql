-- lightdb_bgw 0.2.0 -> 0.3.0: what `ALTER EXTENSION lightdb_bgw UPDATE` runs
-- on a database that has 0.2.0 (written by hand; tests/upgrade.rs compares
-- an updated database with a fresh install and fails on any difference).
--
-- 0.3.0 adds the launch queue: launch(..., queue => true), the status
-- `queued`, and the queue position in the workers view.

DROP FUNCTION lightdb_bgw.launch(text, text, jsonb, text, text, text, interval, boolean, boolean);
CREATE FUNCTION lightdb_bgw."launch"(
	"kind" TEXT,
	"name" TEXT DEFAULT NULL,
	"config" jsonb DEFAULT '{}',
	"database" TEXT DEFAULT current_database(),
	"role" TEXT DEFAULT current_user,
	"start_time" TEXT DEFAULT 'recovery_finished',
	"restart_after" interval DEFAULT NULL,
	"bypass_allowconn" bool DEFAULT false,
	"wait" bool DEFAULT true,
	"queue" bool DEFAULT false
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'launch_wrapper';
REVOKE ALL ON FUNCTION lightdb_bgw.launch(text, text, jsonb, text, text, text, interval, boolean, boolean, boolean) FROM PUBLIC;

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
	"config" jsonb,
	"queue_position" INT
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_list_wrapper';
REVOKE ALL ON FUNCTION lightdb_bgw.worker_list() FROM PUBLIC;

CREATE VIEW lightdb_bgw.workers AS
SELECT id, name, type, kind, database, role, pid, status, start_time,
       restart_after, launched_by, launched_at, started_at, stopped_at,
       restarts, last_exit, last_error, is_static, runs, last_run_rows,
       last_run_ms, config, queue_position
FROM lightdb_bgw.worker_list();

COMMENT ON VIEW lightdb_bgw.workers IS
  'One row per background worker lightdb_bgw knows, static and dynamic, live and recent history';
REVOKE ALL ON lightdb_bgw.workers FROM PUBLIC;
