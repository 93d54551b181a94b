//! A worker keeps the role and database it was authorised for, by OID,
//! also after a restart and for a supervisor's children; a supervisor
//! whose role is gone stops for good, and so does an interval worker whose
//! role is dropped while it runs.

use super::*;

#[test]
fn a_restarted_worker_keeps_the_role_it_was_authorised_as() {
    let (_cluster, mut admin, mut alice) = with_alice("identity_role");
    let id = launch(
        &mut alice,
        "'sql', restart_after => '1s', config => '{\"interval\": \"50ms\", \"sql\": \
         \"INSERT INTO seen SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user\"}'",
    );
    seen_more_than(&mut admin, 0, "alice's worker ran");

    // A superuser renames her role and creates a superuser under her old
    // name; the worker restarts.
    impersonate_alice(&mut admin);
    kill_for_restart(&mut admin, id);
    admin.batch_execute("TRUNCATE seen").unwrap();
    restarted(&mut admin, id, 0);
    seen_more_than(&mut admin, 2, "the restarted worker ran");
    seen_only_as(&mut admin, "alice_renamed");
    let user: String = admin
        .query_one(
            "SELECT usename FROM pg_stat_activity WHERE pid = lightdb_bgw.pid($1)",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(user, "alice_renamed");

    // Her role is dropped: the worker stops for good at its next start.
    admin
        .batch_execute("DROP OWNED BY alice_renamed; DROP ROLE alice_renamed")
        .unwrap();
    kill_for_restart(&mut admin, id);
    stopped_for_good(&mut admin, id, "28000: role with OID");
}

#[test]
fn a_worker_never_follows_its_database_name_to_another_database() {
    let (cluster, mut admin) =
        Cluster::with_extension("identity_db", &[("max_worker_processes", "16")]);
    admin.batch_execute("CREATE DATABASE place").unwrap();
    let mut place = cluster.connect("place");
    place.batch_execute("CREATE TABLE seen (db text)").unwrap();
    let id = launch(
        &mut admin,
        "'sql', database => 'place', restart_after => '2s', config => '{\"interval\": \
         \"50ms\", \"sql\": \"INSERT INTO seen SELECT current_database()\"}'",
    );
    seen_more_than(&mut place, 0, "the worker ran in its database");
    drop(place);

    // While it waits for its restart, its database is renamed (which
    // stops it for good, as every worker connected to a database being
    // renamed) and a new database is created under the old name: the
    // worker never runs there.
    kill_for_restart(&mut admin, id);
    admin
        .batch_execute("ALTER DATABASE place RENAME TO place_renamed")
        .unwrap();
    admin.batch_execute("CREATE DATABASE place").unwrap();
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(field::<String>(&mut admin, "status", id), "stopped");
    assert_eq!(field::<i32>(&mut admin, "restarts", id), 0);
    let ran_there: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = 'place' AND backend_type = 'lightdb_bgw'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ran_there, 0, "no worker of ours in the new database");
}

#[test]
fn a_supervisors_children_keep_its_role() {
    let (_cluster, mut admin, mut alice) = with_alice("identity_children");
    let sup = launch(
        &mut alice,
        "'supervisor', config => '{\"children\": 1, \"child_kind\": \"sql\", \"child_config\": \
         {\"interval\": \"50ms\", \"sql\": \"INSERT INTO seen SELECT current_user, rolsuper \
         FROM pg_roles WHERE rolname = current_user\"}}'",
    );
    let child_of = |admin: &mut Client| -> Option<i64> {
        admin
            .query_one(
                "SELECT max(id) FROM lightdb_bgw.workers WHERE id > $1 AND status = 'started'",
                &[&sup],
            )
            .unwrap()
            .get(0)
    };
    let first = eventually("the first child runs", LONG, || child_of(&mut admin));
    impersonate_alice(&mut admin);
    terminate_backend(&mut admin, first);
    let second = eventually("the child is relaunched", LONG, || {
        child_of(&mut admin).filter(|&id| id > first)
    });
    admin.batch_execute("TRUNCATE seen").unwrap();
    seen_more_than(&mut admin, 2, "the new child ran");
    seen_only_as(&mut admin, "alice_renamed");
    assert_eq!(field::<String>(&mut admin, "role", second), "alice");
    stop_worker(&mut admin, sup);
}

#[test]
fn a_supervisor_whose_role_is_gone_stops_for_good() {
    let (_cluster, mut admin, mut alice) = with_alice("identity_supervisor_gone");
    let sup = launch(
        &mut alice,
        "'supervisor', restart_after => '1s', \
         config => '{\"children\": 1, \"child_kind\": \"sleep\"}'",
    );
    let first = eventually("the child runs", LONG, || {
        admin
            .query_one(
                "SELECT max(id) FROM lightdb_bgw.workers WHERE id > $1 AND status = 'started'",
                &[&sup],
            )
            .unwrap()
            .get::<_, Option<i64>>(0)
    });
    drop(alice);
    admin
        .batch_execute("DROP OWNED BY alice; DROP ROLE alice")
        .unwrap();
    // The relaunched child cannot connect: the supervisor stops for good,
    // saying why, instead of relaunching children for ever.
    assert_eq!(stop_worker(&mut admin, first), "stopped");
    assert_eq!(wait_for_shutdown(&mut admin, sup), "stopped");
    let note: String = field(&mut admin, "last_error", sup);
    assert!(
        note.contains("28000") && note.contains("the supervisor stops for good"),
        "{note}"
    );
    let before = worker_rows(&mut admin);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        worker_rows(&mut admin),
        before,
        "no child launched any more"
    );
    assert_eq!(field::<String>(&mut admin, "status", sup), "stopped");
}

#[test]
fn an_interval_worker_whose_role_is_dropped_stops_for_good() {
    let (_cluster, mut admin, mut alice) = with_alice("identity_dropped");
    let id = launch(
        &mut alice,
        "'sql', restart_after => '1s', config => '{\"interval\": \"50ms\", \"sql\": \
         \"INSERT INTO seen SELECT current_user, false\"}'",
    );
    seen_more_than(&mut admin, 0, "alice's worker ran");
    drop(alice);
    // Her role is dropped while the worker runs: it stops for good before
    // its next run, instead of failing every run for ever.
    admin
        .batch_execute("DROP OWNED BY alice; DROP ROLE alice")
        .unwrap();
    stopped_for_good(&mut admin, id, "28000: role with OID");
}
