//! Section 4, the wake-up: how soon another session's `wait_for_shutdown`
//! returns once a worker exits, against the floor's own
//! WaitForBackgroundWorkerShutdown and against the server waking a session
//! that waits on an advisory lock.

use std::time::Duration;

use crate::common::{Client, Cluster};
use crate::ops::connect;
use crate::report::{percentile, Figure};

/// Measures the three wake-ups and pushes the two figures.
pub fn run(cluster: &Cluster, client: &mut Client, figures: &mut Vec<Figure>) {
    let mut wake = Vec::new();
    let mut launcher = connect(cluster);
    for i in 0..35 {
        let id: i64 = launcher
            .query_one(
                "SELECT lightdb_bgw.launch('sleep', config => '{\"duration\": \"50ms\"}', database => NULL)",
                &[],
            )
            .unwrap()
            .get(0);
        let row = client
            .query_one(
                "SELECT lightdb_bgw.wait_for_shutdown($1), \
                 extract(epoch FROM clock_timestamp() - \
                   (SELECT stopped_at FROM lightdb_bgw.workers WHERE id = $1))::float8 * 1000",
                &[&id],
            )
            .unwrap();
        let lag: f64 = row.get::<_, f64>(1);
        if i >= 5 {
            wake.push(lag);
        }
    }
    let mut lock_wake = Vec::new();
    for i in 0..35 {
        let mut holder = connect(cluster);
        holder
            .query_one("SELECT pg_advisory_lock(42)", &[])
            .unwrap();
        let port = cluster.port;
        let waiter = std::thread::spawn(move || {
            let mut w = Cluster::detached(port).connect("postgres");
            let row = w
                .query_one("SELECT pg_advisory_lock(42), clock_timestamp()::text", &[])
                .unwrap();
            let ts: String = row.get(1);
            w.query_one("SELECT pg_advisory_unlock(42)", &[]).unwrap();
            ts
        });
        std::thread::sleep(Duration::from_millis(50));
        let released: String = holder
            .query_one(
                "SELECT clock_timestamp()::text FROM (SELECT pg_advisory_unlock(42)) s",
                &[],
            )
            .unwrap()
            .get(0);
        let woke = waiter.join().unwrap();
        let lag: f64 = holder
            .query_one(
                "SELECT extract(epoch FROM $1::text::timestamptz - $2::text::timestamptz)::float8 * 1000",
                &[&woke, &released],
            )
            .unwrap()
            .get::<_, f64>(0);
        if i >= 5 {
            lock_wake.push(lag);
        }
    }
    let mut floor_wake = Vec::new();
    for i in 0..35 {
        let lag: f64 = client
            .query_one("SELECT lightdb_bgw.floor_wake_ms()", &[])
            .unwrap()
            .get(0);
        if i >= 5 {
            floor_wake.push(lag);
        }
    }
    figures.push(Figure {
        name: "wake-up: worker's last act -> another session's wait_for_shutdown returns".into(),
        unit: "ms",
        p50: percentile(&wake, 0.5),
        p95: percentile(&wake, 0.95),
        reference: "floor: launcher's WaitForBackgroundWorkerShutdown".into(),
        ref_p50: percentile(&floor_wake, 0.5),
        higher_is_better: false,
    });
    figures.push(Figure {
        name: "wake-up: worker exit -> wait_for_shutdown returns (other session)".into(),
        unit: "ms",
        p50: percentile(&wake, 0.5),
        p95: percentile(&wake, 0.95),
        reference: "advisory lock release -> waiter wakes".into(),
        ref_p50: percentile(&lock_wake, 0.5),
        higher_is_better: false,
    });
}
