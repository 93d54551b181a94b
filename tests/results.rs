//! Cluster tests of background SQL with results: a result outlives the
//! session that launched the run and is read by others, as often as they
//! like; an interval worker's result is its latest completed run and a
//! cancel only ends the run in progress; result memory comes back to its
//! start after 10,000 runs, after `forget` and after retention; a run's
//! process ends through the server's own exit callbacks; a run's error
//! keeps its own SQLSTATE, also one pgrx does not name, and the session's
//! statement_timeout holds in a run, and a failed run's result keeps its
//! error after the worker's exit; the rows of a run ended by a FATAL
//! as it commits are given back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use postgres::Client;

const LONG: Duration = Duration::from_secs(60);
/// Two sessions make the 10,000 runs.
const RUNS_PER_SESSION: usize = 5000;

fn result_memory(client: &mut Client) -> i64 {
    client
        .query_one("SELECT lightdb_bgw.result_memory()", &[])
        .unwrap()
        .get(0)
}

fn rows_of(client: &mut Client, id: i64) -> Vec<String> {
    client
        .query("SELECT r::text FROM lightdb_bgw.result($1) r", &[&id])
        .unwrap_or_else(|e| panic!("result({id}): {e:?}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_result_outlives_its_launcher_and_is_read_by_other_sessions() {
    let (cluster, mut admin) = Cluster::with_extension("results_sessions", &[]);
    admin
        .batch_execute("CREATE SEQUENCE ticks; CREATE TABLE gate (open boolean)")
        .unwrap();

    // The launcher starts a run that waits for a gate (held shut here),
    // and disconnects.
    admin.batch_execute("BEGIN; LOCK gate").unwrap();
    let id: i64 = {
        let mut launcher = cluster.connect("postgres");
        launcher
            .query_one(
                "SELECT lightdb_bgw.run('LOCK gate IN SHARE MODE; \
                 SELECT g, ''row '' || g AS label FROM generate_series(1, 3) g')",
                &[],
            )
            .unwrap()
            .get(0)
    };
    // Another session waits for the result while the run is held up.
    let port = cluster.port;
    let reader = std::thread::spawn(move || {
        let mut other = Cluster::detached(port).connect("postgres");
        rows_of(&mut other, id)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!reader.is_finished(), "result waits for the run to end");
    admin.batch_execute("COMMIT").unwrap();
    let expected = vec![
        r#"{"g": 1, "label": "row 1"}"#.to_string(),
        r#"{"g": 2, "label": "row 2"}"#.to_string(),
        r#"{"g": 3, "label": "row 3"}"#.to_string(),
    ];
    assert_eq!(reader.join().unwrap(), expected);
    // Any number of times, from any session.
    for _ in 0..3 {
        let mut third = cluster.connect("postgres");
        assert_eq!(rows_of(&mut third, id), expected);
    }

    // An interval worker: the result is its latest completed run; a cancel
    // ends only the run in progress, the next runs go on.
    let every = launch(
        &mut admin,
        "'sql', config => '{\"sql\": \"SELECT nextval(''ticks'') AS tick, pg_sleep(0.2)\", \
         \"interval\": \"50ms\"}'",
    );
    let first = rows_of(&mut admin, every);
    let later = eventually("a later run's result", LONG, || {
        let now = rows_of(&mut admin, every);
        (now != first).then_some(now)
    });
    let tick = |rows: &[String]| -> i64 {
        let v: serde_json::Value = serde_json::from_str(&rows[0]).unwrap();
        v["tick"].as_i64().unwrap()
    };
    assert!(tick(&later) > tick(&first));
    let cancelled_at = Instant::now();
    let sent: bool = eventually("a run in progress to cancel", LONG, || {
        let active: bool = admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                 WHERE pid = lightdb_bgw.pid($1) AND wait_event = 'PgSleep')",
                &[&every],
            )
            .unwrap()
            .get(0);
        active.then(|| {
            admin
                .query_one("SELECT lightdb_bgw.cancel($1)", &[&every])
                .unwrap()
                .get(0)
        })
    });
    assert!(sent);
    let err = eventually("the cancelled run is the latest", LONG, || {
        admin
            .query("SELECT * FROM lightdb_bgw.result($1)", &[&every])
            .err()
    });
    assert_eq!(sqlstate(&err), "57014", "{err:?}");
    eventually("runs go on after the cancel", LONG, || {
        admin
            .query("SELECT * FROM lightdb_bgw.result($1)", &[&every])
            .ok()
    });
    assert_eq!(status(&mut admin, every), "started");
    println!(
        "interval worker ran again {:?} after a cancel",
        cancelled_at.elapsed()
    );
    assert_eq!(stop_worker(&mut admin, every), "stopped");
}

#[test]
fn result_memory_comes_back_after_ten_thousand_runs_forget_and_retention() {
    let (cluster, mut admin) =
        Cluster::with_extension("results_memory", &[("max_worker_processes", "16")]);
    let start = result_memory(&mut admin);

    // 10,000 runs from two sessions, each result read once: the registry's
    // history makes room by reusing the oldest slots, freeing their results.
    let began = Instant::now();
    let port = cluster.port;
    let sessions: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Cluster::detached(port).connect("postgres");
                for _ in 0..RUNS_PER_SESSION {
                    let id: i64 = client
                        .query_one(
                            "SELECT lightdb_bgw.run('SELECT g FROM generate_series(1, 3) g')",
                            &[],
                        )
                        .unwrap()
                        .get(0);
                    let rows = client
                        .query("SELECT * FROM lightdb_bgw.result($1)", &[&id])
                        .unwrap();
                    assert_eq!(rows.len(), 3);
                }
            })
        })
        .collect();
    for s in sessions {
        s.join().unwrap();
    }
    let peak = result_memory(&mut admin);
    println!(
        "10,000 runs with results in {:?}; {peak} bytes of results kept after them",
        began.elapsed()
    );
    assert!(peak > start, "the latest results are kept");

    // forget frees what is left.
    let ids: Vec<i64> = admin
        .query(
            "SELECT id FROM lightdb_bgw.workers WHERE NOT is_static ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in ids {
        wait_for_shutdown(&mut admin, id);
        let dropped: bool = admin
            .query_one("SELECT lightdb_bgw.forget($1)", &[&id])
            .unwrap()
            .get(0);
        assert!(dropped);
    }
    assert_eq!(result_memory(&mut admin), start, "forget gives it all back");

    // Retention frees results by age, without anybody asking.
    admin
        .batch_execute("ALTER SYSTEM SET lightdb_bgw.result_retention = '1s'")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let kept: i64 = admin
        .query_one(
            "SELECT lightdb_bgw.run('SELECT repeat(''x'', 1000) FROM generate_series(1, 50)')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows_of(&mut admin, kept).len(), 50);
    assert!(result_memory(&mut admin) > start);
    eventually("the result expires", Duration::from_secs(10), || {
        (result_memory(&mut admin) == start).then_some(())
    });
    let err = admin
        .query("SELECT * FROM lightdb_bgw.result($1)", &[&kept])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "55000", "{err:?}");
    assert!(
        hint_of(&err).contains("lightdb_bgw.result_retention"),
        "{err:?}"
    );
}

