//! `sql`: runs a SQL text once or every `interval`, each run in its own
//! transaction, as the launching role (the worker connects as that role,
//! so the text has exactly its privileges), each statement under the
//! optional `timeout`. Each run is recorded in the registry: how many
//! runs, rows and duration of the last, the last error with its SQLSTATE,
//! and the run's result for `result()`: the rows of its last statement
//! that returned rows, or its error. `NOTIFY` in the text is sent at
//! commit. `cancel()` (SIGINT) cancels the statement running: the run
//! fails with 57014; an interval worker goes on with its next run. Run
//! once by a spare, it gives the process back (see `worker.rs`), its
//! session reset first as `DISCARD ALL` does.

use std::time::{Duration, Instant};

use pgrx::pg_sys;

use super::Ended;
use crate::capture::{self, Limits};
use crate::catalog;
use crate::error::BgwError;
use crate::gucs;
use crate::process;
use crate::registry::{self, NoSpace, Outcome, WorkerRecord};
use crate::runtime;

pub fn run(
    record: &WorkerRecord,
    sql: &str,
    interval: Option<Duration>,
    timeout: Option<Duration>,
) -> Ended {
    runtime::set_application_name(&record.def.name);
    let me = runtime::identity();
    // The role's bound on its kept results, rows or errors alike.
    let share = gucs::max_result_memory_per_role().map(|cap| registry::RoleShare {
        role_oid: record.role_oid,
        cap,
        at: me.at,
    });
    loop {
        let began = Instant::now();
        runtime::report_activity(Some(sql));
        let text = sql.to_string();
        let limits = Limits {
            timeout,
            max_result: gucs::max_result_size(),
        };
        let oid = pg_sys::Oid::from(record.role_oid);
        let outcome = runtime::in_transaction(move || {
            // Its role dropped while it runs (an interval worker): every
            // run would fail.
            catalog::role(oid, |_| ())?;
            // On a hot standby the text runs read-only: asking for a
            // transaction id there is an error even for a SELECT.
            // SAFETY: a plain read of the server's recovery state.
            let read_only = unsafe { pg_sys::RecoveryInProgress() };
            let ran = capture::run_text(&text, read_only, limits);
            // Kept in shared memory before the commit: a result that does
            // not fit fails the run.
            let stashed = registry::stash_result(
                &ran.framed,
                ran.rows,
                gucs::max_result_memory(),
                record.by_superuser,
                share,
            )
            .unwrap_or_else(|full| no_space(full).report());
            let rows = if ran.returned {
                ran.rows
            } else {
                ran.processed
            };
            Some((rows, stashed))
        });
        // It stops for good then, as a worker whose role is gone when it
        // connects does.
        let outcome = match outcome {
            Ok(None) => runtime::stop_for_good(runtime::WorkError {
                sqlstate: "28000".into(),
                message: format!("role with OID {oid} no longer exists"),
                ..Default::default()
            }),
            Ok(Some(ran)) => Ok(ran),
            Err(err) => Err(err),
        };
        capture::timeout_off();
        let micros = began.elapsed().as_micros().min(i64::MAX as u128) as i64;
        runtime::report_activity(None);
        let ok = outcome.is_ok();
        // A once-run that will not be restarted runs no more after this.
        let last = interval.is_none() && (ok || record.def.restart_after.is_none());
        match outcome {
            Ok((rows, stashed)) => {
                registry::record_run(me.at, rows, micros);
                registry::publish_result(me.at, Outcome::Rows(stashed), last);
                runtime::record_error(None);
            }
            Err(err) => {
                registry::record_run(me.at, 0, micros);
                pgrx::warning!("{}: {err}", runtime::describe(record));
                runtime::record_error(Some(&err));
                // Kept with the result (its own copy); if even that does
                // not fit, the recorded error is read instead.
                let kept = registry::stash_result(
                    &err.encode(),
                    0,
                    gucs::max_result_memory(),
                    record.by_superuser,
                    share,
                )
                .ok();
                registry::publish_result(me.at, Outcome::Failed(kept), last);
            }
        }
        let Some(interval) = interval else {
            // Once: success unregisters; a failure exits with code 1 so
            // that a restart policy, if any, runs it again.
            let code = if ok { 0 } else { 1 };
            if runtime::recyclable() && runtime::discard_session().is_ok() {
                return Ended::Exit(code);
            }
            process::exit(code);
        };
        // The next run starts one interval after this one started.
        while let Some(left) = interval
            .checked_sub(began.elapsed())
            .filter(|d| !d.is_zero())
        {
            runtime::nap(Some(left));
        }
    }
}

fn no_space(full: NoSpace) -> BgwError {
    match full {
        NoSpace::Results(cap) => BgwError::SizeLimit {
            message: format!("results would take more than {cap} bytes of shared memory"),
            setting: "lightdb_bgw.max_result_memory",
        },
        NoSpace::RoleResults(cap) => BgwError::SizeLimit {
            message: format!("the role's kept results would take more than {cap} bytes"),
            setting: "lightdb_bgw.max_result_memory_per_role",
        },
        NoSpace::Texts => BgwError::SizeLimit {
            message: "the shared memory for worker texts and results is full".into(),
            setting: "lightdb_bgw.max_text_memory",
        },
    }
}
