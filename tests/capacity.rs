//! Cluster tests of capacity with few postmaster slots: the launch queue
//! (first in, first out, from several sessions, none lost; terminate of a
//! queued worker; a full queue; a crash-reinitialisation with workers
//! queued), the per-role quota and the superuser reserve (also against a
//! supervisor's children), and the slot of a worker terminated before it
//! started.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use postgres::Client;

const LONG: Duration = Duration::from_secs(60);

/// A sleep worker without a database that runs until terminated.
const FOREVER: &str = "'sleep', database => NULL, wait => false";

/// Launches workers that run until terminated until the launch fails;
/// returns their ids and the error.
fn fill(client: &mut Client) -> (Vec<i64>, postgres::Error) {
    let mut ids = Vec::new();
    loop {
        match client.query_one(&format!("SELECT lightdb_bgw.launch({FOREVER})"), &[]) {
            Ok(row) => ids.push(row.get(0)),
            Err(err) => return (ids, err),
        }
        assert!(ids.len() < 100, "launches never ran out of room");
    }
}

fn stop_all(client: &mut Client, ids: &[i64]) {
    for &id in ids {
        assert_eq!(stop_worker(client, id), "stopped");
    }
}

fn queue_position(client: &mut Client, id: i64) -> Option<i32> {
    client
        .query_one(
            "SELECT queue_position FROM lightdb_bgw.workers WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0)
}

#[test]
fn queued_launches_from_five_sessions_all_run_first_in_first_out() {
    let (cluster, mut admin) = Cluster::with_extension(
        "queue_order",
        &[
            ("max_worker_processes", "5"),
            ("lightdb_bgw.superuser_reserved_workers", "0"),
        ],
    );
    let (blockers, err) = fill(&mut admin);
    assert_eq!(sqlstate(&err), "53000", "{err:?}");
    assert!(
        db_error(&err)
            .hint()
            .unwrap_or("")
            .contains("queue => true"),
        "{err:?}"
    );
    let capacity = blockers.len();
    assert!(capacity >= 2, "at least two slots to share: {capacity}");

    // 5 sessions queue 10 short workers each while every slot is taken.
    let sessions: Vec<Client> = (0..5).map(|_| cluster.connect("postgres")).collect();
    let threads: Vec<_> = sessions
        .into_iter()
        .map(|mut client| {
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        let row = client
                            .query_one(
                                "SELECT lightdb_bgw.launch('sleep', database => NULL, \
                                 config => '{\"duration\": \"150ms\"}', wait => false, \
                                 queue => true)",
                                &[],
                            )
                            .unwrap();
                        row.get::<_, i64>(0)
                    })
                    .collect::<Vec<i64>>()
            })
        })
        .collect();
    let mut ids: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 50);
    for (position, &id) in ids.iter().enumerate() {
        assert_eq!(status(&mut admin, id), "queued");
        assert_eq!(queue_position(&mut admin, id), Some(position as i32 + 1));
    }
    // wait_for_startup waits through the queue.
    let first = ids[0];
    let waiter = {
        let mut client = cluster.connect("postgres");
        std::thread::spawn(move || -> String {
            client
                .query_one("SELECT lightdb_bgw.wait_for_startup($1, '60s')", &[&first])
                .unwrap()
                .get(0)
        })
    };
    let freed = Instant::now();
    stop_all(&mut admin, &blockers);
    assert_ne!(waiter.join().unwrap(), "timeout");

    let mut started: HashMap<i64, SystemTime> = HashMap::new();
    for &id in &ids {
        let reached: String = admin
            .query_one("SELECT lightdb_bgw.wait_for_shutdown($1, '60s')", &[&id])
            .unwrap()
            .get(0);
        assert_eq!(reached, "stopped", "worker {id}");
        let row = admin
            .query_one(
                "SELECT started_at, last_exit, queue_position FROM lightdb_bgw.workers \
                 WHERE id = $1",
                &[&id],
            )
            .unwrap();
        let at: Option<SystemTime> = row.get(0);
        assert_eq!(row.get::<_, Option<i32>>(1), Some(0), "worker {id} ran");
        assert_eq!(row.get::<_, Option<i32>>(2), None);
        started.insert(id, at.expect("started"));
    }
    println!(
        "50 queued workers ran through {capacity} slots in {:?}",
        freed.elapsed()
    );
    // First in, first out: no worker started before one queued ahead of it
    // (the postmaster may fork two it was given at once in either order).
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            let early = started[a]
                .duration_since(started[b])
                .unwrap_or(Duration::ZERO);
            assert!(
                early < Duration::from_millis(100),
                "worker {b} started {early:?} before worker {a}, queued ahead of it"
            );
        }
    }
}