/// A run's process ends through the server's own exit callbacks, and only
/// then without the C library's (see `process.rs`): what its session left
/// behind, a temporary table and a session advisory lock, is gone once
/// the run reads stopped, and the exit code is the one it left with.
#[test]
fn a_runs_session_is_cleaned_up_by_the_servers_exit_callbacks() {
    let (_cluster, mut admin) = Cluster::with_extension("results_exit", &[]);
    let id: i64 = admin
        .query_one(
            "SELECT lightdb_bgw.run($$CREATE TEMP TABLE left_behind (x int); \
             SELECT pg_advisory_lock(4242); SELECT 1 AS done$$)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows_of(&mut admin, id), vec![r#"{"done": 1}"#.to_string()]);
    assert_eq!(wait_for_shutdown(&mut admin, id), "stopped");
    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_class WHERE relname = 'left_behind'), \
                    pg_try_advisory_lock(4242), \
                    (SELECT last_exit FROM lightdb_bgw.workers WHERE id = $1)",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "the run's temporary table is gone");
    assert!(row.get::<_, bool>(1), "the run's advisory lock is released");
    assert_eq!(row.get::<_, Option<i32>>(2), Some(0), "exit code 0");
}

#[test]
fn a_runs_error_keeps_its_own_code_and_statement_timeout_holds() {
    let (_cluster, mut admin) = Cluster::with_extension("results_codes", &[]);
    let failing = |admin: &mut Client, sql: &str| -> postgres::Error {
        let id: i64 = admin
            .query_one("SELECT lightdb_bgw.run($1)", &[&sql])
            .unwrap()
            .get(0);
        admin
            .query("SELECT * FROM lightdb_bgw.result($1)", &[&id])
            .expect_err(sql)
    };

    // Codes the server knows by no name keep their code, detail and hint,
    // in result() and in last_error.
    for code in ["P0123", "U0001", "22XYZ"] {
        let sql = format!(
            "DO $$BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = 'custom {code}', \
             DETAIL = 'the detail', HINT = 'the hint'; END$$"
        );
        let err = failing(&mut admin, &sql);
        let db = db_error(&err);
        assert_eq!(sqlstate(&err), code, "{err:?}");
        assert_eq!(db.message(), format!("custom {code}"));
        assert_eq!(db.detail(), Some("the detail"));
        assert_eq!(db.hint(), Some("the hint"));
        let recorded: String = admin
            .query_one(
                "SELECT last_error FROM lightdb_bgw.workers ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(
            recorded.starts_with(&format!("{code}: custom")),
            "{recorded}"
        );
    }

    // statement_timeout set by the text, and set for the role, holds as it
    // does in a session of that role (57014).
    let err = failing(
        &mut admin,
        "SET statement_timeout = '100ms'; SELECT pg_sleep(5)",
    );
    assert_eq!(sqlstate(&err), "57014", "{err:?}");
    admin
        .batch_execute("CREATE ROLE carol LOGIN; ALTER ROLE carol SET statement_timeout = '100ms'")
        .unwrap();
    let began = Instant::now();
    let id: i64 = admin
        .query_one(
            "SELECT lightdb_bgw.run('SELECT pg_sleep(5)', role => 'carol')",
            &[],
        )
        .unwrap()
        .get(0);
    let err = admin
        .query("SELECT * FROM lightdb_bgw.result($1)", &[&id])
        .expect_err("carol's statement_timeout");
    assert_eq!(sqlstate(&err), "57014", "{err:?}");
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );

    // A failed run's result keeps that run's error, also once the worker
    // is terminated and its exit records an error of its own (57P01).
    let every = launch(
        &mut admin,
        "'sql', config => '{\"sql\": \"SELECT 1/0\", \"interval\": \"1h\"}'",
    );
    let err = admin
        .query("SELECT * FROM lightdb_bgw.result($1)", &[&every])
        .expect_err("division by zero");
    assert_eq!(sqlstate(&err), "22012", "{err:?}");
    admin
        .query_one("SELECT lightdb_bgw.terminate($1)", &[&every])
        .unwrap();
    assert_eq!(wait_for_shutdown(&mut admin, every), "stopped");
    let err = admin
        .query("SELECT * FROM lightdb_bgw.result($1)", &[&every])
        .expect_err("still division by zero");
    assert_eq!(sqlstate(&err), "22012", "{err:?}");
    assert_eq!(db_error(&err).message(), "division by zero");
}

