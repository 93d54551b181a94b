-- The parts of the SQL surface pgrx does not generate: the workers view and
-- the privileges. Nothing is granted to PUBLIC: a superuser grants EXECUTE
-- (and USAGE on the schema) to the roles that may drive workers.

CREATE VIEW lightdb_bgw.workers AS
SELECT id, name, type, kind, database, role, pid, status, start_time,
       restart_after, launched_by, launched_at, started_at, stopped_at,
       restarts, last_exit, last_error, is_static, runs, last_run_rows,
       last_run_ms, config, queue_position, result_rows, result_bytes
FROM lightdb_bgw.worker_list();

COMMENT ON VIEW lightdb_bgw.workers IS
  'One row per background worker lightdb_bgw knows, static and dynamic, live and recent history';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA lightdb_bgw FROM PUBLIC;
REVOKE ALL ON lightdb_bgw.workers FROM PUBLIC;
