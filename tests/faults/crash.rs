//! Crash-reinitialisation after a SIGKILL (of a worker and of a backend),
//! postmaster death, and the three shutdown modes with twenty workers.

use super::*;

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
