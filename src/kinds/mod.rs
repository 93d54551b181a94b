//! The built-in worker kinds; each runs inside its own worker process.

pub mod counter;
pub mod sleep;
pub mod sql;
pub mod supervisor;

use pgrx::prelude::*;

use crate::config::{self, KindConfig};
use crate::registry::WorkerRecord;
use crate::spec::Kind;

/// Runs the kind of `record` until the worker exits.
pub fn run(record: &WorkerRecord) {
    let config = match config::parse(record.def.kind, &record.def.config) {
        Ok(config) => config,
        // Validated at launch; a static worker's `{}` always parses.
        Err(err) => pgrx::error!("invalid config for worker {}: {err}", record.id),
    };
    match (record.def.kind, config) {
        (Kind::Counter, KindConfig::Counter { .. }) => counter::run(record, &config_of(record)),
        (
            Kind::Sleep,
            KindConfig::Sleep {
                duration,
                exit_code,
            },
        ) => sleep::run(record, duration, exit_code),
        (Kind::Sql, KindConfig::Sql { sql, interval }) => sql::run(record, &sql, interval),
        (
            Kind::Supervisor,
            KindConfig::Supervisor {
                children,
                child_kind,
                child_config,
            },
        ) => supervisor::run(record, children, child_kind, &child_config),
        (kind, _) => log!(
            "lightdb_bgw: worker {} of kind {kind} has nothing to run",
            record.id
        ),
    }
}

fn config_of(record: &WorkerRecord) -> counter::CounterConfig {
    counter::CounterConfig::for_record(record)
}
