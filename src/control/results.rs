//! Background SQL with results: `run` (a once-run `sql` worker), `result`
//! (waits for the latest completed run and returns its rows, or raises its
//! error again), `forget`, and `cancel` (the statement a worker runs).
//! Role rules as everywhere: the roles that may wait on a worker.

use std::time::Duration;

use super::start::{launch, LaunchRequest};
use super::watch::{lookup, status_of, wait_unchecked, Status, Target};
use crate::authz::check_may_control;
use crate::codec::ErrorText;
use crate::error::BgwError;
use crate::gucs;
use crate::preload;
use crate::registry::{self, Forgotten, RunResult};
use crate::rows::Block;
use crate::spec::Kind;

/// `run(...)`: what `launch('sql', config => {sql, timeout}, wait =>
/// false)` does, returning the id at once.
pub fn run(
    sql: String,
    database: Option<String>,
    role: Option<String>,
    timeout: Option<String>,
    queue: bool,
) -> Result<i64, BgwError> {
    let mut config = serde_json::Map::new();
    config.insert("sql".into(), sql.into());
    if let Some(timeout) = timeout {
        config.insert("timeout".into(), timeout.into());
    }
    launch(LaunchRequest {
        kind: "sql".into(),
        name: None,
        config: serde_json::Value::Object(config).to_string(),
        database,
        role,
        start_time: "recovery_finished".into(),
        restart_after: None,
        bypass_allowconn: false,
        wait: false,
        queue,
    })
}

/// `result(id, timeout)`: the framed rows of worker `id`'s latest
/// completed run (see `rows.rs`), once there is one; its error, raised
/// again with a CONTEXT line naming the worker, if the run failed.
pub fn result(id: i64, timeout: Option<Duration>) -> Result<Block, BgwError> {
    let rec = lookup(id)?;
    check_may_control(&rec, "read the result of")?;
    if rec.def.kind != Kind::Sql {
        return Err(BgwError::WrongState {
            message: format!(
                "worker {id} is a {} worker; only sql workers keep results",
                rec.def.kind
            ),
            hint: Some("Use lightdb_bgw.run() or a sql worker.".into()),
        });
    }
    if wait_unchecked(id, Target::Result, timeout)?.is_none() {
        return Err(BgwError::TimedOut(format!(
            "timed out waiting for the result of worker {id}"
        )));
    }
    let retention = gucs::result_retention().map(|d| d.as_micros() as i64);
    match registry::read_result(id, retention) {
        Some(RunResult::Rows(framed)) => Ok(framed),
        Some(RunResult::Failed(error)) => {
            let error = error.unwrap_or_else(|| ErrorText {
                sqlstate: "XX000".into(),
                message: format!("the run of worker {id} failed; its error could not be kept"),
                ..Default::default()
            });
            Err(BgwError::Worker {
                sqlstate: error.sqlstate,
                message: error.message,
                detail: error.detail,
                hint: error.hint,
                context: Some(match error.context {
                    Some(context) => format!("{context}\nlightdb_bgw worker {id}"),
                    None => format!("lightdb_bgw worker {id}"),
                }),
            })
        }
        None => Err(BgwError::WrongState {
            message: format!("worker {id} has no result"),
            hint: Some(
                "It stopped before a run completed, or its result was forgotten or is older than \"lightdb_bgw.result_retention\"."
                    .into(),
            ),
        }),
    }
}

/// The longest `forget` waits for the process of a worker whose work is
/// done to end.
const DONE_ENDS: Duration = Duration::from_secs(5);

/// `forget(id)`: drops a stopped worker's result and history entry; false
/// if there was nothing to drop.
pub fn forget(id: i64) -> Result<bool, BgwError> {
    preload::require()?;
    let Some(rec) = registry::find(id) else {
        return Ok(false);
    };
    check_may_control(&rec, "forget")?;
    // A run whose result was published is done; its process may still be
    // ending (`forget` right after `result`): it is waited for, briefly.
    if rec.done && status_of(&rec).0 != Status::Stopped {
        wait_unchecked(id, Target::Shutdown, Some(DONE_ENDS))?;
    }
    match registry::forget(id, |r| status_of(r).0 == Status::Stopped) {
        Forgotten::Unknown => Ok(false),
        Forgotten::Dropped => Ok(true),
        Forgotten::Live(r) => Err(BgwError::WrongState {
            message: if r.is_static {
                format!("worker {id} is a static worker; its entry stays")
            } else {
                format!("worker {id} is still {}", status_of(&r).0.name())
            },
            hint: (!r.is_static).then(|| "Terminate it first, or wait for it to stop.".to_string()),
        }),
    }
}

/// `cancel(id)`: cancels the statement worker `id` is running, as
/// `pg_cancel_backend` does (SIGINT); true if the signal was sent. A
/// worker of ours is signalled only while its process still runs it (see
/// `registry::signal_running`); a raw worker, whose process only the
/// postmaster knows, at the pid the postmaster gives.
pub fn cancel(id: i64) -> Result<bool, BgwError> {
    let rec = lookup(id)?;
    check_may_control(&rec, "cancel")?;
    let status = status_of(&rec).0;
    if rec.def.kind != Kind::Raw {
        // Alive as the postmaster sees it, and still this worker's process.
        let started = matches!(status, Status::Started(_));
        return Ok(started && registry::signal_running(id, libc::SIGINT));
    }
    match status {
        // SAFETY: kill has no memory effects; the pid is the worker's own,
        // read from the postmaster a moment ago.
        Status::Started(pid) if pid > 0 => Ok(unsafe { libc::kill(pid, libc::SIGINT) } == 0),
        _ => Ok(false),
    }
}

/// Result memory now, for `result_memory()`.
pub fn result_memory() -> Result<i64, BgwError> {
    preload::require()?;
    Ok(registry::result_memory().min(i64::MAX as u64) as i64)
}
