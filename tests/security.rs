//! Cluster tests of the security and correctness rules a hostile user
//! probes: a worker runs only as the role and in the database it was
//! authorised for (by OID, also after a restart and for a supervisor's
//! children), and stops for good when they are gone; other roles see no
//! data of a worker; failed registrations give their slot back; a launch
//! that waits returns only once the worker is connected; a supervisor
//! backs off from a child that keeps dying; terminating a static worker
//! goes through the postmaster.

mod common;

use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(60);

fn field<T: for<'a> postgres::types::FromSql<'a>>(client: &mut Client, column: &str, id: i64) -> T {
    client
        .query_one(
            &format!("SELECT {column} FROM lightdb_bgw.workers WHERE id = $1"),
            &[&id],
        )
        .unwrap_or_else(|e| panic!("{column} of worker {id}: {e}"))
        .get(0)
}

/// A cluster with the extension, role alice (granted the extension) and a
/// table `seen` she may insert into; clients as the superuser and as her.
fn with_alice(name: &str) -> (Cluster, Client, Client) {
    let (cluster, mut admin) = Cluster::with_extension(name, &[("max_worker_processes", "16")]);
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN;
             CREATE TABLE seen (who text, super bool);
             GRANT INSERT ON seen TO alice;",
        )
        .unwrap();
    grant_all(&mut admin, "alice");
    let alice = cluster.connect_as("postgres", "alice");
    (cluster, admin, alice)
}

/// A superuser renames alice and creates a superuser under her old name.
fn impersonate_alice(admin: &mut Client) {
    admin
        .batch_execute(
            "ALTER ROLE alice RENAME TO alice_renamed; CREATE ROLE alice SUPERUSER LOGIN",
        )
        .unwrap();
}

/// Waits until table `seen` holds more than `n` rows.
fn seen_more_than(client: &mut Client, n: i64, what: &str) {
    eventually(what, LONG, || {
        let rows: i64 = client
            .query_one("SELECT count(*) FROM seen", &[])
            .unwrap()
            .get(0);
        (rows > n).then_some(())
    });
}

/// Every row of `seen` was written as `who`, never as a superuser.
fn seen_only_as(client: &mut Client, who: &str) {
    let row = client
        .query_one(
            "SELECT array_agg(DISTINCT who), bool_or(super) FROM seen",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Vec<String>>(0), vec![who.to_string()]);
    assert!(!row.get::<_, bool>(1), "no worker became a superuser");
}

/// Ends the worker's process with SIGTERM (exit code 1): the postmaster
/// restarts it after its `restart_after`. Waits until its exit is recorded.
fn kill_for_restart(admin: &mut Client, id: i64) {
    let restarts: i32 = field(admin, "restarts", id);
    admin
        .query_one("SELECT pg_terminate_backend(lightdb_bgw.pid($1))", &[&id])
        .unwrap();
    eventually("the exit is recorded", LONG, || {
        let status: String = field(admin, "status", id);
        let now: i32 = field(admin, "restarts", id);
        (status == "not_yet_started" && now == restarts).then_some(())
    });
}

/// Waits until worker `id` runs again after `kill_for_restart`.
fn restarted(admin: &mut Client, id: i64, restarts: i32) {
    eventually("the worker restarted", LONG, || {
        let status: String = field(admin, "status", id);
        let now: i32 = field(admin, "restarts", id);
        (status == "started" && now > restarts).then_some(())
    });
}

