//! Cluster-level guarantees under faults and load: crash-reinitialisation,
//! postmaster death, shutdown, hot standby start times, concurrency, and
//! stale handles. Each test prints the figures it measured.

mod common;

use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(60);

fn one<T: for<'a> postgres::types::FromSql<'a>>(client: &mut Client, sql: &str, id: i64) -> T {
    client
        .query_one(sql, &[&id])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Pids of every lightdb_bgw worker process of the cluster, from /proc.
fn worker_pids(postmaster: i32) -> Vec<i32> {
    child_pids(postmaster, |title| {
        title.contains("lightdb_bgw") && !title.contains("dispatcher")
    })
}

fn crash_and_recover(victim: impl FnOnce(&mut Cluster, &mut Client)) {
    let (mut cluster, mut client) = Cluster::with_extension(
        "crash",
        &[
            ("lightdb_bgw.static_workers", "counter:1"),
            ("lightdb_bgw.naptime", "200ms"),
            ("max_worker_processes", "16"),
        ],
    );
    // A restartable worker with a large config (200 kB of SQL text).
    let back = launch(
        &mut client,
        "'sql', restart_after => '1 min', config => jsonb_build_object('interval', '1h', \
         'sql', 'SELECT 1 -- ' || repeat('x', 200000))",
    );
    let back_config: String = one(
        &mut client,
        "SELECT config::text FROM lightdb_bgw.workers WHERE id = $1",
        back,
    );
    let gone = launch(&mut client, "'sleep'");
    eventually("static counter started", LONG, || {
        (one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", 1) == "started").then_some(())
    });
    let old_pid: i32 = one(&mut client, "SELECT lightdb_bgw.pid($1)", back);
    let runs = |client: &mut Client| -> Option<i64> {
        one(
            client,
            "SELECT runs FROM lightdb_bgw.workers WHERE id = $1",
            back,
        )
    };
    eventually("the sql worker ran", LONG, || {
        (runs(&mut client) == Some(1)).then_some(())
    });

    victim(&mut cluster, &mut client);
    let crashed = Instant::now();
    drop(client);
    let mut client = cluster.reconnect_after_crash(LONG);
    let pids: (i32, i32) = eventually("restartable workers back", LONG, || {
        let a: Option<i32> = client
            .query_one("SELECT lightdb_bgw.pid(1)", &[])
            .ok()?
            .get(0);
        let b: Option<i32> = client
            .query_one("SELECT lightdb_bgw.pid($1)", &[&back])
            .ok()?
            .get(0);
        Some((a?, b?))
    });
    println!(
        "restartable workers back {:?} after the crash",
        crashed.elapsed()
    );
    assert_ne!(pids.1, old_pid);
    assert!(cluster.log().contains("terminated by signal 9"));
    let rows = client
        .query(
            "SELECT id, status, restarts, last_error FROM lightdb_bgw.workers ORDER BY id",
            &[],
        )
        .unwrap();
    let summary: Vec<(i64, String, i32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "started".to_string(), 1),
            (back, "started".to_string(), 1),
            (gone, "stopped".to_string(), 0),
        ]
    );
    let note: Option<String> = rows[2].get(3);
    assert!(note.unwrap_or_default().contains("crash-reinitialisation"));
    // The restarted worker has its full config back (kept on disk at
    // launch); it runs with it.
    let config: Option<String> = one(
        &mut client,
        "SELECT config::text FROM lightdb_bgw.workers WHERE id = $1",
        back,
    );
    assert_eq!(config.as_deref(), Some(back_config.as_str()));
    eventually("the restarted sql worker ran again", LONG, || {
        (runs(&mut client) == Some(2)).then_some(())
    });
    let fresh = launch(&mut client, "'sleep'");
    assert!(fresh > gone, "a new id after the crash: {fresh}");
    // The restarted worker is still under control: terminate stops it.
    assert!(one::<bool>(
        &mut client,
        "SELECT lightdb_bgw.terminate($1)",
        back
    ));
    assert_eq!(
        one::<String>(
            &mut client,
            "SELECT lightdb_bgw.wait_for_shutdown($1, '30s')",
            back
        ),
        "stopped"
    );
    eventually("terminated worker gone", LONG, || {
        (!process_alive(pids.1)).then_some(())
    });
}

#[test]
fn sigkill_of_a_worker_reinitialises_and_restartable_workers_return() {
    crash_and_recover(|_, client| {
        let pid: i32 = client
            .query_one(
                "SELECT pid FROM lightdb_bgw.workers WHERE restart_after = '1 min'",
                &[],
            )
            .unwrap()
            .get(0);
        Cluster::kill(pid, libc::SIGKILL);
    });
}

#[test]
fn sigkill_of_a_backend_reinitialises_and_restartable_workers_return() {
    crash_and_recover(|cluster, _| {
        let mut other = cluster.connect("postgres");
        let pid: i32 = other
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        Cluster::kill(pid, libc::SIGKILL);
    });
}

