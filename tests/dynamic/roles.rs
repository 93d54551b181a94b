//! The non-superuser rules, and bypass_allowconn's reach.

use super::*;

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
    let err = last_error(&mut admin, reads_secret);
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
    assert!(hint_of(&err).contains("bypass_allowconn"));
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
