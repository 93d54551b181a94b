-- The foundation's SQL surface on a server that preloads lightdb_bgw with
-- one static counter and one static sleep worker (see tests/regress.rs).
-- Output must be deterministic: no pids, no times, ORDER BY everywhere.

CREATE EXTENSION lightdb_bgw;

-- The extension lives in its own schema and cannot be moved.
SELECT e.extname, n.nspname, e.extrelocatable
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'lightdb_bgw';

-- What the kinds are, and which can be started from the configuration.
SELECT kind, config_keys, static_ok, needs_database
FROM lightdb_bgw.kinds() ORDER BY kind;

-- Wait (with a deadline) until both static workers have started.
DO $$
DECLARE
  deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
  LOOP
    EXIT WHEN (SELECT count(*) FROM lightdb_bgw.workers WHERE status = 'started') = 2;
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION 'static workers did not start';
    END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;

SELECT id, name, type, kind, database, role, status, start_time, restart_after,
       launched_by, restarts, last_exit, last_error, is_static, config,
       pid IS NOT NULL AS has_pid, started_at >= launched_at AS started_after_launch,
       stopped_at IS NULL AS never_stopped
FROM lightdb_bgw.workers ORDER BY id;

-- The counter connected to its database; pg_stat_activity groups every
-- worker under one backend_type and names each one.
SELECT a.backend_type, a.application_name, a.datname, a.usename
FROM lightdb_bgw.workers w JOIN pg_stat_activity a USING (pid)
ORDER BY w.id;

-- The settings, and the reserved prefix.
SHOW lightdb_bgw.static_workers;
SHOW lightdb_bgw.database;
SHOW lightdb_bgw.role;
SHOW lightdb_bgw.max_workers;
SHOW lightdb_bgw.naptime;
SHOW lightdb_bgw.misspelt;
SET lightdb_bgw.max_workers = 10;
SET lightdb_bgw.naptime = '1s';
SELECT name, context, unit FROM pg_settings WHERE name LIKE 'lightdb_bgw.%' ORDER BY name;

-- A malformed static worker list is refused before it reaches the file.
ALTER SYSTEM SET lightdb_bgw.static_workers = 'counter:2, nope';
ALTER SYSTEM SET lightdb_bgw.static_workers = 'counter:0';
ALTER SYSTEM SET lightdb_bgw.static_workers = 'counter,counter';

-- Nothing is granted to PUBLIC.
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'lightdb_bgw' ORDER BY p.proname;
SELECT has_table_privilege('public', 'lightdb_bgw.workers', 'SELECT') AS public_select;

DROP EXTENSION lightdb_bgw;
