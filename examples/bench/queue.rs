//! The launch queue's dispatch latency. With every postmaster slot taken, a
//! launch with `queue => true` leaves its worker 'queued', and the
//! dispatcher registers it as soon as a slot frees. Here a single freed slot
//! carries a line of short workers one after another; each sample is the
//! time from one worker's exit to the next one running, against a budget
//! and against the floor's own launch -> started.

use std::time::Duration;

use crate::common::{sqlstate, status, stop_worker, Client, Cluster};
use crate::ops::{floor_launch_latency, Until};
use crate::report::{percentile, Figure};

/// How many short workers wait in the queue.
const QUEUED: usize = 60;
/// Handoffs left out at the start of the line, as warm-up.
const WARM_UP: usize = 5;
/// A bound on the filling: max_worker_processes is 40 on the bench cluster,
/// so this many launches without running out means something is wrong.
const MAX_BLOCKERS: usize = 256;

/// Takes every slot, queues the line, frees one slot, times the handoffs;
/// gives every slot back before it returns.
pub fn run(cluster: &Cluster, client: &mut Client, figures: &mut Vec<Figure>) {
    let blockers = take_every_slot(client);
    let queued: Vec<i64> = (0..QUEUED).map(|_| enqueue(client)).collect();

    // One slot frees: the queued workers go through it in turn.
    let (first, rest) = blockers
        .split_first()
        .expect("no postmaster slot was free to take");
    assert_eq!(stop_worker(client, *first), "stopped", "blocker {first}");
    for &id in &queued {
        let done: String = client
            .query_one("SELECT lightdb_bgw.wait_for_shutdown($1, '60s')", &[&id])
            .unwrap_or_else(|e| panic!("wait_for_shutdown({id}): {e:?}"))
            .get(0);
        assert_eq!(done, "stopped", "queued worker {id}");
    }
    let handoffs: Vec<f64> = queued
        .windows(2)
        .skip(WARM_UP)
        .map(|pair| handoff_ms(client, pair[0], pair[1], "stopped_at"))
        .collect();
    let from_free: Vec<f64> = queued
        .windows(2)
        .skip(WARM_UP)
        .map(|pair| handoff_ms(client, pair[0], pair[1], "freed_at"))
        .collect();

    // Every slot back, for the sections after this one (and the floor).
    for &id in rest {
        assert_eq!(stop_worker(client, id), "stopped", "blocker {id}");
    }
    let floor = floor_launch_latency(cluster, false, Until::Started, 40);

    let p50 = percentile(&handoffs, 0.5);
    let p95 = percentile(&handoffs, 0.95);
    figures.push(Figure {
        name: "queue: postmaster slot freed -> next queued worker running (ms)".into(),
        unit: "ms",
        p50: percentile(&from_free, 0.5),
        p95: percentile(&from_free, 0.95),
        reference: "budget: 2 ms".into(),
        ref_p50: 2.0,
        higher_is_better: false,
    });
    figures.push(Figure {
        name: "queue: previous worker's last act -> next queued worker running (ms)".into(),
        unit: "ms",
        p50,
        p95,
        reference: "budget: 2 ms (this also counts the exit and reaping of a process)".into(),
        ref_p50: 2.0,
        higher_is_better: false,
    });
    figures.push(Figure {
        name: "queue: last act -> next queued worker running, against a direct launch (ms)".into(),
        unit: "ms",
        p50,
        p95,
        reference: "floor: RegisterDynamicBackgroundWorker + WaitForBackgroundWorkerStartup".into(),
        ref_p50: percentile(&floor, 0.5),
        higher_is_better: false,
    });
}

/// Launches sleep workers that run until terminated, until a launch fails
/// for want of a slot (SQLSTATE 53000); returns their ids. Fills twice, a
/// moment apart, in case a worker of an earlier section had ended but its
/// slot was not yet free: a slot freed later would run queued workers two
/// at a time.
fn take_every_slot(client: &mut Client) -> Vec<i64> {
    let mut blockers = Vec::new();
    for round in 0..2 {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        loop {
            assert!(
                blockers.len() < MAX_BLOCKERS,
                "{MAX_BLOCKERS} launches and the postmaster slots have not run out"
            );
            match client.query_one("SELECT lightdb_bgw.launch('sleep', database => NULL)", &[]) {
                Ok(row) => blockers.push(row.get(0)),
                Err(e) if sqlstate(&e) == "53000" => break,
                Err(e) => panic!("filling the postmaster slots: {e:?}"),
            }
        }
    }
    blockers
}

/// Queues a sleep worker of 5 ms; every slot is taken, so it must wait.
fn enqueue(client: &mut Client) -> i64 {
    let id: i64 = client
        .query_one(
            "SELECT lightdb_bgw.launch('sleep', config => '{\"duration\": \"5ms\"}', \
             database => NULL, wait => false, queue => true)",
            &[],
        )
        .unwrap_or_else(|e| panic!("queueing a launch: {e:?}"))
        .get(0);
    assert_eq!(status(client, id), "queued", "worker {id}");
    id
}

/// From the end of worker `before` to the start of worker `after`, in ms:
/// its end is `stopped_at` (its last act, as it recorded it) or
/// `freed_at` (when the dispatcher learned from the postmaster that its
/// slot was free: `lightdb_bgw.bench_freed_at`, of the bench build).
fn handoff_ms(client: &mut Client, before: i64, after: i64, end: &str) -> f64 {
    let end = match end {
        "freed_at" => "lightdb_bgw.bench_freed_at($1)",
        _ => "(SELECT stopped_at FROM lightdb_bgw.workers WHERE id = $1)",
    };
    let row = client
        .query_one(
            &format!(
                "SELECT extract(epoch FROM \
                   (SELECT started_at FROM lightdb_bgw.workers WHERE id = $2) - {end})::float8 * 1000"
            ),
            &[&before, &after],
        )
        .unwrap_or_else(|e| panic!("handoff {before} -> {after}: {e:?}"));
    row.get::<_, Option<f64>>(0)
        .unwrap_or_else(|| panic!("worker {before} or {after} lacks a timestamp"))
}
