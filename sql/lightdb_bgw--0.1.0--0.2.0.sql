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
