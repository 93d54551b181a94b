//! Failed registrations give their slot back, and a launch checks connect
//! rights and waits until the worker is connected.

use super::*;

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
    let rows = worker_rows(&mut admin);
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
    assert!(hint_of(&err).contains("bypass_allowconn"));
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
