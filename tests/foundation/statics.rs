//! Static workers: reload, shutdown, listing and restart, SIGTERM in the
//! middle of a fold, a dropped table, postmaster death.

use super::*;

#[test]
fn sighup_changes_the_counter_naptime() {
    let mut cluster = Cluster::preloaded(
        "sighup",
        &[
            ("lightdb_bgw.static_workers", "counter:1"),
            ("lightdb_bgw.naptime", "1h"),
        ],
    );
    cluster.start();
    let mut client = cluster.connect("postgres");
    wait_for_workers(&mut client, "lightdb_bgw counter %", 1);
    let table = "lightdb_bgw_counter_1.counted";
    let before = wait_for_counter_table(&mut client, table);

    client
        .execute(&format!("INSERT INTO {table} VALUES ('delta', 7)"), &[])
        .unwrap();
    // With a naptime of an hour nothing is folded for a good while.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        total(&mut client, table),
        before,
        "folded despite a 1h naptime"
    );

    client
        .batch_execute("ALTER SYSTEM SET lightdb_bgw.naptime = '300ms'")
        .unwrap();
    cluster.reload();
    let reloaded = Instant::now();
    eventually("first fold after reload", Duration::from_secs(20), || {
        (total(&mut client, table) == before + 7).then_some(())
    });
    println!("fold after SIGHUP: {:?}", reloaded.elapsed());

    // The new naptime sticks: later deltas are folded within a few naptimes.
    for round in 1..=3 {
        client
            .execute(&format!("INSERT INTO {table} VALUES ('delta', 1)"), &[])
            .unwrap();
        let inserted = Instant::now();
        eventually("fold at the new naptime", Duration::from_secs(20), || {
            (total(&mut client, table) == before + 7 + round).then_some(())
        });
        let took = inserted.elapsed();
        println!("round {round}: folded after {took:?}");
        assert!(
            took < Duration::from_secs(5),
            "naptime not applied: {took:?}"
        );
    }
    let naptime: String = client
        .query_one("SHOW lightdb_bgw.naptime", &[])
        .unwrap()
        .get(0);
    assert_eq!(naptime, "300ms");
}

#[test]
fn fast_shutdown_with_static_workers_is_prompt() {
    let (mut cluster, mut client) = Cluster::with_extension(
        "fastshutdown",
        &[
            ("lightdb_bgw.static_workers", "counter:2, sleep:2"),
            ("lightdb_bgw.naptime", "1h"),
        ],
    );
    wait_for_workers(&mut client, "lightdb_bgw counter %", 2);
    eventually("4 started workers", START, || {
        let row = client
            .query_one(
                "SELECT count(*) FROM lightdb_bgw.workers WHERE status = 'started'",
                &[],
            )
            .ok()?;
        (row.get::<_, i64>(0) == 4).then_some(())
    });
    let pids: Vec<i32> = client
        .query("SELECT pid FROM lightdb_bgw.workers", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    let took = cluster.stop(StopMode::Fast);
    println!("fast shutdown with 4 static workers: {took:?}");
    assert!(took < Duration::from_secs(5), "fast shutdown took {took:?}");
    for pid in pids {
        assert!(!process_alive(pid), "worker {pid} outlived the server");
    }
}

#[test]
fn static_workers_are_listed_and_restart_after_sigterm() {
    let (_cluster, mut client) = Cluster::with_extension(
        "staticlist",
        &[("lightdb_bgw.static_workers", "sleep:1, counter:1")],
    );
    let rows = eventually("both started", START, || {
        let rows = client
            .query(
                "SELECT id, name, kind, database, status, start_time, \
                        restart_after::text, is_static, pid \
                 FROM lightdb_bgw.workers ORDER BY id",
                &[],
            )
            .ok()?;
        rows.iter()
            .all(|r| r.get::<_, String>(4) == "started")
            .then_some(rows)
    });
    let summary: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {:?} {} {} {}",
                r.get::<_, i64>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, Option<String>>(3),
                r.get::<_, String>(5),
                r.get::<_, String>(6),
                r.get::<_, bool>(7)
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            "1 lightdb_bgw sleep 1 sleep None postmaster_start 00:00:10 true",
            "2 lightdb_bgw counter 1 counter Some(\"postgres\") recovery_finished 00:00:10 true",
        ]
    );
    // The extension's own dispatcher shows in pg_stat_activity under its
    // own backend_type, connected to no database; a cancel does not end it.
    let dispatcher = |client: &mut Client| {
        client
            .query(
                "SELECT pid, datname FROM pg_stat_activity \
                 WHERE backend_type = 'lightdb_bgw dispatcher'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, i32>(0), r.get::<_, Option<String>>(1)))
            .collect::<Vec<_>>()
    };
    let seen = dispatcher(&mut client);
    assert!(
        seen.len() == 1 && seen[0].1.is_none(),
        "one dispatcher, no database: {seen:?}"
    );
    let cancelled: bool = client
        .query_one("SELECT pg_cancel_backend($1)", &[&seen[0].0])
        .unwrap()
        .get(0);
    assert!(cancelled);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        dispatcher(&mut client),
        seen,
        "a cancel leaves the dispatcher running"
    );
    // PostgreSQL's rule: a worker with a restart time that is killed by
    // SIGTERM comes back after that time, and the registry counts it.
    let sleep_pid: i32 = rows[0].get(8);
    Cluster::kill(sleep_pid, libc::SIGTERM);
    eventually("sleep worker gone", Duration::from_secs(5), || {
        (!process_alive(sleep_pid)).then_some(())
    });
    // (The postmaster's pid shows as soon as it forked the process; the
    // restart is counted once the process has claimed its slot.)
    let row = eventually("sleep worker restarted", Duration::from_secs(30), || {
        client
            .query_opt(
                "SELECT pid, restarts, last_exit FROM lightdb_bgw.workers \
                 WHERE id = 1 AND status = 'started' AND pid <> $1 AND restarts > 0",
                &[&sleep_pid],
            )
            .ok()
            .flatten()
    });
    assert_eq!(row.get::<_, i32>(1), 1, "restart counted");
    assert_eq!(
        row.get::<_, Option<i32>>(2),
        Some(1),
        "exit code of the SIGTERM"
    );
}

