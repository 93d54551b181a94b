//! Events on the registry: its condition variable, broadcast at every
//! change of state so that waiters in any session wake without polling,
//! and the pid of the dispatcher, the process the postmaster notifies when
//! a worker starts or is reaped (it broadcasts in turn).

use std::cell::UnsafeCell;
#[cfg(feature = "bench")]
use std::sync::atomic::AtomicI64;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

use pgrx::pg_sys;

/// Lives in the registry's header, in shared memory.
#[repr(C)]
pub(super) struct Events {
    /// The server's own condition variable: safe to use without a lock.
    cv: UnsafeCell<pg_sys::ConditionVariable>,
    /// The dispatcher's pid, 0 while it does not run. The dispatcher.
    dispatcher_pid: AtomicI32,
    /// A time stamp the benchmark's floor worker leaves.
    #[cfg(feature = "bench")]
    bench_stamp: AtomicI64,
}

// SAFETY: the condition variable is the server's own shared-memory
// primitive, made to be used by every process at once.
unsafe impl Sync for Events {}

impl Events {
    /// Initialises the condition variable (the postmaster, at creation of
    /// shared memory, on zeroed memory).
    pub(super) fn init(&self) {
        // SAFETY: called once on fresh shared memory, before any process
        // could use it.
        unsafe { pg_sys::ConditionVariableInit(self.cv.get()) };
    }
}

/// Where this process finds the events: set with the registry's memory.
static EVENTS: AtomicPtr<Events> = AtomicPtr::new(std::ptr::null_mut());

/// Tells this process where the events live (the registry's memory, as
/// it is created or found), or forgets them (`null`, as it is released).
pub(super) fn attach(events: *mut Events) {
    EVENTS.store(events, Ordering::Release);
}

fn events() -> Option<&'static Events> {
    let events = EVENTS.load(Ordering::Acquire);
    // SAFETY: set to the events inside the registry's shared memory, which
    // lives as long as this process uses it; shared by design.
    (!events.is_null()).then(|| unsafe { &*events })
}

/// The dispatcher's pid, or 0 while it does not run.
pub fn dispatcher_pid() -> i32 {
    events().map_or(0, |e| e.dispatcher_pid.load(Ordering::Acquire))
}

/// Wakes the dispatcher (its latch, through SIGUSR1 as the postmaster
/// does): something was queued.
pub fn poke_dispatcher() {
    let pid = dispatcher_pid();
    if pid != 0 {
        // SAFETY: sending a signal has no memory effects; a pid that has
        // just gone is harmless (ESRCH).
        unsafe { libc::kill(pid, libc::SIGUSR1) };
    }
}

/// Run by the dispatcher as it starts.
pub fn set_dispatcher_pid(pid: i32) {
    if let Some(e) = events() {
        e.dispatcher_pid.store(pid, Ordering::Release);
    }
}

/// Clears the dispatcher's pid if it is still `pid` (the dispatcher, as it
/// exits).
pub fn clear_dispatcher_pid(pid: i32) {
    if let Some(e) = events() {
        let _ = e
            .dispatcher_pid
            .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The benchmark floor's time stamp.
#[cfg(feature = "bench")]
pub fn bench_stamp() -> i64 {
    events().map_or(0, |e| e.bench_stamp.load(Ordering::Acquire))
}

/// Leaves the benchmark floor's time stamp.
#[cfg(feature = "bench")]
pub fn set_bench_stamp(stamp: i64) {
    if let Some(e) = events() {
        e.bench_stamp.store(stamp, Ordering::Release);
    }
}

/// Wakes every session waiting on the registry's condition variable.
pub fn broadcast() {
    if let Some(e) = events() {
        // SAFETY: the condition variable was initialised with the registry
        // and lives as long as shared memory.
        unsafe { pg_sys::ConditionVariableBroadcast(e.cv.get()) };
    }
}

/// A wait on the registry's condition variable. Create it *before*
/// checking the condition, so no change between the check and the sleep is
/// missed; dropping it ends the wait.
pub struct ChangeWait {
    cv: *mut pg_sys::ConditionVariable,
}

impl ChangeWait {
    pub fn prepare() -> Option<ChangeWait> {
        let cv = events()?.cv.get();
        // SAFETY: the condition variable lives in shared memory for the
        // life of the server; one prepared sleep per process at a time,
        // which the server enforces by cancelling any other.
        unsafe { pg_sys::ConditionVariablePrepareToSleep(cv) };
        Some(ChangeWait { cv })
    }

    /// Sleeps until the registry changes or `timeout` passes. Serves
    /// interrupts (query cancel raises an ERROR here).
    pub fn sleep(&self, timeout: std::time::Duration) {
        let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as std::ffi::c_long;
        // SAFETY: `cv` is the prepared condition variable; the server's
        // sleep handles interrupts and postmaster death.
        unsafe {
            pg_sys::ConditionVariableTimedSleep(self.cv, millis, pg_sys::PG_WAIT_EXTENSION);
        }
    }
}

impl Drop for ChangeWait {
    fn drop(&mut self) {
        // SAFETY: cancelling a prepared sleep has no other precondition.
        unsafe { pg_sys::ConditionVariableCancelSleep() };
    }
}
