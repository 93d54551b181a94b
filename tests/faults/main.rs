//! Cluster-level guarantees under faults and load: crash-reinitialisation,
//! postmaster death, shutdown, hot standby start times, concurrency, and
//! stale handles. Each test prints the figures it measured.

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

mod concurrency;
mod crash;
mod standby;

const LONG: Duration = Duration::from_secs(60);

fn one<T: for<'a> postgres::types::FromSql<'a>>(client: &mut Client, sql: &str, id: i64) -> T {
    client
        .query_one(sql, &[&id])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Pids of every lightdb_bgw worker process of the cluster, from /proc.
fn worker_pids(postmaster: i32) -> Vec<i32> {
    child_pids(postmaster, |title| {
        title.contains("lightdb_bgw") && !title.contains("dispatcher")
    })
}
