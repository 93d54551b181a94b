//! Cluster tests of processes given back: a spare's `sleep` worker, or its
//! `sql` worker that runs once, gives its process back when it stops, and
//! the process waits as a spare for the next launch instead of the
//! postmaster forking a new one. What a user must be able to rely on: the
//! worker reads as stopped exactly as one whose process ended; a process
//! connected to a database runs only workers of the same role in the same
//! database, its session reset in between as `DISCARD ALL` does; a worker
//! busy in a statement still ends its process when terminated; a cancel
//! stays with its run; and such processes never stand in the way of
//! `DROP DATABASE`.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(60);

/// Pids of the cluster's idle spares.
fn spares(cluster: &Cluster) -> HashSet<i32> {
    spare_pids(cluster.postmaster_pid())
}

fn pid(client: &mut Client, id: i64) -> i32 {
    worker_pid(client, id).unwrap_or_else(|| panic!("worker {id} has no pid"))
}

/// `run(sql)` as `client`, in `database` (NULL: the current one); waits
/// until the worker has stopped (its process is a spare again by then)
/// and returns the result's only row.
fn run_once(client: &mut Client, sql: &str, database: Option<&str>) -> serde_json::Value {
    let id: i64 = client
        .query_one(
            "SELECT lightdb_bgw.run($1, database => coalesce($2, current_database()))",
            &[&sql, &database],
        )
        .unwrap()
        .get(0);
    let text: String = client
        .query_one(
            "SELECT lightdb_bgw.result($1, '30s'::interval)::text",
            &[&id],
        )
        .unwrap_or_else(|e| panic!("result of {sql}: {e:?}"))
        .get(0);
    let row: serde_json::Value = serde_json::from_str(&text).expect("a jsonb object");
    let reached = wait_for_shutdown(client, id);
    assert_eq!(reached, "stopped");
    row
}

/// `run('SELECT pg_sleep(60)')` as `client`: its id, and its pid once it
/// is under way.
fn long_run(client: &mut Client) -> (i64, i32) {
    let id: i64 = client
        .query_one("SELECT lightdb_bgw.run('SELECT pg_sleep(60)')", &[])
        .unwrap()
        .get(0);
    let pid = eventually("the run is under way", LONG, || worker_pid(client, id));
    (id, pid)
}

/// The SQLSTATE `result(id)` raises for a run that failed.
fn failed_with(client: &mut Client, id: i64) -> String {
    let err = client
        .query("SELECT lightdb_bgw.result($1, '30s'::interval)", &[&id])
        .expect_err("the run failed");
    sqlstate(&err)
}

fn backend_pid(row: &serde_json::Value) -> i64 {
    row["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in {row}"))
}

#[test]
fn sleep_workers_give_their_process_back() {
    let (cluster, mut admin) = Cluster::with_extension(
        "given_back_sleep",
        &[
            ("max_worker_processes", "12"),
            ("lightdb_bgw.spare_workers", "2"),
        ],
    );
    eventually("two idle spares", LONG, || {
        (spares(&cluster).len() == 2).then_some(())
    });

    // Terminated: stopped as if its process had ended, the process a
    // spare again.
    let first = launch(&mut admin, "'sleep', database => NULL");
    let first_pid = pid(&mut admin, first);
    assert_eq!(stop_worker(&mut admin, first), "stopped");
    let (last_exit, last_error, shown_pid): (Option<i32>, Option<String>, Option<i32>) = {
        let row = admin
            .query_one(
                "SELECT last_exit, last_error, pid FROM lightdb_bgw.workers WHERE id = $1",
                &[&first],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!((last_exit, shown_pid), (Some(1), None));
    let last_error = last_error.expect("a terminated worker records why");
    assert!(
        last_error.starts_with("57P01: terminating background worker"),
        "{last_error}"
    );
    assert_eq!(status(&mut admin, first), "stopped");
    assert!(spares(&cluster).contains(&first_pid), "given back");
    // A terminate or a wait afterwards does not reach the process.
    assert_eq!(stop_worker(&mut admin, first), "stopped");
    assert!(process_alive(first_pid));

    // Lifecycle after lifecycle, the same few processes: none is forked
    // for each worker.
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let id = launch(&mut admin, "'sleep', database => NULL");
        seen.insert(pid(&mut admin, id));
        assert_eq!(stop_worker(&mut admin, id), "stopped");
    }
    assert!(seen.len() <= 4, "processes used: {seen:?}");

    // Ended by itself: its own exit code, no error.
    let timed = launch(
        &mut admin,
        "'sleep', config => '{\"duration\": \"50ms\"}', database => NULL",
    );
    assert_eq!(wait_for_shutdown(&mut admin, timed), "stopped");
    let row = admin
        .query_one(
            "SELECT last_exit, last_error FROM lightdb_bgw.workers WHERE id = $1",
            &[&timed],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), Some(0));
    assert_eq!(row.get::<_, Option<String>>(1), None);

    // Beyond the setting, processes given back are let go once idle a
    // while.
    eventually("back to two idle spares", LONG, || {
        (spares(&cluster).len() == 2).then_some(())
    });
}

