//! `#[pg_test]`s: run inside one server that preloads the library with two
//! static counters in database `postgres` (see `pg_test` in lib.rs).
//!
//! Each test runs in a transaction that is rolled back, which workers cannot
//! see; rows the counters must fold are written through `dblink`, a second
//! connection that commits.

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

    fn dblink() {
        Spi::run("CREATE EXTENSION IF NOT EXISTS dblink").expect("dblink");
        // dblink's libpq does not know this test server's socket and port.
        Spi::run(
            "SELECT set_config('lightdb_bgw_test.conn', format('dbname=postgres host=%s port=%s', \
             split_part(current_setting('unix_socket_directories'), ',', 1), \
             current_setting('port')), true)",
        )
        .expect("connection string");
    }

    /// The counter total in `postgres`, read over a fresh connection.
    fn total(table: &str) -> Option<i64> {
        Spi::get_one::<i64>(&format!(
            "SELECT v FROM dblink(current_setting('lightdb_bgw_test.conn'), \
             $$SELECT value FROM {table} WHERE type = 'total'$$) AS t(v bigint)"
        ))
        .expect("read total")
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
        dblink();
        let table = "lightdb_bgw_counter_2.counted";
        eventually(
            "counter 2 created its table with a total row",
            "SELECT EXISTS (SELECT FROM dblink(current_setting('lightdb_bgw_test.conn'), \
             $$SELECT 1 FROM lightdb_bgw_counter_2.counted WHERE type = 'total'$$) AS t(x int))",
        );
        let before = total(table).expect("total row exists");
        Spi::run(&format!(
            "SELECT dblink_exec(current_setting('lightdb_bgw_test.conn'), \
             $$INSERT INTO {table} VALUES ('delta', 5), ('delta', 37)$$)"
        ))
        .expect("insert deltas");
        eventually(
            "deltas folded into the total",
            &format!(
                "SELECT v = {} FROM dblink(current_setting('lightdb_bgw_test.conn'), \
                 $$SELECT (SELECT value FROM {table} WHERE type = 'total') \
                   + 1000000 * (SELECT count(*) FROM {table} WHERE type = 'delta')$$) \
                 AS t(v bigint)",
                before + 42
            ),
        );
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
                 sql=sql/interval,supervisor=children/child_kind/child_config"
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
            let _ = crate::control::register(def.clone(), "pg_test", authorised, false);
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
}
