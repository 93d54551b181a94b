//! Section 7, background SQL with results: the round trip of `run` +
//! `result` for `SELECT 1`, 100,000 rows through `run` + `result` to the
//! client, and `run` + `result` per second from two sessions, each against
//! pg_background's launch + result measured in the same run (when the
//! server has no pg_background: the round trip against our own launch ->
//! exit lifecycle, the others with no reference); the round trip and the
//! throughput again with spare processes taking the runs; and the shared
//! memory a kept result takes per row, against the same row as jsonb text.
//!
//! Every run it starts is forgotten before it returns, and it waits until
//! no pg_background worker is left.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{eventually, Client, Cluster};
use crate::lifecycle::{set_spares, SPARES};
use crate::ops::throughput as window;
use crate::ops::{forget_runs, pg_background_op, run_result_op, PGBG_SELECT_1};
use crate::report::{ms, percentile, Figure};

/// Round trips timed, after `WARM_UP` left out.
const ROUND_TRIPS: usize = 60;
const WARM_UP: usize = 5;
/// The bulk query, its row count, and how many times it is timed (after
/// one left out).
const BULK_SQL: &str = "select g, md5(g::text) from generate_series(1, 100000) g";
const BULK_ROWS: usize = 100_000;
const BULK_SAMPLES: usize = 7;
/// The query whose kept result is measured.
const MEMORY_SQL: &str = "select g, md5(g::text) from generate_series(1, 10000) g";
const MEMORY_ROWS: i64 = 10_000;
/// Client sessions of the throughput figure, its rounds (ours, then
/// pg_background's, in turns) and each one's measuring window.
const SESSIONS: usize = 2;
const ROUNDS: usize = 5;
const WINDOW: Duration = Duration::from_millis(1500);
const WARM_UP_WINDOW: Duration = Duration::from_millis(300);

const OUR_RUN: &str = "SELECT lightdb_bgw.run('select 1')";
const OUR_RESULT: &str = "SELECT * FROM lightdb_bgw.result($1)";

/// Runs the section's four parts and cleans up after them.
pub fn run(cluster: &Cluster, client: &mut Client, figures: &mut Vec<Figure>) {
    let pgbg = pg_background(client);
    round_trip(client, pgbg.as_deref(), figures, "");
    bulk(client, pgbg.as_deref(), figures);
    throughput(cluster, client, pgbg.as_deref(), figures, "");
    // The same two figures with spare processes taking the runs.
    set_spares(cluster, SPARES);
    let with_spares = format!(", {SPARES} spares");
    round_trip(client, pgbg.as_deref(), figures, &with_spares);
    throughput(cluster, client, pgbg.as_deref(), figures, &with_spares);
    set_spares(cluster, 0);
    memory_per_row(client, figures);
    if pgbg.is_some() {
        let gone = || (pg_background_workers(client) == 0).then_some(());
        eventually(
            "no pg_background worker left",
            Duration::from_secs(30),
            gone,
        );
        client
            .batch_execute("DROP EXTENSION pg_background")
            .expect("DROP EXTENSION pg_background");
    }
}

/// pg_background workers running now.
fn pg_background_workers(client: &mut Client) -> i64 {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_background'";
    client.query_one(sql, &[]).unwrap().get(0)
}

/// Creates pg_background when the server has it; its version, else None.
fn pg_background(client: &mut Client) -> Option<String> {
    let available: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_background'",
            &[],
        )
        .unwrap()
        .get(0);
    if available == 0 {
        eprintln!("results: pg_background is not installed on this server; see scripts/bench.sh");
        return None;
    }
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_background")
        .expect("CREATE EXTENSION pg_background");
    let version: String = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_background'",
            &[],
        )
        .unwrap()
        .get(0);
    Some(version)
}

