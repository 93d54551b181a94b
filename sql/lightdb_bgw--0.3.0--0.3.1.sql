-- lightdb_bgw 0.3.0 -> 0.3.1: what `ALTER EXTENSION lightdb_bgw UPDATE` runs
-- on a database that has 0.3.0 (written by hand; tests/upgrade.rs compares
-- an updated database with a fresh install and fails on any difference).
--
-- 0.3.1 names launch_raw's fourth parameter `type`, as documented (it was
-- "r#type", after the Rust parameter, so `type => ...` was not found).
-- A parameter cannot be renamed in place: the function is made again.

DROP FUNCTION lightdb_bgw.launch_raw(text, text, text, text, bigint, bytea, text[], text, interval, boolean);
CREATE FUNCTION lightdb_bgw."launch_raw"(
	"library" TEXT,
	"function" TEXT,
	"name" TEXT,
	"type" TEXT DEFAULT NULL,
	"main_arg" bigint DEFAULT 0,
	"extra" bytea DEFAULT NULL,
	"flags" TEXT[] DEFAULT '{shmem_access,database_connection}',
	"start_time" TEXT DEFAULT 'recovery_finished',
	"restart_after" interval DEFAULT NULL,
	"wait" bool DEFAULT true
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'launch_raw_wrapper';
REVOKE ALL ON FUNCTION lightdb_bgw.launch_raw(text, text, text, text, bigint, bytea, text[], text, interval, boolean) FROM PUBLIC;
