//! Cluster tests of dynamic workers: cross-session waits and terminate,
//! restart rules, the non-superuser rules, notifications received by a real
//! LISTENing client, slot exhaustion and the supervisor.

mod common;

use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(60);

fn preloaded(name: &str, extra: &[(&str, &str)]) -> Cluster {
    let mut settings = vec![("max_worker_processes", "16")];
    settings.extend_from_slice(extra);
    Cluster::with_extension(name, &settings).0
}

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
fn non_superusers_are_confined_to_their_roles() {
    let cluster = preloaded("security", &[]);
    let mut admin = cluster.connect("postgres");
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN;
             GRANT alice TO carol;
             CREATE TABLE secret (x int); INSERT INTO secret VALUES (1);
             CREATE TABLE open_to_alice (x int); GRANT ALL ON open_to_alice TO alice;
             GRANT USAGE ON SCHEMA lightdb_bgw TO alice, bob, carol;
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA lightdb_bgw TO alice, bob, carol;
             GRANT SELECT ON lightdb_bgw.workers TO alice, bob, carol;",
        )
        .unwrap();
    let admins = launch(&mut admin, "'sleep', config => '{\"duration\": \"1h\"}'");

    let mut alice = cluster.connect_as("postgres", "alice");
    let denied = |client: &mut Client, sql: &str| {
        let err = client.query(sql, &[]).expect_err(sql);
        assert_eq!(sqlstate(&err), "42501", "{sql}: {err}");
    };
    denied(
        &mut alice,
        "SELECT lightdb_bgw.launch('sleep', role => 'bob')",
    );
    denied(
        &mut alice,
        "SELECT lightdb_bgw.launch('sleep', role => 'postgres')",
    );
    denied(
        &mut alice,
        "SELECT lightdb_bgw.launch('sleep', bypass_allowconn => true)",
    );
    denied(
        &mut alice,
        "SELECT lightdb_bgw.launch_raw('lightdb_bgw', 'lightdb_bgw_main', 'x')",
    );
    denied(
        &mut alice,
        &format!("SELECT lightdb_bgw.terminate({admins})"),
    );
    denied(
        &mut alice,
        &format!("SELECT lightdb_bgw.wait_for_shutdown({admins}, '1s')"),
    );

    // Her own workers: launched, seen with config, her privileges only.
    let mine = launch(&mut alice, "'sleep'");
    let rows = alice
        .query(
            "SELECT id, role, config IS NULL FROM lightdb_bgw.workers WHERE id IN ($1, $2) ORDER BY id",
            &[&admins, &mine],
        )
        .unwrap();
    assert_eq!(
        rows[0].get::<_, Option<String>>(1).as_deref(),
        Some("postgres")
    );
    assert!(rows[0].get::<_, bool>(2), "another role's config is hidden");
    assert_eq!(
        rows[1].get::<_, Option<String>>(1).as_deref(),
        Some("alice")
    );
    assert!(!rows[1].get::<_, bool>(2), "her own config is visible");

    let reads_secret = launch(
        &mut alice,
        "'sql', config => '{\"sql\": \"INSERT INTO open_to_alice SELECT x FROM secret\"}'",
    );
    let writes_ok = launch(
        &mut alice,
        "'sql', config => '{\"sql\": \"INSERT INTO open_to_alice VALUES (7)\"}'",
    );
    for id in [reads_secret, writes_ok] {
        let _ = wait_for_shutdown(&mut alice, id);
    }
    let err: Option<String> = admin
        .query_one(
            "SELECT last_error FROM lightdb_bgw.workers WHERE id = $1",
            &[&reads_secret],
        )
        .unwrap()
        .get(0);
    assert!(
        err.as_deref()
            .unwrap_or("")
            .starts_with("42501: permission denied for table secret"),
        "{err:?}"
    );
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM open_to_alice", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "only the permitted insert landed");
    let user: String = admin
        .query_one(
            "SELECT usename FROM pg_stat_activity WHERE pid = lightdb_bgw.pid($1)",
            &[&mine],
        )
        .unwrap()
        .get(0);
    assert_eq!(user, "alice", "the worker runs as alice");

    // bob may not touch alice's worker; carol, a member of alice, may.
    let mut bob = cluster.connect_as("postgres", "bob");
    denied(&mut bob, &format!("SELECT lightdb_bgw.terminate({mine})"));
    let mut carol = cluster.connect_as("postgres", "carol");
    let stopped: bool = carol
        .query_one("SELECT lightdb_bgw.terminate($1)", &[&mine])
        .unwrap()
        .get(0);
    assert!(stopped);
    admin
        .query_one("SELECT lightdb_bgw.terminate($1)", &[&admins])
        .unwrap();

    // Without a grant, nothing at all.
    admin
        .batch_execute("CREATE ROLE dave LOGIN; GRANT USAGE ON SCHEMA lightdb_bgw TO dave")
        .unwrap();
    let mut dave = cluster.connect_as("postgres", "dave");
    denied(&mut dave, "SELECT lightdb_bgw.launch('sleep')");
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
fn slot_exhaustion_fails_cleanly_and_recovers() {
    // max_worker_processes = 4: the logical replication launcher takes one.
    let mut cluster = Cluster::preloaded("exhaust", &[("max_worker_processes", "4")]);
    cluster.start();
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION lightdb_bgw")
        .unwrap();
    let mut ids = Vec::new();
    let err = loop {
        match client.query_one("SELECT lightdb_bgw.launch('sleep')", &[]) {
            Ok(row) => ids.push(row.get::<_, i64>(0)),
            Err(err) => break err,
        }
        assert!(
            ids.len() < 10,
            "max_worker_processes did not bound launches"
        );
    };
    assert_eq!(sqlstate(&err), "53000", "{err}");
    assert!(db_error(&err)
        .hint()
        .unwrap_or("")
        .contains("\"max_worker_processes\""));
    let listed: i64 = client
        .query_one("SELECT count(*) FROM lightdb_bgw.workers", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        listed as usize,
        ids.len(),
        "the failed launch left no registry slot"
    );
    println!(
        "{} workers fit; the next launch failed with 53000",
        ids.len()
    );
    for id in &ids {
        assert_eq!(stop_worker(&mut client, *id), "stopped");
    }
    // Full recovery: as many launches succeed again.
    for _ in 0..ids.len() {
        client
            .query_one("SELECT lightdb_bgw.launch('sleep')", &[])
            .unwrap();
    }
}

