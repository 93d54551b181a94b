//! `supervisor`: a worker that itself registers `children` workers of
//! `child_kind` (dynamic registration from a background worker) and keeps
//! them running: a child that stops, for whatever reason, is relaunched
//! under a new id. Terminating the supervisor terminates its children.
//!
//! The supervisor sleeps on the registry's condition variable, which a
//! child's start and exit (and the dispatcher, when the postmaster has
//! reaped a child) broadcast; a one-second timeout is only a backstop. A child that keeps stopping
//! within seconds of its launch is relaunched after a wait that doubles
//! each time (1 s up to 60 s), shown in the supervisor's `last_error`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::authz::Authorised;
use crate::capacity;
use crate::config::KindConfig;
use crate::connection;
use crate::control::{self, Status};
use crate::registry::{self, WorkerRecord};
use crate::runtime;
use crate::workerdef::WorkerDef;

/// Ids of the current children, for the exit callback.
static CHILDREN: Mutex<Vec<i64>> = Mutex::new(Vec::new());

/// A child that stops within this long of its launch stopped "fast".
const FAST_DEATH: Duration = Duration::from_secs(10);
/// The longest a child that keeps stopping fast waits to be relaunched.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the supervisor looks at its children without being woken.
const BACKSTOP: Duration = Duration::from_secs(1);

/// One child position of the supervisor.
#[derive(Debug, Default)]
struct Child {
    /// The current child's id, if one is registered.
    id: Option<i64>,
    /// When the current child was launched.
    launched: Option<Instant>,
    /// How many children in a row stopped fast.
    fast_deaths: u32,
    /// Not relaunched before this.
    not_before: Option<Instant>,
    /// Why this child is not running as it should, while that lasts.
    note: Option<String>,
}

/// The wait before relaunching after `fast_deaths` fast stops in a row:
/// none for a child that ran a while, then 1 s, 2 s, 4 s, ... up to
/// [`MAX_BACKOFF`], as TimescaleDB's jobs back off.
pub fn backoff(fast_deaths: u32) -> Duration {
    if fast_deaths == 0 {
        return Duration::ZERO;
    }
    let secs = 1u64 << (fast_deaths - 1).min(16);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// The error of a child that stopped for good because the role or the
/// database it was authorised for is gone (28000, 3D000), if it did.
fn authorisation_gone(child: &WorkerRecord) -> Option<String> {
    let error = child.error.as_ref()?;
    (child.terminate_requested && connection::authorisation_gone(&error.sqlstate))
        .then(|| error.short())
}

pub fn run(record: &WorkerRecord, children: u32, child_config: &KindConfig) {
    // SAFETY: registered once; runs at exit, SIGTERM included.
    unsafe { pg_sys::before_shmem_exit(Some(stop_children), pg_sys::Datum::from(0usize)) };
    let launched_by = record
        .launched_by
        .clone()
        .unwrap_or_else(|| "lightdb_bgw".into());
    // Children run as the supervisor was authorised: the same role and
    // database OIDs, never names looked up again.
    let authorised = Authorised {
        role_oid: record.role_oid,
        database_oid: record.database_oid,
    };
    let mut current: Vec<Child> = (0..children).map(|_| Child::default()).collect();
    loop {
        // Prepared before looking, so no change between the look and the
        // sleep is missed.
        let waiter = registry::ChangeWait::prepare();
        for (index, child) in current.iter_mut().enumerate() {
            let found = child.id.and_then(registry::find);
            let alive = found
                .as_ref()
                .map(|rec| control::status_of(rec).0 != Status::Stopped);
            if alive == Some(true) {
                continue;
            }
            // The role or database it was authorised for is gone: so it is
            // for every child to come. The supervisor, which never connects
            // itself, stops for good too.
            if let Some(error) = found.as_ref().and_then(authorisation_gone) {
                runtime::record_note(Some(&format!(
                    "child {} (worker {}) cannot connect: {error}; the supervisor stops for good",
                    index + 1,
                    child.id.unwrap_or_default()
                )));
                registry::stop_for_good(record.at);
                return;
            }
            if let (Some(old), Some(launched)) = (child.id.take(), child.launched.take()) {
                let lived = launched.elapsed();
                child.fast_deaths = if lived < FAST_DEATH {
                    child.fast_deaths + 1
                } else {
                    0
                };
                let wait = backoff(child.fast_deaths);
                child.not_before = Some(Instant::now() + wait);
                child.note = (!wait.is_zero()).then(|| {
                    format!(
                        "child {} (worker {old}) stopped {:.1} s after its launch, {} times in a row; \
                         relaunching it in {} s",
                        index + 1,
                        lived.as_secs_f64(),
                        child.fast_deaths,
                        wait.as_secs()
                    )
                });
            }
            if child.not_before.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            let def = WorkerDef {
                kind: child_config.kind(),
                name: format!("{} child {}", record.def.name, index + 1),
                database: record.def.database.clone(),
                role: record.def.role.clone(),
                start_time: record.def.start_time,
                restart_after: None,
                config: child_config.clone(),
            };
            match control::register(
                def,
                &launched_by,
                authorised,
                false,
                &capacity::child_admission(record.by_superuser, record.quota),
            ) {
                Ok(id) => {
                    if child.fast_deaths > 0 || child.not_before.is_some() {
                        log!(
                            "{}: relaunched child {} as worker {id}",
                            runtime::describe(record),
                            index + 1
                        );
                    }
                    child.id = Some(id);
                    child.launched = Some(Instant::now());
                    child.not_before = None;
                    if child.fast_deaths == 0 {
                        child.note = None;
                    }
                }
                Err(err) => {
                    child.note = Some(format!("cannot launch child {}: {err}", index + 1));
                    child.not_before = Some(Instant::now() + BACKSTOP);
                }
            }
        }
        // A child that ran a while since its last fast stop is healthy.
        for child in current.iter_mut() {
            if child.launched.is_some_and(|t| t.elapsed() >= FAST_DEATH) {
                child.fast_deaths = 0;
                child.note = None;
            }
        }
        let notes: Vec<&str> = current.iter().filter_map(|c| c.note.as_deref()).collect();
        if notes.is_empty() {
            runtime::record_note(None);
        } else {
            runtime::record_note(Some(&notes.join("; ")));
        }
        if let Ok(mut ids) = CHILDREN.lock() {
            *ids = current.iter().filter_map(|c| c.id).collect();
        }
        let next = current
            .iter()
            .filter(|c| c.id.is_none())
            .filter_map(|c| c.not_before)
            .map(|t| t.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(BACKSTOP);
        let next = next.clamp(Duration::from_millis(1), BACKSTOP);
        match waiter {
            Some(waiter) => waiter.sleep(next),
            None => runtime::nap(Some(next)),
        }
        runtime::serve_interrupts();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn stop_children(_code: i32, _arg: pg_sys::Datum) {
    let ids = CHILDREN.lock().map(|ids| ids.clone()).unwrap_or_default();
    for id in ids {
        if let Some(rec) = registry::request_terminate(id) {
            control::stop_record(&rec);
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let secs: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![0, 1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