#[test]
fn a_connected_process_serves_only_its_role_in_its_database_reset_each_time() {
    let (cluster, mut admin) = Cluster::with_extension(
        "given_back_sql",
        &[
            ("max_worker_processes", "16"),
            // Room for the connected processes the runs below give back
            // (gb_user's, gb_other's, gb_super's before and after it is
            // demoted, gb_user's in gb_db): a connected process is kept
            // only while fewer than the setting wait, and is let go after
            // 5 s idle, which a slow run of this test may or may not
            // reach before its last one.
            ("lightdb_bgw.spare_workers", "6"),
        ],
    );
    admin
        .batch_execute("CREATE ROLE gb_user LOGIN; CREATE ROLE gb_other LOGIN")
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE gb_db OWNER gb_user")
        .unwrap();
    grant_all(&mut admin, "gb_user, gb_other");
    let mut user = cluster.connect_as("postgres", "gb_user");

    // A run that leaves every kind of session state behind...
    let first = run_once(
        &mut user,
        "SET work_mem = '7MB'; CREATE TEMP TABLE t (x int); \
         SELECT pg_advisory_lock(42); PREPARE p AS SELECT 1; \
         SELECT pg_backend_pid() AS pid",
        None,
    );
    // ...and the next run of the same role in the same database: the same
    // process, none of that state.
    let second = run_once(
        &mut user,
        "SELECT pg_backend_pid() AS pid, current_user AS who, \
         current_setting('work_mem') AS work_mem, \
         (SELECT count(*) FROM pg_prepared_statements) AS prepared, \
         (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
          AND pid = pg_backend_pid()) AS locks, \
         to_regclass('pg_temp.t') IS NULL AS no_temp",
        None,
    );
    let process = backend_pid(&first);
    assert_eq!(backend_pid(&second), process, "{first} then {second}");
    // Given back, the process shows nothing of the run it ran.
    eventually("the process given back to show no query", LONG, || {
        let shown: Option<String> = admin
            .query_one(
                "SELECT query FROM pg_stat_activity WHERE pid = $1",
                &[&(process as i32)],
            )
            .ok()?
            .get(0);
        (shown.as_deref() == Some("")).then_some(())
    });
    assert_eq!(second["who"], "gb_user");
    assert_eq!(second["work_mem"], "4MB");
    for key in ["prepared", "locks"] {
        assert_eq!(second[key], 0, "{key}: {second}");
    }
    assert_eq!(second["no_temp"], true);

    // Another role, or a worker without a database, never gets it.
    let mut other = cluster.connect_as("postgres", "gb_other");
    let theirs = run_once(&mut other, "SELECT pg_backend_pid() AS pid", None);
    assert_ne!(backend_pid(&theirs), process);
    let sleeper = launch(&mut admin, "'sleep', database => NULL");
    assert_ne!(i64::from(pid(&mut admin, sleeper)), process);
    assert_eq!(stop_worker(&mut admin, sleeper), "stopped");

    // A cancel stays with the run it was meant for: that run fails with
    // 57014, the process is given back, and its next run is not touched.
    let (cancelled, cancelled_pid) = long_run(&mut user);
    eventually("cancel reaches the statement", LONG, || {
        user.query_one("SELECT lightdb_bgw.cancel($1)", &[&cancelled])
            .unwrap()
            .get::<_, bool>(0)
            .then_some(())
    });
    assert_eq!(failed_with(&mut user, cancelled), "57014");
    let after = run_once(&mut user, "SELECT pg_backend_pid() AS pid, 1 AS one", None);
    assert_eq!(after["one"], 1);
    assert!(process_alive(cancelled_pid));

    // Busy in a statement, a terminated worker ends its process as ever.
    let (busy, busy_pid) = long_run(&mut user);
    assert_eq!(stop_worker(&mut user, busy), "stopped");
    eventually("the busy worker's process ends", LONG, || {
        (!process_alive(busy_pid)).then_some(())
    });

    // A role that was a superuser when a process connected as it, and is
    // one no more, never runs in that process again (the server keeps
    // some of what it was at connection): a fresh process refuses what a
    // superuser could do.
    admin
        .batch_execute("CREATE ROLE gb_super SUPERUSER LOGIN")
        .unwrap();
    let as_super = "SELECT lightdb_bgw.run('SELECT pg_backend_pid() AS pid', role => 'gb_super')";
    let ran_as_super: i64 = admin.query_one(as_super, &[]).unwrap().get(0);
    let super_row: String = admin
        .query_one(
            "SELECT lightdb_bgw.result($1, '30s'::interval)::text",
            &[&ran_as_super],
        )
        .unwrap()
        .get(0);
    assert!(backend_pid(&serde_json::from_str(&super_row).unwrap()) > 0);
    // Given back once stopped, connected as gb_super.
    let reached = wait_for_shutdown(&mut admin, ran_as_super);
    assert_eq!(reached, "stopped");
    admin
        .batch_execute("ALTER ROLE gb_super NOSUPERUSER")
        .unwrap();
    let demoted: i64 = admin
        .query_one(
            "SELECT lightdb_bgw.run('SET SESSION AUTHORIZATION postgres; \
             SELECT pg_backend_pid() AS pid', role => 'gb_super')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(failed_with(&mut admin, demoted), "42501");
    // A copy the server refuses (a role with CREATEDB that does not own
    // the database, which is no template) lets it be.
    run_once(&mut user, "SELECT pg_backend_pid() AS pid", Some("gb_db"));
    let in_gb_db = |admin: &mut Client| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'gb_db'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(
        in_gb_db(&mut admin),
        1,
        "the process given back stays connected"
    );
    admin
        .batch_execute("CREATE ROLE gb_maker LOGIN CREATEDB")
        .unwrap();
    let err = cluster
        .connect_as("postgres", "gb_maker")
        .batch_execute("CREATE DATABASE gb_nope TEMPLATE gb_db")
        .expect_err("not the owner");
    assert_eq!(sqlstate(&err), "42501", "{err:?}");
    assert_eq!(in_gb_db(&mut admin), 1, "a refused copy lets go of nothing");
    // Nor does one stand in the way of copying its database, as a
    // template.
    let began = Instant::now();
    admin
        .batch_execute("CREATE DATABASE gb_copy TEMPLATE gb_db")
        .unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );

    // A process kept connected to a database does not stand in the way
    // of dropping it.
    run_once(&mut user, "SELECT pg_backend_pid() AS pid", Some("gb_db"));
    let connected: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'gb_db'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(connected, 1, "the process given back stays connected");
    let began = Instant::now();
    admin.batch_execute("DROP DATABASE gb_db").unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );

    // Runs in many databases leave at most `spare_workers` connected
    // processes waiting: a role cannot hold slots beyond its quota so.
    for i in 0..8 {
        admin
            .batch_execute(&format!("CREATE DATABASE gb_many{i} OWNER gb_user"))
            .unwrap();
        run_once(
            &mut user,
            "SELECT pg_backend_pid() AS pid",
            Some(&format!("gb_many{i}")),
        );
    }
    let waiting: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE backend_type = 'lightdb_bgw' AND datname IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(waiting <= 6, "{waiting} connected processes wait idle");
}