#[test]
fn a_full_registry_fails_with_53400_and_makes_room_from_history() {
    let cluster = preloaded("registryfull", &[("lightdb_bgw.max_workers", "3")]);
    let mut client = cluster.connect("postgres");
    let ids: Vec<i64> = (0..3).map(|_| launch(&mut client, "'sleep'")).collect();
    let err = client
        .query_one("SELECT lightdb_bgw.launch('sleep')", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "53400", "{err}");
    assert!(db_error(&err)
        .hint()
        .unwrap_or("")
        .contains("\"lightdb_bgw.max_workers\""));
    assert_eq!(stop_worker(&mut client, ids[0]), "stopped");
    let newest = launch(&mut client, "'sleep'");
    assert!(newest > ids[2], "a new id, never a reused one");
    let err = client
        .query_one("SELECT lightdb_bgw.status($1)", &[&ids[0]])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42704", "the oldest history made room");
}

#[test]
fn the_supervisor_relaunches_a_child_killed_with_sigterm() {
    let cluster = preloaded("supervisor", &[]);
    let mut client = cluster.connect("postgres");
    let sup = launch(
        &mut client,
        "'supervisor', config => '{\"children\": 2, \"child_kind\": \"sleep\"}', database => NULL",
    );
    let child_name = format!("lightdb_bgw supervisor {sup} child 1");
    let first: (i64, i32) = eventually("child 1 running", LONG, || {
        client
            .query_opt(
                "SELECT id, pid FROM lightdb_bgw.workers WHERE name = $1 AND status = 'started'",
                &[&child_name],
            )
            .ok()
            .flatten()
            .map(|r| (r.get(0), r.get(1)))
    });
    Cluster::kill(first.1, libc::SIGTERM);
    let killed = Instant::now();
    let second: (i64, i32) = eventually("child 1 relaunched", LONG, || {
        client
            .query_opt(
                "SELECT id, pid FROM lightdb_bgw.workers \
                 WHERE name = $1 AND status = 'started' AND id <> $2",
                &[&child_name, &first.0],
            )
            .ok()
            .flatten()
            .map(|r| (r.get(0), r.get(1)))
    });
    println!("child relaunched {:?} after SIGTERM", killed.elapsed());
    assert_ne!(second.1, first.1);
    // Terminating the supervisor stops its children.
    client
        .query_one("SELECT lightdb_bgw.terminate($1)", &[&sup])
        .unwrap();
    eventually("children stopped", LONG, || {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM lightdb_bgw.workers WHERE name LIKE $1 AND status <> 'stopped'",
                &[&format!("lightdb_bgw supervisor {sup} child %")],
            )
            .ok()?
            .get(0);
        (n == 0).then_some(())
    });
    assert!(!process_alive(second.1));
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
fn bypass_allowconn_reaches_a_database_that_refuses_connections() {
    let cluster = preloaded("allowconn", &[]);
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE DATABASE closed ALLOW_CONNECTIONS false")
        .unwrap();
    let err = client
        .query_one(
            "SELECT lightdb_bgw.launch('sleep', database => 'closed')",
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&err), "55000", "{err}");
    assert!(db_error(&err)
        .hint()
        .unwrap_or("")
        .contains("bypass_allowconn"));
    let id = launch(
        &mut client,
        "'sleep', database => 'closed', bypass_allowconn => true",
    );
    let process_id = worker_pid(&mut client, id).expect("running");
    let datname: String = eventually("connected to closed", LONG, || {
        client
            .query_opt(
                "SELECT datname FROM pg_stat_activity WHERE pid = $1",
                &[&process_id],
            )
            .ok()
            .flatten()
            .and_then(|r| r.get::<_, Option<String>>(0))
    });
    assert_eq!(datname, "closed");
    client
        .query_one("SELECT lightdb_bgw.terminate($1)", &[&id])
        .unwrap();
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
