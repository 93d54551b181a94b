//! Per-role quotas (read as the server reads settings), a role's bound in
//! the launch queue, and the superuser
//! reserve (also against a supervisor's children), the slot of a
//! worker terminated before it started, a run whose result was read
//! no longer counting toward the quota, a quota of 0 refusing even a
//! queued launch, and a role's bound on the results it keeps.

use super::*;

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
             ALTER ROLE alice SET lightdb_bgw.max_workers_per_role = 2;
             ALTER ROLE alice SET lightdb_bgw.max_queued_per_role = 1;",
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
        hint_of(&err).contains("lightdb_bgw.max_workers_per_role"),
        "{err:?}"
    );
    // ... or waits in the queue until one of hers stops.
    let queued = launch(&mut alice, &format!("{FOREVER}, queue => true"));
    assert_eq!(status(&mut alice, queued), "queued");
    // ... one at a time: her bound in the queue.
    let err = alice
        .query_one(
            &format!("SELECT lightdb_bgw.launch({FOREVER}, queue => true)"),
            &[],
        )
        .expect_err("alice's bound in the queue");
    assert_eq!(sqlstate(&err), "53400", "{err:?}");
    assert!(
        hint_of(&err).contains("lightdb_bgw.max_queued_per_role"),
        "{err:?}"
    );

    // bob has no quota: he takes what is left but the reserve.
    let mut bob = cluster.connect_as("postgres", "bob");
    let (his, err) = fill(&mut bob);
    assert_eq!(his.len(), free - 2 - 2, "bob leaves the superuser reserve");
    assert_eq!(sqlstate(&err), "53000", "{err:?}");
    assert!(
        hint_of(&err).contains("lightdb_bgw.superuser_reserved_workers"),
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
        let note = last_error(&mut admin, sup);
        (running as usize == fit && note.is_some_and(|n| n.contains("cannot launch child")))
            .then_some(())
    });
    let (su, err) = fill(&mut admin);
    assert_eq!(su.len(), 2, "the reserve is still the superuser's: {err:?}");
    stop_all(&mut admin, &su);
    assert_eq!(stop_worker(&mut bob, sup), "stopped");

    // A supervisor is no way around the quota: alice's (one of her two)
    // runs one child, the others noted (in full: four notes are longer
    // than the slot's inline start), and her workers stay two.
    let sup = launch(
        &mut alice,
        "'supervisor', database => NULL, \
         config => '{\"children\": 5, \"child_kind\": \"sleep\"}'",
    );
    let live_of_alice = "SELECT count(*) FROM lightdb_bgw.workers \
                         WHERE role = 'alice' AND status IN ('started', 'not_yet_started')";
    eventually(
        "alice's supervisor runs what her quota allows",
        LONG,
        || {
            let live: i64 = admin.query_one(live_of_alice, &[]).unwrap().get(0);
            let note = last_error(&mut admin, sup);
            (live == 2
                && note.is_some_and(|n| {
                    n.contains("role \"alice\" already has 2 background workers")
                    && n.ends_with(
                        "cannot launch child 5: role \"alice\" already has 2 background workers",
                    )
                }))
            .then_some(())
        },
    );
    // The supervisor tries again every second: still two.
    std::thread::sleep(Duration::from_millis(2500));
    let live: i64 = admin.query_one(live_of_alice, &[]).unwrap().get(0);
    assert_eq!(live, 2, "alice's workers with her supervisor's children");
    assert_eq!(stop_worker(&mut alice, sup), "stopped");

    // The quota is read as the server reads settings: a value written
    // '1.0' is 1, and a database's own setting holds for a role without
    // one of its own.
    admin
        .batch_execute(
            "CREATE ROLE carol LOGIN; ALTER ROLE carol SET lightdb_bgw.max_workers_per_role = '1.0'",
        )
        .unwrap();
    admin.batch_execute("CREATE DATABASE quota_db").unwrap();
    admin
        .batch_execute("ALTER DATABASE quota_db SET lightdb_bgw.max_workers_per_role = 1")
        .unwrap();
    grant_all(&mut admin, "carol");
    let mut carol = cluster.connect_as("postgres", "carol");
    let (hers, err) = fill(&mut carol);
    assert_eq!(hers.len(), 1, "carol's quota of '1.0'");
    assert_eq!(sqlstate(&err), "53000", "{err:?}");
    stop_all(&mut carol, &hers);
    let in_db = "SELECT lightdb_bgw.launch('sleep', database => 'quota_db', wait => false)";
    let first: i64 = bob.query_one(in_db, &[]).unwrap().get(0);
    let err = bob.query_one(in_db, &[]).expect_err("quota_db's quota");
    assert_eq!(sqlstate(&err), "53000", "{err:?}");
    assert_eq!(stop_worker(&mut bob, first), "stopped");
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

#[test]
fn a_role_at_its_quota_runs_again_once_its_result_is_read() {
    let (cluster, mut admin) = Cluster::with_extension("quota_runs", &[]);
    admin
        .batch_execute(
            "CREATE ROLE carol LOGIN; ALTER ROLE carol SET lightdb_bgw.max_workers_per_role = 1;",
        )
        .unwrap();
    grant_all(&mut admin, "carol");
    let mut carol = cluster.connect_as("postgres", "carol");
    // Each run's worker is done once its result is read: the next run
    // fits, although the process of the one before may still be ending.
    for round in 0..200 {
        let id: i64 = carol
            .query_one("SELECT lightdb_bgw.run('SELECT 1 AS one')", &[])
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"))
            .get(0);
        let rows = carol
            .query("SELECT * FROM lightdb_bgw.result($1)", &[&id])
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert_eq!(rows.len(), 1, "round {round}");
    }
}

