//! Running out of postmaster slots, registry slots and out-of-line memory
//! (history makes room: entries without a result first, then the
//! launching role's own), and the supervisor relaunching a child.

use super::*;

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
    assert!(hint_of(&err).contains("\"max_worker_processes\""));
    let listed = worker_rows(&mut client);
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
    assert!(hint_of(&err).contains("\"lightdb_bgw.max_workers\""));
    assert_eq!(stop_worker(&mut client, ids[0]), "stopped");
    let newest = launch(&mut client, "'sleep'");
    assert!(newest > ids[2], "a new id, never a reused one");
    let err = client
        .query_one("SELECT lightdb_bgw.status($1)", &[&ids[0]])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42704", "the oldest history made room");
}

/// Worker `id`'s run ended and its process is reaped (its entry is
/// history that may be reused).
fn run_done(client: &mut Client, id: i64) {
    client
        .query("SELECT * FROM lightdb_bgw.result($1)", &[&id])
        .unwrap();
    let reached: String = client
        .query_one("SELECT lightdb_bgw.wait_for_shutdown($1, '30s')", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(reached, "stopped");
}

#[test]
fn history_keeps_results_longest_and_other_roles_results_longest_of_all() {
    let (cluster, mut admin) =
        Cluster::with_extension("historyresults", &[("lightdb_bgw.max_workers", "4")]);
    admin
        .batch_execute("CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN")
        .unwrap();
    grant_all(&mut admin, "alice, bob");
    let mut bob = cluster.connect_as("postgres", "bob");
    let kept: i64 = bob
        .query_one("SELECT lightdb_bgw.run('SELECT 42 AS answer')", &[])
        .unwrap()
        .get(0);
    run_done(&mut bob, kept);
    let plain = launch(&mut admin, "'sleep', config => '{\"duration\": \"10ms\"}'");
    assert_eq!(stop_worker(&mut admin, plain), "stopped");
    // alice's runs fill the registry and go on: the entry without a result
    // makes room first, then her own oldest results, never bob's.
    let mut alice = cluster.connect_as("postgres", "alice");
    let mut hers = Vec::new();
    for _ in 0..6 {
        let id: i64 = alice
            .query_one("SELECT lightdb_bgw.run('SELECT 1')", &[])
            .unwrap()
            .get(0);
        run_done(&mut alice, id);
        hers.push(id);
    }
    let err = admin
        .query_one("SELECT lightdb_bgw.status($1)", &[&plain])
        .unwrap_err();
    assert_eq!(
        sqlstate(&err),
        "42704",
        "the entry without a result went first"
    );
    let answer: String = bob
        .query_one("SELECT lightdb_bgw.result($1)::text", &[&kept])
        .unwrap()
        .get(0);
    assert_eq!(answer, r#"{"answer": 42}"#, "bob's result is still there");
    let err = alice
        .query_one("SELECT lightdb_bgw.status($1)", &[&hers[0]])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42704", "alice's oldest made room");
}

#[test]
fn full_text_memory_fails_with_54000_and_history_makes_room() {
    // 2 MB for configs: each launch below keeps about 0.8 MB (its config
    // and the jsonb the view shows).
    let cluster = preloaded("textsfull", &[("lightdb_bgw.max_text_memory", "2MB")]);
    let mut client = cluster.connect("postgres");
    let big = "'sql', config => jsonb_build_object('sql', 'SELECT 1 -- ' || repeat('x', 400000), \
               'interval', '1h')";
    let mut ids = Vec::new();
    let err = loop {
        assert!(ids.len() < 10, "10 launches of 0.8 MB fit in 2 MB");
        match client.query_one(&format!("SELECT lightdb_bgw.launch({big})"), &[]) {
            Ok(row) => ids.push(row.get::<_, i64>(0)),
            Err(err) => break err,
        }
    };
    assert!(!ids.is_empty(), "the first launch fits: {err}");
    assert_eq!(sqlstate(&err), "54000", "{err}");
    assert!(
        hint_of(&err).contains("\"lightdb_bgw.max_text_memory\""),
        "{err:?}"
    );
    let rows: i64 = client
        .query_one("SELECT count(*) FROM lightdb_bgw.workers", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, ids.len() as i64, "the refused launch left no row");
    // Stopped, their configs are history: a new launch drops the oldest
    // entry (and its texts) to make room, as a full registry does.
    for &id in &ids {
        assert_eq!(stop_worker(&mut client, id), "stopped", "worker {id}");
    }
    let newest = launch(&mut client, big);
    let err = client
        .query_one("SELECT lightdb_bgw.status($1)", &[&ids[0]])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42704", "the oldest history made room");
    // Forgotten, the rest give their memory back: as many launches fit
    // again as at first.
    assert_eq!(stop_worker(&mut client, newest), "stopped");
    for &id in ids[1..].iter().chain([&newest]) {
        client
            .query_one("SELECT lightdb_bgw.forget($1)", &[&id])
            .unwrap();
    }
    let again: Vec<i64> = ids.iter().map(|_| launch(&mut client, big)).collect();
    for id in again {
        assert_eq!(stop_worker(&mut client, id), "stopped", "worker {id}");
    }
}

#[test]
fn a_large_result_fits_after_many_configs_came_and_went() {
    // 24 MB of out-of-line memory: ten 1 MB launches at once (a config
    // and its jsonb each) leave the area in segments of up to 8 MB, which
    // it keeps after they are forgotten; a 9 MB result is kept in pieces.
    let cluster = preloaded(
        "textpieces",
        &[
            ("lightdb_bgw.max_text_memory", "24MB"),
            ("lightdb_bgw.max_result_memory", "20MB"),
        ],
    );
    let mut client = cluster.connect("postgres");
    let ids: Vec<i64> = (0..10)
        .map(|_| {
            client
                .query_one(
                    "SELECT lightdb_bgw.run('SELECT 1 -- ' || repeat('x', 1000000), queue => true)",
                    &[],
                )
                .unwrap()
                .get(0)
        })
        .collect();
    for &id in &ids {
        wait_for_shutdown(&mut client, id);
        client
            .query_one("SELECT lightdb_bgw.forget($1)", &[&id])
            .unwrap();
    }
    let row = client
        .query_one(
            "SELECT count(*), sum(length(r ->> 'x')) FROM lightdb_bgw.result(lightdb_bgw.run( \
               'SELECT repeat(''x'', 1000) AS x FROM generate_series(1, 9000)')) r",
            &[],
        )
        .unwrap_or_else(|e| panic!("a 9 MB result: {e:?}"));
    assert_eq!(row.get::<_, i64>(0), 9000);
    assert_eq!(row.get::<_, i64>(1), 9_000_000);
}

#[test]
fn one_role_filling_the_text_memory_leaves_superusers_room_and_others_results() {
    let cluster = preloaded("textshare", &[("lightdb_bgw.max_text_memory", "16MB")]);
    let mut admin = cluster.connect("postgres");
    admin
        .batch_execute("CREATE ROLE mallory LOGIN; CREATE ROLE bob LOGIN")
        .unwrap();
    grant_all(&mut admin, "mallory, bob");
    // bob's result, unread.
    let mut bob = cluster.connect_as("postgres", "bob");
    let answer: i64 = bob
        .query_one("SELECT lightdb_bgw.run('SELECT 42 AS answer')", &[])
        .unwrap()
        .get(0);
    wait_for_shutdown(&mut bob, answer);
    // mallory takes every slot she may, then queues 0.8 MB launches (which
    // nobody may drop to make room) until she is refused.
    let mut mallory = cluster.connect_as("postgres", "mallory");
    let mut hers = Vec::new();
    while let Ok(row) =
        mallory.query_one("SELECT lightdb_bgw.launch('sleep', database => NULL)", &[])
    {
        hers.push(row.get::<_, i64>(0));
        assert!(hers.len() < 64, "the slots never ran out");
    }
    let big = "'sql', config => jsonb_build_object('sql', 'SELECT 1 -- ' || repeat('x', 400000)), \
               wait => false, queue => true";
    let err = loop {
        match mallory.query_one(&format!("SELECT lightdb_bgw.launch({big})"), &[]) {
            Ok(row) => hers.push(row.get::<_, i64>(0)),
            Err(err) => break err,
        }
        assert!(hers.len() < 200, "16 MB never ran out");
    };
    assert_eq!(sqlstate(&err), "54000", "{err:?}");
    // A superuser still launches one (the last eighth is kept for them),
    // and bob's result was not dropped to make room for mallory.
    launch(&mut admin, big);
    let rows: i64 = bob
        .query_one("SELECT count(*) FROM lightdb_bgw.result($1)", &[&answer])
        .unwrap_or_else(|e| panic!("bob's result: {e:?}"))
        .get(0);
    assert_eq!(rows, 1);
    for id in hers {
        stop_worker(&mut admin, id);
        admin
            .query_one("SELECT lightdb_bgw.forget($1)", &[&id])
            .unwrap();
    }
    // The same with results: mallory keeps 1 MB results until refused,
    // and a superuser's run still keeps its own.
    let mut kept = 0;
    let err = loop {
        match mallory.query(
            "SELECT * FROM lightdb_bgw.result(lightdb_bgw.run('SELECT repeat(''a'', 1000000)'))",
            &[],
        ) {
            Ok(_) => kept += 1,
            Err(err) => break err,
        }
        assert!(kept < 40, "16 MB never ran out");
    };
    assert_eq!(sqlstate(&err), "54000", "{err:?}");
    let rows = admin
        .query(
            "SELECT * FROM lightdb_bgw.result(lightdb_bgw.run('SELECT repeat(''x'', 200000)'))",
            &[],
        )
        .unwrap_or_else(|e| panic!("the superuser's result after {kept} of mallory's: {e:?}"));
    assert_eq!(rows.len(), 1);
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
fn a_failed_runs_error_that_no_memory_holds_is_raised_from_its_start() {
    let (cluster, mut admin) =
        Cluster::with_extension("errorsfull", &[("lightdb_bgw.max_text_memory", "4MB")]);
    admin.batch_execute("CREATE ROLE alice LOGIN").unwrap();
    grant_all(&mut admin, "alice");
    let mut alice = cluster.connect_as("postgres", "alice");
    // alice's results fill her share of the text memory, with large ones
    // and then smaller ones.
    for size in [300_000, 30_000] {
        let sql = format!("SELECT lightdb_bgw.run('SELECT repeat(''x'', {size}) AS big')");
        let filled = (0..100).any(|_| {
            let id: i64 = alice.query_one(&sql, &[]).unwrap().get(0);
            alice
                .query("SELECT * FROM lightdb_bgw.result($1)", &[&id])
                .is_err()
        });
        assert!(filled, "her share fills up with results of {size} bytes");
    }
    // A run failing with a large error: neither its kept copy nor its
    // full record fits; result raises it from the start kept inline.
    let id: i64 = alice
        .query_one(
            "SELECT lightdb_bgw.run($q$DO $x$ BEGIN RAISE EXCEPTION USING \
             MESSAGE = 'big' || repeat('e', 100000), DETAIL = repeat('d', 100000), \
             HINT = repeat('h', 100000), ERRCODE = 'P0042'; END $x$$q$)",
            &[],
        )
        .unwrap()
        .get(0);
    let err = alice
        .query("SELECT * FROM lightdb_bgw.result($1)", &[&id])
        .expect_err("a failed run");
    assert_eq!(sqlstate(&err), "P0042", "{err:?}");
    assert!(db_error(&err).message().starts_with("bigeee"), "{err:?}");
}
