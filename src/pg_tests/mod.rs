//! `#[pg_test]`s: run inside one server that preloads the library with two
//! static counters in database `postgres` (see `pg_test` in lib.rs).
//!
//! Each test runs in a transaction that is rolled back, which workers cannot
//! see, and in database `pgrx_tests`, not the counters' `postgres`. What must
//! be committed there, or read from there, goes through a once-only `sql`
//! worker of lightdb_bgw itself (every build has it; `dblink` is contrib,
//! which not every server ships).

mod listing;
mod results;

#[pgrx::pg_schema]
mod tests {
    use std::time::{Duration, Instant};

    use pgrx::prelude::*;

    const DEADLINE: Duration = Duration::from_secs(60);

    /// Polls `query` (a boolean) until it is true or the deadline passes.
    fn eventually(what: &str, query: &str) {
        let began = Instant::now();
        loop {
            Spi::run("SELECT pg_stat_clear_snapshot()").expect("clear snapshot");
            if Spi::get_one::<bool>(query).expect(query) == Some(true) {
                return;
            }
            assert!(
                began.elapsed() < DEADLINE,
                "{what}: not true after {DEADLINE:?}: {query}"
            );
            Spi::run("SELECT pg_sleep(0.05)").expect("sleep");
        }
    }

    /// Runs `sql` in database `postgres` as a once-only `sql` worker (its
    /// own transaction, committed on success) and waits until it has
    /// stopped. Returns how many rows its run returned or changed (the
    /// registry's `last_run_rows`), or the error the worker recorded.
    fn in_postgres(sql: &str) -> Result<i64, String> {
        let id = Spi::get_one_with_args::<i64>(
            "SELECT lightdb_bgw.launch('sql', config => jsonb_build_object('sql', $1::text), \
             database => 'postgres')",
            &[sql.into()],
        )
        .expect("launch an sql worker")
        .expect("worker id");
        let status = Spi::get_one_with_args::<String>(
            "SELECT lightdb_bgw.wait_for_shutdown($1, '30s')",
            &[id.into()],
        )
        .expect("wait_for_shutdown");
        assert_eq!(status.as_deref(), Some("stopped"), "sql worker for: {sql}");
        let (rows, error) = Spi::get_two_with_args::<i64, String>(
            "SELECT last_run_rows, last_error FROM lightdb_bgw.workers WHERE id = $1",
            &[id.into()],
        )
        .expect("the worker's registry row");
        match error {
            Some(error) => Err(error),
            None => Ok(rows.unwrap_or(0)),
        }
    }

    /// The counter total in `postgres`: the worker returns `total + 1`
    /// rows (`generate_series(0, value)`), none without a total row.
    fn total(table: &str) -> Option<i64> {
        let rows = in_postgres(&format!(
            "SELECT generate_series(0, value) FROM {table} WHERE type = 'total'"
        ))
        .expect("read the total");
        (rows > 0).then_some(rows - 1)
    }

