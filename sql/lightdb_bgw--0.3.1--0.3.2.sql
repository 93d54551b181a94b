-- lightdb_bgw 0.3.1 -> 0.3.2: what `ALTER EXTENSION lightdb_bgw UPDATE` runs
-- on a database that has 0.3.1 (written by hand; tests/upgrade.rs compares
-- an updated database with a fresh install and fails on any difference).
--
-- 0.3.2: the typed result calls pg_catalog.jsonb_populate_record by its
-- schema. Unqualified, a function of that name and an exact argument type
-- that another role created in a schema on the caller's search_path was
-- called instead, with the caller's rights.

CREATE OR REPLACE FUNCTION lightdb_bgw.result(id bigint, rowtype anyelement, timeout interval DEFAULT NULL)
RETURNS SETOF anyelement
LANGUAGE sql VOLATILE PARALLEL RESTRICTED
AS $$ SELECT pg_catalog.jsonb_populate_record(rowtype, r) FROM lightdb_bgw.result(id, timeout) AS r $$;
