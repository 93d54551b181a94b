//! `#[pg_test]`s of the `workers` listing: the rows it forms itself read
//! back as given, and the session's listing memory left clean by
//! listings cut short. (In the same server as `mod.rs`'s, and like them
//! in the schema `tests`, where pgrx's runner calls them.)

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Listings cut short by an error (each caught in its subtransaction)
    /// leave nothing in the session's listing memory: once no query holds
    /// a listing, that memory is reset.
    #[pg_test]
    fn listings_cut_short_by_errors_leave_no_memory_behind() {
        for _ in 0..3 {
            Spi::run(
                "SELECT lightdb_bgw.wait_for_shutdown(lightdb_bgw.launch('sleep', \
                 config => '{\"duration\": \"1ms\"}', database => NULL))",
            )
            .expect("launch");
        }
        Spi::run(
            "DO $$ BEGIN FOR i IN 1..20 LOOP BEGIN \
               PERFORM * FROM lightdb_bgw.workers WHERE 1 / (id - id) = 0; \
             EXCEPTION WHEN division_by_zero THEN NULL; END; END LOOP; END $$",
        )
        .expect("listings cut short");
        let used = Spi::get_one::<i64>(
            "SELECT used_bytes FROM pg_backend_memory_contexts \
             WHERE name = 'lightdb_bgw listing'",
        )
        .expect("memory contexts")
        .expect("the session's listing memory exists");
        assert!(
            used < 1024,
            "{used} bytes of the listing memory still used after every listing ended"
        );
        let listed = Spi::get_one::<i64>("SELECT count(*) FROM lightdb_bgw.workers")
            .expect("listing")
            .unwrap_or(0);
        assert!(listed >= 3, "the next listing shows the workers: {listed}");
    }

    /// The listing forms its rows itself (`heap_row.rs`): values on each
    /// side of the 1-byte header's limit, long ones, a by-reference
    /// interval after texts and NULLs between them read back as given.
    #[pg_test]
    fn workers_rows_read_back_every_value_at_its_length() {
        // "P0001: " and the message: 126 bytes (a 1-byte header), 127 (a
        // 4-byte one, aligned) and 3,007.
        for n in [119, 120, 3000] {
            let id = Spi::get_one_with_args::<i64>(
                "SELECT lightdb_bgw.run(format('DO $x$ BEGIN RAISE EXCEPTION %L; END $x$', \
                 repeat('e', $1)), database => 'postgres')",
                &[n.into()],
            )
            .expect("run")
            .expect("id");
            let read_back = Spi::get_one_with_args::<bool>(
                "SELECT lightdb_bgw.wait_for_shutdown($1, '30s') = 'stopped' \
                 AND (SELECT last_error = 'P0001: ' || repeat('e', $2) AND runs = 1 \
                 AND kind = 'sql' AND status = 'stopped' AND last_exit = 1 \
                 AND restart_after IS NULL AND pid IS NULL \
                 FROM lightdb_bgw.workers WHERE id = $1)",
                &[id.into(), n.into()],
            )
            .expect("the worker's row");
            assert_eq!(read_back, Some(true), "an error of {n} bytes");
        }
        let sql = format!("SELECT 1 -- {}", "x".repeat(300));
        let id = Spi::get_one_with_args::<i64>(
            "SELECT lightdb_bgw.launch('sql', database => 'postgres', \
             restart_after => '2 min', \
             config => jsonb_build_object('sql', $1::text, 'interval', '1h'))",
            &[sql.as_str().into()],
        )
        .expect("launch")
        .expect("id");
        let read_back = Spi::get_one_with_args::<bool>(
            "SELECT restart_after = '2 min' AND config->>'sql' = $2 \
             AND (config->>'interval')::interval = '1h' AND database = 'postgres' \
             AND role = current_user AND name = 'lightdb_bgw sql ' || id \
             AND queue_position IS NULL AND is_static = false \
             FROM lightdb_bgw.workers WHERE id = $1",
            &[id.into(), sql.as_str().into()],
        )
        .expect("the worker's row");
        assert_eq!(read_back, Some(true));
        Spi::run_with_args("SELECT lightdb_bgw.terminate($1)", &[id.into()]).expect("terminate");
    }
}