/// Waits until worker `id` is stopped and checks it stays stopped, without
/// a restart loop, with `expected` at the start of its last error.
fn stopped_for_good(admin: &mut Client, id: i64, expected: &str) {
    let reached = wait_for_shutdown(admin, id);
    assert_eq!(reached, "stopped");
    let restarts: i32 = field(admin, "restarts", id);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(field::<String>(admin, "status", id), "stopped");
    assert_eq!(
        field::<i32>(admin, "restarts", id),
        restarts,
        "no restart loop"
    );
    let error: Option<String> = field(admin, "last_error", id);
    let error = error.unwrap_or_default();
    assert!(error.starts_with(expected), "{error}");
    assert!(error.contains("stops for good"), "{error}");
}

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
    admin
        .query_one(
            "SELECT pg_terminate_backend(lightdb_bgw.pid($1))",
            &[&first],
        )
        .unwrap();
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
fn other_roles_see_who_where_and_when_but_no_data() {
    let (cluster, mut admin) =
        Cluster::with_extension("visibility", &[("max_worker_processes", "16")]);
    admin
        .batch_execute("CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN")
        .unwrap();
    grant_all(&mut admin, "alice, bob");
    let failing = |secret: &str| {
        format!("'sql', config => '{{\"sql\": \"SELECT ''{secret}''::int\"}}', wait => false")
    };
    let admins = launch(&mut admin, &failing("admin secret"));
    let mut alice = cluster.connect_as("postgres", "alice");
    let alices = launch(&mut alice, &failing("alice secret"));
    for id in [admins, alices] {
        wait_for_shutdown(&mut admin, id);
    }
    let data = "last_error, runs, last_run_rows, last_run_ms::text, config::text";
    let row_of = |client: &mut Client, id: i64| {
        client
            .query_one(
                &format!(
                    "SELECT name, kind, role, database, status, launched_at IS NOT NULL, \
                     stopped_at IS NOT NULL, {data} FROM lightdb_bgw.workers WHERE id = $1"
                ),
                &[&id],
            )
            .unwrap()
    };
    let mut bob = cluster.connect_as("postgres", "bob");
    for id in [admins, alices] {
        let row = row_of(&mut bob, id);
        assert_eq!(row.get::<_, String>(1), "sql");
        assert_eq!(row.get::<_, String>(4), "stopped");
        assert!(row.get::<_, bool>(5) && row.get::<_, bool>(6));
        assert!(row.get::<_, Option<String>>(3).is_some());
        assert_eq!(row.get::<_, Option<String>>(7), None, "last_error hidden");
        assert_eq!(row.get::<_, Option<i64>>(8), None, "runs hidden");
        assert_eq!(row.get::<_, Option<i64>>(9), None, "last_run_rows hidden");
        assert_eq!(row.get::<_, Option<String>>(10), None, "last_run_ms hidden");
        assert_eq!(row.get::<_, Option<String>>(11), None, "config hidden");
    }
    // Alice sees her own worker's data, not the superuser's.
    let own = row_of(&mut alice, alices);
    assert!(own.get::<_, String>(7).contains("alice secret"));
    assert_eq!(own.get::<_, Option<i64>>(8), Some(1));
    let theirs = row_of(&mut alice, admins);
    assert_eq!(theirs.get::<_, Option<String>>(7), None);
    // The superuser sees everything.
    let all = row_of(&mut admin, alices);
    assert!(all.get::<_, String>(7).contains("alice secret"));
}

#[test]
fn failed_registrations_give_their_slot_back() {
    let (_cluster, mut admin) = Cluster::with_extension(
        "noleak",
        &[
            ("max_worker_processes", "16"),
            ("lightdb_bgw.max_workers", "4"),
        ],
    );
    let refused = [
        (
            "SELECT lightdb_bgw.launch('sleep', start_time => 'postmaster_start')",
            "22023",
        ),
        (
            "SELECT lightdb_bgw.launch_raw('lightdb_bgw', 'lightdb_bgw_main', 'x', \
             start_time => 'postmaster_start')",
            "22023",
        ),
        (
            "SELECT lightdb_bgw.launch_raw('lightdb_bgw', 'lightdb_bgw_main', 'x', flags => '{}')",
            "22023",
        ),
        (
            "SELECT lightdb_bgw.launch('sleep', restart_after => '0')",
            "22023",
        ),
        (
            "SELECT lightdb_bgw.launch('sleep', database => 'nowhere')",
            "3D000",
        ),
    ];
    // Ten rounds: more failures than the registry has slots.
    for _ in 0..10 {
        for (sql, code) in refused {
            let err = admin.query(sql, &[]).expect_err(sql);
            assert_eq!(sqlstate(&err), code, "{sql}: {err}");
        }
    }
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM lightdb_bgw.workers", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "nothing left behind");
    let ids: Vec<i64> = (0..4).map(|_| launch(&mut admin, "'sleep'")).collect();
    for id in ids {
        stop_worker(&mut admin, id);
    }
}

