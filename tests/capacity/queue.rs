//! The launch queue: first in, first out from five sessions, none lost;
//! terminate of a queued worker; a cancelled wait leaving nothing queued; a
//! full queue; a crash-reinitialisation with workers queued.

use super::*;

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
    assert!(hint_of(&err).contains("queue => true"), "{err:?}");
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

    // A launch that waits through the queue and is cancelled (here by
    // statement_timeout) returns no id and leaves no worker queued.
    admin
        .batch_execute("SET statement_timeout = '300ms'")
        .unwrap();
    let err = admin
        .query_one(
            "SELECT lightdb_bgw.launch('sleep', database => NULL, name => 'abandoned', queue => true)",
            &[],
        )
        .expect_err("a cancelled wait");
    assert_eq!(sqlstate(&err), "57014", "{err:?}");
    admin.batch_execute("RESET statement_timeout").unwrap();
    let left: Vec<String> = admin
        .query(
            "SELECT status FROM lightdb_bgw.workers WHERE name = 'abandoned'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        left,
        ["stopped"],
        "the abandoned launch's worker is stopped"
    );

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
    let rows_before = worker_rows(&mut admin);
    let err = admin
        .query_one(
            &format!("SELECT lightdb_bgw.launch({FOREVER}, queue => true)"),
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&err), "53400", "{err:?}");
    assert!(hint_of(&err).contains("lightdb_bgw.max_queued"), "{err:?}");
    let rows_after = worker_rows(&mut admin);
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
