//! Concurrent lifecycles beside a listing leave nothing behind, and a
//! stale id never reaches the worker that reused its slot.

use super::*;

#[test]
fn concurrent_lifecycles_leave_nothing_behind() {
    let (cluster, _) = Cluster::with_extension(
        "concurrency",
        &[
            ("max_worker_processes", "8"),
            ("lightdb_bgw.max_workers", "64"),
        ],
    );
    let postmaster = cluster.postmaster_pid();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut lister = cluster.connect("postgres");
    let stop_lister = stop.clone();
    let listing = std::thread::spawn(move || {
        let mut lists = 0u64;
        while !stop_lister.load(std::sync::atomic::Ordering::Relaxed) {
            lister
                .query("SELECT * FROM lightdb_bgw.workers", &[])
                .expect("listing");
            lists += 1;
        }
        lists
    });
    let began = Instant::now();
    let sessions: Vec<_> = (0..4)
        .map(|_| {
            let mut client = cluster.connect("postgres");
            std::thread::spawn(move || {
                let (mut done, mut exhausted) = (0, 0);
                for _ in 0..200 {
                    let id: i64 = match client
                        .query_one("SELECT lightdb_bgw.launch('sleep', database => NULL)", &[])
                    {
                        Ok(row) => row.get(0),
                        Err(err) => {
                            assert_eq!(sqlstate(&err), "53000", "{err}");
                            exhausted += 1;
                            continue;
                        }
                    };
                    let reached: String = client
                        .query_one("SELECT lightdb_bgw.wait_for_startup($1, '30s')", &[&id])
                        .unwrap()
                        .get(0);
                    assert_ne!(reached, "timeout");
                    let reached = stop_worker(&mut client, id);
                    assert_eq!(reached, "stopped", "stuck wait for worker {id}");
                    done += 1;
                }
                (done, exhausted)
            })
        })
        .collect();
    let mut total = 0;
    let mut exhausted = 0;
    for s in sessions {
        let (d, e) = s.join().expect("a session failed");
        total += d;
        exhausted += e;
    }
    let took = began.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let lists = listing.join().expect("the lister failed");
    println!(
        "{total} lifecycles in {took:?} ({:.1}/s), {exhausted} launches refused with 53000, {lists} listings",
        total as f64 / took.as_secs_f64()
    );
    assert!(total >= 700, "only {total} of 800 cycles completed");
    let mut client = cluster.connect("postgres");
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM lightdb_bgw.workers WHERE status <> 'stopped'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(live, 0, "registry slots still in use");
    eventually("no worker process left", Duration::from_secs(5), || {
        worker_pids(postmaster).is_empty().then_some(())
    });
    // Every postmaster slot is free again: a burst larger than
    // max_worker_processes fails cleanly for the excess only.
    let mut ids = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        match client.query_one("SELECT lightdb_bgw.launch('sleep', database => NULL)", &[]) {
            Ok(row) => ids.push(row.get::<_, i64>(0)),
            Err(err) => {
                assert_eq!(sqlstate(&err), "53000");
                refused += 1;
            }
        }
    }
    println!(
        "burst of 10 with max_worker_processes = 8: {} launched, {refused} refused",
        ids.len()
    );
    assert_eq!(
        ids.len(),
        6,
        "8 slots less the logical replication launcher and the dispatcher"
    );
    for id in &ids {
        assert_eq!(stop_worker(&mut client, *id), "stopped");
    }
    launch(&mut client, "'sleep', database => NULL");
}

#[test]
fn a_stale_id_never_reaches_a_new_worker() {
    let (_cluster, mut client) = Cluster::with_extension(
        "stale",
        &[
            ("max_worker_processes", "4"),
            ("lightdb_bgw.max_workers", "2"),
        ],
    );
    let mut previous: Option<i64> = None;
    for round in 0..200 {
        let id = launch(&mut client, "'sleep', database => NULL");
        let pid: i32 = one(&mut client, "SELECT lightdb_bgw.pid($1)", id);
        if let Some(old) = previous {
            // The old id is gone from the registry (its slot was reused):
            // terminate refuses it and the new worker runs on.
            let err = client
                .query_one("SELECT lightdb_bgw.terminate($1)", &[&old])
                .expect_err("stale id");
            assert_eq!(sqlstate(&err), "42704", "round {round}: {err}");
            assert!(
                process_alive(pid),
                "round {round}: the new worker was stopped"
            );
            assert_eq!(
                one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", id),
                "started"
            );
        }
        // Stop it, then terminate the stopped id again: no effect.
        assert!(one::<bool>(
            &mut client,
            "SELECT lightdb_bgw.terminate($1)",
            id
        ));
        one::<String>(&mut client, "SELECT lightdb_bgw.wait_for_shutdown($1)", id);
        assert!(!one::<bool>(
            &mut client,
            "SELECT lightdb_bgw.terminate($1)",
            id
        ));
        // The previous round's slot is reused by the next launch, so keep
        // one finished worker between rounds.
        let filler = launch(&mut client, "'sleep', database => NULL");
        assert!(one::<bool>(
            &mut client,
            "SELECT lightdb_bgw.terminate($1)",
            filler
        ));
        one::<String>(
            &mut client,
            "SELECT lightdb_bgw.wait_for_shutdown($1)",
            filler,
        );
        previous = Some(id);
    }
    println!("200 rounds of slot reuse: no stale id reached a new worker");
}