#[test]
fn launch_checks_connect_rights_and_waits_until_the_worker_is_connected() {
    let (cluster, mut admin) =
        Cluster::with_extension("connect", &[("max_worker_processes", "16")]);
    for sql in [
        "CREATE DATABASE closed WITH ALLOW_CONNECTIONS = false",
        "CREATE DATABASE private",
        "REVOKE CONNECT ON DATABASE private FROM PUBLIC",
        "CREATE ROLE alice LOGIN",
    ] {
        admin.batch_execute(sql).unwrap();
    }
    grant_all(&mut admin, "alice");
    let err = admin
        .query(
            "SELECT lightdb_bgw.launch('sleep', database => 'closed')",
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&err), "55000", "{err}");
    assert!(db_error(&err)
        .hint()
        .unwrap_or("")
        .contains("bypass_allowconn"));
    let mut alice = cluster.connect_as("postgres", "alice");
    for client in [&mut alice, &mut admin] {
        let err = client
            .query(
                "SELECT lightdb_bgw.launch('sleep', database => 'private', role => 'alice')",
                &[],
            )
            .unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{err}");
        assert!(db_error(&err).message().contains("CONNECT"), "{err}");
    }

    // A role the worker cannot see (created in the launching transaction,
    // not yet committed): the launch waits for the connection and raises
    // the worker's own error, and the worker does not come back.
    let mut tx = admin.transaction().unwrap();
    tx.batch_execute("CREATE ROLE uncommitted LOGIN").unwrap();
    let err = tx
        .query(
            "SELECT lightdb_bgw.launch('sleep', role => 'uncommitted', restart_after => '1s')",
            &[],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&err), "28000", "{err}");
    let db = db_error(&err);
    assert!(db.message().contains("does not exist"), "{err}");
    assert!(
        db.detail()
            .unwrap_or("")
            .contains("stopped before it was ready"),
        "{err}"
    );
    drop(tx);
    let id: i64 = admin
        .query_one(
            "SELECT id FROM lightdb_bgw.workers WHERE role = 'uncommitted'",
            &[],
        )
        .unwrap()
        .get(0);
    stopped_for_good(&mut admin, id, "28000: role with OID");
}

#[test]
fn a_supervisor_backs_off_from_a_child_that_keeps_dying() {
    let (_cluster, mut admin) =
        Cluster::with_extension("backoff", &[("max_worker_processes", "16")]);
    let sup = launch(
        &mut admin,
        "'supervisor', database => NULL, config => '{\"children\": 1, \"child_kind\": \
         \"sleep\", \"child_config\": {\"duration\": \"1ms\"}}'",
    );
    std::thread::sleep(Duration::from_secs(5));
    let children: i64 = admin
        .query_one(
            "SELECT count(*) FROM lightdb_bgw.workers WHERE id > $1",
            &[&sup],
        )
        .unwrap()
        .get(0);
    // Launches at 0 s, then after waits of 1, 2 and 4 s: at most 4 in 5 s
    // (without a backoff: hundreds).
    assert!((2..=4).contains(&children), "{children} children in 5 s");
    let note: Option<String> = field(&mut admin, "last_error", sup);
    let note = note.unwrap_or_default();
    assert!(note.contains("times in a row; relaunching it in"), "{note}");
    stop_worker(&mut admin, sup);
}

#[test]
fn terminating_a_static_worker_frees_its_postmaster_slot() {
    // 6 slots: the logical replication launcher, the dispatcher and the
    // static sleep take three; dynamic launches fill the rest until 53000.
    let (_cluster, mut admin) = Cluster::with_extension(
        "static_handle",
        &[
            ("max_worker_processes", "6"),
            ("lightdb_bgw.static_workers", "sleep:1"),
        ],
    );
    let fill = |admin: &mut Client| -> Vec<i64> {
        let mut ids = Vec::new();
        loop {
            match admin.query_one("SELECT lightdb_bgw.launch('sleep', database => NULL)", &[]) {
                Ok(row) => ids.push(row.get(0)),
                Err(err) => {
                    assert_eq!(sqlstate(&err), "53000", "{err}");
                    return ids;
                }
            }
        }
    };
    let before = fill(&mut admin);
    for id in &before {
        stop_worker(&mut admin, *id);
    }
    let static_pid: i32 = field(&mut admin, "pid", 1);
    assert_eq!(stop_worker(&mut admin, 1), "stopped");
    eventually("the static worker's process is gone", LONG, || {
        (!process_alive(static_pid)).then_some(())
    });
    // The postmaster forgot the static worker at once (no restart that
    // sees the request and leaves): its slot is free for a dynamic one.
    let after = fill(&mut admin);
    assert_eq!(after.len(), before.len() + 1, "{before:?} then {after:?}");
    assert_eq!(field::<i32>(&mut admin, "restarts", 1), 0);
    for id in after {
        stop_worker(&mut admin, id);
    }
}
