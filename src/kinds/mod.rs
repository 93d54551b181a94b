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

/// Whether a worker of `kind` connects (to its database, as its role)
/// before it runs: not without a database, and not a supervisor, which
/// only registers workers. One that does not is ready as it starts.
pub fn needs_connection(kind: Kind, has_database: bool) -> bool {
    has_database && !matches!(kind, Kind::Supervisor | Kind::Raw)
}

/// Connects the worker as it was authorised, when it needs to (see
/// [`needs_connection`]), then runs its kind, with the typed config the
/// registry kept, until the worker exits.
pub fn run(record: &WorkerRecord) {
    let config = record.def.config.clone();
    // One that needs no connection was recorded ready as it claimed its
    // slot (see `worker.rs`).
    if needs_connection(record.def.kind, record.def.database.is_some()) {
        connection::connect(record);
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
        } => sleep::run(record, duration, exit_code),
        KindConfig::Sql {
            sql,
            interval,
            timeout,
        } => sql::run(record, &sql, interval, timeout),
        KindConfig::Supervisor { children, child } => supervisor::run(record, children, &child),
        KindConfig::Raw { .. } => log!(
            "lightdb_bgw: worker {} of kind {} has nothing to run",
            record.id,
            record.def.kind
        ),
    }
}