#[test]
fn a_role_whose_quota_is_zero_is_refused_queue_or_not() {
    let (cluster, mut admin) = Cluster::with_extension("quota_zero", &[]);
    admin
        .batch_execute(
            "CREATE ROLE erin LOGIN; ALTER ROLE erin SET lightdb_bgw.max_workers_per_role = 0",
        )
        .unwrap();
    grant_all(&mut admin, "erin");
    let mut erin = cluster.connect_as("postgres", "erin");
    // Nothing could ever start a queued worker of hers: refused at once,
    // with the setting named, and nothing left in the registry.
    for call in [
        format!("lightdb_bgw.launch({FOREVER})"),
        format!("lightdb_bgw.launch({FOREVER}, queue => true)"),
        "lightdb_bgw.run('SELECT 1', queue => true)".to_string(),
    ] {
        let err = erin
            .query_one(&format!("SELECT {call}"), &[])
            .expect_err(&call);
        assert_eq!(sqlstate(&err), "53000", "{call}: {err:?}");
        let hint = hint_of(&err);
        assert!(
            hint.contains("lightdb_bgw.max_workers_per_role")
                && hint.contains("the queue cannot help"),
            "{call}: {err:?}"
        );
        assert!(
            db_error(&err)
                .message()
                .contains("may have no background workers"),
            "{call}: {err:?}"
        );
    }
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM lightdb_bgw.workers WHERE role = 'erin'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[test]
fn a_roles_kept_results_are_bounded_by_its_own_setting() {
    let (cluster, mut admin) = Cluster::with_extension("result_share", &[]);
    admin
        .batch_execute(
            "CREATE ROLE gail LOGIN; \
             ALTER ROLE gail SET lightdb_bgw.max_result_memory_per_role = '50kB'",
        )
        .unwrap();
    grant_all(&mut admin, "gail");
    let mut gail = cluster.connect_as("postgres", "gail");
    let big = "SELECT lightdb_bgw.run('SELECT repeat(''x'', 30000) AS big')";
    let run = |client: &mut Client| -> i64 { client.query_one(big, &[]).unwrap().get(0) };
    let read =
        |client: &mut Client, id: i64| client.query("SELECT * FROM lightdb_bgw.result($1)", &[&id]);
    // One 30 kB result fits in her 50 kB; a second one, kept beside it,
    // does not: that run fails with 54000 naming the setting.
    let first = run(&mut gail);
    assert_eq!(read(&mut gail, first).unwrap().len(), 1);
    let second = run(&mut gail);
    let err = read(&mut gail, second).expect_err("over her bound");
    assert_eq!(sqlstate(&err), "54000", "{err:?}");
    assert!(
        format!("{err:?}").contains("lightdb_bgw.max_result_memory_per_role"),
        "{err:?}"
    );
    // A failed run's error, kept as its result, counts too: a 40 kB
    // message beside her 30 kB result is not kept as a result (the error
    // is still raised, read from the worker's record), where another
    // role's is.
    let failing = "SELECT lightdb_bgw.run($q$DO $b$ BEGIN RAISE EXCEPTION '%', \
                   repeat('e', 40000); END $b$$q$)";
    let kept_bytes = |client: &mut Client, id: i64| -> i64 {
        let _ = client.query("SELECT * FROM lightdb_bgw.result($1)", &[&id]);
        client
            .query_one(
                "SELECT result_bytes FROM lightdb_bgw.workers WHERE id = $1",
                &[&id],
            )
            .unwrap()
            .get(0)
    };
    let hers: i64 = gail.query_one(failing, &[]).unwrap().get(0);
    let err = read(&mut gail, hers).expect_err("a failed run");
    assert_eq!(sqlstate(&err), "P0001", "{err:?}");
    assert_eq!(kept_bytes(&mut gail, hers), 0);
    let theirs: i64 = admin.query_one(failing, &[]).unwrap().get(0);
    assert!(kept_bytes(&mut admin, theirs) > 40_000);
    // Nor may she lift it in the text (a superuser's setting).
    let lifted: i64 = gail
        .query_one(
            "SELECT lightdb_bgw.run('SET lightdb_bgw.max_result_memory_per_role = -1; \
             SELECT repeat(''x'', 30000) AS big')",
            &[],
        )
        .unwrap()
        .get(0);
    let err = read(&mut gail, lifted).expect_err("not hers to set");
    assert_eq!(sqlstate(&err), "42501", "{err:?}");
    // Another role is not bound by hers.
    for _ in 0..3 {
        let id = run(&mut admin);
        assert_eq!(read(&mut admin, id).unwrap().len(), 1);
    }
    // Once she forgets the first, the same run fits again.
    for id in [second, lifted, hers] {
        let _ = gail.query_one("SELECT lightdb_bgw.wait_for_shutdown($1, '30s')", &[&id]);
    }
    assert!(gail
        .query_one("SELECT lightdb_bgw.forget($1)", &[&first])
        .unwrap()
        .get::<_, bool>(0));
    let again = run(&mut gail);
    assert_eq!(read(&mut gail, again).unwrap().len(), 1);
}
