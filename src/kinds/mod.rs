//! The built-in worker kinds; each runs inside its own worker process.

pub mod counter;
pub mod sleep;
pub mod sql;
pub mod supervisor;

use pgrx::prelude::*;

use crate::config::KindConfig;
use crate::connection;
use crate::registry::WorkerRecord;

/// Connects the worker as it was authorised (the supervisor needs no
/// connection: it only registers workers), then runs its kind, with the
/// typed config the registry kept, until the worker exits.
pub fn run(record: &WorkerRecord) {
    let config = record.def.config.clone();
    if matches!(
        config,
        KindConfig::Supervisor { .. } | KindConfig::Raw { .. }
    ) {
        connection::mark_ready(record);
    } else {
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
