//! Start times on a hot standby, before and after its promotion.

use super::*;

#[test]
fn start_times_on_a_hot_standby_before_and_after_promotion() {
    let (primary, mut client) =
        Cluster::with_extension("primary", &[("max_worker_processes", "16")]);
    client
        .batch_execute("CREATE TABLE replicated AS SELECT 42 AS answer")
        .unwrap();
    drop(client);
    let mut standby = Cluster::standby_of(
        &primary,
        "standby",
        &[("lightdb_bgw.static_workers", "sleep:1, counter:1")],
    );
    standby.start();
    let mut client = standby.connect("postgres");
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery);

    // consistent_state: runs on the standby and reads.
    let reader = launch(
        &mut client,
        "'sql', start_time => 'consistent_state', \
         config => '{\"sql\": \"SELECT answer FROM replicated\", \"interval\": \"100ms\"}'",
    );
    eventually("the reader ran", LONG, || {
        let row = client
            .query_one(
                "SELECT runs, last_run_rows, last_error FROM lightdb_bgw.workers WHERE id = $1",
                &[&reader],
            )
            .ok()?;
        let runs: Option<i64> = row.get(0);
        let rows: Option<i64> = row.get(1);
        let error: Option<String> = row.get(2);
        assert_eq!(error, None);
        (runs.unwrap_or(0) >= 2 && rows == Some(1)).then_some(())
    });
    // postmaster_start: needs no database.
    let early = launch(
        &mut client,
        "'sleep', start_time => 'postmaster_start', database => NULL",
    );
    assert_eq!(
        one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", early),
        "started"
    );
    // recovery_finished: waits for the promotion.
    let late = launch(
        &mut client,
        "'sleep', start_time => 'recovery_finished', wait => false",
    );
    assert_eq!(
        one::<String>(
            &mut client,
            "SELECT lightdb_bgw.wait_for_startup($1, '2s')",
            late
        ),
        "timeout"
    );
    assert_eq!(
        one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", late),
        "not_yet_started"
    );
    // launch(..., wait => true) of such a worker does not block until a
    // promotion that may never come: it returns at once with a NOTICE.
    let (mut noticed, notices) = standby.connect_with_notices("postgres");
    let began = Instant::now();
    let waited = launch(&mut noticed, "'sleep', start_time => 'recovery_finished'");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(
        one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", waited),
        "not_yet_started"
    );
    let said = notices.lock().unwrap().clone();
    assert!(
        said.iter().any(|n| n.contains(&format!(
            "worker {waited} starts once recovery has finished"
        ))),
        "{said:?}"
    );
    // launch_raw (wait => true by default) keeps the same rule (a wait
    // without bound would end at the statement timeout instead).
    noticed
        .batch_execute("SET statement_timeout = '20s'")
        .unwrap();
    let began = Instant::now();
    let raw: i64 = noticed
        .query_one(
            "SELECT lightdb_bgw.launch_raw('lightdb_bgw', 'lightdb_bgw_main', \
             'standby raw', flags => '{shmem_access}')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    let said = notices.lock().unwrap().clone();
    assert!(
        said.iter()
            .any(|n| n.contains(&format!("worker {raw} starts once recovery has finished"))),
        "{said:?}"
    );
    // Static workers on the standby: the sleep (postmaster_start) runs, the
    // counter (recovery_finished) waits.
    assert_eq!(
        one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", 1),
        "started"
    );
    assert_eq!(
        one::<String>(&mut client, "SELECT lightdb_bgw.status($1)", 2),
        "not_yet_started"
    );

    standby.promote();
    let promoted = Instant::now();
    assert_eq!(
        one::<String>(
            &mut client,
            "SELECT lightdb_bgw.wait_for_startup($1, '30s')",
            late
        ),
        "started"
    );
    assert_eq!(
        one::<String>(
            &mut client,
            "SELECT lightdb_bgw.wait_for_startup($1, '30s')",
            2
        ),
        "started"
    );
    println!(
        "recovery_finished workers started {:?} after promotion",
        promoted.elapsed()
    );
    eventually(
        "static counter made its table after promotion",
        LONG,
        || {
            client
                .query_opt(
                    "SELECT 1 FROM lightdb_bgw_counter_2.counted WHERE type = 'total'",
                    &[],
                )
                .ok()
                .flatten()
        },
    );
}
