//! Cluster tests of spare processes (`lightdb_bgw.spare_workers`): a
//! launch takes an idle spare, which runs the worker as its role in its
//! database; the dispatcher replaces it (what a worker that gives its
//! process back does is `given_back.rs`); workers a spare cannot serve get
//! their own process, and an idle spare gives its slot up for them; the
//! setting follows a reload; spares leave the superuser reserve alone and
//! stand aside for the launch queue.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(60);

/// Pids of the cluster's idle spares.
fn spares(cluster: &Cluster) -> HashSet<i32> {
    spare_pids(cluster.postmaster_pid())
}

fn wait_for_spares(cluster: &Cluster, n: usize) -> HashSet<i32> {
    eventually(&format!("{n} idle spares"), LONG, || {
        let now = spares(cluster);
        (now.len() == n).then_some(now)
    })
}

fn pid(client: &mut Client, id: i64) -> i32 {
    worker_pid(client, id).unwrap_or_else(|| panic!("worker {id} has no pid"))
}

#[test]
fn launches_take_spares_which_the_dispatcher_replaces() {
    let (cluster, mut admin) = Cluster::with_extension(
        "spares_taken",
        &[
            ("max_worker_processes", "12"),
            ("lightdb_bgw.spare_workers", "2"),
        ],
    );
    let first = wait_for_spares(&cluster, 2);

    // A worker without a database runs in one of them, at once.
    let sleeper = launch(&mut admin, "'sleep', database => NULL");
    let sleeper_pid = pid(&mut admin, sleeper);
    assert!(
        first.contains(&sleeper_pid),
        "{sleeper_pid} not one of {first:?}"
    );
    assert_eq!(status(&mut admin, sleeper), "started");
    // The worker renames the process just after it claims its slot (which
    // is when the launch returns).
    let name = format!("lightdb_bgw sleep {sleeper}");
    eventually("the process title names the worker", LONG, || {
        let title = std::fs::read_to_string(format!("/proc/{sleeper_pid}/cmdline")).ok()?;
        title.contains(&name).then_some(())
    });

    // A non-superuser's run in a database: the spare connects as that role
    // to that database, and its result is read back.
    admin.batch_execute("CREATE ROLE spare_user LOGIN").unwrap();
    admin
        .batch_execute("CREATE DATABASE spare_db OWNER spare_user")
        .unwrap();
    grant_all(&mut admin, "spare_user");
    let second = wait_for_spares(&cluster, 2);
    let mut user = cluster.connect_as("postgres", "spare_user");
    let run: i64 = user
        .query_one(
            "SELECT lightdb_bgw.run('SELECT current_user AS who, current_database() AS db', \
             database => 'spare_db')",
            &[],
        )
        .unwrap()
        .get(0);
    let row: String = user
        .query_one(
            "SELECT lightdb_bgw.result($1, '30s'::interval)::text",
            &[&run],
        )
        .unwrap()
        .get(0);
    assert_eq!(row, r#"{"db": "spare_db", "who": "spare_user"}"#);

    // Replaced: the dispatcher starts a new process for the one the run
    // took (which, given back connected to spare_db, waits there as a
    // spare until it has been idle a while).
    eventually("a replacement spare", LONG, || {
        let now = spares(&cluster);
        now.difference(&second).next().is_some().then_some(())
    });
    assert!(!spares(&cluster).contains(&sleeper_pid), "still a worker");

    // Terminated, the sleep worker gives its process back: a spare again
    // (see given_back.rs), let go once idle beyond the setting a while.
    assert_eq!(stop_worker(&mut admin, sleeper), "stopped");
    assert!(spares(&cluster).contains(&sleeper_pid), "given back");

    // A restartable worker is not run by a spare (a spare has no restart
    // rule): it gets its own process, and the spares stay.
    let idle = wait_for_spares(&cluster, 2);
    let restartable = launch(
        &mut admin,
        "'sleep', database => NULL, restart_after => '1s'",
    );
    assert!(!idle.contains(&pid(&mut admin, restartable)));
    assert_eq!(spares(&cluster), idle);
    assert_eq!(stop_worker(&mut admin, restartable), "stopped");

    // The setting follows a reload: none kept at 0.
    admin
        .batch_execute("ALTER SYSTEM SET lightdb_bgw.spare_workers = 0")
        .unwrap();
    cluster.reload();
    wait_for_spares(&cluster, 0);
    let own = launch(&mut admin, "'sleep', database => NULL");
    assert!(!idle.contains(&pid(&mut admin, own)));
    assert_eq!(stop_worker(&mut admin, own), "stopped");
}

#[test]
fn spares_give_their_slots_to_workers_they_cannot_run_and_to_the_queue() {
    // Six slots: the logical replication launcher, the dispatcher, two
    // spares, two free; no superuser reserve.
    let (cluster, mut admin) = Cluster::with_extension(
        "spares_room",
        &[
            ("max_worker_processes", "6"),
            ("lightdb_bgw.spare_workers", "2"),
            ("lightdb_bgw.superuser_reserved_workers", "0"),
        ],
    );
    wait_for_spares(&cluster, 2);
    let restartable = "'sleep', database => NULL, restart_after => '1 min'";
    let mut ids: Vec<i64> = (0..2).map(|_| launch(&mut admin, restartable)).collect();
    // Every slot is taken now, two of them by idle spares: the next two
    // restartable workers each make one spare give its slot up.
    for _ in 0..2 {
        ids.push(launch(&mut admin, restartable));
    }
    for &id in &ids {
        assert_eq!(status(&mut admin, id), "started");
    }
    assert!(spares(&cluster).is_empty());
    let err = admin
        .query_one(&format!("SELECT lightdb_bgw.launch({restartable})"), &[])
        .expect_err("no room left");
    assert_eq!(sqlstate(&err), "53000", "{err:?}");

    // Queued launches: no spare is started while anything waits, and the
    // queued worker starts once a slot frees.
    let queued = launch(
        &mut admin,
        "'sleep', database => NULL, queue => true, wait => false",
    );
    assert_eq!(status(&mut admin, queued), "queued");
    assert_eq!(stop_worker(&mut admin, ids.pop().unwrap()), "stopped");
    let reached: String = admin
        .query_one("SELECT lightdb_bgw.wait_for_startup($1, '30s')", &[&queued])
        .unwrap()
        .get(0);
    assert_eq!(reached, "started");

    // Once nothing waits and slots are free, the spares come back.
    assert_eq!(stop_worker(&mut admin, queued), "stopped");
    for id in ids {
        assert_eq!(stop_worker(&mut admin, id), "stopped");
    }
    wait_for_spares(&cluster, 2);
}
