//! The SQL surface. Each function is thin: check preload, call the core,
//! report an error once.

use pgrx::prelude::*;

use crate::error::OrReport;
use crate::preload;
use crate::registry::{self, WorkerRecord};
use crate::spec::KINDS;

fn timestamp(value: Option<i64>) -> Option<TimestampWithTimeZone> {
    value.and_then(|v| TimestampWithTimeZone::try_from(v).ok())
}

fn seconds_interval(secs: Option<u32>) -> Option<Interval> {
    secs.and_then(|s| Interval::new(0, 0, s as i64 * 1_000_000).ok())
}

/// The built-in kinds, what each does and its configuration keys.
#[pg_extern(volatile, parallel_safe)]
fn kinds() -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(description, String),
        name!(config_keys, Vec<String>),
        name!(static_ok, bool),
        name!(needs_database, bool),
    ),
> {
    preload::require().or_report();
    TableIterator::new(KINDS.iter().map(|k| {
        (
            k.name.to_string(),
            k.description
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            k.config_keys.iter().map(|s| s.to_string()).collect(),
            k.static_ok,
            k.needs_database,
        )
    }))
}

#[allow(clippy::type_complexity)]
fn row(
    r: WorkerRecord,
) -> (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i32>,
    String,
    String,
    Option<Interval>,
    Option<String>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    i32,
    Option<i32>,
    Option<String>,
    bool,
    Option<String>,
) {
    (
        r.id,
        r.def.name.clone(),
        crate::spec::WORKER_TYPE.to_string(),
        r.def.kind.name().to_string(),
        r.def.database.clone(),
        r.def.role.clone(),
        (r.pid != 0).then_some(r.pid),
        r.state.name().to_string(),
        r.def.start_time.name().to_string(),
        seconds_interval(r.def.restart_after),
        r.launched_by.clone(),
        timestamp(Some(r.launched_at)),
        timestamp(r.started_at),
        timestamp(r.stopped_at),
        r.restarts,
        r.last_exit,
        r.last_error.clone(),
        r.is_static,
        Some(r.def.config.clone()),
    )
}

/// Backs the `workers` view: one row per worker in the registry. (pgrx
/// needs the row type spelled out here, so no type alias.)
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_restricted)]
fn worker_list() -> TableIterator<
    'static,
    (
        name!(id, i64),
        name!(name, String),
        name!(type, String),
        name!(kind, String),
        name!(database, Option<String>),
        name!(role, Option<String>),
        name!(pid, Option<i32>),
        name!(status, String),
        name!(start_time, String),
        name!(restart_after, Option<Interval>),
        name!(launched_by, Option<String>),
        name!(launched_at, Option<TimestampWithTimeZone>),
        name!(started_at, Option<TimestampWithTimeZone>),
        name!(stopped_at, Option<TimestampWithTimeZone>),
        name!(restarts, i32),
        name!(last_exit, Option<i32>),
        name!(last_error, Option<String>),
        name!(is_static, bool),
        name!(config, Option<String>),
    ),
> {
    preload::require().or_report();
    TableIterator::new(registry::list().into_iter().map(row))
}