#[test]
fn queued_workers_can_be_terminated_are_bounded_and_survive_a_crash() {
    let (mut cluster, mut admin) = Cluster::with_extension(
        "queue_faults",
        &[
            ("max_worker_processes", "4"),
            ("lightdb_bgw.superuser_reserved_workers", "0"),
            ("lightdb_bgw.max_queued", "3"),
        ],
    );
    admin
        .batch_execute("CREATE TABLE ran (id bigint, what text)")
        .unwrap();
    let (blockers, err) = fill(&mut admin);
    assert_eq!(sqlstate(&err), "53000", "{err:?}");

    // terminate removes a queued worker: it never starts.
    let doomed = launch(&mut admin, &format!("{FOREVER}, queue => true"));
    assert_eq!(status(&mut admin, doomed), "queued");
    let terminated: bool = admin
        .query_one("SELECT lightdb_bgw.terminate($1)", &[&doomed])
        .unwrap()
        .get(0);
    assert!(terminated);
    assert_eq!(status(&mut admin, doomed), "stopped");
    assert_eq!(queue_position(&mut admin, doomed), None);

    // A sql worker queued twice, then the queue is full.
    let sql = |tag: &str| {
        format!(
            "'sql', config => '{{\"sql\": \"INSERT INTO ran SELECT id, ''{tag}'' \
             FROM lightdb_bgw.workers WHERE name = ''{tag}''\"}}', name => '{tag}', \
             wait => false, queue => true"
        )
    };
    let a = launch(&mut admin, &sql("first"));
    let b = launch(&mut admin, &sql("second"));
    let c = launch(&mut admin, &format!("{FOREVER}, queue => true"));
    let rows_before: i64 = admin
        .query_one("SELECT count(*) FROM lightdb_bgw.workers", &[])
        .unwrap()
        .get(0);
    let err = admin
        .query_one(
            &format!("SELECT lightdb_bgw.launch({FOREVER}, queue => true)"),
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&err), "53400", "{err:?}");
    assert!(
        db_error(&err)
            .hint()
            .unwrap_or("")
            .contains("lightdb_bgw.max_queued"),
        "{err:?}"
    );
    let rows_after: i64 = admin
        .query_one("SELECT count(*) FROM lightdb_bgw.workers", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows_after, rows_before, "a refused launch leaves nothing");
    assert_eq!(stop_worker(&mut admin, c), "stopped");

    // A crash-reinitialisation: the queued workers keep their ids, place
    // and config, and run once there is room (the blockers, not
    // restartable, do not come back).
    let victim: i32 = admin
        .query_one("SELECT lightdb_bgw.pid($1)", &[&blockers[0]])
        .unwrap()
        .get(0);
    Cluster::kill(victim, libc::SIGKILL);
    drop(admin);
    let mut admin = cluster.reconnect_after_crash(LONG);
    for (id, tag) in [(a, "first"), (b, "second")] {
        let reached: String = admin
            .query_one("SELECT lightdb_bgw.wait_for_shutdown($1, '60s')", &[&id])
            .unwrap()
            .get(0);
        assert_eq!(reached, "stopped");
        let ran: i64 = admin
            .query_one(
                "SELECT count(*) FROM ran WHERE id = $1 AND what = $2",
                &[&id, &tag],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            ran, 1,
            "queued worker {id} ran its own config after the crash"
        );
    }
    // A clean shutdown drops what is queued, with a log line.
    let (blockers, _) = fill(&mut admin);
    assert!(!blockers.is_empty());
    let left = launch(&mut admin, &format!("{FOREVER}, queue => true"));
    assert_eq!(status(&mut admin, left), "queued");
    drop(admin);
    cluster.stop(StopMode::Fast);
    assert!(
        cluster
            .log()
            .contains(&format!("1 queued workers dropped (ids {left})")),
        "the shutdown names the dropped worker"
    );
}

