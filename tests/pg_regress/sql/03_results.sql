-- Background SQL with results: run, result (twice, typed), forget, cancel,
-- the timeout key, and every error with its SQLSTATE. Ids are not printed.

CREATE EXTENSION lightdb_bgw;
SET search_path = lightdb_bgw, public;

-- Errors as "SQLSTATE: message | detail | hint | context", worker ids
-- replaced by N. (57014 is caught too: OTHERS leaves it out.)
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  detail text; hint text; context text;
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS OR query_canceled THEN
  GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT,
                          context = PG_EXCEPTION_CONTEXT;
  RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM
      || coalesce(' | detail: ' || nullif(detail, ''), '')
      || coalesce(' | hint: ' || nullif(hint, ''), '')
      || coalesce(' | context: ' || split_part(context, E'\n', 1), ''),
    '(worker|id|result\(|cancel\(|forget\() ?-?[0-9]+', '\1 N', 'g');
END $$;

-- The rows of the last statement that returned rows, in order, as jsonb;
-- as many times as wanted.
SELECT run('CREATE TEMP TABLE t AS SELECT 1 AS x; SELECT g, md5(g::text) AS hash, g % 2 = 0 AS even FROM generate_series(1, 4) g; SET work_mem = ''8MB''') AS id \gset
SELECT * FROM result(:id);
SELECT count(*) AS read_again FROM result(:id);
SELECT result_rows, result_bytes > 0 AS has_bytes FROM workers WHERE id = :id;
SELECT wait_for_shutdown(:id, '30s');

-- Typed, as jsonb_populate_record makes the rows.
CREATE TYPE numbered AS (g int, hash text, even boolean);
SELECT * FROM result(:id, NULL::numbered);
CREATE TYPE mismatched AS (g date);
SELECT err(format('SELECT * FROM result(%s, NULL::mismatched)', :id));

-- Every row is what to_jsonb makes of it, whatever its columns' types
-- (numbers, strings with quotes and escapes, padded chars, booleans,
-- NULLs, NaN, infinities, dates, json, jsonb scalars, arrays, records).
CREATE VIEW public.every_type AS
  SELECT g::int2 AS i2, (g - 2)::int4 * 2147483647 AS i4, 9223372036854775807 - g AS i8,
         E'a "quoted" \\ \t line ' || g AS t, 'é'::varchar(3) AS v, 'ab'::char(4) AS c,
         g % 2 = 0 AS even, NULLIF(g, 2) AS sometimes, 'NaN'::numeric AS nan, 1.50 AS num,
         '-Infinity'::float8 AS inf, 0.5::float4 AS half, '2024-02-29'::date + g AS day,
         '2024-02-29 12:30'::timestamp AS at, '{"b": [1, {"c": null}], "a": "x"}'::json AS j,
         '"scalar"'::jsonb AS js, ARRAY[[g, 2], [3, NULL]] AS arr, ROW(g, 'x', NULL)::numbered AS rec,
         repeat('z', 3000) AS long
  FROM generate_series(1, 3) g;
SELECT run('SELECT * FROM public.every_type') AS typed \gset
SELECT n, r = e AND r::text = e::text AS equal_to_to_jsonb
FROM result(:typed) WITH ORDINALITY AS r(r, n)
JOIN (SELECT row_number() OVER () AS n, to_jsonb(w) AS e FROM public.every_type w) AS s USING (n)
ORDER BY n;
SELECT r - 'long' AS first_row FROM result(:typed) AS r LIMIT 1;
-- A row of scalars only is written in jsonb's format directly: the same
-- value, text, size and key lookups as to_jsonb's, over 32 keys (every
-- 32nd entry of a jsonb object holds an offset).
CREATE VIEW public.every_scalar AS
  SELECT g, '-32768'::int2 AS i2min, 32767::int2 AS i2max, '-2147483648'::int4 AS i4min,
         2147483647 AS i4max, '-9223372036854775808'::int8 AS i8min, 9223372036854775807 AS i8max,
         0 AS zero, 10000 * g AS tenk, 99990000 AS zeros, -g AS minus, 12345678 AS eight,
         '' AS empty, 'ünïcödé' AS accents, E'quote " back \\ nl \n tab \t' AS escapes,
         g = 2 AS yes, g <> 2 AS no, NULL::text AS no_text, NULL::int AS no_int,
         1.50 AS num, -0.001 AS small, 'NaN'::numeric AS nan, 1e300::float8 AS big,
         '-0'::float8 AS negzero, '2024-02-29'::date AS day, 'ab'::char(3) AS padded,
         'x'::varchar AS c01, 2::int8 AS c02, 'three' AS c03, 4 AS c04, 'five' AS c05,
         6 AS c06, 'seven' AS c07, 8 AS c08, 'nine' AS c09, 10 AS c10, 'eleven' AS c11,
         12 AS c12, 'thirteen' AS c13, 14 AS c14, 'fifteen' AS c15
  FROM generate_series(1, 3) g;