/// Rows kept in shared memory before a run commits are freed when the run
/// ends in a FATAL during its commit (a terminate while a deferred trigger
/// runs), which ends the process without unwinding.
#[test]
fn rows_of_a_run_terminated_while_it_commits_are_freed() {
    let (_cluster, mut admin) = Cluster::with_extension("results_commit_fatal", &[]);
    admin
        .batch_execute(
            "CREATE TABLE at_commit (x int); \
             CREATE FUNCTION slow_at_commit() RETURNS trigger LANGUAGE plpgsql AS \
               $$BEGIN PERFORM pg_sleep(60); RETURN NULL; END$$; \
             CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON at_commit \
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_at_commit();",
        )
        .unwrap();
    let before = result_memory(&mut admin);
    for _ in 0..3 {
        let id: i64 = admin
            .query_one(
                "SELECT lightdb_bgw.run($$SELECT repeat('x', 1000000) AS r; \
                 INSERT INTO at_commit VALUES (1)$$)",
                &[],
            )
            .unwrap()
            .get(0);
        // Its rows are stashed and the commit sleeps in the trigger.
        eventually("the run to sleep in its commit", LONG, || {
            admin
                .query_one(
                    "SELECT a.wait_event = 'PgSleep' FROM lightdb_bgw.workers w \
                     JOIN pg_stat_activity a ON a.pid = w.pid WHERE w.id = $1",
                    &[&id],
                )
                .ok()
                .and_then(|r| r.get::<_, Option<bool>>(0))
                .filter(|&sleeping| sleeping)
        });
        assert!(
            result_memory(&mut admin) >= before + 1_000_000,
            "the run's rows are kept while it commits"
        );
        admin
            .query_one("SELECT lightdb_bgw.terminate($1)", &[&id])
            .unwrap();
        assert_eq!(wait_for_shutdown(&mut admin, id), "stopped");
        assert_eq!(
            result_memory(&mut admin),
            before,
            "the rows of a run that never committed are given back"
        );
    }
}