#[test]
fn a_process_given_back_while_its_database_is_copied_leaves() {
    let (_cluster, mut admin) = Cluster::with_extension(
        "given_back_copy",
        &[
            ("max_worker_processes", "12"),
            ("lightdb_bgw.spare_workers", "2"),
        ],
    );
    admin.batch_execute("CREATE DATABASE gb_src").unwrap();
    for round in 1..=3 {
        // A run in the template ends while CREATE DATABASE waits for it:
        // its process, given back, does not stay connected there.
        let id: i64 = admin
            .query_one(
                "SELECT lightdb_bgw.run('SELECT pg_sleep(1) AS s', database => 'gb_src')",
                &[],
            )
            .unwrap()
            .get(0);
        std::thread::sleep(Duration::from_millis(300));
        let began = Instant::now();
        admin
            .batch_execute(&format!("CREATE DATABASE gb_copy{round} TEMPLATE gb_src"))
            .unwrap_or_else(|e| panic!("round {round}, after {:?}: {e:?}", began.elapsed()));
        assert!(
            began.elapsed() < Duration::from_secs(4),
            "{:?}",
            began.elapsed()
        );
        assert_eq!(
            admin
                .query_one("SELECT count(*) FROM lightdb_bgw.result($1)", &[&id])
                .unwrap()
                .get::<_, i64>(0),
            1
        );
    }
}
