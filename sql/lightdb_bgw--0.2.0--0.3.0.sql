-- lightdb_bgw 0.2.0 -> 0.3.0: what `ALTER EXTENSION lightdb_bgw UPDATE` runs
-- on a database that has 0.2.0 (written by hand; tests/upgrade.rs compares
-- an updated database with a fresh install and fails on any difference).
--
-- 0.3.0 adds the launch queue: launch(..., queue => true), the status
-- `queued`, and the queue position in the workers view; and background SQL
-- with results: run, result (also typed), forget, cancel, result_memory,
-- and each worker's result rows and bytes in the workers view.

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
	"queue_position" INT,
	"result_rows" bigint,
	"result_bytes" bigint
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_list_wrapper';
REVOKE ALL ON FUNCTION lightdb_bgw.worker_list() FROM PUBLIC;

CREATE VIEW lightdb_bgw.workers AS
SELECT id, name, type, kind, database, role, pid, status, start_time,
       restart_after, launched_by, launched_at, started_at, stopped_at,
       restarts, last_exit, last_error, is_static, runs, last_run_rows,
       last_run_ms, config, queue_position, result_rows, result_bytes
FROM lightdb_bgw.worker_list();

COMMENT ON VIEW lightdb_bgw.workers IS
  'One row per background worker lightdb_bgw knows, static and dynamic, live and recent history';
REVOKE ALL ON lightdb_bgw.workers FROM PUBLIC;

CREATE FUNCTION lightdb_bgw."run"(
	"sql" TEXT,
	"database" TEXT DEFAULT current_database(),
	"role" TEXT DEFAULT current_user,
	"timeout" interval DEFAULT NULL,
	"queue" bool DEFAULT false
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'run_wrapper';

CREATE FUNCTION lightdb_bgw."result"(
	"id" bigint,
	"timeout" interval DEFAULT NULL
) RETURNS SETOF jsonb
VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'result_wrapper';

CREATE FUNCTION lightdb_bgw."forget"(
	"id" bigint
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'forget_wrapper';

CREATE FUNCTION lightdb_bgw."cancel"(
	"id" bigint
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cancel_wrapper';

CREATE FUNCTION lightdb_bgw."result_memory"() RETURNS bigint
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'result_memory_wrapper';

CREATE FUNCTION lightdb_bgw.result(id bigint, rowtype anyelement, timeout interval DEFAULT NULL)
RETURNS SETOF anyelement
LANGUAGE sql VOLATILE PARALLEL RESTRICTED
AS $$ SELECT jsonb_populate_record(rowtype, r) FROM lightdb_bgw.result(id, timeout) AS r $$;
COMMENT ON FUNCTION lightdb_bgw.result(bigint, anyelement, interval) IS
  'The rows of a run''s result typed as rowtype, as jsonb_populate_record makes them';

REVOKE ALL ON FUNCTION lightdb_bgw.run(text, text, text, interval, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION lightdb_bgw.result(bigint, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION lightdb_bgw.result(bigint, anyelement, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION lightdb_bgw.forget(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION lightdb_bgw.cancel(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION lightdb_bgw.result_memory() FROM PUBLIC;
