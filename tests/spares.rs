//! Cluster tests of spare processes (`lightdb_bgw.spare_workers`): a
//! launch takes an idle spare, which runs the worker as its role in its
//! database; the dispatcher replaces it (what a worker that gives its
//! process back does is `given_back.rs`); workers a spare cannot serve get
//! their own process, and an idle spare gives its slot up for them; the
//! setting follows a reload; a spare being started counts as room; spares
//! leave the superuser reserve alone and
//! stand aside for the launch queue (not for a launch queued only for its
//! role's quota); a launch ended by a FATAL while it
//! waits for a spare's slot leaves nothing behind, and one ended while
//! it waits for its worker stops that worker.

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

#[test]
fn a_launch_queued_only_for_its_roles_quota_leaves_the_spares_alone() {
    let (cluster, mut admin) = Cluster::with_extension(
        "spares_quota",
        &[
            ("max_worker_processes", "10"),
            ("lightdb_bgw.spare_workers", "2"),
        ],
    );
    admin
        .batch_execute(
            "CREATE ROLE carol LOGIN; ALTER ROLE carol SET lightdb_bgw.max_workers_per_role = 1",
        )
        .unwrap();
    grant_all(&mut admin, "carol");
    let mut carol = cluster.connect_as("postgres", "carol");
    let first = launch(&mut carol, "'sleep', database => NULL");
    let queued = launch(
        &mut carol,
        "'sleep', database => NULL, queue => true, wait => false",
    );
    assert_eq!(status(&mut admin, queued), "queued");
    // It waits for carol's quota, not for a postmaster slot: the spares
    // stay, and another role's launch runs in one of them.
    let idle = wait_for_spares(&cluster, 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(spares(&cluster).len(), 2, "the spares stay");
    let own = launch(&mut admin, "'sleep', database => NULL");
    assert!(idle.contains(&pid(&mut admin, own)), "it ran in a spare");
    // Once carol's first worker stops, her queued one starts.
    assert_eq!(stop_worker(&mut carol, first), "stopped");
    let reached: String = admin
        .query_one("SELECT lightdb_bgw.wait_for_startup($1, '30s')", &[&queued])
        .unwrap()
        .get(0);
    assert_eq!(reached, "started");
    for id in [own, queued] {
        assert_eq!(stop_worker(&mut admin, id), "stopped");
    }
}

/// A session ended by a FATAL (pg_terminate_backend) while its launch
/// waits for the slot of a spare it let go leaves nothing behind: no slot
/// of the registry taken, and the dispatcher starts spares again (the
/// launch's wish for room is taken back).
#[test]
fn a_launch_ended_by_a_fatal_while_it_waits_for_room_leaves_nothing() {
    // Four slots: the logical replication launcher, the dispatcher, the
    // spare, one free.
    let (cluster, mut admin) = Cluster::with_extension(
        "spares_fatal",
        &[
            ("max_worker_processes", "4"),
            ("lightdb_bgw.spare_workers", "1"),
            ("lightdb_bgw.superuser_reserved_workers", "0"),
        ],
    );
    let spare = *wait_for_spares(&cluster, 1).iter().next().unwrap();
    // A restartable worker gets its own process: the last free slot.
    let restartable = "'sleep', database => NULL, restart_after => '1 min'";
    let blocker = launch(&mut admin, restartable);
    let before = worker_rows(&mut admin);

    // The spare stops answering: the next launch lets it go and waits for
    // its slot, and is ended meanwhile.
    Cluster::kill(spare, libc::SIGSTOP);
    ended_while_waiting(
        &cluster,
        &mut admin,
        format!("SELECT lightdb_bgw.launch({restartable})"),
        |_| (),
    );
    Cluster::kill(spare, libc::SIGCONT);

    eventually("the ended launch's slot to be given back", LONG, || {
        (worker_rows(&mut admin) == before).then_some(())
    });
    let again = wait_for_spares(&cluster, 1);
    assert!(!again.contains(&spare), "a new spare, not the one let go");
    assert_eq!(stop_worker(&mut admin, blocker), "stopped");
}

/// A session ended by a FATAL while `launch(..., wait => true)` waits for
/// its worker to run (here handed to a spare that does not answer) never
/// got the worker's id: the worker is stopped as the session exits, not
/// left to run once the spare wakes.
#[test]
fn a_launch_ended_by_a_fatal_while_it_waits_stops_its_worker() {
    let (cluster, mut admin) = Cluster::with_extension(
        "spares_unreturned",
        &[
            ("max_worker_processes", "8"),
            ("lightdb_bgw.spare_workers", "1"),
        ],
    );
    let spare = *wait_for_spares(&cluster, 1).iter().next().unwrap();
    Cluster::kill(spare, libc::SIGSTOP);
    let id: i64 = ended_while_waiting(
        &cluster,
        &mut admin,
        "SELECT lightdb_bgw.launch('sleep', database => NULL)".into(),
        |admin| {
            admin
                .query_one("SELECT max(id) FROM lightdb_bgw.workers", &[])
                .unwrap()
                .get(0)
        },
    );
    Cluster::kill(spare, libc::SIGCONT);
    assert_eq!(wait_for_shutdown(&mut admin, id), "stopped");
    assert_eq!(status(&mut admin, id), "stopped");
}

/// Runs `sql` (a launch) in a session of its own, waits until it sleeps on
/// the registry's events, runs `meanwhile`, then ends that session with
/// `pg_terminate_backend` (a FATAL: nothing to catch, no Rust drop) and
/// checks that the launch did not return. Returns what `meanwhile` did.
fn ended_while_waiting<T>(
    cluster: &Cluster,
    admin: &mut Client,
    sql: String,
    meanwhile: impl FnOnce(&mut Client) -> T,
) -> T {
    let mut victim = cluster.connect("postgres");
    let victim_pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let launching = std::thread::spawn(move || victim.query_one(&sql, &[]).is_ok());
    eventually("the launch to wait on the registry", LONG, || {
        admin
            .query_one(
                "SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $1",
                &[&victim_pid],
            )
            .ok()?
            .get::<_, Option<bool>>(0)
            .filter(|&waiting| waiting)
    });
    let seen = meanwhile(admin);
    admin
        .query_one("SELECT pg_terminate_backend($1)", &[&victim_pid])
        .unwrap();
    assert!(!launching.join().unwrap(), "the launch was ended");
    seen
}

/// A non-superuser filling the slots while the dispatcher replaces the
/// spares it takes: the spare being started counts as room, so every
/// launch but the reserve's succeeds, in each of several rounds.
#[test]
fn a_spare_being_started_is_room_for_a_non_superuser() {
    // Eight slots: the logical replication launcher, the dispatcher, six
    // for workers and spares, one of them kept for superusers.
    let (cluster, mut admin) = Cluster::with_extension(
        "spares_starting",
        &[
            ("max_worker_processes", "8"),
            ("lightdb_bgw.spare_workers", "2"),
            ("lightdb_bgw.superuser_reserved_workers", "1"),
        ],
    );
    admin.batch_execute("CREATE ROLE frank LOGIN").unwrap();
    grant_all(&mut admin, "frank");
    let mut frank = cluster.connect_as("postgres", "frank");
    for round in 1..=3 {
        wait_for_spares(&cluster, 2);
        let mut ids = Vec::new();
        let err = loop {
            match frank.query_one("SELECT lightdb_bgw.launch('sleep', database => NULL)", &[]) {
                Ok(row) => ids.push(row.get::<_, i64>(0)),
                Err(err) => break err,
            }
        };
        assert_eq!(
            ids.len(),
            5,
            "round {round}: every slot but the reserve: {err:?}"
        );
        assert_eq!(sqlstate(&err), "53000", "{err:?}");
        for id in ids {
            assert_eq!(stop_worker(&mut admin, id), "stopped");
        }
    }
}
