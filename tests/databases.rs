//! Cluster tests of databases coming and going: DROP DATABASE and ALTER
//! DATABASE ... RENAME succeed at once, without FORCE, with a static and a
//! dynamic (restartable) worker connected, and ... SET TABLESPACE with a
//! dynamic one; the workers are stopped for good with a NOTICE naming
//! each. A static worker whose database is gone at a
//! later start stops for good instead of looping. A command the server
//! refuses (not the owner, a transaction block, read-only, a name taken,
//! a tablespace already holding relations of the database, ...) stops
//! nobody and names nobody. Launches while such a command runs are
//! `databases_closed.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(60);

type Notices = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Runs `command` (a database command), which must not wait for the
/// workers connected to `database`, and checks that the NOTICEs name each
/// of `ids` and that each is stopped.
fn stops_first(admin: &mut Client, notices: &Notices, command: &str, database: &str, ids: &[i64]) {
    notices.lock().unwrap().clear();
    let began = Instant::now();
    admin.batch_execute(command).unwrap();
    let took = began.elapsed();
    println!(
        "{command} with {} worker(s) connected took {took:?}",
        ids.len()
    );
    assert!(
        took < Duration::from_secs(5),
        "{command}: no wait for the workers: {took:?}"
    );
    let said = notices.lock().unwrap().clone();
    for &id in ids {
        assert!(
            said.iter()
                .any(|n| n.starts_with(&format!("stopped worker {id} "))
                    && n.contains(&format!("\"{database}\""))),
            "{command}: a NOTICE names worker {id}: {said:?}"
        );
        assert_eq!(status(admin, id), "stopped", "{command}: worker {id}");
    }
}

fn restartable_in(admin: &mut Client, database: &str) -> i64 {
    launch(
        admin,
        &format!(
            "'sql', database => '{database}', restart_after => '1s', \
             config => '{{\"sql\": \"SELECT 1\", \"interval\": \"100ms\"}}'"
        ),
    )
}

#[test]
fn dropping_renaming_or_moving_a_database_stops_its_workers_first() {
    let (mut cluster, mut admin) = Cluster::with_extension(
        "databases",
        &[
            ("max_worker_processes", "16"),
            ("lightdb_bgw.static_workers", "counter:1"),
            ("lightdb_bgw.database", "doomed"),
            ("lightdb_bgw.naptime", "100ms"),
        ],
    );
    // The static counter's database exists from the next start on.
    admin.batch_execute("CREATE DATABASE doomed").unwrap();
    drop(admin);
    cluster.restart();
    let (mut admin, notices) = cluster.connect_with_notices("postgres");
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS lightdb_bgw")
        .unwrap();
    let static_runs = |admin: &mut Client| {
        eventually("the static counter runs in doomed", LONG, || {
            (status(admin, 1) == "started").then_some(())
        })
    };

    // ALTER DATABASE ... RENAME with a static and a restartable worker.
    static_runs(&mut admin);
    let dynamic = restartable_in(&mut admin, "doomed");
    stops_first(
        &mut admin,
        &notices,
        "ALTER DATABASE doomed RENAME TO renamed",
        "doomed",
        &[1, dynamic],
    );
    admin
        .batch_execute("ALTER DATABASE renamed RENAME TO doomed")
        .unwrap();

    // ALTER DATABASE ... SET TABLESPACE, to a tablespace of its own.
    let elsewhere = cluster.dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    chown_postgres(&elsewhere);
    admin
        .batch_execute(&format!(
            "CREATE TABLESPACE elsewhere LOCATION '{}'",
            elsewhere.display()
        ))
        .unwrap();
    let moved = restartable_in(&mut admin, "doomed");
    stops_first(
        &mut admin,
        &notices,
        "ALTER DATABASE doomed SET TABLESPACE elsewhere",
        "doomed",
        &[moved],
    );

    // DROP DATABASE with a static and a restartable worker (the static
    // worker follows its database's name at the next start).
    drop(admin);
    cluster.restart();
    let (mut admin, notices) = cluster.connect_with_notices("postgres");
    static_runs(&mut admin);
    let dynamic = restartable_in(&mut admin, "doomed");
    stops_first(
        &mut admin,
        &notices,
        "DROP DATABASE doomed",
        "doomed",
        &[1, dynamic],
    );
    // Stopped for good: no restart, also past the restart delay.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(status(&mut admin, dynamic), "stopped");
    let restarts: i32 = admin
        .query_one(
            "SELECT restarts FROM lightdb_bgw.workers WHERE id = $1",
            &[&dynamic],
        )
        .unwrap()
        .get(0);
    assert_eq!(restarts, 0);

    // At the next start the static counter's database is gone: it stops
    // for good with the reason and one log line, no restart loop.
    drop(admin);
    let logged = cluster.log().len();
    cluster.restart();
    let mut admin = cluster.connect("postgres");
    let reached: String = admin
        .query_one("SELECT lightdb_bgw.wait_for_shutdown(1, '30s')", &[])
        .unwrap()
        .get(0);
    assert_eq!(reached, "stopped");
    std::thread::sleep(Duration::from_millis(2500));
    let row = admin
        .query_one(
            "SELECT status, restarts, last_error FROM lightdb_bgw.workers WHERE id = 1",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "stopped");
    assert_eq!(row.get::<_, i32>(1), 0, "no restart loop");
    let error: Option<String> = row.get(2);
    let error = error.unwrap_or_default();
    assert!(error.starts_with("3D000:"), "{error}");
    assert!(error.contains("stops for good"), "{error}");
    let log = cluster.log();
    assert_eq!(
        log[logged..]
            .matches("FATAL:  database \"doomed\" does not exist")
            .count(),
        1,
        "one log line: {}",
        &log[logged..]
    );
}

