//! Cluster tests of the security and correctness rules a hostile user
//! probes: a worker runs only as the role and in the database it was
//! authorised for (by OID, also after a restart and for a supervisor's
//! children), and stops for good when they are gone; other roles see no
//! data of a worker; failed registrations give their slot back; a launch
//! that waits returns only once the worker is connected; a supervisor
//! backs off from a child that keeps dying; terminating a static worker
//! goes through the postmaster; a superuser's worker runs no code another
//! role planted.

#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;

mod identity;
mod launches;
mod objects;
mod supervision;
mod visibility;

const LONG: Duration = Duration::from_secs(60);

fn field<T: for<'a> postgres::types::FromSql<'a>>(client: &mut Client, column: &str, id: i64) -> T {
    client
        .query_one(
            &format!("SELECT {column} FROM lightdb_bgw.workers WHERE id = $1"),
            &[&id],
        )
        .unwrap_or_else(|e| panic!("{column} of worker {id}: {e}"))
        .get(0)
}

/// A cluster with the extension, role alice (granted the extension) and a
/// table `seen` she may insert into; clients as the superuser and as her.
fn with_alice(name: &str) -> (Cluster, Client, Client) {
    let (cluster, mut admin) = Cluster::with_extension(name, &[("max_worker_processes", "16")]);
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN;
             CREATE TABLE seen (who text, super bool);
             GRANT INSERT ON seen TO alice;",
        )
        .unwrap();
    grant_all(&mut admin, "alice");
    let alice = cluster.connect_as("postgres", "alice");
    (cluster, admin, alice)
}

/// A superuser renames alice and creates a superuser under her old name.
fn impersonate_alice(admin: &mut Client) {
    admin
        .batch_execute(
            "ALTER ROLE alice RENAME TO alice_renamed; CREATE ROLE alice SUPERUSER LOGIN",
        )
        .unwrap();
}

/// Waits until table `seen` holds more than `n` rows.
fn seen_more_than(client: &mut Client, n: i64, what: &str) {
    eventually(what, LONG, || {
        let rows: i64 = client
            .query_one("SELECT count(*) FROM seen", &[])
            .unwrap()
            .get(0);
        (rows > n).then_some(())
    });
}

/// Every row of `seen` was written as `who`, never as a superuser.
fn seen_only_as(client: &mut Client, who: &str) {
    let row = client
        .query_one(
            "SELECT array_agg(DISTINCT who), bool_or(super) FROM seen",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Vec<String>>(0), vec![who.to_string()]);
    assert!(!row.get::<_, bool>(1), "no worker became a superuser");
}

/// `pg_terminate_backend` of worker `id`'s process, once it is a backend:
/// `started` comes as soon as the postmaster has forked the process, a
/// little before it is one.
fn terminate_backend(admin: &mut Client, id: i64) {
    eventually(
        "the worker's process to take pg_terminate_backend",
        LONG,
        || {
            admin
                .query_one("SELECT pg_terminate_backend(lightdb_bgw.pid($1))", &[&id])
                .ok()?
                .get::<_, Option<bool>>(0)
                .filter(|&done| done)
        },
    );
}

/// Ends the worker's process with SIGTERM (exit code 1): the postmaster
/// restarts it after its `restart_after`. Waits until its exit is recorded.
fn kill_for_restart(admin: &mut Client, id: i64) {
    let restarts: i32 = field(admin, "restarts", id);
    terminate_backend(admin, id);
    eventually("the exit is recorded", LONG, || {
        let status: String = field(admin, "status", id);
        let now: i32 = field(admin, "restarts", id);
        (status == "not_yet_started" && now == restarts).then_some(())
    });
}

/// Waits until worker `id` runs again after `kill_for_restart`.
fn restarted(admin: &mut Client, id: i64, restarts: i32) {
    eventually("the worker restarted", LONG, || {
        let status: String = field(admin, "status", id);
        let now: i32 = field(admin, "restarts", id);
        (status == "started" && now > restarts).then_some(())
    });
}

/// Waits until worker `id` is stopped and checks it stays stopped, without
/// a restart loop, with `expected` at the start of its last error.
fn stopped_for_good(admin: &mut Client, id: i64, expected: &str) {
    let reached = wait_for_shutdown(admin, id);
    assert_eq!(reached, "stopped");
    let restarts: i32 = field(admin, "restarts", id);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(field::<String>(admin, "status", id), "stopped");
    assert_eq!(
        field::<i32>(admin, "restarts", id),
        restarts,
        "no restart loop"
    );
    let error: Option<String> = field(admin, "last_error", id);
    let error = error.unwrap_or_default();
    assert!(error.starts_with(expected), "{error}");
    assert!(error.contains("stops for good"), "{error}");
}
