//! The `workers` view's function: one row per worker in the registry,
//! what other roles may not see set to NULL.

use pgrx::prelude::*;

use super::{seconds_interval, timestamp};
use crate::authz;
use crate::config::KindConfig;
use crate::control::{self, Status};
use crate::error::OrReport;
use crate::jsonb_text::JsonbBytes;
use crate::preload;
use crate::registry::{self, ResultState, WorkerRecord};

#[allow(clippy::type_complexity)]
fn row(
    r: WorkerRecord,
    postmaster_alive: bool,
    viewer: &mut authz::Viewer,
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
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<JsonbBytes>,
    Option<i32>,
    Option<i64>,
    Option<i64>,
) {
    let status: Status = control::status_given(&r, postmaster_alive).0;
    // Other roles' workers show who, where and when, never what: anything
    // that can carry data (config, errors, run figures) is NULL for them.
    let may_see = viewer.may_see(r.role_oid);
    let config = (may_see && !r.config_missing).then(|| {
        if r.config_jsonb.is_empty() {
            // A static worker: its config is always `{}`.
            JsonbBytes::from_json("{}")
        } else {
            JsonbBytes(r.config_jsonb)
        }
    });
    let worker_type = match r.def.config {
        KindConfig::Raw { worker_type, .. } => worker_type,
        _ => crate::spec::WORKER_TYPE.to_string(),
    };
    let is_sql = r.def.kind == crate::spec::Kind::Sql && may_see;
    let has_result = is_sql && r.result_state == ResultState::Rows;
    (
        r.id,
        r.def.name,
        worker_type,
        r.def.kind.name().to_string(),
        r.def.database,
        r.def.role,
        status.pid(),
        status.name().to_string(),
        r.def.start_time.name().to_string(),
        seconds_interval(r.def.restart_after),
        r.launched_by,
        timestamp(Some(r.launched_at)),
        timestamp(r.started_at),
        timestamp(r.stopped_at),
        r.restarts,
        r.last_exit,
        r.last_error.filter(|_| may_see),
        r.is_static,
        is_sql.then_some(r.runs),
        (is_sql && r.runs > 0).then_some(r.last_rows),
        (is_sql && r.runs > 0).then_some(r.last_run_us as f64 / 1000.0),
        config,
        r.queue_position.map(|p| p.min(i32::MAX as u32) as i32),
        has_result.then_some(r.result_rows),
        has_result.then_some(r.result_bytes.min(i64::MAX as u64) as i64),
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
        name!(runs, Option<i64>),
        name!(last_run_rows, Option<i64>),
        name!(last_run_ms, Option<f64>),
        name!(config, Option<JsonbBytes>),
        name!(queue_position, Option<i32>),
        name!(result_rows, Option<i64>),
        name!(result_bytes, Option<i64>),
    ),
> {
    preload::require().or_report();
    let alive = control::postmaster_alive();
    let mut viewer = authz::Viewer::new();
    TableIterator::new(
        registry::list()
            .into_iter()
            .map(move |r| row(r, alive, &mut viewer)),
    )
}