    /// Polls `check` until it is true or the deadline passes.
    fn eventually_in_postgres(what: &str, mut check: impl FnMut() -> bool) {
        let began = Instant::now();
        while !check() {
            assert!(
                began.elapsed() < DEADLINE,
                "{what}: not true after {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[pg_test]
    fn static_counters_run_and_show_in_pg_stat_activity() {
        eventually(
            "two static counters in pg_stat_activity",
            "SELECT count(*) = 2 FROM pg_stat_activity \
             WHERE backend_type = 'lightdb_bgw' \
               AND application_name IN ('lightdb_bgw counter 1', 'lightdb_bgw counter 2') \
               AND datname = 'postgres'",
        );
        // The registry agrees with the server on who is running.
        eventually(
            "workers view matches pg_stat_activity",
            "SELECT count(*) = 2 FROM lightdb_bgw.workers w \
             JOIN pg_stat_activity a ON a.pid = w.pid \
             WHERE w.kind = 'counter' AND w.status = 'started' AND w.is_static \
               AND w.database = 'postgres' AND a.backend_type = 'lightdb_bgw'",
        );
        let names = Spi::get_one::<String>(
            "SELECT string_agg(name || ':' || id, ',' ORDER BY id) FROM lightdb_bgw.workers WHERE is_static",
        )
        .expect("names");
        assert_eq!(
            names.as_deref(),
            Some("lightdb_bgw counter 1:1,lightdb_bgw counter 2:2")
        );
    }

    #[pg_test]
    fn static_counter_folds_a_committed_delta() {
        let table = "lightdb_bgw_counter_2.counted";
        eventually_in_postgres("counter 2 created its table with a total row", || {
            in_postgres(&format!("SELECT 1 FROM {table} WHERE type = 'total'")) == Ok(1)
        });
        let before = total(table).expect("total row exists");
        assert_eq!(
            in_postgres(&format!(
                "INSERT INTO {table} VALUES ('delta', 5), ('delta', 37)"
            )),
            Ok(2),
            "deltas inserted and committed"
        );
        eventually_in_postgres("deltas folded into the total", || {
            in_postgres(&format!("SELECT 1 FROM {table} WHERE type = 'delta'")) == Ok(0)
        });
        assert_eq!(total(table), Some(before + 42));
    }

    #[pg_test]
    fn counters_report_their_step() {
        eventually(
            "counter shows its fold query or idle state",
            "SELECT bool_and(state IN ('idle', 'active') AND query LIKE '%lightdb_bgw_counter_%') \
                    AND count(*) = 2 \
             FROM pg_stat_activity WHERE backend_type = 'lightdb_bgw'",
        );
    }

    #[pg_test]
    fn run_and_result_return_the_last_rows_as_jsonb_twice() {
        let id = Spi::get_one::<i64>(
            "SELECT lightdb_bgw.run('SELECT 1 AS one; SELECT g, g * g AS square \
             FROM generate_series(1, 3) g', database => 'postgres')",
        )
        .expect("run")
        .expect("id");
        for _ in 0..2 {
            let rows = Spi::get_one_with_args::<String>(
                "SELECT string_agg(r::text, ';') FROM lightdb_bgw.result($1) r",
                &[id.into()],
            )
            .expect("result");
            assert_eq!(
                rows.as_deref(),
                Some(r#"{"g": 1, "square": 1};{"g": 2, "square": 4};{"g": 3, "square": 9}"#)
            );
        }
        Spi::run("CREATE TYPE squared AS (g int, square bigint)").expect("type");
        let typed = Spi::get_one_with_args::<i64>(
            "SELECT sum(square)::bigint FROM lightdb_bgw.result($1, NULL::squared)",
            &[id.into()],
        )
        .expect("typed result");
        assert_eq!(typed, Some(14));
    }

    #[pg_test(error = "division by zero")]
    fn result_raises_the_failed_runs_error_again() {
        let id =
            Spi::get_one::<i64>("SELECT lightdb_bgw.run('SELECT 1 / 0', database => 'postgres')")
                .expect("run")
                .expect("id");
        let _ = Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM lightdb_bgw.result($1)",
            &[id.into()],
        );
    }

    #[pg_test]
    fn kinds_lists_the_builtin_kinds() {
        let kinds = Spi::get_one::<String>(
            "SELECT string_agg(kind || '=' || array_to_string(config_keys, '/'), ',' ORDER BY kind) \
             FROM lightdb_bgw.kinds()",
        )
        .expect("kinds");
        assert_eq!(
            kinds.as_deref(),
            Some(
                "counter=naptime/schema/table/notify,sleep=duration/exit_code,\
                 sql=sql/interval/timeout,supervisor=children/child_kind/child_config"
            )
        );
    }

    #[pg_test]
    fn settings_are_visible() {
        assert_eq!(
            Spi::get_one::<String>("SHOW lightdb_bgw.static_workers")
                .unwrap()
                .as_deref(),
            Some("counter:2")
        );
        assert_eq!(
            Spi::get_one::<String>("SHOW lightdb_bgw.naptime")
                .unwrap()
                .as_deref(),
            Some("200ms")
        );
        assert_eq!(
            Spi::get_one::<String>("SHOW lightdb_bgw.max_workers")
                .unwrap()
                .as_deref(),
            Some("64")
        );
    }

    #[pg_test(error = "unrecognized configuration parameter \"lightdb_bgw.no_such_setting\"")]
    fn the_prefix_is_reserved() {
        Spi::run("SHOW lightdb_bgw.no_such_setting").unwrap();
    }

    /// A dynamic worker launched, seen and stopped from inside a session.
    #[pg_test]
    fn launch_status_and_terminate() {
        let id = Spi::get_one::<i64>("SELECT lightdb_bgw.launch('sleep', database => NULL)")
            .unwrap()
            .unwrap();
        assert_eq!(
            Spi::get_one_with_args::<String>("SELECT lightdb_bgw.status($1)", &[id.into()])
                .unwrap()
                .as_deref(),
            Some("started")
        );
        let pid = Spi::get_one_with_args::<i32>("SELECT lightdb_bgw.pid($1)", &[id.into()])
            .unwrap()
            .unwrap();
        assert!(pid > 0);
        assert_eq!(
            Spi::get_one_with_args::<bool>("SELECT lightdb_bgw.terminate($1)", &[id.into()])
                .unwrap(),
            Some(true)
        );
        assert_eq!(
            Spi::get_one_with_args::<String>(
                "SELECT lightdb_bgw.wait_for_shutdown($1, '30s')",
                &[id.into()]
            )
            .unwrap()
            .as_deref(),
            Some("stopped")
        );
        assert_eq!(
            Spi::get_one_with_args::<i32>("SELECT lightdb_bgw.pid($1)", &[id.into()]).unwrap(),
            None
        );
    }

    #[pg_test(error = "unknown kind \"bogus\"")]
    fn unknown_kind_is_refused() {
        Spi::run("SELECT lightdb_bgw.launch('bogus')").unwrap();
    }

    #[pg_test]
    fn execute_is_not_granted_to_public() {
        let granted = Spi::get_one::<bool>(
            "SELECT bool_or(has_function_privilege('public', p.oid, 'EXECUTE')) \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'lightdb_bgw'",
        )
        .unwrap();
        assert_eq!(granted, Some(false));
    }

    /// An ERROR raised inside the server's registration call (here its own
    /// check that a database worker cannot start at postmaster start, which
    /// `launch` refuses before) unwinds through the reservation, which
    /// gives the registry slot back.
    #[pg_test]
    fn an_error_inside_registration_gives_the_slot_back() {
        use crate::authz::Authorised;
        use crate::spec::{Kind, StartTime};
        use crate::workerdef::WorkerDef;
        let before = crate::registry::list().len();
        let def = WorkerDef {
            kind: Kind::Sleep,
            name: "registration that fails".into(),
            database: Some("postgres".into()),
            role: None,
            start_time: StartTime::PostmasterStart,
            restart_after: None,
            config: crate::config::KindConfig::defaults(Kind::Sleep),
        };
        let authorised = Authorised {
            role_oid: 10,
            database_oid: 5,
        };
        let raised = PgTryBuilder::new(|| {
            let _ = crate::control::register(
                def.clone(),
                "pg_test",
                authorised,
                false,
                &crate::registry::Admission::unchecked(),
            );
            false
        })
        .catch_others(|_| true)
        .execute();
        assert!(raised, "the server refused the registration with an ERROR");
        assert_eq!(
            crate::registry::list().len(),
            before,
            "no slot is left taken"
        );
    }
    /// Messages the hook installed before ours saw.
    static SEEN_BEFORE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    #[pg_guard]
    unsafe extern "C-unwind" fn hook_before_ours(edata: *mut pg_sys::ErrorData) {
        // SAFETY: the server passes the report being emitted, valid now.
        let message = unsafe { std::ffi::CStr::from_ptr((*edata).message) };
        if let Ok(mut seen) = SEEN_BEFORE.lock() {
            seen.push(message.to_string_lossy().into_owned());
        }
    }

    /// Our `emit_log_hook` (installed in every worker process) passes each
    /// report on to the hook another library installed before it.
    #[pg_test]
    fn the_log_hook_chains_to_the_one_before_it() {
        // SAFETY: this backend's only thread; the hook it had is put back.
        let had = unsafe {
            let had = pg_sys::emit_log_hook;
            pg_sys::emit_log_hook = Some(hook_before_ours);
            had
        };
        crate::reported::install();
        warning!("lightdb_bgw pg_test: a report for both hooks");
        // SAFETY: as above.
        unsafe { pg_sys::emit_log_hook = had };
        let seen = SEEN_BEFORE.lock().unwrap().clone();
        assert_eq!(seen, ["lightdb_bgw pg_test: a report for both hooks"]);
    }
}
