//! Waits and terminate across sessions, the restart rules, notifications
//! to a LISTENing client, and what terminate stops (a long statement, a
//! static worker); ids count on across a restart.

use super::*;

#[test]
fn waits_and_terminate_work_across_sessions() {
    let cluster = preloaded("crosssession", &[]);
    let mut launcher = cluster.connect("postgres");
    let id = launch(&mut launcher, "'sleep'");
    let process_id = worker_pid(&mut launcher, id).expect("running");

    // Another session waits for the shutdown while a third terminates.
    let mut waiter = cluster.connect("postgres");
    let handle = std::thread::spawn(move || {
        let began = Instant::now();
        (wait_for_shutdown(&mut waiter, id), began.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut stopper = cluster.connect("postgres");
    let sent = Instant::now();
    let was: bool = stopper
        .query_one("SELECT lightdb_bgw.terminate($1)", &[&id])
        .unwrap()
        .get(0);
    assert!(was);
    let (reached, waited) = handle.join().unwrap();
    println!(
        "wait_for_shutdown in another session returned {:?} after terminate",
        sent.elapsed()
    );
    assert_eq!(reached, "stopped");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(!process_alive(process_id), "the worker process is gone");
    assert_eq!(status(&mut launcher, id), "stopped");

    // wait_for_startup from a session that did not launch the worker.
    let id2 = launch(&mut launcher, "'sleep', wait => false");
    let mut other = cluster.connect("postgres");
    let reached: String = other
        .query_one("SELECT lightdb_bgw.wait_for_startup($1, '30s')", &[&id2])
        .unwrap()
        .get(0);
    assert_eq!(reached, "started");
    assert!(worker_pid(&mut other, id2).is_some());

    // A wait responds to query cancel.
    let mut canceled = cluster.connect("postgres");
    let token = canceled.cancel_token();
    let handle = std::thread::spawn(move || {
        canceled.query_one("SELECT lightdb_bgw.wait_for_shutdown($1)", &[&id2])
    });
    std::thread::sleep(Duration::from_millis(300));
    token.cancel_query(NoTls).unwrap();
    let err = handle.join().unwrap().expect_err("canceled");
    assert_eq!(sqlstate(&err), "57014");
    other
        .query_one("SELECT lightdb_bgw.terminate($1)", &[&id2])
        .unwrap();
}

#[test]
fn restart_rules_follow_the_exit_code() {
    let cluster = preloaded("restart", &[]);
    let mut client = cluster.connect("postgres");
    // exit code 1 with restart_after: restarted and counted.
    let again = launch(
        &mut client,
        "'sleep', config => '{\"duration\": \"100ms\", \"exit_code\": 1}', restart_after => '1s'",
    );
    let restarts: i32 = eventually("two restarts", LONG, || {
        let r: i32 = client
            .query_one(
                "SELECT restarts FROM lightdb_bgw.workers WHERE id = $1",
                &[&again],
            )
            .ok()?
            .get(0);
        (r >= 2).then_some(r)
    });
    println!("restartable sleep worker restarted {restarts} times");
    // exit code 0: unregistered, never restarted.
    let once = launch(
        &mut client,
        "'sleep', config => '{\"duration\": \"100ms\"}', restart_after => '1s'",
    );
    let reached = wait_for_shutdown(&mut client, once);
    assert_eq!(reached, "stopped");
    std::thread::sleep(Duration::from_millis(2500));
    let row = client
        .query_one(
            "SELECT status, restarts, last_exit FROM lightdb_bgw.workers WHERE id = $1",
            &[&once],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "stopped");
    assert_eq!(row.get::<_, i32>(1), 0);
    assert_eq!(row.get::<_, Option<i32>>(2), Some(0));
    // terminate stops the restartable one for good.
    assert_eq!(stop_worker(&mut client, again), "stopped");
    let before: i32 = client
        .query_one(
            "SELECT restarts FROM lightdb_bgw.workers WHERE id = $1",
            &[&again],
        )
        .unwrap()
        .get(0);
    std::thread::sleep(Duration::from_millis(2500));
    let row = client
        .query_one(
            "SELECT status, restarts FROM lightdb_bgw.workers WHERE id = $1",
            &[&again],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "stopped");
    assert_eq!(row.get::<_, i32>(1), before, "no restart after terminate");
}

#[test]
fn notifications_reach_a_listening_client() {
    let cluster = preloaded("notify", &[]);
    let mut listener = cluster.connect("postgres");
    listener
        .batch_execute("LISTEN from_sql; LISTEN from_counter")
        .unwrap();
    let mut client = cluster.connect("postgres");
    launch(
        &mut client,
        "'sql', config => '{\"sql\": \"NOTIFY from_sql, ''hello from a worker''\"}'",
    );
    let counter = launch(
        &mut client,
        "'counter', config => '{\"schema\": \"notify_counter\", \"naptime\": \"100ms\", \"notify\": \"from_counter\"}'",
    );
    eventually("counter table", LONG, || {
        client
            .query_opt(
                "SELECT 1 FROM notify_counter.counted WHERE type = 'total'",
                &[],
            )
            .ok()
            .flatten()
    });
    client
        .batch_execute("INSERT INTO notify_counter.counted VALUES ('delta', 41), ('delta', 1)")
        .unwrap();

    let mut got_sql = None;
    let mut got_total = false;
    let began = Instant::now();
    while (got_sql.is_none() || !got_total) && began.elapsed() < LONG {
        // A round trip delivers what the server queued for this session.
        listener.batch_execute("SELECT 1").unwrap();
        let mut notes = listener.notifications();
        let mut iter = notes.iter();
        while let Ok(Some(n)) = iter.next() {
            match n.channel() {
                "from_sql" => got_sql = Some(n.payload().to_string()),
                "from_counter" if n.payload() == "42" => got_total = true,
                _ => {}
            }
        }
        drop(iter);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(got_sql.as_deref(), Some("hello from a worker"));
    assert!(got_total, "the counter announced its total of 42");
    client
        .query_one("SELECT lightdb_bgw.terminate($1)", &[&counter])
        .unwrap();
}

#[test]
fn terminate_interrupts_a_long_statement() {
    let cluster = preloaded("longsql", &[]);
    let mut client = cluster.connect("postgres");
    let id = launch(
        &mut client,
        "'sql', config => '{\"sql\": \"SELECT pg_sleep(60)\"}'",
    );
    let process_id = worker_pid(&mut client, id).expect("running");
    eventually("in pg_sleep", LONG, || {
        let row = client
            .query_opt(
                "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'",
                &[&process_id],
            )
            .ok()?;
        row.map(|_| ())
    });
    let sent = Instant::now();
    let reached = stop_worker(&mut client, id);
    let took = sent.elapsed();
    println!("sql worker in pg_sleep(60) stopped {took:?} after terminate");
    assert_eq!(reached, "stopped");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(!process_alive(process_id));
}

#[test]
fn terminate_stops_a_static_worker_for_good() {
    let cluster = preloaded("staticterm", &[("lightdb_bgw.static_workers", "sleep:1")]);
    let mut client = cluster.connect("postgres");
    let process_id = eventually("static sleep running", LONG, || worker_pid(&mut client, 1));
    assert!(client
        .query_one("SELECT lightdb_bgw.terminate(1)", &[])
        .unwrap()
        .get::<_, bool>(0));
    let reached: String = client
        .query_one("SELECT lightdb_bgw.wait_for_shutdown(1, '30s')", &[])
        .unwrap()
        .get(0);
    assert_eq!(reached, "stopped");
    // Stopped through its postmaster handle, so it is never restarted; the
    // process is gone a moment after it recorded its exit.
    eventually("process gone", Duration::from_secs(5), || {
        (!process_alive(process_id)).then_some(())
    });
    assert_eq!(status(&mut client, 1), "stopped");
    let running: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'lightdb_bgw'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(running, 0);
}

#[test]
fn ids_count_on_across_a_restart() {
    let (mut cluster, mut client) =
        Cluster::with_extension("idsrestart", &[("lightdb_bgw.static_workers", "sleep:1")]);
    let before: Vec<i64> = (0..3)
        .map(|_| launch(&mut client, "'sleep', config => '{\"duration\": \"10ms\"}'"))
        .collect();
    let kept = *before.iter().max().unwrap();
    assert!(
        before.iter().all(|&id| id > 1),
        "{before:?}: 1 is the static worker's"
    );
    cluster.restart();
    let mut client = cluster.connect("postgres");
    // The static worker keeps its id; an id kept from before the restart
    // names no worker, and new launches get ids past it.
    eventually("static sleep running", LONG, || worker_pid(&mut client, 1));
    let err = client
        .query_one("SELECT lightdb_bgw.status($1)", &[&kept])
        .expect_err("an id from before the restart");
    assert_eq!(sqlstate(&err), "42704", "{err:?}");
    let after = launch(&mut client, "'sleep', config => '{\"duration\": \"10ms\"}'");
    assert!(after > kept, "new id {after} after {kept}");
}
