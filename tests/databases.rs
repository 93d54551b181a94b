//! Cluster tests of databases coming and going: DROP DATABASE and ALTER
//! DATABASE ... RENAME succeed at once, without FORCE, with a static and a
//! dynamic (restartable) worker connected; the workers are stopped for good
//! with a NOTICE naming each. A static worker whose database is gone at a
//! later start stops for good instead of looping. A command the server
//! refuses (not the owner, a transaction block, read-only, a name taken,
//! ...) stops nobody and names nobody.

mod common;

use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(60);

#[test]
fn dropping_or_renaming_a_database_stops_its_workers_first() {
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
    admin.batch_execute("CREATE DATABASE renamed_one").unwrap();
    drop(admin);
    cluster.restart();
    let (mut admin, notices) = cluster.connect_with_notices("postgres");
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS lightdb_bgw")
        .unwrap();
    eventually("the static counter runs in doomed", LONG, || {
        (status(&mut admin, 1) == "started").then_some(())
    });
    let dynamic = launch(
        &mut admin,
        "'sql', database => 'doomed', restart_after => '1s', \
         config => '{\"sql\": \"SELECT 1\", \"interval\": \"100ms\"}'",
    );

    let began = Instant::now();
    admin.batch_execute("DROP DATABASE doomed").unwrap();
    let took = began.elapsed();
    println!("DROP DATABASE with two workers connected took {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "no wait for the workers: {took:?}"
    );
    let said = notices.lock().unwrap().clone();
    for id in [1, dynamic] {
        assert!(
            said.iter().any(
                |n| n.starts_with(&format!("stopped worker {id} ")) && n.contains("\"doomed\"")
            ),
            "a NOTICE names worker {id}: {said:?}"
        );
        assert_eq!(status(&mut admin, id), "stopped");
    }
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

    // ALTER DATABASE ... RENAME with a worker connected.
    let inside = launch(&mut admin, "'sleep', database => 'renamed_one'");
    admin
        .batch_execute("ALTER DATABASE renamed_one RENAME TO renamed_two")
        .unwrap();
    assert_eq!(status(&mut admin, inside), "stopped");
    let said = notices.lock().unwrap().clone();
    assert!(
        said.iter()
            .any(|n| n.starts_with(&format!("stopped worker {inside} "))
                && n.contains("\"renamed_one\"")),
        "{said:?}"
    );

    // At the next start the static counter's database is gone: it stops
    // for good with the reason, no restart loop.
    drop(admin);
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
