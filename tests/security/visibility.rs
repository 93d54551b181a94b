//! What other roles see of a worker: who, where and when, never data.

use super::*;

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
