//! Cluster tests of capacity with few postmaster slots: the launch queue
//! (first in, first out, from several sessions, none lost; terminate of a
//! queued worker; a cancelled wait; a full queue; a crash-reinitialisation
//! with workers queued), the per-role quota and the superuser reserve (also against a
//! supervisor's children), and the slot of a worker terminated before it
//! started.

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use postgres::Client;

mod queue;
mod quotas;

const LONG: Duration = Duration::from_secs(60);

/// A sleep worker without a database that runs until terminated.
const FOREVER: &str = "'sleep', database => NULL, wait => false";

/// Launches workers that run until terminated until the launch fails;
/// returns their ids and the error.
fn fill(client: &mut Client) -> (Vec<i64>, postgres::Error) {
    let mut ids = Vec::new();
    loop {
        match client.query_one(&format!("SELECT lightdb_bgw.launch({FOREVER})"), &[]) {
            Ok(row) => ids.push(row.get(0)),
            Err(err) => return (ids, err),
        }
        assert!(ids.len() < 100, "launches never ran out of room");
    }
}

fn stop_all(client: &mut Client, ids: &[i64]) {
    for &id in ids {
        assert_eq!(stop_worker(client, id), "stopped");
    }
}

fn queue_position(client: &mut Client, id: i64) -> Option<i32> {
    client
        .query_one(
            "SELECT queue_position FROM lightdb_bgw.workers WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0)
}
