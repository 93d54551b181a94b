//! The dispatcher: a small background worker of the extension, started
//! with the server, that turns the postmaster's notifications into events
//! every session can wait on. The postmaster tells one process
//! (`bgw_notify_pid`) when a dynamic worker starts or is reaped; every
//! worker the extension registers names the dispatcher there, and the
//! dispatcher broadcasts the registry's condition variable on each such
//! signal. So a session waiting on another session's worker wakes when the
//! postmaster has reaped it, without polling.
//!
//! It also starts the launch queue: after each signal (a worker reaped
//! frees a postmaster slot and maybe its role's quota; a session that
//! queued a worker pokes it) it registers queued workers, first in, first
//! out, while there is room. Slots freed by processes that do not notify
//! it (other extensions' workers, parallel query) are seen within a
//! second, the backstop of its sleep while anything is queued.
//!
//! It keeps the spare processes of `lightdb_bgw.spare_workers` (see
//! `spare.rs`): after each signal it starts those missing; a spare that
//! took a worker pokes it once that worker runs; spares beyond the setting
//! (given back by their workers) are let go once they lingered idle.
//!
//! And it frees the results of `sql` runs once they are older than
//! `lightdb_bgw.result_retention`, waking when the next one is due.
//!
//! It connects to no database (as the logical replication launcher does),
//! which is what puts it in `pg_stat_activity`, with `backend_type`
//! `lightdb_bgw dispatcher`; a process with a database connection cannot
//! start before the server is consistent, so neither does it.

use std::time::Duration;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::capacity;
use crate::codec::ErrorText;
use crate::error::BgwError;
use crate::gucs;
use crate::launch::{self, RawWorker, LIBRARY};
use crate::process;
use crate::registry;
use crate::runtime;
use crate::spare;
use crate::spec::StartTime;
use crate::sqlstate::sqlstate_text;

/// `bgw_name` and `bgw_type` of the dispatcher.
pub const NAME: &str = "lightdb_bgw dispatcher";

/// Registers the dispatcher with the postmaster, from `_PG_init`.
pub fn register() {
    let raw = RawWorker {
        library: LIBRARY.to_string(),
        function: "lightdb_bgw_dispatcher_main".to_string(),
        name: NAME.to_string(),
        worker_type: NAME.to_string(),
        main_arg: 0,
        extra: Vec::new(),
        flags: (pg_sys::BGWORKER_SHMEM_ACCESS | pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION)
            as i32,
        start_time: StartTime::ConsistentState,
        restart_after: Some(1),
        notify_pid: 0,
    };
    let mut worker = launch::build_raw(&raw).unwrap_or_else(|e| BgwError::invalid(e).report());
    // SAFETY: called from _PG_init during preload, the only time static
    // registration is allowed; the struct is fully initialised.
    unsafe { pg_sys::RegisterBackgroundWorker(&mut worker) };
}

/// The dispatcher's main loop: sleep on the latch (the postmaster's
/// SIGUSR1 sets it), then wake every waiter of the registry.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn lightdb_bgw_dispatcher_main(_arg: pg_sys::Datum) {
    process::install_worker_signal_handlers();
    process::end_after_proc_exit();
    // SAFETY: registered with BGWORKER_BACKEND_DATABASE_CONNECTION; no
    // database and no role: shared catalogs only, as the bootstrap
    // superuser, which gives it its pg_stat_activity entry.
    unsafe {
        pg_sys::BackgroundWorkerInitializeConnectionByOid(pg_sys::InvalidOid, pg_sys::InvalidOid, 0)
    };
    // SAFETY: MyProcPid is set for every server process; the exit callback
    // runs while shared memory is still attached.
    unsafe {
        registry::set_dispatcher_pid(pg_sys::MyProcPid);
        pg_sys::on_shmem_exit(Some(on_exit), pg_sys::Datum::from(0usize));
    }
    // SAFETY: MyProcPid is set for every server process.
    let me = unsafe { pg_sys::MyProcPid };
    loop {
        // SAFETY: reading the clock has no preconditions.
        let woke = unsafe { pg_sys::GetCurrentTimestamp() };
        // A slot the postmaster freed goes to the next queued worker
        // first; then what it reaped is marked once for everybody.
        start_queued();
        for index in registry::sweep_reaped(woke, launch::pm_pid) {
            registry::wake_slot_waiters(index);
        }
        registry::broadcast_unsettled();
        let lingering = spare::tend(me);
        let backstop = registry::any_queued().then_some(Duration::from_secs(1));
        let expiry = expire_results();
        // A spare given back beyond the setting arrives without a word:
        // looked at every `LINGER` while spares are kept.
        let spares =
            (gucs::spare_workers() > 0 || registry::idle_spares() > 0).then_some(spare::LINGER);
        runtime::nap(
            [backstop, expiry, lingering, spares]
                .into_iter()
                .flatten()
                .min(),
        );
    }
}

/// Frees the results older than `lightdb_bgw.result_retention`; returns
/// how long until the next one is due.
fn expire_results() -> Option<Duration> {
    let retention = gucs::result_retention()?.as_micros().min(i64::MAX as u128) as i64;
    // SAFETY: reading the clock has no preconditions.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let next = registry::expire_results(now, retention)?;
    Some(Duration::from_micros(
        next.saturating_sub(now).max(1000) as u64
    ))
}

/// Registers queued workers while there is room, first in, first out.
fn start_queued() {
    let reserved = gucs::superuser_reserved_workers();
    // SAFETY: MyProcPid is set for every server process.
    let me = unsafe { pg_sys::MyProcPid };
    while let Some(rec) = registry::take_next_queued(capacity::pm_free, reserved) {
        let at = rec.at;
        let registered = PgTryBuilder::new(|| {
            let worker = launch::build(&rec.def, at, rec.id, me).map_err(BgwError::invalid)?;
            launch::register_dynamic(worker)
        })
        .catch_others(|caught| {
            let error = runtime::caught_error(&caught);
            Err(BgwError::Worker {
                sqlstate: error.sqlstate,
                message: format!("could not register the worker: {}", error.message),
                detail: error.detail,
                hint: error.hint,
                context: None,
            })
        })
        .execute();
        match registered {
            Ok(handle) => {
                launch::attach(at, handle, false);
                // Its waiters and the queue's (positions moved) are woken
                // once the postmaster is already starting the process.
                registry::wake_all();
            }
            Err(BgwError::NoPostmasterSlot) => {
                // Taken meanwhile by someone the registry does not count.
                registry::return_to_queue(at);
                break;
            }
            Err(err) => {
                let error = ErrorText {
                    sqlstate: sqlstate_text(err.sqlstate()),
                    message: err.message(),
                    ..Default::default()
                };
                registry::record_error(at, Some(&error));
                registry::give_up(at);
                log!(
                    "lightdb_bgw: queued worker {} could not be started: {}",
                    rec.id,
                    err.message()
                );
            }
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: MyProcPid is set for every server process.
    registry::clear_dispatcher_pid(unsafe { pg_sys::MyProcPid });
}
