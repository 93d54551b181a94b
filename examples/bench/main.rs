//! Benchmarks: every figure beside a reference measured in the same run on
//! the same throwaway server, as a ratio. Run with `bash scripts/bench.sh`.
//!
//! Prints a table and writes `results/bench-<unix time>.{json,csv}` and
//! `results/lifecycle-latency.svg` (latency against concurrency).
//!
//! This file owns the run: the bench cluster, and the order of the
//! sections, each in its own module, all pushing to one list of figures.

#[path = "../../tests/common/mod.rs"]
mod common;

mod lifecycle;
mod listing;
mod memory;
mod ops;
mod queue;
mod report;
mod wakeup;

use common::Cluster;
use report::{Figure, PlotPoint};

fn main() {
    let out_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&out_dir).expect("results directory");
    let (cluster, mut client) = Cluster::with_extension(
        "bench",
        &[
            ("max_worker_processes", "40"),
            ("max_connections", "100"),
            ("lightdb_bgw.max_workers", "10000"),
        ],
    );
    let mut figures: Vec<Figure> = Vec::new();
    let mut plot: Vec<PlotPoint> = Vec::new();

    // The sections, in the order they have always run: an earlier one
    // leaves the server as the later ones expect it (the listing leaves a
    // full registry behind; the queue hands back every slot it took).
    listing::run(&mut client, &mut figures);
    lifecycle::latency(&cluster, &mut figures);
    lifecycle::throughput(&cluster, &mut figures, &mut plot);
    wakeup::run(&cluster, &mut client, &mut figures);
    queue::run(&cluster, &mut client, &mut figures);
    // The idle session memory measured stays open through the rest.
    let idle_client = memory::run(&cluster, &mut client, &mut figures);
    lifecycle::one_shot_sql(&cluster, &mut figures);
    drop(idle_client);

    report::report(&figures, &plot, &out_dir);
}
