//! The SQL surface. Each function is thin: turn SQL values into a request,
//! call the core (`control`), report an error once. Launching, watching
//! and stopping workers here; the `workers` listing in `list.rs`;
//! background SQL with results in `results.rs`.

mod kept;
mod list;
mod results;
mod srf;

use std::time::Duration;

use pgrx::prelude::*;

use crate::control::{self, LaunchRequest, Target};
use crate::error::{BgwError, OrReport};
use crate::jsonb_text::JsonbText;
use crate::launch::{self, RawWorker};
use crate::preload;
use crate::spec::KINDS;

fn required<T>(value: Option<T>, what: &str) -> Result<T, BgwError> {
    value.ok_or_else(|| BgwError::NullValue(what.to_string()))
}

fn interval_parts(i: Interval) -> (i32, i32, i64) {
    (i.months(), i.days(), i.micros())
}

fn timeout(value: Option<Interval>) -> Result<Option<Duration>, BgwError> {
    value
        .map(|i| {
            crate::config::wait_timeout(i.months(), i.days(), i.micros()).map_err(BgwError::invalid)
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
/// Superuser only. Its SQL is written below: pgrx would name the fourth
/// parameter after the Rust one, and `type` is a Rust keyword.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe, sql = false)]
fn launch_raw(
    library: Option<&str>,
    function: Option<&str>,
    name: Option<&str>,
    worker_type: Option<&str>,
    main_arg: Option<i64>,
    extra: Option<Vec<u8>>,
    flags: Option<Vec<Option<String>>>,
    start_time: Option<&str>,
    restart_after: Option<Interval>,
    wait: Option<bool>,
) -> i64 {
    let raw = (|| {
        let name = required(name, "name")?.to_string();
        Ok::<_, BgwError>(RawWorker {
            library: required(library, "library")?.to_string(),
            function: required(function, "function")?.to_string(),
            worker_type: worker_type
                .map(str::to_string)
                .unwrap_or_else(|| name.clone()),
            name,
            main_arg: required(main_arg, "main_arg")?,
            extra: extra.unwrap_or_default(),
            flags: launch::parse_flags(
                &required(flags, "flags")?
                    .into_iter()
                    .map(|flag| required(flag, "an element of flags"))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .map_err(BgwError::invalid)?,
            start_time: control::parse_start_time(required(start_time, "start_time")?)?,
            restart_after: control::parse_restart(restart_after.map(interval_parts))?,
            notify_pid: 0,
        })
    })()
    .or_report();
    control::launch_raw(raw, required(wait, "wait").or_report()).or_report()
}

extension_sql!(
    r#"
CREATE FUNCTION lightdb_bgw."launch_raw"(
	"library" TEXT,
	"function" TEXT,
	"name" TEXT,
	"type" TEXT DEFAULT NULL,
	"main_arg" bigint DEFAULT 0,
	"extra" bytea DEFAULT NULL,
	"flags" TEXT[] DEFAULT '{shmem_access,database_connection}',
	"start_time" TEXT DEFAULT 'recovery_finished',
	"restart_after" interval DEFAULT NULL,
	"wait" bool DEFAULT true
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'launch_raw_wrapper';
"#,
    name = "launch_raw"
);

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
