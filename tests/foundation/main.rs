//! Cluster tests of the foundation: loading rules, static workers, reload
//! and shutdown. Each test starts its own server (see `common`).

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

mod loading;
mod statics;

const START: Duration = Duration::from_secs(60);

/// Waits until `n` lightdb_bgw workers named like `pattern` are running.
fn wait_for_workers(client: &mut Client, pattern: &str, n: i64) {
    eventually(&format!("{n} workers like {pattern}"), START, || {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE backend_type = 'lightdb_bgw' AND application_name LIKE $1",
                &[&pattern],
            )
            .ok()?;
        (row.get::<_, i64>(0) == n).then_some(())
    });
}

/// Waits until the counter table in `postgres` has its total row.
fn wait_for_counter_table(client: &mut Client, table: &str) -> i64 {
    let sql = format!("SELECT value FROM {table} WHERE type = 'total'");
    eventually(&format!("{table} ready"), START, || {
        client
            .query_opt(&sql, &[])
            .ok()
            .flatten()
            .map(|r| r.get::<_, i64>(0))
    })
}

fn total(client: &mut Client, table: &str) -> i64 {
    client
        .query_one(
            &format!("SELECT value FROM {table} WHERE type = 'total'"),
            &[],
        )
        .expect("total")
        .get(0)
}

/// The pid of the static counter `n`, once it runs.
fn counter_pid(client: &mut Client, n: u32) -> i32 {
    let name = format!("lightdb_bgw counter {n}");
    eventually(&format!("{name} running"), START, || {
        client
            .query_opt(
                "SELECT pid FROM pg_stat_activity \
                 WHERE backend_type = 'lightdb_bgw' AND application_name = $1",
                &[&name],
            )
            .ok()
            .flatten()
            .map(|r| r.get::<_, i32>(0))
    })
}