#[test]
fn quotas_per_role_and_the_superuser_reserve() {
    let (cluster, mut admin) = Cluster::with_extension(
        "quotas",
        &[
            ("max_worker_processes", "8"),
            ("lightdb_bgw.superuser_reserved_workers", "2"),
        ],
    );
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
             ALTER ROLE alice SET lightdb_bgw.max_workers_per_role = 2;",
        )
        .unwrap();
    grant_all(&mut admin, "alice, bob");

    // How many slots there are, measured by a superuser.
    let (all, err) = fill(&mut admin);
    assert_eq!(sqlstate(&err), "53000", "{err:?}");
    stop_all(&mut admin, &all);
    let free = all.len();
    assert!(free >= 4, "room for the test: {free}");

    // alice: two workers, the third over her quota.
    let mut alice = cluster.connect_as("postgres", "alice");
    let (hers, err) = fill(&mut alice);
    assert_eq!(hers.len(), 2);
    assert_eq!(sqlstate(&err), "53000", "{err:?}");
    assert!(
        db_error(&err)
            .hint()
            .unwrap_or("")
            .contains("lightdb_bgw.max_workers_per_role"),
        "{err:?}"
    );
    // ... or waits in the queue until one of hers stops.
    let queued = launch(&mut alice, &format!("{FOREVER}, queue => true"));
    assert_eq!(status(&mut alice, queued), "queued");

    // bob has no quota: he takes what is left but the reserve.
    let mut bob = cluster.connect_as("postgres", "bob");
    let (his, err) = fill(&mut bob);
    assert_eq!(his.len(), free - 2 - 2, "bob leaves the superuser reserve");
    assert_eq!(sqlstate(&err), "53000", "{err:?}");
    assert!(
        db_error(&err)
            .hint()
            .unwrap_or("")
            .contains("lightdb_bgw.superuser_reserved_workers"),
        "{err:?}"
    );
    // alice's queued worker still waits (her quota), not taking the reserve.
    let (su, err) = fill(&mut admin);
    assert_eq!(su.len(), 2, "a superuser takes the reserve");
    assert_eq!(sqlstate(&err), "53000");
    assert_eq!(status(&mut alice, queued), "queued");

    // One of alice's stops: her queued worker starts in its place.
    stop_all(&mut admin, &su);
    assert_eq!(stop_worker(&mut alice, hers[0]), "stopped");
    let reached: String = alice
        .query_one("SELECT lightdb_bgw.wait_for_startup($1, '30s')", &[&queued])
        .unwrap()
        .get(0);
    assert_eq!(reached, "started");
    stop_all(&mut alice, &[hers[1], queued]);
    stop_all(&mut bob, &his);

    // bob's supervisor asks for more children than fit: they leave the
    // reserve as his own launches do, the one left over noted.
    let sup = launch(
        &mut bob,
        &format!(
            "'supervisor', database => NULL, \
             config => '{{\"children\": {free}, \"child_kind\": \"sleep\"}}'"
        ),
    );
    let children = format!("lightdb_bgw supervisor {sup} child %");
    let fit = free - 1 - 2;
    eventually("the children that fit run", LONG, || {
        let running: i64 = admin
            .query_one(
                "SELECT count(*) FROM lightdb_bgw.workers WHERE name LIKE $1 AND status = 'started'",
                &[&children],
            )
            .unwrap()
            .get(0);
        let note: Option<String> = admin
            .query_one(
                "SELECT last_error FROM lightdb_bgw.workers WHERE id = $1",
                &[&sup],
            )
            .unwrap()
            .get(0);
        (running as usize == fit && note.is_some_and(|n| n.contains("cannot launch child")))
            .then_some(())
    });
    let (su, err) = fill(&mut admin);
    assert_eq!(su.len(), 2, "the reserve is still the superuser's: {err:?}");
    stop_all(&mut admin, &su);
    assert_eq!(stop_worker(&mut bob, sup), "stopped");
}

/// A worker terminated before its process started holds its postmaster
/// slot until the postmaster lets go of it (it may even start the process,
/// which then leaves at once): `wait_for_shutdown` returns only then, so
/// the next launch into the last free slot never meets 53000.
#[test]
fn a_worker_terminated_before_it_started_frees_its_slot_before_wait_for_shutdown_returns() {
    let (_cluster, mut admin) = Cluster::with_extension(
        "terminated_early",
        &[
            ("max_worker_processes", "4"),
            ("lightdb_bgw.superuser_reserved_workers", "0"),
        ],
    );
    let (blockers, err) = fill(&mut admin);
    assert_eq!(sqlstate(&err), "53000", "{err:?}");
    let (freed, rest) = blockers.split_first().expect("a slot was free");
    assert_eq!(stop_worker(&mut admin, *freed), "stopped");
    for round in 0..200 {
        let id: i64 = admin
            .query_one(&format!("SELECT lightdb_bgw.launch({FOREVER})"), &[])
            .unwrap_or_else(|e| panic!("round {round}: the last slot was not free: {e:?}"))
            .get(0);
        let row = admin
            .query_one(
                "SELECT lightdb_bgw.terminate($1), lightdb_bgw.wait_for_shutdown($1, '30s')",
                &[&id],
            )
            .unwrap();
        assert!(row.get::<_, bool>(0), "round {round}: {id} was registered");
        assert_eq!(row.get::<_, String>(1), "stopped", "round {round}");
    }
    stop_all(&mut admin, rest);
}
