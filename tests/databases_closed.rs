//! Cluster tests of a database closed to new workers while a command
//! that stopped its workers runs: launches into a database while it is
//! dropped are refused (55000), never making the drop fail; a rename in
//! an open transaction block keeps it closed, for the renaming session
//! too, until the transaction ends, and such a transaction may not be
//! prepared.

mod common;

use std::time::{Duration, Instant};

use common::*;
use postgres::Client;

#[test]
fn launches_during_a_drop_never_make_it_fail() {
    let (cluster, mut admin) =
        Cluster::with_extension("databases_race", &[("max_worker_processes", "40")]);
    admin.batch_execute("CREATE DATABASE busy").unwrap();
    // A worker slow to leave: stopped, it still waits for its COPY's
    // program to end (the server's pclose), so the drop waits for it
    // about two seconds, while another session launches into the
    // database every 15 ms.
    let slow = launch(
        &mut admin,
        "'sql', database => 'busy', \
         config => '{\"sql\": \"COPY (SELECT 1) TO PROGRAM ''sleep 2''\"}'",
    );
    let port = cluster.port;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let launcher = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut client = Cluster::detached(port).connect("postgres");
            let (mut ids, mut refused) = (Vec::new(), Vec::new());
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                match client.query_one(
                    "SELECT lightdb_bgw.launch('sql', database => 'busy', wait => false, \
                     config => '{\"sql\": \"SELECT pg_sleep(30)\"}')",
                    &[],
                ) {
                    Ok(row) => ids.push(row.get::<_, i64>(0)),
                    Err(err) => refused.push(sqlstate(&err).to_string()),
                }
                std::thread::sleep(Duration::from_millis(15));
            }
            (ids, refused)
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    let dropped = admin.batch_execute("DROP DATABASE busy");
    let took = began.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    done.store(true, std::sync::atomic::Ordering::Release);
    let (ids, refused) = launcher.join().unwrap();
    dropped.unwrap_or_else(|e| panic!("DROP DATABASE after {took:?}: {e:?}"));
    let closed = refused.iter().filter(|s| *s == "55000").count();
    println!(
        "DROP DATABASE took {took:?}; {} launched before it, {closed} refused while it ran, \
         {} after",
        ids.len(),
        refused.len() - closed
    );
    // While it ran: closed to new workers (55000); then gone (3D000).
    assert!(
        refused.iter().all(|s| s == "55000" || s == "3D000"),
        "{refused:?}"
    );
    assert!(
        closed > 0,
        "launches came while the drop waited: {refused:?}"
    );
    for id in ids.into_iter().chain([slow]) {
        assert_eq!(status(&mut admin, id), "stopped", "worker {id}");
    }
}

#[test]
fn a_database_renamed_in_an_open_transaction_is_closed_until_it_ends() {
    let (cluster, mut admin) =
        Cluster::with_extension("databases_closed", &[("max_prepared_transactions", "2")]);
    admin.batch_execute("CREATE DATABASE held").unwrap();
    let launch_into = |client: &mut Client, db: &str| {
        client.query_one(
            &format!("SELECT lightdb_bgw.launch('sleep', database => '{db}', wait => false)"),
            &[],
        )
    };
    let mut renamer = cluster.connect("postgres");
    renamer
        .batch_execute("SET statement_timeout = '10s'")
        .unwrap();
    // Renamed five times over in one transaction block: one entry.
    renamer
        .batch_execute(
            "BEGIN; ALTER DATABASE held RENAME TO h1; ALTER DATABASE h1 RENAME TO h2; \
             ALTER DATABASE h2 RENAME TO h3; ALTER DATABASE h3 RENAME TO h4; \
             ALTER DATABASE h4 RENAME TO h5",
        )
        .unwrap();
    let err = launch_into(&mut admin, "held").expect_err("closed while renamed");
    assert_eq!(sqlstate(&err), "55000", "{err:?}");
    assert!(
        db_error(&err).message().contains("being dropped, renamed"),
        "{err:?}"
    );
    // The renaming session too: refused at once, not left waiting for
    // its own transaction.
    let err = launch_into(&mut renamer, "h5").expect_err("closed for the renamer");
    assert_eq!(sqlstate(&err), "55000", "{err:?}");
    renamer.batch_execute("ROLLBACK").unwrap();
    let id = launch_into(&mut admin, "held").expect("open again after the rollback");
    assert_eq!(stop_worker(&mut admin, id.get(0)), "stopped");

    // A transaction that renamed a database may not be prepared (it would
    // keep the database closed): refused, and rolled back.
    renamer
        .batch_execute("BEGIN; ALTER DATABASE held RENAME TO held_later")
        .unwrap();
    let err = renamer
        .batch_execute("PREPARE TRANSACTION 'renaming'")
        .expect_err("not prepared");
    assert_eq!(sqlstate(&err), "0A000", "{err:?}");
    // The error reaches the client before the session has aborted the
    // transaction: the next statement runs after it.
    renamer.batch_execute("SELECT 1").unwrap();
    let id = launch_into(&mut admin, "held").expect("open again, not renamed");
    assert_eq!(stop_worker(&mut admin, id.get(0)), "stopped");
}
