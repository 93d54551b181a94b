//! Spare worker processes (`lightdb_bgw.spare_workers`): the dispatcher
//! keeps that many background workers started and idle, and a launch that
//! may use one hands it its registry slot instead of registering a new
//! process, so the worker runs without waiting for the postmaster to fork
//! and set up a process. This file owns the dispatcher's tending of the
//! spares, which launches may take one, and a spare giving its slot up.
//! The hand-over itself is `registry/spares.rs`, the spare process's entry
//! `worker.rs`.
//!
//! A spare holds one `max_worker_processes` slot while it waits. The
//! dispatcher starts spares only while more slots are free than
//! `lightdb_bgw.superuser_reserved_workers`, keeps none while launches are
//! queued for a postmaster slot (their slots go to the queue), and a
//! launch that cannot use a spare but finds no free slot lets one go and
//! takes its slot.

use std::time::Duration;

use pgrx::pg_sys;

use crate::capacity;
use crate::error::BgwError;
use crate::gucs;
use crate::launch::{self, RawWorker, LIBRARY};
use crate::registry::{self, PgHandle};
use crate::spec::{self, StartTime};
use crate::workerdef::WorkerDef;

/// `bgw_name` of a spare; its `bgw_type` is the workers' own, since the
/// process becomes one and `pg_stat_activity` shows the type it started
/// with.
pub const NAME: &str = "lightdb_bgw spare";

/// Whether a launch of `def` may take a spare: the spare is registered
/// without a restart rule and started once the server is consistent, so
/// a worker with a restart rule, or one that must wait for the end of
/// recovery while the server is still in recovery, gets its own process.
pub fn fits(def: &WorkerDef) -> bool {
    def.restart_after.is_none()
        // SAFETY: a plain read of the server's recovery state.
        && !(def.start_time == StartTime::RecoveryFinished && unsafe { pg_sys::RecoveryInProgress() })
}

/// Runs `register` (a registration with the postmaster); if it finds no
/// free slot, lets one idle spare go so that its slot frees, waits (on the
/// registry's events, which the dispatcher broadcasts when the postmaster
/// reaps it) until it has, and runs `register` again in that slot, the
/// dispatcher starting no spare meanwhile.
pub fn with_room<T>(register: impl Fn() -> Result<T, BgwError>) -> Result<T, BgwError> {
    let first = register();
    if !matches!(first, Err(BgwError::NoPostmasterSlot)) {
        return first;
    }
    let _wanted = registry::RoomWanted::announce();
    let Some(handle) = registry::retire_spare() else {
        return first;
    };
    launch::terminate_handle(handle);
    wait_gone(&[handle], Duration::from_secs(2));
    register()
}

/// Lets go of the idle spares connected to database `database_oid` (which
/// is being dropped, renamed or moved, and must have no connection left)
/// and waits, at most `timeout`, until they have gone.
pub fn let_go_connected_to(database_oid: u32, timeout: Duration) {
    let handles = registry::retire_connected_to(database_oid);
    for &handle in &handles {
        launch::terminate_handle(handle);
    }
    wait_gone(&handles, timeout);
}

/// Waits, on the registry's events (the dispatcher broadcasts when the
/// postmaster reaps a spare), until the processes of `handles` have gone,
/// or `timeout` has passed.
fn wait_gone(handles: &[PgHandle], timeout: Duration) {
    if handles.is_empty() {
        return;
    }
    let Some(wait) = registry::ChangeWait::prepare() else {
        return;
    };
    let began = std::time::Instant::now();
    while !handles.iter().all(|&h| launch::pm_stopped(h)) && began.elapsed() < timeout {
        wait.sleep(Duration::from_millis(10));
    }
}

/// How long a spare beyond the setting (given back by its worker, see
/// `worker.rs`), or one connected to a database, waits idle before the
/// dispatcher lets it go.
pub const LINGER: Duration = Duration::from_secs(5);

/// The dispatcher, at each wake-up: registers spares up to the setting
/// while the postmaster has room beyond the superuser reserve (none while
/// queued launches wait for a postmaster slot; one queued only for its
/// role's quota waits for none), and lets go of those beyond it (and
/// connected ones) that lingered idle; at once while launches wait for
/// slots. Returns how long until the next one is due to be let go.
pub fn tend(notify_pid: i32) -> Option<Duration> {
    let queued = registry::any_waiting_for_slots();
    let want = if queued { 0 } else { gucs::spare_workers() };
    let linger = if queued { 0 } else { LINGER.as_micros() as i64 };
    // SAFETY: reading the clock has no preconditions.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let (retired, next) = registry::retire_lingering(now, want, linger);
    for handle in retired {
        launch::terminate_handle(handle);
    }
    let mut live = registry::spare_census(launch::pm_stopped);
    let reserved = gucs::superuser_reserved_workers();
    while live < want
        && !registry::room_wanted()
        && capacity::pm_free().is_some_and(|free| free > reserved)
    {
        let Some(index) = registry::begin_spare() else {
            break;
        };
        match register(index, notify_pid) {
            Some(handle) => registry::spare_registered(index, handle),
            None => {
                registry::abandon_spare(index);
                break;
            }
        }
        live += 1;
    }
    next.map(|due| Duration::from_micros(due.saturating_sub(now).max(1000) as u64))
}

/// Registers the spare of table entry `index` with the postmaster.
fn register(index: usize, notify_pid: i32) -> Option<PgHandle> {
    let raw = RawWorker {
        library: LIBRARY.to_string(),
        function: "lightdb_bgw_spare_main".to_string(),
        name: NAME.to_string(),
        worker_type: spec::WORKER_TYPE.to_string(),
        main_arg: index as i64,
        extra: Vec::new(),
        flags: (pg_sys::BGWORKER_SHMEM_ACCESS | pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION)
            as i32,
        start_time: StartTime::ConsistentState,
        restart_after: None,
        notify_pid,
    };
    let worker = launch::build_raw(&raw).ok()?;
    launch::register_dynamic(worker).ok()
}