/// The pid of worker `id`, which must be running.
fn running_pid(client: &mut Client, id: i64) -> i32 {
    assert_eq!(status(client, id), "started", "worker {id} still runs");
    worker_pid(client, id).expect("a running worker has a pid")
}

#[test]
fn a_database_command_the_server_refuses_stops_nobody() {
    let (cluster, mut admin) =
        Cluster::with_extension("databases_refused", &[("max_worker_processes", "16")]);
    admin.batch_execute("CREATE DATABASE theirs").unwrap();
    admin.batch_execute("CREATE ROLE dave LOGIN").unwrap();
    let restartable = launch(
        &mut admin,
        "'sql', database => 'theirs', restart_after => '1s', \
         config => '{\"sql\": \"SELECT 1\", \"interval\": \"100ms\"}'",
    );
    let sleeper = launch(&mut admin, "'sleep', database => 'theirs'");
    let pids = [restartable, sleeper].map(|id| running_pid(&mut admin, id));
    let unchanged = |admin: &mut Client, what: &str| {
        for (id, pid) in [restartable, sleeper].into_iter().zip(pids) {
            assert_eq!(running_pid(admin, id), pid, "{what}: worker {id} untouched");
        }
    };

    // A role that owns nothing: the server's own 42501, and not a word
    // about the workers.
    let (mut dave, said) = cluster.connect_as_with_notices("postgres", "dave");
    for command in [
        "DROP DATABASE theirs",
        "DROP DATABASE theirs WITH (FORCE)",
        "ALTER DATABASE theirs RENAME TO mine",
        "ALTER DATABASE theirs SET TABLESPACE pg_global",
    ] {
        let err = dave.batch_execute(command).expect_err(command);
        assert_eq!(sqlstate(&err), "42501", "{command}: {err:?}");
        unchanged(&mut admin, command);
    }
    assert!(
        said.lock().unwrap().is_empty(),
        "{:?}",
        said.lock().unwrap()
    );

    // The owner, where the server refuses the command: in a transaction
    // block (25001), the same tablespace (nothing to do), a name taken
    // (42P04).
    let (mut owner, said) = cluster.connect_with_notices("postgres");
    let err = owner
        .batch_execute("BEGIN; DROP DATABASE theirs")
        .expect_err("DROP DATABASE in a transaction block");
    assert_eq!(sqlstate(&err), "25001", "{err:?}");
    owner.batch_execute("ROLLBACK").unwrap();
    unchanged(&mut admin, "DROP DATABASE in a transaction block");
    owner
        .batch_execute("ALTER DATABASE theirs SET TABLESPACE pg_default")
        .unwrap();
    unchanged(&mut admin, "SET TABLESPACE to its own tablespace");
    let err = owner
        .batch_execute("ALTER DATABASE theirs RENAME TO postgres")
        .expect_err("a name taken");
    assert_eq!(sqlstate(&err), "42P04", "{err:?}");
    unchanged(&mut admin, "RENAME to a name taken");

    // A read-only transaction (the server's 25006 after the hook), and a
    // tablespace beside another option (refused by the server).
    owner
        .batch_execute("SET default_transaction_read_only = on")
        .unwrap();
    let err = owner
        .batch_execute("DROP DATABASE theirs")
        .expect_err("DROP DATABASE read-only");
    assert_eq!(sqlstate(&err), "25006", "{err:?}");
    owner
        .batch_execute("RESET default_transaction_read_only")
        .unwrap();
    unchanged(&mut admin, "DROP DATABASE in a read-only transaction");
    owner
        .batch_execute("ALTER DATABASE theirs WITH TABLESPACE pg_default CONNECTION LIMIT 5")
        .expect_err("a tablespace beside another option");
    unchanged(&mut admin, "SET TABLESPACE beside another option");
    // A tablespace that already holds a relation of the database: the
    // server refuses the move (55000), having looked into the tablespace.
    let holding = cluster.dir.join("holding");
    std::fs::create_dir_all(&holding).unwrap();
    chown_postgres(&holding);
    owner
        .batch_execute(&format!(
            "CREATE TABLESPACE holding LOCATION '{}'",
            holding.display()
        ))
        .unwrap();
    cluster
        .connect("theirs")
        .batch_execute("CREATE TABLE kept_there (x int) TABLESPACE holding")
        .unwrap();
    let err = owner
        .batch_execute("ALTER DATABASE theirs SET TABLESPACE holding")
        .expect_err("relations already in the tablespace");
    assert_eq!(sqlstate(&err), "55000", "{err:?}");
    let message = db_error(&err).message();
    assert!(message.contains("already in tablespace"), "{message}");
    unchanged(&mut admin, "SET TABLESPACE where relations already are");
    assert!(
        said.lock().unwrap().is_empty(),
        "{:?}",
        said.lock().unwrap()
    );

    // CREATE DATABASE ... TEMPLATE DEFAULT (no value) is template1.
    owner
        .batch_execute("CREATE DATABASE copied TEMPLATE DEFAULT")
        .unwrap();

    // A command that will run stops them first.
    owner.batch_execute("DROP DATABASE theirs").unwrap();
    for id in [restartable, sleeper] {
        assert_eq!(status(&mut admin, id), "stopped");
    }
    assert_eq!(said.lock().unwrap().len(), 2, "{:?}", said.lock().unwrap());
}
