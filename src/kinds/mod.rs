//! The built-in worker kinds; each runs inside its own worker process.

pub mod counter;
pub mod sleep;
pub mod sql;
pub mod supervisor;

use pgrx::prelude::*;

use crate::config::KindConfig;
use crate::connection;
use crate::registry::WorkerRecord;
use crate::spec::Kind;

/// Whether a worker with `config` run by a spare gives the process back
/// when it stops, for the next launch, rather than ending it: a `sleep`
/// worker, which runs no code of its user's, and a `sql` worker that runs
/// once, whose session is reset as `DISCARD ALL` does first. The process
/// keeps its connection: it is handed only workers that connect exactly
/// so, same database, same role (see `registry::take_spare`).
pub fn gives_back(config: &KindConfig) -> bool {
    matches!(
        config,
        KindConfig::Sleep { .. } | KindConfig::Sql { interval: None, .. }
    )
}

/// Whether `terminate` stops a worker of `kind` that gives its process
/// back by waking it (it waits on its latch all its life) rather than
/// with SIGTERM, which would end the process.
pub fn woken_to_stop(kind: Kind) -> bool {
    kind == Kind::Sleep
}

/// How a worker that gives its process back (see [`gives_back`]) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// By itself, with this exit code.
    Exit(i32),
    /// Asked to by `terminate`.
    Terminated,
}

/// Connects the worker as it was authorised, when it needs to (see
/// [`Kind::needs_connection`]), then runs its kind, with the typed config the
/// registry kept, until the worker exits; a worker that gives its process
/// back returns how it ended instead.
pub fn run(record: &WorkerRecord) -> Ended {
    let config = record.def.config.clone();
    // A launch refuses this; a registry entry that has it anyway (a
    // supervisor's child from an older release) stops, never runs its SQL
    // without a connection.
    if config.needs_database() && record.def.database.is_none() {
        crate::runtime::record_note(Some(&format!(
            "a \"{}\" worker needs a database; it stops for good",
            record.def.kind
        )));
        crate::registry::stop_for_good(record.at);
        return Ended::Exit(0);
    }
    // One that needs no connection was recorded ready as it claimed its
    // slot (see `worker.rs`).
    if record
        .def
        .kind
        .needs_connection(record.def.database.is_some())
    {
        let woken = crate::runtime::recyclable() && woken_to_stop(record.def.kind);
        connection::connect(record, woken);
    }
    match config {
        KindConfig::Counter {
            naptime,
            schema,
            table,
            notify,
        } => counter::run(
            record,
            &counter::CounterConfig::new(record.id, naptime, schema, table, notify),
        ),
        KindConfig::Sleep {
            duration,
            exit_code,
        } => return sleep::run(record, duration, exit_code),
        KindConfig::Sql {
            sql,
            interval,
            timeout,
        } => return sql::run(record, &sql, interval, timeout),
        KindConfig::Supervisor { children, child } => supervisor::run(record, children, &child),
        KindConfig::Raw { .. } => log!(
            "lightdb_bgw: worker {} of kind {} has nothing to run",
            record.id,
            record.def.kind
        ),
    }
    Ended::Exit(0)
}
