//! `sql`: runs a SQL text once or every `interval`, each run in its own
//! transaction, as the launching role (the worker connects as that role,
//! so the text has exactly its privileges). Each run is recorded in the
//! registry: how many runs, rows and duration of the last, and the last
//! error with its SQLSTATE. `NOTIFY` in the text is sent at commit.

use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::process;
use crate::registry::{self, WorkerRecord};
use crate::worker;

pub fn run(record: &WorkerRecord, sql: &str, interval: Option<Duration>) {
    worker::connect_as_recorded(record);
    worker::set_application_name(&record.def.name);
    let me = worker::identity();
    loop {
        let began = Instant::now();
        worker::report_activity(Some(sql));
        let text = sql.to_string();
        let outcome = worker::in_transaction(move || {
            // On a hot standby the text runs read-only: asking for a
            // transaction id there is an error even for a SELECT.
            // SAFETY: a plain read of the server's recovery state.
            let read_only = unsafe { pg_sys::RecoveryInProgress() };
            Spi::connect_mut(|client| {
                if read_only {
                    client.select(text.as_str(), None, &[]).map(|t| t.len())
                } else {
                    client.update(text.as_str(), None, &[]).map(|t| t.len())
                }
            })
            .unwrap_or_else(|err| pgrx::error!("{err}"))
        });
        let micros = began.elapsed().as_micros().min(i64::MAX as u128) as i64;
        worker::report_activity(None);
        let rows = match &outcome {
            Ok(rows) => *rows as i64,
            Err(_) => 0,
        };
        registry::record_run(me.slot, me.id, me.generation, rows, micros);
        match &outcome {
            Ok(_) => worker::record_error(None),
            Err(err) => {
                warning!("{}: {err}", worker::describe(record));
                worker::record_error(Some(&err.to_string()));
            }
        }
        let Some(interval) = interval else {
            // Once: success unregisters; a failure exits with code 1 so
            // that a restart policy, if any, runs it again.
            let code = if outcome.is_ok() { 0 } else { 1 };
            process::exit(code);
        };
        // The next run starts one interval after this one started.
        while let Some(left) = interval
            .checked_sub(began.elapsed())
            .filter(|d| !d.is_zero())
        {
            worker::nap(Some(left));
        }
    }
}
