//! Section 3, the listing cost: the time of `SELECT * FROM
//! lightdb_bgw.workers` with 10, 100, 1,000 and 10,000 registry entries,
//! against the per-row cost at 10 entries, and its server-side time
//! against the budget of 1 ms per 1,000 entries.

use std::time::Instant;

use crate::common::Client;
use crate::report::{ms, percentile, Figure};

/// Fills the registry to each size in turn and times the listing.
pub fn run(client: &mut Client, figures: &mut Vec<Figure>) {
    let mut per_row_10 = 0.0;
    let mut filled: i64 = client
        .query_one("SELECT count(*) FROM lightdb_bgw.workers", &[])
        .unwrap()
        .get(0);
    for target in [10i64, 100, 1000, 10000] {
        while filled < target {
            let id: i64 = client
                .query_one(
                    "SELECT lightdb_bgw.launch('sleep', config => '{\"duration\": \"1ms\"}', database => NULL)",
                    &[],
                )
                .unwrap()
                .get(0);
            client
                .query_one("SELECT lightdb_bgw.wait_for_shutdown($1)", &[&id])
                .unwrap();
            // Counted here: listing the registry after each launch would
            // make the filling quadratic.
            filled += 1;
        }
        let mut samples = Vec::new();
        for i in 0..35 {
            let began = Instant::now();
            let rows = client
                .query("SELECT * FROM lightdb_bgw.workers", &[])
                .unwrap();
            let took = ms(began.elapsed());
            assert_eq!(rows.len() as i64, filled);
            if i >= 5 {
                samples.push(took);
            }
        }
        let p50 = percentile(&samples, 0.5);
        let per_row = p50 / filled as f64;
        if target == 10 {
            per_row_10 = per_row;
        }
        figures.push(Figure {
            name: format!("workers listing, {filled} entries (ms per call)"),
            unit: "ms",
            p50,
            p95: percentile(&samples, 0.95),
            reference: "per-row cost at 10 entries x rows".into(),
            ref_p50: per_row_10 * filled as f64,
            higher_is_better: false,
        });
        if target >= 1000 {
            // Server-side time (EXPLAIN ANALYZE), against the budget of
            // 1 ms per 1,000 entries.
            client
                .batch_execute(
                    "CREATE OR REPLACE FUNCTION pg_temp.exec_ms(q text) RETURNS float8 \
                     LANGUAGE plpgsql AS $$ DECLARE plan json; BEGIN \
                     EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || q INTO plan; \
                     RETURN (plan->0->>'Execution Time')::float8; END $$",
                )
                .unwrap();
            let mut server = Vec::new();
            for i in 0..25 {
                let took: f64 = client
                    .query_one(
                        "SELECT pg_temp.exec_ms('SELECT * FROM lightdb_bgw.workers')",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                if i >= 5 {
                    server.push(took);
                }
            }
            figures.push(Figure {
                name: format!("workers listing, {filled} entries, server-side (ms)"),
                unit: "ms",
                p50: percentile(&server, 0.5),
                p95: percentile(&server, 0.95),
                reference: "budget: 1 ms per 1,000 entries".into(),
                ref_p50: filled as f64 / 1000.0,
                higher_is_better: false,
            });
        }
    }
}
