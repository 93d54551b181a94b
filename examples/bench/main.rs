//! Benchmarks: every figure beside a reference measured in the same run on
//! the same throwaway server, as a ratio. Run with `bash scripts/bench.sh`.
//!
//! Prints a table and writes `results/bench-<unix time>.{json,csv}` and
//! `results/lifecycle-latency.svg` (latency against concurrency).
//! `BENCH_ONLY=results,queue` (names from `SECTIONS`, comma-separated)
//! runs only those sections; all of them by default.
//!
//! This file owns the run: the bench cluster, the choice of sections, and
//! their order, each in its own module, all pushing to one list of figures.

#[path = "../../tests/common/mod.rs"]
mod common;

mod lifecycle;
mod listing;
mod memory;
mod ops;
mod queue;
mod report;
mod results;
mod wakeup;

use common::Cluster;
use report::{Figure, PlotPoint};

/// The sections, in the order they run, by the names `BENCH_ONLY` takes.
const SECTIONS: [&str; 8] = [
    "listing",
    "latency",
    "throughput",
    "wakeup",
    "queue",
    "memory",
    "sql",
    "results",
];

/// Whether a section is to run: every one, unless `BENCH_ONLY` names some.
/// An unknown name stops the run before the cluster starts.
fn chosen() -> impl Fn(&str) -> bool {
    let only: Option<Vec<String>> = std::env::var("BENCH_ONLY")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|names| !names.is_empty());
    for name in only.iter().flatten() {
        assert!(
            SECTIONS.contains(&name.as_str()),
            "BENCH_ONLY names {name:?}; the sections are {}",
            SECTIONS.join(", ")
        );
    }
    move |section| match &only {
        None => true,
        Some(names) => names.iter().any(|n| n == section),
    }
}

fn main() {
    let run = chosen();
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
    if run("listing") {
        listing::run(&mut client, &mut figures);
    }
    if run("latency") {
        lifecycle::latency(&cluster, &mut figures);
    }
    if run("throughput") {
        lifecycle::throughput(&cluster, &mut figures, &mut plot);
    }
    if run("wakeup") {
        wakeup::run(&cluster, &mut client, &mut figures);
    }
    if run("queue") {
        queue::run(&cluster, &mut client, &mut figures);
    }
    // The idle session memory measured stays open through the rest.
    let idle_client = run("memory").then(|| memory::run(&cluster, &mut client, &mut figures));
    if run("sql") {
        lifecycle::one_shot_sql(&cluster, &mut figures);
    }
    drop(idle_client);
    if run("results") {
        results::run(&cluster, &mut client, &mut figures);
    }

    report::report(&figures, &plot, &out_dir);
}
