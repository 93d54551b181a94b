//! `#[pg_test]`s of background SQL's errors: `result` raising a failed
//! run's error again (SQLSTATE, detail, hint, a context naming the
//! worker), refusing unknown ids, other kinds and other roles, the typed
//! form with a mismatched type, timeouts and `cancel` (57014), and
//! `forget`. (In the same server as `mod.rs`'s, in the schema `tests`,
//! where pgrx's runner calls them; pg_regress's `03_results` covers the
//! same from psql.)

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Creates `err(query)`: runs `query` and returns what it raised as
    /// `SQLSTATE|message|detail|hint|context`, or `ok`.
    fn with_err() {
        Spi::run(
            "CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$ \
             DECLARE d text; h text; c text; \
             BEGIN EXECUTE q; RETURN 'ok'; \
             EXCEPTION WHEN OTHERS OR query_canceled THEN \
               GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT, \
                                       c = PG_EXCEPTION_CONTEXT; \
               RETURN concat_ws('|', SQLSTATE, SQLERRM, d, h, c); \
             END $$",
        )
        .expect("err()");
    }

    fn err(query: &str) -> String {
        Spi::get_one_with_args::<String>("SELECT pg_temp.err($1)", &[query.into()])
            .expect("err()")
            .expect("a text")
    }

    fn run(sql: &str, timeout: Option<&str>) -> i64 {
        Spi::get_one_with_args::<i64>(
            "SELECT lightdb_bgw.run($1, database => 'postgres', timeout => $2::interval)",
            &[sql.into(), timeout.into()],
        )
        .expect("run")
        .expect("an id")
    }

    fn stopped(id: i64) {
        let status = Spi::get_one_with_args::<String>(
            "SELECT lightdb_bgw.wait_for_shutdown($1, '60s')",
            &[id.into()],
        )
        .expect("wait_for_shutdown");
        assert_eq!(status.as_deref(), Some("stopped"));
    }

    #[pg_test]
    fn result_raises_the_runs_own_error_with_detail_hint_and_the_worker() {
        with_err();
        let id = run(
            "DO $$ BEGIN RAISE EXCEPTION 'the run failed' USING DETAIL = 'what went wrong', \
             HINT = 'what to do', ERRCODE = 'check_violation'; END $$",
            None,
        );
        for _ in 0..2 {
            let raised = err(&format!("SELECT * FROM lightdb_bgw.result({id})"));
            let parts: Vec<&str> = raised.splitn(5, '|').collect();
            assert_eq!(
                parts[..4],
                ["23514", "the run failed", "what went wrong", "what to do"],
                "{raised}"
            );
            assert!(
                parts[4].contains(&format!("lightdb_bgw worker {id}")),
                "{raised}"
            );
        }
    }

    #[pg_test]
    fn result_refuses_unknown_ids_other_kinds_other_roles_and_mismatched_types() {
        with_err();
        assert!(
            err("SELECT * FROM lightdb_bgw.result(-1)").starts_with("42704|"),
            "unknown id"
        );
        let sleep = Spi::get_one::<i64>(
            "SELECT lightdb_bgw.launch('sleep', config => '{\"duration\": \"1ms\"}', \
             database => NULL)",
        )
        .expect("launch")
        .expect("an id");
        let other_kind = err(&format!("SELECT * FROM lightdb_bgw.result({sleep})"));
        assert!(
            other_kind.starts_with(&format!(
                "55000|worker {sleep} is a sleep worker; only sql workers keep results"
            )),
            "{other_kind}"
        );
        let id = run("SELECT 1 AS g", None);
        Spi::run("CREATE TYPE pg_temp.dated AS (g date)").expect("type");
        let mismatched = err(&format!(
            "SELECT * FROM lightdb_bgw.result({id}, NULL::pg_temp.dated)"
        ));
        assert!(mismatched.starts_with("22007|"), "{mismatched}");
        // Another role may neither read nor cancel nor forget it.
        Spi::run(
            "CREATE ROLE lightdb_bgw_pg_test_other; \
             GRANT USAGE ON SCHEMA lightdb_bgw TO lightdb_bgw_pg_test_other; \
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lightdb_bgw TO lightdb_bgw_pg_test_other",
        )
        .expect("role");
        Spi::run("SET LOCAL ROLE lightdb_bgw_pg_test_other").expect("set role");
        for (call, what) in [
            (
                "SELECT * FROM lightdb_bgw.result({id})",
                "read the result of",
            ),
            ("SELECT lightdb_bgw.cancel({id})", "cancel"),
            ("SELECT lightdb_bgw.forget({id})", "forget"),
        ] {
            let call = call.replace("{id}", &id.to_string());
            let refused = err(&call);
            assert!(
                refused.starts_with(&format!("42501|permission denied to {what} worker {id}")),
                "{call}: {refused}"
            );
        }
        Spi::run("RESET ROLE").expect("reset role");
        let rows = Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM lightdb_bgw.result($1)",
            &[id.into()],
        )
        .expect("result");
        assert_eq!(rows, Some(1), "the owner still reads it");
    }

    #[pg_test]
    fn timeouts_and_cancel_end_with_57014_and_forget_drops_the_result() {
        with_err();
        let slow = run("SELECT pg_sleep(30)", Some("100ms"));
        let timed_out = err(&format!("SELECT * FROM lightdb_bgw.result({slow})"));
        assert!(
            timed_out.starts_with("57014|canceling statement due to statement timeout"),
            "{timed_out}"
        );
        let waited = run("SELECT pg_sleep(30)", None);
        let result_timeout = err(&format!(
            "SELECT * FROM lightdb_bgw.result({waited}, timeout => '50ms')"
        ));
        assert!(
            result_timeout.starts_with(&format!(
                "57014|timed out waiting for the result of worker {waited}"
            )),
            "{result_timeout}"
        );
        let live = err(&format!("SELECT lightdb_bgw.forget({waited})"));
        assert!(live.starts_with("55000|"), "{live}");
        // cancel reaches the statement once it runs.
        let began = std::time::Instant::now();
        loop {
            Spi::run("SELECT pg_stat_clear_snapshot()").expect("clear snapshot");
            let sleeping = Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT FROM pg_stat_activity \
                 WHERE pid = lightdb_bgw.pid($1) AND wait_event = 'PgSleep')",
                &[waited.into()],
            )
            .expect("pg_stat_activity");
            if sleeping == Some(true) {
                break;
            }
            assert!(began.elapsed().as_secs() < 60, "the statement never ran");
            Spi::run("SELECT pg_sleep(0.01)").expect("sleep");
        }
        let sent =
            Spi::get_one_with_args::<bool>("SELECT lightdb_bgw.cancel($1)", &[waited.into()])
                .expect("cancel");
        assert_eq!(sent, Some(true));
        let cancelled = err(&format!("SELECT * FROM lightdb_bgw.result({waited})"));
        assert!(
            cancelled.starts_with("57014|canceling statement due to user request"),
            "{cancelled}"
        );
        stopped(waited);
        let forgot =
            Spi::get_one_with_args::<bool>("SELECT lightdb_bgw.forget($1)", &[waited.into()])
                .expect("forget");
        assert_eq!(forgot, Some(true));
        let gone = err(&format!("SELECT * FROM lightdb_bgw.result({waited})"));
        assert!(gone.starts_with("42704|"), "{gone}");
        let again =
            Spi::get_one_with_args::<bool>("SELECT lightdb_bgw.forget($1)", &[waited.into()])
                .expect("forget");
        assert_eq!(again, Some(false), "nothing left to forget");
    }
}