/// (a) `run` then `result` of `SELECT 1`, two statements from one session,
/// against pg_background's launch + result, sample by sample.
fn round_trip(client: &mut Client, pgbg: Option<&str>, figures: &mut Vec<Figure>, label: &str) {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..WARM_UP + ROUND_TRIPS {
        let began = Instant::now();
        let id: i64 = client.query_one(OUR_RUN, &[]).expect("run").get(0);
        let rows = client.query(OUR_RESULT, &[&id]).expect("result");
        let took = ms(began.elapsed());
        assert_eq!(rows.len(), 1, "result of run {id}");
        forget_runs(client, &[id]);

        let began = Instant::now();
        let lifecycle = if pgbg.is_some() {
            let rows = client.query(PGBG_SELECT_1, &[]).expect("pg_background");
            assert_eq!(rows.len(), 1, "pg_background result");
            None
        } else {
            let id: i64 = client
                .query_one(
                    "SELECT lightdb_bgw.launch('sleep', config => '{\"duration\": \"1ms\"}', \
                     database => NULL)",
                    &[],
                )
                .expect("launch")
                .get(0);
            client
                .query_one("SELECT lightdb_bgw.wait_for_shutdown($1)", &[&id])
                .expect("wait_for_shutdown");
            Some(id)
        };
        let ref_took = ms(began.elapsed());
        forget_runs(client, lifecycle.as_slice());
        if i >= WARM_UP {
            ours.push(took);
            theirs.push(ref_took);
        }
    }
    figures.push(Figure {
        name: format!("run + result of SELECT 1, two statements{label} (ms)"),
        unit: "ms",
        p50: percentile(&ours, 0.5),
        p95: percentile(&ours, 0.95),
        reference: match pgbg {
            Some(v) => format!("pg_background {v}: result(launch('select 1')) (target <= 1.0x)"),
            None => {
                "our launch -> exit lifecycle (pg_background not installed; target <= 1.2x)".into()
            }
        },
        ref_p50: percentile(&theirs, 0.5),
        higher_is_better: false,
    });
}

/// (b) 100,000 rows through `run` + `result`, every row fetched by the
/// client, against pg_background's launch + result of the same query and
/// against the query run directly in the session.
fn bulk(client: &mut Client, pgbg: Option<&str>, figures: &mut Vec<Figure>) {
    let pgbg_sql = format!(
        "SELECT * FROM pg_background_result(pg_background_launch('{BULK_SQL}')) \
         AS (g int, md5 text)"
    );
    let (mut ours, mut theirs, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=BULK_SAMPLES {
        let began = Instant::now();
        let id: i64 = client
            .query_one("SELECT lightdb_bgw.run($1)", &[&BULK_SQL])
            .expect("run")
            .get(0);
        let rows = client.query(OUR_RESULT, &[&id]).expect("result");
        let took = ms(began.elapsed());
        assert_eq!(rows.len(), BULK_ROWS, "result of run {id}");
        drop(rows);
        forget_runs(client, &[id]);

        let ref_took = pgbg.map(|_| {
            let began = Instant::now();
            let rows = client.query(&pgbg_sql, &[]).expect("pg_background");
            assert_eq!(rows.len(), BULK_ROWS, "pg_background result");
            ms(began.elapsed())
        });

        let began = Instant::now();
        let rows = client.query(BULK_SQL, &[]).expect("the query itself");
        let direct_took = ms(began.elapsed());
        assert_eq!(rows.len(), BULK_ROWS);
        if i > 0 {
            ours.push(took);
            theirs.extend(ref_took);
            direct.push(direct_took);
        }
    }
    let figure = |reference: String, ref_p50: f64| Figure {
        name: "100,000 rows through run + result, all fetched (ms)".into(),
        unit: "ms",
        p50: percentile(&ours, 0.5),
        p95: percentile(&ours, 0.95),
        reference,
        ref_p50,
        higher_is_better: false,
    };
    figures.push(match pgbg {
        Some(v) => figure(
            format!("pg_background {v}: launch + result of the same query (target <= 1.0x)"),
            percentile(&theirs, 0.5),
        ),
        None => figure("- (pg_background not installed)".into(), 0.0),
    });
    figures.push(figure(
        "the same SELECT run directly in the session (target <= 2.0x)".into(),
        percentile(&direct, 0.5),
    ));
}

/// (c) `run` + `result` of `SELECT 1` per second from two sessions, each
/// with its own connection, against pg_background's launch + result the
/// same way, in rounds that take turns (so that a noisy moment of the
/// machine falls on both alike); the runs are forgotten afterwards.
fn throughput(
    cluster: &Cluster,
    client: &mut Client,
    pgbg: Option<&str>,
    figures: &mut Vec<Figure>,
    label: &str,
) {
    let started = Arc::new(Mutex::new(Vec::new()));
    let ours = run_result_op(started.clone());
    window(cluster, SESSIONS, WARM_UP_WINDOW, ours.clone());
    if pgbg.is_some() {
        window(cluster, SESSIONS, WARM_UP_WINDOW, pg_background_op());
    }
    let (mut rates, mut their_rates) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        // The runs of each window are forgotten before the registry
        // would reuse their slots (round 0 is the warm-up).
        let ids = std::mem::take(&mut *started.lock().unwrap());
        forget_runs(client, &ids);
        if round == ROUNDS {
            break;
        }
        rates.push(window(cluster, SESSIONS, WINDOW, ours.clone()).0);
        if pgbg.is_some() {
            their_rates.push(window(cluster, SESSIONS, WINDOW, pg_background_op()).0);
        }
    }

    let theirs = pgbg.map(|_| percentile(&their_rates, 0.5));
    figures.push(Figure {
        name: format!("run + result of SELECT 1 per second, {SESSIONS} sessions{label}"),
        unit: "1/s",
        p50: percentile(&rates, 0.5),
        p95: percentile(&rates, 0.05),
        reference: match pgbg {
            Some(v) => format!("pg_background {v}: launch + result /s (target >= 1.0x)"),
            None => "- (pg_background not installed)".into(),
        },
        ref_p50: theirs.unwrap_or(0.0),
        higher_is_better: true,
    });
}

