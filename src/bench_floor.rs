//! The benchmark's floor (built only with the `bench` feature, never in the
//! default build): a minimal worker registered through PostgreSQL's own
//! `RegisterDynamicBackgroundWorker` and awaited with its own
//! `WaitForBackgroundWorkerStartup` / `WaitForBackgroundWorkerShutdown`,
//! with no lightdb_bgw logic in between, so the benchmark can print our
//! figures as ratios to what the server itself does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::launch::{self, RawWorker, LIBRARY};
use crate::process;
use crate::registry::{self, PgHandle};
use crate::runtime;
use crate::spec::StartTime;

/// Handles of this backend's floor workers, by pid.
static HANDLES: Mutex<Option<HashMap<i32, PgHandle>>> = Mutex::new(None);

fn register(database: bool, sleep_ms: i64) -> PgHandle {
    let mut flags = pg_sys::BGWORKER_SHMEM_ACCESS as i32;
    if database {
        flags |= pg_sys::BGWORKER_BACKEND_DATABASE_CONNECTION as i32;
    }
    let raw = RawWorker {
        library: LIBRARY.to_string(),
        function: "lightdb_bgw_floor_main".to_string(),
        name: "lightdb_bgw floor".to_string(),
        worker_type: "lightdb_bgw floor".to_string(),
        main_arg: sleep_ms,
        extra: vec![database as u8],
        flags,
        start_time: StartTime::RecoveryFinished,
        restart_after: None,
        // SAFETY: MyProcPid is set for every server process.
        notify_pid: unsafe { pg_sys::MyProcPid },
    };
    let worker = launch::build_raw(&raw).unwrap_or_else(|e| panic!("floor worker: {e}"));
    launch::register_dynamic(worker).unwrap_or_else(|e| e.report())
}

fn as_handle(handle: &mut PgHandle) -> *mut pg_sys::BackgroundWorkerHandle {
    (handle as *mut PgHandle).cast()
}

/// When the dispatcher learned that the postmaster had freed worker
/// `id`'s slot: the start of the queue's hand-off to the next worker.
#[pg_extern]
fn bench_freed_at(id: i64) -> Option<TimestampWithTimeZone> {
    registry::freed_at(id).and_then(|t| TimestampWithTimeZone::try_from(t).ok())
}

/// Registers a floor worker and waits for the postmaster to start it, as
/// PostgreSQL's own callers do; returns its pid. With `running`, waits
/// on until the worker itself says that it runs (and is connected, with
/// `database`): the event `launch(..., wait => true)` waits for.
#[pg_extern]
fn floor_launch(database: bool, running: default!(bool, false)) -> i32 {
    // SAFETY: reading the clock has no preconditions.
    let began = unsafe { pg_sys::GetCurrentTimestamp() };
    let mut handle = register(database, -1);
    let mut pid: pg_sys::pid_t = 0;
    // SAFETY: a handle of a worker this backend registered with itself as
    // notify pid.
    unsafe { pg_sys::WaitForBackgroundWorkerStartup(as_handle(&mut handle), &mut pid) };
    // The worker stamps the time once it runs and signals this backend,
    // whose SIGUSR1 handler sets its latch.
    while running && registry::bench_stamp() < began {
        runtime::nap(Some(Duration::from_millis(100)));
    }
    if let Ok(mut map) = HANDLES.lock() {
        map.get_or_insert_with(HashMap::new).insert(pid, handle);
    }
    pid
}

/// Terminates floor worker `pid` and waits for the postmaster to reap it.
#[pg_extern]
fn floor_stop(pid: i32) -> bool {
    let handle = HANDLES
        .lock()
        .ok()
        .and_then(|mut map| map.get_or_insert_with(HashMap::new).remove(&pid));
    let Some(mut handle) = handle else {
        return false;
    };
    // SAFETY: as in `floor_launch`.
    unsafe {
        pg_sys::TerminateBackgroundWorker(as_handle(&mut handle));
        pg_sys::WaitForBackgroundWorkerShutdown(as_handle(&mut handle));
    }
    true
}

/// Launches a floor worker that exits after 50 ms, waits for its shutdown
/// in this (the launching) session, and returns the milliseconds from the
/// worker's last act to the wait's return.
#[pg_extern]
fn floor_wake_ms() -> f64 {
    let mut handle = register(false, 50);
    // SAFETY: as in `floor_launch`.
    unsafe { pg_sys::WaitForBackgroundWorkerShutdown(as_handle(&mut handle)) };
    // SAFETY: reading the clock has no preconditions.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    (now - registry::bench_stamp()) as f64 / 1000.0
}

/// The floor worker: connects if asked, then waits on its latch until
/// SIGTERM, or sleeps `main_arg` ms, stamps the time and exits.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn lightdb_bgw_floor_main(arg: pg_sys::Datum) {
    process::install_worker_signal_handlers();
    // SAFETY: the postmaster sets MyBgworkerEntry before calling us.
    let database = unsafe { (*pg_sys::MyBgworkerEntry).bgw_extra[0] != 0 };
    if database {
        // SAFETY: called once, at worker start.
        unsafe {
            pg_sys::BackgroundWorkerInitializeConnection(c"postgres".as_ptr(), std::ptr::null(), 0)
        };
    }
    let sleep_ms = arg.value() as i64;
    if sleep_ms < 0 {
        // Running (and connected): tell the launcher, as `floor_launch`
        // with `running` waits for.
        // SAFETY: reading the clock has no preconditions; kill has no
        // memory effects, and the notify pid is the launching backend's.
        unsafe {
            registry::set_bench_stamp(pg_sys::GetCurrentTimestamp());
            libc::kill((*pg_sys::MyBgworkerEntry).bgw_notify_pid, libc::SIGUSR1);
        }
    }
    if sleep_ms >= 0 {
        std::thread::sleep(Duration::from_millis(sleep_ms as u64));
        // SAFETY: reading the clock has no preconditions.
        registry::set_bench_stamp(unsafe { pg_sys::GetCurrentTimestamp() });
        process::exit(0);
    }
    loop {
        runtime::nap(None);
    }
}
