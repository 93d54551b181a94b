//! The SQL surface. Each function is thin: turn SQL values into a request,
//! call the core (`control`), report an error once.

use std::time::Duration;

use pgrx::prelude::*;

use crate::authz;
use crate::config::KindConfig;
use crate::control::{self, LaunchRequest, Status, Target};
use crate::error::{BgwError, OrReport};
use crate::jsonb_text::{JsonbBytes, JsonbText};
use crate::launch::{self, RawWorker};
use crate::preload;
use crate::registry::{self, WorkerRecord};
use crate::spec::KINDS;

fn timestamp(value: Option<i64>) -> Option<TimestampWithTimeZone> {
    value.and_then(|v| TimestampWithTimeZone::try_from(v).ok())
}

fn seconds_interval(secs: Option<u32>) -> Option<Interval> {
    secs.and_then(|s| Interval::new(0, 0, s as i64 * 1_000_000).ok())
}

fn required<T>(value: Option<T>, what: &str) -> Result<T, BgwError> {
    value.ok_or_else(|| BgwError::NullValue(what.to_string()))
}

fn interval_parts(i: Interval) -> (i32, i32, i64) {
    (i.months(), i.days(), i.micros())
}

fn timeout(value: Option<Interval>) -> Result<Option<Duration>, BgwError> {
    value
        .map(|i| {
            Duration::try_from(i).map_err(|_| BgwError::invalid("timeout must not be negative"))
        })
        .transpose()
}

/// Registers a dynamic worker of a built-in kind and returns its id. With
/// `wait`, returns once the worker runs (or raises if it could not start).
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn launch(
    kind: Option<&str>,
    name: default!(Option<&str>, "NULL"),
    config: default!(Option<JsonbText>, "'{}'"),
    database: default!(Option<&str>, "current_database()"),
    role: default!(Option<&str>, "current_user"),
    start_time: default!(Option<&str>, "'recovery_finished'"),
    restart_after: default!(Option<Interval>, "NULL"),
    bypass_allowconn: default!(Option<bool>, "false"),
    wait: default!(Option<bool>, "true"),
    queue: default!(Option<bool>, "false"),
) -> i64 {
    let request = (|| {
        Ok::<_, BgwError>(LaunchRequest {
            kind: required(kind, "kind")?.to_string(),
            name: name.map(str::to_string),
            config: required(config, "config")?.0,
            database: database.map(str::to_string),
            role: Some(required(role, "role")?.to_string()),
            start_time: required(start_time, "start_time")?.to_string(),
            restart_after: restart_after.map(interval_parts),
            bypass_allowconn: required(bypass_allowconn, "bypass_allowconn")?,
            wait: required(wait, "wait")?,
            queue: required(queue, "queue")?,
        })
    })()
    .or_report();
    control::launch(request).or_report()
}

/// Registers a worker of any library: the whole `BackgroundWorker` struct.
/// Superuser only.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn launch_raw(
    library: Option<&str>,
    function: Option<&str>,
    name: Option<&str>,
    r#type: default!(Option<&str>, "NULL"),
    main_arg: default!(Option<i64>, "0"),
    extra: default!(Option<Vec<u8>>, "NULL"),
    flags: default!(Option<Vec<String>>, "'{shmem_access,database_connection}'"),
    start_time: default!(Option<&str>, "'recovery_finished'"),
    restart_after: default!(Option<Interval>, "NULL"),
    wait: default!(Option<bool>, "true"),
) -> i64 {
    let raw = (|| {
        let name = required(name, "name")?.to_string();
        Ok::<_, BgwError>(RawWorker {
            library: required(library, "library")?.to_string(),
            function: required(function, "function")?.to_string(),
            worker_type: r#type.map(str::to_string).unwrap_or_else(|| name.clone()),
            name,
            main_arg: required(main_arg, "main_arg")?,
            extra: extra.unwrap_or_default(),
            flags: launch::parse_flags(&required(flags, "flags")?).map_err(BgwError::invalid)?,
            start_time: control::parse_start_time(required(start_time, "start_time")?)?,
            restart_after: control::parse_restart(restart_after.map(interval_parts))?,
            notify_pid: 0,
        })
    })()
    .or_report();
    control::launch_raw(raw, required(wait, "wait").or_report()).or_report()
}

/// `queued`, `not_yet_started`, `started`, `stopped` or `postmaster_died`.
#[pg_extern(volatile, parallel_restricted)]
fn status(id: Option<i64>) -> String {
    let id = required(id, "id").or_report();
    control::status(id).or_report().name().to_string()
}

/// The worker's process id while it runs, else NULL.
#[pg_extern(volatile, parallel_restricted)]
fn pid(id: Option<i64>) -> Option<i32> {
    let id = required(id, "id").or_report();
    control::status(id).or_report().pid()
}

fn wait_for(id: Option<i64>, timeout_value: Option<Interval>, target: Target) -> String {
    let id = required(id, "id").or_report();
    let timeout = timeout(timeout_value).or_report();
    match control::wait_checked(id, target, timeout).or_report() {
        Some(status) => status.name().to_string(),
        None => "timeout".to_string(),
    }
}

/// Waits until the worker has started (or stopped, or the timeout passed)
/// and returns the status reached, or `timeout`.
#[pg_extern(volatile, parallel_restricted)]
fn wait_for_startup(id: Option<i64>, timeout: default!(Option<Interval>, "NULL")) -> String {
    wait_for(id, timeout, Target::Startup)
}

/// Waits until the worker has stopped (or the timeout passed) and returns
/// the status reached, or `timeout`.
#[pg_extern(volatile, parallel_restricted)]
fn wait_for_shutdown(id: Option<i64>, timeout: default!(Option<Interval>, "NULL")) -> String {
    wait_for(id, timeout, Target::Shutdown)
}

/// Stops the worker for good (no restart); true if it was still registered.
#[pg_extern(volatile, parallel_unsafe)]
fn terminate(id: Option<i64>) -> bool {
    let id = required(id, "id").or_report();
    control::terminate(id).or_report()
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
    TableIterator::new(KINDS.iter().filter(|k| k.builtin).map(|k| {
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
