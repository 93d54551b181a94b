//! `sleep`: waits on its latch until terminated or until `duration` ends,
//! then exits with `exit_code` (0: unregistered, 1: restart rules apply).

use std::time::{Duration, Instant};

use crate::process;
use crate::registry::WorkerRecord;
use crate::runtime;

pub fn run(record: &WorkerRecord, duration: Option<Duration>, exit_code: i32) {
    if record.def.database.is_some() {
        runtime::set_application_name(&record.def.name);
        runtime::report_activity(Some("sleeping"));
    }
    let began = Instant::now();
    loop {
        let remaining = match duration {
            Some(d) => match d.checked_sub(began.elapsed()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => break,
            },
            None => None,
        };
        runtime::nap(remaining);
    }
    process::exit(exit_code);
}
