//! The dispatcher: a small background worker of the extension, started
//! with the server, that turns the postmaster's notifications into events
//! every session can wait on. The postmaster tells one process
//! (`bgw_notify_pid`) when a dynamic worker starts or is reaped; every
//! worker the extension registers names the dispatcher there, and the
//! dispatcher broadcasts the registry's condition variable on each such
//! signal. So a session waiting on another session's worker wakes when the
//! postmaster has reaped it, without polling.
//!
//! It shows in `pg_stat_activity` with `backend_type` `lightdb_bgw
//! dispatcher`; it needs no database. The launch queue will live here too.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::control;
use crate::error::BgwError;
use crate::launch::{self, RawWorker, LIBRARY};
use crate::process;
use crate::registry;
use crate::runtime;
use crate::spec::StartTime;

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
        flags: pg_sys::BGWORKER_SHMEM_ACCESS as i32,
        start_time: StartTime::PostmasterStart,
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
    // SAFETY: MyProcPid is set for every server process; the exit callback
    // runs while shared memory is still attached.
    unsafe {
        registry::set_dispatcher_pid(pg_sys::MyProcPid);
        pg_sys::on_shmem_exit(Some(on_exit), pg_sys::Datum::from(0usize));
    }
    loop {
        runtime::nap(None);
        // What the postmaster reaped is marked once for everybody.
        registry::sweep_reaped(control::pm_stopped);
        registry::wake_waiters();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: MyProcPid is set for every server process.
    registry::clear_dispatcher_pid(unsafe { pg_sys::MyProcPid });
}
