//! `sleep`: waits on its latch until terminated or until `duration` ends,
//! then exits with `exit_code` (0: unregistered, 1: restart rules apply).
//! Run by a spare, it gives the process back instead (see `worker.rs`):
//! `terminate` then wakes it rather than sending SIGTERM.

use std::time::{Duration, Instant};

use super::Ended;
use crate::process;
use crate::registry::WorkerRecord;
use crate::runtime;

pub fn run(record: &WorkerRecord, duration: Option<Duration>, exit_code: i32) -> Ended {
    if record.def.database.is_some() {
        runtime::set_application_name(&record.def.name);
        runtime::report_activity(Some("sleeping"));
    }
    let began = Instant::now();
    loop {
        // Looked at before every nap: a wake-up sent while the worker was
        // not napping (connecting, say) may have been spent elsewhere.
        if runtime::stop_asked() {
            return Ended::Terminated;
        }
        let remaining = match duration {
            Some(d) => match d.checked_sub(began.elapsed()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => break,
            },
            None => None,
        };
        runtime::nap(remaining);
    }
    if !runtime::recyclable() {
        process::exit(exit_code);
    }
    Ended::Exit(exit_code)
}
