-- Dynamic workers from SQL: every function, every kind, the status words
-- and every bad input with its SQLSTATE. Ids are printed relative to the
-- first dynamic worker of this file, so the output does not depend on what
-- ran before.

CREATE EXTENSION lightdb_bgw;
SET search_path = lightdb_bgw, public;

-- Errors are shown as "SQLSTATE: message" so the codes are part of the
-- expected output.
CREATE FUNCTION try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  detail text;
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
  RETURN SQLSTATE || ': ' || SQLERRM || coalesce(' (' || nullif(detail, '') || ')', '');
END $$;

-- Waits until a condition on the registry holds, with a deadline.
CREATE FUNCTION await(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  deadline timestamptz := clock_timestamp() + interval '60 seconds';
  ok boolean;
BEGIN
  LOOP
    EXECUTE 'SELECT ' || cond INTO ok;
    IF ok THEN RETURN true; END IF;
    IF clock_timestamp() > deadline THEN RETURN false; END IF;
    PERFORM pg_sleep(0.02);
  END LOOP;
END $$;

SELECT count(*) AS registry_rows_before FROM workers \gset

-- sleep: launched, started (wait => true), terminated, stopped.
SELECT launch('sleep', name => 'regress sleeper') AS base \gset
SELECT status(:base), pid(:base) > 0 AS has_pid, wait_for_startup(:base, '1s');
SELECT name, kind, database = current_database() AS in_this_db, role = current_user AS as_me,
       launched_by = current_user AS launched_by_me, start_time, restart_after, restarts,
       is_static, config
FROM workers WHERE id = :base;
SELECT wait_for_shutdown(:base, '100ms') AS still_running;
SELECT terminate(:base);
SELECT wait_for_shutdown(:base);
SELECT status(:base), pid(:base), terminate(:base) AS terminate_again;
SELECT last_exit, stopped_at IS NOT NULL AS has_stopped_at FROM workers WHERE id = :base;

-- sleep with a duration and exit code 0: unregistered when done.
SELECT launch('sleep', config => '{"duration": "50ms"}', database => NULL) AS s0 \gset
SELECT wait_for_shutdown(:s0), (SELECT last_exit FROM workers WHERE id = :s0);

-- exit code 1 with restart_after: not_yet_started between restarts.
SELECT launch('sleep', config => '{"duration": "10ms", "exit_code": 1}',
              restart_after => '1 min') AS s1 \gset
SELECT await(format('lightdb_bgw.status(%s) = %L', :s1, 'not_yet_started'));
SELECT status(:s1), restart_after, last_exit FROM workers WHERE id = :s1;
SELECT wait_for_startup(:s1, '50ms') AS waiting_for_restart;
SELECT terminate(:s1), status(:s1);

-- not yet started, then terminated before it ever ran.
SELECT launch('sleep', wait => false) AS nw \gset
SELECT terminate(:nw);
SELECT wait_for_shutdown(:nw);

-- sql, once: its rows and its runs are recorded; a failure records the
-- error with its SQLSTATE and exits with code 1.
CREATE TABLE public.regress_target (x int);
SELECT launch('sql', config => '{"sql": "INSERT INTO regress_target SELECT generate_series(1, 3)"}') AS q1 \gset
SELECT wait_for_shutdown(:q1);
SELECT runs, last_run_rows, last_run_ms >= 0 AS timed, last_error, last_exit FROM workers WHERE id = :q1;
SELECT count(*) FROM regress_target;
SELECT launch('sql', config => '{"sql": "SELECT 1/0"}') AS q2 \gset
SELECT wait_for_shutdown(:q2);
SELECT runs, last_error, last_exit FROM workers WHERE id = :q2;

-- sql, every interval.
SELECT launch('sql', config => '{"sql": "INSERT INTO regress_target VALUES (0)", "interval": "20ms"}') AS q3 \gset
SELECT await(format('(SELECT runs >= 3 FROM lightdb_bgw.workers WHERE id = %s)', :q3));
SELECT terminate(:q3), wait_for_shutdown(:q3);

-- counter, with its own schema, table and naptime.
SELECT launch('counter', config => '{"schema": "regress_counter", "table": "c", "naptime": "50ms"}') AS c1 \gset
SELECT await('(SELECT count(*) = 1 FROM pg_tables WHERE schemaname = ''regress_counter'')');
INSERT INTO regress_counter.c VALUES ('delta', 40), ('delta', 2);
SELECT await('(SELECT value = 42 FROM regress_counter.c WHERE type = ''total'')');
SELECT terminate(:c1), wait_for_shutdown(:c1);
DROP SCHEMA regress_counter CASCADE;

-- supervisor: two children, stopped with it.
SELECT launch('supervisor', config => '{"children": 2, "child_kind": "sleep"}', database => NULL) AS sup \gset
SELECT await(format('(SELECT count(*) = 2 FROM lightdb_bgw.workers WHERE name LIKE %L AND status = %L)',
                    'lightdb_bgw supervisor ' || :sup || ' child %', 'started'));
SELECT replace(name, :'sup', 'S') AS name, kind, database, status FROM workers WHERE id >= :sup ORDER BY id;
SELECT terminate(:sup), wait_for_shutdown(:sup);
SELECT await(format('(SELECT bool_and(status = %L) FROM lightdb_bgw.workers WHERE id > %s)', 'stopped', :sup));

-- launch_raw: our own entry point with no lightdb_bgw handle leaves at once.
SELECT launch_raw('lightdb_bgw', 'lightdb_bgw_main', 'regress raw', type => 'regress raw type', flags => '{shmem_access}') AS r1 \gset
SELECT wait_for_shutdown(:r1);
SELECT name, type, kind, config->>'library' AS library, config->>'function' AS function
FROM workers WHERE id = :r1;

-- Durations are read by PostgreSQL's interval input (ISO 8601 too) and
-- shown back from the typed config.
SELECT launch('sleep', config => '{"duration": "PT0.05S"}', database => NULL) AS iso \gset
SELECT wait_for_shutdown(:iso), (SELECT config FROM workers WHERE id = :iso);

-- Configs live out of line: a 1 MiB SQL text launches and runs.
SELECT launch('sql', config => jsonb_build_object('sql', 'SELECT 1 -- ' || repeat('x', 1048576 - 12))) AS big \gset
SELECT wait_for_shutdown(:big);
SELECT runs, last_run_rows, last_error, length(config->>'sql') AS sql_bytes FROM workers WHERE id = :big;

-- Every kind is listed.
SELECT kind, config_keys FROM kinds() ORDER BY kind;

-- Bad input: each with its SQLSTATE, and nothing left behind.
SELECT count(*) AS rows_before_errors FROM workers \gset
SELECT try($$SELECT lightdb_bgw.launch('nope')$$);
SELECT try($$SELECT lightdb_bgw.launch(NULL)$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', config => NULL)$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', config => '{"duraton": "1s"}')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', config => '{"exit_code": 7}')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', config => '{"duration": "1 month"}')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', config => '{"duration": "soon"}')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', config => '[1]')$$);
SELECT try($$SELECT lightdb_bgw.launch('sql', config => '{}')$$);
SET lightdb_bgw.max_config_size = '1kB';
SELECT try($$SELECT lightdb_bgw.launch('sql', config => jsonb_build_object('sql', 'SELECT 1 -- ' || repeat('x', 2000)))$$);
SELECT try($$SELECT lightdb_bgw.launch('counter', config => jsonb_build_object('schema', 's', 'table', 't', 'notify', repeat('n', 60), 'naptime', repeat(' ', 1100) || '1s'))$$);
RESET lightdb_bgw.max_config_size;
SELECT try($$SELECT lightdb_bgw.launch('supervisor', config => '{"children": 0, "child_kind": "sleep"}')$$);
SELECT try($$SELECT lightdb_bgw.launch('counter', database => NULL)$$);
SELECT try($$SELECT lightdb_bgw.launch('supervisor', database => NULL, config => '{"children": 1, "child_kind": "counter"}')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', database => 'no_such_db')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', role => 'no_such_role')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', role => NULL)$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', start_time => 'someday')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', restart_after => '-1s')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', restart_after => '1 day 1 second')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', restart_after => '1.5 s')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', restart_after => '0')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', start_time => 'postmaster_start')$$);
SELECT try($$SELECT lightdb_bgw.launch('sql', config => '{"sql": "select 1", "interval": "1ms"}')$$);
SELECT try($$SELECT lightdb_bgw.launch('counter', config => '{"naptime": "1us"}')$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', config => (repeat('{"a": ', 129) || '1' || repeat('}', 129))::jsonb)$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', config => (repeat('[', 500) || repeat(']', 500))::jsonb)$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', name => repeat('n', 96))$$);
SELECT try($$SELECT lightdb_bgw.launch_raw('lightdb_bgw', 'lightdb_bgw_main', 'x', flags => '{nope}')$$);
SELECT try($$SELECT lightdb_bgw.launch_raw('lightdb_bgw', repeat('f', 100), 'x')$$);
SELECT try($$SELECT lightdb_bgw.launch_raw('lightdb_bgw', 'f', 'x', extra => decode(repeat('00', 129), 'hex'))$$);
SELECT try($$SELECT lightdb_bgw.launch_raw(NULL, 'f', 'x')$$);
SELECT try($$SELECT lightdb_bgw.launch_raw('lightdb_bgw', 'lightdb_bgw_main', 'x', flags => '{}')$$);
SELECT try($$SELECT lightdb_bgw.launch_raw('lightdb_bgw', 'lightdb_bgw_main', 'x', flags => '{shmem_access,NULL}')$$);
SELECT try($$SELECT lightdb_bgw.launch_raw('lightdb_bgw', 'lightdb_bgw_main', 'x', start_time => 'postmaster_start')$$);
SELECT try($$SELECT lightdb_bgw.status(-1)$$);
SELECT try($$SELECT lightdb_bgw.pid(-1)$$);
SELECT try($$SELECT lightdb_bgw.terminate(-1)$$);
SELECT try($$SELECT lightdb_bgw.wait_for_startup(-1)$$);
SELECT try($$SELECT lightdb_bgw.wait_for_shutdown(NULL)$$);
SELECT try($$SELECT lightdb_bgw.wait_for_shutdown(1, '-1s')$$);
SELECT try($$SELECT lightdb_bgw.wait_for_shutdown(1, '1 day -25 hours')$$);
SELECT try($$SELECT lightdb_bgw.status(NULL)$$);
SELECT try($$SELECT lightdb_bgw.pid(NULL)$$);
SELECT try($$SELECT lightdb_bgw.terminate(NULL)$$);
SELECT try($$SELECT lightdb_bgw.wait_for_startup(NULL)$$);
SELECT try($$SELECT lightdb_bgw.launch('sleep', database => NULL, queue => NULL)$$);
SELECT count(*) = :rows_before_errors AS nothing_left_behind FROM workers;

-- A timeout is any interval that is not negative: mixed signs, months, and
-- more than fits (waiting as long as it takes).
SELECT wait_for_shutdown(:r1, '1 day -23 hours') AS mixed_signs,
       wait_for_shutdown(:r1, '178000000 years') AS very_long;

-- A queueing launch that finds room runs at once, as any launch.
SELECT lightdb_bgw.status(lightdb_bgw.launch('sleep', name => 'queued_but_room', database => NULL, queue => true)) AS status;
SELECT status, queue_position FROM workers WHERE name = 'queued_but_room';
SELECT lightdb_bgw.terminate(id) FROM workers WHERE name = 'queued_but_room';

DROP FUNCTION try(text);
DROP FUNCTION await(text);
DROP TABLE public.regress_target;
DROP EXTENSION lightdb_bgw;
