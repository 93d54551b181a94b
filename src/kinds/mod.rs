//! The built-in worker kinds; each runs inside its own worker process.

pub mod counter;
pub mod sleep;

use crate::registry::WorkerRecord;
use crate::spec::Kind;

/// Runs the kind of `record` until the worker exits.
pub fn run(record: &WorkerRecord) {
    match record.def.kind {
        Kind::Counter => counter::run(record),
        Kind::Sleep => sleep::run(record),
    }
}
