//! Cluster tests of dynamic workers: cross-session waits and terminate,
//! restart rules, the non-superuser rules, notifications received by a real
//! LISTENing client, slot exhaustion and the supervisor.

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

mod exhaustion;
mod roles;
mod sessions;

const LONG: Duration = Duration::from_secs(60);

fn preloaded(name: &str, extra: &[(&str, &str)]) -> Cluster {
    let mut settings = vec![("max_worker_processes", "16")];
    settings.extend_from_slice(extra);
    Cluster::with_extension(name, &settings).0
}