#[test]
fn sigterm_ends_a_counter_blocked_in_the_middle_of_a_fold() {
    let mut cluster = Cluster::preloaded(
        "sigterm",
        &[
            ("lightdb_bgw.static_workers", "counter:1"),
            ("lightdb_bgw.naptime", "200ms"),
        ],
    );
    cluster.start();
    let mut client = cluster.connect("postgres");
    let table = "lightdb_bgw_counter_1.counted";
    wait_for_counter_table(&mut client, table);
    let pid = counter_pid(&mut client, 1);

    // Hold the table so that the next fold waits on the lock...
    let mut holder = cluster.connect("postgres");
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .unwrap();
    eventually("counter blocked in its fold", START, || {
        let row = client
            .query_one(
                "SELECT state = 'active' AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM%' \
                 FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .ok()?;
        row.get::<_, Option<bool>>(0).unwrap_or(false).then_some(())
    });
    // ...then SIGTERM: the server's own handler cancels the statement.
    let sent = Instant::now();
    Cluster::kill(pid, libc::SIGTERM);
    eventually("counter gone", Duration::from_secs(5), || {
        (!process_alive(pid)).then_some(())
    });
    let took = sent.elapsed();
    println!("counter exit after SIGTERM mid-statement: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    tx.rollback().unwrap();
    assert!(
        cluster
            .log()
            .contains("terminating background worker \"lightdb_bgw\" due to administrator command"),
        "{}",
        cluster.log()
    );
}

#[test]
fn a_counter_survives_its_table_being_dropped() {
    let (cluster, mut client) = Cluster::with_extension(
        "droptable",
        &[
            ("lightdb_bgw.static_workers", "counter:1"),
            ("lightdb_bgw.naptime", "100ms"),
        ],
    );
    let table = "lightdb_bgw_counter_1.counted";
    wait_for_counter_table(&mut client, table);
    let pid = counter_pid(&mut client, 1);

    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .unwrap();
    // The fold fails, the error is recorded, the table comes back, and the
    // same process carries on counting.
    eventually("table re-created", START, || {
        client
            .query_opt(
                &format!("SELECT value FROM {table} WHERE type = 'total'"),
                &[],
            )
            .ok()
            .flatten()
            .map(|_| ())
    });
    client
        .execute(&format!("INSERT INTO {table} VALUES ('delta', 3)"), &[])
        .unwrap();
    eventually("folded after re-creation", START, || {
        (total(&mut client, table) == 3).then_some(())
    });
    assert_eq!(
        counter_pid(&mut client, 1),
        pid,
        "the worker did not restart"
    );
    assert!(process_alive(pid));
    assert!(
        cluster.log().contains("42P01: relation"),
        "the failed fold is logged with its SQLSTATE:\n{}",
        cluster.log()
    );
}

#[test]
fn workers_leave_when_the_postmaster_dies() {
    let (cluster, mut client) = Cluster::with_extension(
        "pmdeath",
        &[
            ("lightdb_bgw.static_workers", "counter:2, sleep:2"),
            ("lightdb_bgw.naptime", "1h"),
        ],
    );
    let pids: Vec<i32> = eventually("4 started workers", START, || {
        let rows = client
            .query(
                "SELECT pid FROM lightdb_bgw.workers WHERE status = 'started'",
                &[],
            )
            .ok()?;
        (rows.len() == 4).then(|| rows.iter().map(|r| r.get(0)).collect())
    });
    drop(client);
    let postmaster = cluster.postmaster_pid();
    Cluster::kill(postmaster, libc::SIGKILL);
    let killed = Instant::now();
    eventually("every worker gone", Duration::from_secs(10), || {
        pids.iter().all(|&p| !process_alive(p)).then_some(())
    });
    let took = killed.elapsed();
    println!("4 workers gone {took:?} after the postmaster's death");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}