SELECT run('SELECT * FROM public.every_scalar') AS scalars \gset
SELECT n, r = e AND r::text = e::text AND pg_column_size(r) = pg_column_size(e)
          AND r @> e AND e @> r
          AND (SELECT bool_and(r -> k = e -> k) FROM jsonb_object_keys(e) AS k) AS same_as_to_jsonb
FROM result(:scalars) WITH ORDINALITY AS r(r, n)
JOIN (SELECT row_number() OVER () AS n, to_jsonb(w) AS e FROM public.every_scalar w) AS s USING (n)
ORDER BY n;
SELECT r - 'accents' - 'big' AS second_row FROM result(:scalars) AS r OFFSET 1 LIMIT 1;
SELECT run('SELECT 1 AS a, 2 AS a, NULL AS b') AS twice \gset
SELECT r AS same_name_twice, (SELECT to_jsonb(q) FROM (SELECT 1 AS a, 2 AS a, NULL AS b) q) AS to_jsonb
FROM result(:twice) AS r;

-- result keeps the rows it returns in memory whatever work_mem is (the
-- whole result is in the session's memory already), where another set
-- returning function spills them to a temporary file.
CREATE FUNCTION temp_blocks(q text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE plan json;
BEGIN
  EXECUTE 'EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ' || q INTO plan;
  RETURN (plan->0->'Plan'->>'Temp Written Blocks')::bigint;
END $$;
SELECT run('SELECT g, repeat(''x'', 100) AS x FROM generate_series(1, 5000) g') AS wide \gset
SET work_mem = '64kB';
SELECT temp_blocks(format('SELECT * FROM result(%s)', :wide)) AS result_temp_blocks,
       temp_blocks('SELECT * FROM generate_series(1, 50000)') > 0 AS generate_series_spills;
RESET work_mem;

-- A text whose statements return no rows: an empty result.
SELECT run('CREATE TEMP TABLE u (x int); INSERT INTO u VALUES (1)') AS none \gset
SELECT count(*) AS no_rows FROM result(:none);
SELECT result_rows FROM workers WHERE id = :none;

-- Rows of a utility statement, and of INSERT ... RETURNING followed by a
-- statement that returns none.
SELECT run('SHOW work_mem') AS shown \gset
SELECT * FROM result(:shown);
SELECT run('CREATE TEMP TABLE r (x int); INSERT INTO r VALUES (1), (2) RETURNING x * 10 AS tenfold; UPDATE r SET x = 3') AS returning \gset
SELECT * FROM result(:returning);

-- A failed run raises the worker's error again: SQLSTATE, message,
-- detail, hint, and a context line naming the worker.
SELECT run($q$DO $$ BEGIN RAISE EXCEPTION 'the run failed' USING DETAIL = 'what went wrong', HINT = 'what to do', ERRCODE = '22012'; END $$$q$) AS failed \gset
SELECT err(format('SELECT * FROM result(%s)', :failed));
SELECT err(format('SELECT * FROM result(%s)', :failed)) AS raised_again;
SELECT last_error FROM workers WHERE id = :failed;
-- Its result is that error: no rows, the bytes of the copy counted.
SELECT result_rows, result_bytes > 0 AS error_kept FROM workers WHERE id = :failed;

-- The timeout key and run's timeout: each statement's time limit.
SELECT run('SELECT pg_sleep(30)', timeout => '100ms') AS slow \gset
SELECT err(format('SELECT * FROM result(%s)', :slow));
SELECT err($$SELECT launch('sql', config => '{"sql": "select 1", "timeout": "0"}')$$);

-- cancel: the running statement ends with 57014, raised by result.
SELECT run('SELECT pg_sleep(30)') AS cancelled \gset
SELECT wait_for_startup(:cancelled, '30s');
-- Until its statement runs.
CREATE FUNCTION sleeping(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..3000 LOOP
    PERFORM pg_stat_clear_snapshot();
    IF EXISTS (SELECT 1 FROM pg_stat_activity
               WHERE pid = lightdb_bgw.pid(id) AND wait_event = 'PgSleep') THEN
      RETURN true;
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RETURN false;
END $$;
SELECT sleeping(:cancelled);
SELECT cancel(:cancelled);
SELECT err(format('SELECT * FROM result(%s)', :cancelled));
SELECT wait_for_shutdown(:cancelled, '30s');
SELECT cancel(:cancelled) AS cancel_of_a_stopped_worker;

-- A storm of cancels never ends an interval worker: the run in progress
-- fails with 57014, the cancels that arrive between runs are dropped.
SELECT launch('sql', config => '{"sql": "SELECT pg_sleep(60)", "interval": "1h"}') AS storm \gset
SELECT sleeping(:storm);
SELECT count(*) FILTER (WHERE cancel(:storm)) > 0 AS cancelled FROM generate_series(1, 300);
SELECT pg_sleep(0.5);
SELECT status, runs, last_error FROM workers WHERE id = :storm;
SELECT terminate(:storm);

-- A timeout of result itself raises 57014 and leaves the run alone.
SELECT run('SELECT pg_sleep(30)') AS waited \gset
SELECT err(format('SELECT * FROM result(%s, timeout => ''50ms'')', :waited));
SELECT status FROM workers WHERE id = :waited;
SELECT err(format('SELECT forget(%s)', :waited));
SELECT terminate(:waited);

-- Over lightdb_bgw.max_result_size (read by the worker as its role's
-- setting): the run fails with 54000 naming it; nothing is kept.
CREATE ROLE small_results LOGIN;
GRANT CREATE, USAGE ON SCHEMA public TO small_results;
ALTER ROLE small_results SET lightdb_bgw.max_result_size = '1kB';
SELECT result_memory() AS memory_before \gset
SELECT run('SELECT repeat(''x'', 100) FROM generate_series(1, 100)', role => 'small_results') AS big \gset
SELECT err(format('SELECT * FROM result(%s)', :big));
-- Only the run's error is kept with its result, none of its rows; forget
-- gives that back too.
SELECT wait_for_shutdown(:big, '30s');
SELECT result_memory() - :memory_before BETWEEN 1 AND 1000 AS only_its_error_kept;
SELECT forget(:big) AS forgotten;
SELECT result_memory() = :memory_before AS nothing_kept;
-- Only the last row-returning statement's rows are kept, so only they
-- count: an earlier statement over the limit is replaced by a later one;
-- when none replaces it, the run fails at its end.
SELECT run('SELECT repeat(''x'', 100) FROM generate_series(1, 100); SELECT 1 AS small', role => 'small_results') AS replaced \gset
SELECT * FROM result(:replaced);
SELECT run('SELECT repeat(''x'', 100) FROM generate_series(1, 100); CREATE TEMP TABLE n (x int)', role => 'small_results') AS not_replaced \gset
SELECT err(format('SELECT * FROM result(%s)', :not_replaced));

-- What a worker cannot run: transaction control, COPY to or from the
-- client (55000, with what to do instead).
SELECT run('SELECT 1; COMMIT') AS committed \gset
SELECT err(format('SELECT * FROM result(%s)', :committed));
SELECT run('COPY (SELECT 1) TO STDOUT') AS copied \gset
SELECT err(format('SELECT * FROM result(%s)', :copied));

-- forget right after result: the run is done, and forget waits the
-- moment its process takes to end.
DO $$ DECLARE id bigint; BEGIN
  FOR i IN 1..20 LOOP
    id := run('SELECT 1');
    PERFORM * FROM result(id);
    IF NOT forget(id) THEN RAISE EXCEPTION 'forget(%) found nothing', id; END IF;
  END LOOP;
END $$;

-- forget drops a stopped worker's result and entry; then it is unknown.
SELECT forget(:id) AS forgotten, forget(:id) AS again;
SELECT err(format('SELECT * FROM result(%s)', :id));
SELECT count(*) FROM workers WHERE id = :id;

-- Errors: unknown id, a kind without results, another role's worker,
-- NULLs.
SELECT err('SELECT * FROM result(-1)');
SELECT launch('sleep', database => NULL) AS sleeper \gset
SELECT err(format('SELECT * FROM result(%s)', :sleeper));
SELECT err(format('SELECT forget(%s)', :sleeper));
SELECT terminate(:sleeper);
SELECT err('SELECT forget(-1)') AS forget_unknown;
SELECT err('SELECT cancel(-1)');
SELECT err('SELECT run(NULL)');
SELECT err('SELECT * FROM result(NULL)');
SELECT err('SELECT forget(NULL)');
SELECT err('SELECT cancel(NULL)');
SELECT err($$SELECT run('SELECT 1', queue => NULL)$$);
SELECT err($$SELECT run('SELECT 1', database => 'no_such_database')$$);
GRANT USAGE ON SCHEMA lightdb_bgw TO small_results;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lightdb_bgw TO small_results;
SET ROLE small_results;
SELECT err(format('SELECT * FROM lightdb_bgw.result(%s)', :none));
SELECT err(format('SELECT lightdb_bgw.cancel(%s)', :none));
SELECT err(format('SELECT lightdb_bgw.forget(%s)', :none));
RESET ROLE;

DROP FUNCTION err(text);
DROP FUNCTION sleeping(bigint);
DROP FUNCTION temp_blocks(text);
DROP VIEW public.every_type;
DROP VIEW public.every_scalar;
DROP TYPE numbered;
DROP TYPE mismatched;
DROP EXTENSION lightdb_bgw;
REVOKE ALL ON SCHEMA public FROM small_results;
DROP OWNED BY small_results;
DROP ROLE small_results;
