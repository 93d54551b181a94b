//! A worker of a superuser never runs code another role planted: a
//! `counter` uses only a schema and a table its own role owns (its default
//! schema's name is easy to guess, and `CREATE ... IF NOT EXISTS` would
//! find another role's table, whose triggers would run with the counter's
//! rights); the typed `result` calls the server's own
//! `jsonb_populate_record`, whatever the caller's `search_path` finds first.

use super::*;

#[test]
fn a_counter_refuses_a_table_another_role_made_first() {
    let (cluster, mut admin) = Cluster::with_extension("planted", &[]);
    admin.batch_execute("CREATE ROLE mallory LOGIN").unwrap();
    admin
        .batch_execute("CREATE DATABASE mallorys OWNER mallory")
        .unwrap();
    // The next worker id, as anyone can read it from the listing.
    let before = launch(&mut admin, "'sleep', database => NULL");
    stop_worker(&mut admin, before);
    let next = before + 1;
    let mut mallory = cluster.connect_as("mallorys", "mallory");
    mallory
        .batch_execute(&format!(
            "CREATE FUNCTION public.escalate() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN \
               EXECUTE 'ALTER ROLE mallory SUPERUSER'; END IF; RETURN NEW; END $$; \
             CREATE SCHEMA lightdb_bgw_counter_{next}; \
             CREATE TABLE lightdb_bgw_counter_{next}.counted (type text NOT NULL, value bigint NOT NULL); \
             CREATE TRIGGER escalate BEFORE INSERT OR UPDATE OR DELETE \
               ON lightdb_bgw_counter_{next}.counted FOR EACH ROW EXECUTE FUNCTION public.escalate(); \
             INSERT INTO lightdb_bgw_counter_{next}.counted VALUES ('delta', 1)"
        ))
        .unwrap();
    let counter = launch(
        &mut admin,
        "'counter', database => 'mallorys', config => '{\"naptime\": \"100ms\"}'",
    );
    assert_eq!(counter, next);
    let error = eventually("the counter refuses the table", LONG, || {
        last_error(&mut admin, counter).filter(|e| e.starts_with("42501:"))
    });
    assert!(error.contains("owned by role mallory"), "{error}");
    std::thread::sleep(Duration::from_millis(500));
    let superuser: bool = admin
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        !superuser,
        "mallory's trigger ran as the counter's superuser"
    );
    let rows: i64 = mallory
        .query_one(
            &format!("SELECT count(*) FROM lightdb_bgw_counter_{next}.counted"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the counter wrote nothing into mallory's table");
    assert_eq!(status(&mut admin, counter), "started", "it keeps trying");
    // Every naptime (100 ms) it fails the same way; the log says so once.
    assert_eq!(
        cluster.log().matches("is owned by role mallory").count(),
        1,
        "one log line for the same error"
    );
}

#[test]
fn the_typed_result_calls_the_servers_own_function() {
    let (cluster, mut admin) = Cluster::with_extension("shadowed", &[]);
    admin
        .batch_execute("CREATE ROLE eve LOGIN; GRANT CREATE ON SCHEMA public TO eve")
        .unwrap();
    let mut eve = cluster.connect_as("postgres", "eve");
    eve.batch_execute(
        "CREATE TYPE public.report AS (a int, b text); \
         CREATE FUNCTION public.jsonb_populate_record(r public.report, j jsonb) \
         RETURNS public.report LANGUAGE plpgsql AS $$ \
         BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN \
           EXECUTE 'ALTER ROLE eve SUPERUSER'; END IF; \
           RETURN pg_catalog.jsonb_populate_record(r, j); END $$",
    )
    .unwrap();
    // The superuser's search_path is the default, "$user", public.
    let rows = admin
        .query(
            "SELECT a, b FROM lightdb_bgw.result(lightdb_bgw.run('SELECT 1 AS a, ''x'' AS b'), \
             NULL::public.report)",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].get::<_, i32>(0), rows[0].get::<_, String>(1)),
        (1, "x".to_string())
    );
    let superuser: bool = admin
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = 'eve'", &[])
        .unwrap()
        .get(0);
    assert!(!superuser, "eve's function ran as the superuser");
}