/// (d) The shared memory a kept result takes per row: the run's
/// `result_bytes / result_rows` and the growth of `result_memory()`, each
/// against the same row as jsonb text.
fn memory_per_row(client: &mut Client, figures: &mut Vec<Figure>) {
    let memory = |client: &mut Client| -> i64 {
        client
            .query_one("SELECT lightdb_bgw.result_memory()", &[])
            .unwrap()
            .get(0)
    };
    let before = memory(client);
    let id: i64 = client
        .query_one("SELECT lightdb_bgw.run($1)", &[&MEMORY_SQL])
        .expect("run")
        .get(0);
    let status: String = client
        .query_one("SELECT lightdb_bgw.wait_for_shutdown($1, '60s')", &[&id])
        .expect("wait_for_shutdown")
        .get(0);
    assert_eq!(status, "stopped", "run {id}");
    let after = memory(client);
    let row = client
        .query_one(
            "SELECT result_rows, result_bytes FROM lightdb_bgw.workers WHERE id = $1",
            &[&id],
        )
        .expect("the run's entry");
    let (rows, bytes): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
    let (rows, bytes) = (rows.expect("result_rows"), bytes.expect("result_bytes"));
    assert_eq!(rows, MEMORY_ROWS, "result_rows of run {id}");
    let jsonb_text: f64 = client
        .query_one(
            &format!("SELECT avg(octet_length(to_jsonb(t)::text))::float8 FROM ({MEMORY_SQL}) t"),
            &[],
        )
        .unwrap()
        .get(0);
    forget_runs(client, &[id]);
    assert!(
        memory(client) < after,
        "result_memory() did not fall when run {id} was forgotten"
    );

    let reference = "the same row as jsonb text (octet_length of the row's jsonb::text)";
    for (name, per_row) in [
        (
            "kept result per row, result_bytes / result_rows (bytes)",
            bytes as f64 / rows as f64,
        ),
        (
            "kept result per row, growth of result_memory() (bytes)",
            (after - before) as f64 / rows as f64,
        ),
    ] {
        figures.push(Figure {
            name: name.into(),
            unit: "B",
            p50: per_row,
            p95: per_row,
            reference: reference.into(),
            ref_p50: jsonb_text,
            higher_is_better: false,
        });
    }
}
