//! `sleep`: waits on its latch until terminated or until `duration` ends,
//! then exits with `exit_code` (0: unregistered, 1: restart rules apply).

use std::time::{Duration, Instant};

use crate::process;
use crate::registry::WorkerRecord;
use crate::worker;

pub fn run(record: &WorkerRecord, duration: Option<Duration>, exit_code: i32) {
    worker::connect_as_recorded(record);
    if record.def.database.is_some() {
        worker::set_application_name(&record.def.name);
        worker::report_activity(Some("sleeping"));
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
        worker::nap(remaining);
    }
    process::exit(exit_code);
}
