//! Loading rules: functions without the preload, malformed and too many
//! static workers, ALTER SYSTEM of a malformed list.

use super::*;

#[test]
fn not_preloaded_functions_raise_55000_with_a_hint() {
    let mut cluster = Cluster::new("notpreloaded", &[]);
    cluster.start();
    let mut client = cluster.connect("postgres");
    client
        .batch_execute("CREATE EXTENSION lightdb_bgw")
        .expect("CREATE EXTENSION succeeds without preload");
    for query in [
        "SELECT * FROM lightdb_bgw.kinds()",
        "SELECT * FROM lightdb_bgw.workers",
        "SELECT * FROM lightdb_bgw.worker_list()",
        "SELECT lightdb_bgw.run('SELECT 1')",
        "SELECT * FROM lightdb_bgw.result(1)",
        "SELECT lightdb_bgw.forget(1)",
        "SELECT lightdb_bgw.cancel(1)",
        "SELECT lightdb_bgw.result_memory()",
    ] {
        let err = client.query(query, &[]).expect_err(query);
        assert_eq!(sqlstate(&err), "55000", "{query}: {err}");
        let db = db_error(&err);
        assert!(
            db.message().contains("shared_preload_libraries"),
            "{query}: {}",
            db.message()
        );
        let hint = db.hint().expect("a hint");
        assert!(
            hint.contains("Add lightdb_bgw to \"shared_preload_libraries\""),
            "{hint}"
        );
    }
    // Nothing crashed: the same session goes on, no worker appeared.
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'lightdb_bgw'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    assert!(
        !cluster.log().contains("server process"),
        "no backend crashed"
    );
    // Loading the library late defines only the reload-time setting.
    let naptime: String = client
        .query_one("SHOW lightdb_bgw.naptime", &[])
        .unwrap()
        .get(0);
    assert_eq!(naptime, "10s");
    client
        .batch_execute("DROP EXTENSION lightdb_bgw")
        .expect("drop");
}

#[test]
fn malformed_static_workers_stop_the_server_and_name_the_entry() {
    for (value, entry) in [
        ("counter:2, bogus:1", "bogus:1"),
        ("counter:x", "counter:x"),
        ("counter:1,,sleep", ""),
    ] {
        let mut cluster = Cluster::preloaded("badstatic", &[("lightdb_bgw.static_workers", value)]);
        let err = cluster
            .try_start()
            .expect_err("the server must refuse to start");
        assert!(!cluster.is_running());
        let log = cluster.log();
        assert!(
            log.contains("invalid value for parameter \"lightdb_bgw.static_workers\""),
            "{value}: {err}"
        );
        assert!(
            log.contains(&format!("entry \"{entry}\"")),
            "{value}: log does not name the entry:\n{log}"
        );
    }
}

#[test]
fn too_many_static_workers_for_the_server_are_refused() {
    let mut cluster = Cluster::preloaded(
        "toomany",
        &[
            ("lightdb_bgw.static_workers", "sleep:9"),
            ("max_worker_processes", "8"),
        ],
    );
    cluster
        .try_start()
        .expect_err("9 static workers cannot fit 8 slots");
    assert!(
        cluster.log().contains("\"max_worker_processes\" is 8"),
        "{}",
        cluster.log()
    );
}

#[test]
fn alter_system_refuses_a_malformed_list() {
    let mut cluster = Cluster::preloaded("altersystem", &[]);
    cluster.start();
    let mut client = cluster.connect("postgres");
    let err = client
        .batch_execute("ALTER SYSTEM SET lightdb_bgw.static_workers = 'counter:2, nope'")
        .expect_err("check hook");
    assert_eq!(sqlstate(&err), "22023");
    let detail = db_error(&err).detail().unwrap_or_default().to_string();
    assert!(detail.contains("entry \"nope\""), "{detail}");
    client
        .batch_execute("ALTER SYSTEM SET lightdb_bgw.static_workers = 'counter:1'")
        .expect("a good value is accepted");
}