#[test]
fn every_worker_leaves_within_a_second_of_postmaster_death() {
    let (cluster, mut client) =
        Cluster::with_extension("pmdeath10", &[("max_worker_processes", "64")]);
    for i in 0..10 {
        launch(
            &mut client,
            &format!("'counter', config => '{{\"schema\": \"c{i}\"}}'"),
        );
        launch(
            &mut client,
            "'sql', config => '{\"sql\": \"SELECT 1\", \"interval\": \"1s\"}'",
        );
        launch(&mut client, "'sleep'");
        launch(
            &mut client,
            "'supervisor', database => NULL, config => '{\"children\": 1, \"child_kind\": \"sleep\"}'",
        );
    }
    let postmaster = cluster.postmaster_pid();
    let pids = eventually("50 workers", LONG, || {
        let pids = worker_pids(postmaster);
        (pids.len() >= 50).then_some(pids)
    });
    drop(client);
    Cluster::kill(postmaster, libc::SIGKILL);
    let killed = Instant::now();
    eventually("every worker gone", Duration::from_secs(10), || {
        pids.iter().all(|&p| !process_alive(p)).then_some(())
    });
    let took = killed.elapsed();
    println!(
        "{} workers gone {took:?} after the postmaster's death",
        pids.len()
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

fn twenty_workers(client: &mut Client) -> Vec<i32> {
    let sleeper = launch(
        client,
        "'sql', config => '{\"sql\": \"SELECT pg_sleep(60)\"}'",
    );
    for i in 0..5 {
        launch(
            client,
            &format!("'counter', config => '{{\"schema\": \"s{i}\"}}'"),
        );
    }
    for _ in 0..14 {
        launch(client, "'sleep'");
    }
    let pid: i32 = one(client, "SELECT lightdb_bgw.pid($1)", sleeper);
    eventually("sql worker in pg_sleep", LONG, || {
        client
            .query_opt(
                "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'",
                &[&pid],
            )
            .ok()
            .flatten()
    });
    client
        .query(
            "SELECT pid FROM lightdb_bgw.workers WHERE status = 'started'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn smart_fast_and_immediate_shutdowns_with_twenty_workers() {
    for mode in [StopMode::Smart, StopMode::Fast, StopMode::Immediate] {
        let (mut cluster, mut client) =
            Cluster::with_extension("shutdown", &[("max_worker_processes", "32")]);
        let pids = twenty_workers(&mut client);
        assert_eq!(pids.len(), 20);
        drop(client);
        let took = cluster.stop(mode);
        println!("{mode:?} shutdown with 20 workers (one in pg_sleep(60)): {took:?}");
        assert!(took < Duration::from_secs(5), "{mode:?} took {took:?}");
        eventually("nothing left running", Duration::from_secs(5), || {
            pids.iter().all(|&p| !process_alive(p)).then_some(())
        });
    }
}

#[test]
fn start_times_on_a_hot_standby_before_and_after_promotion() {
    let (primary, mut client) =
        Cluster::with_extension("primary", &[("max_worker_processes", "16")]);
    client
        .batch_execute("CREATE TABLE replicated AS SELECT 42 AS answer")
        .unwrap();
    drop(client);
    let mut standby = Cluster::standby_of(
        &primary,
        "standby",
        &[("lightdb_bgw.static_workers", "sleep:1, counter:1")],
    );
    standby.start();
    let mut client = standby.connect("postgres");
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery);

    // consistent_state: runs on the standby and reads.
    let reader = launch(
        &mut client,
        "'sql', start_time => 'consistent_state', \
         config => '{\"sql\": \"SELECT answer FROM replicated\", \"interval\": \"100ms\"}'",
    );
    eventually("the reader ran", LONG, || {
        let row = client
            .query_one(
                "SELECT runs, last_run_rows, last_error FROM lightdb_bgw.workers WHERE id = $1",
                &[&reader],
            )
            .ok()?;
        let runs: Option<i64> = row.get(0);
        let rows: Option<i64> = row.get(1);
        let error: Option<String> = row.get(2);
        assert_eq!(error, None);
        (runs.unwrap_or(0) >= 2 && rows == Some(1)).then_some(())
    });
    // postmaster_start: needs no database.
    let early = launch(
        &mut client,
        "'sleep', start_time => 'postmaster_start', database => NULL",
    );
    assert_eq!(
        one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", early),
        "started"
    );
    // recovery_finished: waits for the promotion.
    let late = launch(
        &mut client,
        "'sleep', start_time => 'recovery_finished', wait => false",
    );
    assert_eq!(
        one::<String>(
            &mut client,
            "SELECT lightdb_bgw.wait_for_startup($1, '2s')",
            late
        ),
        "timeout"
    );
    assert_eq!(
        one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", late),
        "not_yet_started"
    );
    // launch(..., wait => true) of such a worker does not block until a
    // promotion that may never come: it returns at once with a NOTICE.
    let (mut noticed, notices) = standby.connect_with_notices("postgres");
    let began = Instant::now();
    let waited = launch(&mut noticed, "'sleep', start_time => 'recovery_finished'");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(
        one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", waited),
        "not_yet_started"
    );
    let said = notices.lock().unwrap().clone();
    assert!(
        said.iter().any(|n| n.contains(&format!(
            "worker {waited} starts once recovery has finished"
        ))),
        "{said:?}"
    );
    // Static workers on the standby: the sleep (postmaster_start) runs, the
    // counter (recovery_finished) waits.
    assert_eq!(
        one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", 1),
        "started"
    );
    assert_eq!(
        one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", 2),
        "not_yet_started"
    );

    standby.promote();
    let promoted = Instant::now();
    assert_eq!(
        one::<String>(
            &mut client,
            "SELECT lightdb_bgw.wait_for_startup($1, '30s')",
            late
        ),
        "started"
    );
    assert_eq!(
        one::<String>(
            &mut client,
            "SELECT lightdb_bgw.wait_for_startup($1, '30s')",
            2
        ),
        "started"
    );
    println!(
        "recovery_finished workers started {:?} after promotion",
        promoted.elapsed()
    );
    eventually(
        "static counter made its table after promotion",
        LONG,
        || {
            client
                .query_opt(
                    "SELECT 1 FROM lightdb_bgw_counter_2.counted WHERE type = 'total'",
                    &[],
                )
                .ok()
                .flatten()
        },
    );
}

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
